"""Load a dataset folder into typed DataFrames and validate it against the data contract.

``load(path)`` reads every table file it finds (``<table>.csv``, ``.parquet``, ``.xlsx``, or the file
named under ``tables:`` in ``dataset.yml``), converts each column to its contract kind (see
``helpers.data.schema``) and checks the rules. All problems are gathered and raised together as one
``DataValidationError`` whose message names file, row, column, the bad value and what was expected.
Problems a report can live with come back as ``Dataset.warnings``.

Row numbers are 1-based data rows; for CSV files the message also gives the file line (header = line 1).
Nothing in the dataset folder is ever written.
"""

from __future__ import annotations

import difflib
import hashlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from helpers.data import fastcsv, sources
from helpers.data.coerce import blank, to_bool, to_date, to_number, to_text
from helpers.data.config import DatasetConfig, load_config
from helpers.data.progress import progress
from helpers.data.schema import TABLES, Table

EXTENSIONS = (".csv", ".parquet", ".xlsx")
MORE_ROWS = "more rows than shown, counted on the server"  # the note of a problem counting the rest
MAX_ROWS_SHOWN = 20  # per (file, column, rule) group in the error message; all are kept in .problems


@dataclass(frozen=True)
class Problem:
    file: str
    row: int | None  # 1-based data row, None for file- or column-level problems
    column: str | None
    value: object
    expected: str
    severity: str = "error"  # "error" or "warning"
    line_offset: int | None = 1  # CSV: file line = row + 1; None for formats without lines
    # the other cell the expectation compares with, (column, value): shown after ``expected``, so rows
    # with the same problem share one ``expected`` and group (format_problems)
    ref: tuple[str, object] | None = None
    note: str = ""  # where else the problem shows (revops import: the imported table, row and column)
    # a database table checked on the server (``helpers.data.pgcheck``) has no file rows: a row is named
    # by its key columns, ((column, value), …), and a problem may stand for ``count`` rows (the rows
    # beyond the first ones fetched, or rows that nothing names, such as rows without an id)
    key: tuple = ()
    count: int = 1

    def where(self) -> str:
        parts = [self.file]
        if self.row is not None:
            parts.append(
                f"row {self.row}"
                + (f" (line {self.row + self.line_offset})" if self.line_offset is not None else "")
            )
        elif self.key:
            parts.append(", ".join(f"{c} {_shown(v)}" for c, v in self.key))
        if self.column:
            parts.append(f"column {self.column!r}")
        if self.count != 1:
            parts.append(f"{self.count:,} rows")
        return ", ".join(parts)

    def __str__(self) -> str:
        v = self.value
        if isinstance(v, pd.Timestamp):
            v = v.strftime("%Y-%m-%d") if v == v.normalize() else str(v)
        elif isinstance(v, float) and v.is_integer():
            v = int(v)
        val = "" if v is None else f": value {str(v)[:60]!r}"
        ref = ""
        if self.ref is not None:
            r = self.ref[1]
            ref = " " + (
                repr(r)
                if isinstance(r, str)
                else r.strftime("%Y-%m-%d")
                if hasattr(r, "strftime")
                else str(r)
            )
        return f"{self.where()}{val} — {self.expected}{ref}" + (f" ({self.note})" if self.note else "")


def _shown(v) -> str:
    """A key value as a message shows it: text quoted, a midnight timestamp as its date, none as empty."""
    if v is None or (not isinstance(v, str) and pd.isna(v)):
        return "empty"
    if isinstance(v, pd.Timestamp):
        return v.strftime("%Y-%m-%d") if v == v.normalize() else str(v)
    return repr(v) if isinstance(v, str) else str(v)


def no_data_rows(fname: str, table: Table, line_offset=None) -> Problem:
    """A table without data rows: an error for a required table, else a warning (every check says it so)."""
    return Problem(
        fname, None, None, None, "has no data rows", "error" if table.required else "warning", line_offset
    )


def n_problems(problems) -> int:
    """How many rows the problems stand for (a problem counted on the server may stand for several)."""
    return sum(p.count for p in problems)


class DataValidationError(ValueError):
    """One error listing every problem found in a dataset."""

    def __init__(self, problems: list[Problem], folder: str | Path = "", hints: list[Problem] = ()):
        self.problems = problems
        self.folder = str(folder)
        self.hints = list(hints)
        title = f"Dataset {folder} has {n_problems(problems)} error(s)"
        if self.hints:  # how a column was read, before the errors it may explain
            title = format_problems(
                self.hints, title=f"{title}. Read first — how these columns were read may explain them:"
            )
            title += "\nThe errors:"
        super().__init__(format_problems(problems, title=title))


def reading_hints(warnings: list[Problem], errors: list[Problem]) -> list[Problem]:
    """The warnings about how a whole column was read (day/month order, decimal comma, bare years…) for the
    columns the ``errors`` name or compare with: they may explain those errors (a day/month column read
    as month/day puts close dates before created dates)."""
    named = {(e.file, e.column) for e in errors} | {(e.file, e.ref[0]) for e in errors if e.ref}
    return [
        w
        for w in warnings
        if w.row is None and not w.key and w.note != MORE_ROWS and w.column and (w.file, w.column) in named
    ]


