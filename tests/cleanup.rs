//! Jobs still paused when their thread cleans up or exits are cancelled
//! (their destructors run) and can never be resumed afterwards; nothing is
//! leaked silently.

#[macro_use]
mod common;
use common::paused;
use stackjob::{Error, Job, Step, cleanup_thread, init_thread, pause, quarantined_jobs, start};
use std::cell::Cell;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

/// Counts its drops in a counter another thread can read.
struct CountDrop(Arc<AtomicUsize>);
impl Drop for CountDrop {
    fn drop(&mut self) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
}

#[test]
fn cleanup_thread_cancels_every_paused_job_and_runs_their_destructors() {
    require_backend!();
    init_thread(0, 0).unwrap();
    let drops = Arc::new(AtomicUsize::new(0));
    let jobs: Vec<Job<()>> = (0..10)
        .map(|_| {
            let held = CountDrop(drops.clone());
            paused(
                start(None, move || {
                    let _held = held;
                    loop {
                        pause();
                    }
                })
                .unwrap(),
            )
        })
        .collect();
    assert_eq!(drops.load(Ordering::SeqCst), 0);
    cleanup_thread();
    assert_eq!(drops.load(Ordering::SeqCst), 10, "each paused job was unwound");
    for job in jobs {
        assert!(matches!(job.resume(), Err(Error::Cancelled)));
    }
    assert_eq!(drops.load(Ordering::SeqCst), 10, "nothing ran or dropped twice");
}

#[test]
fn a_paused_job_forgotten_by_its_thread_is_cancelled_at_thread_exit() {
    require_backend!();
    let drops = Arc::new(AtomicUsize::new(0));
    let d = drops.clone();
    std::thread::spawn(move || {
        let held = CountDrop(d);
        let job = paused(
            start(None, move || {
                let _held = held;
                pause();
                unreachable!("never resumed");
            })
            .unwrap(),
        );
        // Nobody will ever resume or drop the handle.
        std::mem::forget(job);
    })
    .join()
    .unwrap();
    assert_eq!(drops.load(Ordering::SeqCst), 1, "thread exit unwound the forgotten job");
}

/// A paused job holding a `CountDrop`, and the counter its cancellation
/// moves to 1.
fn paused_sibling() -> (Arc<AtomicUsize>, Job<()>) {
    let drops = Arc::new(AtomicUsize::new(0));
    let held = CountDrop(drops.clone());
    let sibling = paused(
        start(None, move || {
            let _held = held;
            pause();
        })
        .unwrap(),
    );
    (drops, sibling)
}

#[test]
fn cleanup_thread_inside_a_job_cancels_paused_jobs_and_lets_the_running_one_finish() {
    require_backend!();
    init_thread(0, 0).unwrap();
    let (drops, sibling) = paused_sibling();
    let d = drops.clone();
    let step = start(None, move || {
        cleanup_thread();
        // The sibling was cancelled; this job keeps running on its stack.
        d.load(Ordering::SeqCst) * 10 + 7
    })
    .unwrap();
    assert!(matches!(step, Step::Finished(17)), "running job finished after cancelling its sibling");
    assert!(matches!(sibling.resume(), Err(Error::Cancelled)));
}

