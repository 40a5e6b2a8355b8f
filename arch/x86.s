// stackjob context switch for 32-bit x86 (i686), System V i386 psABI (ELF),
// Intel syntax.
//
// As arch/x86_64.s (read that header first: the entry points, their
// *_fpenv and *_shared variants, the return-predictor discipline, the
// control-word handling and the CFI scheme are the same), except:
//
// Follows the "System V Application Binary Interface, Intel386 Architecture
// Processor Supplement" (version 1.1), section 2.2 "Function Calling
// Sequence", "Registers" and table 2.3 "Register Usage", and "The Stack
// Frame":
//   * callee-saved: ebx, esi, edi, ebp, esp; as on x86_64, the x87 control
//     word and the MXCSR control bits are callee-saved, the x87 status word
//     and the MXCSR status flags are not (so the *_fpenv variants keep each
//     side's control words, exactly as x86_64.s does);
//   * DF is clear on entry and exit (never touched); gs base (TLS) and the
//     signal mask are never touched;
//   * esp + 4 is a multiple of 16 at a function's first instruction (the
//     Linux i386 rule since GCC 4.5; rustc's i686 targets assume it);
//   * arguments are passed on the stack ("The Stack Frame": argument
//     word 0 at 4(%esp) at a function's first instruction, just above the
//     return address): a job's entry function finds regs at [esp + 4],
//     which stackjob_enter stores there (below).
//
// Who saves what. Unlike x86_64, the asm saves every callee-saved register
// itself: of the four, LLVM may reserve esi (base pointer) and ebp (frame
// pointer) so they cannot be declared clobbered by the inline asm, and ebx
// is the GOT pointer of PIC code; saving ebx and edi here too costs two
// stores and two loads per switch and keeps the Rust side free of
// per-register clobbers (it declares only clobber_abi("C"): eax, ecx, edx,
// the x87/MMX stack, xmm0-xmm7):
//
//   register            saved by                        where
//   ebx, esi, edi, ebp  this file                       the record below
//   esp                 this file                       regs.sp / regs.parent_sp
//   eip                 `call` (resumer) / ecx (job)    the record's +24
//   MXCSR control       this file (*_fpenv variants)    the record's +4
//   x87 control word    this file (*_fpenv variants)    the record's +0
//
// Registers at the entry points: eax = regs (the inline asm pins it there),
// ecx = the job's resume PC (switch_out); ecx and edx are the scratch
// registers of the control-word steps. stackjob_enter_* also takes edx =
// the top of the new job's first frame, ecx = its entry function and edi =
// stackjob_trampoline_return: i386 has no PC-relative `lea`, and Rust
// takes that address through its GOT pointer as it takes the entry's (one
// `lea` or GOT load, often hoisted out of a loop), where reading the PC
// here would cost a `call` the return predictor never sees returned. edi
// is callee-saved, so the resumer's record keeps it and the inline asm
// gets it back unchanged, as an input must be.
//
// Operands substituted by `global_asm!` in src/arch/x86.rs: SP, PARENT_SP,
// MXCSR_CONTROL, the record size RECORD (28) and RESUME_PC, the resume PC's
// offset in the record as the cancel path reads it (only checked here: the
// record's layout is this file's).
//
// No `endbr32`: Linux has no indirect-branch tracking for 32-bit user
// space. The job-side inline asm takes its resume PC with `call 3f; 3: pop`,
// the i386 PIC idiom (no absolute address, so no text relocation in a PIE;
// LLVM's own i386 PIC code reads the PC this way; cores that special-case
// a zero-displacement call leave the return-stack predictor alone, others
// lose one prediction per pause). The resume PC is a label in that inline
// asm; the CANCEL_PATH bytes just before it (src/arch/x86.rs) are the pause
// site's cancel path, which a resume reaches only when the resumer moved
// the saved PC (record +24) back onto it (arch::unwind_on_resume).
//
// The saved record (28 bytes; the same for both directions):
//
//   offset  size  content
//   +0      2     x87 FPU control word (fnstcw)
//   +2      2     unused
//   +4      4     MXCSR as stmxcsr stored it (control bits and status flags)
//   +8      4     ebx
//   +12     4     esi
//   +16     4     edi
//   +20     4     ebp
//   +24     4     resume PC: the return address of the resumer's `call`, or
//                 the job's pause site (pushed from ecx by switch_out)
//   +28           = the CFA of the switched-out frame
//
// Stack states (addresses grow upwards). ENTERED: the entry function is
// entered by `jmp`, on a frame stackjob_enter builds as if it had been
// `call`ed with regs as its argument from a 16-byte aligned esp = top - 16
// (psABI "The Stack Frame": esp + 4 aligned at the first instruction);
// nothing below its fake return address is written:
//
//   ENTERED (a new job's first     PAUSED                      RUNNING
//   instruction, built by enter)
//   +----------------------+       +--------------------+      +--------------------+
//   | job slot (Rust)      |       | job slot           |      | job slot           |
//   +----------------------+ top   +--------------------+      +--------------------+
//   | (pad, 12 bytes)      |       | job frames         |      | job frames         |
//   | arg0 = &regs    +4   |       |   ...              |      |   ...   <- esp     |
//   | fake return address  |<- esp | pause site    +24  |      |                    |
//   | (trampoline_return)  |       | ebp..ebx +20..+8   |      |                    |
//   +----------------------+       | control words  +0  |      |                    |
//   |  (unused)            |       +--------------------+      |                    |
//   | ebx = &regs, ebp = 0 |       |  (unused)          |      | regs.parent_sp     |
//   | esi, edi: the        |       |                    |      | points at the      |
//   | resumer's (unused)   |       |                    |      | resumer's record   |
//   +----------------------+       +--------------------+      +--------------------+
//   | guard page PROT_NONE |       | guard page         |      | guard page         |
//   +----------------------+       +--------------------+      +--------------------+
//     regs.sp unused                 regs.sp = the record
//
// CFI: as x86_64.s, with eax holding regs in the switch routines and ebx in
// the trampoline. Encodings (DWARF 5, section 6.4.2 / 7.7.1): 0x0f
// DW_CFA_def_cfa_expression, 0x70 DW_OP_breg0 (eax), 0x73 DW_OP_breg3
// (ebx), 0x06 DW_OP_deref, 0x23 DW_OP_plus_uconst. DWARF register numbers
// (i386 psABI table 2.14): eax 0, ecx 1, edx 2, ebx 3, esp 4, ebp 5, esi 6,
// edi 7, eip 8. SP and PARENT_SP are asserted < 64 in Rust (one SLEB128
// byte each) and RECORD < 128 (one ULEB128 byte).

