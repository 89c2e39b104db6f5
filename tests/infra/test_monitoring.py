"""The monitoring layer: Prometheus collects every node and service behind
TLS and a login, the exporters answer Prometheus only, the alert rules pass
their tests, and a node that stops answering reaches the lab's webhook
through Alertmanager, then resolves."""

from __future__ import annotations

import contextlib
import json
import queue
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from cryptography import x509
from testinfra.host import Host

from tests.inventory import container, hosts
from tests.playbook import load_filter_plugin
from tests.services import ca_file, credentials, endpoint, leaked_secrets, webhook_receiver

labstack_minio_metrics_token = load_filter_plugin("monitoring").labstack_minio_metrics_token
_RULE_TESTS = Path(__file__).with_name("monitoring_rules_test.yml")
_JOBS = {
    "node",
    "alertmanager",
    "minio",
    "minio-node",
    "minio-bucket",
    "openbao",
    "postgres",
    "kube-apiserver",
    "kubelet",
}


def _monitoring() -> str:
    return hosts("monitoring")[0]


def _prometheus(path: str, **params: str) -> requests.Response:
    return requests.get(
        f"https://{endpoint(_monitoring(), 9090)}{path}",
        params=params,
        auth=("admin", credentials()["prometheus_admin_password"]),
        verify=str(ca_file()),
        timeout=10,
    )


def _targets() -> list[dict]:
    answer = _prometheus("/api/v1/targets", state="active")
    answer.raise_for_status()
    return answer.json()["data"]["activeTargets"]


def _replica_links() -> set[tuple[str, str, str]]:
    found = _query("minio_node_replication_link_online")
    return {(r["metric"]["instance"], r["metric"]["endpoint"], r["value"][1]) for r in found}


def test_every_node_and_service_is_collected_and_up() -> None:
    deadline = time.monotonic() + 90  # a scrape interval after a restart
    while down := [(t["scrapeUrl"], t["lastError"]) for t in _targets() if t["health"] != "up"]:
        assert time.monotonic() < deadline, f"targets not up: {down}"
        time.sleep(5)
    targets = _targets()
    assert {t["scrapePool"] for t in targets} == _JOBS
    nodes = {t["labels"]["instance"] for t in targets if t["scrapePool"] == "node"}
    assert nodes == {f"{host}:9100" for host in hosts()}
    # Every service's own metrics arrive, not just an answer.
    for query in (
        "vault_core_unsealed",
        "minio_cluster_health_status",
        "node_uname_info",
        "apiserver_request_total",
        "kubelet_running_pods",
    ):
        assert _query(query), f"{query}: no samples"
    # Both MinIO deployments, the lab's and the replica, report their drives.
    drives = _query("minio_cluster_drive_online_total")
    first = [hosts("storage")[0], hosts("storage_replica")[0]]
    assert {r["metric"]["instance"] for r in drives} == {f"{host}:9000" for host in first}
    # Each MinIO node reaches the replica (MinIO reports its link a minute or
    # so after it starts).
    replica = f"{hosts('storage_replica')[0]}:9000"
    expected = {(f"{host}:9000", replica, "1") for host in hosts("storage")}
    while (links := _replica_links()) != expected:
        assert time.monotonic() < deadline + 120, f"MinIO's links to the replica: {links}"
        time.sleep(5)
    # MLflow's health and request counts, from the tracking hosts' textfile,
    # read every mlflow_metrics_interval. A restarted MLflow (an earlier
    # test's) has counted nothing yet: a request of ours is counted.
    tracking = {f"{host}:9100" for host in hosts("tracking")}
    while (read := _mlflow_read()) != tracking:
        assert time.monotonic() < deadline + 300, f"MLflow's metrics read on {read}, not {tracking}"
        time.sleep(5)
    # PostgreSQL's exporter reaches the server (its monitoring login works).
    assert [r["value"][1] for r in _query("pg_up")] == ["1"] * len(hosts("tracking"))
    # Slurm's node states, from the controller's textfile.
    states = _query("labstack_slurm_node_state == 1")
    assert {r["metric"]["node"] for r in states} == set(hosts("slurm_compute"))
    # Every node's certificates, from its textfile: the lab CA's on each, and
    # when it ends.
    path = "/usr/local/share/ca-certificates/labstack-ca.crt"
    ca = _query(f'labstack_certificate_expiry_seconds{{path="{path}"}}')
    assert {r["metric"]["instance"] for r in ca} == nodes
    end = x509.load_pem_x509_certificate(ca_file().read_bytes()).not_valid_after_utc
    assert {float(r["value"][1]) for r in ca} == {end.timestamp()}


