"""Objections (tanggapan) filed from the status page: an append-only queue that the next
round reads.

The queue is a JSONL file (default data/decisions/objections.jsonl, beside the decision
log), owner-only, one object per line: id, id_dtks, category, reason, filed_at,
round_date, status_at_filing, source. No name or NIK: the reason is cut to a short text
and any NIK, KK number or date typed into it is masked before it is written.
"""

from __future__ import annotations

import datetime as dt
import fcntl
import hashlib
import json
import os
import re
from pathlib import Path

import polars as pl

from pipeline.lookup.index import lookup_rules
from pipeline.paths import DATA_DIR
from pipeline.report.mask import scrub_text

DEFAULT_QUEUE = DATA_DIR / "decisions" / "objections.jsonl"
ID_PREFIX = "TGP-"
MAX_REASON = 280
JAKARTA = dt.timezone(dt.timedelta(hours=7))
QUEUE_SCHEMA = {
    "id": pl.String, "id_dtks": pl.String, "category": pl.String, "reason": pl.String, "filed_at": pl.String,
    "round_date": pl.String, "status_at_filing": pl.String, "source": pl.String,
}


def categories() -> dict[str, dict]:
    return lookup_rules()["objection"]


def clean_reason(text: str | None) -> str:
    """Short, single-line, with NIK/KK numbers and dates masked (the reviewer needs the
    objection, not the person's identifiers again)."""
    text = re.sub(r"[\x00-\x1f\x7f]+", " ", text or "")
    text = re.sub(r"\s+", " ", text).strip()[:MAX_REASON]
    if not text:
        return ""
    return pl.select(scrub_text(pl.lit(text))).item()


def objection_id(record: dict) -> str:
    content = json.dumps([record[k] for k in ("id_dtks", "category", "reason", "filed_at")], ensure_ascii=False)
    return ID_PREFIX + hashlib.sha256(content.encode("utf-8")).hexdigest()[:12].upper()


def file_objection(queue: Path, id_dtks: str, category: str, reason: str | None, round_date: str,
                   status: str, source: str = "status-server", filed_at: str | None = None) -> dict:
    """Append one objection; returns the record written (its id is the receipt number)."""
    if category not in categories():
        raise ValueError(f"unknown objection category {category!r}")
    record = {
        "id_dtks": id_dtks, "category": category, "reason": clean_reason(reason),
        "filed_at": filed_at or dt.datetime.now(JAKARTA).isoformat(timespec="seconds"),
        "round_date": round_date, "status_at_filing": status, "source": source,
    }
    record = {"id": objection_id(record), **record}
    queue = Path(queue)
    queue.parent.mkdir(parents=True, exist_ok=True)
    line = (json.dumps(record, ensure_ascii=False) + "\n").encode("utf-8")
    # O_APPEND and one write per record under an exclusive lock: concurrent writers (the
    # server's threads, a second server) never interleave lines.
    fd = os.open(queue, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        os.write(fd, line)
        os.fsync(fd)
    finally:
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)
    return record


def read_queue(queue: Path | None) -> tuple[pl.DataFrame, list[int]]:
    """Every objection in the queue (empty when there is none), and the numbers (from 1)
    of the non-blank lines skipped as no complete objection (a write cut short by a crash
    leaves the last line so)."""
    if not queue or not Path(queue).is_file():
        return pl.DataFrame(schema=QUEUE_SCHEMA), []
    records, skipped = [], []
    for number, line in enumerate(Path(queue).read_text(encoding="utf-8", errors="replace").splitlines(), start=1):
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            record = None
        if isinstance(record, dict) and record.get("id") and record.get("id_dtks"):
            records.append({key: (None if record.get(key) is None else str(record[key])) for key in QUEUE_SCHEMA})
        elif line.strip():
            skipped.append(number)
    return (pl.DataFrame(records, schema=QUEUE_SCHEMA) if records else pl.DataFrame(schema=QUEUE_SCHEMA)), skipped


# --------------------------------------------------------------------------- the next round

HOLD_NOTE = " [ditahan untuk diperiksa: ada tanggapan warga]"
STATE_SCHEMA = {**QUEUE_SCHEMA, "state": pl.String}


def is_objection_id(related: pl.Expr) -> pl.Expr:
    """related_id values that are objection receipts: shown and keyed as they are (a
    Dukcapil NIK in related_id is masked, a receipt number is not personal data)."""
    return related.cast(pl.String).str.starts_with(ID_PREFIX).fill_null(False)


