//! Guard-paged job stacks: one anonymous `mmap` per stack.
//!
//! ```text
//!   high  +---------------------------+ <- map end
//!         | header (the mapping, pool)|    128 bytes
//!         +---------------------------+
//!         | job slot (Rust, see job)  |    SLOT_RESERVE bytes
//!         +---------------------------+ <- top(): 64-aligned; a `Stack` is
//!         |                           |    just this pointer
//!         |                           |
//!         |  usable stack, grows down |    `size` bytes (rounded to pages)
//!         |                           |
//!         +---------------------------+ <- bottom()
//!         |                           |
//!         | guard region (PROT_NONE)  |    `guard` bytes (whole pages,
//!         |                           |    default 1 MiB on 64-bit)
//!   low   +---------------------------+ <- map start
//! ```
//!
//! The map is `MAP_PRIVATE | MAP_ANONYMOUS | MAP_STACK | MAP_NORESERVE`:
//! pages cost memory only once touched, so a paused job that used 8 KiB of
//! a 256 KiB stack holds 8 KiB. `MADV_DONTDUMP` keeps whatever the job
//! computed (key material) out of core dumps. The guard region is part of
//! the same mapping (made `PROT_NONE` with `mprotect`), so a stack costs
//! two kernel mappings whatever the guard's size.
//!
//! A pool may instead take its stacks from a caller's allocator
//! ([`StackAllocator`], OpenSSL's `ASYNC_set_mem_functions`): the block it
//! returns holds the same layout, with a one-page guard at the first whole
//! page inside the block when the block has room for it (see there).

use crate::Error;
use crate::errno;
use crate::sanitizer::{self, StackRegistration};
use memmap2::{Advice, MmapOptions};
use std::ffi::c_void;
use std::io;
use std::ptr::NonNull;

/// Default usable stack size: 256 KiB. OpenSSL's fixed 32 KiB overflows with
/// OpenSSL 3 code and with Rust's panic machinery; untouched pages cost
/// nothing (`MAP_NORESERVE`), so a generous default is cheap.
pub const DEFAULT_STACK_SIZE: usize = 256 * 1024;
/// Smallest accepted usable stack size (after rounding to pages): 64 KiB,
/// what a job needs to panic with room to spare. The panic hook prints a
/// backtrace when `RUST_BACKTRACE` is set, and symbolising it takes
/// 20–24 KiB of stack on every backend, debug and release alike, with the
/// standard library as rustup ships it, and 40–48 KiB with a standard
/// library built unoptimised (`-Zbuild-std` in a debug profile, measured
/// on aarch64 with `pac-ret`), both measured with `tests/min_stack.rs`'s
/// `STACKJOB_TEST_STACK`; 16 KiB overflowed. Untouched stack pages cost no
/// memory, so the floor costs address space only.
pub const MIN_STACK_SIZE: usize = 64 * 1024;
/// Largest accepted usable stack size: 1 GiB. Larger requests are almost
/// certainly a unit mistake and would exhaust address space in a pool.
pub const MAX_STACK_SIZE: usize = 1 << 30;

/// Default size of the `PROT_NONE` guard region below every job stack:
/// 1 MiB on 64-bit targets, 16 KiB on 32-bit ones.
///
/// A guard page catches a job that runs off its stack only if the job
/// touches it; one function whose frame is larger than the guard jumps over
/// it into whatever is mapped below (another job's stack, say), silently.
/// Rust inserts stack probes (which touch every page of a large frame) on
/// x86_64 and aarch64, not on riscv64, and C code gets them only when it is
/// built with `-fstack-clash-protection`. So the guard is sized like the
/// gap Linux keeps below its own stacks since Stack Clash
/// (`stack_guard_gap`, 256 pages = 1 MiB): a frame would have to reach
/// more than 1 MiB below the stack to skip it.
///
/// Reserved `PROT_NONE` address space costs no memory and no page tables,
/// and the guard is part of the stack's own mapping, so it costs no extra
/// entry of `vm.max_map_count` either (two per stack, whatever the guard's
/// size). What it costs is address space: 10,000 jobs of 256 KiB take
/// 12.5 GiB of it with the default guard instead of 2.5 GiB, a trifle of a
/// 64-bit address space but it counts against `ulimit -v` (`RLIMIT_AS`);
/// and under strict overcommit (`vm.overcommit_memory = 2`, where
/// `MAP_NORESERVE` is ignored) it counts against the commit limit too.
/// Lower it there with [`PoolConfig::guard_size`](crate::PoolConfig::guard_size).
/// On 32-bit targets 10,000 jobs of 256 KiB already fill 2.5 GiB of a 3 or
/// 4 GiB address space, so the default is four pages there.
pub const DEFAULT_GUARD_SIZE: usize = if cfg!(target_pointer_width = "64") { 1 << 20 } else { 16 * 1024 };
/// Largest accepted guard region: 1 GiB.
pub const MAX_GUARD_SIZE: usize = 1 << 30;

/// Bytes below the header reserved for the job slot (the Rust bookkeeping
/// of the job that owns the stack); the slot starts at [`Stack::top`].
pub(crate) const SLOT_RESERVE: usize = 192;
/// Bytes at the very top of every mapping for the stack's own header.
const HEADER_RESERVE: usize = 128;

/// Set in a scrubbing stack's [`Stack::release_key`]. Pool epochs count up
/// from 1 and never reach it, and the "no pool" epoch (`current::NO_POOL`)
/// is never a stack's key (it would take epoch 2^63 - 1).
const SCRUB_KEY: u64 = 1 << 63;

