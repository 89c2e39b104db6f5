"""OpenBao from the launcher: one secret id of the jobs' AppRole per job, never its credentials."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass

import hvac
from hvac import exceptions as hvac_errors

from workload.launch.config import LabConfig


class VaultError(RuntimeError):
    """OpenBao refused or is unreachable; the message says what to do."""


@dataclass(frozen=True)
class JobLogin:
    """The AppRole login a job uses; `as_file()` is the only form it leaves this process in."""

    role_id: str
    secret_id: str
    accessor: str

    def as_file(self) -> str:
        return json.dumps({"role_id": self.role_id, "secret_id": self.secret_id})

    def __repr__(self) -> str:  # never print the secret id
        return f"JobLogin(accessor={self.accessor})"


class Vault:
    def __init__(self, config: LabConfig) -> None:
        token = os.environ.get("BAO_TOKEN")
        if not token:
            raise VaultError(
                "BAO_TOKEN is not set: log in to OpenBao first, e.g. "
                "export BAO_TOKEN=$(bao login -method=userpass -field=token username=launcher)"
            )
        self.addr = config.client.openbao_addr
        self.role = config.jobs.approle
        self.ttl = config.jobs.secret_ttl
        self.client = hvac.Client(url=self.addr, token=token, verify=config.client.ca_file or True)

    def _post(self, path: str, payload: Mapping[str, object], missing_ok: bool = False) -> dict:
        """OpenBao's answer; with MISSING_OK, {} where what PAYLOAD names does not exist."""
        try:
            answer = self.client.adapter.post(
                f"/v1/auth/approle/role/{self.role}/{path}", json=payload
            )
        except (hvac_errors.InvalidPath, hvac_errors.InvalidRequest) as exc:
            if missing_ok:
                return {}
            reason = str(exc).split(", on ")[0]  # OpenBao's message, without the URL
            raise VaultError(
                f"OpenBao at {self.addr} refused {path} of AppRole {self.role}: {reason}"
            ) from None
        except hvac_errors.Forbidden:
            raise VaultError(
                f"OpenBao at {self.addr} refused {path} of AppRole {self.role}: "
                "BAO_TOKEN lacks the labstack-launcher policy or has expired"
            ) from None
        except Exception as exc:  # hvac/requests raise many types; never echo the token
            raise VaultError(
                f"OpenBao at {self.addr}: {path} failed ({type(exc).__name__})"
            ) from None
        return answer if isinstance(answer, dict) else {}

    def check(self) -> str:
        """The jobs' role id (proves the token works before any run is created)."""
        try:
            return self.client.adapter.get(f"/v1/auth/approle/role/{self.role}/role-id")["data"][
                "role_id"
            ]
        except hvac_errors.Forbidden:
            raise VaultError(
                f"OpenBao at {self.addr}: BAO_TOKEN may not read AppRole {self.role} "
                "(needs the labstack-launcher policy) or has expired"
            ) from None
        except Exception as exc:
            raise VaultError(
                f"OpenBao at {self.addr} is unreachable ({type(exc).__name__})"
            ) from None

    def job_login(self, run_id: str) -> JobLogin:
        """A secret id valid for `secret_ttl`, tagged with the run. OpenBao caps its lifetime
        and its logins (the role's secret_id_ttl and secret_id_num_uses: enough for every
        rank of every attempt after a requeue) and the networks it works from."""
        role_id = self.check()
        data = self._post(
            "secret-id", {"metadata": json.dumps({"mlflow_run_id": run_id}), "ttl": self.ttl}
        )["data"]
        return JobLogin(role_id, data["secret_id"], data["secret_id_accessor"])

    def revoke(self, accessor: str, run_id: str) -> None:
        """Destroy the secret id behind ACCESSOR, which must be RUN_ID's (its metadata says
        so): the accessor comes from the run's tags, which jobs can edit."""
        if not accessor:
            return
        payload = {"secret_id_accessor": accessor}
        found = self._post("secret-id-accessor/lookup", payload, missing_ok=True).get("data")
        if not found:
            return  # gone already: expired, or destroyed by an earlier stop
        owner = (found.get("metadata") or {}).get("mlflow_run_id")
        if owner != run_id:
            raise VaultError(
                f"run {run_id}: tag labstack.login_accessor names the OpenBao login of "
                f"another run ({owner}); its tags were changed since submission"
            )
        self._post("secret-id-accessor/destroy", payload)
