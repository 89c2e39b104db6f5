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

# name, inventory group, container port, health path, the CA its TLS
# certificate verifies against (INVENTORY/.generated/pki/NAME.crt), and the
# HTTP status a healthy one answers without a login (Prometheus asks for its
# login on every path: 401 is its healthy answer to a stranger)
_SERVICES = [
    ("MinIO S3 API", "storage", 9000, "/minio/health/cluster", "ca", 200),
    ("MinIO console", "storage", 9001, "/", "ca", 200),
    ("MinIO replica", "storage_replica", 9000, "/minio/health/live", "ca", 200),
    ("MLflow", "tracking", 5000, "/health", "ca", 200),
    ("OpenBao", "secrets", 8200, "/v1/sys/health", "ca", 200),
    ("Prometheus", "monitoring", 9090, "/-/healthy", "ca", 401),
    ("Kubernetes API", "kube_control_plane", 6443, "/readyz", "kubernetes-ca", 200),
]
# Each service's logins: their names in the credentials file (Kubernetes: the admin kubeconfig).
_WHERE = {
    "MinIO S3 API": "root minio_root_user, minio_root_password; "
    "service users mlflow, jobs, curator, prometheus",
    "MinIO console": "as the S3 API",
    "MinIO replica": "root minio_replica_root_user, minio_replica_root_password",
    "MLflow": "user admin, mlflow_admin_password; user jobs, mlflow_jobs_password",
    "OpenBao": "unseal openbao_unseal_keys (or its holders' shares); "
    "userpass labstack-admin, openbao_admin_password; "
    "userpass launcher, openbao_launcher_password",
    "Prometheus": "user admin, prometheus_admin_password",
    "Kubernetes API": "the admin's kubeconfig, below",
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


def _health(url: str, ca: Path, healthy: int) -> str:
    try:
        answer = requests.get(url, verify=str(ca) if ca.is_file() else True, timeout=10)
    except requests.RequestException as error:
        return f"unreachable ({type(error).__name__})"
    return "ok" if answer.status_code == healthy else f"HTTP {answer.status_code}"


def services(inventory: Path, data: dict) -> list[Service]:
    """Every service of the inventory `data` (ansible-inventory --list)."""
    generated = inventory / ".generated"
    found: list[Service] = []
    for name, group, port, path, ca, healthy in _SERVICES:
        members = data.get(group, {}).get("hosts", [])
        if not members:
            continue
        host = members[0]
        address = _published(data["_meta"]["hostvars"].get(host, {}), port) or f"{host}:{port}"
        url = f"https://{address}"
        credentials = _WHERE[name]
        health = _health(url + path, generated / "pki" / f"{ca}.crt", healthy)
        found.append(Service(name, url, health, credentials))
    return found


def launcher_config(inventory: Path, data: dict) -> str:
    """`labstack.toml` for this lab: endpoints as this machine and as the jobs reach them."""
    hostvars = data["_meta"]["hostvars"]

    def first(group: str) -> str:
        return data[group]["hosts"][0]

    def here(group: str, port: int) -> str:
        host = first(group)
        return f"https://{_published(hostvars.get(host, {}), port) or f'{host}:{port}'}"

    controller = first("slurm_controller")
    cvars = hostvars.get(controller, {})
    user = cvars.get("common_service_user", "labstack")
    if cvars.get("ansible_connection") in ("docker", "community.docker.docker"):
        container = cvars.get("sandbox_container_prefix", "") + controller
        login = ["docker", "exec", "-i", "-u", user, container]
    else:
        login = ["ssh", str(cvars.get("ansible_host", controller))]
    root = cvars.get("workload_root", "/shared/labstack")
    tracking, storage, secrets = first("tracking"), first("storage"), first("secrets")
    lines = [
        f"# Written by `make lab` from {inventory}: the lab as the labstack CLI sees it.",
        "# No secrets here: MLFLOW_TRACKING_USERNAME/PASSWORD and BAO_TOKEN come from",
        "# the environment.",
        "[client]",
        f'mlflow_uri = "{here("tracking", 5000)}"',
        f'openbao_addr = "{here("secrets", 8200)}"',
        f's3_endpoint = "{here("storage", 9000)}"',
        f'ca_file = "{(inventory / ".generated" / "pki" / "ca.crt").resolve()}"',
        "",
        "[jobs]",
        f'mlflow_uri = "https://{tracking}:5000"',
        f'openbao_addr = "https://{secrets}:8200"',
        f's3_endpoint = "https://{storage}:9000"',
        "",
        "[slurm]",
        "login = [" + ", ".join(f'"{part}"' for part in login) + "]",
        f'workload_env = "{root}/envs/current"',
        f'runs_dir = "{root}/runs"',
        f'data_path = "{root}/datasets"',
        "",
    ]
    if data.get("kube_control_plane", {}).get("hosts"):
        kvars = hostvars.get(first("kube_control_plane"), {})
        lines += [
            "[kubernetes]",
            f'namespace = "{kvars.get("kubernetes_jobs_namespace", "labstack-jobs")}"',
            f'service_account = "{kvars.get("kubernetes_jobs_service_account", "labstack-job")}"',
            # The OpenBao Kubernetes role the secrets layer binds to that account.
            'openbao_role = "jobs"',
            'ca_configmap = "labstack-ca"',
            # kube_addons' claim of the Jobs' shared dataset cache, where the lab has one.
            *(
                ['data_cache_claim = "labstack-datasets"']
                if kvars.get("kubernetes_jobs_datasets_volume")
                else []
            ),
            # The nodes the Jobs' pods must run on (the sandbox: those holding the image).
            *(
                [
                    "node_selector = ["
                    + ", ".join(f'"{key}={value}"' for key, value in selector.items())
                    + "]"
                ]
                if (selector := kvars.get("kubernetes_jobs_node_selector"))
                else []
            ),
            "",
        ]
    return "\n".join(lines)