/// Where a pool's stack memory comes from when it is not the crate's own
/// `mmap`: a pair of C-style functions, the shape of OpenSSL's
/// `ASYNC_stack_alloc_fn` / `ASYNC_stack_free_fn` (so a C front end can pass
/// what `ASYNC_set_mem_functions` was given straight through). Set it with
/// [`PoolConfig::stack_allocator`](crate::PoolConfig::stack_allocator).
///
/// For each stack the pool asks `alloc` for `*num` = the stack size plus
/// two pages; `alloc` may raise `*num` to what it really returned. The
/// block's first whole page becomes the guard (`PROT_NONE`, restored to
/// read-write before the block goes back to `free`) when the block still
/// holds [`MIN_STACK_SIZE`] above it; a block too small for that runs
/// without a guard. So a custom stack has a one-page guard, not the pool's
/// `guard_size`: a frame larger than a page that no probe walks can jump
/// over it. The header and job slot live at the block's top, as in an
/// `mmap`ped stack, and the usable size is what the block leaves.
///
/// ```
/// # if !stackjob::is_capable() { eprintln!("skipped: no stackjob backend on this target"); return; }
/// use std::ffi::c_void;
/// use std::sync::atomic::{AtomicUsize, Ordering};
/// static LIVE: AtomicUsize = AtomicUsize::new(0);
/// unsafe extern "C" fn alloc(num: *mut usize) -> *mut c_void {
///     LIVE.fetch_add(1, Ordering::Relaxed);
///     // SAFETY: the pool passes a valid `num`.
///     unsafe { libc::malloc(*num) }
/// }
/// unsafe extern "C" fn free(p: *mut c_void) {
///     LIVE.fetch_sub(1, Ordering::Relaxed);
///     // SAFETY: `p` came from `alloc`.
///     unsafe { libc::free(p) }
/// }
/// // SAFETY: malloc's blocks are writable and 16-aligned until freed.
/// let heap = unsafe { stackjob::StackAllocator::new(alloc, free) };
/// stackjob::init_thread_with(&stackjob::PoolConfig::new().init_size(2).stack_allocator(Some(heap))).unwrap();
/// assert_eq!(LIVE.load(Ordering::Relaxed), 2);
/// assert!(matches!(stackjob::start(None, || 5).unwrap(), stackjob::Step::Finished(5)));
/// stackjob::cleanup_thread();
/// assert_eq!(LIVE.load(Ordering::Relaxed), 0);
/// ```
#[derive(Clone, Copy, Debug)]
pub struct StackAllocator {
    alloc: unsafe extern "C" fn(*mut usize) -> *mut c_void,
    free: unsafe extern "C" fn(*mut c_void),
}

impl StackAllocator {
    /// An allocator pair for job stacks.
    ///
    /// # Safety
    /// `alloc(num)` must return null or a block of at least `*num` bytes
    /// (after it may have raised `*num`), readable, writable, 16-byte
    /// aligned and used by nothing else until it is passed to `free`;
    /// `free` must accept every such block, on the thread that allocated it.
    pub const unsafe fn new(
        alloc: unsafe extern "C" fn(*mut usize) -> *mut c_void,
        free: unsafe extern "C" fn(*mut c_void),
    ) -> StackAllocator {
        StackAllocator { alloc, free }
    }

    /// The allocation function (what C's `ASYNC_get_mem_functions` reports).
    ///
    /// ```
    /// use std::ffi::c_void;
    /// unsafe extern "C" fn alloc(num: *mut usize) -> *mut c_void {
    ///     // SAFETY: callers pass a valid `num`.
    ///     unsafe { libc::malloc(*num) }
    /// }
    /// unsafe extern "C" fn free(p: *mut c_void) {
    ///     // SAFETY: `p` came from `alloc`.
    ///     unsafe { libc::free(p) }
    /// }
    /// // SAFETY: malloc's blocks are writable and 16-aligned until freed.
    /// let heap = unsafe { stackjob::StackAllocator::new(alloc, free) };
    /// assert!(std::ptr::fn_addr_eq(heap.alloc_fn(), alloc as unsafe extern "C" fn(*mut usize) -> *mut c_void));
    /// assert!(std::ptr::fn_addr_eq(heap.free_fn(), free as unsafe extern "C" fn(*mut c_void)));
    /// ```
    pub fn alloc_fn(&self) -> unsafe extern "C" fn(*mut usize) -> *mut c_void {
        self.alloc
    }

    /// The free function (see [`alloc_fn`](Self::alloc_fn)).
    pub fn free_fn(&self) -> unsafe extern "C" fn(*mut c_void) {
        self.free
    }
}

impl PartialEq for StackAllocator {
    /// The same pair of functions (by address).
    fn eq(&self, other: &StackAllocator) -> bool {
        std::ptr::fn_addr_eq(self.alloc, other.alloc) && std::ptr::fn_addr_eq(self.free, other.free)
    }
}

impl Eq for StackAllocator {}

/// What a stack knows about itself, stored in its own mapping.
#[repr(C)]
struct Header {
    /// The block: an `mmap`, or what a [`StackAllocator`] returned.
    base: *mut u8,
    /// Its length in bytes.
    len: usize,
    /// `None`: `base` is our own mapping (unmapped with `munmap`); else the
    /// allocator's free function.
    free: Option<unsafe extern "C" fn(*mut c_void)>,
    /// The pool instance the stack belongs to (0: none), with
    /// [`SCRUB_KEY`] set if the stack is scrubbed: see
    /// [`Stack::release_key`].
    key: u64,
    /// Bytes of the `PROT_NONE` guard region, which starts at the first
    /// page boundary in the block (0: no guard); at most `MAX_GUARD_SIZE`,
    /// so 32 bits keep the header within its 64 bytes.
    guard: u32,
    /// Scrub after every job (so before reuse and before unmapping).
    scrub: bool,
    /// Jobs on this stack keep errno and the FP control state per side
    /// (`PoolConfig::isolate_thread_state`).
    isolate: bool,
    /// See [`Stack::scrub_below`]: the lowest page a scrub looked at; no
    /// page below it was resident then.
    low: usize,
    /// The stack's registration with Valgrind (and LeakSanitizer).
    registration: StackRegistration,
    /// While the stack is idle in its pool: the next idle stack's top (the
    /// pool's free list is threaded through the stacks themselves).
    next_idle: *mut u8,
    /// Neighbours in the thread's list of mapped stacks (see [`live`]):
    /// the tops of the next newer and the next older stack, or null.
    live_newer: *mut u8,
    live_older: *mut u8,
}

