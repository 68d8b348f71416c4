"""The fast path of ``dataset.read_raw`` for CSV files: DuckDB's ``read_csv`` reads the file, and each
contract column whose every value has the strict form of its kind is typed in DuckDB.

``helpers.data.coerce`` stays the one definition of how a value reads. This module only recognises the
values whose reading there is certain and cheap, and hands them over already typed; ``coerce_table`` then
takes them through the typed branches of the same parsers (``to_number`` of floats, ``to_date`` of
datetimes, ``to_bool`` of booleans), which apply the column-wide rules (probability scale, finite
numbers, normalising dates). Every other column comes back as text, exactly as pandas reads it, and goes
through the parsers in Python. The strict forms, per contract kind:

- ``date``/``datetime``: ``2026-10-31``, ``2026-10-31 14:05[:09]`` or with ``T`` (no zone, no fraction),
  a real calendar day;
- ``money``: ``1234`` or ``1234.5`` (no sign: a negative amount is an error whose message shows the text
  as written); ``number``: the same with an optional ``-``; ``prob``: as ``money`` with every value
  within 0–100 (a value out of range is an error showing the text). A column whose first values all look
  like ``1.234`` goes to Python, which warns about it;
- ``bool``: the words ``coerce.TRUE_WORDS`` / ``FALSE_WORDS`` in any case, nothing around them;
- ``id``/``str``: any text without leading or trailing whitespace (``str.strip`` would change it).

Blank cells are missing in every kind. ``read_typed`` returns None, and the caller reads the file with
pandas, whenever DuckDB might not read it exactly as pandas does: not UTF-8, a header that is blank,
repeated or padded, a row count different from the number of lines (blank lines, which pandas keeps as
numbered rows, or line breaks inside quoted fields), a cell that starts with a space or tab (pandas skips
those), or any error from DuckDB's strict reader (stray quotes, ragged rows).

``REVOPS_FAST_CSV=0`` turns the fast path off (the equivalence tests compare both).
"""

from __future__ import annotations

import os
import re
import sys
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from helpers.data.coerce import FALSE_WORDS, TRUE_WORDS
from helpers.data.schema import Table

# the characters Python's str.strip() removes (coerce.to_text strips with it)
_PY_SPACE = "".join(chr(c) for c in range(sys.maxunicode + 1) if chr(c).isspace())
_SPACE_RANGES = []  # _PY_SPACE as (first, last) code point ranges
for _c in map(ord, _PY_SPACE):
    if _SPACE_RANGES and _SPACE_RANGES[-1][1] == _c - 1:
        _SPACE_RANGES[-1] = (_SPACE_RANGES[-1][0], _c)
    else:
        _SPACE_RANGES.append((_c, _c))
_DAY = r"[1-9]\d{3}-(0[1-9]|1[0-2])-(0[1-9]|[12]\d|3[01])"
_FORMS = {
    "date": _DAY + r"([ T]([01]\d|2[0-3]):[0-5]\d(:[0-5]\d)?)?",
    "money": r"\d{1,15}(\.\d{1,15})?",
    "prob": r"\d{1,15}(\.\d{1,15})?",
    "number": r"-?\d{1,15}(\.\d{1,15})?",
}
_FORMS["datetime"] = _FORMS["date"]
_DOTTED = r"-?\d{1,3}\.\d{3}"  # coerce._plain_numbers: a column all like 1.234 is read in Python
_EXTRA = "\x01revops extra column"
_NO_NULL = "\x01\x02revops: no cell reads as NULL\x02\x01"
_HEAD = 1000  # how many first values _plain_numbers looks at for that


def enabled() -> bool:
    return os.environ.get("REVOPS_FAST_CSV", "1").lower() not in ("0", "false", "no", "off")


