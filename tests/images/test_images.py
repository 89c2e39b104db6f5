"""The images and the MLproject, run for real.

The training image runs the demo as the training-job chart runs it (read-only
root filesystem, uid 10001, only /tmp writable) and records a real MLflow run
in a SQLite store on a mounted directory; torchrun runs it on two ranks; it
trains from a dataset that `mlflow run . -e publish` put in a real MinIO.
Its labels agree with the build-info it carries, and nothing of its build
(wheelhouse, pip cache) or any credential is left in it. The MLflow, MinIO,
PostgreSQL and OpenBao images serve as the labstack chart runs them, the
MinIO and OpenBao ones with the very binaries the roles install. The
Apptainer definition builds a SIF where `apptainer` is installed.
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
import shlex
import shutil
import subprocess
import sys
import time
import tomllib
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import requests
import yaml
from mlflow.entities import Run

# The parser `mlflow run` itself uses (MLflow has no public one).
from mlflow.projects._project_spec import EntryPoint, load_project
from mlflow.tracking import MlflowClient

from workload import checkpoint
from workload.config import TrainConfig, parse
from workload.credentials import SECRET_ENV_VARS
from workload.data import Manifest
from workload.data.manifest import MANIFEST_NAME
from workload.localservers import Minio
from workload.s3 import S3Settings, make_client
from workload.shapes import write_tar

REPO = Path(__file__).resolve().parents[2]
VERSION = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["version"]
DEMO = ["--dev", "--generate-dataset", "--device", "cpu"]
DEV_STEPS = 20  # dev mode: at most 20 steps, a checkpoint every 10


def docker(*args: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["docker", *args], capture_output=True, text=True, timeout=timeout, check=False
    )


def in_image(image: str, *argv: str, user: str | None = None) -> str:
    """stdout of `argv` run in a throwaway container of `image` (its entrypoint replaced)."""
    as_user = ["--user", user] if user else []
    done = docker("run", "--rm", *as_user, "--entrypoint", argv[0], image, *argv[1:])
    assert done.returncode == 0, f"{argv} in {image}: {done.stderr[-2000:]}"
    return done.stdout


def inspect(image: str) -> dict[str, Any]:
    done = docker("image", "inspect", image)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)[0]


class Store:
    """A directory the container (uid 10001) and this process share: MLflow's SQLite store."""

    def __init__(self, root: Path) -> None:
        self.root = root
        root.chmod(0o777)  # the container's user is not this test's
        self.uri = f"sqlite:///{root}/mlflow.db"

    def run_in(
        self, image: str, *argv: str, entrypoint: str = "", env: dict[str, str] | None = None
    ) -> str:
        """Run the image as the chart does: read-only root, only /tmp writable, uid 10001."""
        args = ["run", "--rm", "--read-only", "--tmpfs", "/tmp"]
        # The same path inside and out, so that artifact URIs mean the same file.
        args += ["-v", f"{self.root}:{self.root}", "-w", str(self.root)]
        env = {**(env or {}), "MLFLOW_TRACKING_URI": self.uri}
        args += [a for key, value in env.items() for a in ("-e", f"{key}={value}")]
        # The host's network: a server the test started on loopback is reachable.
        args += ["--network", "host"]
        args += ["--entrypoint", entrypoint] if entrypoint else []
        done = docker(*args, image, *argv)
        assert done.returncode == 0, (
            f"{image} {argv} exited {done.returncode}: {done.stderr[-4000:]}"
        )
        return done.stdout + done.stderr

    def only_run(self, experiment: str) -> Run:
        client = MlflowClient(self.uri)
        found = client.get_experiment_by_name(experiment)
        assert found is not None, f"no experiment {experiment!r} in {self.uri}"
        runs = client.search_runs([found.experiment_id])
        assert len(runs) == 1, f"{len(runs)} runs in {experiment!r}, expected 1"
        return runs[0]

    def release(self, image: str) -> None:
        """Let this process delete what uid 10001 wrote (the owner must chmod it)."""
        docker(
            "run", "--rm", "-v", f"{self.root}:{self.root}", "--entrypoint", "chmod",
            image, "-R", "a+rwX", str(self.root),
        )  # fmt: skip


