"""Training step time: no logging vs async batched logging vs synchronous `log_metric` per call.

Goal: async batched logging costs < 2% over no logging. The synchronous ratio
is reported. Real `mlflow server` (artifacts in a real MinIO) on loopback: the
server shares this machine's cores with the training loop, unlike a real lab.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import torch
from common import median_seconds, minio_binary, minio_server, mlflow_server
from mlflow.tracking import MlflowClient
from torch import nn

from workload.model import SmallCNN
from workload.s3 import S3Settings, ensure_bucket, make_client
from workload.tracking import Tracker

STEPS, REPEATS, METRICS_PER_STEP = 200, 5, 3


def main() -> None:
    torch.manual_seed(0)
    torch.set_num_threads(1)
    model = SmallCNN(4)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    x = torch.randn(32, 3, 32, 32)
    y = torch.randint(0, 4, (32,))
    loss_fn = nn.CrossEntropyLoss()

    def step() -> float:
        loss = loss_fn(model(x), y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        return loss.item()

    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        with minio_server(minio_binary(), tmp / "minio") as minio:
            s3 = make_client(S3Settings(minio.endpoint, minio.access_key, minio.secret_key))
            ensure_bucket(s3, "mlflow", versioned=False)
            with mlflow_server(minio, tmp, "mlflow") as url:
                client = MlflowClient(url)
                experiment = client.create_experiment("bench")

                def new_run() -> str:
                    return client.create_run(experiment).info.run_id

                def no_logging() -> None:
                    for _ in range(STEPS):
                        step()

                tracker = Tracker(client, new_run(), flush_seconds=2.0)
                sync_run = new_run()

                def async_batched() -> None:
                    for k in range(STEPS):
                        loss = step()
                        tracker.log_metrics({"loss": loss, "lr": 1e-3, "epoch": 0}, k)
                    tracker.flush()  # every metric delivered before the clock stops

                def synchronous() -> None:
                    run_id = sync_run
                    for k in range(STEPS):
                        loss = step()
                        for key, value in (("loss", loss), ("lr", 1e-3), ("epoch", 0)):
                            client.log_metric(run_id, key, value, step=k)

                no_logging()  # warm up
                results = {"none": [], "async": [], "sync": []}
                for _ in range(REPEATS):  # interleaved, so drift hits all three alike
                    results["none"].append(median_seconds(no_logging, 1))
                    results["async"].append(median_seconds(async_batched, 1))
                    results["sync"].append(median_seconds(synchronous, 1))
                tracker.finish("FINISHED")
                med = {k: sorted(v)[len(v) // 2] / STEPS for k, v in results.items()}
                print(f"{STEPS} steps x {REPEATS} rounds, {METRICS_PER_STEP} metrics per step")
                print(f"no logging            {med['none'] * 1e3:7.2f} ms/step")
                print(
                    f"async batched logging {med['async'] * 1e3:7.2f} ms/step  "
                    f"overhead {100 * (med['async'] / med['none'] - 1):+.1f}% (goal < 2%)"
                )
                print(
                    f"sync log_metric       {med['sync'] * 1e3:7.2f} ms/step  "
                    f"x{med['sync'] / med['none']:.2f} the step time"
                )


if __name__ == "__main__":
    main()
