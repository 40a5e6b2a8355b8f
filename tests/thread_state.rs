//! A job never leaks thread state into its caller, nor a stale copy of it
//! into itself.
//!
//! * The signal mask is thread state: the switch never saves, restores or
//!   installs one (OpenSSL's first `setcontext` into a pooled fibre installs
//!   the mask captured when the fibre was created, §6 #8 of the semantics).
//! * The floating-point rounding mode: on x86_64 the MXCSR control bits and
//!   the x87 control word are callee-saved (SysV ABI), so every switch keeps
//!   each side's own and a fresh job inherits its starter's. On aarch64 and
//!   riscv64 FPCR / fcsr are thread-global by ABI and are not switched.

mod common;
use common::{errno, finished, paused, set_errno};
use stackjob::{pause, start};

/// Whether jobs can run here; prints why the calling test is skipped if not.
fn jobs_available(test: &str) -> bool {
    if stackjob::is_capable() {
        return true;
    }
    eprintln!(
        "skipping {test}: stackjob::is_capable() is false here (backend `{}`), so no job can run",
        stackjob::backend()
    );
    false
}

// ---------------------------------------------------------------------------
// Signal mask
// ---------------------------------------------------------------------------

/// The calling thread's signal mask, as the membership of every signal
/// number (`sigset_t` has no portable equality).
fn signal_mask() -> Vec<bool> {
    // SAFETY: an all-zero sigset_t is a valid value to be overwritten;
    // pthread_sigmask with a null new set only reads the current mask into
    // `current`, a valid, writable sigset_t.
    let current = unsafe {
        let mut current: libc::sigset_t = std::mem::zeroed();
        let rc = libc::pthread_sigmask(libc::SIG_SETMASK, std::ptr::null(), &mut current);
        assert_eq!(rc, 0, "pthread_sigmask(query) failed");
        current
    };
    (1..=64)
        // SAFETY: `current` is an initialised sigset_t; sigismember
        // returns -1 for a number that is not a signal here.
        .map(|sig| unsafe { libc::sigismember(&current, sig) } == 1)
        .collect()
}

fn sigusr2_blocked() -> bool {
    signal_mask()[libc::SIGUSR2 as usize - 1]
}

/// Blocks (`libc::SIG_BLOCK`) or unblocks (`libc::SIG_UNBLOCK`) SIGUSR2 for
/// the calling thread.
fn change_sigusr2(how: libc::c_int) {
    // SAFETY: `set` is initialised by sigemptyset before use; the old-set
    // pointer is null, so pthread_sigmask only reads `set`.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        assert_eq!(libc::sigemptyset(&mut set), 0);
        assert_eq!(libc::sigaddset(&mut set, libc::SIGUSR2), 0);
        assert_eq!(libc::pthread_sigmask(how, &set, std::ptr::null_mut()), 0);
    }
}

/// Puts SIGUSR2 back the way the test thread had it when dropped.
struct RestoreSigusr2(bool);

impl RestoreSigusr2 {
    fn new() -> RestoreSigusr2 {
        RestoreSigusr2(sigusr2_blocked())
    }
}

impl Drop for RestoreSigusr2 {
    fn drop(&mut self) {
        change_sigusr2(if self.0 { libc::SIG_BLOCK } else { libc::SIG_UNBLOCK });
    }
}

#[test]
fn job_runs_with_the_live_thread_signal_mask_and_never_restores_a_stale_one() {
    if !jobs_available("job_runs_with_the_live_thread_signal_mask_and_never_restores_a_stale_one") {
        return;
    }
    let _restore = RestoreSigusr2::new();
    change_sigusr2(libc::SIG_UNBLOCK);
    // The job's stack is created while SIGUSR2 is unblocked: OpenSSL would
    // capture that mask with the fibre and install it at the first entry.
    stackjob::init_thread(1, 1).unwrap();
    change_sigusr2(libc::SIG_BLOCK);
    let mask_blocked = signal_mask();

    let job = paused(
        start(None, || {
            let at_start = sigusr2_blocked();
            pause();
            (at_start, sigusr2_blocked())
        })
        .unwrap(),
    );
    assert_eq!(signal_mask(), mask_blocked, "starting the job changed the caller's mask");

    change_sigusr2(libc::SIG_UNBLOCK);
    let mask_unblocked = signal_mask();
    let (at_start, after_resume) = finished(job.resume().unwrap());
    assert!(at_start, "the job inherits the thread's mask (SIGUSR2 blocked) at start");
    assert!(!after_resume, "after resume the job sees the mask the caller set meanwhile");
    assert_eq!(signal_mask(), mask_unblocked, "after finish the caller's mask is exactly what it set");
}

