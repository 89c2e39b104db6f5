"""The restore drill: the head node is lost with everything on it (PostgreSQL with
MLflow's runs and users, OpenBao, slurmctld, Slurm's accounting in MariaDB), made
again from nothing by sandbox.yml, and site.yml alone (each service's data found new
and restored from its newest backup before the service starts) brings back every
experiment, run, metric, tag and artifact link, every MLflow login, every
OpenBao secret and policy, and every job record; a run that was training through
the loss finishes with every metric, once. Last in `make test`: the suites before it
have filled the lab with real runs, users and jobs."""

from __future__ import annotations

import re
import subprocess
import time
import uuid
from typing import Any

import hvac
import pytest
import requests
import testinfra
from mlflow.entities import ViewType
from mlflow.tracking import MlflowClient

from tests.e2e.launcher import (
    Submission,
    lab_setting,
    labstack,
    mlflow,
    on_node,
    slurm_state,
    submitted,
    wait_run,
    wait_step,
)
from tests.inventory import container, hosts
from tests.playbook import ANSIBLE_DIR, SANDBOX_INVENTORY, run_playbook
from tests.services import (
    ca_file,
    credentials,
    endpoint,
    minio_root,
    openbao_admin,
    role_setting,
)
from tests.slurm import sbatch

HEAD = hosts("tracking")[0]
_STANZA = role_setting("pgbackrest", "pgbackrest_stanza", HEAD)
# The nightly dumps: (their node, their name).
_DUMPS = [
    (node, role_setting(role, setting, node))
    for node, role, setting in (
        (hosts("secrets")[0], "openbao", "openbao_dump_name"),
        (hosts("slurm_dbd")[0], "slurm", "slurm_dbd_dump_name"),
    )
]
_POLICIES = ANSIBLE_DIR / "roles" / "openbao" / "files" / "policies"
_SINCE = "2020-01-01"
# The run training through the loss: about three minutes of steps, so that it is
# still training when the node goes and ends while the node is being made again.
_STEPS = 300

pytestmark = pytest.mark.usefixtures("demo_dataset")


def _mlflow_state(client: MlflowClient) -> dict[str, Any]:
    """Every experiment and run as MLflow serves it, with each metric's whole history."""
    state: dict[str, Any] = {}
    token = None
    experiments = []
    while True:
        page = client.search_experiments(ViewType.ALL, max_results=1000, page_token=token)
        experiments += page
        token = page.token
        if not token:
            break
    for exp in experiments:
        state[f"experiment {exp.experiment_id}"] = (
            exp.name,
            exp.lifecycle_stage,
            exp.artifact_location,
            exp.tags,
        )
        token = None
        while True:
            runs = client.search_runs(
                [exp.experiment_id], run_view_type=ViewType.ALL, max_results=1000, page_token=token
            )
            for run in runs:
                info = run.info
                histories = {
                    key: sorted(
                        (m.step, m.timestamp, m.value)
                        for m in client.get_metric_history(info.run_id, key)
                    )
                    for key in run.data.metrics
                }
                state[f"run {info.run_id}"] = (
                    info.status,
                    info.lifecycle_stage,
                    info.artifact_uri,
                    info.end_time,
                    run.data.params,
                    run.data.tags,
                    histories,
                )
            token = runs.token
            if not token:
                break
    return state


def _openbao_state(admin: hvac.Client, marker: str) -> dict[str, Any]:
    """The lab's policies and secrets, and the drill's (the admin login reads these by
    name: it may not list policies or secrets)."""
    policies = [path.stem for path in _POLICIES.glob("*.hcl")] + [f"labstack-drill-{marker}"]
    secrets = ["labstack/jobs/workload", f"labstack/tests/drill-{marker}"]
    state: dict[str, Any] = {
        f"policy {name}": admin.sys.read_acl_policy(name)["data"]["policy"] for name in policies
    }
    for path in secrets:
        read = admin.secrets.kv.v2.read_secret_version(path, raise_on_deleted_version=True)
        state[f"secret {path}"] = read["data"]["data"]
    return state


def _jobs() -> list[str]:
    """Slurm's accounting of every job that has ended, as sacct reads it from slurmdbd.
    A state "CANCELLED by UID" reads "CANCELLED": slurmctld 22.05 does not save who
    cancelled a job, and on any restart it writes again the jobs it still holds
    (those ended in the last MinJobAge), without it."""
    listed = on_node(
        hosts("slurm_controller")[0],
        f"sacct -a -X -n -P -S {_SINCE} -o JobIDRaw,JobName,User,State,Start,End,NodeList",
        check=True,
    )
    rows = [line.split("|") for line in listed.splitlines()]
    return sorted(
        "|".join([*row[:3], row[3].split(" by ")[0], *row[4:]])
        for row in rows
        if row[5] != "Unknown"
    )


