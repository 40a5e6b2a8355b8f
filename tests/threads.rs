//! Jobs on many threads at once: every thread has its own pool, its own
//! current job and its own paused jobs, and a thread may exit with paused
//! jobs still alive.

mod common;
use common::{finished, paused};
use stackjob::{Error, Job, PoolConfig, Step, WaitCtx, WaitKey, in_job, init_thread_with, pause, pool_stats, start};
use std::cell::RefCell;
use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Barrier, Mutex};
use std::thread;

/// Whether jobs can run here; prints why the calling test is skipped if not.
fn jobs_available(test: &str) -> bool {
    if stackjob::is_capable() {
        return true;
    }
    eprintln!(
        "skipping {test}: stackjob::is_capable() is false here (backend `{}`), so no job can run",
        stackjob::backend()
    );
    false
}

/// What one job computes: a hash of its id over `pauses + 1` segments.
fn expected_value(thread: usize, id: u64) -> u64 {
    let mut acc = id ^ ((thread as u64) << 32);
    for k in 0..pauses_of(id) {
        acc = acc.wrapping_mul(0x9E37_79B9_7F4A_7C15).wrapping_add(k);
    }
    acc
}

fn pauses_of(id: u64) -> u64 {
    id % 5 + 1
}

/// The job body: the same computation as `expected_value`, with a pause
/// (and a wait-fd update) between every two steps, and the running state on
/// the job's own stack.
fn job_body(thread: usize, id: u64) -> impl FnOnce() -> u64 + 'static {
    move || {
        let mut acc = id ^ ((thread as u64) << 32);
        for k in 0..pauses_of(id) {
            acc = acc.wrapping_mul(0x9E37_79B9_7F4A_7C15).wrapping_add(k);
            if let Some(ctx) = stackjob::current_wait_ctx() {
                ctx.set_wait_fd(WaitKey::new(k as usize), k as i32, id as usize, None);
            }
            assert!(in_job());
            pause();
        }
        acc
    }
}

struct Plan {
    config: PoolConfig,
    max_size: usize,
    init_size: usize,
    stack_size: usize,
    jobs: u64,
}

fn plans() -> Vec<Plan> {
    let shapes = [
        (0, 0, stackjob::DEFAULT_STACK_SIZE),
        (1, 1, stackjob::MIN_STACK_SIZE),
        (2, 0, 64 * 1024),
        (3, 3, 80 * 1024),
        (4, 2, stackjob::DEFAULT_STACK_SIZE),
        (6, 1, 128 * 1024),
        (0, 5, 96 * 1024),
        (8, 8, stackjob::MIN_STACK_SIZE),
    ];
    shapes
        .into_iter()
        .enumerate()
        .map(|(i, (max_size, init_size, stack_size))| Plan {
            config: PoolConfig::new().max_size(max_size).init_size(init_size).stack_size(stack_size).scrub(i % 2 == 1),
            max_size,
            init_size,
            stack_size,
            jobs: 24 + i as u64 * 3,
        })
        .collect()
}

/// A thread's remaining meetings at a shared barrier. If the thread panics,
/// dropping this attends the meetings it missed, so the other threads fail
/// or finish instead of waiting forever.
struct Rendezvous<'a> {
    barrier: &'a Barrier,
    left: usize,
}

impl Rendezvous<'_> {
    fn meet(&mut self) {
        self.left -= 1;
        self.barrier.wait();
    }
}

impl Drop for Rendezvous<'_> {
    fn drop(&mut self) {
        for _ in 0..self.left {
            self.barrier.wait();
        }
    }
}

