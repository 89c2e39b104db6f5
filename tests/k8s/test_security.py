# pyright: reportAttributeAccessIssue=false, reportCallIssue=false
"""Who may do what in the cluster, each property tried as an attacker would:
anonymous requests, a node's own login, etcd with a certificate from the
wrong CA, a Secret's value read straight from etcd."""

from __future__ import annotations

import base64
import secrets
import stat

import requests
import testinfra
import yaml
from testinfra.backend.base import CommandResult
from testinfra.host import Host

from tests.inventory import container
from tests.kube import KUBECONFIG, apply, control_plane_name, worker_names
from tests.playbook import SANDBOX_INVENTORY
from tests.services import endpoint

PKI = SANDBOX_INVENTORY / ".generated" / "pki"
API = f"https://{endpoint(control_plane_name(), 6443)}"


def _host(name: str) -> Host:
    return testinfra.get_host(f"docker://{container(name)}")


def _https_status(node: Host, url: str, cert: str = "", key: str = "") -> int:
    """The HTTP status NODE gets for URL (TLS unverified: the status is the point)."""
    script = (
        "import ssl, sys, urllib.request, urllib.error\n"
        "c = ssl.create_default_context()\n"
        "c.check_hostname = False\n"
        "c.verify_mode = ssl.CERT_NONE\n"
        "if sys.argv[2]: c.load_cert_chain(sys.argv[2], sys.argv[3])\n"
        "try: print(urllib.request.urlopen(sys.argv[1], context=c, timeout=10).status)\n"
        "except urllib.error.HTTPError as e: print(e.code)\n"
    )
    return int(node.check_output("python3 -c %s %s %s %s", script, url, cert, key))


def test_anonymous_requests_may_not_read_secrets() -> None:
    answer = requests.get(
        f"{API}/api/v1/namespaces/kube-system/secrets",
        verify=str(PKI / "kubernetes-ca.crt"),
        timeout=10,
    )
    assert answer.status_code == 403, answer.text
    assert "system:anonymous" in answer.json()["message"]


def test_the_api_server_is_not_trusted_through_the_lab_ca() -> None:
    """Its certificate comes from the cluster's own CA: the lab CA, which
    signs every service's certificate, neither vouches for it nor logs in."""
    try:
        requests.get(f"{API}/readyz", verify=str(PKI / "ca.crt"), timeout=10)
    except requests.exceptions.SSLError:
        pass
    else:
        raise AssertionError("the API server's certificate verifies against the lab CA")
    mlflow_cert = PKI / "head" / "mlflow.crt"
    answer = requests.get(
        f"{API}/api/v1/secrets",
        cert=(str(mlflow_cert), str(mlflow_cert.with_suffix(".key"))),
        verify=str(PKI / "kubernetes-ca.crt"),
        timeout=10,
    )
    # A certificate the cluster's CA did not sign is no login at all.
    assert answer.status_code == 401, answer.text
    assert answer.json()["reason"] == "Unauthorized", answer.text


def test_kubelets_refuse_anonymous_requests() -> None:
    cp = _host(control_plane_name())
    for worker in worker_names():
        assert _https_status(cp, f"https://{worker}:10250/pods") == 401, worker


def test_a_node_cannot_read_secrets_with_its_own_login() -> None:
    node = _host(worker_names()[0])
    pki = "/etc/kubernetes/pki"
    status = _https_status(
        node,
        f"https://{control_plane_name()}:6443/api/v1/secrets",
        f"{pki}/kubelet.crt",
        f"{pki}/kubelet.key",
    )
    assert status == 403


def _etcdctl(cp: Host, client: str, *args: str) -> CommandResult:
    pki = "/etc/kubernetes/pki"
    return cp.run(
        "etcdctl --endpoints=https://127.0.0.1:2379 --cacert=%s --cert=%s --key=%s "
        + " ".join(["%s"] * len(args)),
        f"{pki}/etcd-ca.crt",
        f"{pki}/{client}.crt",
        f"{pki}/{client}.key",
        *args,
    )


def test_secrets_are_encrypted_in_etcd(namespace: str) -> None:
    value = secrets.token_hex(16)
    apply(
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": "probe"},
            "data": {"value": base64.b64encode(value.encode()).decode()},
        },
        namespace,
    )
    cp = _host(control_plane_name())
    stored = _etcdctl(
        cp, "kube-apiserver-etcd-client", "get", f"/registry/secrets/{namespace}/probe"
    )
    assert stored.rc == 0, stored.stderr
    assert b"k8s:enc:aescbc:v1:labstack-1:" in stored.stdout_bytes
    assert value.encode() not in stored.stdout_bytes


def test_etcd_refuses_certificates_of_the_cluster_ca() -> None:
    """A kubelet's or a controller's certificate is no key to etcd."""
    cp = _host(control_plane_name())
    since = cp.check_output("date +%s")
    refused = _etcdctl(
        cp,
        "kube-controller-manager",
        "--dial-timeout=5s",
        "get",
        "/registry",
        "--prefix",
        "--keys-only",
    )
    assert refused.rc != 0
    assert b"/registry/" not in refused.stdout_bytes
    # Why, says the server: the client sees a TLS alert or, when the server
    # hangs up first, only a broken pipe.
    log = cp.check_output("journalctl -u etcd --since @%s --no-pager -o cat", since)
    assert "rejected connection on client endpoint" in log, refused.stderr
    assert "certificate signed by unknown authority" in log, log


def test_the_admin_kubeconfig_is_private_to_the_control_nodes_user() -> None:
    mode = stat.S_IMODE(KUBECONFIG.stat().st_mode)
    assert mode == 0o600, oct(mode)
    config = yaml.safe_load(KUBECONFIG.read_text())
    assert config["clusters"][0]["cluster"]["server"] == API
