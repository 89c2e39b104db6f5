"""One interface over the four places a run can go: Slurm, Kubernetes, Apptainer, this machine."""

from __future__ import annotations

import json
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from workload.launch import k8s, local, slurm
from workload.launch.config import LabConfig
from workload.launch.spec import Resources

ACTIVE = ("PENDING", "RUNNING", "COMPLETING", "CONFIGURING", "REQUEUED", "SUSPENDED")


@dataclass
class Target:
    config: LabConfig
    backend: str
    resources: Resources
    partition: str = ""
    env_path: str = ""

    # ------------------------------------------------------------- before runs
    def prepare(self, env_path: str = "") -> dict[str, str]:
        """Check the target can take the job; the coordinates (git.commit, env.*) of what runs."""
        if self.backend == "slurm":
            login = slurm.Login(self.config.slurm.login)
            self.partition = slurm.check_resources(login, self.resources).name
            wanted = env_path or self.config.slurm.workload_env
            self.env_path, info = slurm.environment(login, wanted)
            return {**info, "env.path": self.env_path}
        if self.backend == "k8s":
            k8s.check(self.config)
            return {
                **_image_revision(self.config.kubernetes.image),
                "env.image": self.config.kubernetes.image,
            }
        local.check(self.config, self.backend)
        if self.backend == "apptainer":
            return {**_sif_info(self.config.local.sif), "env.image": self.config.local.sif}
        from workload.buildinfo import build_info  # imports torch: only when running here

        return build_info(Path(__file__).resolve().parents[2])

    def needs_login(self) -> bool:
        """Kubernetes jobs get credentials from Secrets (helm/training-job), others from OpenBao."""
        return self.backend != "k8s"

    # ------------------------------------------------------------- jobs
    def run_dir(self, run_id: str) -> str:
        if self.backend == "slurm":
            return f"{self.config.slurm.runs_dir}/{run_id}"
        if self.backend == "k8s":
            return ""
        return str(local.runs_dir(self.config) / run_id)

    def render(
        self, run_id: str, experiment: str, job_name: str, git_commit: str, argv: list[str]
    ) -> str:
        if self.backend == "slurm":
            return slurm.render(
                self.config,
                self.resources,
                self.partition,
                run_id,
                job_name,
                self.env_path,
                git_commit,
                argv,
            )
        if self.backend == "k8s":
            return k8s.render(
                self.config,
                job_name,
                k8s.values(self.config, self.resources, run_id, experiment, git_commit, argv),
            )
        return json.dumps({"backend": self.backend, "argv": argv, "run_id": run_id}, indent=2)

    def submit(
        self,
        run_id: str,
        experiment: str,
        job_name: str,
        git_commit: str,
        argv: list[str],
        approle: str,
    ) -> str:
        if self.backend == "slurm":
            login = slurm.Login(self.config.slurm.login)
            directory = self.run_dir(run_id)
            login.write_private(directory, "approle.json", approle)
            login.run(["rm", "-f", f"{directory}/STOP"])
            return slurm.submit(
                login, directory, self.render(run_id, experiment, job_name, git_commit, argv)
            )
        if self.backend == "k8s":
            k8s.apply(self.config, self.render(run_id, experiment, job_name, git_commit, argv))
            return job_name
        (Path(self.run_dir(run_id)) / "STOP").unlink(missing_ok=True)
        return local.start(self.config, self.backend, run_id, approle, git_commit, argv)


def _image_revision(image: str) -> dict[str, str]:
    """The commit an image was built from (its OCI label), when this machine has the image."""
    if shutil.which("docker") is None:
        return {}
    done = subprocess.run(  # noqa: S603
        [
            shutil.which("docker") or "docker",
            "image",
            "inspect",
            "--format",
            '{{index .Config.Labels "org.opencontainers.image.revision"}}',
            image,
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    revision = done.stdout.strip()
    return {"git.commit": revision} if done.returncode == 0 and revision else {}


def _sif_info(sif: str) -> dict[str, str]:
    done = subprocess.run(  # noqa: S603
        [
            shutil.which("apptainer") or "apptainer",
            "exec",
            sif,
            "cat",
            "/etc/labstack/build-info.json",
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    return {k: str(v) for k, v in json.loads(done.stdout).items()} if done.returncode == 0 else {}


@dataclass
class Job:
    """A submitted job, found again from its MLflow run's tags."""

    config: LabConfig
    backend: str
    job_id: str
    run_id: str
    run_dir: str

    def state(self) -> str:
        if self.backend == "slurm":
            return slurm.state(slurm.Login(self.config.slurm.login), self.job_id)
        if self.backend == "k8s":
            return "SUBMITTED"
        return "RUNNING" if local.alive(self.job_id) else "ENDED"

    def active(self) -> bool:
        return self.state() in ACTIVE

    def stop(self, graceful: bool) -> None:
        if self.backend == "slurm":
            login = slurm.Login(self.config.slurm.login)
            (slurm.stop if graceful else slurm.cancel)(login, self.run_dir, self.job_id)
        elif self.backend == "k8s":
            k8s.delete(self.config, self.job_id)
        else:
            local.stop(self.config, self.run_id, self.job_id, graceful)

    def log(self, offset: int = 0) -> bytes:
        """The job's output from byte OFFSET on (bytes: a read may end inside a character)."""
        if self.backend == "slurm":
            return slurm.log_bytes(
                slurm.Login(self.config.slurm.login), self.run_dir, self.job_id, offset
            )
        if self.backend == "k8s":
            return k8s.logs(self.config, self.job_id).encode()[offset:]
        return local.log_bytes(self.config, self.run_id, offset)

    def wait(self, timeout: float) -> str:
        deadline = time.monotonic() + timeout
        while self.active() and time.monotonic() < deadline:
            time.sleep(2)
        return self.state()
