//! riscv64 psABI backend: `arch/riscv64.s` plus the two-instruction inline
//! asm that enters it from the job side. The file's header documents the
//! saved record, the stack states, the CFI and why the jumps use t1/t2.

use super::{Entry, Regs};
use core::arch::asm;
use core::mem::offset_of;

/// This target has a context-switch backend.
pub(crate) const CAPABLE: bool = true;

/// Bytes of each callee-saved fs0-fs11 register: the float ABI's FLEN (8
/// for LP64D, 4 for LP64F, 0 for LP64). build.rs tells it through the
/// `stackjob_riscv_flen` cfg, from the "d"/"f" target features where rustc
/// shows them (nightly) and from the target's ISA string otherwise: stable
/// rustc hides those two features from `cfg(target_feature)`. Under a float
/// ABI the inline asm below declares fs0-fs11 clobbered.
#[cfg(stackjob_riscv_flen = "8")]
const FLEN: usize = 8;
#[cfg(stackjob_riscv_flen = "4")]
const FLEN: usize = 4;
#[cfg(stackjob_riscv_flen = "0")]
const FLEN: usize = 0;

/// Name of the backend, for messages.
pub(crate) const BACKEND: &str = match FLEN {
    8 => "riscv64-lp64d",
    4 => "riscv64-lp64f",
    _ => "riscv64-lp64",
};

/// Size of the saved record (see the table in `arch/riscv64.s`): the resume
/// PC, s0, s1 and s2, eight bytes each.
const RECORD: usize = 32;

// The CFI escapes encode the `Regs` offsets as one SLEB128 byte each and the
// record size as a two-byte ULEB128; sp must stay 16-byte aligned.
const _: () = assert!(offset_of!(Regs, sp) < 64 && offset_of!(Regs, parent_sp) < 64);
const _: () = assert!(RECORD.is_multiple_of(16) && RECORD < 16384);

backend_asm!(
    include_str!("../../arch/riscv64.s"),
    SP = const offset_of!(Regs, sp),
    PARENT_SP = const offset_of!(Regs, parent_sp),
    RECORD = const RECORD,
    RESUME_PC = const RESUME_PC,
);

/// `asm!` with every callee-saved register the asm does not save itself
/// declared clobbered: s3-s11, fs0-fs11 under a float ABI, and through
/// clobber_abi("C") everything caller-saved. The compiler then keeps
/// nothing live in them across a switch and saves the ones it needs.
#[cfg(not(stackjob_riscv_flen = "0"))]
macro_rules! asm_clobbering_callee_saved {
    ($($args:tt)*) => {
        asm!(
            $($args)*,
            out("s3") _, out("s4") _, out("s5") _, out("s6") _, out("s7") _,
            out("s8") _, out("s9") _, out("s10") _, out("s11") _,
            out("fs0") _, out("fs1") _, out("fs2") _, out("fs3") _,
            out("fs4") _, out("fs5") _, out("fs6") _, out("fs7") _,
            out("fs8") _, out("fs9") _, out("fs10") _, out("fs11") _,
            clobber_abi("C"),
        )
    };
}
#[cfg(stackjob_riscv_flen = "0")]
macro_rules! asm_clobbering_callee_saved {
    ($($args:tt)*) => {
        asm!(
            $($args)*,
            out("s3") _, out("s4") _, out("s5") _, out("s6") _, out("s7") _,
            out("s8") _, out("s9") _, out("s10") _, out("s11") _,
            clobber_abi("C"),
        )
    };
}

