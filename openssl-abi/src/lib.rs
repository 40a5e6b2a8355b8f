//! # stackjob-openssl — OpenSSL's `<openssl/async.h>` on stackjob
//!
//! A C library (`libstackjob_openssl.so` / `.a`) exporting every function
//! of OpenSSL 3.x's `<openssl/async.h>` with the same names, signatures,
//! constants and documented behaviour, implemented on [`stackjob`]: jobs run
//! on mmap'd, guard-paged stacks of a configurable size and switch with
//! stackjob's hand-written assembly instead of `setjmp`/`ucontext`.
//!
//! Use it by linking (`-lstackjob_openssl` before `-lcrypto`), without
//! rebuilding anything by `LD_PRELOAD=libstackjob_openssl.so`, or with no
//! OpenSSL at all through its own header `stackjob/async.h` and
//! `pkg-config --cflags --libs stackjob-async` once
//! `scripts/install-openssl-abi.sh` installed it.
//!
//! Environment (read once, at load time):
//! * `STACKJOB_STACK_SIZE` — usable bytes per job stack (`262144`, `256k`,
//!   `1M`); default [`stackjob::DEFAULT_STACK_SIZE`] (OpenSSL: 32 KiB).
//!   A job that overflows it is reported on stderr, naming this variable,
//!   and the process aborts.
//! * `STACKJOB_GUARD_SIZE` — bytes of `PROT_NONE` guard region below each
//!   stack (same syntax, at least one page after rounding); default
//!   [`stackjob::DEFAULT_GUARD_SIZE`] (1 MiB on 64-bit), so that C code
//!   built without `-fstack-clash-protection` cannot jump over the guard
//!   into the memory below with one large frame. OpenSSL has no guard.
//! * `STACKJOB_DEBUG=1` — prints one line to stderr when the library loads
//!   and a line of job counters at exit (proof the library serves the calls).
//!
//! Differences from OpenSSL, all in cases OpenSSL leaves undefined (where it
//! crashes or corrupts memory) or documents as leaks:
//! * stale `ASYNC_JOB *` handles, resuming from another thread, resuming a
//!   job that is not paused, and `ASYNC_start_job` from inside a job all
//!   return `ASYNC_ERR`;
//! * a NULL wait ctx works (the job just has none); `ASYNC_WAIT_CTX_*`
//!   functions given NULL return 0 (NULL for getters) instead of crashing;
//! * `ASYNC_block_pause` is counted per job, not per thread, so a job that
//!   ends while blocked does not block later jobs;
//! * `ASYNC_init_thread(0, n)` (unlimited, `n` pre-created) is accepted; a
//!   second `ASYNC_init_thread` replaces the pool instead of leaking it;
//! * `ASYNC_cleanup_thread` (and thread exit) ends paused jobs: their stacks
//!   are kept mapped but never reused (C frames cannot be unwound) and their
//!   handles become stale;
//! * the wait ctx's `get_changed_fds` counters restart at every job segment
//!   including a fresh start (OpenSSL only resets them on resume);
//! * `ASYNC_set_mem_functions` is honoured as in OpenSSL (stacks come from
//!   the caller's allocator), and each such block keeps a guard page inside
//!   it when it is large enough (see `ASYNC_set_mem_functions`).
//!
//! Extensions OpenSSL lacks, declared in `include/stackjob/async.h` and
//! named `stackjob_async_*`: cancelling a paused job, per-thread stack and
//! guard sizes, and wake handles that stay safe after the job is gone.

#![deny(missing_docs)]
#![deny(unsafe_op_in_unsafe_fn)]
#![allow(non_snake_case)]

mod config;
mod ext;
// Jobs of another stackjob copy (a Rust program's) seen as ASYNC_JOBs.
mod foreign;
mod handles;
mod wait_ctx;

use config::{COUNTERS, count, count_if};
use handles::{PAUSED, RUNNING, ThreadState};
use stackjob::{Error, Step};
use std::ffi::{c_int, c_void};
use std::mem::MaybeUninit;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::ptr;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};

pub use ext::{
    STACKJOB_CANCEL_QUARANTINED, STACKJOB_CANCEL_UNWOUND, STACKJOB_WAKE_DELIVERED, STACKJOB_WAKE_GONE,
    STACKJOB_WAKE_NO_CALLBACK, stackjob_async_cancel_job, stackjob_async_get_thread_stack,
    stackjob_async_set_thread_stack, stackjob_async_wake, stackjob_async_wake_handle,
};
pub use foreign::{FOREIGN_API_VERSION, ForeignApi, ForeignJob, stackjob_openssl_foreign_api};
pub use wait_ctx::{CWaitCtx, CallbackFn, CleanupFn};

/// `ASYNC_start_job` failed.
pub const ASYNC_ERR: c_int = 0;
/// No job available in the pool; retry later.
pub const ASYNC_NO_JOBS: c_int = 1;
/// The job paused; resume it with its handle.
pub const ASYNC_PAUSE: c_int = 2;
/// The job finished; `*ret` holds its return value.
pub const ASYNC_FINISH: c_int = 3;

/// The opaque C `ASYNC_JOB` (handles are generation-counted values, never
/// dereferenced).
#[repr(C)]
pub struct AsyncJob {
    _opaque: [u8; 0],
}

/// The job function type `int (*)(void *)`. Declared `C-unwind`: the
/// unwind of `stackjob_async_cancel_job` passes through the C frames.
pub type JobFn = unsafe extern "C-unwind" fn(*mut c_void) -> c_int;
/// `ASYNC_stack_alloc_fn`: `void *(*)(size_t *num)`.
pub type StackAllocFn = unsafe extern "C" fn(*mut usize) -> *mut c_void;
/// `ASYNC_stack_free_fn`: `void (*)(void *addr)`.
pub type StackFreeFn = unsafe extern "C" fn(*mut c_void);

