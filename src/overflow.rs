//! Stack-overflow reports for job stacks.
//!
//! A job that runs off the bottom of its stack touches the `PROT_NONE`
//! guard region and gets SIGSEGV (SIGBUS on some kernels). One process-wide
//! handler for both signals, installed the first time a thread creates a job
//! pool, checks whether the fault address is in the guard region of one of
//! the faulting thread's job stacks. If so it writes one line to stderr and
//! aborts; otherwise it hands the signal to whatever action was installed
//! before it, for that signal, so Rust's own "thread has overflowed its
//! stack" message and any other handler keep working.
//!
//! The handler is async-signal-safe: it walks the thread's list of stacks
//! (from a const-initialised thread-local without destructor, through a few
//! words of each stack's header), and calls only `write`, `abort` and
//! `sigaction`. No locks, no allocation, no formatting machinery.
//!
//! Handlers for SIGSEGV run on the faulting thread's stack unless the thread
//! has an alternate signal stack, and a job that overflowed has none left;
//! so every thread that creates a pool also gets a `sigaltstack` if it does
//! not have one (threads spawned by Rust's std already do).

use crate::stack;
use std::cell::{Cell, UnsafeCell};
use std::mem::MaybeUninit;
use std::ptr;
use std::sync::Once;
use std::sync::atomic::{AtomicBool, AtomicPtr, Ordering};

const SIGNALS: [libc::c_int; 2] = [libc::SIGSEGV, libc::SIGBUS];

/// The actions that were installed before ours, one per entry of `SIGNALS`.
struct Previous(UnsafeCell<[MaybeUninit<libc::sigaction>; 2]>);
// SAFETY: written once inside `INSTALL.call_once` before `READY` is set,
// read-only afterwards (and only after checking `READY`).
unsafe impl Sync for Previous {}

static PREVIOUS: Previous = Previous(UnsafeCell::new([MaybeUninit::uninit(), MaybeUninit::uninit()]));
static READY: AtomicBool = AtomicBool::new(false);
static INSTALL: Once = Once::new();

/// Installs the overflow handler (once per process) and makes sure the
/// calling thread has an alternate signal stack (once per thread; not if
/// the thread is exiting and its record of the stack is already gone).
pub(crate) fn prepare_thread() {
    let _errno = crate::errno::Keep::new();
    INSTALL.call_once(install);
    let _ = ALT_STACK.try_with(AltStack::ensure);
}

fn install() {
    // The handler must not call sysconf: cache the page size now.
    let _ = stack::page_size();
    for (i, &sig) in SIGNALS.iter().enumerate() {
        // SAFETY: plain libc calls with valid pointers; the previous action
        // is stored where only the handler reads it, after READY is set.
        unsafe {
            let mut action: libc::sigaction = std::mem::zeroed();
            action.sa_sigaction = handler as *const () as libc::sighandler_t;
            action.sa_flags = libc::SA_SIGINFO | libc::SA_ONSTACK;
            libc::sigemptyset(&mut action.sa_mask);
            let previous = (*PREVIOUS.0.get())[i].as_mut_ptr();
            if libc::sigaction(sig, ptr::null(), previous) != 0 {
                return;
            }
            if libc::sigaction(sig, &action, ptr::null_mut()) != 0 {
                return;
            }
        }
    }
    READY.store(true, Ordering::Release);
}

/// The SIGSEGV/SIGBUS handler.
extern "C" fn handler(sig: libc::c_int, info: *mut libc::siginfo_t, context: *mut libc::c_void) {
    // SAFETY: the kernel passes a valid siginfo for SA_SIGINFO handlers.
    let addr = unsafe { (*info).si_addr() } as usize;
    // A fault in the guard region of one of this thread's stacks (a stack
    // overflows on the thread running it, and never leaves its thread).
    // The list is walked with plain loads: a stack comes off it before it
    // is unmapped, and each link is one word, so even a walk interrupting
    // an update only meets mapped stacks.
    let overflowed = stack::live::find(|top| {
        // SAFETY: a listed stack is mapped, its header intact (the header
        // is above everything a job writes).
        let guard = unsafe { stack::guard_of(top) };
        addr >= guard.start && addr - guard.start < guard.len
    });
    if !overflowed.is_null() {
        // SAFETY: as above, a listed stack.
        report_overflow(unsafe { stack::guard_of(overflowed) }.size);
    }
    chain(sig, info, context);
}

/// What the report says after the stack size when no one set the advice.
const DEFAULT_ADVICE: &str = "raise it with stackjob::PoolConfig::stack_size and init_thread_with";

/// The advice set with [`set_overflow_advice`], or null for the default.
static ADVICE: AtomicPtr<&'static str> = AtomicPtr::new(ptr::null_mut());

/// Sets how the stack-overflow report tells the user to get a bigger stack,
/// for the whole process. The report is one line on stderr, written just
/// before the process aborts:
///
/// ```text
/// stackjob: job stack overflow (stack 65536 bytes; <advice>)
/// ```
///
/// The default advice names [`PoolConfig::stack_size`](crate::PoolConfig::stack_size)
/// and [`init_thread_with`](crate::init_thread_with). A library that sizes
/// the pools on its users' behalf says how its users do it instead: the
/// OpenSSL-ABI C library names its `STACKJOB_STACK_SIZE` environment
/// variable, since a C program cannot call `init_thread_with`. The text is
/// truncated to 400 bytes.
///
/// ```
/// stackjob::set_overflow_advice("set MYLIB_STACK_SIZE to a larger value");
/// ```
pub fn set_overflow_advice(advice: &'static str) {
    // One small allocation per call: the handler needs a thin pointer it
    // can read with one atomic load. Calls are rare (once per library).
    let advice: &'static &'static str = Box::leak(Box::new(advice));
    ADVICE.store(ptr::from_ref(advice).cast_mut(), Ordering::Release);
}

