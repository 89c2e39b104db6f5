#!/usr/bin/env bash
# Write IMAGE to ARCHIVE with `docker save`, unless ARCHIVE already holds
# that very image: ARCHIVE.image-id records the image id it was saved from.
# The Kubernetes nodes copy these archives and `ctr -n k8s.io images import`
# them; an unchanged image keeps its archive untouched (same bytes, same
# mtime), so that copy is a no-op.
# The archive names the image as given (labstack/pause:1.0.0); containerd
# names it docker.io/labstack/pause:1.0.0 after the import, and the CRI plugin
# resolves the short name to that one.
# Usage: images/static/save.sh IMAGE ARCHIVE
set -euo pipefail

usage() { echo "usage: $0 IMAGE ARCHIVE" >&2; exit 2; }
[[ $# -eq 2 ]] || usage
image=$1 archive=$2

id=$(docker image inspect -f '{{.Id}}' "$image" 2>/dev/null) \
    || { echo "archive $archive: no image $image" >&2; exit 1; }
if [[ -f $archive && $(cat "$archive.image-id" 2>/dev/null) == "$id" ]]; then
    echo "archive $archive: up to date ($image)"
    exit 0
fi
mkdir -p "$(dirname "$archive")"
rm -f "$archive.image-id"
docker save -o "$archive.tmp" "$image"
chmod 0644 "$archive.tmp"
mv "$archive.tmp" "$archive"
echo "$id" >"$archive.image-id"
echo "archive $archive: saved $image ($(du -h "$archive" | cut -f1))"
