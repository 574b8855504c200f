"""Signed webhooks from the job event log to a real receiver on 127.0.0.1 that verifies every signature with the
`standardwebhooks` library: every event of a fake-trainer run in order; a receiver down, then failing, then up;
a failed job's code and hint; kill -9 of a server process with undelivered events, delivered after its restart."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from jobs_fixtures import new_manager, use_fake_aitk, wait_final, wait_until, write_config
from test_transports import free_port
from webhook_fixtures import SECRET, Receiver, body_of

from lora_mcp.jobs import events
from lora_mcp.jobs.manager import JobManager
from lora_mcp.jobs.models import JobState
from lora_mcp.jobs.store import JobStore
from lora_mcp.notify.outbox import Outbox, outbox_path
from lora_mcp.notify.service import Notifier
from lora_mcp.notify.state import delivery_state
from lora_mcp.notify.webhooks import Backoff, WebhookFollower
from lora_mcp.settings import Settings, get_settings
from lora_mcp.training.service import start_training

REPO = Path(__file__).resolve().parents[1]


def webhook_settings(monkeypatch: pytest.MonkeyPatch, url: str, progress_every: str = "0") -> Settings:
    monkeypatch.setenv("LORA_MCP_WEBHOOK_URLS", f"{url}")
    monkeypatch.setenv("LORA_MCP_WEBHOOK_SECRET", SECRET)
    monkeypatch.setenv("LORA_MCP_WEBHOOK_PROGRESS_EVERY", progress_every)
    return use_fake_aitk(monkeypatch)


def run_job(manager: JobManager, settings: Settings, shared_images: Path, steps: int = 100) -> str:
    config = write_config(settings, shared_images, steps=steps)
    job_id = start_training(manager, str(config)).job_id
    wait_final(manager, job_id)
    return job_id


def test_every_event_of_a_run_arrives_signed_and_in_order(monkeypatch: pytest.MonkeyPatch, shared_images: Path) -> None:
    receiver = Receiver(free_port())
    receiver.start()
    settings = webhook_settings(monkeypatch, receiver.url)
    manager = new_manager(settings)
    notifier = Notifier(manager)
    notifier.start()
    try:
        job_id = run_job(manager, settings, shared_images)
        log = manager.store.events(job_id=job_id)
        wait_until(lambda: len(receiver.received) >= len(log), timeout=30, what="every event delivered")
    finally:
        notifier.stop()
        receiver.stop()
    assert receiver.rejected == 0, "every signature verified"
    got = [body_of(r) for r in receiver.received]
    assert [g["type"] for g in got] == [e.type for e in log]
    assert [g["data"]["seq"] for g in got] == [e.seq for e in log]
    assert len(set(receiver.ids())) == len(log)
    types = [g["type"] for g in got]
    assert types[0] == events.QUEUED and types[1] == events.STARTED and types[-1] == events.SUCCEEDED
    assert events.CHECKPOINT in types and events.SAMPLE in types and events.PROGRESS in types
    assert all(g["data"]["job_id"] == job_id and g["timestamp"].endswith("Z") for g in got)
    assert got[-1]["data"]["outputs"]["lora_path"]
    state = delivery_state(settings, job_id)
    assert (state.delivered, state.pending, state.failed, state.last_error) == (len(log), 0, 0, None)


def test_progress_is_thinned_per_job(monkeypatch: pytest.MonkeyPatch, shared_images: Path) -> None:
    receiver = Receiver(free_port())
    receiver.start()
    settings = webhook_settings(monkeypatch, receiver.url, progress_every="3600")
    manager = new_manager(settings)
    notifier = Notifier(manager)
    notifier.run_once()  # the first pass sets the cursor: webhooks start now
    try:
        job_id = run_job(manager, settings, shared_images)
        notifier.run_once()
    finally:
        notifier.stop()
        receiver.stop()
    log = manager.store.events(job_id=job_id)
    assert sum(e.type == events.PROGRESS for e in log) > 3
    got = [body_of(r)["type"] for r in receiver.received]
    assert got.count(events.PROGRESS) == 1
    assert got == [
        e.type
        for e in log
        if e.type != events.PROGRESS or e.seq == min(x.seq for x in log if x.type == events.PROGRESS)
    ]


def test_a_failed_job_carries_its_code_and_hint(monkeypatch: pytest.MonkeyPatch, shared_images: Path) -> None:
    receiver = Receiver(free_port())
    receiver.start()
    settings = webhook_settings(monkeypatch, receiver.url)
    monkeypatch.setenv("FAKE_AITK_FAIL", "oom_steps")
    manager = new_manager(settings)
    notifier = Notifier(manager)
    notifier.run_once()
    try:
        job_id = run_job(manager, settings, shared_images)
        assert manager.get(job_id).state == JobState.FAILED
        notifier.run_once()
    finally:
        notifier.stop()
        receiver.stop()
    last = body_of(receiver.received[-1])
    assert last["type"] == events.FAILED
    assert last["data"]["error"]["code"] == "oom" and last["data"]["error"]["hint"]


def test_receiver_down_then_failing_then_up_gets_everything_once_per_id(
    monkeypatch: pytest.MonkeyPatch, shared_images: Path
) -> None:
    port = free_port()
    receiver = Receiver(port)  # not started: connection refused
    settings = webhook_settings(monkeypatch, receiver.url)
    manager = new_manager(settings)
    notifier = Notifier(manager, backoff=Backoff(base=0.05, cap=0.2, max_attempts=1000))
    notifier.start()
    try:
        job_id = run_job(manager, settings, shared_images)
        log = manager.store.events(job_id=job_id)
        wait_until(lambda: delivery_state(settings, job_id).pending == len(log), timeout=10, what="all taken in")
        state = delivery_state(settings, job_id)
        assert state.delivered == 0 and state.pending == len(log) and "ConnectError" in (state.last_error or "")
        receiver.fail_next = 3  # up, but the first three answers are 500: those messages come again, same id
        receiver.start()
        wait_until(lambda: delivery_state(settings, job_id).delivered == len(log), timeout=30, what="delivery")
    finally:
        notifier.stop()
        receiver.stop()
    assert receiver.rejected == 0
    unique = receiver.unique()
    assert [body_of(r)["data"]["seq"] for r in unique] == [e.seq for e in log], "in order, none lost"
    assert len(receiver.received) == len(log) + 3, "only the three failed answers were sent again"
    by_id: dict[str, str] = {}
    for r in receiver.received:
        assert by_id.setdefault(r.msg_id, r.body) == r.body, "a retry is the same message"
    seqs = [body_of(r)["data"]["seq"] for r in unique]
    assert len(seqs) == len(set(seqs)), "no event under two ids"


SERVER_SCRIPT = textwrap.dedent(
    """
    import sys, time
    from lora_mcp.server.app import AppState
    from lora_mcp.settings import get_settings
    from lora_mcp.training.service import start_training

    state = AppState(get_settings())
    state.acquire()  # what a session start does: the job manager and the notifier
    if sys.argv[1] == "train":
        job_id = start_training(state.manager, sys.argv[2]).job_id
        while not state.manager.get(job_id).state.final:
            time.sleep(0.05)
        print("final", job_id, flush=True)
    else:
        print("serving", flush=True)
    time.sleep(600)
    """
)


def test_kill_9_with_undelivered_events_delivers_them_after_restart(
    monkeypatch: pytest.MonkeyPatch, shared_images: Path, tmp_path: Path
) -> None:
    port = free_port()
    receiver = Receiver(port)
    settings = webhook_settings(monkeypatch, receiver.url)
    config = write_config(settings, shared_images, steps=100)
    script = tmp_path / "server.py"
    script.write_text(SERVER_SCRIPT)
    env = {**os.environ, "PYTHONPATH": str(REPO)}

    first = subprocess.Popen([sys.executable, str(script), "train", str(config)], stdout=subprocess.PIPE, env=env)
    try:
        assert first.stdout is not None
        line = first.stdout.readline().decode().split()
        assert line[:1] == ["final"], line
        job_id = line[1]
        outbox = Outbox(outbox_path(settings.home))
        wait_until(
            lambda: outbox.query("SELECT COUNT(*) FROM deliveries WHERE job_id = ?", (job_id,))[0][0] > 0,
            timeout=10,
            what="events taken into the outbox",
        )
    finally:
        first.send_signal(signal.SIGKILL)
        first.wait(10)
    store = JobStore(settings.db_path)
    log = store.events(job_id=job_id)
    assert log[-1].type == events.SUCCEEDED
    assert delivery_state(get_settings(), job_id).delivered == 0

    receiver.start()
    second = subprocess.Popen([sys.executable, str(script), "serve"], stdout=subprocess.PIPE, env=env)
    try:
        wait_until(lambda: len(receiver.unique()) >= len(log), timeout=60, what="delivery after the restart")
    finally:
        second.send_signal(signal.SIGTERM)
        second.wait(10)
        receiver.stop()
    assert [body_of(r)["data"]["seq"] for r in receiver.unique()] == [e.seq for e in log]
    assert receiver.rejected == 0
    outbox.close()
    store.close()


def test_without_urls_the_notifier_is_idle(settings: Settings) -> None:
    manager = new_manager(settings)
    notifier = Notifier(manager)
    notifier.start()
    notifier.run_once()
    notifier.stop()
    assert not notifier.enabled and not outbox_path(settings.home).exists()
    assert delivery_state(settings, "nope").configured is False


def test_the_secrets_are_redacted(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LORA_MCP_WEBHOOK_SECRET", SECRET)
    monkeypatch.setenv("LORA_MCP_S3_SECRET_ACCESS_KEY", "s3-secret-value")
    monkeypatch.setenv("LORA_MCP_WEBHOOK_URLS", "http://a.example/h, http://b.example/h")
    get_settings.cache_clear()
    settings = get_settings()
    assert {SECRET, "s3-secret-value", "http://a.example/h", "http://b.example/h"} <= set(settings.secret_values())
    assert settings.webhook_urls == ["http://a.example/h", "http://b.example/h"]


def test_a_rebuilt_event_log_is_followed_from_its_start_and_the_follower_settles(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("LORA_MCP_WEBHOOK_URLS", "http://127.0.0.1:9/hook")
    monkeypatch.setenv("LORA_MCP_WEBHOOK_SECRET", SECRET)
    get_settings.cache_clear()
    settings = get_settings()
    settings.ensure_dirs()
    store = JobStore(settings.db_path)
    follower = WebhookFollower(settings, store, Outbox(outbox_path(settings.home)))
    with follower.outbox.tx() as conn:
        follower.outbox.set_cursor(conn, "webhooks", 500)  # a cursor from before jobs.db was rebuilt
    for n in range(3):
        store.add_event(f"train-{n}", events.QUEUED, {"kind": "train"})
    assert follower.take_in() == 3
    assert follower.take_in() == 0, "the cursor moved back to the new log: nothing is taken in twice"
    assert follower.outbox.read_cursor("webhooks") == store.max_event_seq()