const _: () = assert!(size_of::<Header>() <= HEADER_RESERVE);

/// The system page size, read once.
pub(crate) fn page_size() -> usize {
    use std::sync::atomic::{AtomicUsize, Ordering};
    static PAGE: AtomicUsize = AtomicUsize::new(0);
    let p = PAGE.load(Ordering::Relaxed);
    if p != 0 {
        return p;
    }
    // SAFETY: sysconf has no preconditions.
    let p = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    let p = if p > 0 { p as usize } else { 4096 };
    PAGE.store(p, Ordering::Relaxed);
    p
}

/// The sizes of a stack mapping, both in whole pages: what a pool's
/// configuration comes to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Shape {
    /// Usable bytes.
    pub(crate) size: usize,
    /// Bytes of the guard region below them.
    pub(crate) guard: usize,
}

impl Shape {
    /// Rounds the requested usable and guard sizes up to whole pages and
    /// checks their bounds.
    pub(crate) fn new(stack_size: usize, guard_size: usize) -> Result<Shape, Error> {
        let page = page_size();
        if !(MIN_STACK_SIZE..=MAX_STACK_SIZE).contains(&stack_size) {
            return Err(Error::InvalidStackSize { requested: stack_size });
        }
        if !(1..=MAX_GUARD_SIZE).contains(&guard_size) {
            return Err(Error::InvalidGuardSize { requested: guard_size });
        }
        Ok(Shape { size: stack_size.div_ceil(page) * page, guard: guard_size.div_ceil(page) * page })
    }

    /// The shape of a pool that was never configured.
    pub(crate) fn default_shape() -> Shape {
        Shape::new(DEFAULT_STACK_SIZE, DEFAULT_GUARD_SIZE).unwrap_or_else(|_| unreachable!("the defaults are in range"))
    }
}

/// One guard-paged stack mapping, as a single pointer to its top (where the
/// job slot begins). Dropping it unmaps it.
pub(crate) struct Stack {
    top: NonNull<u8>,
}

impl Stack {
    /// Maps a stack of `shape` (usable bytes above a `PROT_NONE` guard
    /// region), owned by the pool instance `epoch`; or, with `allocator`,
    /// takes its memory from there (see [`StackAllocator`]).
    pub(crate) fn new(
        shape: Shape,
        epoch: u64,
        scrub: bool,
        isolate: bool,
        allocator: Option<StackAllocator>,
    ) -> Result<Stack, Error> {
        let _errno = errno::Keep::new();
        let page = page_size();
        let Shape { size, guard } = shape;
        debug_assert!(size.is_multiple_of(page) && size >= MIN_STACK_SIZE && guard.is_multiple_of(page) && guard > 0);
        let fail = |source: io::Error| Error::StackAlloc { size, source };
        let (base, len, guard, free) = match allocator {
            None => {
                // Both are at most 1 GiB: no overflow even on 32-bit targets.
                let total = size + guard;
                let map = MmapOptions::new().len(total).stack().no_reserve_swap().map_anon().map_err(fail)?;
                // SAFETY: the guard region lies inside `map`, which we own
                // exclusively; making it inaccessible cannot invalidate any
                // Rust reference because none into the mapping exists yet.
                let rc = unsafe { libc::mprotect(map.as_ptr() as *mut c_void, guard, libc::PROT_NONE) };
                if rc != 0 {
                    // Never hand out a stack without its guard: drop (unmap) and fail.
                    return Err(fail(io::Error::last_os_error()));
                }
                // Best effort: a kernel without MADV_DONTDUMP still gives a working stack.
                let _ = map.advise(Advice::DontDump);
                let base = map.as_ptr() as *mut u8;
                // From here on the header owns the mapping (`unmap`).
                std::mem::forget(map);
                (base, total, guard, None)
            }
            Some(a) => {
                let (base, len, guard) = custom_block(a, size, page).ok_or_else(|| {
                    fail(io::Error::other(
                        "the pool's stack allocator (PoolConfig::stack_allocator; from C, \
                         ASYNC_set_mem_functions) returned null or a block too small for a stack: \
                         it must return at least the *num bytes it is asked for",
                    ))
                })?;
                (base, len, guard, Some(a.free))
            }
        };
        // SAFETY: the header's HEADER_RESERVE bytes at the (64-aligned)
        // end of the block are writable and unused; from here on the block
        // owns itself through the header. `lowest` and `end` stay inside
        // the block (it holds the guard plus at least MIN_STACK_SIZE).
        unsafe {
            let end = ((base as usize + len) & !63) as *mut u8;
            let lowest = bottom_at(base, guard);
            let header = end.sub(HEADER_RESERVE) as *mut Header;
            let top = NonNull::new_unchecked(header.cast::<u8>().sub(SLOT_RESERVE));
            let low = top.as_ptr() as usize & !(page - 1);
            if free.is_some() {
                // The job slot starts out zeroed, as a fresh mapping is
                // (the job layer reads its flags before the first job); an
                // allocator's block holds whatever was there before.
                std::ptr::write_bytes(top.as_ptr(), 0, SLOT_RESERVE);
            }
            let registration = sanitizer::stack_created(lowest, top.as_ptr(), end);
            header.write(Header {
                base,
                len,
                free,
                key: if scrub { epoch | SCRUB_KEY } else { epoch },
                // At most MAX_GUARD_SIZE (Shape::new) or a page.
                guard: guard as u32,
                scrub,
                isolate,
                low,
                registration,
                next_idle: std::ptr::null_mut(),
                live_newer: std::ptr::null_mut(),
                live_older: std::ptr::null_mut(),
            });
            live::link(top.as_ptr());
            Ok(Stack { top })
        }
    }

