"""labstack's DatasetCache side by side with the clients a researcher would use
instead, on a real MinIO: s5cmd, the AWS CLI and raw boto3.

Two dataset shapes: few large files, many small ones. First epoch: every
client copies the version to an empty local directory and every file is
checked against the manifest's sha256 (DatasetCache hashes while it writes;
the others are timed copying, then hashing). Figures in MiB/s, and as a ratio
to the fastest external client (s5cmd or aws). The ceiling on this machine:
raw GETs to memory (boto3, nothing written) and local file writes of the same
files (page cache, no fsync); "of limit" is a figure over the lower of the two.
The GET ceiling is boto3's, Python on this machine's cores beside MinIO: on
many small files s5cmd can exceed it (over 100% of limit).
Cached epoch: `fetch()` finding every file cached, then a read of every file,
vs reading the same files directly (goal >= 0.9).

s5cmd and aws run at their own default concurrency (s5cmd: 256 workers, aws:
10 requests), boto3 with WORKERS threads, DatasetCache with WORKERS threads hashing
and copying and its default 64 GETs in flight (obstore); credentials reach
them through their environment, the endpoint through --endpoint-url.
"""

from __future__ import annotations

import os
import shutil
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from pathlib import Path
from typing import Any

from benchmarks.common import Minio, Row, median_seconds, minio_binary, minio_server, seconds
from workload.data import DatasetCache, publish
from workload.data.manifest import FileEntry, Manifest, sha256_file
from workload.s3 import ensure_bucket, make_client

# name: (files, bytes each)
SHAPES = {"large": (48, 4 << 20), "small": (4096, 32 << 10)}
WORKERS, REPEATS = 8, 3
BIN = Path(sys.executable).parent


def parallel(func: Callable[[Any], object], items: list[Any]) -> list[Any]:
    with ThreadPoolExecutor(WORKERS) as pool:
        return list(pool.map(func, items))


def verify(root: Path, manifest: Manifest) -> None:
    """Every file of the manifest is in `root` with its sha256."""

    def differs(entry: FileEntry) -> str | None:
        return entry.path if sha256_file(root / entry.path) != entry.sha256 else None

    bad = [path for path in parallel(differs, list(manifest.files)) if path]
    assert not bad, f"{len(bad)} files differ from the manifest, e.g. {bad[0]}"


def mib_s(mib: float, secs: float) -> str:
    return f"{mib / secs:.1f} MiB/s"


class Shape:
    """One published dataset version, and the clients that copy it."""

    def __init__(self, minio: Minio, client: Any, tmp: Path, name: str) -> None:
        files, size = SHAPES[name]
        self.minio, self.client, self.tmp, self.name = minio, client, tmp, name
        src = tmp / "src"
        src.mkdir()
        for k in range(files):
            (src / f"{k:05d}.bin").write_bytes(os.urandom(size))
        self.manifest = publish(client, src, name, "v1")
        shutil.rmtree(src)
        self.prefix = f"{name}/v1/"
        self.mib = self.manifest.total_bytes / 2**20
        self.out = tmp / "out"
        # the CLIs find no configuration or credentials file in this HOME
        self.env = {"PATH": os.environ.get("PATH", ""), "HOME": str(tmp), **minio.env()}

    def keys(self) -> list[str]:
        return [self.prefix + f.path for f in self.manifest.files]

    def fresh(self) -> Path:
        shutil.rmtree(self.out, ignore_errors=True)
        self.out.mkdir()
        return self.out

    # ---- the physical ceiling
    def get_to_memory(self) -> None:
        def get(key: str) -> int:
            return len(self.client.get_object(Bucket="datasets", Key=key)["Body"].read())

        assert sum(parallel(get, self.keys())) == self.manifest.total_bytes

    def write_files(self) -> float:
        """Seconds to write files of the dataset's sizes into an empty directory."""
        out, data = self.fresh(), os.urandom(self.manifest.files[0].size)
        files = list(self.manifest.files)
        return seconds(lambda: parallel(lambda f: (out / f.path).write_bytes(data), files), 1)[0]

    # ---- first epoch: copy to self.out (verified afterwards unless the client did)
    def s5cmd(self) -> None:
        argv = [str(BIN / "s5cmd"), "--endpoint-url", self.minio.endpoint, "cp"]
        argv += ["--exclude", "MANIFEST.json", f"s3://datasets/{self.prefix}*", f"{self.out}/"]
        subprocess.run(argv, env=self.env, check=True, capture_output=True)

    def aws(self) -> None:
        argv = [str(BIN / "aws"), "s3", "cp", "--recursive", "--only-show-errors"]
        argv += ["--endpoint-url", self.minio.endpoint, "--exclude", "MANIFEST.json"]
        argv += [f"s3://datasets/{self.prefix}", str(self.out)]
        subprocess.run(argv, env=self.env, check=True, capture_output=True)

    def boto3(self) -> None:
        def get(key: str) -> None:
            body = self.client.get_object(Bucket="datasets", Key=key)["Body"]
            with (self.out / key.removeprefix(self.prefix)).open("wb") as handle:
                for chunk in body.iter_chunks(1 << 20):
                    handle.write(chunk)

        parallel(get, self.keys())

    def cache(self, levels: int) -> DatasetCache:
        shared = self.out / "shared" if levels == 2 else None
        return DatasetCache(
            self.minio.settings(),
            self.name,
            "v1",
            workers=WORKERS,
            local_root=self.out / "local",
            shared_root=shared,
        )

    def labstack(self, levels: int) -> None:
        _, report = self.cache(levels).fetch()
        assert report.from_s3 == len(self.manifest.files)

    def first_epoch(self, label: str, copy: Callable[[], None]) -> float:
        """Median seconds of an empty directory to verified files; prints copy + hash."""
        hashes = label.startswith("labstack")  # DatasetCache verifies as it writes
        copy_s, hash_s = [], []
        for _ in range(REPEATS):
            self.fresh()
            copy_s += seconds(copy, 1)
            hash_s += [0.0] if hashes else seconds(lambda: verify(self.out, self.manifest), 1)
        total = statistics.median(c + h for c, h in zip(copy_s, hash_s, strict=True))
        copy_m, hash_m = statistics.median(copy_s), statistics.median(hash_s)
        split = "hashed while copying" if hashes else f"copy {copy_m:.2f} s + hash {hash_m:.2f} s"
        print(f"  {label:18} {total:6.2f} s {mib_s(self.mib, total):>14}  {split}")
        return total

    def cached_epoch(self) -> tuple[float, float]:
        """(direct reads, fetch() + reads), seconds: the two-level cache is filled first."""
        self.fresh()
        self.labstack(2)
        cache = self.cache(2)
        paths = [cache.levels[0].dir / f.path for f in self.manifest.files]

        def read_all() -> None:
            parallel(lambda p: len(p.read_bytes()), paths)

        def cached() -> None:
            path, report = cache.fetch()
            assert path == paths[0].parent
            assert report.local_hits == len(paths)
            read_all()

        return median_seconds(read_all, REPEATS * 2), median_seconds(cached, REPEATS * 2)


