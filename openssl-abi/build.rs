//! Symbol versions for `libstackjob_openssl.so` (`libstackjob_openssl.map`).
//!
//! libcrypto 3 exports the `ASYNC_*` functions as `OPENSSL_3.0.0` (and
//! `OPENSSL_3.1.0`); a program linked against it refers to them with that
//! version, and under `LD_PRELOAD` glibc binds such a reference only to a
//! definition of the same version. So the cdylib gets the map as a linker
//! version script.
//!
//! rustc passes its own version script for a cdylib, listing every
//! `#[no_mangle]` function as unversioned: a linker takes the first
//! assignment, so the map alone changes nothing. With the `stackjob_ossl_symver`
//! cfg set here, the exported names are instead assembly tail-jumps to
//! ordinary (mangled, hidden) Rust functions (`exports!` in src/lib.rs), which
//! rustc's script does not name, and the map's exact names assign them.
//!
//! GNU ld refuses rustc's anonymous version node next to named ones; lld (the
//! default on x86_64 Linux since Rust 1.90) takes both. So this script first
//! links a one-symbol probe cdylib with the same rustc, target, flags and
//! linker, and turns versioning on only if that works: elsewhere the library
//! keeps plain `#[no_mangle]` exports and a warning says so.

use std::env;
use std::path::{Path, PathBuf};
use std::process::Command;

const MAP: &str = "libstackjob_openssl.map";

fn main() {
    println!("cargo::rerun-if-changed=build.rs");
    println!("cargo::rerun-if-changed={MAP}");
    println!("cargo::rustc-check-cfg=cfg(stackjob_ossl_symver)");

    println!("cargo::rerun-if-env-changed=STACKJOB_OPENSSL_SONAME");
    let arch = env::var("CARGO_CFG_TARGET_ARCH").unwrap_or_default();
    let os = env::var("CARGO_CFG_TARGET_OS").unwrap_or_default();
    let env_ = env::var("CARGO_CFG_TARGET_ENV").unwrap_or_default();
    let features = env::var("CARGO_CFG_TARGET_FEATURE").unwrap_or_default();
    if env_ == "musl" && features.split(',').any(|f| f == "crt-static") {
        // Rust builds no cdylib for a static-by-default musl target: the
        // static library is the product there, and it has no versions.
        println!("cargo::rustc-env=STACKJOB_OSSL_SYMVER=off: musl builds only the static library");
        return;
    }
    // `exports!` has a tail-jump for these (the architectures stackjob runs
    // jobs on); symbol versions are an ELF feature checked here on Linux.
    if os != "linux" || !matches!(arch.as_str(), "x86_64" | "aarch64" | "riscv64") {
        println!("cargo::rustc-env=STACKJOB_OSSL_SYMVER=off: not Linux on x86_64, aarch64 or riscv64");
        return;
    }
    // The library's own name as its soname: programs linked against it record
    // this name (not the build path), and it names the base version node.
    // scripts/install-openssl-abi.sh sets the versioned name an installed
    // library carries (libstackjob_openssl.so.0, with the usual symlinks).
    let soname = env::var("STACKJOB_OPENSSL_SONAME").unwrap_or_else(|_| "libstackjob_openssl.so".into());
    println!("cargo::rustc-cdylib-link-arg=-Wl,-soname,{soname}");
    let map = Path::new(&env::var("CARGO_MANIFEST_DIR").expect("CARGO_MANIFEST_DIR")).join(MAP);
    let out = PathBuf::from(env::var("OUT_DIR").expect("OUT_DIR"));
    match probe(&out) {
        Ok(()) => {
            println!("cargo::rustc-env=STACKJOB_OSSL_SYMVER=on");
            println!("cargo::rustc-cfg=stackjob_ossl_symver");
            println!("cargo::rustc-cdylib-link-arg=-Wl,--version-script={}", map.display());
        }
        Err(why) => {
            println!("cargo::rustc-env=STACKJOB_OSSL_SYMVER=off: {}", why.replace('\n', " "));
            println!(
                "cargo::warning=libstackjob_openssl.so gets unversioned ASYNC_* symbols (glibc still \
                 binds OPENSSL_3.0.0 references to them under LD_PRELOAD): the linker did not take a \
                 second version script ({why}); lld does"
            )
        }
    }
}

/// Links a cdylib exporting one assembly-defined symbol under a version
/// node, as the real library does.
fn probe(out: &Path) -> Result<(), String> {
    let src = out.join("symver_probe.rs");
    let map = out.join("symver_probe.map");
    let lib = out.join("libsymver_probe.so");
    std::fs::write(
        &src,
        "std::arch::global_asm!(\".pushsection .data.symver_probe,\\\"aw\\\"\", \".globl ASYNC_is_capable\", \
         \".type ASYNC_is_capable,%object\", \".size ASYNC_is_capable,1\", \"ASYNC_is_capable: .byte 0\", \
         \".popsection\");\n",
    )
    .map_err(|e| e.to_string())?;
    std::fs::write(&map, "OPENSSL_3.0.0 { global: ASYNC_is_capable; local: *; };\n").map_err(|e| e.to_string())?;
    let _ = std::fs::remove_file(&lib);

    let rustc = env::var("RUSTC").unwrap_or_else(|_| "rustc".into());
    let mut cmd = Command::new(rustc);
    cmd.args(["--crate-type", "cdylib", "--crate-name", "symver_probe", "--edition", "2021", "-o"]);
    cmd.arg(&lib).arg(&src);
    if let Ok(target) = env::var("TARGET") {
        cmd.args(["--target", &target]);
    }
    if let Ok(linker) = env::var("RUSTC_LINKER") {
        cmd.arg(format!("-Clinker={linker}"));
    }
    if let Ok(flags) = env::var("CARGO_ENCODED_RUSTFLAGS") {
        cmd.args(flags.split('\x1f').filter(|f| !f.is_empty()));
    }
    cmd.arg(format!("-Clink-arg=-Wl,--version-script={}", map.display()));
    let o = cmd.output().map_err(|e| format!("running rustc: {e}"))?;
    if !o.status.success() {
        let err = String::from_utf8_lossy(&o.stderr);
        // GNU ld: "anonymous version tag cannot be combined with other version tags".
        let line = err.lines().find(|l| l.contains("version")).or_else(|| err.lines().find(|l| l.contains("error")));
        return Err(line.unwrap_or("link failed").trim().to_string());
    }
    let bytes = std::fs::read(&lib).map_err(|e| e.to_string())?;
    if !bytes.windows(13).any(|w| w == b"OPENSSL_3.0.0") {
        return Err("no version node in the probe".into());
    }
    Ok(())
}
