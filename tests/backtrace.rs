//! Unwind information across the switch: a backtrace taken inside a job
//! walks the job's frames, the job root, and continues into the code that
//! resumed the job (the trampoline's CFI reads the resumer's saved stack
//! pointer out of the job slot).

use stackjob::{Step, pause, start};
use std::backtrace::Backtrace;

/// Frame names in the order they appear in `trace`, innermost first.
fn frames(trace: &Backtrace) -> Vec<String> {
    trace.to_string().lines().map(str::trim).filter(|l| !l.starts_with("at ")).map(String::from).collect()
}

fn position(frames: &[String], needle: &str) -> Option<usize> {
    frames.iter().position(|f| f.contains(needle))
}

/// Asserts that `trace` (taken by `job_body_marker`) walks the job's frame,
/// the job root and then `resumer`, in that order; returns its frames.
fn assert_walks_into(trace: &Backtrace, resumer: &str) -> Vec<String> {
    let f = frames(trace);
    let body = position(&f, "job_body_marker").expect("job frame missing");
    let root = position(&f, "stackjob_trampoline").expect("job root (trampoline) missing");
    let outer = position(&f, resumer)
        .unwrap_or_else(|| panic!("backtrace does not reach {resumer} past the job root:\n{}", f.join("\n")));
    assert!(body < root && root < outer, "frames out of order:\n{}", f.join("\n"));
    f
}

#[inline(never)]
fn job_body_marker() -> Backtrace {
    std::hint::black_box(Backtrace::force_capture())
}

#[inline(never)]
fn resumer_marker_first_run() -> Step<Backtrace> {
    std::hint::black_box(start(None, job_body_marker).unwrap())
}

#[inline(never)]
fn resumer_marker_after_pause(job: stackjob::Job<Backtrace>) -> Step<Backtrace> {
    std::hint::black_box(job.resume().unwrap())
}

#[test]
fn backtrace_inside_a_job_continues_into_the_starter() {
    if !stackjob::is_capable() {
        eprintln!("skipped: no stackjob backend on this target");
        return;
    }
    let Step::Finished(trace) = resumer_marker_first_run() else { panic!("job should finish") };
    let f = assert_walks_into(&trace, "resumer_marker_first_run");
    assert!(position(&f, "backtrace_inside_a_job_continues_into_the_starter").is_some());
}

#[test]
fn backtrace_after_a_resume_continues_into_the_resumer_not_the_starter() {
    if !stackjob::is_capable() {
        eprintln!("skipped: no stackjob backend on this target");
        return;
    }
    let step = start(None, || {
        pause();
        job_body_marker()
    })
    .unwrap();
    let Step::Paused(job) = step else { panic!("job should pause") };
    let Step::Finished(trace) = resumer_marker_after_pause(job) else { panic!("job should finish") };
    assert_walks_into(&trace, "resumer_marker_after_pause");
}

/// The same walk through a pool that shares errno and the FP control state
/// (the `*_shared` switch variants, whose CFI is their own expansion of the
/// asm macros), after a resume.
#[test]
fn backtrace_in_a_shared_pool_continues_into_the_resumer() {
    if !stackjob::is_capable() {
        eprintln!("skipped: no stackjob backend on this target");
        return;
    }
    stackjob::init_thread_with(&stackjob::PoolConfig::new().isolate_thread_state(false)).unwrap();
    let Step::Paused(job) = start(None, || {
        pause();
        job_body_marker()
    })
    .unwrap() else {
        panic!("job should pause")
    };
    let Step::Finished(trace) = resumer_marker_after_pause(job) else { panic!("job should finish") };
    assert_walks_into(&trace, "resumer_marker_after_pause");
}
