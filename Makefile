# The two commands: `make run` and `make test`.
PYTHON ?= python3
VENV := .venv

.PHONY: run test venv typecheck clean

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install -q --upgrade pip
	$(VENV)/bin/pip install -q -e '.[test]'
	touch $@

venv: $(VENV)/.installed

# Runs mailhorn against DIR (default: the sample configuration in examples/).
DIR ?= examples/basic
run: venv
	$(VENV)/bin/mailhorn postconf -c $(DIR) -n

test:
	bash scripts/test.sh

typecheck: venv
	$(VENV)/bin/mypy

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache
