#!/usr/bin/env bash
# tools/test.sh - the test command: install what is missing, build `build`
# (Release, tests and benchmarks), run every test with ctest. Exits non-zero
# on any failure. The sanitizer builds are in .ci/run.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

tools/deps.sh
cmake -S . -B build -DCMAKE_BUILD_TYPE=Release -DWEFT_SANITIZE= \
    -DWEFT_BUILD_TESTS=ON -DWEFT_BUILD_BENCH=ON
cmake --build build -j"$(nproc)"
# Each Criterion executable runs its tests one at a time (--jobs 1);
# ctest runs two executables at once.
ctest --test-dir build --output-on-failure --no-tests=error -j2
