"""Slurm: check the request against the cluster, render the sbatch script, submit, follow, stop."""

from __future__ import annotations

import json
import re
import shlex
import subprocess
from dataclasses import dataclass
from pathlib import Path
from string import Template

from workload.launch.backend import Backend, JobRef, JobRequest, LogCursor
from workload.launch.config import LabConfig
from workload.launch.spec import ENV_PATH, Resources, SpecError, check_run_id

# The template ships in the repository's slurm/ and, in a wheel, beside this module.
_TEMPLATES = [
    Path(__file__).resolve().parents[2] / "slurm" / "job.sbatch",
    Path(__file__).with_name("job.sbatch"),
]


class ClusterError(RuntimeError):
    """A Slurm command failed; the message has its stderr."""


class Login:
    """Runs commands where Slurm's commands work: here, or behind `slurm.login`."""

    def __init__(self, prefix: list[str]) -> None:
        self.prefix = prefix

    def run(self, argv: list[str], stdin: str | None = None, check: bool = True) -> str:
        done = self._call(argv, None if stdin is None else stdin.encode())
        if check and done.returncode != 0:
            failed = (done.stderr or done.stdout).decode(errors="replace").strip()
            raise ClusterError(f"{argv[0]} failed: {failed}")
        return done.stdout.decode()

    def read(self, argv: list[str]) -> bytes:
        """The command's output as it is, bytes (a log cut anywhere), whatever its exit status."""
        return self._call(argv, None).stdout

    def _call(self, argv: list[str], stdin: bytes | None) -> subprocess.CompletedProcess[bytes]:
        remote = argv
        if self.prefix and Path(self.prefix[0]).name == "ssh":
            remote = [shlex.join(argv)]  # ssh hands its arguments to a shell
        return subprocess.run(  # noqa: S603 (argument lists, no shell here)
            [*self.prefix, *remote], input=stdin, capture_output=True, check=False
        )

    def write_private(self, directory: str, name: str, content: str) -> None:
        """Write `content` to directory/name, both private to the user (0700/0600), via stdin."""
        script = 'umask 077 && mkdir -p "$1" && chmod 700 "$1" && cat > "$1/$2"'
        self.run(["sh", "-c", script, "sh", directory, name], stdin=content)


@dataclass(frozen=True)
class Partition:
    name: str
    default: bool
    nodes: int
    max_gpus: int  # per node
    max_cpus: int  # per node


def _fields(line: str) -> dict[str, str]:
    return dict(item.split("=", 1) for item in line.split() if "=" in item)


def partitions(login: Login) -> dict[str, Partition]:
    nodes = [
        _fields(line)
        for line in login.run(["scontrol", "-o", "show", "node"]).splitlines()
        if line.strip()
    ]
    found = {}
    for line in login.run(["scontrol", "-o", "show", "partition"]).splitlines():
        if not line.strip():
            continue
        part = _fields(line)
        name = part["PartitionName"]
        members = [n for n in nodes if name in n.get("Partitions", "").split(",")]
        gpus = [
            sum(int(m) for m in re.findall(r"gpu(?::[^:,(]+)?:(\d+)", n.get("Gres", "")))
            for n in members
        ]
        cpus = [int(n.get("CPUTot", "0")) for n in members]
        found[name] = Partition(
            name,
            part.get("Default") == "YES",
            len(members),
            max(gpus, default=0),
            max(cpus, default=0),
        )
    return found


def whole_cpus(resources: Resources) -> int:
    """--cpus as Slurm takes it: whole CPUs per task."""
    if not float(resources.cpus).is_integer():
        raise SpecError(f"--cpus {resources.cpus:g}: Slurm allocates whole CPUs to a task")
    return int(resources.cpus)