@pytest.fixture(scope="module")
def store(training_image: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Store]:
    shared = Store(tmp_path_factory.mktemp("store"))
    yield shared
    shared.release(training_image)


@pytest.fixture(scope="module")
def demo(training_image: str, store: Store) -> Run:
    """The demo run of the README, in the image: `--dev --generate-dataset --device cpu`."""
    store.run_in(training_image, *DEMO, "--experiment", "image-demo")
    return store.only_run("image-demo")


# ------------------------------------------------------------ training image


def test_demo_run_records_metrics_and_checkpoints(demo: Run, store: Store) -> None:
    client = MlflowClient(store.uri)
    run_id = demo.info.run_id
    assert demo.info.status == "FINISHED"
    assert demo.data.params["device"] == "cpu"
    assert demo.data.params["generate_dataset"] == "True"
    assert demo.data.tags["data.source"] == "generated"

    losses = client.get_metric_history(run_id, "train.loss")
    assert [m.step for m in losses] == [10, 20]
    assert all(m.value > 0 for m in losses)
    assert 0 < demo.data.metrics["val.accuracy"] <= 1

    saved = [a.path for a in client.list_artifacts(run_id, checkpoint.ARTIFACT_DIR)]
    assert saved == ["checkpoints/step-00000010.pt", "checkpoints/step-00000020.pt"]
    state = checkpoint.latest(client, run_id)
    assert state is not None
    assert state["step"] == DEV_STEPS
    assert state["config"]["dev"] == "True"


def test_demo_ran_as_uid_10001_with_a_passwd_entry(
    demo: Run, store: Store, training_image: str
) -> None:
    written = [p for p in store.root.rglob("*") if p.is_file()]
    assert any(p.name == "mlflow.db" for p in written)
    assert {p.stat().st_uid for p in written} == {10001}, "files written by another uid"
    assert inspect(training_image)["Config"]["User"] == "10001:10001"
    who = in_image(
        training_image, "python", "-c", "import os, pwd; print(pwd.getpwuid(os.getuid()))"
    )
    assert "pw_uid=10001" in who
    assert "pw_dir='/tmp'" in who


def test_labels_name_the_commit_of_the_build_info(demo: Run, training_image: str) -> None:
    labels = inspect(training_image)["Config"]["Labels"]
    info = json.loads(in_image(training_image, "cat", "/etc/labstack/build-info.json"))
    commit = info["git.commit"]
    assert len(commit) == 40
    assert labels["org.opencontainers.image.revision"] == commit
    assert labels["org.opencontainers.image.version"] == VERSION
    # No git checkout in the image: the run's provenance is its build info.
    assert demo.data.tags["git.commit"] == commit
    assert demo.data.tags["env.lock_sha256"] == info["env.lock_sha256"]
    assert demo.data.tags["git.dirty"] == info["git.dirty"]


def test_no_wheelhouse_pip_cache_or_credential_in_the_image(training_image: str) -> None:
    leftovers = in_image(
        training_image,
        "find", "/", "-xdev", "(", "-name", "*.whl", "-o", "-name", "wheelhouse",
        "-o", "-path", "/root/.cache", "-o", "-path", "/tmp/*", ")", "-print",
        user="0",
    )  # fmt: skip
    assert leftovers == ""
    # The packages really were installed (from wheels served to the build, none kept).
    assert "torch" in in_image(training_image, "python", "-m", "pip", "list")
    env = inspect(training_image)["Config"]["Env"]
    assert not {e.split("=", 1)[0] for e in env} & SECRET_ENV_VARS
    history = docker("history", "--no-trunc", "--format", "{{.CreatedBy}}", training_image)
    assert history.returncode == 0
    assert not [name for name in SECRET_ENV_VARS if name in history.stdout]
    assert "PASSWORD" not in history.stdout.upper()


def test_torchrun_trains_on_two_ranks(training_image: str, store: Store) -> None:
    # As the training-job chart runs it on several nodes (torchrun ending 143 when stopped).
    argv = ["-m", "workload.torchrun", "--standalone", "--nproc-per-node", "2"]
    argv += ["--module", "workload.train", *DEMO]
    store.run_in(training_image, *argv, "--experiment", "image-ddp", entrypoint="python")
    run = store.only_run("image-ddp")
    assert run.info.status == "FINISHED"
    assert run.data.tags["dist.world_size"] == "2"
    assert run.data.metrics["val.accuracy"] > 0


