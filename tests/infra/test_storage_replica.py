"""The lab's object storage replicates its datasets and mlflow buckets to the
replica (another site, or a backup disk): every version and delete marker, and
the replica keeps a version the lab deletes for good. Its one user can write
replicas and nothing else."""

from __future__ import annotations

import io
import time
import uuid
from collections.abc import Iterator

import pytest
from minio import Minio
from minio.error import S3Error

from tests.inventory import hosts
from tests.services import credentials, minio_as, minio_root


def _replica_root() -> Minio:
    found = credentials()
    return minio_as(
        hosts("storage_replica")[0],
        found["minio_replica_root_user"],
        found["minio_replica_root_password"],
    )


def _versions(client: Minio, bucket: str, key: str) -> list[tuple[str, bool]]:
    """Each version of KEY: (version id, is a delete marker), sorted."""
    listed = client.list_objects(bucket, prefix=key, recursive=True, include_version=True)
    return sorted(
        (str(item.version_id), bool(item.is_delete_marker))
        for item in listed
        if item.object_name == key
    )


def _replicated(bucket: str, key: str, expected: list[tuple[str, bool]]) -> None:
    """Waits (2 min at most) until the replica holds exactly EXPECTED of KEY."""
    replica = _replica_root()
    deadline = time.monotonic() + 120
    while (found := _versions(replica, bucket, key)) != expected:
        assert time.monotonic() < deadline, f"{bucket}/{key} on the replica: {found} not {expected}"
        time.sleep(1)


@pytest.fixture
def key() -> Iterator[str]:
    """A fresh key; every version of it on both sides is removed afterwards."""
    name = f"tests/replica-{uuid.uuid4().hex[:12]}"
    yield name
    for client in (minio_root(), _replica_root()):
        for bucket in ("datasets", "mlflow"):
            listing = client.list_objects(bucket, prefix=name, recursive=True, include_version=True)
            for listed in listing:
                client.remove_object(bucket, str(listed.object_name), version_id=listed.version_id)


@pytest.mark.parametrize("bucket", ["datasets", "mlflow"])
def test_every_version_and_delete_marker_reaches_the_replica(bucket: str, key: str) -> None:
    lab = minio_root()
    written = {
        lab.put_object(bucket, key, io.BytesIO(body), len(body)).version_id: body
        for body in (b"first", b"second")
    }
    lab.remove_object(bucket, key)  # versioned: a delete marker on top
    expected = _versions(lab, bucket, key)
    assert sorted(marker for _, marker in expected) == [False, False, True]
    _replicated(bucket, key, expected)
    replica = _replica_root()
    for version, body in written.items():
        assert replica.get_object(bucket, key, version_id=version).read() == body


def test_the_replica_keeps_a_version_the_lab_deletes_for_good(key: str) -> None:
    lab = minio_root()
    lab.put_object("datasets", key, io.BytesIO(b"kept"), 4)
    kept = _versions(lab, "datasets", key)
    _replicated("datasets", key, kept)
    lab.remove_object("datasets", key, version_id=kept[0][0])
    assert _versions(lab, "datasets", key) == []
    # A later write reaches the replica; the deleted version is still there.
    lab.put_object("datasets", f"{key}-after", io.BytesIO(b"after"), 5)
    _replicated("datasets", f"{key}-after", _versions(lab, "datasets", f"{key}-after"))
    assert _versions(_replica_root(), "datasets", key) == kept
    assert _replica_root().get_object("datasets", key, version_id=kept[0][0]).read() == b"kept"


def test_the_replication_user_writes_replicas_and_nothing_else() -> None:
    secret = credentials()["minio_replication_secret_key"]
    replica = minio_as(hosts("storage_replica")[0], "replication", secret)
    assert sorted(bucket.name for bucket in replica.list_buckets()) == ["datasets", "mlflow"]
    with pytest.raises(S3Error) as elsewhere:
        replica.bucket_exists("backups")
    assert elsewhere.value.code == "AccessDenied"
    # It is no user of the lab's storage, and the lab's users are none of the replica's.
    with pytest.raises(S3Error) as on_the_lab:
        minio_as(hosts("storage")[0], "replication", secret).bucket_exists("datasets")
    assert on_the_lab.value.code == "InvalidAccessKeyId"
    jobs = minio_as(hosts("storage_replica")[0], "jobs", credentials()["minio_jobs_secret_key"])
    with pytest.raises(S3Error) as lab_user:
        jobs.bucket_exists("datasets")
    assert lab_user.value.code == "InvalidAccessKeyId"
