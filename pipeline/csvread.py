"""Row-level CSV reading: one bad record is quarantined with its true physical line and
the rest of the file is read; every physical line is accounted for.

The file's structure is found with numpy over its bytes, independently of the CSV parser:
line feeds give the physical lines; quote parity joins the lines of a record whose quoted
value holds a line break; delimiters outside quotes give each record's field count. A
record is rejected, with the physical line it starts on, when it has an unterminated
quote, a quote in the middle of a value (RFC 4180: a value holding a quote, delimiter or
line break is enclosed in quotes and its quotes doubled), a carriage return inside a
value, bytes that are not UTF-8, or a field count different from the header's. Only the
good records go to polars' parser, which must return exactly as many rows as counted,
so that

    physical lines = header + blank lines + lines of read records + lines of rejected records

holds by construction and is checked again after normalising (pipeline/ingest.py).

Encodings: UTF-8 (with or without BOM); UTF-16 with a BOM is transcoded; a file whose
every non-ASCII byte is invalid UTF-8 is read as Windows-1252 (with a warning); a UTF-8
file with some invalid bytes has those records rejected (never silent mojibake). A clean
file is parsed by polars straight from disk; only a damaged one is copied without its bad
records into the work folder first.
"""

from __future__ import annotations

import codecs
import csv
import io
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import polars as pl

from pipeline.errors import InputError, ReconciliationError

LF, CR, QUOTE = 10, 13, 34
# Quoted lines holding less than 1/QUOTED_SHARE_BYTEWISE of the bytes are read byte by byte.
QUOTED_SHARE_BYTEWISE = 8
# A quoted value spanning more lines than this is taken as an unterminated quote.
MAX_QUOTED_LINES = 20
REJECT_SCHEMA = {"line": pl.Int64, "lines": pl.Int64, "reason": pl.String, "raw": pl.String}
RAW_CHARS = 300  # of a rejected record kept in quarantine.parquet, to find it by eye
MAGIC = {
    b"PK\x03\x04": "an Excel workbook or zip archive; give it the .xlsx suffix if it is a workbook, or export it as CSV",
    b"PAR1": "a Parquet file; give it the .parquet suffix",
    b"\x1f\x8b": "gzip-compressed; decompress it first",
    b"%PDF": "a PDF document, not an extract",
}


@dataclass
class CsvRead:
    rows: pl.DataFrame  # header columns as text, then _line (first physical line), _lines (lines spanned)
    rejects: pl.DataFrame  # REJECT_SCHEMA: one row per rejected record
    header: list[str]
    counts: dict  # physical_lines, header_lines, blank_lines, records
    encoding: str
    delimiter: str
    warnings: list[str] = field(default_factory=list)


def sniff_delimiter(first_line: str) -> str:
    counts = {sep: first_line.count(sep) for sep in (";", ",", "\t", "|")}
    best = max(counts, key=counts.get)
    return best if counts[best] else ","


# --------------------------------------------------------------------------- bytes and encodings


def invalid_utf8_positions(buf: np.ndarray) -> tuple[np.ndarray, int]:
    """Positions of bytes that are not part of a valid UTF-8 sequence, and the number of
    non-ASCII bytes. Vectorized over the non-ASCII bytes only."""
    high = Scanner(buf).positions(0x80, np.greater_equal)
    n = len(high)
    if n == 0:
        return high, 0
    value = buf[high]
    is_cont = (value & 0xC0) == 0x80
    need = np.select([(value >= 0xC2) & (value <= 0xDF), (value >= 0xE0) & (value <= 0xEF), (value >= 0xF0) & (value <= 0xF4)],
                     [1, 2, 3], 0)
    lead = need > 0
    ok = lead.copy()
    index = np.arange(n)
    for j in (1, 2, 3):
        follower = np.minimum(index + j, n - 1)
        present = (index + j < n) & (high[follower] == high + j) & is_cont[follower]
        ok &= (need < j) | present
    second = value[np.minimum(index + 1, n - 1)]
    # Overlong forms and surrogates are not UTF-8 either.
    ok &= ~((value == 0xE0) & (second < 0xA0)) & ~((value == 0xED) & (second > 0x9F))
    ok &= ~((value == 0xF0) & (second < 0x90)) & ~((value == 0xF4) & (second > 0x8F))
    claimed = np.zeros(n, dtype=bool)
    for j in (1, 2, 3):
        claimed[np.flatnonzero(ok & (need >= j)) + j] = True
    invalid = np.where(lead, ~ok, ~claimed)
    return high[invalid], n


