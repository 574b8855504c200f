"""export_lora(destination="s3") against a real S3 server (SeaweedFS `weed mini` on 127.0.0.1): upload, checksums,
presigned URL fetched with plain httpx, multipart above the threshold, wrong credentials, server down."""

from __future__ import annotations

import hashlib
import json
import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from jobs_fixtures import new_manager, use_fake_aitk, wait_final, write_config
from mcp import Client
from storage_fixtures import S3Server, weed_server
from training_fixtures import TRIGGER

from lora_mcp.errors import OperationFailed
from lora_mcp.jobs import events
from lora_mcp.jobs.manager import JobManager
from lora_mcp.jobs.models import JobState
from lora_mcp.jobs.store import JobRecord
from lora_mcp.server.app import build_server
from lora_mcp.settings import Settings, get_settings
from lora_mcp.storage.upload import expected_checksum, upload_lora
from lora_mcp.training.export import export_lora, sha256_of
from lora_mcp.training.service import start_training


@pytest.fixture(scope="module")
def s3(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Server]:
    with weed_server(tmp_path_factory.mktemp("weed"), bucket=None) as server:
        yield server


def configure(monkeypatch: pytest.MonkeyPatch, s3: S3Server, **extra: str) -> tuple[Settings, str]:
    """Point the settings at `s3` with a fresh bucket of this test's own (plus the fake AI-Toolkit)."""
    bucket = f"t-{uuid.uuid4().hex[:12]}"
    s3.client().create_bucket(Bucket=bucket)
    for key, value in {**s3.env(bucket), **extra}.items():
        monkeypatch.setenv(key, value)
    return use_fake_aitk(monkeypatch), bucket


def trained(manager: JobManager, settings: Settings, shared_images: Path) -> JobRecord:
    config = write_config(settings, shared_images, steps=100)
    job = wait_final(manager, start_training(manager, str(config)).job_id)
    assert job.state == JobState.SUCCEEDED, manager.tail(job.id, 30)
    return job


def test_export_uploads_verifies_and_presigns(
    monkeypatch: pytest.MonkeyPatch, s3: S3Server, shared_images: Path
) -> None:
    settings, bucket = configure(monkeypatch, s3)
    manager = new_manager(settings)
    job = trained(manager, settings, shared_images)
    local = Path(job.outputs["lora_path"])
    digest = sha256_of(local)

    result = export_lora(manager, job.id, "s3", previews=True)
    assert result.path == f"s3://{bucket}/loras/lora_a.safetensors" and not result.already_present
    assert result.sha256 == digest and result.size_bytes == local.stat().st_size
    client = s3.client()
    head = client.head_object(Bucket=bucket, Key="loras/lora_a.safetensors", ChecksumMode="ENABLED")
    assert head["Metadata"]["sha256"] == digest
    assert head["ChecksumCRC32"] == expected_checksum(local, local.stat().st_size, 16 << 20)
    sidecar = json.loads(client.get_object(Bucket=bucket, Key="loras/lora_a.json")["Body"].read())
    assert sidecar["trigger_word"] == TRIGGER and sidecar["sha256"] == digest
    assert sidecar["total_steps"] == 100 and sidecar["step"] == 100 and sidecar["base_model"]
    assert set(result.extras) == {"contact-sheet.png", "loss.png"}
    sheet = client.get_object(Bucket=bucket, Key="loras/lora_a.contact-sheet.png")["Body"].read()
    assert sheet.startswith(b"\x89PNG")

    # The presigned URL works for anyone, with plain HTTP and no credentials.
    assert result.url is not None
    fetched = httpx.get(result.url, timeout=30)
    assert fetched.status_code == 200 and hashlib.sha256(fetched.content).hexdigest() == digest

    exported = manager.store.events(job_id=job.id, types=(events.LORA_EXPORTED,))
    assert len(exported) == 1 and exported[0].data["path"] == result.path and exported[0].data["sha256"] == digest

    again = export_lora(manager, job.id, "s3")
    assert again.already_present and again.url, "the same file again: nothing uploaded, a fresh URL"
    assert len(manager.store.events(job_id=job.id, types=(events.LORA_EXPORTED,))) == 1, "a no-op is no event"


def test_a_different_object_at_the_key_is_left_alone(
    monkeypatch: pytest.MonkeyPatch, s3: S3Server, shared_images: Path
) -> None:
    settings, bucket = configure(monkeypatch, s3)
    manager = new_manager(settings)
    job = trained(manager, settings, shared_images)
    s3.client().put_object(Bucket=bucket, Key="loras/lora_a.safetensors", Body=b"someone else's file")
    with pytest.raises(OperationFailed, match="already exists and is a different file") as info:
        export_lora(manager, job.id, "s3")
    assert "name='lora_a_v2'" in str(info.value)
    body = s3.client().get_object(Bucket=bucket, Key="loras/lora_a.safetensors")["Body"].read()
    assert body == b"someone else's file"
    assert export_lora(manager, job.id, "s3", name="lora_a_v2").path.endswith("/loras/lora_a_v2.safetensors")


