# The README's two commands: `make play` and `make test`. Each sets up .venv itself.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
PY := $(BIN)/python
STAMP := $(VENV)/.stamp-$(shell cksum pyproject.toml | cut -d' ' -f1)
BENCH_STAMP := $(VENV)/.bench-$(shell cksum pyproject.toml | cut -d' ' -f1)
export SDL_AUDIODRIVER ?= dummy

.PHONY: venv play test lint bench fuzz server sysdeps clean

$(STAMP): pyproject.toml
	$(PYTHON) -c 'import sys; assert sys.version_info >= (3, 11), "Python 3.11+ is needed"'
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	rm -f $(VENV)/.stamp-*
	touch $@

venv: $(STAMP)

play: $(STAMP)
	SDL_AUDIODRIVER= $(PY) -m games.pong --demo

server: $(STAMP)
	$(PY) -m server --port 5160

# The NAT test bed needs iproute2 and iptables; install them when we are root and they are missing.
sysdeps:
	@if [ "$$(id -u)" = 0 ] && { ! command -v ip >/dev/null || ! command -v iptables >/dev/null || ! command -v tc >/dev/null; }; then \
		echo "installing iproute2 and iptables"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq iproute2 iptables >/dev/null; \
	fi

test: $(STAMP) sysdeps
	SDL_VIDEODRIVER=dummy SDL_AUDIODRIVER=dummy $(PY) -m pytest -q -ra

lint: $(STAMP)
	$(PY) -m ruff check .
	$(PY) -m mypy framework server games tools

$(BENCH_STAMP): $(STAMP)
	$(PY) -m pip install --quiet -e '.[dev,bench]'
	touch $@

bench: $(BENCH_STAMP)
	SDL_VIDEODRIVER=dummy SDL_AUDIODRIVER=dummy $(PY) -m tools.bench --write docs/BENCHMARKS.md

fuzz: $(STAMP)
	$(PY) -m pip install --quiet -e '.[dev,fuzz]'
	$(PY) -m tools.fuzz --datagrams 1000000

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
