#!/usr/bin/env bash
# The OpenSSL ABI library (openssl-abi/, issue 6), end to end:
#   1. builds libstackjob_openssl.{so,a} (release) and checks the .so's
#      exported symbols and their versions (OPENSSL_3.0.0, as libcrypto);
#   2. cargo test -p stackjob-openssl: the man-page example (shared and static
#      link, 8 expected lines), the C suite in openssl-abi/tests/c/, the
#      exported symbol set and LD_PRELOAD of versioned references;
#   3. LD_PRELOAD under the stock `openssl` binary: `openssl speed
#      -async_jobs 8` for sha256 and rsa2048 must complete with results and
#      the library's STACKJOB_DEBUG counters must show it served the jobs;
#   4. prints the per-job overhead of libcrypto's ASYNC vs the preload
#      (bench_switch.c; informational, never fails the run).
# Installs gcc, openssl and libssl-dev with apt-get when missing (Debian).
# Exits non-zero on any failure.
set -euo pipefail
cd "$(dirname "$0")/.."
# Deliberate panics stay one line each, whatever the caller set (a backtrace
# for each would read as a failure).
export RUST_BACKTRACE=0

if ! command -v cargo >/dev/null 2>&1 && [ -x "$HOME/.cargo/bin/cargo" ]; then
    export PATH="$HOME/.cargo/bin:$PATH"
fi

need=()
command -v cc >/dev/null 2>&1 || need+=(gcc)
command -v openssl >/dev/null 2>&1 || need+=(openssl)
[ -f /usr/include/openssl/async.h ] || need+=(libssl-dev)
if [ ${#need[@]} -gt 0 ]; then
    echo "==== installing ${need[*]}"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}"
fi

export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$PWD/target}
SECONDS_PER_TEST=${STACKJOB_SPEED_SECONDS:-1}

echo "==== build (release)"
cargo build --release -p stackjob-openssl
LIB=$CARGO_TARGET_DIR/release/libstackjob_openssl.so
[ -f "$LIB" ] && [ -f "$CARGO_TARGET_DIR/release/libstackjob_openssl.a" ]

echo "==== exported symbols of the release .so"
# 20 ASYNC_* as OPENSSL_3.0.0, the 2 mem functions as OPENSSL_3.1.0 (as
# libcrypto >= 3.1 exports them), 3 probes and 5 extensions as STACKJOB_OPENSSL_0.1, nothing
# else (tests/c_programs.rs checks the exact names on the debug build).
# (Printed from a variable: `tee /dev/stderr` would reopen a stderr that is
# redirected to a file with O_TRUNC and wipe the log written so far.)
versions=$(readelf --dyn-syms -W "$LIB" | awk '$1 ~ /^[0-9]+:$/ && $7 != "UND" { print $8 }' |
    sed -E 's/^[^@]*@*//' | sort | uniq -c)
printf '%s\n' "$versions"
if [ "$(printf '%s\n' "$versions" | tr -s ' ' | paste -sd, -)" != ' 20 OPENSSL_3.0.0, 2 OPENSSL_3.1.0, 8 STACKJOB_OPENSSL_0.1' ]; then
    echo "FAIL: $LIB does not export exactly the versioned ASYNC_* set (see openssl-abi/build.rs)" >&2
    exit 1
fi

echo "==== man-page example + C suite"
cargo test -p stackjob-openssl

TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT

check_speed() { # name args...
    local name=$1
    shift
    echo "==== LD_PRELOAD openssl speed -async_jobs 8 $*"
    if ! STACKJOB_DEBUG=1 LD_PRELOAD="$LIB" openssl speed -async_jobs 8 -seconds "$SECONDS_PER_TEST" "$@" \
        >"$TMP/$name.out" 2>&1; then
        cat "$TMP/$name.out"
        echo "FAIL: openssl speed $* exited non-zero under the preload" >&2
        exit 1
    fi
    grep -E "^(sha256|rsa 2048|type| +sign)|stackjob-openssl" "$TMP/$name.out" || true
    # (the "compiler:" line lists -Werror=format-security)
    if grep -v "^compiler:" "$TMP/$name.out" | grep -qiE "fail|error"; then
        echo "FAIL: openssl speed $* reported errors under the preload" >&2
        exit 1
    fi
    grep -q "stackjob-openssl: serving ASYNC_" "$TMP/$name.out" || {
        echo "FAIL: the preloaded library did not load" >&2
        exit 1
    }
    local started
    started=$(sed -nE 's/.*at exit: ([0-9]+) jobs started.*/\1/p' "$TMP/$name.out")
    if [ -z "$started" ] || [ "$started" -eq 0 ]; then
        echo "FAIL: the preloaded library served no jobs" >&2
        exit 1
    fi
    echo "ok: $started jobs served by libstackjob_openssl"
}
check_speed sha256 -evp sha256
grep -qE "^sha256 +[0-9.]+k" "$TMP/sha256.out" || { echo "FAIL: no sha256 results" >&2; exit 1; }
check_speed rsa rsa2048
grep -qE "^rsa 2048 bits" "$TMP/rsa.out" || { echo "FAIL: no rsa2048 results" >&2; exit 1; }

echo "==== per-job overhead: libcrypto ASYNC vs LD_PRELOAD stackjob (informational)"
cc -O2 -o "$TMP/bench_switch" openssl-abi/tests/c/bench_switch.c -lcrypto
echo "-- libcrypto:"
"$TMP/bench_switch" 2000000
echo "-- LD_PRELOAD=libstackjob_openssl.so:"
LD_PRELOAD="$LIB" "$TMP/bench_switch" 2000000
echo "==== test-openssl-abi: all passed"
