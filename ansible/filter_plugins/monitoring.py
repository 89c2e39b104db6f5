"""The monitoring layer's derived logins: the bcrypt hash of a web login
(Prometheus's web configuration takes hashes only) and the bearer token
MinIO accepts for its metrics. Both are deterministic, so that a second
site.yml run writes the same files and changes nothing."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from collections.abc import Callable
from typing import Any

import bcrypt

_STANDARD = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
_BCRYPT = b"./ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"
# 2100-01-01: MinIO's own `mc admin prometheus generate` gives its tokens a
# century too; the token dies with the user's secret key instead.
_TOKEN_EXPIRY = 4102444800


def labstack_bcrypt(password: str, cost: int = 10) -> str:
    """bcrypt hash of PASSWORD whose salt is derived from it: the same
    password gives the same hash (the passwords are generated, 32 or more
    random characters, so a shared salt could only pair equal passwords)."""
    if not isinstance(password, str) or not password:
        raise ValueError("labstack_bcrypt needs a non-empty password")
    digest = hashlib.sha256(b"labstack bcrypt salt\0" + password.encode()).digest()[:16]
    salt = base64.b64encode(digest).rstrip(b"=").translate(bytes.maketrans(_STANDARD, _BCRYPT))
    return bcrypt.hashpw(password.encode(), b"$2b$%02d$" % cost + salt).decode()


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def labstack_minio_metrics_token(secret_key: str, access_key: str) -> str:
    """The bearer token MinIO's metrics API takes: a JWT (HS512) naming
    ACCESS_KEY, signed with its SECRET_KEY, as `mc admin prometheus
    generate` makes it."""
    if not access_key or not secret_key:
        raise ValueError("labstack_minio_metrics_token needs an access key and its secret key")
    header = _b64url(json.dumps({"alg": "HS512", "typ": "JWT"}, separators=(",", ":")).encode())
    claims = {"exp": _TOKEN_EXPIRY, "sub": access_key, "iss": "prometheus"}
    payload = _b64url(json.dumps(claims, separators=(",", ":")).encode())
    signature = hmac.new(
        secret_key.encode(), f"{header}.{payload}".encode(), hashlib.sha512
    ).digest()
    return f"{header}.{payload}.{_b64url(signature)}"


class FilterModule:
    def filters(self) -> dict[str, Callable[..., Any]]:
        return {
            "labstack_bcrypt": labstack_bcrypt,
            "labstack_minio_metrics_token": labstack_minio_metrics_token,
        }
