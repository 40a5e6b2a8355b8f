//! Jobs inside tokio, both ways (feature `tokio`).
//!
//! * **Job → future.** [`job(f)`](job) returns a future that runs `f` as a
//!   job and resumes it when it can make progress: when one of its wait
//!   fds becomes readable (the fds of its [`WaitCtx`], followed through
//!   [`WaitCtx::changed_fds`] and registered with
//!   [`AsyncFd`]), when a completion on any
//!   thread calls the context's callback ([`Mode::Callback`], the default),
//!   or when a future it [`wait`]s for is ready. A full pool
//!   ([`crate::Error::NoJobs`]) is waited out. Dropping the future cancels
//!   the job (its destructors run, its stack goes back to the pool); a
//!   panic in the job is raised again from `poll`. Reuse a [`JobDriver`]
//!   per connection to keep an engine's fd registered across its jobs.
//! * **Future → job.** Inside such a job, [`wait(fut)`](wait) lets
//!   synchronous code (a C library callback, a synchronous crypto
//!   provider) await an async operation: the job pauses, and the task's
//!   waker resumes it when `fut` is ready. The future runs in the task's
//!   context, so tokio timers and sockets work.
//!
//! # Only on the thread that started the job
//!
//! A job lives on its stack on one thread: its frames hold pointers into
//! that stack and its thread's state, so a [`JobFuture`] is not `Send`.
//! Await it on a current-thread runtime, in a
//! [`LocalSet`](::tokio::task::LocalSet) (`spawn_local`), or with
//! `Runtime::block_on` (which polls on the calling thread, on any runtime).
//! `tokio::spawn` needs `Send` and refuses it at compile time:
//!
//! ```compile_fail
//! // `Runtime::spawn` and `tokio::spawn` require `Send` on every runtime:
//! let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
//! rt.spawn(stackjob::tokio::job(|| 1)); // error: `*mut ()` cannot be sent between threads safely
//! ```
//!
//! ```
//! # if !stackjob::is_capable() { eprintln!("skipped: no stackjob backend on this target"); return; }
//! use stackjob::tokio::job;
//! let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
//! let value = rt.block_on(async {
//!     job(|| {
//!         // synchronous code, paused while the device works:
//!         let ctx = stackjob::current_wait_ctx().unwrap();
//!         std::thread::spawn(move || ctx.wake()); // the device completes on its own thread
//!         stackjob::pause();
//!         42
//!     })
//!     .await
//! });
//! assert_eq!(value.unwrap(), 42);
//! ```

use crate::bridge::{self, FdWatcher};
use crate::wait_ctx::{RawFd, WaitCtx};
use ::tokio::io::Interest;
use ::tokio::io::unix::AsyncFd;
use std::io;
use std::os::fd::{FromRawFd, OwnedFd};
use std::task::{Context, Poll};

pub use crate::bridge::{Error, Mode, WaitError, wait, yield_now};

/// A wait fd as tokio watches it: the context's fd number, and a
/// duplicate of it that the registration owns, so that the registered fd
/// stays open (and names the same file) for as long as tokio watches it,
/// whatever the engine does with its own fd.
#[derive(Debug)]
struct Watched {
    fd: RawFd,
    dup: AsyncFd<OwnedFd>,
}

/// The tokio [`FdWatcher`]: each distinct wait fd of the job's context is
/// registered with the runtime's reactor as an
/// [`AsyncFd`] (read interest, as OpenSSL's
/// wait fds are), added and removed as [`WaitCtx::changed_fds`] reports.
/// When an fd is ready its readiness is cleared before the job is resumed
/// (tokio's readiness is edge-like: the engine must drain the fd, as an
/// engine does when it reads its eventfd; an fd it leaves readable does
/// not wake the task again).
///
/// What is registered is a duplicate of the fd (`F_DUPFD_CLOEXEC`, once
/// per fd, not per job), closed when the job clears the fd from the
/// context; so the engine may close its fd whenever it likes.
#[derive(Debug, Default)]
pub struct TokioFds {
    regs: Vec<Watched>,
    /// Live entries of the context at the last sync (duplicates included).
    synced: usize,
}

