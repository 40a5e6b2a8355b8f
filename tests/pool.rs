//! The per-thread job pool: limits, LIFO reuse, (re-)initialisation,
//! cleanup, stack-size validation and the error messages that go with them.
//!
//! Every test thread has its own pool, so each test configures it first.

#[macro_use]
mod common;

use common::{finished, paused};
use stackjob::{
    Error, MAX_STACK_SIZE, MIN_STACK_SIZE, PoolConfig, cleanup_thread, init_thread, init_thread_with, pause,
    pool_stats, start,
};
use std::cell::Cell;
use std::rc::Rc;

/// A job body that reports the address of one of its stack locals after
/// pausing `pauses` times. Every call returns the same closure type, so the
/// frame layout is identical and equal addresses mean the same stack.
fn stack_probe(pauses: usize) -> impl FnOnce() -> usize + 'static {
    move || {
        let addr = common::stack_pointer();
        for _ in 0..pauses {
            pause();
        }
        addr
    }
}

fn page_size() -> usize {
    // SAFETY: sysconf has no preconditions.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    assert!(page > 0, "sysconf(_SC_PAGESIZE) failed");
    page as usize
}

#[test]
fn start_fails_with_no_jobs_when_max_size_jobs_are_paused() {
    require_backend!();
    init_thread(2, 0).unwrap();
    let a = paused(start(None, pause).unwrap());
    let b = paused(start(None, pause).unwrap());
    let err = start(None, || ()).unwrap_err();
    assert!(matches!(err, Error::NoJobs { in_use: 2, max_size: 2 }), "got {err:?}");
    // Still exhausted on a second try: the failure changed nothing.
    assert!(matches!(start(None, || ()), Err(Error::NoJobs { .. })));
    assert_eq!(finished(a.resume().unwrap()), ());
    assert_eq!(finished(start(None, || 5).unwrap()), 5, "retry after a job finished must succeed");
    assert_eq!(finished(b.resume().unwrap()), ());
    cleanup_thread();
}

#[test]
fn no_jobs_retry_succeeds_after_a_paused_job_is_dropped() {
    require_backend!();
    init_thread(1, 0).unwrap();
    let a = paused(start(None, pause).unwrap());
    assert!(matches!(start(None, || ()), Err(Error::NoJobs { in_use: 1, max_size: 1 })));
    drop(a);
    assert_eq!(finished(start(None, || 9).unwrap()), 9);
    cleanup_thread();
}

#[test]
fn sequential_jobs_reuse_the_same_stack() {
    require_backend!();
    init_thread(0, 0).unwrap();
    let first = finished(start(None, stack_probe(0)).unwrap());
    let second = finished(start(None, stack_probe(0)).unwrap());
    assert_eq!(first, second, "the second job must run on the first job's pooled stack");
    assert_eq!(pool_stats().idle, 1);
    cleanup_thread();
}

#[test]
fn pool_reuses_the_most_recently_released_stack_first() {
    require_backend!();
    init_thread(0, 0).unwrap();
    let a = paused(start(None, stack_probe(1)).unwrap());
    let b = paused(start(None, stack_probe(1)).unwrap());
    let a_addr = finished(a.resume().unwrap());
    let b_addr = finished(b.resume().unwrap());
    assert_ne!(a_addr, b_addr, "two jobs paused at once must have different stacks");
    assert_eq!(pool_stats().idle, 2);
    let next = finished(start(None, stack_probe(0)).unwrap());
    assert_eq!(next, b_addr, "LIFO: the stack released last (B's) is reused first");
    let then = paused(start(None, stack_probe(1)).unwrap());
    let other = finished(start(None, stack_probe(0)).unwrap());
    assert_eq!(other, a_addr, "with B's stack busy, A's is next");
    assert_eq!(finished(then.resume().unwrap()), b_addr);
    cleanup_thread();
}

