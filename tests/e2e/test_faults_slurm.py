"""Faults injected while a real training run goes on through Slurm: the services it
depends on restart, OpenBao comes back sealed before a requeued job starts, a job is
requeued more often than the lab allows. Nothing is lost, and what cannot go on ends
FAILED with its reason."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.e2e.launcher import (
    CONFIG,
    Submission,
    labstack,
    mlflow,
    on_head,
    researcher_env,
    slurm_state,
    submitted,
    wait_run,
    wait_step,
)
from tests.inventory import container, hosts
from tests.playbook import run_playbook

pytestmark = pytest.mark.usefixtures("demo_dataset")


def _submit(name: str, steps: int, every: int, env: dict[str, str] | None = None) -> Submission:
    """A one-node run of STEPS steps (half a second each), a checkpoint every EVERY."""
    args = ["subset=256", "batch_size=16", f"max_steps={steps}", "log_every=1"]
    args += [f"checkpoint_every_steps={every}", "step_sleep=0.5", "experiment=e2e-faults"]
    return submitted(labstack("submit", "--on", "slurm", "--name", name, "--args", *args, env=env))[
        0
    ]


def _restart(group: str, service: str) -> None:
    node = container(hosts(group)[0])
    subprocess.run(["docker", "exec", node, "systemctl", "restart", service], check=True)


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
    _restart("slurm_controller", "slurmctld")
    wait_step(job.run_id, 16)
    _restart("tracking", "mlflow")  # the job logs its metrics and a checkpoint meanwhile
    run = wait_run(job.run_id, ("FINISHED", "FAILED", "KILLED"), timeout=600)
    assert run.info.status == "FINISHED", labstack("logs", job.run_id).stdout[-3000:]
    _until("the job has completed", lambda: slurm_state(job.job_id) != "RUNNING")
    assert slurm_state(job.job_id) == "COMPLETED"
    assert _steps(job.run_id) == list(range(1, 61)), "a metric lost or logged twice"


def test_a_sealed_openbao_fails_the_requeued_job_fast_and_relaunch_continues() -> None:
    job = _submit("sealed", 60, 10)
    wait_step(job.run_id, 12)
    _restart("secrets", "openbao")  # it comes back sealed
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


def test_requeues_are_bounded_and_the_run_fails_with_the_reason(tmp_path: Path) -> None:
    config = tmp_path / "labstack.toml"
    config.write_text(CONFIG.read_text().replace("[slurm]\n", "[slurm]\nmax_requeues = 1\n"))
    env = {**researcher_env(), "LABSTACK_CONFIG": str(config)}
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
