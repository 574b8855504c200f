"""A root that contains lora-mcp's state folder (LORA_MCP_HOME) still keeps agents out of that folder.

The state folder holds jobs.db, notify.db, every job's frozen config and launch record, and the facts cache. An
operator who lists a parent of it as a root (LORA_MCP_ROOTS=$HOME with the default home under ~/.local/state) must
not thereby let an agent's tools read or write it; a root inside it (the default workspace) stays usable.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from jobs_fixtures import JobState, new_manager, use_fake_aitk, wait_final, write_config
from mcp import Client

from lora_mcp.errors import PathNotAllowed
from lora_mcp.paths import confine
from lora_mcp.server.app import build_server
from lora_mcp.server.errors import ERROR_META_KEY
from lora_mcp.settings import Settings, get_settings
from lora_mcp.training.service import start_training


@pytest.fixture
def wide(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Settings:
    """Roots: tmp_path itself (which holds the state folder) and the default workspace inside the state folder."""
    home = tmp_path / "state"
    monkeypatch.setenv("LORA_MCP_HOME", str(home))
    monkeypatch.setenv("LORA_MCP_ROOTS", f"{tmp_path}:{home / 'workspace'}")
    get_settings.cache_clear()
    settings = get_settings()
    settings.ensure_dirs()
    (home / "jobs" / "train-1").mkdir(parents=True)
    (home / "jobs" / "train-1" / "config.yaml").write_text("job: extension\n")
    return settings


def test_the_state_folder_is_fenced_off_inside_a_wider_root(wide: Settings, tmp_path: Path) -> None:
    home = wide.home
    for raw in (home, home / "jobs.db", home / "jobs" / "train-1" / "config.yaml", f"{tmp_path}/x/../state/jobs"):
        with pytest.raises(PathNotAllowed) as info:
            confine(raw, wide.roots)
        assert "state folder" in str(info.value) and "LORA_MCP_HOME" in info.value.hint
    # The rest of the wide root, and the workspace root inside the state folder, stay usable.
    assert confine(tmp_path / "pictures", wide.roots) == tmp_path.resolve() / "pictures"
    assert confine(home / "workspace" / "a.png", wide.roots) == home / "workspace" / "a.png"


def test_a_symlink_into_the_state_folder_is_refused(wide: Settings, tmp_path: Path) -> None:
    (tmp_path / "innocent").symlink_to(wide.home / "jobs")
    with pytest.raises(PathNotAllowed):
        confine(tmp_path / "innocent" / "train-1" / "config.yaml", wide.roots)


def test_no_fence_when_the_state_folder_is_outside_every_root(settings: Settings) -> None:
    assert settings.roots.excluded == ()
    assert confine(settings.roots[0] / "a", settings.roots) == settings.roots[0] / "a"


@pytest.mark.anyio
async def test_tools_refuse_the_state_folder(wide: Settings) -> None:
    async with Client(build_server(wide), mode="legacy") as client:
        inspected = await client.call_tool("inspect_dataset", {"folder": str(wide.home / "jobs" / "train-1")})
        viewed = await client.call_tool("view_dataset", {"folder": str(wide.home)})
    for result in (inspected, viewed):
        assert result.is_error
        assert result.meta is not None
        assert result.meta[ERROR_META_KEY]["code"] == "path_not_allowed", result
        assert "state folder" in result.content[0].text  # type: ignore[union-attr]


def test_a_training_job_runs_when_a_root_contains_the_state_folder(
    wide: Settings, monkeypatch: pytest.MonkeyPatch, shared_images: Path
) -> None:
    settings = use_fake_aitk(monkeypatch)  # keeps the wide roots and home set above
    assert settings.roots.excluded == (settings.home,)
    manager = new_manager(settings)
    job = wait_final(manager, start_training(manager, str(write_config(settings, shared_images))).job_id)
    assert job.state == JobState.SUCCEEDED, manager.tail(job.id, 20)
    assert job.job_dir.is_relative_to(settings.home)  # lora-mcp itself still reads and writes its own state