# ------------------------------------------------------------------ MLproject


def entry_point(name: str) -> EntryPoint:
    """The MLproject's entry point NAME, as `mlflow run` reads it."""
    entry = load_project(str(REPO)).get_entry_point(name)
    assert entry is not None, f"MLproject has no entry point {name!r}"
    return entry


def entry_point_argv(name: str, module: str) -> tuple[list[str], dict[str, str]]:
    """The command `mlflow run` would start with the defaults, and the params it logs."""
    entry = entry_point(name)
    logged, _ = entry.compute_parameters({}, None)
    argv = shlex.split(entry.compute_command({}, None))
    assert argv[:3] == ["python", "-m", module], argv
    return argv[3:], {key: shlex.split(value)[0] for key, value in logged.items()}


@pytest.mark.parametrize("name", ["train", "demo"])
def test_mlproject_training_entry_points_parse_and_agree(name: str) -> None:
    argv, logged = entry_point_argv(name, "workload.train")
    config = parse(argv).effective()  # exits (SystemExit) on a flag it does not know
    params = config.as_params()
    # `mlflow run` logs these params and workload.train logs its own: a param
    # logged twice with two spellings fails the run.
    assert {k: v for k, v in logged.items() if params[k] != v} == {}
    if name == "train":
        defaults = TrainConfig().as_params()
        differ = {k: (v, defaults[k]) for k, v in logged.items() if defaults[k] != v}
        assert differ == {}, "MLproject defaults (left) differ from workload/config.py's"
    else:
        assert config.dev
        assert config.generate_dataset
        assert config.device == "cpu"


def test_mlproject_publish_entry_point_names_the_data_command() -> None:
    entry = entry_point("publish")
    assert set(entry.parameters) == {"source", "name", "version", "bucket"}
    command = entry.compute_command({"source": "/x", "name": "n", "version": "v"}, None)
    assert shlex.split(command) == [
        "python", "-m", "workload.data", "--bucket", "datasets", "publish", "/x",
        "--name", "n", "--version", "v",
    ]  # fmt: skip


def mlflow_run(entry: str, store: Path, env: dict[str, str], *params: str) -> tuple[Run, str]:
    """`mlflow run . -e ENTRY --env-manager local` into a fresh SQLite store under `store`."""
    uri = f"sqlite:///{store}/mlflow.db"
    client = MlflowClient(uri)
    # Artifacts in the temporary store, not ./mlruns in the checkout.
    experiment = client.create_experiment(f"mlproject-{entry}", str(store / "artifacts"))
    argv = [sys.executable, "-m", "mlflow", "run", ".", "-e", entry, "--env-manager", "local"]
    argv += ["--experiment-id", experiment, *(a for p in params for a in ("-P", p))]
    # `python` in the entry points is this environment's.
    path = f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"
    run_env = {**os.environ, **env, "MLFLOW_TRACKING_URI": uri, "PATH": path}
    done = subprocess.run(
        argv, cwd=REPO, env=run_env, capture_output=True, text=True, timeout=600, check=False
    )
    assert done.returncode == 0, f"mlflow run -e {entry}:\n{done.stderr[-4000:]}"
    runs = client.search_runs([experiment])
    assert len(runs) == 1
    return runs[0], done.stdout + done.stderr


def test_mlflow_run_demo_trains_in_the_run_it_created(tmp_path: Path) -> None:
    run, _ = mlflow_run("demo", tmp_path, {})
    assert run.info.status == "FINISHED"
    assert run.data.tags["mlflow.project.entryPoint"] == "demo"
    assert run.data.params["dev"] == "True"  # logged by workload.train into the same run
    state = checkpoint.latest(MlflowClient(f"sqlite:///{tmp_path}/mlflow.db"), run.info.run_id)
    assert state is not None
    assert state["step"] == DEV_STEPS


