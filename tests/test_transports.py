"""The real transports, each a `lora-mcp serve` subprocess: stdio, streamable HTTP, SSE, and HTTP behind a token."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import httpx2
import pytest
from mcp import Client, StdioServerParameters
from mcp.client.sse import sse_client
from mcp.client.streamable_http import streamable_http_client

from lora_mcp.errors import InvalidInput
from lora_mcp.server.http import check_bind, is_loopback, transport_security_for, uvicorn_log_config

pytestmark = pytest.mark.anyio

TOKEN = "test-token-0123456789abcdef"
START_TIMEOUT = 30.0


def server_env(home: Path, root: Path, **extra: str) -> dict[str, str]:
    """This process's environment without any LORA_MCP_* value, plus a private state dir and root."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("LORA_MCP_")}
    env.update(LORA_MCP_HOME=str(home), LORA_MCP_ROOTS=str(root), PYTHONUNBUFFERED="1", **extra)
    return env


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class HttpServer:
    """A running `lora-mcp serve` over HTTP."""

    proc: subprocess.Popen[bytes]
    port: int
    root: Path
    stderr_path: Path

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def stderr(self) -> str:
        return self.stderr_path.read_text(errors="replace")


def stop(proc: subprocess.Popen[bytes]) -> None:
    """Terminate, then kill: a test never leaves a server behind."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)


def start_http(tmp: Path, transport: str, host: str = "127.0.0.1", **env: str) -> HttpServer:
    """Start a server and wait until /healthz answers; fail with its stderr if it dies first."""
    root = tmp / "root"
    root.mkdir(parents=True, exist_ok=True)
    port = free_port()
    stderr_path = tmp / "server.stderr"
    cmd = [sys.executable, "-m", "lora_mcp", "serve", "--transport", transport, "--host", host, "--port", str(port)]
    with stderr_path.open("wb") as err, (tmp / "server.stdout").open("wb") as out:
        proc = subprocess.Popen(
            cmd, env=server_env(tmp / "state", root, **env), stdin=subprocess.DEVNULL, stdout=out, stderr=err
        )
    server = HttpServer(proc, port, root, stderr_path)
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"server exited {proc.returncode} before /healthz answered:\n{server.stderr()}")
        try:
            if httpx.get(f"{server.base}/healthz", timeout=1).status_code == 200:
                return server
        except httpx.TransportError:
            time.sleep(0.1)
    stop(proc)
    pytest.fail(f"/healthz did not answer within {START_TIMEOUT} s:\n{server.stderr()}")


@pytest.fixture(scope="module")
def http_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[HttpServer]:
    server = start_http(tmp_path_factory.mktemp("http"), "streamable-http")
    yield server
    stop(server.proc)


@pytest.fixture(scope="module")
def sse_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[HttpServer]:
    server = start_http(tmp_path_factory.mktemp("sse"), "sse")
    yield server
    stop(server.proc)


@pytest.fixture(scope="module")
def token_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[HttpServer]:
    server = start_http(tmp_path_factory.mktemp("token"), "streamable-http", host="0.0.0.0", LORA_MCP_HTTP_TOKEN=TOKEN)
    yield server
    stop(server.proc)


async def check_session(client: Client, root: Path) -> None:
    """The same conversation on every transport: list tools, run system_check, get a confinement error."""
    names = {t.name for t in (await client.list_tools()).tools}
    assert {"system_check", "inspect_dataset"} <= names
    result = await client.call_tool("system_check", {})
    assert not result.is_error, result.content
    assert result.structured_content["roots"] == [str(root.resolve())]
    refused = await client.call_tool("inspect_dataset", {"folder": "/etc"})
    assert refused.is_error
    assert "outside the allowed roots" in refused.content[0].text  # type: ignore[union-attr]


# --- stdio -------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["legacy", "auto"])
async def test_stdio_sdk_client(tmp_path: Path, mode: str) -> None:
    root = tmp_path / "root"
    root.mkdir(exist_ok=True)
    params = StdioServerParameters(
        command=sys.executable,
        args=["-m", "lora_mcp", "serve"],
        env={"LORA_MCP_HOME": str(tmp_path / "state"), "LORA_MCP_ROOTS": str(root)},
    )
    async with Client(params, mode=mode) as client:
        await check_session(client, root)


def jsonrpc(msg_id: int | None, method: str, params: dict[str, Any] | None = None) -> bytes:
    message: dict[str, Any] = {"jsonrpc": "2.0", "method": method}
    if msg_id is not None:
        message["id"] = msg_id
    if params is not None:
        message["params"] = params
    return json.dumps(message).encode() + b"\n"


def parse_json_line(line: bytes) -> dict[str, Any]:
    try:
        message = json.loads(line)
    except json.JSONDecodeError:
        pytest.fail(f"non-JSON line on stdout: {line!r}")
    assert isinstance(message, dict), line
    return message


def test_stdio_stdout_carries_only_json_rpc(tmp_path: Path) -> None:
    """Drive the server by hand at DEBUG log level; every stdout line must be a JSON-RPC message."""
    root = tmp_path / "root"
    root.mkdir(exist_ok=True)
    init = {"protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "raw", "version": "0"}}
    requests = [
        jsonrpc(1, "initialize", init),
        jsonrpc(None, "notifications/initialized"),
        jsonrpc(2, "tools/list"),
        jsonrpc(3, "tools/call", {"name": "system_check", "arguments": {}}),
        jsonrpc(4, "tools/call", {"name": "inspect_dataset", "arguments": {"folder": "../../etc"}}),
        jsonrpc(5, "no/such/method"),
    ]
    with (tmp_path / "stderr").open("wb") as stderr:
        proc = subprocess.Popen(
            [sys.executable, "-m", "lora_mcp", "--log-level", "DEBUG", "serve"],
            env=server_env(tmp_path / "state", root),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=stderr,
        )
    assert proc.stdin is not None and proc.stdout is not None
    watchdog = threading.Timer(60, proc.kill)  # a hung server fails the test instead of hanging it
    watchdog.start()
    messages: list[dict[str, Any]] = []
    try:
        proc.stdin.write(b"".join(requests))
        proc.stdin.flush()
        # Read until every request is answered; closing stdin earlier would end the server mid-request.
        while {1, 2, 3, 4, 5} - {m.get("id") for m in messages}:
            line = proc.stdout.readline()
            if not line:
                pytest.fail(f"stdout closed early; stderr:\n{(tmp_path / 'stderr').read_text()}")
            messages.append(parse_json_line(line))
        proc.stdin.close()
        assert proc.wait(timeout=30) == 0  # EOF on stdin ends the server cleanly
        messages += [parse_json_line(line) for line in proc.stdout.read().splitlines()]
    finally:
        watchdog.cancel()
        stop(proc)
    err = (tmp_path / "stderr").read_text()
    assert all(m.get("jsonrpc") == "2.0" for m in messages), messages
    by_id = {m["id"]: m for m in messages if "id" in m}
    assert by_id[1]["result"]["serverInfo"]["name"] == "lora-mcp"
    assert "system_check" in {t["name"] for t in by_id[2]["result"]["tools"]}
    assert by_id[3]["result"]["isError"] is False
    assert by_id[4]["result"]["isError"] is True
    assert "error" in by_id[5]
    assert "DEBUG" in err  # the logs went to stderr


NOISY_SERVER = """
import os, subprocess, sys
from lora_mcp.server.app import build_server

