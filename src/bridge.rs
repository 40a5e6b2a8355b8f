//! Jobs as futures, for any executor: the runtime-neutral part of the
//! async bridge (`stackjob::tokio` adds wait fds watched by tokio's reactor).
//!
//! A [`JobFuture`] starts a job when first polled and resumes it whenever
//! it can make progress:
//!
//! * **callback mode** ([`Mode::Callback`], the default): the driver
//!   installs [`WaitCtx::waking_callback`] as the context's completion
//!   callback, so an engine that completes a request on any thread (and
//!   calls [`WaitCtx::callback`], or [`WaitCtx::wake`] directly) wakes the
//!   task through its [`Waker`];
//! * **fd mode**: the context's wait fds, followed through
//!   [`WaitCtx::changed_fds`], are watched by an [`FdWatcher`] (the tokio
//!   one registers them with `AsyncFd`); in callback mode they are watched
//!   too, for engines that only know fds;
//! * a job that paused in [`wait`] (a future inside the job) is resumed
//!   when that future's waker — the task's — fires;
//! * a job that pauses with no fd and no way to be woken (fd mode, or a
//!   plain `pause()` loop) is a *yield*: it is resumed on the next poll,
//!   after the task wakes itself, so it can never hang the task;
//! * [`Error::NoJobs`](crate::Error::NoJobs) (the thread's pool is full) is
//!   backpressure, never an error: the future waits until another bridged
//!   job of the thread ends, then starts;
//! * dropping the future cancels its job (destructors run, the stack goes
//!   back to the pool), and a panic in the job is raised again from `poll`.
//!
//! When the process has stackjob's OpenSSL-ABI library (`libstackjob_openssl`,
//! loaded before the first [`JobDriver`] is made), each driver's job is
//! also the current `ASYNC_JOB` for C code, with a C wait ctx of its own
//! whose callback and fds drive the future as the [`WaitCtx`]'s do; see
//! the `c_abi` part of this module's source.
//!
//! A job never leaves the thread that started it, so a `JobFuture` is not
//! `Send`: drive it with the executor's `block_on`, or spawn it on a
//! single-threaded executor (tokio's `LocalSet`/`spawn_local`, the
//! `futures` crate's `LocalPool`, ...). Moving it to another thread does
//! not compile.
//!
//! ```
//! # if !stackjob::is_capable() { eprintln!("skipped: no stackjob backend on this target"); return; }
//! use std::future::Future;
//! use std::pin::pin;
//! use std::sync::Arc;
//! use std::task::{Context, Poll, Wake};
//! use stackjob::bridge::{JobDriver, NoFds};
//!
//! // The smallest executor there is: poll on every wake.
//! struct Flag(std::sync::atomic::AtomicBool);
//! impl Wake for Flag {
//!     fn wake(self: Arc<Self>) { self.0.store(true, std::sync::atomic::Ordering::SeqCst); }
//! }
//! let flag = Arc::new(Flag(false.into()));
//! let waker = flag.clone().into();
//! let mut cx = Context::from_waker(&waker);
//!
//! let mut driver = JobDriver::<NoFds>::new();
//! let ctx = driver.wait_ctx().clone();
//! let mut fut = pin!(driver.run(move || {
//!     let engine = stackjob::current_wait_ctx().unwrap();
//!     std::thread::spawn(move || (engine.callback().unwrap())()); // "the device completes"
//!     stackjob::pause();
//!     6 * 7
//! }));
//! let value = loop {
//!     match fut.as_mut().poll(&mut cx) {
//!         Poll::Ready(v) => break v.unwrap(),
//!         Poll::Pending => while !flag.0.swap(false, std::sync::atomic::Ordering::SeqCst) { std::thread::yield_now() },
//!     }
//! };
//! assert_eq!(value, 42);
//! # drop(ctx);
//! ```

