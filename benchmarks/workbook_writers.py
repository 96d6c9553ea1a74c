"""The reviewers' workbooks of a finished round written by verval (xlsxwriter for each
sheet's header and settings, the case rows as XML built by polars) and by a Rust-based
writer (rvgsrust-xlsxwriter, bindings of the rust_xlsxwriter crate), on the same
per-kabupaten cases with the same features: summary sheet first, drop-down decisions
with their input message, frozen header, autofilter, text cells, the formula-injection
guard (leading apostrophe + quotePrefix style) and a fixed creation date.

    .venv/bin/python benchmarks/workbook_writers.py --round reports/r1m [--workers 2]

Prints, per writer: seconds (wall and CPU of this process) and MB written for every
kabupaten file in one process, then whether the Rust writer's files keep each feature
(read back with openpyxl) and are byte-identical across two writes. With --workers it
also times verval's own stage (pipeline.report.xlsx.write_workbooks) with that many
processes. The Rust writer is not a verval dependency; install it to compare:

    .venv/bin/uv pip install -p .venv/bin/python rvgsrust-xlsxwriter==0.3.5
"""

from __future__ import annotations

import argparse
import io
import re
import shutil
import struct
import tempfile
import time
import zipfile
import zlib
from pathlib import Path

import polars as pl

from pipeline.report import xlsx


def measure(label: str, function) -> float:
    wall, cpu = time.perf_counter(), time.process_time()
    function()
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    print(f"{label:<44} {wall:7.1f} s wall {cpu:7.1f} s cpu")
    return wall


def folder_mb(folder: Path) -> float:
    return sum(p.stat().st_size for p in folder.rglob("*.xlsx")) / 1e6


# --------------------------------------------------------------------------- the Rust writer


def with_fixed_created(path: Path, stamp: str) -> None:
    """rust_xlsxwriter stamps docProps/core.xml with the current time and has no setting
    for it: rewrite that one entry, copying every other entry's compressed bytes as they are."""
    data = path.read_bytes()
    archive = zipfile.ZipFile(io.BytesIO(data))
    out, central = bytearray(), []
    for info in archive.infolist():
        name = info.filename.encode()
        if info.filename == "docProps/core.xml":
            text = re.sub(rb"(<dcterms:(?:created|modified)[^>]*>)[^<]*", rb"\g<1>" + stamp.encode(), archive.read(info))
            packer = zlib.compressobj(6, zlib.DEFLATED, -15)
            raw, crc, size, method = packer.compress(text) + packer.flush(), zlib.crc32(text), len(text), zipfile.ZIP_DEFLATED
        else:
            start = info.header_offset + 30 + sum(struct.unpack("<HH", data[info.header_offset + 26:info.header_offset + 30]))
            raw, crc, size, method = data[start:start + info.compress_size], info.CRC, info.file_size, info.compress_type
        offset = len(out)
        out += struct.pack("<IHHHHHIIIHH", 0x04034B50, 20, 0, method, 0, 0x21, crc, len(raw), size, len(name), 0) + name + raw
        central.append(struct.pack("<IHHHHHHIIIHHHHHII", 0x02014B50, 20, 20, 0, method, 0, 0x21, crc, len(raw), size,
                                   len(name), 0, 0, 0, 0, 0, offset) + name)
    directory = b"".join(central)
    out += directory + struct.pack("<IHHHHIIH", 0x06054B50, 0, 0, len(central), len(central), len(directory), len(out), 0)
    path.write_bytes(bytes(out))


class RustSheet:
    """The few xlsxwriter worksheet calls the summary sheet makes, on a Rust worksheet."""

    def __init__(self, sheet) -> None:
        self.sheet = sheet

    def set_column(self, first: int, last: int, width: float, fmt=None) -> None:
        for col in range(first, last + 1):
            self.sheet.set_column_width(col, width)

    def write_string(self, row: int, col: int, text: str, fmt=None) -> None:
        self.sheet.write(row, col, text, fmt)

    write_number = write_string


class RustBook:
    def __init__(self, book) -> None:
        self.book = book

    def add_worksheet(self, name: str) -> RustSheet:
        return RustSheet(self.book.add_worksheet(name))


