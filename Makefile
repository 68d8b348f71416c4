# revops-notebooks — run `make help` for the list of targets.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
DATASET ?= data/sample
PERIOD ?=
TO ?=
PERIOD_ARG := $(if $(PERIOD),--period $(PERIOD),)
PARAMS ?=

.DEFAULT_GOAL := help

help: ## list the targets
	@grep -hE '^[a-zA-Z_-]+:.*## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*## "}; {printf "  \033[36m%-16s\033[0m %s\n", $$1, $$2}'

# The venv is installed from requirements.lock (pip constraints: every package at its locked version). The core
# (`-e .`) is what publishing needs; the extras are installed by the targets that need them: lab (make lab,
# make whatif), dev (make test, make lint: everything, lab and db included). `make venv` builds the dev venv.
LOCK := requirements.lock
PIP := $(BIN)/python -m pip --disable-pip-version-check
EXTRAS_OF = $(shell $(PYTHON) -c 'import tomllib; print(",".join(tomllib.load(open("pyproject.toml", "rb"))["project"].get("optional-dependencies", {})))')

$(VENV)/.installed: pyproject.toml $(LOCK)
	@# 3.11.5: requirements.lock pins soupsieve 4.1.3, which needs it (Debian 12's python3 is 3.11.2; PYTHON=… picks another)
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11, 5) else "Python 3.11.5+ is needed for requirements.lock (found " + sys.version.split()[0] + "); set PYTHON= to a newer python3")'
	@# from scratch, so that nothing stays from an earlier lock (same pip freeze on every machine)
	@if [ -f $(VENV)/pyvenv.cfg ]; then echo "rebuilding $(VENV) from $(LOCK)"; rm -rf $(VENV); fi
	$(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --upgrade -c $(LOCK) pip
	$(PIP) install --quiet -c $(LOCK) -e .
	$(BIN)/python -m ipykernel install --sys-prefix --name python3 --display-name "Python 3 (revops-notebooks)" >/dev/null
	@touch $@

$(VENV)/.installed-%: $(VENV)/.installed
	$(PIP) install --quiet -c $(LOCK) -e '.[$*]'
	-@if [ "$*" = dev ] && [ -d .git ]; then git config filter.nbstripout.clean '.venv/bin/nbstripout'; \
	  git config filter.nbstripout.smudge cat; git config diff.ipynb.textconv '.venv/bin/nbstripout -t'; fi
	@touch $@

venv: $(VENV)/.installed-dev ## create .venv from requirements.lock (dev: everything) and register the Jupyter kernel

LOCK_VENV := build/lock-venv
lock: ## re-resolve requirements.lock from pyproject.toml (all extras) against PyPI; then commit it
	rm -rf $(LOCK_VENV)
	$(PYTHON) -m venv $(LOCK_VENV)
	$(LOCK_VENV)/bin/python -m pip install --quiet --upgrade pip
	$(LOCK_VENV)/bin/python -m pip install --quiet '.[$(EXTRAS_OF)]'
	{ echo "# Written by \`make lock\` from pyproject.toml with all extras ($(EXTRAS_OF)), resolved on PyPI with"; \
	  echo "# Python $$($(LOCK_VENV)/bin/python -c 'import platform; print(platform.python_version(), platform.system(), platform.machine())')."; \
	  echo "# \`make venv\` and CI install from it as pip constraints; edit pyproject.toml, then run \`make lock\`."; \
	  $(LOCK_VENV)/bin/python -m pip freeze --all --exclude revops-notebooks --exclude setuptools --exclude wheel; \
	} > $(LOCK).tmp
	mv $(LOCK).tmp $(LOCK)
	rm -rf $(LOCK_VENV)

sample: $(VENV)/.installed ## generate and validate the sample dataset in data/sample
	$(BIN)/revops sample-data --to data/sample

validate: $(VENV)/.installed ## validate DATASET (default data/sample)
	$(BIN)/revops validate $(DATASET)

monthly-report: $(VENV)/.installed ## the monthly report on DATASET into reports/<PERIOD>/; PARAMS="-p growth_rate 0.25 -f params.yaml"
	@if [ "$(DATASET)" = "data/sample" ]; then $(MAKE) --no-print-directory sample; fi
	$(BIN)/revops report monthly --dataset $(DATASET) $(PERIOD_ARG) $(PARAMS)

review-packs: $(VENV)/.installed ## one-to-one review pack per rep into reports/<PERIOD>/reviews/; PARAMS="-p top_n 5"
	@if [ "$(DATASET)" = "data/sample" ]; then $(MAKE) --no-print-directory sample; fi
	$(BIN)/revops report reviews --dataset $(DATASET) $(PERIOD_ARG) $(PARAMS)

email-report: $(VENV)/.installed ## build the leadership email (.eml, dry run); SEND=1 TO=a@b.com to send via SMTP
	$(BIN)/revops email $(PERIOD_ARG) --to "$(if $(TO),$(TO),leadership@example.com)" $(if $(SEND),--send,)

WHATIF_PORT ?= 8866
# Voilà's lab template minus its Font Awesome links to a CDN (src/helpers/publish/templates/jupyter/voila/templates/revops)
VOILA_TEMPLATES := $(CURDIR)/src/helpers/publish/templates/jupyter
# Voilà 0.5's default kernel manager (the async one) can lose a cell's reply, leaving the page at "Executing 2 of 3"
# with the kernel idle (voila-dashboards/voila#1428): on 2 cores kept busy, 6 pages of 43 stuck; with the plain
# manager none of 30 did (tests/test_whatif_browser.py starts Voilà with these options too)
VOILA_ARGS := --VoilaConfiguration.multi_kernel_manager_class=jupyter_server.services.kernels.kernelmanager.MappingKernelManager

whatif: $(VENV)/.installed-lab ## serve the quota what-if explorer (Voilà) on 127.0.0.1:8866 (WHATIF_PORT=…); nothing loads from outside
	@if [ "$(DATASET)" = "data/sample" ]; then $(MAKE) --no-print-directory sample; fi
	@# a CRM export folder is imported first (or refused, saying how to import it), before Voilà starts
	@ds="$$($(BIN)/revops dataset-folder $(DATASET))" && \
	echo "serving the what-if explorer on $$ds" && \
	JUPYTER_PATH=$(VOILA_TEMPLATES)$${JUPYTER_PATH:+:$$JUPYTER_PATH} REVOPS_DATASET="$$ds" \
	  $(BIN)/voila notebooks/quota_whatif.ipynb --template=revops $(VOILA_ARGS) --no-browser --Voila.ip=127.0.0.1 --port=$(WHATIF_PORT)

# Jupyter refuses to run as root unless told to; containers often run as root
ALLOW_ROOT := $(if $(filter 0,$(shell id -u)),--allow-root,)
LAB_ARGS ?=

lab: $(VENV)/.installed-lab ## open JupyterLab on the notebooks (as root too); LAB_ARGS="--no-browser --port=8899" adds options
	$(BIN)/jupyter lab notebooks $(ALLOW_ROOT) $(LAB_ARGS)

test: venv ## run the test suite (the slow tests need Chromium and PostgreSQL: README.md, "Tests")
	$(BIN)/python -m pytest

test-fast: venv ## the tests not marked slow (no notebook runs, browsers or servers)
	$(BIN)/python -m pytest -m "not slow"

lint: venv ## ruff over code and notebooks; the import contract (data -> metrics -> sections -> publish)
	$(BIN)/ruff check src tests notebooks
	$(BIN)/ruff format --check src tests notebooks
	$(BIN)/lint-imports

format: venv ## format code and notebooks
	$(BIN)/ruff format src tests notebooks
	$(BIN)/ruff check --fix src tests notebooks

strip: venv ## remove outputs from the notebooks
	$(BIN)/nbstripout notebooks/*.ipynb

docs: venv ## regenerate docs/metrics.md from the metric registry (src/helpers/metrics/registry.yml)
	$(BIN)/python -m helpers.metrics.registry docs/metrics.md

bench: $(VENV)/.installed ## benchmark the monthly pack at several sizes (writes bench/bench.json)
	$(BIN)/revops bench

clean: ## remove generated reports and caches (keeps .venv and your data)
	rm -rf reports/*/ .pytest_cache .ruff_cache

.PHONY: help venv lock test-fast sample validate monthly-report review-packs email-report whatif lab test lint format strip docs bench clean
