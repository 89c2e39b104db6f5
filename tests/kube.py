"""Helpers of the Kubernetes tests: kubectl and helm with the sandbox's
admin kubeconfig, and pods that satisfy the restricted Pod Security Standard."""

from __future__ import annotations

import atexit
import json
import os
import shutil
import subprocess
import tempfile
from functools import cache
from pathlib import Path
from typing import Any

import yaml

from tests.inventory import hosts
from tests.playbook import REPO, SANDBOX_INVENTORY

KUBECONFIG = SANDBOX_INVENTORY / ".generated" / "kubeconfig"


def kubernetes_version() -> str:
    version = os.environ.get("LABSTACK_KUBERNETES_VERSION", "")
    assert version, "LABSTACK_KUBERNETES_VERSION is unset: run the tests through make"
    return version


def kubectl_path() -> Path:
    """The kubectl `make kube-binaries` built (LABSTACK_KUBECTL_BIN)."""
    path = os.environ.get("LABSTACK_KUBECTL_BIN", "")
    assert path, "LABSTACK_KUBECTL_BIN is unset: run the tests through make"
    return Path(path)


def _run(
    tool: str,
    binary: Path,
    args: tuple[str, ...],
    *,
    check: bool,
    kubeconfig: Path,
    timeout: float,
    stdin: str | None = None,
    env: dict[str, str] | None = None,
) -> subprocess.CompletedProcess[str]:
    """BINARY --kubeconfig KUBECONFIG ARGS, output captured; a failure names TOOL and ARGS."""
    done = subprocess.run(
        [str(binary), "--kubeconfig", str(kubeconfig), *args],
        input=stdin,
        env=env,
        capture_output=True,
        text=True,
        check=False,
        timeout=timeout,
    )
    if check:
        assert done.returncode == 0, f"{tool} {' '.join(args)}: {done.stderr}{done.stdout}"
    return done


def kubectl(
    *args: str, stdin: str | None = None, check: bool = True, kubeconfig: Path = KUBECONFIG
) -> subprocess.CompletedProcess[str]:
    """kubectl ARGS as the cluster's admin, output captured."""
    return _run(
        "kubectl",
        kubectl_path(),
        args,
        check=check,
        kubeconfig=kubeconfig,
        timeout=600,
        stdin=stdin,
    )


def kubectl_json(*args: str) -> Any:
    return json.loads(kubectl(*args, "-o", "json").stdout)


def helm_path() -> Path:
    """The helm `make` built (LABSTACK_HELM_BIN, versions.env HELM_VERSION)."""
    path = os.environ.get("LABSTACK_HELM_BIN", "")
    assert path, "LABSTACK_HELM_BIN is unset: run the tests through make"
    return Path(path)


@cache
def _helm_home() -> Path:
    """Helm's config, cache and data directories: the tests' own, empty,
    removed when the tests end."""
    home = tempfile.mkdtemp(prefix="labstack-helm-")
    atexit.register(shutil.rmtree, home, ignore_errors=True)
    return Path(home)


def helm(
    *args: str, check: bool = True, timeout: float = 900, kubeconfig: Path = KUBECONFIG
) -> subprocess.CompletedProcess[str]:
    """helm ARGS as the cluster's admin, output captured; no user config is read."""
    home = _helm_home()
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(home),
        "HELM_CONFIG_HOME": str(home / "config"),
        "HELM_CACHE_HOME": str(home / "cache"),
        "HELM_DATA_HOME": str(home / "data"),
    }
    return _run(
        "helm", helm_path(), args, check=check, kubeconfig=kubeconfig, timeout=timeout, env=env
    )


def apply(manifest: dict[str, Any], namespace: str) -> None:
    kubectl("--namespace", namespace, "apply", "-f", "-", stdin=json.dumps(manifest))


def control_plane_name() -> str:
    return hosts("kube_control_plane")[0]


def worker_names() -> list[str]:
    return hosts("kube_node")


def base_image() -> str:
    image = os.environ.get("LABSTACK_BASE_IMAGE", "")
    assert image, "LABSTACK_BASE_IMAGE is unset: run the tests through make"
    return image


def pod(
    name: str,
    command: list[str],
    *,
    node: str | None = None,
    labels: dict[str, str] | None = None,
    resources: dict[str, Any] | None = None,
    restart: str = "Never",
) -> dict[str, Any]:
    """A pod of the base image that the restricted Pod Security Standard admits."""
    container: dict[str, Any] = {
        "name": "main",
        "image": base_image(),
        "imagePullPolicy": "Never",
        "command": command,
        "env": [{"name": "NODE_NAME", "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}}}],
        "securityContext": {
            "allowPrivilegeEscalation": False,
            "readOnlyRootFilesystem": True,
            "capabilities": {"drop": ["ALL"]},
        },
        "resources": resources or {"requests": {"cpu": "10m", "memory": "16Mi"}},
    }
    spec: dict[str, Any] = {
        "restartPolicy": restart,
        "terminationGracePeriodSeconds": 1,
        "securityContext": {
            "runAsNonRoot": True,
            "runAsUser": 65534,
            "runAsGroup": 65534,
            "seccompProfile": {"type": "RuntimeDefault"},
        },
        "containers": [container],
    }
    if node:
        spec["nodeSelector"] = {"kubernetes.io/hostname": node}
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "labels": labels or {}},
        "spec": spec,
    }


def training_job(
    name: str, namespace: str, image: str, command: list[str], values: dict[str, Any]
) -> dict[str, Any]:
    """The training-job chart's manifest (a v1 List) for VALUES, sized for the sandbox,
    with COMMAND in place of the training: the chart's Job as `labstack submit` renders it."""
    repository, _, tag = image.rpartition(":")
    sized = {
        "fullnameOverride": name,
        "image": {"repository": repository, "tag": tag},
        "run": {"id": "0" * 32},
        "gpusPerNode": 0,
        "resources": {"requests": {"cpu": "50m", "memory": "64Mi"}, "limits": {"memory": "1Gi"}},
        "shm": {"sizeLimit": "64Mi"},
        "scratch": {"sizeLimit": "1Gi"},
        **values,
    }
    with tempfile.NamedTemporaryFile("w", suffix=".json") as path:
        json.dump(sized, path)
        path.flush()
        chart = str(REPO / "helm" / "training-job")
        rendered = helm("template", name, chart, "--namespace", namespace, "-f", path.name)
    items = [d for d in yaml.safe_load_all(rendered.stdout) if d]
    for item in items:
        if item["kind"] == "Job":
            container = item["spec"]["template"]["spec"]["containers"][0]
            container["command"] = command
            container.pop("args", None)
    return {"apiVersion": "v1", "kind": "List", "items": items}
