//! Resource exhaustion and bad input never crash: out of address space,
//! out of mappings, absurd pool and stack sizes, and the crate's API called
//! from wait-ctx cleanups and completion callbacks (including during thread
//! exit) all give a defined result.
//!
//! Scenarios that change process-wide limits, exhaust the mapping table or
//! could abort run in a child process: this test binary re-executes itself
//! with `STACKJOB_CHILD=<scenario>` and only the test `child_entry`
//! selected (`common::child`, which also runs the child under the parent's
//! emulator); the child asserts and prints what it saw, the parent checks
//! that it exited cleanly.

#[macro_use]
mod common;
use common::{child, finished, paused};
use stackjob::{
    Error, Job, MAX_STACK_SIZE, PoolConfig, Status, WaitCtx, WaitKey, cleanup_thread, current_wait_ctx, in_job,
    init_thread, init_thread_with, pause, pool_stats, start,
};
use std::cell::RefCell;
use std::io::Read;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

/// Like `require_backend!`, and also needs Linux (`/proc/self/maps`).
macro_rules! require_linux_backend {
    () => {
        require_backend!();
        if !cfg!(target_os = "linux") {
            eprintln!("skipped: counting mappings needs /proc/self/maps (Linux)");
            return;
        }
        if cfg!(feature = "asan") {
            // ASan's shadow memory and per-switch fake stacks need the very
            // address space and mappings these scenarios exhaust.
            eprintln!("skipped under AddressSanitizer: its own memory needs defeat the exhaustion");
            return;
        }
        if child::emulated() {
            // qemu-user maps the guest's memory inside its own process: the
            // guest's mappings, its address-space limit and the kernel's
            // mapping count are not the ones these scenarios exhaust.
            eprintln!("skipped: under user-mode emulation the guest's mappings are not the kernel's");
            return;
        }
    };
}

/// Runs `scenario` in a child and returns its stdout; fails the test with
/// the child's output unless it exited with status 0.
fn child_succeeds(scenario: &str) -> String {
    let out = child::run("child_entry", scenario, &[]);
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "child {scenario} failed: {:?}\nstdout:\n{stdout}\nstderr:\n{stderr}", out.status);
    assert!(stdout.contains(&format!("scenario {scenario} done")), "child did not run the scenario:\n{stdout}");
    stdout
}

/// The text after `key` on the line of `stdout` that has it (libtest may
/// have printed the test's name in front of it).
fn reported(stdout: &str, key: &str) -> String {
    let line = stdout.lines().find(|l| l.contains(key)).unwrap_or_else(|| panic!("no {key:?} in:\n{stdout}"));
    line[line.find(key).unwrap() + key.len()..].trim().to_string()
}

/// Lines in /proc/self/maps, read into a buffer reserved up front (so it
/// can be called while allocation may fail).
fn maps_count(buf: &mut Vec<u8>) -> usize {
    buf.clear();
    let mut file = std::fs::File::open("/proc/self/maps").expect("open /proc/self/maps");
    let mut chunk = [0u8; 4096];
    loop {
        let n = file.read(&mut chunk).expect("read /proc/self/maps");
        if n == 0 {
            break;
        }
        assert!(buf.len() + n <= buf.capacity(), "maps buffer too small");
        buf.extend_from_slice(&chunk[..n]);
    }
    buf.iter().filter(|&&b| b == b'\n').count()
}

/// The process's virtual size in bytes (VmSize in /proc/self/status).
fn vm_size() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("read /proc/self/status");
    let line = status.lines().find(|l| l.starts_with("VmSize:")).expect("VmSize line");
    let kib: u64 = line.split_whitespace().nth(1).unwrap().parse().unwrap();
    kib * 1024
}

fn set_address_space_limit(soft: u64) -> libc::rlimit {
    // rlim_t is 32 bits on 32-bit targets (a limit past 4 GiB is no limit
    // there) and u64 elsewhere, where the casts change nothing.
    #[allow(clippy::unnecessary_cast)]
    let soft = soft.min(libc::rlim_t::MAX as u64) as libc::rlim_t;
    let mut old = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit/setrlimit with valid pointers; only the soft limit
    // changes (lowering it and raising it back up to the hard limit needs
    // no privilege).
    unsafe {
        assert_eq!(libc::getrlimit(libc::RLIMIT_AS, &mut old), 0);
        let new = libc::rlimit { rlim_cur: soft, rlim_max: old.rlim_max };
        assert_eq!(libc::setrlimit(libc::RLIMIT_AS, &new), 0, "setrlimit: {}", std::io::Error::last_os_error());
    }
    old
}

fn restore_address_space_limit(old: libc::rlimit) {
    // SAFETY: as in `set_address_space_limit`.
    unsafe { assert_eq!(libc::setrlimit(libc::RLIMIT_AS, &old), 0) };
}

/// A job that pauses forever (until dropped).
fn pauser() -> impl FnOnce() + 'static {
    || {
        loop {
            pause();
        }
    }
}

/// Starts paused jobs until `start` fails; returns the jobs and the error.
fn start_until_failure(jobs: &mut Vec<Job<()>>, at_most: usize) -> Error {
    loop {
        assert!(jobs.len() < at_most, "{at_most} jobs started and no error yet");
        match start(None, pauser()) {
            Ok(step) => jobs.push(paused(step)),
            Err(e) => return e,
        }
    }
}

/// Asserts `err` is a stack-mapping failure with ENOMEM whose message says
/// what to do about it.
fn assert_out_of_memory_or_mappings(err: &Error) {
    match err {
        Error::StackAlloc { source, .. } => {
            assert_eq!(source.raw_os_error(), Some(libc::ENOMEM), "the OS error: {source}")
        }
        other => panic!("expected Error::StackAlloc, got {other:?}"),
    }
    let msg = err.to_string();
    assert!(msg.contains("max_map_count"), "the message names the mapping limit: {msg}");
    assert!(msg.contains("out of memory"), "the message names memory: {msg}");
    assert!(std::error::Error::source(err).is_some(), "the OS error is the source");
}

/// Child: under an address-space limit room for 250 default stacks (each
/// with its guard region, which counts as address space) above the current
/// size, start paused jobs until `start` fails; drop them all and check
/// that every mapping went away and that a job starts again, still under
/// the limit.
fn scenario_address_space() {
    let mut maps = Vec::with_capacity(4 << 20);
    let mut jobs = Vec::with_capacity(100_000);
    init_thread_with(&PoolConfig::new()).unwrap();
    finished(start(None, || ()).unwrap()); // the pool, its first stack, the signal stack
    cleanup_thread();
    let before = maps_count(&mut maps);
    let per_stack = (stackjob::DEFAULT_STACK_SIZE + stackjob::DEFAULT_GUARD_SIZE) as u64;
    let old = set_address_space_limit(vm_size() + 250 * per_stack);
    let err = start_until_failure(&mut jobs, 100_000);
    let started = jobs.len();
    jobs.clear(); // cancels every job (their stacks go back to the pool), keeps the buffer
    assert_eq!(pool_stats().idle, started);
    cleanup_thread(); // unmaps them
    let after = maps_count(&mut maps);
    // A job starts again under the same limit: the memory really came back.
    assert_eq!(finished(start(None, || 42).unwrap()), 42);
    cleanup_thread();
    restore_address_space_limit(old);
    assert_out_of_memory_or_mappings(&err);
    assert!(started >= 100, "the limit holds about 250 default stacks, only {started} started");
    assert_eq!(after, before, "every job stack mapping must be gone");
    println!("jobs started: {started}");
    println!("error: {err}");
}

