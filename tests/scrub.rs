//! Secrets do not outlive their job: with `PoolConfig::scrub(true)` nothing
//! a job wrote on its stack survives the job, whether it finished, panicked
//! or was cancelled, and the closure the job was started with leaves no copy
//! behind in the starter's dead frames either.
//!
//! The tests look at the memory itself. A job reports the address of one of
//! its locals; `/proc/self/maps` gives the job stack's mapping around it
//! (the guard region is a separate `PROT_NONE` mapping below, never read);
//! the stack stays mapped while it waits in the pool, so the test reads it
//! from outside afterwards. Only pages `mincore` reports resident are read,
//! so the check itself never faults pages in (which would hide a scrub that
//! looks at too few pages behind one that sees everything resident).
//!
//! Secrets are pseudo-random byte streams generated from a seed, on the job
//! stack by the job and on the heap by the test; a leftover is any aligned
//! 8-byte word of memory that equals any 8-byte window of the secret, so a
//! partial or misaligned copy counts too. Every "nothing left" assertion has
//! a twin with `scrub(false)` asserting that the copy *is* there, so the
//! check can fail.
//!
//! Linux-only (`/proc/self/maps`); elsewhere the tests skip.

#[macro_use]
mod common;

/// These tests read the dead part of job stacks on purpose, to look for
/// leftover secrets; memcheck rightly reports every such read. Under
/// Valgrind (`STACKJOB_UNDER_VALGRIND`, set by scripts/valgrind.sh) they
/// say so and skip, and so under AddressSanitizer, whose fake stacks move
/// the secrets' locals off the job stack: the native runs check the scrub.
macro_rules! skip_under_valgrind {
    () => {
        if std::env::var_os("STACKJOB_UNDER_VALGRIND").is_some() {
            eprintln!("skipped under Valgrind: this test reads dead stack memory on purpose");
            return;
        }
        if cfg!(feature = "asan") {
            eprintln!("skipped under AddressSanitizer: its fake stacks keep locals off the job stack");
            return;
        }
    };
}
use common::{finished, paused};
use stackjob::{PoolConfig, StackAllocator, Step, cleanup_thread, init_thread_with, pause, pool_stats, start};
use std::cell::Cell;
use std::collections::HashSet;
use std::ffi::c_void;
use std::hint::black_box;
use std::rc::Rc;

/// Returns from the test, saying why, in an unoptimised build: there the
/// compiler keeps temporary copies of a by-value argument in the callee's
/// frame that no code can name (`start` zeroes the copy it keeps; a debug
/// build makes another while moving the closure into it).
macro_rules! require_optimised_build {
    () => {
        if cfg!(debug_assertions) {
            eprintln!("skipped: needs an optimised build (cargo test --release): unoptimised code leaves unnamed temporaries of the closure in start's frame");
            return;
        }
    };
}

fn page_size() -> usize {
    // SAFETY: sysconf has no preconditions.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    assert!(page > 0, "sysconf(_SC_PAGESIZE) failed");
    page as usize
}

const KIB: usize = 1024;

/// Writes the secret stream of `seed` into `out` (xorshift64; never zero).
/// Seeds that differ only in bit 0 give the same stream.
#[inline(never)]
fn fill(seed: u64, out: &mut [u8]) {
    let mut x = seed | 1;
    for chunk in out.chunks_mut(8) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        chunk.copy_from_slice(&x.to_le_bytes()[..chunk.len()]);
    }
}

/// Every 8-byte window of the secret stream of `seed`, `len` bytes long.
struct Fingerprint {
    windows: HashSet<u64>,
}

impl Fingerprint {
    fn of(seed: u64, len: usize) -> Fingerprint {
        let mut bytes = vec![0u8; len];
        fill(seed, &mut bytes);
        Fingerprint::of_bytes(&bytes)
    }

    fn of_bytes(bytes: &[u8]) -> Fingerprint {
        let windows: HashSet<u64> =
            bytes.windows(8).map(|w| u64::from_le_bytes(w.try_into().unwrap())).filter(|&w| w != 0).collect();
        assert!(windows.len() > bytes.len() / 2, "the secret must not be repetitive");
        Fingerprint { windows }
    }

    /// How many of `words` belong to the secret.
    fn count(&self, words: &[(usize, u64)]) -> usize {
        words.iter().filter(|(_, w)| self.windows.contains(w)).count()
    }
}

/// The read-write part of the job-stack mapping that contains `addr`:
/// usable stack, job slot and header. The guard region is the separate
/// `PROT_NONE` mapping just below `lo`.
#[derive(Clone, Copy, Debug)]
struct Region {
    lo: usize,
    hi: usize,
}

