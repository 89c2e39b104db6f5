"""S3 client settings that work with MinIO, and a clear error on bad credentials."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import boto3.session
from botocore.config import Config
from botocore.exceptions import ClientError, EndpointConnectionError
from obstore.store import S3Store

from workload.credentials import secret

if TYPE_CHECKING:
    from obstore.store import ClientConfig


class S3AccessError(RuntimeError):
    """The object store refused us or could not be reached; the message names the endpoint."""


@dataclass(frozen=True)
class S3Settings:
    """Where the object store is and who we are. The secret never appears in repr()."""

    endpoint: str
    access_key: str
    secret_key: str = field(repr=False)
    region: str = "us-east-1"

    @classmethod
    def from_env(cls) -> S3Settings:
        """Read `S3_ENDPOINT` (or `MLFLOW_S3_ENDPOINT_URL`) and the `AWS_*` key pair
        (from the environment, or as fetched from OpenBao)."""
        endpoint = os.environ.get("S3_ENDPOINT") or os.environ.get("MLFLOW_S3_ENDPOINT_URL")
        access_key, secret_key = secret("AWS_ACCESS_KEY_ID"), secret("AWS_SECRET_ACCESS_KEY")
        missing = [
            name
            for name, value in (
                ("S3_ENDPOINT", endpoint),
                ("AWS_ACCESS_KEY_ID", access_key),
                ("AWS_SECRET_ACCESS_KEY", secret_key),
            )
            if not value
        ]
        if missing:
            raise S3AccessError(f"S3 settings missing from the environment: {', '.join(missing)}")
        return cls(
            endpoint=str(endpoint),
            access_key=str(access_key),
            secret_key=str(secret_key),
            region=os.environ.get("AWS_DEFAULT_REGION", "us-east-1"),
        )


def client_config(max_pool_connections: int = 32) -> Config:
    """botocore settings for MinIO.

    Since botocore 1.36 the client adds CRC checksums to every upload by default
    (`request_checksum_calculation="when_supported"`), sent as an aws-chunked
    trailer that MinIO rejects or stores wrongly for some operations; ask for
    checksums only when an operation requires them, and verify with our own
    sha256 manifest instead. Path-style addressing: MinIO has no virtual hosts.
    """
    return Config(
        signature_version="s3v4",
        s3={"addressing_style": "path"},
        request_checksum_calculation="when_required",
        response_checksum_validation="when_required",
        retries={"max_attempts": 5, "mode": "standard"},
        max_pool_connections=max_pool_connections,
        connect_timeout=10,
        read_timeout=120,
    )


def make_client(settings: S3Settings, max_pool_connections: int = 32) -> Any:
    """A boto3 S3 client for `settings` (thread-safe; share it between threads)."""
    return boto3.session.Session().client(
        "s3",
        endpoint_url=settings.endpoint,
        aws_access_key_id=settings.access_key,
        aws_secret_access_key=settings.secret_key,
        region_name=settings.region,
        config=client_config(max_pool_connections),
    )


def make_store(settings: S3Settings, bucket: str) -> S3Store:
    """An obstore store for BUCKET (the dataset cache's GETs: many in flight at once, each
    in Rust, off the GIL). The endpoint's CA is AWS_CA_BUNDLE's, as for boto3; path-style
    addressing, as MinIO needs; obstore retries 5xx and dropped connections itself."""
    options: ClientConfig = {
        "allow_http": settings.endpoint.startswith("http://"),
        "connect_timeout": "10s",
        # A stalled connection is found by its reads, as boto3's read_timeout does. The
        # overall limit (30 s by default, body included) would cut a large file's GET.
        "read_timeout": "120s",
        "timeout": "6h",
    }
    if ca_file := os.environ.get("AWS_CA_BUNDLE"):
        try:
            options["root_certificate"] = Path(ca_file).read_bytes()
        except OSError as exc:
            raise S3AccessError(f"AWS_CA_BUNDLE {ca_file}: {exc.strerror}") from None
    return S3Store(
        bucket,
        endpoint=settings.endpoint,
        access_key_id=settings.access_key,
        secret_access_key=settings.secret_key,
        region=settings.region,
        virtual_hosted_style_request=False,
        client_options=options,
    )


def check_access(client: Any, bucket: str) -> None:
    """Fail early, naming the endpoint and bucket, when credentials or the endpoint are wrong."""
    endpoint = client.meta.endpoint_url
    try:
        client.head_bucket(Bucket=bucket)
    except ClientError as exc:
        code = exc.response.get("Error", {}).get("Code", "?")
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", "?")
        if str(status) == "403" or code in {"InvalidAccessKeyId", "SignatureDoesNotMatch", "403"}:
            raise S3AccessError(
                f"S3 endpoint {endpoint} rejected the credentials (HTTP {status} {code}) "
                f"for bucket {bucket!r}: check AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY"
            ) from None
        if str(status) == "404":
            raise S3AccessError(f"S3 endpoint {endpoint} has no bucket {bucket!r}") from None
        raise S3AccessError(
            f"S3 endpoint {endpoint}, bucket {bucket!r}: HTTP {status} {code}"
        ) from None
    except EndpointConnectionError:
        raise S3AccessError(f"S3 endpoint {endpoint} is unreachable") from None


def ensure_bucket(client: Any, bucket: str, *, versioned: bool) -> None:
    """Create `bucket` if it does not exist yet, with versioning on if VERSIONED (dataset
    versions pin their objects' versions)."""
    try:
        client.head_bucket(Bucket=bucket)
    except ClientError:
        client.create_bucket(Bucket=bucket)
    if versioned:
        client.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
