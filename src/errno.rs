//! The calling thread's `errno`, and a guard that keeps it.
//!
//! Whatever the crate does on a caller's behalf (the capability probe,
//! mapping and unmapping stacks, `mincore` for the scrub, installing the
//! overflow handler) must leave `errno` as the caller had it: a job starts
//! with its starter's value and the resumer's value survives the job, and a
//! system call failing inside the crate would break both. Every such slow
//! path holds a [`Keep`]; the hot paths make no system call.

/// Where this thread's `errno` lives.
#[inline]
pub(crate) fn location() -> *mut libc::c_int {
    // SAFETY: these libc functions have no preconditions and return the
    // calling thread's errno address.
    unsafe {
        cfg_if::cfg_if! {
            if #[cfg(any(target_os = "linux", target_os = "emscripten", target_os = "redox"))] {
                libc::__errno_location()
            } else if #[cfg(any(target_os = "android", target_os = "netbsd", target_os = "openbsd"))] {
                libc::__errno()
            } else if #[cfg(any(target_os = "freebsd", target_os = "dragonfly", target_vendor = "apple"))] {
                libc::__error()
            } else {
                compile_error!("stackjob: unknown errno location for this OS")
            }
        }
    }
}

/// Restores the thread's `errno` to its value at [`Keep::new`] when dropped.
pub(crate) struct Keep {
    at: *mut libc::c_int,
    value: libc::c_int,
}

impl Keep {
    /// Remembers the calling thread's `errno`.
    #[inline]
    pub(crate) fn new() -> Keep {
        let at = location();
        // SAFETY: `location` returns this thread's errno, always readable.
        Keep { at, value: unsafe { *at } }
    }
}

impl Drop for Keep {
    #[inline]
    fn drop(&mut self) {
        // SAFETY: `Keep` is not `Send` (raw pointer), so this runs on the
        // thread whose errno `at` is, which lives as long as the thread.
        unsafe { *self.at = self.value };
    }
}