/// Defines each C name as a one-instruction tail-jump to the Rust function
/// of the same name (then an ordinary mangled, local symbol).
///
/// Only with `stackjob_ossl_symver` (build.rs): rustc's own version script
/// claims every `#[no_mangle]` function as unversioned, while these
/// assembly labels are left to `libstackjob_openssl.map`, which gives them
/// libcrypto's version nodes in the `.so`. In the static library they are
/// plain global symbols.
#[cfg(stackjob_ossl_symver)]
macro_rules! exports {
    ($($name:ident)*) => {
        std::arch::global_asm!(
            ".pushsection .text.stackjob_openssl_exports,\"ax\",%progbits",
            $(
                ".p2align 4",
                concat!(".globl ", stringify!($name)),
                concat!(".type ", stringify!($name), ",%function"),
                concat!(stringify!($name), ":"),
                concat!(tail_jump!(), " {", stringify!($name), "}"),
                concat!(".size ", stringify!($name), ",.-", stringify!($name)),
            )*
            ".popsection",
            $($name = sym $name,)*
        );
    };
}

#[cfg(all(stackjob_ossl_symver, target_arch = "x86_64"))]
macro_rules! tail_jump {
    () => {
        "jmp"
    };
}
#[cfg(all(stackjob_ossl_symver, target_arch = "aarch64"))]
macro_rules! tail_jump {
    () => {
        "b"
    };
}
#[cfg(all(stackjob_ossl_symver, target_arch = "riscv64"))]
macro_rules! tail_jump {
    () => {
        "tail"
    };
}

#[cfg(stackjob_ossl_symver)]
exports! {
    ASYNC_init_thread ASYNC_cleanup_thread ASYNC_is_capable
    ASYNC_start_job ASYNC_pause_job ASYNC_get_current_job ASYNC_get_wait_ctx
    ASYNC_block_pause ASYNC_unblock_pause
    ASYNC_set_mem_functions ASYNC_get_mem_functions
    ASYNC_WAIT_CTX_new ASYNC_WAIT_CTX_free ASYNC_WAIT_CTX_set_wait_fd ASYNC_WAIT_CTX_get_fd
    ASYNC_WAIT_CTX_get_all_fds ASYNC_WAIT_CTX_get_changed_fds ASYNC_WAIT_CTX_clear_fd
    ASYNC_WAIT_CTX_set_callback ASYNC_WAIT_CTX_get_callback
    ASYNC_WAIT_CTX_set_status ASYNC_WAIT_CTX_get_status
    stackjob_openssl_counters stackjob_openssl_stack_size stackjob_openssl_libctx_swapping
    stackjob_async_cancel_job stackjob_async_set_thread_stack stackjob_async_get_thread_stack
    stackjob_async_wake_handle stackjob_async_wake
    stackjob_openssl_foreign_api
}

/// Set once the first job stack was needed (latches `ASYNC_set_mem_functions`).
static STACKS_USED: AtomicBool = AtomicBool::new(false);

/// Sets `STACKS_USED`, writing the shared cache line only the first time.
#[inline]
pub(crate) fn mark_stacks_used() {
    if !STACKS_USED.load(Ordering::Relaxed) {
        STACKS_USED.store(true, Ordering::Relaxed);
    }
}

/// Runs `f`, turning a Rust panic into `default` so it never unwinds into C.
#[inline(always)]
pub(crate) fn guard<T>(default: T, f: impl FnOnce() -> T) -> T {
    catch_unwind(AssertUnwindSafe(f)).unwrap_or(default)
}

/// Borrowed view of a C wait ctx pointer.
///
/// # Safety
/// `ctx` must be null or a live `ASYNC_WAIT_CTX` from `ASYNC_WAIT_CTX_new`.
#[inline(always)]
unsafe fn wctx<'a>(ctx: *mut CWaitCtx) -> Option<&'a CWaitCtx> {
    // SAFETY: per the contract.
    unsafe { ctx.as_ref() }
}

/// This thread's stack and guard sizes: its own
/// (`stackjob_async_set_thread_stack`) or the process's.
pub(crate) fn pool_sizes(t: &ThreadState) -> (usize, usize) {
    let config = config::config();
    let pick = |own: usize, process: usize| if own == 0 { process } else { own };
    (pick(t.stack_size.get(), config.stack_size), pick(t.guard_size.get(), config.guard_size))
}

/// The pool this thread gets: its sizes, and the stack allocator of
/// `ASYNC_set_mem_functions` if one was set.
pub(crate) fn pool_config(t: &ThreadState, max_size: usize, init_size: usize) -> stackjob::PoolConfig {
    let (stack_size, guard_size) = pool_sizes(t);
    stackjob::PoolConfig::new()
        .max_size(max_size)
        .init_size(init_size)
        .stack_size(stack_size)
        .guard_size(guard_size)
        .stack_allocator(stack_allocator())
}

/// Creates this thread's pool with the configured stack size on first use.
#[inline]
fn ensure_pool(t: &ThreadState) -> bool {
    if t.pool_ready.get() {
        return true;
    }
    let ok = stackjob::init_thread_with(&pool_config(t, 0, 0)).is_ok();
    t.pool_ready.set(ok);
    ok
}

// ---------------------------------------------------------------- threads

/// `int ASYNC_init_thread(size_t max_size, size_t init_size)`: sets up this
/// thread's job pool (at most `max_size` jobs, 0 = no limit; `init_size`
/// created now). Returns 1, or 0 if `init_size > max_size` (with a non-zero
/// `max_size`), `max_size > INT_MAX`, or the stacks cannot be mapped.
#[cfg_attr(not(stackjob_ossl_symver), unsafe(no_mangle))]
pub extern "C" fn ASYNC_init_thread(max_size: usize, init_size: usize) -> c_int {
    guard(0, || {
        if max_size > c_int::MAX as usize || (max_size != 0 && init_size > max_size) {
            return 0;
        }
        if init_size > 0 {
            mark_stacks_used();
        }
        handles::with_state(|t| match stackjob::init_thread_with(&pool_config(t, max_size, init_size)) {
            Ok(()) => {
                t.pool_ready.set(true);
                t.pool_max.set(max_size);
                t.pool_init.set(init_size);
                1
            }
            Err(_) => 0,
        })
    })
}

/// `void ASYNC_cleanup_thread(void)`: frees this thread's pool. Jobs still
/// paused are ended (their stacks quarantined, never reused) and their
/// handles become stale: resuming one returns `ASYNC_ERR`.
#[cfg_attr(not(stackjob_ossl_symver), unsafe(no_mangle))]
pub extern "C" fn ASYNC_cleanup_thread() {
    guard((), || {
        handles::with_state(|t| {
            if t.current.get() != 0 {
                return; // called from inside a job: the running job cannot be ended under itself
            }
            stackjob::cleanup_thread();
            handles::release_paused_of_this_thread(t);
            t.pool_ready.set(false);
            t.start_ready.set(false);
        })
    })
}

