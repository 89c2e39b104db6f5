"""No credential in any manifest; every Secret reference resolves from the values."""

from __future__ import annotations

import re
from typing import Any

from conftest import rendered, values_file
from helmtool import Manifest, containers, merged_values, pod_specs

SECRET_ENV = re.compile(r"PASSWORD|SECRET|TOKEN|ACCESS_KEY|CREDENTIAL", re.IGNORECASE)
# Names SECRET_ENV matches that hold no secret. BAO_SECRET_PATH is the KV path
# the training workload reads its credentials from (a path, not a secret).
NOT_SECRET_ENV = frozenset({"BAO_SECRET_PATH"})
SECRET_ARG = re.compile(
    r"(password|passwd|secret[-_]?key|secret|token|access[-_]?key)\s*[=:]", re.I
)
URL_WITH_PASSWORD = re.compile(r"[a-z+]+://[^/\s:@]+:[^/\s@]+@")


def _strings(node: Any) -> list[str]:
    if isinstance(node, dict):
        return [s for v in node.values() for s in _strings(v)]  # pyright: ignore[reportUnknownVariableType]
    if isinstance(node, list):
        return [s for v in node for s in _strings(v)]  # pyright: ignore[reportUnknownVariableType]
    return [node] if isinstance(node, str) else []


def test_no_secret_object_and_no_inline_credential(case: tuple[str, str]) -> None:
    manifests = rendered(*case)
    assert not [m for m in manifests if m["kind"] == "Secret"], "charts never render a Secret"
    for s in (s for m in manifests for s in _strings(m)):
        assert not URL_WITH_PASSWORD.search(s), f"URL with a password: {s[:80]}"
    for where, spec in pod_specs(manifests):
        for c in containers(spec):
            for e in c.get("env", []):
                if SECRET_ENV.search(e["name"]) and e["name"] not in NOT_SECRET_ENV:
                    assert "secretKeyRef" in e.get("valueFrom", {}), (
                        f"{where} {c['name']}: {e['name']} is not read from a Secret"
                    )
            joined = " ".join(c.get("command", []) + c.get("args", []))
            assert not SECRET_ARG.search(joined), (
                f"{where} {c['name']}: credential-like argument {joined[:120]}"
            )


def _declared(node: Any, out: set[tuple[str, str | None]]) -> None:
    """(Secret, key) pairs named in values: `existingSecret` with its sibling `*Key`s,
    `secretName`s and the training chart's `secrets` (whole-Secret envFrom)."""
    if isinstance(node, dict):
        d: dict[str, Any] = node  # pyright: ignore[reportUnknownVariableType]
        name = d.get("existingSecret")
        if isinstance(name, str) and name:
            out.add((name, None))
            for k, v in d.items():
                if k.endswith("Key") and isinstance(v, str):
                    out.add((name, v))
        if isinstance(d.get("secretName"), str) and d["secretName"]:
            out.add((d["secretName"], None))
        for v in d.values():
            _declared(v, out)
    elif isinstance(node, list):
        for v in node:  # pyright: ignore[reportUnknownVariableType]
            _declared(v, out)


def _referenced(manifests: list[Manifest]) -> set[tuple[str, str | None]]:
    refs: set[tuple[str, str | None]] = set()
    for m in manifests:
        for tls in m.get("spec", {}).get("tls", []) if m["kind"] == "Ingress" else []:
            refs.add((tls["secretName"], None))
    for _, spec in pod_specs(manifests):
        for v in spec.get("volumes", []):
            if "secret" in v:
                refs.add((v["secret"]["secretName"], None))
        for c in containers(spec):
            for e in c.get("env", []):
                ref = e.get("valueFrom", {}).get("secretKeyRef")
                if ref:
                    refs.add((ref["name"], ref["key"]))
            for ef in c.get("envFrom", []):
                if "secretRef" in ef:
                    refs.add((ef["secretRef"]["name"], None))
    return refs


def test_every_secret_reference_resolves_from_values(case: tuple[str, str]) -> None:
    chart, name = case
    values = merged_values(chart, (values_file(name),))
    declared: set[tuple[str, str | None]] = set()
    _declared(values, declared)
    if chart == "training-job":
        secrets = values["secrets"]
        declared |= {(s, None) for s in [secrets["mlflow"], secrets["s3"], *secrets["extra"]]}
    refs = _referenced(rendered(chart, name))
    if chart == "training-job" and values["openbao"]["address"]:
        # The pod logs in to OpenBao: no Secret unless secrets.extra names one.
        assert refs == {(s, None) for s in values["secrets"]["extra"]}, refs
    else:
        assert refs, f"{name}: no Secret reference rendered"
    unresolved = sorted(str(r) for r in refs if r not in declared)
    assert not unresolved, f"Secret references not named in the values: {unresolved}"
