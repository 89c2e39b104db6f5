# pyright: reportAttributeAccessIssue=false, reportCallIssue=false
# (testinfra builds its modules, host.file, host.user ..., at run time)
"""The sandbox's Slurm cluster runs real jobs: GPUs, cgroups, accounting, MUNGE."""

from __future__ import annotations

import hashlib
import re
import time

import pytest
from testinfra.host import Host

from tests.inventory import hosts, hostvars
from tests.playbook import SANDBOX_INVENTORY, run_playbook
from tests.services import credentials
from tests.slurm import compute_names, controller_name, sbatch, slurm_setting


@pytest.fixture(scope="module")
def controller(nodes: dict[str, Host]) -> Host:
    return nodes[controller_name()]


@pytest.fixture(scope="module")
def slurm_hosts(nodes: dict[str, Host]) -> dict[str, Host]:
    names = set(compute_names()) | {controller_name()}
    return {name: host for name, host in nodes.items() if name in names}


def _node_states(controller: Host) -> dict[str, tuple[str, str]]:
    """node -> (state, GRES) as sinfo reports them."""
    lines = controller.check_output("sinfo --noheader --Node --format='%N %t %G'").splitlines()
    return {name: (state, gres) for name, state, gres in (line.split() for line in lines)}


def _settled_state(controller: Host, name: str, expected: str) -> str:
    """The node's state once it reaches `expected` (a resumed node answers its
    next ping before it shows plain idle), or the last one seen."""
    state = ""
    for _ in range(30):
        state = _node_states(controller)[name][0]
        if state == expected:
            break
        time.sleep(1)
    return state


def _sacct(controller: Host, job_id: str) -> tuple[str, str]:
    """(State, AllocTRES) of a job, once slurmdbd has recorded its end."""
    for _ in range(30):
        line = controller.check_output(
            f"sacct --noheader --parsable2 --allocations --jobs={job_id} --format=State,AllocTRES"
        )
        if line and not line.startswith(("RUNNING", "PENDING")):
            state, tres = line.split("|")
            return state, tres
        time.sleep(1)
    pytest.fail(f"sacct never recorded the end of job {job_id}")


def test_every_compute_node_is_idle_with_its_gres(controller: Host) -> None:
    states = _node_states(controller)
    assert set(states) == set(compute_names()), states
    for group in hostvars(controller_name())["slurm_node_groups"]:
        for name in hosts(group["inventory_group"]):
            gres = f"gpu:{group['gpu_type']}:{group['gpus']}"
            assert states[name] == ("idle", gres), states


def test_gpu_job_sees_exactly_its_device(controller: Host) -> None:
    # Opening a placeholder GPU the job was given fails in the (absent) driver
    # (ENXIO); one it was not given is refused by the device cgroup (EPERM).
    job = sbatch(
        controller,
        "--gres=gpu:1",
        wrap='echo "visible=$CUDA_VISIBLE_DEVICES"; for d in /dev/fakegpu*; do '
        '( exec 3<"$d" ) 2>&1 | sed "s|.*: |$d: |"; done',
    )
    assert job.returncode == 0, job.output
    lines = job.output.splitlines()
    assert lines[0] == "visible=0", job.output
    given = [line for line in lines if line.endswith("No such device or address")]
    refused = [line for line in lines if line.endswith("Operation not permitted")]
    assert len(given) == 1, job.output
    assert len(refused) == len(lines) - 2, job.output

    state, tres = _sacct(controller, job.job_id)
    assert state == "COMPLETED"
    assert "gres/gpu=1" in tres.split(","), tres


def test_cluster_is_registered_with_gpu_accounting(controller: Host) -> None:
    clusters = controller.check_output(
        "sacctmgr --noheader --parsable2 show cluster format=cluster"
    )
    assert slurm_setting("slurm_cluster_name") in clusters.splitlines()
    config = controller.check_output("scontrol show config")
    assert re.search(r"^AccountingStorageTRES\s*=.*gres/gpu", config, re.M), config


