"""Validation and typing as DuckDB queries over a dataset of Parquet files: no pandas frame is made.

``check(folder)`` runs the data contract's rules — the same rules ``pgcheck`` runs on PostgreSQL, written
once there (``pgcheck._Check.rules``) — as DuckDB queries over ``read_parquet`` of each table, and gives the
``Checked`` that ``dataset.load`` gives for the same files: every problem names the file, the row (the
file's data row, 1-based, as ``load`` numbers a Parquet file: ``file_row_number + 1``), the column, the
value and what was expected, with load's severity and in load's order (``_Rule.order``). Only counts per
rule and the rows that break one come back to Python.

``typed_select(folder, table)`` is the SQL of a table typed as ``load`` types it (column names, order and
kinds as its frame has them, blank rows left out, text trimmed, stage spellings read as dataset.yml's,
``is_won``/``is_closed`` from the stage, probabilities on 0–1): the metric engine builds its typed DuckDB
file from it with ``create table … as select`` (``engine.typed_duckdb``).

**How a Parquet column is typed** (what ``read_raw`` + ``coerce_table`` do with the frame pyarrow makes):
text columns (VARCHAR) trimmed of Python's whitespace, empty being no value; ``date`` columns of type DATE
or TIMESTAMP (a time zone read in UTC) as the day; ``datetime`` as the timestamp; numbers of a float or
integer type as DOUBLE, NaN and ±infinity being no value (infinity is an error); flags of type BOOLEAN.
A row is blank when every text cell is blank and every other cell is null (or NaN).

**When it does not apply** (``None``; the caller loads the dataset as before): a table that is not a
Parquet file; a contract column whose Parquet type needs the value parser (text holding dates, numbers
or flags; ids of a number type); a column outside the contract of a type whose pandas round trip changes
it (other than text, double or boolean); two headers of one name; a column named ``file_row_number``.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import pandas as pd

from helpers.data import pgcheck
from helpers.data.coerce import mixed_scale
from helpers.data.config import DatasetConfig, load_config
from helpers.data.dataset import (
    Checked,
    DataValidationError,
    Problem,
    contract_headers,
    find_table_files,
    no_data_rows,
)
from helpers.data.pgcheck import WHITESPACE, _Rule, _Table, _value, lit, q
from helpers.data.schema import TABLES

ROW = "file_row_number"  # read_parquet's row number (0-based); load's row is this + 1
DATES = {"DATE", "TIMESTAMP", "TIMESTAMP_S", "TIMESTAMP_MS", "TIMESTAMP WITH TIME ZONE"}
FLOATS = {"DOUBLE", "FLOAT"}
NUMBERS = FLOATS | {
    "BIGINT",
    "INTEGER",
    "SMALLINT",
    "TINYINT",
    "UBIGINT",
    "UINTEGER",
    "USMALLINT",
    "UTINYINT",
}
OTHER = {"VARCHAR", "DOUBLE", "BOOLEAN"}  # columns outside the contract kept as they are
BUILD_MEMORY = "2GB"  # DuckDB's memory for the check and the build (REVOPS_BUILD_MEMORY); the rest spills


def _typed(kind: str, typ: str) -> bool:
    """Whether a Parquet column of DuckDB type ``typ`` reads as contract ``kind`` without the value parser."""
    if kind in ("id", "str"):
        return typ == "VARCHAR"
    if kind in ("date", "datetime"):
        return typ in DATES
    if kind in ("money", "number", "prob"):
        return typ in NUMBERS
    return typ == "BOOLEAN"


class _Parquet:
    """A Parquet file as a table source of the check (``_Table.src``)."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self.name = self.path.name

    def select(self) -> str:
        return f"select * from read_parquet({lit(str(self.path))}, file_row_number = true)"


def applies(files: dict) -> bool:
    """Whether the dataset's tables are all Parquet files (the check may still decline a column type)."""
    return "opportunities" in files and all(
        isinstance(p, Path) and p.suffix.lower() == ".parquet" and p.is_file() for p in files.values()
    )


def connect(database: str = ":memory:"):
    """A DuckDB connection for the check and the build: at most ``REVOPS_BUILD_MEMORY`` (default
    ``BUILD_MEMORY``), spilling to a temporary folder of its own (removed by ``close``)."""
    import duckdb

    con = duckdb.connect(database)
    spill = tempfile.mkdtemp(prefix="revops-duckcheck-")
    limit = os.environ.get("REVOPS_BUILD_MEMORY") or BUILD_MEMORY
    con.execute("set memory_limit = " + lit(limit))
    con.execute("set temp_directory = " + lit(spill))
    con.execute("set preserve_insertion_order = true")
    return con, spill


def close(con, spill: str) -> None:
    con.close()
    shutil.rmtree(spill, ignore_errors=True)


