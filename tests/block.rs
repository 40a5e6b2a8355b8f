//! `block_pause`: nested guards, pause as a no-op while blocked, and a block
//! that belongs to the job which took it (unlike OpenSSL's per-thread
//! counter, which leaks into later jobs).

#[macro_use]
mod common;
use common::{finished, paused};
use stackjob::{BlockGuard, Step, block_pause, init_thread, pause, start};
use std::cell::Cell;
use std::rc::Rc;

#[test]
fn nested_guards_need_as_many_drops_before_pause_pauses() {
    require_backend!();
    let stage = Rc::new(Cell::new(0));
    let s = stage.clone();
    let job = paused(
        start(None, move || {
            let outer = block_pause();
            let inner = block_pause();
            s.set(1);
            pause(); // blocked twice: no-op
            drop(inner);
            s.set(2);
            pause(); // still blocked by `outer`: no-op
            drop(outer);
            s.set(3);
            pause(); // pauses
            s.set(4);
        })
        .unwrap(),
    );
    assert_eq!(stage.get(), 3, "the job must pause only after both guards are dropped");
    finished(job.resume().unwrap());
    assert_eq!(stage.get(), 4);
}

#[test]
fn pause_while_blocked_is_a_no_op_and_the_job_runs_to_finished() {
    require_backend!();
    let passed = Rc::new(Cell::new(0));
    let p = passed.clone();
    let value = finished(
        start(None, move || {
            let _guard = block_pause();
            for _ in 0..5 {
                pause();
                p.set(p.get() + 1);
            }
            "ran through"
        })
        .unwrap(),
    );
    assert_eq!((value, passed.get()), ("ran through", 5));
}

#[test]
fn pausing_works_again_after_the_guard_is_dropped() {
    require_backend!();
    let job = paused(
        start(None, || {
            {
                let _guard = block_pause();
                pause();
            }
            pause();
            7
        })
        .unwrap(),
    );
    assert_eq!(finished(job.resume().unwrap()), 7);
}

#[test]
fn forgotten_guard_does_not_block_pausing_in_the_next_job() {
    require_backend!();
    // One stack, so the next job runs on the same stack and slot.
    init_thread(1, 0).unwrap();
    // The forgotten guard still blocks its own job: `finished` proves the
    // pause was a no-op.
    let first = finished(
        start(None, || {
            std::mem::forget(block_pause());
            pause();
            "first"
        })
        .unwrap(),
    );
    assert_eq!(first, "first");
    let next = start(None, || {
        pause();
        "second"
    })
    .unwrap();
    let job = paused(next); // OpenSSL's per-thread counter would make this run to FINISH
    assert_eq!(finished(job.resume().unwrap()), "second");
    stackjob::cleanup_thread();
}

#[test]
fn forgotten_guard_in_an_outer_job_does_not_block_a_job_it_starts() {
    require_backend!();
    init_thread(0, 0).unwrap();
    let first = finished(
        start(None, || {
            std::mem::forget(block_pause());
            let inner = start(None, pause).unwrap();
            let inner_paused = matches!(inner, Step::Paused(_));
            drop(inner);
            inner_paused
        })
        .unwrap(),
    );
    assert!(first, "the outer job's block must not reach a job it starts");
    stackjob::cleanup_thread();
}

#[test]
fn block_in_an_inner_job_does_not_block_the_outer_job() {
    require_backend!();
    let outer = paused(
        start(None, || {
            let inner_value = finished(
                start(None, || {
                    let _guard = block_pause();
                    pause(); // no-op: blocked in the inner job
                    3
                })
                .unwrap(),
            );
            pause(); // the outer job is not blocked
            inner_value
        })
        .unwrap(),
    );
    assert_eq!(finished(outer.resume().unwrap()), 3);
}

#[test]
fn guard_taken_outside_a_job_does_not_block_a_job() {
    require_backend!();
    let guard = block_pause();
    let job = paused(start(None, pause).unwrap());
    drop(guard);
    finished(job.resume().unwrap());
}

#[test]
fn guard_taken_outside_a_job_does_not_unblock_a_job_when_dropped_inside_it() {
    require_backend!();
    let outside = block_pause();
    let value = finished(
        start(None, move || {
            let _mine = block_pause();
            drop(outside);
            pause(); // still blocked by `_mine`
            "still blocked"
        })
        .unwrap(),
    );
    assert_eq!(value, "still blocked");
}

#[test]
fn guard_outside_a_job_is_harmless_without_a_backend() {
    // Works whether or not jobs can run: the guard and pause are no-ops.
    let a = block_pause();
    let b = block_pause();
    pause();
    drop(b);
    drop(a);
    assert!(!stackjob::in_job());
}

#[test]
fn guard_dropped_after_its_job_ended_is_harmless() {
    require_backend!();
    init_thread(1, 0).unwrap();
    let leftover: BlockGuard = finished(start(None, block_pause).unwrap());
    // The next job on the same stack is not blocked by the old guard...
    let job = paused(start(None, pause).unwrap());
    // ...and dropping the old guard outside any job does nothing to it.
    drop(leftover);
    finished(job.resume().unwrap());
    let job = paused(start(None, pause).unwrap());
    finished(job.resume().unwrap());
    stackjob::cleanup_thread();
}

#[test]
fn guard_of_an_ended_job_dropped_inside_a_later_job_does_not_unblock_it() {
    require_backend!();
    init_thread(1, 0).unwrap();
    let leftover: BlockGuard = finished(start(None, block_pause).unwrap());
    let value = finished(
        start(None, move || {
            let _mine = block_pause();
            drop(leftover); // belongs to the ended job: must not lift `_mine`
            pause();
            "still blocked"
        })
        .unwrap(),
    );
    assert_eq!(value, "still blocked");
    // And the later job's own block ended with it.
    let job = paused(start(None, pause).unwrap());
    finished(job.resume().unwrap());
    stackjob::cleanup_thread();
}
