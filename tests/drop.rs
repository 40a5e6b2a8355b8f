//! Dropping a paused job cancels it: its stack is unwound (destructors run,
//! code after the pause never does) and returned to the pool, or, when the
//! job refuses to unwind, quarantined without hanging.

#[macro_use]
mod common;
use common::{finished, paused};
use stackjob::{Job, in_job, init_thread, pause, pool_stats, quarantined_jobs, start};
use std::cell::Cell;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::rc::Rc;

/// Counts its drops.
struct Counter(Rc<Cell<u32>>);
impl Drop for Counter {
    fn drop(&mut self) {
        self.0.set(self.0.get() + 1);
    }
}

fn counter() -> (Rc<Cell<u32>>, impl Fn() -> Counter) {
    let count = Rc::new(Cell::new(0));
    let c = count.clone();
    (count, move || Counter(c.clone()))
}

/// Holds a `Counter` in each of `depth` frames and pauses at the bottom;
/// sets `after` if it ever gets past the pause.
fn hold_and_pause(depth: u32, make: &dyn Fn() -> Counter, after: &Cell<bool>) {
    let _held = make();
    if depth > 1 {
        hold_and_pause(depth - 1, make, after);
    } else {
        pause();
        after.set(true);
    }
}

#[test]
fn dropping_a_paused_job_runs_the_destructors_on_its_stack() {
    require_backend!();
    let (count, make) = counter();
    let captured = make();
    let after = Rc::new(Cell::new(false));
    let a = after.clone();
    let job = paused(
        start(None, move || {
            let _captured = captured;
            hold_and_pause(5, &make, &a);
        })
        .unwrap(),
    );
    assert_eq!(count.get(), 0, "nothing is dropped while the job is paused");
    drop(job);
    assert_eq!(count.get(), 6, "the captured value and one per frame");
    assert!(!after.get(), "code after pause() must not run in a cancelled job");
}

#[test]
fn dropping_a_paused_job_never_runs_the_code_after_pause() {
    require_backend!();
    let reached = Rc::new(Cell::new(0));
    let r = reached.clone();
    let mut job = paused(
        start(None, move || {
            for i in 1..=10 {
                r.set(i);
                pause();
            }
            r.set(100);
        })
        .unwrap(),
    );
    job = paused(job.resume().unwrap());
    assert_eq!(reached.get(), 2);
    drop(job);
    assert_eq!(reached.get(), 2, "the cancelled job went no further than its pause");
    assert!(!in_job());
}

#[test]
fn dropping_a_paused_job_returns_its_stack_to_the_pool() {
    require_backend!();
    init_thread(1, 0).unwrap();
    let job = paused(start(None, pause).unwrap());
    assert_eq!((pool_stats().idle, pool_stats().in_use), (0, 1));
    drop(job);
    assert_eq!((pool_stats().idle, pool_stats().in_use), (1, 0));
    // With max_size 1 this needs the stack back.
    let job = paused(start(None, pause).unwrap());
    finished(job.resume().unwrap());
    stackjob::cleanup_thread();
}

#[test]
fn dropping_many_paused_jobs_cancels_each_one() {
    require_backend!();
    init_thread(0, 0).unwrap();
    const N: u32 = 300;
    let (count, make) = counter();
    let jobs: Vec<Job<()>> = (0..N)
        .map(|_| {
            let held = make();
            paused(
                start(None, move || {
                    let _held = held;
                    pause();
                    pause();
                })
                .unwrap(),
            )
        })
        .collect();
    assert_eq!(pool_stats().in_use, N as usize);
    drop(jobs);
    assert_eq!(count.get(), N);
    assert_eq!((pool_stats().idle, pool_stats().in_use), (N as usize, 0));
    stackjob::cleanup_thread();
}

