//! 32-bit Arm (AAPCS32 "Core registers" and "VFP register usage
//! conventions"): r4-r11 and d8-d15 must survive a pause/resume on both
//! sides. Included by `tests/registers.rs` as `mod arm`.
//!
//! r6 (base pointer), r7 (T32 frame pointer) and r11 (A32 frame pointer)
//! cannot be named as asm operands, so the harness saves and restores them
//! by hand on the stack, around the sentinel section. r11 holding a
//! sentinel during the call is harmless: the callee saves and restores it
//! like any callee-saved register, and nothing unwinds through the block
//! (the callee is `extern "C"`, which aborts instead of unwinding).

use stackjob::{Job, Step, pause, start};
use std::arch::asm;
use std::cell::RefCell;

/// The core registers checked, in `Frame::want_r` order.
const CORE: [&str; 8] = ["r4", "r5", "r6", "r7", "r8", "r9", "r10", "r11"];
/// The VFP registers checked, in `Frame::want_d` order.
const VFP: [&str; 8] = ["d8", "d9", "d10", "d11", "d12", "d13", "d14", "d15"];

/// Values to load before the call (`want_*`) and what was found after
/// (`got_*`). The asm below addresses `want_r` at +0, `want_d` at +32,
/// `got_r` at +96 and `got_d` at +128.
#[repr(C)]
#[derive(Debug)]
struct Frame {
    want_r: [u32; 8],
    want_d: [u64; 8],
    got_r: [u32; 8],
    got_d: [u64; 8],
}

fn frame(base: u32) -> Frame {
    let mut f = Frame { want_r: [0; 8], want_d: [0; 8], got_r: [0; 8], got_d: [0; 8] };
    for (i, w) in f.want_r.iter_mut().enumerate() {
        *w = base ^ ((i as u32 + 1) * 0x0101_0101);
    }
    for (i, w) in f.want_d.iter_mut().enumerate() {
        // Bit patterns only moved with vldm/vstm, never computed with.
        *w = ((base as u64) << 32 | 0x00c0_ffee) ^ ((i as u64 + 9) * 0x0101_0101_0101_0101);
    }
    f
}

fn assert_intact(f: &Frame, side: &str) {
    for (i, name) in CORE.iter().enumerate() {
        assert_eq!(f.got_r[i], f.want_r[i], "{side}: {name} clobbered across the switch");
    }
    for (i, name) in VFP.iter().enumerate() {
        assert_eq!(f.got_d[i], f.want_d[i], "{side}: {name} clobbered across the switch");
    }
}

/// Loads `frame.want_*` into every callee-saved register, calls `f(arg)`,
/// stores what the registers hold afterwards into `frame.got_*`, and
/// restores the caller's registers.
fn with_sentinels(frame: &mut Frame, f: extern "C" fn(u32), arg: u32) {
    let p: *mut Frame = frame;
    // SAFETY: r6, r7 and r11 (which cannot be named as operands) are pushed
    // with `p` and popped at the end; r4, r5, r8-r10 and d8-d15 are declared
    // clobbered; everything caller-saved is covered by clobber_abi("C")
    // because the block calls a C-ABI function. Four words are pushed, so
    // sp stays 8-byte aligned at the call. `p` is reloaded from [sp] after
    // the call, since every callee-saved register holds a sentinel then.
    // `p` and `f` are pinned to r1/r2: left to the allocator, they could land
    // in a register the block overwrites before its last use of them.
    unsafe {
        asm!(
            "push {{r1, r6, r7, r11}}",
            "add r3, r1, #32",
            "vldmia r3, {{d8-d15}}",
            "ldm r1, {{r4-r11}}",
            "blx r2",
            "ldr r3, [sp]",
            "add r12, r3, #96",
            "stm r12, {{r4-r11}}",
            "add r12, r3, #128",
            "vstmia r12, {{d8-d15}}",
            "pop {{r1, r6, r7, r11}}",
            in("r1") p,
            in("r2") f,
            in("r0") arg,
            out("r4") _, out("r5") _, out("r8") _, out("r9") _, out("r10") _,
            out("d8") _, out("d9") _, out("d10") _, out("d11") _,
            out("d12") _, out("d13") _, out("d14") _, out("d15") _,
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

fn job_with_sentinels(base: u32, depth: u32) -> Job<Frame> {
    let step = start(None, move || {
        let mut f = frame(base);
        with_sentinels(&mut f, deep_pause, depth);
        f
    })
    .unwrap();
    let Step::Paused(job) = step else { panic!("the job should have paused") };
    job
}

fn run_both_sides(depth: u32) {
    if !capable() {
        return;
    }
    let job = job_with_sentinels(0xa5a5_0000, depth);
    PAUSED.with(|p| *p.borrow_mut() = Some(job));
    let mut mine = frame(0x5a5a_0000);
    with_sentinels(&mut mine, resume_parked, 0);
    assert_intact(&mine, "resumer");
    let theirs = RESULT.with(|r| r.borrow_mut().take()).expect("the job finished");
    assert_intact(&theirs, "job");
}

#[test]
fn callee_saved_core_registers_and_d8_d15_survive_pause_from_one_frame() {
    run_both_sides(0);
}

#[test]
fn callee_saved_core_registers_and_d8_d15_survive_pause_from_deep_frames() {
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
    let mut a = Some(job_with_sentinels(0x1111_0000, 5));
    let mut b = Some(job_with_sentinels(0x2222_0000, 9));
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
    // The harness itself must be able to fail: callees that clobber r5, r11
    // (the frame pointer the asm saves by hand) or d12 against the ABI are
    // reported.
    #[unsafe(naked)]
    extern "C" fn clobber_r5(_: u32) {
        std::arch::naked_asm!("mov r5, #0", "bx lr");
    }
    #[unsafe(naked)]
    extern "C" fn clobber_r11(_: u32) {
        std::arch::naked_asm!("mov r11, #0", "bx lr");
    }
    #[unsafe(naked)]
    extern "C" fn clobber_d12(_: u32) {
        // arg is 0: d12 = r0:r0 = 0, never a sentinel.
        std::arch::naked_asm!("vmov d12, r0, r0", "bx lr");
    }
    let probes = [(clobber_r5 as extern "C" fn(u32), "r5"), (clobber_r11, "r11"), (clobber_d12, "d12")];
    for (probe, name) in probes {
        let mut f = frame(0x1234_0000);
        with_sentinels(&mut f, probe, 0);
        let caught = std::panic::catch_unwind(|| assert_intact(&f, "probe"));
        assert!(caught.is_err(), "clobbering {name} must be detected");
    }
}
