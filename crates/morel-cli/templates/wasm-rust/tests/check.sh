#!/bin/sh
# Runs without Morel: builds fib.rs's unit tests for this machine with rustc (RUSTC picks it,
# default rustc) and runs them. Usage: tests/check.sh
set -eu
cd "$(dirname "$0")/.."
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
${RUSTC:-rustc} --edition 2021 --test -o "$out/fib-tests" fib.rs
"$out/fib-tests"
