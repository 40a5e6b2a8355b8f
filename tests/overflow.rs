//! Stack overflow in a job is reported, not a bare SIGSEGV; faults that are
//! not job-stack overflows keep their usual outcome.
//!
//! Everything that must crash runs in a child process (`common::child`):
//! this test binary re-executes itself with `STACKJOB_CHILD=<scenario>` and
//! exactly one test selected, under the same emulator as the parent, and
//! the parent checks how the child died and what it printed.
//!
//! The guard region: a job whose stack use reaches up to the guard size
//! below its stack, in one frame that no stack probe walks down (riscv64
//! Rust, C without `-fstack-clash-protection`), faults in the guard and is
//! reported; a paused neighbour job's stack, mapped just below, keeps every
//! byte. The child checks the neighbour from a SIGABRT handler, after the
//! report and just before the process dies.

#[macro_use]
mod common;
use common::{child, paused};
use stackjob::{PoolConfig, init_thread_with, pause, pool_stats, start};
use std::os::unix::process::ExitStatusExt;
use std::process::Output;
use std::sync::atomic::{AtomicUsize, Ordering};

fn run_child(scenario: &str) -> Output {
    child::run("child_entry", scenario, &[])
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[inline(never)]
fn recurse(depth: u64) -> u64 {
    // 1 KiB per frame, kept alive across the call so it cannot be elided.
    let frame = std::hint::black_box([depth as u8; 1024]);
    if depth == u64::MAX {
        return 0;
    }
    recurse(depth + 1) + frame[(depth % 1024) as usize] as u64
}

/// The byte a neighbour job fills its marks with.
const MARK: u8 = 0xa5;
/// Bytes of marks each job of the overshoot scenarios keeps on its stack.
const MARKS: usize = 8 * 1024;
/// The usable stack size of the overshoot scenarios.
const SMALL_STACK: usize = 64 * 1024;

/// Per job of an overshoot scenario: its stack pointer while paused and
/// where its marks are.
static JOB_SP: [AtomicUsize; 2] = [AtomicUsize::new(0), AtomicUsize::new(0)];
static JOB_MARKS: [AtomicUsize; 2] = [AtomicUsize::new(0), AtomicUsize::new(0)];
/// Which job overshoots when resumed (the other is the neighbour).
static OVERSHOOTER: AtomicUsize = AtomicUsize::new(usize::MAX);
/// The neighbour's marks, for the SIGABRT handler.
static NEIGHBOUR_MARKS: AtomicUsize = AtomicUsize::new(0);

/// Runs after the overflow report, as the process aborts: says whether the
/// neighbour's marks survived, with `write(2)` only.
extern "C" fn check_neighbour(_: libc::c_int) {
    let at = NEIGHBOUR_MARKS.load(Ordering::SeqCst) as *const u8;
    let mut intact = !at.is_null();
    for i in 0..MARKS {
        // SAFETY: the neighbour job is paused and its stack mapped; its
        // marks are MARKS bytes at `at`, which only it writes.
        intact &= !at.is_null() && unsafe { at.add(i).read_volatile() } == MARK;
    }
    let line: &[u8] = if intact { b"\nneighbour intact\n" } else { b"\nneighbour CORRUPTED\n" };
    // SAFETY: write(2) is async-signal-safe; the buffer is valid.
    unsafe { libc::write(2, line.as_ptr().cast(), line.len()) };
}

/// The body of both jobs of an overshoot scenario: marks its stack, pauses,
/// and when resumed either overshoots its stack by `reach` bytes (`how`) or
/// keeps its marks alive and returns.
fn overshoot_job(index: usize, how: &'static str, reach: usize) -> u8 {
    let marks = std::hint::black_box([MARK; MARKS]);
    JOB_MARKS[index].store(marks.as_ptr() as usize, Ordering::SeqCst);
    JOB_SP[index].store(common::stack_pointer(), Ordering::SeqCst);
    pause();
    if OVERSHOOTER.load(Ordering::SeqCst) == index {
        match how {
            "frame" => return overshooting_frame(common::stack_pointer() - stack_bottom(common::stack_pointer())),
            _ => wild_write(reach),
        }
    }
    std::hint::black_box(&marks)[0]
}

/// A frame of `N` bytes, written one page at a time from its lowest address
/// up: where the target has no stack probes (riscv64, 32-bit Arm), its first
/// store is the one that lands below the stack.
#[inline(never)]
fn big_frame<const N: usize>() -> u8 {
    let mut frame = [0u8; N];
    std::hint::black_box(&mut frame);
    for i in (0..frame.len()).step_by(4096) {
        // SAFETY: in bounds; volatile so every page is written.
        unsafe { frame.as_mut_ptr().add(i).write_volatile(1) };
    }
    std::hint::black_box(&frame)[4096]
}

/// The "frame" overshoot, called with the bytes of stack left below the
/// caller's sp. Where the default guard is 1 MiB (64-bit targets): a frame
/// of 160 KiB on the 64 KiB stack, as in a riscv64 job with a large local
/// array, whose first store lands about 100 KiB below the stack. 32-bit
/// targets have a 16 KiB default guard (address space for 10,000 default
/// stacks), which a frame reaching 100 KiB below would skip where rustc
/// inserts no stack probes (32-bit Arm): there the frame is the room left
/// plus 8 KiB, rounded up to a page, so its first store lands half-way
/// into the guard (the room differs between debug and release builds).
fn overshooting_frame(room: usize) -> u8 {
    if cfg!(target_pointer_width = "64") {
        return big_frame::<{ 160 * 1024 }>();
    }
    match (room + 8 * 1024).div_ceil(4096) {
        ..=10 => big_frame::<{ 40 * 1024 }>(),
        11 => big_frame::<{ 44 * 1024 }>(),
        12 => big_frame::<{ 48 * 1024 }>(),
        13 => big_frame::<{ 52 * 1024 }>(),
        14 => big_frame::<{ 56 * 1024 }>(),
        15 => big_frame::<{ 60 * 1024 }>(),
        16 => big_frame::<{ 64 * 1024 }>(),
        17 => big_frame::<{ 68 * 1024 }>(),
        _ => big_frame::<{ 72 * 1024 }>(),
    }
}

/// The first store of a frame that reaches `reach` bytes below the bottom
/// of the job's stack without probing the pages in between (C code built
/// without `-fstack-clash-protection`).
#[inline(never)]
fn wild_write(reach: usize) {
    let target = stack_bottom(common::stack_pointer()) - reach;
    // SAFETY: none: this is the out-of-bounds store being tested, in a
    // child process that must die of it.
    unsafe { (target as *mut u8).write_volatile(1) };
}

/// The lowest address of the read-write mapping that holds `sp`: the
/// bottom of the job stack, just above its guard region.
fn stack_bottom(sp: usize) -> usize {
    let maps = std::fs::read_to_string("/proc/self/maps").expect("read /proc/self/maps");
    for line in maps.lines() {
        let range = line.split_whitespace().next().unwrap_or_default();
        let (lo, hi) = range.split_once('-').expect("a maps line starts with its range");
        let (lo, hi) = (usize::from_str_radix(lo, 16).unwrap(), usize::from_str_radix(hi, 16).unwrap());
        if (lo..hi).contains(&sp) {
            return lo;
        }
    }
    panic!("no mapping holds the stack pointer {sp:#x}");
}

/// The overshoot scenarios: two jobs on neighbouring stacks, the upper one
/// overshoots. `STACKJOB_TEST_GUARD` sets the guard size (default: the
/// crate's default), `STACKJOB_TEST_HOW` what the overshoot is.
fn overshoot_scenario() {
    let mut cfg = PoolConfig::new().stack_size(SMALL_STACK).init_size(2).max_size(2);
    if let Ok(guard) = std::env::var("STACKJOB_TEST_GUARD") {
        cfg = cfg.guard_size(guard.parse().expect("STACKJOB_TEST_GUARD is a number"));
    }
    init_thread_with(&cfg).unwrap();
    let guard = pool_stats().guard_size;
    let how: &'static str = match std::env::var("STACKJOB_TEST_HOW").as_deref() {
        Ok("frame") => "frame",
        _ => "wild",
    };
    // Into the guard's last (lowest) 64 bytes.
    let reach = guard - 64;
    let jobs = [
        paused(start(None, move || overshoot_job(0, how, reach)).unwrap()),
        paused(start(None, move || overshoot_job(1, how, reach)).unwrap()),
    ];
    let sp = [JOB_SP[0].load(Ordering::SeqCst), JOB_SP[1].load(Ordering::SeqCst)];
    // The job on the higher stack overshoots down towards the lower one.
    let (upper, lower) = if sp[0] > sp[1] { (0, 1) } else { (1, 0) };
    println!(
        "layout: stacks {} bytes apart, guard {guard} bytes, reach {reach} bytes, {} bytes of stack below the paused sp",
        sp[upper] - sp[lower],
        sp[upper] - stack_bottom(sp[upper])
    );
    NEIGHBOUR_MARKS.store(JOB_MARKS[lower].load(Ordering::SeqCst), Ordering::SeqCst);
    // The SIGABRT handler runs on top of the SIGSEGV handler's frames, on
    // the thread's alternate signal stack; std's is a few KiB, too small
    // for both in a debug build. Give the thread a roomy one.
    let alt: &'static mut [u8] = Vec::leak(vec![0u8; 256 * 1024]);
    let alt = libc::stack_t { ss_sp: alt.as_mut_ptr().cast(), ss_flags: 0, ss_size: alt.len() };
    // SAFETY: a leaked (never freed) buffer becomes the alternate signal
    // stack; then a plain extern "C" handler is installed for SIGABRT.
    unsafe {
        assert_eq!(libc::sigaltstack(&alt, std::ptr::null_mut()), 0);
        libc::signal(libc::SIGABRT, check_neighbour as *const () as libc::sighandler_t);
    }
    OVERSHOOTER.store(upper, Ordering::SeqCst);
    let [a, b] = jobs;
    let overshooter = if upper == 0 { a } else { b };
    let _ = overshooter.resume();
}

