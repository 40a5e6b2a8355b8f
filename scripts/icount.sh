#!/usr/bin/env bash
# Instructions per operation on the hot paths, counted by callgrind:
# (Ir(2N) - Ir(N)) / N, so start-up and one-off costs cancel exactly.
# The workload (bench/benches/icount.rs) is neutral: the round-trip loop and
# the start -> pause -> resume -> finish loop resume the same result type
# (two call sites), and the bodies are functions of their own.
# Paths: rt (pause + resume round trip), life0 (pooled start -> finish),
# life1 (start -> pause -> resume -> finish), through start/pause (the
# OpenSSL-style API) and through the typed core (raw-*); rt-string and
# rt-big are rt for a job whose result is a String or a 1600-byte array
# (larger than the stack's room for an outcome), to show that the round
# trip does not depend on the result type. "default" is a
# default pool (start/pause) or the Isolated core; "shared" a pool with
# isolate_thread_state(false) or the Shared core (errno and the FP control
# state not switched).
#
# Fails (exit 1) when a path costs more than its ceiling below. The ceilings
# are regression guards, set a few instructions above what this tree
# measures; the "target" column is the goal the project set, printed so
# that nobody mistakes a guard for the goal (the README's performance
# section says where the targets stand).
#
# Usage: scripts/icount.sh [N]   (default N = 100000)
set -euo pipefail
cd "$(dirname "$0")/.."
n=${1:-100000}

#            path      pool     ceiling target
budgets=$(cat <<'TABLE'
             rt        default  83      80
             life0     default  98      110
             life1     default  190     200
             rt        shared   58      55
             life0     shared   82      95
             life1     shared   153     155
             rt-string default  86      -
             rt-string shared   61      -
             rt-big    default  83      -
             rt-big    shared   58      -
             raw-rt    default  71      60
             raw-life0 default  88      75
             raw-life1 default  163     145
             raw-rt    shared   44      30
             raw-life0 shared   67      55
             raw-life1 shared   115     100
TABLE
)

command -v valgrind >/dev/null || { echo "icount: valgrind is not installed (apt-get install valgrind)" >&2; exit 2; }
command -v bc >/dev/null || { echo "icount: bc is not installed (apt-get install bc)" >&2; exit 2; }
bin=$(cargo bench -p stackjob-bench --bench icount --no-run --message-format=json 2>/dev/null \
      | sed -n 's/.*"executable":"\([^"]*icount[^"]*\)".*/\1/p' | tail -n1)
[ -x "$bin" ] || { echo "icount: could not build bench/benches/icount.rs (cargo bench -p stackjob-bench --bench icount)" >&2; exit 2; }
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
ir() { # path iterations [mode] -> total Ir
  valgrind --tool=callgrind --callgrind-out-file="$tmp/out" "$bin" "$@" >/dev/null 2>"$tmp/err" \
    || { cat "$tmp/err" >&2; exit 1; }
  sed -n 's/^summary: *//p' "$tmp/out"
}

fail=0
printf '%-9s %-8s %12s %12s %8s %8s %8s  %s\n' path pool "Ir(N)" "Ir(2N)" "Ir/op" ceiling target verdict
while read -r path mode ceiling target; do
  [ -n "$path" ] || continue
  extra=(); [ "$mode" = shared ] && extra=(shared)
  a=$(ir "$path" "$n" "${extra[@]}"); b=$(ir "$path" $((2 * n)) "${extra[@]}")
  per=$(echo "($b - $a) / $n" | bc -l)
  verdict=ok
  if [ "$(echo "$per > $ceiling" | bc -l)" = 1 ]; then verdict="OVER CEILING"; fail=1; fi
  if [ "$target" != - ] && [ "$(echo "$per > $target" | bc -l)" = 1 ]; then verdict="$verdict (target not met)"; fi
  printf '%-9s %-8s %12d %12d %8.1f %8s %8s  %s\n' "$path" "$mode" "$a" "$b" "$per" "$ceiling" "$target" "$verdict"
done <<< "$budgets"
if [ "$fail" = 1 ]; then
  echo "icount: a hot path got more expensive than its ceiling (see above)" >&2
  exit 1
fi
