//! The per-thread job pool: idle stacks kept for reuse (LIFO), a limit on
//! how many jobs may exist, and the stack configuration.
//!
//! Differences from OpenSSL's pool, on purpose: `(max_size 0, init_size n)`
//! is accepted (unlimited, pre-warmed); a second `init_thread` replaces the
//! first without leaking it; jobs that are still paused own their stacks, so
//! `cleanup_thread` never frees memory a paused job lives on.

use crate::Error;
use crate::current::{self, Hot, NO_POOL};
use crate::errno;
use crate::stack::{self, Shape, Stack, StackAllocator};
use std::cell::{Cell, RefCell};
use std::mem::ManuallyDrop;
use std::ptr;
use std::sync::atomic::{AtomicU64, Ordering};

/// How a thread's job pool is sized and what its stacks look like.
///
/// ```
/// # if !stackjob::is_capable() { eprintln!("skipped: no stackjob backend on this target"); return; }
/// use stackjob::PoolConfig;
/// let cfg = PoolConfig::new().max_size(64).init_size(8).stack_size(128 * 1024).scrub(true);
/// stackjob::init_thread_with(&cfg).unwrap();
/// let stats = stackjob::pool_stats();
/// assert_eq!((stats.idle, stats.max_size), (8, 64));
/// # stackjob::cleanup_thread();
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PoolConfig {
    max_size: usize,
    init_size: usize,
    stack_size: usize,
    guard_size: usize,
    scrub: bool,
    isolate: bool,
    allocator: Option<StackAllocator>,
}

impl Default for PoolConfig {
    fn default() -> Self {
        PoolConfig::new()
    }
}

impl PoolConfig {
    /// No limit, nothing pre-created, [`DEFAULT_STACK_SIZE`](crate::DEFAULT_STACK_SIZE)
    /// stacks above [`DEFAULT_GUARD_SIZE`](crate::DEFAULT_GUARD_SIZE) guard
    /// regions, no scrubbing, thread state isolated: what a thread gets if
    /// it never calls `init_thread`.
    pub const fn new() -> PoolConfig {
        PoolConfig {
            max_size: 0,
            init_size: 0,
            stack_size: stack::DEFAULT_STACK_SIZE,
            guard_size: stack::DEFAULT_GUARD_SIZE,
            scrub: false,
            isolate: true,
            allocator: None,
        }
    }

    /// The most jobs that may exist on the thread at once (idle, paused or
    /// running); 0 means no limit.
    pub const fn max_size(mut self, max_size: usize) -> PoolConfig {
        self.max_size = max_size;
        self
    }

    /// How many jobs (stacks) to create up front.
    pub const fn init_size(mut self, init_size: usize) -> PoolConfig {
        self.init_size = init_size;
        self
    }

    /// Usable bytes per job stack, rounded up to whole pages, from
    /// [`MIN_STACK_SIZE`](crate::MIN_STACK_SIZE) to
    /// [`MAX_STACK_SIZE`](crate::MAX_STACK_SIZE); the guard region comes on
    /// top (see [`guard_size`](Self::guard_size)).
    pub const fn stack_size(mut self, stack_size: usize) -> PoolConfig {
        self.stack_size = stack_size;
        self
    }

    /// Bytes of inaccessible (`PROT_NONE`) address space below each job
    /// stack, rounded up to whole pages, from one page to
    /// [`MAX_GUARD_SIZE`](crate::MAX_GUARD_SIZE); default
    /// [`DEFAULT_GUARD_SIZE`](crate::DEFAULT_GUARD_SIZE) (1 MiB on 64-bit
    /// targets), which says why it is that large and what it costs.
    ///
    /// A job whose stack use reaches up to this many bytes below its stack,
    /// even in one large frame that no stack probe walks down (riscv64
    /// Rust code, C code built without `-fstack-clash-protection`), faults
    /// in the guard region and is reported as a stack overflow; it never
    /// reaches the memory below, such as another job's stack. 0 is refused
    /// ([`Error::InvalidGuardSize`](crate::Error::InvalidGuardSize)): a job
    /// stack always has a guard.
    ///
    /// ```
    /// # if !stackjob::is_capable() { eprintln!("skipped: no stackjob backend on this target"); return; }
    /// use stackjob::PoolConfig;
    /// stackjob::init_thread_with(&PoolConfig::new().guard_size(64 * 1024)).unwrap();
    /// assert_eq!(stackjob::pool_stats().guard_size, 64 * 1024);
    /// assert!(stackjob::init_thread_with(&PoolConfig::new().guard_size(0)).is_err());
    /// # stackjob::cleanup_thread();
    /// ```
    pub const fn guard_size(mut self, guard_size: usize) -> PoolConfig {
        self.guard_size = guard_size;
        self
    }