def _mlflow_login(user: str, password: str) -> int:
    """The HTTP status of a request to MLflow's API as USER."""
    return requests.get(
        f"https://{endpoint(HEAD, 5000)}/api/2.0/mlflow/experiments/search",
        params={"max_results": 1},
        auth=(user, password),
        verify=str(ca_file()),
        timeout=30,
    ).status_code


def _mlflow_create_user(user: str, password: str) -> None:
    created = requests.post(
        f"https://{endpoint(HEAD, 5000)}/api/2.0/mlflow/users/create",
        json={"username": user, "password": password},
        auth=("admin", credentials()["mlflow_admin_password"]),
        verify=str(ca_file()),
        timeout=30,
    )
    assert created.status_code == 200, created.text


def _steps(run_id: str) -> list[int]:
    return sorted(m.step for m in mlflow().get_metric_history(run_id, "train.loss"))


@pytest.fixture(scope="module")
def in_flight(tmp_path_factory: pytest.TempPathFactory) -> Submission:
    """A run training through Slurm when the node is lost. Its MLflow client gives up
    after two retries (seconds, not the default's minutes): the job then keeps what it
    could not send and sends it again with backoff, so it notices MLflow back soon."""
    env = lab_setting(tmp_path_factory.mktemp("drill"), "jobs", "mlflow_retries = 2")
    args = ["subset=256", "batch_size=16", f"max_steps={_STEPS}", "log_every=1"]
    args += ["checkpoint_every_steps=50", "step_sleep=0.5", "experiment=drill"]
    job = submitted(
        labstack("submit", "--on", "slurm", "--name", "drill", "--args", *args, env=env)
    )
    wait_step(job[0].run_id, 5)
    return job[0]


@pytest.fixture(scope="module")
def lab_before(in_flight: Submission) -> dict[str, Any]:
    """What the lab holds, with a few things no playbook makes (they can only come
    back from the backups): an MLflow user, a run with an artifact, an OpenBao
    secret and policy, a Slurm job. Then the scheduled backups run, as each night.
    The run in flight goes on: it is compared on its own, once it has finished."""
    marker = uuid.uuid4().hex[:12]
    user, password = f"drill-{marker}", uuid.uuid4().hex
    _mlflow_create_user(user, password)
    client = mlflow()
    experiment = client.create_experiment(f"drill-{marker}")
    run = client.create_run(experiment, tags={"drill": marker})
    client.log_param(run.info.run_id, "lr", "0.1")
    for step in range(1, 6):
        client.log_metric(run.info.run_id, "loss", 1.0 / step, step=step)
    client.log_text(run.info.run_id, marker, "notes/drill.txt")
    client.set_terminated(run.info.run_id, "FINISHED")
    admin = openbao_admin()
    admin.secrets.kv.v2.create_or_update_secret(f"labstack/tests/drill-{marker}", {"v": marker})
    admin.sys.create_or_update_acl_policy(
        f"labstack-drill-{marker}",
        f'path "secret/data/labstack/tests/drill-{marker}" {{ capabilities = ["read"] }}',
    )
    job = sbatch(
        testinfra.get_host(f"docker://{container(hosts('slurm_controller')[0])}"),
        f"--job-name=drill-{marker}",
        wrap="true",
    )
    assert job.returncode == 0, job.output
    # slurmctld hands the record to slurmdbd moments after the job's end: the
    # dump is taken once it is there, as the nightly one would be.
    deadline = time.monotonic() + 60
    while not any(line.startswith(f"{job.job_id}|") for line in _jobs()):
        assert time.monotonic() < deadline, f"job {job.job_id} is not in sacct after 60 s"
        time.sleep(1)
    # The nightly backups; PostgreSQL's WAL goes on continuously (check: the
    # current segment is closed and archived).
    for node, dump in _DUMPS:
        on_node(node, f"systemctl start labstack-dump-{dump}.service", check=True)
    on_node(HEAD, f"runuser -u postgres -- pgbackrest --stanza={_STANZA} check", check=True)
    return {
        "marker": marker,
        "user": (user, password),
        "run_id": run.info.run_id,
        "job": job.job_id,
        "mlflow": {
            key: value
            for key, value in _mlflow_state(client).items()
            if key != f"run {in_flight.run_id}"
        },
        "openbao": _openbao_state(admin, marker),
        "jobs": _jobs(),
        "keys": credentials()["openbao_unseal_keys"],
    }


