"""The supervisor: log capture to a file, exit codes, signal forwarding, independence from its parent."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from lora_mcp.jobs.supervisor import CHILD_PID_NAME, EXIT_CODE_NAME, LOG_NAME


def supervise(job_dir: Path, *command: str) -> subprocess.Popen[bytes]:
    job_dir.mkdir(parents=True, exist_ok=True)
    return subprocess.Popen(
        [sys.executable, "-m", "lora_mcp.jobs.supervisor", str(job_dir), str(job_dir), "--", *command],
        start_new_session=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )


def wait_for(path: Path, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        assert time.monotonic() < deadline, f"{path} never appeared"
        time.sleep(0.02)


def test_merges_output_and_records_exit_code(tmp_path: Path) -> None:
    code = "import sys; print('out'); print('err', file=sys.stderr); sys.exit(3)"
    proc = supervise(tmp_path, sys.executable, "-c", code)
    assert proc.wait(20) == 1
    assert sorted((tmp_path / LOG_NAME).read_text().split()) == ["err", "out"]
    record = json.loads((tmp_path / EXIT_CODE_NAME).read_text())
    assert record["returncode"] == 3 and record["finished_at"] >= record["started_at"]


def test_missing_program_is_recorded_not_raised(tmp_path: Path) -> None:
    proc = supervise(tmp_path, str(tmp_path / "no-such-program"))
    proc.wait(20)
    assert json.loads((tmp_path / EXIT_CODE_NAME).read_text())["returncode"] == 127
    assert "could not start" in (tmp_path / LOG_NAME).read_text()


def test_sigint_to_supervisor_reaches_the_child_group(tmp_path: Path) -> None:
    code = (
        "import signal, sys, time\n"
        "print('ready', flush=True)\n"
        "try:\n    time.sleep(60)\nexcept KeyboardInterrupt:\n    print('Job stopped', flush=True)\n"
    )
    proc = supervise(tmp_path, sys.executable, "-c", code)
    wait_for(tmp_path / CHILD_PID_NAME)
    deadline = time.monotonic() + 20
    while "ready" not in (tmp_path / LOG_NAME).read_text():
        assert time.monotonic() < deadline
        time.sleep(0.02)
    os.kill(proc.pid, signal.SIGINT)
    proc.wait(20)
    assert "Job stopped" in (tmp_path / LOG_NAME).read_text()
    assert json.loads((tmp_path / EXIT_CODE_NAME).read_text())["returncode"] == 0


def test_child_never_blocks_without_a_reader(tmp_path: Path) -> None:
    # 20 MB of output, nobody reading: with a pipe this would stall; with a file it just finishes.
    code = "import sys\nline = 'x' * 99 + '\\n'\nfor _ in range(200_000):\n    sys.stdout.write(line)\n"
    proc = supervise(tmp_path, sys.executable, "-c", code)
    assert proc.wait(60) == 0
    assert (tmp_path / LOG_NAME).stat().st_size == 20_000_000


def test_outcome_survives_the_supervisors_parent(tmp_path: Path) -> None:
    """A launcher that dies right after starting the supervisor does not take the job with it."""
    launcher = (
        "import subprocess, sys\n"
        f"subprocess.Popen([sys.executable, '-m', 'lora_mcp.jobs.supervisor', {str(tmp_path)!r}, {str(tmp_path)!r},"
        " '--', sys.executable, '-c', 'import time; time.sleep(1); print(\"done\")'], start_new_session=True)\n"
        "import os; os._exit(0)\n"
    )
    subprocess.run([sys.executable, "-c", launcher], check=True, timeout=30)
    wait_for(tmp_path / EXIT_CODE_NAME)
    assert json.loads((tmp_path / EXIT_CODE_NAME).read_text())["returncode"] == 0
    assert "done" in (tmp_path / LOG_NAME).read_text()
