"""AitkLogParser against AI-Toolkit's real bytes: the tqdm capture, real CPU-run logs, and crafted failure logs."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lora_mcp.jobs.models import Phase, Progress
from lora_mcp.training.logparse import AitkLogParser

CAPTURE = Path(__file__).resolve().parents[2] / "shared" / "data" / "aitk_progress_bar_capture.txt"
LOGS = Path(__file__).resolve().parent / "data" / "aitk_logs"


def capture() -> str:
    if not CAPTURE.is_file():
        pytest.fail(f"the tqdm capture is missing at {CAPTURE}: CI must lay ../shared beside the checkout")
    return CAPTURE.read_bytes().decode("utf-8")


def real_log(name: str) -> str:
    return (LOGS / name).read_bytes().decode("utf-8")  # binary: text mode would turn '\r' into '\n'


def parse(text: str, job: str = "smoke", total_steps: int | None = None, *, close: bool = True) -> AitkLogParser:
    parser = AitkLogParser(job, total_steps)
    parser.feed(text)
    if close:
        parser.close()
    return parser


def parse_in_pieces(text: str, cuts: list[int], job: str) -> AitkLogParser:
    parser = AitkLogParser(job)
    start = 0
    for cut in sorted(set(cuts)):
        parser.feed(text[start:cut])
        start = cut
    parser.feed(text[start:])
    parser.close()
    return parser


# ---- the progress bar ------------------------------------------------------------------------------------------


def test_capture_gives_step_loss_rate_and_history() -> None:
    parser = parse(capture(), "my_zimage_lora", close=False)
    progress = parser.progress
    assert (progress.phase, progress.step, progress.total_steps) == (Phase.TRAINING, 9, 20)
    assert progress.loss == pytest.approx(0.4123)
    assert progress.learning_rate == pytest.approx(1e-4)
    assert progress.it_per_second == pytest.approx(6.64)
    assert progress.eta_seconds == 1.0
    # only the last repaint of each run of repaints reaches the history
    assert parser.tail(10) == [
        "my_zimage_lora:  35%|███▌      | 7/20 [00:00<00:01,  6.64it/s, lr: 1.0e-04 loss: 4.123e-01]",
        "Saving at step 7",
        "my_zimage_lora:  45%|████▌     | 9/20 [00:00<00:01,  6.64it/s, lr: 1.0e-04 loss: 4.123e-01]",
    ]


@settings(max_examples=200, deadline=None)
@given(st.lists(st.integers(min_value=0, max_value=10_000), max_size=60))
def test_capture_in_any_chunks_equals_whole(cuts: list[int]) -> None:
    text = capture()
    whole = parse(text, "my_zimage_lora")
    pieces = parse_in_pieces(text, [c % (len(text) + 1) for c in cuts], "my_zimage_lora")
    assert pieces.progress == whole.progress
    assert pieces.tail(100) == whole.tail(100)


@settings(max_examples=100, deadline=None)
@given(st.data())
def test_real_log_in_any_chunks_equals_whole(data: st.DataObject) -> None:
    text = real_log("success.log")
    cuts = data.draw(st.lists(st.integers(min_value=0, max_value=len(text)), max_size=80))
    whole = parse(text)
    pieces = parse_in_pieces(text, cuts, "smoke")
    assert pieces.progress == whole.progress
    assert pieces.tail(500) == whole.tail(500)


def test_live_progress_shows_the_newest_repaint_before_its_terminator() -> None:
    parser = AitkLogParser("job")
    parser.feed("\rjob:  10%|█         | 2/20 [00:02<00:18,  1.00it/s, lr: 1.0e-04 loss: 2.000e-01]")
    assert parser.progress.step == 2
    parser.feed("\rjob:  15%|█▌        | 3/20 [00:03<00:1")  # half a repaint: nothing yet
    assert parser.progress.step == 2
    parser.feed("7,  1.00it/s, lr: 1.0e-04 loss: 1.000e-01]")
    assert (parser.progress.step, parser.progress.loss) == (3, 0.1)


def test_seconds_per_iteration_becomes_iterations_per_second() -> None:
    progress = parse(
        "\rjob:  10%|█         | 1/10 [00:02<00:18,  2.00s/it, lr: 2.0e-04 loss: 1.5e-01]\n", "job"
    ).progress
    assert progress.it_per_second == pytest.approx(0.5)
    assert (progress.eta_seconds, progress.learning_rate, progress.loss) == (18.0, 2e-4, 0.15)


def test_eta_from_rate_when_tqdm_prints_no_remaining_time() -> None:
    progress = parse("\rjob:  10%|█         | 10/100 [00:05<?, 2.00it/s]\n", "job").progress
    assert progress.eta_seconds == 45.0


def test_hours_in_remaining_time() -> None:
    progress = parse("\rjob:   1%|          | 10/1000 [00:05<1:02:03,  0.27it/s]\n", "job").progress
    assert progress.eta_seconds == 3723.0


def test_other_bars_never_move_the_step() -> None:
    text = (
        "\rjob:  25%|██▌       | 5/20 [00:01<00:03,  5.00it/s, lr: 1.0e-04 loss: 3.0e-01]\n"
        "\rGenerating Samples:   0%|          | 0/20 [00:00<?, ?it/s]\rGenerating Samples:  50%|█████     | 10/20"
        " [00:01<00:01,  9.00it/s]\n"
        "\rCaching latents to disk:  50%|█████     | 10/20 [00:01<00:01,  9.00it/s]\n"
        "\r 50%|█████     | 10/20 [00:01<00:01,  9.00it/s]\n"
    )
    progress = parse(text, "job", total_steps=20, close=False).progress
    assert (progress.step, progress.loss, progress.it_per_second) == (5, 0.3, 5.0)
    assert progress.phase == Phase.CACHING_LATENTS


def test_unlabelled_bar_with_the_step_count_is_not_training() -> None:
    # the real log: 6 images and 6 steps, and the dataset scan bar has no label
    parser = AitkLogParser("smoke", total_steps=6)
    text = real_log("success.log")
    parser.feed(text[: text.index("  -  Found 6 images")])
    assert parser.progress.step == 0
    assert parser.progress.phase == Phase.LOADING_MODEL


def test_a_renamed_training_bar_is_found_by_its_total() -> None:
    text = "\rrenamed:  50%|█████     | 3/6 [00:01<00:01,  2.00it/s, lr: 1.0e-04 loss: 1.0e-01]\n"
    assert parse(text, "job", total_steps=6).progress.step == 3
    assert parse(text, "job", total_steps=None).progress.step == 0


def test_phases_of_a_real_run_in_order() -> None:
    parser = AitkLogParser("smoke")
    phases = [parser.progress.phase]
    for char in real_log("success.log"):
        parser.feed(char)
        if parser.progress.phase != phases[-1]:
            phases.append(parser.progress.phase)
    parser.close()
    phases.append(parser.progress.phase)
    assert phases == [
        Phase.STARTING,
        Phase.LOADING_MODEL,
        Phase.CACHING_LATENTS,
        Phase.GENERATING_SAMPLES,
        Phase.TRAINING,
        Phase.SAVING,
        Phase.GENERATING_SAMPLES,
        Phase.TRAINING,
        Phase.SAVING,
        Phase.GENERATING_SAMPLES,
        Phase.DONE,
    ]


def test_real_run_final_progress() -> None:
    parser = parse(real_log("success.log"))
    progress = parser.progress
    assert (progress.step, progress.total_steps, progress.loss) == (6, 6, 2.066)
    assert progress.checkpoints_saved == [
        "/data/output/smoke/smoke_000000003.safetensors",
        "/data/output/smoke/smoke.safetensors",
    ]
    assert parser.final_saved and parser.job_started and not parser.stopped
    assert progress.message.startswith("Generating Samples: 100%")
    assert parser.classify_failure(0, final_lora_exists=True, cancel_requested=False) is None


def test_real_resume() -> None:
    progress = parse(real_log("resume.log")).progress
    assert (progress.resumed_from_step, progress.step, progress.total_steps) == (3, 9, 9)
    assert progress.it_per_second == pytest.approx(1 / 1.01)


def test_resume_before_the_bar_sets_the_step() -> None:
    text = (
        "#### IMPORTANT RESUMING FROM /o/job/job_000000500.safetensors ####\n"
        "Found step 500 in metadata, starting from there\n"
    )
    progress = parse(text, "job", close=False).progress
    assert (progress.step, progress.resumed_from_step, progress.phase) == (500, 500, Phase.LOADING_MODEL)


def test_old_saves_leave_the_checkpoint_list() -> None:
    text = (
        "".join(f"Saving at step {s}\nSaved checkpoint to /o/job/job_{s:09d}.safetensors\n" for s in (100, 200, 300))
        + "Removing old save: /o/job/job_000000100.safetensors\n"
    )
    progress = parse(text, "job", close=False).progress
    assert progress.checkpoints_saved == ["/o/job/job_000000200.safetensors", "/o/job/job_000000300.safetensors"]
    assert (progress.phase, progress.step) == (Phase.SAVING, 300)


def test_tail_is_bounded_and_newest_last() -> None:
    parser = AitkLogParser("job", max_lines=100)
    for i in range(10_000):
        parser.feed(
            f"\rjob:   0%|          | {i}/100000 [00:00<?, ?it/s]\rjob:   0%|          | {i}/100000 [00:01<?, ?it/s]"
        )
        parser.feed(f"\nline {i}\n")
    tail = parser.tail(1_000)
    assert len(tail) == 100
    assert tail[-2:] == ["job:   0%|          | 9999/100000 [00:01<?, ?it/s]", "line 9999"]
    assert parser.tail(0) == []


def test_tail_ends_with_the_bar_still_repainting() -> None:
    parser = AitkLogParser("job")
    parser.feed(
        "Model Loaded\n\rjob:   0%|          | 0/10 [00:00<?, ?it/s]"
        "\rjob:  10%|█         | 1/10 [00:01<00:09,  1.00it/s]\r"
    )
    assert parser.tail(5) == ["Model Loaded", "job:  10%|█         | 1/10 [00:01<00:09,  1.00it/s]"]


def test_a_log_without_line_ends_stays_bounded() -> None:
    parser = AitkLogParser("job")
    for _ in range(40):
        parser.feed("x" * 100_000)
    assert len(parser._partial) <= 1 << 20
    assert len(parser.tail(5)) >= 1


def test_json_config_is_not_a_message_and_banners_are_skipped() -> None:
    text = 'Running 1 job\n{\n    "type": "diffusion_trainer",\n    "name": "Error running job: no"\n}\n\n####\n'
    parser = parse(text, "job", close=False)
    assert parser.progress.message == "Running 1 job"
    assert parser.error_banner is None


def test_hostile_input_does_not_raise() -> None:
    parser = AitkLogParser("job", total_steps=5)
    for chunk in (
        "%|%|%|\r\r\r\n",
        "job: %|| x/y [<, ?it/s]\n",
        "\x00\xff\ud7ff" * 1000,
        "job: 99%|| 1/5 [",
        "\r\n" * 50,
    ):
        parser.feed(chunk)
    parser.close()
    assert isinstance(parser.progress, Progress)


def test_restoring_a_snapshot_then_reading_on() -> None:
    parser = AitkLogParser("job")
    parser.feed("Model Loaded\n")
    parser.progress = Progress(phase=Phase.TRAINING, step=40, total_steps=100, loss=0.2, checkpoints_saved=["/a"])
    assert (parser.progress.step, parser.progress.loss, parser.progress.checkpoints_saved) == (40, 0.2, ["/a"])
    parser.feed("\rjob:  41%|████      | 41/100 [00:41<00:59,  1.00it/s, lr: 1.0e-04 loss: 1.0e-01]")
    assert (parser.progress.step, parser.progress.loss) == (41, 0.1)


# ---- why a run failed ------------------------------------------------------------------------------------------

SUCCESS = real_log("success.log") if LOGS.is_dir() else ""
STARTED = SUCCESS[: SUCCESS.index("Loading ZImage model")]
LOADING = SUCCESS[: SUCCESS.index("Text Encoder")]
TRAINING = SUCCESS[: SUCCESS.index("\nSaving at step 3")]
REQUEST_ID = "(Request ID: Root=1-6745a1b2-3c4d5e6f7a8b9c0d1e2f3a4b;0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0)"
RESULT = "\n========================================\nResult:\n - 0 completed jobs\n - 1 failure\n" + "=" * 40 + "\n"


def failure(banner: str, *exceptions: str, frames: str = "") -> str:
    """AI-Toolkit's failure output: banner, Result block, then the (chained) traceback Python prints at exit."""
    frames = frames or (
        '  File "/opt/ai-toolkit/run.py", line 120, in main\n    job.run()\n'
        '  File "/opt/ai-toolkit/jobs/process/BaseSDTrainProcess.py", line 1806, in run\n    self.sd.load_model()\n'
    )
    chained = "\nDuring handling of the above exception, another exception occurred:\n\n".join(
        f"Traceback (most recent call last):\n{frames}{text}\n" for text in exceptions
    )
    return f"Error running job: {banner}\n{RESULT}{chained}"


