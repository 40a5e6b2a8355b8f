//! Process-wide settings read once from the environment, the debug
//! counters, and the run-time link to libcrypto's default library context.

use std::ffi::c_void;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, AtomicPtr, AtomicU8, AtomicU64, Ordering};

/// Settings read from the environment on first use (or at load time).
pub(crate) struct Config {
    /// Usable bytes per job stack (`STACKJOB_STACK_SIZE`).
    pub(crate) stack_size: usize,
    /// Bytes of the guard region below each stack (`STACKJOB_GUARD_SIZE`).
    pub(crate) guard_size: usize,
}

static CONFIG: OnceLock<Config> = OnceLock::new();

/// Whether `STACKJOB_DEBUG` asked for counters; a relaxed load on the hot path.
static DEBUG: AtomicBool = AtomicBool::new(false);

/// Parses a size such as `262144`, `256k`, `256K`, `1m` or `1M`.
pub(crate) fn parse_size(text: &str) -> Option<usize> {
    let text = text.trim();
    let (digits, unit) = match text.as_bytes().last()? {
        b'k' | b'K' => (&text[..text.len() - 1], 1024),
        b'm' | b'M' => (&text[..text.len() - 1], 1024 * 1024),
        _ => (text, 1),
    };
    digits.parse::<usize>().ok()?.checked_mul(unit)
}

/// The size in the environment variable `name`, or `default` when it is
/// unset or out of `min..=max` (which is said on stderr).
fn size_from_env(name: &str, default: usize, min: usize, max: usize) -> usize {
    let Ok(text) = std::env::var(name) else { return default };
    match parse_size(&text) {
        Some(n) if (min..=max).contains(&n) => n,
        _ => {
            eprintln!(
                "stackjob-openssl: ignoring {name}={text:?} (want bytes, or a k/M suffix, \
                 between {min} and {max}); using {default}"
            );
            default
        }
    }
}

/// What the stack-overflow report tells a C program to do.
const OVERFLOW_ADVICE: &str = "raise it with the STACKJOB_STACK_SIZE environment variable, \
     in bytes or with a k/M suffix, e.g. STACKJOB_STACK_SIZE=1M (or per thread with \
     stackjob_async_set_thread_stack from <stackjob/async.h>)";

/// The settings, read from the environment the first time.
pub(crate) fn config() -> &'static Config {
    CONFIG.get_or_init(|| {
        let debug = std::env::var("STACKJOB_DEBUG").map(|v| !v.is_empty() && v != "0").unwrap_or(false);
        let stack_size = size_from_env(
            "STACKJOB_STACK_SIZE",
            stackjob::DEFAULT_STACK_SIZE,
            stackjob::MIN_STACK_SIZE,
            stackjob::MAX_STACK_SIZE,
        );
        let guard_size =
            size_from_env("STACKJOB_GUARD_SIZE", stackjob::DEFAULT_GUARD_SIZE, 1, stackjob::MAX_GUARD_SIZE);
        stackjob::set_overflow_advice(OVERFLOW_ADVICE);
        DEBUG.store(debug, Ordering::Relaxed);
        if debug {
            eprintln!(
                "stackjob-openssl: serving ASYNC_* (backend {}, capable {}, stack {} bytes + {}-byte guard, pid {})",
                stackjob::backend(),
                stackjob::is_capable(),
                stack_size,
                guard_size,
                std::process::id()
            );
            // SAFETY: `report_at_exit` is a plain extern "C" fn that stays
            // mapped for the life of the process (a preloaded or linked
            // library is never unloaded before exit handlers run).
            unsafe { libc::atexit(report_at_exit) };
        }
        Config { stack_size, guard_size }
    })
}

/// Counters kept only while `STACKJOB_DEBUG` is on.
pub(crate) struct Counters {
    pub(crate) starts: AtomicU64,
    pub(crate) resumes: AtomicU64,
    pub(crate) pauses: AtomicU64,
    pub(crate) finishes: AtomicU64,
}

pub(crate) static COUNTERS: Counters = Counters {
    starts: AtomicU64::new(0),
    resumes: AtomicU64::new(0),
    pauses: AtomicU64::new(0),
    finishes: AtomicU64::new(0),
};

/// Adds one to `counter` if debugging is on.
#[inline(always)]
pub(crate) fn count(counter: &AtomicU64) {
    count_if(debug(), counter);
}

/// Whether the counters are kept (`STACKJOB_DEBUG`); read once per call
/// where one call counts twice.
#[inline(always)]
pub(crate) fn debug() -> bool {
    DEBUG.load(Ordering::Relaxed)
}

/// Adds one to `counter` if `debug` (from `debug()`).
#[inline(always)]
pub(crate) fn count_if(debug: bool, counter: &AtomicU64) {
    if debug {
        counter.fetch_add(1, Ordering::Relaxed);
    }
}

extern "C" fn report_at_exit() {
    let c = &COUNTERS;
    eprintln!(
        "stackjob-openssl: at exit: {} jobs started, {} resumes, {} pauses, {} finished",
        c.starts.load(Ordering::Relaxed),
        c.resumes.load(Ordering::Relaxed),
        c.pauses.load(Ordering::Relaxed),
        c.finishes.load(Ordering::Relaxed)
    );
}

