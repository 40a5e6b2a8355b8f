//! Jobs: the OpenSSL-style layer over the typed core (`raw`): start,
//! pause found through the thread's running-job pointer, resume, finish,
//! cancel, wait contexts, `block_pause`, and the cancellation of the
//! paused jobs that `cleanup_thread` and thread exit end.
//!
//! Every job stack carries a [`Slot`] at its top: the core's bookkeeping
//! (saved stack pointers, errno, the outcome pointer) first, then the little
//! state this layer needs; nothing about a job lives on the heap. The
//! switching itself, the body's entry and exit and the cancellation unwind
//! are the core's; this layer adds the semantics of `ASYNC_start_job(3)`.
//!
//! The thread's running-job pointer (`current`, which the core sets on
//! every switch) holds the running job's slot (its stack top), and null
//! while a `raw::Fiber` runs: `pause`, `in_job` and `current_wait_ctx` see
//! only jobs. Whether a started job runs or is paused is stored nowhere;
//! `cleanup_thread` walks the chain of running stacks instead.

use crate::Error;
use crate::current;
use crate::pool;
use crate::raw::{self, Core, Isolated, Isolation, Landing, Shared, Suspender};
use crate::stack::{self, Stack};
use crate::wait_ctx::WaitCtx;
use std::marker::PhantomData;
use std::mem::ManuallyDrop;
use std::panic;
use std::ptr;
use std::thread;

/// What happened to a job whose handle outlived `cleanup_thread`.
#[derive(Copy, Clone, PartialEq, Eq, Debug)]
#[repr(u8)]
enum Dead {
    /// The job is alive.
    No,
    /// `cleanup_thread` is cancelling it right now: code its unwind runs
    /// may reach the handle, which must then neither resume nor free it.
    Cancelling,
    /// It was cancelled: its stack is owned by the handle alone, which
    /// unmaps it.
    Cancelled,
    /// It could not be unwound: the stack is quarantined, never unmapped.
    Quarantined,
}

/// See [`Slot::mode`]. `Uninit` is 0: a stack no job used yet has a zeroed
/// slot (fresh anonymous memory, or a block the pool zeroed). `Isolated`
/// alone has bit 0 set, so the per-switch test is one bit test (a single
/// `tbnz` on aarch64).
#[derive(Copy, Clone, PartialEq, Eq, Debug)]
#[repr(u8)]
enum Mode {
    #[expect(dead_code, reason = "never written: read from the zeroed slot of a stack no job used yet")]
    Uninit = 0,
    Isolated = 1,
    Shared = 2,
}

impl Mode {
    /// Whether the slot is initialised and isolates.
    #[inline(always)]
    fn isolates(self) -> bool {
        self as u8 & 1 != 0
    }
}

/// Whether a slot's job has finished. A started job is running or paused;
/// which one is not stored (that would cost two stores per round trip):
/// `cleanup_thread`, the only reader, finds the running ones by walking
/// the chain of resumers from the running job (`running_tops`).
#[derive(Copy, Clone, PartialEq, Eq, Debug)]
#[repr(u8)]
enum State {
    Started,
    Finished,
}

/// The per-stack bookkeeping, at the top of the stack's mapping.
#[repr(C)]
struct Slot {
    /// Must stay first: the core's part (the asm's `Regs` at offset 0).
    core: Core,
    ctx: Option<WaitCtx>,
    /// Unique per job on this thread, for `BlockGuard`; 0 until issued (`id_of`).
    id: u64,
    /// 0 until the job first pauses; then its place in the thread's order
    /// of first pauses (`Hot::first_pauses`): `cleanup_thread` cancels the
    /// paused jobs with a stamp, newest first. Cleared when the job is
    /// abandoned.
    paused_at: u64,
    /// Nested `block_pause` count; belongs to this job only.
    blocked: u32,
    // `mode`, `dead`, `has_ctx` and `orphaned`: four bytes in this order at
    // a 4-aligned offset, which `resume` reads as one word (`resume_key`).
    // None is written on a round trip: a byte store just before that load
    // would stall it (no store-to-load forwarding from a narrower store).
    /// Whether the job fields are initialised and, if so, whether switches
    /// keep `errno` and the FP control state per side (the pool's
    /// `isolate_thread_state`, fixed for the stack's life): one byte, so
    /// that a start tests both at once.
    mode: Mode,
    /// Set when `cleanup_thread` (or thread exit) ended the job while its
    /// handle was still alive: the handle must not resume it.
    dead: Dead,
    /// Whether `ctx` is `Some` (kept with it by `start_on` and `retire`).
    has_ctx: bool,
    /// The handle went away while the job was `Dead::Cancelling`: the
    /// canceller disposes of the stack.
    orphaned: bool,
    state: State,
    /// Cancels the job (monomorphised for its result type), for
    /// `cleanup_thread`, which only knows the slot; set with `paused_at`.
    cancel_fn: unsafe fn(&Stack) -> bool,
}

