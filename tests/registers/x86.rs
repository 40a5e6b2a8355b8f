//! 32-bit x86 (i386 psABI, table 2.3 "Register Usage"): ebx, esi, edi, ebp,
//! the MXCSR control bits and the x87 control word must survive a
//! pause/resume on both sides, each side keeping its own control words (as
//! on x86_64). Included by `tests/registers.rs` as `mod x86`.
//!
//! esi and ebp cannot be named as asm operands (LLVM's base and frame
//! pointers), and ebx is the PIC base: the harness saves and restores all
//! four by hand on the stack, around the sentinel section. ebp holding a
//! sentinel during the call is harmless: the callee saves and restores it
//! like any callee-saved register, and nothing unwinds through the block
//! (the callee is `extern "C"`, which aborts instead of unwinding).

use stackjob::{Job, Step, pause, start};
use std::arch::asm;
use std::cell::RefCell;

/// What is checked, in `Frame` order: four registers, then MXCSR and the
/// x87 control word (in the low 16 bits of its slot).
const NAMES: [&str; 6] = ["ebx", "esi", "edi", "ebp", "MXCSR", "x87 CW"];

/// MXCSR control bits; status flags (bits 0-5) are caller-saved.
const MXCSR_CONTROL: u32 = 0xffc0;
/// The x87 control word bits that mean something (masks, PC, RC).
const FCW_MEANINGFUL: u32 = 0x0f3f;

/// The job's control words: round toward zero, FZ+DAZ, x87 RC=chop,
/// PC=double. The resumer's: round down, DAZ, x87 RC=down, PC=single.
const JOB_WORDS: (u32, u16) = (0xffc0, 0x0e7f);
const RESUMER_WORDS: (u32, u16) = (0x3fc0, 0x047f);

/// Values to load before the call (`want`) and what was found after (`got`),
/// in `NAMES` order. The asm below addresses `want` at +0 and `got` at +24.
#[repr(C)]
#[derive(Debug)]
struct Frame {
    want: [u32; 6],
    got: [u32; 6],
}

fn frame(base: u32, (mxcsr, fcw): (u32, u16)) -> Frame {
    let mut want = [0; 6];
    for (i, w) in want[..4].iter_mut().enumerate() {
        *w = base ^ ((i as u32 + 1) * 0x0101_0101);
    }
    want[4] = mxcsr;
    want[5] = fcw as u32;
    Frame { want, got: [0; 6] }
}

fn assert_intact(f: &Frame, side: &str) {
    for (i, name) in NAMES[..4].iter().enumerate() {
        assert_eq!(f.got[i], f.want[i], "{side}: {name} clobbered across the switch");
    }
    let (want_mx, got_mx) = (f.want[4] & MXCSR_CONTROL, f.got[4] & MXCSR_CONTROL);
    assert_eq!(got_mx, want_mx, "{side}: MXCSR control bits changed ({got_mx:#x} != {want_mx:#x})");
    let (want_cw, got_cw) = (f.want[5] & FCW_MEANINGFUL, f.got[5] & FCW_MEANINGFUL);
    assert_eq!(got_cw, want_cw, "{side}: x87 control word changed ({got_cw:#x} != {want_cw:#x})");
}

/// Loads `frame.want` into every callee-saved register and the control
/// words, calls `f(arg)`, stores what they hold afterwards into
/// `frame.got`, and restores the caller's registers and control words.
fn with_sentinels(frame: &mut Frame, f: extern "C" fn(u32), arg: u32) {
    let p: *mut Frame = frame;
    // SAFETY: ebx, esi, edi and ebp are pushed first and popped last;
    // everything caller-saved is covered by clobber_abi("C") because the
    // block calls a C-ABI function. The caller's MXCSR and x87 CW are saved
    // at [esp] and [esp + 4] and reloaded at the end; `p` is kept at
    // [esp + 8] across the call, since every callee-saved register holds a
    // sentinel then. 28 bytes are pushed before the 4-byte argument, so esp
    // is 16-byte aligned at the call (the block is entered aligned, as a
    // call). `p`, `f` and `arg` are pinned to eax, edx and ecx, none of
    // which the block overwrites before their last use.
    unsafe {
        asm!(
            "push ebp",
            "push ebx",
            "push esi",
            "push edi",
            "push eax",
            "sub esp, 8",
            "stmxcsr dword ptr [esp]",
            "fnstcw word ptr [esp + 4]",
            "ldmxcsr dword ptr [eax + 16]",
            "fldcw word ptr [eax + 20]",
            "mov ebx, dword ptr [eax]",
            "mov esi, dword ptr [eax + 4]",
            "mov edi, dword ptr [eax + 8]",
            "mov ebp, dword ptr [eax + 12]",
            "sub esp, 4",
            "mov dword ptr [esp], ecx",
            "call edx",
            "add esp, 4",
            "mov eax, dword ptr [esp + 8]",
            "mov dword ptr [eax + 24], ebx",
            "mov dword ptr [eax + 28], esi",
            "mov dword ptr [eax + 32], edi",
            "mov dword ptr [eax + 36], ebp",
            "stmxcsr dword ptr [eax + 40]",
            "mov dword ptr [eax + 44], 0",
            "fnstcw word ptr [eax + 44]",
            "ldmxcsr dword ptr [esp]",
            "fldcw word ptr [esp + 4]",
            "add esp, 12",
            "pop edi",
            "pop esi",
            "pop ebx",
            "pop ebp",
            in("eax") p,
            in("edx") f,
            in("ecx") arg,
            clobber_abi("C"),
        );
    }
}

