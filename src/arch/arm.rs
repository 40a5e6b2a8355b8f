//! 32-bit Arm AAPCS32 (VFP hard-float; A32 or T32 code) backend:
//! `arch/arm.s` plus the two-instruction inline asm that enters it from the
//! job side. The file's header documents the saved record, the stack
//! states, the EHABI unwind entry and interworking.

use super::{Entry, Regs};
use core::arch::asm;
use core::mem::offset_of;

/// This target has a context-switch backend.
pub(crate) const CAPABLE: bool = true;

/// Name of the backend, for messages.
pub(crate) const BACKEND: &str = "arm-aapcs-vfp";

/// Size of the saved record (see the table in `arch/arm.s`): r6, r7, r11 and
/// the resume PC, four bytes each. A multiple of 8, so sp keeps the 8-byte
/// alignment AAPCS32 asks for at calls while a record is pushed or popped.
const RECORD: usize = 16;

// Record offsets, named once (the asm spells the same layout in its table;
// `record_layout_matches_asm` below runs the asm over a record laid here).
const REC_R6: usize = 0;
const REC_R7: usize = 4;
const REC_R11: usize = 8;
const REC_PC: usize = 12;

// The trampoline's EHABI entry reaches regs.parent_sp from r6 with one
// "vsp += 4k + 4" opcode (k < 64), and the asm uses immediate offsets.
const _: () = assert!(offset_of!(Regs, parent_sp) >= 4 && offset_of!(Regs, parent_sp) <= 256);
const _: () = assert!(offset_of!(Regs, parent_sp).is_multiple_of(4) && offset_of!(Regs, sp) < 256);
const _: () = assert!(RECORD.is_multiple_of(8));

/// The instruction set of this build's code (and so of the asm): the
/// directive that selects it, and the STACKJOB_FUNCTION macro that opens
/// each entry point of `arch/arm.s` (a T32 function symbol needs
/// `.thumb_func`, so that its address has bit 0 set).
#[cfg(stackjob_arm_thumb)]
macro_rules! arm_state {
    () => {
        ".thumb\n.macro STACKJOB_FUNCTION name\n.thumb_func\n\\name:\n.endm\n"
    };
}
#[cfg(not(stackjob_arm_thumb))]
macro_rules! arm_state {
    () => {
        ".arm\n.macro STACKJOB_FUNCTION name\n\\name:\n.endm\n"
    };
}

/// Whether build.rs assembled the asm as T32 (see `arm_state!`).
const ASM_IS_THUMB: bool = cfg!(stackjob_arm_thumb);

/// Whether this crate's code is T32: the address of one of its functions
/// then has bit 0 set (interworking). capable.rs refuses jobs when this
/// disagrees with `ASM_IS_THUMB` (a build whose state build.rs could not
/// see), since the resume labels would then be of the wrong state.
pub(crate) fn state_mismatch() -> bool {
    let rust_is_thumb = (state_mismatch as fn() -> bool as usize) & 1 != 0;
    rust_is_thumb != ASM_IS_THUMB
}

backend_asm!(
    concat!(arm_state!(), include_str!("../../arch/arm.s")),
    SP = const offset_of!(Regs, sp),
    PARENT_SP = const offset_of!(Regs, parent_sp),
);

/// `asm!` with every callee-saved register the asm does not save itself
/// declared clobbered: r4, r5, r8, r9, r10, d8-d15, and through
/// clobber_abi("C") everything caller-saved (r0-r3, r12, lr, d0-d7,
/// d16-d31). The compiler then keeps nothing live in them across a switch
/// and saves the ones it needs.
macro_rules! asm_clobbering_callee_saved {
    ($($args:tt)*) => {
        asm!(
            $($args)*,
            out("r4") _, out("r5") _, out("r8") _, out("r9") _, out("r10") _,
            out("d8") _, out("d9") _, out("d10") _, out("d11") _,
            out("d12") _, out("d13") _, out("d14") _, out("d15") _,
            clobber_abi("C"),
        )
    };
}

unsafe extern "C" {
    // Called only from the inline asm in `switch_in`.
    fn stackjob_switch_in(regs: *mut Regs);
    // Not callable: branch targets with their own register convention.
    fn stackjob_switch_out();
    fn stackjob_switch_exit();
    // Not callable: the first PC of a fresh stack.
    fn stackjob_trampoline();
}

/// Writes a FRESH record just below `top` and points `regs.sp` at it, so
/// the next [`switch_in`] enters `entry(regs)` on this stack (once per job:
/// four stores).
///
/// # Safety
/// `top` must be 16-byte aligned, the `RECORD` bytes below it must be
/// writable memory of a stack that no running code uses, and `regs` must stay
/// valid for as long as the stack is switched to.
#[inline(always)]
pub(crate) unsafe fn prepare(top: *mut u8, regs: *mut Regs, entry: Entry) {
    debug_assert_eq!(top as usize % 16, 0);
    // SAFETY: the caller guarantees RECORD writable bytes below `top`.
    unsafe {
        let rec = top.sub(RECORD);
        // In T32 the address has bit 0 set; switch_in's `mov pc` ignores it
        // there (the trampoline is always of the crate's state).
        rec.add(REC_PC).cast::<usize>().write(stackjob_trampoline as *const () as usize);
        rec.add(REC_R6).cast::<*mut Regs>().write(regs);
        rec.add(REC_R7).cast::<usize>().write(entry as *const () as usize);
        rec.add(REC_R11).cast::<usize>().write(0);
        // After the record is popped, sp == top: 8-byte aligned, as AAPCS32
        // requires at the entry function.
        (*regs).sp = rec;
    }
}

