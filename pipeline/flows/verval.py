"""The verification round as a Prefect flow: each stage of pipeline.round runs as a task."""

from __future__ import annotations

import os

os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")

from prefect import flow, task  # noqa: E402
from prefect.cache_policies import NO_CACHE  # noqa: E402

from pipeline.flows.artifacts import publish_artifacts  # noqa: E402
from pipeline.progress import StageClock  # noqa: E402
from pipeline.round import RoundContext, run_round  # noqa: E402


def run_as_task(name: str, function, *args):
    # Stages pass a context object and write Parquet; nothing to cache or persist.
    return task(function, name=name, cache_policy=NO_CACHE, persist_result=False)(*args)


@flow(name="verval-round", description="Verifikasi dan validasi DTKS terhadap Dukcapil")
def verval_round(
    dtks: str,
    dukcapil: str,
    out: str,
    model_path: str | None = None,
    as_of: str | None = None,
    quiet: bool = False,
    decisions: str | None = None,
    decision_log: str | None = None,
    full_nik: bool = False,
    allow_partial_dukcapil: bool = False,
) -> dict:
    ctx = RoundContext(dtks=dtks, dukcapil=dukcapil, out=out, model_path=model_path, decisions=decisions,
                       decision_log=decision_log, full_nik=full_nik, allow_partial_dukcapil=allow_partial_dukcapil)
    if as_of:
        ctx.as_of = as_of
    clock = StageClock(quiet=quiet)
    summary = run_round(ctx, clock, run=run_as_task)
    summary["stage_timings"] = clock.timings
    publish_artifacts(summary)
    return summary
