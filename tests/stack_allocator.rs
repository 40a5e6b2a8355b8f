//! `PoolConfig::stack_allocator`: job stacks taken from a caller's
//! allocator pair (what the C library does for `ASYNC_set_mem_functions`).
//! The allocator here records every block it hands out, so the tests can
//! check that jobs run inside them, that each block is freed exactly once,
//! that the guard page inside a large block is inaccessible, and what
//! happens when the allocator fails or hands out too little.

#[macro_use]
mod common;

use common::{finished, paused, stack_pointer};
use stackjob::{Error, PoolConfig, StackAllocator, Step, cleanup_thread, init_thread_with, start};
use std::cell::{Cell, RefCell};
use std::ffi::c_void;

thread_local! {
    /// Live blocks handed out on this thread: (address, length).
    static BLOCKS: RefCell<Vec<(usize, usize)>> = const { RefCell::new(Vec::new()) };
    static ALLOCS: Cell<usize> = const { Cell::new(0) };
    static FREES: Cell<usize> = const { Cell::new(0) };
    /// What `alloc` does: 0 = malloc(*num); 1 = return null; 2 = a block of
    /// 4 KiB (too small for any stack); 3 = twice `*num`, saying so;
    /// 4 = malloc(*num) filled with 0xa5 (a block with old contents).
    static MODE: Cell<u8> = const { Cell::new(0) };
    /// The `*num` of the last request.
    static ASKED: Cell<usize> = const { Cell::new(0) };
}

unsafe extern "C" fn alloc(num: *mut usize) -> *mut c_void {
    // SAFETY: the pool passes a valid, writable `num`.
    let asked = unsafe { *num };
    ASKED.set(asked);
    let len = match MODE.get() {
        1 => return std::ptr::null_mut(),
        2 => 4096,
        3 => asked * 2,
        _ => asked,
    };
    // SAFETY: as above.
    unsafe { *num = len };
    // SAFETY: plain malloc; the block is ours until `free`.
    let p = unsafe { libc::malloc(len) };
    if MODE.get() == 4 && !p.is_null() {
        // SAFETY: `p` holds `len` writable bytes.
        unsafe { std::ptr::write_bytes(p.cast::<u8>(), 0xa5, len) };
    }
    if !p.is_null() {
        ALLOCS.set(ALLOCS.get() + 1);
        BLOCKS.with(|b| b.borrow_mut().push((p as usize, len)));
    }
    p
}

unsafe extern "C" fn free(p: *mut c_void) {
    let known = BLOCKS.with(|b| {
        let mut b = b.borrow_mut();
        let at = b.iter().position(|&(a, _)| a == p as usize);
        at.map(|i| b.swap_remove(i)).is_some()
    });
    assert!(known, "free got a block alloc never returned (or one twice)");
    FREES.set(FREES.get() + 1);
    // SAFETY: `p` came from malloc in `alloc`.
    unsafe { libc::free(p) }
}

fn heap() -> StackAllocator {
    // SAFETY: malloc's blocks are 16-aligned and ours until freed; `free`
    // is called on the allocating thread (the pool is per thread).
    unsafe { StackAllocator::new(alloc, free) }
}

fn in_a_block(addr: usize) -> bool {
    BLOCKS.with(|b| b.borrow().iter().any(|&(a, len)| addr >= a && addr < a + len))
}

/// The protection of the page holding `addr`, from /proc/self/maps.
fn protection(addr: usize) -> String {
    let maps = std::fs::read_to_string("/proc/self/maps").expect("read /proc/self/maps");
    for line in maps.lines() {
        let (range, rest) = line.split_once(' ').unwrap();
        let (lo, hi) = range.split_once('-').unwrap();
        let (lo, hi) = (usize::from_str_radix(lo, 16).unwrap(), usize::from_str_radix(hi, 16).unwrap());
        if addr >= lo && addr < hi {
            return rest[..4].to_string();
        }
    }
    panic!("{addr:#x} is not mapped");
}

#[test]
fn jobs_run_and_pause_on_the_allocators_blocks_and_every_block_is_freed_once() {
    require_backend!();
    MODE.set(0);
    init_thread_with(&PoolConfig::new().init_size(2).stack_allocator(Some(heap()))).unwrap();
    assert_eq!(ALLOCS.get(), 2, "init_size stacks come from the allocator");
    assert_eq!(ASKED.get(), stackjob::DEFAULT_STACK_SIZE + 2 * page(), "the stack size plus two pages is asked for");
    let job = paused(
        start(None, || {
            let sp = stack_pointer();
            stackjob::pause();
            (sp, stack_pointer())
        })
        .unwrap(),
    );
    let Step::Finished((before, after)) = job.resume().unwrap() else { panic!("expected the job to finish") };
    assert!(in_a_block(before) && in_a_block(after), "the job ran on an allocator's block");
    // A third concurrent job grows the pool through the allocator too.
    let jobs: Vec<_> = (0..3).map(|_| paused(start(None, stackjob::pause).unwrap())).collect();
    assert_eq!(ALLOCS.get(), 3);
    for j in jobs {
        finished(j.resume().unwrap());
    }
    assert_eq!(FREES.get(), 0, "idle stacks stay in the pool");
    cleanup_thread();
    assert_eq!(FREES.get(), 3, "cleanup_thread gives every block back");
    assert!(BLOCKS.with(|b| b.borrow().is_empty()));
}