    /// Zero what a job wrote on its stack as soon as the job ends
    /// (finished, panicked or cancelled), so secrets a job handled do not
    /// outlive it: the next job on the stack finds zeros, and so does the
    /// kernel when the pool unmaps the stack (`cleanup_thread`, a replaced
    /// pool, thread exit: every stack is already clean by then, so there is
    /// no second scrub; the kernel zero-fills pages before any process
    /// gets them again anyway, the scrub only keeps the bytes out of freed
    /// physical memory). Also zeroed: [`start`](crate::start)'s own copy of
    /// the closure once the job has moved it onto its stack, and the slot
    /// through which the job's return value passed.
    ///
    /// Not covered: copies the compiler makes outside the job stack while
    /// the closure is passed to `start` and the value is returned from it
    /// (capture secrets in a `Box` or a zeroizing type to keep them off the
    /// caller's stack; unoptimised builds make more such copies), registers,
    /// what the job put on the heap, the stack of a job that could not be
    /// unwound (quarantined with its frames), and stack pages swapped out
    /// while the job ran (use no swap, encrypted swap or `mlockall`). Job
    /// stacks are left out of core dumps (`MADV_DONTDUMP`, where the kernel
    /// has it), scrubbed or not.
    ///
    /// Cost per job, measured with `benches/scrub.rs` on a shared 2-vCPU
    /// x86_64 VM (medians of several runs, which varied by up to a factor
    /// 2 with the machine's load):
    /// 1–2 µs fixed, mostly one `mincore` system call (it finds the
    /// pages the job touched; its page-table walk is the only part that
    /// grows with the stack size, about 0.7 ns per 4 KiB page), plus 20–40
    /// ns per KiB the job wrote (zeroed), plus 20–60 ns per KiB of stack
    /// that an earlier, deeper job on the same stack used (read again to
    /// check it is still zero). A job writing 4 KiB costs ~0.1 µs without
    /// scrubbing and 1–2 µs with it; one writing 256 KiB 9–14 µs and 17–22
    /// µs.
    pub const fn scrub(mut self, scrub: bool) -> PoolConfig {
        self.scrub = scrub;
        self
    }

    /// Whether each switch keeps the job's and its resumer's thread state
    /// apart (default `true`): `errno`, and on x86_64 the MXCSR control
    /// bits and the x87 control word (rounding mode, flush-to-zero,
    /// exception masks; callee-saved in the System V ABI). Each side then
    /// finds its own values again when control comes back to it, and a job
    /// starts with its starter's floating-point control state. On aarch64
    /// and riscv64 the floating-point control register is thread state by
    /// ABI and is never switched; only `errno` is.
    ///
    /// `false` makes every switch cheaper (on x86_64 about 28 instructions
    /// per pause + resume round trip, and most of its time: reading MXCSR
    /// takes a slow `stmxcsr` per switch; see the README's performance
    /// section):
    /// job and resumer then share these values like code that calls a
    /// function which changes them. Choose it when neither side changes the
    /// floating-point control state (`fesetround`, `_MM_SET_ROUNDING_MODE`,
    /// FTZ/DAZ) while jobs are paused, and neither relies on `errno` across
    /// a `pause()` or a resume (Rust code reads `errno` right after the
    /// call that set it, through `std::io::Error::last_os_error`). It never
    /// affects memory safety.
    ///
    /// ```
    /// # if !stackjob::is_capable() { eprintln!("skipped: no stackjob backend on this target"); return; }
    /// use stackjob::{PoolConfig, Step};
    /// stackjob::init_thread_with(&PoolConfig::new().isolate_thread_state(false)).unwrap();
    /// let step = stackjob::start(None, || { stackjob::pause(); 7 }).unwrap();
    /// let Step::Paused(job) = step else { unreachable!() };
    /// assert!(matches!(job.resume().unwrap(), Step::Finished(7)));
    /// assert!(!stackjob::pool_stats().isolate_thread_state);
    /// # stackjob::cleanup_thread();
    /// ```
    pub const fn isolate_thread_state(mut self, isolate: bool) -> PoolConfig {
        self.isolate = isolate;
        self
    }
}

