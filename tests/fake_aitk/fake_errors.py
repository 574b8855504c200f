"""Exceptions named and worded like the ones torch, huggingface_hub and safetensors raise, so tracebacks read true."""

from __future__ import annotations


class OutOfMemoryError(RuntimeError):
    """torch.OutOfMemoryError."""


OutOfMemoryError.__module__ = "torch"


class HFValidationError(ValueError):
    """huggingface_hub.errors.HFValidationError."""


class RepositoryNotFoundError(OSError):
    """huggingface_hub.errors.RepositoryNotFoundError (an HTTPError, itself an OSError)."""


class GatedRepoError(RepositoryNotFoundError):
    """huggingface_hub.errors.GatedRepoError."""


for _cls in (HFValidationError, RepositoryNotFoundError, GatedRepoError):
    _cls.__module__ = "huggingface_hub.errors"


class SafetensorError(Exception):
    """safetensors_rust.SafetensorError."""


SafetensorError.__module__ = "safetensors_rust"

CUDA_OOM = (
    "CUDA out of memory. Tried to allocate 2.00 GiB. GPU 0 has a total capacity of 23.55 GiB of which 1.12 GiB is "
    "free. Including non-PyTorch memory, this process has 22.41 GiB memory in use. Of the allocated memory 21.87 GiB "
    "is allocated by PyTorch, and 95.31 MiB is reserved by PyTorch but unallocated. If reserved but unallocated memory "
    "is large try setting PYTORCH_CUDA_ALLOC_CONF=expandable_segments:True to avoid fragmentation.  See documentation "
    "for Memory Management  (https://pytorch.org/docs/stable/notes/cuda.html#environment-variables)"
)
REQUEST_ID = "(Request ID: Root=1-6745a1b2-3c4d5e6f7a8b9c0d1e2f3a4b;0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0)"


def not_a_model(path: str) -> OSError:
    """What diffusers' load_config raises when huggingface_hub says the repo is not there (or not for us)."""
    return OSError(
        f"{path} is not a local folder and is not a valid model identifier listed on 'https://huggingface.co/models'\n"
        "If this is a private repository, make sure to pass a token having permission to this repo with `token` or "
        "log in with `hf auth login`."
    )


def repo_not_found(repo: str) -> RepositoryNotFoundError:
    """huggingface_hub's 401/404 for a repo that does not exist."""
    return RepositoryNotFoundError(
        f"401 Client Error. {REQUEST_ID}\n\nRepository Not Found for url: "
        f"https://huggingface.co/api/models/{repo}/revision/main.\n"
        "Please make sure you specified the correct `repo_id` and `repo_type`.\n"
        "If you are trying to access a private or gated repo, make sure you are authenticated and your token has the "
        "required permissions.\nFor more details, see https://huggingface.co/docs/huggingface_hub/authentication\n"
        "Invalid username or password."
    )


def gated(repo: str) -> GatedRepoError:
    """huggingface_hub's error for a gated repo whose licence this token has not accepted."""
    return GatedRepoError(
        f"401 Client Error. {REQUEST_ID}\n\nCannot access gated repo for url "
        f"https://huggingface.co/{repo}/resolve/main/transformer/config.json.\n"
        f"Access to model {repo} is restricted. You must have access to it and be authenticated to access it. "
        "Please log in."
    )


def local_missing(path: str) -> tuple[HFValidationError, OSError]:
    """A missing local folder: huggingface_hub rejects it as a repo id, then diffusers gives up (offline wording)."""
    first = HFValidationError(
        f"Repo id must be in the form 'repo_name' or 'namespace/repo_name': '{path}'. Use `repo_type` argument if "
        "needed."
    )
    second = OSError(
        "We couldn't connect to 'https://huggingface.co' to load this model, couldn't find it in the cached files and "
        f"it looks like {path} is not the path to a directory containing a config.json file.\n"
        "Checkout your internet connection or see how to run the library in offline mode at "
        "'https://huggingface.co/docs/diffusers/installation#offline-mode'."
    )
    return first, second


def disk_full() -> SafetensorError:
    """safetensors failing to write a checkpoint on a full disk."""
    return SafetensorError(
        'Error while serializing: IoError(Os { code: 28, kind: StorageFull, message: "No space left on device" })'
    )


CUDA_CRASH = (
    "CUDA error: an illegal memory access was encountered\n"
    "CUDA kernel errors might be asynchronously reported at some other API call, so the stacktrace below might be "
    "incorrect.\nFor debugging consider passing CUDA_LAUNCH_BLOCKING=1\n"
    "Compile with `TORCH_USE_CUDA_DSA` to enable device-side assertions.\n"
)