/// Reads the configuration (and prints the `STACKJOB_DEBUG` line) as soon
/// as the library is loaded, so `LD_PRELOAD=… STACKJOB_DEBUG=1 prog` shows
/// the library is in the process even before the first call.
extern "C" fn at_load() {
    // Never unwind out of a constructor.
    let _ = std::panic::catch_unwind(config);
}

#[used]
// SAFETY: `.init_array` holds pointers to functions the dynamic loader (or
// the C runtime, for a static link) calls once at start-up with no
// arguments; `at_load` has that signature and tolerates running early.
#[unsafe(link_section = ".init_array")]
static AT_LOAD: extern "C" fn() = at_load;

/// `OSSL_LIB_CTX *OSSL_LIB_CTX_set0_default(OSSL_LIB_CTX *)`: with NULL it
/// returns the thread's current default without changing it.
type Set0Default = unsafe extern "C" fn(*mut c_void) -> *mut c_void;

/// libcrypto's `OSSL_LIB_CTX_set0_default` once looked up, `absent_set0`
/// if libcrypto does not define it, and `resolve_set0` (which looks it up
/// and forwards) before that: the hot path is one load and an indirect
/// call, without a check. Threads racing on the first look-up find the
/// same function, so any of their stores is right.
static SET0_DEFAULT: AtomicPtr<c_void> = AtomicPtr::new(resolve_set0 as *mut c_void);

/// What the look-up found: `UNRESOLVED` before it, then `ABSENT` or
/// `FOUND` (for `libctx_swapping`, which thus compares no function
/// addresses).
static SET0_STATE: AtomicU8 = AtomicU8::new(UNRESOLVED);
const UNRESOLVED: u8 = 0;
const ABSENT: u8 = 1;
const FOUND: u8 = 2;

/// Stands in for `OSSL_LIB_CTX_set0_default` without libcrypto: no context.
unsafe extern "C" fn absent_set0(_: *mut c_void) -> *mut c_void {
    std::ptr::null_mut()
}

/// Looks the function up and installs it (or `absent_set0`); returns the
/// installed function and whether it is libcrypto's.
#[cold]
fn resolve() -> (Set0Default, bool) {
    // SAFETY: dlsym with RTLD_DEFAULT and a NUL-terminated name only
    // searches the loaded objects.
    let sym = unsafe { libc::dlsym(libc::RTLD_DEFAULT, c"OSSL_LIB_CTX_set0_default".as_ptr()) };
    let found = !sym.is_null();
    let f = if found { sym } else { absent_set0 as *mut c_void };
    SET0_STATE.store(if found { FOUND } else { ABSENT }, Ordering::Relaxed);
    // Release: whoever reads `f` with Acquire also sees `SET0_STATE`.
    SET0_DEFAULT.store(f, Ordering::Release);
    // SAFETY: libcrypto 3.x defines the symbol with this signature, as
    // `absent_set0` has.
    (unsafe { std::mem::transmute::<*mut c_void, Set0Default>(f) }, found)
}

/// The first call: looks the function up, then forwards to it.
unsafe extern "C" fn resolve_set0(ctx: *mut c_void) -> *mut c_void {
    // SAFETY: `ctx` is the caller's (see `LibCtx`), for a function of this
    // signature.
    unsafe { resolve().0(ctx) }
}

/// The run-time link to libcrypto's default library context, fetched once
/// per C-level call (`libctx()`).
#[derive(Clone, Copy)]
pub(crate) struct LibCtx(Set0Default);

/// libcrypto's `OSSL_LIB_CTX_set0_default` (or a stand-in, see
/// `SET0_DEFAULT`).
#[inline(always)]
pub(crate) fn libctx() -> LibCtx {
    // SAFETY: the static only ever holds one of the three functions above
    // (libcrypto's, `absent_set0`, `resolve_set0`), all of this signature.
    LibCtx(unsafe { std::mem::transmute::<*mut c_void, Set0Default>(SET0_DEFAULT.load(Ordering::Relaxed)) })
}

/// Whether default-library-context swapping is active (libcrypto found).
pub(crate) fn libctx_swapping() -> bool {
    // Acquire pairs with `resolve`'s release store of `SET0_DEFAULT`: a
    // state written by another thread's look-up is seen with it.
    SET0_DEFAULT.load(Ordering::Acquire);
    match SET0_STATE.load(Ordering::Relaxed) {
        UNRESOLVED => resolve().1,
        state => state == FOUND,
    }
}

impl LibCtx {
    /// The thread's current default `OSSL_LIB_CTX` (null without libcrypto).
    #[inline(always)]
    pub(crate) fn current(self) -> *mut c_void {
        // SAFETY: with NULL the function only reads the thread's default.
        unsafe { (self.0)(std::ptr::null_mut()) }
    }

    /// Makes `ctx` the thread's default `OSSL_LIB_CTX` (no-op for null,
    /// which is also all `current` returns without libcrypto).
    #[inline(always)]
    pub(crate) fn set(self, ctx: *mut c_void) {
        if !ctx.is_null() {
            // SAFETY: `ctx` came from an earlier `current` call, so it is a
            // library context libcrypto handed out.
            unsafe { (self.0)(ctx) };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::parse_size;

    #[test]
    fn sizes() {
        assert_eq!(parse_size("65536"), Some(65536));
        assert_eq!(parse_size("64k"), Some(65536));
        assert_eq!(parse_size("1M"), Some(1 << 20));
        assert_eq!(parse_size("x"), None);
        assert_eq!(parse_size(""), None);
    }
}
