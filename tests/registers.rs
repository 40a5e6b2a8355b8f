//! Register preservation across pause/resume.
//!
//! Every callee-saved register of the ABI is filled with a sentinel by
//! inline asm, which then calls into Rust code that pauses (job side) or
//! resumes (resumer side) several frames deeper; when control comes back to
//! the asm, it reads every register out again. Job and resumer use
//! different sentinels, so a switch that restored the wrong side's
//! registers — or forgot one — is caught.
//!
//! The harness below (sentinel frames, the checks, the scenarios and the
//! tests) is the same for every ABI. Each file in `registers/` gives its
//! ABI's part, an [`Abi`] impl: the table of what is checked and the one
//! inline-asm function, `with_sentinels`, that loads the sentinels, calls
//! out and reads the registers back (`registers/none.rs` stands for targets
//! without a backend, where every test says it skips).

/// Callees that break the ABI on purpose, for [`Abi::PROBES`]: each a naked
/// function of the given instructions (its return included), with the name
/// the failure message must give. Defined before `mod abi`, which uses it.
macro_rules! probes {
    ($($name:literal => [$($asm:literal),+ $(,)?]),* $(,)?) => {
        &[$({
            #[unsafe(naked)]
            extern "C" fn probe(_: usize) {
                std::arch::naked_asm!($($asm),+);
            }
            (probe as Callee, $name)
        }),*]
    };
}

cfg_if::cfg_if! {
    if #[cfg(stackjob_backend = "x86_64")] {
        #[path = "registers/x86_64.rs"]
        mod abi;
    } else if #[cfg(stackjob_backend = "aarch64")] {
        #[path = "registers/aarch64.rs"]
        mod abi;
    } else if #[cfg(stackjob_backend = "riscv64")] {
        #[path = "registers/riscv64.rs"]
        mod abi;
    } else if #[cfg(stackjob_backend = "arm")] {
        #[path = "registers/arm.rs"]
        mod abi;
    } else if #[cfg(stackjob_backend = "x86")] {
        #[path = "registers/x86.rs"]
        mod abi;
    } else if #[cfg(stackjob_backend = "powerpc64")] {
        #[path = "registers/powerpc64.rs"]
        mod abi;
    } else {
        #[path = "registers/none.rs"]
        mod abi;
    }
}

use abi::Native;
use stackjob::{Job, Step, pause, start};
use std::cell::RefCell;

/// What the sentinel asm calls: every callee-saved register holds a
/// sentinel while it runs.
pub type Callee = extern "C" fn(usize);

/// One word of the record that is not a plain register: only `mask`'s
/// bits must survive, and a control word's value is given per side
/// ([`ControlWords`]) because the hardware accepts only some values.
#[derive(Clone, Copy, Debug)]
pub struct Masked {
    /// How failure messages name it.
    pub name: &'static str,
    /// The bits compared; the others may change (status flags, volatile fields).
    pub mask: usize,
    /// A control word ("changed") rather than a register ("clobbered").
    pub control: bool,
}

/// The values of the control words (in [`Abi::MASKED`] order) each side
/// loads: the job's, the resumer's, and the thread's defaults.
#[derive(Clone, Copy, Debug)]
pub struct ControlWords {
    pub job: &'static [usize],
    pub resumer: &'static [usize],
    pub default: &'static [usize],
}

/// A calling convention's part of the harness.
pub trait Abi {
    /// The callee-saved registers, one machine word each, in record
    /// order (a register wider than a word is named once per word).
    const REGISTERS: &'static [&'static str];
    /// The words after them in the record: registers of which only some
    /// bits are callee-saved, and control words.
    const MASKED: &'static [Masked] = &[];
    /// Callees that break the ABI, each with the name the failure
    /// message gives (the harness must report each of them).
    const PROBES: &'static [(Callee, &'static str)];

    /// Why these sentinels do not fit the backend, if they do not (where
    /// the target alone does not tell); every test then says it skips.
    fn applies() -> Result<(), String> {
        Ok(())
    }

    /// The control words of the two sides (none by default).
    fn control_words() -> ControlWords {
        ControlWords { job: &[], resumer: &[], default: &[] }
    }

    /// Loads `frame.want` into every register and control word the
    /// record names, calls `f(arg)`, stores what they hold afterwards
    /// into `frame.got`, and restores the caller's values.
    fn with_sentinels(frame: &mut Frame, f: Callee, arg: usize);
}

/// Words in the record of one side.
pub const N: usize = Native::REGISTERS.len() + Native::MASKED.len();

/// Values to load before the call (`want`) and what was found after
/// (`got`): the asm addresses `want` at +0 and `got` at +N words.
/// 16-byte aligned for the vector registers that need it (powerpc64).
#[repr(C, align(16))]
#[derive(Debug)]
pub struct Frame {
    pub want: [usize; N],
    pub got: [usize; N],
}

