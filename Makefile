# The README's two commands: `make play` and `make test`. Each sets up .venv itself.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
PY := $(BIN)/python
STAMP := $(VENV)/.stamp-$(shell cksum pyproject.toml | cut -d' ' -f1)
BENCH_STAMP := $(VENV)/.bench-$(shell cksum pyproject.toml | cut -d' ' -f1)
export SDL_AUDIODRIVER ?= dummy

.PHONY: venv play test lint bench fuzz server sysdeps clean fast pure \
	test-pure test-compiled test-versions test-package
# The other Pythons `make test` also runs the quick unit tests on (skipped when absent).
PYENV_ROOT ?= /root/.pyenv
PY312 ?= $(PYENV_ROOT)/versions/3.12.1/bin/python
PY313 ?= $(PYENV_ROOT)/versions/3.13.0/bin/python
# The quick part of the suite: the pure protocol and server unit tests, no namespaces.
QUICK_TESTS := tests/test_wire.py tests/test_connection.py tests/test_session_core.py \
	tests/test_server_core.py tests/test_security.py tests/test_rollback_session.py
PYTEST_ENV := SDL_VIDEODRIVER=dummy SDL_AUDIODRIVER=dummy

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

# The packages, the quick tests on Python 3.12 and 3.13, the suite but the namespace tests
# on the compiled form (where a C compiler exists), then every test on the pure form.
test: test-package test-versions test-compiled test-pure

# The pure form, the reference: compiled modules left beside the sources are removed first.
test-pure: $(STAMP) sysdeps
	$(PY) -m tools.build_compiled --clean
	@echo "=== every test, pure form"
	$(PYTEST_ENV) P2P_EXPECT_FORM=pure $(PY) -m pytest -q -ra

# Built into build/mypyc, copied beside the sources for this pass only, removed after it
# whatever happens (even on Ctrl-C), so the pure form is what runs the rest of the time.
test-compiled: $(STAMP) sysdeps
	@if ! $(PY) -m tools.build_compiled --can-build; then \
		echo "*** no C compiler or Python headers: the compiled form is not tested here"; exit 0; fi; \
	trap '$(PY) -m tools.build_compiled --clean' EXIT INT TERM; \
	echo "=== the suite but the namespace tests, compiled form (mypyc)"; \
	$(PY) -m tools.build_compiled && \
	$(PYTEST_ENV) P2P_EXPECT_FORM=compiled $(PY) -m pytest -q -ra -m "not netns"

# Each other Python in a venv of its own (.venv-3.12, .venv-3.13), pure form.
test-versions:
	@for py in $(PY312) $(PY313); do \
		if [ ! -x "$$py" ]; then echo "*** $$py is absent: skipping the tests on that Python"; continue; fi; \
		ver=$$($$py -c 'import sys; print("%d.%d" % sys.version_info[:2])'); \
		venv=.venv-$$ver; stamp=$$venv/.stamp-$(shell cksum pyproject.toml | cut -d' ' -f1); \
		if [ ! -e $$stamp ]; then \
			echo "setting up $$venv"; \
			{ test -x $$venv/bin/python || $$py -m venv $$venv; } && \
			$$venv/bin/python -m pip install --quiet --upgrade pip && \
			$$venv/bin/python -m pip install --quiet -e '.[test]' && \
			rm -f $$venv/.stamp-* && touch $$stamp || exit 1; \
		fi; \
		echo "Python $$ver: the quick tests"; \
		$(PYTEST_ENV) P2P_EXPECT_FORM=pure $$venv/bin/python -m pytest -q -m "not netns and not slow" \
			-p no:cacheprovider $(QUICK_TESTS) || exit 1; \
	done

# python -m build, then the wheel installed in a fresh venv: scripts, assets, names.
test-package: $(STAMP)
	$(PY) -m tools.check_package

# The compiled form in place (mypyc); `make pure` goes back to pure Python.
fast: $(STAMP)
	$(PY) -m tools.build_compiled

pure: $(STAMP)
	$(PY) -m tools.build_compiled --clean

lint: $(STAMP)
	$(PY) -m ruff check .
	$(PY) -m mypy framework server games tools

$(BENCH_STAMP): $(STAMP)
	$(PY) -m pip install --quiet -e '.[dev,bench]'
	touch $@

bench: $(BENCH_STAMP)
	$(PY) -m tools.build_compiled --clean
	SDL_VIDEODRIVER=dummy SDL_AUDIODRIVER=dummy $(PY) -m tools.bench --write docs/BENCHMARKS.md

fuzz: $(STAMP)
	$(PY) -m pip install --quiet -e '.[dev,fuzz]'
	$(PY) -m tools.fuzz --datagrams 1000000

clean:
	-test -x $(PY) && $(PY) -m tools.build_compiled --clean
	rm -rf $(VENV) .venv-3.* .pytest_cache .mypy_cache .ruff_cache build dist
