"""A researcher's project: its MLproject entry points and typed parameters, and the
export of exactly one commit (real git repositories in a temporary directory)."""

from __future__ import annotations

import shlex
import subprocess
from pathlib import Path

import pytest

from workload.launch.project import Project, ProjectError, export_commit

MLPROJECT = """\
name: demo
entry_points:
  main:
    parameters:
      lr: {type: float, default: 0.001}
      data: path
      note: {type: string, default: "a b"}
      out: {type: uri, default: "s3://runs/out"}
    command: "python -m demo.train --lr {lr} --data {data}"
  evaluate:
    command: "python -m demo.evaluate"
"""


def _project(root: Path, mlproject: str = MLPROJECT) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / "MLproject").write_text(mlproject)
    (root / "pyproject.toml").write_text('[project]\nname = "demo"\nversion = "0.1.0"\n')
    (root / "uv.lock").write_text("version = 1\n")
    return root


def _git(repo: Path, *args: str) -> str:
    argv = ["git", "-c", "user.name=t", "-c", "user.email=t@lab", *args]
    return subprocess.run(argv, cwd=repo, check=True, capture_output=True, text=True).stdout


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    root = _project(tmp_path / "demo")
    (root / "train.py").write_text("print('v1')\n")
    _git(root, "init", "-q", "-b", "main")
    _git(root, "add", ".")
    _git(root, "commit", "-q", "-m", "v1")
    return root


def test_an_entry_point_renders_checked_and_quoted_values(tmp_path: Path) -> None:
    project = Project.load(_project(tmp_path / "p"))
    assert project.name == "demo"
    assert len(project.lock_sha256) == 64
    attack = "x; touch /tmp/owned $(id)"
    command, values = project.entry_point("main").render({"data": attack, "lr": "0.5"})
    assert values == {"lr": "0.5", "data": attack, "note": "a b", "out": "s3://runs/out"}
    # The shell sees each value as one word: nothing of it runs.
    words = shlex.split(command)
    assert words[:7] == ["python", "-m", "demo.train", "--lr", "0.5", "--data", attack]
    # As MLflow does: parameters the command does not name are appended.
    assert words[7:] == ["--note", "a b", "--out", "s3://runs/out"]


@pytest.mark.parametrize(
    ("given", "named"),
    [
        ({"data": "d", "lr": "fast"}, "parameter lr (float): 'fast' is not a number"),
        ({"data": "d", "lr": "nan"}, "parameter lr (float): 'nan' is not a finite number"),
        ({"data": "d", "epochs": "3"}, "no parameter epochs (it takes: data, lr, note, out)"),
        ({"lr": "0.1"}, "parameter data has no default"),
        ({"data": ""}, "parameter data (path): empty"),
        ({"data": "d", "out": "runs/out"}, "parameter out (uri): 'runs/out' is neither"),
        ({"data": "d\nrm -rf /"}, "parameter data (path): 'd\\nrm -rf /' holds a NUL or newline"),
    ],
)
def test_a_bad_parameter_is_named(tmp_path: Path, given: dict[str, str], named: str) -> None:
    entry = Project.load(_project(tmp_path / "p")).entry_point("main")
    with pytest.raises(ProjectError, match=r"^entry point main: |^parameter ") as caught:
        entry.render(given)
    assert named in str(caught.value)


def test_an_unknown_entry_point_names_those_there_are(tmp_path: Path) -> None:
    project = Project.load(_project(tmp_path / "p"))
    with pytest.raises(ProjectError, match=r"no entry point 'train' .*it has: evaluate, main"):
        project.entry_point("train")


@pytest.mark.parametrize("missing", ["MLproject", "pyproject.toml", "uv.lock"])
def test_a_project_without_its_files_is_refused(tmp_path: Path, missing: str) -> None:
    root = _project(tmp_path / "p")
    (root / missing).unlink()
    with pytest.raises(ProjectError, match=f"no {missing} "):
        Project.load(root)


@pytest.mark.parametrize(
    ("mlproject", "named"),
    [
        ("name: x\n", "no entry_points mapping"),
        ("entry_points: {main: {parameters: {a: int}, command: x}}", "type 'int': one of"),
        ("entry_points: {main: {command: 'run {a}'}}", "its command names undeclared a"),
        ("entry_points: {main: {parameters: {a: float}}}", "entry point main: needs a command"),
        ("entry_points: {main: {parameters: {'a-b': path}, command: x}}", "'a-b' is not an"),
        ("entry_points: {main: {parameters: {a: {type: float, default: x}}, command: x}}",
         "parameter a (float): 'x' is not a number"),
        ("entry_points: [", "not YAML"),
        ("entry_points: {main: {command: 'run {'}}", "command 'run {': Single '{'"),
        ("entry_points: {main: {parameters: {a: float}, command: 'run {a!r}'}}",
         "command placeholders are {NAME} only"),
        ("entry_points: {main: {command: 'run {}'}}", "command placeholders are {NAME} only"),
    ],
)  # fmt: skip
def test_a_wrong_mlproject_is_named(tmp_path: Path, mlproject: str, named: str) -> None:
    with pytest.raises(ProjectError) as caught:
        Project.load(_project(tmp_path / "p", mlproject))
    assert named in str(caught.value)


def test_the_export_is_the_commit_not_the_working_tree(repo: Path, tmp_path: Path) -> None:
    first = _git(repo, "rev-parse", "HEAD").strip()
    (repo / "train.py").write_text("print('v2')\n")
    _git(repo, "commit", "-q", "-am", "v2")
    (repo / "scratch.txt").write_text("untracked\n")

    export = export_commit(repo, first[:10], tmp_path / "old", allow_dirty=False)
    assert export.commit == first
    assert export.diff == ""
    assert (tmp_path / "old" / "train.py").read_text() == "print('v1')\n"
    assert not (tmp_path / "old" / "scratch.txt").exists()
    assert not (tmp_path / "old" / ".git").exists()
    assert Project.load(tmp_path / "old").entry_point("evaluate").render({})[0] == (
        "python -m demo.evaluate"
    )


def test_a_dirty_tree_is_refused_unless_allowed_and_then_its_diff_goes_along(
    repo: Path, tmp_path: Path
) -> None:
    (repo / "train.py").write_text("print('edited')\n")
    with pytest.raises(ProjectError, match=r"tracked files differ from main \(train.py\)"):
        export_commit(repo, "main", tmp_path / "refused", allow_dirty=False)
    assert not (tmp_path / "refused").exists()

    export = export_commit(repo, "main", tmp_path / "dirty", allow_dirty=True)
    assert export.commit == _git(repo, "rev-parse", "HEAD").strip()
    assert "+print('edited')" in export.diff
    assert (tmp_path / "dirty" / "train.py").read_text() == "print('edited')\n"


@pytest.mark.parametrize(
    ("version", "named"),
    [
        ("0123456789abcdef", "--version '0123456789abcdef': no such commit in"),
        ("--output=/tmp/x", "--version '--output=/tmp/x': not a commit, tag or branch name"),
        ("main^{tree}", "not a commit, tag or branch name"),
    ],
)
def test_a_version_that_is_not_a_commit_is_named(
    repo: Path, tmp_path: Path, version: str, named: str
) -> None:
    with pytest.raises(ProjectError) as caught:
        export_commit(repo, version, tmp_path / "out", allow_dirty=False)
    assert named in str(caught.value)
    assert not (tmp_path / "out").exists()


def test_a_directory_that_is_not_a_repository_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ProjectError, match="not the top of a git repository"):
        export_commit(_project(tmp_path / "plain"), "main", tmp_path / "out", allow_dirty=False)
