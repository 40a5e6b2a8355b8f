//! riscv64 (psABI, LP64D): s0-s11 and fs0-fs11 must survive a pause/resume
//! on both sides. Included by `tests/registers.rs` as `mod abi`.
//!
//! s0 (frame pointer) and s1 (LLVM's base pointer) cannot be named as asm
//! operands, so the harness saves and restores them by hand on the stack,
//! around the sentinel section. s0 holding a sentinel during the call is
//! harmless: the callee saves and restores it like any callee-saved
//! register, and nothing unwinds through the block (the callee is
//! `extern "C"`, which aborts instead of unwinding).
//!
//! The fs registers are 64-bit callee-saved under LP64D, the float ABI of
//! every riscv64 target with std (riscv64gc-*, the RVA23 and Android
//! targets). Stable rustc hides the "d" target feature from `cfg`, so the
//! tests check the backend name at run time and skip elsewhere.

use super::{Abi, Callee, Frame};
use std::arch::asm;

/// The LP64D calling convention.
pub struct Native;

impl Abi for Native {
    /// In record order: the asm below addresses `want` at +0 and `got` at
    /// +192. The fs values are bit patterns only moved with fld/fsd, never
    /// computed with (no NaN boxing).
    const REGISTERS: &'static [&'static str] = &[
        "s0", "s1", "s2", "s3", "s4", "s5", "s6", "s7", "s8", "s9", "s10", "s11", "fs0", "fs1", "fs2", "fs3", "fs4",
        "fs5", "fs6", "fs7", "fs8", "fs9", "fs10", "fs11",
    ];
    // A naked function's asm is assembled on its own, which in release
    // builds does not see the target's "d" feature: the probe turns it on.
    const PROBES: &'static [(Callee, &'static str)] = probes![
        "s5" => ["li s5, 0", "ret"],
        "fs7" => [".option push", ".option arch, +d", "fmv.d.x fs7, zero", ".option pop", "ret"],
    ];

    /// Stable rustc hides the float ABI from `cfg`: the backend's name tells.
    fn applies() -> Result<(), String> {
        match stackjob::backend() {
            "riscv64-lp64d" => Ok(()),
            other => Err(format!("these sentinels assume LP64D, the backend is {other:?}")),
        }
    }

    fn with_sentinels(frame: &mut Frame, f: Callee, arg: usize) {
        let p: *mut Frame = frame;
        // SAFETY: s0 and s1 (which cannot be named as operands) are saved at
        // 0(sp) and 8(sp) and restored at the end; s2-s11 and fs0-fs11 are
        // declared clobbered; everything caller-saved is covered by
        // clobber_abi("C") because the block calls a C-ABI function. sp moves by
        // 32, so it stays 16-byte aligned. `p` is kept at 16(sp) across the
        // call, since every callee-saved register holds a sentinel then. `p` and
        // `f` are pinned to a1/a2: left to the allocator, they may land in s1 or
        // s0 (reserved only when a base or frame pointer is needed), which the
        // block overwrites before its last use of them.
        unsafe {
            asm!(
                "addi sp, sp, -32",
                "sd s0, 0(sp)",
                "sd s1, 8(sp)",
                "sd a1, 16(sp)",
                "ld s1, 8(a1)",
                "ld s2, 16(a1)",
                "ld s3, 24(a1)",
                "ld s4, 32(a1)",
                "ld s5, 40(a1)",
                "ld s6, 48(a1)",
                "ld s7, 56(a1)",
                "ld s8, 64(a1)",
                "ld s9, 72(a1)",
                "ld s10, 80(a1)",
                "ld s11, 88(a1)",
                "fld fs0, 96(a1)",
                "fld fs1, 104(a1)",
                "fld fs2, 112(a1)",
                "fld fs3, 120(a1)",
                "fld fs4, 128(a1)",
                "fld fs5, 136(a1)",
                "fld fs6, 144(a1)",
                "fld fs7, 152(a1)",
                "fld fs8, 160(a1)",
                "fld fs9, 168(a1)",
                "fld fs10, 176(a1)",
                "fld fs11, 184(a1)",
                "ld s0, 0(a1)",
                "jalr a2",
                "ld t0, 16(sp)",
                "sd s0, 192(t0)",
                "sd s1, 200(t0)",
                "sd s2, 208(t0)",
                "sd s3, 216(t0)",
                "sd s4, 224(t0)",
                "sd s5, 232(t0)",
                "sd s6, 240(t0)",
                "sd s7, 248(t0)",
                "sd s8, 256(t0)",
                "sd s9, 264(t0)",
                "sd s10, 272(t0)",
                "sd s11, 280(t0)",
                "fsd fs0, 288(t0)",
                "fsd fs1, 296(t0)",
                "fsd fs2, 304(t0)",
                "fsd fs3, 312(t0)",
                "fsd fs4, 320(t0)",
                "fsd fs5, 328(t0)",
                "fsd fs6, 336(t0)",
                "fsd fs7, 344(t0)",
                "fsd fs8, 352(t0)",
                "fsd fs9, 360(t0)",
                "fsd fs10, 368(t0)",
                "fsd fs11, 376(t0)",
                "ld s0, 0(sp)",
                "ld s1, 8(sp)",
                "addi sp, sp, 32",
                in("a1") p,
                in("a2") f,
                in("a0") arg,
                out("s2") _, out("s3") _, out("s4") _, out("s5") _, out("s6") _,
                out("s7") _, out("s8") _, out("s9") _, out("s10") _, out("s11") _,
                out("fs0") _, out("fs1") _, out("fs2") _, out("fs3") _, out("fs4") _, out("fs5") _,
                out("fs6") _, out("fs7") _, out("fs8") _, out("fs9") _, out("fs10") _, out("fs11") _,
                clobber_abi("C"),
            );
        }
    }
}

const _: () = assert!(std::mem::offset_of!(Frame, got) == 192);
