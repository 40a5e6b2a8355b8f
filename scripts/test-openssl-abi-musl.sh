#!/usr/bin/env bash
# ASYNC where OpenSSL has none: the crate and the OpenSSL-ABI C library on
# musl (OpenSSL compiles ASYNC out there: its async_posix.h wants glibc or
# FreeBSD).
#   x86_64-unknown-linux-musl, natively:
#     1. cargo test -p stackjob -p stackjob-openssl (the whole Rust suite;
#        the C programs are skipped there, saying so, and built here);
#     2. the C suite, the man-page example and the OpenSSL-3.1
#        ASYNC_set_mem_functions pattern (mem_functions.c) built with
#        musl-gcc -static against the musl libstackjob_openssl.a, with
#        <openssl/async.h> from include/stackjob (no OpenSSL anywhere);
#   aarch64-unknown-linux-musl, under qemu-aarch64:
#     3. the same Rust suite;
#     4. the same C programs, built by Debian's aarch64 gcc with the musl
#        specs of musl-dev:arm64 (multiarch), statically.
# Installs what is missing (musl-tools, gcc-aarch64-linux-gnu, qemu-user,
# musl-dev:arm64, the two rustup targets). The runner for aarch64 comes in
# through CARGO_TARGET_AARCH64_UNKNOWN_LINUX_MUSL_RUNNER, so .cargo/config.toml
# needs no entry. Prints the number of tests and programs per target and
# fails on any failure. STACKJOB_MUSL_TARGETS limits the targets.
set -euo pipefail
cd "$(dirname "$0")/.."
export RUST_BACKTRACE=0
if ! command -v cargo >/dev/null 2>&1 && [ -x "$HOME/.cargo/bin/cargo" ]; then
    export PATH="$HOME/.cargo/bin:$PATH"
fi
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$PWD/target}
TARGETS=${STACKJOB_MUSL_TARGETS:-x86_64-unknown-linux-musl aarch64-unknown-linux-musl}
ARM_SPECS=/usr/lib/aarch64-linux-musl/musl-gcc.specs

# apt_install (retries a Debian mirror in mid-sync).
. scripts/apt.sh
command -v musl-gcc >/dev/null 2>&1 || apt_install musl-tools
if [[ $TARGETS == *aarch64* ]]; then
    command -v aarch64-linux-gnu-gcc >/dev/null 2>&1 || apt_install gcc-aarch64-linux-gnu
    command -v qemu-aarch64 >/dev/null 2>&1 || apt_install qemu-user
    if [ ! -f "$ARM_SPECS" ]; then
        # Debian has no aarch64 musl cross compiler, but multiarch gives
        # musl's aarch64 headers, crt files and libc.a, with a gcc specs file.
        dpkg --print-foreign-architectures | grep -qx arm64 || { dpkg --add-architecture arm64; apt_updated=; }
        apt_install musl-dev:arm64
    fi
fi
installed=$(rustup target list --installed 2>/dev/null || true)
for t in $TARGETS; do
    grep -qx "$t" <<<"$installed" || rustup target add "$t"
done

TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
SUMMARY=()

count_tests() { # log: total of "N passed" over every "test result" line
    sed -nE 's/^test result: ok\. ([0-9]+) passed.*/\1/p' "$1" | awk '{ n += $1 } END { print n + 0 }'
}

c_suite() { # target cc-words...: builds and runs the C programs against the musl .a
    local target=$1
    shift
    local lib=$CARGO_TARGET_DIR/$target/release/libstackjob_openssl.a
    local run=()
    [[ $target == aarch64* ]] && run=(qemu-aarch64)
    local src=openssl-abi/tests/c inc=openssl-abi/include
    # The Rust static library leaves the unwinder out on musl: link the one
    # the toolchain ships (rust-std's self-contained LLVM libunwind). A
    # static link has no .eh_frame_hdr unless asked, and libunwind finds
    # the unwind tables through it.
    local unwind
    unwind=$(rustc --print sysroot)/lib/rustlib/$target/lib/self-contained/libunwind.a
    local flags=(-O1 -static -Wl,--eh-frame-hdr -I"$inc" -I"$inc/stackjob" -I"$src/musl-shim")
    local out=$TMP/$target
    mkdir -p "$out"
    "$@" "${flags[@]}" -c -fno-asynchronous-unwind-tables -fno-unwind-tables -o "$out/nounwind.o" "$src/nounwind.c"
    local n=0 prog extra
    for prog in pool jobs waitfd callback block misuse threads memfns mem_functions ext_cancel ext_stack ext_wake \
        stacksize manpage_example; do
        extra=()
        [ "$prog" = ext_cancel ] && extra=("$out/nounwind.o")
        "$@" "${flags[@]}" -o "$out/$prog" "$src/$prog.c" "${extra[@]}" "$lib" "$unwind" -lpthread
        local args=()
        [ "$prog" = stacksize ] && args=(262144)
        if ! "${run[@]}" "$out/$prog" "${args[@]}" >"$out/$prog.out" 2>&1; then
            cat "$out/$prog.out"
            echo "FAIL: $prog on $target (musl, static)" >&2
            exit 1
        fi
        if [ "$prog" = manpage_example ]; then
            grep -q "Job finished with return value 1" "$out/$prog.out" || { cat "$out/$prog.out"; exit 1; }
        else
            grep -q ": ok" "$out/$prog.out" || { cat "$out/$prog.out"; echo "FAIL: $prog printed no ok" >&2; exit 1; }
        fi
        n=$((n + 1))
    done
    # libctx.c needs libcrypto (there is none on musl: the swap is a run-time
    # lookup that finds nothing, which misuse/jobs run with).
    echo "ok: $n C programs passed on $target against the musl static library (libctx.c needs libcrypto: not run)"
    C_COUNT=$n
}

for t in $TARGETS; do
    echo "==== $t: cargo test -p stackjob -p stackjob-openssl"
    t0=$SECONDS
    envs=()
    cc=(musl-gcc)
    if [[ $t == aarch64* ]]; then
        envs=(CARGO_TARGET_AARCH64_UNKNOWN_LINUX_MUSL_RUNNER=qemu-aarch64
            CARGO_TARGET_AARCH64_UNKNOWN_LINUX_MUSL_LINKER=aarch64-linux-gnu-gcc)
        cc=(aarch64-linux-gnu-gcc -specs="$ARM_SPECS")
    fi
    log=$TMP/$t.log
    if ! env "${envs[@]}" cargo test --target "$t" -p stackjob -p stackjob-openssl >"$log" 2>&1; then
        grep -E "^test .*FAILED|panicked|^error" "$log" | head -40
        tail -20 "$log"
        echo "FAIL: cargo test on $t" >&2
        exit 1
    fi
    tests=$(count_tests "$log")
    [ "${tests:-0}" -gt 0 ] || { echo "FAIL: no test ran on $t" >&2; exit 1; }
    echo "ok: $tests Rust tests passed on $t"
    env "${envs[@]}" cargo build --release --target "$t" -p stackjob-openssl >"$TMP/$t.build.log" 2>&1 ||
        { cat "$TMP/$t.build.log"; exit 1; }
    c_suite "$t" "${cc[@]}"
    SUMMARY+=("$(printf '%-28s %5s Rust tests, %2s C programs, %4ds' "$t" "$tests" "$C_COUNT" $((SECONDS - t0)))")
done
printf '==== musl summary\n'
printf '%s\n' "${SUMMARY[@]}"