def objection_cases(queue: pl.DataFrame, decisions: pl.DataFrame, dtks_ids: pl.Series) -> tuple[pl.DataFrame, pl.DataFrame]:
    """CITIZEN_OBJECTION anomalies for this round and the state of every objection.

    A reviewer decides on an objection by its receipt (related_id); SETUJU or TOLAK on one
    receipt settles it and every earlier objection on the row (state accepted / rejected);
    a later objection opens the case again. One case per row: `review` while an objection
    is open (related_id = the latest open receipt), `warn` once settled (related_id = the
    receipt decided, so the decision shows as applied). An objection about a row no longer
    in the extract is `stale`."""
    from pipeline.contract import CODE, DECISION, anomaly_frame
    from pipeline.decisions import rows_present

    queue = queue.unique("id", keep="first", maintain_order=True)
    present = rows_present(queue["id_dtks"], dtks_ids).implode()
    queue = queue.with_columns(present=pl.col("id_dtks").is_in(present))
    settled = decisions.filter((pl.col("anomaly_code") == CODE.CITIZEN_OBJECTION)
                               & pl.col("keputusan").is_in([DECISION.SETUJU, DECISION.TOLAK])).select(
        "id_dtks", id=pl.col("related_key"), keputusan=pl.col("keputusan")
    )
    latest_settled = (
        queue.join(settled, on=["id_dtks", "id"], how="inner")
        .sort("filed_at", "id")
        .group_by("id_dtks").agg(settled_id=pl.col("id").last(), settled_at=pl.col("filed_at").last(),
                                 keputusan=pl.col("keputusan").last())
    )
    state = queue.join(latest_settled, on="id_dtks", how="left").with_columns(
        state=pl.when(~pl.col("present")).then(pl.lit("stale"))
        .when(pl.col("settled_at").is_not_null() & (pl.col("filed_at") <= pl.col("settled_at")))
        .then(pl.when(pl.col("keputusan") == DECISION.SETUJU).then(pl.lit("accepted")).otherwise(pl.lit("rejected")))
        .otherwise(pl.lit("open"))
    )
    labels = {code: spec["label"] for code, spec in categories().items()}
    open_cases = (
        state.filter(pl.col("state") == "open").sort("filed_at", "id")
        .group_by("id_dtks").agg(
            related=pl.col("id").last(), n=pl.len(), category=pl.col("category").last(), reason=pl.col("reason").last(),
            filed_at=pl.col("filed_at").last(), status=pl.col("status_at_filing").last(),
        )
        .with_columns(detail=pl.format(
            "{} tanggapan warga terbuka; terakhir {}: {}; alasan: {} (status di halaman cek: {})",
            "n", pl.col("filed_at").str.slice(0, 10),
            pl.col("category").replace_strict(labels, default=pl.col("category")),
            pl.col("reason").fill_null("-"), pl.col("status").fill_null("-"),
        ))
    )
    settled_cases = latest_settled.join(open_cases.select("id_dtks"), on="id_dtks", how="anti").filter(
        pl.col("id_dtks").is_in(present)
    ).with_columns(related=pl.col("settled_id"), detail=pl.format("tanggapan warga sudah diputuskan: {}", "keputusan"))
    anomalies = pl.concat([
        anomaly_frame(open_cases, CODE.CITIZEN_OBJECTION, detail=pl.col("detail"), related_id=pl.col("related")),
        anomaly_frame(settled_cases, CODE.CITIZEN_OBJECTION, detail=pl.col("detail"), related_id=pl.col("related"), action=pl.lit("warn")),
    ]).sort("id_dtks")
    return anomalies, state.select(list(STATE_SCHEMA)).sort("filed_at", "id")


def held_rows(state: pl.DataFrame) -> pl.Series:
    """Rows whose automatic exclusions are held for review: an objection is open, or the
    last one settled was accepted."""
    return state.filter(pl.col("state").is_in(["open", "accepted"]))["id_dtks"].unique()


def hold_contested(anomalies: pl.DataFrame, held: pl.Series) -> pl.DataFrame:
    """A person who objects is not cut off by the machine alone: on their row an `exclude`
    found automatically becomes `review` (a living person objecting to DECEASED is evidence
    of life). Applied before reviewers' decisions, so a reviewer's SETUJU still excludes."""
    hold = pl.col("id_dtks").is_in(held.implode()) & (pl.col("action") == "exclude")
    return anomalies.with_columns(
        detail=pl.when(hold).then(pl.col("detail") + HOLD_NOTE).otherwise(pl.col("detail")),
        action=pl.when(hold).then(pl.lit("review")).otherwise(pl.col("action")),
    )
