# Two commands on a fresh machine (see README.md):
#   make book   set up a virtual environment and open the book in JupyterLab
#   make test   set up a virtual environment and run the tests (library + every chapter under nbval)
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# JupyterLab refuses to start as root (e.g. in a container) unless told it may.
JUPYTER_ROOT := $(if $(filter 0,$(shell id -u)),--allow-root,)

.PHONY: book book-run test clean

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

# pytest runs tests/ and, through nbval, every notebook in book/ (in test mode: CAPSEDU_TEST_MODE=1).
test: $(BIN)/python
	$(BIN)/python -m pip install -e ".[test]"
	$(BIN)/python -m pytest

clean:
	rm -rf $(VENV) runs
