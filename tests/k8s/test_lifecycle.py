"""The inventory drives the cluster: a worker added to kube_node joins on a
rerun of the layers of site.yml it concerns, and playbooks/drain.yml cordons
and drains it (its pods move away) and uncordons it."""

from __future__ import annotations

import subprocess
from pathlib import Path

import yaml

from tests.inventory import hostvars
from tests.kube import apply, kubectl, kubectl_json, kubernetes_version, pod, worker_names
from tests.playbook import ANSIBLE_DIR, SANDBOX_INVENTORY, inventory_with_host, run_playbook

# site.yml's layers that configure a Kubernetes worker: /etc/hosts, the lab
# CA's trust, then the cluster.
_WORKER_LAYERS = ("playbooks/common.yml", "playbooks/pki.yml", "playbooks/kubernetes.yml")
_KUBE_NODE_DEFAULTS = ANSIBLE_DIR / "roles" / "kube_node" / "defaults" / "main.yml"


def _node(name: str) -> dict:
    return kubectl_json("get", "node", name)


def test_a_new_worker_joins_on_rerun(tmp_path: Path) -> None:
    new = "kube-gpu3"
    assert new not in worker_names()
    # Only the images the cluster itself runs (pause, CoreDNS) and the tests'
    # base: no pod of the labstack chart lands on it, and its four images
    # would double the join's time.
    images = yaml.safe_load(_KUBE_NODE_DEFAULTS.read_text())["kube_node_images"][:3]
    inventory = inventory_with_host(
        tmp_path,
        "kube_node",
        new,
        {
            "kube_node_pod_cidr": "10.214.3.0/24",
            "sandbox_ipv4_address": "172.30.0.23",
            "kube_node_images": images,
        },
    )
    new_container = hostvars(worker_names()[0])["sandbox_container_prefix"] + new
    try:
        created = run_playbook("sandbox.yml", inventory)
        assert created.returncode == 0, created.output
        # The layers of site.yml a worker concerns (the others touch no
        # Kubernetes host).
        for book in _WORKER_LAYERS:
            joined = run_playbook(book, inventory)
            assert joined.returncode == 0, joined.output
        node = _node(new)
        conditions = {c["type"]: c["status"] for c in node["status"]["conditions"]}
        assert conditions["Ready"] == "True", conditions
        assert node["status"]["nodeInfo"]["kubeletVersion"] == kubernetes_version()
    finally:
        kubectl("delete", "node", new, "--ignore-not-found")
        subprocess.run(
            ["docker", "rm", "-f", "--volumes", new_container], capture_output=True, check=False
        )
        subprocess.run(
            ["docker", "volume", "rm", f"{new_container}-containerd"],
            capture_output=True,
            check=False,
        )
        # The remaining hosts follow the inventory again: /etc/hosts (common)
        # and the pod routes (the Kubernetes layer).
        restored = [
            run_playbook(book) for book in ("playbooks/common.yml", "playbooks/kubernetes.yml")
        ]
    for run in restored:
        assert run.returncode == 0, run.output
    assert sorted(i["metadata"]["name"] for i in kubectl_json("get", "nodes")["items"]) == sorted(
        worker_names()
    )


def test_drain_moves_pods_away_and_resume_takes_new_ones(namespace: str) -> None:
    target = worker_names()[0]
    apply(pod("victim", ["sleep", "600"], node=target), namespace)
    kubectl(
        "--namespace", namespace, "wait", "--for=condition=Ready", "pod/victim", "--timeout=120s"
    )
    try:
        drained = run_playbook("playbooks/drain.yml", SANDBOX_INVENTORY, "-e", f"node={target}")
        assert drained.returncode == 0, drained.output
        assert _node(target)["spec"].get("unschedulable") is True
        # A bare pod (no controller) is evicted too: drain.yml forces it and
        # says so in its output.
        gone = kubectl("--namespace", namespace, "get", "pod", "victim", check=False)
        assert gone.returncode != 0, gone.stdout
        assert "NotFound" in gone.stderr
        again = run_playbook("playbooks/drain.yml", SANDBOX_INVENTORY, "-e", f"node={target}")
        assert again.returncode == 0, again.output
        assert all(counts["changed"] == 0 for counts in again.recap.values()), again.output
    finally:
        resumed = run_playbook(
            "playbooks/drain.yml", SANDBOX_INVENTORY, "-e", f"node={target}", "-e", "state=resume"
        )
    assert resumed.returncode == 0, resumed.output
    assert not _node(target)["spec"].get("unschedulable")
