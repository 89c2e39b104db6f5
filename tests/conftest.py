"""Fixtures of the suites that train on the sandbox (e2e, the restore drill): the demo
dataset published once, as the lab's curator does it."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest

from tests.services import ca_file, credentials, endpoint
from workload.data.publish import exists, publish
from workload.s3 import S3Settings, make_client
from workload.shapes import write_tar


@pytest.fixture(scope="session")
def demo_dataset() -> str:
    """The sandbox's s3://datasets/shapes/v1 (the training's default), published if missing."""
    os.environ["AWS_CA_BUNDLE"] = str(ca_file())
    settings = S3Settings(
        endpoint=f"https://{endpoint('storage', 9000)}",
        access_key="curator",
        secret_key=credentials()["minio_curator_secret_key"],
        region="us-east-1",
    )
    client = make_client(settings)
    if not exists(client, "datasets", "shapes", "v1"):
        with tempfile.TemporaryDirectory() as tmp:
            archive = Path(tmp) / "shapes" / "shapes.tar"
            write_tar(archive, train=1024, val=256, size=40, seed=0)
            publish(client, archive.parent, "shapes", "v1")
    return "s3://datasets/shapes/v1/"
