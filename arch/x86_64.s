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
// Who saves what. The two inline asm blocks that enter this file (in
// src/arch/x86_64.rs) declare r12, r13, r14 and r15 as outputs they
// clobber, plus clobber_abi("sysv64") for every caller-saved register. The
// compiler therefore keeps nothing it still needs in those registers across
// a switch: it saves exactly the ones that are live at that call site, in
// the frame that needs them, with its own CFI (corosensei's scheme). The
// asm saves only what an inline asm block cannot declare clobbered (rbx,
// which LLVM reserves, and rbp, the frame pointer), the resume PC and the
// control words:
//
//   register          saved by                        where
//   rbx, rbp          this file                       the record below
//   r12-r15           the compiler, only if live      the Rust frame's spill slots
//   rsp               this file                       regs.sp / regs.parent_sp
//   rip               `call` (resumer) / rcx (job)    the record's +16
//   MXCSR control     this file (*_fpenv variants)    the record's -4
//   x87 control word  this file (*_fpenv variants)    the record's -8
//   everything else   caller-saved: clobbered, nothing to do
//
// This file is assembled by `global_asm!` in src/arch/x86_64.rs, which
// substitutes the operands written in braces: the field offsets of
// `Regs` (SP, PARENT_SP), the MXCSR control-bit mask and RESUME_PC, the
// resume PC's offset in the record as the cancel path reads it (the
// record's layout is this file's, so that one is checked against it). No
// other number that Rust also knows is written twice.
//
// Five entry points, four of them in two variants, all `.hidden`: linked
// into the same module as their Rust callers, reached without PLT stubs,
// and never exported from a shared object. The variants come from one macro
// each, so the code is written once:
//   *_fpenv   keeps each side's control words (the default, see
//             `PoolConfig::isolate_thread_state`);
//   *_shared  leaves them alone: the job and its resumer share them, for
//             pools that opted out. The record layout is the same (its
//             control-word bytes are unused); a job always uses the one
//             variant its pool chose.
//
//   stackjob_enter_fpenv, _shared (regs: *mut Regs, top: *mut u8,
//                                  entry: fn(*mut Regs) -> !)
//                                             called by Rust's inline asm.
//       The new-job entry. Saves the resumer's record exactly as
//       switch_in does, then builds the job's first frame itself: rsp =
//       top - 8 with the fake return address stackjob_trampoline_return
//       there, rbx = regs (for the trampoline's CFI), rbp = 0 (the end of
//       the frame-pointer chain), rdi = regs, and jumps to `entry`. Nothing
//       is laid on the stack beforehand. The new job inherits the resumer's
//       control words by leaving them alone, as a called function would
//       (the fpenv variant only stores the resumer's, for the job's first
//       switch out to compare with).
//
//   stackjob_switch_in_fpenv, _shared (regs: *mut Regs)
//                                             called by Rust's inline asm.
//       The resumer's side. Saves the resumer's record on the resumer's
//       stack, stores that stack pointer in regs.parent_sp, restores the
//       job's record from regs.sp and jumps to the job's resume PC.
//       "Returns" when the job next switches out.
//
//   stackjob_switch_out_fpenv, _shared     jump target, not a function.
//       The job's side. Reached by `jmp` from the two-instruction inline asm
//       in src/arch/x86_64.rs with rdi = regs and rcx = the PC to resume at.
//       Saves the job's record on the job stack, stores it in regs.sp,
//       restores the resumer's record from regs.parent_sp and `ret`s from the
//       resumer's `call stackjob_switch_in`.
//       The resume PC is a label in that inline asm; the CANCEL_PATH bytes
//       just before it (src/arch/x86_64.rs) are the pause site's cancel
//       path, which a resume reaches only when the resumer moved the
//       saved PC (record +16) back onto it (arch::unwind_on_resume).
//
//   stackjob_switch_exit_fpenv, _shared      jump target, not a function.
//       The job's side when its body is done: restores the resumer exactly
//       as switch_out does, but saves nothing (the job never runs again on
//       these frames; the next job on the stack starts at stackjob_enter).
//
//   stackjob_trampoline                       unwind anchor, never executed.
//       A job's entry function is reached straight from stackjob_enter's
//       `jmp rdx` (rdi still holds regs) with a fake return address,
//       stackjob_trampoline_return, above it; the trampoline's CFI
//       continues the backtrace from there into the resumer.
//
// Why this shape (return-stack-buffer discipline): each round trip makes one
// `call` (Rust -> stackjob_switch_in, on the resumer's stack) and one `ret`
// (stackjob_switch_out -> the instruction after that call), so the CPU's
// return-address predictor stays balanced and predicts the `ret`. The job
// side enters stackjob_switch_out with `jmp`, not `call`: a `call` there would
// push a return address that the next resume could never pop, and both
// directions would mispredict on every switch. For the same reason a job's
// body is entered with a jump (stackjob_enter's `jmp rdx`): a `call` would leave an
// entry on the predictor that the job's first pause pops instead of the
// resumer's, and every job that pauses would pay a cascade of mispredicted
// returns in its resumer (measured: start -> pause -> resume -> finish took
// ~70 ns with the call, against ~17 ns for start -> finish). Every job
// therefore starts at stackjob_enter, which jumps to its entry function on
// a frame it builds itself, and its body ends in stackjob_switch_exit
// instead of returning. The indirect branches are the `jmp rcx` into a
// paused job and the `jmp rdx` into a new one, which the branch target
// buffer predicts (each goes to the same place again and again).
//
// The saved record. Both directions push the same 24-byte record, so either
// side can restore the other; its address is what regs.sp (job) or
// regs.parent_sp (resumer) holds while that side is switched out:
//
//   offset  size  content
//   -8      2     x87 FPU control word (fnstcw)          (*_fpenv only,
//   -6      2     unused                                  in the red zone)
//   -4      4     MXCSR as stmxcsr stored it (control bits and status flags)
//   +0      8     rbx
//   +8      8     rbp
//   +16     8     resume PC: the return address of the resumer's `call`, or
//                 the job's pause site (pushed from rcx by switch_out)
//   +24           = the CFA of the switched-out frame
//
// Control words: each side stores its own and reloads only what differs
// from the other side's saved copies (arch/x86-fpenv.s says how). They sit
// in the 8 bytes below the record, in the 128-byte red zone that "shall not
// be modified by signal or interrupt handlers" (psABI 3.2.2), so no
// instruction makes room for them. Nothing else ever writes there while
// that side is switched out: no code runs on a switched-out stack, and a
// signal arriving on the running side lands below its own red zone. The
// other side reads them right after its switch, before any code of its
// own runs on that stack. The *_shared variants push the same record and
// never touch the 8 bytes.
//
// Stack states (addresses grow upwards; the job stack is one mmap with a
// PROT_NONE guard page at its lowest page, and the Rust job slot at its top):
//
//   ENTERED (a new job's first     PAUSED                      RUNNING
//   instruction, built by enter)
//   +----------------------+       +--------------------+      +--------------------+
//   | job slot (Rust)      |       | job slot           |      | job slot           |
//   +----------------------+ top   +--------------------+      +--------------------+
//   | fake return address  |       | job frames         |      | job frames         |
//   | (trampoline_return)  |<- rsp |   ...              |      |   ...   <- rsp     |
//   +----------------------+       | pause site    +16  |      |                    |
//   |  (unused)            |       | rbp, rbx   +8, +0  |      |                    |
//   |                      |       +--------------------+      | regs.parent_sp     |
//   | rbx = &regs, rbp = 0 |       | control words  -8  |      | points at the      |
//   | rdi = &regs          |       |  (unused)          |      | resumer's record   |
//   +----------------------+       +--------------------+      +--------------------+
//   | guard page PROT_NONE |       | guard page         |      | guard page         |
//   +----------------------+       +--------------------+      +--------------------+
//     regs.sp unused                 regs.sp = the record
//
// CFI: every instruction has exact unwind info. Once a switch has moved rsp
// to the other stack, the CFA is described by a DWARF expression that reads
// the saved stack pointer back out of `regs` (rdi holds it throughout), so a
// profiler sampling inside a switch still unwinds correctly. The trampoline
// describes its caller as "the frame that last resumed this job", reading
// regs.parent_sp through rbx: backtraces taken inside a job continue into
// the resumer (gdb, perf --call-graph=dwarf, std::backtrace). r12-r15 hold
// nothing of the resumer's at that point (its inline asm clobbers them), so
// they are described as undefined there.
//
// Encodings used in the .cfi_escape lines (DWARF 5, section 6.4.2 / 7.7.1):
//   0x0f  DW_CFA_def_cfa_expression, ULEB128 length, expression
//   0x73  DW_OP_breg3 (rbx) SLEB128 offset     0x75 DW_OP_breg5 (rdi)
//   0x06  DW_OP_deref                          0x23 DW_OP_plus_uconst ULEB128
// DWARF register numbers: rbx 3, rbp 6, rdi 5, r12-r15 12-15, rip 16.
// SP and PARENT_SP are asserted < 64 in Rust so each fits one SLEB128 byte.

