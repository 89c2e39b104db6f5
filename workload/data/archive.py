"""Random access to the members of a tar, a zip or a directory, safe in DataLoader workers.

A reader holds only the path and an index of member names until it is first
read in a process; open handles are per process id, so a reader created in the
parent and pickled or forked into DataLoader worker processes opens its own
handle in each worker instead of sharing a file offset between processes.
"""

from __future__ import annotations

import os
import tarfile
import zipfile
from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any


class ArchiveReader(ABC):
    def __init__(self, path: Path) -> None:
        self.path = path
        self._pid: int | None = None
        self._handle: Any = None

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_pid"] = None
        state["_handle"] = None
        return state

    def _open_here(self) -> Any:
        if self._pid != os.getpid() or self._handle is None:
            self._handle = self._open()
            self._pid = os.getpid()
        return self._handle

    @abstractmethod
    def _open(self) -> Any: ...

    @abstractmethod
    def names(self) -> list[str]:
        """Member names (files only), sorted."""

    @abstractmethod
    def read(self, name: str) -> bytes:
        """The bytes of member `name`; KeyError naming it and the archive when absent."""

    def _missing(self, name: str) -> KeyError:
        return KeyError(f"{name!r} is not in {self.path}")


class TarReader(ArchiveReader):
    """Uncompressed tar: members are read by offset with pread (no shared file position)."""

    def __init__(self, path: Path) -> None:
        super().__init__(path)
        with tarfile.open(path, "r:") as tar:
            self._index = {m.name: (m.offset_data, m.size) for m in tar.getmembers() if m.isfile()}

    def _open(self) -> int:
        return os.open(self.path, os.O_RDONLY)

    def names(self) -> list[str]:
        return sorted(self._index)

    def read(self, name: str) -> bytes:
        try:
            offset, size = self._index[name]
        except KeyError:
            raise self._missing(name) from None
        return os.pread(self._open_here(), size, offset)


class ZipReader(ArchiveReader):
    def _open(self) -> zipfile.ZipFile:
        return zipfile.ZipFile(self.path)

    def names(self) -> list[str]:
        with zipfile.ZipFile(self.path) as archive:
            return sorted(i.filename for i in archive.infolist() if not i.is_dir())

    def read(self, name: str) -> bytes:
        try:
            return self._open_here().read(name)
        except KeyError:
            raise self._missing(name) from None


class DirectoryReader(ArchiveReader):
    def _open(self) -> None:
        return None

    def names(self) -> list[str]:
        return sorted(
            p.relative_to(self.path).as_posix() for p in self.path.rglob("*") if p.is_file()
        )

    def read(self, name: str) -> bytes:
        target = (self.path / name).resolve()
        if not target.is_relative_to(self.path.resolve()):
            raise self._missing(name)
        try:
            with target.open("rb") as handle:
                return handle.read()
        except (FileNotFoundError, IsADirectoryError):
            raise self._missing(name) from None


def open_archive(path: Path) -> ArchiveReader:
    """A reader for `path`: a directory, a .zip, or an uncompressed .tar."""
    if path.is_dir():
        return DirectoryReader(path)
    if not path.exists():
        raise FileNotFoundError(f"archive {path} does not exist")
    if zipfile.is_zipfile(path):
        return ZipReader(path)
    if tarfile.is_tarfile(path):
        with path.open("rb") as raw:
            magic = raw.read(3)
        if magic[:2] == b"\x1f\x8b" or magic == b"BZh" or magic[:3] == b"\xfd7z":
            raise ValueError(
                f"{path}: compressed tar has no random access; publish it uncompressed"
            )
        return TarReader(path)
    raise ValueError(f"{path}: neither a directory, a zip nor a tar archive")