/// Child: paused jobs until the kernel's mapping limit (vm.max_map_count)
/// stops `start`; then everything is released and a job starts again.
fn scenario_mapping_limit() {
    let mut maps = Vec::with_capacity(64 << 20);
    let mut jobs = Vec::with_capacity(1 << 20);
    // Small stacks: 32k of them must fit in memory comfortably.
    let small = PoolConfig::new().stack_size(stackjob::MIN_STACK_SIZE);
    init_thread_with(&small).unwrap();
    finished(start(None, || ()).unwrap()); // the signal stack
    init_thread_with(&small).unwrap(); // a pool without stacks
    let before = maps_count(&mut maps);
    let err = start_until_failure(&mut jobs, 1 << 20);
    let started = jobs.len();
    let at_limit = maps_count(&mut maps);
    jobs.clear();
    init_thread_with(&small).unwrap(); // frees the old pool's stacks
    let after = maps_count(&mut maps);
    assert_eq!(finished(start(None, || 42).unwrap()), 42);
    cleanup_thread();
    assert_out_of_memory_or_mappings(&err);
    assert!(err.to_string().contains(&format!("{}-byte", stackjob::MIN_STACK_SIZE)), "{err}");
    assert_eq!(after, before, "every job stack mapping must be gone");
    let max = std::fs::read_to_string("/proc/sys/vm/max_map_count").ok().and_then(|s| s.trim().parse::<usize>().ok());
    if let Some(max) = max {
        assert!(at_limit + 2 >= max, "start failed with {at_limit} of {max} mappings in use: not the mapping limit");
    }
    println!("jobs started: {started}");
    println!("mappings at the limit: {at_limit}");
    println!("error: {err}");
}

/// Child: under an address-space limit, `init_thread(0, n)` with more
/// stacks than fit creates stacks until the memory runs out, fails with the
/// same error, and leaves no mapping and the old pool behind.
fn scenario_huge_init_size() {
    let mut maps = Vec::with_capacity(4 << 20);
    init_thread(3, 1).unwrap();
    let before = maps_count(&mut maps);
    let old = set_address_space_limit(vm_size() + (64 << 20));
    // 100 000 stacks of 20 KiB (2 GB) do not fit in 64 MiB; their Vec does.
    let result = init_thread_with(&PoolConfig::new().init_size(100_000).stack_size(stackjob::MIN_STACK_SIZE));
    restore_address_space_limit(old);
    let err = result.expect_err("100 000 stacks cannot be mapped in 64 MiB");
    let after = maps_count(&mut maps);
    assert_out_of_memory_or_mappings(&err);
    assert_eq!(after, before, "the stacks created before the failure must be unmapped");
    let stats = pool_stats();
    assert_eq!((stats.max_size, stats.idle), (3, 1), "the previous pool stays");
    println!("error: {err}");
}

/// What the crate's API does when called from a wait-ctx cleanup, a
/// completion callback or a destructor: one line per call, in order.
type Log = Arc<Mutex<Vec<String>>>;

fn log_line(log: &Log, line: String) {
    log.lock().unwrap().push(line);
}

/// Calls every entry point of the crate that makes sense anywhere and logs
/// what each did. `pause()` is left out (its effect depends on where it is
/// called; the tests call it themselves).
fn exercise_api(log: &Log, label: &str) {
    log_line(log, format!("{label}: in_job={}", in_job()));
    log_line(log, format!("{label}: current_wait_ctx={}", current_wait_ctx().is_some()));
    let step = start(None, || 5);
    log_line(log, format!("{label}: start={:?}", step.map(finished)));
    let job = start(None, || {
        pause();
        6
    })
    .map(paused);
    let resumed = job.map(|job| finished(job.resume().unwrap()));
    log_line(log, format!("{label}: start+resume={resumed:?}"));
    log_line(log, format!("{label}: init_thread={:?}", init_thread(4, 1)));
    log_line(log, format!("{label}: idle after init={}", pool_stats().idle));
    cleanup_thread();
    log_line(log, format!("{label}: cleanup_thread done, idle={}", pool_stats().idle));
    log_line(log, format!("{label}: start after cleanup={:?}", start(None, || 7).map(finished)));
}

