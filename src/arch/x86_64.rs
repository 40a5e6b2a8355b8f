//! x86_64 System V backend: `arch/x86_64.s` plus the two-instruction inline
//! asm that enters it from the job side. The file's header documents the
//! saved record, the stack states and the CFI.

use super::{Entry, Regs};
use core::arch::asm;
use core::mem::offset_of;

/// This target has a context-switch backend.
pub(crate) const CAPABLE: bool = true;

/// Name of the backend, for messages.
pub(crate) const BACKEND: &str = "x86_64-sysv";

/// Size of the saved record (see the table in `arch/x86_64.s`).
const RECORD: usize = 32;
/// A FRESH record plus the fake return address above it.
const FRESH: usize = RECORD + 8;
/// MXCSR bits 6..=15 are control bits (DAZ, exception masks, rounding, FZ);
/// bits 0..=5 are the caller-saved exception flags.
const MXCSR_CONTROL: u32 = 0xffc0;

// Record offsets, named once (the asm spells the same layout in its table;
// `record_layout_matches_asm` below checks the two against each other).
// (+0 the x87 control word and +4 MXCSR: written and read by the asm only.)
const REC_RBX: usize = 8;
const REC_RBP: usize = 16;
const REC_PC: usize = 24;

// The CFI escapes encode these offsets as one SLEB128 byte each.
const _: () = assert!(offset_of!(Regs, sp) < 64 && offset_of!(Regs, parent_sp) < 64);

backend_asm!(
    include_str!("../../arch/x86-fpenv.s"),
    include_str!("../../arch/x86_64.s"),
    SP = const offset_of!(Regs, sp),
    PARENT_SP = const offset_of!(Regs, parent_sp),
    MXCSR_CONTROL = const MXCSR_CONTROL,
);

unsafe extern "sysv64" {
    // Called only from the inline asm in `switch_in`.
    fn stackjob_switch_in_fpenv(regs: *mut Regs);
    fn stackjob_switch_in_fresh_fpenv(regs: *mut Regs);
    fn stackjob_switch_in_shared(regs: *mut Regs);
    // Not callable: jump targets with their own register convention.
    fn stackjob_switch_out_fpenv();
    fn stackjob_switch_out_shared();
    fn stackjob_switch_exit_fpenv();
    fn stackjob_switch_exit_shared();
    // Not callable: the unwind anchor (named here only for the layout test),
    // and the fake return address of every job's entry function (one byte
    // into the anchor's FDE).
    #[cfg(test)]
    fn stackjob_trampoline();
    fn stackjob_trampoline_return();
}

/// Writes a FRESH record just below `top` and points `regs.sp` at it, so
/// that [`switch_in_fresh`] jumps straight into `entry(regs)` on this stack
/// (once per job: five stores; the control-word bytes stay unwritten, the
/// new job inherits the words in force).
///
/// # Safety
/// `top` must be 16-byte aligned, the `FRESH` bytes below it must be
/// writable memory of a stack that no running code uses, and `regs` must stay
/// valid for as long as the stack is switched to.
#[inline(always)]
pub(crate) unsafe fn prepare(top: *mut u8, regs: *mut Regs, entry: Entry) {
    debug_assert_eq!(top as usize % 16, 0);
    // SAFETY: the caller guarantees FRESH writable bytes below `top`.
    unsafe {
        let rec = top.sub(FRESH);
        // switch_in pops the record and `jmp`s to its PC with rdi = regs
        // (its own argument): the entry's first instruction then sees rsp =
        // top - 8, a multiple of 16 plus 8 as after a call, and the fake
        // return address there (for unwinders; it is never returned to).
        rec.add(REC_PC).cast::<usize>().write(entry as *const () as usize);
        rec.add(REC_RBX).cast::<*mut Regs>().write(regs);
        rec.add(REC_RBP).cast::<usize>().write(0);
        top.sub(8).cast::<usize>().write(stackjob_trampoline_return as *const () as usize);
        (*regs).sp = rec;
    }
}

/// The inline asm that calls one of the `stackjob_switch_in_*` entries
/// (see the SAFETY comment in [`switch_in`]).
macro_rules! call_switch_in {
    ($regs:expr, $target:path) => {
        asm!(
            "call {switch_in}",
            switch_in = sym $target,
            in("rdi") $regs,
            out("r12") _, out("r13") _, out("r14") _, out("r15") _,
            clobber_abi("sysv64"),
        )
    };
}

/// Runs the job whose state is in `regs` until it switches out. With
/// `fp_env`, each side keeps its own MXCSR control bits and x87 control
/// word; without, they are left alone (shared).
///
/// # Safety
/// `regs.sp` must hold the saved record of a switched-out job on a live
/// stack, this thread must be the one that owns the job, and `fp_env` must
/// be what the job passes to [`switch_out`] (the variants pair up).
#[inline(always)]
pub(crate) unsafe fn switch_in(regs: *mut Regs, fp_env: bool) {
    // SAFETY: the asm saves rbx, rbp, the resume PC (and the control words)
    // (see the record table); r12-r15 are declared clobbered here, so the
    // compiler keeps nothing live in them across the switch and saves the
    // ones it needs itself; every caller-saved register is clobbered by
    // clobber_abi. The block is a call (no `nostack`), so nothing lives in a
    // red zone below rsp. A direct `call` from inline asm rather than a call
    // through the extern declaration: in a PIE the latter goes through the
    // GOT (an indirect call) for no benefit.
    unsafe {
        if fp_env {
            call_switch_in!(regs, stackjob_switch_in_fpenv);
        } else {
            call_switch_in!(regs, stackjob_switch_in_shared);
        }
    }
}