    #[inline(always)]
    fn header(&self) -> *mut Header {
        // SAFETY: the top of a live Stack, whose header is initialised.
        unsafe { header_of(self.top.as_ptr()) }
    }

    /// The pool instance that created this stack (0: none).
    #[inline(always)]
    pub(crate) fn epoch(&self) -> u64 {
        self.release_key() & !SCRUB_KEY
    }

    /// [`epoch`](Self::epoch), with [`SCRUB_KEY`] set if the stack
    /// [`scrubs`](Self::scrubs): equal to a pool's epoch exactly when the
    /// stack is that pool's and nothing is to be done before it goes back
    /// on the idle list, so the release path decides with one compare.
    #[inline(always)]
    pub(crate) fn release_key(&self) -> u64 {
        // SAFETY: the header was written by `new` and lives as long as `self`.
        unsafe { (*self.header()).key }
    }

    /// Whether the stack is scrubbed between jobs.
    #[inline(always)]
    pub(crate) fn scrubs(&self) -> bool {
        // SAFETY: as in `epoch`.
        unsafe { (*self.header()).scrub }
    }

    /// A job's frames below `live_from` are dead and the stack goes back
    /// or away: [`scrub_below`](Stack::scrub_below) if it scrubs.
    #[inline(always)]
    pub(crate) fn scrub_dead_frames(&self, live_from: *mut u8) {
        if self.scrubs() {
            self.scrub_below(live_from);
        }
    }

    /// Whether jobs on this stack keep errno and the FP control state per
    /// side.
    #[inline(always)]
    pub(crate) fn isolates(&self) -> bool {
        // SAFETY: as in `epoch`.
        unsafe { (*self.header()).isolate }
    }

    /// The link of the pool's idle list stored in this stack (meaningful
    /// only while the stack is idle).
    #[inline(always)]
    pub(crate) fn next_idle(&self) -> *mut u8 {
        // SAFETY: as in `epoch`.
        unsafe { (*self.header()).next_idle }
    }

    /// Sets the idle-list link (see [`next_idle`](Self::next_idle)).
    #[inline(always)]
    pub(crate) fn set_next_idle(&self, next: *mut u8) {
        // SAFETY: as in `epoch`; the header is written only by the owner.
        unsafe { (*self.header()).next_idle = next }
    }

    /// Gives up ownership without unmapping: the caller keeps the top and
    /// turns it back into a `Stack` with [`from_top`](Self::from_top).
    #[inline(always)]
    pub(crate) fn into_top(self) -> *mut u8 {
        let top = self.top();
        std::mem::forget(self);
        top
    }

    /// The stack whose [`top`](Self::top) is `top`, as an owner.
    ///
    /// # Safety
    /// `top` must be the top of a live stack; the caller must make sure only
    /// one of the owners it creates this way (or had before) drops it.
    #[inline(always)]
    pub(crate) unsafe fn from_top(top: *mut u8) -> Stack {
        // SAFETY: a live stack's top is never null.
        Stack { top: unsafe { NonNull::new_unchecked(top) } }
    }

    /// Lowest usable address (just above the guard region).
    pub(crate) fn bottom(&self) -> *mut u8 {
        // SAFETY: as in `epoch`; the block holds the guard plus at least
        // MIN_STACK_SIZE.
        unsafe { bottom_of(self.header()) }
    }

    /// The usable stack as `(bottom(), bytes up to top())`: what a job's
    /// frames may occupy.
    pub(crate) fn usable(&self) -> (*mut u8, usize) {
        let bottom = self.bottom();
        (bottom, self.top() as usize - bottom as usize)
    }

    /// The top of the usable stack: 64-byte aligned, the first address
    /// above it is the job slot. Records and frames grow down from here.
    #[inline(always)]
    pub(crate) fn top(&self) -> *mut u8 {
        self.top.as_ptr()
    }

