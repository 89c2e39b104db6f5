"""`labstack submit --on slurm` against the sandbox: DDP on two nodes, preemption and requeue,
stop, cancel, sweeps, relaunch, refusals before anything is submitted, and no secret anywhere."""

from __future__ import annotations

import json
import queue
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.e2e.launcher import (
    Submission,
    checkpoint_keys,
    config_with,
    ddp_args,
    labstack,
    launcher_token,
    mlflow,
    on_head,
    on_node,
    researcher_env,
    runs_in,
    slurm_state,
    submitted,
    wait_run,
    wait_step,
)
from tests.services import credentials, leaked_secrets, secret_values, webhook_receiver
from workload.launch.cli import main

pytestmark = pytest.mark.usefixtures("demo_dataset")

DDP_ARGS = ddp_args("e2e-ddp")


@dataclass(frozen=True)
class Preempted:
    job: Submission
    script: str
    scontrol: str
    environ: str
    approle: str
    approle_mode: str
    log: str
    notifications: list[str]


@pytest.fixture(scope="module")
def preempted_ddp_run() -> Preempted:
    """A 2-node DDP run, sent USR1 (Slurm's time-limit warning) after its first checkpoint,
    with the lab's webhook listening."""
    with webhook_receiver() as received:
        return _preempted_ddp_run(received)


def _notifications(received: queue.Queue[dict], run_id: str, last: str) -> list[str]:
    """The texts about RUN_ID posted to the webhook, up to one that says LAST
    (a job notifies once the run has ended: a minute at most)."""
    texts: list[str] = []
    deadline = time.monotonic() + 60
    while not any(last in text for text in texts) and time.monotonic() < deadline:
        try:
            text = received.get(timeout=max(deadline - time.monotonic(), 0.1)).get("text", "")
        except queue.Empty:
            break
        texts += [text] if run_id in text else []
    return texts


def _preempted_ddp_run(received: queue.Queue[dict]) -> Preempted:
    job = submitted(
        labstack(
            "submit",
            "--on",
            "slurm",
            "--name",
            "ddp",
            "--nodes",
            "2",
            "--memory",
            "3G",
            "--args",
            *DDP_ARGS,
        )
    )[0]
    wait_step(job.run_id, 12)
    run_dir = f"/shared/labstack/runs/{job.run_id}"
    script = on_head("scontrol", "write", "batch_script", job.job_id, "-")
    scontrol = on_head("scontrol", "show", "job", "-dd", job.job_id)
    environ = "".join(
        on_node(
            host, "for p in $(pgrep -f workload.train); do tr '\\0' '\\n' < /proc/$p/environ; done"
        )
        for host in ("gpu1", "gpu2")
    )
    approle = on_head("cat", f"{run_dir}/approle.json")
    mode = on_head("stat", "-c", "%a %U", f"{run_dir}/approle.json").strip()
    on_head("scancel", "--batch", "--signal=USR1", job.job_id)
    wait_run(job.run_id, ("FINISHED", "FAILED"), timeout=900)
    log = on_head("cat", f"{run_dir}/slurm-{job.job_id}.out")
    notifications = _notifications(received, job.run_id, f"run {job.run_id} finished")
    return Preempted(job, script, scontrol, environ, approle, mode, log, notifications)


def test_ddp_run_finishes_with_metrics_params_and_provenance(preempted_ddp_run: Preempted) -> None:
    run = mlflow().get_run(preempted_ddp_run.job.run_id)
    assert run.info.status == "FINISHED", preempted_ddp_run.log
    assert run.data.params["max_steps"] == "40"
    assert run.data.params["batch_size"] == "16"
    assert run.data.metrics["val.accuracy"] > 0
    tags = run.data.tags
    build = json.loads(on_head("cat", f"{tags['env.path']}/BUILD_INFO.json"))
    assert tags["git.commit"] == build["git.commit"]
    assert tags["env.lock_sha256"] == build["env.lock_sha256"]
    assert tags["env.path"].startswith("/shared/labstack/envs/")
    assert tags["data.version"] == "v1"
    assert len(tags["data.manifest_sha256"]) == 64
    assert tags["dist.world_size"] == "2"
    assert tags["job.scheduler"] == "slurm"
    assert tags["job.id"] == preempted_ddp_run.job.job_id
    assert tags["resources.nodes"] == "2"


