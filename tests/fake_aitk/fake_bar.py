"""tqdm's bar as it reaches a pipe: '\\r' + the bar, no newline until it closes. Nominal times: output repeats."""

from __future__ import annotations

import sys
from typing import TextIO

_BLOCKS = " ▏▎▍▌▋▊▉█"  # tqdm's unicode bar characters
_WIDTH = 10  # tqdm's bar width when it cannot measure the terminal


def format_interval(seconds: float) -> str:
    """tqdm's MM:SS / H:MM:SS."""
    mins, s = divmod(int(seconds), 60)
    h, m = divmod(mins, 60)
    return f"{h:d}:{m:02d}:{s:02d}" if h else f"{m:02d}:{s:02d}"


class Bar:
    """A tqdm progress bar writing to `stream`; each update advances the clock by `seconds_per_it`."""

    def __init__(
        self, total: int, desc: str = "", *, initial: int = 0, seconds_per_it: float = 0.1, stream: TextIO | None = None
    ) -> None:
        self.total = total
        self.desc = desc
        self.n = initial
        self.initial = initial
        self.elapsed = 0.0
        self.seconds_per_it = max(seconds_per_it, 0.001)
        self.postfix = ""
        self.stream = stream or sys.stderr
        self.refresh()

    def render(self) -> str:
        """The bar text, without the carriage return."""
        frac = self.n / self.total if self.total else 0.0
        full, part = divmod(int(frac * _WIDTH * 8), 8)
        bar = _BLOCKS[-1] * full
        if full < _WIDTH:
            bar += _BLOCKS[part] + " " * (_WIDTH - full - 1)
        done = self.n - self.initial
        if done > 0 and self.elapsed > 0:
            rate = done / self.elapsed
            rate_text = f"{1 / rate:5.2f}s/it" if 1 / rate > 1 else f"{rate:5.2f}it/s"
            remaining = format_interval((self.total - self.n) / rate)
        else:
            rate_text, remaining = "?it/s", "?"
        postfix = f", {self.postfix}" if self.postfix else ""
        head = f"{self.desc}: " if self.desc else ""
        return (
            f"{head}{frac * 100:3.0f}%|{bar}| {self.n}/{self.total} "
            f"[{format_interval(self.elapsed)}<{remaining}, {rate_text}{postfix}]"
        )

    def refresh(self) -> None:
        """Repaint."""
        self.stream.write("\r" + self.render())
        self.stream.flush()

    def set_postfix_str(self, text: str) -> None:
        """Set the postfix and repaint, like tqdm.set_postfix_str."""
        self.postfix = text
        self.refresh()

    def update(self, k: int = 1) -> None:
        """Advance k iterations and repaint."""
        self.n += k
        self.elapsed += k * self.seconds_per_it
        self.refresh()

    def close(self, *, repaint: bool = True) -> None:
        """Leave the bar: a last repaint, then the newline."""
        if repaint:
            self.refresh()
        self.stream.write("\n")
        self.stream.flush()


def run_bar(total: int, desc: str = "", *, seconds_per_it: float = 0.1, repaint_on_close: bool = False) -> None:
    """A short bar that runs to completion at once (loading weights, caching, generating samples)."""
    bar = Bar(total, desc, seconds_per_it=seconds_per_it)
    bar.update(total)
    bar.close(repaint=repaint_on_close)