    /// Zeroes every byte a job may have written on this stack below
    /// `live_from` (exclusive), the lowest address that still holds live
    /// data (the top, for a finished job: nothing below its slot is live).
    ///
    /// The header keeps `low`, the lowest page any scrub of this stack had
    /// to look at (all of [low, live_from) is zero after every scrub).
    /// `mincore` looks below it for pages a job touched for the first time
    /// (pages never touched are not resident, and are zero); a block scan
    /// skips the already-zero part of [lowest such page, live_from), and
    /// only the rest, what the job dirtied, is written. So the reads grow
    /// with the deepest depth any job on this stack reached and the writes
    /// with the depth this job dirtied; only `mincore`'s page-table walk
    /// (one byte per page, a fraction of a nanosecond per KiB) grows with
    /// the stack size.
    ///
    /// If `mincore` fails, everything down to the guard region is scanned
    /// (reading untouched pages maps the shared zero page: no memory, but
    /// every later scrub of this stack scans it all too).
    ///
    /// Limits: a page that was swapped out while the job ran and that no
    /// earlier scrub of this stack saw resident is not resident at the
    /// scrub either, so it is not scanned (its copy in swap could not be
    /// erased anyway): jobs handling secrets need memory that is not
    /// swapped (no swap, encrypted swap, or `mlockall`).
    ///
    /// Kept out of line: inlined, its Valgrind requests would crowd the
    /// registers of the release path.
    #[inline(never)]
    pub(crate) fn scrub_below(&self, live_from: *mut u8) {
        // `mincore` must not leave its errno to the job's resumer.
        let _errno = errno::Keep::new();
        let page = page_size();
        let bottom = self.bottom() as usize;
        let end = live_from as usize;
        debug_assert!(end > bottom && end <= self.top() as usize && end.is_multiple_of(8));
        let header = self.header();
        // SAFETY: the header lives as long as `self`; only the thread that
        // owns the stack (the job is finished, the stack is ours) touches it.
        let low = unsafe { (*header).low }.min(end & !(page - 1));
        let from = match lowest_resident(bottom, low) {
            Ok(Some(first)) => first,
            Ok(None) => low,
            Err(()) => bottom,
        };
        // SAFETY: as above.
        unsafe { (*header).low = from };
        // Dead frames, which memcheck rightly holds inaccessible: say that
        // this reads and writes them on purpose.
        sanitizer::scrubbing_dead_stack(from as *mut u8, end - from, || {
            // SAFETY: [from, end) lies in the usable stack (page-aligned
            // `from` at or above the bottom, `end` below the top), which no
            // running code uses: the job is switched out for good and its
            // frames below `live_from` are dead.
            unsafe {
                let dirty = first_nonzero(from, end);
                if dirty < end {
                    zero_volatile(dirty as *mut u8, end - dirty);
                }
            }
        });
    }
}

/// The lowest usable address of the stack whose header is `header`: above
/// the guard, or the block's first 16-aligned byte if it has none.
///
/// # Safety
/// `header` must be a live stack's header.
unsafe fn bottom_of(header: *const Header) -> *mut u8 {
    // SAFETY: per the contract the fields are intact.
    unsafe { bottom_at((*header).base, (*header).guard as usize) }
}

/// The lowest usable address of a block at `base` with a guard of `guard`
/// bytes at its first page boundary (0: none; the first 16-aligned byte).
/// Pure address arithmetic; `Stack::new` checked the block holds it.
fn bottom_at(base: *mut u8, guard: usize) -> *mut u8 {
    let align = if guard == 0 { 16 } else { page_size() };
    base.wrapping_add(base.align_offset(align) + guard)
}

/// Asks `a` for a stack block of `size` usable bytes (plus two pages: one
/// for the guard, one for aligning it) and makes its first whole page the
/// guard when `MIN_STACK_SIZE` still fits above it. Returns the block, its
/// length (what `alloc` says it returned) and the guard's length (0 or a
/// page); `None` if `alloc` returned null or a block too small for even
/// `MIN_STACK_SIZE` and the header, which is then freed at once.
fn custom_block(a: StackAllocator, size: usize, page: usize) -> Option<(*mut u8, usize, usize)> {
    let want = size + 2 * page;
    let mut len = want;
    // SAFETY: `alloc` is called as `StackAllocator::new`'s contract allows.
    let base = unsafe { (a.alloc)(&mut len) }.cast::<u8>();
    if base.is_null() {
        return None;
    }
    let len = len.min(isize::MAX as usize);
    let reserve = HEADER_RESERVE + SLOT_RESERVE + 64;
    let aligned = (base as usize).checked_next_multiple_of(page)? - base as usize;
    let guard = if len >= aligned + page + MIN_STACK_SIZE + reserve
        // SAFETY: the page lies inside the block, which the allocator gave
        // us alone (its contract); no reference into it exists yet.
        && unsafe { libc::mprotect(base.add(aligned).cast(), page, libc::PROT_NONE) } == 0
    {
        page
    } else {
        0
    };
    if guard == 0 && len < MIN_STACK_SIZE + reserve + 16 {
        // SAFETY: the block came from `alloc` and was not used.
        unsafe { (a.free)(base.cast()) };
        return None;
    }
    Some((base, len, guard))
}

/// Lowest resident page in [from, to) (page-aligned), `Ok(None)` if no
/// page there is resident, `Err` if `mincore` failed. Asks the kernel a
/// few MiB at a time, with no allocation.
fn lowest_resident(from: usize, to: usize) -> Result<Option<usize>, ()> {
    const CHUNK_PAGES: usize = 1024;
    let page = page_size();
    let mut vec = [0u8; CHUNK_PAGES];
    let mut at = from;
    while at < to {
        let pages = ((to - at) / page).min(CHUNK_PAGES);
        #[cfg(test)]
        match tests::MINCORE.get() {
            tests::Mincore::Real => {}
            tests::Mincore::Fails => return Err(()),
            tests::Mincore::NothingResident => return Ok(None),
        }
        // SAFETY: [at, at + pages * page) is page-aligned and inside the
        // caller's mapping; `vec` has room for one byte per page.
        let rc = unsafe { libc::mincore(at as *mut libc::c_void, pages * page, vec.as_mut_ptr()) };
        if rc != 0 {
            return Err(());
        }
        if let Some(i) = vec[..pages].iter().position(|b| b & 1 != 0) {
            return Ok(Some(at + i * page));
        }
        at += pages * page;
    }
    Ok(None)
}

/// The lowest address in [from, end) from which on the memory is not all
/// zero, rounded down to a word; `end` if all of it is zero. Reads 256-byte
/// blocks (which the compiler vectorises), then words.
///
/// # Safety
/// [from, end) must be readable and 8-byte aligned at both ends.
unsafe fn first_nonzero(from: usize, end: usize) -> usize {
    const BLOCK: usize = 256;
    let mut p = from;
    while p + BLOCK <= end {
        // SAFETY: per the contract the block is readable and aligned; no
        // code writes it while we read.
        let block = unsafe { &*(p as *const [u64; BLOCK / 8]) };
        if block.iter().fold(0, |acc, &w| acc | w) != 0 {
            break;
        }
        p += BLOCK;
    }
    // SAFETY: as above, one word at a time.
    while p < end && unsafe { *(p as *const u64) } == 0 {
        p += 8;
    }
    p
}