const _: () = assert!(std::mem::size_of::<Slot>() <= stack::SLOT_RESERVE);
const _: () = assert!(std::mem::offset_of!(Slot, core) == 0);
const _: () = {
    use std::mem::offset_of;
    let at = offset_of!(Slot, mode);
    assert!(at % 4 == 0 && std::mem::align_of::<Slot>() >= 4);
    assert!(offset_of!(Slot, dead) == at + 1 && offset_of!(Slot, has_ctx) == at + 2);
    assert!(offset_of!(Slot, orphaned) == at + 3);
};

/// `mode`, `dead`, `has_ctx` and `orphaned` of a slot as one word: `resume`
/// compares it with [`RESUME_ISOLATED`] and [`RESUME_SHARED`], the two
/// common cases (a live paused job without a wait ctx), in one compare
/// each; anything else takes the general path.
///
/// # Safety
/// `slot` must be an initialised job slot that nothing writes meanwhile.
#[inline(always)]
unsafe fn resume_key(slot: *const Slot) -> u32 {
    // SAFETY: the four bytes are initialised fields, consecutive at a
    // 4-aligned offset (asserted above), in the caller's slot.
    unsafe { ptr::addr_of!((*slot).mode).cast::<u32>().read() }
}

/// The [`resume_key`] of a live job of a pool of this `mode`, without a
/// wait ctx (and so not orphaned).
const fn resume_key_of(mode: Mode) -> u32 {
    u32::from_ne_bytes([mode as u8, Dead::No as u8, false as u8, false as u8])
}

/// A live paused job of an isolating pool, without a wait ctx.
const RESUME_ISOLATED: u32 = resume_key_of(Mode::Isolated);
/// A live paused job of a shared pool, without a wait ctx.
const RESUME_SHARED: u32 = resume_key_of(Mode::Shared);

/// What [`start`] and [`Job::resume`] report: the job paused (resume it
/// later through the handle) or finished with its return value.
#[derive(Debug)]
#[must_use = "a paused job must be resumed (or dropped, which cancels it)"]
pub enum Step<R> {
    /// The job called [`pause`]; it holds its stack until resumed or dropped.
    Paused(Job<R>),
    /// The job returned this value; its stack went back to the pool.
    Finished(R),
}

/// A paused job. Resume it with [`Job::resume`] on the thread that started
/// it; the type is neither `Send` nor `Sync`, so moving it to another thread
/// does not compile:
///
/// ```compile_fail
/// let step = stackjob::start(None, || stackjob::pause()).unwrap();
/// let stackjob::Step::Paused(job) = step else { unreachable!() };
/// std::thread::spawn(move || job.resume()); // error: `Job<()>` cannot be sent between threads
/// ```
///
/// Dropping a paused job cancels it: the job is resumed once more and its
/// `pause()` unwinds the job's stack, so every destructor on it runs; then
/// the stack goes back to the pool. This works during a panic too (an outer
/// job being unwound cancels the inner jobs it holds). While the job
/// unwinds, `pause()` does not suspend it. If unwinding is impossible (a
/// build with `panic = "abort"`, or a job that catches the cancellation and
/// pauses again, several times), the stack is quarantined instead: never
/// reused, never unmapped (see [`quarantined_jobs`](crate::quarantined_jobs)).
///
/// ```
/// # if !stackjob::is_capable() { eprintln!("skipped: no stackjob backend on this target"); return; }
/// use std::rc::Rc;
/// let guard = Rc::new(());
/// let inside = guard.clone();
/// let step = stackjob::start(None, move || {
///     let _keep = inside;
///     stackjob::pause();
///     unreachable!("a cancelled job does not continue");
/// }).unwrap();
/// assert_eq!(Rc::strong_count(&guard), 2);
/// drop(step); // cancels: the job's frames unwind, `_keep` is dropped
/// assert_eq!(Rc::strong_count(&guard), 1);
/// ```
pub struct Job<R> {
    stack: ManuallyDrop<Stack>,
    _marker: PhantomData<JobMarker<R>>,
}

impl<R> std::fmt::Debug for Job<R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // SAFETY: the job is paused, so nothing else writes its slot.
        let id = unsafe { id_of(slot_of(&self.stack)) };
        f.debug_struct("Job").field("id", &id).finish()
    }
}

/// `fn() -> R`: a paused job owns no `R` yet (so no drop-check on `R`);
/// `*mut ()`: the handle is neither `Send` nor `Sync`.
type JobMarker<R> = (fn() -> R, *mut ());

/// A job's slot, at its stack top; also what the running-job pointer holds
/// while the job runs (a `raw::Fiber` sets it to null while it runs).
#[inline(always)]
fn slot_of(stack: &Stack) -> *mut Slot {
    stack.top().cast()
}

/// The running job's slot, or null outside a job (also inside a
/// `raw::Fiber`, which sets the pointer to null while it runs).
#[inline(always)]
fn current_slot() -> *mut Slot {
    current::get().cast()
}