use crate::job::{Job, Step};
use crate::wait_ctx::{RawFd, WaitCtx};
use std::cell::{Cell, RefCell};
use std::fmt;
use std::future::Future;
use std::io;
use std::panic::{self, AssertUnwindSafe};
use std::pin::{Pin, pin};
use std::task::{Context, Poll, Waker};

/// How a [`JobDriver`] learns that its job can go on.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Default)]
pub enum Mode {
    /// The context's completion callback wakes the task
    /// ([`WaitCtx::waking_callback`]); wait fds are watched as well.
    #[default]
    Callback,
    /// Only the wait fds (and [`WaitCtx::wake`]) wake the task; the
    /// context's callback is left as it is (`None` for a new context), so
    /// engines that look for a callback take their fd path.
    Fd,
}

/// Watches a job's wait fds for an executor: the reactor-specific part of
/// a [`JobDriver`]. `stackjob::tokio::TokioFds` is the tokio one;
/// [`NoFds`] watches nothing.
pub trait FdWatcher {
    /// Follows the fd changes of the job's last run segment
    /// ([`WaitCtx::changed_fds`]): starts watching added fds and stops
    /// watching deleted ones. Called after every pause.
    ///
    /// # Errors
    /// An fd that cannot be watched (not pollable, closed). The job is
    /// then cancelled and the future returns [`Error::WaitFd`].
    fn sync(&mut self, ctx: &WaitCtx) -> Result<(), (RawFd, io::Error)>;

    /// `Ready` if a watched fd became ready (its readiness is then
    /// consumed: the next call is `Pending` until a new event); otherwise
    /// arranges for `cx`'s waker to be woken by the next event.
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<()>;

    /// Whether any fd is watched.
    fn is_watching(&self) -> bool;
}

/// An [`FdWatcher`] that watches nothing, for executors without a
/// reactor: a job that pauses with wait fds is resumed on the next poll
/// (a yield) unless it is woken through its context.
#[derive(Debug, Default)]
pub struct NoFds;

impl FdWatcher for NoFds {
    fn sync(&mut self, _ctx: &WaitCtx) -> Result<(), (RawFd, io::Error)> {
        Ok(())
    }
    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<()> {
        Poll::Pending
    }
    fn is_watching(&self) -> bool {
        false
    }
}

/// What a [`JobFuture`] returns when the job could not run to its end.
#[derive(Debug)]
#[non_exhaustive]
pub enum Error {
    /// Starting or resuming the job failed ([`crate::Error::NotCapable`],
    /// [`crate::Error::StackAlloc`], [`crate::Error::Cancelled`], ...;
    /// never [`crate::Error::NoJobs`], which is waited out).
    Job(crate::Error),
    /// The job registered a wait fd the executor cannot watch; the job
    /// was cancelled.
    WaitFd {
        /// The fd.
        fd: RawFd,
        /// Why it cannot be watched.
        source: io::Error,
    },
}

impl From<crate::Error> for Error {
    fn from(e: crate::Error) -> Error {
        Error::Job(e)
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Job(e) => e.fmt(f),
            Error::WaitFd { fd, source } => write!(
                f,
                "the job's wait fd {fd} cannot be watched: {source} (register only pollable fds, such as an \
                 eventfd or a pipe, and keep them open while they are registered); the job was cancelled"
            ),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Job(e) => Some(e),
            Error::WaitFd { source, .. } => Some(source),
        }
    }
}

/// A wait context with what an executor needs to drive jobs that use it:
/// the [`Mode`] and the [`FdWatcher`] registrations. Reuse one driver for
/// the jobs of one connection or slot, as OpenSSL applications reuse an
/// `ASYNC_WAIT_CTX`: an engine's fd registered by the first job stays
/// watched for the next ones, with no registration per job.
pub struct JobDriver<W: FdWatcher = NoFds> {
    ctx: WaitCtx,
    watcher: W,
    mode: Mode,
    /// The job as C code sees it, when the OpenSSL-ABI library is loaded.
    c_abi: Option<c_abi::Link>,
}

