"""What a bucket holds: its published dataset versions, each with its manifest
(the first version of its MANIFEST.json, which pins the version's content) and
when it was published."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from workload.data.manifest import MANIFEST_NAME, Manifest, ManifestError
from workload.data.publish import NAME_RE, check_name, manifest_versions, version_prefix

_log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Published:
    manifest: Manifest
    raw: bytes  # the manifest as published, byte for byte
    published_at: datetime
    uri: str


def published(client: Any, bucket: str, name: str, version: str) -> Published:
    """NAME/VERSION as published; ManifestError if it is not, or if its manifest is
    malformed or describes another version."""
    found = manifest_versions(client, bucket, name, version)
    if not found:
        uri = f"s3://{bucket}/{version_prefix(name, version)}"
        raise ManifestError(f"{uri} is not published (no {MANIFEST_NAME})")
    return _read(client, bucket, name, version, found)


def _read(client: Any, bucket: str, name: str, version: str, found: list[str]) -> Published:
    """The version's manifest as first written (FOUND: its VersionIds, oldest first)."""
    prefix = version_prefix(name, version)
    key = prefix + MANIFEST_NAME
    if len(found) > 1:
        _log.warning(
            "s3://%s/%s was written %d times since it was published; using the first",
            bucket, key, len(found),
        )  # fmt: skip
    answer = client.get_object(Bucket=bucket, Key=key, VersionId=found[0])
    raw = answer["Body"].read()
    manifest = Manifest.from_json(raw, f"s3://{bucket}/{key}")
    if (manifest.name, manifest.version) != (name, version):
        raise ManifestError(f"s3://{bucket}/{key} describes {manifest.name}/{manifest.version}")
    return Published(manifest, raw, answer["LastModified"], f"s3://{bucket}/{prefix}")


def _folders(client: Any, bucket: str, prefix: str) -> list[str]:
    """The names of the 'folders' right under PREFIX."""
    found: list[str] = []
    pages = client.get_paginator("list_objects_v2").paginate(
        Bucket=bucket, Prefix=prefix, Delimiter="/"
    )
    for page in pages:
        found += [entry["Prefix"][len(prefix) : -1] for entry in page.get("CommonPrefixes", [])]
    return found


def catalog(client: Any, bucket: str, name: str | None = None) -> list[Published]:
    """Every published version in BUCKET (of dataset NAME only, if given), by name
    and then by publication time. A folder without a manifest (an upload under way,
    or abandoned) is no version, nor is one whose name no dataset may have."""
    names = [check_name("name", name)] if name is not None else _folders(client, bucket, "")
    found: list[Published] = []
    for dataset in filter(NAME_RE.fullmatch, names):
        for version in filter(NAME_RE.fullmatch, _folders(client, bucket, f"{dataset}/")):
            if versions := manifest_versions(client, bucket, dataset, version):
                found.append(_read(client, bucket, dataset, version, versions))
    return sorted(found, key=lambda p: (p.manifest.name, p.published_at))
