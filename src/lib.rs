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
//!
//! The API above is built on a typed core, [`raw`]: a body that suspends
//! through a [`raw::Suspender`] reference instead of finding its job
//! through a thread-local, with `errno` and FP-state isolation chosen by a
//! type parameter. Its module docs say when to use which.

#![deny(missing_docs)]
#![deny(unsafe_op_in_unsafe_fn)]

mod arch;
pub mod bridge;
mod capable;
mod current;
mod errno;
mod error;
mod job;
mod overflow;
mod pool;
pub mod raw;
mod sanitizer;
mod stack;
#[cfg(feature = "tokio")]
pub mod tokio;
mod wait_ctx;

pub use error::Error;
pub use job::{BlockGuard, Job, Step, block_pause, cleanup_thread, current_wait_ctx, in_job, pause, start};
pub use overflow::set_overflow_advice;
pub use pool::{PoolConfig, PoolStats, init_thread, init_thread_with, pool_stats, quarantined_jobs};
pub use stack::{
    DEFAULT_GUARD_SIZE, DEFAULT_STACK_SIZE, MAX_GUARD_SIZE, MAX_STACK_SIZE, MIN_STACK_SIZE, StackAllocator,
};
pub use wait_ctx::{Callback, ChangedFds, Cleanup, RawFd, Status, WaitCtx, WaitKey};

pub use capable::{backend, is_capable};
