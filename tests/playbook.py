"""Run ansible-playbook the way `make` does, and read its recap."""

from __future__ import annotations

import importlib.util
import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

import yaml

REPO = Path(__file__).resolve().parents[1]
ANSIBLE_DIR = REPO / "ansible"
# The sandbox under test; LABSTACK_SANDBOX_INVENTORY points the tests at
# another one (a second sandbox beside the first, with other names).
SANDBOX_INVENTORY = Path(
    os.environ.get("LABSTACK_SANDBOX_INVENTORY") or ANSIBLE_DIR / "inventories" / "sandbox"
).resolve()
_BIN = Path(sys.executable).parent

_RECAP_LINE = re.compile(r"^(?P<host>\S+)\s+:\s+(?P<counts>(?:\w+=\d+\s*)+)$")


@dataclass(frozen=True)
class PlaybookRun:
    returncode: int
    output: str
    # host -> {"ok": n, "changed": n, "unreachable": n, "failed": n, ...}
    recap: dict[str, dict[str, int]]


def inventory_with_host(
    folder: Path, group: str, host: str, host_vars: dict[str, object] | None = None
) -> Path:
    """A copy of the sandbox's inventory in FOLDER with HOST added to GROUP, and its
    HOST_VARS: the inventory of a rerun that adds a node."""
    inventory = folder / "inventory"
    shutil.copytree(SANDBOX_INVENTORY, inventory)
    tree = yaml.safe_load((inventory / "hosts.yml").read_text())
    tree["all"]["children"][group]["hosts"][host] = None
    (inventory / "hosts.yml").write_text(yaml.safe_dump(tree))
    if host_vars:
        (inventory / "host_vars" / f"{host}.yml").write_text(yaml.safe_dump(host_vars))
    return inventory


def parse_recap(output: str) -> dict[str, dict[str, int]]:
    """The PLAY RECAP of an ansible-playbook run, per host."""
    _, found, tail = output.rpartition("PLAY RECAP *")
    if not found:
        return {}
    recap: dict[str, dict[str, int]] = {}
    for line in tail.splitlines():
        match = _RECAP_LINE.match(line.strip())
        if match:
            counts = dict(item.split("=") for item in match["counts"].split())
            recap[match["host"]] = {key: int(value) for key, value in counts.items()}
    return recap


def run_playbook(
    playbook: str, inventory: Path = SANDBOX_INVENTORY, *args: str, verbose: bool = False
) -> PlaybookRun:
    """ansible-playbook -i INVENTORY ansible/PLAYBOOK ARGS, output captured."""
    env = {**os.environ, "ANSIBLE_CONFIG": str(ANSIBLE_DIR / "ansible.cfg"), "NO_COLOR": "1"}
    command = [str(_BIN / "ansible-playbook"), "-i", str(inventory), str(ANSIBLE_DIR / playbook)]
    command += ["-v"] if verbose else []
    completed = subprocess.run(
        [*command, *args], env=env, capture_output=True, text=True, check=False
    )
    output = completed.stdout + completed.stderr
    return PlaybookRun(completed.returncode, output, parse_recap(completed.stdout))


# Container names no sandbox uses: the hosts of an offline inventory.
_ABSENT_PREFIX = "labstack-absent-"
# The sandbox inventory's source that makes each host's ansible_host.
_ADDRESSES = "sandbox-addresses.yml"


def _var_files(inventory: Path) -> list[Path]:
    return sorted(
        path
        for folder in ("group_vars", "host_vars")
        for path in (inventory / folder).rglob("*")
        if path.is_file() and path.suffix in (".yml", ".yaml")
    )


def _ansible_hosts(document: object) -> list[object]:
    """Every ansible_host value set anywhere in an inventory document."""
    if isinstance(document, dict):
        found = [document["ansible_host"]] if "ansible_host" in document else []
        return found + [value for item in document.values() for value in _ansible_hosts(item)]
    if isinstance(document, list):
        return [value for item in document for value in _ansible_hosts(item)]
    return []


def offline_inventory(tmp_path: Path, extra: str = "") -> Path:
    """A copy of the sandbox inventory (without its credentials) whose hosts
    are containers that do not exist, EXTRA added to group_vars/all: any
    play that reached a lab host would show it in the recap, unreachable (or
    failed: "No such container").

    The prefix is replaced in every file that sets it (group_vars/all/
    sandbox.yml is read after main.yml and would win), and the copy is
    refused unless every host's address is made from it: a run of site.yml
    against it must never reach a sandbox that is up."""
    inventory = tmp_path / "inventory"
    # Without what the sandbox's deployment generates (.generated), which a
    # `make lab` beside the tests may be writing.
    ignored = shutil.ignore_patterns("credentials*", ".generated")
    shutil.copytree(SANDBOX_INVENTORY, inventory, ignore=ignored)
    for path in _var_files(inventory):
        document = yaml.safe_load(path.read_text()) or {}
        if "sandbox_container_prefix" in document:
            document["sandbox_container_prefix"] = _ABSENT_PREFIX
            path.write_text(yaml.safe_dump(document))
    with (inventory / "group_vars" / "all" / "main.yml").open("a") as main:
        main.write(f"sandbox_container_prefix: {_ABSENT_PREFIX}\n")
    # Read after every other file of group_vars/all (ansible orders them by name): it wins.
    (inventory / "group_vars" / "all" / "zz_test.yml").write_text(extra)
    for path in [*_var_files(inventory), inventory / "hosts.yml"]:
        document = yaml.safe_load(path.read_text()) or {}
        prefix = document.get("sandbox_container_prefix", _ABSENT_PREFIX)
        assert prefix == _ABSENT_PREFIX, f"{path} sets sandbox_container_prefix {prefix}"
        assert not _ansible_hosts(document), (
            f"{path} sets ansible_host: an offline host must be the container "
            f"{_ABSENT_PREFIX}HOST, its address composed by {_ADDRESSES}"
        )
    composed = yaml.safe_load((inventory / _ADDRESSES).read_text())["compose"]
    assert composed == {"ansible_host": "sandbox_container_prefix ~ inventory_hostname"}, composed
    return inventory


def assert_rejected_before_any_host(run: PlaybookRun, *message: str) -> None:
    """The run failed on the control node alone, changing nothing, and its
    output names every part of MESSAGE."""
    assert run.returncode != 0, run.output
    flat = " ".join(run.output.split())
    for part in message:
        assert part in flat, run.output
    assert set(run.recap) == {"localhost"}, run.output
    assert run.recap["localhost"]["failed"] == 1
    assert run.recap["localhost"]["changed"] == 0


def load_filter_plugin(name: str) -> ModuleType:
    """ansible/filter_plugins/NAME.py as a module, for its pure functions."""
    spec = importlib.util.spec_from_file_location(
        f"labstack_filter_{name}", ANSIBLE_DIR / "filter_plugins" / f"{name}.py"
    )
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
