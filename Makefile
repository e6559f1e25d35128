# The two commands of the README. Both create .venv on first use and install the package with every backend.
PYTHON ?= python3
VENV := .venv
STAMP := $(VENV)/.installed

.PHONY: demo test test-all bench bench-gpu install clean

demo: $(STAMP)
	$(VENV)/bin/keras-convnext demo

# The fast tier on all three backends (minutes); test-all adds the tests marked large (what CI runs).
test: $(STAMP)
	$(VENV)/bin/python tests/run_all_backends.py

test-all: $(STAMP)
	$(VENV)/bin/python tests/run_all_backends.py -- --run-large

# BENCHMARKS.md's CPU tables: ConvNeXt-T, 224, batch 8, float32, on each backend against timm itself, JSON in
# benchmark-results/. timm needs torchvision, which does not import beside the package's pinned CPU torch, so the
# benchmarks run from their own virtualenv (torch 2.14.1 from the registry); CI never builds it.
BENCH_VENV := .bench-venv
BENCH_STAMP := $(BENCH_VENV)/.installed
BENCH_TORCH := torch==2.14.1 torchvision==0.29.1 timm==1.0.31

bench: $(BENCH_STAMP)
	$(BENCH_VENV)/bin/python -m keras_convnext.benchmarks.matmul_peak --json benchmark-results/cpu-matmul-peak.json
	for backend in tensorflow jax torch; do \
		KERAS_BACKEND=$$backend $(BENCH_VENV)/bin/keras-convnext bench --baselines keras_applications torch_eager \
			--json benchmark-results/cpu-$$backend.json || exit 1; \
	done

$(BENCH_STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(BENCH_VENV)
	$(BENCH_VENV)/bin/pip install --quiet --upgrade pip
	grep -v '^torch==' constraints.txt > $(BENCH_VENV)/constraints.txt
	$(BENCH_VENV)/bin/pip install --quiet --constraint $(BENCH_VENV)/constraints.txt $(BENCH_TORCH) --editable ".[test,openvino]"
	# The registry's torch is a CUDA build that brings Triton, whose import segfaults in a process that has loaded
	# TensorFlow or JAX; the CPU benchmarks never use it.
	$(BENCH_VENV)/bin/pip uninstall --quiet --yes triton
	touch $@

# BENCHMARKS.md's GPU checks (a CUDA machine with keras, torch, timm and jax): one weight file on GPU vs CPU, then
# the compiled throughput table (bf16, batch 256).
GPU_PYTHON ?= python3
bench-gpu:
	sh keras_convnext/benchmarks/gpu.sh benchmark-results $(GPU_PYTHON)

install: $(STAMP)

$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --upgrade pip
	$(VENV)/bin/pip install --quiet --constraint constraints.txt --editable ".[test]"
	touch $(STAMP)

clean:
	rm -rf $(VENV) $(BENCH_VENV) demo-output