CUDA_OOM = (
    "CUDA out of memory. Tried to allocate 2.00 GiB. GPU 0 has a total capacity of 23.55 GiB of which 1.12 GiB is "
    "free. Including non-PyTorch memory, this process has 22.41 GiB memory in use. Of the allocated memory "
    "21.87 GiB is allocated by PyTorch, and 95.31 MiB is reserved by PyTorch but unallocated. If reserved but "
    "unallocated memory is large try setting PYTORCH_CUDA_ALLOC_CONF=expandable_segments:True to avoid fragmentation."
)
OOM_SKIP = "\n\n" + "#" * 48 + "\n# OOM during training step, skipping batch {}/3 #\n" + "#" * 48 + "\n\n"
NOT_A_MODEL = (
    "{0} is not a local folder and is not a valid model identifier listed on 'https://huggingface.co/models'\n"
    "If this is a private repository, make sure to pass a token having permission to this repo with `token` or log in "
    "with `hf auth login`."
)
REPO_NOT_FOUND = (
    f"huggingface_hub.errors.RepositoryNotFoundError: 401 Client Error. {REQUEST_ID}\n\n"
    "Repository Not Found for url: https://huggingface.co/api/models/Tongyi-MAI/Z-Image-Turboo/revision/main.\n"
    "Please make sure you specified the correct `repo_id` and `repo_type`.\n"
    "If you are trying to access a private or gated repo, make sure you are authenticated and your token has the "
    "required permissions.\nFor more details, see https://huggingface.co/docs/huggingface_hub/authentication\n"
    "Invalid username or password."
)
GATED = (
    f"huggingface_hub.errors.GatedRepoError: 401 Client Error. {REQUEST_ID}\n\n"
    "Cannot access gated repo for url https://huggingface.co/Tongyi-MAI/Z-Image/resolve/main/transformer/config.json.\n"
    "Access to model Tongyi-MAI/Z-Image is restricted. You must have access to it and be authenticated to access it. "
    "Please log in."
)
GATED_403 = (
    f"huggingface_hub.errors.GatedRepoError: 403 Client Error. {REQUEST_ID}\n\n"
    "Cannot access gated repo for url https://huggingface.co/api/models/Tongyi-MAI/Z-Image.\n"
    "Access to model Tongyi-MAI/Z-Image is restricted and you are not in the authorized list. "
    "Visit https://huggingface.co/Tongyi-MAI/Z-Image to ask for access."
)
FINE_GRAINED_403 = (
    f"huggingface_hub.errors.HfHubHTTPError: {REQUEST_ID}\n\n403 Forbidden: Please enable access to public gated "
    "repositories in your fine-grained token settings to view this repository..\n"
    "Cannot access content at: https://huggingface.co/Tongyi-MAI/Z-Image/resolve/main/vae/config.json.\n"
    "Make sure your token has the correct permissions."
)
IMPORT_CRASH = (
    "Failed to load CPU gemm_4bit_forward from kernels-community: No module named 'kernels'. Please make sure you "
    "already `pip install kernels` and the kernels >= 0.11.1\n"
    "Traceback (most recent call last):\n"
    '  File "/opt/ai-toolkit/run.py", line 47, in <module>\n    from toolkit.job import get_job\n'
    '  File "/opt/ai-toolkit/toolkit/dataloader_mixins.py", line 31, in <module>\n    import torchaudio\n'
    "ModuleNotFoundError: No module named '{}'\n"
)
DIFFUSERS_OLD = (
    "Diffusers is out of date. Update diffusers to the latest version by doing pip uninstall diffusers and then pip "
    "install -r requirements.txt"
)
SAFETENSORS_FULL = (
    'Error while serializing: IoError(Os { code: 28, kind: StorageFull, message: "No space left on device" })'
)
CUDA_CRASH = (
    "CUDA error: an illegal memory access was encountered\nCUDA kernel errors might be asynchronously reported at "
    "some other API call, so the stacktrace below might be incorrect.\nFor debugging consider passing "
    "CUDA_LAUNCH_BLOCKING=1"
)
YAML_ERROR = (
    "while parsing a flow mapping\n"
    '  in "<unicode string>", line 14, column 87:\n     ... samples: [{prompt: a [trigger]}]}\n'
    "expected ',' or '}', but got '['"
)
ON_ERROR = "Error running on_error: cannot access local variable 'job' where it is not associated with a value\n"

