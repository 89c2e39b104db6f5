"""Training step time: no logging vs async batched logging vs synchronous `log_metric` per call.

Goal: async batched logging costs < 2% over no logging. The synchronous ratio
is reported. The three run interleaved, REPEATS rounds; each figure is printed
as the median and the min..max over the rounds (the overhead per round: that
round's async time over its no-logging time). A real `mlflow server` in its own
process (artifacts in a real MinIO) on loopback: it shares this machine's cores
with the training loop, unlike a real lab.
"""

from __future__ import annotations

import statistics
import tempfile
import time
from pathlib import Path

import torch
from mlflow.tracking import MlflowClient
from torch import nn

from benchmarks.common import Row, minio_binary, minio_server, mlflow_server, seconds
from workload.model import SmallCNN
from workload.s3 import ensure_bucket, make_client
from workload.tracking import Tracker

# Rounds long enough that the flush closing each async round (its metrics delivered
# before the clock stops) weighs as it would at the end of a real run, not 200 steps.
STEPS, SYNC_STEPS, REPEATS, METRICS_PER_STEP = 1000, 200, 5, 3


def main() -> list[Row]:
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
            s3 = make_client(minio.settings())
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
                closing: list[float] = []  # each async round's final flush, in its time
                sync_run = new_run()

                def async_batched() -> None:
                    for k in range(STEPS):
                        loss = step()
                        tracker.log_metrics({"loss": loss, "lr": 1e-3, "epoch": 0}, k)
                    start = time.perf_counter()
                    tracker.flush()  # every metric delivered before the clock stops
                    closing.append(time.perf_counter() - start)

                def synchronous() -> None:
                    run_id = sync_run
                    for k in range(SYNC_STEPS):
                        loss = step()
                        for key, value in (("loss", loss), ("lr", 1e-3), ("epoch", 0)):
                            client.log_metric(run_id, key, value, step=k)

                no_logging()  # warm up
                per_step: dict[str, list[float]] = {"none": [], "async": [], "sync": []}
                for _ in range(REPEATS):  # interleaved, so drift hits all three alike
                    for mode, func, steps in (
                        ("none", no_logging, STEPS),
                        ("async", async_batched, STEPS),
                        ("sync", synchronous, SYNC_STEPS),
                    ):
                        per_step[mode] += [t / steps for t in seconds(func, 1)]
                tracker.finish("FINISHED")
    return report(per_step, closing)


def spread(values: list[float], fmt: str) -> str:
    """median [min..max]"""
    parts = [statistics.median(values), min(values), max(values)]
    return "{} [{}..{}]".format(*(format(v, fmt) for v in parts))


def report(per_step: dict[str, list[float]], closing: list[float]) -> list[Row]:
    none = per_step["none"]
    ms = {mode: [t * 1e3 for t in times] for mode, times in per_step.items()}
    overhead = [100 * (a / n - 1) for a, n in zip(per_step["async"], none, strict=True)]
    sync_x = [s / n for s, n in zip(per_step["sync"], none, strict=True)]
    print(
        f"{STEPS} steps ({SYNC_STEPS} with sync log_metric) x {REPEATS} rounds, "
        f"{METRICS_PER_STEP} metrics per step"
    )
    print("ms/step and ratios: median [min..max] over the rounds")
    print(f"no logging            {spread(ms['none'], '.2f')} ms/step")
    print(f"async batched logging {spread(ms['async'], '.2f')} ms/step")
    print(f"  overhead            {spread(overhead, '+.1f')} % (goal < 2%)")
    print(f"  its closing flush   {spread([t * 1e3 for t in closing], '.1f')} ms, once a round")
    print(f"sync log_metric       {spread(ms['sync'], '.2f')} ms/step")
    print(f"  the step time       x{spread(sync_x, '.2f')}")
    med = statistics.median
    return [
        Row("tracking", "no logging, per step", f"{med(ms['none']):.2f} ms"),
        Row("tracking", "async batched logging", f"{med(ms['async']):.2f} ms",
            f"{1 + med(overhead) / 100:.2f}", "no logging"),
        Row("tracking", "  overhead", f"{med(overhead):+.1f}%",
            note=f"range {min(overhead):+.1f}..{max(overhead):+.1f} (< 2%)"),
        Row("tracking", "  its closing flush", f"{med(closing) * 1e3:.1f} ms",
            note="once a round, in its time"),
        Row("tracking", "sync log_metric per call", f"{med(ms['sync']):.2f} ms",
            f"{med(sync_x):.2f}", f"no logging; {min(sync_x):.1f}..{max(sync_x):.1f}"),
    ]  # fmt: skip


if __name__ == "__main__":
    from benchmarks.common import print_table

    print_table(main())