def test_published_dataset_trains_in_the_image(
    minio: Minio, training_image: str, store: Store, tmp_path: Path
) -> None:
    """`mlflow run . -e publish` into MinIO, then the image trains from that version over S3."""
    source = tmp_path / "src"
    write_tar(source / "shapes.tar", train=256, val=64, size=40, seed=0)
    expected = Manifest.of_directory(source, "shapes", "e2e")
    run, output = mlflow_run("publish", tmp_path, minio.env(), f"source={source}", "version=e2e")
    assert run.info.status == "FINISHED"
    assert "published s3://datasets/shapes/e2e/: 1 files" in output
    s3 = make_client(minio.settings())
    stored = s3.get_object(Bucket="datasets", Key=f"shapes/e2e/{MANIFEST_NAME}")["Body"].read()
    assert Manifest.from_json(stored, "published manifest").digest == expected.digest

    cache = {"DATA_PATH": "/tmp/shared", "DATA_EPHEMERAL_PATH": "/tmp/local"}
    argv = ["--dev", "--device", "cpu", "--dataset-version", "e2e", "--experiment", "image-s3"]
    store.run_in(training_image, *argv, env={**minio.env(), **cache})
    trained = store.only_run("image-s3")
    assert trained.info.status == "FINISHED"
    assert trained.data.tags["data.version"] == "e2e"
    assert trained.data.tags["data.manifest_sha256"] == expected.digest


# ------------------------------------------------------------ service images


@contextmanager
def serving(
    image: str,
    port: int,
    env: dict[str, str],
    *argv: str,
    volumes: tuple[str, ...] | list[str] = (),
) -> Iterator[tuple[str, str]]:
    """A detached container as the chart runs it; yields (its id, the URL of `port`)."""
    env_args = [a for key, value in env.items() for a in ("-e", f"{key}={value}")]
    volume_args = [a for volume in volumes for a in ("-v", volume)]
    started = docker(
        "run", "-d", "--read-only", "--tmpfs", "/tmp", "-p", f"127.0.0.1::{port}",
        *env_args, *volume_args, image, *argv,
    )  # fmt: skip
    assert started.returncode == 0, started.stderr
    container = started.stdout.strip()
    try:
        published = docker("port", container, str(port)).stdout.split()[0]
        yield container, f"http://{published}"
    finally:
        docker("rm", "-f", container)


def wait_ok(url: str, container: str, timeout: float = 180) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if requests.get(url, timeout=5).status_code == 200:
                return
        except requests.ConnectionError:
            pass
        time.sleep(2)
    logs = docker("logs", "--tail", "30", container)
    pytest.fail(f"{url} not ready after {timeout}s:\n{logs.stdout}{logs.stderr}")


def exec_in(container: str, *argv: str) -> str:
    done = docker("exec", container, *argv)
    assert done.returncode == 0, f"{argv}: {done.stderr}"
    return done.stdout


def test_mlflow_image_serves_with_auth_as_uid_10001(
    mlflow_image: str, mlflow_pins: dict[str, str]
) -> None:
    pins = mlflow_pins
    admin = secrets.token_hex(12)
    env = {"MLFLOW_FLASK_SERVER_SECRET_KEY": secrets.token_hex(16)}
    env["MLFLOW_AUTH_ADMIN_PASSWORD"] = admin
    # All interfaces inside the container; published on the host's loopback only.
    argv = ["server", "--host", "0.0.0.0", "--port", "5000", "--workers", "1"]  # noqa: S104
    argv += ["--backend-store-uri", "sqlite:////tmp/mlflow.db", "--app-name", "basic-auth"]
    with serving(mlflow_image, 5000, env, *argv) as (container, url):
        wait_ok(f"{url}/health", container)
        api = f"{url}/api/2.0/mlflow/experiments/search?max_results=1"
        assert requests.get(api, timeout=10).status_code == 401
        assert requests.get(api, timeout=10, auth=("admin", admin)).status_code == 200
        assert exec_in(container, "id", "-u").strip() == "10001"
        versions = exec_in(
            container, "sh", "-c",
            "python -c 'import mlflow, psycopg2, boto3, minio, flask_wtf; "
            "print(mlflow.__version__, psycopg2.__version__.split()[0], boto3.__version__)'",
        )  # fmt: skip
    expected = [pins[k] for k in ("mlflow_version", "mlflow_psycopg2_version")]
    assert versions.split() == [*expected, pins["mlflow_boto3_version"]]


