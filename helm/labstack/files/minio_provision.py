"""Create MinIO buckets, policies and users; idempotent (labstack chart Job).

Reads the plan from PROVISION_CONFIG (JSON written by the chart) and every
credential from the environment (Secret references), never from arguments.
Each step touches HEARTBEAT, which the container's liveness probe checks.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from minio import Minio
from minio.commonconfig import ENABLED
from minio.credentials.providers import StaticProvider
from minio.minioadmin import MinioAdmin
from minio.versioningconfig import OFF, SUSPENDED, VersioningConfig

HEARTBEAT = Path(os.environ["HEARTBEAT"])


def beat(message: str) -> None:
    HEARTBEAT.touch()
    print(message, flush=True)


def env(name: str) -> str:
    value = os.environ.get(name, "")
    if not value:
        sys.exit(f"environment variable {name} is empty: check the Secret it references")
    return value


def connect(netloc: str, root: StaticProvider, secure: bool, timeout_s: float) -> Minio:
    """A client of a MinIO that answers. Each try gets a new client, hence a
    new connection: one that reached something else than MinIO (while the
    Service has no endpoint yet, a proxy or another host on the route may
    answer) would otherwise be kept alive and reused for every later try."""
    deadline = time.monotonic() + timeout_s
    while True:
        client = Minio(netloc, credentials=root, secure=secure)
        try:
            client.list_buckets()
            return client
        except Exception as exc:  # the server is still starting
            if time.monotonic() > deadline:
                sys.exit(f"MinIO at {os.environ['MINIO_ENDPOINT']} not ready: {exc}")
            beat(f"waiting for MinIO: {exc.__class__.__name__}: {str(exc)[:200]}")
            time.sleep(3)


def main() -> None:
    plan: dict[str, Any] = json.loads(Path(env("PROVISION_CONFIG")).read_text())
    url = urlparse(env("MINIO_ENDPOINT"))
    secure = url.scheme == "https"
    root = StaticProvider(env("MINIO_ROOT_USER"), env("MINIO_ROOT_PASSWORD"))
    timeout_s = float(os.environ.get("READY_TIMEOUT_S", "300"))
    client = connect(url.netloc, root, secure, timeout_s)
    admin = MinioAdmin(endpoint=url.netloc, credentials=root, secure=secure)

    for bucket in plan["buckets"]:
        name = bucket["name"]
        if client.bucket_exists(name):
            beat(f"bucket {name}: exists")
        else:
            client.make_bucket(name)
            beat(f"bucket {name}: created")
        wanted = ENABLED if bucket.get("versioning", False) else SUSPENDED
        # A bucket never versioned has no status ("Off"): leave it so, as
        # suspending it would be a change.
        current = client.get_bucket_versioning(name).status or OFF
        if current != wanted and not (wanted == SUSPENDED and current == OFF):
            client.set_bucket_versioning(name, VersioningConfig(wanted))
            beat(f"bucket {name}: versioning {wanted}")

    for policy in plan["policies"]:
        admin.policy_add(policy["name"], policy=policy["document"])
        beat(f"policy {policy['name']}: applied")

    for user in plan["users"]:
        prefix = f"USER_{user['index']}_"
        access_key = env(prefix + "ACCESS_KEY")
        admin.user_add(access_key, env(prefix + "SECRET_KEY"))
        if user["policies"]:
            admin.policy_set(",".join(user["policies"]), user=access_key)
        beat(f"user #{user['index']}: applied with policies {user['policies']}")

    beat("provisioning complete")


if __name__ == "__main__":
    main()
