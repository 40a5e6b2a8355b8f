//! aarch64 AAPCS64 backend: `arch/aarch64.s` plus the three-instruction
//! inline asm that enters it from the job side. The file's header documents
//! the saved record, the stack states, the CFI and the BTI landing pads.

use super::{Entry, Regs};
use core::arch::asm;
use core::mem::offset_of;

/// This target has a context-switch backend.
pub(crate) const CAPABLE: bool = true;

/// Name of the backend, for messages.
pub(crate) const BACKEND: &str = "aarch64-aapcs64";

/// Size of the saved record (see the table in `arch/aarch64.s`): x29, the
/// resume PC, x19 and x20, eight bytes each. A multiple of 16, so sp stays
/// 16-byte aligned while a record is pushed or popped.
const RECORD: usize = 32;

// The CFI escapes encode the `Regs` offsets as one SLEB128 byte each and
// the record size as a two-byte ULEB128.
const _: () = assert!(offset_of!(Regs, sp) < 64 && offset_of!(Regs, parent_sp) < 64);
const _: () = assert!(RECORD.is_multiple_of(16) && RECORD < 16384);

backend_asm!(
    include_str!("../../arch/aarch64.s"),
    SP = const offset_of!(Regs, sp),
    PARENT_SP = const offset_of!(Regs, parent_sp),
    RECORD = const RECORD,
    RESUME_PC = const RESUME_PC,
);

unsafe extern "C" {
    // Called only from the inline asm in `enter` and `switch_in`.
    fn stackjob_enter(regs: *mut Regs, top: *mut u8, entry: Entry);
    fn stackjob_switch_in(regs: *mut Regs);
    // Not callable: a branch target with its own register convention.
    fn stackjob_switch_out();
    fn stackjob_switch_exit();
    // Not callable: the unwind anchor and the fake return address of every
    // job's entry function (one instruction into the anchor's FDE), which
    // stackjob_enter sets; named here only for the test below.
    #[cfg(test)]
    fn stackjob_trampoline();
    #[cfg(test)]
    fn stackjob_trampoline_return();
}

/// Starts a new job on the stack whose first frame ends at `top`: runs
/// `entry(regs)` there until the job switches out. `_fp_env` is ignored:
/// FPCR is thread state under AAPCS64 (a job runs with the FPCR of the
/// thread that resumes it) and FPSR is not preserved by calls, so a new job
/// inherits both with nothing to store.
///
/// # Safety
/// `top` must be 16-byte aligned, with writable memory below it that no
/// running code uses (the stack's usable part); `regs` must stay valid for
/// as long as the job runs and this thread must own it; `entry` must never
/// return (it ends in [`exit`]).
#[inline(always)]
pub(crate) unsafe fn enter(regs: *mut Regs, top: *mut u8, entry: Entry, _fp_env: bool) {
    debug_assert_eq!(top as usize % 16, 0);
    // SAFETY: as in `switch_in`: the asm saves the resumer's x19, x20, x29
    // and return address in its record and returns to it (from the job's
    // first switch out); x21-x28 and everything caller-saved (x0-x17, x30,
    // all of v0-v31) are declared clobbered, so the compiler saves what it
    // needs of them itself. The asm writes nothing below `top`: the job's
    // first frame is in registers (sp = top, x30 = the fake return address)
    // when it `br x16`s to `entry`, which lands on the entry's `bti c`.
    unsafe {
        asm!(
            "bl {enter}",
            enter = sym stackjob_enter,
            in("x0") regs, in("x1") top, in("x2") entry,
            out("x21") _, out("x22") _, out("x23") _, out("x24") _,
            out("x25") _, out("x26") _, out("x27") _, out("x28") _,
            clobber_abi("C"),
        );
    }
}

/// Runs the job whose state is in `regs` until it switches out. `_fp_env` is
/// ignored: the floating-point control register is thread state on this
/// ABI and is never switched.
///
/// # Safety
/// `regs.sp` must hold the saved record of a switched-out job on a live
/// stack, and this thread must be the one that owns the job.
#[inline(always)]
pub(crate) unsafe fn switch_in(regs: *mut Regs, _fp_env: bool) {
    // SAFETY: the asm saves x19, x20, x29 and the return address (see the
    // record table) and returns to it; x21-x28 are declared clobbered here,
    // so the compiler keeps nothing live in them across the switch and
    // saves the ones it needs itself; clobber_abi("C") covers x0-x17, x30
    // and all of v0-v31 (d8-d15 included: their upper halves are
    // caller-saved). A direct `bl` from inline asm, like x86_64's `call`.
    unsafe {
        asm!(
            "bl {switch_in}",
            switch_in = sym stackjob_switch_in,
            in("x0") regs,
            out("x21") _, out("x22") _, out("x23") _, out("x24") _,
            out("x25") _, out("x26") _, out("x27") _, out("x28") _,
            clobber_abi("C"),
        );
    }
}

