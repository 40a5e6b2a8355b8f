//! Jobs started from inside a running job: the inner job's pause returns to
//! the outer job, which may resume it, pause itself, or hand it on.

#[macro_use]
mod common;
use common::{finished, paused};
use stackjob::{Job, Step, WaitCtx, current_wait_ctx, in_job, init_thread, pause, pool_stats, start};
use std::cell::{Cell, RefCell};
use std::rc::Rc;

type Log = Rc<RefCell<Vec<&'static str>>>;

fn is_current(ctx: &WaitCtx) -> bool {
    current_wait_ctx().is_some_and(|c| c.same_as(ctx))
}

#[test]
fn inner_pause_returns_to_the_outer_job_which_resumes_it() {
    require_backend!();
    let log: Log = Rc::default();
    let (l_out, l_in) = (log.clone(), log.clone());
    let value = finished(
        start(None, move || {
            let step = start(None, move || {
                l_in.borrow_mut().push("inner runs");
                pause();
                l_in.borrow_mut().push("inner resumed");
                20
            })
            .unwrap();
            let Step::Paused(inner) = step else {
                return None;
            };
            l_out.borrow_mut().push("outer sees the inner pause");
            let v = finished(inner.resume().unwrap());
            l_out.borrow_mut().push("outer has the inner result");
            Some(v + 1)
        })
        .unwrap(),
    );
    assert_eq!(value, Some(21), "the outer job must see Step::Paused from the inner start");
    assert_eq!(
        *log.borrow(),
        ["inner runs", "outer sees the inner pause", "inner resumed", "outer has the inner result"]
    );
}

#[test]
fn outer_job_can_pause_while_holding_a_paused_inner_job() {
    require_backend!();
    init_thread(0, 0).unwrap();
    let inner_done = Rc::new(Cell::new(false));
    let flag = inner_done.clone();
    let outer = paused(
        start(None, move || {
            let inner = paused(
                start(None, move || {
                    pause();
                    flag.set(true);
                    "inner"
                })
                .unwrap(),
            );
            pause();
            finished(inner.resume().unwrap())
        })
        .unwrap(),
    );
    assert!(!inner_done.get(), "the inner job must stay paused while the outer is");
    assert_eq!(pool_stats().in_use, 2, "both jobs hold their stacks");
    assert!(!in_job());
    assert_eq!(finished(outer.resume().unwrap()), "inner");
    assert!(inner_done.get());
    assert_eq!((pool_stats().in_use, pool_stats().idle), (0, 2));
    stackjob::cleanup_thread();
}

#[test]
fn outer_job_can_return_the_paused_inner_job_for_the_caller_to_resume() {
    require_backend!();
    init_thread(0, 0).unwrap();
    let ctx = WaitCtx::new();
    let inner_ctx = ctx.clone();
    let inner: Job<(bool, bool, u32)> = finished(
        start(None, move || {
            let seen = inner_ctx.clone();
            let step = start(Some(&inner_ctx), move || {
                pause();
                (in_job(), is_current(&seen), 99)
            });
            paused(step.unwrap())
        })
        .unwrap(),
    );
    assert!(inner.wait_ctx().is_some_and(|c| c.same_as(&ctx)));
    assert_eq!((pool_stats().in_use, pool_stats().idle), (1, 1), "the outer stack is back, the inner held");
    assert_eq!(finished(inner.resume().unwrap()), (true, true, 99));
    assert!(!in_job());
    assert_eq!((pool_stats().in_use, pool_stats().idle), (0, 2));
    stackjob::cleanup_thread();
}

