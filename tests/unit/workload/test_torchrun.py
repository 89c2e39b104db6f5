"""workload.torchrun: stopped by SIGTERM, it exits as its workers do (143), where torchrun
itself exits 1; a Job's podFailurePolicy then retries a preempted multi-node pod for free."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from workload.localservers import free_port


@pytest.mark.parametrize(
    ("launcher", "code"), [("workload.torchrun", 143), ("torch.distributed.run", 1)]
)
def test_a_stopped_torchrun_exits_as_its_workers(tmp_path: Path, launcher: str, code: int) -> None:
    started = tmp_path / "started"
    # A worker that checkpoints on SIGTERM and exits 143, as workload.train does.
    worker = f"trap 'echo checkpointed; exit 143' TERM; touch {started}; sleep 60 & wait"
    argv = [sys.executable, "-m", launcher, "--nnodes=1", "--nproc-per-node=1"]
    argv += [f"--master-port={free_port()}", "--no-python", "sh", "-c", worker]
    agent = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline = time.monotonic() + 60
    while not started.exists() and time.monotonic() < deadline:
        time.sleep(0.2)
    assert started.exists(), "the worker never started"
    agent.send_signal(signal.SIGTERM)
    output, _ = agent.communicate(timeout=60)
    assert "checkpointed" in output, output
    assert agent.returncode == code, output
