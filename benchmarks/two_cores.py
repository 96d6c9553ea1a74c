"""How much work this machine's second core adds: the ceiling of any 2-worker speed-up.

A round with `--workers 2` can be at most as much faster than `--workers 1` as the machine
does two independent one-thread jobs faster than one. On a virtual machine that is not
2x: the two vCPUs may share a physical core, the host's memory bandwidth or its page
faults. This script times one-thread workloads like a partition task's (pure Python, a
DuckDB join and aggregate, a polars sort and group-by, touching 4 GiB of fresh pages),
each alone and as two processes at once, in alternation, and prints the throughput gain
of the pair: 2 x (time alone) / (time of the pair), 2.0 on two real cores. With fewer
--rows the tables fit in the caches and the gain rises (DuckDB 1.85x at 200,000 rows,
1.39x at 4M on the machine of docs/scaling.md).

    .venv/bin/python benchmarks/two_cores.py [--repeats 5] [--rows 4000000] [--workloads python,duckdb,polars,pages]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time

WORKLOADS = {
    "python": """
x = 0
for i in range(25_000_000):
    x += i * i % 7
""",
    "duckdb": """
import duckdb
con = duckdb.connect(config={"threads": 1})
con.execute("SET enable_progress_bar = false")
con.execute(f"CREATE TABLE a AS SELECT i AS k, hash(i) % 1000003 AS g, random() AS v FROM range({ROWS}) t(i)")
con.execute(f"CREATE TABLE b AS SELECT hash(i) % {ROWS} AS k, random() AS w FROM range({ROWS}) t(i)")
con.execute("SELECT g, count(*), sum(v * w) FROM a JOIN b USING (k) GROUP BY g").fetchall()
""",
    # Fresh memory: every GiB is new pages from the kernel (numpy frees each array back to
    # it), the cost a stage pays for every buffer its allocator returned to the system.
    "pages": """
import numpy as np
for _ in range(4):
    block = np.ones(2**27)
    del block
""",
    "polars": """
import os
os.environ["POLARS_MAX_THREADS"] = "1"
import numpy as np
import polars as pl
rng = np.random.default_rng(1)
frame = pl.DataFrame({"g": rng.integers(0, 1_000_003, ROWS), "v": rng.random(ROWS),
                      "s": rng.integers(0, 10**12, ROWS).astype(str)})
frame.sort("s").group_by("g").agg(pl.col("v").sum(), pl.col("s").first())
""",
}


def child_code(workload: str, rows: int, start_at: float) -> str:
    # Both children of a pair start their timed work at the same wall-clock instant,
    # after their imports.
    return (f"ROWS = {rows}\nimport time\ntime.sleep(max({start_at} - time.time(), 0))\nt = time.perf_counter()\n"
            f"{WORKLOADS[workload]}\nprint(time.perf_counter() - t)")


def run(workload: str, rows: int, copies: int) -> float:
    """The slowest of `copies` processes doing the workload at once."""
    code = child_code(workload, rows, time.time() + 3)
    processes = [subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True) for _ in range(copies)]
    return max(float(process.communicate()[0].split()[-1]) for process in processes)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--rows", type=int, default=4_000_000)
    parser.add_argument("--workloads", default=",".join(WORKLOADS))
    args = parser.parse_args()
    results = {}
    for workload in args.workloads.split(","):
        alone, pair = [], []
        for _ in range(args.repeats):
            alone.append(run(workload, args.rows, 1))
            pair.append(run(workload, args.rows, 2))
        single, both = statistics.median(alone), statistics.median(pair)
        results[workload] = {"alone_s": round(single, 2), "pair_s": round(both, 2), "gain": round(2 * single / both, 2),
                             "alone_runs": [round(t, 2) for t in alone], "pair_runs": [round(t, 2) for t in pair]}
        print(f"{workload:8s} alone {single:6.2f} s   two at once {both:6.2f} s   throughput gain {2 * single / both:4.2f}x")
    print(json.dumps(results))


if __name__ == "__main__":
    main()
