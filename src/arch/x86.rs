//! 32-bit x86 (i686) System V backend: `arch/x86.s` plus the
//! four-instruction inline asm that enters it from the job side. The file's
//! header documents the saved record, the stack states (the new job's
//! first frame included) and the CFI; the control words are kept per side
//! exactly as on x86_64.

use super::{Entry, Regs};
use core::arch::asm;
use core::mem::offset_of;

/// This target has a context-switch backend.
pub(crate) const CAPABLE: bool = true;

/// Name of the backend, for messages.
pub(crate) const BACKEND: &str = "x86-sysv-i386";

/// Size of the saved record (see the table in `arch/x86.s`).
const RECORD: usize = 28;
/// MXCSR bits 6..=15 are control bits (DAZ, exception masks, rounding, FZ);
/// bits 0..=5 are the caller-saved exception flags.
const MXCSR_CONTROL: u32 = 0xffc0;

// The CFI escapes encode these offsets as one SLEB128 byte each, and the
// record size as one ULEB128 byte.
const _: () = assert!(offset_of!(Regs, sp) < 64 && offset_of!(Regs, parent_sp) < 64 && RECORD < 128);

backend_asm!(
    include_str!("../../arch/x86-fpenv.s"),
    include_str!("../../arch/x86.s"),
    SP = const offset_of!(Regs, sp),
    PARENT_SP = const offset_of!(Regs, parent_sp),
    MXCSR_CONTROL = const MXCSR_CONTROL,
    RECORD = const RECORD,
    RESUME_PC = const RESUME_PC,
);

unsafe extern "C" {
    // Called only from the inline asm in `enter` and `switch_in`, with
    // arguments in registers (eax, edx, ecx, edi: see arch/x86.s), not
    // cdecl's stack slots.
    fn stackjob_enter_fpenv(regs: *mut Regs, top: *mut u8, entry: Entry);
    fn stackjob_enter_shared(regs: *mut Regs, top: *mut u8, entry: Entry);
    fn stackjob_switch_in_fpenv(regs: *mut Regs);
    fn stackjob_switch_in_shared(regs: *mut Regs);
    // Not callable: jump targets with their own register convention.
    fn stackjob_switch_out_fpenv();
    fn stackjob_switch_out_shared();
    fn stackjob_switch_exit_fpenv();
    fn stackjob_switch_exit_shared();
    // Not callable: the unwind anchor (named here only for the test below),
    // and the fake return address of every job's entry function (one byte
    // into the anchor's FDE), which `enter` hands stackjob_enter.
    #[cfg(test)]
    fn stackjob_trampoline();
    fn stackjob_trampoline_return();
}