def check_resources(login: Login, resources: Resources) -> Partition:
    """The partition the job will run in; SpecError naming the option that cannot be met."""
    known = partitions(login)
    names = ", ".join(sorted(known))
    if resources.partition:
        if resources.partition not in known:
            raise SpecError(
                f"--partition {resources.partition!r} does not exist; partitions: {names}"
            )
        part = known[resources.partition]
    else:
        defaults = [p for p in known.values() if p.default]
        if not defaults:
            raise SpecError(f"the cluster has no default partition: give --partition ({names})")
        part = defaults[0]
    if resources.gpus > part.max_gpus:
        raise SpecError(
            f"--gpus {resources.gpus}: no node of partition {part.name} has more than "
            f"{part.max_gpus} GPUs"
        )
    if resources.nodes > part.nodes:
        raise SpecError(f"--nodes {resources.nodes}: partition {part.name} has {part.nodes} nodes")
    if whole_cpus(resources) * resources.tasks_per_node > part.max_cpus:
        raise SpecError(
            f"--cpus {resources.cpus:g} x {resources.tasks_per_node} tasks: no node of partition "
            f"{part.name} has more than {part.max_cpus} CPUs"
        )
    if resources.account:
        accounts = ["sacctmgr", "-n", "-P", "show", "account", resources.account, "format=account"]
        if resources.account not in login.run(accounts).split():
            raise SpecError(
                f"--account {resources.account!r} is not an account of the cluster's "
                "accounting (sacctmgr show account)"
            )
    return part


def environment(login: Login, path: str) -> tuple[str, dict[str, str]]:
    """The workload environment's real (versioned) path and what it was built from."""
    script = 'cd "$1" && pwd -P && cat BUILD_INFO.json'
    try:
        out = login.run(["sh", "-c", script, "sh", path])
    except ClusterError as exc:
        raise ClusterError(
            f"workload environment {path} is not on the cluster "
            f"(deploy playbooks/workload.yml): {exc}"
        ) from None
    real, _, info = out.partition("\n")
    if not ENV_PATH.fullmatch(real.strip()):
        raise ClusterError(
            f"workload environment {path} is {real.strip()!r}: the batch script takes an "
            "absolute path of letters, digits and _.+-/ only"
        )
    return real.strip(), {k: str(v) for k, v in json.loads(info).items()}


def template() -> Template:
    for path in _TEMPLATES:
        if path.is_file():
            return Template(path.read_text(encoding="utf-8"))
    raise FileNotFoundError(f"sbatch template not found in {_TEMPLATES}")


# What a value on an #SBATCH line may hold: a newline would end the line and
# start a command (and end the #SBATCH block: Slurm reads none after it).
_SBATCH_VALUE = re.compile(r"[A-Za-z0-9_.:/@%=+,-]+")


def _sbatch_value(what: str, value: str) -> str:
    if not _SBATCH_VALUE.fullmatch(value):
        raise SpecError(
            f"{what} {value!r} cannot go on an #SBATCH line: letters, digits and _.:/@%=+,- only"
        )
    return value


def render(
    config: LabConfig,
    resources: Resources,
    partition: str,
    run_id: str,
    job_name: str,
    env_path: str,
    git_commit: str,
    train_argv: list[str],
) -> str:
    """The batch script: every value on an #SBATCH line checked, every one in a command quoted."""
    resources.validate()
    run_id = check_run_id(run_id)
    run_dir = _sbatch_value("[slurm] runs_dir", f"{config.slurm.runs_dir}/{run_id}")
    directives = [f"#SBATCH --partition={_sbatch_value('--partition', partition)}"]
    if resources.gpus:
        directives.append(f"#SBATCH --gres=gpu:{resources.gpus}")
    if resources.account:
        directives.append(f"#SBATCH --account={resources.account}")
    command = []
    if config.slurm.sif:
        binds = ",".join([config.slurm.runs_dir, config.slurm.data_path, config.slurm.scratch])
        nv = ["--nv"] if resources.gpus else []
        command = ["apptainer", "exec", *nv, "--containall", "--bind", binds, config.slurm.sif]
        command.append("python")
    else:
        command.append(f"{env_path}/bin/python")
    jobs = config.jobs
    return template().substitute(
        run_id=run_id,
        run_dir=run_dir,
        job_name=_sbatch_value("job name", job_name),
        nodes=resources.nodes,
        tasks_per_node=resources.tasks_per_node,
        cpus=whole_cpus(resources),
        memory=resources.memory,
        time=resources.time,
        grace_seconds=config.slurm.grace_seconds,
        max_requeues=config.slurm.max_requeues,
        directives="\n".join(directives),
        run_dir_sh=shlex.quote(run_dir),
        mlflow_uri=shlex.quote(jobs.mlflow_uri),
        mlflow_retries=jobs.mlflow_retries,
        s3_endpoint=shlex.quote(jobs.s3_endpoint),
        openbao_addr=shlex.quote(jobs.openbao_addr),
        secret_path=shlex.quote(jobs.secret_path),
        ca_file=shlex.quote(jobs.ca_file),
        git_commit=shlex.quote(git_commit),
        data_path=shlex.quote(config.slurm.data_path),
        scratch=shlex.quote(config.slurm.scratch),
        command=shlex.join(command),
        train_args=shlex.join(train_argv),
    )


def submit(login: Login, run_dir: str, script: str) -> str:
    login.write_private(run_dir, "job.sbatch", script)
    out = login.run(["sbatch", "--parsable", f"{run_dir}/job.sbatch"])
    job_id = out.strip().split(";")[0]
    if not job_id.isdigit():
        raise ClusterError(f"sbatch gave no job id: {out!r}")
    return job_id


def state(login: Login, job_id: str) -> str:
    """Slurm's state of the job (PENDING, RUNNING, COMPLETED, ...), from squeue, else sacct."""
    out = login.run(["squeue", "-h", "-j", job_id, "-o", "%T"], check=False).strip()
    if out:
        return out.splitlines()[0]
    out = login.run(["sacct", "-X", "-n", "-P", "-j", job_id, "-o", "State"], check=False).strip()
    return out.splitlines()[-1].split()[0] if out else "UNKNOWN"


def queued(login: Login, run_dir: str, job_id: str) -> bool:
    """Whether job JOB_ID is still in Slurm's queue; ClusterError when it is another run's
    (its working directory is not RUN_DIR): the id comes from a tag jobs can edit."""
    out = login.run(["squeue", "-h", "-j", job_id, "-o", "%Z"], check=False).strip()
    if not out:
        return False
    if out.splitlines()[0] != run_dir:
        raise ClusterError(
            f"job {job_id} works in {out.splitlines()[0]}, not in {run_dir}: it is not this "
            "run's job (the run's job.id tag was changed since submission)"
        )
    return True


def stop(login: Login, run_dir: str, job_id: str) -> None:
    """Graceful: mark STOP (no requeue), USR1 to the batch shell (checkpoint and exit)."""
    login.run(["touch", f"{run_dir}/STOP"])
    if not queued(login, run_dir, job_id):
        return
    if state(login, job_id) == "PENDING":
        login.run(["scancel", job_id])
    else:
        login.run(["scancel", "--batch", "--signal=USR1", job_id])


def cancel(login: Login, run_dir: str, job_id: str) -> None:
    login.run(["touch", f"{run_dir}/STOP"])
    if queued(login, run_dir, job_id):
        login.run(["scancel", job_id])


def log_bytes(login: Login, run_dir: str, job_id: str, offset: int = 0) -> bytes:
    return login.read(["tail", "-c", f"+{offset + 1}", f"{run_dir}/slurm-{job_id}.out"])


class Slurm(Backend):
    """sbatch through the login prefix ([slurm] login); the job logs in with its AppRole file."""

    name = "slurm"

    def __init__(self, config: LabConfig, resources: Resources) -> None:
        super().__init__(config, resources)
        self.login = Login(config.slurm.login)
        self.partition = ""
        self.env_path = ""

    def prepare(self, env_path: str = "") -> dict[str, str]:
        grace = self.config.slurm.grace_seconds
        if self.resources.time_seconds <= grace:
            raise SpecError(
                f"--time {self.resources.time} ({self.resources.time_seconds} s) must be longer "
                f"than [slurm] grace_seconds ({grace} s), the warning to checkpoint before it ends"
            )
        self.partition = check_resources(self.login, self.resources).name
        self.env_path, info = environment(self.login, env_path or self.config.slurm.workload_env)
        return {**info, "env.path": self.env_path}

    def run_dir(self, run_id: str) -> str:
        return f"{self.config.slurm.runs_dir}/{run_id}"

    def render(self, job: JobRequest) -> str:
        return render(
            self.config,
            self.resources,
            self.partition,
            job.run_id,
            job.job_name,
            self.env_path,
            job.git_commit,
            job.argv,
        )

    def submit(self, job: JobRequest, approle: str) -> str:
        directory = self.run_dir(job.run_id)
        self.login.write_private(directory, "approle.json", approle)
        self.login.run(["rm", "-f", f"{directory}/STOP"])
        return submit(self.login, directory, self.render(job))

    def state(self, job: JobRef) -> str:
        return state(self.login, job.job_id)

    def stop(self, job: JobRef, graceful: bool) -> None:
        (stop if graceful else cancel)(self.login, job.run_dir, job.job_id)

    def log(self, job: JobRef, cursor: LogCursor) -> bytes:
        return cursor.moved(log_bytes(self.login, job.run_dir, job.job_id, cursor.at()))
