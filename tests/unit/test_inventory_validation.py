"""site.yml's first play rejects a wrong inventory before any host is touched.

Each case copies the sandbox inventory, breaks one thing, and points the
connection at containers that do not exist: had any play after the
validation run, the recap would list those hosts (unreachable). It must list
only localhost, with the failure.

The other way round, an inventory the validation accepts (Slurm only,
Kubernetes only) shows in the recap as localhost without a failure and lab
hosts that could not be reached: the run went past the validation play to
the first play that contacts hosts.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml

from tests.playbook import (
    PlaybookRun,
    assert_rejected_before_any_host,
    offline_inventory,
    run_playbook,
)

Edit = Callable[[Path], None]


def _hosts(inventory: Path) -> dict:
    return yaml.safe_load((inventory / "hosts.yml").read_text())


def _write_hosts(inventory: Path, hosts: dict) -> None:
    (inventory / "hosts.yml").write_text(yaml.safe_dump(hosts))


def _append_var(inventory: Path, text: str) -> None:
    with (inventory / "group_vars" / "all" / "main.yml").open("a") as main:
        main.write(text)


def _empty_controller(inventory: Path) -> None:
    hosts = _hosts(inventory)
    hosts["all"]["children"]["slurm_controller"] = {"hosts": {}}
    _write_hosts(inventory, hosts)


def _missing_dbd_group(inventory: Path) -> None:
    hosts = _hosts(inventory)
    del hosts["all"]["children"]["slurm_dbd"]
    _write_hosts(inventory, hosts)


def _setting(name: str, value: str) -> Edit:
    """An inventory whose setting NAME (group_vars/all/main.yml) is VALUE (YAML)."""

    def edit(inventory: Path) -> None:
        main = inventory / "group_vars" / "all" / "main.yml"
        text = main.read_text()
        assert f"\n{name}:" in text
        text = text.replace(f"\n{name}:", "\n# was:")
        main.write_text(f"{text}{name}: {value}\n")

    return edit


def _ssh_to_gpu2(inventory: Path) -> None:
    hosts = _hosts(inventory)
    hosts["all"]["children"]["slurm_compute"]["hosts"]["gpu2"] = {"ansible_connection": "ssh"}
    _write_hosts(inventory, hosts)


def _two_holders_for_three_shares(inventory: Path) -> None:
    # mQ== is the first byte of a public key as `gpg --export | base64` prints it.
    _append_var(
        inventory,
        "openbao_unseal_pgp_keys: [{holder: alice, key: mQ==}, {holder: alice, key: mQ==}]\n",
    )


def _underscore_host(inventory: Path) -> None:
    hosts = _hosts(inventory)
    hosts["all"]["children"]["slurm_compute"]["hosts"]["gpu_3"] = None
    _write_hosts(inventory, hosts)


def _drop_groups(inventory: Path, *names: str) -> None:
    hosts = _hosts(inventory)
    for name in names:
        del hosts["all"]["children"][name]
    _write_hosts(inventory, hosts)


def _set_vars(inventory: Path, **values: object) -> None:
    """Set VALUES in group_vars/all/main.yml, replacing what it has."""
    main = inventory / "group_vars" / "all" / "main.yml"
    main.write_text(yaml.safe_dump({**yaml.safe_load(main.read_text()), **values}))


SLURM_GROUPS = ("slurm_controller", "slurm_dbd", "slurm_compute")
KUBERNETES_GROUPS = ("kube_control_plane", "kube_node")


def _no_control_plane(inventory: Path) -> None:
    _drop_groups(inventory, "kube_control_plane")


def _pod_cidr_over_service_cidr(inventory: Path) -> None:
    _set_vars(
        inventory, kubernetes_pod_cidr="10.214.0.0/16", kubernetes_service_cidr="10.214.128.0/17"
    )


def _kubernetes_v1_35(inventory: Path) -> None:
    _set_vars(inventory, kubernetes_version="v1.35.0")


def _node_selector_on_no_node(inventory: Path) -> None:
    # The sandbox's kube-gpu1 carries the selector's labels; here it carries others.
    kube_gpu1 = inventory / "host_vars" / "kube-gpu1.yml"
    labels = 'kube_node_labels: "{{ kubernetes_jobs_node_selector }}"'
    assert labels in kube_gpu1.read_text()
    kube_gpu1.write_text(kube_gpu1.read_text().replace(labels, "kube_node_labels: {zone: a}"))


def _no_compute_layer(inventory: Path) -> None:
    _drop_groups(inventory, *SLURM_GROUPS, *KUBERNETES_GROUPS)


def _misspelled_variable(inventory: Path) -> None:
    _append_var(inventory, "common_timezon: Europe/Paris\n")


def _unknown_host_variable(inventory: Path) -> None:
    (inventory / "host_vars" / "gpu2.yml").write_text("slurm_gpu_cuont: 4\n")


def _break(tmp_path: Path, edit: Edit) -> Path:
    inventory = offline_inventory(tmp_path)
    edit(inventory)
    return inventory


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (
            _empty_controller,
            [
                "slurm_compute has hosts (gpu1, gpu2) but inventory group 'slurm_controller' "
                "is empty: the Slurm layer needs at least one host in it"
            ],
        ),
        (
            _missing_dbd_group,
            [
                "slurm_compute has hosts (gpu1, gpu2) but inventory group 'slurm_dbd' "
                "is missing: the Slurm layer needs at least one host in it"
            ],
        ),
        (
            _no_control_plane,
            [
                "kube_node has hosts (kube-gpu1, kube-gpu2) but inventory group "
                "'kube_control_plane' is missing: the Kubernetes layer needs at least one "
                "host in it"
            ],
        ),
        (
            _no_compute_layer,
            [
                "no compute layer: no group of the Slurm layer (slurm_controller, slurm_dbd, "
                "slurm_compute) nor the Kubernetes layer (kube_control_plane, kube_node) has "
                "hosts. Add hosts to slurm_controller, slurm_dbd and slurm_compute for Slurm, "
                "or to kube_control_plane and kube_node for Kubernetes, or both"
            ],
        ),
        (
            _pod_cidr_over_service_cidr,
            [
                "Kubernetes inventory error(s): kubernetes_pod_cidr 10.214.0.0/16 and "
                "kubernetes_service_cidr 10.214.128.0/17 overlap (10.214.128.0/17)"
            ],
        ),
        (
            _kubernetes_v1_35,
            [
                "kubernetes_version v1.35.0 is not supported: labstack runs v1.34.x",
                "v1.35 and later refuse to run kubelet on cgroup v1",
            ],
        ),
        (
            _node_selector_on_no_node,
            [
                "kubernetes_jobs_node_selector {'labstack.io/training-image': 'true'}: no "
                "kube_node host has all these labels in its kube_node_labels"
            ],
        ),
        (
            _setting("openbao_jobs_bound_cidrs", "[]"),
            ["openbao_jobs_bound_cidrs must list one network or more (ADDRESS/PREFIX), got []"],
        ),
        (
            _setting("openbao_jobs_bound_cidrs", "[10.1.2.3/8]"),
            [
                "openbao_jobs_bound_cidrs: '10.1.2.3/8' is not a network "
                "(10.1.2.3/8 has host bits set)"
            ],
        ),
        (
            _setting("firewall_lab_networks", "[]"),
            ["firewall_lab_networks must list one network or more (ADDRESS/PREFIX), got []"],
        ),
        (
            _ssh_to_gpu2,
            [
                "firewall_admin_networks is empty, so the firewall would refuse SSH, which "
                "Ansible reaches gpu2 over"
            ],
        ),
        (
            _two_holders_for_three_shares,
            [
                "openbao_unseal_pgp_keys: holder alice is named twice (one share each); "
                "openbao_unseal_pgp_keys names 2 holder(s) but openbao_key_shares is 3: "
                "each share goes to one holder, so both must be equal."
            ],
        ),
        (_underscore_host, ["invalid host name(s) gpu_3", "no underscores"]),
        (
            _misspelled_variable,
            ["undeclared variable(s) on host", "common_timezon (did you mean common_timezone?)"],
        ),
        (_unknown_host_variable, ["undeclared variable(s) on host gpu2: slurm_gpu_cuont"]),
    ],
    ids=[
        "empty-slurm-group",
        "missing-slurm-group",
        "no-control-plane",
        "no-compute-layer",
        "pod-over-service-cidr",
        "kubernetes-v1.35",
        "node-selector-on-no-node",
        "no-job-networks",
        "bad-job-network",
        "no-lab-networks",
        "ssh-without-admin-networks",
        "unseal-share-holders",
        "underscore-host",
        "misspelled-var",
        "unknown-host-var",
    ],
)
def test_bad_inventory_fails_before_any_host(
    tmp_path: Path, edit: Edit, message: list[str]
) -> None:
    assert_rejected_before_any_host(run_playbook("site.yml", _break(tmp_path, edit)), *message)


def test_kubernetes_version_from_the_command_line_is_checked(tmp_path: Path) -> None:
    inventory = _break(tmp_path, lambda _: None)
    run = run_playbook("site.yml", inventory, "-e", "kubernetes_version=v1.35.0")
    assert_rejected_before_any_host(run, "kubernetes_version v1.35.0 is not supported")


def _minio_binary(tmp_path: Path) -> str:
    """A stand-in for the MinIO binary `make` builds, its sha256 beside it:
    the validation checks the pair, and no play after it gets to use it."""
    binary = tmp_path / "minio"
    binary.write_bytes(b"not minio\n")
    digest = hashlib.sha256(binary.read_bytes()).hexdigest()
    (tmp_path / "minio.sha256").write_text(f"{digest}  minio\n")
    return str(binary)


def _assert_validated(run: PlaybookRun, reached: set[str]) -> None:
    """The validation play accepted the inventory: the control node failed
    nothing, and the run went on to the lab's hosts: exactly the hosts
    REACHED are in the recap, unreachable (their containers do not exist)
    and unchanged."""
    assert run.recap.get("localhost", {}).get("failed") == 0, run.output
    assert set(run.recap) - {"localhost"} == reached, run.output
    for host in reached:
        assert run.recap[host]["ok"] == run.recap[host]["changed"] == 0, run.output
        assert run.recap[host]["unreachable"] + run.recap[host]["failed"] > 0, run.output


@pytest.mark.parametrize(
    ("dropped", "reached"),
    [
        (KUBERNETES_GROUPS, {"storage", "replica", "head", "gpu1", "gpu2"}),
        (SLURM_GROUPS, {"storage", "replica", "head", "kube-cp", "kube-gpu1", "kube-gpu2"}),
    ],
    ids=["slurm-only", "kubernetes-only"],
)
def test_one_compute_layer_passes_validation(
    tmp_path: Path, dropped: tuple[str, ...], reached: set[str]
) -> None:
    inventory = _break(tmp_path, lambda inventory: _drop_groups(inventory, *dropped))
    run = run_playbook("site.yml", inventory, "-e", f"minio_binary_path={_minio_binary(tmp_path)}")
    _assert_validated(run, reached)


def test_unsupported_ansible_core_is_rejected(tmp_path: Path) -> None:
    inventory = _break(tmp_path, lambda _: None)
    run = run_playbook("site.yml", inventory, "-e", "inventory_check_ansible_core_min=99.0")
    assert_rejected_before_any_host(run, "is not supported: labstack needs >= 99.0")


def test_sandbox_refuses_ports_beyond_loopback(tmp_path: Path) -> None:
    inventory = _break(tmp_path, lambda _: None)
    (inventory / "host_vars" / "head.yml").write_text(
        "sandbox_published_ports: ['0.0.0.0:5000:5000']\n"
    )
    run = run_playbook("sandbox.yml", inventory)
    assert run.returncode != 0
    assert "sandbox_published_ports of host head must be" in " ".join(run.output.split())
    assert run.recap["localhost"]["changed"] == 0
