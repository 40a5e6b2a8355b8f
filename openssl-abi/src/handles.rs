//! `ASYNC_JOB *` handles: generation-counted records in a global table.
//!
//! A handle is not an address: it packs a record index and the record's
//! generation, `(generation << 32) | (index + 1)`. Records are never freed
//! (the table only grows, in chunks), and every release bumps the
//! generation, so any handle value can be checked without touching freed
//! memory: a stale handle (its job finished, the record reused by another
//! job) no longer matches and is refused. The value stays the same for the
//! whole life of a job, so the `ASYNC_JOB *` that `ASYNC_start_job` puts in
//! `*job` equals what `ASYNC_get_current_job` returns inside the job, and
//! `ASYNC_get_wait_ctx` works with it from any thread.

use crate::wait_ctx::CWaitCtx;
use stackjob::Job;
use std::cell::{Cell, UnsafeCell};
use std::ffi::{c_int, c_void};
use std::ptr;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicPtr, AtomicU8, AtomicU32, AtomicU64, Ordering, fence};

const _: () = assert!(usize::BITS == 64, "handles pack a 32-bit index and a 32-bit generation into a pointer");

/// Records per chunk, and the most chunks (so at most 64 Mi job records).
const CHUNK: usize = 1024;
const MAX_CHUNKS: usize = 65536;

pub(crate) const FREE: u8 = 0;
pub(crate) const RUNNING: u8 = 1;
pub(crate) const PAUSED: u8 = 2;

/// One job's C-side bookkeeping.
pub(crate) struct Rec {
    /// Bumped on every release; part of the handle.
    pub(crate) generation: AtomicU32,
    pub(crate) state: AtomicU8,
    /// The thread that started the job (`ThreadState::id`), 0 while free.
    pub(crate) owner: AtomicU64,
    /// The job's wait ctx (one reference held), or null.
    pub(crate) ctx: AtomicPtr<CWaitCtx>,
    /// Owner thread only: `ASYNC_block_pause` depth of this job.
    pub(crate) blocked: Cell<u32>,
    /// Owner thread only: while `blocked != 0`, the crate's block of the
    /// job (its own `pause` then returns at once, so `ASYNC_pause_job`
    /// needs no look-up of this record).
    pub(crate) block_guard: UnsafeCell<Option<stackjob::BlockGuard>>,
    /// Owner thread only: the job's default `OSSL_LIB_CTX` while it is
    /// switched out.
    pub(crate) libctx: Cell<*mut c_void>,
    /// Owner thread only: the paused job.
    pub(crate) job: UnsafeCell<Option<Job<c_int>>>,
    /// While on a thread's free list: the next free record there (null ends
    /// the list). Only that thread touches it.
    next_free: Cell<*const Rec>,
    /// This record's index in the table (fixed).
    pub(crate) index: u32,
    /// A wake handle of this job was handed out (`stackjob_async_wake_handle`,
    /// owner thread only): `release` then takes the record's wake lock
    /// (`crate::ext::wake_lock`), so a wake never sees the job half-ended.
    pub(crate) wake_issued: AtomicBool,
    /// Owner thread only: the stack pointer where the job's entry closure
    /// calls the C job function (the unwind for a cancel stops above it).
    pub(crate) entry_sp: Cell<usize>,
}

// SAFETY: the atomics are shared; `blocked`, `block_guard`, `libctx` and `job` are only
// touched by the owner thread, which every entry point checks first
// (`owner == ThreadState::id`), `next_free` only by the thread whose free list
// holds the record, and the record is handed to another thread only through
// the `GLOBAL_FREE` mutex.
unsafe impl Sync for Rec {}

impl Rec {
    /// Starts a segment of the record's job for its wait ctx, if it has one
    /// (`stackjob::WaitCtx::begin_segment`): the crate is given no context,
    /// this layer holds it (`ctx`).
    ///
    /// Owner thread only, with the job switched out.
    #[inline(always)]
    pub(crate) fn begin_segment(&self) {
        // SAFETY: while `ctx` is set the record holds a reference to it, so
        // it is alive; only the owner thread (the caller) replaces it.
        if let Some(w) = unsafe { self.ctx.load(Ordering::Relaxed).as_ref() } {
            w.inner().begin_segment();
        }
    }

    fn new(index: u32) -> Rec {
        Rec {
            generation: AtomicU32::new(1),
            state: AtomicU8::new(FREE),
            owner: AtomicU64::new(0),
            ctx: AtomicPtr::new(ptr::null_mut()),
            blocked: Cell::new(0),
            block_guard: UnsafeCell::new(None),
            libctx: Cell::new(ptr::null_mut()),
            job: UnsafeCell::new(None),
            next_free: Cell::new(ptr::null()),
            index,
            wake_issued: AtomicBool::new(false),
            entry_sp: Cell::new(0),
        }
    }
}

