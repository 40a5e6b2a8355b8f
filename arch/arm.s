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
//     Nothing saves it here, and job and resumer share one FPSCR (as FPCR
//     on aarch64, not as MXCSR on x86_64): a new job inherits it, and one
//     stackjob_enter serves both pool modes (the Rust side ignores fp_env);
//     TPIDRURO (TLS) is never touched;
//   * sp is 4-byte aligned always and 8-byte aligned at every public
//     interface (5.2.1.2): the record is 16 bytes and job tops are
//     16-byte aligned, so every call made from either side sees 8.
//
// Interworking (A32 / T32). The file is assembled in the state of the Rust
// code around it: src/arch/arm.rs puts `.arm` or `.thumb` in front of it,
// and the STACKJOB_FUNCTION macro that opens each entry point adds
// `.thumb_func` in T32 (build.rs tells T32 from thumbv7neon-* targets and
// from `+thumb-mode` in the rustflags; a mismatch found at run time makes
// is_capable() false). So every resume PC is of one state: the resume
// labels of the inline asm are in it. switch_in leaves with `mov pc, r12`:
// in A32 that takes bit 0 as the state (Armv7) or ignores it (Armv6), and
// the `adr` results have it clear; in T32 it keeps the state whatever bit 0
// says. Everything that may change state interworks: the resumer is resumed
// by `pop {{..., pc}}` (its `bl` set bit 0 of lr in T32 code), and
// stackjob_enter enters the entry function with `bx r2` (a T32 function's
// address has bit 0 set). The fake return address stackjob_enter gives the
// entry function is a return address of this file's state: arm_state! in
// src/arch/arm.rs sets STACKJOB_STATE_BIT to 1 in T32 (0 in A32), and
// `adr lr, .Ltrampoline_return + STACKJOB_STATE_BIT` sets bit 0 of lr
// exactly as a T32 `bl` would (a local label's address has it clear).
//
// Who saves what (the x86_64 scheme): the inline asm blocks that enter this
// file (src/arch/arm.rs) declare r4, r5, r8, r9, r10 and d8-d15 as outputs
// they clobber, and clobber_abi("C") covers r0-r3, r12, lr and d0-d7,
// d16-d31. The compiler therefore saves those itself, only where they are
// live. The asm saves what an inline asm block cannot name (r6, which LLVM
// may use as base pointer, r11, the A32 frame pointer, and r7, the T32
// frame pointer, saved in both modes so the record is one for all), and
// the resume PC. In a new job r6 holds regs (the trampoline's unwind entry
// reads it there), and r7 and r11 are 0:
//
//   register            saved by                        where
//   r6, r7, r11         this file                       the record below
//   r4, r5, r8-r10,     the compiler, only if live      the Rust frame
//   d8-d15
//   sp                  this file                       regs.sp / regs.parent_sp
//   pc                  lr (resumer `bl`, job `adr`)    the record's +12
//   FPSCR               nobody (thread state)           - (job and resumer share it)
//
// Operands substituted by `global_asm!` in src/arch/arm.rs: the field
// offsets of `Regs` (SP, PARENT_SP) and RESUME_PC, the resume PC's offset in
// the record as the cancel path reads it (only checked here: the record's
// layout is this file's). Register lists are written with
// doubled braces, `{{r6, r7}}`: the file is a `global_asm!` template, where
// a single brace opens an operand.
//
//   stackjob_enter(regs: *mut Regs, top: *mut u8, entry: fn(*mut Regs) -> !)
//                                             called by Rust (`bl`).
//       r0 = regs, r1 = top, r2 = entry, lr = return address into the
//       resumer. The new-job entry: pushes the resumer's record and stores
//       sp in regs.parent_sp exactly as switch_in does, then builds the
//       job's first frame itself (the ENTERED state below, nothing laid in
//       memory beforehand) as AAPCS32 has it at a call (sp 8-byte aligned
//       at a public interface, 5.2.1.2; the return address in lr, 5.3.1;
//       the first argument in r0, 5.5): sp = top, r0 = regs, lr =
//       stackjob_trampoline_return (a return address of this file's state
//       inside the trampoline's unwind entry), r6 = regs (for that entry),
//       r7 = r11 = 0 (the end of the T32 and A32 frame-pointer chains), and
//       enters entry with `bx r2`.
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
//       The resume PC is a label in that inline asm; the CANCEL_PATH bytes
//       just before it (src/arch/arm.rs) are the pause site's cancel
//       path, which a resume reaches only when the resumer moved the
//       saved PC (record +12) back onto it (arch::unwind_on_resume).
//
//   stackjob_switch_exit                      branch target, not a function.
//       Reached by `b` from the job's body when it is done, with r0 = regs:
//       pops the resumer's record as switch_out does, saving nothing (the
//       next job on the stack starts at stackjob_enter).
//
//   stackjob_trampoline                       unwind anchor, never executed.
//       A job's entry function is reached straight from stackjob_enter's
//       `bx r2` with lr = stackjob_trampoline_return, one instruction into
//       the trampoline; the trampoline's unwind entry continues the
//       backtrace from there into the resumer (no `blx`: see x86_64.s on
//       why a job is entered without a call).
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
// Stack states (addresses grow upwards; the job stack is one mmap with a
// PROT_NONE guard page at its lowest page, and the Rust job slot at its top):
//
//   ENTERED (a new job's first     PAUSED                      RUNNING
//   instruction, built by enter)
//   +----------------------+       +--------------------+      +--------------------+
//   | job slot (Rust)      |       | job slot           |      | job slot           |
//   +----------------------+ top   +--------------------+      +--------------------+
//   |                      |<- sp  | job frames         |      | job frames         |
//   |  (unused)            |       |   ...              |      |   ...   <- sp      |
//   |                      |       | pause site    +12  |      |                    |
//   | pc = entry fn        |       | r6, r7, r11 +0..+8 |      |                    |
//   | lr = trampoline_     |       +--------------------+      | regs.parent_sp     |
//   |      return          |         <- regs.sp                | points at the      |
//   | r0 = r6 = &regs      |       |  (unused)          |      | resumer's record   |
//   | r7 = r11 = 0         |       |                    |      |                    |
//   +----------------------+       +--------------------+      +--------------------+
//   | guard page PROT_NONE |       | guard page         |      | guard page         |
//   +----------------------+       +--------------------+      +--------------------+
//     regs.sp unused                 regs.sp = the record
//     (registers, not memory:
//     nothing is written below top)
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
//   * the trampoline is never executed: its entry covers the fake return
//     address stackjob_enter gives every entry function (one instruction
//     in, so that the unwinders' "return address - 2" lookup (libgcc's
//     get_eit_entry) lands in it in A32 and T32 alike);
//   * stackjob_enter and the three switch routines are `.cantunwind`:
//     nothing unwinds through them (panics are caught at the job root),
//     and a sampled backtrace stops there instead of reading a
//     half-switched record.
// GNU `.cfi_*` directives would go to .debug_frame, which these unwinders
// never read; there are none here.

