"""`labstack`: submit, render, status, ls, logs, stop, cancel, relaunch."""

from __future__ import annotations

import argparse
import json
import re
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import fields
from datetime import UTC, datetime
from pathlib import Path
from typing import NamedTuple

from workload.config import TrainConfig
from workload.launch import spec
from workload.launch.backend import NAMES, Backend, JobRef, JobRequest, LogCursor, backend
from workload.launch.config import ConfigError, LabConfig, load
from workload.launch.k8s import KubernetesError
from workload.launch.runs import (
    TERMINAL,
    Runs,
    Submitted,
    TrackingError,
    launch_tags,
    submitter,
)
from workload.launch.slurm import ClusterError
from workload.launch.vault import Vault, VaultError

ERRORS = (ConfigError, spec.SpecError, TrackingError, VaultError, ClusterError, KubernetesError)


def _resources(args: argparse.Namespace) -> spec.Resources:
    resources = spec.Resources(**{f.name: getattr(args, f.name) for f in fields(spec.Resources)})
    resources.validate()
    return resources


class Plan(NamedTuple):
    """One job: its name, training arguments, their argv and the configuration they give."""

    job_name: str
    point: dict[str, str]
    argv: list[str]
    train: TrainConfig


def _plan(job_name: str, point: dict[str, str]) -> Plan:
    """The plan of one job, its arguments checked by the training's own parser."""
    argv = spec.train_argv(point)
    return Plan(job_name, point, argv, spec.check_train_args(argv))


def _plans(name: str, args: list[str], sweep: list[str]) -> list[Plan]:
    """One plan per sweep point."""
    base = spec.check_name(name)
    fixed = spec.parse_pairs("--args", args)
    axes = list(spec.parse_pairs("--sweep", sweep))
    plans = [
        _plan(spec.job_name(base, point, axes), point) for point in spec.sweep_points(fixed, sweep)
    ]
    names = [p.job_name for p in plans]
    if len(set(names)) != len(names):  # a hash collision: never seen, but never silent
        raise spec.SpecError(f"--sweep gives two points the same job name: {sorted(names)}")
    return plans


def _launch(
    config: LabConfig,
    target: Backend,
    build: dict[str, str],
    plans: list[Plan],
    reuse_run: str = "",
    extra_tags: dict[str, str] | None = None,
    apply: bool = True,
) -> list[Submitted]:
    """Create each run (or reuse one), then submit its job; a failed submission leaves no run.

    APPLY false (`render --create-run`): print each job's manifest on stdout for
    the user to apply, the runs on stderr."""
    runs = Runs(config)
    runs.check()
    vault = Vault(config) if target.needs_login else None
    if vault:
        vault.check()
    commit = build.get("git.commit", "unknown")
    done = []
    for job_name, point, argv, train in plans:
        tags = {
            **launch_tags(target.name, job_name, point, build),
            **target.resources.as_tags(),
            **(extra_tags or {}),
        }
        run_id = reuse_run or runs.create(train.experiment, job_name, train.as_params(), tags)
        if reuse_run:
            runs.client.update_run(run_id, status="SCHEDULED")
        login = vault.job_login(run_id) if vault else None
        try:
            request = JobRequest(run_id, train.experiment, job_name, commit, argv)
            if apply:
                job_id = target.submit(request, login.as_file() if login else "")
            else:
                job_id = target.job_id(request)
                print(target.render(request), flush=True)
        except BaseException:
            if vault and login:
                vault.revoke(login.accessor, run_id)
            if not reuse_run:
                runs.discard(run_id)
            raise
        runs.set_tags(
            run_id,
            {
                "job.id": job_id,
                "job.scheduler": target.name,
                "labstack.run_dir": target.run_dir(run_id),
                "labstack.login_accessor": login.accessor if login else "",
            },
        )
        done.append(Submitted(run_id, job_id, job_name, runs.url(run_id)))
        summary = sys.stdout if apply else sys.stderr
        print(f"run {run_id}  job {job_id}  {job_name}\n    {runs.url(run_id)}", file=summary)
    return done


def cmd_submit(args: argparse.Namespace) -> int:
    config = load(args.config)
    target = backend(args.on, config, _resources(args))
    plans = _plans(args.name, args.args, args.sweep)
    build = target.prepare()
    _launch(config, target, build, plans)
    return 0


