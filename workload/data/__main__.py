"""`python -m workload.data list|show|publish|fetch ...`: dataset versions in S3."""

from __future__ import annotations

import argparse
import sys
from datetime import UTC, datetime
from pathlib import Path

from workload.data.cache import DatasetCache
from workload.data.catalog import Published, catalog, published
from workload.data.manifest import ManifestError
from workload.data.publish import publish
from workload.s3 import S3AccessError, S3Settings, check_access, ensure_bucket, make_client


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m workload.data", description=__doc__)
    parser.add_argument("--bucket", default="datasets", help="bucket holding dataset versions")
    sub = parser.add_subparsers(dest="command", required=True)
    listing = sub.add_parser("list", help="the published versions, by dataset, oldest first")
    listing.add_argument("--name", help="of this dataset only")
    show = sub.add_parser("show", help="a published version: its manifest")
    show.add_argument("--name", required=True, help="dataset name")
    show.add_argument("--version", required=True, help="dataset version")
    show.add_argument("--files", action="store_true", help="list every file too")
    pub = sub.add_parser("publish", help="upload a directory or archive as NAME/VERSION")
    pub.add_argument("source", type=Path, help="directory or archive (tar, zip) to publish")
    pub.add_argument("--name", required=True, help="dataset name")
    pub.add_argument("--version", required=True, help="dataset version (immutable once published)")
    pub.add_argument("--create-bucket", action="store_true", help="create the bucket if missing")
    fetch = sub.add_parser(
        "fetch", help="materialise NAME/VERSION in DATA_PATH/DATA_EPHEMERAL_PATH"
    )
    fetch.add_argument("--name", required=True, help="dataset name")
    fetch.add_argument("--version", required=True, help="dataset version")
    fetch.add_argument("--verify", choices=["stat", "full"], default="stat", help="rehash policy")
    args = parser.parse_args(argv)
    try:
        _run(args)
    except (ManifestError, S3AccessError, ValueError, OSError) as error:
        parser.exit(1, f"{parser.prog}: {error}\n")
    return 0


def _run(args: argparse.Namespace) -> None:
    s3 = S3Settings.from_env()
    client = make_client(s3)
    if args.command == "list":
        check_access(client, args.bucket)
        print(_table(catalog(client, args.bucket, args.name)))
    elif args.command == "show":
        check_access(client, args.bucket)
        print(_details(published(client, args.bucket, args.name, args.version), args.files))
    elif args.command == "publish":
        if args.create_bucket:
            ensure_bucket(client, args.bucket, versioned=True)
        check_access(client, args.bucket)
        manifest = publish(client, args.source, args.name, args.version, bucket=args.bucket)
        print(
            f"published s3://{args.bucket}/{args.name}/{args.version}/: "
            f"{len(manifest.files)} files, "
            f"{manifest.total_bytes} bytes, manifest sha256 {manifest.digest}"
        )
    else:
        check_access(client, args.bucket)
        cache = DatasetCache.from_env(
            s3, args.name, args.version, bucket=args.bucket, verify=args.verify
        )
        path, report = cache.fetch()
        print(
            f"{path}: {report.local_hits} cached, {report.from_shared} from shared cache, "
            f"{report.from_s3} from S3"
        )


def _size(count: int) -> str:
    """COUNT bytes, in the largest binary unit that keeps it at 1 or more."""
    size, unit = float(count), "B"
    for bigger in ("KiB", "MiB", "GiB", "TiB"):
        if size < 1024:
            break
        size, unit = size / 1024, bigger
    return f"{size:.0f} B" if unit == "B" else f"{size:.1f} {unit}"


def _when(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M")


def _table(versions: list[Published]) -> str:
    """One line per version, within 80 columns (names and versions up to 24 characters
    each; longer ones are cut, the manifest digest names the version all the same)."""
    if not versions:
        return "no published dataset version"

    def cut(text: str) -> str:
        return text if len(text) <= 24 else text[:23] + "…"

    rows = [("dataset", "version", "published (UTC)", "files", "size", "manifest")]
    rows += [
        (
            cut(v.manifest.name),
            cut(v.manifest.version),
            _when(v.published_at),
            str(len(v.manifest.files)),
            _size(v.manifest.total_bytes),
            v.manifest.digest[:8],
        )
        for v in versions
    ]
    widths = [max(len(row[i]) for row in rows) for i in range(6)]
    right = (False, False, False, True, True, False)
    return "\n".join(
        "  ".join(
            cell.rjust(width) if align else cell.ljust(width)
            for cell, width, align in zip(row, widths, right, strict=True)
        ).rstrip()
        for row in rows
    )


def _details(version: Published, files: bool) -> str:
    manifest = version.manifest
    lines = [
        version.uri,
        f"  published  {_when(version.published_at)} UTC",
        f"  files      {len(manifest.files)}, {_size(manifest.total_bytes)}",
        f"  manifest   sha256 {manifest.digest}",
    ]
    if files:
        lines += ["", f"{'size':>10}  sha256    path"]
        lines += [f"{_size(f.size):>10}  {f.sha256[:8]}  {f.path}" for f in manifest.files]
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
