"""`--on local`: the run as a process of this machine, from this checkout's environment."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

from workload.launch.backend import Backend, JobRef, JobRequest, LogCursor
from workload.launch.spec import SpecError


class Local(Backend):
    """A detached process; its process id is the job id, its files are in [local] runs_dir/RUN.

    The run's job.pid holds the process id and its start time: `stop` signals the
    process only while that pid is still the run's process (not another that reuses it)."""

    name = "local"

    def prepare(self, env_path: str = "") -> dict[str, str]:
        from workload.buildinfo import build_info  # imports torch: only when running here

        return build_info(Path(__file__).resolve().parents[2])

    def run_dir(self, run_id: str) -> str:
        return str(Path(self.config.local.runs_dir).expanduser() / run_id)

    def render(self, job: JobRequest) -> str:
        return json.dumps({"backend": self.name, "argv": job.argv, "run_id": job.run_id}, indent=2)

    def command(
        self, directory: Path, settings: dict[str, str], train_argv: list[str]
    ) -> tuple[list[str], dict[str, str]]:
        """The job's argv and its environment's settings."""
        python = self.config.local.python or sys.executable
        return [python, "-m", "workload.train", *train_argv], settings

    def submit(self, job: JobRequest, approle: str) -> str:
        """Start the job detached."""
        directory = Path(self.run_dir(job.run_id))
        directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        directory.chmod(0o700)
        (directory / "STOP").unlink(missing_ok=True)
        login = directory / "approle.json"
        descriptor = os.open(login, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        os.fchmod(descriptor, 0o600)  # also when a relaunch finds the file
        with os.fdopen(descriptor, "w", encoding="utf-8") as file:
            file.write(approle)
        client = self.config.client
        settings = {
            "MLFLOW_RUN_ID": job.run_id,
            "MLFLOW_TRACKING_URI": client.mlflow_uri,
            "MLFLOW_HTTP_REQUEST_MAX_RETRIES": str(self.config.jobs.mlflow_retries),
            "S3_ENDPOINT": client.s3_endpoint,
            "BAO_ADDR": client.openbao_addr,
            "BAO_SECRET_PATH": self.config.jobs.secret_path,
            "BAO_APPROLE_FILE": str(login),
            "LABSTACK_GIT_COMMIT": job.git_commit,
            "DATA_EPHEMERAL_PATH": str(directory / "data"),
        }
        if client.ca_file:
            for name in ("BAO_CACERT", "REQUESTS_CA_BUNDLE", "AWS_CA_BUNDLE"):
                settings[name] = client.ca_file
        argv, settings = self.command(directory, settings, job.argv)
        # Only what the job needs: not the launcher's own secrets (MLflow login, BAO_TOKEN).
        env = {k: os.environ[k] for k in ("PATH", "HOME", "LANG", "TZ") if k in os.environ}
        env.update(settings)
        with (directory / "job.log").open("ab") as log:
            process = subprocess.Popen(  # noqa: S603 (argument list)
                argv,
                cwd=directory,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        (directory / "job.pid").write_text(f"{process.pid} {started(process.pid)}\n")
        return str(process.pid)

    def _started(self, job: JobRef) -> str:
        """The start time job.pid recorded for JOB's process ("" without a job.pid)."""
        try:
            pid, start = (Path(self.run_dir(job.run_id)) / "job.pid").read_text().split()
        except (OSError, ValueError):
            return ""
        if pid != job.job_id:
            raise SpecError(f"tag job.id={job.job_id!r}: the run's process is {pid} (its job.pid)")
        return start

    def check_job(self, job: JobRef, job_name: str) -> None:
        super().check_job(job, job_name)
        self._started(job)

    def _running(self, job: JobRef) -> bool:
        start = self._started(job)
        return bool(start) and started(int(job.job_id)) == start

    def state(self, job: JobRef) -> str:
        return "RUNNING" if self._running(job) else "ENDED"

    def stop(self, job: JobRef, graceful: bool) -> None:
        (Path(self.run_dir(job.run_id)) / "STOP").touch()
        if self._running(job):
            os.kill(int(job.job_id), signal.SIGUSR1 if graceful else signal.SIGTERM)

    def log(self, job: JobRef, cursor: LogCursor) -> bytes:
        path = Path(self.run_dir(job.run_id)) / "job.log"
        if not path.exists():
            return b""
        with path.open("rb") as log:
            log.seek(cursor.at())
            return cursor.moved(log.read())


def started(pid: int) -> str:
    """The start time of process PID (clock ticks after boot, /proc/PID/stat's 22nd field);
    "" when no such process runs (none, or a zombie)."""
    try:
        state, *fields = Path(f"/proc/{pid}/stat").read_text().rsplit(") ", 1)[1].split()
    except (OSError, IndexError):
        return ""
    return "" if state in ("Z", "X") else fields[18]
