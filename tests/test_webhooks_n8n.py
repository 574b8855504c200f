"""The n8n workflow in docs/: Webhook -> Verify signature (Code node) -> Message, and the Code node's JavaScript run
in Node against requests signed by lora-mcp's own signer: a good one passes; tampered, stale, foreign are refused."""

from __future__ import annotations

import json
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
from webhook_fixtures import SECRET

from lora_mcp.jobs.store import JobEvent
from lora_mcp.notify.webhooks import message_id, payload, sign_headers

WORKFLOW = Path(__file__).resolve().parents[1] / "docs" / "n8n-webhook-workflow.json"
HARNESS = """
const fs = require('fs');
const input = JSON.parse(fs.readFileSync(0, 'utf8'));
const AsyncFunction = Object.getPrototypeOf(async function () {}).constructor;
const node = new AsyncFunction('$input', '$env', 'require', input.code);
const context = { helpers: { getBinaryDataBuffer: async () => Buffer.from(input.body, 'utf8') } };
const items = { all: () => [{ json: { headers: input.headers, body: JSON.parse(input.body) } }] };
node.call(context, items, input.env, require)
  .then((out) => console.log(JSON.stringify({ out })))
  .catch((err) => console.log(JSON.stringify({ error: err.message })));
"""


def workflow() -> dict[str, Any]:
    return dict(json.loads(WORKFLOW.read_text()))


def test_the_workflow_wires_webhook_to_verification_to_message() -> None:
    flow = workflow()
    nodes = {n["name"]: n for n in flow["nodes"]}
    assert nodes["Webhook"]["type"] == "n8n-nodes-base.webhook"
    assert nodes["Webhook"]["parameters"]["options"]["rawBody"] is True, "the signature covers the raw body"
    assert nodes["Verify signature"]["type"] == "n8n-nodes-base.code"
    assert flow["connections"]["Webhook"]["main"][0][0]["node"] == "Verify signature"
    assert flow["connections"]["Verify signature"]["main"][0][0]["node"] == "Message"


def run_node(body: str, headers: dict[str, str], secret: str = SECRET) -> dict[str, Any]:
    code = next(n for n in workflow()["nodes"] if n["name"] == "Verify signature")["parameters"]["jsCode"]
    stdin = json.dumps({"code": code, "body": body, "headers": headers, "env": {"LORA_MCP_WEBHOOK_SECRET": secret}})
    node = shutil.which("node")
    assert node is not None
    done = subprocess.run([node, "-e", HARNESS], input=stdin, capture_output=True, text=True, timeout=30, check=True)
    return dict(json.loads(done.stdout))


@pytest.mark.skipif(shutil.which("node") is None, reason="Node.js runs n8n's Code node")
def test_the_code_node_accepts_signed_events_and_refuses_the_rest() -> None:
    event = JobEvent(7, "train-1", "job.failed", {"error": {"code": "oom", "hint": "lower the batch"}}, time.time())
    body = payload(event)
    headers = sign_headers(SECRET, message_id(event), body, time.time())
    good = run_node(body, headers)
    assert good.get("out") == [{"json": {"webhook_id": "evt_7_train-1", **json.loads(body)}}], good

    tampered = run_node(body.replace("oom", "ok!"), headers)
    assert "does not match" in tampered["error"]
    foreign = run_node(body, headers, secret="whsec_" + "QUJD" * 8)
    assert "does not match" in foreign["error"]
    stale = sign_headers(SECRET, message_id(event), body, time.time() - 3600)
    assert "5 minutes" in run_node(body, stale)["error"]


def test_the_docs_show_the_same_workflow() -> None:
    text = (WORKFLOW.parent / "storage-and-webhooks.md").read_text()
    shown = text.rsplit("```json\n", 1)[1].split("```", 1)[0]
    assert json.loads(shown) == workflow()
