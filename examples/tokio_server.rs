//! A tokio TCP server whose requests are signed by stackjob jobs.
//!
//! The server runs on a current-thread tokio runtime. Each connection
//! sends one request (a 4-byte big-endian length and a payload); the
//! server answers with its 32-byte "signature", SHA-256 over a server key
//! and the payload. The signature comes from a *synchronous* provider
//! function, `provider::sign`, as a C crypto library would offer it:
//! called inside a job ([`stackjob::tokio::job`]), it submits the work to
//! a simulated accelerator and pauses (`stackjob::pause`) until the device
//! completes; the device calls the job's wait-context callback from its
//! own thread, which wakes the connection's task. Outside a job it would
//! block. No thread blocks on the server side.
//!
//! The device: one thread with a latency per request (`--latency`, default
//! 20 µs) that sleeps until each request is due; it never spins.
//!
//! A built-in client load phase, on its own thread and runtime, opens
//! `--connections` connections over loopback, `--concurrency` at once,
//! verifies every response against its own SHA-256, and prints the
//! throughput and latency percentiles (p50, p99, max), with a progress
//! line on stderr while it runs. It stops starting connections after
//! `--time-limit` seconds. Exit status: 0 when every response was
//! verified, 1 on a wrong response or a failure, 2 on a bad flag.
//!
//! ```text
//! cargo run --release --example tokio_server --features tokio-dev
//! cargo run --release --example tokio_server --features tokio-dev -- --connections 20000 --concurrency 256
//! ```

use sha2::{Digest, Sha256};
use std::cell::Cell;
use std::io::{self, IsTerminal, Write};
use std::net::SocketAddr;
use std::process;
use std::rc::Rc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const USAGE: &str =
    "usage: tokio_server [--connections N] [--concurrency C] [--size BYTES] [--latency US] [--time-limit S]
  --connections N   client connections in all, one request each (default 2000, 1 to 20000)
  --concurrency C   connections open at once (default 64, 1 to 4096)
  --size BYTES      request payload bytes (default 1024, 0 to 1048576)
  --latency US      the simulated device's latency per request, microseconds (default 20, 0 to 1000000)
  --time-limit S    stop starting connections after S seconds (default 30, 1 to 600)";

/// The server's signing key (a demo: it is in the source).
const KEY: &[u8] = b"stackjob tokio_server demo key";

struct Args {
    connections: u64,
    concurrency: u64,
    size: u64,
    latency: Duration,
    time_limit: Duration,
}

fn usage_error(msg: &str) -> ! {
    let _ = writeln!(io::stderr(), "tokio_server: {msg}\n{USAGE}");
    process::exit(2);
}

fn fail(what: &str, why: impl std::fmt::Display) -> ! {
    let _ = writeln!(io::stderr(), "tokio_server: {what} failed: {why}");
    process::exit(1);
}

fn parse_args() -> Args {
    let mut a = Args {
        connections: 2000,
        concurrency: 64,
        size: 1024,
        latency: Duration::from_micros(20),
        time_limit: Duration::from_secs(30),
    };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        if arg == "-h" || arg == "--help" {
            println!("{USAGE}");
            process::exit(0);
        }
        let (name, inline) = match arg.split_once('=') {
            Some((n, v)) => (n.to_owned(), Some(v.to_owned())),
            None => (arg.clone(), None),
        };
        let (min, max) = match name.as_str() {
            "--connections" => (1, 20_000),
            "--concurrency" => (1, 4096),
            "--size" => (0, 1 << 20),
            "--latency" => (0, 1_000_000),
            "--time-limit" => (1, 600),
            _ => usage_error(&format!("unknown argument {arg:?}")),
        };
        let value = inline.or_else(|| it.next()).unwrap_or_else(|| usage_error(&format!("{name} needs a value")));
        let n: u64 = match value.parse() {
            Ok(n) if (min..=max).contains(&n) => n,
            Ok(n) => usage_error(&format!("{name} {n} is out of range: expected {min} to {max}")),
            Err(_) => usage_error(&format!("{name}: {value:?} is not a number (expected {min} to {max})")),
        };
        match name.as_str() {
            "--connections" => a.connections = n,
            "--concurrency" => a.concurrency = n,
            "--size" => a.size = n,
            "--latency" => a.latency = Duration::from_micros(n),
            _ => a.time_limit = Duration::from_secs(n),
        }
    }
    a
}

