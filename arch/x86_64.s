// stackjob context switch for x86_64, System V psABI (ELF), Intel syntax.
//
// Follows the System V AMD64 psABI v1.0, section 3.2.1 "Registers" and
// figure 3.4 "Register Usage", and section 3.2.2 "The Stack Frame":
//   * callee-saved: rbx, rbp, r12, r13, r14, r15, rsp;
//   * "The control bits of the MXCSR register are callee-saved, while the
//     status bits are caller-saved. The x87 status word register is
//     caller-saved, whereas the x87 control word is callee-saved";
//   * DF is clear on entry and exit (we never touch it); fs base (TLS) is
//     never touched; the signal mask is never touched (no syscalls here).
//   * rsp + 8 is a multiple of 16 at a function's first instruction.
//
// This file is assembled by `global_asm!` in src/arch/x86_64.rs, which
// substitutes the operands written in braces: the field offsets of
// `Regs` (SP, PARENT_SP) and the MXCSR status-flag mask. No number that
// Rust also knows is written twice.
//
// Three entry points, nothing else (Boost.Context's "three functions" size),
// all `.hidden`: linked into the same module as their Rust callers, reached
// without PLT stubs, and never exported from a shared object:
//
//   stackjob_switch_in(regs: *mut Regs)      extern "sysv64", called by Rust.
//       The resumer's side. Saves the resumer's callee-saved state on the
//       resumer's stack, stores that stack pointer in regs.parent_sp,
//       restores the job's state from regs.sp and jumps to the job's resume
//       PC. "Returns" when the job next switches out.
//
//   stackjob_switch_out                       jump target, not a function.
//       The job's side. Reached by `jmp` from the two-instruction inline asm
//       in src/arch/x86_64.rs with rdi = regs and rcx = the PC to resume at.
//       Saves the job's state on the job stack, stores it in regs.sp,
//       restores the resumer's state from regs.parent_sp and `ret`s from the
//       resumer's `call stackjob_switch_in`.
//
//   stackjob_trampoline                       first PC of a fresh stack.
//       Calls the Rust entry function (r12) with the regs pointer (rbx);
//       its CFI continues the backtrace into the resumer.
//
// Why this shape (return-stack-buffer discipline): each round trip makes one
// `call` (Rust -> stackjob_switch_in, on the resumer's stack) and one `ret`
// (stackjob_switch_out -> the instruction after that call), so the CPU's
// return-address predictor stays balanced and predicts the `ret`. The job
// side enters stackjob_switch_out with `jmp`, not `call`: a `call` there would
// push a return address that the next resume could never pop, and both
// directions would mispredict on every switch. The only indirect branch is the
// `jmp rcx` into the job, which the branch target buffer predicts (it goes to
// the same pause site again and again).
//
// The saved record. Both directions push the same 64-byte record, so either
// side can restore the other; its address is what regs.sp (job) or
// regs.parent_sp (resumer) holds while that side is switched out:
//
//   offset  size  content
//   +0      2     x87 FPU control word
//   +2      2     zero (so +0..+8 compares as one 64-bit word)
//   +4      4     MXCSR with the status flags (bits 0-5) cleared
//   +8      8     r15
//   +16     8     r14
//   +24     8     r13
//   +32     8     r12
//   +40     8     rbx
//   +48     8     rbp
//   +56     8     resume PC: the return address of the resumer's `call`, or
//                 the job's pause site (pushed from rcx by switch_out)
//   +64           = the CFA of the switched-out frame
//
// The control words are restored only when they differ from the incoming
// side's saved copy (`ldmxcsr` and `fldcw` cost far more than a compare).
// Status flags are caller-saved, so they are not compared and not restored.
// `stmxcsr`/`fnstcw` store 4 and 2 bytes; they are read back at those same
// widths and combined in a register, then stored as one word: loading the
// 8-byte word straight after the two narrow stores would defeat store-to-load
// forwarding and stall every switch (measured: 33 -> 18 ns per round trip).
//
// Stack states (addresses grow upwards; the job stack is one mmap with a
// PROT_NONE guard page at its lowest page, and the Rust job slot at its top):
//
//   FRESH (never run)              PAUSED                      RUNNING
//   +----------------------+       +--------------------+      +--------------------+
//   | job slot (Rust)      |       | job slot           |      | job slot           |
//   +----------------------+       +--------------------+      +--------------------+
//   | pc = trampoline  +56 |       | job frames         |      | job frames         |
//   | rbp = 0          +48 |       |   ...              |      |   ...              |
//   | rbx = &regs      +40 |       | pause site    +56  |      |   ...   <- rsp     |
//   | r12 = entry fn   +32 |       | rbp..r15   +8..+48 |      |                    |
//   | r13..r15 = 0  +8..+24|       | control words  +0  |      |                    |
//   | control words    +0  |       +--------------------+      |                    |
//   +----------------------+ <- regs.sp         <- regs.sp      regs.parent_sp points
//   |  (unused)            |       |  (unused)          |      at the record on the
//   +----------------------+       +--------------------+      resumer's stack
//   | guard page PROT_NONE |       | guard page         |      | guard page         |
//   +----------------------+       +--------------------+      +--------------------+
//
// CFI: every instruction has exact unwind info. Once a switch has moved rsp
// to the other stack, the CFA is described by a DWARF expression that reads
// the saved stack pointer back out of `regs` (rdi holds it throughout), so a
// profiler sampling inside a switch still unwinds correctly. The trampoline
// describes its caller as "the frame that last resumed this job", reading
// regs.parent_sp through rbx: backtraces taken inside a job continue into
// the resumer (gdb, perf --call-graph=dwarf, std::backtrace).
//
// Encodings used in the .cfi_escape lines (DWARF 5, section 6.4.2 / 7.7.1):
//   0x0f  DW_CFA_def_cfa_expression, ULEB128 length, expression
//   0x10  DW_CFA_expression reg, ULEB128 length, expression
//   0x73  DW_OP_breg3 (rbx) SLEB128 offset     0x75 DW_OP_breg5 (rdi)
//   0x06  DW_OP_deref                          0x23 DW_OP_plus_uconst ULEB128
// DWARF register numbers: rbx 3, rbp 6, rdi 5, r12-r15 12-15, rip 16.
// SP and PARENT_SP are asserted < 64 in Rust so each fits one SLEB128 byte.

    .text