fn expected_api_log(label: &str, in_job: bool, has_ctx: bool) -> Vec<String> {
    vec![
        format!("{label}: in_job={in_job}"),
        format!("{label}: current_wait_ctx={has_ctx}"),
        format!("{label}: start=Ok(5)"),
        format!("{label}: start+resume=Ok(6)"),
        format!("{label}: init_thread=Ok(())"),
        format!("{label}: idle after init=1"),
        format!("{label}: cleanup_thread done, idle=0"),
        format!("{label}: start after cleanup=Ok(7)"),
    ]
}

/// A wait ctx with one fd whose cleanup runs `exercise_api`.
fn ctx_with_api_cleanup(log: &Log, label: &'static str) -> WaitCtx {
    let ctx = WaitCtx::new();
    let log = log.clone();
    ctx.set_wait_fd(WaitKey::new(1), 3, 0, Some(Box::new(move |_, _, _| exercise_api(&log, label))));
    ctx
}

/// Child: the API from a wait-ctx cleanup and from a destructor that run
/// while the thread exits, after the crate's own thread-locals are gone.
fn scenario_thread_exit() {
    thread_local! {
        static HELD: RefCell<Option<WaitCtx>> = const { RefCell::new(None) };
    }
    let log: Log = Arc::default();
    let report = log.clone();
    std::thread::spawn(move || {
        // Touch HELD before the crate's thread-locals exist: destructors
        // run in reverse order, so HELD's runs after the pool's.
        HELD.with(|_| ());
        finished(start(None, || ()).unwrap());
        let ctx = ctx_with_api_cleanup(&report, "late");
        HELD.with(|held| *held.borrow_mut() = Some(ctx));
    })
    .join()
    .expect("the thread exits cleanly");
    let report = log.clone();
    std::thread::spawn(move || {
        // HELD between the pool (touched by pool_stats) and the alternate
        // signal stack (made with the first pool that has stacks): HELD's
        // destructor runs after the signal stack's, before the pool's.
        let _ = pool_stats();
        HELD.with(|_| ());
        finished(start(None, || ()).unwrap());
        let ctx = ctx_with_api_cleanup(&report, "middle");
        HELD.with(|held| *held.borrow_mut() = Some(ctx));
    })
    .join()
    .expect("the thread exits cleanly");
    let report = log.clone();
    std::thread::spawn(move || {
        // Here HELD comes after the crate's thread-locals: its destructor
        // runs first, with the pool still there.
        finished(start(None, || ()).unwrap());
        let ctx = ctx_with_api_cleanup(&report, "early");
        HELD.with(|held| *held.borrow_mut() = Some(ctx));
    })
    .join()
    .expect("the thread exits cleanly");
    let log = log.lock().unwrap().clone();
    for line in &log {
        println!("{line}");
    }
    let mut expected = vec![
        "late: in_job=false",
        "late: current_wait_ctx=false",
        "late: start=Ok(5)",
        "late: start+resume=Ok(6)",
        "late: init_thread=Ok(())",
        // The pool's thread-local is gone: there is no pool to fill.
        "late: idle after init=0",
        "late: cleanup_thread done, idle=0",
        "late: start after cleanup=Ok(7)",
    ];
    let later = [expected_api_log("middle", false, false), expected_api_log("early", false, false)].concat();
    expected.extend(later.iter().map(String::as_str));
    assert_eq!(log, expected);
}

/// The child side: does what the scenario says and prints `done`.
#[test]
fn child_entry() {
    let Some(scenario) = child::scenario() else { return };
    match scenario.as_str() {
        "address-space" => scenario_address_space(),
        "mapping-limit" => scenario_mapping_limit(),
        "huge-init-size" => scenario_huge_init_size(),
        "thread-exit" => scenario_thread_exit(),
        other => panic!("unknown scenario {other}"),
    }
    println!("scenario {scenario} done");
}

#[test]
fn running_out_of_address_space_is_a_stack_alloc_error_and_nothing_leaks() {
    require_linux_backend!();
    let out = child_succeeds("address-space");
    eprintln!("{}", reported(&out, "error:"));
}

