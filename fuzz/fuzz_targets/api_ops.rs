//! Fuzzes stackjob's whole public API against a model of its contract.
//!
//! The input bytes are decoded into a small program: top-level operations
//! (start a job, resume or drop a paused one, wait-ctx operations, pool
//! re-initialisation and cleanup, probes) and, for every job, a scripted
//! body (pause, block/unblock pausing, a destructor that pauses, one that
//! resumes a held job, wait-ctx operations on its own or another ctx,
//! nested starts, resuming, dropping, adopting and handing over other paused
//! jobs, panics, `catch_unwind` blocks, pool operations, probes).
//!
//! The program runs twice. First on the model, a plain interpreter of the
//! contract that never switches stacks (a paused job is a program counter),
//! which yields the trace of events the crate must produce: every `Step`,
//! returned value, error, fd list, cleanup call, callback call, body drop,
//! pool snapshot, in that order. Then on the crate, with real jobs whose
//! bodies record the same events. After every top-level operation the two
//! traces are compared, and any divergence panics with the program and the
//! first differing event, which libFuzzer reports as a crash.
//!
//! Work per input is bounded: at most `MAX_OPS` top-level operations,
//! `MAX_ACTIONS` body actions in all, `MAX_JOBS` jobs and `MAX_DEPTH` levels
//! of nested job bodies.

#![no_main]

use libfuzzer_sys::fuzz_target;
use stackjob::{
    BlockGuard, Cleanup, DEFAULT_STACK_SIZE, Error, Job, MAX_STACK_SIZE, MIN_STACK_SIZE, PoolConfig, RawFd, Status,
    Step, WaitCtx, WaitKey, block_pause, cleanup_thread, current_wait_ctx, in_job, init_thread_with, pause, pool_stats,
    quarantined_jobs, start,
};
use std::cell::RefCell;
use std::panic::{self, AssertUnwindSafe, catch_unwind, panic_any, resume_unwind};
use std::rc::Rc;
use std::sync::{Arc, Once};

/// Top-level operations per input.
const MAX_OPS: usize = 64;
/// Body actions per input, all jobs together.
const MAX_ACTIONS: usize = 192;
/// Jobs per input (each job spec runs at most once, so this bounds the jobs
/// alive at once too).
const MAX_JOBS: u32 = 32;
/// Levels of job bodies nested in job bodies.
const MAX_DEPTH: usize = 4;
/// Levels of `catch_unwind` blocks within one body.
const MAX_TRY_DEPTH: usize = 2;
/// Wait-ctx handles the driver keeps.
const SLOTS: usize = 3;
/// Keys come from a small range so that duplicates and clears hit.
const KEYS: usize = 4;
/// Stack sizes the pool is re-initialised with: valid ones (some needing
/// rounding) and invalid ones, which must fail with `InvalidStackSize`.
const STACK_SIZES: [usize; 12] = [
    MIN_STACK_SIZE,
    MIN_STACK_SIZE + 1,
    32 * 1024,
    64 * 1024 - 3,
    DEFAULT_STACK_SIZE,
    DEFAULT_STACK_SIZE,
    MAX_STACK_SIZE,
    0,
    1,
    MIN_STACK_SIZE - 1,
    MAX_STACK_SIZE + 1,
    usize::MAX,
];

const STATUSES: [Status; 4] = [Status::Unsupported, Status::Err, Status::Ok, Status::Eagain];

// ---------------------------------------------------------------------------
// The program
// ---------------------------------------------------------------------------

/// A job: its serial (unique in the input; also its id in events), its
/// body's actions and what it does with the paused jobs it still holds when
/// the actions are done (return them to its resumer, or drop them).
#[derive(Debug)]
struct Spec {
    serial: u32,
    actions: Rc<[Action]>,
    returns_held: bool,
}

/// Which wait ctx an operation uses.
#[derive(Clone, Copy, Debug)]
enum CtxSel {
    None,
    /// The driver's handle in this slot (none if the slot is empty).
    Slot(usize),
    /// The running job's own ctx (`current_wait_ctx`).
    Current,
}

#[derive(Clone, Copy, Debug)]
enum CtxOp {
    Set { key: usize, fd: RawFd, data: usize, cleanup: bool },
    Get { key: usize },
    All,
    Count,
    Changed,
    Clear { key: usize },
    SetCallback { tag: Option<u32> },
    Callback,
    SetStatus(Status),
    GetStatus,
}

#[derive(Clone, Copy, Debug)]
enum PoolOp {
    Init { max_size: usize, init_size: usize, stack_size: usize, scrub: bool },
    Cleanup,
    Stats,
}

/// One step of a job body. `aid`s are unique in the input and name the
/// step in events.
#[derive(Clone, Debug)]
enum Action {
    Pause {
        aid: u32,
    },
    /// Take a `block_pause` guard (held until `Unblock` or the body ends).
    Block,
    /// Drop the newest guard.
    Unblock,
    /// Keep a value whose destructor calls `pause` (it runs when the body
    /// ends: suspends the job then, unless blocked or unwinding).
    ArmDropper {
        aid: u32,
    },
    /// Move a held job (index modulo their number) into a value whose
    /// destructor resumes it, like `Resume` (catching a panic), and drops
    /// what it gives back. It runs with the droppers, in arming order: also
    /// while the body unwinds, when the resumed job cannot pause.
    ArmResumer {
        aid: u32,
        idx: usize,
    },
    Ctx {
        aid: u32,
        target: CtxSel,
        op: CtxOp,
    },
    /// Start a nested job; a paused one is held by this body.
    Start {
        aid: u32,
        spec: Rc<Spec>,
        ctx: CtxSel,
    },
    /// Resume / drop a held job (index modulo their number).
    Resume {
        aid: u32,
        idx: usize,
    },
    Drop {
        aid: u32,
        idx: usize,
    },
    /// Take a job from the driver's list / hand a held job to it. Inside a
    /// cancellation that `cleanup_thread` runs, `Adopt` may take the handle
    /// of the very job being cancelled (see `MDead::Cancelling`).
    Adopt {
        aid: u32,
        idx: usize,
    },
    Give {
        aid: u32,
        idx: usize,
    },
    Panic,
    Pool {
        aid: u32,
        op: PoolOp,
    },
    Probe {
        aid: u32,
    },
    /// Run the actions inside `catch_unwind`, catching body panics.
    Try {
        aid: u32,
        actions: Rc<[Action]>,
    },
}

/// A top-level operation, run by the driver outside any job.
#[derive(Debug)]
enum Op {
    /// Start a job with the ctx of a slot (a fresh one if the slot is empty).
    Start {
        aid: u32,
        spec: Rc<Spec>,
        slot: Option<usize>,
    },
    Resume {
        aid: u32,
        idx: usize,
    },
    Drop {
        aid: u32,
        idx: usize,
    },
    NewCtx {
        slot: usize,
    },
    DropCtx {
        slot: usize,
    },
    Ctx {
        aid: u32,
        slot: usize,
        op: CtxOp,
    },
    Pool {
        aid: u32,
        op: PoolOp,
    },
    /// `pause` outside a job (optionally under a `block_pause` guard): a no-op.
    Pause {
        aid: u32,
        blocked: bool,
    },
    Probe {
        aid: u32,
    },
    /// Every paused job's `wait_ctx`.
    Inspect,
}

#[derive(Debug)]
struct Program {
    ops: Vec<Op>,
}

/// Decodes bytes into a program. Every byte sequence is a valid program;
/// past the end, bytes read as zero.
struct Parser<'a> {
    data: &'a [u8],
    pos: usize,
    actions: usize,
    jobs: u32,
    next_id: u32,
}

