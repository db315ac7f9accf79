# The two commands of the README: `make book` and `make test`; `make publish` puts the book on GitHub Pages.
PROFILE ?= default
# where `make publish` pushes the built HTML (ghp-import: a commit on BRANCH, pushed to REMOTE)
REMOTE ?= origin
BRANCH ?= gh-pages
PYTHON3 ?= python3
VENV ?= .venv
PYTHON := $(VENV)/bin/python

.PHONY: book test test-cuda venv clean publish check-site

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

# the CUDA path (tests/cuda): on a machine with a CUDA device; it refuses to start on one without
test-cuda: venv
	$(PYTHON) -m pytest --cuda tests/cuda tests/test_device_path.py

# every link relative and every internal link alive, so _build/html works from any web server
check-site: venv
	$(PYTHON) -m optbench.site _build/html --forbid "$(CURDIR)"

publish: book check-site
	$(VENV)/bin/ghp-import --no-jekyll --push --remote $(REMOTE) --branch $(BRANCH) \
		--message "Publish the book (profile $(PROFILE))" _build/html
	@echo "Pushed _build/html to $(REMOTE)/$(BRANCH)"

clean:
	rm -rf _build book/studies/*.ipynb book/studies/*.csv book/*.ipynb
