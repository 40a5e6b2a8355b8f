//! Running an example from a test: `cargo run --example NAME` with the
//! profile, `--target` and target directory the calling test was built with
//! (so a cross test runs the example under the same QEMU runner), falling
//! back to the example binary next to the test (under the emulator this
//! test runs under, if any).

use std::env;
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// Where cargo put this test binary, and so where it puts the examples.
pub struct BuildDir {
    /// `<target-dir>[/<triple>]/<profile>`: holds `deps/` (this test) and `examples/`.
    profile_dir: PathBuf,
    /// The target directory, when this binary still lies inside it.
    target_dir: Option<PathBuf>,
    /// The `--target` triple, for a build into `<target-dir>/<triple>/`.
    triple: Option<String>,
}

impl BuildDir {
    pub fn of_this_test() -> BuildDir {
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
        // `--target` build; build.rs tells them the triple they were built
        // for, which is <layout>'s name exactly in the second case.
        let layout = Path::new(env!("CARGO_TARGET_TMPDIR")).parent().and_then(|p| p.canonicalize().ok());
        let (target_dir, triple) = match layout {
            Some(layout) if profile_dir.parent() == Some(layout.as_path()) => {
                if name_of(&layout) == env!("STACKJOB_BUILD_TARGET") {
                    (layout.parent().map(Path::to_path_buf), Some(name_of(&layout)))
                } else {
                    (Some(layout), None)
                }
            }
            _ => (None, None),
        };
        BuildDir { profile_dir, target_dir, triple }
    }

    /// Runs the example `name` with `args` and collects its output.
    pub fn run_example(&self, name: &str, args: &[&str]) -> Output {
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
            cmd.arg("--").args(args);
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
        // Under the emulator this test runs under, if any (super::child).
        let mut words = super::child::runner();
        words.push(exe.to_string_lossy().into_owned());
        Command::new(&words[0])
            .args(&words[1..])
            .args(args)
            .output()
            .unwrap_or_else(|e| panic!("could not run {words:?}: {e}"))
    }
}

fn name_of(dir: &Path) -> String {
    dir.file_name().and_then(|n| n.to_str()).unwrap_or_else(|| panic!("{} has no UTF-8 name", dir.display())).to_owned()
}
