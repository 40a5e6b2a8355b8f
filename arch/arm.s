// stackjob context switch for 32-bit Arm, AAPCS32 with the VFP hard-float
// variant (ELF, `eabihf`), GNU unified syntax, A32 or T32 (below).
//
// As arch/aarch64.s (read arch/x86_64.s first: the entry points, the
// return-predictor discipline and the unwind scheme are the same), except:
//
// Follows the Arm "Procedure Call Standard for the Arm Architecture"
// (AAPCS32), sections "Core registers" (5.1.1 in the classic numbering) and
// "VFP register usage conventions" (5.1.2.1), and "The Stack" (5.2.1):
//   * callee-saved: r4-r8, r10, r11 (FP in A32 code), r9 (v6; "platform
//     register" only on platforms that say so: Linux does not), sp (r13),
//     and d8-d15 (s16-s31); lr (r14) carries the return address, so it is
//     saved as the record's resume PC; d16-d31 (where present) and d0-d7
//     are caller-saved;
//   * FPSCR is "a global register" (5.1.2.1): its condition, cumulative
//     exception and QC bits are not preserved by calls, and its rounding,
//     flush-to-zero, default-NaN and trap-enable bits "may be modified by
//     calls to specific support functions that affect the global state of
//     the application", i.e. they are thread state, not callee-saved.
//     Nothing saves it here (switch_in_fresh is switch_in), and job and
//     resumer share one FPSCR (as FPCR on aarch64, not as MXCSR on
//     x86_64); TPIDRURO (TLS) is never touched;
//   * sp is 4-byte aligned always and 8-byte aligned at every public
//     interface (5.2.1.2): the record is 16 bytes and job tops are
//     16-byte aligned, so every call made from either side sees 8.
//
// Interworking (A32 / T32). The file is assembled in the state of the Rust
// code around it: src/arch/arm.rs puts `.arm` or `.thumb` in front of it,
// and the STACKJOB_FUNCTION macro that opens each entry point adds
// `.thumb_func` in T32 (build.rs tells T32 from thumbv7neon-* targets and
// from `+thumb-mode` in the rustflags; a mismatch found at run time makes
// is_capable() false). So every resume PC is of one state: the trampoline
// and the resume labels of the inline asm are both in it. switch_in leaves
// with `mov pc, r12`: in A32 that takes bit 0 as the state (Armv7) or
// ignores it (Armv6), and the `adr` results have it clear; in T32 it keeps
// the state whatever bit 0 says. Everything that may change state
// interworks: the resumer is resumed by `pop {{..., pc}}` (its `bl` set
// bit 0 of lr in T32 code), and the trampoline enters the entry function
// with `bx r7` (a T32 function's address has bit 0 set).
//
// Who saves what (the x86_64 scheme): the inline asm blocks that enter this
// file (src/arch/arm.rs) declare r4, r5, r8, r9, r10 and d8-d15 as outputs
// they clobber, and clobber_abi("C") covers r0-r3, r12, lr and d0-d7,
// d16-d31. The compiler therefore saves those itself, only where they are
// live. The asm saves what an inline asm block cannot name (r6, which LLVM
// may use as base pointer, r11, the A32 frame pointer, and r7, the T32
// frame pointer, saved in both modes so the record is one for all), and
// the resume PC. r6 and r7 also carry regs and the entry function of a
// FRESH record to the trampoline:
//
//   register            saved by                        where
//   r6, r7, r11         this file                       the record below
//   r4, r5, r8-r10,     the compiler, only if live      the Rust frame
//   d8-d15
//   sp                  this file                       regs.sp / regs.parent_sp
//   pc                  lr (resumer `bl`, job `adr`)    the record's +12
//
// Operands substituted by `global_asm!` in src/arch/arm.rs: the field
// offsets of `Regs` (SP, PARENT_SP). Register lists are written with
// doubled braces, `{{r6, r7}}`: the file is a `global_asm!` template, where
// a single brace opens an operand.
//
//   stackjob_switch_in(regs: *mut Regs)      called by Rust (`bl`).
//       r0 = regs, lr = return address into the resumer. Pushes the
//       resumer's record, stores sp in regs.parent_sp, pops the job's
//       record from regs.sp and jumps to the job's resume PC with
//       `mov pc, r12`.
//
//   stackjob_switch_out                       branch target, not a function.
//       Reached by `b` from the inline asm in src/arch/arm.rs with r0 = regs
//       and lr = the PC to resume at (set by `adr`: lr is clobbered there
//       anyway, and in lr the record is one `push`). Pushes the job's
//       record, stores sp in regs.sp, pops the resumer's record from
//       regs.parent_sp, its resume PC straight into pc: that `pop {{pc}}` is
//       the only return of the round trip and pairs with the resumer's `bl`.
//
//   stackjob_switch_exit                      branch target, not a function.
//       Reached by `b` from the job's body when it is done, with r0 = regs:
//       pops the resumer's record as switch_out does, saving nothing.
//
//   stackjob_trampoline                       first PC of every job.
//       r6 = regs, r7 = entry, r11 = 0: enters entry(regs) with `bx r7` and
//       lr pointing into the trampoline (no `blx`: see x86_64.s on why a
//       job is entered without a call).
//
// The saved record (16 bytes, 8-aligned; the same for both directions; the
// memory image of `push {{r6, r7, r11, lr}}`):
//
//   offset  size  content
//   +0      4     r6
//   +4      4     r7
//   +8      4     r11 (A32 frame pointer)
//   +12     4     resume PC (lr)
//   +16           = the stack pointer of the switched-out side before the push
//
// Stack states (addresses grow upwards):
//
//   FRESH (each new job)           PAUSED                      RUNNING
//   +----------------------+       +--------------------+      +--------------------+
//   | job slot (Rust)      |       | job slot           |      | job slot           |
//   +----------------------+       +--------------------+      +--------------------+
//   | pc = trampoline  +12 |       | job frames         |      | job frames         |
//   | r11 = 0           +8 |       |   ...              |      |   ...   <- sp      |
//   | r7 = entry fn     +4 |       | pause site    +12  |      |                    |
//   | r6 = &regs        +0 |       | r6, r7, r11 +0..+8 |      |                    |
//   +----------------------+ <- regs.sp         <- regs.sp      regs.parent_sp points
//   |  (unused)            |       |  (unused)          |      at the record on the
//   +----------------------+       +--------------------+      resumer's stack
//   | guard page PROT_NONE |       | guard page         |      | guard page         |
//   +----------------------+       +--------------------+      +--------------------+
//
// Unwind information. 32-bit Arm Linux unwinds with the Arm EHABI tables
// (.ARM.exidx/.ARM.extab, "Exception Handling ABI for the Arm Architecture"
// section 10.3, "Frame unwinding instructions"), not .eh_frame: libgcc's
// and LLVM's unwinders (panics, std::backtrace) read only those. EHABI
// describes one state per function, not one per instruction, so:
//   * the trampoline's entry says how to find the resumer, in four
//     opcodes (the EHABI equivalent of the DWARF expression in x86_64.s):
//       0x96        vsp = r6                  (r6 = &regs, as the entry
//                                              function's own unwind entry
//                                              restores it)
//       0x00+k      vsp += 4k + 4             (vsp = &regs.parent_sp;
//                                              k = (PARENT_SP - 4) / 4)
//       0x82 0x00   pop {{r13}}                 (vsp = regs.parent_sp: popping
//                                              r13 loads vsp, section 10.3
//                                              note on r13)
//       0x84 0x8c   pop {{r6, r7, r11, r14}}    (the resumer's record; vsp =
//                                              its sp before the push)
//     after which, r15 not having been popped, the unwinder continues at lr:
//     the resumer's return address;
//   * the three switch routines are `.cantunwind`: nothing unwinds through
//     them (panics are caught at the job root), and a sampled backtrace
//     stops there instead of reading a half-switched record.
// GNU `.cfi_*` directives would go to .debug_frame, which these unwinders
// never read; there are none here.

    .text
    .syntax unified

