# The two commands: `make run` and `make test`.
PYTHON ?= python3
VENV ?= .venv

.PHONY: run test venv typecheck clean

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install -q --upgrade pip
	$(VENV)/bin/pip install -q -e '.[test]'
	touch $@

# Bytecode for every module, written here because the import system writes
# none when PYTHONDONTWRITEBYTECODE is set (or when the importing process may
# not write the checkout, as workers that gave up root): without it every
# process compiles each module it imports, at every start. (An installed
# package gets its bytecode from pip.)
venv: $(VENV)/.installed
	$(VENV)/bin/python -m compileall -q mailhorn

# `make run`: the demo mail server in the foreground (mailhorn/cli/demo.py);
# Ctrl-C stops it. VENV=DIR on the command line uses an existing environment
# as it is (nothing is installed into it) and runs this checkout's code.
ifeq ($(origin VENV),command line)
run:
	PYTHONPATH=$(CURDIR) $(VENV)/bin/python -m mailhorn.cli.demo
else
run: venv
	$(VENV)/bin/python -m mailhorn.cli.demo
endif

test:
	bash scripts/test.sh

typecheck: venv
	$(VENV)/bin/mypy

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache
