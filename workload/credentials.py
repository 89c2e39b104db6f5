"""Credentials for the job: from the environment, or fetched from OpenBao with hvac.

The launcher hands over either a short-lived token (`BAO_TOKEN`), an AppRole
(`BAO_ROLE_ID` + `BAO_SECRET_ID`), or the path of a file private to the job's
user holding that AppRole as JSON (`BAO_APPROLE_FILE`: what `labstack submit`
does on Slurm, so that no secret is in a job script, a job's environment or a
process list). On Kubernetes nothing is handed over: the pod logs in with its
ServiceAccount token (`BAO_K8S_ROLE` + `BAO_K8S_JWT_PATH`, a projected token
for OpenBao's audience that the kubelet rotates), through OpenBao's
Kubernetes auth method. The secret values read from OpenBao are exported into this process's
environment only (never logged, never in MLflow).
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, MutableMapping
from pathlib import Path

import hvac

# Environment variables that carry secrets: never logged, never sent to MLflow.
SECRET_ENV_VARS = frozenset(
    {
        "AWS_SECRET_ACCESS_KEY",
        "AWS_SESSION_TOKEN",
        "MLFLOW_TRACKING_PASSWORD",
        "MLFLOW_TRACKING_TOKEN",
        "BAO_TOKEN",
        "BAO_SECRET_ID",
        "VAULT_TOKEN",
        "LABSTACK_WEBHOOK_URL",
    }
)


class CredentialError(RuntimeError):
    """Credentials could not be obtained; the message names the source at fault."""


def redact(text: str, env: Mapping[str, str] | None = None) -> str:
    """`text` with every secret value of `env` replaced by `***`."""
    env = os.environ if env is None else env
    for name in SECRET_ENV_VARS:
        value = env.get(name)
        if value and len(value) >= 4:
            text = text.replace(value, "***")
    return text


def _read_approle_file(path: Path) -> dict[str, str]:
    """BAO_ROLE_ID and BAO_SECRET_ID from the launcher's JSON file (mode 0600)."""
    try:
        if path.stat().st_mode & 0o077:
            raise CredentialError(f"BAO_APPROLE_FILE {path} is readable by others: expected 0600")
        data = json.loads(path.read_text(encoding="utf-8"))
        return {"BAO_ROLE_ID": str(data["role_id"]), "BAO_SECRET_ID": str(data["secret_id"])}
    except OSError as exc:
        raise CredentialError(f"BAO_APPROLE_FILE {path}: {exc.strerror}") from None
    except (ValueError, KeyError, TypeError):
        raise CredentialError(
            f"BAO_APPROLE_FILE {path}: expected JSON with role_id and secret_id"
        ) from None


# Where the training-job chart mounts the pod's token for OpenBao's audience.
_K8S_JWT_PATH = "/var/run/secrets/openbao/token"


def _read_k8s_token(path: Path) -> str:
    """The pod's ServiceAccount token (a JWT) from the projected volume."""
    try:
        token = path.read_text(encoding="utf-8").strip()
    except OSError as exc:
        raise CredentialError(f"BAO_K8S_JWT_PATH {path}: {exc.strerror}") from None
    if token.count(".") != 2:
        raise CredentialError(f"BAO_K8S_JWT_PATH {path}: not a JWT (header.payload.signature)")
    return token


def fetch_from_openbao(env: MutableMapping[str, str] | None = None) -> list[str]:
    """If `BAO_ADDR` is set, read the KV v2 secret `BAO_SECRET_PATH` and export its keys.

    Keys already set in the environment win (explicit beats fetched). Returns the
    names (never the values) that were exported. The AppRole secret id and the
    token are removed from the environment once used: child processes never see them.
    """
    env = os.environ if env is None else env
    addr = env.get("BAO_ADDR")
    if not addr:
        return []
    path = env.get("BAO_SECRET_PATH", "labstack/jobs/workload")
    mount = env.get("BAO_KV_MOUNT", "secret")
    client = hvac.Client(url=addr, verify=env.get("BAO_CACERT", True))
    if approle_file := env.get("BAO_APPROLE_FILE"):
        env.update(_read_approle_file(Path(approle_file)))
    try:
        if env.get("BAO_TOKEN"):
            client.token = env.pop("BAO_TOKEN")
        elif env.get("BAO_K8S_ROLE"):
            client.auth.kubernetes.login(
                role=env["BAO_K8S_ROLE"],
                jwt=_read_k8s_token(Path(env.get("BAO_K8S_JWT_PATH", _K8S_JWT_PATH))),
                mount_point=env.get("BAO_K8S_MOUNT", "kubernetes"),
            )
        elif env.get("BAO_ROLE_ID") and env.get("BAO_SECRET_ID"):
            client.auth.approle.login(
                role_id=env["BAO_ROLE_ID"],
                secret_id=env.pop("BAO_SECRET_ID"),
                mount_point=env.get("BAO_APPROLE_MOUNT", "approle"),
            )
        else:
            raise CredentialError(
                f"BAO_ADDR={addr} is set but none of BAO_TOKEN, BAO_K8S_ROLE, "
                "BAO_ROLE_ID+BAO_SECRET_ID is"
            )
        secret = client.secrets.kv.v2.read_secret_version(
            path=path, mount_point=mount, raise_on_deleted_version=True
        )
    except CredentialError:
        raise
    except Exception as exc:  # hvac raises many types; name the endpoint, never the secret
        raise CredentialError(
            f"OpenBao at {addr}: reading {mount}/{path} failed ({type(exc).__name__})"
        ) from None
    data: dict[str, str] = secret["data"]["data"]
    exported = []
    for key, value in data.items():
        if key not in env:
            env[key] = str(value)
            exported.append(key)
    return sorted(exported)
