#!/usr/bin/python3
"""When the certificates on this node expire, for Prometheus, through the node
exporter's textfile collector: DIR/certificates.prom, replaced atomically.

    certificate-expiry DIR --exclude PATH ... -- ROOT ...

Every *.crt and *.pem file under the ROOTs (but the excluded trees, such as
the system's bundle of public CAs) is read with openssl; a file that is not
a certificate is counted, not reported."""

from __future__ import annotations

import argparse
import os
import subprocess
import tempfile
from datetime import UTC, datetime
from pathlib import Path


def _not_after(path: Path) -> float | None:
    read = subprocess.run(  # noqa: S603 (a fixed program; the path is an argument)
        ["/usr/bin/openssl", "x509", "-noout", "-enddate", "-in", str(path)],
        capture_output=True,
        text=True,
        check=False,
    )
    if read.returncode != 0 or not read.stdout.startswith("notAfter="):
        return None
    when = datetime.strptime(read.stdout.strip().split("=", 1)[1], "%b %d %H:%M:%S %Y %Z")
    return when.replace(tzinfo=UTC).timestamp()


def _certificates(roots: list[str], excluded: list[str]) -> list[Path]:
    found = []
    for root in roots:
        for directory, subdirectories, files in os.walk(root):
            subdirectories[:] = [
                d for d in subdirectories if os.path.join(directory, d) not in excluded
            ]
            found += [
                Path(directory, name)
                for name in files
                if name.endswith((".crt", ".pem")) and not Path(directory, name).is_symlink()
            ]
    return sorted(found)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("directory")
    parser.add_argument("--exclude", action="append", default=[])
    parser.add_argument("roots", nargs="+")
    args = parser.parse_args()
    lines = [
        "# HELP labstack_certificate_expiry_seconds When the certificate in a file"
        " expires (Unix time).",
        "# TYPE labstack_certificate_expiry_seconds gauge",
    ]
    unreadable = 0
    for path in _certificates(args.roots, args.exclude):
        expiry = _not_after(path)
        if expiry is None:
            unreadable += 1
            continue
        escaped = str(path).replace("\\", "\\\\").replace('"', '\\"')
        lines.append(f'labstack_certificate_expiry_seconds{{path="{escaped}"}} {expiry:.0f}')
    lines += [
        "# HELP labstack_certificate_files_unreadable Files named like certificates"
        " that openssl could not read.",
        "# TYPE labstack_certificate_files_unreadable gauge",
        f"labstack_certificate_files_unreadable {unreadable}",
    ]
    fd, temporary = tempfile.mkstemp(dir=args.directory, prefix=".certificates.prom.")
    with os.fdopen(fd, "w") as out:
        out.write("\n".join(lines) + "\n")
    os.chmod(temporary, 0o644)
    os.replace(temporary, os.path.join(args.directory, "certificates.prom"))


if __name__ == "__main__":
    main()
