#!/usr/bin/env bash
# Instructions per C-level operation, counted by callgrind, for libcrypto's
# own ASYNC and for libstackjob_openssl.so preloaded under the same program
# (tests/c/bench_switch.c): (Ir(2N) - Ir(N)) / N, so start-up cancels.
#   sf: ASYNC_start_job of a pooled job that returns at once (start+finish)
#   pr: one ASYNC_pause_job + the resuming ASYNC_start_job (a round trip)
# The Rust-level counterparts are scripts/icount.sh's life0 and rt.
# Usage: openssl-abi/icount.sh [N]   (default N = 100000). Informational.
set -euo pipefail
cd "$(dirname "$0")/.."
n=${1:-100000}
command -v valgrind >/dev/null || { echo "icount: needs valgrind" >&2; exit 2; }
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$PWD/target}
cargo build --release -q -p stackjob-openssl
lib=$CARGO_TARGET_DIR/release/libstackjob_openssl.so
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
cc -O2 -o "$tmp/bench" openssl-abi/tests/c/bench_switch.c -lcrypto
ir() { # preload(0/1) mode iterations -> total Ir
  local pre=()
  [ "$1" = 1 ] && pre=(env "LD_PRELOAD=$lib")
  "${pre[@]}" valgrind --tool=callgrind --callgrind-out-file="$tmp/out" "$tmp/bench" "$3" "$2" \
    >/dev/null 2>"$tmp/err" || { cat "$tmp/err" >&2; exit 1; }
  sed -n 's/^summary: *//p' "$tmp/out"
}
printf '%-10s %-4s %12s %12s %8s\n' impl op "Ir(N)" "Ir(2N)" "Ir/op"
for pre in 0 1; do
  name=libcrypto; [ "$pre" = 1 ] && name=stackjob
  for mode in sf pr; do
    a=$(ir "$pre" "$mode" "$n"); b=$(ir "$pre" "$mode" $((2 * n)))
    printf '%-10s %-4s %12d %12d %8.1f\n' "$name" "$mode" "$a" "$b" "$(echo "($b - $a) / $n" | bc -l)"
  done
done