def test_minio_image_stores_objects_as_uid_10001(minio_image: str) -> None:
    user, password = "lab" + secrets.token_hex(4), secrets.token_hex(20)
    env = {"MINIO_ROOT_USER": user, "MINIO_ROOT_PASSWORD": password, "MINIO_BROWSER": "off"}
    with serving(minio_image, 9000, env, "server", "/tmp/data", "--address", ":9000") as (c, url):
        wait_ok(f"{url}/minio/health/live", c)
        s3 = make_client(S3Settings(url, user, password))
        s3.create_bucket(Bucket="probe")
        s3.put_object(Bucket="probe", Key="k", Body=b"stored")
        assert s3.get_object(Bucket="probe", Key="k")["Body"].read() == b"stored"
        assert exec_in(c, "stat", "-c", "%u", "/tmp/data/probe").strip() == "10001"


def test_minio_image_binary_is_the_pinned_build(minio_image: str, minio_binary: Path) -> None:
    """The image holds the binary the Makefile built (LABSTACK_MINIO_BIN), bit
    for bit, itself the sha256 recorded when it was built; the label names its
    module version."""
    in_sha = in_image(minio_image, "sha256sum", "/usr/local/bin/minio").split()[0]
    host_sha = hashlib.sha256(minio_binary.read_bytes()).hexdigest()
    assert in_sha == host_sha
    recorded = Path(f"{minio_binary}.sha256").read_text().split()[0]
    assert host_sha == recorded
    version = minio_binary.name.removeprefix("minio-")
    labels = inspect(minio_image)["Config"]["Labels"]
    assert labels["org.opencontainers.image.version"] == version
    assert "Runtime: go" in in_image(minio_image, "minio", "--version")


def _env_file(directory: Path, env: dict[str, str]) -> Path:
    """A docker --env-file: credentials out of every command line."""
    path = directory / "env"
    path.write_text("".join(f"{key}={value}\n" for key, value in env.items()))
    return path


def test_postgres_image_runs_the_charts_entrypoint_as_uid_10001(
    postgres_image: str, tmp_path: Path
) -> None:
    """The chart's entrypoint (its ConfigMap) and pg_hba.conf, a read-only
    root, the chart's writable paths only: initdb, the role and databases,
    password logins over TCP, a wrong password refused."""
    chart = REPO / "helm" / "labstack" / "files" / "postgres-entrypoint.sh"
    config = tmp_path / "config"
    config.mkdir()
    (config / "entrypoint.sh").write_text(chart.read_text())
    (config / "pg_hba.conf").write_text(
        "local all all scram-sha-256\nhost all all 0.0.0.0/0 scram-sha-256\n"
    )
    app_password = secrets.token_hex(16)
    env = {
        "PGDATA": "/var/lib/postgresql/data/pgdata",
        "POSTGRES_PASSWORD": secrets.token_hex(16),
        "APP_USER": "mlflow",
        "APP_PASSWORD": app_password,
        "APP_DATABASES": "mlflow mlflow_auth",
    }
    env_file = _env_file(tmp_path, env)
    started = docker(
        "run", "-d", "--read-only", "--user", "10001:10001", "--env-file", str(env_file),
        # The chart's emptyDirs, writable by uid 10001 as fsGroup makes them.
        "--tmpfs", "/tmp", "--tmpfs", "/dev/shm",
        "--tmpfs", "/var/run/postgresql:uid=10001,gid=10001",
        "--tmpfs", "/var/lib/postgresql/data:uid=10001,gid=10001",
        "-v", f"{config}:/etc/labstack-postgres:ro",
        postgres_image, "bash", "/etc/labstack-postgres/entrypoint.sh",
        "-c", "listen_addresses=*", "-c", "unix_socket_directories=/var/run/postgresql",
        "-c", "hba_file=/etc/labstack-postgres/pg_hba.conf",
    )  # fmt: skip
    assert started.returncode == 0, started.stderr
    container = started.stdout.strip()
    try:
        ready = ["exec", container, "pg_isready", "-q", "-h", "/var/run/postgresql"]
        for _ in range(60):
            if docker(*ready).returncode == 0:
                break
            time.sleep(1)
        login = _env_file(tmp_path, {"PGPASSWORD": app_password})
        query = "SELECT current_user, string_agg(datname, ',' ORDER BY datname) FROM pg_database "
        query += "WHERE datdba = (SELECT oid FROM pg_roles WHERE rolname = current_user)"
        psql = ["psql", "-X", "-At", "-h", "127.0.0.1", "-U", "mlflow", "-d", "mlflow", "-c"]
        done = docker("exec", "--env-file", str(login), container, *psql, query)
        assert done.returncode == 0, done.stderr + docker("logs", container).stderr
        assert done.stdout.strip() == "mlflow|mlflow,mlflow_auth"
        wrong = _env_file(tmp_path, {"PGPASSWORD": "not-" + app_password})
        refused = docker("exec", "--env-file", str(wrong), container, *psql, "SELECT 1")
        assert refused.returncode != 0
        assert "password authentication failed" in refused.stderr
        assert exec_in(container, "stat", "-c", "%u", env["PGDATA"]).strip() == "10001"
        assert exec_in(container, "id", "-un").strip() == "postgres"
    finally:
        docker("rm", "-f", container)


