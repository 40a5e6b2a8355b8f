//! Wait-context fd bookkeeping across the run segments of a job, cleanup
//! timing, ownership, the callback and the status.
//!
//! The reference is §2.8 of `spec/openssl-async-semantics.md`, except for
//! the differences `src/wait_ctx.rs` documents on purpose: the change
//! tracking restarts at the start of *every* run segment (a fresh start
//! included), the context is thread-safe, and it is reference-counted.
//!
//! Tests that need jobs skip (with a message) where `is_capable()` is false;
//! the tests that only use a `WaitCtx` run everywhere.

mod common;
use common::{finished, paused};
use stackjob::{ChangedFds, Cleanup, RawFd, Status, WaitCtx, WaitKey, current_wait_ctx, pause, start};
use std::cell::RefCell;
use std::rc::Rc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

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

/// The running job's wait ctx; panics if the job has none.
fn job_ctx() -> WaitCtx {
    current_wait_ctx().expect("the job was started with a wait ctx")
}

fn changed(added: &[RawFd], deleted: &[RawFd]) -> ChangedFds {
    ChangedFds { added: added.to_vec(), deleted: deleted.to_vec() }
}

/// A shared log of `(key, fd, data)` triples, one per cleanup call.
type CleanupLog = Arc<Mutex<Vec<(usize, RawFd, usize)>>>;

fn logging_cleanup(log: &CleanupLog) -> Option<Cleanup> {
    let log = log.clone();
    Some(Box::new(move |key: WaitKey, fd, data| {
        log.lock().unwrap().push((key.get(), fd, data));
    }))
}

fn counting_cleanup(count: &Arc<AtomicUsize>) -> Option<Cleanup> {
    let count = count.clone();
    Some(Box::new(move |_, _, _| {
        count.fetch_add(1, Ordering::SeqCst);
    }))
}

const K1: WaitKey = WaitKey::new(1);
const K2: WaitKey = WaitKey::new(2);
const K3: WaitKey = WaitKey::new(3);

#[test]
fn fd_set_in_a_segment_is_reported_added_until_a_segment_without_changes() {
    if !jobs_available("fd_set_in_a_segment_is_reported_added_until_a_segment_without_changes") {
        return;
    }
    let ctx = WaitCtx::new();
    let job = paused(
        start(Some(&ctx), || {
            job_ctx().set_wait_fd(K1, 10, 100, None);
            pause();
            pause(); // a segment that changes nothing
            job_ctx().get_fd(K1)
        })
        .unwrap(),
    );
    assert_eq!(ctx.changed_fds(), changed(&[10], &[]));
    assert_eq!(ctx.all_fds(), vec![10]);
    assert_eq!(ctx.get_fd(K1), Some((10, 100)));

    let job = paused(job.resume().unwrap());
    assert_eq!(ctx.changed_fds(), changed(&[], &[]));
    assert_eq!(ctx.all_fds(), vec![10], "the fd itself stays registered");

    assert_eq!(finished(job.resume().unwrap()), Some((10, 100)));
    assert_eq!(ctx.changed_fds(), changed(&[], &[]));
    assert_eq!(ctx.fd_count(), 1, "finishing a job does not clear its fds");
}

#[test]
fn fds_added_in_several_segments_are_reported_only_for_their_own_segment() {
    if !jobs_available("fds_added_in_several_segments_are_reported_only_for_their_own_segment") {
        return;
    }
    let ctx = WaitCtx::new();
    let job = paused(
        start(Some(&ctx), || {
            let ctx = job_ctx();
            ctx.set_wait_fd(K1, 10, 0, None);
            ctx.set_wait_fd(K2, 20, 0, None);
            drop(ctx);
            pause();
            job_ctx().set_wait_fd(K3, 30, 0, None);
            pause();
        })
        .unwrap(),
    );
    assert_eq!(ctx.changed_fds(), changed(&[20, 10], &[]), "newest first");
    let job = paused(job.resume().unwrap());
    assert_eq!(ctx.changed_fds(), changed(&[30], &[]));
    assert_eq!(ctx.all_fds(), vec![30, 20, 10]);
    finished(job.resume().unwrap());
}