/// The mask is thread state and the crate never touches it: whatever a job
/// does to it stays done, across a pause and after the job finishes (the
/// same as if the job's code had been called as a plain function).
#[test]
fn signal_mask_changed_inside_a_job_stays_changed_for_the_thread() {
    if !jobs_available("signal_mask_changed_inside_a_job_stays_changed_for_the_thread") {
        return;
    }
    let _restore = RestoreSigusr2::new();
    change_sigusr2(libc::SIG_UNBLOCK);

    let job = paused(
        start(None, || {
            change_sigusr2(libc::SIG_BLOCK);
            pause();
            let after_resume = sigusr2_blocked();
            change_sigusr2(libc::SIG_UNBLOCK);
            pause();
            change_sigusr2(libc::SIG_BLOCK);
            after_resume
        })
        .unwrap(),
    );
    assert!(sigusr2_blocked(), "the job's block is visible to the caller while it is paused");
    let job = paused(job.resume().unwrap());
    assert!(!sigusr2_blocked(), "the job's unblock is visible to the caller");
    let after_resume = finished(job.resume().unwrap());
    assert!(after_resume, "the job still saw its own block after the first resume");
    assert!(sigusr2_blocked(), "the block made by a finished job stays in force");
}

// ---------------------------------------------------------------------------
// Floating-point rounding mode
// ---------------------------------------------------------------------------

// Declared only where a rounding test uses them (the constants differ per
// architecture; see `fe`).
#[cfg(any(
    target_arch = "x86_64",
    target_arch = "aarch64",
    target_arch = "riscv64",
    target_arch = "arm",
    target_arch = "x86",
    target_arch = "powerpc64"
))]
unsafe extern "C" {
    fn fegetround() -> i32;
    fn fesetround(mode: i32) -> i32;
}

// glibc's i386 and x86_64 FE_* constants are the same (x87 RC field).
#[cfg(any(target_arch = "x86_64", target_arch = "x86"))]
mod fe {
    pub const TONEAREST: i32 = 0;
    pub const DOWNWARD: i32 = 0x400;
    pub const UPWARD: i32 = 0x800;
    pub const TOWARDZERO: i32 = 0xc00;
}

// FPSCR/FPCR rounding field (bits 22-23): the same constants on 32-bit Arm.
#[cfg(any(target_arch = "aarch64", target_arch = "arm"))]
mod fe {
    pub const TONEAREST: i32 = 0;
    pub const DOWNWARD: i32 = 0x80_0000;
    pub const UPWARD: i32 = 0x40_0000;
    pub const TOWARDZERO: i32 = 0xc0_0000;
}

// glibc's powerpc FE_* constants (the FPSCR RN field).
#[cfg(target_arch = "powerpc64")]
mod fe {
    pub const TONEAREST: i32 = 0;
    pub const DOWNWARD: i32 = 3;
    pub const UPWARD: i32 = 2;
    pub const TOWARDZERO: i32 = 1;
}

#[cfg(target_arch = "riscv64")]
mod fe {
    pub const TONEAREST: i32 = 0;
    pub const DOWNWARD: i32 = 2;
    pub const UPWARD: i32 = 3;
    pub const TOWARDZERO: i32 = 1;
}

#[cfg(any(
    target_arch = "x86_64",
    target_arch = "aarch64",
    target_arch = "riscv64",
    target_arch = "arm",
    target_arch = "x86",
    target_arch = "powerpc64"
))]
mod rounding {
    use super::{fe, fegetround, fesetround};
    use std::hint::black_box;

