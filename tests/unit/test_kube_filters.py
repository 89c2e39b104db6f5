"""The address and image-name filters of the Kubernetes roles."""

from __future__ import annotations

import pytest

from tests.playbook import load_filter_plugin

network = load_filter_plugin("network")
images = load_filter_plugin("images")


@pytest.mark.parametrize(
    ("cidr", "index", "address"),
    [
        ("10.215.0.0/16", 1, "10.215.0.1"),
        ("10.215.0.0/16", 10, "10.215.0.10"),
        ("10.96.0.0/12", 10, "10.96.0.10"),
    ],
)
def test_nth_address(cidr: str, index: int, address: str) -> None:
    assert network.labstack_nth_address(cidr, index) == address


@pytest.mark.parametrize(
    ("address", "cidr", "inside"),
    [("172.30.0.1", "172.30.0.0/24", True), ("172.30.0.1", "172.30.0.128/25", False)],
)
def test_in_network(address: str, cidr: str, inside: bool) -> None:
    assert network.labstack_in_network(address, cidr) is inside


@pytest.mark.parametrize(("cidr", "index"), [("10.215.0.0/30", 3), ("10.215.0.0/30", 0)])
def test_nth_address_outside_the_network_is_refused(cidr: str, index: int) -> None:
    with pytest.raises(ValueError, match=f"{cidr} has no address number {index}"):
        network.labstack_nth_address(cidr, index)


def test_nth_address_needs_a_network_address() -> None:
    with pytest.raises(ValueError, match="has host bits set"):
        network.labstack_nth_address("10.215.0.1/16", 1)


@pytest.mark.parametrize(
    ("name", "reference"),
    [
        ("labstack/pause:1.0.0", "docker.io/labstack/pause:1.0.0"),
        ("debian:bookworm", "docker.io/library/debian:bookworm"),
        ("nvcr.io/nvidia/k8s-device-plugin:v0.17.4", "nvcr.io/nvidia/k8s-device-plugin:v0.17.4"),
        ("registry.lab:5000/labstack/mlflow:3.17.2", "registry.lab:5000/labstack/mlflow:3.17.2"),
        ("localhost/labstack/base:bookworm", "localhost/labstack/base:bookworm"),
    ],
)
def test_image_reference(name: str, reference: str) -> None:
    assert images.labstack_image_reference(name) == reference
