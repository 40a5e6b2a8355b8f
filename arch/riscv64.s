// stackjob context switch for riscv64, RISC-V psABI LP64D/LP64F/LP64 (ELF).
//
// As arch/x86_64.s (read that header first: the entry points, the
// return-predictor discipline and the CFI scheme are the same), except:
//
// Follows the RISC-V ELF psABI, "Calling Convention", section "Integer
// Register Convention" and "Floating-point Register Convention":
//   * callee-saved: s0-s11 (x8, x9, x18-x27) and sp; ra (x1) carries the
//     return address, so it is saved as the record's resume PC;
//   * fs0-fs11 (f8, f9, f18-f27) are callee-saved up to the ABI's FLEN:
//     64 bits under LP64D, 32 bits under LP64F, none under LP64 (the Rust
//     side declares them clobbered only under a float ABI; build.rs finds
//     it);
//   * gp and tp are "unallocatable": never touched;
//   * fcsr has "thread storage duration": not saved, so a new job inherits
//     it and one stackjob_enter serves both pool modes (the Rust side
//     ignores fp_env);
//   * sp is 16-byte aligned at every call; the record size is a multiple of
//     16, so it stays aligned.
//
// Operands substituted by `global_asm!` in src/arch/riscv64.rs: the field
// offsets of `Regs` (SP, PARENT_SP), the record size (RECORD) and RESUME_PC,
// the resume PC's offset in the record as the cancel path reads it (only
// checked here: the record's layout is this file's).
//
//   stackjob_enter(regs: *mut Regs, top: *mut u8, entry: fn(*mut Regs) -> !)
//                                             extern "C", called by Rust
//       (`call`, i.e. `jalr ra`). a0 = regs, a1 = top, a2 = entry, ra =
//       return address. The new-job entry: saves the resumer's record and
//       stores sp in regs.parent_sp exactly as switch_in does, then builds
//       the job's first frame itself (the ENTERED state below, nothing laid
//       in memory beforehand) as the psABI "Integer Calling Convention"
//       has it at a procedure's entry: sp = top (16-byte aligned), a0 =
//       regs (the first argument), ra = stackjob_trampoline_return (a
//       return address inside the trampoline's FDE), s1 = regs (for the
//       trampoline's CFI), s0 = 0 (the end of the frame-pointer chain),
//       and jumps to entry with `jr a2`.
//
//   stackjob_switch_in(regs: *mut Regs)      extern "C", called by Rust
//       (`call`, i.e. `jalr ra`). a0 = regs, ra = return address. Saves the
//       resumer's record, stores sp in regs.parent_sp, restores the job's
//       record from regs.sp and jumps to the job's resume PC with `jr t1`.
//
//   stackjob_switch_out                       jump target, not a function.
//       Reached by `jump stackjob_switch_out, t2` from the inline asm in
//       src/arch/riscv64.rs with a0 = regs and t1 = the PC to resume at
//       (ra is clobbered there). Saves the job's record, stores sp in
//       regs.sp, restores the resumer's record from regs.parent_sp and
//       `ret`s from the resumer's call of stackjob_switch_in: that `ret`
//       pairs with that call, so the return-address stack stays balanced.
//       The resume PC is a label in that inline asm; the CANCEL_PATH bytes
//       just before it (src/arch/riscv64.rs) are the pause site's cancel
//       path, which a resume reaches only when the resumer moved the
//       saved PC (record +0) back onto it (arch::unwind_on_resume).
//
//   stackjob_switch_exit                      jump target, not a function.
//       Reached by `jump stackjob_switch_exit, t2` from the job's body when
//       it is done, with a0 = regs: restores the resumer's record as
//       switch_out does and `ret`s to it, saving nothing of the job (the
//       next job on the stack starts at stackjob_enter).
//
//   stackjob_trampoline                       unwind anchor, never executed.
//       A job's entry function is reached straight from stackjob_enter's
//       `jr a2` with ra = stackjob_trampoline_return, one instruction into
//       the trampoline; the trampoline's CFI continues the backtrace from
//       there into the resumer (see x86_64.s on why a job is entered
//       without a call).
//
// Why t1 and a2 for the jumps into the job: the RAS hints of the ISA manual
// (table "Return-address stack prediction hints encoded in register operands
// of a JALR instruction") treat x1 (ra) and x5 (t0) as link registers: `jr
// ra` or `jr t0` is predicted as a *return* and pops the return-address
// stack, which would unbalance it for the resumer's real `ret`. `jr t1` (x6)
// into a paused job and `jr a2` (x12) into a new one are plain indirect
// jumps (rd = x0, rs1 not a link register: no push, no pop), predicted by
// the branch target buffer. The inline asm hands the resume PC over in t1
// too, and uses t2 as the scratch register of its `jump` (auipc+jr, relaxed
// to `j` by the linker when in range: a bare `j` reaches only +-1 MiB). When
// Zicfilp lands, the resume label and the entry functions (indirect-jump
// targets already, like any function whose address is taken) are where its
// `lpad` goes.
//
// Who saves what (the x86_64 scheme): the inline asm blocks that enter this
// file (src/arch/riscv64.rs) declare s3-s11 and, under a float ABI,
// fs0-fs11 as outputs they clobber, plus clobber_abi("C") for every
// caller-saved register. The compiler therefore saves those itself, only
// where they are live. The asm saves what an inline asm block cannot
// declare clobbered (s0, the frame pointer, and s1, which LLVM may use as
// base pointer), the resume PC, and s2, which fills the record's fourth
// slot (the 16-byte alignment leaves it anyway; the compiler then never
// spills s2 around a switch):
//
//   register          saved by                        where
//   s0, s1, s2        this file                       the record below
//   s3-s11, fs0-fs11  the compiler, only if live      the Rust frame
//   sp                this file                       regs.sp / regs.parent_sp
//   pc                ra (resumer) / t1 (job)         the record's +0
//
// The saved record (RECORD = 32 bytes, 16-aligned; the same for both
// directions):
//
//   offset       size  content
//   +0           8     resume PC (ra)
//   +8           8     s0 (frame pointer)
//   +16          8     s1
//   +24          8     s2
//   +32                = the CFA of the switched-out frame
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
//   |                      |       | s0..s2  +8..+24    |      |                    |
//   | pc = entry fn        |       | pause site     +0  |      |                    |
//   | ra = trampoline_     |       +--------------------+      | regs.parent_sp     |
//   |      return          |         <- regs.sp                | points at the      |
//   | a0 = s1 = &regs      |       |  (unused)          |      | resumer's record   |
//   | s0 = 0               |       |                    |      |                    |
//   +----------------------+       +--------------------+      +--------------------+
//   | guard page PROT_NONE |       | guard page         |      | guard page         |
//   +----------------------+       +--------------------+      +--------------------+
//     regs.sp unused                 regs.sp = the record
//     (registers, not memory:
//     nothing is written below top)
//
// CFI encodings (DWARF 5 section 6.4.2 / 7.7.1): 0x0f DW_CFA_def_cfa_expression,
// 0x70+n DW_OP_bregN, 0x06 DW_OP_deref, 0x23 DW_OP_plus_uconst. The record size
// is written as a two-byte ULEB128 ((RECORD & 0x7f) | 0x80, RECORD >> 7; a
// padded encoding is valid ULEB128 when RECORD < 128). DWARF register numbers:
// x0-x31 0-31, f0-f31 32-63; a0 (x10) is 0x7a as a base register, s1 (x9) 0x79.