/// `int ASYNC_is_capable(void)`: 1 if jobs work here (a cached answer).
#[cfg_attr(not(stackjob_ossl_symver), unsafe(no_mangle))]
pub extern "C" fn ASYNC_is_capable() -> c_int {
    stackjob::is_capable() as c_int
}

// ------------------------------------------------------------------- jobs

/// Small argument copies live on the job's own stack: no heap allocation
/// per start.
const INLINE_ARGS: usize = 64;

#[repr(C, align(16))]
#[derive(Clone, Copy)]
struct Align16([MaybeUninit<u8>; 16]);

/// The job's private copy of `args`, as the job closure carries it: two
/// words, whose `size` also says how the bytes are held.
///
/// * `size == 0` (NULL `args` or `size == 0`): the job gets NULL, as in
///   OpenSSL 3.0.x today (openssl#29377).
/// * `1..=INLINE_ARGS`: `src` is the caller's `args`, copied by the job
///   itself into a buffer on its stack as it starts. That is still inside
///   the `ASYNC_start_job` call (a job runs at once, on the caller's
///   thread), where `args` is valid; the closure carries 16 bytes instead
///   of 64 through the start.
/// * larger: `src` is a heap copy made before the start (where a failed
///   allocation can still return `ASYNC_ERR`): `size.div_ceil(16)`
///   `Align16`s from a leaked `Box`, freed when the job's closure is dropped.
struct Args {
    src: *const u8,
    size: usize,
}

impl Args {
    /// Takes `size` bytes at `args`; `None` if the heap copy fails.
    ///
    /// # Safety
    /// `args` must be null or readable for `size` bytes until the job
    /// starts (the `ASYNC_start_job` call).
    #[inline]
    unsafe fn new(args: *const c_void, size: usize) -> Option<Args> {
        if args.is_null() || size == 0 {
            return Some(Args { src: ptr::null(), size: 0 });
        }
        if size <= INLINE_ARGS {
            return Some(Args { src: args.cast(), size });
        }
        let blank = Align16([MaybeUninit::uninit(); 16]);
        let mut v: Vec<Align16> = Vec::new();
        v.try_reserve_exact(size.div_ceil(16)).ok()?;
        v.resize(size.div_ceil(16), blank);
        // SAFETY: `args` is readable for `size` bytes and `v` holds at least that many.
        unsafe { ptr::copy_nonoverlapping(args.cast::<u8>(), v.as_mut_ptr().cast::<u8>(), size) };
        let heap: *mut [Align16] = Box::into_raw(v.into_boxed_slice());
        Some(Args { src: heap.cast::<u8>().cast_const(), size })
    }

    /// The pointer the job function gets; a small copy goes to `buf`.
    ///
    /// # Safety
    /// For a small copy: called as the job starts (see [`Args`]).
    #[inline(always)]
    unsafe fn place(&self, buf: &mut [Align16; INLINE_ARGS / 16]) -> *mut c_void {
        if self.size == 0 {
            ptr::null_mut()
        } else if self.size <= INLINE_ARGS {
            // SAFETY: `src` is readable for `size` <= 64 bytes (the
            // caller's contract) and `buf` holds 64.
            unsafe { copy_small(self.src, buf.as_mut_ptr().cast::<u8>(), self.size) };
            buf.as_mut_ptr().cast()
        } else {
            // The heap copy is the job's own, writable (from `Box::into_raw`).
            self.src.cast_mut().cast()
        }
    }
}

impl Drop for Args {
    #[inline(always)]
    fn drop(&mut self) {
        if self.size > INLINE_ARGS {
            let heap = ptr::slice_from_raw_parts_mut(self.src.cast_mut().cast::<Align16>(), self.size.div_ceil(16));
            // SAFETY: a large copy is the `Box<[Align16]>` of `new`, of this
            // length, leaked there and owned by this value alone.
            drop(unsafe { Box::from_raw(heap) });
        }
    }
}

/// Copies `n` (1..=`INLINE_ARGS`) bytes; up to 16 bytes (a pointer or two,
/// the usual job argument) inline, without a `memcpy` call: two possibly
/// overlapping loads and stores of the widest power of two not above `n`.
/// Never reads outside `src..src + n`.
///
/// # Safety
/// `src` readable and `dst` writable for `n` bytes, not overlapping.
#[inline(always)]
unsafe fn copy_small(src: *const u8, dst: *mut u8, n: usize) {
    // SAFETY: every access below lies within the first `n` bytes of `src`
    // and `dst` (offsets `0` and `n - w` for a width `w <= n`), read and
    // written unaligned; the regions do not overlap (the contract).
    unsafe {
        if n > 16 {
            ptr::copy_nonoverlapping(src, dst, n);
        } else if n >= 8 {
            let (a, b) = (src.cast::<u64>().read_unaligned(), src.add(n - 8).cast::<u64>().read_unaligned());
            dst.cast::<u64>().write_unaligned(a);
            dst.add(n - 8).cast::<u64>().write_unaligned(b);
        } else if n >= 4 {
            let (a, b) = (src.cast::<u32>().read_unaligned(), src.add(n - 4).cast::<u32>().read_unaligned());
            dst.cast::<u32>().write_unaligned(a);
            dst.add(n - 4).cast::<u32>().write_unaligned(b);
        } else {
            for i in 0..n {
                *dst.add(i) = *src.add(i);
            }
        }
    }
}

