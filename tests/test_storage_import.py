"""import_dataset against a real S3 server (weed mini on 127.0.0.1): download, unchanged-file skipping, conflicts,
the size limit, a large import as a job; hostile keys through a fake client (weed itself normalises `..` away)."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any, BinaryIO

import pytest
from jobs_fixtures import wait_final
from mcp import Client
from storage_fixtures import S3Server, weed_server

from lora_mcp.assembly import open_manager
from lora_mcp.errors import InvalidInput, PathNotAllowed
from lora_mcp.jobs.models import JobKind, JobState
from lora_mcp.server.app import build_server
from lora_mcp.settings import Settings, get_settings
from lora_mcp.storage import importer
from lora_mcp.storage.importer import plan_import, run_import, safe_relative
from lora_mcp.storage.service import import_dataset


@pytest.fixture(scope="module")
def s3(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Server]:
    with weed_server(tmp_path_factory.mktemp("weed"), bucket=None) as server:
        yield server


@pytest.fixture
def bucket(monkeypatch: pytest.MonkeyPatch, s3: S3Server, shared_images: Path) -> str:
    """A fresh bucket holding a small dataset under `set/`: two images with captions, a nested one, a README."""
    name = f"i-{uuid.uuid4().hex[:12]}"
    client = s3.client()
    client.create_bucket(Bucket=name)
    images = sorted(p for p in shared_images.iterdir() if p.suffix == ".png")[:3]
    for i, image in enumerate(images):
        key = f"set/img{i}.png" if i < 2 else f"set/more/img{i}.png"
        client.put_object(Bucket=name, Key=key, Body=image.read_bytes())
        client.put_object(Bucket=name, Key=key.rsplit(".", 1)[0] + ".txt", Body=f"photo {i}".encode())
    client.put_object(Bucket=name, Key="set/README.md", Body=b"not a dataset file")
    client.put_object(Bucket=name, Key="other/x.txt", Body=b"outside the prefix")
    for key, value in s3.env(name).items():
        monkeypatch.setenv(key, value)
    get_settings.cache_clear()
    return name


def test_import_downloads_then_skips_unchanged_files(settings: Settings, bucket: str, root: Path) -> None:
    manager = open_manager(get_settings())
    first = import_dataset(manager, f"s3://{bucket}/set", "imported")
    assert first.job_id is None
    assert sorted(first.downloaded) == [
        "img0.png",
        "img0.txt",
        "img1.png",
        "img1.txt",
        "more/img2.png",
        "more/img2.txt",
    ]
    assert first.ignored == 1 and not first.refused_keys and not first.conflicts
    assert (root / "imported" / "img0.txt").read_text() == "photo 0"
    assert not list((root / "imported").rglob(".*.tmp")), "no temp file left behind"

    (root / "imported" / "img1.txt").write_text("edited by hand")
    second = import_dataset(manager, f"s3://{bucket}/set/", str(root / "imported"))
    assert second.downloaded == [] and second.unchanged == 5
    assert second.conflicts == ["img1.txt"] and (root / "imported" / "img1.txt").read_text() == "edited by hand"


def test_the_size_limit_stops_before_any_download(
    monkeypatch: pytest.MonkeyPatch, s3: S3Server, bucket: str, root: Path
) -> None:
    s3.client().put_object(Bucket=bucket, Key="set/huge.png", Body=os.urandom(2 << 20))
    monkeypatch.setenv("LORA_MCP_S3_IMPORT_MAX_MB", "1")
    get_settings.cache_clear()
    with pytest.raises(InvalidInput, match="more than the limit of 1 MiB") as info:
        import_dataset(open_manager(get_settings()), f"s3://{bucket}/set", "limited")
    assert "LORA_MCP_S3_IMPORT_MAX_MB" in str(info.value)
    assert not (root / "limited").exists() or not any((root / "limited").iterdir())


def test_the_folder_must_lie_inside_the_roots(bucket: str, tmp_path: Path) -> None:
    with pytest.raises(PathNotAllowed):
        import_dataset(open_manager(get_settings()), f"s3://{bucket}/set", str(tmp_path / "elsewhere"))
    with pytest.raises(InvalidInput, match="not an s3:// location"):
        import_dataset(open_manager(get_settings()), "http://example.com/set", "x")


def test_a_symlink_in_the_folder_that_leads_out_is_refused(bucket: str, root: Path, tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (root / "linked").mkdir()
    (root / "linked" / "more").symlink_to(outside)
    result = import_dataset(open_manager(get_settings()), f"s3://{bucket}/set", "linked")
    assert sorted(result.refused_keys) == ["set/more/img2.png", "set/more/img2.txt"]
    assert list(outside.iterdir()) == []


def test_a_large_import_runs_as_a_job(monkeypatch: pytest.MonkeyPatch, bucket: str, root: Path) -> None:
    monkeypatch.setattr(importer, "INLINE_MAX_FILES", 2)
    manager = open_manager(get_settings())
    queued = import_dataset(manager, f"s3://{bucket}/set", "big")
    assert queued.job_id is not None and "wait_for_job" in queued.next_step
    job = wait_final(manager, queued.job_id)
    assert job.kind == JobKind.IMPORT and job.state == JobState.SUCCEEDED, manager.tail(job.id, 30)
    assert len(job.outputs["downloaded"]) == 6 and job.progress.step == 6
    assert (root / "big" / "more" / "img2.txt").read_text() == "photo 2"


class FakeS3:
    """A fake of the boto3 client calls the importer makes, listing whatever keys a test names (S3 allows any)."""

    def __init__(self, objects: dict[str, bytes]) -> None:
        self.objects = objects

    def get_paginator(self, name: str) -> Any:
        objects = self.objects

        class Paginator:
            def paginate(self, Bucket: str, Prefix: str) -> list[dict[str, Any]]:
                keys = [k for k in objects if k.startswith(Prefix)]
                return [{"Contents": [{"Key": k, "Size": len(objects[k]), "ETag": '"x-1"'} for k in keys]}]

        return Paginator()

    def download_fileobj(self, bucket: str, key: str, fh: BinaryIO) -> None:
        fh.write(self.objects[key])

    def head_object(self, Bucket: str, Key: str) -> dict[str, Any]:
        return {"Metadata": {}}


def test_hostile_keys_are_refused_and_nothing_lands_outside(settings: Settings, root: Path) -> None:
    hostile = [
        "set/../escape.txt",
        "set/../../etc/cron.d/x.txt",
        "set//abs.txt",
        "set/a/../../b.txt",
        "set/./dot.txt",
        "set/c:\\win.txt",
        "set/C:/drive.txt",
        "set/back\\slash.txt",
    ]
    objects = {key: b"evil" for key in hostile} | {"set/fine.txt": b"ok"}
    client = FakeS3(objects)
    plan = plan_import(settings, "s3://bucket/set", "dest", client=client)
    assert sorted(plan.refused) == sorted(hostile)
    result = run_import(settings, plan, client=client)
    assert result.downloaded == ["fine.txt"]
    written = sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())
    assert written == ["dest/fine.txt"]


@pytest.mark.parametrize(
    ("key", "expected"),
    [("p/a.png", "a.png"), ("p/sub/a.png", "sub/a.png"), ("p/..", None), ("p//x", None), ("p/a/./b", None)],
)
def test_safe_relative(key: str, expected: str | None) -> None:
    assert safe_relative(key, "p/") == expected


@pytest.mark.anyio
async def test_import_dataset_tool(bucket: str, root: Path) -> None:
    async with Client(build_server(get_settings())) as client:
        result = await client.call_tool("import_dataset", {"source": f"s3://{bucket}/set", "folder": "via_tool"})
        assert not result.is_error, result.content
        assert result.structured_content is not None and len(result.structured_content["downloaded"]) == 6
        refused = await client.call_tool("import_dataset", {"source": f"s3://{bucket}/set", "folder": "/etc"})
        assert refused.is_error
    assert (root / "via_tool" / "img0.txt").read_text() == "photo 0"


def test_keys_into_the_state_folder_are_refused(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """A root that holds LORA_MCP_HOME: an import into that root may not write lora-mcp's state."""
    monkeypatch.setenv("LORA_MCP_HOME", str(tmp_path / "state"))
    monkeypatch.setenv("LORA_MCP_ROOTS", str(tmp_path))
    get_settings.cache_clear()
    settings = get_settings()
    settings.ensure_dirs()
    objects = {"set/state/jobs/train-1/config.yaml": b"job: x", "set/state/notes.txt": b"x", "set/ok.txt": b"ok"}
    client = FakeS3(objects)
    plan = plan_import(settings, "s3://bucket/set", str(tmp_path), client=client)
    assert sorted(plan.refused) == ["set/state/jobs/train-1/config.yaml", "set/state/notes.txt"]
    assert run_import(settings, plan, client=client).downloaded == ["ok.txt"]
    assert not (tmp_path / "state" / "notes.txt").exists()
