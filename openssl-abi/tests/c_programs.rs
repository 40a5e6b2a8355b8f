//! Builds the C programs in `tests/c/` against the system
//! `<openssl/async.h>` (and `stackjob/async.h` for the extensions), links
//! them with this crate's `libstackjob_openssl` and runs them: the man
//! page's example (shared and static link) and the C suite; and checks
//! `stackjob/async.h` against the exports. Skips, saying so, where `cc` or the OpenSSL headers are missing
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
    if cfg!(target_env = "musl") {
        eprintln!("skipped: on musl, scripts/test-openssl-abi-musl.sh builds and runs the C suite");
        return false;
    }
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

/// The directory holding `stackjob/async.h`.
fn include_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("include")
}

/// Compiles `tests/c/<name>.c`; `shared` links the .so (with an rpath),
/// otherwise the .a. `extra` are more linker arguments. `stackjob/async.h`
/// is on the include path; `<openssl/async.h>` is the system's.
fn build(name: &str, shared: bool, extra: &[&str]) -> PathBuf {
    let lib = lib_dir();
    let out = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("{name}-{}", if shared { "so" } else { "a" }));
    let mut cmd = Command::new("cc");
    cmd.args(["-Wall", "-Wno-unused-function", "-Wno-unused-result", "-O1", "-o"]).arg(&out);
    cmd.arg(format!("-I{}", include_dir().display()));
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
    // (cc treats arguments ending in .o as objects wherever they are.)
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
fn c_threads() {
    suite_program("threads");
}

/// `tests/c/nounwind.c` compiled without unwind tables, as an object.
fn nounwind_object() -> PathBuf {
    let out = Path::new(env!("CARGO_TARGET_TMPDIR")).join("nounwind.o");
    let o = Command::new("cc")
        .args(["-c", "-O1", "-fno-asynchronous-unwind-tables", "-fno-unwind-tables", "-o"])
        .arg(&out)
        .arg(format!("-I{}", include_dir().display()))
        .arg(c_dir().join("nounwind.c"))
        .output()
        .expect("run cc");
    assert!(o.status.success(), "cc failed for nounwind.c:\n{}", String::from_utf8_lossy(&o.stderr));
    out
}

#[test]
fn c_ext_cancel_unwinds_or_quarantines_and_the_handle_goes_stale() {
    if !have_toolchain() {
        return;
    }
    let obj = nounwind_object();
    suite_program_with("ext_cancel", &[obj.to_str().expect("utf-8 path")]);
}

#[test]
fn c_ext_thread_stack_sizes() {
    suite_program("ext_stack");
}

#[test]
fn c_ext_wake_after_the_job_is_gone_is_a_no_op() {
    suite_program("ext_wake");
}

/// What OpenSSL 3.1's `test_ASYNC_set_mem_functions` checks, and that jobs
/// run on the blocks.
#[test]
fn c_mem_functions_are_used_for_stacks() {
    suite_program("mem_functions");
}

