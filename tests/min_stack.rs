//! The smallest stack the crate accepts, `MIN_STACK_SIZE`, is enough for a
//! job to panic: the panic hook prints the message (and, with
//! `RUST_BACKTRACE` set, symbolises and prints a backtrace, which takes far
//! more stack than the message), the job's stack unwinds and the panic is
//! raised again in the starter. In every `RUST_BACKTRACE` mode, so each
//! runs in a child process with that environment (`common::child`).

#[macro_use]
mod common;
use common::child;
use stackjob::{MIN_STACK_SIZE, PoolConfig, init_thread_with, pause, start};
use std::os::unix::process::ExitStatusExt;
use std::panic::{AssertUnwindSafe, catch_unwind};

/// A few frames deep, like real code, then the panic.
#[inline(never)]
fn nested_panic(depth: u32) -> u32 {
    if depth == 0 {
        panic!("deliberate panic on a minimum-size stack");
    }
    std::hint::black_box(nested_panic(depth - 1)) + 1
}

#[test]
fn child_entry() {
    let Some(scenario) = child::scenario() else { return };
    // STACKJOB_TEST_STACK overrides the size, to measure what the panic
    // path needs (`STACKJOB_TEST_STACK=20480 cargo test --test min_stack`).
    let size = std::env::var("STACKJOB_TEST_STACK").ok().and_then(|s| s.parse().ok()).unwrap_or(MIN_STACK_SIZE);
    init_thread_with(&PoolConfig::new().stack_size(size)).unwrap();
    let caught = match scenario.as_str() {
        "panic-at-start" => catch_unwind(|| start(None, || nested_panic(8))).is_err(),
        "panic-after-pause" => {
            let step = start(None, || {
                pause();
                nested_panic(8)
            })
            .unwrap();
            let stackjob::Step::Paused(job) = step else { panic!("the job must pause first") };
            catch_unwind(AssertUnwindSafe(|| job.resume())).is_err()
        }
        other => panic!("unknown scenario {other}"),
    };
    println!("caught in the starter: {caught}");
}

fn panics_cleanly(scenario: &str, backtrace: &str) {
    let out = child::run("child_entry", scenario, &[("RUST_BACKTRACE", backtrace)]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let what =
        format!("{scenario}, RUST_BACKTRACE={backtrace}: {:?}\nstdout:\n{stdout}\nstderr:\n{stderr}", out.status);
    assert!(!stderr.contains("stack overflow"), "the panic path overflowed the stack: {what}");
    assert_eq!(out.status.signal(), None, "the child died of a signal: {what}");
    assert!(out.status.success(), "{what}");
    assert!(stdout.contains("caught in the starter: true"), "{what}");
    assert!(stderr.contains("deliberate panic on a minimum-size stack"), "the hook printed the message: {what}");
    if backtrace != "0" && !cfg!(panic = "abort") {
        assert!(stderr.contains("nested_panic"), "the hook printed a backtrace through the job: {what}");
    }
}

#[test]
fn a_job_panics_cleanly_on_the_minimum_stack_without_a_backtrace() {
    require_backend!();
    panics_cleanly("panic-at-start", "0");
    panics_cleanly("panic-after-pause", "0");
}

#[test]
fn a_job_panics_cleanly_on_the_minimum_stack_with_a_backtrace() {
    require_backend!();
    panics_cleanly("panic-at-start", "1");
    panics_cleanly("panic-after-pause", "1");
}

#[test]
fn a_job_panics_cleanly_on_the_minimum_stack_with_a_full_backtrace() {
    require_backend!();
    panics_cleanly("panic-at-start", "full");
    panics_cleanly("panic-after-pause", "full");
}
