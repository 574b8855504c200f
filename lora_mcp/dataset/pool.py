"""Decode images on several cores: a process pool fed a bounded window of chunks, results in input order.

- Processes, not threads: on 2 cores threads gained 1.0-1.3x (the GIL is held between Pillow's decode, resize and
  hashing calls), processes come near 2x once the pool is up (docs/benchmarks.md).
- Started with "forkserver" where it exists, else "spawn"; never plain fork, because the MCP server runs tools in
  threads and a forked child of a threaded process can inherit a held lock. The fork server preloads once what each
  worker would otherwise import: the decoder (Pillow, numpy) and `lora_mcp.cli`, which the `lora-mcp` script imports
  (multiprocessing runs the parent's main script again in every worker, as `__mp_main__`).
- `lora-mcp serve` calls start_early(): the fork server then does those imports in the background while the server
  starts, in its own process (the server's start-up imports stay mcp and pydantic), and the first inspection finds
  it ready instead of waiting ~0.4 s for it (docs/benchmarks.md). Workers are forked per call and end with it, so
  an idle server holds only the fork server.
- `workers` defaults to the LORA_MCP_INSPECT_WORKERS setting, else one per CPU this process may run on.
- At most `workers * WINDOW_PER_WORKER` chunks of CHUNK paths are in flight: what is held stays flat in the number of
  images, and a result waits for nothing but the chunks before it.
- Each worker copies the caller's Pillow pixel limit, truncated-image setting and images.MEASURE_QUALITY
  (decoder_signature depends on them) and points its stdout at stderr: on stdio, stdout is the MCP wire.
- A worker that dies (a decoder crash) or a chunk that takes over CHUNK_TIMEOUT raises OperationFailed; whatever ends
  the iteration (that, an exception in the caller, a generator closed early) shuts the pool down and ends its
  processes, so a call never hangs on it.

This module imports only the standard library (and lora_mcp's light modules) at the top: the server imports it at
start without Pillow or numpy.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
from collections import deque
from collections.abc import Generator, Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from concurrent.futures.process import BrokenProcessPool
from multiprocessing.context import BaseContext
from multiprocessing.process import BaseProcess
from pathlib import Path

from lora_mcp.dataset.facts import DecodeFailure, ImageFacts
from lora_mcp.errors import OperationFailed

MIN_POOL_IMAGES = 32
"""Below this many images to decode, decoding stays in-process: starting a pool costs more than it saves."""
CHUNK = 8
"""Paths per task: enough to make the round trip negligible next to ~10 ms per image."""
WINDOW_PER_WORKER = 2
"""Chunks in flight per worker: one running, one queued, so no worker waits for the next."""
CHUNK_TIMEOUT = 300.0
"""Seconds one chunk may take (a few images); past it the pool is taken down and the inspection fails."""

PRELOAD = ["lora_mcp.cli", "lora_mcp.dataset.pool", "lora_mcp.dataset.images"]
"""Modules the fork server imports once and every worker inherits (see the module docstring)."""

Result = ImageFacts | DecodeFailure
log = logging.getLogger(__name__)


def default_workers() -> int:
    """The CPUs this process may run on (its affinity mask where the OS has one)."""
    if hasattr(os, "sched_getaffinity"):
        return max(1, len(os.sched_getaffinity(0)))
    return max(1, os.cpu_count() or 1)


def configured_workers() -> int:
    """Decoder processes for an inspection: the LORA_MCP_INSPECT_WORKERS setting, else one per CPU."""
    from lora_mcp.settings import get_settings  # here, not at the top: workers import this module and need no settings

    return get_settings().inspect_workers or default_workers()


def start_early() -> None:
    """Start the fork server now, in the background, when inspections will use a pool; returns at once.

    The fork server imports Pillow and numpy in its own process; nothing heavy is imported here.
    """
    if configured_workers() > 1 and "forkserver" in multiprocessing.get_all_start_methods():
        from multiprocessing import forkserver

        _context()  # sets the preload list, which only counts before the fork server starts
        forkserver.ensure_running()


def decode_in_pool(paths: Sequence[Path], workers: int) -> Generator[Result, None, None]:
    """decode_image of each path, in the same order, computed by `workers` processes."""
    from PIL import Image, ImageFile

    from lora_mcp.dataset import images

    # as the caller's decoder_signature has them
    settings = (Image.MAX_IMAGE_PIXELS, ImageFile.LOAD_TRUNCATED_IMAGES, images.MEASURE_QUALITY)
    executor = ProcessPoolExecutor(
        max_workers=workers, mp_context=_context(), initializer=_start_worker, initargs=settings
    )
    log.debug("decoding %d images in %d worker processes", len(paths), workers)
    pending: deque[Future[list[Result]]] = deque()
    chunks = (list(paths[i : i + CHUNK]) for i in range(0, len(paths), CHUNK))
    finished = False
    try:
        for chunk in chunks:
            pending.append(executor.submit(_decode_chunk, chunk))
            if len(pending) >= workers * WINDOW_PER_WORKER:
                yield from _result(pending.popleft())
        while pending:
            yield from _result(pending.popleft())
        finished = True
    finally:
        processes = list((getattr(executor, "_processes", None) or {}).values())  # shutdown forgets them
        executor.shutdown(wait=finished, cancel_futures=True)
        if not finished:
            _end_workers(processes)


def _result(future: Future[list[Result]]) -> list[Result]:
    try:
        return future.result(timeout=CHUNK_TIMEOUT)
    except BrokenProcessPool as exc:
        raise OperationFailed(
            "An image decoder process died while inspecting the folder (a crash in Pillow on some file).",
            hint="Call inspect_dataset again; if it fails again, move recently added images out of the folder "
            "and inspect them in smaller groups to find the file that crashes the decoder.",
        ) from exc
    except FutureTimeout as exc:
        raise OperationFailed(
            f"Decoding a group of {CHUNK} images took over {CHUNK_TIMEOUT:.0f} s; the inspection was stopped.",
            hint="Check that the folder is on a responsive disk (not a stalled network mount), then call "
            "inspect_dataset again.",
        ) from exc


def _end_workers(processes: list[BaseProcess]) -> None:
    """Terminate workers still running a chunk nobody will read (shutdown(wait=False) lets them finish it).

    The executor keeps its processes in a private attribute: there is no public way before Python 3.14's
    terminate_workers().
    """
    for process in processes:
        if process.is_alive():
            process.terminate()


def _context() -> BaseContext:
    if "forkserver" in multiprocessing.get_all_start_methods():
        context = multiprocessing.get_context("forkserver")
        context.set_forkserver_preload(PRELOAD)
        return context
    return multiprocessing.get_context("spawn")


def _start_worker(max_image_pixels: int | None, load_truncated: bool, measure_quality: bool) -> None:
    os.dup2(2, 1)  # anything printed goes to stderr, never onto the MCP wire
    from PIL import Image, ImageFile

    from lora_mcp.dataset import images

    Image.MAX_IMAGE_PIXELS = max_image_pixels
    ImageFile.LOAD_TRUNCATED_IMAGES = load_truncated
    images.MEASURE_QUALITY = measure_quality


def _decode_chunk(paths: list[Path]) -> list[Result]:
    from lora_mcp.dataset.images import decode_image

    return [decode_image(path) for path in paths]
