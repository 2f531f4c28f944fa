# make test: create .venv if missing, install, run the test suite.
# make weights: the same setup, fetch the named pretrained weights (WordLlama) once.
# make demo: the same setup, prepare the quick built-in sets, train/evaluate/benchmark every task briefly.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
DEBIAN_PACKAGES := espeak-ng flite

.PHONY: test demo data weights install sysdeps clean

$(PY):
	$(PYTHON) -m venv $(VENV)

$(STAMP): pyproject.toml | $(PY)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev,bench,export,explain]'
	touch $(STAMP)

install: $(STAMP)

# Speech synthesizers for the built-in ASR data (installed only when root and missing).
sysdeps:
	@missing=""; for p in $(DEBIAN_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -z "$$missing" ]; then exit 0; fi; \
	if [ "$$(id -u)" = 0 ]; then \
		echo "installing Debian packages:$$missing"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
	else \
		echo "missing Debian packages:$$missing -- run 'sudo apt-get install$$missing' (needed for the built-in speech data)"; \
	fi

# `make data` builds every built-in set; `make demo` only the quickest set of each task.
DATA_ARGS ?=
data: install sysdeps
	$(VENV)/bin/zoo data prepare $(DATA_ARGS)

# `make weights` fetches the named pretrained weights (`zoo list weights`) into $(ZOO_DATA)/weights.
weights: install
	$(VENV)/bin/zoo weights prepare

test: install sysdeps
	$(PY) -m pytest -q

demo: DATA_ARGS = --quick
demo: data
	$(VENV)/bin/zoo demo

clean:
	rm -rf $(VENV) runs
