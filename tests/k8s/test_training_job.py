"""The training-job chart's retry rules against the real Job controller.

A training pod that is deleted or evicted gets SIGTERM, saves a checkpoint
and exits 128 + 15 (workload.train); the chart's podFailurePolicy ignores
that exit, so the Job starts a new pod (which resumes from the checkpoint)
without spending its backoffLimit. Any other failure spends it: with
backoffLimit 0, the same deletion of a pod that exits 1 fails the Job.
"""

from __future__ import annotations

import json
import time
from typing import Any

from tests.kube import base_image, kubectl, kubectl_json, training_job

# A pod that stands in for the training: it waits, and on SIGTERM ends with CODE.
_SCRIPT = "trap 'echo preempted; exit {code}' TERM; echo started; sleep 600 & wait"


def _pods(namespace: str, job: str) -> list[dict[str, Any]]:
    selector = f"batch.kubernetes.io/job-name={job}"
    return kubectl_json("--namespace", namespace, "get", "pods", "-l", selector)["items"]


def _running_pod(namespace: str, job: str, other_than: str = "", seconds: int = 120) -> str:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        for found in _pods(namespace, job):
            name = found["metadata"]["name"]
            if name != other_than and found["status"].get("phase") == "Running":
                return name
        time.sleep(1)
    raise AssertionError(f"no running pod of Job {job} (other than {other_than!r})")


def _job(namespace: str, name: str, code: int) -> None:
    values = {
        "backoffLimit": 0,
        # The chart's Pod-level settings want an account; this one has no role anywhere.
        "serviceAccountName": "default",
        "openbao": {"address": "https://openbao.invalid:8200", "role": "none"},
        "lab": {"mlflowUri": "https://mlflow.invalid:5000"},
    }
    command = ["sh", "-c", _SCRIPT.format(code=code)]
    manifest = training_job(name, namespace, base_image(), command, values)
    kubectl("--namespace", namespace, "apply", "-f", "-", stdin=json.dumps(manifest))


def _conditions(namespace: str, name: str) -> set[str]:
    status = kubectl_json("--namespace", namespace, "get", "job", name)["status"]
    return {c["type"] for c in status.get("conditions", []) if c["status"] == "True"}


def test_a_preempted_pod_is_retried_without_spending_the_backoff_limit(namespace: str) -> None:
    _job(namespace, "preempted", 143)
    _job(namespace, "crashed", 1)
    first = {job: _running_pod(namespace, job) for job in ("preempted", "crashed")}
    for pod_name in first.values():
        kubectl("--namespace", namespace, "delete", "pod", pod_name, "--wait=true")

    retried = _running_pod(namespace, "preempted", other_than=first["preempted"])
    assert retried != first["preempted"]
    status = kubectl_json("--namespace", namespace, "get", "job", "preempted")["status"]
    assert status.get("failed", 0) == 0, status
    assert "Failed" not in _conditions(namespace, "preempted")

    deadline = time.monotonic() + 60
    while "Failed" not in _conditions(namespace, "crashed") and time.monotonic() < deadline:
        time.sleep(1)
    assert "Failed" in _conditions(namespace, "crashed"), "exit 1 must spend backoffLimit 0"
    assert _pods(namespace, "crashed") == [], "a failed Job starts no other pod"
