"""Checks of the Slurm data model (roles/slurm), run before any host changes.

Node groups and partitions are inventory data: a node group names the
inventory group of its hosts, their CPUs and memory (taken from facts when
left at 0) and their GPUs (type, count, and explicit GRES device files where
NVML cannot detect them). Partitions name node groups. Every error message
names the node group, partition or node at fault.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]*$")


def _names(items: Sequence[Mapping[str, Any]]) -> list[str]:
    return [str(item.get("name", "")) for item in items]


def _duplicates(names: Sequence[str]) -> list[str]:
    return sorted({name for name in names if names.count(name) > 1})


def _node_group_errors(group: Mapping[str, Any], groups: Mapping[str, Sequence[str]]) -> list[str]:
    name = group.get("name", "")
    errors: list[str] = []
    if not _NAME.match(str(name)):
        errors.append(f"node group name '{name}' must be letters, digits, '-' or '_'")
    inventory_group = group.get("inventory_group", "")
    hosts = list(groups.get(inventory_group, []))
    if not hosts:
        errors.append(
            f"node group '{name}': inventory group '{inventory_group}' is missing or has no hosts"
        )
    outside = [host for host in hosts if host not in groups.get("slurm_compute", [])]
    if outside:
        errors.append(
            f"node group '{name}': host(s) {', '.join(outside)} of inventory group "
            f"'{inventory_group}' are not in slurm_compute"
        )
    gpus = int(group.get("gpus", 0))
    gpu_type = str(group.get("gpu_type", ""))
    gres = list(group.get("gres", []))
    where = f"node group '{name}' (node(s) {', '.join(hosts) or 'none'})"
    if gpus < 0:
        errors.append(f"{where}: gpus is {gpus}, it must be 0 or more")
    if gpus > 0 and not _NAME.match(gpu_type):
        errors.append(f"{where}: gpus is {gpus} but gpu_type '{gpu_type}' is not a GPU type name")
    if gres and len(gres) != gpus:
        files = ", ".join(str(entry.get("file", "?")) for entry in gres)
        errors.append(
            f"{where}: gpus is {gpus} but its gres entries list {len(gres)} device(s) ({files})"
        )
    files = [str(entry.get("file", "")) for entry in gres]
    for duplicate in _duplicates(files):
        errors.append(f"{where}: gres device {duplicate} is listed more than once")
    for key in ("cpus", "real_memory_mb"):
        if int(group.get(key, 0)) < 0:
            errors.append(f"{where}: {key} must be 0 (from facts) or more")
    return errors


def slurm_config_errors(
    node_groups: Sequence[Mapping[str, Any]],
    partitions: Sequence[Mapping[str, Any]],
    groups: Mapping[str, Sequence[str]],
) -> list[str]:
    """Every contradiction in slurm_node_groups and slurm_partitions."""
    errors: list[str] = []
    group_names = _names(node_groups)
    for duplicate in _duplicates(group_names):
        errors.append(f"node group '{duplicate}' is declared more than once")
    for group in node_groups:
        errors += _node_group_errors(group, groups)

    membership: dict[str, list[str]] = {host: [] for host in groups.get("slurm_compute", [])}
    for group in node_groups:
        for host in groups.get(group.get("inventory_group", ""), []):
            membership.setdefault(host, []).append(str(group.get("name")))
    for host, found in membership.items():
        if len(found) != 1:
            where = "no node group" if not found else f"node groups {', '.join(found)}"
            errors.append(f"compute node {host} is in {where}: it must be in exactly one")

    partition_names = _names(partitions)
    if not partitions:
        errors.append("slurm_partitions is empty: jobs need at least one partition")
    for duplicate in _duplicates(partition_names):
        errors.append(f"partition '{duplicate}' is declared more than once")
    for partition in partitions:
        name = partition.get("name", "")
        if not _NAME.match(str(name)):
            errors.append(f"partition name '{name}' must be letters, digits, '-' or '_'")
        named = list(partition.get("node_groups", []))
        if not named:
            errors.append(f"partition '{name}' names no node group")
        for unknown in [group for group in named if group not in group_names]:
            known = ", ".join(group_names) or "none"
            errors.append(
                f"partition '{name}' names unknown node group '{unknown}' (known: {known})"
            )
    defaults = [str(p.get("name")) for p in partitions if p.get("default", False)]
    if len(defaults) > 1:
        errors.append(f"partitions {', '.join(defaults)} are all marked default: at most one")
    return errors


def slurm_node_errors(
    host: str,
    group: Mapping[str, Any],
    vcpus: int,
    memory_mb: int,
    nvidia_gpus: int,
) -> list[str]:
    """What a compute node's declared hardware claims that its facts deny."""
    name = group.get("name", "")
    where = f"compute node {host} (node group '{name}')"
    errors: list[str] = []
    cpus = int(group.get("cpus", 0))
    if cpus > vcpus:
        errors.append(f"{where} declares cpus: {cpus} but has {vcpus}")
    memory = int(group.get("real_memory_mb", 0))
    if memory > memory_mb:
        errors.append(f"{where} declares real_memory_mb: {memory} but has {memory_mb} MB")
    gpus = int(group.get("gpus", 0))
    if nvidia_gpus and gpus != nvidia_gpus:
        errors.append(f"{where} declares gpus: {gpus} but has {nvidia_gpus} NVIDIA GPU(s)")
    if gpus and not nvidia_gpus and not group.get("gres"):
        errors.append(
            f"{where} declares gpus: {gpus} but has no NVIDIA GPU for NVML to detect "
            "and no explicit gres entries"
        )
    return errors


class FilterModule:
    def filters(self) -> Mapping[str, Any]:
        return {
            "labstack_slurm_config_errors": slurm_config_errors,
            "labstack_slurm_node_errors": slurm_node_errors,
        }
