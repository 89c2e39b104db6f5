"""The launcher's Kubernetes backend following real Jobs of the sandbox cluster.

`labstack status`, `logs`, `stop` and `cancel` of a `--on k8s` run call
these methods with the Job named in the run's tags. Here the Jobs are
Indexed Jobs of the base image whose pods print, fail and trap SIGTERM as a
training pod does, so that the backend's reading of Job status and pods is
tested against the real controller: every pod and every attempt in `logs`,
a graceful stop that ends the pods without a retry, a cancel that deletes.
"""

from __future__ import annotations

import copy
import dataclasses
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.kube import KUBECONFIG, apply, base_image, kubectl_json, pod
from workload.launch.backend import JobRef, LogCursor
from workload.launch.config import load
from workload.launch.k8s import Kubernetes
from workload.launch.spec import Resources, SpecError


@pytest.fixture
def backend(namespace: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Kubernetes:
    monkeypatch.setenv("KUBECONFIG", str(KUBECONFIG))
    path = tmp_path / "labstack.toml"
    path.write_text(
        f"""
[client]
mlflow_uri = "https://127.0.0.1:5000"
openbao_addr = "https://127.0.0.1:8200"
[jobs]
mlflow_uri = "https://mlflow.lab:5000"
openbao_addr = "https://openbao.lab:8200"
s3_endpoint = "https://minio.lab:9000"
[kubernetes]
namespace = "{namespace}"
image = "{base_image()}"
"""
    )
    return Kubernetes(load(path), Resources())


def _indexed_job(name: str, indexes: int, script: str) -> dict[str, Any]:
    """An Indexed Job of the base image: INDEX and FAILURES (this index's earlier failed
    attempts) in its environment, one retry per index, SIGTERM before the kill."""
    template = pod(name, ["sh", "-c", script])
    spec = copy.deepcopy(template["spec"])
    spec["terminationGracePeriodSeconds"] = 20
    annotations = "metadata.annotations['batch.kubernetes.io/{}']"
    spec["containers"][0]["name"] = "train"
    spec["containers"][0]["env"] += [
        {
            "name": "INDEX",
            "valueFrom": {"fieldRef": {"fieldPath": annotations.format("job-completion-index")}},
        },
        {
            "name": "FAILURES",
            "valueFrom": {"fieldRef": {"fieldPath": annotations.format("job-index-failure-count")}},
        },
    ]
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": name},
        "spec": {
            "completionMode": "Indexed",
            "completions": indexes,
            "parallelism": indexes,
            "backoffLimitPerIndex": 1,
            "template": {"spec": spec},
        },
    }


def _pods(namespace: str, job: str) -> list[str]:
    found = kubectl_json(
        "--namespace", namespace, "get", "pods", "-l", f"batch.kubernetes.io/job-name={job}"
    )
    return [p["metadata"]["name"] for p in found["items"]]


def _wait_for(backend: Kubernetes, job: JobRef, states: set[str], seconds: float = 180) -> str:
    deadline = time.monotonic() + seconds
    while (state := backend.state(job)) not in states and time.monotonic() < deadline:
        time.sleep(1)
    assert state in states, f"Job {job.job_id} is {state} after {seconds} s, not one of {states}"
    return state


def test_logs_show_every_pod_and_every_attempt(backend: Kubernetes, namespace: str) -> None:
    # Index 0 fails its first attempt; its retry and index 1 succeed.
    script = 'echo "index $INDEX attempt $FAILURES"; [ "$INDEX$FAILURES" != 00 ]'
    apply(_indexed_job("logs", 2, script), namespace)
    job = JobRef("logs", "0" * 32, "")
    assert _wait_for(backend, job, {"COMPLETED", "FAILED"}) == "COMPLETED"
    assert not backend.active(job)
    pods = _pods(namespace, "logs")
    assert len(pods) == 3, f"two indexes and one retry, found {pods}"

    cursor = LogCursor()
    text = backend.log(job, cursor).decode()
    for name in pods:
        assert f"==> pod {name} <==\n" in text, f"no output of pod {name} in:\n{text}"
    for line in ("index 0 attempt 0", "index 0 attempt 1", "index 1 attempt 0"):
        assert text.count(line + "\n") == 1, f"{line!r} not exactly once in:\n{text}"
    assert backend.log(job, cursor) == b"", "a second read gives only what is new: nothing"