/// `stackjob/async.h` declares exactly the library's exported functions,
/// and its constants have the library's (and OpenSSL's) values.
#[test]
fn the_header_matches_the_exports_and_constants() {
    let header = std::fs::read_to_string(include_dir().join("stackjob/async.h")).expect("read stackjob/async.h");
    let mut declared: Vec<String> = Vec::new();
    let mut defines: Vec<(String, i64)> = Vec::new();
    // Declarations: an identifier followed by "(" that starts a prototype
    // (not a macro, a typedef or a parameter's function-pointer type).
    let code: String = header
        .split("/*")
        .map(|part| part.split_once("*/").map_or(part, |(_, rest)| rest))
        .collect::<Vec<_>>()
        .join(" ");
    for line in code.lines() {
        let line = line.trim();
        if let Some(rest) = line.strip_prefix("#define ") {
            let mut it = rest.split_whitespace();
            if let (Some(name), Some(v)) = (it.next(), it.next())
                && let Ok(v) = v.parse::<i64>()
            {
                defines.push((name.to_string(), v));
            }
            continue;
        }
        if line.starts_with('#') || line.starts_with("typedef") {
            continue;
        }
        if let Some(open) = line.find('(') {
            let name = line[..open].rsplit([' ', '*']).next().unwrap_or("");
            if (name.starts_with("ASYNC_") || name.starts_with("stackjob_")) && !line.starts_with(' ') {
                declared.push(name.to_string());
            }
        }
    }
    declared.sort();
    declared.dedup();
    if !cfg!(target_env = "musl") {
        let lib = lib_dir().join("libstackjob_openssl.so");
        if let Some(exported) = exported_symbols(&lib) {
            let mut names: Vec<String> =
                exported.iter().map(|n| n.split('@').next().unwrap_or(n).to_string()).collect();
            names.sort();
            assert_eq!(declared, names, "stackjob/async.h vs the exports of {}", lib.display());
        }
    }
    assert_eq!(declared.len(), 31, "{declared:?}");
    let value = |name: &str| {
        defines.iter().find(|(n, _)| n == name).map(|(_, v)| *v).unwrap_or_else(|| panic!("{name} not defined"))
    };
    use stackjob_openssl as lib;
    for (name, want) in [
        ("ASYNC_ERR", lib::ASYNC_ERR),
        ("ASYNC_NO_JOBS", lib::ASYNC_NO_JOBS),
        ("ASYNC_PAUSE", lib::ASYNC_PAUSE),
        ("ASYNC_FINISH", lib::ASYNC_FINISH),
        ("ASYNC_STATUS_UNSUPPORTED", stackjob::Status::Unsupported as i32),
        ("ASYNC_STATUS_ERR", stackjob::Status::Err as i32),
        ("ASYNC_STATUS_OK", stackjob::Status::Ok as i32),
        ("ASYNC_STATUS_EAGAIN", stackjob::Status::Eagain as i32),
        ("STACKJOB_CANCEL_UNWOUND", lib::STACKJOB_CANCEL_UNWOUND),
        ("STACKJOB_CANCEL_QUARANTINED", lib::STACKJOB_CANCEL_QUARANTINED),
        ("STACKJOB_WAKE_GONE", lib::STACKJOB_WAKE_GONE),
        ("STACKJOB_WAKE_DELIVERED", lib::STACKJOB_WAKE_DELIVERED),
        ("STACKJOB_WAKE_NO_CALLBACK", lib::STACKJOB_WAKE_NO_CALLBACK),
    ] {
        assert_eq!(value(name), i64::from(want), "{name}");
    }
    // And OpenSSL's own values, where its header is installed.
    if let Ok(ossl) = std::fs::read_to_string("/usr/include/openssl/async.h") {
        for line in ossl.lines() {
            let mut it = line.trim().strip_prefix("#define ").unwrap_or("").split_whitespace();
            if let (Some(name), Some(v)) = (it.next(), it.next())
                && name.starts_with("ASYNC_")
                && let Ok(v) = v.parse::<i64>()
            {
                assert_eq!(value(name), v, "{name} differs from OpenSSL's");
            }
        }
    }
}

