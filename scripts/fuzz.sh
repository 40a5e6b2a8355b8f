#!/usr/bin/env bash
# Fuzzes stackjob's API against a model of its contract with cargo-fuzz /
# libFuzzer: target fuzz/fuzz_targets/api_ops.rs, for SECONDS (default 60).
# Usage: scripts/fuzz.sh [SECONDS]
#
# Needs the nightly toolchain (cargo-fuzz builds with sanitizer and coverage
# flags only nightly has); without it the step is skipped and the script
# exits 0. cargo-fuzz is installed from crates.io if missing. New corpus
# inputs go to fuzz/corpus/api_ops, crashes to fuzz/artifacts/api_ops (both
# untracked); fuzz/seeds holds the committed hand-made inputs. Prints the
# number of executions libFuzzer reports; exits non-zero on a crash.
# Every input in fuzz/regressions (crashes found and fixed) is replayed
# first.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
secs=${1:-60}
case $secs in
'' | *[!0-9]*)
    echo "usage: scripts/fuzz.sh [SECONDS]" >&2
    exit 2
    ;;
esac

if ! command -v cargo >/dev/null 2>&1 && [ -x "$HOME/.cargo/bin/cargo" ]; then
    export PATH="$HOME/.cargo/bin:$PATH"
fi
if ! command -v cargo >/dev/null 2>&1 || ! cargo +nightly --version >/dev/null 2>&1; then
    echo "fuzz: skipped: no nightly Rust toolchain (cargo-fuzz needs nightly for -Zsanitizer and" \
        "coverage instrumentation; 'rustup toolchain install nightly' enables this step)"
    exit 0
fi
if ! cargo +nightly fuzz --version >/dev/null 2>&1; then
    echo "fuzz: installing cargo-fuzz from crates.io"
    cargo install cargo-fuzz --locked
fi

# cargo-fuzz keeps its own build in fuzz/target.
unset CARGO_TARGET_DIR
# AddressSanitizer, heap and globals only: its stack instrumentation reports
# false positives on job stacks (on an unwind, __asan_handle_no_return ignores
# a stack that is not the thread's, so stale redzones stay poisoned; stackjob
# has no fiber-switch annotations). Appended to the flags cargo-fuzz sets.
export RUSTFLAGS="${RUSTFLAGS:-} -Cllvm-args=-asan-stack=0"

echo "fuzz: building fuzz target api_ops"
cargo +nightly fuzz build api_ops

corpus=$root/fuzz/corpus/api_ops
mkdir -p "$corpus" "$root/fuzz/artifacts"
log=$root/fuzz/artifacts/api_ops.log

for input in "$root"/fuzz/regressions/*; do
    case $input in *.md) continue ;; esac
    echo "fuzz: replaying regression $(basename "$input")"
    if ! cargo +nightly fuzz run api_ops "$input" >"$log" 2>&1; then
        echo "fuzz: regression $(basename "$input") crashes again; the end of the log:" >&2
        tail -n 40 "$log" >&2
        exit 1
    fi
done
echo "fuzz: running api_ops for ${secs}s (corpus $corpus, seeds fuzz/seeds, log $log)"
status=0
cargo +nightly fuzz run api_ops "$corpus" "$root/fuzz/seeds" -- \
    -max_total_time="$secs" -timeout=30 -print_final_stats=1 >"$log" 2>&1 || status=$?

execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n1)
if [ -z "$execs" ]; then
    execs=$(sed -n 's/^#\([0-9][0-9]*\)[[:space:]]*DONE.*/\1/p' "$log" | tail -n1)
fi
echo "fuzz: libFuzzer executed ${execs:-an unknown number of} inputs; corpus has $(find "$corpus" -type f | wc -l) inputs"
if [ "$status" -ne 0 ]; then
    echo "fuzz: CRASH (exit status $status); the end of the log:" >&2
    # From the first report line on, without stack frames, cut at 200 lines.
    sed -n '/panicked at\|ERROR: \|deadly signal/,$p' "$log" | grep -v -e '^ *#[0-9]' -e 'NEW_FUNC' | head -n 200 >&2
    exit "$status"
fi
echo "fuzz: no crash"
