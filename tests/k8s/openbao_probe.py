"""Run in a training-job pod by test_openbao_login: the login workload.credentials
does, in the standard library only (the MLflow image runs it; the training
image is not in the sandbox cluster), then one MLflow call with the
credentials read. Prints names and statuses, never a value."""

import base64
import json
import os
import ssl
import urllib.request

_CONTEXT = ssl.create_default_context(cafile=os.environ["BAO_CACERT"])


def call(url: str, body: object = None, headers: dict | None = None) -> tuple[int, dict]:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(  # noqa: S310 (https URLs of the chart's env)
        url, data=data, headers={"Content-Type": "application/json", **(headers or {})}
    )
    with urllib.request.urlopen(request, context=_CONTEXT, timeout=30) as answer:  # noqa: S310
        return answer.status, json.load(answer)


def main() -> None:
    addr = os.environ["BAO_ADDR"]
    with open(os.environ["BAO_K8S_JWT_PATH"], encoding="utf-8") as f:
        jwt = f.read().strip()
    mount, role = os.environ["BAO_K8S_MOUNT"], os.environ["BAO_K8S_ROLE"]
    _, login = call(f"{addr}/v1/auth/{mount}/login", {"role": role, "jwt": jwt})
    token = {"X-Vault-Token": login["auth"]["client_token"]}
    path = os.environ["BAO_SECRET_PATH"]
    _, secret = call(f"{addr}/v1/secret/data/{path}", headers=token)
    values = secret["data"]["data"]
    user = f"{values['MLFLOW_TRACKING_USERNAME']}:{values['MLFLOW_TRACKING_PASSWORD']}"
    basic = {"Authorization": "Basic " + base64.b64encode(user.encode()).decode()}
    search = os.environ["MLFLOW_TRACKING_URI"] + "/api/2.0/mlflow/experiments/search"
    status, _ = call(search, {"max_results": 1}, basic)
    auth = login["auth"]
    print(
        json.dumps(
            {
                "policies": auth["policies"],
                "ttl": auth["lease_duration"],
                "keys": sorted(values),
                "mlflow": status,
            }
        )
    )


main()