#[test]
fn job_that_catches_the_cancellation_and_keeps_pausing_is_quarantined() {
    require_backend!();
    init_thread(0, 0).unwrap();
    let catches = Rc::new(Cell::new(0u32));
    let c = catches.clone();
    let job = paused(
        start(None, move || {
            pause();
            loop {
                if catch_unwind(pause).is_err() {
                    c.set(c.get() + 1);
                }
            }
        })
        .unwrap(),
    );
    // Resume once so the job sits in its catching loop.
    let job = paused(job.resume().unwrap());
    assert_eq!(pool_stats().in_use, 1);
    let before = quarantined_jobs();
    drop(job); // must return
    assert!(quarantined_jobs() > before, "the stubborn job must be quarantined");
    assert!((1..=64).contains(&catches.get()), "bounded retries, got {}", catches.get());
    assert_eq!(
        (pool_stats().idle, pool_stats().in_use),
        (0, 0),
        "a quarantined stack neither returns to the pool nor counts against it"
    );
    assert!(!in_job());
    assert!(!std::thread::panicking());
    // The thread goes on working.
    let next = paused(start(None, pause).unwrap());
    finished(next.resume().unwrap());
    stackjob::cleanup_thread();
}

#[test]
fn quarantined_job_frees_its_place_under_max_size() {
    require_backend!();
    init_thread(1, 0).unwrap();
    let job = paused(
        start(None, || {
            loop {
                let _ = catch_unwind(pause);
            }
        })
        .unwrap(),
    );
    drop(job);
    assert_eq!(pool_stats().in_use, 0);
    let job = paused(start(None, pause).unwrap());
    finished(job.resume().unwrap());
    stackjob::cleanup_thread();
}

#[test]
fn job_that_catches_the_cancellation_and_returns_ends_normally() {
    require_backend!();
    init_thread(0, 0).unwrap();
    let (count, make) = counter();
    let held = make();
    let returned = make();
    let job = paused(
        start(None, move || {
            let _held = held;
            let cancelled = catch_unwind(pause).is_err();
            assert!(cancelled);
            returned
        })
        .unwrap(),
    );
    drop(job);
    assert_eq!(count.get(), 2, "the job's locals and its discarded return value are dropped");
    assert_eq!((pool_stats().idle, pool_stats().in_use), (1, 0), "the stack went back, not into quarantine");
    stackjob::cleanup_thread();
}

/// Calls `pause()` `times` times from its destructor, then counts the drop.
struct PausesOnDrop {
    times: u32,
    dropped: Rc<Cell<u32>>,
}
impl Drop for PausesOnDrop {
    fn drop(&mut self) {
        for _ in 0..self.times {
            pause();
        }
        self.dropped.set(self.dropped.get() + 1);
    }
}

#[test]
fn destructor_that_pauses_during_cancellation_does_not_hang() {
    require_backend!();
    init_thread(0, 0).unwrap();
    let dropped = Rc::new(Cell::new(0));
    let (d, after) = (dropped.clone(), Rc::new(Cell::new(false)));
    let a = after.clone();
    let job = paused(
        start(None, move || {
            let _p = PausesOnDrop { times: 2, dropped: d };
            pause();
            a.set(true);
        })
        .unwrap(),
    );
    drop(job);
    assert_eq!(dropped.get(), 1, "the destructor ran to its end");
    assert!(!after.get());
    assert_eq!((pool_stats().idle, pool_stats().in_use), (1, 0), "the unwinding completed: stack back");
    assert!(!std::thread::panicking());
    stackjob::cleanup_thread();
}

#[test]
fn destructor_waiting_on_another_thread_during_cancellation_finishes_its_wait() {
    // QAT's pattern: a request's buffers live on the job stack, so the job
    // may not be abandoned until the hardware (here a thread) is done with
    // them. While the job unwinds, pause() is a no-op and the wait loop
    // becomes a busy wait that ends when the other side finishes.
    require_backend!();
    init_thread(0, 0).unwrap();
    let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let seen = Rc::new(Cell::new(false));
    struct WaitsForDevice(std::sync::Arc<std::sync::atomic::AtomicBool>, Rc<Cell<bool>>);
    impl Drop for WaitsForDevice {
        fn drop(&mut self) {
            while !self.0.load(std::sync::atomic::Ordering::Acquire) {
                pause();
            }
            self.1.set(true);
        }
    }
    let (d, s2) = (done.clone(), seen.clone());
    let job = paused(
        start(None, move || {
            let _req = WaitsForDevice(d, s2);
            pause();
        })
        .unwrap(),
    );
    let device = done.clone();
    let t = std::thread::spawn(move || {
        std::thread::sleep(std::time::Duration::from_millis(20));
        device.store(true, std::sync::atomic::Ordering::Release);
    });
    drop(job);
    t.join().unwrap();
    assert!(seen.get(), "the destructor waited for the device before the stack was released");
    assert_eq!((pool_stats().idle, pool_stats().in_use), (1, 0));
    assert!(!std::thread::panicking());
    stackjob::cleanup_thread();
}

