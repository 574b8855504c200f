"""The supervisor: a tiny process between the server and a job's child, so the outcome survives the server.

    python -m lora_mcp.jobs.supervisor JOB_DIR CWD -- COMMAND [ARG...]

It is started in its own session by the manager. It starts COMMAND in a new session of its own (so a cancel can
signal the child's whole process group), with stdout and stderr appended to JOB_DIR/log.txt (a file, never a pipe:
the child can never block on a reader that is slow or gone), writes the child's pid to JOB_DIR/child.pid, and when
the child ends writes JOB_DIR/exit_code.json atomically. SIGINT/SIGTERM sent to the supervisor are forwarded to the
child's group. Only the standard library (and lora_mcp.fsutil, which uses nothing else) is imported here.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from lora_mcp.fsutil import write_text_atomic

LOG_NAME = "log.txt"
CHILD_PID_NAME = "child.pid"
EXIT_CODE_NAME = "exit_code.json"


def run(job_dir: Path, cwd: Path, command: list[str]) -> int:
    """Run `command` to completion under supervision; return its exit code (negative: killed by a signal)."""
    started = time.time()
    child: subprocess.Popen[bytes] | None = None
    pending: list[int] = []

    def forward(signum: int, _frame: object) -> None:
        # Handlers (unlike ignored signals) are reset in the child at exec, so the trainer keeps its own SIGINT.
        if child is None:
            pending.append(signum)
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(child.pid, signum)

    signal.signal(signal.SIGINT, forward)
    signal.signal(signal.SIGTERM, forward)
    with open(job_dir / LOG_NAME, "ab", buffering=0) as log:
        try:
            child = subprocess.Popen(
                command, cwd=cwd, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )
        except OSError as exc:
            log.write(f"lora-mcp supervisor: could not start {command[0]!r}: {exc}\n".encode())
            record = {"returncode": 127, "started_at": started, "finished_at": time.time(), "spawn_error": str(exc)}
            write_text_atomic(job_dir / EXIT_CODE_NAME, json.dumps(record))
            return 127
        write_text_atomic(job_dir / CHILD_PID_NAME, str(child.pid))
        for signum in pending:
            forward(signum, None)
        returncode = child.wait()
    write_text_atomic(
        job_dir / EXIT_CODE_NAME,
        json.dumps({"returncode": returncode, "started_at": started, "finished_at": time.time()}),
    )
    return returncode


def main(argv: list[str]) -> int:
    if len(argv) < 4 or argv[2] != "--":
        print("usage: python -m lora_mcp.jobs.supervisor JOB_DIR CWD -- COMMAND [ARG...]", file=sys.stderr)
        return 2
    returncode = run(Path(argv[0]), Path(argv[1]), argv[3:])
    return 0 if returncode == 0 else 1


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
