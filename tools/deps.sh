#!/usr/bin/env bash
# tools/deps.sh - install the Debian packages weft needs to build and test,
# if any are missing: a C toolchain, make, cmake, pkg-config, Concurrency Kit
# (libck-dev), Criterion (libcriterion-dev) and wrk (the W11 load generator
# of tools/bench.sh).
#
# Silent when everything is present; otherwise, as root, runs apt-get update
# and apt-get install -y --no-install-recommends for the missing packages.
# Idempotent. The checks are functional (commands and pkg-config modules), so
# on a non-Debian machine that already has everything it also does nothing.
set -euo pipefail

need=()
add() {
    local p
    for p in "${need[@]}"; do [ "$p" = "$1" ] && return 0; done
    need+=("$1")
}

command -v cc >/dev/null 2>&1 || add build-essential
command -v make >/dev/null 2>&1 || add build-essential
command -v cmake >/dev/null 2>&1 || add cmake
if command -v pkg-config >/dev/null 2>&1; then
    pkg-config --exists ck || add libck-dev
    pkg-config --exists criterion || add libcriterion-dev
else
    add pkg-config
    add libck-dev
    add libcriterion-dev
fi

command -v wrk >/dev/null 2>&1 || add wrk

((${#need[@]})) || exit 0

if [ "$(id -u)" -ne 0 ]; then
    echo "deps.sh: missing packages: ${need[*]}; install them as root:" >&2
    echo "  apt-get install --no-install-recommends ${need[*]}" >&2
    exit 1
fi
echo "deps.sh: installing ${need[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq >&2
apt-get install -y -qq --no-install-recommends "${need[@]}" >&2