def test_the_lab_webhook_hears_the_start_the_preemption_and_the_end(
    preempted_ddp_run: Preempted,
) -> None:
    """Jobs notify the lab's webhook (its URL from OpenBao, with their credentials),
    with the run's link and no secret."""
    run_id = preempted_ddp_run.job.run_id
    texts = preempted_ddp_run.notifications
    for event in ("started", "preempted, checkpoint saved", "finished"):
        assert any(text.startswith(f"run {run_id} {event}: http") for text in texts), (event, texts)
    assert not leaked_secrets("\n".join(texts))


def test_logs_prints_the_output_of_every_attempt(preempted_ddp_run: Preempted) -> None:
    logs = labstack("logs", preempted_ddp_run.job.run_id)
    assert logs.returncode == 0, logs.stderr
    assert logs.stdout.startswith(preempted_ddp_run.log)
    assert "done: 40 steps" in logs.stdout


def test_checkpoints_are_artifacts_in_minio(preempted_ddp_run: Preempted) -> None:
    keys = checkpoint_keys(preempted_ddp_run.job.run_id)
    assert any(key.endswith("step-00000040.pt") for key in keys), keys


def test_preempted_job_requeues_and_resumes_exactly(preempted_ddp_run: Preempted) -> None:
    log = preempted_ddp_run.log
    assert "preempted; checkpoint saved; requeueing" in log
    assert "restart 1" in log
    assert "resumed at step" in log
    steps = [
        m.step for m in mlflow().get_metric_history(preempted_ddp_run.job.run_id, "train.loss")
    ]
    # Every step logged exactly once: the second instance started where the first stopped.
    assert sorted(steps) == list(range(1, 41)), steps


def test_no_secret_in_script_scontrol_or_job_environment(preempted_ddp_run: Preempted) -> None:
    secret_id = json.loads(preempted_ddp_run.approle)["secret_id"]
    assert preempted_ddp_run.approle_mode == "600 labstack"
    assert "BAO_APPROLE_FILE=" in preempted_ddp_run.environ  # the dump is real
    for name, text in (
        ("job script", preempted_ddp_run.script),
        ("scontrol show job", preempted_ddp_run.scontrol),
        # What Slurm started the training processes with; what they fetch stays out of
        # their children's environments (test_launch_local and the unit tests see it).
        ("environment the job started with", preempted_ddp_run.environ),
    ):
        assert "#SBATCH" in text or "JobId=" in text or "MLFLOW_RUN_ID" in text, name
        for value in [*secret_values(), secret_id, launcher_token()]:
            assert value not in text, f"a secret is in the {name}"


def test_stop_checkpoints_without_requeue_and_relaunch_resumes() -> None:
    args = [
        "subset=256",
        "batch_size=16",
        "max_steps=120",
        "log_every=1",
        "step_sleep=0.5",
        "checkpoint_every_steps=0",
        "experiment=e2e-stop",
    ]
    job = submitted(labstack("submit", "--on", "slurm", "--name", "stop", "--args", *args))[0]
    wait_step(job.run_id, 5)
    done = labstack("stop", job.run_id)
    assert done.returncode == 0, done.stderr
    run = wait_run(job.run_id, ("KILLED",), timeout=120)
    assert slurm_state(job.job_id) == "COMPLETED"  # ended, not requeued
    checkpoints = [a.path for a in mlflow().list_artifacts(job.run_id, "checkpoints")]
    assert checkpoints, "stop saved no checkpoint"
    assert run.data.tags["labstack.ended_by"] == "stop"
    log = on_head("cat", f"/shared/labstack/runs/{job.run_id}/slurm-{job.job_id}.out")
    assert "stopped by labstack stop" in log
    # Stopped, not requeued: the job took its login with it.
    gone = on_head("ls", f"/shared/labstack/runs/{job.run_id}/approle.json")
    assert "No such file or directory" in gone, gone

    again = submitted(labstack("relaunch", job.run_id))[0]
    assert again.run_id == job.run_id
    assert again.job_id != job.job_id
    wait_run(job.run_id, ("FINISHED",), timeout=600)
    log = on_head("cat", f"/shared/labstack/runs/{job.run_id}/slurm-{again.job_id}.out")
    assert "resumed at step" in log
    steps = [m.step for m in mlflow().get_metric_history(job.run_id, "train.loss")]
    assert sorted(steps) == list(range(1, 121))


