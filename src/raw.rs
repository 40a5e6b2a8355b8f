//! The typed switching core: a function on a pooled, guard-paged stack
//! that suspends itself through a [`Suspender`] it is handed, in the style
//! of corosensei's `Yielder`.
//!
//! This is the layer the OpenSSL-style API ([`start`](crate::start),
//! [`pause`](crate::pause), [`Job`](crate::Job)) is built on, and what to
//! use when you control both sides and want the cheapest switch:
//!
//! * the body gets a `&Suspender`: no thread-local lookup to find the
//!   running job, no `block_pause` or wait-context bookkeeping;
//! * [`Fiber::resume`] cannot fail: a suspended [`Fiber`] is the only
//!   handle to its stack and `resume` consumes it, so there is no stale or
//!   cancelled handle to check for;
//! * whether a switch keeps `errno` and the floating-point control state
//!   per side is a type parameter ([`Isolated`], the default, or
//!   [`Shared`]), decided at compile time instead of per switch.
//!
//! Choose [`start`](crate::start)/[`pause`](crate::pause) instead when the
//! code that pauses cannot be handed a reference (a library deep in a call
//! chain that only asks "am I in a job?", C code through the OpenSSL-ABI
//! library), or when you need wait contexts, `block_pause`, or
//! `cleanup_thread` to cancel what is left paused on a thread.
//!
//! Both layers share the thread's pool ([`init_thread_with`](crate::init_thread_with)
//! sizes it), its stacks, guard regions, scrubbing and overflow reports.
//! A fiber's body is not "in a job": inside it, [`in_job`](crate::in_job)
//! is false and [`pause`](crate::pause) does nothing (a job started inside
//! a fiber is a job, though, and pauses back into the fiber).
//!
//! ```
//! # if !stackjob::is_capable() { eprintln!("skipped: no stackjob backend on this target"); return Ok(()); }
//! use stackjob::raw::{self, Resumed, Suspender};
//!
//! let mut step = raw::start(|s: &Suspender| {
//!     let mut sum = 0u64;
//!     for i in 1..=3 {
//!         sum += i;
//!         s.suspend(); // back to the resumer
//!     }
//!     sum
//! })?;
//! let mut suspensions = 0;
//! let sum = loop {
//!     match step {
//!         Resumed::Suspended(fiber) => {
//!             suspensions += 1;
//!             step = fiber.resume();
//!         }
//!         Resumed::Returned(sum) => break sum,
//!     }
//! };
//! assert_eq!((suspensions, sum), (3, 6));
//! # Ok::<(), stackjob::Error>(())
//! ```

use crate::Error;
use crate::arch::{self, Regs};
use crate::current;
use crate::pool;
use crate::sanitizer::{self, ResumerStack};
use crate::stack::{self, Stack};
use std::marker::PhantomData;
use std::mem::{ManuallyDrop, MaybeUninit};
use std::panic::{self, AssertUnwindSafe};
use std::ptr::{self, addr_of_mut};
use std::thread;

mod sealed {
    pub trait Sealed {}
}

/// Whether a fiber's switches keep `errno` and the floating-point control
/// state per side: [`Isolated`] or [`Shared`]. Sealed.
pub trait Isolation: sealed::Sealed + std::fmt::Debug + 'static {
    /// `true` for [`Isolated`].
    const ISOLATE: bool;
}

/// Each side keeps its own `errno`, and on x86_64 its own MXCSR control
/// bits and x87 control word (callee-saved in the System V ABI), across
/// every switch; a fiber starts with its starter's values. What a called
/// function would see. The default.
#[derive(Debug)]
pub enum Isolated {}

/// The fiber and its resumer share `errno` and the floating-point control
/// state, like a caller and a callee that changes them: every switch is
/// cheaper (on x86_64 about 28 instructions per round trip, and roughly a
/// third of the time: reading MXCSR takes a slow `stmxcsr`). Never a
/// memory-safety matter; see
/// [`PoolConfig::isolate_thread_state`](crate::PoolConfig::isolate_thread_state).
#[derive(Debug)]
pub enum Shared {}

