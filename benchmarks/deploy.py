"""Cold site.yml deployment vs its idempotent re-run, side by side, in all
and per layer (each playbook site.yml imports: storage, tracking, slurm,
kubernetes, ...), and the re-run with Mitogen (ansible.cfg's strategy) vs
Ansible's own `linear` strategy, the one a user gets without it.

    .venv/bin/python -m benchmarks.deploy [--rounds N]

Recreates the sandbox (its containers are removed: whatever was deployed
in them is lost), then per round: a cold site.yml on fresh nodes, the
re-run right after it, and a re-run with ANSIBLE_STRATEGY=linear. Prints
the times per layer and in all, re-run / cold (goal <= 0.15) and linear /
Mitogen.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from collections import defaultdict
from datetime import datetime
from pathlib import Path

import yaml

from tests.playbook import ANSIBLE_DIR, SANDBOX_INVENTORY, run_playbook

_BIN = Path(sys.executable).parent


def _layers(playbook: Path, layer: str = "") -> list[str]:
    """The layer of each play site.yml runs, in order: the name of the
    playbook that site.yml imports it through."""
    found: list[str] = []
    for entry in yaml.safe_load(playbook.read_text()):
        imported = entry.get("ansible.builtin.import_playbook")
        if imported:
            found += _layers(playbook.parent / imported, layer or Path(imported).stem)
        else:
            found.append(layer or playbook.stem)
    return found


def _seconds(stamp: str) -> float:
    """A time stamp of the ansible.posix.json callback, e.g. 2026-12-01T21:47:25.123456Z."""
    return datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()


def _timed_site(strategy: str = "") -> tuple[float, dict[str, float]]:
    """Wall time of one site.yml run, and the time of each layer's plays;
    STRATEGY, if given, instead of ansible.cfg's."""
    env = {
        **os.environ,
        "ANSIBLE_CONFIG": str(ANSIBLE_DIR / "ansible.cfg"),
        "ANSIBLE_STDOUT_CALLBACK": "ansible.posix.json",
        "ANSIBLE_LOAD_CALLBACK_PLUGINS": "1",
        **({"ANSIBLE_STRATEGY": strategy} if strategy else {}),
    }
    command = [str(_BIN / "ansible-playbook"), "-i", str(SANDBOX_INVENTORY)]
    start = time.perf_counter()
    run = subprocess.run(
        [*command, str(ANSIBLE_DIR / "site.yml")], env=env, capture_output=True, text=True
    )
    elapsed = time.perf_counter() - start
    if run.returncode != 0:
        sys.exit(f"site.yml failed:\n{run.stdout[-3000:]}{run.stderr[-2000:]}")
    plays = json.loads(run.stdout)["plays"]
    layers = _layers(ANSIBLE_DIR / "site.yml")
    per_layer: dict[str, float] = defaultdict(float)
    for layer, play in zip(layers, plays, strict=True):
        duration = play["play"]["duration"]
        per_layer[layer] += _seconds(duration["end"]) - _seconds(duration["start"])
    return elapsed, dict(per_layer)


def _sandbox(*args: str) -> None:
    run = run_playbook("sandbox.yml", SANDBOX_INVENTORY, *args)
    if run.returncode != 0:
        sys.exit(f"sandbox.yml {' '.join(args)} failed:\n{run.output[-3000:]}")


_HEADER = ("layer", "cold s", "re-run s", "linear s", "re-run/cold", "linear/re-run")
_WIDTHS = (-12, 8, 10, 10, 13, 15)


def _row(*cells: str) -> None:
    print(
        "".join(
            f"{cell:<{-w}}" if w < 0 else f"{cell:>{w}}"
            for cell, w in zip(cells, _WIDTHS, strict=True)
        )
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--rounds", type=int, default=1, help="cold + re-run pairs to measure")
    rounds = parser.parse_args().rounds
    if rounds < 1:
        parser.error("--rounds must be at least 1")
    cold: list[tuple[float, dict[str, float]]] = []
    rerun: list[tuple[float, dict[str, float]]] = []
    linear: list[tuple[float, dict[str, float]]] = []
    for round_ in range(1, rounds + 1):
        _sandbox("-e", "sandbox_state=absent")
        _sandbox()
        cold.append(_timed_site())
        rerun.append(_timed_site())
        linear.append(_timed_site("linear"))
        print(
            f"round {round_}: cold {cold[-1][0]:.1f} s, re-run {rerun[-1][0]:.1f} s, "
            f"re-run with linear {linear[-1][0]:.1f} s"
        )
    _row(*_HEADER)
    runs = (cold, rerun, linear)
    for layer in [*dict.fromkeys(_layers(ANSIBLE_DIR / "site.yml")), "site.yml"]:
        cold_s, rerun_s, linear_s = (
            statistics.median(
                total if layer == "site.yml" else times[layer] for total, times in kind
            )
            for kind in runs
        )
        _row(
            layer, f"{cold_s:.1f}", f"{rerun_s:.1f}", f"{linear_s:.1f}",
            f"{rerun_s / cold_s:.2f}", f"{linear_s / rerun_s:.2f}",
        )  # fmt: skip
    print("goal: re-run/cold <= 0.15")


if __name__ == "__main__":
    main()