impl PoolConfig {
    /// Where the stacks' memory comes from: `None` (the default), the
    /// crate's own guard-paged `mmap`s; or a caller's allocator pair, as C
    /// code sets with OpenSSL's `ASYNC_set_mem_functions`. Each block then
    /// gets a one-page guard inside it when it is large enough, not
    /// [`guard_size`](Self::guard_size); [`StackAllocator`] says what is
    /// asked of the allocator and shows a whole example.
    ///
    /// ```
    /// # if !stackjob::is_capable() { eprintln!("skipped: no stackjob backend on this target"); return; }
    /// use stackjob::{PoolConfig, StackAllocator};
    /// unsafe extern "C" fn alloc(num: *mut usize) -> *mut std::ffi::c_void {
    ///     // SAFETY: the pool passes a valid `num`.
    ///     unsafe { libc::malloc(*num) }
    /// }
    /// unsafe extern "C" fn free(p: *mut std::ffi::c_void) {
    ///     // SAFETY: `p` came from `alloc`.
    ///     unsafe { libc::free(p) }
    /// }
    /// // SAFETY: malloc's blocks are writable and 16-aligned until freed.
    /// let heap = unsafe { StackAllocator::new(alloc, free) };
    /// let cfg = PoolConfig::new().stack_allocator(Some(heap));
    /// assert_eq!(cfg, PoolConfig::new().stack_allocator(Some(heap)));
    /// assert_ne!(cfg, PoolConfig::new()); // the default: the crate's own mmap stacks
    /// ```
    pub const fn stack_allocator(mut self, allocator: Option<StackAllocator>) -> PoolConfig {
        self.allocator = allocator;
        self
    }
}

/// A snapshot of the calling thread's pool.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PoolStats {
    /// Stacks waiting for a job.
    pub idle: usize,
    /// Jobs of this pool that are running or paused.
    pub in_use: usize,
    /// The limit (0 = none).
    pub max_size: usize,
    /// Usable bytes per stack.
    pub stack_size: usize,
    /// Bytes of the guard region below each stack (one page with a
    /// [`stack_allocator`](PoolConfig::stack_allocator): the guard inside
    /// each block that has room for it).
    pub guard_size: usize,
    /// Whether stacks are scrubbed between jobs.
    pub scrub: bool,
    /// Whether switches keep errno and the FP control state per side
    /// ([`PoolConfig::isolate_thread_state`]).
    pub isolate_thread_state: bool,
}

struct Pool {
    /// Stacks of this pool in existence: idle + running + paused.
    created: usize,
    max_size: usize,
    shape: Shape,
    scrub: bool,
    isolate: bool,
    allocator: Option<StackAllocator>,
    /// Identifies this pool instance; a stack comes back only to the pool
    /// (instance) that lent it.
    epoch: u64,
}