impl sealed::Sealed for Isolated {}
impl sealed::Sealed for Shared {}
impl Isolation for Isolated {
    const ISOLATE: bool = true;
}
impl Isolation for Shared {
    const ISOLATE: bool = false;
}

/// The core's part of the bookkeeping at the top of every job stack (the
/// first field of the job layer's slot). Nothing about a fiber lives on
/// the heap.
#[repr(C)]
pub(crate) struct Core {
    /// Must stay first: the asm's entry hands `*mut Regs` to the entry
    /// function, which casts it back to the core.
    pub(crate) regs: Regs,
    /// A body too large for the room at the top of the stack, in its
    /// starter's frame until the fiber moves it onto its own.
    arg: *mut (),
    /// Where a body whose outcome is too large for the room writes it: the
    /// latest resumer's [`Landing`] (set by every resume, for those only).
    out: *mut (),
    /// The body has returned (or unwound): the stack holds no live frame.
    done: bool,
    /// This thread's `errno`, located once per stack (a stack serves one
    /// thread's pool for its whole life).
    errno_at: *mut libc::c_int,
    /// The fiber's own `errno` while it is switched out (when isolated).
    errno: libc::c_int,
    /// The stack the fiber switches out to, for AddressSanitizer
    /// (zero-sized without the `asan` feature).
    resumer: ResumerStack,
}

/// The core of the stack whose top is `stack`'s.
#[inline(always)]
pub(crate) fn core_of(stack: &Stack) -> *mut Core {
    stack.top().cast()
}

/// The caller's stack pointer: inside the stack of the running fiber or
/// job, or in the thread's own stack outside any.
#[inline(always)]
pub(crate) fn stack_pointer() -> usize {
    arch::stack_pointer()
}

/// Where the fiber running on the stack whose top is `top` switches out
/// to: the saved stack pointer of its latest resumer, inside the stack
/// that resumer runs on.
///
/// # Safety
/// `top` must be the top of a stack whose fiber (or job) is running on
/// this thread: entered or resumed, and not switched out since.
pub(crate) unsafe fn resumer_sp(top: *mut u8) -> usize {
    // SAFETY: per the contract the core is intact, and the switch that
    // entered the fiber wrote `parent_sp`.
    unsafe { (*top.cast::<Core>()).regs.parent_sp as usize }
}

/// `size` rounded up to `align` (at least 16, so the frames below the
/// room stay 16-byte aligned).
const fn reserve(size: usize, align: usize) -> usize {
    let align = if align > 16 { align } else { 16 };
    size.div_ceil(align) * align
}

/// Each half of the [`ROOM`]: the largest body (closure) and the largest
/// outcome, each, that it holds. A larger body stays in its starter's frame
/// until the fiber has moved it (the fiber's first act), so that a big
/// capture is never copied twice onto the new stack; a larger outcome is
/// written into its resumer's frame ([`Landing`]), so that a big result
/// never has to fit in a small stack.
const HALF: usize = 512;

/// The room at the top of every fiber's stack, below the core and above
/// its first frame: the outcome of the body in the upper half, an inline
/// body in the lower one. Its size is the same for every fiber, so that
/// every fiber's first frame starts at the same place, `top - ROOM`: no
/// frame of an earlier fiber ever lay in the room (Valgrind's Memcheck
/// holds memory a frame left inaccessible, and writes there would be
/// flagged). It costs 1 KiB of each stack, in the page that holds the
/// core anyway.
const ROOM: usize = 2 * HALF;

/// Whether a value of `size` and `align` fits a half of the room at a
/// constant offset (stack tops are 256-byte aligned; 64 is what the stack
/// promises).
const fn fits(size: usize, align: usize) -> bool {
    align <= 64 && reserve(size, align) <= HALF
}

