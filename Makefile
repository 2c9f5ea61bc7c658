# The two set-up commands of the README: `make demo` and `make test`. scripts/install.sh picks the
# interpreter (active venv, ./.venv, or python3 when pip may install into it) and prints it with --python.

.PHONY: demo test lint

demo:
	scripts/install.sh
	"$$(scripts/install.sh --python)" -m pmq demo

test:
	scripts/install.sh dev
	"$$(scripts/install.sh --python)" -m pytest

lint:
	ruff check .
