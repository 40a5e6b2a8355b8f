//! Wait contexts: how a paused job tells its resumer what to wait for.
//!
//! Mirrors OpenSSL's `ASYNC_WAIT_CTX` (keyed wait fds with per-segment
//! change tracking, a completion callback and a status word), with three
//! differences, all on purpose:
//!
//! * it is thread-safe: a completion thread (QAT's polling thread, a worker
//!   pool) may read fds, set the status and invoke the callback while the
//!   job's own thread resumes it;
//! * the change counters restart at the start of *every* run segment of a
//!   job, including a fresh start (OpenSSL resets them only on resume, so a
//!   new job first sees the previous job's last changes);
//! * it is reference-counted: a job holds a clone, so dropping your handle
//!   while a job still uses the context is safe; cleanups run when the last
//!   clone goes.

use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::task::Waker;

#[cfg(unix)]
pub use std::os::fd::RawFd;
/// A file descriptor (OpenSSL's `OSSL_ASYNC_FD` on non-Windows systems).
#[cfg(not(unix))]
pub type RawFd = i32;

/// Identifies one wait fd within a [`WaitCtx`]. OpenSSL uses the address of
/// something the engine owns; [`WaitKey::of`] does the same.
///
/// ```
/// use stackjob::WaitKey;
/// static ENGINE_ID: u8 = 0;
/// assert_eq!(WaitKey::of(&ENGINE_ID), WaitKey::of(&ENGINE_ID));
/// assert_ne!(WaitKey::new(1), WaitKey::new(2));
/// ```
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
pub struct WaitKey(usize);

impl WaitKey {
    /// A key from any number.
    pub const fn new(raw: usize) -> WaitKey {
        WaitKey(raw)
    }

    /// A key from the address of a value, typically a `static` the caller owns.
    pub fn of<T>(value: &'static T) -> WaitKey {
        WaitKey(value as *const T as usize)
    }

    /// The key's number.
    pub const fn get(self) -> usize {
        self.0
    }
}

/// Called once for every wait fd still registered when the last clone of a
/// [`WaitCtx`] is dropped, newest first, with the entry's key, fd and data.
pub type Cleanup = Box<dyn FnOnce(WaitKey, RawFd, usize) + Send>;

/// A completion callback (OpenSSL 3's `ASYNC_callback_fn` and its argument,
/// as one closure). Called by whoever completes the job's request, on their
/// thread, so it must be cheap and thread-safe.
pub type Callback = Arc<dyn Fn() + Send + Sync>;

/// The status an engine reports through a wait context
/// (OpenSSL's `ASYNC_STATUS_*`, same numbers).
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash, Default)]
#[repr(i32)]
pub enum Status {
    /// No status was set (the initial value).
    #[default]
    Unsupported = 0,
    /// The operation failed.
    Err = 1,
    /// The operation completed; resume the job.
    Ok = 2,
    /// The engine is busy; resume the job so it can retry.
    Eagain = 3,
}

impl Status {
    fn from_raw(raw: i32) -> Status {
        match raw {
            1 => Status::Err,
            2 => Status::Ok,
            3 => Status::Eagain,
            _ => Status::Unsupported,
        }
    }
}

/// The fds added and deleted during the job's last run segment.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ChangedFds {
    /// Fds registered during the segment and still registered, newest first.
    pub added: Vec<RawFd>,
    /// Fds registered before the segment and cleared during it, newest first.
    pub deleted: Vec<RawFd>,
}

struct Entry {
    key: WaitKey,
    fd: RawFd,
    data: usize,
    cleanup: Option<Cleanup>,
    /// Registered during the current segment.
    added: bool,
    /// Cleared during the current segment (kept so `changed_fds` can report it).
    deleted: bool,
}

struct Shared {
    /// Oldest first; every query walks it newest first.
    entries: Mutex<Vec<Entry>>,
    /// Some entry carries a segment flag: the next segment start must reset.
    dirty: AtomicBool,
    status: AtomicI32,
    callback: Mutex<Option<Callback>>,
    /// The task to wake on [`WaitCtx::wake`] (see `register_waker`).
    waker: Mutex<Option<Waker>>,
    /// A wake happened since the last `take_woken`.
    woken: AtomicBool,
}

/// A wait context: keyed wait fds, a completion callback and a status,
/// shared between a job, its resumer and any completion thread.
///
/// Cloning is cheap (a reference count) and every clone names the same
/// context. Pass it to [`start`](crate::start); inside the job reach it with
/// [`current_wait_ctx`](crate::current_wait_ctx).
///
/// ```
/// use stackjob::{WaitCtx, WaitKey};
/// let ctx = WaitCtx::new();
/// ctx.set_wait_fd(WaitKey::new(1), 7, 0, None);
/// assert_eq!(ctx.all_fds(), vec![7]);
/// assert_eq!(ctx.get_fd(WaitKey::new(1)), Some((7, 0)));
/// assert!(ctx.clear_fd(WaitKey::new(1)));
/// assert!(ctx.all_fds().is_empty());
/// ```
#[derive(Clone)]
pub struct WaitCtx {
    shared: Arc<Shared>,
}

impl Default for WaitCtx {
    fn default() -> Self {
        WaitCtx::new()
    }
}

impl fmt::Debug for WaitCtx {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WaitCtx")
            .field("fds", &self.all_fds())
            .field("status", &self.status())
            .field("callback", &self.callback().is_some())
            .finish()
    }
}

impl WaitCtx {
    /// An empty context: no fds, no callback, status [`Status::Unsupported`].
    pub fn new() -> WaitCtx {
        WaitCtx {
            shared: Arc::new(Shared {
                entries: Mutex::new(Vec::new()),
                dirty: AtomicBool::new(false),
                status: AtomicI32::new(Status::Unsupported as i32),
                callback: Mutex::new(None),
                waker: Mutex::new(None),
                woken: AtomicBool::new(false),
            }),
        }
    }

    fn entries(&self) -> MutexGuard<'_, Vec<Entry>> {
        // A panic while holding the lock cannot leave the Vec inconsistent
        // (every mutation is a single push/remove/flag store), so poisoning
        // is ignored.
        self.shared.entries.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Registers `fd` under `key`, with an opaque `data` word and an optional
    /// cleanup run when the context is dropped. The entry counts as added in
    /// the current segment. Registering a key twice keeps both entries; the
    /// newer one shadows the older (OpenSSL does the same).
    ///
    /// ```
    /// use stackjob::{WaitCtx, WaitKey};
    /// use std::sync::{Arc, atomic::{AtomicBool, Ordering}};
    /// let ran = Arc::new(AtomicBool::new(false));
    /// let ctx = WaitCtx::new();
    /// let flag = ran.clone();
    /// ctx.set_wait_fd(WaitKey::new(9), 3, 42, Some(Box::new(move |key, fd, data| {
    ///     assert_eq!((key.get(), fd, data), (9, 3, 42));
    ///     flag.store(true, Ordering::SeqCst);
    /// })));
    /// drop(ctx);
    /// assert!(ran.load(Ordering::SeqCst));
    /// ```
    pub fn set_wait_fd(&self, key: WaitKey, fd: RawFd, data: usize, cleanup: Option<Cleanup>) {
        let mut entries = self.entries();
        entries.push(Entry { key, fd, data, cleanup, added: true, deleted: false });
        self.shared.dirty.store(true, Ordering::Relaxed);
    }

    /// The fd and data of the newest live entry with `key`.
    pub fn get_fd(&self, key: WaitKey) -> Option<(RawFd, usize)> {
        let entries = self.entries();
        entries.iter().rev().find(|e| e.key == key && !e.deleted).map(|e| (e.fd, e.data))
    }

    /// Every live fd, newest first.
    pub fn all_fds(&self) -> Vec<RawFd> {
        let entries = self.entries();
        entries.iter().rev().filter(|e| !e.deleted).map(|e| e.fd).collect()
    }

    /// The number of live fds (what `all_fds().len()` would be, without allocating).
    pub fn fd_count(&self) -> usize {
        self.entries().iter().filter(|e| !e.deleted).count()
    }

    /// The fds added and deleted during the job's last run segment: between
    /// a pause and the next resume, exactly what the job changed before it
    /// paused; after it finished, what its last segment changed.
    ///
    /// ```
    /// # if !stackjob::is_capable() { eprintln!("skipped: no stackjob backend on this target"); return; }
    /// use stackjob::{start, pause, Step, WaitCtx, WaitKey, current_wait_ctx};
    /// let ctx = WaitCtx::new();
    /// let step = start(Some(&ctx), || {
    ///     current_wait_ctx().unwrap().set_wait_fd(WaitKey::new(1), 5, 0, None);
    ///     pause();
    /// }).unwrap();
    /// assert_eq!(ctx.changed_fds().added, vec![5]);
    /// let Step::Paused(job) = step else { unreachable!() };
    /// assert!(matches!(job.resume().unwrap(), Step::Finished(())));
    /// assert!(ctx.changed_fds().added.is_empty()); // the last segment added nothing
    /// ```
    pub fn changed_fds(&self) -> ChangedFds {
        let entries = self.entries();
        let pick = |added: bool| {
            entries.iter().rev().filter(|e| e.added == added && e.deleted != added).map(|e| e.fd).collect()
        };
        ChangedFds { added: pick(true), deleted: pick(false) }
    }

