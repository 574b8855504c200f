"""Incremental parser for AI-Toolkit's merged stdout+stderr: live progress, a bounded tail, and why a run failed.

AI-Toolkit prints plain lines on stdout and its tqdm bars on stderr. A bar repaints itself with a carriage return and
no newline, so one "line" can carry thousands of repaints. The parser treats both '\\r' and '\\n' as terminators:
every segment updates the progress, but the line history keeps only completed '\\n' lines and, of a run of
repaints, the last repaint of each bar. Chunks may split anywhere; feeding a log in any chunking gives the same state.

Speed matters because a long run logs millions of repaints: a segment is first sorted by cheap string tests (a bar
contains '%|'; an interesting plain line starts with one of a few known prefixes) and a regex runs only on bars.
Numbers are kept as the strings the bar printed and converted when `progress` is read.
"""

from __future__ import annotations

import re
from collections import deque
from itertools import islice

from lora_mcp.jobs.models import JobError, Phase, Progress
from lora_mcp.training.failures import classify

# "| 6/20 [00:00<00:02,  6.65it/s, lr: 1.0e-04 loss: 4.123e-01]" (the part of a tqdm bar after the bar glyphs)
_BAR_TAIL = re.compile(r"\| (\d+)/(\d+) \[[^<\]]*<([^,\]]*), *(\d+(?:\.\d+)?|\?)(it/s|s/it)(?:, ([^\]]*))?\]")
_FOUND_STEP = re.compile(r"Found step (\d+) in metadata")
_SAVING_AT = re.compile(r"Saving at step (\d+)")
_MAX_SEGMENT = 1 << 20  # a "line" longer than this is cut, so a log without terminators cannot grow memory

# Bars whose label says they are not the training bar, with the phase they stand for (None: leave the phase alone).
_OTHER_BARS: tuple[tuple[str, Phase | None], ...] = (
    ("Caching latents", Phase.CACHING_LATENTS),
    ("Caching text embeddings", Phase.CACHING_TEXT_EMBEDDINGS),
    ("Caching text_embeddings", Phase.CACHING_TEXT_EMBEDDINGS),
    ("Caching", None),
    ("Generating", Phase.GENERATING_SAMPLES),
    ("Loading", Phase.LOADING_MODEL),
    ("Fetching", Phase.LOADING_MODEL),
    ("Validat", None),
)
_OTHER_BAR_PREFIXES = tuple(prefix for prefix, _ in _OTHER_BARS)

# Plain lines the parser acts on, by prefix (AI-Toolkit's own strings; see BaseSDTrainProcess, BaseJob, z_image.py).
_LOADING_PREFIXES = (
    "Loading ",
    "Text Encoder",
    "Quantizing ",
    "Merging in assistant LoRA",
    "Moving transformer to CPU",
    "Making pipe",
    "Preparing Model",
    "Model Loaded",
    "Model is a single-file checkpoint",
)
_RESUME = "#### IMPORTANT RESUMING FROM "
_PREFIXES = (
    *_LOADING_PREFIXES,
    "# Running job: ",
    _RESUME,
    "Found step ",
    "Caching latents",
    "Caching text",
    "Generating ",
    "Saving at step ",
    "Saved checkpoint to ",
    "Removing old save: ",
    "Error running job: ",
    "Job stopped",
)


