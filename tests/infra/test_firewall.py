# pyright: reportAttributeAccessIssue=false, reportCallIssue=false
# (testinfra builds its modules, host.service ..., at run time)
"""The host firewall: a node lets in only what the layers declared. The
attacks come from other nodes of the lab: a port no layer declared (a
listener started for the test), and the daemons only some groups may reach
(exporters, Slurm's daemons, etcd, the kubelet, Alertmanager), tried from a
node outside those groups and from one inside."""

from __future__ import annotations

import time

import pytest
from testinfra.host import Host

from tests.inventory import hosts

# Connects to HOST:PORT and names the outcome: open, refused (nothing
# listens), firewalled (ICMP admin-prohibited: EHOSTUNREACH) or timeout.
_PROBE = """
import errno, socket, sys
try:
    socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=5).close()
    print("open")
except ConnectionRefusedError:
    print("refused")
except socket.timeout:
    print("timeout")
except OSError as error:
    print("firewalled" if error.errno == errno.EHOSTUNREACH else f"error {error}")
"""


def _probe(source: Host, target: str, port: int) -> str:
    return source.check_output("python3 -c %s %s %s", _PROBE, target, str(port)).strip()


def _first(group: str) -> str:
    return hosts(group)[0]


def test_a_port_no_layer_declared_is_closed_to_the_other_nodes(nodes: dict[str, Host]) -> None:
    storage = _first("storage")
    listener = "labstack-test-undeclared"
    nodes[storage].check_output(
        f"systemd-run --unit={listener} python3 -m http.server --bind 0.0.0.0 18765"
    )
    try:
        # It listens, and answers on the node itself, by its name too.
        deadline = time.monotonic() + 10
        while _probe(nodes[storage], "127.0.0.1", 18765) != "open":
            assert time.monotonic() < deadline, "the test's listener did not start"
            time.sleep(0.2)
        assert _probe(nodes[storage], storage, 18765) == "open"
        for source in (_first("slurm_compute"), _first("monitoring"), _first("kube_node")):
            assert _probe(nodes[source], storage, 18765) == "firewalled", source
    finally:
        nodes[storage].run(f"systemctl stop {listener}")


# (serving group, port, a group let in, a group kept out)
DAEMONS = [
    ("storage", 9100, "monitoring", "slurm_compute"),  # node exporter
    ("slurm_compute", 9100, "monitoring", "kube_node"),
    ("slurm_controller", 6817, "slurm_compute", "storage"),  # slurmctld
    ("slurm_compute", 6818, "slurm_controller", "kube_node"),  # slurmd
    ("slurm_dbd", 6819, "slurm_controller", "slurm_compute"),  # slurmdbd
    ("kube_control_plane", 2379, "kube_control_plane", "kube_node"),  # etcd
    ("kube_control_plane", 2380, "kube_control_plane", "slurm_compute"),
    ("kube_node", 10250, "kube_control_plane", "slurm_compute"),  # kubelet
    ("kube_node", 10250, "monitoring", "storage"),
    ("tracking", 9187, "monitoring", "kube_node"),  # PostgreSQL's exporter
    ("monitoring", 9093, "monitoring", "storage"),  # Alertmanager
]


@pytest.mark.parametrize(("group", "port", "allowed", "denied"), DAEMONS)
def test_daemons_among_the_nodes_let_in_only_their_groups(
    nodes: dict[str, Host], group: str, port: int, allowed: str, denied: str
) -> None:
    target = _first(group)
    # The first node of the allowed group other than the target, if any: the
    # target itself (loopback) proves only that the daemon listens.
    inside = next((h for h in hosts(allowed) if h != target), target)
    outside = next(h for h in hosts(denied) if h not in hosts(allowed) and h != target)
    assert _probe(nodes[inside], target, port) == "open", (inside, target, port)
    assert _probe(nodes[outside], target, port) == "firewalled", (outside, target, port)


# (serving group, port): what the lab's people and jobs use, open to every node.
SERVICES = [
    ("storage", 9000),
    ("storage", 9001),
    ("tracking", 5000),
    ("secrets", 8200),
    ("kube_control_plane", 6443),
    ("monitoring", 9090),
]


@pytest.mark.parametrize(("group", "port"), SERVICES)
def test_the_labs_services_are_open_to_every_node(
    nodes: dict[str, Host], group: str, port: int
) -> None:
    target = _first(group)
    for source in hosts():
        if source != target:
            assert _probe(nodes[source], target, port) == "open", (source, target, port)


def test_reloading_the_firewall_leaves_kubernetes_rules_alone(nodes: dict[str, Host]) -> None:
    """The unit replaces only its own table: kube-proxy's and the CNI
    plugins' rules on a worker outlive its restart."""
    worker = nodes[_first("kube_node")]

    def tables() -> set[str]:
        return set(worker.check_output("nft list tables").splitlines())

    before = tables()
    assert "table inet labstack" in before
    assert len(before) > 1, before
    rules = worker.check_output("iptables-save | grep -c KUBE-")
    worker.check_output("systemctl restart labstack-firewall")
    assert tables() == before
    assert worker.check_output("iptables-save | grep -c KUBE-") == rules
    assert worker.service("labstack-firewall").is_enabled