def test_relaunch_of_a_finished_run_reproduces_params_and_commit(
    preempted_ddp_run: Preempted,
) -> None:
    original = mlflow().get_run(preempted_ddp_run.job.run_id)
    again = submitted(labstack("relaunch", original.info.run_id))[0]
    try:
        copy = mlflow().get_run(again.run_id)
        assert again.run_id != original.info.run_id
        assert copy.data.params == original.data.params
        for tag in (
            "git.commit",
            "env.path",
            "env.lock_sha256",
            "labstack.args",
            "resources.nodes",
        ):
            assert copy.data.tags[tag] == original.data.tags[tag], tag
        assert copy.data.tags["labstack.relaunch_of"] == original.info.run_id
    finally:
        cancelled = labstack("cancel", again.run_id, "--timeout", "120")
    assert cancelled.returncode == 0, cancelled.stderr
    assert mlflow().get_run(again.run_id).info.status == "KILLED"
    state = slurm_state(again.job_id)  # sacct says "CANCELLED by UID"
    assert state.startswith("CANCELLED") or state == "COMPLETED", state


@pytest.fixture
def sweep() -> Iterator[list[Submission]]:
    jobs = submitted(
        labstack(
            "submit",
            "--on",
            "slurm",
            "--name",
            "sweep",
            "--args",
            "max_steps=500",
            "step_sleep=1",
            "subset=256",
            "experiment=e2e-sweep",
            "--sweep",
            "lr=0.001,0.002",
            "width=8,16",
        )
    )
    yield jobs
    labstack("cancel", *[job.run_id for job in jobs], "--timeout", "120")


