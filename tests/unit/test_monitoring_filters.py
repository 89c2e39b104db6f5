"""The monitoring layer's derived logins: bcrypt hashes for Prometheus's web
login and MinIO's metrics token, both the same on every run."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json

import bcrypt
import pytest

from tests.playbook import load_filter_plugin

monitoring = load_filter_plugin("monitoring")


def test_bcrypt_hash_verifies_and_is_the_same_every_run() -> None:
    password = "generated0password1of2thirty3two"  # noqa: S105 (a test value)
    hashed = monitoring.labstack_bcrypt(password)
    assert hashed.startswith("$2b$10$")
    assert bcrypt.checkpw(password.encode(), hashed.encode())
    assert not bcrypt.checkpw(b"generated0password1of2thirty3twO", hashed.encode())
    assert monitoring.labstack_bcrypt(password) == hashed
    # The salt is the password's own: another password, another salt.
    assert monitoring.labstack_bcrypt(password + "x")[7:29] != hashed[7:29]


def test_bcrypt_hash_refuses_an_empty_password() -> None:
    with pytest.raises(ValueError, match="non-empty password"):
        monitoring.labstack_bcrypt("")


def _decode(part: str) -> dict:
    return json.loads(base64.urlsafe_b64decode(part + "=" * (-len(part) % 4)))


def test_minio_metrics_token_is_an_hs512_jwt_of_the_user() -> None:
    token = monitoring.labstack_minio_metrics_token("secret-key", "prometheus")
    header, payload, signature = token.split(".")
    assert _decode(header) == {"alg": "HS512", "typ": "JWT"}
    assert _decode(payload) == {"exp": 4102444800, "sub": "prometheus", "iss": "prometheus"}
    expected = hmac.new(b"secret-key", f"{header}.{payload}".encode(), hashlib.sha512).digest()
    assert base64.urlsafe_b64decode(signature + "==") == expected
    assert monitoring.labstack_minio_metrics_token("secret-key", "prometheus") == token
    assert monitoring.labstack_minio_metrics_token("other-key", "prometheus") != token


def test_minio_metrics_token_needs_both_keys() -> None:
    with pytest.raises(ValueError, match="access key and its secret key"):
        monitoring.labstack_minio_metrics_token("", "prometheus")
