# aarch64-linux-gnu.cmake - CMake toolchain file: cross-compile weft for
# aarch64 Linux with Debian's gcc-aarch64-linux-gnu, link every executable
# statically, and run them (ctest, add_test) under qemu-aarch64 (qemu-user).
#
#   cmake -S . -B build-aarch64 \
#       -DCMAKE_TOOLCHAIN_FILE=cmake/aarch64-linux-gnu.cmake \
#       -Dck_INCLUDE_DIR=<sysroot>/usr/include \
#       -Dck_LIBRARY=<sysroot>/usr/lib/aarch64-linux-gnu/libck.a \
#       -DWEFT_BUILD_UNIT_TESTS=OFF -DWEFT_BUILD_BENCH=OFF
#
# ck for arm64 is not installed system-wide (Debian's libck-dev is not
# multi-arch co-installable); tools/ci-aarch64.sh unpacks it into a private
# sysroot and passes its header directory and libck.a to cmake/Findck.cmake
# as above. There is no arm64 Criterion, hence WEFT_BUILD_UNIT_TESTS=OFF.

set(CMAKE_SYSTEM_NAME Linux)
set(CMAKE_SYSTEM_PROCESSOR aarch64)

set(CMAKE_C_COMPILER aarch64-linux-gnu-gcc)
set(CMAKE_ASM_COMPILER aarch64-linux-gnu-gcc)

# Static executables: qemu-aarch64 then needs no arm64 dynamic loader or
# libc (-L). libweft is static by default (BUILD_SHARED_LIBS=OFF).
set(CMAKE_EXE_LINKER_FLAGS_INIT "-static")

# ctest runs each test command through this. -L is only consulted by a
# dynamically linked binary (the cross toolchain's libc lives there).
find_program(WEFT_QEMU_AARCH64 NAMES qemu-aarch64 qemu-aarch64-static)
if(WEFT_QEMU_AARCH64)
    set(CMAKE_CROSSCOMPILING_EMULATOR "${WEFT_QEMU_AARCH64};-L;/usr/aarch64-linux-gnu")
endif()

# Look for target libraries and headers only in the cross toolchain's tree
# (never the build machine's /usr/lib/x86_64-linux-gnu); programs come from
# the build machine.
set(CMAKE_FIND_ROOT_PATH /usr/aarch64-linux-gnu)
set(CMAKE_FIND_ROOT_PATH_MODE_PROGRAM NEVER)
set(CMAKE_FIND_ROOT_PATH_MODE_LIBRARY ONLY)
set(CMAKE_FIND_ROOT_PATH_MODE_INCLUDE ONLY)
set(CMAKE_FIND_ROOT_PATH_MODE_PACKAGE ONLY)
