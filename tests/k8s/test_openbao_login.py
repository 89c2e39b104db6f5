"""Training pods log in to OpenBao with their ServiceAccount token: no static
secret anywhere in the cluster.

The secrets layer configured OpenBao's Kubernetes auth method against the
sandbox's API server, with the `jobs` role bound to the jobs namespace's
ServiceAccount and OpenBao's audience. A pod of the training-job chart, as
`labstack submit --on k8s` renders it, logs in, reads the job credentials
and reaches MLflow with them; the workload's own login does the same with a
token the API server issues. Every other token is refused: another account,
the API server's audience, the same name in another namespace, a forged
signature, a pod's token after the pod is gone.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

import pytest

from tests.inventory import hosts
from tests.kube import apply, kubectl, kubectl_json, pod, training_job
from tests.playbook import SANDBOX_INVENTORY
from tests.services import ca_file, credentials, endpoint, leaked_secrets
from workload.credentials import CredentialError, fetch_from_openbao
from workload.launch.config import load

# What the pod runs instead of the training (printing names, never values).
_PROBE = (Path(__file__).parent / "openbao_probe.py").read_text(encoding="utf-8")


@pytest.fixture(scope="module")
def lab() -> Any:
    """The launcher configuration `make lab` wrote: the jobs namespace and account."""
    config = load(SANDBOX_INVENTORY / ".generated" / "labstack.toml")
    assert config.kubernetes.openbao_role, "make lab wrote no [kubernetes] openbao_role"
    return config


def _finished(namespace: str, name: str, seconds: int = 240) -> dict[str, Any]:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        job = kubectl_json("--namespace", namespace, "get", "job", name)
        if job["status"].get("succeeded") or job["status"].get("failed"):
            return job
        time.sleep(2)
    raise AssertionError(f"Job {namespace}/{name} did not finish in {seconds} s")


def test_a_training_pod_logs_in_with_its_service_account_and_holds_no_secret(lab: Any) -> None:
    namespace = lab.kubernetes.namespace
    name = f"openbao-probe-{int(time.time())}"
    values = {
        "backoffLimit": 0,
        "serviceAccountName": lab.kubernetes.service_account,
        "openbao": {
            "address": lab.jobs.openbao_addr,
            "role": lab.kubernetes.openbao_role,
            "secretPath": lab.jobs.secret_path,
        },
        "lab": {
            "mlflowUri": lab.jobs.mlflow_uri,
            "s3Endpoint": lab.jobs.s3_endpoint,
            "caConfigMap": lab.kubernetes.ca_configmap,
        },
    }
    # The MLflow image: the training image is not in the sandbox cluster.
    image = os.environ["LABSTACK_MLFLOW_IMAGE"]
    manifest = training_job(name, namespace, image, ["python", "-c", _PROBE], values)
    text = json.dumps(manifest)
    assert "secretRef" not in text
    assert "secretKeyRef" not in text
    assert not leaked_secrets(text), "a generated secret is in the rendered manifest"
    kubectl("--namespace", namespace, "apply", "-f", "-", stdin=text)
    try:
        job = _finished(namespace, name)
        selector = f"batch.kubernetes.io/job-name={name}"
        logs = kubectl("--namespace", namespace, "logs", "-l", selector, "--tail=-1").stdout
        assert job["status"].get("succeeded") == 1, logs
        answer = json.loads(logs.strip().splitlines()[-1])
        assert answer["policies"] == ["default", "labstack-jobs"]
        assert answer["keys"] == [
            "AWS_ACCESS_KEY_ID",
            "AWS_SECRET_ACCESS_KEY",
            "LABSTACK_WEBHOOK_URL",
            "MLFLOW_TRACKING_PASSWORD",
            "MLFLOW_TRACKING_USERNAME",
        ]
        assert answer["mlflow"] == 200
        pods = kubectl("--namespace", namespace, "get", "pods", "-l", selector, "-o", "json")
        job_yaml = kubectl("--namespace", namespace, "get", "job", name, "-o", "yaml").stdout
        for what, seen in (("pods", pods.stdout), ("Job", job_yaml), ("logs", logs)):
            assert not leaked_secrets(seen), f"a generated secret is in the {what}"
        (spec,) = [p["spec"] for p in json.loads(pods.stdout)["items"]]
        assert spec["automountServiceAccountToken"] is False
        assert not [v for v in spec["volumes"] if "secret" in v]
    finally:
        kubectl("--namespace", namespace, "delete", "job", name, "--wait=false")


def _token(*args: str) -> str:
    return kubectl("create", "token", *args).stdout.strip()


def _login(tmp_path: Path, token: str) -> dict[str, str]:
    """workload.credentials' login from this machine with TOKEN: what it fetches."""
    path = tmp_path / "token"
    path.write_text(token)
    env = {
        "BAO_ADDR": f"https://{endpoint(hosts('secrets')[0], 8200)}",
        "BAO_CACERT": str(ca_file()),
        "BAO_K8S_ROLE": "jobs",
        "BAO_K8S_JWT_PATH": str(path),
    }
    fetched: dict[str, str] = {}
    fetch_from_openbao(env, fetched)
    return fetched


