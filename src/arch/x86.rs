//! 32-bit x86 (i686) System V backend: `arch/x86.s` plus the
//! four-instruction inline asm that enters it from the job side. The file's
//! header documents the saved record, the stack states and the CFI; the
//! control words are kept per side exactly as on x86_64.

use super::{Entry, Regs};
use core::arch::asm;
use core::mem::offset_of;

/// This target has a context-switch backend.
pub(crate) const CAPABLE: bool = true;

/// Name of the backend, for messages.
pub(crate) const BACKEND: &str = "x86-sysv-i386";

/// Size of the saved record (see the table in `arch/x86.s`).
const RECORD: usize = 28;
/// A FRESH record plus, above it, the entry function's fake return address,
/// its argument and the padding that puts that argument on a 16-byte
/// boundary (esp + 4 aligned at the entry's first instruction).
const FRESH: usize = RECORD + 20;
/// MXCSR bits 6..=15 are control bits (DAZ, exception masks, rounding, FZ);
/// bits 0..=5 are the caller-saved exception flags.
const MXCSR_CONTROL: u32 = 0xffc0;

// Record offsets, named once (the asm spells the same layout in its table;
// `record_layout_matches_asm` below runs the asm over a record laid here).
const REC_FCW: usize = 0;
const REC_MXCSR: usize = 4;
const REC_EBX: usize = 8;
const REC_ESI: usize = 12;
const REC_EDI: usize = 16;
const REC_EBP: usize = 20;
const REC_PC: usize = 24;

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
);

unsafe extern "C" {
    // Called only from the inline asm in `switch_in`.
    fn stackjob_switch_in_fpenv(regs: *mut Regs);
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
/// [`switch_in_fresh`] jumps straight into `entry(regs)` on this stack
/// (once per job: seven stores; the control-word bytes are
/// [`inherit_fp_env`]'s).
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
        // switch_in pops the record and `jmp`s to its PC: the entry's first
        // instruction then sees esp = top - 20 holding the fake return
        // address (for unwinders; never returned to) and its cdecl argument
        // at esp + 4 = top - 16, 16-byte aligned as after a call.
        rec.add(REC_PC).cast::<usize>().write(entry as *const () as usize);
        rec.add(REC_EBX).cast::<*mut Regs>().write(regs);
        rec.add(REC_ESI).cast::<usize>().write(0);
        rec.add(REC_EDI).cast::<usize>().write(0);
        rec.add(REC_EBP).cast::<usize>().write(0);
        rec.add(RECORD).cast::<usize>().write(stackjob_trampoline_return as *const () as usize);
        rec.add(RECORD + 4).cast::<*mut Regs>().write(regs);
        (*regs).sp = rec;
    }
}

