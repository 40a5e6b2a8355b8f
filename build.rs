//! Picks the context-switch backend for the target and tells rustc through
//! the `stackjob_backend` cfg, plus two facts plain `cfg` cannot tell on
//! stable Rust: the riscv64 float ABI (`stackjob_riscv_flen`) and whether
//! 32-bit Arm code is T32 (`stackjob_arm_thumb`); and it hands
//! the target triple to the tests that build an example for the same
//! target (`STACKJOB_BUILD_TARGET`). Nothing else happens here: the assembly
//! is pulled in by `global_asm!(include_str!(..))`, so no C compiler or
//! assembler is needed for any target.

use std::env;

fn main() {
    println!("cargo::rerun-if-changed=build.rs");
    println!("cargo::rerun-if-env-changed=CARGO_ENCODED_RUSTFLAGS");
    println!(
        "cargo::rustc-check-cfg=cfg(stackjob_backend, values(\"x86_64\", \"aarch64\", \"riscv64\", \"arm\", \"x86\", \"powerpc64\"))"
    );
    println!("cargo::rustc-check-cfg=cfg(stackjob_riscv_flen, values(\"0\", \"4\", \"8\"))");
    println!("cargo::rustc-check-cfg=cfg(stackjob_arm_thumb)");
    // For the tests that run an example as a child process: they must build
    // it for the same target (tests/common/example.rs).
    println!("cargo::rustc-env=STACKJOB_BUILD_TARGET={}", env::var("TARGET").unwrap_or_default());

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
        // ILP32 (aarch64 with 4-byte pointers) would need another record.
        "aarch64" if elf_os && pointer_width == "64" && abi != "ilp32" => Some("aarch64"),
        // RV64 only, and only where the float ABI is known (see below).
        "riscv64" if elf_os && pointer_width == "64" && riscv_flen(&os).is_some() => Some("riscv64"),
        // 32-bit Arm, hard-float: VFP d8-d15 exist and are callee-saved (A32
        // and T32 code alike; target_arch is "arm" for thumbv7neon-* too).
        "arm" if elf_os && abi == "eabihf" => Some("arm"),
        // i686 and up: the switch saves MXCSR, so SSE must be there (i586 and
        // older have none).
        "x86" if elf_os && pointer_width == "32" && has_feature("sse") => Some("x86"),
        // ELFv2 only (rustc says so in target_abi): ELFv1 (big-endian glibc)
        // has function descriptors and another frame layout.
        "powerpc64" if elf_os && abi == "elfv2" => Some("powerpc64"),
        _ => None,
    };
    if let Some(backend) = backend {
        println!("cargo::rustc-cfg=stackjob_backend=\"{backend}\"");
    }
    if backend == Some("arm") && arm_thumb() {
        println!("cargo::rustc-cfg=stackjob_arm_thumb");
    }
    if backend == Some("riscv64") {
        let flen = riscv_flen(&os).unwrap_or_default();
        println!("cargo::rustc-cfg=stackjob_riscv_flen=\"{flen}\"");
    }
}

/// Whether the target enables `feature` (only stable features are listed).
fn has_feature(feature: &str) -> bool {
    env::var("CARGO_CFG_TARGET_FEATURE").unwrap_or_default().split(',').any(|f| f == feature)
}

/// Whether 32-bit Arm code is T32 (Thumb-2): thumb* targets, or A32 targets
/// built with `+thumb-mode`, which stable rustc hides from `cfg`
/// (`target_feature = "thumb-mode"` is unstable), so the rustflags tell.
/// The asm is assembled in the same state (src/arch/arm.rs); a build whose
/// state this misjudges is refused at run time (src/capable.rs).
fn arm_thumb() -> bool {
    let target = env::var("TARGET").unwrap_or_default();
    let flags = env::var("CARGO_ENCODED_RUSTFLAGS").unwrap_or_default();
    let mut thumb = target.starts_with("thumb");
    // `-C target-feature=+a,-b` or `-Ctarget-feature=...`; the last word wins.
    let features = flags.split('\x1f').filter_map(|arg| arg.split_once("target-feature=").map(|(_, list)| list));
    for feature in features.flat_map(|list| list.split(',')) {
        match feature {
            "+thumb-mode" => thumb = true,
            "-thumb-mode" => thumb = false,
            _ => {}
        }
    }
    thumb
}

/// Bytes of fs0-fs11 that the riscv64 calling convention preserves (the
/// float ABI's FLEN: 8 for LP64D, 4 for LP64F, 0 for LP64), or `None` when
/// it cannot be told. Stable rustc hides the "f" and "d" target features
/// from `cfg` (they are unstable there), so when the feature list has
/// neither, the ISA string of the target name decides: `riscv64gc` (g =
/// imafd), `riscv64imac`, ..., and the RVA23 profile targets, which are all
/// LP64D, as are the Android targets.
fn riscv_flen(os: &str) -> Option<u32> {
    let features = env::var("CARGO_CFG_TARGET_FEATURE").unwrap_or_default();
    let has = |f: &str| features.split(',').any(|x| x == f);
    if has("d") {
        return Some(8);
    }
    if has("f") {
        return Some(4);
    }
    let target = env::var("TARGET").unwrap_or_default();
    let isa = target.split('-').next().unwrap_or_default();
    let letters = isa.strip_prefix("riscv64")?;
    if letters.starts_with("a2") || (letters.is_empty() && os == "android") {
        return Some(8); // RVA2x profiles and Android: G is mandatory, LP64D
    }
    if letters.is_empty() || !letters.starts_with(['i', 'g', 'e']) {
        return None; // a custom target spec: its float ABI is unknown here
    }
    // Single-letter extensions end where multi-letter ones (z..., x...) begin.
    let single = letters.split(['z', 'x', '_']).next().unwrap_or_default();
    Some(if single.contains(['g', 'd']) {
        8
    } else if single.contains('f') {
        4
    } else {
        0
    })
}