#[test]
fn outer_job_is_current_again_after_the_inner_pauses_and_returns() {
    require_backend!();
    let outer_ctx = WaitCtx::new();
    let inner_ctx = WaitCtx::new();
    let (oc, ic) = (outer_ctx.clone(), inner_ctx.clone());
    let checks = finished(
        start(Some(&outer_ctx), move || {
            let mut checks = vec![in_job() && is_current(&oc)];
            let ic2 = ic.clone();
            let inner = paused(
                start(Some(&ic), move || {
                    let first = in_job() && is_current(&ic2);
                    pause();
                    first && in_job() && is_current(&ic2)
                })
                .unwrap(),
            );
            checks.push(in_job() && is_current(&oc)); // after the inner paused
            checks.push(finished(inner.resume().unwrap())); // the inner's own view
            checks.push(in_job() && is_current(&oc)); // after the inner returned
            checks
        })
        .unwrap(),
    );
    assert_eq!(checks, [true; 4]);
    assert!(!in_job());
    assert!(current_wait_ctx().is_none());
}

#[test]
fn inner_job_without_a_ctx_does_not_see_the_outer_ctx() {
    require_backend!();
    let ctx = WaitCtx::new();
    let outer_ctx = ctx.clone();
    let (inner_sees, outer_sees) = finished(
        start(Some(&ctx), move || {
            let inner_sees = finished(start(None, || current_wait_ctx().is_some()).unwrap());
            (inner_sees, is_current(&outer_ctx))
        })
        .unwrap(),
    );
    assert!(!inner_sees, "a job started with None has no wait ctx, even nested");
    assert!(outer_sees);
}

#[test]
fn three_deep_nesting_pauses_and_resumes_at_every_level() {
    require_backend!();
    init_thread(0, 0).unwrap();
    let log: Log = Rc::default();
    let (la, lb, lc) = (log.clone(), log.clone(), log.clone());
    let (ca, cb, cc) = (WaitCtx::new(), WaitCtx::new(), WaitCtx::new());
    let (ca2, cb2, cc2) = (ca.clone(), cb.clone(), cc.clone());
    let mut step = start(Some(&ca), move || {
        let b = paused(
            start(Some(&cb), move || {
                let c = paused(
                    start(Some(&cc), move || {
                        lc.borrow_mut().push("c pauses");
                        pause();
                        assert!(is_current(&cc2));
                        lc.borrow_mut().push("c ends");
                        1
                    })
                    .unwrap(),
                );
                assert!(is_current(&cb2));
                lb.borrow_mut().push("b pauses holding c");
                pause();
                let v = finished(c.resume().unwrap());
                assert!(is_current(&cb2));
                lb.borrow_mut().push("b ends");
                v + 10
            })
            .unwrap(),
        );
        assert!(is_current(&ca2));
        la.borrow_mut().push("a pauses holding b");
        pause();
        let v = finished(b.resume().unwrap());
        assert!(is_current(&ca2));
        la.borrow_mut().push("a ends");
        v + 100
    })
    .unwrap();
    let mut pauses = 0;
    let value = loop {
        match step {
            Step::Paused(job) => {
                pauses += 1;
                assert_eq!(pool_stats().in_use, 3);
                step = job.resume().unwrap();
            }
            Step::Finished(v) => break v,
        }
    };
    assert_eq!((value, pauses), (111, 1));
    assert_eq!(*log.borrow(), ["c pauses", "b pauses holding c", "a pauses holding b", "c ends", "b ends", "a ends"]);
    assert_eq!((pool_stats().in_use, pool_stats().idle), (0, 3));
    stackjob::cleanup_thread();
}

#[test]
fn outer_job_dropping_a_paused_inner_job_cancels_it_and_continues() {
    require_backend!();
    init_thread(0, 0).unwrap();
    struct Flag(Rc<Cell<u32>>);
    impl Drop for Flag {
        fn drop(&mut self) {
            self.0.set(self.0.get() + 1);
        }
    }
    let drops = Rc::new(Cell::new(0));
    let after_pause = Rc::new(Cell::new(false));
    let (d, a) = (drops.clone(), after_pause.clone());
    let value = finished(
        start(None, move || {
            let inner = paused(
                start(None, move || {
                    let _f = Flag(d);
                    pause();
                    a.set(true);
                })
                .unwrap(),
            );
            drop(inner);
            in_job()
        })
        .unwrap(),
    );
    assert!(value, "the outer job continues after cancelling the inner");
    assert_eq!(drops.get(), 1);
    assert!(!after_pause.get());
    assert_eq!((pool_stats().in_use, pool_stats().idle), (0, 2));
    stackjob::cleanup_thread();
}

