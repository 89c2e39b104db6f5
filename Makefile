# labstack — the two commands a newcomer needs are `make lab` and `make test`.
# Every other target is a step of those two. Nothing here needs root except
# what .ci/run and the README's prerequisites already installed (Docker, Go).
SHELL := /bin/bash
.SHELLFLAGS := -euo pipefail -c
.DEFAULT_GOAL := help
MAKEFLAGS += --no-builtin-rules

include versions.env

# One cache for every heavy artifact (uv wheels, Go-built binaries), reused
# between runs on the same machine. Docker images live in Docker's own store.
LABSTACK_CACHE ?= $(HOME)/.cache/labstack
TOOLS := $(LABSTACK_CACHE)/bin
export UV_CACHE_DIR ?= $(LABSTACK_CACHE)/uv
export UV_PYTHON_DOWNLOADS := never

VENV := .venv
export PATH := $(CURDIR)/$(VENV)/bin:$(PATH)
PY := $(VENV)/bin/python
PYTEST := $(VENV)/bin/pytest
ANSIBLE_PLAYBOOK := $(VENV)/bin/ansible-playbook
# Another sandbox beside the default one: make lab SANDBOX_INVENTORY=DIR, a
# copy of this inventory with other container, network and volume names.
SANDBOX_INVENTORY ?= ansible/inventories/sandbox
export LABSTACK_SANDBOX_INVENTORY := $(abspath $(SANDBOX_INVENTORY))
export ANSIBLE_CONFIG := $(CURDIR)/ansible/ansible.cfg

BASE_IMAGE ?= labstack/base:$(DEBIAN_SUITE)
NODE_IMAGE ?= labstack/node:$(DEBIAN_SUITE)

.PHONY: help
help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | sed -E 's/^([a-z-]+):.*## /  make \1\t/' | expand -t 22

# ---------------------------------------------------------------- environment
.PHONY: prereqs
prereqs: ## check (as root on Debian: install) Docker, debootstrap, Go, Python 3.11, uv
	tools/prereqs.sh

$(VENV)/.synced: pyproject.toml uv.lock | prereqs
	uv sync --frozen
	@touch $@

.PHONY: venv
venv: $(VENV)/.synced ## the pinned Python environment (uv.lock)

# Go tools built once from pinned module versions: $(TOOLS)/NAME-VERSION,
# with its sha256 recorded beside it.
define go_tool
$(TOOLS)/$(1)-$(3):
	@mkdir -p $(TOOLS)/.gobin-$(1)
	GOBIN=$(TOOLS)/.gobin-$(1) CGO_ENABLED=0 go install -trimpath $(2)@$(3)
	mv $(TOOLS)/.gobin-$(1)/$(notdir $(1)) $$@
	cd $(TOOLS) && sha256sum $(1)-$(3) > $(1)-$(3).sha256
endef
MINIO_BIN := $(TOOLS)/minio-$(MINIO_VERSION)
$(eval $(call go_tool,minio,$(MINIO_MODULE),$(MINIO_VERSION)))
# The unit tests start their own MinIO server from this binary; the minio
# role copies it to the storage nodes (sha256 checked).
export LABSTACK_MINIO_BIN := $(MINIO_BIN)
HELM_BIN := $(TOOLS)/helm-$(HELM_VERSION)
$(eval $(call go_tool,helm,$(HELM_MODULE),$(HELM_VERSION)))
export LABSTACK_HELM_BIN := $(HELM_BIN)

# ansible-vault password of the site's credentials file: the client script
# reads LABSTACK_VAULT_PASSWORD, else LABSTACK_VAULT_PASSWORD_FILE, else the
# OS keyring. The sandbox's password file is generated once, git-ignored.
export ANSIBLE_VAULT_PASSWORD_FILE := $(CURDIR)/ansible/vault-password-client.py
VAULT_PASSWORD_FILE := $(LABSTACK_SANDBOX_INVENTORY)/.generated/vault-password
export LABSTACK_VAULT_PASSWORD_FILE ?= $(VAULT_PASSWORD_FILE)
$(VAULT_PASSWORD_FILE):
	@mkdir -p $(@D)
	umask 077 && python3 -c 'import secrets; print(secrets.token_urlsafe(32))' > $@

# --------------------------------------------------------------------- images
.PHONY: images
images: prereqs ## build the images the lab runs (cached; prints size and id)
	images/base/build.sh $(BASE_IMAGE) $(DEBIAN_SUITE) $(DEBIAN_MIRROR)
	docker build --quiet --build-arg BASE_IMAGE=$(BASE_IMAGE) -t $(NODE_IMAGE) images/node
	@docker image ls --format '{{.Repository}}:{{.Tag}}\t{{.Size}}\t{{.ID}}' | grep '^labstack/' | column -t

# -------------------------------------------------------------------- sandbox
.PHONY: sandbox
sandbox: venv images $(VAULT_PASSWORD_FILE) ## create (or converge) the sandbox's containers
	$(ANSIBLE_PLAYBOOK) -i $(SANDBOX_INVENTORY) ansible/sandbox.yml -e sandbox_node_image=$(NODE_IMAGE)

.PHONY: lab
lab: sandbox $(MINIO_BIN) ## build what is missing, deploy site.yml to the sandbox, print the summary
	$(ANSIBLE_PLAYBOOK) -i $(SANDBOX_INVENTORY) ansible/site.yml
	$(PY) -m workload.lab -i $(SANDBOX_INVENTORY)

.PHONY: down
down: venv $(VAULT_PASSWORD_FILE) ## remove every container, network and volume the sandbox created
	$(ANSIBLE_PLAYBOOK) -i $(SANDBOX_INVENTORY) ansible/sandbox.yml -e sandbox_state=absent

# ---------------------------------------------------------------------- tests
.PHONY: lint
lint: venv $(VAULT_PASSWORD_FILE) ## yamllint, ansible-lint, ruff, basedpyright
	$(VENV)/bin/yamllint --strict .
	cd ansible && ../$(VENV)/bin/ansible-lint --profile production
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/basedpyright

.PHONY: unit
unit: venv $(MINIO_BIN) $(VAULT_PASSWORD_FILE) ## unit tests (no sandbox needed)
	$(PYTEST) tests/unit

# CRD definitions (HTTPRoute, ServiceMonitor) from pinned Go modules in the
# Go module cache; `go mod download` is a no-op once they are there.
CRD_DIRS = $(shell go env GOMODCACHE)/$(GATEWAY_API_MODULE)@$(GATEWAY_API_VERSION)/config/crd/standard:$(shell go env GOMODCACHE)/$(PROMETHEUS_OPERATOR_MODULE)@$(PROMETHEUS_OPERATOR_VERSION)/example/prometheus-operator-crd

.PHONY: crds
crds:
	go mod download $(GATEWAY_API_MODULE)@$(GATEWAY_API_VERSION) $(PROMETHEUS_OPERATOR_MODULE)@$(PROMETHEUS_OPERATOR_VERSION)

.PHONY: charts
charts: venv $(HELM_BIN) $(MINIO_BIN) crds ## Helm charts: lint, render, schemas, assertions (offline)
	LABSTACK_CRD_DIRS=$(CRD_DIRS) $(PYTEST) tests/charts

.PHONY: infra
infra: lab ## testinfra against the deployed sandbox
	$(PYTEST) tests/infra

.PHONY: test
test: lint unit charts infra ## everything: lint, unit, chart, infra and end-to-end tests
