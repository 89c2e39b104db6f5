"""Every invalid values file is refused, by the schema or a `fail`, naming the value.

Each file in values/invalid/ holds one fault, layered over a valid values file
of its chart, and states the text the error must contain in a `# expect:` line.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import values_file
from helmtool import VALUES, helm, template

INVALID = sorted((VALUES / "invalid").glob("*.yaml"))
BASE = {"labstack": "labstack-minimal", "training": "training-single"}
SCHEMA_ERROR = "don't meet the specifications of the schema"


def _chart_and_base(path: Path) -> tuple[str, Path]:
    prefix = path.name.split("-", 1)[0]
    chart = {"labstack": "labstack", "training": "training-job"}[prefix]
    return chart, values_file(BASE[prefix])


def _expectation(path: Path) -> str:  # defined before use in SCHEMA_CASES
    for line in path.read_text().splitlines():
        if line.startswith("# expect: "):
            return line.removeprefix("# expect: ")
    raise AssertionError(f"{path} has no '# expect: ' line")


def test_there_are_invalid_cases_for_both_charts() -> None:
    prefixes = {p.name.split("-", 1)[0] for p in INVALID}
    assert prefixes == {"labstack", "training"}
    assert len(INVALID) >= 20


@pytest.mark.parametrize("path", INVALID, ids=[p.stem for p in INVALID])
def test_invalid_values_are_refused_naming_the_value(path: Path) -> None:
    chart, base = _chart_and_base(path)
    # The base alone renders: the fault in `path` is what gets refused.
    assert template(chart, (base,)).returncode == 0
    result = template(chart, (base, path))
    assert result.returncode != 0, f"{path.name} was accepted"
    assert result.stdout == "", "nothing may be rendered from invalid values"
    assert _expectation(path) in result.stderr, result.stderr


# Expectations without a space are value paths or keys the schema reports;
# sentences come from the charts' `fail` checks.
SCHEMA_CASES = [p for p in INVALID if " " not in _expectation(p)]


@pytest.mark.parametrize("path", INVALID, ids=[p.stem for p in INVALID])
def test_each_fault_is_caught_by_the_intended_check(path: Path) -> None:
    chart, base = _chart_and_base(path)
    result = template(chart, (base, path))
    assert (SCHEMA_ERROR in result.stderr) == (path in SCHEMA_CASES), result.stderr


@pytest.mark.parametrize("path", SCHEMA_CASES, ids=[p.stem for p in SCHEMA_CASES])
def test_schema_violations_also_fail_lint(path: Path) -> None:
    """(`helm lint` logs `fail` calls without failing, by design of its lint mode.)"""
    chart, base = _chart_and_base(path)
    result = helm("lint", "--strict", f"helm/{chart}", "-f", str(base), "-f", str(path))
    assert result.returncode != 0
    assert _expectation(path) in result.stdout + result.stderr


@pytest.mark.parametrize(
    ("secrets", "named"),
    [
        ({"mlflow": "run-mlflow"}, "secrets.mlflow"),
        ({"s3": "run-s3"}, "secrets.s3"),
        ({"mlflow": "run-mlflow", "s3": "run-s3"}, "secrets.mlflow and secrets.s3"),
    ],
)
def test_openbao_and_static_secrets_are_one_or_the_other(
    tmp_path: Path, secrets: dict[str, str], named: str
) -> None:
    """Either Secret beside openbao.address is refused, naming exactly the ones set."""
    extra = tmp_path / "secrets.yaml"
    extra.write_text(json.dumps({"secrets": secrets}))
    base = values_file("training-openbao")
    assert template("training-job", (base,)).returncode == 0
    result = template("training-job", (base, extra))
    assert result.returncode != 0
    assert result.stdout == ""
    assert (
        f"openbao.address and {named} are both set: the job's credentials come from"
        " OpenBao or from Secrets, one or the other"
    ) in result.stderr, result.stderr


def test_without_openbao_both_secrets_are_still_required(tmp_path: Path) -> None:
    """No openbao.address: today's `secrets.* must be set` checks hold (none of openbao's)."""
    extra = tmp_path / "no-mlflow.yaml"
    extra.write_text(json.dumps({"secrets": {"mlflow": ""}}))
    result = template("training-job", (values_file("training-single"), extra))
    assert result.returncode != 0
    assert "secrets.mlflow must be set: name of the Secret with MLFLOW_TRACKING_URI" in (
        result.stderr
    )
    assert "serviceAccountName" not in result.stderr, "openbao's requirements do not apply"
