"""Real services for the chart tests: a MinIO server started from the pinned binary."""

from __future__ import annotations

import os
import secrets
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Server:
    endpoint: str
    root_user: str
    root_password: str


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_http(url: str, proc: subprocess.Popen[bytes], log: Path, deadline_s: float) -> None:
    """Poll url until it answers 200; fail with the server's log if it dies or never does."""
    deadline = time.monotonic() + deadline_s
    while True:
        try:
            with urllib.request.urlopen(url) as r:  # noqa: S310
                if r.status == 200:
                    return
        except OSError:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"{url} never answered; server log:\n{log.read_text()[-4000:]}")
        time.sleep(0.5)


@contextmanager
def minio(root: Path) -> Iterator[Server]:
    binary = os.environ.get("LABSTACK_MINIO_BIN", "")
    if not binary:
        raise RuntimeError("LABSTACK_MINIO_BIN is not set: run the chart tests with `make charts`")
    port, console = free_port(), free_port()
    server = Server(f"127.0.0.1:{port}", "root-" + secrets.token_hex(4), secrets.token_hex(16))
    env = {
        "PATH": "/usr/bin:/bin",
        "HOME": str(root),
        "MINIO_ROOT_USER": server.root_user,
        "MINIO_ROOT_PASSWORD": server.root_password,
    }
    log_path = root / "minio.log"
    with log_path.open("w") as log:
        proc = subprocess.Popen(
            [
                binary,
                "server",
                str(root / "data"),
                "--address",
                server.endpoint,
                "--console-address",
                f"127.0.0.1:{console}",
            ],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        try:
            wait_http(f"http://{server.endpoint}/minio/health/ready", proc, log_path, 120)
            yield server
        finally:
            proc.terminate()
            proc.wait(timeout=30)


def run_provisioning(
    job_files: Path, server: Server, user_env: dict[str, str]
) -> subprocess.CompletedProcess[str]:
    """Run the rendered provisioning script with the environment its Job gives it."""
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HEARTBEAT": str(job_files / "heartbeat"),
        "PROVISION_CONFIG": str(job_files / "plan.json"),
        "MINIO_ENDPOINT": f"http://{server.endpoint}",
        "MINIO_ROOT_USER": server.root_user,
        "MINIO_ROOT_PASSWORD": server.root_password,
        **user_env,
    }
    return subprocess.run(
        [sys.executable, str(job_files / "minio_provision.py")],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
