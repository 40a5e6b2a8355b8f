//! Offloading work to a (simulated) crypto accelerator with stackjob: the
//! pattern OpenSSL's async mode and engines like Intel QAT use.
//!
//! The "accelerator" is a pool of worker threads that compute SHA-256 of
//! real data (`--workers`, default 2). The main thread keeps `--jobs` jobs
//! in flight (default 64), one job per request: a job builds its request's
//! payload, submits it to an accelerator queue, and pauses. Like a QAT
//! engine, the job finds its wait fd in its [`WaitCtx`] — an eventfd that
//! the first job of each slot creates and registers (`set_wait_fd`, with a
//! cleanup that closes it) and every later job of that slot reuses. A
//! worker stores the digest in the slot's mailbox and writes the eventfd.
//! The main loop adds every newly registered fd (`changed_fds`) to an epoll
//! set, waits, and resumes the jobs whose fds are readable; a resumed job
//! reads its eventfd and, on a spurious wake-up (nothing to read), pauses
//! again — as QAT's engine does.
//!
//! Afterwards the same requests are hashed synchronously on the main
//! thread, which times the synchronous alternative and verifies every
//! offloaded result. The summary shows both rates, the pauses per
//! operation and the main thread's CPU time per operation. The exit status
//! is non-zero if any result is wrong.
//!
//! ```text
//! cargo run --release --example offload
//! cargo run --release --example offload -- --jobs 16 --requests 100000 --workers 2 --size 16384
//! ```
//!
//! Where jobs cannot run (`stackjob::is_capable()` is false) the program
//! says so and does the work synchronously. Linux only (eventfd, epoll).

#[cfg(target_os = "linux")]
fn main() {
    demo::main();
}

#[cfg(not(target_os = "linux"))]
fn main() {
    eprintln!("offload: this example needs Linux (eventfd and epoll)");
}

#[cfg(target_os = "linux")]
mod demo {
    use sha2::{Digest, Sha256};
    use stackjob::{Error, Job, RawFd, Step, WaitCtx, WaitKey};
    use std::cell::Cell;
    use std::io::{self, IsTerminal, Write};
    use std::process;
    use std::rc::Rc;
    use std::sync::mpsc::{self, Sender};
    use std::sync::{Arc, Mutex};
    use std::thread;
    use std::time::{Duration, Instant};

    type Digest256 = [u8; 32];

    /// What a job returns: its request's digest, or why it has none.
    type Outcome = Result<Digest256, String>;

    const USAGE: &str = "usage: offload [--jobs N] [--requests M] [--workers W] [--size BYTES]
  --jobs N        jobs in flight on the main thread (default 64)
  --requests M    SHA-256 requests to run (default 100000)
  --workers W     accelerator worker threads (default 2)
  --size BYTES    payload bytes per request (default 4096)";

    /// The key our "engine" registers its eventfd under in each WaitCtx
    /// (the address of something the engine owns, as in OpenSSL).
    static ENGINE_KEY: u8 = 0;

    /// A progress line at most this often.
    const PROGRESS_EVERY: Duration = Duration::from_millis(500);

    /// Give up if no request completes for this long (a lost wake-up).
    const STALL_LIMIT: Duration = Duration::from_secs(30);

    thread_local! {
        /// Resumes that found nothing in the eventfd (the job paused again).
        static SPURIOUS: Cell<u64> = const { Cell::new(0) };
        /// Eventfds the jobs created (one per job slot, then reused).
        static EVENTFDS: Cell<u64> = const { Cell::new(0) };
    }

    struct Args {
        jobs: usize,
        requests: u64,
        workers: usize,
        size: usize,
    }