fn mapping_of(addr: usize) -> Region {
    let maps = std::fs::read_to_string("/proc/self/maps").expect("read /proc/self/maps");
    for line in maps.lines() {
        let mut fields = line.split_whitespace();
        let range = fields.next().unwrap();
        let perms = fields.next().unwrap();
        let (lo, hi) = range.split_once('-').unwrap();
        let (lo, hi) = (usize::from_str_radix(lo, 16).unwrap(), usize::from_str_radix(hi, 16).unwrap());
        if (lo..hi).contains(&addr) {
            assert!(perms.starts_with("rw"), "job stack mapping is not read-write: {line}");
            return Region { lo, hi };
        }
    }
    panic!("{addr:#x} is in no mapping");
}

/// The job stack around `addr`, checked to be one `stack_size` mapping.
fn job_stack_of(addr: usize, stack_size: usize) -> Region {
    let region = mapping_of(addr);
    assert_eq!(
        region.hi - region.lo,
        stack_size,
        "the job stack's read-write mapping should be exactly the configured size: {region:x?}"
    );
    region
}

/// For each page of [lo, hi), whether it is resident.
fn resident(lo: usize, hi: usize) -> Vec<bool> {
    let page = page_size();
    assert!(lo.is_multiple_of(page) && hi.is_multiple_of(page));
    let mut vec = vec![0u8; (hi - lo) / page];
    // SAFETY: [lo, hi) is a page-aligned range of mapped memory (a job
    // stack kept mapped by the pool); the vector has one byte per page.
    let rc = unsafe { libc::mincore(lo as *mut libc::c_void, hi - lo, vec.as_mut_ptr()) };
    assert_eq!(rc, 0, "mincore: {}", std::io::Error::last_os_error());
    vec.iter().map(|b| b & 1 != 0).collect()
}

/// Every aligned word of the resident pages of `region`, with its address.
fn resident_words(region: Region) -> Vec<(usize, u64)> {
    let page = page_size();
    let mut words = Vec::with_capacity((region.hi - region.lo) / 8);
    for (i, present) in resident(region.lo, region.hi).into_iter().enumerate() {
        if !present {
            continue;
        }
        let start = region.lo + i * page;
        for addr in (start..start + page).step_by(8) {
            // SAFETY: the page is mapped read-write and no code uses it: the
            // job that ran on it has finished and its stack waits in the
            // pool. Volatile: the compiler knows nothing about this memory.
            words.push((addr, unsafe { (addr as *const u64).read_volatile() }));
        }
    }
    words
}

/// How many words of the secret are left in the job stack `region`.
fn leftovers(region: Region, secret: &Fingerprint) -> usize {
    secret.count(&resident_words(region))
}

/// The lowest address in `region` holding a non-zero byte.
fn lowest_nonzero(region: Region) -> Option<usize> {
    resident_words(region).into_iter().find(|&(_, w)| w != 0).map(|(a, _)| a)
}

fn pool(stack_size: usize, scrub: bool) {
    init_thread_with(&PoolConfig::new().max_size(1).stack_size(stack_size).scrub(scrub)).unwrap();
}

/// The address of a local of the caller's frame (roughly its stack pointer).
#[inline(always)]
fn here() -> usize {
    let local = 0u8;
    black_box(&local) as *const u8 as usize
}

/// Writes 4 KiB of the secret of `seed` in a buffer of its own frame and
/// returns the buffer's address. (A function of its own, so the recursion
/// frames below do not each carry the 4 KiB.)
#[inline(never)]
fn write_secret(seed: u64) -> usize {
    let mut buf = [0u8; 4 * KIB];
    fill(seed, &mut buf);
    black_box(&mut buf);
    buf.as_ptr() as usize
}

/// Like `write_secret`, but pauses with the secret live.
#[inline(never)]
fn pause_with_secret(seed: u64) -> usize {
    let mut buf = [0u8; 4 * KIB];
    fill(seed, &mut buf);
    black_box(&mut buf);
    pause();
    black_box(&mut buf);
    buf.as_ptr() as usize
}

/// Like `write_secret`, but panics with the secret in the frame.
#[inline(never)]
fn panic_with_secret(seed: u64) -> ! {
    let mut buf = [0u8; 4 * KIB];
    fill(seed, &mut buf);
    black_box(&mut buf);
    std::panic::panic_any(buf.as_ptr() as usize)
}

/// Recurses `kib` frames of about 1 KiB, then writes 4 KiB of the secret of
/// `seed` in the deepest frame and returns its address.
#[inline(never)]
fn write_deep(kib: usize, seed: u64) -> usize {
    let mut frame = [0u8; KIB];
    black_box(&mut frame);
    if kib == 0 {
        return write_secret(seed);
    }
    write_deep(kib - 1, seed) + black_box(frame[0]) as usize
}