impl Parser<'_> {
    fn byte(&mut self) -> u8 {
        let b = self.data.get(self.pos).copied().unwrap_or(0);
        self.pos = self.pos.saturating_add(1);
        b
    }

    fn below(&mut self, n: usize) -> usize {
        self.byte() as usize % n
    }

    /// A fresh id, for aids, job serials, data words and callback tags alike.
    fn id(&mut self) -> u32 {
        self.next_id += 1;
        self.next_id
    }

    fn program(&mut self) -> Program {
        let mut ops = Vec::new();
        while self.pos < self.data.len() && ops.len() < MAX_OPS {
            let op = self.op();
            ops.push(op);
        }
        Program { ops }
    }

    fn op(&mut self) -> Op {
        let aid = self.id();
        match self.byte() % 16 {
            0..=2 if self.jobs < MAX_JOBS => {
                let slot = self.below(SLOTS + 1);
                let spec = self.spec(0);
                Op::Start { aid, spec, slot: (slot < SLOTS).then_some(slot) }
            }
            0..=5 => Op::Resume { aid, idx: self.below(256) },
            6 | 7 => Op::Drop { aid, idx: self.below(256) },
            8 => Op::NewCtx { slot: self.below(SLOTS) },
            9 => Op::DropCtx { slot: self.below(SLOTS) },
            10 | 11 => {
                let slot = self.below(SLOTS);
                Op::Ctx { aid, slot, op: self.ctx_op() }
            }
            12 => Op::Pool { aid, op: self.pool_op() },
            13 => Op::Pause { aid, blocked: self.byte() & 1 == 1 },
            14 => Op::Probe { aid },
            _ => Op::Inspect,
        }
    }

    fn spec(&mut self, depth: usize) -> Rc<Spec> {
        self.jobs += 1;
        let serial = self.id();
        let shape = self.byte();
        let actions = self.actions((shape >> 1) as usize % 8, depth, 0);
        Rc::new(Spec { serial, actions, returns_held: shape & 1 == 1 })
    }

    fn actions(&mut self, n: usize, depth: usize, try_depth: usize) -> Rc<[Action]> {
        let mut actions = Vec::new();
        for _ in 0..n {
            if self.actions >= MAX_ACTIONS {
                break;
            }
            self.actions += 1;
            let action = self.action(depth, try_depth);
            actions.push(action);
        }
        actions.into()
    }

    fn action(&mut self, depth: usize, try_depth: usize) -> Action {
        let aid = self.id();
        match self.byte() % 20 {
            4 => Action::Block,
            5 => Action::Unblock,
            6 => Action::ArmDropper { aid },
            7 | 8 => {
                let target = self.ctx_sel();
                Action::Ctx { aid, target, op: self.ctx_op() }
            }
            9 | 10 if depth + 1 < MAX_DEPTH && self.jobs < MAX_JOBS => {
                let ctx = self.ctx_sel();
                Action::Start { aid, spec: self.spec(depth + 1), ctx }
            }
            11 => Action::Resume { aid, idx: self.below(256) },
            12 => Action::Drop { aid, idx: self.below(256) },
            13 => Action::Adopt { aid, idx: self.below(256) },
            14 => Action::Give { aid, idx: self.below(256) },
            15 => Action::Panic,
            16 => Action::Pool { aid, op: self.pool_op() },
            17 => Action::Probe { aid },
            18 if try_depth < MAX_TRY_DEPTH => {
                let n = self.below(4);
                Action::Try { aid, actions: self.actions(n, depth, try_depth + 1) }
            }
            19 => Action::ArmResumer { aid, idx: self.below(256) },
            _ => Action::Pause { aid },
        }
    }

    fn ctx_sel(&mut self) -> CtxSel {
        match self.below(SLOTS + 2) {
            0 => CtxSel::None,
            1 => CtxSel::Current,
            s => CtxSel::Slot(s - 2),
        }
    }

    fn ctx_op(&mut self) -> CtxOp {
        match self.byte() % 12 {
            0..=2 => {
                let key = self.below(KEYS);
                let fd = self.byte() as RawFd - 4;
                let data = self.id() as usize;
                CtxOp::Set { key, fd, data, cleanup: !self.byte().is_multiple_of(4) }
            }
            3 => CtxOp::Get { key: self.below(KEYS + 1) },
            4 => CtxOp::All,
            5 => CtxOp::Count,
            6 => CtxOp::Changed,
            7 | 8 => CtxOp::Clear { key: self.below(KEYS + 1) },
            9 => {
                let tag = (self.byte() & 1 == 1).then(|| self.id());
                CtxOp::SetCallback { tag }
            }
            10 => CtxOp::Callback,
            _ => match self.below(5) {
                4 => CtxOp::GetStatus,
                s => CtxOp::SetStatus(STATUSES[s]),
            },
        }
    }

    fn pool_op(&mut self) -> PoolOp {
        match self.byte() % 4 {
            0 | 1 => PoolOp::Init {
                max_size: self.below(6),
                init_size: self.below(7),
                stack_size: STACK_SIZES[self.below(STACK_SIZES.len())],
                scrub: self.byte() & 1 == 1,
            },
            2 => PoolOp::Cleanup,
            _ => PoolOp::Stats,
        }
    }
}

// ---------------------------------------------------------------------------
// Events: what both sides record, compared one for one
// ---------------------------------------------------------------------------

