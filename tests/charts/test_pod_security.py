"""Every pod and container of every rendering: restricted security, resources, probes."""

from __future__ import annotations

import pytest
from conftest import CASES, VALID, rendered
from helmtool import Manifest, containers, pod_specs


def _pods(chart: str, name: str) -> list[tuple[str, Manifest]]:
    pods = pod_specs(rendered(chart, name))
    assert pods, f"{name}: no pod-bearing object rendered"
    return pods


def test_pod_security_context_is_restricted(case: tuple[str, str]) -> None:
    for where, spec in _pods(*case):
        psc = spec.get("securityContext", {})
        assert psc.get("runAsNonRoot") is True, where
        assert psc.get("runAsUser", 0) > 0, where
        assert psc.get("seccompProfile", {}).get("type") == "RuntimeDefault", where
        assert spec.get("automountServiceAccountToken") is False, where
        for flag in ("hostNetwork", "hostPID", "hostIPC"):
            assert not spec.get(flag), f"{where}: {flag}"
        assert not [v for v in spec.get("volumes", []) if "hostPath" in v], where


def test_every_container_is_restricted(case: tuple[str, str]) -> None:
    for where, spec in _pods(*case):
        for c in containers(spec):
            sc = c.get("securityContext", {})
            at = f"{where} container {c['name']}"
            assert sc.get("runAsNonRoot") is True, at
            assert sc.get("allowPrivilegeEscalation") is False, at
            assert sc.get("readOnlyRootFilesystem") is True, at
            assert sc.get("privileged", False) is False, at
            assert sc.get("capabilities", {}).get("drop") == ["ALL"], at
            assert not sc.get("capabilities", {}).get("add"), at
            assert sc.get("seccompProfile", {}).get("type") == "RuntimeDefault", at


def test_every_container_has_resources(case: tuple[str, str]) -> None:
    for where, spec in _pods(*case):
        for c in containers(spec):
            res = c.get("resources", {})
            at = f"{where} container {c['name']}"
            assert {"cpu", "memory"} <= set(res.get("requests", {})), at
            assert "memory" in res.get("limits", {}), at


@pytest.mark.parametrize("name", VALID["labstack"])
def test_every_labstack_container_has_three_probes(name: str) -> None:
    """Servers, the provisioning Job and the helm-test pod alike (no init containers)."""
    for where, spec in _pods("labstack", name):
        assert not spec.get("initContainers"), f"{where}: init containers cannot carry probes"
        for c in spec["containers"]:
            for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
                assert probe in c, f"{where} container {c['name']} lacks {probe}"


def test_writable_paths_are_volumes(case: tuple[str, str]) -> None:
    """Read-only root filesystem: /tmp is always a mounted emptyDir."""
    for where, spec in _pods(*case):
        volumes = {v["name"]: v for v in spec.get("volumes", [])}
        for c in containers(spec):
            mounts = {m["mountPath"]: m["name"] for m in c.get("volumeMounts", [])}
            assert "/tmp" in mounts, f"{where} container {c['name']} has no writable /tmp"
            assert "emptyDir" in volumes[mounts["/tmp"]], where


@pytest.mark.parametrize(("chart", "name"), CASES)
def test_images_come_from_labstack(chart: str, name: str) -> None:
    for where, spec in _pods(chart, name):
        for c in containers(spec):
            repo = c["image"].split("@")[0].rsplit(":", 1)[0]
            assert "labstack/" in repo, f"{where}: image {c['image']} is not built by images/"
