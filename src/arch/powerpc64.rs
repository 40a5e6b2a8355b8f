//! powerpc64 ELFv2 backend: `arch/powerpc64.s` plus the four-instruction
//! inline asm that enters it from the job side. The file's header documents
//! the saved record, the stack states (the new job's first frame
//! included), the TOC rule and the CFI.

use super::{Entry, Regs};
use core::arch::asm;
use core::mem::offset_of;

/// This target has a context-switch backend.
pub(crate) const CAPABLE: bool = true;

/// Name of the backend, for messages.
pub(crate) const BACKEND: &str = "powerpc64-elfv2";

/// Size of the saved record (see the table in `arch/powerpc64.s`): the back
/// chain, VRSAVE, the resume PC, r2, r30 and r31, eight bytes each. A
/// multiple of 16, so r1 stays 16-byte aligned while a record is pushed or
/// popped.
const RECORD: usize = 48;
// The CFI escapes encode the `Regs` offsets as one SLEB128 byte each and the
// record size as one ULEB128 byte; the asm uses them as `ld`/`std`
// displacements (multiples of 4).
const _: () = assert!(offset_of!(Regs, sp) < 64 && offset_of!(Regs, parent_sp) < 64 && RECORD < 128);
const _: () = assert!(RECORD.is_multiple_of(16));

backend_asm!(
    include_str!("../../arch/powerpc64.s"),
    SP = const offset_of!(Regs, sp),
    PARENT_SP = const offset_of!(Regs, parent_sp),
    RECORD = const RECORD,
    RESUME_PC = const RESUME_PC,
);

/// `asm!` with every nonvolatile register the asm does not save itself
/// declared clobbered: r14-r29, f14-f31, v20-v31, cr2-cr4, and through
/// clobber_abi("C") everything volatile (r0, r3-r12, f0-f13, v0-v19, cr0,
/// cr1, cr5-cr7, LR, CTR, XER). The compiler then keeps nothing live in them
/// across a switch and saves the ones it needs.
macro_rules! asm_clobbering_callee_saved {
    ($($args:tt)*) => {
        asm!(
            $($args)*,
            out("r14") _, out("r15") _, out("r16") _, out("r17") _, out("r18") _,
            out("r19") _, out("r20") _, out("r21") _, out("r22") _, out("r23") _,
            out("r24") _, out("r25") _, out("r26") _, out("r27") _, out("r28") _,
            out("r29") _,
            out("f14") _, out("f15") _, out("f16") _, out("f17") _, out("f18") _,
            out("f19") _, out("f20") _, out("f21") _, out("f22") _, out("f23") _,
            out("f24") _, out("f25") _, out("f26") _, out("f27") _, out("f28") _,
            out("f29") _, out("f30") _, out("f31") _,
            out("v20") _, out("v21") _, out("v22") _, out("v23") _, out("v24") _,
            out("v25") _, out("v26") _, out("v27") _, out("v28") _, out("v29") _,
            out("v30") _, out("v31") _,
            out("cr2") _, out("cr3") _, out("cr4") _,
            clobber_abi("C"),
        )
    };
}

unsafe extern "C" {
    // Called only from the inline asm in `enter` and `switch_in`
    // (stackjob_enter takes entry in r12 and its fake return address in r6:
    // see arch/powerpc64.s).
    fn stackjob_enter(regs: *mut Regs, top: *mut u8, entry: Entry);
    fn stackjob_switch_in(regs: *mut Regs);
    // Not callable: branch targets with their own register convention.
    fn stackjob_switch_out();
    fn stackjob_switch_exit();
    // Not callable: the unwind anchor (named here only for the test below),
    // and the fake return address of every job's entry function (one
    // instruction into the anchor's FDE), which `enter` hands stackjob_enter.
    #[cfg(test)]
    fn stackjob_trampoline();
    fn stackjob_trampoline_return();
}