#[test]
fn clearing_an_fd_added_in_the_same_segment_leaves_no_trace() {
    if !jobs_available("clearing_an_fd_added_in_the_same_segment_leaves_no_trace") {
        return;
    }
    let ctx = WaitCtx::new();
    let cleanups = Arc::new(AtomicUsize::new(0));
    let in_job = cleanups.clone();
    let job = paused(
        start(Some(&ctx), move || {
            let ctx = job_ctx();
            ctx.set_wait_fd(K1, 11, 0, counting_cleanup(&in_job));
            let found = ctx.clear_fd(K1);
            let visible = (ctx.get_fd(K1), ctx.fd_count());
            drop(ctx);
            pause();
            (found, visible)
        })
        .unwrap(),
    );
    assert_eq!(ctx.changed_fds(), changed(&[], &[]), "net effect zero: no added, no deleted report");
    assert!(ctx.all_fds().is_empty());
    assert_eq!(ctx.get_fd(K1), None);
    assert_eq!(ctx.fd_count(), 0);
    let (found, visible) = finished(job.resume().unwrap());
    assert!(found, "clear_fd reports that it found the entry");
    assert_eq!(visible, (None, 0));
    drop(ctx);
    assert_eq!(cleanups.load(Ordering::SeqCst), 0, "clear_fd never runs the cleanup");
}

#[test]
fn clearing_an_older_fd_hides_it_at_once_and_reports_it_deleted_for_one_segment() {
    if !jobs_available("clearing_an_older_fd_hides_it_at_once_and_reports_it_deleted_for_one_segment") {
        return;
    }
    let ctx = WaitCtx::new();
    let cleanups = Arc::new(AtomicUsize::new(0));
    let in_job = cleanups.clone();
    let job = paused(
        start(Some(&ctx), move || {
            job_ctx().set_wait_fd(K1, 12, 7, counting_cleanup(&in_job));
            job_ctx().set_wait_fd(K2, 13, 8, None);
            pause();
            let ctx = job_ctx();
            let found = ctx.clear_fd(K1);
            // Invisible to the queries at once, inside the job already.
            let seen = (ctx.get_fd(K1), ctx.all_fds(), ctx.fd_count());
            drop(ctx);
            pause();
            pause();
            (found, seen)
        })
        .unwrap(),
    );
    assert_eq!(ctx.changed_fds(), changed(&[13, 12], &[]));

    let job = paused(job.resume().unwrap());
    assert_eq!(ctx.changed_fds(), changed(&[], &[12]));
    assert_eq!(ctx.get_fd(K1), None);
    assert_eq!(ctx.all_fds(), vec![13]);
    assert_eq!(ctx.fd_count(), 1);

    let job = paused(job.resume().unwrap());
    assert_eq!(ctx.changed_fds(), changed(&[], &[]), "the deletion is reported for one segment only");
    assert_eq!(ctx.all_fds(), vec![13]);

    let (found, seen) = finished(job.resume().unwrap());
    assert!(found);
    assert_eq!(seen, (None, vec![13], 1));
    drop(ctx);
    assert_eq!(cleanups.load(Ordering::SeqCst), 0, "a cleared entry's cleanup never runs");
}

#[test]
fn after_finish_changed_fds_report_the_final_segment() {
    if !jobs_available("after_finish_changed_fds_report_the_final_segment") {
        return;
    }
    let ctx = WaitCtx::new();
    let job = paused(
        start(Some(&ctx), || {
            job_ctx().set_wait_fd(K1, 14, 0, None);
            pause();
            // OpenSSL's "add=0 del=1 after FINISH": delete an older fd, add one, return.
            let ctx = job_ctx();
            assert!(ctx.clear_fd(K1));
            ctx.set_wait_fd(K2, 15, 0, None);
        })
        .unwrap(),
    );
    finished(job.resume().unwrap());
    assert_eq!(ctx.changed_fds(), changed(&[15], &[14]));
    assert_eq!(ctx.all_fds(), vec![15]);
}

