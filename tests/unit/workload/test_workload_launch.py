"""The launcher's own logic: configuration, sweeps, training arguments, the sbatch script,
reading a job's log."""

from __future__ import annotations

import json
import os
import re
import shlex
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from workload.credentials import SECRET_ENV_VARS
from workload.launch import spec
from workload.launch.backend import JobRef
from workload.launch.cli import (
    _tagged_args,
    _tagged_env_path,
    failure_reason,
    job_of,
    main,
    parser,
)
from workload.launch.config import ConfigError, load
from workload.launch.k8s import image_digest
from workload.launch.local import Local, started
from workload.launch.slurm import ClusterError, Login, log_bytes, render

CONFIG = """
[client]
mlflow_uri = "https://127.0.0.1:5000"
openbao_addr = "https://127.0.0.1:8200"
[jobs]
mlflow_uri = "https://head:5000"
openbao_addr = "https://head:8200"
s3_endpoint = "https://storage:9000"
[slurm]
login = ["docker", "exec", "-i", "labstack-head"]
"""


def _config(tmp_path: Path, text: str = CONFIG) -> Path:
    path = tmp_path / "labstack.toml"
    path.write_text(text)
    return path


def test_config_reads_every_section(tmp_path: Path) -> None:
    config = load(_config(tmp_path))
    assert config.jobs.s3_endpoint == "https://storage:9000"
    assert config.slurm.login == ["docker", "exec", "-i", "labstack-head"]
    assert config.slurm.runs_dir == "/shared/labstack/runs"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (CONFIG + "[slurm2]\n", "unknown sections ['slurm2']"),
        (
            CONFIG.replace('openbao_addr = "https://head:8200"\n', ""),
            "[jobs] lacks required settings",
        ),
        (CONFIG + "[local]\nrunsdir = 'x'\n", "[local] has unknown settings ['runsdir']"),
        (CONFIG.replace('login = ["docker"', "login = [1"), "slurm.login must be list[str]"),
        (CONFIG + "[local\n", "not valid TOML"),
        ("[jobs]\n", "the [client] section is required"),
        (
            CONFIG.replace("[slurm]\n", "[slurm]\nmax_requeues = -1\n"),
            "[slurm] max_requeues must be 0 or more, got -1",
        ),
        (
            CONFIG.replace("[jobs]\n", "[jobs]\nmlflow_retries = 11\n"),
            "[jobs] mlflow_retries must be 0 to 10 (MLflow's limit), got 11",
        ),
        (
            CONFIG.replace("[slurm]\n", "[slurm]\ngrace_seconds = 0\n"),
            "[slurm] grace_seconds must be at least 1, got 0",
        ),
    ],
)
def test_config_errors_name_the_setting(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(ConfigError) as info:
        load(_config(tmp_path, text))
    assert message in str(info.value)


def test_missing_config_says_how_to_get_one(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="make lab"):
        load(tmp_path / "nope.toml")


def test_sweep_is_the_cartesian_product_over_fixed_args() -> None:
    points = spec.sweep_points({"max_steps": "10"}, ["lr=0.1,0.2", "width=8,16,32"])
    assert len(points) == 6
    assert {(p["lr"], p["width"]) for p in points} == {
        (lr, w) for lr in ("0.1", "0.2") for w in ("8", "16", "32")
    }
    assert all(p["max_steps"] == "10" for p in points)
    names = {spec.job_name("shapes", p, ["lr", "width"]) for p in points}
    assert len(names) == 6
    assert {n.rsplit("-", 1)[0] for n in names} >= {"shapes-lr-0-1-width-8"}


def test_job_names_are_exact_when_they_can_be() -> None:
    assert spec.job_name("shapes", {"width": "16", "seed": "3"}, ["width", "seed"]) == (
        "shapes-width-16-seed-3"
    )


@pytest.mark.parametrize(
    ("a", "b"),
    [
        ({"lr": "0.1"}, {"lr": "0-1"}),  # the same once made name-safe
        ({"lr": "1e-3"}, {"lr": "1E-3"}),  # the same once lower-cased
        ({"lr": "0." + "1" * 60 + "2"}, {"lr": "0." + "1" * 60 + "3"}),  # past the cut
    ],
)
def test_job_names_of_two_points_differ(a: dict[str, str], b: dict[str, str]) -> None:
    names = [spec.job_name("shapes", point, ["lr"]) for point in (a, b)]
    assert names[0] != names[1]
    assert all(len(n) <= spec.JOB_NAME_MAX and re.fullmatch(r"[a-z0-9-]+", n) for n in names)
    assert names == [spec.job_name("shapes", point, ["lr"]) for point in (a, b)], "stable"


@pytest.mark.parametrize(
    ("fixed", "sweep", "message"),
    [
        ({"lr": "0.1"}, ["lr=0.2,0.3"], "given both in --args and --sweep"),
        ({}, ["lr=0.1,"], "distinct, non-empty"),
        ({}, ["lr"], "expected KEY=VALUE"),
        ({}, ["lr=1,2", "lr=3,4"], "lr is given twice"),
    ],
)
def test_bad_sweeps_are_refused(fixed: dict[str, str], sweep: list[str], message: str) -> None:
    with pytest.raises(spec.SpecError, match=message):
        spec.sweep_points(fixed, sweep)


def test_training_arguments_are_checked_by_the_training_parser() -> None:
    argv = spec.train_argv({"max_steps": "5", "dev": "true", "amp": "false"})
    assert argv == ["--max-steps", "5", "--dev", "--no-amp"]
    assert spec.check_train_args(argv).max_steps == 5
    with pytest.raises(spec.SpecError, match="'max_stepz' does not exist"):
        spec.train_argv({"max_stepz": "5"})
    with pytest.raises(spec.SpecError, match="expected true or false"):
        spec.train_argv({"dev": "maybe"})
    with pytest.raises(spec.SpecError, match="must be positive"):
        spec.check_train_args(["--max-steps", "0"])


@pytest.mark.parametrize(
    ("resources", "message"),
    [
        (spec.Resources(nodes=0), "--nodes 0"),
        (spec.Resources(memory="lots"), "--memory 'lots'"),
        (spec.Resources(time="1 hour"), "--time '1 hour'"),
        (spec.Resources(cpus=0), "--cpus 0: more than 0"),
        (spec.Resources(cpus=-0.5), "--cpus -0.5: more than 0"),
    ],
)
def test_bad_resources_are_refused(resources: spec.Resources, message: str) -> None:
    with pytest.raises(spec.SpecError, match=message):
        resources.validate()


@pytest.mark.parametrize("cpus", [1, 0.25])
def test_resources_survive_their_tags(cpus: float) -> None:
    resources = spec.Resources(nodes=2, gpus=1, cpus=cpus, memory="3G", partition="gpu")
    assert resources.as_tags()["resources.cpus"] == f"{cpus:g}"
    assert spec.Resources.from_tags(resources.as_tags()) == resources


def test_slurm_refuses_a_fraction_of_a_cpu(tmp_path: Path) -> None:
    config = load(_config(tmp_path))
    with pytest.raises(spec.SpecError, match=r"--cpus 0\.5: Slurm allocates whole CPUs"):
        render(config, spec.Resources(cpus=0.5), "gpu", "a" * 32, "shapes", "/env", "abc", [])


def test_sbatch_script_carries_settings_and_no_secret(tmp_path: Path) -> None:
    config = load(_config(tmp_path))
    resources = spec.Resources(nodes=2, gpus=2, account="ml")
    script = render(
        config, resources, "gpu", "a" * 32, "shapes", "/shared/env/x", "abc123", ["--lr", "0.1"]
    )
    assert "#SBATCH --nodes=2" in script
    assert "#SBATCH --ntasks-per-node=2" in script
    assert "#SBATCH --gres=gpu:2" in script
    assert "#SBATCH --account=ml" in script
    assert "#SBATCH --signal=B:USR1@120" in script
    assert f"export MLFLOW_RUN_ID={'a' * 32}" in script
    assert "export MLFLOW_HTTP_REQUEST_MAX_RETRIES=7" in script  # [jobs] mlflow_retries
    assert "/shared/env/x/bin/python -m workload.train --lr 0.1" in script
    assert "BAO_APPROLE_FILE=/shared/labstack/runs/" in script
    for name in SECRET_ENV_VARS:  # the job fetches these itself, from OpenBao
        assert f"{name}=" not in script


def test_a_log_is_read_from_a_byte_offset_as_bytes(tmp_path: Path) -> None:
    """`logs --follow` adds up byte offsets; a read may end inside a character."""
    (tmp_path / "slurm-7.out").write_bytes("step 1 é\n".encode())
    here = Login([])
    whole = log_bytes(here, str(tmp_path), "7")
    assert whole == "step 1 é\n".encode()
    cut = whole.index(b"\xc3") + 1  # between the two bytes of é
    assert (
        log_bytes(here, str(tmp_path), "7", 0)[:cut] + log_bytes(here, str(tmp_path), "7", cut)
        == whole
    )
    assert log_bytes(here, str(tmp_path), "8") == b"", "no output yet: nothing, no error"


def test_a_failed_cluster_command_raises_with_its_stderr() -> None:
    with pytest.raises(ClusterError, match=r"^sh failed: no such partition$"):
        Login([]).run(["sh", "-c", "echo no such partition >&2; exit 1"])
    assert Login([]).run(["sh", "-c", "cat; exit 1"], stdin="é", check=False) == "é"


@pytest.mark.parametrize("on", ["slurm", "apptainer", "local"])
def test_render_creates_runs_only_where_the_job_is_named_before_submission(
    tmp_path: Path, on: str, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["--config", str(_config(tmp_path)), "render", "--on", on, "--create-run"]
    assert main(argv) == 2
    assert f"render --create-run: --on {on} names its jobs only when it submits them" in (
        capsys.readouterr().err
    )


def test_submit_and_render_take_the_job_options_and_only_render_creates_runs() -> None:
    submit = parser().parse_args(["submit", "--on", "k8s", "--gpus", "2"])
    assert (submit.on, submit.gpus) == ("k8s", 2)
    assert not hasattr(submit, "create_run")
    assert parser().parse_args(["render", "--on", "k8s", "--create-run"]).create_run


RUN = "a" * 32
# What a job could write into its run's tags (the MLflow user jobs share may edit them).
HOSTILE = ["x\n#SBATCH --uid=0\nid", "$(touch /tmp/labstack-pwned)", "a;id", "`id`"]
SLURM_TAGS = {
    "labstack.backend": "slurm",
    "labstack.job_name": "shapes",
    "job.id": "42",
    **spec.Resources().as_tags(),
}


@pytest.mark.parametrize("value", HOSTILE)
@pytest.mark.parametrize(
    ("tag", "named"),
    [
        ("labstack.backend", "tag labstack.backend="),
        ("labstack.job_name", "tag labstack.job_name "),
        ("job.id", "tag job.id="),
        ("resources.nodes", "tag resources.nodes="),
        ("resources.memory", "resources.* tags: --memory "),
        ("resources.time", "resources.* tags: --time "),
        ("resources.partition", "resources.* tags: --partition "),
        ("resources.account", "resources.* tags: --account "),
    ],
)
def test_tags_a_job_can_edit_are_checked_as_options_are(
    tmp_path: Path, tag: str, named: str, value: str
) -> None:
    config = load(_config(tmp_path))
    assert job_of(config, RUN, SLURM_TAGS)[1].job_id == "42"
    with pytest.raises(spec.SpecError) as refused:
        job_of(config, RUN, {**SLURM_TAGS, tag: value})
    message = str(refused.value)
    assert message.startswith(f"run {RUN}: {named}"), message
    assert message.endswith("its tags were changed since submission"), message


@pytest.mark.parametrize("value", HOSTILE)
def test_relaunch_checks_the_environment_and_arguments_tags(value: str) -> None:
    assert _tagged_env_path({"env.path": "/shared/labstack/envs/a1+b"}) == (
        "/shared/labstack/envs/a1+b"
    )
    with pytest.raises(spec.SpecError, match=r"tag env\.path="):
        _tagged_env_path({"env.path": f"/shared/{value}"})
    for args in (value, json.dumps([value]), json.dumps({"lr": 1})):
        with pytest.raises(spec.SpecError, match=r"tag labstack\.args is not"):
            _tagged_args({"labstack.args": args})


def test_a_k8s_job_id_must_be_the_runs_own_job(tmp_path: Path) -> None:
    """`cancel` deletes the Job the tag names: a job pointing it at another run's is refused."""
    config = load(_config(tmp_path))
    tags = {**SLURM_TAGS, "labstack.backend": "k8s", "job.id": "shapes-aaaaaaaa"}
    assert job_of(config, RUN, tags)[1].job_id == "shapes-aaaaaaaa"
    for other in ("shapes-bbbbbbbb", "other-aaaaaaaa", "shapes-aaaaaaaa\nx"):
        with pytest.raises(spec.SpecError, match=r"not the Job of this run \(shapes-aaaaaaaa\)"):
            job_of(config, RUN, {**tags, "job.id": other})


@pytest.mark.parametrize("value", ["", "../x", "a" * 31, "A" * 32, "a" * 32 + "\n"])
def test_run_ids_are_mlflows(tmp_path: Path, value: str) -> None:
    with pytest.raises(spec.SpecError, match="32 hexadecimal digits"):
        job_of(load(_config(tmp_path)), value, SLURM_TAGS)


def test_options_with_a_trailing_newline_are_refused() -> None:
    """`$` in a pattern matches before a trailing newline: every pattern is matched whole."""
    for resources in (spec.Resources(time="01:00:00\n"), spec.Resources(memory="4G\n")):
        with pytest.raises(spec.SpecError):
            resources.validate()
    with pytest.raises(spec.SpecError, match="--name"):
        spec.check_name("shapes\n")
    with pytest.raises(spec.SpecError, match="--account"):
        spec.Resources(account="ml\n#SBATCH --uid=0").validate()


@pytest.mark.parametrize("value", HOSTILE)
def test_no_value_can_leave_its_sbatch_line(tmp_path: Path, value: str) -> None:
    config = load(_config(tmp_path))
    with pytest.raises(spec.SpecError, match="cannot go on an #SBATCH line"):
        render(config, spec.Resources(), "gpu", RUN, value, "/env", "abc", [])
    with pytest.raises(spec.SpecError, match="cannot go on an #SBATCH line"):
        render(config, spec.Resources(), value, RUN, "shapes", "/env", "abc", [])
    runs_dir = _config(tmp_path, CONFIG + f"runs_dir = {json.dumps('/r/' + value)}\n")
    with pytest.raises(spec.SpecError, match=r"\[slurm\] runs_dir"):
        render(load(runs_dir), spec.Resources(), "gpu", RUN, "shapes", "/env", "abc", [])


def test_every_value_in_a_command_of_the_script_is_quoted(tmp_path: Path) -> None:
    """The script as bash reads it: each training argument, however hostile, one word."""
    config = load(_config(tmp_path, CONFIG + 'sif = "/images/my training.sif"\n'))
    argv = ["--experiment", *HOSTILE, "--lr", "0.1"]
    script = render(config, spec.Resources(), "gpu", RUN, "shapes", "/env", "a'b", argv)
    checked = subprocess.run(["bash", "-n"], input=script, text=True, capture_output=True)
    assert checked.returncode == 0, checked.stderr
    srun = re.search(r"^srun .*? &$", script, re.MULTILINE | re.DOTALL)
    assert srun, script
    words = shlex.split(srun.group().removesuffix(" &"))
    assert words[-len(argv) :] == argv
    assert words[2:10] == [
        "apptainer", "exec", "--containall", "--bind",
        "/shared/labstack/runs,/shared/labstack/datasets,/var/tmp/labstack",
        "/images/my training.sif", "python", "-m",
    ]  # fmt: skip
    assert "export LABSTACK_GIT_COMMIT='a'\"'\"'b'" in script


def _sleeper(tmp_path: Path) -> tuple[subprocess.Popen[bytes], JobRef, Local]:
    """A process as `--on local` starts one, with the run's job.pid."""
    config = load(_config(tmp_path, CONFIG + f'[local]\nruns_dir = "{tmp_path}"\n'))
    process = subprocess.Popen(["sleep", "60"])
    (tmp_path / RUN).mkdir()
    (tmp_path / RUN / "job.pid").write_text(f"{process.pid} {started(process.pid)}\n")
    return (
        process,
        JobRef(str(process.pid), RUN, str(tmp_path / RUN)),
        Local(config, spec.Resources()),
    )


def test_local_stop_signals_only_the_runs_own_process(tmp_path: Path) -> None:
    process, job, local = _sleeper(tmp_path)
    try:
        local.check_job(job, "shapes")
        assert local.state(job) == "RUNNING"
        other = JobRef(str(os.getpid()), RUN, job.run_dir)  # the tag names another process
        with pytest.raises(spec.SpecError, match=f"the run's process is {process.pid}"):
            local.check_job(other, "shapes")
        # The run's process ended and its pid was reused: another start time.
        (tmp_path / RUN / "job.pid").write_text(f"{process.pid} 1\n")
        assert local.state(job) == "ENDED"
        local.stop(job, graceful=False)
        assert process.poll() is None, "stop signalled a process that is not the run's"
        (tmp_path / RUN / "job.pid").write_text(f"{process.pid} {started(process.pid)}\n")
        local.stop(job, graceful=False)
        assert process.wait(timeout=10) == -signal.SIGTERM
    finally:
        process.kill()
        process.wait()


@pytest.mark.parametrize(
    ("time", "seconds"),
    [("30", 1800), ("5:30", 330), ("01:02:03", 3723), ("2-0", 172800), ("1-02:03", 93780),
     ("1-00:00:10", 86410)],
)  # fmt: skip
def test_time_is_read_as_slurm_reads_it(time: str, seconds: int) -> None:
    assert spec.Resources(time=time).time_seconds == seconds


def test_a_failed_jobs_reason_is_its_last_word_or_exception() -> None:
    start = "labstack job 7: restart 0, nodes gpu1"
    assert failure_reason("") == "the job ended and left no output"
    assert failure_reason(f"{start}\nkilled\n") == "killed"
    sealed = "workload.credentials.CredentialError: OpenBao at https://head:8200 is sealed"
    log = f"{start}\nTraceback (most recent call last):\n  File x\n{sealed}\nsrun: error: x\n"
    assert failure_reason(log) == sealed
    gave_up = "labstack: requeued 3 times, more than [slurm] max_requeues (2): not started again"
    assert failure_reason(f"{log}{start}\n{gave_up}\n") == gave_up


def test_image_digest_reads_nodes_that_list_an_image_without_names() -> None:
    held = {"names": ["docker.io/labstack/training@sha256:ab", "docker.io/labstack/training:1"]}
    nodes = [{"status": {"images": [{"names": None, "sizeBytes": 1}, held]}}]
    assert image_digest(nodes, "labstack/training:1") == "sha256:ab"
    assert image_digest(nodes, "labstack/other:1") is None


def test_the_cli_prints_no_library_warning() -> None:
    """Every command imports the CLI: what it prints must be the user's, not a library's."""
    done = subprocess.run(
        [sys.executable, "-m", "workload.launch", "status", "--help"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert done.stdout.startswith("usage: labstack status")
    assert done.stderr == ""
