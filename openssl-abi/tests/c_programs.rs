//! Builds the C programs in `tests/c/` against the system
//! `<openssl/async.h>`, links them with this crate's `libstackjob_openssl`
//! and runs them: the man page's example (shared and static link) and the C
//! suite. Skips, saying so, where `cc` or the OpenSSL headers are missing
//! (`scripts/test-openssl-abi.sh` installs them).

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const EXPECTED_EXAMPLE: &str = "Starting...
Executing within a job
Passed in message is: Hello world!
Job was paused
Waiting for the job to be woken up
Resumed the job after a pause
Job finished with return value 1
Finishing
";

/// The directory holding `libstackjob_openssl.{so,a}` for this build.
fn lib_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("test binary path");
    let deps = exe.parent().expect("deps dir");
    for dir in [deps, deps.parent().expect("profile dir")] {
        if dir.join("libstackjob_openssl.so").exists() && dir.join("libstackjob_openssl.a").exists() {
            return dir.to_path_buf();
        }
    }
    panic!("libstackjob_openssl.so/.a not found next to {}", exe.display());
}

fn c_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/c")
}

/// Whether a C compiler and the OpenSSL headers are there.
fn have_toolchain() -> bool {
    let cc = Command::new("cc").arg("--version").output().is_ok_and(|o| o.status.success());
    if !cc || !Path::new("/usr/include/openssl/async.h").exists() {
        eprintln!("skipped: needs `cc` and <openssl/async.h> (apt-get install gcc libssl-dev)");
        return false;
    }
    if !stackjob::is_capable() {
        eprintln!("skipped: no stackjob backend on this target");
        return false;
    }
    true
}

/// Compiles `tests/c/<name>.c`; `shared` links the .so (with an rpath),
/// otherwise the .a. `extra` are more linker arguments.
fn build(name: &str, shared: bool, extra: &[&str]) -> PathBuf {
    let lib = lib_dir();
    let out = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("{name}-{}", if shared { "so" } else { "a" }));
    let mut cmd = Command::new("cc");
    cmd.args(["-Wall", "-Wno-unused-function", "-Wno-unused-result", "-O1", "-o"]).arg(&out);
    cmd.arg(c_dir().join(format!("{name}.c")));
    if shared {
        cmd.arg(format!("-L{}", lib.display()));
        cmd.arg(format!("-Wl,-rpath,{}", lib.display()));
        cmd.arg("-lstackjob_openssl");
    } else {
        cmd.arg(lib.join("libstackjob_openssl.a"));
    }
    cmd.args(extra);
    cmd.args(["-lpthread", "-ldl", "-lm"]);
    let o = cmd.output().expect("run cc");
    assert!(o.status.success(), "cc failed for {name}:\n{}", String::from_utf8_lossy(&o.stderr));
    out
}

fn run(exe: &Path, args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(exe);
    cmd.args(args).env_remove("STACKJOB_STACK_SIZE").env_remove("STACKJOB_DEBUG");
    // cargo puts target/<profile> on LD_LIBRARY_PATH, which outranks the
    // binary's DT_RUNPATH and may hold an older uplifted copy of the .so.
    cmd.env("LD_LIBRARY_PATH", lib_dir());
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().expect("run the C program")
}

fn check_example(shared: bool) {
    if !have_toolchain() {
        return;
    }
    // The example calls OPENSSL_malloc/OPENSSL_free, which come from
    // libcrypto; every ASYNC_* symbol binds to libstackjob_openssl, listed
    // first (and, statically linked, defined in the executable itself).
    let exe = build("manpage_example", shared, &["-lcrypto"]);
    let o = run(&exe, &[], &[("STACKJOB_DEBUG", "1")]);
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "example failed: {:?}\n{stderr}", o.status);
    assert_eq!(String::from_utf8_lossy(&o.stdout), EXPECTED_EXAMPLE);
    // Our counters prove the job ran on stackjob, not on libcrypto's ASYNC.
    assert!(
        stderr.contains("at exit: 1 jobs started, 1 resumes, 1 pauses, 1 finished"),
        "stackjob-openssl did not serve the calls:\n{stderr}"
    );
}

#[test]
fn manpage_example_shared() {
    check_example(true);
}

#[test]
fn manpage_example_static() {
    check_example(false);
}

fn suite_program(name: &str) {
    suite_program_with(name, &[]);
}

/// Builds and runs one C suite program, shared and static, with `extra`
/// linker arguments (none: linked with this library only, no libcrypto).
fn suite_program_with(name: &str, extra: &[&str]) {
    if !have_toolchain() {
        return;
    }
    for shared in [true, false] {
        let exe = build(name, shared, extra);
        let o = run(&exe, &[], &[]);
        let stdout = String::from_utf8_lossy(&o.stdout);
        assert!(
            o.status.success() && stdout.contains(": ok"),
            "{name} ({}) failed: {:?}\n{stdout}{}",
            if shared { "shared" } else { "static" },
            o.status,
            String::from_utf8_lossy(&o.stderr)
        );
    }
}

#[test]
fn c_pool() {
    suite_program("pool");
}

#[test]
fn c_jobs() {
    suite_program("jobs");
}

#[test]
fn c_waitfd() {
    suite_program("waitfd");
}

#[test]
fn c_callback() {
    suite_program("callback");
}

#[test]
fn c_block() {
    suite_program("block");
}

#[test]
fn c_memfns() {
    suite_program("memfns");
}

#[test]
fn c_misuse() {
    suite_program("misuse");
}

#[test]
fn c_libctx_swap() {
    // libcrypto is in the process, so OSSL_LIB_CTX_set0_default is found.
    suite_program_with("libctx", &["-lcrypto"]);
}

#[test]
fn c_stack_size_env() {
    if !have_toolchain() {
        return;
    }
    let exe = build("stacksize", true, &[]);
    let default = stackjob::DEFAULT_STACK_SIZE.to_string();
    for (env, want) in [(None, default.as_str()), (Some("64k"), "65536"), (Some("1M"), "1048576")] {
        let env: Vec<(&str, &str)> = env.map(|v| ("STACKJOB_STACK_SIZE", v)).into_iter().collect();
        let o = run(&exe, &[want], &env);
        assert!(
            o.status.success(),
            "stacksize {env:?}: {:?}\n{}{}",
            o.status,
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        );
    }
}
