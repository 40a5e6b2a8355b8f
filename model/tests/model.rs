//! A model test: random sequences of starts, resumes, drops and wait-ctx
//! operations run against the crate and against a small model of the
//! contract, compared after every operation.
//!
//! The model holds the pool (`created`/`idle` against `max_size`), the
//! paused jobs (each with its scripted wait-ctx actions per segment), every
//! wait ctx (entries with their per-segment added/deleted flags and who still
//! holds the ctx), the cleanups that must have run, and how many job bodies
//! have been dropped. Every case builds its own pool and contexts, so a case
//! carries no state into the next and shrinking works.

use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestRunner};
use stackjob::{
    ChangedFds, Error, Job, PoolConfig, RawFd, Step, WaitCtx, WaitKey, current_wait_ctx, in_job, init_thread_with,
    pause, pool_stats, start,
};
use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::sync::{Arc, Mutex};

/// How many wait-ctx slots a case can use.
const CTX_SLOTS: usize = 3;
/// Keys are drawn from a small range so duplicates and clears hit.
const KEYS: usize = 4;

/// A wait-ctx action a job performs at the start of one of its segments.
#[derive(Clone, Debug)]
enum Action {
    Set { key: usize, fd: RawFd },
    Clear { key: usize },
}

#[derive(Clone, Debug)]
enum Op {
    /// Start a job that runs `segments.len()` segments (so pauses
    /// `segments.len() - 1` times), doing each segment's actions on its
    /// wait ctx (if it has one) before pausing or returning.
    Start { segments: Vec<Vec<Action>>, ctx: Option<usize> },
    /// Resume the paused job at this index (modulo their number).
    Resume { job: usize },
    /// Drop (cancel) the paused job at this index (modulo their number).
    Drop { job: usize },
    /// Drop the test's own handle of a ctx slot; jobs may still hold it.
    DropCtx { ctx: usize },
    /// Compare every query of every ctx and the pool in detail.
    CheckStats,
}

#[derive(Clone, Debug)]
struct Case {
    max_size: usize,
    init_size: usize,
    ops: Vec<Op>,
}

fn action() -> impl Strategy<Value = Action> {
    prop_oneof![
        (0..KEYS, 0..64 as RawFd).prop_map(|(key, fd)| Action::Set { key, fd }),
        (0..KEYS).prop_map(|key| Action::Clear { key }),
    ]
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        3 => (
            prop::collection::vec(prop::collection::vec(action(), 0..3), 1..=4),
            prop::option::weighted(0.8, 0..CTX_SLOTS),
        )
            .prop_map(|(segments, ctx)| Op::Start { segments, ctx }),
        4 => (0..8usize).prop_map(|job| Op::Resume { job }),
        1 => (0..8usize).prop_map(|job| Op::Drop { job }),
        1 => (0..CTX_SLOTS).prop_map(|ctx| Op::DropCtx { ctx }),
        1 => Just(Op::CheckStats),
    ]
}

fn case() -> impl Strategy<Value = Case> {
    (0..6usize)
        .prop_flat_map(|max_size| {
            let init = if max_size == 0 { 0..4 } else { 0..max_size + 1 };
            (Just(max_size), init, prop::collection::vec(op(), 0..40))
        })
        .prop_map(|(max_size, init_size, ops)| Case { max_size, init_size, ops })
}

// ---------------------------------------------------------------------------
// The model
// ---------------------------------------------------------------------------

/// A scripted action with the unique data word its entry carries (what
/// the entry's cleanup reports).
#[derive(Clone, Debug)]
enum Scripted {
    Set { key: usize, fd: RawFd, data: usize },
    Clear { key: usize },
}

#[derive(Debug)]
struct ModelEntry {
    key: usize,
    fd: RawFd,
    data: usize,
    added: bool,
    deleted: bool,
}

