// stackjob context switch for aarch64, AAPCS64 (ELF), GNU syntax.
//
// As arch/x86_64.s (read that header first: the entry points, the
// return-predictor discipline and the CFI scheme are the same), except:
//
// Follows the Arm "Procedure Call Standard for the Arm 64-bit Architecture"
// (AAPCS64), section 6.1.1 "General-purpose Registers" and 6.1.2 "SIMD and
// Floating-Point registers", and section 6.4.5.1 (SP alignment):
//   * callee-saved: x19-x28, x29 (FP), sp, and the low 64 bits of v8-v15
//     (d8-d15); x30 (LR) carries the return address, so it is saved as the
//     record's resume PC;
//   * x18 is the platform register: never touched;
//   * FPCR is "global" thread state (6.1.2: changed only by functions whose
//     documented purpose is to change it), FPSR and NZCV are not preserved:
//     neither is saved, so a new job inherits the FPCR in force and there
//     is one variant of each entry point (no _fpenv / _shared pair);
//     TPIDR_EL0 untouched;
//   * sp is 16-byte aligned at every instruction (the record is 32 bytes,
//     so it stays aligned while the record is pushed and popped).
//
// Who saves what (the x86_64 scheme): the inline asm blocks that enter this
// file (src/arch/aarch64.rs) declare x21-x28 as outputs they clobber, and
// clobber_abi("C") covers x0-x17, x30 and all of v0-v31 (the upper halves
// of v8-v15 are caller-saved, so whole registers are clobbered). The
// compiler therefore saves x21-x28 and d8-d15 itself, only where they are
// live. The asm saves what an inline asm block cannot declare clobbered
// (x19, which LLVM may use as base pointer, and x29, the frame pointer),
// the resume PC, and x20, which fills the record to 32 bytes (one `stp`
// saves it with x19):
//
//   register          saved by                        where
//   x19, x20, x29     this file                       the record below
//   x21-x28, d8-d15   the compiler, only if live      the Rust frame
//   sp                this file                       regs.sp / regs.parent_sp
//   pc                x30 (resumer) / x1 (job)        the record's +8
//
// Operands substituted by `global_asm!` in src/arch/aarch64.rs: the field
// offsets of `Regs` (SP, PARENT_SP), the record size (RECORD) and RESUME_PC,
// the resume PC's offset in the record as the cancel path reads it (only
// checked here: the record's layout is this file's).
//
//   stackjob_enter(regs: *mut Regs, top: *mut u8, entry: fn(*mut Regs) -> !)
//                                            called by Rust (`bl`).
//       The new-job entry. x0 = regs, x1 = top (16-byte aligned, nothing
//       live at or below it), x2 = entry, x30 = return address into the
//       resumer. Saves the resumer's record exactly as switch_in does and
//       stores sp in regs.parent_sp, then builds the job's first frame in
//       registers alone: sp = top, x30 = stackjob_trampoline_return (a fake
//       return address, for unwinders; never returned to), x19 = regs (the
//       trampoline's CFI reads regs.parent_sp through it), x29 = 0 (the end
//       of the frame-pointer chain), x0 = regs, and jumps to `entry` with
//       `br x16` (x16 = x2; entry is not passed in x16 itself, because a
//       linker veneer on the `bl` here may use x16 and x17). Nothing is
//       written to the job's stack and regs.sp is neither read nor written.
//       The new job inherits the resumer's FPCR, as a called function would.
//
//   stackjob_switch_in(regs: *mut Regs)      extern "C", called by Rust (`bl`).
//       x0 = regs, x30 = return address into the resumer. Saves the
//       resumer's record, stores sp in regs.parent_sp, restores the paused
//       job's record from regs.sp and jumps to its resume PC with `br x17`.
//
//   stackjob_switch_out                       jump target, not a function.
//       Reached by `b` from the inline asm in src/arch/aarch64.rs with
//       x0 = regs and x1 = the PC to resume at (x30 is clobbered there).
//       Saves the job's record, stores sp in regs.sp, restores the
//       resumer's record from regs.parent_sp and `ret`s from the resumer's
//       `bl stackjob_switch_in` (or `bl stackjob_enter`). That `ret` is the
//       only return of the round trip and pairs with that `bl`: the
//       return-address stack stays balanced. No `blr`/`ret` ever leads into
//       the job: only switch_in's `br x17` (into a paused job) and
//       stackjob_enter's `br x16` (into a new one).
//       The resume PC is a label in that inline asm; the CANCEL_PATH bytes
//       just before it (src/arch/aarch64.rs) are the pause site's cancel
//       path, which a resume reaches only when the resumer moved the
//       saved PC (record +8) back onto it (arch::unwind_on_resume).
//
//   stackjob_switch_exit                      branch target, not a function.
//       Reached by `b` from the job's body when it is done, with x0 = regs:
//       restores the resumer's record as switch_out does and `ret`s to it,
//       saving nothing of the job (the next job on the stack starts at
//       stackjob_enter).
//
//   stackjob_trampoline                       unwind anchor, never executed.
//       A job's entry function is reached straight from stackjob_enter's
//       `br x16` (x0 and x19 = regs) with x30 = stackjob_trampoline_return,
//       one instruction into the trampoline's FDE; the trampoline's CFI
//       continues the backtrace from there into the resumer. The job is
//       entered with a jump and a hand-set x30, not a `blr`: see x86_64.s on
//       why a job is entered without a call.
//
// Branch Target Identification (Armv8.5-BTI; `bti` is a hint, a NOP on
// older cores). Every indirect-branch target in this file has a landing pad:
//   stackjob_enter        `bti c`: as stackjob_switch_in.
//   stackjob_switch_in    `bti c`: Rust may call it through a pointer (blr).
//   stackjob_switch_out   `bti c`: only ever reached by a direct `b`, but a
//                         linker range-extension veneer or PLT stub reaches
//                         its target with `br x16`/`br x17`, which `bti c`
//                         accepts.
//   stackjob_switch_exit  `bti c`: as stackjob_switch_out.
//   the job's resume label (inline asm) `bti j`: reached by `br x17`.
//   the job's entry function (Rust)  `bti c`, as rustc emits it for any
//                         function whose address is taken: reached by
//                         stackjob_enter's `br x16`.
//   stackjob_trampoline   none: never branched to (only its address is
//                         used, as a return address no one returns to).
// `br x16` and `br x17` set BTYPE 01, which both `bti j` and `bti c`
// accept (a `br` through any other register sets BTYPE 11, which `bti c`
// refuses: that is why both jumps into a job go through x16 or x17); the
// jump targets of this file say `bti j` because a jump is what reaches
// them. `ret` needs no pad. Pointer authentication: nothing here signs or
// authenticates x30 (`paciasp`/`autiasp` use sp as the modifier, and sp
// changes stacks here);
// the return address saved by switch_in is the raw one `bl` produced, and
// each Rust frame signs and checks its own LR on its own stack, which a
// switch restores bit for bit.
// The BTI GNU property note is not written here: it covers a whole object
// file, and this asm shares its object with Rust code. rustc emits the note
// (BTI, PAC) for every object, this one included, exactly when the crate is
// built with `-Zbranch-protection=bti,...`, i.e. when the Rust code has its
// pads too; the pads above make that claim true for the asm. A note of our
// own would either mark pad-less Rust code (without the flag) or be a second
// NT_GNU_PROPERTY_TYPE_0 note in the same section (with it).
//
// The saved record (32 bytes, 16-aligned; the same for both directions):
//
//   offset  size  content
//   +0      8     x29 (frame pointer)     \ a conventional AAPCS64 frame
//   +8      8     resume PC (x30)         / record (fp, lr)
//   +16     8     x19
//   +24     8     x20
//   +32           = the CFA of the switched-out frame
//
// Stack states (addresses grow upwards):
//
//   ENTERED (a new job's first     PAUSED                      RUNNING
//   instruction, built by enter)
//   +----------------------+       +--------------------+      +--------------------+
//   | job slot (Rust)      |       | job slot           |      | job slot           |
//   +----------------------+ top   +--------------------+      +--------------------+
//   |  (unused)            | = sp  | job frames         |      | job frames         |
//   |                      |       |   ...              |      |   ...   <- sp      |
//   | in registers only:   |       | x19, x20  +16, +24 |      |                    |
//   | pc = entry fn        |       | pause site     +8  |      |                    |
//   | x0 = x19 = &regs     |       | x29            +0  |      |                    |
//   | x29 = 0              |       +--------------------+      |                    |
//   | x30 = stackjob_      |       |  (unused)          |      | regs.parent_sp     |
//   |   trampoline_return  |       |                    |      | points at the      |
//   |                      |       |                    |      | resumer's record   |
//   +----------------------+       +--------------------+      +--------------------+
//   | guard page PROT_NONE |       | guard page         |      | guard page         |
//   +----------------------+       +--------------------+      +--------------------+
//     regs.sp unused;                regs.sp = the record
//     regs.parent_sp = the
//     resumer's record
//
// CFI encodings (DWARF 5 section 6.4.2 / 7.7.1): 0x0f DW_CFA_def_cfa_expression,
// 0x70+n DW_OP_bregN, 0x06 DW_OP_deref, 0x23 DW_OP_plus_uconst. The record size
// is written as a two-byte ULEB128 ((RECORD & 0x7f) | 0x80, RECORD >> 7;
// RECORD < 16384 is asserted in Rust). DWARF register numbers: x0-x30 0-30,
// sp 31, d8-d15 72-79; x0 is 0x70 as a base register, x19 is 0x83.

