//! What OpenSSL's ASYNC cannot do, as this library's own functions
//! (declared in `stackjob/async.h`, all named `stackjob_async_*`, never in
//! OpenSSL's namespace): cancelling a paused job, per-thread stack and
//! guard sizes, and generation-checked wake handles that a completion
//! thread may use after the job is gone.

use crate::handles::{self, PAUSED};
use crate::{AsyncJob, guard};
use std::ffi::{c_int, c_void};
use std::sync::atomic::Ordering;
use std::sync::{Mutex, MutexGuard};

/// `stackjob_async_cancel_job`: the frames were unwound and the stack is back in the pool.
pub const STACKJOB_CANCEL_UNWOUND: c_int = 1;
/// `stackjob_async_cancel_job`: the frames could not be unwound; the stack is quarantined.
pub const STACKJOB_CANCEL_QUARANTINED: c_int = 2;
/// `stackjob_async_wake`: the job is gone (finished, cancelled, or never was); nothing done.
pub const STACKJOB_WAKE_GONE: c_int = 0;
/// `stackjob_async_wake`: the job's wait ctx callback was called.
pub const STACKJOB_WAKE_DELIVERED: c_int = 1;
/// `stackjob_async_wake`: the job is alive but has no wait ctx callback.
pub const STACKJOB_WAKE_NO_CALLBACK: c_int = 2;

/// Locks that a wake and the end of a job take; striped by record index so
/// that completion threads waking different jobs rarely meet.
static WAKE_LOCKS: [Mutex<()>; 64] = [const { Mutex::new(()) }; 64];

/// The wake lock of record `index`.
pub(crate) fn wake_lock(index: u32) -> MutexGuard<'static, ()> {
    WAKE_LOCKS[index as usize % WAKE_LOCKS.len()].lock().unwrap_or_else(|e| e.into_inner())
}

// ------------------------------------------------------------- cancel

/// The caller's stack pointer (where a job's entry calls the C function).
#[inline(always)]
pub(crate) fn stack_pointer() -> usize {
    let sp: usize;
    // SAFETY: each block copies the stack pointer to a register, nothing else.
    #[cfg(target_arch = "x86_64")]
    unsafe {
        std::arch::asm!("mov {}, rsp", out(reg) sp, options(nomem, nostack, preserves_flags));
    }
    // SAFETY: as above.
    #[cfg(target_arch = "aarch64")]
    unsafe {
        std::arch::asm!("mov {}, sp", out(reg) sp, options(nomem, nostack, preserves_flags));
    }
    // SAFETY: as above.
    #[cfg(target_arch = "riscv64")]
    unsafe {
        std::arch::asm!("mv {}, sp", out(reg) sp, options(nomem, nostack, preserves_flags));
    }
    #[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64", target_arch = "riscv64")))]
    {
        // No backend: no job runs, and cancel never unwinds (0 is below every frame).
        sp = 0;
    }
    sp
}

// The unwinder's backtrace interface (libgcc_s, or LLVM libunwind on musl),
// which the standard library links for its own unwinding.
unsafe extern "C" {
    fn _Unwind_Backtrace(trace: extern "C" fn(*mut c_void, *mut c_void) -> c_int, arg: *mut c_void) -> c_int;
    fn _Unwind_GetCFA(context: *mut c_void) -> usize;
}

/// `_URC_END_OF_STACK`, returned by the trace callback to stop the walk.
const URC_STOP: c_int = 5;

struct Walk {
    /// The job entry's stack pointer.
    entry: usize,
    reached: bool,
}

extern "C" fn step(context: *mut c_void, arg: *mut c_void) -> c_int {
    // SAFETY: `arg` is the `Walk` that `unwind_reaches` passed, alive for
    // the whole walk; `context` is the unwinder's for this frame.
    unsafe {
        let walk = &mut *arg.cast::<Walk>();
        if walk.entry != 0 && _Unwind_GetCFA(context) > walk.entry {
            walk.reached = true;
            return URC_STOP;
        }
    }
    0
}

/// Whether the unwinder can walk every frame between here and the job's
/// entry (`entry_sp`): then an unwind started here reaches the entry's
/// `catch_unwind`. C frames without unwind information end the walk early.
#[inline(never)]
pub(crate) fn unwind_reaches(entry_sp: usize) -> bool {
    let mut walk = Walk { entry: entry_sp, reached: false };
    // SAFETY: `step` only reads the CFA and writes `walk`, which outlives
    // the call.
    unsafe { _Unwind_Backtrace(step, (&raw mut walk).cast()) };
    walk.reached
}

/// `int stackjob_async_cancel_job(ASYNC_JOB *job)`: cancels a paused job of
/// the calling thread, unwinding its frames when every one has unwind
/// information (then its stack goes back to the pool:
/// `STACKJOB_CANCEL_UNWOUND`), or quarantining its stack
/// (`STACKJOB_CANCEL_QUARANTINED`). The handle is stale afterwards and its
/// wait ctx reference is dropped. 0, doing nothing, for anything but a
/// paused job of this thread.
#[cfg_attr(not(stackjob_ossl_symver), unsafe(no_mangle))]
pub extern "C" fn stackjob_async_cancel_job(job: *mut AsyncJob) -> c_int {
    guard(0, || {
        handles::with_state(|t| {
            let h = job as usize;
            let Some((_, r)) = handles::lookup(h) else { return 0 };
            if !t.owns(r) || r.state.load(Ordering::Relaxed) != PAUSED {
                return 0;
            }
            // SAFETY: this thread owns the record and the job is switched out.
            let Some(paused) = (unsafe { (*r.job.get()).take() }) else { return 0 };
            r.state.store(handles::RUNNING, Ordering::Release);
            let before = stackjob::quarantined_jobs();
            // The running job (when cancelling from inside another job) is
            // the running one again afterwards.
            let (outer, outer_rec) = (t.current.get(), t.current_rec());
            t.enter(h, r);
            t.unwind_cancel.set(true);
            r.begin_segment(); // the cancellation's segment
            drop(paused); // the crate resumes it once, with its pause unwinding
            t.unwind_cancel.set(false);
            match outer_rec {
                Some(o) => t.enter(outer, o),
                None => t.leave(),
            }
            let quarantined = stackjob::quarantined_jobs() != before;
            // SAFETY: owned by this thread; its job slot was emptied above.
            unsafe { handles::release(t, r) };
            if quarantined { STACKJOB_CANCEL_QUARANTINED } else { STACKJOB_CANCEL_UNWOUND }
        })
    })
}

