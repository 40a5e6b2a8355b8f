//! `stackjob::tokio` on a real tokio runtime: jobs as futures (fd mode,
//! callback mode with wakes from other threads, cancellation by drop,
//! NoJobs backpressure, panics) and futures inside jobs (`wait` with timers
//! and a TCP round trip), and what happens on a multi-thread runtime.
//!
//! Built with `--features tokio-dev`. Nothing here measures time.
#![cfg(target_os = "linux")]

#[macro_use]
mod common;

use stackjob::tokio::{JobDriver, Mode, WaitError, job, wait};
use stackjob::{RawFd, WaitCtx, WaitKey};
use std::cell::Cell;
use std::io;
use std::rc::Rc;
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;
use tokio::task::LocalSet;

/// How many job-futures run at once in the concurrency tests.
const MANY: u64 = 1000;

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread().enable_all().build().expect("a current-thread runtime")
}

/// Runs `fut` on a current-thread runtime inside a `LocalSet`.
fn local<F: std::future::Future>(fut: F) -> F::Output {
    LocalSet::new().block_on(&runtime(), fut)
}

/// Raises this process's open-file limit to its hard limit: the fd-mode
/// test holds an eventfd (and tokio a duplicate) per job.
fn raise_nofile(need: u64) {
    let mut rl = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: `rl` is a writable rlimit.
    assert_eq!(unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut rl) }, 0);
    rl.rlim_cur = rl.rlim_max;
    // SAFETY: raising the soft limit up to the hard one needs no privilege.
    assert_eq!(unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &rl) }, 0);
    #[allow(clippy::unnecessary_cast)]
    let have = rl.rlim_cur as u64;
    assert!(have >= need, "this test needs {need} open files; the hard RLIMIT_NOFILE is {have} (raise ulimit -Hn)");
}

// ---- a simulated device: a thread that completes requests ----

/// A request: compute `x * x + 1`, put it in `out`, then notify.
struct Request {
    x: u64,
    out: Arc<Mutex<Option<u64>>>,
    notify: Notify,
}

enum Notify {
    /// Write the eventfd (fd mode).
    Fd(RawFd),
    /// Call the context's completion callback (callback mode).
    Callback(WaitCtx),
}

/// Device threads; each takes requests from its own queue.
struct Device {
    queues: Vec<mpsc::Sender<Request>>,
    threads: Vec<thread::JoinHandle<u64>>,
}

impl Device {
    fn new(threads: usize) -> Device {
        let mut queues = Vec::new();
        let mut handles = Vec::new();
        for _ in 0..threads {
            let (tx, rx) = mpsc::channel::<Request>();
            queues.push(tx);
            handles.push(thread::spawn(move || {
                let mut done = 0;
                for req in rx {
                    *req.out.lock().unwrap() = Some(req.x * req.x + 1);
                    match req.notify {
                        Notify::Fd(fd) => {
                            let one = 1u64;
                            // SAFETY: 8 readable bytes to an eventfd its job keeps open until it read it.
                            assert_eq!(unsafe { libc::write(fd, (&raw const one).cast(), 8) }, 8);
                        }
                        Notify::Callback(ctx) => (ctx.callback().expect("callback mode installs a callback"))(),
                    }
                    done += 1;
                }
                done
            }));
        }
        Device { queues, threads: handles }
    }

    /// Closes the queues; returns how many requests each thread completed.
    fn shut_down(self) -> Vec<u64> {
        drop(self.queues);
        self.threads.into_iter().map(|t| t.join().expect("a device thread")).collect()
    }
}

static ENGINE: u8 = 0;

/// The job's eventfd, created and registered on first use (reused by later
/// jobs of the same context), closed by the context's cleanup.
fn engine_eventfd(ctx: &WaitCtx) -> RawFd {
    if let Some((fd, _)) = ctx.get_fd(WaitKey::of(&ENGINE)) {
        return fd;
    }
    // SAFETY: no memory arguments; checked.
    let fd = unsafe { libc::eventfd(0, libc::EFD_NONBLOCK | libc::EFD_CLOEXEC) };
    assert!(fd >= 0, "eventfd: {}", io::Error::last_os_error());
    ctx.set_wait_fd(
        WaitKey::of(&ENGINE),
        fd,
        0,
        Some(Box::new(|_, fd, _| {
            // SAFETY: our eventfd, closed once, here.
            unsafe { libc::close(fd) };
        })),
    );
    fd
}

/// Drains an eventfd: whether it had been written.
fn drain(fd: RawFd) -> bool {
    let mut n = 0u64;
    // SAFETY: reads 8 bytes into `n` from an open eventfd.
    unsafe { libc::read(fd, (&raw mut n).cast(), 8) == 8 }
}

/// The job of the concurrency tests: submit `x` to the device, pause until
/// it completes (pausing again on a resume that finds nothing), return the
/// result and how many times it paused.
fn offload(queue: mpsc::Sender<Request>, x: u64, fd_mode: bool) -> (u64, u32) {
    let ctx = stackjob::current_wait_ctx().expect("a bridged job has a context");
    let out = Arc::new(Mutex::new(None));
    let fd = fd_mode.then(|| engine_eventfd(&ctx));
    let notify = match fd {
        Some(fd) => Notify::Fd(fd),
        None => Notify::Callback(ctx.clone()),
    };
    queue.send(Request { x, out: out.clone(), notify }).expect("the device is up");
    let mut pauses = 0;
    loop {
        stackjob::pause();
        pauses += 1;
        if let Some(fd) = fd {
            drain(fd);
        }
        if let Some(v) = out.lock().unwrap().take() {
            return (v, pauses);
        }
    }
}

fn many_concurrent(fd_mode: bool) {
    if fd_mode {
        raise_nofile(2 * MANY + 200);
    }
    let device = Device::new(4);
    let results = local(async {
        let tasks: Vec<_> = (0..MANY)
            .map(|x| {
                let queue = device.queues[x as usize % device.queues.len()].clone();
                let mode = if fd_mode { Mode::Fd } else { Mode::Callback };
                let driver = JobDriver::with_mode(mode);
                tokio::task::spawn_local(driver.into_run(move || offload(queue, x, fd_mode)))
            })
            .collect();
        // Every job has started and paused before the first completes?
        // Not required; just wait for all of them.
        let mut results = Vec::new();
        for t in tasks {
            results.push(t.await.expect("the task").expect("the job"));
        }
        results
    });
    let done = device.shut_down();
    assert_eq!(done.iter().sum::<u64>(), MANY, "every request reached the device once");
    assert!(done.iter().filter(|&&n| n > 0).count() > 1, "completions came from several threads: {done:?}");
    for (x, (v, pauses)) in results.into_iter().enumerate() {
        let x = x as u64;
        assert_eq!(v, x * x + 1, "job {x}'s result");
        assert!(pauses >= 1, "job {x} never paused");
    }
    assert_eq!(stackjob::pool_stats().in_use, 0, "every stack went back");
}

#[test]
fn a_thousand_concurrent_jobs_in_fd_mode() {
    require_backend!();
    many_concurrent(true);
}

#[test]
fn a_thousand_concurrent_jobs_in_callback_mode_woken_from_other_threads() {
    require_backend!();
    many_concurrent(false);
}

#[test]
fn a_driver_reused_by_many_jobs_keeps_its_fd() {
    require_backend!();
    let device = Device::new(1);
    let queue = device.queues[0].clone();
    let (fds, values) = local(async move {
        let mut driver = JobDriver::with_mode(Mode::Fd);
        let mut values = Vec::new();
        for x in 0..50 {
            let q = queue.clone();
            values.push(driver.run(move || offload(q, x, true).0).await.unwrap());
        }
        (driver.wait_ctx().all_fds(), values)
    });
    device.shut_down();
    assert_eq!(fds.len(), 1, "the engine's eventfd is created once and kept: {fds:?}");
    assert_eq!(values, (0..50u64).map(|x| x * x + 1).collect::<Vec<_>>());
}

/// Counts its drops.
struct Counted(Rc<Cell<u32>>);
impl Drop for Counted {
    fn drop(&mut self) {
        self.0.set(self.0.get() + 1);
    }
}

#[test]
fn dropping_the_future_cancels_the_job_and_runs_its_destructors() {
    require_backend!();
    let drops = Rc::new(Cell::new(0));
    let reached_end = Rc::new(Cell::new(false));
    local(async {
        // Ten jobs paused for good (callback mode, nothing will complete them).
        let mut futs = Vec::new();
        for _ in 0..10 {
            let (guard, end) = (Counted(drops.clone()), reached_end.clone());
            let mut fut = Box::pin(job(move || {
                let _guard = guard;
                stackjob::pause();
                end.set(true);
            }));
            // One poll: the job starts and pauses.
            assert!(futures_poll_once(fut.as_mut()).await.is_none());
            futs.push(fut);
        }
        assert_eq!(stackjob::pool_stats().in_use, 10);
        assert_eq!(drops.get(), 0);
        drop(futs);
        assert_eq!(drops.get(), 10, "every cancelled job dropped its guard");
        assert_eq!(stackjob::pool_stats().in_use, 0, "every stack went back to the pool");

        // Cancellation by a timeout: the job waits on a timer that never fires in time.
        let guard = Counted(drops.clone());
        let slow = job(move || {
            let _guard = guard;
            wait(tokio::time::sleep(Duration::from_secs(3600))).unwrap();
        });
        assert!(tokio::time::timeout(Duration::from_millis(10), slow).await.is_err());
        assert_eq!(drops.get(), 11);
    });
    assert!(!reached_end.get(), "a cancelled job does not continue");
    assert_eq!(stackjob::pool_stats().in_use, 0);
}

/// Polls `fut` once: `Some(output)` if it completed.
async fn futures_poll_once<F: std::future::Future + Unpin>(mut fut: F) -> Option<F::Output> {
    std::future::poll_fn(|cx| {
        std::task::Poll::Ready(match std::pin::Pin::new(&mut fut).poll(cx) {
            std::task::Poll::Ready(v) => Some(v),
            std::task::Poll::Pending => None,
        })
    })
    .await
}

#[test]
fn no_jobs_is_backpressure_a_pool_of_4_runs_100_futures() {
    require_backend!();
    stackjob::init_thread(4, 0).unwrap();
    let running = Rc::new(Cell::new(0u32));
    let most = Rc::new(Cell::new(0u32));
    let device = Device::new(2);
    let results = local(async {
        let tasks: Vec<_> = (0..100u64)
            .map(|x| {
                let (running, most) = (running.clone(), most.clone());
                let queue = device.queues[x as usize % 2].clone();
                tokio::task::spawn_local(job(move || {
                    running.set(running.get() + 1);
                    most.set(most.get().max(running.get()));
                    // Two waits per job: one on the device, one on a timer.
                    let (v, _) = offload(queue, x, false);
                    wait(tokio::time::sleep(Duration::from_millis(1))).unwrap();
                    running.set(running.get() - 1);
                    v
                }))
            })
            .collect();
        let mut results = Vec::new();
        for t in tasks {
            results.push(t.await.expect("the task").expect("NoJobs is never an error"));
        }
        results
    });
    device.shut_down();
    assert_eq!(results, (0..100u64).map(|x| x * x + 1).collect::<Vec<_>>());
    assert_eq!(most.get(), 4, "at most the pool's 4 jobs ran at once, and the pool was used fully");
    let stats = stackjob::pool_stats();
    assert_eq!((stats.in_use, stats.max_size), (0, 4));
    stackjob::cleanup_thread();
}

#[test]
fn a_panic_in_the_job_is_raised_from_poll() {
    require_backend!();
    local(async {
        // In the first segment, and after a pause; through spawn_local's JoinHandle.
        for pause_first in [false, true] {
            let handle = tokio::task::spawn_local(job(move || {
                if pause_first {
                    stackjob::tokio::yield_now();
                }
                panic!("boom {pause_first}");
            }));
            let err = handle.await.expect_err("the task panicked");
            assert!(err.is_panic());
            let payload = err.into_panic();
            let msg = payload.downcast_ref::<String>().expect("a formatted panic message");
            assert_eq!(msg, &format!("boom {pause_first}"));
        }
        // The thread's pool is whole and still works.
        assert_eq!(stackjob::pool_stats().in_use, 0);
        assert_eq!(job(|| 5).await.unwrap(), 5);
    });
}

#[test]
fn wait_awaits_timers_and_lets_other_tasks_run() {
    require_backend!();
    let ticks = Rc::new(Cell::new(0u32));
    let (before, value, after) = local(async {
        let t = ticks.clone();
        let (tx, rx) = tokio::sync::oneshot::channel::<u32>();
        // Another task: ticks on a timer, then sends what it counted.
        let sender = tokio::task::spawn_local(async move {
            for _ in 0..3 {
                tokio::time::sleep(Duration::from_millis(1)).await;
                t.set(t.get() + 1);
            }
            tx.send(t.get()).unwrap();
        });
        let t = ticks.clone();
        let got = job(move || {
            // Synchronous code awaiting async operations: a timer, then a
            // value only the other task can produce (so it ran meanwhile).
            wait(tokio::time::sleep(Duration::from_millis(2))).unwrap();
            let before = t.get();
            let v = wait(rx).unwrap().unwrap();
            (before, v, t.get())
        })
        .await
        .unwrap();
        sender.await.unwrap();
        got
    });
    assert!(before <= 3);
    assert_eq!(value, 3, "the job got the other task's value, sent after its three ticks");
    assert_eq!(after, 3);
}

