"""Faults injected while a real training run goes on through Slurm: the services it
depends on restart, MinIO is down while checkpoints are due, MLflow is down for longer
than its client retries, OpenBao comes back sealed before a requeued job starts, the
job's node is lost, one of MinIO's drives is pulled, a job is requeued more often than
the lab allows. Nothing is lost, and what cannot go on ends FAILED with its reason."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlparse

import pytest
import urllib3
from minio import MinioAdmin
from minio.credentials.providers import StaticProvider

from tests.e2e.launcher import (
    Submission,
    lab_setting,
    labstack,
    mlflow,
    on_head,
    on_node,
    slurm_state,
    submitted,
    wait_run,
    wait_step,
)
from tests.inventory import hosts
from tests.playbook import run_playbook
from tests.services import ca_file, credentials, endpoint
from workload.data import DatasetCache
from workload.s3 import S3Settings, make_client

pytestmark = pytest.mark.usefixtures("demo_dataset")


def _submit(name: str, steps: int, every: int, env: dict[str, str] | None = None) -> Submission:
    """A one-node run of STEPS steps (half a second each), a checkpoint every EVERY."""
    args = ["subset=256", "batch_size=16", f"max_steps={steps}", "log_every=1"]
    args += [f"checkpoint_every_steps={every}", "step_sleep=0.5", "experiment=e2e-faults"]
    return submitted(labstack("submit", "--on", "slurm", "--name", name, "--args", *args, env=env))[
        0
    ]


def _systemctl(action: str, group: str, service: str) -> None:
    on_node(hosts(group)[0], f"systemctl {action} {service}", check=True)


def _steps(run_id: str) -> list[int]:
    return sorted(m.step for m in mlflow().get_metric_history(run_id, "train.loss"))


def _status(run_id: str) -> str:
    return mlflow().get_run(run_id).info.status


def _until(what: str, check: Callable[[], bool], timeout: float = 300) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting until {what}"
        time.sleep(2)


def _requeued(job_id: str) -> None:
    """Once the job waits requeued, let it start now: Slurm holds a requeued job for
    about two minutes (its begin time), which a test need not wait."""
    _until(f"job {job_id} waits requeued", lambda: slurm_state(job_id) == "PENDING")
    assert on_head("scontrol", "update", f"JobId={job_id}", "StartTime=now").strip() == ""


def test_slurmctld_and_mlflow_restarted_mid_run_lose_and_repeat_nothing() -> None:
    job = _submit("restarts", 60, 20)
    wait_step(job.run_id, 8)
    _systemctl("restart", "slurm_controller", "slurmctld")
    wait_step(job.run_id, 16)
    # The job logs its metrics and a checkpoint meanwhile.
    _systemctl("restart", "tracking", "mlflow")
    run = wait_run(job.run_id, ("FINISHED", "FAILED", "KILLED"), timeout=600)
    assert run.info.status == "FINISHED", labstack("logs", job.run_id).stdout[-3000:]
    _until("the job has completed", lambda: slurm_state(job.job_id) != "RUNNING")
    assert slurm_state(job.job_id) == "COMPLETED"
    assert _steps(job.run_id) == list(range(1, 61)), "a metric lost or logged twice"


def test_a_sealed_openbao_fails_the_requeued_job_fast_and_relaunch_continues() -> None:
    job = _submit("sealed", 60, 10)
    wait_step(job.run_id, 12)
    _systemctl("restart", "secrets", "openbao")  # it comes back sealed
    on_head("scancel", "--batch", "--signal=USR1", job.job_id)  # preempted: requeued
    _requeued(job.job_id)
    _until("the requeued job has failed", lambda: slurm_state(job.job_id) == "FAILED")

    status = labstack("status", job.run_id)
    assert status.returncode == 0, status.stderr
    assert f"run {job.run_id}  FAILED  slurm job {job.job_id} FAILED" in status.stdout
    run = mlflow().get_run(job.run_id)
    assert run.info.status == "FAILED"
    reason = run.data.tags["labstack.failure"]
    assert "CredentialError: OpenBao at" in reason
    assert "is sealed or down" in reason
    assert f"failed: {reason}" in status.stdout

    unsealed = run_playbook("playbooks/secrets.yml")
    assert unsealed.returncode == 0, unsealed.output[-3000:]
    again = submitted(labstack("relaunch", job.run_id))[0]
    assert again.run_id == job.run_id
    wait_run(job.run_id, ("FINISHED",), timeout=600)
    log = on_head("cat", f"/shared/labstack/runs/{job.run_id}/slurm-{again.job_id}.out")
    assert "resumed at step" in log
    assert _steps(job.run_id) == list(range(1, 61))


def test_minio_down_mid_run_holds_no_step_back_and_loses_no_checkpoint() -> None:
    job = _submit("minio-down", 60, 10)
    wait_step(job.run_id, 5)
    _systemctl("stop", "storage", "minio")
    try:  # the checkpoints of steps 10 and 20 wait on the node; the training goes on
        wait_step(job.run_id, 25, timeout=120)
    finally:
        _systemctl("start", "storage", "minio")
    run = wait_run(job.run_id, ("FINISHED", "FAILED", "KILLED"), timeout=600)
    assert run.info.status == "FINISHED", labstack("logs", job.run_id).stdout[-3000:]
    stored = {a.path for a in mlflow().list_artifacts(job.run_id, "checkpoints")}
    assert stored == {f"checkpoints/step-{step:08d}.pt" for step in range(10, 61, 10)}
    assert _steps(job.run_id) == list(range(1, 61))


def test_mlflow_down_past_its_clients_retries_loses_no_metric(tmp_path: Path) -> None:
    """MLflow stopped for longer than its client retries (two here, [jobs]
    mlflow_retries: seconds; the default's seven take about four minutes): the training
    finishes meanwhile, the job keeps the metrics and checkpoints it could not send and
    waits for MLflow; once MLflow is back the run ends FINISHED with each metric once
    and every checkpoint."""
    job = _submit("mlflow-down", 60, 10, lab_setting(tmp_path, "jobs", "mlflow_retries = 2"))
    wait_step(job.run_id, 5)
    log = f"/shared/labstack/runs/{job.run_id}/slurm-{job.job_id}.out"
    _systemctl("stop", "tracking", "mlflow")
    try:
        _until(
            "the job has kept the metrics MLflow did not take",
            lambda: "kept to send again" in on_head("cat", log),
            timeout=180,
        )
        assert slurm_state(job.job_id) == "RUNNING"
    finally:
        _systemctl("start", "tracking", "mlflow")
    run = wait_run(job.run_id, ("FINISHED", "FAILED", "KILLED"), timeout=600)
    assert run.info.status == "FINISHED", on_head("cat", log)[-3000:]
    assert _steps(job.run_id) == list(range(1, 61)), "a metric lost or logged twice"
    stored = {a.path for a in mlflow().list_artifacts(job.run_id, "checkpoints")}
    assert stored == {f"checkpoints/step-{step:08d}.pt" for step in range(10, 61, 10)}


def _node_state(name: str) -> str:
    return on_head("sinfo", "-h", "-n", name, "-o", "%t").strip()


def test_a_lost_node_requeues_the_job_which_resumes_exactly_on_another() -> None:
    # A checkpoint at 20 and the next at 40: the node dies between, after MLflow has
    # steps past 20 (the job runs a few seconds ahead of what MLflow shows).
    job = _submit("node-lost", 60, 20)
    wait_step(job.run_id, 25)
    lost = on_head("squeue", "-h", "-j", job.job_id, "-o", "%N").strip()
    assert lost in hosts("slurm_compute"), lost
    # The node dies as in a power loss: slurmd stops answering, the job's processes end.
    user = on_head("squeue", "-h", "-j", job.job_id, "-o", "%u").strip()
    kill = f"systemctl stop slurmd; pkill -KILL -x slurmstepd; pkill -KILL -u {user}; true"
    on_node(lost, kill, check=True)
    try:
        _until(f"slurmctld finds {lost} down", lambda: _node_state(lost) == "down*", 180)
        _requeued(job.job_id)
        run = wait_run(job.run_id, ("FINISHED", "FAILED", "KILLED"), timeout=600)
        assert run.info.status == "FINISHED", labstack("logs", job.run_id).stdout[-3000:]
        _until("the job has completed", lambda: slurm_state(job.job_id) != "RUNNING")
        again = on_head("sacct", "-n", "-X", "-P", "-D", "-j", job.job_id, "-o", "NodeList,State")
        assert [line.split("|") for line in again.split()][-2:] == [
            [lost, "NODE_FAIL"],
            [next(n for n in hosts("slurm_compute") if n != lost), "COMPLETED"],
        ], again
        log = on_head("cat", f"/shared/labstack/runs/{job.run_id}/slurm-{job.job_id}.out")
        assert "resumed at step" in log, log[-3000:]
        # The steps the lost node logged after its last checkpoint were trained again
        # from that checkpoint, and came out exactly the same.
        losses: dict[int, list[float]] = {}
        for metric in mlflow().get_metric_history(job.run_id, "train.loss"):
            losses.setdefault(metric.step, []).append(metric.value)
        assert sorted(losses) == list(range(1, 61))
        repeated = {step: values for step, values in losses.items() if len(values) > 1}
        assert repeated, "no step was trained twice: the job did not resume mid-way"
        assert {step: values for step, values in repeated.items() if len(set(values)) > 1} == {}
    finally:
        on_node(lost, "systemctl start slurmd")
        _until(f"{lost} is back in service", lambda: _node_state(lost) == "idle", 180)


def test_requeues_are_bounded_and_the_run_fails_with_the_reason(tmp_path: Path) -> None:
    env = lab_setting(tmp_path, "slurm", "max_requeues = 1")
    job = _submit("requeued", 400, 0, env)  # no checkpoint: it fails before its first one
    log = f"/shared/labstack/runs/{job.run_id}/slurm-{job.job_id}.out"
    wait_step(job.run_id, 2)
    for restart in (1, 2):  # what Slurm does when the job's node is lost
        assert on_head("scontrol", "requeue", job.job_id).strip() == ""
        _requeued(job.job_id)
        _until(
            f"restart {restart} has begun",
            lambda restart=restart: (
                f"restart {restart}," in on_head("cat", log)
                and slurm_state(job.job_id) in ("RUNNING", "FAILED")
            ),
        )
        if restart == 1:  # it trains again: its login was kept for the requeue
            _until("the run trains again", lambda: _status(job.run_id) == "RUNNING")
    _until("the job has given up", lambda: slurm_state(job.job_id) == "FAILED")
    status = labstack("status", job.run_id, env=env)
    expected = "labstack: requeued 2 times, more than [slurm] max_requeues (1): not started again"
    assert f"failed: {expected}" in status.stdout, status.stdout + status.stderr
    run = mlflow().get_run(job.run_id)
    assert (run.info.status, run.data.tags["labstack.failure"]) == ("FAILED", expected)


def _minio_drives() -> dict[str, str]:
    """Each drive of MinIO and its state (ok, offline, unformatted ...), from its admin API."""
    admin = MinioAdmin(
        endpoint=endpoint(hosts("storage")[0], 9000),
        credentials=StaticProvider(
            credentials()["minio_root_user"], credentials()["minio_root_password"]
        ),
        http_client=urllib3.PoolManager(ca_certs=str(ca_file())),
    )
    info = json.loads(admin.info())
    return {drive["endpoint"]: drive["state"] for s in info["servers"] for drive in s["drives"]}


def _on_storage(script: str, stdin: str = "") -> str:
    return on_node(hosts("storage")[0], f"set -eu; {script}", stdin, check=True)


def test_a_drive_pulled_mid_run_loses_nothing_and_its_replacement_is_healed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AWS_CA_BUNDLE", str(ca_file()))
    drives = _minio_drives()
    assert set(drives.values()) == {"ok"}, drives
    assert len(drives) >= 4, drives
    drive = sorted(drives)[1]
    user, group = _on_storage(f"stat -c '%U %G' {drive}").split()
    job = _submit("drive-pulled", 40, 10)
    wait_step(job.run_id, 5)
    _on_storage(f"chmod 000 {drive}")  # pulled: every access to it fails
    try:
        # Writes go on: the run logs and uploads its checkpoints on the other drives.
        run = wait_run(job.run_id, ("FINISHED", "FAILED", "KILLED"), timeout=600)
        assert run.info.status == "FINISHED", labstack("logs", job.run_id).stdout[-3000:]
        assert _minio_drives()[drive] != "ok"

        # Reads go on and the data is intact: the dataset against its manifest's
        # hashes, and every object the run wrote.
        as_root = S3Settings(
            f"https://{endpoint(hosts('storage')[0], 9000)}",
            credentials()["minio_root_user"],
            credentials()["minio_root_password"],
        )
        root = make_client(as_root)
        DatasetCache(as_root, "shapes", "v1", local_root=tmp_path).fetch()  # hashes each file
        prefix = str(urlparse(run.info.artifact_uri).path).lstrip("/") + "/"  # proxied by MLflow
        listed = root.list_objects_v2(Bucket="mlflow", Prefix=prefix)["Contents"]
        written = [f"mlflow/{item['Key']}" for item in listed]
        assert any("/checkpoints/" in key for key in written), written
        for item in listed:
            body = root.get_object(Bucket="mlflow", Key=item["Key"])["Body"].read()
            assert len(body) == item["Size"]
        data = root.list_objects_v2(Bucket="datasets", Prefix="shapes/v1/")["Contents"]
        stored = written + [f"datasets/{item['Key']}" for item in data]

        # A blank drive in its place: MinIO formats it and heals every object onto it.
        _on_storage(f"rm -rf {drive}; install -d -o {user} -g {group} -m 0750 {drive}")

        def healed() -> bool:
            missing = _on_storage(
                f'while read -r key; do test -f "{drive}/$key/xl.meta" || echo "$key"; done',
                "\n".join(stored) + "\n",
            )
            return _minio_drives()[drive] == "ok" and missing == ""

        _until(f"{drive} is healed", healed, 300)
    finally:
        _on_storage(f"chmod 0750 {drive}")
