# Two entry points for a fresh clone: `make run` and `make test`.
# Both create .venv on first use (dependencies install from the package index) and reuse it.
PY ?= python3
VENV := .venv
STAMP := $(VENV)/.installed

$(STAMP): pyproject.toml
	test -x $(VENV)/bin/python || $(PY) -m venv $(VENV)
	$(VENV)/bin/pip install -q -e '.[dev]'
	touch $(STAMP)

.PHONY: run test venv
venv: $(STAMP)

run: $(STAMP)
	$(VENV)/bin/rtfuse run --frames 60

test: $(STAMP)
	$(VENV)/bin/python -m pytest -q
