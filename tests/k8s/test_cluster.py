"""The sandbox's Kubernetes cluster as a user meets it: nodes Ready at the
pinned version, the system pods running, Services found by name across
nodes, GPU requests scheduled against what nodes advertise."""

from __future__ import annotations

import time

from tests.inventory import hostvars
from tests.kube import apply, kubectl, kubectl_json, kubernetes_version, pod, worker_names


def test_every_worker_is_ready_at_the_pinned_version() -> None:
    nodes = {item["metadata"]["name"]: item for item in kubectl_json("get", "nodes")["items"]}
    assert sorted(nodes) == sorted(worker_names())
    for name, node in nodes.items():
        conditions = {c["type"]: c["status"] for c in node["status"]["conditions"]}
        assert conditions["Ready"] == "True", (name, conditions)
        info = node["status"]["nodeInfo"]
        assert info["kubeletVersion"] == kubernetes_version(), (name, info)
        assert info["kubeProxyVersion"] in ("", kubernetes_version()), (name, info)
        assert info["containerRuntimeVersion"].startswith("containerd://1.6."), (name, info)
        addresses = {a["type"]: a["address"] for a in node["status"]["addresses"]}
        assert addresses["InternalIP"] == hostvars(name)["sandbox_ipv4_address"], (name, addresses)


def test_the_api_server_reports_itself_healthy_and_at_the_pinned_version() -> None:
    ready = kubectl("get", "--raw", "/readyz?verbose").stdout
    assert ready.rstrip().endswith("readyz check passed"), ready
    assert "[+]etcd ok" in ready, ready
    assert kubectl_json("version")["serverVersion"]["gitVersion"] == kubernetes_version()


def test_controller_manager_and_scheduler_hold_their_leader_leases() -> None:
    leases = kubectl_json("--namespace", "kube-system", "get", "leases")["items"]
    holders = {item["metadata"]["name"]: item["spec"].get("holderIdentity", "") for item in leases}
    for component in ("kube-controller-manager", "kube-scheduler"):
        assert holders.get(component), (component, holders)


def test_every_system_pod_is_running_and_ready() -> None:
    pods = kubectl_json("--namespace", "kube-system", "get", "pods")["items"]
    assert {p["metadata"]["labels"].get("k8s-app") for p in pods} >= {"kube-dns"}
    for item in pods:
        name = item["metadata"]["name"]
        assert item["status"]["phase"] == "Running", (name, item["status"])
        assert all(c["ready"] for c in item["status"]["containerStatuses"]), (name, item["status"])


def _wait_for_phase(namespace: str, name: str, phases: set[str], seconds: int = 180) -> str:
    phase = ""
    for _ in range(seconds):
        phase = kubectl_json("--namespace", namespace, "get", "pod", name)["status"].get(
            "phase", ""
        )
        if phase in phases:
            return phase
        time.sleep(1)
    raise AssertionError(f"pod {namespace}/{name} is {phase!r}, not in {phases}")


# A one-request-at-a-time HTTP server in the base image's Perl (Debian's
# minbase has no other), answering with the node it runs on.
_SERVER = (
    "use IO::Socket::INET; my $s = IO::Socket::INET->new(LocalPort => 8080, Listen => 5, "
    "ReuseAddr => 1) or die $!; while (my $c = $s->accept) { "
    # Read the whole request (to its blank line): closing with unread bytes
    # would reset the connection before the client read the answer.
    "while (my $l = <$c>) { last if $l =~ /^\\r?\\n$/ } "
    'print $c "HTTP/1.0 200 OK\\r\\n\\r\\nserved by $ENV{NODE_NAME}\\n"; close $c }'
)


def test_a_service_is_found_by_name_and_reached_from_another_node(namespace: str) -> None:
    server_node, client_node = worker_names()[0], worker_names()[1]
    apply(pod("web", ["perl", "-e", _SERVER], node=server_node, labels={"app": "web"}), namespace)
    apply(
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": "web"},
            "spec": {"selector": {"app": "web"}, "ports": [{"port": 80, "targetPort": 8080}]},
        },
        namespace,
    )
    assert _wait_for_phase(namespace, "web", {"Running"}) == "Running"
    kubectl("--namespace", namespace, "wait", "--for=condition=Ready", "pod/web", "--timeout=120s")
    fqdn = f"web.{namespace}.svc.cluster.local"
    cluster_ip = kubectl_json("--namespace", namespace, "get", "service", "web")["spec"][
        "clusterIP"
    ]
    # Until kube-proxy has programmed the service, a connection to its address leaves
    # the node by the default route (seen: a 426 from this machine's egress proxy).
    client = (
        f"getent hosts {fqdn}; for try in $(seq 30); do "
        f"reply=$(exec 3<>/dev/tcp/{fqdn}/80 && printf 'GET / HTTP/1.0\\r\\n\\r\\n' >&3 "
        "&& cat <&3); case $reply in *'served by'*) break;; esac; sleep 1; done; "
        'echo "$reply"'
    )
    apply(pod("client", ["bash", "-c", client], node=client_node), namespace)
    assert _wait_for_phase(namespace, "client", {"Succeeded", "Failed"}) == "Succeeded", kubectl(
        "--namespace", namespace, "logs", "client", check=False
    ).stdout
    logs = kubectl("--namespace", namespace, "logs", "client").stdout
    assert logs.split()[0] == cluster_ip, logs
    assert f"served by {server_node}" in logs, logs


def _gpu_pod(name: str, gpus: int) -> dict:
    return pod(
        name,
        ["sleep", "300"],
        resources={
            "requests": {"cpu": "10m", "memory": "16Mi"},
            "limits": {"nvidia.com/gpu": str(gpus)},
        },
    )


def test_gpu_requests_schedule_on_nodes_that_advertise_them(namespace: str) -> None:
    advertised = {
        item["metadata"]["name"]: int(item["status"]["capacity"].get("nvidia.com/gpu", "0"))
        for item in kubectl_json("get", "nodes")["items"]
    }
    most = max(advertised.values())
    assert most > 0, advertised

    apply(_gpu_pod("fits", most), namespace)
    apply(_gpu_pod("too-many", most + 1), namespace)

    assert _wait_for_phase(namespace, "fits", {"Running"}) == "Running"
    placed = kubectl_json("--namespace", namespace, "get", "pod", "fits")["spec"]["nodeName"]
    assert advertised[placed] >= most, (placed, advertised)
    # The one asking for more than any node has is never placed: the
    # scheduler says why, and it stays Pending.
    events: list[dict] = []
    for _ in range(60):
        events = kubectl_json(
            "--namespace",
            namespace,
            "get",
            "events",
            "--field-selector",
            "involvedObject.name=too-many",
        )["items"]
        if any(e["reason"] == "FailedScheduling" for e in events):
            break
        time.sleep(1)
    messages = " ".join(e["message"] for e in events)
    assert "Insufficient nvidia.com/gpu" in messages, messages
    status = kubectl_json("--namespace", namespace, "get", "pod", "too-many")
    assert status["status"]["phase"] == "Pending"
    assert "nodeName" not in status["spec"]
