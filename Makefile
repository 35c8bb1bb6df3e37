# The README's two commands: `make demo` and `make test`. Both build .venv from nothing.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

# Nothing the project runs may call outside hosts.
export MLFLOW_DISABLE_TELEMETRY := true
export DVC_NO_ANALYTICS := 1
export DO_NOT_TRACK := 1
export TF_CPP_MIN_LOG_LEVEL := 2
export PATH := $(CURDIR)/$(BIN):$(PATH)

.PHONY: demo test test-fast lint format venv lock ui mlflow-server bench plots-template compare screens clean help app browser

help:  ## list the targets
	@grep -E '^[a-z-]+:.*##' $(MAKEFILE_LIST) | sed 's/:.*## /\t/'

venv: $(STAMP)  ## create .venv and install the pinned packages

# The packages come at the versions of requirements.lock (pyproject.toml's pins and everything they
# pull in, as tested), installed by uv (about 30 s, pip about 65 s); INSTALLER=pip installs them
# with pip instead (pip reads pip.conf: a private index or mirror). Both compile the bytecode at
# install: where PYTHONDONTWRITEBYTECODE is set (as on our CI machines) no process writes it, and
# each would compile TensorFlow's modules anew (`import tensorflow` 13 s instead of 5).
INSTALLER ?= uv
UV_VERSION := 0.13.9

$(STAMP): pyproject.toml requirements.lock
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info[:2] == (3, 11) else "Python 3.11 is needed: make PYTHON=/path/to/python3.11")'
	$(PYTHON) -m venv $(VENV)
ifeq ($(INSTALLER),pip)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c requirements.lock -e ".[dev]"
else
	$(BIN)/python -m pip install --quiet uv==$(UV_VERSION)
	$(BIN)/uv pip install --python $(BIN)/python --quiet --compile-bytecode -c requirements.lock -e ".[dev]"
endif
	touch $(STAMP)

lock:  ## after changing a pin in pyproject.toml: re-resolve requirements.lock (other versions kept)
	@test -x $(BIN)/uv || { $(PYTHON) -m venv $(VENV) && $(BIN)/python -m pip install --quiet uv==$(UV_VERSION); }
	$(BIN)/uv pip compile pyproject.toml --extra dev --python-version 3.11 --custom-compile-command "make lock" \
	  --quiet -o requirements.lock

demo: $(STAMP)  ## pull the sample data through DVC and run the whole pipeline
	$(BIN)/dvc pull data.dvc
	$(BIN)/dvc repro
	@echo "Compare the runs: make ui (it prints the URL of the runs page)"
	@echo "Use the champion: $(BIN)/deepfake-detect predict --model models:/deepfake-detector@champion data/test"

# The tests run on PYTEST_WORKERS processes (pytest-xdist; 0: in this one). tests/conftest.py makes each
# test module one work unit (its module-scoped fixtures run once) and the tiny pipeline's modules one
# unit, scheduled first: the longest, it runs on one worker while the other takes the rest.
PYTEST_WORKERS ?= 2
PYTEST_ARGS ?=
PYTEST := $(BIN)/python -m pytest -n $(PYTEST_WORKERS) --dist loadgroup $(PYTEST_ARGS)

test: lint browser  ## lint, then run the whole test suite (on PYTEST_WORKERS=2 processes)
	$(PYTEST)

test-fast: lint browser  ## lint, then every test but tests/pipeline (the pipeline, team and sweep suites)
	$(PYTEST) -m "not slow"

# The web page's browser test (tests/model/test_app.py) drives Debian's chromium through
# chromium-driver: installed here when missing (as root, with apt-get). Without them it skips.
browser:  ## install chromium + chromium-driver for the browser test (as root, when missing)
	@if ! { command -v chromedriver && { command -v chromium || command -v chromium-browser; }; } >/dev/null 2>&1 && \
	  command -v apt-get >/dev/null 2>&1 && [ "$$(id -u)" = 0 ]; then \
	  echo "installing chromium and chromium-driver (the web page's browser test)"; \
	  { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >/dev/null; } || \
	    echo "warning: could not install chromium and chromium-driver: the browser test will skip"; \
	fi

lint: $(STAMP)  ## ruff: lint and check the formatting (configured in pyproject.toml)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: $(STAMP)  ## ruff: format the code and apply the safe lint fixes
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

UI_PORT ?= 5000
ui: $(STAMP)  ## the MLflow UI on the runs of this folder; prints the URL of the experiment's runs
	@$(BIN)/python -c 'from deepfake_detection import tracking; from deepfake_detection.config import load_params; \
	  print("Open the runs:", tracking.experiment_url("http://127.0.0.1:$(UI_PORT)", load_params().mlflow.experiment))'
	$(BIN)/mlflow ui --backend-store-uri sqlite:///mlflow.db --port $(UI_PORT)

compare:  ## the DVC experiments in 120 columns: registered model's val/test AUC and threshold, changed params
	$(BIN)/deepfake-detect compare --width 120

screens: $(STAMP)  ## regenerate docs/screens/ from this project's runs (after make demo; headless chromium)
	$(BIN)/python tools/screens.py --out docs/screens

APP_PORT ?= 8000
APP_ARGS ?=
app: $(STAMP)  ## the web page of the champion on http://127.0.0.1:$(APP_PORT) (APP_ARGS="--model URI ...")
	$(BIN)/deepfake-detect app --port $(APP_PORT) $(APP_ARGS)

# A shared tracking server for a team (README: Working as a team). Give the database and where
# artifacts go, e.g. make mlflow-server MLFLOW_BACKEND_STORE_URI=postgresql://mlflow@db:5432/mlflow
# MLFLOW_ARTIFACTS_DESTINATION=/srv/mlflow-artifacts (password: PGPASSWORD or ~/.pgpass).
MLFLOW_SERVER_HOST ?= 127.0.0.1
MLFLOW_SERVER_PORT ?= 5000
MLFLOW_SERVER_ARGS ?=
mlflow-server: $(STAMP)  ## shared MLflow server: MLFLOW_BACKEND_STORE_URI=postgresql://... MLFLOW_ARTIFACTS_DESTINATION=DIR|s3://...
	$(BIN)/deepfake-detect mlflow-server --host $(MLFLOW_SERVER_HOST) --port $(MLFLOW_SERVER_PORT) $(MLFLOW_SERVER_ARGS)

bench: $(STAMP)  ## print the quick benchmarks' figures (on the sample data in data/)
	$(BIN)/python benchmarks/input_pipeline.py --data data
	$(BIN)/python benchmarks/training_throughput.py
	$(BIN)/python benchmarks/inference.py --data data/test

plots-template:  ## rewrite tools/dvc_plots_offline.html (vega libraries inlined from npm; needs npm)
	$(BIN)/python tools/plots_template.py

clean:  ## remove outputs of the pipeline (not the data, not .venv)
	rm -rf artifacts metrics plots reports mlflow.db mlartifacts