def _mlflow_read() -> set[str]:
    """The tracking hosts whose textfile says MLflow answers and has counted
    requests, after a request to each (refused while one restarts)."""
    for host in hosts("tracking"):
        with contextlib.suppress(requests.ConnectionError):
            requests.get(
                f"https://{endpoint(host, 5000)}/api/2.0/mlflow/experiments/get",
                params={"experiment_id": "0"},
                auth=("jobs", credentials()["mlflow_jobs_password"]),
                verify=str(ca_file()),
                timeout=10,
            )
    up = _query("labstack_mlflow_up == 1")
    counted = _query("sum by (instance) (mlflow_http_request_total)")
    return {r["metric"]["instance"] for r in up} & {r["metric"]["instance"] for r in counted}


def _query(query: str) -> list[dict]:
    answer = _prometheus("/api/v1/query", query=query)
    answer.raise_for_status()
    return answer.json()["data"]["result"]


def test_prometheus_refuses_a_stranger_and_a_wrong_password() -> None:
    url = f"https://{endpoint(_monitoring(), 9090)}/api/v1/targets"
    for auth in (None, ("admin", "not-the-password"), ("prometheus", "x")):
        answer = requests.get(url, auth=auth, verify=str(ca_file()), timeout=10)
        assert answer.status_code == 401, (auth and auth[0], answer.status_code)
    # TLS only: plain HTTP is turned away (Go's "HTTP request to an HTTPS server").
    plain = requests.get(url.replace("https://", "http://"), timeout=10)
    assert plain.status_code == 400
    assert "HTTPS" in plain.text


# URL [CERT KEY [CA]]: "answered" or "refused" and why, from a node.
_FETCH = """
import ssl, sys, urllib.request
context = ssl.create_default_context(cafile=sys.argv[4] if len(sys.argv) > 4 else None)
if len(sys.argv) > 2:
    context.load_cert_chain(sys.argv[2], sys.argv[3])
try:
    urllib.request.urlopen(sys.argv[1], context=context, timeout=10)
    print("answered")
except Exception as error:
    print("refused", type(error).__name__, error)
"""


def _fetch(node: Host, url: str, *cert_key_ca: str) -> str:
    args = [url, *cert_key_ca]
    return node.check_output("python3 -c %s" + " %s" * len(args), _FETCH, *args).strip()


@pytest.mark.parametrize("exporter", ["gpu1:9100", "head:9187", "head:9093"])
def test_exporters_answer_prometheus_only(nodes: dict[str, Host], exporter: str) -> None:
    """The attack: a node's metrics (PostgreSQL's, Alertmanager's API) fetched without a
    client certificate, and with another service's certificate of the lab CA
    (MLflow's); only Prometheus's certificate of the monitoring CA is let in."""
    head = nodes[_monitoring()]
    url = f"https://{exporter}/metrics"
    mlflow = ("/etc/mlflow/mlflow.crt", "/etc/mlflow/mlflow.key")
    for cert_and_key in ((), mlflow):
        assert _fetch(head, url, *cert_and_key).startswith("refused SSLError"), cert_and_key
    scrape = ("/etc/prometheus/web/scrape.crt", "/etc/prometheus/web/scrape.key")
    assert _fetch(head, url, *scrape) == "answered"


