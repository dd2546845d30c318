#!/usr/bin/env bash
# Build hello.js into a wasi:http/proxy component: ./build.sh [OUT.wasm]
# (default: js-hello.wasm beside this script, not committed: about 14 MB).
#
# Toolchain: npm @bytecodealliance/jco 1.34.0 with its componentize-js 0.22.0,
# installed once into the cache by ../toolchains.sh (npm ci, package-lock.json).
#
# The WIT: componentize-js 0.22's engine (StarlingMonkey) exports
# wasi:http/incoming-handler@0.2.10, and the world given to `jco componentize`
# must name that exact version. jco ships the WASI 0.2.12 WIT
# (lib/wit/builtin/0.2.12); WASI 0.2.x patch releases keep every 0.2 interface
# as it was, so the same text relabelled 0.2.10 is the 0.2.10 WIT. The
# engine's own wasi:sockets/network has the `error` type that 0.2.12 gates
# behind @unstable(network-error-code); the gate is dropped so the two merge.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
out=$(realpath -m "${1:-$here/js-hello.wasm}")
# shellcheck source=../toolchains.sh
source "$here/../toolchains.sh"
jco=$(jco_cli)
builtin=$(dirname "$(dirname "$jco")")/@bytecodealliance/jco/lib/wit/builtin/0.2.12

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/wit/deps"
for pkg in cli clocks filesystem http io random sockets; do
  mkdir -p "$work/wit/deps/$pkg"
  sed -e 's/@0\.2\.12\b/@0.2.10/g' -e '/@unstable(feature = network-error-code)/d' \
    "$builtin/wasi-$pkg/package.wit" >"$work/wit/deps/$pkg/package.wit"
done
printf 'package wasmlet:js-hello;\n\nworld js-hello {\n  include wasi:http/proxy@0.2.10;\n}\n' >"$work/wit/world.wit"

cp "$here/hello.js" "$work/hello.js"
(cd "$work" && "$jco" componentize hello.js --wit wit --world-name js-hello -o "$work/out.wasm" >&2)
mv "$work/out.wasm" "$out"
echo "$out"