#[test]
fn thread_is_not_left_panicking_after_cancelling_a_job_whose_destructor_pauses_a_lot() {
    require_backend!();
    init_thread(0, 0).unwrap();
    let dropped = Rc::new(Cell::new(0));
    let d = dropped.clone();
    let job = paused(
        start(None, move || {
            // More pauses than the crate's cancellation retry budget.
            let _p = PausesOnDrop { times: 1000, dropped: d };
            pause();
        })
        .unwrap(),
    );
    let before = quarantined_jobs();
    drop(job);
    assert_eq!(dropped.get(), 1, "pause() is a no-op while the job unwinds: the destructor completes");
    assert_eq!(quarantined_jobs(), before, "nothing was abandoned mid-unwind");
    assert!(!std::thread::panicking(), "no unwind may leak into the thread");
    // A later, well-behaved job must still be cancelled properly.
    let (count, make) = counter();
    let held = make();
    let job = paused(
        start(None, move || {
            let _held = held;
            pause();
        })
        .unwrap(),
    );
    drop(job);
    assert_eq!(count.get(), 1, "a later dropped job must be unwound, not quarantined");
    stackjob::cleanup_thread();
}

/// Panics from its destructor.
struct PanicsOnDrop(&'static str);
impl Drop for PanicsOnDrop {
    fn drop(&mut self) {
        panic!("{}", self.0);
    }
}

// A destructor that panics *while* the cancellation unwinds aborts the
// process (Rust's rule for a panic during unwinding), so the destructor here
// runs after the job caught the cancellation, still inside `drop(job)`.
#[test]
fn panic_raised_by_a_destructor_while_the_job_is_cancelled_propagates_out_of_drop() {
    require_backend!();
    init_thread(0, 0).unwrap();
    let job = paused(
        start(None, || {
            let bomb = PanicsOnDrop("destructor panic during cancel");
            let cancelled = catch_unwind(pause).is_err();
            if cancelled {
                drop(bomb);
            } else {
                std::mem::forget(bomb);
            }
        })
        .unwrap(),
    );
    let payload = catch_unwind(AssertUnwindSafe(|| drop(job))).expect_err("drop(job) must re-raise the panic");
    let msg = payload.downcast_ref::<String>().map(String::as_str).unwrap_or("<not a String>");
    assert_eq!(msg, "destructor panic during cancel");
    assert_eq!((pool_stats().idle, pool_stats().in_use), (1, 0), "the stack still went back to the pool");
    assert!(!std::thread::panicking());
    stackjob::cleanup_thread();
}

#[test]
fn dropping_a_paused_job_while_the_caller_panics_still_unwinds_it() {
    require_backend!();
    init_thread(0, 0).unwrap();
    let (count, make) = counter();
    let held = make();
    let before = quarantined_jobs();
    let result = catch_unwind(AssertUnwindSafe(|| {
        let _job = paused(
            start(None, move || {
                let _held = held;
                pause();
            })
            .unwrap(),
        );
        panic!("caller panics while holding a paused job");
    }));
    assert!(result.is_err());
    assert_eq!(quarantined_jobs(), before, "a job dropped during a panic is still cancelled, not quarantined");
    assert_eq!(count.get(), 1, "its frames were unwound");
    assert_eq!((pool_stats().idle, pool_stats().in_use), (1, 0));
    stackjob::cleanup_thread();
}