def _decode_to_utf8(raw: bytes, encoding: str, path: Path, label: str) -> np.ndarray:
    try:
        text = raw.decode(encoding)
    except UnicodeDecodeError:
        raise InputError(
            f"{label} {path}: starts with a {encoding.upper()} byte-order mark but is not valid {encoding.upper()} text. "
            "Save the file again as CSV UTF-8."
        ) from None
    return np.frombuffer(text.encode("utf-8"), dtype=np.uint8)


def load_bytes(path: Path, label: str) -> tuple[np.ndarray, str, list[str], np.ndarray]:
    """The file's bytes as UTF-8 with line feeds (BOM kept), its original encoding (with
    "+cr" when classic Mac line endings were turned into line feeds), warnings, and the
    positions of bytes that are not UTF-8. Refuses files that are not delimited text."""
    none = np.zeros(0, dtype=np.int64)
    if path.stat().st_size == 0:
        raise InputError(f"{label} {path}: the file is empty (0 bytes); it needs a header line and data rows. Check that the export finished.")
    buf = np.fromfile(path, dtype=np.uint8)  # one read; mapping the file costs more in page faults
    head = buf[:4096].tobytes()
    for magic, what in MAGIC.items():
        if head.startswith(magic):
            raise InputError(f"{label} {path}: this is {what}.")
    if head.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        buf = _decode_to_utf8(buf.tobytes(), "utf-16", path, label)
        return buf, "utf-16", [f"{label} {path.name}: read as UTF-16 (converted to UTF-8)"], none
    if head.count(0) > len(head) // 10:
        raise InputError(
            f"{label} {path}: the file holds NUL bytes: it is UTF-16 without a byte-order mark, or not a text file. "
            "Save it as CSV UTF-8 and run again."
        )
    line_feeds = ""
    if b"\n" not in head and not (buf == LF).any() and (buf == CR).any():  # classic Mac line endings
        buf, line_feeds = np.where(buf == CR, np.uint8(LF), buf), "+cr"
    if buf.max() < 0x80:
        return buf, "utf-8" + line_feeds, [], none
    invalid, high = invalid_utf8_positions(buf)
    encoding, warnings = _encoding_of(len(invalid), high, path, label)
    if encoding == "cp1252":
        text = buf.tobytes().decode("cp1252", errors="replace")
        return np.frombuffer(text.encode("utf-8"), dtype=np.uint8), "cp1252" + line_feeds, warnings, none
    return buf, "utf-8" + line_feeds, warnings, invalid


def _encoding_of(invalid: int, high: int, path: Path, label: str) -> tuple[str, list[str]]:
    """UTF-8 or Windows-1252, from the counts of invalid UTF-8 bytes and of non-ASCII bytes
    over the whole file, and what the user is told."""
    if invalid and invalid == high:
        # No valid multi-byte character at all: a Windows-1252 export, not damaged UTF-8.
        # (Windows-1252 is not Latin-1: 0x80-0x9F are curly quotes and dashes.)
        return "cp1252", [f"{label} {path.name}: not UTF-8; read as Windows-1252. Check the names in the report; "
                          "save the extract as CSV UTF-8 to be sure."]
    return "utf-8", [f"{label} {path.name}: {invalid:,} byte(s) are not UTF-8; the rows holding them are quarantined"] if invalid else []


# --------------------------------------------------------------------------- structure