def cmd_render(args: argparse.Namespace) -> int:
    config = load(args.config)
    target = backend(args.on, config, _resources(args))
    if args.create_run and not target.names_jobs:
        raise spec.SpecError(
            f"render --create-run: --on {args.on} names its jobs only when it submits them; "
            f"use `labstack submit --on {args.on}`"
        )
    plans = _plans(args.name, args.args, args.sweep)
    build = target.prepare()
    if args.create_run:
        _launch(config, target, build, plans, apply=False)
        return 0
    commit = build.get("git.commit", "unknown")
    for job_name, _point, argv, train in plans:
        placeholder = "0" * 32  # the run id `submit` would create
        print(target.render(JobRequest(placeholder, train.experiment, job_name, commit, argv)))
    return 0


def job_of(config: LabConfig, run_id: str, tags: dict[str, str]) -> tuple[Backend, JobRef]:
    """The backend a run was submitted to and its job, from the run's tags, each checked as
    `submit` checks its options: jobs may edit their run's tags (the MLflow user they share)."""
    spec.check_run_id(run_id)
    name = tags.get("labstack.backend", "")
    if not name or "job.id" not in tags:
        raise spec.SpecError(
            f"run {run_id} was not submitted by labstack (no labstack.backend/job.id tags)"
        )
    with _from_tags(run_id):
        if name not in NAMES:
            raise spec.SpecError(f"tag labstack.backend={name!r}: one of {', '.join(NAMES)}")
        job_name = spec.check_job_name(tags.get("labstack.job_name", ""), "tag labstack.job_name")
        target = backend(name, config, spec.Resources.from_tags(tags))
        job = JobRef(tags["job.id"], run_id, target.run_dir(run_id))
        target.check_job(job, job_name)
    return target, job


@contextmanager
def _from_tags(run_id: str) -> Iterator[None]:
    """A value read from RUN_ID's tags was refused: say whose, and why it can be wrong."""
    try:
        yield
    except spec.SpecError as exc:
        raise spec.SpecError(
            f"run {run_id}: {exc}; its tags were changed since submission"
        ) from None


def _job(config: LabConfig, runs: Runs, run_id: str) -> tuple[Backend, JobRef]:
    spec.check_run_id(run_id)  # before it is sent to MLflow
    return job_of(config, run_id, runs.get(run_id).data.tags)


def _tagged_args(tags: dict[str, str]) -> dict[str, str]:
    """The training arguments a run was submitted with (its labstack.args tag)."""
    try:
        point = json.loads(tags["labstack.args"])
    except ValueError:
        point = None
    if not isinstance(point, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in point.items()
    ):
        raise spec.SpecError("tag labstack.args is not a JSON object of strings")
    return point


def _tagged_env_path(tags: dict[str, str]) -> str:
    """The workload environment a run ran in (its env.path tag; "" where it has none)."""
    env_path = tags.get("env.path", "")
    if env_path and not spec.ENV_PATH.fullmatch(env_path):
        raise spec.SpecError(
            f"tag env.path={env_path!r} is not an absolute path of letters, digits and _.+-/"
        )
    return env_path


_EXCEPTION = re.compile(r"\w(Error|Exception): ")


def failure_reason(log: str) -> str:
    """Why a job ended, from its log: its last `labstack:` line or exception line (the
    last line of a traceback), else its last line."""
    lines = [line.strip() for line in log.splitlines() if line.strip()]
    told = [line for line in lines if line.startswith("labstack: ") or _EXCEPTION.search(line)]
    return (told or lines or ["the job ended and left no output"])[-1][:1000]


def _settle(runs: Runs, target: Backend, job: JobRef) -> tuple[str, str]:
    """The run's status and, if it FAILED, why (its tag labstack.failure). A run whose job
    ended without ending the run (it could not reach MLflow: OpenBao sealed, requeued too
    often, ...) is marked FAILED with the reason the job's log gives: a run still SCHEDULED
    or RUNNING, or KILLED by a preemption (not by `labstack stop` or `cancel`) whose
    requeued job never ran."""
    active = target.active(job)
    run = runs.get(job.run_id)  # read after the job's state: once it ended, the run is final
    status, tags = run.info.status, run.data.tags
    preempted = status == "KILLED" and "labstack.ended_by" not in tags
    if active or (status in TERMINAL and not preempted):
        return status, tags.get("labstack.failure", "") if status == "FAILED" else ""
    reason = failure_reason(target.log(job, LogCursor()).decode(errors="replace"))
    runs.fail(job.run_id, reason)
    return "FAILED", reason