/// Every job on the call chain of `cleanup_thread` is running, however deep:
/// here a job, a fiber it resumes and a job that fiber resumes, both jobs
/// paused once before (so stamped for cancellation). Only the paused
/// sibling and a job held paused are cancelled; the chain finishes.
#[test]
fn cleanup_thread_deep_in_nested_jobs_and_fibers_leaves_the_whole_chain_running() {
    require_backend!();
    use stackjob::raw::{self, Resumed, Suspender};
    init_thread(0, 0).unwrap();
    let (drops, sibling) = paused_sibling();
    let d = drops.clone();
    let outer = paused(
        start(None, move || {
            pause();
            // A paused job of the outer one's own, held across the cleanup: it
            // is cancelled too (its handle sees a dead job).
            let own = paused(start(None, pause).unwrap());
            let fiber = raw::start(move |s: &Suspender| {
                let inner = paused(
                    start(None, move || {
                        pause();
                        cleanup_thread();
                        d.load(Ordering::SeqCst)
                    })
                    .unwrap(),
                );
                let inner = inner.resume().unwrap();
                s.suspend();
                match inner {
                    Step::Finished(seen) => seen * 10 + 1,
                    Step::Paused(_) => 0,
                }
            })
            .unwrap();
            let Resumed::Suspended(fiber) = fiber else { return 0 };
            let Resumed::Returned(v) = fiber.resume() else { return 0 };
            let own_cancelled = matches!(own.resume(), Err(Error::Cancelled));
            v * 10 + own_cancelled as usize
        })
        .unwrap(),
    );
    let outer = outer.resume().unwrap();
    assert!(matches!(outer, Step::Finished(111)), "the chain finished, the sibling and the held job were cancelled");
    assert!(matches!(sibling.resume(), Err(Error::Cancelled)));
}

#[test]
fn a_job_that_refuses_cancellation_at_cleanup_is_quarantined_and_its_handle_is_dead() {
    require_backend!();
    init_thread(0, 0).unwrap();
    let before = quarantined_jobs();
    let resisted = Rc::new(Cell::new(0));
    let r = resisted.clone();
    let job = paused(
        start(None, move || {
            loop {
                if catch_unwind(AssertUnwindSafe(pause)).is_err() {
                    r.set(r.get() + 1);
                }
            }
        })
        .unwrap(),
    );
    cleanup_thread();
    assert!(resisted.get() > 0, "the job saw its cancellation");
    assert_eq!(quarantined_jobs(), before + 1, "its stack was quarantined");
    assert!(matches!(job.resume(), Err(Error::Cancelled)), "and the handle is dead");
}

#[test]
fn a_new_pool_after_cleanup_serves_new_jobs() {
    require_backend!();
    init_thread(1, 1).unwrap();
    let old = paused(start(None, pause).unwrap());
    cleanup_thread();
    let step = start(None, || 5).unwrap();
    assert!(matches!(step, Step::Finished(5)));
    drop(old); // dead handle: frees its stack, no cancellation left to do
    assert_eq!(stackjob::pool_stats().in_use, 0);
}

#[test]
fn cleanup_thread_cancels_newest_first() {
    require_backend!();
    init_thread(0, 0).unwrap();
    let order = Rc::new(std::cell::RefCell::new(Vec::new()));
    struct Record(u32, Rc<std::cell::RefCell<Vec<u32>>>);
    impl Drop for Record {
        fn drop(&mut self) {
            self.1.borrow_mut().push(self.0);
        }
    }
    let jobs: Vec<Job<()>> = (1..=3)
        .map(|i| {
            let r = Record(i, order.clone());
            paused(
                start(None, move || {
                    let _r = r;
                    pause();
                })
                .unwrap(),
            )
        })
        .collect();
    cleanup_thread();
    assert_eq!(*order.borrow(), vec![3, 2, 1]);
    drop(jobs);
}

#[test]
fn thread_exit_cancels_a_forgotten_outer_job_and_the_inner_job_it_holds() {
    require_backend!();
    let drops = Arc::new(AtomicUsize::new(0));
    let d = drops.clone();
    std::thread::spawn(move || {
        let (outer_held, inner_held) = (CountDrop(d.clone()), CountDrop(d));
        let outer = paused(
            start(None, move || {
                let _outer_held = outer_held;
                // The inner job pauses first, so it is parked before the outer.
                let inner = paused(
                    start(None, move || {
                        let _inner_held = inner_held;
                        pause();
                    })
                    .unwrap(),
                );
                pause();
                drop(inner);
            })
            .unwrap(),
        );
        std::mem::forget(outer);
    })
    .join()
    .unwrap();
    assert_eq!(drops.load(Ordering::SeqCst), 2, "both jobs were unwound at thread exit");
}

