# One command to run, one to test. Both create .venv on first use.
VENV ?= .venv
PY := $(VENV)/bin/python

$(VENV)/.installed: pyproject.toml
	python3 -m venv $(VENV)
	$(VENV)/bin/pip install -q --upgrade pip
	$(VENV)/bin/pip install -q torch==2.13.0
	$(VENV)/bin/pip install -q -e '.[test]'
	touch $@

.PHONY: run test
run: $(VENV)/.installed
	$(VENV)/bin/bitlens

test: $(VENV)/.installed
	$(VENV)/bin/pytest -q
