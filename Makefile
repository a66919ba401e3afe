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

# The NAT test bed needs iproute2, iptables and nft; its port mapping tests need miniupnpd;
# the cluster tests need redis-server (they start their own on a free loopback port).
# Installed when we are root and they are missing. miniupnpd's system service must never
# run on the host: a policy-rc.d (only if none exists) keeps the package from starting it,
# and it is disabled afterwards; the tests start their own daemon inside a namespace.
# The same holds for redis-server's service.
sysdeps:
	@if [ "$$(id -u)" = 0 ] && { ! command -v ip >/dev/null || ! command -v iptables >/dev/null || ! command -v tc >/dev/null || ! command -v nft >/dev/null; }; then \
		echo "installing iproute2, iptables and nftables"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq iproute2 iptables nftables >/dev/null; \
	fi
	@if [ "$$(id -u)" = 0 ] && [ ! -x /usr/sbin/miniupnpd ] && command -v apt-get >/dev/null; then \
		echo "installing miniupnpd (its service stays off)"; \
		ours=; if [ ! -e /usr/sbin/policy-rc.d ]; then printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d && chmod +x /usr/sbin/policy-rc.d && ours=1; fi; \
		{ apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq miniupnpd-nftables miniupnpd >/dev/null; }; rc=$$?; \
		[ -n "$$ours" ] && rm -f /usr/sbin/policy-rc.d; \
		{ command -v systemctl >/dev/null && systemctl disable --now miniupnpd >/dev/null 2>&1; } ; \
		{ command -v update-rc.d >/dev/null && update-rc.d miniupnpd disable >/dev/null 2>&1; } ; \
		{ [ -e /run/miniupnpd.pid ] && command -v service >/dev/null && service miniupnpd stop >/dev/null 2>&1; } ; \
		exit $$rc; \
	fi

	@if [ "$$(id -u)" = 0 ] && ! command -v redis-server >/dev/null && [ ! -x /usr/bin/redis-server ] && command -v apt-get >/dev/null; then \
		echo "installing redis-server (its service stays off)"; \
		ours=; if [ ! -e /usr/sbin/policy-rc.d ]; then printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d && chmod +x /usr/sbin/policy-rc.d && ours=1; fi; \
		{ apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server >/dev/null; }; rc=$$?; \
		[ -n "$$ours" ] && rm -f /usr/sbin/policy-rc.d; \
		{ command -v systemctl >/dev/null && systemctl disable --now redis-server >/dev/null 2>&1; } ; \
		{ command -v update-rc.d >/dev/null && update-rc.d redis-server disable >/dev/null 2>&1; } ; \
		{ [ -e /run/redis/redis-server.pid ] && command -v service >/dev/null && service redis-server stop >/dev/null 2>&1; } ; \
		exit $$rc; \
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