def describe(con, folder: Path, config: DatasetConfig | None = None) -> dict[str, _Table] | None:
    """The dataset's tables as the check and the build see them, or None when the check does not apply."""
    config = config or load_config(folder)
    files = find_table_files(folder, config)
    if not applies(files):
        return None
    tables = {}
    for tname, path in files.items():
        src = _Parquet(path)
        desc = con.execute(f"describe {src.select()}").fetchall()
        desc = [(n, typ) for n, typ, *_ in desc if n != ROW]
        if any(n == ROW for n, _ in desc) or len(desc) != len(
            con.execute(f"describe select * from read_parquet({lit(str(path))})").fetchall()
        ):
            return None  # the file has a column of that name
        headers = [str(n).strip() for n, _ in desc]
        if any(not h for h in headers) or len({h.lower() for h in headers}) < len(headers):
            return None
        t = _Table(tname, src, src.name, dict(zip(headers, desc, strict=True)))
        rename = contract_headers(headers, t.table)
        t.names = {rename.get(h, h): h for h in headers if rename.get(h, h) in t.table.column_names}
        for h, (_, typ) in t.raw.items():
            name = rename.get(h, h)
            spec = t.table.column(name) if name in t.names else None
            if (spec is not None and not _typed(spec.kind, typ)) or (spec is None and typ not in OTHER):
                return None
        tables[tname] = t
    return tables


def _text(col: str) -> str:
    """SQL: text trimmed of Python's whitespace, empty being no value (``coerce.to_text``). A value whose
    first and last characters lie in 33–132 (no whitespace there) is kept as it is: DuckDB's ``trim`` with
    a list of characters takes 9 s for 10M ids, this test 1 s."""
    plain = f"unicode({col}) between 33 and 132 and unicode(right({col}, 1)) between 33 and 132"
    return f"case when {plain} then {col} else nullif(trim({col}, {lit(WHITESPACE)}), '') end"


def _value_sql(col: str, kind: str, typ: str) -> str:
    """SQL of one Parquet column typed as contract ``kind`` (probabilities not yet scaled)."""
    if kind in ("id", "str"):
        return _text(col)
    if kind in ("date", "datetime"):
        ts = f"timezone('UTC', {col})" if typ == "TIMESTAMP WITH TIME ZONE" else col
        return f"cast({ts} as date)" if kind == "date" else f"cast({ts} as timestamp)"
    if kind in ("money", "number", "prob"):
        f = f"cast({col} as double)"
        return f"case when isnan({f}) or isinf({f}) then null else {f} end"
    return col


def _nonblank(t: _Table) -> str:
    """SQL: the row has a value in some column (``coerce_table`` drops the others)."""
    out = []
    for dbcol, typ in t.raw.values():
        c = f"s.{q(dbcol)}"
        out.append(
            f"{_text(c)} is not null"
            if typ == "VARCHAR"
            else f"not isnan({c})"
            if typ in FLOATS
            else f"{c} is not null"
        )
    return f"coalesce({' or '.join(out)}, false)" if out else "false"


def _stage(expr: str, stage_map: dict[str, str]) -> str:
    if not stage_map:
        return expr
    cases = " ".join(f"when {lit(k)} then {lit(v)}" for k, v in sorted(stage_map.items()))
    return f"case {expr} {cases} else {expr} end"