// ---------------------------------------------------------------------------
// stackjob_switch_in(regs: *mut Regs /* rdi */)
// ---------------------------------------------------------------------------
    .globl  stackjob_switch_in
    .hidden stackjob_switch_in
    .type   stackjob_switch_in, @function
    .p2align 4
stackjob_switch_in:
    .cfi_startproc
    // rsp: resumer stack, [rsp] = return address into the Rust resumer.
    // rdi: regs of the job to resume; regs.sp = the job's saved record.
    endbr64
    push    rbp
    .cfi_adjust_cfa_offset 8
    .cfi_rel_offset rbp, 0
    push    rbx
    .cfi_adjust_cfa_offset 8
    .cfi_rel_offset rbx, 0
    push    r12
    .cfi_adjust_cfa_offset 8
    .cfi_rel_offset r12, 0
    push    r13
    .cfi_adjust_cfa_offset 8
    .cfi_rel_offset r13, 0
    push    r14
    .cfi_adjust_cfa_offset 8
    .cfi_rel_offset r14, 0
    push    r15
    .cfi_adjust_cfa_offset 8
    .cfi_rel_offset r15, 0
    sub     rsp, 8
    .cfi_adjust_cfa_offset 8
    stmxcsr dword ptr [rsp + 4]             // MXCSR, in the upper half
    fnstcw  word ptr [rsp]                  // x87 control word, +0..+2
    mov     eax, dword ptr [rsp + 4]
    movzx   ecx, word ptr [rsp]
    and     eax, {MXCSR_CONTROL}            // drop the caller-saved status flags
    shl     rax, 32
    or      rax, rcx                        // rax = resumer's control words
    mov     qword ptr [rsp], rax            // the record's +0..+8, as one word
    // The resumer's record is complete: publish it.
    mov     qword ptr [rdi + {PARENT_SP}], rsp
    // From here on rsp leaves the resumer's stack: CFA = regs.parent_sp + 64.
    .cfi_escape 0x0f, 5, 0x75, {PARENT_SP}, 0x06, 0x23, 64
    mov     rsp, qword ptr [rdi + {SP}]     // rsp = the job's record
    cmp     rax, qword ptr [rsp]
    jne     .Lswitch_in_fpenv
.Lswitch_in_fpenv_done:
    // rsp: the job's record, control words already in force.
    mov     rcx, qword ptr [rsp + 56]       // the job's resume PC
    mov     r15, qword ptr [rsp + 8]
    mov     r14, qword ptr [rsp + 16]
    mov     r13, qword ptr [rsp + 24]
    mov     r12, qword ptr [rsp + 32]
    mov     rbx, qword ptr [rsp + 40]
    mov     rbp, qword ptr [rsp + 48]
    lea     rsp, [rsp + 64]                 // pop the record (lea: flags untouched)
    // rsp: the job's stack exactly as it was at its pause site; all job
    // callee-saved registers restored; rcx = where the job continues.
    // The only indirect branch of the round trip (target has endbr64).
    jmp     rcx