def bench_shape(shape: Shape) -> list[Row]:
    n, size = SHAPES[shape.name]
    print(f"{shape.name}: {n} files x {size >> 10} KiB = {shape.mib:.0f} MiB, median of {REPEATS}")
    get = median_seconds(shape.get_to_memory, REPEATS)
    write = statistics.median(shape.write_files() for _ in range(REPEATS))
    print(f"  {'GETs to memory':18} {get:6.2f} s {mib_s(shape.mib, get):>14}  ceiling")
    print(f"  {'local file writes':18} {write:6.2f} s {mib_s(shape.mib, write):>14}  ceiling")
    copies = [("s5cmd", shape.s5cmd), ("aws", shape.aws), ("raw boto3", shape.boto3)]
    copies += [("labstack 1 level", partial(shape.labstack, 1))]
    copies += [("labstack 2 levels", partial(shape.labstack, 2))]
    clients = {label: shape.first_epoch(label, copy) for label, copy in copies}
    best = min(("s5cmd", "aws"), key=clients.__getitem__)
    limit_s = max(get, write)  # the lower rate
    rows = [
        Row("data", f"{shape.name}: GETs to memory", mib_s(shape.mib, get), note="ceiling"),
        Row("data", f"{shape.name}: local file writes", mib_s(shape.mib, write), note="ceiling"),
    ]
    for label, secs in clients.items():
        rows.append(
            Row(
                "data",
                f"{shape.name}: {label}",
                mib_s(shape.mib, secs),
                f"{clients[best] / secs:.2f}",
                f"{best}; {limit_s / secs:.0%} of limit",
            )
        )
    direct, cached = shape.cached_epoch()
    print(f"  {'direct reads':18} {direct:6.2f} s {mib_s(shape.mib, direct):>14}")
    print(f"  {'labstack cached':18} {cached:6.2f} s {mib_s(shape.mib, cached):>14}")
    rows.append(
        Row(
            "data",
            f"{shape.name}: labstack cached",
            mib_s(shape.mib, cached),
            f"{direct / cached:.2f}",
            "direct reads (>= 0.9)",
        )
    )
    return rows


def main() -> list[Row]:
    rows: list[Row] = []
    with tempfile.TemporaryDirectory(dir=os.environ.get("BENCH_TMP")) as tmp_name:
        tmp = Path(tmp_name)
        with minio_server(minio_binary(), tmp / "minio") as minio:
            client = make_client(minio.settings())
            ensure_bucket(client, "datasets", versioned=True)
            for name in SHAPES:
                rows += bench_shape(Shape(minio, client, tmp, name))
    return rows


if __name__ == "__main__":
    from benchmarks.common import print_table

    print_table(main())
