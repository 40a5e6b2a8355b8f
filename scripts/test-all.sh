#!/usr/bin/env bash
# The whole test suite, exactly as CI runs it (.ci/run calls this script).
# From a clean clone on a fresh machine, as root, it installs what is missing
# (rustup components and targets, Debian cross toolchains and QEMU, cargo-fuzz)
# and then runs, in order:
#
#   fmt        cargo fmt --check
#   clippy     cargo clippy --workspace --all-targets -- -D warnings
#   test       cargo test                        (native, debug)
#   release    cargo test --release             (native, optimised: the scrub
#              tests check the starter's frame only when optimised)
#   examples   the man-page example and the offload demo
#   cross      scripts/test-cross.sh --bti       (the whole suite under QEMU for
#              aarch64, riscv64 and s390x (no backend), plus the aarch64
#              branch-protection leg)
#   valgrind   scripts/valgrind.sh               (every test binary, 0 errors)
#   asan       scripts/asan.sh                   (nightly, -Zsanitizer=address)
#   fuzz       scripts/fuzz.sh 60                (nightly, cargo-fuzz)
#   openssl    scripts/test-openssl-abi.sh       (the OpenSSL-ABI C library: the
#              man-page C example, the C suite, LD_PRELOAD under `openssl speed`)
#   icount     scripts/icount.sh                 (callgrind instructions per op)
#
# STACKJOB_SKIP="fuzz cross ..." skips steps by name (for local runs only;
# CI skips nothing). Each step prints its wall time.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v cargo >/dev/null 2>&1 && [ -x "$HOME/.cargo/bin/cargo" ]; then
    export PATH="$HOME/.cargo/bin:$PATH"
fi
command -v cargo >/dev/null 2>&1 || { echo "error: no Rust toolchain (cargo) on PATH" >&2; exit 1; }

SKIP=" ${STACKJOB_SKIP:-} "
SUMMARY=()

step() { # name command...
    local name=$1
    shift
    if [[ $SKIP == *" $name "* ]]; then
        printf '\n==== %s: skipped (STACKJOB_SKIP) ====\n' "$name"
        SUMMARY+=("$(printf '%-9s skipped' "$name")")
        return
    fi
    printf '\n==== %s: %s ====\n' "$name" "$*"
    local t0=$SECONDS
    "$@"
    SUMMARY+=("$(printf '%-9s ok   %4ds' "$name" $((SECONDS - t0)))")
}

ensure_component() { # component subcommand
    if ! cargo "$2" --version >/dev/null 2>&1; then
        rustup component add "$1"
    fi
}

ensure_apt() { # command package: install the package if the command is missing
    if ! command -v "$1" >/dev/null 2>&1; then
        if [ -z "${APT_UPDATED:-}" ]; then
            apt-get update -qq
            APT_UPDATED=1
        fi
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$2" >/dev/null
    fi
}

examples() {
    cargo run --quiet --example manpage
    cargo run --quiet --release --example offload -- --requests 20000
}

ensure_component rustfmt fmt
ensure_component clippy clippy
ensure_apt valgrind valgrind
ensure_apt bc bc
rustc --version

step fmt cargo fmt --check
step clippy cargo clippy --workspace --all-targets -- -D warnings
step test cargo test
step release cargo test --release
step examples examples
step cross scripts/test-cross.sh --bti
step valgrind scripts/valgrind.sh
if cargo +nightly --version >/dev/null 2>&1; then
    step asan scripts/asan.sh
else
    SUMMARY+=("asan      skipped: no nightly toolchain")
fi
step fuzz scripts/fuzz.sh 60
step openssl scripts/test-openssl-abi.sh
step icount scripts/icount.sh

printf '\n==== summary ====\n'
printf '%s\n' "${SUMMARY[@]}"
echo "all steps passed"