#[test]
fn init_thread_with_unlimited_max_precreates_init_size_jobs() {
    require_backend!();
    init_thread(0, 5).unwrap();
    let stats = pool_stats();
    assert_eq!((stats.idle, stats.in_use, stats.max_size), (5, 0, 0));
    let jobs: Vec<_> = (0..5).map(|_| paused(start(None, pause).unwrap())).collect();
    assert_eq!((pool_stats().idle, pool_stats().in_use), (0, 5), "the pre-created stacks serve the jobs");
    let sixth = paused(start(None, pause).unwrap());
    assert_eq!(pool_stats().in_use, 6, "max_size 0 means no limit");
    drop(sixth);
    drop(jobs);
    assert_eq!((pool_stats().idle, pool_stats().in_use), (6, 0));
    cleanup_thread();
}

#[test]
fn init_size_above_max_size_is_rejected_and_keeps_the_previous_pool() {
    init_thread_with(&PoolConfig::new().max_size(3).init_size(2).stack_size(64 * 1024)).unwrap();
    let before = pool_stats();
    let err = init_thread(2, 3).unwrap_err();
    assert!(matches!(err, Error::InvalidPoolSize { max_size: 2, init_size: 3 }), "got {err:?}");
    assert_eq!(pool_stats(), before, "a failed init_thread must leave the previous pool in place");
    assert_eq!(before.max_size, 3);
    assert_eq!(before.stack_size, 64 * 1024);
    if stackjob::is_capable() {
        assert_eq!(before.idle, 2);
    }
    cleanup_thread();
}

#[test]
fn init_size_equal_to_max_size_is_accepted() {
    init_thread(3, 3).unwrap();
    assert_eq!(pool_stats().max_size, 3);
    if stackjob::is_capable() {
        assert_eq!(pool_stats().idle, 3);
    }
    cleanup_thread();
}

#[test]
fn second_init_thread_replaces_the_first_pool() {
    init_thread(4, 2).unwrap();
    init_thread_with(&PoolConfig::new().max_size(8).init_size(1).stack_size(128 * 1024).scrub(true)).unwrap();
    let stats = pool_stats();
    assert_eq!((stats.max_size, stats.stack_size, stats.scrub, stats.in_use), (8, 128 * 1024, true, 0));
    if stackjob::is_capable() {
        assert_eq!(stats.idle, 1, "the old pool's idle stacks must not carry over");
    }
    cleanup_thread();
}

#[test]
fn job_paused_under_a_replaced_pool_resumes_and_does_not_count_against_the_new_one() {
    require_backend!();
    init_thread(1, 0).unwrap();
    let steps = Rc::new(Cell::new(0));
    let seen = steps.clone();
    let old = paused(
        start(None, move || {
            seen.set(1);
            pause();
            seen.set(2);
            "old"
        })
        .unwrap(),
    );
    init_thread(1, 0).unwrap();
    assert_eq!((pool_stats().idle, pool_stats().in_use), (0, 0), "the old job is not the new pool's");
    let new = paused(start(None, pause).unwrap());
    assert!(matches!(start(None, || ()), Err(Error::NoJobs { in_use: 1, max_size: 1 })));
    assert_eq!(finished(old.resume().unwrap()), "old");
    assert_eq!(steps.get(), 2);
    assert_eq!(
        (pool_stats().idle, pool_stats().in_use),
        (0, 1),
        "the old job's stack is freed, not added to the new pool"
    );
    assert_eq!(finished(new.resume().unwrap()), ());
    assert_eq!((pool_stats().idle, pool_stats().in_use), (1, 0));
    cleanup_thread();
}

#[test]
fn job_paused_at_cleanup_thread_is_cancelled_and_cannot_be_resumed() {
    require_backend!();
    init_thread(2, 2).unwrap();
    let dropped = Rc::new(Cell::new(0));
    struct Count(Rc<Cell<u32>>);
    impl Drop for Count {
        fn drop(&mut self) {
            self.0.set(self.0.get() + 1);
        }
    }
    let held = Count(dropped.clone());
    let after_pause = Rc::new(Cell::new(false));
    let a = after_pause.clone();
    let job = paused(
        start(None, move || {
            let _held = held;
            pause();
            a.set(true);
        })
        .unwrap(),
    );
    cleanup_thread();
    assert_eq!(dropped.get(), 1, "cleanup_thread unwound the paused job: its destructors ran");
    assert!(!after_pause.get(), "the job did not continue past its pause");
    assert_eq!((pool_stats().idle, pool_stats().in_use), (0, 0), "the pool is gone");
    let err = job.resume().expect_err("a cancelled job cannot be resumed");
    assert!(matches!(err, stackjob::Error::Cancelled), "{err}");
    assert!(err.to_string().contains("cleanup_thread"));
    assert_eq!(dropped.get(), 1, "nothing dropped twice");
    cleanup_thread();
}