/// Whether a body `F` goes into the room at the top of the stack.
const fn body_inline<F>() -> bool {
    fits(size_of::<F>(), align_of::<F>())
}

/// Whether the outcome of a body returning `R` goes into the room at the
/// top of the stack (or else into the resumer's [`Landing`]).
const fn outcome_inline<R>() -> bool {
    fits(size_of::<thread::Result<R>>(), align_of::<thread::Result<R>>())
}

/// The resumer's room for the outcome of a body whose result is too large
/// for the stack's own room (see [`HALF`]): unused, and free, for every
/// other result type. One per resume, in the resumer's frame.
pub(crate) struct Landing<R>(MaybeUninit<thread::Result<R>>);

impl<R> Landing<R> {
    #[inline(always)]
    pub(crate) fn new() -> Landing<R> {
        Landing(MaybeUninit::uninit())
    }
}

/// Where the body leaves its outcome, in the upper half of the [`ROOM`]
/// (at a constant offset: no resume stores or loads a pointer to it). The
/// bytes go when the stack is scrubbed.
#[inline(always)]
fn outcome_at<R>(core: *mut Core) -> *mut thread::Result<R> {
    let offset = const { reserve(size_of::<thread::Result<R>>(), align_of::<thread::Result<R>>()) };
    core.cast::<u8>().wrapping_sub(offset).cast()
}

/// Where an inline body waits for its first run, in the lower half of the
/// [`ROOM`].
#[inline(always)]
fn body_at<F>(core: *mut Core) -> *mut F {
    let offset = const { HALF + reserve(size_of::<F>(), align_of::<F>()) };
    core.cast::<u8>().wrapping_sub(offset).cast()
}

/// Where every fiber's first frame starts: below the [`ROOM`].
#[inline(always)]
fn first_frame(core: *mut Core) -> *mut u8 {
    core.cast::<u8>().wrapping_sub(ROOM)
}

/// The private payload used to unwind a cancelled fiber or job.
pub(crate) struct ForcedUnwind;

/// How many times cancelling a suspended fiber resumes it before giving up
/// and quarantining its stack (the body may catch the unwind and suspend
/// again, or suspend from a destructor).
const MAX_CANCEL_RESUMES: usize = 8;

/// Lays a new body `F` (returning `R`) on `stack`, entered at the next
/// [`resume`] with the isolation `I`. `f_at` points at the closure: a small
/// one is moved here into the room at the top of the stack (see [`ROOM`]);
/// a large one the fiber moves onto its own frame as its first act (its
/// starter then wipes the bytes it leaves, see [`wipe_after_start`]). The new fiber
/// inherits the starter's `errno` and FP control state.
///
/// # Safety
/// `stack` must be exclusively ours with no live frame on it; `f_at` must
/// point at a live `F` that nobody uses or drops again and that stays put
/// until the first [`resume`] returns; `CORE_READY` only if [`init_core`]
/// ran on this stack's core.
#[inline(always)]
pub(crate) unsafe fn prepare<F, R, I, const CORE_READY: bool>(stack: &Stack, f_at: *mut F) -> Start
where
    F: FnOnce(&Suspender<I>) -> R,
    I: Isolation,
{
    let core = core_of(stack);
    // SAFETY: per the contract the core is ours; a stack's core is
    // initialised the first time an isolated fiber uses it (its `errno_at`
    // then never changes: a stack serves one thread), or by the job layer
    // (`CORE_READY`); a shared fiber reads nothing that `init_core` writes
    // but the sanitizer's record.
    unsafe {
        if !CORE_READY && (I::ISOLATE || sanitizer::ENABLED) && (*core).errno_at.is_null() {
            init_core(core);
        }
        if body_inline::<F>() {
            body_at::<F>(core).write(ptr::read(f_at));
        } else {
            (*core).arg = f_at.cast();
        }
        (*core).done = false;
        // Nothing of errno or the FP control state is stored: the first
        // switch (`arch::enter`) leaves the starter's in force, so the new
        // fiber inherits them as a called function would.
        Start { top: first_frame(core), entry: entry::<F, R, I> }
    }
}

