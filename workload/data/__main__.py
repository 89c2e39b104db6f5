"""`python -m workload.data publish|fetch|show ...`: dataset versions in S3."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from workload.data.cache import DatasetCache
from workload.data.publish import publish
from workload.s3 import S3Settings, check_access, ensure_bucket, make_client


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m workload.data", description=__doc__)
    parser.add_argument("--bucket", default="datasets", help="bucket holding dataset versions")
    sub = parser.add_subparsers(dest="command", required=True)
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

    client = make_client(S3Settings.from_env())
    if args.command == "publish":
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
            client, args.name, args.version, bucket=args.bucket, verify=args.verify
        )
        path, report = cache.fetch()
        print(
            f"{path}: {report.local_hits} cached, {report.from_shared} from shared cache, "
            f"{report.from_s3} from S3"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