/// Where a stack's guard region is, and how much lies above it.
pub(crate) struct GuardOf {
    /// The guard region's lowest address.
    pub(crate) start: usize,
    /// Its length in bytes.
    pub(crate) len: usize,
    /// Bytes from the guard's end to the block's end: the stack size the
    /// pool was configured with (usable stack, slot and header) for an
    /// `mmap`ped stack.
    pub(crate) size: usize,
}

/// The header of the stack whose [`Stack::top`] is `top`.
///
/// # Safety
/// `top` is a stack's top whose header is initialised.
#[inline(always)]
unsafe fn header_of(top: *mut u8) -> *mut Header {
    // SAFETY: per the contract the header lies SLOT_RESERVE bytes above,
    // inside the stack's block.
    unsafe { top.add(SLOT_RESERVE).cast() }
}

/// The guard region and sizes of the stack whose [`Stack::top`] is `top`.
/// Async-signal-safe (plain loads).
///
/// # Safety
/// `top` must be the top of a live [`Stack`].
pub(crate) unsafe fn guard_of(top: *mut u8) -> GuardOf {
    // SAFETY: per the contract the header above `top` is intact.
    unsafe {
        let header = header_of(top);
        let (base, len, guard) = ((*header).base as usize, (*header).len, (*header).guard as usize);
        let above = bottom_of(header) as usize;
        GuardOf { start: above - guard, len: guard, size: base + len - above }
    }
}

impl Drop for Stack {
    fn drop(&mut self) {
        // SAFETY: the stack is live and never used again.
        unsafe { unmap(self.top) };
    }
}

/// Whether `addr` lies in the stack whose [`Stack::top`] is `top`, below
/// its top (where its frames live). Plain loads.
///
/// # Safety
/// `top` must be the top of a live [`Stack`].
pub(crate) unsafe fn holds(top: *mut u8, addr: usize) -> bool {
    // SAFETY: per the contract the header above `top` is intact.
    let base = unsafe { (*header_of(top)).base } as usize;
    base <= addr && addr < top as usize
}

/// Undoes the registrations [`Stack::new`] made and unmaps the stack whose
/// top is `top`. Out of line, and given the pointer by value: stacks are
/// unmapped rarely, while the release path that only *may* drop one runs
/// for every job; inlined there (or handed a `&Stack`), this would cost
/// every job instructions.
///
/// # Safety
/// `top` must be the top of a live [`Stack`] that is never used again.
#[cold]
#[inline(never)]
unsafe fn unmap(top: NonNull<u8>) {
    // SAFETY: per the contract the header above `top` is intact and the
    // stack is listed (on this thread: a Stack never leaves the thread that
    // created it), so it comes off the thread's list first; then it is
    // unmapped now, or when the thread's `live::Hold` ends.
    unsafe {
        live::unlink(top.as_ptr());
        if !live::defer(top.as_ptr()) {
            unmap_now(top.as_ptr());
        }
    }
}

/// Gives back the block of an unlisted stack.
///
/// # Safety
/// `top` is the top of a stack taken off the live list by [`unmap`], whose
/// header is intact, and that nothing uses again.
#[cold]
unsafe fn unmap_now(top: *mut u8) {
    let _errno = errno::Keep::new();
    // SAFETY: per the contract. The range deregistered is the one `new`
    // registered: from above the guard region to the (64-aligned) end of
    // the block. Then we read what we need out of the header (which is
    // never read again) and give the block back, the header included:
    // `munmap` for our own mapping, or, after the guard page is made
    // accessible again, the allocator's `free`.
    unsafe {
        let header = header_of(top);
        let lowest = bottom_of(header);
        let (base, len, guard, free) = ((*header).base, (*header).len, (*header).guard as usize, (*header).free);
        let end = ((base as usize + len) & !63) as *mut u8;
        sanitizer::stack_destroyed(&(*header).registration, lowest, end);
        match free {
            None => {
                libc::munmap(base.cast(), len);
            }
            Some(free) => {
                if guard != 0 {
                    let at = lowest.sub(guard);
                    libc::mprotect(at.cast(), guard, libc::PROT_READ | libc::PROT_WRITE);
                }
                free(base.cast());
            }
        }
    }
}

