#!/usr/bin/python3
"""The health of this node's NVIDIA GPUs for Prometheus, through the node
exporter's textfile collector: DIR/gpu.prom, replaced atomically each time
the timer runs. What DCGM's exporter would report, from what the driver
ships: nvidia-smi's ECC, page retirement and temperature readings, and the
Xid errors the driver logged to the kernel log since boot.

    gpu-metrics DIR

A source that fails (nvidia-smi hung or the GPU off the bus, journalctl
refused) is reported as such (labstack_gpu_metrics_up{source} 0) and the
rest is still written: an Xid 79 leaves nvidia-smi failing, and the Xid
count is what says why."""

from __future__ import annotations

import csv
import os
import re
import subprocess
import sys
import tempfile
import time
from collections import Counter

NVIDIA_SMI = "/usr/bin/nvidia-smi"
JOURNALCTL = "/usr/bin/journalctl"
# nvidia-smi --help-query-gpu; the first three identify the GPU.
FIELDS = (
    "index",
    "uuid",
    "pci.bus_id",
    "ecc.errors.uncorrected.volatile.total",
    "ecc.errors.corrected.volatile.total",
    "retired_pages.pending",
    "temperature.gpu",
)
# Each reading of nvidia-smi: its field, metric and HELP text.
GAUGES = (
    (
        "ecc.errors.uncorrected.volatile.total",
        "labstack_gpu_ecc_uncorrected_volatile_errors",
        "Uncorrected ECC errors of the GPU since the driver loaded.",
    ),
    (
        "ecc.errors.corrected.volatile.total",
        "labstack_gpu_ecc_corrected_volatile_errors",
        "Corrected ECC errors of the GPU since the driver loaded.",
    ),
    (
        "retired_pages.pending",
        "labstack_gpu_retired_pages_pending",
        "1 when memory pages of the GPU wait for a reboot to be retired.",
    ),
    (
        "temperature.gpu",
        "labstack_gpu_temperature_celsius",
        "Core temperature of the GPU.",
    ),
)
# NVRM: Xid (PCI:0000:3b:00): 79, pid='<unknown>', name=<unknown>, GPU has fallen off the bus.
XID = re.compile(r"NVRM: Xid \((?:PCI:)?([0-9a-fA-F]+):([0-9a-fA-F]+):([0-9a-fA-F]+)\): (\d+),")


def bus_id(domain: str, bus: str, device_function: str) -> str:
    """The kernel's spelling of a PCI address (lspci -D, /sys/bus/pci/devices):
    nvidia-smi's 00000000:3B:00.0 and the Xid's PCI:0000:3b:00 are both
    0000:3b:00.0 (a GPU is function 0)."""
    if "." not in device_function:
        device_function += ".0"
    return f"{int(domain, 16):04x}:{bus.lower()}:{device_function.lower()}"


def _value(field: str, text: str) -> str | None:
    """A reading as a number, or None where the GPU has none ([N/A],
    [Not Supported]: no ECC on the card, no page retirement on one that
    remaps rows instead)."""
    if text.startswith("[") or text in ("", "N/A"):
        return None
    if field == "retired_pages.pending":
        return {"Yes": "1", "No": "0"}.get(text)
    return text


def parse_gpus(text: str) -> list[dict[str, str | None]]:
    """nvidia-smi's --format=csv,noheader,nounits lines, one GPU each."""
    gpus: list[dict[str, str | None]] = []
    for row in csv.reader(text.splitlines(), skipinitialspace=True):
        address = row[2].strip().split(":") if len(row) == len(FIELDS) else []
        if len(address) != 3:
            continue  # not a GPU's line
        gpu = {
            field: _value(field, value.strip()) for field, value in zip(FIELDS, row, strict=True)
        }
        gpu["pci.bus_id"] = bus_id(*address)
        gpus.append(gpu)
    return gpus


def count_xids(text: str) -> Counter[tuple[str, str]]:
    """How many Xid errors of each code each GPU (PCI address) logged."""
    counts: Counter[tuple[str, str]] = Counter()
    for match in XID.finditer(text):
        domain, bus, device, xid = match.groups()
        counts[bus_id(domain, bus, device), xid] += 1
    return counts


def exposition(
    gpus: list[dict[str, str | None]] | None,
    xids: Counter[tuple[str, str]] | None,
    now: float,
) -> str:
    """The .prom file's text; None for a source that failed."""
    lines = []
    for field, metric, help_text in GAUGES:
        lines += [f"# HELP {metric} {help_text}", f"# TYPE {metric} gauge"]
        for gpu in gpus or []:
            if gpu[field] is not None:
                labels = (
                    f'gpu="{gpu["index"]}",uuid="{gpu["uuid"]}",pci_bus_id="{gpu["pci.bus_id"]}"'
                )
                lines.append(f"{metric}{{{labels}}} {gpu[field]}")
    # By PCI address only: the labels stay the same when nvidia-smi fails.
    lines += [
        "# HELP labstack_gpu_xid_errors_total Xid errors the driver logged for the GPU"
        " at this PCI address since boot, by Xid code.",
        "# TYPE labstack_gpu_xid_errors_total counter",
    ]
    for (pci, xid), count in sorted((xids or Counter()).items()):
        lines.append(f'labstack_gpu_xid_errors_total{{pci_bus_id="{pci}",xid="{xid}"}} {count}')
    lines += [
        "# HELP labstack_gpu_metrics_up 1 when the source answered, 0 when it failed.",
        "# TYPE labstack_gpu_metrics_up gauge",
        f'labstack_gpu_metrics_up{{source="kernel-log"}} {0 if xids is None else 1}',
        f'labstack_gpu_metrics_up{{source="nvidia-smi"}} {0 if gpus is None else 1}',
        "# HELP labstack_gpu_metrics_time_seconds When the GPUs were last read.",
        "# TYPE labstack_gpu_metrics_time_seconds gauge",
        f"labstack_gpu_metrics_time_seconds {now:.0f}",
    ]
    return "\n".join(lines) + "\n"


def _output(argv: list[str]) -> str | None:
    """A program's output, or None when it fails or hangs."""
    try:
        done = subprocess.run(  # noqa: S603 (fixed programs and arguments)
            argv, capture_output=True, text=True, check=False, timeout=30
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return done.stdout if done.returncode == 0 else None


def main(directory: str) -> None:
    queried = _output(
        [NVIDIA_SMI, f"--query-gpu={','.join(FIELDS)}", "--format=csv,noheader,nounits"]
    )
    # -k: this boot's kernel messages.
    logged = _output([JOURNALCTL, "-k", "-o", "cat", "--no-pager"])
    text = exposition(
        None if queried is None else parse_gpus(queried),
        None if logged is None else count_xids(logged),
        time.time(),
    )
    fd, temporary = tempfile.mkstemp(dir=directory, prefix=".gpu.prom.")
    with os.fdopen(fd, "w") as out:
        out.write(text)
    os.chmod(temporary, 0o644)
    os.replace(temporary, os.path.join(directory, "gpu.prom"))


if __name__ == "__main__":
    main(sys.argv[1])
