"""Who may do what: MLflow's basic auth, MinIO's least-privilege users and no
anonymous access, OpenBao's AppRole for jobs."""

from __future__ import annotations

import ipaddress
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import hvac
import hvac.exceptions
import mlflow
import pytest
import requests
import urllib3
from botocore.exceptions import ClientError
from minio import Minio
from minio.error import S3Error

from tests.inventory import hosts, hostvars
from tests.openbao import generate_root
from tests.playbook import SANDBOX_INVENTORY
from tests.services import ca_file, credentials, endpoint, openbao_admin
from workload.data import DatasetCache, publish
from workload.s3 import S3Settings, make_client


def _mlflow_url() -> str:
    return f"https://{endpoint(hosts('tracking')[0], 5000)}"


def _bao_url() -> str:
    return f"https://{endpoint(hosts('secrets')[0], 8200)}"


def _s3(access_key: str, secret_key: str) -> Minio:
    return Minio(
        endpoint(hosts("storage")[0], 9000),
        access_key=access_key,
        secret_key=secret_key,
        secure=True,
        http_client=urllib3.PoolManager(ca_certs=str(ca_file())),
    )


def _root() -> Minio:
    return _s3(credentials()["minio_root_user"], credentials()["minio_root_password"])


def _user(name: str) -> Minio:
    return _s3(name, credentials()[f"minio_{name}_secret_key"])


def _denied(action: object) -> None:
    with pytest.raises(S3Error) as error:
        action()  # type: ignore[operator]
    assert error.value.code == "AccessDenied"


# --------------------------------------------------------------------- MLflow


def test_mlflow_refuses_anonymous_and_wrong_password() -> None:
    url = f"{_mlflow_url()}/api/2.0/mlflow/experiments/search?max_results=1"
    assert requests.get(url, verify=str(ca_file()), timeout=30).status_code == 401
    wrong = requests.get(url, auth=("admin", "not-the-password"), verify=str(ca_file()), timeout=30)
    assert wrong.status_code == 401
    admin = ("admin", credentials()["mlflow_admin_password"])
    right = requests.get(url, auth=admin, verify=str(ca_file()), timeout=30)
    assert right.status_code == 200, right.text


def test_mlflow_rejects_a_foreign_host_header() -> None:
    """--allowed-hosts: a request naming another host (DNS rebinding) is refused."""
    answer = requests.get(
        f"{_mlflow_url()}/api/2.0/mlflow/experiments/search?max_results=1",
        headers={"Host": "evil.example.org"},
        auth=("admin", credentials()["mlflow_admin_password"]),
        verify=str(ca_file()),
        timeout=30,
    )
    assert answer.status_code == 403