def test_sweep_makes_one_run_and_job_per_point_and_cancel_ends_them(
    sweep: list[Submission],
) -> None:
    assert len(sweep) == 4
    assert len({job.run_id for job in sweep}) == 4
    assert len({job.job_id for job in sweep}) == 4
    assert len({job.job_name for job in sweep}) == 4
    points = {
        (
            mlflow().get_run(j.run_id).data.params["lr"],
            mlflow().get_run(j.run_id).data.params["width"],
        )
        for j in sweep
    }
    assert points == {("0.001", "8"), ("0.001", "16"), ("0.002", "8"), ("0.002", "16")}
    done = labstack("cancel", *[job.run_id for job in sweep], "--timeout", "120")
    assert done.returncode == 0, done.stderr
    for job in sweep:
        assert mlflow().get_run(job.run_id).info.status == "KILLED"
        assert slurm_state(job.job_id).startswith("CANCELLED")


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (["--partition", "nosuch"], "--partition 'nosuch' does not exist; partitions: gpu"),
        (["--gpus", "3"], "--gpus 3: no node of partition gpu has more than 2 GPUs"),
        (["--nodes", "3"], "--nodes 3: partition gpu has 2 nodes"),
        (["--args", "no_such_flag=1"], "training argument 'no_such_flag' does not exist"),
        (["--args", "max_steps=many"], "invalid int value: 'many'"),
        (["--sweep", "lr=0.1,0.1"], "expected distinct, non-empty values"),
        (["--time", "forever"], "--time 'forever'"),
        (["--time", "2:00"], "--time 2:00 (120 s) must be longer than [slurm] grace_seconds"),
        (["--account", "nosuch"], "--account 'nosuch' is not an account of the cluster's"),
        (["--account", "ml;id"], "--account 'ml;id': letters, digits"),
    ],
)
def test_bad_requests_are_refused_before_any_run(
    options: list[str],
    message: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    # In-process (the CLI's main), to spare an interpreter start per case.
    for name, value in researcher_env().items():
        monkeypatch.setenv(name, value)
    before = runs_in("e2e-refused")
    code = main(["submit", "--on", "slurm", "--args", "experiment=e2e-refused", *options])
    assert code != 0
    assert message in capsys.readouterr().err
    assert runs_in("e2e-refused") == before


def test_unreachable_mlflow_is_refused_before_any_job(tmp_path: Path) -> None:
    before = on_head("squeue", "-h", "-o", "%i")
    env = {
        **researcher_env(),
        "LABSTACK_CONFIG": str(config_with(tmp_path, mlflow_uri="https://127.0.0.1:9")),
    }
    done = labstack("submit", "--on", "slurm", env=env)
    assert done.returncode == 2
    assert "MLflow at https://127.0.0.1:9 is unreachable" in done.stderr
    assert on_head("squeue", "-h", "-o", "%i") == before


def test_render_prints_the_script_without_submitting() -> None:
    before = on_head("squeue", "-h", "-o", "%i")
    done = labstack("render", "--on", "slurm", "--gpus", "1", "--args", "dev=true")
    assert done.returncode == 0, done.stderr
    assert "#SBATCH --signal=B:USR1@" in done.stdout
    assert "#SBATCH --gres=gpu:1" in done.stdout
    assert "-m workload.train --dev" in done.stdout
    assert on_head("squeue", "-h", "-o", "%i") == before
    for value in secret_values():
        assert value not in done.stdout


def test_tags_a_job_rewrote_steer_neither_relaunch_nor_cancel(
    preempted_ddp_run: Preempted, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The attack: with the MLflow login every job has, rewrite a finished run's tags so
    that its owner's `relaunch` renders a command into the batch script, or their `cancel`
    ends another run's job. Each is refused, naming the tag; nothing is submitted or ended."""
    victim = preempted_ddp_run.job.run_id
    bystander = submitted(
        labstack(
            "submit", "--on", "slurm", "--name", "bystander", "--args",
            "max_steps=500", "step_sleep=1", "subset=256", "experiment=e2e-tags",
        )
    )[0]  # fmt: skip
    client = mlflow()
    original = client.get_run(victim).data.tags
    experiment = client.get_experiment(client.get_run(victim).info.experiment_id).name
    runs, queue = runs_in(experiment), on_head("squeue", "-h", "-o", "%i")

    def as_a_job(tag: str, value: str) -> None:
        with monkeypatch.context() as job:
            job.setenv("MLFLOW_TRACKING_USERNAME", "jobs")
            job.setenv("MLFLOW_TRACKING_PASSWORD", credentials()["mlflow_jobs_password"])
            client.set_tag(victim, tag, value)

    try:
        for tag, value, named in [
            ("labstack.job_name", "ddp\n#SBATCH --uid=0\ntouch /tmp/pwned", "labstack.job_name"),
            ("env.path", "/shared/$(touch /tmp/pwned)", "env.path"),
            ("resources.account", "ml;touch /tmp/pwned", "--account"),
            ("labstack.backend", "slurm;touch /tmp/pwned", "labstack.backend"),
        ]:
            as_a_job(tag, value)
            done = labstack("relaunch", victim)
            assert done.returncode == 2, done.stdout + done.stderr
            assert named in done.stderr
            assert "tags were changed since submission" in done.stderr
            as_a_job(tag, original[tag])
        assert runs_in(experiment) == runs
        assert on_head("squeue", "-h", "-o", "%i") == queue
        as_a_job("job.id", bystander.job_id)
        done = labstack("cancel", victim, "--timeout", "10")
        assert done.returncode == 2, done.stdout + done.stderr
        assert f"job {bystander.job_id} works in /shared/labstack/runs/{bystander.run_id}" in (
            done.stderr
        )
        assert slurm_state(bystander.job_id) in ("PENDING", "RUNNING")
        assert on_head("ls", "/tmp/pwned").strip().endswith("No such file or directory")
    finally:
        for tag in (
            "labstack.job_name",
            "env.path",
            "resources.account",
            "labstack.backend",
            "job.id",
        ):
            as_a_job(tag, original[tag])
        labstack("cancel", bystander.run_id, "--timeout", "120")