#[derive(Clone, Debug, PartialEq, Eq)]
enum Ev {
    /// The driver finished top-level operation `i` (or the teardown).
    OpDone(usize),
    /// A job body began to run.
    BodyRun(u32),
    /// A job's closure was dropped: after running, when cancelled, when it
    /// panicked, or unrun when the start was refused.
    Dropped(u32),
    PauseCall(u32),
    PauseRet(u32),
    DropperEnter(u32),
    DropperExit(u32),
    /// What `start` / `resume` of job `job` by step `aid` gave.
    Step {
        aid: u32,
        job: u32,
        step: StepEv,
    },
    /// The step had no job to work on (empty list).
    Nothing(u32),
    /// Dropping the paused job returned.
    Cancelled {
        aid: u32,
        job: u32,
    },
    Adopted {
        aid: u32,
        job: u32,
    },
    Gave {
        aid: u32,
        job: u32,
    },
    Ctx {
        aid: u32,
        res: CtxRes,
    },
    Cleanup {
        key: usize,
        fd: RawFd,
        data: usize,
    },
    CallbackRan(u32),
    Pool {
        aid: u32,
        res: PoolRes,
    },
    /// `in_job()` and the running job's ctx (see `Model::mask`).
    Probe {
        aid: u32,
        in_job: bool,
        ctx: u8,
    },
    /// A paused job's `wait_ctx()` (see `Model::mask`).
    JobCtx {
        job: u32,
        ctx: u8,
    },
    /// A `Try` block caught the panic of job `payload`.
    Caught {
        aid: u32,
        payload: u32,
    },
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum StepEv {
    Paused,
    /// The value and the serials of the paused jobs the body returned.
    Finished {
        value: u64,
        returned: Vec<u32>,
    },
    NoJobs {
        in_use: usize,
        max_size: usize,
    },
    /// Re-raised panic, with the serial of the job that panicked
    /// (`u32::MAX`: not a body panic).
    Panicked(u32),
    /// `Error::Cancelled`: `cleanup_thread` cancelled the job while it was
    /// paused, and its handle is dead.
    Cancelled,
    /// Any other error (never expected).
    Error(String),
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum CtxRes {
    /// No ctx to work on (empty slot, or a job without one).
    NoCtx,
    Done,
    Fd(Option<(RawFd, usize)>),
    Fds(Vec<RawFd>),
    Count(usize),
    Changed {
        added: Vec<RawFd>,
        deleted: Vec<RawFd>,
    },
    Cleared(bool),
    /// `callback()` returned one (it is called next, recording `CallbackRan`).
    Callback(bool),
    Status(Status),
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum PoolRes {
    Ok,
    InvalidPoolSize { max_size: usize, init_size: usize },
    InvalidStackSize { requested: usize },
    Error(String),
    Cleaned,
    Stats { idle: usize, in_use: usize, max_size: usize, stack_size: usize, scrub: bool, quarantined: u64 },
}

/// What a job returns when it finishes.
fn value_of(serial: u32) -> u64 {
    0x5eed_0000_0000 | u64::from(serial)
}

// ---------------------------------------------------------------------------
// The model
// ---------------------------------------------------------------------------

struct MEntry {
    key: usize,
    fd: RawFd,
    data: usize,
    cleanup: bool,
    /// Registered in the current segment.
    added: bool,
    /// Cleared in the current segment (an entry from before it).
    deleted: bool,
}

#[derive(Default)]
struct MCtx {
    /// Oldest first.
    entries: Vec<MEntry>,
    callback: Option<u32>,
    status: Status,
    /// The driver holds a handle (in a slot).
    handle: bool,
    /// Jobs started with this ctx that have not ended.
    jobs: usize,
    /// The last holder let go: the cleanups ran.
    gone: bool,
}

impl MCtx {
    fn begin_segment(&mut self) {
        self.entries.retain(|e| !e.deleted);
        for e in &mut self.entries {
            e.added = false;
        }
    }

    fn live(&self) -> impl Iterator<Item = &MEntry> {
        self.entries.iter().rev().filter(|e| !e.deleted)
    }
}

struct MPool {
    epoch: u64,
    created: usize,
    idle: usize,
    max_size: usize,
    stack_size: usize,
    scrub: bool,
}

#[derive(Clone, Copy, Debug)]
enum PausedAt {
    Action(u32),
    /// In the destructor of the body's dropper number k.
    Dropper(usize),
}

/// A value with a destructor, armed by a body.
#[derive(Clone, Copy, Debug)]
enum MDropper {
    /// `ArmDropper`: pauses.
    Pause(u32),
    /// `ArmResumer`: resumes the held job `job`.
    Resume { aid: u32, job: u32 },
}

struct Frame {
    actions: Rc<[Action]>,
    pc: usize,
    /// The `Try` step this frame runs (0: the body itself).
    try_aid: u32,
}

struct MJob {
    spec: Rc<Spec>,
    ctx: Option<usize>,
    /// The pool instance its stack came from.
    epoch: u64,
    frames: Vec<Frame>,
    held: Vec<u32>,
    droppers: Vec<MDropper>,
    guards: usize,
    /// Set once the actions are done: the next dropper to run.
    end: Option<usize>,
    /// Held jobs the body returns, once the actions are done.
    returned: Vec<u32>,
    paused: Option<PausedAt>,
}

/// What `cleanup_thread` did to a job whose handle is still held
/// somewhere (the crate's `Dead`; the harness never makes a job refuse its
/// cancellation, so there is no quarantined state).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum MDead {
    /// Nothing: the handle is live.
    No,
    /// `cleanup_thread` is cancelling the job right now, and code its
    /// unwind runs may reach the handle: resuming it gives
    /// `Error::Cancelled`, dropping it does nothing, and neither enters the
    /// job nor lets go of its stack or ctx clone. `orphaned`: the handle went
    /// (dropped or resumed), so when the cancellation ends the canceller
    /// frees the stack and lets go of the ctx clone.
    Cancelling { orphaned: bool },
    /// Cancelled: the handle is dead, and keeps the stack and the ctx clone
    /// until it is dropped or resumed.
    Cancelled,
}

/// How a run segment of a model job ended.
enum Seg {
    Paused,
    Finished(Vec<u32>),
    Panicked(u32),
}

/// What `start` / `resume` returns in the model (a panic is `Err(serial)`).
enum Started {
    Paused,
    Finished(Vec<u32>),
    NoJobs {
        in_use: usize,
        max_size: usize,
    },
    /// The handle was dead (`Error::Cancelled`).
    Dead,
}

enum Flow {
    Next,
    Pause,
    Raise(u32),
}

struct Model {
    ev: Vec<Ev>,
    page: usize,
    pool: Option<MPool>,
    next_epoch: u64,
    ctxs: Vec<MCtx>,
    slots: [Option<usize>; SLOTS],
    /// Indexed by serial.
    jobs: Vec<Option<MJob>>,
    /// The driver's paused jobs.
    top: Vec<u32>,
    /// Jobs running, innermost last.
    running: Vec<u32>,
    /// The thread's parked jobs, oldest first: a job enters when its first
    /// pause returns to its starter or resumer, and leaves when it ends, or
    /// when `cleanup_thread` meets it (a running job it meets enters again,
    /// as the newest, at its next pause).
    parked: Vec<u32>,
    /// Indexed by serial: whether `cleanup_thread` is cancelling or has
    /// cancelled the job while it was paused (see `MDead`).
    dead: Vec<MDead>,
    /// The ctx a dead handle still holds: released when the handle is
    /// dropped or resumed (a borrow from `Job::wait_ctx` may outlive the
    /// cancellation, so the crate keeps the clone until then).
    dead_ctx: Vec<Option<usize>>,
    /// Unwinds in flight (the thread is panicking while > 0; `pause` does
    /// nothing then).
    unwinding: usize,
}

impl Model {
    fn new(page: usize, ids: u32) -> Model {
        Model {
            ev: Vec::new(),
            page,
            pool: None,
            next_epoch: 1,
            ctxs: Vec::new(),
            slots: [None; SLOTS],
            jobs: (0..=ids).map(|_| None).collect(),
            top: Vec::new(),
            running: Vec::new(),
            parked: Vec::new(),
            dead: vec![MDead::No; ids as usize + 1],
            dead_ctx: vec![None; ids as usize + 1],
            unwinding: 0,
        }
    }

    fn ev(&mut self, e: Ev) {
        self.ev.push(e);
    }

    fn job(&self, j: u32) -> &MJob {
        self.jobs[j as usize].as_ref().expect("model: job is alive")
    }

    fn job_mut(&mut self, j: u32) -> &mut MJob {
        self.jobs[j as usize].as_mut().expect("model: job is alive")
    }

    fn run(&mut self, program: &Program) {
        for (i, op) in program.ops.iter().enumerate() {
            self.op(op);
            self.ev(Ev::OpDone(i));
        }
        // Teardown, as the driver does it.
        while let Some(j) = self.top.pop() {
            self.cancel(j);
            self.ev(Ev::Cancelled { aid: 0, job: j });
        }
        for slot in 0..SLOTS {
            if let Some(c) = self.slots[slot].take() {
                self.drop_handle(c);
            }
        }
        self.pool_op(0, &PoolOp::Stats);
        self.cleanup_thread();
        self.ev(Ev::OpDone(usize::MAX));
        assert!(self.jobs.iter().all(Option::is_none), "model: every job ended");
        assert!(self.parked.is_empty(), "model: no job is parked");
        assert!(self.dead.iter().all(|&d| d == MDead::No), "model: every dead handle was dropped");
        assert!(self.ctxs.iter().all(|c| c.gone), "model: every ctx was let go");
    }

    fn op(&mut self, op: &Op) {
        match op {
            Op::Start { aid, spec, slot } => {
                let ctx = slot.map(|s| match self.slots[s] {
                    Some(c) => c,
                    None => {
                        let c = self.new_ctx();
                        self.slots[s] = Some(c);
                        c
                    }
                });
                let r = self.start(spec, ctx);
                let jobs = self.observe(*aid, spec.serial, r);
                self.top.extend(jobs);
            }
            Op::Resume { aid, idx } => match take_at(&mut self.top, *idx) {
                None => self.ev(Ev::Nothing(*aid)),
                Some(j) => {
                    let r = self.resume(j);
                    let jobs = self.observe(*aid, j, r);
                    self.top.extend(jobs);
                }
            },
            Op::Drop { aid, idx } => match take_at(&mut self.top, *idx) {
                None => self.ev(Ev::Nothing(*aid)),
                Some(j) => {
                    self.cancel(j);
                    self.ev(Ev::Cancelled { aid: *aid, job: j });
                }
            },
            Op::NewCtx { slot } => {
                let c = self.new_ctx();
                if let Some(old) = self.slots[*slot].replace(c) {
                    self.drop_handle(old);
                }
            }
            Op::DropCtx { slot } => {
                if let Some(old) = self.slots[*slot].take() {
                    self.drop_handle(old);
                }
            }
            Op::Ctx { aid, slot, op } => self.ctx_op(*aid, self.slots[*slot], op),
            Op::Pool { aid, op } => self.pool_op(*aid, op),
            Op::Pause { aid, .. } => {
                self.ev(Ev::PauseCall(*aid));
                self.ev(Ev::PauseRet(*aid));
            }
            Op::Probe { aid } => self.probe(*aid),
            Op::Inspect => {
                for i in 0..self.top.len() {
                    let j = self.top[i];
                    // A dead handle keeps its ctx clone until it is dropped.
                    let ctx = if self.dead[j as usize] == MDead::Cancelled {
                        self.mask(self.dead_ctx[j as usize])
                    } else {
                        self.mask(self.job(j).ctx)
                    };
                    self.ev(Ev::JobCtx { job: j, ctx });
                }
            }
        }
    }

    /// Records the outcome of a start or resume and returns the jobs the
    /// caller now holds because of it.
    fn observe(&mut self, aid: u32, job: u32, r: Result<Started, u32>) -> Vec<u32> {
        let (step, jobs) = match r {
            Ok(Started::Paused) => (StepEv::Paused, vec![job]),
            Ok(Started::Finished(jobs)) => (StepEv::Finished { value: value_of(job), returned: jobs.clone() }, jobs),
            Ok(Started::NoJobs { in_use, max_size }) => (StepEv::NoJobs { in_use, max_size }, Vec::new()),
            Ok(Started::Dead) => (StepEv::Cancelled, Vec::new()),
            Err(p) => (StepEv::Panicked(p), Vec::new()),
        };
        self.ev(Ev::Step { aid, job, step });
        jobs
    }

    fn new_ctx(&mut self) -> usize {
        self.ctxs.push(MCtx { handle: true, ..MCtx::default() });
        self.ctxs.len() - 1
    }

    fn drop_handle(&mut self, c: usize) {
        self.ctxs[c].handle = false;
        self.maybe_gone(c);
    }

    /// The last holder of a ctx let go: its cleanups run, newest first.
    fn maybe_gone(&mut self, c: usize) {
        let ctx = &mut self.ctxs[c];
        if ctx.handle || ctx.jobs > 0 || ctx.gone {
            return;
        }
        ctx.gone = true;
        let cleanups: Vec<Ev> =
            ctx.live().filter(|e| e.cleanup).map(|e| Ev::Cleanup { key: e.key, fd: e.fd, data: e.data }).collect();
        self.ev.extend(cleanups);
    }

    /// Bit 7: there is a ctx; bit s: the driver's slot s names it.
    fn mask(&self, ctx: Option<usize>) -> u8 {
        let Some(c) = ctx else { return 0 };
        let mut m = 0x80;
        for (s, slot) in self.slots.iter().enumerate() {
            if *slot == Some(c) {
                m |= 1 << s;
            }
        }
        m
    }

    fn probe(&mut self, aid: u32) {
        let ctx = self.running.last().and_then(|&j| self.job(j).ctx);
        let ev = Ev::Probe { aid, in_job: !self.running.is_empty(), ctx: self.mask(ctx) };
        self.ev(ev);
    }

    fn ctx_op(&mut self, aid: u32, ctx: Option<usize>, op: &CtxOp) {
        let Some(c) = ctx else {
            self.ev(Ev::Ctx { aid, res: CtxRes::NoCtx });
            return;
        };
        assert!(!self.ctxs[c].gone, "model: a ctx in use is alive");
        if let CtxOp::Callback = op {
            let tag = self.ctxs[c].callback;
            self.ev(Ev::Ctx { aid, res: CtxRes::Callback(tag.is_some()) });
            if let Some(tag) = tag {
                self.ev(Ev::CallbackRan(tag));
            }
            return;
        }
        let ctx = &mut self.ctxs[c];
        let res = match *op {
            CtxOp::Set { key, fd, data, cleanup } => {
                ctx.entries.push(MEntry { key, fd, data, cleanup, added: true, deleted: false });
                CtxRes::Done
            }
            CtxOp::Get { key } => CtxRes::Fd(ctx.live().find(|e| e.key == key).map(|e| (e.fd, e.data))),
            CtxOp::All => CtxRes::Fds(ctx.live().map(|e| e.fd).collect()),
            CtxOp::Count => CtxRes::Count(ctx.live().count()),
            CtxOp::Changed => CtxRes::Changed {
                added: ctx.entries.iter().rev().filter(|e| e.added && !e.deleted).map(|e| e.fd).collect(),
                deleted: ctx.entries.iter().rev().filter(|e| !e.added && e.deleted).map(|e| e.fd).collect(),
            },
            CtxOp::Clear { key } => {
                let found = ctx.entries.iter().rposition(|e| e.key == key && !e.deleted);
                if let Some(i) = found {
                    if ctx.entries[i].added {
                        ctx.entries.remove(i);
                    } else {
                        ctx.entries[i].deleted = true;
                    }
                }
                CtxRes::Cleared(found.is_some())
            }
            CtxOp::SetCallback { tag } => {
                ctx.callback = tag;
                CtxRes::Done
            }
            CtxOp::Callback => unreachable!("handled above"),
            CtxOp::SetStatus(status) => {
                ctx.status = status;
                CtxRes::Done
            }
            CtxOp::GetStatus => CtxRes::Status(ctx.status),
        };
        self.ev(Ev::Ctx { aid, res });
    }

    fn new_pool(&mut self, max_size: usize, init_size: usize, stack_size: usize, scrub: bool) -> MPool {
        let epoch = self.next_epoch;
        self.next_epoch += 1;
        let stack_size = stack_size.div_ceil(self.page) * self.page;
        MPool { epoch, created: init_size, idle: init_size, max_size, stack_size, scrub }
    }

    fn pool_op(&mut self, aid: u32, op: &PoolOp) {
        let res = match *op {
            PoolOp::Init { max_size, init_size, stack_size, scrub } => {
                if max_size != 0 && init_size > max_size {
                    PoolRes::InvalidPoolSize { max_size, init_size }
                } else if !(MIN_STACK_SIZE..=MAX_STACK_SIZE).contains(&stack_size) {
                    PoolRes::InvalidStackSize { requested: stack_size }
                } else {
                    self.pool = Some(self.new_pool(max_size, init_size, stack_size, scrub));
                    PoolRes::Ok
                }
            }
            PoolOp::Cleanup => {
                self.cleanup_thread();
                PoolRes::Cleaned
            }
            PoolOp::Stats => match &self.pool {
                Some(p) => PoolRes::Stats {
                    idle: p.idle,
                    in_use: p.created - p.idle,
                    max_size: p.max_size,
                    stack_size: p.stack_size,
                    scrub: p.scrub,
                    quarantined: 0,
                },
                None => PoolRes::Stats {
                    idle: 0,
                    in_use: 0,
                    max_size: 0,
                    stack_size: DEFAULT_STACK_SIZE,
                    scrub: false,
                    quarantined: 0,
                },
            },
        };
        self.ev(Ev::Pool { aid, res });
    }

    /// Lends a stack: its pool's epoch, or `(in_use, max_size)` for NoJobs.
    fn acquire(&mut self) -> Result<u64, (usize, usize)> {
        if self.pool.is_none() {
            self.pool = Some(self.new_pool(0, 0, DEFAULT_STACK_SIZE, false));
        }
        let pool = self.pool.as_mut().expect("model: pool exists");
        if pool.idle > 0 {
            pool.idle -= 1;
        } else if pool.max_size != 0 && pool.created >= pool.max_size {
            return Err((pool.created, pool.max_size));
        } else {
            pool.created += 1;
        }
        Ok(pool.epoch)
    }

    /// A job ended: its stack goes back to its pool if that pool is still
    /// the thread's (else it is unmapped), then it lets go of its ctx.
    fn finish(&mut self, j: u32) {
        let job = self.jobs[j as usize].take().expect("model: job is alive");
        self.parked.retain(|&p| p != j);
        if let Some(pool) = &mut self.pool
            && pool.epoch == job.epoch
        {
            pool.idle += 1;
        }
        if let Some(c) = job.ctx {
            self.ctxs[c].jobs -= 1;
            self.maybe_gone(c);
        }
    }

    fn start(&mut self, spec: &Rc<Spec>, ctx: Option<usize>) -> Result<Started, u32> {
        let epoch = match self.acquire() {
            Ok(epoch) => epoch,
            Err((in_use, max_size)) => {
                self.ev(Ev::Dropped(spec.serial)); // the refused closure
                return Ok(Started::NoJobs { in_use, max_size });
            }
        };
        if let Some(c) = ctx {
            self.ctxs[c].jobs += 1;
        }
        self.jobs[spec.serial as usize] = Some(MJob {
            spec: spec.clone(),
            ctx,
            epoch,
            frames: vec![Frame { actions: spec.actions.clone(), pc: 0, try_aid: 0 }],
            held: Vec::new(),
            droppers: Vec::new(),
            guards: 0,
            end: None,
            returned: Vec::new(),
            paused: None,
        });
        self.segment(spec.serial, true)
    }

    /// Resumes the paused job `j`; a dead handle runs nothing (see
    /// `handle_goes`) and reports `Error::Cancelled`.
    fn resume(&mut self, j: u32) -> Result<Started, u32> {
        if self.handle_goes(j) {
            return Ok(Started::Dead);
        }
        self.segment(j, false)
    }

    /// The handle of job `j` is dropped or resumed: if it is dead, that is
    /// all it does (returns true). The handle of a cancelled job unmaps its
    /// stack and lets go of its ctx clone; that of a job being cancelled
    /// leaves both to the canceller.
    fn handle_goes(&mut self, j: u32) -> bool {
        match self.dead[j as usize] {
            MDead::No => false,
            MDead::Cancelling { .. } => {
                self.dead[j as usize] = MDead::Cancelling { orphaned: true };
                true
            }
            MDead::Cancelled => {
                self.dead[j as usize] = MDead::No;
                self.release_dead_ctx(j);
                true
            }
        }
    }

    /// Runs job `j` from its start or from where it paused.
    fn segment(&mut self, j: u32, fresh: bool) -> Result<Started, u32> {
        if let Some(c) = self.job(j).ctx {
            self.ctxs[c].begin_segment();
        }
        self.running.push(j);
        if fresh {
            self.ev(Ev::BodyRun(j));
        } else {
            match self.job_mut(j).paused.take().expect("model: resumed job is paused") {
                PausedAt::Action(aid) => self.ev(Ev::PauseRet(aid)),
                PausedAt::Dropper(k) => {
                    let MDropper::Pause(d) = self.job(j).droppers[k] else {
                        unreachable!("model: only a pausing dropper pauses its job")
                    };
                    self.ev(Ev::DropperExit(d));
                    self.job_mut(j).end = Some(k + 1);
                }
            }
        }
        let seg = self.interpret(j);
        self.running.pop();
        match seg {
            Seg::Paused => {
                if !self.parked.contains(&j) {
                    self.parked.push(j);
                }
                Ok(Started::Paused)
            }
            Seg::Finished(jobs) => {
                self.finish(j);
                Ok(Started::Finished(jobs))
            }
            Seg::Panicked(p) => {
                self.finish(j);
                Err(p)
            }
        }
    }

    /// Runs the running job `j` until it pauses, finishes or panics.
    fn interpret(&mut self, j: u32) -> Seg {
        loop {
            if let Some(k) = self.job(j).end {
                let job = self.job(j);
                if k < job.droppers.len() {
                    match job.droppers[k] {
                        MDropper::Pause(d) => {
                            let blocked = job.guards > 0 || self.unwinding > 0;
                            self.ev(Ev::DropperEnter(d));
                            if !blocked {
                                self.job_mut(j).paused = Some(PausedAt::Dropper(k));
                                return Seg::Paused;
                            }
                            self.ev(Ev::DropperExit(d));
                        }
                        MDropper::Resume { aid, job: h } => self.resumer(aid, h),
                    }
                    self.job_mut(j).end = Some(k + 1);
                    continue;
                }
                self.ev(Ev::Dropped(j));
                return Seg::Finished(std::mem::take(&mut self.job_mut(j).returned));
            }
            let job = self.job_mut(j);
            let frame = job.frames.last_mut().expect("model: a body frame");
            if frame.pc == frame.actions.len() {
                if job.frames.len() > 1 {
                    job.frames.pop(); // a Try block completed
                    continue;
                }
                // The actions are done: returned jobs are taken out, the rest
                // dropped, then the droppers run (see `Body::end`).
                let held = std::mem::take(&mut job.held);
                job.end = Some(0);
                if job.spec.returns_held {
                    job.returned = held;
                } else {
                    for h in held {
                        self.cancel(h);
                    }
                }
                continue;
            }
            let action = frame.actions[frame.pc].clone();
            frame.pc += 1;
            match self.action(j, &action) {
                Flow::Next => {}
                Flow::Pause => return Seg::Paused,
                Flow::Raise(p) => {
                    let job = self.job_mut(j);
                    if job.frames.len() > 1 {
                        let frame = job.frames.pop().expect("model: a Try frame");
                        self.ev(Ev::Caught { aid: frame.try_aid, payload: p });
                    } else {
                        self.unwinding += 1;
                        self.drop_body(j, PausedAt::Action(0));
                        self.unwinding -= 1;
                        return Seg::Panicked(p);
                    }
                }
            }
        }
    }

    /// Drops the body's state while job `j` unwinds from `at` (a panic or a
    /// cancellation): held jobs, droppers (whose pause does nothing), the
    /// closure; then the returned jobs, if the body had got as far as
    /// returning them.
    fn drop_body(&mut self, j: u32, at: PausedAt) {
        let first = match at {
            PausedAt::Action(_) => {
                let held = std::mem::take(&mut self.job_mut(j).held);
                for h in held {
                    self.cancel(h);
                }
                0
            }
            PausedAt::Dropper(k) => k + 1,
        };
        let job = self.job(j);
        let droppers = job.droppers[first.min(job.droppers.len())..].to_vec();
        for d in droppers {
            match d {
                MDropper::Pause(d) => {
                    self.ev(Ev::DropperEnter(d));
                    self.ev(Ev::DropperExit(d));
                }
                MDropper::Resume { aid, job: h } => self.resumer(aid, h),
            }
        }
        self.ev(Ev::Dropped(j));
        let returned = std::mem::take(&mut self.job_mut(j).returned);
        for r in returned {
            self.cancel(r);
        }
    }

    /// The destructor of an `ArmResumer` value: resumes the paused job `h`
    /// (with `unwinding` > 0 it cannot pause, so it runs to its end), then
    /// drops the handle or the returned jobs it gets back.
    fn resumer(&mut self, aid: u32, h: u32) {
        self.ev(Ev::DropperEnter(aid));
        let r = self.resume(h);
        let jobs = self.observe(aid, h, r);
        for x in jobs {
            self.cancel(x);
            self.ev(Ev::Cancelled { aid, job: x });
        }
        self.ev(Ev::DropperExit(aid));
    }

    /// Drops the handle of the paused job `j`: it is resumed once more and
    /// unwinds, then it ends. A dead handle runs nothing (see
    /// `handle_goes`).
    fn cancel(&mut self, j: u32) {
        if self.handle_goes(j) {
            return;
        }
        self.unwind(j);
        self.finish(j);
    }

    /// Resumes the paused job `j` with cancellation: its `pause` unwinds
    /// it. (The body never catches a cancellation, and every `pause` while
    /// it unwinds is a no-op, so one resume always ends it: the crate's
    /// retries and quarantine are out of the harness's reach.)
    fn unwind(&mut self, j: u32) {
        if let Some(c) = self.job(j).ctx {
            self.ctxs[c].begin_segment();
        }
        let at = self.job_mut(j).paused.take().expect("model: a cancelled job is paused");
        self.running.push(j);
        self.unwinding += 1;
        self.drop_body(j, at);
        self.unwinding -= 1;
        self.running.pop();
    }

    /// `cleanup_thread`: cancels the parked jobs that are paused, always
    /// the newest first (cancelling one may end others: dropping the paused
    /// jobs it holds); running ones leave the list and are left alone. A
    /// cancelled job's handle is dead from the start of its cancellation
    /// (code the unwind runs may reach it, see `MDead::Cancelling`): its
    /// stack and its ctx clone stay with it until it is dropped or resumed,
    /// or, if that happened during the unwind, go at its end. Then the pool
    /// is destroyed.
    fn cleanup_thread(&mut self) {
        while let Some(p) = self.parked.pop() {
            if self.running.contains(&p) {
                continue;
            }
            self.dead[p as usize] = MDead::Cancelling { orphaned: false };
            self.unwind(p);
            let job = self.jobs[p as usize].take().expect("model: job is alive");
            self.dead_ctx[p as usize] = job.ctx;
            match self.dead[p as usize] {
                MDead::Cancelling { orphaned: false } => self.dead[p as usize] = MDead::Cancelled,
                MDead::Cancelling { orphaned: true } => {
                    self.dead[p as usize] = MDead::No;
                    self.release_dead_ctx(p);
                }
                d => unreachable!("model: job {p} being cancelled is {d:?}"),
            }
        }
        self.pool = None;
    }

    /// A dead handle goes: its ctx clone with it.
    fn release_dead_ctx(&mut self, j: u32) {
        if let Some(c) = self.dead_ctx[j as usize].take() {
            self.ctxs[c].jobs -= 1;
            self.maybe_gone(c);
        }
    }

    fn action(&mut self, j: u32, action: &Action) -> Flow {
        match action {
            Action::Pause { aid } => {
                self.ev(Ev::PauseCall(*aid));
                if self.job(j).guards == 0 && self.unwinding == 0 {
                    self.job_mut(j).paused = Some(PausedAt::Action(*aid));
                    return Flow::Pause;
                }
                self.ev(Ev::PauseRet(*aid));
            }
            Action::Block => self.job_mut(j).guards += 1,
            Action::Unblock => {
                let job = self.job_mut(j);
                job.guards = job.guards.saturating_sub(1);
            }
            Action::ArmDropper { aid } => self.job_mut(j).droppers.push(MDropper::Pause(*aid)),
            Action::ArmResumer { aid, idx } => match take_at(&mut self.job_mut(j).held, *idx) {
                None => self.ev(Ev::Nothing(*aid)),
                Some(h) => self.job_mut(j).droppers.push(MDropper::Resume { aid: *aid, job: h }),
            },
            Action::Ctx { aid, target, op } => {
                let ctx = self.select(j, *target);
                self.ctx_op(*aid, ctx, op);
            }
            Action::Start { aid, spec, ctx } => {
                let ctx = self.select(j, *ctx);
                match self.start(spec, ctx) {
                    Err(p) => return Flow::Raise(p),
                    r => {
                        let jobs = self.observe(*aid, spec.serial, r);
                        self.job_mut(j).held.extend(jobs);
                    }
                }
            }
            Action::Resume { aid, idx } => match take_at(&mut self.job_mut(j).held, *idx) {
                None => self.ev(Ev::Nothing(*aid)),
                Some(h) => match self.resume(h) {
                    Err(p) => return Flow::Raise(p),
                    r => {
                        let jobs = self.observe(*aid, h, r);
                        self.job_mut(j).held.extend(jobs);
                    }
                },
            },
            Action::Drop { aid, idx } => match take_at(&mut self.job_mut(j).held, *idx) {
                None => self.ev(Ev::Nothing(*aid)),
                Some(h) => {
                    self.cancel(h);
                    self.ev(Ev::Cancelled { aid: *aid, job: h });
                }
            },
            Action::Adopt { aid, idx } => match take_at(&mut self.top, *idx) {
                None => self.ev(Ev::Nothing(*aid)),
                Some(h) => {
                    self.job_mut(j).held.push(h);
                    self.ev(Ev::Adopted { aid: *aid, job: h });
                }
            },
            Action::Give { aid, idx } => match take_at(&mut self.job_mut(j).held, *idx) {
                None => self.ev(Ev::Nothing(*aid)),
                Some(h) => {
                    self.top.push(h);
                    self.ev(Ev::Gave { aid: *aid, job: h });
                }
            },
            Action::Panic => return Flow::Raise(j),
            Action::Pool { aid, op } => self.pool_op(*aid, op),
            Action::Probe { aid } => self.probe(*aid),
            Action::Try { aid, actions } => {
                self.job_mut(j).frames.push(Frame { actions: actions.clone(), pc: 0, try_aid: *aid });
            }
        }
        Flow::Next
    }

    fn select(&self, j: u32, sel: CtxSel) -> Option<usize> {
        match sel {
            CtxSel::None => None,
            CtxSel::Slot(s) => self.slots[s],
            CtxSel::Current => self.job(j).ctx,
        }
    }
}

/// Removes the element at `idx` modulo the length, if any.
fn take_at<T>(list: &mut Vec<T>, idx: usize) -> Option<T> {
    if list.is_empty() { None } else { Some(list.remove(idx % list.len())) }
}

// ---------------------------------------------------------------------------
// The real side
// ---------------------------------------------------------------------------

thread_local! {
    static TRACE: RefCell<Vec<Ev>> = const { RefCell::new(Vec::new()) };
}

fn record(e: Ev) {
    TRACE.with(|t| t.borrow_mut().push(e));
}

/// The payload of a scripted body panic: the panicking job's serial.
struct BodyPanic(u32);

/// Paused jobs with their serials.
type Held = Vec<(u32, Job<Out>)>;

/// What a job body returns: its value and the paused jobs it hands back.
struct Out {
    value: u64,
    jobs: Held,
}

/// What every body shares with the driver.
#[derive(Clone)]
struct Env {
    slots: Rc<RefCell<[Option<WaitCtx>; SLOTS]>>,
    top: Rc<RefCell<Held>>,
    quarantined: u64,
}

/// Records the drop of a job's closure.
struct DropRec(u32);

impl Drop for DropRec {
    fn drop(&mut self) {
        record(Ev::Dropped(self.0));
    }
}

/// A destructor that pauses, or one that resumes a job (see
/// `Action::ArmResumer`).
enum Dropper {
    Pause(u32),
    Resume { aid: u32, job: Option<(u32, Job<Out>)> },
}

impl Drop for Dropper {
    fn drop(&mut self) {
        match self {
            Dropper::Pause(aid) => {
                record(Ev::DropperEnter(*aid));
                pause();
                record(Ev::DropperExit(*aid));
            }
            Dropper::Resume { aid, job } => {
                let aid = *aid;
                record(Ev::DropperEnter(aid));
                let (serial, job) = job.take().expect("a resumer runs once");
                // A panic must not leave a destructor that may run during an
                // unwind (that would abort).
                let jobs = match catch_unwind(AssertUnwindSafe(move || job.resume())) {
                    Ok(r) => observe(aid, serial, r),
                    Err(payload) => {
                        let step = StepEv::Panicked(payload_serial(&*payload));
                        record(Ev::Step { aid, job: serial, step });
                        Vec::new()
                    }
                };
                for (serial, job) in jobs {
                    drop(job);
                    record(Ev::Cancelled { aid, job: serial });
                }
                record(Ev::DropperExit(aid));
            }
        }
    }
}

/// A running body's state. The fields drop in this order, which the model
/// follows: held jobs (cancelled, in order), droppers, guards, the closure's
/// drop record.
struct Body {
    env: Env,
    held: Held,
    droppers: Vec<Dropper>,
    guards: Vec<BlockGuard>,
    rec: DropRec,
}

fn body(env: Env, spec: Rc<Spec>) -> impl FnOnce() -> Out + 'static {
    let rec = DropRec(spec.serial);
    move || {
        record(Ev::BodyRun(spec.serial));
        let mut body = Body { env, held: Vec::new(), droppers: Vec::new(), guards: Vec::new(), rec };
        body.run(&spec.actions);
        body.end(&spec)
    }
}

impl Body {
    fn run(&mut self, actions: &[Action]) {
        for action in actions {
            self.act(action);
        }
    }

