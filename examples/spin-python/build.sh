#!/usr/bin/env bash
# Build app.py with the Spin Python SDK: ./build.sh [OUT.wasm]
# (default: spin-python.wasm beside this script; about 37 MB, never committed).
#
# Toolchain (../toolchains.sh, installed once into the cache): componentize-py
# 0.17.2 + spin-sdk 3.4.1 from PyPI, the pair spin-sdk's README names. The world
# is spin-sdk's `spin-http` (fermyon:spin@2.0.0): it exports
# wasi:http/incoming-handler@0.2.0 and imports, of Spin's platform, only what
# the app calls (fermyon:spin/variables@2.0.0, fermyon:spin/key-value@2.0.0).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
out=$(realpath -m "${1:-$here/spin-python.wasm}")
# shellcheck source=../toolchains.sh
source "$here/../toolchains.sh"
bin=$(pyguest_bin)

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cp "$here/app.py" "$work/"
# componentize-py finds spin-sdk's WIT (and where its bindings go) through the
# componentize-py.toml in spin-sdk's package, looking in the site-packages of
# the `python` on PATH: so run it as in the activated venv.
(cd "$work" && VIRTUAL_ENV="$(dirname "$bin")" PATH="$bin:$PATH" \
  "$bin/componentize-py" -w spin-http componentize app -o "$work/out.wasm" >&2)
mv "$work/out.wasm" "$out"
echo "$out"