FAILURES = {
    "oom while loading": (
        LOADING + failure(CUDA_OOM, f"torch.OutOfMemoryError: {CUDA_OOM}"),
        1,
        "oom",
        "while loading",
    ),
    "oom three steps in a row": (
        TRAINING
        + "".join(OOM_SKIP.format(k) for k in (1, 2, 3))
        + failure(
            "OOM during training step 3 times in a row, aborting training",
            "RuntimeError: OOM during training step 3 times in a row, aborting training",
        ),
        1,
        "oom",
        "during training, at step 3",
    ),
    "system RAM": (
        LOADING
        + failure(
            "[enforce fail at alloc_cpu.cpp:121] data. DefaultCPUAllocator: not enough memory: you tried to "
            "allocate 2147483648 bytes.",
            "RuntimeError: [enforce fail at alloc_cpu.cpp:121] data. DefaultCPUAllocator: not enough memory: you "
            "tried to allocate 2147483648 bytes.",
        ),
        1,
        "oom",
        "DefaultCPUAllocator",
    ),
    "real: missing local model": (real_log("model_missing_local.log"), 1, "model_not_found", "/nonexistent/zimage"),
    "real: misspelt hub model offline": (
        real_log("model_missing_hub_offline.log"),
        1,
        "model_not_found",
        "does not appear to have a file named config.json",
    ),
    "misspelt hub model online": (
        LOADING
        + failure(
            NOT_A_MODEL.format("Tongyi-MAI/Z-Image-Turboo"),
            REPO_NOT_FOUND,
            "OSError: " + NOT_A_MODEL.format("Tongyi-MAI/Z-Image-Turboo"),
        ),
        1,
        "model_not_found",
        "is not a valid model identifier",
    ),
    "gated through diffusers": (
        LOADING
        + failure(
            NOT_A_MODEL.format("Tongyi-MAI/Z-Image"), GATED, "OSError: " + NOT_A_MODEL.format("Tongyi-MAI/Z-Image")
        ),
        1,
        "gated_model",
        "Access to model Tongyi-MAI/Z-Image is restricted",
    ),
    "gated, not on the list": (
        LOADING + failure(GATED_403.split(": ", 1)[1], GATED_403),
        1,
        "gated_model",
        "not in the authorized list",
    ),
    "fine-grained token": (
        LOADING + failure(FINE_GRAINED_403.split(": ", 1)[1], FINE_GRAINED_403),
        1,
        "gated_model",
        "403 Forbidden: Please enable access",
    ),
    "torchaudio missing at import": (IMPORT_CRASH.format("torchaudio"), 1, "missing_dependency", "torchaudio"),
    "diffusers too old": (
        LOADING
        + failure(
            DIFFUSERS_OLD,
            "ImportError: cannot import name 'ZImagePipeline' from 'diffusers' "
            "(/opt/ai-toolkit/venv/lib/python3.11/site-packages/diffusers/__init__.py)",
            f"ImportError: {DIFFUSERS_OLD}",
        ),
        1,
        "missing_dependency",
        "Diffusers is out of date",
    ),
    "real: no training_folder": (
        real_log("config_no_training_folder.log"),
        1,
        "config_error",
        "TypeError: expected str, bytes or os.PathLike object, not NoneType",
    ),
    "real: validate_configs": (
        real_log("config_validate.log"),
        1,
        "config_error",
        "ValueError: Cannot use both differential output preservation",
    ),
    "yaml syntax": (
        "Running 1 job\nError running job: "
        + YAML_ERROR
        + "\n"
        + ON_ERROR
        + RESULT
        + "Traceback (most recent call last):\n"
        + '  File "/opt/ai-toolkit/toolkit/config.py", line 101, in get_config\n'
        + f"yaml.parser.ParserError: {YAML_ERROR}\n",
        1,
        "config_error",
        "yaml.parser.ParserError",
    ),
    "unset ${VAR} in the config": (
        "Running 1 job\nError running job: Environment variable DATA not set. Please ensure it's defined before "
        "proceeding.\n" + ON_ERROR + RESULT,
        1,
        "config_error",
        "Environment variable DATA not set",
    ),
    "disk full writing a checkpoint": (
        TRAINING
        + "\nSaving at step 3\n"
        + failure(SAFETENSORS_FULL, f"safetensors_rust.SafetensorError: {SAFETENSORS_FULL}"),
        1,
        "disk_full",
        "No space left on device",
    ),
    "disk full caching latents": (
        LOADING
        + failure(
            "[Errno 28] No space left on device",
            "OSError: [Errno 28] No space left on device: '/data/dataset/_latent_cache/horse_VQB5aD8N.safetensors'",
        ),
        1,
        "disk_full",
        "Errno 28",
    ),
    "SIGKILL": (TRAINING, -9, "killed", "SIGKILL"),
    "SIGKILL through a shell": (TRAINING, 137, "killed", "SIGKILL"),
    "SIGTERM": (TRAINING, -15, "killed", "SIGTERM"),
    "SIGTERM through a shell": (TRAINING, 143, "killed", "SIGTERM"),
    "real: SIGINT from outside": (real_log("sigint.log"), 0, "killed", "Job stopped"),
    "segfault": (TRAINING, -11, "trainer_error", "SIGSEGV"),
    "CUDA crash": (
        TRAINING + failure(CUDA_CRASH, f"RuntimeError: {CUDA_CRASH}"),
        1,
        "trainer_error",
        "Error running job: CUDA error: an illegal memory access",
    ),
    "exit 0 without the final LoRA": (TRAINING + "\n", 0, "trainer_error", "without saving"),
    "exit 0 without the final LoRA, short log": (STARTED + "Loading ZImage model\n", 0, "trainer_error", "without"),
    "unknown exit status": (TRAINING, None, "lost", "unknown"),
    "unknown exit status after an error banner": (
        LOADING + failure(CUDA_OOM, f"torch.OutOfMemoryError: {CUDA_OOM}"),
        None,
        "oom",
        "CUDA out of memory",
    ),
}