/// Zeroes `len` bytes at `p` in a way the optimiser cannot drop as a dead
/// store (the point is to destroy data nobody will read again).
///
/// # Safety
/// `p..p+len` must be writable.
pub(crate) unsafe fn zero_volatile(p: *mut u8, len: usize) {
    // SAFETY: the caller guarantees the range is writable.
    unsafe { core::ptr::write_bytes(p, 0, len) };
    // Keep the stores: the pointer escapes into an opaque use, so the
    // compiler must assume the zeroed bytes are read afterwards.
    std::hint::black_box(p);
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::Cell;

    /// What `lowest_resident` sees in these tests.
    #[derive(Clone, Copy)]
    pub(super) enum Mincore {
        Real,
        /// `mincore` fails.
        Fails,
        /// No page is resident (as if every page had been swapped out).
        NothingResident,
    }

    thread_local! {
        pub(super) static MINCORE: Cell<Mincore> = const { Cell::new(Mincore::Real) };
    }

    const SIZE: usize = 64 * 1024;

    fn stack() -> Stack {
        Stack::new(Shape::new(SIZE, DEFAULT_GUARD_SIZE).unwrap(), 0, true, true, None).unwrap()
    }

    /// Pretend live data (a switched-out record, say) sits here; everything
    /// above must survive a scrub.
    fn live_from(stack: &Stack) -> *mut u8 {
        // SAFETY: 128 bytes below the top is inside the usable stack.
        unsafe { stack.top().sub(128) }
    }

    fn poke(addr: *mut u8, value: u8) {
        // SAFETY: callers pass addresses inside the usable stack.
        unsafe { addr.write_volatile(value) }
    }

    /// These tests read dead stack memory on purpose, which memcheck
    /// rightly reports: under Valgrind (scripts/valgrind.sh sets
    /// `STACKJOB_UNDER_VALGRIND`) they say so and skip.
    fn skip_under_valgrind() -> bool {
        let skip = std::env::var_os("STACKJOB_UNDER_VALGRIND").is_some();
        if skip {
            eprintln!("skipped under Valgrind: this test reads dead stack memory on purpose");
        }
        skip
    }

    fn peek(addr: *mut u8) -> u8 {
        // SAFETY: as in `poke`.
        unsafe { addr.read_volatile() }
    }

    fn low(stack: &Stack) -> usize {
        // SAFETY: the header lives as long as the stack.
        unsafe { (*stack.header()).low }
    }

    fn resident_pages(stack: &Stack) -> usize {
        let page = page_size();
        let (from, to) = (stack.bottom() as usize, stack.top() as usize & !(page - 1));
        let mut vec = vec![0u8; (to - from) / page];
        // SAFETY: page-aligned range inside the mapping, one byte per page.
        let rc = unsafe { libc::mincore(from as *mut libc::c_void, to - from, vec.as_mut_ptr()) };
        assert_eq!(rc, 0);
        vec.iter().filter(|b| *b & 1 != 0).count()
    }

    #[test]
    fn dirty_bytes_at_any_depth_are_zeroed_and_live_bytes_kept() {
        if skip_under_valgrind() {
            return;
        }
        let s = stack();
        let end = live_from(&s);
        let bottom = s.bottom();
        // SAFETY: all offsets stay inside [bottom, top).
        let (deepest, middle, just_below, live) = unsafe { (bottom, bottom.add(SIZE / 2), end.sub(1), end.add(8)) };
        for p in [deepest, middle, just_below, live] {
            poke(p, 0xa5);
        }
        s.scrub_below(end);
        assert_eq!([peek(deepest), peek(middle), peek(just_below)], [0, 0, 0]);
        assert_eq!(peek(live), 0xa5, "the scrub must not touch live data at or above live_from");
        assert_eq!(low(&s), bottom as usize, "the deepest page touched becomes the new low mark");
    }

    #[test]
    fn a_shallow_job_is_scrubbed_without_faulting_in_deeper_pages() {
        if skip_under_valgrind() {
            return;
        }
        let s = stack();
        let end = live_from(&s);
        // SAFETY: just below live_from, inside the top page.
        let p = unsafe { end.sub(64) };
        poke(p, 1);
        let before = resident_pages(&s);
        s.scrub_below(end);
        assert_eq!(peek(p), 0);
        assert_eq!(resident_pages(&s), before, "no page below the used one may be read");
    }

    #[test]
    fn pages_an_earlier_job_used_are_checked_again() {
        if skip_under_valgrind() {
            return;
        }
        let s = stack();
        let end = live_from(&s);
        let deep = s.bottom();
        poke(deep, 1);
        s.scrub_below(end);
        assert_eq!(peek(deep), 0);
        // A later job writes there again, and the page is swapped out by the
        // time of the scrub: mincore no longer reports it, but an earlier
        // scrub saw it, so the low mark still covers it.
        poke(deep, 2);
        MINCORE.set(Mincore::NothingResident);
        s.scrub_below(end);
        MINCORE.set(Mincore::Real);
        assert_eq!(peek(deep), 0);
    }

    #[test]
    fn when_mincore_fails_everything_down_to_the_guard_page_is_scanned() {
        if skip_under_valgrind() {
            return;
        }
        let s = stack();
        let end = live_from(&s);
        let deep = s.bottom();
        poke(deep, 7);
        assert!(low(&s) > deep as usize, "a fresh stack's low mark is its top page");
        MINCORE.set(Mincore::Fails);
        s.scrub_below(end);
        MINCORE.set(Mincore::Real);
        assert_eq!(peek(deep), 0, "without mincore the scrub must assume any page may be dirty");
        assert_eq!(low(&s), deep as usize);
    }

    #[test]
    fn a_stack_with_nothing_dirty_is_left_alone() {
        let s = stack();
        let end = live_from(&s);
        let before = resident_pages(&s);
        s.scrub_below(end);
        s.scrub_below(end);
        assert_eq!(resident_pages(&s), before);
    }

    #[test]
    fn first_nonzero_finds_the_lowest_dirty_word_across_block_boundaries() {
        let mut buf = vec![0u64; 256];
        let base = buf.as_mut_ptr() as usize;
        let end = base + 256 * 8;
        // SAFETY: [base, end) is `buf`, 8-byte aligned.
        assert_eq!(unsafe { first_nonzero(base, end) }, end);
        for word in [255, 200, 33, 32, 31, 1, 0] {
            buf[word] = 1;
            // SAFETY: as above.
            assert_eq!(unsafe { first_nonzero(base, end) }, base + word * 8, "dirty word {word}");
        }
    }
}

