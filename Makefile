# The two commands the README gives: `make demo` and `make test`.
# Everything else here is what those two need (a virtual environment, the
# package installed with pinned torch/torchvision, Fashion-MNIST on disk).

PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
CONSTRAINTS := constraints.txt
STAMP := $(VENV)/.installed

.PHONY: demo test docs data install benchmarks lint clean

demo: install data
	$(PY) -m vaerepair demo --out runs/demo

test: install data
	$(PY) -m pytest

docs: install
	$(PY) -m pip install -q -c $(CONSTRAINTS) -e ".[docs]"
	$(VENV)/bin/mkdocs build --strict --site-dir site

benchmarks: install data
	$(PY) -m pip install -q -c $(CONSTRAINTS) -e ".[bench]"
	$(PY) benchmarks/throughput.py
	$(PY) benchmarks/quality.py
	$(PY) benchmarks/distributed_step.py
	$(PY) benchmarks/photos.py

lint: install
	$(PY) -m pip install -q -e ".[dev]"
	$(VENV)/bin/ruff check src tests benchmarks examples scripts
	$(VENV)/bin/mypy src

install: $(STAMP)

$(PY):
	$(PYTHON) -m venv $(VENV)

$(STAMP): $(PY) pyproject.toml $(CONSTRAINTS)
	$(PY) -m pip install -q -c $(CONSTRAINTS) -e ".[test,plot]"
	touch $(STAMP)

# Fashion-MNIST: already found -> nothing; root on Debian -> the distribution's
# package; otherwise torchvision's downloader into the user cache.
data: install
	@if $(PY) -m vaerepair fetch fashion-mnist --check >/dev/null 2>&1; then \
		echo "Fashion-MNIST: found"; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
		(apt-get install -y -q dataset-fashion-mnist || \
		 (apt-get update -q && apt-get install -y -q dataset-fashion-mnist)); \
	else \
		$(PY) -m vaerepair fetch fashion-mnist; \
	fi

clean:
	rm -rf $(VENV) runs site build *.egg-info src/*.egg-info
