"""Runs on this machine: a process (`--on local`) or an Apptainer container (`--on apptainer`)."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

from workload.launch.config import LabConfig
from workload.launch.spec import SpecError


def runs_dir(config: LabConfig) -> Path:
    return Path(config.local.runs_dir).expanduser()


def check(config: LabConfig, backend: str) -> None:
    if backend == "apptainer":
        if shutil.which("apptainer") is None:
            raise SpecError(
                "--on apptainer: no `apptainer` on PATH (install Apptainer, see the apptainer role)"
            )
        if not config.local.sif or not Path(config.local.sif).is_file():
            raise SpecError(
                f"--on apptainer: [local] sif {config.local.sif!r} is not a file "
                "(build apptainer/training.def)"
            )


def start(
    config: LabConfig,
    backend: str,
    run_id: str,
    approle: str,
    git_commit: str,
    train_argv: list[str],
) -> str:
    """Start the job detached; its process id is the job id."""
    directory = runs_dir(config) / run_id
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    directory.chmod(0o700)
    login = directory / "approle.json"
    descriptor = os.open(login, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.fchmod(descriptor, 0o600)  # also when a relaunch finds the file
    with os.fdopen(descriptor, "w", encoding="utf-8") as file:
        file.write(approle)
    client = config.client
    settings = {
        "MLFLOW_RUN_ID": run_id,
        "MLFLOW_TRACKING_URI": client.mlflow_uri,
        "S3_ENDPOINT": client.s3_endpoint,
        "BAO_ADDR": client.openbao_addr,
        "BAO_SECRET_PATH": config.jobs.secret_path,
        "BAO_APPROLE_FILE": str(login),
        "LABSTACK_GIT_COMMIT": git_commit,
        "DATA_EPHEMERAL_PATH": str(directory / "data"),
    }
    if client.ca_file:
        for name in ("BAO_CACERT", "REQUESTS_CA_BUNDLE", "AWS_CA_BUNDLE"):
            settings[name] = client.ca_file
    # Only what the job needs: not the launcher's own secrets (MLflow login, BAO_TOKEN).
    env = {k: os.environ[k] for k in ("PATH", "HOME", "LANG", "TZ") if k in os.environ}
    python = config.local.python or sys.executable
    argv = [python, "-m", "workload.train", *train_argv]
    if backend == "apptainer":
        binds = [str(directory)] + ([str(Path(client.ca_file).parent)] if client.ca_file else [])
        argv = [
            "apptainer",
            "exec",
            "--containall",
            "--bind",
            ",".join(binds),
            config.local.sif,
            "python",
            "-m",
            "workload.train",
            *train_argv,
        ]
        env.update({f"APPTAINERENV_{k}": v for k, v in settings.items()})
    else:
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
    return str(process.pid)


def alive(job_id: str) -> bool:
    try:
        status = Path(f"/proc/{int(job_id)}/stat").read_text().split(") ", 1)[1][0]
    except (OSError, ValueError, IndexError):
        return False
    return status not in ("Z", "X")


def stop(config: LabConfig, run_id: str, job_id: str, graceful: bool) -> None:
    (runs_dir(config) / run_id / "STOP").touch()
    if alive(job_id):
        os.kill(int(job_id), signal.SIGUSR1 if graceful else signal.SIGTERM)


def log_bytes(config: LabConfig, run_id: str, offset: int = 0) -> bytes:
    path = runs_dir(config) / run_id / "job.log"
    if not path.exists():
        return b""
    with path.open("rb") as log:
        log.seek(offset)
        return log.read()