/// Writes the one-line report with `write(2)` only, then aborts.
fn report_overflow(usable: usize) -> ! {
    let mut buf = [0u8; 512];
    let mut len = 0;
    let mut put = |bytes: &[u8]| {
        let n = bytes.len().min(buf.len() - len);
        buf[len..len + n].copy_from_slice(&bytes[..n]);
        len += n;
    };
    put(b"stackjob: job stack overflow (stack ");
    let mut digits = [0u8; 20];
    let mut i = digits.len();
    let mut v = usable;
    loop {
        i -= 1;
        digits[i] = b'0' + (v % 10) as u8;
        v /= 10;
        if v == 0 {
            break;
        }
    }
    put(&digits[i..]);
    put(b" bytes; ");
    let advice = ADVICE.load(Ordering::Acquire);
    // SAFETY: a non-null ADVICE came from `Box::leak` in
    // `set_overflow_advice`: a `&'static &'static str`, never freed.
    let advice: &str = if advice.is_null() { DEFAULT_ADVICE } else { unsafe { *advice } };
    put(&advice.as_bytes()[..advice.len().min(400)]);
    put(b")\n");
    // SAFETY: write and abort are async-signal-safe; `buf` is valid for `len`.
    unsafe {
        libc::write(2, buf.as_ptr().cast(), len);
        libc::abort()
    }
}

/// Passes a fault that is not ours to the previous action for `sig`.
fn chain(sig: libc::c_int, info: *mut libc::siginfo_t, context: *mut libc::c_void) {
    let index = if sig == SIGNALS[0] { 0 } else { 1 };
    // SAFETY: PREVIOUS is initialised before READY is set and never written
    // again; the handler types match what sigaction documents for the flags.
    unsafe {
        let previous = READY.load(Ordering::Acquire).then(|| (*PREVIOUS.0.get())[index].assume_init_ref());
        match previous {
            Some(p) if p.sa_sigaction != libc::SIG_DFL && p.sa_sigaction != libc::SIG_IGN => {
                if p.sa_flags & libc::SA_SIGINFO != 0 {
                    let f: extern "C" fn(libc::c_int, *mut libc::siginfo_t, *mut libc::c_void) =
                        std::mem::transmute(p.sa_sigaction);
                    f(sig, info, context);
                } else {
                    let f: extern "C" fn(libc::c_int) = std::mem::transmute(p.sa_sigaction);
                    f(sig);
                }
            }
            _ => {
                // Default (or ignored, which cannot work for a fault): put the
                // default action back and return; the faulting instruction
                // runs again and the signal takes its normal course.
                let mut action: libc::sigaction = std::mem::zeroed();
                action.sa_sigaction = libc::SIG_DFL;
                libc::sigemptyset(&mut action.sa_mask);
                libc::sigaction(sig, &action, ptr::null_mut());
            }
        }
    }
}

/// This thread's alternate signal stack, if the crate had to create one.
struct AltStack {
    checked: Cell<bool>,
    map: Cell<*mut libc::c_void>,
    len: Cell<usize>,
}

thread_local! {
    static ALT_STACK: AltStack = const {
        AltStack { checked: Cell::new(false), map: Cell::new(ptr::null_mut()), len: Cell::new(0) }
    };
}

/// Room for the handler, and for the handler it chains to (Rust's own
/// prints a message): well above MINSIGSTKSZ.
const ALT_STACK_SIZE: usize = 64 * 1024;

impl AltStack {
    fn ensure(&self) {
        if self.checked.replace(true) {
            return;
        }
        // SAFETY: sigaltstack/mmap/mprotect with valid arguments; the new
        // stack is registered only after it is fully set up, and unregistered
        // before it is unmapped (in Drop, on this same thread).
        unsafe {
            let mut current: libc::stack_t = std::mem::zeroed();
            if libc::sigaltstack(ptr::null(), &mut current) != 0 || current.ss_flags & libc::SS_DISABLE == 0 {
                return; // the thread already has one (or we cannot tell)
            }
            let page = stack::page_size();
            let len = ALT_STACK_SIZE + page;
            let map = libc::mmap(
                ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_STACK,
                -1,
                0,
            );
            if map == libc::MAP_FAILED {
                return;
            }
            if libc::mprotect(map, page, libc::PROT_NONE) != 0 {
                libc::munmap(map, len);
                return;
            }
            let alt = libc::stack_t { ss_sp: map.cast::<u8>().add(page).cast(), ss_flags: 0, ss_size: ALT_STACK_SIZE };
            if libc::sigaltstack(&alt, ptr::null_mut()) != 0 {
                libc::munmap(map, len);
                return;
            }
            self.map.set(map);
            self.len.set(len);
        }
    }
}

impl Drop for AltStack {
    fn drop(&mut self) {
        let map = self.map.get();
        if map.is_null() {
            return;
        }
        // SAFETY: we registered this stack on this thread; disable it before
        // unmapping so no signal can be delivered onto freed memory.
        unsafe {
            let off = libc::stack_t { ss_sp: ptr::null_mut(), ss_flags: libc::SS_DISABLE, ss_size: 0 };
            if libc::sigaltstack(&off, ptr::null_mut()) == 0 {
                libc::munmap(map, self.len.get());
            }
        }
    }
}
