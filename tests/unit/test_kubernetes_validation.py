"""The Kubernetes layer's inventory checks (filter_plugins/kubernetes.py).

Pure functions, exact messages: each names the variable and the host at
fault. tests/unit/test_inventory_validation.py runs them through site.yml.
"""

from __future__ import annotations

import pytest

from tests.playbook import load_filter_plugin

kubernetes = load_filter_plugin("kubernetes")

POD = "10.214.0.0/16"
SERVICE = "10.215.0.0/16"
NODES = {"kube-gpu1": "10.214.1.0/24", "kube-gpu2": "10.214.2.0/24"}
# As the sandbox inventory has them: container names are no addresses.
ADDRESSES = {
    "ansible_host": {"head": "labstack-head", "kube-gpu1": "labstack-kube-gpu1"},
    "sandbox_ipv4_address": {"kube-cp": "172.30.0.10", "kube-gpu1": "172.30.0.21"},
}

UNSUPPORTED = (
    "is not supported: labstack runs v1.34.x (>= 1.34.0, < 1.35.0), since v1.35 and later "
    "refuse to run kubelet on cgroup v1 unless configured otherwise, and labstack's nodes "
    "and the sandbox are tested on v1.34"
)


def test_the_sandbox_settings_have_no_error() -> None:
    errors = kubernetes.kubernetes_config_errors(
        "v1.34.4", POD, SERVICE, ["kube-cp"], NODES, ADDRESSES
    )
    assert errors == []


@pytest.mark.parametrize("version", ["v1.34.0", "v1.34.4", "v1.34.17"])
def test_every_v1_34_release_is_supported(version: str) -> None:
    assert kubernetes.version_errors(version) == []


@pytest.mark.parametrize(
    ("version", "message"),
    [
        ("v1.35.0", f"kubernetes_version v1.35.0 {UNSUPPORTED}"),
        ("v1.33.9", f"kubernetes_version v1.33.9 {UNSUPPORTED}"),
        ("v2.0.0", f"kubernetes_version v2.0.0 {UNSUPPORTED}"),
        (
            "1.34.4",
            "kubernetes_version '1.34.4' is malformed: expected vMAJOR.MINOR.PATCH, e.g. v1.34.4",
        ),
        (
            "v1.34",
            "kubernetes_version 'v1.34' is malformed: expected vMAJOR.MINOR.PATCH, e.g. v1.34.4",
        ),
        (
            "v1.34.4-rc.1",
            "kubernetes_version 'v1.34.4-rc.1' is malformed: expected vMAJOR.MINOR.PATCH, "
            "e.g. v1.34.4",
        ),
        (
            "",
            "kubernetes_version is empty: it comes from versions.env through `make` "
            "(env LABSTACK_KUBERNETES_VERSION); outside `make`, export that or set "
            "kubernetes_version in the inventory (e.g. v1.34.4)",
        ),
        (
            None,
            "kubernetes_version is empty: it comes from versions.env through `make` "
            "(env LABSTACK_KUBERNETES_VERSION); outside `make`, export that or set "
            "kubernetes_version in the inventory (e.g. v1.34.4)",
        ),
    ],
    ids=["v1.35", "v1.33", "v2", "no-v", "no-patch", "pre-release", "empty", "none"],
)
def test_a_version_outside_v1_34_is_refused(version: str | None, message: str) -> None:
    assert kubernetes.version_errors(version) == [message]


@pytest.mark.parametrize(
    ("pod", "service", "message"),
    [
        (
            POD,
            "10.214.128.0/17",
            "kubernetes_pod_cidr 10.214.0.0/16 and kubernetes_service_cidr 10.214.128.0/17 "
            "overlap (10.214.128.0/17): Pod and Service addresses must come from separate ranges",
        ),
        (
            "10.0.0.0/8",
            SERVICE,
            "kubernetes_pod_cidr 10.0.0.0/8 and kubernetes_service_cidr 10.215.0.0/16 "
            "overlap (10.215.0.0/16): Pod and Service addresses must come from separate ranges",
        ),
        (
            "10.214.0.1/16",
            SERVICE,
            "kubernetes_pod_cidr '10.214.0.1/16' is not a valid IPv4 network (10.214.0.1/16 "
            "has host bits set): expected ADDRESS/PREFIX with no host bits set, "
            "e.g. 10.214.0.0/16",
        ),
        (
            POD,
            "10.300.0.0/16",
            "kubernetes_service_cidr '10.300.0.0/16' is not a valid IPv4 network "
            "('10.300.0.0/16' does not appear to be an IPv4 or IPv6 network): expected "
            "ADDRESS/PREFIX with no host bits set, e.g. 10.214.0.0/16",
        ),
        (
            "fd00:214::/48",
            SERVICE,
            "kubernetes_pod_cidr fd00:214::/48 is IPv6: labstack's Kubernetes networks are IPv4",
        ),
        (
            POD,
            "10.215.0.0",
            "kubernetes_service_cidr '10.215.0.0' has no prefix length: expected ADDRESS/PREFIX, "
            "e.g. 10.214.0.0/16",
        ),
        (
            "",
            SERVICE,
            "kubernetes_pod_cidr is not set: it must be an IPv4 network, e.g. 10.214.0.0/16",
        ),
    ],
    ids=[
        "service-in-pod",
        "pod-holds-service",
        "host-bits",
        "bad-octet",
        "ipv6",
        "no-prefix",
        "unset",
    ],
)
def test_a_wrong_cluster_network_is_named(pod: str, service: str, message: str) -> None:
    assert kubernetes.network_errors(pod, service, ADDRESSES) == [message]


