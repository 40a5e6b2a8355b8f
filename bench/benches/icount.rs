//! Instruction-count workloads for callgrind (not a timing benchmark).
//!
//! `icount <path> <iterations> [shared]` runs one hot path `iterations`
//! times, in a pool with the default configuration or, with `shared`, one
//! built with `isolate_thread_state(false)`:
//!
//! * `rt`    — one pause + resume round trip through the public API;
//! * `life0` — pooled start of a job that returns at once;
//! * `life1` — pooled start, one pause, resume, finish.
//!
//! `scripts/icount.sh` runs each path under `valgrind --tool=callgrind`
//! with two iteration counts and divides the difference by the extra
//! iterations, which cancels start-up and one-off costs exactly.

use stackjob::{Step, pause, start};
use std::hint::black_box;

fn rt(n: u64) {
    let mut step = start(None, || {
        loop {
            pause();
        }
    })
    .expect("start");
    for _ in 0..n {
        step = match step {
            Step::Paused(job) => job.resume().expect("resume"),
            Step::Finished(()) => unreachable!(),
        };
    }
    drop(step);
}

fn life0(n: u64) {
    for i in 0..n {
        match start(None, move || black_box(i)).expect("start") {
            Step::Finished(v) => assert_eq!(v, i),
            Step::Paused(_) => unreachable!(),
        }
    }
}

fn life1(n: u64) {
    for i in 0..n {
        let Step::Paused(job) = start(None, move || {
            pause();
            black_box(i)
        })
        .expect("start") else {
            unreachable!()
        };
        match job.resume().expect("resume") {
            Step::Finished(v) => assert_eq!(v, i),
            Step::Paused(_) => unreachable!(),
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
        other => {
            eprintln!("icount: unknown path {other:?} (rt, life0, life1)");
            std::process::exit(2);
        }
    }
}
