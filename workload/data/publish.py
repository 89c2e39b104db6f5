"""Publish a directory or an archive as an immutable dataset version in S3."""

from __future__ import annotations

import re
import shutil
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from botocore.exceptions import ClientError

from workload.data.manifest import MANIFEST_NAME, Manifest

NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")


class DatasetExistsError(FileExistsError):
    """A dataset version, once published, is never overwritten."""


def version_prefix(name: str, version: str) -> str:
    for label, value in (("name", name), ("version", version)):
        if not NAME_RE.match(value):
            raise ValueError(
                f"dataset {label} {value!r} must match {NAME_RE.pattern} (letters, digits, . _ -)"
            )
    return f"{name}/{version}/"


def exists(client: Any, bucket: str, name: str, version: str) -> bool:
    try:
        client.head_object(Bucket=bucket, Key=version_prefix(name, version) + MANIFEST_NAME)
    except ClientError as exc:
        if exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") == 404:
            return False
        raise
    return True


def publish(
    client: Any, source: Path, name: str, version: str, bucket: str = "datasets", workers: int = 8
) -> Manifest:
    """Upload `source` (a directory, or an archive file uploaded as one object).

    The manifest is written last, with a conditional put (If-None-Match), so a
    version exists only once all its files are there, and two publishers racing
    for one version cannot both win.
    """
    prefix = version_prefix(name, version)
    if not source.exists():
        raise FileNotFoundError(f"dataset source {source} does not exist")
    if exists(client, bucket, name, version):
        raise DatasetExistsError(f"s3://{bucket}/{prefix} is already published; pick a new version")
    with tempfile.TemporaryDirectory() as staging:
        root = source
        if source.is_file():  # an archive: one object, read through workload.data.archive
            root = Path(staging)
            shutil.copy2(source, root / source.name)
        manifest = Manifest.of_directory(root, name, version)

        def upload(rel: str) -> None:
            client.upload_file(str(root / rel), bucket, prefix + rel)

        with ThreadPoolExecutor(max_workers=workers) as pool:
            list(pool.map(upload, [f.path for f in manifest.files]))
    try:
        client.put_object(
            Bucket=bucket,
            Key=prefix + MANIFEST_NAME,
            Body=manifest.to_json(),
            ContentType="application/json",
            IfNoneMatch="*",
        )
    except ClientError as exc:
        if exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") in (409, 412):
            raise DatasetExistsError(
                f"s3://{bucket}/{prefix} was published concurrently; pick a new version"
            ) from None
        raise
    return manifest
