"""Credentials for the job: from the environment, or fetched from OpenBao with hvac.

The launcher hands over either a short-lived token (`BAO_TOKEN`) or an AppRole
(`BAO_ROLE_ID` + `BAO_SECRET_ID`); the secret values read from OpenBao are
exported into this process's environment only (never logged, never in MLflow).
"""

from __future__ import annotations

import os
from collections.abc import Mapping, MutableMapping

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
    path = env.get("BAO_SECRET_PATH", "labstack/workload")
    mount = env.get("BAO_KV_MOUNT", "secret")
    client = hvac.Client(url=addr, verify=env.get("BAO_CACERT", True))
    try:
        if env.get("BAO_TOKEN"):
            client.token = env.pop("BAO_TOKEN")
        elif env.get("BAO_ROLE_ID") and env.get("BAO_SECRET_ID"):
            client.auth.approle.login(
                role_id=env["BAO_ROLE_ID"],
                secret_id=env.pop("BAO_SECRET_ID"),
                mount_point=env.get("BAO_APPROLE_MOUNT", "approle"),
            )
        else:
            raise CredentialError(
                f"BAO_ADDR={addr} is set but neither BAO_TOKEN nor BAO_ROLE_ID+BAO_SECRET_ID is"
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
