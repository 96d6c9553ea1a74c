"""Great Expectations suites for the normalized DTKS and Dukcapil staging extracts.

``validate_extract(frame, kind)`` runs a small, declarative suite (``SUITE_SPECS``) over a
normalized polars extract and returns a plain JSON-serializable summary. The suite is a
structural guard (is this the right file, mapped onto the right columns?) and not the
row-level check: the NIK / KK / wilayah checks elsewhere report bad records one by one.
That is why the identifier regexes use ``mostly=0.9``: the registry is known to hold some
bad NIKs, but a wrong column mapping (names or dates in ``nik``) fails outright.

Personal data (UU 27/2022): the summary never holds values from the frame. GX is asked for
``BASIC`` results with ``partial_unexpected_count=0`` and only counts, percentages, the
suite's own kwargs and (for table-level expectations) column names / row counts are copied
out of its results.

GX 1.24 notes:
* only pandas is usable here: polars is converted with ``DataFrame.to_pandas()``;
* ``expect_column_values_to_be_between`` is vectorized only for ``datetime64[ns]``; polars
  ``Date`` becomes ``datetime64[ms]`` and pandas 3 defaults to ``[us]``, which drop GX into
  a per-value Python ``map`` that errors on the bounds, so date columns are cast to
  ``Datetime("ns")`` first (clipped to the ns range, which keeps out-of-range dates
  out of range);
* ``min_value``/``max_value`` strings are coerced by pydantic to ``datetime.date``, which
  pandas 3 refuses to compare with ``datetime64``: bounds are passed as ``datetime``;
* the pandas regex metric is ``str.contains`` (a search), so patterns must be anchored;
* every pandas batch under 1 GB is md5-fingerprinted via ``hash_pandas_object`` (slow on
  Arrow strings), and ``Batch.validate`` builds the batch a second time, so the hash ran
  twice: ~3 s of a 3.5 s run at 1M rows. Frames built here skip it (see below);
* the cached execution engine keeps the last frame and its per-row metrics alive after a
  run; ``_release`` drops them;
* progress bars are on unless the context's ``progress_bars`` variable turns them off.
"""

from __future__ import annotations

import os

os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")

import datetime as dt  # noqa: E402
import logging  # noqa: E402
import math  # noqa: E402
import re  # noqa: E402
import tempfile  # noqa: E402
import threading  # noqa: E402
import time  # noqa: E402
import uuid  # noqa: E402
from functools import lru_cache  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

import great_expectations as gx  # noqa: E402
import polars as pl  # noqa: E402
from great_expectations.data_context.types.base import ProgressBarsConfig  # noqa: E402
from great_expectations.execution_engine import pandas_execution_engine as _gx_pandas  # noqa: E402

__all__ = ["KINDS", "SUITE_SPECS", "validate_extract", "build_suite"]

_gx_logger = logging.getLogger("great_expectations")
if _gx_logger.level == logging.NOTSET:
    _gx_logger.setLevel(logging.ERROR)

KINDS = ("dtks", "dukcapil")

# Placeholder for "the day the validation runs", resolved when the suite is built.
TODAY = "today"
# Columns holding dates; their between-bounds are ISO strings (or TODAY) in the specs.
DATE_COLUMNS = frozenset({"tanggal_lahir", "tanggal_meninggal"})

NIK_REGEX = r"^[0-9]{16}$"
NO_KK_REGEX = r"^[0-9]{16}$"
KODE_WILAYAH_REGEX = r"^[0-9]{10}$"

COLUMNS: dict[str, list[str]] = {
    "dtks": [
        "source_line", "id_dtks", "nik_raw", "nik", "no_kk", "nama", "jenis_kelamin",
        "tempat_lahir", "tanggal_lahir", "alamat", "kode_wilayah", "program",
    ],
    "dukcapil": [
        "source_line", "nik_raw", "nik", "no_kk", "nama", "jenis_kelamin", "tempat_lahir",
        "tanggal_lahir", "alamat", "kode_wilayah", "tanggal_meninggal",
    ],
}

REQUIRED: dict[str, list[str]] = {
    "dtks": ["id_dtks", "nik", "nama", "jenis_kelamin", "tanggal_lahir", "kode_wilayah"],
    "dukcapil": ["nik", "nama", "jenis_kelamin", "tanggal_lahir", "kode_wilayah"],
}


def _not_null(kind: str) -> list[dict[str, Any]]:
    return [
        {"rule": f"{column}.not_null", "type": "expect_column_values_to_not_be_null",
         "kwargs": {"column": column}}
        for column in REQUIRED[kind]
    ]


