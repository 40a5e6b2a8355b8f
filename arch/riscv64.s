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
//     64 bits under LP64D (fsd/fld), 32 bits under LP64F (fsw/flw), none
//     under LP64. The Rust side passes FLEN = 8, 4 or 0 (build.rs finds
//     the float ABI; global_asm has no preprocessor, so `.if` selects);
//   * gp and tp are "unallocatable": never touched;
//   * fcsr has "thread storage duration": not saved, so inherit_fp_env is a
//     no-op;
//   * sp is 16-byte aligned at every call; the record size is a multiple of
//     16, so it stays aligned.
//
// Operands substituted by `global_asm!` in src/arch/riscv64.rs: the field
// offsets of `Regs` (SP, PARENT_SP), the record size (RECORD) and FLEN.
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
//
//   stackjob_switch_exit                      jump target, not a function.
//       Reached by `jump stackjob_switch_exit, t2` from the job's body when
//       it is done, with a0 = regs: restores the resumer's record as
//       switch_out does and `ret`s to it, saving nothing of the job (the
//       next job gets a FRESH record).
//
//   stackjob_trampoline                       first PC of every job.
//       s1 = regs, s2 = entry, s0 = 0: enters entry(regs) with `jr s2` and
//       ra pointing into the trampoline (s2 is x18, not a link register, so
//       the return-address stack is left alone: see x86_64.s on why a job
//       is entered without a call).
//
// Why t1 for the jump into the job: the RAS hints of the ISA manual (table
// "Return-address stack prediction hints encoded in register operands of a
// JALR instruction") treat x1 (ra) and x5 (t0) as link registers: `jr ra` or
// `jr t0` is predicted as a *return* and pops the return-address stack,
// which would unbalance it for the resumer's real `ret`. `jr t1` (x6) is a
// plain indirect jump, predicted by the branch target buffer. The inline asm
// hands the resume PC over in t1 too, and uses t2 as the scratch register of
// its `jump` (auipc+jr, relaxed to `j` by the linker when in range: a bare
// `j` reaches only +-1 MiB). When Zicfilp lands, the resume label and the
// trampoline are where its `lpad` goes.
//
// The saved record (RECORD = 112 + 12 * FLEN bytes: 208 for LP64D, 160 for
// LP64F, 112 for LP64; the same for both directions):
//
//   offset       size  content
//   +0           8     resume PC (ra)
//   +8           8     s0 (frame pointer)
//   +16          8     s1
//   +24          8     s2
//   +32          8     s3
//   +40          8     s4
//   +48          8     s5
//   +56          8     s6
//   +64          8     s7
//   +72          8     s8
//   +80          8     s9
//   +88          8     s10
//   +96          8     s11
//   +104         8     zero (padding to 16; written, so that a record never
//                      carries stale bytes of deeper, dead frames into the
//                      live part of a stack, which scrubbing leaves alone)
//   +112+i*FLEN  FLEN  fs<i>, i = 0..11 (absent when FLEN = 0)
//   +RECORD            = the CFA of the switched-out frame
//
// Stack states (addresses grow upwards):
//
//   FRESH (each new job)           PAUSED                      RUNNING
//   +----------------------+       +--------------------+      +--------------------+
//   | job slot (Rust)      |       | job slot           |      | job slot           |
//   +----------------------+       +--------------------+      +--------------------+
//   | fs0..fs11 (stale)    |       | job frames         |      | job frames         |
//   | s3..s11 (stale)      |       |   ...              |      |   ...              |
//   | s2 = entry fn    +24 |       | fs0..fs11   +112.. |      |   ...   <- sp      |
//   | s1 = &regs       +16 |       | s0..s11  +8..+96   |      |                    |
//   | s0 = 0            +8 |       | pause site     +0  |      |                    |
//   | pc = trampoline   +0 |       +--------------------+      |                    |
//   +----------------------+ <- regs.sp         <- regs.sp      regs.parent_sp points
//   |  (unused)            |       |  (unused)          |      at the record on the
//   +----------------------+       +--------------------+      resumer's stack
//   | guard page PROT_NONE |       | guard page         |      | guard page         |
//   +----------------------+       +--------------------+      +--------------------+
//
// CFI encodings (DWARF 5 section 6.4.2 / 7.7.1): 0x0f DW_CFA_def_cfa_expression,
// 0x70+n DW_OP_bregN, 0x06 DW_OP_deref, 0x23 DW_OP_plus_uconst. The record size
// is written as a two-byte ULEB128 ((RECORD & 0x7f) | 0x80, RECORD >> 7; a
// padded encoding is valid ULEB128 when RECORD < 128). DWARF register numbers:
// x0-x31 0-31, f0-f31 32-63; a0 (x10) is 0x7a as a base register, s1 (x9) 0x79.

