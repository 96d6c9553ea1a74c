"""Ingest: read an extract (CSV, Parquet, XLSX) as text, map its columns, normalise,
quarantine what cannot be parsed, and write staging Parquet.

Every column is read as text: a NIK must never pass through a float. Each input row
ends up either in the staging table or in the quarantine table with its line number
and reason, never dropped.
"""

from __future__ import annotations

import codecs
from dataclasses import asdict, dataclass
from pathlib import Path

import duckdb
import polars as pl

from pipeline import contract
from pipeline.errors import InputError

CSV_SUFFIXES = {".csv", ".txt", ".tsv"}
XLSX_SUFFIXES = {".xlsx", ".xlsm", ".xls"}
PARQUET_SUFFIXES = {".parquet", ".pq"}

SEX_CODES = {
    "L": "L", "LK": "L", "LAKI-LAKI": "L", "LAKI LAKI": "L", "LAKILAKI": "L", "LAKI": "L", "PRIA": "L", "1": "L",
    "P": "P", "PR": "P", "PEREMPUAN": "P", "WANITA": "P", "2": "P",
}
# Formats seen in registry extracts; XLSX date cells arrive as "YYYY-MM-DD HH:MM:SS".
DATE_FORMATS = ("%Y-%m-%d", "%d-%m-%Y", "%d/%m/%Y", "%Y/%m/%d")
EARLIEST_BIRTH = "1900-01-01"


@dataclass
class IngestResult:
    kind: str
    source: str
    file_format: str
    encoding: str | None
    delimiter: str | None
    column_mapping: dict[str, str]
    rows_read: int
    rows_staged: int
    rows_quarantined: int
    staging_path: str
    quarantine_path: str

    def to_dict(self) -> dict:
        return asdict(self)


# --------------------------------------------------------------------------- reading


def sniff_delimiter(first_line: str) -> str:
    counts = {sep: first_line.count(sep) for sep in (";", ",", "\t", "|")}
    best = max(counts, key=counts.get)
    return best if counts[best] else ","


def _first_line(path: Path, encoding: str) -> str:
    with open(path, "rb") as handle:
        head = handle.read(64 * 1024)
    return head.decode(encoding, errors="replace").lstrip("\ufeff").splitlines()[0] if head else ""


def _transcode_cp1252(path: Path, work_dir: Path) -> Path:
    """Windows-1252 is not Latin-1 (0x80-0x9F differ), so DuckDB's latin-1 reader would
    garble curly quotes; transcode once, streaming, into the run's work folder."""
    target = work_dir / f"{path.stem}.utf8.csv"
    decoder = codecs.getincrementaldecoder("cp1252")(errors="replace")
    with open(path, "rb") as source, open(target, "w", encoding="utf-8", newline="") as sink:
        while chunk := source.read(16 * 1024 * 1024):
            sink.write(decoder.decode(chunk))
        sink.write(decoder.decode(b"", final=True))
    return target


def _read_csv(path: Path, work_dir: Path) -> tuple[pl.DataFrame, pl.DataFrame, dict]:
    """Rows as text with their file line, plus the lines the CSV reader rejected."""
    encoding = "utf-8"
    source = path
    try:
        with open(path, "rb") as handle:
            handle.read(8 * 1024 * 1024).decode("utf-8")
    except UnicodeDecodeError as exc:
        # A cut multi-byte character at the chunk edge is still UTF-8.
        if exc.start < 8 * 1024 * 1024 - 4:
            encoding = "cp1252"
    delimiter = sniff_delimiter(_first_line(path, encoding))
    if encoding == "cp1252":
        source = _transcode_cp1252(path, work_dir)
    con = duckdb.connect()
    try:
        try:
            rows = _duckdb_csv(con, source, delimiter)
        except duckdb.InvalidInputException as exc:
            if "not utf-8 encoded" not in str(exc) or encoding != "utf-8":
                raise InputError(f"{path}: cannot read as CSV: {exc}") from exc
            encoding = "cp1252"
            source = _transcode_cp1252(path, work_dir)
            rows = _duckdb_csv(con, source, delimiter)
        rejects = con.sql(
            "SELECT line::BIGINT AS line, error_type || ': ' || error_message AS reason, csv_line AS raw "
            "FROM reject_errors ORDER BY line"
        ).pl()
    finally:
        con.close()
    rows = _attach_csv_lines(rows, rejects)
    return rows, rejects, {"encoding": encoding, "delimiter": delimiter}


