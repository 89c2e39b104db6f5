"""Checks of the Kubernetes layer's inventory, run before any host is contacted.

A site that gives hosts to kube_control_plane or kube_node asks for the
Kubernetes layer (roles/inventory_check/tasks/kubernetes.yml calls these).
What is checked: the Kubernetes release (v1.34.x), the cluster's Pod and
Service networks (IPv4, apart from each other and from every host address the
inventory names), each node's Pod subnet (inside the Pod network, apart from
every other node's) and the control plane (one host). Every message names the
variable and the host at fault.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Mapping, Sequence
from ipaddress import IPv4Address, IPv4Network
from typing import Any

# Supported releases: >= MIN, < MAX. v1.35 and later refuse to run kubelet on
# a cgroup v1 host unless configured otherwise (failCgroupV1), and the nodes
# labstack is tested on, the sandbox's included, are cgroup v1 with v1.34.
VERSION_MIN = (1, 34, 0)
VERSION_MAX = (1, 35, 0)
_VERSION = re.compile(r"^v(\d+)\.(\d+)\.(\d+)$")

# A node's Pod subnet: from /16 (65534 Pods) down to /28 (14 Pods).
NODE_PREFIX_MIN = 16
NODE_PREFIX_MAX = 28

_EXAMPLE_NETWORK = "10.214.0.0/16"


def _release(version: tuple[int, ...]) -> str:
    return ".".join(str(part) for part in version)


def _text(value: object) -> str:
    return "" if value is None else str(value).strip()


def version_errors(version: object) -> list[str]:
    """kubernetes_version must be a v1.34.x release."""
    text = _text(version)
    if not text:
        return [
            "kubernetes_version is empty: it comes from versions.env through `make` "
            "(env LABSTACK_KUBERNETES_VERSION); outside `make`, export that or set "
            "kubernetes_version in the inventory (e.g. v1.34.4)"
        ]
    match = _VERSION.match(text)
    if not match:
        return [
            f"kubernetes_version '{text}' is malformed: expected vMAJOR.MINOR.PATCH, e.g. v1.34.4"
        ]
    found = tuple(int(part) for part in match.groups())
    if not VERSION_MIN <= found < VERSION_MAX:
        return [
            f"kubernetes_version {text} is not supported: labstack runs "
            f"v{VERSION_MIN[0]}.{VERSION_MIN[1]}.x (>= {_release(VERSION_MIN)}, "
            f"< {_release(VERSION_MAX)}), since v1.35 and later refuse to run kubelet on "
            "cgroup v1 unless configured otherwise, and labstack's nodes and the sandbox "
            "are tested on v1.34"
        ]
    return []


def _network(name: str, value: object, owner: str = "") -> tuple[IPv4Network | None, list[str]]:
    """VALUE as an IPv4 network, or the error naming NAME (and its OWNER)."""
    text = _text(value)
    if not text:
        return None, [
            f"{name}{owner} is not set: it must be an IPv4 network, e.g. {_EXAMPLE_NETWORK}"
        ]
    try:
        network = ipaddress.ip_network(text)
    except ValueError as error:
        return None, [
            f"{name} '{text}'{owner} is not a valid IPv4 network ({error}): expected "
            f"ADDRESS/PREFIX with no host bits set, e.g. {_EXAMPLE_NETWORK}"
        ]
    if not isinstance(network, IPv4Network):
        return None, [f"{name} {text}{owner} is IPv6: labstack's Kubernetes networks are IPv4"]
    if "/" not in text:
        return None, [
            f"{name} '{text}'{owner} has no prefix length: expected ADDRESS/PREFIX, "
            f"e.g. {_EXAMPLE_NETWORK}"
        ]
    return network, []


def _address(value: object) -> IPv4Address | None:
    """VALUE as an IPv4 address; None for a DNS name, a container name or nothing."""
    try:
        address = ipaddress.ip_address(_text(value))
    except ValueError:
        return None
    return address if isinstance(address, IPv4Address) else None


def network_errors(
    pod_cidr: object,
    service_cidr: object,
    host_addresses: Mapping[str, Mapping[str, object]],
) -> list[str]:
    """kubernetes_pod_cidr and kubernetes_service_cidr: valid IPv4 networks,
    apart from each other and from every host address the inventory sets.

    HOST_ADDRESSES maps a variable (ansible_host, sandbox_ipv4_address) to
    each host's value; values that are not IPv4 addresses (DNS or container
    names, unset) have no address to collide with and are skipped.
    """
    pod, errors = _network("kubernetes_pod_cidr", pod_cidr)
    service, service_errors = _network("kubernetes_service_cidr", service_cidr)
    errors += service_errors
    if pod and service and pod.overlaps(service):
        overlap = pod if pod.prefixlen >= service.prefixlen else service
        errors.append(
            f"kubernetes_pod_cidr {pod} and kubernetes_service_cidr {service} overlap "
            f"({overlap}): Pod and Service addresses must come from separate ranges"
        )
    networks = [("kubernetes_pod_cidr", pod), ("kubernetes_service_cidr", service)]
    for variable, values in host_addresses.items():
        for host, value in values.items():
            address = _address(value)
            for name, network in networks:
                if address and network and address in network:
                    errors.append(
                        f"{name} {network} contains {address}, the {variable} of host {host}: "
                        "the cluster's networks must not overlap the lab's host addresses"
                    )
    return errors


def node_pod_cidr_errors(pod_cidr: object, node_pod_cidrs: Mapping[str, object]) -> list[str]:
    """Every kube_node host's kube_node_pod_cidr: set, /16 to /28, inside
    kubernetes_pod_cidr and apart from every other node's."""
    pod, _ = _network("kubernetes_pod_cidr", pod_cidr)  # its errors are network_errors'
    errors: list[str] = []
    subnets: list[tuple[str, IPv4Network]] = []
    for host, value in node_pod_cidrs.items():
        if not _text(value):
            errors.append(
                f"kube_node host {host} has no kube_node_pod_cidr: every node needs a Pod "
                f"subnet of its own inside kubernetes_pod_cidr {_text(pod_cidr) or '(unset)'}, "
                "e.g. a /24"
            )
            continue
        subnet, subnet_errors = _network("kube_node_pod_cidr", value, f" of host {host}")
        errors += subnet_errors
        if subnet is None:
            continue
        if not NODE_PREFIX_MIN <= subnet.prefixlen <= NODE_PREFIX_MAX:
            errors.append(
                f"kube_node_pod_cidr {subnet} of host {host} is a /{subnet.prefixlen}: a node's "
                f"Pod subnet must be /{NODE_PREFIX_MIN} to /{NODE_PREFIX_MAX}"
            )
        if pod and not subnet.subnet_of(pod):
            errors.append(
                f"kube_node_pod_cidr {subnet} of host {host} is not inside "
                f"kubernetes_pod_cidr {pod}"
            )
        for other, other_subnet in subnets:
            if subnet.overlaps(other_subnet):
                errors.append(
                    f"kube_node_pod_cidr of hosts {other} ({other_subnet}) and {host} "
                    f"({subnet}) overlap: each node needs a Pod subnet of its own"
                )
        subnets.append((host, subnet))
    return errors


def control_plane_errors(control_plane: Sequence[str]) -> list[str]:
    """Exactly one kube_control_plane host: one API server over a one-member etcd."""
    if len(control_plane) == 1:
        return []
    found = (
        f"{len(control_plane)} hosts ({', '.join(control_plane)})" if control_plane else "no host"
    )
    return [
        f"kube_control_plane has {found}: labstack runs exactly one control-plane host; "
        "HA control planes (several API servers over an etcd cluster) are not supported yet"
    ]


def kubernetes_config_errors(
    version: object,
    pod_cidr: object,
    service_cidr: object,
    control_plane: Sequence[str],
    node_pod_cidrs: Mapping[str, object],
    host_addresses: Mapping[str, Mapping[str, object]],
) -> list[str]:
    """Every error of the Kubernetes layer's inventory, in that order."""
    return (
        version_errors(version)
        + network_errors(pod_cidr, service_cidr, host_addresses)
        + node_pod_cidr_errors(pod_cidr, node_pod_cidrs)
        + control_plane_errors(list(control_plane))
    )


class FilterModule:
    def filters(self) -> Mapping[str, Any]:
        return {"labstack_kubernetes_config_errors": kubernetes_config_errors}
