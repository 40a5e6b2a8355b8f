//! Offloading work to a (simulated) crypto accelerator with stackjob: the
//! pattern OpenSSL's async mode and engines like Intel QAT use.
//!
//! The "accelerator" models a device: separate hardware with a latency per
//! request (`--latency`, default 20 µs, about what a PCIe crypto card
//! takes) and a capacity of its own (`--capacity` requests in service at
//! once; more wait in its queue). Its engines are worker threads that
//! compute the real SHA-256 (`--workers`, default 1), and a completion
//! thread that sleeps until each request's latency has passed (timer slack
//! 1 ns) and then delivers it: the device never spins and never runs on
//! the main thread. The main thread keeps `--jobs` jobs
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
//! One run compares, on the same device and payloads: **blocking** offload
//! (the main thread submits one request and sleeps until it completes: one
//! in flight), **jobs** with `--jobs` in flight (the epoll loop above),
//! with the feature `tokio` the same jobs through **stackjob::tokio** (a
//! current-thread runtime, one task per job slot, each reusing its
//! `JobDriver`), and **inline** hashing on the main thread's CPU, which
//! also verifies every result. Each line gives ops/s and the main
//! thread's CPU time per op (`getrusage(RUSAGE_THREAD)`); the summary
//! names the winner on each. The exit status is non-zero if any result is
//! wrong.
//!
//! ```text
//! cargo run --release --example offload
//! cargo run --release --example offload -- --jobs 16 --requests 100000 --workers 2 --size 16384
//! cargo run --release --example offload -- --latency 100 --capacity 32
//! cargo run --release --example offload --features tokio   # adds the tokio bridge, side by side
//! ```
//!
//! Before any work starts the flags are checked against fixed limits
//! (`--help` lists them) and `--jobs` against what the process can get: an
//! eventfd per job within `RLIMIT_NOFILE` (`ulimit -n`), and two memory
//! mappings per job stack (the stack and its guard page) within
//! `vm.max_map_count`. A request that does not fit is refused with the
//! limit, the cause and the fix, with exit status 2; a resource that still
//! runs out during the run (a job stack that cannot be mapped, a worker
//! thread that cannot start) ends the demo with the cause and exit status 1.
//! `OFFLOAD_MAX_MAP_COUNT=N` makes the mapping check use N in place of
//! `/proc/sys/vm/max_map_count`, to see the check without changing the
//! sysctl (tests/offload_cli.rs does that).
//!
//! Where jobs cannot run (`stackjob::is_capable()` is false) the program
//! says so and does the work synchronously; that is the only fallback.
//! Linux only (eventfd, epoll).

#[cfg(target_os = "linux")]
fn main() {
    demo::main();
}

#[cfg(not(target_os = "linux"))]
fn main() {
    eprintln!("offload: this example needs Linux (eventfd and epoll)");
    std::process::exit(1);
}

#[cfg(target_os = "linux")]
mod demo {
    use sha2::{Digest, Sha256};
    use stackjob::{Error, Job, RawFd, Step, WaitCtx, WaitKey};
    use std::cell::Cell;
    use std::ffi::OsString;
    use std::io::{self, IsTerminal, Write};
    use std::num::IntErrorKind;
    use std::process;
    use std::rc::Rc;
    use std::sync::mpsc::{self, Sender};
    use std::sync::{Arc, Mutex};
    use std::thread;
    use std::time::{Duration, Instant};

    type Digest256 = [u8; 32];

    /// What a job returns: its request's digest, or why it has none.
    type Outcome = Result<Digest256, String>;

    /// The most jobs in flight `--jobs` accepts. What the process can get
    /// (file descriptors, memory mappings) is checked separately and is
    /// usually lower.
    const MAX_JOBS: u64 = 1_000_000;
    /// The most requests: every result is kept (33 bytes) for the check.
    const MAX_REQUESTS: u64 = 10_000_000;
    /// The most accelerator worker threads.
    const MAX_WORKERS: u64 = 1024;
    /// The longest device latency, 1 s (in µs).
    const MAX_LATENCY_US: u64 = 1_000_000;
    /// The largest device capacity.
    const MAX_CAPACITY: u64 = 1_000_000;
    /// The blocking run does at most this many of the requests: one at a
    /// time, each costs the full latency.
    const BLOCKING_MAX: u64 = 5000;
    /// The largest payload, 16 MiB.
    const MAX_SIZE: u64 = 16 << 20;
    /// The most payload bytes in flight at once (jobs in flight × size), 1 GiB:
    /// every job in flight holds a copy of its payload.
    const MAX_IN_FLIGHT_BYTES: u64 = 1 << 30;

