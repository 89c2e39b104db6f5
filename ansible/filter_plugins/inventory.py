"""Filters the inventory validation play uses (roles/inventory_check).

Every variable an inventory sets must be declared by some role's
meta/argument_specs.yml: a name no role declares is a typo or a leftover, and
is reported with the closest declared names.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterable, Mapping
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
        }
