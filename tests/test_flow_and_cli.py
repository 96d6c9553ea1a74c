"""The round through Prefect and through the command line."""

import json
import subprocess
import sys

import polars as pl
import pytest
import yaml

from pipeline.cli import main
from pipeline.paths import PROJECT_DIR


def test_flow_runs_the_round_as_tasks(prefect_harness, small_extracts, capsys, caplog):
    from prefect.client.orchestration import get_client

    from pipeline.flows.verval import verval_round

    out = small_extracts["dir"] / "flow-out"
    state = verval_round(
        dtks=str(small_extracts["dtks"]), dukcapil=str(small_extracts["dukcapil"]), out=str(out),
        as_of="2026-11-21", quiet=True, return_state=True,
    )
    assert state.is_completed()
    summary = state.result()
    assert summary["reconciliation"]["balanced"] is True
    assert pl.read_parquet(out / "verified_recipients.parquet").height == 2

    import asyncio

    from prefect.client.schemas.filters import (
        ArtifactFilter, ArtifactFilterFlowRunId, FlowRunFilter, FlowRunFilterId,
    )

    # The harness is shared by the whole session: read only this flow run's records.
    this_run = state.state_details.flow_run_id

    async def task_names():
        async with get_client() as client:
            runs = await client.read_task_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[this_run])))
            return {run.name.rsplit("-", 1)[0] for run in runs}

    names = asyncio.run(task_names())
    assert {"ingest-dtks", "nik-checks", "link-civil-registry", "find-duplicates", "decide", "publish"} <= names

    async def artifacts():
        async with get_client() as client:
            return await client.read_artifacts(artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[this_run])))

    published = {a.key: a for a in asyncio.run(artifacts())}
    assert "Rekonsiliasi (seimbang)" in published["verval-ringkasan"].data
    table = json.loads(published["verval-anomali"].data)
    assert {row["kode"] for row in table} >= {"DECEASED", "DUPLICATE_PERSON"}
    monev = json.loads(published["verval-monev"].data)
    assert [row["putaran"] for row in monev] == ["2026-11-21"]
    assert monev[0]["Terverifikasi"] == 2 and monev[0]["Salah sasaran ditemukan per 1.000 baris"] == 250.0

    # Personal data: no full NIK and no name in the logs or the artifacts of the run.
    captured = capsys.readouterr()
    text = (captured.out + captured.err + caplog.text + published["verval-ringkasan"].data + published["verval-anomali"].data
            + published["verval-monev"].data)
    dtks = pl.read_csv(small_extracts["dtks"], infer_schema=False)
    for nik in dtks["nik"].drop_nulls().to_list():
        if len(nik) == 16 and nik.isdigit():
            assert nik not in text
    for name in dtks["nama"].drop_nulls().to_list():
        assert name not in text and name.upper() not in text


def test_cli_run_without_prefect(small_extracts, capsys):
    out = small_extracts["dir"] / "cli-out"
    code = main(["run", "--dtks", str(small_extracts["dtks"]), "--dukcapil", str(small_extracts["dukcapil"]),
                 "--out", str(out), "--no-prefect", "--quiet", "--as-of", "2026-11-21"])
    assert code == 0
    assert json.loads((out / "summary.json").read_text())["reconciliation"]["rows_in"] == 9


def test_cli_missing_column_exits_non_zero_with_message(small_extracts, capsys):
    small_extracts["dtks"].write_text("id_dtks,nama\nD1,SITI\n")
    code = main(["run", "--dtks", str(small_extracts["dtks"]), "--dukcapil", str(small_extracts["dukcapil"]),
                 "--out", str(small_extracts["dir"] / "o"), "--no-prefect", "--quiet"])
    err = capsys.readouterr().err
    assert code == 2
    assert "lacks required column(s): nik" in err and "Traceback" not in err


def test_cli_missing_file_is_a_clear_error():
    result = subprocess.run(
        [sys.executable, "-m", "pipeline.cli", "run", "--dtks", "nope.csv", "--dukcapil", "nope2.csv", "--no-prefect", "--quiet"],
        capture_output=True, text=True, cwd=PROJECT_DIR,
    )
    assert result.returncode == 2
    assert "--dtks nope.csv: file not found" in result.stderr


@pytest.mark.parametrize("option,content,says", [
    ("--model", None, "file not found"),
    ("--model", '{"comparisons": []}', "matching model lacks 'prior_log2_odds'"),
    ("--link-model", '{"prior_log2_odds": -6,\n "thresholds": ', "not valid JSON (line 2, column"),
    ("--link-model", '{"prior_log2_odds": -6, "thresholds": {}, "blocking_rules": [], "comparisons": [{"name": "x"}]}',
     "not a matching model"),
])
def test_a_model_file_that_cannot_be_used_stops_the_round_before_any_work(small_extracts, capsys, option, content, says):
    model = small_extracts["dir"] / "model.json"
    if content is not None:
        model.write_text(content)
    out = small_extracts["dir"] / "model-out"
    code = main(["run", "--dtks", str(small_extracts["dtks"]), "--dukcapil", str(small_extracts["dukcapil"]),
                 "--out", str(out), "--no-prefect", "--quiet", option, str(model)])
    err = capsys.readouterr().err
    assert code == 2 and f"{option} {model}: {says}" in err and "Traceback" not in err
    assert not out.exists()  # nothing ingested, no folder left behind