    fn parse_args() -> Args {
        let mut args = Args { jobs: 64, requests: 100_000, workers: 2, size: 4096 };
        let mut it = std::env::args().skip(1);
        while let Some(arg) = it.next() {
            let (flag, inline) = match arg.split_once('=') {
                Some((flag, value)) => (flag.to_owned(), Some(value.to_owned())),
                None => (arg.clone(), None),
            };
            if flag == "-h" || flag == "--help" {
                println!("{USAGE}");
                process::exit(0);
            }
            if !["--jobs", "--requests", "--workers", "--size"].contains(&flag.as_str()) {
                usage_error(&format!("unknown argument {arg:?}"));
            }
            let Some(value) = inline.or_else(|| it.next()) else {
                usage_error(&format!("{flag} needs a value"));
            };
            let number = || -> u64 {
                value.parse().unwrap_or_else(|_| usage_error(&format!("{flag}: {value:?} is not a number")))
            };
            let positive = || -> usize {
                match number() {
                    0 => usage_error(&format!("{flag} must be at least 1")),
                    n => usize::try_from(n).unwrap_or_else(|_| usage_error(&format!("{flag}: {n} is too large"))),
                }
            };
            match flag.as_str() {
                "--jobs" => args.jobs = positive(),
                "--requests" => args.requests = positive() as u64,
                "--workers" => args.workers = positive(),
                "--size" => {
                    args.size = usize::try_from(number()).unwrap_or_else(|_| usage_error("--size is too large"))
                }
                _ => unreachable!("checked above"),
            }
        }
        args
    }

    fn usage_error(msg: &str) -> ! {
        eprintln!("offload: {msg}\n{USAGE}");
        process::exit(2);
    }

    /// The request payloads: a fixed pseudo-random block with the request
    /// number written over its first bytes, so every request hashes
    /// different data.
    struct Payloads {
        base: Vec<u8>,
    }

    impl Payloads {
        fn new(size: usize) -> Payloads {
            let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
            let base = (0..size)
                .map(|_| {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    x as u8
                })
                .collect();
            Payloads { base }
        }

        fn get(&self, request: u64) -> Vec<u8> {
            let mut data = self.base.clone();
            let n = data.len().min(8);
            data[..n].copy_from_slice(&request.to_le_bytes()[..n]);
            data
        }
    }

    fn sha256(data: &[u8]) -> Digest256 {
        Sha256::digest(data).into()
    }

    /// Where a worker leaves a job's result; one per job slot.
    #[derive(Default)]
    struct Mailbox {
        digest: Mutex<Option<Digest256>>,
    }

    impl Mailbox {
        fn put(&self, digest: Digest256) {
            *self.digest.lock().unwrap_or_else(|e| e.into_inner()) = Some(digest);
        }

        fn take(&self) -> Option<Digest256> {
            self.digest.lock().unwrap_or_else(|e| e.into_inner()).take()
        }
    }

    /// One unit of work for the accelerator.
    struct Request {
        payload: Vec<u8>,
        mailbox: Arc<Mailbox>,
        eventfd: RawFd,
    }

    /// The accelerator: worker threads, each with its own queue.
    struct Accelerator {
        queues: Vec<Sender<Request>>,
        workers: Vec<thread::JoinHandle<()>>,
    }

    impl Accelerator {
        fn new(workers: usize) -> Accelerator {
            let mut queues = Vec::with_capacity(workers);
            let mut handles = Vec::with_capacity(workers);
            for i in 0..workers {
                let (tx, rx) = mpsc::channel::<Request>();
                queues.push(tx);
                let handle = thread::Builder::new()
                    .name(format!("accel-{i}"))
                    .spawn(move || {
                        for req in rx {
                            req.mailbox.put(sha256(&req.payload));
                            signal(req.eventfd);
                        }
                    })
                    .unwrap_or_else(|e| fail("spawning an accelerator worker", e));
                handles.push(handle);
            }
            Accelerator { queues, workers: handles }
        }

        /// Closes the queues and waits for the workers to drain them.
        fn shut_down(self) {
            drop(self.queues);
            for w in self.workers {
                if w.join().is_err() {
                    fail("an accelerator worker", "it panicked");
                }
            }
        }
    }

