"""No generated secret leaks: not in the output of `ansible-playbook -v`, not
in any world-readable file of any node, not in any process's command line.
And a restarted (sealed) OpenBao is unsealed by the next run of its layer,
playbooks/secrets.yml (a part of site.yml; the whole site.yml's verbose rerun
is test_idempotence's)."""

from __future__ import annotations

import subprocess
import time

import hvac
import pytest
import requests

from tests.inventory import container, hosts
from tests.playbook import PlaybookRun, run_playbook
from tests.services import ca_file, credentials, endpoint, leaked_secrets, secret_values

_SCAN = "/root/.labstack-secret-scan"


def _bao() -> hvac.Client:
    return hvac.Client(url=f"https://{endpoint(hosts('secrets')[0], 8200)}", verify=str(ca_file()))


def _sealed_once_up() -> bool:
    """Whether OpenBao is sealed, asked once its API answers again after a restart."""
    for _ in range(120):
        try:
            return _bao().sys.is_sealed()
        except requests.ConnectionError:
            time.sleep(1)
    raise AssertionError("OpenBao's API did not come back after its restart")


@pytest.fixture(scope="module")
def rerun_after_restart() -> PlaybookRun:
    """Restart OpenBao (it comes back sealed), then a verbose run of its layer."""
    node = container(hosts("secrets")[0])
    subprocess.run(["docker", "exec", node, "systemctl", "restart", "openbao"], check=True)
    assert _sealed_once_up(), "OpenBao should be sealed after a restart"
    return run_playbook("playbooks/secrets.yml", verbose=True)


def test_a_rerun_unseals_a_restarted_openbao(rerun_after_restart: PlaybookRun) -> None:
    assert rerun_after_restart.returncode == 0, rerun_after_restart.output
    assert not _bao().sys.is_sealed()
    client = _bao()
    client.token = credentials()["openbao_root_token"]
    secret = client.secrets.kv.v2.read_secret_version(
        "labstack/jobs/workload", raise_on_deleted_version=True
    )
    assert secret["data"]["data"]["AWS_ACCESS_KEY_ID"] == "jobs"


def test_no_secret_in_the_verbose_unsealing_run(rerun_after_restart: PlaybookRun) -> None:
    leaked = leaked_secrets(rerun_after_restart.output)
    assert not leaked, f"{len(leaked)} generated secret(s) appear in the ansible-playbook -v output"


@pytest.mark.parametrize("host", hosts())
def test_no_secret_in_world_readable_files(host: str) -> None:
    node = container(host)
    patterns = "\n".join(secret_values()) + "\n"
    subprocess.run(
        ["docker", "exec", "-i", node, "sh", "-c", f"umask 077 && cat > {_SCAN}"],
        input=patterns,
        text=True,
        check=True,
    )
    try:
        scan = subprocess.run(
            [
                "docker",
                "exec",
                node,
                "sh",
                "-c",
                # containerd's content store holds the image layers' tar
                # archives, whose files are scanned where they are unpacked.
                r"find / \( -path /proc -o -path /sys -o -path /dev"
                r" -o -path /var/lib/containerd/io.containerd.content.v1.content \) -prune -o"
                rf" -type f -perm -o=r -print0 | xargs -0 grep -lsF -f {_SCAN}; true",
            ],
            capture_output=True,
            text=True,
            check=True,
        )
    finally:
        subprocess.run(["docker", "exec", node, "rm", "-f", _SCAN], check=True)
    assert scan.stdout.strip() == "", f"world-readable files on {host} hold secrets:\n{scan.stdout}"


@pytest.mark.parametrize("host", hosts())
def test_no_secret_in_process_list(host: str) -> None:
    listed = subprocess.run(
        ["docker", "exec", container(host), "ps", "-eww", "-o", "args"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert len(listed.splitlines()) > 1
    leaked = leaked_secrets(listed)
    assert not leaked, f"{len(leaked)} secret(s) in the command lines of {host}'s processes"
