//! 32-bit x86 (i386 psABI, table 2.3 "Register Usage"): ebx, esi, edi, ebp,
//! the MXCSR control bits and the x87 control word must survive a
//! pause/resume on both sides, each side keeping its own control words (as
//! on x86_64). Included by `tests/registers.rs` as `mod abi`.
//!
//! esi and ebp cannot be named as asm operands (LLVM's base and frame
//! pointers), and ebx is the PIC base: the harness saves and restores all
//! four by hand on the stack, around the sentinel section. ebp holding a
//! sentinel during the call is harmless: the callee saves and restores it
//! like any callee-saved register, and nothing unwinds through the block
//! (the callee is `extern "C"`, which aborts instead of unwinding).

use super::{Abi, Callee, ControlWords, Frame, Masked};
use std::arch::asm;

/// MXCSR control bits; status flags (bits 0-5) are caller-saved.
const MXCSR_CONTROL: usize = 0xffc0;
/// The x87 control word bits that mean something (masks, PC, RC).
const FCW_MEANINGFUL: usize = 0x0f3f;

/// The i386 System V calling convention.
pub struct Native;

impl Abi for Native {
    /// In record order, then MXCSR and the x87 control word (in the low 16
    /// bits of its word): the asm below addresses `want` at +0 and `got` at
    /// +24.
    const REGISTERS: &'static [&'static str] = &["ebx", "esi", "edi", "ebp"];
    const MASKED: &'static [Masked] = &[
        Masked { name: "MXCSR control bits", mask: MXCSR_CONTROL, control: true },
        Masked { name: "x87 control word", mask: FCW_MEANINGFUL, control: true },
    ];
    const PROBES: &'static [(Callee, &'static str)] = probes![
        "edi" => ["xor edi, edi", "ret"],
        "ebx" => ["xor ebx, ebx", "ret"],
        "MXCSR control bits" => ["push 0x1f80", "ldmxcsr dword ptr [esp]", "add esp, 4", "ret"],
    ];

    /// The job's control words: round toward zero, FZ+DAZ, x87 RC=chop,
    /// PC=double. The resumer's: round down, DAZ, x87 RC=down, PC=single.
    fn control_words() -> ControlWords {
        ControlWords { job: &[0xffc0, 0x0e7f], resumer: &[0x3fc0, 0x047f], default: &[0x1f80, 0x037f] }
    }

    fn with_sentinels(frame: &mut Frame, f: Callee, arg: usize) {
        let p: *mut Frame = frame;
        // SAFETY: ebx, esi, edi and ebp are pushed first and popped last;
        // everything caller-saved is covered by clobber_abi("C") because the
        // block calls a C-ABI function. The caller's MXCSR and x87 CW are saved
        // at [esp] and [esp + 4] and reloaded at the end; `p` is kept at
        // [esp + 8] across the call, since every callee-saved register holds a
        // sentinel then. 28 bytes are pushed before the 4-byte argument, so esp
        // is 16-byte aligned at the call (the block is entered aligned, as a
        // call). `p`, `f` and `arg` are pinned to eax, edx and ecx, none of
        // which the block overwrites before their last use.
        unsafe {
            asm!(
                "push ebp",
                "push ebx",
                "push esi",
                "push edi",
                "push eax",
                "sub esp, 8",
                "stmxcsr dword ptr [esp]",
                "fnstcw word ptr [esp + 4]",
                "ldmxcsr dword ptr [eax + 16]",
                "fldcw word ptr [eax + 20]",
                "mov ebx, dword ptr [eax]",
                "mov esi, dword ptr [eax + 4]",
                "mov edi, dword ptr [eax + 8]",
                "mov ebp, dword ptr [eax + 12]",
                "sub esp, 4",
                "mov dword ptr [esp], ecx",
                "call edx",
                "add esp, 4",
                "mov eax, dword ptr [esp + 8]",
                "mov dword ptr [eax + 24], ebx",
                "mov dword ptr [eax + 28], esi",
                "mov dword ptr [eax + 32], edi",
                "mov dword ptr [eax + 36], ebp",
                "stmxcsr dword ptr [eax + 40]",
                "mov dword ptr [eax + 44], 0",
                "fnstcw word ptr [eax + 44]",
                "ldmxcsr dword ptr [esp]",
                "fldcw word ptr [esp + 4]",
                "add esp, 12",
                "pop edi",
                "pop esi",
                "pop ebx",
                "pop ebp",
                in("eax") p,
                in("edx") f,
                in("ecx") arg,
                clobber_abi("C"),
            );
        }
    }
}

const _: () = assert!(std::mem::offset_of!(Frame, got) == 24);
