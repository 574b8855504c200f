"""import_dataset: copy the images and captions under `s3://bucket/prefix` into a folder inside the roots.

Every key becomes a path relative to the folder; a key that would land outside it (`..`, an absolute key, a
backslash, a symlink in the folder that leads out) is refused and reported, never written. A file already there
with the same content is skipped (compared by the object's `sha256` metadata, else its single-part ETag, which is
the MD5); one with other content is left alone and reported as a conflict. Nothing is downloaded when the new bytes
exceed LORA_MCP_S3_IMPORT_MAX_MB. Each file is written through a temp file and renamed, so a cancelled or failed
import leaves no partial file. Small imports run in the call; large ones run as an `import` job with progress.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path, PurePosixPath
from typing import Any

from pydantic import BaseModel, Field

from lora_mcp.dataset.scan import IMAGE_EXTENSIONS
from lora_mcp.errors import InvalidInput, OperationFailed, PathNotAllowed
from lora_mcp.fsutil import atomic_write
from lora_mcp.paths import confine
from lora_mcp.settings import Settings
from lora_mcp.storage.client import S3Location, s3_client, s3_errors

DATASET_SUFFIXES = frozenset({*IMAGE_EXTENSIONS, ".txt", ".caption"})
MiB = 1 << 20
INLINE_MAX_BYTES = 64 * MiB
"""Imports that download more than this (or more than INLINE_MAX_FILES files) run as a job."""
INLINE_MAX_FILES = 300

Progress = Callable[[int, int, str], None]


@dataclass(frozen=True)
class RemoteFile:
    """One object to import: its key, its path relative to the folder, size and ETag."""

    key: str
    rel: str
    size: int
    etag: str


@dataclass
class ImportPlan:
    """What an import will look at: the dataset objects under the prefix and the refused keys."""

    source: S3Location
    folder: Path
    files: list[RemoteFile] = field(default_factory=list)
    refused: list[str] = field(default_factory=list)
    ignored: int = 0

    @property
    def new_bytes(self) -> int:
        """Bytes of the objects whose local copy is missing or has another size (an upper bound of the download)."""
        return sum(f.size for f in self.files if not _same_size(self.folder / f.rel, f.size))


class ImportResult(BaseModel):
    """What import_dataset did (or, for a job, will do)."""

    source: str
    folder: str
    job_id: str | None = Field(None, description="Set when the import runs as a job: follow it with wait_for_job.")
    downloaded: list[str] = Field(default_factory=list, description="Files written (relative to folder).")
    unchanged: int = Field(0, description="Files skipped because the same content was already there.")
    conflicts: list[str] = Field(
        default_factory=list, description="Files already there with other content: left unchanged, not imported."
    )
    refused_keys: list[str] = Field(
        default_factory=list, description="Keys that would land outside the folder ('..', absolute): not imported."
    )
    ignored: int = Field(0, description="Objects that are neither images nor captions.")
    bytes_downloaded: int = 0
    next_step: str


def safe_relative(key: str, prefix: str) -> str | None:
    """The key's path below `prefix`, or None when it would not stay inside the folder."""
    rel = key[len(prefix) :]
    if not rel or "\\" in rel or "\x00" in rel or rel.startswith("/") or key.startswith("/"):
        return None
    parts = PurePosixPath(rel).parts
    if any(part in ("..", ".", "") for part in rel.split("/")) or (parts and ":" in parts[0]):
        return None
    return rel


def plan_import(settings: Settings, source: str, folder: str, client: Any = None) -> ImportPlan:
    """Confine the folder (creating it), list the source and sort its keys into files, refused and ignored."""
    location = S3Location.parse(source)
    target = confine(folder, settings.roots, what="folder")
    if target.exists() and not target.is_dir():
        raise InvalidInput(f"The folder {folder!r} is a file.", hint="Pass a folder inside the roots.", field="folder")
    prefix = location.key.rstrip("/") + "/" if location.key else ""
    plan = ImportPlan(S3Location(location.bucket, prefix), target)
    client = client or s3_client(settings)
    limit = settings.s3_import_max_mb * MiB
    with s3_errors(f"Listing {location.uri}", settings):
        for page in client.get_paginator("list_objects_v2").paginate(Bucket=location.bucket, Prefix=prefix):
            for obj in page.get("Contents", []):
                _sort(plan, obj, prefix, settings.roots)
            if sum(f.size for f in plan.files) > 4 * limit:  # no need to list a huge bucket to say "too big"
                break
    _check_limit(plan, limit, settings)
    return plan