def test_a_run_and_its_artifact_land_in_minio(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", "admin")
    monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", credentials()["mlflow_admin_password"])
    monkeypatch.setenv("MLFLOW_TRACKING_SERVER_CERT_PATH", str(ca_file()))
    mlflow.set_tracking_uri(_mlflow_url())
    mlflow.set_experiment("labstack-infra-test")
    artifact = tmp_path / f"probe-{uuid.uuid4().hex}.txt"
    artifact.write_text("labstack\n")
    with mlflow.start_run() as run:
        mlflow.log_param("lr", 0.01)
        mlflow.log_metric("loss", 0.5, step=1)
        mlflow.log_artifact(str(artifact))
    logged = mlflow.get_run(run.info.run_id)
    assert logged.data.params["lr"] == "0.01"
    assert logged.data.metrics["loss"] == 0.5
    keys = [obj.object_name for obj in _root().list_objects("mlflow", recursive=True)]
    assert any(key and run.info.run_id in key and key.endswith(artifact.name) for key in keys), keys


# ---------------------------------------------------------------------- MinIO


@pytest.fixture(scope="module")
def dataset_object() -> Iterator[str]:
    """An object the curator publishes in datasets."""
    name = f"infra-test/{uuid.uuid4().hex}.txt"
    import io

    _user("curator").put_object("datasets", name, io.BytesIO(b"data"), 4)
    yield name
    _root().remove_object("datasets", name)


def test_minio_denies_anonymous_list_and_get(dataset_object: str) -> None:
    base = f"https://{endpoint(hosts('storage')[0], 9000)}"
    for bucket in ("datasets", "mlflow"):
        listing = requests.get(f"{base}/{bucket}?list-type=2", verify=str(ca_file()), timeout=30)
        assert listing.status_code == 403, listing.text
        assert "AccessDenied" in listing.text
    get = requests.get(f"{base}/datasets/{dataset_object}", verify=str(ca_file()), timeout=30)
    assert get.status_code == 403
    for bucket in ("datasets", "mlflow"):
        with pytest.raises(S3Error) as error:
            _root().get_bucket_policy(bucket)
        assert error.value.code == "NoSuchBucketPolicy"


def test_datasets_bucket_is_versioned() -> None:
    assert _root().get_bucket_versioning("datasets").status == "Enabled"


def test_jobs_read_datasets_and_write_nothing(dataset_object: str) -> None:
    import io

    jobs = _user("jobs")
    assert jobs.get_object("datasets", dataset_object).read() == b"data"
    assert dataset_object in [o.object_name for o in jobs.list_objects("datasets", recursive=True)]
    for bucket in ("datasets", "mlflow"):
        _denied(lambda bucket=bucket: jobs.put_object(bucket, "x", io.BytesIO(b"x"), 1))
    _denied(lambda: jobs.remove_object("datasets", dataset_object))
    _denied(lambda: list(jobs.list_objects("mlflow")))


def test_mlflow_user_writes_only_its_bucket(dataset_object: str) -> None:
    import io

    user = _user("mlflow")
    name = f"infra-test/{uuid.uuid4().hex}"
    user.put_object("mlflow", name, io.BytesIO(b"m"), 1)
    user.remove_object("mlflow", name)
    _denied(lambda: user.put_object("datasets", name, io.BytesIO(b"m"), 1))
    _denied(lambda: user.get_object("datasets", dataset_object))


def test_curator_cannot_touch_mlflow() -> None:
    import io

    _denied(lambda: _user("curator").put_object("mlflow", "x", io.BytesIO(b"x"), 1))


def test_prometheus_user_reads_no_object(dataset_object: str) -> None:
    import io

    user = _user("prometheus")
    _denied(lambda: user.get_object("datasets", dataset_object))
    _denied(lambda: list(user.list_objects("mlflow")))
    _denied(lambda: user.put_object("mlflow", "x", io.BytesIO(b"x"), 1))


def test_only_the_backup_user_reaches_the_backups(dataset_object: str) -> None:
    import io

    backup = _user("backup")
    name = f"infra-test/{uuid.uuid4().hex}"
    backup.put_object("backups", name, io.BytesIO(b"b"), 1)
    try:
        for other in ("jobs", "mlflow", "curator", "prometheus"):
            _denied(lambda other=other: _user(other).get_object("backups", name))
            _denied(lambda other=other: list(_user(other).list_objects("backups")))
            _denied(lambda other=other: _user(other).remove_object("backups", name))
    finally:
        backup.remove_object("backups", name)
    _denied(lambda: backup.get_object("datasets", dataset_object))
    _denied(lambda: list(backup.list_objects("mlflow")))
    _denied(lambda: backup.put_object("mlflow", name, io.BytesIO(b"b"), 1))


def test_a_published_dataset_version_cannot_be_changed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The curator publishes a version, then tries what its PutObject allows: overwrite an
    object and the manifest. Jobs still read the published bytes; the curator cannot
    delete the pinned object version (nor hide it behind a delete marker)."""
    monkeypatch.setenv("AWS_CA_BUNDLE", str(ca_file()))
    url = f"https://{endpoint(hosts('storage')[0], 9000)}"

    def settings(user: str) -> S3Settings:
        return S3Settings(url, user, credentials()[f"minio_{user}_secret_key"])

    def client(user: str) -> Any:
        return make_client(settings(user))

    curator = client("curator")
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "a.bin").write_bytes(b"published bytes")
    version = uuid.uuid4().hex
    published = publish(curator, tmp_path / "src", "infra-test", version)
    key = f"infra-test/{version}/a.bin"
    curator.put_object(Bucket="datasets", Key=key, Body=b"overwritten")
    curator.put_object(Bucket="datasets", Key=f"infra-test/{version}/MANIFEST.json", Body=b"{}")
    for version_id in (published.files[0].version_id, None):  # the version, or a delete marker
        pinned = {"VersionId": version_id} if version_id else {}
        with pytest.raises(ClientError, match="AccessDenied"):
            curator.delete_object(Bucket="datasets", Key=key, **pinned)

    reader = DatasetCache(settings("jobs"), "infra-test", version, local_root=tmp_path / "cache")
    assert reader.manifest() == published
    path, _ = reader.fetch()
    assert (path / "a.bin").read_bytes() == b"published bytes"


# -------------------------------------------------------------------- OpenBao


def _bao(token: str | None = None) -> hvac.Client:
    return hvac.Client(url=_bao_url(), token=token, verify=str(ca_file()))


def test_openbao_is_unsealed_with_audit_on() -> None:
    client = openbao_admin()
    assert client.sys.is_initialized()
    assert not client.sys.is_sealed()
    assert "file/" in client.sys.list_enabled_audit_devices()["data"]


def test_no_root_token_is_left_and_the_admin_login_is_scoped() -> None:
    """site.yml configures OpenBao with its admin login, and revoked the root token
    after the first run: the credentials file holds none, and no root token is left but
    the one the emergency path (the admin login and the unseal keys) makes. Its tokens
    expire in 15 minutes; it configures the lab's policies, logins and secrets, but
    cannot seal the server, turn auditing off, make tokens, or touch other policies or
    secrets outside the lab's path."""
    assert "openbao_root_token" not in credentials()
    assert not (SANDBOX_INVENTORY / "credentials-openbao-init.json").exists()
    admin = openbao_admin()
    forbidden = hvac.exceptions.Forbidden
    with pytest.raises(forbidden):
        admin.sys.seal()
    with pytest.raises(forbidden):
        admin.sys.disable_audit_device("file")
    with pytest.raises(forbidden):
        admin.auth.token.create(policies=["labstack-admin"], no_parent=True)
    with pytest.raises(forbidden):
        admin.secrets.kv.v2.create_or_update_secret("elsewhere/x", secret={"x": "y"})
    with pytest.raises(forbidden):
        admin.sys.create_or_update_acl_policy("default", 'path "*" { capabilities = ["read"] }')
    assert 0 < admin.auth.token.lookup_self()["data"]["ttl"] <= 900
    assert not admin.sys.is_sealed()
    assert "file/" in admin.sys.list_enabled_audit_devices()["data"]

    root = _bao(generate_root(admin, credentials()["openbao_unseal_keys"]))
    try:
        mine = root.auth.token.lookup_self()["data"]["accessor"]
        accessors = root.auth.token.list_accessors()["data"]["keys"]
        roots = [
            accessor
            for accessor in accessors
            if "root" in root.auth.token.lookup_accessor(accessor)["data"]["policies"]
        ]
        assert roots == [mine]
    finally:
        root.auth.token.revoke_self()


def test_approle_token_reads_job_credentials_only() -> None:
    admin = openbao_admin()
    role_id = admin.auth.approle.read_role_id("jobs")["data"]["role_id"]
    secret_id = admin.auth.approle.generate_secret_id("jobs")["data"]["secret_id"]
    job = _bao()
    job.auth.approle.login(role_id=role_id, secret_id=secret_id)
    secret = job.secrets.kv.v2.read_secret_version(
        "labstack/jobs/workload", raise_on_deleted_version=True
    )["data"]["data"]
    assert secret["AWS_SECRET_ACCESS_KEY"] == credentials()["minio_jobs_secret_key"]
    assert secret["AWS_ACCESS_KEY_ID"] == "jobs"
    assert secret["MLFLOW_TRACKING_PASSWORD"] == credentials()["mlflow_jobs_password"]
    # Jobs notify the lab's webhook, the one Alertmanager sends to.
    webhook = hostvars(hosts("monitoring")[0])["alertmanager_webhook_url"]
    assert secret["LABSTACK_WEBHOOK_URL"] == webhook
    for path in ("labstack/admin/minio", "labstack/admin/mlflow", "labstack/admin/postgres"):
        with pytest.raises(hvac.exceptions.Forbidden):
            job.secrets.kv.v2.read_secret_version(path, raise_on_deleted_version=True)
    with pytest.raises(hvac.exceptions.Forbidden):
        job.secrets.kv.v2.create_or_update_secret("labstack/jobs/workload", secret={"x": "y"})


def test_launcher_login_makes_job_logins_and_reads_no_secret() -> None:
    launcher = _bao()
    launcher.auth.userpass.login("launcher", credentials()["openbao_launcher_password"])
    made = launcher.auth.approle.generate_secret_id("jobs")["data"]
    launcher.adapter.post(
        "/v1/auth/approle/role/jobs/secret-id-accessor/destroy",
        json={"secret_id_accessor": made["secret_id_accessor"]},
    )
    for path in ("labstack/jobs/workload", "labstack/admin/minio"):
        with pytest.raises(hvac.exceptions.Forbidden):
            launcher.secrets.kv.v2.read_secret_version(path, raise_on_deleted_version=True)
    with pytest.raises(hvac.exceptions.Forbidden):
        launcher.auth.approle.generate_secret_id("other-role")


def test_job_logins_are_capped_and_bound_by_openbao() -> None:
    """The launcher asks for each job's login (a secret id of AppRole jobs) as it likes;
    OpenBao caps it: none without expiry or longer than openbao_jobs_secret_id_ttl, none
    with unlimited uses or more than the cap, none used beyond its uses, none from outside
    the lab's networks (openbao_jobs_bound_cidrs, the sandbox's subnet)."""
    role = openbao_admin().auth.approle.read_role("jobs")["data"]
    subnet = hostvars("head")["sandbox_subnet"]
    assert role["secret_id_bound_cidrs"] == role["token_bound_cidrs"] == [subnet]
    launcher = _bao()
    launcher.auth.userpass.login("launcher", credentials()["openbao_launcher_password"])
    renewed = launcher.auth.token.renew_self(increment=10**7)["auth"]
    assert 0 < renewed["lease_duration"] <= 28800, "the launcher's login outlives its max TTL"
    new_login = "/v1/auth/approle/role/jobs/secret-id"
    invalid, failed = hvac.exceptions.InvalidRequest, hvac.exceptions.InternalServerError
    for asked, error, refused in [
        ({"ttl": 0}, invalid, "ttl cannot be longer than the role's secret_id_ttl"),
        ({"ttl": role["secret_id_ttl"] + 1}, invalid, "ttl cannot be longer than the role's"),
        ({"num_uses": 0}, invalid, "num_uses cannot be higher than the role's secret_id_num_uses"),
        ({"num_uses": role["secret_id_num_uses"] + 1}, invalid, "num_uses cannot be higher"),
        # OpenBao answers 500 here, with the reason.
        ({"cidr_list": ["10.9.9.0/24"]}, failed, "failed to verify subset relationship"),
    ]:
        with pytest.raises(error, match=refused):
            launcher.adapter.post(new_login, json=asked)
    role_id = launcher.adapter.get("/v1/auth/approle/role/jobs/role-id")["data"]["role_id"]
    twice = launcher.adapter.post(new_login, json={"num_uses": 2})["data"]["secret_id"]
    for _ in range(2):
        assert _bao().auth.approle.login(role_id, twice, use_token=False)["auth"]
    with pytest.raises(hvac.exceptions.InvalidRequest, match="invalid role or secret ID"):
        _bao().auth.approle.login(role_id, twice, use_token=False)
    # Bound to one address of the lab's network that is not this machine's: refused here.
    elsewhere = str(ipaddress.ip_network(subnet)[-2])
    bound = launcher.adapter.post(new_login, json={"cidr_list": [f"{elsewhere}/32"]})
    with pytest.raises(hvac.exceptions.InvalidRequest, match="source address"):
        _bao().auth.approle.login(role_id, bound["data"]["secret_id"], use_token=False)


def test_jobs_mlflow_user_logs_in_and_cannot_administer() -> None:
    jobs = ("jobs", credentials()["mlflow_jobs_password"])
    url = f"https://{endpoint('head', 5000)}/api/2.0/mlflow"
    assert requests.get(
        f"{url}/experiments/get?experiment_id=0", auth=jobs, verify=str(ca_file()), timeout=30
    ).ok
    created = requests.post(
        f"{url}/users/create",
        json={"username": "intruder", "password": "x" * 20},
        auth=jobs,
        verify=str(ca_file()),
        timeout=30,
    )
    assert created.status_code == 403