// s0-s2 from the record at sp; the same for every direction.
// The record's resume PC is at +0 (the table above); the cancel path in
// src/arch/riscv64.rs finds it there through RESUME_PC, checked here.
.if {RESUME_PC} - 0
    .error "RESUME_PC (src/arch/riscv64.rs) is not the record's resume-PC offset"
.endif

.macro STACKJOB_LOAD_CALLEE_SAVED
    ld      s0, 8(sp)
    ld      s1, 16(sp)
    ld      s2, 24(sp)
.endm

// s0-s2 into the record at sp, with their CFI.
.macro STACKJOB_SAVE_CALLEE_SAVED
    sd      s0, 8(sp)
    .cfi_offset s0, 8-{RECORD}
    sd      s1, 16(sp)
    .cfi_offset s1, 16-{RECORD}
    sd      s2, 24(sp)
    .cfi_offset s2, 24-{RECORD}
.endm

    .text

// The resumer's side of switch_in and enter (a0 = regs, ra = its return
// address): pushes its record and publishes it in regs.parent_sp, after
// which the CFA is found through it, whatever sp becomes.
.macro STACKJOB_SAVE_RESUMER
    addi    sp, sp, -{RECORD}
    .cfi_def_cfa_offset {RECORD}
    sd      ra, 0(sp)
    .cfi_offset ra, -{RECORD}
    STACKJOB_SAVE_CALLEE_SAVED
    // The resumer's record is complete: publish it.
    sd      sp, {PARENT_SP}(a0)
    // From here on sp leaves the resumer's stack: CFA = regs.parent_sp + RECORD.
    .cfi_escape 0x0f, 6, 0x7a, {PARENT_SP}, 0x06, 0x23, ({RECORD} & 0x7f) | 0x80, {RECORD} >> 7
