#!/usr/bin/env bash
# Check, and where possible install, what labstack needs on the machine that
# runs it: Docker (engine running), debootstrap, Go, Python 3.11, uv, make.
#   tools/prereqs.sh           check; as root on Debian/Ubuntu also install
#   tools/prereqs.sh --check   only check, change nothing
# Idempotent: what is present is left alone. Exit 1 names what is missing.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=../versions.env
source versions.env

check_only=false
[[ ${1:-} == --check ]] && check_only=true
can_install=false
if ! $check_only && [[ $(id -u) -eq 0 ]] && command -v apt-get >/dev/null; then
    can_install=true
fi
missing=()

# Debian packages: the Docker engine, debootstrap (base image without a
# registry), column (make images' table), and gpg (the unit tests of the
# unseal shares' holders).
packages=()
command -v dockerd >/dev/null || packages+=(docker.io)
command -v debootstrap >/dev/null || packages+=(debootstrap)
command -v column >/dev/null || packages+=(bsdextrautils)
command -v gpg >/dev/null || packages+=(gnupg)
if ((${#packages[@]})); then
    if $can_install; then
        echo "prereqs: installing ${packages[*]}"
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${packages[@]}" >/dev/null
    else
        missing+=("Debian packages ${packages[*]} (apt-get install ${packages[*]})")
    fi
fi

# The Docker engine must answer.
if ! docker info >/dev/null 2>&1; then
    if $can_install && command -v dockerd >/dev/null; then
        if [[ -d /run/systemd/system ]]; then
            systemctl start docker
        else
            echo "prereqs: starting dockerd (log: /var/log/labstack-dockerd.log)"
            nohup dockerd >/var/log/labstack-dockerd.log 2>&1 &
        fi
        for _ in $(seq 60); do docker info >/dev/null 2>&1 && break; sleep 1; done
    fi
    docker info >/dev/null 2>&1 || missing+=("a running Docker engine (docker info fails)")
fi

# Go builds MinIO and the other pinned Go tools.
command -v go >/dev/null || missing+=("Go >= 1.24 (https://go.dev/doc/install)")

# Python 3.11 for the pinned environment; uv at the pinned version makes it.
command -v python3.11 >/dev/null || missing+=("Python 3.11 (python3.11 on PATH)")
if [[ $(uv --version 2>/dev/null | cut -d' ' -f2) != "$UV_VERSION" ]]; then
    if ! $check_only && command -v python3.11 >/dev/null; then
        echo "prereqs: installing uv $UV_VERSION"
        user=(); [[ $(id -u) -eq 0 ]] || user=(--user)
        python3.11 -m pip install -q "${user[@]}" "uv==$UV_VERSION"
    fi
    [[ $(uv --version 2>/dev/null | cut -d' ' -f2) == "$UV_VERSION" ]] \
        || missing+=("uv $UV_VERSION (python3.11 -m pip install uv==$UV_VERSION)")
fi

if ((${#missing[@]})); then
    printf 'prereqs: missing:\n' >&2
    printf '  - %s\n' "${missing[@]}" >&2
    exit 1
fi
echo "prereqs: docker $(docker version -f '{{.Server.Version}}'), $(go version | cut -d' ' -f3), $(python3.11 --version), uv $UV_VERSION"
