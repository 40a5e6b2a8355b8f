//! Picks the context-switch backend for the target and tells rustc through
//! the `stackjob_backend` cfg. Nothing else happens here: the assembly is
//! pulled in by `global_asm!(include_str!(..))`, so no C compiler or
//! assembler is needed for any target.

use std::env;

fn main() {
    println!("cargo::rerun-if-changed=build.rs");
    println!("cargo::rustc-check-cfg=cfg(stackjob_backend, values(\"x86_64\", \"aarch64\", \"riscv64\"))");

    let arch = env::var("CARGO_CFG_TARGET_ARCH").unwrap_or_default();
    let os = env::var("CARGO_CFG_TARGET_OS").unwrap_or_default();
    let pointer_width = env::var("CARGO_CFG_TARGET_POINTER_WIDTH").unwrap_or_default();
    let abi = env::var("CARGO_CFG_TARGET_ABI").unwrap_or_default();

    // The asm files are ELF/GNU-as dialect and follow the System V family of
    // ABIs; they are tested on Linux (glibc and musl alike, since they need
    // nothing from libc).
    let elf_os = matches!(os.as_str(), "linux" | "android" | "freebsd" | "netbsd" | "openbsd" | "dragonfly");
    let backend = match arch.as_str() {
        // x32 (ILP32 on x86_64) has 4-byte pointers: the record layout differs.
        "x86_64" if elf_os && pointer_width == "64" && abi != "x32" => Some("x86_64"),
        _ => None,
    };
    if let Some(backend) = backend {
        println!("cargo::rustc-cfg=stackjob_backend=\"{backend}\"");
    }
}
