"""The backup layer: PostgreSQL's WAL and backups (pgBackRest), OpenBao's raft
snapshots and Slurm's accounting dumps all land in the backup bucket,
encrypted; each records its success where Prometheus reads it (BackupStale);
the snapshot login can do nothing else; playbooks/restore.yml brings the
database back to a moment before a deliberate loss, and Slurm's accounting
back after its records are deleted; a rebuilt OpenBao comes back from its
snapshot with its secrets and keys."""

from __future__ import annotations

import io
import json
import re
import time
import uuid

import hvac
import hvac.exceptions
import pytest
from mlflow import MlflowClient
from testinfra.host import Host

from tests.inventory import hosts
from tests.playbook import SANDBOX_INVENTORY, run_playbook
from tests.services import (
    ca_file,
    credentials,
    endpoint,
    minio_root,
    openbao_admin,
    role_setting,
)
from tests.slurm import controller_name, sbatch, slurm_setting

_REPOSITORY = "pgbackrest/"
_STANZA = role_setting("pgbackrest", "pgbackrest_stanza", hosts("tracking")[0])


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
    head.check_output(f"runuser -u postgres -- pgbackrest --stanza={_STANZA} check")
    root = minio_root()
    names = [
        str(o.object_name) for o in root.list_objects("backups", prefix=_REPOSITORY, recursive=True)
    ]
    archived = [name for name in names if f"/{segment}-" in name]
    assert archived, f"WAL segment {segment} is not in the repository: {names}"
    assert any(name.startswith(f"{_REPOSITORY}backup/{_STANZA}/") for name in names), names
    for name in names:
        # OpenSSL's format: every file of an encrypted repository begins so.
        head_bytes = root.get_object("backups", name, offset=0, length=8).read()
        assert head_bytes == b"Salted__", f"{name} is not encrypted"
    # With the passphrase (pgBackRest on the node), the segment holds the marker.
    fetched = f"/tmp/{segment}"
    head.check_output(
        f"runuser -u postgres -- pgbackrest --stanza={_STANZA} archive-get {segment} {fetched}"
    )
    try:
        assert head.run(f"grep -qa {marker} {fetched}").rc == 0, f"{marker} not in {segment}"
    finally:
        head.check_output(f"rm -f {fetched}")


# Each backup: (its group, the unit that takes one, its name for Prometheus).
_BACKUPS = [
    ("tracking", "labstack-pgbackrest@diff.service", "postgres"),
    ("secrets", "labstack-dump-openbao.service", "openbao"),
    ("slurm_dbd", "labstack-dump-slurm-accounting.service", "slurm-accounting"),
]


@pytest.mark.parametrize(("group", "unit", "name"), _BACKUPS, ids=[b[2] for b in _BACKUPS])
def test_a_backup_records_its_success_for_prometheus(
    nodes: dict[str, Host], group: str, unit: str, name: str
) -> None:
    node = nodes[hosts(group)[0]]
    before = int(time.time())
    node.check_output(f"systemctl start {unit}")
    recorded = f"/var/lib/prometheus/node-exporter/backup-{name}.prom"
    assert node.check_output(f"stat -c %a {recorded}") == "644"
    content = node.check_output(f"cat {recorded}")
    stamp = re.search(
        rf'^labstack_backup_last_success_timestamp_seconds\{{backup="{name}"\}} (\d+)$',
        content,
        re.MULTILINE,
    )
    assert stamp, content
    assert int(stamp[1]) >= before
    assert f'labstack_backup_max_age_seconds{{backup="{name}"}} 93600' in content


@pytest.mark.parametrize(
    ("group", "timer"),
    [
        ("tracking", "labstack-pgbackrest-full.timer"),
        ("tracking", "labstack-pgbackrest-diff.timer"),
        ("secrets", "labstack-dump-openbao.timer"),
        ("slurm_dbd", "labstack-dump-slurm-accounting.timer"),
    ],
)
def test_the_timers_are_scheduled(nodes: dict[str, Host], group: str, timer: str) -> None:
    node = nodes[hosts(group)[0]]
    assert node.check_output(f"systemctl is-enabled {timer}") == "enabled"
    assert node.check_output(f"systemctl is-active {timer}") == "active"


def _dumps(name: str) -> list[str]:
    """NAME's dumps in the backup bucket, oldest first."""
    listed = minio_root().list_objects("backups", prefix=f"{name}/", recursive=True)
    return sorted(str(o.object_name) for o in listed)


