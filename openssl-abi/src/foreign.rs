//! Jobs started by another copy of stackjob, seen by C code as `ASYNC_JOB`s.
//!
//! A Rust program that uses the `stackjob` crate (its tokio bridge, say)
//! and has this library in the process (linked ahead of libcrypto,
//! preloaded, or `dlopen`ed with `RTLD_GLOBAL`) runs its jobs with its own
//! copy of the crate, whose running job this library's copy cannot see.
//! So that an engine or provider called from such a job finds it as OpenSSL
//! code expects, the program's copy looks up
//! [`stackjob_openssl_foreign_api`] once and, around every segment of each
//! of its jobs, makes a [`ForeignJob`] current on the thread
//! ([`ForeignApi::swap`]). While one is current and no job of this library
//! runs:
//!
//! * `ASYNC_get_current_job` returns its handle, `id << 32` (the low half
//!   of a handle of this library is never 0, so the two never meet, and
//!   `ASYNC_start_job` refuses it as a stale handle);
//! * `ASYNC_get_wait_ctx` of that handle returns its `wait_ctx`, an
//!   `ASYNC_WAIT_CTX` the program made with this library and watches
//!   (its fds, its callback) together with its own wait context;
//! * `ASYNC_pause_job` calls its `pause` (the program's `stackjob::pause`),
//!   unless `ASYNC_block_pause` (counted in `blocked`) is in force.
//!
//! The default `OSSL_LIB_CTX` is not swapped around these jobs.

use crate::wait_ctx::{CWaitCtx, CallbackFn};
use std::cell::Cell;
use std::ffi::{c_int, c_void};
use std::ptr;

/// A job of the program's own stackjob, as it describes it to this
/// library (`repr(C)`: the program's copy of the crate defines the same).
#[repr(C)]
pub struct ForeignJob {
    /// Non-zero and below 2^32, unique among the program's live jobs.
    pub id: u64,
    /// Pauses the job (called on its stack, by `ASYNC_pause_job`).
    pub pause: unsafe extern "C" fn(),
    /// The job's wait ctx as C code sees it, or null.
    pub wait_ctx: *mut CWaitCtx,
    /// `ASYNC_block_pause` depth; only this library changes it, on the
    /// job's thread, while the job runs.
    pub blocked: c_int,
}

/// What [`stackjob_openssl_foreign_api`] hands out.
#[repr(C)]
pub struct ForeignApi {
    /// [`FOREIGN_API_VERSION`].
    pub version: u32,
    /// Makes `job` (or null: none) the thread's current foreign job;
    /// returns the previous one.
    pub swap: extern "C" fn(*mut ForeignJob) -> *mut ForeignJob,
    /// This library's `ASYNC_WAIT_CTX_new`, `_free`, `_get_all_fds` and
    /// `_set_callback` (named here, so that the program need not find this
    /// library's definitions among libcrypto's).
    pub wait_ctx_new: extern "C" fn() -> *mut CWaitCtx,
    /// `ASYNC_WAIT_CTX_free`.
    pub wait_ctx_free: unsafe extern "C" fn(*mut CWaitCtx),
    /// `ASYNC_WAIT_CTX_get_all_fds`.
    pub wait_ctx_get_all_fds: unsafe extern "C" fn(*mut CWaitCtx, *mut c_int, *mut usize) -> c_int,
    /// `ASYNC_WAIT_CTX_set_callback`.
    pub wait_ctx_set_callback: unsafe extern "C" fn(*mut CWaitCtx, Option<CallbackFn>, *mut c_void) -> c_int,
}

/// The layout of [`ForeignJob`] and [`ForeignApi`]; bumped on any change.
pub const FOREIGN_API_VERSION: u32 = 1;

thread_local! {
    static CURRENT: Cell<*mut ForeignJob> = const { Cell::new(ptr::null_mut()) };
}

extern "C" fn swap(job: *mut ForeignJob) -> *mut ForeignJob {
    CURRENT.with(|c| c.replace(job))
}

static API: ForeignApi = ForeignApi {
    version: FOREIGN_API_VERSION,
    swap,
    wait_ctx_new: crate::ASYNC_WAIT_CTX_new,
    wait_ctx_free: crate::ASYNC_WAIT_CTX_free,
    wait_ctx_get_all_fds: crate::ASYNC_WAIT_CTX_get_all_fds,
    wait_ctx_set_callback: crate::ASYNC_WAIT_CTX_set_callback,
};

/// `const stackjob_openssl_foreign_api *stackjob_openssl_foreign_api(void)`:
/// the hooks another copy of stackjob uses to make its jobs visible to C
/// code (see the module docs).
#[cfg_attr(not(stackjob_ossl_symver), unsafe(no_mangle))]
pub extern "C" fn stackjob_openssl_foreign_api() -> *const ForeignApi {
    &API
}

/// The current foreign job, if one is current (and non-null).
fn current() -> Option<&'static mut ForeignJob> {
    let job = CURRENT.with(Cell::get);
    // SAFETY: the program keeps a current job alive and in place, and only
    // this thread uses it, until it swaps it out after the segment.
    unsafe { job.as_mut() }
}

/// `ASYNC_get_current_job` when no job of this library runs: the foreign
/// job's handle, or 0.
pub(crate) fn current_handle() -> usize {
    current().map_or(0, |j| (j.id as usize) << 32)
}

/// `ASYNC_get_wait_ctx(h)` for a foreign handle: `Some(ctx)` when `h` is
/// the current foreign job's, `None` when `h` is not a foreign handle.
pub(crate) fn wait_ctx_of(h: usize) -> Option<*mut CWaitCtx> {
    if h == 0 || h & 0xffff_ffff != 0 {
        return None;
    }
    Some(current().filter(|j| (j.id as usize) << 32 == h).map_or(ptr::null_mut(), |j| j.wait_ctx))
}

/// `ASYNC_pause_job` when no job of this library runs.
pub(crate) fn pause() -> c_int {
    if let Some(j) = current()
        && j.blocked == 0
    {
        crate::config::count(&crate::config::COUNTERS.pauses);
        // SAFETY: the program's pause function, called on its job's stack
        // (we run inside the job's segment), as the contract says.
        unsafe { (j.pause)() };
    }
    1
}

/// `ASYNC_block_pause` (+1) / `ASYNC_unblock_pause` (-1) when no job of
/// this library runs.
pub(crate) fn block(delta: c_int) {
    if let Some(j) = current() {
        j.blocked = j.blocked.saturating_add(delta).max(0);
    }
}
