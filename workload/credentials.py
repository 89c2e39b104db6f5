"""Credentials for the job: from the environment, or fetched from OpenBao with hvac.

The launcher hands over either a short-lived token (`BAO_TOKEN`), an AppRole
(`BAO_ROLE_ID` + `BAO_SECRET_ID`), or the path of a file private to the job's
user holding that AppRole as JSON (`BAO_APPROLE_FILE`: what `labstack submit`
does on Slurm, so that no secret is in a job script, a job's environment or a
process list). On Kubernetes nothing is handed over: the pod logs in with its
ServiceAccount token (`BAO_K8S_ROLE` + `BAO_K8S_JWT_PATH`, a projected token
for OpenBao's audience that the kubelet rotates), through OpenBao's
Kubernetes auth method. The values read from OpenBao stay in this process's memory
(`FETCHED`, read with `secret`): never in its environment, which every child
process (git, nvidia-smi, a researcher's subprocess) would inherit; never logged,
never in MLflow. MLflow's client reaches them through its request-auth plugin
interface (`MlflowLogin`, MLFLOW_TRACKING_AUTH=labstack).
"""

from __future__ import annotations

import json
import os
import random
import time
from collections.abc import Mapping, MutableMapping
from pathlib import Path

import hvac
from hvac import exceptions as hvac_errors
from mlflow.tracking.request_auth.abstract_request_auth_provider import RequestAuthProvider
from requests.auth import HTTPBasicAuth

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


# What fetch_from_openbao read, by name: this process's memory only.
FETCHED: dict[str, str] = {}
# MLFLOW_TRACKING_AUTH's value that makes MLflow's client log in with FETCHED's login.
MLFLOW_AUTH = "labstack"


class CredentialError(RuntimeError):
    """Credentials could not be obtained; the message names the source at fault."""


def secret(name: str, env: Mapping[str, str] | None = None) -> str | None:
    """NAME's value: from the environment (explicit wins), else as fetched from OpenBao."""
    env = os.environ if env is None else env
    return env.get(name) or FETCHED.get(name)


def secret_values(env: Mapping[str, str] | None = None) -> list[str]:
    """The values of SECRET_ENV_VARS this process holds (4 characters or more)."""
    found = (secret(name, env) for name in SECRET_ENV_VARS)
    return [value for value in found if value and len(value) >= 4]


def redact(text: str, env: Mapping[str, str] | None = None) -> str:
    """`text` with every secret value (of `env` and fetched) replaced by `***`."""
    for value in secret_values(env):
        text = text.replace(value, "***")
    return text


class MlflowLogin(RequestAuthProvider):
    """MLflow's requests log in with the fetched MLFLOW_TRACKING_USERNAME/PASSWORD.

    Registered as the `mlflow.request_auth_provider` entry point `labstack`
    (pyproject.toml); fetch_from_openbao sets MLFLOW_TRACKING_AUTH=labstack."""

    def get_name(self) -> str:  # pyright: ignore[reportIncompatibleMethodOverride] (untyped base)
        return MLFLOW_AUTH

    def get_auth(self) -> HTTPBasicAuth:  # pyright: ignore[reportIncompatibleMethodOverride]
        return HTTPBasicAuth(
            secret("MLFLOW_TRACKING_USERNAME") or "", secret("MLFLOW_TRACKING_PASSWORD") or ""
        )


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


# Logins of one secret id at once (the ranks of a job): each takes one of its
# limited uses, and OpenBao refuses all but one of the concurrent updates
# ("transaction commit failed", HTTP 500); a retry succeeds.
_LOGIN_ATTEMPTS = 6


def _approle_login(client: hvac.Client, role_id: str, secret_id: str, mount: str) -> None:
    for attempt in range(_LOGIN_ATTEMPTS):
        try:
            client.auth.approle.login(role_id=role_id, secret_id=secret_id, mount_point=mount)
            return
        except hvac_errors.InternalServerError as exc:
            if "transaction commit failed" not in str(exc) or attempt == _LOGIN_ATTEMPTS - 1:
                raise
            time.sleep(random.uniform(0.05, 0.2) * 2**attempt)  # noqa: S311 (jitter)


def fetch_from_openbao(
    env: MutableMapping[str, str] | None = None, into: dict[str, str] | None = None
) -> list[str]:
    """If `BAO_ADDR` is set in ENV, read the KV v2 secret `BAO_SECRET_PATH` into INTO
    (default FETCHED: see `secret`).

    Keys already set in the environment win (explicit beats fetched). Returns the
    names (never the values) that were fetched. The AppRole secret id and the token
    are removed from the environment once used: child processes never see them.
    """
    env = os.environ if env is None else env
    into = FETCHED if into is None else into
    addr = env.get("BAO_ADDR")
    if not addr:
        return []
    path = env.get("BAO_SECRET_PATH", "labstack/jobs/workload")
    mount = env.get("BAO_KV_MOUNT", "secret")
    client = hvac.Client(url=addr, verify=env.get("BAO_CACERT", True))
    approle = _read_approle_file(Path(file)) if (file := env.get("BAO_APPROLE_FILE")) else {}
    role_id = approle.get("BAO_ROLE_ID") or env.get("BAO_ROLE_ID")
    secret_id = approle.get("BAO_SECRET_ID") or env.pop("BAO_SECRET_ID", None)
    try:
        if env.get("BAO_TOKEN"):
            client.token = env.pop("BAO_TOKEN")
        elif env.get("BAO_K8S_ROLE"):
            client.auth.kubernetes.login(
                role=env["BAO_K8S_ROLE"],
                jwt=_read_k8s_token(Path(env.get("BAO_K8S_JWT_PATH", _K8S_JWT_PATH))),
                mount_point=env.get("BAO_K8S_MOUNT", "kubernetes"),
            )
        elif role_id and secret_id:
            _approle_login(client, role_id, secret_id, env.get("BAO_APPROLE_MOUNT", "approle"))
        else:
            raise CredentialError(
                f"BAO_ADDR={addr} is set but none of BAO_TOKEN, BAO_K8S_ROLE, "
                "BAO_ROLE_ID+BAO_SECRET_ID, BAO_APPROLE_FILE is"
            )
        answer = client.secrets.kv.v2.read_secret_version(
            path=path, mount_point=mount, raise_on_deleted_version=True
        )
    except CredentialError:
        raise
    except hvac_errors.VaultDown:
        raise CredentialError(
            f"OpenBao at {addr} is sealed or down (HTTP 503): the admin unseals it by "
            "rerunning site.yml (playbooks/secrets.yml); then `labstack relaunch` the run"
        ) from None
    except Exception as exc:  # hvac raises many types; name the endpoint, never the secret
        raise CredentialError(
            f"OpenBao at {addr}: reading {mount}/{path} failed ({type(exc).__name__})"
        ) from None
    data: dict[str, str] = answer["data"]["data"]
    fetched = sorted(key for key in data if key not in env)
    into.update({key: str(data[key]) for key in fetched})
    if "MLFLOW_TRACKING_PASSWORD" in fetched:
        env["MLFLOW_TRACKING_AUTH"] = MLFLOW_AUTH
    return fetched
