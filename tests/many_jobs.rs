//! Ten thousand jobs paused at once on one thread are cheap: each costs
//! only the stack pages it touched (its stack is `MAP_NORESERVE`), at most
//! 12 KiB of resident memory per paused job, and every one of them resumes
//! to its own result and gives its stack back to the pool.
//!
//! Resident memory is the process's (`/proc/self/statm`), measured before
//! the first start — with the pool empty — and while all the jobs are
//! paused, so the figure per job includes everything a paused job holds:
//! its touched stack pages with the stack header and job slot, and its
//! handle. The test prints it. This binary has a single test, so no other
//! test thread moves the figure.
//!
//! Each job needs one mapping and one guard page, that is two entries in
//! the kernel's mapping table: the test skips, saying why, when
//! `vm.max_map_count` or the address-space limit is too low for that.
//! Under QEMU user emulation, Valgrind and AddressSanitizer resident memory
//! is the emulator's or includes the tool's shadow memory, so there the
//! jobs still run but the memory bound is not asserted (the test says so).

#[macro_use]
mod common;

use common::{finished, paused};
use stackjob::{DEFAULT_STACK_SIZE, cleanup_thread, init_thread, pause, pool_stats, start};
use std::hint::black_box;

/// How many jobs are paused at once.
const JOBS: usize = 10_000;
/// The most resident memory one paused job may hold.
const MAX_BYTES_PER_JOB: usize = 12 * 1024;

fn page_size() -> usize {
    // SAFETY: sysconf has no preconditions.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    assert!(page > 0, "sysconf(_SC_PAGESIZE) failed");
    page as usize
}

/// Field `index` of `/proc/self/statm` in bytes (0: mapped, 1: resident).
fn statm_field(index: usize) -> usize {
    let statm = std::fs::read_to_string("/proc/self/statm").expect("read /proc/self/statm");
    let pages: usize = statm.split_whitespace().nth(index).and_then(|f| f.parse().ok()).expect("statm field");
    pages * page_size()
}

/// The process's resident memory in bytes.
fn resident_bytes() -> usize {
    statm_field(1)
}

/// Why the process's resident memory says nothing about the jobs' own
/// memory here, if it does not.
fn rss_is_meaningless() -> Option<String> {
    if std::env::var_os("STACKJOB_UNDER_VALGRIND").is_some() {
        return Some("under Valgrind, resident memory includes its shadow memory and translations".into());
    }
    if cfg!(feature = "asan") {
        return Some("under AddressSanitizer, resident memory includes its shadow memory and fake stacks".into());
    }
    if common::child::emulated() {
        let why =
            common::child::emulation().unwrap_or_else(|| format!("{} names an emulator", common::child::RUNNER_ENV));
        return Some(format!("{why}: resident memory is the emulator's process"));
    }
    None
}

/// Why `jobs` stacks cannot be mapped at once here, if they cannot.
fn cannot_map(jobs: usize) -> Option<String> {
    // Two mappings per stack (the stack and its guard page), plus what the
    // process already has and some room for the runtime.
    let maps = std::fs::read_to_string("/proc/self/maps").map(|m| m.lines().count()).unwrap_or(0);
    let needed = 2 * jobs + maps + 1024;
    if let Ok(limit) = std::fs::read_to_string("/proc/sys/vm/max_map_count")
        && let Ok(limit) = limit.trim().parse::<usize>()
        && limit < needed
    {
        return Some(format!("vm.max_map_count is {limit}, {jobs} paused jobs need about {needed} mappings"));
    }
    let mut rlim = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit writes one rlimit through the pointer.
    let rc = unsafe { libc::getrlimit(libc::RLIMIT_AS, &mut rlim) };
    if rc == 0 && rlim.rlim_cur != libc::RLIM_INFINITY {
        let mapped = statm_field(0);
        let stacks = jobs * (DEFAULT_STACK_SIZE + page_size());
        let needed = mapped + stacks + (64 << 20);
        if usize::try_from(rlim.rlim_cur).is_ok_and(|limit| limit < needed) {
            return Some(format!(
                "RLIMIT_AS is {} bytes, {mapped} are mapped and {jobs} stacks need {stacks} more",
                rlim.rlim_cur
            ));
        }
    }
    None
}

/// A job that writes a little of its stack, pauses, checks what it wrote
/// and returns its index.
fn touch_and_pause(index: usize) -> impl FnOnce() -> usize + 'static {
    move || {
        let mut local = [0u8; 512];
        for (k, byte) in local.iter_mut().enumerate() {
            *byte = (index + k) as u8;
        }
        black_box(&mut local);
        pause();
        let local = black_box(local);
        assert!(local.iter().enumerate().all(|(k, &b)| b == (index + k) as u8), "job {index}: its stack changed");
        index
    }
}

#[test]
fn ten_thousand_paused_jobs_hold_at_most_12_kib_each_and_all_finish() {
    require_backend!();
    if !cfg!(target_os = "linux") {
        eprintln!("skipped: measuring resident memory and mapping limits needs /proc (Linux)");
        return;
    }
    if let Some(why) = cannot_map(JOBS) {
        eprintln!("skipped: {why}");
        return;
    }

    init_thread(0, 0).unwrap();
    let mut handles = Vec::with_capacity(JOBS);
    let before = resident_bytes();
    for i in 0..JOBS {
        handles.push(paused(start(None, touch_and_pause(i)).unwrap()));
    }
    let during = resident_bytes();
    let stats = pool_stats();
    assert_eq!((stats.idle, stats.in_use), (0, JOBS), "every paused job holds a stack of its own");

    let per_job = during.saturating_sub(before) / JOBS;
    eprintln!(
        "{JOBS} paused jobs: resident {before} -> {during} bytes, {per_job} bytes per paused job \
         ({} KiB stacks, {}-byte pages)",
        stats.stack_size / 1024,
        page_size()
    );
    match rss_is_meaningless() {
        Some(why) => eprintln!("memory bound not checked: {why}"),
        None => assert!(
            per_job <= MAX_BYTES_PER_JOB,
            "a paused job holds {per_job} bytes of resident memory, more than {MAX_BYTES_PER_JOB}"
        ),
    }

    for (i, job) in handles.into_iter().enumerate() {
        assert_eq!(finished(job.resume().unwrap()), i, "job {i} must return its own index");
    }
    let stats = pool_stats();
    assert_eq!((stats.idle, stats.in_use), (JOBS, 0), "every stack is back in the pool, idle");
    cleanup_thread();
    assert_eq!(pool_stats().idle, 0, "cleanup_thread frees the idle stacks");
}
