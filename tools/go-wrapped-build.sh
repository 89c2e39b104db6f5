#!/usr/bin/env bash
# Build the commands of a Go module whose go.mod replaces its own sibling
# modules by relative paths (Kubernetes' ./staging/..., etcd's ../api):
# `go install MODULE/cmd/X@VERSION` refuses such a go.mod. A throwaway
# wrapper module requires MODULE@VERSION and points each of those replaces at
# the published SIBLING_VERSION of the sibling instead; every other
# dependency is what MODULE's own go.mod says (checked against the sum DB).
#
#   tools/go-wrapped-build.sh OUTDIR MODULE VERSION SIBLING_VERSION LDFLAGS PACKAGE...
#
# Each PACKAGE's binary lands as OUTDIR/NAME-VERSION with its sha256 in
# OUTDIR/NAME-VERSION.sha256 (the layout the roles read), stripped, static
# (CGO_ENABLED=0), -trimpath. Build tags come from GOFLAGS (-tags=...).
set -euo pipefail
[[ $# -ge 6 ]] || { echo "usage: $0 OUTDIR MODULE VERSION SIBLING_VERSION LDFLAGS PACKAGE..." >&2; exit 2; }
outdir=$1 module=$2 version=$3 sibling_version=$4 ldflags=$5
shift 5
mkdir -p "$outdir"
work=$(mktemp -d "$outdir/.build-XXXXXX")
trap 'rm -rf "$work"' EXIT
# A build cache of its own, removed with the wrapper: the binaries are what
# is kept (OUTDIR, keyed by version), and Kubernetes' cache alone is ~5 GB of
# a disk the lab's images need.
export GOCACHE="$work/cache"

gomod=$(go mod download -json "$module@$version" | python3 -c 'import json, sys; print(json.load(sys.stdin)["GoMod"])')
cd "$work"
go mod init labstack.invalid/wrapper >/dev/null 2>&1
go mod edit -require="$module@$version"
# The relative replaces of required siblings (others, such as etcd's
# ./FORBIDDEN_DEPENDENCY guards, name modules nothing requires).
siblings=$(go mod edit -json "$gomod" | python3 -c '
import json, sys
mod = json.load(sys.stdin)
required = {r["Path"] for r in mod.get("Require") or []}
for r in mod.get("Replace") or []:
    if r["New"]["Path"].startswith(".") and r["Old"]["Path"] in required:
        print(r["Old"]["Path"])')
[[ -n $siblings ]] || { echo "$0: $module@$version replaces no sibling module; use go install" >&2; exit 1; }
for sibling in $siblings; do
    go mod edit -replace="$sibling=$sibling@$sibling_version"
done
echo "go-wrapped-build: $module@$version, $(wc -w <<<"$siblings") siblings at $sibling_version"
GOFLAGS="${GOFLAGS:-} -mod=mod" CGO_ENABLED=0 go build -trimpath -ldflags "-s -w $ldflags" -o "$work/bin/" "$@"
cd "$work/bin"
for bin in *; do
    mv "$bin" "$outdir/$bin-$version"
    (cd "$outdir" && sha256sum "$bin-$version" >"$bin-$version.sha256")
done
