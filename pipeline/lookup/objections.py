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


def read_queue(queue: Path | None) -> pl.DataFrame:
    """Every objection in the queue (empty when there is none). A line that is not a
    complete JSON object (a write cut short by a crash) is skipped."""
    if not queue or not Path(queue).is_file():
        return pl.DataFrame(schema=QUEUE_SCHEMA)
    records = []
    for line in Path(queue).read_text(encoding="utf-8").splitlines():
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(record, dict) and record.get("id") and record.get("id_dtks"):
            records.append({key: (None if record.get(key) is None else str(record[key])) for key in QUEUE_SCHEMA})
    return pl.DataFrame(records, schema=QUEUE_SCHEMA) if records else pl.DataFrame(schema=QUEUE_SCHEMA)