// The resumer's record, pushed and published as switch_in needs it (and a
// new-job entry would: one macro, as STACKJOB_SAVE_RESUMER in aarch64.s and
// riscv64.s): `push` of the record (r6, r7, r11 and the return address in
// lr, the table above), then regs.parent_sp = sp. No unwind opcodes: its
// user is `.cantunwind`.
.macro STACKJOB_SAVE_RESUMER
    push    {{r6, r7, r11, lr}}               // the resumer's record
    str     sp, [r0, #{PARENT_SP}]          // publish it
.endm

// ---------------------------------------------------------------------------
// stackjob_switch_in(regs: *mut Regs /* r0 */)
// ---------------------------------------------------------------------------
    .globl  stackjob_switch_in
    .hidden stackjob_switch_in
    .type   stackjob_switch_in, %function
    .p2align 4
STACKJOB_FUNCTION stackjob_switch_in
    .fnstart
    .cantunwind
    // sp: resumer stack (8-aligned); lr = return address into the resumer.
    // r0: regs of the job to resume; regs.sp = the job's saved record.
    STACKJOB_SAVE_RESUMER
    ldr     sp, [r0, #{SP}]                 // sp = the job's record
    pop     {{r6, r7, r11, r12}}              // r12 = the job's resume PC
    // sp: the job's stack exactly as at its pause site; r6, r7 and r11 are
    // the job's; r0 = regs; lr still holds the resumer's return address
    // (the job treats lr as clobbered). The only indirect branch of the
    // round trip, and not a return: never `bx lr` or `pop {{pc}}` into the
    // job, which would pop the resumer's entry off the return stack. `mov pc`
    // and not `bx`: the resume PC is always of this file's state (see the
    // header), and in T32 `mov pc` keeps the state whatever bit 0 says.
    mov     pc, r12
    .fnend
    .size   stackjob_switch_in, . - stackjob_switch_in

// ---------------------------------------------------------------------------
// stackjob_switch_out: r0 = regs, lr = job resume PC, sp = job stack
// (8-aligned: the inline asm block that branches here is placed like a
// call).
// ---------------------------------------------------------------------------
    .globl  stackjob_switch_out
    .hidden stackjob_switch_out
    .type   stackjob_switch_out, %function
    .p2align 4
STACKJOB_FUNCTION stackjob_switch_out
    .fnstart
    .cantunwind
    push    {{r6, r7, r11, lr}}               // the job's record
    str     sp, [r0, #{SP}]                 // publish it
    ldr     sp, [r0, #{PARENT_SP}]          // sp = the resumer's record
    // Restores r6, r7, r11 and returns from the resumer's
    // `bl stackjob_switch_in`: this return pairs with that `bl`.
    pop     {{r6, r7, r11, pc}}
    .fnend
    .size   stackjob_switch_out, . - stackjob_switch_out

// ---------------------------------------------------------------------------
// stackjob_switch_exit: r0 = regs, sp = job stack; the job's body is done
// and nothing on its stack is needed again.
// ---------------------------------------------------------------------------
    .globl  stackjob_switch_exit
    .hidden stackjob_switch_exit
    .type   stackjob_switch_exit, %function
    .p2align 4
STACKJOB_FUNCTION stackjob_switch_exit
    .fnstart
    .cantunwind
    ldr     sp, [r0, #{PARENT_SP}]          // sp = the resumer's record
    pop     {{r6, r7, r11, pc}}               // as in switch_out
    .fnend
    .size   stackjob_switch_exit, . - stackjob_switch_exit

// ---------------------------------------------------------------------------
// stackjob_trampoline: first PC of every job.
// Entered by switch_in's `mov pc, r12` with the FRESH record popped:
// r6 = regs, r7 = entry function,
// r11 = 0 (ends frame-pointer chains), sp = the 16-byte aligned top of the
// usable stack.
// ---------------------------------------------------------------------------
    .globl  stackjob_trampoline
    .hidden stackjob_trampoline
    .type   stackjob_trampoline, %function
    .p2align 4
STACKJOB_FUNCTION stackjob_trampoline
    .fnstart
    // See the header: vsp = *(r6 + PARENT_SP), then the resumer's record.
    .unwind_raw 0, 0x96, ({PARENT_SP} - 4) >> 2, 0x82, 0x00, 0x84, 0x8c
    mov     r0, r6                          // arg0 = regs
    // A return address inside this function, set by hand: the entry's frame
    // then unwinds through the entry above into the resumer, and no `blx`
    // leaves an entry on the return stack. `bx` interworks: a T32 entry
    // function's address has bit 0 set.
    adr     lr, .Ltrampoline_end
    bx      r7                              // entry(regs) -> !, ends in switch_exit
.Ltrampoline_end:
    // The unwinder looks up lr - 2: still inside this function.
    udf     #1
    .fnend
    .size   stackjob_trampoline, . - stackjob_trampoline
