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

EXTRACT_KINDS = ("dtks", "dukcapil")  # the two extracts every round reads
LIST_KINDS = ("ineligible",)  # optional lists a round may read (`--ineligible`)

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


ALIAS_IGNORED = r"[\s._\-\ufeff]+"


def alias_key(name: str) -> str:
    """Header spelling that matching ignores: case, spaces, dots, dashes, underscores, BOM."""
    return re.sub(ALIAS_IGNORED, "", name).upper()


def alias_key_expr(expr: pl.Expr) -> pl.Expr:
    """alias_key over a column (list types, program names)."""
    return expr.str.replace_all(ALIAS_IGNORED, "").str.to_uppercase()


@cache
def _columns_toml() -> dict:
    with open(RULES_DIR / "columns.toml", "rb") as handle:
        return tomllib.load(handle)


@cache
def columns(kind: str) -> tuple[ColumnSpec, ...]:
    if kind not in EXTRACT_KINDS + LIST_KINDS:
        raise ValueError(f"unknown extract kind {kind!r}; expected one of {EXTRACT_KINDS + LIST_KINDS}")
    table = _columns_toml()[kind]
    return tuple(
        ColumnSpec(name=name, required=bool(spec["required"]), aliases=tuple(spec["aliases"]))
        for name, spec in table.items()
    )


def split_region_parts() -> tuple[list[list[str]], list[int]]:
    """Alias lists and digit widths of split region columns (KDPROP, KDKAB, KDKEC, KDDESA)."""
    table = _columns_toml()["split_region"]
    return table["parts"], table["widths"]


# --------------------------------------------------------------------------- the anomaly catalogue
# pipeline/rules/anomalies.toml, loaded and checked once. Modules refer to codes, outcomes
# and decision values through CODE.X, OUTCOME.x and DECISION.X (a misspelt name fails at
# once); tests/test_catalogue.py fails if a module spells one as a literal of its own.

EFFECTS_IMPLEMENTED = ("keep", "dismiss", "exclude", "repair_nik", "never_merge", "settle")
SCOPES = ("row", "household")
REGISTRY_RECORDS = ("related", "exact_nik")


class CatalogueError(ValueError):
    """pipeline/rules/anomalies.toml (or eligibility.toml) is inconsistent."""


@dataclass(frozen=True)
class Outcome:
    name: str
    file: str
    label: str
    key: str
    citizen_status: str | None


@dataclass(frozen=True)
class Action:
    name: str
    label: str
    rank: int
    meaning: str


@dataclass(frozen=True)
class Sheet:
    name: str
    blocks: tuple[str, ...]
    per_type: bool
    meanings: dict  # decision value -> what it means on this sheet (Bahasa)


@dataclass(frozen=True)
class AnomalyRule:
    code: str
    severity: str
    action: str  # exclude | review | warn
    strong_action: str | None
    stage: str
    label_id: str
    meaning: str
    sheet: str
    setuju: str
    tolak: str
    repair: bool = False
    scope: str = "row"
    registry_fields: tuple[str, ...] = ()
    registry_record: str = "related"
    exclude_when: str | None = None
    exclude_rules: str | None = None
    citizen_reason: str | None = None  # reason category on the status page when this code excludes
    holds_row: bool = True  # false: a case for reviewers that never changes the row's outcome

    def effect(self, decision: str) -> str:
        """What `decision` does to this finding (see [effects] in the catalogue)."""
        if decision == DECISION_VALUES[0]:
            return self.setuju
        if decision == DECISION_VALUES[1]:
            return self.tolak
        return catalogue()["decisions"][decision].get("effect", "keep")


@cache
def catalogue() -> dict:
    with open(RULES_DIR / "anomalies.toml", "rb") as handle:
        table = tomllib.load(handle)
    _check_catalogue(table)
    return table


def _check_catalogue(table: dict) -> None:
    sheets, actions, severities = table["sheets"], table["actions"], table["severities"]
    effects = set(table["effects"])
    if set(effects) != set(EFFECTS_IMPLEMENTED):
        raise CatalogueError(f"anomalies.toml [effects] must be exactly {EFFECTS_IMPLEMENTED} (pipeline/decisions.py does those)")
    for code, spec in table["codes"].items():
        where = f"anomalies.toml [codes.{code}]"
        problems = [
            f"severity {spec.get('severity')!r} not in [severities]" if spec.get("severity") not in severities else None,
            f"action {spec.get('action')!r} not in [actions]" if spec.get("action") not in actions else None,
            f"strong_action {spec['strong_action']!r} not in [actions]" if spec.get("strong_action", "exclude") not in actions else None,
            f"sheet {spec.get('sheet')!r} not in [sheets]" if spec.get("sheet") not in sheets else None,
            f"setuju {spec.get('setuju')!r} not in [effects]" if spec.get("setuju") not in effects else None,
            f"tolak {spec.get('tolak')!r} not in [effects]" if spec.get("tolak") not in effects else None,
            f"scope {spec.get('scope')!r} not in {SCOPES}" if spec.get("scope", "row") not in SCOPES else None,
            f"registry_record not in {REGISTRY_RECORDS}" if spec.get("registry_record", "related") not in REGISTRY_RECORDS else None,
            "label missing" if not spec.get("label") else None,
            "meaning missing" if not spec.get("meaning") else None,
            "strong_action needs exclude_when" if spec.get("strong_action") == "exclude" and not spec.get("exclude_when") else None,
        ]
        problems = [p for p in problems if p]
        if problems:
            raise CatalogueError(f"{where}: " + "; ".join(problems))
    for name, sheet in sheets.items():
        missing = [d for d in table["decisions"] if not sheet.get(d)]
        if missing:
            raise CatalogueError(f"anomalies.toml [sheets.{name}]: say what {', '.join(missing)} means on this sheet")