#[derive(Debug, Default)]
struct ModelCtx {
    /// Oldest first.
    entries: Vec<ModelEntry>,
    /// The test still holds its handle.
    handle: bool,
    /// Paused jobs holding the ctx.
    jobs: usize,
    /// The last holder let go: cleanups ran.
    gone: bool,
}

impl ModelCtx {
    fn begin_segment(&mut self) {
        self.entries.retain(|e| !e.deleted);
        for e in &mut self.entries {
            e.added = false;
        }
    }

    /// Applies one action; a clear returns whether it found an entry.
    fn apply(&mut self, action: &Scripted) -> Option<bool> {
        match *action {
            Scripted::Set { key, fd, data } => {
                self.entries.push(ModelEntry { key, fd, data, added: true, deleted: false });
                None
            }
            Scripted::Clear { key } => {
                let found = self.entries.iter().rposition(|e| e.key == key && !e.deleted);
                if let Some(i) = found {
                    if self.entries[i].added {
                        self.entries.remove(i);
                    } else {
                        self.entries[i].deleted = true;
                    }
                }
                Some(found.is_some())
            }
        }
    }

    fn live(&self) -> impl Iterator<Item = &ModelEntry> {
        self.entries.iter().rev().filter(|e| !e.deleted)
    }

    fn all_fds(&self) -> Vec<RawFd> {
        self.live().map(|e| e.fd).collect()
    }

    fn changed_fds(&self) -> ChangedFds {
        let newest_first = || self.entries.iter().rev();
        ChangedFds {
            added: newest_first().filter(|e| e.added && !e.deleted).map(|e| e.fd).collect(),
            deleted: newest_first().filter(|e| !e.added && e.deleted).map(|e| e.fd).collect(),
        }
    }

    fn get_fd(&self, key: usize) -> Option<(RawFd, usize)> {
        self.live().find(|e| e.key == key).map(|e| (e.fd, e.data))
    }

    /// The data words of the cleanups the crate runs when the ctx goes.
    fn cleanup_order(&self) -> Vec<usize> {
        self.live().map(|e| e.data).collect()
    }
}

#[derive(Debug)]
struct ModelJob {
    value: u64,
    segments: Vec<Vec<Scripted>>,
    next_segment: usize,
    ctx: Option<usize>,
}

#[derive(Debug, Default)]
struct Model {
    max_size: usize,
    created: usize,
    idle: usize,
    ctxs: Vec<ModelCtx>,
    /// Which ctx (index into `ctxs`) each slot's handle names.
    slots: [Option<usize>; CTX_SLOTS],
    jobs: Vec<ModelJob>,
    /// Job closures dropped: finished, cancelled, or refused with NoJobs.
    drops: usize,
    clear_results: Vec<bool>,
    cleanups: Vec<usize>,
}

enum Started {
    NoJobs { in_use: usize },
    Paused,
    Finished(u64),
}

impl Model {
    fn take_stack(&mut self) -> bool {
        if self.idle > 0 {
            self.idle -= 1;
        } else if self.max_size != 0 && self.created >= self.max_size {
            return false;
        } else {
            self.created += 1;
        }
        true
    }

    /// Runs the next segment of `job`; returns whether the job finished.
    fn run_segment(&mut self, job: &mut ModelJob) -> bool {
        if let Some(c) = job.ctx {
            let ctx = &mut self.ctxs[c];
            ctx.begin_segment();
            for action in &job.segments[job.next_segment] {
                if let Some(found) = ctx.apply(action) {
                    self.clear_results.push(found);
                }
            }
        }
        job.next_segment += 1;
        job.next_segment == job.segments.len()
    }

    /// A job ended (finished or cancelled): its stack and ctx go back.
    fn end_job(&mut self, job: &ModelJob) {
        self.idle += 1;
        self.drops += 1;
        if let Some(c) = job.ctx {
            self.ctxs[c].jobs -= 1;
            self.maybe_gone(c);
        }
    }