def cmd_status(args: argparse.Namespace) -> int:
    config = load(args.config)
    runs = Runs(config)
    for run_id in args.run_ids:
        target, job = _job(config, runs, run_id)
        status, reason = _settle(runs, target, job)
        history = runs.client.get_metric_history(run_id, "train.loss")
        step = max((m.step for m in history), default=0)
        print(
            f"run {run_id}  {status}  {target.name} job {job.job_id} {target.state(job)}  "
            f"step {step}\n    {runs.url(run_id)}"
        )
        if reason:
            print(f"    failed: {reason}")
    return 0


def cmd_ls(args: argparse.Namespace) -> int:
    config = load(args.config)
    runs = Runs(config)
    who = None if args.all else submitter()
    found = runs.recent(args.limit, who)
    if not found:
        print("no run submitted by labstack" + (f" as {who}" if who is not None else ""))
    for run in found:
        tags, status = run.data.tags, run.info.status
        line = f"{run.info.run_id}  {status:<9} {tags['labstack.backend']}"
        line += f" job {tags.get('job.id', '(none)')}"
        if status not in TERMINAL:  # the job of an ended run has ended too
            try:
                target, job = job_of(config, run.info.run_id, tags)
                line += f" {target.state(job)}"
            except ERRORS as exc:
                line += f" (state unknown: {exc})"
        started = datetime.fromtimestamp(run.info.start_time / 1000, UTC)
        print(line)
        print(
            f"    {run.info.run_name}  {started:%Y-%m-%d %H:%M} UTC  "
            f"by {tags.get('labstack.submitted_by', '?')}"
        )
    return 0


def cmd_logs(args: argparse.Namespace) -> int:
    config = load(args.config)
    target, job = _job(config, Runs(config), args.run_id)
    cursor = LogCursor()
    while True:
        # Looked at before the read, so that the last read has all of the output.
        ended = not args.follow or not target.active(job)
        sys.stdout.buffer.write(target.log(job, cursor))
        sys.stdout.buffer.flush()
        if ended:
            return 0
        time.sleep(2)


def _end(args: argparse.Namespace, graceful: bool) -> int:
    config = load(args.config)
    runs = Runs(config)
    for run_id in args.run_ids:
        target, job = _job(config, runs, run_id)
        runs.set_tags(run_id, {"labstack.ended_by": "stop" if graceful else "cancel"})
        target.stop(job, graceful)
        final = target.wait(job, args.timeout)
        status = runs.get(run_id).info.status
        if status not in TERMINAL:
            runs.terminate(run_id, "KILLED")  # the job never started, or was killed hard
        accessor = runs.get(run_id).data.tags.get("labstack.login_accessor", "")
        if accessor:
            Vault(config).revoke(accessor, run_id)
        print(f"run {run_id}: job {job.job_id} {final}, run {runs.get(run_id).info.status}")
    return 0


def cmd_relaunch(args: argparse.Namespace) -> int:
    """Same commit, environment and params. An unfinished run continues from its last checkpoint;
    a finished one is reproduced as a new run tagged labstack.relaunch_of."""
    config = load(args.config)
    runs = Runs(config)
    run = runs.get(spec.check_run_id(args.run_id))
    tags = run.data.tags
    if "labstack.args" not in tags:
        raise spec.SpecError(
            f"run {args.run_id} was not submitted by labstack: nothing to relaunch"
        )
    target, job = job_of(config, args.run_id, tags)
    with _from_tags(args.run_id):
        point = _tagged_args(tags)
        env_path = _tagged_env_path(tags)
    if target.active(job):  # a preempted run is KILLED while its requeued job waits
        raise spec.SpecError(
            f"run {args.run_id} still has job {job.job_id} {target.state(job)}: "
            "stop or cancel it first"
        )
    build = target.prepare(env_path=env_path)
    where = tags.get("env.path") or tags.get("env.image") or "this checkout"
    if build.get("git.commit") != tags.get("git.commit"):
        raise spec.SpecError(
            f"run {args.run_id} ran commit {tags.get('git.commit')}, but {where} "
            f"holds {build.get('git.commit')}: cannot relaunch it exactly"
        )
    plans = [_plan(tags["labstack.job_name"], point)]
    if run.info.status == "FINISHED":
        _launch(config, target, build, plans, extra_tags={"labstack.relaunch_of": args.run_id})
    else:
        _launch(config, target, build, plans, reuse_run=args.run_id)
    return 0


