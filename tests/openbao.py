"""OpenBao's emergency root token, as the README tells an admin to make one."""

from __future__ import annotations

import base64
from typing import Any

import hvac

_ATTEMPT = "/v1/sys/generate-root-token/attempt"


def generate_root(admin: hvac.Client, unseal_keys: list[str]) -> str:
    """A root token from the unseal keys, by ADMIN (a login whose policy allows
    sys/generate-root-token: OpenBao 2.6 and later refuse unauthenticated generate-root)."""
    attempt = admin.adapter.post(_ATTEMPT, json={})["data"]  # pyright: ignore[reportIndexIssue,reportOptionalSubscript]
    answer: dict[str, Any] = {}
    try:
        for key in unseal_keys:
            answer = admin.adapter.post(  # pyright: ignore[reportIndexIssue,reportOptionalSubscript]
                "/v1/sys/generate-root-token/update", json={"key": key, "nonce": attempt["nonce"]}
            )["data"]
            if answer["complete"]:
                break
    finally:
        if not answer.get("complete"):
            admin.adapter.delete(_ATTEMPT)
    encoded = base64.b64decode(answer["encoded_token"] + "==")
    otp = attempt["otp"].encode()
    return bytes(a ^ b for a, b in zip(encoded, otp, strict=True)).decode()
