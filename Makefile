# Cellcloud. `make up` starts the cluster in cluster.yaml, `make test` runs every test.
# Everything installs itself on a fresh Debian 12 machine (as root): `make deps`.
SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
CLUSTER ?= cluster.yaml
STAMP := $(VENV)/.deps-installed
# gcc + python3-dev build libvirt-python (sdist only) against libvirt-dev.
# openssh-client: cellctl reaches `via: ssh` hosts (ssh/scp); openssh-server: the ssh-host test runs
# its own sshd (own config and host key) inside a netns host it makes.
# postgresql: its binaries only (/usr/lib/postgresql/N/bin): cellctl and the tests run private servers
# (tools/pgserver.py); the package's own cluster service is never used.
# novnc: its page and scripts (/usr/share/novnc) are what the API serves for a VNC console
# (api/compute/novnc.py); its websockify proxy is never run.
APT_PACKAGES := python3-venv gcc python3-dev libvirt-dev pkg-config libvirt-daemon libvirt-daemon-driver-qemu \
	qemu-system-x86 qemu-utils qemu-block-extra dnsmasq-base tgt nftables iproute2 iputils-ping lz4 busybox-static \
	openssh-client openssh-server postgresql novnc

# Debian's chromium, for the dashboard's browser test only (tests/functional/test_dashboard.py drives it with
# Playwright's Python package): make test installs it, make up and make deps do not.
BROWSER_APT_PACKAGES := chromium

.PHONY: deps apt browser up down status lint test test-fast chaos scale bench tempest

deps: $(STAMP)

# Skips apt entirely when every package is already installed (dpkg says "install ok installed").
apt:
	@missing=$$(dpkg-query -W -f='$${Status} $${Package}\n' $(APT_PACKAGES) 2>&1 | grep -v '^install ok installed' || true); \
	if [ -n "$$missing" ]; then \
	  echo "apt: installing missing system packages"; \
	  apt-get update; \
	  DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends $(APT_PACKAGES); \
	fi
	@# qemu:///embed (real guests) needs the libvirt-qemu user and group to exist, even when guests run as root
	@getent group libvirt-qemu >/dev/null || groupadd --system libvirt-qemu
	@id -u libvirt-qemu >/dev/null 2>&1 || useradd --system -g libvirt-qemu -M -s /usr/sbin/nologin libvirt-qemu

browser:
	@if ! dpkg-query -W -f='$${Status}\n' $(BROWSER_APT_PACKAGES) 2>/dev/null | grep -q '^install ok installed'; then \
	  echo "apt: installing $(BROWSER_APT_PACKAGES) for the dashboard test"; \
	  apt-get update; \
	  DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends $(BROWSER_APT_PACKAGES); \
	fi

$(BIN)/python: | apt
	$(PYTHON) -m venv $(VENV)

# Re-run pip only when pyproject.toml or constraints.txt is newer than the stamp; constraints.txt pins
# every package, so a fresh machine gets the versions CI last tested.
$(STAMP): pyproject.toml constraints.txt | apt $(BIN)/python
	$(BIN)/pip install -q -c constraints.txt -e '.[dev,postgres,tempest]'
	touch $@

up: deps
	$(BIN)/cellctl up $(CLUSTER)

down:
	$(BIN)/cellctl down $(CLUSTER)

status:
	$(BIN)/cellctl status $(CLUSTER)

# The typing and lint gate: any finding fails (mypy settings and its file list are in pyproject.toml).
lint: deps
	$(BIN)/ruff check .
	$(BIN)/mypy

# pytest exit code 5 ("no tests collected") fails the build like any other failure. -rs: the run ends
# by listing every skipped test with its reason (a missing kernel feature must be visible).
test: deps lint browser
	@rc=0; $(BIN)/pytest -q -rs --durations=40 || rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "make test: pytest collected no tests" >&2; fi; \
	exit $$rc

test-fast: deps
	@rc=0; $(BIN)/pytest -q -rs -m "not slow" || rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "make test-fast: pytest collected no tests" >&2; fi; \
	exit $$rc

# OpenStack's Tempest API tests (tempest.api.compute, .volume, .image, .identity, .network) against fresh
# clusters, tempest.conf written from each (tools/tempest.py): the cloud's own rules, then a second pass of the
# dynamic-credential admin tests under the legacy admin rule they were written for (README "Tempest"); prints
# passed / failed / skipped per pass and together, fails on any failure. make test runs its quick tier
# (tests/functional/test_tempest_quick.py). TEMPEST_ARGS="--regex R" picks other tests.
tempest: deps
	$(BIN)/python -m tools.tempest $(TEMPEST_ARGS)

# The full kill matrix: every service kind kill -9'd during a burst (tests/chaos; make test runs its quick
# tier), then the matrix with its figures (tools/bench/chaos.py). Fails if either does.
chaos: deps
	@rc=0; $(BIN)/pytest -q -rs --chaos tests/chaos || rc=$$?; \
	echo "== tools/bench/chaos.py"; $(BIN)/python -m tools.bench.chaos || rc=1; \
	exit $$rc

# Simulated hosts at size (issue 21): the kill test at 2 cells x 200 hosts (make test runs it at 2 x 20).
scale: deps
	@CELLCLOUD_SIM_HOSTS=200 $(BIN)/pytest -q -rs tests/functional/test_simulated_hosts.py

# Runs every benchmark even when one fails; fails at the end if any did.
bench: deps
	@ran=0; failed=""; for f in tools/bench/*.py; do \
	  name=$$(basename "$$f" .py); \
	  if [ ! -f "$$f" ] || [ "$$name" = __init__ ]; then continue; fi; \
	  echo "== tools/bench/$$name.py"; ran=1; \
	  $(BIN)/python -m "tools.bench.$$name" || failed="$$failed $$name"; \
	done; \
	if [ $$ran = 0 ]; then echo "no benchmarks in tools/bench"; fi; \
	if [ -n "$$failed" ]; then echo "make bench: failed:$$failed" >&2; exit 1; fi