def format_problems(problems: list[Problem], title: str = "", max_rows: int = MAX_ROWS_SHOWN) -> str:
    """Group problems by file, column and expectation; show up to ``max_rows`` rows per group."""
    lines = [title] if title else []
    groups: dict[tuple, list[Problem]] = {}
    for p in problems:
        groups.setdefault((p.file, p.column, p.expected, p.severity), []).append(p)
    for (_, _, _, _), items in groups.items():
        for p in items[:max_rows]:
            lines.append(f"  - {p}")
        if len(items) > max_rows:
            rest = [str(p.row) for p in items[max_rows:] if p.row is not None]
            shown = ", ".join(rest[:30]) + (", …" if len(rest) > 30 else "")
            place = items[0].file if items[0].key else items[0].where().split(", row")[0]
            lines.append(
                f"  - … and {n_problems(items[max_rows:])} more in {place}"
                f" with the same problem" + (f" (rows {shown})" if rest else "")
            )
    return "\n".join(lines)


@dataclass
class Dataset:
    """Typed tables of one dataset folder plus its ``dataset.yml``."""

    path: Path
    config: DatasetConfig
    tables: dict[str, pd.DataFrame]
    files: dict[str, Path] = field(default_factory=dict)
    warnings: list[Problem] = field(default_factory=list)
    inferred: Callable[[], pd.Timestamp | None] | None = field(default=None, repr=False)

    def __getattr__(self, name: str):
        if name in TABLES:
            return self.__dict__["tables"].get(name)
        raise AttributeError(name)

    def has(self, table: str, *columns: str) -> bool:
        df = self.tables.get(table)
        return df is not None and all(c in df.columns and df[c].notna().any() for c in columns)

    def missing(self, table: str, *columns: str, section: str = "This section") -> str | None:
        """None when ``table`` has ``columns`` with data; otherwise a sentence saying what is needed."""
        df = self.tables.get(table)
        if df is None:
            need = f" (with columns {', '.join(columns)})" if columns else ""
            return f"{section} needs the `{table}` table{need}; dataset {self.config.name!r} has none."
        absent = [c for c in columns if c not in df.columns or df[c].isna().all()]
        if absent:
            return (
                f"{section} needs column(s) {', '.join(absent)} in the `{table}` table; "
                f"dataset {self.config.name!r} does not provide them."
            )
        return None

    @property
    def as_of(self) -> pd.Timestamp:
        """The export date: ``as_of`` in dataset.yml, else ``infer_as_of`` of the opportunities (or
        ``inferred``, set by whoever left them where they live: ``Engine.inferred_as_of``)."""
        return export_date(self.config, self.inferred or self._inferred_from_loaded)

    def _inferred_from_loaded(self) -> pd.Timestamp | None:
        if "opportunities" not in self.tables:
            raise KeyError(
                f"dataset {self.config.name!r}: the opportunities were not loaded (name them in "
                "`tables=`), so the export date cannot be inferred; set `as_of` in dataset.yml"
            )
        return infer_as_of(self.tables["opportunities"])

    def fingerprint(self) -> str:
        return fingerprint_files([self.path / "dataset.yml", *self.files.values()])


def export_date(config: DatasetConfig, inferred) -> pd.Timestamp:
    """``as_of`` of dataset.yml, else ``inferred()`` (the latest recorded event), else today."""
    if config.as_of:
        return pd.Timestamp(config.as_of).normalize()
    found = inferred()
    return found if found is not None else pd.Timestamp.today().normalize()


@dataclass
class Checked:
    """A validated dataset, told without its rows: what ``validate`` returns (the report run's parent
    process and ``revops validate`` need no more)."""

    path: Path
    config: DatasetConfig
    rows: dict[str, int]  # rows per table
    files: dict[str, Path]
    warnings: list[Problem]
    inferred_as_of: pd.Timestamp | None  # infer_as_of of the opportunities
    first_created: pd.Timestamp | None  # the earliest created_date of the opportunities
    on_server: bool = False  # checked by queries on the database (helpers.data.pgcheck)

    @property
    def as_of(self) -> pd.Timestamp:
        return export_date(self.config, lambda: self.inferred_as_of)

    def fingerprint(self) -> str:
        return fingerprint_files([self.path / "dataset.yml", *self.files.values()])


def infer_as_of(opp: pd.DataFrame) -> pd.Timestamp | None:
    """Latest recorded event: the max of created dates and of closed deals' close dates (open deals'
    expected close dates lie in the future and are ignored)."""
    dates = []
    if "created_date" in opp.columns:
        dates.append(opp["created_date"].max())
    if {"close_date", "is_closed"} <= set(opp.columns):
        dates.append(opp.loc[opp["is_closed"].fillna(False).astype(bool), "close_date"].max())
    dates = [d for d in dates if pd.notna(d)]
    return max(dates).normalize() if dates else None


def fingerprint_files(paths) -> str:
    """sha256 over the names and the sha256 of the bytes of the given files (order-independent); the
    files' digests come from ``sources.file_sha256``, which reads a file again only after it changed."""
    h = hashlib.sha256()
    for p in sorted((x if isinstance(x, sources.DbTable) else Path(x) for x in paths), key=str):
        if isinstance(p, sources.DbTable):  # a database table: its source, not its rows
            h.update(p.name.encode())
        elif p.exists():
            h.update(p.name.encode())
            h.update(sources.file_sha256(p).encode())
    return h.hexdigest()