    /// Removes the newest live entry with `key` without running its cleanup
    /// (the caller closes the fd). An entry added in this segment vanishes;
    /// an older one is reported by [`changed_fds`](Self::changed_fds) as
    /// deleted until the segment ends. Returns whether an entry was found.
    pub fn clear_fd(&self, key: WaitKey) -> bool {
        let mut entries = self.entries();
        let Some(i) = entries.iter().rposition(|e| e.key == key && !e.deleted) else {
            return false;
        };
        if entries[i].added {
            let removed = entries.remove(i);
            // The entry's cleanup is the user's: its captures may use this
            // context when dropped, so the lock goes first.
            drop(entries);
            drop(removed);
        } else {
            entries[i].deleted = true;
            self.shared.dirty.store(true, Ordering::Relaxed);
        }
        true
    }

    /// Sets (or with `None`, removes) the completion callback. The old
    /// callback is dropped after the lock is released, so whatever it
    /// captured may use this context in its destructor.
    pub fn set_callback(&self, callback: Option<Callback>) {
        let old = std::mem::replace(&mut *self.shared.callback.lock().unwrap_or_else(|e| e.into_inner()), callback);
        drop(old);
    }

    /// The completion callback, if one is set. A completion thread calls it
    /// after setting the status.
    ///
    /// ```
    /// use stackjob::{WaitCtx, Status};
    /// use std::sync::Arc;
    /// let ctx = WaitCtx::new();
    /// let seen = ctx.clone();
    /// ctx.set_callback(Some(Arc::new(move || assert_eq!(seen.status(), Status::Ok))));
    /// let remote = ctx.clone();
    /// std::thread::spawn(move || {
    ///     remote.set_status(Status::Ok);
    ///     (remote.callback().unwrap())();
    /// }).join().unwrap();
    /// // The callback holds a clone of `ctx`: unset it, or the two keep
    /// // each other alive (a reference cycle, as with any `Arc`).
    /// ctx.set_callback(None);
    /// ```
    pub fn callback(&self) -> Option<Callback> {
        self.shared.callback.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Stores a status for the resumer (or the job) to read.
    pub fn set_status(&self, status: Status) {
        self.shared.status.store(status as i32, Ordering::Release);
    }

    /// The last status stored; [`Status::Unsupported`] until one is set.
    /// The library never resets it.
    pub fn status(&self) -> Status {
        Status::from_raw(self.shared.status.load(Ordering::Acquire))
    }

    /// Whether `self` and `other` are clones of the same context.
    pub fn same_as(&self, other: &WaitCtx) -> bool {
        Arc::ptr_eq(&self.shared, &other.shared)
    }

    // ---- the waker hook: how an executor learns that a job can go on ----

    /// Registers the [`Waker`] of the task that drives this context's job;
    /// the next [`wake`](Self::wake), from any thread, wakes it. An executor
    /// integration calls this on every poll before it looks at
    /// [`take_woken`](Self::take_woken) (only the newest waker is kept; a
    /// waker that [`will_wake`](Waker::will_wake) the same task is not
    /// cloned again). This is the runtime-neutral piece the bridges in
    /// [`bridge`](crate::bridge) and `stackjob::tokio` are built on.
    ///
    /// ```
    /// use std::sync::Arc;
    /// use std::sync::atomic::{AtomicUsize, Ordering};
    /// use std::task::{Wake, Waker};
    /// struct Count(AtomicUsize);
    /// impl Wake for Count {
    ///     fn wake(self: Arc<Self>) { self.0.fetch_add(1, Ordering::SeqCst); }
    /// }
    /// let count = Arc::new(Count(AtomicUsize::new(0)));
    /// let ctx = stackjob::WaitCtx::new();
    /// ctx.register_waker(&Waker::from(count.clone()));
    /// let remote = ctx.clone();
    /// std::thread::spawn(move || remote.wake()).join().unwrap();
    /// assert_eq!(count.0.load(Ordering::SeqCst), 1);
    /// assert!(ctx.take_woken());  // the wake is remembered until taken
    /// assert!(!ctx.take_woken());
    /// ```
    pub fn register_waker(&self, waker: &Waker) {
        let mut slot = self.shared.waker.lock().unwrap_or_else(|e| e.into_inner());
        match &*slot {
            Some(old) if old.will_wake(waker) => {}
            _ => {
                // The old waker is dropped after the lock is released.
                let old = slot.replace(waker.clone());
                drop(slot);
                drop(old);
            }
        }
    }

    /// Forgets the registered waker (a bridge whose job ended calls this,
    /// so that the context does not keep the task alive).
    pub fn clear_waker(&self) {
        let old = self.shared.waker.lock().unwrap_or_else(|e| e.into_inner()).take();
        drop(old);
    }

    /// Says that the job can go on: records the wake (see
    /// [`take_woken`](Self::take_woken)) and wakes the registered task, if
    /// any. Callable from any thread, any number of times; it allocates
    /// nothing (a lock, a waker reference count, the waker's own wake). A
    /// completion thread calls it directly, or through the callback that
    /// [`waking_callback`](Self::waking_callback) makes.
    pub fn wake(&self) {
        wake_shared(&self.shared);
    }

    /// Whether [`wake`](Self::wake) was called since the last call, and
    /// forgets it. The driver of the job calls it after each run segment:
    /// a completion may arrive before the job even paused.
    pub fn take_woken(&self) -> bool {
        // Acquire: what the completing thread wrote before waking (the
        // result, the status) is visible to the job once it is resumed.
        self.shared.woken.swap(false, Ordering::AcqRel)
    }

    /// A completion [`Callback`] that calls [`wake`](Self::wake) on this
    /// context, for engines that report completions through
    /// [`callback`](Self::callback) (OpenSSL 3's callback mode). It holds
    /// the context weakly, so installing it with
    /// [`set_callback`](Self::set_callback) makes no reference cycle; made
    /// once (one allocation), it is called without allocating.
    ///
    /// ```
    /// let ctx = stackjob::WaitCtx::new();
    /// ctx.set_callback(Some(ctx.waking_callback()));
    /// let engine_side = ctx.clone();
    /// std::thread::spawn(move || (engine_side.callback().unwrap())()).join().unwrap();
    /// assert!(ctx.take_woken());
    /// ```
    pub fn waking_callback(&self) -> Callback {
        let weak: Weak<Shared> = Arc::downgrade(&self.shared);
        Arc::new(move || {
            if let Some(shared) = weak.upgrade() {
                wake_shared(&shared);
            }
        })
    }

    /// Starts a new run segment of a job using this context: the change
    /// flags of the previous segment are forgotten. Costs one relaxed load
    /// when nothing changed.
    ///
    /// [`start`](crate::start) and [`Job::resume`](crate::Job::resume) do
    /// this for the context they were given. A layer that keeps a job's
    /// context itself and starts the job with `None` calls it before each of
    /// the job's segments (including a cancellation's, or after it: no code
    /// of the job's runs while it unwinds that could change the flags).
    ///
    /// ```
    /// use stackjob::{WaitCtx, WaitKey};
    /// let ctx = WaitCtx::new();
    /// ctx.set_wait_fd(WaitKey::new(1), 5, 0, None);
    /// assert_eq!(ctx.changed_fds().added, vec![5]);
    /// ctx.begin_segment(); // a new segment: the fd stays, its change is forgotten
    /// assert!(ctx.changed_fds().added.is_empty());
    /// assert_eq!(ctx.all_fds(), vec![5]);
    /// ```
    #[inline]
    pub fn begin_segment(&self) {
        if self.shared.dirty.load(Ordering::Relaxed) {
            self.reset_changes();
        }
    }

    #[cold]
    fn reset_changes(&self) {
        let mut entries = self.entries();
        self.shared.dirty.store(false, Ordering::Relaxed);
        // Dropped after the lock is released: the cleanups are the user's.
        let deleted: Vec<Entry> = entries.extract_if(.., |e| e.deleted).collect();
        for e in entries.iter_mut() {
            e.added = false;
        }
        drop(entries);
        drop(deleted);
    }
}

/// [`WaitCtx::wake`] on the shared part.
fn wake_shared(shared: &Shared) {
    // Release: pairs with `take_woken`'s acquire. Set before the waker runs,
    // so the woken task sees it.
    shared.woken.store(true, Ordering::Release);
    // Cloned under the lock, woken after it: the wake may poll (or drop)
    // code that registers a waker on this context again.
    let waker = shared.waker.lock().unwrap_or_else(|e| e.into_inner()).clone();
    if let Some(waker) = waker {
        waker.wake();
    }
}

impl Drop for Shared {
    fn drop(&mut self) {
        let entries = std::mem::take(self.entries.get_mut().unwrap_or_else(|e| e.into_inner()));
        for e in entries.into_iter().rev() {
            if let (false, Some(cleanup)) = (e.deleted, e.cleanup) {
                cleanup(e.key, e.fd, e.data);
            }
        }
    }
}