#[test]
fn a_large_block_keeps_an_inaccessible_guard_page_inside_it_until_it_is_freed() {
    require_backend!();
    MODE.set(0);
    init_thread_with(&PoolConfig::new().init_size(1).stack_allocator(Some(heap()))).unwrap();
    assert_eq!(stackjob::pool_stats().guard_size, page(), "the pool reports the one-page guard");
    let (base, len) = BLOCKS.with(|b| b.borrow()[0]);
    let guard = base.next_multiple_of(page());
    assert!(guard + page() <= base + len);
    assert_eq!(protection(guard), "---p", "the first whole page of the block is the guard");
    assert_eq!(&protection(guard + page())[..2], "rw", "the stack above it is ordinary memory");
    cleanup_thread();
    assert_eq!(FREES.get(), ALLOCS.get());
    // (The page went back to malloc read-write: free would crash otherwise
    // when malloc writes its bookkeeping there, or when the next malloc
    // hands the page out.)
    let again = vec![0u8; len];
    drop(again);
}

#[test]
fn an_allocator_that_raises_num_gets_its_larger_block_used() {
    require_backend!();
    MODE.set(3);
    init_thread_with(&PoolConfig::new().init_size(1).stack_allocator(Some(heap()))).unwrap();
    MODE.set(0);
    let (base, len) = BLOCKS.with(|b| b.borrow()[0]);
    assert_eq!(len, ASKED.get() * 2);
    // The header and slot sit at the top of the whole block: a job's frames
    // start near its end, far above the middle.
    let Step::Finished(sp) = start(None, stack_pointer).unwrap() else { panic!("expected a finish") };
    assert!(sp > base + len / 2 && sp < base + len, "{sp:#x} in {base:#x}+{len:#x}");
    cleanup_thread();
}

#[test]
fn a_failing_or_too_small_allocator_is_a_typed_error_not_a_crash() {
    require_backend!();
    for mode in [1, 2] {
        MODE.set(mode);
        let before = (ALLOCS.get(), FREES.get());
        let e = init_thread_with(&PoolConfig::new().init_size(1).stack_allocator(Some(heap()))).unwrap_err();
        assert!(matches!(e, Error::StackAlloc { .. }), "mode {mode}: {e:?}");
        assert!(e.to_string().contains("ASYNC_set_mem_functions"), "the message names the allocator: {e}");
        // A too-small block was handed back at once.
        assert_eq!(ALLOCS.get() - before.0, FREES.get() - before.1, "mode {mode}");
        // Lazily: the start itself fails the same way.
        init_thread_with(&PoolConfig::new().stack_allocator(Some(heap()))).unwrap();
        let e = start(None, || 1).unwrap_err();
        assert!(matches!(e, Error::StackAlloc { .. }), "mode {mode}: {e:?}");
        cleanup_thread();
    }
    MODE.set(0);
}

/// A block is not zero like a fresh mapping: the job bookkeeping at its
/// top must not be read as left over from an earlier job.
#[test]
fn a_block_full_of_old_bytes_serves_jobs_like_a_fresh_one() {
    require_backend!();
    MODE.set(4);
    init_thread_with(&PoolConfig::new().init_size(1).stack_allocator(Some(heap()))).unwrap();
    MODE.set(0);
    let job = paused(
        start(None, || {
            stackjob::pause();
            11
        })
        .unwrap(),
    );
    assert_eq!(finished(job.resume().unwrap()), 11);
    assert_eq!(finished(start(None, || 12).unwrap()), 12);
    cleanup_thread();
}

#[test]
fn allocator_pairs_compare_by_their_functions() {
    assert_eq!(heap(), heap());
    assert_eq!(PoolConfig::new().stack_allocator(Some(heap())), PoolConfig::new().stack_allocator(Some(heap())));
    assert_ne!(PoolConfig::new(), PoolConfig::new().stack_allocator(Some(heap())));
    assert!(std::ptr::fn_addr_eq(heap().alloc_fn(), alloc as unsafe extern "C" fn(*mut usize) -> *mut c_void));
}

fn page() -> usize {
    // SAFETY: sysconf has no preconditions.
    unsafe { libc::sysconf(libc::_SC_PAGESIZE) as usize }
}
