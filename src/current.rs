//! The per-thread state the hot paths touch, in one thread-local: the
//! running job, the pool's idle-stack list, the job-id counter, the
//! list of the thread's stacks and the first-pause counter.
//!
//! One `const`-initialised thread-local with no destructor: in an
//! executable each field is one `fs`-relative load or store; in a shared
//! library (the OpenSSL-ABI `cdylib`) every distinct thread-local costs a
//! `__tls_get_addr` call, so keeping the hot fields together lets a
//! function find all of them with one. No lazy initialisation and nothing
//! to destroy: usable from a signal handler (the overflow handler walks the
//! thread's stacks) and while the thread's other thread-locals are destroyed.

use std::cell::Cell;
use std::ptr;

/// `epoch` when the thread has no pool: never issued to a pool, and never a
/// stack's epoch (stacks outside any pool have epoch 0).
pub(crate) const NO_POOL: u64 = u64::MAX;

/// See the module docs. Each field belongs to the module named beside it.
pub(crate) struct Hot {
    /// The running job's slot (its stack top), or null: outside any job,
    /// and while a `raw::Fiber` runs (raw.rs sets it, job.rs reads it).
    pub(crate) current: Cell<*mut u8>,
    /// The most recently released idle stack of the pool (LIFO), or null
    /// (pool.rs).
    pub(crate) idle: Cell<*mut u8>,
    /// The epoch of the installed pool, or `NO_POOL` (pool.rs).
    pub(crate) epoch: Cell<u64>,
    /// The next job id (job.rs).
    pub(crate) next_id: Cell<u64>,
    /// The newest stack the thread mapped, or null: the head of the list
    /// of its mapped stacks (stack.rs, `stack::live`).
    pub(crate) live: Cell<*mut u8>,
    /// Moves whenever stacks of that list are given back (stack.rs).
    pub(crate) live_changes: Cell<u64>,
    /// How many `stack::live::Hold`s are alive, and the stacks unmapped
    /// meanwhile, kept mapped until the last one ends (stack.rs).
    pub(crate) live_holds: Cell<u32>,
    pub(crate) deferred: Cell<*mut u8>,
    pub(crate) deferred_len: Cell<usize>,
    /// How many jobs of the thread paused for the first time: each such
    /// job's stamp, so that `cleanup_thread` cancels the newest first
    /// (job.rs).
    pub(crate) first_pauses: Cell<u64>,
}

thread_local! {
    static HOT: Hot = const {
        Hot {
            current: Cell::new(ptr::null_mut()),
            idle: Cell::new(ptr::null_mut()),
            epoch: Cell::new(NO_POOL),
            next_id: Cell::new(1),
            live: Cell::new(ptr::null_mut()),
            live_changes: Cell::new(0),
            live_holds: Cell::new(0),
            deferred: Cell::new(ptr::null_mut()),
            deferred_len: Cell::new(0),
            first_pauses: Cell::new(0),
        }
    };
}

/// The calling thread's hot state.
#[inline(always)]
pub(crate) fn hot() -> &'static Hot {
    // SAFETY: a `const` thread-local without a destructor lives as long as
    // its thread and is never torn down before it; `Hot` is not `Sync`, so
    // the reference can never reach another thread (`&Hot` is not `Send`).
    HOT.with(|h| unsafe { &*(h as *const Hot) })
}

/// The running job's stack top, or null.
#[inline(always)]
pub(crate) fn get() -> *mut u8 {
    hot().current.get()
}
