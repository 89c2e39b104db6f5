"""The manifest of a dataset version: every file's relative path, size, sha256 and,
once published, its S3 VersionId (readers fetch exactly that object version, so
a later write to the same key changes nothing they read)."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, replace
from pathlib import Path, PurePosixPath

MANIFEST_NAME = "MANIFEST.json"
CHUNK = 1 << 20


class ManifestError(ValueError):
    """A manifest is malformed, or a file does not match it."""


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def check_relative(rel: str) -> str:
    """`rel` if it is a safe relative POSIX path (no `..`, not absolute), else ManifestError."""
    pure = PurePosixPath(rel)
    if not rel or pure.is_absolute() or ".." in pure.parts or rel != pure.as_posix():
        raise ManifestError(f"unsafe path in manifest: {rel!r}")
    return rel


@dataclass(frozen=True)
class FileEntry:
    path: str
    size: int
    sha256: str
    version_id: str = ""  # "" in manifests published before versions were pinned


@dataclass(frozen=True)
class Manifest:
    name: str
    version: str
    files: tuple[FileEntry, ...]

    @classmethod
    def of_directory(cls, root: Path, name: str, version: str) -> Manifest:
        entries = []
        for path in sorted(p for p in root.rglob("*") if p.is_file()):
            rel = path.relative_to(root).as_posix()
            entries.append(FileEntry(rel, path.stat().st_size, sha256_file(path)))
        if not entries:
            raise ManifestError(f"{root}: no files to publish")
        return cls(name, version, tuple(entries))

    def pinned(self, version_ids: dict[str, str]) -> Manifest:
        """This manifest with each file's S3 VersionId."""
        files = tuple(replace(f, version_id=version_ids[f.path]) for f in self.files)
        return replace(self, files=files)

    def to_json(self) -> bytes:
        body = {
            "name": self.name,
            "version": self.version,
            "files": [
                {"path": f.path, "size": f.size, "sha256": f.sha256}
                | ({"version_id": f.version_id} if f.version_id else {})
                for f in self.files
            ],
        }
        return json.dumps(body, indent=1, sort_keys=True).encode()

    @classmethod
    def from_json(cls, raw: bytes, origin: str) -> Manifest:
        try:
            body = json.loads(raw)
            files = tuple(
                FileEntry(
                    check_relative(f["path"]),
                    int(f["size"]),
                    str(f["sha256"]),
                    str(f.get("version_id", "")),
                )
                for f in body["files"]
            )
            return cls(str(body["name"]), str(body["version"]), files)
        except (KeyError, TypeError, ValueError) as exc:
            raise ManifestError(f"{origin}: malformed manifest ({exc})") from None

    @property
    def digest(self) -> str:
        """sha256 of the canonical manifest: the identity of the version's content."""
        return hashlib.sha256(self.to_json()).hexdigest()

    @property
    def total_bytes(self) -> int:
        return sum(f.size for f in self.files)
