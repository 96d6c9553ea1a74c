"""Load benchmark of `verval status-server` on the loopback address.

    .venv/bin/verval sample --n 1000000 --seed 7 --out /tmp/s1m
    .venv/bin/verval run --no-prefect --dtks /tmp/s1m/dtks.csv --dukcapil /tmp/s1m/dukcapil.csv --out /tmp/r1m
    .venv/bin/python benchmarks/status_server_load.py --round /tmp/r1m

Builds the round's status index again (timed), starts the server in a child process and
drives it with N concurrent keep-alive clients, each from its own loopback address
(127.0.0.2, 127.0.0.3, ...) so each is its own client for the rate limit. Queries are
people of the round asked by NIK + name and by desa + name, and unknown people, mixed.
  phase 1 (capacity): the rate limit raised out of reach, clients in a closed loop;
  phase 2 (rate limit): the default limit (pipeline/rules/lookup.toml), same clients.
Prints p50/p95/p99 latency of answered and refused requests, throughput and refusals.
The client is a minimal HTTP/1.1 writer/reader on asyncio streams so that it takes as
little of the (shared) CPU as possible; run it on an otherwise idle machine to compare.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import polars as pl

PROJECT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(PROJECT))


def queries(round_dir: Path, n: int, seed: int) -> list[bytes]:
    """Request bodies: 40% NIK + name, 40% desa + name of people in the round (names with
    the spelling typed as registered), 20% unknown (right NIK, another name)."""
    frames = [pl.read_parquet(round_dir / f, columns=["nik", "nama", "kode_wilayah"])
              for f in ("verified_recipients.parquet", "review.parquet", "excluded.parquet")]
    people = pl.concat(frames).filter(pl.col("nik").str.contains(r"^\d{16}$")).sample(n=n, seed=seed)
    rng = random.Random(seed)
    bodies = []
    for nik, nama, desa in people.iter_rows():
        draw = rng.random()
        if draw < 0.4:
            body = {"cara": "nik", "nik": nik, "nama": nama}
        elif draw < 0.8:
            body = {"cara": "wilayah", "desa": desa, "nama": nama}
        else:
            body = {"cara": "nik", "nik": nik, "nama": "NAMA LAIN SEKALI"}
        bodies.append(json.dumps(body).encode())
    return bodies


def request_bytes(body: bytes) -> bytes:
    return (b"POST /api/cek HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body)


async def one_client(i: int, port: int, bodies: list[bytes], stop_at: float, out: list, per_second: float | None) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port, local_addr=(f"127.0.0.{i + 2}", 0))
    k = i
    next_at = time.perf_counter() + (i / 50) / (per_second or 1)  # paced clients start spread out
    try:
        while time.perf_counter() < stop_at:
            if per_second:
                await asyncio.sleep(max(0.0, next_at - time.perf_counter()))
                next_at += 1 / per_second
            payload = request_bytes(bodies[k % len(bodies)])
            k += 7
            started = time.perf_counter()
            writer.write(payload)
            await writer.drain()
            head = await reader.readuntil(b"\r\n\r\n")
            status = int(head[9:12])
            length = 0
            for line in head.split(b"\r\n"):
                if line.lower().startswith(b"content-length:"):
                    length = int(line.split(b":")[1])
            await reader.readexactly(length)
            out.append((status, time.perf_counter() - started))
    finally:
        writer.close()


async def drive(port: int, clients: int, seconds: float, bodies: list[bytes], per_second: float | None = None) -> list[tuple[int, float]]:
    """Clients in a closed loop (per_second None: the next request as soon as the answer
    is in) or each paced at per_second requests per second."""
    out: list[tuple[int, float]] = []
    stop_at = time.perf_counter() + seconds
    await asyncio.gather(*(one_client(i, port, bodies, stop_at, out, per_second) for i in range(clients)))
    return out


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(round_dir: Path, port: int, queue: Path, per_minute: float | None, burst: int | None) -> subprocess.Popen:
    command = [str(PROJECT / ".venv" / "bin" / "verval"), "status-server", "--round", str(round_dir),
               "--port", str(port), "--objections", str(queue)]
    if per_minute is not None:
        command += ["--rate-per-minute", str(per_minute), "--burst", str(burst)]
    server = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return server
        except OSError:
            if server.poll() is not None:
                raise RuntimeError(server.stdout.read())
            time.sleep(0.2)
    server.kill()
    raise RuntimeError("server did not start")


def summarise(label: str, results: list[tuple[int, float]], seconds: float) -> None:
    print(f"\n{label}: {len(results):,} requests in {seconds:.0f} s = {len(results) / seconds:,.0f} per second")
    for status in sorted({s for s, _ in results}):
        ms = np.array([t for s, t in results if s == status]) * 1000
        p50, p95, p99 = np.percentile(ms, [50, 95, 99])
        print(f"  HTTP {status}: {len(ms):>8,}  p50 {p50:6.1f} ms  p95 {p95:6.1f} ms  p99 {p99:6.1f} ms  max {ms.max():6.1f} ms")
    ms = np.array([t for _, t in results]) * 1000
    print(f"  all     : {len(ms):>8,}  p50 {np.percentile(ms, 50):6.1f} ms  p95 {np.percentile(ms, 95):6.1f} ms  "
          f"p99 {np.percentile(ms, 99):6.1f} ms")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--round", required=True, help="output folder of a round")
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--seconds", type=float, default=20)
    parser.add_argument("--queries", type=int, default=20_000)
    parser.add_argument("--no-rebuild", action="store_true", help="use the round's index as it is")
    args = parser.parse_args()
    round_dir = Path(args.round)
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")

    from pipeline.lookup.index import build_index

    rows = sum(pl.scan_parquet(round_dir / f).select(pl.len()).collect().item()
               for f in ("verified_recipients.parquet", "review.parquet", "excluded.parquet"))
    if not args.no_rebuild:
        started = time.perf_counter()
        built = build_index(round_dir)
        print(f"index build: {rows:,} rows -> {built['entries']:,} entries, {built['people']:,} people "
              f"in {time.perf_counter() - started:.1f} s")
    bodies = queries(round_dir, args.queries, seed=7)
    queue = Path(tempfile.mkdtemp(prefix="verval-load-")) / "objections.jsonl"
    try:
        import httptools  # noqa: F401
        parser = "httptools"
    except ImportError:
        parser = "h11 (pure Python)"
    print(f"uvicorn HTTP parser: {parser}; CPU cores: {os.cpu_count()}; load average before: {os.getloadavg()[0]:.2f}")
    phases = (
        ("phase 1, capacity: rate limit out of reach, closed loop", 10_000_000, 10_000_000, None),
        ("phase 2, default rate limit, closed loop (clients ignore Retry-After)", None, None, None),
        ("phase 3, default rate limit, each client 2 requests/s (4x its limit)", None, None, 2.0),
    )
    for label, per_minute, burst, pace in phases:
        port = free_port()
        server = start_server(round_dir, port, queue, per_minute, burst)
        try:
            if per_minute is not None:
                asyncio.run(drive(port, args.clients, 2, bodies))  # warm-up (would spend the later phases' bursts)
            started = time.perf_counter()
            results = asyncio.run(drive(port, args.clients, args.seconds, bodies, pace))
            summarise(f"{label}, {args.clients} clients", results, time.perf_counter() - started)
        finally:
            server.terminate()
            server.wait(timeout=30)
    return 0


if __name__ == "__main__":
    sys.exit(main())