.endm

// ---------------------------------------------------------------------------
// stackjob_switch_in(regs: *mut Regs /* a0 */)
// ---------------------------------------------------------------------------
    .globl  stackjob_switch_in
    .hidden stackjob_switch_in
    .type   stackjob_switch_in, @function
    .p2align 2
stackjob_switch_in:
    .cfi_startproc
    // sp: resumer stack; ra = return address into the Rust resumer.
    // a0: regs of the job to resume; regs.sp = the job's saved record.
    // s3-s11, fs0-fs11 and all caller-saved registers: free (clobbered).
    STACKJOB_SAVE_RESUMER
    ld      sp, {SP}(a0)                    // sp = the job's record
    STACKJOB_LOAD_CALLEE_SAVED
    ld      t1, 0(sp)                       // the job's resume PC
    addi    sp, sp, {RECORD}                // pop the record
    // sp: the job's stack exactly as it was at its pause site; s0-s2 are
    // the job's; a0 = regs; t1 = where the job continues (its resume
    // label). ra still holds the resumer's return address: the
    // job treats ra as clobbered.
    // The only indirect jump of the round trip: through t1, never ra or t0
    // (see the header: those would be predicted as a return).
    jr      t1
    .cfi_endproc
    .size   stackjob_switch_in, . - stackjob_switch_in

// ---------------------------------------------------------------------------
// stackjob_enter(regs: *mut Regs /* a0 */, top: *mut u8 /* a1 */,
//                entry /* a2 */)
// ---------------------------------------------------------------------------
    .globl  stackjob_enter
    .hidden stackjob_enter
    .type   stackjob_enter, @function
    .p2align 2
stackjob_enter:
    .cfi_startproc
    // sp: resumer stack; ra = return address into the Rust resumer.
    // a0: regs of the new job; a1: the top of its first frame (16-byte
    // aligned, nothing live at or below it); a2: its entry function.
    // s3-s11, fs0-fs11 and all caller-saved registers: free (clobbered).
    STACKJOB_SAVE_RESUMER
    mv      sp, a1                          // as at a procedure's entry: aligned
    mv      s1, a0                          // the trampoline's CFI reads regs here
    li      s0, 0                           // the end of the frame-pointer chain
    // A return address inside the trampoline's FDE, set by hand: the entry's
    // frame then unwinds through the trampoline's CFI into the resumer, and
    // no `jalr ra` pushes onto the return-address stack.
    lla     ra, stackjob_trampoline_return
    // entry(regs), on the job stack with fcsr left as the resumer's. a2
    // (x12) is not a link register: a plain jump, the RAS is left alone.
    jr      a2
    .cfi_endproc
    .size   stackjob_enter, . - stackjob_enter

// ---------------------------------------------------------------------------
// stackjob_switch_out: a0 = regs, t1 = job resume PC, sp = job stack
// (16-byte aligned: the inline asm block that jumps here is placed like a
// call); ra and t2 are dead (clobbered by that inline asm), as are s3-s11,
// fs0-fs11 and every caller-saved register.
// ---------------------------------------------------------------------------
    .globl  stackjob_switch_out
    .hidden stackjob_switch_out
    .type   stackjob_switch_out, @function
    .p2align 2