/// Copies the caller's MXCSR control bits and x87 control word into the
/// job's saved record, so a job starts with the floating-point control
/// state of the code that starts it (like a function call would), never
/// with a previous job's.
///
/// # Safety
/// `regs.sp` must point at the saved record of a switched-out job.
#[inline(always)]
unsafe fn inherit_fp_env(regs: *mut Regs) {
    // SAFETY: the record's control-word fields are writable bytes at
    // regs.sp + REC_FCW and regs.sp + REC_MXCSR.
    unsafe {
        let p = (*regs).sp;
        asm!(
            "stmxcsr dword ptr [{p} + {mxcsr}]",
            "fnstcw word ptr [{p} + {fcw}]",
            p = in(reg) p,
            mxcsr = const REC_MXCSR,
            fcw = const REC_FCW,
            options(nostack, preserves_flags),
        );
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
    // SAFETY: the asm saves every callee-saved register (ebx, esi, edi,
    // ebp), the resume PC and (fpenv) the control words, and returns to the
    // return address of this `call`; everything caller-saved is clobbered by
    // clobber_abi. The block is a call (no `nostack`), so esp is 16-byte
    // aligned at it.
    unsafe {
        macro_rules! call {
            ($target:path) => {
                asm!("call {switch_in}", switch_in = sym $target, in("eax") regs, clobber_abi("C"))
            };
        }
        if fp_env {
            call!(stackjob_switch_in_fpenv);
        } else {
            call!(stackjob_switch_in_shared);
        }
    }
}

/// [`switch_in`] for a job laid by [`prepare`] and never run: with
/// `fp_env`, the FRESH record first gets the caller's control words
/// ([`inherit_fp_env`]), so the new job starts with the floating-point
/// control state of the code that starts it. (x86_64 has an entry of its
/// own that skips the compare; here the compare finds them equal.)
///
/// # Safety
/// As for [`switch_in`], and `regs.sp` must be the FRESH record of
/// [`prepare`].
#[inline(always)]
pub(crate) unsafe fn switch_in_fresh(regs: *mut Regs, fp_env: bool) {
    // SAFETY: per the contract regs.sp is a FRESH record (whose control-word
    // bytes inherit_fp_env writes), then as in `switch_in`.
    unsafe {
        if fp_env {
            inherit_fp_env(regs);
        }
        switch_in(regs, fp_env)
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
    // SAFETY: stackjob_switch_out_* saves ebx, esi, edi, ebp, the resume PC
    // (ecx) and (fpenv) the control words; every caller-saved register is
    // declared clobbered. `call 3f; 3: pop ecx` is the i386 PIC way to read
    // the PC (its push is popped at once, so the stack is as it was), and
    // the `add` makes it the resume label: no absolute address, so no text
    // relocation in a PIE. AT&T syntax: LLVM's Intel-syntax parser does not
    // take a difference of numeric labels as an immediate.
    unsafe {
        macro_rules! jump {
            ($target:path) => {
                asm!(
                    "call 3f",
                    "3:",
                    "popl %ecx",
                    "addl $(2f - 3b), %ecx",
                    "jmp {switch_out}",
                    "2:",
                    switch_out = sym $target,
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
            asm!("jmp {exit}", exit = sym stackjob_switch_exit_fpenv, in("eax") regs, options(noreturn));
        } else {
            asm!("jmp {exit}", exit = sym stackjob_switch_exit_shared, in("eax") regs, options(noreturn));
        }
    }
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
    /// FRESH record laid by `prepare` is entered through the real asm, the
    /// entry must find our `regs` as its stack argument, and every later
    /// round trip (resume label, `jmp ecx`, `ret`) must come back here.
    #[test]
    fn record_layout_matches_asm() {
        let mut stack = vec![0u128; 4096]; // 64 KiB, 16-byte aligned
        // SAFETY: one past the end of the allocation.
        let top = unsafe { stack.as_mut_ptr().add(stack.len()) }.cast::<u8>();
        let mut regs = Regs::new();
        let regs_ptr = &raw mut regs;
        // SAFETY: `stack` provides FRESH writable bytes below the aligned top.
        unsafe { prepare(top, regs_ptr, probe) };
        // SAFETY: `regs` is live and only the probe (not running) shares it.
        let saved_sp = || unsafe { (*regs_ptr).sp };
        assert_eq!(saved_sp() as usize, top as usize - FRESH);
        // SAFETY: regs.sp points at the record inside `stack`.
        let word = |off: usize| unsafe { saved_sp().add(off).cast::<usize>().read() };
        assert_eq!(word(REC_PC), probe as *const () as usize);
        assert_eq!(word(REC_EBX), regs_ptr as usize);
        assert_eq!((word(REC_ESI), word(REC_EDI), word(REC_EBP)), (0, 0, 0));
        assert_eq!(word(RECORD), stackjob_trampoline_return as *const () as usize);
        assert_eq!(word(RECORD + 4), regs_ptr as usize);
        assert_eq!((top as usize - (FRESH - RECORD - 4)) % 16, 0, "the entry's argument is 16-byte aligned");
        // One byte into the anchor, so that "return address - 1" finds its FDE.
        assert_eq!(stackjob_trampoline_return as *const () as usize, stackjob_trampoline as *const () as usize + 1);
        // SAFETY: regs.sp points at a record.
        unsafe { inherit_fp_env(regs_ptr) };
        // SAFETY: both fields lie inside the record.
        let (fcw, mxcsr) =
            unsafe { (saved_sp().add(REC_FCW).cast::<u16>().read(), saved_sp().add(REC_MXCSR).cast::<u32>().read()) };
        assert_ne!(mxcsr & MXCSR_CONTROL, 0, "MXCSR control bits (exception masks) are set by default");
        assert_eq!(fcw & 0x3f, 0x3f, "x87 exceptions are masked by default");
        for round in 1..=3 {
            // SAFETY: regs.sp holds the probe's record on the live `stack`.
            unsafe { switch_in(regs_ptr, true) };
            assert_eq!(ROUNDS.load(Ordering::SeqCst), round);
            assert_eq!(ENTERED_WITH.load(Ordering::SeqCst), regs_ptr as usize);
            let sp = saved_sp() as usize;
            assert!(sp > stack.as_ptr() as usize && sp < top as usize);
        }
        // The probe stays parked in switch_out; its stack holds nothing to drop.
        drop(stack);
    }
}