/// Like `write_deep`, but recurses until its frame lies below `limit`.
#[inline(never)]
fn write_below(limit: usize, seed: u64) -> usize {
    let mut frame = [0u8; KIB];
    black_box(&mut frame);
    if (frame.as_ptr() as usize) < limit {
        return write_secret(seed);
    }
    write_below(limit, seed) + black_box(frame[0]) as usize
}

/// Like `write_deep`, but pauses in the deepest frame with the secret live.
#[inline(never)]
fn pause_deep(kib: usize, seed: u64) -> usize {
    let mut frame = [0u8; KIB];
    black_box(&mut frame);
    if kib == 0 {
        return pause_with_secret(seed);
    }
    pause_deep(kib - 1, seed) + black_box(frame[0]) as usize
}

/// Like `write_deep`, but panics in the deepest frame.
#[inline(never)]
fn panic_deep(kib: usize, seed: u64) -> usize {
    let mut frame = [0u8; KIB];
    black_box(&mut frame);
    if kib == 0 {
        panic_with_secret(seed);
    }
    panic_deep(kib - 1, seed) + black_box(frame[0]) as usize
}

const STACK: usize = 128 * KIB;
/// A copy of a 4 KiB secret is 512 aligned words; later frames may overwrite
/// some, and the negative controls ask for at least half of them.
const FULL_4K: usize = 4 * KIB / 8 / 2;
/// Same for a 512-byte secret.
const FULL_512: usize = 512 / 8 / 2;

/// Runs a job that writes a 4 KiB secret 40 KiB below its first frame and
/// returns; then counts what is left of it on the pooled stack.
fn deep_secret_leftovers(scrub: bool, seed: u64) -> usize {
    pool(STACK, scrub);
    let (top, deep) = finished(start(None, move || (here(), write_deep(40, seed))).unwrap());
    assert!(top - deep >= 40 * KIB, "the secret should lie >= 40 KiB deep, it is {} bytes", top - deep);
    assert_eq!(pool_stats().idle, 1, "the stack waits in the pool, still mapped");
    let left = leftovers(job_stack_of(top, STACK), &Fingerprint::of(seed, 4 * KIB));
    cleanup_thread();
    left
}

#[test]
fn a_secret_deep_in_the_stack_is_gone_when_the_job_finishes() {
    require_backend!();
    skip_under_valgrind!();
    assert_eq!(deep_secret_leftovers(true, 0x5eed_0001), 0);
}

#[test]
fn without_scrub_the_deep_secret_stays_on_the_pooled_stack() {
    require_backend!();
    skip_under_valgrind!();
    let left = deep_secret_leftovers(false, 0x5eed_0002);
    assert!(left >= FULL_4K, "the check must see the copy scrub(false) leaves: {left} words");
}

#[test]
fn after_a_scrub_the_used_stack_is_zero_up_to_the_pooled_job_loop() {
    require_backend!();
    skip_under_valgrind!();
    pool(STACK, true);
    let top = finished(start(None, move || (here(), write_deep(40, 0x5eed_0003)).0).unwrap());
    let region = job_stack_of(top, STACK);
    assert_only_bookkeeping_is_left(region);
    cleanup_thread();
}

/// The bytes at the top of every mapping that are bookkeeping, not stack:
/// the job slot (192) and the stack's header (128: its mapping, pool links
/// and the thread's list of stacks).
const BOOKKEEPING: usize = 192 + 128;

/// What may stay non-zero on a scrubbed stack: the header and job slot
/// (`BOOKKEEPING` bytes at the top). A finished job leaves nothing live
/// below its slot, so everything below is zero.
fn assert_only_bookkeeping_is_left(region: Region) {
    let lowest = lowest_nonzero(region).expect("the slot and header are never zero");
    assert!(
        region.hi - lowest <= BOOKKEEPING,
        "non-zero byte {} bytes below the top of the mapping: only the bookkeeping may be left",
        region.hi - lowest
    );
}

/// A closure capturing a 512-byte secret by value runs as a job; returns the
/// leftovers on the job stack.
fn captured_secret_leftovers(scrub: bool, seed: u64) -> usize {
    pool(STACK, scrub);
    let secret = Box::new({
        let mut s = [0u8; 512];
        fill(seed, &mut s);
        s
    });
    let fingerprint = Fingerprint::of_bytes(&*secret);
    let captured: [u8; 512] = *secret;
    let (top, sum) = finished(
        start(None, move || {
            let top = here();
            let secret = black_box(&captured);
            (top, secret.iter().map(|&b| b as u32).sum::<u32>())
        })
        .unwrap(),
    );
    assert_eq!(sum, secret.iter().map(|&b| b as u32).sum::<u32>(), "the job saw the secret");
    let left = leftovers(job_stack_of(top, STACK), &fingerprint);
    cleanup_thread();
    left
}

