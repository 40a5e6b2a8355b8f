//! Guard-paged job stacks: one anonymous `mmap` per stack.
//!
//! ```text
//!   high  +---------------------------+ <- map end
//!         | header (the mapping, pool)|    64 bytes
//!         +---------------------------+
//!         | job slot (Rust, see job)  |    SLOT_RESERVE bytes
//!         +---------------------------+ <- top(): 64-aligned; a `Stack` is
//!         |                           |    just this pointer
//!         |                           |
//!         |  usable stack, grows down |    `size` bytes (rounded to pages)
//!         |                           |
//!         +---------------------------+ <- bottom()
//!         | guard page  (PROT_NONE)   |
//!   low   +---------------------------+ <- map start
//! ```
//!
//! The map is `MAP_PRIVATE | MAP_ANONYMOUS | MAP_STACK | MAP_NORESERVE`:
//! pages cost memory only once touched, so a paused job that used 8 KiB of
//! a 256 KiB stack holds 8 KiB. `MADV_DONTDUMP` keeps whatever the job
//! computed (key material) out of core dumps.

use crate::Error;
use crate::sanitizer::{self, StackRegistration};
use memmap2::{Advice, MmapMut, MmapOptions};
use std::io;
use std::mem::ManuallyDrop;
use std::ptr::NonNull;

/// Default usable stack size: 256 KiB. OpenSSL's fixed 32 KiB overflows with
/// OpenSSL 3 code and with Rust's panic machinery; untouched pages cost
/// nothing (`MAP_NORESERVE`), so a generous default is cheap.
pub const DEFAULT_STACK_SIZE: usize = 256 * 1024;
/// Smallest accepted usable stack size (after rounding to pages).
pub const MIN_STACK_SIZE: usize = 16 * 1024;
/// Largest accepted usable stack size: 1 GiB. Larger requests are almost
/// certainly a unit mistake and would exhaust address space in a pool.
pub const MAX_STACK_SIZE: usize = 1 << 30;

/// Bytes below the header reserved for the job slot (the Rust bookkeeping
/// of the job that owns the stack); the slot starts at [`Stack::top`].
pub(crate) const SLOT_RESERVE: usize = 192;
/// Bytes at the very top of every mapping for the stack's own header.
const HEADER_RESERVE: usize = 64;

/// What a stack knows about itself, stored in its own mapping.
#[repr(C)]
struct Header {
    /// The mapping itself; taken out and dropped (unmapped) by `Stack::drop`.
    map: ManuallyDrop<MmapMut>,
    /// The pool instance the stack belongs to (0: none).
    epoch: u64,
    /// Scrub before reuse and before unmapping.
    scrub: bool,
    /// The stack's registration with Valgrind (and LeakSanitizer).
    registration: StackRegistration,
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

/// Rounds a requested usable size up to whole pages and checks its bounds.
pub(crate) fn round_stack_size(requested: usize) -> Result<usize, Error> {
    let page = page_size();
    if !(MIN_STACK_SIZE..=MAX_STACK_SIZE).contains(&requested) {
        return Err(Error::InvalidStackSize { requested });
    }
    Ok(requested.div_ceil(page) * page)
}

/// One guard-paged stack mapping, as a single pointer to its top (where the
/// job slot begins). Dropping it unmaps it.
pub(crate) struct Stack {
    top: NonNull<u8>,
}

impl Stack {
    /// Maps a stack with `size` usable bytes (already page-rounded by
    /// [`round_stack_size`]) above one `PROT_NONE` guard page, owned by the
    /// pool instance `epoch`.
    pub(crate) fn new(size: usize, epoch: u64, scrub: bool) -> Result<Stack, Error> {
        let page = page_size();
        debug_assert!(size.is_multiple_of(page) && size >= MIN_STACK_SIZE);
        let total = size + page;
        let fail = |source: io::Error| Error::StackAlloc { size, source };
        let map = MmapOptions::new().len(total).stack().no_reserve_swap().map_anon().map_err(fail)?;
        // SAFETY: the first page lies inside `map`, which we own exclusively;
        // making it inaccessible cannot invalidate any Rust reference because
        // none into the mapping exists yet.
        let rc = unsafe { libc::mprotect(map.as_ptr() as *mut libc::c_void, page, libc::PROT_NONE) };
        if rc != 0 {
            // Never hand out a stack without its guard: drop (unmap) and fail.
            return Err(fail(io::Error::last_os_error()));
        }
        // Best effort: a kernel without MADV_DONTDUMP still gives a working stack.
        let _ = map.advise(Advice::DontDump);
        // SAFETY: the header's HEADER_RESERVE bytes at the end of the mapping
        // are writable, suitably aligned (page-aligned end minus 64) and
        // unused; from here on the mapping owns itself through the header.
        // `lowest` and `end` stay inside the mapping (it is a page plus at
        // least MIN_STACK_SIZE long).
        unsafe {
            let lowest = map.as_ptr().add(page) as *mut u8;
            let end = map.as_ptr().add(total) as *mut u8;
            let header = end.sub(HEADER_RESERVE) as *mut Header;
            let top = NonNull::new_unchecked(header.cast::<u8>().sub(SLOT_RESERVE));
            let registration = sanitizer::stack_created(lowest, top.as_ptr(), end);
            header.write(Header { map: ManuallyDrop::new(map), epoch, scrub, registration });
            Ok(Stack { top })
        }
    }