def _duckdb_csv(con: duckdb.DuckDBPyConnection, source: Path, delimiter: str) -> pl.DataFrame:
    return con.sql(
        "SELECT * FROM read_csv($path, all_varchar=true, header=true, delim=$delim, quote='\"', "
        "escape='\"', store_rejects=true, strict_mode=true)",
        params={"path": str(source), "delim": delimiter},
    ).pl()


def _attach_csv_lines(rows: pl.DataFrame, rejects: pl.DataFrame) -> pl.DataFrame:
    """File line of each accepted row: its ordinal + header, shifted past rejected lines
    that came before it (reject i, 1-based and sorted, precedes accepted rows > line_i - i - 1)."""
    rows = _numbered(rows, header_lines=1)
    if rejects.height == 0:
        return rows
    rows = rows.drop("_line")
    thresholds = (
        rejects.select(pl.col("line"))
        .with_row_index("i", offset=1)
        .select(threshold=pl.col("line") - pl.col("i").cast(pl.Int64) - 1)
        .with_row_index("skipped", offset=1)
        .with_columns(pl.col("skipped").cast(pl.Int64))
        .sort("threshold")
    )
    # Number of rejects whose threshold is below the row's ordinal, via an as-of join.
    joined = rows.sort("_row").join_asof(
        thresholds.with_columns(key=pl.col("threshold") + 1),
        left_on="_row", right_on="key", strategy="backward",
    )
    return joined.with_columns(_line=pl.col("_row") + 1 + pl.col("skipped").fill_null(0)).drop(
        "threshold", "key", "skipped"
    )


def _numbered(frame: pl.DataFrame, header_lines: int) -> pl.DataFrame:
    """_row: 1-based data row; _line: where a user finds it (file line, sheet row, row)."""
    return frame.with_columns(_row=pl.int_range(1, pl.len() + 1, dtype=pl.Int64)).with_columns(
        _line=pl.col("_row") + header_lines
    )


def _read_parquet(path: Path) -> pl.DataFrame:
    frame = pl.read_parquet(path)
    non_text = [name for name, dtype in frame.schema.items() if dtype == pl.Float64 or dtype == pl.Float32]
    if any(alias_is_nik(name) for name in non_text):
        raise InputError(
            f"{path}: the NIK column is stored as a floating-point number, which has already "
            "lost digits. Export the extract again with NIK as text."
        )
    return _numbered(frame.select(pl.all().cast(pl.String)), header_lines=0)


def alias_is_nik(name: str) -> bool:
    nik_aliases = {contract.alias_key(a) for spec in contract.columns("dtks") if spec.name == "nik" for a in spec.aliases}
    return contract.alias_key(name) in nik_aliases | {"NIK"}


def _refuse_numeric_nik(path: Path) -> None:
    """Excel keeps 15 significant digits of a number: a NIK typed into a numeric cell has
    already lost its 16th digit. A column the first 1,000 rows show as numeric is refused."""
    import fastexcel

    sheet = fastexcel.read_excel(str(path)).load_sheet(0, n_rows=1000)
    numeric = [c.name for c in sheet.available_columns() if alias_is_nik(c.name) and c.dtype in ("float", "int")]
    if numeric:
        raise InputError(
            f"{path}: column {numeric[0]!r} holds NIKs as numbers; Excel keeps only 15 digits of a number, "
            "so the 16th digit is already lost. Format the column as Text in Excel (or export it as CSV "
            "from the source system) and run again."
        )


def _read_xlsx(path: Path) -> pl.DataFrame:
    try:
        _refuse_numeric_nik(path)
        frame = pl.read_excel(path, engine="calamine", infer_schema_length=0)
    except InputError:
        raise
    except Exception as exc:  # calamine/fastexcel raise their own error types
        raise InputError(f"{path}: cannot read the workbook's first sheet: {exc}") from exc
    # Header is line 1 of the sheet, so data row k sits on line k + 1.
    return _numbered(frame.select(pl.all().cast(pl.String)), header_lines=1)


def read_extract(path: Path, work_dir: Path) -> tuple[pl.DataFrame, pl.DataFrame, dict]:
    """Read any supported extract as all-text rows (+ _row, _line) and the rejected lines."""
    if not path.exists():
        raise InputError(f"{path}: file not found")
    suffix = path.suffix.lower()
    empty_rejects = pl.DataFrame(schema={"line": pl.Int64, "reason": pl.String, "raw": pl.String})
    if suffix in CSV_SUFFIXES:
        rows, rejects, info = _read_csv(path, work_dir)
        return rows, rejects, {"file_format": "csv", **info}
    if suffix in PARQUET_SUFFIXES:
        return _read_parquet(path), empty_rejects, {"file_format": "parquet", "encoding": None, "delimiter": None}
    if suffix in XLSX_SUFFIXES:
        return _read_xlsx(path), empty_rejects, {"file_format": "xlsx", "encoding": None, "delimiter": None}
    raise InputError(
        f"{path}: unsupported file type {suffix!r}; use CSV (.csv), Parquet (.parquet) or Excel (.xlsx)"
    )