/// How [`switch`] enters a fiber that [`prepare`] just laid: the top of its
/// first frame and its entry function, handed to `arch::enter` in registers
/// (nothing of it is stored on the stack beforehand).
#[derive(Clone, Copy)]
pub(crate) struct Start {
    top: *mut u8,
    entry: arch::Entry,
}

/// The guard that zeroes the closure at `f_at` in its starter's frame once
/// the first segment is over, where that is needed: a scrubbing pool and a
/// body too large to be moved into the stack's room by [`prepare`].
#[inline(always)]
pub(crate) fn wipe_after_start<F>(f_at: *mut F, stack: &Stack) -> Option<Wipe> {
    (!body_inline::<F>() && stack.scrubs()).then(|| Wipe { at: f_at.cast(), len: size_of::<F>() })
}

/// Initialises a stack's core (its `errno` location is this thread's).
///
/// # Safety
/// The caller owns the core's memory, and no fiber is alive on the stack.
#[cold]
pub(crate) unsafe fn init_core(core: *mut Core) {
    // SAFETY: the caller owns the core's memory.
    unsafe {
        core.write(Core {
            regs: Regs::new(),
            arg: ptr::null_mut(),
            out: ptr::null_mut(),
            done: true,
            errno_at: crate::errno::location(),
            errno: 0,
            resumer: ResumerStack::UNKNOWN,
        });
    }
}

/// A body's entry, reached by the trampoline on the fiber's stack
/// (monomorphised per closure type): runs the body, stores its outcome and
/// leaves the stack for good.
///
/// # Safety
/// Entered only by the trampoline, with the `Regs` of a core prepared by
/// [`prepare`] for this `F`, `R`, `I` (so the outcome's room above the
/// first frame is free).
unsafe extern "C" fn entry<F, R, I>(regs: *mut Regs) -> !
where
    F: FnOnce(&Suspender<I>) -> R,
    I: Isolation,
{
    let core = regs.cast::<Core>();
    // SAFETY: per the contract; the resumer holds the core exclusively
    // until we switch out. The starter never touches the closure again.
    unsafe {
        sanitizer::job_begins(addr_of_mut!((*core).resumer));
        // The body is moved onto this stack inside the closure that
        // `catch_unwind` calls, not before: a closure capturing it by value
        // would be one more copy of it on the stack in unoptimised builds
        // (a job capturing 16 KiB overflowed 256 KiB that way). The closure
        // captures two pointers by value, so that its call is one indirection.
        let arg = if body_inline::<F>() { body_at::<F>(core) } else { (*core).arg.cast::<F>() };
        // Where the outcome goes, known only once the body ends: a large
        // one lands in the resumer's frame of the last resume.
        let outcome_room = || if outcome_inline::<R>() { outcome_at::<R>(core) } else { (*core).out.cast() };
        // The value is written inside the closure, the payload of a panic
        // after it: no merged outcome is held in registers across the
        // unwind's landing pad (which cost this frame two more saved
        // registers, pushed at every job's start and never popped).
        let caught = panic::catch_unwind(AssertUnwindSafe(move || {
            let suspender = Suspender { core, _marker: PhantomData };
            let value = ptr::read(arg)(&suspender);
            outcome_room().write(Ok(value));
        }));
        if let Err(payload) = caught {
            outcome_room().write(Err(payload));
        }
        (*core).done = true;
        sanitizer::job_ends(addr_of_mut!((*core).resumer));
        arch::exit(regs, I::ISOLATE)
    }
}

