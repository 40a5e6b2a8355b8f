//! Scenarios that must run in a process of their own (they crash on
//! purpose, change process-wide limits, or must be the first job of their
//! process): the test binary re-executes itself with `STACKJOB_CHILD=<scenario>`
//! and exactly one test selected, under the same emulator as the parent.

use std::process::{Command, Output};

/// The variable that tells a re-executed test binary which scenario to run.
pub const CHILD_ENV: &str = "STACKJOB_CHILD";

/// The scenario this process was started for, if it is a child.
pub fn scenario() -> Option<String> {
    std::env::var(CHILD_ENV).ok()
}

/// The command words that run a binary of this target here: empty when it
/// runs natively, else the emulator (with its arguments). Set
/// `STACKJOB_TEST_RUNNER` to override.
pub fn runner() -> Vec<String> {
    std::env::var("STACKJOB_TEST_RUNNER").unwrap_or_default().split_whitespace().map(String::from).collect()
}

/// Whether this process runs under user-mode emulation (QEMU).
pub fn emulated() -> bool {
    !runner().is_empty()
}

/// Runs this test binary again, only the test `test`, with
/// `STACKJOB_CHILD=scenario`, `RUST_BACKTRACE=0` unless `envs` sets it,
/// and `envs`; returns how it ended and what it printed.
pub fn run(test: &str, scenario: &str, envs: &[(&str, &str)]) -> Output {
    let exe = std::env::current_exe().expect("current_exe");
    let mut words = runner();
    words.push(exe.to_string_lossy().into_owned());
    let mut cmd = Command::new(&words[0]);
    cmd.args(&words[1..])
        .args(["--exact", test, "--nocapture", "--test-threads=1"])
        .env(CHILD_ENV, scenario)
        .env("RUST_BACKTRACE", "0");
    for (k, v) in envs {
        cmd.env(k, v);
    }
    cmd.output().unwrap_or_else(|e| panic!("could not spawn {words:?}: {e}"))
}
