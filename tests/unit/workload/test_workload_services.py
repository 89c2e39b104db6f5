"""Tracking (async batched metrics), notifications and credentials."""

from __future__ import annotations

import sqlite3
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from mlflow.tracking import MlflowClient

from workload.config import parse
from workload.credentials import CredentialError, fetch_from_openbao, redact
from workload.launch import cli as launch_cli
from workload.localservers import Minio, free_port, mlflow_server
from workload.notify import notify
from workload.tracking import Tracker


def test_async_batched_metrics_all_arrive(mlflow_url: str) -> None:
    client = MlflowClient(mlflow_url)
    experiment = client.create_experiment("tracker-unit")
    tracker = Tracker(client, client.create_run(experiment).info.run_id, flush_seconds=0.2)
    for step in range(1200):  # more than one log_batch call (1000 metrics each)
        tracker.log_metrics({"a": step * 0.5, "b": -step}, step)
    tracker.flush()
    assert len(client.get_metric_history(tracker.run_id, "a")) == 1200
    tracker.log_metrics({"a": 1.0}, 1200)
    tracker.finish("FINISHED")
    history = client.get_metric_history(tracker.run_id, "a")
    assert sorted(m.step for m in history) == list(range(1201))
    assert client.get_run(tracker.run_id).info.status == "FINISHED"


def test_metrics_wait_while_mlflow_is_down_and_all_arrive_once(
    minio: Minio,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """MLflow down for longer than its client retries (here: once, at once): the metrics
    logged meanwhile are kept and sent again with backoff; finishing the run waits for
    them; each arrives, once."""
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "1")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR", "0")
    with mlflow_server(minio, tmp_path, "mlflow") as url:
        client = MlflowClient(url)
        run_id = client.create_run(client.create_experiment("outage")).info.run_id
    tracker = Tracker(client, run_id, flush_seconds=0.2)
    for step in range(1, 51):
        tracker.log_metrics({"loss": 1 / step}, step)

    deadline = time.monotonic() + 60
    while caplog.text.count("MLflow did not take 50 metrics, kept to send again") < 2:
        assert time.monotonic() < deadline, caplog.text
        time.sleep(0.2)

    with mlflow_server(minio, tmp_path, "mlflow", port=int(url.rsplit(":", 1)[1])):
        tracker.finish("FINISHED")
        history = client.get_metric_history(run_id, "loss")
        assert sorted(m.step for m in history) == list(range(1, 51))
        assert client.get_run(run_id).info.status == "FINISHED"


