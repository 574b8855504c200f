"""`python -m lora_mcp.captioning.worker <job_dir>/params.json`: the caption job's child process.

Speaks the JSON-lines protocol of `lora_mcp.jobs.worker`. On SIGINT it stops between two writes (each caption is
written atomically, so none is partial), prints nothing more and exits 130 without waiting for HTTP requests in
flight.
"""

from __future__ import annotations

import os
import sys
from typing import assert_never

from lora_mcp.captioning.base import CaptionBackendError, Captioner, TemplateCaptioner
from lora_mcp.captioning.params import CaptionJobParams
from lora_mcp.captioning.prompts import template_caption
from lora_mcp.captioning.runner import CaptionRun
from lora_mcp.jobs.worker import emit, read_params
from lora_mcp.settings import get_settings

DEFAULT_BATCH = {"joycaption": 4, "ollama": 4, "openai": 4, "template": 16}


def make_captioner(params: CaptionJobParams) -> Captioner:
    """Load the backend the params name (the model is loaded here, once per job)."""
    batch = params.batch_size or DEFAULT_BATCH[params.backend]
    if params.backend == "template":
        return TemplateCaptioner(template_caption(params.trigger_word), batch_size=batch)
    if params.backend == "joycaption":
        from lora_mcp.captioning.joycaption import JoyCaptioner

        return JoyCaptioner(
            params.model,
            batch_size=batch,
            max_new_tokens=params.max_new_tokens,
            temperature=params.temperature,
            top_p=params.top_p,
            quantization=params.quantization,
            system_prompt=params.system_prompt,
        )
    from lora_mcp.captioning.remote import OllamaCaptioner, OpenAICaptioner, RemotePolicy

    policy = RemotePolicy(
        concurrency=batch,
        timeout_s=params.timeout_s,
        retries=params.retries,
        backoff_s=params.backoff_s,
        max_tokens=params.max_new_tokens,
        temperature=params.temperature,
        top_p=params.top_p,
    )
    if params.backend == "ollama":
        return OllamaCaptioner(params.model, params.system_prompt, policy, host=params.base_url or "")
    if params.backend == "openai":
        api_key = get_settings().openai_api_key  # from the environment, never from params.json
        return OpenAICaptioner(params.model, params.system_prompt, policy, params.base_url or "", api_key)
    assert_never(params.backend)


def main(argv: list[str]) -> int:
    """Run one caption job; the exit code follows the worker protocol."""
    params = CaptionJobParams.model_validate(read_params(argv))
    captioner: Captioner | None = None
    try:
        emit("progress", done=0, total=None, message=f"loading {params.backend} {params.model}")
        captioner = make_captioner(params)
        report = CaptionRun(params, captioner, lambda d, t, m: emit("progress", done=d, total=t, message=m)).run()
        emit("result", outputs=report.outputs(params))
        return 0
    except KeyboardInterrupt:
        sys.stdout.flush()
        os._exit(130)  # skip joining HTTP threads still waiting on the server
    except CaptionBackendError as exc:
        emit("error", code=exc.code, message=exc.message, hint=exc.hint or "Read job_logs for details.")
        return 1
    finally:
        if captioner is not None:
            captioner.close()


if __name__ == "__main__":
    raise SystemExit(main(sys.argv))