@pytest.mark.parametrize(
    ("group", "name", "words", "check"),
    [
        # A raft snapshot is a gzipped tar of OpenBao's state and its checksums
        # (compressed: no words to look for in the bucket).
        ("secrets", "openbao", [], "tar -tzf {} | grep -qx state.bin"),
        # Slurm's accounting tables, with this cluster's registration.
        (
            "slurm_dbd",
            "slurm-accounting",
            [b"CREATE TABLE", b"cluster_table", b"slurm_acct_db"],
            "grep -q 'INSERT INTO `cluster_table`' {}",
        ),
    ],
    ids=["openbao", "slurm-accounting"],
)
def test_a_dump_is_ciphertext_in_the_bucket_and_decrypts_to_the_service_data(
    nodes: dict[str, Host], group: str, name: str, words: list[bytes], check: str
) -> None:
    node = nodes[hosts(group)[0]]
    node.check_output(f"systemctl start labstack-dump-{name}.service")
    newest = _dumps(name)[-1]
    assert re.fullmatch(rf"{name}/{name}-\d{{8}}T\d{{6}}Z\.enc", newest), newest
    # With the passphrase on the node, the dump is the service's data.
    fetched = f"/root/fetched-{name}"
    try:
        assert node.check_output(f"labstack-dump fetch {name} '' {fetched}") == newest
        assert node.check_output(f"stat -c %a {fetched}") == "600"
        assert node.run(check.format(fetched)).rc == 0, f"{check} failed on {newest}"
        plain = node.run(f"head -c 64 {fetched}").stdout_bytes
    finally:
        node.check_output(f"rm -f {fetched}")
    # The attack: read the bucket as whoever holds it. OpenSSL's format (the
    # header, 8 bytes of salt), then nothing of the plain dump.
    stored = minio_root().get_object("backups", newest).read()
    assert stored.startswith(b"Salted__"), f"{newest} is not encrypted"
    assert len(plain) == 64
    assert plain[:16] not in stored
    assert [word for word in words if word in stored] == []
    # What is not a dump of ours is refused, and leaves no partial file behind.
    forged = f"{name}/{name}-19700101T000000Z.enc"
    minio_root().put_object("backups", forged, io.BytesIO(b"Salted__forged"), 14)
    try:
        refused = node.run(f"labstack-dump fetch {name} {forged} {fetched}")
    finally:
        minio_root().remove_object("backups", forged)
    assert refused.rc == 1, refused.stdout + refused.stderr
    assert f"{forged} could not be fetched and decrypted" in refused.stderr
    assert node.run(f"test -e {fetched}").rc == 1
    other = node.run(f"labstack-dump fetch {name} elsewhere/x.enc {fetched}")
    assert other.rc == 2
    assert f"elsewhere/x.enc is not a dump of {name}" in other.stderr


def test_a_dump_keeps_the_newest_and_deletes_the_older(nodes: dict[str, Host]) -> None:
    node = nodes[hosts("secrets")[0]]
    dump = "labstack-dump backup openbao 2 /etc/labstack/backup/openbao.dump"
    for _ in range(3):
        time.sleep(1)  # dumps are named by the second
        node.check_output(dump)
    kept = _dumps("openbao")
    assert len(kept) == 2, kept
    assert node.run("labstack-dump backup openbao 0 /bin/true").rc == 2


def test_the_snapshot_login_takes_snapshots_and_nothing_else() -> None:
    bao = hvac.Client(url=f"https://{endpoint(hosts('secrets')[0], 8200)}", verify=str(ca_file()))
    bao.auth.userpass.login("snapshot", credentials()["openbao_snapshot_password"])
    snapshot = bao.sys.take_raft_snapshot()
    assert snapshot.status_code == 200
    assert snapshot.content[:2] == b"\x1f\x8b"  # gzip
    # The attacks: read a secret, list or change policies, restore a snapshot.
    with pytest.raises(hvac.exceptions.Forbidden):
        bao.secrets.kv.v2.read_secret_version("labstack/admin/minio", raise_on_deleted_version=True)
    with pytest.raises(hvac.exceptions.Forbidden):
        bao.sys.list_acl_policies()
    with pytest.raises(hvac.exceptions.Forbidden):
        bao.sys.create_or_update_acl_policy(
            "labstack-snapshot", 'path "*" { capabilities = ["sudo"] }'
        )
    with pytest.raises(hvac.exceptions.Forbidden):
        bao.adapter.post("/v1/sys/storage/raft/snapshot-force", data=b"")
    assert bao.auth.token.lookup_self()["data"]["ttl"] <= 300
    bao.auth.token.revoke_self()


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
    head.check_output(f"runuser -u postgres -- pgbackrest --stanza={_STANZA} check")

    run = run_playbook(
        "playbooks/restore.yml",
        SANDBOX_INVENTORY,
        "--tags",
        "postgres",
        "-e",
        json.dumps({"pgbackrest_restore_target_time": target}),
    )

    assert run.returncode == 0, run.output
    assert client.get_experiment(kept).lifecycle_stage == "active"
    # What came after the target is gone: the restore went to that moment.
    assert client.get_experiment_by_name(later) is None


