"""The result models of inspect_dataset, apart from the code that decodes images.

The MCP server imports these at start-up to declare the tool's output schema; keeping Pillow and numpy out of this
module keeps the server's cold start to mcp + pydantic (see tests/test_server_inmemory.py).
"""

from __future__ import annotations

from pydantic import BaseModel, Field

from lora_mcp.dataset.buckets import ResolutionBuckets
from lora_mcp.dataset.captions import CaptionStatus
from lora_mcp.dataset.problems import Problem


class ImageInfo(BaseModel):
    """Facts about one image file; size fields are None when the file could not be decoded."""

    file: str = Field(description="Path relative to the folder.")
    file_size: int = Field(description="Size in bytes.")
    decoded: bool = Field(description="True when every pixel decoded.")
    width: int | None = Field(default=None, description="Width in pixels after the EXIF rotation (as trained).")
    height: int | None = Field(default=None, description="Height in pixels after the EXIF rotation (as trained).")
    format: str | None = Field(default=None, description="Format Pillow found (JPEG, PNG, WEBP, MPO, ...).")
    mode: str | None = Field(default=None, description="Pillow mode (RGB, RGBA, L, CMYK, I;16, ...).")
    exif_orientation: int | None = Field(default=None, description="EXIF orientation tag (1 = upright), if any.")
    caption_file: str | None = Field(default=None, description="The caption file AI-Toolkit reads, if it exists.")
    caption_status: CaptionStatus = Field(description="ok, missing, empty or not_utf8.")
    caption_chars: int | None = Field(default=None, description="Caption length in characters.")
    has_trigger: bool | None = Field(default=None, description="Whether the caption holds the trigger word.")


class DatasetReport(BaseModel):
    """The result of inspect_dataset: counts, problems with fixes, bucket preview and per-image facts."""

    folder: str = Field(description="The folder inspected.")
    ready_for_training: bool = Field(description="True when no problem has severity error.")
    image_count: int = Field(description="Files with an extension AI-Toolkit reads (.jpg .jpeg .png .webp).")
    usable_image_count: int = Field(description="Images that decoded completely and are within Pillow's limit.")
    captioned_count: int = Field(description="Images with a non-empty UTF-8 caption file.")
    problems: list[Problem] = Field(description="Problems, errors first, each with the files concerned and a fix.")
    buckets: list[ResolutionBuckets] = Field(description="AI-Toolkit's aspect buckets per target resolution.")
    images: list[ImageInfo] = Field(description="Per-image facts, sorted by file.")
    ignored_files: list[str] = Field(description="Other files AI-Toolkit does not read (hidden files not listed).")
    resolutions: list[int] = Field(description="Target resolutions used for the bucket preview.")
    bucket_divisibility: int = Field(description="Bucket sides are multiples of this (16 for Z-Image).")
    caption_ext: str = Field(description="Caption file extension looked for.")
    trigger_word: str | None = Field(description="Trigger word checked in captions, if any.")