#[test]
fn a_captured_secret_leaves_no_copy_on_the_job_stack() {
    require_backend!();
    skip_under_valgrind!();
    assert_eq!(captured_secret_leftovers(true, 0x5eed_0004), 0);
}

#[test]
fn without_scrub_the_captured_secret_stays_on_the_job_stack() {
    require_backend!();
    skip_under_valgrind!();
    let left = captured_secret_leftovers(false, 0x5eed_0005);
    assert!(left >= FULL_512, "the check must see the copy scrub(false) leaves: {left} words");
}

/// Copies the `len` bytes of this thread's stack just below the caller's
/// frame: frames of functions that already returned.
#[inline(never)]
fn dead_frames_below_caller(len: usize) -> Vec<(usize, u64)> {
    let mut words = Vec::with_capacity(len / 8);
    let hi = (here() & !7) - 64;
    let lo = hi - len;
    let mut addr = lo;
    while addr < hi {
        // SAFETY: the range is part of this thread's stack (the test
        // thread is spawned with a 4 MiB stack and this runs a few frames
        // deep), mapped and not in use by any live frame.
        words.push((addr, unsafe { (addr as *const u64).read_volatile() }));
        addr += 8;
    }
    words
}

/// Zeroes the 128 KiB of this thread's stack below the caller: whatever
/// copies the test itself left in dead frames are gone before `start` runs.
#[inline(never)]
fn wipe_dead_frames() {
    let mut zeros = [0u8; 128 * KIB];
    black_box(&mut zeros);
}

/// `start` in a frame of its own (which an optimised build would otherwise
/// merge into the caller's, where it stays live), taking the closure by
/// reference to the caller's copy, as any call does.
#[inline(never)]
fn start_here<F: FnOnce() -> u8 + 'static>(f: F) -> Result<Step<u8>, stackjob::Error> {
    start(None, f)
}

/// Counts the words of `fingerprint` in the dead frames below its own
/// frame when dropped: placed in the frame that calls `start`, it looks at
/// what `start` left behind while that frame unwinds.
struct ScanOnDrop {
    fingerprint: Fingerprint,
    found: Rc<Cell<Option<usize>>>,
}

impl Drop for ScanOnDrop {
    fn drop(&mut self) {
        self.found.set(Some(self.fingerprint.count(&dead_frames_below_caller(64 * KIB))));
    }
}

/// Starts a job capturing a 512-byte secret (finishing or panicking) on a
/// fresh thread; once `start` returned, counts the secret's words in the
/// dead frames below the starter, where `start` and its callees ran. The
/// closure is built in the frame that calls `start` (live all along), so
/// the only dead frames are those of `start` and what it called.
fn starter_leftovers(scrub: bool, panics: bool, seed: u64) -> usize {
    std::thread::Builder::new()
        .stack_size(4 << 20)
        .spawn(move || {
            pool(STACK, scrub);
            let secret = Box::new({
                let mut s = [0u8; 512];
                fill(seed, &mut s);
                s
            });
            let fingerprint = Fingerprint::of_bytes(&*secret);
            wipe_dead_frames();
            if !panics {
                let captured: [u8; 512] = *secret;
                let step = start_here(move || black_box(&captured)[1]).unwrap();
                assert_eq!(finished(step), secret[1]);
                return fingerprint.count(&dead_frames_below_caller(64 * KIB));
            }
            // A panic out of `start` unwinds to a catch_unwind further up;
            // the frame that called `start` is still there while its
            // locals drop, and `start`'s frame below it is dead by then.
            let found = Rc::new(Cell::new(None));
            let report = found.clone();
            let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(move || {
                let _scan = ScanOnDrop { fingerprint, found: report };
                let captured: [u8; 512] = *secret;
                let _ = start_here(move || -> u8 { std::panic::panic_any(black_box(&captured)[0]) });
            }));
            assert!(outcome.is_err(), "the job's panic reaches the starter");
            found.get().expect("the scan ran while unwinding")
        })
        .unwrap()
        .join()
        .unwrap()
}

#[test]
fn a_captured_secret_leaves_no_copy_in_the_starters_dead_frames() {
    require_backend!();
    skip_under_valgrind!();
    require_optimised_build!();
    assert_eq!(starter_leftovers(true, false, 0x5eed_0006), 0);
}

#[test]
fn a_captured_secret_leaves_no_copy_in_the_starters_dead_frames_when_the_job_panics() {
    require_backend!();
    skip_under_valgrind!();
    require_optimised_build!();
    let prev = std::panic::take_hook();
    std::panic::set_hook(Box::new(|_| {}));
    let left = starter_leftovers(true, true, 0x5eed_0007);
    std::panic::set_hook(prev);
    assert_eq!(left, 0);
}

