"""A `git` put first on a process's PATH that records the environment it was
started with: the environment every child of that process inherits (unlike
/proc/PID/environ, it shows variables the parent set after it started)."""

from __future__ import annotations

import shutil
from pathlib import Path


def git_recorder(root: Path, *, only_with: str) -> tuple[Path, Path]:
    """(directory to put first on PATH, directory of records): each `git` started
    with ONLY_WITH in its environment writes that environment to a file of its own,
    then runs the real git; any other `git` (the launcher's own, which holds the
    researcher's login) records nothing."""
    bin_dir, records = root / "bin", root / "git-environ"
    bin_dir.mkdir()
    records.mkdir()
    real = shutil.which("git")
    assert real, "git is not installed"
    script = bin_dir / "git"
    script.write_text(
        "#!/bin/sh\n"
        f'if [ -n "${{{only_with}+set}}" ]; then\n'
        f'  tr "\\0" "\\n" < /proc/$$/environ > {records}/$$\n'
        "fi\n"
        f'exec {real} "$@"\n'
    )
    script.chmod(0o755)
    return bin_dir, records


def recorded(records: Path) -> str:
    """Every recorded environment, one after the other."""
    return "".join(path.read_text() for path in sorted(records.iterdir()))