#[test]
fn running_out_of_mappings_is_a_stack_alloc_error_and_nothing_leaks() {
    require_linux_backend!();
    // Two mappings per stack: the child holds max_map_count / 2 paused
    // jobs, a few pages each. Fine for the default 65530, not for the
    // millions some systems configure.
    const MAX_MAPPINGS: usize = 1 << 17;
    match std::fs::read_to_string("/proc/sys/vm/max_map_count").map(|s| s.trim().parse::<usize>()) {
        Ok(Ok(max)) if max <= MAX_MAPPINGS => {}
        other => {
            eprintln!(
                "skipped: vm.max_map_count is {other:?}, exhausting it takes too much memory (limit {MAX_MAPPINGS})"
            );
            return;
        }
    }
    let out = child_succeeds("mapping-limit");
    eprintln!("{} jobs; {}", reported(&out, "jobs started:"), reported(&out, "error:"));
}

#[test]
fn an_init_size_too_big_for_memory_fails_once_it_runs_out_and_unmaps_what_it_made() {
    require_linux_backend!();
    child_succeeds("huge-init-size");
}

#[test]
fn the_api_works_from_a_cleanup_run_during_thread_exit() {
    require_backend!();
    child_succeeds("thread-exit");
}

#[test]
fn stack_sizes_out_of_bounds_are_invalid_stack_size_errors() {
    for requested in [0, 1, MAX_STACK_SIZE + 1, usize::MAX] {
        let err = init_thread_with(&PoolConfig::new().stack_size(requested)).unwrap_err();
        assert!(
            matches!(err, Error::InvalidStackSize { requested: r } if r == requested),
            "stack size {requested}: {err:?}"
        );
    }
}

#[test]
fn init_size_beyond_max_size_is_an_invalid_pool_size_error() {
    let err = init_thread(1, usize::MAX).unwrap_err();
    assert!(matches!(err, Error::InvalidPoolSize { max_size: 1, init_size: usize::MAX }), "{err:?}");
}

#[test]
fn unlimited_pool_with_usize_max_init_size_fails_at_once() {
    // (Without a backend no stack is ever created, and this succeeds.)
    require_backend!();
    init_thread(2, 0).unwrap();
    let err = init_thread(0, usize::MAX).unwrap_err();
    assert_out_of_memory_or_mappings(&err);
    assert_eq!(pool_stats().max_size, 2, "the previous pool stays");
    cleanup_thread();
}

#[test]
fn the_api_works_from_a_cleanup_run_by_the_last_user_handle() {
    require_backend!();
    let log: Log = Arc::default();
    let ctx = ctx_with_api_cleanup(&log, "user");
    drop(ctx);
    assert_eq!(*log.lock().unwrap(), expected_api_log("user", false, false));
}

#[test]
fn the_api_works_from_a_cleanup_run_when_the_job_holding_the_last_clone_finishes() {
    require_backend!();
    let log: Log = Arc::default();
    let ctx = ctx_with_api_cleanup(&log, "finish");
    let in_use = Arc::new(AtomicUsize::new(usize::MAX));
    let seen = in_use.clone();
    // A second fd whose cleanup records the pool as the cleanups see it.
    ctx.set_wait_fd(
        WaitKey::new(2),
        4,
        0,
        Some(Box::new(move |_, _, _| seen.store(pool_stats().in_use, Ordering::SeqCst))),
    );
    let job = paused(start(Some(&ctx), pause).unwrap());
    drop(ctx); // the job holds the last clone now
    assert!(log.lock().unwrap().is_empty(), "no cleanup while the job holds the ctx");
    finished(job.resume().unwrap());
    assert_eq!(in_use.load(Ordering::SeqCst), 0, "the cleanups run after the job's stack is back");
    assert_eq!(*log.lock().unwrap(), expected_api_log("finish", false, false));
}

