"""Contradictions in the Slurm node groups and partitions fail before any host.

The filter checks directly, then site.yml end to end: its validation play
must stop the run on the control node, naming the node or partition at
fault, before any lab host is contacted (the inventory points at containers
that do not exist, so any later play would show them unreachable).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.playbook import (
    SANDBOX_INVENTORY,
    assert_rejected_before_any_host,
    load_filter_plugin,
    offline_inventory,
    run_playbook,
)

slurm = load_filter_plugin("slurm")

GROUPS = {"slurm_compute": ["gpu1", "gpu2"], "slurm_gpu": ["gpu1", "gpu2"]}


def _group(**changes: Any) -> dict[str, Any]:
    group = {
        "name": "gpu",
        "inventory_group": "slurm_gpu",
        "gpu_type": "fakegpu",
        "gpus": 2,
        "gres": [{"file": "/dev/fakegpu0"}, {"file": "/dev/fakegpu1"}],
    }
    return {**group, **changes}


PARTITION = {"name": "batch", "node_groups": ["gpu"], "default": True}


def test_a_consistent_model_has_no_error() -> None:
    assert slurm.slurm_config_errors([_group()], [PARTITION], GROUPS) == []


@pytest.mark.parametrize(
    ("groups", "partitions", "message"),
    [
        (
            [_group(gpus=3)],
            [PARTITION],
            "node group 'gpu' (node(s) gpu1, gpu2): gpus is 3 but its gres entries list 2",
        ),
        (
            [_group()],
            [{**PARTITION, "node_groups": ["gpu", "a100"]}],
            "partition 'batch' names unknown node group 'a100' (known: gpu)",
        ),
        (
            [_group(gpu_type="")],
            [PARTITION],
            "gpus is 2 but gpu_type '' is not a GPU type name",
        ),
        (
            [_group(inventory_group="slurm_nothing")],
            [PARTITION],
            "inventory group 'slurm_nothing' is missing or has no hosts",
        ),
        (
            [_group(), _group()],
            [PARTITION],
            "node group 'gpu' is declared more than once",
        ),
        ([_group()], [], "slurm_partitions is empty"),
        (
            [_group()],
            [PARTITION, {**PARTITION, "name": "other"}],
            "partitions batch, other are all marked default",
        ),
    ],
    ids=[
        "gpus-vs-gres",
        "unknown-node-group",
        "no-gpu-type",
        "empty-inventory-group",
        "duplicate",
        "no-partition",
        "two-defaults",
    ],
)
def test_contradictions_are_named(groups: list, partitions: list, message: str) -> None:
    errors = slurm.slurm_config_errors(groups, partitions, GROUPS)
    assert any(message in error for error in errors), errors


def test_a_compute_node_outside_every_node_group_is_named() -> None:
    groups = {"slurm_compute": ["gpu1", "gpu2", "gpu3"], "slurm_gpu": ["gpu1", "gpu2"]}
    errors = slurm.slurm_config_errors([_group()], [PARTITION], groups)
    assert errors == ["compute node gpu3 is in no node group: it must be in exactly one"]


@pytest.mark.parametrize(
    ("group", "vcpus", "memory", "nvidia", "message"),
    [
        (
            _group(cpus=64),
            2,
            8000,
            0,
            "compute node gpu1 (node group 'gpu') declares cpus: 64 but has 2",
        ),
        (_group(real_memory_mb=9000), 2, 8000, 0, "declares real_memory_mb: 9000 but has 8000 MB"),
        (_group(gres=[]), 2, 8000, 4, "declares gpus: 2 but has 4 NVIDIA GPU(s)"),
        (_group(gres=[]), 2, 8000, 0, "no NVIDIA GPU for NVML to detect and no explicit gres"),
    ],
    ids=["cpus", "memory", "nvidia-count", "no-gpu-source"],
)
def test_declared_hardware_beyond_the_facts_is_named(
    group: dict, vcpus: int, memory: int, nvidia: int, message: str
) -> None:
    errors = slurm.slurm_node_errors("gpu1", group, vcpus, memory, nvidia)
    assert any(message in error for error in errors), errors


def test_hardware_within_the_facts_passes() -> None:
    assert slurm.slurm_node_errors("gpu1", _group(cpus=2), 2, 8000, 0) == []
    assert slurm.slurm_node_errors("gpu1", _group(gres=[]), 2, 8000, 2) == []


def _node_groups() -> list[dict]:
    main = yaml.safe_load((SANDBOX_INVENTORY / "group_vars" / "all" / "main.yml").read_text())
    return main["slurm_node_groups"]


@pytest.mark.parametrize(
    ("slurm_vars", "message"),
    [
        (
            {"slurm_node_groups": [{**_node_groups()[0], "gpus": 4}]},
            "node group 'gpu' (node(s) gpu1, gpu2): gpus is 4 but its gres entries list 2",
        ),
        (
            {"slurm_partitions": [{"name": "batch", "node_groups": ["a100"]}]},
            "partition 'batch' names unknown node group 'a100' (known: gpu)",
        ),
        (
            {"slurm_slurmd_timeout": 0},
            "slurm_slurmd_timeout (0) must be at least 10 seconds",
        ),
        (
            {"slurm_private_data": ["jobs", "nodes"]},
            "slurm_private_data (jobs, nodes) may name only accounts, events, jobs,",
        ),
    ],
    ids=["gpus-vs-gres", "unknown-node-group", "slurmd-timeout", "private-data"],
)
def test_site_stops_before_any_host(tmp_path: Path, slurm_vars: dict, message: str) -> None:
    inventory = offline_inventory(tmp_path, yaml.safe_dump(slurm_vars))
    assert_rejected_before_any_host(run_playbook("site.yml", inventory), message)