server = build_server()


@server.tool()
def noisy() -> str:
    \"\"\"Write to stdout the ways careless code does.\"\"\"
    print("print() from a tool")
    sys.stdout.flush()
    os.write(1, b"os.write(1) from a tool\\n")
    subprocess.run(["echo", "a child process writing to its inherited stdout"], check=True)
    return "done"


server.run()
"""


def test_stdio_stray_output_from_tools_never_reaches_the_wire(tmp_path: Path) -> None:
    """The SDK moves fd 1 to stderr while serving: prints, raw writes and children cannot corrupt the protocol."""
    root = tmp_path / "root"
    root.mkdir(exist_ok=True)
    requests = [
        jsonrpc(
            1,
            "initialize",
            {"protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "r", "version": "0"}},
        ),
        jsonrpc(None, "notifications/initialized"),
        jsonrpc(2, "tools/call", {"name": "noisy", "arguments": {}}),
    ]
    with (tmp_path / "stderr").open("wb") as stderr:
        proc = subprocess.Popen(
            [sys.executable, "-c", NOISY_SERVER],
            env=server_env(tmp_path / "state", root),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=stderr,
        )
    assert proc.stdin is not None and proc.stdout is not None
    watchdog = threading.Timer(60, proc.kill)
    watchdog.start()
    try:
        proc.stdin.write(b"".join(requests))
        proc.stdin.flush()
        messages = [parse_json_line(proc.stdout.readline()), parse_json_line(proc.stdout.readline())]
        proc.stdin.close()
        proc.wait(timeout=30)
        messages += [parse_json_line(line) for line in proc.stdout.read().splitlines()]
    finally:
        watchdog.cancel()
        stop(proc)
    assert messages[1]["result"]["content"][0]["text"] == "done"
    err = (tmp_path / "stderr").read_text()
    assert "print() from a tool" in err and "os.write(1)" in err and "a child process" in err


# --- streamable HTTP on loopback -----------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["legacy", "auto"])
async def test_streamable_http_sdk_client(http_server: HttpServer, mode: str) -> None:
    async with Client(f"{http_server.base}/mcp", mode=mode) as client:
        await check_session(client, http_server.root)


def test_healthz(http_server: HttpServer) -> None:
    reply = httpx.get(f"{http_server.base}/healthz")
    assert reply.status_code == 200
    assert reply.json()["status"] == "ok"
    assert reply.json()["transport"] == "streamable-http"


INIT_BODY = {
    "jsonrpc": "2.0",
    "id": 1,
    "method": "initialize",
    "params": {"protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "t", "version": "0"}},
}
MCP_HEADERS = {"Accept": "application/json, text/event-stream", "Content-Type": "application/json"}


def test_loopback_rejects_foreign_host_header(http_server: HttpServer) -> None:
    """DNS rebinding: a page on evil.example resolving to 127.0.0.1 sends its own Host header."""
    reply = httpx.post(
        f"{http_server.base}/mcp", json=INIT_BODY, headers={**MCP_HEADERS, "Host": f"evil.example:{http_server.port}"}
    )
    assert reply.status_code == 421


def test_loopback_rejects_foreign_origin(http_server: HttpServer) -> None:
    reply = httpx.post(
        f"{http_server.base}/mcp", json=INIT_BODY, headers={**MCP_HEADERS, "Origin": "http://evil.example"}
    )
    assert reply.status_code == 403


def test_loopback_accepts_own_host_header(http_server: HttpServer) -> None:
    reply = httpx.post(f"{http_server.base}/mcp", json=INIT_BODY, headers=MCP_HEADERS)
    assert reply.status_code == 200, reply.text


def test_http_logs_go_to_stderr_not_stdout(http_server: HttpServer) -> None:
    handlers = uvicorn_log_config()["handlers"]
    assert {h["stream"] for h in handlers.values()} == {"ext://sys.stderr"}
    httpx.get(f"{http_server.base}/healthz")
    assert "/healthz" in http_server.stderr()  # the access log is on, and on stderr
    assert http_server.stderr_path.with_name("server.stdout").read_bytes() == b""


# --- SSE ---------------------------------------------------------------------------------------------------------


async def test_sse_sdk_client(sse_server: HttpServer) -> None:
    async with Client(sse_client(f"{sse_server.base}/sse"), mode="legacy") as client:
        await check_session(client, sse_server.root)


def test_sse_healthz(sse_server: HttpServer) -> None:
    assert httpx.get(f"{sse_server.base}/healthz").json()["transport"] == "sse"


# --- off loopback: a token is mandatory ---------------------------------------------------------------------------


def test_refuses_non_loopback_without_token(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "lora_mcp", "serve", "--transport", "streamable-http", "--host", "0.0.0.0"],
        env=server_env(tmp_path / "state", tmp_path),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode != 0
    assert "Refusing to listen on 0.0.0.0 without a token" in proc.stderr
    assert "LORA_MCP_HTTP_TOKEN" in proc.stderr
    assert proc.stdout == ""
    assert not (tmp_path / "state").exists()  # refused before anything was created


def test_token_server_healthz_is_open(token_server: HttpServer) -> None:
    assert httpx.get(f"{token_server.base}/healthz").status_code == 200


@pytest.mark.parametrize(
    "auth",
    [None, "Bearer wrong-token", f"Basic {TOKEN}", f"Bearer {TOKEN}x", "Bearer", TOKEN],
    ids=["none", "wrong", "basic", "longer", "empty", "no-scheme"],
)
def test_token_server_refuses_bad_credentials(token_server: HttpServer, auth: str | None) -> None:
    headers = dict(MCP_HEADERS)
    if auth is not None:
        headers["Authorization"] = auth
    reply = httpx.post(f"{token_server.base}/mcp", json=INIT_BODY, headers=headers)
    assert reply.status_code == 401
    assert "LORA_MCP_HTTP_TOKEN" in reply.json()["message"]
    assert reply.headers["www-authenticate"].startswith("Bearer")


def test_token_server_refuses_get_without_token(token_server: HttpServer) -> None:
    assert httpx.get(f"{token_server.base}/mcp").status_code == 401
    assert httpx.get(f"{token_server.base}/anything").status_code == 401


def test_token_server_accepts_right_token(token_server: HttpServer) -> None:
    headers = {**MCP_HEADERS, "Authorization": f"bearer {TOKEN}"}  # the scheme is case-insensitive
    reply = httpx.post(f"{token_server.base}/mcp", json=INIT_BODY, headers=headers)
    assert reply.status_code == 200, reply.text


async def test_token_server_sdk_client_with_header(token_server: HttpServer) -> None:
    async with (
        httpx2.AsyncClient(headers={"Authorization": f"Bearer {TOKEN}"}, timeout=30) as http,
        Client(streamable_http_client(f"{token_server.base}/mcp", http_client=http)) as client,
    ):
        await check_session(client, token_server.root)


async def test_token_server_sdk_client_without_header_fails(token_server: HttpServer) -> None:
    refused_before = token_server.stderr().count('"POST /mcp HTTP/1.1" 401')
    with pytest.raises(Exception):  # noqa: B017 - the SDK wraps the 401 in an ExceptionGroup of MCPError
        async with Client(f"{token_server.base}/mcp", mode="legacy") as client:
            await client.list_tools()
    assert token_server.stderr().count('"POST /mcp HTTP/1.1" 401') > refused_before


def test_sse_loopback_rejects_foreign_host_header(sse_server: HttpServer) -> None:
    reply = httpx.get(f"{sse_server.base}/sse", headers={"Host": f"evil.example:{sse_server.port}"})
    assert reply.status_code == 421


# --- the pieces, without a process ---------------------------------------------------------------------------------


@pytest.mark.parametrize("host", ["127.0.0.1", "127.0.0.2", "localhost", "LOCALHOST", "::1", "[::1]"])
def test_loopback_hosts_get_host_checks(host: str) -> None:
    assert is_loopback(host)
    security = transport_security_for(host, ["proxy.lan:443"])
    assert security.enable_dns_rebinding_protection
    assert {"127.0.0.1:*", "localhost:*", "[::1]:*", "proxy.lan:443"} <= set(security.allowed_hosts)
    assert "http://evil.example" not in security.allowed_origins
    if host == "127.0.0.2":
        assert "127.0.0.2:*" in security.allowed_hosts


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "192.168.1.5", "gpu-box"])
def test_other_hosts_need_a_token(host: str) -> None:
    assert not is_loopback(host)
    with pytest.raises(InvalidInput, match="LORA_MCP_HTTP_TOKEN"):
        check_bind(host, None)
    with pytest.raises(InvalidInput):
        check_bind(host, "")
    check_bind(host, TOKEN)
    assert not transport_security_for(host, []).enable_dns_rebinding_protection
    assert transport_security_for(host, ["gpu-box:8765"]).allowed_hosts == ["gpu-box:8765"]