    pub fn get() -> i32 {
        // SAFETY: fegetround only reads the thread's floating-point control state.
        unsafe { fegetround() }
    }

    pub fn set(mode: i32) {
        // SAFETY: `mode` is one of this architecture's FE_* rounding
        // constants; fesetround only writes the thread's FP control state.
        let rc = unsafe { fesetround(mode) };
        assert_eq!(rc, 0, "fesetround({mode:#x}) failed");
    }

    /// Which mode the hardware's f64 arithmetic follows right now, found by
    /// computing three inexact results whose roundings differ per mode
    /// (`black_box` keeps the compiler from folding them at build time).
    #[inline(never)]
    pub fn followed_by_arithmetic() -> i32 {
        let one = black_box(1.0f64);
        let three = black_box(3.0f64);
        // 1 + 0.75 ulp: nearest and upward give 1 + ulp, the others 1.
        let bumped = one + black_box(0.75 * f64::EPSILON) > 1.0;
        let third = one / three; // inexact: rounds up only upward
        let neg_third = -one / three; // inexact: rounds away from zero only downward
        // 1/3 rounded towards zero (and to nearest): 0x3FD5_5555_5555_5555.
        let third_low = f64::from_bits(0x3FD5_5555_5555_5555);
        let third_up = third > third_low;
        let neg_third_down = neg_third < -third_low;
        match (bumped, third_up, neg_third_down) {
            (true, false, false) => fe::TONEAREST,
            (true, true, false) => fe::UPWARD,
            (false, false, true) => fe::DOWNWARD,
            (false, false, false) => fe::TOWARDZERO,
            other => panic!("inconsistent rounding observed: {other:?}"),
        }
    }

    /// The mode as both the control register and the arithmetic report it.
    ///
    /// Under Valgrind (`STACKJOB_UNDER_VALGRIND`, set by
    /// scripts/valgrind.sh) arithmetic always rounds to nearest, whatever
    /// the mode (its manual, "Limitations"): only the control register
    /// can be observed there, so it stands in for both.
    pub fn observed() -> (i32, i32) {
        if under_valgrind() { (get(), get()) } else { (get(), followed_by_arithmetic()) }
    }

    pub fn under_valgrind() -> bool {
        std::env::var_os("STACKJOB_UNDER_VALGRIND").is_some()
    }

    /// Resets the rounding mode to nearest when dropped, even if the test fails.
    pub struct ResetToNearest;

    impl Drop for ResetToNearest {
        fn drop(&mut self) {
            set(fe::TONEAREST);
        }
    }
}

#[cfg(any(
    target_arch = "x86_64",
    target_arch = "aarch64",
    target_arch = "riscv64",
    target_arch = "arm",
    target_arch = "x86",
    target_arch = "powerpc64"
))]
#[test]
fn rounding_probe_tells_every_mode_apart() {
    // No job needed: this checks the probe the other tests rely on.
    if rounding::under_valgrind() {
        eprintln!("skipped under Valgrind: its FPU rounds arithmetic to nearest in every mode, so there is no probe");
        return;
    }
    let _reset = rounding::ResetToNearest;
    for mode in [fe::TONEAREST, fe::DOWNWARD, fe::UPWARD, fe::TOWARDZERO] {
        rounding::set(mode);
        assert_eq!(rounding::observed(), (mode, mode), "mode {mode:#x}");
    }
}