impl<W: FdWatcher> fmt::Debug for JobDriver<W> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JobDriver").field("ctx", &self.ctx).field("mode", &self.mode).finish()
    }
}

impl<W: FdWatcher + Default> Default for JobDriver<W> {
    fn default() -> Self {
        JobDriver::new()
    }
}

impl<W: FdWatcher + Default> JobDriver<W> {
    /// A driver in [`Mode::Callback`] with a new context.
    pub fn new() -> JobDriver<W> {
        JobDriver::with_ctx(WaitCtx::new(), Mode::Callback)
    }

    /// A driver in `mode` with a new context.
    pub fn with_mode(mode: Mode) -> JobDriver<W> {
        JobDriver::with_ctx(WaitCtx::new(), mode)
    }

    /// A driver for an existing context. In [`Mode::Callback`] it replaces
    /// the context's callback with [`WaitCtx::waking_callback`]. Fds the
    /// context already holds are watched from the first pause on.
    pub fn with_ctx(ctx: WaitCtx, mode: Mode) -> JobDriver<W> {
        if mode == Mode::Callback {
            ctx.set_callback(Some(ctx.waking_callback()));
        }
        let c_abi = c_abi::Link::new(&ctx, mode);
        JobDriver { ctx, watcher: W::default(), mode, c_abi }
    }
}

impl<W: FdWatcher> JobDriver<W> {
    /// The context the driver's jobs run with
    /// ([`current_wait_ctx`](crate::current_wait_ctx) inside them).
    pub fn wait_ctx(&self) -> &WaitCtx {
        &self.ctx
    }

    /// The driver's mode.
    pub fn mode(&self) -> Mode {
        self.mode
    }

    /// A future that runs `f` as a job with this driver's context.
    pub fn run<F, R>(&mut self, f: F) -> JobFuture<'_, F, R, W>
    where
        F: FnOnce() -> R + 'static,
        R: 'static,
    {
        JobFuture { driver: Holder::Borrowed(self), state: State::Start(Some(f)) }
    }

    /// [`run`](Self::run), with the future owning the driver.
    pub fn into_run<F, R>(self, f: F) -> JobFuture<'static, F, R, W>
    where
        F: FnOnce() -> R + 'static,
        R: 'static,
    {
        JobFuture { driver: Holder::Owned(self), state: State::Start(Some(f)) }
    }
}

enum Holder<'a, W: FdWatcher> {
    Owned(JobDriver<W>),
    Borrowed(&'a mut JobDriver<W>),
}

impl<W: FdWatcher> Holder<'_, W> {
    fn get(&mut self) -> &mut JobDriver<W> {
        match self {
            Holder::Owned(d) => d,
            Holder::Borrowed(d) => d,
        }
    }
}

/// What the paused job waits for.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
enum Until {
    /// Resume on the next poll: a [`wait`] future or a yield woke (or will
    /// wake) the task.
    NextPoll,
    /// A wake through the context, or a watched fd.
    Event,
}

enum State<F, R> {
    /// Not started yet (or waiting for a free stack).
    Start(Option<F>),
    Paused(Job<R>, Until),
    Done,
}

/// A job as a future: see the [module docs](self). Made by
/// [`JobDriver::run`] / [`JobDriver::into_run`] (or `stackjob::tokio::job`).
/// Its output is the job's return value, or [`Error`].
#[must_use = "a JobFuture does nothing unless polled"]
pub struct JobFuture<'a, F, R, W: FdWatcher = NoFds> {
    driver: Holder<'a, W>,
    state: State<F, R>,
}

// The closure is only ever moved, never pinned, and `Job` is a handle.
impl<F, R, W: FdWatcher> Unpin for JobFuture<'_, F, R, W> {}

impl<F, R, W: FdWatcher> fmt::Debug for JobFuture<'_, F, R, W> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = match &self.state {
            State::Start(_) => "not started",
            State::Paused(..) => "paused",
            State::Done => "done",
        };
        f.debug_struct("JobFuture").field("state", &state).finish()
    }
}

