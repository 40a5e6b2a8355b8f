//! Register preservation across pause/resume.
//!
//! Every callee-saved register of the ABI is filled with a sentinel by
//! inline asm, which then calls into Rust code that pauses (job side) or
//! resumes (resumer side) several frames deeper; when control comes back to
//! the asm, it reads every register out again. Job and resumer use
//! different sentinels, so a switch that restored the wrong side's
//! registers — or forgot one — is caught.

#[cfg(target_arch = "x86_64")]
mod x86_64 {
    use stackjob::{Job, Step, pause, start};
    use std::arch::asm;
    use std::cell::RefCell;

    /// Values to load before the call (`want`) and what was found after (`got`):
    /// rbx, rbp, r12, r13, r14, r15, then MXCSR (low 32 bits) | x87 CW << 32.
    #[repr(C)]
    #[derive(Default, Debug)]
    struct Frame {
        want: [u64; 7],
        got: [u64; 7],
    }

    /// MXCSR control bits; status flags (bits 0-5) are caller-saved.
    const MXCSR_CONTROL: u64 = 0xffc0;
    /// The x87 control word bits that mean something (masks, PC, RC).
    const FCW_MEANINGFUL: u64 = 0x0f3f;

    fn frame(base: u64, mxcsr: u32, fcw: u16) -> Frame {
        let mut f = Frame::default();
        for (i, w) in f.want[..6].iter_mut().enumerate() {
            *w = base ^ ((i as u64 + 1) * 0x0101_0101_0101_0101);
        }
        f.want[6] = mxcsr as u64 | (fcw as u64) << 32;
        f
    }

    fn assert_intact(f: &Frame, side: &str) {
        let names = ["rbx", "rbp", "r12", "r13", "r14", "r15"];
        for (i, name) in names.iter().enumerate() {
            assert_eq!(f.got[i], f.want[i], "{side}: {name} clobbered across the switch");
        }
        let (want_mx, got_mx) = (f.want[6] & MXCSR_CONTROL, f.got[6] & MXCSR_CONTROL);
        assert_eq!(got_mx, want_mx, "{side}: MXCSR control bits changed ({got_mx:#x} != {want_mx:#x})");
        let (want_cw, got_cw) = ((f.want[6] >> 32) & FCW_MEANINGFUL, (f.got[6] >> 32) & FCW_MEANINGFUL);
        assert_eq!(got_cw, want_cw, "{side}: x87 control word changed ({got_cw:#x} != {want_cw:#x})");
    }

    /// Loads `frame.want` into every callee-saved register and the control
    /// words, calls `f(arg)`, stores what the registers hold afterwards into
    /// `frame.got`, and restores the caller's registers and control words.
    fn with_sentinels(frame: &mut Frame, f: extern "C" fn(u64), arg: u64) {
        let p: *mut Frame = frame;
        // SAFETY: rbx and rbp (which cannot be named as operands) are saved
        // and restored by hand; r12-r15 are declared clobbered; everything
        // caller-saved is covered by clobber_abi("C") because the block calls
        // a C-ABI function. The stack stays 16-byte aligned at the call
        // (4 pushes of 8 bytes from an aligned block entry). The caller's
        // MXCSR and x87 CW are saved at [rsp] and reloaded at the end.
        unsafe {
            asm!(
                "push rbp",
                "push rbx",
                "push rsi",
                "sub rsp, 8",
                "stmxcsr dword ptr [rsp]",
                "fnstcw word ptr [rsp + 4]",
                "ldmxcsr dword ptr [rsi + 48]",
                "fldcw word ptr [rsi + 52]",
                "mov rbx, qword ptr [rsi]",
                "mov rbp, qword ptr [rsi + 8]",
                "mov r12, qword ptr [rsi + 16]",
                "mov r13, qword ptr [rsi + 24]",
                "mov r14, qword ptr [rsi + 32]",
                "mov r15, qword ptr [rsi + 40]",
                "call rdx",
                "mov rax, qword ptr [rsp + 8]",
                "mov qword ptr [rax + 56], rbx",
                "mov qword ptr [rax + 64], rbp",
                "mov qword ptr [rax + 72], r12",
                "mov qword ptr [rax + 80], r13",
                "mov qword ptr [rax + 88], r14",
                "mov qword ptr [rax + 96], r15",
                "mov qword ptr [rax + 104], 0",
                "stmxcsr dword ptr [rax + 104]",
                "fnstcw word ptr [rax + 108]",
                "ldmxcsr dword ptr [rsp]",
                "fldcw word ptr [rsp + 4]",
                "add rsp, 16",
                "pop rbx",
                "pop rbp",
                // Explicit registers: a `reg` operand may be given rbx, which
                // the block overwrites with a sentinel before using it.
                in("rsi") p,
                in("rdx") f,
                in("rdi") arg,
                out("r12") _, out("r13") _, out("r14") _, out("r15") _,
                clobber_abi("C"),
            );
        }
    }

