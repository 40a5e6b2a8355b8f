//! Wall-clock comparison of stackjob with its peers (criterion).
//!
//! ```text
//! cargo bench --bench compare                            # stackjob and corosensei
//! cargo bench --bench compare --features openssl-bench   # plus OpenSSL's ASYNC (needs libcrypto: Debian libssl-dev)
//! cargo bench --bench compare -- roundtrip               # one group (criterion filter)
//! ```
//!
//! Every group holds stackjob and, in the same group, its peers, so
//! criterion's report lines up side by side; at the end the bench prints a
//! table of this run's medians and their ratios (read back from criterion's
//! `estimates.json` files).
//!
//! The `raw` and `raw_shared` rows run the typed core (`stackjob::raw`):
//! `Suspender::suspend` / `Fiber::resume`, isolated (errno and the FP
//! control state per side) and shared.
//!
//! * `roundtrip` — one pause + resume round trip of a job that loops
//!   pausing. stackjob: `pause()` inside, `Job::resume` outside; corosensei:
//!   `yielder.suspend(())` / `resume(())` on a reused `DefaultStack`;
//!   OpenSSL: `ASYNC_pause_job()` / `ASYNC_start_job(&job, ctx, &ret, func, NULL, 0)`.
//! * `start_finish` — start a job that returns at once, from a warm pool:
//!   stackjob's pool (`init_thread(0, 1)`), corosensei `Coroutine::with_stack`
//!   on a reused stack (`into_stack` afterwards), OpenSSL `ASYNC_start_job`
//!   with an 8-byte argument, pool warmed with `ASYNC_init_thread(1, 1)`.
//!   OpenSSL needs a wait context (its resume path dereferences it), so the
//!   `stackjob_ctx` row starts the stackjob job with a `WaitCtx` too.
//! * `start_pause_resume_finish` — start, one pause, resume, finish; same
//!   set-ups and rows as `start_finish`.
//! * `fresh_start` — no pooling: a new guard-paged stack for every job.
//!   - `stackjob`: `start` right after `cleanup_thread()` left the thread
//!     without a pool, plus that `cleanup_thread()`: one iteration is
//!     a new default pool, mmap + mprotect (guard) + madvise(DONTDUMP), the
//!     first-touch page fault, the job, the stack back to the pool, and
//!     `cleanup_thread()` unmapping it.
//!   - `stackjob_start_only`: the same, timing only `start` (the
//!     `cleanup_thread()` with its munmap runs outside the clock).
//!   - `corosensei`: `DefaultStack::new` + `with_stack` + `resume` + drop
//!     (munmap); `corosensei_new_only` leaves the drop outside the clock.
//!
//!   The `_only` rows read the clock around every job (two `Instant::now`,
//!   tens of ns, against µs-sized iterations).
//! * `scrub` — stackjob start → finish of a job that fills 4 KiB or 64 KiB
//!   of its stack with non-zero bytes, with `PoolConfig::scrub(true)` (the
//!   used part is zeroed before the stack is reused) and `scrub(false)`.
//!
//! Stacks are [`stackjob::DEFAULT_STACK_SIZE`] (256 KiB) for stackjob and
//! corosensei; OpenSSL's are fixed at 32 KiB. Everything runs on the main
//! thread. Warm-up 1 s and measurement 2 s per row keep the whole bench at
//! a couple of minutes on a 2-vCPU VM; criterion's `--warm-up-time` and
//! `--measurement-time` override them.

// corosensei (the reference peer) builds only where it has a backend too.
#[cfg(any(target_arch = "x86_64", target_arch = "aarch64", target_arch = "riscv64"))]
mod peers {
    use corosensei::stack::DefaultStack;
    use corosensei::{Coroutine, CoroutineResult, Yielder};
    use criterion::{BenchmarkId, Criterion};
    use stackjob::raw::{self, Isolated, Isolation, Resumed, Shared, Suspender};
    use stackjob::{PoolConfig, Step, WaitCtx, pause, start};
    use std::hint::black_box;
    use std::path::PathBuf;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::time::{Duration, Instant, SystemTime};

    /// Usable stack bytes for stackjob and corosensei.
    const STACK: usize = stackjob::DEFAULT_STACK_SIZE;

    /// Tells the looping jobs of `roundtrip` (all three peers) to return.
    static STOP: AtomicBool = AtomicBool::new(false);

