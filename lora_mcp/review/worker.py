"""The review worker: `python -m lora_mcp.review.worker <job_dir>/params.json` (JSON lines, lora_mcp.jobs.worker).

The checkpoint is `<job_dir>/review.sqlite`; a resumed job starts with a copy of the earlier job's checkpoint and
its thread id, so the graph carries on where that one stopped.
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

from pydantic_ai.exceptions import ModelAPIError

from lora_mcp.errors import LoraMcpError
from lora_mcp.jobs.worker import emit, read_params
from lora_mcp.review.params import CHECKPOINT_NAME, ReviewParams
from lora_mcp.review.runner import make_run, run_review
from lora_mcp.settings import get_settings


def main(argv: list[str]) -> int:
    """Run the review of params.json; exit 0 with a result line, 1 with an error line, 130 on SIGINT."""
    job_dir = Path(argv[1]).resolve().parent
    params = ReviewParams.model_validate(read_params(argv))

    def progress(done: int, total: int, message: str) -> None:
        emit("progress", done=done, total=total, message=message)

    try:
        run = make_run(params, get_settings(), job_id=job_dir.name, on_progress=progress)
        outputs = asyncio.run(run_review(run, job_dir / CHECKPOINT_NAME, params.thread_id or job_dir.name))
    except KeyboardInterrupt:
        return 130
    except ModelAPIError as exc:
        emit(
            "error",
            code="llm_unreachable",
            message=f"The review model {params.model!r} could not be reached or refused the request: {exc}",
            hint="Check LORA_MCP_OPENAI_BASE_URL / LORA_MCP_REVIEW_MODEL, then call review_captions again: it "
            "resumes and does not ask again about captions already reviewed.",
        )
        return 1
    except LoraMcpError as exc:
        emit("error", code=exc.code, message=exc.message, hint=exc.hint or "Fix the arguments and review again.")
        return 1
    emit("result", outputs=outputs)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv))