def test_openbao_image_binary_is_the_roles_and_serves_as_uid_10001(
    openbao_image: str, tmp_path: Path
) -> None:
    defaults = yaml.safe_load((REPO / "ansible/roles/openbao/defaults/main.yml").read_text())
    in_sha = in_image(openbao_image, "sha256sum", "/usr/local/bin/bao").split()[0]
    assert in_sha == defaults["openbao_binary_sha256"]
    config = tmp_path / "config"
    config.mkdir()
    (config / "config.hcl").write_text(
        'api_addr = "http://127.0.0.1:8200"\ncluster_addr = "https://127.0.0.1:8201"\n'
        'listener "tcp" {\n  address = "[::]:8200"\n  tls_disable = true\n}\n'
        'storage "raft" {\n  path = "/tmp"\n  node_id = "openbao-0"\n}\n'
    )
    config.chmod(0o755)
    (config / "config.hcl").chmod(0o644)
    argv = ["server", "-config=/openbao/config/config.hcl"]
    with serving(openbao_image, 8200, {}, *argv, volumes=[f"{config}:/openbao/config:ro"]) as (
        container,
        url,
    ):
        wait_ok(f"{url}/v1/sys/health?uninitcode=200", container)
        health = requests.get(f"{url}/v1/sys/health?uninitcode=200", timeout=10).json()
        assert health["initialized"] is False
        assert health["version"] == openbao_image.rsplit(":", 1)[1]
        assert exec_in(container, "id", "-u").strip() == "10001"


# ------------------------------------------------------------------ Apptainer


@pytest.mark.skipif(
    shutil.which("apptainer") is None,
    reason="apptainer is not on PATH: apptainer/training.def is built and run only where it is",
)
def test_apptainer_sif_from_the_training_image(training_image: str, tmp_path: Path) -> None:
    sif = tmp_path / "training.sif"
    built = subprocess.run(
        ["apptainer", "build", "--build-arg", f"IMAGE={training_image}", str(sif),
         str(REPO / "apptainer" / "training.def")],
        capture_output=True, text=True, timeout=3600, check=False,
    )  # fmt: skip
    assert built.returncode == 0, built.stderr[-4000:]
    ran = subprocess.run(
        ["apptainer", "exec", "--containall", str(sif), "sh", "-c",
         "cat /etc/labstack/build-info.json && command -v torchrun"],
        capture_output=True, text=True, timeout=600, check=False,
    )  # fmt: skip
    assert ran.returncode == 0, ran.stderr[-4000:]
    info = json.loads(ran.stdout[: ran.stdout.rindex("}") + 1])
    assert info == json.loads(in_image(training_image, "cat", "/etc/labstack/build-info.json"))
    assert ran.stdout.strip().endswith("/opt/venv/bin/torchrun")
