"""The filters behind the inventory validation play."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from tests.playbook import ANSIBLE_DIR

_spec = importlib.util.spec_from_file_location(
    "labstack_inventory_filters", ANSIBLE_DIR / "filter_plugins" / "inventory.py"
)
assert _spec is not None
assert _spec.loader is not None
filters = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(filters)


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
