#!/usr/bin/env bash
# Make an image of one static binary and nothing else (no registry, no base
# image): a root filesystem holding /NAME (NAME = the binary's file name
# without its -VERSION suffix), `docker import`ed with ENTRYPOINT ["/NAME"].
#   1. the image IMAGE exists with the label labstack.binary.sha256 equal to
#      the binary's sha256 -> nothing to do (an import makes a new image id
#      every time, and the node archives must stay the same bytes);
#   2. otherwise import it (the old image, if any, loses the tag).
# Usage: images/static/build.sh IMAGE BINARY ENTRYPOINT_NAME
#   images/static/build.sh labstack/pause:1.0.0 build/pause/pause pause
set -euo pipefail

usage() { echo "usage: $0 IMAGE BINARY ENTRYPOINT_NAME" >&2; exit 2; }
[[ $# -eq 3 ]] || usage
image=$1 binary=$2 entry=$3
[[ -f $binary && -x $binary ]] || { echo "image $image: $binary is not an executable file" >&2; exit 1; }
[[ $entry =~ ^[a-z0-9][a-z0-9._-]*$ ]] || { echo "image $image: bad entrypoint name '$entry'" >&2; exit 1; }

sha=$(sha256sum "$binary" | cut -d' ' -f1)
current=$(docker image inspect -f '{{index .Config.Labels "labstack.binary.sha256"}}' "$image" 2>/dev/null || true)
if [[ $current == "$sha" ]]; then
    echo "image $image: present (binary sha256 ${sha:0:12})"
    exit 0
fi

root=$(mktemp -d)
trap 'rm -rf "$root"' EXIT
install -m 0755 "$binary" "$root/$entry"
# An image needs no title beyond its name: labstack/pause:1.0.0 ->
# labstack-pause, version 1.0.0.
name=${image%:*} tag=${image##*:}
tar -C "$root" --numeric-owner --owner=0 --group=0 -c . \
    | docker import --change "ENTRYPOINT [\"/$entry\"]" \
        --change "LABEL org.opencontainers.image.title=${name//\//-} org.opencontainers.image.version=$tag labstack.binary.sha256=$sha" \
        - "$image" >/dev/null
echo "image $image: imported (binary sha256 ${sha:0:12})"