/// The simulated accelerator and the synchronous provider built on it.
mod provider {
    use super::*;
    use std::collections::VecDeque;
    use std::sync::mpsc;

    struct Work {
        payload: Vec<u8>,
        out: Arc<Mutex<Option<[u8; 32]>>>,
        ctx: stackjob::WaitCtx,
        due: Instant,
    }

    /// The device: hashes each request as it arrives, then delivers it
    /// when its latency has passed (requests are due in arrival order).
    pub struct Device {
        tx: mpsc::Sender<Work>,
        latency: Duration,
    }

    impl Device {
        pub fn start(latency: Duration) -> Device {
            let (tx, rx) = mpsc::channel::<Work>();
            let spawned = std::thread::Builder::new().name("device".into()).spawn(move || {
                // SAFETY: PR_SET_TIMERSLACK takes a number; only this thread is affected.
                unsafe { libc::prctl(libc::PR_SET_TIMERSLACK, 1 as libc::c_ulong) };
                let mut queue: VecDeque<([u8; 32], Work)> = VecDeque::new();
                let mut open = true;
                while open || !queue.is_empty() {
                    while queue.front().is_some_and(|(_, w)| w.due <= Instant::now()) {
                        let (digest, w) = queue.pop_front().expect("checked");
                        *w.out.lock().unwrap_or_else(|e| e.into_inner()) = Some(digest);
                        // Callback mode: the bridge's waking callback.
                        if let Some(cb) = w.ctx.callback() {
                            cb();
                        }
                    }
                    let got = match queue.front() {
                        Some((_, w)) if open => rx.recv_timeout(w.due.saturating_duration_since(Instant::now())),
                        Some((_, w)) => {
                            std::thread::sleep(w.due.saturating_duration_since(Instant::now()));
                            continue;
                        }
                        None if open => rx.recv().map_err(|_| mpsc::RecvTimeoutError::Disconnected),
                        None => break,
                    };
                    match got {
                        Ok(w) => {
                            let digest = Sha256::new().chain_update(KEY).chain_update(&w.payload).finalize().into();
                            queue.push_back((digest, w));
                        }
                        Err(mpsc::RecvTimeoutError::Timeout) => {}
                        Err(mpsc::RecvTimeoutError::Disconnected) => open = false,
                    }
                }
            });
            if let Err(e) = spawned {
                fail("starting the device thread", e);
            }
            Device { tx, latency }
        }
    }

    thread_local! {
        pub static PAUSES: Cell<u64> = const { Cell::new(0) };
    }

    /// Signs `payload`: a synchronous function. Inside a job it submits to
    /// the device and pauses until the device completes; outside one it
    /// would compute in line.
    pub fn sign(device: &Device, payload: Vec<u8>) -> [u8; 32] {
        let Some(ctx) = stackjob::current_wait_ctx() else {
            return Sha256::new().chain_update(KEY).chain_update(&payload).finalize().into();
        };
        let out = Arc::new(Mutex::new(None));
        let work = Work { payload, out: out.clone(), ctx, due: Instant::now() + device.latency };
        if device.tx.send(work).is_err() {
            fail("submitting to the device", "the device thread is gone");
        }
        loop {
            stackjob::pause();
            PAUSES.with(|p| p.set(p.get() + 1));
            if let Some(d) = out.lock().unwrap_or_else(|e| e.into_inner()).take() {
                return d;
            }
        }
    }
}

/// The main thread's CPU time so far.
fn thread_cpu() -> Duration {
    // SAFETY: an all-zero rusage is valid for getrusage to fill.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: `ru` is a writable rusage.
    if unsafe { libc::getrusage(libc::RUSAGE_THREAD, &mut ru) } != 0 {
        return Duration::ZERO;
    }
    let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
    tv(ru.ru_utime) + tv(ru.ru_stime)
}

