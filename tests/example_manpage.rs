//! `examples/manpage.rs` prints exactly what OpenSSL's `ASYNC_start_job(3)`
//! example prints (spec/openssl-async-semantics.md §4), or, where jobs
//! cannot run, reports the error and still finishes cleanly.
//!
//! The example runs as a child process, the way a user runs it: through
//! `cargo run --example manpage` with the profile, `--target` and target
//! directory this test was built with. `cargo test --test example_manpage`
//! does not build examples, a binary left from an earlier build may be
//! stale, and a cross target needs cargo's configured runner; `cargo run`
//! takes care of all three. Without cargo (the test binary run by hand),
//! the example binary next to this test's `deps/` directory runs directly.

mod common;
use common::example::BuildDir;

const EXPECTED: [&str; 8] = [
    "Starting...",
    "Executing within a job",
    "Passed in message is: Hello world!",
    "Job was paused",
    "Waiting for the job to be woken up",
    "Resumed the job after a pause",
    "Job finished with return value 1",
    "Finishing",
];

const EXPECTED_NOT_CAPABLE: [&str; 3] = ["Starting...", "An error occurred", "Finishing"];

#[test]
fn manpage_example_prints_the_man_page_output() {
    let expected: &[&str] = if stackjob::is_capable() {
        &EXPECTED
    } else {
        eprintln!(
            "stackjob::is_capable() is false on this target (backend {:?}): \
             expecting the example's error path instead of the man-page output",
            stackjob::backend()
        );
        &EXPECTED_NOT_CAPABLE
    };

    let out = BuildDir::of_this_test().run_example("manpage", &[]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);

    let want: String = expected.iter().map(|line| format!("{line}\n")).collect();
    assert_eq!(stdout, want, "the example's stdout differs from the expected lines (stderr: {stderr:?})");
    assert!(out.status.success(), "the example exited with {} (stderr: {stderr:?})", out.status);
}
