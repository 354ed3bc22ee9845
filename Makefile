# procedge — every command a new user needs. Python 3.11+, Debian/Ubuntu.
SHELL := /bin/bash
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
export PROCEDGE_DATA ?= $(abspath ../shared/data)
export TF_CPP_MIN_LOG_LEVEL := 3

.PHONY: help setup mosquitto demo test train convert lint proto edge-install-check bench eval clean

help:
	@echo "make demo     - train, convert, run the edge daemon on a simulated fault (few minutes)"
	@echo "make test     - the test suite (real Mosquitto, real training, real LiteRT)"
	@echo "make train    - train the models in configs/ into artifacts/runs"
	@echo "make convert  - convert artifacts/runs/* into verified bundles in artifacts/bundles"
	@echo "make bench    - benchmarks under bench/ (tables on stdout, JSON in bench/results)"
	@echo "make eval     - ETTh1, SKAB, TEP and magnetic-tile evaluations from \$$PROCEDGE_DATA"
	@echo "make lint     - ruff"
	@echo "make proto    - regenerate edge_runtime/sparkplug/sparkplug_b_pb2.py from its .proto"
	@echo "make edge-install-check - install procedge[edge] in a fresh venv (needs PyPI), import it"

# constraints.txt: the exact versions the tests ran with (pyproject.toml holds the ranges).
$(STAMP): pyproject.toml constraints.txt
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -c constraints.txt -e ".[train,dev]"
	touch $(STAMP)

setup: $(STAMP)

# Mosquitto via apt where absent and we are root; otherwise say how.
mosquitto:
	@if command -v mosquitto >/dev/null || [ -x /usr/sbin/mosquitto ]; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	  echo "installing mosquitto (apt)"; \
	  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq mosquitto) >/dev/null; \
	else echo "NOTE: mosquitto not installed and not root: sudo apt-get install -y mosquitto"; fi

demo: setup mosquitto
	$(BIN)/python -m procedge demo

test: setup mosquitto
	$(BIN)/python -m pytest -q -n 2 --dist loadfile

train: setup artifacts/reactor_batches.csv
	@for c in configs/*.yaml; do $(BIN)/python -m procedge train $$c --output-dir artifacts/runs || exit 1; done

artifacts/reactor_batches.csv: | setup
	$(BIN)/python -m procedge simulate --batches 300 --seed 1 --out $@

convert: setup
	$(BIN)/python -m procedge convert artifacts/runs/* --out artifacts/bundles

lint: setup
	$(BIN)/ruff check .

# The Sparkplug B classes, committed so that a gateway needs no compiler; protoc from
# grpcio-tools (dev extra). Its "Protobuf Python Version" is the oldest protobuf runtime the
# file accepts: keep pyproject's protobuf range at or above it (tests/test_packaging.py).
proto: setup
	$(BIN)/python -m grpc_tools.protoc -I. --python_out=. edge_runtime/sparkplug/sparkplug_b.proto

# What a gateway gets: procedge[edge] alone, with the tested versions, in a throwaway venv.
EDGE_VENV ?= $(or $(TMPDIR),/tmp)/procedge-edge-venv
edge-install-check:
	rm -rf $(EDGE_VENV) && $(PY) -m venv $(EDGE_VENV)
	$(EDGE_VENV)/bin/pip install -q -c constraints.txt ".[edge]"
	cd $(EDGE_VENV) && bin/python -c "import importlib.util as u, edge_runtime.daemon, \
	  edge_runtime.sparkplug.codec; assert not u.find_spec('grpc') and not u.find_spec('grpc_tools'); \
	  print('procedge[edge] OK, no grpc')"
	$(EDGE_VENV)/bin/procedge run --help >/dev/null

# DAEMON_BENCH_ARGS="--total 200000" for a shorter daemon run (default: 1M messages).
# CONVERT_BENCH_ARGS="--families dense_ae,tcn --profiles tep,etth1" for a shorter convert run
# (all families at evaluation sizes: ~1 h on a busy 2-core machine).
bench: setup mosquitto
	$(BIN)/python bench/bench_convert.py $(CONVERT_BENCH_ARGS)
	$(BIN)/python bench/bench_daemon.py $(DAEMON_BENCH_ARGS)
	$(BIN)/python bench/bench_relay_floor.py

# Published protocols on the real data sets (minutes to tens of minutes on 2 cores).
eval: setup
	$(BIN)/python -m procedge eval ett --model dlinear --json artifacts/eval/etth1_dlinear.json
	$(BIN)/python -m procedge eval skab --root $(PROCEDGE_DATA)/skab --json artifacts/eval/skab.json
	$(BIN)/python -m procedge eval tep --root $(PROCEDGE_DATA)/tep --json artifacts/eval/tep.json
	$(BIN)/python -m procedge eval tep-softsensor --root $(PROCEDGE_DATA)/tep --json artifacts/eval/tep_softsensor.json
	$(BIN)/python -m procedge eval images --root $(PROCEDGE_DATA)/magnetic_tile --json artifacts/eval/images.json
	$(BIN)/python -m procedge eval generative --root $(PROCEDGE_DATA)/tep --json artifacts/eval/generative.json
	$(BIN)/python -m procedge eval attribution --dataset tep --root $(PROCEDGE_DATA)/tep --json artifacts/eval/attribution_tep.json

clean:
	rm -rf artifacts .pytest_cache
