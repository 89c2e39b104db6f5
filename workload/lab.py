"""Summary of a deployed lab: every node, its role groups and its health.

    python -m workload.lab -i ansible/inventories/sandbox

Reads the inventory with ansible-inventory and asks every node for systemd's
state through Ansible itself, so it works for the sandbox (docker
connection) and a real site (SSH) alike. Exits non-zero if a node is not
healthy.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import subprocess
import sys
import textwrap
from dataclasses import dataclass
from pathlib import Path

from rich.console import Console
from rich.table import Table

from workload.lab_services import Service, launcher_config, services

_BIN = Path(sys.executable).parent


@dataclass(frozen=True)
class Node:
    name: str
    groups: list[str]
    state: str

    @property
    def healthy(self) -> bool:
        return self.state == "running"


def _ansible(tool: str, inventory: Path, *args: str) -> str:
    env = {
        **os.environ,
        "ANSIBLE_STDOUT_CALLBACK": "ansible.posix.json",
        "ANSIBLE_LOAD_CALLBACK_PLUGINS": "1",
    }
    # Only JSON on stdout: no callback the caller enabled (profile_tasks) may
    # print beside it.
    env.pop("ANSIBLE_CALLBACKS_ENABLED", None)
    done = subprocess.run(  # noqa: S603 (our own tools, argument lists)
        [str(_BIN / tool), "-i", str(inventory), *args],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    if tool == "ansible-inventory" and done.returncode != 0:
        raise SystemExit(f"cannot read inventory {inventory}: {done.stderr.strip()}")
    return done.stdout


def _groups(
    inventory: dict, group: str = "all", parents: tuple[str, ...] = ()
) -> dict[str, list[str]]:
    """host -> the groups it is in (but 'all' and 'ungrouped')."""
    found: dict[str, list[str]] = {}
    here = parents if group in ("all", "ungrouped") else (*parents, group)
    for host in inventory.get(group, {}).get("hosts", []):
        found.setdefault(host, []).extend(name for name in here if name not in found[host])
    for child in inventory.get(group, {}).get("children", []):
        for host, names in _groups(inventory, child, here).items():
            found.setdefault(host, []).extend(name for name in names if name not in found[host])
    return found


def nodes(inventory: Path, data: dict) -> list[Node]:
    groups = _groups(data)
    report = _ansible(
        "ansible",
        inventory,
        "all",
        "-m",
        "ansible.builtin.command",
        "-a",
        "systemctl is-system-running",
    )
    states: dict[str, str] = {}
    if report:
        for play in json.loads(report).get("plays", []):
            for task in play.get("tasks", []):
                for host, result in task.get("hosts", {}).items():
                    if result.get("unreachable"):
                        states[host] = "unreachable"
                    else:
                        states[host] = (
                            result.get("stdout") or result.get("msg") or "unknown"
                        ).strip()
    return [Node(name, names, states.get(name, "unknown")) for name, names in groups.items()]


@dataclass(frozen=True)
class KubeNode:
    name: str
    ready: str
    version: str
    gpus: str

    @property
    def healthy(self) -> bool:
        return self.ready == "True"


def kube_nodes(kubectl: Path, kubeconfig: Path) -> list[KubeNode]:
    """The cluster's nodes as its API reports them (admin kubeconfig)."""
    done = subprocess.run(  # noqa: S603 (our own kubectl, an argument list)
        [str(kubectl), "--kubeconfig", str(kubeconfig), "get", "nodes", "-o", "json"],
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        return [KubeNode("(API)", f"unreachable: {done.stderr.strip()[:60]}", "", "")]
    found = []
    for item in json.loads(done.stdout)["items"]:
        conditions = {c["type"]: c["status"] for c in item["status"].get("conditions", [])}
        found.append(
            KubeNode(
                item["metadata"]["name"],
                conditions.get("Ready", "Unknown"),
                item["status"]["nodeInfo"]["kubeletVersion"],
                item["status"].get("capacity", {}).get("nvidia.com/gpu", "0"),
            )
        )
    return found


def report(
    inventory: Path, found: list[Node], running: list[Service], cluster: list[KubeNode]
) -> str:
    """The summary as a terminal of 80 columns shows it: tables of short cells, and
    the paths on lines of their own (a path cut or wrapped cannot be copied)."""
    console = Console(width=80, record=True, file=io.StringIO())
    table = Table(title=f"labstack: {inventory}")
    for column in ("node", "role groups", "systemd"):
        table.add_column(column)
    for node in found:
        style = "green" if node.healthy else "red"
        table.add_row(node.name, ", ".join(node.groups), f"[{style}]{node.state}[/{style}]")
    console.print(table)
    table = Table(title="services")
    for column in ("service", "URL", "health"):
        table.add_column(column)
    for service in running:
        style = "green" if service.healthy else "red"
        table.add_row(service.name, service.url, f"[{style}]{service.health}[/{style}]")
    console.print(table)
    generated = (inventory / ".generated").resolve()
    lines = [
        "TLS: verify with the lab's CA",
        f"  {generated / 'pki' / 'ca.crt'}",
        "Credentials: ansible-vault view",
        f"  {(inventory / 'credentials.yml').resolve()}",
    ]
    width = max((len(service.name) for service in running), default=0) + 4
    for service in running:
        lines += textwrap.wrap(
            service.credentials,
            80,
            initial_indent=f"  {service.name}".ljust(width),
            subsequent_indent=" " * width,
            break_on_hyphens=False,
        )
    if cluster:
        table = Table(title="Kubernetes nodes")
        for column in ("node", "Ready", "kubelet", "nvidia.com/gpu"):
            table.add_column(column)
        for kube in cluster:
            style = "green" if kube.healthy else "red"
            table.add_row(kube.name, f"[{style}]{kube.ready}[/{style}]", kube.version, kube.gpus)
        console.print(table)
        lines += [
            "Kubernetes, as its admin (0600):",
            f"  export KUBECONFIG={generated / 'kubeconfig'}",
        ]
    lines += [
        "labstack CLI (no secrets in it; see README, 'Submitting runs'):",
        f"  export LABSTACK_CONFIG={generated / 'labstack.toml'}",
        "Keep offline, apart from the lab (no backup can be read without them):",
        "  the credentials file above, its vault password, and the CA's key in",
        f"  {generated / 'pki'}",
    ]
    return console.export_text(styles=sys.stdout.isatty()) + "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m workload.lab",
        description="Summary of a deployed lab: every node and its health.",
    )
    parser.add_argument("-i", "--inventory", type=Path, required=True, help="the site's inventory")
    parser.add_argument(
        "--kubectl",
        type=Path,
        help="kubectl to list the Kubernetes nodes with (a site with kube_node)",
    )
    args = parser.parse_args(argv)
    if not args.inventory.exists():
        parser.error(f"inventory {args.inventory} does not exist")
    data = json.loads(_ansible("ansible-inventory", args.inventory, "--list"))
    found = nodes(args.inventory, data)
    running = services(args.inventory, data)
    cluster: list[KubeNode] = []
    if data.get("kube_node", {}).get("hosts"):
        if args.kubectl is None:
            parser.error("the inventory has kube_node hosts: --kubectl PATH lists them")
        cluster = kube_nodes(args.kubectl, args.inventory / ".generated" / "kubeconfig")
    config = args.inventory / ".generated" / "labstack.toml"
    config.write_text(launcher_config(args.inventory, data), encoding="utf-8")
    print(report(args.inventory, found, running, cluster), end="")
    healthy = (
        all(node.healthy for node in found)
        and all(s.healthy for s in running)
        and all(kube.healthy for kube in cluster)
    )
    return 0 if found and healthy else 1


if __name__ == "__main__":
    sys.exit(main())
