"""Issue 10's HTTP and resource hardening: case-insensitive Host/Origin, idle sessions evicted, a bounded log resource.

The HTTP parts run real `lora-mcp serve` subprocesses on 127.0.0.1 (see test_transports.py); the resource parts an
in-memory client.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import httpx
import pytest
from mcp import Client
from pydantic import ValidationError
from test_transports import INIT_BODY, MCP_HEADERS, TOKEN, HttpServer, start_http, stop

from lora_mcp.jobs.models import JobKind
from lora_mcp.jobs.store import JobStore
from lora_mcp.server.app import build_server
from lora_mcp.server.http import build_http_app, open_sessions
from lora_mcp.server.tools_jobs import RESOURCE_MAX_BYTES
from lora_mcp.settings import Settings, get_settings

pytestmark = pytest.mark.anyio

IDLE = 1.0
"""The idle setting of the evicting server, seconds."""


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(scope="module")
def idle_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[HttpServer]:
    server = start_http(
        tmp_path_factory.mktemp("idle"), "streamable-http", LORA_MCP_HTTP_SESSION_IDLE_SECONDS=str(IDLE)
    )
    yield server
    stop(server.proc)


@pytest.fixture(scope="module")
def sse_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[HttpServer]:
    server = start_http(tmp_path_factory.mktemp("sse"), "sse")
    yield server
    stop(server.proc)


@pytest.fixture(scope="module")
def proxied_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[HttpServer]:
    """Off loopback, with a token and an allowed host name written in mixed case."""
    server = start_http(
        tmp_path_factory.mktemp("proxied"),
        "streamable-http",
        host="0.0.0.0",
        LORA_MCP_HTTP_TOKEN=TOKEN,
        LORA_MCP_ALLOWED_HOSTS="Gpu-Box:*",
    )
    yield server
    stop(server.proc)


def initialize(base: str, **headers: str) -> httpx.Response:
    return httpx.post(f"{base}/mcp", json=INIT_BODY, headers={**MCP_HEADERS, **headers}, timeout=10)


def open_session(base: str) -> str:
    """A fully initialized session's id."""
    reply = initialize(base)
    assert reply.status_code == 200, reply.text
    session_id = reply.headers["mcp-session-id"]
    note = {"jsonrpc": "2.0", "method": "notifications/initialized"}
    assert post(base, session_id, note).status_code == 202
    return session_id


def post(base: str, session_id: str, message: dict[str, object]) -> httpx.Response:
    headers = {**MCP_HEADERS, "mcp-session-id": session_id, "mcp-protocol-version": "2025-11-25"}
    return httpx.post(f"{base}/mcp", json=message, headers=headers, timeout=10)


def list_tools(base: str, session_id: str) -> httpx.Response:
    return post(base, session_id, {"jsonrpc": "2.0", "id": 2, "method": "tools/list"})


def sessions(base: str) -> int:
    count = httpx.get(f"{base}/healthz", timeout=10).json()["sessions"]
    assert isinstance(count, int), count
    return count


def wait_for_sessions(base: str, at_most: int, within: float) -> int:
    deadline = time.monotonic() + within
    while (count := sessions(base)) > at_most and time.monotonic() < deadline:
        time.sleep(0.2)
    return count


# --- Host and Origin are case-insensitive --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "headers",
    [
        {"Host": "LOCALHOST:{port}"},
        {"Host": "LocalHost:{port}"},
        {"Origin": "HTTP://LOCALHOST:{port}"},
        {"Origin": "http://LocalHost:{port}", "Host": "localHOST:{port}"},
    ],
)
def test_loopback_host_and_origin_in_any_case(idle_server: HttpServer, headers: dict[str, str]) -> None:
    reply = initialize(idle_server.base, **{k: v.format(port=idle_server.port) for k, v in headers.items()})
    assert reply.status_code == 200, reply.text


@pytest.mark.parametrize(
    ("headers", "status"),
    [
        ({"Host": "EVIL.example:{port}"}, 421),
        ({"Host": "LOCALHOST.evil.example:{port}"}, 421),
        ({"Origin": "HTTP://EVIL.EXAMPLE"}, 403),
        ({"Origin": "http://Evil.Example:{port}"}, 403),
    ],
)
def test_loopback_foreign_host_and_origin_still_refused(
    idle_server: HttpServer, headers: dict[str, str], status: int
) -> None:
    reply = initialize(idle_server.base, **{k: v.format(port=idle_server.port) for k, v in headers.items()})
    assert reply.status_code == status, reply.text


def test_sse_host_in_any_case(sse_server: HttpServer) -> None:
    headers = {"Host": f"LOCALHOST:{sse_server.port}"}
    with httpx.stream("GET", f"{sse_server.base}/sse", headers=headers, timeout=10) as reply:
        assert reply.status_code == 200
    foreign = httpx.get(f"{sse_server.base}/sse", headers={"Host": f"EVIL.example:{sse_server.port}"}, timeout=10)
    assert foreign.status_code == 421