def _counts_between(positions: np.ndarray, starts: np.ndarray, ends: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Index of the first position at or after each start, and how many fall before each end."""
    first = np.searchsorted(positions, starts)
    return first, np.searchsorted(positions, ends) - first


def _prefix(values: np.ndarray) -> np.ndarray:
    out = np.zeros(len(values) + 1, dtype=np.int64)
    np.cumsum(values, out=out[1:])
    return out


class Scanner:
    """Byte comparisons over a buffer in blocks, reusing one scratch array: a comparison of
    the whole buffer at once would allocate (and page-fault) a buffer-sized array each time."""

    BLOCK = 1 << 22

    def __init__(self, buf: np.ndarray) -> None:
        self.buf = buf
        self.scratch = np.empty(min(self.BLOCK, max(len(buf), 1)), dtype=bool)

    def _blocks(self, value: int, compare=np.equal):
        for start in range(0, len(self.buf), self.BLOCK):
            block = self.buf[start:start + self.BLOCK]
            hits = self.scratch[: len(block)]
            compare(block, value, out=hits)
            yield start, hits

    def positions(self, value: int, compare=np.equal) -> np.ndarray:
        parts = [np.flatnonzero(hits) + start for start, hits in self._blocks(value, compare)]
        return np.concatenate(parts).astype(np.int64) if parts else np.zeros(0, dtype=np.int64)

    def per_line(self, value: int, starts: np.ndarray) -> np.ndarray:
        """How many bytes equal `value` from each line start to the next one."""
        counts = np.zeros(len(starts), dtype=np.int64)
        for start, hits in self._blocks(value):
            first, last = np.searchsorted(starts, [start, start + len(hits)])
            owner_of_head = first - 1  # the line that began in an earlier block
            head_end = starts[first] - start if first < last else len(hits)
            if owner_of_head >= 0:
                counts[owner_of_head] += np.count_nonzero(hits[:head_end])
            if first < last:
                counts[first:last] += np.add.reduceat(hits.view(np.uint8), starts[first:last] - start, dtype=np.uint32)
        return counts


class Structure:
    """Lines, quotes and delimiters of a buffer; every array is indexed by physical line."""

    def __init__(self, buf: np.ndarray, delimiter: int) -> None:
        self.buf = buf
        self.delimiter = delimiter
        n = len(buf)
        self.data_start = data_start = 3 if buf[:3].tobytes() == codecs.BOM_UTF8 else 0
        scan = Scanner(buf)
        newlines = scan.positions(LF)
        starts = np.concatenate([[data_start], newlines + 1]).astype(np.int64)
        ends = np.concatenate([newlines, [n]]).astype(np.int64)
        if starts[-1] >= n:  # the file ends with a line feed
            starts, ends = starts[:-1], ends[:-1]
        self.starts, self.ends = starts, ends
        self.lines = len(starts)
        has_cr = (ends > starts) & (buf[np.maximum(ends - 1, 0)] == CR)
        self.content_ends = ends - has_cr
        self.quotes = scan.positions(QUOTE)
        self.first_quote, self.quote_count = _counts_between(self.quotes, starts, ends)
        self.delim_count = scan.per_line(delimiter, starts)
        self.carriage_returns = scan.positions(CR)
        if len(self.quotes):
            self.delim_even = self._delimiters_outside_quotes()
            prev = buf[np.maximum(self.quotes - 1, 0)]
            nxt = buf[np.minimum(self.quotes + 1, n - 1)]
            opens_ok = (prev == delimiter) | (prev == LF) | (prev == QUOTE) | (self.quotes == data_start)
            closes_ok = (nxt == delimiter) | (nxt == CR) | (nxt == LF) | (nxt == QUOTE) | (self.quotes == n - 1)
            even = (np.arange(len(self.quotes)) & 1) == 0
            # Misplaced quotes counted for a record whose first quote has an even / odd index.
            self.bad_even = _prefix(np.where(even, ~opens_ok, ~closes_ok))
            self.bad_odd = _prefix(np.where(even, ~closes_ok, ~opens_ok))
        else:
            self.delim_even = self.delim_count
            self.bad_even = self.bad_odd = np.zeros(1, dtype=np.int64)
        self.delim_odd_prefix = _prefix(self.delim_count - self.delim_even)
        self.blank = self._blank_lines()

    def _byte_offsets(self, lines: np.ndarray, ends: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Offsets of every byte of `lines` (start up to `ends`), and where each line begins in them."""
        lengths = np.maximum(ends - self.starts[lines], 0)
        begins = _prefix(lengths)
        return np.repeat(self.starts[lines] - begins[:-1], lengths) + np.arange(begins[-1]), begins

    def _delimiters_outside_quotes(self) -> np.ndarray:
        """Per line, the delimiters after an even number of quotes counted from the line's
        start."""
        quoted = np.flatnonzero(self.quote_count > 0)
        quoted_bytes = int((self.ends[quoted] - self.starts[quoted]).sum())
        # A few quoted lines are looked at byte by byte; when most are (an export quoting
        # every value), every byte's offset would cost 8 bytes per byte of the file
        # (19 of 50 s for 3M such DTKS rows): the delimiters are looked at instead.
        if quoted_bytes * QUOTED_SHARE_BYTEWISE < len(self.buf):
            return self.delim_count - self._inside_by_bytes(quoted)
        return self.delim_count - self._inside_by_delimiters()

    def _inside_by_bytes(self, quoted: np.ndarray) -> np.ndarray:
        """Per line, the delimiters inside quotes, from the bytes of the lines holding a quote."""
        offsets, begins = self._byte_offsets(quoted, self.ends[quoted])
        local = np.flatnonzero(self.buf[offsets] == self.delimiter)
        owner = np.searchsorted(begins, local, side="right") - 1
        quotes_before = np.searchsorted(self.quotes, offsets[local]) - self.first_quote[quoted][owner]
        inside = np.zeros(self.lines, dtype=np.int64)
        inside[quoted] = np.bincount(owner, weights=quotes_before & 1, minlength=len(quoted)).astype(np.int64)
        return inside

    def _inside_by_delimiters(self) -> np.ndarray:
        """Per line, the delimiters inside quotes, from every delimiter of the buffer."""
        positions = Scanner(self.buf).positions(self.delimiter)
        line = np.searchsorted(self.starts, positions, side="right") - 1
        quotes_before = np.searchsorted(self.quotes, positions) - self.first_quote[line]
        return np.bincount(line, weights=quotes_before & 1, minlength=self.lines).astype(np.int64)

    def _blank_lines(self) -> np.ndarray:
        """Lines with nothing but spaces or tabs (before knowing which are inside quotes)."""
        length = self.content_ends - self.starts
        blank = length <= 0
        candidates = np.flatnonzero((self.delim_count == 0) & (self.quote_count == 0) & (length > 0))
        if len(candidates):
            offsets, begins = self._byte_offsets(candidates, self.content_ends[candidates])
            spaces = np.isin(self.buf[offsets], (32, 9))
            blank[candidates] = np.add.reduceat(spaces.astype(np.int64), begins[:-1]) == length[candidates]
        return blank

    def misplaced_quotes(self, first_line: np.ndarray, last_line: np.ndarray) -> np.ndarray:
        """Quotes out of place in records spanning first_line..last_line (roles alternate
        open/close from the record's first quote)."""
        k0 = self.first_quote[first_line]
        k1 = self.first_quote[last_line] + self.quote_count[last_line]
        return np.where(k0 & 1 == 0, self.bad_even[k1] - self.bad_even[k0], self.bad_odd[k1] - self.bad_odd[k0])

    def fields(self, first_line: np.ndarray, last_line: np.ndarray) -> np.ndarray:
        """Field count of records spanning first_line..last_line (lines after the first start inside quotes)."""
        return 1 + self.delim_even[first_line] + self.delim_odd_prefix[last_line + 1] - self.delim_odd_prefix[first_line + 1]


def _pair_quoted_lines(s: Structure, header: int, expected: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Multi-line records (first, last line) and lines with an unterminated quote.

    Lines with an odd number of quotes open or close a quoted value that holds a line
    break; they pair up in order. A pair that does not form a plausible record (right field
    count, quotes in place, no complete-looking record inside, at most MAX_QUOTED_LINES)
    means its first line has an unterminated quote: that line alone is rejected and pairing
    resumes from the next one. The loop runs once per unterminated quote; each pass is
    vectorized."""
    odd = np.flatnonzero(s.quote_count[header + 1:] & 1) + header + 1
    full_like = _prefix(s.delim_count >= expected - 1)
    firsts, lasts, unterminated = [], [], []
    while len(odd):
        a, b = odd[0::2], odd[1::2]
        paired = a[: len(b)]
        ok = ((b - paired) <= MAX_QUOTED_LINES) & (s.fields(paired, b) == expected)
        ok &= s.misplaced_quotes(paired, b) == 0
        ok &= (full_like[b] - full_like[paired + 1]) == 0
        bad = np.flatnonzero(~ok)
        cut = bad[0] if len(bad) else len(b)
        firsts.append(paired[:cut])
        lasts.append(b[:cut])
        if cut == len(a):
            break
        unterminated.append(a[cut])
        odd = odd[2 * cut + 1:]
    as_array = lambda parts: np.concatenate(parts).astype(np.int64) if parts else np.zeros(0, dtype=np.int64)  # noqa: E731
    return as_array(firsts), as_array(lasts), np.array(unterminated, dtype=np.int64)


def _line_of(s: Structure, positions: np.ndarray) -> np.ndarray:
    return np.searchsorted(s.starts, positions, side="right") - 1


def _flag_lines(s: Structure, positions: np.ndarray) -> np.ndarray:
    """Prefix count of lines holding any of `positions`."""
    marked = np.zeros(s.lines, dtype=bool)
    if len(positions):
        lines = _line_of(s, positions)
        marked[lines[lines >= 0]] = True
    return _prefix(marked)


# --------------------------------------------------------------------------- reading


def _header_text(buf: np.ndarray, path: Path, label: str) -> tuple[int, str]:
    """The first line with something on it: its index and text."""
    raw = buf.tobytes() if len(buf) < 1 << 16 else buf[: 1 << 16].tobytes()
    start = 3 if raw.startswith(codecs.BOM_UTF8) else 0
    stripped = raw[start:].lstrip()
    if not stripped:
        if len(buf) < 1 << 16 or not buf.tobytes().strip():
            raise InputError(f"{label} {path}: the file holds only blank lines; it needs a header line and data rows.")
        raise InputError(f"{label} {path}: the first 64 KB are blank; remove the blank lines above the header.")
    first = len(raw) - len(stripped)
    line = raw.count(b"\n", 0, first)
    line_start = raw.rfind(b"\n", 0, first) + 1 or start
    line_end = raw.find(b"\n", first)
    text = raw[max(line_start, start):line_end if line_end >= 0 else len(raw)].rstrip(b"\r")
    return line, text.decode("utf-8", errors="replace")


def _checked_header(s: Structure, header_line: int, header_text: str, delimiter: str, path: Path, label: str) -> list[str]:
    if s.quote_count[header_line] & 1 or s.misplaced_quotes(np.array([header_line]), np.array([header_line]))[0]:
        raise InputError(f"{label} {path}: line {header_line + 1} (the header) has a misplaced or unmatched quote character; fix the header.")
    header = next(csv.reader([header_text], delimiter=delimiter))
    if len(header) != int(s.fields(np.array([header_line]), np.array([header_line]))[0]):
        raise InputError(f"{label} {path}: line {header_line + 1} (the header) cannot be split into columns; fix the header.")
    return header


def read_csv_records(path: Path, label: str, work_dir: Path | None = None) -> CsvRead:
    """Read a delimited text file as all-text rows with their physical lines, rejecting
    bad records one by one. `work_dir` receives the cleaned copy of a damaged file."""
    buf, encoding, warnings, invalid_bytes = load_bytes(path, label)
    header_line, header_text = _header_text(buf, path, label)
    delimiter = sniff_delimiter(header_text)
    s = Structure(buf, ord(delimiter))
    header = _checked_header(s, header_line, header_text, delimiter, path, label)
    del buf
    # Handed over in a list the callee empties, so the bytes can be freed before parsing.
    return _read_records([s], header_line, header, delimiter, encoding, warnings, invalid_bytes, path, label, work_dir)


def _read_records(structure: list[Structure], header_line: int, header: list[str], delimiter: str, encoding: str, warnings: list[str],
                  invalid_bytes: np.ndarray, path: Path, label: str, work_dir: Path | None, in_memory: bool = False) -> CsvRead:
    """The records of a buffer whose header is at `header_line` (the whole file, or a chunk
    behind a copy of the header): good ones parsed, bad ones rejected with their line."""
    s = structure.pop()
    buf, expected = s.buf, len(header)
    firsts, lasts, unterminated = _pair_quoted_lines(s, header_line, expected)
    in_quotes = np.zeros(s.lines + 1, dtype=np.int64)
    np.add.at(in_quotes, firsts + 1, 1)
    np.add.at(in_quotes, lasts + 1, -1)
    continuation = np.cumsum(in_quotes[:-1]) > 0  # lines after the first of a multi-line record
    blank = s.blank & ~continuation
    blank[header_line] = False
    single = np.ones(s.lines, dtype=bool)
    single[: header_line + 1] = False
    single &= ~blank & ~continuation
    single[firsts] = False
    record_first = np.concatenate([np.flatnonzero(single), firsts])
    record_last = np.concatenate([np.flatnonzero(single), lasts])
    order = np.argsort(record_first, kind="stable")
    record_first, record_last = record_first[order], record_last[order]

    reasons = np.zeros(len(record_first), dtype=np.int8)  # index into REASONS, 0 = good
    fields = s.fields(record_first, record_last)
    reasons[fields != expected] = 5
    reasons[s.misplaced_quotes(record_first, record_last) > 0] = 4
    bare_cr = s.carriage_returns
    bare_cr = bare_cr[(bare_cr + 1 < len(buf)) & (buf[np.minimum(bare_cr + 1, len(buf) - 1)] != LF)]
    cr_lines = _flag_lines(s, bare_cr)
    reasons[(cr_lines[record_last + 1] - cr_lines[record_first]) > 0] = 3
    if len(invalid_bytes):
        bad_lines = _flag_lines(s, invalid_bytes)
        reasons[(bad_lines[record_last + 1] - bad_lines[record_first]) > 0] = 2
    unterminated_here = np.isin(record_first, unterminated)
    # An odd quote that does not open a value sits in the middle of one: say that instead.
    reasons[unterminated_here] = np.where(s.misplaced_quotes(record_first, record_last)[unterminated_here] > 0, 4, 1)

    good = reasons == 0
    rejects = _rejects(s, record_first[~good], record_last[~good], reasons[~good], fields[~good], expected)
    counts = {
        "physical_lines": int(s.lines),
        "header_lines": 1,
        "blank_lines": int(blank.sum()),
        "records": int(len(record_first)),
        "records_read": int(good.sum()),
        "records_rejected": int((~good).sum()),
        "multi_line_records": int(len(firsts)),
    }
    spanned = int((record_last - record_first + 1).sum())
    if counts["header_lines"] + counts["blank_lines"] + spanned != counts["physical_lines"]:
        raise ReconciliationError(
            f"{label} {path}: {counts['physical_lines']} physical lines but header + {counts['blank_lines']} blank + "
            f"{spanned} in records do not add up; no outputs were published. Please report this."
        )
    first, last = record_first[good], record_last[good]
    clean = bool(good.all()) and header_line == 0 and not blank.any() and encoding == "utf-8" and not in_memory
    source = path if clean else _good_records_copy(s, path, None if in_memory else work_dir, header_line, first, last)
    del s, buf  # the bytes are not needed while polars parses
    rows = _parse(source, delimiter, header, len(first), f"{label} {path}").with_columns(
        _line=pl.Series(first + 1, dtype=pl.Int64), _lines=pl.Series(last - first + 1, dtype=pl.Int64)
    )
    return CsvRead(rows=rows, rejects=rejects, header=header, counts=counts, encoding=encoding,
                   delimiter=delimiter, warnings=warnings)


# --------------------------------------------------------------------------- chunks

# A CSV extract larger than this is read a chunk at a time (and a chunk per partition
# task): memory is then set by the chunk, not by the extract (7.5 million Dukcapil rows
# read whole held 5.3 GB). About a million rows of either extract.
CSV_CHUNK_BYTES = 128 << 20
CUT_WINDOW = 1 << 20  # bytes looked at for a line to cut at, then the next as many


@dataclass(frozen=True)
class CsvChunk:
    start: int  # byte offset in the file; every chunk but the first starts a line
    end: int
    first_line: int  # 0-based physical line the chunk starts on


@dataclass
class CsvPlan:
    """How a large CSV file is read in chunks that give the records of reading it whole."""
    path: Path
    label: str
    encoding: str  # "utf-8" or "cp1252"
    delimiter: str
    header: list[str]
    header_bytes: bytes  # the header line as UTF-8, put in front of every chunk but the first
    chunks: list[CsvChunk]
    warnings: list[str]


def _read_range(path: Path, start: int, end: int) -> np.ndarray:
    with open(path, "rb") as f:
        f.seek(start)
        return np.frombuffer(f.read(end - start), dtype=np.uint8)


def _safe_cut(path: Path, size: int, position: int, delimiter: int, expected: int) -> int:
    """The start of the first line at or after `position` that holds an even number of
    quotes (none, or every value quoted) and at least the header's delimiters (or the
    file's end). Such a line begins a record in the whole file's reading too: it ends no
    quoted line break (only lines with an odd number of quotes pair up) and lies inside
    none (_pair_quoted_lines refuses a pair around a complete-looking line), so reading
    the file on both sides of it gives the records of reading it whole."""
    while position < size:
        origin = position - 1  # a line starts after a feed at origin or later
        window = _read_range(path, origin, min(size, origin + CUT_WINDOW))
        feeds = np.flatnonzero(window == LF)
        starts = feeds + 1
        ends = np.append(feeds[1:], len(window))
        complete = np.append(np.ones(len(feeds) - 1 if len(feeds) else 0, dtype=bool), origin + len(window) == size)
        if len(feeds):
            quotes, delimiters = _prefix(window == QUOTE), _prefix(window == delimiter)
            fit = np.flatnonzero(complete & (starts < ends) & ((quotes[ends] - quotes[starts]) % 2 == 0)
                                 & (delimiters[ends] - delimiters[starts] >= expected - 1))
            if len(fit):
                return origin + int(starts[fit[0]])
        after = origin + int(starts[-1]) if len(feeds) else origin + len(window)
        # An unfinished last line is looked at again from its start, unless it fills the window.
        position = after if after > position else origin + len(window)
    return size


def plan_csv(path: Path, label: str, chunk_bytes: int | None = None) -> CsvPlan | None:
    """Chunks of a CSV file larger than `chunk_bytes`, cut where the records of the whole
    file's reading begin, with each chunk's first physical line; None for a file read
    whole (small, UTF-16, classic Mac line endings, or not cut anywhere)."""
    chunk_bytes = chunk_bytes or CSV_CHUNK_BYTES
    size = path.stat().st_size
    if size <= chunk_bytes:
        return None
    head = _read_range(path, 0, min(size, 1 << 16))
    raw_head = head.tobytes()
    for magic, what in MAGIC.items():
        if raw_head.startswith(magic):
            raise InputError(f"{label} {path}: this is {what}.")
    if raw_head.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)) or raw_head[:4096].count(0) > len(raw_head[:4096]) // 10:
        return None  # transcoded or refused by the whole-file reading
    if b"\n" not in raw_head or not raw_head.removeprefix(codecs.BOM_UTF8).strip():
        return None  # classic Mac line endings, a first line longer than 64 KB, or 64 KB of blank lines
    header_line, header_text = _header_text(head, path, label)
    lines = raw_head.split(b"\n")
    header_end = sum(len(line) + 1 for line in lines[: header_line + 1])
    if header_end > len(raw_head):
        return None
    header_raw = lines[header_line]
    delimiter = sniff_delimiter(header_text)
    header_buf = np.frombuffer(header_raw + b"\n", dtype=np.uint8)
    header = _checked_header(Structure(header_buf, ord(delimiter)), 0, header_text, delimiter, path, label)

    chunks, start, first_line, invalid, high = [], 0, 0, 0, 0
    while start < size:
        cut = _safe_cut(path, size, max(start + chunk_bytes, header_end), ord(delimiter), len(header))
        block = _read_range(path, start, cut)
        if block.max(initial=0) >= 0x80:
            bad, n = invalid_utf8_positions(block)
            invalid, high = invalid + len(bad), high + n
        chunks.append(CsvChunk(start, cut, first_line))
        first_line += int(np.count_nonzero(block == LF))
        start = cut
    if len(chunks) == 1:
        return None
    encoding, warnings = _encoding_of(invalid, high, path, label)  # over the whole file, as when read whole
    header_bytes = header_raw[3:] if header_raw.startswith(codecs.BOM_UTF8) else header_raw
    if encoding == "cp1252":
        header_bytes = header_bytes.decode("cp1252", errors="replace").encode("utf-8")
        header = next(csv.reader([header_bytes.rstrip(b"\r").decode("utf-8")], delimiter=delimiter))
    return CsvPlan(path=path, label=label, encoding=encoding, delimiter=delimiter, header=header,
                   header_bytes=header_bytes, chunks=chunks, warnings=warnings)


def read_csv_chunk(plan: CsvPlan, index: int) -> CsvRead:
    """The records of one chunk, with the file's physical lines and its chunk's counts
    (the header counted in the first chunk only): what reading the file whole gives for
    the same lines."""
    chunk = plan.chunks[index]
    raw = _read_range(plan.path, chunk.start, chunk.end)
    if plan.encoding == "cp1252":
        raw = np.frombuffer(raw.tobytes().decode("cp1252", errors="replace").encode("utf-8"), dtype=np.uint8)
        invalid = np.zeros(0, dtype=np.int64)
    else:
        invalid = invalid_utf8_positions(raw)[0] if raw.max(initial=0) >= 0x80 else np.zeros(0, dtype=np.int64)
    if index == 0:
        buf, header_line, shift = raw, _header_text(raw, plan.path, plan.label)[0], 0
    else:
        prefix = plan.header_bytes + b"\n"
        buf, header_line, shift = np.concatenate([np.frombuffer(prefix, dtype=np.uint8), raw]), 0, len(prefix)
        invalid = invalid + shift
    del raw
    s = Structure(buf, ord(plan.delimiter))
    del buf
    read = _read_records([s], header_line, plan.header, plan.delimiter, plan.encoding, [], invalid, plan.path,
                         plan.label, None, in_memory=True)
    if index:
        # The header in front is not one of the chunk's lines; line 1 of the buffer is the chunk's first.
        offset = chunk.first_line - 1
        read.counts["physical_lines"] -= 1
        read.counts["header_lines"] = 0
        read.rows = read.rows.with_columns(pl.col("_line") + offset)
        read.rejects = read.rejects.with_columns(pl.col("line") + offset)
    return read


REASONS = {
    1: "tanda kutip (\") dibuka tetapi tidak ditutup; baris ini saja yang dikarantina",
    2: "berisi byte yang bukan UTF-8 (huruf rusak); simpan ulang berkas sebagai CSV UTF-8",
    3: "ada karakter CR (carriage return) di dalam nilai; hapus dari nilai itu",
    4: "tanda kutip (\") di tengah nilai; apit seluruh nilai dengan tanda kutip dan gandakan kutip di dalamnya",
}


def _rejects(s: Structure, first: np.ndarray, last: np.ndarray, reasons: np.ndarray, fields: np.ndarray, expected: int) -> pl.DataFrame:
    # A loop over rejected records only (the damaged part of a file), to keep a short excerpt.
    raw = [s.buf[s.starts[a]:s.content_ends[b]][: RAW_CHARS * 4].tobytes().decode("utf-8", errors="replace")[:RAW_CHARS]
           for a, b in zip(first, last)]
    text = [
        REASONS[r] if r in REASONS else (
            f"{f} kolom, padahal judul punya {expected} kolom; periksa pemisah dan tanda kutip pada baris ini"
        )
        for r, f in zip(reasons.tolist(), fields.tolist())
    ]
    return pl.DataFrame(
        {"line": first + 1, "lines": last - first + 1, "reason": text, "raw": raw}, schema=REJECT_SCHEMA
    )


def _good_records_copy(s: Structure, path: Path, work_dir: Path | None, header_line: int,
                       first: np.ndarray, last: np.ndarray) -> Path | io.BytesIO:
    """The header and the good records only, as UTF-8 with line feeds: in the work folder,
    or in memory when there is none (a decision file)."""
    keep_starts = np.concatenate([[s.starts[header_line]], s.starts[first]])
    keep_ends = np.concatenate([[s.ends[header_line]], s.ends[last]]) + 1
    # Adjacent good records form one run: one slice per run, not per record.
    breaks = np.flatnonzero(keep_starts[1:] != keep_ends[:-1]) + 1
    run_starts = keep_starts[np.concatenate([[0], breaks])]
    run_ends = keep_ends[np.concatenate([breaks - 1, [len(keep_ends) - 1]])]
    body = np.concatenate([s.buf[a:b] for a, b in zip(run_starts, np.minimum(run_ends, len(s.buf)))]).tobytes()
    if not body.endswith(b"\n"):
        body += b"\n"
    if work_dir is None:
        return io.BytesIO(body)
    copy = work_dir / f"{path.stem}.read.csv"
    copy.write_bytes(body)
    return copy


def column_names(header: list[str]) -> list[str]:
    """The parsed table's column names: a name repeated in the header gets its position."""
    return [f"{name} ({i + 1})" if name in header[:i] else name for i, name in enumerate(header)]


def _parse(source: Path | io.BytesIO, delimiter: str, header: list[str], expected_rows: int, where: str) -> pl.DataFrame:
    """polars parses records verval has checked; it must return exactly as many rows."""
    names = column_names(header)
    try:
        rows = pl.read_csv(
            source, separator=delimiter, quote_char='"', has_header=True, new_columns=names,
            infer_schema=False, encoding="utf8", raise_if_empty=False, truncate_ragged_lines=False,
        )
    except pl.exceptions.PolarsError:
        # polars' message may quote a row: never passed on.
        raise ReconciliationError(
            f"{where}: the CSV parser could not read records verval had checked; no outputs were published. Please report this."
        ) from None
    if rows.height != expected_rows or rows.width != len(header):
        raise ReconciliationError(
            f"{where}: the CSV parser read {rows.height} rows where verval counted {expected_rows} records; "
            "no outputs were published. Please report this."
        )
    return rows
