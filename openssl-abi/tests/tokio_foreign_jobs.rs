//! C code called from a Rust job sees an `ASYNC_JOB`: a job started by a
//! Rust program's own copy of stackjob (its tokio bridge) is, to a pausing
//! C provider written like OpenSSL's dasync / QAT engines
//! (`tests/c/pausing_provider.c`, linked with this library), the current
//! job: `ASYNC_get_current_job` returns it (the same handle across its
//! pauses), `ASYNC_get_wait_ctx` its wait ctx, with the driver's callback
//! (callback mode) or watched fds (fd mode), and `ASYNC_pause_job` pauses
//! it, so the tokio task waits with no thread blocked.
//!
//! The provider is built with `cc` into a shared library that this test
//! `dlopen`s with `RTLD_GLOBAL` before it makes any job driver: the
//! process then has this library (and its own copy of stackjob) besides
//! the test's copy, as a Rust program that links it would. Skips, saying
//! so, where `cc` or the OpenSSL headers are missing, and on musl (no
//! shared library).
#![cfg(target_os = "linux")]

use stackjob::tokio::{JobDriver, Mode, job};
use std::ffi::{CString, c_int, c_long, c_void};
use std::future::Future;
use std::path::{Path, PathBuf};
use std::process::Command;

type Digest = unsafe extern "C" fn(*const u8, usize, *mut u64) -> c_int;
type Stat = unsafe extern "C" fn(c_int) -> c_long;

/// The directory holding `libstackjob_openssl.so` for this build.
fn lib_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("test binary path");
    let deps = exe.parent().expect("deps dir");
    for dir in [deps, deps.parent().expect("profile dir")] {
        if dir.join("libstackjob_openssl.so").exists() {
            return dir.to_path_buf();
        }
    }
    panic!("libstackjob_openssl.so not found next to {}", exe.display());
}

struct Provider {
    digest: Digest,
    stat: Stat,
}

/// Builds and loads the provider; `None` (having said why) without `cc`.
fn load() -> Option<Provider> {
    let cc = Command::new("cc").arg("--version").output().is_ok_and(|o| o.status.success());
    if !cc || !Path::new("/usr/include/openssl/async.h").exists() {
        eprintln!("skipped: needs `cc` and <openssl/async.h> (apt-get install gcc libssl-dev)");
        return None;
    }
    if !stackjob::is_capable() {
        eprintln!("skipped: no stackjob backend on this target");
        return None;
    }
    let lib = lib_dir();
    let out = Path::new(env!("CARGO_TARGET_TMPDIR")).join("libpausing_provider.so");
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/c/pausing_provider.c");
    let o = Command::new("cc")
        .args(["-Wall", "-O1", "-shared", "-fPIC", "-o"])
        .arg(&out)
        .arg(&src)
        .arg(format!("-L{}", lib.display()))
        .arg(format!("-Wl,-rpath,{}", lib.display()))
        .args(["-lstackjob_openssl", "-lpthread"])
        .output()
        .expect("run cc");
    assert!(o.status.success(), "cc failed:\n{}", String::from_utf8_lossy(&o.stderr));
    let path = CString::new(out.to_str().unwrap()).unwrap();
    // SAFETY: loads our freshly built library; its constructors are the
    // OpenSSL-ABI library's (a debug line at most).
    let h = unsafe { libc::dlopen(path.as_ptr(), libc::RTLD_NOW | libc::RTLD_GLOBAL) };
    // SAFETY: dlerror returns a C string or null.
    assert!(!h.is_null(), "dlopen: {:?}", unsafe { std::ffi::CStr::from_ptr(libc::dlerror()) });
    let sym = |name: &std::ffi::CStr| {
        // SAFETY: looks a symbol up in the library just loaded.
        let f = unsafe { libc::dlsym(h, name.as_ptr()) };
        assert!(!f.is_null(), "{name:?} not found");
        f
    };
    // SAFETY: the functions have these signatures in pausing_provider.c.
    unsafe {
        Some(Provider {
            digest: std::mem::transmute::<*mut c_void, Digest>(sym(c"pausing_provider_digest")),
            stat: std::mem::transmute::<*mut c_void, Stat>(sym(c"pausing_provider_stat")),
        })
    }
}

