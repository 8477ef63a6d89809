#!/usr/bin/env bash
# tools/ci-aarch64.sh - cross-build weft for aarch64 and run its plain-main
# programs (the stress programs and the examples, ctest label "stress")
# under qemu-aarch64. Used by .ci/run; runs on its own too.
#
#  1. installs gcc-aarch64-linux-gnu and qemu-user if missing (as root:
#     apt-get update + apt-get install -y);
#  2. unpacks the arm64 libck-dev into build-aarch64/sysroot. It is never
#     installed: libck-dev is not multi-arch co-installable, and installing
#     libck-dev:arm64 would remove the amd64 one the native build needs. So:
#     dpkg --add-architecture arm64 (if not yet), apt-get download, dpkg -x;
#  3. configures build-aarch64 with cmake/aarch64-linux-gnu.cmake (static
#     executables, ctest runs them through qemu-aarch64), without the
#     Criterion unit tests (no arm64 Criterion) or the benchmarks; builds;
#  4. ctest -L stress.
# Idempotent: a second run reuses the toolchain, the sysroot and the build.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

BUILD=build-aarch64
SYSROOT=$PWD/$BUILD/sysroot
CK_LIB=$SYSROOT/usr/lib/aarch64-linux-gnu/libck.a
JOBS=$(nproc)
export DEBIAN_FRONTEND=noninteractive

as_root() {
    if [ "$(id -u)" -ne 0 ]; then
        echo "ci-aarch64.sh: needs root for: $*" >&2
        exit 1
    fi
}

# ---- 1. cross compiler and qemu ---------------------------------------------------

need=()
command -v aarch64-linux-gnu-gcc >/dev/null 2>&1 || need+=(gcc-aarch64-linux-gnu)
command -v qemu-aarch64 >/dev/null 2>&1 || need+=(qemu-user)
if ((${#need[@]})); then
    as_root "apt-get install ${need[*]}"
    echo "ci-aarch64.sh: installing ${need[*]}" >&2
    apt-get update -qq >&2
    apt-get install -y -qq --no-install-recommends "${need[@]}" >&2
fi

# ---- 2. arm64 ck, unpacked into a private sysroot -------------------------------------

if [ ! -f "$CK_LIB" ]; then
    as_root "dpkg --add-architecture arm64; apt-get download libck-dev:arm64"
    updated=0
    if ! dpkg --print-foreign-architectures | grep -qx arm64; then
        echo "ci-aarch64.sh: dpkg --add-architecture arm64" >&2
        dpkg --add-architecture arm64
        apt-get update -qq >&2
        updated=1
    fi
    tmp=$(mktemp -d)
    trap 'rm -rf "$tmp"' EXIT
    # apt-get download fetches as user _apt where it can: let it write here.
    chown _apt "$tmp" 2>/dev/null || true
    # Download only: this never touches the installed packages.
    if ! (cd "$tmp" && apt-get download -qq libck-dev:arm64) >&2; then
        # arm64 was already a foreign architecture but its package lists
        # are missing or stale.
        if ((updated)); then exit 1; fi
        apt-get update -qq >&2
        (cd "$tmp" && apt-get download -qq libck-dev:arm64) >&2
    fi
    rm -rf "$SYSROOT"
    mkdir -p "$SYSROOT"
    dpkg -x "$tmp"/libck-dev_*_arm64.deb "$SYSROOT"
    test -f "$CK_LIB"
fi

# ---- 3. configure and build ----------------------------------------------------------

# pkg-config (cmake/Findck.cmake asks it for hints) must see the arm64 ck.pc,
# never the build machine's .pc files.
export PKG_CONFIG_LIBDIR=$SYSROOT/usr/lib/aarch64-linux-gnu/pkgconfig
export PKG_CONFIG_SYSROOT_DIR=$SYSROOT
cmake -S . -B "$BUILD" \
    -DCMAKE_TOOLCHAIN_FILE="$PWD/cmake/aarch64-linux-gnu.cmake" \
    -DCMAKE_BUILD_TYPE=Release \
    -Dck_INCLUDE_DIR="$SYSROOT/usr/include" \
    -Dck_LIBRARY="$CK_LIB" \
    -DWEFT_BUILD_TESTS=ON -DWEFT_BUILD_UNIT_TESTS=OFF -DWEFT_BUILD_BENCH=OFF
cmake --build "$BUILD" -j"$JOBS"

# ---- 4. the plain-main programs under qemu-aarch64 --------------------------------------

# One at a time: each stress program already uses every core, and qemu
# makes them several times slower.
ctest --test-dir "$BUILD" -L stress --output-on-failure --no-tests=error