@pytest.fixture(scope="module")
def drill(lab_before: dict[str, Any], in_flight: Submission) -> dict[str, float]:
    """The loss, and the way back: sandbox.yml makes the node again, site.yml finds
    each service's data new and restores it from its backup. The seconds of each."""
    assert slurm_state(in_flight.job_id) == "RUNNING"
    assert _steps(in_flight.run_id)[-1] < _STEPS, "the run ended before the loss: make it longer"
    head = container(HEAD)
    subprocess.run(["docker", "rm", "--force", "--volumes", head], check=True)
    assert subprocess.run(["docker", "inspect", head], capture_output=True).returncode == 1
    seconds: dict[str, float] = {}
    for playbook in ("sandbox.yml", "site.yml"):
        start = time.monotonic()
        run = run_playbook(playbook, SANDBOX_INVENTORY)
        seconds[playbook] = time.monotonic() - start
        failed = [line for line in run.output.splitlines() if line.startswith("fatal: ")]
        assert run.returncode == 0, f"{playbook}: {failed}\n{run.output[-3000:]}"
    for restored in (
        "OpenBao rebuilt: restored from openbao/openbao-",
        "PostgreSQL rebuilt: restored from the repository",
        "Slurm's accounting restored from slurm-accounting/slurm-accounting-",
    ):
        assert restored in run.output, f"site.yml did not say {restored!r}"
    return seconds


def test_the_head_node_comes_back_whole(
    lab_before: dict[str, Any],
    drill: dict[str, float],
    in_flight: Submission,
    capsys: pytest.CaptureFixture[str],
) -> None:
    with capsys.disabled():
        steps = ", ".join(f"{name} {seconds:.0f} s" for name, seconds in drill.items())
        print(f"\nrestore drill: {steps}; {sum(drill.values()):.0f} s in all")
    # Every experiment, run, param, tag, metric (its whole history) and artifact link.
    after = _mlflow_state(mlflow())
    lost = sorted(set(lab_before["mlflow"]) - set(after))
    assert not lost, f"{len(lost)} experiments/runs not restored, e.g. {lost[:5]}"
    changed = [k for k, v in lab_before["mlflow"].items() if after[k] != v]
    assert not changed, f"{len(changed)} restored differently, e.g. {changed[:5]}"
    # The artifact behind the link is where the link says (MinIO was not lost):
    # mlflow-artifacts:/PATH is s3://mlflow/PATH (mlflow_artifacts_destination).
    link = str(mlflow().get_run(lab_before["run_id"]).info.artifact_uri)
    assert link.startswith("mlflow-artifacts:/"), link
    key = f"{link.removeprefix('mlflow-artifacts:/')}/notes/drill.txt"
    assert minio_root().get_object("mlflow", key).read().decode() == lab_before["marker"]
    # Every login: the ones site.yml makes and one it does not.
    user, password = lab_before["user"]
    assert _mlflow_login(user, password) == 200
    assert _mlflow_login(user, password + "x") == 401
    assert _mlflow_login("admin", credentials()["mlflow_admin_password"]) == 200
    assert _mlflow_login("jobs", credentials()["mlflow_jobs_password"]) == 200
    # OpenBao: unsealed with the same keys, every policy and secret.
    admin = openbao_admin()
    assert not admin.sys.is_sealed()
    credentials.cache_clear()
    assert credentials()["openbao_unseal_keys"] == lab_before["keys"]
    assert _openbao_state(admin, lab_before["marker"]) == lab_before["openbao"]
    # Slurm's accounting: every job that had ended, the drill's own among them.
    jobs = _jobs()
    assert [j for j in lab_before["jobs"] if j not in jobs] == []
    assert any(line.startswith(f"{lab_before['job']}|drill-") for line in jobs), jobs[-5:]
    # slurmctld's state outlived the node: job ids go on, none is given twice.
    again = sbatch(
        testinfra.get_host(f"docker://{container(hosts('slurm_controller')[0])}"), wrap="true"
    )
    assert int(again.job_id) > max(int(line.split("|")[0]) for line in lab_before["jobs"])
    # The run training through the loss: its job went on on its compute node, kept
    # what MLflow could not take, and once MLflow was back sent it, and sent again
    # what the restored store had lost (taken after the newest archived WAL).
    run = wait_run(in_flight.run_id, ("FINISHED", "FAILED", "KILLED"), timeout=600)
    log = labstack("logs", in_flight.run_id).stdout
    assert run.info.status == "FINISHED", log[-3000:]
    assert _steps(in_flight.run_id) == list(range(1, _STEPS + 1)), "a metric lost or twice"
    assert "val.accuracy" in run.data.metrics
    deadline = time.monotonic() + 120
    while (state := slurm_state(in_flight.job_id)) == "RUNNING":
        assert time.monotonic() < deadline, f"job {in_flight.job_id} still RUNNING"
        time.sleep(2)
    assert state == "COMPLETED", state
    resent = re.findall(r"MLflow no longer holds (\d+) metrics it took", log)
    with capsys.disabled():
        print(
            "restore drill: the run in flight finished; the restored MLflow had lost "
            f"{resent[-1] if resent else 'none'} of its metrics, which its job sent again"
        )
