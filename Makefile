# Two entry points: `make demo` and `make test`. Both create .venv and install everything;
# Kafka is fetched (Maven Central) and started by the commands themselves.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed-stamp

.PHONY: constraints demo test test-unit test-integration chaos bench train evaluate broker-up broker-down clean

$(STAMP): pyproject.toml constraints.txt
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "profilestream needs Python >= 3.11")'
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	@# setuptools warns on every editable install that a folder named like a package may shadow it;
	@# here the folders are the packages, so the page-long notice only hid the demo's first lines
	PYTHONWARNINGS='ignore:Editable installation' $(PY) -m pip install --quiet -c constraints.txt -e '.[dev]'
	@touch $(STAMP)

# Re-resolve constraints.txt: the newest versions pyproject.toml allows, in a throwaway venv.
# Run `make test` on the result before committing it.
constraints:
	rm -rf .venv-resolve
	$(PYTHON) -m venv .venv-resolve
	.venv-resolve/bin/python -m pip install --quiet --upgrade pip
	.venv-resolve/bin/python -m pip install --quiet -e '.[dev]'
	{ grep '^#' constraints.txt; .venv-resolve/bin/python -m pip freeze --exclude-editable; } > constraints.txt.new
	mv constraints.txt.new constraints.txt
	rm -rf .venv-resolve

demo: $(STAMP)
	$(VENV)/bin/profilestream demo

test: $(STAMP)
	$(VENV)/bin/pytest -q -rs --durations=20

test-unit: $(STAMP)
	$(VENV)/bin/pytest -q tests/unit

test-integration: $(STAMP)
	$(VENV)/bin/pytest -q tests/integration

train: $(STAMP)
	$(VENV)/bin/profilestream train --dataset ml-100k

evaluate: $(STAMP)
	$(VENV)/bin/profilestream evaluate

chaos: $(STAMP)
	$(VENV)/bin/profilestream chaos --scenario all

bench: $(STAMP)
	$(VENV)/bin/profilestream bench run --out bench-results

broker-up: $(STAMP)
	$(VENV)/bin/profilestream broker up

broker-down: $(STAMP)
	$(VENV)/bin/profilestream broker down

clean:
	-$(VENV)/bin/profilestream broker down
	rm -rf .profilestream bench-results