thread_local! {
    /// The `Context` of the `JobFuture::poll` running a job segment on this
    /// thread (null outside one), for [`wait`] inside the job.
    static TASK_CX: Cell<*mut ()> = const { Cell::new(std::ptr::null_mut()) };
    /// Set by [`wait`] just before it pauses: the pause waits for a future.
    static IN_WAIT: Cell<bool> = const { Cell::new(false) };
    /// Bridged jobs holding a stack on this thread.
    static LIVE: Cell<usize> = const { Cell::new(0) };
    /// Futures waiting for a stack (their pool was full).
    static STACK_WAITERS: RefCell<Vec<Waker>> = const { RefCell::new(Vec::new()) };
}

/// A bridged job stops holding a stack: every future waiting for one may
/// try again (all of them: a waiter may have been dropped meanwhile).
fn stack_freed() {
    LIVE.with(|n| n.set(n.get().saturating_sub(1)));
    let waiters = STACK_WAITERS.with(|w| std::mem::take(&mut *w.borrow_mut()));
    for w in waiters {
        w.wake();
    }
}

/// Sets `TASK_CX` for the length of one job segment and puts the old
/// value back afterwards, also when the segment panics.
struct TaskCxScope {
    old_cx: *mut (),
    old_wait: bool,
}

impl TaskCxScope {
    fn enter(cx: &mut Context<'_>) -> TaskCxScope {
        let old_cx = TASK_CX.with(|c| c.replace((cx as *mut Context<'_>).cast()));
        let old_wait = IN_WAIT.with(|w| w.replace(false));
        TaskCxScope { old_cx, old_wait }
    }

    /// Whether the segment ended in [`wait`]'s pause.
    fn waited(&self) -> bool {
        IN_WAIT.with(|w| w.get())
    }
}

impl Drop for TaskCxScope {
    fn drop(&mut self) {
        TASK_CX.with(|c| c.set(self.old_cx));
        IN_WAIT.with(|w| w.set(self.old_wait));
    }
}

impl<F, R, W> Future for JobFuture<'_, F, R, W>
where
    F: FnOnce() -> R + 'static,
    R: 'static,
    W: FdWatcher,
{
    type Output = Result<R, Error>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        let driver = this.driver.get();
        // Registered before any check, so that a wake between the check
        // and the return of `Pending` reaches this task.
        driver.ctx.register_waker(cx.waker());
        let step = match std::mem::replace(&mut this.state, State::Done) {
            State::Start(mut f) => {
                // A wake left over from the driver's previous job is not this one's.
                driver.ctx.take_woken();
                let _c = driver.c_abi.as_mut().map(c_abi::Link::enter_fresh);
                let scope = TaskCxScope::enter(cx);
                let at: *mut Option<F> = &mut f;
                let started = catch(|| {
                    crate::start(Some(&driver.ctx), move || {
                        // SAFETY: a job runs at once, inside this `start`
                        // call, where `f` (in the caller's frame) is alive;
                        // it is taken exactly once, and `start` returns
                        // without running the closure only on an error,
                        // when `f` is still there.
                        let f = unsafe { (*at).take() };
                        f.expect("the job's closure is taken once")()
                    })
                });
                let waited = scope.waited();
                drop(scope);
                drop(_c);
                match started {
                    Ok(Ok(step)) => {
                        LIVE.with(|n| n.set(n.get() + 1));
                        (step, waited)
                    }
                    Ok(Err(crate::Error::NoJobs { .. })) => {
                        this.state = State::Start(f);
                        if LIVE.with(Cell::get) > 0 {
                            STACK_WAITERS.with(|w| w.borrow_mut().push(cx.waker().clone()));
                        } else {
                            // The stacks are held by jobs the bridge does not
                            // see end: try again after the other tasks ran.
                            cx.waker().wake_by_ref();
                        }
                        return Poll::Pending;
                    }
                    Ok(Err(e)) => {
                        driver.ctx.clear_waker();
                        return Poll::Ready(Err(e.into()));
                    }
                    // The job panicked in its first segment: its stack is
                    // back in the pool (it was never counted as live).
                    Err(payload) => {
                        driver.ctx.clear_waker();
                        panic::resume_unwind(payload)
                    }
                }
            }
            State::Paused(job, until) => {
                let go =
                    until == Until::NextPoll || driver.ctx.take_woken() || driver.watcher.poll_ready(cx).is_ready();
                if !go {
                    this.state = State::Paused(job, until);
                    return Poll::Pending;
                }
                let c = driver.c_abi.as_mut().map(c_abi::Link::enter);
                let scope = TaskCxScope::enter(cx);
                let resumed = catch(|| job.resume());
                let waited = scope.waited();
                drop(scope);
                drop(c);
                match resumed {
                    Ok(Ok(step)) => (step, waited),
                    Ok(Err(e)) => {
                        stack_freed();
                        driver.ctx.clear_waker();
                        return Poll::Ready(Err(e.into()));
                    }
                    Err(payload) => {
                        stack_freed();
                        driver.ctx.clear_waker();
                        panic::resume_unwind(payload)
                    }
                }
            }
            State::Done => panic!("JobFuture polled after it completed"),
        };
        match step {
            (Step::Finished(value), _) => {
                stack_freed();
                driver.ctx.clear_waker();
                Poll::Ready(Ok(value))
            }
            (Step::Paused(job), waited) => {
                if let Some(link) = &mut driver.c_abi {
                    link.mirror_fds(&driver.ctx);
                }
                if let Err((fd, source)) = driver.watcher.sync(&driver.ctx) {
                    drop(job); // cancels it: its destructors run now
                    stack_freed();
                    driver.ctx.clear_waker();
                    return Poll::Ready(Err(Error::WaitFd { fd, source }));
                }
                let until = if waited {
                    // `wait`'s future has the task's waker.
                    Until::NextPoll
                } else if driver.ctx.take_woken() {
                    // Completed before (or while) the job paused.
                    cx.waker().wake_by_ref();
                    Until::NextPoll
                } else if driver.watcher.is_watching() || driver.mode == Mode::Callback {
                    // Check the fds now: arms their wake-ups.
                    if driver.watcher.poll_ready(cx).is_ready() {
                        cx.waker().wake_by_ref();
                        Until::NextPoll
                    } else {
                        Until::Event
                    }
                } else {
                    // Nothing can wake it: a yield.
                    cx.waker().wake_by_ref();
                    Until::NextPoll
                };
                this.state = State::Paused(job, until);
                Poll::Pending
            }
        }
    }
}

/// Runs `f`, catching a panic (the job's, raised again by `start`/`resume`).
fn catch<T>(f: impl FnOnce() -> T) -> std::thread::Result<T> {
    panic::catch_unwind(AssertUnwindSafe(f))
}

impl<F, R, W: FdWatcher> Drop for JobFuture<'_, F, R, W> {
    fn drop(&mut self) {
        if let State::Paused(job, _) = std::mem::replace(&mut self.state, State::Done) {
            // Cancels the job: its destructors run, its stack goes back.
            drop(job);
            stack_freed();
            self.driver.get().ctx.clear_waker();
        }
    }
}

/// Why [`wait`] could not wait.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum WaitError {
    /// `wait` was called outside a job driven by a [`JobFuture`] (outside
    /// any job, or in a job resumed by hand): nothing would poll the
    /// future again.
    NotInBridgedJob,
    /// The job cannot pause here ([`block_pause`](crate::block_pause) is
    /// in force, or the thread is unwinding): the future was dropped.
    CannotPause,
}

