// stackjob context switch for 64-bit PowerPC, ELFv2 ABI (little-endian
// powerpc64le; ELF), GNU syntax.
//
// As arch/aarch64.s (read arch/x86_64.s first: the entry points, the
// return-predictor discipline and the CFI scheme are the same), except:
//
// Follows the "64-Bit ELF V2 ABI Specification, Power Architecture"
// (version 1.5), section 2.2.1.1 "Register Roles" (tables "Register
// Roles"), 2.2.1.2 "Limited-Access Registers" and 2.2.2 "The Stack Frame":
//   * nonvolatile: r14-r31, f14-f31, v20-v31, cr2-cr4 and VRSAVE; r1 is
//     the stack pointer (16-byte aligned, the back chain at 0(r1)); LR
//     carries the return address, so it is saved as the record's resume PC;
//   * r2 is the TOC pointer: a function may change it (its global entry
//     point computes it from r12), and callers rely on getting theirs back
//     (the linker's `ld r2,24(r1)` after a cross-module call). The record
//     keeps each side's r2, and stackjob_enter enters the job's entry
//     function at its global entry point with r12 = its address (the ELFv2
//     linkage rule for a global entry point, which computes r2 from r12),
//     so the entry sets up its own TOC;
//   * r13 is the thread pointer: never touched;
//   * FPSCR and VSCR are "limited-access": their control fields change only
//     through functions whose purpose is to change them, so they are thread
//     state, not saved: a new job inherits them and one stackjob_enter
//     serves both pool modes (the Rust side ignores fp_env), as on aarch64;
//   * a function may store into the 32-byte header of its caller's frame
//     (back chain, CR save +8, LR save +16, TOC save +24: the minimum
//     stack frame of section 2.2.2): a job's entry function is therefore
//     given such a header above it (ENTERED below), so it never writes
//     into the job slot; its back chain is 0, the end of the chain (the
//     outermost frame).
//
// Who saves what (the x86_64 scheme): the inline asm blocks that enter this
// file (src/arch/powerpc64.rs) declare r14-r29, f14-f31, v20-v31 and
// cr2-cr4 as outputs they clobber, and clobber_abi("C") covers every
// volatile register (r0, r3-r12, f0-f13, v0-v19, cr0, cr1, cr5-cr7, LR,
// CTR, XER). The compiler therefore saves those itself, only where they
// are live. The asm saves what an inline asm block cannot name: r2 (TOC),
// r30 (LLVM's base pointer), r31 (frame pointer), VRSAVE, and the resume
// PC. r30 also carries regs to the trampoline's CFI in a new job:
//
//   register              saved by                        where
//   r2, r30, r31, VRSAVE  this file                       the record below
//   r14-r29, f14-f31,     the compiler, only if live      the Rust frame
//   v20-v31, cr2-cr4
//   r1                    this file                       regs.sp / regs.parent_sp
//   pc                    LR (resumer `bl`) / r4 (job)    the record's +16
//
// What that costs: ELFv2 has 48 nonvolatile registers besides r1, r2 and the
// CR fields, so a function that contains a switch saves and restores the 46
// declared clobbered (vectors with an address computation each) and the CR
// in its prologue and epilogue; where a switch sits in a loop that is paid once,
// where each call of a small function switches once it is paid per switch
// (scripts/icount-qemu.sh: a `raw` round trip is about 210 instructions here
// against about 80 on aarch64, which declares 16 registers clobbered).
//
// VRSAVE: reloaded only when the two sides' copies differ (Linux user code
// leaves it 0, so in practice never: a compare instead of an mtspr).
//
// Operands substituted by `global_asm!` in src/arch/powerpc64.rs: the field
// offsets of `Regs` (SP, PARENT_SP), the record size (RECORD) and RESUME_PC,
// the resume PC's offset in the record as the cancel path reads it (only
// checked here: the record's layout is this file's).
//
//   stackjob_enter(regs: *mut Regs, top: *mut u8, entry, return address)
//                                             called by Rust (`bl`).
//       r3 = regs, r4 = top, r12 = entry, r6 = stackjob_trampoline_return
//       (Rust takes both addresses through its TOC: no PC-relative
//       addressing before Power10), LR = return address into the resumer.
//       The new-job entry: pushes the resumer's record and stores r1 in
//       regs.parent_sp exactly as switch_in does, then builds the job's
//       first frame itself (the ENTERED state below; nothing laid in
//       memory beforehand but the 32-byte frame header's back chain) as
//       section 2.2.2 has it at a function's global entry point: r1 = top
//       - 32 with 0(r1) = 0, r3 = regs (the first argument), r12 = CTR =
//       entry, LR = stackjob_trampoline_return (a return address inside
//       the trampoline's FDE), r30 = regs (for the trampoline's CFI), and
//       branches to entry with `bctr` (no link-stack push or pop). r2 is
//       the resumer's TOC until the entry's global entry point computes its
//       own; r31 is the resumer's (ELFv2 chains frames through the back
//       chain, not a frame pointer, and nothing reads it).
//
//   stackjob_switch_in(regs: *mut Regs)      called by Rust (`bl`).
//       r3 = regs, LR = return address into the resumer. Pushes the
//       resumer's record (a frame: `stdu` writes the back chain), stores r1
//       in regs.parent_sp, pops the job's record from regs.sp and branches
//       to the job's resume PC with `bctr`.
//
//   stackjob_switch_out                       branch target, not a function.
//       Reached by `b` from the inline asm in src/arch/powerpc64.rs with
//       r3 = regs and r4 = the PC to resume at. Pushes the job's record,
//       stores r1 in regs.sp, pops the resumer's record from regs.parent_sp
//       and `blr`s from the resumer's `bl stackjob_switch_in`: that `blr` is
//       the only return of the round trip and pairs with that `bl` on the
//       link stack. No `blr` ever leads into the job.
//       The resume PC is a label in that inline asm; the CANCEL_PATH bytes
//       just before it (src/arch/powerpc64.rs) are the pause site's cancel
//       path, which a resume reaches only when the resumer moved the
//       saved PC (record +16) back onto it (arch::unwind_on_resume).
//
//   stackjob_switch_exit                      branch target, not a function.
//       Reached by `b` from the job's body when it is done, with r3 = regs:
//       pops the resumer's record as switch_out does, saving nothing.
//
//   stackjob_trampoline                       unwind anchor, never executed.
//       A job's entry function is reached straight from stackjob_enter's
//       `bctr` with LR = stackjob_trampoline_return, one instruction into
//       the trampoline; the trampoline's CFI continues the backtrace from
//       there into the resumer.
//
// The saved record (RECORD = 48 bytes, 16-aligned; the same for both
// directions; a minimal ELFv2 frame header plus three doublewords):
//
//   offset  size  content
//   +0      8     back chain (r1 before the push)
//   +8      8     VRSAVE (low 32 bits)
//   +16     8     resume PC (LR)
//   +24     8     r2 (TOC)
//   +32     8     r30
//   +40     8     r31
//   +48           = the CFA of the switched-out frame
//
// Stack states (addresses grow upwards; the job stack is one mmap with a
// PROT_NONE guard page at its lowest page, and the Rust job slot at its top):
//
//   ENTERED (a new job's first     PAUSED                      RUNNING
//   instruction, built by enter)
//   +----------------------+       +--------------------+      +--------------------+
//   | job slot (Rust)      |       | job slot           |      | job slot           |
//   +----------------------+ top   +--------------------+      +--------------------+
//   | the entry's caller   |       | job frames         |      | job frames         |
//   | frame header (32     |       |   ...              |      |   ...   <- r1      |
//   | bytes: TOC, LR, CR   |       | r31, r30  +40, +32 |      |                    |
//   | save slots +24..+8,  |       | r2            +24  |      |                    |
//   | back chain 0 +0)     |<- r1  | pause site    +16  |      |                    |
//   +----------------------+       | VRSAVE         +8  |      |                    |
//   |  (unused)            |       | back chain     +0  |      |                    |
//   | r3 = r30 = &regs     |       +--------------------+      | regs.parent_sp     |
//   | r12 = CTR = entry fn |       |  (unused)          |      | points at the      |
//   | LR = trampoline_     |       |                    |      | resumer's record   |
//   |      return          |       |                    |      |                    |
//   +----------------------+       +--------------------+      +--------------------+
//   | guard page PROT_NONE |       | guard page         |      | guard page         |
//   +----------------------+       +--------------------+      +--------------------+
//     regs.sp unused                 regs.sp = the record
//
// CFI encodings (DWARF 5 section 6.4.2 / 7.7.1): 0x0f DW_CFA_def_cfa_expression,
// 0x70+n DW_OP_bregN, 0x06 DW_OP_deref, 0x23 DW_OP_plus_uconst (RECORD < 128:
// one ULEB128 byte). DWARF register numbers (ELFv2 table "Mappings of Common
// Registers"): r0-r31 0-31, f0-f31 32-63, LR 65, cr2-cr4 70-72, v0-v31
// 77-108, VRSAVE 356; r3 is 0x73 as a base register, r30 0x8e.