def _add_job_options(sub: argparse.ArgumentParser) -> None:
    defaults = spec.Resources()
    sub.add_argument("--on", choices=NAMES, required=True, help="where the job runs")
    sub.add_argument("--name", default="shapes", help="job name (sweep points append their values)")
    sub.add_argument("--nodes", type=int, default=defaults.nodes, help="nodes (DDP across them)")
    sub.add_argument(
        "--gpus", type=int, default=defaults.gpus, help="GPUs per node (one process each)"
    )
    sub.add_argument(
        "--cpus",
        type=float,
        default=defaults.cpus,
        help="CPUs per process (a fraction, e.g. 0.5, on Kubernetes only)",
    )
    sub.add_argument("--memory", default=defaults.memory, help="memory per node, e.g. 8G")
    sub.add_argument("--time", default=defaults.time, help="time limit, [D-]HH:MM:SS")
    sub.add_argument(
        "--partition", default=defaults.partition, help="Slurm partition (default: the cluster's)"
    )
    sub.add_argument("--account", default=defaults.account, help="Slurm account")
    sub.add_argument(
        "--args",
        nargs="*",
        default=[],
        metavar="K=V",
        help="training arguments (python -m workload.train --help)",
    )
    sub.add_argument(
        "--sweep",
        nargs="*",
        default=[],
        metavar="K=A,B",
        help="one run per combination (cartesian product)",
    )


def _positive(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a positive whole number")
    return int(text)


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(prog="labstack", description=__doc__)
    top.add_argument(
        "--config",
        type=Path,
        help="launcher configuration (default $LABSTACK_CONFIG or ./labstack.toml)",
    )
    subs = top.add_subparsers(dest="command", required=True)
    commands: dict[str, tuple[Callable[[argparse.Namespace], int], str]] = {
        "submit": (cmd_submit, "create the MLflow run(s), then submit the job(s)"),
        "render": (cmd_render, "print the sbatch script or Job manifest, submit nothing"),
        "status": (cmd_status, "MLflow status, job state and progress of runs"),
        "ls": (cmd_ls, "your runs, newest first, with their jobs' state (--all: the lab's)"),
        "logs": (cmd_logs, "the job's output"),
        "stop": (lambda a: _end(a, graceful=True), "graceful: checkpoint, exit, no requeue"),
        "cancel": (lambda a: _end(a, graceful=False), "kill the job now; the run ends KILLED"),
        "relaunch": (cmd_relaunch, "run RUN_ID again: same commit, environment and params"),
    }
    for name, (func, help_text) in commands.items():
        sub = subs.add_parser(name, help=help_text, description=help_text)
        sub.set_defaults(func=func)
        if name in ("submit", "render"):
            _add_job_options(sub)
            if name == "render":
                sub.add_argument(
                    "--create-run",
                    action="store_true",
                    help="k8s: create the run(s) as submit does; print manifests to apply",
                )
        elif name == "ls":
            sub.add_argument("--all", action="store_true", help="every researcher's runs")
            sub.add_argument("--limit", type=_positive, default=20, help="at most this many")
        elif name in ("status", "stop", "cancel"):
            sub.add_argument("run_ids", nargs="+", metavar="RUN_ID")
            if name != "status":
                sub.add_argument(
                    "--timeout", type=float, default=300, help="seconds to wait for the job to end"
                )
        else:
            sub.add_argument("run_id", metavar="RUN_ID")
            if name == "logs":
                sub.add_argument("--follow", "-f", action="store_true", help="until the job ends")
    return top


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        return args.func(args)
    except ERRORS as exc:
        print(f"labstack {args.command}: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
