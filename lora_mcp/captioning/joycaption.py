"""Backend `joycaption`: a LLaVA checkpoint (JoyCaption beta-one / alpha-two, or any HF LLaVA) run by transformers.

torch and transformers are imported here only, when a caption job starts: the server never loads them.
Traps handled (see docs): one BOS only, left padding for batches, the prompt trimmed from the output, a plain-string
user message (JoyCaption's chat template inserts the image token itself), and in 4-bit the vision tower and
projector stay unquantized.
"""

from __future__ import annotations

import gc
import os
from collections.abc import Sequence
from typing import Any, Literal

from PIL import Image

from lora_mcp.captioning.base import CaptionBackendError, CaptionResult
from lora_mcp.captioning.params import DEFAULT_MAX_NEW_TOKENS, DEFAULT_TEMPERATURE, DEFAULT_TOP_P

Quantization = Literal["none", "nf4"]
_OFFLINE_VARS = ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")


def hub_offline() -> bool:
    """True when HF_HUB_OFFLINE (or TRANSFORMERS_OFFLINE) asks for the local cache only."""
    return any(os.environ.get(k, "").strip().lower() in ("1", "true", "yes", "on") for k in _OFFLINE_VARS)


class JoyCaptioner:
    """A LLaVA captioner: processor and model loaded once, batched greedy or sampled generation."""

    def __init__(
        self,
        model: str,
        *,
        batch_size: int = 4,
        max_new_tokens: int = DEFAULT_MAX_NEW_TOKENS,
        temperature: float = DEFAULT_TEMPERATURE,
        top_p: float = DEFAULT_TOP_P,
        quantization: Quantization = "none",
        system_prompt: str = "You are a helpful image captioner.",
        device: str | None = None,
    ) -> None:
        self.model_id = model
        self.batch_size = batch_size
        self.max_new_tokens = max_new_tokens
        self.temperature = temperature
        self.top_p = top_p
        self.system_prompt = system_prompt
        self.torch = _import_torch()
        self.device = device or ("cuda" if self.torch.cuda.is_available() else "cpu")
        self.dtype = self.torch.bfloat16 if self.device.startswith("cuda") else self.torch.float32
        self.processor, self.model = self._load(quantization)

    def _load(self, quantization: Quantization) -> tuple[Any, Any]:
        from transformers import AutoProcessor

        kwargs: dict[str, Any] = {"local_files_only": hub_offline()}
        try:
            processor = AutoProcessor.from_pretrained(self.model_id, **kwargs)
            # device_map loads the weights straight onto the GPU (no 17 GB detour through RAM).
            load_kwargs: dict[str, Any] = {"dtype": self.dtype, "device_map": self.device, **kwargs}
            if quantization == "nf4":
                load_kwargs["quantization_config"] = _nf4_config(self.torch)
            model = _llava_class().from_pretrained(self.model_id, **load_kwargs)
        except OSError as exc:
            raise _load_error(self.model_id, exc) from exc
        tokenizer = processor.tokenizer
        tokenizer.padding_side = "left"  # right padding makes batched captions differ from single ones
        if tokenizer.pad_token is None:
            tokenizer.pad_token = tokenizer.eos_token
        return processor, model.eval()

    def prompt_text(self, prompt: str) -> str:
        """The chat-templated prompt: a system message and one plain-string user message."""
        convo = [
            {"role": "system", "content": self.system_prompt},
            {"role": "user", "content": prompt.strip()},
        ]
        text = self.processor.apply_chat_template(convo, tokenize=False, add_generation_prompt=True)
        if not isinstance(text, str):
            raise TypeError(f"apply_chat_template returned {type(text).__name__}, expected str")
        return text

    def encode(self, images: Sequence[Image.Image], prompt: str) -> Any:
        """Processor inputs for a batch, on the model's device, pixels in the model's dtype."""
        text = self.prompt_text(prompt)
        bos = self.processor.tokenizer.bos_token
        # The template already wrote BOS; letting the tokenizer add its own gives two, which degrades captions.
        add_special = not (bos and text.startswith(bos))
        inputs = self.processor(
            text=[text] * len(images),
            images=list(images),
            return_tensors="pt",
            padding=True,
            add_special_tokens=add_special,
        ).to(self.device)
        inputs["pixel_values"] = inputs["pixel_values"].to(self.dtype)
        return inputs

    def caption(self, images: Sequence[Image.Image], prompt: str) -> list[CaptionResult]:
        """Caption a batch in one `generate` call."""
        try:
            return self._generate(images, prompt)
        except self.torch.OutOfMemoryError as exc:
            self.torch.cuda.empty_cache()
            if len(images) > 1:
                raise  # the runner retries the images one at a time
            raise CaptionBackendError(
                f"Out of GPU memory captioning one image with {self.model_id}.",
                code="oom",
                hint="Free the GPU (stop other jobs, ComfyUI, Ollama) or caption with quantization='nf4'.",
            ) from exc

    def _generate(self, images: Sequence[Image.Image], prompt: str) -> list[CaptionResult]:
        inputs = self.encode(images, prompt)
        sampling = self.temperature > 0
        with self.torch.inference_mode():
            out = self.model.generate(
                **inputs,
                max_new_tokens=self.max_new_tokens,
                do_sample=sampling,
                temperature=self.temperature if sampling else None,
                top_p=self.top_p if sampling else None,
                top_k=None,
                use_cache=True,
            )
        new_tokens = out[:, inputs["input_ids"].shape[1] :]
        texts = self.processor.tokenizer.batch_decode(
            new_tokens, skip_special_tokens=True, clean_up_tokenization_spaces=False
        )
        return [str(t) for t in texts]

    def close(self) -> None:
        """Free the model so the GPU is available for training."""
        self.model = None
        self.processor = None
        gc.collect()
        if self.torch.cuda.is_available():
            self.torch.cuda.empty_cache()