#[cfg(any(target_arch = "x86_64", target_arch = "x86"))]
#[test]
fn rounding_mode_is_inherited_at_start_and_kept_per_side_across_switches() {
    if !jobs_available("rounding_mode_is_inherited_at_start_and_kept_per_side_across_switches") {
        return;
    }
    let _reset = rounding::ResetToNearest;
    // One stack: the second job below runs on the first one's pooled stack.
    stackjob::init_thread(1, 0).unwrap();

    rounding::set(fe::UPWARD);
    let job = paused(
        start(None, || {
            let at_start = rounding::observed();
            rounding::set(fe::DOWNWARD);
            pause();
            let after_resume = rounding::observed();
            // The job's last word on the mode must not reach its caller.
            rounding::set(fe::TONEAREST);
            (at_start, after_resume)
        })
        .unwrap(),
    );
    assert_eq!(rounding::observed(), (fe::UPWARD, fe::UPWARD), "the job's FE_DOWNWARD leaked into the caller at pause");

    rounding::set(fe::TOWARDZERO);
    let (at_start, after_resume) = finished(job.resume().unwrap());
    assert_eq!(at_start, (fe::UPWARD, fe::UPWARD), "a fresh job inherits its starter's mode");
    assert_eq!(after_resume, (fe::DOWNWARD, fe::DOWNWARD), "the resumed job sees its own mode, not the resumer's");
    assert_eq!(rounding::observed(), (fe::TOWARDZERO, fe::TOWARDZERO), "after finish the caller keeps its own mode");

    // The next job reuses the same pooled stack, whose saved state last held
    // the previous job's FE_TONEAREST: it must inherit the caller's mode.
    assert_eq!(stackjob::pool_stats().idle, 1);
    let next = finished(start(None, rounding::observed).unwrap());
    assert_eq!(next, (fe::TOWARDZERO, fe::TOWARDZERO));
    assert_eq!(rounding::observed(), (fe::TOWARDZERO, fe::TOWARDZERO));
}

#[cfg(any(target_arch = "x86_64", target_arch = "x86"))]
#[test]
fn interleaved_jobs_each_keep_their_own_rounding_mode() {
    if !jobs_available("interleaved_jobs_each_keep_their_own_rounding_mode") {
        return;
    }
    let _reset = rounding::ResetToNearest;
    let body = |mode: i32| {
        move || {
            rounding::set(mode);
            let mut seen = Vec::new();
            for _ in 0..3 {
                pause();
                seen.push(rounding::observed());
            }
            seen
        }
    };
    rounding::set(fe::TONEAREST);
    let mut down = paused(start(None, body(fe::DOWNWARD)).unwrap());
    let mut up = paused(start(None, body(fe::UPWARD)).unwrap());
    let mut zero = paused(start(None, body(fe::TOWARDZERO)).unwrap());
    for _ in 0..2 {
        assert_eq!(rounding::observed(), (fe::TONEAREST, fe::TONEAREST));
        zero = paused(zero.resume().unwrap());
        down = paused(down.resume().unwrap());
        up = paused(up.resume().unwrap());
    }
    let results = [
        (fe::DOWNWARD, finished(down.resume().unwrap())),
        (fe::UPWARD, finished(up.resume().unwrap())),
        (fe::TOWARDZERO, finished(zero.resume().unwrap())),
    ];
    for (mode, seen) in results {
        assert_eq!(seen, vec![(mode, mode); 3], "job with mode {mode:#x}");
    }
    assert_eq!(rounding::observed(), (fe::TONEAREST, fe::TONEAREST));
}

/// Checks that the rounding mode behaves as shared thread state: what one
/// side sets the other sees, and a job starts with whatever is in force.
#[cfg(any(
    target_arch = "x86_64",
    target_arch = "aarch64",
    target_arch = "riscv64",
    target_arch = "arm",
    target_arch = "x86",
    target_arch = "powerpc64"
))]
fn assert_rounding_mode_is_shared_by_job_and_resumer() {
    let _reset = rounding::ResetToNearest;
    rounding::set(fe::UPWARD);
    let job = paused(
        start(None, || {
            let at_start = rounding::observed();
            rounding::set(fe::DOWNWARD);
            pause();
            let after_resume = rounding::observed();
            rounding::set(fe::TONEAREST);
            (at_start, after_resume)
        })
        .unwrap(),
    );
    assert_eq!(rounding::observed(), (fe::DOWNWARD, fe::DOWNWARD), "the mode set in the job is visible to the resumer");
    rounding::set(fe::TOWARDZERO);
    let (at_start, after_resume) = finished(job.resume().unwrap());
    assert_eq!(at_start, (fe::UPWARD, fe::UPWARD));
    assert_eq!(after_resume, (fe::TOWARDZERO, fe::TOWARDZERO), "the job sees the resumer's mode");
    assert_eq!(rounding::observed(), (fe::TONEAREST, fe::TONEAREST), "the job's last mode stays");
}