/// `stackjob/async.h` compiles on its own as strict C99 and as C++, and
/// after OpenSSL's own `<openssl/async.h>` (which it then does not repeat);
/// `include/stackjob/openssl/async.h` stands in for OpenSSL's.
#[test]
fn the_header_compiles_strictly_alone_after_openssls_and_as_cpp() {
    if !have_toolchain() {
        return;
    }
    let tmp = Path::new(env!("CARGO_TARGET_TMPDIR"));
    let cases: [(&str, &str, &[&str]); 4] = [
        ("alone.c", "#include <stackjob/async.h>\n", &["cc", "-std=c99", "-pedantic", "-Wall", "-Wextra", "-Werror"]),
        (
            "after_openssl.c",
            "#include <openssl/async.h>\n#include <stackjob/async.h>\n",
            &["cc", "-std=c11", "-Wall", "-Wextra", "-Werror"],
        ),
        (
            "compat.c",
            "#include <openssl/async.h>\n#ifndef STACKJOB_ASYNC_H\n#error not the wrapper\n#endif\n",
            &["cc", "-std=c99", "-pedantic", "-Wall", "-Werror", "-I{compat}"],
        ),
        ("alone.cc", "#include <stackjob/async.h>\n", &["c++", "-Wall", "-Wextra", "-Werror"]),
    ];
    for (file, text, cmd) in cases {
        let src = tmp.join(file);
        let body = format!(
            "{text}\nint use(void);\nint use(void) {{ ASYNC_JOB *j = 0; return stackjob_async_cancel_job(j) + \
             ASYNC_start_job(&j, 0, 0, 0, 0, 0) + STACKJOB_WAKE_GONE; }}\n"
        );
        std::fs::write(&src, body).expect("write the test source");
        let compat = include_dir().join("stackjob");
        let args: Vec<String> = cmd[1..].iter().map(|a| a.replace("{compat}", &compat.display().to_string())).collect();
        let o = Command::new(cmd[0])
            .args(&args)
            .arg(format!("-I{}", include_dir().display()))
            .args(["-fsyntax-only"])
            .arg(&src)
            .output()
            .expect("run the compiler");
        assert!(o.status.success(), "{file} ({cmd:?}):\n{}", String::from_utf8_lossy(&o.stderr));
    }
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

/// A C job that overflows its stack is reported, naming `STACKJOB_STACK_SIZE`
/// (not the Rust API a C program cannot call), and the process aborts. One
/// unprobed frame reaching up to `STACKJOB_GUARD_SIZE` below the stack is
/// reported too, and the paused job on the stack below keeps every byte.
#[test]
fn c_stack_overflow_is_reported_with_the_c_setting_and_the_guard_holds() {
    if !have_toolchain() {
        return;
    }
    let exe = build("overflow", true, &["-fno-stack-clash-protection"]);
    let default_guard = stackjob::DEFAULT_GUARD_SIZE.to_string();
    for (mode, guard_env, guard) in
        [("recurse", None, default_guard.as_str()), ("frame", None, &default_guard), ("frame", Some("256k"), "262144")]
    {
        let mut env = vec![("STACKJOB_STACK_SIZE", "64k")];
        if let Some(g) = guard_env {
            env.push(("STACKJOB_GUARD_SIZE", g));
        }
        let o = run(&exe, &[mode, guard], &env);
        let (stdout, stderr) = (String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr));
        let what = format!("overflow {mode} (guard {guard}): {:?}\n{stdout}{stderr}", o.status);
        let report = stderr.lines().find(|l| l.starts_with("stackjob: job stack overflow")).unwrap_or_else(|| {
            panic!("no overflow report: {what}");
        });
        assert!(report.contains("stack 65536 bytes"), "{what}");
        assert!(report.contains("STACKJOB_STACK_SIZE"), "the report names the C setting: {what}");
        assert!(!report.contains("PoolConfig"), "a C program cannot use the Rust API: {what}");
        assert!(stderr.contains("neighbour intact"), "the neighbour job's stack must keep every byte: {what}");
        assert_eq!(std::os::unix::process::ExitStatusExt::signal(&o.status), Some(libc::SIGABRT), "{what}");
    }
}

/// The `.so`'s exported (defined) dynamic symbols as `name@@version`, or
/// bare names when it has no version info; `None` without `readelf`.
fn exported_symbols(lib: &Path) -> Option<Vec<String>> {
    let o = Command::new("readelf").args(["--dyn-syms", "-W"]).arg(lib).output().ok()?;
    assert!(o.status.success(), "readelf failed: {}", String::from_utf8_lossy(&o.stderr));
    let mut names: Vec<String> = String::from_utf8_lossy(&o.stdout)
        .lines()
        .filter_map(|line| {
            // Num: Value Size Type Bind Vis Ndx Name
            let f: Vec<&str> = line.split_whitespace().collect();
            (f.len() >= 8 && f[0].ends_with(':') && f[6] != "UND" && f[6] != "Ndx").then(|| f[7].to_string())
        })
        .collect();
    names.sort();
    Some(names)
}