def _llava_class() -> Any:
    from transformers import LlavaForConditionalGeneration

    return LlavaForConditionalGeneration


def _import_torch() -> Any:
    try:
        import torch
        import transformers  # noqa: F401
    except ImportError as exc:
        raise CaptionBackendError(
            f"The joycaption backend needs torch and transformers: {exc}.",
            code="missing_dependency",
            hint="Install them with `pip install 'lora-mcp[caption]'`, or use backend='ollama' or 'openai'.",
        ) from exc
    return torch


def _nf4_config(torch: Any) -> Any:
    try:
        import bitsandbytes  # noqa: F401
    except ImportError as exc:
        raise CaptionBackendError(
            "4-bit loading needs the bitsandbytes package, which is not installed.",
            code="missing_dependency",
            hint="Install it with `pip install bitsandbytes` (CUDA only), or caption without quantization.",
        ) from exc
    from transformers import BitsAndBytesConfig

    return BitsAndBytesConfig(
        load_in_4bit=True,
        bnb_4bit_quant_type="nf4",
        bnb_4bit_compute_dtype=torch.bfloat16,
        bnb_4bit_use_double_quant=True,
        llm_int8_skip_modules=list(NF4_SKIP_MODULES),
    )


# SigLIP misbehaves when quantized, so the vision tower and the projector stay in bf16. transformers 4.x matched
# these names anywhere in a module's path; 5.x matches from the start of the path (or as a suffix), where LLaVA's
# towers sit under `model.` (seen on an H100: with the bare names, every Linear of the vision tower became 4-bit).
NF4_SKIP_MODULES = ("vision_tower", "multi_modal_projector", "model.vision_tower", "model.multi_modal_projector")


def _load_error(model_id: str, exc: OSError) -> CaptionBackendError:
    text = str(exc)
    if "gated" in text.lower() or "401" in text or "403" in text:
        return CaptionBackendError(
            f"The model {model_id!r} is gated or needs a login: {text[:300]}",
            code="gated_model",
            hint="Accept its licence on huggingface.co and run `hf auth login`, or point joycaption_model at a "
            "local folder.",
        )
    where = "the local Hugging Face cache (HF_HUB_OFFLINE is set)" if hub_offline() else "the hub or the cache"
    return CaptionBackendError(
        f"Could not load the captioning model {model_id!r} from {where}: {text[:300]}",
        code="model_not_found",
        hint="Check LORA_MCP_JOYCAPTION_MODEL (a hub id or a local folder); download it first with "
        f"`hf download {model_id}` when running offline.",
    )