/// One thread's share of the interleaving test; returns every job's value.
fn run_thread(index: usize, plan: &Plan, barrier: &Barrier) -> Vec<(u64, u64)> {
    let mut rendezvous = Rendezvous { barrier, left: 2 };
    init_thread_with(&plan.config).unwrap();
    let stats = pool_stats();
    assert_eq!((stats.idle, stats.in_use), (plan.init_size, 0));
    assert_eq!((stats.max_size, stats.stack_size), (plan.max_size, plan.stack_size));
    // How many jobs this thread keeps paused at once.
    let width = if plan.max_size == 0 { 7 } else { plan.max_size };

    let mut results = Vec::new();
    let mut active: VecDeque<(u64, Job<u64>)> = VecDeque::new();
    let mut next_id = 0;
    let ctx = WaitCtx::new();

    // Phase 1: fill the pool with paused jobs, then check, while every other
    // thread holds its own, that this thread's stats are its own.
    while (active.len() as u64) < (width as u64).min(plan.jobs) {
        let use_ctx = next_id % 2 == 0;
        let step = start(use_ctx.then_some(&ctx), job_body(index, next_id)).unwrap();
        active.push_back((next_id, paused(step)));
        next_id += 1;
    }
    rendezvous.meet();
    let stats = pool_stats();
    assert_eq!(stats.in_use, active.len(), "thread {index}: another thread's jobs counted here");
    assert_eq!(stats.max_size, plan.max_size);
    if plan.max_size != 0 {
        let err = start(None, || ()).unwrap_err();
        assert!(
            matches!(err, Error::NoJobs { in_use, max_size } if in_use == plan.max_size && max_size == plan.max_size),
            "thread {index}: expected NoJobs at the limit, got {err}"
        );
    }
    rendezvous.meet();

    // Phase 2: resume round robin, topping up with new jobs as stacks free up.
    while let Some((id, job)) = active.pop_front() {
        match job.resume().unwrap() {
            Step::Paused(job) => active.push_back((id, job)),
            Step::Finished(value) => {
                results.push((id, value));
                if next_id < plan.jobs {
                    let step = start(None, job_body(index, next_id)).unwrap();
                    active.push_back((next_id, paused(step)));
                    next_id += 1;
                }
            }
        }
        assert_eq!(pool_stats().in_use, active.len(), "thread {index}");
    }
    assert_eq!(next_id, plan.jobs);
    let stats = pool_stats();
    assert_eq!(stats.in_use, 0);
    assert!(plan.max_size == 0 || stats.idle <= plan.max_size);
    results
}

#[test]
fn threads_with_their_own_pools_run_interleaved_jobs_correctly() {
    if !jobs_available("threads_with_their_own_pools_run_interleaved_jobs_correctly") {
        return;
    }
    let plans = Arc::new(plans());
    let barrier = Arc::new(Barrier::new(plans.len()));
    let handles: Vec<_> = (0..plans.len())
        .map(|index| {
            let plans = plans.clone();
            let barrier = barrier.clone();
            thread::spawn(move || run_thread(index, &plans[index], &barrier))
        })
        .collect();
    for (index, handle) in handles.into_iter().enumerate() {
        let mut results = handle.join().unwrap();
        results.sort_unstable();
        let expected: Vec<_> = (0..plans[index].jobs).map(|id| (id, expected_value(index, id))).collect();
        assert_eq!(results, expected, "thread {index}");
    }
}

#[test]
fn pool_stats_and_limits_are_per_thread() {
    if !jobs_available("pool_stats_and_limits_are_per_thread") {
        return;
    }
    init_thread_with(&PoolConfig::new().max_size(3).init_size(2)).unwrap();
    let a = paused(start(None, pause).unwrap());
    let b = paused(start(None, pause).unwrap());
    let mine = pool_stats();
    assert_eq!((mine.idle, mine.in_use, mine.max_size), (0, 2, 3));

    let other = thread::spawn(|| {
        let fresh = pool_stats();
        init_thread_with(&PoolConfig::new().max_size(1).init_size(1)).unwrap();
        let job = paused(start(None, pause).unwrap());
        let busy = pool_stats();
        let refused = matches!(start(None, || ()), Err(Error::NoJobs { in_use: 1, max_size: 1 }));
        finished(job.resume().unwrap());
        (fresh, busy, refused)
    });
    let (fresh, busy, refused) = other.join().unwrap();
    assert_eq!(
        (fresh.idle, fresh.in_use, fresh.max_size),
        (0, 0, 0),
        "a new thread starts with the default, empty pool"
    );
    assert_eq!((busy.idle, busy.in_use, busy.max_size), (0, 1, 1));
    assert!(refused, "the other thread's limit of 1 applies to it alone");
    assert_eq!(pool_stats(), mine, "the other thread's pool did not touch ours");

    // Our limit of 3 still allows one more job here.
    let c = paused(start(None, pause).unwrap());
    assert!(matches!(start(None, || ()), Err(Error::NoJobs { in_use: 3, max_size: 3 })));
    for job in [a, b, c] {
        finished(job.resume().unwrap());
    }
    assert_eq!(pool_stats().idle, 3);
}