// The record's resume PC is at +24 (the table above); the cancel path in
// src/arch/x86.rs finds it there through RESUME_PC, checked here.
.if {RESUME_PC} - 24
    .error "RESUME_PC (src/arch/x86.rs) is not the record's resume-PC offset"
.endif

    .text

// The control-word macros (STACKJOB_FPENV_*) come from arch/x86-fpenv.s,
// assembled just before this file; here they get esp, and ecx / edx (dx)
// as the scratch registers (eax holds regs): both caller-saved and free at
// every use.

// ebx, esi, edi, ebp from the record at esp; the same for every direction.
.macro STACKJOB_LOAD_CALLEE_SAVED
    mov     ebx, dword ptr [esp + 8]
    mov     esi, dword ptr [esp + 12]
    mov     edi, dword ptr [esp + 16]
    mov     ebp, dword ptr [esp + 20]
.endm

// Pushes ebp, edi, esi, ebx (record +20 down to +8) with their CFI, then
// makes room for the control words (+0..+8).
.macro STACKJOB_PUSH_CALLEE_SAVED
    push    ebp
    .cfi_adjust_cfa_offset 4
    .cfi_rel_offset ebp, 0
    push    edi
    .cfi_adjust_cfa_offset 4
    .cfi_rel_offset edi, 0
    push    esi
    .cfi_adjust_cfa_offset 4
    .cfi_rel_offset esi, 0
    push    ebx
    .cfi_adjust_cfa_offset 4
    .cfi_rel_offset ebx, 0
    sub     esp, 8
    .cfi_adjust_cfa_offset 8
