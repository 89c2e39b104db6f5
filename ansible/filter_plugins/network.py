"""Address arithmetic the Kubernetes roles need (Python's ipaddress; no
netaddr on the control node)."""

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


class FilterModule:
    def filters(self) -> dict[str, Callable[..., Any]]:
        return {
            "labstack_nth_address": labstack_nth_address,
            "labstack_in_network": labstack_in_network,
            "labstack_cidr_errors": labstack_cidr_errors,
        }