/// One connection on the server: read the request, sign it in a job, answer.
async fn serve(mut s: tokio::net::TcpStream, device: Rc<provider::Device>) -> io::Result<()> {
    let len = s.read_u32().await? as usize;
    if len > 1 << 20 {
        return Err(io::Error::new(io::ErrorKind::InvalidData, "request too large"));
    }
    let mut payload = vec![0u8; len];
    s.read_exact(&mut payload).await?;
    let signature = stackjob::tokio::job(move || provider::sign(&device, payload))
        .await
        .map_err(|e| io::Error::other(e.to_string()))?;
    s.write_all(&signature).await?;
    s.shutdown().await
}

/// The request payload of connection `i`.
fn payload(i: u64, size: usize) -> Vec<u8> {
    (0..size).map(|j| (i.wrapping_mul(31).wrapping_add(j as u64 * 7) % 251) as u8).collect()
}

/// Client results, shared with the progress line.
#[derive(Default)]
struct Tally {
    verified: AtomicU64,
    wrong: AtomicU64,
    failed: AtomicU64,
}

/// The load phase: `--connections` connections, `--concurrency` at once.
/// Returns the per-request latencies and the wall time.
fn load(addr: SocketAddr, args: &Args, tally: Arc<Tally>) -> (Vec<Duration>, Duration) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap_or_else(|e| fail("building the client runtime", e));
    let (connections, size, limit) = (args.connections, args.size as usize, args.time_limit);
    let concurrency = args.concurrency;
    rt.block_on(async move {
        let next = Rc::new(Cell::new(0u64));
        let t0 = Instant::now();
        let local = tokio::task::LocalSet::new();
        let lat = local
            .run_until(async {
                let clients: Vec<_> = (0..concurrency)
                    .map(|_| {
                        let (next, tally) = (next.clone(), tally.clone());
                        tokio::task::spawn_local(async move {
                            let mut lat = Vec::new();
                            loop {
                                let i = next.get();
                                if i >= connections || t0.elapsed() > limit {
                                    return lat;
                                }
                                next.set(i + 1);
                                let body = payload(i, size);
                                let want: [u8; 32] =
                                    Sha256::new().chain_update(KEY).chain_update(&body).finalize().into();
                                let start = Instant::now();
                                match request(addr, &body).await {
                                    Ok(got) if got == want => {
                                        lat.push(start.elapsed());
                                        tally.verified.fetch_add(1, Ordering::Relaxed);
                                    }
                                    Ok(_) => {
                                        tally.wrong.fetch_add(1, Ordering::Relaxed);
                                    }
                                    Err(e) => {
                                        if tally.failed.fetch_add(1, Ordering::Relaxed) < 5 {
                                            let _ = writeln!(io::stderr(), "tokio_server: connection {i}: {e}");
                                        }
                                    }
                                }
                            }
                        })
                    })
                    .collect();
                let mut all = Vec::new();
                for c in clients {
                    all.extend(c.await.unwrap_or_else(|e| fail("a client task", e)));
                }
                all
            })
            .await;
        (lat, t0.elapsed())
    })
}

