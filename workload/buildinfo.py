"""`python -m workload.buildinfo`: what a build of the workload was made from, as JSON.

Written beside the wheelhouse (BUILD_INFO.json) and copied into every image and
workload environment built from it, so that a job can say which commit it runs
even where there is no git checkout.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from workload import provenance


def build_info(repo: Path) -> dict[str, str]:
    tags, diff = provenance.git_state(repo)
    info = {
        "git.commit": tags["git.commit"],
        "git.dirty": tags.get("git.dirty", "unknown"),
        "env.lock_sha256": provenance.file_sha256(repo / "uv.lock") or "unknown",
    }
    if diff:
        info["git.diff_sha256"] = hashlib.sha256(diff.encode()).hexdigest()
    return info


if __name__ == "__main__":
    print(json.dumps(build_info(Path()), indent=2, sort_keys=True))
