//! The job running on this thread, as the top address of its stack (which
//! is where its slot begins), or null outside any job.
//!
//! Written on every switch, read by `pause` and the current-job queries, and
//! read by the overflow handler inside a signal handler; hence a plain
//! `Cell` with a constant initialiser and no destructor: one TLS load or
//! store, no lazy initialisation, nothing that is unsafe in a signal handler.

use std::cell::Cell;
use std::ptr;

thread_local! {
    static CURRENT: Cell<*mut u8> = const { Cell::new(ptr::null_mut()) };
}

/// The running job's stack top, or null.
#[inline(always)]
pub(crate) fn get() -> *mut u8 {
    CURRENT.get()
}

/// Makes `top` the running job and returns the previous one.
#[inline(always)]
pub(crate) fn replace(top: *mut u8) -> *mut u8 {
    CURRENT.replace(top)
}

/// Sets the running job (null: none).
#[inline(always)]
pub(crate) fn set(top: *mut u8) {
    CURRENT.set(top)
}