    fn maybe_gone(&mut self, c: usize) {
        let ctx = &mut self.ctxs[c];
        if !ctx.handle && ctx.jobs == 0 && !ctx.gone {
            ctx.gone = true;
            let order = ctx.cleanup_order();
            self.cleanups.extend(order);
        }
    }

    fn start(&mut self, mut job: ModelJob) -> Started {
        if !self.take_stack() {
            self.drops += 1; // the refused closure is dropped unrun
            return Started::NoJobs { in_use: self.created };
        }
        if let Some(c) = job.ctx {
            self.ctxs[c].jobs += 1;
        }
        if self.run_segment(&mut job) {
            self.end_job(&job);
            Started::Finished(job.value)
        } else {
            self.jobs.push(job);
            Started::Paused
        }
    }

    /// Resumes the job at `i`; returns its value if it finished.
    fn resume(&mut self, i: usize) -> Option<u64> {
        let mut job = self.jobs.remove(i);
        if self.run_segment(&mut job) {
            self.end_job(&job);
            Some(job.value)
        } else {
            self.jobs.insert(i, job);
            None
        }
    }

    /// Cancels the job at `i`: one more segment starts (resetting its ctx's
    /// change flags) and unwinds without running any scripted action.
    fn cancel(&mut self, i: usize) {
        let job = self.jobs.remove(i);
        if let Some(c) = job.ctx {
            self.ctxs[c].begin_segment();
        }
        self.end_job(&job);
    }

    fn drop_handle(&mut self, slot: usize) {
        if let Some(c) = self.slots[slot].take() {
            self.ctxs[c].handle = false;
            self.maybe_gone(c);
        }
    }

    fn in_use(&self) -> usize {
        self.created - self.idle
    }
}

// ---------------------------------------------------------------------------
// The real side
// ---------------------------------------------------------------------------

/// Counts a job closure's drop (whether it ran to the end, was cancelled,
/// or was never started).
struct DropCount(Rc<Cell<usize>>);

impl Drop for DropCount {
    fn drop(&mut self) {
        self.0.set(self.0.get() + 1);
    }
}

struct Real {
    slots: [Option<WaitCtx>; CTX_SLOTS],
    jobs: Vec<Job<u64>>,
    drops: Rc<Cell<usize>>,
    clear_results: Rc<RefCell<Vec<bool>>>,
    cleanups: Arc<Mutex<Vec<usize>>>,
}

impl Real {
    fn body(&self, value: u64, segments: Vec<Vec<Scripted>>) -> impl FnOnce() -> u64 + 'static {
        let guard = DropCount(self.drops.clone());
        let clears = self.clear_results.clone();
        let cleanups = self.cleanups.clone();
        move || {
            let _guard = guard;
            let last = segments.len() - 1;
            for (i, actions) in segments.into_iter().enumerate() {
                // The ctx clone is dropped before the pause, so only the
                // job's own reference stays while it is paused.
                if let Some(ctx) = current_wait_ctx() {
                    for action in actions {
                        match action {
                            Scripted::Set { key, fd, data } => {
                                let log = cleanups.clone();
                                let cleanup = Box::new(move |_: WaitKey, _: RawFd, data: usize| {
                                    log.lock().unwrap().push(data);
                                });
                                ctx.set_wait_fd(WaitKey::new(key), fd, data, Some(cleanup));
                            }
                            Scripted::Clear { key } => {
                                clears.borrow_mut().push(ctx.clear_fd(WaitKey::new(key)));
                            }
                        }
                    }
                }
                if i < last {
                    pause();
                }
            }
            value
        }
    }
}

// ---------------------------------------------------------------------------
// Running a case
// ---------------------------------------------------------------------------

fn check_ctx(real: &WaitCtx, model: &ModelCtx, what: &str) -> Result<(), TestCaseError> {
    prop_assert_eq!(real.all_fds(), model.all_fds(), "all_fds of {}", what);
    prop_assert_eq!(real.changed_fds(), model.changed_fds(), "changed_fds of {}", what);
    Ok(())
}