@cache
def anomaly_rules() -> dict[str, AnomalyRule]:
    return {
        code: AnomalyRule(
            code=code,
            severity=spec["severity"],
            action=spec["action"],
            strong_action=spec.get("strong_action"),
            stage=spec["stage"],
            label_id=spec["label"],
            meaning=spec["meaning"],
            sheet=spec["sheet"],
            setuju=spec["setuju"],
            tolak=spec["tolak"],
            repair=bool(spec.get("repair", False)),
            scope=spec.get("scope", "row"),
            registry_fields=tuple(spec.get("registry_fields", ())),
            registry_record=spec.get("registry_record", "related"),
            exclude_when=spec.get("exclude_when"),
            exclude_rules=spec.get("exclude_rules"),
            citizen_reason=spec.get("citizen_reason"),
            holds_row=bool(spec.get("holds_row", True)),
        )
        for code, spec in catalogue()["codes"].items()
    }


@cache
def outcome_rules() -> dict[str, Outcome]:
    return {name: Outcome(name=name, file=spec["file"], label=spec["label"], key=spec["key"],
                          citizen_status=spec.get("citizen_status"))
            for name, spec in catalogue()["outcomes"].items()}


@cache
def action_rules() -> dict[str, Action]:
    return {name: Action(name=name, label=spec["label"], rank=int(spec["rank"]), meaning=spec["meaning"])
            for name, spec in catalogue()["actions"].items()}


@cache
def sheets() -> dict[str, Sheet]:
    return {name: Sheet(name=name, blocks=tuple(spec["blocks"]), per_type=bool(spec.get("per_type", False)),
                        meanings={d: spec[d] for d in catalogue()["decisions"]})
            for name, spec in catalogue()["sheets"].items()}


def severities() -> dict[str, str]:
    """severity -> label, most severe first."""
    return dict(catalogue()["severities"])


def workbook_settings() -> dict:
    return dict(catalogue()["workbook"])


def national_workbook() -> str:
    """The national summary's path inside a round (the per-kabupaten workbooks are beside it)."""
    settings = workbook_settings()
    return f"{settings['folder']}/{settings['national_file']}"


OUTPUT_FILES[national_workbook()] = "the reviewers' workbooks' national summary: cases per kabupaten/kota, sheet and code"


def codes_where(predicate) -> tuple[str, ...]:
    """Codes, in catalogue order, whose rule satisfies predicate(rule)."""
    return tuple(code for code, rule in anomaly_rules().items() if predicate(rule))


def codes_with_effect(decision: str, effect: str) -> tuple[str, ...]:
    return codes_where(lambda rule: rule.effect(decision) == effect)


class _Names:
    """Attribute access to declared names: CODE.DECEASED is "DECEASED"; CODE.DECESED fails."""

    def __init__(self, kind: str, names) -> None:
        self._kind, self._names = kind, tuple(names)
        for name in self._names:
            setattr(self, name, name)

    def __getattr__(self, name: str):
        raise AttributeError(f"{name!r} is not a declared {self._kind} (pipeline/rules/anomalies.toml)")

    def __iter__(self):
        return iter(self._names)


ANOMALY_CODES = tuple(anomaly_rules())
OUTCOMES = tuple(outcome_rules())
DECISION_VALUES = tuple(catalogue()["decisions"])
CODE = _Names("anomaly code", ANOMALY_CODES)
OUTCOME = _Names("outcome", OUTCOMES)
DECISION = _Names("decision value", DECISION_VALUES)
# Outcomes a parsed row can have (quarantine is decided at ingest).
ROW_OUTCOMES = tuple(o for o in OUTCOMES if o != OUTCOME.quarantined)


# --------------------------------------------------------------------------- eligibility rules


@cache
def eligibility_rules() -> dict:
    """pipeline/rules/eligibility.toml: ineligibility list types, program -> desil, household."""
    with open(RULES_DIR / "eligibility.toml", "rb") as handle:
        table = tomllib.load(handle)
    for name, spec in table["ineligible"].items():
        if spec.get("exact_action") not in ("exclude", "review"):
            raise CatalogueError(f"eligibility.toml [ineligible.{name}]: exact_action must be exclude or review")
    for name, spec in table["programs"].items():
        low, high = spec["desil"]
        if not 1 <= low <= high <= 10:
            raise CatalogueError(f"eligibility.toml [programs.{name}]: desil must be [low, high] within 1..10")
        if spec.get("action", "review") not in action_rules():
            raise CatalogueError(f"eligibility.toml [programs.{name}]: action must be one of {tuple(action_rules())}")
    return table