    const USAGE: &str =
        "usage: offload [--jobs N] [--requests M] [--workers W] [--size BYTES] [--latency US] [--capacity C]
  --jobs N        jobs in flight on the main thread (default 64, at most 1000000)
  --requests M    SHA-256 requests to run (default 100000, at most 10000000)
  --workers W     accelerator worker threads computing the digests (default 1, at most 1024)
  --size BYTES    payload bytes per request (default 4096, at most 16777216 = 16 MiB)
  --latency US    the device's latency per request in microseconds (default 20, at most 1000000)
  --capacity C    requests the device serves at once; more wait in its queue (default 64, at most 1000000)
--jobs × --size is at most 1 GiB. Each job also needs an eventfd (see ulimit -n)
and two memory mappings (see vm.max_map_count); both are checked before the run.
OFFLOAD_MAX_MAP_COUNT=N checks the mappings against N instead of the sysctl.";

    /// The variable that replaces `/proc/sys/vm/max_map_count` in the check.
    const MAP_COUNT_ENV: &str = "OFFLOAD_MAX_MAP_COUNT";

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

    /// A line on stdout. A failed write (a closed pipe) ends the demo with
    /// a message rather than a panic.
    macro_rules! say {
        ($($arg:tt)*) => {{
            let mut out = io::stdout().lock();
            if let Err(e) = writeln!(out, $($arg)*) {
                drop(out);
                fail("writing to stdout", e);
            }
        }};
    }

    /// A line on stderr; if even that cannot be written, nothing is left to tell.
    fn warn(msg: impl std::fmt::Display) {
        let _ = writeln!(io::stderr().lock(), "offload: {msg}");
    }

    struct Args {
        jobs: usize,
        requests: u64,
        workers: usize,
        size: usize,
        latency: Duration,
        capacity: usize,
    }

    /// A numeric flag: its range and why its limit is what it is.
    struct Flag {
        name: &'static str,
        min: u64,
        max: u64,
        why: &'static str,
    }

    const FLAGS: [Flag; 6] = [
        Flag {
            name: "--jobs",
            min: 1,
            max: MAX_JOBS,
            why: "each job in flight holds a stack, two memory mappings and an eventfd",
        },
        Flag {
            name: "--requests",
            min: 1,
            max: MAX_REQUESTS,
            why: "every result is kept in memory for the verification",
        },
        Flag { name: "--workers", min: 1, max: MAX_WORKERS, why: "each worker is a thread with its own stack" },
        Flag { name: "--size", min: 0, max: MAX_SIZE, why: "16 MiB; every job in flight holds a copy of its payload" },
        Flag { name: "--latency", min: 0, max: MAX_LATENCY_US, why: "1 s; the blocking run waits it out per request" },
        Flag {
            name: "--capacity",
            min: 1,
            max: MAX_CAPACITY,
            why: "the device keeps a due time per request in service",
        },
    ];

    impl Flag {
        /// `value` as this flag's number, or a usage error that names the
        /// flag and its range.
        fn parse(&self, value: &str) -> u64 {
            let Flag { name, min, max, why } = self;
            let too_large = || usage_error(&format!("{name} {value} is too large: the limit is {max} ({why})"));
            match value.parse::<u64>() {
                Ok(n) if n < *min => usage_error(&format!("{name} must be at least {min}")),
                Ok(n) if n > *max => too_large(),
                Ok(n) => n,
                Err(e) if *e.kind() == IntErrorKind::PosOverflow => too_large(),
                Err(e) if *e.kind() == IntErrorKind::Empty => usage_error(&format!("{name} needs a value")),
                Err(_) => usage_error(&format!(
                    "{name}: {value:?} is not a number (expected a whole number from {min} to {max})"
                )),
            }
        }
    }

    fn parse_args() -> Args {
        let mut args = Args {
            jobs: 64,
            requests: 100_000,
            workers: 1,
            size: 4096,
            latency: Duration::from_micros(20),
            capacity: 64,
        };
        let utf8 = |arg: OsString| {
            arg.into_string().unwrap_or_else(|arg| usage_error(&format!("argument {arg:?} is not valid UTF-8")))
        };
        let mut it = std::env::args_os().skip(1).map(utf8);
        while let Some(arg) = it.next() {
            let (name, inline) = match arg.split_once('=') {
                Some((name, value)) => (name.to_owned(), Some(value.to_owned())),
                None => (arg.clone(), None),
            };
            if name == "-h" || name == "--help" {
                say!("{USAGE}");
                process::exit(0);
            }
            let Some(flag) = FLAGS.iter().find(|f| f.name == name) else {
                usage_error(&format!("unknown argument {arg:?}"));
            };
            let Some(value) = inline.or_else(|| it.next()) else {
                usage_error(&format!("{name} needs a value"));
            };
            // Every limit is far below usize::MAX on the 64-bit targets jobs
            // run on; on a 32-bit target a value above usize::MAX is refused.
            let n = flag.parse(&value);
            let small = || usize::try_from(n).unwrap_or_else(|_| usage_error(&format!("{name} {n} is too large here")));
            match flag.name {
                "--jobs" => args.jobs = small(),
                "--requests" => args.requests = n,
                "--workers" => args.workers = small(),
                "--size" => args.size = small(),
                "--latency" => args.latency = Duration::from_micros(n),
                "--capacity" => args.capacity = small(),
                _ => unreachable!("FLAGS has no other names"),
            }
        }
        args
    }

