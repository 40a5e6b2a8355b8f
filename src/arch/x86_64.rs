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

/// MXCSR bits 6..=15 are control bits (DAZ, exception masks, rounding, FZ);
/// bits 0..=5 are the caller-saved exception flags.
const MXCSR_CONTROL: u32 = 0xffc0;

// The CFI escapes encode these offsets as one SLEB128 byte each.
const _: () = assert!(offset_of!(Regs, sp) < 64 && offset_of!(Regs, parent_sp) < 64);

backend_asm!(
    include_str!("../../arch/x86-fpenv.s"),
    include_str!("../../arch/x86_64.s"),
    SP = const offset_of!(Regs, sp),
    PARENT_SP = const offset_of!(Regs, parent_sp),
    MXCSR_CONTROL = const MXCSR_CONTROL,
    RESUME_PC = const RESUME_PC,
);

unsafe extern "sysv64" {
    // Called only from the inline asm in `switch_in`.
    fn stackjob_switch_in_fpenv(regs: *mut Regs);
    fn stackjob_enter_fpenv(regs: *mut Regs, top: *mut u8, entry: Entry);
    fn stackjob_enter_shared(regs: *mut Regs, top: *mut u8, entry: Entry);
    fn stackjob_switch_in_shared(regs: *mut Regs);
    // Not callable: jump targets with their own register convention.
    fn stackjob_switch_out_fpenv();
    fn stackjob_switch_out_shared();
    fn stackjob_switch_exit_fpenv();
    fn stackjob_switch_exit_shared();
    // Not callable: the unwind anchor and the fake return address of every
    // job's entry function (one byte into the anchor's FDE), which
    // stackjob_enter stores; named here only for the test below.
    #[cfg(test)]
    fn stackjob_trampoline();
    #[cfg(test)]
    fn stackjob_trampoline_return();
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

/// Starts a new job on the stack whose first frame ends at `top`: runs
/// `entry(regs)` there until the job switches out. The job starts with the
/// caller's floating-point control state, which the entry leaves in force
/// (with `fp_env` it stores the caller's words for the job's first switch
/// out to compare with).
///
/// # Safety
/// `top` must be 16-byte aligned, with writable memory below it that no
/// running code uses (the stack's usable part); `regs` must stay valid for
/// as long as the job runs and this thread must own it; `entry` must never
/// return (it ends in [`exit`], with this `fp_env`).
#[inline(always)]
pub(crate) unsafe fn enter(regs: *mut Regs, top: *mut u8, entry: Entry, fp_env: bool) {
    debug_assert_eq!(top as usize % 16, 0);
    // SAFETY: as in `switch_in`: the asm saves the resumer's rbx, rbp,
    // return PC (and control words) in its record, r12-r15 and every
    // caller-saved register are declared clobbered. It writes only the
    // fake return address just below `top` before jumping to `entry`.
    unsafe {
        macro_rules! call_enter {
            ($target:path) => {
                asm!(
                    "call {enter}",
                    enter = sym $target,
                    in("rdi") regs, in("rsi") top, in("rdx") entry,
                    out("r12") _, out("r13") _, out("r14") _, out("r15") _,
                    clobber_abi("sysv64"),
                )
            };
        }
        if fp_env {
            call_enter!(stackjob_enter_fpenv);
        } else {
            call_enter!(stackjob_enter_shared);
        }
    }
}

/// Returns control to whoever last resumed the job owning `regs`, and
/// returns when the job is resumed again: `false` at its resume label,
/// `true` at its cancel path (the resumer called
/// [`unwind_on_resume`](super::unwind_on_resume) before resuming it).
/// `fp_env` as for [`switch_in`].
///
/// # Safety
/// Must run on the job stack described by `regs`, while that job is the one
/// running (its `parent_sp` set by the `switch_in` that entered it, with the
/// same `fp_env`).
#[inline(always)]
pub(crate) unsafe fn switch_out(regs: *mut Regs, fp_env: bool) -> bool {
    // SAFETY: stackjob_switch_out_* saves rbx, rbp, the resume PC (rcx) and
    // (fpenv) the control words; r12-r15 and every caller-saved register
    // are declared clobbered, so the compiler saves what it needs of them
    // itself. The block is entered and left like a call (no `nostack`), so
    // no red-zone data lives below rsp. The resume label has the IBT landing
    // pad because switch_in reaches it with `jmp rcx`. The CANCEL_PATH bytes
    // just before it (never executed on the way to the label) are the
    // cancel path: a landing pad and a `jmp rel32` (spelt out, so that its
    // size never changes) to the label block, where the unwind starts as an
    // ordinary Rust call.
    unsafe {
        macro_rules! jump {
            ($target:path) => {
                asm!(
                    "lea rcx, [rip + 2f]",
                    "jmp {switch_out}",
                    "5:",
                    "endbr64",
                    ".byte 0xe9",
                    ".long {cancel} - . - 4",
                    "2:",
                    ".if 2b - 5b - {cancel_path}",
                    ".error \"CANCEL_PATH is not the size of the cancel path before the resume label\"",
                    ".endif",
                    "endbr64",
                    switch_out = sym $target,
                    cancel = label { return true },
                    cancel_path = const CANCEL_PATH,
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
    false
}

/// Where a switched-out job's resume PC sits in its record (regs.sp + 16).
pub(crate) const RESUME_PC: usize = 16;

/// The size of the cancel path that precedes every resume label in
/// [`switch_out`]: `endbr64` (4 bytes) and `jmp rel32` (5).
pub(crate) const CANCEL_PATH: usize = 9;

/// Leaves a job whose body is done for good: restores whoever last resumed
/// it, as [`switch_out`] does, without saving anything of the job.
///
/// # Safety
/// As for [`switch_out`]; nothing on the job stack may be used again until
/// [`enter`] starts a new job on it.
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

backend_stack_pointer!("mov {}, rsp");

#[cfg(test)]
mod tests {
    use super::*;

    /// The fake return address a job's entry sees is one byte into the
    /// trampoline's FDE, so that an unwinder's "return address - 1" finds
    /// it (the entry path itself is checked by every job test).
    #[test]
    fn trampoline_return_is_inside_the_trampoline() {
        assert_eq!(stackjob_trampoline_return as *const () as usize, stackjob_trampoline as *const () as usize + 1);
    }
}
