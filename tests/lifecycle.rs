//! A job's life: start, pause, resume, finish; what it returns and what it
//! carries; where its stack lives and how much of it there is.

#[macro_use]
mod common;

use common::{finished, paused};
use stackjob::{Job, PoolConfig, Step, in_job, init_thread_with, pause, pool_stats, start};
use std::cell::{Cell, RefCell};
use std::hint::black_box;
use std::rc::Rc;

/// Resumes until the job finishes; returns the value and the number of pauses.
fn run_to_end<R>(mut step: Step<R>) -> (R, usize) {
    let mut pauses = 0;
    loop {
        match step {
            Step::Paused(job) => {
                pauses += 1;
                step = job.resume().unwrap();
            }
            Step::Finished(value) => return (value, pauses),
        }
    }
}

#[test]
fn job_that_returns_at_once_finishes_in_start() {
    require_backend!();
    let ran = Rc::new(Cell::new(false));
    let flag = ran.clone();
    let value = finished(
        start(None, move || {
            flag.set(true);
            17
        })
        .unwrap(),
    );
    assert_eq!(value, 17);
    assert!(ran.get(), "start must run the body before returning");
}

#[test]
fn job_pausing_n_times_pauses_exactly_n_times_then_finishes() {
    require_backend!();
    const N: usize = 25;
    let progress = Rc::new(Cell::new(0));
    let seen = progress.clone();
    let mut step = start(None, move || {
        for i in 1..=N {
            seen.set(i);
            pause();
        }
        seen.set(N + 1);
        "done"
    })
    .unwrap();
    let mut pauses = 0;
    let value = loop {
        match step {
            Step::Paused(job) => {
                pauses += 1;
                assert_eq!(progress.get(), pauses, "the job stops exactly at its pause");
                step = job.resume().unwrap();
            }
            Step::Finished(value) => break value,
        }
    };
    assert_eq!((value, pauses, progress.get()), ("done", N, N + 1));
}

#[test]
fn pause_outside_a_job_returns_at_once() {
    assert!(!in_job());
    pause();
    assert!(!in_job());
}

#[test]
fn in_job_is_true_only_inside_the_job() {
    require_backend!();
    assert!(!in_job());
    let job = paused(
        start(None, || {
            let before = in_job();
            pause();
            (before, in_job())
        })
        .unwrap(),
    );
    assert!(!in_job(), "a paused job is not current");
    assert_eq!(finished(job.resume().unwrap()), (true, true));
    assert!(!in_job());
}

#[test]
fn job_returns_unit() {
    require_backend!();
    let (value, pauses) = run_to_end(start(None, pause).unwrap());
    assert_eq!((value, pauses), ((), 1));
}

#[test]
fn job_returns_a_string() {
    require_backend!();
    let (value, pauses) = run_to_end(
        start(None, || {
            let mut s = String::from("hello");
            pause();
            s.push_str(", world");
            s
        })
        .unwrap(),
    );
    assert_eq!((value.as_str(), pauses), ("hello, world", 1));
}

#[test]
fn job_returns_a_large_array_intact() {
    require_backend!();
    let (value, pauses) = run_to_end(
        start(None, || {
            let mut a = [0u8; 8192];
            for (i, b) in a.iter_mut().enumerate() {
                *b = (i * 31 % 251) as u8;
            }
            pause();
            a
        })
        .unwrap(),
    );
    assert_eq!(pauses, 1);
    assert!(value.iter().enumerate().all(|(i, &b)| b == (i * 31 % 251) as u8));
}

#[test]
fn job_returns_a_box() {
    require_backend!();
    let (value, pauses) = run_to_end(
        start(None, || {
            let b: Box<Vec<u64>> = Box::new((0..100).collect());
            pause();
            b
        })
        .unwrap(),
    );
    assert_eq!(pauses, 1);
    assert_eq!(value.len(), 100);
    assert_eq!(value.iter().sum::<u64>(), 4950);
}

#[test]
fn job_returns_a_boxed_trait_object() {
    require_backend!();
    let value = finished(start(None, || Box::new(5u32) as Box<dyn std::any::Any>).unwrap());
    assert_eq!(value.downcast_ref::<u32>(), Some(&5));
}

