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
    # `helm template | kubectl apply` lands in the release's namespace.
    assert objs["Job"]["metadata"]["namespace"] == "ml"
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
    assert job["metadata"]["namespace"] == svc["metadata"]["namespace"] == "ml"
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
    assert c["command"] == ["python", "-m", "workload.torchrun"]
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
    # The first matching rule applies: both Ignore rules come before FailJob.
    assert rules == [
        {"action": "Ignore", "onPodConditions": [{"type": "DisruptionTarget", "status": "True"}]},
        {
            "action": "Ignore",
            "onExitCodes": {"containerName": "train", "operator": "In", "values": [143]},
        },
        {
            "action": "FailJob",
            "onExitCodes": {"containerName": "train", "operator": "In", "values": [3]},
        },
    ]
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


def _render_with(tmp_path: Path, values: dict[str, object], base: str) -> Manifest:
    """The Job of BASE with VALUES layered on top."""
    extra = tmp_path / "extra.yaml"
    extra.write_text(json.dumps(values))
    (job,) = (m for m in render("training-job", (values_file(base), extra)) if m["kind"] == "Job")
    return job


def test_failure_policy_without_the_checkpointed_exit(tmp_path: Path) -> None:
    """ignoreExitCodes: [] drops that rule alone; the others keep their order."""
    job = _render_with(tmp_path, {"podFailurePolicy": {"ignoreExitCodes": []}}, "training-single")
    rules = job["spec"]["podFailurePolicy"]["rules"]
    assert [r["action"] for r in rules] == ["Ignore", "FailJob"]
    assert rules[0]["onPodConditions"] == [{"type": "DisruptionTarget", "status": "True"}]


OPENBAO_TOKEN = "/var/run/secrets/openbao/token"  # noqa: S105 (a path)
CA = "/etc/labstack/ca/ca.crt"


def test_openbao_login_with_a_projected_service_account_token() -> None:
    pod = _objects("training-openbao")["Job"]["spec"]["template"]["spec"]
    assert pod["serviceAccountName"] == "labstack-training"
    assert pod["automountServiceAccountToken"] is False, "never the API token"
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert volumes["openbao-token"]["projected"] == {
        "sources": [
            {
                "serviceAccountToken": {
                    "audience": "openbao",
                    "expirationSeconds": 600,
                    "path": "token",
                }
            }
        ]
    }
    c = pod["containers"][0]
    mounts = {m["name"]: m for m in c["volumeMounts"]}
    assert mounts["openbao-token"] == {
        "name": "openbao-token",
        "mountPath": "/var/run/secrets/openbao",
        "readOnly": True,
    }
    env = {e["name"]: e.get("value") for e in c["env"]}
    assert {k: v for k, v in env.items() if k.startswith("BAO_")} == {
        "BAO_ADDR": "https://openbao.labstack.svc:8200",
        "BAO_K8S_ROLE": "training-job",
        "BAO_K8S_MOUNT": "kubernetes",
        "BAO_K8S_JWT_PATH": OPENBAO_TOKEN,
        "BAO_SECRET_PATH": "labstack/jobs/workload",
        "BAO_CACERT": CA,
    }
    assert OPENBAO_TOKEN.startswith(mounts["openbao-token"]["mountPath"] + "/")
    assert not [ef for ef in c.get("envFrom", []) if "secretRef" in ef], "no static Secret"
    assert "envFrom" not in c, "no secrets.extra: no envFrom at all"


def test_lab_endpoints_and_internal_ca() -> None:
    pod = _objects("training-openbao")["Job"]["spec"]["template"]["spec"]
    c = pod["containers"][0]
    env = {e["name"]: e.get("value") for e in c["env"]}
    assert env["MLFLOW_TRACKING_URI"] == "https://mlflow.labstack.svc:5000"
    # workload.s3 reads S3_ENDPOINT; MLflow's artifact client MLFLOW_S3_ENDPOINT_URL.
    assert env["S3_ENDPOINT"] == env["MLFLOW_S3_ENDPOINT_URL"] == "https://minio.labstack.svc:9000"
    assert env["BAO_CACERT"] == env["REQUESTS_CA_BUNDLE"] == env["AWS_CA_BUNDLE"] == CA
    volumes = {v["name"]: v for v in pod["volumes"]}
    mounts = {m["mountPath"]: m for m in c["volumeMounts"]}
    ca = mounts["/etc/labstack/ca"]
    assert ca["readOnly"] is True
    assert volumes[ca["name"]]["configMap"] == {
        "name": "labstack-ca",
        "items": [{"key": "ca.crt", "path": "ca.crt"}],
    }
    assert len([e["name"] for e in c["env"]]) == len(env), "no variable set twice"


def test_without_openbao_or_lab_values_none_of_their_variables_is_set() -> None:
    c = _objects("training-single")["Job"]["spec"]["template"]["spec"]["containers"][0]
    names = {e["name"] for e in c["env"]}
    chart_owned = {
        "BAO_ADDR",
        "BAO_K8S_ROLE",
        "BAO_K8S_MOUNT",
        "BAO_K8S_JWT_PATH",
        "BAO_SECRET_PATH",
        "BAO_CACERT",
        "REQUESTS_CA_BUNDLE",
        "AWS_CA_BUNDLE",
        "MLFLOW_TRACKING_URI",
        "S3_ENDPOINT",
        "MLFLOW_S3_ENDPOINT_URL",
    }
    assert not names & chart_owned, "they come from the Secrets (envFrom) here"
    pod = _objects("training-single")["Job"]["spec"]["template"]["spec"]
    assert "serviceAccountName" not in pod
    assert {v["name"] for v in pod["volumes"]} == {"dshm", "tmp", "scratch"}


def test_openbao_keeps_extra_secrets(tmp_path: Path) -> None:
    """secrets.extra (e.g. a Hugging Face token) is used with OpenBao too."""
    job = _render_with(tmp_path, {"secrets": {"extra": ["run-hf-cache"]}}, "training-openbao")
    c = job["spec"]["template"]["spec"]["containers"][0]
    assert [e["secretRef"]["name"] for e in c["envFrom"]] == ["run-hf-cache"]


def test_a_run_id_that_reads_as_a_number_stays_a_string(tmp_path: Path) -> None:
    # MLflow run ids are hex: digits and one "e" read as a float in YAML, and the
    # API server refuses a label that is not a string.
    run_id = "1" * 30 + "e5"
    extra = tmp_path / "run.yaml"
    extra.write_text(f'run: {{id: "{run_id}"}}\n')
    objects = render("training-job", (values_file("training-single"), extra))
    (job,) = (m for m in objects if m["kind"] == "Job")
    assert job["metadata"]["labels"]["labstack.io/mlflow-run-id"] == run_id
    assert job["spec"]["template"]["metadata"]["labels"]["labstack.io/mlflow-run-id"] == run_id
