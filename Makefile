# The two commands: `make run` and `make test`.
PYTHON ?= python3
VENV ?= .venv

.PHONY: run test venv native-clean typecheck clean

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
#
# Then the per-message modules are compiled to C extensions with mypyc
# (scripts/build_native.py; about two minutes on two cores, skipped while
# no listed source changed). `make native-clean` removes them: the package
# then runs interpreted, with the same behaviour.
venv: $(VENV)/.installed
	$(VENV)/bin/python -m compileall -q mailhorn
	$(VENV)/bin/python scripts/build_native.py

native-clean:
	$(VENV)/bin/python scripts/build_native.py --clean

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
	rm -rf $(VENV) .pytest_cache .mypy_cache build
	find mailhorn -name '*.so' -delete
	rm -f mailhorn/native.manifest