/// Returns control to whoever last resumed the job owning `regs`, and
/// returns when the job is resumed again: `false` at its resume label,
/// `true` at its cancel path (the resumer called
/// [`unwind_on_resume`](super::unwind_on_resume) before resuming it).
///
/// # Safety
/// Must run on the job stack described by `regs`, while that job is the one
/// running (its `parent_sp` set by the `switch_in` that entered it).
#[inline(always)]
pub(crate) unsafe fn switch_out(regs: *mut Regs, _fp_env: bool) -> bool {
    // SAFETY: stackjob_switch_out saves x19, x20, x29, sp and the resume PC
    // (x1); x21-x28 and everything caller-saved (x0-x17, x30, all of
    // v0-v31) are declared clobbered, so the compiler saves what it needs of
    // them itself. sp is 16-aligned here as everywhere on aarch64. switch_in
    // comes back with `br x17`, so the resume label carries a `bti j`
    // landing pad (a NOP without BTI). The CANCEL_PATH bytes just before it
    // (never executed on the way to the label) are the cancel path, reached
    // the same way: a landing pad and a `b` to the label block, where the
    // unwind starts as an ordinary Rust call.
    unsafe {
        asm!(
            "adr x1, 2f",
            "b {switch_out}",
            "5:",
            "bti j",
            "b {cancel}",
            "2:",
            ".if 2b - 5b - {cancel_path}",
            ".error \"CANCEL_PATH is not the size of the cancel path before the resume label\"",
            ".endif",
            "bti j",
            switch_out = sym stackjob_switch_out,
            cancel = label { return true },
            cancel_path = const CANCEL_PATH,
            in("x0") regs,
            out("x21") _, out("x22") _, out("x23") _, out("x24") _,
            out("x25") _, out("x26") _, out("x27") _, out("x28") _,
            clobber_abi("C"),
        );
    }
    false
}

/// Where a switched-out job's resume PC sits in its record (regs.sp + 8).
pub(crate) const RESUME_PC: usize = 8;

/// The size of the cancel path that precedes every resume label in
/// [`switch_out`]: `bti j` and `b`, 4 bytes each.
pub(crate) const CANCEL_PATH: usize = 8;

/// Leaves a job whose body is done for good: restores whoever last resumed
/// it, as [`switch_out`] does, without saving anything of the job.
///
/// # Safety
/// As for [`switch_out`]; nothing on the job stack may be used again until
/// [`enter`] starts a new job on it.
#[inline(always)]
pub(crate) unsafe fn exit(regs: *mut Regs, _fp_env: bool) -> ! {
    // SAFETY: the asm only reads regs.parent_sp and the resumer's record,
    // and never comes back here.
    unsafe { asm!("b {exit}", exit = sym stackjob_switch_exit, in("x0") regs, options(noreturn)) }
}

backend_stack_pointer!("mov {}, sp");

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    static ENTERED_WITH: AtomicUsize = AtomicUsize::new(0);
    static ROUNDS: AtomicUsize = AtomicUsize::new(0);
    static LOCAL_AT: AtomicUsize = AtomicUsize::new(0);

    /// Parks on every round: counts, notes where its frame is, then
    /// switches out to the test.
    unsafe extern "C" fn probe(regs: *mut Regs) -> ! {
        ENTERED_WITH.store(regs as usize, Ordering::SeqCst);
        loop {
            let local = 0u8;
            LOCAL_AT.store(core::hint::black_box(&raw const local) as usize, Ordering::SeqCst);
            ROUNDS.fetch_add(1, Ordering::SeqCst);
            // SAFETY: we run on the probe stack, entered by `enter`.
            unsafe { switch_out(regs, true) };
        }
    }

    /// A new job entered through the real asm must reach our entry with our
    /// `regs`, run on the stack below `top` and come back on its first
    /// switch out; every later round trip (resume label, `br x17`, `ret`)
    /// must come back here too, with the job's record on its own stack.
    #[test]
    fn enter_and_round_trips_reach_the_probe() {
        let mut stack = vec![0u128; 4096]; // 64 KiB, 16-byte aligned
        // SAFETY: one past the end of the allocation.
        let top = unsafe { stack.as_mut_ptr().add(stack.len()) }.cast::<u8>();
        let mut regs = Regs::new();
        let regs_ptr = &raw mut regs;
        // SAFETY: `regs` is live and only the probe (not running) shares it.
        let saved_sp = || unsafe { (*regs_ptr).sp } as usize;
        for round in 1..=3 {
            if round == 1 {
                // SAFETY: `stack` is writable below the aligned `top` and
                // unused; `regs` outlives the probe's runs; `probe` never
                // returns.
                unsafe { enter(regs_ptr, top, probe, true) };
            } else {
                // SAFETY: regs.sp holds the probe's record on the live `stack`.
                unsafe { switch_in(regs_ptr, true) };
            }
            assert_eq!(ROUNDS.load(Ordering::SeqCst), round);
            assert_eq!(ENTERED_WITH.load(Ordering::SeqCst), regs_ptr as usize);
            let sp = saved_sp();
            assert!(sp.is_multiple_of(16) && sp > stack.as_ptr() as usize && sp <= top as usize - RECORD);
            let local = LOCAL_AT.load(Ordering::SeqCst);
            assert!(local > sp && local < top as usize);
        }
        // The probe stays parked in switch_out; its stack holds nothing to drop.
        drop(stack);
    }

    /// The fake return address a job's entry sees is one instruction into
    /// the trampoline's FDE, so that an unwinder's "return address - 1"
    /// finds it (the entry path itself is checked by every job test).
    #[test]
    fn trampoline_return_is_inside_the_trampoline() {
        assert_eq!(stackjob_trampoline_return as *const () as usize, stackjob_trampoline as *const () as usize + 4);
    }
}
