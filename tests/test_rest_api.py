"""The REST API against a real `lora-mcp serve` process with the fake trainer: every endpoint, errors as problem
details with the MCP codes, confinement, and the event stream (live, to the end, and resumed with Last-Event-ID)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from conftest import SHARED_IMAGES
from jobs_fixtures import wait_until
from mcp import Client
from rest_fixtures import API, config_body, read_sse, start_job, start_rest_server, wait_state
from review_fixtures import make_captioned_folder
from test_transports import HttpServer, stop
from training_fixtures import TRIGGER

PROBLEM_KEYS = {"type", "title", "status", "detail", "code", "retryable"}
FINAL = {"succeeded", "failed", "cancelled"}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[HttpServer]:
    running = start_rest_server(tmp_path_factory.mktemp("rest"))
    yield running
    stop(running.proc)


@pytest.fixture
def client(server: HttpServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.base, timeout=30) as http:
        yield http


@pytest.fixture(scope="module")
def finished_job(server: HttpServer) -> dict[str, Any]:
    """A train job started over REST and run to the end, with the events its stream carried."""
    with httpx.Client(base_url=server.base, timeout=60) as http:
        job_id = start_job(http, server, SHARED_IMAGES, "rest_done", steps=100)
        with http.stream("GET", f"{API}/jobs/{job_id}/events") as reply:
            assert reply.status_code == 200
            assert reply.headers["content-type"].startswith("text/event-stream")
            events = list(read_sse(reply))  # the stream ends after the job's final event
        return {"job_id": job_id, "events": events, "status": http.get(f"{API}/jobs/{job_id}").json()}


def assert_problem(reply: httpx.Response, status: int, code: str) -> dict[str, Any]:
    assert reply.status_code == status, reply.text
    assert reply.headers["content-type"] == "application/problem+json"
    body: dict[str, Any] = reply.json()
    assert set(body) >= PROBLEM_KEYS, body
    assert body["status"] == status and body["code"] == code and body["type"] == f"urn:lora-mcp:problem:{code}"
    return body


def test_system(client: httpx.Client, server: HttpServer) -> None:
    report = client.get(f"{API}/system").json()
    assert report["roots"] == [str(server.root.resolve())] and report["ai_toolkit"]["run_py_found"]


def test_openapi_is_generated_from_the_models(client: httpx.Client) -> None:
    doc = client.get(f"{API}/openapi.json").json()
    assert doc["openapi"] == "3.1.0"
    paths = doc["paths"]
    for path, method in [
        ("/system", "get"),
        ("/datasets/inspect", "post"),
        ("/captions", "post"),
        ("/reviews", "post"),
        ("/reviews/apply", "post"),
        ("/configs", "post"),
        ("/jobs/train", "post"),
        ("/jobs", "get"),
        ("/jobs/{job_id}", "get"),
        ("/jobs/{job_id}/cancel", "post"),
        ("/jobs/{job_id}/resume", "post"),
        ("/jobs/{job_id}/log", "get"),
        ("/jobs/{job_id}/loss", "get"),
        ("/jobs/{job_id}/samples", "get"),
        ("/jobs/{job_id}/samples/{file}", "get"),
        ("/jobs/{job_id}/events", "get"),
    ]:
        assert method in paths[API + path], path
    schemas = doc["components"]["schemas"]
    train = paths[f"{API}/jobs/train"]["post"]
    assert train["requestBody"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/TrainRequest"
    }
    assert set(schemas["TrainRequest"]["properties"]) == {"config_path", "idempotency_key"}
    assert "steps" in schemas["ConfigRequest"]["properties"] and "dry_run" in schemas["ConfigRequest"]["properties"]
    assert schemas["JobStatus"]["properties"]["queue_position"]["description"]
    assert {"kind", "state"} <= {p["name"] for p in paths[f"{API}/jobs"]["get"]["parameters"]}
    assert "ProblemDetails" in schemas


def test_inspect_dataset(client: httpx.Client, server: HttpServer) -> None:
    make_captioned_folder(server.root, {"a.png": f"{TRIGGER}, a cat", "b.png": None}, name="inspect_me")
    reply = client.post(f"{API}/datasets/inspect", json={"folder": "inspect_me", "trigger_word": TRIGGER})
    assert reply.status_code == 200, reply.text
    report = reply.json()
    assert report["image_count"] == 2 and report["captioned_count"] == 1, report
    assert any(p["code"] for p in report["problems"])  # b.png has no caption


@pytest.mark.anyio
async def test_confinement_has_the_mcp_code(server: HttpServer, client: httpx.Client) -> None:
    problem = assert_problem(client.post(f"{API}/datasets/inspect", json={"folder": "/etc"}), 403, "path_not_allowed")
    assert problem["field"] == "folder" and "outside the allowed roots" in problem["detail"] and problem["hint"]
    async with Client(f"{server.base}/mcp") as mcp:
        result = await mcp.call_tool("inspect_dataset", {"folder": "/etc"})
    assert result.is_error
    meta = (result.meta or {})["lora-mcp/error"]
    assert meta["code"] == problem["code"] and meta["message"] == problem["detail"] and meta["hint"] == problem["hint"]
    traversal = client.post(f"{API}/jobs/train", json={"config_path": "../../../etc/passwd"})
    assert_problem(traversal, 403, "path_not_allowed")


def test_problem_details(client: httpx.Client) -> None:
    bad = assert_problem(client.post(f"{API}/jobs/train", json={"config": "x"}), 422, "invalid_input")
    assert bad["retryable"] is False and bad["field"] in ("config_path", "config")
    assert_problem(client.post(f"{API}/jobs/train", content=b"{not json"), 422, "invalid_input")
    assert_problem(client.post(f"{API}/jobs/train", json=[1, 2]), 422, "invalid_input")
    assert_problem(client.get(f"{API}/jobs/train-nope"), 404, "not_found")
    assert_problem(client.get(f"{API}/jobs", params={"state": "sleeping"}), 422, "invalid_input")
    assert_problem(client.get(f"{API}/no/such/route"), 404, "not_found")
    assert_problem(client.delete(f"{API}/jobs"), 405, "method_not_allowed")
    assert_problem(client.get(f"{API}/jobs/train-nope/events"), 404, "not_found")


def test_train_job_stream_sees_steps_and_the_end(finished_job: dict[str, Any]) -> None:
    events, job_id = finished_job["events"], finished_job["job_id"]
    kinds = [e.event for e in events]
    assert kinds[0] == "job.queued" and kinds[-1] == "job.succeeded", kinds
    assert "job.started" in kinds and "job.sample" in kinds and "job.checkpoint" in kinds
    steps = [e.data["data"]["step"] for e in events if e.event == "job.progress"]
    assert len(steps) >= 3 and steps == sorted(steps) and steps[-1] >= 80, steps
    ids = [int(e.id or 0) for e in events]
    assert ids == sorted(ids) and len(set(ids)) == len(ids)
    assert all(e.data["seq"] == int(e.id or 0) and e.data["job_id"] == job_id for e in events)
    assert finished_job["status"]["state"] == "succeeded"


def test_job_reads(client: httpx.Client, finished_job: dict[str, Any]) -> None:
    job_id = finished_job["job_id"]
    log = client.get(f"{API}/jobs/{job_id}/log", params={"tail": 5}).json()
    assert log["job_id"] == job_id and 0 < len(log["lines"]) <= 5
    assert_problem(client.get(f"{API}/jobs/{job_id}/log", params={"tail": 0}), 422, "invalid_input")
    loss = client.get(f"{API}/jobs/{job_id}/loss").json()
    assert len(loss["points"]) >= 10 and all(p["loss"] > 0 for p in loss["points"])
    assert "process" in client.get(f"{API}/jobs/{job_id}/config").text
    listed = client.get(f"{API}/jobs", params={"kind": "train", "state": "succeeded"}).json()["jobs"]
    assert job_id in [j["job_id"] for j in listed]
    assert client.get(f"{API}/jobs", params={"state": "failed"}).json()["jobs"] == []


def test_samples(client: httpx.Client, finished_job: dict[str, Any]) -> None:
    job_id = finished_job["job_id"]
    samples = client.get(f"{API}/jobs/{job_id}/samples").json()["samples"]
    assert samples and samples == sorted(samples, key=lambda s: (s["step"], s["prompt_index"]))
    image = client.get(samples[0]["url"])
    assert image.status_code == 200 and image.headers["content-type"] == "image/jpeg"
    assert image.content[:2] == b"\xff\xd8"
    assert_problem(client.get(f"{API}/jobs/{job_id}/samples/passwd"), 422, "invalid_input")
    assert client.get(f"{API}/jobs/{job_id}/samples/..%2F..%2Fconfig.yaml").status_code in (404, 422)
    assert_problem(client.get(f"{API}/jobs/{job_id}/samples/1__000000999_0.jpg"), 404, "not_found")


def test_reconnect_with_last_event_id_misses_nothing(client: httpx.Client, finished_job: dict[str, Any]) -> None:
    job_id, full = finished_job["job_id"], finished_job["events"]
    cut = full[len(full) // 2]
    with client.stream("GET", f"{API}/jobs/{job_id}/events", headers={"Last-Event-ID": str(cut.id)}) as reply:
        rest = list(read_sse(reply))
    assert [e.id for e in rest] == [e.id for e in full[len(full) // 2 + 1 :]]
    with client.stream("GET", f"{API}/jobs/{job_id}/events", params={"after": cut.id}) as reply:
        assert [e.id for e in read_sse(reply)] == [e.id for e in rest]
    assert_problem(client.get(f"{API}/jobs/{job_id}/events", headers={"Last-Event-ID": "x"}), 422, "invalid_input")


def test_live_reconnect_mid_run(client: httpx.Client, server: HttpServer, shared_images: Path) -> None:
    job_id = start_job(client, server, shared_images, "rest_reconnect", steps=100)
    first: list[Any] = []
    with client.stream("GET", f"{API}/jobs/{job_id}/events") as reply:
        for event in read_sse(reply):
            first.append(event)
            if event.event == "job.progress" and event.data["data"]["step"] >= 10:
                break  # the client goes away mid-run
    seen = first[-1].data["data"]["step"]
    wait_until(  # events are written while nobody listens
        lambda: client.get(f"{API}/jobs/{job_id}").json()["step"] > seen + 5, timeout=60, what="steps while away"
    )
    with client.stream("GET", f"{API}/jobs/{job_id}/events", headers={"Last-Event-ID": str(first[-1].id)}) as reply:
        second = list(read_sse(reply))
    with client.stream("GET", f"{API}/jobs/{job_id}/events") as reply:
        whole = list(read_sse(reply))
    assert [e.id for e in first + second] == [e.id for e in whole]
    assert second[-1].event == "job.succeeded"


def test_idempotency_key_and_all_jobs_stream(client: httpx.Client, server: HttpServer, shared_images: Path) -> None:
    generated = client.post(f"{API}/configs", json=config_body(server, shared_images, "rest_idem", steps=100)).json()
    body = {"config_path": generated["config_path"], "idempotency_key": "k-1"}
    first, again = (
        client.post(f"{API}/jobs/train", json=body).json(),
        client.post(f"{API}/jobs/train", json=body).json(),
    )
    assert first["job_id"] == again["job_id"]
    with client.stream("GET", f"{API}/events", params={"after": 0}) as reply:
        for event in read_sse(reply):
            if event.data["job_id"] == first["job_id"] and event.event in {"job.succeeded", "job.failed"}:
                break
    assert event.event == "job.succeeded"


def test_cancel_then_resume(client: httpx.Client, server: HttpServer, shared_images: Path) -> None:
    job_id = start_job(client, server, shared_images, "rest_cancel", steps=3000)
    wait_state(client, job_id, {"running"})
    assert_problem(client.post(f"{API}/jobs/{job_id}/resume"), 409, "precondition_failed")
    reply = client.post(f"{API}/jobs/{job_id}/cancel")
    assert reply.status_code == 200 and reply.json()["cancel_requested"] is True
    assert wait_state(client, job_id, FINAL)["state"] == "cancelled"
    resumed = client.post(f"{API}/jobs/{job_id}/resume").json()
    assert resumed["resumed_from"] == job_id and resumed["job_id"] != job_id
    client.post(f"{API}/jobs/{resumed['job_id']}/cancel")
    assert wait_state(client, resumed["job_id"], FINAL)["state"] == "cancelled"


def test_configs_dry_run_and_errors(client: httpx.Client, server: HttpServer, shared_images: Path) -> None:
    body = config_body(server, shared_images, "rest_dry", dry_run=True)
    generated = client.post(f"{API}/configs", json=body)
    assert generated.status_code == 200 and not Path(generated.json()["config_path"]).exists()
    bad = assert_problem(client.post(f"{API}/configs", json={**body, "steps": -5}), 422, "invalid_input")
    assert "steps" in bad["detail"]
    assert_problem(client.post(f"{API}/configs", json={**body, "dry_run": "maybe"}), 422, "invalid_input")
    outside = client.post(f"{API}/configs", json={**body, "dataset_folder": "/etc"})
    assert outside.json()["code"] == "path_not_allowed"


def test_captions_review_and_apply(client: httpx.Client, server: HttpServer) -> None:
    folder = make_captioned_folder(server.root, {"a.png": "This image shows a woman", "b.png": None}, name="cap")
    captions = client.post(f"{API}/captions", json={"folder": "cap", "backend": "template", "trigger_word": TRIGGER})
    assert captions.status_code == 200, captions.text
    assert captions.json()["kind"] == "caption"
    assert wait_state(client, captions.json()["job_id"], FINAL)["state"] == "succeeded"
    assert (folder / "b.txt").exists()
    assert_problem(client.post(f"{API}/captions", json={"folder": "cap", "bogus": 1}), 422, "invalid_input")

    review = client.post(f"{API}/reviews", json={"folder": "cap", "trigger_word": TRIGGER, "use_images": False})
    assert review.status_code == 200, review.text
    done = wait_state(client, review.json()["job_id"], FINAL)
    assert done["state"] == "succeeded", done
    review_file = done["outputs"]["details"]["review_file"]
    applied = client.post(f"{API}/reviews/apply", json={"review_file": review_file})
    assert applied.status_code == 200, applied.text
    assert "a.png" in [a["image"] for a in applied.json()["applied"]]
    assert_problem(client.post(f"{API}/reviews/apply", json={"review_file": "/etc/passwd"}), 403, "path_not_allowed")