class AitkLogParser:
    """Reads an AI-Toolkit log chunk by chunk and keeps its progress, a bounded tail and the facts failures need."""

    def __init__(self, job_name: str, total_steps: int | None = None, *, max_lines: int = 400) -> None:
        """Parse the log of job `job_name` (config.name); `total_steps` (train.steps) helps to spot a renamed bar."""
        self.job_name = job_name
        self._train_label = job_name
        self._configured_total = total_steps
        self._history: deque[str] = deque(maxlen=max_lines)
        self._partial = ""
        self._pending: str | None = None  # newest repaint of a bar still repainting, not yet in the history
        self._pending_label: str | None = None
        self._last_bar = ""
        self._last_bar_label: str | None = None
        self._in_json = False
        # progress, as raw strings from the newest training bar: n, total, remaining, rate, unit, postfix
        self._bar: tuple[str, ...] | None = None
        self._phase = Phase.STARTING
        self._message = ""
        self._saved_step = 0
        self._checkpoints: list[str] = []
        self._resumed_from: int | None = None
        self._restored: Progress | None = None  # a snapshot set through the `progress` setter
        # facts for classify_failure
        self.job_started = False
        self.final_saved = False
        self.stopped = False
        self.error_banner: str | None = None

    # ---- input -------------------------------------------------------------------------------------------------

    def feed(self, chunk: str) -> None:
        """Take the next piece of the log, split anywhere."""
        if not chunk:
            return
        buf = self._partial + chunk if self._partial else chunk
        lines = buf.split("\n")
        partial = lines.pop()
        for line in lines:
            if "\r" in line:
                self._repaints(line)
            elif line:
                self._final(line)
        if "\r" in partial:
            cut = partial.rfind("\r")
            if cut:
                self._transients(partial[:cut])
            partial = partial[cut:]
            # tqdm writes each repaint whole: show it now instead of waiting for the next one
            if partial.endswith("]") and "%|" in partial:
                self._segment(partial[1:])
        if len(partial) > _MAX_SEGMENT:
            self._final(partial.replace("\r", " ")[:_MAX_SEGMENT])
            partial = ""
        self._partial = partial

    def close(self) -> None:
        """End of the log: take the unterminated last line, and mark the phase done if the final LoRA was saved."""
        if self._partial:
            self.feed("\n")
        if self._pending is not None:
            self._history.append(self._pending)
            self._pending = None
        if self.final_saved and self.error_banner is None and not self.stopped:
            self._phase = Phase.DONE

    def _repaints(self, line: str) -> None:
        """A completed '\\n' line with carriage returns in it."""
        cut = line.rfind("\r")
        self._transients(line[:cut])
        last = line[cut + 1 :]
        if last and not last.isspace():
            self._final(last)
        elif self._pending is not None:  # "...\r\n": the newest repaint is the line
            self._history.append(self._pending)
            self._pending = None

    def _transients(self, text: str) -> None:
        """Segments ended by '\\r': progress only; remember the newest one of each bar for the history."""
        for seg in text.split("\r"):
            if not seg or seg.isspace():
                continue
            label = self._segment(seg)
            if self._pending is not None and (label is None or label != self._pending_label):
                self._history.append(self._pending)
            self._pending = seg
            self._pending_label = label

    def _final(self, seg: str) -> None:
        """A segment ended by '\\n': it goes to the history."""
        if "%|" in seg and not seg.endswith("]"):
            close = seg.find("]", seg.find("%|"))
            if 0 < close < len(seg) - 1:  # stdout printed right after an unfinished bar: "...it/s]Error running job"
                self._final(seg[: close + 1])
                self._final(seg[close + 1 :])
                return
        label = self._segment(seg)
        if self._pending is not None:
            if label is None or label != self._pending_label:  # plain text never stands for a repaint
                self._history.append(self._pending)
            self._pending = None
        if not seg.isspace():
            self._history.append(seg)

    # ---- one segment -------------------------------------------------------------------------------------------

    def _segment(self, seg: str) -> str | None:
        """Update the state from one segment; return the bar's label ('' unlabelled) or None for a plain line."""
        if seg == self._last_bar:
            return self._last_bar_label
        pct = seg.find("%|")
        if pct >= 0:
            return self._on_bar(seg, pct)
        self._on_text(seg)
        return None

    def _on_bar(self, seg: str, pct: int) -> str:
        label = seg[:pct].rpartition(": ")[0]
        self._last_bar = seg
        self._last_bar_label = label
        self._message = seg
        if label == self._train_label:
            match = _BAR_TAIL.search(seg, pct)
            if match is not None:
                self._bar = match.groups()
                self._phase = Phase.TRAINING
            return label
        if label.startswith(_OTHER_BAR_PREFIXES):
            for prefix, phase in _OTHER_BARS:
                if label.startswith(prefix):
                    if phase is not None:
                        self._phase = phase
                    break
            return label
        if label and self._configured_total is not None:
            # config.name differs from the job name we were told (e.g. `run.py -n`): the bar with our total trains
            match = _BAR_TAIL.search(seg, pct)
            if match is not None and int(match.group(2)) == self._configured_total:
                self._train_label = label
                self._bar = match.groups()
                self._phase = Phase.TRAINING
        return label

    def _on_text(self, line: str) -> None:
        if self._in_json:
            if line == "}":
                self._in_json = False
            return
        if line == "{":  # the process config, printed as indented JSON before the job starts
            self._in_json = True
            return
        if line.startswith(_PREFIXES):
            self._on_marker(line)
        if line.strip(" #=-"):
            self._message = line

    def _on_marker(self, line: str) -> None:
        """One of the lines in _PREFIXES."""
        if line.startswith(_LOADING_PREFIXES):
            self._phase = Phase.LOADING_MODEL
        elif line.startswith("# Running job: "):
            self.job_started = True
            self._phase = Phase.STARTING
        elif line.startswith(_RESUME):
            self._phase = Phase.LOADING_MODEL
        elif line.startswith("Found step "):
            if match := _FOUND_STEP.match(line):
                self._resumed_from = int(match.group(1))
        elif line.startswith("Caching latents"):
            self._phase = Phase.CACHING_LATENTS
        elif line.startswith("Caching text"):
            self._phase = Phase.CACHING_TEXT_EMBEDDINGS
        elif line.startswith("Generating "):
            if "sample" in line or "Sample" in line:
                self._phase = Phase.GENERATING_SAMPLES
        elif line.startswith("Saving at step "):
            self._phase = Phase.SAVING
            if match := _SAVING_AT.match(line):
                self._saved_step = int(match.group(1))
        elif line.startswith("Saved checkpoint to "):
            self._on_saved(line[len("Saved checkpoint to ") :].strip())
        elif line.startswith("Removing old save: "):
            gone = line[len("Removing old save: ") :].strip()
            if gone in self._checkpoints:
                self._checkpoints.remove(gone)
        elif line.startswith("Error running job: "):
            if self.error_banner is None:
                self.error_banner = line
        elif line.startswith("Job stopped"):
            self.stopped = True

    def _on_saved(self, path: str) -> None:
        self._phase = Phase.SAVING
        if path in self._checkpoints:
            self._checkpoints.remove(path)
        self._checkpoints.append(path)
        name = path.replace("\\", "/").rpartition("/")[2]
        if name == f"{self.job_name}.safetensors" or name == f"{self._train_label}.safetensors":
            self.final_saved = True

    # ---- output ------------------------------------------------------------------------------------------------

    @property
    def progress(self) -> Progress:
        """What the log says so far (a fresh snapshot on every read)."""
        step = self._resumed_from or 0
        total = self._configured_total
        loss = lr = ips = eta = None
        if self._bar is None and self._restored is not None:
            restored = self._restored
            step, loss, lr = restored.step, restored.loss, restored.learning_rate
            ips, eta = restored.it_per_second, restored.eta_seconds
        if self._bar is not None:
            n, total_s, remaining, rate, unit, postfix = self._bar
            step, total = int(n), int(total_s)
            if rate != "?" and float(rate) > 0:
                ips = float(rate) if unit == "it/s" else 1.0 / float(rate)
            eta = _interval_seconds(remaining)
            if eta is None and ips:
                eta = max(total - step, 0) / ips
            loss, lr = _postfix_values(postfix or "")
        return Progress(
            phase=self._phase,
            step=max(step, self._saved_step),
            total_steps=total,
            loss=loss,
            learning_rate=lr,
            it_per_second=ips,
            eta_seconds=eta,
            message=self._message,
            checkpoints_saved=list(self._checkpoints),
            resumed_from_step=self._resumed_from,
        )

    @progress.setter
    def progress(self, value: Progress) -> None:
        """Start from a stored snapshot (re-attaching to a running job); newer log lines update it as usual."""
        self._restored = value.model_copy(deep=True)
        self._phase = value.phase
        self._message = value.message
        self._checkpoints = list(value.checkpoints_saved)
        self._resumed_from = value.resumed_from_step
        if value.total_steps is not None:
            self._configured_total = value.total_steps
        self._bar = None

    def tail(self, n: int = 50) -> list[str]:
        """The newest `n` lines of the history (completed lines, plus the newest repaint of a bar still running)."""
        lines = list(self._history)
        if self._pending is not None:
            lines.append(self._pending)
        return lines[-n:] if n > 0 else []

    def classify_failure(
        self, exit_code: int | None, *, final_lora_exists: bool, cancel_requested: bool
    ) -> JobError | None:
        """Why the run failed, or None when it did not fail: a success, or a requested cancel that took effect."""
        return classify(self, exit_code, final_lora_exists=final_lora_exists, cancel_requested=cancel_requested)

    @property
    def training_seen(self) -> bool:
        """True once the training bar has been seen (or a restored snapshot had training steps)."""
        return self._bar is not None or (self._restored is not None and self._restored.step > 0)

    def error_region(self) -> tuple[list[str], bool]:
        """The lines that explain a failure, and whether an error banner or traceback anchors them.

        Anchored: from the newest `Error running job:` banner (or the first traceback) on. Otherwise the last 40 lines.
        """
        lines = self.tail(len(self._history) + 1)
        start = None
        for i in range(len(lines) - 1, -1, -1):
            if lines[i].startswith("Error running job: "):
                start = i
                break
        if start is None:
            start = next((i for i, line in enumerate(lines) if line.startswith("Traceback (most recent call")), None)
        if start is None:
            if self.error_banner is not None:
                return [self.error_banner, *lines[-40:]], True
            return lines[-40:], False
        region = lines[start:]
        if self.error_banner is not None and not region[0].startswith("Error running job: "):
            region.insert(0, self.error_banner)
        return region, True


def _interval_seconds(text: str) -> float | None:
    """tqdm's "MM:SS" or "H:MM:SS" as seconds; None for "?"."""
    parts = text.strip().split(":")
    try:
        seconds = 0
        for part in parts:
            seconds = seconds * 60 + int(part)
    except ValueError:
        return None
    return float(seconds)


def _postfix_values(postfix: str) -> tuple[float | None, float | None]:
    """(loss, lr) from AI-Toolkit's postfix "lr: 1.0e-04 loss: 4.123e-01"."""
    loss = lr = None
    words = postfix.split()
    for key, value in zip(islice(words, 0, None, 2), islice(words, 1, None, 2), strict=False):
        try:
            if key == "loss:":
                loss = float(value)
            elif key == "lr:":
                lr = float(value)
        except ValueError:
            continue
    return loss, lr
