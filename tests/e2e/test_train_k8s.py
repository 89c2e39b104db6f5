"""`labstack submit --on k8s` training for real on the sandbox's cluster, as on Slurm: the
training image (make lab loads it into the nodes the Jobs select) runs 2-pod DDP to a
FINISHED run, a pod deleted mid-run resumes from its checkpoint with every step logged once,
`stop` checkpoints without a retry and `relaunch` resumes the same run, and no secret is in
the Job, its pods or their processes."""

from __future__ import annotations

import os
import re
import subprocess
from dataclasses import dataclass

import pytest

from tests.e2e.launcher import (
    K8S_NAMESPACE,
    Submission,
    checkpoint_keys,
    ddp_args,
    kube_env,
    labstack,
    launcher_token,
    mlflow,
    submitted,
    wait_run,
    wait_step,
)
from tests.kube import kubectl, kubectl_json
from tests.services import secret_values

pytestmark = pytest.mark.usefixtures("demo_dataset")

IMAGE = os.environ["LABSTACK_TRAINING_IMAGE"]
DDP_ARGS = ddp_args("e2e-k8s-ddp")


def _pods(job: str) -> list[dict]:
    selector = f"batch.kubernetes.io/job-name={job}"
    return kubectl_json("--namespace", K8S_NAMESPACE, "get", "pods", "-l", selector)["items"]


def _running_pod(job: str, index: int) -> str:
    """The name of the pod of INDEX whose train container runs."""
    for pod in _pods(job):
        annotations = pod["metadata"].get("annotations", {})
        states = [s.get("state", {}) for s in pod["status"].get("containerStatuses", [])]
        if annotations.get("batch.kubernetes.io/job-completion-index") == str(index) and any(
            "running" in state for state in states
        ):
            return pod["metadata"]["name"]
    raise AssertionError(f"Job {job} has no running pod of index {index}")


def _environ(pod: str) -> str:
    """Every process environment in POD's train container, one variable per line."""
    script = (
        "import pathlib\n"
        "for p in pathlib.Path('/proc').glob('[0-9]*/environ'):\n"
        "    try: print(p.read_bytes().replace(b'\\0', b'\\n').decode(errors='replace'))\n"
        "    except OSError: pass\n"
    )
    argv = ["exec", pod, "--container", "train", "--", "python", "-c", script]
    return kubectl("--namespace", K8S_NAMESPACE, *argv).stdout


@dataclass(frozen=True)
class Preempted:
    job: Submission
    manifest: str
    pod_spec: str
    environ: str
    deleted: str
    logs: str


@pytest.fixture(scope="module")
def preempted_ddp_job() -> Preempted:
    """A 2-pod DDP Job whose index-1 pod is deleted (SIGTERM) after the first checkpoint."""
    job = submitted(
        labstack(
            "submit", "--on", "k8s", "--name", "ddp", "--nodes", "2", "--cpus", "0.5",
            "--memory", "3G", "--args", *DDP_ARGS,
            env=kube_env(),
        )
    )[0]  # fmt: skip
    wait_step(job.run_id, 12)
    manifest = kubectl("--namespace", K8S_NAMESPACE, "get", "job", job.job_id, "-o", "yaml").stdout
    pod = _running_pod(job.job_id, 1)
    pod_spec = kubectl("--namespace", K8S_NAMESPACE, "get", "pod", pod, "-o", "yaml").stdout
    environ = _environ(pod) + _environ(_running_pod(job.job_id, 0))
    kubectl("--namespace", K8S_NAMESPACE, "delete", "pod", pod, "--wait=false")
    # KILLED while the pods that resume it start (the preempted one ends the run so).
    wait_run(job.run_id, ("FINISHED", "FAILED"), timeout=900)
    complete = ["wait", "--for=condition=Complete", f"job/{job.job_id}", "--timeout=180s"]
    kubectl("--namespace", K8S_NAMESPACE, *complete, check=False)  # pods exit after the run
    logs = labstack("logs", job.run_id, env=kube_env())
    assert logs.returncode == 0, logs.stderr
    return Preempted(job, manifest, pod_spec, environ, pod, logs.stdout)


