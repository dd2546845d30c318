#!/bin/sh
# Rebuilds app.wasm from app.c with clang for wasm32-wasi and wasi-libc
# (Debian: apt-get install clang lld wasi-libc libclang-rt-dev-wasm32).
# wasmlet serve --watch app.yaml redeploys when app.wasm changes.
set -eu
cd "$(dirname "$0")"
"${WASI_CC:-clang}" --target=wasm32-wasi --sysroot="${WASI_SYSROOT:-/usr}" -O2 -Wl,--strip-all app.c -o app.wasm
echo "built $(pwd)/app.wasm"
