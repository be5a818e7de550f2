# Two commands do all the set-up: `make demo` and `make test`.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip
# torch is pinned so that pip takes the CPU build instead of a several-GB CUDA one.
TORCH  ?= torch==2.13.0
PLUGIN_DIRS := $(patsubst %/pyproject.toml,%,$(wildcard plugins/*/pyproject.toml))
STAMP  := $(VENV)/.galaug-installed
DEMO_DIR ?= runs/demo

.PHONY: install demo test clean

$(PY):
	$(PYTHON) -m venv $(VENV)

$(STAMP): pyproject.toml $(wildcard plugins/*/pyproject.toml) | $(PY)
	$(PIP) install --quiet --upgrade pip
	$(PIP) install --quiet "$(TORCH)"
	$(PIP) install --quiet -e ".[test,astro]" $(foreach d,$(PLUGIN_DIRS),-e $(d))
	touch $@

install: $(STAMP)

demo: install
	PATH="$(CURDIR)/$(VENV)/bin:$$PATH" bash examples/demo.sh $(DEMO_DIR)

test: install
	$(PY) -m pytest

clean:
	rm -rf $(VENV) runs .pytest_cache
