//! `common::child`, the helper of the tests that re-execute their own
//! binary: a child process runs here, natively or under the emulator this
//! binary runs under, found without `STACKJOB_TEST_RUNNER` (a plain
//! `cargo test --target aarch64-unknown-linux-gnu` takes it from
//! `.cargo/config.toml`); and its small reading of cargo's `runner` key.

mod common;

use common::child::{self, config_runner, runner_var, runs_natively};

fn words(list: &[&str]) -> Option<Vec<String>> {
    Some(list.iter().map(|w| w.to_string()).collect())
}

/// The child side: reports what it is.
#[test]
fn child_entry() {
    let Some(scenario) = child::scenario() else { return };
    assert_eq!(scenario, "report");
    println!("child arch={} emulated={}", std::env::consts::ARCH, child::emulated());
}

#[test]
fn a_child_runs_under_the_parents_emulator_and_knows_it() {
    let out = child::run("child_entry", "report", &[]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "child failed: {:?}\nstdout:\n{stdout}\nstderr:\n{stderr}", out.status);
    let expected = format!("child arch={} emulated={}", std::env::consts::ARCH, child::emulated());
    assert!(stdout.contains(&expected), "expected {expected:?} from the child:\n{stdout}");
    assert_eq!(child::emulated(), !child::runner().is_empty(), "an emulated binary has a runner, a native one none");
}

#[test]
fn the_kernel_runs_its_own_architecture_and_32_bit_compat_natively() {
    assert!(runs_natively("x86_64", "x86_64"));
    assert!(runs_natively("x86_64", "x86"));
    assert!(runs_natively("aarch64", "arm"));
    assert!(runs_natively("ppc64le", "powerpc64"));
    assert!(runs_natively("riscv64", "riscv64"));
    assert!(!runs_natively("x86_64", "aarch64"));
    assert!(!runs_natively("x86_64", "riscv64"));
    assert!(!runs_natively("x86_64", "s390x"));
    assert!(!runs_natively("aarch64", "x86_64"));
}

#[test]
fn the_runner_variable_is_cargos() {
    assert_eq!(runner_var("aarch64-unknown-linux-gnu"), "CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_RUNNER");
    assert_eq!(runner_var("thumbv7em-none-eabihf"), "CARGO_TARGET_THUMBV7EM_NONE_EABIHF_RUNNER");
    assert_eq!(runner_var("x86_64-unknown-linux-gnu"), "CARGO_TARGET_X86_64_UNKNOWN_LINUX_GNU_RUNNER");
}

#[test]
fn the_projects_config_has_a_runner_for_every_cross_target() {
    let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/.cargo/config.toml")).unwrap();
    for (triple, qemu, sysroot) in [
        ("aarch64-unknown-linux-gnu", "qemu-aarch64", "/usr/aarch64-linux-gnu"),
        ("riscv64gc-unknown-linux-gnu", "qemu-riscv64", "/usr/riscv64-linux-gnu"),
        ("s390x-unknown-linux-gnu", "qemu-s390x", "/usr/s390x-linux-gnu"),
    ] {
        assert_eq!(config_runner(&text, triple), Ok(words(&[qemu, "-L", sysroot])), "{triple}");
    }
    assert_eq!(config_runner(&text, "x86_64-unknown-linux-gnu"), Ok(None));
}

#[test]
fn a_runner_is_read_as_a_string_or_an_array_in_a_table_or_a_dotted_key() {
    let t = "aarch64-unknown-linux-gnu";
    let cases: &[(&str, &[&str])] = &[
        ("[target.aarch64-unknown-linux-gnu]\nrunner = \"qemu-aarch64 -L /x\"\n", &["qemu-aarch64", "-L", "/x"]),
        (
            "[target.aarch64-unknown-linux-gnu]\nrunner = 'qemu-aarch64  -cpu max'  # c\n",
            &["qemu-aarch64", "-cpu", "max"],
        ),
        ("[ target.\"aarch64-unknown-linux-gnu\" ]\nlinker = \"gcc\"\nrunner = [\"q\", 'a b']\n", &["q", "a b"]),
        (
            "[target.aarch64-unknown-linux-gnu]\nrunner = [\n  \"q\", # the emulator\n  \"-L\",\n  \"/#x\",\n]\n",
            &["q", "-L", "/#x"],
        ),
        ("target.aarch64-unknown-linux-gnu.runner = \"q -L /y\"\n[build]\n", &["q", "-L", "/y"]),
        ("[target.aarch64-unknown-linux-gnu]\nrunner = \"say \\\"hi\\\"\"\n", &["say", "\"hi\""]),
    ];
    for (text, expected) in cases {
        assert_eq!(config_runner(text, t), Ok(words(expected)), "{text}");
    }
}

#[test]
fn only_the_runner_of_the_triples_own_table_counts() {
    let t = "aarch64-unknown-linux-gnu";
    for text in [
        "[target.riscv64gc-unknown-linux-gnu]\nrunner = \"qemu-riscv64\"\n",
        "[target.aarch64-unknown-linux-gnu]\nlinker = \"gcc\"\n[build]\nrunner = \"q\"\n",
        "[target.aarch64-unknown-linux-gnu]\n# runner = \"q\"\n",
        "[target.'cfg(target_arch = \"aarch64\")']\nrunner = \"q\"\n",
        "",
    ] {
        assert_eq!(config_runner(text, t), Ok(None), "{text}");
    }
}

#[test]
fn a_runner_that_cannot_be_read_is_an_error_naming_it() {
    let t = "aarch64-unknown-linux-gnu";
    for text in [
        "[target.aarch64-unknown-linux-gnu]\nrunner = qemu\n",
        "[target.aarch64-unknown-linux-gnu]\nrunner = \"qemu\n",
        "[target.aarch64-unknown-linux-gnu]\nrunner = [\"qemu\",\n",
        "[target.aarch64-unknown-linux-gnu\nrunner = \"q\"\n",
    ] {
        let err = config_runner(text, t).expect_err(text);
        assert!(!err.is_empty(), "{text}");
    }
}