/// A job computes a 512-byte secret and returns it; returns the leftovers on
/// the job stack.
fn returned_secret_leftovers(scrub: bool, seed: u64) -> usize {
    pool(STACK, scrub);
    let (top, value) = finished(
        start(None, move || {
            let top = here();
            let mut secret = [0u8; 512];
            fill(seed, &mut secret);
            black_box(&mut secret);
            (top, secret)
        })
        .unwrap(),
    );
    let fingerprint = Fingerprint::of(seed, 512);
    assert_eq!(
        fingerprint.count(&value.chunks(8).map(|c| (0, u64::from_le_bytes(c.try_into().unwrap()))).collect::<Vec<_>>()),
        64,
        "the value arrives intact"
    );
    let left = leftovers(job_stack_of(top, STACK), &fingerprint);
    cleanup_thread();
    left
}

#[test]
fn a_returned_secret_leaves_no_copy_on_the_job_stack() {
    require_backend!();
    skip_under_valgrind!();
    assert_eq!(returned_secret_leftovers(true, 0x5eed_0008), 0);
}

#[test]
fn without_scrub_the_returned_secret_stays_on_the_job_stack() {
    require_backend!();
    skip_under_valgrind!();
    let left = returned_secret_leftovers(false, 0x5eed_0009);
    assert!(left >= FULL_512, "the check must see the copy scrub(false) leaves: {left} words");
}

/// A job pauses with a 4 KiB secret live 40 KiB deep and is dropped
/// (cancelled); returns the leftovers.
fn cancelled_secret_leftovers(scrub: bool, seed: u64) -> usize {
    pool(STACK, scrub);
    let top = Rc::new(Cell::new(0));
    let report = top.clone();
    let job = paused(
        start(None, move || {
            report.set(here());
            pause_deep(40, seed)
        })
        .unwrap(),
    );
    let region = job_stack_of(top.get(), STACK);
    let fingerprint = Fingerprint::of(seed, 4 * KIB);
    assert!(leftovers(region, &fingerprint) >= FULL_4K, "the paused job holds its secret");
    drop(job);
    assert_eq!(pool_stats().idle, 1);
    let left = leftovers(region, &fingerprint);
    cleanup_thread();
    left
}

#[test]
fn a_cancelled_jobs_secret_is_gone_when_the_job_is_dropped() {
    require_backend!();
    skip_under_valgrind!();
    assert_eq!(cancelled_secret_leftovers(true, 0x5eed_000a), 0);
}

#[test]
fn without_scrub_a_cancelled_jobs_secret_stays() {
    require_backend!();
    skip_under_valgrind!();
    let left = cancelled_secret_leftovers(false, 0x5eed_000b);
    assert!(left >= FULL_4K, "the check must see the copy scrub(false) leaves: {left} words");
}

thread_local! {
    /// The seed whose secret `checking_free` looks for, the length of each
    /// block `recording_alloc` handed out, and what `checking_free` found:
    /// the secret's words in the last block given back (`usize::MAX` until
    /// then). Thread-local: a stack is freed on the thread that made it,
    /// and tests run on threads of their own.
    static FREED_SEED: Cell<u64> = const { Cell::new(0) };
    static BLOCKS: std::cell::RefCell<std::collections::HashMap<usize, usize>> = std::cell::RefCell::new(Default::default());
    static FREED_LEFTOVERS: Cell<usize> = const { Cell::new(usize::MAX) };
}

unsafe extern "C" fn recording_alloc(num: *mut usize) -> *mut c_void {
    // SAFETY: the pool passes a valid `num`; then plain malloc.
    let (len, p) = unsafe { (*num, libc::malloc(*num)) };
    BLOCKS.with(|b| b.borrow_mut().insert(p as usize, len));
    p
}

/// Counts the secret's words in the block before it goes back to malloc:
/// what the stack held when the pool let go of it.
unsafe extern "C" fn checking_free(p: *mut c_void) {
    let len = BLOCKS.with(|b| b.borrow_mut().remove(&(p as usize))).expect("a block of recording_alloc") / 8 * 8;
    // SAFETY: `p` is a block of `len` bytes from `recording_alloc`, all
    // read-write again (the pool restores its guard page first).
    let words: Vec<(usize, u64)> =
        (0..len).step_by(8).map(|i| (i, unsafe { p.cast::<u8>().add(i).cast::<u64>().read_unaligned() })).collect();
    let secret = Fingerprint::of(FREED_SEED.get(), 4 * KIB);
    FREED_LEFTOVERS.set(secret.count(&words));
    // SAFETY: `p` came from malloc.
    unsafe { libc::free(p) }
}

