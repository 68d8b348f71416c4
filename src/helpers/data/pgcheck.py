"""Validation as queries on PostgreSQL: the data contract's rules run where the tables live.

``check(folder)`` validates a dataset whose tables all live in one PostgreSQL database without reading
their rows: each rule is a predicate over the table as ``dataset.load`` would type it, counted in one
aggregate query per table; only those counts and, for a rule that is broken, the first ``FETCH`` rows
that break it (ordered by the table's key columns, ``KEYS``) come back. The problems say the same as
``load``'s for the same rows — same column, value, expectation and severity — except for where: a
server table has no file rows, so a row is named by its key columns (``Problem.key``), and the rows
beyond those fetched are one problem that counts them (``Problem.count``). A duplicated id is one
problem per id ("3 rows have this id") instead of one per later row naming the first.

**How a table is typed on the server** (the same values ``load`` gets by copying the table out as CSV and
parsing it): every contract column is read as its text, trimmed of the whitespace Python's
``str.strip`` removes, empty text being no value; ``date``/``datetime`` columns of type date, timestamp
or timestamptz (in UTC), a value outside the years 1000–9999 or infinite being unparseable; number
columns of a numeric type, ``NaN`` being no value and ±Infinity unparseable; boolean columns of type
boolean. Rows blank in every column are left out, as ``load`` drops them. Stage spellings that differ
from dataset.yml's only by case and spaces are read as that stage (one warning per spelling), and
opportunities' ``is_closed``/``is_won`` are filled from the stage where empty.

**When it does not apply** ``check`` returns None and the caller loads the dataset (``validation.validate``):
a table that is not on PostgreSQL, tables on several databases, a query that fails, a result with two
columns of one name, or a contract column whose database type needs the value parser (text holding
dates, numbers or flags: ``coerce``'s day/month order, decimal commas, percentages, Excel serials and
yes/no words cannot be said in SQL exactly, so those tables are read and parsed as before).

Rules that cannot apply to typed server columns, so no query is run for them: a value that does not
parse as a date, number or flag (other than the out-of-range years and infinities above); mixed number
formats, decimal commas, percentages, currency signs; day/month order and Excel serials; a year alone;
a stray quote, a duplicated header, an undecodable byte (all CSV matters).
"""

from __future__ import annotations

import datetime as dt
import difflib
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from helpers.data import sources
from helpers.data.coerce import mixed_scale
from helpers.data.config import DatasetConfig, load_config
from helpers.data.dataset import (
    MAX_ROWS_SHOWN,
    MISSPELLING,
    MORE_ROWS,
    Checked,
    DataValidationError,
    Problem,
    _closest,
    contract_headers,
    unknown_columns,
    find_table_files,
    no_data_rows,
    reading_hints,
)
from helpers.data.schema import TABLES, Table

FETCH = MAX_ROWS_SHOWN  # rows fetched per broken rule: the most a message shows per rule
# the columns that name a row of a server table in messages (its key, or what identifies a row)
KEYS = {
    "opportunities": ("opportunity_id",),
    "opportunity_history": ("opportunity_id", "changed_at"),
    "activities": ("activity_id",),
    "leads": ("lead_id",),
    "reps": ("rep_id",),
    "quotas": ("rep_id", "period_start"),
    "churn": ("account", "churn_date"),
}
# the characters str.strip() removes (to_text trims with it): a literal without quotes or backslashes
WHITESPACE = "".join(c for c in map(chr, range(0x110000)) if c.isspace())
TEXT_OIDS = {25, 1043, 1042, 19}  # text, varchar, char, name
DATE_OIDS = {1082, 1114, 1184}  # date, timestamp, timestamptz
NUMBER_OIDS = {20, 21, 23, 700, 701, 1700}  # int8, int2, int4, float4, float8, numeric
BOOL_OID = 16
STAGE = '"stage"'
RULE_TEXT = {"stage", "owner", "opportunity_id", "rep_id", "next_step"}  # text columns the rules read
DOTTED = r"^-?[1-9][0-9]{0,2}\.[0-9]{3}$"  # 1.234 and nothing telling the decimal mark (coerce.to_number)


def _typed(kind: str, oid: int) -> bool:
    """Whether a column of database type ``oid`` reads as contract ``kind`` without the value parser."""
    if kind in ("id", "str"):
        return True
    if kind in ("date", "datetime"):
        return oid in DATE_OIDS
    if kind in ("money", "number", "prob"):
        return oid in NUMBER_OIDS
    return oid == BOOL_OID


