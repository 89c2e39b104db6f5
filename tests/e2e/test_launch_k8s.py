"""`labstack` on the sandbox's Kubernetes cluster, as a researcher types it:
`kubectl apply -f <(labstack render --on k8s --create-run ...)`, submit, a sweep, status
and cancel through the launcher; requests the cluster cannot take are refused before any
run exists.

The Jobs run the training image (make lab loads it into the nodes of [kubernetes]
node_selector); test_train_k8s.py follows such Jobs to their end.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.launcher import (
    CONFIG,
    K8S_NAMESPACE,
    Submission,
    kube_env,
    labstack,
    mlflow,
    runs_in,
    submitted,
    wait_run,
)
from tests.kube import kubectl, kubectl_json, kubectl_path
from workload.launch.config import load

IMAGE = os.environ["LABSTACK_TRAINING_IMAGE"]
# The sandbox's [kubernetes] node_selector: the nodes holding the training image.
PINNED = "labstack.io/training-image=true"
RESOURCES = ["--cpus", "1", "--memory", "1G"]
# The Jobs train for real: on the sandbox's dataset (they end FAILED without it).
pytestmark = pytest.mark.usefixtures("demo_dataset")


def _config(tmp_path: Path, **kubernetes: str) -> Path:
    """The sandbox's config with some [kubernetes] settings replaced."""
    text = CONFIG.read_text()
    for key, value in kubernetes.items():
        line = f'{key} = "{value}"'
        text, found = re.subn(rf"^{key} = .*$", line, text, count=1, flags=re.MULTILINE)
        if not found:
            text = text.replace("[kubernetes]\n", f"[kubernetes]\n{line}\n", 1)
    path = tmp_path / "labstack.toml"
    path.write_text(text)
    return path


def _submit(config: Path, *args: str) -> list[Submission]:
    argv = ["--config", str(config), "submit", "--on", "k8s", *RESOURCES, *args]
    return submitted(labstack(*argv, env=kube_env()))


@pytest.fixture
def config(tmp_path: Path) -> Path:
    return _config(tmp_path, image=IMAGE)


@pytest.fixture
def sweep(config: Path) -> Iterator[list[Submission]]:
    # A 40-character name (the most --name takes): the points' job names differ only past
    # the 43 characters a Job's name keeps of them, and the Jobs by their run ids.
    jobs = _submit(
        config,
        "--name", "sweep-" + "x" * 34, "--args", "max_steps=500", "step_sleep=1", "subset=256",
        "experiment=e2e-k8s-sweep", "--sweep", "lr=0.001,0.002", "width=8,16",
    )  # fmt: skip
    yield jobs
    cancel = ["--config", str(config), "cancel", *[job.run_id for job in jobs]]
    labstack(*cancel, "--timeout", "120", env=kube_env())


