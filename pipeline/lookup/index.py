"""The status look-up index of one round: who may ask what, and what they are told.

Built from the round's Parquet outputs into `<round>/lookup/`:
  index.parquet    one entry per (query key, person): status, reason category, masked
                   name, an opaque handle. No name, NIK, id_dtks or region in clear.
  secret.key       the per-index HMAC secret (32 random bytes).
  handles.parquet  handle -> id_dtks, for objections filed against an answer.
All three are readable by their owner only. Copy index.parquet and secret.key to serve
the page elsewhere; the index alone cannot be searched or enumerated: its keys are
HMAC-SHA256(secret, "W|desa|name") and HMAC-SHA256(secret, "N|nik|name"), so finding an
entry needs the secret AND the person's name with their desa or NIK. A fresh secret per
index also means two rounds' indexes cannot be joined.

Status is per person, not per row: a row excluded only as a strong duplicate answers with
the status of the row kept in its cluster, and rows of one cluster matching one query
answer once, with the best status. Names are compared after the project's own
standardisation (pipeline.matching.standardise) in sorted-token form, so "Moch. Rizal"
finds "MUHAMMAD RIZAL" and "Aminah Siti" finds "SITI AMINAH".
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import json
import os
import re
import secrets
import shutil
import tomllib
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import duckdb
import numpy as np
import polars as pl
import pyarrow.parquet as pq

from pipeline.contract import anomaly_rules, outcome_rules, severities
from pipeline.errors import VervalError
from pipeline.paths import REFERENCE_DIR, RULES_DIR
from pipeline.report.mask import mask_name

INDEX_DIR = "lookup"
INDEX_FILE = "index.parquet"
# DTKS rows whose key texts are built at once. Measured alone: at 1M rows one slice peaked at
# 1,445-1,570 MiB, two 1,319 MiB (+0.3 s); at 10M rows (under load) 5 slices 7,096 MiB and
# 20 slices 6,464 MiB (the plan's, before any slice), the entries 58 s -> 74 s.
SLICE_ROWS = 500_000
KEY_FILE = "secret.key"
BUILDING_KEY_FILE = ".secret.key.building"  # the new secret, for the slices, until the index is written
HANDLES_FILE = "handles.parquet"
FORMAT = "verval-lookup-1"

OUTCOME_FILES = {o.file: o.citizen_status for o in outcome_rules().values() if o.citizen_status}
STATUS_RANK = {"terverifikasi": 0, "diperiksa": 1, "tidak_memenuhi_syarat": 2}
DEFAULT_REASON = "tidak_layak"
SEVERITY_RANK = {severity: i for i, severity in enumerate(severities())}


class StatusIndexError(VervalError):
    """The index is missing or unreadable."""


@cache
def lookup_rules() -> dict:
    with open(RULES_DIR / "lookup.toml", "rb") as handle:
        return tomllib.load(handle)


def status_words(status: str) -> dict:
    return lookup_rules()["status"][status]


def reason_label(reason: str | None) -> str | None:
    return lookup_rules()["reason"][reason]["label"] if reason else None


# --------------------------------------------------------------------------- query text


def normalise_nik(text: str | None) -> str | None:
    """A NIK as typed ("3201 0145 0190 0012", dots, dashes) -> 16 digits, else None."""
    digits = re.sub(r"[\s.\-]", "", text or "")
    return digits if re.fullmatch(r"\d{16}", digits) else None


def normalise_desa(text: str | None) -> str | None:
    """A desa code (10 digits, dots allowed: 32.01.01.1001) -> 10 digits, else None."""
    digits = re.sub(r"[\s.]", "", text or "")
    return digits if re.fullmatch(r"\d{10}", digits) else None


def standard_names(names: list[str]) -> list[str]:
    """Names as the index holds them: standardised (titles, Muhammad variants, old
    spelling), tokens sorted. One polars call for a whole batch of queries."""
    from pipeline.matching.standardise import standardise_names

    frame = standardise_names(pl.DataFrame({"nama": names}, schema={"nama": pl.String}))
    return [value or "" for value in frame["name_sorted"].to_list()]


def region_key(desa: str, name: str) -> str:
    return f"W|{desa}|{name}"


def nik_key(nik: str, name: str) -> str:
    return f"N|{nik}|{name}"


def keyed_hash(secret: bytes, text: str) -> tuple[int, int]:
    digest = hmac.new(secret, text.encode("utf-8"), hashlib.sha256).digest()
    return int.from_bytes(digest[:8], "big"), int.from_bytes(digest[8:16], "big")


def key_id(secret: bytes) -> str:
    return hashlib.sha256(b"verval-lookup-key-id|" + secret).hexdigest()[:16]


# --------------------------------------------------------------------------- building


def _scan(round_dir: Path, name: str) -> pl.LazyFrame | None:
    path = round_dir / name
    return pl.scan_parquet(path) if path.is_file() else None


def exclusion_reasons() -> pl.DataFrame:
    """anomaly_code -> citizen reason and its precedence (most severe first)."""
    rules = anomaly_rules()
    rows = [
        (code, rule.citizen_reason or DEFAULT_REASON, SEVERITY_RANK.get(rule.severity, 9) * 100 + i)
        for i, (code, rule) in enumerate(rules.items())
    ]
    return pl.DataFrame(rows, schema={"code": pl.String, "reason": pl.String, "precedence": pl.Int32}, orient="row")


def exclusion_reason(excluded: pl.LazyFrame) -> pl.LazyFrame:
    """id_dtks -> the reason category of an excluded row: that of its most severe
    excluding code (a row both dead and a duplicate reads as meninggal)."""
    return (
        excluded.select("id_dtks", code=pl.col("exclude_codes")).explode("code")
        .join(exclusion_reasons().lazy(), on="code", how="left")
        .sort("id_dtks", "precedence", nulls_last=True)
        .group_by("id_dtks").agg(reason=pl.col("reason").first().fill_null(DEFAULT_REASON))
    )


def row_statuses(round_dir: Path) -> pl.LazyFrame:
    """Every parsed DTKS row: id_dtks, cluster, the person's status and reason, the
    id_dtks that decides it (person_id), and what identifies the row."""
    parts = []
    for name, status in OUTCOME_FILES.items():
        frame = _scan(round_dir, name)
        if frame is None:
            raise StatusIndexError(f"{round_dir}: {name} not found; is this the output folder of a verval round?")
        columns = frame.collect_schema().names()
        parts.append(frame.select(
            "id_dtks", "nik", "nama", "kode_wilayah", "exclude_codes", "review_codes",
            nik_asli=pl.col("nik_asli") if "nik_asli" in columns else pl.lit(None, dtype=pl.String),
            cluster_id=pl.col("cluster_id") if "cluster_id" in columns else pl.lit(None, dtype=pl.String),
            status=pl.lit(status),
        ))
    rows = pl.concat(parts, how="vertical_relaxed").with_columns(cluster_id=pl.coalesce("cluster_id", "id_dtks"))

    own_reason = exclusion_reason(rows.filter(pl.col("status") == "tidak_memenuhi_syarat"))
    duplicate_codes = [code for code, rule in anomaly_rules().items() if rule.citizen_reason == "tercatat_ganda"]
    # A row held only as a duplicate (excluded, or in review) is the same person as the
    # row kept: the person reads the kept row's status.
    only_duplicate = lambda codes: (pl.col(codes).list.len() > 0) & pl.col(codes).list.eval(  # noqa: E731
        pl.element().is_in(duplicate_codes)).list.all()
    strong_duplicate = (
        ((pl.col("status") == "tidak_memenuhi_syarat") & only_duplicate("exclude_codes"))
        | ((pl.col("status") == "diperiksa") & (pl.col("exclude_codes").list.len() == 0) & only_duplicate("review_codes"))
    )
    clusters = _scan(round_dir, "duplicate_clusters.parquet")
    # Only the rows kept for another are looked up (their rows and the kept ones): joining
    # every row's cluster and kept row took 3.6 s at 10M rows.
    canonical = (
        clusters.filter(pl.col("canonical_id_dtks") != pl.col("id_dtks")).select("id_dtks", "canonical_id_dtks")
        if clusters is not None else pl.LazyFrame(schema={"id_dtks": pl.String, "canonical_id_dtks": pl.String})
    )
    rows = rows.join(own_reason, on="id_dtks", how="left").join(canonical, on="id_dtks", how="left")
    kept = rows.join(canonical.select(id_dtks=pl.col("canonical_id_dtks")).unique(), on="id_dtks", how="semi").select(
        canonical_id_dtks=pl.col("id_dtks"), k_status=pl.col("status"), k_reason=pl.col("reason"))
    # A kept status is found only for a row kept for another (`canonical` holds no others).
    inherit = strong_duplicate & pl.col("k_status").is_not_null()
    return rows.join(kept, on="canonical_id_dtks", how="left").select(
        "id_dtks", "cluster_id", "nik", "nik_asli", "nama", "kode_wilayah",
        status=pl.when(inherit).then("k_status").otherwise("status"),
        reason=pl.when(inherit).then("k_reason").otherwise("reason"),
        person_id=pl.when(inherit).then("canonical_id_dtks").otherwise("id_dtks"),
    )


def sorted_names(round_dir: Path, rows: pl.LazyFrame) -> pl.LazyFrame:
    """id_dtks -> name in sorted standard form. The round already standardised every
    parsed row in staging/records.parquet; without it (a copied round) it is done here."""
    records = _scan(round_dir, "staging/records.parquet")
    if records is not None and "name_sorted" in records.collect_schema().names():
        return records.select("id_dtks", "name_sorted")
    from pipeline.matching.standardise import standardise_names

    return standardise_names(rows.select("id_dtks", "nama").collect()).lazy().select("id_dtks", "name_sorted")


def desa_successors() -> pl.LazyFrame:
    """Retired desa code -> the code that replaced it, so a person registered under an old
    (Papua split) code is found from the current pickers too."""
    retired = pl.read_csv(REFERENCE_DIR / "retired_codes.csv", infer_schema=False)
    return retired.filter((pl.col("level") == "4") & pl.col("kode_pengganti_guess").is_not_null()).select(
        kode_wilayah=pl.col("kode"), successor=pl.col("kode_pengganti_guess")
    ).lazy()


def named_rows(round_dir: Path, rows: pl.LazyFrame) -> pl.LazyFrame:
    """The rows that carry a name, with its sorted standard form, its masked form and the
    NIK of the Dukcapil person a fuzzy link found for it (fuzzy_nik; one best link a row)."""
    named = rows.join(sorted_names(round_dir, rows), on="id_dtks", how="left")
    links = _scan(round_dir, "dukcapil_links.parquet")
    if links is not None:
        fuzzy = links.filter((pl.col("link_method") == "fuzzy") & ~pl.col("ambiguous").fill_null(False))
        named = named.join(fuzzy.select("id_dtks", fuzzy_nik=pl.col("dukcapil_nik")), on="id_dtks", how="left")
    else:
        named = named.with_columns(fuzzy_nik=pl.lit(None, dtype=pl.String))
    return named.filter(pl.col("name_sorted").is_not_null() & (pl.col("name_sorted") != "")).with_columns(
        nama_samaran=mask_name(pl.col("nama")), _other_row=pl.col("id_dtks") != pl.col("person_id"))


def key_texts(named: pl.DataFrame) -> pl.DataFrame:
    """(key_text, person fields): one per way a person can be asked for, from named_rows.
    Eager on purpose: at 1M rows the streaming engine took 5.9 s for what this does in 2.5 s."""
    keep = ["cluster_id", "person_id", "status", "reason", "nama_samaran", "_other_row"]
    desa = named.join(desa_successors().collect(), on="kode_wilayah", how="left")
    # A code equal to one the row already gives is left out before the concatenation: it
    # makes the same key for the same person (at 1M rows nik_asli repeats nik a million
    # times, a third of the rows to sort).
    def codes(frame: pl.DataFrame, columns: tuple[str, ...], kind: str) -> list[pl.DataFrame]:
        found = []
        for i, column in enumerate(columns):
            code = pl.col(column)
            for earlier in columns[:i]:
                code = pl.when(code.ne_missing(pl.col(earlier))).then(code)
            found.append(frame.select(*keep, code=code, name=pl.col("name_sorted"), kind=pl.lit(kind))
                         .filter(pl.col("code").is_not_null()))
        return found

    by_region = codes(desa, ("kode_wilayah", "successor"), "W")
    # The NIK as registered, the original before a reviewer's repair, and the NIK of the
    # Dukcapil person a fuzzy link found for a damaged one (what is on the person's KTP).
    by_nik = codes(named, ("nik", "nik_asli", "fuzzy_nik"), "N")
    keys = (
        pl.concat(by_region + by_nik, how="vertical_relaxed")
        .filter(pl.when(pl.col("kind") == "W").then(pl.col("code").str.contains(r"^\d{10}$"))
                .otherwise(pl.col("code").str.contains(r"^\d{16}$")).fill_null(False))
        .select(key_text=pl.format("{}|{}|{}", "kind", "code", "name"), *keep)
    )
    # Rows of one cluster answering one query are one person: once, best status, with the
    # masked name of the row that decides it (a hash-based unique keeps each group's first
    # row in frame order). Only the keys a cluster gives more than once are sorted for it
    # (4 % at 10M rows; sorting every key took 3.9 s a slice of 2M rows, this 2.4 s).
    shared = keys.select("key_text", "cluster_id").is_duplicated()
    chosen = (
        keys.filter(shared)
        .with_columns(_rank=pl.col("status").replace_strict(STATUS_RANK, return_dtype=pl.Int8))
        .sort("_rank", "person_id", "_other_row", "nama_samaran")
        .unique(["key_text", "cluster_id"], keep="first")
        .drop("_rank")
    )
    return pl.concat([keys.filter(~shared), chosen]).drop("cluster_id", "_other_row")


def _pads(secret: bytes) -> dict[str, bytes]:
    block = secret.ljust(64, b"\0") if len(secret) <= 64 else hashlib.sha256(secret).digest().ljust(64, b"\0")
    return {"ipad": bytes(b ^ 0x36 for b in block), "opad": bytes(b ^ 0x5C for b in block)}


def hmac_sql(column: str) -> str:
    """HMAC-SHA256 of a text column as DuckDB SQL (RFC 2104 over the $ipad/$opad blocks),
    as the hex digest; keyed_hash computes the same in Python for a query."""
    return f"sha256($opad || unhex(sha256($ipad || encode({column}))))"


def hashed(con: duckdb.DuckDBPyConnection, frame: pl.DataFrame, column: str, secret: bytes) -> pl.DataFrame:
    """frame with `column` replaced by k_hi, k_lo: the first 128 bits of its HMAC."""
    con.register("hash_input", frame)
    digest = hmac_sql(column)
    others = ", ".join(f'"{c}"' for c in frame.columns if c != column)
    result = con.sql(
        f"SELECT ('0x' || substr(h, 1, 16))::UBIGINT AS k_hi, ('0x' || substr(h, 17, 16))::UBIGINT AS k_lo"
        f"{', ' + others if others else ''} FROM (SELECT {digest} AS h, * FROM hash_input)",
        params=_pads(secret),
    ).pl()
    con.unregister("hash_input")
    return result


def random_handles(n: int) -> pl.Series:
    """n distinct random 64-bit handles: they only point into handles.parquet, so they
    carry nothing about the person and cannot be guessed."""
    rng = np.random.default_rng(secrets.randbits(128))
    while True:
        handles = pl.Series("handle", rng.integers(0, np.iinfo(np.uint64).max, size=n, dtype=np.uint64, endpoint=True))
        if handles.n_unique() == n:  # polars hashes: numpy's unique sorted 9.4M handles in 11 s
            return handles


def _write_owner_only(path: Path, write) -> None:
    """Write through a temporary sibling, owner-only from creation, then rename into place."""
    temporary = path.with_name(f".{path.name}.tmp-{secrets.token_hex(4)}")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    os.close(fd)
    try:
        write(temporary)
        os.chmod(temporary, 0o600)
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise


def round_date_of(round_dir: Path) -> str:
    summary = round_dir / "summary.json"
    if summary.is_file():
        return str(json.loads(summary.read_text(encoding="utf-8")).get("as_of") or "")
    return ""


def plan_index(round_dir: Path, folder: Path, round_date: str | None = None, slices: int | None = None) -> dict:
    """Start <round_dir>/lookup/: a fresh secret (for the slices) and the handles; the
    named rows (named_rows, with their person's handle) written into `folder` in `slices`
    slices of whole clusters (default: SLICE_ROWS rows each), one Parquet file or more per
    slice (`paths`: each slice's files). The key texts of every row at once took 22 GB at
    10M rows: slice_entries builds them a slice at a time (a cluster's rows answer a query
    once, so a cluster stays whole). The rows stream from the round's files into the
    slices: collected, then split, they peaked at 6.7 GB at 10M rows; streamed, 4.1 GB."""
    round_dir, folder = Path(round_dir), Path(folder)
    target = round_dir / INDEX_DIR
    target.mkdir(mode=0o700, exist_ok=True)
    os.chmod(target, 0o700)
    secret = secrets.token_bytes(32)
    rows = row_statuses(round_dir)
    people = rows.select("person_id", "status").unique("person_id").collect(engine="streaming")
    handles = people.select(handle=random_handles(people.height), id_dtks=pl.col("person_id"), status=pl.col("status")).sort("handle")
    del people
    slices = slices or max(1, -(-handles.height // SLICE_ROWS))
    named = named_rows(round_dir, rows).join(handles.lazy().select(person_id=pl.col("id_dtks"), handle=pl.col("handle")),
                                             on="person_id", how="left")
    _write_owner_only(target / BUILDING_KEY_FILE, lambda p: p.write_bytes(secret))
    folder.mkdir(parents=True, exist_ok=True)
    named.with_columns(_slice=pl.col("cluster_id").hash(seed=0) % slices).sink_parquet(
        pl.PartitionBy(str(folder), key="_slice", include_key=False), mkdir=True, engine="streaming")
    paths = [sorted(str(file) for file in part.glob("*.parquet")) for part in sorted(folder.glob("_slice=*"))]
    # The partitioned sink's layout (one `_slice=K` folder per slice) is polars' to change:
    # finding no slice for rows that exist must stop the round, not publish an empty index.
    if not paths and named.select(pl.len()).collect().item():
        raise RuntimeError(f"status index: the named rows were written but no slice was found in {folder}")
    return {"paths": paths, "slices": slices, "handles": handles,
            "round_date": round_date if round_date is not None else round_date_of(round_dir)}


def read_secret(round_dir: Path) -> bytes:
    """The secret of the index being built (plan_index)."""
    return (Path(round_dir) / INDEX_DIR / BUILDING_KEY_FILE).read_bytes()


def slice_entries(named: pl.DataFrame, secret: bytes, threads: int = 2) -> pl.DataFrame:
    """The index entries of some named rows (plan_index) of whole clusters."""
    handles = named.select("person_id", "handle").unique("person_id")
    con = duckdb.connect(config={"threads": threads})
    try:
        con.execute("SET enable_progress_bar = false")
        entries = hashed(con, key_texts(named), "key_text", secret)
    finally:
        con.close()
    return entries.join(handles, on="person_id", how="left").select("k_hi", "k_lo", "status", "reason", "nama_samaran", "handle")


# The columns of index.parquet, in order.
ENTRY_SCHEMA = {"k_hi": pl.UInt64, "k_lo": pl.UInt64, "status": pl.String, "reason": pl.String, "nama_samaran": pl.String,
                "handle": pl.UInt64}


def key_range(ranges: int) -> pl.Expr:
    """Which of `ranges` consecutive ranges of k_hi an entry falls in. The keys are uniform
    hashes, so the ranges hold about equal numbers of entries."""
    return (pl.col("k_hi") // (1 << 40) * ranges // (1 << 24)).cast(pl.UInt32)


def write_slice_entries(entries: pl.DataFrame, folder: Path, slice_index: int, ranges: int) -> int:
    """A slice's entries split by key range (key_range) into <folder>/r<range>/s<slice>.parquet,
    so that write_index sorts the index a range at a time. Returns the entries written."""
    for (part,), rows in entries.with_columns(_range=key_range(ranges)).partition_by("_range", as_dict=True, include_key=False).items():
        target = Path(folder) / f"r{part:05d}"
        target.mkdir(parents=True, exist_ok=True)
        rows.write_parquet(target / f"s{slice_index:05d}.parquet")
    return entries.height


def write_index(round_dir: Path, folder: Path, ranges: int, round_date: str, handles: pl.DataFrame) -> dict:
    """index.parquet from the slices' entries in `folder` (write_slice_entries), sorted by
    key a range at a time: sorted all at once, the 19.9M entries of a 10M-row round took
    the step to 6.4 GB. Then the secret and the handles beside it."""
    target = Path(round_dir) / INDEX_DIR
    files = [sorted((Path(folder) / f"r{part:05d}").glob("*.parquet")) for part in range(ranges)]
    entries = sum(pq.ParquetFile(path).metadata.num_rows for group in files for path in group)
    secret = read_secret(round_dir)
    metadata = {"format": FORMAT, "round_date": round_date, "key_id": key_id(secret),
                "built_at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"), "entries": str(entries)}
    schema = pl.DataFrame(schema=ENTRY_SCHEMA).to_arrow().schema.with_metadata({k.encode(): v.encode() for k, v in metadata.items()})

    def write_entries(path: Path) -> None:
        with pq.ParquetWriter(path, schema, compression="zstd") as writer:
            for group in files:
                if group:
                    part = pl.read_parquet(group).cast(ENTRY_SCHEMA).sort("k_hi", "k_lo", "handle")
                    writer.write_table(part.to_arrow().cast(schema))

    _write_owner_only(target / KEY_FILE, lambda p: p.write_bytes(secret))
    _write_owner_only(target / HANDLES_FILE, lambda p: handles.write_parquet(p))
    _write_owner_only(target / INDEX_FILE, write_entries)
    (target / BUILDING_KEY_FILE).unlink()
    return {"entries": entries, "people": handles.height, "round_date": round_date, "path": str(target)}


def build_index(round_dir: Path, round_date: str | None = None, threads: int = 2) -> dict:
    """Write <round_dir>/lookup/ (index, secret, handles) in this process, a slice and a key
    range at a time. Returns counts."""
    building = Path(round_dir) / INDEX_DIR
    slices_dir, entries_dir = building / ".slices", building / ".entries"
    try:
        for folder in (slices_dir, entries_dir):
            shutil.rmtree(folder, ignore_errors=True)
        plan = plan_index(round_dir, slices_dir, round_date)
        secret = read_secret(round_dir)
        for index, paths in enumerate(plan["paths"]):
            write_slice_entries(slice_entries(pl.read_parquet(paths), secret, threads), entries_dir, index, plan["slices"])
        return write_index(round_dir, entries_dir, plan["slices"], plan["round_date"], plan["handles"])
    finally:
        for folder in (slices_dir, entries_dir):
            shutil.rmtree(folder, ignore_errors=True)


# --------------------------------------------------------------------------- answering


def index_dir(round_path: Path) -> Path:
    """The lookup folder of a round folder, or a folder holding a copied index itself."""
    round_path = Path(round_path)
    for candidate in (round_path / INDEX_DIR, round_path):
        if (candidate / INDEX_FILE).is_file():
            return candidate
    raise StatusIndexError(
        f"{round_path}: no status index ({INDEX_DIR}/{INDEX_FILE}); rounds build it when they publish; "
        f"for an older round run `verval lookup-index --round {round_path}`"
    )


@dataclass(frozen=True)
class Answer:
    status: str
    reason: str | None
    round_date: str
    nama: str | None = None
    handle: str | None = None

    def public(self, with_handle: bool = False) -> dict:
        words = status_words(self.status)
        out = {
            "status": self.status, "status_label": words["label"], "keterangan": words["text"],
            "reason": self.reason, "reason_label": reason_label(self.reason), "round_date": self.round_date,
            "nama": self.nama,
        }
        if with_handle and self.handle:
            out["handle"] = self.handle
        return out


class LookupIndex:
    """One loaded index: sorted 128-bit keys searched with numpy, values read per hit."""

    def __init__(self, directory: Path) -> None:
        self.directory = Path(directory)
        secret = (self.directory / KEY_FILE).read_bytes()
        table = pq.read_table(self.directory / INDEX_FILE)
        meta = {k.decode(): v.decode() for k, v in (table.schema.metadata or {}).items()}
        if meta.get("format") != FORMAT:
            raise StatusIndexError(f"{self.directory / INDEX_FILE}: not a verval status index of this version")
        if meta.get("key_id") != key_id(secret):
            raise StatusIndexError(f"{self.directory}: {KEY_FILE} does not belong to {INDEX_FILE} (rebuilt half-way?)")
        self.secret = secret
        self.round_date = meta.get("round_date", "")
        self.k_hi = table.column("k_hi").to_numpy()
        self.k_lo = table.column("k_lo").to_numpy()
        self.status = table.column("status").combine_chunks()
        self.reason = table.column("reason").combine_chunks()
        self.nama = table.column("nama_samaran").combine_chunks()
        self.handle = table.column("handle").to_numpy()
        self.entries = table.num_rows
        # Read with the index, not at the first objection: by then --round may hold a newer
        # round whose handles belong to another index.
        handles = pq.read_table(self.directory / HANDLES_FILE)
        self._handles = (handles.column("handle").to_numpy(), handles.column("id_dtks").combine_chunks(),
                         handles.column("status").combine_chunks())

    def _hits(self, text: str) -> list[int]:
        hi, lo = keyed_hash(self.secret, text)
        start = int(np.searchsorted(self.k_hi, np.uint64(hi), side="left"))
        stop = int(np.searchsorted(self.k_hi, np.uint64(hi), side="right"))
        return [i for i in range(start, stop) if int(self.k_lo[i]) == lo]

    def _answer(self, i: int) -> Answer:
        return Answer(
            status=self.status[i].as_py(), reason=self.reason[i].as_py(), round_date=self.round_date,
            nama=self.nama[i].as_py(), handle=f"{int(self.handle[i]):016x}",
        )

    def not_found(self) -> Answer:
        return Answer(status="tidak_terdaftar", reason=None, round_date=self.round_date)

    def by_nik(self, nik: str, standard_name: str) -> Answer:
        """NIK and name must both agree; a NIK with another name answers as unknown."""
        hits = self._hits(nik_key(nik, standard_name)) if standard_name else []
        if not hits:
            return self.not_found()
        return min((self._answer(i) for i in hits), key=lambda a: (STATUS_RANK[a.status], a.handle))

    def by_region(self, desa: str, standard_name: str) -> tuple[list[Answer], bool]:
        """People of that name in that desa: at most max_region_matches, and whether more
        exist (then the page asks for the NIK)."""
        limit = int(lookup_rules()["max_region_matches"])
        hits = self._hits(region_key(desa, standard_name)) if standard_name else []
        answers = sorted((self._answer(i) for i in hits), key=lambda a: (STATUS_RANK[a.status], a.handle))
        return answers[:limit], len(answers) > limit

    def person_of_handle(self, handle: str) -> tuple[str, str] | None:
        """(id_dtks, status) behind a handle given in an answer (for an objection)."""
        if not re.fullmatch(r"[0-9a-f]{16}", handle or ""):
            return None
        keys, ids, statuses = self._handles
        value = np.uint64(int(handle, 16))
        i = int(np.searchsorted(keys, value))
        if i < len(keys) and keys[i] == value:
            return ids[i].as_py(), statuses[i].as_py()
        return None