    fn stop_requested() -> bool {
        STOP.load(Ordering::Relaxed)
    }

    pub fn main() {
        let started = SystemTime::now();
        let mut c = Criterion::default()
            .warm_up_time(Duration::from_secs(1))
            .measurement_time(Duration::from_secs(2))
            .configure_from_args();

        println!("compare: CPU {}; stackjob backend {}", cpu_model(), stackjob::backend());
        if !stackjob::is_capable() {
            println!("compare: stackjob jobs cannot run here (is_capable() is false): its rows are skipped");
        }
        openssl::announce();

        roundtrip(&mut c);
        start_finish(&mut c);
        start_pause_resume_finish(&mut c);
        fresh_start(&mut c);
        scrub(&mut c);

        c.final_summary();
        openssl::shutdown();
        summary::print(started);
    }

    /// A paused stackjob job that loops pausing until [`STOP`].
    fn looping_job() -> stackjob::Job<()> {
        STOP.store(false, Ordering::Relaxed);
        let step = start(None, || {
            while !stop_requested() {
                pause();
            }
        });
        match step {
            Ok(Step::Paused(job)) => job,
            other => panic!("the looping job did not pause: {other:?}"),
        }
    }

    /// The stackjob rows: a default pool, and one that does not switch
    /// errno and the FP control state (`isolate_thread_state(false)`).
    fn pools() -> [(&'static str, stackjob::PoolConfig); 2] {
        let cfg = stackjob::PoolConfig::new().init_size(1);
        [("stackjob", cfg.clone()), ("stackjob_shared", cfg.isolate_thread_state(false))]
    }

    /// A suspended fiber of the typed core that loops suspending until
    /// [`STOP`].
    fn looping_fiber<I: Isolation>() -> raw::Fiber<(), I> {
        STOP.store(false, Ordering::Relaxed);
        match raw::start(|s: &Suspender<I>| {
            while !stop_requested() {
                s.suspend();
            }
        }) {
            Ok(Resumed::Suspended(fiber)) => fiber,
            other => panic!("the looping fiber did not suspend: {other:?}"),
        }
    }

    /// The typed core's rows of `roundtrip`.
    fn raw_roundtrip<I: Isolation>(
        g: &mut criterion::BenchmarkGroup<'_, criterion::measurement::WallTime>,
        name: &str,
    ) {
        stackjob::init_thread(0, 1).expect("init_thread");
        g.bench_function(name, |b| {
            let mut fiber = Some(looping_fiber::<I>());
            b.iter(|| {
                let Some(suspended) = fiber.take() else { unreachable!() };
                match suspended.resume() {
                    Resumed::Suspended(again) => fiber = Some(again),
                    Resumed::Returned(()) => unreachable!("the looping fiber suspended"),
                }
            });
            STOP.store(true, Ordering::Relaxed);
            let Some(suspended) = fiber.take() else { unreachable!() };
            assert!(matches!(suspended.resume(), Resumed::Returned(())));
        });
        stackjob::cleanup_thread();
    }

    /// The typed core's rows of `start_finish` (`PAUSE` false) and
    /// `start_pause_resume_finish` (`PAUSE` true).
    fn raw_lifecycle<I: Isolation, const PAUSE: bool>(
        g: &mut criterion::BenchmarkGroup<'_, criterion::measurement::WallTime>,
        name: &str,
    ) {
        stackjob::init_thread(0, 1).expect("init_thread");
        g.bench_function(name, |b| {
            b.iter(|| {
                let x = black_box(8u64);
                let step = raw::start(move |s: &Suspender<I>| {
                    if PAUSE {
                        s.suspend();
                    }
                    black_box(x)
                });
                match step {
                    Ok(Resumed::Returned(v)) if !PAUSE => v,
                    Ok(Resumed::Suspended(fiber)) if PAUSE => match fiber.resume() {
                        Resumed::Returned(v) => v,
                        Resumed::Suspended(_) => unreachable!("the fiber returned"),
                    },
                    _ => unreachable!("the fiber {}", if PAUSE { "suspended" } else { "returned at once" }),
                }
            })
        });
        stackjob::cleanup_thread();
    }

    fn roundtrip(c: &mut Criterion) {
        let mut g = c.benchmark_group("roundtrip");
        if stackjob::is_capable() {
            raw_roundtrip::<Isolated>(&mut g, "raw");
            raw_roundtrip::<Shared>(&mut g, "raw_shared");
        }
        if stackjob::is_capable() {
            for (name, cfg) in pools() {
                stackjob::init_thread_with(&cfg).expect("init_thread");
                g.bench_function(name, |b| {
                    let mut job = Some(looping_job());
                    b.iter(|| {
                        let Some(paused) = job.take() else { unreachable!() };
                        match paused.resume() {
                            Ok(Step::Paused(again)) => job = Some(again),
                            _ => unreachable!("the looping job paused"),
                        }
                    });
                    STOP.store(true, Ordering::Relaxed);
                    let Some(paused) = job.take() else { unreachable!() };
                    assert!(matches!(paused.resume(), Ok(Step::Finished(()))));
                });
                stackjob::cleanup_thread();
            }
        }

        let mut stack = Some(DefaultStack::new(STACK).expect("DefaultStack"));
        g.bench_function("corosensei", |b| {
            STOP.store(false, Ordering::Relaxed);
            let mut co = Coroutine::with_stack(stack.take().expect("the stack is back"), |y: &Yielder<(), ()>, ()| {
                while !stop_requested() {
                    y.suspend(());
                }
            });
            assert!(matches!(co.resume(()), CoroutineResult::Yield(())));
            b.iter(|| match co.resume(()) {
                CoroutineResult::Yield(()) => {}
                CoroutineResult::Return(()) => unreachable!("the looping coroutine yielded"),
            });
            STOP.store(true, Ordering::Relaxed);
            assert!(matches!(co.resume(()), CoroutineResult::Return(())));
            stack = Some(co.into_stack());
        });

        openssl::roundtrip(&mut g);
        g.finish();
    }

    fn start_finish(c: &mut Criterion) {
        let mut g = c.benchmark_group("start_finish");
        if stackjob::is_capable() {
            raw_lifecycle::<Isolated, false>(&mut g, "raw");
            raw_lifecycle::<Shared, false>(&mut g, "raw_shared");
            for (name, cfg) in pools() {
                stackjob::init_thread_with(&cfg).expect("init_thread");
                g.bench_function(name, |b| {
                    b.iter(|| {
                        let x = black_box(8u64);
                        match start(None, move || black_box(x)) {
                            Ok(Step::Finished(v)) => v,
                            _ => unreachable!("the job returned at once"),
                        }
                    })
                });
            }
            stackjob::init_thread(0, 1).expect("init_thread");
            let ctx = WaitCtx::new();
            g.bench_function("stackjob_ctx", |b| {
                b.iter(|| {
                    let x = black_box(8u64);
                    match start(Some(&ctx), move || black_box(x)) {
                        Ok(Step::Finished(v)) => v,
                        _ => unreachable!("the job returned at once"),
                    }
                })
            });
            stackjob::cleanup_thread();
        }

        let mut stack = Some(DefaultStack::new(STACK).expect("DefaultStack"));
        g.bench_function("corosensei", |b| {
            b.iter(|| {
                let x = black_box(8u64);
                let mut co =
                    Coroutine::with_stack(stack.take().expect("the stack is back"), move |_: &Yielder<(), ()>, ()| {
                        black_box(x)
                    });
                let CoroutineResult::Return(v) = co.resume(()) else { unreachable!("the coroutine returned at once") };
                stack = Some(co.into_stack());
                v
            })
        });

        openssl::start_finish(&mut g);
        g.finish();
    }

    fn start_pause_resume_finish(c: &mut Criterion) {
        let mut g = c.benchmark_group("start_pause_resume_finish");
        if stackjob::is_capable() {
            raw_lifecycle::<Isolated, true>(&mut g, "raw");
            raw_lifecycle::<Shared, true>(&mut g, "raw_shared");
            let [default, shared] = pools();
            let rows = [
                (default.0, default.1.clone(), None),
                (shared.0, shared.1, None),
                ("stackjob_ctx", default.1, Some(WaitCtx::new())),
            ];
            for (name, cfg, ctx) in rows {
                stackjob::init_thread_with(&cfg).expect("init_thread");
                g.bench_function(name, |b| {
                    b.iter(|| {
                        let x = black_box(8u64);
                        let Ok(Step::Paused(job)) = start(ctx.as_ref(), move || {
                            pause();
                            black_box(x)
                        }) else {
                            unreachable!("the job paused")
                        };
                        match job.resume() {
                            Ok(Step::Finished(v)) => v,
                            _ => unreachable!("the job finished"),
                        }
                    })
                });
            }
            stackjob::cleanup_thread();
        }

        let mut stack = Some(DefaultStack::new(STACK).expect("DefaultStack"));
        g.bench_function("corosensei", |b| {
            b.iter(|| {
                let x = black_box(8u64);
                let mut co =
                    Coroutine::with_stack(stack.take().expect("the stack is back"), move |y: &Yielder<(), ()>, ()| {
                        y.suspend(());
                        black_box(x)
                    });
                let CoroutineResult::Yield(()) = co.resume(()) else { unreachable!("the coroutine yielded") };
                let CoroutineResult::Return(v) = co.resume(()) else { unreachable!("the coroutine returned") };
                stack = Some(co.into_stack());
                v
            })
        });

        openssl::start_pause_resume_finish(&mut g);
        g.finish();
    }

    fn fresh_start(c: &mut Criterion) {
        let mut g = c.benchmark_group("fresh_start");
        if stackjob::is_capable() {
            g.bench_function("stackjob", |b| {
                stackjob::cleanup_thread();
                b.iter(|| {
                    let x = black_box(8u64);
                    let v = match start(None, move || black_box(x)) {
                        Ok(Step::Finished(v)) => v,
                        _ => unreachable!("the job returned at once"),
                    };
                    stackjob::cleanup_thread();
                    v
                })
            });
            g.bench_function("stackjob_start_only", |b| {
                b.iter_custom(|iters| {
                    let mut timed = Duration::ZERO;
                    for _ in 0..iters {
                        stackjob::cleanup_thread();
                        let x = black_box(8u64);
                        let t0 = Instant::now();
                        let step = start(None, move || black_box(x));
                        timed += t0.elapsed();
                        assert!(matches!(step, Ok(Step::Finished(8))));
                    }
                    stackjob::cleanup_thread();
                    timed
                })
            });
        }

        g.bench_function("corosensei", |b| {
            b.iter(|| {
                let x = black_box(8u64);
                let stack = DefaultStack::new(STACK).expect("DefaultStack");
                let mut co = Coroutine::with_stack(stack, move |_: &Yielder<(), ()>, ()| black_box(x));
                let CoroutineResult::Return(v) = co.resume(()) else { unreachable!("the coroutine returned at once") };
                drop(co);
                v
            })
        });
        g.bench_function("corosensei_new_only", |b| {
            b.iter_custom(|iters| {
                let mut timed = Duration::ZERO;
                for _ in 0..iters {
                    let x = black_box(8u64);
                    let t0 = Instant::now();
                    let stack = DefaultStack::new(STACK).expect("DefaultStack");
                    let mut co = Coroutine::with_stack(stack, move |_: &Yielder<(), ()>, ()| black_box(x));
                    let result = co.resume(());
                    timed += t0.elapsed();
                    assert!(matches!(result, CoroutineResult::Return(8)));
                    drop(co);
                }
                timed
            })
        });
        g.finish();
    }

    /// Fills `N` bytes of the job's stack with non-zero data (zeros would let
    /// the scrub's zero-prefix scan skip them).
    #[inline(never)]
    fn touch<const N: usize>() -> u8 {
        let mut buf = [0xA5u8; N];
        black_box(&mut buf);
        buf[N - 1]
    }

    fn scrub(c: &mut Criterion) {
        if !stackjob::is_capable() {
            return;
        }
        let mut g = c.benchmark_group("scrub");
        for (size, job) in [("4KiB", touch::<4096> as fn() -> u8), ("64KiB", touch::<65536>)] {
            for (name, on) in [("off", false), ("on", true)] {
                stackjob::init_thread_with(&PoolConfig::new().init_size(1).scrub(on)).expect("init_thread_with");
                g.bench_with_input(BenchmarkId::new(name, size), &job, |b, &job| {
                    b.iter(|| match start(None, job) {
                        Ok(Step::Finished(v)) => v,
                        _ => unreachable!("the job returned at once"),
                    })
                });
                stackjob::cleanup_thread();
            }
        }
        g.finish();
    }

    /// The CPU's model name, from /proc/cpuinfo where there is one.
    fn cpu_model() -> String {
        std::fs::read_to_string("/proc/cpuinfo")
            .ok()
            .and_then(|info| {
                info.lines()
                    .find(|l| l.starts_with("model name"))
                    .and_then(|l| l.split_once(':'))
                    .map(|(_, name)| name.trim().to_owned())
            })
            .unwrap_or_else(|| "unknown".to_owned())
    }

    /// OpenSSL's ASYNC through libcrypto, declared by hand (feature `openssl-bench`).
    #[cfg(feature = "openssl-bench")]
    mod openssl {
        use super::{STOP, stop_requested};
        use criterion::BenchmarkGroup;
        use criterion::measurement::WallTime;
        use std::ffi::{CStr, c_char, c_int, c_void};
        use std::hint::black_box;
        use std::ptr;
        use std::sync::atomic::Ordering;

        /// `ASYNC_JOB`, opaque.
        #[repr(C)]
        struct AsyncJob {
            _opaque: [u8; 0],
        }

        /// `ASYNC_WAIT_CTX`, opaque.
        #[repr(C)]
        struct AsyncWaitCtx {
            _opaque: [u8; 0],
        }

        type JobFn = unsafe extern "C" fn(*mut c_void) -> c_int;

        const ASYNC_PAUSE: c_int = 2;
        const ASYNC_FINISH: c_int = 3;
        const OPENSSL_VERSION: c_int = 0;

        #[link(name = "crypto")]
        unsafe extern "C" {
            fn OpenSSL_version(kind: c_int) -> *const c_char;
            fn ASYNC_is_capable() -> c_int;
            fn ASYNC_init_thread(max_size: usize, init_size: usize) -> c_int;
            fn ASYNC_cleanup_thread();
            fn ASYNC_start_job(
                job: *mut *mut AsyncJob,
                ctx: *mut AsyncWaitCtx,
                ret: *mut c_int,
                func: Option<JobFn>,
                args: *mut c_void,
                size: usize,
            ) -> c_int;
            fn ASYNC_pause_job() -> c_int;
            fn ASYNC_WAIT_CTX_new() -> *mut AsyncWaitCtx;
            fn ASYNC_WAIT_CTX_free(ctx: *mut AsyncWaitCtx);
        }

        /// The job pool of the main thread: `ASYNC_init_thread(1, 1)` once,
        /// as OpenSSL does not allow re-initialising a thread's pool.
        fn pool_ready() -> bool {
            use std::sync::OnceLock;
            static READY: OnceLock<bool> = OnceLock::new();
            // SAFETY: plain libcrypto calls without pointer arguments; the bench
            // runs on one thread, whose pool this creates.
            *READY.get_or_init(|| unsafe { ASYNC_is_capable() == 1 && ASYNC_init_thread(1, 1) == 1 })
        }

        pub fn announce() {
            // SAFETY: OpenSSL_version returns a static NUL-terminated string.
            let version = unsafe { CStr::from_ptr(OpenSSL_version(OPENSSL_VERSION)) };
            println!("compare: OpenSSL rows on: {}", version.to_string_lossy());
            if !pool_ready() {
                println!(
                    "compare: OpenSSL's ASYNC is not capable here or ASYNC_init_thread failed: its rows are skipped"
                );
            }
        }

        pub fn shutdown() {
            if pool_ready() {
                // SAFETY: every job started below has finished; this frees the
                // thread's pool.
                unsafe { ASYNC_cleanup_thread() };
            }
        }

        /// A wait context freed on drop.
        struct WaitCtx(*mut AsyncWaitCtx);

        impl WaitCtx {
            fn new() -> WaitCtx {
                // SAFETY: no arguments; a null result is checked.
                let ctx = unsafe { ASYNC_WAIT_CTX_new() };
                assert!(!ctx.is_null(), "ASYNC_WAIT_CTX_new failed");
                WaitCtx(ctx)
            }
        }

        impl Drop for WaitCtx {
            fn drop(&mut self) {
                // SAFETY: the context came from ASYNC_WAIT_CTX_new, no job uses
                // it any more, and it is freed once.
                unsafe { ASYNC_WAIT_CTX_free(self.0) };
            }
        }

        /// Starts (`*job` null) or resumes (`*job` set) a job.
        ///
        /// # Safety
        /// `job` must be null or a job paused on this thread; `args` must point
        /// to `size` readable bytes.
        #[inline(always)]
        unsafe fn start_job(
            job: &mut *mut AsyncJob,
            ctx: &WaitCtx,
            ret: &mut c_int,
            func: JobFn,
            args: *mut c_void,
            size: usize,
        ) -> c_int {
            // SAFETY: per the contract; `ctx` is a live wait context and `ret`
            // a writable int.
            unsafe { ASYNC_start_job(job, ctx.0, ret, Some(func), args, size) }
        }

        unsafe extern "C" fn pause_loop(_args: *mut c_void) -> c_int {
            while !stop_requested() {
                // SAFETY: called inside a job (this is its function).
                unsafe { ASYNC_pause_job() };
            }
            1
        }

        unsafe extern "C" fn return_arg(args: *mut c_void) -> c_int {
            // SAFETY: OpenSSL passes its copy of the 8-byte argument.
            unsafe { args.cast::<u64>().read_unaligned() as c_int }
        }

        unsafe extern "C" fn pause_return_arg(args: *mut c_void) -> c_int {
            // SAFETY: called inside a job; `args` is OpenSSL's copy of the
            // 8-byte argument, which lives until the job finishes.
            unsafe {
                ASYNC_pause_job();
                args.cast::<u64>().read_unaligned() as c_int
            }
        }

        pub fn roundtrip(g: &mut BenchmarkGroup<'_, WallTime>) {
            if !pool_ready() {
                return;
            }
            let ctx = WaitCtx::new();
            g.bench_function("openssl", |b| {
                STOP.store(false, Ordering::Relaxed);
                let mut job: *mut AsyncJob = ptr::null_mut();
                let mut ret: c_int = 0;
                // SAFETY: a fresh start (null job) without arguments.
                let rc = unsafe { start_job(&mut job, &ctx, &mut ret, pause_loop, ptr::null_mut(), 0) };
                assert_eq!(rc, ASYNC_PAUSE, "the looping job pauses");
                b.iter(|| {
                    // SAFETY: `job` is the paused looping job of this thread.
                    let rc = unsafe { start_job(&mut job, &ctx, &mut ret, pause_loop, ptr::null_mut(), 0) };
                    assert!(rc == ASYNC_PAUSE, "the looping job paused again");
                });
                STOP.store(true, Ordering::Relaxed);
                // SAFETY: as above; the job now returns.
                let rc = unsafe { start_job(&mut job, &ctx, &mut ret, pause_loop, ptr::null_mut(), 0) };
                assert_eq!((rc, ret), (ASYNC_FINISH, 1), "the looping job finishes");
            });
        }

        pub fn start_finish(g: &mut BenchmarkGroup<'_, WallTime>) {
            if !pool_ready() {
                return;
            }
            let ctx = WaitCtx::new();
            g.bench_function("openssl", |b| {
                b.iter(|| {
                    let mut arg = black_box(8u64);
                    let mut job: *mut AsyncJob = ptr::null_mut();
                    let mut ret: c_int = 0;
                    // SAFETY: a fresh start; `arg` is 8 readable bytes (copied).
                    let rc = unsafe { start_job(&mut job, &ctx, &mut ret, return_arg, (&raw mut arg).cast(), 8) };
                    assert!(rc == ASYNC_FINISH, "the job returned at once");
                    ret
                })
            });
        }

        pub fn start_pause_resume_finish(g: &mut BenchmarkGroup<'_, WallTime>) {
            if !pool_ready() {
                return;
            }
            let ctx = WaitCtx::new();
            g.bench_function("openssl", |b| {
                b.iter(|| {
                    let mut arg = black_box(8u64);
                    let mut job: *mut AsyncJob = ptr::null_mut();
                    let mut ret: c_int = 0;
                    // SAFETY: a fresh start; `arg` is 8 readable bytes (copied).
                    let rc = unsafe { start_job(&mut job, &ctx, &mut ret, pause_return_arg, (&raw mut arg).cast(), 8) };
                    assert!(rc == ASYNC_PAUSE, "the job paused");
                    // SAFETY: `job` is paused on this thread; args are ignored on resume.
                    let rc = unsafe { start_job(&mut job, &ctx, &mut ret, pause_return_arg, ptr::null_mut(), 0) };
                    assert!(rc == ASYNC_FINISH, "the job finished");
                    ret
                })
            });
        }
    }

    /// Stand-ins when the OpenSSL rows are off.
    #[cfg(not(feature = "openssl-bench"))]
    mod openssl {
        use criterion::BenchmarkGroup;
        use criterion::measurement::WallTime;

        pub fn announce() {
            println!(
                "compare: OpenSSL rows off (run with `--features openssl-bench` to compare with OpenSSL's ASYNC; \
                 needs libcrypto, e.g. Debian's libssl-dev)"
            );
        }

        pub fn shutdown() {}

        pub fn roundtrip(_: &mut BenchmarkGroup<'_, WallTime>) {}

        pub fn start_finish(_: &mut BenchmarkGroup<'_, WallTime>) {}

        pub fn start_pause_resume_finish(_: &mut BenchmarkGroup<'_, WallTime>) {}
    }

    /// The closing table: this run's medians, read back from criterion's
    /// `estimates.json` files, and their ratios.
    mod summary {
        use super::*;

        /// One table line: a label and the criterion ids (group/function) of
        /// the stackjob, corosensei and OpenSSL rows to set side by side.
        struct Line {
            label: &'static str,
            stackjob: &'static str,
            corosensei: Option<&'static str>,
            openssl: Option<&'static str>,
        }

        const LINES: [Line; 16] = [
            Line {
                label: "roundtrip, raw",
                stackjob: "roundtrip/raw",
                corosensei: Some("roundtrip/corosensei"),
                openssl: Some("roundtrip/openssl"),
            },
            Line {
                label: "roundtrip, raw shared",
                stackjob: "roundtrip/raw_shared",
                corosensei: Some("roundtrip/corosensei"),
                openssl: Some("roundtrip/openssl"),
            },
            Line {
                label: "start_finish, raw",
                stackjob: "start_finish/raw",
                corosensei: Some("start_finish/corosensei"),
                openssl: Some("start_finish/openssl"),
            },
            Line {
                label: "start_finish, raw shared",
                stackjob: "start_finish/raw_shared",
                corosensei: Some("start_finish/corosensei"),
                openssl: Some("start_finish/openssl"),
            },
            Line {
                label: "start_pause_resume_fin, raw",
                stackjob: "start_pause_resume_finish/raw",
                corosensei: Some("start_pause_resume_finish/corosensei"),
                openssl: Some("start_pause_resume_finish/openssl"),
            },
            Line {
                label: "start_pause_resume_fin, raw sh.",
                stackjob: "start_pause_resume_finish/raw_shared",
                corosensei: Some("start_pause_resume_finish/corosensei"),
                openssl: Some("start_pause_resume_finish/openssl"),
            },
            Line {
                label: "roundtrip",
                stackjob: "roundtrip/stackjob",
                corosensei: Some("roundtrip/corosensei"),
                openssl: Some("roundtrip/openssl"),
            },
            Line {
                label: "roundtrip, shared state",
                stackjob: "roundtrip/stackjob_shared",
                corosensei: Some("roundtrip/corosensei"),
                openssl: Some("roundtrip/openssl"),
            },
            Line {
                label: "start_finish",
                stackjob: "start_finish/stackjob",
                corosensei: Some("start_finish/corosensei"),
                openssl: Some("start_finish/openssl"),
            },
            Line {
                label: "start_finish, shared state",
                stackjob: "start_finish/stackjob_shared",
                corosensei: Some("start_finish/corosensei"),
                openssl: Some("start_finish/openssl"),
            },
            Line {
                label: "start_finish, WaitCtx",
                stackjob: "start_finish/stackjob_ctx",
                corosensei: None,
                openssl: Some("start_finish/openssl"),
            },
            Line {
                label: "start_pause_resume_finish",
                stackjob: "start_pause_resume_finish/stackjob",
                corosensei: Some("start_pause_resume_finish/corosensei"),
                openssl: Some("start_pause_resume_finish/openssl"),
            },
            Line {
                label: "start_pause_resume_fin, shared",
                stackjob: "start_pause_resume_finish/stackjob_shared",
                corosensei: Some("start_pause_resume_finish/corosensei"),
                openssl: Some("start_pause_resume_finish/openssl"),
            },
            Line {
                label: "start_pause_resume_fin, WaitCtx",
                stackjob: "start_pause_resume_finish/stackjob_ctx",
                corosensei: None,
                openssl: Some("start_pause_resume_finish/openssl"),
            },
            Line {
                label: "fresh_start (with unmap)",
                stackjob: "fresh_start/stackjob",
                corosensei: Some("fresh_start/corosensei"),
                openssl: None,
            },
            Line {
                label: "fresh_start (start/new only)",
                stackjob: "fresh_start/stackjob_start_only",
                corosensei: Some("fresh_start/corosensei_new_only"),
                openssl: None,
            },
        ];

        pub fn print(started: SystemTime) {
            let Some(dir) = criterion_dir() else { return };
            let median = |id: &str| median_ns(&dir, id, started);
            let mut out = String::new();
            for line in &LINES {
                let sj = median(line.stackjob);
                let co = line.corosensei.and_then(median);
                let os = line.openssl.and_then(median);
                if sj.is_none() && co.is_none() && os.is_none() {
                    continue;
                }
                out += &format!(
                    "{:<32} {:>11} {:>11} {:>11} {:>9} {:>9}\n",
                    line.label,
                    ns(sj),
                    ns(co),
                    ns(os),
                    ratio(sj, co),
                    ratio(os, sj)
                );
            }
            let mut scrub = String::new();
            for size in ["4KiB", "64KiB"] {
                let off = median(&format!("scrub/off/{size}"));
                let on = median(&format!("scrub/on/{size}"));
                if off.is_some() || on.is_some() {
                    scrub += &format!(
                        "{:<32} {:>11} {:>11} {:>9}\n",
                        format!("scrub, job uses {size}"),
                        ns(off),
                        ns(on),
                        ratio(on, off)
                    );
                }
            }
            if out.is_empty() && scrub.is_empty() {
                return;
            }
            println!("\nMedians of this run (criterion's median point estimates) and ratios of medians:");
            if !out.is_empty() {
                println!(
                    "{:<32} {:>11} {:>11} {:>11} {:>9} {:>9}",
                    "group", "stackjob", "corosensei", "openssl", "sj/coro", "ossl/sj"
                );
                print!("{out}");
            }
            if !scrub.is_empty() {
                println!("{:<32} {:>11} {:>11} {:>9}", "stackjob start->finish", "scrub off", "scrub on", "on/off");
                print!("{scrub}");
            }
        }

        /// Where criterion writes: `$CRITERION_HOME`, `$CARGO_TARGET_DIR/criterion`,
        /// or `criterion/` in the target directory this bench was built in (the
        /// nearest ancestor marked with cargo's CACHEDIR.TAG).
        fn criterion_dir() -> Option<PathBuf> {
            if let Some(home) = std::env::var_os("CRITERION_HOME") {
                return Some(home.into());
            }
            if let Some(target) = std::env::var_os("CARGO_TARGET_DIR") {
                return Some(PathBuf::from(target).join("criterion"));
            }
            let exe = std::env::current_exe().ok()?;
            exe.ancestors().find(|d| d.join("CACHEDIR.TAG").is_file()).map(|d| d.join("criterion"))
        }

        /// The median (ns) criterion estimated for `id` in this run, if it
        /// wrote one after `started`.
        fn median_ns(dir: &std::path::Path, id: &str, started: SystemTime) -> Option<f64> {
            let path = dir.join(id).join("new").join("estimates.json");
            let fresh = std::fs::metadata(&path).ok()?.modified().ok()? >= started;
            if !fresh {
                return None;
            }
            let json = std::fs::read_to_string(&path).ok()?;
            let median = &json[json.find("\"median\"")?..];
            let value = &median[median.find("\"point_estimate\"")? + "\"point_estimate\"".len()..];
            let value = value.trim_start().strip_prefix(':')?.trim_start();
            let end = value.find([',', '}']).unwrap_or(value.len());
            value[..end].trim().parse().ok()
        }

        fn ns(v: Option<f64>) -> String {
            match v {
                Some(v) if v >= 10_000.0 => format!("{:.2} µs", v / 1000.0),
                Some(v) if v >= 100.0 => format!("{v:.0} ns"),
                Some(v) => format!("{v:.2} ns"),
                None => "-".to_owned(),
            }
        }

        fn ratio(a: Option<f64>, b: Option<f64>) -> String {
            match (a, b) {
                (Some(a), Some(b)) if b > 0.0 => format!("{:.2}", a / b),
                _ => "-".to_owned(),
            }
        }
    }
}

fn main() {
    #[cfg(any(target_arch = "x86_64", target_arch = "aarch64", target_arch = "riscv64"))]
    peers::main();
    #[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64", target_arch = "riscv64")))]
    eprintln!("compare: no stackjob or corosensei backend on this target; nothing to compare");
}