    /// Takes out the held jobs to return, then drops the body's state (the
    /// droppers may pause here); if that unwinds, `out` is dropped after it.
    fn end(mut self, spec: &Spec) -> Out {
        let jobs = if spec.returns_held { std::mem::take(&mut self.held) } else { Vec::new() };
        let out = Out { value: value_of(spec.serial), jobs };
        drop(self);
        out
    }

    fn select(&self, sel: CtxSel) -> Option<WaitCtx> {
        match sel {
            CtxSel::None => None,
            CtxSel::Slot(s) => self.env.slots.borrow()[s].clone(),
            CtxSel::Current => current_wait_ctx(),
        }
    }

    fn act(&mut self, action: &Action) {
        match action {
            Action::Pause { aid } => {
                record(Ev::PauseCall(*aid));
                pause();
                record(Ev::PauseRet(*aid));
            }
            Action::Block => self.guards.push(block_pause()),
            Action::Unblock => drop(self.guards.pop()),
            Action::ArmDropper { aid } => self.droppers.push(Dropper::Pause(*aid)),
            Action::ArmResumer { aid, idx } => match take_at(&mut self.held, *idx) {
                None => record(Ev::Nothing(*aid)),
                Some(pair) => self.droppers.push(Dropper::Resume { aid: *aid, job: Some(pair) }),
            },
            Action::Ctx { aid, target, op } => {
                let ctx = self.select(*target);
                ctx_op(*aid, ctx.as_ref(), op);
            }
            Action::Start { aid, spec, ctx } => {
                let ctx = self.select(*ctx);
                let r = start(ctx.as_ref(), body(self.env.clone(), spec.clone()));
                drop(ctx);
                let jobs = observe(*aid, spec.serial, r);
                self.held.extend(jobs);
            }
            Action::Resume { aid, idx } => match take_at(&mut self.held, *idx) {
                None => record(Ev::Nothing(*aid)),
                Some((serial, job)) => {
                    let jobs = observe(*aid, serial, job.resume());
                    self.held.extend(jobs);
                }
            },
            Action::Drop { aid, idx } => match take_at(&mut self.held, *idx) {
                None => record(Ev::Nothing(*aid)),
                Some((serial, job)) => {
                    drop(job);
                    record(Ev::Cancelled { aid: *aid, job: serial });
                }
            },
            Action::Adopt { aid, idx } => {
                let adopted = take_at(&mut self.env.top.borrow_mut(), *idx);
                match adopted {
                    None => record(Ev::Nothing(*aid)),
                    Some((serial, job)) => {
                        self.held.push((serial, job));
                        record(Ev::Adopted { aid: *aid, job: serial });
                    }
                }
            }
            Action::Give { aid, idx } => match take_at(&mut self.held, *idx) {
                None => record(Ev::Nothing(*aid)),
                Some((serial, job)) => {
                    self.env.top.borrow_mut().push((serial, job));
                    record(Ev::Gave { aid: *aid, job: serial });
                }
            },
            Action::Panic => panic_any(BodyPanic(self.rec.0)),
            Action::Pool { aid, op } => pool_op(*aid, op, &self.env),
            Action::Probe { aid } => probe(*aid, &self.env),
            Action::Try { aid, actions } => {
                if let Err(payload) = catch_unwind(AssertUnwindSafe(|| self.run(actions))) {
                    match payload.downcast_ref::<BodyPanic>() {
                        Some(p) => record(Ev::Caught { aid: *aid, payload: p.0 }),
                        // A cancellation (or anything else) goes on unwinding.
                        None => resume_unwind(payload),
                    }
                }
            }
        }
    }
}

/// Records a start or resume outcome; returns the jobs the caller now
/// holds because of it (the paused job, or the ones the body returned).
fn observe(aid: u32, job: u32, r: Result<Step<Out>, Error>) -> Held {
    let (step, jobs) = match r {
        Ok(Step::Paused(handle)) => (StepEv::Paused, vec![(job, handle)]),
        Ok(Step::Finished(out)) => {
            let returned = out.jobs.iter().map(|(s, _)| *s).collect();
            (StepEv::Finished { value: out.value, returned }, out.jobs)
        }
        Err(Error::NoJobs { in_use, max_size }) => (StepEv::NoJobs { in_use, max_size }, Vec::new()),
        Err(Error::Cancelled) => (StepEv::Cancelled, Vec::new()),
        Err(e) => (StepEv::Error(format!("{e:?}")), Vec::new()),
    };
    record(Ev::Step { aid, job, step });
    jobs
}

fn payload_serial(payload: &(dyn std::any::Any + Send)) -> u32 {
    payload.downcast_ref::<BodyPanic>().map_or(u32::MAX, |p| p.0)
}

fn ctx_op(aid: u32, ctx: Option<&WaitCtx>, op: &CtxOp) {
    let Some(ctx) = ctx else {
        record(Ev::Ctx { aid, res: CtxRes::NoCtx });
        return;
    };
    let res = match *op {
        CtxOp::Set { key, fd, data, cleanup } => {
            let cleanup = cleanup.then(|| {
                Box::new(|key: WaitKey, fd: RawFd, data: usize| record(Ev::Cleanup { key: key.get(), fd, data }))
                    as Cleanup
            });
            ctx.set_wait_fd(WaitKey::new(key), fd, data, cleanup);
            CtxRes::Done
        }
        CtxOp::Get { key } => CtxRes::Fd(ctx.get_fd(WaitKey::new(key))),
        CtxOp::All => CtxRes::Fds(ctx.all_fds()),
        CtxOp::Count => CtxRes::Count(ctx.fd_count()),
        CtxOp::Changed => {
            let changed = ctx.changed_fds();
            CtxRes::Changed { added: changed.added, deleted: changed.deleted }
        }
        CtxOp::Clear { key } => CtxRes::Cleared(ctx.clear_fd(WaitKey::new(key))),
        CtxOp::SetCallback { tag } => {
            ctx.set_callback(tag.map(|tag| Arc::new(move || record(Ev::CallbackRan(tag))) as stackjob::Callback));
            CtxRes::Done
        }
        CtxOp::Callback => {
            let callback = ctx.callback();
            record(Ev::Ctx { aid, res: CtxRes::Callback(callback.is_some()) });
            if let Some(callback) = callback {
                callback();
            }
            return;
        }
        CtxOp::SetStatus(status) => {
            ctx.set_status(status);
            CtxRes::Done
        }
        CtxOp::GetStatus => CtxRes::Status(ctx.status()),
    };
    record(Ev::Ctx { aid, res });
}

fn pool_op(aid: u32, op: &PoolOp, env: &Env) {
    let res = match *op {
        PoolOp::Init { max_size, init_size, stack_size, scrub } => {
            let cfg = PoolConfig::new().max_size(max_size).init_size(init_size).stack_size(stack_size).scrub(scrub);
            match init_thread_with(&cfg) {
                Ok(()) => PoolRes::Ok,
                Err(Error::InvalidPoolSize { max_size, init_size }) => PoolRes::InvalidPoolSize { max_size, init_size },
                Err(Error::InvalidStackSize { requested }) => PoolRes::InvalidStackSize { requested },
                Err(e) => PoolRes::Error(format!("{e:?}")),
            }
        }
        PoolOp::Cleanup => {
            cleanup_thread();
            PoolRes::Cleaned
        }
        PoolOp::Stats => {
            let s = pool_stats();
            PoolRes::Stats {
                idle: s.idle,
                in_use: s.in_use,
                max_size: s.max_size,
                stack_size: s.stack_size,
                scrub: s.scrub,
                quarantined: quarantined_jobs() - env.quarantined,
            }
        }
    };
    record(Ev::Pool { aid, res });
}

/// See `Model::mask`.
fn mask(env: &Env, ctx: Option<&WaitCtx>) -> u8 {
    let Some(ctx) = ctx else { return 0 };
    let mut m = 0x80;
    for (s, slot) in env.slots.borrow().iter().enumerate() {
        if slot.as_ref().is_some_and(|h| h.same_as(ctx)) {
            m |= 1 << s;
        }
    }
    m
}

fn probe(aid: u32, env: &Env) {
    let ctx = current_wait_ctx();
    record(Ev::Probe { aid, in_job: in_job(), ctx: mask(env, ctx.as_ref()) });
}

/// Runs the program on the crate, comparing the trace with the model's
/// after every top-level operation.
fn run_real(program: &Program, expected: &[Ev]) {
    TRACE.with(|t| t.borrow_mut().clear());
    let env = Env { slots: Rc::default(), top: Rc::default(), quarantined: quarantined_jobs() };
    let mut checked = 0;
    for (i, op) in program.ops.iter().enumerate() {
        driver_op(op, &env);
        record(Ev::OpDone(i));
        check(program, expected, &mut checked);
    }
    loop {
        let last = env.top.borrow_mut().pop();
        let Some((serial, job)) = last else { break };
        drop(job);
        record(Ev::Cancelled { aid: 0, job: serial });
    }
    for slot in 0..SLOTS {
        let handle = env.slots.borrow_mut()[slot].take();
        drop(handle);
    }
    pool_op(0, &PoolOp::Stats, &env);
    cleanup_thread();
    record(Ev::OpDone(usize::MAX));
    check(program, expected, &mut checked);
    assert_eq!(checked, expected.len(), "the crate produced fewer events than the model");
    assert!(!in_job() && current_wait_ctx().is_none(), "no job is current after the teardown");
}

fn driver_op(op: &Op, env: &Env) {
    match op {
        Op::Start { aid, spec, slot } => {
            let ctx = slot.map(|s| env.slots.borrow_mut()[s].get_or_insert_with(WaitCtx::new).clone());
            let body = body(env.clone(), spec.clone());
            let r = catch_unwind(AssertUnwindSafe(|| start(ctx.as_ref(), body)));
            drop(ctx);
            driver_observe(*aid, spec.serial, r, env);
        }
        Op::Resume { aid, idx } => {
            let picked = take_at(&mut env.top.borrow_mut(), *idx);
            match picked {
                None => record(Ev::Nothing(*aid)),
                Some((serial, job)) => {
                    let r = catch_unwind(AssertUnwindSafe(move || job.resume()));
                    driver_observe(*aid, serial, r, env);
                }
            }
        }
        Op::Drop { aid, idx } => {
            let picked = take_at(&mut env.top.borrow_mut(), *idx);
            match picked {
                None => record(Ev::Nothing(*aid)),
                Some((serial, job)) => {
                    drop(job);
                    record(Ev::Cancelled { aid: *aid, job: serial });
                }
            }
        }
        Op::NewCtx { slot } => {
            let old = env.slots.borrow_mut()[*slot].replace(WaitCtx::new());
            drop(old);
        }
        Op::DropCtx { slot } => {
            let old = env.slots.borrow_mut()[*slot].take();
            drop(old);
        }
        Op::Ctx { aid, slot, op } => {
            let ctx = env.slots.borrow()[*slot].clone();
            ctx_op(*aid, ctx.as_ref(), op);
        }
        Op::Pool { aid, op } => pool_op(*aid, op, env),
        Op::Pause { aid, blocked } => {
            let guard = blocked.then(block_pause);
            record(Ev::PauseCall(*aid));
            pause();
            record(Ev::PauseRet(*aid));
            drop(guard);
        }
        Op::Probe { aid } => probe(*aid, env),
        Op::Inspect => {
            for (serial, job) in env.top.borrow().iter() {
                record(Ev::JobCtx { job: *serial, ctx: mask(env, job.wait_ctx()) });
            }
        }
    }
}

fn driver_observe(aid: u32, job: u32, r: std::thread::Result<Result<Step<Out>, Error>>, env: &Env) {
    match r {
        Ok(r) => {
            let jobs = observe(aid, job, r);
            env.top.borrow_mut().extend(jobs);
        }
        Err(payload) => record(Ev::Step { aid, job, step: StepEv::Panicked(payload_serial(&*payload)) }),
    }
}

/// Compares the events recorded since the last check with the model's.
fn check(program: &Program, expected: &[Ev], checked: &mut usize) {
    TRACE.with(|t| {
        let got = t.borrow();
        let n = got.len();
        let first_diff = (*checked..n).find(|&i| expected.get(i) != Some(&got[i]));
        if let Some(i) = first_diff {
            let from = i.saturating_sub(12);
            panic!(
                "stackjob diverges from the model at event {i}:\n  model: {:?}\n  crate: {:?}\n\
                 events before it (both agree):\n{}\nthe model's next events:\n{}\nprogram: {program:#?}",
                expected.get(i),
                got[i],
                got[from..i].iter().map(|e| format!("  {e:?}\n")).collect::<String>(),
                expected[i..expected.len().min(i + 12)].iter().map(|e| format!("  {e:?}\n")).collect::<String>(),
            );
        }
        *checked = n;
    });
}

// ---------------------------------------------------------------------------
// The target
// ---------------------------------------------------------------------------

fn page_size() -> usize {
    // SAFETY: sysconf has no preconditions.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    usize::try_from(page).expect("a page size")
}

fn setup() {
    static SETUP: Once = Once::new();
    SETUP.call_once(|| {
        // libfuzzer-sys's hook aborts on every panic; scripted body panics
        // are part of the program and are caught, so they pass silently.
        let abort = panic::take_hook();
        panic::set_hook(Box::new(move |info| {
            if !info.payload().is::<BodyPanic>() {
                abort(info);
            }
        }));
    });
}

fuzz_target!(|data: &[u8]| {
    if !stackjob::is_capable() {
        return;
    }
    setup();
    let mut parser = Parser { data, pos: 0, actions: 0, jobs: 0, next_id: 0 };
    let program = parser.program();
    // Printed before the model runs, so that a model failure shows it too.
    let debug = std::env::var_os("STACKJOB_FUZZ_DEBUG").is_some();
    if debug {
        eprintln!("program: {program:#?}");
    }
    let mut model = Model::new(page_size(), parser.next_id);
    model.run(&program);
    if debug {
        eprintln!("the model's events:");
        for e in &model.ev {
            eprintln!("  {e:?}");
        }
    }
    cleanup_thread();
    run_real(&program, &model.ev);
});
