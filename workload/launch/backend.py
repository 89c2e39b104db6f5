"""The one interface of every place a run can go; each backend is one module, named below.

A backend checks a request against its cluster (`prepare`), renders and
submits one job per run, and follows a submitted job: its state, its output,
a graceful stop or a cancel. `cli` knows only this interface.
"""

from __future__ import annotations

import importlib
import re
import time
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import ClassVar

from workload.launch.config import LabConfig
from workload.launch.spec import Resources, SpecError

# name -> "module:class". A new backend is a new module and a line here.
REGISTRY = {
    "slurm": "workload.launch.slurm:Slurm",
    "k8s": "workload.launch.k8s:Kubernetes",
    "apptainer": "workload.launch.apptainer:Apptainer",
    "local": "workload.launch.local:Local",
}
NAMES = tuple(REGISTRY)

# Job states in Slurm's words (each backend maps its own to them); in these
# the job may still run, so stop, relaunch and `logs -f` wait.
ACTIVE = (
    "PENDING",
    "RUNNING",
    "COMPLETING",
    "CONFIGURING",
    "REQUEUED",
    "SUSPENDED",
    "STOPPING",
)


@dataclass(frozen=True)
class JobRequest:
    """One run's job, as the launcher asks for it."""

    run_id: str
    experiment: str
    job_name: str
    git_commit: str
    argv: list[str]


@dataclass(frozen=True)
class JobRef:
    """A submitted job, found again from its MLflow run's tags (job.id, labstack.run_dir)."""

    job_id: str
    run_id: str
    run_dir: str


@dataclass
class LogCursor:
    """How much of each of a job's outputs was read (one output per pod on Kubernetes)."""

    offsets: dict[str, int] = field(default_factory=dict)
    last: str = ""  # the output read last: Kubernetes prints a header when it changes

    def at(self, output: str = "output") -> int:
        return self.offsets.get(output, 0)

    def moved(self, chunk: bytes, output: str = "output") -> bytes:
        """CHUNK, read from OUTPUT at `at(output)`, now counted as read."""
        self.offsets[output] = self.at(output) + len(chunk)
        return chunk


class Backend(ABC):
    name: ClassVar[str]
    # The launcher mints an OpenBao AppRole login per run and hands it to the job.
    needs_login: ClassVar[bool] = True
    # The job's id is known before it is submitted (`job_id`): `render
    # --create-run` can tag the run with it and leave the submission to the user.
    names_jobs: ClassVar[bool] = False
    # The ids this backend's jobs get (Slurm's job ids, process ids).
    job_ids: ClassVar[re.Pattern[str]] = re.compile(r"[0-9]{1,12}")

    def __init__(self, config: LabConfig, resources: Resources) -> None:
        self.config = config
        self.resources = resources

    # ------------------------------------------------------------ before a run
    @abstractmethod
    def prepare(self, env_path: str = "") -> dict[str, str]:
        """Check the target can take the job (before any run exists); the coordinates
        (git.commit, env.*) of what would run. ENV_PATH: a run's recorded environment."""

    @abstractmethod
    def run_dir(self, run_id: str) -> str:
        """Where the job keeps its files ("" when it keeps none)."""

    @abstractmethod
    def render(self, job: JobRequest) -> str:
        """The script or manifest `submit` would hand to the scheduler."""

    def job_id(self, job: JobRequest) -> str:
        """The id `submit` will give the job (backends with names_jobs only)."""
        raise NotImplementedError(f"{self.name} learns a job's id only when it submits it")

    @abstractmethod
    def submit(self, job: JobRequest, approle: str) -> str:
        """Submit the job; its id. APPROLE: the run's OpenBao login (JSON), or ""."""

    # ------------------------------------------------------- a submitted job
    def check_job(self, job: JobRef, job_name: str) -> None:
        """SpecError unless JOB's id, from a tag of its run, is one this backend could
        have given the run called JOB_NAME (jobs can edit their run's tags)."""
        if not self.job_ids.fullmatch(job.job_id):
            raise SpecError(f"tag job.id={job.job_id!r}: not a {self.name} job id")

    @abstractmethod
    def state(self, job: JobRef) -> str:
        """The job's state, in Slurm's words where they fit (ACTIVE ones while it may run)."""

    @abstractmethod
    def stop(self, job: JobRef, graceful: bool) -> None:
        """Graceful: checkpoint and end, no retry. Else end now."""

    @abstractmethod
    def log(self, job: JobRef, cursor: LogCursor) -> bytes:
        """The job's output not read yet (bytes: a read may end inside a character)."""

    def active(self, job: JobRef) -> bool:
        return self.state(job) in ACTIVE

    def wait(self, job: JobRef, timeout: float) -> str:
        deadline = time.monotonic() + timeout
        while self.active(job) and time.monotonic() < deadline:
            time.sleep(2)
        return self.state(job)


def backend(name: str, config: LabConfig, resources: Resources | None = None) -> Backend:
    """The backend called NAME (one of NAMES)."""
    module, _, cls = REGISTRY[name].partition(":")
    return getattr(importlib.import_module(module), cls)(config, resources or Resources())
