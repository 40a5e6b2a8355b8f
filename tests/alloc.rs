//! No heap allocation per job once the pool is warm: start, pause, resume
//! and finish — with or without a wait context, nested or not — make zero
//! calls to the global allocator when the pool has an idle stack to lend
//! (README, "No allocation per start").
//!
//! This test binary installs a counting global allocator. Every `alloc`,
//! `alloc_zeroed` and `realloc` adds one to a counter of the calling thread
//! (a `const` thread-local `Cell`), so the other test threads of the harness
//! do not disturb a measurement, while allocations made inside a job still
//! count: a job runs on its starter's thread. Each test warms the pool up
//! (`init_thread` with an `init_size`, then the path once), runs the path
//! many times, and asserts that the counter did not move;
//! `counter_counts_allocations_made_inside_a_job` shows that it would.
//!
//! To find where an unexpected allocation comes from, run with
//! `STACKJOB_ALLOC_BACKTRACE=1` (and `--nocapture`): every allocation inside
//! a measured region then prints a backtrace.

#[macro_use]
mod common;

use common::{finished, paused};
use stackjob::{Step, WaitCtx, cleanup_thread, current_wait_ctx, init_thread, pause, start};
use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::hint::black_box;
use std::sync::atomic::{AtomicBool, Ordering};

/// How many times each path runs in a measured region.
const RUNS: usize = 1000;

/// Counts the calling thread's allocations, then lets `System` serve them.
struct CountingAlloc;

#[global_allocator]
static ALLOCATOR: CountingAlloc = CountingAlloc;

thread_local! {
    /// Allocations (alloc, alloc_zeroed, realloc) made by this thread.
    static ALLOCATIONS: Cell<u64> = const { Cell::new(0) };
    /// This thread is inside `allocations_in`'s measured closure.
    static MEASURING: Cell<bool> = const { Cell::new(false) };
    /// This thread is printing a backtrace from the allocator hook; what
    /// that allocates is neither counted nor traced.
    static IN_HOOK: Cell<bool> = const { Cell::new(false) };
}

/// `STACKJOB_ALLOC_BACKTRACE` is set (read before any measurement: reading
/// the environment allocates).
static TRACE: AtomicBool = AtomicBool::new(false);

fn note_allocation(size: usize) {
    // `try_with`: the allocator is also called while thread-locals are
    // being destroyed at thread exit.
    if IN_HOOK.try_with(Cell::get).unwrap_or(true) {
        return;
    }
    let _ = ALLOCATIONS.try_with(|n| n.set(n.get() + 1));
    if TRACE.load(Ordering::Relaxed) && MEASURING.try_with(Cell::get).unwrap_or(false) {
        IN_HOOK.set(true);
        eprintln!("allocation of {size} bytes in a measured region:\n{}", std::backtrace::Backtrace::force_capture());
        IN_HOOK.set(false);
    }
}

// SAFETY: every method forwards to `System` with the caller's arguments
// unchanged, so `System`'s guarantees are ours; counting touches only
// thread-locals with constant initialisers and no destructor (no
// allocation, no re-entry).
unsafe impl GlobalAlloc for CountingAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        note_allocation(layout.size());
        // SAFETY: forwarded unchanged; the caller upholds `alloc`'s contract.
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        note_allocation(layout.size());
        // SAFETY: forwarded unchanged; the caller upholds `alloc_zeroed`'s contract.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        note_allocation(new_size);
        // SAFETY: forwarded unchanged; the caller upholds `realloc`'s contract.
        unsafe { System.realloc(ptr, layout, new_size) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: forwarded unchanged; the caller upholds `dealloc`'s contract.
        unsafe { System.dealloc(ptr, layout) }
    }
}

/// What `f` returns, and how many allocations the calling thread made
/// while running it (dropping the result is not measured).
fn allocations_in<T>(f: impl FnOnce() -> T) -> (T, u64) {
    TRACE.store(std::env::var_os("STACKJOB_ALLOC_BACKTRACE").is_some(), Ordering::Relaxed);
    let before = ALLOCATIONS.get();
    MEASURING.set(true);
    let value = f();
    MEASURING.set(false);
    (value, ALLOCATIONS.get() - before)
}