/// A job pauses with a 4 KiB secret live 40 KiB deep, `cleanup_thread`
/// cancels it, and its (dead) handle is dropped, which gives the stack back
/// to the pool's allocator; returns the secret words the block still held.
fn dead_handle_secret_leftovers(scrub: bool, seed: u64) -> usize {
    FREED_SEED.set(seed);
    FREED_LEFTOVERS.set(usize::MAX);
    // SAFETY: malloc's blocks are writable and 16-aligned until freed.
    let heap = unsafe { StackAllocator::new(recording_alloc, checking_free) };
    let config = PoolConfig::new().max_size(1).stack_size(STACK).scrub(scrub).stack_allocator(Some(heap));
    init_thread_with(&config).unwrap();
    let job = paused(start(None, move || pause_deep(40, seed)).unwrap());
    cleanup_thread();
    assert_eq!(FREED_LEFTOVERS.get(), usize::MAX, "the dead handle still owns the stack");
    assert!(matches!(job.resume(), Err(stackjob::Error::Cancelled)));
    FREED_LEFTOVERS.get()
}

#[test]
fn a_secret_is_gone_when_a_job_cancelled_by_cleanup_thread_is_dropped() {
    require_backend!();
    skip_under_valgrind!();
    assert_eq!(dead_handle_secret_leftovers(true, 0x5eed_0021), 0);
}

#[test]
fn without_scrub_a_dead_handles_secret_reaches_the_allocator() {
    require_backend!();
    skip_under_valgrind!();
    let left = dead_handle_secret_leftovers(false, 0x5eed_0023);
    assert!(left != usize::MAX && left >= FULL_4K, "the check must see the copy scrub(false) leaves: {left} words");
}

/// A job writes a 4 KiB secret 40 KiB deep and panics; returns the leftovers.
fn panicked_secret_leftovers(scrub: bool, seed: u64) -> usize {
    pool(STACK, scrub);
    let top = Rc::new(Cell::new(0));
    let report = top.clone();
    let prev = std::panic::take_hook();
    std::panic::set_hook(Box::new(|_| {}));
    let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        start(None, move || {
            report.set(here());
            panic_deep(40, seed)
        })
    }));
    std::panic::set_hook(prev);
    assert!(outcome.is_err(), "the job's panic reaches the starter");
    assert_eq!(pool_stats().idle, 1);
    let left = leftovers(job_stack_of(top.get(), STACK), &Fingerprint::of(seed, 4 * KIB));
    cleanup_thread();
    left
}

#[test]
fn a_panicking_jobs_secret_is_gone_when_the_panic_reaches_the_starter() {
    require_backend!();
    skip_under_valgrind!();
    assert_eq!(panicked_secret_leftovers(true, 0x5eed_000c), 0);
}

#[test]
fn without_scrub_a_panicking_jobs_secret_stays() {
    require_backend!();
    skip_under_valgrind!();
    let left = panicked_secret_leftovers(false, 0x5eed_000d);
    assert!(left >= FULL_4K, "the check must see the copy scrub(false) leaves: {left} words");
}

/// Writes a 64-byte secret in a frame of its own (which nothing overwrites
/// once it returns: the job only unwinds from here).
#[inline(never)]
fn write_small_secret(seed: u64) {
    let mut secret = [0u8; 64];
    fill(seed, &mut secret);
    black_box(&mut secret);
}

/// `write_small_secret` under 768 bytes of padding, so the secret lies
/// well below any record a switch writes near the top of the stack and is
/// not overwritten by one: the scrub, not the switch, must be what removes
/// it.
#[inline(never)]
fn write_small_secret_padded(seed: u64) {
    let mut pad = [0u8; 768];
    black_box(&mut pad);
    write_small_secret(seed);
    black_box(&pad);
}

/// A job that uses a few hundred bytes of a fresh 1 MiB stack: the scrub
/// clears them and touches no deeper page (its cost follows the depth used,
/// not the stack size).
fn shallow_job(scrub: bool, seed: u64) -> (usize, usize) {
    const BIG: usize = 1024 * KIB;
    pool(BIG, scrub);
    let top = finished(
        start(None, move || {
            let top = here();
            write_small_secret_padded(seed);
            top
        })
        .unwrap(),
    );
    let region = job_stack_of(top, BIG);
    let pages = resident(region.lo, region.hi).into_iter().filter(|&r| r).count();
    let left = leftovers(region, &Fingerprint::of(seed, 64));
    cleanup_thread();
    (left, pages)
}

#[test]
fn a_job_using_less_than_a_page_is_scrubbed_without_touching_deeper_pages() {
    require_backend!();
    skip_under_valgrind!();
    let (left, pages) = shallow_job(true, 0x5eed_000e);
    assert_eq!(left, 0);
    assert!(pages <= 4, "the scrub must not fault in the untouched part of the stack: {pages} pages resident");
}

