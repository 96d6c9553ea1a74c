"""Parquet outputs whose bytes depend on their rows only.

polars' Parquet pages follow its chunks: the same 780,966 rows written from 1, 2 and 3
chunks gave three different files. An output written whole by the one-process round and
streamed piece by piece by a partitioned round (or a range of ids at a time) must be the
same file, so these outputs are written in row groups of ROW_GROUP rows, each from one
contiguous block, whatever pieces the rows arrive in.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import polars as pl

ROW_GROUP = 262_144


class RowGroupWriter:
    """A Parquet file of `schema` written as frames arrive, in row groups of `rows` rows."""

    def __init__(self, path: Path, schema: pl.Schema, rows: int = ROW_GROUP):
        import pyarrow.parquet as pq

        self.schema, self.rows = schema, rows
        self.arrow_schema = pl.DataFrame(schema=schema).to_arrow().schema
        self.writer = pq.ParquetWriter(path, self.arrow_schema, compression="zstd")
        self.pending: list[pl.DataFrame] = []
        self.held = self.written = 0

    def _flush(self, block: pl.DataFrame) -> None:
        self.writer.write_table(block.rechunk().to_arrow().cast(self.arrow_schema), row_group_size=self.rows)

    def write(self, frame: pl.DataFrame) -> None:
        if frame.schema != self.schema:
            frame = frame.cast(dict(self.schema))  # a column all null in this piece, say
        self.pending.append(frame)
        self.held += frame.height
        if self.held < self.rows:
            return
        block = pl.concat(self.pending, how="vertical")
        whole = block.height - block.height % self.rows
        for offset in range(0, whole, self.rows):
            self._flush(block.slice(offset, self.rows))
        self.written += whole
        self.pending, self.held = [block.slice(whole)], block.height - whole

    def close(self) -> int:
        """Writes what is held and closes the file (once); returns the rows written."""
        if self.writer.is_open:
            try:
                if self.held:
                    self._flush(pl.concat(self.pending, how="vertical"))
                    self.written, self.held = self.written + self.held, 0
            finally:
                self.writer.close()
        return self.written

    def __enter__(self) -> RowGroupWriter:
        return self

    def __exit__(self, *exc) -> None:
        if exc[0] is None:
            self.close()
        elif self.writer.is_open:
            self.writer.close()  # the round is discarded; what is held is not written


def write_row_groups(frames: Iterable[pl.DataFrame], path: Path, schema: pl.Schema, rows: int = ROW_GROUP) -> int:
    """The rows of `frames`, in order, as one such file. Returns the rows written."""
    with RowGroupWriter(path, schema, rows) as writer:
        for frame in frames:
            writer.write(frame)
        return writer.close()