def test_stop_ends_the_pods_gracefully_without_a_retry(backend: Kubernetes, namespace: str) -> None:
    # The pods' SIGTERM handler stands for the checkpoint upload: it takes 8 s, so
    # that its line is read before the pod is gone (the log goes with the pod).
    script = (
        "trap 'echo \"index $INDEX: SIGTERM, checkpoint saved\"; sleep 8; exit 143' TERM; "
        'echo "index $INDEX training"; while :; do sleep 1; done'
    )
    apply(_indexed_job("stopped", 2, script), namespace)
    job = JobRef("stopped", "0" * 32, "")
    _wait_for(backend, job, {"RUNNING"})
    cursor = LogCursor()
    seen = _follow(backend, job, cursor, lambda out: out.count(b"training") == 2)
    assert seen.count(b"training") == 2, seen.decode()

    # Suspended: the Job controller ends its pods (SIGTERM, then the grace period)
    # and counts no failure; read as `labstack logs -f` would until they are gone.
    backend.stop(job, graceful=True)
    assert backend.state(job) in ("STOPPING", "STOPPED")
    rest = _follow(backend, job, cursor, lambda _: backend.state(job) == "STOPPED").decode()
    for index in (0, 1):
        assert f"index {index}: SIGTERM, checkpoint saved" in rest, rest
    time.sleep(5)
    assert _pods(namespace, "stopped") == [], "a stopped Job starts no new pod"
    assert backend.state(job) == "STOPPED"
    assert not backend.active(job)

    backend.stop(job, graceful=False)  # cancel
    assert _wait_for(backend, job, {"DELETED"}, 60) == "DELETED"


def _follow(
    backend: Kubernetes, job: JobRef, cursor: LogCursor, done: Callable[[bytes], bool]
) -> bytes:
    """The output read every half second until DONE(output so far), for two minutes at most."""
    out = b""
    deadline = time.monotonic() + 120
    while not done(out) and time.monotonic() < deadline:
        out += backend.log(job, cursor)
        time.sleep(0.5)
    return out + backend.log(job, cursor)


def test_a_request_the_cluster_cannot_take_is_refused_before_any_run(
    backend: Kubernetes,
) -> None:
    nodes = kubectl_json("get", "nodes")["items"]
    most = max(int(n["status"]["allocatable"].get("nvidia.com/gpu", "0")) for n in nodes)
    assert most > 0, "the sandbox's workers advertise GPUs"
    tags = Kubernetes(backend.config, Resources(gpus=most)).prepare()
    assert tags["env.image"] == base_image()
    assert tags["env.image_id"].startswith("sha256:")
    with pytest.raises(SpecError, match=f"no node of the cluster advertises more than {most} "):
        Kubernetes(backend.config, Resources(gpus=most + 1)).prepare()
    elsewhere = dataclasses.replace(
        backend.config,
        kubernetes=dataclasses.replace(backend.config.kubernetes, namespace="no-such-namespace"),
    )
    with pytest.raises(SpecError, match="namespace 'no-such-namespace' does not exist"):
        Kubernetes(elsewhere, Resources()).prepare()
    absent = dataclasses.replace(
        backend.config,
        kubernetes=dataclasses.replace(backend.config.kubernetes, image="labstack/absent:0"),
    )
    with pytest.raises(SpecError, match="image labstack/absent:0 is on no node"):
        Kubernetes(absent, Resources()).prepare()


def test_a_job_suspended_by_its_queue_is_pending_not_stopped(
    backend: Kubernetes, namespace: str
) -> None:
    # Kueue creates Jobs suspended and unsuspends them when admitted.
    queued = _indexed_job("queued", 1, "true")
    queued["spec"]["suspend"] = True
    apply(queued, namespace)
    job = JobRef("queued", "0" * 32, "")
    assert backend.state(job) == "PENDING"
    assert backend.active(job), "a queued run is waited for, not taken as ended"
