"""Kubernetes: the Job of helm/training-job, rendered with `helm template`, applied with kubectl.

Followed through the Job's status and its pods: every pod of an Indexed Job,
every attempt (a retried pod is a new pod), until the Job is deleted.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

from workload.launch.backend import Backend, JobRef, JobRequest, LogCursor
from workload.launch.config import LabConfig
from workload.launch.spec import Resources, SpecError

# A Job's name is its pods' hostname prefix (NAME-INDEX-xxxxx, at most 63
# characters) and helm's release name (at most 53): the run's job name cut
# to 43, then the run id's first 8 hex digits (a relaunch of a finished run
# is another run: another Job beside the first, whose pods keep their logs).
_NAME_PREFIX = 43
# The annotation `stop` sets on the Job it suspends.
STOPPED_BY = "labstack.io/stopped-by"
# A label's key ([DNS-PREFIX/]NAME) and value, as the API server checks them.
_LABEL_NAME = r"[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?"
_LABEL_KEY = re.compile(rf"([a-z0-9]([-a-z0-9.]{{0,251}}[a-z0-9])?/)?{_LABEL_NAME}")
_LABEL_VALUE = re.compile(rf"({_LABEL_NAME})?")


class KubernetesError(RuntimeError):
    """helm or kubectl failed; the message has their stderr."""


def _tool(name: str, env_var: str) -> str:
    found = os.environ.get(env_var) or shutil.which(name)
    if not found:
        raise SpecError(f"--on k8s: `{name}` is not on PATH (or set {env_var})")
    return found


def values(
    config: LabConfig,
    resources: Resources,
    run_id: str,
    experiment: str,
    git_commit: str,
    train_argv: list[str],
) -> dict:
    k8s = config.kubernetes
    repository, colon, tag = k8s.image.rpartition(":")
    if not (repository and colon and tag) or "/" in tag:
        raise SpecError(
            f"[kubernetes] image = {k8s.image!r}: REPOSITORY:TAG, e.g. labstack/training:0.1.0"
        )
    return {
        "image": {"repository": repository, "tag": tag},
        "run": {"id": run_id, "experiment": experiment},
        "args": train_argv,
        "nodes": resources.nodes,
        "gpusPerNode": resources.gpus,
        **_credentials(config),
        "lab": {
            "mlflowUri": config.jobs.mlflow_uri,
            "s3Endpoint": config.jobs.s3_endpoint,
            "caConfigMap": k8s.ca_configmap,
        },
        "dataCache": {"claimName": k8s.data_cache_claim, "hostPath": k8s.data_cache_host_path},
        "nodeSelector": node_selector(config),
        "env": {
            "LABSTACK_GIT_COMMIT": git_commit,
            "MLFLOW_HTTP_REQUEST_MAX_RETRIES": str(config.jobs.mlflow_retries),
        },
        "resources": {
            "requests": {
                "cpu": _cpu_quantity(resources.cpus * resources.tasks_per_node),
                "memory": resources.memory + "i",
            },
            "limits": {"memory": resources.memory + "i"},
        },
    }


def _cpu_quantity(cpus: float) -> str:
    """CPUs as Kubernetes writes them: "2", or millicores ("500m") for a fraction."""
    return str(int(cpus)) if float(cpus).is_integer() else f"{round(cpus * 1000)}m"


def node_selector(config: LabConfig) -> dict[str, str]:
    """[kubernetes] node_selector's KEY=VALUE labels, checked as the API server would."""
    labels: dict[str, str] = {}
    for item in config.kubernetes.node_selector:
        key, equals, value = item.partition("=")
        if not (equals and _LABEL_KEY.fullmatch(key) and _LABEL_VALUE.fullmatch(value)):
            raise SpecError(
                f"[kubernetes] node_selector entry {item!r}: KEY=VALUE with a label's key "
                "and value, e.g. labstack.io/training-image=true"
            )
        labels[key] = value
    return labels


def _credentials(config: LabConfig) -> dict:
    """The chart's values for the pods' credentials: an OpenBao login, or the site's Secrets."""
    k8s = config.kubernetes
    if not k8s.openbao_role:
        return {"secrets": {"mlflow": k8s.mlflow_secret, "s3": k8s.s3_secret}}
    if not k8s.service_account:
        raise SpecError(
            f"[kubernetes] openbao_role = {k8s.openbao_role!r} needs service_account: "
            "the ServiceAccount the role admits"
        )
    return {
        "serviceAccountName": k8s.service_account,
        "openbao": {
            "address": config.jobs.openbao_addr,
            "role": k8s.openbao_role,
            "secretPath": config.jobs.secret_path,
        },
    }


def _run(what: str, argv: list[str], stdin: str | None = None) -> str:
    """stdout of `argv`; its stderr, after `what`, in the error when it fails."""
    done = subprocess.run(argv, input=stdin, capture_output=True, text=True, check=False)  # noqa: S603
    if done.returncode != 0:
        raise KubernetesError(f"{what}: {done.stderr.strip()}")
    return done.stdout


