"""A second run of the sandbox, of the training image's load and of site.yml changes
nothing, and the verbose site.yml rerun shows no generated secret."""

from __future__ import annotations

import pytest

from tests.inventory import hosts
from tests.playbook import PlaybookRun, run_playbook
from tests.services import leaked_secrets


def _assert_unchanged(run: PlaybookRun, expected: set[str]) -> None:
    assert run.returncode == 0, run.output
    assert set(run.recap) == expected, run.output
    for host, counts in run.recap.items():
        assert counts["changed"] == 0, f"{host} changed on a re-run:\n{run.output}"
        assert counts["failed"] == counts["unreachable"] == 0, run.output


@pytest.fixture(scope="module")
def site_rerun() -> PlaybookRun:
    return run_playbook("site.yml", verbose=True)


def test_sandbox_rerun_changes_nothing() -> None:
    _assert_unchanged(run_playbook("sandbox.yml"), {"localhost"})


def test_training_image_reload_moves_nothing() -> None:
    # make lab streamed the image into the Jobs' nodes; the same image is not sent again.
    _assert_unchanged(run_playbook("sandbox-images.yml"), set(hosts("kube_node")))


def test_site_rerun_changes_nothing(site_rerun: PlaybookRun) -> None:
    _assert_unchanged(site_rerun, {"localhost", *hosts()})


def test_no_secret_in_the_verbose_site_rerun(site_rerun: PlaybookRun) -> None:
    leaked = leaked_secrets(site_rerun.output)
    assert not leaked, f"{len(leaked)} generated secret(s) appear in the ansible-playbook -v output"
