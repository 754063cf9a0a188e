#!/bin/sh
# Runs without Morel: builds sum.c for this machine (the same program Morel builds for
# wasm32-wasi) and checks its answers. Usage: tests/check.sh (CC picks the compiler, default cc).
set -eu
cd "$(dirname "$0")/.."
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
${CC:-cc} -std=c11 -Wall -Werror -O2 -o "$out/sum" sum.c -lm

expect() { # INPUT EXPECTED
    got=$(printf '%s' "$1" | "$out/sum")
    if [ "$got" != "$2" ]; then
        echo "FAIL: $1 -> $got (expected $2)" >&2
        exit 1
    fi
}
expect '[1, 2, 3.5]' '{"sum": 6.5, "count": 3}'
expect '[]' '{"sum": 0, "count": 0}'
if printf '%s' '{"not": "an array"}' | "$out/sum" 2>/dev/null; then
    echo "FAIL: bad input was accepted" >&2
    exit 1
fi
echo "ok: sum.c passes 3 checks"
