//! `examples/manpage.rs` prints exactly what OpenSSL's `ASYNC_start_job(3)`
//! example prints (spec/openssl-async-semantics.md §4), or, where jobs
//! cannot run, reports the error and still finishes cleanly.
//!
//! The example runs as a child process, the way a user runs it: through
//! `cargo run --example manpage` with the profile, `--target` and target
//! directory this test was built with. `cargo test --test example_manpage`
//! does not build examples, a binary left from an earlier build may be
//! stale, and a cross target needs cargo's configured runner; `cargo run`
//! takes care of all three. Without cargo (the test binary run by hand),
//! the example binary next to this test's `deps/` directory runs directly.

use std::env;
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const EXPECTED: [&str; 8] = [
    "Starting...",
    "Executing within a job",
    "Passed in message is: Hello world!",
    "Job was paused",
    "Waiting for the job to be woken up",
    "Resumed the job after a pause",
    "Job finished with return value 1",
    "Finishing",
];

const EXPECTED_NOT_CAPABLE: [&str; 3] = ["Starting...", "An error occurred", "Finishing"];

#[test]
fn manpage_example_prints_the_man_page_output() {
    let expected: &[&str] = if stackjob::is_capable() {
        &EXPECTED
    } else {
        eprintln!(
            "stackjob::is_capable() is false on this target (backend {:?}): \
             expecting the example's error path instead of the man-page output",
            stackjob::backend()
        );
        &EXPECTED_NOT_CAPABLE
    };

    let out = BuildDir::of_this_test().run_example("manpage");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);

    let want: String = expected.iter().map(|line| format!("{line}\n")).collect();
    assert_eq!(stdout, want, "the example's stdout differs from the expected lines (stderr: {stderr:?})");
    assert!(out.status.success(), "the example exited with {} (stderr: {stderr:?})", out.status);
}

/// Where cargo put this test binary, and so where it puts the examples.
struct BuildDir {
    /// `<target-dir>[/<triple>]/<profile>`: holds `deps/` (this test) and `examples/`.
    profile_dir: PathBuf,
    /// The target directory, when this binary still lies inside it.
    target_dir: Option<PathBuf>,
    /// The `--target` triple, for a build into `<target-dir>/<triple>/`.
    triple: Option<String>,
}

impl BuildDir {
    fn of_this_test() -> BuildDir {
        let exe = env::current_exe().expect("the test binary's own path");
        let deps = exe.parent().expect("the test binary has a parent directory");
        assert_eq!(
            deps.file_name().and_then(|n| n.to_str()),
            Some("deps"),
            "expected the test binary in cargo's <profile>/deps/ directory, found {}",
            exe.display()
        );
        let profile_dir = deps.parent().expect("deps/ has a parent").to_path_buf();

        // Cargo tells integration tests `<layout>/tmp` at compile time, where
        // <layout> is the target directory, or `<target-dir>/<triple>` for a
        // `--target` build. Cargo marks the target directory itself with a
        // CACHEDIR.TAG, which tells the two apart.
        let layout = Path::new(env!("CARGO_TARGET_TMPDIR")).parent().and_then(|p| p.canonicalize().ok());
        let (target_dir, triple) = match layout {
            Some(layout) if profile_dir.parent() == Some(layout.as_path()) => {
                match layout.parent().filter(|p| p.join("CACHEDIR.TAG").is_file()) {
                    Some(target_dir) => (Some(target_dir.to_path_buf()), Some(name_of(&layout))),
                    None => (Some(layout), None),
                }
            }
            _ => (None, None),
        };
        BuildDir { profile_dir, target_dir, triple }
    }

    /// Runs the example `name` and collects its output.
    fn run_example(&self, name: &str) -> Output {
        let cargo = env::var_os("CARGO").unwrap_or_else(|| OsString::from("cargo"));
        if let Some(target_dir) = &self.target_dir {
            let mut cmd = Command::new(&cargo);
            cmd.args(["run", "--quiet", "--example", name, "--manifest-path"])
                .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("Cargo.toml"))
                .arg("--target-dir")
                .arg(target_dir);
            // Cargo names the `dev` profile's directory `debug`; every other
            // profile's directory is the profile's name.
            match name_of(&self.profile_dir).as_str() {
                "debug" => cmd.args(["--profile", "dev"]),
                profile => cmd.args(["--profile", profile]),
            };
            if let Some(triple) = &self.triple {
                cmd.args(["--target", triple]);
            }
            match cmd.output() {
                Ok(out) => return out,
                Err(e) => eprintln!("could not run {cmd:?} ({e}); running the example binary directly"),
            }
        } else {
            eprintln!(
                "{} is not inside the target directory it was built in; \
                 running the example binary next to it without rebuilding",
                self.profile_dir.display()
            );
        }

        let exe = self.profile_dir.join("examples").join(format!("{name}{}", env::consts::EXE_SUFFIX));
        assert!(
            exe.is_file(),
            "the example binary {} does not exist; build it with `cargo build --example {name}` \
             (same profile and --target as the tests)",
            exe.display()
        );
        Command::new(&exe).output().unwrap_or_else(|e| panic!("could not run {}: {e}", exe.display()))
    }
}

fn name_of(dir: &Path) -> String {
    dir.file_name().and_then(|n| n.to_str()).unwrap_or_else(|| panic!("{} has no UTF-8 name", dir.display())).to_owned()
}
