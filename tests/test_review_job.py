"""Review jobs end to end: the worker subprocess against a stub LLM server, a SIGKILL halfway and the resume, the
MCP tools in memory (rules only, then apply), and the CLI."""

from __future__ import annotations

import os
import signal
from collections import Counter
from pathlib import Path

import anyio
import pytest
from jobs_fixtures import wait_final, wait_until
from mcp import Client
from review_fixtures import TRIGGER, StubLLM, make_captioned_folder, numbered_captions

from lora_mcp.assembly import default_kinds
from lora_mcp.cli import main
from lora_mcp.jobs.manager import JobManager, read_child_pid
from lora_mcp.jobs.models import JobState
from lora_mcp.review.params import ReviewParams
from lora_mcp.review.reviewfile import load_review
from lora_mcp.review.service import start_review
from lora_mcp.server.app import build_server
from lora_mcp.settings import Settings, get_settings


def stub_settings(monkeypatch: pytest.MonkeyPatch, stub: StubLLM) -> Settings:
    monkeypatch.setenv("LORA_MCP_OPENAI_BASE_URL", stub.base_url)
    monkeypatch.setenv("LORA_MCP_REVIEW_MODEL", "stub")
    get_settings.cache_clear()
    settings = get_settings()
    settings.ensure_dirs()
    return settings


def manager_for(settings: Settings) -> JobManager:
    return JobManager(settings, default_kinds(), poll_interval=0.05, cancel_grace_seconds=5)


def test_killed_review_job_resumes_without_asking_again(monkeypatch: pytest.MonkeyPatch, root: Path) -> None:
    folder = make_captioned_folder(root, numbered_captions(12))
    before = {p.name: p.read_bytes() for p in folder.glob("*.txt")}
    with StubLLM() as stub:
        settings = stub_settings(monkeypatch, stub)
        manager = manager_for(settings)
        params = ReviewParams(folder=str(folder), trigger_word=TRIGGER, model="stub", concurrency=2)
        stub.slow_after = 6  # batches 1-3 answer at once; batch 4 hangs until it is killed
        first = start_review(manager, params)
        wait_until(lambda: len(stub.seen) >= 8, timeout=30, what="the 4th batch to reach the stub")
        job = manager.get(first.job_id)
        os.killpg(read_child_pid(job.job_dir) or 0, signal.SIGKILL)
        assert wait_final(manager, first.job_id).state == JobState.FAILED
        first_counts = stub.counts()
        stub.release()

        second = start_review(manager, params)
        assert second.resumed_from == first.job_id
        done = wait_final(manager, second.job_id)
    assert done.state == JobState.SUCCEEDED, manager.tail(second.job_id, 20)
    checkpointed = {f"img_{i:03d}.png" for i in range(6)}
    asked_again = stub.counts() - first_counts
    assert not checkpointed & set(asked_again), asked_again
    assert asked_again == Counter({f"img_{i:03d}.png": 1 for i in range(6, 12)})
    summary = done.outputs["summary"]
    assert summary["reused_reviews"] == 6 and summary["by_verdict"] == {"fix": 12}
    doc = load_review(Path(done.outputs["review_file"]))
    assert doc.job_id == second.job_id and [i.image for i in doc.images] == doc_names(12)
    assert all(r.has_image and r.has_tools for r in stub.seen)
    assert {p.name: p.read_bytes() for p in folder.glob("*.txt")} == before  # reviewing changes no caption


def doc_names(n: int) -> list[str]:
    return [f"img_{i:03d}.png" for i in range(n)]


@pytest.mark.anyio
async def test_tools_rules_only_then_apply(root: Path, settings: Settings) -> None:
    folder = make_captioned_folder(root, {"a.png": "This image shows a woman", "b.png": f"{TRIGGER} on a beach"})
    async with Client(build_server(settings)) as client:
        result = await client.call_tool("review_captions", {"folder": "dataset", "trigger_word": TRIGGER})
        assert not result.is_error, result.content
        job_id = result.structured_content["job_id"]
        with anyio.fail_after(60):
            while True:
                result = await client.call_tool("wait_for_job", {"job_id": job_id, "timeout_seconds": 5})
                status = result.structured_content
                if status["state"] in ("succeeded", "failed", "cancelled"):
                    break
        assert status["state"] == "succeeded", status
        assert "apply_caption_review" in status["next_step"]
        details = status["outputs"]["details"]
        assert "skipped" in details["summary"]["llm"] and details["summary"]["reviewed_by"] == {"rules": 2}
        applied = await client.call_tool("apply_caption_review", {"review_file": details["review_file"]})
        assert not applied.is_error, applied.content
        assert [a["image"] for a in applied.structured_content["applied"]] == ["a.png"]
        assert (folder / "a.txt").read_text() == f"{TRIGGER}, woman"
        refused = await client.call_tool("apply_caption_review", {"review_file": "/etc/passwd"})
        assert refused.is_error and "outside the allowed roots" in str(refused.content)
        outside = await client.call_tool("review_captions", {"folder": "../..", "trigger_word": TRIGGER})
        assert outside.is_error


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def test_cli_review_and_apply(root: Path, capsys: pytest.CaptureFixture[str]) -> None:
    folder = make_captioned_folder(root, {"a.png": "possibly ohwx running", "b.png": f"{TRIGGER} on a beach"})
    assert main(["review", str(folder), "--trigger-word", TRIGGER, "--json"]) == 0
    out = capsys.readouterr().out
    review_file = next(folder.glob("_reviews/review_*.yaml"))
    assert str(review_file) in out
    assert main(["apply-review", str(review_file), "--approve", "b.png"]) == 0
    assert "skipped  b.png: no suggested_caption" in capsys.readouterr().out
    assert (folder / "a.txt").read_text() == "possibly ohwx running"


def test_cancelled_review_stops_cleanly_and_resumes(monkeypatch: pytest.MonkeyPatch, root: Path) -> None:
    folder = make_captioned_folder(root, numbered_captions(4))
    with StubLLM() as stub:
        manager = manager_for(stub_settings(monkeypatch, stub))
        params = ReviewParams(folder=str(folder), trigger_word=TRIGGER, model="stub", concurrency=1)
        stub.slow_after = 2
        first = start_review(manager, params)
        wait_until(lambda: len(stub.seen) >= 3, timeout=30, what="the 3rd request")
        manager.cancel(first.job_id)  # SIGINT: the worker drops the caption in hand and exits 130
        cancelled = wait_final(manager, first.job_id, timeout=20)
        assert cancelled.state == JobState.CANCELLED and cancelled.exit_code == 130
        stub.release()
        second = start_review(manager, params)
        assert second.resumed_from == first.job_id
        done = wait_final(manager, second.job_id)
    assert done.state == JobState.SUCCEEDED
    assert stub.counts() == Counter({"img_000.png": 1, "img_001.png": 1, "img_002.png": 2, "img_003.png": 1})
