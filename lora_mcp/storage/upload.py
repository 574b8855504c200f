"""Upload a LoRA with its sidecar (and optional previews) to S3, verify it, and presign a download URL.

Verification does not trust the upload call alone. boto3 sends a CRC32 with every request (its default), which the
server checks; afterwards HEAD must report the local size, the `sha256` metadata (the file's SHA-256, computed here
before the upload and also written to the sidecar) and the server's own CRC32 of the stored bytes, equal to the one
computed here while the parts upload: the whole file's CRC32 for a single-part upload, or S3's composite form (the
CRC32 of the parts' CRC32s, `-<parts>`) for a multipart one. CRC32 rather than SHA-256 checksums on the wire: the
same protection against corrupted transfers for ~15% more throughput (docs/benchmarks.md). An object that fails the
check is deleted. The local file is only read. An existing object at the same key is never overwritten: the same
sha256 makes the upload a no-op, another is refused.
"""

from __future__ import annotations

import base64
import json
import time
import zlib
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lora_mcp.errors import OperationFailed
from lora_mcp.settings import Settings
from lora_mcp.storage.client import S3Location, require_bucket, s3_client, s3_errors

MiB = 1 << 20
MAX_CONCURRENCY = 8


@dataclass(frozen=True)
class S3Upload:
    """Where an uploaded LoRA lives and how to fetch it."""

    uri: str
    url: str
    url_expires_at: float
    sidecar_uri: str
    extra_uris: dict[str, str]
    size: int
    already_present: bool


def lora_key(settings: Settings, stem: str) -> S3Location:
    """The object of `<stem>.safetensors` under the configured bucket and prefix."""
    prefix = settings.s3_prefix.strip("/")
    return S3Location(require_bucket(settings), f"{prefix}/{stem}.safetensors" if prefix else f"{stem}.safetensors")


def part_size(settings: Settings) -> int:
    """Multipart threshold and part size in bytes."""
    return settings.s3_multipart_threshold_mb * MiB


def expected_checksum(path: Path, size: int, part: int) -> str:
    """The ChecksumCRC32 S3 reports for `path` uploaded in parts of `part` bytes (composite `...-N` if multipart)."""
    if size < part:
        crc = 0
        with open(path, "rb") as fh:
            while chunk := fh.read(MiB):
                crc = zlib.crc32(chunk, crc)
        return _b64(crc)
    parts, count = b"", 0
    with open(path, "rb") as fh:
        while chunk := fh.read(part):
            parts += zlib.crc32(chunk).to_bytes(4, "big")
            count += 1
    return f"{_b64(zlib.crc32(parts))}-{count}"


def _b64(crc: int) -> str:
    return base64.b64encode(crc.to_bytes(4, "big")).decode()


def upload_lora(
    settings: Settings, source: Path, stem: str, digest: str, sidecar: dict[str, Any], extras: dict[str, bytes]
) -> S3Upload:
    """Upload `source` as `<prefix><stem>.safetensors` with `<stem>.json` and `<stem>.<name>` extras; verify it."""
    target = lora_key(settings, stem)
    client = s3_client(settings)
    size = source.stat().st_size
    with s3_errors(f"Uploading {source.name} to {target.uri}", settings):
        already = _existing(client, target, digest, stem)
        if not already:
            with ThreadPoolExecutor(1) as pool:  # checksum the parts while they upload (zlib releases the GIL)
                expected = pool.submit(expected_checksum, source, size, part_size(settings))
                _upload(client, settings, source, target, digest)
                _verify(client, target, digest, size, expected.result())
        base = target.key.removesuffix(".safetensors")
        sidecar_loc = S3Location(target.bucket, f"{base}.json")
        _put(client, sidecar_loc, (json.dumps(sidecar, indent=2) + "\n").encode(), "application/json")
        extra_uris = {}
        for name, data in extras.items():
            loc = S3Location(target.bucket, f"{base}.{name}")
            _put(client, loc, data, "image/png")
            extra_uris[name] = loc.uri
        expiry = settings.s3_presign_expiry_seconds
        url = client.generate_presigned_url(
            "get_object", Params={"Bucket": target.bucket, "Key": target.key}, ExpiresIn=expiry
        )
    return S3Upload(target.uri, url, time.time() + expiry, sidecar_loc.uri, extra_uris, size, already)


def _existing(client: Any, target: S3Location, digest: str, stem: str) -> bool:
    """True when the same LoRA is already at `target`; refuses a different object there."""
    from botocore.exceptions import ClientError

    try:
        head = client.head_object(Bucket=target.bucket, Key=target.key)
    except ClientError as exc:
        if exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") == 404:
            return False
        raise
    if head.get("Metadata", {}).get("sha256") == digest:
        return True
    raise OperationFailed(
        f"{target.uri} already exists and is a different file; it was left unchanged.",
        hint=f"Export under another name (name='{stem}_v2'), or delete the existing object first.",
    )


def _upload(client: Any, settings: Settings, source: Path, target: S3Location, digest: str) -> None:
    from boto3.s3.transfer import TransferConfig

    part = part_size(settings)
    config = TransferConfig(multipart_threshold=part, multipart_chunksize=part, max_concurrency=MAX_CONCURRENCY)
    extra = {"Metadata": {"sha256": digest}, "ContentType": "application/octet-stream"}
    client.upload_file(str(source), target.bucket, target.key, ExtraArgs=extra, Config=config)


def _verify(client: Any, target: S3Location, digest: str, size: int, expected: str) -> None:
    """HEAD the object: size, sha256 metadata and the server's CRC32 must match; else delete it."""
    head = client.head_object(Bucket=target.bucket, Key=target.key, ChecksumMode="ENABLED")
    problems = []
    if head.get("ContentLength") != size:
        problems.append(f"size {head.get('ContentLength')} != {size}")
    if head.get("Metadata", {}).get("sha256") != digest:
        problems.append("sha256 metadata missing or different")
    reported = head.get("ChecksumCRC32")  # absent on servers that keep no checksums: size and metadata remain
    if reported and reported != expected:
        problems.append(f"server checksum {reported} differs from the local file's")
    if problems:
        client.delete_object(Bucket=target.bucket, Key=target.key)
        raise OperationFailed(
            f"The upload to {target.uri} did not verify ({'; '.join(problems)}); the object was deleted.",
            hint="Call export_lora again; if it keeps failing, check the storage server's disk and log.",
        )


def _put(client: Any, loc: S3Location, data: bytes, content_type: str) -> None:
    client.put_object(Bucket=loc.bucket, Key=loc.key, Body=data, ContentType=content_type)
