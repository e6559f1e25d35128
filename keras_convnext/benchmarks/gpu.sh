#!/bin/sh
# BENCHMARKS.md's GPU table in one command: ConvNeXt-T, 224x224, mixed bfloat16, batch 256, this package compiled
# (torch.compile on the torch backend, XLA on JAX) against timm eager and timm torch.compile, alternating rounds.
# Needs a Python with keras, torch (CUDA), timm and jax; TensorFlow is not needed.
#   sh keras_convnext/benchmarks/gpu.sh [RESULTS_DIR] [PYTHON]      (make bench-gpu)
set -eu
results=${1:-benchmark-results}
python=${2:-python3}
mkdir -p "$results"
gpu=$(nvidia-smi --query-gpu=name --format=csv,noheader | head -1 | tr 'A-Z ' 'a-z-' | sed 's/^nvidia-//')
for backend in torch jax; do
    # JAX would otherwise take 75% of the GPU's memory up front, leaving torch's baselines too little.
    KERAS_BACKEND=$backend XLA_PYTHON_CLIENT_PREALLOCATE=false PYTHONUNBUFFERED=1 "$python" -m keras_convnext bench \
        --variant convnext_tiny --image-size 224 --dtype bfloat16 --batch-size 256 --rounds 5 --warmup 3 \
        --jit-compile on --baselines torch_eager torch_compile \
        --json "$results/$gpu-$backend-bf16-b256-compiled.json"
done
