"""The nvidia role's GPU health exporter (ansible/roles/nvidia/files/gpu-metrics.py):
recorded nvidia-smi and kernel-log text in, the node exporter's .prom text out."""

from __future__ import annotations

import importlib.util
import os
import stat
from collections import Counter
from pathlib import Path
from types import ModuleType

import pytest

from tests.playbook import ANSIBLE_DIR

_SCRIPT = ANSIBLE_DIR / "roles" / "nvidia" / "files" / "gpu-metrics.py"


def _load() -> ModuleType:
    spec = importlib.util.spec_from_file_location("labstack_gpu_metrics", _SCRIPT)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


gpu_metrics = _load()

# Two GPUs: an A100 (ECC, rows remapped rather than pages retired: [N/A]) and
# an older card without ECC ([N/A]) that has pages waiting for retirement.
NVIDIA_SMI = (
    "0, GPU-6f1c2a1e-0d4b-4d6a-9a53-1f0e2c7b8a90, 00000000:3B:00.0, 2, 17, [N/A], 41\n"
    "1, GPU-0a9e7c55-3f2d-4b1e-8c47-7d6b5e4a3f21, 00000000:5E:00.0,"
    " [N/A], [Not Supported], Yes, 38\n"
)

KERNEL_LOG = """\
nvidia-nvlink: Nvlink Core is being initialized, major device number 239
NVRM: loading NVIDIA UNIX x86_64 Kernel Module  535.183.01  Sun May 12 19:39:15 UTC 2024
NVRM: Xid (PCI:0000:3b:00): 13, pid=4121, name=python3, Graphics SM Warp Exception on (GPC 0, TPC 1, SM 0): Out Of Range Address
NVRM: Xid (PCI:0000:3b:00): 13, pid=4121, name=python3, Graphics Exception: ESR 0x504648=0x102000e 0x504650=0x0
NVRM: Xid (PCI:0000:5e:00): 79, pid='<unknown>', name=<unknown>, GPU has fallen off the bus.
NVRM: GPU 0000:5e:00.0: GPU has fallen off the bus.
"""  # noqa: E501 (the kernel's lines, as logged)

IDENTITY_0 = 'gpu="0",uuid="GPU-6f1c2a1e-0d4b-4d6a-9a53-1f0e2c7b8a90",pci_bus_id="0000:3b:00.0"'
IDENTITY_1 = 'gpu="1",uuid="GPU-0a9e7c55-3f2d-4b1e-8c47-7d6b5e4a3f21",pci_bus_id="0000:5e:00.0"'


def _samples(text: str) -> list[str]:
    return [line for line in text.splitlines() if not line.startswith("#")]


@pytest.mark.parametrize(
    ("address", "expected"),
    [
        (("00000000", "3B", "00.0"), "0000:3b:00.0"),  # nvidia-smi's
        (("0000", "3b", "00"), "0000:3b:00.0"),  # the Xid's
        (("00010000", "01", "00.0"), "10000:01:00.0"),  # behind a VMD domain
    ],
)
def test_both_spellings_of_a_pci_address_become_the_kernels(
    address: tuple[str, str, str], expected: str
) -> None:
    assert gpu_metrics.bus_id(*address) == expected


def test_readings_a_gpu_lacks_are_absent() -> None:
    gpus = gpu_metrics.parse_gpus(NVIDIA_SMI + "\n")
    assert gpus == [
        {
            "index": "0",
            "uuid": "GPU-6f1c2a1e-0d4b-4d6a-9a53-1f0e2c7b8a90",
            "pci.bus_id": "0000:3b:00.0",
            "ecc.errors.uncorrected.volatile.total": "2",
            "ecc.errors.corrected.volatile.total": "17",
            "retired_pages.pending": None,
            "temperature.gpu": "41",
        },
        {
            "index": "1",
            "uuid": "GPU-0a9e7c55-3f2d-4b1e-8c47-7d6b5e4a3f21",
            "pci.bus_id": "0000:5e:00.0",
            "ecc.errors.uncorrected.volatile.total": None,
            "ecc.errors.corrected.volatile.total": None,
            "retired_pages.pending": "1",
            "temperature.gpu": "38",
        },
    ]