#[test]
fn without_scrub_a_shallow_secret_stays() {
    require_backend!();
    skip_under_valgrind!();
    let (left, pages) = shallow_job(false, 0x5eed_000f);
    assert!(left >= 64 / 8 - 1, "the check must see the copy scrub(false) leaves: {left} words");
    assert!(pages <= 4, "{pages} pages resident");
}

/// A second job on the same stack writes a secret within a few KiB of the
/// guard page; returns the leftovers and how deep it went.
fn bottom_secret_leftovers(scrub: bool, seed: u64) -> (usize, usize) {
    pool(STACK, scrub);
    let top = finished(start(None, here).unwrap());
    let region = job_stack_of(top, STACK);
    // Stop recursing 12 KiB above the guard: the deepest frame (1 KiB plus
    // the 4 KiB buffer, more in a debug build) must still fit.
    let limit = region.lo + 12 * KIB;
    let deep = finished(start(None, move || write_below(limit, seed)).unwrap());
    let left = leftovers(region, &Fingerprint::of(seed, 4 * KIB));
    cleanup_thread();
    (left, deep - region.lo)
}

#[test]
fn a_job_that_used_the_whole_stack_is_scrubbed_down_to_the_guard_page() {
    require_backend!();
    skip_under_valgrind!();
    let (left, above_guard) = bottom_secret_leftovers(true, 0x5eed_0010);
    assert!(above_guard < 12 * KIB, "the secret should lie near the guard page: {above_guard} bytes above it");
    assert_eq!(left, 0);
}

#[test]
fn without_scrub_the_secret_near_the_guard_page_stays() {
    require_backend!();
    skip_under_valgrind!();
    let (left, _) = bottom_secret_leftovers(false, 0x5eed_0011);
    assert!(left >= FULL_4K, "the check must see the copy scrub(false) leaves: {left} words");
}

#[test]
fn pages_a_previous_job_used_stay_zero_after_a_shallower_job() {
    require_backend!();
    skip_under_valgrind!();
    pool(STACK, true);
    let (deep_seed, shallow_seed) = (0x5eed_0012, 0x5eed_0013);
    let top = finished(start(None, move || (here(), write_deep(60, deep_seed)).0).unwrap());
    let region = job_stack_of(top, STACK);
    let deep_pages = resident(region.lo, region.hi).into_iter().filter(|&r| r).count();
    assert!(deep_pages >= 60 * KIB / page_size(), "the deep job's pages stay resident: {deep_pages}");
    // A shallower job on the same stack: its scrub must still see the deep
    // (resident, already zero) pages as clean and clear its own.
    let again = finished(start(None, move || (here(), write_deep(8, shallow_seed)).0).unwrap());
    assert_eq!(again, top, "same stack, same first frame");
    assert_eq!(leftovers(region, &Fingerprint::of(deep_seed, 4 * KIB)), 0);
    assert_eq!(leftovers(region, &Fingerprint::of(shallow_seed, 4 * KIB)), 0);
    assert_only_bookkeeping_is_left(region);
    // And a job deeper than both: everything still clean afterwards.
    finished(start(None, move || write_deep(90, deep_seed)).unwrap());
    assert_eq!(leftovers(region, &Fingerprint::of(deep_seed, 4 * KIB)), 0);
    assert_only_bookkeeping_is_left(region);
    cleanup_thread();
}

/// Seeing the stack when it is unmapped: this test binary defines `munmap`
/// itself, so the crate's (and memmap2's) calls land here first; mappings
/// of the watched length are searched for the watched secret before they
/// go. Everything else is passed straight to the kernel.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
mod unmap_watch {
    use std::sync::Mutex;
    use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

    /// Length of the mappings to inspect (0: none).
    static LEN: AtomicUsize = AtomicUsize::new(0);
    /// Length of their guard region (PROT_NONE) at the start.
    static GUARD: AtomicUsize = AtomicUsize::new(0);
    /// The aligned words of the secret, sorted.
    static WORDS: [AtomicU64; 512] = [const { AtomicU64::new(0) }; 512];
    /// Inspected mappings, and the secret's words found in them.
    static SEEN: AtomicUsize = AtomicUsize::new(0);
    static HITS: AtomicUsize = AtomicUsize::new(0);
    /// One watching test at a time.
    pub static LOCK: Mutex<()> = Mutex::new(());

    /// Watch mappings of `len` bytes, the first `guard` of them
    /// inaccessible, for the 4 KiB secret of `seed`.
    pub fn arm(len: usize, guard: usize, seed: u64) {
        GUARD.store(guard, Ordering::SeqCst);
        let mut bytes = [0u8; 4096];
        super::fill(seed, &mut bytes);
        let mut words: Vec<u64> = bytes.chunks(8).map(|c| u64::from_le_bytes(c.try_into().unwrap())).collect();
        words.sort_unstable();
        for (slot, w) in WORDS.iter().zip(words) {
            slot.store(w, Ordering::SeqCst);
        }
        SEEN.store(0, Ordering::SeqCst);
        HITS.store(0, Ordering::SeqCst);
        LEN.store(len, Ordering::SeqCst);
    }

