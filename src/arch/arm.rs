//! 32-bit Arm AAPCS32 (VFP hard-float; A32 or T32 code) backend:
//! `arch/arm.s` plus the two-instruction inline asm that enters it from the
//! job side. The file's header documents the saved record, the stack
//! states (the ENTERED one built by `stackjob_enter`), the EHABI unwind
//! entry and interworking.

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

// The trampoline's EHABI entry reaches regs.parent_sp from r6 with one
// "vsp += 4k + 4" opcode (k < 64), and the asm uses immediate offsets.
const _: () = assert!(offset_of!(Regs, parent_sp) >= 4 && offset_of!(Regs, parent_sp) <= 256);
const _: () = assert!(offset_of!(Regs, parent_sp).is_multiple_of(4) && offset_of!(Regs, sp) < 256);
const _: () = assert!(RECORD.is_multiple_of(8));

/// The instruction set of this build's code (and so of the asm): the
/// directive that selects it, the STACKJOB_FUNCTION macro that opens each
/// entry point of `arch/arm.s` (a T32 function symbol needs `.thumb_func`,
/// so that its address has bit 0 set), and STACKJOB_STATE_BIT, bit 0 of a
/// return address into code of this state (what `stackjob_enter` adds to
/// the fake return address it sets by `adr`).
#[cfg(stackjob_arm_thumb)]
macro_rules! arm_state {
    () => {
        ".thumb\n.set STACKJOB_STATE_BIT, 1\n.macro STACKJOB_FUNCTION name\n.thumb_func\n\\name:\n.endm\n"
    };
}
#[cfg(not(stackjob_arm_thumb))]
macro_rules! arm_state {
    () => {
        ".arm\n.set STACKJOB_STATE_BIT, 0\n.macro STACKJOB_FUNCTION name\n\\name:\n.endm\n"
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
    RESUME_PC = const RESUME_PC,
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
    // Called only from the inline asm in `enter` and `switch_in`.
    fn stackjob_enter(regs: *mut Regs, top: *mut u8, entry: Entry);
    fn stackjob_switch_in(regs: *mut Regs);
    // Not callable: branch targets with their own register convention.
    fn stackjob_switch_out();
    fn stackjob_switch_exit();
    // Not callable: the unwind anchor and the fake return address of every
    // job's entry function (one instruction into the anchor's unwind
    // entry), which stackjob_enter sets; named here only for the tests below.
    #[cfg(test)]
    fn stackjob_trampoline();
    #[cfg(test)]
    fn stackjob_trampoline_return();
}

/// Starts a new job on the stack whose first frame ends at `top`: runs
/// `entry(regs)` there until the job switches out. `_fp_env` is ignored:
/// FPSCR is a global register under AAPCS32 (its mode bits change only
/// through functions whose purpose is to change them, its flags are not
/// preserved by calls), so a job runs with the FPSCR of the thread that
/// resumes it, and a new job inherits it.
///
/// # Safety
/// `top` must be 16-byte aligned, with writable memory below it that no
/// running code uses (the stack's usable part); `regs` must stay valid for
/// as long as the job runs and this thread must own it; `entry` must never
/// return (it ends in [`exit`]).
#[inline(always)]
pub(crate) unsafe fn enter(regs: *mut Regs, top: *mut u8, entry: Entry, _fp_env: bool) {
    debug_assert_eq!(top as usize % 16, 0);
    // SAFETY: as in `switch_in`: the asm saves the resumer's r6, r7, r11 and
    // return address in its record and returns to it when the job first
    // switches out; every other callee-saved register is declared clobbered
    // (see the macro). It writes nothing below `top`: the job's first frame
    // is registers only (sp = top, 8-byte aligned as AAPCS32 asks at the
    // entry; lr, r6, r7, r11, r0), and it enters `entry` with `bx r2`, which
    // interworks with a T32 entry's address. A direct `bl`, which the return
    // stack pairs with switch_out's `pop {.., pc}`.
    unsafe {
        asm_clobbering_callee_saved!(
            "bl {enter}",
            enter = sym stackjob_enter,
            in("r0") regs, in("r1") top, in("r2") entry
        )
    }
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

/// The cancel path's branch, 4 bytes in either instruction set.
#[cfg(stackjob_arm_thumb)]
macro_rules! cancel_branch {
    () => {
        "b.w {cancel}"
    };
}
#[cfg(not(stackjob_arm_thumb))]
macro_rules! cancel_branch {
    () => {
        "b {cancel}"
    };
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
    // SAFETY: stackjob_switch_out saves r6, r7, r11, sp and the resume PC
    // (lr, written here: clobber_abi("C") declares lr clobbered); every other
    // callee-saved register and everything caller-saved is declared
    // clobbered (see the macro). The block is entered and left like a call
    // (no `nostack`), so sp is 8-byte aligned. The `adr` result has no Thumb
    // bit in T32 code either: switch_in returns here with `mov pc`, which
    // keeps the state (arch/arm.s, "Interworking"). The assembler resolves
    // `adr` itself, from the offset within the section and assuming the
    // section starts 4-byte aligned (ADR reads Align(PC, 4)): `.p2align 2`
    // makes it so (A32 code is aligned anyway; T32 sections otherwise only
    // promise 2, and the linker then places a site at 2 mod 4 with a resume
    // PC 2 bytes off); in T32 it costs a 16-bit NOP at half the sites. The
    // CANCEL_PATH bytes just before the resume label (never executed on the
    // way to it) are the cancel path: a 32-bit branch (`b.w` in T32, where
    // `b` could be a 16-bit one) to the label block, where the unwind starts
    // as an ordinary Rust call.
    unsafe {
        asm_clobbering_callee_saved!(
            ".p2align 2",
            "adr lr, 2f",
            "b {switch_out}",
            "5:",
            cancel_branch!(),
            "2:",
            ".if 2b - 5b - {cancel_path}",
            ".error \"CANCEL_PATH is not the size of the cancel path before the resume label\"",
            ".endif",
            switch_out = sym stackjob_switch_out,
            cancel = label { return true },
            cancel_path = const CANCEL_PATH,
            in("r0") regs
        );
    }
    false
}

/// Where a switched-out job's resume PC sits in its record (regs.sp + 12).
pub(crate) const RESUME_PC: usize = 12;

/// The size of the cancel path that precedes every resume label in
/// [`switch_out`]: one 32-bit branch.
pub(crate) const CANCEL_PATH: usize = 4;

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
    unsafe { asm!("b {exit}", exit = sym stackjob_switch_exit, in("r0") regs, options(noreturn)) }
}

backend_stack_pointer!("mov {}, sp");

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    static ENTERED_WITH: AtomicUsize = AtomicUsize::new(0);
    static ENTRY_LR: AtomicUsize = AtomicUsize::new(0);
    static ENTRY_SP: AtomicUsize = AtomicUsize::new(0);
    static ENTRY_FP: AtomicUsize = AtomicUsize::new(usize::MAX);
    static ROUNDS: AtomicUsize = AtomicUsize::new(0);
    static LOCAL_AT: AtomicUsize = AtomicUsize::new(0);

    /// Bytes of one instruction of the asm's state: `nop` is 2 in T32, 4 in
    /// A32.
    const INSN: usize = if ASM_IS_THUMB { 2 } else { 4 };

    /// The probe's entry as `stackjob_enter` reaches it: before any prologue
    /// can change them, hands the body the registers of the job's first
    /// frame (lr, sp, and r7 | r11, both frame pointers) as arguments.
    #[unsafe(naked)]
    unsafe extern "C" fn probe(regs: *mut Regs) -> ! {
        core::arch::naked_asm!("mov r1, lr", "mov r2, sp", "orr r3, r7, r11", "b {body}", body = sym probe_body)
    }

    /// Parks on every round: counts, notes where its frame is, then
    /// switches out to the test.
    unsafe extern "C" fn probe_body(regs: *mut Regs, lr: usize, sp: usize, fp: usize) -> ! {
        ENTERED_WITH.store(regs as usize, Ordering::SeqCst);
        ENTRY_LR.store(lr, Ordering::SeqCst);
        ENTRY_SP.store(sp, Ordering::SeqCst);
        ENTRY_FP.store(fp, Ordering::SeqCst);
        loop {
            let local = 0u8;
            LOCAL_AT.store(core::hint::black_box(&raw const local) as usize, Ordering::SeqCst);
            ROUNDS.fetch_add(1, Ordering::SeqCst);
            // SAFETY: we run on the probe stack, entered by `enter`.
            unsafe { switch_out(regs, true) };
        }
    }

    /// A new job entered through the real asm must reach our entry with our
    /// `regs` and the first frame the asm header documents (sp = top, lr =
    /// the fake return address with this state's bit 0, both frame pointers
    /// 0), run on the stack below `top` and come back on its first switch
    /// out; every later round trip (resume label, `mov pc, r12`, `pop {pc}`)
    /// must come back here too, with the job's record on its own stack.
    #[test]
    fn enter_and_round_trips_reach_the_probe() {
        assert!(!state_mismatch(), "the asm and the Rust code are of one instruction set");
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
                let fake_return = stackjob_trampoline_return as *const () as usize | usize::from(ASM_IS_THUMB);
                assert_eq!(ENTRY_LR.load(Ordering::SeqCst), fake_return);
                assert_eq!(ENTRY_SP.load(Ordering::SeqCst), top as usize);
                assert_eq!(ENTRY_FP.load(Ordering::SeqCst), 0);
            } else {
                // SAFETY: regs.sp holds the probe's record on the live `stack`.
                unsafe { switch_in(regs_ptr, true) };
            }
            assert_eq!(ROUNDS.load(Ordering::SeqCst), round);
            assert_eq!(ENTERED_WITH.load(Ordering::SeqCst), regs_ptr as usize);
            let sp = saved_sp();
            assert!(sp.is_multiple_of(8) && sp > stack.as_ptr() as usize && sp <= top as usize - RECORD);
            let local = LOCAL_AT.load(Ordering::SeqCst);
            assert!(local > sp && local < top as usize);
        }
        // The probe stays parked in switch_out; its stack holds nothing to drop.
        drop(stack);
    }

    /// The fake return address a job's entry sees is one instruction into
    /// the trampoline's unwind entry, so that an unwinder's lookup of
    /// "return address - 2" finds it in either state (the entry path itself
    /// is checked by every job test). The trampoline's symbol is a function
    /// of the asm's state (bit 0 set in T32); the return label is a plain
    /// label (clear).
    #[test]
    fn trampoline_return_is_inside_the_trampoline() {
        let start = stackjob_trampoline as *const () as usize;
        assert_eq!(start & 1, usize::from(ASM_IS_THUMB));
        assert_eq!(stackjob_trampoline_return as *const () as usize, (start & !1) + INSN);
    }
}
