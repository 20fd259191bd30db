# `make demo` and `make test` set up .venv themselves (idempotent), then run.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: demo test test-tf test-jax lint clean peers peers-qkeras

# HGQ2 0.2.0 (the peer library of bench/) in its own git-ignored venv; the pins used by every peer benchmark.
# Its import package is also called `hgq`: bench/ runs it on script paths, never with -c/-m from here.
PEERS := .peers/hgq2
HGQ2_PINS := hgq2==0.2.0 tensorflow-cpu==2.21.0 keras==3.15.1 jax==0.10.2 jaxlib==0.10.2 da4ml==0.6.0

peers: $(PEERS)/.installed

$(PEERS)/.installed: Makefile
	$(PYTHON) -m venv $(PEERS)
	$(PEERS)/bin/python -m pip install -q --upgrade pip
	$(PEERS)/bin/python -m pip install -q $(HGQ2_PINS)
	touch $@

# QKeras peers for tests/fixtures/qkeras/make_fixtures.py: Keras 2 (qkeras 0.9.0) and Keras 3 (qkeras-v3).
# Both install as import name `qkeras`, hence two venvs.
QKERAS2_PINS := tensorflow-cpu==2.15.1 qkeras==0.9.0 pyparsing h5py
QKERAS3_PINS := qkeras-v3==1.2.1

peers-qkeras: .peers/qkeras2/.installed .peers/qkeras3/.installed

.peers/qkeras2/.installed: Makefile
	python3.11 -m venv .peers/qkeras2
	nice -n 10 .peers/qkeras2/bin/python -m pip install -q $(QKERAS2_PINS)
	touch $@

.peers/qkeras3/.installed: Makefile
	python3.11 -m venv .peers/qkeras3
	nice -n 10 .peers/qkeras3/bin/python -m pip install -q $(QKERAS3_PINS)
	touch $@

$(STAMP): requirements.txt pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -r requirements.txt
	$(PY) -m pip install -q --no-deps -e .
	touch $(STAMP)

demo: $(STAMP)
	$(PY) -m hgq.demo

# The whole suite on TensorFlow, then the quantizer and layer tests again on JAX.
test: test-tf test-jax

test-tf: $(STAMP)
	KERAS_BACKEND=tensorflow $(PY) -m pytest -q tests

test-jax: $(STAMP)
	KERAS_BACKEND=jax $(PY) -m pytest -q -m "not tensorflow_only" tests/test_fixed_point.py tests/test_quantizer.py tests/test_layers.py tests/test_pwlq_augq.py tests/test_mulaw.py

lint: $(STAMP)
	$(VENV)/bin/ruff check hgq tests bench projects

clean:
	rm -rf $(VENV) .pytest_cache
