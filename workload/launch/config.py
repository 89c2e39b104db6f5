"""The lab as the launcher sees it: `labstack.toml` (no secrets in it).

`make lab` writes the sandbox's to INVENTORY/.generated/labstack.toml. Secrets
come from the environment only: MLFLOW_TRACKING_USERNAME/PASSWORD (the
researcher's MLflow login) and BAO_TOKEN (an OpenBao token with the
labstack-launcher policy, e.g. from `bao login -method=userpass`).
"""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

MLFLOW_RETRIES_LIMIT = 10  # MLflow refuses MLFLOW_HTTP_REQUEST_MAX_RETRIES above it


class ConfigError(ValueError):
    """The launcher's configuration is wrong; the message names the setting."""


@dataclass(frozen=True)
class Client:
    """How this machine reaches the lab's services."""

    mlflow_uri: str
    openbao_addr: str
    s3_endpoint: str = ""
    ca_file: str = ""


@dataclass(frozen=True)
class Jobs:
    """What a job sees: the services as the compute nodes reach them."""

    mlflow_uri: str
    s3_endpoint: str
    openbao_addr: str
    ca_file: str = "/etc/ssl/certs/ca-certificates.crt"
    secret_path: str = "labstack/jobs/workload"  # noqa: S105 (a path, not a secret)
    approle: str = "jobs"
    mlflow_user: str = "jobs"
    secret_ttl: str = "48h"  # noqa: S105 (a lifetime; at most openbao_jobs_secret_id_ttl)
    # How often the job's MLflow client retries a request (backoff doubling
    # from 2 s: 7 is about four minutes) before the job's own loops keep the
    # metrics and checkpoints and send them again later. MLflow's default.
    mlflow_retries: int = 7

    def __post_init__(self) -> None:
        if not 0 <= self.mlflow_retries <= MLFLOW_RETRIES_LIMIT:
            raise ValueError(
                f"mlflow_retries must be 0 to {MLFLOW_RETRIES_LIMIT} (MLflow's limit), "
                f"got {self.mlflow_retries}"
            )


@dataclass(frozen=True)
class Slurm:
    # Command prefix that runs Slurm commands where they work (a login node):
    # [] runs them here; ["ssh", "login1"]; the sandbox: docker exec.
    login: list[str] = field(default_factory=list)
    workload_env: str = "/shared/labstack/envs/current"
    runs_dir: str = "/shared/labstack/runs"
    data_path: str = "/shared/labstack/datasets"
    scratch: str = "/var/tmp/labstack"  # noqa: S108 (node-local, per-user dirs inside)
    sif: str = ""
    # Seconds between Slurm's warning (USR1) and the end of --time: enough to
    # save a checkpoint. --time must be longer.
    grace_seconds: int = 120
    # A job requeued more often than this (preempted, or its node lost) ends
    # instead of starting again, and its run FAILED with the reason.
    max_requeues: int = 5

    def __post_init__(self) -> None:
        if self.grace_seconds < 1:
            raise ValueError(f"grace_seconds must be at least 1, got {self.grace_seconds}")
        if self.max_requeues < 0:
            raise ValueError(f"max_requeues must be 0 or more, got {self.max_requeues}")


@dataclass(frozen=True)
class Kubernetes:
    chart: str = "helm/training-job"
    namespace: str = "default"
    image: str = "labstack/training:0.1.0"
    context: str = ""
    # The pods' credentials. With openbao_role: each pod logs in to OpenBao
    # ([jobs] openbao_addr) with a token of service_account and reads
    # [jobs] secret_path; no Secret holds them. Without: the Secrets named
    # here, made by the site (the chart's envFrom).
    openbao_role: str = ""
    service_account: str = ""
    mlflow_secret: str = "labstack-job-mlflow"  # noqa: S105 (a Secret's name)
    s3_secret: str = "labstack-job-s3"  # noqa: S105 (a Secret's name)
    # A ConfigMap of the namespace with the lab's CA as ca.crt: the pods
    # trust it for MLflow, MinIO and OpenBao.
    ca_configmap: str = ""
    # The dataset cache's shared level (the chart's dataCache): a
    # PersistentVolumeClaim of the namespace, or a directory of every node.
    data_cache_claim: str = ""
    data_cache_host_path: str = ""
    # KEY=VALUE node labels every pod of a Job must carry (the chart's
    # nodeSelector): e.g. the nodes that hold a registry-less image.
    node_selector: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Local:
    runs_dir: str = "~/.cache/labstack/runs"
    python: str = ""
    sif: str = ""


@dataclass(frozen=True)
class LabConfig:
    path: Path
    client: Client
    jobs: Jobs
    slurm: Slurm = field(default_factory=Slurm)
    kubernetes: Kubernetes = field(default_factory=Kubernetes)
    local: Local = field(default_factory=Local)


_SECTIONS: dict[str, type] = {
    "client": Client,
    "jobs": Jobs,
    "slurm": Slurm,
    "kubernetes": Kubernetes,
    "local": Local,
}


def _section(path: Path, name: str, kind: type, data: Any) -> Any:
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: [{name}] must be a table")
    known = {f.name: f for f in fields(kind)}
    unknown = sorted(set(data) - set(known))
    if unknown:
        raise ConfigError(
            f"{path}: [{name}] has unknown settings {unknown}; known: {sorted(known)}"
        )
    for key, value in data.items():
        expected = known[key].type
        ok = {
            "str": isinstance(value, str),
            "int": isinstance(value, int) and not isinstance(value, bool),
            "list[str]": isinstance(value, list) and all(isinstance(v, str) for v in value),
        }.get(str(expected), True)
        if not ok:
            raise ConfigError(f"{path}: {name}.{key} must be {expected}, got {value!r}")
    try:
        return kind(**data)
    except TypeError:
        required = [f.name for f in fields(kind) if f.name not in data]
        raise ConfigError(f"{path}: [{name}] lacks required settings {required}") from None
    except ValueError as exc:
        raise ConfigError(f"{path}: [{name}] {exc}") from None


def load(path: Path | None = None) -> LabConfig:
    """Read `path`, else $LABSTACK_CONFIG, else ./labstack.toml."""
    found = path or Path(os.environ.get("LABSTACK_CONFIG") or "labstack.toml")
    try:
        data = tomllib.loads(found.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(
            f"no launcher configuration at {found}: pass --config, set LABSTACK_CONFIG, "
            "or run `make lab` (it writes the sandbox's)"
        ) from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{found}: not valid TOML ({exc})") from None
    unknown = sorted(set(data) - set(_SECTIONS))
    if unknown:
        raise ConfigError(f"{found}: unknown sections {unknown}; known: {sorted(_SECTIONS)}")
    for required in ("client", "jobs"):
        if required not in data:
            raise ConfigError(f"{found}: the [{required}] section is required")
    sections = {
        name: _section(found, name, kind, data.get(name, {}))
        for name, kind in _SECTIONS.items()
        if name in data
    }
    return LabConfig(path=found, **sections)
