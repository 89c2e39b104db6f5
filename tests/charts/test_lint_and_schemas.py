"""helm lint --strict and offline Kubernetes schema validation of every rendering."""

from __future__ import annotations

import copy
import re
from typing import Any

import kubeschema
import pytest
from conftest import VALID, rendered, values_file
from helmtool import helm, template


@pytest.mark.parametrize("chart", sorted(VALID))
def test_chart_defaults_alone_are_refused(chart: str) -> None:
    """The bare defaults name no Secret: rendering refuses them, naming the value.

    (`helm lint` logs `fail` calls without failing, by design of Helm's lint
    mode; that is why the rejections are checked with `helm template`.)
    """
    result = template(chart, ())
    assert result.returncode != 0
    assert "must be set" in result.stderr
    assert result.stdout == ""


def test_lint_strict(case: tuple[str, str]) -> None:
    chart, name = case
    result = helm("lint", "--strict", f"helm/{chart}", "-f", str(values_file(name)))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 chart(s) failed" in result.stdout


@pytest.mark.parametrize("kube_version", kubeschema.KUBE_VERSIONS)
def test_rendering_matches_kubernetes_schemas(case: tuple[str, str], kube_version: str) -> None:
    chart, name = case
    manifests = rendered(chart, name, kube_version)
    assert manifests, f"{name} rendered nothing"
    problems = [e for m in manifests for e in kubeschema.errors(m, kube_version)]
    assert not problems, "\n".join(problems)


def test_helm_test_hooks_match_schemas() -> None:
    """`helm template` hides hooks only with --skip-tests; check they are rendered and valid."""
    manifests = rendered("labstack", "labstack-minimal")
    hooks = [m for m in manifests if "helm.sh/hook" in m["metadata"].get("annotations", {})]
    assert [m["kind"] for m in hooks] == ["Pod"]
    for v in kubeschema.KUBE_VERSIONS:
        assert not kubeschema.errors(hooks[0], v)


def test_validator_is_strict() -> None:
    """The schemas reject an unknown field and a wrong type: the checks above can fail."""
    deployment = next(
        m for m in rendered("labstack", "labstack-minimal") if m["kind"] == "Deployment"
    )
    unknown = copy.deepcopy(deployment)
    unknown["spec"]["template"]["spec"]["containers"][0]["livenesProbe"] = {}
    assert any("livenesProbe" in e for e in kubeschema.errors(unknown, "1.37.0"))
    wrong = copy.deepcopy(deployment)
    wrong["spec"]["replicas"] = "two"
    assert kubeschema.errors(wrong, "1.37.0")
    route = next(m for m in rendered("labstack", "labstack-production") if m["kind"] == "HTTPRoute")
    bad_route = copy.deepcopy(route)
    bad_route["spec"]["parentRef"] = bad_route["spec"].pop("parentRefs")
    assert any("parentRef" in e for e in kubeschema.errors(bad_route, "1.37.0"))


def test_rendering_is_deterministic() -> None:
    """No random values or lookups: two renders are byte-identical."""
    files = (values_file("labstack-production"),)
    first, second = template("labstack", files), template("labstack", files)
    assert first.returncode == 0, first.stderr
    assert first.stdout == second.stdout


@pytest.mark.parametrize("chart", sorted(VALID))
def test_templates_use_no_lookup_or_random(chart: str) -> None:
    from helmtool import CHARTS

    banned = (
        "lookup",
        "randAlpha",
        "randAscii",
        "randNumeric",
        "randBytes",
        "uuidv4",
        "genPrivateKey",
        "genCA",
        "genSelfSigned",
        " now ",
        "(now)",
    )
    for tpl in (CHARTS / chart / "templates").rglob("*"):
        if tpl.is_file():
            text = tpl.read_text()
            found = [b for b in banned if b in text]
            assert not found, f"{tpl} uses {found}"


# A plain scalar that Kubernetes' YAML parser (YAML 1.2 core schema) reads
# as a number, where PyYAML (YAML 1.1, the renderings above) keeps a string:
# an unquoted 8-hex-digit hash such as 4350e154 is the float 4.35e+157 to
# the API server, which refuses it as an annotation.
_YAML12_NUMBER = re.compile(r"[-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?")


def _metadata_keys(node: Any, found: set[str]) -> set[str]:
    """The keys of every labels and annotations map in NODE (pod templates too)."""
    if isinstance(node, dict):
        for key, value in node.items():
            if key in ("labels", "annotations") and isinstance(value, dict):
                found.update(value)
            _metadata_keys(value, found)
    elif isinstance(node, list):
        for item in node:
            _metadata_keys(item, found)
    return found


def test_label_and_annotation_values_stay_strings_for_kubernetes(case: tuple[str, str]) -> None:
    chart, name = case
    text = template(chart, (values_file(name),)).stdout
    keys = _metadata_keys(rendered(chart, name), set())
    plain = re.findall(r"^\s*([^\s:#]+): ([^\s'\"][^\s]*)\s*$", text, re.MULTILINE)
    numbers = [(k, v) for k, v in plain if k in keys and _YAML12_NUMBER.fullmatch(v)]
    assert numbers == [], "unquoted label/annotation values Kubernetes reads as numbers"
    # Every checksum annotation is quoted, whatever hash the values give.
    checksums = re.findall(r"^\s*checksum/[\w.-]+: (.*)$", text, re.MULTILINE)
    assert all(c.startswith('"') for c in checksums), checksums
    assert _YAML12_NUMBER.fullmatch("4350e154")  # the value that once failed an install