// The record's resume PC is at +16 (the table above); the cancel path in
// src/arch/powerpc64.rs finds it there through RESUME_PC, checked here.
.if {RESUME_PC} - 16
    .error "RESUME_PC (src/arch/powerpc64.rs) is not the record's resume-PC offset"
.endif

    .text

// r2, r30, r31 and VRSAVE from the record at r1 (r1 still on the record);
// r5 = this side's VRSAVE, r6 = the other side's (scratch).
.macro STACKJOB_LOAD_CALLEE_SAVED name
    ld      6, 8(1)
    cmpd    5, 6                            // cr0 is volatile
    bne     .L\name\()_vrsave
.L\name\()_vrsave_done:
    ld      2, 24(1)
    ld      30, 32(1)
    ld      31, 40(1)
.endm

// The out-of-line half: the two sides' VRSAVE differ.
.macro STACKJOB_VRSAVE_RELOAD name
.L\name\()_vrsave:
    mtvrsave 6
    b       .L\name\()_vrsave_done
.endm

// Pushes the record (its resume PC in r0) with CFI; leaves this side's
// VRSAVE in r5.
.macro STACKJOB_PUSH_RECORD
    stdu    1, -{RECORD}(1)                 // +0: back chain
    .cfi_def_cfa_offset {RECORD}
    std     0, 16(1)                        // +16: resume PC
    .cfi_offset 65, 16-{RECORD}
    std     2, 24(1)
    .cfi_offset 2, 24-{RECORD}
    std     30, 32(1)
    .cfi_offset 30, 32-{RECORD}
    std     31, 40(1)
    .cfi_offset 31, 40-{RECORD}
    mfvrsave 5
    std     5, 8(1)
