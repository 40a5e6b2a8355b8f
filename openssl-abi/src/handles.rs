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
use std::cell::{Cell, RefCell, UnsafeCell};
use std::ffi::{c_int, c_void};
use std::ptr;
use std::sync::Mutex;
use std::sync::atomic::{AtomicPtr, AtomicU8, AtomicU32, AtomicU64, Ordering};

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
    /// The thread that started the job (`thread_id`), 0 while free.
    pub(crate) owner: AtomicU64,
    /// The job's wait ctx (one reference held), or null.
    pub(crate) ctx: AtomicPtr<CWaitCtx>,
    /// Owner thread only: `ASYNC_block_pause` depth of this job.
    pub(crate) blocked: Cell<u32>,
    /// Owner thread only: the job's default `OSSL_LIB_CTX` while it is
    /// switched out.
    pub(crate) libctx: Cell<*mut c_void>,
    /// Owner thread only: the paused job.
    pub(crate) job: UnsafeCell<Option<Job<c_int>>>,
}

// SAFETY: the atomics are shared; `blocked`, `libctx` and `job` are only
// touched by the owner thread, which every entry point checks first
// (`owner == thread_id()`), and the record is handed to another thread only
// through a release (FREE) and a new acquisition.
unsafe impl Sync for Rec {}

impl Rec {
    fn new() -> Rec {
        Rec {
            generation: AtomicU32::new(1),
            state: AtomicU8::new(FREE),
            owner: AtomicU64::new(0),
            ctx: AtomicPtr::new(ptr::null_mut()),
            blocked: Cell::new(0),
            libctx: Cell::new(ptr::null_mut()),
            job: UnsafeCell::new(None),
        }
    }
}

static CHUNKS: [AtomicPtr<Rec>; MAX_CHUNKS] = [const { AtomicPtr::new(ptr::null_mut()) }; MAX_CHUNKS];
/// Records ever created (the next new index).
static CREATED: Mutex<u32> = Mutex::new(0);
/// Free records given back by exited threads.
static GLOBAL_FREE: Mutex<Vec<u32>> = Mutex::new(Vec::new());
static NEXT_THREAD: AtomicU64 = AtomicU64::new(1);

/// A thread's free records; handed to `GLOBAL_FREE` when the thread exits.
struct LocalFree(Vec<u32>);

impl Drop for LocalFree {
    fn drop(&mut self) {
        GLOBAL_FREE.lock().unwrap_or_else(|e| e.into_inner()).append(&mut self.0);
    }
}

thread_local! {
    static THREAD_ID: Cell<u64> = const { Cell::new(0) };
    static LOCAL_FREE: RefCell<LocalFree> = const { RefCell::new(LocalFree(Vec::new())) };
}

/// A number naming the calling thread for this process's lifetime (never 0).
#[inline]
pub(crate) fn thread_id() -> u64 {
    THREAD_ID.with(|id| {
        let mut v = id.get();
        if v == 0 {
            v = NEXT_THREAD.fetch_add(1, Ordering::Relaxed);
            id.set(v);
        }
        v
    })
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

/// Takes a free record for a new job of the calling thread.
pub(crate) fn acquire() -> Option<(u32, &'static Rec)> {
    let local = LOCAL_FREE.try_with(|f| f.borrow_mut().0.pop()).ok().flatten();
    let index = match local {
        Some(i) => i,
        None => match GLOBAL_FREE.lock().unwrap_or_else(|e| e.into_inner()).pop() {
            Some(i) => i,
            None => new_index()?,
        },
    };
    let r = rec(index)?;
    r.owner.store(thread_id(), Ordering::Relaxed);
    r.blocked.set(0);
    r.libctx.set(ptr::null_mut());
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
        let chunk: Box<[Rec]> = (0..CHUNK).map(|_| Rec::new()).collect();
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
/// The calling thread must own the record, and its `job` must be empty.
pub(crate) unsafe fn release(index: u32, r: &'static Rec) {
    r.state.store(FREE, Ordering::Release);
    r.generation.fetch_add(1, Ordering::AcqRel);
    r.owner.store(0, Ordering::Relaxed);
    let ctx = r.ctx.swap(ptr::null_mut(), Ordering::AcqRel);
    if !ctx.is_null() {
        // SAFETY: the record held one reference to `ctx`.
        unsafe { CWaitCtx::release(ctx) };
    }
    if LOCAL_FREE.try_with(|f| f.borrow_mut().0.push(index)).is_err() {
        GLOBAL_FREE.lock().unwrap_or_else(|e| e.into_inner()).push(index);
    }
}

/// Ends every paused job of the calling thread (for `ASYNC_cleanup_thread`
/// and thread exit): each `Job` handle is dropped — the crate has already
/// cancelled the job, or cancels it now; the C frames on its stack cannot
/// be unwound, so the stack is quarantined, never reused — and the record
/// released, so the `ASYNC_JOB *` becomes stale and a later resume returns
/// `ASYNC_ERR` instead of touching freed memory.
pub(crate) fn release_paused_of_this_thread() {
    let me = thread_id();
    let created = *CREATED.lock().unwrap_or_else(|e| e.into_inner());
    for index in 0..created {
        let Some(r) = rec(index) else { continue };
        if r.owner.load(Ordering::Relaxed) != me || r.state.load(Ordering::Acquire) != PAUSED {
            continue;
        }
        // SAFETY: this thread owns the record and the job is switched out.
        let job = unsafe { (*r.job.get()).take() };
        drop(job);
        // SAFETY: owned by this thread; `job` was emptied above.
        unsafe { release(index, r) };
    }
}

/// Releases this thread's paused jobs when the thread exits.
pub(crate) struct ExitGuard;

impl Drop for ExitGuard {
    fn drop(&mut self) {
        let _ = std::panic::catch_unwind(release_paused_of_this_thread);
    }
}

thread_local! {
    static EXIT_GUARD: ExitGuard = const { ExitGuard };
}

/// Registers the thread-exit release (cheap after the first call).
#[inline]
pub(crate) fn arm_exit_guard() {
    let _ = EXIT_GUARD.try_with(|_| ());
}
