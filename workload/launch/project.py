"""A researcher's project, as `labstack submit --project` will run it: a git
repository (a local path or a URL) at one commit, with an `MLproject` file
naming its entry points and their typed parameters (MLflow Projects' format),
and a `pyproject.toml` + `uv.lock` that pin its environment.

    name: my-project
    entry_points:
      main:
        parameters:
          lr: {type: float, default: 0.001}
          data: path
        command: "python -m my_project.train --lr {lr} --data {data}"

`export_commit` writes exactly the commit's tree (never the working tree) into
a directory; a working tree with uncommitted changes is refused unless the
caller allows it, and then the diff against the commit is returned, to be
applied and recorded. Everything here is checked before any run exists, and
every error names what is wrong.
"""

from __future__ import annotations

import hashlib
import math
import os
import re
import shlex
import shutil
import string
import subprocess
import tarfile
from dataclasses import dataclass
from io import BytesIO
from pathlib import Path
from typing import Any

import yaml

from workload.launch.spec import SpecError

# The parameter types of MLflow Projects.
TYPES = ("string", "float", "path", "uri")
_PARAM_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_URI = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*:\S+")
# What --version may be: a hash, tag or branch (no option, no revision syntax).
_REVISION = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_./-]{0,199}")


class ProjectError(SpecError):
    """The project, its MLproject file, an entry point or a parameter is wrong;
    the message names which."""


@dataclass(frozen=True)
class Parameter:
    name: str
    type: str
    default: str | None

    def check(self, value: str) -> str:
        """VALUE, if it is one of this parameter's type."""
        where = f"parameter {self.name} ({self.type})"
        if "\x00" in value or "\n" in value:
            raise ProjectError(f"{where}: {value!r} holds a NUL or newline")
        if self.type == "float":
            try:
                number = float(value)
            except ValueError:
                raise ProjectError(f"{where}: {value!r} is not a number") from None
            if not math.isfinite(number):
                raise ProjectError(f"{where}: {value!r} is not a finite number")
        elif self.type in ("path", "uri") and not value:
            raise ProjectError(f"{where}: empty")
        elif self.type == "uri" and not (_URI.fullmatch(value) or value.startswith("/")):
            raise ProjectError(f"{where}: {value!r} is neither SCHEME:... nor an absolute path")
        return value


@dataclass(frozen=True)
class EntryPoint:
    name: str
    command: str
    parameters: dict[str, Parameter]

    def render(self, given: dict[str, str]) -> tuple[str, dict[str, str]]:
        """The shell command for GIVEN (every value checked and quoted) and the
        parameters it runs with, defaults included. As MLflow does, a parameter
        the command does not name is appended as `--NAME VALUE`."""
        unknown = sorted(set(given) - set(self.parameters))
        if unknown:
            known = ", ".join(sorted(self.parameters)) or "none"
            raise ProjectError(
                f"entry point {self.name}: no parameter {', '.join(unknown)} (it takes: {known})"
            )
        values: dict[str, str] = {}
        for name, parameter in self.parameters.items():
            value = given.get(name, parameter.default)
            if value is None:
                raise ProjectError(
                    f"entry point {self.name}: parameter {name} has no default: give it"
                )
            values[name] = parameter.check(value)
        named = _placeholders(f"entry point {self.name}", self.command)
        command = self.command.format(**{k: shlex.quote(v) for k, v in values.items()})
        extra = [f"--{k} {shlex.quote(v)}" for k, v in values.items() if k not in named]
        return " ".join([command, *extra]), values


@dataclass(frozen=True)
class Project:
    """A project's tree (an export of one commit), read and checked."""

    name: str
    root: Path
    entry_points: dict[str, EntryPoint]
    lock_sha256: str  # of uv.lock: the environment's identity

    @classmethod
    def load(cls, root: Path) -> Project:
        for required in ("MLproject", "pyproject.toml", "uv.lock"):
            if not (root / required).is_file():
                raise ProjectError(
                    f"{root}: no {required} (a project brings an MLproject file, and "
                    "pyproject.toml + uv.lock that pin its environment: `uv lock`)"
                )
        try:
            spec = yaml.safe_load((root / "MLproject").read_text(encoding="utf-8"))
        except (yaml.YAMLError, UnicodeDecodeError) as error:
            raise ProjectError(f"{root / 'MLproject'}: not YAML ({error})") from None
        if not isinstance(spec, dict) or not isinstance(spec.get("entry_points"), dict):
            raise ProjectError(f"{root / 'MLproject'}: no entry_points mapping")
        entry_points = {
            str(name): _entry_point(str(name), body) for name, body in spec["entry_points"].items()
        }
        lock = hashlib.sha256((root / "uv.lock").read_bytes()).hexdigest()
        return cls(str(spec.get("name") or root.name), root, entry_points, lock)

    def entry_point(self, name: str) -> EntryPoint:
        if name not in self.entry_points:
            raise ProjectError(
                f"{self.name}: no entry point {name!r} in MLproject "
                f"(it has: {', '.join(sorted(self.entry_points))})"
            )
        return self.entry_points[name]