# --------------------------------------------------------------------------- columns


def map_columns(headers: list[str], kind: str, path: Path) -> dict[str, str]:
    """Canonical column -> header in the file. Raises InputError naming every missing
    required column before any work is done."""
    by_key: dict[str, str] = {}
    for header in headers:
        by_key.setdefault(contract.alias_key(header), header)
    mapping: dict[str, str] = {}
    for spec in contract.columns(kind):
        for candidate in (spec.name, *spec.aliases):
            header = by_key.get(contract.alias_key(candidate))
            if header is not None and header not in mapping.values():
                mapping[spec.name] = header
                break
    if "kode_wilayah" not in mapping:
        parts, _ = contract.split_region_parts()
        found = [next((by_key[contract.alias_key(a)] for a in aliases if contract.alias_key(a) in by_key), None) for aliases in parts]
        if all(found):
            mapping["kode_wilayah"] = "+".join(found)
    missing = [spec for spec in contract.columns(kind) if spec.required and spec.name not in mapping]
    if missing:
        wanted = "; ".join(f"{spec.name} (accepted headers: {', '.join(spec.aliases)})" for spec in missing)
        raise InputError(
            f"{path}: the {kind} extract lacks required column(s): {wanted}. "
            f"Headers found: {', '.join(h for h in headers if not h.startswith('_'))}. "
            "Rename the column, or add its header as an alias in pipeline/rules/columns.toml."
        )
    return mapping


def _column_expr(mapping: dict[str, str], name: str) -> pl.Expr:
    source = mapping.get(name)
    if source is None:
        return pl.lit(None, dtype=pl.String).alias(name)
    if name == "kode_wilayah" and "+" in source:
        _, widths = contract.split_region_parts()
        digits = [
            pl.col(part).str.replace_all(r"\D", "").str.zfill(width).str.slice(-width)
            for part, width in zip(source.split("+"), widths)
        ]
        return pl.concat_str(digits).alias(name)
    return pl.col(source).alias(name)


# --------------------------------------------------------------------------- normalising


def _clean_text(expr: pl.Expr) -> pl.Expr:
    cleaned = expr.str.strip_chars().str.replace_all(r"\s+", " ")
    return pl.when(cleaned == "").then(None).otherwise(cleaned)


def parse_date(expr: pl.Expr) -> pl.Expr:
    text = expr.str.strip_chars().str.slice(0, 10)
    return pl.coalesce([text.str.to_date(fmt, strict=False) for fmt in DATE_FORMATS])


def normalise_sex(expr: pl.Expr) -> pl.Expr:
    return expr.str.strip_chars().str.to_uppercase().replace_strict(SEX_CODES, default=None)


