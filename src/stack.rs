//! Guard-paged job stacks: one anonymous `mmap` per stack.
//!
//! ```text
//!   high  +---------------------------+ <- map end
//!         | job slot (Rust, see job)  |    SLOT_RESERVE bytes, 64-aligned
//!         +---------------------------+ <- top(): 16-aligned, the first record
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
use memmap2::{Advice, MmapMut, MmapOptions};
use std::io;

/// Default usable stack size: 256 KiB. OpenSSL's fixed 32 KiB overflows with
/// OpenSSL 3 code and with Rust's panic machinery; untouched pages cost
/// nothing (`MAP_NORESERVE`), so a generous default is cheap.
pub const DEFAULT_STACK_SIZE: usize = 256 * 1024;
/// Smallest accepted usable stack size (after rounding to pages).
pub const MIN_STACK_SIZE: usize = 16 * 1024;
/// Largest accepted usable stack size: 1 GiB. Larger requests are almost
/// certainly a unit mistake and would exhaust address space in a pool.
pub const MAX_STACK_SIZE: usize = 1 << 30;

/// Bytes at the top of every mapping reserved for the job slot (the Rust
/// bookkeeping of the job that owns the stack).
pub(crate) const SLOT_RESERVE: usize = 256;

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

/// One guard-paged stack mapping. Dropping it unmaps it.
pub(crate) struct Stack {
    map: MmapMut,
}

impl Stack {
    /// Maps a stack with `size` usable bytes (already page-rounded by
    /// [`round_stack_size`]) above one `PROT_NONE` guard page.
    pub(crate) fn new(size: usize) -> Result<Stack, Error> {
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
        Ok(Stack { map })
    }

    /// Lowest address of the mapping (the guard page).
    pub(crate) fn guard(&self) -> *mut u8 {
        self.map.as_ptr() as *mut u8
    }

    /// Lowest usable address (just above the guard page).
    pub(crate) fn bottom(&self) -> *mut u8 {
        // SAFETY: the mapping is at least one page plus MIN_STACK_SIZE long.
        unsafe { self.guard().add(page_size()) }
    }

    /// Address of the job slot at the top of the mapping (64-byte aligned).
    pub(crate) fn slot_addr(&self) -> *mut u8 {
        // SAFETY: SLOT_RESERVE < MIN_STACK_SIZE, so this stays in the mapping.
        unsafe { self.guard().add(self.map.len() - SLOT_RESERVE) }
    }

    /// The initial stack pointer: just below the slot, 16-byte aligned.
    pub(crate) fn top(&self) -> *mut u8 {
        self.slot_addr()
    }

    /// Zeroes every byte between the deepest point any job reached on this
    /// stack since the last scrub and `live_from` (exclusive), the lowest
    /// address that still holds live data (the switched-out record of the
    /// pooled job loop). Cost grows with the depth actually used: `mincore`
    /// finds the lowest resident page (pages never touched are not
    /// resident), a word scan skips the already-zero part of that page
    /// range, and only the rest is written.
    pub(crate) fn scrub_below(&mut self, live_from: *mut u8) {
        let bottom = self.bottom() as usize;
        let end = live_from as usize;
        debug_assert!(end > bottom && end <= self.top() as usize);
        let start = self.lowest_resident(bottom, end).unwrap_or(bottom);
        // Skip the zero prefix (pages a previous scrub zeroed but left resident).
        let mut p = start & !7;
        while p < end && unsafe { (p as *const u64).read_volatile() } == 0 {
            p += 8;
        }
        if p < end {
            // SAFETY: [p, end) lies in the usable stack, which no running
            // code uses (the job is switched out and its frames below
            // `live_from` are dead).
            unsafe { zero_volatile(p as *mut u8, end - p) };
        }
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
