//! riscv64 (psABI, LP64D): s0-s11 and fs0-fs11 must survive a pause/resume
//! on both sides. Included by `tests/registers.rs` as `mod riscv64`.
//!
//! s0 (frame pointer) and s1 (LLVM's base pointer) cannot be named as asm
//! operands, so the harness saves and restores them by hand on the stack,
//! around the sentinel section. s0 holding a sentinel during the call is
//! harmless: the callee saves and restores it like any callee-saved
//! register, and nothing unwinds through the block (the callee is
//! `extern "C"`, which aborts instead of unwinding).
//!
//! The fs registers are 64-bit callee-saved under LP64D, the float ABI of
//! every riscv64 target with std (riscv64gc-*, the RVA23 and Android
//! targets). Stable rustc hides the "d" target feature from `cfg`, so the
//! tests check the backend name at run time and skip elsewhere.

use stackjob::{Job, Step, pause, start};
use std::arch::asm;
use std::cell::RefCell;

/// The registers checked, in `Frame` order.
const NAMES: [&str; 24] = [
    "s0", "s1", "s2", "s3", "s4", "s5", "s6", "s7", "s8", "s9", "s10", "s11", "fs0", "fs1", "fs2", "fs3", "fs4", "fs5",
    "fs6", "fs7", "fs8", "fs9", "fs10", "fs11",
];
const N: usize = NAMES.len();

/// Values to load before the call (`want`) and what was found after (`got`),
/// in `NAMES` order. The asm below addresses `want` at +0 and `got` at +192.
#[repr(C)]
#[derive(Debug)]
struct Frame {
    want: [u64; N],
    got: [u64; N],
}

fn frame(base: u64) -> Frame {
    let mut want = [0; N];
    for (i, w) in want.iter_mut().enumerate() {
        // Distinct per register and per side; the fs values are bit patterns
        // only moved with fld/fsd, never computed with (no NaN boxing).
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
    // SAFETY: s0 and s1 (which cannot be named as operands) are saved at
    // 0(sp) and 8(sp) and restored at the end; s2-s11 and fs0-fs11 are
    // declared clobbered; everything caller-saved is covered by
    // clobber_abi("C") because the block calls a C-ABI function. sp moves by
    // 32, so it stays 16-byte aligned. `p` is kept at 16(sp) across the
    // call, since every callee-saved register holds a sentinel then. `p` and
    // `f` are pinned to a1/a2: left to the allocator, they may land in s1 or
    // s0 (reserved only when a base or frame pointer is needed), which the
    // block overwrites before its last use of them.
    unsafe {
        asm!(
            "addi sp, sp, -32",
            "sd s0, 0(sp)",
            "sd s1, 8(sp)",
            "sd a1, 16(sp)",
            "ld s1, 8(a1)",
            "ld s2, 16(a1)",
            "ld s3, 24(a1)",
            "ld s4, 32(a1)",
            "ld s5, 40(a1)",
            "ld s6, 48(a1)",
            "ld s7, 56(a1)",
            "ld s8, 64(a1)",
            "ld s9, 72(a1)",
            "ld s10, 80(a1)",
            "ld s11, 88(a1)",
            "fld fs0, 96(a1)",
            "fld fs1, 104(a1)",
            "fld fs2, 112(a1)",
            "fld fs3, 120(a1)",
            "fld fs4, 128(a1)",
            "fld fs5, 136(a1)",
            "fld fs6, 144(a1)",
            "fld fs7, 152(a1)",
            "fld fs8, 160(a1)",
            "fld fs9, 168(a1)",
            "fld fs10, 176(a1)",
            "fld fs11, 184(a1)",
            "ld s0, 0(a1)",
            "jalr a2",
            "ld t0, 16(sp)",
            "sd s0, 192(t0)",
            "sd s1, 200(t0)",
            "sd s2, 208(t0)",
            "sd s3, 216(t0)",
            "sd s4, 224(t0)",
            "sd s5, 232(t0)",
            "sd s6, 240(t0)",
            "sd s7, 248(t0)",
            "sd s8, 256(t0)",
            "sd s9, 264(t0)",
            "sd s10, 272(t0)",
            "sd s11, 280(t0)",
            "fsd fs0, 288(t0)",
            "fsd fs1, 296(t0)",
            "fsd fs2, 304(t0)",
            "fsd fs3, 312(t0)",
            "fsd fs4, 320(t0)",
            "fsd fs5, 328(t0)",
            "fsd fs6, 336(t0)",
            "fsd fs7, 344(t0)",
            "fsd fs8, 352(t0)",
            "fsd fs9, 360(t0)",
            "fsd fs10, 368(t0)",
            "fsd fs11, 376(t0)",
            "ld s0, 0(sp)",
            "ld s1, 8(sp)",
            "addi sp, sp, 32",
            in("a1") p,
            in("a2") f,
            in("a0") arg,
            out("s2") _, out("s3") _, out("s4") _, out("s5") _, out("s6") _, out("s7") _, out("s8") _, out("s9") _, out("s10") _, out("s11") _,
            out("fs0") _, out("fs1") _, out("fs2") _, out("fs3") _, out("fs4") _, out("fs5") _, out("fs6") _, out("fs7") _, out("fs8") _, out("fs9") _, out("fs10") _, out("fs11") _,
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
        return false;
    }
    if stackjob::backend() != "riscv64-lp64d" {
        eprintln!("skipped: these sentinels assume LP64D, the backend is {:?}", stackjob::backend());
        return false;
    }
    true
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
fn callee_saved_s_and_fs_registers_survive_pause_from_one_frame() {
    run_both_sides(0);
}

#[test]
fn callee_saved_s_and_fs_registers_survive_pause_from_deep_frames() {
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
    if !capable() {
        return;
    }
    // The harness itself must be able to fail: callees that clobber s5 or
    // fs7 against the ABI are reported.
    #[unsafe(naked)]
    extern "C" fn clobber_s5(_: u64) {
        std::arch::naked_asm!("li s5, 0", "ret");
    }
    #[unsafe(naked)]
    extern "C" fn clobber_fs7(_: u64) {
        std::arch::naked_asm!("fmv.d.x fs7, zero", "ret");
    }
    for (probe, name) in [(clobber_s5 as extern "C" fn(u64), "s5"), (clobber_fs7, "fs7")] {
        let mut f = frame(0x1234_0000_0000_0000);
        with_sentinels(&mut f, probe, 0);
        let caught = std::panic::catch_unwind(|| assert_intact(&f, "probe"));
        assert!(caught.is_err(), "clobbering {name} must be detected");
    }
}
