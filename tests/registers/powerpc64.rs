//! powerpc64 ELFv2 (section 2.2.1.1 "Register Roles"): r14-r31, f14-f31,
//! v20-v31, cr2-cr4 and VRSAVE must survive a pause/resume on both sides.
//! Included by `tests/registers.rs` as `mod powerpc64`.
//!
//! r30 (LLVM's base pointer), r31 (frame pointer), r2 (TOC) and VRSAVE
//! cannot be named as asm operands, so the harness saves and restores them
//! by hand in a frame of its own, around the sentinel section, together
//! with the caller's CR. r31 holding a sentinel during the call is
//! harmless: the callee saves and restores it like any nonvolatile
//! register, and nothing unwinds through the block (the callee is
//! `extern "C"`, which aborts instead of unwinding).

use stackjob::{Job, Step, pause, start};
use std::arch::asm;
use std::cell::RefCell;

/// CR bits of cr2, cr3 and cr4 (cr0 is the most significant field).
const CR_NONVOLATILE: u64 = 0x00ff_f000;

/// Values to load before the call (`want`) and what was found after (`got`).
/// The asm below addresses `want` at +0 and `got` at +496 (the vector
/// registers, at +288 of each, must be 16-byte aligned).
#[repr(C, align(16))]
#[derive(Debug)]
struct Frame {
    want: Regs,
    got: Regs,
}

#[repr(C)]
#[derive(Debug, Default, PartialEq)]
struct Regs {
    /// r14-r31.
    r: [u64; 18],
    /// f14-f31, as bit patterns (only moved with lfd/stfd).
    f: [u64; 18],
    /// v20-v31, two doublewords each.
    v: [u64; 24],
    /// The whole CR (only cr2-cr4 are compared), then VRSAVE.
    cr: u64,
    vrsave: u64,
}

const _: () = assert!(std::mem::size_of::<Regs>() == 496 && std::mem::offset_of!(Regs, v) == 288);

fn frame(base: u64) -> Frame {
    let mut want = Regs::default();
    for (i, w) in want.r.iter_mut().chain(want.f.iter_mut()).chain(want.v.iter_mut()).enumerate() {
        *w = base ^ ((i as u64 + 1) * 0x0101_0101_0101_0101);
    }
    want.cr = (((base >> 48) ^ 0x0c3) & 0xfff) << 12;
    want.vrsave = ((base >> 32) ^ 0x1357_9bdf) & 0xffff_ffff;
    Frame { want, got: Regs::default() }
}

fn assert_intact(f: &Frame, side: &str) {
    let (want, got) = (&f.want, &f.got);
    for i in 0..18 {
        assert_eq!(got.r[i], want.r[i], "{side}: r{} clobbered across the switch", 14 + i);
        assert_eq!(got.f[i], want.f[i], "{side}: f{} clobbered across the switch", 14 + i);
    }
    for i in 0..12 {
        assert_eq!(
            got.v[2 * i..2 * i + 2],
            want.v[2 * i..2 * i + 2],
            "{side}: v{} clobbered across the switch",
            20 + i
        );
    }
    let (want_cr, got_cr) = (want.cr & CR_NONVOLATILE, got.cr & CR_NONVOLATILE);
    assert_eq!(got_cr, want_cr, "{side}: cr2-cr4 clobbered across the switch ({got_cr:#x} != {want_cr:#x})");
    assert_eq!(got.vrsave & 0xffff_ffff, want.vrsave, "{side}: VRSAVE clobbered across the switch");
}