class _DuckCheck(pgcheck._Check):
    """The rules over Parquet files in DuckDB: rows named by their file row, every row listed (as load)."""

    dates_can_fail = False  # a Parquet date or timestamp always reads
    on_server = False

    @staticmethod
    def infinite(raw: str) -> str:
        return f"isinf(cast({raw} as double))"

    def __init__(self, *args):
        super().__init__(*args)
        self.stage_maps: dict[str, dict[str, str]] = {}
        self.found: list[tuple[tuple, int, Problem]] = []  # (load's order, row, problem)

    def one(self, sql: str):
        return self.conn.execute(sql).fetchone()

    def all(self, sql: str):
        return self.conn.execute(sql).fetchall()

    def add(self, p: Problem, order: tuple = ()) -> None:
        self.found.append((order, -1 if p.row is None else p.row, p))

    def finish(self) -> None:
        """The problems in ``load``'s order: by ``order`` (table, phase, rule), then row."""
        for _, _, p in sorted(self.found, key=lambda f: (f[0], f[1])):
            (self.errors if p.severity == "error" else self.warnings).append(p)

    def typed(self, t: _Table, stage_map: dict[str, str]) -> str:
        self.stage_maps[t.name] = stage_map
        cols = [f's.{ROW} + 1 as "_row"']
        selected = set(self._columns(t))
        for name, header in t.names.items():
            if name not in selected:
                continue
            dbcol, typ = t.raw[header]
            kind = t.table.column(name).kind
            expr = _value_sql(f"s.{q(dbcol)}", kind, typ)
            cols.append(f"{_stage(expr, stage_map) if name == 'stage' else expr} as {q(name)}")
            if kind not in ("id", "str"):
                cols.append(f"s.{q(dbcol)} as {q(name + ':raw')}")
        sql = f"select {', '.join(cols)} from ({t.src.select()}) as s where {_nonblank(t)}"
        return self.derive_status(t, sql, ["_row", *self._columns(t)])

    def run_table(self, t: _Table, rules: list[_Rule]) -> None:
        fname, table = t.fname, t.table
        ti = list(TABLES).index(t.name)
        aggs = ["count(*)"] + [f"count(*) filter (where {r.where})" for r in rules]
        probs = [c for c in table.columns if c.name in t.names and c.kind == "prob"]
        for c in probs:
            aggs += [f"max({q(c.name)})", f"count(*) filter (where {q(c.name)} > 0 and {q(c.name)} < 1)"]
        got = list(self.one(f"select {', '.join(aggs)} from ({t.checked}) as b"))
        t.rows = got.pop(0)
        counts = [got.pop(0) for _ in rules]
        for c in probs:  # coerce.probability_scale's note
            top, below_one = got.pop(0), got.pop(0)
            if top is not None and top > 1 and below_one:
                self.add(
                    Problem(
                        fname,
                        None,
                        c.name,
                        None,
                        mixed_scale(below_one),
                        "warning",
                        None,
                    ),
                    (0, ti, 2, table.column_names.index(c.name), 1),
                )
        if t.rows == 0:
            self.add(no_data_rows(fname, table), (0, ti, 1))
        key = table.key if table.key and table.key in t.columns else None
        if key and self.one(
            f"select 1 from ({t.base}) as b where {q(key)} is not null group by {q(key)} having count(*) > 1 limit 1"
        ):
            rows = self.all(
                f"select _row, k, f from (select _row, {q(key)} as k, min(_row) over (partition by {q(key)}) as f, "
                f"count(*) over (partition by {q(key)}) as n from ({t.base}) as b where {q(key)} is not null) "
                "where n > 1 and _row <> f order by _row"
            )
            for row, value, first in rows:
                self.add(
                    Problem(
                        fname,
                        row,
                        key,
                        value,
                        f"expected a unique id; row {first} has the same id",
                        "error",
                        None,
                    ),
                    (1, ti, 0),
                )
        for rule, n in zip(rules, counts, strict=True):
            if n:
                self.problems(t, rule, n, [])

    def problems(self, t: _Table, rule: _Rule, n: int, keys: list[str]) -> None:
        picks = ["b._row", rule.value or "null"] + ([rule.ref[1]] if rule.ref else [])
        rows = self.all(
            f"select {', '.join(picks)} from ({t.checked}) as b where {rule.where} order by b._row"
        )
        text = rule.expected if isinstance(rule.expected, str) else None
        for row in rows:
            value = _value(row[1], rule.as_date)
            ref = (rule.ref[0], _value(row[2], rule.as_date)) if rule.ref else None
            expected = text if text is not None else rule.expected(value)
            self.add(
                Problem(t.fname, row[0], rule.column, value, expected, rule.severity, None, ref=ref),
                rule.order,
            )

    def select(self, t: _Table) -> str:
        """SQL of ``t``'s rows typed as ``load`` types them: every column of the file, renamed to the
        contract's name, in the file's order (``is_won``/``is_closed`` after them when derived), blank rows
        left out, in the file's row order; columns outside the contract as they are; probabilities on 0–1."""
        rename = {h: n for n, h in t.names.items()}
        cols, names = [], []
        for header, (dbcol, typ) in t.raw.items():
            name = rename.get(header, header)
            c = f"s.{q(dbcol)}"
            spec = t.table.column(name) if header in rename else None
            expr = c if spec is None else _value_sql(c, spec.kind, typ)
            if name == "stage" and spec is not None:
                expr = _stage(expr, self.stage_maps.get(t.name, {}))
            if spec is not None and spec.kind == "prob":  # coerce.probability_scale
                (top,) = self.one(f"select max({expr}) from ({t.src.select()}) as s")
                if top is not None and top > 1:
                    expr = f"({expr}) / 100.0"
            cols.append(f"{expr} as {q(name)}")
            names.append(name)
        sql = f"select {', '.join(cols)} from ({t.src.select()}) as s where {_nonblank(t)}"
        # the file's row order: DuckDB keeps the order of a scan through filters and projections
        # (preserve_insertion_order, ``connect``); an ORDER BY would sort 10M activities again (12 → 4 s)
        return self.derive_status(t, sql, names)


def run(folder: Path, strict: bool = True, con=None) -> tuple[Checked, dict[str, str]] | None:
    """``check`` and, from the same reading of the files, ``{table: SQL of its rows typed as load types
    them}`` (``_DuckCheck.select``); None when the check does not apply."""
    folder = Path(folder)
    config = load_config(folder)
    files = find_table_files(folder, config)
    if not applies(files):
        return None
    own = con is None
    if own:
        con, spill = connect()
    try:
        tables = describe(con, folder, config)
        if tables is None:
            return None
        checker = _DuckCheck(con, folder, config, files, tables)
        checked = checker.run(strict)
        return checked, {t: checker.select(tables[t]) for t in tables}
    finally:
        if own:
            close(con, spill)


def check(folder: Path, strict: bool = True) -> Checked | None:
    """Validate the Parquet dataset at ``folder`` by DuckDB queries (see the module docstring), or None when
    it does not apply. ``DataValidationError`` on errors; with ``strict`` off, errors come back among the
    warnings (as ``dataset.load(strict=False)``)."""
    done = run(folder, strict)
    return None if done is None else done[0]
