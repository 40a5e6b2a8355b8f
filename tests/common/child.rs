//! Scenarios that must run in a process of their own (they crash on
//! purpose, change process-wide limits, or must be the first job of their
//! process): the test binary re-executes itself with `STACKJOB_CHILD=<scenario>`
//! and exactly one test selected, under the same emulator as the parent.
//!
//! The emulator is found without help, so that a plain
//! `cargo test --target aarch64-unknown-linux-gnu` works: when this binary
//! runs under user-mode emulation (its architecture is not one the kernel
//! runs), the child gets the runner cargo used, from
//! `CARGO_TARGET_<TRIPLE>_RUNNER` or else `[target.<triple>] runner` in the
//! package's `.cargo/config.toml`. `STACKJOB_TEST_RUNNER` overrides both.

use std::path::Path;
use std::process::{Command, Output};

/// The variable that tells a re-executed test binary which scenario to run.
pub const CHILD_ENV: &str = "STACKJOB_CHILD";

/// Overrides the runner: the command words (split at whitespace) that run a
/// test binary here; empty for none.
pub const RUNNER_ENV: &str = "STACKJOB_TEST_RUNNER";

/// The scenario this process was started for, if it is a child.
pub fn scenario() -> Option<String> {
    std::env::var(CHILD_ENV).ok()
}

/// The command words that run a binary of this target here: empty when it
/// runs natively, else the emulator (with its arguments). Set
/// `STACKJOB_TEST_RUNNER` to override. Fails the test, saying what to set,
/// when this binary is emulated and no runner is configured.
pub fn runner() -> Vec<String> {
    if let Ok(words) = std::env::var(RUNNER_ENV) {
        return split(&words);
    }
    let Some(why) = emulation() else { return Vec::new() };
    let triple = env!("STACKJOB_BUILD_TARGET");
    let var = runner_var(triple);
    if let Ok(words) = std::env::var(&var)
        && !words.trim().is_empty()
    {
        return split(&words);
    }
    let config = Path::new(env!("CARGO_MANIFEST_DIR")).join(".cargo/config.toml");
    match std::fs::read_to_string(&config) {
        Ok(text) => match config_runner(&text, triple) {
            Ok(Some(words)) if !words.is_empty() => return resolve(words),
            Ok(_) => {}
            Err(e) => panic!("{}: cannot read the runner of [target.{triple}]: {e}", config.display()),
        },
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => panic!("cannot read {}: {e}", config.display()),
    }
    panic!(
        "{why}, so its child process needs the same emulator, and none is configured: set {RUNNER_ENV} \
         (e.g. \"qemu-{arch} -L /usr/{arch}-linux-gnu\"), {var}, or `runner` in [target.{triple}] of {}",
        config.display(),
        arch = std::env::consts::ARCH,
    )
}

/// Whether this process runs under user-mode emulation (QEMU): true when
/// `STACKJOB_TEST_RUNNER` names a runner, false when it is set empty, else
/// whether the kernel's architecture cannot run this binary's.
pub fn emulated() -> bool {
    match std::env::var(RUNNER_ENV) {
        Ok(words) => !words.trim().is_empty(),
        Err(_) => emulation().is_some(),
    }
}

/// Why this binary is known to run under user-mode emulation, if it is.
///
/// QEMU user mode reports the guest's machine in `uname`, but the sysctl
/// `/proc/sys/kernel/arch` (recent kernels; QEMU passes it through) keeps the
/// host's. Without that file this says "native" (then set
/// `STACKJOB_TEST_RUNNER`).
pub fn emulation() -> Option<String> {
    let kernel = std::fs::read_to_string("/proc/sys/kernel/arch").ok()?;
    let kernel = kernel.trim();
    let ours = std::env::consts::ARCH;
    if kernel.is_empty() || runs_natively(kernel, ours) {
        return None;
    }
    Some(format!("this {ours} test binary runs under user-mode emulation (the kernel is {kernel})"))
}

/// Whether a kernel of machine `kernel` (`uname -m` spelling) runs `arch`
/// (Rust's `target_arch` spelling) binaries itself, 32-bit compat included.
pub fn runs_natively(kernel: &str, arch: &str) -> bool {
    let native: &[&str] = match kernel {
        "x86_64" => &["x86_64", "x86"],
        "i386" | "i486" | "i586" | "i686" => &["x86"],
        "aarch64" | "arm64" => &["aarch64", "arm"],
        k if k.starts_with("arm") => &["arm"],
        "ppc64" | "ppc64le" => &["powerpc64", "powerpc"],
        "ppc" | "ppcle" => &["powerpc"],
        "s390x" => &["s390x"],
        "mips64" => &["mips64", "mips"],
        "mips" => &["mips"],
        "sparc64" => &["sparc64", "sparc"],
        "loongarch64" => &["loongarch64"],
        "riscv64" => &["riscv64"],
        "riscv32" => &["riscv32"],
        other => return other == arch,
    };
    native.contains(&arch)
}

