"""Read a dataset version through a two-level cache: S3 -> shared cache -> node-local copy.

Layout of each cache level (`DATA_PATH`, shared between nodes; `DATA_EPHEMERAL_PATH`,
node-local scratch), for dataset NAME version VERSION:

    NAME/VERSION/...                   the files, exactly as published
    NAME/VERSION.manifest.json         a copy of the published manifest (checked each fetch)
    NAME/VERSION.verified.json         stat() of each file when its hash last matched
    NAME/VERSION.lock                  flock: one process per level fills a version

Every file is written to a temporary name in its final directory and renamed
into place once its sha256 matched the manifest, so readers never see a partial
file. A file missing from both levels is downloaded into both at once; one the
shared level has is copied from there. A file whose size or mtime changed since
it was verified is hashed again, and refetched when it no longer matches
(`verify="full"` rehashes everything).
Files are not fsync'ed: a cache is refetchable, and after a machine crash
`verify="full"` (`python -m workload.data fetch --verify full`) rechecks it.
"""

from __future__ import annotations

import asyncio
import fcntl
import hashlib
import json
import logging
import os
import shutil
import tempfile
from collections.abc import AsyncIterator, Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from threading import Lock
from typing import TYPE_CHECKING, Any, Literal

import obstore
from obstore import exceptions as obstore_errors

from workload.data import catalog
from workload.data.manifest import CHUNK, FileEntry, Manifest, ManifestError
from workload.data.publish import version_prefix
from workload.s3 import S3AccessError, S3Settings, make_client, make_store

if TYPE_CHECKING:
    from obstore import GetOptions

_log = logging.getLogger(__name__)

Verify = Literal["stat", "full"]
# A chunk of a GET at least this large is hashed and written off the event loop.
_OFF_LOOP = 256 << 10


@dataclass
class FetchReport:
    """What one `fetch()` did, per file."""

    local_hits: int = 0
    from_shared: int = 0
    from_s3: int = 0
    bytes_from_s3: int = 0
    corrupt_replaced: list[str] = field(default_factory=list)
    _lock: Lock = field(default_factory=Lock, repr=False, compare=False)

    def add(self, attr: str, amount: int = 1) -> None:
        with self._lock:
            setattr(self, attr, getattr(self, attr) + amount)


@contextmanager
def _flock(path: Path) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a+") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _temporary(dest: Path) -> tuple[int, str]:
    """A new file of a unique name beside DEST. Not named after the pid: pods on one node
    share the cache, and in their own PID namespaces their processes often have one pid."""
    try:
        return tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".part", dir=dest.parent)
    except FileNotFoundError:  # the first file of its directory
        dest.parent.mkdir(parents=True, exist_ok=True)
        return tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".part", dir=dest.parent)


def _write_atomically(dest: Path, data: bytes) -> None:
    fd, tmp_name = _temporary(dest)
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(data)
        os.replace(tmp_name, dest)
    finally:
        Path(tmp_name).unlink(missing_ok=True)


@contextmanager
def _verified(dests: list[Path], entry: FileEntry, origin: str) -> Iterator[_HashingWriter]:
    """One writer to a temporary file beside each of DESTS; once the block ends, the size
    and sha256 of what it wrote are checked against ENTRY and each file renamed to its
    DEST. A failure leaves none of them."""
    temps: list[tuple[Any, str, Path]] = []
    try:
        with ExitStack() as stack:
            for dest in dests:
                fd, tmp_name = _temporary(dest)
                temps.append((stack.enter_context(os.fdopen(fd, "wb")), tmp_name, dest))
            hashing = _HashingWriter([raw for raw, _, _ in temps])
            yield hashing
        if hashing.size != entry.size or hashing.hexdigest() != entry.sha256:
            raise ManifestError(
                f"{origin}: got {hashing.size} bytes sha256 {hashing.hexdigest()[:12]}, "
                f"manifest says {entry.size} bytes sha256 {entry.sha256[:12]}"
            )
        for _, tmp_name, dest in temps:
            os.replace(tmp_name, dest)
    except BaseException:
        for _, tmp_name, _ in temps:
            Path(tmp_name).unlink(missing_ok=True)
        raise


class _HashingWriter:
    def __init__(self, raws: list[Any]) -> None:
        self.raws = raws
        self.digest = hashlib.sha256()
        self.size = 0

    def write(self, data: bytes | memoryview) -> None:
        self.digest.update(data)
        self.size += len(data)
        for raw in self.raws:
            raw.write(data)

    def hexdigest(self) -> str:
        return self.digest.hexdigest()


class _Level:
    """One cache directory (shared or node-local)."""

    def __init__(self, root: Path, name: str, version: str) -> None:
        self.root = root
        self.dir = root / name / version
        self.manifest_path = root / name / f"{version}.manifest.json"
        self.stamp_path = root / name / f"{version}.verified.json"
        self.lock_path = root / name / f"{version}.lock"

    def read_stamps(self) -> dict[str, list[int]]:
        try:
            return json.loads(self.stamp_path.read_text())
        except (FileNotFoundError, ValueError):
            return {}

    def write_stamps(self, stamps: dict[str, list[int]]) -> None:
        _write_atomically(self.stamp_path, json.dumps(stamps).encode())

    @staticmethod
    def stat_key(path: Path) -> list[int]:
        st = path.stat()
        return [st.st_size, st.st_mtime_ns, st.st_ino]

    def stamped(self, entry: FileEntry, stamps: dict[str, list[int]]) -> bool:
        """The file is unchanged (size, mtime, inode) since its hash last matched."""
        try:
            return stamps.get(entry.path) == self.stat_key(self.dir / entry.path)
        except FileNotFoundError:
            return False

    def valid(self, entry: FileEntry, stamps: dict[str, list[int]], verify: Verify) -> bool:
        path = self.dir / entry.path
        try:
            key = self.stat_key(path)
        except FileNotFoundError:
            return False
        if key[0] != entry.size:
            return False
        if verify == "stat" and stamps.get(entry.path) == key:
            return True
        digest = hashlib.sha256()
        with path.open("rb") as handle:
            while chunk := handle.read(CHUNK):
                digest.update(chunk)
        return digest.hexdigest() == entry.sha256


class DatasetCache:
    """A dataset version, materialised in the nearest cache level on `fetch()`.

    S3 is read with obstore, REQUESTS GETs in flight at once; WORKERS threads hash
    and copy files between the levels. The manifest is read with boto3."""

    def __init__(
        self,
        s3: S3Settings,
        name: str,
        version: str,
        *,
        bucket: str = "datasets",
        shared_root: Path | None = None,
        local_root: Path | None = None,
        workers: int = 8,
        requests: int = 64,
        verify: Verify = "stat",
    ) -> None:
        if workers < 1 or requests < 1:
            raise ValueError(f"workers ({workers}) and requests ({requests}) must be at least 1")
        self.client = make_client(s3)
        self.store = make_store(s3, bucket)
        self.requests = requests
        self.name = name
        self.version = version
        self.bucket = bucket
        self.prefix = version_prefix(name, version)
        self.levels = [_Level(r, name, version) for r in (local_root, shared_root) if r is not None]
        if not self.levels:
            raise ValueError("no cache directory: set DATA_PATH and/or DATA_EPHEMERAL_PATH")
        self.workers = workers
        self.verify: Verify = verify

    @classmethod
    def from_env(cls, s3: S3Settings, name: str, version: str, **kwargs: Any) -> DatasetCache:
        shared = os.environ.get("DATA_PATH")
        local = os.environ.get("DATA_EPHEMERAL_PATH")
        return cls(
            s3,
            name,
            version,
            shared_root=Path(shared) if shared else None,
            local_root=Path(local) if local else None,
            **kwargs,
        )

    @property
    def uri(self) -> str:
        return f"s3://{self.bucket}/{self.prefix}"

    def manifest(self) -> Manifest:
        """The version's published manifest (the first version of its MANIFEST.json in
        S3), asked of S3 every time: a cache level's copy is replaced when it differs
        (the shared level is writable by every job, so its copy proves nothing)."""
        published = catalog.published(self.client, self.bucket, self.name, self.version)
        for level in self.levels:
            try:
                cached = level.manifest_path.read_bytes()
            except FileNotFoundError:
                cached = None
            if cached != published.raw:
                if cached is not None:  # tampered with: trust none of the level's stamps
                    _log.warning(
                        "%s differs from the published manifest: replaced, every file "
                        "of the level is hashed again",
                        level.manifest_path,
                    )
                    level.stamp_path.unlink(missing_ok=True)
                _write_atomically(level.manifest_path, published.raw)
        return published.manifest

    def fetch(self) -> tuple[Path, FetchReport]:
        """Make every file present and verified in the nearest level; return its directory."""
        manifest = self.manifest()
        report = FetchReport()
        self._fill(0, list(manifest.files), report, [])
        return self.levels[0].dir, report

    def _fill(
        self, index: int, wanted: list[FileEntry], report: FetchReport, above: list[_Level]
    ) -> tuple[set[str], set[str]]:
        """Make `wanted` valid in level `index`. What it downloads from S3 is written into
        the levels ABOVE (whose locks the caller holds) at once too. Returns the paths
        hashed during this call, and those written into ABOVE."""
        level = self.levels[index]
        with _flock(level.lock_path):
            stamps = level.read_stamps()
            trusted = {e.path for e in wanted if self.verify == "stat" and level.stamped(e, stamps)}
            to_hash = [e for e in wanted if e.path not in trusted]
            checked = self._parallel(lambda e: (e, level.valid(e, stamps, "full")), to_hash)
            missing = [entry for entry, ok in checked if not ok]
            if index == 0:
                report.add("local_hits", len(wanted) - len(missing))
            for entry in missing:
                if (level.dir / entry.path).exists():
                    report.corrupt_replaced.append(f"{level.dir / entry.path}")
            hashed, written_above = {e.path for e in to_hash}, set[str]()
            if missing and index + 1 < len(self.levels):
                just_hashed, here = self._fill(index + 1, missing, report, [*above, level])
                source = self.levels[index + 1]
                copies = [e for e in missing if e.path not in here]
                self._parallel(
                    lambda e: self._copy(source, level, e, e.path in just_hashed, report),
                    copies,
                )
                written_above = here
            elif missing:
                self._download([level, *above], missing, report)
                written_above = {e.path for e in missing}
            hashed |= {e.path for e in missing}
            if trusted != {e.path for e in wanted}:
                for entry in wanted:
                    stamps[entry.path] = level.stat_key(level.dir / entry.path)
                level.write_stamps(stamps)
            return hashed, written_above

    def _parallel(self, func: Callable[[FileEntry], Any], entries: list[FileEntry]) -> list[Any]:
        if len(entries) <= 1:
            return [func(e) for e in entries]
        with ThreadPoolExecutor(max_workers=self.workers) as pool:
            return list(pool.map(func, entries))

    def _download(
        self, levels: list[_Level], entries: list[FileEntry], report: FetchReport
    ) -> None:
        """GET every entry from S3 (its pinned version), `requests` at once on one event
        loop, each hashed while it is written into every one of LEVELS. The loop runs in a
        thread of its own, so that a caller inside an event loop (a notebook) can fetch."""
        with ThreadPoolExecutor(max_workers=1) as loop:
            loop.submit(asyncio.run, self._get_all(levels, entries, report)).result()

    async def _get_all(
        self, levels: list[_Level], entries: list[FileEntry], report: FetchReport
    ) -> None:
        slots = asyncio.Semaphore(self.requests)

        async def get(entry: FileEntry) -> None:
            key = self.prefix + entry.path
            dests = [level.dir / entry.path for level in levels]
            async with slots:
                with _verified(dests, entry, f"s3://{self.bucket}/{key}") as out:
                    async for chunk in self._chunks(key, entry.version_id):
                        if len(chunk) < _OFF_LOOP:
                            out.write(chunk)
                        else:  # hashed and written on a thread: the loop goes on with GETs
                            await asyncio.to_thread(out.write, chunk)
            report.add("from_s3")
            report.add("bytes_from_s3", entry.size)

        await asyncio.gather(*(get(entry) for entry in entries))

    async def _chunks(self, key: str, version_id: str | None) -> AsyncIterator[memoryview]:
        """The object's bytes (VERSION_ID's, if pinned); S3's errors name the object."""
        pinned: GetOptions = {"version": version_id} if version_id else {}
        try:
            answer = await obstore.get_async(self.store, key, options=pinned)
            async for chunk in answer.stream(min_chunk_size=CHUNK):
                yield memoryview(chunk)
        except (obstore_errors.BaseError, OSError) as exc:  # obstore raises FileNotFoundError
            reason = str(exc).splitlines()[0][:200] if str(exc) else "(no message)"
            raise S3AccessError(
                f"s3://{self.bucket}/{key} (version {version_id or 'latest'}): "
                f"{type(exc).__name__}: {reason}"
            ) from None

    def _copy(
        self, source: _Level, level: _Level, entry: FileEntry, hashed: bool, report: FetchReport
    ) -> None:
        """Copy from the level below; hash while copying unless it was hashed just now."""
        src = source.dir / entry.path
        dest = level.dir / entry.path
        if hashed:  # verified by this fetch a moment ago: a kernel-side copy suffices
            fd, tmp_name = _temporary(dest)
            os.close(fd)
            try:
                shutil.copyfile(src, tmp_name)
                if os.path.getsize(tmp_name) != entry.size:
                    raise ManifestError(f"{src}: changed while being copied to {dest}")
                os.replace(tmp_name, dest)
            finally:
                Path(tmp_name).unlink(missing_ok=True)
        else:
            with src.open("rb") as handle, _verified([dest], entry, str(src)) as out:
                shutil.copyfileobj(handle, out, CHUNK)
        report.add("from_shared")