/// Turns a crate result into the C result for the job in record `r`
/// (handle `h`), counting a finish if `debug`. `FRESH`: the job was just
/// started (else resumed, through `*job == h`).
///
/// # Safety
/// The calling thread (state `t`) owns record `r`; `job` and `ret` are the
/// caller's `ASYNC_start_job` arguments.
#[inline(always)]
unsafe fn settle<const FRESH: bool>(
    t: &ThreadState,
    r: &'static handles::Rec,
    h: usize,
    result: Result<Step<c_int>, Error>,
    job: *mut *mut AsyncJob,
    ret: *mut c_int,
    debug: bool,
) -> c_int {
    match result {
        Ok(Step::Paused(j)) => {
            // SAFETY: owner thread; the record's job slot is empty while the
            // job runs (taken by `resume`, empty since `release`), so there
            // is nothing to drop.
            unsafe { r.job.get().write(Some(j)) };
            r.state.store(PAUSED, Ordering::Release);
            if FRESH {
                // SAFETY: `job` is the caller's valid out-pointer. (A resume
                // read `h` from there: it holds it already.)
                unsafe { *job = h as *mut AsyncJob };
            }
            ASYNC_PAUSE
        }
        Ok(Step::Finished(v)) => {
            count_if(debug, &COUNTERS.finishes);
            if !ret.is_null() {
                // SAFETY: the caller's out-pointer for the result.
                unsafe { *ret = v };
            }
            // SAFETY: as above; then the record goes back (job slot empty).
            unsafe {
                *job = ptr::null_mut();
                handles::release(t, r);
            }
            ASYNC_FINISH
        }
        Err(e) => {
            // SAFETY: owner thread; no job is stored in the record.
            unsafe { handles::release(t, r) };
            match e {
                Error::NoJobs { .. } | Error::NotCapable { .. } => ASYNC_NO_JOBS,
                _ => ASYNC_ERR,
            }
        }
    }
}

/// `int ASYNC_start_job(ASYNC_JOB **job, ASYNC_WAIT_CTX *ctx, int *ret,
/// int (*func)(void *), void *args, size_t size)`.
///
/// With `*job == NULL`: copies `size` bytes of `args` (inline, without a
/// heap allocation, up to 64 bytes; NULL `args` or `size == 0` give the job
/// NULL) and runs `func(copy)` on a pooled job stack. With `*job` a paused job's handle: resumes it (`ctx`, `func`,
/// `args`, `size` ignored). Returns `ASYNC_PAUSE` (handle in `*job`),
/// `ASYNC_FINISH` (`*job = NULL`, `*ret` = result), `ASYNC_NO_JOBS` (pool
/// limit reached, or jobs not supported here) or `ASYNC_ERR` — also for a
/// stale handle, a job of another thread, a job that is not paused, a call
/// from inside a job, NULL `job` or NULL `func`.
///
/// # Safety
/// Pointers as in OpenSSL: `job` valid, `ctx` null or live, `ret` null or
/// writable, `args` null or readable for `size` bytes, `func` callable.
#[cfg_attr(not(stackjob_ossl_symver), unsafe(no_mangle))]
pub unsafe extern "C" fn ASYNC_start_job(
    job: *mut *mut AsyncJob,
    ctx: *mut CWaitCtx,
    ret: *mut c_int,
    func: Option<JobFn>,
    args: *mut c_void,
    size: usize,
) -> c_int {
    // The arguments move into the guarded closure by value (not as
    // references to spilled copies).
    // SAFETY: forwarded contract.
    guard(ASYNC_ERR, move || unsafe { start_job(job, ctx, ret, func, args, size) })
}

/// `ASYNC_start_job` inside its panic guard.
///
/// # Safety
/// As `ASYNC_start_job`.
#[inline(always)]
unsafe fn start_job(
    job: *mut *mut AsyncJob,
    ctx: *mut CWaitCtx,
    ret: *mut c_int,
    func: Option<JobFn>,
    args: *mut c_void,
    size: usize,
) -> c_int {
    // One thread-local access for the whole call (the job's own calls make
    // theirs); `t` stays valid across the job's run, which never leaves this
    // thread while we wait for it.
    let t = handles::state();
    if job.is_null() || t.current.get() != 0 {
        return ASYNC_ERR;
    }
    // SAFETY: `job` is non-null and the caller's in/out pointer.
    let h = unsafe { *job } as usize;
    // `start_ready` is never set while `STACKJOB_DEBUG` counts: the
    // variants for a ready thread count nothing and test nothing for it.
    if h != 0 {
        // SAFETY: forwarded contract.
        return unsafe {
            if t.start_ready.get() { resume::<false>(t, job, h, ret) } else { resume::<true>(t, job, h, ret) }
        };
    }
    let Some(func) = func else { return ASYNC_ERR };
    // SAFETY: forwarded contract.
    unsafe {
        if t.start_ready.get() {
            start_fresh::<false>(t, job, ctx, ret, func, args, size)
        } else {
            start_unready(t, job, ctx, ret, func, args, size)
        }
    }
}

/// A fresh start on a thread that is not `start_ready`: its first (or
/// first since `ASYNC_cleanup_thread`), or any while `STACKJOB_DEBUG`
/// counts.
///
/// # Safety
/// As `ASYNC_start_job`, with `job` non-null and `*job` null.
#[cold]
#[inline(never)]
unsafe fn start_unready(
    t: &ThreadState,
    job: *mut *mut AsyncJob,
    ctx: *mut CWaitCtx,
    ret: *mut c_int,
    func: JobFn,
    args: *mut c_void,
    size: usize,
) -> c_int {
    if !prepare_start(t) {
        return ASYNC_ERR;
    }
    // SAFETY: forwarded contract.
    unsafe { start_fresh::<true>(t, job, ctx, ret, func, args, size) }
}

/// Starts `func` as a new job (`*job` is null); `COUNT`: keep the
/// `STACKJOB_DEBUG` counters if they are on.
///
/// # Safety
/// As `start_unready`, on a thread `prepare_start` made ready for starts.
#[inline(always)]
unsafe fn start_fresh<const COUNT: bool>(
    t: &ThreadState,
    job: *mut *mut AsyncJob,
    ctx: *mut CWaitCtx,
    ret: *mut c_int,
    func: JobFn,
    args: *mut c_void,
    size: usize,
) -> c_int {
    // SAFETY: `args` is readable for `size` bytes per the contract.
    let Some(copy) = (unsafe { Args::new(args, size) }) else { return ASYNC_ERR };
    let Some((index, r)) = handles::acquire(t) else { return ASYNC_ERR };
    // SAFETY: `ctx` is null or a live wait ctx per the contract.
    let wait = unsafe { wctx(ctx) };
    // The record holds the job's reference to the ctx and begins its
    // segments (the crate is given none: a second reference count and a
    // second pointer to clear per job bought nothing).
    if let Some(w) = wait {
        w.retain();
        r.ctx.store(ctx, Ordering::Release);
        w.inner().begin_segment();
    }
    r.state.store(RUNNING, Ordering::Release);
    let h = handles::handle(index, r.generation.load(Ordering::Acquire));
    let debug = COUNT && config::debug();
    count_if(debug, &COUNTERS.starts);
    let lc = config::libctx();
    let caller_libctx = lc.current();
    t.enter(h, r);
    let result = stackjob::start(None, move || {
        // Where a cancel's unwind must get to (`ext::unwind_reaches`).
        r.entry_sp.set(ext::stack_pointer());
        let mut buf = [Align16([MaybeUninit::uninit(); 16]); INLINE_ARGS / 16];
        // SAFETY: the job runs now, inside this `ASYNC_start_job` call.
        let p = unsafe { copy.place(&mut buf) };
        // SAFETY: `func` is the caller's job function; `p` points at
        // the job's own copy of the arguments, alive for the call.
        unsafe { func(p) }
    });
    t.leave();
    back_from_job(lc, r, caller_libctx);
    // SAFETY: this thread owns the record; pointers per the contract.
    unsafe { settle::<true>(t, r, h, result, job, ret, debug) }
}