@pytest.mark.parametrize(
    ("host", "auth", "status"),
    [
        ("GPU-BOX:{port}", f"Bearer {TOKEN}", 200),
        ("gpu-box:{port}", f"Bearer {TOKEN}", 200),
        ("other-box:{port}", f"Bearer {TOKEN}", 421),
        ("GPU-BOX:{port}", None, 401),
        ("GPU-BOX:{port}", "Bearer wrong-token", 401),
    ],
)
def test_allowed_hosts_in_any_case_behind_the_token(
    proxied_server: HttpServer, host: str, auth: str | None, status: int
) -> None:
    headers = {"Host": host.format(port=proxied_server.port)}
    if auth is not None:
        headers["Authorization"] = auth
    assert initialize(proxied_server.base, **headers).status_code == status


# --- idle sessions are evicted -------------------------------------------------------------------------------------


def test_idle_session_is_evicted_and_the_client_can_initialize_again(idle_server: HttpServer) -> None:
    base = idle_server.base
    session_id = open_session(base)
    assert list_tools(base, session_id).status_code == 200
    time.sleep(IDLE + 1.5)
    gone = list_tools(base, session_id)
    assert gone.status_code == 404, gone.text
    assert "Session not found" in gone.text
    fresh = open_session(base)
    assert fresh != session_id
    assert list_tools(base, fresh).status_code == 200


def test_a_session_in_use_is_not_evicted(idle_server: HttpServer) -> None:
    base = idle_server.base
    session_id = open_session(base)
    for _ in range(6):  # 3 s of use, three idle periods, never idle for one
        time.sleep(IDLE / 2)
        assert list_tools(base, session_id).status_code == 200


def test_abandoned_sessions_do_not_accumulate(idle_server: HttpServer) -> None:
    """Clients that initialize and leave without DELETE: the server's session table empties after the idle period."""
    base = idle_server.base
    wait_for_sessions(base, 0, within=IDLE + 5)
    ids, peak = set(), 0
    with httpx.Client(timeout=10) as http:
        for _ in range(40):
            reply = http.post(f"{base}/mcp", json=INIT_BODY, headers=MCP_HEADERS)
            ids.add(reply.headers["mcp-session-id"])
            peak = max(peak, http.get(f"{base}/healthz").json()["sessions"])
    assert len(ids) == 40
    assert peak > 1  # they pile up while fresh (how many depends on the machine's speed: the idle period is 1 s)
    assert wait_for_sessions(base, 0, within=IDLE + 5) == 0
    assert "idle timeout" in idle_server.stderr()  # the SDK's own reaper did it


async def test_default_idle_setting_reaches_the_session_manager(settings: Settings) -> None:
    assert settings.http_session_idle_seconds == 1800
    server = build_server(settings)
    build_http_app(server, "streamable-http", host="127.0.0.1", token=None)
    assert server.session_manager.session_idle_timeout == 1800
    assert open_sessions(server) == 0
    other = build_server(settings)
    build_http_app(other, "streamable-http", host="127.0.0.1", token=None, session_idle_seconds=5)
    assert other.session_manager.session_idle_timeout == 5
    sse_only = build_server(settings)
    build_http_app(sse_only, "sse", host="127.0.0.1", token=None)
    assert open_sessions(sse_only) is None


@pytest.mark.parametrize("value", ["0", "-1", "inf", "nan", "soon"])
def test_idle_setting_must_be_a_positive_finite_number(monkeypatch: pytest.MonkeyPatch, value: str) -> None:
    monkeypatch.setenv("LORA_MCP_HTTP_SESSION_IDLE_SECONDS", value)
    with pytest.raises(ValidationError, match="http_session_idle_seconds"):
        Settings()


def test_sse_session_ends_with_its_stream(sse_server: HttpServer) -> None:
    """SSE has no such leak: a session lives as long as its GET /sse stream, and a client that goes takes it along."""
    base = sse_server.base
    with httpx.stream("GET", f"{base}/sse", timeout=10) as stream:
        lines = stream.iter_lines()
        endpoint = next(line for line in lines if line.startswith("data: "))[len("data: ") :]
        assert "session_id=" in endpoint
        sent = httpx.post(f"{base}{endpoint}", json=INIT_BODY, timeout=10)
        assert sent.status_code == 202, sent.text
    deadline = time.monotonic() + 10
    while (reply := httpx.post(f"{base}{endpoint}", json=INIT_BODY, timeout=10)).status_code == 202:
        assert time.monotonic() < deadline, "the SSE session outlived its stream"
        time.sleep(0.2)
    assert reply.status_code == 404, reply.text


# --- the log resource is bounded and redacted ----------------------------------------------------------------------


