#!/usr/bin/env bash
# The GPU check (benchmarks/gpu_check.py) on an offline GPU machine that has PyTorch (and tokenizers,
# huggingface_hub, numpy, pyarrow, pandas) but none of selm's other dependencies. Bring, from a machine with PyPI and
# selm installed:
#   WHEELS (18 MB; for the GPU machine's Python, e.g. 3.12):
#     pip download --no-deps --only-binary=:all: --python-version 3.12 --platform manylinux_2_28_x86_64 \
#       --platform manylinux2014_x86_64 -d WHEELS transformers==5.23.0 accelerate==1.16.0 pydantic==2.14.4 \
#       pydantic_core==2.50.5 annotated-types==0.8.0 typing-inspection==0.4.5 requests urllib3 idna certifi \
#       charset-normalizer trl==1.16.0 datasets==5.2.0 dill==0.4.1 multiprocess==0.70.19 fsspec==2026.9.0
#   SKELETON (3 MB: SmolLM2-135M's config, tokenizer and chat template, no weights):
#     python benchmarks/gpu_check.py --make-skeleton SKELETON
# then, from the repository root:  bash benchmarks/gpu_check.sh WHEELS SKELETON   (≈ 8 minutes; gpu_check.json)
# MLflow, Metaflow, lm-eval and vLLM are not needed (and vLLM is too big to bring): the stages run without them.
set -euo pipefail
wheels=${1:?usage: gpu_check.sh WHEELS_DIR SKELETON_DIR}
model=${2:?usage: gpu_check.sh WHEELS_DIR SKELETON_DIR}
work=${GPU_CHECK_DIR:-/tmp/selm-gpu-check}
mkdir -p "$work"
python -m pip install --quiet --no-deps --target "$work/site" "$wheels"/*.whl
export PYTHONPATH="$work/site:$PWD" HF_HUB_OFFLINE=1 SELM_CACHE="${SELM_CACHE:-$work/cache}"
python benchmarks/gpu_check.py --model "$model" --out "${GPU_CHECK_OUT:-gpu_check.json}"
