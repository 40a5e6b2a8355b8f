//! What the crate does on a caller's behalf (the capability probe, mapping,
//! scrubbing and unmapping stacks, installing the overflow handler) leaves
//! `errno` as the caller had it: a job starts with its starter's value and
//! the resumer's value survives the job, on every path, the first one of a
//! process included.
//!
//! The first `start`, `is_capable` or `init_thread` of a process runs its
//! one-time probes; any earlier call would hide them, so those scenarios
//! run in a child process of their own (`common::child`).

#[macro_use]
mod common;
use common::{child, errno, finished, paused, set_errno};
use stackjob::{PoolConfig, cleanup_thread, init_thread_with, pause, start};

const MARK: i32 = 1234;

/// The child side of the first-call scenarios: prints one `seen` line per
/// check, which the parent compares.
#[test]
fn child_entry() {
    let Some(scenario) = child::scenario() else { return };
    match scenario.as_str() {
        "first-start" => {
            set_errno(MARK);
            let step = start(None, errno).expect("start");
            let in_job = finished(step);
            println!("seen job={in_job} starter={}", errno());
        }
        "first-is-capable" => {
            set_errno(MARK);
            let capable = stackjob::is_capable();
            println!("seen capable={capable} starter={}", errno());
        }
        "first-init-thread" => {
            set_errno(MARK);
            init_thread_with(&PoolConfig::new().init_size(2).scrub(true)).expect("init_thread_with");
            let after_init = errno();
            let step = start(None, errno).expect("start");
            let in_job = finished(step);
            println!("seen init={after_init} job={in_job} starter={}", errno());
        }
        "failed-start" => {
            // A stack that cannot be mapped: the error is typed, and errno is
            // still the caller's.
            let limit = libc::rlimit { rlim_cur: 64 << 20, rlim_max: libc::RLIM_INFINITY };
            // SAFETY: plain setrlimit on this (child) process.
            assert_eq!(unsafe { libc::setrlimit(libc::RLIMIT_AS, &limit) }, 0);
            init_thread_with(&PoolConfig::new().stack_size(512 << 20)).expect("init_thread_with creates nothing");
            set_errno(MARK);
            let err = start(None, || ()).expect_err("a 512 MiB stack cannot fit a 64 MiB address space");
            assert!(matches!(err, stackjob::Error::StackAlloc { .. }), "{err}");
            println!("seen starter={}", errno());
        }
        other => panic!("unknown scenario {other}"),
    }
}

/// Runs `scenario` in a child and returns its `seen` line.
fn seen(scenario: &str) -> String {
    let out = child::run("child_entry", scenario, &[]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "child {scenario} failed: {:?}\nstdout:\n{stdout}\nstderr:\n{stderr}", out.status);
    let line = stdout.lines().find_map(|l| l.split_once("seen ").map(|(_, s)| s.to_owned()));
    line.unwrap_or_else(|| panic!("child {scenario} printed no result:\n{stdout}\nstderr:\n{stderr}"))
}

#[test]
fn the_first_start_of_a_process_keeps_the_starters_errno() {
    require_backend!();
    assert_eq!(seen("first-start"), format!("job={MARK} starter={MARK}"));
}

#[test]
fn the_first_capability_check_keeps_errno() {
    // Also where there is no backend: the probe runs either way.
    let line = seen("first-is-capable");
    assert!(line.ends_with(&format!("starter={MARK}")), "{line}");
}

#[test]
fn the_first_init_thread_keeps_errno() {
    require_backend!();
    assert_eq!(seen("first-init-thread"), format!("init={MARK} job={MARK} starter={MARK}"));
}

#[test]
fn a_start_that_cannot_map_a_stack_keeps_errno() {
    require_backend!();
    if child::emulated() || cfg!(feature = "asan") || std::env::var_os("STACKJOB_UNDER_VALGRIND").is_some() {
        eprintln!("skipped: RLIMIT_AS limits the emulator's or the sanitizer's own address space here");
        return;
    }
    assert_eq!(seen("failed-start"), format!("starter={MARK}"));
}

#[test]
fn a_new_stack_a_scrub_and_an_unmap_keep_both_sides_errno() {
    require_backend!();
    init_thread_with(&PoolConfig::new().scrub(true)).unwrap();
    // The pool is empty: the start maps a new stack while the job's value
    // is to be inherited.
    set_errno(11);
    let job = paused(
        start(None, || {
            let at_start = errno();
            set_errno(22);
            // A deep write, so that the scrub has pages to find.
            std::hint::black_box([7u8; 32 * 1024]);
            pause();
            (at_start, errno())
        })
        .unwrap(),
    );
    assert_eq!(errno(), 11, "the starter's errno after the job paused");
    set_errno(33);
    let (at_start, after_pause) = finished(job.resume().unwrap());
    assert_eq!((at_start, after_pause), (11, 22), "the job's own errno across its pause");
    assert_eq!(errno(), 33, "the resumer's errno after the job finished and its stack was scrubbed");
    set_errno(44);
    cleanup_thread();
    assert_eq!(errno(), 44, "cleanup_thread unmaps the stacks");
}