.endm

// Saves the resumer's record (its resume PC the LR of its `bl`) and
// publishes it in regs.parent_sp (r3), after which the CFA is found through
// it, whatever r1 becomes; leaves the resumer's VRSAVE in r5.
.macro STACKJOB_SAVE_RESUMER
    mflr    0
    .cfi_register 65, 0
    STACKJOB_PUSH_RECORD
    std     1, {PARENT_SP}(3)
    // From here on r1 leaves the resumer's stack: CFA = regs.parent_sp + RECORD.
    .cfi_escape 0x0f, 5, 0x73, {PARENT_SP}, 0x06, 0x23, {RECORD}
.endm

// ---------------------------------------------------------------------------
// stackjob_switch_in(regs: *mut Regs /* r3 */)
// ---------------------------------------------------------------------------
    .globl  stackjob_switch_in
    .hidden stackjob_switch_in
    .type   stackjob_switch_in, @function
    .p2align 4
stackjob_switch_in:
    .cfi_startproc
    // r1: resumer stack; LR = return address into the Rust resumer.
    // r3: regs of the job to resume; regs.sp = the job's saved record.
    STACKJOB_SAVE_RESUMER
    ld      1, {SP}(3)                      // r1 = the job's record
    STACKJOB_LOAD_CALLEE_SAVED switch_in
    ld      0, 16(1)                        // the job's resume PC
    mtctr   0
    addi    1, 1, {RECORD}                  // pop the record
    // r1: the job's stack exactly as it was at its pause site; r2, r30 and
    // r31 are the job's; r3 = regs. LR still holds the resumer's return
    // address (the job treats LR as clobbered). The only indirect branch of
    // the round trip, through CTR: never `blr` into the job, which would
    // pop the resumer's entry off the link stack.
    bctr
    STACKJOB_VRSAVE_RELOAD switch_in
    .cfi_endproc
    .size   stackjob_switch_in, . - stackjob_switch_in

