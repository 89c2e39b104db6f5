"""workload.torchrun: stopped by SIGTERM, or its workers stopped because another node's
were, it exits as its workers do (143), where torchrun itself exits 1; a Job's
podFailurePolicy then retries a preempted multi-node pod for free. A crash stays a crash."""

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


def _run(launcher: str, worker: str) -> subprocess.CompletedProcess[str]:
    argv = [sys.executable, "-m", launcher, "--nnodes=1", "--nproc-per-node=2"]
    argv += [f"--master-port={free_port()}", "--no-python", "sh", "-c", worker]
    return subprocess.run(argv, capture_output=True, text=True, check=False, timeout=120)


@pytest.mark.parametrize(
    ("launcher", "code"), [("workload.torchrun", 143), ("torch.distributed.run", 1)]
)
def test_workers_stopped_for_another_node_exit_as_stopped(launcher: str, code: int) -> None:
    # Both ranks checkpointed and exited 143: another node's pod got the SIGTERM.
    done = _run(launcher, "echo checkpointed; exit 143")
    assert done.returncode == code, done.stdout + done.stderr


@pytest.mark.parametrize(
    "worker",
    ["exit 1", 'if [ "$LOCAL_RANK" = 0 ]; then exit 143; fi; exit 1'],
    ids=["crashed", "one-rank-crashed"],
)
def test_a_crashed_worker_is_a_failure(worker: str) -> None:
    done = _run("workload.torchrun", worker)
    assert done.returncode == 1, done.stdout + done.stderr
    assert "ChildFailedError" in done.stderr