class RustFormats:
    def __init__(self, book) -> None:
        def header(colour):
            return book.add_format().set_bold().set_text_wrap().set_vertical_align("top").set_border("thin").set_background_color(colour)

        self.header, self.header_decision = header("#DCE6F1"), header("#FFE699")
        self.decision = book.add_format().set_background_color("#FFF2CC").set_border("thin").set_border_color("#BFBFBF")
        self.text = None
        self.quoted = book.add_format().set_quote_prefix()
        self.date = book.add_format().set_num_format("yyyy-mm-dd")
        self.number = book.add_format().set_num_format("0.000")
        self.probability = book.add_format().set_num_format("0.0000")
        self.title = book.add_format().set_bold().set_font_size(14)
        self.bold = book.add_format().set_bold()
        self.wrap = book.add_format().set_text_wrap().set_vertical_align("top")
        self.ok = book.add_format().set_bold().set_font_color("#1F7A3D")
        self.bad = book.add_format().set_bold().set_font_color("#B42318")


RISKY = r"^[=+\-@\t\r]"


def guarded_text(cases: pl.DataFrame) -> pl.DataFrame:
    """Every text column of the kab's cases as Excel will hold it, in one pass: cut to
    Excel's 32,767 characters (xlsxwriter cuts too), a risky value of a non-key column with
    a leading apostrophe; `_risky:<column>` marks the cells that also need the quotePrefix style."""
    kinds = {c.source: c.kind for columns in xlsx.SHEET_COLUMNS.values() for c in columns if c.source}
    texts = [name for name, kind in kinds.items() if kind in ("text", "key")]
    return cases.with_columns(
        *(pl.col(name).cast(pl.String).str.slice(0, 32767) for name in texts)
    ).with_columns(
        *(pl.col(name).str.contains(RISKY).fill_null(False).alias(f"_risky:{name}") for name in texts)
    ).with_columns(
        *(pl.when(pl.col(f"_risky:{name}")).then("'" + pl.col(name)).otherwise(pl.col(name)).alias(name)
          for name, kind in kinds.items() if kind == "text")
    )


def rust_case_sheet(rv, book, formats: RustFormats, name: str, group: str, rows: pl.DataFrame) -> None:
    sheet = book.add_worksheet(name)
    columns = xlsx.SHEET_COLUMNS[group]
    numeric = {"date": formats.date, "number": formats.number, "probability": formats.probability}
    # Written as runs of consecutive source columns (the decision columns stay empty).
    runs: list[list[int]] = []
    for i, column in enumerate(columns):
        if column.source:
            if runs and runs[-1][-1] == i - 1:
                runs[-1].append(i)
            else:
                runs.append([i])
    for run in runs:
        names = [columns[i].source for i in run]
        column_formats = {columns[i].source: numeric[columns[i].kind] for i in run if columns[i].kind in numeric}
        sheet.write_dataframe(1, run[0], rows.select(names), write_header=False, column_formats=column_formats or None)
    for i, column in enumerate(columns):
        sheet.write(0, i, column.header, formats.header_decision if column.kind == "decision" else formats.header)
        sheet.set_column_width(i, column.width)
        if column.kind == "decision":
            sheet.set_column_format(i, formats.decision)
    # The quotePrefix style on each risky cell: rewrite those few cells with it.
    risky = rows.height and rows.select(pl.any_horizontal(pl.col("^_risky:.*$")).any()).item()
    for i, column in enumerate(columns if risky else []):
        if column.source and column.kind in ("text", "key"):
            for r in rows.select(pl.arg_where(pl.col(f"_risky:{column.source}"))).to_series().to_list():
                sheet.write(r + 1, i, rows.item(r, column.source), formats.quoted)
    sheet.set_row_height(0, 30)
    last = max(rows.height, 1)
    decision = next(i for i, c in enumerate(columns) if c.header == "keputusan")
    validation = rv.DataValidation()
    validation.allow_list_strings(list(xlsx.DECISIONS))
    validation.set_input_title("Keputusan pemeriksa")
    validation.set_input_message(xlsx.decision_message(group))
    validation.set_error_title("Keputusan tidak dikenal")
    validation.set_error_message("Pilih salah satu: " + ", ".join(xlsx.DECISIONS) + ".")
    validation.set_error_style("stop")
    sheet.add_data_validation(1, decision, last, decision, validation)
    sheet.freeze_panes(1, 0)
    sheet.autofilter(0, 0, last, len(columns) - 1)
    sheet.ignore_error_range(0, 0, last, 16383, "number_stored_as_text")


