"""The launcher's own logic: configuration, sweeps, training arguments, the sbatch script,
reading a job's log."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from workload.credentials import SECRET_ENV_VARS
from workload.launch import spec
from workload.launch.cli import main, parser
from workload.launch.config import ConfigError, load
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
