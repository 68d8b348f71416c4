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

$(VENV)/.installed: pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "Python 3.11+ is needed (found " + sys.version.split()[0] + ")")'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	$(BIN)/python -m ipykernel install --sys-prefix --name python3 --display-name "Python 3 (revops-notebooks)" >/dev/null
	-@if [ -d .git ]; then git config filter.nbstripout.clean '.venv/bin/nbstripout'; \
	  git config filter.nbstripout.smudge cat; git config diff.ipynb.textconv '.venv/bin/nbstripout -t'; fi
	@touch $@

venv: $(VENV)/.installed ## create .venv from pyproject.toml and register the Jupyter kernel

sample: venv ## generate and validate the sample dataset in data/sample
	$(BIN)/revops sample-data --to data/sample
	$(BIN)/revops validate data/sample

validate: venv ## validate DATASET (default data/sample)
	$(BIN)/revops validate $(DATASET)

monthly-report: venv ## the monthly report on DATASET into reports/<PERIOD>/; PARAMS="-p growth_rate 0.25 -f params.yaml"
	@if [ "$(DATASET)" = "data/sample" ]; then $(MAKE) --no-print-directory sample; fi
	$(BIN)/revops report monthly --dataset $(DATASET) $(PERIOD_ARG) $(PARAMS)

review-packs: venv ## one-to-one review pack per rep into reports/<PERIOD>/reviews/
	@if [ "$(DATASET)" = "data/sample" ]; then $(MAKE) --no-print-directory sample; fi
	$(BIN)/revops report reviews --dataset $(DATASET) $(PERIOD_ARG)

email-report: venv ## build the leadership email (.eml, dry run); SEND=1 TO=a@b.com to send via SMTP
	$(BIN)/revops email $(PERIOD_ARG) --to "$(if $(TO),$(TO),leadership@example.com)" $(if $(SEND),--send,)

whatif: venv ## serve the quota what-if explorer as a standalone page (Voilà) on 127.0.0.1:8866
	@if [ "$(DATASET)" = "data/sample" ]; then $(MAKE) --no-print-directory sample; fi
	REVOPS_DATASET=$(DATASET) $(BIN)/voila notebooks/quota_whatif.ipynb --no-browser --Voila.ip=127.0.0.1 --port=8866

# Jupyter refuses to run as root unless told to; containers often run as root
ALLOW_ROOT := $(if $(filter 0,$(shell id -u)),--allow-root,)
LAB_ARGS ?=

lab: venv ## open JupyterLab on the notebooks (as root too); LAB_ARGS="--no-browser --port=8899" adds options
	$(BIN)/jupyter lab notebooks $(ALLOW_ROOT) $(LAB_ARGS)

test: venv ## run the test suite
	$(BIN)/python -m pytest

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

bench: venv ## benchmark the monthly pack at several sizes (writes bench/bench.json)
	$(BIN)/revops bench

clean: ## remove generated reports and caches (keeps .venv and your data)
	rm -rf reports/*/ .pytest_cache .ruff_cache

.PHONY: help venv sample validate monthly-report review-packs email-report whatif lab test lint format strip docs bench clean
