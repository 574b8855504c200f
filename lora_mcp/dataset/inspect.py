"""PLACEHOLDER: being written (inspect_dataset)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from pydantic import BaseModel


class DatasetReport(BaseModel):
    ready_for_training: bool = False


def inspect_dataset(
    folder: Path,
    *,
    trigger_word: str | None = None,
    resolutions: list[int] | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> DatasetReport:
    raise NotImplementedError
