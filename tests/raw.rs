//! The typed core, `stackjob::raw`: fibers that suspend through the
//! `Suspender` their body is handed, isolation as a type parameter, the
//! same pool, stacks, cancellation and panics as jobs.

#[macro_use]
mod common;
use common::{errno, set_errno};
use stackjob::raw::{self, Fiber, Isolated, Resumed, Shared, Suspender};
use stackjob::{PoolConfig, Step, in_job, init_thread_with, pause, pool_stats, start};
use std::cell::Cell;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::rc::Rc;

fn suspended<R, I: raw::Isolation>(step: Resumed<R, I>) -> Fiber<R, I> {
    match step {
        Resumed::Suspended(f) => f,
        Resumed::Returned(_) => panic!("expected the fiber to suspend, it returned"),
    }
}

fn returned<R, I: raw::Isolation>(step: Resumed<R, I>) -> R {
    match step {
        Resumed::Returned(v) => v,
        Resumed::Suspended(_) => panic!("expected the fiber to return, it suspended"),
    }
}

#[test]
fn a_fiber_suspends_and_resumes_where_it_stopped_with_its_locals_intact() {
    require_backend!();
    let mut step = raw::start(|s: &Suspender| {
        let mut log = Vec::new();
        for i in 0..5u32 {
            log.push(i * i);
            s.suspend();
        }
        log
    })
    .unwrap();
    let mut n = 0;
    let log = loop {
        match step {
            Resumed::Suspended(f) => {
                n += 1;
                step = f.resume();
            }
            Resumed::Returned(log) => break log,
        }
    };
    assert_eq!(n, 5);
    assert_eq!(log, [0, 1, 4, 9, 16]);
}

#[test]
fn fibers_share_the_threads_pool_and_give_their_stacks_back() {
    require_backend!();
    init_thread_with(&PoolConfig::new().max_size(2)).unwrap();
    let a = suspended(raw::start(|s: &Suspender<Shared>| s.suspend()).unwrap());
    let b = suspended(raw::start(|s: &Suspender| s.suspend()).unwrap());
    assert_eq!(pool_stats().in_use, 2);
    // The pool is full: fibers and jobs alike get NoJobs.
    assert!(matches!(raw::start(|_: &Suspender| ()), Err(stackjob::Error::NoJobs { .. })));
    assert!(matches!(start(None, || ()), Err(stackjob::Error::NoJobs { .. })));
    returned(a.resume());
    returned(b.resume());
    let stats = pool_stats();
    assert_eq!((stats.idle, stats.in_use), (2, 0));
    stackjob::cleanup_thread();
}

#[test]
fn dropping_a_suspended_fiber_unwinds_it_and_runs_its_destructors() {
    require_backend!();
    let guard = Rc::new(());
    let inside = guard.clone();
    let f = suspended(
        raw::start(move |s: &Suspender| {
            let _keep = inside;
            s.suspend();
            unreachable!("a cancelled fiber does not continue");
        })
        .unwrap(),
    );
    assert_eq!(Rc::strong_count(&guard), 2);
    let idle = pool_stats().idle;
    drop(f);
    assert_eq!(Rc::strong_count(&guard), 1);
    assert_eq!(pool_stats().idle, idle + 1, "the stack went back to the pool");
}

/// Cancellation resumes a fiber at the cancel path of the suspension point
/// it sits at: after catching it at one point, the body is cancelled again
/// at the next one (another place in its code), and its ordinary resumes
/// before that still continue where it stopped. Both variants: the shared
/// and the isolated switch lay the path the same way.
fn cancelled_at_each_suspension_point<I: raw::Isolation>() {
    let trail = Rc::new(Cell::new(0u32));
    let t = trail.clone();
    let f = suspended(
        raw::start(move |s: &Suspender<I>| {
            let _guard = Rc::clone(&t);
            s.suspend(); // an ordinary resume continues here
            t.set(t.get() * 10 + 1);
            let first = catch_unwind(AssertUnwindSafe(|| s.suspend()));
            t.set(t.get() * 10 + if first.is_err() { 2 } else { 9 });
            s.suspend(); // cancelled here too: nothing below runs
            t.set(t.get() * 10 + 9);
        })
        .unwrap(),
    );
    let f = suspended(f.resume());
    assert_eq!(trail.get(), 1, "the ordinary resume continued after the first suspension");
    let idle = pool_stats().idle;
    drop(f);
    assert_eq!(trail.get(), 12, "cancelled at the second suspension point, then again at the third");
    assert_eq!(Rc::strong_count(&trail), 1, "the body's frames were unwound");
    assert_eq!(pool_stats().idle, idle + 1, "the stack went back to the pool, not into quarantine");
}

#[test]
fn a_fiber_that_catches_its_cancellation_is_cancelled_again_at_its_next_suspension() {
    require_backend!();
    cancelled_at_each_suspension_point::<Shared>();
    cancelled_at_each_suspension_point::<Isolated>();
}

#[test]
fn a_panic_in_a_fiber_is_raised_again_by_resume_and_its_stack_is_reused() {
    require_backend!();
    let f = suspended(
        raw::start(|s: &Suspender| {
            s.suspend();
            panic!("fiber panic");
        })
        .unwrap(),
    );
    let err = catch_unwind(AssertUnwindSafe(|| f.resume())).expect_err("the panic must reach the resumer");
    assert_eq!(err.downcast_ref::<&str>(), Some(&"fiber panic"));
    assert_eq!(returned(raw::start(|_: &Suspender| 7).unwrap()), 7, "the thread keeps working");
}