// ---------------------------------------------------------------------------
// stackjob_enter(regs: *mut Regs /* r3 */, top: *mut u8 /* r4 */,
//                entry /* r12 */, stackjob_trampoline_return /* r6 */)
// ---------------------------------------------------------------------------
    .globl  stackjob_enter
    .hidden stackjob_enter
    .type   stackjob_enter, @function
    .p2align 4
stackjob_enter:
    .cfi_startproc
    // r1: resumer stack; LR = return address into the Rust resumer.
    // r3: regs of the new job; r4: the top of its first frame (16-byte
    // aligned, nothing live at or below it); r12: its entry function; r6:
    // the fake return address. r5 is the VRSAVE scratch of the record.
    STACKJOB_SAVE_RESUMER
    li      0, 0
    stdu    0, -32(4)                       // back chain 0 at top - 32; r4 = top - 32
    mr      1, 4                            // r1 = the entry's caller frame header
    mtlr    6                               // a return address inside the trampoline's FDE
    mr      30, 3                           // the trampoline's CFI reads regs here
    mtctr   12
    // entry(regs) at its global entry point (r12 = CTR = its address), on
    // the job stack; FPSCR is the resumer's. `bctr` neither pushes nor pops
    // the link stack: the resumer's `bl` stays on it for switch_out's `blr`.
    bctr
    .cfi_endproc
    .size   stackjob_enter, . - stackjob_enter

// ---------------------------------------------------------------------------
// stackjob_switch_out: r3 = regs, r4 = job resume PC, r1 = job stack
// (16-byte aligned, as always); LR is dead (clobbered by the inline asm that
// branches here).
// ---------------------------------------------------------------------------
    .globl  stackjob_switch_out
    .hidden stackjob_switch_out
    .type   stackjob_switch_out, @function
    .p2align 4
stackjob_switch_out:
    .cfi_startproc
    // No call happened: the CFA is r1 itself and the job's "return address"
    // (its resume PC) lives in r4 until stored.
    .cfi_def_cfa 1, 0
    .cfi_register 65, 4
    mr      0, 4
    .cfi_register 65, 0
    STACKJOB_PUSH_RECORD
    std     1, {SP}(3)                      // publish the job's record
    // From here on: CFA = regs.sp + RECORD.
    .cfi_escape 0x0f, 5, 0x73, {SP}, 0x06, 0x23, {RECORD}
    ld      1, {PARENT_SP}(3)               // r1 = the resumer's record
    STACKJOB_LOAD_CALLEE_SAVED switch_out
    ld      0, 16(1)
    mtlr    0
    addi    1, 1, {RECORD}
    // r1: the resumer's stack as at its `bl stackjob_switch_in`; LR = the
    // return address of that `bl`. This `blr` pairs with that `bl`.
    blr
    STACKJOB_VRSAVE_RELOAD switch_out
    .cfi_endproc
    .size   stackjob_switch_out, . - stackjob_switch_out