// The record's resume PC is at +16 (the table above); the cancel path in
// src/arch/x86_64.rs finds it there through RESUME_PC, checked here.
.if {RESUME_PC} - 16
    .error "RESUME_PC (src/arch/x86_64.rs) is not the record's resume-PC offset"
.endif

    .text

// The control-word macros (STACKJOB_FPENV_*) come from arch/x86-fpenv.s,
// assembled just before this file; here they get rsp, and eax / ecx (cx)
// as the scratch registers: both caller-saved and free at every use.

// rsp = the resumer's record: restore rbx and rbp, pop the record and
// `ret` to the resumer's `call stackjob_switch_in_*`, which this pairs with.
.macro STACKJOB_RETURN_TO_RESUMER
    mov     rbx, qword ptr [rsp]
    mov     rbp, qword ptr [rsp + 8]
    lea     rsp, [rsp + 16]
    ret
.endm

// Pushes rbp and rbx of a record (its PC, +16, is the return address a
// `call` pushed or the switch out's `push rcx`), with the CFI of each push.
// The control words go below it, in the red zone; the caller stores them.
.macro STACKJOB_PUSH_RECORD
    push    rbp
    .cfi_adjust_cfa_offset 8
    .cfi_rel_offset rbp, 0
    push    rbx
    .cfi_adjust_cfa_offset 8
    .cfi_rel_offset rbx, 0