/// A relative program path with a `/` in a config file is relative to the
/// directory that holds `.cargo/`, as cargo reads it.
fn resolve(mut words: Vec<String>) -> Vec<String> {
    if words[0].contains('/') && Path::new(&words[0]).is_relative() {
        words[0] = Path::new(env!("CARGO_MANIFEST_DIR")).join(&words[0]).to_string_lossy().into_owned();
    }
    words
}

/// `CARGO_TARGET_<TRIPLE>_RUNNER`, the variable cargo reads for `triple`.
pub fn runner_var(triple: &str) -> String {
    let triple: String =
        triple.chars().map(|c| if c.is_ascii_alphanumeric() { c.to_ascii_uppercase() } else { '_' }).collect();
    format!("CARGO_TARGET_{triple}_RUNNER")
}

fn split(words: &str) -> Vec<String> {
    words.split_whitespace().map(String::from).collect()
}

/// The `runner` of `[target.<triple>]` in the text of a cargo config file
/// (also written `target.<triple>.runner = ...` at the top level): a string
/// (split at whitespace, as cargo does) or an array of strings. A small
/// reading of that one key, not a TOML parser: `Err` says what it could not
/// read.
pub fn config_runner(text: &str, triple: &str) -> Result<Option<Vec<String>>, String> {
    let tables = [format!("target.{triple}"), format!("target.\"{triple}\""), format!("target.'{triple}'")];
    let mut table = String::new();
    let mut lines = text.lines();
    while let Some(line) = lines.next() {
        let line = line.trim();
        if let Some(header) = line.strip_prefix('[') {
            let end = header.find(']').ok_or_else(|| format!("unterminated table header {line:?}"))?;
            table = header[..end].trim().to_string();
            continue;
        }
        let Some((key, value)) = line.split_once('=') else { continue };
        let key = key.trim();
        let in_table = tables.contains(&table) && key == "runner";
        let dotted = table.is_empty() && tables.iter().any(|t| key == format!("{t}.runner"));
        if !in_table && !dotted {
            continue;
        }
        let mut value = strip_comment(value).trim().to_string();
        if value.starts_with('[') {
            // An array may span lines: read on to its closing bracket.
            while !value.ends_with(']') {
                let next = lines.next().ok_or("unterminated runner array")?;
                value.push(' ');
                value.push_str(strip_comment(next).trim());
            }
            return Ok(Some(strings(&value[1..value.len() - 1])?));
        }
        let words = strings(&value)?;
        let [word] = words.as_slice() else { return Err(format!("runner = {value}: expected one string")) };
        return Ok(Some(split(word)));
    }
    Ok(None)
}

/// `s` up to a `#` that is outside quotes.
fn strip_comment(s: &str) -> &str {
    let mut quote = None;
    for (i, c) in s.char_indices() {
        match (quote, c) {
            (None, '"' | '\'') => quote = Some(c),
            (Some(q), _) if c == q => quote = None,
            (None, '#') => return &s[..i],
            _ => {}
        }
    }
    s
}

/// The strings of a comma-separated list of TOML basic ("..") or literal
/// ('..') strings; basic strings may hold the escapes \" and \\.
fn strings(list: &str) -> Result<Vec<String>, String> {
    let mut out = Vec::new();
    let mut chars = list.chars().peekable();
    loop {
        while chars.next_if(|c| c.is_whitespace() || *c == ',').is_some() {}
        let Some(open) = chars.next() else { return Ok(out) };
        if open != '"' && open != '\'' {
            return Err(format!("expected a quoted string in {list:?}"));
        }
        let mut word = String::new();
        loop {
            match chars.next() {
                None => return Err(format!("unterminated string in {list:?}")),
                Some(c) if c == open => break,
                Some('\\') if open == '"' => match chars.next() {
                    Some(c @ ('"' | '\\')) => word.push(c),
                    other => return Err(format!("unsupported escape \\{other:?} in {list:?}")),
                },
                Some(c) => word.push(c),
            }
        }
        out.push(word);
    }
}

/// Runs this test binary again, only the test `test`, with
/// `STACKJOB_CHILD=scenario`, `RUST_BACKTRACE=0` unless `envs` sets it,
/// and `envs`; returns how it ended and what it printed.
pub fn run(test: &str, scenario: &str, envs: &[(&str, &str)]) -> Output {
    let exe = std::env::current_exe().expect("current_exe");
    let mut words = runner();
    words.push(exe.to_string_lossy().into_owned());
    let mut cmd = Command::new(&words[0]);
    cmd.args(&words[1..])
        .args(["--exact", test, "--nocapture", "--test-threads=1"])
        .env(CHILD_ENV, scenario)
        .env("RUST_BACKTRACE", "0");
    for (k, v) in envs {
        cmd.env(k, v);
    }
    cmd.output().unwrap_or_else(|e| {
        panic!(
            "could not spawn {words:?}: {e}{}",
            if e.raw_os_error() == Some(libc::ENOEXEC) {
                format!(" (ENOEXEC: a binary for another architecture; set {RUNNER_ENV} to its emulator)")
            } else {
                String::new()
            }
        )
    })
}