#[test]
fn large_captured_data_is_moved_onto_the_job_stack_intact() {
    require_backend!();
    let mut data = [0u8; 16 * 1024];
    for (i, b) in data.iter_mut().enumerate() {
        *b = (i * 7 % 253) as u8;
    }
    let outside = &data as *const _ as usize;
    let job = paused(
        start(None, move || {
            let data = black_box(data);
            let ok_before = data.iter().enumerate().all(|(i, &b)| b == (i * 7 % 253) as u8);
            pause();
            let ok_after = data.iter().enumerate().all(|(i, &b)| b == (i * 7 % 253) as u8);
            (ok_before, ok_after, &data as *const _ as usize, data.iter().map(|&b| b as u64).sum::<u64>())
        })
        .unwrap(),
    );
    let (ok_before, ok_after, inside, sum) = finished(job.resume().unwrap());
    assert!(ok_before, "the captured array arrived corrupted");
    assert!(ok_after, "the captured array was corrupted across a pause");
    assert_ne!(inside, outside, "the array lives in the job's frame, not the caller's");
    #[cfg(target_os = "linux")]
    assert!(!thread_stack_bounds().contains(&inside), "the array must live on the job's stack");
    assert_eq!(sum, data.iter().map(|&b| b as u64).sum::<u64>());
}

/// Recurses `depth` frames, each holding values derived from its depth,
/// pauses at the bottom (and every 50 frames on the way), then checks every
/// frame's values on the way back. Returns the number of intact frames.
#[inline(never)]
fn recurse_and_pause(depth: u64) -> u64 {
    let frame = black_box([depth, depth * 3 + 1, !depth, depth.wrapping_mul(0x9E37_79B9_7F4A_7C15)]);
    if depth.is_multiple_of(50) {
        pause();
    }
    let below = if depth == 0 { 0 } else { recurse_and_pause(depth - 1) };
    let frame = black_box(frame);
    let intact = frame == [depth, depth * 3 + 1, !depth, depth.wrapping_mul(0x9E37_79B9_7F4A_7C15)];
    below + intact as u64
}

#[test]
fn pause_from_deep_recursion_keeps_every_frame_intact() {
    require_backend!();
    const DEPTH: u64 = 200;
    let (intact, pauses) = run_to_end(start(None, || recurse_and_pause(DEPTH)).unwrap());
    assert_eq!(intact, DEPTH + 1, "some frames were corrupted across pauses");
    assert_eq!(pauses, 5, "pauses at depth 200, 150, 100, 50 and 0");
}

#[test]
fn a_thousand_paused_jobs_resume_in_any_order() {
    require_backend!();
    init_thread_with(&PoolConfig::new().stack_size(64 * 1024)).unwrap();
    const N: usize = 1000;
    let mut jobs: Vec<Option<Job<(usize, bool)>>> = (0..N)
        .map(|i| {
            Some(paused(
                start(None, move || {
                    let mine = black_box([i; 8]);
                    pause();
                    (i, mine == [i; 8])
                })
                .unwrap(),
            ))
        })
        .collect();
    assert_eq!(pool_stats().in_use, N);
    // 7 is coprime with 1000: this visits every index once, far from in order.
    for k in 0..N {
        let i = (k * 7 + 3) % N;
        let job = jobs[i].take().expect("each job is resumed once");
        let (id, intact) = finished(job.resume().unwrap());
        assert_eq!(id, i, "resumed job {i} but job {id} answered");
        assert!(intact, "job {i}'s locals were corrupted");
    }
    assert!(jobs.iter().all(Option::is_none));
    assert_eq!((pool_stats().in_use, pool_stats().idle), (0, N));
    stackjob::cleanup_thread();
}

#[test]
fn interleaved_jobs_each_continue_where_they_paused() {
    require_backend!();
    let log = Rc::new(RefCell::new(Vec::new()));
    let body = |name: &'static str, log: Rc<RefCell<Vec<String>>>| {
        move || {
            for step in 0..3 {
                log.borrow_mut().push(format!("{name}{step}"));
                pause();
            }
            name
        }
    };
    let mut a = paused(start(None, body("a", log.clone())).unwrap());
    let mut b = paused(start(None, body("b", log.clone())).unwrap());
    for _ in 0..2 {
        a = paused(a.resume().unwrap());
        b = paused(b.resume().unwrap());
    }
    // Finish b first, then a.
    assert_eq!(finished(b.resume().unwrap()), "b");
    assert_eq!(finished(a.resume().unwrap()), "a");
    assert_eq!(*log.borrow(), ["a0", "b0", "a1", "b1", "a2", "b2"]);
}