/// The exported set is exactly OpenSSL's 22 `ASYNC_*` functions and this
/// library's nine own functions (three probes, the foreign-job hook, five
/// extensions); with symbol versioning (build.rs), under
/// libcrypto's version nodes (`libstackjob_openssl.map`).
#[test]
fn exported_symbols_are_the_async_api() {
    if cfg!(target_env = "musl") {
        eprintln!("skipped: musl builds no shared library");
        return;
    }
    let lib = lib_dir().join("libstackjob_openssl.so");
    let Some(got) = exported_symbols(&lib) else {
        eprintln!("skipped: needs readelf (binutils)");
        return;
    };
    let v31 = ["ASYNC_get_mem_functions", "ASYNC_set_mem_functions"];
    let ours = [
        "stackjob_async_cancel_job",
        "stackjob_async_get_thread_stack",
        "stackjob_async_set_thread_stack",
        "stackjob_async_wake",
        "stackjob_async_wake_handle",
        "stackjob_openssl_counters",
        "stackjob_openssl_foreign_api",
        "stackjob_openssl_libctx_swapping",
        "stackjob_openssl_stack_size",
    ];
    let v30 = [
        "ASYNC_WAIT_CTX_clear_fd",
        "ASYNC_WAIT_CTX_free",
        "ASYNC_WAIT_CTX_get_all_fds",
        "ASYNC_WAIT_CTX_get_callback",
        "ASYNC_WAIT_CTX_get_changed_fds",
        "ASYNC_WAIT_CTX_get_fd",
        "ASYNC_WAIT_CTX_get_status",
        "ASYNC_WAIT_CTX_new",
        "ASYNC_WAIT_CTX_set_callback",
        "ASYNC_WAIT_CTX_set_status",
        "ASYNC_WAIT_CTX_set_wait_fd",
        "ASYNC_block_pause",
        "ASYNC_cleanup_thread",
        "ASYNC_get_current_job",
        "ASYNC_get_wait_ctx",
        "ASYNC_init_thread",
        "ASYNC_is_capable",
        "ASYNC_pause_job",
        "ASYNC_start_job",
        "ASYNC_unblock_pause",
    ];
    let symver = env!("STACKJOB_OSSL_SYMVER");
    let versioned = symver == "on";
    let tag = |names: &[&str], v: &str| -> Vec<String> {
        names.iter().map(|n| if versioned { format!("{n}@@{v}") } else { n.to_string() }).collect()
    };
    let mut want =
        [tag(&v30, "OPENSSL_3.0.0"), tag(&v31, "OPENSSL_3.1.0"), tag(&ours, "STACKJOB_OPENSSL_0.1")].concat();
    want.sort();
    assert_eq!(got, want, "exported dynamic symbols of {}", lib.display());
    // Where rustc links with lld by default (x86_64 Linux, Rust >= 1.90),
    // the versions must be there: a silent fallback would be a regression.
    if cfg!(all(target_arch = "x86_64", target_os = "linux")) {
        assert!(versioned, "libstackjob_openssl.so is unversioned: build.rs said {symver:?}");
    }
}

/// Under `LD_PRELOAD`, references a program bound to libcrypto's version
/// nodes (`OPENSSL_3.0.0`, and `OPENSSL_3.1.0` for the mem functions) go to
/// this library: checked against a stand-in libcrypto with those versions.
#[test]
fn preload_serves_versioned_references() {
    if !have_toolchain() || env!("STACKJOB_OSSL_SYMVER") != "on" {
        return;
    }
    let tmp = Path::new(env!("CARGO_TARGET_TMPDIR"));
    let stub = tmp.join("libfake_libcrypto.so");
    let exe = tmp.join("preload_versions");
    let cc = |args: &[&std::ffi::OsStr]| {
        let o = Command::new("cc").args(args).output().expect("run cc");
        assert!(o.status.success(), "cc failed:\n{}", String::from_utf8_lossy(&o.stderr));
    };
    let map = format!("-Wl,--version-script={}", c_dir().join("fake_libcrypto.map").display());
    let src = c_dir().join("fake_libcrypto.c");
    cc(&["-shared".as_ref(), "-fPIC".as_ref(), map.as_ref(), "-o".as_ref(), stub.as_os_str(), src.as_os_str()]);
    let rpath = format!("-Wl,-rpath,{}", tmp.display());
    let src = c_dir().join("preload_versions.c");
    let link = format!("-L{}", tmp.display());
    cc(&["-o".as_ref(), exe.as_os_str(), src.as_os_str(), link.as_ref(), rpath.as_ref(), "-lfake_libcrypto".as_ref()]);
    // The program's references carry the stub's versions.
    let o = Command::new("readelf").args(["-V"]).arg(&exe).output().expect("readelf");
    let vers = String::from_utf8_lossy(&o.stdout);
    assert!(vers.contains("OPENSSL_3.0.0") && vers.contains("OPENSSL_3.1.0"), "{vers}");

    let out = |preload: bool| {
        let mut cmd = Command::new(&exe);
        cmd.env_remove("LD_PRELOAD").env_remove("STACKJOB_DEBUG");
        if preload {
            cmd.env("LD_PRELOAD", lib_dir().join("libstackjob_openssl.so"));
        }
        let o = cmd.output().expect("run preload_versions");
        assert!(o.status.success(), "{:?}\n{}", o.status, String::from_utf8_lossy(&o.stderr));
        String::from_utf8_lossy(&o.stdout).into_owned()
    };
    assert_eq!(out(false), "42 42\n", "the stand-in libcrypto answers without the preload");
    assert_eq!(out(true), "1 1\n", "libstackjob_openssl.so answers both versioned references");
}
