//! `examples/offload.rs` on bad flags and exhausted resources: every bad
//! value is refused before any work starts, with exit status 2, a message
//! that names the flag, its limit and the reason, and no panic; a resource
//! that runs out during the run ends it with exit status 1 and the cause,
//! never with a synchronous fallback (that is only for targets where jobs
//! cannot run).
//!
//! The example runs through `cargo run --example offload` with this test's
//! profile, `--target` and target directory (tests/common/example.rs).
//! Scenarios that need a lower resource limit or an environment variable
//! run in a child: this test binary re-executes itself (tests/common/child.rs)
//! with `STACKJOB_CHILD=<scenario>`, the child sets the limit on itself,
//! runs the example (cargo and the example inherit the limit) and reports
//! the example's exit status and output between markers on its stdout.
//!
//! - The open-file limit is real: the child lowers its `RLIMIT_NOFILE` to 64.
//! - `vm.max_map_count` cannot be lowered by a test, so the example reads
//!   `OFFLOAD_MAX_MAP_COUNT` in its place when set (documented in its
//!   `--help`); the child sets it to 1000. The check still counts the real
//!   mappings of the process (`/proc/self/maps`).
//! - A job stack that cannot be mapped at run time is real too: natively,
//!   cargo runs the example through a shell script that sets `ulimit -v`
//!   (RLIMIT_AS) low enough that the pool's stacks do not fit.
#![cfg(target_os = "linux")]

#[macro_use]
mod common;
use common::child;
use common::example::BuildDir;
use std::fmt;
use std::process::Output;

/// How an example run ended and what it printed.
struct Run {
    /// The exit status, `None` if a signal ended it.
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

impl Run {
    fn of(out: &Output) -> Run {
        Run {
            code: out.status.code(),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }

    /// Asserts that the example refused before doing any work: exit status
    /// 2, nothing on stdout (not even the header), no panic, and every one
    /// of `needles` in its message.
    fn assert_refused(&self, needles: &[&str]) {
        assert_eq!(self.code, Some(2), "expected a refusal with exit status 2\n{self}");
        self.assert_no_panic();
        assert!(self.stdout.is_empty(), "a refusal must come before any work (and the header)\n{self}");
        for needle in needles {
            assert!(self.stderr.contains(needle), "the message does not name {needle:?}\n{self}");
        }
    }

    fn assert_no_panic(&self) {
        for sign in ["panicked", "stack backtrace", "RUST_BACKTRACE"] {
            assert!(!self.stderr.contains(sign), "the example panicked ({sign:?} in stderr)\n{self}");
        }
    }

    /// Asserts that the run worked and verified all `requests` results.
    fn assert_verified(&self, requests: u64) {
        assert_eq!(self.code, Some(0), "expected a successful run\n{self}");
        let verified = format!("verified: all {requests} results match");
        assert!(self.stdout.lines().any(|l| l == verified), "no {verified:?} line\n{self}");
    }

    /// The N of "use --jobs N or fewer" in the message.
    fn suggested_jobs(&self) -> u64 {
        let (_, rest) = self.stderr.split_once("use --jobs ").unwrap_or_else(|| panic!("no suggested --jobs\n{self}"));
        let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
        digits.parse().unwrap_or_else(|_| panic!("no number after \"use --jobs \"\n{self}"))
    }
}

impl fmt::Display for Run {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "exit status: {:?}\nstdout:\n{}\nstderr:\n{}", self.code, self.stdout, self.stderr)
    }
}

fn offload(args: &[&str]) -> Run {
    Run::of(&BuildDir::of_this_test().run_example("offload", args))
}

// ---- flags: refused with exit status 2, the flag, its limit, no panic ----

#[test]
fn size_beyond_the_limit_is_refused() {
    // Was: a panic ("capacity overflow") building the payload.
    offload(&["--size", "18446744073709551615"]).assert_refused(&["--size", "too large", "16777216"]);
    offload(&["--size=16777217"]).assert_refused(&["--size", "16777216"]);
}