def job_name_for(name: str, run_id: str) -> str:
    """The Job of run RUN_ID, whose job name is NAME: distinct per run, stable for it
    (see _NAME_PREFIX)."""
    return f"{name[:_NAME_PREFIX].rstrip('-')}-{run_id[:8]}"


def render(config: LabConfig, name: str, chart_values: dict) -> str:
    """The chart's manifest; NAME is the release's and, exactly, the Job's."""
    helm = _tool("helm", "LABSTACK_HELM_BIN")
    k8s = config.kubernetes
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "values.json"
        path.write_text(json.dumps({**chart_values, "fullnameOverride": name}))
        argv = [helm, "template", name, k8s.chart, "--namespace", k8s.namespace, "-f", str(path)]
        return _run(f"helm template {k8s.chart}", argv)


def _argv(config: LabConfig, *args: str) -> list[str]:
    kubectl = _tool("kubectl", "LABSTACK_KUBECTL_BIN")
    context = ["--context", config.kubernetes.context] if config.kubernetes.context else []
    return [kubectl, *context, "--namespace", config.kubernetes.namespace, *args]


def _kubectl(config: LabConfig, *args: str, stdin: str | None = None) -> str:
    return _run(f"kubectl {args[0]}", _argv(config, *args), stdin)


def check(config: LabConfig, resources: Resources) -> str:
    """The namespace and the pods' ServiceAccount exist, we may create Jobs there, some node
    has the GPUs asked for, and the image is on a node or in a registry; its digest
    ("" when only the registry has it)."""
    _tool("helm", "LABSTACK_HELM_BIN")
    namespace = config.kubernetes.namespace
    found = _kubectl(config, "get", "serviceaccount", "default", "--ignore-not-found", "-o", "name")
    if not found.strip():
        raise SpecError(f"[kubernetes] namespace {namespace!r} does not exist on the cluster")
    account = config.kubernetes.service_account
    if (
        account
        and not _kubectl(
            config, "get", "serviceaccount", account, "--ignore-not-found", "-o", "name"
        ).strip()
    ):
        raise SpecError(
            f"[kubernetes] service_account {account!r} does not exist in namespace {namespace}"
        )
    answer = _kubectl(config, "auth", "can-i", "create", "jobs").strip()
    if answer != "yes":
        raise SpecError(f"--on k8s: may not create Jobs in namespace {namespace}")
    nodes = json.loads(_kubectl(config, "get", "nodes", "-o", "json"))["items"]
    wanted = node_selector(config)
    nodes = [node for node in nodes if wanted.items() <= node["metadata"].get("labels", {}).items()]
    if not nodes:
        raise SpecError(
            f"[kubernetes] node_selector {config.kubernetes.node_selector}: "
            "no node of the cluster has these labels"
        )
    if resources.gpus:
        most = max(
            (int(n["status"].get("allocatable", {}).get("nvidia.com/gpu", "0")) for n in nodes),
            default=0,
        )
        if resources.gpus > most:
            raise SpecError(
                f"--gpus {resources.gpus}: no node of the cluster{_among(config)} advertises "
                f"more than {most} nvidia.com/gpu"
            )
    image = config.kubernetes.image
    digest = image_digest(nodes, image)
    first = image.split("/", 1)[0]
    from_registry = "/" in image and ("." in first or ":" in first or first == "localhost")
    if digest is None and not from_registry:
        raise SpecError(
            f"[kubernetes] image {image} is on no node of the cluster{_among(config)} and "
            "names no registry: "
            "load it into the nodes, or push it to a registry and name it as "
            "REGISTRY/REPOSITORY:TAG"
        )
    return digest or ""


def _among(config: LabConfig) -> str:
    selector = config.kubernetes.node_selector
    return f" with labels {', '.join(selector)}" if selector else ""


def image_digest(nodes: list[dict], image: str) -> str | None:
    """The registry digest (sha256:...) of IMAGE on the first node that holds it; "" when
    that node reports none (an image imported, not pulled); None when no node holds it."""
    wanted = {image, f"docker.io/{image}", f"docker.io/library/{image}"}
    for node in nodes:
        for held in node.get("status", {}).get("images", []):
            names = held.get("names") or []  # an image may be listed with "names": null
            if wanted & set(names):
                return next((n.partition("@")[2] for n in names if "@sha256:" in n), "")
    return None


def _job(config: LabConfig, name: str) -> dict | None:
    found = _kubectl(config, "get", "job", name, "--ignore-not-found", "-o", "json")
    return json.loads(found) if found.strip() else None


