# kubeless: `make test` and `make bench` install what they need on a fresh
# Debian machine (Debian's etcd-server, a virtual environment) and run.

SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
APT_PACKAGES := etcd-server etcd-client docker.io busybox-static prometheus iproute2 procps curl wrk nftables iptables chromium zsh fish
export PYTHONDONTWRITEBYTECODE := 1

.PHONY: test unit integration bench deps docker venv typecheck lint up clean cluster soak

test: deps docker venv lint
	$(PY) -m pytest -q -p no:cacheprovider

unit: venv
	$(PY) -m pytest -q -p no:cacheprovider tests/unit

integration: deps venv
	$(PY) -m pytest -q -p no:cacheprovider tests/integration

# `make bench BENCH="mesh rollout"` runs only those (bench/__main__.py's names)
bench: deps docker venv
	$(PY) -m bench $(BENCH)

typecheck: venv
	$(PY) -m mypy

# The layers (pyproject.toml [tool.importlinter], docs/ARCHITECTURE.md) and
# mypy --strict on every production package: both before any test runs.
lint: venv
	$(VENV)/bin/lint-imports
	$(PY) -m mypy

# Debian packages the tests run for real; apt-get update only when one is missing.
deps:
	@missing=""; for p in $(APT_PACKAGES); do \
	  dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q "install ok installed" || missing="$$missing $$p"; \
	done; \
	if [ -n "$$missing" ]; then \
	  echo "installing Debian packages:$$missing"; \
	  apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q $$missing; \
	fi
	@test -x /usr/bin/etcd || { echo "error: /usr/bin/etcd is missing after installing etcd-server" >&2; exit 1; }
	@test -x /usr/sbin/dockerd || { echo "error: /usr/sbin/dockerd is missing after installing docker.io" >&2; exit 1; }
	@test -x /usr/bin/promtool -a -x /usr/bin/prometheus || { echo "error: promtool or prometheus is missing after installing prometheus" >&2; exit 1; }

# A Docker Engine that answers (started when none runs) and the demo/test image.
docker: deps
	@bash scripts/ensure-dockerd.sh
	@bash scripts/build-demo-image.sh

venv: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[test]' --config-settings editable_mode=compat
	touch $@

# A whole cluster on this machine, in the foreground (Ctrl-C stops it all):
# etcd, the controllers and one agent (docker runtime: `docker` started
# dockerd and built the demo image), metrics on 127.0.0.1:9101; the first time
# (a fresh state dir), manifests/demo.yaml applied once the node is ready; a
# restart keeps the cluster as the user left it (`kubeless up --apply-once`).
# Extra options: make up UP_ARGS="--etcd-port 2479 --metrics-port 9201".
UP_ARGS ?=
up: deps docker venv
	$(VENV)/bin/kubeless up --apply-once manifests/demo.yaml $(UP_ARGS)

# A real multi-host cluster on this machine, in the foreground (Ctrl-C removes it
# all): 3 managers and 2 workers as network namespaces, each with its own dockerd
# and agent, the managers with an etcd member, the controllers and a join endpoint;
# TLS everywhere. It prints the KUBELESS_ENDPOINTS and KUBELESS_CERT_PATH (admin) to
# use. Options: make cluster CLUSTER_ARGS="--workers 4" (or "--insecure": plain http).
CLUSTER_ARGS ?=
cluster: deps venv
	$(PY) -m lab up $(CLUSTER_ARGS)

# Random faults for SOAK_SECONDS (default 180) while services are scaled and
# updated; prints the faults and any invariant violation (not run by CI).
SOAK_SECONDS ?= 180
soak: deps venv
	SOAK_SECONDS=$(SOAK_SECONDS) $(PY) -m lab soak $(SOAK_ARGS)

clean:
	rm -rf $(VENV) build *.egg-info
