"""workload.data against a real MinIO: publish, the two-level cache, verification, locking."""

from __future__ import annotations

import asyncio
import hashlib
import importlib
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import threading
import zipfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from workload.data import DatasetCache, DatasetExistsError, ManifestError, open_archive, publish
from workload.data.manifest import FileEntry, Manifest
from workload.localservers import Minio
from workload.s3 import S3AccessError, S3Settings, check_access, ensure_bucket, make_client
from workload.shapes import ShapesSplit, write_tar

publish_module = importlib.import_module("workload.data.publish")


def make_tree(root: Path, files: int = 6) -> dict[str, bytes]:
    contents = {}
    for k in range(files):
        rel = f"part{k % 2}/file{k}.bin"
        payload = os.urandom(1000 + 977 * k)
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(payload)
        contents[rel] = payload
    return contents


def cache(minio: Minio, tmp: Path, version: str, **kwargs: Any) -> DatasetCache:
    return DatasetCache(
        minio.settings(),
        "tree",
        version,
        shared_root=tmp / "shared",
        local_root=tmp / "local",
        **kwargs,
    )


def test_publish_then_read_through_both_cache_levels(s3: Any, minio: Minio, tmp_path: Path) -> None:
    contents = make_tree(tmp_path / "src")
    manifest = publish(s3, tmp_path / "src", "tree", "v1")
    assert {f.path for f in manifest.files} == set(contents)

    path, first = cache(minio, tmp_path, "v1").fetch()
    # S3 -> the shared cache and the node-local copy at once
    assert (first.from_s3, first.from_shared, first.local_hits) == (len(contents), 0, 0)
    assert path == tmp_path / "local" / "tree" / "v1"
    for level in (path, tmp_path / "shared" / "tree" / "v1"):
        assert {rel: (level / rel).read_bytes() for rel in contents} == contents

    _, second = cache(minio, tmp_path, "v1").fetch()
    assert (second.from_s3, second.from_shared, second.local_hits) == (0, 0, len(contents))

    shutil.rmtree(tmp_path / "local")
    path, third = cache(minio, tmp_path, "v1").fetch()
    assert (third.from_s3, third.from_shared, third.local_hits) == (0, len(contents), 0)
    assert {rel: (path / rel).read_bytes() for rel in contents} == contents
    assert not list(path.rglob("*.part")), "no temporary file is left behind"


def test_published_version_is_never_overwritten(s3: Any, tmp_path: Path) -> None:
    make_tree(tmp_path / "src", files=2)
    publish(s3, tmp_path / "src", "tree", "immutable")
    before = s3.get_object(Bucket="datasets", Key="tree/immutable/MANIFEST.json")["Body"].read()
    make_tree(tmp_path / "other", files=3)
    with pytest.raises(DatasetExistsError, match="tree/immutable"):
        publish(s3, tmp_path / "other", "tree", "immutable")
    after = s3.get_object(Bucket="datasets", Key="tree/immutable/MANIFEST.json")["Body"].read()
    assert before == after


def test_bad_names_and_sources_are_named(s3: Any, minio: Minio, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"dataset version '\.\./x'"):
        publish(s3, tmp_path, "tree", "../x")
    with pytest.raises(FileNotFoundError, match="nowhere"):
        publish(s3, tmp_path / "nowhere", "tree", "v9")
    with pytest.raises(ManifestError, match="tree/never/ is not published"):
        cache(minio, tmp_path, "never").fetch()


def test_corrupted_cached_file_is_detected_and_refetched(
    s3: Any, minio: Minio, tmp_path: Path
) -> None:
    contents = make_tree(tmp_path / "src", files=3)
    publish(s3, tmp_path / "src", "tree", "v-corrupt")
    path, _ = cache(minio, tmp_path, "v-corrupt").fetch()
    victim = sorted(contents)[1]
    local = path / victim
    shared = tmp_path / "shared" / "tree" / "v-corrupt" / victim
    local.write_bytes(b"\0" * len(contents[victim]))  # same size, wrong bytes

    _, report = cache(minio, tmp_path, "v-corrupt").fetch()
    assert report.corrupt_replaced == [str(local)]
    assert report.from_shared == 1
    assert local.read_bytes() == contents[victim]

    local.write_bytes(b"junk")
    shared.write_bytes(b"junk")
    _, report = cache(minio, tmp_path, "v-corrupt").fetch()
    assert sorted(report.corrupt_replaced) == sorted([str(local), str(shared)])
    assert report.from_s3 == 1
    assert local.read_bytes() == shared.read_bytes() == contents[victim]