fn fnv1a(p: &[u8]) -> u64 {
    p.iter().fold(1469598103934665603u64, |h, &b| (h ^ u64::from(b)).wrapping_mul(1099511628211))
}

/// The provider, called synchronously (from a job, or not).
fn digest(p: &Provider, data: &[u8]) -> u64 {
    let mut out = 0u64;
    // SAFETY: `data` is readable for its length; `out` is writable.
    let ok = unsafe { (p.digest)(data.as_ptr(), data.len(), &mut out) };
    assert_eq!(ok, 1, "the provider failed");
    out
}

fn stat(p: &Provider, which: c_int) -> c_long {
    // SAFETY: a plain counter read.
    unsafe { (p.stat)(which) }
}

/// All in one test: the library must be loaded before the first driver.
#[test]
fn c_provider_pauses_a_rust_job_under_tokio() {
    if cfg!(target_env = "musl") {
        // The provider is a shared library linked with this one, and on
        // musl Rust builds only the static library (C code there links it
        // into the program, which then has one copy of stackjob).
        eprintln!("skipped: musl builds no shared library");
        return;
    }
    let Some(p) = load() else { return };
    let p: &'static Provider = Box::leak(Box::new(p));
    // Outside a job the provider computes in line.
    assert_eq!(digest(p, b"abc"), fnv1a(b"abc"));
    assert_eq!(stat(p, 0), 0);

    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let local = tokio::task::LocalSet::new();
    local.block_on(&rt, async {
        // Callback mode (the default): 100 concurrent jobs, the device's
        // threads call the wait ctx's callback.
        let tasks: Vec<_> = (0..100u32)
            .map(|i| {
                tokio::task::spawn_local(job(move || {
                    let data = format!("request {i}").into_bytes();
                    (digest(p, &data), fnv1a(&data))
                }))
            })
            .collect();
        for t in tasks {
            let (got, want) = t.await.unwrap().unwrap();
            assert_eq!(got, want);
        }
        assert_eq!(stat(p, 0), 100, "the provider saw every call inside a job");
        assert_eq!(stat(p, 1), 100, "and found the driver's callback in the job's wait ctx");
        assert!(stat(p, 3) >= 1, "and paused");

        // Fd mode: the provider registers an eventfd in the job's C wait
        // ctx; the bridge mirrors it and tokio watches it. One driver, so
        // the fd is registered once and reused.
        let mut driver = JobDriver::with_mode(Mode::Fd);
        for i in 0..20u32 {
            let (got, want) = driver
                .run(move || {
                    let data = vec![i as u8; 1000];
                    (digest(p, &data), fnv1a(&data))
                })
                .await
                .unwrap();
            assert_eq!(got, want);
        }
        assert_eq!(stat(p, 2), 20, "the provider took its fd path");
        assert_eq!(driver.wait_ctx().fd_count(), 1, "the provider's eventfd, mirrored once");

        // Dropping a job paused inside C: C frames cannot be unwound, so
        // the job is not resumed into C again; its stack is quarantined
        // (kept mapped: the device still writes its request there), and the
        // device's late callback finds no driver and does nothing.
        let before = stackjob::quarantined_jobs();
        let mut fut = Box::pin(job(move || digest(p, b"never finished")));
        let first = std::future::poll_fn(|cx| std::task::Poll::Ready(fut.as_mut().poll(cx).is_ready())).await;
        assert!(!first, "the job paused inside the provider");
        drop(fut);
        assert_eq!(stackjob::quarantined_jobs(), before + 1);
        tokio::time::sleep(std::time::Duration::from_millis(20)).await; // the device completes into the void
    });
    assert_eq!(stackjob::pool_stats().in_use, 0);
}
