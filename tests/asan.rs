//! AddressSanitizer sees into jobs. With the `asan` feature (built with
//! nightly `-Zsanitizer=address`: scripts/asan.sh) every switch is
//! announced to ASan, so a memory error inside a job is reported like one
//! anywhere else, a job's stack frames are described as stack frames, and
//! a panic that unwinds a job's frames leaves no stale poison behind on
//! the job stack. (Without the annotations ASan keeps the thread's stack
//! bounds while a job runs: it refuses to clean up after an unwind, "ASan is
//! ignoring requested __asan_handle_no_return", and the stale redzones turn
//! into false reports when the stack is reused.)
//!
//! The failing programs run in child processes: this binary re-executes
//! itself with `STACKJOB_CHILD=<scenario>` and only `child_entry` selected
//! (`common::child`), and the parent checks the child's report.

mod common;

use stackjob::{Step, pause, start};
use std::ffi::c_void;
use std::hint::black_box;
use std::panic::{self, AssertUnwindSafe};
use std::process::Output;

const IGNORED_NO_RETURN: &str = "ASan is ignoring requested __asan_handle_no_return";

unsafe extern "C" {
    /// compiler-rt `sanitizer/asan_interface.h`: the first poisoned byte of
    /// the region, or null if all of it is addressable.
    fn __asan_region_is_poisoned(beg: *mut c_void, size: usize) -> *mut c_void;
}

/// Runs this test binary again, only `child_entry`, in `scenario`, with
/// `asan_options` added to the inherited `ASAN_OPTIONS`.
fn run_child(scenario: &str, asan_options: &str) -> Output {
    let options = match std::env::var("ASAN_OPTIONS") {
        Ok(inherited) if !inherited.is_empty() => format!("{inherited}:{asan_options}"),
        _ => asan_options.to_string(),
    };
    common::child::run("child_entry", scenario, &[("ASAN_OPTIONS", &options)])
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Writes one byte just past the end of `v`'s buffer.
#[inline(never)]
fn write_past_the_end_of_a_vec(v: &mut Vec<u8>) {
    let len = black_box(v.len());
    // SAFETY: none: this is the heap overflow ASan must catch (child only).
    unsafe { v.as_mut_ptr().add(len).write(0xaa) };
}

/// Writes one byte just past the end of a local array.
#[inline(never)]
fn write_past_the_end_of_a_local_in_a_paused_job() -> u8 {
    let mut local = [0u8; 24];
    black_box(&mut local);
    pause();
    let len = black_box(local.len());
    // SAFETY: none: this is the stack overflow ASan must catch (child only).
    unsafe { local.as_mut_ptr().add(len).write(0xaa) };
    local[0]
}

/// Recurses `depth` frames, each with an address-taken array (which ASan
/// surrounds with poisoned redzones), then panics at the bottom with the
/// stack pointer there as the payload. `top` is the stack pointer of the
/// job body that called the first level.
#[inline(never)]
fn poison_frames_and_panic(depth: u32, top: usize) -> u32 {
    let mut frame = [depth as u8; 40];
    black_box(&mut frame);
    if depth == 0 {
        let here = common::stack_pointer();
        // SAFETY: [here, top) is this job's stack, mapped and in use.
        let poisoned = unsafe { __asan_region_is_poisoned(here as *mut c_void, top - here) };
        assert!(!poisoned.is_null(), "the frames below the job body must hold redzones, or this proves nothing");
        panic::panic_any(here);
    }
    poison_frames_and_panic(depth - 1, top) + frame[1] as u32
}

/// The child side: does what the scenario says.
#[test]
fn child_entry() {
    let Some(scenario) = common::child::scenario() else { return };
    match scenario.as_str() {
        "heap-overflow" => {
            let step = start(None, || {
                let mut v = vec![0u8; 16];
                pause();
                write_past_the_end_of_a_vec(&mut v);
                v[0]
            })
            .unwrap();
            let Step::Paused(job) = step else { panic!("the job should have paused") };
            let _ = job.resume();
            panic!("the heap overflow went unnoticed");
        }
        "stack-overflow" => {
            let step = start(None, write_past_the_end_of_a_local_in_a_paused_job).unwrap();
            let Step::Paused(job) = step else { panic!("the job should have paused") };
            let _ = job.resume();
            panic!("the stack overflow went unnoticed");
        }
        "unwind" => {
            // Two jobs, the second on the first one's pooled stack.
            stackjob::init_thread(1, 0).unwrap();
            for round in 0..2 {
                let step = start(None, || {
                    let top = common::stack_pointer();
                    let caught = panic::catch_unwind(AssertUnwindSafe(|| poison_frames_and_panic(24, top)));
                    let deepest = *caught.expect_err("the frames should have panicked").downcast::<usize>().unwrap();
                    (deepest, top)
                })
                .unwrap();
                let Step::Finished((deepest, top)) = step else { panic!("the job should have finished") };
                // SAFETY: [deepest, top) lies in the job stack, idle in the
                // pool now and still mapped.
                let poisoned = unsafe { __asan_region_is_poisoned(deepest as *mut c_void, top - deepest) };
                if !poisoned.is_null() {
                    println!(
                        "round {round}: poison left at {poisoned:p} in the job's dead frames [{deepest:#x}, {top:#x})"
                    );
                    std::process::exit(3);
                }
            }
            println!("no poison left behind");
        }
        other => panic!("unknown scenario {other}"),
    }
}

#[test]
fn a_heap_overflow_inside_a_resumed_job_is_reported() {
    let out = run_child("heap-overflow", "");
    let err = stderr(&out);
    assert!(!out.status.success(), "the child should fail; stderr:\n{err}");
    assert!(err.contains("ERROR: AddressSanitizer: heap-buffer-overflow"), "stderr:\n{err}");
    assert!(err.contains("WRITE of size 1"), "stderr:\n{err}");
    assert!(err.contains("write_past_the_end_of_a_vec"), "the report names the job's frame; stderr:\n{err}");
    assert!(!err.contains("went unnoticed"), "stderr:\n{err}");
}

#[test]
fn a_stack_overflow_inside_a_resumed_job_is_reported_in_the_jobs_frame() {
    // Without use-after-return detection the local lives on the job stack
    // itself, so describing it needs ASan to know that stack's bounds.
    let out = run_child("stack-overflow", "detect_stack_use_after_return=0");
    let err = stderr(&out);
    assert!(!out.status.success(), "the child should fail; stderr:\n{err}");
    assert!(err.contains("ERROR: AddressSanitizer: stack-buffer-overflow"), "stderr:\n{err}");
    assert!(err.contains("is located in stack of thread"), "ASan must see the job stack as a stack; stderr:\n{err}");
    assert!(
        err.contains("in frame") && err.contains("write_past_the_end_of_a_local_in_a_paused_job"),
        "the report names the job's frame; stderr:\n{err}"
    );
}

#[test]
fn unwinding_a_job_leaves_no_poisoned_redzones_on_its_stack() {
    // Use-after-return detection off: the redzones are on the job stack.
    let out = run_child("unwind", "detect_stack_use_after_return=0");
    let (err, stdout) = (stderr(&out), String::from_utf8_lossy(&out.stdout).into_owned());
    assert!(!err.contains(IGNORED_NO_RETURN), "ASan did not know the job's stack; stderr:\n{err}");
    assert!(out.status.success(), "stdout:\n{stdout}\nstderr:\n{err}");
    assert!(stdout.contains("no poison left behind"), "stdout:\n{stdout}");
}