/// The child side: does what the scenario says, and should not come back.
#[test]
fn child_entry() {
    let Some(scenario) = child::scenario() else { return };
    match scenario.as_str() {
        "overshoot" => overshoot_scenario(),
        "job-overflow" => {
            stackjob::init_thread_with(&stackjob::PoolConfig::new().stack_size(64 * 1024)).unwrap();
            let _ = stackjob::start(None, || recurse(0));
        }
        "thread-overflow" => {
            // A finished job installs the crate's handler first.
            assert!(matches!(stackjob::start(None, || 1), Ok(stackjob::Step::Finished(1))));
            std::thread::Builder::new().stack_size(256 * 1024).spawn(|| recurse(0)).unwrap().join().unwrap();
        }
        "fiber-overflow" => {
            stackjob::init_thread_with(&stackjob::PoolConfig::new().stack_size(64 * 1024)).unwrap();
            let _ = stackjob::raw::start(|_: &stackjob::raw::Suspender| recurse(0));
        }
        "null-deref-in-job" => {
            let _ = stackjob::start(None, || {
                // SAFETY: none: this deliberately faults, in a child process.
                unsafe { std::ptr::read_volatile(std::ptr::null::<u64>().wrapping_add(1)) }
            });
        }
        "job-overflow-on-foreign-thread" => {
            // A thread not made by std has no alternate signal stack; the
            // crate must give it one or the report could never be printed.
            extern "C" fn body(_: *mut libc::c_void) -> *mut libc::c_void {
                stackjob::init_thread_with(&stackjob::PoolConfig::new().stack_size(64 * 1024)).unwrap();
                let _ = stackjob::start(None, || recurse(0));
                std::ptr::null_mut()
            }
            // SAFETY: plain pthread_create/join with a valid start routine.
            unsafe {
                let mut t: libc::pthread_t = std::mem::zeroed();
                assert_eq!(libc::pthread_create(&mut t, std::ptr::null(), body, std::ptr::null_mut()), 0);
                libc::pthread_join(t, std::ptr::null_mut());
            }
        }
        other => panic!("unknown scenario {other}"),
    }
    panic!("scenario {scenario} should not have returned");
}