// The floating-point part of the record, selected by FLEN. Each macro takes
// the register and its index i (offset 112 + i * FLEN).
.macro STACKJOB_FSAVE freg, i
.if {FLEN} == 8
    fsd     \freg, 112 + 8 * \i(sp)
    .cfi_offset \freg, 112 + 8 * \i - {RECORD}
.elseif {FLEN} == 4
    fsw     \freg, 112 + 4 * \i(sp)
    .cfi_offset \freg, 112 + 4 * \i - {RECORD}
.endif
.endm

.macro STACKJOB_FLOAD freg, i
.if {FLEN} == 8
    fld     \freg, 112 + 8 * \i(sp)
.elseif {FLEN} == 4
    flw     \freg, 112 + 4 * \i(sp)
.endif
.endm

// s0-s11 and fs0-fs11 from the record at sp; the same sequence for every
// direction.
.macro STACKJOB_LOAD_CALLEE_SAVED
    ld      s0, 8(sp)
    ld      s1, 16(sp)
    ld      s2, 24(sp)
    ld      s3, 32(sp)
    ld      s4, 40(sp)
    ld      s5, 48(sp)
    ld      s6, 56(sp)
    ld      s7, 64(sp)
    ld      s8, 72(sp)
    ld      s9, 80(sp)
    ld      s10, 88(sp)
    ld      s11, 96(sp)
    STACKJOB_FLOAD fs0, 0
    STACKJOB_FLOAD fs1, 1
    STACKJOB_FLOAD fs2, 2
    STACKJOB_FLOAD fs3, 3
    STACKJOB_FLOAD fs4, 4
    STACKJOB_FLOAD fs5, 5
    STACKJOB_FLOAD fs6, 6
    STACKJOB_FLOAD fs7, 7
    STACKJOB_FLOAD fs8, 8
    STACKJOB_FLOAD fs9, 9
    STACKJOB_FLOAD fs10, 10
    STACKJOB_FLOAD fs11, 11
.endm

.macro STACKJOB_FCFI freg, i
.if {FLEN} != 0
    .cfi_offset \freg, 112 + {FLEN} * \i - {RECORD}
.endif
.endm

    .text
    // Under (fat) LTO rustc assembles module-level asm without the crate's
    // float extensions, and `fsd` would be refused: name the extension the
    // record needs. Safe, since FLEN is the float ABI's, so the CPU has it.
    .option push
.if {FLEN} == 8
    .option arch, +d
.elseif {FLEN} == 4
    .option arch, +f
.endif

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
    addi    sp, sp, -{RECORD}
    .cfi_def_cfa_offset {RECORD}
    sd      ra, 0(sp)
    .cfi_offset ra, -{RECORD}
    sd      s0, 8(sp)
    .cfi_offset s0, 8-{RECORD}
    sd      s1, 16(sp)
    .cfi_offset s1, 16-{RECORD}
    sd      s2, 24(sp)
    .cfi_offset s2, 24-{RECORD}
    sd      s3, 32(sp)
    .cfi_offset s3, 32-{RECORD}
    sd      s4, 40(sp)
    .cfi_offset s4, 40-{RECORD}
    sd      s5, 48(sp)
    .cfi_offset s5, 48-{RECORD}
    sd      s6, 56(sp)
    .cfi_offset s6, 56-{RECORD}
    sd      s7, 64(sp)
    .cfi_offset s7, 64-{RECORD}
    sd      s8, 72(sp)
    .cfi_offset s8, 72-{RECORD}
    sd      s9, 80(sp)
    .cfi_offset s9, 80-{RECORD}
    sd      s10, 88(sp)
    .cfi_offset s10, 88-{RECORD}
    sd      s11, 96(sp)
    .cfi_offset s11, 96-{RECORD}
    sd      zero, 104(sp)                   // no stale stack bytes in the record
    STACKJOB_FSAVE fs0, 0
    STACKJOB_FSAVE fs1, 1
    STACKJOB_FSAVE fs2, 2
    STACKJOB_FSAVE fs3, 3
    STACKJOB_FSAVE fs4, 4
    STACKJOB_FSAVE fs5, 5
    STACKJOB_FSAVE fs6, 6
    STACKJOB_FSAVE fs7, 7
    STACKJOB_FSAVE fs8, 8
    STACKJOB_FSAVE fs9, 9
    STACKJOB_FSAVE fs10, 10
    STACKJOB_FSAVE fs11, 11
    // The resumer's record is complete: publish it.
    sd      sp, {PARENT_SP}(a0)
    // From here on sp leaves the resumer's stack: CFA = regs.parent_sp + RECORD.
    .cfi_escape 0x0f, 6, 0x7a, {PARENT_SP}, 0x06, 0x23, ({RECORD} & 0x7f) | 0x80, {RECORD} >> 7
    ld      sp, {SP}(a0)                    // sp = the job's record
    STACKJOB_LOAD_CALLEE_SAVED
    ld      t1, 0(sp)                       // the job's resume PC
    addi    sp, sp, {RECORD}                // pop the record
    // sp: the job's stack exactly as it was at its pause site; all job
    // callee-saved registers restored; a0 = regs; t1 = where the job
    // continues (its resume label, or the trampoline). ra still holds the
    // resumer's return address: the job treats ra as clobbered.
    // The only indirect jump of the round trip: through t1, never ra or t0
    // (see the header: those would be predicted as a return).
    jr      t1
    .cfi_endproc
    .size   stackjob_switch_in, . - stackjob_switch_in

