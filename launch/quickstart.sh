#!/usr/bin/env bash
# The quick start: install, build, prepare the default corpus (Jane Austen, SentencePiece 4096) and train the tiny
# preset on it. On 2 CPU cores: setup ~2-5 min on a fresh machine, build ~2 min, data ~1 min, training a few minutes.
#
# Napkin math (tiny preset): ~1.6 M parameters, 6 * 1.6e6 + attention ~ 1e7 FLOP per token; 300 steps of
# 16 x 128 tokens = 614 K tokens ~ 6e12 FLOP: minutes on a laptop-class CPU, seconds on a GPU.
set -euo pipefail
cd "$(dirname "$0")/.."
bash launch/setup.sh
bash launch/build.sh
./build/dytrain data prepare configs/data/austen.yaml
./build/dytrain train configs/train/tiny.yaml --run-dir "runs/quickstart-$(date +%Y%m%d-%H%M%S)" "$@"
