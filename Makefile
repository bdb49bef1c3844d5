# bootbus: the two commands of the README are `make run` and `make test`.
PYTHON ?= /usr/bin/python3
# ruff is no Debian 12 package: python3 -m venv /tmp/ruffenv && /tmp/ruffenv/bin/pip install ruff
RUFF ?= ruff

# Runtime packages (Debian's), then what the tests drive: the reference
# brokers and the real clients.
RUNTIME_DEBS = python3 python3-click python3-pyudev python3-pyelftools
TEST_DEBS = python3-systemd python3-pytest python3-hypothesis python3-pytest-timeout python3-jeepney \
	python3-dbus python3-gi gir1.2-glib-2.0 libglib2.0-bin dbus dbus-bin dbus-broker \
	systemd dbus-1-doc gcc libc6-dev tshark util-linux iproute2

.PHONY: run test deps test-deps lint bench vm-test bytecode

deps:
	@$(CURDIR)/.ci/apt-ensure $(RUNTIME_DEBS)

test-deps: deps
	@$(CURDIR)/.ci/apt-ensure $(TEST_DEBS)

# Bytecode is compiled up front: with PYTHONDONTWRITEBYTECODE in the environment,
# every start and re-exec would otherwise compile bootbus again (~60 ms).
bytecode:
	@$(PYTHON) -m compileall -q bootbus >/dev/null

run: deps bytecode
	$(PYTHON) -m bootbus $(ARGS)

test: test-deps bytecode
	$(PYTHON) -m pytest -m "not vm" -p no:cacheprovider $(PYTEST_ARGS)

lint:
	$(PYTHON) -m mypy
	$(RUFF) check bootbus tests bench

bench: test-deps bytecode
	$(PYTHON) bench/run.py $(BENCH_ARGS)

vm-test: test-deps
	$(PYTHON) vm-tests/run.py $(VM_ARGS)
