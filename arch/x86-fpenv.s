// The x87 / SSE control-word steps of the *_fpenv switch variants, shared
// by the two x86 ABIs: arch/x86_64.s (System V AMD64 psABI, section 3.2.1)
// and arch/x86.s (i386 System V psABI, section 2.2.1), which both keep the
// MXCSR control bits and the x87 control word callee-saved. Each backend's
// `global_asm!` assembles this file first, then its own; nothing here emits
// code until a backend expands a macro. The record layout is the backends'
// (see their headers): the two words are 8 bytes at some base, the x87 CW
// at base +0 (2 bytes), MXCSR at base +4 (4 bytes); the base is the record
// itself on i686 and the 8 bytes below it on x86_64.
//
// Arguments: `stk` is the stack pointer register (rsp or esp), or for
// CHECK and RELOAD an address expression (`rsp - 8`), `mx` the
// 32-bit scratch register that carries this side's MXCSR, `cw` the 32-bit
// and `cw16` the 16-bit name of the one that carries its x87 CW. Both
// scratch registers are caller-saved in both ABIs and free at every
// expansion site (the backends say which they pass).
//
// Control words. Each side stores its own, then compares them with the
// other side's saved copies, and reloads only what differs (`ldmxcsr` and
// `fldcw` cost far more than a compare). MXCSR is compared raw first: the
// status flags are thread-wide and sticky, so in the steady state both
// copies are bit-for-bit equal and one compare decides. Only when the raw
// words differ are the control bits (mask {MXCSR_CONTROL}) compared; if just
// the caller-saved status flags differ, nothing is reloaded. Each value is
// read back at the width it was stored (4 and 2 bytes), so the loads
// forward from the stores instead of stalling.

// STACKJOB_FPENV_STORE stk, off: store this side's MXCSR and x87 CW into
// the record at stk + off (+4 and +0).
.macro STACKJOB_FPENV_STORE stk, off
    stmxcsr dword ptr [\stk + \off + 4]
    fnstcw  word ptr [\stk + \off]
.endm

// STACKJOB_FPENV_SAVE stk, mx, cw, off: STACKJOB_FPENV_STORE, then read the
// words back at the widths they were stored, for the compare: mx = MXCSR,
// cw = x87 CW (zero-extended).
.macro STACKJOB_FPENV_SAVE stk, mx, cw, off
    STACKJOB_FPENV_STORE \stk, \off
    mov     \mx, dword ptr [\stk + \off + 4]
    movzx   \cw, word ptr [\stk + \off]
.endm

// STACKJOB_FPENV_CHECK name, stk, mx, cw16: stk = the base of the other
// side's saved words;
// branch to the out-of-line reloads when its words differ from mx / cw16.
.macro STACKJOB_FPENV_CHECK name, stk, mx, cw16
    cmp     \mx, dword ptr [\stk + 4]
    jne     .L\name\()_mxcsr
.L\name\()_mxcsr_done:
    cmp     \cw16, word ptr [\stk]
    jne     .L\name\()_fcw
.L\name\()_fcw_done:
.endm

// STACKJOB_FPENV_RELOAD name, stk, mx: the out-of-line half of the check.
// The raw MXCSR words differ: reload only if a control bit does.
.macro STACKJOB_FPENV_RELOAD name, stk, mx
.L\name\()_mxcsr:
    xor     \mx, dword ptr [\stk + 4]
    test    \mx, {MXCSR_CONTROL}
    jz      .L\name\()_mxcsr_done
    ldmxcsr dword ptr [\stk + 4]
    jmp     .L\name\()_mxcsr_done
.L\name\()_fcw:
    fldcw   word ptr [\stk]
    jmp     .L\name\()_fcw_done
.endm
