"""Ansible module: MinIO buckets, policies and users, through the S3 and admin APIs.

Runs on the control node (delegate_to: localhost) with the `minio` client of
the project's environment. Idempotent: it reads the current state first and
changes only what differs. Secret keys cannot be read back from MinIO, so a
user's secret is checked by signing a request with it.
"""

from __future__ import annotations

import json
from typing import Any

from ansible.module_utils.basic import AnsibleModule

DOCUMENTATION = r"""
module: labstack_minio
short_description: Buckets, canned policies and users of a MinIO deployment
description:
  - Creates the buckets (with versioning as asked), removes any anonymous
    bucket policy, sets the canned policies and creates the users with their
    secret keys and policies. Changes only what differs.
options:
  endpoint: {description: host:port of the S3 API (TLS), type: str, required: true}
  ca_file: {description: CA bundle that signs the server certificate, type: path, required: true}
  access_key: {description: root user, type: str, required: true, no_log: true}
  secret_key: {description: root password, type: str, required: true, no_log: true}
  buckets: {description: "list of {name, versioning}", type: list, elements: dict, default: []}
  policies: {description: name -> IAM policy document, type: dict, default: {}}
  users: {description: "list of {access_key, secret_key, policies}", type: list, elements: dict,
          default: [], no_log: true}
  replication:
    description:
      - "{endpoint, access_key, secret_key, buckets}: MinIO's bucket replication of each
        bucket (versioned) to the bucket of the same name at endpoint (host:port, TLS,
        versioned), as that endpoint's user: every version and delete marker, the
        objects already there included. Deleting a version for good is not replicated."
    type: dict
    no_log: true
author: labstack
"""

EXAMPLES = r"""
- name: Buckets, policies and users
  labstack_minio:
    endpoint: storage:9000
    ca_file: /path/to/ca.crt
    access_key: "{{ root_user }}"
    secret_key: "{{ root_password }}"
    buckets: [{name: datasets, versioning: true}]
    policies: {jobs-read: {Version: "2012-10-17", Statement: []}}
    users: [{access_key: jobs, secret_key: "{{ secret }}", policies: [jobs-read]}]
  no_log: true
"""

RETURN = r"""
actions: {description: what was changed, type: list, returned: always}
"""


def _normalise(policy: Any) -> str:
    """A policy document in a canonical form: MinIO returns action lists reordered."""

    def canonical(value: Any) -> Any:
        if isinstance(value, dict):
            return {key: canonical(item) for key, item in value.items()}
        if isinstance(value, list):
            items = [canonical(item) for item in value]
            return sorted(items) if all(isinstance(item, str) for item in items) else items
        return value

    return json.dumps(canonical(policy), sort_keys=True)