def rust_kab_workbook(job: xlsx.KabJob, folder: Path) -> None:
    import rvgsrust_xlsxwriter as rv

    path = folder / job.file
    book = rv.Workbook(str(path))
    formats = RustFormats(book)
    cases = guarded_text(job.cases)
    frames = cases.partition_by("_sheet", as_dict=True)
    sizes = {group: frames[(group,)].height if (group,) in frames else 0 for group in xlsx.GROUPS}
    sheets = {name: rows for group, size in sizes.items() for name, _, rows in xlsx.split_names(group, size, job.max_rows)}
    xlsx.write_summary_sheet(RustBook(book), job, sheets, formats)
    for group in xlsx.GROUPS:
        frame = frames.get((group,), cases.clear())
        for name, start, rows in xlsx.split_names(group, frame.height, job.max_rows):
            rust_case_sheet(rv, book, formats, name, group, frame.slice(start, rows))
    book.close()
    with_fixed_created(path, f"{job.as_of}T00:00:00Z")


# --------------------------------------------------------------------------- checks


def feature_check(path: Path) -> dict[str, bool]:
    import openpyxl

    book = openpyxl.load_workbook(path)
    cases = [book[name] for name in book.sheetnames[1:]]
    checks = {
        "summary sheet first": book.sheetnames[0] == xlsx.workbook_settings()["summary_sheet"],
        "drop-down on keputusan": all(
            len(s.data_validations.dataValidation) == 1 and s.data_validations.dataValidation[0].type == "list"
            and s.data_validations.dataValidation[0].formula1 == '"' + ",".join(xlsx.DECISIONS) + '"'
            and str(s.data_validations.dataValidation[0].sqref).startswith("D2")
            and bool(s.data_validations.dataValidation[0].prompt) for s in cases),
        "frozen header": all(s.freeze_panes == "A2" for s in cases),
        "autofilter": all(s.auto_filter.ref and s.auto_filter.ref.startswith("A1:") for s in cases),
        "no formula cell": all(c.data_type != "f" for s in cases for row in s.iter_rows(min_row=2) for c in row),
        "key columns are text": all(isinstance(c.value, str) for s in cases for c in s["A"][1:] if c.value is not None),
    }
    with zipfile.ZipFile(path) as archive:
        checks["no <f> in sheet XML"] = not any("<f>" in archive.read(n).decode() for n in archive.namelist() if n.startswith("xl/worksheets/"))
    return checks


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--round", required=True, help="a finished round's folder (its --out)")
    parser.add_argument("--workers", type=int, default=0, help="also time verval's stage with this many processes")
    parser.add_argument("--work", default=None, help="where to write (default: a temporary folder)")
    args = parser.parse_args()
    round_dir = Path(args.round).resolve()
    work = Path(args.work or tempfile.mkdtemp(prefix="verval-workbooks-"))
    holder: dict = {}

    def prepare():
        anomalies, outcomes = xlsx.kab_tallies(round_dir)
        holder["jobs"] = xlsx.kab_jobs(round_dir, anomalies, outcomes, False, 1_000_000)

    measure("prepare the cases (joins, once)", prepare)
    jobs = holder["jobs"]
    print(f"{len(jobs)} kabupaten/kota files, {sum(j.cases.height for j in jobs):,} cases")
    writers = {"verval": xlsx.write_batch}
    try:
        import rvgsrust_xlsxwriter  # noqa: F401

        writers["rvgsrust-xlsxwriter"] = lambda batch, folder: [rust_kab_workbook(job, folder) for job in batch]
    except ImportError:
        print("rvgsrust-xlsxwriter is not installed: only verval is timed (see the docstring)")
    for name, write in writers.items():
        folder = work / name
        shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir(parents=True)
        measure(f"{name}: every kab file, one process", lambda: write(jobs, folder))
        print(f"{name:<44} {folder_mb(folder):7.1f} MB")
        largest = max(jobs, key=lambda j: j.cases.height)
        again = work / f"{name}-again"
        again.mkdir(exist_ok=True)
        write([largest], again)
        same = (again / largest.file).read_bytes() == (folder / largest.file).read_bytes()
        print(f"{name}: largest file {largest.file} byte-identical on a second write: {same}")
        for check, ok in feature_check(folder / largest.file).items():
            print(f"{name}:   {check:<30} {'yes' if ok else 'NO'}")
    if args.workers:
        folder = work / "stage"
        shutil.rmtree(folder, ignore_errors=True)
        measure(f"verval's workbook stage, {args.workers} processes",
                lambda: xlsx.write_workbooks(round_dir, folder, workers=args.workers))
    print(f"files in {work}")


if __name__ == "__main__":  # worker processes re-import this module
    main()