// ---------------------------------------------------------------------------
// stackjob_switch_out: a0 = regs, t1 = job resume PC, sp = job stack
// (16-byte aligned: the inline asm block that jumps here is placed like a
// call); ra and t2 are dead (clobbered by that inline asm).
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
    sd      s0, 8(sp)
    .cfi_offset s0, 8-{RECORD}
    sd      s1, 16(sp)
    .cfi_offset s1, 16-{RECORD}
    sd      s2, 24(sp)
    .cfi_offset s2, 24-{RECORD}
    sd      s3, 32(sp)
    .cfi_offset s3, 32-{RECORD}
    sd      s4, 40(sp)
    .cfi_offset s4, 40-{RECORD}
    sd      s5, 48(sp)
    .cfi_offset s5, 48-{RECORD}
    sd      s6, 56(sp)
    .cfi_offset s6, 56-{RECORD}
    sd      s7, 64(sp)
    .cfi_offset s7, 64-{RECORD}
    sd      s8, 72(sp)
    .cfi_offset s8, 72-{RECORD}
    sd      s9, 80(sp)
    .cfi_offset s9, 80-{RECORD}
    sd      s10, 88(sp)
    .cfi_offset s10, 88-{RECORD}
    sd      s11, 96(sp)
    .cfi_offset s11, 96-{RECORD}
    sd      zero, 104(sp)                   // no stale stack bytes in the record
    STACKJOB_FSAVE fs0, 0
    STACKJOB_FSAVE fs1, 1
    STACKJOB_FSAVE fs2, 2
    STACKJOB_FSAVE fs3, 3
    STACKJOB_FSAVE fs4, 4
    STACKJOB_FSAVE fs5, 5
    STACKJOB_FSAVE fs6, 6
    STACKJOB_FSAVE fs7, 7
    STACKJOB_FSAVE fs8, 8
    STACKJOB_FSAVE fs9, 9
    STACKJOB_FSAVE fs10, 10
    STACKJOB_FSAVE fs11, 11
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
    STACKJOB_LOAD_CALLEE_SAVED
    ld      ra, 0(sp)
    addi    sp, sp, {RECORD}
    // As in switch_out: this `ret` pairs with the resumer's call.
    ret
    .cfi_endproc
    .size   stackjob_switch_exit, . - stackjob_switch_exit

// ---------------------------------------------------------------------------
// stackjob_trampoline: first PC of every job.
// Entered by switch_in's `jr t1` with the FRESH record popped:
//   s1 = regs, s2 = entry function, s0 = 0 (ends frame-pointer chains),
//   sp = the 16-byte aligned top of the usable stack.
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
    .cfi_offset s3, 32-{RECORD}
    .cfi_offset s4, 40-{RECORD}
    .cfi_offset s5, 48-{RECORD}
    .cfi_offset s6, 56-{RECORD}
    .cfi_offset s7, 64-{RECORD}
    .cfi_offset s8, 72-{RECORD}
    .cfi_offset s9, 80-{RECORD}
    .cfi_offset s10, 88-{RECORD}
    .cfi_offset s11, 96-{RECORD}
    STACKJOB_FCFI fs0, 0
    STACKJOB_FCFI fs1, 1
    STACKJOB_FCFI fs2, 2
    STACKJOB_FCFI fs3, 3
    STACKJOB_FCFI fs4, 4
    STACKJOB_FCFI fs5, 5
    STACKJOB_FCFI fs6, 6
    STACKJOB_FCFI fs7, 7
    STACKJOB_FCFI fs8, 8
    STACKJOB_FCFI fs9, 9
    STACKJOB_FCFI fs10, 10
    STACKJOB_FCFI fs11, 11
    mv      a0, s1                          // arg0 = regs
    // A return address inside this FDE, set by hand: the entry's frame then
    // unwinds through the CFI above into the resumer, and no `jalr ra`
    // pushes onto the return-address stack.
    lla     ra, .Ltrampoline_end
    jr      s2                              // entry(regs) -> !, ends in switch_exit
.Ltrampoline_end:
    unimp
    .cfi_endproc
    .size   stackjob_trampoline, . - stackjob_trampoline

    .option pop
