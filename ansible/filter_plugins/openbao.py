"""Checks of the openbao role's inputs that Jinja cannot say clearly."""

from __future__ import annotations

import binascii
import re
from collections.abc import Callable
from typing import Any

_VARIABLE = "openbao_unseal_pgp_keys"
# A holder's name becomes part of a file name (openbao-unseal-share-HOLDER.b64).
_HOLDER = re.compile(r"[a-z0-9][a-z0-9._-]{0,63}")
_EXPORT = "`gpg --export NAME | base64 -w0`"


def _is_public_key(packet: bytes) -> bool:
    """Whether PACKET begins with an OpenPGP public-key packet (tag 6), in the
    old or the new packet format (RFC 9580, 4.2)."""
    first = packet[0]
    if not first & 0x80:
        return False
    tag = first & 0x3F if first & 0x40 else (first >> 2) & 0x0F
    return tag == 6


def _key_errors(holder: str, key: Any) -> list[str]:
    where = f"{_VARIABLE}: the key of {holder}"
    if not isinstance(key, str) or not key:
        return [f"{where} is empty: it must be the base64 of their public key, {_EXPORT}"]
    if key.lstrip().startswith("-----BEGIN"):
        return [f"{where} is ASCII-armored: OpenBao wants the binary key in base64, {_EXPORT}"]
    if re.search(r"\s", key):
        return [f"{where} holds spaces or line breaks: base64 on one line, {_EXPORT}"]
    try:
        packet = binascii.a2b_base64(key, strict_mode=True)
    except binascii.Error as error:
        return [f"{where} is not base64 ({error}): {_EXPORT}"]
    if not packet or not _is_public_key(packet):
        return [f"{where} is base64 but not an OpenPGP public key: {_EXPORT}"]
    return []


def labstack_unseal_pgp_key_errors(holders: Any, key_shares: Any) -> list[str]:
    """What is wrong with openbao_unseal_pgp_keys (HOLDERS), a list of {holder,
    key} that gives each of KEY_SHARES unseal shares to one holder: [] when
    nothing is (an empty list is right: plain unseal keys)."""
    if not isinstance(holders, list):
        return [f"{_VARIABLE} must be a list of {{holder: NAME, key: PUBLIC_KEY}}, got {holders!r}"]
    errors: list[str] = []
    names: list[str] = []
    for number, item in enumerate(holders, start=1):
        if not isinstance(item, dict) or set(item) != {"holder", "key"}:
            keys = sorted(item) if isinstance(item, dict) else item
            errors.append(
                f"{_VARIABLE} item {number} must have exactly holder and key, got {keys!r}"
            )
            continue
        holder = item["holder"]
        if not isinstance(holder, str) or not _HOLDER.fullmatch(holder):
            errors.append(
                f"{_VARIABLE} item {number}: holder {holder!r} must be lowercase letters, "
                "digits, '.', '_' and '-' (64 at most), beginning with a letter or digit"
            )
            continue
        if holder in names:
            errors.append(f"{_VARIABLE}: holder {holder} is named twice (one share each)")
        names.append(holder)
        errors += _key_errors(holder, item["key"])
    if holders and len(holders) != key_shares:
        errors.append(
            f"{_VARIABLE} names {len(holders)} holder(s) but openbao_key_shares is "
            f"{key_shares}: each share goes to one holder, so both must be equal"
        )
    return errors


class FilterModule:
    def filters(self) -> dict[str, Callable[..., Any]]:
        return {"labstack_unseal_pgp_key_errors": labstack_unseal_pgp_key_errors}
