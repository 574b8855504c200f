"""The dashboard in a real headless Chromium (Debian's `chromium`, driven by Playwright's Python API) against a real
server with the fake trainer: the step rises live, samples appear, the loss chart fills, cancel cancels, and the
token is asked for once. Screenshots land in tests/artifacts/ (or $LORA_MCP_TEST_ARTIFACTS)."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from rest_fixtures import API, start_job, start_rest_server, wait_state
from storage_fixtures import BUCKET, weed_server
from test_transports import TOKEN, HttpServer, free_port, stop
from webhook_fixtures import SECRET, Receiver, body_of

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
if CHROMIUM is None and not os.environ.get("CI"):
    pytest.skip("chromium is not installed (scripts/test.sh installs it)", allow_module_level=True)
sync_api = (
    pytest.importorskip("playwright.sync_api")
    if not os.environ.get("CI")
    else __import__("playwright.sync_api", fromlist=["sync_playwright"])
)

ARTIFACTS = Path(os.environ.get("LORA_MCP_TEST_ARTIFACTS", Path(__file__).parent / "artifacts"))
STEP_DELAY = 0.05  # 20 steps/s: time to watch a run


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[HttpServer]:
    running = start_rest_server(tmp_path_factory.mktemp("dash"), step_delay=STEP_DELAY)
    yield running
    stop(running.proc)


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    assert CHROMIUM, "chromium is missing: scripts/test.sh installs it with apt-get"
    with sync_api.sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        yield launched
        launched.close()


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    context = browser.new_context(viewport={"width": 1366, "height": 900})
    opened = context.new_page()
    errors: list[str] = []
    opened.on("pageerror", lambda exc: errors.append(str(exc)))
    yield opened
    context.close()
    assert not errors, errors


def screenshot(page: Any, name: str) -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    print(f"screenshot: {path}")
    return path


def text_int(page: Any, testid: str) -> int:
    return int(page.get_by_test_id(testid).inner_text() or 0)


def test_job_page_follows_a_run_and_cancels(page: Any, server: HttpServer, shared_images: Path) -> None:
    with httpx.Client(base_url=server.base, timeout=60) as client:
        job_id = start_job(client, server, shared_images, "dash_live", steps=2000)
        page.goto(f"{server.base}/#/jobs/{job_id}")
        page.wait_for_function("() => Number(document.querySelector('[data-testid=step]').textContent) > 0")
        first = text_int(page, "step")
        page.wait_for_function(
            "(n) => Number(document.querySelector('[data-testid=step]').textContent) > n + 20", arg=first
        )
        assert page.get_by_test_id("state").inner_text() == "running"
        page.wait_for_selector("img[data-testid=sample][data-loaded]", timeout=60_000)
        page.wait_for_function("() => Number(document.querySelector('[data-testid=loss-chart]').dataset.points) > 5")
        page.wait_for_function("() => document.querySelector('[data-testid=log]').textContent.length > 0")
        assert "process" in page.get_by_test_id("config").text_content()
        samples_before = page.locator("img[data-testid=sample]").count()
        page.wait_for_function(
            "(n) => document.querySelectorAll('img[data-testid=sample]').length > n", arg=samples_before, timeout=60_000
        )  # a new sample arrives without a reload
        screenshot(page, "job_running")
        page.get_by_test_id("cancel").click()
        page.wait_for_function("() => document.querySelector('[data-testid=state]').textContent === 'cancelled'")
        assert client.get(f"{API}/jobs/{job_id}").json()["state"] == "cancelled"
        assert page.get_by_test_id("resume").is_visible() and not page.get_by_test_id("cancel").is_visible()
        screenshot(page, "job_cancelled")


def test_job_list_shows_state_and_progress(page: Any, server: HttpServer, shared_images: Path) -> None:
    with httpx.Client(base_url=server.base, timeout=60) as client:
        job_id = start_job(client, server, shared_images, "dash_list", steps=100)
        wait_state(client, job_id, {"succeeded"})
    page.goto(f"{server.base}/")
    row = page.locator(f"tr[data-job-id='{job_id}']")
    row.wait_for()
    assert "succeeded" in row.inner_text()
    screenshot(page, "job_list")
    row.click()
    page.wait_for_function("() => document.querySelector('[data-testid=state]').textContent === 'succeeded'")
    assert text_int(page, "step") >= 99 and page.locator("img[data-testid=sample]").count() > 0


def test_phone_layout(browser: Any, server: HttpServer) -> None:
    context = browser.new_context(viewport={"width": 390, "height": 844}, is_mobile=True, device_scale_factor=2)
    phone = context.new_page()
    with httpx.Client(base_url=server.base) as client:
        job_id = client.get(f"{API}/jobs", params={"state": "succeeded"}).json()["jobs"][0]["job_id"]
    phone.goto(f"{server.base}/#/jobs/{job_id}")
    phone.wait_for_function("() => document.querySelector('[data-testid=state]').textContent === 'succeeded'")
    phone.wait_for_selector("img[data-testid=sample][data-loaded]")
    width = phone.evaluate("() => document.documentElement.scrollWidth")
    assert width <= 390, f"the page scrolls sideways on a phone ({width}px)"
    screenshot(phone, "job_phone")
    context.close()


def test_token_is_asked_once_per_tab(browser: Any, tmp_path_factory: pytest.TempPathFactory) -> None:
    server = start_rest_server(tmp_path_factory.mktemp("dash-token"), host="0.0.0.0", LORA_MCP_HTTP_TOKEN=TOKEN)
    try:
        context = browser.new_context()
        page = context.new_page()
        page.goto(f"{server.base}/")
        page.locator("#token-input").fill("wrong")
        page.locator("#token-form button").click()
        page.wait_for_function("() => document.getElementById('token-error').textContent.includes('refused')")
        page.locator("#token-input").fill(TOKEN)
        page.locator("#token-form button").click()
        page.get_by_test_id("job-list").wait_for()
        page.wait_for_function("() => !document.querySelector('.empty').hidden")
        assert page.evaluate("() => sessionStorage.getItem('lora-mcp-token')") == TOKEN
        page.reload()
        page.wait_for_function("() => !document.querySelector('.empty').hidden")
        assert not page.locator("#token-dialog").is_visible()  # kept for the tab: not asked again
        context.close()
    finally:
        stop(server.proc)


def test_job_page_shows_the_upload_and_webhooks(
    browser: Any, tmp_path_factory: pytest.TempPathFactory, shared_images: Path
) -> None:
    receiver = Receiver(port=free_port())
    receiver.start()
    with weed_server(tmp_path_factory.mktemp("dash-weed")) as s3:
        server = start_rest_server(
            tmp_path_factory.mktemp("dash-s3"),
            step_delay=0.01,
            LORA_MCP_UPLOAD_ON_SUCCESS="true",
            LORA_MCP_WEBHOOK_URLS=receiver.url,
            LORA_MCP_WEBHOOK_SECRET=SECRET,
            **s3.env(),
        )
        context = browser.new_context(viewport={"width": 1366, "height": 900})
        try:
            with httpx.Client(base_url=server.base, timeout=60) as client:
                job_id = start_job(client, server, shared_images, "dash_s3", steps=100)
                page = context.new_page()
                page.goto(f"{server.base}/#/jobs/{job_id}")  # opened while it runs: the page asks again after the end
                lora = Path(wait_state(client, job_id, {"succeeded"})["outputs"]["lora_path"])
            link = page.locator("[data-testid=upload] a")
            link.wait_for(timeout=60_000)
            assert link.inner_text() == f"s3://{BUCKET}/loras/dash_s3.safetensors"
            href = link.get_attribute("href")
            assert href and httpx.get(href, timeout=30).content == lora.read_bytes()  # the presigned URL works
            page.wait_for_function(
                "() => /Webhooks: [1-9][0-9]* delivered, 0 pending, 0 failed/"
                ".test(document.querySelector('[data-testid=webhooks]')?.textContent ?? '')",
                timeout=60_000,
            )
            assert any(body_of(r)["type"] == "job.succeeded" for r in receiver.received)
            screenshot(page, "job_uploaded")
        finally:
            context.close()
            stop(server.proc)
            receiver.stop()
