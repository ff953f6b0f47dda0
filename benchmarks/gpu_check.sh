#!/usr/bin/env bash
# The device check on an offline GPU machine that has PyTorch (and tokenizers, huggingface_hub, numpy) but none of
# selm's other dependencies. Bring these wheels (17 MB; download them where PyPI is reachable, for the machine's
# Python, e.g. 3.12):
#   pip download --no-deps --only-binary=:all: --python-version 3.12 --platform manylinux_2_28_x86_64 \
#     --platform manylinux2014_x86_64 -d WHEELS transformers==5.23.0 accelerate==1.16.0 pydantic==2.14.4 \
#     pydantic_core==2.50.5 annotated-types==0.8.0 typing-inspection==0.4.5 requests urllib3 idna certifi \
#     charset-normalizer
# then, from the repository root:  bash benchmarks/gpu_check.sh WHEELS
# MLflow, Metaflow, lm-eval and vLLM are not needed (and vLLM is too big to bring): the stages run without them.
set -euo pipefail
wheels=${1:?usage: gpu_check.sh WHEELS_DIR}
work=${GPU_CHECK_DIR:-/tmp/selm-gpu-check}
mkdir -p "$work"
python -m pip install --quiet --no-deps --target "$work/site" "$wheels"/*.whl
export PYTHONPATH="$work/site:$PWD" HF_HUB_OFFLINE=1 SELM_CACHE="${SELM_CACHE:-$work/cache}"
python benchmarks/device_check.py
python benchmarks/stages_without_flows.py   # the tiny world's three rounds through the stages, on the GPU