def test_multipart_above_the_threshold_is_verified_by_its_composite_checksum(
    monkeypatch: pytest.MonkeyPatch, s3: S3Server, tmp_path: Path
) -> None:
    _, bucket = configure(monkeypatch, s3, LORA_MCP_S3_MULTIPART_THRESHOLD_MB="5", LORA_MCP_S3_PREFIX="")
    settings = get_settings()
    big = tmp_path / "big.safetensors"
    big.write_bytes(os.urandom(12 << 20) + b"tail")  # 3 parts of 5 MiB
    digest = sha256_of(big)
    upload = upload_lora(settings, big, "big", digest, {"sha256": digest}, {})
    assert upload.uri == f"s3://{bucket}/big.safetensors" and upload.size == big.stat().st_size
    head = s3.client().head_object(Bucket=bucket, Key="big.safetensors", ChecksumMode="ENABLED")
    assert head["ETag"].strip('"').endswith("-3"), "uploaded in parts"
    assert head["ChecksumCRC32"] == expected_checksum(big, big.stat().st_size, 5 << 20)
    with httpx.stream("GET", upload.url, timeout=60) as response:
        assert response.status_code == 200
        got = hashlib.sha256()
        for chunk in response.iter_bytes():
            got.update(chunk)
    assert got.hexdigest() == digest


def test_wrong_credentials_are_named_and_the_lora_is_untouched(
    monkeypatch: pytest.MonkeyPatch, s3: S3Server, shared_images: Path
) -> None:
    settings, bucket = configure(monkeypatch, s3)
    manager = new_manager(settings)
    job = trained(manager, settings, shared_images)
    local = Path(job.outputs["lora_path"])
    before = (sha256_of(local), local.stat().st_mtime_ns)
    monkeypatch.setenv("LORA_MCP_S3_SECRET_ACCESS_KEY", "not-the-secret")
    get_settings.cache_clear()
    manager.settings = get_settings()
    with pytest.raises(OperationFailed) as info:
        export_lora(manager, job.id, "s3")
    text = str(info.value)
    assert "refused the credentials" in text and "LORA_MCP_S3_SECRET_ACCESS_KEY" in text
    assert "not-the-secret" not in text
    assert (sha256_of(local), local.stat().st_mtime_ns) == before
    assert s3.client().list_objects_v2(Bucket=bucket).get("KeyCount", 0) == 0
    assert not manager.store.events(job_id=job.id, types=(events.LORA_EXPORTED,))


def test_server_down_is_named_and_the_lora_is_untouched(
    monkeypatch: pytest.MonkeyPatch, s3: S3Server, shared_images: Path
) -> None:
    settings, _ = configure(monkeypatch, s3)
    manager = new_manager(settings)
    job = trained(manager, settings, shared_images)
    local = Path(job.outputs["lora_path"])
    before = (sha256_of(local), local.stat().st_mtime_ns)
    monkeypatch.setenv("LORA_MCP_S3_ENDPOINT_URL", "http://127.0.0.1:9")  # discard port: nothing listens
    get_settings.cache_clear()
    manager.settings = get_settings()
    with pytest.raises(OperationFailed, match=r"http://127\.0\.0\.1:9 did not answer") as info:
        export_lora(manager, job.id, "s3")
    assert "LORA_MCP_S3_ENDPOINT_URL" in str(info.value)
    assert (sha256_of(local), local.stat().st_mtime_ns) == before


def test_no_bucket_configured_says_what_to_set(monkeypatch: pytest.MonkeyPatch, shared_images: Path) -> None:
    settings = use_fake_aitk(monkeypatch)
    manager = new_manager(settings)
    job = trained(manager, settings, shared_images)
    with pytest.raises(OperationFailed, match="LORA_MCP_S3_BUCKET is not set"):
        export_lora(manager, job.id, "s3")


@pytest.mark.anyio
async def test_export_lora_tool_to_s3(monkeypatch: pytest.MonkeyPatch, s3: S3Server, shared_images: Path) -> None:
    settings, bucket = configure(monkeypatch, s3)
    job = trained(new_manager(settings), settings, shared_images)
    async with Client(build_server(settings)) as client:
        result = await client.call_tool("export_lora", {"job_id": job.id, "destination": "s3", "checkpoint": 40})
        assert not result.is_error, result.content
        content = result.structured_content
        assert content is not None and content["destination"] == "s3"
        assert content["path"] == f"s3://{bucket}/loras/lora_a_step40.safetensors"
        assert httpx.get(content["url"], timeout=30).status_code == 200
