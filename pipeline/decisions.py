"""Reviewers' decisions: read filled workbooks (or CSV of the same columns), keep them in an
append-only log, and carry them into every later round so nobody is asked twice.

Keys are stable across extracts: id_dtks, anomaly code, and the related id (the other
row for duplicates, the masked Dukcapil NIK, the list type, the household's
representative row). A household code is decided once for the household: its decision
applies to every row carrying the code with that related id. What SETUJU and TOLAK do is
declared per code in the catalogue (`setuju`, `tolak` in pipeline/rules/anomalies.toml);
this module carries out the effects:
  keep         logged; the finding stands
  dismiss      the finding was wrong: it no longer removes or holds the row (warn)
  exclude      the row is excluded (a warning stays a warning)
  repair_nik   with a suggested NIK: the repair is applied when this round's suggestion is
               the one the reviewer confirmed
  never_merge  the pair is never merged again (cannot-link before clustering)
  settle       an objection is settled (pipeline/lookup/objections.py)
A decision that no longer matches anything (row gone, anomaly no longer raised) is
reported as stale; a malformed one is reported with its file, sheet and row.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
from pathlib import Path

import polars as pl

from pipeline import contract
from pipeline.csvread import read_csv_records
from pipeline.contract import DECISION, DECISION_VALUES
from pipeline.errors import InputError
from pipeline.report.mask import mask_nik

HEADER_ALIASES = {
    "id_dtks": "id_dtks", "kode_anomali": "anomaly_code", "anomaly_code": "anomaly_code",
    "id_terkait": "related_id", "related_id": "related_id",
    "keputusan": "keputusan", "catatan": "catatan", "pemeriksa": "pemeriksa",
}
LOG_COLUMNS = ["id_dtks", "anomaly_code", "related_key", "keputusan", "catatan", "pemeriksa", "source_file",
               "source_sha256", "sheet", "row", "recorded_at"]
EMPTY_LOG = pl.DataFrame(schema={c: (pl.Int64 if c == "row" else pl.String) for c in LOG_COLUMNS})


def related_key(related: pl.Expr) -> pl.Expr:
    """Related ids as stored: a 16-digit NIK is masked; another id_dtks is kept."""
    text = related.cast(pl.String).str.strip_chars()
    return pl.when(text.str.contains(r"^[0-9]{16}$")).then(mask_nik(text)).otherwise(text).fill_null("")


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


MALFORMED_SCHEMA = {"source_file": pl.String, "sheet": pl.String, "row": pl.Int64, "reason": pl.String}
EXPECTED_HEADER = "id_dtks,kode_anomali,id_terkait,keputusan,catatan,pemeriksa"
FOLDER = contract.workbook_settings()["folder"]


def _frames_of(path: Path) -> tuple[list[tuple[str, pl.DataFrame]], pl.DataFrame, list[str]]:
    """(sheet, rows as text with their file line in `row`) for each decision table in a
    file, the rows that could not be read (malformed), and warnings (an encoding guessed)."""
    label = f"--decisions {path}"
    if path.suffix.lower() == ".csv":
        read = read_csv_records(path, "--decisions")
        rows = read.rows.rename({"_line": "row"}).drop("_lines")
        rejected = read.rejects.select(source_file=pl.lit(path.name), sheet=pl.lit(""), row=pl.col("line"), reason=pl.col("reason"))
        return [("", rows)], rejected, read.warnings
    try:
        sheets = pl.read_excel(path, sheet_id=0, engine="calamine", infer_schema_length=0)
    except Exception:  # calamine's text may quote a cell
        raise InputError(
            f"{label}: cannot be read as an Excel workbook (.xlsx); give a filled workbook of a round's {FOLDER}/ folder, or a CSV with the "
            f"header {EXPECTED_HEADER}."
        ) from None
    # The header is the sheet's first row, so data row k is on sheet row k + 1.
    tables = [(name, frame.with_row_index("row", offset=2).with_columns(pl.col("row").cast(pl.Int64)))
              for name, frame in sheets.items() if "keputusan" in [c.strip().lower() for c in frame.columns]]
    if not tables:
        raise InputError(f"{label}: no sheet has a keputusan column; give a filled kabupaten/kota workbook from a round's {FOLDER}/ folder.")
    return tables, pl.DataFrame(schema=MALFORMED_SCHEMA), []


def decision_files(sources: list[Path]) -> list[Path]:
    """The files to read: each file given, and every .xlsx/.csv below each folder given (a
    round's workbook folder, or folders of returned kabupaten workbooks), without the
    national summary, Excel's lock files (~$...) and hidden files. Each file once."""
    files: list[Path] = []
    national = contract.workbook_settings()["national_file"]
    for source in sources:
        if not source.exists():
            raise InputError(f"--decisions {source}: not found; give filled workbooks of a round's "
                             f"{FOLDER}/ folder, CSVs of decisions, or folders of them.")
        if not source.is_dir():
            files.append(source)
            continue
        found = sorted(
            p for p in source.rglob("*")
            if p.is_file() and p.suffix.lower() in (".xlsx", ".csv") and p.name != national
            and not p.name.startswith(("~$", ".")) and not any(part.startswith(".") for part in p.relative_to(source).parts)
        )
        if not found:
            raise InputError(f"--decisions {source}: the folder holds no .xlsx or .csv file.")
        files += found
    unique = {path.resolve(): path for path in files}
    return sorted(unique.values(), key=lambda p: str(p))


def read_decision_files(sources: Path | str | list, recorded_at: str) -> tuple[pl.DataFrame, pl.DataFrame, list[str]]:
    """Decisions filled in (rows with a keputusan) and the malformed ones, from any number of
    files and folders (decision_files). A file that is not a decision table stops the round."""
    sources = [Path(s) for s in sources] if isinstance(sources, (list, tuple)) else [Path(sources)]
    files = decision_files(sources)
    good, bad, warnings = [], [], []
    for path in files:
        if path.suffix.lower() not in (".xlsx", ".csv"):
            raise InputError(f"--decisions {path}: give an .xlsx workbook or a .csv file.")
        digest = _sha256(path)
        tables, unreadable, noted = _frames_of(path)
        bad.append(unreadable)
        warnings += noted
        for sheet, frame in tables:
            frame = frame.rename({c: HEADER_ALIASES[c.strip().lower()] for c in frame.columns if c.strip().lower() in HEADER_ALIASES})
            missing = [c for c in ("id_dtks", "anomaly_code", "keputusan") if c not in frame.columns]
            if missing:
                names = {"anomaly_code": "kode_anomali"}
                raise InputError(
                    f"--decisions {path}{f' (sheet {sheet})' if sheet else ''}: lacks column(s) "
                    f"{', '.join(names.get(c, c) for c in missing)}; a decision file needs the header {EXPECTED_HEADER} "
                    "(comma- or semicolon-separated) or the columns of a round's workbooks."
                )
            for column in ("related_id", "catatan", "pemeriksa"):
                if column not in frame.columns:
                    frame = frame.with_columns(pl.lit(None, dtype=pl.String).alias(column))
            frame = frame.with_columns(
                keputusan=pl.col("keputusan").str.strip_chars().str.to_uppercase(),
                id_dtks=pl.col("id_dtks").str.strip_chars(),
                anomaly_code=pl.col("anomaly_code").str.strip_chars().str.to_uppercase(),
            ).filter(pl.col("keputusan").is_not_null() & (pl.col("keputusan") != ""))
            reason = (
                pl.when(~pl.col("keputusan").is_in(DECISION_VALUES)).then(pl.format("keputusan '{}' bukan " + "/".join(DECISION_VALUES), pl.col("keputusan")))
                .when(pl.col("id_dtks").is_null() | (pl.col("id_dtks") == "")).then(pl.lit("id_dtks kosong"))
                .when(~pl.col("anomaly_code").is_in(contract.ANOMALY_CODES)).then(pl.format("kode_anomali '{}' tidak dikenal", pl.col("anomaly_code")))
                .otherwise(None)
            )
            frame = frame.with_columns(reason=reason, source_file=pl.lit(path.name), sheet=pl.lit(sheet))
            bad.append(frame.filter(pl.col("reason").is_not_null()).select("source_file", "sheet", "row", "reason"))
            good.append(
                frame.filter(pl.col("reason").is_null()).select(
                    "id_dtks", "anomaly_code", related_key=related_key(pl.col("related_id")), keputusan=pl.col("keputusan"),
                    catatan=pl.col("catatan"), pemeriksa=pl.col("pemeriksa"), source_file=pl.lit(path.name),
                    source_sha256=pl.lit(digest), sheet=pl.lit(sheet), row=pl.col("row"), recorded_at=pl.lit(recorded_at),
                )
            )
    decisions = pl.concat(good, how="vertical_relaxed") if good else EMPTY_LOG
    malformed = pl.concat(bad).sort("source_file", "sheet", "row") if bad else pl.DataFrame(schema=MALFORMED_SCHEMA)
    return decisions.select(LOG_COLUMNS).cast({c: EMPTY_LOG.schema[c] for c in LOG_COLUMNS}), malformed, warnings


def read_log(log_path: Path | None) -> pl.DataFrame:
    """The decision log. A last line cut short (a run killed while appending) is ignored;
    any other line that is not a decision stops the round, naming the line."""
    if not log_path or not Path(log_path).exists():
        return EMPTY_LOG
    if not Path(log_path).is_file():
        raise InputError(f"--decision-log {log_path}: is not a file; give the path of the decision log (a .jsonl file).")
    records = []
    lines = Path(log_path).read_text(encoding="utf-8", errors="replace").splitlines()
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
            if not isinstance(record, dict) or not {"id_dtks", "anomaly_code", "keputusan"} <= set(record):
                raise ValueError
        except ValueError:
            if number == len(lines):
                continue
            raise InputError(
                f"--decision-log {log_path}: line {number} is not a decision written by verval; restore the log "
                "from a backup, or remove that line."
            ) from None
        records.append(record)
    return pl.DataFrame(records, schema=EMPTY_LOG.schema) if records else EMPTY_LOG


def not_yet_logged(log_path: Path | None, decisions: pl.DataFrame) -> pl.DataFrame:
    """Decisions not logged before (same file content and row)."""
    known = read_log(log_path).select("source_sha256", "sheet", "row")
    return decisions.join(known, on=["source_sha256", "sheet", "row"], how="anti")


def append_to_log(log_path: Path, decisions: pl.DataFrame) -> int:
    """Append decisions not logged before; returns how many. The log is owner-only: it
    names reviewers and the rows they decided on."""
    new = not_yet_logged(log_path, decisions)
    if new.height:
        log_path = Path(log_path)
        log_path.parent.mkdir(parents=True, exist_ok=True)
        text = "".join(json.dumps(record, ensure_ascii=False) + "\n" for record in new.to_dicts())
        descriptor = os.open(log_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            os.fchmod(descriptor, 0o600)
            os.write(descriptor, text.encode("utf-8"))
            os.fsync(descriptor)
        finally:
            os.close(descriptor)
    return new.height


def effective_decisions(log: pl.DataFrame) -> pl.DataFrame:
    """The latest decision per key (id_dtks, anomaly_code, related_key)."""
    return (
        log.sort("recorded_at", "source_file", "sheet", "row")
        .unique(["id_dtks", "anomaly_code", "related_key"], keep="last", maintain_order=True)
        .sort("id_dtks", "anomaly_code", "related_key")
    )


def gather(decisions_source: str | list[str] | None, log_path: str | None, recorded_at: str | None = None) -> dict:
    """Stage: read new decision files; return the effective decisions (log and new ones),
    the malformed rows, and the decisions to append to the log once the round succeeds."""
    recorded_at = recorded_at or dt.datetime.now(dt.timezone(dt.timedelta(hours=7))).isoformat(timespec="seconds")
    new, malformed, warnings = EMPTY_LOG, pl.DataFrame(schema=MALFORMED_SCHEMA), []
    if decisions_source:
        new, malformed, warnings = read_decision_files(decisions_source, recorded_at)
    to_log = not_yet_logged(Path(log_path) if log_path else None, new)
    log = pl.concat([read_log(Path(log_path) if log_path else None), to_log])
    return {"effective": effective_decisions(log), "malformed": malformed, "new": new.height, "to_log": to_log,
            "warnings": warnings}


def cannot_link_pairs(decisions: pl.DataFrame) -> pl.DataFrame:
    """(id_a, id_b) pairs a reviewer judged to be different people."""
    codes = list(contract.codes_with_effect(DECISION.TOLAK, "never_merge"))
    pairs = decisions.filter(pl.col("anomaly_code").is_in(codes) & (pl.col("keputusan") == DECISION.TOLAK) & (pl.col("related_key") != ""))
    return pairs.select(id_a=pl.min_horizontal("id_dtks", "related_key"), id_b=pl.max_horizontal("id_dtks", "related_key")).unique()


def effects_table() -> pl.DataFrame:
    """(anomaly_code, keputusan) -> effect, from the catalogue."""
    rows = [(code, decision, rule.effect(decision)) for code, rule in contract.anomaly_rules().items() for decision in DECISION_VALUES]
    return pl.DataFrame(rows, schema={"anomaly_code": pl.String, "keputusan": pl.String, "effect": pl.String}, orient="row")


def decision_key(frame: pl.DataFrame) -> pl.DataFrame:
    """_row: the id_dtks a decision is keyed on; empty for household codes, whose decision
    holds for every row of the household (id_terkait names the household)."""
    household = list(contract.codes_where(lambda rule: rule.scope == "household"))
    return frame.with_columns(_row=pl.when(pl.col("anomaly_code").is_in(household)).then(pl.lit("")).otherwise(pl.col("id_dtks")))


def rows_present(ids: pl.Series, dtks_ids: pl.Series) -> pl.Series:
    """Those of a few `ids` (decided or objected rows) that are rows of the extract
    (`dtks_ids`, every row's id). The extract's ids are looked up in a set of the few, not
    the other way round: a set of the 10M ids of a 10M-row extract took 2.6 s to build for
    each look-up, whatever the few."""
    return dtks_ids.filter(dtks_ids.is_in(ids.drop_nulls().unique().implode()))


DECISION_INDEX = "_decision"


def applied_decisions(anomalies: pl.DataFrame, decisions: pl.DataFrame) -> pl.DataFrame:
    """The anomalies with the reviewers' decisions applied (each row's action, detail and
    a confirmed NIK repair in `nik_repair`). Needs only the decisions keyed on these rows and
    the household decisions; each decision's status comes from decision_flags and
    decision_status."""
    keys = ["_row", "anomaly_code", "related_key"]
    keyed = decision_key(anomalies.with_columns(related_key=related_key(pl.col("related_id"))))
    chosen = (
        decision_key(decisions).sort("recorded_at", "source_file", "sheet", "row")
        .unique(keys, keep="last", maintain_order=True)
        .join(effects_table(), on=["anomaly_code", "keputusan"], how="left")
    )
    # A never_merge TOLAK works through cannot-link in clustering; here it is applied when
    # the pair is no longer clustered.
    joined = keyed.join(chosen.select(*keys, "keputusan", "effect", "pemeriksa", "recorded_at"), on=keys, how="left")
    who = pl.format(" [keputusan {} oleh {} pada {}]", pl.col("keputusan"), pl.col("pemeriksa").fill_null("?"), pl.col("recorded_at").str.slice(0, 10))
    decided = pl.col("keputusan").is_not_null()
    effect = pl.col("effect")
    repair = decided & (effect == "repair_nik") & (pl.col("related_key") != "")
    action = (
        pl.when(~decided).then(pl.col("action"))
        .when(effect.is_in(["dismiss", "never_merge"])).then(pl.lit("warn"))
        .when(repair).then(pl.lit("warn"))
        .when((effect == "exclude") & (pl.col("action") != "warn")).then(pl.lit("exclude"))
        .otherwise(pl.col("action"))
    )
    applied = joined.with_columns(
        action=action,
        detail=pl.when(decided).then(pl.col("detail") + who).otherwise(pl.col("detail")),
        nik_repair=pl.when(repair).then(pl.col("related_id")),
    )
    return applied.drop("related_key", "keputusan", "effect", "pemeriksa", "recorded_at", "_row")


def decisions_bearing_on(decisions: pl.DataFrame, own: pl.Series) -> pl.DataFrame:
    """The decisions a set of rows needs: those keyed on its rows (`own`: a mask of
    `decisions`) and the household ones, which hold wherever their household's rows are."""
    return decisions.filter(own | (decision_key(decisions)["_row"] == ""))


def decision_flags(anomalies: pl.DataFrame, decisions: pl.DataFrame, dtks_ids: pl.Series) -> pl.DataFrame:
    """For each decision (numbered in DECISION_INDEX): whether an anomaly here carries its
    key (`matched`) and whether its row is one of `dtks_ids` (`present`). A decision's
    status needs both over the whole extract: a partition's flags are or-ed with the others'."""
    keys = ["_row", "anomaly_code", "related_key"]
    # Only anomalies a decision could name: their related keys (a masked NIK) need not be made for the rest.
    household = list(contract.codes_where(lambda rule: rule.scope == "household"))
    named = anomalies.filter(pl.col("anomaly_code").is_in(decisions["anomaly_code"].unique().implode())
                             & (pl.col("id_dtks").is_in(decisions["id_dtks"].unique().implode()) | pl.col("anomaly_code").is_in(household)))
    matched = decision_key(named.with_columns(related_key=related_key(pl.col("related_id")))).select(*keys).unique()
    present = rows_present(decisions["id_dtks"], dtks_ids)
    return decision_key(decisions).join(matched.with_columns(matched=pl.lit(True)), on=keys, how="left", maintain_order="left").select(
        DECISION_INDEX, matched=pl.col("matched").fill_null(False), present=pl.col("id_dtks").is_in(present.implode()),
    )


def decision_status(decisions: pl.DataFrame, flags: pl.DataFrame) -> pl.DataFrame:
    """Every decision (numbered in DECISION_INDEX) with its status, from its flags (those
    of several partitions are or-ed)."""
    found = flags.group_by(DECISION_INDEX).agg(pl.col("matched").any(), pl.col("present").any(ignore_nulls=False))
    return decisions.join(found, on=DECISION_INDEX, how="left", maintain_order="left").join(
        effects_table(), on=["anomaly_code", "keputusan"], how="left", maintain_order="left"
    ).with_columns(
        status=pl.when(pl.col("matched")).then(pl.lit("applied"))
        .when(~pl.col("present")).then(pl.lit("stale: baris tidak ada lagi di ekstrak"))
        .when(pl.col("effect") == "never_merge").then(pl.lit("applied: pasangan tidak digabung"))
        .otherwise(pl.lit("stale: anomali tidak muncul lagi"))
    ).drop("matched", "present", "effect", DECISION_INDEX)