thread_local! {
    /// The pool's configuration and its slow paths (creating the pool,
    /// growing it, statistics). Its destructor unmaps the idle stacks when
    /// the thread exits.
    static POOL: RefCell<Option<Pool>> = const { RefCell::new(None) };
}
// The hot path keeps the idle stacks as an intrusive LIFO list threaded
// through the stacks' own headers (its length is counted only when asked),
// and the epoch of the pool that owns them, in the thread's hot state
// (`current::Hot`: plain cells, no borrow flag, no lazy-initialisation
// check, still usable while the thread's other thread-locals are
// destroyed).

fn next_epoch() -> u64 {
    static EPOCH: AtomicU64 = AtomicU64::new(1);
    EPOCH.fetch_add(1, Ordering::Relaxed)
}

/// Puts an idle stack of the installed pool on the idle list.
#[inline(always)]
fn push_idle(hot: &Hot, stack: Stack) {
    stack.set_next_idle(hot.idle.get());
    hot.idle.set(stack.into_top());
}

/// How many stacks the idle list holds: counted by walking it (for
/// `pool_stats` only, so that lending and returning a stack keep no count).
fn idle_len(hot: &Hot) -> usize {
    let (mut len, mut top) = (0, hot.idle.get());
    while !top.is_null() {
        // SAFETY: every top on the list is an idle stack of the installed
        // pool, owned by the list; it is only read here, never dropped.
        top = ManuallyDrop::new(unsafe { Stack::from_top(top) }).next_idle();
        len += 1;
    }
    len
}

impl Pool {
    /// Checks the sizes of `cfg`; returns the page-rounded stack shape.
    fn check(cfg: &PoolConfig) -> Result<Shape, Error> {
        if cfg.max_size != 0 && cfg.init_size > cfg.max_size {
            return Err(Error::InvalidPoolSize { max_size: cfg.max_size, init_size: cfg.init_size });
        }
        Shape::new(cfg.stack_size, cfg.guard_size)
    }

    /// A pool for `cfg` and its `init_size` pre-created stacks, not yet
    /// installed (see [`install`](Self::install)).
    fn new(cfg: &PoolConfig) -> Result<(Pool, Vec<Stack>), Error> {
        let shape = Pool::check(cfg)?;
        let mut pool = Pool {
            created: 0,
            max_size: cfg.max_size,
            shape,
            scrub: cfg.scrub,
            isolate: cfg.isolate,
            allocator: cfg.allocator,
            epoch: next_epoch(),
        };
        let mut stacks = Vec::new();
        if crate::is_capable() {
            crate::overflow::prepare_thread();
            stacks.try_reserve_exact(cfg.init_size).map_err(|_| Error::StackAlloc {
                size: shape.size,
                source: std::io::Error::from_raw_os_error(libc::ENOMEM),
            })?;
            for _ in 0..cfg.init_size {
                stacks.push(Stack::new(shape, pool.epoch, pool.scrub, pool.isolate, pool.allocator)?);
                pool.created += 1;
            }
        }
        Ok((pool, stacks))
    }

    /// Makes this pool the thread's (the previous one must be gone) and
    /// lists its pre-created stacks as idle.
    fn install(self, stacks: Vec<Stack>, slot: &mut Option<Pool>) {
        let hot = current::hot();
        debug_assert!(slot.is_none() && hot.idle.get().is_null());
        hot.epoch.set(self.epoch);
        for stack in stacks {
            push_idle(hot, stack);
        }
        *slot = Some(self);
    }

    #[cold]
    fn grow(&mut self) -> Result<Stack, Error> {
        if self.max_size != 0 && self.created >= self.max_size {
            return Err(Error::NoJobs { in_use: self.created, max_size: self.max_size });
        }
        let stack = Stack::new(self.shape, self.epoch, self.scrub, self.isolate, self.allocator)?;
        self.created += 1;
        Ok(stack)
    }
}

impl Drop for Pool {
    /// Unmaps the idle stacks; stacks still lent out no longer match any
    /// pool's epoch and are unmapped when their jobs end.
    fn drop(&mut self) {
        let hot = current::hot();
        if hot.epoch.get() != self.epoch {
            return; // never installed: it has no idle list
        }
        hot.epoch.set(NO_POOL);
        let mut top = hot.idle.replace(ptr::null_mut());
        while !top.is_null() {
            // SAFETY: every top on the list is an idle stack of this pool,
            // owned by the list alone; it is taken off before it is dropped.
            let stack = unsafe { Stack::from_top(top) };
            top = stack.next_idle();
            drop(stack);
        }
    }
}

