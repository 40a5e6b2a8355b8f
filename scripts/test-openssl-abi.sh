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
#      (bench_switch.c; informational, never fails the run);
#   5. installs the library into a temporary prefix
#      (scripts/install-openssl-abi.sh) and builds and runs the man-page
#      example and the C suite from copies of their sources with nothing but
#      `pkg-config --cflags --libs stackjob-async` (no path into the tree),
#      against the installed .so (soname libstackjob_openssl.so.0) and .a;
#      the extensions' and mem functions' tests again under Valgrind;
#   6. the C suite under AddressSanitizer (needs the nightly toolchain, which
#      test-all.sh installs for its asan step; skipped, saying so, without);
#   7. with STACKJOB_MUSL=1, the musl legs too (scripts/test-openssl-abi-musl.sh,
#      which test-all.sh runs as a step of its own): the crate's and the C
#      library's suites on x86_64-unknown-linux-musl natively and on
#      aarch64-unknown-linux-musl under QEMU, and the C suite against the
#      musl static library.
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
command -v pkg-config >/dev/null 2>&1 || need+=(pkgconf)
[ -f /usr/include/openssl/async.h ] || need+=(libssl-dev)
if [ ${#need[@]} -gt 0 ]; then
    echo "==== installing ${need[*]}"
    . scripts/apt.sh # apt_install (retries a Debian mirror in mid-sync)
    apt_install "${need[@]}"
fi

export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$PWD/target}
SECONDS_PER_TEST=${STACKJOB_SPEED_SECONDS:-1}

echo "==== build (release)"
cargo build --release -p stackjob-openssl
LIB=$CARGO_TARGET_DIR/release/libstackjob_openssl.so
[ -f "$LIB" ] && [ -f "$CARGO_TARGET_DIR/release/libstackjob_openssl.a" ]

echo "==== exported symbols of the release .so"
# 20 ASYNC_* as OPENSSL_3.0.0, the 2 mem functions as OPENSSL_3.1.0 (as
# libcrypto >= 3.1 exports them), 3 probes, the foreign-job hook and 5
# extensions as STACKJOB_OPENSSL_0.1, nothing
# else (tests/c_programs.rs checks the exact names on the debug build).
# (Printed from a variable: `tee /dev/stderr` would reopen a stderr that is
# redirected to a file with O_TRUNC and wipe the log written so far.)
versions=$(readelf --dyn-syms -W "$LIB" | awk '$1 ~ /^[0-9]+:$/ && $7 != "UND" { print $8 }' |
    sed -E 's/^[^@]*@*//' | sort | uniq -c)
printf '%s\n' "$versions"
if [ "$(printf '%s\n' "$versions" | tr -s ' ' | paste -sd, -)" != ' 20 OPENSSL_3.0.0, 2 OPENSSL_3.1.0, 9 STACKJOB_OPENSSL_0.1' ]; then
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

echo "==== OpenSSL's own test/asynctest.c, unchanged, linked and static"
# OpenSSL's source is not in this repository. OPENSSL_ASYNCTEST_C may point
# at test/asynctest.c of any checkout; otherwise the file comes from the
# source of Debian's own openssl package (deb-src, fetched with a private
# apt state under $TMP: the system's apt configuration is left alone).
# A file of OpenSSL >= 3.1 has test_ASYNC_set_mem_functions, which
# asynctest_harness.c runs first, while it can still check that the custom
# functions are used, then the whole file; 3.0's (Debian 12) is built as it
# is, with its own main.
fetch_asynctest() { # -> path of test/asynctest.c on stdout, or nothing
    local dir=$TMP/osslsrc suite
    suite=$(. /etc/os-release 2>/dev/null && echo "${VERSION_CODENAME:-}")
    [ -n "$suite" ] && command -v apt-get >/dev/null 2>&1 || return 0
    mkdir -p "$dir/lists/partial"
    printf 'deb-src [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] http://deb.debian.org/debian %s main\n' \
        "$suite" >"$dir/sources.list"
    local apt=(apt-get -qq -o Dir::Etc::sourcelist="$dir/sources.list" -o Dir::Etc::sourceparts=/nonexistent
        -o Dir::State::Lists="$dir/lists" -o APT::Sandbox::User=root)
    "${apt[@]}" update >/dev/null 2>&1 || return 0
    # Only the upstream tarball is needed (the .dsc may be gone from the mirror).
    (cd "$dir" && "${apt[@]}" source --download-only openssl >/dev/null 2>&1) || true
    local orig
    orig=$(ls "$dir"/openssl_*.orig.tar.gz 2>/dev/null | head -n1)
    [ -n "$orig" ] || return 0
    tar -xzf "$orig" -C "$dir" --wildcards '*/test/asynctest.c' 2>/dev/null || return 0
    ls "$dir"/openssl-*/test/asynctest.c 2>/dev/null | head -n1
}
at=${OPENSSL_ASYNCTEST_C:-}
[ -n "$at" ] || at=$(fetch_asynctest)
if [ -n "$at" ]; then
    at=$(realpath "$at")
    REL=$CARGO_TARGET_DIR/release
    if grep -q 'test_ASYNC_set_mem_functions' "$at"; then
        src=(openssl-abi/tests/c/asynctest_harness.c -DASYNCTEST_C="\"$at\"")
        what="test_ASYNC_set_mem_functions first"
    else
        src=("$at")
        what="a file without test_ASYNC_set_mem_functions (OpenSSL 3.0)"
    fi
    echo "-- $at ($what)"
    # -I...include/stackjob: <openssl/async.h> is the library's own header.
    cc -O1 -Iopenssl-abi/include/stackjob -o "$TMP/asynctest-so" "${src[@]}" \
        -L"$REL" -Wl,-rpath,"$REL" -lstackjob_openssl -lcrypto
    cc -O1 -Iopenssl-abi/include/stackjob -o "$TMP/asynctest-a" "${src[@]}" \
        "$REL/libstackjob_openssl.a" -lcrypto -lpthread -ldl -lm
    for exe in "$TMP/asynctest-so" "$TMP/asynctest-a"; do
        STACKJOB_DEBUG=1 "$exe" >"$TMP/asynctest.out" 2>&1 || { cat "$TMP/asynctest.out"; exit 1; }
        grep -q "^PASS" "$TMP/asynctest.out" && grep -q "jobs started" "$TMP/asynctest.out" ||
            { cat "$TMP/asynctest.out"; echo "FAIL: OpenSSL's asynctest.c" >&2; exit 1; }
    done
    echo "ok: OpenSSL's asynctest.c passes against the library, shared and static ($what)"
else
    echo "skipped: no OpenSSL source reachable (Debian deb-src); set OPENSSL_ASYNCTEST_C to OpenSSL's test/asynctest.c to run it"
fi

echo "==== install into a temporary prefix; build the C programs from it with pkg-config alone"
PREFIX=$TMP/prefix
scripts/install-openssl-abi.sh "$PREFIX"
mkdir "$TMP/src"
cp openssl-abi/tests/c/*.c openssl-abi/tests/c/check.h "$TMP/src/"
export PKG_CONFIG_PATH=$PREFIX/lib/pkgconfig
CFLAGS_SJ=$(pkg-config --cflags stackjob-async)
LIBS_SJ=$(pkg-config --libs stackjob-async)
echo "pkg-config --cflags --libs stackjob-async: $CFLAGS_SJ $LIBS_SJ"
(
    cd "$TMP/src"
    run_prog() { # exe args...: runs a suite program and checks its "ok"
        local out
        out=$("$@" 2>&1) || { printf '%s\n' "$out"; echo "FAIL: $1 from the installed prefix" >&2; exit 1; }
        grep -q ": ok" <<<"$out" || { printf '%s\n' "$out"; echo "FAIL: $1 printed no ok" >&2; exit 1; }
    }
    cc -O1 -c -fno-asynchronous-unwind-tables -fno-unwind-tables $CFLAGS_SJ nounwind.c -o nounwind.o
    n=0
    for prog in pool jobs waitfd callback block misuse threads memfns mem_functions ext_cancel ext_stack ext_wake; do
        extra=()
        [ "$prog" = ext_cancel ] && extra=(nounwind.o)
        # shared, from the prefix (rpath: it is no system directory) ...
        # shellcheck disable=SC2086
        cc -O1 -o "$prog-so" "$prog.c" "${extra[@]}" $CFLAGS_SJ $LIBS_SJ -Wl,-rpath,"$PREFIX/lib" -lpthread
        # ... and static, from the prefix's .a
        # shellcheck disable=SC2086
        cc -O1 -o "$prog-a" "$prog.c" "${extra[@]}" $CFLAGS_SJ "$PREFIX/lib/libstackjob_openssl.a" \
            $(pkg-config --static --libs-only-l stackjob-async | sed 's/-lstackjob_openssl//')
        run_prog "./$prog-so"
        run_prog "./$prog-a"
        n=$((n + 2))
    done
    readelf -d pool-so | grep -q 'Shared library: \[libstackjob_openssl.so.0\]' ||
        { echo "FAIL: pool-so does not need libstackjob_openssl.so.0" >&2; exit 1; }
    # The man-page example, unchanged: <openssl/async.h> is ours, <openssl/crypto.h>
    # (OPENSSL_malloc) the system's.
    # shellcheck disable=SC2086
    cc -O1 -o manpage manpage_example.c $CFLAGS_SJ $LIBS_SJ -Wl,-rpath,"$PREFIX/lib" -lcrypto
    STACKJOB_DEBUG=1 ./manpage >manpage.out 2>manpage.err
    grep -q "Job finished with return value 1" manpage.out && grep -q "1 jobs started" manpage.err ||
        { cat manpage.out manpage.err; echo "FAIL: the man-page example from the prefix" >&2; exit 1; }
    n=$((n + 1))
    echo "ok: $n programs built from the installed prefix with pkg-config, all passed"

    echo "==== the extensions' and the mem functions' C tests under Valgrind (static builds from the prefix)"
    if command -v valgrind >/dev/null 2>&1; then
        for prog in ext_cancel ext_wake ext_stack mem_functions; do
            # (ext_wake's race: fewer rounds, Valgrind runs one thread at a time;
            # --fair-sched hands the lock round so the spinning waker does not
            # starve the owner for minutes)
            if ! valgrind --fair-sched=yes --error-exitcode=99 --quiet "./$prog-a" 300 >"$prog.vg" 2>&1; then
                cat "$prog.vg"
                echo "FAIL: $prog under Valgrind" >&2
                exit 1
            fi
            grep -q ": ok" "$prog.vg" || { cat "$prog.vg"; exit 1; }
        done
        echo "ok: 4 programs, no Valgrind errors"
    else
        echo "skipped: no valgrind (apt-get install valgrind)"
    fi
)
unset PKG_CONFIG_PATH

echo "==== the C suite under AddressSanitizer (gcc -fsanitize=address, the library built with"
echo "     nightly -Zsanitizer=address and stackjob's asan feature: fiber annotations on every switch)"
if rustup run nightly rustc --version >/dev/null 2>&1; then
    host=$(rustc -vV | sed -n 's/^host: //p')
    ASAN_DIR=$CARGO_TARGET_DIR/asan-c
    CARGO_TARGET_DIR=$ASAN_DIR RUSTFLAGS="-Zsanitizer=address" \
        cargo +nightly build -p stackjob-openssl --features stackjob/asan --target "$host"
    ASAN_LIB=$ASAN_DIR/$host/debug/libstackjob_openssl.a
    inc=openssl-abi/include
    cc -O1 -c -fno-asynchronous-unwind-tables -fno-unwind-tables -I"$inc" -o "$TMP/nounwind-asan.o" \
        openssl-abi/tests/c/nounwind.c
    n=0
    for prog in pool jobs waitfd callback block misuse threads memfns mem_functions ext_cancel ext_stack ext_wake; do
        extra=()
        [ "$prog" = ext_cancel ] && extra=("$TMP/nounwind-asan.o")
        cc -O1 -g -fsanitize=address -fno-omit-frame-pointer -I"$inc" -o "$TMP/$prog-asan" \
            "openssl-abi/tests/c/$prog.c" "${extra[@]}" "$ASAN_LIB" -lpthread -ldl -lm
        if ! ASAN_OPTIONS=detect_leaks=1 "$TMP/$prog-asan" >"$TMP/$prog.asan" 2>&1 ||
            ! grep -q ": ok" "$TMP/$prog.asan"; then
            cat "$TMP/$prog.asan"
            echo "FAIL: $prog under AddressSanitizer" >&2
            exit 1
        fi
        n=$((n + 1))
    done
    echo "ok: $n C programs clean under AddressSanitizer (LeakSanitizer on)"
else
    echo "skipped: no nightly toolchain for -Zsanitizer=address (rustup toolchain install nightly)"
fi

if [ -n "${STACKJOB_MUSL:-}" ]; then
    scripts/test-openssl-abi-musl.sh
fi
echo "==== test-openssl-abi: all passed"