.endm

// The resumer's record (esp) is complete: publishes it in regs.parent_sp
// (eax), after which the CFA is found through it, whatever esp becomes.
.macro STACKJOB_PUBLISH_RESUMER
    mov     dword ptr [eax + {PARENT_SP}], esp
    // From here on esp leaves the resumer's stack: CFA = regs.parent_sp + RECORD.
    .cfi_escape 0x0f, 5, 0x70, {PARENT_SP}, 0x06, 0x23, {RECORD}
.endm

// ---------------------------------------------------------------------------
// stackjob_switch_in_*(regs: *mut Regs /* eax */)
// ---------------------------------------------------------------------------
.macro STACKJOB_SWITCH_IN name, fpenv
    .globl  \name
    .hidden \name
    .type   \name, @function
    .p2align 4
\name:
    .cfi_startproc
    // esp: resumer stack, [esp] = return address into the Rust resumer.
    // eax: regs of the job to resume; regs.sp = the job's saved record.
    STACKJOB_PUSH_CALLEE_SAVED
.if \fpenv
    STACKJOB_FPENV_SAVE esp, ecx, edx, 0    // ecx, dx = the resumer's words
.endif
    STACKJOB_PUBLISH_RESUMER
    mov     esp, dword ptr [eax + {SP}]     // esp = the job's record
.if \fpenv
    STACKJOB_FPENV_CHECK \name, esp, ecx, dx
.endif
    // esp: the job's record; its control words are in force.
    STACKJOB_LOAD_CALLEE_SAVED
    mov     ecx, dword ptr [esp + 24]       // the job's resume PC
    lea     esp, [esp + {RECORD}]           // pop the record (lea: flags untouched)
    // esp: the job's stack exactly as it was at its pause site; ebx, esi,
    // edi and ebp are the job's; ecx = where the job continues. The only
    // indirect branch of the round trip.
    jmp     ecx
.if \fpenv
    STACKJOB_FPENV_RELOAD \name, esp, ecx
.endif
    .cfi_endproc
    .size   \name, . - \name
.endm

// ---------------------------------------------------------------------------
// stackjob_enter_*(regs: *mut Regs /* eax */, top: *mut u8 /* edx */,
//                  entry /* ecx */, stackjob_trampoline_return /* edi */)
// ---------------------------------------------------------------------------
.macro STACKJOB_ENTER name, fpenv
    .globl  \name
    .hidden \name
    .type   \name, @function
    .p2align 4
\name:
    .cfi_startproc
    // esp: resumer stack, [esp] = return address into the Rust resumer.
    // eax: regs of the new job; edx: the top of its first frame (16-byte
    // aligned, nothing live at or below it); ecx: its entry function; edi:
    // the fake return address (see the header).
    STACKJOB_PUSH_CALLEE_SAVED
.if \fpenv
    STACKJOB_FPENV_STORE esp, 0             // kept for the job's switch out
.endif
    STACKJOB_PUBLISH_RESUMER
    lea     esp, [edx - 20]                 // as after a call: esp + 4 = top - 16
    mov     dword ptr [esp + 4], eax        // the entry's argument word 0
    mov     dword ptr [esp], edi            // the fake return address
    mov     ebx, eax                        // the trampoline's CFI reads regs here
    xor     ebp, ebp                        // the end of the frame-pointer chain
    // The entry function's first instruction, with regs at [esp + 4]; the
    // job's control words are the resumer's.
    jmp     ecx
    .cfi_endproc
    .size   \name, . - \name
.endm

