#!/usr/bin/python3
"""Slurm's node states for Prometheus, through the node exporter's textfile
collector: DIR/slurm.prom, replaced atomically each time the timer runs.
When sinfo fails (slurmctld down) the file is left as it was, and its
timestamp ages: the SlurmStatesStale alert says so."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tempfile
import time


def main(directory: str) -> None:
    listed = subprocess.run(
        ["/usr/bin/sinfo", "--noheader", "--Node", "--format=%N %T"],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    ).stdout
    # --Node lists a node once per partition: keep one line per node.
    states = dict(line.split(maxsplit=1) for line in listed.splitlines() if line.strip())
    lines = [
        "# HELP labstack_slurm_node_state 1 for the Slurm state of each node"
        " (sinfo's %T without its flag characters).",
        "# TYPE labstack_slurm_node_state gauge",
    ]
    responding = [
        "# HELP labstack_slurm_node_responding 0 when slurmctld has not heard from"
        " the node (sinfo's '*').",
        "# TYPE labstack_slurm_node_responding gauge",
    ]
    for node, state in sorted(states.items()):
        base = re.sub(r"[^a-z_]", "", state.lower())
        lines.append(f'labstack_slurm_node_state{{node="{node}",state="{base}"}} 1')
        responding.append(
            f'labstack_slurm_node_responding{{node="{node}"}} {0 if "*" in state else 1}'
        )
    lines += [
        *responding,
        "# HELP labstack_slurm_metrics_time_seconds When the states were read.",
        "# TYPE labstack_slurm_metrics_time_seconds gauge",
        f"labstack_slurm_metrics_time_seconds {time.time():.0f}",
    ]
    fd, temporary = tempfile.mkstemp(dir=directory, prefix=".slurm.prom.")
    with os.fdopen(fd, "w") as out:
        out.write("\n".join(lines) + "\n")
    os.chmod(temporary, 0o644)
    os.replace(temporary, os.path.join(directory, "slurm.prom"))


if __name__ == "__main__":
    main(sys.argv[1])