class Deployment:
    def __init__(self, module: AnsibleModule) -> None:
        import urllib3
        from minio import Minio, MinioAdmin
        from minio.credentials import StaticProvider

        params = module.params
        self.endpoint: str = params["endpoint"]
        self.http = urllib3.PoolManager(ca_certs=params["ca_file"], cert_reqs="CERT_REQUIRED")
        self.s3 = Minio(
            self.endpoint,
            access_key=params["access_key"],
            secret_key=params["secret_key"],
            secure=True,
            http_client=self.http,
        )
        self.admin = MinioAdmin(
            endpoint=self.endpoint,
            credentials=StaticProvider(params["access_key"], params["secret_key"]),
            secure=True,
            http_client=self.http,
        )
        self.secret_key: str = params["secret_key"]
        self.check_mode = module.check_mode
        self.actions: list[str] = []

    def _do(self, action: str) -> bool:
        self.actions.append(action)
        return not self.check_mode

    def bucket(self, name: str, versioning: bool) -> None:
        from minio.commonconfig import ENABLED
        from minio.error import S3Error
        from minio.versioningconfig import SUSPENDED, VersioningConfig

        if not self.s3.bucket_exists(name):
            if not self._do(f"create bucket {name}"):
                return
            self.s3.make_bucket(name)
        status = self.s3.get_bucket_versioning(name).status
        if versioning and status != ENABLED and self._do(f"enable versioning of {name}"):
            self.s3.set_bucket_versioning(name, VersioningConfig(ENABLED))
        if not versioning and status == ENABLED and self._do(f"suspend versioning of {name}"):
            self.s3.set_bucket_versioning(name, VersioningConfig(SUSPENDED))
        try:
            self.s3.get_bucket_policy(name)
        except S3Error as error:
            if error.code != "NoSuchBucketPolicy":
                raise
        else:
            if self._do(f"remove the anonymous policy of {name}"):
                self.s3.delete_bucket_policy(name)

    def policy(self, name: str, document: dict) -> None:
        from minio.error import MinioAdminException

        try:
            current = json.loads(self.admin.policy_info(name))
            current = current.get("Policy", current) if "PolicyName" in current else current
        except MinioAdminException:
            current = None
        if current is not None and _normalise(current) == _normalise(document):
            return
        if self._do(f"set policy {name}"):
            self.admin.policy_add(name, policy=document)

    def _secret_works(self, access_key: str, secret_key: str) -> bool:
        from minio import Minio
        from minio.error import S3Error

        client = Minio(
            self.endpoint,
            access_key=access_key,
            secret_key=secret_key,
            secure=True,
            http_client=self.http,
        )
        try:
            client.bucket_exists("labstack-credential-probe")
        except S3Error as error:
            return error.code not in {"InvalidAccessKeyId", "SignatureDoesNotMatch"}
        return True

    def user(self, access_key: str, secret_key: str, policies: list[str]) -> None:
        from minio.error import MinioAdminException

        try:
            info = json.loads(self.admin.user_info(access_key))
        except MinioAdminException:
            info = None
        if info is None or not self._secret_works(access_key, secret_key):
            if self._do(f"set the secret key of user {access_key}"):
                self.admin.user_add(access_key, secret_key)
            info = info or {}
        if info.get("status", "enabled") != "enabled" and self._do(f"enable user {access_key}"):
            self.admin.user_enable(access_key)
        current = sorted(filter(None, (info.get("policyName") or "").split(",")))
        if current != sorted(policies) and self._do(f"attach {policies} to user {access_key}"):
            self.admin.policy_set(",".join(sorted(policies)), user=access_key)

    def _admin(self, method: str, command: str, query: dict, body: bytes | None = None) -> Any:
        """A call of MinIO's admin API that minio-py does not wrap (the remote targets
        of bucket replication): its request signing, madmin's JSON answers."""
        from types import SimpleNamespace

        response = self.admin._url_open(  # minio-py 7.2 has no public call for these
            method=method, command=SimpleNamespace(value=command), query_params=query, body=body
        )
        return json.loads(response.data or b"null")

    def replicate(self, bucket: str, endpoint: str, access_key: str, secret_key: str) -> None:
        """BUCKET replicated to the bucket of the same name at ENDPOINT, as ACCESS_KEY."""
        from minio.commonconfig import ENABLED, Filter
        from minio.crypto import encrypt
        from minio.replicationconfig import (
            DeleteMarkerReplication,
            Destination,
            ExistingObjectReplication,
            ReplicationConfig,
            Rule,
        )

        query = {"bucket": bucket, "type": "replication"}
        targets = self._admin("GET", "list-remote-targets", query) or []
        arn = next(
            (
                target["arn"]
                for target in targets
                if target["endpoint"] == endpoint
                and target["targetbucket"] == bucket
                and (target.get("credentials") or {}).get("accessKey") == access_key
            ),
            None,
        )
        if arn is None:
            if not self._do(f"replicate {bucket} to {endpoint}"):
                return
            target = {
                "sourcebucket": bucket,
                "endpoint": endpoint,
                "credentials": {"accessKey": access_key, "secretKey": secret_key},
                "targetbucket": bucket,
                "secure": True,
                "type": "replication",
            }
            body = encrypt(json.dumps(target).encode(), self.secret_key)
            arn = self._admin("PUT", "set-remote-target", {"bucket": bucket}, body)
        rule = Rule(
            ENABLED,
            rule_filter=Filter(prefix=""),
            rule_id="labstack-replica",
            priority=1,
            destination=Destination(arn),
            delete_marker_replication=DeleteMarkerReplication(ENABLED),
            existing_object_replication=ExistingObjectReplication(ENABLED),
        )
        current = self.s3.get_bucket_replication(bucket)
        if (current and [_rule_state(r) for r in current.rules] == [_rule_state(rule)]) or not (
            self._do(f"set the replication rule of {bucket} to {endpoint}")
        ):
            return
        self.s3.set_bucket_replication(bucket, ReplicationConfig("", [rule]))


def _rule_state(rule: Any) -> tuple:
    """What a replication rule does, as MinIO reads it back."""

    def status(setting: Any) -> str | None:
        return setting.status if setting else None

    return (
        rule.rule_id,
        rule.status,
        rule.destination.bucket_arn if rule.destination else None,
        status(rule.delete_marker_replication),
        status(rule.existing_object_replication),
    )


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            "endpoint": {"type": "str", "required": True},
            "ca_file": {"type": "path", "required": True},
            "access_key": {"type": "str", "required": True, "no_log": True},
            "secret_key": {"type": "str", "required": True, "no_log": True},
            "buckets": {"type": "list", "elements": "dict", "default": []},
            "policies": {"type": "dict", "default": {}},
            "users": {"type": "list", "elements": "dict", "default": [], "no_log": True},
            "replication": {"type": "dict", "no_log": True},
        },
        supports_check_mode=True,
    )
    try:
        deployment = Deployment(module)
        for bucket in module.params["buckets"]:
            deployment.bucket(bucket["name"], bool(bucket.get("versioning", False)))
        for name, document in module.params["policies"].items():
            deployment.policy(name, document)
        for user in module.params["users"]:
            deployment.user(user["access_key"], user["secret_key"], list(user["policies"]))
        target = module.params["replication"] or {"buckets": []}
        for bucket in target["buckets"]:
            deployment.replicate(
                bucket, target["endpoint"], target["access_key"], target["secret_key"]
            )
    except ImportError as error:
        module.fail_json(msg=f"the control node's Python lacks the minio client: {error}")
    except Exception as error:  # reported to the user; secrets are not in it
        endpoint = module.params["endpoint"]
        module.fail_json(msg=f"MinIO at {endpoint}: {type(error).__name__}: {error}")
    module.exit_json(changed=bool(deployment.actions), actions=deployment.actions)


if __name__ == "__main__":
    main()