/// A job that pauses `pauses` times and returns `value`: every use returns
/// the same closure type, so warming up with it warms the measured path.
fn pausing(pauses: usize, value: usize) -> impl FnOnce() -> usize + 'static {
    move || {
        for _ in 0..pauses {
            pause();
        }
        value
    }
}

/// Drives a started job to its end, resuming it at every pause.
fn run_to_end<R>(mut step: Step<R>) -> R {
    loop {
        match step {
            Step::Paused(job) => step = job.resume().unwrap(),
            Step::Finished(value) => return value,
        }
    }
}

#[test]
fn counter_counts_allocations_made_inside_a_job() {
    require_backend!();
    init_thread(0, 1).unwrap();
    let (_, in_caller) = allocations_in(|| drop(black_box(Box::new(7u64))));
    assert_eq!(in_caller, 1, "an allocation in the caller must count");
    let (_, in_job) = allocations_in(|| {
        let step = start(None, || {
            drop(black_box(Box::new(7u64)));
            pause();
            drop(black_box(vec![1u8; 100]));
        })
        .unwrap();
        finished(paused(step).resume().unwrap());
    });
    assert_eq!(in_job, 2, "allocations made on a job's stack, before and after a pause, must count");
    cleanup_thread();
}

#[test]
fn pooled_start_to_immediate_finish_allocates_nothing() {
    require_backend!();
    init_thread(0, 1).unwrap();
    assert_eq!(finished(start(None, pausing(0, 0)).unwrap()), 0);
    let mut sum = 0;
    let (_, n) = allocations_in(|| {
        for i in 0..RUNS {
            sum += finished(start(None, pausing(0, i)).unwrap());
        }
    });
    assert_eq!(sum, (0..RUNS).sum::<usize>());
    assert_eq!(n, 0, "{n} allocations in {RUNS} pooled start -> finish");
    cleanup_thread();
}

#[test]
fn start_pause_resume_finish_allocates_nothing() {
    require_backend!();
    init_thread(0, 1).unwrap();
    assert_eq!(finished(paused(start(None, pausing(1, 0)).unwrap()).resume().unwrap()), 0);
    let mut sum = 0;
    let (_, n) = allocations_in(|| {
        for i in 0..RUNS {
            let job = paused(start(None, pausing(1, i)).unwrap());
            sum += finished(job.resume().unwrap());
        }
    });
    assert_eq!(sum, (0..RUNS).sum::<usize>());
    assert_eq!(n, 0, "{n} allocations in {RUNS} start -> pause -> resume -> finish");
    cleanup_thread();
}

#[test]
fn pause_resume_round_trips_allocate_nothing() {
    require_backend!();
    init_thread(0, 1).unwrap();
    assert_eq!(run_to_end(start(None, pausing(1, 0)).unwrap()), 0);
    let job = paused(start(None, pausing(RUNS + 1, 5)).unwrap());
    let (job, n) = allocations_in(move || {
        let mut job = job;
        for _ in 0..RUNS {
            job = paused(job.resume().unwrap());
        }
        job
    });
    assert_eq!(n, 0, "{n} allocations in {RUNS} pause/resume round trips");
    assert_eq!(finished(job.resume().unwrap()), 5);
    cleanup_thread();
}