def test_xid_errors_are_counted_per_gpu_and_code() -> None:
    assert gpu_metrics.count_xids(KERNEL_LOG) == Counter(
        {("0000:3b:00.0", "13"): 2, ("0000:5e:00.0", "79"): 1}
    )
    assert gpu_metrics.count_xids("NVRM: GPU 0000:5e:00.0: GPU has fallen off the bus.\n") == {}


def test_the_exposition_of_two_gpus() -> None:
    text = gpu_metrics.exposition(
        gpu_metrics.parse_gpus(NVIDIA_SMI), gpu_metrics.count_xids(KERNEL_LOG), 1765000000.4
    )
    assert _samples(text) == [
        f"labstack_gpu_ecc_uncorrected_volatile_errors{{{IDENTITY_0}}} 2",
        f"labstack_gpu_ecc_corrected_volatile_errors{{{IDENTITY_0}}} 17",
        f"labstack_gpu_retired_pages_pending{{{IDENTITY_1}}} 1",
        f"labstack_gpu_temperature_celsius{{{IDENTITY_0}}} 41",
        f"labstack_gpu_temperature_celsius{{{IDENTITY_1}}} 38",
        'labstack_gpu_xid_errors_total{pci_bus_id="0000:3b:00.0",xid="13"} 2',
        'labstack_gpu_xid_errors_total{pci_bus_id="0000:5e:00.0",xid="79"} 1',
        'labstack_gpu_metrics_up{source="kernel-log"} 1',
        'labstack_gpu_metrics_up{source="nvidia-smi"} 1',
        "labstack_gpu_metrics_time_seconds 1765000000",
    ]
    # Every metric is introduced once, and the Xid count is a counter.
    helps = [line.split()[2] for line in text.splitlines() if line.startswith("# HELP")]
    assert len(helps) == len(set(helps)) == 7
    assert "# TYPE labstack_gpu_xid_errors_total counter" in text.splitlines()


def test_a_failed_nvidia_smi_still_reports_the_xids() -> None:
    text = gpu_metrics.exposition(None, gpu_metrics.count_xids(KERNEL_LOG), 1765000000)
    assert _samples(text) == [
        'labstack_gpu_xid_errors_total{pci_bus_id="0000:3b:00.0",xid="13"} 2',
        'labstack_gpu_xid_errors_total{pci_bus_id="0000:5e:00.0",xid="79"} 1',
        'labstack_gpu_metrics_up{source="kernel-log"} 1',
        'labstack_gpu_metrics_up{source="nvidia-smi"} 0',
        "labstack_gpu_metrics_time_seconds 1765000000",
    ]


def test_the_file_is_written_when_nothing_answers(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """main() as the timer runs it, with a program that fails in place of
    nvidia-smi and journalctl: gpu.prom says so, readable by the exporter."""
    failing = tmp_path / "fails"
    failing.write_text("#!/bin/sh\necho 'NVIDIA-SMI has failed' >&2\nexit 9\n")
    failing.chmod(0o755)
    monkeypatch.setattr(gpu_metrics, "NVIDIA_SMI", str(failing))
    monkeypatch.setattr(gpu_metrics, "JOURNALCTL", str(failing))
    out = tmp_path / "textfile"
    out.mkdir()
    gpu_metrics.main(str(out))
    assert os.listdir(out) == ["gpu.prom"]  # no temporary file left behind
    written = out / "gpu.prom"
    assert stat.S_IMODE(written.stat().st_mode) == 0o644
    samples = _samples(written.read_text())
    assert samples[:2] == [
        'labstack_gpu_metrics_up{source="kernel-log"} 0',
        'labstack_gpu_metrics_up{source="nvidia-smi"} 0',
    ]
    assert samples[2].startswith("labstack_gpu_metrics_time_seconds ")
    assert len(samples) == 3
