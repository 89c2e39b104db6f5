"""Publish a directory or an archive as an immutable dataset version in S3.

A version is immutable because of what readers trust, not because nobody can
write to its keys (a curator can): the first version of its MANIFEST.json (the
`datasets` bucket is versioned; that first one was put with If-None-Match) pins
every file's S3 VersionId, and readers fetch exactly those object versions and
check their sha256. Overwriting a key, the manifest's included, only adds a
version no reader uses; deleting an object version takes the admin (no service
user may).
"""

from __future__ import annotations

import re
import shutil
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from botocore.exceptions import ClientError

from workload.data.manifest import MANIFEST_NAME, Manifest

NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")
# Files above this size go up in parts of PART_SIZE (one PUT takes at most 5 GiB).
SINGLE_PUT_MAX = 512 << 20
PART_SIZE = 128 << 20


class DatasetExistsError(FileExistsError):
    """A dataset version, once published, is never overwritten."""


def check_name(label: str, value: str) -> str:
    """VALUE if it may name a dataset or a version (LABEL: which), else ValueError."""
    if not NAME_RE.fullmatch(value):
        raise ValueError(
            f"dataset {label} {value!r} must match {NAME_RE.pattern} (letters, digits, . _ -)"
        )
    return value


def version_prefix(name: str, version: str) -> str:
    return f"{check_name('name', name)}/{check_name('version', version)}/"


def manifest_versions(client: Any, bucket: str, name: str, version: str) -> list[str]:
    """The VersionIds of the version's MANIFEST.json, oldest first (delete markers
    aside): the first is the published one."""
    key = version_prefix(name, version) + MANIFEST_NAME
    found: list[str] = []
    for page in client.get_paginator("list_object_versions").paginate(Bucket=bucket, Prefix=key):
        found += [v["VersionId"] for v in page.get("Versions", []) if v["Key"] == key]
    return found[::-1]  # S3 lists the versions of a key newest first


def exists(client: Any, bucket: str, name: str, version: str) -> bool:
    return bool(manifest_versions(client, bucket, name, version))


def _upload(client: Any, path: Path, bucket: str, key: str) -> str:
    """Upload PATH to KEY; returns the object version it created."""
    if path.stat().st_size <= SINGLE_PUT_MAX:
        with path.open("rb") as body:
            put = client.put_object(Bucket=bucket, Key=key, Body=body)
    else:
        upload_id = client.create_multipart_upload(Bucket=bucket, Key=key)["UploadId"]
        try:
            parts = []
            with path.open("rb") as source:
                while chunk := source.read(PART_SIZE):
                    number = len(parts) + 1
                    part = client.upload_part(
                        Bucket=bucket, Key=key, UploadId=upload_id, PartNumber=number, Body=chunk
                    )
                    parts.append({"PartNumber": number, "ETag": part["ETag"]})
            put = client.complete_multipart_upload(
                Bucket=bucket, Key=key, UploadId=upload_id, MultipartUpload={"Parts": parts}
            )
        except BaseException:
            client.abort_multipart_upload(Bucket=bucket, Key=key, UploadId=upload_id)
            raise
    version_id = put.get("VersionId")
    if not version_id or version_id == "null":
        raise ValueError(
            f"s3://{bucket} is not versioned: a dataset version's objects cannot be pinned "
            "(enable versioning on the bucket)"
        )
    return version_id


def publish(
    client: Any, source: Path, name: str, version: str, bucket: str = "datasets", workers: int = 8
) -> Manifest:
    """Upload `source` (a directory, or an archive file uploaded as one object).

    The manifest, with the VersionId of every object this call uploaded, is
    written last with a conditional put (If-None-Match), so a version exists
    only once all its files are there, and of two publishers racing for one
    version the loser's objects are versions nobody reads.
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

        def upload(rel: str) -> tuple[str, str]:
            return rel, _upload(client, root / rel, bucket, prefix + rel)

        with ThreadPoolExecutor(max_workers=workers) as pool:
            manifest = manifest.pinned(dict(pool.map(upload, [f.path for f in manifest.files])))
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