/// Runs an overshoot scenario and checks that it was reported as an
/// overflow and the neighbour kept every byte.
fn assert_overshoot_caught(how: &str, guard: Option<usize>) {
    let guard = guard.map(|g| g.to_string());
    let mut env = vec![("STACKJOB_TEST_HOW", how)];
    if let Some(g) = &guard {
        env.push(("STACKJOB_TEST_GUARD", g.as_str()));
    }
    let out = child::run("child_entry", "overshoot", &env);
    let err = stderr(&out);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let layout = stdout.lines().find(|l| l.contains("layout:")).unwrap_or("(no layout line)");
    assert!(
        err.contains("stackjob: job stack overflow (stack 65536 bytes"),
        "{how} overshoot (guard {guard:?}) must be reported as an overflow; {layout}\nstderr:\n{err}"
    );
    assert!(err.contains("neighbour intact"), "the neighbour's stack must keep every byte; {layout}\nstderr:\n{err}");
    assert_eq!(out.status.signal(), Some(libc::SIGABRT), "stderr:\n{err}");
}

#[test]
fn a_store_up_to_the_default_guard_size_below_the_stack_is_an_overflow_and_spares_the_neighbour() {
    if skip_without_backend() {
        return;
    }
    assert_overshoot_caught("wild", None);
}

#[test]
fn a_configured_guard_size_is_honoured() {
    if skip_without_backend() {
        return;
    }
    assert_overshoot_caught("wild", Some(256 * 1024));
    // Not a whole number of pages: rounded up.
    assert_overshoot_caught("wild", Some(100 * 1024 + 1));
}

