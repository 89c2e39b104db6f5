#!/usr/bin/env bash
# Make the Debian base image every other image builds on, in this order:
#   1. the image NAME already exists locally            -> nothing to do;
#   2. debian:SUITE exists locally (a site with a registry pulled it) -> tag it;
#   3. otherwise debootstrap a minbase SUITE and `docker import` it, because
#      no registry may be reachable (an air-gapped site, or this build machine).
# Usage: images/base/build.sh NAME SUITE MIRROR
set -euo pipefail

usage() { echo "usage: $0 IMAGE_NAME DEBIAN_SUITE DEBIAN_MIRROR" >&2; exit 2; }
[[ $# -eq 3 ]] || usage
name=$1 suite=$2 mirror=$3

if docker image inspect "$name" >/dev/null 2>&1; then
    echo "base image $name: present"
    exit 0
fi
if docker image inspect "debian:$suite" >/dev/null 2>&1; then
    docker tag "debian:$suite" "$name"
    echo "base image $name: tagged from local debian:$suite"
    exit 0
fi
command -v debootstrap >/dev/null || {
    echo "base image $name: neither it nor debian:$suite exists locally, and debootstrap" \
         "is not installed (apt-get install debootstrap) to build it" >&2
    exit 1
}
[[ $(id -u) -eq 0 ]] || { echo "base image $name: debootstrap needs root" >&2; exit 1; }

root=$(mktemp -d /var/tmp/labstack-base.XXXXXX)
trap 'rm -rf "$root"' EXIT
echo "base image $name: debootstrap $suite from $mirror ..."
debootstrap --variant=minbase "$suite" "$root" "$mirror" >"$root.log" 2>&1 || {
    tail -20 "$root.log" >&2; echo "base image $name: debootstrap failed (log: $root.log)" >&2; exit 1
}
rm -f "$root.log"
# A minbase tree knows only SUITE main; a server also needs its updates.
cat >"$root/etc/apt/sources.list" <<SOURCES
deb $mirror $suite main
deb $mirror $suite-updates main
deb http://deb.debian.org/debian-security $suite-security main
SOURCES
rm -rf "$root"/var/lib/apt/lists/* "$root"/var/cache/apt/archives/*.deb
tar -C "$root" --numeric-owner -c . \
    | docker import --change 'CMD ["/bin/bash"]' \
        --change "LABEL org.opencontainers.image.title=labstack-base org.opencontainers.image.version=$suite" \
        - "$name" >/dev/null
echo "base image $name: built with debootstrap"