/// Starts a new job on the stack whose first frame ends at `top`: runs
/// `entry(regs)` there until the job switches out. `_fp_env` is ignored:
/// FPSCR and VSCR are limited-access registers under ELFv2 (their control
/// fields change only through functions whose purpose is to change them),
/// so a job runs with the FPSCR of the thread that resumes it, and a new
/// job inherits it.
///
/// # Safety
/// `top` must be 16-byte aligned, with writable memory below it that no
/// running code uses (the stack's usable part); `regs` must stay valid for
/// as long as the job runs and this thread must own it; `entry` must never
/// return (it ends in [`exit`]).
#[inline(always)]
pub(crate) unsafe fn enter(regs: *mut Regs, top: *mut u8, entry: Entry, _fp_env: bool) {
    debug_assert_eq!(top as usize % 16, 0);
    let fake_return = stackjob_trampoline_return as *const () as usize;
    // SAFETY: as in `switch_in`: the asm saves the resumer's r2, r30, r31,
    // VRSAVE and return address in its record and returns to it when the
    // job switches out; every other nonvolatile register is declared
    // clobbered (see the macro). Per the contract it may write the back
    // chain at top - 32, the only store below `top`, and the entry function
    // the rest of that 32-byte header (its caller's frame); it enters
    // `entry` with `bctr` (r12 = entry, its global entry point), which
    // leaves the link stack to pair this `bl` with switch_out's `blr`.
    unsafe {
        asm_clobbering_callee_saved!(
            "bl {enter}",
            enter = sym stackjob_enter,
            in("r3") regs, in("r4") top, in("r6") fake_return, in("r12") entry
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
    // SAFETY: the asm saves r2, r30, r31, VRSAVE and the return address (see
    // the record table) and returns to it; every other nonvolatile register
    // is declared clobbered (see the macro). A direct `bl`, which the link
    // stack pairs with switch_out's `blr`; no TOC-restoring `nop` after it:
    // the callee is in this module and restores r2 itself.
    unsafe { asm_clobbering_callee_saved!("bl {switch_in}", switch_in = sym stackjob_switch_in, in("r3") regs) }
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
    // SAFETY: stackjob_switch_out saves r2, r30, r31, VRSAVE, r1 and the
    // resume PC (r4); every other nonvolatile register and everything
    // volatile (LR and r4 included) is declared clobbered (see the macro).
    // `bcl 20,31,$+4` reads the PC without a link-stack push; the `addi`
    // makes it the resume label. The block is entered and left like a call
    // (no `nostack`), so nothing lives below r1. The CANCEL_PATH bytes just
    // before the resume label (never executed on the way to it) are the
    // cancel path: a `b` to the label block, where the unwind starts as an
    // ordinary Rust call.
    unsafe {
        asm_clobbering_callee_saved!(
            "bcl 20, 31, 3f",
            "3:",
            "mflr 4",
            "addi 4, 4, 2f - 3b",
            "b {switch_out}",
            "5:",
            "b {cancel}",
            "2:",
            ".if 2b - 5b - {cancel_path}",
            ".error \"CANCEL_PATH is not the size of the cancel path before the resume label\"",
            ".endif",
            switch_out = sym stackjob_switch_out,
            cancel = label { return true },
            cancel_path = const CANCEL_PATH,
            in("r3") regs
        );
    }
    false
}

/// Where a switched-out job's resume PC sits in its record (regs.sp + 16).
pub(crate) const RESUME_PC: usize = 16;

/// The size of the cancel path that precedes every resume label in
/// [`switch_out`]: one `b`.
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
    unsafe { asm!("b {exit}", exit = sym stackjob_switch_exit, in("r3") regs, options(noreturn)) }
}

backend_stack_pointer!("mr {}, 1");

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

    /// A new job entered through the real asm must reach our entry (at its
    /// global entry point, so with its own TOC) with our `regs`, run on the
    /// stack below its 32-byte caller header at `top` and come back on its
    /// first switch out; every later round trip (resume label, `bctr`,
    /// `blr`) must come back here too, with the job's record on its own
    /// stack. The header's back chain is 0: the end of back-chain walks.
    #[test]
    fn enter_and_round_trips_reach_the_probe() {
        let mut stack = vec![u128::MAX; 4096]; // 64 KiB, 16-byte aligned
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
            assert!(sp.is_multiple_of(16) && sp > stack.as_ptr() as usize && sp <= top as usize - 32 - RECORD);
            let local = LOCAL_AT.load(Ordering::SeqCst);
            assert!(local > sp && local < top as usize - 32);
            // SAFETY: the header's first doubleword lies inside `stack`.
            let back_chain = unsafe { top.sub(32).cast::<usize>().read() };
            assert_eq!(back_chain, 0, "the outermost frame's back chain ends the chain");
        }
        // The probe stays parked in switch_out; its stack holds nothing to drop.
        drop(stack);
    }

    /// The fake return address a job's entry sees is one instruction into
    /// the trampoline's FDE, so that an unwinder's "return address - 1"
    /// finds it.
    #[test]
    fn trampoline_return_is_inside_the_trampoline() {
        assert_eq!(stackjob_trampoline_return as *const () as usize, stackjob_trampoline as *const () as usize + 4);
    }
}
