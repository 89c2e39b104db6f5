"""The lab's services as a user reaches them from this machine: URL, health,
and where the credentials are (never the credentials themselves).

For the sandbox the URLs are the ports published on 127.0.0.1
(sandbox_published_ports); TLS is verified against the lab's CA
(INVENTORY/.generated/pki/ca.crt).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import requests

# name, inventory group, container port, health path
_SERVICES = [
    ("MinIO S3 API", "storage", 9000, "/minio/health/cluster"),
    ("MinIO console", "storage", 9001, "/"),
    ("MLflow", "tracking", 5000, "/health"),
    ("OpenBao", "secrets", 8200, "/v1/sys/health"),
]
_WHERE = {
    "MinIO S3 API": "minio_root_user / minio_root_password; service users mlflow, jobs, curator",
    "MinIO console": "as the S3 API",
    "MLflow": "user admin, mlflow_admin_password",
    "OpenBao": "openbao_root_token, openbao_unseal_keys",
}


@dataclass(frozen=True)
class Service:
    name: str
    url: str
    health: str
    credentials: str

    @property
    def healthy(self) -> bool:
        return self.health == "ok"


def _published(hostvars: dict, port: int) -> str | None:
    for entry in hostvars.get("sandbox_published_ports", []):
        address, host_port, container_port = str(entry).split("/")[0].split(":")
        if int(container_port) == port:
            return f"{address}:{host_port}"
    return None


def _health(url: str, ca: Path) -> str:
    try:
        answer = requests.get(url, verify=str(ca) if ca.is_file() else True, timeout=10)
    except requests.RequestException as error:
        return f"unreachable ({type(error).__name__})"
    return "ok" if answer.status_code == 200 else f"HTTP {answer.status_code}"


def services(inventory: Path, data: dict) -> list[Service]:
    """Every service of the inventory `data` (ansible-inventory --list)."""
    ca = inventory / ".generated" / "pki" / "ca.crt"
    where = f"{inventory / 'credentials.yml'} (ansible-vault view)"
    found: list[Service] = []
    for name, group, port, path in _SERVICES:
        members = data.get(group, {}).get("hosts", [])
        if not members:
            continue
        host = members[0]
        address = _published(data["_meta"]["hostvars"].get(host, {}), port) or f"{host}:{port}"
        url = f"https://{address}"
        found.append(Service(name, url, _health(url + path, ca), f"{where}: {_WHERE[name]}"))
    return found