    fn header(&self) -> *mut Header {
        // SAFETY: the header lies SLOT_RESERVE bytes above the top, inside
        // the mapping this Stack owns.
        unsafe { self.top.as_ptr().add(SLOT_RESERVE).cast() }
    }

    /// The pool instance that created this stack (0: none).
    pub(crate) fn epoch(&self) -> u64 {
        // SAFETY: the header was written by `new` and lives as long as `self`.
        unsafe { (*self.header()).epoch }
    }

    /// Whether the stack is scrubbed between jobs.
    pub(crate) fn scrubs(&self) -> bool {
        // SAFETY: as in `epoch`.
        unsafe { (*self.header()).scrub }
    }

    /// Lowest address of the mapping (the guard page).
    pub(crate) fn guard(&self) -> *mut u8 {
        // SAFETY: as in `epoch`.
        unsafe { (*self.header()).map.as_ptr() as *mut u8 }
    }

    /// Lowest usable address (just above the guard page).
    pub(crate) fn bottom(&self) -> *mut u8 {
        // SAFETY: the mapping is at least one page plus MIN_STACK_SIZE long.
        unsafe { self.guard().add(page_size()) }
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

    /// Zeroes every byte between the deepest point any job reached on this
    /// stack since the last scrub and `live_from` (exclusive), the lowest
    /// address that still holds live data (the switched-out record of the
    /// pooled job loop). Cost grows with the depth actually used: `mincore`
    /// finds the lowest resident page (pages never touched are not
    /// resident), a word scan skips the already-zero part of that page
    /// range, and only the rest is written. Kept out of line: inlined, its
    /// Valgrind requests would crowd the registers of the release path.
    #[inline(never)]
    pub(crate) fn scrub_below(&self, live_from: *mut u8) {
        let bottom = self.bottom() as usize;
        let end = live_from as usize;
        debug_assert!(end > bottom && end <= self.top() as usize);
        let start = self.lowest_resident(bottom, end).unwrap_or(bottom) & !7;
        // Dead frames, which memcheck rightly holds inaccessible: say that
        // this reads and writes them on purpose.
        sanitizer::scrubbing_dead_stack(start as *mut u8, end - start, || {
            // Skip the zero prefix (pages a previous scrub zeroed but left resident).
            let mut p = start;
            // SAFETY: [start, end) lies in the usable stack, mapped and
            // 8-byte aligned at `p`.
            while p < end && unsafe { (p as *const u64).read_volatile() } == 0 {
                p += 8;
            }
            if p < end {
                // SAFETY: [p, end) lies in the usable stack, which no running
                // code uses (the job is switched out and its frames below
                // `live_from` are dead).
                unsafe { zero_volatile(p as *mut u8, end - p) };
            }
        });
    }

    /// Lowest resident page in [from, to), via mincore; None if unknown.
    fn lowest_resident(&self, from: usize, to: usize) -> Option<usize> {
        let page = page_size();
        let pages = (to - from).div_ceil(page);
        let mut vec = vec![0u8; pages];
        // SAFETY: [from, from + pages*page) is inside our mapping and page
        // aligned; `vec` has one byte per page as mincore requires.
        let rc = unsafe { libc::mincore(from as *mut libc::c_void, pages * page, vec.as_mut_ptr()) };
        if rc != 0 {
            return None;
        }
        let first = vec.iter().position(|b| b & 1 != 0)?;
        Some(from + first * page)
    }
}

/// The guard page address and the usable size of the stack whose
/// [`Stack::top`] is `top`. Async-signal-safe (plain loads).
///
/// # Safety
/// `top` must be the top of a live [`Stack`].
pub(crate) unsafe fn guard_of(top: *mut u8) -> (usize, usize) {
    // SAFETY: per the contract the header above `top` is intact.
    unsafe {
        let header = top.add(SLOT_RESERVE).cast::<Header>();
        let map = &(*header).map;
        (map.as_ptr() as usize, map.len() - page_size())
    }
}

impl Drop for Stack {
    fn drop(&mut self) {
        // SAFETY: the stack is live and never used again.
        unsafe { unmap(self.top) };
    }
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
    // SAFETY: per the contract the header above `top` is intact. The range
    // deregistered is the one `new` registered: from above the guard page to
    // the end of the mapping (`above_guard` bytes, as `guard_of` counts).
    // Then we move the mapping out of the header (which is never read
    // again) and drop it, which unmaps everything, the header included.
    unsafe {
        let header = top.as_ptr().add(SLOT_RESERVE).cast::<Header>();
        let (_, above_guard) = guard_of(top.as_ptr());
        let lowest = (*header).map.as_ptr().add(page_size()).cast_mut();
        sanitizer::stack_destroyed(&(*header).registration, lowest, lowest.add(above_guard));
        drop(ManuallyDrop::take(&mut (*header).map));
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
