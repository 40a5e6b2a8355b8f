#!/usr/bin/env bash
# The whole test suite (unit, integration and doc tests) under
# AddressSanitizer, with the crate's fiber annotations on (feature `asan`),
# including tests/asan.rs, which only builds with that feature, and the
# tokio bridge's tests (feature tokio-dev).
# Usage: scripts/asan.sh [extra cargo test arguments]
#
# -Zsanitizer is unstable: this needs a nightly toolchain (override with
# STACKJOB_NIGHTLY=nightly-YYYY-MM-DD). The explicit --target keeps
# RUSTFLAGS away from build scripts, which must not be instrumented. The
# prebuilt std is not instrumented (add -Zbuild-std for that: it needs the
# rust-src component). ASan's defaults apply, so use-after-return detection
# (fake stacks, one per side of every switch) and LeakSanitizer are on.
set -euo pipefail
cd "$(dirname "$0")/.."
# Deliberate panics stay one line each, whatever the caller set (a backtrace
# for each would read as a failure).
export RUST_BACKTRACE=0
toolchain=${STACKJOB_NIGHTLY:-nightly}
if ! cargo "+$toolchain" --version >/dev/null 2>&1; then
    echo "asan.sh: no '$toolchain' Rust toolchain (rustup toolchain install nightly)" >&2
    exit 2
fi
host=$(rustc "+$toolchain" -vV | sed -n 's/^host: //p')
export RUSTFLAGS="${RUSTFLAGS:-} -Zsanitizer=address"
export RUSTDOCFLAGS="${RUSTDOCFLAGS:-} -Zsanitizer=address"
cargo "+$toolchain" test --features asan,tokio-dev --target "$host" "$@"
