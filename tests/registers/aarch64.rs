//! aarch64 (AAPCS64 §6.1.1/6.1.2): x19-x28, x29 and d8-d15 must survive a
//! pause/resume on both sides. Included by `tests/registers.rs` as
//! `mod aarch64`.
//!
//! x19 and x29 cannot be named as asm operands (LLVM reserves them as base
//! and frame pointer), so the harness saves and restores them by hand on the
//! stack, around the sentinel section. x29 holding a sentinel during the call
//! is harmless: the callee saves and restores it like any callee-saved
//! register, and nothing unwinds through the block (the callee is
//! `extern "C"`, which aborts instead of unwinding).

use stackjob::{Job, Step, pause, start};
use std::arch::asm;
use std::cell::RefCell;

/// The registers checked, in `Frame` order.
const NAMES: [&str; 19] = [
    "x19", "x20", "x21", "x22", "x23", "x24", "x25", "x26", "x27", "x28", "x29", "d8", "d9", "d10", "d11", "d12",
    "d13", "d14", "d15",
];
const N: usize = NAMES.len();

/// Values to load before the call (`want`) and what was found after (`got`),
/// in `NAMES` order. The asm below addresses `want` at +0 and `got` at +152.
#[repr(C)]
#[derive(Debug)]
struct Frame {
    want: [u64; N],
    got: [u64; N],
}

fn frame(base: u64) -> Frame {
    let mut want = [0; N];
    for (i, w) in want.iter_mut().enumerate() {
        // Distinct per register and per side; the d values are bit patterns
        // only moved with ldp/stp, never computed with.
        *w = base ^ ((i as u64 + 1) * 0x0101_0101_0101_0101);
    }
    Frame { want, got: [0; N] }
}

fn assert_intact(f: &Frame, side: &str) {
    for (i, name) in NAMES.iter().enumerate() {
        assert_eq!(f.got[i], f.want[i], "{side}: {name} clobbered across the switch");
    }
}

/// Loads `frame.want` into every callee-saved register, calls `f(arg)`,
/// stores what the registers hold afterwards into `frame.got`, and restores
/// the caller's registers.
fn with_sentinels(frame: &mut Frame, f: extern "C" fn(u64), arg: u64) {
    let p: *mut Frame = frame;
    // SAFETY: x19 and x29 (which cannot be named as operands) are saved at
    // [sp] and restored at the end; x20-x28 are declared clobbered;
    // everything caller-saved, including all of v0-v31, is covered by
    // clobber_abi("C") because the block calls a C-ABI function. sp moves by
    // 32, so it stays 16-byte aligned. `p` is kept at [sp + 16] across the
    // call, since every callee-saved register holds a sentinel then. `p` and
    // `f` are pinned to x1/x2: left to the allocator, they may land in x19
    // (reserved only in functions that need a base pointer), which the
    // block overwrites before its last use of them (seen in release builds).
    unsafe {
        asm!(
            "stp x29, x19, [sp, #-32]!",
            "str x1, [sp, #16]",
            "ldp x19, x20, [x1, #0]",
            "ldp x21, x22, [x1, #16]",
            "ldp x23, x24, [x1, #32]",
            "ldp x25, x26, [x1, #48]",
            "ldp x27, x28, [x1, #64]",
            "ldp d8, d9, [x1, #88]",
            "ldp d10, d11, [x1, #104]",
            "ldp d12, d13, [x1, #120]",
            "ldp d14, d15, [x1, #136]",
            "ldr x29, [x1, #80]",
            "blr x2",
            "ldr x9, [sp, #16]",
            "stp x19, x20, [x9, #152]",
            "stp x21, x22, [x9, #168]",
            "stp x23, x24, [x9, #184]",
            "stp x25, x26, [x9, #200]",
            "stp x27, x28, [x9, #216]",
            "str x29, [x9, #232]",
            "stp d8, d9, [x9, #240]",
            "stp d10, d11, [x9, #256]",
            "stp d12, d13, [x9, #272]",
            "stp d14, d15, [x9, #288]",
            "ldp x29, x19, [sp], #32",
            in("x1") p,
            in("x2") f,
            in("x0") arg,
            out("x20") _, out("x21") _, out("x22") _, out("x23") _, out("x24") _,
            out("x25") _, out("x26") _, out("x27") _, out("x28") _,
            clobber_abi("C"),
        );
    }
}

/// Recurses `depth` frames, keeping a value live in each, and pauses at the
/// bottom and again one frame up: two pauses from different depths.
#[inline(never)]
extern "C" fn deep_pause(depth: u64) {
    fn down(depth: u64, bottom: u64) -> u64 {
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
extern "C" fn resume_parked(_: u64) {
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

fn job_with_sentinels(base: u64, depth: u64) -> Job<Frame> {
    let step = start(None, move || {
        let mut f = frame(base);
        with_sentinels(&mut f, deep_pause, depth);
        f
    })
    .unwrap();
    let Step::Paused(job) = step else { panic!("the job should have paused") };
    job
}

fn run_both_sides(depth: u64) {
    if !capable() {
        return;
    }
    let job = job_with_sentinels(0xa5a5_0000_0000_0000, depth);
    PAUSED.with(|p| *p.borrow_mut() = Some(job));
    let mut mine = frame(0x5a5a_0000_0000_0000);
    with_sentinels(&mut mine, resume_parked, 0);
    assert_intact(&mine, "resumer");
    let theirs = RESULT.with(|r| r.borrow_mut().take()).expect("the job finished");
    assert_intact(&theirs, "job");
}

#[test]
fn callee_saved_gprs_and_d8_d15_survive_pause_from_one_frame() {
    run_both_sides(0);
}

#[test]
fn callee_saved_gprs_and_d8_d15_survive_pause_from_deep_frames() {
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
    let mut a = Some(job_with_sentinels(0x1111_0000_0000_0000, 5));
    let mut b = Some(job_with_sentinels(0x2222_0000_0000_0000, 9));
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

#[test]
fn sentinel_harness_detects_a_clobber() {
    // The harness itself must be able to fail: callees that clobber x23 or
    // d12 against the ABI are reported. `bti c` (a NOP without BTI) because
    // the harness reaches them with `blr`.
    #[unsafe(naked)]
    extern "C" fn clobber_x23(_: u64) {
        std::arch::naked_asm!("bti c", "mov x23, xzr", "ret");
    }
    #[unsafe(naked)]
    extern "C" fn clobber_d12(_: u64) {
        std::arch::naked_asm!("bti c", "fmov d12, xzr", "ret");
    }
    for (probe, name) in [(clobber_x23 as extern "C" fn(u64), "x23"), (clobber_d12, "d12")] {
        let mut f = frame(0x1234_0000_0000_0000);
        with_sentinels(&mut f, probe, 0);
        let caught = std::panic::catch_unwind(|| assert_intact(&f, "probe"));
        assert!(caught.is_err(), "clobbering {name} must be detected");
    }
}