/// The deliberate difference from OpenSSL: the change tracking restarts at
/// a fresh start too, so a new job never sees the previous job's last
/// changes (nor changes the caller made before starting it).
#[test]
fn a_fresh_start_restarts_the_change_tracking() {
    if !jobs_available("a_fresh_start_restarts_the_change_tracking") {
        return;
    }
    let ctx = WaitCtx::new();
    ctx.set_wait_fd(K3, 30, 0, None); // by the caller, before any job
    finished(
        start(Some(&ctx), || {
            let ctx = job_ctx();
            ctx.set_wait_fd(K1, 16, 0, None);
            assert!(ctx.clear_fd(K3));
        })
        .unwrap(),
    );
    assert_eq!(ctx.changed_fds(), changed(&[16], &[30]), "the finished job's only segment");

    let job = paused(start(Some(&ctx), pause).unwrap());
    assert_eq!(ctx.changed_fds(), changed(&[], &[]), "the new job's first segment changed nothing");
    assert_eq!(ctx.all_fds(), vec![16]);
    finished(job.resume().unwrap());
}

#[test]
fn changes_made_by_the_resumer_between_segments_are_forgotten_at_resume() {
    if !jobs_available("changes_made_by_the_resumer_between_segments_are_forgotten_at_resume") {
        return;
    }
    let ctx = WaitCtx::new();
    let job = paused(start(Some(&ctx), pause).unwrap());
    ctx.set_wait_fd(K1, 17, 0, None);
    assert_eq!(ctx.changed_fds(), changed(&[17], &[]));
    finished(job.resume().unwrap());
    assert_eq!(ctx.changed_fds(), changed(&[], &[]));
    assert_eq!(ctx.all_fds(), vec![17]);
}

#[test]
fn duplicate_keys_newer_shadows_older_and_clear_removes_only_the_newer() {
    // No job needed: the shadowing rules hold for any context.
    let ctx = WaitCtx::new();
    ctx.set_wait_fd(K1, 1, 10, None);
    ctx.set_wait_fd(K1, 2, 20, None);
    assert_eq!(ctx.get_fd(K1), Some((2, 20)), "the newer entry shadows the older");
    assert_eq!(ctx.all_fds(), vec![2, 1], "both entries stay live");
    assert_eq!(ctx.fd_count(), 2);

    assert!(ctx.clear_fd(K1));
    assert_eq!(ctx.get_fd(K1), Some((1, 10)), "clear removed only the newer");
    assert_eq!(ctx.all_fds(), vec![1]);

    assert!(ctx.clear_fd(K1));
    assert_eq!(ctx.get_fd(K1), None);
    assert!(!ctx.clear_fd(K1), "nothing left to clear");
    assert_eq!(ctx.fd_count(), 0);
}

#[test]
fn duplicate_keys_across_segments_clear_the_newer_first() {
    if !jobs_available("duplicate_keys_across_segments_clear_the_newer_first") {
        return;
    }
    let ctx = WaitCtx::new();
    let job = paused(
        start(Some(&ctx), || {
            job_ctx().set_wait_fd(K1, 1, 10, None);
            pause();
            let ctx = job_ctx();
            ctx.set_wait_fd(K1, 2, 20, None);
            assert_eq!(ctx.get_fd(K1), Some((2, 20)));
            assert!(ctx.clear_fd(K1)); // the newer one, added in this segment
            drop(ctx);
            pause();
            assert!(job_ctx().clear_fd(K1)); // now the older one
            pause();
        })
        .unwrap(),
    );
    let job = paused(job.resume().unwrap());
    assert_eq!(ctx.changed_fds(), changed(&[], &[]), "the newer entry vanished without a trace");
    assert_eq!(ctx.get_fd(K1), Some((1, 10)), "the older entry is visible again");
    let job = paused(job.resume().unwrap());
    assert_eq!(ctx.changed_fds(), changed(&[], &[1]));
    assert_eq!(ctx.get_fd(K1), None);
    finished(job.resume().unwrap());
}

#[test]
fn all_fds_lists_live_fds_newest_first_and_fd_count_counts_them() {
    let ctx = WaitCtx::new();
    assert!(ctx.all_fds().is_empty());
    assert_eq!(ctx.fd_count(), 0);
    for (key, fd) in [(1, 40), (2, 41), (3, 42), (4, 43)] {
        ctx.set_wait_fd(WaitKey::new(key), fd, 0, None);
    }
    assert_eq!(ctx.all_fds(), vec![43, 42, 41, 40]);
    assert_eq!(ctx.fd_count(), 4);
    assert!(ctx.clear_fd(WaitKey::new(2)));
    assert_eq!(ctx.all_fds(), vec![43, 42, 40]);
    assert_eq!(ctx.fd_count(), 3);
    assert!(!ctx.clear_fd(WaitKey::new(9)), "an unknown key is not found");
    assert_eq!(ctx.fd_count(), 3);
}

#[test]
fn cleanups_run_once_per_live_entry_newest_first_when_the_last_clone_drops() {
    let log: CleanupLog = Arc::default();
    let ctx = WaitCtx::new();
    ctx.set_wait_fd(K1, 50, 500, logging_cleanup(&log));
    ctx.set_wait_fd(K2, 51, 510, logging_cleanup(&log));
    ctx.set_wait_fd(K3, 52, 520, None); // no cleanup: nothing to call
    ctx.set_wait_fd(K1, 53, 530, logging_cleanup(&log));
    ctx.set_wait_fd(K3, 54, 540, logging_cleanup(&log));
    assert!(ctx.clear_fd(K3)); // the newer K3 entry: never cleaned up
    let clone = ctx.clone();
    assert!(clone.same_as(&ctx));
    drop(ctx);
    assert!(log.lock().unwrap().is_empty(), "a clone is still alive");
    drop(clone);
    assert_eq!(
        *log.lock().unwrap(),
        vec![(1, 53, 530), (2, 51, 510), (1, 50, 500)],
        "once per live entry with a cleanup, newest first, with its key, fd and data"
    );
}

#[test]
fn cleanup_runs_on_the_thread_that_drops_the_last_clone() {
    // The context is Send: whoever drops the last clone runs the cleanups.
    let ran_on = Arc::new(Mutex::new(None));
    let ctx = WaitCtx::new();
    let slot = ran_on.clone();
    ctx.set_wait_fd(
        K1,
        60,
        0,
        Some(Box::new(move |_, _, _| {
            *slot.lock().unwrap() = Some(std::thread::current().id());
        })),
    );
    let dropper = std::thread::spawn(move || {
        drop(ctx);
        std::thread::current().id()
    });
    let dropper_id = dropper.join().unwrap();
    assert_eq!(*ran_on.lock().unwrap(), Some(dropper_id));
}

#[test]
fn entries_deleted_in_the_final_segment_are_not_cleaned_up() {
    if !jobs_available("entries_deleted_in_the_final_segment_are_not_cleaned_up") {
        return;
    }
    let log: CleanupLog = Arc::default();
    let ctx = WaitCtx::new();
    let in_job = log.clone();
    let job = paused(
        start(Some(&ctx), move || {
            let ctx = job_ctx();
            ctx.set_wait_fd(K1, 70, 1, logging_cleanup(&in_job));
            ctx.set_wait_fd(K2, 71, 2, logging_cleanup(&in_job));
            drop(ctx);
            pause();
            assert!(job_ctx().clear_fd(K1)); // older entry: kept, flagged deleted
        })
        .unwrap(),
    );
    finished(job.resume().unwrap());
    assert_eq!(ctx.changed_fds(), changed(&[], &[70]), "the deleted entry is still reported");
    drop(ctx);
    assert_eq!(*log.lock().unwrap(), vec![(2, 71, 2)]);
}

