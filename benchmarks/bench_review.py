"""Caption review wall time against a stub OpenAI-compatible server with simulated latency: bounded concurrency vs
sequential (concurrency 1), in the same run.

    .venv/bin/python benchmarks/bench_review.py [--captions 100] [--latency 0.2] [--concurrency 4 8]

Each configuration reviews the same folder of tiny PNG + caption pairs through the real path (pydantic-ai's OpenAI
client over HTTP to 127.0.0.1, images as data URLs, the LangGraph workflow with its SQLite checkpoint), from a fresh
checkpoint. The stub answers each request after --latency seconds.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import platform
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from review_fixtures import TRIGGER, StubLLM, make_captioned_folder, numbered_captions

from lora_mcp.review.params import ReviewParams
from lora_mcp.review.runner import make_run, run_review
from lora_mcp.settings import Settings


def review_once(folder: Path, stub: StubLLM, concurrency: int, work: Path) -> float:
    """Seconds for one whole review (fresh checkpoint) at `concurrency`."""
    settings = Settings(home=work / "home", roots=[work], openai_base_url=stub.base_url, review_model="stub")
    params = ReviewParams(folder=str(folder), trigger_word=TRIGGER, model="stub", concurrency=concurrency)
    checkpoint = work / f"review_c{concurrency}_{time.monotonic_ns()}.sqlite"
    start = time.perf_counter()
    asyncio.run(run_review(make_run(params, settings), checkpoint, "bench"))
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--captions", type=int, default=100)
    parser.add_argument("--latency", type=float, default=0.2)
    parser.add_argument("--concurrency", type=int, nargs="+", default=[4, 8])
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp, StubLLM(latency=args.latency) as stub:
        work = Path(tmp)
        folder = make_captioned_folder(work, numbered_captions(args.captions))
        results = {"sequential": review_once(folder, stub, 1, work)}
        for c in args.concurrency:
            results[f"concurrency_{c}"] = review_once(folder, stub, c, work)
        requests = len(stub.seen)
    base = results["sequential"]
    print(f"{args.captions} captions, {args.latency * 1000:.0f} ms per request, {requests} requests in all")
    for name, seconds in results.items():
        print(f"  {name:<16} {seconds:7.2f} s   speed-up x{base / seconds:5.2f}")
    record = {
        "captions": args.captions,
        "latency_s": args.latency,
        "seconds": {k: round(v, 3) for k, v in results.items()},
        "python": platform.python_version(),
    }
    print(json.dumps(record))


if __name__ == "__main__":
    main()
