"""Run ansible-playbook the way `make` does, and read its recap."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

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


def offline_inventory(tmp_path: Path, extra: str = "") -> Path:
    """A copy of the sandbox inventory (without its credentials) whose hosts
    are containers that do not exist, EXTRA appended to group_vars/all: any
    play that reached a lab host would show it in the recap, unreachable."""
    inventory = tmp_path / "inventory"
    shutil.copytree(SANDBOX_INVENTORY, inventory, ignore=shutil.ignore_patterns("credentials*"))
    with (inventory / "group_vars" / "all" / "main.yml").open("a") as main:
        main.write("sandbox_container_prefix: labstack-absent-\n" + extra)
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