/// [`switch_in`] for a job laid by [`prepare`] and never run. The same
/// entry: FPSCR is a global register under AAPCS32 (its mode bits
/// change only through functions whose purpose is to change them, its flags
/// are not preserved by calls), so a job runs with the FPSCR of the thread
/// that resumes it, and a new job inherits it with nothing to skip.
///
/// # Safety
/// As for [`switch_in`].
#[inline(always)]
pub(crate) unsafe fn switch_in_fresh(regs: *mut Regs, fp_env: bool) {
    // SAFETY: per the contract.
    unsafe { switch_in(regs, fp_env) }
}

/// Runs the job whose state is in `regs` until it switches out. `_fp_env` is
/// ignored: FPSCR is thread state on this ABI and is never switched.
///
/// # Safety
/// `regs.sp` must hold the saved record of a switched-out job on a live
/// stack, and this thread must be the one that owns the job.
#[inline(always)]
pub(crate) unsafe fn switch_in(regs: *mut Regs, _fp_env: bool) {
    // SAFETY: the asm saves r6, r7, r11 and the return address (see the
    // record table) and returns to it; every other callee-saved register is
    // declared clobbered (see the macro). A direct `bl`, which the return
    // stack pairs with switch_out's `pop {.., pc}`.
    unsafe { asm_clobbering_callee_saved!("bl {switch_in}", switch_in = sym stackjob_switch_in, in("r0") regs) }
}

/// Returns control to whoever last resumed the job owning `regs`, and
/// returns when the job is resumed again.
///
/// # Safety
/// Must run on the job stack described by `regs`, while that job is the one
/// running (its `parent_sp` set by the `switch_in` that entered it).
#[inline(always)]
pub(crate) unsafe fn switch_out(regs: *mut Regs, _fp_env: bool) {
    // SAFETY: stackjob_switch_out saves r6, r7, r11, sp and the resume PC
    // (lr, written here: clobber_abi("C") declares lr clobbered); every other
    // callee-saved register and everything caller-saved is declared
    // clobbered (see the macro). The block is entered and left like a call
    // (no `nostack`), so sp is 8-byte aligned. The `adr` result has no Thumb
    // bit in T32 code either: switch_in returns here with `mov pc`, which
    // keeps the state (arch/arm.s, "Interworking").
    unsafe {
        asm_clobbering_callee_saved!(
            "adr lr, 2f",
            "b {switch_out}",
            "2:",
            switch_out = sym stackjob_switch_out,
            in("r0") regs
        );
    }
}

/// Leaves a job whose body is done for good: restores whoever last resumed
/// it, as [`switch_out`] does, without saving anything of the job.
///
/// # Safety
/// As for [`switch_out`]; nothing on the job stack may be used again until
/// [`prepare`] lays a new record on it.
#[inline(always)]
pub(crate) unsafe fn exit(regs: *mut Regs, _fp_env: bool) -> ! {
    // SAFETY: the asm only reads regs.parent_sp and the resumer's record,
    // and never comes back here.
    unsafe { asm!("b {exit}", exit = sym stackjob_switch_exit, in("r0") regs, options(noreturn)) }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    static ENTERED_WITH: AtomicUsize = AtomicUsize::new(0);
    static ROUNDS: AtomicUsize = AtomicUsize::new(0);

    /// Parks on every round: counts, then switches out to the test.
    unsafe extern "C" fn probe(regs: *mut Regs) -> ! {
        ENTERED_WITH.store(regs as usize, Ordering::SeqCst);
        loop {
            ROUNDS.fetch_add(1, Ordering::SeqCst);
            // SAFETY: we run on the probe stack, entered by switch_in.
            unsafe { switch_out(regs, true) };
        }
    }

    /// The offsets named in Rust agree with the record the asm pops: a
    /// FRESH record laid by `prepare` is entered through the real asm,
    /// the trampoline must call our entry with our `regs`, and every later
    /// round trip (resume label, `mov pc, r12`, `pop {pc}`) must come back here.
    #[test]
    fn record_layout_matches_asm() {
        assert!(!state_mismatch(), "the asm and the Rust code are of one instruction set");
        let mut stack = vec![0u128; 4096]; // 64 KiB, 16-byte aligned
        // SAFETY: one past the end of the allocation.
        let top = unsafe { stack.as_mut_ptr().add(stack.len()) }.cast::<u8>();
        let mut regs = Regs::new();
        let regs_ptr = &raw mut regs;
        // SAFETY: `stack` provides RECORD writable bytes below the aligned top.
        unsafe { prepare(top, regs_ptr, probe) };
        // SAFETY: `regs` is live and only the probe (not running) shares it.
        let saved_sp = || unsafe { (*regs_ptr).sp };
        assert_eq!(saved_sp() as usize, top as usize - RECORD);
        // SAFETY: regs.sp points at the record inside `stack`.
        let word = |off: usize| unsafe { saved_sp().add(off).cast::<usize>().read() };
        assert_eq!(word(REC_PC), stackjob_trampoline as *const () as usize);
        assert_eq!(word(REC_R6), regs_ptr as usize);
        assert_eq!(word(REC_R7), probe as *const () as usize);
        assert_eq!(word(REC_R11), 0);
        for round in 1..=3 {
            // SAFETY: regs.sp holds the probe's record on the live `stack`.
            unsafe { switch_in(regs_ptr, true) };
            assert_eq!(ROUNDS.load(Ordering::SeqCst), round);
            assert_eq!(ENTERED_WITH.load(Ordering::SeqCst), regs_ptr as usize);
            let sp = saved_sp() as usize;
            assert!(sp.is_multiple_of(8) && sp > stack.as_ptr() as usize && sp < top as usize);
        }
        // The probe stays parked in switch_out; its stack holds nothing to drop.
        drop(stack);
    }
}