/// The bounds of the calling thread's stack, as the C library reports them.
#[cfg(target_os = "linux")]
fn thread_stack_bounds() -> std::ops::Range<usize> {
    let mut attr = std::mem::MaybeUninit::<libc::pthread_attr_t>::uninit();
    // SAFETY: pthread_getattr_np initialises `attr` for the calling thread;
    // it is destroyed once and only after a successful init.
    unsafe {
        assert_eq!(libc::pthread_getattr_np(libc::pthread_self(), attr.as_mut_ptr()), 0);
        let mut addr = std::ptr::null_mut();
        let mut size = 0;
        assert_eq!(libc::pthread_attr_getstack(attr.as_ptr(), &mut addr, &mut size), 0);
        libc::pthread_attr_destroy(attr.as_mut_ptr());
        addr as usize..addr as usize + size
    }
}

#[test]
fn job_runs_on_a_stack_apart_from_the_callers() {
    require_backend!();
    init_thread_with(&PoolConfig::new().stack_size(64 * 1024)).unwrap();
    let outside = common::stack_pointer();
    let (inside, local, local_after_pause) = run_to_end(
        start(None, || {
            let local = 0u8;
            let a = black_box(&local) as *const u8 as usize;
            let inside = common::stack_pointer();
            pause();
            (inside, a, black_box(&local) as *const u8 as usize)
        })
        .unwrap(),
    )
    .0;
    assert_eq!(local, local_after_pause, "a local keeps its address across a pause");
    assert!(outside.abs_diff(inside) > 64 * 1024, "job stack pointer {inside:#x} is near the caller's {outside:#x}");
    #[cfg(target_os = "linux")]
    {
        let bounds = thread_stack_bounds();
        assert!(bounds.contains(&outside), "the caller must run on the thread stack");
        assert!(!bounds.contains(&inside), "the job runs at {inside:#x}, on the thread stack {bounds:x?}");
    }
    stackjob::cleanup_thread();
}

/// Uses about `N` bytes of stack in one frame and returns a checksum of it.
#[inline(never)]
fn use_stack<const N: usize>() -> u64 {
    let mut buf = [0u8; N];
    black_box(&mut buf);
    for (i, b) in buf.iter_mut().enumerate() {
        *b = i as u8;
    }
    black_box(&buf).iter().map(|&b| b as u64).sum()
}

#[test]
fn job_with_a_64_kib_stack_can_use_48_kib_of_locals() {
    require_backend!();
    init_thread_with(&PoolConfig::new().stack_size(64 * 1024).max_size(1)).unwrap();
    assert_eq!(pool_stats().stack_size, 64 * 1024);
    const N: usize = 48 * 1024;
    let sum = finished(start(None, use_stack::<N>).unwrap());
    assert_eq!(sum, (0..N).map(|i| (i as u8) as u64).sum::<u64>());
    // And again after a pause, on the same stack.
    let job = paused(
        start(None, || {
            pause();
            use_stack::<N>()
        })
        .unwrap(),
    );
    assert_eq!(finished(job.resume().unwrap()), sum);
    stackjob::cleanup_thread();
}

/// Closures and results on both sides of the size up to which the core
/// keeps them at the top of the job's stack (512 bytes) arrive intact,
/// across a pause.
fn job_round_trip_of_size<const N: usize>(seed: u8) {
    let mut data = [0u8; N];
    for (i, b) in data.iter_mut().enumerate() {
        *b = (i as u8).wrapping_mul(17).wrapping_add(seed);
    }
    let expect = data;
    let job = paused(
        start(None, move || {
            let mut out = black_box(data);
            pause();
            out.reverse();
            out
        })
        .unwrap(),
    );
    let mut got = finished(job.resume().unwrap());
    got.reverse();
    assert!(got == expect, "a {N}-byte closure or result arrived corrupted");
    let v = finished(start(None, move || [seed; N]).unwrap());
    assert!(v.iter().all(|&b| b == seed), "a {N}-byte result of a job that never paused");
}

#[test]
fn closures_and_results_of_every_size_arrive_intact() {
    require_backend!();
    job_round_trip_of_size::<1>(1);
    job_round_trip_of_size::<496>(2);
    job_round_trip_of_size::<512>(3);
    job_round_trip_of_size::<513>(4);
    job_round_trip_of_size::<8192>(5);
}
