"""The labstack chart installed for real on the sandbox's cluster, the way
helm/README.md and the chart's NOTES tell a user to: the Secrets created
from generated values sent on stdin, `helm install` of the images `make
images` built and the nodes imported, OpenBao initialised and unsealed with
the NOTES' own commands, `helm test` (an MLflow run with an artifact
proxied to MinIO and read back). A `helm upgrade` with one changed value
rolls only the component it concerns; no credential shows in the release's
manifests, the pods' specs or their logs; `helm uninstall` leaves nothing
of the release in the namespace.

One install for the whole module (a few minutes): the tests run in order
and the later ones build on the earlier (the upgrade on the install, the
uninstall last).
"""

from __future__ import annotations

import json
import os
import pty
import re
import secrets
import select
import shlex
import subprocess
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import hvac
import pytest

from tests.kube import KUBECONFIG, helm, kubectl, kubectl_json, kubectl_path

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "helm" / "labstack"
VALUES = Path(__file__).resolve().parent / "values" / "sandbox.yaml"
RELEASE = "lab"
PREFIX = f"{RELEASE}-labstack"
INSTANCE = f"app.kubernetes.io/instance={RELEASE}"
# The chart's long-running components and the image each one runs (the
# variables the Makefile exports, the tags `make images` gives).
IMAGES = {
    "minio": "LABSTACK_MINIO_IMAGE",
    "postgresql": "LABSTACK_POSTGRES_IMAGE",
    "mlflow": "LABSTACK_MLFLOW_IMAGE",
    "openbao": "LABSTACK_OPENBAO_IMAGE",
}
TIMEOUT = "10m"


class Hidden(str):
    """A secret value: the real string to whatever uses it, `<hidden>` to
    repr(), which is what pytest shows of arguments and locals on a failure."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "'<hidden>'"


def _token() -> Hidden:
    return Hidden(secrets.token_hex(20))


def _name(prefix: str) -> Hidden:
    return Hidden(prefix + secrets.token_hex(8))


def _credentials() -> dict[str, dict[str, Hidden]]:
    """Every Secret of the minimal install (helm/README.md), key -> a generated value."""
    return {
        "lab-minio-root": {"root-user": _name("root"), "root-password": _token()},
        "lab-postgresql": {"postgres-password": _token(), "password": _token()},
        "lab-mlflow-s3": {"access-key": _name("mlflow"), "secret-key": _token()},
        "lab-mlflow-admin": {
            "admin-username": _name("admin"),
            "admin-password": _token(),
            "flask-secret-key": _token(),
        },
    }


@dataclass
class Release:
    namespace: str
    credentials: dict[str, dict[str, Hidden]] = field(repr=False)
    # Whatever the tests learnt that is secret (OpenBao's keys and root token).
    more_secrets: list[Hidden] = field(default_factory=list, repr=False)
    # What helm printed (install, test --logs, upgrade): checked for secrets too.
    outputs: list[str] = field(default_factory=list, repr=False)

    def secret_values(self) -> list[Hidden]:
        values = [v for data in self.credentials.values() for v in data.values()]
        return values + self.more_secrets

    def k(self, *args: str, stdin: str | None = None, check: bool = True) -> str:
        return kubectl("--namespace", self.namespace, *args, stdin=stdin, check=check).stdout

    def kj(self, *args: str) -> Any:
        return kubectl_json("--namespace", self.namespace, *args)


def _diagnosis(namespace: str) -> str:
    """The namespace's pods, their unready containers' logs and the warnings: why it failed."""
    ns = ("--namespace", namespace)
    out = [kubectl(*ns, "get", "pods,jobs", "-o", "wide", check=False).stdout]
    for item in kubectl_json(*ns, "get", "pods")["items"]:
        for status in item["status"].get("containerStatuses", []):
            if not status.get("ready"):
                name = item["metadata"]["name"]
                out.append(f"--- {name}/{status['name']}: {json.dumps(status.get('state'))}")
                logs = kubectl(*ns, "logs", name, "-c", status["name"], "--tail=40", check=False)
                out.append(logs.stdout + logs.stderr)
    out.append(
        kubectl(*ns, "get", "events", "--field-selector", "type=Warning", check=False).stdout
    )
    return "\n".join(out)


def _helm_or_diagnose(release: Release, *args: str) -> str:
    done = helm(*args, "--namespace", release.namespace, check=False)
    release.outputs.append(done.stdout + done.stderr)
    assert done.returncode == 0, (
        f"helm {' '.join(args)}:\n{done.stderr}{done.stdout}\n{_diagnosis(release.namespace)}"
    )
    return done.stdout


@pytest.fixture(scope="module")
def release() -> Iterator[Release]:
    namespace = f"labstack-{uuid.uuid4().hex[:8]}"
    kubectl("create", "namespace", namespace)
    kubectl("label", "namespace", namespace, "pod-security.kubernetes.io/enforce=restricted")
    rel = Release(namespace, _credentials())
    try:
        # helm/README.md: one `kubectl create secret` per Secret, its values
        # on stdin (--from-env-file=/dev/stdin), never in a command line.
        for name, data in rel.credentials.items():
            env_file = "".join(f"{key}={value}\n" for key, value in data.items())
            rel.k("create", "secret", "generic", name, "--from-env-file=/dev/stdin", stdin=env_file)
        _helm_or_diagnose(
            rel, "install", RELEASE, str(CHART), "-f", str(VALUES),
            "--wait", "--wait-for-jobs", "--timeout", TIMEOUT,
        )  # fmt: skip
        yield rel
    finally:
        helm("uninstall", RELEASE, "--namespace", namespace, "--ignore-not-found", check=False)
        kubectl("delete", "namespace", namespace, "--wait=false", check=False)


def _pods(release: Release) -> list[dict[str, Any]]:
    """The release's pods, those being deleted left out."""
    items = release.kj("get", "pods", "-l", INSTANCE)["items"]
    return [p for p in items if not p["metadata"].get("deletionTimestamp")]