static CHUNKS: [AtomicPtr<Rec>; MAX_CHUNKS] = [const { AtomicPtr::new(ptr::null_mut()) }; MAX_CHUNKS];
/// Records ever created (the next new index).
static CREATED: Mutex<u32> = Mutex::new(0);
/// Free records given back by exited threads.
static GLOBAL_FREE: Mutex<Vec<u32>> = Mutex::new(Vec::new());
static NEXT_THREAD: AtomicU64 = AtomicU64::new(1);

/// Everything the entry points keep per thread, in one `thread_local` so
/// that each call computes its address once (in a shared library every
/// thread-local access is a `__tls_get_addr` call). Constant-initialised
/// and without a destructor: always accessible, also from other
/// thread-local destructors; the thread-exit work is `ExitGuard`'s.
pub(crate) struct ThreadState {
    /// The handle of the job running on this thread, or 0.
    pub(crate) current: Cell<usize>,
    /// That job's record (meaningful while `current != 0`).
    current_rec: Cell<*const Rec>,
    /// This thread's pool was set up with the configured stack size.
    pub(crate) pool_ready: Cell<bool>,
    /// `pool_ready`, the stacks are marked used, `ExitGuard` is armed and
    /// the thread has its `id`: a start needs none of those checks
    /// (`crate::prepare_start`). Never set while `STACKJOB_DEBUG` counts,
    /// so that starts and resumes on a ready thread need no test for that.
    /// Cleared with `pool_ready` by `ASYNC_cleanup_thread`.
    pub(crate) start_ready: Cell<bool>,
    /// A number naming this thread for the process's lifetime; 0 until the
    /// thread first takes a record (live records never have owner 0).
    id: Cell<u64>,
    /// This thread's free records: the first, or null (a pointer, so that
    /// taking one needs no table look-up).
    free: Cell<*const Rec>,
    /// `ExitGuard` is registered for this thread.
    armed: Cell<bool>,
    /// `ExitGuard` has run: records released later go to `GLOBAL_FREE`.
    exited: Cell<bool>,
    /// `stackjob_async_cancel_job` is cancelling a job: its
    /// `ASYNC_pause_job` lets the cancellation unwind the C frames.
    pub(crate) unwind_cancel: Cell<bool>,
    /// This thread's stack and guard sizes (`stackjob_async_set_thread_stack`;
    /// 0 = the process's configuration).
    pub(crate) stack_size: Cell<usize>,
    pub(crate) guard_size: Cell<usize>,
    /// The sizes of the thread's last `ASYNC_init_thread` (for a pool that
    /// `stackjob_async_set_thread_stack` replaces).
    pub(crate) pool_max: Cell<usize>,
    pub(crate) pool_init: Cell<usize>,
}

thread_local! {
    static STATE: ThreadState = const {
        ThreadState {
            current: Cell::new(0),
            current_rec: Cell::new(ptr::null()),
            pool_ready: Cell::new(false),
            start_ready: Cell::new(false),
            id: Cell::new(0),
            free: Cell::new(ptr::null()),
            armed: Cell::new(false),
            exited: Cell::new(false),
            unwind_cancel: Cell::new(false),
            stack_size: Cell::new(0),
            guard_size: Cell::new(0),
            pool_max: Cell::new(0),
            pool_init: Cell::new(0),
        }
    };
}

/// The calling thread's state, reached with one thread-local access (a
/// direct `__tls_get_addr` call where `LocalKey::with` around a large body
/// would go through the key's accessor function).
///
/// The state is constant-initialised and has no destructor, so its storage
/// is valid for the whole life of the thread, also while thread-local
/// destructors run. `ThreadState` is `!Sync` (it holds `Cell`s), so the
/// reference cannot reach another thread or outlive this one.
#[inline(always)]
pub(crate) fn state() -> &'static ThreadState {
    // SAFETY: see above: the pointee lives as long as the calling thread,
    // and the `!Sync` reference stays on it.
    STATE.with(|t| unsafe { &*ptr::from_ref(t) })
}

/// Runs `f` with the calling thread's state.
#[inline(always)]
pub(crate) fn with_state<T>(f: impl FnOnce(&ThreadState) -> T) -> T {
    f(state())
}

impl ThreadState {
    /// Gives this thread its id if it has none yet; from then on
    /// `acquire` can take records (`crate::prepare_start` calls this before
    /// the thread's first start).
    #[inline]
    pub(crate) fn assign_id(&self) {
        if self.id.get() == 0 {
            self.id.set(NEXT_THREAD.fetch_add(1, Ordering::Relaxed));
        }
    }

    /// Whether this thread owns the live record `r` (false for a thread
    /// that never took one: its id is still 0).
    #[inline]
    pub(crate) fn owns(&self, r: &Rec) -> bool {
        r.owner.load(Ordering::Relaxed) == self.id.get()
    }