fn check_ctx_in_detail(real: &WaitCtx, model: &ModelCtx, what: &str) -> Result<(), TestCaseError> {
    check_ctx(real, model, what)?;
    prop_assert_eq!(real.fd_count(), model.all_fds().len(), "fd_count of {}", what);
    for key in 0..KEYS + 1 {
        prop_assert_eq!(real.get_fd(WaitKey::new(key)), model.get_fd(key), "get_fd({}) of {}", key, what);
    }
    Ok(())
}

fn check(real: &Real, model: &Model, detailed: bool) -> Result<(), TestCaseError> {
    let stats = pool_stats();
    prop_assert_eq!(
        (stats.idle, stats.in_use, stats.max_size),
        (model.idle, model.in_use(), model.max_size),
        "pool stats (idle, in_use, max_size)"
    );
    prop_assert!(!in_job());
    prop_assert_eq!(real.jobs.len(), model.jobs.len());
    prop_assert_eq!(real.drops.get(), model.drops, "job closures dropped");
    prop_assert_eq!(&*real.clear_results.borrow(), &model.clear_results, "clear_fd results");
    prop_assert_eq!(&*real.cleanups.lock().unwrap(), &model.cleanups, "cleanups run");
    for (slot, handle) in real.slots.iter().enumerate() {
        prop_assert_eq!(handle.is_some(), model.slots[slot].is_some());
        if let (Some(ctx), Some(c)) = (handle, model.slots[slot]) {
            let what = format!("ctx slot {slot}");
            if detailed {
                check_ctx_in_detail(ctx, &model.ctxs[c], &what)?;
            } else {
                check_ctx(ctx, &model.ctxs[c], &what)?;
            }
        }
    }
    for (i, (job, mjob)) in real.jobs.iter().zip(&model.jobs).enumerate() {
        prop_assert_eq!(job.wait_ctx().is_some(), mjob.ctx.is_some(), "job {} has a ctx", i);
        if let (Some(ctx), Some(c)) = (job.wait_ctx(), mjob.ctx) {
            check_ctx(ctx, &model.ctxs[c], &format!("the ctx of job {i}"))?;
            for (slot, handle) in real.slots.iter().enumerate() {
                if let Some(handle) = handle {
                    prop_assert_eq!(
                        handle.same_as(ctx),
                        model.slots[slot] == Some(c),
                        "job {} / slot {} ctx identity",
                        i,
                        slot
                    );
                }
            }
        }
    }
    Ok(())
}