/// Every stack this thread has mapped and not yet unmapped, as an intrusive
/// doubly linked list through the headers (newest first; the head is in the
/// thread's hot state, `current::Hot::live`). A stack joins when it is
/// created and leaves when it is unmapped, both on the cold path, so the
/// layers above can find every job of the thread (the job layer's
/// `cleanup_thread`) without any bookkeeping while jobs start, pause or
/// end. A `Stack` is neither `Send` nor `Sync`, so it is created and
/// unmapped on one thread: the list is that thread's alone.
pub(crate) mod live {
    use super::header_of as header;
    use crate::current;

    /// How many unmapped stacks a [`Hold`] keeps mapped at most; at the
    /// next one they are all given back at once (and [`changes`] moves).
    /// Bounds what a hold can pin while code under it maps and unmaps
    /// stacks in a loop, and keeps a walk that re-collects after each
    /// batch linear in practice.
    const DEFER_MAX: usize = 1024;

    /// Lists a new stack as the newest.
    ///
    /// # Safety
    /// `top` is a new stack's top, its header initialised and not listed.
    pub(super) unsafe fn link(top: *mut u8) {
        let hot = current::hot();
        let older = hot.live.get();
        // SAFETY: per the contract; `older` is a listed, mapped stack.
        unsafe {
            (*header(top)).live_older = older;
            (*header(top)).live_newer = std::ptr::null_mut();
            if !older.is_null() {
                (*header(older)).live_newer = top;
            }
        }
        hot.live.set(top);
    }

    /// Takes a stack that is about to be unmapped off the list.
    ///
    /// # Safety
    /// `top` is a listed stack's top, on the thread that created it.
    pub(super) unsafe fn unlink(top: *mut u8) {
        let hot = current::hot();
        // SAFETY: per the contract; its neighbours are listed, mapped stacks.
        unsafe {
            let (newer, older) = ((*header(top)).live_newer, (*header(top)).live_older);
            if newer.is_null() {
                hot.live.set(older);
            } else {
                (*header(newer)).live_older = older;
            }
            if !older.is_null() {
                (*header(older)).live_newer = newer;
            }
        }
    }

    /// Whether the unlisted stack at `top` stays mapped for now: a
    /// [`Hold`] is on, so it joins the thread's deferred stacks (linked
    /// through its header), given back when the last hold ends or the
    /// deferred stacks reach [`DEFER_MAX`]. Otherwise the caller unmaps it
    /// now, and [`changes`] moves.
    ///
    /// # Safety
    /// `top` was just taken off the list by [`unlink`] and is never used again.
    pub(super) unsafe fn defer(top: *mut u8) -> bool {
        let hot = current::hot();
        if hot.live_holds.get() == 0 {
            hot.live_changes.set(hot.live_changes.get().wrapping_add(1));
            return false;
        }
        if hot.deferred_len.get() >= DEFER_MAX {
            flush();
        }
        // SAFETY: per the contract the header is intact and ours alone.
        unsafe { (*header(top)).live_older = hot.deferred.get() };
        hot.deferred.set(top);
        hot.deferred_len.set(hot.deferred_len.get() + 1);
        true
    }

    /// Unmaps the deferred stacks; [`changes`] moves if there were any.
    fn flush() {
        let hot = current::hot();
        if hot.deferred.get().is_null() {
            return;
        }
        hot.live_changes.set(hot.live_changes.get().wrapping_add(1));
        while !hot.deferred.get().is_null() {
            let top = hot.deferred.get();
            // SAFETY: deferred stacks are unlisted, intact and unused
            // (`defer`'s contract); each leaves the list before it goes.
            unsafe {
                hot.deferred.set((*header(top)).live_older);
                hot.deferred_len.set(hot.deferred_len.get() - 1);
                super::unmap_now(top);
            }
        }
    }

    /// While a `Hold` of the thread is alive, its stacks that are unmapped
    /// stay mapped (unlisted) until the last hold ends, in batches of at
    /// most [`DEFER_MAX`]: a walk that collected stack tops ([`for_each`])
    /// can read their headers and slots afterwards as long as [`changes`]
    /// reads the same, while the code it runs unmaps stacks. Holds nest.
    #[must_use]
    pub(crate) struct Hold(());

    /// Starts a [`Hold`].
    pub(crate) fn hold() -> Hold {
        let holds = &current::hot().live_holds;
        holds.set(holds.get() + 1);
        Hold(())
    }

    impl Drop for Hold {
        fn drop(&mut self) {
            let holds = &current::hot().live_holds;
            holds.set(holds.get() - 1);
            if holds.get() == 0 {
                flush();
            }
        }
    }

    /// The newest listed stack whose top satisfies `pred`, or null. Plain
    /// loads, as [`for_each`].
    pub(crate) fn find(mut pred: impl FnMut(*mut u8) -> bool) -> *mut u8 {
        let mut found: *mut u8 = std::ptr::null_mut();
        for_each(|top| {
            if found.is_null() && pred(top) {
                found = top;
            }
        });
        found
    }

    /// Calls `f` with the top of every stack the thread has listed (mapped
    /// and not yet unmapped), newest first. `f` must not unmap stacks
    /// (collect, then act).
    pub(crate) fn for_each(mut f: impl FnMut(*mut u8)) {
        let changes = changes();
        let mut top = current::hot().live.get();
        while !top.is_null() {
            f(top);
            debug_assert_eq!(changes, self::changes(), "live::for_each: a stack was unmapped meanwhile");
            // SAFETY: `top` is listed, so mapped, with an initialised header.
            top = unsafe { (*header(top)).live_older };
        }
    }

    /// A counter that moves whenever stacks of this thread are given back
    /// (unmapped or freed): tops collected by [`for_each`] are still mapped
    /// while it reads the same. (Stacks created meanwhile do not move it:
    /// they do not invalidate what was collected.)
    pub(crate) fn changes() -> u64 {
        current::hot().live_changes.get()
    }
}