/// Starts `f` as a job on a stack from this thread's pool (OpenSSL's
/// `ASYNC_start_job` with `*job == NULL`). `f` runs at once, on the job's
/// stack, until it returns ([`Step::Finished`]) or calls [`pause`]
/// ([`Step::Paused`]). `ctx` is the wait context the job can reach through
/// [`current_wait_ctx`]; it stays the job's for its whole life.
///
/// The closure is moved onto the job's stack: no heap allocation happens
/// once the pool has a stack to lend. A panic in `f` unwinds the job's
/// stack and is raised again here (the stack returns to the pool first).
///
/// Starting a job from inside a job is allowed: the inner job's `pause`
/// returns to the outer job, which may resume it later or hand it on.
///
/// ```
/// # if !stackjob::is_capable() { eprintln!("skipped: no stackjob backend on this target"); return; }
/// use stackjob::{start, pause, Step};
/// let step = start(None, || {
///     pause();
///     6 * 7
/// }).unwrap();
/// let Step::Paused(job) = step else { panic!("expected a pause") };
/// let Step::Finished(v) = job.resume().unwrap() else { panic!("expected the end") };
/// assert_eq!(v, 42);
/// ```
///
/// # Errors
/// [`Error::NotCapable`] where [`is_capable`](crate::is_capable) is false,
/// [`Error::NoJobs`] when the pool's `max_size` jobs all exist and none is
/// idle, [`Error::StackAlloc`] when a new stack cannot be mapped.
pub fn start<F, R>(ctx: Option<&WaitCtx>, f: F) -> Result<Step<R>, Error>
where
    F: FnOnce() -> R + 'static,
{
    // The pool says NotCapable on its slow path: where there is no
    // backend, it never has an idle stack to lend.
    let stack = pool::acquire()?;
    // SAFETY: the pool lent us the stack; its slot is ours.
    if unsafe { (*slot_of(&stack)).isolate_or_init(&stack) } {
        start_on::<F, R, Isolated>(stack, ctx, f)
    } else {
        start_on::<F, R, Shared>(stack, ctx, f)
    }
}

impl Slot {
    /// The pool's isolation choice for this stack, after initialising the
    /// job fields of a stack no job used before.
    ///
    /// # Safety
    /// The slot must be `stack`'s, exclusively ours.
    #[inline(always)]
    unsafe fn isolate_or_init(&mut self, stack: &Stack) -> bool {
        match self.mode {
            Mode::Isolated => true,
            Mode::Shared => false,
            // SAFETY: per the contract.
            Mode::Uninit => unsafe { init_slot(self, stack) },
        }
    }
}

/// `start` once the isolation is known.
#[inline(always)]
fn start_on<F, R, I>(stack: Stack, ctx: Option<&WaitCtx>, f: F) -> Result<Step<R>, Error>
where
    F: FnOnce() -> R + 'static,
    I: Isolation,
{
    let slot = slot_of(&stack);
    let mut body = ManuallyDrop::new(move |_: &Suspender<I>| f());
    // `prepare` moves the closure from here onto the job's stack, or (a
    // large one) the job reads it through this pointer and `Wipe` zeroes it.
    let body_at = raw::inner_ptr(&mut body);
    // SAFETY: the pool lent us exclusive use of the stack and its slot; the
    // job is not running, so nothing else reads or writes the slot; `body`
    // stays in this frame until the first segment ends.
    let entry = unsafe {
        let entry = raw::prepare::<_, R, I, true>(&stack, body_at);
        // The first segment begins here (`drive` begins the later ones).
        if let Some(ctx) = ctx {
            ctx.begin_segment();
            (*slot).ctx = Some(ctx.clone());
            (*slot).has_ctx = true;
        }
        // The id is issued on demand (`id_of`); `cancel_fn` is set when the
        // job first pauses (`first_pause`): a job that never pauses needs
        // neither.
        (*slot).id = 0;
        (*slot).paused_at = 0;
        (*slot).blocked = 0;
        (*slot).state = State::Started;
        entry
    };
    // A large body stays here until the job moves it out, as its first
    // act; its bytes would stay here otherwise. A guard zeroes them, so that
    // a panic out of the job (raised again by `drive`) or out of a wait-ctx
    // cleanup does not skip it. (A small body was moved onto the job's
    // stack by `prepare`: nothing of it is left here to wipe.)
    let _wipe = raw::wipe_after_start(body_at, &stack);
    drive::<R, I>(stack, Some(entry))
}

/// The job's id, issued the first time it is asked for (by `block_pause`
/// or `Debug`): unique among this thread's jobs, never 0.
///
/// # Safety
/// `slot` must be a job's slot that nothing else writes meanwhile.
#[inline(always)]
unsafe fn id_of(slot: *mut Slot) -> u64 {
    // SAFETY: per the contract.
    unsafe {
        if (*slot).id == 0 {
            let next = &current::hot().next_id;
            (*slot).id = next.get();
            next.set(next.get() + 1);
        }
        (*slot).id
    }
}

