"""A persistent cache of what decoding each image found, so that an unchanged folder is not decoded again.

inspect_dataset decodes every pixel (~100 images/s), and generate_training_config and start_training inspect the same
folder minutes apart. What one decode leaves (`ImageFacts` or `DecodeFailure`, ~0.5 KB) is kept per folder in
`<home>/cache/dataset_facts/<sha256 of the folder's resolved path>.json` and reused for a file whose size,
mtime_ns, inode and ctime_ns are all unchanged:

- Inode and ctime catch what size and mtime miss: a file replaced by another of the same size with its mtime
  restored (`cp -p`, `tar x`, `rsync -t`), or a symlink pointed elsewhere. No program can set ctime.
- A file modified less than RACY_NS before it was looked at is decoded but not stored: a second write within the
  same file-system timestamp tick would keep its mtime and go unnoticed (git's "racily clean" entries).
- A cache file records the folder and the decoder's signature (images.decoder_signature: lora-mcp's decode
  version, Pillow's version and pixel limit); one written for another, or that does not validate as this format,
  is ignored. It is JSON checked by pydantic: nothing read from disk is unpickled or evaluated.
- Saving keeps only the images present in that inspection; at most `max_folders` files are kept, the least
  recently used deleted. Writes are atomic (fsutil), and a cache that cannot be written is skipped, not an error.

Captions are not cached: they are small, and their text changes the report.
"""

from __future__ import annotations

import base64
import contextlib
import dataclasses
import hashlib
import os
import time
from pathlib import Path
from typing import TYPE_CHECKING, Final, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from lora_mcp.dataset.facts import THUMB_BYTES, DecodeFailure, ImageFacts, ImageStats
from lora_mcp.fsutil import write_text_atomic

if TYPE_CHECKING:
    from lora_mcp.settings import Settings

MAX_FOLDERS = 64
"""Folders whose facts are kept; ~0.5 MB per 1,000 images each."""
RACY_NS = 2_000_000_000
"""Files modified this recently are not stored (covers coarse timestamps: 2 s on FAT, ~4 ms on ext4)."""
STALE_TMP_NS = 3600 * 1_000_000_000
"""A temp file this old was left by a killed writer and is deleted."""
_FORMAT: Final = "lora-mcp dataset facts"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class _StoredStats(_Strict):
    luma_mean: float = Field(ge=0, le=255)
    luma_std: float = Field(ge=0, le=255)
    luma_p01: int = Field(ge=0, le=255)
    luma_p99: int = Field(ge=0, le=255)
    sharpness: float = Field(ge=0)


class _StoredFacts(_Strict):
    width: int = Field(gt=0)
    height: int = Field(gt=0)
    format: str
    mode: str
    exif_orientation: int | None
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    thumb: str = Field(pattern=rf"^[A-Za-z0-9+/]{{{THUMB_BYTES * 4 // 3}}}$")
    """Base64 of THUMB_BYTES bytes (a multiple of 3, so no padding)."""
    stats: _StoredStats | None


class _StoredFailure(_Strict):
    kind: Literal["empty", "too_large", "corrupt"]
    detail: str


class _Entry(_Strict):
    size: int
    mtime_ns: int
    ino: int
    ctime_ns: int
    result: _StoredFacts | _StoredFailure


class _CacheFile(_Strict):
    format: Literal["lora-mcp dataset facts"]
    version: Literal[1]
    folder: str
    decoder: str
    images: dict[str, _Entry]


