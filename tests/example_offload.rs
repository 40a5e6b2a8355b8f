//! `examples/offload.rs` — the accelerator-offload demo — runs to the end,
//! exits 0 and reports every one of its results verified (each offloaded
//! SHA-256 is recomputed synchronously by the example itself). Where jobs
//! cannot run, the example says so, works synchronously and must still
//! verify everything.
//!
//! Nothing here measures time: the example's rates are printed, not checked.
//!
//! The example runs as a child process through `cargo run --example
//! offload`, with the profile, `--target` and target directory this test
//! was built with (tests/common/example.rs). Linux only: the example
//! needs eventfd and epoll.
#![cfg(target_os = "linux")]

mod common;
use common::example::BuildDir;

const REQUESTS: &str = "2000";

#[test]
fn offload_example_verifies_all_results() {
    let out = BuildDir::of_this_test().run_example("offload", &["--requests", REQUESTS, "--jobs", "16"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "the example exited with {}\nstdout:\n{stdout}\nstderr:\n{stderr}", out.status);

    let verified = format!("verified: all {REQUESTS} results match");
    assert!(
        stdout.lines().any(|l| l == verified),
        "the summary does not report {verified:?}\nstdout:\n{stdout}\nstderr:\n{stderr}"
    );
    if stackjob::is_capable() {
        assert!(
            stdout.lines().any(|l| l.starts_with("offloaded:")),
            "jobs can run here, but the example did not offload\nstdout:\n{stdout}\nstderr:\n{stderr}"
        );
        assert!(
            stdout.contains("16 jobs in flight"),
            "the summary does not report 16 jobs in flight\nstdout:\n{stdout}\nstderr:\n{stderr}"
        );
    } else {
        assert!(
            stdout.contains("jobs are not supported here"),
            "jobs cannot run here, but the example did not say so\nstdout:\n{stdout}\nstderr:\n{stderr}"
        );
    }
}
