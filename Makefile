# Two commands for a fresh machine:
#   make demo   installs everything and runs a round on the bundled sample
#   make test   installs everything and runs the tests
VENV ?= .venv
PY := $(VENV)/bin/python
UV := $(VENV)/bin/uv
export PREFECT_SERVER_ANALYTICS_ENABLED := false
export GX_ANALYTICS_ENABLED := false
export DO_NOT_TRACK := 1

.PHONY: install demo test bench sample clean

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml constraints.txt
	python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check uv
	$(UV) pip install --quiet -p $(PY) -c constraints.txt -e '.[test]'
	touch $@

demo: install
	$(VENV)/bin/verval run --dtks data/sample/dtks.csv --dukcapil data/sample/dukcapil.csv --out reports/demo

test: install
	$(PY) -m pytest -q

bench: install
	$(VENV)/bin/verval bench --n 1000000 --score

sample: install
	$(VENV)/bin/verval sample --n 5000 --seed 2026 --out data/sample

clean:
	rm -rf $(VENV) reports/demo .pytest_cache