def normalise(raw: pl.DataFrame, kind: str, mapping: dict[str, str], today: str) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Staging rows and quarantined rows (with reasons) from the all-text input."""
    names = [spec.name for spec in contract.columns(kind)]
    frame = raw.select(pl.col("_row"), pl.col("_line"), *[_column_expr(mapping, n) for n in names])
    frame = frame.with_columns(
        nik_raw=pl.col("nik"),
        # A leading apostrophe is how spreadsheets are told to keep a number as text.
        nik=pl.col("nik").str.strip_chars().str.strip_prefix("'").str.strip_chars(),
        no_kk=_clean_text(pl.col("no_kk").str.strip_chars().str.strip_prefix("'")),
        nama=_clean_text(pl.col("nama")).str.to_uppercase(),
        jenis_kelamin_raw=pl.col("jenis_kelamin"),
        jenis_kelamin=normalise_sex(pl.col("jenis_kelamin")),
        tanggal_lahir_raw=pl.col("tanggal_lahir"),
        tanggal_lahir=parse_date(pl.col("tanggal_lahir")),
        kode_wilayah=pl.col("kode_wilayah").str.replace_all(r"[\s.]", ""),
        tempat_lahir=_clean_text(pl.col("tempat_lahir")),
        alamat=_clean_text(pl.col("alamat")),
    )
    if kind == "dtks":
        frame = frame.with_columns(id_dtks=pl.col("id_dtks").str.strip_chars(), program=_clean_text(pl.col("program")))
    else:
        frame = frame.with_columns(
            # A death entry that cannot be read as a date still records a death.
            deceased=_clean_text(pl.col("tanggal_meninggal")).is_not_null(),
            tanggal_meninggal=parse_date(pl.col("tanggal_meninggal")),
        )

    earliest = pl.lit(EARLIEST_BIRTH).str.to_date()
    latest = pl.lit(today).str.to_date()
    reasons = [
        (pl.col("nama").is_null(), "nama kosong"),
        (pl.col("jenis_kelamin").is_null(), "jenis_kelamin tidak dikenal (pakai L/P, 1/2, LAKI-LAKI/PEREMPUAN)"),
        (pl.col("tanggal_lahir").is_null(), "tanggal_lahir tidak terbaca (pakai YYYY-MM-DD, DD-MM-YYYY atau DD/MM/YYYY)"),
        (~pl.col("tanggal_lahir").is_between(earliest, latest), "tanggal_lahir di luar 1900-01-01 sampai hari ini"),
        (~pl.col("kode_wilayah").str.contains(r"^\d{10}$").fill_null(False), "kode_wilayah bukan kode desa 10 digit"),
    ]
    if kind == "dtks":
        first_line = pl.col("_line").min().over("id_dtks")
        reasons = [
            (pl.col("id_dtks").is_null() | (pl.col("id_dtks") == ""), "id_dtks kosong"),
            (pl.col("_line") != first_line, "id_dtks ganda (baris pertama dipakai)"),
        ] + reasons
    reason_exprs = [pl.when(cond.fill_null(False)).then(pl.lit(text)) for cond, text in reasons]
    frame = frame.with_columns(_reason=pl.concat_str(reason_exprs, separator="; ", ignore_nulls=True))
    frame = frame.with_columns(_reason=pl.when(pl.col("_reason") == "").then(None).otherwise(pl.col("_reason")))

    bad = frame.filter(pl.col("_reason").is_not_null())
    staged_cols = ["source_line", "id_dtks"] if kind == "dtks" else ["source_line"]
    staged_cols += ["nik_raw", "nik", "no_kk", "nama", "jenis_kelamin", "tempat_lahir", "tanggal_lahir", "alamat", "kode_wilayah"]
    staged_cols += ["program"] if kind == "dtks" else ["tanggal_meninggal", "deceased"]
    staged = (
        frame.filter(pl.col("_reason").is_null())
        .rename({"_line": "source_line"})
        .select(staged_cols)
    )
    quarantined = bad.select(
        line=pl.col("_line"),
        id_dtks=pl.col("id_dtks") if kind == "dtks" else pl.lit(None, dtype=pl.String),
        reason=pl.col("_reason"),
        raw=pl.concat_str(
            [pl.col(c).fill_null("") for c in ("nik_raw", "nama", "jenis_kelamin_raw", "tanggal_lahir_raw", "kode_wilayah")],
            separator="|",
        ),
    )
    return staged, quarantined


# --------------------------------------------------------------------------- stage


def ingest_extract(path: Path, kind: str, staging_dir: Path, today: str) -> IngestResult:
    """Read, map, normalise and write one extract. Returns counts and file paths."""
    path = Path(path)
    staging_dir.mkdir(parents=True, exist_ok=True)
    raw, rejects, info = read_extract(path, staging_dir)
    mapping = map_columns([c for c in raw.columns if not c.startswith("_")], kind, path)
    staged, quarantined = normalise(raw, kind, mapping, today)
    rejected = rejects.select(
        line=pl.col("line"), id_dtks=pl.lit(None, dtype=pl.String), reason=pl.col("reason"), raw=pl.col("raw")
    )
    quarantine = pl.concat([quarantined, rejected]).sort("line").with_columns(
        source=pl.lit(kind), file=pl.lit(path.name)
    ).select("source", "file", "line", "id_dtks", "reason", "raw")

    staging_path = staging_dir / f"{kind}.parquet"
    quarantine_path = staging_dir / f"{kind}_quarantine.parquet"
    staged.sort("source_line").write_parquet(staging_path)
    quarantine.write_parquet(quarantine_path)
    return IngestResult(
        kind=kind,
        source=str(path),
        file_format=info["file_format"],
        encoding=info.get("encoding"),
        delimiter=info.get("delimiter"),
        column_mapping=mapping,
        rows_read=raw.height + rejects.height,
        rows_staged=staged.height,
        rows_quarantined=quarantine.height,
        staging_path=str(staging_path),
        quarantine_path=str(quarantine_path),
    )
