"""One verification round as file-level stages. Each stage reads Parquet from the run's
work folder, calls the table functions of its module, and writes Parquet back; the
Prefect flow (pipeline/flows/verval.py) only wires these together.

Outputs are built in a temporary sibling folder and moved into place by `publish` only
when complete, so a failed run leaves the previous outputs untouched.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import shutil
import uuid
from dataclasses import asdict, dataclass, field
from importlib import metadata
from pathlib import Path

import duckdb
import polars as pl

from pipeline import __version__, contract, decisions
from pipeline.checks.expectations import validate_extract
from pipeline.checks.nik import check_niks
from pipeline.decide import reconcile, row_outcomes, sort_anomalies, split_outcomes
from pipeline.ingest import ingest_extract
from pipeline.matching import dedupe, link
from pipeline.matching.estimate import drift_table
from pipeline.matching.sql import register_macros
from pipeline.matching.model import LINK_MODEL_PATH, load_model, save_model, with_weights
from pipeline.progress import StageClock

JAKARTA = dt.timezone(dt.timedelta(hours=7))
PACKAGES = ("polars", "duckdb", "pyarrow", "prefect", "great-expectations", "rapidfuzz", "jellyfish", "rich")


@dataclass
class RoundContext:
    dtks: str
    dukcapil: str
    out: str
    model_path: str | None = None
    link_model_path: str | None = None
    decisions: str | None = None
    decision_log: str | None = None
    objections: str | None = None
    full_nik: bool = False
    as_of: str = field(default_factory=lambda: dt.datetime.now(JAKARTA).date().isoformat())
    duckdb_memory_limit: str = "3GB"
    threads: int = 2
    work: str = ""
    started_at: str = field(default_factory=lambda: dt.datetime.now(JAKARTA).isoformat(timespec="seconds"))

    def __post_init__(self) -> None:
        if not self.work:
            out = Path(self.out).resolve()
            self.work = str(out.parent / f".{out.name}.tmp-{uuid.uuid4().hex[:8]}")

    @property
    def work_dir(self) -> Path:
        return Path(self.work)

    @property
    def staging_dir(self) -> Path:
        return self.work_dir / "staging"

    def path(self, name: str) -> Path:
        return self.work_dir / name

    def connect(self) -> duckdb.DuckDBPyConnection:
        con = duckdb.connect(config={"memory_limit": self.duckdb_memory_limit, "threads": self.threads})
        con.execute(f"SET temp_directory = '{self.work_dir / 'duckdb_tmp'}'")
        return register_macros(con)

    def parameters(self) -> dict:
        return {k: v for k, v in asdict(self).items() if k not in ("work", "started_at")}


# --------------------------------------------------------------------------- stages


def prepare(ctx: RoundContext) -> dict:
    """Fail before any work if an input is missing; create the work folder."""
    from pipeline.errors import InputError

    for label, value in (("--dtks", ctx.dtks), ("--dukcapil", ctx.dukcapil)):
        if not Path(value).is_file():
            raise InputError(f"{label} {value}: file not found")
    # Personal data (UU 27/2022): the work folder is owner-only from the start.
    ctx.work_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    ctx.staging_dir.mkdir(mode=0o700, exist_ok=True)
    return {"work": ctx.work}


def ingest(ctx: RoundContext, kind: str) -> dict:
    source = ctx.dtks if kind == "dtks" else ctx.dukcapil
    return ingest_extract(Path(source), kind, ctx.staging_dir, ctx.as_of).to_dict()


def expectations(ctx: RoundContext, kind: str) -> dict:
    return validate_extract(pl.read_parquet(ctx.staging_dir / f"{kind}.parquet"), kind)


def gather_decisions(ctx: RoundContext) -> dict:
    found = decisions.gather(ctx.decisions, ctx.decision_log, recorded_at=ctx.started_at)
    found["effective"].write_parquet(ctx.staging_dir / "decisions.parquet")
    found["malformed"].write_parquet(ctx.path("decisions_rejected.parquet"))
    return {"new_rows": found["new"], "appended_to_log": found["appended"], "effective": found["effective"].height,
            "malformed": found["malformed"].height, "log": ctx.decision_log}


def gather_objections(ctx: RoundContext) -> dict:
    """Objections filed on the status page: CITIZEN_OBJECTION cases for reviewers, and the
    state of each objection (objections.parquet)."""
    from pipeline.lookup import objections

    dtks_ids = pl.read_parquet(ctx.staging_dir / "dtks.parquet", columns=["id_dtks"])["id_dtks"]
    anomalies, state = objections.objection_cases(
        objections.read_queue(Path(ctx.objections) if ctx.objections else None),
        pl.read_parquet(ctx.staging_dir / "decisions.parquet"), dtks_ids,
    )
    anomalies.write_parquet(ctx.staging_dir / "anomalies_obj.parquet")
    state.write_parquet(ctx.path("objections.parquet"))
    counts = dict(state.group_by("state").len().iter_rows())
    return {"queue": ctx.objections, "objections": state.height,
            **{key: counts.get(key, 0) for key in ("open", "accepted", "rejected", "stale")}}


def nik_checks(ctx: RoundContext) -> dict:
    dtks = pl.read_parquet(ctx.staging_dir / "dtks.parquet")
    facts, anomalies = check_niks(dtks)
    facts.write_parquet(ctx.staging_dir / "nik_checks.parquet")
    anomalies.write_parquet(ctx.staging_dir / "anomalies_nik.parquet")
    return {"rows": facts.height, "valid": int(facts["nik_valid"].sum()), "anomalies": anomalies.height}


def link_civil_registry(ctx: RoundContext) -> dict:
    dtks = pl.read_parquet(ctx.staging_dir / "dtks.parquet")
    records = dedupe.prepare_records(dtks, pl.read_parquet(ctx.staging_dir / "nik_checks.parquet"))
    del dtks
    model = load_model(Path(ctx.link_model_path) if ctx.link_model_path else LINK_MODEL_PATH)
    con = ctx.connect()
    try:
        link.load_dukcapil(con, str(ctx.staging_dir / "dukcapil.parquet"))
        exact = link.link_exact(con, records)
        records = dedupe.mark_verified(records, exact)
        fuzzy, blocking = link.link_fuzzy(con, records.filter(~pl.col("nik_verified")), model)
    finally:
        con.close()
    anomalies = pl.concat([link.link_anomalies(records, exact), link.fuzzy_anomalies(fuzzy)])
    resolution = link.resolve(records, exact, fuzzy, model["thresholds"]["resolve_probability"])
    resolution.write_parquet(ctx.path("resolution.parquet"))
    link.with_resolution(records, resolution).write_parquet(ctx.staging_dir / "records.parquet")
    pl.concat([exact, fuzzy], how="diagonal_relaxed").sort("id_dtks", "link_method").write_parquet(ctx.path("dukcapil_links.parquet"))
    anomalies.write_parquet(ctx.staging_dir / "anomalies_link.parquet")
    save_model(with_weights(model), ctx.path("link_model.json"))
    return {
        "exact_links": exact.height,
        "identity": dict(exact.group_by("identity").len().sort("identity").iter_rows()),
        "dukcapil_nik_repeats": int((exact["dukcapil_candidates"] > 1).sum()),
        "fuzzy_queries": int((~records["nik_verified"]).sum()),
        "fuzzy_links": fuzzy.height,
        "fuzzy_ambiguous": int(fuzzy["ambiguous"].sum()),
        "resolution": dict(resolution.group_by("resolution").len().sort("resolution").iter_rows()),
        "fuzzy_blocking": blocking.to_dicts(),
        "anomalies": anomalies.height,
    }


def find_duplicates(ctx: RoundContext) -> dict:
    model = load_model(Path(ctx.model_path) if ctx.model_path else None)
    records_path = ctx.staging_dir / "records.parquet"
    cannot_link = decisions.cannot_link_pairs(pl.read_parquet(ctx.staging_dir / "decisions.parquet"))
    con = ctx.connect()
    try:
        found = dedupe.find_duplicates(con, str(records_path), model, cannot_link=cannot_link)
    finally:
        con.close()
    clusters = found["clusters"]
    records = pl.read_parquet(records_path, columns=["id_dtks", "nik", "nik_format_ok"])
    anomalies = pl.concat([dedupe.duplicate_anomalies(clusters, model), dedupe.shared_nik_anomalies(records, clusters)])
    clusters.select("id_dtks", "cluster_id", "cluster_size", "is_canonical", "canonical_id_dtks", "match_probability", "evidence",
                    "exclusion_evidence").write_parquet(
        ctx.path("duplicate_clusters.parquet")
    )
    found["pairs"].write_parquet(ctx.path("duplicate_pairs.parquet"))
    anomalies.write_parquet(ctx.staging_dir / "anomalies_dup.parquet")
    save_model(with_weights(found["model"]), ctx.path("model.json"))
    return {
        "clusters_gt1": int(clusters.filter(pl.col("cluster_size") > 1)["cluster_id"].n_unique()),
        "rows_in_clusters_gt1": int((clusters["cluster_size"] > 1).sum()),
        "pairs_scored_reported": found["pairs"].height,
        "model_fit": found["model"].get("fit"),
        "model_drift": drift_table(found["model"]),
        "blocking": found["blocking"].to_dicts(),
    }


def decide(ctx: RoundContext, ingest_results: dict[str, dict]) -> dict:
    from pipeline.lookup import objections

    dtks = pl.read_parquet(ctx.staging_dir / "dtks.parquet")
    fuzzy = pl.read_parquet(ctx.path("dukcapil_links.parquet")).filter(pl.col("link_method") == "fuzzy")
    anomalies = sort_anomalies(
        link.attach_suggested_nik(
            pl.concat([pl.read_parquet(ctx.staging_dir / f"anomalies_{part}.parquet") for part in ("nik", "link", "dup", "obj")]),
            fuzzy,
        )
    )
    anomalies = objections.hold_contested(anomalies, objections.held_rows(pl.read_parquet(ctx.path("objections.parquet"))))
    anomalies, decision_status = decisions.apply_decisions(
        anomalies, pl.read_parquet(ctx.staging_dir / "decisions.parquet"), dtks["id_dtks"]
    )
    repairs = anomalies.filter(pl.col("nik_repair").is_not_null()).select("id_dtks", "nik_repair").unique("id_dtks", keep="first")
    anomalies = anomalies.drop("nik_repair")
    decision_status.write_parquet(ctx.path("decisions_applied.parquet"))
    outcomes = row_outcomes(dtks, anomalies)
    quarantine = pl.concat(
        [pl.read_parquet(ctx.staging_dir / f"{kind}_quarantine.parquet") for kind in contract.EXTRACT_KINDS]
    )
    reconciliation = reconcile(ingest_results["dtks"]["rows_read"], outcomes, ingest_results["dtks"]["rows_quarantined"])
    # A NIK repair confirmed by a reviewer is applied to the outputs; the original stays.
    dtks = dtks.join(repairs, on="id_dtks", how="left").with_columns(
        nik_asli=pl.col("nik"), nik=pl.coalesce("nik_repair", "nik")
    ).drop("nik_repair")
    tables = split_outcomes(dtks, outcomes, pl.read_parquet(ctx.path("duplicate_clusters.parquet")))
    for outcome, table in tables.items():
        table.write_parquet(ctx.path(contract.outcome_rules()[outcome].file))
    anomalies.write_parquet(ctx.path("anomalies.parquet"))
    quarantine.write_parquet(ctx.path("quarantine.parquet"))
    by_code = (
        anomalies.group_by("anomaly_code", "action").len().sort("anomaly_code", "action")
        .pivot(on="action", index="anomaly_code", values="len").fill_null(0)
    )
    codes = {row["anomaly_code"]: {k: v for k, v in row.items() if k != "anomaly_code"} for row in by_code.to_dicts()}
    return {
        "decisions": {
            "applied": int(decision_status["status"].str.starts_with("applied").sum()),
            "stale": int(decision_status["status"].str.starts_with("stale").sum()),
            "nik_repairs": repairs.height,
            "by_status": dict(decision_status.group_by("status").len().sort("status").iter_rows()),
        },
        "reconciliation": reconciliation,
        "anomalies_by_code": {code: codes.get(code, {}) for code in contract.ANOMALY_CODES},
        "dukcapil_quarantined": ingest_results["dukcapil"]["rows_quarantined"],
    }


def write_summary(ctx: RoundContext, summary: dict) -> dict:
    ctx.path("summary.json").write_text(json.dumps(summary, indent=2, ensure_ascii=False, default=str) + "\n")
    return {"path": str(ctx.path("summary.json"))}


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(8 * 1024 * 1024):
            digest.update(chunk)
    return digest.hexdigest()


def package_versions() -> dict[str, str]:
    versions = {"verval": __version__}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return versions


def write_manifest(ctx: RoundContext) -> dict:
    outputs = sorted(p for p in ctx.work_dir.glob("*") if p.is_file() and p.name != "manifest.json")
    manifest = {
        "verval_version": __version__,
        "started_at": ctx.started_at,
        "finished_at": dt.datetime.now(JAKARTA).isoformat(timespec="seconds"),
        "parameters": ctx.parameters(),
        "inputs": {kind: {"path": str(Path(p).resolve()), "sha256": sha256(Path(p)), "bytes": Path(p).stat().st_size}
                   for kind, p in (("dtks", ctx.dtks), ("dukcapil", ctx.dukcapil))},
        "outputs": {p.name: {"sha256": sha256(p), "bytes": p.stat().st_size} for p in outputs},
        "packages": package_versions(),
    }
    ctx.path("manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
    return {"outputs": len(outputs)}


def publish(ctx: RoundContext) -> str:
    """Move the finished work folder into place. The previous outputs are renamed aside
    first and removed only after the new folder is in place."""
    out = Path(ctx.out).resolve()
    shutil.rmtree(ctx.work_dir / "duckdb_tmp", ignore_errors=True)
    for path in ctx.work_dir.rglob("*"):
        # Outputs carry personal data (UU 27/2022): readable by their owner only.
        os.chmod(path, 0o700 if path.is_dir() else 0o600)
    os.chmod(ctx.work_dir, 0o700)
    previous = None
    if out.exists():
        previous = out.parent / f".{out.name}.previous-{uuid.uuid4().hex[:8]}"
        out.rename(previous)
    ctx.work_dir.rename(out)
    if previous is not None:
        shutil.rmtree(previous)
    return str(out)


def discard(ctx: RoundContext) -> None:
    shutil.rmtree(ctx.work_dir, ignore_errors=True)


# --------------------------------------------------------------------------- the round


def call_directly(name: str, function, *args):
    return function(*args)


def run_round(ctx: RoundContext, clock: StageClock, run=call_directly) -> dict:
    """Run every stage in order. `run(name, function, *args)` executes one stage: called
    directly here, wrapped as a Prefect task by the flow. On any failure the work folder
    is removed and the previous outputs stay as they were."""

    def step(name: str, function, *args):
        with clock.stage(name):
            return run(name, function, *args)

    try:
        step("prepare", prepare, ctx)
        gathered = step("decisions", gather_decisions, ctx)
        ingested = {kind: step(f"ingest-{kind}", ingest, ctx, kind) for kind in contract.EXTRACT_KINDS}
        quality = {kind: step(f"expectations-{kind}", expectations, ctx, kind) for kind in contract.EXTRACT_KINDS}
        nik = step("nik-checks", nik_checks, ctx)
        linked = step("link-civil-registry", link_civil_registry, ctx)
        duplicates = step("find-duplicates", find_duplicates, ctx)
        objected = step("objections", gather_objections, ctx)
        decided = step("decide", decide, ctx, ingested)
        decided["decisions"].update(gathered)
        decided["objections"] = objected
        summary = {
            "verval_version": __version__,
            "as_of": ctx.as_of,
            **decided,
            "ingest": ingested,
            "data_quality": quality,
            "nik_checks": nik,
            "civil_registry_link": linked,
            "duplicates": duplicates,
            "stage_timings": clock.timings,
        }
        step("report", write_report, ctx, summary)
        step("indicators", write_indicators, ctx)
        step("workbook", write_workbook, ctx)
        step("lookup-index", write_lookup_index, ctx)
        step("manifest", write_manifest, ctx)
        summary["output_dir"] = step("publish", publish, ctx)
    except BaseException:
        discard(ctx)
        raise
    return summary


def write_report(ctx: RoundContext, summary: dict) -> dict:
    """summary.json, report.html (with the change since the round previously published at
    --out) and history.json."""
    from pipeline.report.html import build_history, render_report

    previous = Path(ctx.out).resolve()
    previous_dir = previous if (previous / "summary.json").exists() else None
    write_summary(ctx, summary)
    ctx.path("history.json").write_text(json.dumps(build_history(previous_dir, summary), indent=2, default=str) + "\n")
    ctx.path("report.html").write_text(render_report(ctx.work_dir, summary, previous_dir), encoding="utf-8")
    return {"report": str(ctx.path("report.html")), "previous_round": str(previous_dir) if previous_dir else None}


def write_workbook(ctx: RoundContext) -> dict:
    """anomalies.xlsx for reviewers (xlsxwriter writes cell by cell: the slowest output)."""
    from pipeline.report.xlsx import write_workbook as write

    return {"sheets": write(ctx.work_dir, ctx.path("anomalies.xlsx"), full_nik=ctx.full_nik).get("sheets")}


def write_lookup_index(ctx: RoundContext) -> dict:
    """lookup/: the status index the status page and `verval lookup` answer from, published
    with the round so they switch to it atomically."""
    from pipeline.lookup.index import build_index

    built = build_index(ctx.work_dir, round_date=ctx.as_of, threads=ctx.threads)
    return {"entries": built["entries"], "people": built["people"]}


def write_indicators(ctx: RoundContext) -> dict:
    """indicators.parquet: this round's monev indicators per kabupaten/kota, after those of
    the earlier rounds published at --out (aggregates only)."""
    from pipeline.monev import INDICATORS_FILE, carried_history, round_indicators

    previous = Path(ctx.out).resolve()
    table = carried_history(previous if previous.is_dir() else None, round_indicators(ctx.work_dir))
    table.write_parquet(ctx.path(INDICATORS_FILE))
    return {"rounds": table["as_of"].n_unique(), "kabupaten": table["kode_kabupaten"].n_unique()}
