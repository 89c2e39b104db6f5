"""ansible/vault-password-client.py: where the vault password comes from."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tests.playbook import ANSIBLE_DIR

_CLIENT = ANSIBLE_DIR / "vault-password-client.py"


def _run(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("LABSTACK_VAULT_")}
    return subprocess.run(
        [sys.executable, str(_CLIENT), "--vault-id", "default"],
        env={**clean, **env},
        capture_output=True,
        text=True,
        check=False,
    )


def test_password_from_a_file(tmp_path: Path) -> None:
    secret = tmp_path / "pw"
    secret.write_text("from-the-file\n")
    done = _run({"LABSTACK_VAULT_PASSWORD_FILE": str(secret)})
    assert done.returncode == 0
    assert done.stdout == "from-the-file\n"


def test_environment_wins_over_the_file(tmp_path: Path) -> None:
    secret = tmp_path / "pw"
    secret.write_text("from-the-file\n")
    done = _run({"LABSTACK_VAULT_PASSWORD_FILE": str(secret), "LABSTACK_VAULT_PASSWORD": "env"})
    assert done.stdout == "env\n"


def test_missing_file_is_named(tmp_path: Path) -> None:
    done = _run({"LABSTACK_VAULT_PASSWORD_FILE": str(tmp_path / "absent")})
    assert done.returncode == 1
    assert f"LABSTACK_VAULT_PASSWORD_FILE {tmp_path / 'absent'} does not exist" in done.stderr


def test_no_source_names_all_three() -> None:
    done = _run({})
    if done.returncode == 0:  # this machine's OS keyring holds a labstack-vault password
        assert done.stdout.strip()
        return
    for name in ("LABSTACK_VAULT_PASSWORD", "LABSTACK_VAULT_PASSWORD_FILE", "keyring"):
        assert name in done.stderr
