//! Panics in jobs: raised again from `start` / `resume` with their payload,
//! the job's stack unwound and returned to the pool, nested jobs' panics
//! reaching only the job that started them.

#[macro_use]
mod common;

use common::{finished, paused};
use stackjob::{Step, WaitCtx, current_wait_ctx, in_job, init_thread, pause, pool_stats, start};
use std::any::Any;
use std::cell::Cell;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::rc::Rc;

/// The message of a `panic!` payload (`&str` or `String`).
fn message(payload: &(dyn Any + Send)) -> &str {
    if let Some(s) = payload.downcast_ref::<&'static str>() {
        s
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s
    } else {
        "<not a string payload>"
    }
}

/// A job body that reports the address of one of its stack locals after
/// pausing `pauses` times (equal addresses mean the same stack).
fn stack_probe(pauses: usize) -> impl FnOnce() -> usize + 'static {
    move || {
        let addr = common::stack_pointer();
        for _ in 0..pauses {
            pause();
        }
        addr
    }
}

struct Counter(Rc<Cell<u32>>);
impl Drop for Counter {
    fn drop(&mut self) {
        self.0.set(self.0.get() + 1);
    }
}

#[test]
fn panic_in_the_job_body_is_raised_again_from_start() {
    require_backend!();
    let result = catch_unwind(|| start(None, || -> u32 { panic!("boom at start") }));
    let payload = result.expect_err("start must re-raise the job's panic");
    assert_eq!(message(&*payload), "boom at start");
    assert!(!in_job(), "the job is no longer current after its panic");
    assert!(!std::thread::panicking());
}

#[test]
fn panic_after_a_pause_is_raised_again_from_resume() {
    require_backend!();
    let job = paused(
        start(None, || -> u32 {
            pause();
            let n = 3;
            panic!("boom after {n} steps")
        })
        .unwrap(),
    );
    let payload = catch_unwind(AssertUnwindSafe(|| job.resume())).expect_err("resume must re-raise");
    assert_eq!(message(&*payload), "boom after 3 steps");
    assert!(!in_job());
}

