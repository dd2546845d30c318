#!/usr/bin/env bash
# Build app.py into a wasi:http/proxy@0.2.0 component: ./build.sh [OUT.wasm]
# (default: python-hello.wasm beside this script; about 36 MB, never committed).
#
# Toolchain (../toolchains.sh, installed once into the cache): componentize-py
# 0.17.2 from PyPI. It takes its WIT from a directory; the WASI 0.2.0 packages
# come from the pinned spin-sdk 3.4.1 wheel in the same venv (this app does not
# use the SDK itself).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
out=$(realpath -m "${1:-$here/python-hello.wasm}")
# shellcheck source=../toolchains.sh
source "$here/../toolchains.sh"
bin=$(pyguest_bin)
deps=$(wasi_0_2_0_wit)

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/wit/deps"
cp "$here/wit/world.wit" "$work/wit/"
for pkg in cli clocks filesystem http io random sockets; do cp -r "$deps/$pkg" "$work/wit/deps/"; done
cp "$here/app.py" "$work/"
(cd "$work" && "$bin/componentize-py" -d wit -w python-hello componentize app -o "$work/out.wasm" >&2)
mv "$work/out.wasm" "$out"
echo "$out"