#[test]
fn cleanups_never_run_when_a_job_finishes() {
    if !jobs_available("cleanups_never_run_when_a_job_finishes") {
        return;
    }
    let count = Arc::new(AtomicUsize::new(0));
    let ctx = WaitCtx::new();
    let in_job = count.clone();
    let job = paused(
        start(Some(&ctx), move || {
            job_ctx().set_wait_fd(K1, 80, 0, counting_cleanup(&in_job));
            pause();
        })
        .unwrap(),
    );
    finished(job.resume().unwrap());
    assert_eq!(count.load(Ordering::SeqCst), 0, "finish leaves the fds to the next job");
    assert_eq!(ctx.all_fds(), vec![80], "fds persist across jobs on the same ctx");
    // A second job on the same ctx still sees it.
    assert_eq!(finished(start(Some(&ctx), || job_ctx().get_fd(K1)).unwrap()), Some((80, 0)));
    assert_eq!(count.load(Ordering::SeqCst), 0);
    drop(ctx);
    assert_eq!(count.load(Ordering::SeqCst), 1);
}

#[test]
fn a_paused_job_keeps_its_ctx_alive_until_it_finishes() {
    if !jobs_available("a_paused_job_keeps_its_ctx_alive_until_it_finishes") {
        return;
    }
    let count = Arc::new(AtomicUsize::new(0));
    let ctx = WaitCtx::new();
    ctx.set_wait_fd(K1, 90, 0, counting_cleanup(&count));
    let job = paused(
        start(Some(&ctx), || {
            pause();
            job_ctx().all_fds()
        })
        .unwrap(),
    );
    drop(ctx); // the user's handle
    assert_eq!(count.load(Ordering::SeqCst), 0, "the job still holds the ctx");
    assert_eq!(job.wait_ctx().map(WaitCtx::all_fds), Some(vec![90]));
    let seen = finished(job.resume().unwrap());
    assert_eq!(seen, vec![90], "the job reaches the ctx after the user dropped theirs");
    assert_eq!(count.load(Ordering::SeqCst), 1, "cleanup ran once the job let go");
}

#[test]
fn dropping_a_paused_job_releases_its_ctx_and_runs_the_cleanups_then() {
    if !jobs_available("dropping_a_paused_job_releases_its_ctx_and_runs_the_cleanups_then") {
        return;
    }
    let count = Arc::new(AtomicUsize::new(0));
    let ctx = WaitCtx::new();
    let in_job = count.clone();
    let job = paused(
        start(Some(&ctx), move || {
            job_ctx().set_wait_fd(K1, 91, 0, counting_cleanup(&in_job));
            pause();
            unreachable!("a dropped job is cancelled, not continued");
        })
        .unwrap(),
    );
    drop(ctx);
    assert_eq!(count.load(Ordering::SeqCst), 0);
    drop(job);
    assert_eq!(count.load(Ordering::SeqCst), 1);
}

#[test]
fn the_ctx_given_at_start_is_the_jobs_ctx_for_its_whole_life() {
    if !jobs_available("the_ctx_given_at_start_is_the_jobs_ctx_for_its_whole_life") {
        return;
    }
    assert!(current_wait_ctx().is_none(), "no ctx outside a job");
    let ctx = WaitCtx::new();
    let other = WaitCtx::new();
    let seen = Rc::new(RefCell::new(Vec::new()));
    let log = seen.clone();
    let mine = ctx.clone();
    let job = paused(
        start(Some(&ctx), move || {
            for _ in 0..3 {
                let current = current_wait_ctx().expect("a ctx in every segment");
                log.borrow_mut().push(current.same_as(&mine));
                pause();
            }
        })
        .unwrap(),
    );
    assert!(job.wait_ctx().expect("Job::wait_ctx").same_as(&ctx));

    // Another job with another ctx, interleaved, sees its own.
    let other_job = paused(start(Some(&other), pause).unwrap());
    assert!(other_job.wait_ctx().unwrap().same_as(&other));
    assert!(!other_job.wait_ctx().unwrap().same_as(&ctx));

    let job = paused(job.resume().unwrap());
    assert!(job.wait_ctx().unwrap().same_as(&ctx));
    finished(other_job.resume().unwrap());
    let job = paused(job.resume().unwrap());
    assert!(job.wait_ctx().unwrap().same_as(&ctx));
    finished(job.resume().unwrap());
    assert_eq!(*seen.borrow(), vec![true, true, true]);
    assert!(current_wait_ctx().is_none());
}

