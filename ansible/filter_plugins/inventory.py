"""Filters the inventory validation play uses (roles/inventory_check).

Groups: some groups every site needs (storage, tracking, secrets,
monitoring); the compute layers (Slurm, Kubernetes) are asked for by giving
hosts to any of their groups, and then need hosts in all of them. A site asks
for one layer, the other, or both, never neither.

Every variable an inventory sets must be declared by some role's
meta/argument_specs.yml: a name no role declares is a typo or a leftover, and
is reported with the closest declared names.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml

# RFC 1123 host name: dot-separated labels of letters, digits and inner
# hyphens, each 1-63 characters, 253 in all. No underscores: Slurm, TLS
# certificates and DNS all reject them.
_LABEL = re.compile(r"^[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?$")

# Names Ansible itself puts into every host's variables.
_MAGIC = frozenset(
    {
        "groups",
        "group_names",
        "inventory_dir",
        "inventory_file",
        "inventory_hostname",
        "inventory_hostname_short",
        "omit",
        "playbook_dir",
        "role_name",
        "role_names",
        "role_path",
    }
)


# Hosts named in a message: the first few, then how many more.
_NAMED_HOSTS = 4


def _some(hosts: Sequence[str]) -> str:
    if len(hosts) <= _NAMED_HOSTS:
        return ", ".join(hosts)
    shown = _NAMED_HOSTS - 1
    return ", ".join(hosts[:shown]) + f" and {len(hosts) - shown} more"


def _and(names: Sequence[str]) -> str:
    return names[0] if len(names) == 1 else ", ".join(names[:-1]) + " and " + names[-1]


def _state(groups: Mapping[str, Sequence[str]], name: str) -> str:
    return "empty" if name in groups else "missing"


def requested_layers(
    groups: Mapping[str, Sequence[str]], layers: Mapping[str, Sequence[str]]
) -> list[str]:
    """The compute layers the inventory asks for: those with hosts in any of their groups."""
    return [layer for layer, names in layers.items() if any(groups.get(name) for name in names)]


def group_errors(
    groups: Mapping[str, Sequence[str]],
    required: Sequence[str],
    layers: Mapping[str, Sequence[str]],
) -> list[str]:
    """What the inventory's groups lack: a group every site needs, a group of
    a layer the site asks for, or any compute layer at all."""
    errors = [
        f"inventory group '{name}' is {_state(groups, name)}: every site needs at least "
        "one host in it, whichever compute layers it runs"
        for name in required
        if not groups.get(name)
    ]
    asked = requested_layers(groups, layers)
    for layer in asked:
        names = list(layers[layer])
        because = " and ".join(
            f"{name} has hosts ({_some(list(groups[name]))})" for name in names if groups.get(name)
        )
        errors += [
            f"{because} but inventory group '{name}' is {_state(groups, name)}: "
            f"the {layer} layer needs at least one host in it"
            for name in names
            if not groups.get(name)
        ]
    if layers and not asked:
        none = " nor ".join(
            f"the {layer} layer ({', '.join(names)})" for layer, names in layers.items()
        )
        ways = ", or ".join(
            f"to {_and(list(names))} for {layer}" for layer, names in layers.items()
        )
        several = ", or both" if len(layers) == 2 else ", or several"
        errors.append(
            f"no compute layer: no group of {none} has hosts. "
            f"Add hosts {ways}{several if len(layers) > 1 else ''}"
        )
    return errors


def declared_variables(roles_dir: str) -> list[str]:
    """The option names of every entry point of every role's argument_specs."""
    names: set[str] = set()
    for path in sorted(Path(roles_dir).glob("*/meta/argument_specs.yml")):
        with path.open(encoding="utf-8") as spec:
            document = yaml.safe_load(spec) or {}
        for entry in (document.get("argument_specs") or {}).values():
            names.update((entry or {}).get("options") or {})
    return sorted(names)


def undeclared_variables(
    variables: Iterable[str], declared: Iterable[str], allowed: Iterable[str] = ()
) -> list[str]:
    """Variable names that no role declares, each with its likeliest meaning.

    Connection and magic variables (ansible_*) are Ansible's, not ours.
    """
    known = set(declared) | set(allowed)
    unknown = sorted(
        name
        for name in variables
        if name not in known and name not in _MAGIC and not name.startswith("ansible_")
    )
    reports = []
    for name in unknown:
        close = difflib.get_close_matches(name, sorted(known), n=1, cutoff=0.75)
        reports.append(f"{name} (did you mean {close[0]}?)" if close else name)
    return reports


def invalid_hostnames(names: Iterable[str]) -> list[str]:
    """Host names that are not valid RFC 1123 names."""
    return [
        name
        for name in names
        if len(name) > 253 or not all(_LABEL.match(label) for label in name.split("."))
    ]


class FilterModule:
    def filters(self) -> Mapping[str, Any]:
        return {
            "labstack_declared_variables": declared_variables,
            "labstack_undeclared_variables": undeclared_variables,
            "labstack_invalid_hostnames": invalid_hostnames,
            "labstack_inventory_group_errors": group_errors,
            "labstack_requested_layers": requested_layers,
        }
