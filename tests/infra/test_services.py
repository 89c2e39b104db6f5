# pyright: reportAttributeAccessIssue=false, reportCallIssue=false
# (testinfra builds its modules, host.service, host.socket ..., at run time)
"""MinIO, PostgreSQL, MLflow, OpenBao, Slurm, Kubernetes and monitoring as
deployed in the sandbox: running, listening only where expected, TLS that
verifies against the lab's CA."""

from __future__ import annotations

import re
import socket
import ssl

import pytest
import requests
from testinfra.host import Host

from tests.inventory import hosts
from tests.services import ca_file, endpoint

# (inventory group, systemd unit, the TCP sockets it listens on, as ss prints them)
SERVICES = [
    # Services listen on the node's address in the lab ({address}), not on
    # every interface. MinIO: S3 API and console; it also reaches itself on
    # loopback.
    ("storage", "minio", {"{address}:9000", "{address}:9001", "127.0.0.1:9000"}),
    ("storage_replica", "minio", {"{address}:9000", "{address}:9001", "127.0.0.1:9000"}),
    ("tracking", "postgresql@15-main", {"127.0.0.1:5432"}),
    ("tracking", "mlflow", {"{address}:5000"}),
    # OpenBao: API, and raft's cluster port (opened once unsealed).
    ("secrets", "openbao", {"{address}:8200", "{address}:8201"}),
    # Slurm: the daemons talk among the nodes; MariaDB serves slurmdbd alone.
    ("slurm_controller", "slurmctld", {"0.0.0.0:6817"}),
    ("slurm_dbd", "slurmdbd", {"0.0.0.0:6819"}),
    ("slurm_dbd", "mariadb", {"127.0.0.1:3306"}),
    ("slurm_compute", "slurmd", {"0.0.0.0:6818"}),
    # Kubernetes: etcd serves the API server on loopback and its peers on the
    # node's address ({address}); the control plane's other daemons only
    # answer health checks, on loopback. Workers: the kubelet's API on every
    # address, its health, kube-proxy's and containerd's streams on loopback.
    (
        "kube_control_plane",
        "etcd",
        {"127.0.0.1:2379", "{address}:2379", "{address}:2380", "127.0.0.1:2381"},
    ),
    ("kube_control_plane", "kube-apiserver", {"*:6443"}),
    ("kube_control_plane", "kube-controller-manager", {"127.0.0.1:10257"}),
    ("kube_control_plane", "kube-scheduler", {"127.0.0.1:10259"}),
    ("kube_node", "kubelet", {"*:10250", "127.0.0.1:10248"}),
    ("kube_node", "kube-proxy", {"127.0.0.1:10249", "127.0.0.1:10256"}),
    ("kube_node", "containerd", {"127.0.0.1:10010"}),
    # Monitoring: every node's exporter, PostgreSQL's beside it; Prometheus
    # and Alertmanager (no gossip port: one Alertmanager).
    ("all", "prometheus-node-exporter", {"{address}:9100"}),
    ("tracking", "prometheus-postgres-exporter", {"{address}:9187"}),
    ("monitoring", "prometheus", {"{address}:9090"}),
    ("monitoring", "prometheus-alertmanager", {"{address}:9093"}),
]
# (host group, container port, health path, expected body or None)
HEALTH = [
    ("storage", 9000, "/minio/health/live", None),
    ("storage", 9000, "/minio/health/cluster", None),
    ("storage_replica", 9000, "/minio/health/live", None),
    ("tracking", 5000, "/health", "OK"),
    ("secrets", 8200, "/v1/sys/health", None),
]


def _expected(node: Host, sockets: set[str]) -> set[str]:
    """SOCKETS of NODE, {address} its address in the lab: the one its name
    resolves to on the nodes (/etc/hosts, which the common role writes)."""
    name = node.check_output("hostname")
    address = node.check_output("getent hosts %s", name).split()[0]
    return {entry.replace("{address}", address) for entry in sockets}


