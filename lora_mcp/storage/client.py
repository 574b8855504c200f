"""One boto3 S3 client from the settings, `s3://` locations, and S3 failures as errors an agent can act on.

Works against AWS, MinIO, SeaweedFS and Supabase Storage's S3 endpoint: with an endpoint URL the client uses
path-style addressing (`http://host:9000/bucket/key`), which those servers need. boto3 is imported here, on first
use, never at server start-up (it is the optional `storage` extra).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from lora_mcp.errors import InvalidInput, OperationFailed
from lora_mcp.settings import Settings

CREDENTIAL_CODES = ("InvalidAccessKeyId", "SignatureDoesNotMatch", "InvalidToken", "ExpiredToken", "AccessDenied")
URI = re.compile(r"^s3://(?P<bucket>[a-z0-9][a-z0-9.\-]{1,61}[a-z0-9])(?:/(?P<key>.*))?$")


@dataclass(frozen=True)
class S3Location:
    """A bucket and a key (or key prefix)."""

    bucket: str
    key: str

    @property
    def uri(self) -> str:
        """`s3://bucket/key`."""
        return f"s3://{self.bucket}/{self.key}"

    @classmethod
    def parse(cls, uri: str, *, field: str = "source") -> S3Location:
        """Parse `s3://bucket/prefix`; InvalidInput names what is wrong."""
        match = URI.match(uri.strip())
        if match is None:
            raise InvalidInput(
                f"{uri!r} is not an s3:// location.",
                hint="Pass s3://<bucket>/<prefix>, e.g. s3://datasets/portraits/ (bucket names are lower-case).",
                field=field,
            )
        return cls(match["bucket"], match["key"] or "")


def require_bucket(settings: Settings) -> str:
    """The export bucket from the settings, or an error saying what to set."""
    if not settings.s3_bucket:
        raise OperationFailed(
            "LORA_MCP_S3_BUCKET is not set, so there is no bucket to export to.",
            hint="Set LORA_MCP_S3_BUCKET (and LORA_MCP_S3_ENDPOINT_URL for MinIO or Supabase Storage) and restart "
            "the server, or export with destination='comfyui'.",
        )
    return settings.s3_bucket


def s3_client(settings: Settings) -> Any:
    """A boto3 S3 client for the configured endpoint, region and credentials (boto3's own chain when unset)."""
    try:
        import boto3
        from botocore.config import Config
    except ImportError:
        raise OperationFailed(
            "The S3 artifact store needs boto3, which is not installed.",
            hint="pip install 'lora-mcp[storage]' and restart the server.",
        ) from None
    config = Config(
        signature_version="s3v4",
        connect_timeout=5,
        read_timeout=60,
        retries={"max_attempts": 3, "mode": "standard"},
        s3={"addressing_style": "path" if settings.s3_endpoint_url else "auto"},
    )
    return boto3.session.Session().client(
        "s3",
        endpoint_url=settings.s3_endpoint_url,
        region_name=settings.s3_region,
        aws_access_key_id=settings.s3_access_key_id,
        aws_secret_access_key=settings.s3_secret_access_key,
        config=config,
    )


def _code(exc: BaseException) -> str:
    response = getattr(exc, "response", None)
    if isinstance(response, dict):
        return str(response.get("Error", {}).get("Code", ""))
    found = re.search(r"An error occurred \((\w+)\)", str(exc))  # S3UploadFailedError keeps only the text
    return found.group(1) if found else ""


def translate(exc: BaseException, action: str, settings: Settings) -> OperationFailed | None:
    """The OperationFailed for an S3/botocore failure, or None when `exc` is not one."""
    from botocore.exceptions import (
        BotoCoreError,
        ClientError,
        ConnectionError,
        NoCredentialsError,
        PartialCredentialsError,
    )

    where = settings.s3_endpoint_url or "AWS S3"
    from boto3.exceptions import S3TransferFailedError, S3UploadFailedError

    if isinstance(exc, NoCredentialsError | PartialCredentialsError):
        return OperationFailed(
            f"{action} failed: no S3 credentials were found.",
            hint="Set LORA_MCP_S3_ACCESS_KEY_ID and LORA_MCP_S3_SECRET_ACCESS_KEY (or AWS_* variables) and restart.",
        )
    if isinstance(exc, ConnectionError):
        return OperationFailed(
            f"{action} failed: the S3 endpoint {where} did not answer ({type(exc).__name__}).",
            hint="Check that the storage server runs and LORA_MCP_S3_ENDPOINT_URL is right, then call again.",
        )
    if not isinstance(exc, ClientError | BotoCoreError | S3UploadFailedError | S3TransferFailedError):
        return None
    code = _code(exc)
    status = (getattr(exc, "response", None) or {}).get("ResponseMetadata", {}).get("HTTPStatusCode")
    if code in CREDENTIAL_CODES or code == "403" or status == 403:
        return OperationFailed(
            f"{action} failed: {where} refused the credentials ({code or status}).",
            hint="Check LORA_MCP_S3_ACCESS_KEY_ID / LORA_MCP_S3_SECRET_ACCESS_KEY and that the key may use the "
            "bucket, restart the server, then call again.",
        )
    if code == "NoSuchBucket":
        return OperationFailed(
            f"{action} failed: the bucket does not exist on {where}.",
            hint="Create the bucket (or fix LORA_MCP_S3_BUCKET), then call again.",
        )
    return OperationFailed(
        f"{action} failed on {where}: {exc}",
        hint="Check the storage server's log; calling again retries the whole transfer.",
    )


@contextmanager
def s3_errors(action: str, settings: Settings) -> Iterator[None]:
    """Turn boto3/botocore failures inside the block into OperationFailed naming `action` and the fix."""
    try:
        yield
    except Exception as exc:
        error = translate(exc, action, settings)
        if error is None:
            raise
        raise error from exc
