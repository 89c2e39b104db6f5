"""Kubernetes: the Job of helm/training-job, rendered with `helm template`, applied with kubectl."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

from workload.launch.config import LabConfig
from workload.launch.spec import Resources, SpecError


class KubernetesError(RuntimeError):
    """helm or kubectl failed; the message has their stderr."""


def _tool(name: str, env_var: str) -> str:
    found = os.environ.get(env_var) or shutil.which(name)
    if not found:
        raise SpecError(f"--on k8s: `{name}` is not on PATH (or set {env_var})")
    return found


def values(
    config: LabConfig,
    resources: Resources,
    run_id: str,
    experiment: str,
    git_commit: str,
    train_argv: list[str],
) -> dict:
    k8s = config.kubernetes
    repository, colon, tag = k8s.image.rpartition(":")
    if not (repository and colon and tag) or "/" in tag:
        raise SpecError(
            f"[kubernetes] image = {k8s.image!r}: REPOSITORY:TAG, e.g. labstack/training:0.1.0"
        )
    return {
        "image": {"repository": repository, "tag": tag},
        "run": {"id": run_id, "experiment": experiment},
        "args": train_argv,
        "nodes": resources.nodes,
        "gpusPerNode": resources.gpus,
        "secrets": {"mlflow": k8s.mlflow_secret, "s3": k8s.s3_secret},
        "env": {"LABSTACK_GIT_COMMIT": git_commit, "S3_ENDPOINT": config.jobs.s3_endpoint},
        "resources": {
            "requests": {
                "cpu": str(resources.cpus * resources.tasks_per_node),
                "memory": resources.memory + "i",
            },
            "limits": {"memory": resources.memory + "i"},
        },
    }


def _run(what: str, argv: list[str], stdin: str | None = None) -> str:
    """stdout of `argv`; its stderr, after `what`, in the error when it fails."""
    done = subprocess.run(argv, input=stdin, capture_output=True, text=True, check=False)  # noqa: S603
    if done.returncode != 0:
        raise KubernetesError(f"{what}: {done.stderr.strip()}")
    return done.stdout


def render(config: LabConfig, name: str, chart_values: dict) -> str:
    helm = _tool("helm", "LABSTACK_HELM_BIN")
    k8s = config.kubernetes
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "values.json"
        path.write_text(json.dumps(chart_values))
        argv = [helm, "template", name, k8s.chart, "--namespace", k8s.namespace, "-f", str(path)]
        return _run(f"helm template {k8s.chart}", argv)


def _kubectl(config: LabConfig, *args: str, stdin: str | None = None) -> str:
    kubectl = _tool("kubectl", "LABSTACK_KUBECTL_BIN")
    context = ["--context", config.kubernetes.context] if config.kubernetes.context else []
    argv = [kubectl, *context, "--namespace", config.kubernetes.namespace, *args]
    return _run(f"kubectl {args[0]}", argv, stdin)


def check(config: LabConfig) -> None:
    """The cluster answers and lets us create Jobs (before any run is created)."""
    _tool("helm", "LABSTACK_HELM_BIN")
    answer = _kubectl(config, "auth", "can-i", "create", "jobs").strip()
    if answer != "yes":
        raise SpecError(f"--on k8s: may not create Jobs in namespace {config.kubernetes.namespace}")


def apply(config: LabConfig, manifest: str) -> None:
    _kubectl(config, "apply", "-f", "-", stdin=manifest)


def delete(config: LabConfig, job_name: str) -> None:
    _kubectl(config, "delete", "job", job_name, "--wait=false")


def logs(config: LabConfig, job_name: str) -> str:
    return _kubectl(config, "logs", f"job/{job_name}", "--all-containers")
