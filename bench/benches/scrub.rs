//! What `PoolConfig::scrub(true)` costs per job: wall-clock medians and, for
//! callgrind, an instruction-count workload. A timing benchmark; never run
//! as a test.
//!
//! ```text
//! cargo bench --bench scrub                 # the table below, ~10 s
//! cargo bench --bench scrub -- icount K on|off N
//!     # N jobs that each dirty K KiB, nothing else; under callgrind,
//!     # (Ir(2N) - Ir(N)) / N is the instruction count of one job, and
//!     # on minus off is the scrub's share
//! ```
//!
//! Instruction counts need care here: the zeroing is glibc's `memset`,
//! which uses `rep stosb` for large sizes, and callgrind counts every byte
//! a `rep stosb` stores as one instruction (~1000 Ir per KiB that take a
//! few dozen cycles); `callgrind_annotate` shows the scrub's own code apart
//! from `memset`. The `mincore` system call costs one instruction there.
//!
//! Each job dirties K KiB of a 512 KiB stack (1 KiB frames filled with
//! non-zero bytes, so the scrub has real work) and returns. Jobs run back
//! to back on the one pooled stack, so its pages stay resident: the steady
//! state of a server whose jobs look alike. The table reports the median
//! per job with scrub off and on, the difference, and a least-squares fit
//! `difference = fixed + per_kib * K`. Extra rows:
//!
//! * `after 256` — K KiB jobs on a stack one earlier job used to 256 KiB:
//!   the scrub reads the earlier job's (zeroed, still resident) pages too;
//! * `mincore` — the one syscall of every scrub, alone, on 512 KiB.

use stackjob::{PoolConfig, Step, init_thread_with, start};
use std::hint::black_box;
use std::time::Instant;

const STACK: usize = 512 * 1024;
const DEPTHS: [usize; 4] = [4, 16, 64, 256];
/// Jobs per timed sample, and samples per median.
const BATCH: usize = 16;
const SAMPLES: usize = 301;

/// Dirties `kib` KiB of stack, one 1 KiB frame per level.
#[inline(never)]
fn dirty(kib: usize) -> u8 {
    let mut frame = [0xa5u8; 1024];
    black_box(&mut frame);
    if kib <= 1 {
        return frame[7];
    }
    dirty(kib - 1).wrapping_add(black_box(frame[3]))
}

fn pool(scrub: bool) {
    init_thread_with(&PoolConfig::new().max_size(1).stack_size(STACK).scrub(scrub)).expect("init_thread_with");
}

fn run_job(kib: usize) {
    match start(None, move || dirty(kib)).expect("start") {
        Step::Finished(v) => {
            black_box(v);
        }
        Step::Paused(_) => unreachable!("the job never pauses"),
    }
}

/// Median nanoseconds per job of `kib` KiB jobs, after `warm_kib` warm-up.
fn median_ns(kib: usize, scrub: bool, warm_kib: usize) -> f64 {
    pool(scrub);
    run_job(warm_kib);
    for _ in 0..BATCH * 8 {
        run_job(kib);
    }
    let mut samples: Vec<f64> = (0..SAMPLES)
        .map(|_| {
            let t = Instant::now();
            for _ in 0..BATCH {
                run_job(kib);
            }
            t.elapsed().as_nanos() as f64 / BATCH as f64
        })
        .collect();
    samples.sort_by(f64::total_cmp);
    samples[SAMPLES / 2]
}

/// Median nanoseconds of one `mincore` over the usable part of a stack.
fn mincore_ns() -> f64 {
    let page = 4096;
    let len = STACK;
    // SAFETY: a fresh private anonymous mapping, unmapped below; mincore
    // writes one byte per page into `vec`.
    unsafe {
        let p = libc::mmap(
            std::ptr::null_mut(),
            len,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
            -1,
            0,
        );
        assert_ne!(p, libc::MAP_FAILED);
        // Touch the top 8 KiB, like a shallow job.
        std::ptr::write_bytes(p.cast::<u8>().add(len - 8192), 1, 8192);
        let mut vec = vec![0u8; len / page];
        let mut samples: Vec<f64> = (0..SAMPLES)
            .map(|_| {
                let t = Instant::now();
                for _ in 0..BATCH {
                    assert_eq!(libc::mincore(p, len, vec.as_mut_ptr()), 0);
                }
                t.elapsed().as_nanos() as f64 / BATCH as f64
            })
            .collect();
        libc::munmap(p, len);
        samples.sort_by(f64::total_cmp);
        samples[SAMPLES / 2]
    }
}

/// Least squares y = a + b x.
fn fit(points: &[(f64, f64)]) -> (f64, f64) {
    let n = points.len() as f64;
    let (sx, sy) = points.iter().fold((0.0, 0.0), |(sx, sy), &(x, y)| (sx + x, sy + y));
    let (mx, my) = (sx / n, sy / n);
    let sxy: f64 = points.iter().map(|&(x, y)| (x - mx) * (y - my)).sum();
    let sxx: f64 = points.iter().map(|&(x, _)| (x - mx) * (x - mx)).sum();
    let b = sxy / sxx;
    (my - b * mx, b)
}

fn icount(args: &[String]) {
    let kib: usize = args.first().and_then(|s| s.parse().ok()).expect("icount K on|off N");
    let scrub = match args.get(1).map(String::as_str) {
        Some("on") => true,
        Some("off") => false,
        _ => panic!("icount K on|off N"),
    };
    let n: usize = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(10_000);
    pool(scrub);
    for _ in 0..n {
        run_job(kib);
    }
}

fn main() {
    // `cargo bench` passes `--bench`; skip flags.
    let args: Vec<String> = std::env::args().skip(1).filter(|a| !a.starts_with("--")).collect();
    if !stackjob::is_capable() {
        eprintln!("scrub bench: stackjob has no backend on this target");
        std::process::exit(2);
    }
    if args.first().map(String::as_str) == Some("icount") {
        icount(&args[1..]);
        return;
    }
    println!("median ns per job ({BATCH} jobs x {SAMPLES} samples), {} KiB stack", STACK / 1024);
    println!("{:>10} {:>10} {:>10} {:>10} {:>10}", "KiB", "off", "on", "scrub", "ns/KiB");
    let mut points = Vec::new();
    for kib in DEPTHS {
        let off = median_ns(kib, false, kib);
        let on = median_ns(kib, true, kib);
        points.push((kib as f64, on - off));
        println!("{kib:>10} {off:>10.0} {on:>10.0} {:>10.0} {:>10.1}", on - off, (on - off) / kib as f64);
    }
    for kib in [4, 16] {
        let off = median_ns(kib, false, 256);
        let on = median_ns(kib, true, 256);
        println!("{:>10} {off:>10.0} {on:>10.0} {:>10.0}", format!("{kib} after 256"), on - off);
    }
    let (fixed, per_kib) = fit(&points);
    println!("fit: scrub = {fixed:.0} ns + {per_kib:.1} ns/KiB");
    println!("mincore on {} KiB: {:.0} ns", STACK / 1024, mincore_ns());
}
