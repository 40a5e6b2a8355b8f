//! Instruction-count workloads for callgrind (not a timing benchmark), in
//! the shape a user's event loop has: every path resumes the same
//! `Job<u64>` type, from two call sites (a first resume and a retry path),
//! and the job bodies are functions of their own, so the compiler cannot
//! specialise `resume` for one caller.
//!
//! `icount <path> <iterations> [shared]`:
//!
//! * `rt`    — one pause + resume round trip;
//! * `life0` — pooled start of a job that returns at once;
//! * `life1` — pooled start, one pause, resume, finish.
//!
//! `scripts/icount.sh` runs each path under `valgrind --tool=callgrind`
//! with two iteration counts and divides the difference by the extra
//! iterations, which cancels start-up and one-off costs exactly.

use stackjob::raw::{self, Fiber, Isolated, Isolation, Resumed, Shared, Suspender};
use stackjob::{Job, Step, pause, start};
use std::hint::black_box;

#[inline(never)]
fn body_forever() -> u64 {
    loop {
        pause();
    }
}

#[inline(never)]
fn body_return(i: u64) -> u64 {
    black_box(i)
}

#[inline(never)]
fn body_pause_once(i: u64) -> u64 {
    pause();
    black_box(i)
}

/// Resume site 1: the event loop's "fd ready" path.
#[inline(never)]
fn on_ready(job: Job<u64>) -> Step<u64> {
    job.resume().expect("resume")
}

/// Resume site 2: the event loop's retry path.
#[inline(never)]
fn on_retry(job: Job<u64>) -> Step<u64> {
    job.resume().expect("resume")
}

fn rt(n: u64) {
    let mut step = start(None, body_forever).expect("start");
    for i in 0..n {
        step = match step {
            // Both sites take turns, as the two paths of a loop would.
            Step::Paused(job) if i % 2 == 0 => on_ready(job),
            Step::Paused(job) => on_retry(job),
            Step::Finished(_) => unreachable!(),
        };
    }
    drop(step);
}

fn life0(n: u64) {
    for i in 0..n {
        match start(None, move || body_return(i)).expect("start") {
            Step::Finished(v) => assert_eq!(v, i),
            Step::Paused(_) => unreachable!(),
        }
    }
}

fn life1(n: u64) {
    for i in 0..n {
        let Step::Paused(job) = start(None, move || body_pause_once(i)).expect("start") else { unreachable!() };
        let step = if i % 2 == 0 { on_ready(job) } else { on_retry(job) };
        match step {
            Step::Finished(v) => assert_eq!(v, i),
            Step::Paused(_) => unreachable!(),
        }
    }
}

// The typed core, in the same shape: one `Fiber<u64, I>` type resumed from
// two sites, bodies in functions of their own.

#[inline(never)]
fn fiber_forever<I: Isolation>(s: &Suspender<I>) -> u64 {
    loop {
        s.suspend();
    }
}

#[inline(never)]
fn fiber_suspend_once<I: Isolation>(s: &Suspender<I>, i: u64) -> u64 {
    s.suspend();
    black_box(i)
}

#[inline(never)]
fn fiber_on_ready<I: Isolation>(f: Fiber<u64, I>) -> Resumed<u64, I> {
    f.resume()
}

#[inline(never)]
fn fiber_on_retry<I: Isolation>(f: Fiber<u64, I>) -> Resumed<u64, I> {
    f.resume()
}

fn raw_rt<I: Isolation>(n: u64) {
    let mut step = raw::start(fiber_forever::<I>).expect("start");
    for i in 0..n {
        step = match step {
            Resumed::Suspended(f) if i % 2 == 0 => fiber_on_ready(f),
            Resumed::Suspended(f) => fiber_on_retry(f),
            Resumed::Returned(_) => unreachable!(),
        };
    }
    drop(step);
}

fn raw_life0<I: Isolation>(n: u64) {
    for i in 0..n {
        match raw::start(move |_: &Suspender<I>| body_return(i)).expect("start") {
            Resumed::Returned(v) => assert_eq!(v, i),
            Resumed::Suspended(_) => unreachable!(),
        }
    }
}

fn raw_life1<I: Isolation>(n: u64) {
    for i in 0..n {
        let Resumed::Suspended(f) = raw::start(move |s: &Suspender<I>| fiber_suspend_once(s, i)).expect("start") else {
            unreachable!()
        };
        let step = if i % 2 == 0 { fiber_on_ready(f) } else { fiber_on_retry(f) };
        match step {
            Resumed::Returned(v) => assert_eq!(v, i),
            Resumed::Suspended(_) => unreachable!(),
        }
    }
}

fn main() {
    let mut args = std::env::args().skip(1);
    let path = args.next().unwrap_or_else(|| "rt".into());
    let n: u64 = args.next().and_then(|s| s.parse().ok()).unwrap_or(100_000);
    if !stackjob::is_capable() {
        eprintln!("icount: stackjob has no backend on this target");
        std::process::exit(2);
    }
    let isolate = match args.next().as_deref() {
        None => true,
        Some("shared") => false,
        Some(other) => {
            eprintln!("icount: unknown mode {other:?} (shared)");
            std::process::exit(2);
        }
    };
    // Warm the pool so every measured iteration reuses a stack.
    let cfg = stackjob::PoolConfig::new().init_size(1).isolate_thread_state(isolate);
    stackjob::init_thread_with(&cfg).expect("init_thread");
    match path.as_str() {
        "rt" => rt(n),
        "life0" => life0(n),
        "life1" => life1(n),
        "raw-rt" if isolate => raw_rt::<Isolated>(n),
        "raw-rt" => raw_rt::<Shared>(n),
        "raw-life0" if isolate => raw_life0::<Isolated>(n),
        "raw-life0" => raw_life0::<Shared>(n),
        "raw-life1" if isolate => raw_life1::<Isolated>(n),
        "raw-life1" => raw_life1::<Shared>(n),
        other => {
            eprintln!("icount: unknown path {other:?} (rt, life0, life1, raw-rt, raw-life0, raw-life1)");
            std::process::exit(2);
        }
    }
}
