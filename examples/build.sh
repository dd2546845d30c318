#!/usr/bin/env bash
# Builds every guest module from source: the examples, the test guests and the
# `wasmlet new` templates.
# C with Debian's clang + lld + wasi-libc (apt-get install clang lld wasi-libc
# libclang-rt-dev-wasm32; examples/resizer also needs libstb-dev); WAT with
# wasmtime-py's wat2wasm. The .wasm files are committed, so this is needed only
# after changing a source.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
python=${PYTHON:-$root/.venv/bin/python}
cc=${WASI_CC:-clang}
cflags=(--target=wasm32-wasi --sysroot=/usr -O2 -Wl,--strip-all)

for src in "$root"/examples/*/*.c "$root"/tests/guests/*.c "$root"/src/wasmlet/templates/*/*.c; do
  out="${src%.c}.wasm"
  extra=()  # a NAME.cflags beside NAME.c adds flags (examples/resizer: -O3 -msimd128, stb headers)
  [ -f "${src%.c}.cflags" ] && read -r -a extra <<<"$(grep -v '^#' "${src%.c}.cflags" | tr '\n' ' ')"
  "$cc" "${cflags[@]}" "${extra[@]}" "$src" -o "$out"
  echo "built ${out#"$root"/}"
done
for src in "$root"/tests/guests/*.wat; do
  out="${src%.wat}.wasm"
  "$python" -c 'import sys, wasmtime; open(sys.argv[2], "wb").write(wasmtime.wat2wasm(open(sys.argv[1]).read()))' "$src" "$out"
  echo "built ${out#"$root"/}"
done