#[test]
fn workers_beyond_the_limit_are_refused() {
    // Was: a panic in a worker thread (its signal stack could not be mapped).
    offload(&["--workers", "100000"]).assert_refused(&["--workers", "too large", "1024", "thread"]);
}

#[test]
fn jobs_beyond_the_limit_are_too_large_not_not_a_number() {
    // Was: "is not a number".
    let run = offload(&["--jobs", "99999999999999999999"]);
    run.assert_refused(&["--jobs", "too large", "1000000"]);
    assert!(!run.stderr.contains("not a number"), "a huge number is still a number\n{run}");
    offload(&["--jobs", "1000001"]).assert_refused(&["--jobs", "too large", "1000000"]);
}

#[test]
fn requests_beyond_the_limit_are_refused() {
    // Was: an abort ("memory allocation of 3299999999967 bytes failed").
    offload(&["--requests", "99999999999"]).assert_refused(&["--requests", "too large", "10000000"]);
}

#[test]
fn payloads_in_flight_beyond_the_limit_are_refused() {
    if !stackjob::is_capable() {
        // Without jobs one payload exists at a time, so nothing is refused.
        eprintln!("skipped: no stackjob backend on this target (the check is for jobs in flight)");
        return;
    }
    offload(&["--size", "16777216", "--jobs", "100"]).assert_refused(&["--size", "--jobs", "1024 MiB", "--jobs 64"]);
}

#[test]
fn device_latency_and_capacity_beyond_the_limits_are_refused() {
    offload(&["--latency", "1000001"]).assert_refused(&["--latency", "too large", "1000000"]);
    offload(&["--capacity", "1000001"]).assert_refused(&["--capacity", "too large", "1000000"]);
    offload(&["--latency", "fast"]).assert_refused(&["--latency", "not a number", "0 to 1000000"]);
}

#[test]
fn zero_counts_are_refused() {
    for flag in ["--jobs", "--requests", "--workers", "--capacity"] {
        offload(&[flag, "0"]).assert_refused(&[flag, "at least 1"]);
    }
}

#[test]
fn malformed_arguments_are_refused() {
    offload(&["--bogus"]).assert_refused(&["unknown argument", "--bogus", "usage:"]);
    offload(&["stray"]).assert_refused(&["unknown argument", "stray"]);
    offload(&["--jobs"]).assert_refused(&["--jobs needs a value"]);
    offload(&["--jobs="]).assert_refused(&["--jobs needs a value"]);
    offload(&["--size", "-1"]).assert_refused(&["--size", "not a number", "0 to 16777216"]);
    offload(&["--workers", "two"]).assert_refused(&["--workers", "not a number", "1 to 1024"]);
}

#[test]
fn help_prints_the_flags_and_their_limits() {
    for flag in ["--help", "-h"] {
        let run = offload(&[flag]);
        assert_eq!(run.code, Some(0), "{run}");
        run.assert_no_panic();
        for needle in [
            "usage: offload",
            "--jobs",
            "--requests",
            "--workers",
            "--size",
            "--latency",
            "--capacity",
            "at most",
            "vm.max_map_count",
        ] {
            assert!(run.stdout.contains(needle), "--help does not mention {needle:?}\n{run}");
        }
    }
}

#[test]
fn header_states_what_runs() {
    // 10 requests keep only 10 jobs in flight; 3 workers for 2 jobs are 2.
    let run = offload(&["--requests", "10", "--jobs", "64"]);
    run.assert_no_panic();
    run.assert_verified(10);
    let header = run.stdout.lines().next().unwrap_or_default();
    if stackjob::is_capable() {
        assert!(header.contains("10 jobs in flight"), "the header claims other than 10 jobs in flight\n{run}");
        let run = offload(&["--requests", "100", "--jobs", "2", "--workers", "3"]);
        run.assert_verified(100);
        let header = run.stdout.lines().next().unwrap_or_default();
        assert!(header.contains("2 jobs in flight, 2 accelerator workers"), "{run}");
        let run = offload(&["--requests", "50", "--jobs", "4", "--latency", "7", "--capacity", "3"]);
        run.assert_verified(50);
        let header = run.stdout.lines().next().unwrap_or_default();
        assert!(header.contains("device latency 7 µs, capacity 3"), "{run}");
        for row in ["blocking:", "offloaded:", "inline:", "winner, throughput:", "winner, main-thread CPU per op:"] {
            assert!(run.stdout.lines().any(|l| l.starts_with(row)), "no {row:?} line\n{run}");
        }
    } else {
        assert!(header.contains("jobs are not supported here") && header.contains("synchronously"), "{run}");
        assert!(!header.contains("jobs in flight"), "the header claims jobs that do not run\n{run}");
    }
}