#[test]
fn a_frame_larger_than_the_stack_is_an_overflow_and_spares_the_neighbour() {
    if skip_without_backend() {
        return;
    }
    if cfg!(feature = "asan") {
        // ASan moves address-taken arrays to its fake stack on the heap.
        eprintln!("skipped under AddressSanitizer: the frame's array is not on the job stack");
        return;
    }
    assert_overshoot_caught("frame", None);
}

#[test]
fn guard_sizes_are_checked_and_rounded_to_pages() {
    if skip_without_backend() {
        return;
    }
    let err = init_thread_with(&PoolConfig::new().guard_size(0)).unwrap_err();
    assert!(matches!(err, stackjob::Error::InvalidGuardSize { requested: 0 }), "{err}");
    assert!(err.to_string().contains("guard size"), "{err}");
    let err = init_thread_with(&PoolConfig::new().guard_size(stackjob::MAX_GUARD_SIZE + 1)).unwrap_err();
    assert!(matches!(err, stackjob::Error::InvalidGuardSize { .. }), "{err}");
    // SAFETY: sysconf has no preconditions.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) } as usize;
    init_thread_with(&PoolConfig::new().guard_size(1)).unwrap();
    assert_eq!(pool_stats().guard_size, page);
    init_thread_with(&PoolConfig::new()).unwrap();
    assert_eq!(pool_stats().guard_size, stackjob::DEFAULT_GUARD_SIZE);
    stackjob::cleanup_thread();
}

fn skip_without_backend() -> bool {
    if !stackjob::is_capable() {
        eprintln!("skipped: no stackjob backend on this target, no job stack can overflow");
        return true;
    }
    false
}

#[test]
fn overflowing_a_job_stack_prints_one_clear_line_and_aborts() {
    if skip_without_backend() {
        return;
    }
    let out = run_child("job-overflow");
    let err = stderr(&out);
    assert_eq!(out.status.signal(), Some(libc::SIGABRT), "child should abort; stderr:\n{err}");
    let line = err.lines().find(|l| l.starts_with("stackjob: job stack overflow")).unwrap_or_else(|| {
        panic!("no overflow report; stderr:\n{err}");
    });
    assert!(line.contains("stack 65536 bytes"), "report names the stack size: {line}");
    assert!(line.contains("PoolConfig::stack_size"), "report says how to raise it: {line}");
}

#[test]
fn overflowing_a_fibers_stack_is_reported_too() {
    if skip_without_backend() {
        return;
    }
    let out = run_child("fiber-overflow");
    let err = stderr(&out);
    assert_eq!(out.status.signal(), Some(libc::SIGABRT), "child should abort; stderr:\n{err}");
    assert!(err.contains("stackjob: job stack overflow (stack 65536 bytes"), "stderr:\n{err}");
}

#[test]
fn overflowing_a_job_on_a_thread_without_an_alternate_stack_is_still_reported() {
    if skip_without_backend() {
        return;
    }
    let out = run_child("job-overflow-on-foreign-thread");
    let err = stderr(&out);
    assert_eq!(out.status.signal(), Some(libc::SIGABRT), "child should abort; stderr:\n{err}");
    assert!(err.contains("stackjob: job stack overflow (stack 65536 bytes"), "stderr:\n{err}");
}

#[test]
fn a_thread_stack_overflow_keeps_rusts_own_message() {
    if skip_without_backend() {
        return;
    }
    // The child runs a job first (installing the crate's handler), then
    // overflows an ordinary thread: the fault must be passed on to std.
    let out = run_child("thread-overflow");
    let err = stderr(&out);
    assert!(!err.contains("stackjob: job stack overflow"), "not a job overflow; stderr:\n{err}");
    if cfg!(feature = "asan") {
        // Under AddressSanitizer the action before ours is ASan's own (std
        // installs none when a handler is already there): the fault reaches it.
        assert!(err.contains("AddressSanitizer: stack-overflow"), "ASan's handler must report it; stderr:\n{err}");
        return;
    }
    assert!(err.contains("has overflowed its stack"), "Rust's handler must still report it; stderr:\n{err}");
    assert_eq!(out.status.signal(), Some(libc::SIGABRT));
}

#[test]
fn a_fault_in_a_job_that_is_not_an_overflow_stays_a_segfault() {
    if skip_without_backend() {
        return;
    }
    let out = run_child("null-deref-in-job");
    let err = stderr(&out);
    assert!(!err.contains("stackjob: job stack overflow"), "a null dereference is not an overflow; stderr:\n{err}");
    if cfg!(feature = "asan") {
        // Under AddressSanitizer the action before ours is ASan's SEGV handler.
        assert!(err.contains("AddressSanitizer: SEGV"), "ASan's handler must report it; stderr:\n{err}");
        return;
    }
    assert_eq!(out.status.signal(), Some(libc::SIGSEGV), "stderr:\n{err}");
}
