"""`make lab`'s summary (workload.lab) as a terminal of 80 columns shows it."""

from __future__ import annotations

import re
import socket
from pathlib import Path
from typing import Any

from workload.lab import KubeNode, Node, report
from workload.lab_services import services


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_the_summary_fits_80_columns_and_cuts_nothing(tmp_path: Path) -> None:
    port = _closed_port()  # every service unreachable: the summary says so
    groups = ["storage", "storage_replica", "tracking", "secrets", "monitoring"]
    groups += ["kube_control_plane"]
    data: dict[str, Any] = {group: {"hosts": [f"{group}-host"]} for group in groups}
    data["_meta"] = {
        "hostvars": {
            f"{group}-host": {"sandbox_published_ports": [f"127.0.0.1:{port}:{p}" for p in ports]}
            for group, ports in zip(
                groups, [[9000, 9001], [9000], [5000], [8200], [9090], [6443]], strict=True
            )
        }
    }
    inventory = tmp_path / "a-lab-inventory"
    running = services(inventory, data)
    assert {service.health for service in running} == {"unreachable (ConnectionError)"}
    found = [Node("head", ["tracking", "secrets", "monitoring", "slurm_controller"], "running")]
    cluster = [KubeNode("kube-gpu1", "True", "v1.34.4", "2")]

    text = report(inventory, found, running, cluster)

    generated = (inventory / ".generated").resolve()
    for line in text.splitlines():
        # Paths stand on lines of their own, whole, however long.
        if not re.fullmatch(r"  (export \w+=)?/\S+", line):
            assert len(line) <= 80, line
    assert "…" not in text
    assert f"  export LABSTACK_CONFIG={generated / 'labstack.toml'}\n" in text
    assert f"  export KUBECONFIG={generated / 'kubeconfig'}\n" in text
    assert f"  {(inventory / 'credentials.yml').resolve()}\n" in text
    words = set(re.split(r"[\s,;]+", text))
    for name in ("minio_replica_root_password", "openbao_launcher_password", "jobs"):
        assert name in words, name
    assert "\x1b[" not in text  # no colour codes where the output is no terminal
