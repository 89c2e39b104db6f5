"""Address arithmetic the Kubernetes roles need (Python's ipaddress; no
netaddr on the control node), and the checks of networks and firewall flows."""

from __future__ import annotations

import ipaddress
from collections.abc import Callable
from typing import Any


def labstack_nth_address(network: str, index: int) -> str:
    """The INDEX-th address of NETWORK (1: the first after the network's
    own address, e.g. the `kubernetes` Service; 10: cluster DNS)."""
    net = ipaddress.ip_network(network, strict=True)
    if not 0 < index < net.num_addresses - 1:
        raise ValueError(f"{network} has no address number {index}")
    return str(net.network_address + index)


def labstack_in_network(address: str, network: str) -> bool:
    """Whether ADDRESS lies in NETWORK (ADDRESS/PREFIX)."""
    return ipaddress.ip_address(address) in ipaddress.ip_network(network, strict=True)


def labstack_cidr_errors(cidrs: Any, variable: str) -> list[str]:
    """What is wrong with VARIABLE, a list of networks (ADDRESS/PREFIX) that must not be
    empty: [] when nothing is."""
    if not isinstance(cidrs, list) or not cidrs:
        return [f"{variable} must list one network or more (ADDRESS/PREFIX), got {cidrs!r}"]
    errors = []
    for cidr in cidrs:
        try:
            ipaddress.ip_network(str(cidr), strict=True)
        except ValueError as exc:
            errors.append(f"{variable}: {cidr!r} is not a network ({exc})")
    return errors


def _is_port_or_range(port: Any) -> bool:
    """Whether PORT is a TCP port (1-65535) or a range of them, LOW-HIGH."""
    bounds = str(port).split("-")
    if len(bounds) > 2 or not all(bound.isdigit() for bound in bounds):
        return False
    numbers = [int(bound) for bound in bounds]
    return 1 <= numbers[0] <= numbers[-1] <= 65535


def labstack_firewall_errors(flows: Any, service: str) -> list[str]:
    """What is wrong with FLOWS, the connections SERVICE lets in (the firewall
    role's allow entry point): [] when nothing is."""
    if not isinstance(flows, list) or not flows:
        return [f"firewall_allow of {service} must list one flow or more, got {flows!r}"]
    errors = []
    for flow in flows:
        if not isinstance(flow, dict) or set(flow) != {"why", "ports", "from"}:
            errors.append(f"{service}: a flow is {{why, ports, from}}, got {flow!r}")
            continue
        why, ports, sources = flow["why"], flow["ports"], flow["from"]
        if not isinstance(why, str) or not why or '"' in why or "\n" in why:
            errors.append(f"{service}: why must be a few words without quotes, got {why!r}")
        if ports != "all" and not (
            isinstance(ports, list) and ports and all(_is_port_or_range(port) for port in ports)
        ):
            errors.append(
                f"{service}: ports must be TCP ports (1-65535) or ranges LOW-HIGH, or 'all', "
                f"got {ports!r}"
            )
        if sources != "lab" and not (
            isinstance(sources, list) and sources and all(isinstance(g, str) for g in sources)
        ):
            errors.append(f"{service}: from must be 'lab' or a list of groups, got {sources!r}")
    return errors


def labstack_host_address(hostvars: Any) -> str:
    """The address a host is known by, from its HOSTVARS: the common role's
    (common_host_address_resolved, this run), else common_host_address, else
    its default IPv4 address (facts)."""
    for name in ("common_host_address_resolved", "common_host_address"):
        if hostvars.get(name):
            return str(hostvars[name])
    address = (hostvars.get("ansible_default_ipv4") or {}).get("address")
    if not address:
        raise ValueError(f"no address known for {hostvars.get('inventory_hostname')}")
    return str(address)


class FilterModule:
    def filters(self) -> dict[str, Callable[..., Any]]:
        return {
            "labstack_nth_address": labstack_nth_address,
            "labstack_in_network": labstack_in_network,
            "labstack_cidr_errors": labstack_cidr_errors,
            "labstack_firewall_errors": labstack_firewall_errors,
            "labstack_host_address": labstack_host_address,
        }