#[test]
fn a_job_started_without_a_ctx_has_none_in_every_segment() {
    if !jobs_available("a_job_started_without_a_ctx_has_none_in_every_segment") {
        return;
    }
    let job = paused(
        start(None, || {
            let first = current_wait_ctx().is_none();
            pause();
            first && current_wait_ctx().is_none()
        })
        .unwrap(),
    );
    assert!(job.wait_ctx().is_none());
    assert!(finished(job.resume().unwrap()));
}

#[test]
fn callback_and_status_set_from_another_thread_while_paused_reach_the_job() {
    if !jobs_available("callback_and_status_set_from_another_thread_while_paused_reach_the_job") {
        return;
    }
    let called_on = Arc::new(Mutex::new(Vec::new()));
    let record = called_on.clone();
    let ctx = WaitCtx::new();
    let job = paused(
        start(Some(&ctx), move || {
            // The "engine" registers a wait fd and a completion callback,
            // submits its request and pauses.
            let ctx = job_ctx();
            ctx.set_wait_fd(K1, 100, 0, None);
            ctx.set_callback(Some(Arc::new(move || {
                record.lock().unwrap().push(std::thread::current().id());
            })));
            let before = ctx.status();
            drop(ctx);
            pause();
            (before, job_ctx().status())
        })
        .unwrap(),
    );

    // The completion thread: reads the fds, sets the status, calls back.
    let remote = ctx.clone();
    let completion = std::thread::spawn(move || {
        let fds = remote.all_fds();
        remote.set_status(Status::Ok);
        let callback = remote.callback().expect("the job set a callback");
        callback();
        (fds, std::thread::current().id())
    });
    let (remote_fds, completion_id) = completion.join().unwrap();
    assert_eq!(remote_fds, vec![100], "the other thread sees the job's fds");
    assert_eq!(*called_on.lock().unwrap(), vec![completion_id], "the callback ran once, on the completion thread");
    assert_ne!(completion_id, std::thread::current().id());
    assert_eq!(ctx.status(), Status::Ok);

    let (before, after) = finished(job.resume().unwrap());
    assert_eq!(before, Status::Unsupported);
    assert_eq!(after, Status::Ok, "the job sees the status set on the other thread");
}

#[test]
fn status_starts_unsupported_keeps_the_last_value_and_callback_can_be_removed() {
    assert_eq!(Status::default(), Status::Unsupported);
    let ctx = WaitCtx::new();
    assert_eq!(ctx.status(), Status::Unsupported);
    assert!(ctx.callback().is_none());
    for status in [Status::Eagain, Status::Err, Status::Ok, Status::Unsupported, Status::Eagain] {
        ctx.set_status(status);
        assert_eq!(ctx.status(), status);
        assert_eq!(ctx.clone().status(), status, "every clone names the same ctx");
    }
    // OpenSSL's ASYNC_STATUS_* numbers.
    assert_eq!([Status::Unsupported, Status::Err, Status::Ok, Status::Eagain].map(|s| s as i32), [0, 1, 2, 3]);
    let calls = Arc::new(AtomicUsize::new(0));
    let counter = calls.clone();
    ctx.set_callback(Some(Arc::new(move || {
        counter.fetch_add(1, Ordering::SeqCst);
    })));
    (ctx.callback().unwrap())();
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    ctx.set_callback(None);
    assert!(ctx.callback().is_none());
}

