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


def as_task(name: str, function):
    # Stages pass a context object and write Parquet; nothing to cache or persist.
    return task(function, name=name, cache_policy=NO_CACHE, persist_result=False)


def run_as_task(name: str, function, *args):
    """A stage, run in the flow's process."""
    return as_task(name, function)(*args)


def fan_out_as_tasks(name: str, function, calls: list[tuple]) -> list:
    """Partition tasks submitted to the flow's task runner (a Dask cluster with
    DaskTaskRunner); results in call order."""
    stage = as_task(name, function)
    futures = [stage.submit(*args) for args in calls]
    return [future.result() for future in futures]


def task_runner(workers: int, cluster: str | None):
    """DaskTaskRunner on a temporary LocalCluster of `workers` processes, or on the
    scheduler at `cluster`; None: Prefect's default."""
    from pipeline import partitioned

    if not workers and not cluster:
        return None
    partitioned.require_dask()
    from prefect_dask import DaskTaskRunner

    address = partitioned.scheduler_address(cluster)
    if address:
        return DaskTaskRunner(address=address)
    return DaskTaskRunner(cluster_class="distributed.LocalCluster", cluster_kwargs=partitioned.local_cluster_kwargs(workers))


def run_flow(**parameters) -> dict:
    """verval_round with the task runner its --workers / --cluster ask for."""
    runner = task_runner(parameters.get("workers", 0), parameters.get("cluster"))
    if not runner:
        return verval_round(**parameters)
    previous = os.environ.get("PREFECT_API_URL")
    os.environ["PREFECT_API_URL"] = api_url_for_workers()
    try:
        return verval_round.with_options(task_runner=runner)(**parameters)
    finally:
        if previous is None:
            os.environ.pop("PREFECT_API_URL", None)
        else:
            os.environ["PREFECT_API_URL"] = previous


def api_url_for_workers() -> str:
    """The Prefect API the Dask workers report their task runs to. Without PREFECT_API_URL
    each worker process would start a temporary server of its own (slow, and the flow run
    would not see its tasks): start the temporary server here, before the cluster, and
    hand its address to the workers through the environment they inherit. On a remote
    cluster PREFECT_API_URL must name a server the workers can reach."""
    from prefect.settings import PREFECT_API_URL

    url = PREFECT_API_URL.value()
    if not url:
        from prefect.server.api.server import SubprocessASGIServer

        server = SubprocessASGIServer()  # the same instance the flow's client then uses
        server.start()
        url = server.api_url
    return url


# The round's outputs are its files: Prefect persists no result (it still keeps a failed
# run's exception, whose message carries no data).
@flow(name="verval-round", description="Verifikasi dan validasi DTKS terhadap Dukcapil", persist_result=False)
def verval_round(
    dtks: str,
    dukcapil: str,
    out: str,
    model_path: str | None = None,
    link_model_path: str | None = None,
    as_of: str | None = None,
    quiet: bool = False,
    decisions: str | list[str] | None = None,
    decision_log: str | None = None,
    full_nik: bool = False,
    objections: str | None = None,
    allow_partial_dukcapil: bool = False,
    ineligible: list[str] | None = None,
    partitions: int = 0,
    workers: int = 0,
    cluster: str | None = None,
) -> dict:
    ctx = RoundContext(dtks=dtks, dukcapil=dukcapil, out=out, model_path=model_path, link_model_path=link_model_path,
                       decisions=decisions,
                       decision_log=decision_log, objections=objections, full_nik=full_nik,
                       allow_partial_dukcapil=allow_partial_dukcapil, partitions=partitions, workers=workers, cluster=cluster,
                       ineligible=list(ineligible or []))
    if as_of:
        ctx.as_of = as_of
    clock = StageClock(quiet=quiet)
    summary = run_round(ctx, clock, run=run_as_task, fan_out=fan_out_as_tasks)
    summary["stage_timings"] = clock.timings
    publish_artifacts(summary)
    return summary