/// Lends a stack from the calling thread's pool, creating the pool with
/// the default configuration on first use.
#[inline(always)]
pub(crate) fn acquire() -> Result<Stack, Error> {
    let hot = current::hot();
    let top = hot.idle.get();
    if top.is_null() {
        return acquire_slow();
    }
    // SAFETY: the list holds only idle stacks of the installed pool, owned
    // by the list; this one is taken off it before it is handed out.
    let stack = unsafe { Stack::from_top(top) };
    hot.idle.set(stack.next_idle());
    Ok(stack)
}

/// No idle stack: create the pool if there is none, then a new stack.
#[cold]
#[inline(never)]
fn acquire_slow() -> Result<Stack, Error> {
    if !crate::is_capable() {
        return Err(Error::NotCapable { reason: crate::capable::not_capable_reason() });
    }
    let _errno = errno::Keep::new();
    let lent = POOL.try_with(|pool| {
        let mut pool = pool.borrow_mut();
        if pool.is_none() {
            let (new, stacks) = Pool::new(&PoolConfig::new())?;
            new.install(stacks, &mut pool);
        }
        pool.as_mut().map_or_else(|| unreachable!("installed above"), Pool::grow)
    });
    match lent {
        Ok(stack) => stack,
        // The thread is tearing down its thread-locals: serve the job with a
        // stack of its own, freed when the job ends. Whether the pool that
        // is gone scrubbed is unknown, so this one does (once per such job).
        Err(_) => Stack::new(Shape::default_shape(), 0, true, true, None),
    }
}

/// Gives a stack back after its job finished. `live_from` is the lowest
/// address still in use on it (everything below is dead job frames).
#[inline(always)]
pub(crate) fn release(stack: Stack, live_from: *mut u8) {
    let hot = current::hot();
    // One compare: the installed pool's stack, and not one that scrubs.
    if stack.release_key() == hot.epoch.get() {
        push_idle(hot, stack);
    } else {
        release_slow(stack, live_from);
    }
}

/// [`release`] of a stack that scrubs or is not the installed pool's.
#[cold]
#[inline(never)]
fn release_slow(stack: Stack, live_from: *mut u8) {
    stack.scrub_dead_frames(live_from);
    let hot = current::hot();
    if stack.epoch() == hot.epoch.get() {
        push_idle(hot, stack);
    } else {
        // Not our pool any more (re-initialised, cleaned up, the thread is
        // exiting, or a stack of its own): unmapped here.
        drop(stack);
    }
}

/// A stack that still holds live frames the crate could not unwind: it is
/// never reused or unmapped (quarantined), and no longer counts against the
/// pool's limit.
pub(crate) fn quarantine(stack: Stack) {
    note_quarantined(&stack);
    std::mem::forget(stack);
}

/// Counts `stack` as quarantined without taking it (its owner keeps it
/// mapped and never reuses it).
pub(crate) fn note_quarantined(stack: &Stack) {
    let epoch = stack.epoch();
    let _ = POOL.try_with(|pool| {
        if let Some(pool) = &mut *pool.borrow_mut()
            && pool.epoch == epoch
        {
            pool.created -= 1;
        }
    });
    let _ = QUARANTINED.try_with(|q| q.set(q.get() + 1));
}

thread_local! {
    static QUARANTINED: Cell<u64> = const { Cell::new(0) };
}

/// How many job stacks the calling thread has quarantined: stacks of
/// dropped paused jobs that could not be unwound (a build with
/// `panic = "abort"`, or a job that caught its cancellation and paused
/// again, repeatedly). They stay mapped and are never reused: their memory
/// is leaked on purpose rather than handed to another job while live frames
/// remain on it.
pub fn quarantined_jobs() -> u64 {
    QUARANTINED.with(Cell::get)
}

