# The two commands of the README: `make run` and `make test`. Everything else is a helper.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp
# The core alone (no extras), for the test that a consumer's install imports and runs without them.
CORE_VENV  ?= .venv-core
CORE_STAMP := $(CORE_VENV)/.installed-stamp

# Nothing phones home.
export PREFECT_SERVER_ANALYTICS_ENABLED := false
export GX_ANALYTICS_ENABLED := false
export HF_HUB_DISABLE_TELEMETRY := 1
export DO_NOT_TRACK := 1
export DVC_NO_ANALYTICS := 1

.PHONY: install browser-deps run serve test test-unit screenshots lint typecheck services-up services-down services-status bench clean

$(STAMP): pyproject.toml constraints.txt tests/loaders/tensorflow-2.21.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade "pip>=24"
	$(BIN)/python -m pip install -q -c constraints.txt -e ".[intake,dev]"
	# Peer attack libraries for the agreement tests, beside (not inside) the venv: torchattacks
	# declares torchvision, which this torch build cannot import, and its PGD needs none.
	$(BIN)/python -m pip install -q --no-deps --upgrade --target .venv-peers-eval/site -r bench/requirements-peers-eval.txt
	# Real loaders at the versions the scanner tests prove payloads against (tests/helpers/live.py),
	# each in a folder of its own beside the venv, never in it: keras 3.8 (runs keras.utils.get_file
	# from a config), keras 3.15 (TorchModuleWrapper), hydra-core 1.3.2 (what NeMo pins; 1.3.8 refuses
	# os.system targets itself). Their dependencies are in the dev extra.
	$(BIN)/python -m pip install -q --no-deps --upgrade --target .venv-loaders/keras38 keras==3.8.0
	$(BIN)/python -m pip install -q --no-deps --upgrade --target .venv-loaders/keras315 keras==3.15.1
	$(BIN)/python -m pip install -q --no-deps --upgrade --target .venv-loaders/hydra132 hydra-core==1.3.2
	# TensorFlow 2.21 (CPU, ~1.5 GB with its pinned dependencies) for the SavedModel proofs: real
	# SavedModels that TensorFlow writes, loads and runs (a WriteFile op really writes).
	$(BIN)/python -m pip install -q --no-deps --upgrade --target .venv-loaders/tf221 -r tests/loaders/tensorflow-2.21.txt
	touch $(STAMP)

# Only the core's dependencies (read from pyproject.toml), never modelgate itself: the test builds the
# core's wheel from the working tree and installs it beside them (tests/test_core_install.py).
$(CORE_STAMP): pyproject.toml constraints.txt
	test -x $(CORE_VENV)/bin/python || $(PYTHON) -m venv $(CORE_VENV)
	$(CORE_VENV)/bin/python -c "import tomllib; print(*tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies'], sep='\n')" > $(CORE_VENV)/core-requirements.txt
	$(CORE_VENV)/bin/python -m pip install -q -c constraints.txt -r $(CORE_VENV)/core-requirements.txt
	touch $(CORE_STAMP)

install: $(STAMP) $(CORE_STAMP)

## make run: set up, start the embedded services, build the example models, run the intake on each,
## then leave the Prefect UI running with the deployments served (its address is the last line).
run: install
	$(BIN)/modelgate services up
	eval "$$($(BIN)/modelgate services status --env)" && $(BIN)/modelgate registry init
	$(BIN)/modelgate demo run; status=$$?; $(BIN)/modelgate serve --background || exit $$?; exit $$status

## make serve: (re)start only the serve process (deployments intake, evaluate, regate) in the background.
serve: install
	$(BIN)/modelgate services up
	$(BIN)/modelgate serve --background

## make browser-deps: headless Chromium for the UI test (Debian packages, installed when missing and root).
browser-deps:
	@if command -v chromium >/dev/null && command -v chromedriver >/dev/null; then \
	  echo "browser-deps: $$(chromium --version 2>/dev/null | head -1)"; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	  apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
	    chromium chromium-driver fonts-noto-color-emoji; \
	else \
	  echo "browser-deps: chromium and chromium-driver are missing and this is not root with apt-get;"; \
	  echo "  install them, or tests/test_ui_browser.py is skipped (and fails when CI=true)"; \
	fi

## make test: set up (headless Chromium included), lint, type-check and run the whole test suite.
test: install browser-deps lint typecheck
	$(BIN)/python -m pytest

## make test-unit: set up, then run only the unit tests (pytest -m "not services": no Prefect, SeaweedFS
## or browser is started; tests/helpers/marks.py says which tests start one).
test-unit: install
	$(BIN)/python -m pytest -m "not services"

## make screenshots: re-take the README's Prefect UI screenshots (docs/images/) with the UI test.
screenshots: install browser-deps
	REFRESH_SCREENSHOTS=1 $(BIN)/python -m pytest -q tests/test_ui_browser.py

lint: install
	$(BIN)/ruff check modelgate flows tasks tests bench

typecheck: install
	$(BIN)/mypy

services-up: install
	$(BIN)/modelgate services up

services-down:
	test ! -x $(BIN)/modelgate || $(BIN)/modelgate services down

services-status: install
	$(BIN)/modelgate services status

bench: install
	$(BIN)/python bench/bench_manifest.py --size-gb 2

clean: services-down
	rm -rf $(VENV) .modelgate evidence .pytest_cache .mypy_cache .ruff_cache