# --------------------------------------------------------------------------------------------------
# reading
# --------------------------------------------------------------------------------------------------
def find_table_files(folder: Path, config: DatasetConfig) -> dict[str, Path]:
    found = {}
    for name in TABLES:
        if name in config.tables:
            found[name] = sources.table_source(folder, name, config.tables[name])  # file or database
            continue
        for ext in EXTENSIONS:
            p = folder / f"{name}{ext}"
            if p.exists():
                found[name] = p
                break
    return found


def _sniff_csv(path: Path) -> tuple[str, str, list[str]]:
    """(encoding, delimiter, header cells) of a CSV, from its first 64 KB: UTF-16 when it starts with a
    UTF-16 byte-order mark, else UTF-8 (with or without BOM) as long as those bytes are UTF-8, else
    Windows-1252 (``read_raw`` still reads the whole file strictly and falls back to Windows-1252 when
    a later byte is not UTF-8); comma, semicolon (European Excel), tab or ``|``, whichever splits the
    header line most."""
    import codecs
    import csv

    head = path.read_bytes()[:65536]
    if head.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        text, encoding = head[: len(head) // 2 * 2].decode("utf-16", errors="ignore"), "utf-16"
    else:
        try:
            text, encoding = head.decode("utf-8-sig"), "utf-8-sig"
        except UnicodeDecodeError as exc:
            if exc.start > len(head) - 4:  # a multi-byte character cut by the 64 KB window
                text, encoding = head[: exc.start].decode("utf-8-sig"), "utf-8-sig"
            else:
                text, encoding = head.decode("cp1252", errors="replace"), "cp1252"
    first = text.splitlines()[0] if text.strip() else ""
    delim = max((",", ";", "\t", "|"), key=lambda d: len(next(csv.reader([first], delimiter=d), [])))
    header = next(csv.reader([first], delimiter=delim), [])
    return encoding, delim, header


def _read_csv_text(path: Path, encoding: str, delim: str) -> tuple[pd.DataFrame, str]:
    """The whole CSV decoded strictly (no character is ever replaced): in ``encoding``, and when that
    is UTF-8 and a byte further on is not, again as Windows-1252. Returns (frame, encoding used)."""
    options = dict(
        dtype=str,
        keep_default_na=False,
        na_values=[""],
        skipinitialspace=True,
        sep=delim,
        skip_blank_lines=False,
        encoding_errors="strict",
    )
    tried = []
    for enc in [encoding] + (["cp1252"] if encoding == "utf-8-sig" else []):
        try:
            return pd.read_csv(path, encoding=enc, **options), enc
        except pd.errors.EmptyDataError:  # no header at all (a 0-byte file): load() says so
            return pd.DataFrame(), enc
        except UnicodeDecodeError as exc:
            tried.append(
                f"{_ENCODING_NAMES.get(enc, enc)} ({exc.reason} at byte 0x{exc.object[exc.start]:02x})"
            )
    raise ValueError(f"is not text in {' or '.join(tried)}; save it as UTF-8")


_ENCODING_NAMES = {"utf-8-sig": "UTF-8", "cp1252": "Windows-1252", "utf-16": "UTF-16"}


def read_raw(path: Path, table: Table | None = None) -> pd.DataFrame:
    """Read a table file; CSV and Excel cells come back as text (typed later, with row numbers kept).

    With the contract ``table``, a UTF-8 CSV is read by DuckDB where it reads exactly as pandas does, and
    the contract columns whose every value has the strict form of their kind come back typed
    (``helpers.data.fastcsv``; ``coerce_table`` takes them through the same parsers' typed branches).

    CSV: the encoding and delimiter are sniffed (``_sniff_csv``); blank lines are kept as empty rows so
    row numbers match the file (they are dropped after numbering). Notes about the reading (encoding,
    duplicate headers, a stray quote) travel in ``df.attrs["read_notes"]`` as (severity, column, text) or
    (severity, column, text, row, value)."""
    suffix = path.suffix.lower()
    if path.is_dir():
        raise ValueError("is a folder, not a file")
    notes: list[tuple[str, str | None, str]] = []
    if suffix == ".csv":
        encoding, delim, header = _sniff_csv(path)
        seen: dict[str, int] = {}
        for i, h in enumerate(header, 1):
            key = h.strip().lower()
            if key in seen:
                notes.append(
                    ("error", h.strip(), f"column appears twice (columns {seen[key]} and {i}); keep one")
                )
            else:
                seen[key] = i
        if table is not None and fastcsv.enabled():
            fast = fastcsv.read_typed(path, table, delim, header, encoding, notes)
            if fast is not None:
                if fastcsv.quotes_read_alike(path, delim, len(fast)) or (
                    stray_quote(path, encoding, delim, header, len(fast) + 1) is None
                ):
                    return fast
                fastcsv.FALLBACKS[str(path)] = "a stray quote (the pandas path names it)"
        try:
            df, encoding = _read_csv_text(path, encoding, delim)
        except pd.errors.ParserError:  # e.g. "EOF inside string": name the row and column the quote opens
            stray = stray_quote(path, encoding, delim, header)
            if stray is None:
                raise
            row, column, value, problem = stray
            raise ValueError(
                f"row {row} (line {row + 1}), column {column!r}, value {value!r} — {problem}"
            ) from None
        stray = stray_quote(path, encoding, delim, header, len(df) + 1)
        if stray is not None:  # pandas read the file, but not as written: rows merged or a value changed
            notes.append(("error", stray[1], stray[3], stray[0], stray[2]))
        if encoding == "cp1252":
            notes.append(
                ("warning", None, "is not UTF-8; read as Windows-1252 (save it as UTF-8 to be sure)")
            )
    elif suffix == ".parquet":
        import pyarrow.parquet as pq

        df = pq.read_table(path).to_pandas(date_as_object=False)
        df.attrs = {}  # not the attrs of a frame the file was written from (its "clean_text" skips trimming)
    elif suffix in (".xlsx", ".xlsm", ".xls"):
        sheets = pd.read_excel(path, dtype=object, sheet_name=None)
        name, df = next(iter(sheets.items()))
        if len(sheets) > 1:
            notes.append(("warning", None, f"has {len(sheets)} sheets; read the first, {name!r}"))
    else:
        raise ValueError(f"unsupported file type {suffix!r}; use .csv, .parquet or .xlsx")
    df.attrs["read_notes"] = notes
    return df


def stray_quote(path: Path, encoding: str, delim: str, header: list[str], records: int | None = None):
    """The first stray double quote of a CSV, as (row, column, value, problem), or None. The file is read
    strictly (RFC 4180: a quoted value ends at its closing quote, inner quotes doubled); when that fails,
    or when quoted values span lines (more lines than the ``records`` pandas read, header included), the
    first record that breaks the rule or spans lines into another number of values than the header has its
    lines scanned for the value where the quote goes wrong. Only a file holding a quote is read."""
    import csv
    import itertools
    from collections import deque

    with path.open("rb") as f:  # in blocks: a file of a gigabyte is never held whole
        if not any(b'"' in block for block in iter(lambda: f.read(1 << 24), b"")):
            return None

    def text(newline: str):
        f = path.open(encoding=encoding, errors="replace", newline=newline)
        if f.read(1) != "\ufeff":
            f.seek(0)
        return f

    with text("") as f:
        reader = csv.reader(f, delimiter=delim, strict=True)
        try:
            deque(reader, maxlen=0)  # at C speed, streamed; most files end here
            if records is not None and reader.line_num <= records:
                return None
        except csv.Error:
            pass
    with text("") as f:
        reader = csv.reader(f, delimiter=delim, strict=True)
        start = 1
        try:
            for record in reader:
                if record and len(record) != len(header) and reader.line_num > start:
                    break  # a quote ran over the end of its line and merged rows
                start = reader.line_num + 1
            else:
                return None
        except csv.Error:
            pass
    with text("\n") as f:
        lines = list(itertools.islice(f, start - 1, max(start, reader.line_num)))
    for line in lines:
        found = _quote_in_line(line.rstrip("\r\n"), delim)
        if found is not None:
            i, value, opens = found
            what = (
                "it opens a quoted value that no quote closes on its line, so the next lines were read into it "
                "(rows merged)"
                if opens
                else "text follows the closing quote, so the quotes were dropped"
            )
            return (
                start - 1,  # the data row (line 1 is the header)
                header[i].strip() if i < len(header) else f"value {i + 1}",
                value[:60],
                f'stray double quote: {what}; quote the whole value and double any quote inside ("")',
            )
    return None


def _quote_in_line(line: str, delim: str) -> tuple[int, str, bool] | None:
    """(value index, value text, whether the quote opens a value left open) of the first value of
    ``line`` whose quoting breaks RFC 4180, or None."""
    i, col, n = 0, 0, len(line)
    while i <= n:
        j = i
        while j < n and line[j] == " ":  # the reader skips spaces before a value
            j += 1
        if j < n and line[j] == '"':
            k = j + 1
            while True:
                k = line.find('"', k)
                if k == -1:
                    return col, line[j:], True
                if line[k + 1 : k + 2] == '"':
                    k += 2
                    continue
                break
            end = line.find(delim, k + 1)
            end = n if end == -1 else end
            if line[k + 1 : end].strip():
                return col, line[j:end], False
        else:
            end = line.find(delim, i)
            end = n if end == -1 else end
        i, col = end + 1, col + 1
    return None


MISSPELLING = 0.85  # difflib ratio from which an unknown column is taken as a misspelt contract column


def _closest(name: str, candidates) -> str:
    m = difflib.get_close_matches(name, list(candidates), n=1, cutoff=0.6)
    return f"; did you mean {m[0]!r}?" if m else ""


def canonical_header(name: str) -> str:
    """The contract column a header names, ignoring case, spaces and hyphens (``Opportunity ID``)."""
    return "_".join(str(name).strip().lower().replace("-", " ").split())


def unknown_columns(columns, table: Table, fname: str, offset) -> list[Problem]:
    """A problem for each column outside the contract that looks like a contract column the table lacks:
    one or two letters off ('amout') is a misspelling that would silently drop every figure built on that
    column, so an error; a looser match ('owner_name' for 'owner') may be a column of its own, a warning."""
    unknown = set(columns) - set(table.column_names)
    missing_optional = set(table.column_names) - set(columns)
    found = []
    for col in sorted(unknown):
        hint = _closest(col, missing_optional)
        if hint:
            meant = difflib.get_close_matches(col, list(missing_optional), n=1, cutoff=MISSPELLING)
            found.append(
                Problem(
                    fname,
                    None,
                    col,
                    None,
                    f"column is not in the data contract{hint}"
                    + (f" (rename it to {meant[0]!r}, or drop it)" if meant else ""),
                    "error" if meant else "warning",
                    offset,
                )
            )
    return found


def stage_key(stage: str) -> str:
    """A stage spelling without case and spacing differences (``" closed  WON"`` → ``closed won``)."""
    return " ".join(str(stage).lower().split())


def contract_headers(columns: list[str], table: Table) -> dict[str, str]:
    """{header: contract column} for the (stripped) headers that name a contract column but for case,
    spaces and hyphens (``Opportunity ID`` → ``opportunity_id``), where that column is not there already."""
    names = set(table.column_names)
    rename = {}
    for c in columns:
        canon = canonical_header(c)
        if c not in names and canon in names and canon not in columns and canon not in rename.values():
            rename[c] = canon
    return rename


def coerce_table(
    raw: pd.DataFrame,
    table: Table,
    fname: str,
    line_offset: int | None,
    problems: list[Problem],
    config: DatasetConfig | None = None,
) -> pd.DataFrame:
    """Convert columns to their contract kinds (``helpers.data.coerce``), recording a problem for each value
    that does not convert and a warning for each column-level assumption.

    Headers are matched to the contract ignoring case, spaces and hyphens (``Opportunity ID`` →
    ``opportunity_id``). Rows that are entirely blank are dropped after numbering, so row numbers match
    the file's lines."""
    df = raw.copy()
    for sev, col, text, *at in raw.attrs.get("read_notes", []):
        row, value = at or (None, None)
        problems.append(Problem(fname, row, col, value, text, sev, line_offset))
    df.columns = [str(c).strip() for c in df.columns]
    names = set(table.column_names)
    df = df.rename(columns=contract_headers(list(df.columns), table))
    present = set(df.columns)
    for col in table.required_columns:
        if col not in present:
            problems.append(
                Problem(
                    fname,
                    None,
                    col,
                    None,
                    f"required column is missing{_closest(col, present - names)}",
                    line_offset=line_offset,
                )
            )
    df.index = pd.RangeIndex(1, len(df) + 1)
    empty_rows = pd.Series(True, index=df.index)
    for c in range(len(df.columns)):  # rows blank in every column; stops at the first column without blanks
        rows = empty_rows[empty_rows].index
        if not len(rows):
            break
        empty_rows[rows] = blank(df.iloc[:, c].loc[rows]).to_numpy()
    df = df[~empty_rows]
    if df.empty:
        problems.append(no_data_rows(fname, table, line_offset))
    date_order = config.extra.get("date_order") if config is not None else None
    for col in table.columns:
        if col.name not in df.columns:
            continue
        s = df[col.name]
        if col.kind in ("id", "str"):
            if col.name not in raw.attrs.get("clean_text", ()):  # read_raw's fast path: already to_text's
                df[col.name] = to_text(s)
            continue
        if col.kind in ("date", "datetime"):
            conv, bad, notes = to_date(s, col.kind, date_order)
        elif col.kind in ("money", "number", "prob"):
            conv, bad, notes = to_number(s, col.kind)
        else:
            conv = to_bool(s)
            bad = {
                r: "expected true/false (also yes/no, 1/0)"
                for r in (conv.isna() & ~blank(s, na_words=True))[lambda m: m].index
            }
            notes = []
        for r, expected in bad.items():
            problems.append(Problem(fname, int(r), col.name, s[r], expected, line_offset=line_offset))
        for text in notes:
            problems.append(Problem(fname, None, col.name, None, text, "warning", line_offset))
        if col.kind == "money":
            problems += _row_problems(
                df, conv < 0, fname, col.name, "expected an amount of 0 or more", line_offset
            )
        if col.kind == "prob":
            out_of_range = (conv < 0) | (conv > 1)
            expected = "expected a probability within 0–1 or 0–100"
            problems += _row_problems(df, out_of_range, fname, col.name, expected, line_offset)
        df[col.name] = conv
    return df


def _isin(s: pd.Series, values) -> pd.Series:
    """``s.isin(values)``, through Arrow's hash lookup for Arrow-backed text (pandas' own makes a Python
    scalar of every value: most of the rules' time at 1M opportunities)."""
    values = list(values) if not isinstance(values, pd.api.extensions.ExtensionArray | pd.Series) else values
    if isinstance(s.dtype, pd.StringDtype) and s.dtype.storage == "pyarrow":
        import pyarrow as pa
        import pyarrow.compute as pc

        arr = pa.array(s)
        try:
            found = pc.is_in(arr, value_set=pa.array(values, type=arr.type))
        except (pa.ArrowInvalid, pa.ArrowTypeError):  # a value that is not text
            return s.isin(values)
        return pd.Series(found.to_numpy(zero_copy_only=False), index=s.index, dtype=bool)
    return s.isin(values)


def _duplicated(s: pd.Series) -> pd.Series:
    """``s.duplicated(keep=False)``: for Arrow-backed text, by Arrow's dictionary encoding and a count per
    value (pandas' own factorizes through Python: 11 s for 10M activity ids)."""
    if isinstance(s.dtype, pd.StringDtype) and s.dtype.storage == "pyarrow" and len(s):
        import numpy as np
        import pyarrow as pa
        import pyarrow.compute as pc

        arr = pa.array(s)
        arr = arr.combine_chunks() if isinstance(arr, pa.ChunkedArray) else arr  # Parquet sources
        encoded = pc.dictionary_encode(arr)
        valid = pc.is_valid(encoded.indices).to_numpy(zero_copy_only=False)
        codes = pc.fill_null(encoded.indices, 0).to_numpy(zero_copy_only=False)
        counts = np.bincount(codes[valid], minlength=max(len(encoded.dictionary), 1))
        nulls = int((~valid).sum())
        dup = np.where(valid, counts[codes] > 1, nulls > 1)
        return pd.Series(dup, index=s.index, dtype=bool)
    return s.duplicated(keep=False)


def _row_problems(df, mask, fname, column, expected, line_offset, severity="error", value_col=None):
    col = value_col or column
    out = []
    for r in mask[mask.fillna(False).astype(bool)].index:
        val = df.at[r, col] if col in df.columns else None
        out.append(
            Problem(fname, int(r), column, None if pd.isna(val) else val, expected, severity, line_offset)
        )
    return out


def check_rules(
    tables: dict[str, pd.DataFrame],
    names: dict[str, str],
    offsets: dict[str, int | None],
    config: DatasetConfig,
    as_of: pd.Timestamp | None,
) -> tuple[list[Problem], list[Problem]]:
    """Cross-column and cross-table rules. Returns (errors, warnings)."""
    errors: list[Problem] = []
    warnings: list[Problem] = []
    stages = set(config.stages)
    for tname, df in tables.items():
        t = TABLES[tname]
        fname, off = names[tname], offsets[tname]
        if t.key and t.key in df.columns:
            ids = df[t.key]
            dup = _duplicated(ids) & ids.notna()
            if dup.any():
                first = ids[dup].groupby(ids[dup]).apply(lambda g: g.index[0])
                for r in dup[dup].index:
                    f = int(first[ids[r]])
                    if r != f:
                        errors.append(
                            Problem(
                                fname,
                                int(r),
                                t.key,
                                ids[r],
                                f"expected a unique id; row {f} has the same id",
                                "error",
                                off,
                            )
                        )
            blank_id = ids.isna()
            errors += _row_problems(
                df, blank_id, fname, t.key, "expected an id (the key may not be empty)", off
            )
        for col in t.required_columns:
            if col in df.columns and col != t.key:
                errors += _row_problems(
                    df, df[col].isna(), fname, col, "expected a value (required column)", off
                )
        if "stage" in df.columns and stages:
            bad = df["stage"].notna() & ~_isin(df["stage"], stages)
            for r in bad[bad].index:
                errors.append(
                    Problem(
                        fname,
                        int(r),
                        "stage",
                        df.at[r, "stage"],
                        f"expected a stage listed in dataset.yml{_closest(df.at[r, 'stage'], stages)}"
                        f" (stages: {', '.join(config.stages)})",
                        "error",
                        off,
                    )
                )
    opp = tables.get("opportunities")
    if opp is not None:
        fname, off = names["opportunities"], offsets["opportunities"]
        if {"created_date", "close_date"} <= set(opp.columns):
            bad = opp["close_date"] < opp["created_date"]
            for r in bad[bad.fillna(False)].index:
                errors.append(
                    Problem(
                        fname,
                        int(r),
                        "close_date",
                        opp.at[r, "close_date"].date(),
                        "expected a close date on or after created_date",
                        "error",
                        off,
                        ref=("created_date", opp.at[r, "created_date"].date()),
                    )
                )
        if {"is_won", "is_closed"} <= set(opp.columns):
            bad = opp["is_won"].fillna(False) & ~opp["is_closed"].fillna(False)
            errors += _row_problems(
                opp, bad, fname, "is_closed", "expected is_closed = true for a won deal (is_won is true)", off
            )
            st = opp["stage"] if "stage" in opp.columns else pd.Series(pd.NA, index=opp.index)
            won_st, lost_st = _isin(st, config.won_stages), _isin(st, config.lost_stages)
            open_st = _isin(st, config.open_stages)
            for mask, col, text in (
                (
                    won_st & opp["is_won"].eq(False),
                    "is_won",
                    "expected is_won = true: the stage is a won stage",
                ),
                (
                    lost_st & opp["is_won"].eq(True),
                    "is_won",
                    "expected is_won = false: the stage is a lost stage",
                ),
                (
                    (won_st | lost_st) & opp["is_closed"].eq(False),
                    "is_closed",
                    "expected is_closed = true: the stage is a closing stage",
                ),
                (
                    open_st & opp["is_closed"].eq(True),
                    "is_closed",
                    "expected is_closed = false: the stage is an open stage (or list it under won_stages/lost_stages)",
                ),
            ):
                errors += _row_problems(opp, mask.fillna(False) & ~bad, fname, col, text, off)
        if {"is_closed", "close_date"} <= set(opp.columns) and as_of is not None:
            past = ~opp["is_closed"].fillna(False) & (opp["close_date"] < as_of)
            warnings += _row_problems(
                opp,
                past,
                fname,
                "close_date",
                f"open deal with a close date before the as-of date {as_of.date()} (past due)",
                off,
                "warning",
            )
        if {"is_closed", "next_step"} <= set(opp.columns):
            no_step = ~opp["is_closed"].fillna(False) & opp["next_step"].isna()
            warnings += _row_problems(
                opp, no_step, fname, "next_step", "open deal with no next step", off, "warning"
            )
        if "amount" in opp.columns:
            warnings += _row_problems(
                opp, opp["amount"] == 0, fname, "amount", "amount is zero", off, "warning"
            )
        if as_of is not None:
            # nothing is created, or closed, after the data was exported: a date past the as-of date is
            # left out of the reports (a warning); more than a year past it, a typo such as 2031 (an error)
            closed = opp["is_closed"].fillna(False).astype(bool) if "is_closed" in opp.columns else None
            day, year = as_of.normalize() + pd.Timedelta(days=1), as_of.normalize() + pd.DateOffset(years=1)
            for col, mask, what in (
                ("created_date", pd.Series(True, index=opp.index), "a created date"),
                ("close_date", closed, "a closed deal's close date"),
            ):
                if col not in opp.columns or mask is None:
                    continue
                text = f"expected {what} on or before the as-of date {as_of.date()}"
                far = mask & (opp[col] > year)
                errors += _row_problems(opp, far, fname, col, text, off)
                warnings += _row_problems(
                    opp, mask & (opp[col] >= day) & ~far, fname, col, text, off, "warning"
                )
        ids = opp["opportunity_id"].dropna().unique() if "opportunity_id" in opp.columns else []
        for tname in ("opportunity_history", "activities", "leads"):
            df = tables.get(tname)
            if df is None or "opportunity_id" not in df.columns or not len(ids):
                continue
            bad = df["opportunity_id"].notna() & ~_isin(df["opportunity_id"], ids)
            errors += _row_problems(
                df,
                bad,
                names[tname],
                "opportunity_id",
                f"expected an opportunity_id that exists in {names['opportunities']}",
                offsets[tname],
            )
    reps = tables.get("reps")
    if reps is not None and "rep_id" in reps.columns and len(reps):
        known = reps["rep_id"].dropna().unique()
        # a quota belongs to a rep of the reps table; a deal's or activity's owner may be someone else
        # (an integration user, a manager), so an owner the table lacks is a warning
        for tname, col, severity in (
            ("quotas", "rep_id", "error"),
            ("opportunities", "owner", "warning"),
            ("activities", "owner", "warning"),
            ("leads", "owner", "warning"),
        ):
            df = tables.get(tname)
            if df is None or col not in df.columns:
                continue
            bad = df[col].notna() & ~_isin(df[col], known)
            found = errors if severity == "error" else warnings
            found += _row_problems(
                df,
                bad,
                names[tname],
                col,
                f"expected a rep_id listed in {names['reps']}",
                offsets[tname],
                severity,
            )
    return errors, warnings


def normalize_stages(
    df: pd.DataFrame, config: DatasetConfig, fname: str, off, problems: list[Problem]
) -> pd.DataFrame:
    """Stage values that match a dataset.yml stage but for case and spacing (``closed won``) take the
    stage's own spelling, with one warning per spelling."""
    if "stage" not in df.columns or not config.stages:
        return df
    key = {stage_key(s): s for s in config.stages}
    st = df["stage"]
    odd = st.notna() & ~_isin(st, config.stages)
    if not odd.any():
        return df
    fixed = st[odd].map(lambda v: key.get(stage_key(v)))
    hit = fixed.notna()
    if hit.any():
        df = df.copy()
        df.loc[fixed[hit].index, "stage"] = fixed[hit]
        for v, canon in sorted(set(zip(st[odd][hit], fixed[hit], strict=True))):
            n = int((st[odd][hit] == v).sum())
            problems.append(
                Problem(fname, None, "stage", v, f"read as the stage {canon!r} ({n} row(s))", "warning", off)
            )
    return df


def derive_status(opp: pd.DataFrame, config: DatasetConfig) -> pd.DataFrame:
    """Fill is_closed / is_won from the stage where the export does not carry them."""
    if "stage" not in opp.columns:
        return opp
    won = _isin(opp["stage"], config.won_stages)
    lost = _isin(opp["stage"], config.lost_stages)
    if "is_won" not in opp.columns:
        opp["is_won"] = won.astype("boolean")
    else:
        opp["is_won"] = opp["is_won"].fillna(won).astype("boolean")
    if "is_closed" not in opp.columns:
        opp["is_closed"] = (won | lost).astype("boolean")
    else:
        opp["is_closed"] = opp["is_closed"].fillna(won | lost).astype("boolean")
    return opp


def load(
    path: str | Path, tables: list[str] | None = None, strict: bool = True, since=None, on_typed=None
) -> Dataset:
    """Load and validate the dataset folder at ``path``.

    ``tables`` limits loading to those tables. ``opportunities`` is always read and checked when the
    load reads the files, but it is kept in ``Dataset.tables`` only when ``tables`` names it (or is
    None): a report that measures the opportunities where they live leaves them out (its ``Dataset``
    still lists the table in ``files``). A table of a database is not read at all when left out; the
    rules tying it to the loaded tables then run where it is loaded (the report run's check). With ``strict``
    (the default) any error raises ``DataValidationError``; otherwise errors are returned as warnings.
    ``since`` keeps only the rows a report from that date on needs, filtered in the database where the
    tables live in one (see ``helpers.data.sources``). Loads from files are cached as typed Arrow files outside
    the folder, keyed by the files' sha256 (``engine.load_tables`` reads named tables of a dataset of Parquet
    files from the metric engine's typed DuckDB file instead).

    ``on_typed``, when given, is called with the typed tables (table -> frame, as the load will return
    them) once every file is read, before the cross-table rules run; only when the load reads the files
    (not on a cache hit). The metric engine starts writing its DuckDB file from them
    (``engine.typed_duckdb``) and keeps it only if the load passes.
    """
    folder = Path(path)
    if not folder.is_dir():
        raise FileNotFoundError(
            f"{folder}: no such dataset folder (expected a folder with dataset.yml and opportunities.csv)"
        )
    config = load_config(folder)
    all_files = find_table_files(folder, config)
    files = all_files
    keep = None if tables is None or "opportunities" in tables else set(tables)  # None: keep every table read
    if tables is not None:
        files = {k: v for k, v in all_files.items() if k in set(tables) | {"opportunities"}}
        # a cached full load (e.g. built when the report run validated the dataset) serves any subset
        full = sources.TableCache.open(folder, all_files, None, strict, since) if files != all_files else None
        if full is not None and (hit := full.get(only=set(files) if keep is None else keep)) is not None:
            frames, warnings = hit
            names = {Path(str(v)).name for v in files.values()}
            warnings = [w for w in warnings if w.file in names or w.file == str(folder)]
            return Dataset(folder, config, sources.window_frames(frames, since, config), files, warnings)
    problems: list[Problem] = []
    if "opportunities" not in files:
        raise DataValidationError(
            [
                Problem(
                    str(folder),
                    None,
                    None,
                    None,
                    "expected an opportunities table (opportunities.csv, .parquet or .xlsx)",
                )
            ],
            folder,
        )
    # keyed by every table's source (a subset's entry shares the data key, and so the folder, of the whole
    # dataset's entries and typed file, which writing it would otherwise remove as stale)
    cache = sources.TableCache.open(folder, all_files, tables, strict, since)
    if cache is not None and (hit := cache.get(only=keep)) is not None:
        frames, warnings = hit
        return Dataset(
            folder,
            config,
            sources.window_frames(frames, since, config),
            {k: v for k, v in files.items() if k in frames or k == "opportunities"},
            warnings,
        )
    read = files
    if keep is not None and isinstance(files["opportunities"], sources.DbTable):
        read = {k: v for k, v in files.items() if k != "opportunities"}  # measured where it lives
    reader = sources.TableReader(read, config, since)
    reader.read_ahead(read)
    typed: dict[str, pd.DataFrame] = {}
    names: dict[str, str] = {}
    offsets: dict[str, int | None] = {}
    sizes = {t: f.stat().st_size if isinstance(f, Path) and f.is_file() else 0 for t, f in files.items()}
    bar = progress(
        total=sum(sizes.values()) or None,
        unit="B",
        unit_scale=True,
        desc=f"loading {folder.name}" + (" (building the cache)" if cache is not None else ""),
    )
    for tname, fpath in read.items():
        bar.set_postfix_str(tname, refresh=False)
        if not fpath.exists():
            problems.append(
                Problem(
                    str(fpath), None, None, None, f"file for table {tname} named in dataset.yml is missing"
                )
            )
            continue
        fname = fpath.name
        off = 1 if fpath.suffix.lower() in (".csv", ".xlsx") else None
        try:
            raw = reader.read(tname)
        except Exception as exc:  # noqa: BLE001 - report any unreadable file as a problem
            problems.append(Problem(fname, None, None, None, f"could not read the file: {exc}"))
            continue
        if raw.shape == (0, 0) and not isinstance(fpath, sources.DbTable):
            # a 0-byte (or blank) file: like a header-only one, no rows — an error only for opportunities
            severity = "error" if TABLES[tname].required else "warning"
            problems.append(Problem(fname, None, None, None, "is empty (no header, no rows)", severity, off))
            continue
        names[tname], offsets[tname] = fname, off
        typed[tname] = normalize_stages(
            coerce_table(raw, TABLES[tname], fname, off, problems, config), config, fname, off, problems
        )
        problems += unknown_columns(typed[tname].columns, TABLES[tname], fname, off)
        bar.update(sizes[tname])
    reader.close()
    bar.set_postfix_str("checking the rules", refresh=False)
    if "opportunities" in typed:
        typed["opportunities"] = derive_status(typed["opportunities"], config)
    if on_typed is not None:
        on_typed(dict(typed))
    as_of = pd.Timestamp(config.as_of) if config.as_of else None
    if as_of is None and "opportunities" in typed:
        as_of = infer_as_of(typed["opportunities"])
    errors, warns = check_rules(typed, names, offsets, config, as_of)
    warnings = [p for p in problems if p.severity == "warning"] + warns
    errors = [p for p in problems if p.severity == "error"] + errors
    if errors and strict:
        bar.close()
        raise DataValidationError(errors, folder, reading_hints(warnings, errors))
    if not strict:
        warnings = errors + warnings
    typed = {k: v.reset_index(drop=True) for k, v in typed.items()}
    if cache is not None:
        bar.set_postfix_str("writing the cache")
        cache.put(typed, warnings)
    bar.close()
    typed = sources.window_frames(typed, since, config)
    listed = {k: v for k, v in files.items() if k in typed or k == "opportunities"}
    if keep is not None:
        typed = {k: v for k, v in typed.items() if k in keep}
    return Dataset(folder, config, typed, listed, warnings)