    /// Recurses `depth` frames, keeping a value live in each, then pauses.
    #[inline(never)]
    extern "C" fn deep_pause(depth: u64) {
        fn down(depth: u64) -> u64 {
            if depth == 0 {
                pause();
                return 1;
            }
            let mine = std::hint::black_box(depth * 3);
            let below = down(depth - 1);
            assert_eq!(mine, depth * 3, "a local in frame {depth} changed across the pause");
            below + 1
        }
        assert_eq!(down(depth), depth + 1);
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

    /// (MXCSR, x87 control word) for the job side and the resumer side.
    fn control_words() -> ((u32, u16), (u32, u16)) {
        if std::env::var_os("STACKJOB_UNDER_VALGRIND").is_some() {
            // Valgrind's emulated FPU keeps only the rounding fields of both
            // words (its manual, "Limitations": FZ/DAZ are ignored, x87
            // precision control is not supported), so the sides differ in
            // rounding only. Job: toward zero, x87 chop; resumer: down.
            eprintln!("under Valgrind: the two sides' control words differ in rounding mode only");
            ((0x7f80, 0x0f7f), (0x3f80, 0x077f))
        } else {
            // Job: round toward zero, FZ+DAZ, x87 RC=chop, PC=double.
            // Resumer: round down, DAZ, x87 RC=down, PC=single.
            ((0xffc0, 0x0e7f), (0x3fc0, 0x047f))
        }
    }

    fn run_both_sides(depth: u64) {
        let (job_words, resumer_words) = control_words();
        run_both_sides_with(depth, job_words, resumer_words);
    }

    fn run_both_sides_with(depth: u64, job_words: (u32, u16), resumer_words: (u32, u16)) {
        if !stackjob::is_capable() {
            eprintln!("skipped: stackjob has no usable backend here");
            return;
        }
        let step = start(None, move || {
            let mut f = frame(0xa5a5_0000_0000_0000, job_words.0, job_words.1);
            with_sentinels(&mut f, deep_pause, depth);
            f
        })
        .unwrap();
        let Step::Paused(job) = step else { panic!("the job should have paused") };
        PAUSED.with(|p| *p.borrow_mut() = Some(job));
        let mut mine = frame(0x5a5a_0000_0000_0000, resumer_words.0, resumer_words.1);
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
        stackjob::init_thread(1, 1).unwrap();
        for depth in [3, 17, 0] {
            run_both_sides(depth);
        }
        stackjob::cleanup_thread();
    }

    /// A pool with `isolate_thread_state(false)` switches through the other
    /// asm variants, which leave the control words alone: every callee-saved
    /// register must still survive. Both sides use the thread's default
    /// control words, which are shared state there (the harness restores
    /// its caller's words on the way out, on either side).
    #[test]
    fn callee_saved_registers_survive_in_a_pool_that_shares_thread_state() {
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
        // The harness itself must be able to fail: a callee that clobbers
        // r13 against the ABI is reported.
        #[unsafe(naked)]
        extern "C" fn clobber_r13(_: u64) {
            std::arch::naked_asm!("xor r13d, r13d", "ret");
        }
        let mut f = frame(0x1234_0000_0000_0000, 0x1f80, 0x037f);
        with_sentinels(&mut f, clobber_r13, 0);
        let caught = std::panic::catch_unwind(|| assert_intact(&f, "probe"));
        assert!(caught.is_err(), "clobbering r13 must be detected");
    }
}

#[cfg(target_arch = "aarch64")]
#[path = "registers/aarch64.rs"]
mod aarch64;

#[cfg(target_arch = "riscv64")]
#[path = "registers/riscv64.rs"]
mod riscv64;

#[cfg(target_arch = "arm")]
#[path = "registers/arm.rs"]
mod arm;

#[cfg(target_arch = "x86")]
#[path = "registers/x86.rs"]
mod x86;

#[cfg(target_arch = "powerpc64")]
#[path = "registers/powerpc64.rs"]
mod powerpc64;

#[cfg(not(any(
    target_arch = "x86_64",
    target_arch = "aarch64",
    target_arch = "riscv64",
    target_arch = "arm",
    target_arch = "x86",
    target_arch = "powerpc64"
)))]
#[test]
fn register_preservation_needs_a_backend() {
    assert!(!stackjob::is_capable(), "a backend exists here but has no register test");
    eprintln!("skipped: no stackjob backend on this architecture, nothing switches registers");
}