/// A job started with a wait context (a clone of an existing one: a
/// reference count, not an allocation) that reads it back, pauses and
/// finishes; both the lifecycle and the round trips stay at zero.
#[test]
fn jobs_with_a_wait_ctx_allocate_nothing() {
    require_backend!();
    init_thread(0, 1).unwrap();
    let ctx = WaitCtx::new();
    let body = |pauses: usize, value: usize| {
        move || {
            let own = current_wait_ctx().expect("the job's wait ctx");
            for _ in 0..pauses {
                pause();
            }
            drop(own);
            value
        }
    };
    assert_eq!(run_to_end(start(Some(&ctx), body(1, 0)).unwrap()), 0);
    let mut sum = 0;
    let (_, lifecycles) = allocations_in(|| {
        for i in 0..RUNS {
            let job = paused(start(Some(&ctx), body(1, i)).unwrap());
            assert!(job.wait_ctx().is_some_and(|c| c.same_as(&ctx)));
            sum += finished(job.resume().unwrap());
        }
    });
    assert_eq!(sum, (0..RUNS).sum::<usize>());
    assert_eq!(lifecycles, 0, "{lifecycles} allocations in {RUNS} start -> pause -> resume -> finish with a wait ctx");

    let job = paused(start(Some(&ctx), body(RUNS + 1, 5)).unwrap());
    let (job, round_trips) = allocations_in(move || {
        let mut job = job;
        for _ in 0..RUNS {
            job = paused(job.resume().unwrap());
        }
        job
    });
    assert_eq!(round_trips, 0, "{round_trips} allocations in {RUNS} round trips with a wait ctx");
    assert_eq!(finished(job.resume().unwrap()), 5);
    cleanup_thread();
}

/// An outer job starts an inner job, which pauses back to the outer one;
/// the outer job pauses holding it, and resumes it to its end once it is
/// resumed itself. Two pooled stacks, no allocation.
#[test]
fn nested_jobs_allocate_nothing() {
    require_backend!();
    init_thread(0, 2).unwrap();
    let outer = |value: usize| {
        move || {
            let inner = paused(start(None, pausing(1, value)).expect("inner start"));
            pause();
            finished(inner.resume().expect("inner resume")) + 1
        }
    };
    assert_eq!(run_to_end(start(None, outer(0)).unwrap()), 1);
    let mut sum = 0;
    let (_, n) = allocations_in(|| {
        for i in 0..RUNS {
            let job = paused(start(None, outer(i)).unwrap());
            sum += finished(job.resume().unwrap());
        }
    });
    assert_eq!(sum, (1..=RUNS).sum::<usize>());
    assert_eq!(n, 0, "{n} allocations in {RUNS} nested start/pause/resume/finish");
    cleanup_thread();
}

/// The typed core (`stackjob::raw`), both isolations: start -> suspend ->
/// resume -> return, and round trips, allocate nothing either.
#[test]
fn fibers_allocate_nothing() {
    use stackjob::raw::{self, Isolation, Resumed, Shared, Suspender};
    fn lifecycle_and_round_trips<I: Isolation>() {
        let once = |i: usize| {
            move |s: &Suspender<I>| {
                s.suspend();
                i
            }
        };
        let run = |i: usize| match raw::start(once(i)).unwrap() {
            Resumed::Suspended(f) => match f.resume() {
                Resumed::Returned(v) => v,
                Resumed::Suspended(_) => panic!("suspended twice"),
            },
            Resumed::Returned(_) => panic!("returned without suspending"),
        };
        assert_eq!(run(0), 0);
        let mut sum = 0;
        let (_, n) = allocations_in(|| {
            for i in 0..RUNS {
                sum += run(i);
            }
        });
        assert_eq!(sum, (0..RUNS).sum::<usize>());
        assert_eq!(n, 0, "{n} allocations in {RUNS} fiber lifecycles");
        let Resumed::Suspended(mut f) = raw::start(|s: &Suspender<I>| {
            loop {
                s.suspend();
            }
        })
        .unwrap() else {
            unreachable!()
        };
        let (f, n) = allocations_in(move || {
            for _ in 0..RUNS {
                f = match f.resume() {
                    Resumed::Suspended(f) => f,
                    Resumed::Returned(()) => unreachable!(),
                };
            }
            f
        });
        assert_eq!(n, 0, "{n} allocations in {RUNS} fiber round trips");
        drop(f);
    }
    require_backend!();
    init_thread(0, 1).unwrap();
    lifecycle_and_round_trips::<raw::Isolated>();
    lifecycle_and_round_trips::<Shared>();
    cleanup_thread();
}