def _lit(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _words(words) -> str:
    return "(" + ", ".join(_lit(w) for w in sorted(words)) + ")"


def _line_rows(path: Path) -> int:
    """Data rows the file has if every line is one row: lines after the header."""
    size = path.stat().st_size
    if not size:
        return -1
    n, last = 0, b""
    with open(path, "rb") as fh:
        while block := fh.read(1 << 24):
            n += block.count(b"\n")
            last = block[-1:]
    return n - 1 + (last != b"\n")


def _typed_sql(kind: str, v: str) -> str:
    """The DuckDB expression that types a strict-form cell ``v`` (text) as ``kind``."""
    if kind in ("date", "datetime"):
        ts = f"try_cast({v} as timestamp)"
        return f"date_trunc('day', {ts})" if kind == "date" else ts
    if kind in ("money", "number", "prob"):
        return f"try_cast({v} as double)"
    if kind == "bool":
        return f"case when lower({v}) in {_words(TRUE_WORDS)} then true when lower({v}) in {_words(FALSE_WORDS)} then false end"
    return f"nullif({v}, '')"


def _strict_sql(kind: str, v: str) -> str:
    """True when cell ``v`` (not blank) has the strict form of ``kind``. For dates and numbers only its
    pattern: ``_typed_sql`` is NULL for a cell of the pattern that is no real day (or no finite number),
    which is then of no strict form either (one cast a cell, not two)."""
    if kind in _FORMS:
        return f"regexp_full_match({v}, {_lit(_FORMS[kind])})"
    if kind == "bool":
        return f"lower({v}) in {_words(TRUE_WORDS | FALSE_WORDS)}"
    # the first character by comparing the text with one-character strings (UTF-8 sorts by code point):
    # from '!' up to U+007F none is a space, and only text starting above that is compared with the
    # ranges of the other spaces (a CASE evaluates its ELSE on those rows alone; an OR of the ranges costs
    # 0.4 s per 4.7M cells); the last character with right(): both much cheaper than a regular expression
    first = " or ".join(
        f"({v} >= chr({lo}) and {v} < chr({hi + 1}))" if hi > lo else f"starts_with({v}, chr({lo}))"
        for lo, hi in _SPACE_RANGES
        if lo > 32
    )
    return (
        f"{v} >= '!' and case when {v} < chr(128) then true else not ({first}) end"
        f" and not contains({_lit(_PY_SPACE)}, right({v}, 1))"
    )


def read_typed(
    path: Path, table: Table, delim: str, header: list[str], encoding: str = "utf-8-sig", notes=()
) -> pd.DataFrame | None:
    """The CSV at ``path`` as ``read_raw`` reads it, its strict-form contract columns already typed (see
    the module docstring); None when the file needs the pandas reader. ``encoding``, ``delim`` and
    ``header`` are ``dataset._sniff_csv``'s, ``notes`` what ``read_raw`` noted about the header."""
    import duckdb

    if encoding != "utf-8-sig":
        return _fallback(path, f"sniffed as {encoding}")
    if notes:
        return _fallback(path, "the header has a problem")
    if not header or any(not h or h != h.strip() for h in header):
        return _fallback(path, "a header cell is blank or padded")
    if len({h.lower() for h in header}) != len(header) or _EXTRA in header:
        return _fallback(path, "a header repeats")
    kinds = {h: (spec.kind if (spec := table.column(h)) is not None else None) for h in header}
    # one column more than the header, empty cells read as '' (no cell is _NO_NULL), short rows padded
    # with NULL: a row with a field past the header (DuckDB accepts ``a,b,`` under a two-column header;
    # pandas sees three fields) shows in the extra column as not NULL
    columns = "{" + ", ".join(f"{_lit(h)}: 'VARCHAR'" for h in [*header, _EXTRA]) + "}"
    source = (
        f"read_csv({_lit(str(path))}, columns = {columns}, header = true, auto_detect = false,"
        f" delim = {_lit(delim)}, quote = '\"', escape = '\"', strict_mode = true, null_padding = true,"
        f" encoding = 'utf-8', nullstr = {_lit(_NO_NULL)})"
    )
    # one pass: per contract column its typed value where the cell has the strict form (text columns:
    # the text), a flag for the cells that are not blank and not of that form, and for numbers a flag
    # for the cells like 1.234; the other columns as text
    inner, select = [], []
    for i, h in enumerate(header):
        v, kind = _ident(h), kinds[h]
        if kind is None or kind in ("id", "str"):
            select.append(f"nullif({v}, '') as c{i}")
            if kind is not None:
                select.append(f"coalesce({v} <> '' and not ({_strict_sql(kind, v)}), false) as odd{i}")
        else:  # typed once (inner query); not of the strict form where typed is NULL but the cell is not blank
            inner.append(f"case when {_strict_sql(kind, v)} then {_typed_sql(kind, v)} end as c{i}")
            select.append(f"c{i}, coalesce({v} <> '' and c{i} is null, false) as odd{i}")
        if kind in ("money", "number", "prob"):
            # 1.234 has 5 to 8 characters: the regular expression only runs on cells of that length
            dotted = f"case when strlen({v}) between 5 and 8 then regexp_full_match({v}, {_lit(_DOTTED)}) else false end"
            select.append(f"coalesce({dotted}, false) as dot{i}")
    select.append(f"{_ident(_EXTRA)} is not null as extra")
    query = f"select {', '.join(select)} from (select *{''.join(', ' + e for e in inner)} from {source})"
    con = duckdb.connect()
    try:
        con.execute("set enable_progress_bar = false")
        got = _in_file_order(con, query)
        n = got.num_rows
        if n == 0 or n != _line_rows(path):
            return _fallback(
                path, f"{n} rows read but the file has {_line_rows(path)} lines after the header"
            )
        if pc.any(got["extra"]).as_py():
            return _fallback(path, "a line has more fields than the header")
        cols, fast, reread = {}, {}, []
        for i, h in enumerate(header):
            kind, col = kinds[h], got[f"c{i}"]
            odd = kind is not None and pc.any(got[f"odd{i}"]).as_py()
            if kind in ("money", "number", "prob") and not odd:
                lo_hi = pc.min_max(col).as_py()
                if (
                    kind == "prob"
                    and lo_hi["min"] is not None
                    and not 0 <= lo_hi["min"] <= lo_hi["max"] <= 100
                ):
                    odd = True  # out of range: the error shows the text
                elif _all_dotted_head(got[f"dot{i}"], col):
                    odd = True  # coerce warns that every value looks like 1.234
            if kind is not None and not odd:
                fast[h] = kind
                cols[h] = col
            elif kind is None or kind in ("id", "str"):
                cols[h] = col  # the text as read
            else:
                reread.append(h)
        if reread:  # messy non-text columns: their text, for coerce to read
            texts = ", ".join(f"nullif({_ident(h)}, '')" for h in reread)
            again = _in_file_order(con, f"select {texts} from {source}")
            for h, col in zip(reread, again.columns, strict=True):
                cols[h] = col
    except duckdb.Error as exc:
        return _fallback(path, f"DuckDB: {str(exc).splitlines()[0]}")
    finally:
        con.close()
    # pandas skips leading spaces (skipinitialspace), so the columns left as text must have none (a
    # column of the strict form has none)
    for h in header:
        if h not in fast and pc.any(pc.match_substring_regex(cols[h], "^[ \\t]")).as_py():
            return _fallback(path, "a cell starts with a space or tab")
    out = {}
    for h in header:
        col = cols[h].combine_chunks() if isinstance(cols[h], pa.ChunkedArray) else cols[h]
        if pa.types.is_boolean(col.type):
            values = col.fill_null(False).to_numpy(zero_copy_only=False)
            s = pd.Series(pd.arrays.BooleanArray(values, col.is_null().to_numpy(zero_copy_only=False)))
        elif pa.types.is_timestamp(col.type):
            s = pd.Series(col.cast(pa.timestamp("us")).to_pandas()).astype("datetime64[us]")
        elif pa.types.is_floating(col.type):
            s = pd.Series(col.to_numpy(zero_copy_only=False), dtype="float64")
        else:
            s = pd.Series(col.to_pandas()).astype("str")
        out[h] = s
    df = pd.DataFrame(out)
    df.attrs["read_notes"] = []
    # text columns already as coerce.to_text leaves them (stripped, blank as missing)
    df.attrs["clean_text"] = [h for h, kind in fast.items() if kind in ("id", "str")]
    return df


def _in_file_order(con, query: str):
    """The rows of ``query`` (over read_csv) as an Arrow table, in the file's order. One thread: with two,
    DuckDB 2.0.1 returned the typed query's rows out of file order at 1M rows, in a result and in a
    table created from it alike (preserve_insertion_order on), and read_csv gives no line number to sort by."""
    con.execute("set threads = 1")
    return con.sql(query).to_arrow_table()


def quotes_read_alike(path: Path, delim: str, rows: int) -> bool:
    """True when Python's strict csv reader (``dataset.stray_quote``'s first pass) reads the file without
    an error, one record per line, over ``rows`` data lines and the header — so ``stray_quote`` finds no
    stray quote — shown without that reader, which makes a Python string of every cell (most of the
    fast path's time in Python at 1M opportunities). False says nothing: ``stray_quote`` then reads it.

    Every line (DuckDB reads them as lines, two threads: only counts come back) must be a run of fields
    that the reader takes one way only: a quoted field ``"…"`` (inner quotes doubled) that ends at a
    delimiter or the line's end, or an unquoted field that does not start with a quote (a quote inside
    is kept as it is). No carriage return but in a CRLF line end (the reader also ends lines at a lone
    one), no line longer than the reader's field size limit; the header line is checked as the reader
    sees it, without a byte-order mark."""
    import csv

    import duckdb

    cr = crlf = 0
    with open(path, "rb") as fh:
        last = b""
        while block := fh.read(1 << 24):
            cr += block.count(b"\r")
            crlf += block.count(b"\r\n") + (last == b"\r" and block[:1] == b"\n")
            last = block[-1:]
    if cr != crlf:
        return False
    d = re.escape(delim)
    field = f'(?:"(?:[^"]|"")*"|[^"{d}\\r\\n][^{d}\\r\\n]*|)'
    line = _lit(f"{field}(?:{d}{field})*\\r?")
    ok = f"regexp_full_match(line, {line})"
    query = (
        f"select count(*), count(*) filter (where not case when starts_with(line, chr(65279)) then"
        f" {ok} and regexp_full_match(substr(line, 2), {line}) else {ok} end), max(strlen(line))"
        f" from read_csv({_lit(str(path))}, columns = {{'line': 'VARCHAR'}}, header = false,"
        f" auto_detect = false, delim = '\x1e', quote = '', escape = '', strict_mode = true,"
        f" encoding = 'utf-8', nullstr = {_lit(_NO_NULL)})"
    )
    con = duckdb.connect()
    try:
        con.execute("set enable_progress_bar = false")
        n, bad, longest = con.execute(query).fetchone()
    except duckdb.Error:  # a line with the separator used to read lines, bytes that are not UTF-8, …
        return False
    finally:
        con.close()
    return n == rows + 1 and bad == 0 and (longest or 0) <= csv.field_size_limit()


FALLBACKS: dict[str, str] = {}  # file -> why the last read of it went to pandas (for tests and profiling)


def _fallback(path: Path, why: str) -> None:
    FALLBACKS[str(path)] = why
    return None


def _all_dotted_head(dotted, values) -> bool:
    """Whether ``coerce._plain_numbers`` would send the column to its careful path: its first 1000
    non-blank values (at least 3) all look like 1.234."""
    if not pc.any(dotted).as_py():
        return False
    head = pc.filter(dotted, pc.is_valid(values))[:_HEAD]
    return len(head) >= 3 and pc.all(head).as_py()
