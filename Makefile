# Two commands for a fresh machine:
#   make demo   installs everything and runs a round on the bundled sample
#   make test   installs everything and runs the tests
VENV ?= .venv
PY := $(VENV)/bin/python
UV := $(VENV)/bin/uv
export PREFECT_SERVER_ANALYTICS_ENABLED := false
export GX_ANALYTICS_ENABLED := false
export DO_NOT_TRACK := 1

.PHONY: install browser demo test bench sample clean

install: $(VENV)/.installed browser

# The report's browser test needs Debian's chromium; installed here so `make test` does
# everything on a fresh machine (as root, as on the developers' machines and CI).
browser:
	@command -v chromium >/dev/null 2>&1 || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1 \
	  && apt-get update -qq >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; } \
	  || echo "chromium is missing and could not be installed: install Debian's chromium package" >&2

$(VENV)/.installed: pyproject.toml constraints.txt
	python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check uv
	# Compiled once here: with PYTHONDONTWRITEBYTECODE set (as on these machines) every run
	# would otherwise compile Prefect's and GX's sources again (3-5 s of each round's start).
	$(UV) pip install --quiet --compile-bytecode -p $(PY) -c constraints.txt -e '.[test,cluster]'
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
