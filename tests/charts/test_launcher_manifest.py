"""`labstack render --on k8s`: the launcher's values through the real training-job chart.

The launcher fills the chart's values (image, run id, training arguments,
nodes and GPUs, the Secrets' names) and `helm template` renders them; the
chart's strict schema refuses a value the launcher gets wrong.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import yaml
from helmtool import CHARTS, helm_bin

from workload.credentials import SECRET_ENV_VARS
from workload.launch import k8s, spec
from workload.launch.config import LabConfig, load

RUN_ID = "0123456789abcdef0123456789abcdef"


@pytest.fixture
def config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> LabConfig:
    monkeypatch.setenv("LABSTACK_HELM_BIN", helm_bin())
    path = tmp_path / "labstack.toml"
    path.write_text(
        f"""
[client]
mlflow_uri = "https://127.0.0.1:5000"
openbao_addr = "https://127.0.0.1:8200"
[jobs]
mlflow_uri = "https://mlflow.lab.svc:5000"
openbao_addr = "https://openbao.lab.svc:8200"
s3_endpoint = "https://minio.lab.svc:9000"
[kubernetes]
chart = "{CHARTS / "training-job"}"
namespace = "lab"
image = "labstack/training:0.1.0-0123456789ab"
"""
    )
    return load(path)


def _render(config: LabConfig, resources: spec.Resources, argv: list[str]) -> dict[str, dict]:
    values = k8s.values(config, resources, RUN_ID, "shapes", "c0ffee" * 6 + "c0ff", argv)
    manifest = k8s.render(config, "shapes-0123456789ab", values)
    return {o["kind"]: o for o in yaml.safe_load_all(manifest) if o}


def test_two_nodes_of_four_gpus(config: LabConfig) -> None:
    argv = spec.train_argv({"max_steps": "100", "lr": "0.003"})
    objects = _render(config, spec.Resources(nodes=2, gpus=4, cpus=8, memory="64G"), argv)
    assert set(objects) == {"Job", "Service"}, "a headless Service for the rendezvous"
    job = objects["Job"]
    assert job["spec"]["completions"] == job["spec"]["parallelism"] == 2
    container = job["spec"]["template"]["spec"]["containers"][0]
    assert container["image"] == "labstack/training:0.1.0-0123456789ab"
    assert container["command"] == ["python", "-m", "workload.torchrun"]
    assert "--nproc-per-node=4" in container["args"]
    assert container["args"][-4:] == ["--max-steps", "100", "--lr", "0.003"]
    assert container["resources"]["limits"]["nvidia.com/gpu"] == 4
    assert container["resources"]["requests"]["cpu"] == "32"
    assert container["resources"]["limits"]["memory"] == "64Gi"
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert env["MLFLOW_RUN_ID"] == RUN_ID
    assert env["S3_ENDPOINT"] == "https://minio.lab.svc:9000"
    assert env["LABSTACK_GIT_COMMIT"] == "c0ffee" * 6 + "c0ff"
    # Credentials only by reference to the lab's Secrets, never as values.
    assert not set(env) & SECRET_ENV_VARS
    refs = [e["secretRef"]["name"] for e in container["envFrom"]]
    assert refs == ["labstack-job-mlflow", "labstack-job-s3"]


def test_one_cpu_pod(config: LabConfig) -> None:
    objects = _render(config, spec.Resources(), spec.train_argv({"device": "cpu"}))
    assert set(objects) == {"Job"}
    container = objects["Job"]["spec"]["template"]["spec"]["containers"][0]
    assert container["command"] == ["python", "-m", "workload.train"]
    # The dataset cache's node-local level is the pod's scratch emptyDir.
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert env["DATA_EPHEMERAL_PATH"] == "/scratch"
    mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
    volumes = {v["name"]: v for v in objects["Job"]["spec"]["template"]["spec"]["volumes"]}
    assert "emptyDir" in volumes[mounts["/scratch"]]
    assert "DATA_PATH" not in env, "no shared cache unless [kubernetes] names one"
    assert container["args"] == ["--device", "cpu"]
    assert "nvidia.com/gpu" not in container["resources"].get("limits", {})


def test_the_shared_dataset_cache_comes_from_the_lab_config(config: LabConfig) -> None:
    k8s_config = dataclasses.replace(
        config.kubernetes, data_cache_host_path="/shared/labstack/datasets"
    )
    objects = _render(dataclasses.replace(config, kubernetes=k8s_config), spec.Resources(), [])
    pod = objects["Job"]["spec"]["template"]["spec"]
    env = {e["name"]: e.get("value") for e in pod["containers"][0]["env"]}
    assert env["DATA_PATH"] == "/datasets"
    hostpaths = [v["hostPath"]["path"] for v in pod["volumes"] if "hostPath" in v]
    assert hostpaths == ["/shared/labstack/datasets"]


@pytest.mark.parametrize("image", ["labstack/training", "registry:5000/training", "x:"])
def test_an_image_without_a_tag_is_refused(config: LabConfig, image: str) -> None:
    untagged = dataclasses.replace(
        config, kubernetes=dataclasses.replace(config.kubernetes, image=image)
    )
    with pytest.raises(spec.SpecError, match=r"\[kubernetes\] image = .*REPOSITORY:TAG"):
        _render(untagged, spec.Resources(), [])


def test_a_fraction_of_a_cpu_is_requested_in_millicores(config: LabConfig) -> None:
    objects = _render(config, spec.Resources(cpus=0.5), [])
    container = objects["Job"]["spec"]["template"]["spec"]["containers"][0]
    assert container["resources"]["requests"]["cpu"] == "500m"


def test_node_selector_pins_the_pods(config: LabConfig) -> None:
    selector = ["labstack.io/training-image=true", "zone=a"]
    pinned = dataclasses.replace(
        config, kubernetes=dataclasses.replace(config.kubernetes, node_selector=selector)
    )
    pod = _render(pinned, spec.Resources(), [])["Job"]["spec"]["template"]["spec"]
    # Beside the chart's own (nvidia.com/gpu.present).
    assert {"labstack.io/training-image": "true", "zone": "a"}.items() <= pod[
        "nodeSelector"
    ].items()


@pytest.mark.parametrize(
    "entry", ["no-equals", "=v", "bad key=v", "k=v w", "-k=v", "k=" + "v" * 64]
)
def test_a_bad_node_selector_is_refused(config: LabConfig, entry: str) -> None:
    bad = dataclasses.replace(
        config, kubernetes=dataclasses.replace(config.kubernetes, node_selector=[entry])
    )
    with pytest.raises(spec.SpecError, match=rf"node_selector entry {entry!r}: KEY=VALUE"):
        _render(bad, spec.Resources(), [])
