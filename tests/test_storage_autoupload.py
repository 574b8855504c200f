"""LORA_MCP_UPLOAD_ON_SUCCESS against a real S3 server: a succeeded train job is exported by the notifier, retried
while the storage refuses it, visible through upload_state, and announced as lora.exported to the webhook receiver."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from jobs_fixtures import new_manager, use_fake_aitk, wait_final, wait_until, write_config
from storage_fixtures import S3Server, weed_server
from test_transports import free_port
from webhook_fixtures import SECRET, Receiver, body_of

from lora_mcp.assembly import open_manager
from lora_mcp.jobs import events
from lora_mcp.jobs.status import job_status
from lora_mcp.notify.service import Notifier
from lora_mcp.settings import get_settings
from lora_mcp.storage.autoupload import upload_state
from lora_mcp.training.export import sha256_of
from lora_mcp.training.service import start_training


@pytest.fixture(scope="module")
def s3(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Server]:
    with weed_server(tmp_path_factory.mktemp("weed"), bucket=None) as server:
        yield server


def test_a_succeeded_job_is_uploaded_once_the_storage_accepts_it(
    monkeypatch: pytest.MonkeyPatch, s3: S3Server, shared_images: Path
) -> None:
    bucket = f"a-{uuid.uuid4().hex[:12]}"
    s3.client().create_bucket(Bucket=bucket)
    receiver = Receiver(free_port())
    receiver.start()
    for key, value in s3.env(bucket).items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("LORA_MCP_UPLOAD_ON_SUCCESS", "true")
    monkeypatch.setenv("LORA_MCP_WEBHOOK_URLS", receiver.url)
    monkeypatch.setenv("LORA_MCP_WEBHOOK_SECRET", SECRET)
    settings = use_fake_aitk(monkeypatch)
    monkeypatch.setenv("LORA_MCP_S3_SECRET_ACCESS_KEY", "wrong")  # the first attempt is refused
    get_settings.cache_clear()
    wrong = get_settings()
    manager = new_manager(wrong)
    notifier = Notifier(manager, upload_retry=0.2)
    notifier.run_once()  # cursors start here
    try:
        job = wait_final(manager, start_training(manager, str(write_config(settings, shared_images))).job_id)
        assert upload_state(settings, job.id) is None
        notifier.run_once()
        pending = upload_state(settings, job.id)
        assert pending is not None and pending.state == "pending" and "refused the credentials" in (pending.error or "")
        assert "wrong" not in (pending.error or "")

        manager.settings = settings  # the operator fixes the key (and restarts)
        notifier.start()
        wait_until(lambda: (upload_state(settings, job.id) or pending).state == "done", timeout=30, what="upload")
        wait_until(
            lambda: any(body_of(r)["type"] == events.LORA_EXPORTED for r in receiver.received),
            timeout=10,
            what="lora.exported webhook",
        )
    finally:
        notifier.stop()
        receiver.stop()
    done = upload_state(settings, job.id)
    assert done is not None and done.uri == f"s3://{bucket}/loras/lora_a.safetensors" and done.url
    assert done.attempts == 2 and done.error is None
    head = s3.client().head_object(Bucket=bucket, Key="loras/lora_a.safetensors")
    assert head["Metadata"]["sha256"] == sha256_of(Path(job.outputs["lora_path"]))
    exported = [body_of(r) for r in receiver.received if body_of(r)["type"] == events.LORA_EXPORTED]
    assert len(exported) == 1 and exported[0]["data"]["path"] == done.uri and exported[0]["data"]["destination"] == "s3"
    # get_job shows both: where the LoRA went and how the job's webhooks went.
    status = job_status(open_manager(settings), manager.get(job.id))
    assert status.upload == done
    assert status.webhooks is not None and status.webhooks.configured and status.webhooks.delivered >= 1
    shown = status.model_dump(mode="json")
    assert shown["upload"]["uri"] == done.uri and shown["webhooks"]["delivered"] == status.webhooks.delivered
