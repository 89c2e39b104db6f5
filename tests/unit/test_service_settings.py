"""Bad service settings fail before any host is touched, naming the input at
fault: a MinIO layout too small for erasure coding, a MinIO download without
its checksum, a wrong vault password. Like test_inventory_validation, the
connection points at containers that do not exist, so any play reaching a
lab host would show it in the recap."""

from __future__ import annotations

import hashlib
import subprocess
import sys
from pathlib import Path

import pytest

from tests.playbook import (
    ANSIBLE_DIR,
    assert_rejected_before_any_host,
    offline_inventory,
    run_playbook,
)

_BIN = Path(sys.executable).parent


def test_too_few_minio_drives(tmp_path: Path) -> None:
    inventory = offline_inventory(tmp_path, "minio_drives: [/srv/minio/disk1, /srv/minio/disk2]\n")
    assert_rejected_before_any_host(
        run_playbook("site.yml", inventory),
        "minio_drives: 2 drive(s) in all",
        "too few for erasure coding",
        "minio_min_drives=4",
    )


def test_minio_url_without_checksum(tmp_path: Path) -> None:
    inventory = offline_inventory(tmp_path, "minio_binary_url: https://example.org/minio\n")
    assert_rejected_before_any_host(
        run_playbook("site.yml", inventory),
        "minio_binary_url is set (https://example.org/minio) but minio_binary_sha256 is missing",
    )


def test_missing_minio_build(tmp_path: Path) -> None:
    inventory = offline_inventory(tmp_path, f"minio_binary_path: {tmp_path}/no-such-minio\n")
    assert_rejected_before_any_host(
        run_playbook("site.yml", inventory), f"minio_binary_path '{tmp_path}/no-such-minio'"
    )


def test_wrong_vault_password(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    inventory = offline_inventory(tmp_path)
    credentials = inventory / "credentials.yml"
    monkeypatch.setenv("ANSIBLE_VAULT_PASSWORD_FILE", str(ANSIBLE_DIR / "vault-password-client.py"))
    monkeypatch.setenv("LABSTACK_VAULT_PASSWORD", "the-right-password-0123456789")
    subprocess.run(
        [str(_BIN / "ansible-vault"), "encrypt", "--output", str(credentials)],
        input="minio_root_password: kept-as-it-was-0123456789\n",
        text=True,
        check=True,
        capture_output=True,
    )
    before = hashlib.sha256(credentials.read_bytes()).hexdigest()
    monkeypatch.setenv("LABSTACK_VAULT_PASSWORD", "a-wrong-password-0123456789")
    run = run_playbook("site.yml", inventory)
    assert_rejected_before_any_host(
        run,
        f"cannot decrypt credentials_file {credentials}",
        "the vault password is wrong or missing",
        "LABSTACK_VAULT_PASSWORD",
    )
    assert hashlib.sha256(credentials.read_bytes()).hexdigest() == before
    assert "kept-as-it-was" not in run.output