#[test]
fn status_survives_jobs_the_library_never_resets_it() {
    if !jobs_available("status_survives_jobs_the_library_never_resets_it") {
        return;
    }
    let ctx = WaitCtx::new();
    ctx.set_status(Status::Eagain);
    let job = paused(
        start(Some(&ctx), || {
            pause();
            let ctx = job_ctx();
            let seen = ctx.status();
            ctx.set_status(Status::Err);
            seen
        })
        .unwrap(),
    );
    assert_eq!(finished(job.resume().unwrap()), Status::Eagain);
    assert_eq!(ctx.status(), Status::Err, "the job's status outlives the job");
    let seen = finished(start(Some(&ctx), || job_ctx().status()).unwrap());
    assert_eq!(seen, Status::Err, "a new job does not reset it either");
}

#[test]
fn wait_key_of_is_the_address_of_a_static_and_works_as_a_key() {
    static ENGINE_A: u8 = 0;
    static ENGINE_B: u8 = 0;
    let a = WaitKey::of(&ENGINE_A);
    let b = WaitKey::of(&ENGINE_B);
    assert_eq!(a, WaitKey::of(&ENGINE_A));
    assert_ne!(a, b);
    assert_eq!(a.get(), &ENGINE_A as *const u8 as usize);
    assert_eq!(WaitKey::new(a.get()), a);

    let ctx = WaitCtx::new();
    ctx.set_wait_fd(a, 3, 30, None);
    ctx.set_wait_fd(b, 4, 40, None);
    assert_eq!(ctx.get_fd(a), Some((3, 30)));
    assert_eq!(ctx.get_fd(b), Some((4, 40)));
    assert!(ctx.clear_fd(a));
    assert_eq!(ctx.get_fd(a), None);
    assert_eq!(ctx.get_fd(b), Some((4, 40)));
}

/// Whether a job started without a ctx sees none after its pause.
fn plain_job_sees_no_ctx() -> bool {
    let job = paused(
        start(None, || {
            pause();
            current_wait_ctx().is_none()
        })
        .unwrap(),
    );
    finished(job.resume().unwrap())
}

/// One pooled stack serves jobs with and without a ctx in turn, in both
/// pool modes: a job with a ctx begins a new segment at every resume on a
/// stack a job without one used before, and a job without one still sees
/// none after a job with one (resume tells the cases apart by a flag kept
/// with the slot's ctx, which must follow it through reuse).
#[test]
fn a_reused_stack_tracks_segments_for_jobs_with_and_without_a_ctx() {
    if !jobs_available("a_reused_stack_tracks_segments_for_jobs_with_and_without_a_ctx") {
        return;
    }
    for isolate in [true, false] {
        let config = stackjob::PoolConfig::new().max_size(1).init_size(1).isolate_thread_state(isolate);
        stackjob::init_thread_with(&config).unwrap();
        for round in 0..3 {
            assert!(plain_job_sees_no_ctx(), "round {round}: a ctx leaked into a job started without one");

            let ctx = WaitCtx::new();
            let mut job = paused(
                start(Some(&ctx), || {
                    for fd in [30, 31] {
                        current_wait_ctx().unwrap().set_wait_fd(WaitKey::new(fd as usize), fd, 0, None);
                        pause();
                    }
                    pause();
                })
                .unwrap(),
            );
            assert_eq!(ctx.changed_fds(), changed(&[30], &[]), "round {round}, isolate {isolate}");
            job = paused(job.resume().unwrap());
            assert_eq!(ctx.changed_fds(), changed(&[31], &[]), "round {round}: the second segment's own");
            job = paused(job.resume().unwrap());
            assert_eq!(ctx.changed_fds(), changed(&[], &[]), "round {round}: the third segment added nothing");
            finished(job.resume().unwrap());
            drop(ctx);

            // A ctx job cancelled while paused, then a plain job on the stack.
            let ctx = WaitCtx::new();
            let held = paused(start(Some(&ctx), pause).unwrap());
            stackjob::cleanup_thread();
            drop(held);
            stackjob::init_thread_with(&config).unwrap();
            assert!(plain_job_sees_no_ctx(), "round {round}: after a cancelled ctx job");
        }
        stackjob::cleanup_thread();
    }
}