unsafe extern "C" {
    // Called only from the inline asm in `enter` and `switch_in`.
    fn stackjob_enter(regs: *mut Regs, top: *mut u8, entry: Entry);
    fn stackjob_switch_in(regs: *mut Regs);
    // Not callable: a jump target with its own register convention.
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
/// fcsr is thread state on this ABI, so the job runs with its resumer's.
///
/// # Safety
/// `top` must be 16-byte aligned, with writable memory below it that no
/// running code uses (the stack's usable part); `regs` must stay valid for
/// as long as the job runs and this thread must own it; `entry` must never
/// return (it ends in [`exit`]).
#[inline(always)]
pub(crate) unsafe fn enter(regs: *mut Regs, top: *mut u8, entry: Entry, _fp_env: bool) {
    debug_assert_eq!(top as usize % 16, 0);
    // SAFETY: as in `switch_in`: the asm saves the resumer's s0, s1, s2 and
    // return address in its record and returns to it when the job switches
    // out; every other callee-saved register is declared clobbered (see the
    // macro). It writes nothing below `top`: the job's first frame is
    // registers only (sp = top, ra, s0, s1, a0), and it enters `entry` with
    // `jr a2`, a plain jump. `call` links through ra, which the
    // return-address stack pairs with switch_out's `ret`.
    unsafe {
        asm_clobbering_callee_saved!(
            "call {enter}",
            enter = sym stackjob_enter,
            in("a0") regs, in("a1") top, in("a2") entry
        )
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
    // SAFETY: the asm saves s0, s1, s2 and the return address (see the
    // record table) and returns to it; every other callee-saved register is
    // declared clobbered (see the macro). `call` links through ra, which the
    // return-address stack pairs with switch_out's `ret`.
    unsafe { asm_clobbering_callee_saved!("call {switch_in}", switch_in = sym stackjob_switch_in, in("a0") regs) }
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
    // SAFETY: stackjob_switch_out saves s0, s1, s2, sp and the resume PC
    // (t1); every other callee-saved register and everything caller-saved
    // (ra, t0-t6, a0-a7, ft*, fa*, vector state) is declared clobbered (see
    // the macro). The block is entered and
    // left like a call (no `nostack`), so sp is 16-byte aligned. switch_in
    // comes back with `jr t1`, a plain jump (t1 is not a link register, so
    // the return-address stack is untouched). `jump` uses t2 as its scratch
    // register and reaches the whole address space, unlike a bare `j`.
    // The CANCEL_PATH bytes just before the resume label (never executed on
    // the way to it) are the cancel path: a `j` to the label block (in this
    // function, well within its reach), where the unwind starts as an
    // ordinary Rust call; uncompressed, so that its size never changes.
    unsafe {
        asm_clobbering_callee_saved!(
            "lla t1, 2f",
            "jump {switch_out}, t2",
            ".option push",
            ".option norvc",
            "5:",
            "j {cancel}",
            ".option pop",
            "2:",
            ".if 2b - 5b - {cancel_path}",
            ".error \"CANCEL_PATH is not the size of the cancel path before the resume label\"",
            ".endif",
            switch_out = sym stackjob_switch_out,
            cancel = label { return true },
            cancel_path = const CANCEL_PATH,
            in("a0") regs
        );
    }
    false
}

/// Where a switched-out job's resume PC sits in its record (regs.sp + 0).
pub(crate) const RESUME_PC: usize = 0;

/// The size of the cancel path that precedes every resume label in
/// [`switch_out`]: one uncompressed `j`.
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
    // and never comes back here (t2 is the `jump` scratch register).
    unsafe { asm!("jump {exit}, t2", exit = sym stackjob_switch_exit, in("a0") regs, options(noreturn)) }
}

backend_stack_pointer!("mv {}, sp");

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
            // SAFETY: we run on the probe stack, entered by enter.
            unsafe { switch_out(regs, true) };
        }
    }

    /// The asm and the Rust side agree on the entry: a new job started by
    /// `enter` must reach our entry with our `regs`, and every later round
    /// trip (resume label, `jr t1`, `ret`) must come back here.
    #[test]
    fn enter_and_round_trips() {
        let mut stack = vec![0u128; 4096]; // 64 KiB, 16-byte aligned
        // SAFETY: one past the end of the allocation.
        let top = unsafe { stack.as_mut_ptr().add(stack.len()) }.cast::<u8>();
        let mut regs = Regs::new();
        let regs_ptr = &raw mut regs;
        // SAFETY: `regs` is live and only the probe (not running) shares it.
        let saved_sp = || unsafe { (*regs_ptr).sp } as usize;
        for round in 1..=3 {
            if round == 1 {
                // SAFETY: `stack` is writable below the aligned top and no
                // running code uses it; the probe never returns.
                unsafe { enter(regs_ptr, top, probe, true) };
            } else {
                // SAFETY: regs.sp holds the probe's record on the live `stack`.
                unsafe { switch_in(regs_ptr, true) };
            }
            assert_eq!(ROUNDS.load(Ordering::SeqCst), round);
            assert_eq!(ENTERED_WITH.load(Ordering::SeqCst), regs_ptr as usize);
            let sp = saved_sp();
            assert!(sp.is_multiple_of(16) && sp > stack.as_ptr() as usize && sp + RECORD <= top as usize);
        }
        // The probe stays parked in switch_out; its stack holds nothing to drop.
        drop(stack);
    }

    /// The fake return address a job's entry sees is one instruction into
    /// the trampoline's FDE, so that an unwinder's "return address - 1"
    /// finds it.
    #[test]
    fn trampoline_return_is_inside_the_trampoline() {
        let start = stackjob_trampoline as *const () as usize;
        let ret = stackjob_trampoline_return as *const () as usize;
        assert!(ret == start + 2 || ret == start + 4, "{start:#x} {ret:#x}");
    }
}
