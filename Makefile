# mlvgm: `make run` sets everything up and runs the main job (python -m mlvgm.train, the quickstart, into
# runs/); `make test` runs the test suite; `make views` draws the shapes world's view grid into runs/views/.
# `make results` refreshes the committed results (results/quickstart, results/views): a separate, explicit
# step, so a user's runs never touch tracked files. All install into ./.venv first when needed (system
# packages for ffcv via apt, then pip).

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
APT_PACKAGES := pkg-config libturbojpeg0-dev libopencv-dev
# Scratch space for torch.compile and temporary files, owned by this checkout.
export TORCHINDUCTOR_CACHE_DIR ?= $(CURDIR)/.cache/inductor
export TMPDIR ?= $(CURDIR)/.cache/tmp
# The install is 7.0 GB (torch's CUDA build alone is 5.5 GB), and .ci/run peaked at 8.7 GB with its
# caches. A CI run once ran out of disk (Errno 28) installing .[dev]. pip's cache would also keep a second
# copy of every wheel it downloads (DALI's is 476 MB) that a fresh machine never reads again: keep none.
export PIP_NO_CACHE_DIR ?= 1

.PHONY: setup run views results test bench bench-record lint clean

setup: $(STAMP)

$(STAMP): pyproject.toml
	@mkdir -p $(TORCHINDUCTOR_CACHE_DIR) $(TMPDIR)
	@free=$$(df -BG --output=avail . | tail -1 | tr -dc 0-9); [ "$$free" -ge 10 ] || \
		echo "warning: $${free} GB free on this disk; the install and its caches need about 9 GB (torch's CUDA build, DALI, ffcv)"
	@if ! dpkg -s $(APT_PACKAGES) >/dev/null 2>&1; then \
		echo "installing system packages for ffcv: $(APT_PACKAGES)"; \
		$(SUDO) apt-get update -qq && $(SUDO) apt-get install -y -qq $(APT_PACKAGES); \
	fi
	@$(PYTHON) -c 'import ensurepip' 2>/dev/null || $(SUDO) apt-get install -y -qq python3-venv
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	# torch first, pinned to the CUDA 13 build the loaders match (CPU works with it too).
	$(BIN)/pip install -q torch==2.14.1 torchvision==0.29.1
	$(BIN)/pip install -q -e '.[dev]'
	@touch $(STAMP)

run: $(STAMP)
	@mkdir -p $(TORCHINDUCTOR_CACHE_DIR) $(TMPDIR)
	$(BIN)/python -m mlvgm.train

views: $(STAMP)
	$(BIN)/python -m mlvgm.grid --generator shapes --out runs/views/shapes.png

# The committed quickstart numbers come from a whole run (no time budget), copied into results/quickstart.
results: $(STAMP)
	@mkdir -p $(TORCHINDUCTOR_CACHE_DIR) $(TMPDIR)
	$(BIN)/python -m mlvgm.train --budget_minutes 0 --out runs/quickstart-results-$$(date +%Y%m%d-%H%M%S) \
		--results results/quickstart
	$(BIN)/python -m mlvgm.grid --generator shapes --out results/views/shapes.png

# The history record of this commit (results/bench/history, docs/benchmarks.md): the CI bench subset, the A/B gate
# against the last recorded commit (its verdict is recorded, a regression included), then the trend plot. Run on a
# clean, committed tree before stopping, and commit what it writes.
bench-record: $(STAMP)
	@git diff --quiet HEAD -- || { echo "make bench-record: the tree has uncommitted changes: commit first (a record names a clean commit)"; exit 2; }
	@mkdir -p $(TORCHINDUCTOR_CACHE_DIR) $(TMPDIR) .cache/bench-record
	$(BIN)/python -m pytest bench/bench_sources.py bench/bench_cs_step.py -m ci -q --benchmark-json .cache/bench-record/sources.json
	$(BIN)/python -m bench.track ab --out .cache/bench-record/ab.json || [ $$? -eq 1 ]
	$(BIN)/python -m bench.track record --ab .cache/bench-record/ab.json --bench .cache/bench-record/sources.json
	$(BIN)/python -m bench.track plot

test: $(STAMP)
	@mkdir -p $(TORCHINDUCTOR_CACHE_DIR) $(TMPDIR)
	$(BIN)/python -m pytest

bench: $(STAMP)
	@mkdir -p $(TORCHINDUCTOR_CACHE_DIR) $(TMPDIR) runs/bench
	$(BIN)/python -m pytest bench --benchmark-json runs/bench/latest.json

lint: $(STAMP)
	$(BIN)/ruff check . && $(BIN)/ruff format --check .

clean:
	rm -rf $(VENV) .cache .pytest_cache .ruff_cache .benchmarks *.egg-info