struct Counter(Rc<Cell<u32>>);
impl Drop for Counter {
    fn drop(&mut self) {
        self.0.set(self.0.get() + 1);
    }
}

/// Starts an outer job that holds a paused inner job (each with a `Counter`
/// on its stack) and pauses; returns the outer job, the drop counter and a
/// flag set if code after either pause ran.
fn outer_holding_inner() -> (Job<()>, Rc<Cell<u32>>, Rc<Cell<bool>>) {
    let drops = Rc::new(Cell::new(0));
    let resumed = Rc::new(Cell::new(false));
    let (d_out, d_in, r_out, r_in) = (drops.clone(), drops.clone(), resumed.clone(), resumed.clone());
    let outer = paused(
        start(None, move || {
            let _mine = Counter(d_out);
            let _inner = paused(
                start(None, move || {
                    let _theirs = Counter(d_in);
                    pause();
                    r_in.set(true);
                })
                .unwrap(),
            );
            pause();
            r_out.set(true);
        })
        .unwrap(),
    );
    (outer, drops, resumed)
}

#[test]
fn dropping_an_outer_job_holding_a_paused_inner_job_returns_without_resuming_either() {
    require_backend!();
    init_thread(0, 0).unwrap();
    let (outer, drops, resumed) = outer_holding_inner();
    assert_eq!(pool_stats().in_use, 2);
    drop(outer);
    assert!(!resumed.get(), "no code after a pause may run when a job is cancelled");
    assert!(drops.get() >= 1, "the outer job's destructors must run");
    assert_eq!(pool_stats().in_use, 0, "neither job may keep counting against the pool");
    assert!(!std::thread::panicking());
    stackjob::cleanup_thread();
}

#[test]
fn dropping_an_outer_job_holding_a_paused_inner_job_cancels_both() {
    require_backend!();
    init_thread(0, 0).unwrap();
    let (outer, drops, resumed) = outer_holding_inner();
    drop(outer);
    assert!(!resumed.get());
    assert_eq!(drops.get(), 2, "the destructors on both stacks must run");
    assert_eq!((pool_stats().in_use, pool_stats().idle), (0, 2), "both stacks go back to the pool");
    stackjob::cleanup_thread();
}

/// Found by the fuzzer: an inner job cancelled while its outer job unwinds
/// (here: the outer is cancelled) whose destructor pauses must not be
/// suspended mid-unwind; that used to abort with "panic in a destructor
/// during cleanup".
#[test]
fn inner_job_with_a_pausing_destructor_is_cancelled_cleanly_inside_an_outer_cancellation() {
    if !stackjob::is_capable() {
        eprintln!("skipped: no stackjob backend on this target");
        return;
    }
    struct PausesOnDrop(Rc<Cell<u32>>);
    impl Drop for PausesOnDrop {
        fn drop(&mut self) {
            pause(); // a no-op: the job is unwinding
            self.0.set(self.0.get() + 1);
        }
    }
    let dropped = Rc::new(Cell::new(0));
    let d = dropped.clone();
    let Step::Paused(outer) = start(None, move || {
        let d2 = d.clone();
        let Step::Paused(inner) = start(None, move || {
            let _d = PausesOnDrop(d2);
            pause();
        })
        .unwrap() else {
            unreachable!()
        };
        let _outer_guard = PausesOnDrop(d);
        pause();
        drop(inner);
    })
    .unwrap() else {
        panic!("outer should pause")
    };
    drop(outer);
    assert_eq!(dropped.get(), 2, "both destructors ran to their end");
}
