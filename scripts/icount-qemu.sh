#!/usr/bin/env bash
# Instructions per operation on the hot paths for a cross target, counted by
# QEMU user mode: with -singlestep every translation block is one guest
# instruction, and `-d exec,nochain` logs each block executed. As in
# icount.sh, (count(2N) - count(N)) / N cancels start-up costs.
# Reports only (QEMU has no callgrind; the counts are exact but the CI
# ceilings live in icount.sh for x86_64).
# Usage: scripts/icount-qemu.sh TARGET [N]   (e.g. aarch64-unknown-linux-gnu 2000;
# also riscv64gc-, armv7-...-gnueabihf, thumbv7neon-...-gnueabihf, i686- and
# powerpc64le-unknown-linux-gnu)
set -euo pipefail
cd "$(dirname "$0")/.."
target=${1:?usage: scripts/icount-qemu.sh TARGET [N]}
n=${2:-2000}
case "$target" in
    aarch64-*) qemu=qemu-aarch64; sysroot=/usr/aarch64-linux-gnu ;;
    riscv64*) qemu=qemu-riscv64; sysroot=/usr/riscv64-linux-gnu ;;
    armv7-*gnueabihf | thumbv7neon-*gnueabihf) qemu=qemu-arm; sysroot=/usr/arm-linux-gnueabihf ;;
    # i686 runs natively on x86_64, but only QEMU counts guest instructions.
    i686-*) qemu=qemu-i386; sysroot=/usr/i686-linux-gnu ;;
    powerpc64le-*) qemu=qemu-ppc64le; sysroot=/usr/powerpc64le-linux-gnu ;;
    *) echo "icount-qemu: no QEMU mapping for $target" >&2; exit 2 ;;
esac
bin=$(cargo bench -p stackjob-bench --bench icount --no-run --target "$target" --message-format=json 2>/dev/null \
      | sed -n 's/.*"executable":"\([^"]*icount[^"]*\)".*/\1/p' | tail -n1)
[ -x "$bin" ] || { echo "icount-qemu: could not build bench/benches/icount.rs for $target (cargo bench -p stackjob-bench --bench icount --target $target)" >&2; exit 2; }
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
count() { # args... -> instructions executed
    "$qemu" -L "$sysroot" -singlestep -d exec,nochain -D "$tmp/log" "$bin" "$@" >/dev/null
    grep -c '^Trace' "$tmp/log"
}
printf '%-9s %-8s %8s\n' path pool "insn/op"
for mode in default shared; do
    for path in rt life0 life1 raw-rt raw-life0 raw-life1; do
        extra=(); [ "$mode" = shared ] && extra=(shared)
        a=$(count "$path" "$n" "${extra[@]}"); b=$(count "$path" $((2 * n)) "${extra[@]}")
        printf '%-9s %-8s %8d\n' "$path" "$mode" $(((b - a) / n))
    done
done
