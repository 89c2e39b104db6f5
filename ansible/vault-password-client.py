#!/usr/bin/env python3
"""Vault-id client script: prints the ansible-vault password of a labstack site.

Ansible runs it when ANSIBLE_VAULT_PASSWORD_FILE (or --vault-id ID@THIS) names
it, and reads the password from its stdout. The password comes from the first
of these that is set:

1. LABSTACK_VAULT_PASSWORD        the password itself (CI secret stores)
2. LABSTACK_VAULT_PASSWORD_FILE   a file holding it (the sandbox: `make lab`
                                  generates one under the inventory's .generated/)
3. the OS keyring                 service "labstack-vault", user = the vault id
                                  ("default" unless --vault-id NAME@...); stored
                                  with `keyring set labstack-vault default` or
                                  `secret-tool store --label=labstack service
                                  labstack-vault username default`

Exit status 1 names what it tried; 2 means the keyring has no such entry
(ansible's convention for "no password for this vault id").
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
from pathlib import Path

SERVICE = "labstack-vault"


def _from_keyring(vault_id: str) -> str | None:
    try:
        import keyring  # type: ignore[import-not-found]  # optional, not a dependency
    except ImportError:
        keyring = None
    if keyring is not None:
        return keyring.get_password(SERVICE, vault_id)
    tool = shutil.which("secret-tool")
    if tool is None:
        return None
    found = subprocess.run(  # noqa: S603 (fixed argument list)
        [tool, "lookup", "service", SERVICE, "username", vault_id],
        capture_output=True,
        text=True,
        check=False,
    )
    return found.stdout.rstrip("\n") or None


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--vault-id", default="default")
    vault_id = parser.parse_args().vault_id
    password = os.environ.get("LABSTACK_VAULT_PASSWORD")
    if not password and os.environ.get("LABSTACK_VAULT_PASSWORD_FILE"):
        path = Path(os.environ["LABSTACK_VAULT_PASSWORD_FILE"])
        if not path.is_file():
            print(f"LABSTACK_VAULT_PASSWORD_FILE {path} does not exist", file=sys.stderr)
            return 1
        password = path.read_text(encoding="utf-8").strip()
    if not password:
        password = _from_keyring(vault_id)
    if not password:
        print(
            "no vault password: set LABSTACK_VAULT_PASSWORD or LABSTACK_VAULT_PASSWORD_FILE,"
            f" or store it in the OS keyring (service {SERVICE}, user {vault_id})",
            file=sys.stderr,
        )
        return 1
    print(password)
    return 0


if __name__ == "__main__":
    sys.exit(main())
