//! The Rust face of the hand-written context switch in `arch/`.
//!
//! The interface is deliberately tiny (four asm entry points per
//! architecture, wrapped by the functions below):
//!
//! * [`Regs`]: the two saved stack pointers of one job, shared with the asm;
//! * [`enter`]: resumer side, start a new job on a stack and run it until
//!   it switches out; the job's entry function sees the trampoline as its
//!   caller, whose CFI continues backtraces into the resumer, and inherits
//!   the caller's floating-point control state;
//! * [`switch_in`]: resumer side, run the job until it switches out;
//! * [`switch_out`]: job side, return control to whoever resumed it (and
//!   learn whether it was resumed to be cancelled: [`unwind_on_resume`]);
//! * [`exit`]: job side, the job is done: return control for good;
//! * [`stack_pointer`]: the caller's stack pointer (which stack it runs on).
//!
//! Every backend's `enter` is an asm entry of its own that builds the
//! job's first frame itself: nothing is laid on the stack beforehand.
//!
//! On targets without a backend, `none.rs` provides the same items with
//! [`CAPABLE`] = `false`; nothing there is ever reached because the safe
//! layer checks `is_capable()` before touching a stack.

/// `global_asm!` for a backend's `arch/<arch>.s`, plus one Rust function
/// with unwind tables in the same module (so in the same codegen unit).
/// LLVM writes a unit's CFI to `.eh_frame` only if some function in it
/// needs unwind tables; otherwise (a unit holding nothing but the asm and,
/// say, AddressSanitizer's module constructor) it writes `.debug_frame`
/// alone, which unwinders at run time never read, and backtraces taken
/// inside a job would stop at the trampoline.
// Unused only by the "none" backend.
#[allow(unused_macros)]
macro_rules! backend_asm {
    ($($args:tt)*) => {
        core::arch::global_asm!($($args)*);

        /// See `backend_asm!` in `src/arch/mod.rs`.
        #[inline(never)]
        fn eh_frame_anchor() {}

        #[used]
        static EH_FRAME_ANCHOR: fn() = eh_frame_anchor;
    };
}

/// The backend's `stack_pointer()`: the stack pointer of the caller's
/// frame (where its frames live: a job stack inside a job or fiber, the
/// thread's stack outside one), read by the one instruction `$insn` (`{}`
/// is the destination register).
// Unused only by the "none" backend.
#[allow(unused_macros)]
macro_rules! backend_stack_pointer {
    ($insn:literal) => {
        /// See `backend_stack_pointer!` in `src/arch/mod.rs`.
        #[inline(always)]
        pub(crate) fn stack_pointer() -> usize {
            let sp: usize;
            // SAFETY: reads the stack pointer register into a general
            // register; touches no memory and no flags.
            unsafe { core::arch::asm!($insn, out(reg) sp, options(nomem, nostack, preserves_flags)) };
            sp
        }
    };
}

cfg_if::cfg_if! {
    if #[cfg(stackjob_backend = "x86_64")] {
        mod x86_64;
        pub(crate) use self::x86_64::*;
    } else if #[cfg(stackjob_backend = "aarch64")] {
        mod aarch64;
        pub(crate) use self::aarch64::*;
    } else if #[cfg(stackjob_backend = "riscv64")] {
        mod riscv64;
        pub(crate) use self::riscv64::*;
    } else if #[cfg(stackjob_backend = "arm")] {
        mod arm;
        pub(crate) use self::arm::*;
    } else if #[cfg(stackjob_backend = "x86")] {
        mod x86;
        pub(crate) use self::x86::*;
    } else if #[cfg(stackjob_backend = "powerpc64")] {
        mod powerpc64;
        pub(crate) use self::powerpc64::*;
    } else {
        mod none;
        pub(crate) use self::none::*;
    }
}

/// Saved stack pointers of one job, read and written by the asm.
///
/// `sp` holds the job's saved record while the job is switched out;
/// `parent_sp` holds the resumer's saved record while the job runs.
/// The asm receives the offsets of both fields through `global_asm!`
/// `const` operands, so this layout is defined here only.
#[repr(C)]
#[derive(Debug)]
pub(crate) struct Regs {
    pub(crate) sp: *mut u8,
    pub(crate) parent_sp: *mut u8,
}

/// The signature of a job's entry function: entered once per job (jumped
/// to by [`enter`], on the job stack, with the trampoline as its return
/// address) with the stack's `Regs`; it must never return and never
/// unwind: it ends in [`exit`].
pub(crate) type Entry = unsafe extern "C" fn(*mut Regs) -> !;

impl Regs {
    pub(crate) const fn new() -> Regs {
        Regs { sp: core::ptr::null_mut(), parent_sp: core::ptr::null_mut() }
    }
}

/// Makes the next [`switch_in`] of the switched-out job owning `regs`
/// continue at the cancel path of its pause site instead of its resume
/// label, so that its [`switch_out`] returns `true` there. Every backend's
/// `switch_out` lays that path (a jump to a Rust label block) in the
/// [`CANCEL_PATH`] bytes just before its resume label, and the record keeps
/// the resume PC at [`RESUME_PC`]: the cancel check costs the pause itself
/// nothing. Redirects one resume: a job that pauses again is at a resume
/// label again.
///
/// # Safety
/// The job must be switched out at a pause site (`regs.sp` holds the record
/// [`switch_out`] pushed, not a new job's first frame), and owned by the
/// caller.
#[inline]
pub(crate) unsafe fn unwind_on_resume(regs: *mut Regs) {
    // SAFETY: per the contract the record is live and nobody else touches
    // it; its resume PC is a resume label of a switch_out block, so
    // CANCEL_PATH bytes before it is that block's cancel path.
    unsafe {
        let pc = (*regs).sp.add(RESUME_PC).cast::<usize>();
        pc.write(pc.read() - CANCEL_PATH);
    }
}
