# The two commands of the README: `make book` and `make test`.
PROFILE ?= default
PYTHON3 ?= python3
VENV ?= .venv
PYTHON := $(VENV)/bin/python

.PHONY: book test venv clean

venv: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON3) -m venv $(VENV)
	$(PYTHON) -m pip install --quiet --upgrade pip
	$(PYTHON) -m pip install --quiet -e '.[test]'
	touch $@

book: venv
	$(VENV)/bin/optbench execute --profile $(PROFILE)
	$(VENV)/bin/jupyter-book build . --warningiserror --nitpick
	@echo "The book is at $(CURDIR)/_build/html/index.html"

test: venv
	$(PYTHON) -m pytest

clean:
	rm -rf _build book/studies/*.ipynb book/intro.ipynb book/methods.ipynb
