//! `ASYNC_WAIT_CTX`: a reference-counted C object around [`stackjob::WaitCtx`].
//!
//! The fd list and its per-segment change tracking are the crate's
//! `WaitCtx`; the job's record (`handles::Rec`) resets its change flags at
//! every segment start (`WaitCtx::begin_segment`; the crate is not given
//! the context). The C callback (a function pointer and an
//! argument, which the crate's closure type cannot give back) and the status
//! (any `int`, not only the four `ASYNC_STATUS_*` values) live here.
//!
//! The user's `ASYNC_WAIT_CTX_new` reference and each job started with the
//! context hold one reference. The fd cleanups run when the last one goes:
//! inside `ASYNC_WAIT_CTX_free` in every defined use (OpenSSL's timing), or,
//! if the user freed the context while a job still used it (a
//! use-after-free in OpenSSL), when that job ends. The object is still valid
//! while the cleanups run, so they may call `ASYNC_WAIT_CTX_*` on it.

use stackjob::WaitCtx;
use std::cell::UnsafeCell;
use std::ffi::{c_int, c_void};
use std::sync::Mutex;
use std::sync::atomic::{AtomicI32, AtomicUsize, Ordering};

/// The C `ASYNC_WAIT_CTX`.
pub struct CWaitCtx {
    refs: AtomicUsize,
    /// Replaced (by an empty context) only once the last reference is gone,
    /// so shared access is sound everywhere else.
    inner: UnsafeCell<WaitCtx>,
    /// `ASYNC_callback_fn` (as an address, 0 = none) and its argument.
    callback: Mutex<(usize, usize)>,
    status: AtomicI32,
}

// SAFETY: `inner` is only replaced when no other reference exists (see
// `release`); WaitCtx itself is thread-safe; the rest are atomics/mutexes.
unsafe impl Sync for CWaitCtx {}
// SAFETY: as above; nothing in the object is tied to a thread.
unsafe impl Send for CWaitCtx {}

/// The C callback type `ASYNC_callback_fn`.
pub type CallbackFn = unsafe extern "C" fn(*mut c_void) -> c_int;

/// The C fd cleanup type.
pub type CleanupFn = unsafe extern "C" fn(*mut CWaitCtx, *const c_void, c_int, *mut c_void);

impl CWaitCtx {
    /// A new context with one reference (the caller's).
    pub(crate) fn new_raw() -> *mut CWaitCtx {
        Box::into_raw(Box::new(CWaitCtx {
            refs: AtomicUsize::new(1),
            inner: UnsafeCell::new(WaitCtx::new()),
            callback: Mutex::new((0, 0)),
            status: AtomicI32::new(0),
        }))
    }

    /// The crate's wait context.
    pub(crate) fn inner(&self) -> &WaitCtx {
        // SAFETY: see the field: replaced only without other references.
        unsafe { &*self.inner.get() }
    }

    /// Takes one more reference.
    pub(crate) fn retain(&self) {
        self.refs.fetch_add(1, Ordering::Relaxed);
    }

    /// Drops one reference; the last one runs the fd cleanups (newest
    /// first, with the object still valid) and frees the object.
    ///
    /// # Safety
    /// `ctx` must be a live context from [`CWaitCtx::new_raw`] and the caller
    /// must own one of its references.
    #[inline]
    pub(crate) unsafe fn release(ctx: *mut CWaitCtx) {
        // SAFETY: the caller owns a reference, so the object is alive.
        let this = unsafe { &*ctx };
        if this.refs.fetch_sub(1, Ordering::AcqRel) != 1 {
            return;
        }
        // SAFETY: that was the last reference.
        unsafe { Self::destroy(ctx) }
    }

    /// Runs the fd cleanups and frees the object (out of line: a job's
    /// release of its reference almost never is the last one).
    ///
    /// # Safety
    /// The caller dropped the last reference to the live `ctx`.
    #[cold]
    #[inline(never)]
    unsafe fn destroy(ctx: *mut CWaitCtx) {
        // SAFETY: the caller held the last reference, so the object is alive.
        let this = unsafe { &*ctx };
        // SAFETY: no reference is left but ours: nothing else reads `inner`
        // until the cleanups below start, and they see the empty context.
        let old = unsafe { std::mem::replace(&mut *this.inner.get(), WaitCtx::new()) };
        drop(old); // runs the cleanups, which may call back into `ctx`
        // SAFETY: created by Box::into_raw in `new_raw`; last reference.
        drop(unsafe { Box::from_raw(ctx) });
    }

    pub(crate) fn set_callback(&self, callback: Option<CallbackFn>, arg: *mut c_void) {
        *self.callback.lock().unwrap_or_else(|e| e.into_inner()) = (callback.map_or(0, |f| f as usize), arg as usize);
    }

    pub(crate) fn callback(&self) -> Option<(CallbackFn, *mut c_void)> {
        let (f, arg) = *self.callback.lock().unwrap_or_else(|e| e.into_inner());
        if f == 0 {
            return None;
        }
        // SAFETY: `f` was stored from a non-null `CallbackFn` in `set_callback`.
        Some((unsafe { std::mem::transmute::<usize, CallbackFn>(f) }, arg as *mut c_void))
    }

    pub(crate) fn set_status(&self, status: c_int) {
        self.status.store(status, Ordering::Release);
    }

    pub(crate) fn status(&self) -> c_int {
        self.status.load(Ordering::Acquire)
    }
}