def test_the_kubernetes_login_of_prometheus_reads_metrics_only(nodes: dict[str, Host]) -> None:
    """The attack: with Prometheus's Kubernetes certificate, read the cluster's
    secrets, list its pods, and reach a kubelet's pods and its proxy to the
    containers (exec, logs): all refused; its metrics are read."""
    head = nodes[_monitoring()]
    login = ("/etc/prometheus/web/kubernetes.crt", "/etc/prometheus/web/kubernetes.key")
    api = f"https://{hosts('kube_control_plane')[0]}:6443"
    kubelet = f"https://{hosts('kube_node')[0]}:10250"
    ca = "/etc/prometheus/web/kubernetes-ca.crt"
    for url in (f"{api}/metrics", f"{kubelet}/metrics"):
        assert _fetch(head, url, *login, ca) == "answered", url
    for url in (
        f"{api}/api/v1/secrets",
        f"{api}/api/v1/pods",
        f"{api}/api/v1/nodes/{hosts('kube_node')[0]}/proxy/pods",
        f"{kubelet}/pods",
        f"{kubelet}/runningpods/",
    ):
        assert _fetch(head, url, *login, ca).startswith("refused HTTPError HTTP Error 403"), url


def test_minio_metrics_need_the_prometheus_users_token() -> None:
    """MinIO's metrics with no token, a token signed with a guessed key, and a
    valid token of a user without admin:Prometheus (jobs): all refused."""
    url = f"https://{endpoint(hosts('storage')[0], 9000)}/minio/v2/metrics/cluster"

    def fetch(token: str | None) -> int:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return requests.get(url, headers=headers, verify=str(ca_file()), timeout=10).status_code

    secrets = credentials()
    assert fetch(None) in (401, 403)
    assert fetch(labstack_minio_metrics_token("guessed" * 6, "prometheus")) in (401, 403)
    assert fetch(labstack_minio_metrics_token(secrets["minio_jobs_secret_key"], "jobs")) == 403
    token = labstack_minio_metrics_token(secrets["minio_prometheus_secret_key"], "prometheus")
    assert fetch(token) == 200


def test_the_deployed_alert_rules_pass_their_tests() -> None:
    tested = subprocess.run(
        [
            "docker",
            "exec",
            "-i",
            container(_monitoring()),
            "promtool",
            "test",
            "rules",
            "/dev/stdin",
        ],
        input=_RULE_TESTS.read_text(),
        capture_output=True,
        text=True,
        check=False,
    )
    assert tested.returncode == 0, tested.stdout + tested.stderr
    assert "SUCCESS" in tested.stdout


@pytest.fixture
def webhook() -> Iterator[queue.Queue[dict]]:
    with webhook_receiver() as received:
        yield received


def _message_about(received: queue.Queue[dict], status: str, instance: str, timeout: int) -> str:
    """The text of the first message with STATUS ([FIRING] or [RESOLVED]) of
    NodeDown on INSTANCE within TIMEOUT seconds."""
    deadline = time.monotonic() + timeout
    while (left := deadline - time.monotonic()) > 0:
        try:
            message = received.get(timeout=left)
        except queue.Empty:
            break
        text = json.dumps(message)
        if status in text and "NodeDown" in text and instance in text:
            return text
    raise AssertionError(f"no {status} NodeDown for {instance} within {timeout} s")


def test_a_node_that_stops_answering_is_alerted_and_resolved(
    nodes: dict[str, Host], webhook: queue.Queue[dict]
) -> None:
    """NodeDown fires after its minute; the rule's `for`, a scrape and
    Alertmanager's group_wait bound when the webhook hears it."""
    node = nodes["gpu2"]
    node.check_output("systemctl stop prometheus-node-exporter")
    try:
        fired = _message_about(webhook, "[FIRING", "gpu2:9100", timeout=180)
    finally:
        node.check_output("systemctl start prometheus-node-exporter")
    assert not leaked_secrets(fired)
    _message_about(webhook, "[RESOLVED", "gpu2:9100", timeout=180)