    /// Adds 1 to an eventfd (the worker's "done" interrupt).
    fn signal(fd: RawFd) {
        let one: u64 = 1;
        // SAFETY: writes 8 readable bytes to an fd the job's WaitCtx keeps
        // open until the job (which waits for this write) has finished.
        let n = unsafe { libc::write(fd, (&raw const one).cast(), 8) };
        if n != 8 {
            fail("write (eventfd)", io::Error::last_os_error());
        }
    }

    /// What every job of a run shares (jobs stay on the main thread, so `Rc`).
    struct Shared {
        payloads: Payloads,
        queues: Vec<Sender<Request>>,
    }

    /// The job: submit request `request` to the accelerator and wait for it.
    fn offload_job(shared: Rc<Shared>, queue: usize, mailbox: Arc<Mailbox>, request: u64) -> Outcome {
        let ctx = stackjob::current_wait_ctx().ok_or("the job has no wait context")?;
        let eventfd = engine_eventfd(&ctx)?;
        let payload = shared.payloads.get(request);
        let req = Request { payload, mailbox: mailbox.clone(), eventfd };
        shared.queues[queue].send(req).map_err(|_| "the accelerator is gone".to_owned())?;
        drop(shared);
        loop {
            stackjob::pause();
            if consume(eventfd)?
                && let Some(digest) = mailbox.take()
            {
                return Ok(digest);
            }
            SPURIOUS.with(|s| s.set(s.get() + 1));
        }
    }

    /// The engine's eventfd in `ctx`: created and registered by the first
    /// job that runs with this context, reused by every later one (QAT's
    /// `qat_setup_async_event_notification`). The context's cleanup closes it.
    fn engine_eventfd(ctx: &WaitCtx) -> Result<RawFd, String> {
        let key = WaitKey::of(&ENGINE_KEY);
        if let Some((fd, _)) = ctx.get_fd(key) {
            return Ok(fd);
        }
        // SAFETY: eventfd has no memory arguments; the result is checked.
        let fd = unsafe { libc::eventfd(0, libc::EFD_NONBLOCK | libc::EFD_CLOEXEC) };
        if fd < 0 {
            return Err(format!("eventfd: {}", io::Error::last_os_error()));
        }
        ctx.set_wait_fd(
            key,
            fd,
            0,
            Some(Box::new(|_key, fd, _data| {
                // SAFETY: `fd` is the eventfd created above, closed only here,
                // after the last job and worker that used it are done.
                unsafe { libc::close(fd) };
            })),
        );
        EVENTFDS.with(|n| n.set(n.get() + 1));
        Ok(fd)
    }

    /// Reads the eventfd: `true` if the worker signalled, `false` if there
    /// was nothing to read (a spurious wake-up).
    fn consume(fd: RawFd) -> Result<bool, String> {
        let mut count: u64 = 0;
        loop {
            // SAFETY: reads 8 bytes into `count`, from an open eventfd.
            let n = unsafe { libc::read(fd, (&raw mut count).cast(), 8) };
            if n == 8 {
                return Ok(true);
            }
            let err = io::Error::last_os_error();
            match err.kind() {
                io::ErrorKind::WouldBlock => return Ok(false),
                io::ErrorKind::Interrupted => continue,
                _ => return Err(format!("read (eventfd): {err}")),
            }
        }
    }

    /// One job slot: a wait context reused by every job the slot runs.
    struct Slot {
        ctx: WaitCtx,
        mailbox: Arc<Mailbox>,
        job: Option<Job<Outcome>>,
        request: u64,
    }

    /// Counters of the offloaded run.
    #[derive(Default)]
    struct Stats {
        done: u64,
        pauses: u64,
        /// epoll_wait calls that returned ready fds, and how many in all.
        waits: u64,
        ready_sum: u64,
        /// Requests done synchronously because `start` had no job (NoJobs).
        sync_fallbacks: u64,
        failures: u64,
    }

    /// The epoll set the main loop waits on.
    struct Epoll(RawFd);