_COMMON_VALUE_RULES: list[dict[str, Any]] = [
    {"rule": "nik.format", "type": "expect_column_values_to_match_regex",
     "kwargs": {"column": "nik", "regex": NIK_REGEX, "mostly": 0.9}},
    {"rule": "no_kk.format", "type": "expect_column_values_to_match_regex",
     "kwargs": {"column": "no_kk", "regex": NO_KK_REGEX, "mostly": 0.9}},
    {"rule": "jenis_kelamin.in_set", "type": "expect_column_values_to_be_in_set",
     "kwargs": {"column": "jenis_kelamin", "value_set": ["L", "P"]}},
    {"rule": "kode_wilayah.format", "type": "expect_column_values_to_match_regex",
     "kwargs": {"column": "kode_wilayah", "regex": KODE_WILAYAH_REGEX}},
    {"rule": "tanggal_lahir.range", "type": "expect_column_values_to_be_between",
     "kwargs": {"column": "tanggal_lahir", "min_value": "1900-01-01", "max_value": TODAY}},
]

# The suites, as data. Each spec: a stable rule id (echoed in the results), the GX
# expectation type (snake_case, as in GX results) and its kwargs (JSON values only).
# Null values are skipped by every column-map expectation, so the no_kk / tanggal_meninggal
# rules apply to the filled-in values only.
SUITE_SPECS: dict[str, list[dict[str, Any]]] = {
    "dtks": [
        {"rule": "table.columns", "type": "expect_table_columns_to_match_set",
         "kwargs": {"column_set": COLUMNS["dtks"], "exact_match": False}},
        {"rule": "table.row_count", "type": "expect_table_row_count_to_be_between",
         "kwargs": {"min_value": 1}},
        *_not_null("dtks"),
        {"rule": "id_dtks.unique", "type": "expect_column_values_to_be_unique",
         "kwargs": {"column": "id_dtks"}},
        *_COMMON_VALUE_RULES,
    ],
    "dukcapil": [
        {"rule": "table.columns", "type": "expect_table_columns_to_match_set",
         "kwargs": {"column_set": COLUMNS["dukcapil"], "exact_match": False}},
        {"rule": "table.row_count", "type": "expect_table_row_count_to_be_between",
         "kwargs": {"min_value": 1}},
        *_not_null("dukcapil"),
        *_COMMON_VALUE_RULES,
        {"rule": "tanggal_meninggal.range", "type": "expect_column_values_to_be_between",
         "kwargs": {"column": "tanggal_meninggal", "min_value": "1900-01-01",
                    "max_value": TODAY}},
        {"rule": "tanggal_meninggal.after_lahir",
         "type": "expect_column_pair_values_a_to_be_greater_than_b",
         "kwargs": {"column_A": "tanggal_meninggal", "column_B": "tanggal_lahir",
                    "or_equal": True, "ignore_row_if": "either_value_is_missing"}},
    ],
}

# Only these fields of a GX result are copied out: counts and percentages, never values.
_COUNT_FIELDS = ("element_count", "missing_count", "unexpected_count")
_PERCENT_FIELDS = ("unexpected_percent",)
# Table-level expectations whose observed_value is metadata (column names, row count).
_OBSERVED_OK = frozenset({
    "expect_table_columns_to_match_set",
    "expect_table_row_count_to_be_between",
})
_RESULT_FORMAT = {"result_format": "BASIC", "partial_unexpected_count": 0}

# Datetime[ns] covers 1677-09-21 .. 2262-04-11; clipping to this keeps impossible dates
# impossible for the 1900..today bound while avoiding overflow in the cast.
_NS_MIN = dt.date(1678, 1, 1)
_NS_MAX = dt.date(2261, 12, 31)


def _camel(snake: str) -> str:
    return "".join(part.capitalize() for part in snake.split("_"))


def _resolve_kwargs(kwargs: dict[str, Any], today: dt.date) -> dict[str, Any]:
    """Spec kwargs -> kwargs for the GX expectation (date bounds become datetimes)."""
    resolved = dict(kwargs)
    if resolved.get("column") in DATE_COLUMNS:
        for key in ("min_value", "max_value"):
            value = resolved.get(key)
            if value == TODAY:
                resolved[key] = dt.datetime.combine(today, dt.time())
            elif isinstance(value, str):
                resolved[key] = dt.datetime.fromisoformat(value)
    return resolved


def _json_kwargs(kwargs: dict[str, Any]) -> dict[str, Any]:
    out = {}
    for key, value in kwargs.items():
        if isinstance(value, (dt.date, dt.datetime)):
            value = value.isoformat()
        elif isinstance(value, (tuple, set, frozenset)):
            value = list(value)
        out[key] = value
    return out


