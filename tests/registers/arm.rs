//! 32-bit Arm (AAPCS32 "Core registers" and "VFP register usage
//! conventions"): r4-r11 and d8-d15 must survive a pause/resume on both
//! sides. Included by `tests/registers.rs` as `mod abi`.
//!
//! r6 (base pointer), r7 (T32 frame pointer) and r11 (A32 frame pointer)
//! cannot be named as asm operands, so the harness saves and restores them
//! by hand on the stack, around the sentinel section. r11 holding a
//! sentinel during the call is harmless: the callee saves and restores it
//! like any callee-saved register, and nothing unwinds through the block
//! (the callee is `extern "C"`, which aborts instead of unwinding).

use super::{Abi, Callee, Frame};
use std::arch::asm;

/// AAPCS32 with the VFP variant (hard float).
pub struct Native;

impl Abi for Native {
    /// In record order: the asm below addresses `want` at +0 (r4-r11, then
    /// d8-d15 at +32, low word first) and `got` at +96 (d8-d15 at +128).
    /// The d values are bit patterns only moved with vldm/vstm, never
    /// computed with.
    const REGISTERS: &'static [&'static str] = &[
        "r4", "r5", "r6", "r7", "r8", "r9", "r10", "r11", "d8", "d8", "d9", "d9", "d10", "d10", "d11", "d11", "d12",
        "d12", "d13", "d13", "d14", "d14", "d15", "d15",
    ];
    // r11 is the frame pointer the asm saves by hand. The harness passes 0,
    // so `vmov d12, r0, r0` zeroes d12, never a sentinel.
    const PROBES: &'static [(Callee, &'static str)] = probes![
        "r5" => ["mov r5, #0", "bx lr"],
        "r11" => ["mov r11, #0", "bx lr"],
        "d12" => ["vmov d12, r0, r0", "bx lr"],
    ];

    fn with_sentinels(frame: &mut Frame, f: Callee, arg: usize) {
        let p: *mut Frame = frame;
        // SAFETY: r6, r7 and r11 (which cannot be named as operands) are pushed
        // with `p` and popped at the end; r4, r5, r8-r10 and d8-d15 are declared
        // clobbered; everything caller-saved is covered by clobber_abi("C")
        // because the block calls a C-ABI function. Four words are pushed, so
        // sp stays 8-byte aligned at the call. `p` is reloaded from [sp] after
        // the call, since every callee-saved register holds a sentinel then.
        // `p` and `f` are pinned to r1/r2: left to the allocator, they could land
        // in a register the block overwrites before its last use of them.
        unsafe {
            asm!(
                "push {{r1, r6, r7, r11}}",
                "add r3, r1, #32",
                "vldmia r3, {{d8-d15}}",
                "ldm r1, {{r4-r11}}",
                "blx r2",
                "ldr r3, [sp]",
                "add r12, r3, #96",
                "stm r12, {{r4-r11}}",
                "add r12, r3, #128",
                "vstmia r12, {{d8-d15}}",
                "pop {{r1, r6, r7, r11}}",
                in("r1") p,
                in("r2") f,
                in("r0") arg,
                out("r4") _, out("r5") _, out("r8") _, out("r9") _, out("r10") _,
                out("d8") _, out("d9") _, out("d10") _, out("d11") _,
                out("d12") _, out("d13") _, out("d14") _, out("d15") _,
                clobber_abi("C"),
            );
        }
    }
}

const _: () = assert!(std::mem::offset_of!(Frame, got) == 96);
