"""Training runs against real MinIO + MLflow: provenance, metrics, checkpoints, exact resume."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import torch
from mlflow.tracking import MlflowClient

from workload import checkpoint, train
from workload.config import TrainConfig
from workload.credentials import FETCHED
from workload.data import Manifest, publish
from workload.localservers import Minio, free_port, minio_server, mlflow_server
from workload.s3 import ensure_bucket, make_client
from workload.shapes import write_tar

REPO = Path(__file__).resolve().parents[3]
STEPS = 16  # dev mode: 256 images, checkpoints every 10 steps and at the end


class Hook(BaseHTTPRequestHandler):
    received: list[str]

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        self.received.append(json.loads(body)["text"])
        self.send_response(200)
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture(scope="module")
def webhook() -> Iterator[tuple[str, list[str]]]:
    received: list[str] = []
    handler = type("RecordingHook", (Hook,), {"received": received})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/hook", received
    server.shutdown()


@pytest.fixture(scope="module")
def shapes(minio: Minio, tmp_path_factory: pytest.TempPathFactory) -> Manifest:
    from workload.s3 import make_client

    root = tmp_path_factory.mktemp("shapes")
    write_tar(root / "src" / "shapes.tar", train=256, val=64, size=40, seed=0)
    client = make_client(minio.settings())
    return publish(client, root / "src", "shapes", "itest")


def train_env(minio: Minio, mlflow_url: str, cache: Path, hook: str) -> dict[str, str]:
    return {
        **os.environ,
        **minio.env(),
        "MLFLOW_TRACKING_URI": mlflow_url,
        "DATA_PATH": str(cache / "shared"),
        "DATA_EPHEMERAL_PATH": str(cache / "local"),
        "LABSTACK_WEBHOOK_URL": hook,
        "PYTHONUNBUFFERED": "1",
    }


def train_argv(*extra: str) -> list[str]:
    argv = [sys.executable, "-m", "workload.train", "--dev", "--max-steps", str(STEPS)]
    argv += ["--dataset-name", "shapes", "--dataset-version", "itest", "--log-every", "2"]
    argv += ["--experiment", "itest", "--repo", str(REPO), "--lock-file", str(REPO / "uv.lock")]
    return argv + list(extra)


def experiment_id(client: MlflowClient) -> str:
    found = client.get_experiment_by_name("itest")
    return found.experiment_id if found else client.create_experiment("itest")


def final_state(client: MlflowClient, run_id: str) -> dict[str, Any]:
    state = checkpoint.latest(client, run_id)
    assert state is not None, f"run {run_id} has no checkpoint"
    return state


@pytest.fixture(scope="module")
def uninterrupted(
    minio: Minio, mlflow_url: str, shapes: Manifest, webhook: tuple[str, list[str]]
) -> tuple[str, str]:
    with tempfile.TemporaryDirectory() as cache:
        done = subprocess.run(
            train_argv(),
            env=train_env(minio, mlflow_url, Path(cache), webhook[0]),
            capture_output=True,
            text=True,
            timeout=600,
            check=False,
        )
    assert done.returncode == 0, done.stderr[-4000:]
    client = MlflowClient(mlflow_url)
    runs = client.search_runs([experiment_id(client)], "attributes.run_name != 'ddp'")
    runs = [r for r in runs if r.info.run_name not in {"ddp", "preempted"}]
    assert len(runs) == 1
    return runs[0].info.run_id, done.stdout + done.stderr


def test_run_records_params_tags_metrics_artifacts(
    uninterrupted: tuple[str, str],
    mlflow_url: str,
    minio: Minio,
    shapes: Manifest,
    webhook: tuple[str, list[str]],
) -> None:
    run_id, output = uninterrupted
    client = MlflowClient(mlflow_url)
    run = client.get_run(run_id)
    assert run.info.status == "FINISHED"

    params = run.data.params
    assert params["max_steps"] == str(STEPS)
    assert params["dev"] == "True"
    assert params["dataset_version"] == "itest"
    assert set(params) == {f.name for f in dataclasses.fields(TrainConfig)}  # all of it

    tags = run.data.tags
    head = subprocess.run(["git", "-C", str(REPO), "rev-parse", "HEAD"], capture_output=True)
    assert tags["git.commit"] == head.stdout.decode().strip()
    assert tags["git.dirty"] in {"True", "False"}
    assert tags["data.version"] == "itest"
    assert tags["data.manifest_sha256"] == shapes.digest
    assert tags["env.torch"] == torch.__version__
    assert tags["env.lock_sha256"] == hashlib.sha256((REPO / "uv.lock").read_bytes()).hexdigest()
    assert tags["job.host"]
    assert tags["job.scheduler"] == "local"

    losses = client.get_metric_history(run_id, "train.loss")
    assert [m.step for m in sorted(losses, key=lambda m: m.step)] == list(range(2, STEPS + 1, 2))
    assert len(client.get_metric_history(run_id, "val.accuracy")) == 1

    names = {a.path for a in client.list_artifacts(run_id, "checkpoints")}
    assert names == {"checkpoints/step-00000010.pt", f"checkpoints/step-{STEPS:08d}.pt"}
    if tags["git.dirty"] == "True":
        assert "git/diff.patch" in {a.path for a in client.list_artifacts(run_id, "git")}

    everything = json.dumps([params, tags]) + output
    assert minio.secret_key not in everything
    messages = [m for m in webhook[1] if run_id in m]
    assert any("started" in m for m in messages)
    assert any("finished" in m and f"/runs/{run_id}" in m for m in messages)


def test_preempted_run_resumes_to_the_same_weights(
    uninterrupted: tuple[str, str], minio: Minio, mlflow_url: str, tmp_path: Path
) -> None:
    client = MlflowClient(mlflow_url)
    run_id = client.create_run(experiment_id(client), run_name="preempted").info.run_id
    dead_hook = f"http://127.0.0.1:{free_port()}/nobody-listens"
    env = {**train_env(minio, mlflow_url, tmp_path, dead_hook), "MLFLOW_RUN_ID": run_id}
    argv = train_argv("--step-sleep", "0.3")

    proc = subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    assert proc.stdout is not None
    for line in proc.stdout:
        if line.strip() == b"step 3":
            proc.send_signal(signal.SIGTERM)
            break
    proc.stdout.read()
    assert proc.wait(timeout=300) == 128 + signal.SIGTERM
    assert client.get_run(run_id).info.status == "KILLED"
    stopped_at = final_state(client, run_id)["step"]
    assert 3 <= stopped_at < 10

    resumed = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=600)
    assert resumed.returncode == 0, resumed.stderr[-4000:]
    assert f"resumed at step {stopped_at}" in resumed.stderr
    assert client.get_run(run_id).info.status == "FINISHED"

    want = final_state(client, uninterrupted[0])
    got = final_state(client, run_id)
    assert got["step"] == want["step"] == STEPS
    assert want["model"].keys() == got["model"].keys()
    for name, tensor in want["model"].items():
        assert torch.equal(tensor, got["model"][name]), f"{name} differs after resume"


def test_ddp_two_ranks_with_torchrun(
    minio: Minio, mlflow_url: str, shapes: Manifest, tmp_path: Path
) -> None:
    client = MlflowClient(mlflow_url)
    run_id = client.create_run(experiment_id(client), run_name="ddp").info.run_id
    env = {**train_env(minio, mlflow_url, tmp_path, ""), "MLFLOW_RUN_ID": run_id}
    argv = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2"]
    argv += ["--master-addr", "127.0.0.1", "--master-port", str(free_port())]
    argv += train_argv("--max-steps", "2")[1:]  # torchrun runs "-m workload.train ..."
    done = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-4000:]
    run = client.get_run(run_id)
    assert run.info.status == "FINISHED"
    assert run.data.tags["dist.world_size"] == "2"
    state = final_state(client, run_id)
    assert state["step"] == 2
    assert len(state["rng"]) == 2  # every rank's RNG state, for an exact resume


def test_a_failing_run_logs_its_traceback_with_every_secret_redacted(
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """`python -m workload.train` (entry): the traceback reaches the job's log redacted."""
    monkeypatch.setitem(FETCHED, "AWS_SECRET_ACCESS_KEY", "s3cr3t-fetched-456")

    def failing(argv: list[str] | None = None) -> int:
        raise RuntimeError("cannot reach http://key:s3cr3t-fetched-456@storage:9000")

    monkeypatch.setattr(train, "main", failing)
    assert train.entry([]) == 1
    logged = caplog.text + "".join(capsys.readouterr())
    assert "Traceback (most recent call last)" in logged
    assert "RuntimeError: cannot reach http://key:***@storage:9000" in logged
    assert "s3cr3t" not in logged