/// The first start on this thread (or the first since
/// `ASYNC_cleanup_thread`): creates the pool, latches
/// `ASYNC_set_mem_functions`, registers the thread-exit release and gives
/// the thread its id; then `start_ready` lets later starts skip all four
/// (unless `STACKJOB_DEBUG` counts: `start_ready` also means no counting).
#[cold]
#[inline(never)]
fn prepare_start(t: &ThreadState) -> bool {
    if !ensure_pool(t) {
        return false;
    }
    mark_stacks_used();
    t.arm_exit_guard();
    t.assign_id();
    // Counting threads stay on the variants that count.
    t.start_ready.set(!config::debug());
    true
}

/// Resumes the paused job `h` (validated: current generation, paused,
/// owned by this thread); `COUNT`: keep the `STACKJOB_DEBUG` counters if
/// they are on.
///
/// # Safety
/// As `ASYNC_start_job`.
#[inline]
unsafe fn resume<const COUNT: bool>(t: &ThreadState, job: *mut *mut AsyncJob, h: usize, ret: *mut c_int) -> c_int {
    // Only the owner thread changes a live record's state, so once it is
    // ours a plain load and store do what a compare-exchange would.
    let Some(r) = handles::lookup_paused(t, h) else { return ASYNC_ERR };
    r.state.store(RUNNING, Ordering::Release);
    // SAFETY: this thread owns the record and the job is switched out.
    let Some(paused) = (unsafe { (*r.job.get()).take() }) else {
        r.state.store(PAUSED, Ordering::Release);
        return ASYNC_ERR;
    };
    let debug = COUNT && config::debug();
    count_if(debug, &COUNTERS.resumes);
    let lc = config::libctx();
    let caller_libctx = lc.current();
    if r.libctx.get() != caller_libctx {
        lc.set(r.libctx.get());
    }
    r.begin_segment();
    t.enter(h, r);
    let result = paused.resume();
    t.leave();
    back_from_job(lc, r, caller_libctx);
    // SAFETY: this thread owns the record; pointers per the contract.
    unsafe { settle::<false>(t, r, h, result, job, ret, debug) }
}

/// Control is back from a job segment: saves the job's default
/// `OSSL_LIB_CTX` and restores the caller's (OpenSSL 3's swap), skipping
/// the library call when the job did not change it.
#[inline(always)]
fn back_from_job(lc: config::LibCtx, r: &handles::Rec, caller_libctx: *mut c_void) {
    let job_libctx = lc.current();
    r.libctx.set(job_libctx);
    if job_libctx != caller_libctx {
        lc.set(caller_libctx);
    }
}

/// `int ASYNC_pause_job(void)`: inside a job whose pausing is not blocked,
/// returns control to the `ASYNC_start_job` caller (which sees
/// `ASYNC_PAUSE`) and returns 1 once resumed. Outside a job or while
/// blocked: returns 1 at once.
///
/// Declared `C-unwind`: when `stackjob_async_cancel_job` cancels the job
/// and every frame down to the job's entry has unwind information, the
/// cancellation unwinds from here through the C frames.
#[cfg_attr(not(stackjob_ossl_symver), unsafe(no_mangle))]
pub extern "C-unwind" fn ASYNC_pause_job() -> c_int {
    // Only this library starts jobs on its copy of the crate, so the
    // crate's running job is one of ours exactly when one of ours runs; and
    // the crate's `pause` returns at once while `ASYNC_block_pause` holds
    // the job's `block_guard`. Our own thread state is left alone here.
    if !stackjob::in_job() {
        // Not in a job of ours: perhaps in a Rust program's own (foreign.rs).
        return foreign::pause();
    }
    if config::debug() {
        count_pause();
    }
    // The crate cancels a job whose handle is dropped by making `pause`
    // unwind. For ASYNC_cleanup_thread and thread exit (and for frames the
    // unwinder cannot walk) the unwind stops here and the job pauses again:
    // it never runs another line of C, and after a few tries the crate
    // quarantines its stack. For stackjob_async_cancel_job it goes on.
    loop {
        match catch_unwind(stackjob::pause) {
            Ok(()) => return 1,
            Err(payload) => {
                if cancel_unwinds_on() {
                    std::panic::resume_unwind(payload);
                }
            }
        }
    }
}

/// Whether the cancellation unwinding `ASYNC_pause_job` goes on through
/// the C frames: `stackjob_async_cancel_job` is cancelling the job, and the
/// unwinder can walk every frame down to the job's entry. Out of line, so
/// that the pause itself never touches our thread state.
#[cold]
#[inline(never)]
fn cancel_unwinds_on() -> bool {
    let t = handles::state();
    t.unwind_cancel.get() && t.current_rec().is_some_and(|r| ext::unwind_reaches(r.entry_sp.get()))
}

/// Counts a pause of the running job (`STACKJOB_DEBUG`), unless it is blocked.
#[cold]
#[inline(never)]
fn count_pause() {
    if handles::state().current_rec().is_some_and(|r| r.blocked.get() == 0) {
        count(&COUNTERS.pauses);
    }
}

/// `ASYNC_JOB *ASYNC_get_current_job(void)`: the running job's handle (the
/// value `ASYNC_start_job` puts in `*job`), or NULL outside a job.
#[cfg_attr(not(stackjob_ossl_symver), unsafe(no_mangle))]
pub extern "C" fn ASYNC_get_current_job() -> *mut AsyncJob {
    let h = handles::with_state(|t| t.current.get());
    // Not in a job of ours: perhaps in a Rust program's own (foreign.rs).
    if h == 0 { foreign::current_handle() as *mut AsyncJob } else { h as *mut AsyncJob }
}

