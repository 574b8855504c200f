"""Throughput and memory of AitkLogParser on a large synthetic AI-Toolkit log.

    .venv/bin/python benchmarks/bench_logparse.py --size-mb 1024

The log is built from AI-Toolkit's real output shapes (start banner, JSON config, model loading, dataset and caching
bars, then training: two carriage-return repaints of the training bar per step, `Saving at step` / `Saved checkpoint`
/ `Removing old save` lines, sample bars and timer blocks). A 16 MiB stretch of it is generated once, with steps
counting up, and fed over and over in 64 KiB chunks that split lines and repaints anywhere, until --size-mb is read.
A "line" is one segment ended by '\\r' or '\\n' (each bar repaint counts). Memory is the process's resident set.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from collections.abc import Iterator
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from lora_mcp.training.logparse import AitkLogParser

CHUNK = 64 * 1024
JOB = "my_zimage_lora"
BLOCKS = " ▏▎▍▌▋▊▉█"


def bar(desc: str, n: int, total: int, rate: float, postfix: str = "") -> str:
    """One tqdm repaint, as AI-Toolkit's bar writes it."""
    full, part = divmod(int(n / total * 80), 8)
    glyphs = BLOCKS[-1] * full + (BLOCKS[part] + " " * (9 - full) if full < 10 else "")
    left = (total - n) / rate if rate else 0
    rate_text = f"{1 / rate:5.2f}s/it" if rate < 1 else f"{rate:5.2f}it/s"
    tail = f", {postfix}" if postfix else ""
    head = f"{desc}: " if desc else ""
    return (
        f"\r{head}{n / total * 100:3.0f}%|{glyphs}| {n}/{total} "
        f"[{int(n / rate) // 60:02d}:{int(n / rate) % 60:02d}<{int(left) // 60:02d}:{int(left) % 60:02d}, "
        f"{rate_text}{tail}]"
    )


def header(total: int) -> str:
    config = {"type": "diffusion_trainer", "training_folder": "/data/output", "train": {"steps": total, "lr": 1e-4}}
    lines = ["Running 1 job", json.dumps(config, indent=4), "", "#" * 45, f"# Running job: {JOB}", "#" * 45, ""]
    lines += ["", "Running  1 process", "Loading ZImage model", "Loading transformer", "Quantizing Transformer"]
    lines += ["Text Encoder", "Loading VAE", "Making pipe", "Preparing Model", "Model Loaded"]
    lines += ["Dataset: /data/dataset", "  -  Preprocessing image dimensions", "  -  Found 24 images"]
    text = "\n".join(lines) + "\n" + "".join(bar("Caching latents to disk", i, 24, 9.5) for i in range(25)) + "\n"
    return text + "Generating baseline samples before training\n"


def training(first: int, last: int, total: int) -> str:
    """Steps first..last-1 of a run of `total` steps."""
    out = []
    for step in range(first, last):
        loss = 0.3 + 0.2 * math.exp(-step / 500) + (step * 7919 % 97) / 1000
        post = f"lr: 1.0e-04 loss: {loss:.3e}"
        rate = 1.3 + (step % 17) / 10
        out.append(bar(JOB, step, total, rate, post))
        out.append(bar(JOB, step + 1, total, rate, post))
        if step and step % 250 == 0:
            out.append(f"\nSaving at step {step}\n")
            out.append(f"Saved checkpoint to /data/output/{JOB}/{JOB}_{step:09d}.safetensors\n")
            out.append(f"Saved optimizer to /data/output/{JOB}/optimizer.pt\n")
            if step > 1000:
                out.append(f"Removing old save: /data/output/{JOB}/{JOB}_{step - 1000:09d}.safetensors\n")
            out.append("".join(bar("Generating Samples", i, 4, 0.4) for i in range(5)) + "\n\n")
        if step and step % 100 == 0:
            out.append(f"\nTimer '{JOB} Timer':\n")
            for i, name in enumerate(("train_loop", "predict_noise", "backward")):
                out.append(f" - {0.1 * i:.4f}s avg - {name}, num = 10\n")
            out.append("\n")
    return "".join(out)


def corpus(size: int) -> str:
    """A log stretch of about `size` characters."""
    total = 1_000_000
    text = [header(total)]
    length = len(text[0])
    step = 0
    while length < size:
        part = training(step, step + 500, total)
        text.append(part)
        length += len(part)
        step += 500
    return "".join(text)


def chunks(text: str, limit: int) -> Iterator[str]:
    """64 KiB pieces of `text`, round and round, until `limit` characters."""
    fed = 0
    while fed < limit:
        for i in range(0, len(text), CHUNK):
            piece = text[i : i + CHUNK]
            yield piece
            fed += len(piece)
            if fed >= limit:
                return


def rss_kib() -> tuple[int, int]:
    """(current, peak) resident set size in KiB, from /proc."""
    fields = dict(line.split(":", 1) for line in Path("/proc/self/status").read_text().splitlines() if ":" in line)
    return int(fields["VmRSS"].split()[0]), int(fields["VmHWM"].split()[0])


def main() -> None:
    """Feed the synthetic log and print lines/s and memory."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size-mb", type=float, default=1024, help="how much log to feed, in MiB (default 1024)")
    args = parser.parse_args()
    limit = int(args.size_mb * 1024 * 1024)
    text = corpus(16 * 1024 * 1024)
    log = AitkLogParser(JOB, total_steps=1_000_000)
    rss_start, _ = rss_kib()
    lines = fed = 0
    samples: list[int] = []
    started = time.perf_counter()
    for piece in chunks(text, limit):
        lines += piece.count("\n") + piece.count("\r")
        log.feed(piece)
        fed += len(piece)
        if len(samples) < 8 and fed >= (len(samples) + 1) * limit // 8:
            samples.append(rss_kib()[0])
    log.close()
    seconds = time.perf_counter() - started
    rss_end, peak = rss_kib()
    progress = log.progress
    print(f"fed {fed / 2**20:.0f} MiB ({fed:,} characters) in {seconds:.1f} s: {lines:,} lines")
    print(f"{lines / seconds:,.0f} lines/s, {fed / 2**20 / seconds:.1f} MiB/s")
    print(f"RSS start {rss_start / 1024:.1f} MiB, end {rss_end / 1024:.1f} MiB", end=" ")
    print(f"(peak {peak / 1024:.1f} MiB, reached while building the corpus)")
    print("RSS at each eighth: " + ", ".join(f"{kib / 1024:.1f}" for kib in samples) + " MiB")
    print(f"final: step {progress.step}, loss {progress.loss}, phase {progress.phase}, tail {len(log.tail(10_000))}")


if __name__ == "__main__":
    main()
