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
	@grep -hE '^[a-z0-9-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-16s %s\n", $$1, $$2}'

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

# ----------------------------------------------------------------- wheelhouse
# The training workload's wheels, made from uv.lock on this machine: the
# images and the cluster's workload environment install from it offline
# (pip inside images and nodes cannot reach PyPI). At its top level:
# requirements.txt (hashes) and every locked wheel; in project/: the
# workload's own wheel and BUILD_INFO.json (the commit it was built from).
# Apart, so that a new commit leaves the images' dependency layer cached.
WHEELHOUSE := build/wheelhouse
# Third-party wheels: downloaded once per uv.lock into the cache.
LOCKED_WHEELS := $(LABSTACK_CACHE)/wheels/$(shell sha256sum uv.lock | cut -c1-16)
$(LOCKED_WHEELS)/.complete: uv.lock | $(VENV)/.synced
	rm -rf $(LOCKED_WHEELS) && mkdir -p $(LOCKED_WHEELS)
	uv export --quiet --frozen --no-dev --no-emit-project --no-header --format requirements-txt -o $(LOCKED_WHEELS)/requirements.txt
	$(PY) -m pip download --quiet --disable-pip-version-check --only-binary=:all: \
		--dest $(LOCKED_WHEELS) -r $(LOCKED_WHEELS)/requirements.txt
	@touch $@