def test_sweep_makes_one_run_and_job_per_point_and_cancel_ends_them(
    config: Path, sweep: list[Submission]
) -> None:
    assert len({job.run_id for job in sweep}) == 4
    assert len({job.job_id for job in sweep}) == 4
    assert len({job.job_id[:43] for job in sweep}) == 1, sweep
    for job in sweep:
        assert len(job.job_id) <= 52, job.job_id  # helm's release names: 53 at most
        found = kubectl_json("--namespace", K8S_NAMESPACE, "get", "job", job.job_id)
        assert (
            found["spec"]["template"]["metadata"]["labels"]["labstack.io/mlflow-run-id"]
            == job.run_id
        )
    points = {
        (
            mlflow().get_run(j.run_id).data.params["lr"],
            mlflow().get_run(j.run_id).data.params["width"],
        )
        for j in sweep
    }
    assert points == {("0.001", "8"), ("0.001", "16"), ("0.002", "8"), ("0.002", "16")}
    done = labstack(
        "--config", str(config), "cancel", *[job.run_id for job in sweep], "--timeout", "120",
        env=kube_env(),
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    for job in sweep:
        assert mlflow().get_run(job.run_id).info.status == "KILLED"
        gone = kubectl("--namespace", K8S_NAMESPACE, "get", "job", job.job_id, check=False)
        assert "NotFound" in gone.stderr


def test_render_create_run_piped_to_kubectl_apply_then_status_and_cancel(config: Path) -> None:
    experiment = f"e2e-k8s-{uuid.uuid4().hex[:8]}"
    render = shlex.join(
        [
            sys.executable, "-m", "workload.launch", "--config", str(config),
            "render", "--on", "k8s", "--create-run", "--name", "e2e-apply", "--gpus", "1",
            "--memory", "1G", "--cpus", "1", "--args", f"experiment={experiment}",
            "max_steps=500", "step_sleep=1",
        ]
    )  # fmt: skip
    typed = f"{shlex.quote(str(kubectl_path()))} apply -f <({render})"
    done = subprocess.run(
        ["bash", "-c", typed],
        env=kube_env(),
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
    )
    (job,) = submitted(done)
    assert f"job.batch/{job.job_id} created" in done.stdout, done.stdout + done.stderr

    namespace = load(config).kubernetes.namespace
    tags = mlflow().get_run(job.run_id).data.tags
    assert tags["labstack.backend"] == "k8s"
    assert tags["job.id"] == job.job_id
    assert tags["env.image"] == IMAGE
    built = subprocess.run(
        ["docker", "image", "inspect", "--format", "{{.Id}}", IMAGE],
        capture_output=True, text=True, check=True,
    ).stdout.strip()  # fmt: skip
    assert tags["env.image_id"] == built
    applied = kubectl_json("--namespace", namespace, "get", "job", job.job_id)
    (container,) = applied["spec"]["template"]["spec"]["containers"]
    assert {"name": "MLFLOW_RUN_ID", "value": job.run_id} in container["env"]

    env = {**kube_env(), "LABSTACK_CONFIG": str(config)}
    status = labstack("status", job.run_id, env=env)
    assert status.returncode == 0, status.stderr
    assert job.run_id in status.stdout

    cancel = labstack("cancel", job.run_id, env=env)
    assert cancel.returncode == 0, cancel.stderr
    assert wait_run(job.run_id, ("KILLED",), timeout=120).info.status == "KILLED"
    gone = kubectl("--namespace", namespace, "get", "job", job.job_id, check=False)
    assert "NotFound" in gone.stderr


@pytest.mark.parametrize(
    ("settings", "options", "message"),
    [
        ({"namespace": "no-such-namespace"}, [], "namespace 'no-such-namespace' does not exist"),
        ({"service_account": "nobody"}, [], "service_account 'nobody' does not exist"),
        (
            {},
            ["--gpus", "99"],
            f"--gpus 99: no node of the cluster with labels {PINNED} advertises more than 2",
        ),
        ({"image": "labstack/absent:0"}, [], "labstack/absent:0 is on no node"),
    ],
    ids=["namespace", "service-account", "gpus", "image"],
)
def test_requests_the_cluster_cannot_take_leave_no_run(
    tmp_path: Path, settings: dict[str, str], options: list[str], message: str
) -> None:
    experiment = f"e2e-k8s-refused-{uuid.uuid4().hex[:8]}"
    path = _config(tmp_path, **{"image": IMAGE, **settings})
    done = labstack(
        "--config", str(path), "submit", "--on", "k8s", "--name", "refused", *options,
        "--args", f"experiment={experiment}",
        env=kube_env(),
    )  # fmt: skip
    assert done.returncode == 2, done.stdout + done.stderr
    assert message in done.stderr
    assert runs_in(experiment) == set()


def test_unreachable_mlflow_is_refused_before_any_job(tmp_path: Path) -> None:
    jobs = ["get", "jobs", "-o", "name"]
    before = kubectl("--namespace", K8S_NAMESPACE, *jobs).stdout
    # The first mlflow_uri is [client]'s, the launcher's own.
    path = _config(tmp_path, image=IMAGE, mlflow_uri="https://127.0.0.1:9")
    done = labstack("--config", str(path), "submit", "--on", "k8s", env=kube_env())
    assert done.returncode == 2
    assert "MLflow at https://127.0.0.1:9 is unreachable" in done.stderr
    assert kubectl("--namespace", K8S_NAMESPACE, *jobs).stdout == before
