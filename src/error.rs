//! The one error type of the crate.

use std::fmt;
use std::io;

/// Everything that can go wrong when creating a pool or starting a job.
///
/// Every message says what happened and what to do about it.
///
/// ```
/// let err = stackjob::init_thread(2, 3).unwrap_err();
/// assert!(matches!(err, stackjob::Error::InvalidPoolSize { max_size: 2, init_size: 3 }));
/// assert!(err.to_string().contains("init_size"));
/// ```
#[derive(Debug)]
#[non_exhaustive]
pub enum Error {
    /// This target has no context-switch backend (see [`is_capable`](crate::is_capable)),
    /// or the process runs with a hardware shadow stack the backend cannot switch.
    NotCapable {
        /// Why jobs cannot run here.
        reason: &'static str,
    },
    /// The thread's pool already holds `max_size` jobs and all are in use
    /// (OpenSSL's `ASYNC_NO_JOBS`). Retry once a job has finished, or raise
    /// the limit.
    NoJobs {
        /// Jobs in use on this thread.
        in_use: usize,
        /// The pool's limit.
        max_size: usize,
    },
    /// Mapping a job stack or its guard region failed (out of memory, or the
    /// kernel's `vm.max_map_count` limit: each stack costs two mappings).
    StackAlloc {
        /// Usable bytes requested for the stack.
        size: usize,
        /// The operating system's error.
        source: io::Error,
    },
    /// `init_size` is larger than a non-zero `max_size`.
    InvalidPoolSize {
        /// Requested limit.
        max_size: usize,
        /// Requested number of pre-created jobs.
        init_size: usize,
    },
    /// The job was cancelled by [`cleanup_thread`](crate::cleanup_thread)
    /// (or by its thread's exit) while paused; it cannot be resumed.
    Cancelled,
    /// The requested stack size is outside
    /// [`MIN_STACK_SIZE`](crate::MIN_STACK_SIZE)..=[`MAX_STACK_SIZE`](crate::MAX_STACK_SIZE).
    InvalidStackSize {
        /// The size that was asked for.
        requested: usize,
    },
    /// The requested guard size is 0 or larger than
    /// [`MAX_GUARD_SIZE`](crate::MAX_GUARD_SIZE).
    InvalidGuardSize {
        /// The size that was asked for.
        requested: usize,
    },
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::NotCapable { reason } => {
                write!(f, "stackjob cannot run jobs here: {reason}; check is_capable() and run the work synchronously")
            }
            Error::NoJobs { in_use, max_size } => write!(
                f,
                "job pool exhausted: {in_use} of {max_size} jobs in use on this thread \
                 (retry after a job finishes, or raise max_size in init_thread)"
            ),
            Error::StackAlloc { size, source } => {
                write!(f, "could not map a {size}-byte job stack with its guard region: {source}")?;
                if source.raw_os_error() == Some(libc::ENOMEM) {
                    write!(
                        f,
                        " (out of memory or out of mappings: each job stack uses two, \
                         see /proc/sys/vm/max_map_count; finish or drop paused jobs, \
                         lower max_size or the stack size)"
                    )?;
                }
                Ok(())
            }
            Error::InvalidPoolSize { max_size, init_size } => write!(
                f,
                "invalid pool size: init_size {init_size} exceeds max_size {max_size} \
                 (use max_size 0 for no limit, or init_size <= max_size)"
            ),
            Error::Cancelled => write!(
                f,
                "the job was cancelled by cleanup_thread while paused and no longer exists \
                 (finish or drop paused jobs before cleaning up the thread)"
            ),
            Error::InvalidStackSize { requested } => write!(
                f,
                "invalid job stack size {requested} bytes: it must be between {} and {} bytes",
                crate::MIN_STACK_SIZE,
                crate::MAX_STACK_SIZE
            ),
            Error::InvalidGuardSize { requested } => write!(
                f,
                "invalid job stack guard size {requested} bytes: it must be between 1 and {} bytes \
                 (rounded up to whole pages; default {})",
                crate::MAX_GUARD_SIZE,
                crate::DEFAULT_GUARD_SIZE
            ),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::StackAlloc { source, .. } => Some(source),
            _ => None,
        }
    }
}