@pytest.mark.parametrize(("text", "exit_code", "code", "quoted"), FAILURES.values(), ids=FAILURES.keys())
def test_failures_are_classified(text: str, exit_code: int | None, code: str, quoted: str) -> None:
    error = parse(text).classify_failure(exit_code, final_lora_exists=False, cancel_requested=False)
    assert error is not None
    assert (error.code, quoted in error.message) == (code, True), error.message
    assert error.hint and len(error.message) < 600


def test_hints_name_the_next_step() -> None:
    def hint(text: str, exit_code: int = 1) -> str:
        error = parse(text).classify_failure(exit_code, final_lora_exists=False, cancel_requested=False)
        assert error is not None
        return error.hint

    gated = hint(FAILURES["gated through diffusers"][0])
    assert "HF_TOKEN" in gated and "https://huggingface.co/Tongyi-MAI/Z-Image " in gated
    assert "pip install torchaudio" in hint(IMPORT_CRASH.format("torchaudio"))
    assert "pip install opencv-python" in hint(IMPORT_CRASH.format("cv2.ximgproc"))
    assert "requirements.txt" in hint(FAILURES["diffusers too old"][0])
    assert "OOM killer" in hint(TRAINING, -9)
    assert "quantize" in hint(FAILURES["oom while loading"][0])
    assert "System RAM" in hint(FAILURES["system RAM"][0])
    assert "https://huggingface.co/Tongyi-MAI/Z-Image with" in hint(FAILURES["gated, not on the list"][0])


def test_a_banner_glued_to_the_unfinished_bar_is_its_own_line() -> None:
    # the bar (stderr) has no newline when the exception hits, so stdout's banner lands on the same line
    parser = parse(FAILURES["CUDA crash"][0])
    assert parser.error_banner == "Error running job: CUDA error: an illegal memory access was encountered"
    assert parser.progress.step == 3
    assert "Error running job: CUDA error: an illegal memory access was encountered" in parser.tail(30)
    assert any(line.startswith("smoke:  50%|█████     | 3/6 [") and line.endswith("]") for line in parser.tail(30))


def test_success_and_cancel_are_not_failures() -> None:
    sigint = parse(real_log("sigint.log"))
    assert sigint.stopped
    assert sigint.classify_failure(0, final_lora_exists=False, cancel_requested=True) is None
    crashed = parse(FAILURES["CUDA crash"][0])
    assert crashed.classify_failure(1, final_lora_exists=False, cancel_requested=True) is None
    assert crashed.classify_failure(-9, final_lora_exists=False, cancel_requested=True) is None
    done = parse(SUCCESS)
    assert done.classify_failure(0, final_lora_exists=True, cancel_requested=False) is None
    assert done.classify_failure(0, final_lora_exists=True, cancel_requested=True) is None