/// `ASYNC_WAIT_CTX *ASYNC_get_wait_ctx(ASYNC_JOB *job)`: the wait ctx the
/// job was started with. Works from any thread; NULL for a NULL, stale or
/// invalid handle, or a job started without a wait ctx.
#[cfg_attr(not(stackjob_ossl_symver), unsafe(no_mangle))]
pub extern "C" fn ASYNC_get_wait_ctx(job: *mut AsyncJob) -> *mut CWaitCtx {
    let h = job as usize;
    // A Rust program's own job (foreign.rs).
    if let Some(ctx) = foreign::wait_ctx_of(h) {
        return ctx;
    }
    let Some((_, r)) = handles::lookup(h) else { return ptr::null_mut() };
    let ctx = r.ctx.load(Ordering::Acquire);
    // Re-check: the job may have finished meanwhile.
    if handles::lookup(h).is_none() {
        return ptr::null_mut();
    }
    ctx
}

/// `void ASYNC_block_pause(void)`: makes `ASYNC_pause_job` a no-op in the
/// running job until a matching `ASYNC_unblock_pause` (nestable, per job).
/// No effect outside a job.
#[cfg_attr(not(stackjob_ossl_symver), unsafe(no_mangle))]
pub extern "C" fn ASYNC_block_pause() {
    match handles::with_state(|t| t.current_rec()) {
        Some(r) => {
            let depth = r.blocked.get();
            if depth == 0 {
                // SAFETY: owner thread (the job runs here); nothing else
                // holds a reference into the slot.
                unsafe { *r.block_guard.get() = Some(stackjob::block_pause()) };
            }
            r.blocked.set(depth.saturating_add(1));
        }
        None => foreign::block(1), // a Rust program's own job (foreign.rs)
    }
}

/// `void ASYNC_unblock_pause(void)`: undoes one `ASYNC_block_pause` of the
/// running job. No effect outside a job or when not blocked.
#[cfg_attr(not(stackjob_ossl_symver), unsafe(no_mangle))]
pub extern "C" fn ASYNC_unblock_pause() {
    match handles::with_state(|t| t.current_rec()) {
        Some(r) => match r.blocked.get() {
            0 => {}
            1 => {
                r.blocked.set(0);
                // SAFETY: owner thread (the job runs here); dropping the
                // guard inside the job lets the crate's `pause` suspend again.
                drop(unsafe { (*r.block_guard.get()).take() });
            }
            depth => r.blocked.set(depth - 1),
        },
        None => foreign::block(-1), // a Rust program's own job (foreign.rs)
    }
}

// ------------------------------------------------------- mem functions

static MEM_FUNCTIONS: Mutex<(Option<StackAllocFn>, Option<StackFreeFn>)> = Mutex::new((None, None));

/// The default stack allocator `ASYNC_get_mem_functions` reports before any
/// is set: `malloc(*num)`.
unsafe extern "C" fn default_stack_alloc(num: *mut usize) -> *mut c_void {
    // SAFETY: the caller passes a valid `size_t *` (OpenSSL's contract).
    unsafe { libc::malloc(if num.is_null() { 0 } else { *num }) }
}

/// The default stack free function: `free(addr)`.
unsafe extern "C" fn default_stack_free(addr: *mut c_void) {
    // SAFETY: `addr` came from `default_stack_alloc` (OpenSSL's contract).
    unsafe { libc::free(addr) }
}

/// The allocator pair for job stacks once `ASYNC_set_mem_functions` set
/// one (a NULL half keeps the default malloc/free half, as in OpenSSL).
fn stack_allocator() -> Option<stackjob::StackAllocator> {
    let m = *MEM_FUNCTIONS.lock().unwrap_or_else(|e| e.into_inner());
    if m.0.is_none() && m.1.is_none() {
        return None;
    }
    let (alloc, free) = (m.0.unwrap_or(default_stack_alloc), m.1.unwrap_or(default_stack_free));
    // SAFETY: OpenSSL's contract for ASYNC_set_mem_functions: `alloc(&num)`
    // returns NULL or a usable block of `num` bytes (malloc-aligned) that
    // `free` takes back.
    Some(unsafe { stackjob::StackAllocator::new(alloc, free) })
}

/// `int ASYNC_set_mem_functions(ASYNC_stack_alloc_fn, ASYNC_stack_free_fn)`
/// (OpenSSL 3.1): the allocator pair for job stacks (NULL keeps the current
/// half). Returns 0 once any job stack was ever needed, 1 otherwise.
///
/// As in OpenSSL, stacks then come from `alloc_fn(&num)` and go back to
/// `free_fn`. `num` is the stack size (`STACKJOB_STACK_SIZE`) plus two
/// pages, and the allocator may raise it to what it returned. The block's
/// first whole page is made a `PROT_NONE` guard (and made accessible again
/// before `free_fn`) when 64 KiB of stack still fit above it; a smaller
/// block runs without a guard. A one-page guard is smaller than the
/// `STACKJOB_GUARD_SIZE` region of our own stacks: a C frame larger than a
/// page built without `-fstack-clash-protection` can jump over it.
#[cfg_attr(not(stackjob_ossl_symver), unsafe(no_mangle))]
pub extern "C" fn ASYNC_set_mem_functions(alloc_fn: Option<StackAllocFn>, free_fn: Option<StackFreeFn>) -> c_int {
    guard(0, || {
        if STACKS_USED.load(Ordering::Relaxed) {
            return 0;
        }
        let mut m = MEM_FUNCTIONS.lock().unwrap_or_else(|e| e.into_inner());
        if alloc_fn.is_some() {
            m.0 = alloc_fn;
        }
        if free_fn.is_some() {
            m.1 = free_fn;
        }
        1
    })
}

