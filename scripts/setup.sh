#!/usr/bin/env bash
# Idempotent set-up on Debian 12: install every build/run dependency, configure and build the release preset.
set -euo pipefail
cd "$(dirname "$0")/.."

PKGS=(build-essential cmake pkg-config git clang clang-format libclang-rt-14-dev
      libgtest-dev libgmock-dev libbenchmark-dev
      libopenblas-openmp-dev libhwy-dev nlohmann-json3-dev libpcre2-dev
      libsentencepiece-dev libcli11-dev libfmt-dev libtomlplusplus-dev libsqlite3-dev
      libpng-dev chromium fonts-dejavu-core)
missing=()
for p in "${PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  echo "setup: installing ${missing[*]}"
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO=sudo
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

cmake --preset release >/dev/null
cmake --build --preset release -j"$(nproc)"