.Lswitch_in_fpenv:
    // The job's control words differ from the resumer's: load the job's.
    ldmxcsr dword ptr [rsp + 4]
    fldcw   word ptr [rsp]
    jmp     .Lswitch_in_fpenv_done
    .cfi_endproc
    .size   stackjob_switch_in, . - stackjob_switch_in

// ---------------------------------------------------------------------------
// stackjob_switch_out: rdi = regs, rcx = job resume PC, rsp = job stack
// (16-byte aligned: the inline asm block that jumps here is placed like a call)
// ---------------------------------------------------------------------------
    .globl  stackjob_switch_out
    .hidden stackjob_switch_out
    .type   stackjob_switch_out, @function
    .p2align 4
stackjob_switch_out:
    .cfi_startproc
    // No return address was pushed: the CFA is rsp itself and the job's
    // "return address" (its resume PC) lives in rcx until pushed.
    .cfi_def_cfa rsp, 0
    .cfi_register rip, rcx
    push    rcx                             // +56: resume PC
    .cfi_adjust_cfa_offset 8
    .cfi_rel_offset rip, 0
    push    rbp
    .cfi_adjust_cfa_offset 8
    .cfi_rel_offset rbp, 0
    push    rbx
    .cfi_adjust_cfa_offset 8
    .cfi_rel_offset rbx, 0
    push    r12
    .cfi_adjust_cfa_offset 8
    .cfi_rel_offset r12, 0
    push    r13
    .cfi_adjust_cfa_offset 8
    .cfi_rel_offset r13, 0
    push    r14
    .cfi_adjust_cfa_offset 8
    .cfi_rel_offset r14, 0
    push    r15
    .cfi_adjust_cfa_offset 8
    .cfi_rel_offset r15, 0
    sub     rsp, 8
    .cfi_adjust_cfa_offset 8
    stmxcsr dword ptr [rsp + 4]
    fnstcw  word ptr [rsp]
    mov     eax, dword ptr [rsp + 4]
    movzx   ecx, word ptr [rsp]
    and     eax, {MXCSR_CONTROL}
    shl     rax, 32
    or      rax, rcx                        // rax = job's control words
    mov     qword ptr [rsp], rax
    mov     qword ptr [rdi + {SP}], rsp     // publish the job's record
    // From here on: CFA = regs.sp + 64.
    .cfi_escape 0x0f, 5, 0x75, {SP}, 0x06, 0x23, 64
    mov     rsp, qword ptr [rdi + {PARENT_SP}] // rsp = the resumer's record
    cmp     rax, qword ptr [rsp]
    jne     .Lswitch_out_fpenv
.Lswitch_out_fpenv_done:
    mov     r15, qword ptr [rsp + 8]
    mov     r14, qword ptr [rsp + 16]
    mov     r13, qword ptr [rsp + 24]
    mov     r12, qword ptr [rsp + 32]
    mov     rbx, qword ptr [rsp + 40]
    mov     rbp, qword ptr [rsp + 48]
    lea     rsp, [rsp + 56]
    // rsp: the resumer's stack, [rsp] = return address of its
    // `call stackjob_switch_in`. This `ret` pairs with that `call`.
    ret

.Lswitch_out_fpenv:
    ldmxcsr dword ptr [rsp + 4]
    fldcw   word ptr [rsp]
    jmp     .Lswitch_out_fpenv_done
    .cfi_endproc
    .size   stackjob_switch_out, . - stackjob_switch_out

// ---------------------------------------------------------------------------
// stackjob_trampoline: first PC of a fresh job stack.
// Entered by switch_in's `jmp rcx` with the FRESH record popped:
//   rbx = regs, r12 = entry function, rbp = 0, rsp = 16-byte aligned top.
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
    // CFA = regs.parent_sp + 64: the frame of the resumer's switch_in call.
    .cfi_escape 0x0f, 5, 0x73, {PARENT_SP}, 0x06, 0x23, 64
    // The resumer's registers live in its record below that CFA.
    .cfi_offset rip, -8
    .cfi_offset rbp, -16
    .cfi_offset rbx, -24
    .cfi_offset r12, -32
    .cfi_offset r13, -40
    .cfi_offset r14, -48
    .cfi_offset r15, -56
    endbr64
    mov     rdi, rbx                        // arg0 = regs
    call    r12                             // entry(regs) -> !, never returns
    // The entry function loops forever (one iteration per job); reaching
    // here is a bug, and the trap also keeps the return address above
    // inside this FDE for unwinders that do not subtract 1.
    ud2
    .cfi_endproc
    .size   stackjob_trampoline, . - stackjob_trampoline
