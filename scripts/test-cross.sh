#!/usr/bin/env bash
# Runs the whole test suite (unit, integration, examples' tests, doctests)
# for every cross target, under QEMU user mode (natively where the kernel
# runs the target: i686), then prints a summary table.
#
#   scripts/test-cross.sh [--bti] [--no-install] [TARGET...]
#
# Targets (default: all of them, in this order):
#   aarch64-unknown-linux-gnu       backend aarch64-aapcs64, qemu-aarch64
#   riscv64gc-unknown-linux-gnu     backend riscv64-lp64d, qemu-riscv64
#   armv7-unknown-linux-gnueabihf   backend arm-aapcs-vfp (A32 code), qemu-arm
#   thumbv7neon-unknown-linux-gnueabihf
#                                   backend arm-aapcs-vfp (T32 code), qemu-arm
#   i686-unknown-linux-gnu          backend x86-sysv-i386, natively (the
#                                   x86_64 kernel runs 32-bit binaries;
#                                   they name the cross libc's loader)
#   powerpc64le-unknown-linux-gnu   backend powerpc64-elfv2, qemu-ppc64le
#   armv7-unknown-linux-musleabihf  backend arm-aapcs-vfp, qemu-arm, static
#                                   musl; rustup ships no rust-std for it, so
#                                   the leg builds std with nightly
#                                   -Zbuild-std and links Debian's musl
#                                   (musl-dev:armhf, multiarch)
#   s390x-unknown-linux-gnu         no backend: is_capable() is false, every
#                                   job test must say that it skips
#
# --bti         also run the aarch64 branch-protection leg (nightly, rust-src,
#               -Zbranch-protection=bti,pac-ret -Zbuild-std, qemu -cpu max):
#               the full suite with pointer authentication live, and a
#               demonstration that BTI is enforced around stackjob's switch.
# --no-install  do not install missing rustup targets or Debian packages.
#
# Environment: RUST_TEST_THREADS (default 1: a crash is attributed to one
# test), STACKJOB_CROSS_TIMEOUT (seconds per target, default 1800: a broken
# switch tends to hang rather than fail), CARGO_TARGET_DIR (honoured).
# RUST_BACKTRACE is set to 0 whatever it was: the tests' deliberate panics
# would print thousands of lines of backtraces that read as failures.
#
# Installs what is missing: rustup targets, the nightly toolchain and its
# rust-src for --bti and the musl leg, and (only when a cross tool or
# sysroot is missing) the Debian packages after an `apt-get update` (for the
# musl leg also the armhf architecture, for musl-dev:armhf). The linkers and runners come
# from .cargo/config.toml. Exits non-zero if any target fails, runs no test,
# or times out.

set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

ALL_TARGETS=(aarch64-unknown-linux-gnu riscv64gc-unknown-linux-gnu armv7-unknown-linux-gnueabihf
    thumbv7neon-unknown-linux-gnueabihf i686-unknown-linux-gnu powerpc64le-unknown-linux-gnu armv7-unknown-linux-musleabihf s390x-unknown-linux-gnu)
# Built with nightly -Zbuild-std (no rust-std from rustup).
MUSL=armv7-unknown-linux-musleabihf
MUSL_LIB=/usr/lib/arm-linux-musleabihf
# The emulator per target; "native" runs the binaries as they are.
declare -A QEMU=(
    [aarch64-unknown-linux-gnu]=qemu-aarch64
    [riscv64gc-unknown-linux-gnu]=qemu-riscv64
    [armv7-unknown-linux-gnueabihf]=qemu-arm
    [thumbv7neon-unknown-linux-gnueabihf]=qemu-arm
    [i686-unknown-linux-gnu]=native
    [powerpc64le-unknown-linux-gnu]=qemu-ppc64le
    [armv7-unknown-linux-musleabihf]=qemu-arm
    [s390x-unknown-linux-gnu]=qemu-s390x
)
declare -A GNU=(
    [aarch64-unknown-linux-gnu]=aarch64-linux-gnu
    [riscv64gc-unknown-linux-gnu]=riscv64-linux-gnu
    [armv7-unknown-linux-gnueabihf]=arm-linux-gnueabihf
    [thumbv7neon-unknown-linux-gnueabihf]=arm-linux-gnueabihf
    [i686-unknown-linux-gnu]=i686-linux-gnu
    [powerpc64le-unknown-linux-gnu]=powerpc64le-linux-gnu
    [armv7-unknown-linux-musleabihf]=arm-linux-gnueabihf
    [s390x-unknown-linux-gnu]=s390x-linux-gnu
)
DEBIAN_PACKAGES=(qemu-user gcc-aarch64-linux-gnu gcc-riscv64-linux-gnu gcc-arm-linux-gnueabihf
    gcc-i686-linux-gnu gcc-powerpc64le-linux-gnu gcc-s390x-linux-gnu
    libc6-dev-arm64-cross libc6-dev-riscv64-cross libc6-dev-armhf-cross libc6-dev-i386-cross
    libc6-dev-ppc64el-cross libc6-dev-s390x-cross)