/// Sets up the calling thread's job pool (OpenSSL's `ASYNC_init_thread`):
/// at most `max_size` jobs (0 = no limit), `init_size` of them created now,
/// default stack size, no scrubbing. Replaces any previous pool of this
/// thread; jobs paused under the previous pool keep working and free their
/// stacks when they end (to end them, use
/// [`cleanup_thread`](crate::cleanup_thread) first).
///
/// Unlike OpenSSL, `init_thread(0, n)` (unlimited, `n` pre-created) is
/// accepted. On a target where [`is_capable`](crate::is_capable) is false
/// the sizes are still checked but no stack is created.
///
/// ```
/// # if !stackjob::is_capable() { eprintln!("skipped: no stackjob backend on this target"); return; }
/// stackjob::init_thread(4, 2).unwrap();
/// assert_eq!(stackjob::pool_stats().idle, 2);
/// assert!(stackjob::init_thread(1, 2).is_err());
/// # stackjob::cleanup_thread();
/// ```
pub fn init_thread(max_size: usize, init_size: usize) -> Result<(), Error> {
    init_thread_with(&PoolConfig::new().max_size(max_size).init_size(init_size))
}

/// [`init_thread`] with every setting: limit, pre-created jobs, stack size
/// and scrubbing. On error the thread's previous pool stays in place.
///
/// Called while the thread exits, once its pool is gone (from the
/// destructor of a thread-local, say through a [`WaitCtx`](crate::WaitCtx)
/// cleanup), it checks the sizes and creates nothing: there is nowhere to
/// keep a pool any more, and jobs started then each get a stack of their
/// own, as they do without it.
pub fn init_thread_with(config: &PoolConfig) -> Result<(), Error> {
    let _errno = errno::Keep::new();
    if POOL.try_with(|_| ()).is_err() {
        return Pool::check(config).map(drop);
    }
    let (pool, stacks) = Pool::new(config)?;
    // Drop the old pool (unmapping its idle stacks) outside the borrow.
    let old = POOL.try_with(|p| p.borrow_mut().take());
    drop(old);
    let _ = POOL.try_with(|p| pool.install(stacks, &mut p.borrow_mut()));
    Ok(())
}

/// Frees the calling thread's pool and its idle stacks.
pub(crate) fn destroy() {
    let _errno = errno::Keep::new();
    let old = POOL.try_with(|p| p.borrow_mut().take());
    drop(old);
}

/// The calling thread's pool as it is now (a default, empty pool if none
/// was created yet, or if it is gone because the thread is exiting).
///
/// ```
/// # if !stackjob::is_capable() { eprintln!("skipped: no stackjob backend on this target"); return; }
/// stackjob::init_thread(0, 0).unwrap();
/// let step = stackjob::start(None, || 1).unwrap();
/// assert!(matches!(step, stackjob::Step::Finished(1)));
/// let stats = stackjob::pool_stats();
/// assert_eq!((stats.idle, stats.in_use), (1, 0)); // the stack came back
/// # stackjob::cleanup_thread();
/// ```
pub fn pool_stats() -> PoolStats {
    let stats = POOL.try_with(|p| {
        let idle = idle_len(current::hot());
        p.borrow().as_ref().map(|pool| PoolStats {
            idle,
            in_use: pool.created - idle,
            max_size: pool.max_size,
            stack_size: pool.shape.size,
            guard_size: if pool.allocator.is_some() { stack::page_size() } else { pool.shape.guard },
            scrub: pool.scrub,
            isolate_thread_state: pool.isolate,
        })
    });
    stats.ok().flatten().unwrap_or_else(|| {
        let cfg = PoolConfig::new();
        PoolStats {
            idle: 0,
            in_use: 0,
            max_size: cfg.max_size,
            stack_size: cfg.stack_size,
            guard_size: cfg.guard_size,
            scrub: cfg.scrub,
            isolate_thread_state: cfg.isolate,
        }
    })
}
