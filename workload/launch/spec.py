"""What to run: resources, training arguments and sweeps, validated before anything happens."""

from __future__ import annotations

import hashlib
import itertools
import json
import re
from dataclasses import asdict, dataclass, fields
from typing import Any

from workload.config import TrainConfig, parse, parser

# Every pattern is matched whole (fullmatch): `$` alone would let a trailing newline through.
_TIME = re.compile(r"(\d+-)?\d{1,2}(:\d{2}){0,2}")
_MEMORY = re.compile(r"\d+[KMGT]?")
# Slurm's account and partition names.
_SLURM_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,63}")
# Kubernetes: helm's release names have at most 53 characters.
JOB_NAME_MAX = 52
_NAME = re.compile(r"[a-z0-9]([a-z0-9-]{0,38}[a-z0-9])?")
_JOB_NAME = re.compile(rf"[a-z0-9]([a-z0-9-]{{0,{JOB_NAME_MAX - 2}}}[a-z0-9])?")
_RUN_ID = re.compile(r"[0-9a-f]{32}")
# A workload environment's path on the cluster (it is rendered into the batch script).
ENV_PATH = re.compile(r"/[A-Za-z0-9_.+/-]*")


class SpecError(ValueError):
    """A submission is wrong; the message names the option at fault."""


@dataclass(frozen=True)
class Resources:
    nodes: int = 1
    gpus: int = 0  # per node
    cpus: float = 1  # per task; a fraction only on Kubernetes (Slurm allocates whole CPUs)
    memory: str = "2G"  # per node
    time: str = "01:00:00"
    partition: str = ""
    account: str = ""

    def validate(self) -> None:
        if self.nodes < 1:
            raise SpecError(f"--nodes {self.nodes}: at least 1")
        if self.gpus < 0:
            raise SpecError(f"--gpus {self.gpus}: not negative")
        if not self.cpus > 0:
            raise SpecError(f"--cpus {self.cpus:g}: more than 0")
        if not _MEMORY.fullmatch(self.memory):
            raise SpecError(f"--memory {self.memory!r}: a size like 4G or 512M")
        if not _TIME.fullmatch(self.time):
            raise SpecError(f"--time {self.time!r}: Slurm's [D-]HH:MM:SS, e.g. 02:00:00")
        for option, value in (("--partition", self.partition), ("--account", self.account)):
            if value and not _SLURM_NAME.fullmatch(value):
                raise SpecError(
                    f"{option} {value!r}: letters, digits, '_', '.' and '-', at most 64"
                )

    @property
    def time_seconds(self) -> int:
        """--time in seconds, read as Slurm reads it: M, M:S, H:M:S, D-H, D-H:M, D-H:M:S."""
        days, _, clock = self.time.rpartition("-")
        parts = [int(p) for p in clock.split(":")]
        if days:  # D-H[:M[:S]]
            hours, minutes, seconds = [*parts, 0, 0][:3]
            return ((int(days) * 24 + hours) * 60 + minutes) * 60 + seconds
        if len(parts) == 3:
            return (parts[0] * 60 + parts[1]) * 60 + parts[2]
        return parts[0] * 60 + (parts[1] if len(parts) == 2 else 0)

    @property
    def tasks_per_node(self) -> int:
        """One training process per GPU, or one per node on CPU."""
        return max(self.gpus, 1)

    def as_tags(self) -> dict[str, str]:
        return {
            f"resources.{k}": f"{v:g}" if isinstance(v, float) else str(v)
            for k, v in asdict(self).items()
        }

    @classmethod
    def from_tags(cls, tags: dict[str, str]) -> Resources:
        """The resources a run was submitted with (its `resources.*` tags), validated as
        `submit` validates its options: jobs may edit their run's tags."""
        values: dict[str, Any] = {}
        for f in fields(cls):
            if (value := tags.get(f"resources.{f.name}")) is not None:
                kind = {"int": int, "float": float}.get(str(f.type), str)
                try:
                    values[f.name] = kind(value)
                except ValueError:
                    raise SpecError(
                        f"tag resources.{f.name}={value!r}: not {kind.__name__}"
                    ) from None
        resources = cls(**values)
        try:
            resources.validate()
        except SpecError as exc:
            raise SpecError(f"resources.* tags: {exc}") from None
        return resources


