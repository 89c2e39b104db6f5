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


class FilterModule:
    def filters(self) -> dict[str, Callable[..., Any]]:
        return {"labstack_nth_address": labstack_nth_address}
