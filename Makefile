# The two commands of the README: `make run` and `make test`. Both create .venv when missing
# and resolve dependencies afresh, so new releases show up; `make lock` pins them for production.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
MUTATION_STAMP := $(VENV)/.mutation-installed

.PHONY: run test lint bench lock mutation clean

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip

$(STAMP): $(PY) pyproject.toml
	$(PY) -m pip install --quiet -e '.[test,bench]'
	touch $(STAMP)

run: $(STAMP)
	$(PY) main.py serve

test: $(STAMP)
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .
	$(PY) -m pytest -n 2 --dist loadgroup -rs -q -p no:cacheprovider

lint: $(STAMP)
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .

bench: $(STAMP)
	$(PY) bench/mailbox.py
	$(PY) bench/load.py

# requirements.lock: the exact versions for production installs (docs/operations.md, the
# Dockerfile), resolved anew from pyproject.toml. Run `make test` after it: the install test
# installs from the lock.
lock: $(PY)
	$(PY) -m pip install --quiet 'pip-tools>=7.5'
	CUSTOM_COMPILE_COMMAND="make lock" $(VENV)/bin/pip-compile --quiet --upgrade --strip-extras \
		--no-emit-index-url --no-emit-find-links --output-file requirements.lock pyproject.toml

$(MUTATION_STAMP): $(STAMP)
	$(PY) -m pip install --quiet -e '.[mutation]'
	touch $(MUTATION_STAMP)

# Mutation testing of the policy and state modules (docs/testing.md); MODULES=path.py … for some.
mutation: $(MUTATION_STAMP)
	$(PY) tests/mutation.py $(MODULES)

clean:
	rm -rf $(VENV) data
