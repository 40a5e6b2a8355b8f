#!/usr/bin/env bash
# Checks that the scripts keep a log file intact when their output is
# redirected to it, as CI runs them (`scripts/test-all.sh > log 2>&1`).
#
#   scripts/check-log.sh               lint every shell script of the repo and
#                                      self-test the run check below (< 1 s)
#   scripts/check-log.sh CMD [ARGS...] run CMD with stdout and stderr
#                                      redirected to one file, as CI does, and
#                                      check the line written there before it
#                                      survives; prints the log afterwards
#
# The bug this catches: a command that opens /dev/stdout, /dev/stderr,
# /dev/fd/N or /proc/self/fd/N by name (`tee /dev/stderr`, `> /dev/stdout`)
# opens the log file anew, with O_TRUNC: everything written before is lost,
# and the original descriptor's later writes leave a hole of NUL bytes. On a
# terminal or a pipe nothing shows. Write to the descriptor instead (`>&2`),
# or keep the text in a variable and print it.
#
# scripts/test-all.sh runs the lint as its first step and, when its output
# is a regular file, checks after every step that its first line is still
# there. Exits non-zero on a finding.
set -euo pipefail
cd "$(dirname "$0")/.."

# Opening one of these by name (for writing: tee, or a redirection) is the bug.
BY_NAME='(/dev/(stdout|stderr|fd/[0-9])|/proc/(self|\$\$|\$BASHPID)/fd/[0-9])'
WRITES="(\\btee\\b[^|;&]*|>>?\\|? *)$BY_NAME"

lint() {
    local f found=0 files=()
    while IFS= read -r f; do
        [ -f "$f" ] || continue
        case $f in
        *.sh) files+=("$f") ;;
        *) head -n1 "$f" | grep -qE '^#!.*\b(ba|da)?sh\b' && files+=("$f") ;;
        esac
    done < <(git ls-files --cached --others --exclude-standard -- scripts .ci openssl-abi fuzz '*.sh')
    # Comment lines are left out; a line ending in `# log-ok` is allowed.
    for f in "${files[@]}"; do
        if grep -nE "$WRITES" "$f" | grep -vE '^[0-9]+: *#' | grep -vE '# log-ok$' | sed "s|^|$f:|" | grep .; then
            found=1
        fi
    done
    if [ "$found" -ne 0 ]; then
        echo "check-log: the lines above open a standard stream by name: when the output is redirected to a" \
            "file (as in CI) that reopens it with O_TRUNC and wipes the log; write to the descriptor (>&2)" \
            "or print from a variable instead" >&2
        return 1
    fi
    echo "check-log: lint: ${#files[@]} shell scripts, none opens a standard stream by name"
}

# run_logged LOG CMD...: `{ echo MARKER; CMD; } > LOG 2>&1`, the plumbing
# of CI; returns CMD's status, or 100 if the marker is gone or the log holds
# NUL bytes (the hole a truncation leaves).
run_logged() {
    local log=$1 status=0
    shift
    local mark="==== check-log: marker written before: $* ($$ $RANDOM)"
    { echo "$mark"; "$@" || status=$?; } >"$log" 2>&1
    if ! head -n1 "$log" | grep -qxF -- "$mark"; then
        echo "check-log: $* wiped the log it writes to: the line written before it is gone" >&2
        return 100
    fi
    if [ "$(tr -d '\000' <"$log" | wc -c)" -ne "$(wc -c <"$log")" ]; then
        echo "check-log: the log of $* has NUL bytes: something truncated it while it was written" >&2
        return 100
    fi
    return "$status"
}

self_test() {
    local tmp status
    tmp=$(mktemp -d)
    trap 'rm -rf "$tmp"' RETURN
    # The old plumbing of test-openssl-abi.sh's symbol check must be caught;
    # the path is built at run time so that the lint does not see it.
    local dev=/dev
    status=0
    run_logged "$tmp/bad.log" bash -c "echo before; printf '  3 X\n' | sort | tee $dev/stderr | grep -q X; echo after" 2>/dev/null ||
        status=$?
    if [ "$status" -ne 100 ]; then
        echo "check-log: self-test: a command piping through tee $dev/stderr was not caught (status $status)" >&2
        return 1
    fi
    # ... and the fixed plumbing must pass.
    run_logged "$tmp/good.log" bash -c "echo before; v=\$(printf '  3 X\n' | sort); printf '%s\n' \"\$v\"; echo after" 2>/dev/null || {
        echo "check-log: self-test: printing from a variable was flagged:" >&2
        cat "$tmp/good.log" >&2
        return 1
    }
    grep -qx after "$tmp/good.log"
    echo "check-log: self-test: a tee $dev/stderr into a redirected log is caught, >&2 and variables pass"
}

if [ $# -eq 0 ]; then
    lint
    self_test
    exit 0
fi

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
status=0
run_logged "$tmp/log" "$@" || status=$?
cat "$tmp/log"
if [ "$status" -eq 100 ]; then
    echo "check-log: FAIL: $* does not keep a redirected log intact" >&2
fi
exit "$status"