def _listening(node: Host) -> set[str]:
    """Local addresses of every listening TCP socket, but Docker's embedded DNS."""
    lines = node.check_output("ss -Hltn").splitlines()
    return {line.split()[3] for line in lines if not line.split()[3].startswith("127.0.0.11:")}


@pytest.mark.parametrize(("group", "unit", "sockets"), SERVICES, ids=[s[1] for s in SERVICES])
def test_service_is_active_and_enabled(
    nodes: dict[str, Host], group: str, unit: str, sockets: set[str]
) -> None:
    for name in hosts(group):
        service = nodes[name].service(unit)
        assert service.is_running, f"{unit} on {name}"
        assert service.is_enabled, f"{unit} on {name}"
        assert _expected(nodes[name], sockets) <= _listening(nodes[name]), f"{unit} on {name}"


def test_nodes_listen_only_where_their_services_should(node: Host) -> None:
    """Every listening socket of a node belongs to one of its services, and no other."""
    name = node.check_output("hostname")
    expected: set[str] = set()
    for group, _, sockets in SERVICES:
        if name in hosts(group):
            expected |= _expected(node, sockets)
    assert _listening(node) == expected, name


def test_postgres_is_not_reachable_from_another_node(nodes: dict[str, Host]) -> None:
    head, other = hosts("tracking")[0], hosts("storage")[0]
    probe = nodes[other].run(
        f"timeout 5 bash -c 'exec 3<>/dev/tcp/{head}/5432' && echo open || echo closed"
    )
    assert probe.stdout.strip() == "closed"


@pytest.mark.parametrize(
    ("group", "port"),
    [
        ("storage", 9000),
        ("storage", 9001),
        ("storage_replica", 9000),
        ("tracking", 5000),
        ("secrets", 8200),
    ],
)
def test_tls_verifies_against_the_lab_ca(group: str, port: int) -> None:
    host, published = endpoint(hosts(group)[0], port).split(":")
    context = ssl.create_default_context(cafile=str(ca_file()))
    with (
        socket.create_connection((host, int(published)), timeout=10) as raw,
        context.wrap_socket(raw, server_hostname=host) as tls,
    ):
        certificate = tls.getpeercert()
    assert certificate is not None
    issuer = [entry for rdn in certificate["issuer"] for entry in rdn]
    assert ("commonName", "labstack internal CA") in issuer
    # and a client that does not trust the lab's CA refuses it
    strict = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    strict.load_default_certs()
    with (
        socket.create_connection((host, int(published)), timeout=10) as raw,
        pytest.raises(ssl.SSLCertVerificationError),
    ):
        strict.wrap_socket(raw, server_hostname=host)


def test_nodes_reach_each_other_by_name_over_verified_tls(nodes: dict[str, Host]) -> None:
    """The CA is in every node's trust store: curl verifies the services by host name."""
    storage, head = hosts("storage")[0], hosts("tracking")[0]
    for name, node in nodes.items():
        for url in (
            f"https://{storage}:9000/minio/health/live",
            f"https://{head}:5000/health",
            f"https://{head}:8200/v1/sys/health",
        ):
            assert node.run(f"curl -sf -o /dev/null {url}").rc == 0, f"{url} from {name}"


@pytest.mark.parametrize(("group", "port", "path", "body"), HEALTH, ids=[h[2] for h in HEALTH])
def test_health_endpoints(group: str, port: int, path: str, body: str | None) -> None:
    answer = requests.get(
        f"https://{endpoint(hosts(group)[0], port)}{path}", verify=str(ca_file()), timeout=30
    )
    assert answer.status_code == 200, answer.text
    if body is not None:
        assert answer.text.strip() == body


def test_postgres_requires_scram(nodes: dict[str, Host]) -> None:
    head = nodes[hosts("tracking")[0]]
    hba = head.file("/etc/postgresql/15/main/pg_hba.conf").content_string
    methods = {line.split()[-1] for line in hba.splitlines() if re.match(r"^host", line)}
    assert methods == {"scram-sha-256"}
    encryption = head.check_output("runuser -u postgres -- psql -tAc 'show password_encryption'")
    assert encryption == "scram-sha-256"
