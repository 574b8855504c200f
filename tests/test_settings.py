"""Settings: defaults, and every LORA_MCP_* variable parsed from the environment."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from pydantic import ValidationError

from lora_mcp.settings import Settings, default_home, get_settings


@pytest.fixture
def bare_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """No LORA_MCP_* variable at all; XDG_STATE_HOME points into tmp_path. Returns that state base."""
    monkeypatch.delenv("LORA_MCP_HOME")
    monkeypatch.delenv("LORA_MCP_ROOTS")
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "xdg"))
    return tmp_path / "xdg"


def test_defaults(bare_env: Path) -> None:
    s = Settings()
    assert s.home == default_home().resolve()
    if sys.platform == "linux":
        assert s.home == (bare_env / "lora-mcp").resolve()
    assert s.roots == [s.home / "workspace"]
    assert s.gpus == ["0"]
    assert s.caption_backend == "joycaption"
    assert s.ollama_url == "http://127.0.0.1:11434"
    assert s.http_token is None
    assert s.allowed_hosts == []
    assert s.ai_toolkit_dir is None
    assert s.jobs_dir == s.home / "jobs"
    assert s.db_path == s.home / "jobs.db"
    assert s.trainer_python() == Path(sys.executable)


def test_home_without_xdg_falls_back_to_local_state(bare_env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("XDG_STATE_HOME")
    if sys.platform == "linux":
        assert Settings().home == (Path.home() / ".local" / "state" / "lora-mcp").resolve()


def test_roots_split_on_pathsep(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    a, b = tmp_path / "a", tmp_path / "b c"
    monkeypatch.setenv("LORA_MCP_ROOTS", f"{a}{os.pathsep}{os.pathsep} {os.pathsep}{b}")
    assert Settings().roots == [a.resolve(), b.resolve()]


def test_roots_resolved_and_expanded(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("LORA_MCP_ROOTS", f"~/data{os.pathsep}{tmp_path}/x/../y")
    assert Settings().roots == [tmp_path.resolve() / "data", tmp_path.resolve() / "y"]


def test_empty_roots_means_the_default_workspace(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LORA_MCP_ROOTS", "")
    s = Settings()
    assert s.roots == [s.home / "workspace"]


@pytest.mark.parametrize(
    ("raw", "expected"),
    [("0", ["0"]), ("0,1", ["0", "1"]), (" 0 , 1 ,, 3 ", ["0", "1", "3"]), ("", [])],
)
def test_gpus(monkeypatch: pytest.MonkeyPatch, raw: str, expected: list[str]) -> None:
    monkeypatch.setenv("LORA_MCP_GPUS", raw)
    assert Settings().gpus == expected


def test_allowed_hosts(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LORA_MCP_ALLOWED_HOSTS", "lora-trainer:8765, gpu-box:*")
    assert Settings().allowed_hosts == ["lora-trainer:8765", "gpu-box:*"]


def test_scalars_from_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("LORA_MCP_CAPTION_BACKEND", "ollama")
    monkeypatch.setenv("LORA_MCP_HTTP_TOKEN", "s3cret")
    monkeypatch.setenv("LORA_MCP_OPENAI_BASE_URL", "http://127.0.0.1:8000/v1")
    monkeypatch.setenv("LORA_MCP_REVIEW_MODEL", "qwen3")
    monkeypatch.setenv("lora_mcp_joycaption_model", "/models/joy")  # names are case-insensitive
    s = Settings()
    assert (s.caption_backend, s.http_token, s.review_model) == ("ollama", "s3cret", "qwen3")
    assert s.openai_base_url == "http://127.0.0.1:8000/v1"
    assert s.joycaption_model == "/models/joy"


def test_bad_value_names_the_field(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LORA_MCP_CAPTION_BACKEND", "gpt")
    with pytest.raises(ValidationError, match="caption_backend"):
        Settings()


def test_unknown_variables_are_ignored(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LORA_MCP_NO_SUCH_THING", "1")
    Settings()


def test_tilde_in_tool_paths_is_expanded(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("LORA_MCP_AI_TOOLKIT_DIR", "~/ai-toolkit")
    monkeypatch.setenv("LORA_MCP_COMFYUI_LORAS_DIR", "~/ComfyUI/models/loras")
    s = Settings()
    assert s.ai_toolkit_dir == tmp_path / "ai-toolkit"
    assert s.comfyui_loras_dir == tmp_path / "ComfyUI" / "models" / "loras"


def test_trainer_python_prefers_the_toolkit_venv(tmp_path: Path) -> None:
    toolkit = tmp_path / "ai-toolkit"
    (toolkit / "venv" / "bin").mkdir(parents=True)
    assert Settings(ai_toolkit_dir=toolkit).trainer_python() == Path(sys.executable)
    (toolkit / "venv" / "bin" / "python").touch()
    assert Settings(ai_toolkit_dir=toolkit).trainer_python() == toolkit / "venv" / "bin" / "python"
    explicit = tmp_path / "py"
    assert Settings(ai_toolkit_dir=toolkit, ai_toolkit_python=explicit).trainer_python() == explicit


def test_ensure_dirs_creates_state_and_default_workspace_only(bare_env: Path, tmp_path: Path) -> None:
    s = Settings()
    s.ensure_dirs()
    assert s.jobs_dir.is_dir() and (s.home / "workspace").is_dir()
    user_root = tmp_path / "mine"
    Settings(roots=[user_root]).ensure_dirs()
    assert not user_root.exists()  # a configured root that is missing is reported, never invented


def test_settings_are_frozen() -> None:
    with pytest.raises(ValidationError):
        Settings().http_token = "x"  # type: ignore[misc]


def test_get_settings_reads_once(monkeypatch: pytest.MonkeyPatch) -> None:
    first = get_settings()
    monkeypatch.setenv("LORA_MCP_GPUS", "5")
    assert get_settings() is first
    get_settings.cache_clear()
    assert get_settings().gpus == ["5"]


def test_cli_reports_a_bad_variable_without_a_traceback() -> None:
    env = {**os.environ, "LORA_MCP_CAPTION_BACKEND": "gpt"}
    proc = subprocess.run(
        [sys.executable, "-m", "lora_mcp", "doctor"], env=env, capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 2
    assert "LORA_MCP_* environment variable" in proc.stderr and "caption_backend" in proc.stderr
    assert "Traceback" not in proc.stderr
