"""PostgreSQL's backups (the backup layer, pgBackRest): every WAL segment and
every backup lands in the backup bucket, encrypted; a backup records its
success where Prometheus reads it (BackupStale); playbooks/restore.yml brings
the database back to a moment before a deliberate loss."""

from __future__ import annotations

import json
import re
import time
import uuid

import pytest
import urllib3
from minio import Minio
from mlflow import MlflowClient
from testinfra.host import Host

from tests.inventory import hosts
from tests.playbook import SANDBOX_INVENTORY, run_playbook
from tests.services import ca_file, credentials, endpoint

_REPOSITORY = "pgbackrest/"


def _root() -> Minio:
    return Minio(
        endpoint(hosts("storage")[0], 9000),
        access_key=credentials()["minio_root_user"],
        secret_key=credentials()["minio_root_password"],
        secure=True,
        http_client=urllib3.PoolManager(ca_certs=str(ca_file())),
    )


@pytest.fixture(scope="module")
def head(nodes: dict[str, Host]) -> Host:
    return nodes[hosts("tracking")[0]]


def _psql(head: Host, sql: str) -> str:
    return head.check_output(f"runuser -u postgres -- psql -XAtq -d mlflow -c {sql!r}")


def test_wal_and_backups_are_in_the_bucket_and_unreadable_without_the_passphrase(
    head: Host,
) -> None:
    # The attack: read the repository as whoever holds the bucket, looking for
    # what was just written to the database.
    marker = f"backup-marker-{uuid.uuid4().hex}"
    _psql(head, f"COMMENT ON DATABASE mlflow IS '{marker}'")
    segment = _psql(head, "SELECT pg_walfile_name(pg_current_wal_insert_lsn())").strip()
    _psql(head, "COMMENT ON DATABASE mlflow IS NULL")
    # Closes the current WAL segment and waits until it is in the repository.
    head.check_output("runuser -u postgres -- pgbackrest --stanza=lab check")
    root = _root()
    names = [
        str(o.object_name) for o in root.list_objects("backups", prefix=_REPOSITORY, recursive=True)
    ]
    archived = [name for name in names if f"/{segment}-" in name]
    assert archived, f"WAL segment {segment} is not in the repository: {names}"
    assert any(name.startswith(f"{_REPOSITORY}backup/lab/") for name in names), names
    for name in names:
        # OpenSSL's format: every file of an encrypted repository begins so.
        head_bytes = root.get_object("backups", name, offset=0, length=8).read()
        assert head_bytes == b"Salted__", f"{name} is not encrypted"
    # With the passphrase (pgBackRest on the node), the segment holds the marker.
    fetched = f"/tmp/{segment}"
    head.check_output(
        f"runuser -u postgres -- pgbackrest --stanza=lab archive-get {segment} {fetched}"
    )
    try:
        assert head.run(f"grep -qa {marker} {fetched}").rc == 0, f"{marker} not in {segment}"
    finally:
        head.check_output(f"rm -f {fetched}")


def test_a_backup_records_its_success_for_prometheus(head: Host) -> None:
    before = int(time.time())
    head.check_output("systemctl start labstack-pgbackrest@diff.service")
    recorded = "/var/lib/prometheus/node-exporter/backup-postgres.prom"
    assert head.check_output(f"stat -c %a {recorded}") == "644"
    content = head.check_output(f"cat {recorded}")
    stamp = re.search(
        r'^labstack_backup_last_success_timestamp_seconds\{backup="postgres"\} (\d+)$',
        content,
        re.MULTILINE,
    )
    assert stamp, content
    assert int(stamp[1]) >= before
    assert 'labstack_backup_max_age_seconds{backup="postgres"} 93600' in content


def test_the_timers_are_scheduled(head: Host) -> None:
    for kind in ("full", "diff"):
        timer = f"labstack-pgbackrest-{kind}.timer"
        assert head.check_output(f"systemctl is-enabled {timer}") == "enabled"
        assert head.check_output(f"systemctl is-active {timer}") == "active"


def test_point_in_time_restore_brings_back_a_deleted_experiment(
    head: Host, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MLFLOW_TRACKING_SERVER_CERT_PATH", str(ca_file()))
    monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", "admin")
    monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", credentials()["mlflow_admin_password"])
    client = MlflowClient(tracking_uri=f"https://{endpoint(hosts('tracking')[0], 5000)}")
    kept = client.create_experiment(f"pitr-kept-{uuid.uuid4().hex}")
    target = _psql(head, "SELECT now()").strip()
    time.sleep(1)
    client.delete_experiment(kept)
    later = f"pitr-later-{uuid.uuid4().hex}"
    client.create_experiment(later)
    assert client.get_experiment(kept).lifecycle_stage == "deleted"
    # The WAL past the target must be in the archive for recovery to stop at it.
    head.check_output("runuser -u postgres -- pgbackrest --stanza=lab check")

    run = run_playbook(
        "playbooks/restore.yml",
        SANDBOX_INVENTORY,
        "-e",
        json.dumps({"pgbackrest_restore_target_time": target}),
    )

    assert run.returncode == 0, run.output
    assert client.get_experiment(kept).lifecycle_stage == "active"
    # What came after the target is gone: the restore went to that moment.
    assert client.get_experiment_by_name(later) is None
