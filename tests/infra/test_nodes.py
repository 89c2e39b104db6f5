# pyright: reportAttributeAccessIssue=false, reportCallIssue=false
# (testinfra builds its modules, host.file, host.user ..., at run time)
"""Every sandbox node is a healthy systemd host of the lab."""

from __future__ import annotations

import uuid

import yaml
from testinfra.host import Host

from tests.inventory import hostvars
from tests.playbook import ANSIBLE_DIR


def test_systemd_is_pid_1_and_running(node: Host) -> None:
    assert node.check_output("cat /proc/1/comm") == "systemd"
    state = node.run("systemctl is-system-running")
    assert state.stdout.strip() == "running", node.check_output("systemctl --failed --no-legend")


def test_no_failed_unit(node: Host) -> None:
    assert node.check_output("systemctl list-units --state=failed --plain --no-legend") == ""


def test_nodes_resolve_each_other_by_name(node: Host, nodes: dict[str, Host]) -> None:
    for name, other in nodes.items():
        address = node.check_output(f"getent hosts {name}").split()[0]
        assert address in other.check_output("hostname -I").split(), name


def test_shared_volume_is_shared_and_writable(nodes: dict[str, Host]) -> None:
    mount = hostvars("head")["sandbox_shared_mount"]
    names = list(nodes)
    writer, readers = nodes[names[0]], [nodes[name] for name in names[1:]]
    assert writer.mount_point(mount).exists
    assert "rw" in writer.mount_point(mount).options
    probe = f"{mount}/.probe-{uuid.uuid4().hex}"
    token = uuid.uuid4().hex
    writer.check_output(f"echo {token} > {probe}")
    try:
        for reader in readers:
            assert reader.file(probe).content_string.strip() == token
            assert "rw" in reader.mount_point(mount).options
    finally:
        writer.run(f"rm -f {probe}")


def test_service_account_is_the_same_everywhere(node: Host) -> None:
    user = node.user(hostvars("head")["common_service_user"])
    assert user.exists
    assert user.uid == hostvars("head")["common_service_uid"]
    assert user.shell == "/usr/sbin/nologin"


def test_time_zone(node: Host) -> None:
    zone = hostvars("head")["common_timezone"]
    assert node.file("/etc/localtime").linked_to == f"/usr/share/zoneinfo/{zone}"
    assert node.file("/etc/timezone").content_string.strip() == zone


def test_base_packages_installed(node: Host) -> None:
    defaults = yaml.safe_load((ANSIBLE_DIR / "roles/common/defaults/main.yml").read_text())
    packages = defaults["common_packages"] + hostvars("head").get("common_extra_packages", [])
    assert packages
    for package in packages:
        assert node.package(package).is_installed, package