/// Runs the fiber on `stack` until it suspends (`None`) or its body ends
/// (`Some(outcome)`). `tag` is what the thread's running-job pointer holds
/// meanwhile: the slot (the stack top) for a job of the OpenSSL-style
/// layer, null for a fiber, so that `pause()` inside a fiber pauses nothing.
///
/// # Safety
/// `stack` must hold a suspended (or freshly prepared) fiber of this `R`
/// and `I`, owned by the caller, on this thread.
#[inline(always)]
pub(crate) unsafe fn resume<R, I: Isolation>(stack: &Stack, tag: *mut u8) -> Option<thread::Result<R>> {
    let mut landing = Landing::new();
    // SAFETY: per the contract.
    unsafe { switch::<R, I>(stack, tag, &mut landing, None).then(|| take_outcome::<R>(stack, &mut landing)) }
}

/// [`resume`]'s switch: runs the fiber until it suspends (`false`) or its
/// body ends (`true`, with the outcome left for [`take_outcome`], in the
/// stack's room or, for a large one, in `landing`).
/// `start`: the first switch into a fiber [`prepare`] just laid (what it
/// returned), which inherits the resumer's `errno` and FP control state by
/// leaving them in force (the new-job entry of the backend); `None` for a
/// suspended fiber.
///
/// # Safety
/// As for [`resume`]; `start` exactly when the fiber never ran, and then
/// the one `prepare` returned for it.
#[inline(always)]
pub(crate) unsafe fn switch<R, I: Isolation>(
    stack: &Stack,
    tag: *mut u8,
    landing: &mut Landing<R>,
    start: Option<Start>,
) -> bool {
    let core = core_of(stack);
    // SAFETY: per the contract the fiber is switched out and its core is
    // ours; the fiber only touches the core while we are inside switch_in.
    unsafe {
        if !outcome_inline::<R>() {
            (*core).out = landing.0.as_mut_ptr().cast();
        }
        let hot = current::hot();
        let prev = hot.current.replace(tag);
        let departure = sanitizer::switching_to_job(|| stack.usable());
        let regs = addr_of_mut!((*core).regs);
        if I::ISOLATE {
            let errno_at = (*core).errno_at;
            let resumer_errno = *errno_at;
            if let Some(start) = start {
                arch::enter(regs, start.top, start.entry, true);
            } else {
                *errno_at = (*core).errno;
                arch::switch_in(regs, true);
            }
            (*core).errno = *errno_at;
            *errno_at = resumer_errno;
        } else if let Some(start) = start {
            arch::enter(regs, start.top, start.entry, false);
        } else {
            arch::switch_in(regs, false);
        }
        sanitizer::back_from_job(departure);
        hot.current.set(prev);
        (*core).done
    }
}

/// The outcome a finished fiber left at the top of its stack (whose bytes
/// the pool scrubs with the rest of the stack when the stack is released)
/// or, a large one, in `landing` (zeroed here where the pool scrubs).
///
/// # Safety
/// The fiber on `stack` has finished (the [`switch`] given `landing`
/// returned `true`) with result type `R`, and its outcome was not taken.
#[inline(always)]
pub(crate) unsafe fn take_outcome<R>(stack: &Stack, landing: &mut Landing<R>) -> thread::Result<R> {
    sanitizer::job_finished(|| stack.usable());
    if outcome_inline::<R>() {
        // SAFETY: per the contract the body wrote it there and nothing runs
        // on the stack since.
        return unsafe { outcome_at::<R>(core_of(stack)).read() };
    }
    // SAFETY: per the contract the body wrote it into `landing`.
    let outcome = unsafe { landing.0.assume_init_read() };
    if stack.scrubs() {
        // SAFETY: the bytes are ours and dead (moved out above).
        unsafe { stack::zero_volatile(landing.0.as_mut_ptr().cast(), size_of::<thread::Result<R>>()) };
    }
    outcome
}