#[test]
fn the_api_works_from_a_cleanup_run_when_a_paused_job_holding_the_last_clone_is_dropped() {
    require_backend!();
    let log: Log = Arc::default();
    let ctx = ctx_with_api_cleanup(&log, "cancel");
    let job = paused(start(Some(&ctx), pause).unwrap());
    drop(ctx);
    drop(job);
    assert_eq!(*log.lock().unwrap(), expected_api_log("cancel", false, false));
}

#[test]
fn a_cleanup_run_inside_an_outer_job_sees_that_job_and_can_pause_it() {
    require_backend!();
    let log: Log = Arc::default();
    let outer_ctx = WaitCtx::new();
    let inner_ctx = WaitCtx::new();
    {
        let log = log.clone();
        let outer = outer_ctx.clone();
        inner_ctx.set_wait_fd(
            WaitKey::new(1),
            3,
            0,
            Some(Box::new(move |_, _, _| {
                log_line(&log, format!("cleanup: in_job={}", in_job()));
                let seen = current_wait_ctx().map(|c| c.same_as(&outer));
                log_line(&log, format!("cleanup: sees the outer job's ctx={seen:?}"));
                pause(); // pauses the outer job, in the middle of the cleanup
                log_line(&log, "cleanup: resumed".into());
            })),
        );
    }
    // The inner job holds the last clone of inner_ctx; the outer job
    // resumes it to the end, so the cleanup runs on the outer job's stack.
    let inner = paused(start(Some(&inner_ctx), pause).unwrap());
    drop(inner_ctx);
    let step = start(Some(&outer_ctx), move || {
        finished(inner.resume().unwrap());
        "outer done"
    })
    .unwrap();
    let outer = paused(step);
    assert_eq!(
        *log.lock().unwrap(),
        ["cleanup: in_job=true", "cleanup: sees the outer job's ctx=Some(true)"],
        "the cleanup paused the outer job"
    );
    assert_eq!(finished(outer.resume().unwrap()), "outer done");
    assert_eq!(log.lock().unwrap().last().unwrap(), "cleanup: resumed");
}

#[test]
fn the_api_works_from_a_cleanup_run_inside_a_job() {
    require_backend!();
    let log: Log = Arc::default();
    let report = log.clone();
    let value = finished(
        start(None, move || {
            // A ctx the job makes and drops itself: its cleanup runs in the job.
            drop(ctx_with_api_cleanup(&report, "inside"));
            1
        })
        .unwrap(),
    );
    assert_eq!(value, 1);
    assert_eq!(*log.lock().unwrap(), expected_api_log("inside", true, false));
}

#[test]
fn the_api_works_from_a_completion_callback_on_another_thread() {
    require_backend!();
    let log: Log = Arc::default();
    let ctx = WaitCtx::new();
    {
        let log = log.clone();
        let ctx2 = ctx.clone();
        ctx.set_callback(Some(Arc::new(move || {
            exercise_api(&log, "callback");
            pause(); // not in a job on this thread: returns at once
            ctx2.set_status(Status::Ok);
        })));
    }
    let job = paused(
        start(Some(&ctx), || {
            pause();
            current_wait_ctx().unwrap().status()
        })
        .unwrap(),
    );
    let remote = ctx.clone();
    std::thread::spawn(move || (remote.callback().unwrap())()).join().unwrap();
    assert_eq!(*log.lock().unwrap(), expected_api_log("callback", false, false));
    assert_eq!(finished(job.resume().unwrap()), Status::Ok);
    ctx.set_callback(None); // the callback holds a clone of its own ctx
}