@pytest.mark.parametrize("as_of", ["2026-13-45", "21/11/2026", "20261121"])
def test_a_round_date_that_is_not_yyyy_mm_dd_stops_the_round_before_any_work(small_extracts, capsys, as_of):
    out = small_extracts["dir"] / "as-of-out"
    code = main(["run", "--dtks", str(small_extracts["dtks"]), "--dukcapil", str(small_extracts["dukcapil"]),
                 "--out", str(out), "--no-prefect", "--quiet", "--as-of", as_of])
    err = capsys.readouterr().err
    assert code == 2 and f"--as-of {as_of}: not a date" in err and not out.exists()


def test_a_damaged_objections_queue_is_named_in_the_round_s_warnings(small_extracts, capsys):
    queue = small_extracts["dir"] / "objections.jsonl"
    queue.write_text('{"id": "TGP-1", "id_dtks": "D001", "filed_at": "2026-11-01"}\nedited by hand {\n')
    out = small_extracts["dir"] / "queue-out"
    code = main(["run", "--dtks", str(small_extracts["dtks"]), "--dukcapil", str(small_extracts["dukcapil"]),
                 "--out", str(out), "--no-prefect", "--quiet", "--as-of", "2026-11-21", "--objections", str(queue)])
    assert code == 0
    warnings = json.loads((out / "summary.json").read_text())["warnings"]
    assert any("1 line(s) are no complete objection" in w and "(line 2)" in w for w in warnings)
    assert "objections" in json.loads((out / "summary.json").read_text())


def test_the_link_model_can_be_given_for_a_round(small_extracts):
    declared = json.loads((PROJECT_DIR / "pipeline" / "rules" / "link_model.json").read_text())
    declared["description"] = "a stricter link for this round"
    declared["thresholds"]["link_probability"] = 0.999999
    model = small_extracts["dir"] / "strict_link.json"
    model.write_text(json.dumps(declared))
    out = small_extracts["dir"] / "link-model-out"
    code = main(["run", "--dtks", str(small_extracts["dtks"]), "--dukcapil", str(small_extracts["dukcapil"]),
                 "--out", str(out), "--no-prefect", "--quiet", "--as-of", "2026-11-21", "--link-model", str(model)])
    assert code == 0
    used = json.loads((out / "link_model.json").read_text())
    assert used["description"] == "a stricter link for this round" and used["thresholds"]["link_probability"] == 0.999999


def test_prefect_yaml_schedules_twice_a_year_in_jakarta():
    from pipeline.flows.deployment import load_deployment

    deployment = load_deployment(PROJECT_DIR / "prefect.yaml", "verval-semesteran")
    schedule = deployment["schedules"][0]
    assert schedule["cron"] == "0 2 1 1,7 *" and schedule["timezone"] == "Asia/Jakarta"
    module, function = deployment["entrypoint"].split(":")
    assert (PROJECT_DIR / module).exists() and function == "verval_round"
    assert set(deployment["parameters"]) >= {"dtks", "dukcapil", "out", "decision_log"}
    assert yaml.safe_load((PROJECT_DIR / "prefect.yaml").read_text())["name"] == "verval"


def test_serve_builds_the_scheduled_deployment():
    from pipeline.flows.deployment import build_deployment

    deployment = build_deployment(PROJECT_DIR / "prefect.yaml", "verval-semesteran")
    schedule = deployment.schedules[0].schedule
    assert (schedule.cron, schedule.timezone) == ("0 2 1 1,7 *", "Asia/Jakarta")
    assert deployment.parameters["out"] == "reports/semesteran"
    assert deployment.name == "verval-semesteran"


def test_sample_too_small_is_a_clear_error(tmp_path, capsys):
    code = main(["sample", "--n", "200", "--out", str(tmp_path / "s")])
    err = capsys.readouterr().err
    assert code == 2 and "sample --n 200: n must be at least 1000" in err and "Traceback" not in err


def _without_prefect_api(tmp_path) -> dict:
    import os

    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_API")}
    env["PREFECT_HOME"] = str(tmp_path / "prefect-home")
    return env


def test_cli_run_through_prefect_uses_the_server_it_started_first(small_extracts, tmp_path):
    # The command boots Prefect's API server before its imports (pipeline/flows/
    # early_server.py): Prefect must not start a temporary one of its own.
    out = small_extracts["dir"] / "cli-prefect-out"
    result = subprocess.run(
        [sys.executable, "-m", "pipeline.cli", "run", "--dtks", str(small_extracts["dtks"]), "--dukcapil",
         str(small_extracts["dukcapil"]), "--out", str(out), "--quiet", "--as-of", "2026-11-21"],
        capture_output=True, text=True, cwd=PROJECT_DIR, env=_without_prefect_api(tmp_path), timeout=300,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    log = result.stdout + result.stderr
    assert "Beginning flow run" in log
    assert "Starting temporary server" not in log and "Traceback" not in log
    assert json.loads((out / "summary.json").read_text())["reconciliation"]["rows_in"] == 9


EARLY_SERVER_THAT_FAILS = """
import sys
from pipeline.flows.early_server import EarlyServer
server = EarlyServer(command=lambda port: [sys.executable, "-c", "raise SystemExit(1)"])
from prefect.settings import PREFECT_API_URL
with server.serving():
    print("api", PREFECT_API_URL.value(), "process", server.process)
"""


def test_an_early_server_that_does_not_start_leaves_prefect_to_start_its_own(tmp_path):
    result = subprocess.run([sys.executable, "-c", EARLY_SERVER_THAT_FAILS], capture_output=True, text=True,
                            cwd=PROJECT_DIR, env=_without_prefect_api(tmp_path), timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "api None process None" in result.stdout
