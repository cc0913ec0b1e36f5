# keyhead: `make demo` runs the main job on synthetic data; `make test` runs the test suite.
# Both create .venv (if absent) and install the exact, hashed pins of requirements.lock first (--require-hashes).
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.keyhead-installed

.PHONY: demo test test-fast lint bench clean

$(STAMP): requirements-pip.lock requirements.lock pyproject.toml
	@test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install --disable-pip-version-check -q --require-hashes -r requirements-pip.lock
	$(PY) -m pip install --disable-pip-version-check -q --require-hashes -r requirements.lock
	$(PY) -m pip install --disable-pip-version-check -q --no-deps --no-build-isolation -e .
	@touch $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/keyhead demo

test: $(STAMP)
	$(PY) -m pytest -q

test-fast: $(STAMP)
	$(PY) -m pytest -q -m "not slow"

lint: $(STAMP)
	$(VENV)/bin/ruff check keyhead tests bench
	$(VENV)/bin/ruff format --check keyhead tests bench
	$(VENV)/bin/lint-imports

bench: $(STAMP)
	$(PY) bench/foundation.py

clean:
	rm -rf demo runs .pytest_cache
