# Two commands on a fresh machine (see README.md):
#   make book   set up a virtual environment and open the book in JupyterLab
#   make test   set up a virtual environment and run the tests (library, every chapter under nbval, and the
#               HTML book, slides and widgets in a browser where Chromium is installed)
# The book as a static web site and as slides (need Node.js's npm for MathJax and reveal.js):
#   make html   execute every chapter and write the HTML book to build/book/reading/html/index.html
#   make slides one reveal.js deck per chapter and a session deck, in build/book/reading/slides/
#   CAPSEDU_TEST_MODE=1 make html slides   the same in test mode (minutes), under build/book/test/
PYTHON ?= python3
NPM ?= npm
VENV ?= .venv
BIN := $(VENV)/bin
# JupyterLab refuses to start as root (e.g. in a container) unless told it may.
JUPYTER_ROOT := $(if $(filter 0,$(shell id -u)),--allow-root,)
BOOK_MODE := $(if $(filter-out 0 false no,$(CAPSEDU_TEST_MODE)),test,reading)
BOOK_OUT ?= build/book/$(BOOK_MODE)

.PHONY: book book-run test html slides assets clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --upgrade pip

book: $(BIN)/python
	$(BIN)/python -m pip install -e ".[book]"
	$(BIN)/jupyter lab $(JUPYTER_ROOT) book/

# Execute every chapter top to bottom (reading mode) without opening a browser.
book-run: $(BIN)/python
	$(BIN)/python -m pip install -e ".[book]"
	$(BIN)/jupyter nbconvert --to notebook --execute --ExecutePreprocessor.timeout=1800 --output-dir /tmp/capsedu-book book/*.ipynb

# MathJax, reveal.js, RequireJS and jQuery from the npm registry, at the versions package-lock.json pins:
# the pages load them from the site itself, never from a CDN.
node_modules/.package-lock.json: package.json package-lock.json
	$(NPM) ci --no-audit --no-fund
assets: node_modules/.package-lock.json

# Sphinx + MyST-NB execute every chapter (cached per mode in $(BOOK_OUT)/..: a second build, or the
# slides after the HTML, reuses the executed chapters while their code and the library are unchanged).
html: $(BIN)/python assets
	$(BIN)/python -m pip install -e ".[site]"
	$(BIN)/python -m sphinx -b html book $(BOOK_OUT)/html
	@echo "HTML book ($(BOOK_MODE) mode): $(BOOK_OUT)/html/index.html"

slides: $(BIN)/python assets
	$(BIN)/python -m pip install -e ".[site]"
	$(BIN)/python book/bookbuild.py slides $(BOOK_OUT)/slides
	@echo "Slides ($(BOOK_MODE) mode): $(BOOK_OUT)/slides/index.html"

# pytest runs tests/ and, through nbval, every notebook in book/ (in test mode: CAPSEDU_TEST_MODE=1).
# The browser tests need the npm assets; without npm they skip (outside CI), like they do without Chromium.
test: $(BIN)/python
	$(BIN)/python -m pip install -e ".[test]"
	@if command -v $(NPM) >/dev/null 2>&1; then $(MAKE) --no-print-directory assets; \
	else echo "npm not found: the HTML book and slide tests will skip (install Node.js to run them)"; fi
	$(BIN)/python -m pytest

clean:
	rm -rf $(VENV) runs build node_modules
