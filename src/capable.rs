//! Whether jobs can run here: the compiled backend, and what at run time
//! can forbid it (checked once). The pool asks on its slow path only: where
//! jobs cannot run it never creates a stack, so its fast path, which lends
//! an idle one, needs no check.

/// Whether jobs can run on this platform (OpenSSL's `ASYNC_is_capable`).
///
/// `false` on targets without a context-switch backend, and on x86_64 when
/// the process runs with a hardware shadow stack (CET), which the switch
/// does not manage. The answer is computed once; later calls are a load.
///
/// ```
/// if stackjob::is_capable() {
///     assert!(stackjob::start(None, || ()).is_ok());
/// } else {
///     assert!(matches!(stackjob::start(None, || ()), Err(stackjob::Error::NotCapable { .. })));
/// }
/// ```
#[inline]
pub fn is_capable() -> bool {
    crate::arch::CAPABLE && runtime_capable()
}

/// The name of the context-switch backend compiled for this target
/// (`"x86_64-sysv"`, …, or `"none"`).
///
/// ```
/// assert_eq!(stackjob::backend() == "none", !stackjob::is_capable() && stackjob::backend() == "none");
/// ```
pub fn backend() -> &'static str {
    crate::arch::BACKEND
}

/// Run-time conditions that disable a compiled-in backend, checked once.
#[inline]
fn runtime_capable() -> bool {
    use std::sync::atomic::{AtomicU8, Ordering};
    static STATE: AtomicU8 = AtomicU8::new(0); // 0 unknown, 1 capable, 2 not
    match STATE.load(Ordering::Relaxed) {
        1 => true,
        2 => false,
        _ => {
            let ok = runtime_blocker().is_none();
            STATE.store(if ok { 1 } else { 2 }, Ordering::Relaxed);
            ok
        }
    }
}

/// Why jobs cannot run, if something at run time forbids them.
fn runtime_blocker() -> Option<&'static str> {
    #[cfg(stackjob_backend = "arm")]
    if crate::arch::state_mismatch() {
        // build.rs picks A32 or T32 for the asm from the target name and the
        // rustflags; code of the other state would resume in the wrong one.
        return Some(
            "this 32-bit Arm build mixes T32 and A32 code in a way build.rs could not see (set \
             `-C target-feature=+thumb-mode` in RUSTFLAGS or CARGO_ENCODED_RUSTFLAGS, not elsewhere)",
        );
    }
    #[cfg(all(target_arch = "x86_64", target_os = "linux"))]
    {
        // The probe fails with EINVAL on kernels without shadow stacks: the
        // caller's errno must survive it.
        let _errno = crate::errno::Keep::new();
        // arch_prctl(ARCH_SHSTK_STATUS): bit 0 = shadow stack enabled. The
        // switch moves rsp without `rstorssp`, so a shadow stack would fault.
        const ARCH_SHSTK_STATUS: libc::c_long = 0x5005;
        let mut features: u64 = 0;
        // SAFETY: the kernel writes one u64 through the pointer, or fails
        // with EINVAL on kernels without shadow-stack support.
        let rc = unsafe { libc::syscall(libc::SYS_arch_prctl, ARCH_SHSTK_STATUS, &mut features as *mut u64) };
        if rc == 0 && features & 1 != 0 {
            return Some("the process runs with a CET shadow stack, which stackjob's switch does not manage");
        }
    }
    None
}

/// The reason [`Error::NotCapable`] gives.
pub(crate) fn not_capable_reason() -> &'static str {
    if !crate::arch::CAPABLE {
        "no context-switch backend for this target (stackjob has x86_64, i686, aarch64, 32-bit Arm hard-float, \
         riscv64 and powerpc64 ELFv2 backends for ELF systems)"
    } else {
        runtime_blocker().unwrap_or("jobs are disabled at run time")
    }
}