/// Loads `frame.want` into every nonvolatile register, calls `f(arg)`,
/// stores what the registers hold afterwards into `frame.got`, and restores
/// the caller's registers.
fn with_sentinels(frame: &mut Frame, f: extern "C" fn(u64), arg: u64) {
    let p: *mut Frame = frame;
    // SAFETY: the block makes a 96-byte frame of its own (its 32-byte
    // header is the callee's to write, as ELFv2 allows) and keeps there `p`,
    // r30, r31, r2, the caller's VRSAVE and CR, restoring them at the end;
    // r14-r29, f14-f31, v20-v31 and cr2-cr4 are declared clobbered;
    // everything volatile is covered by clobber_abi("C") because the block
    // calls a C-ABI function (entered at its global entry point: r12 = CTR =
    // `f`). `p`, `f` and `arg` are pinned to r4, r5 and r3, which the block
    // does not overwrite before their last use.
    unsafe {
        asm!(
            "stdu 1, -96(1)",
            "std 4, 32(1)",
            "std 30, 40(1)",
            "std 31, 48(1)",
            "std 2, 56(1)",
            "mfvrsave 0",
            "std 0, 64(1)",
            "mfcr 0",
            "std 0, 72(1)",
            "ld 14, 0(4)",
            "ld 15, 8(4)",
            "ld 16, 16(4)",
            "ld 17, 24(4)",
            "ld 18, 32(4)",
            "ld 19, 40(4)",
            "ld 20, 48(4)",
            "ld 21, 56(4)",
            "ld 22, 64(4)",
            "ld 23, 72(4)",
            "ld 24, 80(4)",
            "ld 25, 88(4)",
            "ld 26, 96(4)",
            "ld 27, 104(4)",
            "ld 28, 112(4)",
            "ld 29, 120(4)",
            "ld 30, 128(4)",
            "ld 31, 136(4)",
            "lfd 14, 144(4)",
            "lfd 15, 152(4)",
            "lfd 16, 160(4)",
            "lfd 17, 168(4)",
            "lfd 18, 176(4)",
            "lfd 19, 184(4)",
            "lfd 20, 192(4)",
            "lfd 21, 200(4)",
            "lfd 22, 208(4)",
            "lfd 23, 216(4)",
            "lfd 24, 224(4)",
            "lfd 25, 232(4)",
            "lfd 26, 240(4)",
            "lfd 27, 248(4)",
            "lfd 28, 256(4)",
            "lfd 29, 264(4)",
            "lfd 30, 272(4)",
            "lfd 31, 280(4)",
            "addi 6, 4, 288",
            "lvx 20, 0, 6",
            "addi 6, 6, 16",
            "lvx 21, 0, 6",
            "addi 6, 6, 16",
            "lvx 22, 0, 6",
            "addi 6, 6, 16",
            "lvx 23, 0, 6",
            "addi 6, 6, 16",
            "lvx 24, 0, 6",
            "addi 6, 6, 16",
            "lvx 25, 0, 6",
            "addi 6, 6, 16",
            "lvx 26, 0, 6",
            "addi 6, 6, 16",
            "lvx 27, 0, 6",
            "addi 6, 6, 16",
            "lvx 28, 0, 6",
            "addi 6, 6, 16",
            "lvx 29, 0, 6",
            "addi 6, 6, 16",
            "lvx 30, 0, 6",
            "addi 6, 6, 16",
            "lvx 31, 0, 6",
            "addi 6, 6, 16",
            "ld 0, 480(4)",
            "mtcrf 0x38, 0",
            "ld 0, 488(4)",
            "mtvrsave 0",
            "mr 12, 5",
            "mtctr 12",
            "bctrl",
            "ld 2, 56(1)",
            "ld 4, 32(1)",
            "std 14, 496(4)",
            "std 15, 504(4)",
            "std 16, 512(4)",
            "std 17, 520(4)",
            "std 18, 528(4)",
            "std 19, 536(4)",
            "std 20, 544(4)",
            "std 21, 552(4)",
            "std 22, 560(4)",
            "std 23, 568(4)",
            "std 24, 576(4)",
            "std 25, 584(4)",
            "std 26, 592(4)",
            "std 27, 600(4)",
            "std 28, 608(4)",
            "std 29, 616(4)",
            "std 30, 624(4)",
            "std 31, 632(4)",
            "stfd 14, 640(4)",
            "stfd 15, 648(4)",
            "stfd 16, 656(4)",
            "stfd 17, 664(4)",
            "stfd 18, 672(4)",
            "stfd 19, 680(4)",
            "stfd 20, 688(4)",
            "stfd 21, 696(4)",
            "stfd 22, 704(4)",
            "stfd 23, 712(4)",
            "stfd 24, 720(4)",
            "stfd 25, 728(4)",
            "stfd 26, 736(4)",
            "stfd 27, 744(4)",
            "stfd 28, 752(4)",
            "stfd 29, 760(4)",
            "stfd 30, 768(4)",
            "stfd 31, 776(4)",
            "addi 6, 4, 784",
            "stvx 20, 0, 6",
            "addi 6, 6, 16",
            "stvx 21, 0, 6",
            "addi 6, 6, 16",
            "stvx 22, 0, 6",
            "addi 6, 6, 16",
            "stvx 23, 0, 6",
            "addi 6, 6, 16",
            "stvx 24, 0, 6",
            "addi 6, 6, 16",
            "stvx 25, 0, 6",
            "addi 6, 6, 16",
            "stvx 26, 0, 6",
            "addi 6, 6, 16",
            "stvx 27, 0, 6",
            "addi 6, 6, 16",
            "stvx 28, 0, 6",
            "addi 6, 6, 16",
            "stvx 29, 0, 6",
            "addi 6, 6, 16",
            "stvx 30, 0, 6",
            "addi 6, 6, 16",
            "stvx 31, 0, 6",
            "addi 6, 6, 16",
            "mfcr 0",
            "std 0, 976(4)",
            "mfvrsave 0",
            "std 0, 984(4)",
            "ld 0, 64(1)",
            "mtvrsave 0",
            "ld 0, 72(1)",
            "mtcrf 0x38, 0",
            "ld 30, 40(1)",
            "ld 31, 48(1)",
            "addi 1, 1, 96",
            in("r4") p,
            in("r5") f,
            in("r3") arg,
            out("r14") _, out("r15") _, out("r16") _, out("r17") _, out("r18") _,
            out("r19") _, out("r20") _, out("r21") _, out("r22") _, out("r23") _,
            out("r24") _, out("r25") _, out("r26") _, out("r27") _, out("r28") _,
            out("r29") _,
            out("f14") _, out("f15") _, out("f16") _, out("f17") _, out("f18") _,
            out("f19") _, out("f20") _, out("f21") _, out("f22") _, out("f23") _,
            out("f24") _, out("f25") _, out("f26") _, out("f27") _, out("f28") _,
            out("f29") _, out("f30") _, out("f31") _,
            out("v20") _, out("v21") _, out("v22") _, out("v23") _, out("v24") _,
            out("v25") _, out("v26") _, out("v27") _, out("v28") _, out("v29") _,
            out("v30") _, out("v31") _,
            out("cr2") _, out("cr3") _, out("cr4") _,
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
fn nonvolatile_registers_survive_pause_from_one_frame() {
    run_both_sides(0);
}

#[test]
fn nonvolatile_registers_survive_pause_from_deep_frames() {
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
    // The harness itself must be able to fail: callees that clobber r20,
    // r31 (saved by hand), f20, v25, cr3 or VRSAVE against the ABI are
    // reported.
    #[unsafe(naked)]
    extern "C" fn clobber_r20(_: u64) {
        std::arch::naked_asm!("li 20, 0", "blr");
    }
    #[unsafe(naked)]
    extern "C" fn clobber_r31(_: u64) {
        std::arch::naked_asm!("li 31, 0", "blr");
    }
    #[unsafe(naked)]
    extern "C" fn clobber_f20(_: u64) {
        std::arch::naked_asm!("xxlxor 20, 20, 20", "blr");
    }
    #[unsafe(naked)]
    extern "C" fn clobber_v25(_: u64) {
        std::arch::naked_asm!("vxor 25, 25, 25", "blr");
    }
    #[unsafe(naked)]
    extern "C" fn clobber_cr3(_: u64) {
        std::arch::naked_asm!("li 0, 0", "mtcrf 0x10, 0", "blr");
    }
    #[unsafe(naked)]
    extern "C" fn clobber_vrsave(_: u64) {
        std::arch::naked_asm!("li 0, 0", "mtvrsave 0", "blr");
    }
    let probes = [
        (clobber_r20 as extern "C" fn(u64), "r20"),
        (clobber_r31, "r31"),
        (clobber_f20, "f20"),
        (clobber_v25, "v25"),
        (clobber_cr3, "cr3"),
        (clobber_vrsave, "VRSAVE"),
    ];
    for (probe, name) in probes {
        let mut f = frame(0x1234_0000_0000_0000);
        with_sentinels(&mut f, probe, 0);
        let caught = std::panic::catch_unwind(|| assert_intact(&f, "probe"));
        assert!(caught.is_err(), "clobbering {name} must be detected");
    }
}