/// [`switch_in`] for a job laid by [`prepare`] and never run: the new job
/// starts with the caller's floating-point control state, which the entry
/// leaves in force instead of loading the record's (the record has none).
///
/// # Safety
/// As for [`switch_in`], and `regs.sp` must be the FRESH record of
/// [`prepare`].
#[inline(always)]
pub(crate) unsafe fn switch_in_fresh(regs: *mut Regs, fp_env: bool) {
    // SAFETY: as in `switch_in`; the fresh entry saves the same resumer
    // record (control words included, for the job's first switch out).
    unsafe {
        if fp_env {
            call_switch_in!(regs, stackjob_switch_in_fresh_fpenv);
        } else {
            call_switch_in!(regs, stackjob_switch_in_shared);
        }
    }
}

/// Returns control to whoever last resumed the job owning `regs`, and
/// returns when the job is resumed again. `fp_env` as for [`switch_in`].
///
/// # Safety
/// Must run on the job stack described by `regs`, while that job is the one
/// running (its `parent_sp` set by the `switch_in` that entered it, with the
/// same `fp_env`).
#[inline(always)]
pub(crate) unsafe fn switch_out(regs: *mut Regs, fp_env: bool) {
    // SAFETY: stackjob_switch_out_* saves rbx, rbp, the resume PC (rcx) and
    // (fpenv) the control words; r12-r15 and every caller-saved register
    // are declared clobbered, so the compiler saves what it needs of them
    // itself. The block is entered and left like a call (no `nostack`), so
    // no red-zone data lives below rsp. The resume label has the IBT landing
    // pad because switch_in reaches it with `jmp rcx`.
    unsafe {
        macro_rules! jump {
            ($target:path) => {
                asm!(
                    "lea rcx, [rip + 2f]",
                    "jmp {switch_out}",
                    "2:",
                    "endbr64",
                    switch_out = sym $target,
                    in("rdi") regs,
                    out("r12") _, out("r13") _, out("r14") _, out("r15") _,
                    clobber_abi("sysv64"),
                )
            };
        }
        if fp_env {
            jump!(stackjob_switch_out_fpenv);
        } else {
            jump!(stackjob_switch_out_shared);
        }
    }
}

/// Leaves a job whose body is done for good: restores whoever last resumed
/// it, as [`switch_out`] does, without saving anything of the job.
///
/// # Safety
/// As for [`switch_out`]; nothing on the job stack may be used again until
/// [`prepare`] lays a new record on it.
#[inline(always)]
pub(crate) unsafe fn exit(regs: *mut Regs, fp_env: bool) -> ! {
    // SAFETY: the asm only reads regs.parent_sp and the resumer's record,
    // and never comes back here.
    unsafe {
        if fp_env {
            asm!("jmp {exit}", exit = sym stackjob_switch_exit_fpenv, in("rdi") regs, options(noreturn));
        } else {
            asm!("jmp {exit}", exit = sym stackjob_switch_exit_shared, in("rdi") regs, options(noreturn));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The offsets named in Rust agree with the record the asm builds: a
    /// fresh stack popped by the asm must enter the trampoline with our
    /// registers. Checked indirectly by every job test; here directly.
    #[test]
    fn record_layout_matches_asm() {
        let mut buf = [0u64; 16];
        let top = unsafe { (buf.as_mut_ptr() as *mut u8).add(128) };
        let top = (top as usize & !15) as *mut u8;
        let mut regs = Regs::new();
        let regs_ptr: *mut Regs = &mut regs;
        unsafe extern "C" fn never(_: *mut Regs) -> ! {
            unreachable!()
        }
        // SAFETY: `buf` provides RECORD writable bytes below the aligned top.
        unsafe { prepare(top, regs_ptr, never) };
        let rec = regs.sp;
        assert_eq!(rec as usize, top as usize - FRESH);
        // SAFETY: `rec` points at the 32-byte record inside `buf`.
        let word = |off: usize| unsafe { rec.add(off).cast::<usize>().read() };
        assert_eq!(word(REC_PC), never as *const () as usize);
        assert_eq!(word(REC_RBX), regs_ptr as usize);
        assert_eq!(word(REC_RBP), 0);
        assert_eq!(word(RECORD), stackjob_trampoline_return as *const () as usize);
        // One byte into the anchor, so that "return address - 1" finds its FDE.
        assert_eq!(stackjob_trampoline_return as *const () as usize, stackjob_trampoline as *const () as usize + 1);
    }
}
