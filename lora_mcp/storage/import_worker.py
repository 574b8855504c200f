"""The `import` job's worker: `python -m lora_mcp.storage.import_worker <job_dir>/params.json` (JSON lines)."""

from __future__ import annotations

import sys

from lora_mcp.errors import LoraMcpError
from lora_mcp.jobs.worker import emit, read_params
from lora_mcp.settings import get_settings
from lora_mcp.storage.importer import plan_import, run_import


def main(argv: list[str]) -> int:
    """Plan and run the import, printing progress and the result."""
    params = read_params(argv)
    settings = get_settings()
    try:
        plan = plan_import(settings, params["source"], params["folder"])
        result = run_import(
            settings, plan, lambda done, total, rel: emit("progress", done=done, total=total, message=rel)
        )
    except LoraMcpError as exc:
        emit("error", code=exc.code, message=exc.message, hint=exc.hint or "Read job_logs for details.")
        return 1
    except KeyboardInterrupt:  # cancel: the file in hand was dropped by its atomic write
        return 130
    emit("result", outputs=result.model_dump(mode="json"))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