.endm

// The resumer's record (rsp) is complete: publishes it in regs.parent_sp
// (rdi), after which the CFA is found through it, whatever rsp becomes.
.macro STACKJOB_PUBLISH_RESUMER
    mov     qword ptr [rdi + {PARENT_SP}], rsp
    // From here on rsp leaves the resumer's stack: CFA = regs.parent_sp + 24.
    .cfi_escape 0x0f, 5, 0x75, {PARENT_SP}, 0x06, 0x23, 24
.endm

// ---------------------------------------------------------------------------
// stackjob_switch_in_*(regs: *mut Regs /* rdi */)
// ---------------------------------------------------------------------------
.macro STACKJOB_SWITCH_IN name, fpenv
    .globl  \name
    .hidden \name
    .type   \name, @function
    .p2align 4
\name:
    .cfi_startproc
    // rsp: resumer stack, [rsp] = return address into the Rust resumer.
    // rdi: regs of the job to resume; regs.sp = the job's saved record.
    // r12-r15 and all caller-saved registers: free (declared clobbered).
    // No endbr64: only ever reached by a direct `call` (never indirectly).
    STACKJOB_PUSH_RECORD
.if \fpenv
    STACKJOB_FPENV_SAVE rsp, eax, ecx, -8   // eax, cx = the resumer's words
.endif
    STACKJOB_PUBLISH_RESUMER
    mov     rsp, qword ptr [rdi + {SP}]     // rsp = the job's record
.if \fpenv
    STACKJOB_FPENV_CHECK \name, rsp - 8, eax, cx
.endif
    // rsp: the job's record; its control words are in force.
    mov     rbx, qword ptr [rsp]
    mov     rbp, qword ptr [rsp + 8]
    mov     rcx, qword ptr [rsp + 16]       // the job's resume PC
    lea     rsp, [rsp + 24]                 // pop the record (lea: flags untouched)
    // rsp: the job's stack exactly as it was at its pause site; rbx, rbp
    // are the job's; rcx = where the job continues. The only indirect
    // branch of the round trip (its target has endbr64).
    jmp     rcx
.if \fpenv
    STACKJOB_FPENV_RELOAD \name, rsp - 8, eax
.endif
    .cfi_endproc
    .size   \name, . - \name
.endm

// ---------------------------------------------------------------------------
// stackjob_enter_*(regs: *mut Regs /* rdi */, top: *mut u8 /* rsi */,
//                  entry /* rdx */)
// ---------------------------------------------------------------------------
.macro STACKJOB_ENTER name, fpenv
    .globl  \name
    .hidden \name
    .type   \name, @function
    .p2align 4
\name:
    .cfi_startproc
    // rsp: resumer stack, [rsp] = return address into the Rust resumer.
    // rdi: regs of the new job; rsi: the top of its first frame (16-byte
    // aligned, nothing live at or below it); rdx: its entry function.
    // r12-r15 and all caller-saved registers: free (declared clobbered).
    // No endbr64: only ever reached by a direct `call` (never indirectly).
    STACKJOB_PUSH_RECORD
.if \fpenv
    STACKJOB_FPENV_STORE rsp, -8            // kept for the job's switch out
.endif
    STACKJOB_PUBLISH_RESUMER
    lea     rcx, [rip + stackjob_trampoline_return]
    lea     rsp, [rsi - 8]                  // as after a call: rsp + 8 = top
    mov     qword ptr [rsp], rcx            // the fake return address
    mov     rbx, rdi                        // the trampoline's CFI reads regs here
    xor     ebp, ebp                        // the end of the frame-pointer chain
    // The entry function's first instruction (endbr64 where IBT is on),
    // with rdi = regs; the job's control words are the resumer's.
    jmp     rdx
    .cfi_endproc
    .size   \name, . - \name
.endm