/// `void ASYNC_get_mem_functions(ASYNC_stack_alloc_fn *, ASYNC_stack_free_fn *)`
/// (OpenSSL 3.1): the recorded pair, or the default malloc/free pair. NULL
/// out-pointers are skipped.
///
/// # Safety
/// Each pointer must be null or writable.
#[cfg_attr(not(stackjob_ossl_symver), unsafe(no_mangle))]
pub unsafe extern "C" fn ASYNC_get_mem_functions(
    alloc_fn: *mut Option<StackAllocFn>,
    free_fn: *mut Option<StackFreeFn>,
) {
    guard((), || {
        let m = *MEM_FUNCTIONS.lock().unwrap_or_else(|e| e.into_inner());
        // SAFETY: non-null out-pointers are writable per the contract.
        unsafe {
            if !alloc_fn.is_null() {
                *alloc_fn = Some(m.0.unwrap_or(default_stack_alloc));
            }
            if !free_fn.is_null() {
                *free_fn = Some(m.1.unwrap_or(default_stack_free));
            }
        }
    })
}

// --------------------------------------------------------------- wait ctx

/// `ASYNC_WAIT_CTX *ASYNC_WAIT_CTX_new(void)`: an empty wait ctx.
#[cfg_attr(not(stackjob_ossl_symver), unsafe(no_mangle))]
pub extern "C" fn ASYNC_WAIT_CTX_new() -> *mut CWaitCtx {
    guard(ptr::null_mut(), CWaitCtx::new_raw)
}

/// `void ASYNC_WAIT_CTX_free(ASYNC_WAIT_CTX *ctx)`: runs the cleanup of every
/// registered fd (newest first) and frees the ctx; NULL is ignored. If a
/// paused job still uses the ctx, that happens when the job ends.
///
/// # Safety
/// `ctx` must be null or a live wait ctx, not used by the caller afterwards.
#[cfg_attr(not(stackjob_ossl_symver), unsafe(no_mangle))]
pub unsafe extern "C" fn ASYNC_WAIT_CTX_free(ctx: *mut CWaitCtx) {
    if ctx.is_null() {
        return;
    }
    // SAFETY: the caller gives up its reference to a live ctx.
    guard((), || unsafe { CWaitCtx::release(ctx) })
}

/// `int ASYNC_WAIT_CTX_set_wait_fd(ctx, const void *key, OSSL_ASYNC_FD fd,
/// void *custom_data, cleanup)`: registers `fd` under `key` (added in the
/// current job segment). Returns 1, or 0 for a NULL ctx.
///
/// # Safety
/// `ctx` null or live; `cleanup` null or callable as OpenSSL describes.
#[cfg_attr(not(stackjob_ossl_symver), unsafe(no_mangle))]
pub unsafe extern "C" fn ASYNC_WAIT_CTX_set_wait_fd(
    ctx: *mut CWaitCtx,
    key: *const c_void,
    fd: c_int,
    custom_data: *mut c_void,
    cleanup: Option<CleanupFn>,
) -> c_int {
    guard(0, || {
        // SAFETY: per the contract.
        let Some(w) = (unsafe { wctx(ctx) }) else { return 0 };
        let at = ctx as usize;
        let cleanup: Option<stackjob::Cleanup> = cleanup.map(|f| {
            Box::new(move |key: stackjob::WaitKey, fd: c_int, data: usize| {
                // SAFETY: cleanups run from `CWaitCtx::release` while the
                // ctx at `at` is still alive; `f` is the user's cleanup.
                unsafe { f(at as *mut CWaitCtx, key.get() as *const c_void, fd, data as *mut c_void) }
            }) as stackjob::Cleanup
        });
        w.inner().set_wait_fd(stackjob::WaitKey::new(key as usize), fd, custom_data as usize, cleanup);
        1
    })
}

/// `int ASYNC_WAIT_CTX_get_fd(ctx, key, OSSL_ASYNC_FD *fd, void **custom_data)`:
/// the newest live entry with `key` → 1, else 0 (NULL outs skipped).
///
/// # Safety
/// `ctx` null or live; `fd`, `custom_data` null or writable.
#[cfg_attr(not(stackjob_ossl_symver), unsafe(no_mangle))]
pub unsafe extern "C" fn ASYNC_WAIT_CTX_get_fd(
    ctx: *mut CWaitCtx,
    key: *const c_void,
    fd: *mut c_int,
    custom_data: *mut *mut c_void,
) -> c_int {
    guard(0, || {
        // SAFETY: per the contract.
        let Some(w) = (unsafe { wctx(ctx) }) else { return 0 };
        let Some((f, data)) = w.inner().get_fd(stackjob::WaitKey::new(key as usize)) else { return 0 };
        // SAFETY: non-null out-pointers are writable per the contract.
        unsafe {
            if !fd.is_null() {
                *fd = f;
            }
            if !custom_data.is_null() {
                *custom_data = data as *mut c_void;
            }
        }
        1
    })
}

/// Copies `fds` to `out` (if non-null) and stores the count in `num`.
///
/// # Safety
/// `out` null or writable for `fds.len()` fds; `num` null or writable.
unsafe fn put_fds(fds: &[c_int], out: *mut c_int, num: *mut usize) {
    // SAFETY: per the contract (OpenSSL: callers size `out` with a first
    // count-only call).
    unsafe {
        if !out.is_null() {
            ptr::copy_nonoverlapping(fds.as_ptr(), out, fds.len());
        }
        if !num.is_null() {
            *num = fds.len();
        }
    }
}

/// `int ASYNC_WAIT_CTX_get_all_fds(ctx, OSSL_ASYNC_FD *fd, size_t *numfds)`:
/// the live fds, newest first (`fd` may be NULL to count only). 1, or 0 for
/// a NULL ctx.
///
/// # Safety
/// `ctx` null or live; `fd` null or large enough; `numfds` null or writable.
#[cfg_attr(not(stackjob_ossl_symver), unsafe(no_mangle))]
pub unsafe extern "C" fn ASYNC_WAIT_CTX_get_all_fds(ctx: *mut CWaitCtx, fd: *mut c_int, numfds: *mut usize) -> c_int {
    guard(0, || {
        // SAFETY: per the contract.
        let Some(w) = (unsafe { wctx(ctx) }) else { return 0 };
        if fd.is_null() {
            if !numfds.is_null() {
                // SAFETY: writable per the contract.
                unsafe { *numfds = w.inner().fd_count() };
            }
            return 1;
        }
        // SAFETY: per the contract.
        unsafe { put_fds(&w.inner().all_fds(), fd, numfds) };
        1
    })
}

