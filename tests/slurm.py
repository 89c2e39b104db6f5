"""Helpers of the Slurm tests: the sandbox's Slurm hosts and jobs run on them."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from pathlib import PurePosixPath

from testinfra.host import Host

from tests.inventory import hosts, hostvars
from tests.services import role_setting


def controller_name() -> str:
    return hosts("slurm_controller")[0]


def compute_names() -> list[str]:
    return hosts("slurm_compute")


def slurm_setting(name: str) -> object:
    """A slurm role variable as the controller gets it: inventory, else role default."""
    return role_setting("slurm", name, controller_name())


def shared_dir() -> PurePosixPath:
    """A fresh directory on the shared filesystem (not /tmp: noexec there)."""
    mount = hostvars(controller_name())["sandbox_shared_mount"]
    return PurePosixPath(mount) / "slurm-tests" / uuid.uuid4().hex[:12]


@dataclass(frozen=True)
class Job:
    job_id: str
    returncode: int
    output: str


def sbatch(controller: Host, *options: str, wrap: str) -> Job:
    """sbatch --wait a one-line job from the controller; its output, read back."""
    directory = shared_dir()
    controller.check_output(f"mkdir -p {directory}")
    out = directory / "job.out"
    quoted = wrap.replace("'", "'\"'\"'")
    submitted = controller.run(
        f"sbatch --parsable --wait --chdir={directory} --output={out} "
        f"{' '.join(options)} --wrap='{quoted}'"
    )
    job_id = submitted.stdout.strip().split(";")[0]
    assert job_id.isdigit(), f"sbatch gave no job id: {submitted.stdout} {submitted.stderr}"
    output = controller.run(f"cat {out}").stdout
    controller.run(f"rm -rf {directory}")
    return Job(job_id, submitted.rc, output)