/// Initialises the job fields of a stack no job used before, and its core
/// (so that `raw::prepare` needs no check of its own for a job), and
/// registers the thread-exit cancellation of the parked jobs, once per
/// thread, here on the cold path. Returns whether the stack isolates.
///
/// # Safety
/// `slot` must be the slot of `stack`, exclusively ours, its job fields
/// never initialised, no fiber alive on the stack.
#[cold]
unsafe fn init_slot(slot: *mut Slot, stack: &Stack) -> bool {
    let _ = EXIT_GUARD.try_with(|_| ());
    let isolate = stack.isolates();
    // SAFETY: the caller guarantees exclusive access to the slot memory;
    // the fields are written in place.
    unsafe {
        raw::init_core(ptr::addr_of_mut!((*slot).core));
        ptr::addr_of_mut!((*slot).ctx).write(None);
        ptr::addr_of_mut!((*slot).id).write(0);
        ptr::addr_of_mut!((*slot).blocked).write(0);
        ptr::addr_of_mut!((*slot).state).write(State::Finished);
        ptr::addr_of_mut!((*slot).dead).write(Dead::No);
        ptr::addr_of_mut!((*slot).orphaned).write(false);
        ptr::addr_of_mut!((*slot).has_ctx).write(false);
        ptr::addr_of_mut!((*slot).paused_at).write(0);
        ptr::addr_of_mut!((*slot).cancel_fn).write(cancel_erased::<()>);
        ptr::addr_of_mut!((*slot).mode).write(if isolate { Mode::Isolated } else { Mode::Shared });
    }
    isolate
}

/// Drives a job one segment and turns the result into a [`Step`].
///
/// `start`: the job's first segment (what `raw::prepare` returned; entered
/// through the new-job switch), or `None` for a resume.
#[inline(always)]
fn drive<R, I: Isolation>(stack: Stack, start: Option<raw::Start>) -> Result<Step<R>, Error> {
    let slot = slot_of(&stack);
    // SAFETY: we own the stack, so the job is switched out and its slot is
    // ours; the job only touches the slot while it runs, inside `resume`.
    unsafe {
        let mut landing = Landing::new();
        if raw::switch::<R, I>(&stack, slot_of(&stack).cast(), &mut landing, start) {
            return finished_here(stack, &mut landing);
        }
        if (*slot).paused_at == 0 {
            first_pause(slot, cancel_erased::<R>);
        }
        Ok(Step::Paused(Job { stack: ManuallyDrop::new(stack), _marker: PhantomData }))
    }
}

/// The job on `stack` has ended: its stack goes back to the pool, and its
/// value is returned or its panic raised again (out of line). In line at
/// every resume site: a job's end is as common as a round trip (one per
/// job), and out of line it cost a call, five saved registers and the
/// result through memory.
///
/// # Safety
/// The job on `stack` has ended with result type `R`, after the switch
/// given `landing`.
#[inline(always)]
unsafe fn finished_here<R>(stack: Stack, landing: &mut Landing<R>) -> Result<Step<R>, Error> {
    // SAFETY: per the contract; the slot is ours again.
    let outcome = unsafe {
        (*slot_of(&stack)).state = State::Finished;
        raw::take_outcome::<R>(&stack, landing)
    };
    finish(stack);
    match outcome {
        Ok(value) => Ok(Step::Finished(value)),
        Err(payload) => panic::resume_unwind(payload),
    }
}

/// Returns a finished job's stack to the pool and lets go of its wait ctx
/// (whose cleanups may run now, with the pool consistent again).
#[inline(always)]
fn finish(stack: Stack) {
    // One arm each, so that the ctx is not tested again after the release.
    match retire(&stack) {
        None => raw::release(stack),
        Some(ctx) => {
            raw::release(stack);
            drop(ctx);
        }
    }
}

/// A job that will never run again (finished, or abandoned) gives up its
/// wait ctx, which the caller drops once the stack is disposed of.
#[inline(always)]
fn retire(stack: &Stack) -> Option<WaitCtx> {
    let slot = slot_of(stack);
    // SAFETY: the job is switched out for good; its slot is ours. Tested
    // first, so that a job without a ctx writes nothing here.
    unsafe {
        (*slot).ctx.as_ref()?;
        (*slot).has_ctx = false;
        (*slot).ctx.take()
    }
}