def test_metrics_a_restored_mlflow_lost_are_sent_again_once(
    minio: Minio, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """MLflow's store restored from a backup older than some metrics it took (the head
    node lost while the job ran on): before the run ends, the job sends those again,
    each once, and nothing else twice."""
    backup = tmp_path / "backup.db"
    with mlflow_server(minio, tmp_path, "mlflow") as url:
        client = MlflowClient(url)
        run_id = client.create_run(client.create_experiment("restored")).info.run_id
        tracker = Tracker(client, run_id, flush_seconds=0.2)
        for step in range(1, 21):
            tracker.log_metrics({"loss": 1 / step, "lr": 0.1}, step)
        tracker.flush()
        with sqlite3.connect(tmp_path / "mlflow.db") as db, sqlite3.connect(backup) as copy:
            db.backup(copy)
        for step in range(21, 31):  # taken, then lost with the node
            tracker.log_metrics({"loss": 1 / step, "lr": 0.1}, step)
        tracker.flush()
    backup.replace(tmp_path / "mlflow.db")  # the restore
    with mlflow_server(minio, tmp_path, "mlflow", port=int(url.rsplit(":", 1)[1])):
        assert len(client.get_metric_history(run_id, "loss")) == 20
        for step in range(31, 41):
            tracker.log_metrics({"loss": 1 / step, "lr": 0.1}, step)
        tracker.finish("FINISHED")
        assert sorted(m.step for m in client.get_metric_history(run_id, "lr")) == list(range(1, 41))
        losses = sorted((m.step, m.value) for m in client.get_metric_history(run_id, "loss"))
        assert losses == [(step, 1 / step) for step in range(1, 41)]
        assert client.get_run(run_id).info.status == "FINISHED"
    assert "MLflow no longer holds 20 metrics it took" in caplog.text


def test_params_of_a_resumed_run_must_not_change(mlflow_url: str) -> None:
    client = MlflowClient(mlflow_url)
    experiment = client.create_experiment("tracker-params")
    tracker = Tracker(client, client.create_run(experiment).info.run_id, enabled=False)
    tracker.log_params({"lr": 0.1, "seed": 1})
    tracker.log_params({"lr": 0.1, "seed": 1, "new": "x"})
    with pytest.raises(ValueError, match=r"other values for \['lr'\]"):
        tracker.log_params({"lr": 0.2})
    assert client.get_run(tracker.run_id).data.params == {"lr": "0.1", "seed": "1", "new": "x"}


def test_secrets_never_reach_mlflow(mlflow_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "s3cr3t-value-123")
    client = MlflowClient(mlflow_url)
    experiment = client.create_experiment("tracker-secrets")
    tracker = Tracker(client, client.create_run(experiment).info.run_id, enabled=False)
    with pytest.raises(ValueError, match="'endpoint' to MLflow: its value contains a secret"):
        tracker.set_tags({"endpoint": "http://u:s3cr3t-value-123@host"})
    with pytest.raises(ValueError, match="'password'"):
        tracker.log_params({"password": "s3cr3t-value-123"})
    assert "s3cr3t" not in str(client.get_run(tracker.run_id).data)
    assert redact("key=s3cr3t-value-123") == "key=***"


def test_webhook_delivers_and_a_failing_one_does_not_raise() -> None:
    received: list[bytes] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            received.append(self.rfile.read(int(self.headers["Content-Length"])))
            self.send_response(200)
            self.end_headers()

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        assert notify(f"http://127.0.0.1:{server.server_address[1]}/x", "run 1 started")
    finally:
        server.shutdown()
    assert received == [b'{"text": "run 1 started"}']
    assert not notify(f"http://127.0.0.1:{free_port()}/closed", "nobody listens", timeout=2)
    assert not notify("file:///etc/passwd", "not http")
    assert not notify(None, "unset")


def test_openbao_failure_names_the_endpoint_never_the_secret() -> None:
    port = free_port()
    env = {
        "BAO_ADDR": f"http://127.0.0.1:{port}",
        "BAO_ROLE_ID": "role-1",
        "BAO_SECRET_ID": "secret-id-value",
    }
    with pytest.raises(CredentialError, match=f"OpenBao at http://127.0.0.1:{port}") as info:
        fetch_from_openbao(env)
    assert "secret-id-value" not in str(info.value)
    assert "BAO_SECRET_ID" not in env, "the secret id is consumed, never passed on"
    with pytest.raises(CredentialError, match="none of BAO_TOKEN, BAO_K8S_ROLE"):
        fetch_from_openbao({"BAO_ADDR": "http://127.0.0.1:1"})
    assert fetch_from_openbao({}) == []


def test_kubernetes_login_names_a_missing_or_malformed_token_file(tmp_path: Path) -> None:
    env = {"BAO_ADDR": "http://127.0.0.1:1", "BAO_K8S_ROLE": "jobs"}
    missing = tmp_path / "token"
    with pytest.raises(CredentialError, match=f"BAO_K8S_JWT_PATH {missing}: No such file"):
        fetch_from_openbao({**env, "BAO_K8S_JWT_PATH": str(missing)})
    missing.write_text("not-a-jwt\n")
    with pytest.raises(CredentialError, match="not a JWT"):
        fetch_from_openbao({**env, "BAO_K8S_JWT_PATH": str(missing)})
    with pytest.raises(CredentialError, match="/var/run/secrets/openbao/token"):
        fetch_from_openbao(env)  # the chart's path, absent here


def test_train_rejects_bad_flags_by_name() -> None:
    with pytest.raises(SystemExit, match="--batch-size must be positive"):
        parse(["--batch-size", "0"])
    with pytest.raises(SystemExit, match="--device 'tpu'"):
        parse(["--device", "tpu"])
    assert parse(["--dev"]).effective().max_steps == 20


def test_ls_lists_a_researchers_runs_newest_first(
    mlflow_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    config = tmp_path / "labstack.toml"
    config.write_text(
        f'[client]\nmlflow_uri = "{mlflow_url}"\nopenbao_addr = "https://bao.invalid:8200"\n'
        '[jobs]\nmlflow_uri = "https://mlflow:5000"\ns3_endpoint = "https://minio:9000"\n'
        'openbao_addr = "https://bao:8200"\n'
    )
    client = MlflowClient(mlflow_url)
    experiment = client.create_experiment(f"ls-{time.time_ns()}")

    def submitted(name: str, by: str, status: str) -> str:
        tags = {"labstack.backend": "local", "job.id": "999999", "labstack.job_name": name}
        run = client.create_run(
            experiment, run_name=name, tags={**tags, "labstack.submitted_by": by}
        )
        if status != "RUNNING":
            client.set_terminated(run.info.run_id, status)
        time.sleep(0.01)  # one start time each, in this order
        return run.info.run_id

    first = submitted("alice-1", "alice", "FINISHED")
    other = submitted("bob-1", "bob", "FAILED")
    newest = submitted("alice-2", "alice", "RUNNING")
    client.create_run(experiment, run_name="by-hand")  # not labstack's: never listed

    def ls(*args: str) -> tuple[int, list[str], str]:
        capsys.readouterr()  # what MLflow's client printed before
        code = launch_cli.main(["--config", str(config), "ls", *args])
        out, err = capsys.readouterr()
        return code, out.splitlines(), err

    monkeypatch.setenv("USER", "alice")
    code, lines, _ = ls()
    assert code == 0
    assert [line.split()[0] for line in lines[::2]] == [newest, first]
    assert lines[0].startswith(f"{newest}  RUNNING   local job 999999 ")  # and its state
    assert lines[2] == f"{first}  FINISHED  local job 999999"
    assert lines[3].startswith("    alice-1  ")
    assert lines[3].endswith(" UTC  by alice")
    assert max(len(line) for line in lines) <= 80

    code, lines, _ = ls("--all", "--limit", "2")
    assert [line.split()[0] for line in lines[::2]] == [newest, other]

    monkeypatch.setenv("USER", "carol")
    assert ls()[1] == ["no run submitted by labstack as carol"]

    monkeypatch.setenv("USER", "x' or '1'='1")  # quoted into MLflow's search: refused
    code, lines, err = ls()
    assert (code, lines) == (2, [])
    assert "USER=\"x' or '1'='1\" is not a user name" in err
    with pytest.raises(SystemExit):
        ls("--limit", "0")
    assert "'0' is not a positive whole number" in capsys.readouterr().err