#[test]
fn a_custom_panic_payload_arrives_unchanged() {
    require_backend!();
    #[derive(Debug, PartialEq)]
    struct Failure(u32, &'static str);
    let payload = catch_unwind(|| start(None, || std::panic::resume_unwind(Box::new(Failure(7, "seven")))))
        .expect_err("start must re-raise the job's panic");
    assert_eq!(payload.downcast_ref::<Failure>(), Some(&Failure(7, "seven")));
}

#[test]
fn a_panicking_job_runs_the_destructors_on_its_stack_before_start_returns() {
    require_backend!();
    let drops = Rc::new(Cell::new(0));
    let d = drops.clone();
    let job = paused(
        start(None, move || {
            let _a = Counter(d.clone());
            let _b = Counter(d);
            pause();
            panic!("unwind me");
        })
        .unwrap(),
    );
    assert_eq!(drops.get(), 0);
    assert!(catch_unwind(AssertUnwindSafe(|| job.resume())).is_err());
    assert_eq!(drops.get(), 2);
}

#[test]
fn stack_of_a_panicked_job_returns_to_the_pool_and_serves_the_next_job() {
    require_backend!();
    init_thread(1, 0).unwrap();
    let addr = finished(start(None, stack_probe(0)).unwrap());
    assert!(catch_unwind(|| start(None, || panic!("first"))).is_err());
    assert_eq!((pool_stats().idle, pool_stats().in_use), (1, 0));
    let job = paused(
        start(None, || {
            pause();
            panic!("second")
        })
        .unwrap(),
    );
    assert_eq!(pool_stats().in_use, 1);
    assert!(catch_unwind(AssertUnwindSafe(|| job.resume())).is_err());
    assert_eq!((pool_stats().idle, pool_stats().in_use), (1, 0));
    // With max_size 1, this only works if the stack came back; it is the same one.
    let next = paused(start(None, stack_probe(1)).unwrap());
    assert_eq!(finished(next.resume().unwrap()), addr);
    stackjob::cleanup_thread();
}

#[test]
fn panic_in_a_nested_job_reaches_only_the_outer_jobs_start_call() {
    require_backend!();
    init_thread(0, 0).unwrap();
    let ctx = WaitCtx::new();
    let outer_ctx = ctx.clone();
    let value = finished(
        start(Some(&ctx), move || {
            let caught = catch_unwind(|| start(None, || -> u8 { panic!("inner boom") }));
            let msg = match caught {
                Err(payload) => message(&*payload).to_owned(),
                Ok(_) => "no panic".to_owned(),
            };
            let still_current = in_job() && current_wait_ctx().is_some_and(|c| c.same_as(&outer_ctx));
            (msg, still_current)
        })
        .unwrap(),
    );
    assert_eq!(value, ("inner boom".to_owned(), true));
    assert!(!std::thread::panicking());
    assert_eq!((pool_stats().idle, pool_stats().in_use), (2, 0));
    stackjob::cleanup_thread();
}

#[test]
fn panic_in_a_nested_job_after_a_pause_reaches_the_outer_jobs_resume_call() {
    require_backend!();
    let value = finished(
        start(None, || {
            let inner = paused(
                start(None, || -> u8 {
                    pause();
                    panic!("inner boom on resume")
                })
                .unwrap(),
            );
            match catch_unwind(AssertUnwindSafe(|| inner.resume())) {
                Err(payload) => message(&*payload).to_owned(),
                Ok(_) => "no panic".to_owned(),
            }
        })
        .unwrap(),
    );
    assert_eq!(value, "inner boom on resume");
}

#[test]
fn uncaught_panic_in_a_nested_job_unwinds_the_outer_job_too() {
    require_backend!();
    init_thread(0, 0).unwrap();
    let drops = Rc::new(Cell::new(0));
    let d = drops.clone();
    let payload = catch_unwind(AssertUnwindSafe(|| {
        start(None, move || {
            let _outer_local = Counter(d);
            finished(start(None, || -> u8 { panic!("through both") }).unwrap())
        })
    }))
    .expect_err("the inner panic, not caught by the outer job, reaches the main caller");
    assert_eq!(message(&*payload), "through both");
    assert_eq!(drops.get(), 1, "the outer job's frames were unwound");
    assert_eq!((pool_stats().idle, pool_stats().in_use), (2, 0));
    assert!(!in_job());
    stackjob::cleanup_thread();
}

/// Calls `pause()` from its destructor.
struct PausesOnDrop(Rc<Cell<u32>>);
impl Drop for PausesOnDrop {
    fn drop(&mut self) {
        pause();
        self.0.set(self.0.get() + 1);
    }
}

#[test]
fn destructor_pausing_during_a_job_panic_does_not_leak_the_panic_state_to_the_caller() {
    require_backend!();
    init_thread(0, 0).unwrap();
    let dropped = Rc::new(Cell::new(0));
    let d = dropped.clone();
    let mut outcome = catch_unwind(AssertUnwindSafe(|| {
        start(None, move || -> u8 {
            let _p = PausesOnDrop(d);
            panic!("panicking job");
        })
    }));
    let mut pauses = 0;
    // However the crate handles the pause (a no-op, or a real pause), the
    // caller must never find itself "panicking" between steps, and the
    // job's panic must come out in the end.
    loop {
        assert!(!std::thread::panicking(), "the caller sees the job's unwinding as its own");
        match outcome {
            Ok(Ok(Step::Paused(job))) if pauses < 4 => {
                pauses += 1;
                outcome = catch_unwind(AssertUnwindSafe(|| job.resume()));
            }
            Err(payload) => {
                assert_eq!(message(&*payload), "panicking job");
                break;
            }
            Ok(Ok(Step::Paused(_))) => panic!("the job kept pausing"),
            Ok(Ok(Step::Finished(_))) => panic!("a panicking job cannot finish"),
            Ok(Err(err)) => panic!("unexpected error {err}"),
        }
    }
    assert_eq!(dropped.get(), 1);
    assert_eq!((pool_stats().idle, pool_stats().in_use), (1, 0));
    stackjob::cleanup_thread();
}
