"""Provenance outside a git checkout (an image, a cluster environment): the build info;
the job tags a training writes, which must agree with the launcher's."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from workload import provenance

INFO = {"git.commit": "ab" * 20, "git.dirty": "False", "env.lock_sha256": "cd" * 32}


@pytest.fixture
def no_checkout(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.delenv("LABSTACK_GIT_COMMIT", raising=False)
    monkeypatch.delenv("LABSTACK_GIT_BRANCH", raising=False)
    monkeypatch.setenv("GIT_CEILING_DIRECTORIES", str(tmp_path))
    info = tmp_path / "build-info.json"
    info.write_text(json.dumps(INFO))
    monkeypatch.setenv("LABSTACK_BUILD_INFO", str(info))
    return tmp_path


def test_commit_and_lock_hash_come_from_the_build_info(no_checkout: Path) -> None:
    tags, diff = provenance.git_state(no_checkout)
    assert tags == {"git.commit": INFO["git.commit"], "git.dirty": "False"}
    assert diff is None
    env = provenance.environment_tags(no_checkout / "uv.lock")  # no lock file here
    assert env["env.lock_sha256"] == INFO["env.lock_sha256"]


def test_the_launchers_commit_wins(no_checkout: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LABSTACK_GIT_COMMIT", "ef" * 20)
    assert provenance.git_state(no_checkout)[0]["git.commit"] == "ef" * 20


def test_a_lock_file_present_wins(no_checkout: Path) -> None:
    lock = no_checkout / "uv.lock"
    lock.write_text("version = 1\n")
    assert provenance.environment_tags(lock)["env.lock_sha256"] == provenance.file_sha256(lock)


@pytest.mark.parametrize(("content", "message"), [(None, "cannot read"), ("[1]", "not a JSON")])
def test_an_unreadable_build_info_is_an_error(
    no_checkout: Path, content: str | None, message: str
) -> None:
    info = no_checkout / "build-info.json"
    if content is None:
        info.unlink()
    else:
        info.write_text(content)
    with pytest.raises(RuntimeError, match=rf"LABSTACK_BUILD_INFO={info}: {message}"):
        provenance.git_state(no_checkout)


def test_without_build_info_the_commit_is_unknown(
    no_checkout: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("LABSTACK_BUILD_INFO")
    assert provenance.git_state(no_checkout)[0] == {"git.commit": "unknown"}


@pytest.mark.parametrize(
    ("variable", "scheduler"), [("SLURM_JOB_ID", "slurm"), ("LABSTACK_K8S_JOB", "k8s")]
)
def test_job_tags_name_the_scheduler_as_the_launcher_does(
    monkeypatch: pytest.MonkeyPatch, variable: str, scheduler: str
) -> None:
    monkeypatch.delenv("SLURM_JOB_ID", raising=False)
    monkeypatch.delenv("LABSTACK_K8S_JOB", raising=False)
    monkeypatch.setenv(variable, "train-1-0123abcd")
    tags = provenance.job_tags()
    assert tags["job.scheduler"] == scheduler  # `labstack submit --on slurm|k8s`
    assert tags["job.id"] == "train-1-0123abcd"
