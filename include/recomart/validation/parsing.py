"""Robust, vectorised parsing of raw landings into string columns plus parse-time rejects.

Every column is read as a string with pyarrow.csv (fast, multi-threaded) and typed later, so a bad
value rejects one row instead of a whole file. File-level problems (empty file, wrong delimiter,
missing required column) never raise: they turn every data line into a rejected row.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import re
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

from recomart.tables import Dataset
from recomart.validation import reasons as R

log = logging.getLogger(__name__)
OTHER_DELIMITERS = (";", "\t", "|")
REJECT_COLUMNS = ("raw_line", "reason", "detail")


@dataclass
class ParsedInput:
    """One landed input of a dataset: string rows that parsed, rejects, and file-level findings."""

    source: str
    path: str
    sha256: str | None
    rows: pa.Table  # the dataset's columns, all strings
    rejects: pd.DataFrame  # dataset columns (strings, may be null) + raw_line, reason, detail
    file_errors: list[dict[str, str]] = field(default_factory=list)
    extra_columns: list[str] = field(default_factory=list)
    filled_columns: list[str] = field(default_factory=list)

    @property
    def rows_in(self) -> int:
        return self.rows.num_rows + len(self.rejects)


def empty_rows(ds: Dataset) -> pa.Table:
    return pa.table({c: pa.array([], pa.string()) for c in ds.columns})


def rejects_frame(ds: Dataset, records: list[dict[str, Any]]) -> pd.DataFrame:
    cols = [*ds.columns, *REJECT_COLUMNS]
    return pd.DataFrame.from_records(records, columns=cols).astype("object") if records \
        else pd.DataFrame({c: pd.Series([], dtype="object") for c in cols})


def _data_lines(text: str) -> list[str]:
    return [line for line in text.splitlines()[1:] if line.strip()]


def _file_failure(ds: Dataset, source: str, path: str, sha: str | None, text: str, reason: str,
                  detail: str) -> ParsedInput:
    lines = _data_lines(text)
    rejects = rejects_frame(ds, [{"raw_line": line, "reason": reason, "detail": detail}
                                 for line in lines])
    log.warning("%s: %s (%s); %d rows quarantined", path, reason, detail, len(lines))
    return ParsedInput(source, path, sha, empty_rows(ds), rejects,
                       file_errors=[{"reason": reason, "detail": detail}])


# what str.strip() strips, for ASCII bytes (bytes.strip() would not strip \x1c-\x1f)
_ASCII_BLANK = re.compile(rb"[ \t\n\r\x0b\x0c\x1c-\x1f]*\Z")


def _header(text: str) -> list[str]:
    end = text.find("\n")
    first = (text if end < 0 else text[:end]).rstrip("\r")
    return [c.strip() for c in next(csv.reader([first]))] if first else []


def _decode(data: bytes) -> tuple[str, bool]:
    try:
        text, ok = data.decode("utf-8"), True
    except UnicodeDecodeError:
        text, ok = data.decode("utf-8", errors="replace"), False
    return text.removeprefix("\ufeff"), ok


def _read_fast(data: bytes, header: list[str]) -> tuple[pa.Table, list[str]]:
    malformed: list[str] = []

    def on_invalid(row) -> str:
        malformed.append(row.text)
        return "skip"

    table = pacsv.read_csv(
        io.BytesIO(data),
        read_options=pacsv.ReadOptions(column_names=header, skip_rows=1),
        parse_options=pacsv.ParseOptions(invalid_row_handler=on_invalid),
        convert_options=pacsv.ConvertOptions(
            column_types={c: pa.string() for c in header}, null_values=[""],
            strings_can_be_null=True, quoted_strings_can_be_null=True),
    )
    return table, malformed


def _read_slow(text: str, header: list[str]) -> tuple[pa.Table, list[str]]:
    """Row by row with the csv module: only for files pyarrow refuses (e.g. an unclosed quote)."""
    good: list[list[str]] = []
    malformed: list[str] = []
    lines = text.splitlines()[1:]
    for line in lines:
        if not line.strip():
            continue
        try:
            fields = next(csv.reader([line]))
        except (csv.Error, StopIteration):
            fields = []
        if len(fields) == len(header):
            good.append(fields)
        else:
            malformed.append(line)
    cols = list(zip(*good, strict=True)) if good else [[] for _ in header]
    table = pa.table({h: pa.array([v if v != "" else None for v in col], pa.string())
                      for h, col in zip(header, cols, strict=True)})
    return table, malformed


def parse_csv(path: Path, ds: Dataset, *, source: str = "csv", rel_path: str | None = None,
              sha256: str | None = None) -> ParsedInput:
    """Parse one landed CSV of dataset ``ds``; never raises on bad content."""
    rel = rel_path or str(path)
    data = path.read_bytes()
    if data.isascii():  # the usual case: valid UTF-8 already, no BOM; no full-file str is built
        utf8_ok, text = True, None
        blank = _ASCII_BLANK.match(data) is not None
        end = data.find(b"\n")
        header = [] if blank else _header((data if end < 0 else data[:end]).decode("ascii"))
    else:
        text, utf8_ok = _decode(data)
        blank = not text.strip()
        if not utf8_ok and not blank:
            data = text.encode("utf-8")
        header = [] if blank else _header(text)
    if blank:
        return ParsedInput(source, rel, sha256, empty_rows(ds), rejects_frame(ds, []),
                           file_errors=[{"reason": R.EMPTY_FILE, "detail": f"{rel} has no header"}])

    def full_text() -> str:  # only the failure paths and the row-by-row reader need it
        return text if text is not None else data.decode("ascii")

    expected = list(ds.columns)
    if len(header) == 1 and len(expected) > 1:
        for delim in OTHER_DELIMITERS:
            if len(set(header[0].split(delim)) & set(expected)) >= 2:
                return _file_failure(ds, source, rel, sha256, full_text(), R.WRONG_DELIMITER,
                                     f"header is delimited by {delim!r}, expected ','")
    required = [c for c in expected if c not in ds.nullable]
    missing = [c for c in required if c not in header]
    if missing:
        return _file_failure(ds, source, rel, sha256, full_text(), R.MISSING_COLUMN,
                             f"required column(s) {', '.join(missing)} absent; header: {header}")
    if len(set(header)) != len(header):
        header = [h if header.index(h) == i else f"{h}__dup{i}" for i, h in enumerate(header)]
    try:
        table, malformed = _read_fast(data, header)
    except (pa.ArrowInvalid, ValueError) as exc:
        log.warning("%s: pyarrow could not parse (%s); falling back to the row-by-row reader", rel, exc)
        table, malformed = _read_slow(full_text(), header)
    extra = [c for c in header if c not in ds.columns]
    filled = [c for c in expected if c not in header]
    for col in filled:
        table = table.append_column(col, pa.nulls(table.num_rows, pa.string()))
    table = table.select(expected)
    records = [{"raw_line": line, "reason": R.MALFORMED_ROW,
                "detail": f"expected {len(header)} fields"} for line in malformed]
    if not utf8_ok:
        table, enc_rejects = _split_replacement_chars(table)
        records += enc_rejects
    return ParsedInput(source, rel, sha256, table, rejects_frame(ds, records),
                       extra_columns=extra, filled_columns=filled)


def _split_replacement_chars(table: pa.Table) -> tuple[pa.Table, list[dict[str, Any]]]:
    """Rows holding U+FFFD (bytes that were not UTF-8) become ``invalid_encoding`` rejects."""
    bad = pa.array([False] * table.num_rows)
    for col in table.column_names:
        hit = pc.fill_null(pc.match_substring(table[col], "\ufffd"), False)
        bad = pc.or_(bad, hit)
    rejected = table.filter(bad).to_pylist()
    for rec in rejected:
        rec.update(raw_line=None, reason=R.INVALID_ENCODING,
                   detail="bytes that are not UTF-8 (replaced by U+FFFD)")
    return table.filter(pc.invert(bad)), rejected


# ---- catalog API pages ----------------------------------------------------------------------------
def _items(payload: Any) -> list | None:
    if isinstance(payload, list):
        return payload
    if isinstance(payload, dict):
        for key in ("items", "products", "data", "results"):
            if isinstance(payload.get(key), list):
                return payload[key]
    return None


def _text(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, str):
        return value or None
    return json.dumps(value) if isinstance(value, dict | list) else str(value)


def parse_catalog_pages(path: Path, ds: Dataset, *, rel_path: str, sha256: str | None) -> ParsedInput:
    """Items of good pages become rows; each unusable page becomes one rejected row with its reason."""
    rows: list[dict[str, Any]] = []
    records: list[dict[str, Any]] = []
    extra: set[str] = set()
    for line in path.read_text(encoding="utf-8").splitlines():
        if not line.strip():
            continue
        page = json.loads(line)
        raw = page.get("raw_text") or ""
        if page.get("status", "ok") != "ok":
            reason = R.HTTP_ERROR_PAGE if "http" in page.get("status", "") else R.MALFORMED_JSON_PAGE
            records.append({"raw_line": raw[:4000], "reason": reason,
                            "detail": f"page {page.get('page')}: {page.get('status')} "
                                      f"(HTTP {page.get('http_status')})"})
            continue
        try:
            items = _items(json.loads(raw))
        except json.JSONDecodeError:
            items = None
        if items is None:
            records.append({"raw_line": raw[:4000], "reason": R.MALFORMED_JSON_PAGE,
                            "detail": f"page {page.get('page')}: no item list in JSON"})
            continue
        for item in items:
            if not isinstance(item, dict):
                records.append({"raw_line": _text(item), "reason": R.MALFORMED_ROW,
                                "detail": f"page {page.get('page')}: item is not an object"})
                continue
            extra.update(k for k in item if k not in ds.columns)
            rows.append({c: _text(item.get(c)) for c in ds.columns})
    table = pa.Table.from_pylist(rows, schema=pa.schema([(c, pa.string()) for c in ds.columns]))
    return ParsedInput("catalog_api", rel_path, sha256, table, rejects_frame(ds, records),
                       extra_columns=sorted(extra))


# ---- speed layer -----------------------------------------------------------------------------------
def speed_rows(table: pa.Table, ds: Dataset, ds_end: datetime, rel_path: str) -> ParsedInput:
    """Merged speed events up to the logical date's end, as strings like any other input."""
    ts = table["timestamp"]
    if pa.types.is_timestamp(ts.type):
        ts_utc = ts.cast(pa.timestamp("us", "UTC"))
        table = table.filter(pc.less(ts_utc, pa.scalar(ds_end, pa.timestamp("us", "UTC"))))
    cols = {}
    for c in ds.columns:
        if c not in table.column_names:
            cols[c] = pa.nulls(table.num_rows, pa.string())
        elif pa.types.is_timestamp(table[c].type):
            text = pc.strftime(table[c].cast(pa.timestamp("us", "UTC")), format="%Y-%m-%dT%H:%M:%S")
            cols[c] = pc.binary_join_element_wise(text, pa.scalar("Z"), "")
        else:
            cols[c] = table[c].cast(pa.string())
    return ParsedInput("speed", rel_path, None, pa.table(cols), rejects_frame(ds, []))