def test_a_cluster_network_over_a_host_address_names_the_host() -> None:
    addresses = {
        "ansible_host": {"svc1": "10.214.0.10", "store1": "10.10.0.11", "gpu1": "gpu1.lab"},
        "sandbox_ipv4_address": {"kube-cp": "10.215.3.4"},
    }
    assert kubernetes.network_errors(POD, SERVICE, addresses) == [
        "kubernetes_pod_cidr 10.214.0.0/16 contains 10.214.0.10, the ansible_host of host svc1: "
        "the cluster's networks must not overlap the lab's host addresses",
        "kubernetes_service_cidr 10.215.0.0/16 contains 10.215.3.4, the sandbox_ipv4_address "
        "of host kube-cp: the cluster's networks must not overlap the lab's host addresses",
    ]


@pytest.mark.parametrize(
    ("nodes", "message"),
    [
        (
            {**NODES, "kube-gpu2": ""},
            "kube_node host kube-gpu2 has no kube_node_pod_cidr: every node needs a Pod subnet "
            "of its own inside kubernetes_pod_cidr 10.214.0.0/16, e.g. a /24",
        ),
        (
            {**NODES, "kube-gpu2": "10.216.2.0/24"},
            "kube_node_pod_cidr 10.216.2.0/24 of host kube-gpu2 is not inside "
            "kubernetes_pod_cidr 10.214.0.0/16",
        ),
        (
            {**NODES, "kube-gpu2": "10.214.1.128/25"},
            "kube_node_pod_cidr of hosts kube-gpu1 (10.214.1.0/24) and kube-gpu2 "
            "(10.214.1.128/25) overlap: each node needs a Pod subnet of its own",
        ),
        (
            {**NODES, "kube-gpu2": "10.214.2.0/29"},
            "kube_node_pod_cidr 10.214.2.0/29 of host kube-gpu2 is a /29: a node's Pod subnet "
            "must be /16 to /28",
        ),
        (
            {**NODES, "kube-gpu2": "10.214.2.1/24"},
            "kube_node_pod_cidr '10.214.2.1/24' of host kube-gpu2 is not a valid IPv4 network "
            "(10.214.2.1/24 has host bits set): expected ADDRESS/PREFIX with no host bits set, "
            "e.g. 10.214.0.0/16",
        ),
    ],
    ids=["missing", "outside", "overlap", "too-small", "host-bits"],
)
def test_a_wrong_node_pod_subnet_names_the_node(nodes: dict[str, str], message: str) -> None:
    assert kubernetes.node_pod_cidr_errors(POD, nodes) == [message]


def test_a_node_pod_subnet_may_be_a_16_or_a_28() -> None:
    nodes = {"big": "10.214.0.0/16"}
    assert kubernetes.node_pod_cidr_errors(POD, nodes) == []
    assert kubernetes.node_pod_cidr_errors(POD, {"small": "10.214.9.16/28"}) == []


def test_a_pod_subnet_outside_an_invalid_cluster_network_is_not_reported_twice() -> None:
    # The cluster network's own error is network_errors'; no node is blamed.
    assert kubernetes.node_pod_cidr_errors("10.214.0.1/16", NODES) == []


@pytest.mark.parametrize(
    ("hosts", "message"),
    [
        (
            ["cp1", "cp2", "cp3"],
            "kube_control_plane has 3 hosts (cp1, cp2, cp3): labstack runs exactly one "
            "control-plane host; HA control planes (several API servers over an etcd cluster) "
            "are not supported yet",
        ),
        (
            [],
            "kube_control_plane has no host: labstack runs exactly one control-plane host; "
            "HA control planes (several API servers over an etcd cluster) are not supported yet",
        ),
    ],
    ids=["three", "none"],
)
def test_the_control_plane_is_one_host(hosts: list[str], message: str) -> None:
    assert kubernetes.control_plane_errors(hosts) == [message]


def test_every_error_is_reported_at_once() -> None:
    errors = kubernetes.kubernetes_config_errors(
        "v1.35.0", POD, POD, ["cp1", "cp2"], {"kube-gpu1": ""}, {}
    )
    assert [error.split(" ", 1)[0] for error in errors] == [
        "kubernetes_version",
        "kubernetes_pod_cidr",
        "kube_node",
        "kube_control_plane",
    ]