def build_suite(kind: str, today: dt.date | None = None) -> gx.ExpectationSuite:
    """The GX suite for ``kind``, built from ``SUITE_SPECS`` (cached per kind and day)."""
    if kind not in SUITE_SPECS:
        raise ValueError(f"unknown extract kind {kind!r}; expected one of {KINDS}")
    return _build_suite(kind, today or dt.date.today())


@lru_cache(maxsize=8)
def _build_suite(kind: str, today: dt.date) -> gx.ExpectationSuite:
    expectations = []
    for spec in SUITE_SPECS[kind]:
        cls = getattr(gx.expectations, _camel(spec["type"]))
        expectations.append(
            cls(**_resolve_kwargs(spec["kwargs"], today), meta={"rule": spec["rule"]})
        )
    return gx.ExpectationSuite(name=f"verval_{kind}", expectations=expectations)


# GX fingerprints every pandas batch under 1 GB with pandas.util.hash_pandas_object (an md5
# kept in the batch markers only). On pandas 3 Arrow-backed strings that costs ~1.5 s per
# million rows -- more than the whole validation -- and GX 1.24 has no switch for it.
# Frames built here carry a ready-made fingerprint in ``DataFrame.attrs``; every other
# frame still goes through GX's own hash.
_FINGERPRINT_ATTR = "verval_fingerprint"


def _install_fingerprint_shortcut() -> None:
    original = _gx_pandas.hash_pandas_dataframe
    if getattr(original, "verval_shortcut", False):
        return

    def hash_pandas_dataframe(df):
        fingerprint = getattr(df, "attrs", {}).get(_FINGERPRINT_ATTR)
        return fingerprint if fingerprint is not None else original(df)

    hash_pandas_dataframe.verval_shortcut = True
    _gx_pandas.hash_pandas_dataframe = hash_pandas_dataframe


_install_fingerprint_shortcut()

_lock = threading.Lock()
# All runs of a kind share one batch id on one cached execution engine, so runs are
# serialized (GX's pandas path holds the GIL nearly all the time anyway).
_run_lock = threading.Lock()
_batch_definitions: dict[str, Any] = {}


def _batch_definition(kind: str):
    """One ephemeral context per process; one dataframe asset per kind."""
    with _lock:
        if not _batch_definitions:
            context = gx.get_context(mode="ephemeral")
            context.variables.progress_bars = ProgressBarsConfig(
                globally=False, metric_calculations=False
            )
            source = context.data_sources.add_pandas(name="verval")
            for name in KINDS:
                asset = source.add_dataframe_asset(name=name)
                _batch_definitions[name] = asset.add_batch_definition_whole_dataframe("whole")
        return _batch_definitions[kind]


def _release(batch_definition) -> None:
    """Drop the frame and per-row metrics GX keeps on the cached engine after a run.

    The data source's execution engine outlives the call: its batch cache holds the pandas
    frame and its metric cache the per-row condition series, until the next validation.
    """
    engine = batch_definition.data_asset.datasource.get_execution_engine()
    engine.batch_manager.reset_batch_cache()
    engine.batch_manager.batch_data_cache.clear()
    cache = getattr(engine, "_metric_cache", None)  # private in GX 1.24; no public clear
    if hasattr(cache, "clear"):
        cache.clear()


def _to_pandas(frame: pl.DataFrame):
    """polars -> pandas, with date columns as datetime64[ns] (GX's vectorized path)."""
    casts = []
    for name, dtype in frame.schema.items():
        if dtype == pl.Date:
            casts.append(pl.col(name).clip(_NS_MIN, _NS_MAX).cast(pl.Datetime("ns")))
        elif isinstance(dtype, pl.Datetime) and (dtype.time_unit != "ns"):
            low = dt.datetime.combine(_NS_MIN, dt.time())
            high = dt.datetime.combine(_NS_MAX, dt.time())
            if dtype.time_zone is None:
                casts.append(pl.col(name).clip(low, high).cast(pl.Datetime("ns")))
    if casts:
        frame = frame.with_columns(casts)
    pdf = frame.to_pandas()
    pdf.attrs[_FINGERPRINT_ATTR] = f"verval-{uuid.uuid4().hex}"
    return pdf


_DIGITS = re.compile(r"\d{4,}")


def _error_message(exception_info: Any) -> str | None:
    """First exception message of a GX result, with digit runs masked (no NIK leaks)."""
    if not exception_info:
        return None
    infos = exception_info.values() if "raised_exception" not in exception_info else [
        exception_info
    ]
    for info in infos:
        if isinstance(info, dict) and info.get("raised_exception"):
            message = str(info.get("exception_message") or "error").splitlines()[0]
            return _DIGITS.sub("#", message)[:200]
    return None