async fn request(addr: SocketAddr, body: &[u8]) -> io::Result<[u8; 32]> {
    let mut s = tokio::net::TcpStream::connect(addr).await?;
    s.set_nodelay(true)?;
    s.write_u32(body.len() as u32).await?;
    s.write_all(body).await?;
    let mut got = [0u8; 32];
    s.read_exact(&mut got).await?;
    Ok(got)
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

fn main() {
    let args = parse_args();
    if !stackjob::is_capable() {
        fail("starting", "stackjob jobs are not supported on this target (stackjob::is_capable() is false)");
    }
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap_or_else(|e| fail("building the server runtime", e));
    let local = tokio::task::LocalSet::new();
    let listener = local
        .block_on(&rt, tokio::net::TcpListener::bind("127.0.0.1:0"))
        .unwrap_or_else(|e| fail("binding 127.0.0.1", e));
    let addr = listener.local_addr().unwrap_or_else(|e| fail("local_addr", e));
    println!(
        "tokio_server: {} connections ({} at once) to {addr}, {}-byte requests, device latency {} µs, \
         one job per request (stackjob backend {})",
        args.connections,
        args.concurrency,
        args.size,
        args.latency.as_micros(),
        stackjob::backend()
    );

    let tally = Arc::new(Tally::default());
    let device = Rc::new(provider::Device::start(args.latency));
    let client = {
        let tally = tally.clone();
        let a = args;
        std::thread::Builder::new()
            .name("client".into())
            .spawn(move || {
                let r = load(addr, &a, tally);
                (r, a)
            })
            .unwrap_or_else(|e| fail("starting the client thread", e))
    };

    // The server: accept until the client is done, one task per connection.
    let served = Rc::new(Cell::new(0u64));
    let cpu0 = thread_cpu();
    let tty = io::stderr().is_terminal();
    local.block_on(&rt, async {
        let progress = {
            let tally = tally.clone();
            tokio::task::spawn_local(async move {
                let t0 = Instant::now();
                loop {
                    tokio::time::sleep(Duration::from_millis(500)).await;
                    let done = tally.verified.load(Ordering::Relaxed);
                    let line = format!(
                        "tokio_server: {done} responses verified, {:.0} req/s",
                        done as f64 / t0.elapsed().as_secs_f64()
                    );
                    let mut err = io::stderr().lock();
                    let _ = if tty { write!(err, "\r{line:<60}") } else { writeln!(err, "{line}") };
                    let _ = err.flush();
                }
            })
        };
        let accept = {
            let (device, served) = (device.clone(), served.clone());
            tokio::task::spawn_local(async move {
                loop {
                    let (s, _) = match listener.accept().await {
                        Ok(c) => c,
                        Err(e) => fail("accept", e),
                    };
                    let (device, served) = (device.clone(), served.clone());
                    tokio::task::spawn_local(async move {
                        if let Err(e) = serve(s, device).await {
                            let _ = writeln!(io::stderr(), "tokio_server: serving a connection: {e}");
                        }
                        served.set(served.get() + 1);
                    });
                }
            })
        };
        while !client.is_finished() {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        accept.abort();
        progress.abort();
    });
    let cpu = thread_cpu().saturating_sub(cpu0);
    if tty {
        eprint!("\r{:60}\r", "");
    }
    let ((mut lat, elapsed), args) = client.join().unwrap_or_else(|_| fail("the client thread", "it panicked"));
    lat.sort();
    let verified = tally.verified.load(Ordering::Relaxed);
    let wrong = tally.wrong.load(Ordering::Relaxed);
    let failed = tally.failed.load(Ordering::Relaxed);
    let attempted = verified + wrong + failed;
    println!(
        "client: {verified} responses verified in {:.3} s: {:.0} requests/s; latency p50 {} µs, p99 {} µs, max {} µs",
        elapsed.as_secs_f64(),
        verified as f64 / elapsed.as_secs_f64().max(1e-9),
        percentile(&lat, 0.50).as_micros(),
        percentile(&lat, 0.99).as_micros(),
        lat.last().copied().unwrap_or_default().as_micros()
    );
    println!(
        "server: {} connections served, {} job pauses, main-thread CPU {:.1} µs per request",
        served.get(),
        provider::PAUSES.with(Cell::get),
        cpu.as_secs_f64() * 1e6 / served.get().max(1) as f64
    );
    if attempted < args.connections {
        println!("time limit: {attempted} of {} connections started within {:?}", args.connections, args.time_limit);
    }
    if wrong == 0 && failed == 0 && verified == attempted && verified > 0 {
        println!("verified: all {verified} responses match");
    } else {
        println!("verification FAILED: {wrong} wrong, {failed} failed of {attempted}");
        process::exit(1);
    }
}
