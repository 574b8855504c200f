"""Secrets stay with the server: the trainer's environment is built from an allow-list, and log views redact.

A trainer runs a config an agent wrote, and whatever it prints comes back to the agent through `job_logs`. So the
child never inherits the server's environment (which holds `LORA_MCP_HTTP_TOKEN`, LLM API keys, cloud credentials);
it gets the variables a trainer legitimately needs, plus the names the operator adds with
`LORA_MCP_TRAINER_ENV_PASSTHROUGH`. Anything shown to an agent from a log or an error goes through `Redactor`,
which replaces the value of every known secret (`HF_TOKEN` included: the trainer does get that one).

Standard library only.
"""

from __future__ import annotations

import fnmatch
import os
import re
from collections.abc import Iterable, Mapping

TRAINER_ENV_ALLOW: tuple[str, ...] = (
    # the process basics: where programs are, who runs them, language and time
    "PATH",
    "HOME",
    "USER",
    "LOGNAME",
    "LANG",
    "LANGUAGE",
    "LC_*",
    "TZ",
    "TMPDIR",
    "TEMP",
    "TMP",
    "SYSTEMROOT",
    "LD_LIBRARY_PATH",
    "XDG_CACHE_HOME",
    # Hugging Face: cache location, offline mode, and the token gated models (Z-Image's adapter repo) need
    "HF_*",
    "HUGGING_FACE_HUB_TOKEN",
    "TRANSFORMERS_*",
    "DIFFUSERS_*",
    "SAFETENSORS_*",
    # the GPU and the numeric libraries
    "CUDA_*",
    "NVIDIA_*",
    "NCCL_*",
    "PYTORCH_*",
    "TORCH_*",
    "TORCHINDUCTOR_*",
    "TRITON_*",
    "OMP_NUM_THREADS",
    "MKL_NUM_THREADS",
    "OPENBLAS_*",
    # AI-Toolkit reads SEED for reproducible runs
    "SEED",
)
"""Environment variable names (fnmatch patterns) a trainer child inherits."""

NEVER_PASSED = ("LORA_MCP_*",)
"""Never handed to a trainer, whatever the passthrough setting says: the server's own settings and secrets."""

SECRET_NAME = re.compile(r"(TOKEN|SECRET|PASSWORD|PASSWD|API_?KEY|ACCESS_KEY|PRIVATE_KEY|CREDENTIALS?)$", re.I)
"""Environment variables whose values are redacted from log views."""

MIN_SECRET_CHARS = 6
"""Shorter values are not redacted: replacing every 'abc' in a log would hide the log, not a secret."""

REDACTED = "[redacted]"


def _matches(name: str, patterns: Iterable[str]) -> bool:
    return any(fnmatch.fnmatchcase(name, p) for p in patterns)


def trainer_env(passthrough: Iterable[str] = (), environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment a trainer child starts with: allow-listed names plus `passthrough`, never LORA_MCP_*."""
    source = os.environ if environ is None else environ
    allowed = (*TRAINER_ENV_ALLOW, *passthrough)
    return {
        name: value
        for name, value in source.items()
        if _matches(name, allowed) and not _matches(name.upper(), NEVER_PASSED)
    }


class Redactor:
    """Replaces the values of known secrets in text shown to an agent."""

    def __init__(self, secrets: Iterable[str | None]) -> None:
        values = {s for s in secrets if s and len(s) >= MIN_SECRET_CHARS}
        # Longest first, so a secret that contains another is replaced whole.
        ordered = sorted(values, key=len, reverse=True)
        self._pattern = re.compile("|".join(re.escape(v) for v in ordered)) if ordered else None

    @classmethod
    def from_environment(cls, extra: Iterable[str | None] = (), environ: Mapping[str, str] | None = None) -> Redactor:
        """Redact `extra` (the server's configured secrets) and every secret-looking environment variable."""
        source = os.environ if environ is None else environ
        found = [value for name, value in source.items() if SECRET_NAME.search(name)]
        return cls([*extra, *found])

    def __call__(self, text: str) -> str:
        if self._pattern is None or not text:
            return text
        return self._pattern.sub(REDACTED, text)

    def lines(self, lines: Iterable[str]) -> list[str]:
        """Each line redacted."""
        return [self(line) for line in lines]