// The record's resume PC is at +12 (the table above); the cancel path in
// src/arch/arm.rs finds it there through RESUME_PC, checked here.
.if {RESUME_PC} - 12
    .error "RESUME_PC (src/arch/arm.rs) is not the record's resume-PC offset"
.endif

    .text
    .syntax unified

// The resumer's record, pushed and published as switch_in and
// stackjob_enter both need it: `push` of the record (r6, r7, r11 and the
// return address in lr, the table above), then regs.parent_sp = sp. No
// unwind opcodes: both users are `.cantunwind`.
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
// stackjob_enter(regs: *mut Regs /* r0 */, top: *mut u8 /* r1 */,
//                entry /* r2 */)
// ---------------------------------------------------------------------------
    .globl  stackjob_enter
    .hidden stackjob_enter
    .type   stackjob_enter, %function
    .p2align 4
STACKJOB_FUNCTION stackjob_enter
    .fnstart
    .cantunwind
    // sp: resumer stack (8-aligned); lr = return address into the resumer.
    // r0: regs of the new job; r1: the top of its first frame (16-byte
    // aligned, nothing live at or below it); r2: its entry function (bit 0
    // set if it is T32 code). r4, r5, r8-r10, d8-d15 and all caller-saved
    // registers: free (clobbered).
    STACKJOB_SAVE_RESUMER
    mov     sp, r1                          // as at a public interface: aligned
    mov     r6, r0                          // the trampoline's unwind entry reads regs here
    mov     r7, #0                          // the end of the T32 frame-pointer chain
    mov     r11, #0                         // the end of the A32 frame-pointer chain
    // A return address inside the trampoline's unwind entry, set by hand and
    // of this file's state: the entry's frame then unwinds through the
    // trampoline into the resumer, and no `blx` leaves an entry on the
    // return stack.
    adr     lr, .Ltrampoline_return + STACKJOB_STATE_BIT
    // entry(regs), on the job stack with FPSCR left as the resumer's. `bx`
    // interworks (bit 0 of r2 is the entry's state) and, not being `bx lr`,
    // is an indirect branch to the predictor, not a return. Never returns
    // here: the job's first switch out pops the resumer's record into pc,
    // the return of its `bl stackjob_enter`.
    bx      r2                              // entry(regs) -> !, ends in switch_exit
    .fnend
    .size   stackjob_enter, . - stackjob_enter

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
// stackjob_trampoline: the unwind anchor of every job, never executed.
// Its first instruction puts stackjob_trampoline_return, the fake return
// address stackjob_enter gives every entry function, inside this unwind
// entry (an unwinder looks up "return address - 2"). In the entry's caller
// frame that this entry describes: r6 = regs (callee-saved, so the entry's
// own unwind entry recovers it), sp = top.
// ---------------------------------------------------------------------------
    .globl  stackjob_trampoline
    .hidden stackjob_trampoline
    .type   stackjob_trampoline, %function
    .p2align 4
STACKJOB_FUNCTION stackjob_trampoline
    .fnstart
    // See the header: vsp = *(r6 + PARENT_SP), then the resumer's record.
    .unwind_raw 0, 0x96, ({PARENT_SP} - 4) >> 2, 0x82, 0x00, 0x84, 0x8c
    // One instruction (4 bytes in A32, 2 in T32): lr - 2 is at or after the
    // start of this function in either state.
    nop
    .globl  stackjob_trampoline_return
    .hidden stackjob_trampoline_return
stackjob_trampoline_return:
.Ltrampoline_return:
    // An entry function that returned (a bug) traps here.
    udf     #1
    .fnend
    .size   stackjob_trampoline, . - stackjob_trampoline
