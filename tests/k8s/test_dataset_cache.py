"""The training Jobs' shared dataset cache: claim labstack-datasets of the Jobs' namespace,
bound to the PersistentVolume of the inventory's kubernetes_jobs_datasets_volume (in the
sandbox, the directory /shared/labstack/datasets-k8s of the lab's shared filesystem, which
every node has). What a pod on one worker writes there as the training image's uid, a pod
on the other worker reads, and so does a Slurm node: one copy for the whole lab."""

from __future__ import annotations

import subprocess
import uuid
from typing import Any

from tests.inventory import container, hosts, hostvars
from tests.kube import apply, kubectl, kubectl_json, pod, worker_names

CLAIM = "labstack-datasets"


def _namespace() -> str:
    return hostvars(hosts("kube_control_plane")[0])["kubernetes_jobs_namespace"]


def _run(name: str, node: str, script: str) -> str:
    """SCRIPT in a pod on NODE, as uid 10001 with the claim at /datasets: its output."""
    namespace = _namespace()
    manifest: dict[str, Any] = pod(name, ["sh", "-c", script], node=node)
    manifest["spec"]["securityContext"].update(runAsUser=10001, runAsGroup=10001)
    manifest["spec"]["volumes"] = [{"name": "data", "persistentVolumeClaim": {"claimName": CLAIM}}]
    manifest["spec"]["containers"][0]["volumeMounts"] = [{"name": "data", "mountPath": "/datasets"}]
    apply(manifest, namespace)
    try:
        kubectl(
            "--namespace", namespace, "wait", f"pod/{name}", "--timeout=120s",
            "--for=jsonpath={.status.phase}=Succeeded",
        )  # fmt: skip
        return kubectl("--namespace", namespace, "logs", name).stdout
    finally:
        kubectl("--namespace", namespace, "delete", "pod", name, "--wait=false")


def test_the_claim_is_bound_to_the_lab_volume_and_kept() -> None:
    claim = kubectl_json("--namespace", _namespace(), "get", "pvc", CLAIM)
    assert claim["status"]["phase"] == "Bound", claim["status"]
    volume = kubectl_json("get", "pv", claim["spec"]["volumeName"])
    assert volume["spec"]["accessModes"] == ["ReadWriteMany"]
    assert volume["spec"]["persistentVolumeReclaimPolicy"] == "Retain"
    assert volume["spec"]["claimRef"]["namespace"] == _namespace()


def test_one_copy_for_every_node_and_the_shared_filesystem() -> None:
    first, second = worker_names()[:2]
    tag = uuid.uuid4().hex[:8]
    path = f"/datasets/probe-{tag}"
    wrote = _run(f"cache-write-{tag}", first, f"echo written on $NODE_NAME > {path} && id -u")
    assert wrote.strip() == "10001", wrote
    seen = _run(f"cache-read-{tag}", second, f"cat {path}")
    assert seen.strip() == f"written on {first}", seen
    # The volume's directory as the Slurm nodes see it (the sandbox's is a hostPath).
    slurm_node = hosts("slurm_compute")[0]
    shared = hostvars(slurm_node)["kubernetes_jobs_datasets_volume"]["hostPath"]["path"]
    on_slurm = subprocess.run(
        ["docker", "exec", container(slurm_node), "stat", "-c", "%u %n", f"{shared}/probe-{tag}"],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert on_slurm.stdout.strip() == f"10001 {shared}/probe-{tag}", (
        on_slurm.stdout + on_slurm.stderr
    )
    _run(f"cache-clean-{tag}", second, f"rm {path}")
