//! powerpc64 ELFv2 (section 2.2.1.1 "Register Roles"): r14-r31, f14-f31,
//! v20-v31, cr2-cr4 and VRSAVE must survive a pause/resume on both sides.
//! Included by `tests/registers.rs` as `mod abi`.
//!
//! r30 (LLVM's base pointer), r31 (frame pointer), r2 (TOC) and VRSAVE
//! cannot be named as asm operands, so the harness saves and restores them
//! by hand in a frame of its own, around the sentinel section, together
//! with the caller's CR. r31 holding a sentinel during the call is
//! harmless: the callee saves and restores it like any nonvolatile
//! register, and nothing unwinds through the block (the callee is
//! `extern "C"`, which aborts instead of unwinding).

use super::{Abi, Callee, Frame, Masked};
use std::arch::asm;

/// CR bits of cr2, cr3 and cr4 (cr0 is the most significant field).
const CR_NONVOLATILE: usize = 0x00ff_f000;

/// The ELFv2 calling convention.
pub struct Native;

impl Abi for Native {
    /// In record order: the asm below addresses `want` at +0 and `got` at
    /// +496: r14-r31 at +0, f14-f31 at +144 (bit patterns only moved with
    /// lfd/stfd), v20-v31 at +288 (two doublewords each, 16-byte aligned
    /// for lvx/stvx), then the whole CR at +480 and VRSAVE at +488.
    const REGISTERS: &'static [&'static str] = &[
        "r14", "r15", "r16", "r17", "r18", "r19", "r20", "r21", "r22", "r23", "r24", "r25", "r26", "r27", "r28", "r29",
        "r30", "r31", "f14", "f15", "f16", "f17", "f18", "f19", "f20", "f21", "f22", "f23", "f24", "f25", "f26", "f27",
        "f28", "f29", "f30", "f31", "v20", "v20", "v21", "v21", "v22", "v22", "v23", "v23", "v24", "v24", "v25", "v25",
        "v26", "v26", "v27", "v27", "v28", "v28", "v29", "v29", "v30", "v30", "v31", "v31",
    ];
    const MASKED: &'static [Masked] = &[
        Masked { name: "cr2-cr4", mask: CR_NONVOLATILE, control: false },
        Masked { name: "VRSAVE", mask: 0xffff_ffff, control: false },
    ];
    // r31 is saved by hand; a cr3 clobber is reported as cr2-cr4.
    const PROBES: &'static [(Callee, &'static str)] = probes![
        "r20" => ["li 20, 0", "blr"],
        "r31" => ["li 31, 0", "blr"],
        "f20" => ["xxlxor 20, 20, 20", "blr"],
        "v25" => ["vxor 25, 25, 25", "blr"],
        "cr2-cr4" => ["li 0, 0", "mtcrf 0x10, 0", "blr"],
        "VRSAVE" => ["li 0, 0", "mtvrsave 0", "blr"],
    ];

    fn with_sentinels(frame: &mut Frame, f: Callee, arg: usize) {
        let p: *mut Frame = frame;
        // SAFETY: the block makes a 96-byte frame of its own (its 32-byte
        // header is the callee's to write, as ELFv2 allows) and keeps there `p`,
        // r30, r31, r2, the caller's VRSAVE and CR, restoring them at the end;
        // r14-r29, f14-f31, v20-v31 and cr2-cr4 are declared clobbered;
        // everything volatile is covered by clobber_abi("C") because the block
        // calls a C-ABI function (entered at its global entry point: r12 = CTR =
        // `f`). `p`, `f` and `arg` are pinned to r4, r5 and r3, which the block
        // does not overwrite before their last use.
        unsafe {
            asm!(
                "stdu 1, -96(1)",
                "std 4, 32(1)",
                "std 30, 40(1)",
                "std 31, 48(1)",
                "std 2, 56(1)",
                "mfvrsave 0",
                "std 0, 64(1)",
                "mfcr 0",
                "std 0, 72(1)",
                "ld 14, 0(4)",
                "ld 15, 8(4)",
                "ld 16, 16(4)",
                "ld 17, 24(4)",
                "ld 18, 32(4)",
                "ld 19, 40(4)",
                "ld 20, 48(4)",
                "ld 21, 56(4)",
                "ld 22, 64(4)",
                "ld 23, 72(4)",
                "ld 24, 80(4)",
                "ld 25, 88(4)",
                "ld 26, 96(4)",
                "ld 27, 104(4)",
                "ld 28, 112(4)",
                "ld 29, 120(4)",
                "ld 30, 128(4)",
                "ld 31, 136(4)",
                "lfd 14, 144(4)",
                "lfd 15, 152(4)",
                "lfd 16, 160(4)",
                "lfd 17, 168(4)",
                "lfd 18, 176(4)",
                "lfd 19, 184(4)",
                "lfd 20, 192(4)",
                "lfd 21, 200(4)",
                "lfd 22, 208(4)",
                "lfd 23, 216(4)",
                "lfd 24, 224(4)",
                "lfd 25, 232(4)",
                "lfd 26, 240(4)",
                "lfd 27, 248(4)",
                "lfd 28, 256(4)",
                "lfd 29, 264(4)",
                "lfd 30, 272(4)",
                "lfd 31, 280(4)",
                "addi 6, 4, 288",
                "lvx 20, 0, 6",
                "addi 6, 6, 16",
                "lvx 21, 0, 6",
                "addi 6, 6, 16",
                "lvx 22, 0, 6",
                "addi 6, 6, 16",
                "lvx 23, 0, 6",
                "addi 6, 6, 16",
                "lvx 24, 0, 6",
                "addi 6, 6, 16",
                "lvx 25, 0, 6",
                "addi 6, 6, 16",
                "lvx 26, 0, 6",
                "addi 6, 6, 16",
                "lvx 27, 0, 6",
                "addi 6, 6, 16",
                "lvx 28, 0, 6",
                "addi 6, 6, 16",
                "lvx 29, 0, 6",
                "addi 6, 6, 16",
                "lvx 30, 0, 6",
                "addi 6, 6, 16",
                "lvx 31, 0, 6",
                "addi 6, 6, 16",
                "ld 0, 480(4)",
                "mtcrf 0x38, 0",
                "ld 0, 488(4)",
                "mtvrsave 0",
                "mr 12, 5",
                "mtctr 12",
                "bctrl",
                "ld 2, 56(1)",
                "ld 4, 32(1)",
                "std 14, 496(4)",
                "std 15, 504(4)",
                "std 16, 512(4)",
                "std 17, 520(4)",
                "std 18, 528(4)",
                "std 19, 536(4)",
                "std 20, 544(4)",
                "std 21, 552(4)",
                "std 22, 560(4)",
                "std 23, 568(4)",
                "std 24, 576(4)",
                "std 25, 584(4)",
                "std 26, 592(4)",
                "std 27, 600(4)",
                "std 28, 608(4)",
                "std 29, 616(4)",
                "std 30, 624(4)",
                "std 31, 632(4)",
                "stfd 14, 640(4)",
                "stfd 15, 648(4)",
                "stfd 16, 656(4)",
                "stfd 17, 664(4)",
                "stfd 18, 672(4)",
                "stfd 19, 680(4)",
                "stfd 20, 688(4)",
                "stfd 21, 696(4)",
                "stfd 22, 704(4)",
                "stfd 23, 712(4)",
                "stfd 24, 720(4)",
                "stfd 25, 728(4)",
                "stfd 26, 736(4)",
                "stfd 27, 744(4)",
                "stfd 28, 752(4)",
                "stfd 29, 760(4)",
                "stfd 30, 768(4)",
                "stfd 31, 776(4)",
                "addi 6, 4, 784",
                "stvx 20, 0, 6",
                "addi 6, 6, 16",
                "stvx 21, 0, 6",
                "addi 6, 6, 16",
                "stvx 22, 0, 6",
                "addi 6, 6, 16",
                "stvx 23, 0, 6",
                "addi 6, 6, 16",
                "stvx 24, 0, 6",
                "addi 6, 6, 16",
                "stvx 25, 0, 6",
                "addi 6, 6, 16",
                "stvx 26, 0, 6",
                "addi 6, 6, 16",
                "stvx 27, 0, 6",
                "addi 6, 6, 16",
                "stvx 28, 0, 6",
                "addi 6, 6, 16",
                "stvx 29, 0, 6",
                "addi 6, 6, 16",
                "stvx 30, 0, 6",
                "addi 6, 6, 16",
                "stvx 31, 0, 6",
                "addi 6, 6, 16",
                "mfcr 0",
                "std 0, 976(4)",
                "mfvrsave 0",
                "std 0, 984(4)",
                "ld 0, 64(1)",
                "mtvrsave 0",
                "ld 0, 72(1)",
                "mtcrf 0x38, 0",
                "ld 30, 40(1)",
                "ld 31, 48(1)",
                "addi 1, 1, 96",
                in("r4") p,
                in("r5") f,
                in("r3") arg,
                out("r14") _, out("r15") _, out("r16") _, out("r17") _, out("r18") _,
                out("r19") _, out("r20") _, out("r21") _, out("r22") _, out("r23") _,
                out("r24") _, out("r25") _, out("r26") _, out("r27") _, out("r28") _,
                out("r29") _,
                out("f14") _, out("f15") _, out("f16") _, out("f17") _, out("f18") _,
                out("f19") _, out("f20") _, out("f21") _, out("f22") _, out("f23") _,
                out("f24") _, out("f25") _, out("f26") _, out("f27") _, out("f28") _,
                out("f29") _, out("f30") _, out("f31") _,
                out("v20") _, out("v21") _, out("v22") _, out("v23") _, out("v24") _,
                out("v25") _, out("v26") _, out("v27") _, out("v28") _, out("v29") _,
                out("v30") _, out("v31") _,
                out("cr2") _, out("cr3") _, out("cr4") _,
                clobber_abi("C"),
            );
        }
    }
}

const _: () = assert!(std::mem::offset_of!(Frame, got) == 496 && std::mem::align_of::<Frame>() == 16);
