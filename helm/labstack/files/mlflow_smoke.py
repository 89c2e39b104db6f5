"""`helm test` for labstack: log an MLflow run with an artifact, read it back.

The artifact goes through MLflow's artifact proxy to MinIO and back, so a pass
proves the tracking server, its database, basic-auth and the bucket together.
Credentials come from the environment (Secret references) only.
"""

from __future__ import annotations

import os
import sys
import uuid
from pathlib import Path

import mlflow
from mlflow.artifacts import download_artifacts
from mlflow.tracking import MlflowClient

WORK = Path(os.environ["SMOKE_DIR"])


def main() -> None:
    token = uuid.uuid4().hex
    src = WORK / "upload"
    src.mkdir(parents=True, exist_ok=True)
    (src / "probe.txt").write_text(f"labstack helm test {token}\n")

    mlflow.set_experiment("labstack-helm-test")
    with mlflow.start_run(run_name=f"helm-test-{token[:8]}") as run:
        mlflow.log_param("token", token)
        mlflow.log_metric("probe", 1.0)
        mlflow.log_artifact(str(src / "probe.txt"), artifact_path="probe")
    print(f"logged run {run.info.run_id}", flush=True)

    client = MlflowClient()
    fetched = client.get_run(run.info.run_id)
    if fetched.data.params.get("token") != token:
        sys.exit(f"run {run.info.run_id}: param token not read back")
    dst = WORK / "download"
    dst.mkdir(parents=True, exist_ok=True)
    path = download_artifacts(
        run_id=run.info.run_id, artifact_path="probe/probe.txt", dst_path=str(dst)
    )
    got = Path(path).read_text()
    if token not in got:
        sys.exit(f"run {run.info.run_id}: artifact read back differs: {got!r}")
    print(f"artifact read back intact from run {run.info.run_id}", flush=True)


if __name__ == "__main__":
    main()
