//! Helpers shared by several test files (each includes this with
//! `#[macro_use] mod common;`; not every file uses every helper).
#![allow(dead_code, unused_macros)]

pub mod child;
pub mod example;

use stackjob::{Job, Step};

/// Returns from the test, saying why, where jobs cannot run.
macro_rules! require_backend {
    () => {
        if !stackjob::is_capable() {
            eprintln!("skipped: no stackjob backend on this target (backend {:?})", stackjob::backend());
            return;
        }
    };
}

/// The paused job of a step that must be a pause.
pub fn paused<R>(step: Step<R>) -> Job<R> {
    match step {
        Step::Paused(job) => job,
        Step::Finished(_) => panic!("expected the job to pause, it finished"),
    }
}

/// The value of a step that must be the end of the job.
pub fn finished<R>(step: Step<R>) -> R {
    match step {
        Step::Finished(value) => value,
        Step::Paused(_) => panic!("expected the job to finish, it paused"),
    }
}

/// The stack pointer of the caller: which stack the calling code runs on.
///
/// The address of a local does not tell that under AddressSanitizer, whose
/// use-after-return detection (on by default on Linux) moves address-taken
/// locals to a "fake stack" on the heap.
#[inline(always)]
pub fn stack_pointer() -> usize {
    let sp: usize;
    // SAFETY: each block copies the stack pointer into a register and
    // touches nothing else.
    #[cfg(target_arch = "x86_64")]
    unsafe {
        std::arch::asm!("mov {}, rsp", out(reg) sp, options(nomem, nostack, preserves_flags));
    }
    #[cfg(target_arch = "aarch64")]
    unsafe {
        std::arch::asm!("mov {}, sp", out(reg) sp, options(nomem, nostack, preserves_flags));
    }
    #[cfg(target_arch = "riscv64")]
    unsafe {
        std::arch::asm!("mv {}, sp", out(reg) sp, options(nomem, nostack, preserves_flags));
    }
    #[cfg(target_arch = "arm")]
    unsafe {
        std::arch::asm!("mov {}, sp", out(reg) sp, options(nomem, nostack, preserves_flags));
    }
    #[cfg(target_arch = "x86")]
    unsafe {
        std::arch::asm!("mov {}, esp", out(reg) sp, options(nomem, nostack, preserves_flags));
    }
    #[cfg(target_arch = "powerpc64")]
    unsafe {
        std::arch::asm!("mr {}, 1", out(reg) sp, options(nomem, nostack, preserves_flags));
    }
    #[cfg(not(any(
        target_arch = "x86_64",
        target_arch = "aarch64",
        target_arch = "riscv64",
        target_arch = "arm",
        target_arch = "x86",
        target_arch = "powerpc64"
    )))]
    {
        // No backend here, so no job ever runs: any address in this frame will do.
        let local = 0u8;
        sp = std::hint::black_box(&local) as *const u8 as usize;
    }
    sp
}

/// Sets the calling thread's `errno`.
pub fn set_errno(value: i32) {
    // SAFETY: the calling thread's errno is always writable.
    unsafe { *errno_location() = value };
}

/// The calling thread's `errno`.
pub fn errno() -> i32 {
    // SAFETY: as above, readable.
    unsafe { *errno_location() }
}

fn errno_location() -> *mut libc::c_int {
    // SAFETY: no preconditions; returns the calling thread's errno.
    unsafe {
        #[cfg(any(target_os = "android", target_os = "netbsd", target_os = "openbsd"))]
        return libc::__errno();
        #[cfg(not(any(target_os = "android", target_os = "netbsd", target_os = "openbsd")))]
        libc::__errno_location()
    }
}