// ---- resource limits, in a child process ----

/// Markers around what the child reports about the example's run.
const STATUS: &str = "offload_cli: exit status ";
const OUT: [&str; 2] = ["offload_cli: stdout {{{\n", "}}} offload_cli: stdout\n"];
const ERR: [&str; 2] = ["offload_cli: stderr {{{\n", "}}} offload_cli: stderr\n"];

/// The scenario's first word: what the child does before running the example.
const NOFILE_64: &str = "nofile-64";
const AS_IS: &str = "as-is";

/// The open-file limit of the `nofile-64` scenario.
const NOFILE: u16 = 64;

/// In a child (`STACKJOB_CHILD` set): applies the scenario's limit to this
/// process, runs the example with the scenario's remaining words as its
/// flags, and reports how it ended.
#[test]
fn child_entry() {
    let Some(scenario) = child::scenario() else { return };
    let mut words = scenario.split_whitespace();
    match words.next() {
        Some(NOFILE_64) => {
            let limit = libc::rlimit { rlim_cur: NOFILE.into(), rlim_max: NOFILE.into() };
            // SAFETY: `limit` is a valid rlimit. Lowering both limits needs
            // no privilege; this child process exits after the scenario.
            let rc = unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &limit) };
            assert_eq!(rc, 0, "setrlimit(RLIMIT_NOFILE): {}", std::io::Error::last_os_error());
        }
        Some(AS_IS) => {}
        other => panic!("unknown scenario {other:?}"),
    }
    let args: Vec<&str> = words.collect();
    let run = offload(&args);
    let code = run.code.map_or("signal".to_owned(), |c| c.to_string());
    println!("{STATUS}{code}\n{}{}{}{}{}{}", OUT[0], run.stdout, OUT[1], ERR[0], run.stderr, ERR[1]);
}

/// Runs `scenario` in a child with `envs`; returns the example's run.
fn in_child(scenario: &str, envs: &[(&str, &str)]) -> Run {
    let out = child::run("child_entry", scenario, envs);
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr);
    let context = || format!("child {scenario:?} ({:?})\nstdout:\n{stdout}\nstderr:\n{stderr}", out.status);
    assert!(out.status.success(), "the child failed: {}", context());
    let between = |[open, close]: [&str; 2]| -> String {
        let start = stdout.find(open).unwrap_or_else(|| panic!("no {open:?} in {}", context())) + open.len();
        let len = stdout[start..].find(close).unwrap_or_else(|| panic!("no {close:?} in {}", context()));
        stdout[start..start + len].to_owned()
    };
    let code = stdout.split_once(STATUS).and_then(|(_, rest)| rest.lines().next()).map(str::to_owned);
    let code = code.unwrap_or_else(|| panic!("no exit status in {}", context()));
    Run { code: code.parse().ok(), stdout: between(OUT), stderr: between(ERR) }
}

#[test]
fn too_many_jobs_for_the_open_file_limit_are_refused() {
    require_backend!();
    // Was: 100 jobs under `ulimit -n 64` ran, and the jobs past the limit
    // failed one by one ("eventfd: Too many open files"), exit status 1.
    let run = in_child(&format!("{NOFILE_64} --jobs 100 --requests 1000"), &[]);
    run.assert_refused(&["--jobs 100", "RLIMIT_NOFILE", "ulimit -n", "is 64", "eventfd"]);
    // The largest --jobs it suggests does fit, and runs.
    let fit = run.suggested_jobs();
    assert!(fit > 0 && fit < u64::from(NOFILE), "suggested --jobs {fit} under a limit of {NOFILE}\n{run}");
    let ok = in_child(&format!("{NOFILE_64} --jobs {fit} --requests 200"), &[]);
    ok.assert_verified(200);
    assert!(ok.stdout.contains(&format!("{fit} jobs in flight")), "{ok}");
}