    fn usage_error(msg: &str) -> ! {
        warn(format_args!("{msg}\n{USAGE}"));
        process::exit(2);
    }

    /// A request that cannot fit what the process may use: refused before
    /// any work starts.
    fn refuse(msg: impl std::fmt::Display) -> ! {
        warn(msg);
        process::exit(2);
    }

    /// What the run will do, once the flags have been checked against the
    /// limits of this process.
    struct Plan {
        /// Jobs in flight: `--jobs`, or fewer when there are fewer requests.
        slots: usize,
        /// Accelerator workers: `--workers`, or one per job in flight if that
        /// is fewer (a worker serves the jobs of its own queue only).
        workers: usize,
        /// `Some(why)` when jobs cannot run here and everything runs synchronously.
        not_capable: Option<Error>,
    }

    impl Plan {
        fn new(args: &Args) -> Plan {
            let not_capable = if stackjob::is_capable() {
                None
            } else {
                Some(stackjob::start(None, || ()).err().unwrap_or(Error::NotCapable { reason: "unknown" }))
            };
            let slots = args.jobs.min(usize::try_from(args.requests).unwrap_or(usize::MAX));
            let plan = Plan { slots, workers: args.workers.min(slots), not_capable };
            if plan.not_capable.is_none() {
                plan.check_payload_memory(args);
                plan.check_fds(args);
                plan.check_mappings(args);
            }
            plan
        }

        /// "--jobs N", with how many are in flight when fewer.
        fn jobs_flag(&self, args: &Args) -> String {
            if self.slots == args.jobs {
                format!("--jobs {}", args.jobs)
            } else {
                format!("--jobs {} ({} in flight for --requests {})", args.jobs, self.slots, args.requests)
            }
        }

        fn check_payload_memory(&self, args: &Args) {
            let bytes = self.slots as u64 * args.size as u64;
            if bytes > MAX_IN_FLIGHT_BYTES {
                refuse(format_args!(
                    "--size {} with {} holds {} MiB of payloads in flight (a copy per job); the limit is {} MiB: \
                     use a smaller --size or --jobs {} or fewer",
                    args.size,
                    self.jobs_flag(args),
                    bytes >> 20,
                    MAX_IN_FLIGHT_BYTES >> 20,
                    MAX_IN_FLIGHT_BYTES / args.size as u64
                ));
            }
        }

        /// Each job slot creates an eventfd; the main loop adds an epoll fd.
        fn check_fds(&self, args: &Args) {
            let Some((soft, hard)) = nofile_limit() else { return };
            let open = open_fds();
            // With the tokio run, each eventfd is also duplicated for tokio's
            // reactor, which has an epoll fd and an eventfd of its own.
            let per_job = 1 + u64::from(cfg!(feature = "tokio"));
            let need = open + per_job * self.slots as u64 + 1 + 2 * u64::from(cfg!(feature = "tokio")) + FD_HEADROOM;
            if need <= soft {
                return;
            }
            let fit = soft.saturating_sub(open + 1 + 2 * u64::from(cfg!(feature = "tokio")) + FD_HEADROOM) / per_job;
            let raise = if need <= hard {
                format!("raise it with ulimit -n {need}")
            } else {
                format!(
                    "raise it with ulimit -n {need} after raising the hard limit ({hard}) as root, \
                     e.g. in /etc/security/limits.conf"
                )
            };
            refuse(format_args!(
                "{} needs {need} open files (an eventfd per job in flight, 1 for epoll, {open} open already, \
                 {FD_HEADROOM} spare), but RLIMIT_NOFILE (ulimit -n) is {soft}: {raise}, or {}",
                self.jobs_flag(args),
                fewer_jobs(fit)
            ));
        }

        /// Each job stack is two mappings (the stack and its guard page); the
        /// worker threads, large payloads and the rest of the process need some too.
        fn check_mappings(&self, args: &Args) {
            let Some((max, source)) = max_map_count() else { return };
            let Some(now) = mappings_now() else { return };
            let per_job = 2 + u64::from(args.size >= MALLOC_MMAP_THRESHOLD);
            // The workers and the device's completion thread.
            let workers = MAPS_PER_WORKER * (self.workers as u64 + 1);
            let others = now + workers + MAP_HEADROOM;
            let need = others + per_job * self.slots as u64;
            if need <= max {
                return;
            }
            let payloads = if per_job > 2 { " and 1 for its payload buffer" } else { "" };
            refuse(format_args!(
                "{} needs about {need} memory mappings (2 per job stack: the stack and its guard page{payloads}; \
                 {workers} for {} worker threads; {now} in use now; {MAP_HEADROOM} spare), but vm.max_map_count \
                 is {max}{source}: raise it (sysctl -w vm.max_map_count={need}, as root) or {}",
                self.jobs_flag(args),
                self.workers,
                fewer_jobs(max.saturating_sub(others + SUGGESTION_SLACK) / per_job)
            ));
        }
    }