def q(name: str) -> str:
    return sources.quote_ident(name)


def lit(value) -> str:
    return sources.quote_literal(value)


def _in(expr: str, values) -> str:
    values = list(values)
    return f"coalesce({expr} in ({', '.join(lit(v) for v in values)}), false)" if values else "false"


def _ts(value: pd.Timestamp) -> str:
    return f"timestamp {lit(pd.Timestamp(value).isoformat())}"


@dataclass
class _Rule:
    """One rule over a table's typed rows: ``where`` (SQL over the typed table ``b``) picks the rows that
    break it; ``value`` (SQL) is the value a problem shows, ``ref`` (column, SQL) the cell compared with;
    ``expected`` a text, or a function of the value (a hint that depends on it)."""

    column: str
    expected: object
    where: str
    value: str | None = None
    severity: str = "error"
    ref: tuple[str, str] | None = None
    keyed: bool = True  # False: rows nothing names (no key): one problem counts them
    as_date: bool = False  # the value and the cell compared with shown as dates (close before created)
    rest: str = ""  # the expectation of the rows beyond those fetched, when ``expected`` is a function
    # where ``dataset.load`` lists its problems (``order_key``): a check that names file rows sorts by it
    order: tuple = ()


@dataclass
class _Table:
    name: str
    src: sources.DbTable
    fname: str
    raw: dict[str, tuple[str, int]]  # header as load sees it -> (database column, type oid)
    names: dict[str, str] = field(default_factory=dict)  # contract column -> header
    base: str = ""  # SQL: the typed rows (contract columns by their names, raw text as "<col>:raw")
    columns: set[str] = field(default_factory=set)  # the typed table's columns
    rows: int = 0
    joins: list[str] = field(default_factory=list)  # the tables a reference rule looks up
    flags: list[str] = field(default_factory=list)  # SQL of the columns those joins add

    @property
    def checked(self) -> str:
        """SQL of the typed rows with the reference flags (``_no_opportunity``, ``_no_rep``)."""
        if not self.joins:
            return self.base
        return f"select b.*, {', '.join(self.flags)} from ({self.base}) as b {' '.join(self.joins)}"

    @property
    def table(self) -> Table:
        return TABLES[self.name]


def check(folder: Path, strict: bool = True) -> Checked | None:
    """Validate the dataset at ``folder`` on its PostgreSQL server (see the module docstring), or None when
    the rules cannot all run there (the caller loads it). ``DataValidationError`` on errors; with ``strict``
    off, errors come back among the warnings (as ``dataset.load(strict=False)``)."""
    folder = Path(folder)
    config = load_config(folder)
    files = find_table_files(folder, config)
    if "opportunities" not in files or not all(
        isinstance(s, sources.DbTable) and s.scheme in ("postgresql", "postgres") for s in files.values()
    ):
        return None
    if len({s.connection_key() for s in files.values()}) != 1:
        return None
    reader = sources.TableReader(files, config)
    try:
        try:
            conn = reader.connection("opportunities")
            tables = {t: _describe(conn, t, src) for t, src in files.items()}
        except Exception:  # noqa: BLE001 - load reads the tables and says what is wrong
            return None
        if any(t is None for t in tables.values()):
            return None
        try:
            return _Check(conn, folder, config, files, tables).run(strict)
        except DataValidationError:
            raise
        except Exception:  # noqa: BLE001 - a query the server refuses (e.g. a character its encoding lacks)
            return None  # load reads the tables and reports what it finds
    finally:
        reader.close()


def _describe(conn, tname: str, src: sources.DbTable) -> _Table | None:
    """The table's headers and types (a query that returns no row), or None when the contract cannot take
    it as typed."""
    with conn.cursor() as cur:
        cur.execute(f"select * from ({src.select()}) as q limit 0")
        desc = [(d.name, d.type_code) for d in cur.description]
    headers = [str(n).strip() for n, _ in desc]
    if any(not h for h in headers) or len({h.lower() for h in headers}) < len(headers):
        return None  # load names the duplicated or blank header
    raw = {h: d for h, d in zip(headers, desc, strict=True)}
    t = _Table(tname, src, src.name, raw)
    rename = contract_headers(headers, t.table)
    t.names = {rename.get(h, h): h for h in headers if rename.get(h, h) in t.table.column_names}
    for name, header in t.names.items():
        if not _typed(t.table.column(name).kind, raw[header][1]):
            return None
    return t