def parse_pairs(option: str, pairs: list[str]) -> dict[str, str]:
    """`k=v` strings -> dict; a key given twice or without `=` is an error."""
    result: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        key = key.strip().replace("-", "_")
        if not sep or not key:
            raise SpecError(f"{option} {pair!r}: expected KEY=VALUE")
        if key in result:
            raise SpecError(f"{option}: {key} is given twice")
        result[key] = value
    return result


def train_argv(values: dict[str, str]) -> list[str]:
    """Training CLI arguments for `values`, checked against workload.config (names and types)."""
    known = {action.dest: action for action in parser()._actions if action.dest != "help"}
    argv: list[str] = []
    for key, value in values.items():
        if key not in known:
            raise SpecError(
                f"training argument {key!r} does not exist; see python -m workload.train --help"
            )
        flag = "--" + key.replace("_", "-")
        if known[key].default is True or known[key].default is False:
            lowered = value.lower()
            if lowered not in ("true", "false", "1", "0", "yes", "no"):
                raise SpecError(f"training argument {key}={value!r}: expected true or false")
            argv.append(flag if lowered in ("true", "1", "yes") else f"--no-{flag[2:]}")
        else:
            argv += [flag, value]
    return argv


def check_train_args(argv: list[str]) -> TrainConfig:
    """The configuration the job will run with, parsed by the training's own parser."""
    try:
        return parse(argv).effective()
    except SystemExit as exc:  # argparse and parse() report through SystemExit
        raise SpecError(f"training arguments {argv}: {exc}") from None


def sweep_points(args: dict[str, str], sweep: list[str]) -> list[dict[str, str]]:
    """The cartesian product of `--sweep k=a,b ...` over the fixed `--args`."""
    axes = parse_pairs("--sweep", sweep)
    clash = sorted(set(axes) & set(args))
    if clash:
        raise SpecError(f"{clash} given both in --args and --sweep")
    grid = []
    for key, values in axes.items():
        options = values.split(",")
        if any(not v for v in options) or len(set(options)) != len(options):
            raise SpecError(f"--sweep {key}={values}: expected distinct, non-empty values a,b,...")
        grid.append([(key, v) for v in options])
    return [{**args, **dict(point)} for point in itertools.product(*grid)]


def job_name(base: str, point: dict[str, str], axes: list[str]) -> str:
    """A distinct, stable, scheduler-safe name per sweep point: base-k1-v1-k2-v2, at most
    JOB_NAME_MAX characters. When the values had to be changed to fit (other characters
    than a-z, 0-9 and '-', or too long), a hash of the exact point is appended, so that
    two points never share a name (lr=0.1 and lr=0-1 included)."""
    parts = [base] + [f"{k}-{point[k]}" for k in axes]
    wanted = "-".join(parts)
    name = re.sub(r"[^a-z0-9-]+", "-", wanted.lower()).strip("-")
    if name == wanted and len(name) <= JOB_NAME_MAX:
        return name
    exact = json.dumps({k: point[k] for k in axes}, sort_keys=True)
    digest = hashlib.sha256(exact.encode()).hexdigest()[:8]
    return f"{name[: JOB_NAME_MAX - 9].rstrip('-')}-{digest}"


def check_name(name: str) -> str:
    if not _NAME.fullmatch(name):
        raise SpecError(
            f"--name {name!r}: lower-case letters, digits and '-', at most 40 characters"
        )
    return name


def check_job_name(name: str, what: str = "job name") -> str:
    """A job name as `job_name` makes them (WHAT: where it comes from)."""
    if not _JOB_NAME.fullmatch(name):
        raise SpecError(
            f"{what} {name!r}: lower-case letters, digits and '-', at most {JOB_NAME_MAX}"
        )
    return name


def check_run_id(run_id: str) -> str:
    if not _RUN_ID.fullmatch(run_id):
        raise SpecError(f"run id {run_id!r}: 32 hexadecimal digits, as MLflow makes them")
    return run_id