def test_keys_rewritten_after_publishing_change_nothing_read(
    s3: Any, minio: Minio, tmp_path: Path
) -> None:
    """The attack a curator (or anyone with PutObject) can make: overwrite an object of a
    published version, and its MANIFEST.json with one that matches the new bytes."""
    contents = make_tree(tmp_path / "src", files=2)
    published = publish(s3, tmp_path / "src", "tree", "v-rewritten")
    victim = published.files[0]
    forged = b"forged bytes"
    s3.put_object(Bucket="datasets", Key=f"tree/v-rewritten/{victim.path}", Body=forged)
    fake = Manifest(
        "tree",
        "v-rewritten",
        (FileEntry(victim.path, len(forged), hashlib.sha256(forged).hexdigest()),),
    )
    s3.put_object(Bucket="datasets", Key="tree/v-rewritten/MANIFEST.json", Body=fake.to_json())

    reader = cache(minio, tmp_path, "v-rewritten")
    assert reader.manifest() == published
    path, _ = reader.fetch()
    assert {rel: (path / rel).read_bytes() for rel in contents} == contents


def test_an_unpinned_manifest_still_refuses_an_altered_object(
    s3: Any, minio: Minio, tmp_path: Path
) -> None:
    """Manifests published before versions were pinned: the sha256 check stops the read."""
    make_tree(tmp_path / "src", files=2)
    pinned = publish(s3, tmp_path / "src", "tree", "v-unpinned")
    unpinned = Manifest(
        "tree", "v-unpinned", tuple(replace(f, version_id="") for f in pinned.files)
    )
    key = "tree/v-unpinned/MANIFEST.json"
    s3.delete_object(
        Bucket="datasets",
        Key=key,
        VersionId=publish_module.manifest_versions(s3, "datasets", "tree", "v-unpinned")[0],
    )
    s3.put_object(Bucket="datasets", Key=key, Body=unpinned.to_json())
    altered = f"tree/v-unpinned/{pinned.files[0].path}"
    s3.put_object(Bucket="datasets", Key=altered, Body=b"tampered")
    with pytest.raises(ManifestError, match=altered):
        cache(minio, tmp_path, "v-unpinned").fetch()
    assert not (tmp_path / "local" / altered).exists()


def test_a_losing_concurrent_publisher_changes_nothing_read(
    s3: Any, minio: Minio, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    winner = make_tree(tmp_path / "winner", files=3)
    publish(s3, tmp_path / "winner", "tree", "v-race")
    for rel in winner:  # the loser's files: the same names, other bytes
        (tmp_path / "loser" / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / "loser" / rel).write_bytes(b"loser" + os.urandom(64))
    # The loser checked for the version before the winner's manifest was there.
    monkeypatch.setattr(publish_module, "exists", lambda *_: False)
    with pytest.raises(DatasetExistsError, match="published concurrently"):
        publish(s3, tmp_path / "loser", "tree", "v-race")
    monkeypatch.undo()
    path, _ = cache(minio, tmp_path, "v-race").fetch()
    assert {rel: (path / rel).read_bytes() for rel in winner} == winner


def test_a_manifest_planted_in_the_shared_cache_is_not_trusted(
    s3: Any, minio: Minio, tmp_path: Path
) -> None:
    """A job can write the shared level: a manifest, a file and a stamp that agree."""
    contents = make_tree(tmp_path / "src", files=2)
    publish(s3, tmp_path / "src", "tree", "v-planted")
    cache(minio, tmp_path, "v-planted").fetch()
    shutil.rmtree(tmp_path / "local")
    shared = tmp_path / "shared" / "tree"
    victim = sorted(contents)[0]
    planted = b"planted by another job"
    (shared / "v-planted" / victim).write_bytes(planted)
    entries = [
        FileEntry(rel, len(planted), hashlib.sha256(planted).hexdigest())
        if rel == victim
        else FileEntry(rel, len(data), hashlib.sha256(data).hexdigest())
        for rel, data in sorted(contents.items())
    ]
    fake = Manifest("tree", "v-planted", tuple(entries))
    (shared / "v-planted.manifest.json").write_bytes(fake.to_json())
    stamps = json.loads((shared / "v-planted.verified.json").read_text())
    stat = (shared / "v-planted" / victim).stat()
    stamps[victim] = [stat.st_size, stat.st_mtime_ns, stat.st_ino]
    (shared / "v-planted.verified.json").write_text(json.dumps(stamps))

    path, report = cache(minio, tmp_path, "v-planted").fetch()
    assert {rel: (path / rel).read_bytes() for rel in contents} == contents
    assert report.corrupt_replaced == [str(shared / "v-planted" / victim)]
    assert (shared / "v-planted.manifest.json").read_bytes() != fake.to_json()


FETCH = """
import json, sys
from pathlib import Path
from workload.data import DatasetCache
from workload.s3 import S3Settings
_, report = DatasetCache.from_env(S3Settings.from_env(), "tree", sys.argv[1]).fetch()
print(json.dumps({"from_s3": report.from_s3, "from_shared": report.from_shared}))
"""


def test_concurrent_readers_on_one_node_download_once(
    s3: Any, minio: Minio, tmp_path: Path
) -> None:
    contents = make_tree(tmp_path / "src", files=8)
    publish(s3, tmp_path / "src", "tree", "v-concurrent")
    env = {
        **os.environ,
        **minio.env(),
        "DATA_PATH": str(tmp_path / "shared"),
        "DATA_EPHEMERAL_PATH": str(tmp_path / "local"),
    }
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", FETCH, "v-concurrent"], env=env, stdout=subprocess.PIPE
        )
        for _ in range(2)
    ]
    reports = [json.loads(p.communicate(timeout=300)[0]) for p in procs]
    assert all(p.returncode == 0 for p in procs)
    assert sum(r["from_s3"] for r in reports) == len(contents)
    # The one download wrote both levels; the other reader found every file in its own.
    assert sum(r["from_shared"] for r in reports) == 0


