//! Stack overflow in a job is reported, not a bare SIGSEGV; faults that are
//! not job-stack overflows keep their usual outcome.
//!
//! Everything that must crash runs in a child process: this test binary
//! re-executes itself with `STACKJOB_CHILD=<scenario>` and exactly one test
//! selected, and the parent checks how the child died and what it printed.
//! Under QEMU user emulation set `STACKJOB_TEST_RUNNER` to the emulator
//! command (scripts/test-cross.sh does) so the child runs emulated too.

use std::os::unix::process::ExitStatusExt;
use std::process::{Command, Output};

const CHILD_ENV: &str = "STACKJOB_CHILD";

/// Runs this test binary again, only the test `child_entry`, in `scenario`.
fn run_child(scenario: &str) -> Output {
    let exe = std::env::current_exe().expect("current_exe");
    let mut words: Vec<String> =
        std::env::var("STACKJOB_TEST_RUNNER").unwrap_or_default().split_whitespace().map(String::from).collect();
    words.push(exe.to_string_lossy().into_owned());
    let mut cmd = Command::new(&words[0]);
    cmd.args(&words[1..])
        .args(["--exact", "child_entry", "--nocapture", "--test-threads=1"])
        .env(CHILD_ENV, scenario)
        .env("RUST_BACKTRACE", "0");
    cmd.output().expect("spawn child")
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[inline(never)]
fn recurse(depth: u64) -> u64 {
    // 1 KiB per frame, kept alive across the call so it cannot be elided.
    let frame = std::hint::black_box([depth as u8; 1024]);
    if depth == u64::MAX {
        return 0;
    }
    recurse(depth + 1) + frame[(depth % 1024) as usize] as u64
}

/// The child side: does what the scenario says, and should not come back.
#[test]
fn child_entry() {
    let Ok(scenario) = std::env::var(CHILD_ENV) else { return };
    match scenario.as_str() {
        "job-overflow" => {
            stackjob::init_thread_with(&stackjob::PoolConfig::new().stack_size(64 * 1024)).unwrap();
            let _ = stackjob::start(None, || recurse(0));
        }
        "thread-overflow" => {
            // A finished job installs the crate's handler first.
            assert!(matches!(stackjob::start(None, || 1), Ok(stackjob::Step::Finished(1))));
            std::thread::Builder::new().stack_size(256 * 1024).spawn(|| recurse(0)).unwrap().join().unwrap();
        }
        "null-deref-in-job" => {
            let _ = stackjob::start(None, || {
                // SAFETY: none: this deliberately faults, in a child process.
                unsafe { std::ptr::read_volatile(std::ptr::null::<u64>().wrapping_add(1)) }
            });
        }
        "job-overflow-on-foreign-thread" => {
            // A thread not made by std has no alternate signal stack; the
            // crate must give it one or the report could never be printed.
            extern "C" fn body(_: *mut libc::c_void) -> *mut libc::c_void {
                stackjob::init_thread_with(&stackjob::PoolConfig::new().stack_size(64 * 1024)).unwrap();
                let _ = stackjob::start(None, || recurse(0));
                std::ptr::null_mut()
            }
            // SAFETY: plain pthread_create/join with a valid start routine.
            unsafe {
                let mut t: libc::pthread_t = std::mem::zeroed();
                assert_eq!(libc::pthread_create(&mut t, std::ptr::null(), body, std::ptr::null_mut()), 0);
                libc::pthread_join(t, std::ptr::null_mut());
            }
        }
        other => panic!("unknown scenario {other}"),
    }
    panic!("scenario {scenario} should not have returned");
}

fn skip_without_backend() -> bool {
    if !stackjob::is_capable() {
        eprintln!("skipped: no stackjob backend on this target, no job stack can overflow");
        return true;
    }
    false
}

#[test]
fn overflowing_a_job_stack_prints_one_clear_line_and_aborts() {
    if skip_without_backend() {
        return;
    }
    let out = run_child("job-overflow");
    let err = stderr(&out);
    assert_eq!(out.status.signal(), Some(libc::SIGABRT), "child should abort; stderr:\n{err}");
    let line = err.lines().find(|l| l.starts_with("stackjob: job stack overflow")).unwrap_or_else(|| {
        panic!("no overflow report; stderr:\n{err}");
    });
    assert!(line.contains("stack 65536 bytes"), "report names the stack size: {line}");
    assert!(line.contains("PoolConfig::stack_size"), "report says how to raise it: {line}");
}

#[test]
fn overflowing_a_job_on_a_thread_without_an_alternate_stack_is_still_reported() {
    if skip_without_backend() {
        return;
    }
    let out = run_child("job-overflow-on-foreign-thread");
    let err = stderr(&out);
    assert_eq!(out.status.signal(), Some(libc::SIGABRT), "child should abort; stderr:\n{err}");
    assert!(err.contains("stackjob: job stack overflow (stack 65536 bytes"), "stderr:\n{err}");
}

#[test]
fn a_thread_stack_overflow_keeps_rusts_own_message() {
    if skip_without_backend() {
        return;
    }
    // The child runs a job first (installing the crate's handler), then
    // overflows an ordinary thread: the fault must be passed on to std.
    let out = run_child("thread-overflow");
    let err = stderr(&out);
    assert!(!err.contains("stackjob: job stack overflow"), "not a job overflow; stderr:\n{err}");
    if cfg!(feature = "asan") {
        // Under AddressSanitizer the action before ours is ASan's own (std
        // installs none when a handler is already there): the fault reaches it.
        assert!(err.contains("AddressSanitizer: stack-overflow"), "ASan's handler must report it; stderr:\n{err}");
        return;
    }
    assert!(err.contains("has overflowed its stack"), "Rust's handler must still report it; stderr:\n{err}");
    assert_eq!(out.status.signal(), Some(libc::SIGABRT));
}

#[test]
fn a_fault_in_a_job_that_is_not_an_overflow_stays_a_segfault() {
    if skip_without_backend() {
        return;
    }
    let out = run_child("null-deref-in-job");
    let err = stderr(&out);
    assert!(!err.contains("stackjob: job stack overflow"), "a null dereference is not an overflow; stderr:\n{err}");
    if cfg!(feature = "asan") {
        // Under AddressSanitizer the action before ours is ASan's SEGV handler.
        assert!(err.contains("AddressSanitizer: SEGV"), "ASan's handler must report it; stderr:\n{err}");
        return;
    }
    assert_eq!(out.status.signal(), Some(libc::SIGSEGV), "stderr:\n{err}");
}