impl<R> Job<R> {
    /// Resumes the job where it paused (OpenSSL's `ASYNC_start_job` with a
    /// job handle). Runs it until it pauses again or finishes; a panic in
    /// the job is raised again here.
    ///
    /// ```
    /// # if !stackjob::is_capable() { eprintln!("skipped: no stackjob backend on this target"); return; }
    /// use stackjob::{start, pause, Step};
    /// let mut step = start(None, || { for _ in 0..3 { pause(); } "done" }).unwrap();
    /// let mut pauses = 0;
    /// let value = loop {
    ///     match step {
    ///         Step::Paused(job) => { pauses += 1; step = job.resume().unwrap(); }
    ///         Step::Finished(v) => break v,
    ///     }
    /// };
    /// assert_eq!((pauses, value), (3, "done"));
    /// ```
    ///
    /// # Errors
    /// [`Error::Cancelled`] if [`cleanup_thread`] (or the thread's exit
    /// while the handle lived on in another thread-local) already cancelled
    /// the job: it no longer exists.
    #[inline(always)]
    pub fn resume(self) -> Result<Step<R>, Error> {
        let mut this = ManuallyDrop::new(self);
        // SAFETY: `this` is never used or dropped again.
        let stack = unsafe { ManuallyDrop::take(&mut this.stack) };
        let slot = slot_of(&stack);
        // SAFETY: the job is switched out (or being cancelled, see `Dead`);
        // its slot is ours.
        let key = unsafe { resume_key(slot) };
        // One compare decides the common case; the general path tests the
        // fields one by one.
        let isolate = match key {
            RESUME_ISOLATED => true,
            RESUME_SHARED => false,
            _ => {
                // SAFETY: as above.
                let (dead, isolate) = unsafe { ((*slot).dead, (*slot).mode.isolates()) };
                if dead != Dead::No {
                    return resume_dead(stack);
                }
                // A new segment of the job's wait ctx (`start_on` begins the
                // first).
                // SAFETY: as above.
                if let Some(ctx) = unsafe { &(*slot).ctx } {
                    ctx.begin_segment();
                }
                isolate
            }
        };
        if isolate { drive::<R, Isolated>(stack, None) } else { drive::<R, Shared>(stack, None) }
    }

    /// The wait context the job was started with.
    pub fn wait_ctx(&self) -> Option<&WaitCtx> {
        // SAFETY: the job is paused, so its slot is not being written.
        unsafe { (*slot_of(&self.stack)).ctx.as_ref() }
    }
}

/// The handle of a job that `cleanup_thread` ended is resumed: it only
/// frees what is left.
#[cold]
fn resume_dead<R>(stack: Stack) -> Result<Step<R>, Error> {
    bury(stack);
    Err(Error::Cancelled)
}

impl<R> Drop for Job<R> {
    fn drop(&mut self) {
        // SAFETY: drop runs once; the stack is not used after this.
        let stack = unsafe { ManuallyDrop::take(&mut self.stack) };
        // SAFETY: the job is switched out; its slot is ours.
        if unsafe { (*slot_of(&stack)).dead } != Dead::No {
            bury(stack);
            return;
        }
        match cancel_job::<R>(&stack) {
            Some(outcome) => {
                finish(stack);
                if let Err(payload) = outcome {
                    raw::reraise_unless_cancel(payload);
                }
            }
            None => abandon(stack),
        }
    }
}

/// Resumes a paused job at the cancel path of its `pause()`, which unwinds
/// it (the core tries a few times: the job may catch the unwind and pause
/// again). Returns its outcome once it finished, or `None` if it would not.
fn cancel_job<R>(stack: &Stack) -> Option<thread::Result<R>> {
    let slot = slot_of(stack);
    // SAFETY: the job is paused; its slot is ours. While it unwinds it is
    // running (on the chain of resumers `cleanup_thread` walks), so that
    // `cleanup_thread` called by its destructors leaves it alone.
    unsafe {
        // Each cancellation resume is a segment of its own for the job's
        // wait ctx, as every resume is.
        let segment = || {
            if let Some(ctx) = &(*slot).ctx {
                ctx.begin_segment();
            }
        };
        let outcome = if (*slot).mode.isolates() {
            raw::cancel::<R, Isolated>(stack, slot_of(stack).cast(), segment)
        } else {
            raw::cancel::<R, Shared>(stack, slot_of(stack).cast(), segment)
        };
        if outcome.is_some() {
            (*slot).state = State::Finished;
        }
        outcome
    }
}

/// `cancel_job` for a slot whose result type only the slot knows: the
/// outcome is dropped. Returns whether the job finished.
///
/// # Safety
/// `stack` must hold a paused job started with result type `R`.
unsafe fn cancel_erased<R>(stack: &Stack) -> bool {
    cancel_job::<R>(stack).is_some()
}

/// Gives up on a job that will not unwind: its stack is quarantined (live
/// frames stay mapped and are never reused). Its wait ctx lives on the heap
/// and is let go, so its cleanups can run once the last user handle drops;
/// clones held in the abandoned frames themselves are leaked with the stack.
fn abandon(stack: Stack) {
    // Its frames stay paused on a quarantined stack: `cleanup_thread` must
    // not try it again.
    // SAFETY: the job is switched out for good; its slot is ours.
    unsafe { (*slot_of(&stack)).paused_at = 0 };
    let ctx = retire(&stack);
    pool::quarantine(stack);
    drop(ctx);
}

/// The handle of a job that `cleanup_thread` ended, or is ending, goes
/// away: it takes the job's wait ctx clone with it and frees the stack —
/// unless the job is still being cancelled (its canceller then frees it) or
/// was quarantined (never freed).
fn bury(stack: Stack) {
    let slot = slot_of(&stack);
    // SAFETY: the job no longer runs on its own (cancelled or quarantined),
    // or is being cancelled by `cancel_parked`, which reads `orphaned` after
    // the cancellation and touches nothing we change here but that flag.
    unsafe {
        if (*slot).dead == Dead::Cancelling {
            (*slot).orphaned = true;
            std::mem::forget(stack);
            return;
        }
        let ctx = retire(&stack);
        match (*slot).dead {
            Dead::Quarantined => std::mem::forget(stack),
            _ => {
                // The cancelled job's frames are dead: a scrubbing pool
                // wipes them before the memory goes, as at every release.
                stack.scrub_dead_frames(stack.top());
                drop(stack)
            }
        }
        drop(ctx);
    }
}

/// This thread's parked jobs are found, when `cleanup_thread` or thread
/// exit needs them, among the stacks the thread has mapped (`stack::live`,
/// kept on the cold paths where stacks are created and unmapped): a job
/// that paused at least once and has not finished is `Paused` with a
/// `paused_at` stamp. So starting, pausing and finishing a job cost no list
/// bookkeeping; a job's first pause only stamps it. They are cancelled
/// newest first (by first pause), so that no paused job outlives its
/// thread's resources unnoticed.
///
/// Everything this reads is in const thread-locals without destructors, so
/// it works while the thread's other thread-locals are destroyed
/// (cancelling a job runs its destructors, which may finish other parked
/// jobs); the separate `EXIT_GUARD` is what cancels them at thread exit.
struct ExitGuard;

thread_local! {
    static EXIT_GUARD: ExitGuard = const { ExitGuard };
}

impl Drop for ExitGuard {
    fn drop(&mut self) {
        cancel_parked();
    }
}

/// Stamps a job that paused for the first time (the thread-exit guard was
/// registered when its slot was initialised) and records the function that
/// cancels it.
///
/// # Safety
/// `slot` is a paused job's slot, ours.
#[inline(always)]
unsafe fn first_pause(slot: *mut Slot, cancel_fn: unsafe fn(&Stack) -> bool) {
    let count = &current::hot().first_pauses;
    let stamp = count.get() + 1;
    count.set(stamp);
    // SAFETY: per the contract.
    unsafe {
        (*slot).paused_at = stamp;
        (*slot).cancel_fn = cancel_fn;
    }
}

/// The tops of the stacks whose fibers or jobs are running: the one this
/// code runs on (the one holding the stack pointer), the one that resumed
/// it (the stack its saved resumer stack pointer lies in), and so on, until
/// a resumer runs on no stack of this thread (its own thread stack). The
/// only way a job's "running or paused" is known: no switch stores it.
fn running_tops() -> Vec<*mut u8> {
    /// The listed stack holding `sp`, or null.
    fn holding(sp: usize) -> *mut u8 {
        // SAFETY: every listed top is a mapped stack of this thread.
        stack::live::find(|t| unsafe { stack::holds(t, sp) })
    }
    let mut chain = Vec::new();
    let mut top = holding(raw::stack_pointer());
    while !top.is_null() {
        chain.push(top);
        // SAFETY: `top` is running on this thread: this code runs on it,
        // or the fiber it resumed last is running (and it is inside the
        // switch that resumed that fiber).
        top = holding(unsafe { raw::resumer_sp(top) });
    }
    chain
}

/// Whether the stack whose top is `top` holds a job that has started, has
/// not finished and is not dead.
///
/// # Safety
/// `top` is a mapped stack of this thread (listed in `stack::live`).
unsafe fn started_job(top: *mut u8) -> bool {
    let slot = top.cast::<Slot>();
    // SAFETY: per the contract the slot memory is mapped; a stack no job
    // used yet has a zeroed slot (`Mode::Uninit`), whose other fields are
    // not read.
    unsafe {
        let mode = ptr::addr_of!((*slot).mode).cast::<u8>().read();
        mode != 0 && (*slot).state == State::Started && (*slot).dead == Dead::No
    }
}

/// Whether the stack whose top is `top` holds a paused job that
/// `cancel_parked` must still cancel, and its stamp. `running`: what
/// [`running_tops`] returned in this call of `cancel_parked`.
///
/// # Safety
/// `top` is a mapped stack of this thread (listed in `stack::live`).
unsafe fn parked_stamp(top: *mut u8, running: &[*mut u8]) -> Option<u64> {
    // SAFETY: per the contract.
    if !unsafe { started_job(top) } || running.contains(&top) {
        return None;
    }
    // SAFETY: as in `started_job`, whose slot this is.
    let stamp = unsafe { (*top.cast::<Slot>()).paused_at };
    (stamp != 0).then_some(stamp)
}

/// A job that is running while `cleanup_thread` runs (it is on this
/// thread's call chain, below the call) is left to go on, and loses its
/// place in the first-pause order: its next pause stamps it again, as the
/// newest, like a job that pauses for the first time. (So a job that calls
/// `cleanup_thread` and then pauses is cancelled before the jobs that were
/// parked after it.)
///
/// # Safety
/// `top` is one of `running` (see [`parked_stamp`]).
unsafe fn unstamp_running(top: *mut u8) {
    // SAFETY: per the contract the stack is mapped; a running job's slot is
    // written only by code on this thread, and none of it runs during this
    // call.
    unsafe {
        if started_job(top) {
            (*top.cast::<Slot>()).paused_at = 0;
        }
    }
}

