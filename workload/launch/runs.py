"""The MLflow side of a submission: reachability, the run created before the job, its tags."""

from __future__ import annotations

import json
import os
import re
import warnings
from collections.abc import Mapping
from dataclasses import dataclass

import requests
from mlflow.entities import Param, Run, RunTag
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from workload.launch.config import LabConfig

TERMINAL = ("FINISHED", "FAILED", "KILLED")
# A login name, as labstack.submitted_by records it ($USER): what a search may quote.
_USER = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._-]{0,63}")


class TrackingError(RuntimeError):
    """MLflow cannot be used; the message names the server and what failed."""


@dataclass(frozen=True)
class Submitted:
    run_id: str
    job_id: str
    job_name: str
    url: str


class Runs:
    """The researcher's MLflow session (MLFLOW_TRACKING_USERNAME/PASSWORD)."""

    def __init__(self, config: LabConfig) -> None:
        self.uri = config.client.mlflow_uri.rstrip("/")
        self.jobs_user = config.jobs.mlflow_user
        if config.client.ca_file:
            os.environ["MLFLOW_TRACKING_SERVER_CERT_PATH"] = config.client.ca_file
        self.verify: str | bool = config.client.ca_file or True
        self.client = MlflowClient(tracking_uri=self.uri)

    def check(self) -> None:
        """MLflow answers and accepts this login; raises TrackingError otherwise."""
        try:
            answer = requests.get(f"{self.uri}/health", verify=self.verify, timeout=10)
        except requests.RequestException as exc:
            raise TrackingError(
                f"MLflow at {self.uri} is unreachable ({type(exc).__name__})"
            ) from None
        if answer.status_code != 200:
            raise TrackingError(f"MLflow at {self.uri}/health answered HTTP {answer.status_code}")
        if not os.environ.get("MLFLOW_TRACKING_USERNAME"):
            raise TrackingError("MLFLOW_TRACKING_USERNAME/MLFLOW_TRACKING_PASSWORD are not set")
        try:
            self.client.search_experiments(max_results=1)
        except MlflowException as exc:
            raise TrackingError(
                f"MLflow at {self.uri} refused this login: {exc.error_code}"
            ) from None

    def create(
        self, experiment: str, name: str, params: Mapping[str, str], tags: Mapping[str, str]
    ) -> str:
        """A run in state SCHEDULED with all params and tags; the jobs' user may edit it."""
        found = self.client.get_experiment_by_name(experiment)
        exp_id = found.experiment_id if found else self.client.create_experiment(experiment)
        self._grant(exp_id)
        run = self.client.create_run(exp_id, run_name=name)
        run_id = run.info.run_id
        self.client.log_batch(
            run_id,
            params=[Param(k, v) for k, v in params.items()],
            tags=[RunTag(k, v) for k, v in tags.items()],
            synchronous=True,
        )
        self.client.update_run(run_id, status="SCHEDULED")
        return run_id

    def _grant(self, experiment_id: str) -> None:
        # Here, not at the top: mlflow.server loads the whole server, which every other
        # command can do without, and warns about a dependency of its own.
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="starlette.middleware.wsgi is deprecated")
            from mlflow.server.auth.client import AuthServiceClient

        auth = AuthServiceClient(self.uri)
        try:
            auth.grant_user_permission(self.jobs_user, "experiment", experiment_id, "EDIT")
        except MlflowException as exc:
            if exc.error_code != "RESOURCE_ALREADY_EXISTS":
                raise TrackingError(
                    f"cannot let MLflow user {self.jobs_user!r} edit experiment {experiment_id}: "
                    f"{exc.error_code} (the launcher needs MANAGE on it)"
                ) from None

    def recent(self, limit: int, submitted_by: str | None) -> list[Run]:
        """The newest LIMIT runs labstack submitted (by SUBMITTED_BY only, if given),
        in every experiment this login may read, newest first."""
        if submitted_by is not None and not _USER.fullmatch(submitted_by):
            raise TrackingError(
                f"USER={submitted_by!r} is not a user name (letters, digits, . _ -): "
                "set it, or list every run with --all"
            )
        experiments = [e.experiment_id for e in self.client.search_experiments()]
        wanted = ["tags.`labstack.backend` LIKE '%'"]
        if submitted_by is not None:
            wanted.append(f"tags.`labstack.submitted_by` = '{submitted_by}'")
        if not experiments:
            return []
        return list(
            self.client.search_runs(
                experiments,
                " and ".join(wanted),
                max_results=limit,
                order_by=["attributes.start_time DESC"],
            )
        )

    def set_tags(self, run_id: str, tags: Mapping[str, str]) -> None:
        self.client.log_batch(
            run_id, tags=[RunTag(k, v) for k, v in tags.items()], synchronous=True
        )

    def url(self, run_id: str) -> str:
        run = self.client.get_run(run_id)
        return f"{self.uri}/#/experiments/{run.info.experiment_id}/runs/{run_id}"

    def get(self, run_id: str):
        try:
            return self.client.get_run(run_id)
        except MlflowException as exc:
            raise TrackingError(f"run {run_id}: {exc.error_code}") from None

    def discard(self, run_id: str) -> None:
        """Delete a run whose job could not be submitted (no orphan left)."""
        self.client.delete_run(run_id)

    def terminate(self, run_id: str, status: str) -> None:
        if self.client.get_run(run_id).info.status not in TERMINAL:
            self.client.set_terminated(run_id, status=status)

    def fail(self, run_id: str, reason: str) -> None:
        """Mark the run FAILED (whatever it says now), with REASON as labstack.failure."""
        self.set_tags(run_id, {"labstack.failure": reason})
        self.client.set_terminated(run_id, status="FAILED")


def submitter() -> str:
    """Who submits, as the run's tag labstack.submitted_by records it (and `ls` finds it)."""
    return os.environ.get("USER", "unknown")


def launch_tags(
    backend: str, job_name: str, args: Mapping[str, str], build: Mapping[str, str]
) -> dict[str, str]:
    """What relaunch needs and what the result's coordinates are, known before the job runs."""
    tags = {
        "labstack.backend": backend,
        "labstack.job_name": job_name,
        "labstack.args": json.dumps(dict(args), sort_keys=True),
        "labstack.submitted_by": submitter(),
        **build,
    }
    if "git.commit" in build:
        tags["mlflow.source.git.commit"] = build["git.commit"]
    return tags