impl TokioFds {
    fn watch(&mut self, fd: RawFd) -> Result<(), (RawFd, io::Error)> {
        if self.regs.iter().any(|r| r.fd == fd) {
            return Ok(());
        }
        if ::tokio::runtime::Handle::try_current().is_err() {
            let why = "no tokio runtime on this thread: poll the JobFuture inside one (with IO enabled)";
            return Err((fd, io::Error::other(why)));
        }
        let dup = {
            let _errno = crate::errno::Keep::new();
            // SAFETY: fcntl has no memory arguments; a bad fd is an error.
            let dup = unsafe { libc::fcntl(fd, libc::F_DUPFD_CLOEXEC, 0) };
            if dup < 0 {
                return Err((fd, io::Error::last_os_error()));
            }
            // SAFETY: `dup` was just returned by fcntl: open, and ours alone.
            unsafe { OwnedFd::from_raw_fd(dup) }
        };
        // tokio panics when the runtime has no IO driver: that is a
        // configuration error to report, not a crash.
        let registered = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            // SAFETY: the OwnedFd is open and names one file for as long as
            // the AsyncFd that owns it lives (tokio's I/O safety contract).
            unsafe { AsyncFd::register_with_interest(dup, Interest::READABLE) }
        }));
        let dup = match registered {
            Ok(Ok(dup)) => dup,
            Ok(Err(e)) => return Err((fd, e.into())),
            Err(_) => {
                let why = "the tokio runtime has no IO driver: build it with enable_io() or enable_all()";
                return Err((fd, io::Error::other(why)));
            }
        };
        self.regs.push(Watched { fd, dup });
        Ok(())
    }

    fn unwatch(&mut self, fd: RawFd) {
        self.regs.retain(|r| r.fd != fd);
    }
}

impl FdWatcher for TokioFds {
    fn sync(&mut self, ctx: &WaitCtx) -> Result<(), (RawFd, io::Error)> {
        let changed = ctx.changed_fds();
        for fd in &changed.deleted {
            self.unwatch(*fd);
        }
        for fd in &changed.added {
            self.watch(*fd)?;
        }
        self.synced = (self.synced + changed.added.len()).saturating_sub(changed.deleted.len());
        let live = ctx.fd_count();
        if live != self.synced {
            // Changed outside a job segment (or a fresh driver on a used
            // context): start over from the whole set.
            let all = ctx.all_fds();
            self.regs.retain(|r| all.contains(&r.fd));
            for fd in all {
                self.watch(fd)?;
            }
            self.synced = live;
        }
        Ok(())
    }

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        let mut ready = false;
        for reg in &self.regs {
            match reg.dup.poll_read_ready(cx) {
                Poll::Ready(Ok(mut guard)) => {
                    guard.clear_ready();
                    ready = true;
                }
                // An fd in error: resume, the engine sees the error itself.
                Poll::Ready(Err(_)) => ready = true,
                Poll::Pending => {}
            }
        }
        if ready { Poll::Ready(()) } else { Poll::Pending }
    }

    fn is_watching(&self) -> bool {
        !self.regs.is_empty()
    }
}

/// A [`bridge::JobDriver`] whose wait fds tokio watches: a wait context
/// plus its fd registrations, reused by the jobs of one connection.
///
/// ```
/// # if !stackjob::is_capable() { eprintln!("skipped: no stackjob backend on this target"); return; }
/// use stackjob::tokio::{JobDriver, Mode};
/// let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
/// rt.block_on(async {
///     let mut driver = JobDriver::with_mode(Mode::Fd);
///     for i in 0..3 {
///         assert_eq!(driver.run(move || { stackjob::tokio::yield_now(); i }).await.unwrap(), i);
///     }
/// });
/// ```
pub type JobDriver = bridge::JobDriver<TokioFds>;

/// A job as a tokio future (see the [module docs](self)).
pub type JobFuture<'a, F, R> = bridge::JobFuture<'a, F, R, TokioFds>;

/// Runs `f` as a job, as a future: with its own wait context in
/// [`Mode::Callback`] (fds are watched too). Await it (or `spawn_local`
/// it) on the thread whose tokio runtime should drive it.
///
/// ```
/// # if !stackjob::is_capable() { eprintln!("skipped: no stackjob backend on this target"); return; }
/// let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
/// let local = tokio::task::LocalSet::new();
/// let sum: u32 = local.block_on(&rt, async {
///     let tasks: Vec<_> = (0..10u32)
///         .map(|i| tokio::task::spawn_local(stackjob::tokio::job(move || { stackjob::tokio::yield_now(); i })))
///         .collect();
///     let mut sum = 0;
///     for t in tasks { sum += t.await.unwrap().unwrap(); }
///     sum
/// });
/// assert_eq!(sum, 45);
/// ```
pub fn job<F, R>(f: F) -> JobFuture<'static, F, R>
where
    F: FnOnce() -> R + 'static,
    R: 'static,
{
    JobDriver::new().into_run(f)
}