def test_the_workload_login_takes_only_the_jobs_account_with_openbao_audience(
    lab: Any, namespace: str, tmp_path: Path
) -> None:
    jobs_ns, account = lab.kubernetes.namespace, lab.kubernetes.service_account
    good = _token("--namespace", jobs_ns, account, "--audience", "openbao", "--duration", "10m")
    fetched = _login(tmp_path, good)
    assert fetched["AWS_SECRET_ACCESS_KEY"] == credentials()["minio_jobs_secret_key"]
    assert fetched["MLFLOW_TRACKING_USERNAME"] == "jobs"

    kubectl("--namespace", namespace, "create", "serviceaccount", account)
    header, payload, signature = good.split(".")
    flipped = "AAAA" if signature[:4] != "AAAA" else "BBBB"
    forged = ".".join((header, payload, flipped + signature[4:]))
    refused = {
        "the namespace's default account": _token(
            "--namespace", jobs_ns, "default", "--audience", "openbao"
        ),
        "the API server's audience": _token("--namespace", jobs_ns, account),
        "the same account name in another namespace": _token(
            "--namespace", namespace, account, "--audience", "openbao"
        ),
        "a forged signature": forged,
    }
    accepted = []
    for what, token in refused.items():
        try:
            _login(tmp_path, token)
        except CredentialError:
            continue
        accepted.append(what)
    assert not accepted, f"OpenBao took a token of {accepted}"


def test_a_pod_bound_token_dies_with_its_pod(lab: Any, tmp_path: Path) -> None:
    jobs_ns, account = lab.kubernetes.namespace, lab.kubernetes.service_account
    name = f"bound-{int(time.time())}"
    sleeper = pod(name, ["sleep", "600"])
    sleeper["spec"]["serviceAccountName"] = account
    sleeper["spec"]["automountServiceAccountToken"] = False
    apply(sleeper, jobs_ns)
    try:
        uid = kubectl_json("--namespace", jobs_ns, "get", "pod", name)["metadata"]["uid"]
        token = _token(
            "--namespace", jobs_ns, account, "--audience", "openbao",
            "--bound-object-kind", "Pod", "--bound-object-name", name, "--bound-object-uid", uid,
        )  # fmt: skip
        assert _login(tmp_path, token)["MLFLOW_TRACKING_USERNAME"] == "jobs"
    finally:
        kubectl("--namespace", jobs_ns, "delete", "pod", name, "--wait=true", "--grace-period=0")
    # The API server caches a successful review for a few seconds (10 s).
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            _login(tmp_path, token)
        except CredentialError:
            return
        time.sleep(2)
    pytest.fail("a token bound to a deleted pod still logs in a minute later")


def test_openbao_reviews_tokens_and_may_do_nothing_else() -> None:
    reviewer = "system:serviceaccount:kube-system:openbao-token-reviewer"

    def can(*args: str) -> str:
        return kubectl("auth", "can-i", "--as", reviewer, *args, check=False).stdout.strip()

    assert can("create", "tokenreviews.authentication.k8s.io") == "yes"
    for verb_resource in (
        ("get", "secrets"),
        ("list", "pods"),
        ("create", "serviceaccounts/token"),
    ):
        assert can(*verb_resource, "--all-namespaces") == "no", verb_resource
