"""The project's contracts, declared once as data in pipeline/rules/ and read from here.

Input columns and their aliases, anomaly codes with severity and action, and the
output files of a round. Code, tests and report all read these objects, so a new
alias or code is a one-line change in a TOML file.
"""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass
from functools import cache

import polars as pl

from pipeline.paths import RULES_DIR

EXTRACT_KINDS = ("dtks", "dukcapil")

# Outcome of each DTKS input row; every row lands in exactly one.
OUTCOMES = ("verified", "review", "excluded", "quarantined")

OUTPUT_FILES = {
    "verified_recipients.parquet": "rows kept for payment, one per person",
    "review.parquet": "rows a reviewer must decide on, with their anomaly codes",
    "excluded.parquet": "rows removed on strong evidence, with their anomaly codes",
    "quarantine.parquet": "input rows that could not be parsed: file, line, reason",
    "anomalies.parquet": "one row per (id_dtks, anomaly_code)",
    "duplicate_clusters.parquet": "id_dtks, cluster_id for every parsed DTKS row",
    "dukcapil_links.parquet": "civil-registry record linked to each DTKS row",
    "resolution.parquet": "which civil-registry person each DTKS row is: method, probability, margin",
    "summary.json": "counts, reconciliation and data-quality results",
    "manifest.json": "input/output SHA-256, package versions, parameters",
    "model.json": "the matching model (comparisons, weights, thresholds) used by the run",
    "report.html": "the reviewers' report",
    "anomalies.xlsx": "the reviewers' workbook: one sheet per anomaly group, keputusan/catatan/pemeriksa to fill in",
    "history.json": "counts per anomaly code of this and earlier rounds at the same --out",
    "decisions_applied.parquet": "every effective reviewer decision and whether it applied or is stale",
    "decisions_rejected.parquet": "malformed decision rows: file, sheet, row, reason",
    "link_model.json": "the civil-registry fuzzy-link model used by the run",
    "objections.parquet": "every objection filed on the status page and its state (open, accepted, rejected, stale)",
    "indicators.parquet": "monev indicators per kabupaten/kota of this and earlier rounds (aggregates only)",
    "lookup/index.parquet": "the status index (keyed hashes only) that verval lookup and the status page answer from",
}


@dataclass(frozen=True)
class ColumnSpec:
    name: str
    required: bool
    aliases: tuple[str, ...]


@dataclass(frozen=True)
class AnomalyRule:
    code: str
    severity: str
    action: str  # exclude | review | warn
    strong_action: str | None
    stage: str
    label_id: str
    citizen_reason: str | None = None  # reason category on the status page when this code excludes
    holds_row: bool = True  # false: a case for reviewers that never changes the row's outcome


def alias_key(name: str) -> str:
    """Header spelling that matching ignores: case, spaces, dots, dashes, underscores, BOM."""
    return re.sub(r"[\s._\-\ufeff]+", "", name).upper()


@cache
def _columns_toml() -> dict:
    with open(RULES_DIR / "columns.toml", "rb") as handle:
        return tomllib.load(handle)


@cache
def columns(kind: str) -> tuple[ColumnSpec, ...]:
    if kind not in EXTRACT_KINDS:
        raise ValueError(f"unknown extract kind {kind!r}; expected one of {EXTRACT_KINDS}")
    table = _columns_toml()[kind]
    return tuple(
        ColumnSpec(name=name, required=bool(spec["required"]), aliases=tuple(spec["aliases"]))
        for name, spec in table.items()
    )


def split_region_parts() -> tuple[list[list[str]], list[int]]:
    """Alias lists and digit widths of split region columns (KDPROP, KDKAB, KDKEC, KDDESA)."""
    table = _columns_toml()["split_region"]
    return table["parts"], table["widths"]


@cache
def anomaly_rules() -> dict[str, AnomalyRule]:
    with open(RULES_DIR / "anomalies.toml", "rb") as handle:
        table = tomllib.load(handle)
    return {
        code: AnomalyRule(
            code=code,
            severity=spec["severity"],
            action=spec["action"],
            strong_action=spec.get("strong_action"),
            stage=spec["stage"],
            label_id=spec["label_id"],
            citizen_reason=spec.get("citizen_reason"),
            holds_row=bool(spec.get("holds_row", True)),
        )
        for code, spec in table.items()
    }


ANOMALY_CODES = tuple(anomaly_rules())


ANOMALY_SCHEMA = {
    "id_dtks": pl.String,
    "anomaly_code": pl.String,
    "severity": pl.String,
    "action": pl.String,
    "detail": pl.String,
    "related_id": pl.String,
    "score": pl.Float64,
    "evidence": pl.String,
}


def anomaly_frame(
    rows: pl.DataFrame,
    code: str,
    detail: pl.Expr,
    related_id: pl.Expr | None = None,
    strong: pl.Expr | None = None,
    action: pl.Expr | None = None,
    score: pl.Expr | None = None,
    evidence: pl.Expr | None = None,
) -> pl.DataFrame:
    """Anomaly rows of one code in the shared schema. The action comes from the rule;
    `strong` lifts it to the rule's strong_action; `action` overrides both."""
    rule = anomaly_rules()[code]
    if action is None:
        action = pl.lit(rule.action)
        if strong is not None and rule.strong_action:
            action = pl.when(strong.fill_null(False)).then(pl.lit(rule.strong_action)).otherwise(pl.lit(rule.action))
    null_text = pl.lit(None, dtype=pl.String)
    return rows.select(
        pl.col("id_dtks"),
        anomaly_code=pl.lit(code),
        severity=pl.lit(rule.severity),
        action=action,
        detail=detail,
        related_id=(related_id if related_id is not None else null_text).cast(pl.String),
        score=(score if score is not None else pl.lit(None, dtype=pl.Float64)).cast(pl.Float64),
        evidence=(evidence if evidence is not None else null_text).cast(pl.String),
    ).cast(ANOMALY_SCHEMA)



@cache
def alive_placeholders() -> tuple[str, ...]:
    """tanggal_meninggal entries that mean "alive" (upper case, trimmed)."""
    return tuple(value.strip().upper() for value in _columns_toml()["tanggal_meninggal"]["alive"])


def dukcapil_coverage() -> dict:
    return dict(_columns_toml()["dukcapil_coverage"])
