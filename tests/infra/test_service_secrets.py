"""No generated secret leaks: not in the output of `ansible-playbook -v`, not
in any world-readable file of any node, not in any process's command line; no
private key in the output of `--check --diff` where the nodes' keys differ.
And a restarted (sealed) OpenBao is unsealed by the next run of its layer,
playbooks/secrets.yml (a part of site.yml; the whole site.yml's verbose rerun
is test_idempotence's)."""

from __future__ import annotations

import hashlib
import re
import subprocess
import time

import hvac
import pytest
import requests

from tests.inventory import container, hosts, hostvars
from tests.playbook import SANDBOX_INVENTORY, PlaybookRun, run_playbook
from tests.services import (
    ca_file,
    endpoint,
    leaked_secrets,
    openbao_admin,
    secret_values,
)

_SCAN = "/root/.labstack-secret-scan"
_SHARED = hostvars(hosts()[0])["sandbox_shared_mount"]


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
    secret = openbao_admin().secrets.kv.v2.read_secret_version(
        "labstack/jobs/workload", raise_on_deleted_version=True
    )
    assert secret["data"]["data"]["AWS_ACCESS_KEY_ID"] == "jobs"


def test_no_secret_in_the_verbose_unsealing_run(rerun_after_restart: PlaybookRun) -> None:
    leaked = leaked_secrets(rerun_after_restart.output)
    assert not leaked, f"{len(leaked)} generated secret(s) appear in the ansible-playbook -v output"


def _world_readable_secrets(host: str, top: str, pruned: tuple[str, ...] = ()) -> str:
    """The world-readable files under TOP on HOST (but the PRUNED trees) that hold a
    generated secret, one a line."""
    node = container(host)
    patterns = "\n".join(secret_values()) + "\n"
    subprocess.run(
        ["docker", "exec", "-i", node, "sh", "-c", f"umask 077 && cat > {_SCAN}"],
        input=patterns,
        text=True,
        check=True,
    )
    paths = " -o ".join(f"-path {path}" for path in pruned)
    prune = rf"\( {paths} \) -prune -o " if pruned else ""
    try:
        return subprocess.run(
            [
                "docker",
                "exec",
                node,
                "sh",
                "-c",
                rf"find {top} {prune}-type f -perm -o=r -print0"
                rf" | xargs -0 grep -lsF -f {_SCAN}; true",
            ],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    finally:
        subprocess.run(["docker", "exec", node, "rm", "-f", _SCAN], check=True)


@pytest.mark.parametrize("host", hosts())
def test_no_secret_in_world_readable_files(host: str) -> None:
    """Every file of the node but the shared filesystem's (the next test's) and
    containerd's content store, which holds the image layers' tar archives, whose
    files are scanned where they are unpacked."""
    content = "/var/lib/containerd/io.containerd.content.v1.content"
    found = _world_readable_secrets(host, "/", ("/proc", "/sys", "/dev", _SHARED, content))
    assert found == "", f"world-readable files on {host} hold secrets:\n{found}"


def test_no_secret_in_world_readable_files_of_the_shared_filesystem() -> None:
    """The shared filesystem (the workload's environments, the runs' directories), once:
    every node mounts the same."""
    found = _world_readable_secrets(hosts("slurm_controller")[0], _SHARED)
    assert found == "", f"world-readable files on {_SHARED} hold secrets:\n{found}"


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


def _deployed_keys() -> dict[str, list[str]]:
    """Per host, the files under /etc that are private keys the pki role issued."""
    pki = SANDBOX_INVENTORY / ".generated" / "pki"
    issued = {hashlib.sha256(key.read_bytes()).hexdigest() for key in pki.rglob("*.key")}
    found: dict[str, list[str]] = {}
    for host in hosts():
        listed = subprocess.run(
            ["docker", "exec", container(host), "sh", "-c",
             "grep -rlZ -- 'PRIVATE KEY' /etc | xargs -0r sha256sum"],
            capture_output=True, text=True, check=True,
        ).stdout  # fmt: skip
        pairs = (line.split(maxsplit=1) for line in listed.splitlines())
        paths = [path for digest, path in pairs if digest in issued]
        if paths:
            found[host] = paths
    return found


def _on_each(keys: dict[str, list[str]], script: str) -> None:
    for host, paths in keys.items():
        subprocess.run(
            ["docker", "exec", container(host), "sh", "-c", script, "sh", *paths], check=True
        )


def test_check_diff_where_keys_differ_shows_no_private_key() -> None:
    # The attack: `site.yml --check --diff` where a node's keys differ from the control
    # node's (lost, or replaced): each copy task would print the key it is about to write.
    keys = _deployed_keys()
    servers = {
        *hosts("storage"), *hosts("storage_replica"), *hosts("tracking"), *hosts("secrets"),
        *hosts("kube_control_plane"), *hosts("kube_node"),
    }  # fmt: skip
    assert servers <= set(keys), f"the lab's keys were not all found: {keys}"
    # A newline more: each is still a valid PEM file, and no longer the issued one.
    _on_each(keys, 'for key; do printf "\\n" >> "$key"; done')
    try:
        run = run_playbook("site.yml", SANDBOX_INVENTORY, "--check", "--diff", verbose=True)
    finally:
        _on_each(keys, 'for key; do truncate -s -1 "$key"; done')
    # A count, so that a failure cannot print the output, keys and all.
    printed = run.output.count("PRIVATE KEY")
    assert printed == 0, "private keys in the --check --diff output"
    assert run.returncode == 0, run.output
    for host, paths in keys.items():
        for path in paths:
            name = re.escape(path.rpartition("/")[2])
            changed = rf"^changed: \[{re.escape(host)}\] => \(item=\S*{name}\)"
            assert re.search(changed, run.output, re.MULTILINE), f"{host}: {path} not copied"
