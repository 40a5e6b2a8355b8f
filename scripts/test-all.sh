#!/usr/bin/env bash
# The whole test suite, exactly as CI runs it (.ci/run calls this script).
# From a clean clone on a fresh machine, as root, it installs what is missing
# (rustup components and targets, the nightly toolchain with rust-src, Debian
# cross toolchains and QEMU, cargo-fuzz) and then runs, in order:
#
#   logs       scripts/check-log.sh              (no script reopens a standard
#              stream by name: that would wipe a log file the output goes to)
#   fmt        cargo fmt --check
#   clippy     cargo clippy --workspace --all-targets -- -D warnings, then
#              the same with --features tokio-dev (the tokio bridge)
#   test       cargo test, then cargo test --features tokio-dev (native,
#              debug; the second adds the tokio bridge's tests)
#   release    cargo test --release --features tokio-dev (native, optimised:
#              the scrub tests check the starter's frame only when optimised)
#   examples   the man-page example, the offload demo (with the tokio
#              bridge beside the epoll loop) and the tokio TCP server
#   cross      scripts/test-cross.sh --bti       (the whole suite, with the tokio
#              bridge, under QEMU for aarch64, riscv64, armv7 (A32 and T32),
#              armv7 musl, powerpc64le and s390x (no backend), natively for
#              i686, plus the aarch64 branch-protection leg, nightly: skip it
#              alone with "bti")
#   valgrind   scripts/valgrind.sh               (every test binary, 0 errors)
#   asan       scripts/asan.sh                   (nightly, -Zsanitizer=address)
#   fuzz       scripts/fuzz.sh 60                (nightly, cargo-fuzz)
#   openssl    scripts/test-openssl-abi.sh       (the OpenSSL-ABI C library: the
#              man-page C example, the C suite, LD_PRELOAD under `openssl speed`)
#   musl       scripts/test-openssl-abi-musl.sh  (crate and C library on x86_64 and
#              aarch64 musl: Rust suites, C suite against the static library)
#   icount     scripts/icount.sh                 (callgrind instructions per op)
#
# STACKJOB_SKIP="fuzz cross ..." skips steps by name (for local runs only;
# CI skips nothing); the nightly toolchain is installed only if one of bti,
# asan and fuzz is left to run. Each step prints its wall time.
#
# Tests run with RUST_BACKTRACE=0 whatever the caller's environment says:
# dozens of tests panic on purpose, and with backtraces on, their thousands
# of lines read as failures. For a failing test's backtrace run it by hand
# (`RUST_BACKTRACE=1 cargo test --test FILE NAME`).
#
# When the output goes to a regular file (as in CI), every step is checked
# afterwards to have left the log intact: the first line written must still
# be in it (see scripts/check-log.sh for what breaks that).
set -euo pipefail
cd "$(dirname "$0")/.."
export RUST_BACKTRACE=0

LOG_MARK="==== stackjob scripts/test-all.sh: started $(date -u '+%Y-%m-%d %H:%M:%S UTC'), pid $$"
echo "$LOG_MARK"
LOG_FDS=() # the descriptors among 1 and 2 that are regular files, each file once
if [ -f /proc/$$/fd/1 ]; then
    LOG_FDS+=(1)
fi
if [ -f /proc/$$/fd/2 ] && ! [ /proc/$$/fd/2 -ef /proc/$$/fd/1 ]; then
    echo "$LOG_MARK" >&2
    LOG_FDS+=(2)
fi

check_log() { # step: fails if the step wiped a log file the output goes to
    local fd
    for fd in "${LOG_FDS[@]}"; do
        # Reading /proc/self/fd/N opens the file afresh, read-only, from its start.
        if ! grep -aqxF -- "$LOG_MARK" "/proc/$$/fd/$fd"; then
            echo "error: step $1 wiped the log file on descriptor $fd: the first line written to it is gone" \
                "(something in it opens /dev/stdout or /dev/stderr by name, which truncates the file;" \
                "write to the descriptor, >&2, instead; scripts/check-log.sh finds such lines)" >&2
            exit 1
        fi
    done
}

