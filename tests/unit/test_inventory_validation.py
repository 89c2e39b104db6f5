"""site.yml's first play rejects a wrong inventory before any host is touched.

Each case copies the sandbox inventory, breaks one thing, and points the
connection at containers that do not exist: had any play after the
validation run, the recap would list those hosts (unreachable). It must list
only localhost, with the failure.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
import yaml

from tests.playbook import assert_rejected_before_any_host, offline_inventory, run_playbook

Edit = Callable[[Path], None]


def _hosts(inventory: Path) -> dict:
    return yaml.safe_load((inventory / "hosts.yml").read_text())


def _write_hosts(inventory: Path, hosts: dict) -> None:
    (inventory / "hosts.yml").write_text(yaml.safe_dump(hosts))


def _append_var(inventory: Path, text: str) -> None:
    with (inventory / "group_vars" / "all" / "main.yml").open("a") as main:
        main.write(text)


def _empty_controller(inventory: Path) -> None:
    hosts = _hosts(inventory)
    hosts["all"]["children"]["slurm_controller"] = {"hosts": {}}
    _write_hosts(inventory, hosts)


def _missing_dbd_group(inventory: Path) -> None:
    hosts = _hosts(inventory)
    del hosts["all"]["children"]["slurm_dbd"]
    _write_hosts(inventory, hosts)


def _underscore_host(inventory: Path) -> None:
    hosts = _hosts(inventory)
    hosts["all"]["children"]["slurm_compute"]["hosts"]["gpu_3"] = None
    _write_hosts(inventory, hosts)


def _misspelled_variable(inventory: Path) -> None:
    _append_var(inventory, "common_timezon: Europe/Paris\n")


def _unknown_host_variable(inventory: Path) -> None:
    (inventory / "host_vars" / "gpu2.yml").write_text("slurm_gpu_cuont: 4\n")


def _break(tmp_path: Path, edit: Edit) -> Path:
    inventory = offline_inventory(tmp_path)
    edit(inventory)
    return inventory


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (_empty_controller, ["inventory group 'slurm_controller' is empty"]),
        (_missing_dbd_group, ["inventory group 'slurm_dbd' is missing"]),
        (_underscore_host, ["invalid host name(s) gpu_3", "no underscores"]),
        (
            _misspelled_variable,
            ["undeclared variable(s) on host", "common_timezon (did you mean common_timezone?)"],
        ),
        (_unknown_host_variable, ["undeclared variable(s) on host gpu2: slurm_gpu_cuont"]),
    ],
    ids=["empty-group", "missing-group", "underscore-host", "misspelled-var", "unknown-host-var"],
)
def test_bad_inventory_fails_before_any_host(
    tmp_path: Path, edit: Edit, message: list[str]
) -> None:
    assert_rejected_before_any_host(run_playbook("site.yml", _break(tmp_path, edit)), *message)


def test_unsupported_ansible_core_is_rejected(tmp_path: Path) -> None:
    inventory = _break(tmp_path, lambda _: None)
    run = run_playbook("site.yml", inventory, "-e", "inventory_check_ansible_core_min=99.0")
    assert_rejected_before_any_host(run, "is not supported: labstack needs >= 99.0")


def test_sandbox_refuses_ports_beyond_loopback(tmp_path: Path) -> None:
    inventory = _break(tmp_path, lambda _: None)
    (inventory / "host_vars" / "head.yml").write_text(
        "sandbox_published_ports: ['0.0.0.0:5000:5000']\n"
    )
    run = run_playbook("sandbox.yml", inventory)
    assert run.returncode != 0
    assert "sandbox_published_ports of host head must be" in " ".join(run.output.split())
    assert run.recap["localhost"]["changed"] == 0