def job_state(job: dict | None) -> str:
    """A Job's state in Slurm's words: PENDING, RUNNING, COMPLETING, COMPLETED, FAILED,
    STOPPING/STOPPED (suspended by `stop`), or DELETED."""
    if job is None:
        return "DELETED"
    status = job.get("status", {})
    true = {c["type"] for c in status.get("conditions", []) if c.get("status") == "True"}
    if "Complete" in true:
        return "COMPLETED"
    if "Failed" in true:
        return "FAILED"
    if true & {"SuccessCriteriaMet", "FailureTarget"}:
        return "COMPLETING"  # the end is decided; pods are still terminating
    if job.get("spec", {}).get("suspend"):
        if STOPPED_BY not in job["metadata"].get("annotations", {}):
            return "PENDING"  # suspended by its queue (Kueue), not by `stop`: not admitted yet
        # Pods being ended count as `terminating`, no longer as `active`.
        return "STOPPING" if status.get("active") or status.get("terminating") else "STOPPED"
    return "RUNNING" if status.get("ready") else "PENDING"


class Kubernetes(Backend):
    """A Job (helm/training-job) per run; its pods get their credentials without the launcher."""

    name = "k8s"
    needs_login = False
    names_jobs = True

    def prepare(self, env_path: str = "") -> dict[str, str]:
        digest = check(self.config, self.resources)
        image = self.config.kubernetes.image
        found = {"env.image_digest": digest} if digest else {}
        return {**_image_build(image), "env.image": image, **found}

    def run_dir(self, run_id: str) -> str:
        return ""

    def render(self, job: JobRequest) -> str:
        chart_values = values(
            self.config, self.resources, job.run_id, job.experiment, job.git_commit, job.argv
        )
        return render(self.config, job_name_for(job.job_name, job.run_id), chart_values)

    def job_id(self, job: JobRequest) -> str:
        return job_name_for(job.job_name, job.run_id)

    def check_job(self, job: JobRef, job_name: str) -> None:
        """The Job `cancel` deletes and `logs` reads is the one this run's names give."""
        if job.job_id != (own := job_name_for(job_name, job.run_id)):
            raise SpecError(f"tag job.id={job.job_id!r}: not the Job of this run ({own})")

    def submit(self, job: JobRequest, approle: str) -> str:
        name = self.job_id(job)
        existing = _job(self.config, name)
        if existing is not None:
            # The run's own earlier Job (relaunch of a stopped run): it must have ended.
            if job_state(existing) not in ("COMPLETED", "FAILED", "STOPPED"):
                raise SpecError(f"Job {name} of run {job.run_id} is {job_state(existing)}")
            _kubectl(self.config, "delete", "job", name, "--wait=true")
        _kubectl(self.config, "apply", "-f", "-", stdin=self.render(job))
        return name

    def state(self, job: JobRef) -> str:
        return job_state(_job(self.config, job.job_id))

    def stop(self, job: JobRef, graceful: bool) -> None:
        if graceful:
            # A suspended Job's pods get SIGTERM (checkpoint) and are not retried. The
            # annotation tells this suspension from a queue's (Kueue creates Jobs suspended).
            patch = json.dumps(
                {
                    "metadata": {"annotations": {STOPPED_BY: "labstack stop"}},
                    "spec": {"suspend": True},
                }
            )
            _kubectl(self.config, "patch", "job", job.job_id, "--type=merge", "-p", patch)
        else:
            # Foreground: the Job stays until its pods are gone, so `wait` sees DELETED only
            # when no pod can still write to the run.
            _kubectl(
                self.config, "delete", "job", job.job_id, "--ignore-not-found",
                "--cascade=foreground", "--wait=false",
            )  # fmt: skip

    def log(self, job: JobRef, cursor: LogCursor) -> bytes:
        """Every pod's output, in the order the pods were made (an index's retries after it),
        each under a `==> pod NAME <==` header when the output read changes."""
        selector = f"batch.kubernetes.io/job-name={job.job_id}"
        pods = json.loads(_kubectl(self.config, "get", "pods", "-l", selector, "-o", "json"))
        out = b""
        for pod in sorted(pods["items"], key=lambda p: p["metadata"]["creationTimestamp"]):
            name = pod["metadata"]["name"]
            done = subprocess.run(  # noqa: S603 (a pod not started yet has no log: empty)
                _argv(self.config, "logs", name, "--container", "train"),
                capture_output=True,
                check=False,
            )
            chunk = done.stdout[cursor.at(name) :] if done.returncode == 0 else b""
            if chunk:
                if cursor.last != name:
                    out += f"==> pod {name} <==\n".encode()
                    cursor.last = name
                out += cursor.moved(chunk, name)
        return out


def _image_build(image: str) -> dict[str, str]:
    """When this machine has IMAGE (the one its nodes imported, or pulled from a registry):
    its id (env.image_id, sha256 of its configuration) and the commit it was built from
    (git.commit, its OCI label)."""
    docker = shutil.which("docker")
    if docker is None:
        return {}
    label = '{{index .Config.Labels "org.opencontainers.image.revision"}}'
    done = subprocess.run(  # noqa: S603
        [docker, "image", "inspect", "--format", "{{.Id}} " + label, image],
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        return {}
    image_id, _, revision = done.stdout.strip().partition(" ")
    return {"env.image_id": image_id, **({"git.commit": revision} if revision else {})}