    /// The fix that is fewer jobs, or that there is none.
    fn fewer_jobs(fit: u64) -> String {
        match fit {
            0 => "free some (not even --jobs 1 fits)".to_owned(),
            n => format!("use --jobs {n} or fewer"),
        }
    }

    /// File descriptors kept spare beyond the eventfds and the epoll fd.
    const FD_HEADROOM: u64 = 16;
    /// Mappings kept spare beyond the job stacks and the workers: the
    /// allocator, the results, the main thread's signal stack, the emulator
    /// under qemu-user.
    const MAP_HEADROOM: u64 = 256;
    /// Mappings the suggested smaller `--jobs` leaves unused: what a process
    /// holds at start varies from run to run (AddressSanitizer, thread
    /// arenas, the tokio runtime's threads), and the suggestion must still
    /// fit when the same command is run again with it.
    const SUGGESTION_SLACK: u64 = 32;
    /// A worker thread's mappings: its stack and guard page, its signal
    /// stack and guard page, an allocator arena (heap and reserve).
    const MAPS_PER_WORKER: u64 = 6;
    /// glibc's default `M_MMAP_THRESHOLD`: a payload at least this large is
    /// a mapping of its own.
    const MALLOC_MMAP_THRESHOLD: usize = 128 << 10;

    /// RLIMIT_NOFILE's soft and hard limits, unless unlimited or unknown.
    fn nofile_limit() -> Option<(u64, u64)> {
        let mut rl = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
        // SAFETY: `rl` is a writable rlimit.
        if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut rl) } != 0 || rl.rlim_cur == libc::RLIM_INFINITY {
            return None;
        }
        #[allow(clippy::unnecessary_cast)] // rlim_t is u32 on some 32-bit targets
        Some((rl.rlim_cur as u64, rl.rlim_max as u64))
    }

    /// File descriptors open now (`/proc/self/fd`, less the one reading
    /// it); 3 (stdin, stdout, stderr) if that cannot be read.
    fn open_fds() -> u64 {
        std::fs::read_dir("/proc/self/fd").map_or(3, |dir| dir.count().saturating_sub(1) as u64)
    }

    /// The mapping limit and where it came from: `OFFLOAD_MAX_MAP_COUNT`
    /// if set, else `/proc/sys/vm/max_map_count` if readable.
    fn max_map_count() -> Option<(u64, String)> {
        if let Some(value) = std::env::var_os(MAP_COUNT_ENV) {
            let n = value.to_str().and_then(|v| v.trim().parse().ok()).unwrap_or_else(|| {
                usage_error(&format!("{MAP_COUNT_ENV}={value:?} is not a number (a mapping count, e.g. 65530)"))
            });
            return Some((n, format!(" (from {MAP_COUNT_ENV}, in place of /proc/sys/vm/max_map_count)")));
        }
        let text = std::fs::read_to_string("/proc/sys/vm/max_map_count").ok()?;
        Some((text.trim().parse().ok()?, String::new()))
    }

    /// Mappings the process has now (lines of `/proc/self/maps`).
    fn mappings_now() -> Option<u64> {
        let maps = std::fs::read("/proc/self/maps").ok()?;
        Some(maps.iter().filter(|&&b| b == b'\n').count() as u64)
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
        submitted: Instant,
    }

    /// A computed request, waiting for its latency to pass.
    struct Completion {
        digest: Digest256,
        mailbox: Arc<Mailbox>,
        eventfd: RawFd,
        submitted: Instant,
    }

    /// The accelerator: worker threads (each with its own queue) compute
    /// the digests; the completion thread delivers each one when the
    /// device's latency has passed, with at most `capacity` requests in
    /// service at once.
    struct Accelerator {
        queues: Vec<Sender<Request>>,
        workers: Vec<thread::JoinHandle<()>>,
    }

    impl Accelerator {
        /// Starts `workers` threads and the completion thread; a thread
        /// that cannot start ends the demo with the cause (before any
        /// request is submitted).
        fn new(workers: usize, latency: Duration, capacity: usize) -> Accelerator {
            let mut queues = Vec::with_capacity(workers);
            let mut handles = Vec::with_capacity(workers + 1);
            let (done_tx, done_rx) = mpsc::channel::<Completion>();
            match thread::Builder::new().name("accel-timer".into()).spawn(move || deliver(done_rx, latency, capacity)) {
                Ok(handle) => handles.push(handle),
                Err(e) => fail("starting the accelerator's completion thread", e),
            }
            for i in 0..workers {
                let (tx, rx) = mpsc::channel::<Request>();
                queues.push(tx);
                let done = done_tx.clone();
                let spawned = thread::Builder::new().name(format!("accel-{i}")).spawn(move || {
                    for req in rx {
                        let digest = sha256(&req.payload);
                        let c =
                            Completion { digest, mailbox: req.mailbox, eventfd: req.eventfd, submitted: req.submitted };
                        if done.send(c).is_err() {
                            return;
                        }
                    }
                });
                match spawned {
                    Ok(handle) => handles.push(handle),
                    Err(e) => fail(
                        format_args!("starting accelerator worker {} of {workers}", i + 1),
                        format_args!(
                            "{e} (the thread limits, ulimit -u and /proc/sys/kernel/threads-max, \
                             or memory ran out): use fewer --workers"
                        ),
                    ),
                }
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

    /// The device's completion side: each request completes `latency` after
    /// it entered service, and enters service when it was submitted or, if
    /// `capacity` requests are in service then, when the first of them
    /// completes. Sleeps until the next completion is due (timer slack 1 ns,
    /// so a sleep of 20 µs is not 70); never spins.
    fn deliver(rx: mpsc::Receiver<Completion>, latency: Duration, capacity: usize) {
        use std::cmp::Reverse;
        use std::collections::{BinaryHeap, VecDeque};
        // SAFETY: PR_SET_TIMERSLACK takes a number; it only affects this thread.
        unsafe { libc::prctl(libc::PR_SET_TIMERSLACK, 1 as libc::c_ulong) };
        let mut in_service: VecDeque<Instant> = VecDeque::with_capacity(capacity.min(1 << 16));
        let mut due: BinaryHeap<Reverse<(Instant, u64)>> = BinaryHeap::new();
        let mut waiting: std::collections::HashMap<u64, Completion> = std::collections::HashMap::new();
        let mut seq = 0u64;
        let mut open = true;
        while open || !due.is_empty() {
            let now = Instant::now();
            while let Some(&Reverse((at, id))) = due.peek() {
                if at > now {
                    break;
                }
                due.pop();
                let c = waiting.remove(&id).expect("every due entry has its completion");
                c.mailbox.put(c.digest);
                signal(c.eventfd);
            }
            let next = match (due.peek(), open) {
                (Some(&Reverse((at, _))), true) => rx.recv_timeout(at.saturating_duration_since(Instant::now())),
                (Some(&Reverse((at, _))), false) => {
                    thread::sleep(at.saturating_duration_since(Instant::now()));
                    continue;
                }
                (None, true) => rx.recv().map_err(|_| mpsc::RecvTimeoutError::Disconnected),
                (None, false) => break,
            };
            match next {
                Ok(c) => {
                    while in_service.front().is_some_and(|&t| t <= c.submitted) {
                        in_service.pop_front();
                    }
                    let start = if in_service.len() >= capacity {
                        in_service.pop_front().map_or(c.submitted, |t| t.max(c.submitted))
                    } else {
                        c.submitted
                    };
                    let at = start + latency;
                    in_service.push_back(at);
                    due.push(Reverse((at, seq)));
                    waiting.insert(seq, c);
                    seq += 1;
                }
                Err(mpsc::RecvTimeoutError::Timeout) => {}
                Err(mpsc::RecvTimeoutError::Disconnected) => open = false,
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
        let req = Request { payload, mailbox: mailbox.clone(), eventfd, submitted: Instant::now() };
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
            let err = io::Error::last_os_error();
            let hint = match err.raw_os_error() {
                Some(libc::EMFILE | libc::ENFILE) => {
                    " (each job in flight needs one: raise ulimit -n or use fewer --jobs)"
                }
                _ => "",
            };
            return Err(format!("eventfd: {err}{hint}"));
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
    /// `Err` if the pool's stacks cannot be made (then nothing has run).
    fn run_offloaded(
        args: &Args,
        plan: &Plan,
        payloads: Payloads,
        results: &mut [Option<Digest256>],
    ) -> Result<Stats, Error> {
        let slot_count = plan.slots;
        // A pool with exactly one stack per slot, made up front.
        stackjob::init_thread(slot_count, slot_count)?;
        let accel = Accelerator::new(plan.workers, args.latency, args.capacity);
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
                    let queue = slot_index % plan.workers;
                    match stackjob::start(Some(&slot.ctx), move || offload_job(job_shared, queue, mailbox, request)) {
                        Ok(step) => {
                            if settle(slot_index, slots, step, &epoll, stats, results) {
                                return;
                            }
                        }
                        // The pool holds a stack per slot, made up front, so
                        // nothing is expected here; no request is done
                        // synchronously behind the user's back.
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
                        if stats.failures <= 5 {
                            warn(format_args!("request {} failed: {why}", slot.request));
                        }
                    }
                }
                false
            }
        }
    }

    /// One measured way of doing the requests.
    struct Row {
        name: &'static str,
        what: String,
        ops: u64,
        elapsed: Duration,
        cpu: Duration,
    }

    impl Row {
        fn rate(&self) -> f64 {
            rate(self.ops, self.elapsed)
        }
        fn cpu_us(&self) -> f64 {
            per_op_us(self.cpu, self.ops)
        }
        fn print(&self) {
            say!(
                "{:<12} {:>10.0} ops/s  ({} ops in {:.3} s; main thread CPU {:.2} µs/op)  {}",
                format!("{}:", self.name),
                self.rate(),
                self.ops,
                self.elapsed.as_secs_f64(),
                self.cpu_us(),
                self.what
            );
        }
    }

    /// Times `f` in wall-clock time and in the main thread's CPU time.
    fn measure<T>(f: impl FnOnce() -> T) -> (T, Duration, Duration) {
        let cpu0 = thread_cpu();
        let t0 = Instant::now();
        let value = f();
        (value, t0.elapsed(), thread_cpu().saturating_sub(cpu0))
    }

    /// Blocking offload: the main thread submits one request and sleeps in
    /// `read` on an eventfd until the device completes it.
    fn run_blocking(args: &Args, plan: &Plan, count: u64) -> Vec<Digest256> {
        let accel = Accelerator::new(plan.workers, args.latency, args.capacity);
        let payloads = Payloads::new(args.size);
        // SAFETY: no memory arguments; checked. Blocking: `read` sleeps.
        let fd = unsafe { libc::eventfd(0, libc::EFD_CLOEXEC) };
        if fd < 0 {
            fail("eventfd", io::Error::last_os_error());
        }
        let mailbox = Arc::new(Mailbox::default());
        let mut out = Vec::with_capacity(count as usize);
        let mut progress = Progress::new();
        for request in 0..count {
            let req = Request {
                payload: payloads.get(request),
                mailbox: mailbox.clone(),
                eventfd: fd,
                submitted: Instant::now(),
            };
            if accel.queues[request as usize % plan.workers].send(req).is_err() {
                fail("submitting to the accelerator", "it is gone");
            }
            let mut n = 0u64;
            loop {
                // SAFETY: reads 8 bytes into `n` from our open eventfd.
                if unsafe { libc::read(fd, (&raw mut n).cast(), 8) } == 8 {
                    break;
                }
                let err = io::Error::last_os_error();
                if err.kind() != io::ErrorKind::Interrupted {
                    fail("read (eventfd)", err);
                }
            }
            out.push(mailbox.take().unwrap_or_else(|| fail("the blocking run", "a completion without a digest")));
            progress.tick("blocking", request + 1, count);
        }
        progress.finish();
        accel.shut_down();
        // SAFETY: our eventfd; the accelerator that wrote it has stopped.
        unsafe { libc::close(fd) };
        out
    }

    pub fn main() {
        let args = parse_args();
        let plan = Plan::new(&args);
        let requests = usize::try_from(args.requests).unwrap_or_else(|_| usage_error("--requests is too large here"));
        let mut results: Vec<Option<Digest256>> = Vec::new();
        let tokio_copies = usize::from(cfg!(feature = "tokio") && plan.not_capable.is_none());
        let keep = requests.saturating_mul(1 + tokio_copies);
        if let Err(e) = results.try_reserve_exact(keep) {
            refuse(format_args!(
                "--requests {requests} needs {} MiB to keep the results: {e}; use fewer --requests",
                (keep * std::mem::size_of::<Option<Digest256>>()) >> 20
            ));
        }
        results.resize(requests, None);

        // The header says what runs.
        let mut rows: Vec<Row> = Vec::new();
        let mut blocking: Vec<Digest256> = Vec::new();
        #[allow(unused_mut)]
        let mut via_tokio: Option<Vec<Option<Digest256>>> = None;
        let offloaded = if let Some(e) = &plan.not_capable {
            say!(
                "offload: {} SHA-256 requests of {} bytes, all on the main thread: jobs are not supported here \
                 ({e}; stackjob backend {}), so nothing is offloaded and the requests run synchronously",
                args.requests,
                args.size,
                stackjob::backend()
            );
            let payloads = Payloads::new(args.size);
            for (i, r) in results.iter_mut().enumerate() {
                *r = Some(sha256(&payloads.get(i as u64)));
            }
            None
        } else {
            let capped = if plan.workers < args.workers {
                format!(" (--workers {}: one per job in flight at most)", args.workers)
            } else {
                String::new()
            };
            say!(
                "offload: {} SHA-256 requests of {} bytes, {} jobs in flight, {} accelerator workers{capped}, \
                 device latency {} µs, capacity {} (stackjob backend {})",
                args.requests,
                args.size,
                plan.slots,
                plan.workers,
                args.latency.as_micros(),
                args.capacity,
                stackjob::backend()
            );

            let count = args.requests.min(BLOCKING_MAX);
            let (digests, elapsed, cpu) = measure(|| run_blocking(&args, &plan, count));
            blocking = digests;
            let what = if count < args.requests {
                format!("one request in flight (the first {count} requests)")
            } else {
                "one request in flight".to_owned()
            };
            rows.push(Row { name: "blocking", what, ops: count, elapsed, cpu });

            SPURIOUS.with(|s| s.set(0));
            let (stats, elapsed, cpu) = measure(|| run_offloaded(&args, &plan, Payloads::new(args.size), &mut results));
            let stats = stats.unwrap_or_else(|e| run_failed(&args, &plan, e));
            rows.push(Row {
                name: "offloaded",
                what: format!("{} jobs in flight, epoll loop", plan.slots),
                ops: args.requests,
                elapsed,
                cpu,
            });
            rows.last().expect("just pushed").print_after(&rows[..rows.len() - 1]);
            say!(
                "             {} jobs in flight, {:.2} pauses per op ({} spurious wake-ups), \
                 {:.1} jobs ready per epoll_wait, {} eventfds (one per job slot)",
                plan.slots,
                stats.pauses as f64 / args.requests.max(1) as f64,
                SPURIOUS.with(Cell::get),
                stats.ready_sum as f64 / stats.waits.max(1) as f64,
                EVENTFDS.with(Cell::get)
            );

            #[cfg(feature = "tokio")]
            {
                SPURIOUS.with(|s| s.set(0));
                let mut out = vec![None; requests];
                let (r, elapsed, cpu) = measure(|| bridge::run_tokio(&args, &plan, Payloads::new(args.size), &mut out));
                r.unwrap_or_else(|e| run_failed(&args, &plan, e));
                rows.push(Row {
                    name: "tokio",
                    what: format!("{} jobs in flight, stackjob::tokio on a current-thread runtime", plan.slots),
                    ops: args.requests,
                    elapsed,
                    cpu,
                });
                rows.last().expect("just pushed").print();
                via_tokio = Some(out);
            }
            Some(stats)
        };

        // Inline: the same requests hashed on the main thread, each checked
        // against every offloaded result.
        let payloads = Payloads::new(args.size);
        let mut wrong = 0u64;
        let mut progress = Progress::new();
        let mut check = |what: &str, i: usize, got: Option<Digest256>, want: Digest256| {
            if got != Some(want) {
                if wrong < 5 {
                    warn(format_args!("request {i} ({what}): wrong or missing result {:?}", got.map(hex)));
                }
                wrong += 1;
            }
        };
        let mut inline: Vec<Digest256> = Vec::with_capacity(requests);
        let ((), elapsed_sync, cpu_sync) = measure(|| {
            for i in 0..requests {
                inline.push(sha256(&payloads.get(i as u64)));
                if i % 1024 == 0 {
                    progress.tick("inline", i as u64, args.requests);
                }
            }
        });
        progress.finish();
        for (i, want) in inline.iter().enumerate() {
            check("jobs", i, results[i], *want);
            if let Some(t) = &via_tokio {
                check("tokio", i, t[i], *want);
            }
            if let Some(b) = blocking.get(i) {
                check("blocking", i, Some(*b), *want);
            }
        }
        rows.push(Row {
            name: if offloaded.is_some() { "inline" } else { "synchronous" },
            what: "SHA-256 on the main thread's CPU".to_owned(),
            ops: args.requests,
            elapsed: elapsed_sync,
            cpu: cpu_sync,
        });
        rows.last().expect("just pushed").print();
        if offloaded.is_some() {
            summary(&rows);
        }
        let failures = offloaded.as_ref().map_or(0, |s| s.failures);
        if wrong == 0 && failures == 0 {
            say!("verified: all {} results match", args.requests);
        } else {
            say!("verification FAILED: {wrong} of {} results wrong or missing", args.requests);
            process::exit(1);
        }
    }

    impl Row {
        /// Prints the blocking row first (measured before), then this one.
        fn print_after(&self, before: &[Row]) {
            for r in before {
                r.print();
            }
            self.print();
        }
    }

    /// The winners, named plainly: throughput and main-thread CPU per op
    /// are different questions, and offload does not win both everywhere.
    fn summary(rows: &[Row]) {
        let by = |key: &dyn Fn(&Row) -> f64, most: bool| {
            let mut sorted: Vec<&Row> = rows.iter().collect();
            sorted.sort_by(|a, b| key(a).total_cmp(&key(b)));
            if most {
                sorted.reverse();
            }
            sorted
        };
        let fast = by(&|r| r.rate(), true);
        let others: Vec<String> = fast[1..]
            .iter()
            .map(|r| format!("{:.2}x {}", fast[0].rate() / r.rate().max(f64::MIN_POSITIVE), r.name))
            .collect();
        say!("winner, throughput: {} ({:.0} ops/s; {})", fast[0].name, fast[0].rate(), others.join(", "));
        let lean = by(&|r| r.cpu_us(), false);
        let others: Vec<String> = lean[1..].iter().map(|r| format!("{} {:.2}", r.name, r.cpu_us())).collect();
        say!(
            "winner, main-thread CPU per op: {} ({:.2} µs/op; {} µs/op)",
            lean[0].name,
            lean[0].cpu_us(),
            others.join(", ")
        );
        let find = |name: &str| rows.iter().find(|r| r.name == name);
        if let (Some(epoll), Some(tokio)) = (find("offloaded"), find("tokio")) {
            say!(
                "tokio bridge / epoll loop: main-thread CPU per op {:.2}x ({:.2} / {:.2} µs), throughput {:.2}x",
                tokio.cpu_us() / epoll.cpu_us().max(f64::MIN_POSITIVE),
                tokio.cpu_us(),
                epoll.cpu_us(),
                tokio.rate() / epoll.rate().max(f64::MIN_POSITIVE)
            );
        } else if cfg!(not(feature = "tokio")) {
            say!("(tokio bridge not built: cargo run --release --example offload --features tokio)");
        }
    }

    /// The same jobs as [`run_offloaded`], driven by `stackjob::tokio` on a
    /// current-thread runtime: one task per job slot, each reusing its
    /// `JobDriver` (the slot's wait context and its eventfd's registration).
    #[cfg(feature = "tokio")]
    mod bridge {
        use super::*;
        use std::cell::RefCell;

        pub(super) fn run_tokio(
            args: &Args,
            plan: &Plan,
            payloads: Payloads,
            results: &mut [Option<Digest256>],
        ) -> Result<(), Error> {
            stackjob::init_thread(plan.slots, plan.slots)?;
            let accel = Accelerator::new(plan.workers, args.latency, args.capacity);
            let shared = Rc::new(Shared { payloads, queues: accel.queues.clone() });
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_io()
                .build()
                .unwrap_or_else(|e| fail("building the tokio runtime", e));
            let next = Rc::new(Cell::new(0u64));
            let out: Rc<RefCell<Vec<Option<Digest256>>>> = Rc::new(RefCell::new(vec![None; results.len()]));
            let progress = Rc::new(RefCell::new(Progress::new()));
            let done = Rc::new(Cell::new(0u64));
            let local = tokio::task::LocalSet::new();
            let requests = args.requests;
            local.block_on(&rt, async {
                let tasks: Vec<_> = (0..plan.slots)
                    .map(|slot| {
                        let (shared, next, out) = (shared.clone(), next.clone(), out.clone());
                        let (progress, done) = (progress.clone(), done.clone());
                        let queue = slot % plan.workers;
                        tokio::task::spawn_local(async move {
                            let mut driver = stackjob::tokio::JobDriver::with_mode(stackjob::tokio::Mode::Fd);
                            let mailbox = Arc::new(Mailbox::default());
                            loop {
                                let request = next.get();
                                if request >= requests {
                                    break;
                                }
                                next.set(request + 1);
                                let (s, m) = (shared.clone(), mailbox.clone());
                                match driver.run(move || offload_job(s, queue, m, request)).await {
                                    Ok(Ok(digest)) => out.borrow_mut()[request as usize] = Some(digest),
                                    Ok(Err(why)) => warn(format_args!("request {request} failed: {why}")),
                                    Err(e) => fail("stackjob::tokio", e),
                                }
                                done.set(done.get() + 1);
                                progress.borrow_mut().tick("tokio", done.get(), requests);
                            }
                        })
                    })
                    .collect();
                for t in tasks {
                    if t.await.is_err() {
                        fail("a tokio task", "it panicked");
                    }
                }
            });
            if let Ok(p) = Rc::try_unwrap(progress) {
                p.into_inner().finish();
            }
            results.copy_from_slice(&out.borrow());
            drop(local);
            drop(rt);
            drop(shared);
            accel.shut_down();
            stackjob::cleanup_thread();
            Ok(())
        }
    }

    /// The pool's stacks could not be made: say why, with the fix, and stop
    /// (there is no synchronous fallback for a resource that ran out).
    fn run_failed(args: &Args, plan: &Plan, e: Error) -> ! {
        match e {
            Error::StackAlloc { .. } => fail(
                format_args!("making the {} job stacks for {}", plan.slots, plan.jobs_flag(args)),
                format_args!(
                    "{e}. Nothing was offloaded. Each job stack needs two memory mappings (vm.max_map_count, \
                     sysctl -w vm.max_map_count=N as root) and {} KiB of address space plus a guard page \
                     (ulimit -v): raise the limit that ran out, or use fewer --jobs",
                    stackjob::DEFAULT_STACK_SIZE >> 10
                ),
            ),
            e => fail("the offloaded run", e),
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

    /// A failure during the run: says what failed and why, exit status 1.
    fn fail(what: impl std::fmt::Display, why: impl std::fmt::Display) -> ! {
        warn(format_args!("{what} failed: {why}"));
        process::exit(1);
    }
}
