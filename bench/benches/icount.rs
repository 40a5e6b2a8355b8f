//! Instruction-count workloads for callgrind (not a timing benchmark), in
//! a neutral shape: the round-trip loop and the start → pause → resume →
//! finish loop resume the same `Job<u64>` (or `Fiber<u64, I>`) type, so
//! `resume` has at least two call sites in the binary, as in any event
//! loop, and the bodies are functions of their own (never inlined), so the
//! compiler cannot specialise a job for its caller.
//!
//! `icount <path> <iterations> [shared]`:
//!
//! * `rt`    — one pause + resume round trip;
//! * `life0` — pooled start of a job that returns at once;
//! * `life1` — pooled start, one pause, resume, finish;
//! * `rt-string`, `rt-big` — the round trip of a job whose result type is a
//!   `String` or a 1600-byte array (each resumed from its own site).
//!
//! `scripts/icount.sh` runs each path under `valgrind --tool=callgrind`
//! with two iteration counts and divides the difference by the extra
//! iterations, which cancels start-up and one-off costs exactly.

use stackjob::raw::{self, Isolated, Isolation, Resumed, Shared, Suspender};
use stackjob::{Step, pause, start};
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

#[inline(never)] // each loop is its own function: main's code cannot change its registers
fn rt(n: u64) {
    let mut step = start(None, body_forever).expect("start");
    for _ in 0..n {
        step = match step {
            Step::Paused(job) => job.resume().expect("resume"),
            Step::Finished(_) => unreachable!(),
        };
    }
    drop(step);
}

#[inline(never)]
fn body_forever_as<R>() -> R {
    loop {
        pause();
    }
}

/// The round trip of `rt` for a job whose result type is `R`.
#[inline(never)] // each loop is its own function: main's code cannot change its registers
fn rt_as<R: 'static>(n: u64) {
    let mut step = start(None, body_forever_as::<R>).expect("start");
    for _ in 0..n {
        step = match step {
            Step::Paused(job) => job.resume().expect("resume"),
            Step::Finished(_) => unreachable!(),
        };
    }
    drop(step);
}

#[inline(never)] // each loop is its own function: main's code cannot change its registers
fn life0(n: u64) {
    for i in 0..n {
        match start(None, move || body_return(i)).expect("start") {
            Step::Finished(v) => assert_eq!(v, i),
            Step::Paused(_) => unreachable!(),
        }
    }
}

#[inline(never)] // each loop is its own function: main's code cannot change its registers
fn life1(n: u64) {
    for i in 0..n {
        let Step::Paused(job) = start(None, move || body_pause_once(i)).expect("start") else { unreachable!() };
        match job.resume().expect("resume") {
            Step::Finished(v) => assert_eq!(v, i),
            Step::Paused(_) => unreachable!(),
        }
    }
}

// The typed core, in the same shape: one `Fiber<u64, I>` type resumed from
// two loops, bodies in functions of their own.

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

#[inline(never)] // each loop is its own function: main's code cannot change its registers
fn raw_rt<I: Isolation>(n: u64) {
    let mut step = raw::start(fiber_forever::<I>).expect("start");
    for _ in 0..n {
        step = match step {
            Resumed::Suspended(f) => f.resume(),
            Resumed::Returned(_) => unreachable!(),
        };
    }
    drop(step);
}

#[inline(never)] // each loop is its own function: main's code cannot change its registers
fn raw_life0<I: Isolation>(n: u64) {
    for i in 0..n {
        match raw::start(move |_: &Suspender<I>| body_return(i)).expect("start") {
            Resumed::Returned(v) => assert_eq!(v, i),
            Resumed::Suspended(_) => unreachable!(),
        }
    }
}

#[inline(never)] // each loop is its own function: main's code cannot change its registers
fn raw_life1<I: Isolation>(n: u64) {
    for i in 0..n {
        let Resumed::Suspended(f) = raw::start(move |s: &Suspender<I>| fiber_suspend_once(s, i)).expect("start") else {
            unreachable!()
        };
        match f.resume() {
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
        "rt-string" => rt_as::<String>(n),
        "rt-big" => rt_as::<[u64; 200]>(n),
        "raw-rt" if isolate => raw_rt::<Isolated>(n),
        "raw-rt" => raw_rt::<Shared>(n),
        "raw-life0" if isolate => raw_life0::<Isolated>(n),
        "raw-life0" => raw_life0::<Shared>(n),
        "raw-life1" if isolate => raw_life1::<Isolated>(n),
        "raw-life1" => raw_life1::<Shared>(n),
        other => {
            eprintln!(
                "icount: unknown path {other:?} (rt, life0, life1, rt-string, rt-big, raw-rt, raw-life0, raw-life1)"
            );
            std::process::exit(2);
        }
    }
}
