"""Helpers of the end-to-end tests: the `labstack` CLI as a researcher runs it on the sandbox."""

from __future__ import annotations

import functools
import os
import re
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import boto3
import hvac
from botocore.config import Config
from mlflow.entities import Run
from mlflow.tracking import MlflowClient

from tests.inventory import container
from tests.kube import KUBECONFIG
from tests.playbook import SANDBOX_INVENTORY
from tests.services import ca_file, credentials, endpoint
from workload.launch.config import load

CONFIG = SANDBOX_INVENTORY / ".generated" / "labstack.toml"
# The training Jobs' namespace (make lab writes it into the config).
K8S_NAMESPACE = load(CONFIG).kubernetes.namespace if CONFIG.is_file() else "labstack-jobs"
_SUBMITTED = re.compile(r"^run ([0-9a-f]{32})  job (\S+)  (\S+)$", re.MULTILINE)


@functools.cache
def launcher_token() -> str:
    """An OpenBao token of the lab's launcher login (userpass, policy labstack-launcher)."""
    bao = hvac.Client(url=f"https://{endpoint('head', 8200)}", verify=str(ca_file()))
    login = bao.auth.userpass.login("launcher", credentials()["openbao_launcher_password"])
    return login["auth"]["client_token"]


def researcher_env() -> dict[str, str]:
    """What a researcher's shell has: the config, an MLflow login and a launcher token."""
    assert CONFIG.is_file(), f"{CONFIG} is missing: `make lab` writes it"
    return {
        **os.environ,
        "LABSTACK_CONFIG": str(CONFIG),
        "MLFLOW_TRACKING_USERNAME": "admin",
        "MLFLOW_TRACKING_PASSWORD": credentials()["mlflow_admin_password"],
        "BAO_TOKEN": launcher_token(),
    }


def lab_setting(tmp_path: Path, section: str, setting: str) -> dict[str, str]:
    """The researcher's environment with a labstack.toml that adds SETTING to SECTION."""
    config = tmp_path / "labstack.toml"
    config.write_text(CONFIG.read_text().replace(f"[{section}]\n", f"[{section}]\n{setting}\n"))
    return {**researcher_env(), "LABSTACK_CONFIG": str(config)}


def labstack(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "workload.launch", *args],
        env=env or researcher_env(),
        capture_output=True,
        text=True,
        check=False,
        timeout=900,
    )


@dataclass(frozen=True)
class Submission:
    run_id: str
    job_id: str
    job_name: str


def submitted(done: subprocess.CompletedProcess[str]) -> list[Submission]:
    """The runs a `labstack submit` printed (on stderr for `render --create-run`)."""
    assert done.returncode == 0, f"labstack failed: {done.stderr}"
    output = done.stdout + done.stderr
    found = [Submission(*match) for match in _SUBMITTED.findall(output)]
    assert found, f"no run/job in the output: {output}"
    return found


def mlflow() -> MlflowClient:
    os.environ["MLFLOW_TRACKING_SERVER_CERT_PATH"] = str(ca_file())
    os.environ["MLFLOW_TRACKING_USERNAME"] = "admin"
    os.environ["MLFLOW_TRACKING_PASSWORD"] = credentials()["mlflow_admin_password"]
    return MlflowClient(tracking_uri=f"https://{endpoint('head', 5000)}")


def wait_run(run_id: str, statuses: tuple[str, ...], timeout: float = 600) -> Run:
    client = mlflow()
    deadline = time.monotonic() + timeout
    while True:
        run = client.get_run(run_id)
        if run.info.status in statuses:
            return run
        assert time.monotonic() < deadline, f"run {run_id} is {run.info.status}, not {statuses}"
        time.sleep(3)


def wait_step(run_id: str, step: int, timeout: float = 600) -> None:
    """Until the run has logged train.loss at `step` or later."""
    client = mlflow()
    deadline = time.monotonic() + timeout
    while max((m.step for m in client.get_metric_history(run_id, "train.loss")), default=0) < step:
        status = client.get_run(run_id).info.status
        assert status in ("SCHEDULED", "RUNNING"), f"run {run_id} ended {status} before step {step}"
        assert time.monotonic() < deadline, f"run {run_id} did not reach step {step}"
        time.sleep(2)


def on_head(*argv: str, user: str = "root") -> str:
    """A command on the Slurm controller (the sandbox's login node)."""
    done = subprocess.run(
        ["docker", "exec", "-u", user, container("head"), *argv],
        capture_output=True,
        text=True,
        check=False,
    )
    return done.stdout + done.stderr


def on_node(host: str, script: str, stdin: str = "", check: bool = False) -> str:
    """SCRIPT (sh -c) on the sandbox node HOST, reading STDIN; its standard output.
    CHECK: it must exit 0."""
    done = subprocess.run(
        ["docker", "exec", "-i", container(host), "sh", "-c", script],
        input=stdin,
        capture_output=True,
        text=True,
        check=False,
    )
    assert not check or done.returncode == 0, f"on {host}, {script!r}: {done.stderr}"
    return done.stdout


def slurm_state(job_id: str) -> str:
    out = on_head("squeue", "-h", "-j", job_id, "-o", "%T").strip()
    if out:
        return out
    out = on_head("sacct", "-X", "-n", "-P", "-j", job_id, "-o", "State").strip()
    return out.splitlines()[-1] if out else "UNKNOWN"


def runs_in(experiment: str) -> set[str]:
    client = mlflow()
    found = client.get_experiment_by_name(experiment)
    if found is None:
        return set()
    return {r.info.run_id for r in client.search_runs([found.experiment_id], max_results=1000)}


def config_with(tmp: Path, **client: str) -> Path:
    """The sandbox's config with some [client] settings replaced."""
    text = CONFIG.read_text()
    for key, value in client.items():
        text = re.sub(rf'^{key} = ".*"$', f'{key} = "{value}"', text, count=1, flags=re.MULTILINE)
    path = tmp / "labstack.toml"
    path.write_text(text)
    return path


def checkpoint_keys(run_id: str) -> list[str]:
    """The run's checkpoint objects in MinIO's mlflow bucket, as the MLflow server stored them."""
    run = mlflow().get_run(run_id)
    s3 = boto3.client(
        "s3",
        endpoint_url=f"https://{endpoint('storage', 9000)}",
        aws_access_key_id="mlflow",
        aws_secret_access_key=credentials()["minio_mlflow_secret_key"],
        verify=str(ca_file()),
        config=Config(signature_version="s3v4"),
        region_name="us-east-1",
    )
    listed = s3.list_objects_v2(Bucket="mlflow", Prefix=f"{run.info.experiment_id}/{run_id}/")
    keys = [item["Key"] for item in listed.get("Contents", [])]
    return [key for key in keys if "/checkpoints/step-" in key]


def ddp_args(experiment: str) -> list[str]:
    """The DDP tests' training arguments: small, slow-enough runs of 2 ranks x 8 steps per
    epoch, 40 steps, a checkpoint every 10 steps."""
    return [
        "subset=256",
        "batch_size=16",
        "max_steps=40",
        "log_every=1",
        "checkpoint_every_steps=10",
        "step_sleep=0.3",
        f"experiment={experiment}",
    ]


def kube_env() -> dict[str, str]:
    """A researcher's environment with the sandbox cluster's kubeconfig."""
    return {**researcher_env(), "KUBECONFIG": str(KUBECONFIG)}