/// Switches out of the running fiber whose core is `core`, back to its
/// latest resumer; returns when it is resumed again. Unwinds the fiber if
/// it was resumed to be cancelled: [`cancel`] makes that resume continue
/// at the switch's cancel path (`arch::unwind_on_resume`), so no flag is
/// tested on the way back from an ordinary one.
///
/// # Safety
/// Must run on the fiber's own stack, while it runs, with its `I`.
#[inline(always)]
pub(crate) unsafe fn suspend<I: Isolation>(core: *mut Core) {
    // SAFETY: per the contract; the core's regs hold the resumer's record.
    unsafe {
        let departure = sanitizer::job_pausing(addr_of_mut!((*core).resumer));
        let to_unwind = arch::switch_out(addr_of_mut!((*core).regs), I::ISOLATE);
        sanitizer::job_resumed(departure, addr_of_mut!((*core).resumer));
        if to_unwind {
            cancelled();
        }
    }
}

/// The resumed fiber is being cancelled: unwind its stack. (A fiber never
/// suspends while its thread unwinds, so this panic is caught at its root.)
#[cold]
fn cancelled() -> ! {
    panic::resume_unwind(Box::new(ForcedUnwind));
}

/// Resumes a suspended fiber at the cancel path of its suspension point,
/// which unwinds it; tries a few times (the body may catch the unwind and
/// suspend again). Returns its outcome once it ended, or `None` if it would
/// not. `segment` runs before each of those resumes.
///
/// # Safety
/// As for [`resume`].
#[cold]
pub(crate) unsafe fn cancel<R, I: Isolation>(
    stack: &Stack,
    tag: *mut u8,
    mut segment: impl FnMut(),
) -> Option<thread::Result<R>> {
    if cfg!(panic = "unwind") {
        for _ in 0..MAX_CANCEL_RESUMES {
            segment();
            // Right before the resume, so that the record is redirected
            // exactly once per resume. SAFETY: the fiber is suspended at a
            // suspension point (a fiber's first switch in is always its
            // start, never a cancel); its core is ours.
            unsafe { arch::unwind_on_resume(addr_of_mut!((*core_of(stack)).regs)) };
            // SAFETY: per the contract.
            if let Some(outcome) = unsafe { resume::<R, I>(stack, tag) } {
                return Some(outcome);
            }
        }
    }
    None
}

/// A cancelled fiber or job ends with our private payload; anything else is
/// a real panic raised while it unwound, passed on unless the thread is
/// already unwinding (a second panic would abort), in which case it is
/// dropped.
#[cold]
pub(crate) fn reraise_unless_cancel(payload: Box<dyn std::any::Any + Send>) {
    if !payload.is::<ForcedUnwind>() && !thread::panicking() {
        panic::resume_unwind(payload);
    }
}

/// The stack of a fiber whose body ended goes back to the pool.
#[inline(always)]
pub(crate) fn release(stack: Stack) {
    // Nothing on the stack below its slot is live any more.
    let live_from = stack.top();
    pool::release(stack, live_from);
}

/// What a fiber's body gets to suspend itself with. Only a reference to it
/// exists, handed to the body for its whole run; it is neither `Send` nor
/// `Sync` and cannot outlive the body, so it can only suspend the fiber
/// that is running.
pub struct Suspender<I: Isolation = Isolated> {
    core: *mut Core,
    _marker: PhantomData<(*mut (), I)>,
}

impl<I: Isolation> Suspender<I> {
    /// Hands control back to whoever started or last resumed the fiber
    /// (they see [`Resumed::Suspended`]); returns when the fiber is resumed.
    ///
    /// While the thread unwinds a panic (a destructor run by the body's
    /// own panic, or by its cancellation) it does nothing and returns at
    /// once: a panic in flight is thread state, and suspending mid-unwind
    /// would hand it to a frame that did not start it.
    #[inline]
    pub fn suspend(&self) {
        if thread::panicking() {
            return;
        }
        // SAFETY: a Suspender exists only on its fiber's stack, borrowed by
        // the running body, so the fiber is the one running here.
        unsafe { suspend::<I>(self.core) }
    }
}

impl<I: Isolation> std::fmt::Debug for Suspender<I> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Suspender").finish_non_exhaustive()
    }
}