#[test]
fn job_paused_before_cleanup_thread_can_be_dropped() {
    require_backend!();
    init_thread(0, 0).unwrap();
    let dropped = Rc::new(Cell::new(false));
    struct Flag(Rc<Cell<bool>>);
    impl Drop for Flag {
        fn drop(&mut self) {
            self.0.set(true);
        }
    }
    let flag = Flag(dropped.clone());
    let job = paused(
        start(None, move || {
            let _flag = flag;
            pause();
        })
        .unwrap(),
    );
    cleanup_thread();
    drop(job);
    assert!(dropped.get(), "cancelling the job must still unwind its stack");
    assert_eq!((pool_stats().idle, pool_stats().in_use), (0, 0));
}

#[test]
fn cleanup_thread_frees_idle_stacks_and_next_start_makes_a_default_pool() {
    require_backend!();
    init_thread_with(&PoolConfig::new().max_size(1).init_size(1).stack_size(96 * 1024)).unwrap();
    cleanup_thread();
    let stats = pool_stats();
    assert_eq!((stats.idle, stats.in_use, stats.max_size), (0, 0, 0));
    assert_eq!(stats.stack_size, stackjob::DEFAULT_STACK_SIZE);
    // The old limit of 1 is gone: two jobs can be paused at once.
    let a = paused(start(None, pause).unwrap());
    let b = paused(start(None, pause).unwrap());
    assert_eq!(pool_stats().in_use, 2);
    assert_eq!(pool_stats().stack_size, stackjob::DEFAULT_STACK_SIZE);
    drop((a, b));
    cleanup_thread();
    cleanup_thread(); // twice is harmless
    assert_eq!(pool_stats().idle, 0);
}

#[test]
fn stack_size_below_minimum_is_rejected() {
    let err = init_thread_with(&PoolConfig::new().stack_size(MIN_STACK_SIZE - 1)).unwrap_err();
    assert!(matches!(err, Error::InvalidStackSize { requested } if requested == MIN_STACK_SIZE - 1), "got {err:?}");
}

#[test]
fn stack_size_above_maximum_is_rejected() {
    let err = init_thread_with(&PoolConfig::new().stack_size(MAX_STACK_SIZE + 1)).unwrap_err();
    assert!(matches!(err, Error::InvalidStackSize { requested } if requested == MAX_STACK_SIZE + 1), "got {err:?}");
}

#[test]
fn stack_size_zero_is_rejected() {
    let err = init_thread_with(&PoolConfig::new().stack_size(0)).unwrap_err();
    assert!(matches!(err, Error::InvalidStackSize { requested: 0 }), "got {err:?}");
}

#[test]
fn invalid_stack_size_keeps_the_previous_pool() {
    init_thread_with(&PoolConfig::new().max_size(5).stack_size(64 * 1024)).unwrap();
    let before = pool_stats();
    assert!(init_thread_with(&PoolConfig::new().max_size(9).stack_size(0)).is_err());
    assert_eq!(pool_stats(), before);
    cleanup_thread();
}

#[test]
fn stack_size_bounds_are_inclusive() {
    init_thread_with(&PoolConfig::new().stack_size(MIN_STACK_SIZE)).unwrap();
    assert_eq!(pool_stats().stack_size, MIN_STACK_SIZE);
    init_thread_with(&PoolConfig::new().stack_size(MAX_STACK_SIZE)).unwrap();
    assert_eq!(pool_stats().stack_size, MAX_STACK_SIZE);
    cleanup_thread();
}