// The record's resume PC is at +8 (the table above); the cancel path in
// src/arch/aarch64.rs finds it there through RESUME_PC, checked here.
.if {RESUME_PC} - 8
    .error "RESUME_PC (src/arch/aarch64.rs) is not the record's resume-PC offset"
.endif

    .text

// x19 and x20 from the record at sp; the same for every direction.
.macro STACKJOB_LOAD_CALLEE_SAVED
    ldp     x19, x20, [sp, #16]
.endm

// The resumer's side of switch_in and enter (x0 = regs, x30 = its return
// address): pushes its record and publishes it in regs.parent_sp, after
// which the CFA is found through it, whatever sp becomes.
.macro STACKJOB_SAVE_RESUMER
    stp     x29, x30, [sp, #-{RECORD}]!
    .cfi_def_cfa_offset {RECORD}
    .cfi_offset x29, -{RECORD}
    .cfi_offset x30, 8-{RECORD}
    stp     x19, x20, [sp, #16]
    .cfi_offset x19, 16-{RECORD}
    .cfi_offset x20, 24-{RECORD}
    // The resumer's record is complete: publish it.
    mov     x9, sp
    str     x9, [x0, #{PARENT_SP}]
    // From here on sp leaves the resumer's stack: CFA = regs.parent_sp + RECORD.
    .cfi_escape 0x0f, 6, 0x70, {PARENT_SP}, 0x06, 0x23, ({RECORD} & 0x7f) | 0x80, {RECORD} >> 7
.endm

// ---------------------------------------------------------------------------
// stackjob_switch_in(regs: *mut Regs /* x0 */)
// ---------------------------------------------------------------------------
    .globl  stackjob_switch_in
    .hidden stackjob_switch_in
    .type   stackjob_switch_in, %function
    .p2align 4
stackjob_switch_in:
    .cfi_startproc
    // sp: resumer stack; x30 = return address into the Rust resumer.
    // x0: regs of the job to resume; regs.sp = the job's saved record.
    bti     c
    STACKJOB_SAVE_RESUMER
    ldr     x9, [x0, #{SP}]
    mov     sp, x9                          // sp = the job's record
    STACKJOB_LOAD_CALLEE_SAVED
    ldp     x29, x17, [sp], #{RECORD}       // x17 = the job's resume PC; pop
    // sp: the job's stack exactly as it was at its pause site; x19, x20
    // and x29 are the job's; x0 = regs; x17 = where the job
    // continues (its `bti j` resume label). x30 still
    // holds the resumer's return address: the job treats x30 as clobbered.
    // The only indirect branch of the round trip; never `ret` into the job
    // (it would pop the resumer's return address off the predictor).
    br      x17
    .cfi_endproc
    .size   stackjob_switch_in, . - stackjob_switch_in

// ---------------------------------------------------------------------------
// stackjob_enter(regs: *mut Regs /* x0 */, top: *mut u8 /* x1 */,
//                entry /* x2 */)
// ---------------------------------------------------------------------------
    .globl  stackjob_enter
    .hidden stackjob_enter
    .type   stackjob_enter, %function
    .p2align 4
stackjob_enter:
    .cfi_startproc
    // sp: resumer stack; x30 = return address into the Rust resumer.
    // x0: regs of the new job; x1: the top of its first frame (16-byte
    // aligned, nothing live at or below it); x2: its entry function.
    // x21-x28 and all caller-saved registers: free (declared clobbered).
    bti     c
    STACKJOB_SAVE_RESUMER
    mov     sp, x1                          // sp = top: the job's stack, empty
    mov     x19, x0                         // the trampoline's CFI reads regs here
    mov     x29, xzr                        // the end of the frame-pointer chain
    // The fake return address: inside the trampoline's FDE, so that the
    // entry's frame unwinds into the resumer; no `blr` leaves an entry on
    // the return-address stack.
    adr     x30, .Ltrampoline_return        // = stackjob_trampoline_return
    mov     x16, x2
    // sp = top (16-byte aligned); x0 = x19 = regs; x20 still holds the
    // resumer's (saved above; the entry preserves it as any callee would).
    // The entry's first instruction is its `bti c` (where BTI is on),
    // which accepts `br x16`. Never returns here: the job's first switch out
    // `ret`s to the resumer's `bl stackjob_enter`, which it pairs with.
    br      x16                             // entry(regs) -> !, ends in switch_exit
    .cfi_endproc
    .size   stackjob_enter, . - stackjob_enter

// ---------------------------------------------------------------------------
// stackjob_switch_out: x0 = regs, x1 = job resume PC, sp = job stack
// (16-byte aligned, as always on aarch64); x30 is dead (clobbered by the
// inline asm that branches here).
// ---------------------------------------------------------------------------
    .globl  stackjob_switch_out
    .hidden stackjob_switch_out
    .type   stackjob_switch_out, %function
    .p2align 4
stackjob_switch_out:
    .cfi_startproc
    // No call happened: the CFA is sp itself and the job's "return address"
    // (its resume PC) lives in x1 until stored.
    .cfi_def_cfa sp, 0
    .cfi_register x30, x1
    bti     c
    stp     x29, x1, [sp, #-{RECORD}]!      // +0 x29, +8 resume PC
    .cfi_def_cfa_offset {RECORD}
    .cfi_offset x29, -{RECORD}
    .cfi_offset x30, 8-{RECORD}
    stp     x19, x20, [sp, #16]
    .cfi_offset x19, 16-{RECORD}
    .cfi_offset x20, 24-{RECORD}
    mov     x9, sp
    str     x9, [x0, #{SP}]                 // publish the job's record
    // From here on: CFA = regs.sp + RECORD.
    .cfi_escape 0x0f, 6, 0x70, {SP}, 0x06, 0x23, ({RECORD} & 0x7f) | 0x80, {RECORD} >> 7
    ldr     x9, [x0, #{PARENT_SP}]
    mov     sp, x9                          // sp = the resumer's record
    STACKJOB_LOAD_CALLEE_SAVED
    ldp     x29, x30, [sp], #{RECORD}
    // sp: the resumer's stack as at its `bl stackjob_switch_in` (or
    // `bl stackjob_enter`); x30 = the return address of that `bl`. This
    // `ret` pairs with that `bl`.
    ret
    .cfi_endproc
    .size   stackjob_switch_out, . - stackjob_switch_out

// ---------------------------------------------------------------------------
// stackjob_switch_exit: x0 = regs, sp = job stack; the job's body is done
// and nothing on its stack is needed again.
// ---------------------------------------------------------------------------
    .globl  stackjob_switch_exit
    .hidden stackjob_switch_exit
    .type   stackjob_switch_exit, %function
    .p2align 4
stackjob_switch_exit:
    .cfi_startproc
    // The outermost frame of a finished job: nothing to unwind into.
    .cfi_undefined x30
    bti     c
    ldr     x9, [x0, #{PARENT_SP}]
    mov     sp, x9                          // sp = the resumer's record
    // From here on this is the resumer's switch_in frame.
    .cfi_def_cfa sp, {RECORD}
    .cfi_offset x29, -{RECORD}
    .cfi_offset x30, 8-{RECORD}
    STACKJOB_LOAD_CALLEE_SAVED
    ldp     x29, x30, [sp], #{RECORD}
    // As in switch_out: this `ret` pairs with the resumer's `bl`.
    ret
    .cfi_endproc
    .size   stackjob_switch_exit, . - stackjob_switch_exit

// ---------------------------------------------------------------------------
// stackjob_trampoline: the unwind anchor of every job; never executed.
// A job's entry function runs with x19 = regs, x29 = 0 and, as its return
// address in x30, stackjob_trampoline_return (one instruction into this FDE, so
// an unwinder's "return address - 1" lands here). It never returns: it ends
// in switch_exit. No landing pad: nothing branches here.
// ---------------------------------------------------------------------------
    .globl  stackjob_trampoline
    .hidden stackjob_trampoline
    .type   stackjob_trampoline, %function
    .p2align 4
stackjob_trampoline:
    .cfi_startproc
    // GDB refuses frames whose CFA is "inner" to the previous one unless the
    // frame is a signal frame; the resumer's stack may be anywhere.
    .cfi_signal_frame
    // CFA = regs.parent_sp + RECORD: the frame of the resumer's
    // stackjob_enter or switch_in call; the resumer's registers live in its
    // record below that CFA.
    .cfi_escape 0x0f, 6, 0x83, {PARENT_SP}, 0x06, 0x23, ({RECORD} & 0x7f) | 0x80, {RECORD} >> 7
    .cfi_offset x29, -{RECORD}
    .cfi_offset x30, 8-{RECORD}
    .cfi_offset x19, 16-{RECORD}
    .cfi_offset x20, 24-{RECORD}
    // x21-x28 and d8-d15 hold nothing of the resumer's here (its inline
    // asm clobbers them).
    .cfi_undefined x21
    .cfi_undefined x22
    .cfi_undefined x23
    .cfi_undefined x24
    .cfi_undefined x25
    .cfi_undefined x26
    .cfi_undefined x27
    .cfi_undefined x28
    .cfi_undefined d8
    .cfi_undefined d9
    .cfi_undefined d10
    .cfi_undefined d11
    .cfi_undefined d12
    .cfi_undefined d13
    .cfi_undefined d14
    .cfi_undefined d15
    nop
    .globl  stackjob_trampoline_return
    .hidden stackjob_trampoline_return
stackjob_trampoline_return:
.Ltrampoline_return:
    // An entry function that returned (a bug) traps here.
    brk     #0x1
    .cfi_endproc
    .size   stackjob_trampoline, . - stackjob_trampoline