/// Found by the fuzzer: code run by a job's cancellation in `cleanup_thread`
/// can reach the job's own handle. Dropping or resuming it must not switch
/// into (or free) the stack that is being unwound.
#[test]
fn a_job_whose_unwind_reaches_its_own_handle_during_cleanup_is_not_reentered() {
    require_backend!();
    thread_local! {
        static HANDLES: std::cell::RefCell<Vec<Job<()>>> = const { std::cell::RefCell::new(Vec::new()) };
    }
    struct Grab(bool);
    impl Drop for Grab {
        fn drop(&mut self) {
            if let Some(job) = HANDLES.with(|h| h.borrow_mut().pop()) {
                if self.0 {
                    assert!(matches!(job.resume(), Err(Error::Cancelled)));
                } else {
                    drop(job);
                }
            }
        }
    }
    for resume in [false, true] {
        init_thread(0, 0).unwrap();
        let drops = Arc::new(AtomicUsize::new(0));
        let held = CountDrop(drops.clone());
        let job = paused(
            start(None, move || {
                let _held = held;
                let _g = Grab(resume);
                pause();
            })
            .unwrap(),
        );
        HANDLES.with(|h| h.borrow_mut().push(job));
        cleanup_thread();
        assert_eq!(drops.load(Ordering::SeqCst), 1, "the job unwound once");
        assert!(HANDLES.with(|h| h.borrow().is_empty()));
    }
}

#[test]
fn a_dead_handle_still_shows_its_wait_ctx_until_dropped() {
    require_backend!();
    init_thread(0, 0).unwrap();
    let cleaned = Arc::new(AtomicUsize::new(0));
    let c = cleaned.clone();
    let ctx = stackjob::WaitCtx::new();
    ctx.set_wait_fd(
        stackjob::WaitKey::new(1),
        9,
        0,
        Some(Box::new(move |_, _, _| {
            c.fetch_add(1, Ordering::SeqCst);
        })),
    );
    let job = paused(start(Some(&ctx), pause).unwrap());
    drop(ctx); // the job's clone is the last one
    let seen = job.wait_ctx().expect("the job's ctx");
    cleanup_thread();
    // The borrow from before the cleanup is still valid.
    assert_eq!(seen.all_fds(), vec![9]);
    assert_eq!(cleaned.load(Ordering::SeqCst), 0);
    drop(job);
    assert_eq!(cleaned.load(Ordering::SeqCst), 1, "the dead handle took the last clone with it");
}

/// The order is that of first pauses, not of starts: an outer job that
/// starts an inner one, which pauses first, pauses after it, so the outer
/// job is the newer and is cancelled first (its unwind then drops the
/// inner job's handle, which cancels that one).
/// Pushes its name to a shared list when dropped: the order in which jobs'
/// frames unwind.
struct Record(&'static str, Rc<std::cell::RefCell<Vec<&'static str>>>);

impl Drop for Record {
    fn drop(&mut self) {
        self.1.borrow_mut().push(self.0);
    }
}

#[test]
fn cleanup_thread_cancels_by_first_pause_newest_first() {
    require_backend!();
    init_thread(0, 0).unwrap();
    let order = Rc::new(std::cell::RefCell::new(Vec::new()));
    let (o, i) = (Record("outer", order.clone()), Record("inner", order.clone()));
    let outer = paused(
        start(None, move || {
            let _inner = paused(
                start(None, move || {
                    let _i = i;
                    pause();
                })
                .unwrap(),
            );
            // Dropped before `_inner` when the outer job unwinds: the
            // outer job's record comes first exactly if it is cancelled
            // first (if the inner job were, its record would).
            let _o = o;
            pause();
        })
        .unwrap(),
    );
    cleanup_thread();
    assert_eq!(*order.borrow(), vec!["outer", "inner"]);
    assert!(matches!(outer.resume(), Err(Error::Cancelled)));
}

/// A job that holds `held` and pauses once.
fn holding<T: 'static>(held: T) -> Job<()> {
    paused(
        start(None, move || {
            let _held = held;
            pause();
        })
        .unwrap(),
    )
}