#[test]
fn a_completion_callback_called_in_a_job_can_replace_itself_and_pause_the_job() {
    require_backend!();
    let ctx = WaitCtx::new();
    let calls = Arc::new(AtomicUsize::new(0));
    {
        let calls = calls.clone();
        let me = ctx.clone();
        ctx.set_callback(Some(Arc::new(move || {
            calls.fetch_add(1, Ordering::SeqCst);
            assert!(in_job());
            assert!(current_wait_ctx().unwrap().same_as(&me));
            assert!(me.callback().is_some(), "reading the callback from inside it must not deadlock");
            me.set_callback(None); // removes itself while it runs
            pause();
        })));
    }
    let job = paused(
        start(Some(&ctx), || {
            (current_wait_ctx().unwrap().callback().unwrap())();
            current_wait_ctx().unwrap().callback().is_none()
        })
        .unwrap(),
    );
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    assert!(finished(job.resume().unwrap()), "the callback removed itself");
    // The callback held the last clone of its own ctx (`me`): dropping the
    // callback dropped the ctx, no leak and no deadlock.
    drop(ctx);
}

/// Uses its ctx from its destructor: what an engine object that unregisters
/// its fd when dropped does.
struct Unregisters {
    ctx: WaitCtx,
    key: WaitKey,
    done: Arc<AtomicBool>,
}

impl Drop for Unregisters {
    fn drop(&mut self) {
        // The ctx's locks must not be held while the ctx drops values of
        // the user's (here: while clear_fd drops the cleanup that owns
        // this, or set_callback the callback that does).
        self.ctx.clear_fd(self.key);
        let _ = self.ctx.fd_count();
        let _ = self.ctx.callback();
        self.done.store(true, Ordering::SeqCst);
    }
}

#[test]
fn a_cleanup_dropped_unrun_may_use_its_ctx() {
    let ctx = WaitCtx::new();
    let done = Arc::new(AtomicBool::new(false));
    let guard = Unregisters { ctx: ctx.clone(), key: WaitKey::new(2), done: done.clone() };
    ctx.set_wait_fd(WaitKey::new(2), 4, 0, None);
    ctx.set_wait_fd(
        WaitKey::new(1),
        3,
        0,
        Some(Box::new(move |_, _, _| {
            let _keep = &guard;
        })),
    );
    // Clearing fd 1 drops its cleanup unrun, and with it `guard`, whose
    // destructor clears fd 2 on the same ctx.
    assert!(ctx.clear_fd(WaitKey::new(1)));
    assert!(done.load(Ordering::SeqCst));
    assert_eq!(ctx.fd_count(), 0);
}

#[test]
fn a_cleanup_dropped_when_the_next_segment_starts_may_use_its_ctx() {
    require_backend!();
    let ctx = WaitCtx::new();
    let done = Arc::new(AtomicBool::new(false));
    let guard = Unregisters { ctx: ctx.clone(), key: WaitKey::new(2), done: done.clone() };
    ctx.set_wait_fd(WaitKey::new(2), 4, 0, None);
    ctx.set_wait_fd(
        WaitKey::new(1),
        3,
        0,
        Some(Box::new(move |_, _, _| {
            let _keep = &guard;
        })),
    );
    let job = paused(
        start(Some(&ctx), || {
            // Registered before this segment: kept, marked deleted, until
            // the next segment starts and forgets it (dropping its cleanup).
            assert!(current_wait_ctx().unwrap().clear_fd(WaitKey::new(1)));
            pause();
        })
        .unwrap(),
    );
    assert!(!done.load(Ordering::SeqCst));
    finished(job.resume().unwrap());
    assert!(done.load(Ordering::SeqCst));
    assert_eq!(ctx.fd_count(), 0);
}

#[test]
fn a_callback_dropped_when_replaced_may_use_its_ctx() {
    let ctx = WaitCtx::new();
    let done = Arc::new(AtomicBool::new(false));
    let guard = Unregisters { ctx: ctx.clone(), key: WaitKey::new(1), done: done.clone() };
    ctx.set_wait_fd(WaitKey::new(1), 3, 0, None);
    ctx.set_callback(Some(Arc::new(move || {
        let _keep = &guard;
    })));
    ctx.set_callback(None); // drops the old callback, and `guard` with it
    assert!(done.load(Ordering::SeqCst));
    assert_eq!(ctx.fd_count(), 0);
    assert!(ctx.callback().is_none());
}
