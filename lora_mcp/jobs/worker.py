"""Jobs whose child is one of our own Python workers (caption, review), speaking JSON lines on stdout.

A worker is `python -m <module> <job_dir>/params.json`. It prints one JSON object per line:

    {"event": "progress", "done": 3, "total": 10, "message": "captioned a.png"}
    {"event": "result", "outputs": {...}}                  # once, at the end of a successful run
    {"event": "error", "code": "...", "message": "...", "hint": "..."}   # before exiting non-zero

Anything else it prints (library warnings, tracebacks) is kept as log text. SIGINT must stop it cleanly: finish or
drop the item in hand (never leave a partial file), print nothing more, and exit 130.
"""

from __future__ import annotations

import json
import sys
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lora_mcp.jobs.kinds import LaunchSpec, LogParser, Outcome
from lora_mcp.jobs.models import JobError, JobKind, JobState, Phase, Progress
from lora_mcp.jobs.store import JobRecord
from lora_mcp.settings import Settings


class JsonLinesParser:
    """Progress, result and error from a worker's JSON lines; other lines become the log tail."""

    def __init__(self, max_lines: int = 400) -> None:
        self.progress = Progress(phase=Phase.STARTING)
        self.result: dict[str, Any] | None = None
        self.error: JobError | None = None
        self._tail: deque[str] = deque(maxlen=max_lines)
        self._partial = ""

    def feed(self, chunk: str) -> None:
        lines = (self._partial + chunk).split("\n")
        self._partial = lines.pop()
        for line in lines:
            self._line(line.rstrip("\r"))

    def close(self) -> None:
        if self._partial:
            self._line(self._partial)
            self._partial = ""

    def tail(self, n: int) -> list[str]:
        return list(self._tail)[-n:]

    def _line(self, line: str) -> None:
        if not line.strip():
            return
        self._tail.append(line)
        if not line.startswith("{"):
            return
        try:
            event = json.loads(line)
        except ValueError:
            return
        kind = event.get("event") if isinstance(event, dict) else None
        if kind == "progress":
            self.progress = self.progress.model_copy(
                update={
                    "phase": Phase.WORKING,
                    "step": int(event.get("done", 0)),
                    "total_steps": event.get("total"),
                    "message": str(event.get("message", ""))[:500],
                }
            )
        elif kind == "result":
            self.result = dict(event.get("outputs") or {})
        elif kind == "error":
            self.error = JobError(
                code=str(event.get("code", "worker_error")),
                message=str(event.get("message", "")),
                hint=str(event.get("hint", "Read job_logs for details.")),
            )


def emit(event: str, **fields: Any) -> None:
    """For workers: print one protocol line and flush it."""
    print(json.dumps({"event": event, **fields}, ensure_ascii=False), flush=True)


def read_params(argv: list[str]) -> dict[str, Any]:
    """For workers: the params.json the manager wrote into the job directory."""
    return dict(json.loads(Path(argv[1]).read_text(encoding="utf-8")))


@dataclass(frozen=True)
class WorkerKind:
    """A job kind run by `python -m <module> <job_dir>/params.json`."""

    kind: JobKind
    lane_kind: str
    module: str
    next_steps: Mapping[JobState, str] = field(default_factory=dict)
    """What the agent should call next, per state, where the generic text (jobs.status.NEXT_STEP) does not fit."""

    def status_extras(self, job: JobRecord, outputs: dict[str, Any]) -> dict[str, Any]:
        """Workers report everything in their outputs: no extra status fields."""
        return {}

    def launch_spec(self, job: JobRecord, settings: Settings) -> LaunchSpec:
        return LaunchSpec(
            command=[sys.executable, "-m", self.module, str(job.job_dir / "params.json")], cwd=job.job_dir
        )

    def make_parser(self, job: JobRecord) -> LogParser:
        return JsonLinesParser()

    def outputs(self, job: JobRecord) -> dict[str, Any]:
        return dict(job.outputs)

    def outcome(self, job: JobRecord, returncode: int | None, parser: LogParser, cancel_requested: bool) -> Outcome:
        if not isinstance(parser, JsonLinesParser):
            raise TypeError(f"worker jobs need a JsonLinesParser, got {type(parser).__name__}")
        outputs = parser.result or {}
        if returncode == 0 and parser.result is not None:
            return Outcome(JobState.SUCCEEDED, outputs=outputs)
        if cancel_requested:
            return Outcome(JobState.CANCELLED, outputs=outputs)
        error = parser.error or JobError(
            code="worker_error" if returncode is not None else "lost",
            message=f"The {self.kind.value} worker exited with code {returncode}: "
            + (parser.tail(1)[0] if parser.tail(1) else "no output"),
            hint="Read job_logs for the traceback.",
        )
        return Outcome(JobState.FAILED, error=error, outputs=outputs)