def _is_utf8(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _stamp(st: os.stat_result) -> tuple[int, int, int, int]:
    return st.st_size, st.st_mtime_ns, st.st_ino, st.st_ctime_ns


def _to_result(stored: _StoredFacts | _StoredFailure) -> ImageFacts | DecodeFailure:
    if isinstance(stored, _StoredFailure):
        return DecodeFailure(stored.kind, stored.detail)
    thumb = base64.b64decode(stored.thumb, validate=True)
    stats = ImageStats(**stored.stats.model_dump()) if stored.stats is not None else None
    return ImageFacts(
        stored.width, stored.height, stored.format, stored.mode, stored.exif_orientation, stored.sha256, thumb, stats
    )


def _to_stored(result: ImageFacts | DecodeFailure) -> _StoredFacts | _StoredFailure:
    if isinstance(result, DecodeFailure):
        return _StoredFailure(kind=result.kind, detail=result.detail)
    return _StoredFacts(
        width=result.width,
        height=result.height,
        format=result.format,
        mode=result.mode,
        exif_orientation=result.exif_orientation,
        sha256=result.sha256,
        thumb=base64.b64encode(result.thumb).decode("ascii"),
        stats=_StoredStats(**dataclasses.asdict(result.stats)) if result.stats is not None else None,
    )


class FolderFacts:
    """One folder's cached facts during one inspection: `get` or `put` each image, then `save` once."""

    def __init__(self, cache: FactsCache, path: Path, folder: str, decoder: str, old: dict[str, _Entry]) -> None:
        self._cache, self._path, self._folder, self._decoder = cache, path, folder, decoder
        self._old = old
        self._kept: dict[str, _Entry] = {}
        self._added = False

    def get(self, name: str, st: os.stat_result) -> ImageFacts | DecodeFailure | None:
        """The cached result for image `name` (relative to the folder) if its stat still matches, else None."""
        entry = self._old.get(name)
        if entry is None or (entry.size, entry.mtime_ns, entry.ino, entry.ctime_ns) != _stamp(st):
            return None
        self._kept[name] = entry
        return _to_result(entry.result)

    def put(self, name: str, st: os.stat_result, result: ImageFacts | DecodeFailure) -> None:
        """Record what decoding `name` found; `st` must be its stat taken before decoding."""
        if time.time_ns() - st.st_mtime_ns < RACY_NS:
            return
        texts = [name, self._folder, result.detail if isinstance(result, DecodeFailure) else ""]
        if not all(_is_utf8(text) for text in texts):
            return  # pydantic writes a lone surrogate (an undecodable file name) as U+FFFD: it would read back changed
        size, mtime_ns, ino, ctime_ns = _stamp(st)
        self._kept[name] = _Entry(size=size, mtime_ns=mtime_ns, ino=ino, ctime_ns=ctime_ns, result=_to_stored(result))
        self._added = True

    def save(self) -> None:
        """Write the images seen in this inspection (dropping the others), or mark the file used if none changed."""
        if not self._added and self._kept.keys() == self._old.keys():
            with contextlib.suppress(OSError):
                os.utime(self._path)  # least recently used is evicted first
            return
        images = dict(sorted(self._kept.items()))
        data = _CacheFile(format=_FORMAT, version=1, folder=self._folder, decoder=self._decoder, images=images)
        self._cache.write(self._path, data.model_dump_json())


class FactsCache:
    """Per-folder files of decoded image facts under `directory`, at most `max_folders` of them."""

    def __init__(self, directory: Path, *, max_folders: int = MAX_FOLDERS) -> None:
        self.directory = directory
        self.max_folders = max_folders

    def path_for(self, folder: Path) -> Path:
        """The cache file of `folder` (by its resolved path)."""
        digest = hashlib.sha256(os.path.realpath(folder).encode("utf-8", "surrogateescape")).hexdigest()
        return self.directory / f"{digest[:32]}.json"

    def open(self, folder: Path, decoder: str) -> FolderFacts:
        """Load `folder`'s cached facts; a missing, corrupt or foreign file, or another decoder's, gives none."""
        real = os.path.realpath(folder)
        path = self.path_for(folder)
        try:
            data = _CacheFile.model_validate_json(path.read_bytes())
        except (OSError, ValidationError):
            return FolderFacts(self, path, real, decoder, {})
        fits = data.folder == real and data.decoder == decoder
        return FolderFacts(self, path, real, decoder, data.images if fits else {})

    def write(self, path: Path, text: str) -> None:
        """Write one folder's file atomically, then evict the oldest files over the cap; skipped on any OSError."""
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
            write_text_atomic(path, text)
        except OSError:  # a read-only or full home: the next inspection decodes again, which is merely slower
            return
        self._evict()

    def _evict(self) -> None:
        now = time.time_ns()
        files: list[tuple[int, Path]] = []
        with contextlib.suppress(OSError):
            for entry in os.scandir(self.directory):
                with contextlib.suppress(OSError):  # another process may delete it meanwhile
                    mtime = entry.stat(follow_symlinks=False).st_mtime_ns
                    if entry.name.endswith(".json") and not entry.name.startswith("."):
                        files.append((mtime, Path(entry.path)))
                    elif entry.name.endswith(".tmp") and now - mtime > STALE_TMP_NS:
                        os.unlink(entry.path)
        for _, old in sorted(files, reverse=True)[self.max_folders :]:
            with contextlib.suppress(OSError):
                old.unlink()


def facts_cache_for(settings: Settings) -> FactsCache:
    """The facts cache of this lora-mcp home: `<home>/cache/dataset_facts`."""
    return FactsCache(settings.home / "cache" / "dataset_facts")
