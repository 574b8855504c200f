"""Settings: the one place defaults live. Every value can be set from the environment (prefix LORA_MCP_)."""

from __future__ import annotations

import os
import sys
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from lora_mcp.paths import Roots


def default_home() -> Path:
    """The per-user state directory (XDG_STATE_HOME on Linux, ~/Library/Application Support on macOS)."""
    if sys.platform == "darwin":
        return Path.home() / "Library" / "Application Support" / "lora-mcp"
    if os.name == "nt":
        return Path(os.environ.get("LOCALAPPDATA", Path.home())) / "lora-mcp"
    base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base) / "lora-mcp"


def _split_paths(value: object) -> object:
    if isinstance(value, str):
        return [p for p in value.split(os.pathsep) if p.strip()]
    return value


class Settings(BaseSettings):
    """Configuration of one lora-mcp server; read from LORA_MCP_* environment variables."""

    model_config = SettingsConfigDict(env_prefix="LORA_MCP_", extra="ignore", frozen=True)

    home: Path = Field(default_factory=default_home)
    """State directory: jobs.db, job directories and the default workspace."""

    roots: Annotated[list[Path], NoDecode] = Field(default_factory=list)
    """Folders an agent may read and write (os.pathsep-separated). Default: `<home>/workspace`."""

    ai_toolkit_dir: Path | None = None
    """Checkout of ostris/ai-toolkit (the folder holding run.py)."""

    ai_toolkit_python: Path | None = None
    """Python that runs AI-Toolkit. Default: `<ai_toolkit_dir>/venv/bin/python` if present, else this Python."""

    caption_backend: Literal["joycaption", "ollama", "openai", "template"] = "joycaption"
    """Default captioning backend."""

    joycaption_model: str = "fancyfeast/llama-joycaption-beta-one-hf-llava"
    """JoyCaption hub id or local folder."""

    ollama_url: str = "http://127.0.0.1:11434"
    """Ollama's base URL."""

    openai_base_url: str | None = None
    """Base URL of an OpenAI-compatible server (vLLM, LM Studio, llama.cpp, Ollama's /v1)."""

    openai_api_key: str | None = None
    """API key for the OpenAI-compatible server, if it needs one."""

    review_model: str | None = None
    """Model name used by the caption reviewer."""

    http_token: str | None = None
    """Bearer token required over HTTP; mandatory when binding a non-loopback address."""

    allowed_hosts: Annotated[list[str], NoDecode] = Field(default_factory=list)
    """Host headers accepted over HTTP (comma-separated, e.g. `lora-trainer:8765`, `gpu-box:*`). Off loopback: only
    these, or any when empty (the token guards). On loopback: these besides 127.0.0.1, localhost and [::1]."""

    http_session_idle_seconds: float = Field(default=1800.0, gt=0, allow_inf_nan=False)
    """Seconds a streamable-HTTP session may go without a request in flight (an open GET stream counts) before the
    server drops it (its memory goes back to the pool new sessions use); the client then gets 404 "Session not
    found" and initializes again."""

    gpus: Annotated[list[str], NoDecode] = Field(default_factory=lambda: ["0"])
    """GPU indices that get a training lane each (comma-separated)."""

    executor: Literal["local", "ray"] = "local"
    """Where job children run: `local` (supervised processes on this machine) or `ray` (Ray Jobs on a cluster)."""

    ray_address: str | None = None
    """With LORA_MCP_EXECUTOR=ray: the Ray cluster's dashboard address, e.g. `http://ray-head:8265`."""

    ray_gpus_per_job: float = Field(default=1.0, ge=0)
    """GPUs a GPU-lane job asks Ray for (`entrypoint_num_gpus`); CPU-lane jobs ask for none. 0 on a CPU-only test
    cluster."""

    ray_poll_interval: float = Field(default=0.5, gt=0, allow_inf_nan=False)
    """Seconds between two reads of a Ray job's status and log (each read is an HTTP call to the dashboard)."""

    comfyui_loras_dir: Path | None = None
    """ComfyUI's models/loras folder, for export."""

    comfyui_url: str | None = None
    """ComfyUI's base URL (e.g. `http://comfyui:8188`), asked to free GPU memory before GPU jobs."""

    free_comfyui_before_gpu_jobs: bool = False
    """Before a GPU job starts, ask ComfyUI (`POST /free`) to unload its models and free memory."""

    free_ollama_before_gpu_jobs: bool = False
    """Before a GPU job starts, ask Ollama to unload every loaded model (`keep_alive: 0`)."""

    gpu_handoff_timeout: float = Field(default=3.0, gt=0, le=30)
    """Seconds to wait for each ComfyUI/Ollama request of the GPU hand-off (the whole hand-off stops after 8 s)."""

    trainer_env_passthrough: Annotated[list[str], NoDecode] = Field(default_factory=list)
    """Extra environment variable names (comma-separated, `*` patterns allowed) handed to the trainer besides the
    built-in allow-list (PATH, locale, HF_*, CUDA_*, ...). LORA_MCP_* variables are never handed on."""

    allow_remote_uploads: bool = False
    """Let a training config send data off this machine (`save.push_to_hub`, `logging.use_wandb`). Off by default:
    an agent-written config must not publish a LoRA or its samples."""

    inspect_workers: int | None = Field(default=None, ge=1)
    """Processes that decode images in inspect_dataset (and the inspection inside generate_training_config,
    start_training and view_dataset). Unset: one per CPU this server may run on; 1: decode in the server's own process,
    no process pool."""

    s3_endpoint_url: str | None = None
    """S3-compatible endpoint (MinIO `http://minio:9000`, Supabase `https://<ref>.supabase.co/storage/v1/s3`); unset:
    AWS."""

    s3_bucket: str | None = None
    """Bucket that export_lora(destination="s3") and LORA_MCP_UPLOAD_ON_SUCCESS upload to."""

    s3_prefix: str = "loras/"
    """Key prefix for exported LoRAs (`<prefix><name>.safetensors`)."""

    s3_region: str = "us-east-1"
    """Region for request signing (MinIO and SeaweedFS accept us-east-1)."""

    s3_access_key_id: str | None = None
    """Access key; unset: boto3's usual chain (AWS_* variables, ~/.aws, instance role)."""

    s3_secret_access_key: str | None = None
    """Secret key paired with LORA_MCP_S3_ACCESS_KEY_ID (redacted from anything an agent sees)."""

    s3_presign_expiry_seconds: int = Field(default=3600, gt=0, le=604800)
    """Lifetime of the presigned GET URL an S3 export returns (at most 7 days, S3's limit)."""

    s3_multipart_threshold_mb: int = Field(default=16, ge=5)
    """Files at least this big (MiB) are uploaded in parts of this size, several at once (S3's minimum part is 5)."""

    s3_import_max_mb: int = Field(default=10240, gt=0)
    """import_dataset refuses a source holding more than this many MiB to download."""

    upload_on_success: bool = False
    """Export every successful train job's LoRA to S3 automatically (get_job shows where it went)."""

    webhook_urls: Annotated[list[str], NoDecode] = Field(default_factory=list)
    """URLs (comma-separated) that receive signed job events (Standard Webhooks: webhook-id/-timestamp/-signature)."""

    webhook_secret: str | None = None
    """Standard Webhooks signing secret, `whsec_<base64>` (redacted from anything an agent sees)."""

    webhook_progress_every: float = Field(default=30.0, ge=0, allow_inf_nan=False)
    """Seconds between two job.progress webhooks of one job (other events are always sent)."""

    @field_validator("roots", mode="before")
    @classmethod
    def _parse_roots(cls, value: object) -> object:
        return _split_paths(value)

    @field_validator("gpus", "allowed_hosts", "trainer_env_passthrough", "webhook_urls", mode="before")
    @classmethod
    def _parse_gpus(cls, value: object) -> object:
        if isinstance(value, str):
            return [g.strip() for g in value.split(",") if g.strip()]
        return value

    @model_validator(mode="after")
    def _resolve_paths(self) -> Settings:
        home = self.home.expanduser().resolve()
        roots = [r.expanduser().resolve() for r in self.roots] or [home / "workspace"]
        object.__setattr__(self, "home", home)
        # A root that holds the state folder does not open it to agents (lora_mcp.paths.Roots).
        excluded = [home] if any(home.is_relative_to(r) for r in roots) else []
        object.__setattr__(self, "roots", Roots(roots, excluded))
        for name in ("ai_toolkit_dir", "ai_toolkit_python", "comfyui_loras_dir"):
            value = getattr(self, name)
            if value is not None:  # `~/ai-toolkit` from a shell profile or a Claude Desktop config
                object.__setattr__(self, name, value.expanduser())
        return self

    @property
    def jobs_dir(self) -> Path:
        """Where job directories live."""
        return self.home / "jobs"

    @property
    def db_path(self) -> Path:
        """The SQLite job store."""
        return self.home / "jobs.db"

    def secret_values(self) -> list[str]:
        """The secrets this server holds, to be redacted from anything shown to an agent."""
        secrets = (self.http_token, self.openai_api_key, self.s3_secret_access_key, self.webhook_secret)
        # A webhook URL often carries its receiver's token in the path (Slack, Discord, n8n): redacted whole.
        return [s for s in (*secrets, *self.webhook_urls) if s]

    def trainer_python(self) -> Path:
        """The interpreter that runs AI-Toolkit's run.py."""
        if self.ai_toolkit_python is not None:
            return self.ai_toolkit_python
        if self.ai_toolkit_dir is not None:
            for candidate in ("venv/bin/python", ".venv/bin/python", "venv/Scripts/python.exe"):
                path = self.ai_toolkit_dir / candidate
                if path.exists():
                    return path
        return Path(sys.executable)

    def ensure_dirs(self) -> None:
        """Create the state dir and the default workspace (never a user-configured root)."""
        self.home.mkdir(parents=True, exist_ok=True)
        self.jobs_dir.mkdir(parents=True, exist_ok=True)
        default_ws = self.home / "workspace"
        if default_ws in self.roots:
            default_ws.mkdir(parents=True, exist_ok=True)


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings, read once from the environment."""
    return Settings()
