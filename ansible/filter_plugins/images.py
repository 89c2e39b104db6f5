"""Container image names as containerd stores them."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any


def labstack_image_reference(name: str) -> str:
    """NAME's full reference: docker.io/ before a name with no registry host
    (a first component without '.' or ':' and not localhost), library/
    before a single-component name, as Docker and the CRI normalise them."""
    first, _, rest = name.partition("/")
    if rest and ("." in first or ":" in first or first == "localhost"):
        return name
    return f"docker.io/{name}" if rest else f"docker.io/library/{name}"


class FilterModule:
    def filters(self) -> dict[str, Callable[..., Any]]:
        return {"labstack_image_reference": labstack_image_reference}
