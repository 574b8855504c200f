"""The REST API and the dashboard behind the same rules as MCP: the bearer token off loopback, the Host/Origin checks,
and both HTTP transports serving them; the job manager runs with no MCP session open."""

from __future__ import annotations

import http.client
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from rest_fixtures import API, read_sse, start_job, start_rest_server, wait_state
from test_transports import TOKEN, HttpServer, stop

BEARER = {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture(scope="module")
def token_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[HttpServer]:
    server = start_rest_server(tmp_path_factory.mktemp("rest-token"), host="0.0.0.0", LORA_MCP_HTTP_TOKEN=TOKEN)
    yield server
    stop(server.proc)


@pytest.fixture(scope="module")
def loopback_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[HttpServer]:
    server = start_rest_server(tmp_path_factory.mktemp("rest-loop"))
    yield server
    stop(server.proc)


@pytest.fixture(scope="module")
def sse_transport_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[HttpServer]:
    server = start_rest_server(tmp_path_factory.mktemp("rest-sse"), transport="sse")
    yield server
    stop(server.proc)


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/system"),
        ("GET", "/jobs"),
        ("GET", "/jobs/x/events"),
        ("GET", "/events"),
        ("GET", "/openapi.json"),
        ("POST", "/jobs/train"),
        ("POST", "/jobs/x/cancel"),
    ],
)
@pytest.mark.parametrize("auth", [None, "Bearer wrong-token", f"Basic {TOKEN}"])
def test_off_loopback_every_endpoint_needs_the_token(
    token_server: HttpServer, method: str, path: str, auth: str | None
) -> None:
    headers = {"Authorization": auth} if auth else {}
    reply = httpx.request(method, f"{token_server.base}{API}{path}", headers=headers, json={})
    assert reply.status_code == 401
    assert reply.headers["www-authenticate"].startswith("Bearer")


def test_off_loopback_with_the_token(token_server: HttpServer, shared_images: Path) -> None:
    with httpx.Client(base_url=token_server.base, headers=BEARER, timeout=60) as client:
        assert client.get(f"{API}/system").status_code == 200
        job_id = start_job(client, token_server, shared_images, "token_job")
        with client.stream("GET", f"{API}/jobs/{job_id}/events") as reply:
            kinds = [e.event for e in read_sse(reply)]
        assert kinds[-1] == "job.succeeded"


def test_dashboard_files_are_open_but_hold_no_data(token_server: HttpServer) -> None:
    for path in ("/", "/dashboard/app.js", "/dashboard/app.css"):
        reply = httpx.get(f"{token_server.base}{path}")
        assert reply.status_code == 200, path
    page = httpx.get(f"{token_server.base}/")
    assert "content-security-policy" in page.headers and "<main" in page.text
    assert httpx.post(f"{token_server.base}/").status_code == 401  # only GET/HEAD of the files is open
    for raw in ("/dashboard/../api/v1/jobs", "/dashboard/%2e%2e/api/v1/jobs", "/dashboard/..%2fapi/v1/jobs"):
        conn = http.client.HTTPConnection("127.0.0.1", token_server.port, timeout=10)
        conn.request("GET", raw)  # sent as written: no client-side normalisation of the dots
        reply = conn.getresponse()
        assert reply.status in (401, 404) and b'"jobs"' not in reply.read(), raw
        conn.close()


def test_foreign_host_is_421_on_loopback(loopback_server: HttpServer) -> None:
    for path in (f"{API}/jobs", "/", "/dashboard/app.js"):
        reply = httpx.get(f"{loopback_server.base}{path}", headers={"Host": "evil.example"})
        assert reply.status_code == 421, path
    problem = httpx.get(f"{loopback_server.base}{API}/jobs", headers={"Host": "evil.example:80"}).json()
    assert problem["code"] == "misdirected_request"


def test_foreign_origin_is_403_on_loopback(loopback_server: HttpServer) -> None:
    reply = httpx.post(f"{loopback_server.base}{API}/jobs/x/cancel", headers={"Origin": "http://evil.example"})
    assert reply.status_code == 403 and reply.json()["code"] == "origin_not_allowed"
    own = httpx.get(f"{loopback_server.base}{API}/jobs", headers={"Origin": loopback_server.base})
    assert own.status_code == 200


def test_manager_runs_without_an_mcp_session(loopback_server: HttpServer, shared_images: Path) -> None:
    with httpx.Client(base_url=loopback_server.base, timeout=60) as client:
        job_id = start_job(client, loopback_server, shared_images, "no_session")
        assert wait_state(client, job_id, {"succeeded", "failed", "cancelled"})["state"] == "succeeded"


def test_sse_transport_serves_rest_and_dashboard(sse_transport_server: HttpServer) -> None:
    base = sse_transport_server.base
    assert httpx.get(f"{base}{API}/jobs").json() == {"jobs": []}
    assert httpx.get(f"{base}/").status_code == 200
    assert httpx.get(f"{base}{API}/jobs", headers={"Host": "evil.example"}).status_code == 421
