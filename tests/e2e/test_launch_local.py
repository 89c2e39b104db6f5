"""`labstack submit --on local` against the sandbox's services: a training process on this
machine, its credentials from OpenBao, `status` and `logs [--follow]`, and no secret in any
process list."""

from __future__ import annotations

import subprocess
import threading
from pathlib import Path

import pytest

from tests.childenv import git_recorder, recorded
from tests.e2e.launcher import labstack, researcher_env, submitted, wait_run
from tests.services import secret_values

pytestmark = pytest.mark.usefixtures("demo_dataset")


class ProcessLists:
    """`ps` output sampled until stopped: what any user of this machine could read."""

    def __init__(self) -> None:
        self.samples: list[str] = []
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self) -> None:
        while not self._done.is_set():
            ps = subprocess.run(["ps", "-eww", "-o", "args"], capture_output=True, text=True)
            self.samples.append(ps.stdout)
            self._done.wait(0.2)

    def __enter__(self) -> ProcessLists:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._done.set()
        self._thread.join()


def test_local_run_finishes_with_no_secret_in_process_lists(tmp_path: Path) -> None:
    env = researcher_env()
    runs_dir = tmp_path / "runs"
    config = Path(env["LABSTACK_CONFIG"]).read_text()
    config += f'\n[local]\nruns_dir = "{runs_dir}"\n'
    (tmp_path / "labstack.toml").write_text(config)
    env["LABSTACK_CONFIG"] = str(tmp_path / "labstack.toml")
    args = ["subset=128", "batch_size=16", "max_steps=16", "checkpoint_every_steps=8"]
    args += ["device=cpu", "experiment=e2e-local"]
    # The job runs `git` for its provenance tags, after it fetched its credentials:
    # what that git's environment holds, every child of the job inherits.
    probe, observed = git_recorder(tmp_path, only_with="MLFLOW_RUN_ID")
    env["PATH"] = f"{probe}:{env['PATH']}"

    with ProcessLists() as ps:
        job = submitted(labstack("submit", "--on", "local", "--args", *args, env=env))[0]
        environ = Path(f"/proc/{job.job_id}/environ").read_bytes().decode(errors="replace")
        followed = labstack("logs", "--follow", job.run_id, env=env)  # returns when the job ends
        run = wait_run(job.run_id, ("FINISHED", "FAILED", "KILLED"), timeout=600)
    logs = labstack("logs", job.run_id, env=env)
    assert run.info.status == "FINISHED", logs.stdout[-3000:]
    assert run.data.params["max_steps"] == "16"
    assert run.data.tags["labstack.backend"] == "local"
    assert run.data.tags["data.version"] == "v1", "trained on the sandbox's dataset, over S3"
    assert run.data.metrics["train.loss"] > 0

    status = labstack("status", job.run_id, env=env)
    assert status.returncode == 0, status.stderr
    assert f"run {job.run_id}  FINISHED  local job {job.job_id}" in status.stdout
    assert logs.returncode == 0, logs.stderr
    assert "done: 16 steps" in logs.stdout
    run_dir = runs_dir / job.run_id
    # Followed from the start to the end: all of the log, once, nothing after.
    assert followed.returncode == 0, followed.stderr
    assert followed.stdout == logs.stdout == (run_dir / "job.log").read_text()

    assert run_dir.stat().st_mode & 0o777 == 0o700
    assert (run_dir / "approle.json").stat().st_mode & 0o777 == 0o600
    assert len(ps.samples) > 5, "the process list was sampled while the run went on"
    secrets = secret_values()
    # The job got its credentials from OpenBao, not from the launcher's environment, and
    # keeps them in memory: its children inherit none (/proc/PID/environ shows only what
    # the process started with, the child's environment also what was set since).
    child = recorded(observed)
    assert f"MLFLOW_RUN_ID={job.run_id}" in child
    assert "BAO_APPROLE_FILE=" in environ
    assert "MLFLOW_TRACKING_AUTH=labstack" in child, "the job ran git before the fetch, or none"
    for name in ("BAO_TOKEN", "BAO_SECRET_ID", "MLFLOW_TRACKING_PASSWORD", "AWS_SECRET_ACCESS_KEY"):
        assert f"{name}=" not in environ
        assert f"{name}=" not in child
    texts = [*ps.samples, environ, child, logs.stdout]
    leaked = {s for s in secrets for text in texts if s in text}
    assert not leaked, "a secret value in ps, the job's or its child's environment, or its log"
