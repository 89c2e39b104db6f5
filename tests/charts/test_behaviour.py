"""What the rendered objects do: rollouts, disruption budgets, network policy,
provisioning, exposure, the helm test pod and NOTES."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

import yaml
from conftest import rendered, values_file
from helmtool import Manifest, helm, merged_values, render, template

MINIMAL = values_file("labstack-minimal")


def _by(manifests: list[Manifest], kind: str) -> dict[str, Manifest]:
    return {m["metadata"]["name"]: m for m in manifests if m["kind"] == kind}


def _pod_annotations(manifests: list[Manifest], kind: str, name: str) -> dict[str, str]:
    return _by(manifests, kind)[name]["spec"]["template"]["metadata"].get("annotations") or {}


def _overlay(tmp_path: Path, doc: Mapping[str, object]) -> Path:
    path = tmp_path / "overlay.yaml"
    path.write_text(yaml.safe_dump(doc))
    return path


def test_config_changes_roll_the_pods(tmp_path: Path) -> None:
    base = render("labstack", (MINIMAL,))
    changed = render(
        "labstack",
        (
            MINIMAL,
            _overlay(
                tmp_path,
                {
                    "postgresql": {"config": {"max_connections": "300"}},
                    "mlflow": {"auth": {"defaultPermission": "NO_PERMISSIONS"}},
                    "openbao": {"extraConfig": 'log_level = "debug"'},
                },
            ),
        ),
    )
    for kind, name in [
        ("StatefulSet", "lab-labstack-postgresql"),
        ("Deployment", "lab-labstack-mlflow"),
        ("StatefulSet", "lab-labstack-openbao"),
    ]:
        before = _pod_annotations(base, kind, name)["checksum/config"]
        after = _pod_annotations(changed, kind, name)["checksum/config"]
        assert before != after, f"{kind}/{name} would not roll on a config change"
    # An unrelated change leaves the other checksums alone.
    assert _pod_annotations(base, "StatefulSet", "lab-labstack-minio") == _pod_annotations(
        changed, "StatefulSet", "lab-labstack-minio"
    )


def test_provisioning_is_a_plain_job_renamed_when_its_plan_changes(tmp_path: Path) -> None:
    base = _by(render("labstack", (MINIMAL,)), "Job")
    assert len(base) == 1
    job = next(iter(base.values()))
    annotations = job["metadata"].get("annotations") or {}
    assert not [a for a in annotations if a.startswith("helm.sh/hook")], "must not be a hook"
    more = {
        "minio": {
            "provisioning": {
                "buckets": [
                    {"name": "mlflow"},
                    {"name": "datasets", "versioning": True},
                    {"name": "scratch"},
                ]
            }
        }
    }
    changed = _by(render("labstack", (MINIMAL, _overlay(tmp_path, more))), "Job")
    assert set(changed) != set(base), "a new plan must run as a new Job (pod template is immutable)"
    plan = yaml.safe_load(
        _by(render("labstack", (MINIMAL, _overlay(tmp_path, more))), "ConfigMap")[
            "lab-labstack-minio-provision"
        ]["data"]["plan.json"]
    )
    assert [b["name"] for b in plan["buckets"]] == ["mlflow", "datasets", "scratch"]
    assert plan["users"] == [{"index": 0, "policies": ["mlflow-artifacts"]}]
    policy = plan["policies"][0]["document"]
    assert policy["Statement"][0]["Resource"] == ["arn:aws:s3:::mlflow", "arn:aws:s3:::mlflow/*"]


def test_pdb_only_when_replicas_exceed_one() -> None:
    assert not _by(rendered("labstack", "labstack-minimal"), "PodDisruptionBudget")
    assert set(_by(rendered("labstack", "labstack-production"), "PodDisruptionBudget")) == {
        "lab-labstack-mlflow"
    }
    assert set(_by(rendered("labstack", "labstack-distributed-minio"), "PodDisruptionBudget")) == {
        "lab-labstack-minio"
    }


def test_network_policy_on_by_default_selects_every_component() -> None:
    manifests = rendered("labstack", "labstack-minimal")
    policies = _by(manifests, "NetworkPolicy")
    selected = {
        p["spec"]["podSelector"]["matchLabels"]["app.kubernetes.io/component"]
        for p in policies.values()
    }
    workloads = {
        m["spec"]["template"]["metadata"]["labels"]["app.kubernetes.io/component"]
        for m in manifests
        if m["kind"] in ("Deployment", "StatefulSet", "Job")
    }
    assert workloads == {"minio", "postgresql", "mlflow", "openbao", "minio-provision"}
    assert workloads <= selected
    pg = policies["lab-labstack-postgresql"]["spec"]
    assert pg["policyTypes"] == ["Ingress", "Egress"]
    assert pg["ingress"][0]["ports"] == [{"port": 5432, "protocol": "TCP"}]
    # PostgreSQL is never opened to the extra peers meant for user-facing services.
    prod = _by(rendered("labstack", "labstack-production"), "NetworkPolicy")
    assert len(prod["lab-labstack-postgresql"]["spec"]["ingress"][0]["from"]) == 1
    assert len(prod["lab-labstack-mlflow"]["spec"]["ingress"][0]["from"]) == 3


def test_network_policy_can_be_disabled(tmp_path: Path) -> None:
    off = render("labstack", (MINIMAL, _overlay(tmp_path, {"networkPolicy": {"enabled": False}})))
    assert not _by(off, "NetworkPolicy")


def test_distributed_minio_addresses_every_drive() -> None:
    sts = _by(rendered("labstack", "labstack-distributed-minio"), "StatefulSet")[
        "lab-labstack-minio"
    ]
    assert sts["spec"]["replicas"] == 4
    assert sts["spec"]["podManagementPolicy"] == "Parallel"
    args = sts["spec"]["template"]["spec"]["containers"][0]["args"]
    assert args[-1] == (
        "http://lab-labstack-minio-{0...3}.lab-labstack-minio-hl.ml.svc.cluster.local:9000"
        "/data{0...1}"
    )
    assert [t["metadata"]["name"] for t in sts["spec"]["volumeClaimTemplates"]] == [
        "data-0",
        "data-1",
    ]


def test_mlflow_server_wiring() -> None:
    manifests = rendered("labstack", "labstack-production")
    c = _by(manifests, "Deployment")["lab-labstack-mlflow"]["spec"]["template"]["spec"][
        "containers"
    ][0]
    assert "--serve-artifacts" in c["args"]
    assert "--artifacts-destination=s3://mlflow/" in c["args"]
    assert "--app-name=basic-auth" in c["args"]
    env = {e["name"]: e for e in c["env"]}
    assert env["MLFLOW_BACKEND_STORE_URI"]["value"] == (
        "postgresql+psycopg2://mlflow@lab-labstack-postgresql:5432/mlflow"
    )
    assert env["PGPASSWORD"]["valueFrom"]["secretKeyRef"] == {
        "name": "lab-postgresql",
        "key": "password",
    }
    assert env["MLFLOW_S3_ENDPOINT_URL"]["value"] == "http://lab-labstack-minio:9000"
    assert "mlflow.lab.example" in env["MLFLOW_SERVER_ALLOWED_HOSTS"]["value"].split(",")
    ini = _by(manifests, "ConfigMap")["lab-labstack-mlflow"]["data"]["basic_auth.ini"]
    assert (
        "database_uri = postgresql+psycopg2://mlflow@lab-labstack-postgresql:5432/mlflow_auth"
        in ini
    )
    assert "default_permission = NO_PERMISSIONS" in ini


def test_images_honour_registry_and_digest() -> None:
    manifests = rendered("labstack", "labstack-production")
    image = _by(manifests, "Deployment")["lab-labstack-mlflow"]["spec"]["template"]["spec"][
        "containers"
    ][0]["image"]
    assert image == ("registry.lab.example:5000/labstack/mlflow:3.17.2@sha256:" + "0" * 63 + "2")
    sts = _by(manifests, "StatefulSet")["lab-labstack-minio"]["spec"]["template"]["spec"]
    assert sts["imagePullSecrets"] == [{"name": "lab-registry"}]


def test_ingress_and_httproute_exposure() -> None:
    prod = rendered("labstack", "labstack-production")
    ingresses = _by(prod, "Ingress")
    assert set(ingresses) == {
        "lab-labstack-mlflow",
        "lab-labstack-minio",
        "lab-labstack-minio-console",
    }
    for ing in ingresses.values():
        assert ing["spec"]["tls"][0]["secretName"].endswith("-tls")
    route = _by(prod, "HTTPRoute")["lab-labstack-openbao"]["spec"]
    assert route["parentRefs"][0]["sectionName"] == "https"
    assert route["rules"][0]["backendRefs"] == [{"name": "lab-labstack-openbao", "port": 8200}]
    assert set(_by(prod, "ServiceMonitor")) == {
        "lab-labstack-mlflow",
        "lab-labstack-minio",
        "lab-labstack-openbao",
    }
    assert not _by(rendered("labstack", "labstack-minimal"), "Ingress")
    assert not _by(rendered("labstack", "labstack-minimal"), "ServiceMonitor")


def test_helm_test_pod_logs_and_reads_back_a_run() -> None:
    pod = _by(rendered("labstack", "labstack-minimal"), "Pod")["lab-labstack-test-mlflow-run"]
    assert pod["metadata"]["annotations"]["helm.sh/hook"] == "test"
    c = pod["spec"]["containers"][0]
    env = {e["name"]: e for e in c["env"]}
    assert env["MLFLOW_TRACKING_URI"]["value"] == "http://lab-labstack-mlflow:5000"
    assert env["MLFLOW_TRACKING_PASSWORD"]["valueFrom"]["secretKeyRef"]["name"] == (
        "lab-mlflow-admin"
    )
    script = _by(rendered("labstack", "labstack-minimal"), "ConfigMap")["lab-labstack-test"][
        "data"
    ]["mlflow_smoke.py"]
    assert "log_artifact" in script
    assert "download_artifacts" in script
    skipped = template("labstack", (MINIMAL,), "1.37.0", "--skip-tests")
    assert "helm.sh/hook: test" not in skipped.stdout


def test_notes_name_images_and_endpoints() -> None:
    result = helm(
        "install", "lab", "helm/labstack", "--dry-run=client", "-n", "ml", "-f", str(MINIMAL)
    )
    assert result.returncode == 0, result.stderr
    notes = result.stdout.split("NOTES:", 1)[1]
    for expected in (
        "labstack/minio:v0.0.0-20260212201848-7aac2a2c5b7c",
        "labstack/openbao:2.7.2",
        "labstack/mlflow:3.17.2",
        "http://lab-labstack-mlflow:5000",
        "bao operator init",
        "helm test lab",
    ):
        assert expected in notes, expected
    assert "password" not in notes.lower().replace("admin username and password", "")


def test_default_images_are_the_ones_make_images_builds() -> None:
    """The chart's default tags are those of `make images` (the Makefile's
    exports), so that `helm install` without image values runs them."""
    values = merged_values("labstack", ())
    for component, variable in {
        "minio": "LABSTACK_MINIO_IMAGE",
        "postgresql": "LABSTACK_POSTGRES_IMAGE",
        "mlflow": "LABSTACK_MLFLOW_IMAGE",
        "openbao": "LABSTACK_OPENBAO_IMAGE",
    }.items():
        built = os.environ.get(variable, "")
        assert built, f"{variable} is unset: run the chart tests with `make charts`"
        image = values[component]["image"]
        assert f"{image['repository']}:{image['tag']}" == built, component