/// Cancels every parked job of the thread that is paused, newest first
/// (running ones, on the current call chain, are left to finish), and marks
/// each as dead for its handle. Jobs that pause, finish, or whose stacks
/// come or go meanwhile (by the destructors of a cancelled job) are seen:
/// the candidates are collected again whenever a job first paused since
/// they were collected, or stacks were given back. Stacks unmapped
/// meanwhile stay mapped under a `stack::live::Hold` and are given back in
/// batches, so a cancellation that frees stacks (a job that holds the
/// handles of other paused jobs, jobs of an old pool) does not make the
/// whole call quadratic in the number of jobs.
#[cold]
fn cancel_parked() {
    let _hold = stack::live::hold();
    // The call chain of this call, so the same for all of it: the jobs on
    // it are running, every other started one is paused.
    let running = running_tops();
    // SAFETY: the running stacks are mapped stacks of this thread. Once is
    // enough: a job on the chain cannot pause (and be stamped again) before
    // this call returns.
    running.iter().for_each(|&top| unsafe { unstamp_running(top) });
    let mut parked: Vec<(u64, *mut u8)> = Vec::new();
    'collect: loop {
        parked.clear();
        let (changes, pauses) = (stack::live::changes(), current::hot().first_pauses.get());
        // SAFETY: every listed top is a mapped stack of this thread.
        stack::live::for_each(|top| unsafe {
            if let Some(stamp) = parked_stamp(top, &running) {
                parked.push((stamp, top));
            }
        });
        if parked.is_empty() {
            return;
        }
        parked.sort_unstable_by_key(|&(stamp, _)| std::cmp::Reverse(stamp));
        for &(stamp, top) in &parked {
            if stack::live::changes() != changes || current::hot().first_pauses.get() != pauses {
                continue 'collect;
            }
            // SAFETY: no stack was given back since the tops were
            // collected (the hold defers unmapping, and a batch given back
            // moves `changes`), so `top` is still mapped; it is checked
            // again because an earlier cancellation may have finished it.
            if unsafe { parked_stamp(top, &running) } == Some(stamp) {
                // SAFETY: a parked job, paused, of this thread.
                unsafe { cancel_one(top.cast()) };
            }
        }
    }
}

/// Cancels one parked job for `cancel_parked` and marks it dead.
///
/// # Safety
/// `slot` is the slot of a paused job of this thread that is not dead, and
/// owned by a handle that cannot run while we do (same thread).
unsafe fn cancel_one(slot: *mut Slot) {
    // SAFETY: per the contract.
    unsafe {
        // The handle keeps owning the stack memory; borrow it here. The
        // wait ctx clone stays in the slot until the handle goes: a
        // `Job::wait_ctx` borrow may be alive across this call.
        let stack = ManuallyDrop::new(Stack::from_top(slot.cast()));
        (*slot).dead = Dead::Cancelling;
        (*slot).orphaned = false;
        let finished = ((*slot).cancel_fn)(&stack);
        (*slot).dead = if finished { Dead::Cancelled } else { Dead::Quarantined };
        if !finished {
            pool::note_quarantined(&stack);
        }
        if (*slot).orphaned {
            // The handle was dropped (or resumed) by the job's own
            // unwind: nobody else will dispose of the stack.
            bury(ManuallyDrop::into_inner(stack));
        }
    }
}

/// Ends this thread's jobs and frees its pool (OpenSSL's
/// `ASYNC_cleanup_thread`): every job that is still paused is cancelled —
/// its stack unwinds and its destructors run, as if its handle were
/// dropped — and its handle becomes dead: [`Job::resume`] returns
/// [`Error::Cancelled`] and dropping it just frees the stack (and lets go
/// of the job's wait ctx, which [`Job::wait_ctx`] still shows until then). Idle stacks
/// are unmapped. Thread exit does the same automatically. The next `start`
/// on this thread creates a default pool again.
///
/// ```
/// # if !stackjob::is_capable() { eprintln!("skipped: no stackjob backend on this target"); return; }
/// let step = stackjob::start(None, || { stackjob::pause(); 1 }).unwrap();
/// stackjob::cleanup_thread();
/// let stackjob::Step::Paused(job) = step else { unreachable!() };
/// assert!(matches!(job.resume(), Err(stackjob::Error::Cancelled)));
/// ```
pub fn cleanup_thread() {
    cancel_parked();
    pool::destroy();
}