/// `call` to one of the resumer-side entries (`stackjob_enter_*`,
/// `stackjob_switch_in_*`) with the operands given (regs in eax):
/// the asm saves every callee-saved register (ebx, esi, edi, ebp), the
/// return PC and (fpenv) the control words in the resumer's record and
/// returns to this `call` when the job switches out; everything
/// caller-saved is clobbered by clobber_abi. The block is a call (no
/// `nostack`), so esp is 16-byte aligned at it.
macro_rules! call_resumer_entry {
    ($target:path, $($operands:tt)*) => {
        asm!("call {target}", target = sym $target, $($operands)*, clobber_abi("C"))
    };
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
    let fake_return = stackjob_trampoline_return as *const () as usize;
    // SAFETY: as in `switch_in` (see the macro): the resumer's record is
    // saved and returned to when the job switches out; edi, an input, is
    // saved there too and comes back unchanged. Per the contract the asm
    // may write the 8 bytes at top - 20 (the fake return address and the
    // entry's argument) before jumping to `entry` on that stack.
    unsafe {
        if fp_env {
            call_resumer_entry!(stackjob_enter_fpenv, in("eax") regs, in("edx") top, in("ecx") entry, in("edi") fake_return);
        } else {
            call_resumer_entry!(stackjob_enter_shared, in("eax") regs, in("edx") top, in("ecx") entry, in("edi") fake_return);
        }
    }
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
    // SAFETY: see the macro; regs.sp is a switched-out job's record, which
    // the asm restores and jumps into.
    unsafe {
        if fp_env {
            call_resumer_entry!(stackjob_switch_in_fpenv, in("eax") regs);
        } else {
            call_resumer_entry!(stackjob_switch_in_shared, in("eax") regs);
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
    // SAFETY: stackjob_switch_out_* saves ebx, esi, edi, ebp, the resume PC
    // (ecx) and (fpenv) the control words; every caller-saved register is
    // declared clobbered. `call 3f; 3: pop ecx` is the i386 PIC way to read
    // the PC (its push is popped at once, so the stack is as it was), and
    // the `add` makes it the resume label: no absolute address, so no text
    // relocation in a PIE. AT&T syntax: LLVM's Intel-syntax parser does not
    // take a difference of numeric labels as an immediate. The CANCEL_PATH
    // bytes just before the resume label (never executed on the way to it)
    // are the cancel path: a `jmp rel32` (spelt out, so that its size never
    // changes) to the label block, where the unwind starts as an ordinary
    // Rust call.
    unsafe {
        macro_rules! jump {
            ($target:path) => {
                asm!(
                    "call 3f",
                    "3:",
                    "popl %ecx",
                    "addl $(2f - 3b), %ecx",
                    "jmp {switch_out}",
                    "5:",
                    ".byte 0xe9",
                    ".long {cancel} - . - 4",
                    "2:",
                    ".if 2b - 5b - {cancel_path}",
                    ".error \"CANCEL_PATH is not the size of the cancel path before the resume label\"",
                    ".endif",
                    switch_out = sym $target,
                    cancel = label { return true },
                    cancel_path = const CANCEL_PATH,
                    in("eax") regs,
                    clobber_abi("C"),
                    options(att_syntax),
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

/// Where a switched-out job's resume PC sits in its record (regs.sp + 24).
pub(crate) const RESUME_PC: usize = 24;

/// The size of the cancel path that precedes every resume label in
/// [`switch_out`]: one `jmp rel32`.
pub(crate) const CANCEL_PATH: usize = 5;

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
            asm!("jmp {exit}", exit = sym stackjob_switch_exit_fpenv, in("eax") regs, options(noreturn));
        } else {
            asm!("jmp {exit}", exit = sym stackjob_switch_exit_shared, in("eax") regs, options(noreturn));
        }
    }
}

backend_stack_pointer!("mov {}, esp");

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    static ENTERED_WITH: AtomicUsize = AtomicUsize::new(0);
    static ROUNDS: AtomicUsize = AtomicUsize::new(0);
    static LOCAL_AT: AtomicUsize = AtomicUsize::new(0);

    /// A local the compiler places at a 16-byte boundary without realigning
    /// the stack (i686 Linux code assumes esp + 4 aligned at entry): its
    /// address is aligned only if the entry's frame was.
    #[repr(align(16))]
    struct Aligned(#[allow(dead_code)] u8);

    /// Parks on every round: counts, notes where its aligned local is, then
    /// switches out to the test.
    unsafe extern "C" fn probe(regs: *mut Regs) -> ! {
        ENTERED_WITH.store(regs as usize, Ordering::SeqCst);
        loop {
            let local = Aligned(0);
            LOCAL_AT.store(core::hint::black_box(&raw const local) as usize, Ordering::SeqCst);
            ROUNDS.fetch_add(1, Ordering::SeqCst);
            // SAFETY: we run on the probe stack, entered by `enter`.
            unsafe { switch_out(regs, true) };
        }
    }

    /// A new job entered through the real asm must find our `regs` as its
    /// stack argument, run below `top` on a 16-byte aligned frame and come
    /// back on its first switch out; every later round trip (resume label,
    /// `jmp ecx`, `ret`) must come back here too, with the job's record on
    /// its own stack.
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
            assert!(sp > stack.as_ptr() as usize && sp <= top as usize - RECORD);
            let local = LOCAL_AT.load(Ordering::SeqCst);
            assert!(local > sp && local < top as usize);
            assert_eq!(local % 16, 0, "the entry's frame is 16-byte aligned (esp + 4 at its first instruction)");
        }
        // The probe stays parked in switch_out; its stack holds nothing to drop.
        drop(stack);
    }

    /// The fake return address a job's entry sees is one byte into the
    /// trampoline's FDE, so that an unwinder's "return address - 1" finds it.
    #[test]
    fn trampoline_return_is_inside_the_trampoline() {
        assert_eq!(stackjob_trampoline_return as *const () as usize, stackjob_trampoline as *const () as usize + 1);
    }
}
