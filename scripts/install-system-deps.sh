#!/usr/bin/env bash
# Installs the Debian packages wasmlet's tests and tools use, only those missing.
# Idempotent; needs root (or sudo). Package list: the arguments.
set -euo pipefail
missing=()
for package in "$@"; do
  if ! dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$package")
  fi
done
[ ${#missing[@]} -eq 0 ] && exit 0
sudo=""
[ "$(id -u)" -ne 0 ] && sudo="sudo"
echo "installing Debian packages: ${missing[*]}"
$sudo apt-get update -qq
# policy-rc.d 101: packages such as docker-registry must not start system services here;
# the tests start their own instances on loopback.
policy=/usr/sbin/policy-rc.d
created_policy=""
if [ ! -e "$policy" ]; then
  printf '#!/bin/sh\nexit 101\n' | $sudo tee "$policy" >/dev/null && $sudo chmod +x "$policy" && created_policy=1
fi
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}"
[ -n "$created_policy" ] && $sudo rm -f "$policy"
exit 0