def test_ddp_job_finishes_with_metrics_and_provenance(preempted_ddp_job: Preempted) -> None:
    run = mlflow().get_run(preempted_ddp_job.job.run_id)
    assert run.info.status == "FINISHED", preempted_ddp_job.logs[-4000:]
    assert run.data.metrics["val.accuracy"] > 0
    tags = run.data.tags
    assert tags["dist.world_size"] == "2"
    assert tags["job.scheduler"] == "k8s"
    assert tags["job.id"] == preempted_ddp_job.job.job_id
    assert tags["env.image"] == IMAGE
    label = '{{.Id}} {{index .Config.Labels "org.opencontainers.image.revision"}}'
    inspect = ["docker", "image", "inspect", "--format", label, IMAGE]
    image_id, revision = subprocess.run(
        inspect, capture_output=True, text=True, check=True
    ).stdout.split()
    assert tags["env.image_id"] == image_id
    assert tags["git.commit"] == revision  # the pods' build info, the image's label
    assert tags["data.version"] == "v1"
    assert checkpoint_keys(preempted_ddp_job.job.run_id)


def test_deleted_pod_is_retried_without_a_failure_and_resumes_exactly(
    preempted_ddp_job: Preempted,
) -> None:
    job = kubectl_json("--namespace", K8S_NAMESPACE, "get", "job", preempted_ddp_job.job.job_id)
    assert job["status"].get("failed", 0) == 0, job["status"]
    assert job["status"]["succeeded"] == 2, job["status"]
    names = {pod["metadata"]["name"] for pod in _pods(preempted_ddp_job.job.job_id)}
    assert preempted_ddp_job.deleted not in names
    assert len(names) >= 3, names  # two retried pods at least beside the deleted one's peer
    assert "resumed at step" in preempted_ddp_job.logs
    steps = [
        m.step for m in mlflow().get_metric_history(preempted_ddp_job.job.run_id, "train.loss")
    ]
    assert sorted(steps) == list(range(1, 41)), steps


def test_logs_print_every_pod_under_a_header(preempted_ddp_job: Preempted) -> None:
    shown = {
        line.removeprefix("==> pod ").removesuffix(" <==")
        for line in preempted_ddp_job.logs.splitlines()
        if line.startswith("==> pod ")
    }
    assert shown == {pod["metadata"]["name"] for pod in _pods(preempted_ddp_job.job.job_id)}
    assert "done: 40 steps" in preempted_ddp_job.logs


def test_no_secret_in_the_job_its_pods_or_their_processes(preempted_ddp_job: Preempted) -> None:
    assert "MLFLOW_RUN_ID" in preempted_ddp_job.environ  # the dump is real
    assert "BAO_K8S_ROLE=" in preempted_ddp_job.environ
    for name, text in (
        ("Job", preempted_ddp_job.manifest),
        ("pod spec", preempted_ddp_job.pod_spec),
        ("pods' process environments", preempted_ddp_job.environ),
        ("logs", preempted_ddp_job.logs),
    ):
        for value in [*secret_values(), launcher_token()]:
            assert value not in text, f"a secret is in the {name}"


def test_stop_checkpoints_without_a_retry_and_relaunch_resumes_the_run() -> None:
    args = [
        "subset=256", "batch_size=16", "max_steps=120", "log_every=1", "step_sleep=0.5",
        "checkpoint_every_steps=0", "experiment=e2e-k8s-stop",
    ]  # fmt: skip
    submit = ["submit", "--on", "k8s", "--name", "stop", "--cpus", "1", "--memory", "3G"]
    job = submitted(labstack(*submit, "--args", *args, env=kube_env()))[0]
    wait_step(job.run_id, 5)
    done = labstack("stop", job.run_id, env=kube_env())
    assert done.returncode == 0, done.stderr
    assert "STOPPED, run KILLED" in done.stdout, done.stdout
    run = wait_run(job.run_id, ("KILLED",), timeout=180)
    assert run.data.tags["labstack.ended_by"] == "stop"
    assert [p["metadata"]["name"] for p in _pods(job.job_id)] == []  # not retried
    assert checkpoint_keys(job.run_id), "stop saved no checkpoint"

    again = submitted(labstack("relaunch", job.run_id, env=kube_env()))[0]
    assert (again.run_id, again.job_id) == (job.run_id, job.job_id)
    wait_run(job.run_id, ("FINISHED",), timeout=900)
    logs = labstack("logs", job.run_id, env=kube_env())
    assert "resumed at step" in logs.stdout, logs.stdout[-4000:]
    # The relaunched pod found the dataset in the shared cache the first one filled.
    assert re.search(r"0 cached, [1-9][0-9]* from shared cache, 0 from S3", logs.stdout), (
        logs.stdout[-4000:]
    )
    steps = [m.step for m in mlflow().get_metric_history(job.run_id, "train.loss")]
    assert sorted(steps) == list(range(1, 121)), steps
