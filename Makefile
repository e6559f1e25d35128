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

# BENCHMARKS.md's CPU tables: ConvNeXt-T, 224, batch 8, float32, on each backend, JSON in benchmark-results/.
bench: $(STAMP)
	for backend in tensorflow jax torch; do \
		KERAS_BACKEND=$$backend $(VENV)/bin/keras-convnext bench --json benchmark-results/cpu-$$backend.json || exit 1; \
	done

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
	rm -rf $(VENV) demo-output