/// A suspended fiber: the only handle to its stack. Resume it with
/// [`Fiber::resume`] on the thread that started it (it is neither `Send`
/// nor `Sync`, so moving it to another thread does not compile:
///
/// ```compile_fail
/// use stackjob::raw::{self, Resumed, Suspender};
/// let Ok(Resumed::Suspended(fiber)) = raw::start(|s: &Suspender| s.suspend()) else { return };
/// std::thread::spawn(move || fiber.resume()); // error: `Fiber` cannot be sent between threads
/// ```
///
/// and the body's `&Suspender` cannot leave the body either:
///
/// ```compile_fail
/// use stackjob::raw::{self, Suspender};
/// let mut escaped = None;
/// let _ = raw::start(|s: &Suspender| escaped = Some(s)); // error: borrowed data escapes
/// ```
///
/// ). Dropping it cancels it: its suspension point unwinds the
/// body, so every destructor on its stack runs, and the stack goes back to
/// the pool (quarantined, never reused, if the body will not unwind; see
/// [`quarantined_jobs`](crate::quarantined_jobs)).
#[must_use = "a suspended fiber must be resumed (or dropped, which cancels it)"]
pub struct Fiber<R, I: Isolation = Isolated> {
    stack: ManuallyDrop<Stack>,
    _marker: PhantomData<FiberMarker<R, I>>,
}

/// `fn() -> R`: a suspended fiber owns no `R` yet (so no drop-check on
/// `R`); `*mut ()`: neither `Send` nor `Sync`.
type FiberMarker<R, I> = (fn() -> R, *mut (), I);

/// What [`start`] and [`Fiber::resume`] report.
#[derive(Debug)]
#[must_use = "a suspended fiber must be resumed (or dropped, which cancels it)"]
pub enum Resumed<R, I: Isolation = Isolated> {
    /// The body called [`Suspender::suspend`].
    Suspended(Fiber<R, I>),
    /// The body returned this value; its stack went back to the pool.
    Returned(R),
}

impl<R, I: Isolation> std::fmt::Debug for Fiber<R, I> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Fiber").field("stack", &self.stack.top()).finish()
    }
}

/// Starts `f` on a stack from the thread's pool and runs it until it
/// suspends or returns. A panic in `f` unwinds its stack and is raised
/// again here (the stack returns to the pool first). The closure is moved
/// onto the fiber's stack: once the pool has an idle stack, nothing is
/// allocated.
///
/// The isolation is chosen by the type of the body's argument:
/// `|s: &Suspender|` (or `&Suspender<Isolated>`) keeps `errno` and the FP
/// control state per side, `|s: &Suspender<Shared>|` shares them.
///
/// ```
/// # if !stackjob::is_capable() { eprintln!("skipped: no stackjob backend on this target"); return; }
/// use stackjob::raw::{self, Resumed, Shared, Suspender};
/// let Resumed::Suspended(fiber) = raw::start(|s: &Suspender<Shared>| {
///     s.suspend();
///     6 * 7
/// })
/// .unwrap() else { unreachable!() };
/// let Resumed::Returned(v) = fiber.resume() else { unreachable!() };
/// assert_eq!(v, 42);
/// ```
///
/// # Errors
/// As [`start`](crate::start): [`Error::NotCapable`], [`Error::NoJobs`],
/// [`Error::StackAlloc`].
#[inline]
pub fn start<F, R, I>(f: F) -> Result<Resumed<R, I>, Error>
where
    F: FnOnce(&Suspender<I>) -> R + 'static,
    I: Isolation,
{
    // The pool says NotCapable on its slow path where jobs cannot run.
    let stack = pool::acquire()?;
    let mut f = ManuallyDrop::new(f);
    let f_at = inner_ptr(&mut f);
    // SAFETY: the pool lent us the stack exclusively; `f` stays put in
    // this frame until the first resume returns, and is never used again.
    let start = unsafe { prepare::<F, R, I, false>(&stack, f_at) };
    let _wipe = wipe_after_start(f_at, &stack);
    // SAFETY: the fiber was just prepared on this stack for this R and I.
    Ok(unsafe { step::<R, I>(stack, Some(start)) })
}