    /// The job `h` (record `r`) runs on this thread from now on.
    #[inline]
    pub(crate) fn enter(&self, h: usize, r: &'static Rec) {
        self.current.set(h);
        self.current_rec.set(r);
    }

    /// Control is back on the caller's side.
    #[inline]
    pub(crate) fn leave(&self) {
        self.current.set(0);
    }

    /// The record of the job running on this thread, if any.
    #[inline]
    pub(crate) fn current_rec(&self) -> Option<&'static Rec> {
        if self.current.get() == 0 {
            return None;
        }
        // SAFETY: set by `enter` from a `&'static Rec` (records are never
        // freed) together with `current`.
        Some(unsafe { &*self.current_rec.get() })
    }

    /// Registers the thread-exit release (once per thread).
    #[inline]
    pub(crate) fn arm_exit_guard(&self) {
        if !self.armed.get() {
            self.armed.set(true);
            let _ = EXIT_GUARD.try_with(|_| ());
        }
    }
}

/// The record at `index`, if its chunk exists.
#[inline]
pub(crate) fn rec(index: u32) -> Option<&'static Rec> {
    let (c, i) = (index as usize / CHUNK, index as usize % CHUNK);
    let chunk = CHUNKS.get(c)?.load(Ordering::Acquire);
    if chunk.is_null() {
        return None;
    }
    // SAFETY: chunks are leaked arrays of CHUNK records, never freed.
    Some(unsafe { &*chunk.add(i) })
}

/// The handle value for a record index and generation.
#[inline]
pub(crate) fn handle(index: u32, generation: u32) -> usize {
    ((generation as usize) << 32) | (index as usize + 1)
}

/// Splits a handle into (index, generation); `None` for values no handle has.
#[inline]
pub(crate) fn decode(h: usize) -> Option<(u32, u32)> {
    let low = (h & 0xffff_ffff) as u32;
    if low == 0 {
        return None;
    }
    Some((low - 1, (h >> 32) as u32))
}

/// The record a handle names, if the handle is current (its job not yet
/// finished) — whatever thread asks.
#[inline]
pub(crate) fn lookup(h: usize) -> Option<(u32, &'static Rec)> {
    let (index, generation) = decode(h)?;
    let r = rec(index)?;
    (r.state.load(Ordering::Acquire) != FREE && r.generation.load(Ordering::Acquire) == generation)
        .then_some((index, r))
}

/// The record of `h` if the handle is current, its job paused and owned by
/// the calling thread (state `t`): `lookup` + `ThreadState::owns` + a
/// `PAUSED` check, in one pass (a paused record is never free).
#[inline(always)]
pub(crate) fn lookup_paused(t: &ThreadState, h: usize) -> Option<&'static Rec> {
    let (index, generation) = decode(h)?;
    let r = rec(index)?;
    (r.state.load(Ordering::Acquire) == PAUSED && r.generation.load(Ordering::Acquire) == generation && t.owns(r))
        .then_some(r)
}

/// Takes a free record for a new job of the calling thread, which has an
/// id (`ThreadState::assign_id`).
#[inline(always)]
pub(crate) fn acquire(t: &ThreadState) -> Option<(u32, &'static Rec)> {
    let head = t.free.get();
    let (index, r) = if head.is_null() {
        let index = GLOBAL_FREE.lock().unwrap_or_else(|e| e.into_inner()).pop();
        let index = match index {
            Some(i) => i,
            None => new_index()?,
        };
        (index, rec(index)?)
    } else {
        // SAFETY: the free list holds records of the table (never freed).
        let r: &'static Rec = unsafe { &*head };
        t.free.set(r.next_free.get());
        (r.index, r)
    };
    debug_assert_ne!(t.id.get(), 0, "records are taken after `assign_id`");
    r.owner.store(t.id.get(), Ordering::Relaxed);
    Some((index, r))
}

#[cold]
fn new_index() -> Option<u32> {
    let mut created = CREATED.lock().unwrap_or_else(|e| e.into_inner());
    let index = *created;
    let c = index as usize / CHUNK;
    if c >= MAX_CHUNKS {
        return None;
    }
    if CHUNKS[c].load(Ordering::Acquire).is_null() {
        let first = (c * CHUNK) as u32;
        let chunk: Box<[Rec]> = (0..CHUNK as u32).map(|i| Rec::new(first + i)).collect();
        CHUNKS[c].store(Box::leak(chunk).as_mut_ptr(), Ordering::Release);
    }
    *created += 1;
    Some(index)
}

