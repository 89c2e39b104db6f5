"""Run the pinned Helm binary and parse what it renders."""

from __future__ import annotations

import os
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[2]
CHARTS = REPO / "helm"
VALUES = Path(__file__).resolve().parent / "values"

Manifest = dict[str, Any]


def helm_bin() -> str:
    path = os.environ.get("LABSTACK_HELM_BIN", "")
    if not path:
        raise RuntimeError(
            "LABSTACK_HELM_BIN is not set: run the chart tests with `make charts`, "
            "which builds the pinned Helm (versions.env HELM_VERSION) and exports it"
        )
    if not os.access(path, os.X_OK):
        raise RuntimeError(f"LABSTACK_HELM_BIN={path} is not an executable file")
    return path


@dataclass(frozen=True)
class Result:
    returncode: int
    stdout: str
    stderr: str


def helm(*args: str) -> Result:
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": os.environ.get("HOME", "/tmp"),
        # Keep Helm away from any kubeconfig and user config: everything is offline.
        "KUBECONFIG": os.devnull,
        "HELM_CACHE_HOME": "/nonexistent/helm-cache",
        "HELM_CONFIG_HOME": "/nonexistent/helm-config",
        "HELM_DATA_HOME": "/nonexistent/helm-data",
    }
    proc = subprocess.run(
        [helm_bin(), *args], capture_output=True, text=True, env=env, check=False, timeout=120
    )
    return Result(proc.returncode, proc.stdout, proc.stderr)


def values_args(values_files: tuple[Path, ...]) -> list[str]:
    args: list[str] = []
    for f in values_files:
        args += ["-f", str(f)]
    return args


def template(
    chart: str, values_files: tuple[Path, ...], kube_version: str = "1.37.0", *extra: str
) -> Result:
    return helm(
        "template",
        "lab",
        str(CHARTS / chart),
        "--namespace",
        "ml",
        "--kube-version",
        kube_version,
        *values_args(values_files),
        *extra,
    )


def render(
    chart: str, values_files: tuple[Path, ...], kube_version: str = "1.37.0"
) -> list[Manifest]:
    result = template(chart, values_files, kube_version)
    if result.returncode != 0:
        raise AssertionError(f"helm template {chart} {values_files} failed:\n{result.stderr}")
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc]


def merged_values(chart: str, values_files: tuple[Path, ...]) -> dict[str, Any]:
    """The chart defaults with the values files layered on top (Helm's merge)."""
    merged: dict[str, Any] = yaml.safe_load((CHARTS / chart / "values.yaml").read_text())
    for f in values_files:
        merged = _merge(merged, yaml.safe_load(f.read_text()) or {})
    return merged


def _merge(base: dict[str, Any], top: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in top.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)  # pyright: ignore[reportUnknownArgumentType]
        else:
            out[key] = value
    return out


POD_SPEC_PATHS = {
    "Deployment": ("spec", "template", "spec"),
    "StatefulSet": ("spec", "template", "spec"),
    "Job": ("spec", "template", "spec"),
    "Pod": ("spec",),
}


def pod_specs(manifests: list[Manifest]) -> list[tuple[str, Manifest]]:
    """(kind/name, pod spec) of every object that runs pods."""
    found: list[tuple[str, Manifest]] = []
    for m in manifests:
        path = POD_SPEC_PATHS.get(m["kind"])
        if path is None:
            continue
        spec: Any = m
        for key in path:
            spec = spec[key]
        found.append((f"{m['kind']}/{m['metadata']['name']}", spec))
    return found


def containers(spec: Manifest) -> list[Manifest]:
    return [*spec.get("initContainers", []), *spec.get("containers", [])]