class _Check:
    """The rules, written once as SQL over the typed tables; the dialect is PostgreSQL's (a subclass, such
    as ``duckcheck``'s over Parquet files, types the tables and lists the rows its own way)."""

    dates_can_fail = True  # a typed date column may hold a value load cannot read (year 0500, infinity)
    on_server = True

    @staticmethod
    def infinite(raw: str) -> str:
        """SQL: the raw value of a number column is ±infinity."""
        return f"{raw} in ('Infinity', '-Infinity')"

    def __init__(self, conn, folder: Path, config: DatasetConfig, files: dict, tables: dict[str, _Table]):
        self.conn, self.folder, self.config, self.files, self.tables = conn, folder, config, files, tables
        self.errors: list[Problem] = []
        self.warnings: list[Problem] = []

    def one(self, sql: str):
        with self.conn.cursor() as cur:
            cur.execute(sql)
            return cur.fetchone()

    def all(self, sql: str):
        with self.conn.cursor() as cur:
            cur.execute(sql)
            return cur.fetchall()

    def add(self, p: Problem, order: tuple = ()) -> None:
        """Record ``p``; ``order``: where ``load`` lists it (``_Rule.order``), for a subclass that sorts."""
        (self.errors if p.severity == "error" else self.warnings).append(p)

    # -- the typed table
    def typed(self, t: _Table, stage_map: dict[str, str]) -> str:
        """SQL of ``t``'s rows typed as ``load`` types them (see the module docstring)."""
        cols, nonblank = [], []
        for dbcol, oid in t.raw.values():
            text = f"s.{q(dbcol)}::text"
            nonblank.append(
                f"btrim({text}, {lit(WHITESPACE)}) <> ''" if oid in TEXT_OIDS else f"s.{q(dbcol)} is not null"
            )
        selected = set(self._columns(t))
        for name, header in t.names.items():
            if name not in selected:
                continue
            dbcol, oid = t.raw[header]
            col, kind = f"s.{q(dbcol)}", t.table.column(name).kind
            if kind in ("id", "str"):
                expr = f"nullif(btrim({col}::text, {lit(WHITESPACE)}), '')"
                if name == "stage" and stage_map:
                    cases = " ".join(f"when {lit(k)} then {lit(v)}" for k, v in sorted(stage_map.items()))
                    expr = f"case {expr} {cases} else {expr} end"
                cols.append(f"{expr} as {q(name)}")
                continue
            if kind in ("date", "datetime"):
                ts = {1082: f"{col}::timestamp", 1114: col, 1184: f"({col} at time zone 'UTC')"}[oid]
                ok = f"isfinite({ts}) and extract(year from {ts}) between 1000 and 9999"
                value = f"date_trunc('day', {ts})" if kind == "date" else ts
                cols.append(f"case when {ok} then {value} end as {q(name)}")
            elif kind in ("money", "number", "prob"):
                f = f"{col}::float8"
                cols.append(
                    f"case when {f} in ('NaN'::float8, 'Infinity'::float8, '-Infinity'::float8) then null "
                    f"else {f} end as {q(name)}"
                )
            else:
                cols.append(f"{col} as {q(name)}")
            cols.append(f"{col}::text as {q(name + ':raw')}")
        sql = (
            f"select {', '.join(cols) or 'null as _none'} from ({t.src.select()}) as s "
            f"where coalesce({' or '.join(nonblank)}, false) offset 0"
        )  # offset 0: computed once per row, not again for every rule that reads a column (half the time)
        return self.derive_status(t, sql)

    def derive_status(self, t: _Table, sql: str, columns: list[str] | None = None) -> str:
        """``sql`` with opportunities' ``is_won``/``is_closed`` filled from the stage (``dataset.derive_status``);
        ``columns``: the columns of ``sql`` (default: those the rules read)."""
        if t.name == "opportunities" and "stage" in t.names:  # dataset.derive_status
            won = _in('i."stage"', self.config.won_stages)
            lost = _in('i."stage"', self.config.lost_stages)
            cols = self._columns(t) if columns is None else columns
            keep = [f"i.{q(c)}" if c not in ("is_won", "is_closed") else None for c in cols]
            is_won = f'coalesce(i."is_won", {won})' if "is_won" in t.names else won
            is_closed = (
                f'coalesce(i."is_closed", {won} or {lost})' if "is_closed" in t.names else f"{won} or {lost}"
            )
            derived = {"is_won": f'{is_won} as "is_won"', "is_closed": f'{is_closed} as "is_closed"'}
            # in place where the table has them, else after its columns (as derive_status adds them)
            picks = [k or derived.pop(c) for k, c in zip(keep, cols, strict=True)] + list(derived.values())
            sql = f"select {', '.join(picks)} from ({sql}) as i offset 0"
        return sql

    def _columns(self, t: _Table) -> list[str]:
        """The typed table's columns: each contract column a rule reads (text that no rule reads, such as
        an account or a segment, is left out: trimming it costs the server time), and the raw text of
        the typed ones."""
        out = []
        for name in t.names:
            kind = t.table.column(name).kind
            if kind in ("id", "str") and name not in RULE_TEXT | set(KEYS[t.name]) | set(
                t.table.required_columns
            ):
                continue
            out.append(name)
            if kind not in ("id", "str"):
                out.append(name + ":raw")
        return out

    def prepare(self, t: _Table) -> None:
        """The column-level problems of ``t`` (as ``coerce_table`` and ``load`` find them) and its typed SQL."""
        table, fname = t.table, t.fname
        ti = list(TABLES).index(t.name)
        present = {n for n in t.names} | {h for h in t.raw if h not in t.names.values()}
        for col in table.required_columns:
            if col not in present:
                self.add(
                    Problem(
                        fname,
                        None,
                        col,
                        None,
                        f"required column is missing{_closest(col, present - set(table.column_names))}",
                        line_offset=None,
                    ),
                    (0, ti, 0),
                )
        stage_map: dict[str, str] = {}
        if "stage" in t.names and self.config.stages:  # dataset.normalize_stages
            key = {" ".join(s.lower().split()): s for s in self.config.stages}
            plain = self.typed(t, {})
            odd = self.all(
                f'select "stage", count(*) from ({plain}) as b where "stage" is not null and not '
                f"{_in(STAGE, self.config.stages)} group by 1"
            )
            found = {v: (key.get(" ".join(str(v).lower().split())), n) for v, n in odd}
            stage_map = {v: canon for v, (canon, _) in found.items() if canon is not None}
            for v, canon in sorted(stage_map.items(), key=lambda kv: (kv[0], kv[1])):
                self.add(
                    Problem(
                        fname,
                        None,
                        "stage",
                        v,
                        f"read as the stage {canon!r} ({found[v][1]} row(s))",
                        "warning",
                        None,
                    ),
                    (0, ti, 3),
                )
        t.base = self.typed(t, stage_map)
        t.columns = (
            set(t.names)
            | set(self._columns(t))
            | ({"is_won", "is_closed"} if t.name == "opportunities" and "stage" in t.names else set())
        )
        unknown = {h for h in t.raw if h not in t.names.values()}
        for problem in unknown_columns(set(t.names) | unknown, table, fname, None):
            self.add(problem, (0, ti, 4))

    # -- the rules
    def rules(self, t: _Table, as_of, opp: _Table | None, n_opp_ids: int, reps: _Table | None) -> list[_Rule]:
        table, cols, config = t.table, t.columns, self.config
        out: list[_Rule] = []
        ti = list(TABLES).index(t.name)
        for ci, spec in enumerate(table.columns):  # values that do not convert (coerce_table)
            name = spec.name
            if name not in t.names:
                continue
            kind, raw = spec.kind, q(name + ":raw")
            if kind in ("date", "datetime") and self.dates_can_fail:
                out.append(
                    _Rule(
                        name,
                        "expected a date such as 2026-10-31",
                        f"{raw} is not null and {q(name)} is null",
                        raw,
                        order=(0, ti, 2, ci, 0),
                    )
                )
            elif kind in ("money", "number", "prob"):
                out.append(
                    _Rule(name, "expected a finite number", self.infinite(raw), raw, order=(0, ti, 2, ci, 0))
                )
                if kind == "money":
                    out.append(
                        _Rule(
                            name,
                            "expected an amount of 0 or more",
                            f"{q(name)} < 0",
                            raw,
                            order=(0, ti, 2, ci, 2),
                        )
                    )
                if kind == "prob":  # on 0–1 when no value is above 1: out of range is below 0 or above 100
                    out.append(
                        _Rule(
                            name,
                            "expected a probability within 0–1 or 0–100",
                            f"{q(name)} < 0 or {q(name)} > 100",
                            raw,
                            order=(0, ti, 2, ci, 3),
                        )
                    )
        if table.key and table.key in cols:
            out.append(
                _Rule(
                    table.key,
                    "expected an id (the key may not be empty)",
                    f"{q(table.key)} is null",
                    keyed=False,
                    order=(1, ti, 1),
                )
            )
        for col in table.required_columns:
            if col in cols and col != table.key:
                ci = table.column_names.index(col)
                out.append(
                    _Rule(
                        col, "expected a value (required column)", f"{q(col)} is null", order=(1, ti, 2, ci)
                    )
                )
        stages = list(config.stages)
        if "stage" in cols and stages:
            listed = f" (stages: {', '.join(config.stages)})"
            out.append(
                _Rule(
                    "stage",
                    lambda v: f"expected a stage listed in dataset.yml{_closest(v, set(stages))}{listed}",
                    f'"stage" is not null and not {_in(STAGE, stages)}',
                    '"stage"',
                    rest=f"expected a stage listed in dataset.yml{listed}",
                    order=(1, ti, 3),
                )
            )
        if t.name == "opportunities":
            opp_rules = self.opportunity_rules(cols, as_of)
            for k, rule in enumerate(opp_rules):
                rule.order = (2, k)
            out += opp_rules
        if (
            t.name in ("opportunity_history", "activities", "leads")
            and "opportunity_id" in cols
            and n_opp_ids
        ):
            out.append(
                _Rule(
                    "opportunity_id",
                    f"expected an opportunity_id that exists in {opp.fname}",
                    '"opportunity_id" is not null and "_no_opportunity"',
                    '"opportunity_id"',
                    order=(3, ti),
                )
            )
            # a join, not a NOT EXISTS: PostgreSQL runs a sub-query inside an aggregate once per row
            ids = f'select distinct "opportunity_id" as k from ({opp.base}) as o where "opportunity_id" is not null'
            t.joins.append(f'left join ({ids}) as o on o.k = b."opportunity_id"')
            t.flags.append('o.k is null as "_no_opportunity"')
        if reps is not None and "rep_id" in reps.columns and reps.rows:
            owners = {
                "quotas": ("rep_id", "error"),
                "opportunities": ("owner", "warning"),
                "activities": ("owner", "warning"),
                "leads": ("owner", "warning"),
            }
            col, severity = owners.get(t.name, (None, None))
            if col in cols:
                out.append(
                    _Rule(
                        col,
                        f"expected a rep_id listed in {reps.fname}",
                        f'{q(col)} is not null and "_no_rep"',
                        q(col),
                        severity,
                        order=(4, list(owners).index(t.name)),
                    )
                )
                known = f'select distinct "rep_id" as k from ({reps.base}) as r where "rep_id" is not null'
                t.joins.append(f"left join ({known}) as r on r.k = b.{q(col)}")
                t.flags.append('r.k is null as "_no_rep"')
        return out

    def opportunity_rules(self, cols: set[str], as_of) -> list[_Rule]:
        """``check_rules``' rules on the opportunities."""
        out: list[_Rule] = []
        if {"created_date", "close_date"} <= cols:
            out.append(
                _Rule(
                    "close_date",
                    "expected a close date on or after created_date",
                    '"close_date" < "created_date"',
                    '"close_date"',
                    ref=("created_date", '"created_date"'),
                    as_date=True,
                )
            )
        if {"is_won", "is_closed"} <= cols:
            bad = '("is_won" and not "is_closed")'
            out.append(
                _Rule(
                    "is_closed",
                    "expected is_closed = true for a won deal (is_won is true)",
                    bad,
                    '"is_closed"',
                )
            )
            st = '"stage"' if "stage" in cols else "null::text"
            won_st, lost_st = _in(st, self.config.won_stages), _in(st, self.config.lost_stages)
            open_st = _in(st, self.config.open_stages)
            for where, col, text in (
                (
                    f'{won_st} and "is_won" = false',
                    "is_won",
                    "expected is_won = true: the stage is a won stage",
                ),
                (
                    f'{lost_st} and "is_won" = true',
                    "is_won",
                    "expected is_won = false: the stage is a lost stage",
                ),
                (
                    f'({won_st} or {lost_st}) and "is_closed" = false',
                    "is_closed",
                    "expected is_closed = true: the stage is a closing stage",
                ),
                (
                    f'{open_st} and "is_closed" = true',
                    "is_closed",
                    "expected is_closed = false: the stage is an open stage (or list it under won_stages/lost_stages)",
                ),
            ):
                out.append(
                    _Rule(col, text, f"coalesce({where}, false) and not coalesce({bad}, false)", q(col))
                )
        if {"is_closed", "close_date"} <= cols and as_of is not None:
            out.append(
                _Rule(
                    "close_date",
                    f"open deal with a close date before the as-of date {as_of.date()} (past due)",
                    f'"is_closed" is not true and "close_date" < {_ts(as_of)}',
                    '"close_date"',
                    "warning",
                )
            )
        if {"is_closed", "next_step"} <= cols:
            out.append(
                _Rule(
                    "next_step",
                    "open deal with no next step",
                    '"is_closed" is not true and "next_step" is null',
                    '"next_step"',
                    "warning",
                )
            )
        if "amount" in cols:
            out.append(_Rule("amount", "amount is zero", '"amount" = 0', '"amount"', "warning"))
        if as_of is not None:
            day, year = as_of.normalize() + pd.Timedelta(days=1), as_of.normalize() + pd.DateOffset(years=1)
            for col, mask, what in (
                ("created_date", "true", "a created date"),
                (
                    "close_date",
                    '"is_closed" is true' if "is_closed" in cols else None,
                    "a closed deal's close date",
                ),
            ):
                if col not in cols or mask is None:
                    continue
                text = f"expected {what} on or before the as-of date {as_of.date()}"
                far = f"{q(col)} > {_ts(year)}"
                out.append(_Rule(col, text, f"{mask} and {far}", q(col)))
                out.append(
                    _Rule(col, text, f"{mask} and {q(col)} >= {_ts(day)} and not {far}", q(col), "warning")
                )
        return out

    # -- running them
    def run(self, strict: bool = True) -> Checked:
        config, tables = self.config, self.tables
        for t in tables.values():
            self.prepare(t)
        opp = tables["opportunities"]
        stats = ["count(*)", 'count("opportunity_id")' if "opportunity_id" in opp.columns else "0"]
        stats.append('max("created_date")' if "created_date" in opp.columns else "null::timestamp")
        stats.append(
            'max("close_date") filter (where "is_closed")'
            if {"close_date", "is_closed"} <= opp.columns
            else "null::timestamp"
        )
        stats.append('min("created_date")' if "created_date" in opp.columns else "null::timestamp")
        opp.rows, n_ids, last_created, last_closed, first = self.one(
            f"select {', '.join(stats)} from ({opp.base}) as b"
        )
        found = [pd.Timestamp(d) for d in (last_created, last_closed) if d is not None]
        inferred = max(found).normalize() if found else None
        as_of = pd.Timestamp(config.as_of) if config.as_of else inferred
        reps = tables.get("reps")
        if reps is not None:
            (reps.rows,) = self.one(f"select count(*) from ({reps.base}) as b")
        for t in tables.values():
            self.run_table(t, self.rules(t, as_of, opp, n_ids, reps))
        self.finish()
        if self.errors and strict:
            raise DataValidationError(self.errors, self.folder, reading_hints(self.warnings, self.errors))
        return Checked(
            self.folder,
            config,
            {t: tables[t].rows for t in tables},
            dict(self.files),
            self.warnings if strict else self.errors + self.warnings,
            inferred,
            pd.Timestamp(first) if first is not None else None,
            on_server=self.on_server,
        )

    def finish(self) -> None:
        """After every rule ran (a subclass puts the problems in load's order)."""

    def run_table(self, t: _Table, rules: list[_Rule]) -> None:
        """One aggregate query for every rule of ``t`` (and its column-level counts), then the first rows
        of each rule that is broken."""
        fname, table = t.fname, t.table
        aggs = ["count(*)"] + [f"count(*) filter (where {r.where})" for r in rules]
        key = table.key if table.key and table.key in t.columns else None
        if key:
            aggs.append(f"count({q(key)}) - count(distinct {q(key)})")
        probs = [n for n in t.names if table.column(n).kind == "prob"]
        numbers = [n for n in t.names if table.column(n).kind in ("money", "number", "prob")]
        for n in probs:
            aggs += [f"max({q(n)})", f"count(*) filter (where {q(n)} > 0 and {q(n)} < 1)"]
        for n in numbers:
            raw = q(n + ":raw")
            aggs.append(
                f"count({raw}) filter (where {raw} <> 'NaN') >= 3 and coalesce(bool_and({raw} ~ {lit(DOTTED)}) filter (where {raw} <> 'NaN'), false)"
            )
        got = list(self.one(f"select {', '.join(aggs)} from ({t.checked}) as b"))
        t.rows = got.pop(0)
        counts = [got.pop(0) for _ in rules]
        duplicates = got.pop(0) if key else 0
        for n in probs:  # coerce.probability_scale's note
            top, below_one = got.pop(0), got.pop(0)
            if top is not None and top > 1 and below_one:
                self.add(
                    Problem(
                        fname,
                        None,
                        n,
                        None,
                        mixed_scale(below_one),
                        "warning",
                        None,
                    )
                )
        for n in numbers:
            if got.pop(0):
                self.add(
                    Problem(
                        fname,
                        None,
                        n,
                        None,
                        "every value looks like 1.234: read with a decimal point; if the point separates "
                        "thousands, write the numbers without it",
                        "warning",
                        None,
                    )
                )
        if t.rows == 0:
            self.add(no_data_rows(fname, table))
        if duplicates:
            rows = self.all(
                f"select {q(key)}, count(*) from ({t.base}) as b where {q(key)} is not null "
                f"group by 1 having count(*) > 1 order by 1 limit {FETCH}"
            )
            for value, n in rows:
                self.add(
                    Problem(
                        fname,
                        None,
                        key,
                        value,
                        f"expected a unique id; {n} rows have this id",
                        count=n - 1,
                        line_offset=None,
                    )
                )
            shown = sum(n - 1 for _, n in rows)
            if duplicates > shown:
                self.add(
                    Problem(
                        fname,
                        None,
                        key,
                        None,
                        "expected a unique id",
                        count=duplicates - shown,
                        line_offset=None,
                        note=MORE_ROWS,
                    )
                )
        keys = [k for k in KEYS[t.name] if k in t.columns]
        for rule, n in zip(rules, counts, strict=True):
            if n:
                self.problems(t, rule, n, keys)

    def problems(self, t: _Table, rule: _Rule, n: int, keys: list[str]) -> None:
        fname = t.fname
        text = rule.expected if isinstance(rule.expected, str) else None
        if not rule.keyed or not keys:
            self.add(Problem(fname, None, rule.column, None, text or rule.rest, rule.severity, None, count=n))
            return
        picks = [f"b.{q(k)}" for k in keys] + [rule.value or "null"] + ([rule.ref[1]] if rule.ref else [])
        order = ", ".join(f"{p} nulls last" for p in picks[: len(keys)])
        rows = self.all(
            f"select {', '.join(picks)} from ({t.checked}) as b where {rule.where} order by {order} limit {FETCH}"
        )
        for row in rows:
            key = tuple((k, _value(v)) for k, v in zip(keys, row[: len(keys)], strict=True))
            value = _value(row[len(keys)], rule.as_date)
            ref = (rule.ref[0], _value(row[len(keys) + 1], rule.as_date)) if rule.ref else None
            expected = text if text is not None else rule.expected(value)
            self.add(
                Problem(fname, None, rule.column, value, expected, rule.severity, None, ref=ref, key=key)
            )
        if n > len(rows):
            self.add(
                Problem(
                    fname,
                    None,
                    rule.column,
                    None,
                    text or rule.rest,
                    rule.severity,
                    None,
                    count=n - len(rows),
                    note=MORE_ROWS,
                )
            )


def _value(v, as_date: bool = False):
    """A value fetched from the server as ``load``'s problems hold it (timestamps as pandas', dates of a
    comparison as dates)."""
    if isinstance(v, dt.datetime):
        return v.date() if as_date else pd.Timestamp(v)
    if isinstance(v, dt.date) and not as_date:
        return pd.Timestamp(v)
    return v