if ! command -v cargo >/dev/null 2>&1 && [ -x "$HOME/.cargo/bin/cargo" ]; then
    export PATH="$HOME/.cargo/bin:$PATH"
fi
command -v cargo >/dev/null 2>&1 || { echo "error: no Rust toolchain (cargo) on PATH" >&2; exit 1; }

SKIP=" ${STACKJOB_SKIP:-} "
SUMMARY=()

step() { # name command...
    local name=$1
    shift
    if skipped "$name"; then
        printf '\n==== %s: skipped (STACKJOB_SKIP) ====\n' "$name"
        SUMMARY+=("$(printf '%-9s skipped' "$name")")
        return
    fi
    printf '\n==== %s: %s ====\n' "$name" "$*"
    local t0=$SECONDS
    "$@"
    check_log "$name"
    SUMMARY+=("$(printf '%-9s ok   %4ds' "$name" $((SECONDS - t0)))")
}

ensure_component() { # component subcommand
    if ! cargo "$2" --version >/dev/null 2>&1; then
        rustup component add "$1"
    fi
}

. scripts/apt.sh # apt_install (retries a Debian mirror in mid-sync)

ensure_apt() { # command package: install the package if the command is missing
    if ! command -v "$1" >/dev/null 2>&1; then
        apt_install "$2" >/dev/null
    fi
}

skipped() { # step: whether STACKJOB_SKIP names it
    [[ $SKIP == *" $1 "* ]]
}

# The nightly toolchain: the aarch64 branch-protection leg (-Zbuild-std needs
# rust-src), AddressSanitizer and cargo-fuzz (-Zsanitizer).
ensure_nightly() {
    if ! rustup run nightly rustc --version >/dev/null 2>&1; then
        command -v rustup >/dev/null 2>&1 || {
            echo "error: the bti, asan and fuzz steps need a nightly toolchain, and there is no rustup to" \
                "install it (install rustup, or skip them: STACKJOB_SKIP=\"bti asan fuzz\")" >&2
            exit 1
        }
        rustup toolchain install nightly --profile minimal
    fi
    if ! rustup component list --toolchain nightly --installed | grep '^rust-src' >/dev/null; then
        rustup component add rust-src --toolchain nightly
    fi
}

examples() {
    cargo run --quiet --example manpage
    cargo run --quiet --release --example offload --features tokio -- --requests 20000
    cargo run --quiet --release --example tokio_server --features tokio-dev
}

clippy() {
    cargo clippy --workspace --all-targets -- -D warnings
    cargo clippy --workspace --all-targets --features tokio-dev -- -D warnings
}

native_tests() {
    cargo test
    cargo test --features tokio-dev
}

ensure_component rustfmt fmt
ensure_component clippy clippy
ensure_apt valgrind valgrind
ensure_apt bc bc
if ! skipped bti && ! skipped cross || ! skipped asan || ! skipped fuzz; then
    ensure_nightly
fi
rustc --version

step logs scripts/check-log.sh
step fmt cargo fmt --check
step clippy clippy
step test native_tests
step release cargo test --release --features tokio-dev
step examples examples
if skipped bti; then
    printf '\n==== bti: skipped (STACKJOB_SKIP): the cross step runs without --bti ====\n'
    SUMMARY+=("$(printf '%-9s skipped' bti)")
    step cross scripts/test-cross.sh
else
    step cross scripts/test-cross.sh --bti
fi
step valgrind scripts/valgrind.sh
step asan scripts/asan.sh
step fuzz scripts/fuzz.sh 60
step openssl scripts/test-openssl-abi.sh
step musl scripts/test-openssl-abi-musl.sh
step icount scripts/icount.sh

printf '\n==== summary ====\n'
printf '%s\n' "${SUMMARY[@]}"
echo "all steps passed"