#[test]
fn inside_a_fiber_there_is_no_job_and_a_job_inside_pauses_back_into_the_fiber() {
    require_backend!();
    let step = raw::start(|s: &Suspender| {
        assert!(!in_job(), "a fiber is not a job");
        pause(); // a no-op: no job runs
        let Step::Paused(job) = start(None, || {
            assert!(in_job());
            pause();
            5
        })
        .unwrap() else {
            panic!("the job must pause back into the fiber")
        };
        assert!(!in_job(), "back in the fiber");
        s.suspend();
        let Step::Finished(v) = job.resume().unwrap() else { panic!("the job must finish") };
        v
    })
    .unwrap();
    assert!(!in_job());
    assert_eq!(returned(suspended(step).resume()), 5);
}

#[test]
fn a_fiber_inside_a_job_suspends_to_the_job_not_out_of_it() {
    require_backend!();
    let step = start(None, || {
        let f = suspended(
            raw::start(|s: &Suspender| {
                assert!(!in_job());
                s.suspend();
                3
            })
            .unwrap(),
        );
        assert!(in_job(), "back in the job");
        pause();
        returned(f.resume()) + 1
    })
    .unwrap();
    let Step::Paused(job) = step else { panic!("the job pauses once") };
    let Step::Finished(v) = job.resume().unwrap() else { panic!("then finishes") };
    assert_eq!(v, 4);
}

#[test]
fn isolated_fibers_keep_errno_per_side_and_shared_ones_share_it() {
    require_backend!();
    set_errno(10);
    let f = suspended(
        raw::start(|s: &Suspender<Isolated>| {
            let at_start = errno();
            set_errno(20);
            s.suspend();
            (at_start, errno())
        })
        .unwrap(),
    );
    assert_eq!(errno(), 10, "the starter's errno survives the fiber");
    set_errno(30);
    assert_eq!(returned(f.resume()), (10, 20));
    assert_eq!(errno(), 30);

    set_errno(10);
    let f = suspended(
        raw::start(|s: &Suspender<Shared>| {
            set_errno(20);
            s.suspend();
            errno()
        })
        .unwrap(),
    );
    assert_eq!(errno(), 20, "shared: the fiber's errno is the thread's");
    set_errno(30);
    assert_eq!(returned(f.resume()), 30);
}

#[test]
fn suspend_while_unwinding_does_nothing() {
    require_backend!();
    struct SuspendOnDrop<'a>(&'a Suspender, Rc<Cell<bool>>);
    impl Drop for SuspendOnDrop<'_> {
        fn drop(&mut self) {
            self.0.suspend(); // the thread unwinds: a no-op
            self.1.set(true);
        }
    }
    let ran = Rc::new(Cell::new(false));
    let seen = ran.clone();
    let result = catch_unwind(AssertUnwindSafe(|| {
        raw::start(move |s: &Suspender| {
            let _d = SuspendOnDrop(s, seen);
            panic!("unwind through a suspending destructor");
        })
    }));
    assert!(result.is_err());
    assert!(ran.get(), "the destructor ran to its end");
}

#[test]
fn a_fiber_started_where_jobs_cannot_run_is_not_capable() {
    if stackjob::is_capable() {
        eprintln!("skipped: this target has a backend");
        return;
    }
    assert!(matches!(raw::start(|_: &Suspender| ()), Err(stackjob::Error::NotCapable { .. })));
}

/// Bodies and results on both sides of the size up to which the core keeps
/// them in the room at the top of the fiber's stack (512 bytes): each
/// arrives intact, across a suspension, for both isolations.
fn round_trip_of_size<const N: usize, I: raw::Isolation>(seed: u8) {
    let mut data = [0u8; N];
    for (i, b) in data.iter_mut().enumerate() {
        *b = (i as u8).wrapping_mul(31).wrapping_add(seed);
    }
    let expect = data;
    let fiber = suspended(
        raw::start(move |s: &Suspender<I>| {
            let mut out = std::hint::black_box(data);
            s.suspend();
            out.reverse();
            out
        })
        .unwrap(),
    );
    let mut got = returned(fiber.resume());
    got.reverse();
    assert!(got == expect, "a {N}-byte body or result arrived corrupted");
}

#[test]
fn bodies_and_results_of_every_size_arrive_intact() {
    require_backend!();
    round_trip_of_size::<8, Isolated>(1);
    round_trip_of_size::<480, Shared>(2);
    round_trip_of_size::<496, Isolated>(3);
    round_trip_of_size::<512, Shared>(4);
    round_trip_of_size::<513, Isolated>(5);
    round_trip_of_size::<4096, Shared>(6);
    round_trip_of_size::<12_000, Isolated>(7);
}

#[test]
fn a_result_larger_than_the_stack_room_is_returned_from_start_too() {
    require_backend!();
    // Returned without a suspension: the outcome goes straight to start's
    // caller.
    let v = returned(raw::start(|_: &Suspender| [7u64; 1000]).unwrap());
    assert!(v.iter().all(|&x| x == 7));
    let v = returned(raw::start(|_: &Suspender<Shared>| [9u8; 100]).unwrap());
    assert!(v.iter().all(|&x| x == 9));
}