#[test]
fn stack_size_is_rounded_up_to_whole_pages() {
    let page = page_size();
    init_thread_with(&PoolConfig::new().stack_size(MIN_STACK_SIZE + 1)).unwrap();
    assert_eq!(pool_stats().stack_size, (MIN_STACK_SIZE + 1).div_ceil(page) * page);
    assert!(pool_stats().stack_size > MIN_STACK_SIZE);
    init_thread_with(&PoolConfig::new().stack_size(100_000)).unwrap();
    let rounded = pool_stats().stack_size;
    assert_eq!(rounded % page, 0);
    assert!((100_000..100_000 + page).contains(&rounded), "{rounded} is not 100000 rounded up to a page");
    init_thread_with(&PoolConfig::new().stack_size(64 * 1024)).unwrap();
    assert_eq!(pool_stats().stack_size, 64 * 1024, "a whole number of pages stays as it is");
    cleanup_thread();
}

#[test]
fn jobs_run_on_a_pool_with_a_rounded_odd_stack_size() {
    require_backend!();
    init_thread_with(&PoolConfig::new().max_size(1).init_size(1).stack_size(MIN_STACK_SIZE + 123)).unwrap();
    let job = paused(
        start(None, || {
            pause();
            40 + 2
        })
        .unwrap(),
    );
    assert_eq!(finished(job.resume().unwrap()), 42);
    cleanup_thread();
}

#[test]
fn pool_stats_in_use_counts_paused_jobs() {
    require_backend!();
    init_thread(0, 0).unwrap();
    assert_eq!((pool_stats().idle, pool_stats().in_use), (0, 0));
    let mut jobs: Vec<_> = (0..3).map(|_| paused(start(None, pause).unwrap())).collect();
    assert_eq!((pool_stats().idle, pool_stats().in_use), (0, 3));
    assert_eq!(finished(jobs.pop().unwrap().resume().unwrap()), ());
    assert_eq!((pool_stats().idle, pool_stats().in_use), (1, 2));
    // A job that finishes at once is never in use afterwards.
    assert_eq!(finished(start(None, || 1).unwrap()), 1);
    assert_eq!((pool_stats().idle, pool_stats().in_use), (1, 2));
    drop(jobs);
    assert_eq!((pool_stats().idle, pool_stats().in_use), (3, 0));
    cleanup_thread();
}

#[test]
fn pool_stats_in_use_counts_the_running_job() {
    require_backend!();
    init_thread(0, 0).unwrap();
    let inside = finished(start(None, || (pool_stats().idle, pool_stats().in_use)).unwrap());
    assert_eq!(inside, (0, 1));
    cleanup_thread();
}

#[test]
fn no_jobs_message_names_the_limit_and_what_to_do() {
    require_backend!();
    init_thread(1, 0).unwrap();
    let job = paused(start(None, pause).unwrap());
    let msg = start(None, || ()).unwrap_err().to_string();
    assert!(msg.contains("max_size"), "{msg}");
    assert!(msg.contains("1 of 1"), "{msg}");
    assert!(msg.contains("retry"), "{msg}");
    drop(job);
    cleanup_thread();
}

#[test]
fn invalid_pool_size_message_names_both_sizes_and_the_fix() {
    let err = init_thread(2, 3).unwrap_err();
    let msg = err.to_string();
    assert!(msg.contains("init_size 3"), "{msg}");
    assert!(msg.contains("max_size 2"), "{msg}");
    assert!(msg.contains("max_size 0"), "the message should suggest the unlimited setting: {msg}");
    assert!(std::error::Error::source(&err).is_none());
}

#[test]
fn invalid_stack_size_message_names_the_request_and_the_bounds() {
    let msg = init_thread_with(&PoolConfig::new().stack_size(1000)).unwrap_err().to_string();
    assert!(msg.contains("1000"), "{msg}");
    assert!(msg.contains(&MIN_STACK_SIZE.to_string()), "{msg}");
    assert!(msg.contains(&MAX_STACK_SIZE.to_string()), "{msg}");
}

#[test]
fn not_capable_message_points_at_is_capable() {
    let msg = Error::NotCapable { reason: "no backend" }.to_string();
    assert!(msg.contains("no backend"), "{msg}");
    assert!(msg.contains("is_capable()"), "{msg}");
    if !stackjob::is_capable() {
        let err = start(None, || ()).unwrap_err();
        assert!(matches!(err, Error::NotCapable { .. }), "got {err:?}");
        assert!(err.to_string().contains("is_capable()"));
    }
}
