# The two set-up commands of the README: `make demo` and `make test`.
PYTHON ?= python3

.PHONY: demo test lint

demo:
	scripts/install.sh
	pmq demo

test:
	scripts/install.sh dev
	$(PYTHON) -m pytest

lint:
	ruff check .
