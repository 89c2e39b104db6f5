"""workload.data vs raw boto3 and vs plain local reads, measured side by side.

1. First epoch: `DatasetCache.fetch()` from S3 and a read of every file, vs raw
   boto3 GETs of the same objects (same thread count) (goal >= 0.8).
2. Cached epoch: `fetch()` finding everything cached, and a read of every file,
   vs reading the same local files directly (goal >= 0.9).
"""

from __future__ import annotations

import os
import shutil
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from common import median_seconds, minio_binary, minio_server

from workload.data import DatasetCache, publish
from workload.s3 import S3Settings, ensure_bucket, make_client

FILES, SIZE, WORKERS, REPEATS = 48, 4 << 20, 8, 3


def read_all(paths: list[Path]) -> int:
    with ThreadPoolExecutor(WORKERS) as pool:
        return sum(pool.map(lambda p: len(p.read_bytes()), paths))


def main() -> None:
    with tempfile.TemporaryDirectory(dir=os.environ.get("BENCH_TMP")) as tmp_name:
        tmp = Path(tmp_name)
        with minio_server(minio_binary(), tmp / "minio") as minio:
            client = make_client(S3Settings(minio.endpoint, minio.access_key, minio.secret_key))
            ensure_bucket(client, "datasets", versioned=True)
            src = tmp / "src"
            src.mkdir()
            for k in range(FILES):
                (src / f"shard-{k:04d}.bin").write_bytes(os.urandom(SIZE))
            manifest = publish(client, src, "bench", "v1")
            shutil.rmtree(src)
            keys = [f"bench/v1/{f.path}" for f in manifest.files]
            total_mb = manifest.total_bytes / 2**20

            def raw_get() -> None:
                def get(key: str) -> int:
                    return len(client.get_object(Bucket="datasets", Key=key)["Body"].read())

                with ThreadPoolExecutor(WORKERS) as pool:
                    assert sum(pool.map(get, keys)) == manifest.total_bytes

            def raw_get_to_files() -> None:
                out = tmp / "raw"
                shutil.rmtree(out, ignore_errors=True)
                out.mkdir()

                def get(key: str) -> None:
                    body = client.get_object(Bucket="datasets", Key=key)["Body"]
                    with (out / Path(key).name).open("wb") as handle:
                        for chunk in body.iter_chunks(1 << 20):
                            handle.write(chunk)

                with ThreadPoolExecutor(WORKERS) as pool:
                    list(pool.map(get, keys))

            def first_epoch(levels: str) -> None:
                shutil.rmtree(tmp / "cache", ignore_errors=True)
                shared = tmp / "cache" / "shared" if levels == "shared+local" else None
                cache = DatasetCache(
                    client,
                    "bench",
                    "v1",
                    workers=WORKERS,
                    local_root=tmp / "cache" / "local",
                    shared_root=shared,
                )
                path, report = cache.fetch()
                assert report.from_s3 == FILES
                read_all([path / f.path for f in manifest.files])

            def cached_epoch() -> None:
                cache = DatasetCache(
                    client,
                    "bench",
                    "v1",
                    workers=WORKERS,
                    local_root=tmp / "cache" / "local",
                    shared_root=tmp / "cache" / "shared",
                )
                path, report = cache.fetch()
                assert report.local_hits == FILES
                read_all([path / f.path for f in manifest.files])

            local_paths = [
                tmp / "cache" / "local" / "bench" / "v1" / f.path for f in manifest.files
            ]

            print(f"{FILES} objects, {total_mb:.0f} MiB, {WORKERS} threads, median of {REPEATS}")
            raw = median_seconds(raw_get, REPEATS)
            print(f"raw boto3 GETs to memory           {raw:6.2f} s  {total_mb / raw:7.1f} MiB/s")
            to_files = median_seconds(raw_get_to_files, REPEATS)
            print(
                f"raw boto3 GETs to local files      {to_files:6.2f} s  "
                f"{total_mb / to_files:7.1f} MiB/s  (context: no hashing, no cache)"
            )
            for levels in ("local", "shared+local"):
                ours = median_seconds(lambda levels=levels: first_epoch(levels), REPEATS)
                print(
                    f"workload.data first epoch ({levels:12s}) {ours:6.2f} s  "
                    f"{total_mb / ours:7.1f} MiB/s  ratio {raw / ours:.2f} (goal >= 0.8)"
                )
            direct = median_seconds(lambda: read_all(local_paths), REPEATS * 2)
            cached = median_seconds(cached_epoch, REPEATS * 2)
            print(f"direct local reads                 {direct:6.2f} s")
            print(
                f"workload.data cached epoch         {cached:6.2f} s  "
                f"ratio {direct / cached:.2f} (goal >= 0.9)"
            )


if __name__ == "__main__":
    main()