/// Runs the fiber on `stack` one segment and turns the result into a
/// [`Resumed`]. `start`: the first segment of a fiber [`prepare`] just laid
/// (entered through the new-job switch); `None` for a resume.
///
/// # Safety
/// `stack` must hold a fiber of this `R` and `I`, owned by the caller, on
/// this thread: the one `prepare` returned `start` for, or suspended.
#[inline(always)]
unsafe fn step<R, I: Isolation>(stack: Stack, start: Option<Start>) -> Resumed<R, I> {
    let mut landing = Landing::new();
    // SAFETY: per the contract.
    if unsafe { switch::<R, I>(&stack, ptr::null_mut(), &mut landing, start) } {
        // SAFETY: the body ended.
        return unsafe { returned(stack, &mut landing) };
    }
    Resumed::Suspended(Fiber { stack: ManuallyDrop::new(stack), _marker: PhantomData })
}

/// The body on `stack` has ended: its stack goes back to the pool and its
/// value is returned, or its panic raised again (out of line). In line at
/// every resume site: a fiber's end is as common as a round trip (one per
/// fiber), and out of line it costs a call, saved registers and the result
/// through memory.
///
/// # Safety
/// The fiber on `stack` has ended with result type `R`, after the switch
/// given `landing`.
#[inline(always)]
unsafe fn returned<R, I: Isolation>(stack: Stack, landing: &mut Landing<R>) -> Resumed<R, I> {
    // SAFETY: per the contract.
    let outcome = unsafe { take_outcome::<R>(&stack, landing) };
    release(stack);
    match outcome {
        Ok(value) => Resumed::Returned(value),
        Err(payload) => panic::resume_unwind(payload),
    }
}

/// The place of the value inside a `ManuallyDrop`.
#[inline(always)]
pub(crate) fn inner_ptr<T>(m: &mut ManuallyDrop<T>) -> *mut T {
    ptr::from_mut(m).cast()
}

impl<R, I: Isolation> Fiber<R, I> {
    /// Continues the fiber where it suspended, until it suspends again or
    /// returns. A panic in the body is raised again here. Cannot fail: the
    /// handle is the fiber's only one, and this consumes it.
    #[inline(always)]
    pub fn resume(self) -> Resumed<R, I> {
        let mut this = ManuallyDrop::new(self);
        // SAFETY: `this` is never used or dropped again.
        let stack = unsafe { ManuallyDrop::take(&mut this.stack) };
        // SAFETY: a Fiber owns a suspended fiber of this R and I.
        unsafe { step::<R, I>(stack, None) }
    }
}

impl<R, I: Isolation> Drop for Fiber<R, I> {
    fn drop(&mut self) {
        // SAFETY: drop runs once; the stack is not used after this.
        let stack = unsafe { ManuallyDrop::take(&mut self.stack) };
        // SAFETY: a Fiber owns a suspended fiber of this R and I.
        match unsafe { cancel::<R, I>(&stack, ptr::null_mut(), || ()) } {
            Some(outcome) => {
                release(stack);
                if let Err(payload) = outcome {
                    reraise_unless_cancel(payload);
                }
            }
            None => pool::quarantine(stack),
        }
    }
}

/// Zeroes the bytes of a closure the fiber moved out of its starter's
/// frame (for pools that scrub).
pub(crate) struct Wipe {
    pub(crate) at: *mut u8,
    pub(crate) len: usize,
}

impl Drop for Wipe {
    fn drop(&mut self) {
        // SAFETY: `at` points at the starter's closure, a local declared
        // before the guard and so still alive; the fiber moved its value
        // out (or, if a panic came first, it is leaked: the closure is a
        // `ManuallyDrop` nobody reads again), so its bytes are dead.
        unsafe { stack::zero_volatile(self.at, self.len) };
    }
}