def make_job(settings: Settings, log: bytes, config: bytes = b"job:\n  name: x\n") -> str:
    """A finished job whose directory holds `log` as log.txt and `config` as config.yaml."""
    settings.ensure_dirs()
    job_id = "train-20261130-000000-abcdef"
    job_dir = settings.jobs_dir / job_id
    job_dir.mkdir(parents=True)
    (job_dir / "log.txt").write_bytes(log)
    (job_dir / "config.yaml").write_bytes(config)
    store = JobStore(settings.db_path)
    store.insert(id=job_id, kind=JobKind.TRAIN.value, lane_kind="gpu", job_dir=job_dir, state="succeeded")
    store.close()
    return job_id


async def read(settings: Settings, uri: str) -> str:
    async with Client(build_server(settings)) as client:
        result = await client.read_resource(uri)
    return result.contents[0].text  # type: ignore[union-attr]


def numbered_log(size: int) -> bytes:
    lines, total, i = [], 0, 0
    while total < size:
        line = f"step {i:07d} loss 0.{i % 9973:04d} lr 1e-4 some trainer chatter\n".encode()
        lines.append(line)
        total += len(line)
        i += 1
    return b"".join(lines) + b"final line: training done\n"


async def test_large_log_resource_is_a_bounded_tail(settings: Settings) -> None:
    log = numbered_log(5 * 1024 * 1024)
    job_id = make_job(settings, log)
    text = await read(settings, f"lora://jobs/{job_id}/log")
    header, body = text.split("\n", 1)
    assert header.startswith("[Tail of log.txt: the last ") and f"of {len(log):,} bytes" in header
    assert "job_logs" in header
    assert len(body.encode()) <= RESOURCE_MAX_BYTES
    assert len(body.encode()) > RESOURCE_MAX_BYTES - 100  # one partial line dropped, no more
    assert body.endswith("final line: training done\n")
    assert body.startswith("step ") and log.endswith(body.encode())  # starts at a line start
    assert f"the last {len(body.encode()):,} of" in header


async def test_tail_keeps_a_window_that_starts_on_a_line(settings: Settings) -> None:
    line = b"x" * 63 + b"\n"  # 64 bytes: 1 MiB is exactly 16,384 lines
    log = line * (RESOURCE_MAX_BYTES // 64 + 1000)
    text = await read(settings, f"lora://jobs/{make_job(settings, log)}/log")
    assert text.split("\n", 1)[1].encode() == line * (RESOURCE_MAX_BYTES // 64)


async def test_tail_of_progress_bar_repaints_starts_at_a_repaint(settings: Settings) -> None:
    """tqdm repaints with carriage returns only: the window may hold no newline at all."""
    log = b"".join(f"\rlora: {i % 100:3d}%|#### | {i}/400000 [loss: 1.0e-01]".encode() for i in range(40_000))
    text = await read(settings, f"lora://jobs/{make_job(settings, log)}/log")
    header, body = text.split("\n", 1)
    assert "from a line start" in header
    assert body.startswith("lora: ") and log.endswith(body.encode())


async def test_tail_of_one_giant_line_says_it_was_cut(settings: Settings) -> None:
    log = b"y" * (RESOURCE_MAX_BYTES + 5000)
    text = await read(settings, f"lora://jobs/{make_job(settings, log)}/log")
    header, body = text.split("\n", 1)
    assert "cut mid-line" in header and body == "y" * RESOURCE_MAX_BYTES


async def test_small_log_resource_is_whole(settings: Settings) -> None:
    log = "Running 1 job\nstep 1 café\n".encode() + b"\xff broken byte\n"
    text = await read(settings, f"lora://jobs/{make_job(settings, log)}/log")
    assert text == log.decode("utf-8", "replace")


async def test_log_resource_redacts_the_token(monkeypatch: pytest.MonkeyPatch) -> None:
    secret = "s3cr3t-" + "0123456789abcdef" * 4
    monkeypatch.setenv("LORA_MCP_HTTP_TOKEN", secret)
    get_settings.cache_clear()
    settings = get_settings()
    small = make_job(settings, f"start\nAuthorization: Bearer {secret}\nend\n".encode())
    text = await read(settings, f"lora://jobs/{small}/log")
    assert secret not in text and "[redacted]" in text and text.startswith("start\n")

    big_dir = settings.jobs_dir / small
    (big_dir / "log.txt").write_bytes(numbered_log(3 * 1024 * 1024) + f"token={secret}\n".encode())
    text = await read(settings, f"lora://jobs/{small}/log")
    assert text.startswith("[Tail of log.txt") and secret not in text
    assert text.endswith("token=[redacted]\n")


async def test_config_resource_is_whole_and_bounded(settings: Settings) -> None:
    config = b"job: extension\nconfig:\n  name: lora_a\n"
    job_id = make_job(settings, b"", config=config)
    assert await read(settings, f"lora://jobs/{job_id}/config") == config.decode()
    (settings.jobs_dir / job_id / "config.yaml").write_bytes(b"# padding\n" * 200_000 + config)
    text = await read(settings, f"lora://jobs/{job_id}/config")
    header, body = text.split("\n", 1)
    assert header.startswith("[Tail of config.yaml") and len(body.encode()) <= RESOURCE_MAX_BYTES
    assert body.endswith("name: lora_a\n")