def _sort(plan: ImportPlan, obj: dict[str, Any], prefix: str, roots: Sequence[Path]) -> None:
    key = str(obj["Key"])
    if key.endswith("/"):
        return  # a "folder" marker
    rel = safe_relative(key, prefix)
    if rel is not None:
        try:  # the roots' own rules too: lengths, '-' names, lora-mcp's state folder inside a root
            resolved = confine(str(plan.folder / rel), roots, what="key")
        except PathNotAllowed:
            resolved = None
        if resolved is None or not resolved.is_relative_to(os.path.realpath(plan.folder)):
            rel = None  # refused by the roots, or a symlink inside the folder leads out
    if rel is None:
        plan.refused.append(key)
    elif PurePosixPath(rel).suffix.lower() in DATASET_SUFFIXES:
        plan.files.append(RemoteFile(key, rel, int(obj.get("Size", 0)), str(obj.get("ETag", "")).strip('"')))
    else:
        plan.ignored += 1


def _check_limit(plan: ImportPlan, limit: int, settings: Settings) -> None:
    if plan.new_bytes > limit:
        raise InvalidInput(
            f"{plan.source.uri} holds {plan.new_bytes / MiB:.0f} MiB of images and captions to download, more than "
            f"the limit of {settings.s3_import_max_mb} MiB (LORA_MCP_S3_IMPORT_MAX_MB); nothing was downloaded.",
            hint="Import a narrower prefix (s3://bucket/prefix/subfolder), or ask the operator to raise "
            "LORA_MCP_S3_IMPORT_MAX_MB.",
            field="source",
        )


def is_large(plan: ImportPlan) -> bool:
    """Whether the import should run as a job instead of in the call."""
    return plan.new_bytes > INLINE_MAX_BYTES or len(plan.files) > INLINE_MAX_FILES


def run_import(
    settings: Settings, plan: ImportPlan, progress: Progress | None = None, client: Any = None
) -> ImportResult:
    """Download the plan's files that are missing; skip identical ones; report conflicts and refused keys."""
    client = client or s3_client(settings)
    result = ImportResult(
        source=plan.source.uri, folder=str(plan.folder), refused_keys=plan.refused, ignored=plan.ignored, next_step=""
    )
    limit = settings.s3_import_max_mb * MiB
    with s3_errors(f"Importing {plan.source.uri}", settings):
        for done, remote in enumerate(plan.files, 1):
            local = plan.folder / remote.rel
            if local.is_file():
                if _same(client, plan.source.bucket, remote, local):
                    result.unchanged += 1
                else:
                    result.conflicts.append(remote.rel)
            else:
                if result.bytes_downloaded + remote.size > limit:
                    raise OperationFailed(
                        f"Stopped importing {plan.source.uri} at the size limit ({settings.s3_import_max_mb} MiB) "
                        f"after {len(result.downloaded)} files; the files written so far are complete.",
                        hint="Import a narrower prefix or raise LORA_MCP_S3_IMPORT_MAX_MB; the files already "
                        "imported are skipped next time.",
                    )
                local.parent.mkdir(parents=True, exist_ok=True)
                atomic_write(local, partial(client.download_fileobj, plan.source.bucket, remote.key))
                result.downloaded.append(remote.rel)
                result.bytes_downloaded += local.stat().st_size
            if progress is not None:
                progress(done, len(plan.files), remote.rel)
    result.next_step = f"inspect_dataset(folder='{plan.folder}') to check the imported images and captions." + (
        " Conflicting files were kept as they are; import into an empty folder to get the remote versions."
        if result.conflicts
        else ""
    )
    return result


def _same_size(local: Path, size: int) -> bool:
    try:
        return local.is_file() and local.stat().st_size == size
    except OSError:
        return False


def _digest(path: Path, algorithm: str) -> str:
    with open(path, "rb") as fh:
        return hashlib.file_digest(fh, algorithm).hexdigest()


def _same(client: Any, bucket: str, remote: RemoteFile, local: Path) -> bool:
    """Whether `local` holds the object's bytes (sha256 metadata, else a single-part ETag, else a download)."""
    if not _same_size(local, remote.size):
        return False
    if remote.etag and "-" not in remote.etag and len(remote.etag) == 32:
        return _digest(local, "md5") == remote.etag.lower()
    sha = client.head_object(Bucket=bucket, Key=remote.key).get("Metadata", {}).get("sha256")
    if sha:
        return bool(_digest(local, "sha256") == sha)
    with tempfile.TemporaryFile() as tmp:
        client.download_fileobj(bucket, remote.key, tmp)
        tmp.seek(0)
        return bool(hashlib.file_digest(tmp, "sha256").hexdigest() == _digest(local, "sha256"))
