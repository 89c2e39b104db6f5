"""Offline validation of rendered objects.

Kubernetes kinds: the strict JSON schemas shipped by the kubernetes-validate
wheel (one directory per Kubernetes minor version). CRD kinds (HTTPRoute,
ServiceMonitor): the openAPIV3Schema of the CRD files from pinned Go modules
(LABSTACK_CRD_DIRS), made strict (no unknown fields) the way the API server
prunes them.
"""

from __future__ import annotations

import json
import os
import re
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate  # pyright: ignore[reportMissingTypeStubs]
import yaml
from jsonschema.protocols import Validator
from referencing import Registry, Resource

SCHEMA_ROOT = Path(kubernetes_validate.__file__).parent / "kubernetes-json-schema"
KUBE_VERSIONS = ("1.35.0", "1.36.0", "1.37.0")


def _schema_dir(version: str) -> Path:
    path = SCHEMA_ROOT / f"v{version}-local-strict"
    if not path.is_dir():
        raise RuntimeError(f"kubernetes-validate ships no schemas for Kubernetes {version}")
    return path


@cache
def _registry(version: str) -> Registry:
    defs = json.loads((_schema_dir(version) / "_definitions.json").read_text())
    return Resource.from_contents(defs) @ Registry()


@cache
def _kube_validator(version: str, kind: str, api_version: str) -> jsonschema.Draft202012Validator:
    group = re.sub(r"^([^./]*)(?:\.[^/]*)?/", r"\1-", api_version)
    path = _schema_dir(version) / f"{kind.lower()}-{group}.json"
    if not path.exists():
        raise LookupError(f"no Kubernetes {version} schema for {kind} {api_version}")
    schema = json.loads(path.read_text())
    return jsonschema.Draft202012Validator(schema, registry=_registry(version))


def _strict(node: Any) -> Any:
    """Forbid unknown fields wherever a CRD schema lists its properties."""
    if isinstance(node, dict):
        out = {k: _strict(v) for k, v in node.items()}  # pyright: ignore[reportUnknownVariableType]
        if (
            out.get("type") == "object"
            and "properties" in out
            and "additionalProperties" not in out
            and not out.get("x-kubernetes-preserve-unknown-fields")
        ):
            out["additionalProperties"] = False
        return out
    if isinstance(node, list):
        return [_strict(v) for v in node]  # pyright: ignore[reportUnknownVariableType]
    return node


class _CrdLoader(yaml.CSafeLoader):
    """YAML 1.1 reads a bare `=` as a "value" tag PyYAML cannot build: keep it a string."""


_CrdLoader.yaml_implicit_resolvers = {
    first: [(tag, rx) for tag, rx in resolvers if tag != "tag:yaml.org,2002:value"]
    for first, resolvers in yaml.CSafeLoader.yaml_implicit_resolvers.items()
}


@cache
def _crd_validators(kind: str) -> dict[str, jsonschema.Draft7Validator]:
    """apiVersion -> validator for one CRD kind, from `*_<kind>s.yaml` in LABSTACK_CRD_DIRS."""
    dirs = os.environ.get("LABSTACK_CRD_DIRS", "")
    if not dirs:
        raise RuntimeError(
            "LABSTACK_CRD_DIRS is not set: run the chart tests with `make charts`, which "
            "downloads the pinned Gateway API and Prometheus Operator modules"
        )
    validators: dict[str, jsonschema.Draft7Validator] = {}
    for d in dirs.split(":"):
        if not Path(d).is_dir():
            raise RuntimeError(f"LABSTACK_CRD_DIRS entry {d} is not a directory")
        for f in sorted(Path(d).glob(f"*_{kind.lower()}s.yaml")):
            for crd in yaml.load_all(f.read_text(), Loader=_CrdLoader):
                if not crd or crd.get("kind") != "CustomResourceDefinition":
                    continue
                group = crd["spec"]["group"]
                for v in crd["spec"]["versions"]:
                    if not v.get("served"):
                        continue
                    schema = _strict(v["schema"]["openAPIV3Schema"])
                    props = schema.setdefault("properties", {})
                    props["apiVersion"] = {"const": f"{group}/{v['name']}"}
                    props["kind"] = {"const": kind}
                    props["metadata"] = {"type": "object"}
                    validators[f"{group}/{v['name']}"] = jsonschema.Draft7Validator(schema)
    return validators


def errors(obj: dict[str, Any], version: str) -> list[str]:
    """Schema violations of one object, as readable lines (empty: valid)."""
    api_version, kind = obj["apiVersion"], obj["kind"]
    validator: Validator
    try:
        validator = _kube_validator(version, kind, api_version)
    except LookupError:
        crd = _crd_validators(kind).get(api_version)
        if crd is None:
            return [f"no Kubernetes {version} schema and no CRD for {kind} {api_version}"]
        validator = crd
    where = f"{kind}/{obj.get('metadata', {}).get('name')}"
    return [
        f"{where}: {'/'.join(map(str, e.absolute_path))}: {e.message}"
        for e in validator.iter_errors(obj)
    ]
