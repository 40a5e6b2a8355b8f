//! `examples/tokio_server.rs` runs its load phase to the end, verifies every
//! response, prints the throughput and latency percentiles, and refuses bad
//! flags with exit status 2 before doing anything. Built with `--features
//! tokio-dev` (which `cargo test` then also builds the example with: the
//! binary next to this test's is run, under this test's emulator if any).
//! Nothing here measures time.
#![cfg(target_os = "linux")]

#[macro_use]
mod common;
use std::path::PathBuf;
use std::process::{Command, Output};

/// The example's binary next to this test's; built first (with the
/// feature, this test's profile and `--target`) when a filtered
/// `cargo test --test example_tokio_server` did not build it.
fn example() -> PathBuf {
    let exe = std::env::current_exe().expect("the test binary's path");
    let profile = exe.parent().and_then(|deps| deps.parent()).expect("<profile>/deps/");
    let bin = profile.join("examples").join("tokio_server");
    if !bin.is_file() {
        let layout = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).parent().expect("<layout>/tmp");
        let cross = layout.file_name().and_then(|n| n.to_str()) == Some(env!("STACKJOB_BUILD_TARGET"));
        let target_dir = if cross { layout.parent().expect("<target-dir>/<triple>") } else { layout };
        let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
        let mut cmd = Command::new(cargo);
        cmd.args(["build", "--quiet", "--example", "tokio_server", "--features", "tokio-dev", "--manifest-path"])
            .arg(std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("Cargo.toml"))
            .arg("--target-dir")
            .arg(target_dir);
        match profile.file_name().and_then(|n| n.to_str()) {
            Some("debug") | None => cmd.args(["--profile", "dev"]),
            Some(p) => cmd.args(["--profile", p]),
        };
        if cross {
            cmd.args(["--target", env!("STACKJOB_BUILD_TARGET")]);
        }
        let status = cmd.status().expect("run cargo build");
        assert!(status.success(), "{cmd:?} failed");
    }
    assert!(bin.is_file(), "{} is missing after the build", bin.display());
    bin
}

fn run(args: &[&str]) -> (Option<i32>, String, String) {
    let mut words = common::child::runner();
    words.push(example().to_string_lossy().into_owned());
    let out: Output = Command::new(&words[0]).args(&words[1..]).args(args).output().expect("run the example");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn the_load_phase_verifies_every_response() {
    require_backend!();
    let (code, stdout, stderr) = run(&["--connections", "300", "--concurrency", "32", "--size", "100"]);
    let all = format!("stdout:\n{stdout}\nstderr:\n{stderr}");
    assert_eq!(code, Some(0), "{all}");
    assert!(stdout.lines().any(|l| l == "verified: all 300 responses match"), "{all}");
    let client =
        stdout.lines().find(|l| l.starts_with("client: 300 responses verified")).unwrap_or_else(|| panic!("{all}"));
    for needle in ["requests/s", "p50", "p99"] {
        assert!(client.contains(needle), "the client line lacks {needle:?}\n{all}");
    }
    assert!(stdout.contains("server: 300 connections served, 300 job pauses"), "one pause per request\n{all}");
    assert!(!stderr.contains("panicked"), "{all}");
}

#[test]
fn bad_flags_are_refused_with_exit_status_2() {
    for (args, needle) in [
        (&["--concurrency", "0"][..], "--concurrency 0 is out of range"),
        (&["--connections", "20001"][..], "expected 1 to 20000"),
        (&["--size", "big"][..], "not a number"),
        (&["--latency"][..], "--latency needs a value"),
        (&["--bogus"][..], "unknown argument"),
    ] {
        let (code, stdout, stderr) = run(args);
        assert_eq!(code, Some(2), "{args:?}: stdout:\n{stdout}\nstderr:\n{stderr}");
        assert!(stdout.is_empty(), "{args:?}: a refusal comes before any work\n{stdout}");
        assert!(stderr.contains(needle) && stderr.contains("usage:"), "{args:?}: {stderr}");
        assert!(!stderr.contains("panicked"), "{stderr}");
    }
}