def _component(pod: dict[str, Any]) -> str:
    return pod["metadata"]["labels"]["app.kubernetes.io/component"]


def _normalised(image: str) -> str:
    """An image reference as containerd names it (docker.io/ prefixed to a short name)."""
    return image if "." in image.split("/", 1)[0] else f"docker.io/{image}"


# ------------------------------------------------------------------- install


def test_every_component_runs_ready_from_the_images_make_built(release: Release) -> None:
    pods = _pods(release)
    running = {_component(p): p for p in pods if p["status"]["phase"] == "Running"}
    assert sorted(running) == sorted(IMAGES), [(p["metadata"]["name"], p["status"]) for p in pods]
    for component, variable in IMAGES.items():
        expected = os.environ.get(variable, "")
        assert expected, f"{variable} is unset: run the tests through make"
        pod = running[component]
        (container,) = pod["spec"]["containers"]
        assert container["image"] == expected, (component, container["image"])
        assert container["imagePullPolicy"] == "Never"
        (status,) = pod["status"]["containerStatuses"]
        assert status["ready"], (component, status)
        assert status["restartCount"] == 0, (component, status)
        assert _normalised(status["image"]) == _normalised(expected), (component, status)
        # The restricted Pod Security Standard admitted it (the namespace
        # enforces it), as uid 10001 on a read-only root filesystem.
        assert pod["spec"]["securityContext"]["runAsUser"] == 10001
        assert container["securityContext"]["readOnlyRootFilesystem"] is True
    # No PersistentVolumeClaim: the sandbox values turn persistence off.
    assert release.kj("get", "pvc")["items"] == []


def test_minio_provisioning_job_created_the_buckets_policies_and_user(release: Release) -> None:
    selector = f"{INSTANCE},app.kubernetes.io/component=minio-provision"
    (job,) = release.kj("get", "jobs", "-l", selector)["items"]
    assert job["status"].get("succeeded") == 1, job["status"]
    logs = release.k("logs", f"job/{job['metadata']['name']}")
    for line in (
        "bucket mlflow: created",
        "bucket datasets: created",
        "bucket datasets: versioning Enabled",
        "policy mlflow-artifacts: applied",
        "policy datasets-read: applied",
        "user #0: applied with policies ['mlflow-artifacts']",
        "provisioning complete",
    ):
        assert line in logs, (line, logs)
    # The unversioned bucket is left as created (never versioned, not "Suspended").
    assert "bucket mlflow: versioning" not in logs, logs


# ------------------------------------------------------------------- OpenBao


_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")