#[test]
fn wait_drives_a_tcp_round_trip_from_synchronous_code() {
    require_backend!();
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let reply = local(async {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let server = tokio::task::spawn_local(async move {
            let (mut s, _) = listener.accept().await.unwrap();
            let mut buf = [0u8; 5];
            s.read_exact(&mut buf).await.unwrap();
            buf.reverse();
            s.write_all(&buf).await.unwrap();
        });
        // A "synchronous" client: every I/O is a wait() inside the job.
        let reply = job(move || {
            let mut s = wait(tokio::net::TcpStream::connect(addr)).unwrap().unwrap();
            wait(s.write_all(b"hello")).unwrap().unwrap();
            let mut buf = [0u8; 5];
            wait(s.read_exact(&mut buf)).unwrap().unwrap();
            buf
        })
        .await
        .unwrap();
        server.await.unwrap();
        reply
    });
    assert_eq!(&reply, b"olleh");
}

#[test]
fn wait_outside_a_bridged_job_or_while_blocked_is_an_error() {
    require_backend!();
    assert_eq!(wait(async { 1 }), Err(WaitError::NotInBridgedJob));
    // In a job resumed by hand: nothing would poll the future again.
    let step = stackjob::start(None, || wait(async { 1 })).unwrap();
    assert!(matches!(step, stackjob::Step::Finished(Err(WaitError::NotInBridgedJob))));
    let r = local(job(|| {
        let _block = stackjob::block_pause();
        wait(std::future::pending::<()>())
    }));
    assert_eq!(r.unwrap(), Err(WaitError::CannotPause));
    // And the ready case does not pause at all.
    assert_eq!(local(job(|| wait(async { 7 }))).unwrap(), Ok(7));
}

#[test]
fn a_job_that_pauses_with_nothing_to_wait_for_is_a_yield() {
    require_backend!();
    // Fd mode, no fd: resumed on the next poll instead of hanging.
    let n = local(async {
        let mut driver = JobDriver::with_mode(Mode::Fd);
        driver
            .run(|| {
                for _ in 0..100 {
                    stackjob::pause();
                }
                100
            })
            .await
    });
    assert_eq!(n.unwrap(), 100);
}

#[test]
fn an_fd_tokio_cannot_watch_ends_the_job_with_an_error() {
    require_backend!();
    let drops = Rc::new(Cell::new(0));
    let guard = Counted(drops.clone());
    let file = std::fs::File::open("/proc/self/status").unwrap();
    let fd = std::os::fd::AsRawFd::as_raw_fd(&file);
    let r = local(job(move || {
        let _guard = guard;
        // A regular file: epoll refuses it (EPERM).
        stackjob::current_wait_ctx().unwrap().set_wait_fd(WaitKey::new(1), fd, 0, None);
        stackjob::pause();
    }));
    match r {
        Err(stackjob::tokio::Error::WaitFd { fd: bad, source }) => {
            assert_eq!(bad, fd);
            assert_eq!(source.raw_os_error(), Some(libc::EPERM), "{source}");
        }
        other => panic!("expected a WaitFd error, got {other:?}"),
    }
    assert_eq!(drops.get(), 1, "the job was cancelled: its destructors ran");
    drop(file);
}

#[test]
fn on_a_multi_thread_runtime_block_on_works_and_spawn_local_refuses_clearly() {
    require_backend!();
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    // block_on polls on this thread, where the job stays.
    let caller = thread::current().id();
    let v = rt.block_on(job(move || {
        wait(tokio::time::sleep(Duration::from_millis(1))).unwrap();
        assert_eq!(thread::current().id(), caller);
        9
    }));
    assert_eq!(v.unwrap(), 9);
    // A LocalSet on a multi-thread runtime works too.
    let v = LocalSet::new().block_on(&rt, async { tokio::task::spawn_local(job(|| 10)).await.unwrap() });
    assert_eq!(v.unwrap(), 10);
    // spawn_local outside a LocalSet is tokio's clear panic (tokio::spawn
    // does not compile: see the compile_fail doctest in stackjob::tokio).
    let err = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        rt.block_on(async { drop(tokio::task::spawn_local(job(|| 1))) })
    }))
    .expect_err("spawn_local outside a LocalSet panics");
    let msg = err.downcast_ref::<&str>().map(|s| s.to_string()).or_else(|| err.downcast_ref::<String>().cloned());
    assert!(msg.unwrap_or_default().contains("LocalSet"), "the panic names LocalSet");
}