WORKLOAD_SOURCES := $(shell find workload -name '*.py' -not -path '*/__pycache__/*') slurm/job.sbatch
$(WHEELHOUSE)/.complete: $(LOCKED_WHEELS)/.complete pyproject.toml $(WORKLOAD_SOURCES)
	rm -rf $(WHEELHOUSE) && mkdir -p $(WHEELHOUSE)/project
	cp -l $(LOCKED_WHEELS)/*.whl $(LOCKED_WHEELS)/requirements.txt $(WHEELHOUSE)/ 2>/dev/null \
		|| cp $(LOCKED_WHEELS)/*.whl $(LOCKED_WHEELS)/requirements.txt $(WHEELHOUSE)/
	uv build --quiet --wheel --out-dir $(WHEELHOUSE)/project
	$(PY) -m workload.buildinfo > $(WHEELHOUSE)/project/BUILD_INFO.json
	@touch $@

.PHONY: wheelhouse
wheelhouse: $(WHEELHOUSE)/.complete ## the workload's wheels from uv.lock (offline installs)

# --------------------------------------------------------------------- images
# Every image the lab runs, built here from local sources (no registry):
#   labstack/base:SUITE           debootstrapped Debian (images/base/build.sh)
#   labstack/node:SUITE           a sandbox host (systemd)
#   labstack/training:VERSION     the workload from the wheelhouse; VERSION is
#                                 pyproject's, also tagged VERSION-COMMIT (the
#                                 wheelhouse's commit, 12 hex, -dirty if so)
#   labstack/mlflow:VERSION       the MLflow server, pins of the mlflow role
#   labstack/minio:VERSION        MinIO compiled from versions.env's pin
#   labstack/go:GOVERSION         build stage only: this host's Go toolchain
# Docker's layer cache makes a second build quick. The wheelhouses are the
# build contexts themselves (-f names the Dockerfile): a context cannot
# follow a symlink out of itself, and nothing else goes in the images.
# Name, size and digest of images.
IMAGE_LS := docker image ls --no-trunc --format '{{.Repository}}:{{.Tag}}\t{{.Size}}\t{{.ID}}'
WORKLOAD_VERSION := $(shell sed -n 's/^version = "\(.*\)"$$/\1/p' pyproject.toml)
TRAINING_IMAGE ?= labstack/training:$(WORKLOAD_VERSION)
# The end-to-end tests run this tag.
export LABSTACK_TRAINING_IMAGE := $(TRAINING_IMAGE)

# The MLflow server's pins are the mlflow role's (one place for both).
MLFLOW_ROLE_DEFAULTS := ansible/roles/mlflow/defaults/main.yml
role_default = $(or $(shell sed -n 's/^$(1): *"\{0,1\}\([^"]*\)"\{0,1\} *$$/\1/p' $(MLFLOW_ROLE_DEFAULTS)),$(error $(MLFLOW_ROLE_DEFAULTS): no $(1)))
MLFLOW_VERSION := $(call role_default,mlflow_version)
MLFLOW_PYTHON_VERSION := $(call role_default,mlflow_python_version)
MLFLOW_IMAGE ?= labstack/mlflow:$(MLFLOW_VERSION)
export LABSTACK_MLFLOW_IMAGE := $(MLFLOW_IMAGE)
MLFLOW_WHEELHOUSE := build/wheelhouse-mlflow
# The revision label of the mlflow and minio images: the last commit that
# changed what they are built from (not HEAD: an unrelated commit would give
# the same server a new image id).
MLFLOW_INPUTS := images/mlflow $(MLFLOW_ROLE_DEFAULTS) uv.lock
MINIO_INPUTS := images/minio images/go versions.env

MINIO_IMAGE ?= labstack/minio:$(MINIO_VERSION)
export LABSTACK_MINIO_IMAGE := $(MINIO_IMAGE)
# Where the host's Go module proxy is, and the CA bundle the host trusts to
# reach it (here an egress proxy's CA is in it; the images have none).
HOST_CA_BUNDLE ?= $(or $(SSL_CERT_FILE),/etc/ssl/certs/ca-certificates.crt)

.PHONY: images images-base images-node images-training images-mlflow images-minio
images: images-node images-training images-mlflow images-minio ## build every image (cached), print sizes and digests
	@$(IMAGE_LS) | grep '^labstack/' | sort | column -t

images-base: prereqs
	images/base/build.sh $(BASE_IMAGE) $(DEBIAN_SUITE) $(DEBIAN_MIRROR)

images-node: images-base ## the sandbox's host image
	docker build --quiet --build-arg BASE_IMAGE=$(BASE_IMAGE) -t $(NODE_IMAGE) images/node

images-training: images-base $(WHEELHOUSE)/.complete ## the training image (the training-job chart runs it)
	info=$$(python3 -c 'import json, sys; i = json.load(open(sys.argv[1])); \
		print(i["git.commit"], "-dirty" if i["git.dirty"] == "True" else "")' $(WHEELHOUSE)/project/BUILD_INFO.json); \
	read -r commit dirty <<<"$$info"; \
	docker build -f images/training/Dockerfile --build-arg BASE_IMAGE=$(BASE_IMAGE) \
		--build-arg GIT_COMMIT=$$commit --build-arg VERSION=$(WORKLOAD_VERSION) \
		-t $(TRAINING_IMAGE) -t $(TRAINING_IMAGE)-$${commit:0:12}$$dirty $(WHEELHOUSE)
	@$(IMAGE_LS) $(TRAINING_IMAGE)

# The server's requirements: the role's pins, every other version as in
# uv.lock (constraints; minio, flask-wtf and pip come from there), hashed.
$(MLFLOW_WHEELHOUSE)/.complete: $(MLFLOW_ROLE_DEFAULTS) uv.lock | $(VENV)/.synced
	rm -rf $(@D) && mkdir -p $(@D)
	printf '%s\n' 'mlflow[auth]==$(MLFLOW_VERSION)' \
		'psycopg2-binary==$(call role_default,mlflow_psycopg2_version)' \
		'boto3==$(call role_default,mlflow_boto3_version)' minio pip > $(@D)/requirements.in
	uv export --quiet --frozen --all-groups --no-emit-project --no-hashes --no-header \
		--format requirements-txt -o $(@D)/constraints.txt
	uv pip compile --quiet --generate-hashes --python-version $(MLFLOW_PYTHON_VERSION) \
		--python-platform x86_64-manylinux_2_28 -c $(@D)/constraints.txt \
		-o $(@D)/requirements.txt $(@D)/requirements.in
	$(PY) -m pip download --quiet --disable-pip-version-check --only-binary=:all: \
		--implementation cp --python-version $(MLFLOW_PYTHON_VERSION) \
		--platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 \
		--platform manylinux2014_x86_64 --dest $(@D) -r $(@D)/requirements.txt
	@touch $@

images-mlflow: images-base $(MLFLOW_WHEELHOUSE)/.complete ## the MLflow server image
	docker build -f images/mlflow/Dockerfile --build-arg BASE_IMAGE=$(BASE_IMAGE) \
		--build-arg PYTHON_VERSION=$(MLFLOW_PYTHON_VERSION) --build-arg VERSION=$(MLFLOW_VERSION) \
		--build-arg GIT_COMMIT=$$(git log -1 --format=%H -- $(MLFLOW_INPUTS)) \
		-t $(MLFLOW_IMAGE) $(MLFLOW_WHEELHOUSE)

# Compiling MinIO takes 10-15 minutes on 2 cores (once; cached after).
images-minio: images-base ## the MinIO server image, compiled from source
	go_image=labstack/go:$$(go env GOVERSION); \
	images/go/build.sh $$go_image $(BASE_IMAGE) $(HOST_CA_BUNDLE); \
	docker build -f images/minio/Dockerfile --build-arg GO_IMAGE=$$go_image \
		--build-arg BASE_IMAGE=$(BASE_IMAGE) --build-arg GOPROXY=$$(go env GOPROXY) \
		--build-arg GOSUMDB=$$(go env GOSUMDB) --build-arg MINIO_MODULE=$(MINIO_MODULE) \
		--build-arg MINIO_VERSION=$(MINIO_VERSION) \
		--build-arg GIT_COMMIT=$$(git log -1 --format=%H -- $(MINIO_INPUTS)) \
		-t $(MINIO_IMAGE) images/minio

# -------------------------------------------------------------------- sandbox
.PHONY: sandbox
sandbox: venv images-node $(VAULT_PASSWORD_FILE) ## create (or converge) the sandbox's containers
	$(ANSIBLE_PLAYBOOK) -i $(SANDBOX_INVENTORY) ansible/sandbox.yml -e sandbox_node_image=$(NODE_IMAGE)

.PHONY: lab
lab: sandbox $(MINIO_BIN) $(WHEELHOUSE)/.complete ## build what is missing, deploy site.yml to the sandbox, print the summary
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

.PHONY: e2e
e2e: lab ## end-to-end: the labstack CLI submits real runs to the sandbox's Slurm
	$(PYTEST) tests/e2e

.PHONY: images-test
images-test: venv $(MINIO_BIN) images ## the images run for real: the demo, torchrun, MLflow, MinIO, Apptainer
	$(PYTEST) tests/images

.PHONY: test
# images-test is not part of `test`: on a fresh 2-core machine the image
# builds (training 12 min, MinIO's compile 8) would take CI past its limit.
test: lint unit charts infra e2e ## lint, unit, chart, infra and end-to-end tests (not images-test)