/// On aarch64 (FPCR), 32-bit Arm (FPSCR), powerpc64 (FPSCR) and riscv64
/// (fcsr) the rounding mode is thread-global by ABI and the switch leaves it
/// alone: it behaves like any other thread state, so what one side sets the
/// other sees.
#[cfg(any(target_arch = "aarch64", target_arch = "riscv64", target_arch = "arm", target_arch = "powerpc64"))]
#[test]
fn rounding_mode_is_thread_state_shared_by_job_and_resumer_on_this_arch() {
    if !jobs_available("rounding_mode_is_thread_state_shared_by_job_and_resumer_on_this_arch") {
        return;
    }
    assert_rounding_mode_is_shared_by_job_and_resumer();
}

/// With `isolate_thread_state(false)` the x86_64 switch leaves the control
/// words alone: the rounding mode is shared, as on aarch64 and riscv64.
#[cfg(any(target_arch = "x86_64", target_arch = "x86"))]
#[test]
fn rounding_mode_is_shared_in_a_pool_that_does_not_isolate_thread_state() {
    if !jobs_available("rounding_mode_is_shared_in_a_pool_that_does_not_isolate_thread_state") {
        return;
    }
    stackjob::init_thread_with(&stackjob::PoolConfig::new().isolate_thread_state(false)).unwrap();
    assert_rounding_mode_is_shared_by_job_and_resumer();
    stackjob::cleanup_thread();
}

#[cfg(not(any(
    target_arch = "x86_64",
    target_arch = "aarch64",
    target_arch = "riscv64",
    target_arch = "arm",
    target_arch = "x86",
    target_arch = "powerpc64"
)))]
#[test]
fn rounding_mode_tests_need_known_fe_constants() {
    eprintln!("skipping the rounding-mode tests: no FE_* constants are defined for this architecture");
}

// --------------------------------------------------------------------------
// errno: thread state each side keeps for itself
// --------------------------------------------------------------------------

#[cfg(target_os = "linux")]
#[test]
fn errno_is_inherited_at_start_and_each_side_keeps_its_own_across_switches() {
    if !stackjob::is_capable() {
        eprintln!("skipped: no stackjob backend on this target");
        return;
    }
    set_errno(11);
    let step = stackjob::start(None, || {
        let at_start = errno();
        set_errno(22);
        stackjob::pause();
        let after_resume = errno();
        set_errno(44);
        (at_start, after_resume)
    })
    .unwrap();
    assert_eq!(errno(), 11, "the job's errno must not leak to its starter");
    set_errno(33);
    let stackjob::Step::Paused(job) = step else { panic!("expected a pause") };
    let stackjob::Step::Finished((at_start, after_resume)) = job.resume().unwrap() else { panic!("expected the end") };
    assert_eq!(at_start, 11, "a job starts with its starter's errno");
    assert_eq!(after_resume, 22, "the job's errno survives its pause");
    assert_eq!(errno(), 33, "the resumer's errno survives the job");
    set_errno(0);
}

#[cfg(target_os = "linux")]
#[test]
fn errno_is_shared_in_a_pool_that_does_not_isolate_thread_state() {
    if !stackjob::is_capable() {
        eprintln!("skipped: no stackjob backend on this target");
        return;
    }
    stackjob::init_thread_with(&stackjob::PoolConfig::new().isolate_thread_state(false)).unwrap();
    assert!(!stackjob::pool_stats().isolate_thread_state);
    set_errno(11);
    let step = stackjob::start(None, || {
        set_errno(22);
        stackjob::pause();
        errno()
    })
    .unwrap();
    assert_eq!(errno(), 22, "shared: the job's errno is the thread's");
    set_errno(33);
    let stackjob::Step::Paused(job) = step else { panic!("expected a pause") };
    let stackjob::Step::Finished(after_resume) = job.resume().unwrap() else { panic!("expected the end") };
    assert_eq!(after_resume, 33, "shared: the job sees the resumer's errno");
    set_errno(0);
    stackjob::cleanup_thread();
}
