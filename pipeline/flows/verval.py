"""The verification round as a Prefect flow: each stage of pipeline.round runs as a task."""

from __future__ import annotations

import os

os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")

import logging  # noqa: E402

from prefect import flow, task  # noqa: E402
from prefect.cache_policies import NO_CACHE  # noqa: E402

from pipeline.errors import VervalError  # noqa: E402
from pipeline.flows.artifacts import publish_artifacts  # noqa: E402
from pipeline.progress import StageClock  # noqa: E402
from pipeline.round import RoundContext, run_round  # noqa: E402


class NoTracebackForVervalErrors(logging.Filter):
    """Prefect logs a failed run's exception with its traceback, on the terminal and in its
    database. A VervalError already says what, where and what to do, without data: the
    traceback adds nothing for the user."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.exc_info and isinstance(record.exc_info[1], VervalError):
            record.exc_info = None
            record.exc_text = None
        return True


for _name in ("prefect.task_runs", "prefect.flow_runs"):
    logging.getLogger(_name).addFilter(NoTracebackForVervalErrors())


def run_as_task(name: str, function, *args):
    # Stages pass a context object and write Parquet; nothing to cache or persist.
    return task(function, name=name, cache_policy=NO_CACHE, persist_result=False)(*args)


# The round's outputs are its files: Prefect persists no result (it still keeps a failed
# run's exception, whose message carries no data).
@flow(name="verval-round", description="Verifikasi dan validasi DTKS terhadap Dukcapil", persist_result=False)
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
    objections: str | None = None,
    allow_partial_dukcapil: bool = False,
    ineligible: list[str] | None = None,
) -> dict:
    ctx = RoundContext(dtks=dtks, dukcapil=dukcapil, out=out, model_path=model_path, decisions=decisions,
                       decision_log=decision_log, objections=objections, full_nik=full_nik,
                       allow_partial_dukcapil=allow_partial_dukcapil, ineligible=list(ineligible or []))
    if as_of:
        ctx.as_of = as_of
    clock = StageClock(quiet=quiet)
    summary = run_round(ctx, clock, run=run_as_task)
    summary["stage_timings"] = clock.timings
    publish_artifacts(summary)
    return summary
