#!/usr/bin/env bash
# Runs every benchmark in sequence (about 8-10 minutes on 2 cores) and keeps the
# output in bench/out/ (gitignored). Usage: bench/run_all.sh [--quick]
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
py=.venv/bin/python
out=bench/out
mkdir -p "$out"
export WASMLET_CACHE_DIR=${WASMLET_CACHE_DIR:-$(mktemp -d -t wasmlet-bench-XXXXXX)}
quick=()
[[ "${1:-}" == "--quick" ]] && quick=(--quick)

{
  echo "# $(date -u +%FT%TZ)  $(git rev-parse --short HEAD)$(git diff --quiet HEAD -- src || echo ' + uncommitted changes in src/')"
  nproc; lscpu | head -20; free -m; uname -r
} | tee "$out/machine.txt"
run() {  # run NAME COMMAND...: print and keep the output
  local name=$1; shift
  echo; echo "== $name: $*"
  "$@" 2>&1 | tee "$out/$name.txt"
}
run inprocess "$py" bench/inprocess.py
run first_response "$py" bench/first_response.py
run throughput "$py" bench/throughput.py "${quick[@]}"
run memory "$py" bench/memory.py
run profile_hot_path "$py" bench/profile_hot_path.py
run profile_server "$py" bench/profile_server.py --server uvicorn
run profile_server_granian "$py" bench/profile_server.py --server granian