def test_srun_spans_two_nodes(controller: Host) -> None:
    ran = controller.check_output("srun --nodes=2 --ntasks-per-node=1 hostname")
    assert len(set(ran.split())) == 2, ran
    assert set(ran.split()) <= set(compute_names()), ran


def test_job_over_its_memory_is_killed(controller: Host) -> None:
    if not slurm_setting("slurm_cgroup_constrain_ram"):
        pytest.skip("the inventory turns off slurm_cgroup_constrain_ram: memory is not confined")
    job = sbatch(
        controller, "--mem=64M", wrap="python3 -c 'a = bytearray(512 * 2**20); print(len(a))'"
    )
    assert job.returncode != 0, job.output
    state, _ = _sacct(controller, job.job_id)
    assert state == "OUT_OF_MEMORY", job.output


def test_other_users_see_neither_the_jobs_nor_their_accounting(controller: Host) -> None:
    """PrivateData: a job of the lab's user is invisible to another account of the
    login node (squeue, scontrol, sacct), and visible to its owner."""
    owner = hostvars(controller_name())["common_service_user"]
    job_id = controller.check_output(
        f"runuser -u {owner} -- sbatch --parsable --chdir=/ --output=/dev/null --wrap='sleep 300'"
    ).split(";")[0]
    try:
        for _ in range(60):  # sacct lists it in a time window once it runs
            if controller.check_output(f"sacct -n -X -P -o State -j {job_id}") == "RUNNING":
                break
            time.sleep(1)

        def seen_by(user: str) -> dict[str, str]:
            views = {
                "squeue": "squeue -h -a -o %i",
                "scontrol": f"scontrol -o show job {job_id}",
                "sacct": "sacct -n -X -P -a -o JobID -S now-1hour",
            }
            return {
                name: controller.run(f"runuser -u {user} -- {command}").stdout
                for name, command in views.items()
            }

        for name, shown in seen_by(owner).items():
            assert job_id in shown.split() or f"JobId={job_id}" in shown.split(), (name, shown)
        for name, shown in seen_by("nobody").items():
            assert job_id not in shown, (name, shown)
    finally:
        controller.run(f"scancel {job_id}")


def test_munge_key_is_the_credentials_one_everywhere_and_private(
    slurm_hosts: dict[str, Host],
) -> None:
    # The key comes from the encrypted credentials file, and from nowhere else.
    expected = hashlib.sha256(credentials()["munge_key"].encode()).hexdigest()
    assert not (SANDBOX_INVENTORY / ".generated" / "munge.key").exists()
    for name, host in slurm_hosts.items():
        key = host.file("/etc/munge/munge.key")
        assert (key.user, key.group, key.mode) == ("munge", "munge", 0o400), name
        assert host.check_output("sha256sum /etc/munge/munge.key").split()[0] == expected, name


def test_munge_credential_decodes_on_another_node(slurm_hosts: dict[str, Host]) -> None:
    names = list(slurm_hosts)
    credential = slurm_hosts[names[0]].check_output("munge -n")
    for name in names[1:]:
        decoded = slurm_hosts[name].run(f"echo {credential} | unmunge")
        assert decoded.rc == 0, decoded.stderr
        assert "STATUS:          Success (0)" in decoded.stdout


def test_a_tampered_credential_is_rejected(slurm_hosts: dict[str, Host]) -> None:
    names = list(slurm_hosts)
    credential = slurm_hosts[names[0]].check_output("munge -n")
    # Flip the last character of the encoded credential (before its final ':').
    body, last = credential[:-2], credential[-2]
    tampered = body + ("A" if last != "A" else "B") + ":"
    decoded = slurm_hosts[names[-1]].run(f"echo '{tampered}' | unmunge")
    assert decoded.rc != 0, decoded.stdout