def _number(value: Any, kind: type) -> Any:
    if value is None:
        return None
    value = kind(value)
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def _percent(value: float | None) -> float | None:
    """Percentages to 6 decimals, so results over chunks equal those over the whole."""
    return None if value is None else round(value, 6)


def _summarize(spec: dict[str, Any], res: Any, today: dt.date) -> dict[str, Any]:
    kwargs = spec["kwargs"]
    raw = (res.result or {}) if res is not None else {}
    out: dict[str, Any] = {
        "rule": spec["rule"],
        "expectation": spec["type"],
        "column": kwargs.get("column", kwargs.get("column_A")),
        "success": bool(res.success) if res is not None else False,
        "unexpected_count": _number(raw.get("unexpected_count"), int),
        "unexpected_percent": _percent(_number(raw.get("unexpected_percent"), float)),
    }
    for field in ("element_count", "missing_count"):
        if field in raw:
            out[field] = _number(raw[field], int)
    if spec["type"] in _OBSERVED_OK and "observed_value" in raw:
        observed = raw["observed_value"]
        out["observed_value"] = (
            [str(c) for c in observed] if isinstance(observed, list) else _number(observed, int)
        )
        mismatched = (raw.get("details") or {}).get("mismatched")
        if mismatched:
            out["mismatched"] = {k: [str(c) for c in v] for k, v in mismatched.items()}
    out["kwargs"] = _json_kwargs(_resolve_kwargs(kwargs, today))
    error = _error_message(res.exception_info) if res is not None else "not evaluated"
    if error:
        out["error"] = error
    return out


# Rows GX validates at once, held as a pandas frame by the thread that validates beside the
# link: at 1M rows through Prefect, chunks of a million set the link stage's peak (2,367
# MiB; 1,861 with 250,000). Alone at 10M rows: DTKS 35.0 s / 1,762 MiB with chunks of a
# million, 32.1 s / 725 MiB with 250,000; Dukcapil 26.8 s / 1,053 MiB and 42.2 s / 641 MiB
# (GX's cost per chunk); the same results.
CHUNK_ROWS = 250_000
# From this many chunks on, a Parquet extract with a uniqueness rule (DTKS) is scattered
# into its chunks in one pass instead of being read once per chunk (a filter each).
# Measured alone, when Dukcapil was chunked the same way: at 1M rows, 3 chunks of Dukcapil
# 2.2 s by filters, 3.0 s scattered; at 10M, 25 chunks 66.3 s by filters, 35.2 s scattered
# (DTKS, 10 chunks: 24.9 s, 20.5 s). Filters grow with the square of the rows, the scatter
# with the rows.
SCATTER_MIN_PARTS = 5


def _validate_frame(frame: pl.DataFrame, kind: str, today: dt.date) -> list[dict[str, Any]]:
    suite = build_suite(kind, today)
    batch_definition = _batch_definition(kind)
    data = _to_pandas(frame)
    with _run_lock:
        try:
            batch = batch_definition.get_batch(batch_parameters={"dataframe": data})
            validation = batch.validate(suite, result_format=_RESULT_FORMAT)
        finally:
            _release(batch_definition)
    del data
    by_rule = {
        (res.expectation_config.meta or {}).get("rule"): res for res in validation.results
    }
    return [_summarize(spec, by_rule.get(spec["rule"]), today) for spec in SUITE_SPECS[kind]]


def _combine(spec: dict[str, Any], parts: list[dict[str, Any]], rows: int) -> dict[str, Any]:
    """One rule's result over the whole extract from its results per chunk: counts add up;
    success is judged again on the totals (`mostly` is a share of all values)."""
    out = dict(parts[0])
    if spec["type"] == "expect_table_row_count_to_be_between":
        kwargs = out["kwargs"]
        out["observed_value"] = rows
        out["success"] = (kwargs.get("min_value") is None or rows >= kwargs["min_value"]) and (
            kwargs.get("max_value") is None or rows <= kwargs["max_value"])
        return out
    if out.get("unexpected_count") is None:  # table-level: every chunk must pass
        out["success"] = all(p["success"] for p in parts)
        return out
    for field in ("unexpected_count", "element_count", "missing_count"):
        if field in out:
            out[field] = sum(p.get(field) or 0 for p in parts)
    considered = out.get("element_count", rows) - out.get("missing_count", 0)
    out["unexpected_percent"] = _percent(100.0 * out["unexpected_count"] / considered) if considered else None
    mostly = spec["kwargs"].get("mostly", 1.0)
    out["success"] = considered == 0 or (1 - out["unexpected_count"] / considered) >= mostly
    errors = [p["error"] for p in parts if p.get("error")]
    if errors:
        out["error"], out["success"] = errors[0], False
    return out