#[test]
fn in_job_is_false_on_a_thread_that_never_started_a_job_while_another_runs_one() {
    if !jobs_available("in_job_is_false_on_a_thread_that_never_started_a_job_while_another_runs_one") {
        return;
    }
    let (ask_tx, ask_rx) = mpsc::channel::<()>();
    let (answer_tx, answer_rx) = mpsc::channel::<(bool, bool)>();
    let observer = thread::spawn(move || {
        // One answer per question: (in_job, has a current wait ctx).
        for () in ask_rx {
            let seen = (in_job(), stackjob::current_wait_ctx().is_some());
            answer_tx.send(seen).unwrap();
        }
    });

    let ctx = WaitCtx::new();
    let ask = ask_tx.clone();
    let answers = Arc::new(Mutex::new(Vec::new()));
    let record = answers.clone();
    let job = paused(
        start(Some(&ctx), move || {
            // While this job runs (not paused), ask the other thread.
            ask.send(()).unwrap();
            record.lock().unwrap().push((in_job(), answer_rx.recv().unwrap()));
            pause();
            answer_rx
        })
        .unwrap(),
    );
    // While the job is paused: neither this thread nor the other is in a job.
    assert!(!in_job());
    ask_tx.send(()).unwrap();
    let answer_rx = finished(job.resume().unwrap());
    let while_paused = answer_rx.recv().unwrap();
    drop(ask_tx);
    observer.join().unwrap();

    assert_eq!(
        *answers.lock().unwrap(),
        vec![(true, (false, false))],
        "the job is in a job; the observer thread, asked while the job ran, is not"
    );
    assert_eq!(while_paused, (false, false));
}

/// Counts how many of the jobs' destructors ran.
struct CountDrop(Arc<AtomicUsize>);

impl Drop for CountDrop {
    fn drop(&mut self) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
}

fn pausing_job(drops: &Arc<AtomicUsize>) -> Job<()> {
    let guard = CountDrop(drops.clone());
    paused(
        start(None, move || {
            let _guard = guard;
            loop {
                pause();
            }
        })
        .unwrap(),
    )
}

thread_local! {
    static KEPT_JOBS: RefCell<Vec<Job<()>>> = const { RefCell::new(Vec::new()) };
    static EARLY_KEPT_JOBS: RefCell<Vec<Job<()>>> = const { RefCell::new(Vec::new()) };
}

#[test]
fn a_thread_exiting_with_paused_jobs_in_thread_locals_cancels_them_cleanly() {
    if !jobs_available("a_thread_exiting_with_paused_jobs_in_thread_locals_cancels_them_cleanly") {
        return;
    }
    let drops = Arc::new(AtomicUsize::new(0));
    let counter = drops.clone();
    let worker = thread::spawn(move || {
        // Registered before the pool exists: torn down after it, so these
        // jobs are cancelled with the pool gone (their stacks are unmapped).
        EARLY_KEPT_JOBS.with(|jobs| jobs.borrow_mut().clear());
        init_thread_with(&PoolConfig::new().max_size(5).init_size(2)).unwrap();
        for i in 0..4 {
            let job = pausing_job(&counter);
            let store = if i % 2 == 0 { &KEPT_JOBS } else { &EARLY_KEPT_JOBS };
            store.with(|jobs| jobs.borrow_mut().push(job));
        }
        assert_eq!(pool_stats().in_use, 4);
        // Exit with all four paused.
    });
    worker.join().expect("the thread exits cleanly");
    assert_eq!(drops.load(Ordering::SeqCst), 4, "every job was unwound at thread exit");
}