def test_readers_with_one_pid_share_a_cache_level(s3: Any, minio: Minio, tmp_path: Path) -> None:
    # Pods on one node share the dataset cache, and in their own PID namespaces their
    # processes often have the same pid: threads of one process are such readers. Each
    # round is a race, won by chance: several rounds make a lost race near certain to show.
    contents = make_tree(tmp_path / "src", files=2)
    start = threading.Barrier(16)

    def read(version: str, pod: int) -> Path:
        reader = DatasetCache(
            minio.settings(),
            "tree",
            version,
            shared_root=tmp_path / "shared",
            local_root=tmp_path / f"{pod}",
        )
        start.wait()
        return reader.fetch()[0]

    for round_ in range(8):
        version = f"v-one-pid-{round_}"
        publish(s3, tmp_path / "src", "tree", version)
        with ThreadPoolExecutor(max_workers=16) as pool:
            paths = list(pool.map(lambda pod, v=version: read(v, pod), range(16)))
        for path in paths:
            assert {rel: (path / rel).read_bytes() for rel in contents} == contents
    leftovers = [p.name for p in (tmp_path / "shared" / "tree").iterdir() if p.name[0] == "."]
    assert not leftovers, leftovers


def test_wrong_credentials_name_the_endpoint(minio: Minio) -> None:
    bad = make_client(S3Settings(minio.endpoint, minio.access_key, "not-the-secret"))
    with pytest.raises(
        S3AccessError, match=f"S3 endpoint {minio.endpoint} rejected the credentials"
    ):
        check_access(bad, "datasets")
    good = make_client(minio.settings())
    with pytest.raises(S3AccessError, match="has no bucket 'absent'"):
        check_access(good, "absent")


def test_a_missing_object_version_names_the_object(s3: Any, minio: Minio, tmp_path: Path) -> None:
    make_tree(tmp_path / "src", files=3)
    manifest = publish(s3, tmp_path / "src", "tree", "v-gone")
    gone = manifest.files[1]
    key = f"tree/v-gone/{gone.path}"
    s3.delete_object(Bucket="datasets", Key=key, VersionId=gone.version_id)  # as root
    named = re.escape(f"s3://datasets/{key} (version {gone.version_id}): FileNotFoundError")
    with pytest.raises(S3AccessError, match=named + ".* not found"):
        cache(minio, tmp_path, "v-gone").fetch()
    local = tmp_path / "local" / "tree" / "v-gone"
    assert not list(local.rglob("*.part")), "a failed fetch leaves no partial file"


def test_a_fetch_from_inside_an_event_loop(s3: Any, minio: Minio, tmp_path: Path) -> None:
    # A notebook's code runs inside an event loop, where asyncio.run() is refused. One
    # file larger than a chunk: streamed, hashed and written off the loop.
    contents = make_tree(tmp_path / "src", files=4)
    contents["large.bin"] = os.urandom(3 << 20)
    (tmp_path / "src" / "large.bin").write_bytes(contents["large.bin"])
    publish(s3, tmp_path / "src", "tree", "v-in-loop")

    async def in_a_notebook() -> Path:
        return cache(minio, tmp_path, "v-in-loop", requests=2).fetch()[0]

    path = asyncio.run(in_a_notebook())
    assert {rel: (path / rel).read_bytes() for rel in contents} == contents


def test_publish_cli_uploads_an_archive(minio: Minio, tmp_path: Path) -> None:
    write_tar(tmp_path / "shapes.tar", train=64, val=16, size=16, seed=3)
    env = {**os.environ, **minio.env(), "DATA_EPHEMERAL_PATH": str(tmp_path / "local")}
    argv = [sys.executable, "-m", "workload.data", "publish", str(tmp_path / "shapes.tar")]
    argv += ["--name", "shapes-cli", "--version", "v1"]
    done = subprocess.run(argv, env=env, capture_output=True, text=True, check=True)
    assert "published s3://datasets/shapes-cli/v1/: 1 files" in done.stdout
    again = subprocess.run(argv, env=env, capture_output=True, text=True, check=False)
    assert again.returncode != 0
    assert "already published" in again.stderr
    assert minio.secret_key not in done.stdout + done.stderr + again.stderr