def _chunks(frame: pl.LazyFrame, kind: str, rows: int, chunk_rows: int, path: str | None = None):
    """The extract in about rows / chunk_rows chunks. Rows sharing a value of a column that
    must be unique fall in the same chunk (hash of that column), so duplicates are counted
    exactly as over the whole extract. From a Parquet `path` with many chunks they are
    written out in one pass over the file (_scatter), not read by a filter each. An
    extract without such a rule is cut into consecutive slices."""
    parts = max(1, math.ceil(rows / chunk_rows))
    if parts == 1:
        yield frame.collect()
        return
    unique = [s["kwargs"]["column"] for s in SUITE_SPECS[kind] if s["type"] == "expect_column_values_to_be_unique"]
    if not unique:
        # No rule compares rows with each other: any cut gives the whole extract's counts,
        # so the chunks are consecutive slices, each read alone (at 10M rows, Dukcapil's 25
        # chunks 53.6 s scattered by a hash, 27.3 s sliced).
        for offset in range(0, rows, chunk_rows):
            yield frame.slice(offset, chunk_rows).collect()
        return
    key = pl.col(unique[0]).hash(seed=0)
    if path is None or parts < SCATTER_MIN_PARTS:
        for part in range(parts):
            yield frame.filter(key % parts == part).collect()
        return
    # Beside the extract, in the round's work folder, and removed when done.
    with tempfile.TemporaryDirectory(dir=Path(path).parent, prefix=".expectation-chunks-") as folder:
        written = _scatter(frame, rows, key, parts, chunk_rows, Path(folder))
        for part in range(parts):
            yield pl.read_ipc(written[part]) if part in written else frame.limit(0).collect()


def _scatter(source: pl.LazyFrame, rows: int, key: pl.Expr, parts: int, batch_rows: int, folder: Path) -> dict[int, Path]:
    """Each of the `rows` rows of `source` (a Parquet scan, read slice by slice) into the
    file of its part (key % parts), in the file's order: the chunks hold the rows a filter
    per part would, in the same order. Arrow IPC files: written and read back at memory
    speed (Parquet cost more than the scans it saves at 1M rows)."""
    import pyarrow as pa

    writers: dict[int, Any] = {}
    try:
        for offset in range(0, rows, batch_rows):
            batch = source.slice(offset, batch_rows).with_columns(_part=key % parts).collect()
            for (part,), piece in batch.partition_by("_part", as_dict=True, maintain_order=True).items():
                table = piece.drop("_part").to_arrow()
                if part not in writers:
                    writers[part] = pa.ipc.new_file(folder / f"{part}.arrow", table.schema)
                writers[part].write_table(table)
    finally:
        for writer in writers.values():
            writer.close()
    return {part: folder / f"{part}.arrow" for part in writers}


def validate_extract(source: pl.DataFrame | pl.LazyFrame | str, kind: str, chunk_rows: int = CHUNK_ROWS) -> dict[str, Any]:
    """Validate a normalized staging extract (``kind`` "dtks" or "dukcapil"): a frame, or a
    Parquet path read chunk by chunk so that memory stays that of one chunk (GX validates
    pandas frames only) while the results are those of the whole extract.

    Returns a JSON-serializable dict: kind, success, rows, seconds, evaluated, successful and
    ``results`` (one entry per spec in ``SUITE_SPECS[kind]``, in that order) holding only
    counts, percentages and the expectation kwargs -- never values from the frame.
    """
    if kind not in SUITE_SPECS:
        raise ValueError(f"unknown extract kind {kind!r}; expected one of {KINDS}")
    frame = pl.scan_parquet(source) if isinstance(source, str) else source.lazy()
    started = time.perf_counter()
    today = dt.date.today()
    rows = frame.select(pl.len()).collect().item()
    path = source if isinstance(source, str) else None
    per_chunk = [_validate_frame(chunk, kind, today) for chunk in _chunks(frame, kind, rows, chunk_rows, path)]
    if len(per_chunk) == 1:
        results = per_chunk[0]
    else:
        results = [_combine(spec, [chunk[i] for chunk in per_chunk], rows) for i, spec in enumerate(SUITE_SPECS[kind])]
    successful = sum(r["success"] for r in results)
    return {
        "kind": kind,
        "success": successful == len(results),
        "rows": rows,
        "seconds": round(time.perf_counter() - started, 3),
        "evaluated": len(results),
        "successful": successful,
        "results": results,
    }