/// Ends a record's job: the handle goes stale, the wait ctx reference is
/// dropped (possibly running its fd cleanups), and the record is free for
/// the calling thread's next job.
///
/// # Safety
/// The calling thread (state `t`) must own the record, and its `job` must be
/// empty.
#[inline(always)]
pub(crate) unsafe fn release(t: &ThreadState, r: &'static Rec) {
    // Only the owner thread writes a live record, so plain loads and stores
    // do instead of read-modify-writes (each a locked instruction). Other
    // threads read it as a seqlock (`ASYNC_get_wait_ctx`: validate, read
    // `ctx` with Acquire, validate again): the fence orders the generation
    // bump before the `ctx` store, so a reader that sees the new `ctx` also
    // sees the new generation and gives up. With a wake handle out, all of
    // this happens under the record's wake lock, which a wake holds while
    // it checks the handle and calls the callback (out of line: the common
    // case carries no lock guard to drop).
    if r.blocked.get() != 0 {
        unblock_ended(r);
    }
    let ctx = if r.wake_issued.load(Ordering::Relaxed) { end_locked(r) } else { end(r) };
    // The fd cleanups below are user code, which may wake other jobs.
    if !ctx.is_null() {
        // SAFETY: the record held one reference to `ctx`.
        unsafe { CWaitCtx::release(ctx) };
    }
    if t.exited.get() {
        GLOBAL_FREE.lock().unwrap_or_else(|e| e.into_inner()).push(r.index);
    } else {
        r.next_free.set(t.free.get());
        t.free.set(r);
    }
}

/// A job that ended blocked: its block count goes back to 0 for the
/// record's next job, and the crate's block is let go (outside the job,
/// where dropping it changes nothing: the crate clears a stack's block at
/// every start).
#[cold]
#[inline(never)]
fn unblock_ended(r: &Rec) {
    r.blocked.set(0);
    // SAFETY: owner thread only (`release`'s contract).
    drop(unsafe { (*r.block_guard.get()).take() });
}

/// Makes the record's handle stale and takes its wait ctx reference (see
/// `release`).
#[inline(always)]
fn end(r: &Rec) -> *mut CWaitCtx {
    r.state.store(FREE, Ordering::Release);
    r.generation.store(r.generation.load(Ordering::Relaxed).wrapping_add(1), Ordering::Relaxed);
    fence(Ordering::Release);
    r.owner.store(0, Ordering::Relaxed);
    let ctx = r.ctx.load(Ordering::Relaxed);
    r.ctx.store(ptr::null_mut(), Ordering::Relaxed);
    ctx
}

/// `end` under the record's wake lock, for a job a wake handle was handed
/// out for.
#[cold]
#[inline(never)]
fn end_locked(r: &Rec) -> *mut CWaitCtx {
    r.wake_issued.store(false, Ordering::Relaxed);
    let _wake = crate::ext::wake_lock(r.index);
    end(r)
}

/// Ends every paused job of the calling thread (for `ASYNC_cleanup_thread`
/// and thread exit): each `Job` handle is dropped — the crate has already
/// cancelled the job, or cancels it now; the C frames on its stack cannot
/// be unwound, so the stack is quarantined, never reused — and the record
/// released, so the `ASYNC_JOB *` becomes stale and a later resume returns
/// `ASYNC_ERR` instead of touching freed memory.
pub(crate) fn release_paused_of_this_thread(t: &ThreadState) {
    if t.id.get() == 0 {
        return; // never took a record
    }
    let me = t.id.get();
    let created = *CREATED.lock().unwrap_or_else(|e| e.into_inner());
    for index in 0..created {
        let Some(r) = rec(index) else { continue };
        if r.owner.load(Ordering::Relaxed) != me || r.state.load(Ordering::Acquire) != PAUSED {
            continue;
        }
        // SAFETY: this thread owns the record and the job is switched out.
        let job = unsafe { (*r.job.get()).take() };
        // The segment of the job's cancellation (which the crate may have
        // run already, for `ASYNC_cleanup_thread` and thread exit: the
        // flags are the same either way, no C code of the job's runs then).
        r.begin_segment();
        drop(job);
        // SAFETY: owned by this thread; `job` was emptied above.
        unsafe { release(t, r) };
    }
}

/// At thread exit: releases this thread's paused jobs and hands its free
/// records to `GLOBAL_FREE` for other threads.
pub(crate) struct ExitGuard;

impl Drop for ExitGuard {
    fn drop(&mut self) {
        let _ = std::panic::catch_unwind(|| {
            with_state(|t| {
                release_paused_of_this_thread(t);
                t.exited.set(true);
                let mut global = GLOBAL_FREE.lock().unwrap_or_else(|e| e.into_inner());
                let mut next = t.free.replace(ptr::null());
                // SAFETY: the free list holds records of the table (never freed).
                while let Some(r) = unsafe { next.as_ref() } {
                    global.push(r.index);
                    next = r.next_free.get();
                }
            })
        });
    }
}

thread_local! {
    static EXIT_GUARD: ExitGuard = const { ExitGuard };
}