// ------------------------------------------------------ stack sizes

/// `int stackjob_async_set_thread_stack(size_t stack_size, size_t
/// guard_size)`: this thread's job stack and guard sizes (0 = the process
/// default), in effect at once (the pool is replaced as by a second
/// `ASYNC_init_thread` with the same sizes). 1, or 0 with nothing changed
/// for sizes out of range, a call inside a job, or stacks that cannot be
/// created.
#[cfg_attr(not(stackjob_ossl_symver), unsafe(no_mangle))]
pub extern "C" fn stackjob_async_set_thread_stack(stack_size: usize, guard_size: usize) -> c_int {
    guard(0, || {
        handles::with_state(|t| {
            if t.current.get() != 0 {
                return 0;
            }
            let old = (t.stack_size.get(), t.guard_size.get());
            t.stack_size.set(stack_size);
            t.guard_size.set(guard_size);
            let cfg = crate::pool_config(t, t.pool_max.get(), t.pool_init.get());
            if t.pool_init.get() > 0 {
                crate::mark_stacks_used();
            }
            if stackjob::init_thread_with(&cfg).is_err() {
                t.stack_size.set(old.0);
                t.guard_size.set(old.1);
                return 0;
            }
            t.pool_ready.set(true);
            1
        })
    })
}

/// `int stackjob_async_get_thread_stack(size_t *stack_size, size_t
/// *guard_size)`: the calling thread's stack and guard sizes (rounded to
/// pages once its pool exists). NULL outs are skipped. Returns 1.
///
/// # Safety
/// Each pointer must be null or writable.
#[cfg_attr(not(stackjob_ossl_symver), unsafe(no_mangle))]
pub unsafe extern "C" fn stackjob_async_get_thread_stack(stack_size: *mut usize, guard_size: *mut usize) -> c_int {
    guard(0, || {
        let (s, g) = handles::with_state(|t| {
            if t.pool_ready.get() {
                let stats = stackjob::pool_stats();
                (stats.stack_size, stats.guard_size)
            } else {
                let cfg = crate::pool_sizes(t);
                (cfg.0, cfg.1)
            }
        });
        // SAFETY: non-null out-pointers are writable per the contract.
        unsafe {
            if !stack_size.is_null() {
                *stack_size = s;
            }
            if !guard_size.is_null() {
                *guard_size = g;
            }
        }
        1
    })
}

// ------------------------------------------------------------- wakes

/// `stackjob_async_wake_t stackjob_async_wake_handle(ASYNC_JOB *job)`: the
/// wake handle of a live job of the calling thread, or 0. (The value is the
/// job handle itself, generation and all; issuing it makes the job's end
/// take the wake lock.)
#[cfg_attr(not(stackjob_ossl_symver), unsafe(no_mangle))]
pub extern "C" fn stackjob_async_wake_handle(job: *mut AsyncJob) -> u64 {
    guard(0, || {
        handles::with_state(|t| {
            let h = job as usize;
            match handles::lookup(h) {
                Some((_, r)) if t.owns(r) => {
                    r.wake_issued.store(true, Ordering::Relaxed);
                    h as u64
                }
                _ => 0,
            }
        })
    })
}

/// `int stackjob_async_wake(stackjob_async_wake_t wake)`: from any thread,
/// calls the live job's wait ctx callback under the job's wake lock
/// (`STACKJOB_WAKE_DELIVERED`); `STACKJOB_WAKE_NO_CALLBACK` for a live job
/// without one; `STACKJOB_WAKE_GONE`, doing nothing, once the job ended.
#[cfg_attr(not(stackjob_ossl_symver), unsafe(no_mangle))]
pub extern "C" fn stackjob_async_wake(wake: u64) -> c_int {
    guard(STACKJOB_WAKE_GONE, || {
        let h = wake as usize;
        let Some((index, _)) = handles::decode(h) else { return STACKJOB_WAKE_GONE };
        let _lock = wake_lock(index);
        // Under the lock the job cannot end (`handles::release` takes it
        // once a wake handle was issued), so the record's wait ctx
        // reference holds the ctx alive until we return.
        let Some((_, r)) = handles::lookup(h) else { return STACKJOB_WAKE_GONE };
        let ctx = r.ctx.load(Ordering::Acquire);
        // SAFETY: non-null: the live job's reference keeps it alive (above).
        let Some(callback) = (unsafe { ctx.as_ref() }).and_then(|c| c.callback()) else {
            return STACKJOB_WAKE_NO_CALLBACK;
        };
        let (f, arg) = callback;
        // SAFETY: the user's callback with the argument they set for it.
        unsafe { f(arg) };
        STACKJOB_WAKE_DELIVERED
    })
}