def ineligible_type_keys() -> dict[str, str]:
    """alias_key of every spelling of a list type (its name and aliases) -> the type."""
    return {alias_key(alias): name for name, spec in eligibility_rules()["ineligible"].items()
            for alias in (name, *spec.get("aliases", ()))}


def program_keys() -> dict[str, str]:
    """alias_key of every spelling of a declared program -> the program."""
    return {alias_key(alias): name for name, spec in eligibility_rules()["programs"].items()
            for alias in (name, *spec.get("aliases", ()))}


def exclusion_rule_names(pointer: str | None) -> list[str]:
    """The declared rules an `exclude_rules` pointer names: the duplicate model's kinds of
    strong evidence, or the list types whose exact match excludes."""
    if not pointer:
        return []
    source, _, key = pointer.partition(":")
    if source == "model.json":
        import json

        model = json.loads((RULES_DIR / "model.json").read_text(encoding="utf-8"))
        return [rule["name"] for rule in model[key]["evidence"]]
    if source == "eligibility.toml":
        return [name for name, spec in eligibility_rules()[key].items() if spec["exact_action"] == "exclude"]
    raise CatalogueError(f"exclude_rules {pointer!r}: expected model.json:KEY or eligibility.toml:KEY")


# --------------------------------------------------------------------------- README table

README_BEGIN = "<!-- catalogue:codes (generated by `python -m pipeline.contract --readme`; do not edit) -->"
README_END = "<!-- /catalogue:codes -->"


def readme_table() -> str:
    """The README's table of codes and actions, from the catalogue."""
    effects = catalogue()["effects"]
    lines = [README_BEGIN, "", "| code | meaning | action | SETUJU | TOLAK | sheet |", "| --- | --- | --- | --- | --- | --- |"]
    for code, rule in anomaly_rules().items():
        action = rule.action
        if rule.strong_action:
            named = exclusion_rule_names(rule.exclude_rules)
            listed = f" ({rule.exclude_rules}: {', '.join(f'`{n}`' for n in named)})" if named else ""
            action += f"; **{rule.strong_action}** when {rule.exclude_when}{listed}"
        if not rule.holds_row:
            action += "; never holds the row by itself (`holds_row = false`)"
        if rule.scope == "household":
            action += "; stands on every row of the household, decided once for all"
        lines.append(f"| {code} | {rule.meaning} | {action} | {rule.setuju} | {rule.tolak} | {rule.sheet} |")
    lines += ["", "Effects of a decision, in every later round:", ""]
    lines += [f"- `{name}`: {text}" for name, text in effects.items()]
    lines += ["", README_END]
    return "\n".join(lines)


def with_readme_table(readme: str) -> str:
    """README text with the generated table between its markers."""
    head, found, rest = readme.partition(README_BEGIN)
    if not found or README_END not in rest:
        raise CatalogueError(f"README.md lacks the markers {README_BEGIN!r} ... {README_END!r}")
    return head + readme_table() + rest.partition(README_END)[2]


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


@cache
def sex_codes() -> dict[str, str]:
    """Every spelling of jenis_kelamin (upper case) -> L or P."""
    return {spelling.strip().upper(): sex for sex, spellings in _columns_toml()["sex"].items() for spelling in spellings}


@cache
def date_formats() -> tuple[tuple[str, ...], tuple[str, ...], dict[str, int]]:
    """Date separators read as "-", the strptime formats tried in order, and month names -> numbers."""
    dates = _columns_toml()["dates"]
    return (tuple(dates["separators"]), tuple(dates["formats"]),
            {name.upper(): int(number) for name, number in dates["months"].items()})


def dukcapil_coverage() -> dict:
    return dict(_columns_toml()["dukcapil_coverage"])


def main(argv: list[str] | None = None) -> int:
    """`python -m pipeline.contract --readme` rewrites README.md's table of codes;
    `--check` exits 1 when it is out of date."""
    import argparse

    from pipeline.paths import PROJECT_DIR

    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("--readme", action="store_true", help="rewrite the table in README.md")
    parser.add_argument("--check", action="store_true", help="exit 1 when README.md's table differs from the catalogue")
    args = parser.parse_args(argv)
    path = PROJECT_DIR / "README.md"
    current = path.read_text(encoding="utf-8")
    wanted = with_readme_table(current)
    if args.readme and wanted != current:
        path.write_text(wanted, encoding="utf-8")
    if args.check and wanted != current:
        print("README.md's table of codes is out of date: run python -m pipeline.contract --readme")
        return 1
    if not (args.readme or args.check):
        print(readme_table())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
