"""The coordinates of a result: code, environment, data and job, as MLflow tags."""

from __future__ import annotations

import hashlib
import json
import os
import platform
import socket
import subprocess
from pathlib import Path

import torch


def _git(repo: Path, *args: str) -> str | None:
    try:
        argv = ["git", "-C", str(repo), *args]
        done = subprocess.run(argv, capture_output=True, text=True, timeout=30, check=True)  # noqa: S603
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout


def installed_build_info() -> dict[str, str]:
    """The BUILD_INFO.json (`python -m workload.buildinfo`) of the installed workload.

    `LABSTACK_BUILD_INFO` names it: the training image sets it to the copy
    it carries. Empty where it is not set; an error where it is set but
    cannot be read (a run would otherwise lose its coordinates silently).
    """
    path = os.environ.get("LABSTACK_BUILD_INFO")
    if not path:
        return {}
    try:
        info = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise RuntimeError(f"LABSTACK_BUILD_INFO={path}: cannot read it ({error})") from error
    if not isinstance(info, dict):
        raise RuntimeError(f"LABSTACK_BUILD_INFO={path}: not a JSON object")
    return {str(key): str(value) for key, value in info.items()}


def git_state(repo: Path) -> tuple[dict[str, str], str | None]:
    """Tags `git.commit`, `git.branch`, `git.dirty`, and the diff against HEAD when dirty.

    Outside a checkout (an image built from a wheel) the commit is the one the
    launcher passes (`LABSTACK_GIT_COMMIT`/`LABSTACK_GIT_BRANCH`), or else
    the build info's.
    """
    commit = _git(repo, "rev-parse", "HEAD")
    if commit is None:
        built = installed_build_info()
        tags = {
            "git.commit": os.environ.get("LABSTACK_GIT_COMMIT")
            or built.get("git.commit", "unknown")
        }
        if "git.dirty" in built:
            tags["git.dirty"] = built["git.dirty"]
        if branch := os.environ.get("LABSTACK_GIT_BRANCH"):
            tags["git.branch"] = branch
        return tags, None
    status = _git(repo, "status", "--porcelain") or ""
    diff = (_git(repo, "diff", "HEAD") or "") if status.strip() else None
    branch = (_git(repo, "rev-parse", "--abbrev-ref", "HEAD") or "").strip()
    tags = {"git.commit": commit.strip(), "git.branch": branch, "git.dirty": str(bool(diff))}
    return tags, diff


def file_sha256(path: Path) -> str | None:
    try:
        return hashlib.sha256(path.read_bytes()).hexdigest()
    except OSError:
        return None


def environment_tags(lock_file: Path) -> dict[str, str]:
    tags = {
        "env.python": platform.python_version(),
        "env.torch": torch.__version__,
        "env.cuda": str(torch.version.cuda),
        "env.cuda_available": str(torch.cuda.is_available()),
    }
    if lock_hash := file_sha256(lock_file) or installed_build_info().get("env.lock_sha256"):
        tags["env.lock_sha256"] = lock_hash
    if torch.cuda.is_available():
        names = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
        tags["env.gpus"] = ", ".join(names)
        try:
            import pynvml  # pyright: ignore[reportMissingImports]

            pynvml.nvmlInit()
            tags["env.driver"] = str(pynvml.nvmlSystemGetDriverVersion())
        except Exception:  # the driver version is best effort
            smi = subprocess.run(
                ["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],  # noqa: S607
                capture_output=True,
                text=True,
                check=False,
            )
            if smi.returncode == 0:
                tags["env.driver"] = smi.stdout.splitlines()[0].strip()
    if digest := os.environ.get("LABSTACK_IMAGE_DIGEST"):
        tags["env.image_digest"] = digest
    return tags


def job_tags() -> dict[str, str]:
    """Scheduler job id (Slurm or Kubernetes) and host, named as the launcher's backends
    (`labstack submit --on slurm|k8s`) tag them."""
    tags = {"job.host": socket.gethostname()}
    if job := os.environ.get("SLURM_JOB_ID"):
        tags["job.scheduler"] = "slurm"
        tags["job.id"] = job
    elif job := os.environ.get("LABSTACK_K8S_JOB"):
        tags["job.scheduler"] = "k8s"
        tags["job.id"] = job
    else:
        tags["job.scheduler"] = "local"
        tags["job.id"] = str(os.getpid())
    return tags