def _sacct(controller: Host, job_id: str) -> str:
    return controller.check_output(f"sacct -n -X -P -j {job_id} -o JobID,State")


def test_restore_brings_back_the_accounting_lost_after_the_dump(nodes: dict[str, Host]) -> None:
    controller = nodes[controller_name()]
    dbd = nodes[hosts("slurm_dbd")[0]]
    job = sbatch(controller, wrap="true")
    assert job.returncode == 0, job.output
    # slurmctld hands the record to slurmdbd within moments of the job's end.
    deadline = time.monotonic() + 60
    while _sacct(controller, job.job_id) != f"{job.job_id}|COMPLETED":
        assert time.monotonic() < deadline, _sacct(controller, job.job_id)
        time.sleep(1)
    dbd.check_output("systemctl start labstack-dump-slurm-accounting.service")
    # The loss: every job record of this cluster.
    table = f"slurm_acct_db.{slurm_setting('slurm_cluster_name')}_job_table"
    dbd.check_output(f"mariadb -e 'DELETE FROM {table}'")  # noqa: S608 (our own setting)
    assert _sacct(controller, job.job_id) == ""

    run = run_playbook("playbooks/restore.yml", SANDBOX_INVENTORY, "--tags", "slurm-accounting")

    assert run.returncode == 0, run.output
    assert "Slurm's accounting restored from slurm-accounting/slurm-accounting-" in run.output
    assert _sacct(controller, job.job_id) == f"{job.job_id}|COMPLETED"
    assert dbd.run("test -e /root/labstack-restore-slurm-accounting.sql").rc == 1


def test_a_rebuilt_openbao_comes_back_from_its_snapshot_with_its_secrets_and_keys(
    nodes: dict[str, Host],
) -> None:
    node = nodes[hosts("secrets")[0]]
    # A secret no site.yml run writes (the admin login may not delete it: each
    # run of this test writes a new value over it).
    marker = {"value": f"rebuild-marker-{uuid.uuid4().hex}"}
    openbao_admin().secrets.kv.v2.create_or_update_secret("labstack/tests/rebuild", marker)
    keys = credentials()["openbao_unseal_keys"]
    node.check_output("systemctl start labstack-dump-openbao.service")
    # The loss: OpenBao's storage, as on a new disk or a rebuilt node.
    node.check_output("systemctl stop openbao && rm -rf /var/lib/openbao/raft/*")
    node.check_output("systemctl start openbao")

    run = run_playbook("playbooks/secrets.yml", SANDBOX_INVENTORY)

    assert run.returncode == 0, run.output
    assert "OpenBao rebuilt: restored from openbao/openbao-" in run.output
    admin = openbao_admin()
    assert not admin.sys.is_sealed()
    read = admin.secrets.kv.v2.read_secret_version(
        "labstack/tests/rebuild", raise_on_deleted_version=True
    )
    assert read["data"]["data"] == marker
    # The same keys open it: the credentials file was not rewritten.
    credentials.cache_clear()
    assert credentials()["openbao_unseal_keys"] == keys
    assert node.run("test -e /root/labstack-restore-openbao.snap").rc == 1
    # A rerun finds it as any other run does.
    again = run_playbook("playbooks/secrets.yml", SANDBOX_INVENTORY)
    assert again.returncode == 0, again.output
    assert "OpenBao rebuilt" not in again.output


def test_a_rebuilt_openbao_with_no_snapshot_starts_anew_and_says_so(
    nodes: dict[str, Host],
) -> None:
    """As a sandbox made again from nothing, which keeps its credentials file."""
    node = nodes[hosts("secrets")[0]]
    keys = credentials()["openbao_unseal_keys"]
    for name in _dumps("openbao"):
        minio_root().remove_object("backups", name)
    node.check_output("systemctl stop openbao && rm -rf /var/lib/openbao/raft/*")
    node.check_output("systemctl start openbao")
    try:
        run = run_playbook("playbooks/secrets.yml", SANDBOX_INVENTORY)

        assert run.returncode == 0, run.output
        assert "has no data and the backup bucket no snapshot of it" in run.output
        credentials.cache_clear()  # and for the tests after this one
        assert credentials()["openbao_unseal_keys"] != keys
        # The lab's own secrets are written again from the credentials file.
        secret = openbao_admin().secrets.kv.v2.read_secret_version(
            "labstack/jobs/workload", raise_on_deleted_version=True
        )
        assert secret["data"]["data"]["AWS_ACCESS_KEY_ID"] == "jobs"
    finally:
        node.check_output("systemctl start labstack-dump-openbao.service")