/// Pauses the running job: control goes back to whoever started or last
/// resumed it, which sees [`Step::Paused`]; `pause` returns when the job is
/// resumed (OpenSSL's `ASYNC_pause_job`).
///
/// Outside a job, or while pausing is blocked with [`block_pause`], it does
/// nothing and returns at once. It also does nothing while the thread is
/// unwinding a panic — the job's own, its cancellation, or a resumer's
/// unwind that resumed it from a destructor: a panic in flight is thread
/// state, and suspending a job mid-unwind would hand the unwind to a frame
/// that did not start it. (A job that waits with `pause()` in a loop then
/// busy-waits until its condition holds, which is what a request still
/// owned by hardware needs.)
///
/// ```
/// # if !stackjob::is_capable() { eprintln!("skipped: no stackjob backend on this target"); return; }
/// stackjob::pause(); // not in a job: a no-op
/// let step = stackjob::start(None, || {
///     let _no_pause = stackjob::block_pause();
///     stackjob::pause(); // blocked: a no-op
///     1
/// }).unwrap();
/// assert!(matches!(step, stackjob::Step::Finished(1)));
/// ```
#[inline]
pub fn pause() {
    // The running job's slot; null outside a job and inside a fiber.
    let slot = current_slot();
    if slot.is_null() {
        return;
    }
    // SAFETY: the running-job pointer names a job only while that job runs
    // on this thread, and this code runs inside it, on its stack. (A job
    // never pauses while its thread unwinds, so a cancellation's unwind,
    // which the core starts here, is caught at the job's root.)
    unsafe {
        if (*slot).blocked != 0 || thread::panicking() {
            return;
        }
        let core = ptr::addr_of_mut!((*slot).core);
        if (*slot).mode.isolates() { raw::suspend::<Isolated>(core) } else { raw::suspend::<Shared>(core) }
    }
}

/// Whether the caller runs inside a job (OpenSSL's
/// `ASYNC_get_current_job() != NULL`). One thread-local load: cheap enough
/// to decide between a synchronous and an asynchronous path per operation.
///
/// ```
/// # if !stackjob::is_capable() { eprintln!("skipped: no stackjob backend on this target"); return; }
/// assert!(!stackjob::in_job());
/// let step = stackjob::start(None, stackjob::in_job).unwrap();
/// assert!(matches!(step, stackjob::Step::Finished(true)));
/// ```
#[inline]
pub fn in_job() -> bool {
    !current::get().is_null()
}

/// The wait context of the running job (OpenSSL's
/// `ASYNC_get_wait_ctx(ASYNC_get_current_job())`), or `None` outside a job
/// or for a job started without one.
///
/// ```
/// # if !stackjob::is_capable() { eprintln!("skipped: no stackjob backend on this target"); return; }
/// let ctx = stackjob::WaitCtx::new();
/// let step = stackjob::start(Some(&ctx), || stackjob::current_wait_ctx()).unwrap();
/// let stackjob::Step::Finished(Some(seen)) = step else { panic!() };
/// assert!(seen.same_as(&ctx));
/// ```
#[inline]
pub fn current_wait_ctx() -> Option<WaitCtx> {
    let slot = current_slot();
    if slot.is_null() {
        return None;
    }
    // SAFETY: see `pause`; the ctx field is only replaced while the job is
    // switched out.
    unsafe { (*slot).ctx.clone() }
}

/// Blocks [`pause`] in the running job until the guard is dropped
/// (OpenSSL's `ASYNC_block_pause` / `ASYNC_unblock_pause` as an RAII guard).
/// Guards nest. Outside a job the guard does nothing.
///
/// The block belongs to the job that took it: it ends when the guard drops
/// or when the job ends, whichever comes first, and never reaches a later
/// job on the same thread (OpenSSL's counter is per thread and leaks).
///
/// Use it around code that holds a lock the resumer might also take.
///
/// ```
/// # if !stackjob::is_capable() { eprintln!("skipped: no stackjob backend on this target"); return; }
/// use stackjob::{start, pause, block_pause, Step};
/// let step = start(None, || {
///     let outer = block_pause();
///     let inner = block_pause();
///     pause(); // no-op
///     drop(inner);
///     pause(); // still blocked by `outer`
///     drop(outer);
///     pause(); // pauses
/// }).unwrap();
/// let Step::Paused(job) = step else { panic!() };
/// assert!(matches!(job.resume().unwrap(), Step::Finished(())));
/// ```
pub fn block_pause() -> BlockGuard {
    let slot = current_slot();
    if slot.is_null() {
        return BlockGuard { job: 0, _not_send: PhantomData };
    }
    // SAFETY: see `pause`.
    unsafe {
        (*slot).blocked = (*slot).blocked.saturating_add(1);
        BlockGuard { job: id_of(slot), _not_send: PhantomData }
    }
}

/// Keeps [`pause`] blocked in the job that created it; see [`block_pause`].
#[must_use = "dropping the guard at once unblocks pausing again"]
#[derive(Debug)]
pub struct BlockGuard {
    /// The id of the job that took the block; 0 = taken outside any job.
    job: u64,
    _not_send: PhantomData<*mut ()>,
}

impl Drop for BlockGuard {
    fn drop(&mut self) {
        let slot = current_slot();
        // Only the job that took the block can lift it; a guard dropped
        // elsewhere (moved out of its job) has nothing left to undo.
        // SAFETY: see `pause`.
        unsafe {
            if self.job != 0 && !slot.is_null() && (*slot).id == self.job {
                (*slot).blocked = (*slot).blocked.saturating_sub(1);
            }
        }
    }
}
