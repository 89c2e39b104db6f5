"""The filters behind the inventory validation play."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.playbook import ANSIBLE_DIR, load_filter_plugin

filters = load_filter_plugin("inventory")


def test_declared_variables_come_from_every_role() -> None:
    declared = filters.declared_variables(str(ANSIBLE_DIR / "roles"))
    assert "common_timezone" in declared
    assert "sandbox_state" in declared
    assert "inventory_check_required_groups" in declared
    assert declared == sorted(declared)


def test_declared_variables_read_every_entry_point(tmp_path: Path) -> None:
    meta = tmp_path / "svc" / "meta"
    meta.mkdir(parents=True)
    (meta / "argument_specs.yml").write_text(
        "argument_specs:\n"
        "  main: {options: {svc_port: {type: int}}}\n"
        "  reload: {options: {svc_signal: {type: str}}}\n"
    )
    assert filters.declared_variables(str(tmp_path)) == ["svc_port", "svc_signal"]


def test_undeclared_variables_suggest_the_closest_name() -> None:
    reports = filters.undeclared_variables(
        ["common_timezone", "common_timezon", "site_colour", "ansible_host", "inventory_hostname"],
        ["common_timezone", "common_service_user"],
    )
    assert reports == ["common_timezon (did you mean common_timezone?)", "site_colour"]


def test_allowed_extra_variables_are_accepted() -> None:
    assert filters.undeclared_variables(["site_colour"], [], ["site_colour"]) == []


@pytest.mark.parametrize(
    ("name", "valid"),
    [
        ("gpu1", True),
        ("gpu-a01.lab.example.org", True),
        ("gpu_1", False),
        ("-gpu", False),
        ("gpu-", False),
        ("a" * 64, False),
        ("", False),
    ],
)
def test_invalid_hostnames(name: str, valid: bool) -> None:
    assert (filters.invalid_hostnames([name]) == []) is valid


LAYERS = {
    "Slurm": ["slurm_controller", "slurm_dbd", "slurm_compute"],
    "Kubernetes": ["kube_control_plane", "kube_node"],
}
REQUIRED = ["storage", "tracking", "secrets", "monitoring"]
SERVICES = {
    "all": [],
    "storage": ["storage"],
    "tracking": ["head"],
    "secrets": ["head"],
    "monitoring": ["head"],
}
SLURM = {"slurm_controller": ["head"], "slurm_dbd": ["head"], "slurm_compute": ["gpu1", "gpu2"]}
KUBERNETES = {"kube_control_plane": ["kube-cp"], "kube_node": ["kube-gpu1", "kube-gpu2"]}


@pytest.mark.parametrize(
    ("groups", "layers"),
    [
        ({**SERVICES, **SLURM}, ["Slurm"]),
        ({**SERVICES, **KUBERNETES, "slurm_compute": []}, ["Kubernetes"]),
        ({**SERVICES, **SLURM, **KUBERNETES}, ["Slurm", "Kubernetes"]),
    ],
    ids=["slurm-only", "kubernetes-only", "both"],
)
def test_a_site_runs_slurm_kubernetes_or_both(groups: dict, layers: list[str]) -> None:
    assert filters.group_errors(groups, REQUIRED, LAYERS) == []
    assert filters.requested_layers(groups, LAYERS) == layers


@pytest.mark.parametrize(
    ("groups", "message"),
    [
        (
            {**SERVICES, "kube_node": ["kube-gpu1", "kube-gpu2"]},
            "kube_node has hosts (kube-gpu1, kube-gpu2) but inventory group 'kube_control_plane' "
            "is missing: the Kubernetes layer needs at least one host in it",
        ),
        (
            {**SERVICES, **SLURM, "slurm_controller": []},
            "slurm_dbd has hosts (head) and slurm_compute has hosts (gpu1, gpu2) but inventory "
            "group 'slurm_controller' is empty: the Slurm layer needs at least one host in it",
        ),
        (
            {**SERVICES, "slurm_compute": [f"gpu{n}" for n in range(1, 9)]},
            "slurm_compute has hosts (gpu1, gpu2, gpu3 and 5 more) but inventory group "
            "'slurm_controller' is missing: the Slurm layer needs at least one host in it",
        ),
        (
            {**SERVICES, **KUBERNETES, "storage": []},
            "inventory group 'storage' is empty: every site needs at least one host in it, "
            "whichever compute layers it runs",
        ),
    ],
    ids=["no-control-plane", "empty-controller", "many-hosts", "no-storage"],
)
def test_a_group_the_site_needs_is_named(groups: dict, message: str) -> None:
    assert message in filters.group_errors(groups, REQUIRED, LAYERS)


def test_a_slurm_layer_names_every_missing_group() -> None:
    errors = filters.group_errors({**SERVICES, "slurm_controller": ["head"]}, REQUIRED, LAYERS)
    assert [error.split("'")[1] for error in errors] == ["slurm_dbd", "slurm_compute"]


def test_a_site_with_no_compute_layer_is_told_both_ways() -> None:
    groups = {**SERVICES, "slurm_compute": [], "kube_node": []}
    assert filters.group_errors(groups, REQUIRED, LAYERS) == [
        "no compute layer: no group of the Slurm layer (slurm_controller, slurm_dbd, "
        "slurm_compute) nor the Kubernetes layer (kube_control_plane, kube_node) has hosts. "
        "Add hosts to slurm_controller, slurm_dbd and slurm_compute for Slurm, or to "
        "kube_control_plane and kube_node for Kubernetes, or both"
    ]
    assert filters.requested_layers(groups, LAYERS) == []


network = load_filter_plugin("network")


@pytest.mark.parametrize(
    ("flows", "error"),
    [
        ([{"why": "the API", "ports": [9000, "60001-63000"], "from": "lab"}], None),
        ([{"why": "peers", "ports": "all", "from": ["slurm_compute"]}], None),
        ([], "must list one flow or more"),
        ([{"why": "x", "ports": [9000]}], "a flow is {why, ports, from}"),
        ([{"why": 'say "hi"', "ports": [1], "from": "lab"}], "without quotes"),
        ([{"why": "x", "ports": [0], "from": "lab"}], "ports must be TCP ports"),
        ([{"why": "x", "ports": ["63000-60001"], "from": "lab"}], "ports must be TCP ports"),
        ([{"why": "x", "ports": ["1-2-3"], "from": "lab"}], "ports must be TCP ports"),
        ([{"why": "x", "ports": ["9000;"], "from": "lab"}], "ports must be TCP ports"),
        ([{"why": "x", "ports": [1], "from": "everyone"}], "from must be 'lab' or a list"),
    ],
)
def test_firewall_flows_are_checked(flows: list, error: str | None) -> None:
    errors = network.labstack_firewall_errors(flows, "svc")
    if error is None:
        assert errors == []
    else:
        assert len(errors) == 1, errors
        assert error in errors[0], errors


@pytest.mark.parametrize(
    ("hostvars", "address"),
    [
        (
            {"common_host_address_resolved": "10.0.0.5", "common_host_address": "10.0.0.6"},
            "10.0.0.5",
        ),
        (
            {"common_host_address": "10.0.0.6", "ansible_default_ipv4": {"address": "10.0.0.7"}},
            "10.0.0.6",
        ),
        ({"common_host_address": "", "ansible_default_ipv4": {"address": "10.0.0.7"}}, "10.0.0.7"),
    ],
)
def test_a_host_is_known_by_commons_address_else_its_own(hostvars: dict, address: str) -> None:
    assert network.labstack_host_address(hostvars) == address


def test_a_host_without_an_address_is_named() -> None:
    with pytest.raises(ValueError, match="no address known for gpu9"):
        network.labstack_host_address({"inventory_hostname": "gpu9"})