def test_health_check_drains_and_resumes_a_node(controller: Host, nodes: dict[str, Host]) -> None:
    name = compute_names()[-1]
    node = nodes[name]
    config = controller.check_output("scontrol show config")
    assert re.search(
        r"^HealthCheckProgram\s*=\s*/usr/local/sbin/labstack-node-health$", config, re.M
    )
    assert node.run("/usr/local/sbin/labstack-node-health").rc == 0
    device = "/dev/fakegpu1"
    node.check_output(f"mv {device} {device}.away")
    try:
        failed = node.run("/usr/local/sbin/labstack-node-health")
        assert failed.rc == 1
        assert "1 of 2 GPUs visible" in failed.stderr
        assert _node_states(controller)[name][0] in ("drain", "drng")
        reason = controller.check_output(f"sinfo --noheader --Node --nodes={name} --format=%E")
        assert reason.startswith("health:"), reason
    finally:
        node.run(f"mv {device}.away {device}")
    assert node.run("/usr/local/sbin/labstack-node-health").rc == 0
    assert _settled_state(controller, name, "idle") == "idle"


def test_drain_playbook_drains_and_resumes(controller: Host) -> None:
    name = compute_names()[0]
    drained = run_playbook("playbooks/drain.yml", SANDBOX_INVENTORY, *_node(name))
    assert drained.returncode == 0, drained.output
    assert _node_states(controller)[name][0] in ("drain", "drng")
    resumed = run_playbook(
        "playbooks/drain.yml", SANDBOX_INVENTORY, *_node(name, "-e", "state=resume")
    )
    assert resumed.returncode == 0, resumed.output
    assert _settled_state(controller, name, "idle") == "idle"


def test_drain_playbook_rejects_an_unknown_node() -> None:
    run = run_playbook("playbooks/drain.yml", SANDBOX_INVENTORY, *_node("nosuchnode"))
    assert run.returncode != 0
    assert "-e node=NAME must name a host of slurm_compute" in " ".join(run.output.split())


def _node(name: str, *extra: str) -> list[str]:
    return ["-e", f"node={name}", *extra]


def _main_pids(nodes: dict[str, Host]) -> dict[str, str]:
    daemons = {controller_name(): "slurmctld", **dict.fromkeys(compute_names(), "slurmd")}
    return {
        name: nodes[name].check_output(f"systemctl show --property=MainPID --value {daemon}")
        for name, daemon in daemons.items()
    }


def _health_check_interval(controller: Host) -> str:
    config = controller.check_output("scontrol show config")
    return next(
        line.split("=")[1].strip()
        for line in config.splitlines()
        if line.startswith("HealthCheckInterval ")
    )


def test_a_config_change_reconfigures_without_restart(
    controller: Host, nodes: dict[str, Host]
) -> None:
    pids = _main_pids(nodes)
    configured = str(slurm_setting("slurm_health_check_interval"))
    changed = str(int(configured) + 1)
    try:
        run = run_playbook(
            "playbooks/slurm.yml", SANDBOX_INVENTORY, "-e", f"slurm_health_check_interval={changed}"
        )
        assert run.returncode == 0, run.output
        assert "RUNNING HANDLER [slurm : Reconfigure slurm]" in run.output
        assert _health_check_interval(controller) == f"{changed} sec"
        assert _main_pids(nodes) == pids
        # The GPU and container runtimes say why they skip these nodes.
        flat = " ".join(run.output.split())
        for name in compute_names():
            assert f"nvidia: skipped on {name}: no NVIDIA device (PCI vendor 0x10de)" in flat
            assert f"apptainer: skipped on {name}: no package source configured" in flat
    finally:
        restored = run_playbook("playbooks/slurm.yml")
    assert restored.returncode == 0, restored.output
    assert _health_check_interval(controller) == f"{configured} sec"
    assert _main_pids(nodes) == pids