# i686 binaries name /usr/i686-linux-gnu/lib/ld-linux.so.2 as their loader
# (.cargo/config.toml); rustdoc does not get target rustflags from cargo,
# so the doctests get the same link arguments here.
I686_LINK_ARGS="-C link-arg=-Wl,--dynamic-linker=/usr/i686-linux-gnu/lib/ld-linux.so.2 -C link-arg=-Wl,-rpath,/usr/i686-linux-gnu/lib"

BTI=0
INSTALL=1
TARGETS=()
for arg in "$@"; do
    case "$arg" in
        --bti) BTI=1 ;;
        --no-install) INSTALL=0 ;;
        -h | --help) awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"; exit 0 ;;
        -*) echo "unknown option $arg (see --help)" >&2; exit 2 ;;
        *)
            if [[ -z "${QEMU[$arg]:-}" ]]; then
                echo "unsupported target $arg; known: ${ALL_TARGETS[*]}" >&2
                exit 2
            fi
            TARGETS+=("$arg")
            ;;
    esac
done
[[ ${#TARGETS[@]} -eq 0 ]] && TARGETS=("${ALL_TARGETS[@]}")

TIMEOUT="${STACKJOB_CROSS_TIMEOUT:-1800}"
export RUST_BACKTRACE=0
export RUST_TEST_THREADS="${RUST_TEST_THREADS:-1}"
TARGET_DIR="${CARGO_TARGET_DIR:-$PWD/target}"
LOG_DIR="$TARGET_DIR/test-cross"
mkdir -p "$LOG_DIR"

as_root() {
    if [[ $(id -u) -eq 0 ]]; then "$@"; else sudo "$@"; fi
}

# ---------------------------------------------------------------------------
# Install what is missing.
# ---------------------------------------------------------------------------
missing_tools() {
    local t missing=()
    for t in "${TARGETS[@]}"; do
        [[ ${QEMU[$t]} == native ]] || command -v "${QEMU[$t]}" >/dev/null || missing+=("${QEMU[$t]}")
        command -v "${GNU[$t]}-gcc" >/dev/null || missing+=("${GNU[$t]}-gcc")
        [[ -e /usr/${GNU[$t]}/lib/libc.so.6 ]] || missing+=("/usr/${GNU[$t]}/lib/libc.so.6")
        [[ $t != "$MUSL" || -e $MUSL_LIB/libc.a ]] || missing+=("$MUSL_LIB/libc.a")
    done
    echo "${missing[*]}"
}

wants_musl() {
    local t
    for t in "${TARGETS[@]}"; do [[ $t == "$MUSL" ]] && return 0; done
    return 1
}

missing="$(missing_tools)"
if [[ -n "$missing" ]]; then
    if [[ $INSTALL -eq 0 ]]; then
        echo "missing: $missing (run without --no-install to install them)" >&2
        exit 1
    fi
    echo "== installing Debian packages (missing: $missing)"
    packages=("${DEBIAN_PACKAGES[@]}")
    # Debian packages musl for armhf only as an armhf package: multiarch.
    if wants_musl; then
        dpkg --print-foreign-architectures | grep -qx armhf || as_root dpkg --add-architecture armhf
        packages+=(musl-dev:armhf)
    fi
    . scripts/apt.sh # apt_install (retries a Debian mirror in mid-sync)
    apt_install --no-install-recommends "${packages[@]}"
fi
if wants_musl; then
    if ! rustup run nightly rustc --version >/dev/null 2>&1; then
        [[ $INSTALL -eq 0 ]] && { echo "no nightly toolchain for $MUSL (rustup toolchain install nightly --profile minimal)" >&2; exit 1; }
        echo "== rustup toolchain install nightly --profile minimal (for $MUSL: -Zbuild-std)"
        rustup toolchain install nightly --profile minimal
    fi
    if ! rustup component list --toolchain nightly --installed | grep '^rust-src' >/dev/null; then
        [[ $INSTALL -eq 0 ]] && { echo "nightly rust-src missing (for $MUSL)" >&2; exit 1; }
        rustup component add rust-src --toolchain nightly
    fi
fi
installed_targets="$(rustup target list --installed)"
for t in "${TARGETS[@]}"; do
    [[ $t == "$MUSL" ]] && continue # std comes from -Zbuild-std
    if ! grep -qx "$t" <<<"$installed_targets"; then
        [[ $INSTALL -eq 0 ]] && { echo "rustup target $t missing" >&2; exit 1; }
        echo "== rustup target add $t"
        rustup target add "$t"
    fi
done

# ---------------------------------------------------------------------------
# What runs.
# ---------------------------------------------------------------------------
echo "== $(cargo --version), $(rustc --version)"
for t in "${TARGETS[@]}"; do
    [[ ${QEMU[$t]} == native ]] && { echo "== $t: runs natively"; continue; }
    echo "== ${QEMU[$t]}: $("${QEMU[$t]}" --version | head -n1)"
done
cargo_minor="$(cargo --version | sed -E 's/^cargo 1\.([0-9]+).*/\1/')"
if [[ "$cargo_minor" =~ ^[0-9]+$ ]] && ((cargo_minor >= 89)); then
    echo "== doctests: compiled for each target and run under QEMU (cross-target doctests are stable since cargo 1.89)"
else
    echo "== doctests: SKIPPED by cargo on cross targets (cargo < 1.89; nightly -Zdoctest-xcompile would run them)"
fi
echo "== RUST_TEST_THREADS=$RUST_TEST_THREADS, timeout ${TIMEOUT}s per target, logs in $LOG_DIR"

# Sums "test result:" lines of a log: "<passed> <failed> <ignored> <binaries>".
count_results() {
    grep -E '^test result: ' "$1" |
        sed -E 's/.* ([0-9]+) passed; ([0-9]+) failed; ([0-9]+) ignored.*/\1 \2 \3/' |
        awk '{p += $1; f += $2; i += $3; n++} END {printf "%d %d %d %d\n", p, f, i, n}'
}

declare -A RESULT PASSED FAILED IGNORED BINARIES SKIPS SECONDS_TAKEN
ROWS=()

# run_leg NAME TARGET RUNNER [cargo args...]: one `cargo test` under a runner.
run_leg() {
    local name="$1" target="$2" runner="$3"
    shift 3
    local log="$LOG_DIR/$name.log" start rc
    echo
    echo "== $name: cargo $* (runner: ${runner:-none, native})"
    start=$(date +%s)
    set +e
    # STACKJOB_TEST_RUNNER: tests that re-execute their own binary (crash
    # tests in a child process) run the child under the same emulator.
    STACKJOB_TEST_RUNNER="$runner" timeout --kill-after=30 "$TIMEOUT" cargo "$@" 2>&1 | tee "$log"
    rc=${PIPESTATUS[0]}
    set -e
    SECONDS_TAKEN[$name]=$(($(date +%s) - start))
    read -r PASSED[$name] FAILED[$name] IGNORED[$name] BINARIES[$name] < <(count_results "$log")
    SKIPS[$name]=$(grep -ciE '\bskipp(ed|ing)\b' "$log" || true)
    if [[ $rc -eq 124 || $rc -eq 137 ]]; then
        RESULT[$name]="TIMEOUT"
    elif [[ $rc -ne 0 || ${FAILED[$name]} -ne 0 ]]; then
        RESULT[$name]="FAILED"
    elif [[ ${PASSED[$name]} -eq 0 ]]; then
        RESULT[$name]="NO TESTS"
    else
        RESULT[$name]="ok"
    fi
    ROWS+=("$name")
    echo "== $name: ${RESULT[$name]}: ${PASSED[$name]} passed, ${FAILED[$name]} failed, ${IGNORED[$name]} ignored in ${BINARIES[$name]} test binaries"
}

# armv7 musl: std built by nightly -Zbuild-std, linked statically by the cross
# gcc against Debian's musl instead of rustc's self-contained crt objects
# (those come with rust-std, which rustup does not have for this target):
# -B makes gcc take musl's crt1.o/crti.o/crtn.o, -L its libc.a. Rust's
# unwind crate links libunwind.a on static musl targets (rust-std would ship
# LLVM's); the cross gcc's libgcc_eh.a is the same _Unwind_* and Arm EHABI
# interface, offered under that name. Toolchain, build-std, flags, linker
# and runner go through the environment, so that nested cargo runs
# (tests/example_manpage.rs) and rustdoc (the doctests) build the same way.
musl_leg() {
    local unwind_dir="$TARGET_DIR/musl-unwind"
    mkdir -p "$unwind_dir"
    ln -sf "$(arm-linux-gnueabihf-gcc -print-file-name=libgcc_eh.a)" "$unwind_dir/libunwind.a"
    local flags="-C link-self-contained=no -C link-arg=-B$MUSL_LIB -L native=$MUSL_LIB -L native=$unwind_dir"
    local env_target
    env_target=$(tr 'a-z-' 'A-Z_' <<<"$MUSL")
    # Exported for this function only (run_leg and what it runs).
    local -x RUSTFLAGS="$flags" RUSTDOCFLAGS="$flags" RUSTUP_TOOLCHAIN=nightly CARGO_UNSTABLE_BUILD_STD=std
    local -x CARGO_TARGET_DIR="$TARGET_DIR/musl"
    local -x "CARGO_TARGET_${env_target}_LINKER=arm-linux-gnueabihf-gcc" "CARGO_TARGET_${env_target}_RUNNER=qemu-arm"
    echo
    echo "== $MUSL: $(rustc --version), -Zbuild-std, static, musl $(dpkg-query -W -f='${Version}' musl-dev:armhf 2>/dev/null)"
    run_leg "$MUSL" "$MUSL" qemu-arm test --target "$MUSL" --no-fail-fast
}

for t in "${TARGETS[@]}"; do
    runner="${QEMU[$t]} -L /usr/${GNU[$t]}"
    extra=()
    # Without a backend every job test returns early; --nocapture puts its
    # "skipped: ..." line in the log, so the skips are counted, not silent.
    [[ $t == s390x-* ]] && extra=(-- --nocapture)
    if [[ ${QEMU[$t]} == native ]]; then
        # An empty STACKJOB_TEST_RUNNER: child processes run natively too.
        RUSTDOCFLAGS="${RUSTDOCFLAGS:-} $I686_LINK_ARGS" run_leg "$t" "$t" "" test --target "$t" --no-fail-fast --features tokio-dev
    elif [[ $t == "$MUSL" ]]; then
        musl_leg
    else
        # --features tokio-dev: the tokio bridge's tests too (a superset).
        run_leg "$t" "$t" "$runner" test --target "$t" --no-fail-fast --features tokio-dev "${extra[@]}"
    fi
done

# ---------------------------------------------------------------------------
# Optional: aarch64 branch protection (BTI + PAC).
# ---------------------------------------------------------------------------
BTI_VERDICT=""
bti_leg() {
    local t=aarch64-unknown-linux-gnu
    local gnu=${GNU[$t]}
    local qemu_cpu="qemu-aarch64 -cpu max,pauth-impdef=on -L /usr/$gnu"
    local flags="-Zbranch-protection=bti,pac-ret"
    local dir="$TARGET_DIR/bti"
    if ! rustup run nightly rustc --version >/dev/null 2>&1; then
        if [[ $INSTALL -eq 0 ]]; then
            echo "== bti: no nightly toolchain (rustup toolchain install nightly --profile minimal)" >&2
            return 1
        fi
        echo "== bti: rustup toolchain install nightly --profile minimal"
        rustup toolchain install nightly --profile minimal || return 1
    fi
    if ! rustup component list --toolchain nightly --installed | grep '^rust-src' >/dev/null; then
        [[ $INSTALL -eq 0 ]] && { echo "== bti: nightly rust-src missing" >&2; return 1; }
        rustup component add rust-src --toolchain nightly || return 1
    fi
    echo
    echo "== bti: $(rustup run nightly rustc --version); qemu -cpu max,pauth-impdef=on (BTI and PAuth on; impdef = fast PAC)"

    # 1. The full suite, every crate (std too, -Zbuild-std) compiled with BTI
    #    pads and pac-ret: return addresses are signed and authenticated for
    #    real, across every switch. Toolchain, build-std and flags go through
    #    the environment, so that nested cargo runs (tests/example_manpage.rs)
    #    and rustdoc (the doctests) build the same way.
    CARGO_TARGET_DIR="$dir" RUSTFLAGS="$flags" RUSTDOCFLAGS="$flags" \
        RUSTUP_TOOLCHAIN=nightly CARGO_UNSTABLE_BUILD_STD=std \
        CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_RUNNER="$qemu_cpu" \
        run_leg "aarch64-bti-pac" "$t" "$qemu_cpu" test --target "$t" --no-fail-fast

    # 2. Enforcement. A generated program (not part of the suite) links
    #    stackjob, turns on BTI for its Rust code and checks that jobs run
    #    while a branch to a spot without a landing pad traps.
    local demo="$dir/bti-demo"
    mkdir -p "$demo/src"
    cat >"$demo/Cargo.toml" <<EOF
[package]
name = "bti-demo"
version = "0.0.0"
edition = "2024"
publish = false

[dependencies]
stackjob = { path = "$PWD" }

[workspace]
EOF
    cat >"$demo/src/main.rs" <<'EOF'
//! BTI enforcement around stackjob's switch (generated by scripts/test-cross.sh).
//!
//! Debian's crt1.o/crti.o/crtbegin.o have no BTI landing pads, so a fully
//! marked executable would trap in `_start` (the `force-bti` step shows it).
//! Instead this program gives its own text, all compiled with pads, the
//! guarded-page attribute with mprotect(PROT_BTI): the first page (crt
//! start-up code) and the last partial page stay unguarded.
use std::arch::asm;

const PROT_READ: i32 = 1;
const PROT_EXEC: i32 = 4;
const PROT_BTI: i32 = 0x10;
const AT_PAGESZ: u64 = 6;
const AT_HWCAP2: u64 = 26;
const HWCAP2_BTI: u64 = 1 << 17;

unsafe extern "C" {
    fn mprotect(addr: *mut u8, len: usize, prot: i32) -> i32;
    fn getauxval(kind: u64) -> u64;
    fn _start();
    static etext: u8;
}

fn guard_own_text() {
    // SAFETY: getauxval has no preconditions.
    let (hwcap2, page) = unsafe { (getauxval(AT_HWCAP2), getauxval(AT_PAGESZ) as usize) };
    assert!(hwcap2 & HWCAP2_BTI != 0, "this CPU model has no BTI (run qemu-aarch64 -cpu max)");
    let start = (_start as *const () as usize / page + 1) * page;
    // Only the address of the linker-defined symbol is taken (safe code since
    // raw borrows of extern statics need no unsafe).
    let end = (&raw const etext) as usize / page * page;
    // SAFETY: re-protects our own text with its current rights plus BTI.
    let rc = unsafe { mprotect(start as *mut u8, end - start, PROT_READ | PROT_EXEC | PROT_BTI) };
    assert_eq!(rc, 0, "mprotect(PROT_BTI) failed");
    println!("guarded {:#x}..{:#x} ({} KiB of Rust text)", start, end, (end - start) / 1024);
}

/// The payload of the panic each job raises and catches on purpose.
const DELIBERATE: &str = "unwinding on a guarded job stack";

#[inline(never)]
fn nested(depth: u32) -> u32 {
    if depth == 0 {
        stackjob::pause();
        return 1;
    }
    nested(depth - 1) + 1
}

fn main() {
    let mode = std::env::args().nth(1).unwrap_or_default();
    guard_own_text();
    match mode.as_str() {
        "jobs" => {
            // Jobs exercise every indirect branch of the switch: the
            // trampoline (`bti j`, reached by `br x17`), its `blr` into the
            // entry function, and the resume label after each pause.
            // The 50 panics are deliberate and caught: the default hook
            // would print each (with RUST_BACKTRACE=1, a backtrace each).
            let default_hook = std::panic::take_hook();
            std::panic::set_hook(Box::new(move |info| {
                if info.payload().downcast_ref::<&str>() != Some(&DELIBERATE) {
                    default_hook(info);
                }
            }));
            let mut finished = 0;
            for round in 0..50u32 {
                let step = stackjob::start(None, move || {
                    let caught = std::panic::catch_unwind(|| std::panic::panic_any(DELIBERATE));
                    assert_eq!(caught.unwrap_err().downcast_ref::<&str>(), Some(&DELIBERATE));
                    nested(round % 7) + nested(3)
                })
                .unwrap();
                let mut step = step;
                loop {
                    match step {
                        stackjob::Step::Paused(job) => step = job.resume().unwrap(),
                        stackjob::Step::Finished(v) => {
                            assert_eq!(v, round % 7 + 1 + 4);
                            finished += 1;
                            break;
                        }
                    }
                }
            }
            println!(
                "jobs: {finished} jobs started, unwound a caught panic, paused twice each and finished under enforced BTI"
            );
        }
        // SAFETY (both arms): a jump to the next instruction, nothing else.
        "pad" => unsafe { asm!("adr x9, 2f", "br x9", "2:", "bti j", out("x9") _) },
        "nopad" => unsafe { asm!("adr x9, 2f", "br x9", "2:", "nop", out("x9") _) },
        other => panic!("unknown mode {other:?}"),
    }
    println!("{mode}: survived");
}
EOF
    echo
    echo "== bti: building the enforcement demo"
    local bin="$dir/$t/debug/bti-demo"
    (cd "$demo" && CARGO_TARGET_DIR="$dir" RUSTFLAGS="$flags" \
        cargo +nightly build -Zbuild-std --target "$t" --config "target.$t.linker=\"$gnu-gcc\"") || return 1
    local ok=1 rc
    for mode in jobs pad nopad; do
        set +e
        timeout 600 $qemu_cpu "$bin" "$mode"
        rc=$?
        set -e
        if [[ $mode == nopad ]]; then
            # qemu dies by the guest's SIGILL: 128 + 4.
            if [[ $rc -eq 132 ]]; then
                echo "== bti: nopad trapped with SIGILL: BTI is enforced on the guarded pages"
            else
                echo "== bti: nopad exited $rc, expected SIGILL (132): BTI is NOT enforced" >&2
                ok=0
            fi
        elif [[ $rc -ne 0 ]]; then
            echo "== bti: $mode failed with exit status $rc" >&2
            ok=0
        fi
    done

    # 3. The ELF note route, for the record: rust-lld with -z force-bti marks
    #    the executable (readelf -n), qemu/ld.so then guard all of it, and the
    #    first branch into Debian's pad-less crt1.o `_start` traps. (GNU ld
    #    cannot do this: rustc's synthetic symbols.o carries a non-SHF_ALLOC
    #    .note.gnu.property, so ld's output note is not loaded.)
    local lld_dir
    lld_dir="$(rustup run nightly rustc --print sysroot)/lib/rustlib/x86_64-unknown-linux-gnu/bin/gcc-ld"
    if [[ -x "$lld_dir/ld.lld" ]]; then
        echo
        echo "== bti: the same demo linked by rust-lld with -z force-bti"
        (cd "$demo" && CARGO_TARGET_DIR="$dir" RUSTFLAGS="$flags" \
            cargo +nightly rustc -Zbuild-std --target "$t" --config "target.$t.linker=\"$gnu-gcc\"" -- \
            -Clink-arg=-fuse-ld=lld "-Clink-arg=-B$lld_dir" -Clink-arg=-Wl,-z,force-bti) 2>&1 |
            grep -vE '^\s*(Compiling|Finished)' || true
        local forced="$dir/bti-demo-forced"
        if cp "$bin" "$forced"; then
            "$gnu-readelf" -n "$forced" | grep -A1 NT_GNU_PROPERTY_TYPE_0 || echo "(no GNU property note)"
            set +e
            timeout 600 $qemu_cpu "$forced" pad >/dev/null 2>&1
            rc=$?
            set -e
            echo "== bti: force-bti executable exit status $rc (132 = SIGILL: enforcement on, trapped in crt start-up code)"
        fi
    fi
    if [[ $ok -eq 1 ]]; then
        BTI_VERDICT="BTI enforced: jobs ran, a missing landing pad trapped"
    else
        BTI_VERDICT="BTI demonstration FAILED"
        return 1
    fi
}

bti_failed=0
if [[ $BTI -eq 1 ]]; then
    bti_leg || bti_failed=1
fi

# ---------------------------------------------------------------------------
# Summary.
# ---------------------------------------------------------------------------
echo
echo "== summary"
printf '%-36s %-9s %8s %8s %8s %9s %6s %7s\n' target result passed failed ignored binaries skips seconds
total_passed=0
total_failed=0
status=0
for name in "${ROWS[@]}"; do
    printf '%-36s %-9s %8s %8s %8s %9s %6s %7s\n' "$name" "${RESULT[$name]}" "${PASSED[$name]}" \
        "${FAILED[$name]}" "${IGNORED[$name]}" "${BINARIES[$name]}" "${SKIPS[$name]}" "${SECONDS_TAKEN[$name]}"
    total_passed=$((total_passed + PASSED[$name]))
    total_failed=$((total_failed + FAILED[$name]))
    [[ ${RESULT[$name]} == ok ]] || status=1
done
[[ -n "$BTI_VERDICT" ]] && echo "bti: $BTI_VERDICT"
[[ $bti_failed -eq 0 ]] || status=1
echo "total: $total_passed passed, $total_failed failed"
exit $status