/// `int ASYNC_WAIT_CTX_get_changed_fds(ctx, addfd, numaddfds, delfd,
/// numdelfds)`: the fds added and deleted in the job's last run segment.
/// 1, or 0 for a NULL ctx.
///
/// # Safety
/// `ctx` null or live; arrays null or large enough; counts null or writable.
#[cfg_attr(not(stackjob_ossl_symver), unsafe(no_mangle))]
pub unsafe extern "C" fn ASYNC_WAIT_CTX_get_changed_fds(
    ctx: *mut CWaitCtx,
    addfd: *mut c_int,
    numaddfds: *mut usize,
    delfd: *mut c_int,
    numdelfds: *mut usize,
) -> c_int {
    guard(0, || {
        // SAFETY: per the contract.
        let Some(w) = (unsafe { wctx(ctx) }) else { return 0 };
        let changed = w.inner().changed_fds();
        // SAFETY: per the contract.
        unsafe {
            put_fds(&changed.added, addfd, numaddfds);
            put_fds(&changed.deleted, delfd, numdelfds);
        }
        1
    })
}

/// `int ASYNC_WAIT_CTX_clear_fd(ctx, const void *key)`: unregisters the
/// newest live entry with `key` without calling its cleanup. 1 if found.
///
/// # Safety
/// `ctx` null or live.
#[cfg_attr(not(stackjob_ossl_symver), unsafe(no_mangle))]
pub unsafe extern "C" fn ASYNC_WAIT_CTX_clear_fd(ctx: *mut CWaitCtx, key: *const c_void) -> c_int {
    guard(0, || {
        // SAFETY: per the contract.
        let Some(w) = (unsafe { wctx(ctx) }) else { return 0 };
        w.inner().clear_fd(stackjob::WaitKey::new(key as usize)) as c_int
    })
}

/// `int ASYNC_WAIT_CTX_set_callback(ctx, ASYNC_callback_fn cb, void *arg)`:
/// stores the completion callback (NULL = none). 0 only for a NULL ctx.
///
/// # Safety
/// `ctx` null or live.
#[cfg_attr(not(stackjob_ossl_symver), unsafe(no_mangle))]
pub unsafe extern "C" fn ASYNC_WAIT_CTX_set_callback(
    ctx: *mut CWaitCtx,
    callback: Option<CallbackFn>,
    callback_arg: *mut c_void,
) -> c_int {
    guard(0, || {
        // SAFETY: per the contract.
        let Some(w) = (unsafe { wctx(ctx) }) else { return 0 };
        w.set_callback(callback, callback_arg);
        1
    })
}

/// `int ASYNC_WAIT_CTX_get_callback(ctx, ASYNC_callback_fn *cb, void **arg)`:
/// 1 and the callback if one is set, else 0 (outputs untouched).
///
/// # Safety
/// `ctx` null or live; outputs null or writable.
#[cfg_attr(not(stackjob_ossl_symver), unsafe(no_mangle))]
pub unsafe extern "C" fn ASYNC_WAIT_CTX_get_callback(
    ctx: *mut CWaitCtx,
    callback: *mut Option<CallbackFn>,
    callback_arg: *mut *mut c_void,
) -> c_int {
    guard(0, || {
        // SAFETY: per the contract.
        let Some(w) = (unsafe { wctx(ctx) }) else { return 0 };
        let Some((f, arg)) = w.callback() else { return 0 };
        // SAFETY: non-null outputs are writable per the contract.
        unsafe {
            if !callback.is_null() {
                *callback = Some(f);
            }
            if !callback_arg.is_null() {
                *callback_arg = arg;
            }
        }
        1
    })
}

/// `int ASYNC_WAIT_CTX_set_status(ctx, int status)`: stores any int. 1, or
/// 0 for a NULL ctx.
///
/// # Safety
/// `ctx` null or live.
#[cfg_attr(not(stackjob_ossl_symver), unsafe(no_mangle))]
pub unsafe extern "C" fn ASYNC_WAIT_CTX_set_status(ctx: *mut CWaitCtx, status: c_int) -> c_int {
    // SAFETY: per the contract.
    match unsafe { wctx(ctx) } {
        Some(w) => {
            w.set_status(status);
            1
        }
        None => 0,
    }
}

/// `int ASYNC_WAIT_CTX_get_status(ctx)`: the stored status (initially 0,
/// `ASYNC_STATUS_UNSUPPORTED`); 0 for a NULL ctx.
///
/// # Safety
/// `ctx` null or live.
#[cfg_attr(not(stackjob_ossl_symver), unsafe(no_mangle))]
pub unsafe extern "C" fn ASYNC_WAIT_CTX_get_status(ctx: *mut CWaitCtx) -> c_int {
    // SAFETY: per the contract.
    unsafe { wctx(ctx) }.map_or(0, CWaitCtx::status)
}

// ------------------------------------------------------------ extras

/// `void stackjob_openssl_counters(uint64_t out[4])`: jobs started, resumes,
/// pauses and finishes in this process (counted only with `STACKJOB_DEBUG`
/// set). Not part of OpenSSL: a probe that this library serves the calls.
///
/// # Safety
/// `out` must be null or writable for 4 `uint64_t`.
#[cfg_attr(not(stackjob_ossl_symver), unsafe(no_mangle))]
pub unsafe extern "C" fn stackjob_openssl_counters(out: *mut u64) {
    if out.is_null() {
        return;
    }
    let c = &COUNTERS;
    let v = [&c.starts, &c.resumes, &c.pauses, &c.finishes].map(|a| a.load(Ordering::Relaxed));
    // SAFETY: writable for 4 values per the contract.
    unsafe { ptr::copy_nonoverlapping(v.as_ptr(), out, 4) };
}

/// `size_t stackjob_openssl_stack_size(void)`: the job stack size in use
/// (`STACKJOB_STACK_SIZE` or the default). Not part of OpenSSL.
#[cfg_attr(not(stackjob_ossl_symver), unsafe(no_mangle))]
pub extern "C" fn stackjob_openssl_stack_size() -> usize {
    guard(0, || config::config().stack_size)
}

/// `int stackjob_openssl_libctx_swapping(void)`: 1 if libcrypto's
/// `OSSL_LIB_CTX_set0_default` was found, so the default library context is
/// swapped around every job segment as OpenSSL does. Not part of OpenSSL.
#[cfg_attr(not(stackjob_ossl_symver), unsafe(no_mangle))]
pub extern "C" fn stackjob_openssl_libctx_swapping() -> c_int {
    guard(0, || config::libctx_swapping() as c_int)
}
