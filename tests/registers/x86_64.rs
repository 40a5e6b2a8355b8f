//! x86_64 (SysV psABI §3.2.1, figure 3.4 "Register Usage"): rbx, rbp,
//! r12-r15, the MXCSR control bits and the x87 control word must survive a
//! pause/resume on both sides, each side keeping its own control words.
//! Included by `tests/registers.rs` as `mod abi`.
//!
//! rbx and rbp cannot be named as asm operands (LLVM reserves them), so the
//! harness saves and restores them by hand on the stack, around the
//! sentinel section. rbp holding a sentinel during the call is harmless: the
//! callee saves and restores it like any callee-saved register, and nothing
//! unwinds through the block (the callee is `extern "C"`, which aborts
//! instead of unwinding).

use super::{Abi, Callee, ControlWords, Frame, Masked};
use std::arch::asm;

/// MXCSR control bits; status flags (bits 0-5) are caller-saved.
const MXCSR_CONTROL: usize = 0xffc0;
/// The x87 control word bits that mean something (masks, PC, RC).
const FCW_MEANINGFUL: usize = 0x0f3f;

/// The thread's default MXCSR and x87 CW.
const DEFAULT_WORDS: &[usize] = &[0x1f80, 0x037f];

/// The SysV x86_64 calling convention.
pub struct Native;

impl Abi for Native {
    /// Record words 0-5; the asm below addresses `want` at +0 and `got` at
    /// +64 (then MXCSR at +48 and the x87 CW at +56 of each, low bits).
    const REGISTERS: &'static [&'static str] = &["rbx", "rbp", "r12", "r13", "r14", "r15"];
    const MASKED: &'static [Masked] = &[
        Masked { name: "MXCSR control bits", mask: MXCSR_CONTROL, control: true },
        Masked { name: "x87 control word", mask: FCW_MEANINGFUL, control: true },
    ];
    const PROBES: &'static [(Callee, &'static str)] = probes!["r13" => ["xor r13d, r13d", "ret"]];

    /// (MXCSR, x87 control word) for the job side and the resumer side.
    fn control_words() -> ControlWords {
        if std::env::var_os("STACKJOB_UNDER_VALGRIND").is_some() {
            // Valgrind's emulated FPU keeps only the rounding fields of both
            // words (its manual, "Limitations": FZ/DAZ are ignored, x87
            // precision control is not supported), so the sides differ in
            // rounding only. Job: toward zero, x87 chop; resumer: down.
            eprintln!("under Valgrind: the two sides' control words differ in rounding mode only");
            ControlWords { job: &[0x7f80, 0x0f7f], resumer: &[0x3f80, 0x077f], default: DEFAULT_WORDS }
        } else {
            // Job: round toward zero, FZ+DAZ, x87 RC=chop, PC=double.
            // Resumer: round down, DAZ, x87 RC=down, PC=single.
            ControlWords { job: &[0xffc0, 0x0e7f], resumer: &[0x3fc0, 0x047f], default: DEFAULT_WORDS }
        }
    }

    fn with_sentinels(frame: &mut Frame, f: Callee, arg: usize) {
        let p: *mut Frame = frame;
        // SAFETY: rbx and rbp (which cannot be named as operands) are saved
        // and restored by hand; r12-r15 are declared clobbered; everything
        // caller-saved is covered by clobber_abi("C") because the block calls
        // a C-ABI function. The stack stays 16-byte aligned at the call
        // (4 pushes of 8 bytes from an aligned block entry). The caller's
        // MXCSR and x87 CW are saved at [rsp] and reloaded at the end; `p` is
        // kept at [rsp + 8] across the call, since every callee-saved
        // register holds a sentinel then. `got` starts zeroed, so the stores
        // of the 32-bit MXCSR and 16-bit CW leave clean words.
        unsafe {
            asm!(
                "push rbp",
                "push rbx",
                "push rsi",
                "sub rsp, 8",
                "stmxcsr dword ptr [rsp]",
                "fnstcw word ptr [rsp + 4]",
                "ldmxcsr dword ptr [rsi + 48]",
                "fldcw word ptr [rsi + 56]",
                "mov rbx, qword ptr [rsi]",
                "mov rbp, qword ptr [rsi + 8]",
                "mov r12, qword ptr [rsi + 16]",
                "mov r13, qword ptr [rsi + 24]",
                "mov r14, qword ptr [rsi + 32]",
                "mov r15, qword ptr [rsi + 40]",
                "call rdx",
                "mov rax, qword ptr [rsp + 8]",
                "mov qword ptr [rax + 64], rbx",
                "mov qword ptr [rax + 72], rbp",
                "mov qword ptr [rax + 80], r12",
                "mov qword ptr [rax + 88], r13",
                "mov qword ptr [rax + 96], r14",
                "mov qword ptr [rax + 104], r15",
                "stmxcsr dword ptr [rax + 112]",
                "fnstcw word ptr [rax + 120]",
                "ldmxcsr dword ptr [rsp]",
                "fldcw word ptr [rsp + 4]",
                "add rsp, 16",
                "pop rbx",
                "pop rbp",
                // Explicit registers: a `reg` operand may be given rbx, which
                // the block overwrites with a sentinel before using it.
                in("rsi") p,
                in("rdx") f,
                in("rdi") arg,
                out("r12") _, out("r13") _, out("r14") _, out("r15") _,
                clobber_abi("C"),
            );
        }
    }
}

const _: () = assert!(std::mem::offset_of!(Frame, got) == 64);
