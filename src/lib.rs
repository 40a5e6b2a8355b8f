//! # stackjob — pausable jobs on guard-paged stacks
//!
//! OpenSSL-style *async jobs* for Rust: a function runs on its own small
//! stack, can [`pause`] itself from any depth of its call chain, hands
//! control back to its caller, and is resumed later exactly where it
//! stopped. The contract is OpenSSL's `ASYNC_start_job(3)` — a job pool per
//! thread, start/resume, pause, the current job, wait contexts with fds and
//! a completion callback, nestable pause blocking, `is_capable` — with its
//! known failures fixed: guard regions instead of silent heap corruption,
//! configurable stack sizes, a per-job pause block, typed errors, jobs that
//! cannot be resumed from another thread, and cancellation of dropped jobs.
//!
//! ```
//! # if !stackjob::is_capable() { eprintln!("skipped: no stackjob backend on this target"); return Ok(()); }
//! use stackjob::{start, pause, Step, WaitCtx};
//!
//! let ctx = WaitCtx::new();
//! let mut step = start(Some(&ctx), || {
//!     // ... submit work, register a wait fd in the job's WaitCtx ...
//!     pause(); // back to the caller until the work is done
//!     // ... collect the result ...
//!     7
//! })?;
//! let result = loop {
//!     match step {
//!         Step::Paused(job) => {
//!             // ... wait for the job's fds (poll/epoll), then:
//!             step = job.resume()?;
//!         }
//!         Step::Finished(value) => break value,
//!     }
//! };
//! assert_eq!(result, 7);
//! # Ok::<(), stackjob::Error>(())
//! ```
//!
//! The context switch is hand-written assembly, one file per architecture
//! in `arch/`; there is no ucontext, no setjmp and no C compiler involved.
//! On a target without a backend the crate still builds, [`is_capable`] is
//! `false` and [`start`] returns [`Error::NotCapable`].

#![deny(missing_docs)]
#![deny(unsafe_op_in_unsafe_fn)]

mod arch;
mod current;
mod errno;
mod error;
mod job;
mod overflow;
mod pool;
mod sanitizer;
mod stack;
mod wait_ctx;

pub use error::Error;
pub use job::{BlockGuard, Job, Step, block_pause, cleanup_thread, current_wait_ctx, in_job, pause, start};
pub use overflow::set_overflow_advice;
pub use pool::{PoolConfig, PoolStats, init_thread, init_thread_with, pool_stats, quarantined_jobs};
pub use stack::{DEFAULT_GUARD_SIZE, DEFAULT_STACK_SIZE, MAX_GUARD_SIZE, MAX_STACK_SIZE, MIN_STACK_SIZE};
pub use wait_ctx::{Callback, ChangedFds, Cleanup, RawFd, Status, WaitCtx, WaitKey};

/// Whether jobs can run on this platform (OpenSSL's `ASYNC_is_capable`).
///
/// `false` on targets without a context-switch backend, and on x86_64 when
/// the process runs with a hardware shadow stack (CET), which the switch
/// does not manage. The answer is computed once; later calls are a load.
///
/// ```
/// if stackjob::is_capable() {
///     assert!(stackjob::start(None, || ()).is_ok());
/// } else {
///     assert!(matches!(stackjob::start(None, || ()), Err(stackjob::Error::NotCapable { .. })));
/// }
/// ```
#[inline]
pub fn is_capable() -> bool {
    arch::CAPABLE && runtime_capable()
}

/// The name of the context-switch backend compiled for this target
/// (`"x86_64-sysv"`, …, or `"none"`).
///
/// ```
/// assert_eq!(stackjob::backend() == "none", !stackjob::is_capable() && stackjob::backend() == "none");
/// ```
pub fn backend() -> &'static str {
    arch::BACKEND
}

/// Run-time conditions that disable a compiled-in backend, checked once.
#[inline]
fn runtime_capable() -> bool {
    use std::sync::atomic::{AtomicU8, Ordering};
    static STATE: AtomicU8 = AtomicU8::new(0); // 0 unknown, 1 capable, 2 not
    match STATE.load(Ordering::Relaxed) {
        1 => true,
        2 => false,
        _ => {
            let ok = runtime_blocker().is_none();
            STATE.store(if ok { 1 } else { 2 }, Ordering::Relaxed);
            ok
        }
    }
}

/// Why jobs cannot run, if something at run time forbids them.
fn runtime_blocker() -> Option<&'static str> {
    #[cfg(all(target_arch = "x86_64", target_os = "linux"))]
    {
        // The probe fails with EINVAL on kernels without shadow stacks: the
        // caller's errno must survive it.
        let _errno = errno::Keep::new();
        // arch_prctl(ARCH_SHSTK_STATUS): bit 0 = shadow stack enabled. The
        // switch moves rsp without `rstorssp`, so a shadow stack would fault.
        const ARCH_SHSTK_STATUS: libc::c_long = 0x5005;
        let mut features: u64 = 0;
        // SAFETY: the kernel writes one u64 through the pointer, or fails
        // with EINVAL on kernels without shadow-stack support.
        let rc = unsafe { libc::syscall(libc::SYS_arch_prctl, ARCH_SHSTK_STATUS, &mut features as *mut u64) };
        if rc == 0 && features & 1 != 0 {
            return Some("the process runs with a CET shadow stack, which stackjob's switch does not manage");
        }
    }
    None
}

/// The reason [`Error::NotCapable`] gives.
pub(crate) fn not_capable_reason() -> &'static str {
    if !arch::CAPABLE {
        "no context-switch backend for this target (stackjob has x86_64, aarch64 and riscv64 backends for ELF systems)"
    } else {
        runtime_blocker().unwrap_or("jobs are disabled at run time")
    }
}