impl Frame {
    /// Sentinels distinct per word and per side (`tag`), never zero (the
    /// low byte of word `i` is `i + 1`), and the given control words.
    /// A 32-bit word gets `tag << 16 ^ (i + 1) * 0x0101_0101`; the
    /// values are bit patterns only moved by the asm, never computed with.
    fn new(tag: u16, control: &[usize]) -> Frame {
        let seed = (tag as u64) << 48 | (tag as u64) << 16;
        let mut want = [0; N];
        let mut words = control.iter();
        for (i, w) in want.iter_mut().enumerate() {
            let masked = i.checked_sub(Native::REGISTERS.len()).map(|m| Native::MASKED[m]);
            *w = match masked {
                Some(Masked { control: true, .. }) => *words.next().expect("a value for every control word"),
                _ => (seed ^ ((i as u64 + 1) * 0x0101_0101_0101_0101)) as usize,
            };
        }
        assert!(words.next().is_none(), "more values than control words");
        Frame { want, got: [0; N] }
    }
}

/// Every word of the record came back as it was loaded: the message
/// names the side and the register or control word.
fn assert_intact(f: &Frame, side: &str) {
    for (i, name) in Native::REGISTERS.iter().enumerate() {
        assert_eq!(f.got[i], f.want[i], "{side}: {name} clobbered across the switch");
    }
    for (m, slot) in Native::MASKED.iter().enumerate() {
        let i = Native::REGISTERS.len() + m;
        let (want, got) = (f.want[i] & slot.mask, f.got[i] & slot.mask);
        let what = if slot.control { "changed" } else { "clobbered across the switch" };
        assert_eq!(got, want, "{side}: {} {what} ({got:#x} != {want:#x})", slot.name);
    }
}

/// Recurses `depth` frames, keeping a value live in each, and pauses at
/// the bottom and again one frame up: two pauses from different depths.
#[inline(never)]
extern "C" fn deep_pause(depth: usize) {
    fn down(depth: usize, bottom: usize) -> usize {
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
extern "C" fn resume_parked(_: usize) {
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

/// Whether the sentinels fit the backend (says why not, if not).
fn sentinels_apply() -> bool {
    match Native::applies() {
        Ok(()) => true,
        Err(why) => {
            eprintln!("skipped: {why}");
            false
        }
    }
}

/// Whether jobs can run and the sentinels fit (says why not, if not).
fn capable() -> bool {
    if !stackjob::is_capable() {
        eprintln!("skipped: stackjob has no usable backend here (backend {:?})", stackjob::backend());
        return false;
    }
    sentinels_apply()
}

/// A job that loaded its sentinels and paused `depth` frames down.
fn job_with_sentinels(tag: u16, control: &'static [usize], depth: usize) -> Job<Frame> {
    let step = start(None, move || {
        let mut f = Frame::new(tag, control);
        Native::with_sentinels(&mut f, deep_pause, depth);
        f
    })
    .unwrap();
    let Step::Paused(job) = step else { panic!("the job should have paused") };
    job
}

fn run_both_sides(depth: usize) {
    let words = Native::control_words();
    run_both_sides_with(depth, words.job, words.resumer);
}

fn run_both_sides_with(depth: usize, job_words: &'static [usize], resumer_words: &'static [usize]) {
    if !capable() {
        return;
    }
    let job = job_with_sentinels(0xa5a5, job_words, depth);
    PAUSED.with(|p| *p.borrow_mut() = Some(job));
    let mut mine = Frame::new(0x5a5a, resumer_words);
    Native::with_sentinels(&mut mine, resume_parked, 0);
    assert_intact(&mine, "resumer");
    let theirs = RESULT.with(|r| r.borrow_mut().take()).expect("the job finished");
    assert_intact(&theirs, "job");
}

#[test]
fn callee_saved_registers_survive_pause_from_one_frame() {
    run_both_sides(0);
}

#[test]
fn callee_saved_registers_survive_pause_from_deep_frames() {
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
    // Two jobs with different sentinels (and, where there are control
    // words, different ones), resumed alternately: each switch in must
    // restore that job's record, not the other's.
    let words = Native::control_words();
    let mut a = Some(job_with_sentinels(0x1111, words.job, 5));
    let mut b = Some(job_with_sentinels(0x2222, words.default, 9));
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
/// control words, which are shared state there (the harness restores
/// its caller's words on the way out, on either side).
#[test]
fn callee_saved_registers_survive_in_a_pool_that_shares_thread_state() {
    if !capable() {
        return;
    }
    let shared = stackjob::PoolConfig::new().max_size(1).init_size(1).isolate_thread_state(false);
    stackjob::init_thread_with(&shared).unwrap();
    let words = Native::control_words().default;
    for depth in [0, 17, 40] {
        run_both_sides_with(depth, words, words);
    }
    stackjob::cleanup_thread();
}

#[test]
fn sentinel_harness_detects_a_clobber() {
    if !sentinels_apply() {
        return;
    }
    // The harness itself must be able to fail: each callee that breaks
    // the ABI is reported, by the name of what it broke.
    assert!(!Native::PROBES.is_empty(), "no probe: nothing shows the harness can fail");
    for &(probe, name) in Native::PROBES {
        let mut f = Frame::new(0x1234, Native::control_words().job);
        Native::with_sentinels(&mut f, probe, 0);
        let Err(payload) = std::panic::catch_unwind(|| assert_intact(&f, "probe")) else {
            panic!("clobbering {name} must be detected");
        };
        let message = payload.downcast_ref::<String>().map_or("", String::as_str);
        assert!(message.contains(&format!(": probe: {name} ")), "clobbering {name} reported as {message:?}");
    }
}
