//! aarch64 (AAPCS64 §6.1.1/6.1.2): x19-x28, x29 and d8-d15 must survive a
//! pause/resume on both sides. Included by `tests/registers.rs` as
//! `mod abi`.
//!
//! x19 and x29 cannot be named as asm operands (LLVM reserves them as base
//! and frame pointer), so the harness saves and restores them by hand on the
//! stack, around the sentinel section. x29 holding a sentinel during the call
//! is harmless: the callee saves and restores it like any callee-saved
//! register, and nothing unwinds through the block (the callee is
//! `extern "C"`, which aborts instead of unwinding).

use super::{Abi, Callee, Frame};
use std::arch::asm;

/// AAPCS64.
pub struct Native;

impl Abi for Native {
    /// In record order: the asm below addresses `want` at +0 and `got` at
    /// +152. The d values are bit patterns only moved with ldp/stp, never
    /// computed with.
    const REGISTERS: &'static [&'static str] = &[
        "x19", "x20", "x21", "x22", "x23", "x24", "x25", "x26", "x27", "x28", "x29", "d8", "d9", "d10", "d11", "d12",
        "d13", "d14", "d15",
    ];
    // `bti c` (a NOP without BTI) because the harness reaches them with `blr`.
    const PROBES: &'static [(Callee, &'static str)] = probes![
        "x23" => ["bti c", "mov x23, xzr", "ret"],
        "d12" => ["bti c", "fmov d12, xzr", "ret"],
    ];

    fn with_sentinels(frame: &mut Frame, f: Callee, arg: usize) {
        let p: *mut Frame = frame;
        // SAFETY: x19 and x29 (which cannot be named as operands) are saved at
        // [sp] and restored at the end; x20-x28 are declared clobbered;
        // everything caller-saved, including all of v0-v31, is covered by
        // clobber_abi("C") because the block calls a C-ABI function. sp moves by
        // 32, so it stays 16-byte aligned. `p` is kept at [sp + 16] across the
        // call, since every callee-saved register holds a sentinel then. `p` and
        // `f` are pinned to x1/x2: left to the allocator, they may land in x19
        // (reserved only in functions that need a base pointer), which the
        // block overwrites before its last use of them (seen in release builds).
        unsafe {
            asm!(
                "stp x29, x19, [sp, #-32]!",
                "str x1, [sp, #16]",
                "ldp x19, x20, [x1, #0]",
                "ldp x21, x22, [x1, #16]",
                "ldp x23, x24, [x1, #32]",
                "ldp x25, x26, [x1, #48]",
                "ldp x27, x28, [x1, #64]",
                "ldp d8, d9, [x1, #88]",
                "ldp d10, d11, [x1, #104]",
                "ldp d12, d13, [x1, #120]",
                "ldp d14, d15, [x1, #136]",
                "ldr x29, [x1, #80]",
                "blr x2",
                "ldr x9, [sp, #16]",
                "stp x19, x20, [x9, #152]",
                "stp x21, x22, [x9, #168]",
                "stp x23, x24, [x9, #184]",
                "stp x25, x26, [x9, #200]",
                "stp x27, x28, [x9, #216]",
                "str x29, [x9, #232]",
                "stp d8, d9, [x9, #240]",
                "stp d10, d11, [x9, #256]",
                "stp d12, d13, [x9, #272]",
                "stp d14, d15, [x9, #288]",
                "ldp x29, x19, [sp], #32",
                in("x1") p,
                in("x2") f,
                in("x0") arg,
                out("x20") _, out("x21") _, out("x22") _, out("x23") _, out("x24") _,
                out("x25") _, out("x26") _, out("x27") _, out("x28") _,
                clobber_abi("C"),
            );
        }
    }
}

const _: () = assert!(std::mem::offset_of!(Frame, got) == 152);
