#!/usr/bin/env bash
# Make a Go toolchain image (images/go/Dockerfile) from this host's Go:
#   1. the image NAME already exists locally -> nothing to do;
#   2. otherwise BASE_IMAGE + `go env GOROOT` + the host's CA bundle.
# A site with a registry passes GO_IMAGE=golang:... to images/minio instead.
# Usage: images/go/build.sh NAME BASE_IMAGE CA_BUNDLE
set -euo pipefail

usage() { echo "usage: $0 IMAGE_NAME BASE_IMAGE CA_BUNDLE" >&2; exit 2; }
[[ $# -eq 3 ]] || usage
name=$1 base=$2 ca=$3

if docker image inspect "$name" >/dev/null 2>&1; then
    echo "go image $name: present"
    exit 0
fi
command -v go >/dev/null || { echo "go image $name: no go on PATH to copy" >&2; exit 1; }
[[ -r $ca ]] || { echo "go image $name: CA bundle $ca is not readable" >&2; exit 1; }
goroot=$(go env GOROOT)
ca=$(realpath "$ca")
here=$(cd "$(dirname "$0")" && pwd)

# The build context is one tar stream (nothing copied on disk): the
# Dockerfile, and GOROOT and the CA bundle under their paths relative to /.
echo "go image $name: $(go env GOVERSION) from $goroot"
tar -c --owner=0 --group=0 -C "$here" Dockerfile -C / "${goroot#/}" "${ca#/}" \
    | docker build --quiet --build-arg BASE_IMAGE="$base" \
        --build-arg GOROOT_PATH="${goroot#/}" --build-arg CA_BUNDLE_PATH="${ca#/}" \
        -t "$name" - >/dev/null
echo "go image $name: built"
