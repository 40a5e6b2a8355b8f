//! The runtime-neutral bridge (`stackjob::bridge`) on an executor that is
//! not tokio: the `futures` crate's `LocalPool`. Completions arrive on
//! other threads through the wait context's waker hook (callback mode);
//! `wait` awaits a future that is not tokio's; `NoJobs` is backpressure.
//!
//! Built with `--features tokio-dev` (which brings the `futures` crate).
#![cfg(target_os = "linux")]

#[macro_use]
mod common;

use futures::executor::{LocalPool, LocalSpawner};
use futures::task::LocalSpawnExt;
use stackjob::bridge::{JobDriver, Mode, NoFds, wait};
use std::cell::Cell;
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};
use std::thread;

/// A one-shot value set from another thread: a future that is not tokio's.
#[derive(Default)]
struct Slot {
    value: Option<u64>,
    waker: Option<Waker>,
}

#[derive(Clone, Default)]
struct Shot(Arc<Mutex<Slot>>);

impl Shot {
    fn set(&self, v: u64) {
        let waker = {
            let mut s = self.0.lock().unwrap();
            s.value = Some(v);
            s.waker.take()
        };
        if let Some(w) = waker {
            w.wake();
        }
    }
}

impl Future for Shot {
    type Output = u64;
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<u64> {
        let mut s = self.0.lock().unwrap();
        match s.value.take() {
            Some(v) => Poll::Ready(v),
            None => {
                s.waker = Some(cx.waker().clone());
                Poll::Pending
            }
        }
    }
}

fn spawn<F: Future<Output = ()> + 'static>(spawner: &LocalSpawner, fut: F) {
    spawner.spawn_local(fut).expect("the pool is alive");
}

#[test]
fn local_pool_drives_jobs_completed_from_other_threads() {
    require_backend!();
    const JOBS: u64 = 500;
    let (tx, rx) = mpsc::channel::<(u64, Arc<Mutex<Option<u64>>>, stackjob::WaitCtx)>();
    // The "device": completes on its own thread through the context's callback.
    let device = thread::spawn(move || {
        let mut n = 0;
        for (x, out, ctx) in rx {
            *out.lock().unwrap() = Some(x + 1000);
            (ctx.callback().expect("callback mode"))();
            n += 1;
        }
        n
    });
    let mut pool = LocalPool::new();
    let sum = Rc::new(Cell::new(0u64));
    for x in 0..JOBS {
        let (tx, sum) = (tx.clone(), sum.clone());
        let driver = JobDriver::<NoFds>::with_mode(Mode::Callback);
        spawn(&pool.spawner(), async move {
            let v = driver
                .into_run(move || {
                    let out = Arc::new(Mutex::new(None));
                    tx.send((x, out.clone(), stackjob::current_wait_ctx().unwrap())).unwrap();
                    loop {
                        stackjob::pause();
                        if let Some(v) = out.lock().unwrap().take() {
                            return v;
                        }
                    }
                })
                .await
                .unwrap();
            assert_eq!(v, x + 1000);
            sum.set(sum.get() + v);
        });
    }
    drop(tx);
    pool.run();
    assert_eq!(device.join().unwrap(), JOBS);
    assert_eq!(sum.get(), (0..JOBS).map(|x| x + 1000).sum::<u64>());
    assert_eq!(stackjob::pool_stats().in_use, 0);
}

#[test]
fn wait_awaits_a_foreign_future_and_no_jobs_is_backpressure() {
    require_backend!();
    stackjob::init_thread(2, 0).unwrap();
    let mut pool = LocalPool::new();
    let shots: Vec<Shot> = (0..20).map(|_| Shot::default()).collect();
    let done = Rc::new(Cell::new(0u32));
    for (i, shot) in shots.iter().enumerate() {
        let (shot, done) = (shot.clone(), done.clone());
        spawn(&pool.spawner(), async move {
            let v = JobDriver::<NoFds>::new().into_run(move || wait(shot).unwrap()).await.unwrap();
            assert_eq!(v, i as u64 * 3);
            done.set(done.get() + 1);
        });
    }
    // Run until every task is stuck: two jobs wait, 18 futures wait for a stack.
    pool.run_until_stalled();
    assert_eq!(stackjob::pool_stats().in_use, 2);
    let setter = {
        let shots = shots.clone();
        thread::spawn(move || {
            for (i, s) in shots.iter().enumerate() {
                s.set(i as u64 * 3);
            }
        })
    };
    setter.join().unwrap();
    pool.run();
    assert_eq!(done.get(), 20);
    assert_eq!(stackjob::pool_stats().in_use, 0);
    stackjob::cleanup_thread();
}