class _Planted:
    """What a job with the shared MLflow login could upload into another run's checkpoints."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Any, ...]:
        return (os.system, (f"touch {self.marker}",))


def test_a_planted_checkpoint_runs_nothing_on_resume(mlflow_url: str, tmp_path: Path) -> None:
    client = MlflowClient(mlflow_url)
    run_id = client.create_run(experiment_id(client)).info.run_id
    marker = tmp_path / "executed"
    planted = tmp_path / "step-99999999.pt"
    torch.save({"step": 99999999, "model": _Planted(marker)}, planted)
    client.log_artifact(run_id, str(planted), checkpoint.ARTIFACT_DIR)
    with pytest.raises(checkpoint.CheckpointError, match=r"step-99999999\.pt .* nothing in it ran"):
        checkpoint.latest(client, run_id)
    assert not marker.exists(), "resuming the run ran the planted checkpoint's code"


def test_checkpoints_wait_on_local_disk_while_minio_is_down(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """MinIO down for longer than the MLflow client retries (here: once, at once): saving
    does not wait, each checkpoint stays on local disk and is retried with backoff, and all
    are stored, in order, once MinIO is back."""
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "1")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR", "0")
    binary = os.environ["LABSTACK_MINIO_BIN"]
    with minio_server(binary, tmp_path / "minio") as server:
        s3 = make_client(server.settings())
        ensure_bucket(s3, "mlflow", versioned=False)
    (tmp_path / "mlflow").mkdir()
    with mlflow_server(server, tmp_path / "mlflow", "mlflow") as url:  # MinIO is down
        client = MlflowClient(url)
        run_id = client.create_run(experiment_id(client)).info.run_id
        uploads = checkpoint.Uploads(client, run_id, lambda: None)
        for step in (10, 20):
            uploads.save({"step": step, "weights": torch.full((4,), float(step))})
        assert uploads.pending() == ["step-00000010.pt", "step-00000020.pt"]
        assert sorted(p.name for p in uploads.spool.iterdir()) == uploads.pending()

        def attempts() -> int:
            return caplog.text.count("checkpoint step-00000010.pt not uploaded (attempt")

        deadline = time.monotonic() + 60
        while attempts() < 2:  # failed, waited, and failed again
            assert time.monotonic() < deadline, caplog.text
            time.sleep(0.2)
        assert uploads.pending() == ["step-00000010.pt", "step-00000020.pt"]

        with minio_server(binary, tmp_path / "minio", again=server):
            uploads.close()
            stored = [a.path for a in client.list_artifacts(run_id, checkpoint.ARTIFACT_DIR)]
            assert stored == ["checkpoints/step-00000010.pt", "checkpoints/step-00000020.pt"]
            latest = checkpoint.latest(client, run_id)
            assert latest is not None
            assert latest["step"] == 20
            assert torch.equal(latest["weights"], torch.full((4,), 20.0))
        assert not uploads.spool.exists()
