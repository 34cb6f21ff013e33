# make test : create .venv, install requirements.txt, run the whole suite (library tests,
#             executed book build, browser check of the rendered pages).
# make book : build the executed book into _build/html from a clean _build (-nW --keep-going).
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: install test book bench bench-quick clean

$(STAMP): requirements.txt pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements.txt
	touch $(STAMP)

install: $(STAMP)

test: $(STAMP)
	$(PY) -m pytest -q -ra --durations=40

book: $(STAMP)
	rm -rf _build
	$(VENV)/bin/jupyter-book build . --builder html -n -W --keep-going

bench: $(STAMP)
	$(PY) -m pip install --quiet -r benchmarks/requirements.txt
	$(PY) -m benchmarks.peers

bench-quick: $(STAMP)
	$(PY) -m pip install --quiet -r benchmarks/requirements.txt
	$(PY) -m benchmarks.peers --quick

clean:
	rm -rf _build .pytest_cache