def _tty_run(argv: list[str], answers: list[Hidden], prompt: str, timeout: float = 120) -> str:
    """ARGV on a pseudo-terminal (kubectl exec -ti needs one), typing each of
    ANSWERS at the next PROMPT, as a user at a terminal does; its output,
    colours removed."""
    master, slave = pty.openpty()
    proc = subprocess.Popen(argv, stdin=slave, stdout=slave, stderr=slave, close_fds=True)
    os.close(slave)
    output, typed = b"", 0
    pending = list(answers)
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([master], [], [], 0.5)
            if not ready:
                if proc.poll() is not None:
                    break
                continue
            try:
                chunk = os.read(master, 4096)
            except OSError:  # the other side closed: the command ended
                break
            if not chunk:
                break
            output += chunk
            if pending and output.decode(errors="replace").count(prompt) > typed:
                os.write(master, pending.pop(0).encode() + b"\r")
                typed += 1
        else:
            proc.kill()
    finally:
        os.close(master)
        returncode = proc.wait(timeout=30)
    text = _ANSI.sub("", output.decode(errors="replace"))
    assert returncode == 0, f"{shlex.join(argv[3:])} exited {returncode}: {text[-2000:]}"
    assert not pending, f"{shlex.join(argv[3:])} never asked {prompt!r}: {text[-2000:]}"
    return text


def _notes_command(notes: str, what: str) -> list[str]:
    """The kubectl command of the NOTES line that runs WHAT, with the tests' kubeconfig."""
    lines = [line.strip() for line in notes.splitlines() if what in line]
    assert len(lines) == 1, (what, notes)
    argv = shlex.split(lines[0].split("#", 1)[0])
    assert argv[0] == "kubectl", lines[0]
    return [str(kubectl_path()), "--kubeconfig", str(KUBECONFIG), *argv[1:]]


@dataclass(frozen=True)
class Bao:
    keys: list[Hidden] = field(repr=False)
    threshold: int
    root_token: Hidden = field(repr=False)


@pytest.fixture(scope="module")
def openbao(release: Release) -> Bao:
    """OpenBao initialised and unsealed exactly as the NOTES of the release say."""
    notes = helm("get", "notes", RELEASE, "--namespace", release.namespace).stdout
    init = _tty_run(_notes_command(notes, "bao operator init"), [], "")
    keys = [Hidden(k) for k in re.findall(r"Unseal Key \d+: (\S+)", init)]
    root = re.search(r"Initial Root Token: (\S+)", init)
    threshold = re.search(r"key threshold of (\d+)", init)
    assert keys, "bao operator init printed no unseal key"
    assert root, "bao operator init printed no root token"
    assert threshold, "bao operator init printed no key threshold"
    bao = Bao(keys, int(threshold.group(1)), Hidden(root.group(1)))
    release.more_secrets += [*keys, bao.root_token]
    assert f"{bao.threshold} " in notes.split("bao operator unseal", 1)[0][-400:], (
        "the NOTES do not say how many times to unseal"
    )
    unseal = _notes_command(notes, "bao operator unseal")
    for key in keys[: bao.threshold]:
        _tty_run(unseal, [key], "Unseal Key (will be hidden):")
    return bao


