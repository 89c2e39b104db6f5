"""The GPU training Job: single-pod and multi-node (Indexed Job + torchrun)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import rendered, values_file
from helmtool import Manifest, render


def _objects(name: str) -> dict[str, Manifest]:
    return {m["kind"]: m for m in rendered("training-job", name)}


def test_single_pod_job() -> None:
    objs = _objects("training-single")
    assert set(objs) == {"Job"}, "no Service for a single pod"
    job = objs["Job"]["spec"]
    assert job["completionMode"] == "NonIndexed"
    assert job["completions"] == job["parallelism"] == 1
    assert job["backoffLimit"] == 3
    assert "backoffLimitPerIndex" not in job
    assert "suspend" not in job
    pod = job["template"]["spec"]
    c = pod["containers"][0]
    assert c["command"] == ["python", "-m", "workload.train"]
    assert c["args"] == ["--config", "configs/demo.yaml"]
    assert c["resources"]["limits"]["nvidia.com/gpu"] == 1
    env = {e["name"]: e.get("value") for e in c["env"]}
    assert env["MLFLOW_RUN_ID"] == "0123456789abcdef0123456789abcdef"
    assert env["NODE_RANK"] == "0"
    assert [e["secretRef"]["name"] for e in c["envFrom"]] == ["run-mlflow", "run-s3"]


def test_multi_node_indexed_job_with_headless_service() -> None:
    objs = _objects("training-multinode")
    job, svc = objs["Job"], objs["Service"]
    spec = job["spec"]
    name = job["metadata"]["name"]
    assert spec["completionMode"] == "Indexed"
    assert spec["completions"] == spec["parallelism"] == 4
    assert spec["backoffLimitPerIndex"] == 2
    assert spec["maxFailedIndexes"] == 0
    assert spec["activeDeadlineSeconds"] == 86400
    assert "ttlSecondsAfterFinished" not in spec, "null disables the TTL"
    assert svc["spec"]["clusterIP"] == "None"
    assert svc["spec"]["selector"] == {"batch.kubernetes.io/job-name": name}
    pod = spec["template"]["spec"]
    assert pod["subdomain"] == svc["metadata"]["name"]
    assert pod["restartPolicy"] == "Never"
    c = pod["containers"][0]
    assert c["command"] == ["torchrun"]
    assert "--nnodes=4" in c["args"]
    assert "--nproc-per-node=8" in c["args"]
    assert "--node-rank=$(NODE_RANK)" in c["args"]
    assert f"--master-addr={name}-0.{name}" in c["args"]
    assert c["args"][-6:] == [
        "--module",
        "workload.train",
        "--config",
        "configs/pretrain.yaml",
        "--epochs",
        "3",
    ]
    rank = next(e for e in c["env"] if e["name"] == "NODE_RANK")
    assert rank["valueFrom"]["fieldRef"]["fieldPath"] == (
        "metadata.annotations['batch.kubernetes.io/job-completion-index']"
    )
    assert c["resources"]["limits"]["nvidia.com/gpu"] == 8
    assert c["resources"]["requests"]["nvidia.com/gpu"] == 8
    assert [e["secretRef"]["name"] for e in c["envFrom"]] == [
        "run-mlflow",
        "run-s3",
        "run-hf-cache",
    ]


def test_failure_policy_and_kueue() -> None:
    job = _objects("training-multinode")["Job"]
    rules = job["spec"]["podFailurePolicy"]["rules"]
    assert rules[0] == {"action": "Ignore", "onPodConditions": [{"type": "DisruptionTarget"}]}
    assert rules[1]["action"] == "FailJob"
    assert rules[1]["onExitCodes"] == {"containerName": "train", "operator": "In", "values": [3]}
    assert job["metadata"]["labels"]["kueue.x-k8s.io/queue-name"] == "gpu-research"
    assert job["spec"]["suspend"] is True, "Kueue admits a Job created suspended"
    assert job["spec"]["template"]["spec"]["priorityClassName"] == "research-batch"


def test_gpu_scheduling_and_shared_memory() -> None:
    for name, shm in (("training-single", "16Gi"), ("training-multinode", "64Gi")):
        pod = _objects(name)["Job"]["spec"]["template"]["spec"]
        assert pod["nodeSelector"] == {"nvidia.com/gpu.present": "true"}
        assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in pod[
            "tolerations"
        ]
        volumes = {v["name"]: v for v in pod["volumes"]}
        assert volumes["dshm"]["emptyDir"] == {"medium": "Memory", "sizeLimit": shm}
        mounts = {m["mountPath"]: m["name"] for m in pod["containers"][0]["volumeMounts"]}
        assert mounts["/dev/shm"] == "dshm"
        assert pod["securityContext"]["runAsUser"] == 10001


@pytest.mark.parametrize(
    ("data_cache", "volume"),
    [
        (
            {"claimName": "datasets", "hostPath": ""},
            {"persistentVolumeClaim": {"claimName": "datasets"}},
        ),
        (
            {"claimName": "", "hostPath": "/shared/labstack/datasets"},
            {"hostPath": {"path": "/shared/labstack/datasets", "type": "Directory"}},
        ),
    ],
)
def test_the_shared_dataset_cache_is_a_claim_or_a_node_directory(
    tmp_path: Path, data_cache: dict[str, str], volume: dict[str, object]
) -> None:
    extra = tmp_path / "data-cache.yaml"
    extra.write_text(json.dumps({"dataCache": data_cache}))
    (job,) = render("training-job", (values_file("training-single"), extra))
    pod = job["spec"]["template"]["spec"]
    env = {e["name"]: e.get("value") for e in pod["containers"][0]["env"]}
    assert (env["DATA_PATH"], env["DATA_EPHEMERAL_PATH"]) == ("/datasets", "/scratch")
    mounts = {m["mountPath"]: m["name"] for m in pod["containers"][0]["volumeMounts"]}
    assert {v["name"]: v for v in pod["volumes"]}[mounts["/datasets"]] == {
        "name": "datasets",
        **volume,
    }


def test_without_a_shared_cache_only_the_node_local_level_is_set() -> None:
    pod = _objects("training-single")["Job"]["spec"]["template"]["spec"]
    env = {e["name"] for e in pod["containers"][0]["env"]}
    assert "DATA_PATH" not in env
    assert "DATA_EPHEMERAL_PATH" in env
    assert "datasets" not in {v["name"] for v in pod["volumes"]}