fn run_case(case: &Case) -> Result<(), TestCaseError> {
    init_thread_with(&PoolConfig::new().max_size(case.max_size).init_size(case.init_size).stack_size(64 * 1024))
        .unwrap();
    let mut model =
        Model { max_size: case.max_size, created: case.init_size, idle: case.init_size, ..Model::default() };
    let mut real = Real {
        slots: Default::default(),
        jobs: Vec::new(),
        drops: Rc::new(Cell::new(0)),
        clear_results: Rc::default(),
        cleanups: Arc::default(),
    };
    let mut next_serial = 0usize;
    check(&real, &model, true)?;

    for op in &case.ops {
        match op {
            Op::Start { segments, ctx } => {
                let scripted: Vec<Vec<Scripted>> = segments
                    .iter()
                    .map(|actions| {
                        actions
                            .iter()
                            .map(|a| match *a {
                                Action::Set { key, fd } => {
                                    next_serial += 1;
                                    Scripted::Set { key, fd, data: next_serial }
                                }
                                Action::Clear { key } => Scripted::Clear { key },
                            })
                            .collect()
                    })
                    .collect();
                next_serial += 1;
                let value = ((next_serial as u64) << 8) | segments.len() as u64;
                // A slot without a handle gets a fresh ctx.
                let ctx_id = ctx.map(|slot| {
                    *model.slots[slot].get_or_insert_with(|| {
                        model.ctxs.push(ModelCtx { handle: true, ..ModelCtx::default() });
                        model.ctxs.len() - 1
                    })
                });
                let real_ctx = ctx.map(|slot| real.slots[slot].get_or_insert_with(WaitCtx::new).clone());

                let body = real.body(value, scripted.clone());
                let got = start(real_ctx.as_ref(), body);
                drop(real_ctx);
                let expected = model.start(ModelJob { value, segments: scripted, next_segment: 0, ctx: ctx_id });
                match (got, expected) {
                    (Err(Error::NoJobs { in_use, max_size }), Started::NoJobs { in_use: want }) => {
                        prop_assert_eq!((in_use, max_size), (want, case.max_size));
                    }
                    (Ok(Step::Paused(job)), Started::Paused) => real.jobs.push(job),
                    (Ok(Step::Finished(v)), Started::Finished(want)) => prop_assert_eq!(v, want),
                    (got, _) => {
                        let got = match got {
                            Ok(Step::Paused(_)) => "Paused".to_string(),
                            Ok(Step::Finished(v)) => format!("Finished({v})"),
                            Err(e) => format!("Err({e})"),
                        };
                        return Err(TestCaseError::fail(format!("start returned {got}, model disagrees")));
                    }
                }
            }
            Op::Resume { job } => {
                if real.jobs.is_empty() {
                    continue;
                }
                let i = job % real.jobs.len();
                let step = real.jobs.remove(i).resume().unwrap();
                match (step, model.resume(i)) {
                    (Step::Paused(job), None) => real.jobs.insert(i, job),
                    (Step::Finished(v), Some(want)) => prop_assert_eq!(v, want),
                    (Step::Paused(_), Some(_)) => {
                        return Err(TestCaseError::fail("resume paused, the model finished"));
                    }
                    (Step::Finished(_), None) => {
                        return Err(TestCaseError::fail("resume finished, the model paused"));
                    }
                }
            }
            Op::Drop { job } => {
                if real.jobs.is_empty() {
                    continue;
                }
                let i = job % real.jobs.len();
                drop(real.jobs.remove(i));
                model.cancel(i);
            }
            Op::DropCtx { ctx } => {
                real.slots[*ctx] = None;
                model.drop_handle(*ctx);
            }
            Op::CheckStats => {}
        }
        check(&real, &model, matches!(op, Op::CheckStats))?;
    }

    // Tear down: cancel every job, then let go of every handle; every
    // cleanup and every closure drop must have happened by then.
    while !real.jobs.is_empty() {
        drop(real.jobs.pop());
        model.cancel(model.jobs.len() - 1);
        check(&real, &model, false)?;
    }
    for slot in 0..CTX_SLOTS {
        real.slots[slot] = None;
        model.drop_handle(slot);
    }
    check(&real, &model, true)?;
    prop_assert!(model.ctxs.iter().all(|c| c.gone), "the model let go of every ctx");
    stackjob::cleanup_thread();
    Ok(())
}

#[test]
fn crate_agrees_with_the_model_on_random_job_and_wait_ctx_sequences() {
    if !stackjob::is_capable() {
        eprintln!(
            "skipping crate_agrees_with_the_model_on_random_job_and_wait_ctx_sequences: \
             stackjob::is_capable() is false here (backend `{}`), so no job can run",
            stackjob::backend()
        );
        return;
    }
    let quarantined = stackjob::quarantined_jobs();
    let mut runner = TestRunner::new(Config { cases: 256, ..Config::default() });
    if let Err(err) = runner.run(&case(), |case| run_case(&case)) {
        panic!("{err}");
    }
    assert_eq!(stackjob::quarantined_jobs(), quarantined, "no job was quarantined: every cancelled job unwound");
}