/// Recurses `depth` frames, keeping a value live in each, and pauses at the
/// bottom and again one frame up: two pauses from different depths.
#[inline(never)]
extern "C" fn deep_pause(depth: u32) {
    fn down(depth: u32, bottom: u32) -> u32 {
        if depth == 0 {
            pause();
            return 1;
        }
        let mine = std::hint::black_box(depth * 3 + 1);
        let below = down(depth - 1, bottom);
        if depth == 1 {
            pause();
        }
        assert_eq!(mine, depth * 3 + 1, "a local in frame {depth} of {bottom} changed across a pause");
        below + 1
    }
    assert_eq!(down(depth, depth), depth + 1);
}

thread_local! {
    static PAUSED: RefCell<Option<Job<Frame>>> = const { RefCell::new(None) };
    static RESULT: RefCell<Option<Frame>> = const { RefCell::new(None) };
}

/// Resumer-side callee: resumes the parked job to completion.
#[inline(never)]
extern "C" fn resume_parked(_: u32) {
    let mut job = PAUSED.with(|p| p.borrow_mut().take()).expect("a parked job");
    loop {
        match job.resume().unwrap() {
            Step::Paused(next) => job = next,
            Step::Finished(frame) => {
                RESULT.with(|r| *r.borrow_mut() = Some(frame));
                return;
            }
        }
    }
}

fn capable() -> bool {
    if !stackjob::is_capable() {
        eprintln!("skipped: stackjob has no usable backend here (backend {:?})", stackjob::backend());
    }
    stackjob::is_capable()
}

fn job_with_sentinels(base: u32, depth: u32, words: (u32, u16)) -> Job<Frame> {
    let step = start(None, move || {
        let mut f = frame(base, words);
        with_sentinels(&mut f, deep_pause, depth);
        f
    })
    .unwrap();
    let Step::Paused(job) = step else { panic!("the job should have paused") };
    job
}

fn run_both_sides(depth: u32) {
    run_both_sides_with(depth, JOB_WORDS, RESUMER_WORDS);
}

fn run_both_sides_with(depth: u32, job_words: (u32, u16), resumer_words: (u32, u16)) {
    if !capable() {
        return;
    }
    let job = job_with_sentinels(0xa5a5_0000, depth, job_words);
    PAUSED.with(|p| *p.borrow_mut() = Some(job));
    let mut mine = frame(0x5a5a_0000, resumer_words);
    with_sentinels(&mut mine, resume_parked, 0);
    assert_intact(&mine, "resumer");
    let theirs = RESULT.with(|r| r.borrow_mut().take()).expect("the job finished");
    assert_intact(&theirs, "job");
}

#[test]
fn callee_saved_registers_and_control_words_survive_pause_from_one_frame() {
    run_both_sides(0);
}

#[test]
fn callee_saved_registers_and_control_words_survive_pause_from_deep_frames() {
    run_both_sides(40);
}

#[test]
fn callee_saved_registers_survive_on_a_reused_pooled_stack() {
    if !capable() {
        return;
    }
    stackjob::init_thread(1, 1).unwrap();
    for depth in [3, 17, 0] {
        run_both_sides(depth);
    }
    stackjob::cleanup_thread();
}

#[test]
fn two_paused_jobs_keep_their_own_registers() {
    if !capable() {
        return;
    }
    // Two jobs with different sentinels, resumed alternately: each switch in
    // must restore that job's record, not the other's.
    let mut a = Some(job_with_sentinels(0x1111_0000, 5, JOB_WORDS));
    let mut b = Some(job_with_sentinels(0x2222_0000, 9, (0x1f80, 0x037f)));
    let mut done = Vec::new();
    while a.is_some() || b.is_some() {
        for slot in [&mut a, &mut b] {
            if let Some(job) = slot.take() {
                match job.resume().unwrap() {
                    Step::Paused(next) => *slot = Some(next),
                    Step::Finished(f) => done.push(f),
                }
            }
        }
    }
    assert_eq!(done.len(), 2);
    for f in &done {
        assert_intact(f, "interleaved job");
    }
}

/// A pool with `isolate_thread_state(false)` switches through the other
/// asm variants, which leave the control words alone: every callee-saved
/// register must still survive. Both sides use the thread's default
/// control words, which are shared state there.
#[test]
fn callee_saved_registers_survive_in_a_pool_that_shares_thread_state() {
    if !capable() {
        return;
    }
    let shared = stackjob::PoolConfig::new().max_size(1).init_size(1).isolate_thread_state(false);
    stackjob::init_thread_with(&shared).unwrap();
    let words = (0x1f80, 0x037f);
    for depth in [0, 17, 40] {
        run_both_sides_with(depth, words, words);
    }
    stackjob::cleanup_thread();
}

#[test]
fn sentinel_harness_detects_a_clobber() {
    // The harness itself must be able to fail: callees that clobber edi or
    // ebx, or the MXCSR rounding bits, against the ABI are reported.
    #[unsafe(naked)]
    extern "C" fn clobber_edi(_: u32) {
        std::arch::naked_asm!("xor edi, edi", "ret");
    }
    #[unsafe(naked)]
    extern "C" fn clobber_ebx(_: u32) {
        std::arch::naked_asm!("xor ebx, ebx", "ret");
    }
    #[unsafe(naked)]
    extern "C" fn clobber_mxcsr(_: u32) {
        std::arch::naked_asm!("push 0x1f80", "ldmxcsr dword ptr [esp]", "add esp, 4", "ret");
    }
    let probes = [(clobber_edi as extern "C" fn(u32), "edi"), (clobber_ebx, "ebx"), (clobber_mxcsr, "MXCSR")];
    for (probe, name) in probes {
        let mut f = frame(0x1234_0000, JOB_WORDS);
        with_sentinels(&mut f, probe, 0);
        let caught = std::panic::catch_unwind(|| assert_intact(&f, "probe"));
        assert!(caught.is_err(), "clobbering {name} must be detected");
    }
}
