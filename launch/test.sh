#!/usr/bin/env bash
# The whole test suite: setup (idempotent), build, ctest. GPU tests skip with a message when no GPU is present.
set -euo pipefail
cd "$(dirname "$0")/.."
bash launch/setup.sh
bash launch/build.sh
ctest --test-dir build --output-on-failure -j "$(nproc)"