// ---------------------------------------------------------------------------
// stackjob_switch_out_*: eax = regs, ecx = job resume PC, esp = job stack
// (16-byte aligned: the inline asm block that jumps here is placed like a
// call). Every caller-saved register is free (declared clobbered).
// ---------------------------------------------------------------------------
.macro STACKJOB_SWITCH_OUT name, fpenv
    .globl  \name
    .hidden \name
    .type   \name, @function
    .p2align 4
\name:
    .cfi_startproc
    // No return address was pushed: the CFA is esp itself and the job's
    // "return address" (its resume PC) lives in ecx until pushed.
    .cfi_def_cfa esp, 0
    .cfi_register eip, ecx
    push    ecx                             // +24: resume PC
    .cfi_adjust_cfa_offset 4
    .cfi_rel_offset eip, 0
    STACKJOB_PUSH_CALLEE_SAVED
.if \fpenv
    STACKJOB_FPENV_SAVE esp, ecx, edx, 0    // ecx, dx = the job's words
.endif
    mov     dword ptr [eax + {SP}], esp     // publish the job's record
    // From here on: CFA = regs.sp + RECORD.
    .cfi_escape 0x0f, 5, 0x70, {SP}, 0x06, 0x23, {RECORD}
    mov     esp, dword ptr [eax + {PARENT_SP}] // esp = the resumer's record
.if \fpenv
    STACKJOB_FPENV_CHECK \name, esp, ecx, dx
.endif
    // esp: the resumer's record, above it the return address of its
    // `call stackjob_switch_in_*`: this `ret` pairs with that call.
    STACKJOB_LOAD_CALLEE_SAVED
    lea     esp, [esp + 24]
    ret
.if \fpenv
    STACKJOB_FPENV_RELOAD \name, esp, ecx
.endif
    .cfi_endproc
    .size   \name, . - \name
.endm

// ---------------------------------------------------------------------------
// stackjob_switch_exit_*: eax = regs, esp = job stack. The job's body is
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
    .cfi_undefined eip
.if \fpenv
    // The job's control words, on its own (dead) stack: i386 has no red
    // zone, so the room is reserved first (a signal may come at any time).
    sub     esp, 8
    STACKJOB_FPENV_SAVE esp, ecx, edx, 0
.endif
    mov     esp, dword ptr [eax + {PARENT_SP}] // esp = the resumer's record
    // From here on this is the resumer's switch_in frame.
    .cfi_def_cfa esp, {RECORD}
    .cfi_offset eip, -4
    .cfi_offset ebp, -8
    .cfi_offset edi, -12
    .cfi_offset esi, -16
    .cfi_offset ebx, -20
.if \fpenv
    STACKJOB_FPENV_CHECK \name, esp, ecx, dx
.endif
    STACKJOB_LOAD_CALLEE_SAVED
    lea     esp, [esp + 24]
    ret
.if \fpenv
    STACKJOB_FPENV_RELOAD \name, esp, ecx
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
// A job's entry function is reached from stackjob_enter's `jmp ecx` with
// ebx = regs and, as its return address, stackjob_trampoline_return (one
// byte into this FDE, so an unwinder's "return address - 1" lands here).
// It never returns: it ends in switch_exit.
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
    // CFA = regs.parent_sp + RECORD: the frame of the resumer's switch_in_* call.
    .cfi_escape 0x0f, 5, 0x73, {PARENT_SP}, 0x06, 0x23, {RECORD}
    // The resumer's registers live in its record below that CFA.
    .cfi_offset eip, -4
    .cfi_offset ebp, -8
    .cfi_offset edi, -12
    .cfi_offset esi, -16
    .cfi_offset ebx, -20
    nop
    .globl  stackjob_trampoline_return
    .hidden stackjob_trampoline_return
stackjob_trampoline_return:
    // An entry function that returned (a bug) traps here.
    ud2
    .cfi_endproc
    .size   stackjob_trampoline, . - stackjob_trampoline
