"""JoyCaption through transformers on a tiny random LLaVA built at test time: the exact loading and prompting path,
batched == one-by-one, and a whole caption job (worker subprocess) over the shared images."""

from __future__ import annotations

from pathlib import Path

import pytest
from caption_fixtures import caption_manager, make_dataset, tiny_joycaption
from jobs_fixtures import wait_final

from lora_mcp.captioning.base import load_image
from lora_mcp.captioning.files import BACKUP_DIR, OverwritePolicy
from lora_mcp.captioning.joycaption import JoyCaptioner
from lora_mcp.captioning.service import CaptionRequest, start_captioning
from lora_mcp.captioning.text import finish_caption
from lora_mcp.dataset.inspect import inspect_dataset
from lora_mcp.errors import InvalidInput
from lora_mcp.jobs.models import JobState
from lora_mcp.settings import Settings

__all__ = ["tiny_joycaption"]

PROMPT = "Write a medium-length detailed description for this image."
TRIGGER = "ohwx"


@pytest.fixture(scope="module")
def greedy(tiny_joycaption: Path) -> JoyCaptioner:
    return JoyCaptioner(str(tiny_joycaption), batch_size=8, max_new_tokens=12, temperature=0)


def test_prompt_has_one_bos_the_image_token_and_left_padding(greedy: JoyCaptioner, shared_images: Path) -> None:
    images = [load_image(p) for p in sorted(shared_images.iterdir())[:2]]
    inputs = greedy.encode(images, PROMPT)
    tokenizer = greedy.processor.tokenizer
    ids = inputs["input_ids"][0].tolist()
    assert ids.count(tokenizer.bos_token_id) == 1 and ids[0] == tokenizer.bos_token_id
    assert tokenizer.padding_side == "left"
    image_id = greedy.model.config.image_token_index
    assert ids.count(image_id) == greedy.model.config.image_seq_length  # the template inserted the image
    assert str(inputs["pixel_values"].dtype) == "torch.float32"  # fp32 on CPU


def test_batched_greedy_equals_one_by_one(greedy: JoyCaptioner, shared_images: Path) -> None:
    images = [load_image(p) for p in sorted(shared_images.iterdir())]
    batched = greedy.caption(images, PROMPT)
    singles = [greedy.caption([image], PROMPT)[0] for image in images]
    assert batched == singles
    assert len(set(batched)) > 1  # different images, different captions


def test_missing_model_is_a_clear_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from lora_mcp.captioning.base import CaptionBackendError

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(CaptionBackendError) as info:
        JoyCaptioner(str(tmp_path / "nowhere"))
    assert info.value.code == "model_not_found" and "HF_HUB_OFFLINE" in info.value.message


def test_caption_job_end_to_end(
    settings: Settings, shared_images: Path, tiny_joycaption: Path, greedy: JoyCaptioner
) -> None:
    folder = make_dataset(settings.roots[0], shared_images)
    (folder / "horse.txt").write_text("an old caption of ohwx", encoding="utf-8")
    manager = caption_manager(settings)
    request = CaptionRequest(
        folder=folder,
        trigger_word=TRIGGER,
        length="medium-length",
        backend="joycaption",
        model=str(tiny_joycaption),
        batch_size=4,
        temperature=0,
        max_new_tokens=12,
    )
    status = start_captioning(manager, request)
    assert manager.get(status.job_id).lane_kind == "gpu"
    job = wait_final(manager, status.job_id, timeout=120)
    assert job.state == JobState.SUCCEEDED, manager.tail(job.id, 30)

    out = job.outputs
    images = sorted(p.name for p in shared_images.iterdir())
    assert out["skipped_existing"] == ["horse.png"]
    assert [f["image"] for f in out["failed"]] == ["d_broken.png"] and "decode" in out["failed"][0]["reason"]
    expected = [Path(n).with_suffix(".txt").name for n in images if n != "horse.png"]
    assert out["captions_written"] == expected
    assert job.progress.step == len(images) and job.progress.total_steps == len(images)  # 7 + the broken one

    # The worker wrote exactly what the same model gives one image at a time, trigger word once.
    for name in images:
        if name == "horse.png":
            continue
        text = (folder / name).with_suffix(".txt").read_text(encoding="utf-8")
        single = greedy.caption([load_image(folder / name)], job.params["prompt"])[0]
        assert text == finish_caption(single, TRIGGER)
        assert text.startswith(f"{TRIGGER}, ") and text.count(TRIGGER) == 1
    assert (folder / "horse.txt").read_text(encoding="utf-8") == "an old caption of ohwx"
    assert not [p for p in folder.iterdir() if p.name.startswith(".")]  # no temp files left

    # Everything captioned now: a skip run has nothing to do and says how to go on.
    (folder / "d_broken.png").unlink()
    with pytest.raises(InvalidInput, match="overwrite='backup'"):
        start_captioning(manager, request)

    # backup (with the no-model backend, on the CPU lane): caption again, old captions kept under
    # _caption_backups/<ts>/, which inspection ignores.
    rerun = CaptionRequest(folder=folder, trigger_word=TRIGGER, backend="template", overwrite=OverwritePolicy.BACKUP)
    again = start_captioning(manager, rerun)
    assert manager.get(again.job_id).lane_kind == "cpu"
    job = wait_final(manager, again.job_id, timeout=120)
    assert job.state == JobState.SUCCEEDED, manager.tail(job.id, 30)
    backups = list((folder / BACKUP_DIR).rglob("*.txt"))
    assert len(backups) == len(images) and any(p.endswith("/horse.txt") for p in job.outputs["backed_up"])
    assert (folder / job.outputs["backup_dir"] / "horse.txt").read_text(encoding="utf-8") == "an old caption of ohwx"
    assert (folder / "horse.txt").read_text(encoding="utf-8") == f"a photo of {TRIGGER}"
    report = inspect_dataset(folder, trigger_word=TRIGGER)
    assert report.image_count == len(images)
    assert all(BACKUP_DIR not in p.model_dump_json() for p in report.problems)


def test_nf4_leaves_the_vision_tower_and_projector_unquantized(tiny_joycaption: Path) -> None:
    """The skip list must select the real module paths under this transformers' own matching rule."""
    from transformers import LlavaForConditionalGeneration
    from transformers.quantizers.quantizers_utils import should_convert_module

    from lora_mcp.captioning.joycaption import NF4_SKIP_MODULES

    model = LlavaForConditionalGeneration.from_pretrained(tiny_joycaption)
    linears = [name for name, module in model.named_modules() if type(module).__name__ == "Linear"]
    converted = {name for name in linears if should_convert_module(name, list(NF4_SKIP_MODULES))}
    vision = {n for n in linears if "vision_tower" in n or "multi_modal_projector" in n}
    assert vision and not (vision & converted), "vision tower or projector would be quantized"
    assert any("language_model" in n for n in converted), "the language model must still be quantized"