// ---------------------------------------------------------------------------
// stackjob_switch_exit: r3 = regs, r1 = job stack; the job's body is done
// and nothing on its stack is needed again.
// ---------------------------------------------------------------------------
    .globl  stackjob_switch_exit
    .hidden stackjob_switch_exit
    .type   stackjob_switch_exit, @function
    .p2align 4
stackjob_switch_exit:
    .cfi_startproc
    // The outermost frame of a finished job: nothing to unwind into.
    .cfi_undefined 65
    mfvrsave 5                              // the job's VRSAVE
    ld      1, {PARENT_SP}(3)               // r1 = the resumer's record
    // From here on this is the resumer's switch_in frame.
    .cfi_def_cfa 1, {RECORD}
    .cfi_offset 65, 16-{RECORD}
    .cfi_offset 2, 24-{RECORD}
    .cfi_offset 30, 32-{RECORD}
    .cfi_offset 31, 40-{RECORD}
    STACKJOB_LOAD_CALLEE_SAVED switch_exit
    ld      0, 16(1)
    mtlr    0
    addi    1, 1, {RECORD}
    // As in switch_out: this `blr` pairs with the resumer's `bl`.
    blr
    STACKJOB_VRSAVE_RELOAD switch_exit
    .cfi_endproc
    .size   stackjob_switch_exit, . - stackjob_switch_exit

// ---------------------------------------------------------------------------
// stackjob_trampoline: the unwind anchor of every job, never executed.
// Its one instruction puts stackjob_trampoline_return, the fake return
// address stackjob_enter gives every entry function, inside this FDE (an
// unwinder looks up "return address - 1"). In the entry's caller frame that
// this FDE describes: r30 = regs (nonvolatile, so the entry's own CFI
// recovers it), r1 = top - 32 (the frame header, back chain 0).
// ---------------------------------------------------------------------------
    .globl  stackjob_trampoline
    .hidden stackjob_trampoline
    .type   stackjob_trampoline, @function
    .p2align 4
stackjob_trampoline:
    .cfi_startproc
    // GDB refuses frames whose CFA is "inner" to the previous one unless the
    // frame is a signal frame; the resumer's stack may be anywhere.
    .cfi_signal_frame
    // CFA = regs.parent_sp + RECORD: the frame of the resumer's switch_in
    // call; the resumer's registers live in its record below that CFA.
    .cfi_escape 0x0f, 5, 0x8e, {PARENT_SP}, 0x06, 0x23, {RECORD}
    .cfi_offset 65, 16-{RECORD}
    .cfi_offset 2, 24-{RECORD}
    .cfi_offset 30, 32-{RECORD}
    .cfi_offset 31, 40-{RECORD}
    // r14-r29, f14-f31, v20-v31 and cr2-cr4 hold nothing of the resumer's
    // here (its inline asm clobbers them).
    .irp reg, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23, 24, 25, 26, 27, 28, 29
    .cfi_undefined \reg
    .endr
    .irp reg, 46, 47, 48, 49, 50, 51, 52, 53, 54, 55, 56, 57, 58, 59, 60, 61, 62, 63
    .cfi_undefined \reg
    .endr
    .irp reg, 97, 98, 99, 100, 101, 102, 103, 104, 105, 106, 107, 108, 70, 71, 72
    .cfi_undefined \reg
    .endr
    nop
    .globl  stackjob_trampoline_return
    .hidden stackjob_trampoline_return
stackjob_trampoline_return:
    // An entry function that returned (a bug) traps here.
    trap
    .cfi_endproc
    .size   stackjob_trampoline, . - stackjob_trampoline