#[test]
fn a_thread_exiting_with_paused_jobs_as_locals_after_cleanup_cancels_them() {
    if !jobs_available("a_thread_exiting_with_paused_jobs_as_locals_after_cleanup_cancels_them") {
        return;
    }
    let drops = Arc::new(AtomicUsize::new(0));
    let counter = drops.clone();
    let worker = thread::spawn(move || {
        let jobs: Vec<_> = (0..3).map(|_| pausing_job(&counter)).collect();
        stackjob::cleanup_thread();
        let stats = pool_stats();
        assert_eq!(
            (stats.idle, stats.in_use),
            (0, 0),
            "after cleanup the thread has a fresh pool; paused jobs own their stacks"
        );
        // A new job on the fresh pool works alongside the old ones.
        assert_eq!(finished(start(None, || 5).unwrap()), 5);
        drop(jobs);
        pool_stats()
    });
    let stats = worker.join().expect("the thread exits cleanly");
    assert_eq!(drops.load(Ordering::SeqCst), 3);
    assert_eq!((stats.idle, stats.in_use), (1, 0), "old stacks did not come back to the new pool");
}

#[test]
fn a_thread_panicking_with_a_paused_job_still_unwinds_the_job() {
    if !jobs_available("a_thread_panicking_with_a_paused_job_still_unwinds_the_job") {
        return;
    }
    let drops = Arc::new(AtomicUsize::new(0));
    let counter = drops.clone();
    let quarantined = Arc::new(AtomicUsize::new(usize::MAX));
    let q = quarantined.clone();
    let worker = thread::Builder::new()
        .name("panics-with-a-paused-job".into())
        .spawn(move || {
            /// Records, after `_job` (declared later) was dropped, how many
            /// stacks the thread quarantined meanwhile.
            struct Report(u64, Arc<AtomicUsize>);
            impl Drop for Report {
                fn drop(&mut self) {
                    self.1.store((stackjob::quarantined_jobs() - self.0) as usize, Ordering::SeqCst);
                }
            }
            let _report = Report(stackjob::quarantined_jobs(), q);
            let _job = pausing_job(&counter);
            panic!("deliberate panic with a paused job alive");
        })
        .unwrap();
    assert!(worker.join().is_err(), "the thread panicked");
    // Dropped while its thread unwinds, the job is still cancelled: the
    // values on its stack are dropped.
    assert_eq!(drops.load(Ordering::SeqCst), 1);
    assert_eq!(quarantined.load(Ordering::SeqCst), 0, "nothing was quarantined");
}

/// Starts and runs a job from its destructor, at thread exit.
struct StartsJobOnDrop(Arc<Mutex<Option<u32>>>);

impl Drop for StartsJobOnDrop {
    fn drop(&mut self) {
        let job = paused(
            start(None, || {
                pause();
                41
            })
            .unwrap(),
        );
        let value = finished(job.resume().unwrap()) + 1;
        *self.0.lock().unwrap() = Some(value);
    }
}

thread_local! {
    static STARTER: RefCell<Option<StartsJobOnDrop>> = const { RefCell::new(None) };
}

#[test]
fn a_job_started_from_a_thread_local_destructor_after_the_pool_is_gone_runs() {
    if !jobs_available("a_job_started_from_a_thread_local_destructor_after_the_pool_is_gone_runs") {
        return;
    }
    let result = Arc::new(Mutex::new(None));
    let slot = result.clone();
    thread::spawn(move || {
        // Registered before the pool: destroyed after it.
        STARTER.with(|s| *s.borrow_mut() = Some(StartsJobOnDrop(slot)));
        assert_eq!(finished(start(None, || 1).unwrap()), 1);
    })
    .join()
    .expect("the thread exits cleanly");
    assert_eq!(*result.lock().unwrap(), Some(42));
}
