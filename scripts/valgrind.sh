#!/usr/bin/env bash
# Runs every test binary under Valgrind's memcheck and fails on any error.
# Usage: scripts/valgrind.sh [extra valgrind options]
#
# Job stacks (and the threads that switch to them) are registered with
# Valgrind by the crate itself (src/sanitizer.rs), so no --max-stackframe
# and no suppressions are needed. Each binary runs with --test-threads=1.
# STACKJOB_UNDER_VALGRIND=1 tells the tests they run under Valgrind, so the
# few checks Valgrind cannot support (its emulated FPU ignores the rounding
# mode in arithmetic and drops DAZ/FZ and x87 precision control) print why
# they are narrowed or skipped. Child processes (tests/overflow.rs,
# tests/example_manpage.rs) run natively: Valgrind does not trace children
# unless --trace-children=yes is given.
# Doc tests are not covered: rustdoc builds and runs them itself.
# With the feature tokio-dev, so the tokio bridge's tests run too.
set -euo pipefail
cd "$(dirname "$0")/.."
# Deliberate panics stay one line each, whatever the caller set (a backtrace
# for each would read as a failure).
export RUST_BACKTRACE=0
command -v valgrind >/dev/null || { echo "valgrind.sh: valgrind is not installed (apt-get install valgrind)" >&2; exit 2; }

# The test executables: artifacts built with the test profile flag.
mapfile -t bins < <(cargo test --features tokio-dev --no-run --message-format=json 2>/dev/null \
    | grep '"profile":{[^}]*"test":true' \
    | sed -n 's/.*"executable":"\([^"]*\)".*/\1/p')
[ "${#bins[@]}" -gt 0 ] || { echo "valgrind.sh: no test executables found (does 'cargo test --no-run' build?)" >&2; exit 2; }

export STACKJOB_UNDER_VALGRIND=1
failed=()
for bin in "${bins[@]}"; do
    printf '\n==== valgrind %s\n' "${bin##*/}"
    if ! valgrind --error-exitcode=1 --quiet "$@" "$bin" --test-threads=1; then
        failed+=("${bin##*/}")
    fi
done

if [ "${#failed[@]}" -gt 0 ]; then
    printf '\nvalgrind.sh: failed under valgrind: %s\n' "${failed[*]}" >&2
    exit 1
fi
printf '\nvalgrind.sh: %d test binaries, no Valgrind errors\n' "${#bins[@]}"