    impl Epoll {
        fn new() -> Epoll {
            // SAFETY: no memory arguments; the result is checked.
            let fd = unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) };
            if fd < 0 {
                fail("epoll_create1", io::Error::last_os_error());
            }
            Epoll(fd)
        }

        fn ctl(&self, op: libc::c_int, fd: RawFd, slot: usize) {
            let mut ev = libc::epoll_event { events: libc::EPOLLIN as u32, u64: slot as u64 };
            // SAFETY: `ev` is a valid epoll_event; both fds are open.
            if unsafe { libc::epoll_ctl(self.0, op, fd, &mut ev) } != 0 {
                fail("epoll_ctl", io::Error::last_os_error());
            }
        }

        /// Waits up to `timeout` for ready fds; returns how many events it
        /// stored in `events` (their data is the slot index).
        fn wait(&self, events: &mut [libc::epoll_event], timeout: Duration) -> usize {
            let ms = timeout.as_millis().clamp(1, 1000) as libc::c_int;
            let max = events.len().min(libc::c_int::MAX as usize) as libc::c_int;
            // SAFETY: `events` has room for `max` entries.
            let n = unsafe { libc::epoll_wait(self.0, events.as_mut_ptr(), max, ms) };
            if n < 0 {
                let err = io::Error::last_os_error();
                if err.kind() == io::ErrorKind::Interrupted {
                    return 0;
                }
                fail("epoll_wait", err);
            }
            n as usize
        }
    }

    impl Drop for Epoll {
        fn drop(&mut self) {
            // SAFETY: our epoll fd, closed once.
            unsafe { libc::close(self.0) };
        }
    }

    /// Prints a progress line on stderr every [`PROGRESS_EVERY`].
    struct Progress {
        tty: bool,
        started: Instant,
        next: Instant,
        printed: bool,
    }

    impl Progress {
        fn new() -> Progress {
            let now = Instant::now();
            Progress { tty: io::stderr().is_terminal(), started: now, next: now + PROGRESS_EVERY, printed: false }
        }

        fn tick(&mut self, what: &str, done: u64, total: u64) {
            let now = Instant::now();
            if now < self.next {
                return;
            }
            self.next = now + PROGRESS_EVERY;
            let secs = now.duration_since(self.started).as_secs_f64();
            let line = format!("offload: {what}: {done}/{total} done, {:.0} ops/s", done as f64 / secs);
            let mut err = io::stderr().lock();
            let _ = if self.tty { write!(err, "\r{line:<72}") } else { writeln!(err, "{line}") };
            let _ = err.flush();
            self.printed = true;
        }

        fn until_next(&self) -> Duration {
            self.next.saturating_duration_since(Instant::now())
        }

        fn finish(self) {
            if self.tty && self.printed {
                eprint!("\r{:72}\r", "");
            }
        }
    }

    /// The main thread's CPU time (user + system) so far.
    fn thread_cpu() -> Duration {
        // SAFETY: an all-zero rusage is a valid value for getrusage to fill.
        let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
        // SAFETY: `ru` is a writable rusage.
        if unsafe { libc::getrusage(libc::RUSAGE_THREAD, &mut ru) } != 0 {
            return Duration::ZERO;
        }
        let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
        tv(ru.ru_utime) + tv(ru.ru_stime)
    }

    /// Runs every request as a job; `results[i]` gets request i's digest.
    /// `Err` if jobs cannot run here at all.
    fn run_offloaded(args: &Args, payloads: Payloads, results: &mut [Option<Digest256>]) -> Result<Stats, Error> {
        if !stackjob::is_capable() {
            return Err(stackjob::start(None, || ()).err().unwrap_or(Error::NotCapable { reason: "unknown" }));
        }
        let slot_count = args.jobs.min(usize::try_from(args.requests).unwrap_or(usize::MAX));
        // A pool with exactly one stack per slot, made up front.
        stackjob::init_thread(slot_count, slot_count)?;
        let accel = Accelerator::new(args.workers);
        let shared = Rc::new(Shared { payloads, queues: accel.queues.clone() });
        let mut slots: Vec<Slot> = (0..slot_count)
            .map(|_| Slot { ctx: WaitCtx::new(), mailbox: Arc::default(), job: None, request: 0 })
            .collect();
        let epoll = Epoll::new();
        let mut events = vec![libc::epoll_event { events: 0, u64: 0 }; slot_count.max(1)];
        let mut stats = Stats::default();
        let mut next_request = 0u64;
        let mut progress = Progress::new();
        let mut last_done = Instant::now();

        // Starts the slot's next request, or leaves the slot empty when
        // none is left. Every outcome goes through `settle`.
        let mut start_next =
            |slot_index: usize, slots: &mut [Slot], stats: &mut Stats, results: &mut [Option<Digest256>]| {
                while next_request < args.requests {
                    let request = next_request;
                    next_request += 1;
                    let slot = &mut slots[slot_index];
                    slot.request = request;
                    let (job_shared, mailbox) = (shared.clone(), slot.mailbox.clone());
                    let queue = slot_index % args.workers;
                    match stackjob::start(Some(&slot.ctx), move || offload_job(job_shared, queue, mailbox, request)) {
                        Ok(step) => {
                            if settle(slot_index, slots, step, &epoll, stats, results) {
                                return;
                            }
                        }
                        Err(Error::NoJobs { .. } | Error::NotCapable { .. }) => {
                            // No job to run it in: do this request synchronously.
                            results[request as usize] = Some(sha256(&shared.payloads.get(request)));
                            stats.sync_fallbacks += 1;
                            stats.done += 1;
                        }
                        Err(e) => fail("stackjob::start", e),
                    }
                }
            };

        for i in 0..slot_count {
            start_next(i, &mut slots, &mut stats, results);
        }
        while stats.done < args.requests {
            let n = epoll.wait(&mut events, progress.until_next());
            if n > 0 {
                stats.waits += 1;
                stats.ready_sum += n as u64;
            }
            for ev in &events[..n] {
                let i = ev.u64 as usize;
                let Some(job) = slots[i].job.take() else { continue };
                let step = job.resume().unwrap_or_else(|e| fail("Job::resume", e));
                if !settle(i, &mut slots, step, &epoll, &mut stats, results) {
                    last_done = Instant::now();
                    start_next(i, &mut slots, &mut stats, results);
                }
            }
            progress.tick("offloaded", stats.done, args.requests);
            if last_done.elapsed() > STALL_LIMIT {
                fail("the main loop", format_args!("no request completed for {STALL_LIMIT:?} (a lost wake-up)"));
            }
        }
        progress.finish();

        drop(shared);
        accel.shut_down();
        // The slots' wait contexts go last: their cleanups close the eventfds.
        drop(slots);
        stackjob::cleanup_thread();
        Ok(stats)
    }

    /// Files a step of slot `i`'s job: a paused job waits in its slot (its
    /// newly registered fds join the epoll set); a finished one leaves its
    /// result. Returns whether the job is paused.
    fn settle(
        i: usize,
        slots: &mut [Slot],
        step: Step<Outcome>,
        epoll: &Epoll,
        stats: &mut Stats,
        results: &mut [Option<Digest256>],
    ) -> bool {
        let slot = &mut slots[i];
        match step {
            Step::Paused(job) => {
                stats.pauses += 1;
                let changed = slot.ctx.changed_fds();
                for fd in changed.added {
                    epoll.ctl(libc::EPOLL_CTL_ADD, fd, i);
                }
                for fd in changed.deleted {
                    epoll.ctl(libc::EPOLL_CTL_DEL, fd, i);
                }
                slot.job = Some(job);
                true
            }
            Step::Finished(outcome) => {
                stats.done += 1;
                match outcome {
                    Ok(digest) => results[slot.request as usize] = Some(digest),
                    Err(why) => {
                        stats.failures += 1;
                        eprintln!("offload: request {} failed: {why}", slot.request);
                    }
                }
                false
            }
        }
    }

    pub fn main() {
        let args = parse_args();
        let requests = usize::try_from(args.requests).unwrap_or_else(|_| usage_error("--requests is too large"));
        println!(
            "offload: {} SHA-256 requests of {} bytes, {} jobs in flight, {} accelerator workers (stackjob backend {})",
            args.requests,
            args.size,
            args.jobs,
            args.workers,
            stackjob::backend()
        );

        let mut results: Vec<Option<Digest256>> = vec![None; requests];
        let cpu0 = thread_cpu();
        let t0 = Instant::now();
        let offloaded = run_offloaded(&args, Payloads::new(args.size), &mut results);
        let elapsed = t0.elapsed();
        let cpu = thread_cpu().saturating_sub(cpu0);
        match &offloaded {
            Ok(stats) => {
                println!(
                    "offloaded:   {:>10.0} ops/s  ({} ops in {:.3} s; main thread CPU {:.2} µs/op)",
                    rate(args.requests, elapsed),
                    args.requests,
                    elapsed.as_secs_f64(),
                    per_op_us(cpu, args.requests)
                );
                println!(
                    "             {} jobs in flight, {:.2} pauses per op ({} spurious wake-ups), \
                     {:.1} jobs ready per epoll_wait, {} eventfds (one per job slot)",
                    args.jobs.min(requests),
                    stats.pauses as f64 / args.requests.max(1) as f64,
                    SPURIOUS.with(Cell::get),
                    stats.ready_sum as f64 / stats.waits.max(1) as f64,
                    EVENTFDS.with(Cell::get)
                );
                if stats.sync_fallbacks > 0 {
                    println!(
                        "             {} requests ran synchronously: no job was free (NoJobs)",
                        stats.sync_fallbacks
                    );
                }
            }
            Err(e) => {
                println!("offload: jobs are not supported here ({e}); running synchronously");
                let payloads = Payloads::new(args.size);
                for (i, r) in results.iter_mut().enumerate() {
                    *r = Some(sha256(&payloads.get(i as u64)));
                }
            }
        }

        // The synchronous run: the same requests on the main thread, each
        // checked against the offloaded result.
        let payloads = Payloads::new(args.size);
        let mut wrong = 0u64;
        let mut progress = Progress::new();
        let cpu0 = thread_cpu();
        let t0 = Instant::now();
        for (i, result) in results.iter().enumerate() {
            let digest = sha256(&payloads.get(i as u64));
            if *result != Some(digest) {
                if wrong < 5 {
                    eprintln!("offload: request {i}: wrong or missing result {:?}", result.map(hex));
                }
                wrong += 1;
            }
            if i % 1024 == 0 {
                progress.tick("synchronous", i as u64, args.requests);
            }
        }
        let elapsed_sync = t0.elapsed();
        let cpu_sync = thread_cpu().saturating_sub(cpu0);
        progress.finish();
        println!(
            "synchronous: {:>10.0} ops/s  ({} ops in {:.3} s; main thread CPU {:.2} µs/op)",
            rate(args.requests, elapsed_sync),
            args.requests,
            elapsed_sync.as_secs_f64(),
            per_op_us(cpu_sync, args.requests)
        );
        if offloaded.is_ok() {
            println!(
                "offloaded/synchronous throughput: {:.2}x",
                rate(args.requests, elapsed) / rate(args.requests, elapsed_sync).max(f64::MIN_POSITIVE)
            );
        }
        let failures = offloaded.as_ref().map_or(0, |s| s.failures);
        if wrong == 0 && failures == 0 {
            println!("verified: all {} results match", args.requests);
        } else {
            println!("verification FAILED: {wrong} of {} results wrong or missing", args.requests);
            process::exit(1);
        }
    }

    fn rate(ops: u64, t: Duration) -> f64 {
        ops as f64 / t.as_secs_f64().max(1e-9)
    }

    fn per_op_us(t: Duration, ops: u64) -> f64 {
        t.as_secs_f64() * 1e6 / ops.max(1) as f64
    }

    fn hex(d: Digest256) -> String {
        d.iter().map(|b| format!("{b:02x}")).collect()
    }

    fn fail(what: &str, why: impl std::fmt::Display) -> ! {
        eprintln!("offload: {what} failed: {why}");
        process::exit(1);
    }
}