@pytest.mark.parametrize("kind", ["tar", "zip", "dir"])
def test_archive_readers_agree(tmp_path: Path, kind: str) -> None:
    contents = make_tree(tmp_path / "src", files=4)
    if kind == "tar":
        target = tmp_path / "a.tar"
        with tarfile.open(target, "w") as tar:
            tar.add(tmp_path / "src", arcname=".", recursive=True)
        contents = {f"./{k}": v for k, v in contents.items()}
    elif kind == "zip":
        target = tmp_path / "a.zip"
        with zipfile.ZipFile(target, "w") as archive:
            for rel, payload in contents.items():
                archive.writestr(rel, payload)
    else:
        target = tmp_path / "src"
    reader = open_archive(target)
    assert reader.names() == sorted(contents)
    assert {name: reader.read(name) for name in reader.names()} == contents
    with pytest.raises(KeyError, match=r"missing\.bin"):
        reader.read("missing.bin")


def test_compressed_tar_is_refused_with_its_name(tmp_path: Path) -> None:
    target = tmp_path / "a.tar.gz"
    with tarfile.open(target, "w:gz") as tar:
        tar.add(__file__, arcname="x.py")
    with pytest.raises(ValueError, match=r"a\.tar\.gz: compressed tar"):
        open_archive(target)


def test_tar_dataset_in_dataloader_workers(tmp_path: Path) -> None:
    write_tar(tmp_path / "shapes.tar", train=40, val=8, size=12, seed=1)
    split = ShapesSplit(open_archive(tmp_path / "shapes.tar"), "train")
    direct = [split[i] for i in range(len(split))]
    loader = torch.utils.data.DataLoader(split, batch_size=8, num_workers=2)
    images = torch.cat([batch[0] for batch in loader])
    labels = torch.cat([batch[1] for batch in loader])
    assert torch.equal(images, torch.stack([d[0] for d in direct]))
    assert labels.tolist() == [d[1] for d in direct]
    assert np.unique(labels.numpy()).size > 1


def test_list_and_show_name_the_published_versions(minio: Minio, tmp_path: Path) -> None:
    bucket = "catalog"
    client = make_client(minio.settings())
    ensure_bucket(client, bucket, versioned=True)
    make_tree(tmp_path / "tree")
    first = publish(client, tmp_path / "tree", "alpha", "v1", bucket=bucket)
    publish(client, tmp_path / "tree", "alpha", "v2", bucket=bucket)
    publish(client, tmp_path / "tree", "b" * 30, "v1", bucket=bucket)
    # An upload under way (or abandoned): objects, no manifest yet.
    client.put_object(Bucket=bucket, Key="alpha/v3/part0/file0.bin", Body=b"partial")
    env = {**os.environ, **minio.env()}

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        argv = [sys.executable, "-m", "workload.data", "--bucket", bucket, *args]
        return subprocess.run(argv, env=env, capture_output=True, text=True, check=False)

    listing = cli("list")
    assert listing.returncode == 0, listing.stderr
    lines = listing.stdout.splitlines()
    header = ["dataset", "version", "published", "(UTC)", "files", "size", "manifest"]
    assert lines[0].split() == header
    rows = [line.split() for line in lines[1:]]
    assert [row[:2] for row in rows] == [["alpha", "v1"], ["alpha", "v2"], ["b" * 23 + "…", "v1"]]
    assert rows[0][4:] == ["6", "20.2", "KiB", first.digest[:8]]  # 20,655 bytes
    assert max(len(line) for line in lines) <= 80, listing.stdout
    assert not listing.stderr

    only = cli("list", "--name", "alpha")
    assert [line.split()[1] for line in only.stdout.splitlines()[1:]] == ["v1", "v2"]

    show = cli("show", "--name", "alpha", "--version", "v1", "--files")
    assert show.returncode == 0, show.stderr
    assert show.stdout.startswith(f"s3://{bucket}/alpha/v1/\n")
    assert f"manifest   sha256 {first.digest}" in show.stdout
    for entry in first.files:
        assert f"{entry.sha256[:8]}  {entry.path}" in show.stdout

    # Bad input: named, no traceback.
    for args, message in [
        (("show", "--name", "alpha", "--version", "v3"), "s3://catalog/alpha/v3/ is not published"),
        (("list", "--name", "a b"), "dataset name 'a b' must match"),
    ]:
        refused = cli(*args)
        assert refused.returncode == 1, refused
        assert message in refused.stderr
        assert "Traceback" not in refused.stderr