// ---------------------------------------------------------------------------
// stackjob_switch_out_*: rdi = regs, rcx = job resume PC, rsp = job stack
// (16-byte aligned: the inline asm block that jumps here is placed like a
// call). r12-r15 and all caller-saved registers: free (declared clobbered).
// ---------------------------------------------------------------------------
.macro STACKJOB_SWITCH_OUT name, fpenv
    .globl  \name
    .hidden \name
    .type   \name, @function
    .p2align 4
\name:
    .cfi_startproc
    // No return address was pushed: the CFA is rsp itself and the job's
    // "return address" (its resume PC) lives in rcx until pushed.
    .cfi_def_cfa rsp, 0
    .cfi_register rip, rcx
    push    rcx                             // +16: resume PC
    .cfi_adjust_cfa_offset 8
    .cfi_rel_offset rip, 0
    STACKJOB_PUSH_RECORD
.if \fpenv
    STACKJOB_FPENV_SAVE rsp, eax, ecx, -8   // eax, cx = the job's words
.endif
    mov     qword ptr [rdi + {SP}], rsp     // publish the job's record
    // From here on: CFA = regs.sp + 24.
    .cfi_escape 0x0f, 5, 0x75, {SP}, 0x06, 0x23, 24
    mov     rsp, qword ptr [rdi + {PARENT_SP}] // rsp = the resumer's record
.if \fpenv
    STACKJOB_FPENV_CHECK \name, rsp - 8, eax, cx
.endif
    // rsp: the resumer's record, above it the return address of its
    // `call stackjob_switch_in_*`.
    STACKJOB_RETURN_TO_RESUMER
.if \fpenv
    STACKJOB_FPENV_RELOAD \name, rsp - 8, eax
.endif
    .cfi_endproc
    .size   \name, . - \name
.endm

// ---------------------------------------------------------------------------
// stackjob_switch_exit_*: rdi = regs, rsp = job stack. The job's body is
// done and nothing on its stack is needed again.
// ---------------------------------------------------------------------------
.macro STACKJOB_SWITCH_EXIT name, fpenv
    .globl  \name
    .hidden \name
    .type   \name, @function
    .p2align 4
\name:
    .cfi_startproc
    // The outermost frame of a finished job: nothing to unwind into.
    .cfi_undefined rip
.if \fpenv
    // The job's control words, in the red zone of its own stack (dead).
    STACKJOB_FPENV_SAVE rsp, eax, ecx, -8
.endif
    mov     rsp, qword ptr [rdi + {PARENT_SP}] // rsp = the resumer's record
    // From here on this is the resumer's switch_in frame.
    .cfi_def_cfa rsp, 24
    .cfi_offset rip, -8
    .cfi_offset rbp, -16
    .cfi_offset rbx, -24
.if \fpenv
    STACKJOB_FPENV_CHECK \name, rsp - 8, eax, cx
.endif
    STACKJOB_RETURN_TO_RESUMER
.if \fpenv
    STACKJOB_FPENV_RELOAD \name, rsp - 8, eax
.endif
    .cfi_endproc
    .size   \name, . - \name
.endm

    STACKJOB_SWITCH_IN   stackjob_switch_in_fpenv, 1
    STACKJOB_SWITCH_IN   stackjob_switch_in_shared, 0
    STACKJOB_ENTER       stackjob_enter_fpenv, 1
    STACKJOB_ENTER       stackjob_enter_shared, 0
    STACKJOB_SWITCH_OUT  stackjob_switch_out_fpenv, 1
    STACKJOB_SWITCH_OUT  stackjob_switch_out_shared, 0
    STACKJOB_SWITCH_EXIT stackjob_switch_exit_fpenv, 1
    STACKJOB_SWITCH_EXIT stackjob_switch_exit_shared, 0

// ---------------------------------------------------------------------------
// stackjob_trampoline: the unwind anchor of every job; never executed.
// A job's entry function runs with rbx = regs and, as its return address,
// stackjob_trampoline_return (one byte into this FDE, so an unwinder's
// "return address - 1" lands here). It never returns: it ends in
// switch_exit.
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
    // CFA = regs.parent_sp + 24: the frame of the resumer's switch_in_* call.
    .cfi_escape 0x0f, 5, 0x73, {PARENT_SP}, 0x06, 0x23, 24
    // The resumer's registers live in its record below that CFA.
    .cfi_offset rip, -8
    .cfi_offset rbp, -16
    .cfi_offset rbx, -24
    .cfi_undefined r12
    .cfi_undefined r13
    .cfi_undefined r14
    .cfi_undefined r15
    nop
    .globl  stackjob_trampoline_return
    .hidden stackjob_trampoline_return
stackjob_trampoline_return:
    // An entry function that returned (a bug) traps here.
    ud2
    .cfi_endproc
    .size   stackjob_trampoline, . - stackjob_trampoline
