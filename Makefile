# mesh — every target creates .venv and installs what it needs on first use.
# Quick start on a fresh Debian/Ubuntu machine with Python 3.11+:  make serve   /   make test

PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed-stamp
NBVAL  := --nbval --nbval-sanitize-with notebooks/sanitize.cfg --nbval-current-env

.PHONY: help install serve test lint unit nbval notebooks lab diagrams traces bench fuzz clean system-deps istio-src

help:
	@echo "make serve      the demo: mini-istiod on bookinfo, tiny apps, one real Envoy per pod (Ctrl-C stops)"
	@echo "make test       ruff + unit tests + notebooks under nbval (what CI runs)"
	@echo "make lab        open JupyterLab on notebooks/"
	@echo "make notebooks  re-execute every notebook in place (review the output diff)"
	@echo "make diagrams   regenerate diagrams/ from the code"
	@echo "make traces     rebuild traces/*.jsonl from traces/src/"
	@echo "make bench      run the benchmarks in bench/ and print their figures"
	@echo "make fuzz       the hypothesis fuzz suite with thousands of inputs per target (make test runs a few dozen)"
	@echo "make istio-src  clone Istio 1.19.0 into .istio-src for the tests that read Istio's own test data"
	@echo "                (then: export ISTIO_SRC=$$PWD/.istio-src)"

$(STAMP): pyproject.toml
	@$(MAKE) --no-print-directory system-deps
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

# Debian packages: graphviz's `dot` (diagrams), kubectl (apiserver tests), iptables (istio-init's
# rules in pod namespaces; nf_tables backend) and iproute2 (`ip netns`, the demo's pods).
system-deps:
	@missing=""; \
	command -v dot >/dev/null 2>&1 || missing="$$missing graphviz"; \
	command -v kubectl >/dev/null 2>&1 || missing="$$missing kubernetes-client"; \
	command -v iptables-restore >/dev/null 2>&1 || missing="$$missing iptables"; \
	command -v ip >/dev/null 2>&1 || missing="$$missing iproute2"; \
	$(PYTHON) -c "import ensurepip, venv" >/dev/null 2>&1 || missing="$$missing python3-venv"; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ]; then \
	    echo "installing Debian packages:$$missing"; \
	    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null) \
	      || echo "warning: could not install$$missing; run: apt-get install -y$$missing"; \
	  else \
	    echo "missing system packages; run: sudo apt-get install -y$$missing"; \
	  fi; \
	fi

serve: $(STAMP)
	$(PY) -m mesh demo

lint: $(STAMP)
	$(VENV)/bin/ruff check mesh tests bench

unit: $(STAMP)
	$(PY) -m pytest tests

nbval: $(STAMP)
	$(PY) -m pytest $(NBVAL) notebooks/

test: lint unit nbval

notebooks: $(STAMP)
	$(PY) -m mesh.tools.run_notebooks notebooks/

# As root (the default in many containers) JupyterLab refuses to start without --allow-root; the
# settings override turns off the first-run "news" prompt and the update check.
LAB_SETTINGS := $(VENV)/share/jupyter/lab/settings/overrides.json
lab: $(STAMP)
	@mkdir -p $(dir $(LAB_SETTINGS))
	@test -f $(LAB_SETTINGS) || echo '{"@jupyterlab/apputils-extension:notification": {"fetchNews": "false", "checkForUpdates": false}}' > $(LAB_SETTINGS)
	$(VENV)/bin/jupyter lab notebooks/ --no-browser --LabApp.news_url=None \
	  --LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate $$([ "$$(id -u)" = 0 ] && echo --allow-root)

diagrams: $(STAMP)
	$(PY) -m mesh diagrams --readme README.md

traces: $(STAMP)
	$(PY) -m mesh trace build-all

fuzz: $(STAMP)
	MESH_FUZZ=long $(PY) -m pytest -s tests/test_fuzz.py

bench: $(STAMP)
	@for b in bench/bench_*.py; do echo "== $$b"; $(PY) $$b || exit 1; done

# Istio's own test data and line numbers are read from a clone, never committed (tests/istio_src.py).
istio-src:
	test -d .istio-src || git clone -q -b 1.19.0 --depth 1 https://github.com/istio/istio .istio-src
	@echo "export ISTIO_SRC=$$PWD/.istio-src"

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
