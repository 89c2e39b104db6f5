"""A second run of the sandbox and of site.yml changes nothing."""

from __future__ import annotations

import pytest

from tests.inventory import hosts
from tests.playbook import run_playbook


@pytest.mark.parametrize("playbook", ["sandbox.yml", "site.yml"])
def test_rerun_changes_nothing(playbook: str) -> None:
    run = run_playbook(playbook)
    assert run.returncode == 0, run.output
    expected = {"localhost"} | (set(hosts()) if playbook == "site.yml" else set())
    assert set(run.recap) == expected, run.output
    for host, counts in run.recap.items():
        assert counts["changed"] == 0, f"{host} changed on a re-run:\n{run.output}"
        assert counts["failed"] == counts["unreachable"] == 0, run.output
