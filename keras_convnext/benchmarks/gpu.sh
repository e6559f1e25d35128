#!/bin/sh
# BENCHMARKS.md's GPU checks in one command, on a CUDA machine with keras, torch (CUDA), timm and jax (no TensorFlow):
# 1. one .weights.h5 under torch and JAX on the GPU against the CPU's float32 logits (gpu_weight_parity);
# 2. throughput: ConvNeXt-T, 224x224, mixed bfloat16, batch 256, this package compiled (torch.compile on the torch
#    backend, XLA on JAX) against timm eager and timm torch.compile, alternating rounds.
# 3. sweep: under JAX, every candidate (Keras' predict and train steps, compile_for_inference folded and not, the
#    shift-and-add depthwise conv, one XLA option at a time) and then the torch backend's compiled model, each
#    process timing them against timm eager and torch.compile alternately, then printing the top kernels
#    (gpu_sweep.py; compiling stops after SWEEP_BUDGET seconds per backend, 240 by default; SWEEP_BACKENDS=jax for
#    one). On the H200, 270 s compiled the 10 inference candidates (150 s) and none of the training ones past the
#    defaults: give the JAX sweep 500 s to measure them all, a lease of its own.
# 4. (named only) jax_depthwise: the JAX row again with the depthwise conv as 49 shifted multiply-adds and JAX's own
#    gradient (KERAS_CONVNEXT_FAST_PATHS=depthwise=shift_and_add_autodiff) instead of XLA's grouped convolution.
#   sh keras_convnext/benchmarks/gpu.sh [RESULTS_DIR] [PYTHON] [parity|throughput|sweep|jax_depthwise ...]  (make bench-gpu)
set -eu
results=${1:-benchmark-results}
python=${2:-python3}
shift $(( $# < 2 ? $# : 2 ))
parts=${*:-parity throughput}
mkdir -p "$results"
results=$(cd "$results" && pwd)
# Where the package is not installed (the lent GPU machine has no registry), assemble its import layout, as
# pyproject's package-dir maps it (applications/ and weights/ inside keras_convnext/), in a temporary folder, and run
# from there: ``python -m`` looks in the working directory first.
if ! "$python" -c "import keras_convnext.weights" >/dev/null 2>&1; then
    source_root=$(cd "$(dirname "$0")/../.." && pwd)
    staging=$(mktemp -d)
    cp -r "$source_root/keras_convnext" "$staging/"
    cp -r "$source_root/applications" "$staging/keras_convnext/applications"
    cp -r "$source_root/weights" "$staging/keras_convnext/weights"
    export PYTHONPATH="$staging${PYTHONPATH:+:$PYTHONPATH}"
    cd "$staging"
fi
gpu=$(nvidia-smi --query-gpu=name --format=csv,noheader | head -1 | tr 'A-Z ' 'a-z-' | sed 's/^nvidia-//')
status=0
for part in $parts; do
    case $part in
    parity)
        # Exits 1 when a figure is out of tolerance; the throughput part still runs.
        # PARITY_ARGS (say "--variant convnext_atto --image-size 64") makes it shorter.
        KERAS_BACKEND=torch PYTHONUNBUFFERED=1 "$python" -m keras_convnext.benchmarks.gpu_weight_parity \
            "$results/$gpu-weight-parity.json" ${PARITY_ARGS:-} || status=1
        ;;
    throughput)
        for backend in torch jax; do
            # JAX would otherwise take 75% of the GPU's memory up front, leaving torch's baselines too little.
            KERAS_BACKEND=$backend XLA_PYTHON_CLIENT_PREALLOCATE=false PYTHONUNBUFFERED=1 "$python" -m keras_convnext bench \
                --variant convnext_tiny --image-size 224 --dtype bfloat16 --batch-size 256 --rounds 5 --warmup 3 \
                --jit-compile on --baselines torch_eager torch_compile \
                --json "$results/$gpu-$backend-bf16-b256-compiled.json"
        done
        ;;
    sweep)
        budget=${SWEEP_BUDGET:-240}
        for backend in ${SWEEP_BACKENDS:-jax torch}; do
            # A hard stop past the budget (its last compile, the timed rounds, the profile): the JSON is written
            # after each mode, so a stopped run keeps what it measured.
            KERAS_BACKEND=$backend XLA_PYTHON_CLIENT_PREALLOCATE=false PYTHONUNBUFFERED=1 \
                timeout $((budget + 120)) "$python" -m keras_convnext.benchmarks.gpu_sweep \
                "$results/$gpu-$backend-sweep.json" --budget-seconds "$budget" || status=1
        done
        ;;
    jax_depthwise)
        KERAS_BACKEND=jax KERAS_CONVNEXT_FAST_PATHS=depthwise=shift_and_add_autodiff XLA_PYTHON_CLIENT_PREALLOCATE=false \
            PYTHONUNBUFFERED=1 "$python" -m keras_convnext bench \
            --variant convnext_tiny --image-size 224 --dtype bfloat16 --batch-size 256 --rounds 5 --warmup 3 \
            --jit-compile on --baselines torch_compile \
            --json "$results/$gpu-jax-bf16-b256-compiled-shift-and-add.json"
        ;;
    *)
        echo "gpu.sh: unknown part '$part'; expected parity, throughput, sweep or jax_depthwise" >&2
        exit 2
        ;;
    esac
done
exit $status