impl fmt::Display for WaitError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            WaitError::NotInBridgedJob => write!(
                f,
                "stackjob wait() was called outside a job driven by a JobFuture: run the code through \
                 stackjob::tokio::job (or bridge::JobDriver::run), or await the future directly"
            ),
            WaitError::CannotPause => write!(
                f,
                "stackjob wait() cannot pause this job (block_pause is in force, or the thread is \
                 unwinding); the future was dropped"
            ),
        }
    }
}

impl std::error::Error for WaitError {}

/// Awaits `fut` from synchronous code inside a job driven by a
/// [`JobFuture`]: the job pauses until the future is ready, and the
/// future is polled with the driving task's context (its waker, and on
/// tokio its runtime, so timers and sockets work). For a C library
/// callback or a synchronous provider that must wait for an async
/// operation without blocking the thread.
///
/// ```
/// # if !stackjob::is_capable() { eprintln!("skipped: no stackjob backend on this target"); return; }
/// assert_eq!(stackjob::bridge::wait(async { 1 }), Err(stackjob::bridge::WaitError::NotInBridgedJob));
/// ```
///
/// # Errors
/// [`WaitError::NotInBridgedJob`] outside such a job; the future is not
/// polled. [`WaitError::CannotPause`] where the job cannot pause.
pub fn wait<T: Future>(fut: T) -> Result<T::Output, WaitError> {
    let mut fut = pin!(fut);
    loop {
        let cx = TASK_CX.with(Cell::get);
        if cx.is_null() || !crate::in_job() {
            return Err(WaitError::NotInBridgedJob);
        }
        // SAFETY: `TASK_CX` is non-null only while a `JobFuture::poll` on
        // this thread runs a job segment (`TaskCxScope`), and this code runs
        // inside that segment: the `Context` is alive in that poll's frame
        // and nothing else uses it until the segment ends.
        let cx = unsafe { &mut *cx.cast::<Context<'_>>() };
        if let Poll::Ready(v) = fut.as_mut().poll(cx) {
            return Ok(v);
        }
        IN_WAIT.with(|w| w.set(true));
        crate::pause();
        // The driver clears the flag when it sees the pause; still set, the
        // pause did not happen.
        if IN_WAIT.with(|w| w.replace(false)) {
            return Err(WaitError::CannotPause);
        }
    }
}

/// Pauses the job and has its [`JobFuture`] resume it on the next poll,
/// after the other tasks ran (a cooperative yield from synchronous code).
/// Outside a job it does nothing.
pub fn yield_now() {
    let mut yielded = false;
    let _ = wait(std::future::poll_fn(|cx| {
        if yielded {
            Poll::Ready(())
        } else {
            yielded = true;
            cx.waker().wake_by_ref();
            Poll::Pending
        }
    }));
}

/// A job started here as an `ASYNC_JOB` for C code, when the process has
/// stackjob's OpenSSL-ABI library (`libstackjob_openssl`, linked ahead of
/// libcrypto, preloaded, or `dlopen`ed with `RTLD_GLOBAL` before the first
/// [`JobDriver`] is made).
///
/// That library holds its own copy of this crate, blind to this copy's
/// jobs; it exports `stackjob_openssl_foreign_api`, a table of hooks. Each
/// driver then owns a C `ASYNC_WAIT_CTX` made by that library and
/// describes its job in a `ForeignJob` record, made current on the thread
/// around every segment: C code inside the job gets it from
/// `ASYNC_get_current_job`, its wait ctx from `ASYNC_get_wait_ctx` and is
/// paused by `ASYNC_pause_job` (which calls [`pause`](crate::pause)). The
/// wait fds C code registers are mirrored into the driver's [`WaitCtx`]
/// after every pause (so the [`FdWatcher`] watches them), and in
/// [`Mode::Callback`] the C ctx's callback wakes the task.
#[cfg(any(target_os = "linux", target_os = "android"))]
mod c_abi {
    use crate::wait_ctx::{RawFd, WaitCtx, WaitKey};
    use std::collections::HashMap;
    use std::ffi::{c_int, c_void};
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::{Mutex, OnceLock};

    /// `ForeignJob` of openssl-abi/src/foreign.rs (same layout, version 1).
    #[repr(C)]
    struct ForeignJob {
        id: u64,
        pause: unsafe extern "C" fn(),
        wait_ctx: *mut c_void,
        blocked: c_int,
    }

    /// `ForeignApi` of openssl-abi/src/foreign.rs.
    #[repr(C)]
    struct Api {
        version: u32,
        swap: extern "C" fn(*mut ForeignJob) -> *mut ForeignJob,
        wait_ctx_new: extern "C" fn() -> *mut c_void,
        wait_ctx_free: unsafe extern "C" fn(*mut c_void),
        wait_ctx_get_all_fds: unsafe extern "C" fn(*mut c_void, *mut c_int, *mut usize) -> c_int,
        wait_ctx_set_callback:
            unsafe extern "C" fn(*mut c_void, Option<unsafe extern "C" fn(*mut c_void) -> c_int>, *mut c_void) -> c_int,
    }

    const API_VERSION: u32 = 1;

    /// Mirrored C fds live under keys with this bit set.
    const MIRROR: usize = 1 << (usize::BITS - 1);

    /// The library's hooks, looked up once per process.
    fn api() -> Option<&'static Api> {
        static API: OnceLock<usize> = OnceLock::new();
        let at = *API.get_or_init(|| {
            let _errno = crate::errno::Keep::new();
            // SAFETY: dlsym with RTLD_DEFAULT and a NUL-terminated name only
            // looks a symbol up; a missing one is null.
            let f = unsafe { libc::dlsym(libc::RTLD_DEFAULT, c"stackjob_openssl_foreign_api".as_ptr()) };
            if f.is_null() {
                return 0;
            }
            // SAFETY: the symbol is openssl-abi's
            // `extern "C" fn() -> *const ForeignApi`, which returns a static.
            let get: extern "C" fn() -> *const Api = unsafe { std::mem::transmute(f) };
            let api = get();
            // SAFETY: a pointer to the library's static table; the version
            // is its first field in every layout.
            if api.is_null() || unsafe { (*api).version } != API_VERSION {
                return 0;
            }
            api as usize
        });
        // SAFETY: a static of a library that stays loaded (it was loaded
        // globally before we looked it up; such libraries are not unloaded
        // while their symbols are in use by convention, and this one never
        // asks to be).
        (at != 0).then(|| unsafe { &*(at as *const Api) })
    }

    /// The job's pause as C's `ASYNC_pause_job` calls it. A cancellation
    /// (the job's future dropped) unwinds from `pause`; C frames cannot be
    /// unwound, so the unwind stops here and the job pauses again: it never
    /// runs another line of C, and the core quarantines its stack after a
    /// few tries (as the OpenSSL-ABI library does for its own jobs).
    unsafe extern "C" fn pause_job() {
        while std::panic::catch_unwind(crate::pause).is_err() {}
    }

    /// The wait contexts the C callbacks wake, by link id. The callback's
    /// argument is the id, not a pointer: an engine may call a callback it
    /// fetched earlier after the driver is gone (a cancelled job, a late
    /// completion), and a stale id just finds nothing.
    static WAKE: Mutex<Option<HashMap<u64, WaitCtx>>> = Mutex::new(None);

    fn wake_table() -> std::sync::MutexGuard<'static, Option<HashMap<u64, WaitCtx>>> {
        WAKE.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The C ctx's callback in callback mode: wakes the task (a lock, a
    /// lookup and a reference count; no allocation).
    unsafe extern "C" fn wake(arg: *mut c_void) -> c_int {
        let ctx = wake_table().as_ref().and_then(|t| t.get(&(arg as u64)).cloned());
        if let Some(ctx) = ctx {
            ctx.wake();
        }
        1
    }

    pub(super) struct Link {
        api: &'static Api,
        /// Boxed: C code may keep the handle and the wait ctx across
        /// pauses, and the driver may move between polls.
        job: Box<ForeignJob>,
        /// C fds currently mirrored into the driver's context.
        mirrored: Vec<RawFd>,
    }

    impl Link {
        pub(super) fn new(ctx: &WaitCtx, mode: super::Mode) -> Option<Link> {
            let api = api()?;
            static IDS: AtomicU64 = AtomicU64::new(1);
            // Non-zero and below 2^32 (the handle is id << 32).
            let id = IDS.fetch_add(1, Ordering::Relaxed) % ((1 << 32) - 1) + 1;
            let cctx = (api.wait_ctx_new)();
            if cctx.is_null() {
                return None;
            }
            wake_table().get_or_insert_with(HashMap::new).insert(id, ctx.clone());
            if mode == super::Mode::Callback {
                // SAFETY: a live C ctx of the library; the argument is an id.
                unsafe { (api.wait_ctx_set_callback)(cctx, Some(wake), id as *mut c_void) };
            }
            let job = Box::new(ForeignJob { id, pause: pause_job, wait_ctx: cctx, blocked: 0 });
            Some(Link { api, job, mirrored: Vec::new() })
        }

        /// Makes the job current for C code until the guard drops.
        pub(super) fn enter(&mut self) -> Current {
            let old = (self.api.swap)(&mut *self.job);
            Current { api: self.api, old }
        }

        /// [`enter`](Self::enter) for a new job: no pause block carried over.
        pub(super) fn enter_fresh(&mut self) -> Current {
            self.job.blocked = 0;
            self.enter()
        }

        /// Mirrors the C ctx's fds into `ctx` (after each pause), so the
        /// driver's watcher sees them as changes of the segment.
        pub(super) fn mirror_fds(&mut self, ctx: &WaitCtx) {
            let cctx = self.job.wait_ctx;
            let mut n = 0usize;
            // SAFETY: a live C ctx; with a null buffer only the count is stored.
            if unsafe { (self.api.wait_ctx_get_all_fds)(cctx, std::ptr::null_mut(), &mut n) } == 0 {
                return;
            }
            let mut fds: Vec<c_int> = vec![0; n];
            // SAFETY: `fds` has room for `n` fds.
            if n > 0 && unsafe { (self.api.wait_ctx_get_all_fds)(cctx, fds.as_mut_ptr(), &mut n) } == 0 {
                return;
            }
            fds.truncate(n);
            for &fd in &self.mirrored {
                if !fds.contains(&fd) {
                    ctx.clear_fd(WaitKey::new(MIRROR | fd as usize));
                }
            }
            for &fd in &fds {
                if !self.mirrored.contains(&fd) {
                    ctx.set_wait_fd(WaitKey::new(MIRROR | fd as usize), fd, 0, None);
                }
            }
            self.mirrored = fds;
        }
    }

    impl Drop for Link {
        fn drop(&mut self) {
            let ctx = wake_table().as_mut().and_then(|t| t.remove(&self.job.id));
            // SAFETY: our C ctx, freed once (its fd cleanups run now).
            unsafe {
                (self.api.wait_ctx_set_callback)(self.job.wait_ctx, None, std::ptr::null_mut());
                (self.api.wait_ctx_free)(self.job.wait_ctx);
            }
            drop(ctx);
        }
    }

    /// The job is current for C code while this lives.
    pub(super) struct Current {
        api: &'static Api,
        old: *mut ForeignJob,
    }

    impl Drop for Current {
        fn drop(&mut self) {
            (self.api.swap)(self.old);
        }
    }
}

/// Elsewhere the OpenSSL-ABI library does not exist: no link.
#[cfg(not(any(target_os = "linux", target_os = "android")))]
mod c_abi {
    pub(super) enum Link {}
    pub(super) struct Current;
    impl Link {
        pub(super) fn new(_: &crate::WaitCtx, _: super::Mode) -> Option<Link> {
            None
        }
        pub(super) fn enter(&mut self) -> Current {
            match *self {}
        }
        pub(super) fn enter_fresh(&mut self) -> Current {
            match *self {}
        }
        pub(super) fn mirror_fds(&mut self, _: &crate::WaitCtx) {
            match *self {}
        }
    }
}
