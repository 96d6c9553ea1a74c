"""Stage timing and peak memory, shown on the terminal with rich as the round runs."""

from __future__ import annotations

import os
import resource
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass, field

import psutil
from rich.console import Console
from rich.table import Table

console = Console(stderr=True)


class _PeakSampler:
    """Samples this process's RSS (DuckDB and polars allocate natively) every 50 ms."""

    def __init__(self) -> None:
        self._process = psutil.Process(os.getpid())
        self.peak = self._process.memory_info().rss
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(0.05):
            self.peak = max(self.peak, self._process.memory_info().rss)

    def __enter__(self) -> "_PeakSampler":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self._process.memory_info().rss)


def _cpu_seconds() -> float:
    """CPU time of this process's threads and of its finished child processes (the
    workbook writers): over a stage's wall time, how many cores it kept busy."""
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


@dataclass
class StageClock:
    """Collects (stage, seconds, peak RSS MiB) in the order stages ran."""

    quiet: bool = False
    timings: list[dict] = field(default_factory=list)

    @contextmanager
    def stage(self, name: str):
        start, cpu_start = time.perf_counter(), _cpu_seconds()
        status = None if self.quiet else console.status(f"[bold]{name}[/bold] ...", spinner="dots")
        if status:
            status.start()
        try:
            with _PeakSampler() as sampler:
                yield
        finally:
            if status:
                status.stop()
        seconds, cpu = time.perf_counter() - start, _cpu_seconds() - cpu_start
        self.timings.append({"stage": name, "seconds": round(seconds, 3), "peak_rss_mib": round(sampler.peak / 2**20, 1),
                             "cpu_seconds": round(cpu, 3)})
        if not self.quiet:
            console.print(f"  [green]✓[/green] {name:<28} {seconds:7.2f} s   peak {sampler.peak / 2**20:8.0f} MiB"
                          f"   cpu {cpu:7.2f} s")

    def table(self) -> Table:
        table = Table(title="Waktu per tahap / stage timings")
        table.add_column("stage")
        table.add_column("seconds", justify="right")
        table.add_column("peak RSS MiB", justify="right")
        for row in self.timings:
            table.add_row(row["stage"], f"{row['seconds']:.2f}", f"{row['peak_rss_mib']:.0f}")
        total = sum(row["seconds"] for row in self.timings)
        peak = max((row["peak_rss_mib"] for row in self.timings), default=0)
        table.add_row("[bold]total[/bold]", f"[bold]{total:.2f}[/bold]", f"[bold]{peak:.0f}[/bold]")
        return table
