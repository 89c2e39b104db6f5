"""Each component can be switched off on its own; persistence can be turned off."""

from __future__ import annotations

import subprocess
from collections.abc import Mapping
from pathlib import Path

import pytest
import yaml
from conftest import values_file
from helmtool import CHARTS, render

MINIMAL = values_file("labstack-minimal")
EXTERNAL_S3 = {"mlflow": {"artifacts": {"externalEndpoint": "https://s3.lab.example"}}}
EXTERNAL_PG = {
    "mlflow": {"backendStore": {"external": {"host": "pg.lab.example", "existingSecret": "pg"}}}
}


def _render_with(tmp_path: Path, overlay: Mapping[str, object]) -> set[str]:
    path = tmp_path / "overlay.yaml"
    path.write_text(yaml.safe_dump(dict(overlay)))
    return {
        m["metadata"].get("labels", {}).get("app.kubernetes.io/component", "")
        for m in render("labstack", (MINIMAL, path))
    }


@pytest.mark.parametrize(
    ("component", "overlay", "gone"),
    [
        ("minio", {"minio": {"enabled": False}, **EXTERNAL_S3}, {"minio", "minio-provision"}),
        ("postgresql", {"postgresql": {"enabled": False}, **EXTERNAL_PG}, {"postgresql"}),
        ("mlflow", {"mlflow": {"enabled": False}}, {"mlflow", "test"}),
        ("openbao", {"openbao": {"enabled": False}}, {"openbao"}),
    ],
)
def test_component_switches_off(
    tmp_path: Path, component: str, overlay: Mapping[str, object], gone: set[str]
) -> None:
    everything = _render_with(tmp_path, {})
    assert gone <= everything
    remaining = _render_with(tmp_path, overlay)
    assert not gone & remaining, f"{component} disabled but still rendered: {gone & remaining}"
    assert remaining == everything - gone


def test_persistence_off_uses_emptydir(tmp_path: Path) -> None:
    path = tmp_path / "overlay.yaml"
    off = {"persistence": {"enabled": False, "size": "1Gi"}}
    path.write_text(yaml.safe_dump({c: off for c in ("minio", "postgresql", "openbao")}))
    for m in render("labstack", (MINIMAL, path)):
        if m["kind"] == "StatefulSet":
            assert "volumeClaimTemplates" not in m["spec"], m["metadata"]["name"]
            volumes = {v["name"]: v for v in m["spec"]["template"]["spec"]["volumes"]}
            data = [v for n, v in volumes.items() if n.startswith("data")]
            assert data
            assert all("emptyDir" in v for v in data)


def test_postgres_entrypoint_is_valid_bash() -> None:
    script = CHARTS / "labstack" / "files" / "postgres-entrypoint.sh"
    result = subprocess.run(
        ["bash", "-n", str(script)], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr
