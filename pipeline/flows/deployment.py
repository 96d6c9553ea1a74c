"""Serve the deployment declared in prefect.yaml, so the schedule lives in one place."""

from __future__ import annotations

from pathlib import Path

import yaml

from pipeline.errors import VervalError


def load_deployment(prefect_yaml: Path, name: str) -> dict:
    config = yaml.safe_load(Path(prefect_yaml).read_text(encoding="utf-8"))
    for deployment in config.get("deployments", []):
        if deployment["name"] == name:
            return deployment
    names = ", ".join(d["name"] for d in config.get("deployments", []))
    raise VervalError(f"{prefect_yaml}: no deployment named {name!r} (found: {names})")


def build_deployment(prefect_yaml: Path, name: str):
    """The flow's deployment as declared in prefect.yaml (schedule, parameters, tags)."""
    from prefect.client.schemas.schedules import CronSchedule

    from pipeline.flows.verval import verval_round

    deployment = load_deployment(prefect_yaml, name)
    schedules = [
        CronSchedule(cron=s["cron"], timezone=s.get("timezone", "Asia/Jakarta"))
        for s in deployment.get("schedules", [])
        if s.get("active", True)
    ]
    return verval_round.to_deployment(
        name=deployment["name"],
        schedules=schedules,
        parameters=deployment.get("parameters", {}),
        description=deployment.get("description"),
        tags=deployment.get("tags"),
    )


def serve_from_prefect_yaml(prefect_yaml: Path, name: str) -> None:
    """Serve until stopped; scheduled runs fire only against a running `prefect server start`."""
    from prefect import serve

    serve(build_deployment(prefect_yaml, name))