/// Code that a cancellation runs may map and unmap stacks (here: a new
/// pool replaces the old one, whose idle stacks are unmapped):
/// `cleanup_thread` still cancels every other paused job exactly once, a
/// job paused on a stack an earlier job used among them.
#[test]
fn cleanup_thread_survives_stacks_mapped_and_unmapped_by_a_cancellation() {
    require_backend!();
    init_thread(0, 0).unwrap();
    let drops = Arc::new(AtomicUsize::new(0));
    // A finished job leaves its stack idle; the next job reuses it.
    assert!(matches!(start(None, || ()).unwrap(), Step::Finished(())));
    struct NewPool(Arc<AtomicUsize>);
    impl Drop for NewPool {
        fn drop(&mut self) {
            self.0.fetch_add(1, Ordering::SeqCst);
            init_thread(0, 3).unwrap();
        }
    }
    let mut jobs = Vec::new();
    for _ in 0..3 {
        jobs.push(holding(CountDrop(drops.clone())));
        // An idle stack for the old pool to unmap when it is replaced.
        assert!(matches!(start(None, || ()).unwrap(), Step::Finished(())));
    }
    // The newest: cancelled first, so the others are cancelled after the
    // stacks changed under the canceller.
    jobs.push(holding(NewPool(drops.clone())));
    cleanup_thread();
    assert_eq!(drops.load(Ordering::SeqCst), 4, "every paused job was cancelled once");
    for job in jobs {
        assert!(matches!(job.resume(), Err(Error::Cancelled)));
    }
    assert_eq!(stackjob::pool_stats().in_use, 0);
}

/// A job that is running while `cleanup_thread` runs is left to go on, and
/// its next pause gives it the newest place: here it is cancelled before a
/// job that first paused after its own first pause but before its next one.
#[test]
fn a_job_running_through_cleanup_takes_the_newest_place_at_its_next_pause() {
    require_backend!();
    init_thread(0, 0).unwrap();
    let order = Rc::new(std::cell::RefCell::new(Vec::new()));
    let (a, c) = (Record("a", order.clone()), Record("c", order.clone()));
    let job = paused(
        start(None, move || {
            pause();
            cleanup_thread();
            let _c = paused(
                start(None, move || {
                    let _c = c;
                    pause();
                })
                .unwrap(),
            );
            // Dropped before `_c`: if this job is cancelled first, "a"
            // comes first and dropping `_c` then cancels the other job.
            let _a = a;
            pause();
        })
        .unwrap(),
    );
    let job = paused(job.resume().unwrap());
    assert!(order.borrow().is_empty());
    cleanup_thread();
    assert_eq!(*order.borrow(), vec!["a", "c"]);
    assert!(matches!(job.resume(), Err(Error::Cancelled)));
}

/// Cancellations that free many stacks: each job holds the handle of
/// another paused job, and both belong to a pool that was replaced, so
/// every stack the cancellations free is unmapped. There are more of them
/// than the stack layer keeps mapped for the canceller at once (1024), so
/// the canceller collects the paused jobs again after a batch is given
/// back; every job is still cancelled exactly once.
#[test]
fn cleanup_thread_cancels_every_job_when_cancellations_free_many_stacks() {
    require_backend!();
    init_thread(0, 0).unwrap();
    let drops = Arc::new(AtomicUsize::new(0));
    let n = 1500;
    // The inner jobs pause first, so they come after all the outer ones in
    // the cancellation order: the stacks a batch gives back are ones the
    // canceller has still to look at.
    let inner: Vec<Job<()>> = (0..n).map(|_| holding(CountDrop(drops.clone()))).collect();
    let jobs: Vec<Job<()>> = inner.into_iter().map(holding).collect();
    init_thread(0, 0).unwrap();
    cleanup_thread();
    assert_eq!(drops.load(Ordering::SeqCst), n, "every inner job was cancelled once");
    for job in jobs {
        assert!(matches!(job.resume(), Err(Error::Cancelled)));
    }
}
