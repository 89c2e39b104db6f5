"""The sandbox's services as the control node reaches them: endpoints on the
loopback ports the sandbox publishes, the internal CA, and the generated
credentials (decrypted with the site's vault password, never printed)."""

from __future__ import annotations

import functools
import json
import os
import queue
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import hvac
import urllib3
import yaml
from minio import Minio

from tests.inventory import hosts, hostvars
from tests.playbook import ANSIBLE_DIR, SANDBOX_INVENTORY, load_filter_plugin

_BIN = Path(sys.executable).parent
VAULT_CLIENT = ANSIBLE_DIR / "vault-password-client.py"


def role_setting(role: str, name: str, host: str) -> Any:
    """A role's variable as HOST gets it: the inventory's value, else the role's default."""
    found = hostvars(host)
    if name in found:
        return found[name]
    defaults = ANSIBLE_DIR / "roles" / role / "defaults" / "main.yml"
    return yaml.safe_load(defaults.read_text())[name]


def ca_file(inventory: Path = SANDBOX_INVENTORY) -> Path:
    """The lab's CA certificate on the control node (pki role)."""
    path = inventory / ".generated" / "pki" / "ca.crt"
    assert path.is_file(), f"no CA at {path}: deploy the lab first (make lab)"
    return path


def published_port(host: str, port: int) -> int:
    """The loopback port of the control node that reaches PORT of a sandbox host."""
    for entry in hostvars(host).get("sandbox_published_ports", []):
        _, host_port, container_port = entry.split("/")[0].split(":")
        if int(container_port) == port:
            return int(host_port)
    raise AssertionError(f"{host}:{port} is not published (sandbox_published_ports)")


def endpoint(host: str, port: int) -> str:
    return f"127.0.0.1:{published_port(host, port)}"


def vault_env() -> dict[str, str]:
    """The environment ansible-vault needs to read the credentials file."""
    if not os.environ.get("LABSTACK_VAULT_PASSWORD") and not os.environ.get(
        "LABSTACK_VAULT_PASSWORD_FILE"
    ):
        raise AssertionError(
            "LABSTACK_VAULT_PASSWORD_FILE is unset: run the tests through make (it exports it)"
        )
    return {**os.environ, "ANSIBLE_VAULT_PASSWORD_FILE": str(VAULT_CLIENT)}


@functools.cache
def credentials(inventory: Path = SANDBOX_INVENTORY) -> dict[str, Any]:
    """The generated credentials of the sandbox."""
    viewed = subprocess.run(
        [str(_BIN / "ansible-vault"), "view", str(inventory / "credentials.yml")],
        env=vault_env(),
        capture_output=True,
        text=True,
        check=True,
    )
    return yaml.safe_load(viewed.stdout)


def secret_values() -> list[str]:
    """Every generated secret value, and the vault password itself."""
    values: list[str] = []

    def walk(value: Any) -> Iterator[str]:
        if isinstance(value, dict):
            for item in value.values():
                yield from walk(item)
        elif isinstance(value, list):
            for item in value:
                yield from walk(item)
        else:
            yield str(value)

    values = list(walk(credentials()))
    # Derived: the bearer token Prometheus reads MinIO's metrics with.
    values.append(
        load_filter_plugin("monitoring").labstack_minio_metrics_token(
            credentials()["minio_prometheus_secret_key"], "prometheus"
        )
    )
    password_file = os.environ.get("LABSTACK_VAULT_PASSWORD_FILE")
    if password_file:
        values.append(Path(password_file).read_text(encoding="utf-8").strip())
    assert all(len(value) >= 16 for value in values), "a generated secret is too short"
    return values


def leaked_secrets(text: str) -> list[int]:
    """The indexes in secret_values() of the secrets that appear in text (never
    the values themselves, which a failing assertion would print)."""
    return [n for n, value in enumerate(secret_values()) if value in text]


def openbao_admin() -> hvac.Client:
    """OpenBao as the admin login site.yml configures it with (the root token is revoked)."""
    client = hvac.Client(
        url=f"https://{endpoint(hosts('secrets')[0], 8200)}", verify=str(ca_file())
    )
    client.auth.userpass.login("labstack-admin", credentials()["openbao_admin_password"])
    return client


def minio_as(host: str, access_key: str, secret_key: str) -> Minio:
    """The MinIO of a sandbox HOST (storage or replica) as a user."""
    return Minio(
        endpoint(host, 9000),
        access_key=access_key,
        secret_key=secret_key,
        secure=True,
        http_client=urllib3.PoolManager(ca_certs=str(ca_file())),
    )


def minio_root() -> Minio:
    """The sandbox's MinIO as its root user."""
    found = credentials()
    return minio_as(hosts("storage")[0], found["minio_root_user"], found["minio_root_password"])


class _Receiver(BaseHTTPRequestHandler):
    """The lab's webhook: keeps every message posted to it."""

    received: queue.Queue[dict]

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        self.received.put(json.loads(body))
        self.send_response(200)
        self.end_headers()

    def log_message(self, format: str, *args: object) -> None:
        pass


@contextmanager
def webhook_receiver() -> Iterator[queue.Queue[dict]]:
    """The sandbox's lab webhook (alertmanager_webhook_url, which jobs notify
    too), served on this machine while the block runs: the messages posted to
    it, in order."""
    url = urlsplit(hostvars(hosts("monitoring")[0])["alertmanager_webhook_url"])
    received: queue.Queue[dict] = queue.Queue()
    handler = type("Receiver", (_Receiver,), {"received": received})
    server = ThreadingHTTPServer((url.hostname or "", url.port or 80), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield received
    finally:
        server.shutdown()
        server.server_close()