#[test]
fn too_many_jobs_for_vm_max_map_count_are_refused() {
    require_backend!();
    // Was: 40000 jobs under the default vm.max_map_count (65530) said
    // "jobs are not supported here ... running synchronously", exit status 0.
    let env = [("OFFLOAD_MAX_MAP_COUNT", "1000")];
    let run = in_child(&format!("{AS_IS} --jobs 1000 --requests 1000"), &env);
    run.assert_refused(&["--jobs 1000", "vm.max_map_count", "is 1000", "OFFLOAD_MAX_MAP_COUNT", "sysctl"]);
    for wrong in ["not supported", "synchronously"] {
        assert!(!run.stderr.contains(wrong), "the refusal says {wrong:?}: it is not a lack of support\n{run}");
    }
    let fit = run.suggested_jobs();
    assert!(fit > 0 && fit < 500, "suggested --jobs {fit} for 1000 mappings at 2 per job\n{run}");
    let ok = in_child(&format!("{AS_IS} --jobs {fit} --requests 1000"), &env);
    ok.assert_verified(1000);
    assert!(ok.stdout.contains(&format!("{fit} jobs in flight")), "{ok}");
}

#[test]
fn job_stacks_that_cannot_be_mapped_end_the_run() {
    require_backend!();
    if child::emulated() {
        // qemu-user keeps a guest's RLIMIT_AS to itself, and under a host
        // limit this low the emulator itself cannot start.
        eprintln!("skipped: under user-mode emulation an address-space limit does not reach the job stacks");
        return;
    }
    if cfg!(feature = "asan") {
        eprintln!("skipped under AddressSanitizer: its shadow memory needs more address space than the limit");
        return;
    }
    // Was: "jobs are not supported here (could not map a 262144-byte job
    // stack ...); running synchronously", exit status 0.
    //
    // 500 stacks of 256 KiB need 130 MB of address space; the example
    // starts in far less than 64 MiB. Cargo runs it through this script
    // (the runner for this target), so cargo itself is not limited.
    let script = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("offload-cli-ulimit-v.sh");
    std::fs::write(&script, "#!/bin/sh\nulimit -v 65536 || exit 125\nexec \"$@\"\n").expect("write the runner script");
    set_executable(&script);
    let runner = runner_var(env!("STACKJOB_BUILD_TARGET"));
    let run = in_child(&format!("{AS_IS} --jobs 500 --requests 1000"), &[(&runner, script.to_str().unwrap())]);
    assert_eq!(run.code, Some(1), "expected the run to end with exit status 1\n{run}");
    run.assert_no_panic();
    for needle in ["job stack", "vm.max_map_count", "ulimit -v", "--jobs"] {
        assert!(run.stderr.contains(needle), "the message does not name {needle:?}\n{run}");
    }
    // ENOMEM as the C library words it: glibc and musl differ.
    let enomem = ["Cannot allocate memory", "Out of memory"];
    assert!(enomem.iter().any(|e| run.stderr.contains(e)), "the message does not name ENOMEM ({enomem:?})\n{run}");
    for wrong in ["not supported", "synchronously"] {
        let all = format!("{}{}", run.stdout, run.stderr);
        assert!(!all.contains(wrong), "the run says {wrong:?}: running out is not a lack of support\n{run}");
    }
    for line in ["offloaded:", "verified:"] {
        assert!(!run.stdout.contains(line), "the run went on after the failure ({line:?})\n{run}");
    }
}

fn set_executable(path: &std::path::Path) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).expect("chmod the runner script");
}

/// `CARGO_TARGET_<TRIPLE>_RUNNER`, the variable cargo reads for `triple`.
fn runner_var(triple: &str) -> String {
    let triple: String =
        triple.chars().map(|c| if c.is_ascii_alphanumeric() { c.to_ascii_uppercase() } else { '_' }).collect();
    format!("CARGO_TARGET_{triple}_RUNNER")
}
