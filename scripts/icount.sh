#!/usr/bin/env bash
# Instructions per operation on the hot paths, counted by callgrind:
# (Ir(2N) - Ir(N)) / N, so start-up and one-off costs cancel exactly.
# Each path runs in a default pool and in one with isolate_thread_state(false)
# ("shared": errno and the FP control state are not switched).
# Usage: scripts/icount.sh [N]   (default N = 100000)
set -euo pipefail
cd "$(dirname "$0")/.."
n=${1:-100000}
command -v valgrind >/dev/null || { echo "icount: valgrind is not installed (apt-get install valgrind)" >&2; exit 2; }
bin=$(cargo bench --bench icount --no-run --message-format=json 2>/dev/null \
      | sed -n 's/.*"executable":"\([^"]*icount[^"]*\)".*/\1/p' | tail -n1)
[ -x "$bin" ] || { echo "icount: could not build benches/icount.rs" >&2; exit 2; }
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
ir() { # path iterations [mode] -> total Ir
  valgrind --tool=callgrind --callgrind-out-file="$tmp/out" "$bin" "$@" >/dev/null 2>"$tmp/err" \
    || { cat "$tmp/err" >&2; exit 1; }
  sed -n 's/^summary: *//p' "$tmp/out"
}
printf '%-6s %-8s %12s %12s %10s\n' path pool "Ir(N)" "Ir(2N)" "Ir/op"
for mode in default shared; do
  for path in rt life0 life1; do
    extra=(); [ "$mode" = shared ] && extra=(shared)
    a=$(ir "$path" "$n" "${extra[@]}"); b=$(ir "$path" $((2 * n)) "${extra[@]}")
    printf '%-6s %-8s %12d %12d %10.1f\n' "$path" "$mode" "$a" "$b" "$(echo "($b - $a) / $n" | bc -l)"
  done
done