@contextmanager
def port_forward(namespace: str, target: str, port: int) -> Iterator[str]:
    """`kubectl port-forward` to TARGET:PORT on a free local port; yields its URL."""
    proc = subprocess.Popen(
        [str(kubectl_path()), "--kubeconfig", str(KUBECONFIG), "--namespace", namespace,
         "port-forward", "--address", "127.0.0.1", target, f":{port}"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        found = re.search(r"Forwarding from 127\.0\.0\.1:(\d+)", line)
        assert found, f"port-forward {target}: {line}{proc.stderr.read() if proc.stderr else ''}"
        yield f"http://127.0.0.1:{found.group(1)}"
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def test_openbao_is_initialised_unsealed_and_serves_secrets(release: Release, openbao: Bao) -> None:
    with port_forward(release.namespace, f"service/{PREFIX}-openbao", 8200) as url:
        client = hvac.Client(url=url)
        assert client.sys.is_initialized()
        assert not client.sys.is_sealed()
        health = client.sys.read_health_status(method="GET")
        assert health["initialized"], health
        assert not health["sealed"], health
        client.token = openbao.root_token
        client.sys.enable_secrets_engine("kv", path="labstack-test", options={"version": "2"})
        probe = secrets.token_hex(8)
        client.secrets.kv.v2.create_or_update_secret(
            "probe", secret={"value": probe}, mount_point="labstack-test"
        )
        read = client.secrets.kv.v2.read_secret_version(
            "probe", mount_point="labstack-test", raise_on_deleted_version=True
        )
        assert read["data"]["data"] == {"value": probe}
    # Unsealed counts as Ready (the probe accepts sealed too, so that
    # `helm --wait` ends before the one-time init): now it is serving.
    pod = release.kj("get", "pod", f"{PREFIX}-openbao-0")
    assert all(c["ready"] for c in pod["status"]["containerStatuses"])


# --------------------------------------------------------------- helm test


def test_helm_test_logs_a_run_with_an_artifact_and_reads_it_back(release: Release) -> None:
    out = _helm_or_diagnose(release, "test", RELEASE, "--logs", "--timeout", TIMEOUT)
    assert re.search(rf"TEST SUITE:\s+{PREFIX}-test-mlflow-run", out), out
    assert re.search(r"Phase:\s+Succeeded", out), out
    assert "artifact read back intact from run" in out, out


_PROBE = """
import base64, json, os, urllib.error, urllib.request
import boto3
s3 = boto3.client("s3", endpoint_url=os.environ["MLFLOW_S3_ENDPOINT_URL"])
keys = [o["Key"] for o in s3.list_objects_v2(Bucket="mlflow").get("Contents", [])]
try:
    s3.put_object(Bucket="datasets", Key="not-mine", Body=b"x")
    datasets = "written"
except s3.exceptions.ClientError as exc:
    datasets = exc.response["Error"]["Code"]
def status(user=None, password=None):
    request = urllib.request.Request(os.environ["API"])
    if user is not None:
        token = base64.b64encode(f"{user}:{password}".encode()).decode()
        request.add_header("Authorization", "Basic " + token)
    try:
        return urllib.request.urlopen(request, timeout=10).status
    except urllib.error.HTTPError as exc:
        return exc.code
admin = os.environ["MLFLOW_AUTH_ADMIN_USERNAME"], os.environ["MLFLOW_AUTH_ADMIN_PASSWORD"]
print(json.dumps({"keys": keys, "datasets": datasets, "anonymous": status(),
                  "admin": status(*admin), "wrong": status(admin[0], "not-" + admin[1])}))
"""


def test_artifacts_are_in_minio_and_mlflow_demands_a_login(release: Release) -> None:
    """From inside the MLflow pod, with its own credentials (Secret
    references in its environment): the helm test's artifact is an object of
    the mlflow bucket, its S3 key may not write the datasets bucket, and the
    API, called by its Service name, wants the admin's password."""
    api = f"API=http://{PREFIX}-mlflow:5000/api/2.0/mlflow/experiments/search?max_results=1"
    out = release.k("exec", f"deployment/{PREFIX}-mlflow", "--", "env", api, "python", "-c", _PROBE)
    probe = json.loads(out.strip().splitlines()[-1])
    assert any(key.endswith("/artifacts/probe/probe.txt") for key in probe["keys"]), probe
    assert probe["datasets"] == "AccessDenied", probe
    assert (probe["anonymous"], probe["wrong"], probe["admin"]) == (401, 401, 200), probe


# ------------------------------------------------------------------- upgrade


def _state(release: Release) -> dict[str, Any]:
    """Per component: its pods' UIDs and its controller's revision."""
    state: dict[str, Any] = {"pods": {}, "revisions": {}, "jobs": []}
    for pod in _pods(release):
        state["pods"].setdefault(_component(pod), set()).add(pod["metadata"]["uid"])
    for sts in release.kj("get", "statefulsets", "-l", INSTANCE)["items"]:
        component = sts["metadata"]["labels"]["app.kubernetes.io/component"]
        status = sts["status"]
        state["revisions"][component] = (status["currentRevision"], status["updateRevision"])
    for deploy in release.kj("get", "deployments", "-l", INSTANCE)["items"]:
        component = deploy["metadata"]["labels"]["app.kubernetes.io/component"]
        revision = deploy["metadata"]["annotations"]["deployment.kubernetes.io/revision"]
        state["revisions"][component] = revision
    state["jobs"] = sorted(j["metadata"]["name"] for j in release.kj("get", "jobs")["items"])
    return state


def test_upgrade_with_one_changed_value_rolls_only_mlflow(release: Release, openbao: Bao) -> None:
    before = _state(release)
    _helm_or_diagnose(
        release, "upgrade", RELEASE, str(CHART), "-f", str(VALUES),
        "--set", "mlflow.auth.defaultPermission=NO_PERMISSIONS",
        "--wait", "--wait-for-jobs", "--timeout", TIMEOUT,
    )  # fmt: skip
    # The old MLflow pod may still be terminating: wait until only new ones are left.
    after = _state(release)
    for _ in range(120):
        if len(after["pods"]["mlflow"]) == len(before["pods"]["mlflow"]):
            break
        time.sleep(1)
        after = _state(release)
    assert after["pods"]["mlflow"].isdisjoint(before["pods"]["mlflow"]), (before, after)
    assert int(after["revisions"]["mlflow"]) == int(before["revisions"]["mlflow"]) + 1
    for component in ("minio", "postgresql", "openbao"):
        assert after["pods"][component] == before["pods"][component], component
        assert after["revisions"][component] == before["revisions"][component], component
    assert after["jobs"] == before["jobs"]  # the provisioning plan did not change
    ini = release.kj("get", "configmap", f"{PREFIX}-mlflow")["data"]["basic_auth.ini"]
    assert "default_permission = NO_PERMISSIONS" in ini
    # OpenBao's pod was left alone: still initialised and unsealed.
    with port_forward(release.namespace, f"service/{PREFIX}-openbao", 8200) as url:
        assert not hvac.Client(url=url).sys.is_sealed()
    # The new MLflow pods serve the same users (PostgreSQL kept them).
    test = _helm_or_diagnose(release, "test", RELEASE, "--logs", "--timeout", TIMEOUT)
    assert "artifact read back intact from run" in test, test


# ------------------------------------------------------------------- secrets


def test_no_credential_in_manifests_pod_specs_or_logs(release: Release) -> None:
    ns = release.namespace
    texts = {
        "helm get all": helm("get", "all", RELEASE, "--namespace", ns).stdout,
        "helm output": "\n".join(release.outputs),
    }
    kinds = "pods,jobs,deployments,statefulsets,replicasets,configmaps,services,events"
    texts["objects"] = release.k("get", kinds, "-o", "json")
    pods = release.kj("get", "pods")["items"]
    assert pods
    for pod in pods:
        for container in pod["spec"]["containers"]:
            name = f"{pod['metadata']['name']}/{container['name']}"
            texts[f"logs {name}"] = release.k(
                "logs", pod["metadata"]["name"], "-c", container["name"]
            )
            # A credential's variable is a Secret reference, never a value.
            for env in container.get("env", []):
                if re.search(r"PASSWORD|SECRET|TOKEN|_KEY$", env["name"]):
                    assert "secretKeyRef" in env.get("valueFrom", {}), (name, env)
    assert len(release.secret_values()) > 9  # the credentials and OpenBao's keys
    # What is searched is the real thing: the release's objects and the logs.
    assert all(t for t in texts.values()), [k for k, t in texts.items() if not t]
    assert ns in texts["objects"]
    assert "provisioning complete" in "".join(t for k, t in texts.items() if "provision" in k)
    leaks = [
        (where, i)
        for where, text in texts.items()
        for i, value in enumerate(release.secret_values())
        if value in text
    ]
    assert leaks == [], f"secret values (by index) found in: {leaks}"


# ----------------------------------------------------------------- uninstall


def _leftovers(namespace: str) -> list[str]:
    kinds = kubectl("api-resources", "--verbs=list", "--namespaced", "-o", "name").stdout.split()
    assert {"pods", "persistentvolumeclaims", "configmaps"} <= set(kinds), kinds
    listed = kubectl(
        "--namespace", namespace, "get", ",".join(kinds), "-l", INSTANCE, "-o", "name"
    ).stdout.split()
    # Helm's own record of the release (Secrets sh.helm.release.v1.lab.vN).
    listed += kubectl(
        "--namespace", namespace, "get", "secrets", "-l", f"owner=helm,name={RELEASE}", "-o", "name"
    ).stdout.split()
    listed += kubectl("--namespace", namespace, "get", "pvc", "-o", "name").stdout.split()
    return listed


def test_uninstall_leaves_nothing_of_the_release(release: Release) -> None:
    assert _leftovers(release.namespace)  # the check sees the release while it exists
    _helm_or_diagnose(release, "uninstall", RELEASE, "--wait", "--timeout", TIMEOUT)
    left = _leftovers(release.namespace)
    for _ in range(120):  # the Jobs' and ReplicaSets' pods go after their owners
        if not left:
            break
        time.sleep(1)
        left = _leftovers(release.namespace)
    assert left == []
    # The user's Secrets are the user's: the chart never owned them.
    names = {s["metadata"]["name"] for s in release.kj("get", "secrets")["items"]}
    assert names >= set(release.credentials), names