stackjob_switch_out:
    .cfi_startproc
    // No call happened: the CFA is sp itself and the job's "return address"
    // (its resume PC) lives in t1 until stored.
    .cfi_def_cfa sp, 0
    .cfi_register ra, t1
    addi    sp, sp, -{RECORD}
    .cfi_def_cfa_offset {RECORD}
    sd      t1, 0(sp)                       // +0: resume PC
    .cfi_offset ra, -{RECORD}
    STACKJOB_SAVE_CALLEE_SAVED
    sd      sp, {SP}(a0)                    // publish the job's record
    // From here on: CFA = regs.sp + RECORD.
    .cfi_escape 0x0f, 6, 0x7a, {SP}, 0x06, 0x23, ({RECORD} & 0x7f) | 0x80, {RECORD} >> 7
    ld      sp, {PARENT_SP}(a0)             // sp = the resumer's record
    STACKJOB_LOAD_CALLEE_SAVED
    ld      ra, 0(sp)
    addi    sp, sp, {RECORD}
    // sp: the resumer's stack as at its call of stackjob_switch_in; ra = the
    // return address of that call. This `ret` pairs with that call.
    ret
    .cfi_endproc
    .size   stackjob_switch_out, . - stackjob_switch_out

// ---------------------------------------------------------------------------
// stackjob_switch_exit: a0 = regs, sp = job stack; the job's body is done
// and nothing on its stack is needed again.
// ---------------------------------------------------------------------------
    .globl  stackjob_switch_exit
    .hidden stackjob_switch_exit
    .type   stackjob_switch_exit, @function
    .p2align 2
stackjob_switch_exit:
    .cfi_startproc
    // The outermost frame of a finished job: nothing to unwind into.
    .cfi_undefined ra
    ld      sp, {PARENT_SP}(a0)             // sp = the resumer's record
    // From here on this is the resumer's switch_in frame.
    .cfi_def_cfa sp, {RECORD}
    .cfi_offset ra, -{RECORD}
    .cfi_offset s0, 8-{RECORD}
    .cfi_offset s1, 16-{RECORD}
    .cfi_offset s2, 24-{RECORD}
    STACKJOB_LOAD_CALLEE_SAVED
    ld      ra, 0(sp)
    addi    sp, sp, {RECORD}
    // As in switch_out: this `ret` pairs with the resumer's call.
    ret
    .cfi_endproc
    .size   stackjob_switch_exit, . - stackjob_switch_exit

// ---------------------------------------------------------------------------
// stackjob_trampoline: the unwind anchor of every job, never executed.
// Its one instruction puts stackjob_trampoline_return, the fake return
// address stackjob_enter gives every entry function, inside this FDE (an
// unwinder looks up "return address - 1"). In the entry's caller frame that
// this FDE describes: s1 = regs (callee-saved, so the entry's own CFI
// recovers it), sp = top.
// ---------------------------------------------------------------------------
    .globl  stackjob_trampoline
    .hidden stackjob_trampoline
    .type   stackjob_trampoline, @function
    .p2align 2
stackjob_trampoline:
    .cfi_startproc
    // GDB refuses frames whose CFA is "inner" to the previous one unless the
    // frame is a signal frame; the resumer's stack may be anywhere.
    .cfi_signal_frame
    // CFA = regs.parent_sp + RECORD: the frame of the resumer's switch_in
    // call; the resumer's registers live in its record below that CFA.
    .cfi_escape 0x0f, 6, 0x79, {PARENT_SP}, 0x06, 0x23, ({RECORD} & 0x7f) | 0x80, {RECORD} >> 7
    .cfi_offset ra, -{RECORD}
    .cfi_offset s0, 8-{RECORD}
    .cfi_offset s1, 16-{RECORD}
    .cfi_offset s2, 24-{RECORD}
    // s3-s11 and fs0-fs11 hold nothing of the resumer's here (its inline
    // asm clobbers them).
    .cfi_undefined s3
    .cfi_undefined s4
    .cfi_undefined s5
    .cfi_undefined s6
    .cfi_undefined s7
    .cfi_undefined s8
    .cfi_undefined s9
    .cfi_undefined s10
    .cfi_undefined s11
    nop
    .globl  stackjob_trampoline_return
    .hidden stackjob_trampoline_return
stackjob_trampoline_return:
    // An entry function that returned (a bug) traps here.
    unimp
    .cfi_endproc
    .size   stackjob_trampoline, . - stackjob_trampoline

    