def _entry_point(name: str, body: Any) -> EntryPoint:
    where = f"MLproject entry point {name}"
    if not isinstance(body, dict) or not isinstance(body.get("command"), str):
        raise ProjectError(f"{where}: needs a command")
    parameters: dict[str, Parameter] = {}
    for pname, pbody in (body.get("parameters") or {}).items():
        pname = str(pname)
        if not _PARAM_NAME.fullmatch(pname):
            raise ProjectError(f"{where}: parameter name {pname!r} is not an identifier")
        declared = pbody if isinstance(pbody, dict) else {"type": pbody}
        ptype = declared.get("type", "string")
        if ptype not in TYPES:
            raise ProjectError(
                f"{where}: parameter {pname} type {ptype!r}: one of {', '.join(TYPES)}"
            )
        default = declared.get("default")
        parameter = Parameter(pname, ptype, None if default is None else str(default))
        if parameter.default is not None:
            parameter.check(parameter.default)
        parameters[pname] = parameter
    undeclared = sorted(_placeholders(where, body["command"]) - set(parameters))
    if undeclared:
        raise ProjectError(f"{where}: its command names undeclared {', '.join(undeclared)}")
    return EntryPoint(name, body["command"], parameters)


def _placeholders(where: str, command: str) -> set[str]:
    """The parameter names COMMAND formats in: `{NAME}`, nothing more."""
    try:
        parsed = [(f, spec, conv) for _, f, spec, conv in string.Formatter().parse(command)]
    except ValueError as error:  # an unmatched brace
        raise ProjectError(f"{where}: command {command!r}: {error}") from None
    names: set[str] = set()
    for field, spec, conversion in parsed:
        if field is not None:
            if not field or spec or conversion:
                raise ProjectError(f"{where}: command placeholders are {{NAME}} only")
            names.add(field)
    return names


@dataclass(frozen=True)
class Export:
    commit: str  # the full hash
    diff: str  # the working tree's changes to tracked files, when allowed; else ""


def _git(cwd: Path, *args: str, stdin: bytes | None = None) -> bytes:
    """git's output; an error that names the command where it fails."""
    git = shutil.which("git")
    if git is None:
        raise ProjectError("git is not installed: a project is read from its repository")
    # No repository above CWD is looked for: an export's `git apply` patches only it.
    env = {**os.environ, "GIT_CEILING_DIRECTORIES": str(cwd.parent)}
    done = subprocess.run(  # noqa: S603
        [git, *args], cwd=cwd, input=stdin, env=env, capture_output=True, timeout=300
    )
    if done.returncode != 0:
        reason = done.stderr.decode(errors="replace").strip().splitlines()
        raise ProjectError(f"{cwd}: git {args[0]}: {reason[-1] if reason else 'failed'}")
    return done.stdout


def export_commit(source: Path, version: str, dest: Path, *, allow_dirty: bool) -> Export:
    """Write the tree of VERSION (a commit, tag or branch of the repository at SOURCE)
    into DEST, which must be empty. Where the working tree is checked out at that
    commit and its tracked files differ from it, it is refused unless ALLOW_DIRTY;
    the diff is then applied to DEST too and returned. Untracked files never go."""
    if not (source / ".git").exists():
        raise ProjectError(f"--project {source}: not the top of a git repository")
    if not _REVISION.fullmatch(version):
        raise ProjectError(f"--version {version!r}: not a commit, tag or branch name")
    try:
        commit = _git(source, "rev-parse", "--verify", "--quiet", f"{version}^{{commit}}")
    except ProjectError:
        raise ProjectError(f"--version {version!r}: no such commit in {source}") from None
    commit_id = commit.decode().strip()
    # The working tree matters only where it is checked out at that commit.
    at_head = _git(source, "rev-parse", "HEAD") == commit
    diff = _git(source, "diff", "--binary", "HEAD", "--") if at_head else b""
    if diff and not allow_dirty:
        changed = _git(source, "diff", "--name-only", "HEAD", "--").decode().split()
        raise ProjectError(
            f"{source}: tracked files differ from {version} ({', '.join(changed[:5])}"
            f"{', ...' if len(changed) > 5 else ''}): commit them, or allow a dirty tree "
            "(its diff is then recorded with the run)"
        )
    dest.mkdir(parents=True, exist_ok=True)
    if any(dest.iterdir()):
        raise ProjectError(f"{dest}: not empty")
    with tarfile.open(fileobj=BytesIO(_git(source, "archive", commit_id))) as tree:
        tree.extractall(dest, filter="data")
    if diff:
        _git(dest, "apply", "--binary", "-", stdin=diff)
    return Export(commit_id, diff.decode(errors="replace"))