    /// Stops watching; returns (mappings inspected, secret words found).
    pub fn disarm() -> (usize, usize) {
        LEN.store(0, Ordering::SeqCst);
        (SEEN.load(Ordering::SeqCst), HITS.load(Ordering::SeqCst))
    }

    fn inspect(addr: usize, len: usize) {
        let mut words = [0u64; 512];
        for (w, slot) in words.iter_mut().zip(WORDS.iter()) {
            *w = slot.load(Ordering::SeqCst);
        }
        // Skip the guard region (PROT_NONE) at the start of the mapping.
        // Words are read at every 4-byte offset: 32-bit targets align a
        // stack buffer to 4 only, so the secret's words may sit at 8n + 4.
        let mut hits = 0;
        let mut p = addr + GUARD.load(Ordering::SeqCst);
        while p + 8 <= addr + len {
            // SAFETY: the page is still mapped read-write (we are about to
            // unmap it) and no code uses it any more; both 4-aligned reads
            // end inside it. Little-endian, as u64::from_le_bytes above.
            let w = unsafe {
                let (lo, hi) = ((p as *const u32).read_volatile(), ((p + 4) as *const u32).read_volatile());
                u64::from(lo) | u64::from(hi) << 32
            };
            if w != 0 && words.binary_search(&w).is_ok() {
                hits += 1;
            }
            p += 4;
        }
        SEEN.fetch_add(1, Ordering::SeqCst);
        HITS.fetch_add(hits, Ordering::SeqCst);
    }

    /// # Safety
    /// As `munmap(2)`.
    #[unsafe(no_mangle)]
    pub unsafe extern "C" fn munmap(addr: *mut libc::c_void, len: libc::size_t) -> libc::c_int {
        let watched = LEN.load(Ordering::SeqCst);
        if watched != 0 && len == watched && !addr.is_null() {
            inspect(addr as usize, len);
        }
        // SAFETY: the caller's arguments, passed on unchanged.
        unsafe { libc::syscall(libc::SYS_munmap, addr, len) as libc::c_int }
    }
}

/// What the unmap watch sees (mappings inspected, secret words found) when
/// a stack is unmapped (a) by `cleanup_thread` freeing the idle stack of a
/// job that wrote a secret, and (b) after a job paused under a pool that
/// was replaced finishes (its stack is not the current pool's, so it is
/// unmapped at once).
#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn unmapped_secrets(scrub: bool, seed: u64) -> [(usize, usize); 2] {
    // A size no other test here uses, so only this test's stacks match.
    const SIZE: usize = 72 * KIB;
    let guard = stackjob::DEFAULT_GUARD_SIZE;
    let len = SIZE + guard;
    let _one_at_a_time = unmap_watch::LOCK.lock().unwrap_or_else(|e| e.into_inner());

    pool(SIZE, scrub);
    finished(start(None, move || write_deep(40, seed)).unwrap());
    unmap_watch::arm(len, guard, seed);
    cleanup_thread();
    let by_cleanup = unmap_watch::disarm();

    pool(SIZE, scrub);
    let job = paused(start(None, move || pause_deep(40, seed)).unwrap());
    pool(SIZE, scrub); // replaces the pool; the paused job keeps its stack
    unmap_watch::arm(len, guard, seed);
    finished(job.resume().unwrap());
    let by_release = unmap_watch::disarm();
    cleanup_thread();
    [by_cleanup, by_release]
}

#[cfg(all(target_os = "linux", target_env = "gnu"))]
#[test]
fn stacks_are_unmapped_only_after_their_secrets_are_scrubbed() {
    require_backend!();
    skip_under_valgrind!();
    for (seen, hits) in unmapped_secrets(true, 0x5eed_0014) {
        assert_eq!(seen, 1, "the watch must see exactly the one stack unmapped");
        assert_eq!(hits, 0, "secret words in a stack as it was unmapped");
    }
}

#[cfg(all(target_os = "linux", target_env = "gnu"))]
#[test]
fn without_scrub_stacks_are_unmapped_with_their_secrets() {
    require_backend!();
    skip_under_valgrind!();
    for (seen, hits) in unmapped_secrets(false, 0x5eed_0015) {
        assert_eq!(seen, 1, "the watch must see exactly the one stack unmapped");
        assert!(hits >= FULL_4K, "the watch must see the copy scrub(false) leaves: {hits} words");
    }
}
