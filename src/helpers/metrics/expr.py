"""Metrics as Ibis expressions over the canonical tables, run where the data lives.

Each metric is built once as an Ibis expression on an ``Engine``'s tables (``helpers.data.engine``) and
runs unchanged on DuckDB, PostgreSQL and Spark; only its aggregated result comes back, as a small pandas
frame. The figures are those of the pandas functions named in each docstring (same definitions, same
edge cases), which the tests check on the sample dataset on every engine:

- **Win rate** (``win_rate``, ``win_rates``): deals with ``is_closed`` and ``start <= close_date <= end``;
  won = ``is_won``. The totals are summed on the engine; the rates come from them through
  ``helpers.metrics.rates.finish``, the one definition (by count = won ÷ closed; by value = won amount
  ÷ closed amount, where a deal without an amount counts in the count rate but adds nothing to the
  value rate; average won deal size over the won deals with an amount).
- **Bookings** (``bookings``): Σ amount of won deals with ``start <= close_date <= end``.
- **Open pipeline by stage** (``pipeline_by_stage``): deals with ``is_closed`` false, their amount
  (empty = 0) and stage-weighted amount (amount × CRM probability, else the stage's default from
  ``dataset.yml``).

Grouping (``by``): ``None`` (one row, group ``All``), ``"team"`` (the owner's team from ``reps``) or any
column of ``opportunities`` (``owner``, ``segment``, ``region``, …). Rows whose key is empty form the
group ``missing`` (``"(not set)"`` by default), or are left out with ``missing=None``.
"""

from __future__ import annotations

import ibis
import ibis.expr.operations as ops
import numpy as np
import pandas as pd

from helpers.data.engine import pg_rows
from helpers.metrics import rates

NOT_SET = "(not set)"


# --------------------------------------------------------------------------------------------------
# building blocks
# --------------------------------------------------------------------------------------------------
def as_table(data, timestamps=()) -> ibis.Table:
    """``data`` as an Ibis table: an engine's table (``helpers.data.engine``) as it is, so what is built on
    it runs where the data lives; a pandas frame (tests, a small table in a notebook) as an in-memory
    table, run by Ibis' default DuckDB — its text columns as text, its ``timestamps`` columns parsed."""
    if isinstance(data, ibis.Table):
        return data
    df = data.reset_index(drop=True)
    for c in timestamps:
        if c in df.columns and not pd.api.types.is_datetime64_any_dtype(df[c]):
            df[c] = pd.to_datetime(df[c])
    for c in df.columns:
        if df[c].dtype == object or isinstance(df[c].dtype, pd.CategoricalDtype):
            df[c] = df[c].astype("str").where(df[c].notna(), None)
    return ibis.memtable(df)


def keyed(t: ibis.Table, frame: pd.DataFrame) -> ibis.Table:
    """A small pandas frame (deal ids and their close dates, say) as a table on ``t``'s engine, to join
    with ``t`` there: an in-memory table on DuckDB and Spark (typed by the columns below); on PostgreSQL a temporary table of the
    session copied in (``engine.pg_rows``; its planner then knows how many rows it holds), or where the
    role may not make one, one row per element of literal arrays (``unnest``) over a one-row relation.
    Columns: text, integers (no missing values), timestamps, floats."""
    backend = ibis.get_backend(t)
    name = getattr(backend, "name", "")
    if name == "duckdb":
        return ibis.memtable(frame.reset_index(drop=True))
    cols = {}
    for c in frame.columns:
        s = frame[c]
        if pd.api.types.is_datetime64_any_dtype(s):
            cols[c] = ("timestamp", [None if pd.isna(x) else pd.Timestamp(x).to_pydatetime() for x in s])
        elif pd.api.types.is_integer_dtype(s):
            cols[c] = ("int64", [int(x) for x in s])
        elif pd.api.types.is_numeric_dtype(s):
            cols[c] = ("float64", [None if pd.isna(x) else float(x) for x in s])
        else:
            cols[c] = ("string", [None if pd.isna(x) else str(x) for x in s])
    if name != "postgres":  # Spark: typed, missing text as None (a missing value of a str column reads 'NaN')
        data = pd.DataFrame({c: pd.Series(v, dtype=object) for c, (_, v) in cols.items()})
        return ibis.memtable(data, schema={c: typ for c, (typ, _) in cols.items()})
    kept = pg_rows(backend, cols) if hasattr(backend, "con") else None
    if kept is not None:
        return kept
    one = t.select(_one=ibis.literal(1)).limit(1)
    return one.select(**{c: ibis.literal(v, type=f"array<{typ}>").unnest() for c, (typ, v) in cols.items()})


def beside(t: ibis.Table, other: ibis.Table) -> ibis.Table:
    """``other`` where it can be joined with ``t``: as it is when both run on one backend (the activity log
    and the opportunities of one engine: the join runs there), or on DuckDB when one of them is in memory;
    otherwise (a frame beside a table on PostgreSQL, whose session is read-only, or on Spark; tables of two
    connections) ``other``'s rows are fetched and sent to ``t``'s engine (``keyed``): keep ``other`` to a
    short list of text, integer, float and timestamp columns."""
    backends = {id(b): b for b in [*t._find_backends()[0], *other._find_backends()[0]]}
    in_memory = any(x.op().find(ops.InMemoryTable) for x in (t, other))
    if not backends:
        return other
    if len(backends) == 1:
        name = getattr(next(iter(backends.values())), "name", "")
        if not in_memory or name == "duckdb":
            return other
    return keyed(t, other.execute())


SHORT_LIST = 64  # values written into the query as literals; a longer list goes as a table


def among(t: ibis.Table, col: str, values) -> ibis.Table:
    """Rows of ``t`` whose ``col`` (as text) is one of ``values``: ``IN (…)`` for a short list; a longer
    one (every seller of a 7,000-rep company) as a one-column table joined on the engine (``keyed``),
    which compiles and runs in a fraction of the time of thousands of literals."""
    vals = sorted({str(v) for v in values if v is not None and not (isinstance(v, float) and pd.isna(v))})
    key = t[col].cast("string")
    if len(vals) <= SHORT_LIST:
        return t.filter(key.isin(vals))
    k = keyed(t, pd.DataFrame({"_among": pd.Series(vals, dtype="str")}))
    return t.semi_join(k, key == k._among)


def without(t: ibis.Table, col: str, values) -> ibis.Table:
    """Rows of ``t`` whose ``col`` (as text) is none of ``values``: ``NOT IN (…)`` for a short list, a left
    join to a one-column table (``keyed``) kept where nothing matched for a longer one."""
    vals = sorted({str(v) for v in values if v is not None and not (isinstance(v, float) and pd.isna(v))})
    if not vals:
        return t
    key = t[col].cast("string")
    if len(vals) <= SHORT_LIST:
        return t.filter(~key.isin(vals))
    k = keyed(t, pd.DataFrame({"_without": pd.Series(vals, dtype="str")}))
    j = t.left_join(k, key == k._without)
    return j.filter(j._without.isnull()).drop("_without")


ROW = "_row"  # the column ``in_order`` adds


def in_order(data) -> ibis.Table:
    """``data`` (what ``as_table`` takes) with a column ``_row`` numbering its rows in the order they were
    written, where that order is known: a table of a DuckDB database (its rowid, through a temporary
    view: Ibis has no name for it), a frame (its positions). A PostgreSQL or Spark table has no order:
    it comes back as it is, without ``_row``."""
    if not isinstance(data, ibis.Table):
        df = data.reset_index(drop=True)
        return as_table(df.assign(**{ROW: np.arange(len(df), dtype="int64")}))
    op = data.op()
    try:
        backend = ibis.get_backend(data)
    except Exception:  # noqa: BLE001 - an unbound table: no order to find
        return data
    if getattr(backend, "name", "") != "duckdb" or type(op).__name__ != "DatabaseTable":
        return data
    from helpers.data.sources import quote_ident

    view = f"_rows_{op.name}"
    backend.raw_sql(
        f"create or replace temp view {quote_ident(view)} as "
        f"select rowid as {ROW}, * from {quote_ident(op.name)}"
    )
    return backend.table(view)


def as_loaded(df: pd.DataFrame, table: str = "opportunities") -> pd.DataFrame:
    """Rows of ``table`` from the engine typed as ``dataset.load`` types them (dates and datetimes
    datetime64[us], ids and text str, amounts and numbers float64, flags boolean)."""
    from helpers.data.schema import TABLES

    contract = TABLES[table]
    for c in df.columns:
        spec = contract.column(c)
        kind = spec.kind if spec is not None else None
        if kind in ("date", "datetime"):
            df[c] = pd.to_datetime(df[c]).astype("datetime64[us]")
        elif kind in ("id", "str"):
            df[c] = df[c].astype("str")
        elif kind in ("money", "number", "prob"):
            df[c] = df[c].astype("float64")
        elif kind == "bool":
            df[c] = df[c].astype("boolean")
    return df


def within(t: ibis.Table, col: str, other: ibis.Table, other_col: str) -> ibis.Table:
    """Rows of ``t`` whose ``col`` is among ``other``'s ``other_col`` (a semi-join, written as a join to the
    distinct keys: nested in a larger query, ibis 12 writes PostgreSQL a SEMI JOIN it does not have)."""
    keys = other.select(_within=other[other_col]).distinct()
    return t.join(keys, t[col] == keys._within).drop("_within")


def day(value):
    """A date literal (``value``: anything ``pd.Timestamp`` reads)."""
    return ibis.literal(pd.Timestamp(value).date(), type="date")


def flag(col):
    """A nullable boolean column with empty = false."""
    return col.fill_null(False)


def amount(t):
    """``amount`` with empty = 0 (a column of zeros when the table has no amount column: a literal
    would have no sum)."""
    if "amount" in t.columns:
        return t.amount.fill_null(0.0)
    return ibis.ifelse(t[t.columns[0]].isnull(), 0.0, 0.0)


def closed_between(opps, start, end):
    """Closed deals with ``start <= close_date <= end``."""
    return opps.filter(flag(opps.is_closed), opps.close_date >= day(start), opps.close_date <= day(end))


def with_group(eng, t, by: str | None, missing: str | None = NOT_SET):
    """``t`` with a text column ``group`` (see the module docstring for ``by`` and ``missing``)."""
    if by is None:
        return t.mutate(group=ibis.literal("All"))
    if by == "team":
        reps = eng["reps"]
        teams = reps.select(_rep_id=reps.rep_id, _team=reps.team)
        t = t.left_join(teams, t.owner == teams._rep_id).drop("_rep_id").rename(group="_team")
    elif by in t.columns:
        t = t.mutate(group=t[by].cast("string"))
    else:
        raise ValueError(f"by must be None, 'team' or a column of the table, got {by!r}")
    if missing is None:
        return t.filter(t.group.notnull())
    return t.mutate(group=t.group.fill_null(missing))


# --------------------------------------------------------------------------------------------------
# win rate
# --------------------------------------------------------------------------------------------------
def win_rate_counts(eng, start, end, by: str | None = None, missing: str | None = NOT_SET):
    """``rates.outcome_totals`` as an expression: per group, over the deals closed in ``[start, end]``
    (``outcome_counts``)."""
    return outcome_counts(with_group(eng, closed_between(eng["opportunities"], start, end), by, missing))


def outcome_sums(c, won, amt) -> dict:
    """The sums a win rate and its amounts are made of, as aggregations over the closed deals ``c``
    (``won``: their won flag, ``amt``: their amount, an empty one adding 0): deals, won, lost,
    won_amount, closed_amount, lost_amount_known (lost deals with a positive amount). Shared by
    ``outcome_counts`` and win/loss's totals per dimension (``winloss.WindowDeals.totals``)."""
    lost_known = ~won & ((c.amount > 0) if "amount" in c.columns else False)
    return dict(
        deals=c.count(),
        won=ibis.ifelse(won, 1, 0).sum(),
        lost=ibis.ifelse(won, 0, 1).sum(),
        won_amount=ibis.ifelse(won, amt, 0.0).sum(),
        closed_amount=amt.sum(),
        lost_amount_known=ibis.ifelse(lost_known, 1, 0).sum(),
    )


def outcome_counts(c):
    """Per ``group`` of the closed deals ``c``: ``outcome_sums``, won_priced (won deals with an amount)
    and won_priced_amount."""
    won = flag(c.is_won)
    has = "amount" in c.columns  # without amounts: columns of falses (a literal has no sum)
    amt = amount(c)
    priced = won & (c.amount.notnull() if has else False)
    return c.group_by("group").aggregate(
        **outcome_sums(c, won, amt),
        won_priced=ibis.ifelse(priced, 1, 0).sum(),
        won_priced_amount=ibis.ifelse(priced, amt, 0.0).sum(),
    )


COUNTS = ("deals", "won", "lost", "lost_amount_known", "won_priced")
SUMS = ("won_amount", "closed_amount", "won_priced_amount")


def _finished(out: pd.DataFrame, one_row: bool) -> pd.DataFrame:
    """``outcome_counts``' result typed, then ``rates.finish`` (the rates' one definition); with
    ``one_row``, one row of zeros (rates NaN) when nothing closed."""
    if one_row and out.empty:
        out = pd.DataFrame([{"group": "All", **dict.fromkeys(COUNTS + SUMS, 0)}])
    for col in COUNTS:
        out[col] = out[col].fillna(0).astype("int64")
    for col in SUMS:
        out[col] = out[col].astype("float64").fillna(0.0)
    out["group"] = out["group"].astype("str")
    return rates.finish(out)


def _rates_frame(eng, start, end, by=None, missing=NOT_SET) -> pd.DataFrame:
    """``win_rate_counts`` run, then finished (``_finished``)."""
    return _finished(eng.execute(win_rate_counts(eng, start, end, by, missing)), by is None)


def totals(closed) -> dict:
    """The totals (``rates.as_totals``) of the closed deals ``closed`` (an Ibis table: summed where it lives): closed,
    won, lost, win_rate_count, won_value, closed_value, win_rate_value, won_priced, avg_deal_size."""
    out = outcome_counts(closed.mutate(group=ibis.literal("All"))).execute()
    return rates.as_totals(_finished(out, True).iloc[0])


def win_rate(eng, start, end) -> dict:
    """``helpers.metrics.pipeline.win_rate``'s totals (``rates.as_totals``) on the engine: closed, won, lost,
    win_rate_count, won_value, closed_value, win_rate_value, won_priced, avg_deal_size."""
    return rates.as_totals(_rates_frame(eng, start, end).iloc[0])


def win_rates(eng, start, end, by: str | None = None) -> pd.DataFrame:
    """Per group of ``by``, the figures of win/loss's rates (``helpers.metrics.winloss.pooled_rates``)
    before pooling and intervals (``rates.finish``): group, deals, won, lost, win_rate, won_amount, closed_amount,
    value_win_rate, avg_deal_size. Ordered by deals (most first), then group."""
    g = _rates_frame(eng, start, end, by)
    g = g.sort_values(["deals", "group"], ascending=[False, True], kind="stable").reset_index(drop=True)
    cols = ["group", "deals", "won", "lost", "win_rate", "won_amount", "closed_amount", "value_win_rate"]
    return g[[*cols, "avg_deal_size"]]


# --------------------------------------------------------------------------------------------------
# bookings
# --------------------------------------------------------------------------------------------------
def bookings_expr(eng, start, end, by: str | None = None, missing: str | None = NOT_SET):
    """Per group: bookings (Σ amount of won deals with ``start <= close_date <= end``) and won deals."""
    o = eng["opportunities"]
    won = o.filter(flag(o.is_won), o.close_date >= day(start), o.close_date <= day(end))
    w = with_group(eng, won, by, missing)
    return w.group_by("group").aggregate(bookings=amount(w).sum(), deals=w.count())


def bookings(eng, start, end, by: str | None = None, missing: str | None = NOT_SET) -> pd.DataFrame:
    """``helpers.metrics.pipeline.bookings`` per group (``by=None``: one row ``All``, 0 when nothing
    was won); groups in name order."""
    out = eng.execute(bookings_expr(eng, start, end, by, missing))
    out["bookings"] = out["bookings"].astype("float64").fillna(0.0)
    out["deals"] = out["deals"].astype("int64")
    out["group"] = out["group"].astype("str")
    if by is None and out.empty:
        out = pd.DataFrame({"group": ["All"], "bookings": [0.0], "deals": [0]})
    return out.sort_values("group").reset_index(drop=True)[["group", "bookings", "deals"]]


# --------------------------------------------------------------------------------------------------
# open pipeline
# --------------------------------------------------------------------------------------------------
def stage_default(config, stage):
    """The stage's default probability from ``dataset.yml`` (empty for stages it does not name)."""
    pairs = [(s, float(p)) for s, p in config.probabilities.items() if p is not None and not pd.isna(p)]
    if not pairs:
        return ibis.null("float64")
    return stage.cases(*pairs, else_=ibis.null("float64"))


def weighted_open(eng):
    """Open deals (``is_closed`` false) with ``amount`` (empty = 0), ``p_crm`` (the CRM probability, else
    the stage default) and ``weighted_crm`` = amount × p_crm."""
    o = eng["opportunities"]
    o = o.filter(~flag(o.is_closed))
    default = stage_default(eng.config, o.stage)
    p_crm = o.probability.cast("float64").fill_null(default) if "probability" in o.columns else default
    o = o.mutate(amount=amount(o), p_crm=p_crm)
    return o.mutate(weighted_crm=o.amount * o.p_crm)


def pipeline_by_stage(eng) -> pd.DataFrame:
    """``helpers.metrics.pipeline.pipeline_by_stage`` (without historical rates) on the engine: per
    stage of the open deals, in funnel order: deals, default_probability, amount, weighted_crm."""
    w = weighted_open(eng)
    w = w.filter(w.stage.notnull())
    expr = w.group_by("stage").aggregate(
        deals=w.opportunity_id.count(), amount=w.amount.sum(), weighted_crm=w.weighted_crm.sum()
    )
    out = eng.execute(expr)
    config = eng.config
    out["stage"] = out["stage"].astype("str")
    out["deals"] = out["deals"].astype("int64")
    for col in ("amount", "weighted_crm"):
        out[col] = out[col].astype("float64").fillna(0.0)
    out = out.set_index("stage")
    order = [s for s in config.open_stages if s in out.index] + sorted(
        s for s in out.index if s not in config.open_stages
    )
    out = out.reindex(order).reset_index()
    out.insert(2, "default_probability", out["stage"].map(config.probabilities))
    return out


# --------------------------------------------------------------------------------------------------
# history replay: each deal as it stood at the end of given days
# --------------------------------------------------------------------------------------------------
FIELDS = {
    "stage": "string",
    "amount": "float64",
    "close_date": "date",
    "probability": "float64",
    "forecast_category": "string",
}


def _null(typ: str):
    return ibis.null(typ)


def normalized_history(eng):
    """The normalized history (``helpers.metrics.history`` defines it): the history of the deals in
    ``opportunities`` with every field carried forward within the deal, ``amount`` / ``close_date`` /
    ``forecast_category`` from the deal's current values when the history has no such column (or only
    empty ones), and for deals without history a row at ``created_date`` (current stage, or the first
    open stage when closed now) plus, for closed deals, one at ``close_date``. Each row also carries
    ``_seq`` (0, or 1 for the closing row, which follows the opening one on a same-day close), ``_rn``
    (0 for the deal's first row), ``_next`` (the change time of the deal's next row), ``_prev_stage`` and
    ``_prev_close`` (the previous row's stage and close date), ``_new`` (the row starts a stay in a stage)
    and ``_exit`` (when the deal's next stay starts; on a row in a closed stage, the next row's change
    time: nothing reads it there)."""
    o = eng["opportunities"]
    config = eng.config
    current = {f: (o[f].cast(t) if f in o.columns else _null(t)) for f, t in FIELDS.items()}
    current["probability"] = _null("float64")  # a deal's own probability is not history
    cur = o.select(_id=o.opportunity_id, **{f"_cur_{f}": v for f, v in current.items()})
    parts = []
    gaps = set()  # fields with empty values in the history: carried forward below
    hist = None
    if eng.has("opportunity_history", "opportunity_id"):
        h = hist = eng["opportunity_history"]
        present = [f for f in FIELDS if f in h.columns]
        known = eng.execute(h.aggregate(_rows=h.count(), **{f: h[f].count() for f in present})).iloc[0]
        filled = [f for f in ("amount", "close_date", "forecast_category") if f in h.columns]
        hj = h.join(cur, h.opportunity_id == cur._id)  # only the deals in opportunities
        cols = {}
        for f, t in FIELDS.items():
            own = f in h.columns and (f not in filled or int(known[f]) > 0)
            if own and int(known[f]) < int(known["_rows"]):
                gaps.add(f)
            cols[f] = hj[f].cast(t) if own else hj[f"_cur_{f}"]
        changed = hj.changed_at.cast("timestamp") if "changed_at" in h.columns else _null("timestamp")
        parts.append(
            hj.select(opportunity_id=hj.opportunity_id, changed_at=changed, **cols, _seq=ibis.literal(0))
        )
        # (a left join to the distinct ids, not anti_join: nested in a larger query, ibis 12 writes
        # PostgreSQL an ANTI JOIN it does not have)
        ids = h.select(_hid=h.opportunity_id).distinct()
        without = (
            o.left_join(ids, o.opportunity_id == ids._hid).filter(lambda t: t._hid.isnull()).drop("_hid")
        )
    else:
        without = o
    parts.append(synthetic_rows(without, config))
    n = ibis.union(*parts, distinct=False) if len(parts) > 1 else parts[0]
    stages = _stage_values(eng, hist, o, config)
    upto = ibis.window(group_by="opportunity_id", order_by=order(stages), preceding=None, following=0)
    # Carry forward, for the fields with gaps: a field's running count of values numbers its runs; each
    # run takes its one value. (A deal's rows made from its current values agree in every field but the
    # stage, which the opening row may set where the deal has none.)
    if "stage" in o.columns and eng.execute(o.aggregate(n=o.count() - o.stage.count())).iloc[0, 0]:
        gaps.add("stage")
    if gaps:
        # (``_ord``: the rows' order on the values as given, which ``neighbours`` keeps: carried values
        # could order rows at the same moment differently, and the deal's state after it with them)
        n = n.mutate(
            _ord=ibis.row_number().over(upto), **{f"_run_{f}": n[f].count().over(upto) for f in gaps}
        )
        n = n.mutate(
            **{f: n[f].max().over(ibis.window(group_by=["opportunity_id", f"_run_{f}"])) for f in gaps}
        )
        n = n.drop(*[f"_run_{f}" for f in gaps])
    return neighbours(n, stages, exits=list(config.open_stages))


def order(stages: list[str] | None = None) -> list:
    """A deal's rows in time, its closing row last; rows at the same moment in a fixed order — by stage
    (its place in ``stages``, the sorted values ``_stage_values`` finds, else the engine's order of the text),
    then amount, close date and
    probability — so the last of them, the deal's state after that moment, is the same on every run and
    every engine (the sort alone may meet them in any order)."""
    keys = [ibis.asc("changed_at", nulls_first=False), "_seq"]
    if stages:
        keys.append(ibis._.stage.cases(*[(v, k) for k, v in enumerate(stages)], else_=-1))
    else:  # too many values to list: the engine's own order of the text
        keys.append(ibis.asc("stage", nulls_first=True))
    return keys + [ibis.asc(c, nulls_first=True) for c in ("amount", "close_date", "probability")]


def synthetic_rows(deals, config):
    """The normalized rows of deals without history: one at ``created_date`` in the current stage (the
    first open stage when closed now) and, for a deal closed now, one at ``close_date`` in its stage;
    fields from the deal's current values (no probability)."""
    first_open = config.open_stages[0] if config.open_stages else None
    closed = flag(deals.is_closed)

    def rows(t, when, stage, seq):
        fields = {f: (t[f].cast(typ) if f in t.columns else _null(typ)) for f, typ in FIELDS.items()}
        fields.update(stage=stage, probability=_null("float64"))
        return t.select(
            opportunity_id=t.opportunity_id,
            changed_at=when.cast("timestamp"),
            **fields,
            _seq=ibis.literal(seq),
        )

    start_stage = ibis.ifelse(closed, ibis.literal(first_open, type="string"), deals.stage.cast("string"))
    ended = deals.filter(closed)
    return ibis.union(
        rows(deals, deals.created_date, start_stage, 0),
        rows(ended, ended.close_date, ended.stage.cast("string"), 1),
        distinct=False,
    )


STAGE_VALUES_AT_MOST = 16  # ``neighbours``: beyond this many stage values, the second sort costs less


def neighbours(n, stages: list[str] | None = None, exits: list[str] | None = None):
    """The normalized rows with what each needs of its deal's other rows: ``_rn``, ``_next``,
    ``_prev_stage``, ``_prev_close``, ``_new`` and ``_exit`` (see ``normalized_history``).

    ``exits``: the stages whose rows need ``_exit`` (None: every stage); a row in another stage gets
    ``_next`` there, one window function fewer per stage left out. The normalized history asks for the
    open stages only: its one reader of ``_exit``, ``history.stays``, reads the stays in open stages.

    ``stages``: every value the ``stage`` column can hold (``_stage_values``), or None. A stay in a
    stage starts where the stage differs from the row before (an empty stage always starts one);
    ``_exit`` is when the deal's next stay starts. The change times never decrease along the deal's
    rows, so that is the earliest later change where the stage is not the row's own (or is empty): with
    the values known, one such minimum per value, computed in the same sort of each deal's rows as the
    neighbours (an empty stage's next stay starts at the next row, ``_next``). Without them, the
    earliest later row that starts a stay, a second window over the rows numbered by the first (at
    1M deals, 4.7M rows, that second sort took as long as the first: 4.2 s against 2.3 s)."""
    keys = ["_ord"] if "_ord" in n.columns else order(stages)  # ``_ord``: set by ``normalized_history``
    by_time = ibis.window(group_by="opportunity_id", order_by=keys)
    cols = dict(
        _rn=ibis.row_number().over(by_time),
        _next=n.changed_at.lead().over(by_time),
        _prev_stage=n.stage.lag().over(by_time),
        _prev_close=n.close_date.lag().over(by_time),
    )
    after = ibis.window(group_by="opportunity_id", order_by=keys, rows=(1, None))
    values = [s for s in stages or [] if exits is None or s in exits]
    for k, s in enumerate(values):
        other = n.stage.isnull() | (n.stage != s)
        cols[f"_exit_{k}"] = ibis.ifelse(other, n.changed_at, _null("timestamp")).min().over(after)
    n = n.mutate(**cols)
    n = n.mutate(_new=n._prev_stage.isnull() | n.stage.isnull() | (n.stage != n._prev_stage))
    done = ["_ord"] if "_ord" in n.columns else []  # (the carry-forward's order, kept above)
    if stages is not None:
        pairs = [(s, n[f"_exit_{k}"]) for k, s in enumerate(values)]
        exit_ = n.stage.cases(*pairs, else_=n._next) if pairs else n._next
        return n.mutate(_exit=exit_).drop(*[f"_exit_{k}" for k in range(len(values))], *done)
    later = ibis.window(group_by="opportunity_id", order_by="_rn", rows=(1, None))
    exit_ = ibis.ifelse(n._new, n.changed_at, _null("timestamp")).min().over(later)
    if exits is not None:
        exit_ = ibis.ifelse(n.stage.isin(list(exits)).fill_null(False), exit_, n._next) if exits else n._next
    return n.mutate(_exit=exit_).drop(*done)


def _stage_values(eng, h, o, config) -> list[str] | None:
    """The values the normalized history's ``stage`` can hold (``h``: the history when it has a stage;
    ``o``: the deals; the first open stage of deals without history closed now), for ``neighbours``;
    None beyond ``STAGE_VALUES_AT_MOST``."""
    parts = [t.select(_s=t.stage.cast("string")) for t in (h, o) if t is not None and "stage" in t.columns]
    got = set()
    if parts:
        u = ibis.union(*parts, distinct=True) if len(parts) > 1 else parts[0].distinct()
        got = {str(x) for x in eng.execute(u)["_s"] if x is not None and not pd.isna(x)}
    if config.open_stages:
        got.add(str(config.open_stages[0]))
    return sorted(got) if len(got) <= STAGE_VALUES_AT_MOST else None


def replay(eng, dates, normalized=None):
    """The replay (``helpers.metrics.history``): for each of ``dates`` and each deal created
    on or before it, the last normalized history row changed before the day ended (the deal's first row
    when it was created before its history starts); probability = the history's, else the stage default;
    is_open / is_won / is_lost from the stage. Columns: snapshot_date, opportunity_id, owner,
    created_date, the FIELDS, is_open, is_won, is_lost."""
    o = eng["opportunities"]
    n = normalized if normalized is not None else normalized_history(eng)
    days = sorted({pd.Timestamp(x).normalize() for x in dates})
    # each deal's one row per date: the last changed before the day ended, or its first row when its
    # history starts later (a range join with the few dates), then the deals created by then
    k = keyed(
        n,
        pd.DataFrame({"_day": pd.DatetimeIndex(days), "_cut": pd.DatetimeIndex(days) + pd.Timedelta(days=1)}),
    )
    current = (n.changed_at < k._cut) & (n._next.isnull() | (n._next >= k._cut))
    before_history = (n._rn == 0) & (n.changed_at >= k._cut)
    rows = n.join(k, current | before_history)
    rows = rows.mutate(snapshot_date=rows._day.date())
    g = o.select(
        _id=o.opportunity_id,
        owner=o.owner.cast("string") if "owner" in o.columns else _null("string"),
        created_date=o.created_date,
    )
    s = rows.join(g, [rows.opportunity_id == g._id, g.created_date <= rows.snapshot_date])
    config = eng.config
    won = s.stage.isin(list(config.won_stages)) if config.won_stages else ibis.literal(False)
    lost = s.stage.isin(list(config.lost_stages)) if config.lost_stages else ibis.literal(False)
    return s.select(
        "snapshot_date",
        "opportunity_id",
        "owner",
        "created_date",
        "stage",
        "amount",
        "close_date",
        probability=s.probability.fill_null(stage_default(config, s.stage)),
        forecast_category=s.forecast_category,
        is_open=~flag(won) & ~flag(lost),
        is_won=flag(won),
        is_lost=flag(lost),
    )


def _in(col, start, end):
    return ((col >= day(start)) & (col <= day(end))).fill_null(False)


WATERFALL_SIGN = {"pushed_out": -1, "decreased": -1, "won": -1, "lost": -1}  # the other terms add
WATERFALL_LABELS = {
    "opening": "Opening pipeline",
    "created": "Created",
    "pulled_in": "Pulled in",
    "pushed_out": "Pushed out",
    "increased": "Amount increased",
    "decreased": "Amount decreased",
    "won": "Won",
    "lost": "Lost",
    "closing": "Closing pipeline",
    "check": "check (should be 0)",
}


def waterfall(eng, start, end, as_of=None, normalized=None) -> pd.DataFrame:
    """The pipeline waterfall of the period ``[start, end]``: P(t) = deals open at the end of day t with
    close date in the period, amounts replayed at t0 = start − 1 day (a0) and t1 = min(end, as_of) (a1).
    Terms: opening (in P(t0): a0); created (not existing at t0, in P(t1) or won/lost in the period: a1);
    pulled_in (existing at t0 outside P, then in P(t1) or won/lost: a1); pushed_out (in P(t0), open at t1
    with close date outside: a1); won / lost (not won / lost at t0, won / lost at t1: a1); increased /
    decreased (deals in P(t0): a1 − a0 when positive / its size when negative); closing (in P(t1): a1);
    so closing = opening + created + pulled_in − pushed_out + increased − decreased − won − lost.
    Returns term, amount (signed as in the waterfall) and deals; the last row ``check`` is 0."""
    start, end = pd.Timestamp(start), pd.Timestamp(end)
    t0 = start - pd.Timedelta(days=1)
    t1 = min(end, pd.Timestamp(as_of)) if as_of is not None else end
    s = replay(eng, [t0, t1], normalized)
    # one pass over the replay: each deal's values at t0 and at t1 side by side
    at0, at1 = s.snapshot_date == day(t0), s.snapshot_date == day(t1)

    def at(when, value, typ):
        return ibis.ifelse(when, value, _null(typ)).max()

    def ever(when):
        return ibis.ifelse(when, 1, 0).max() == 1

    d = s.group_by("opportunity_id").aggregate(
        stage_0=at(at0, s.stage, "string"),
        amount_0=at(at0, s.amount, "float64"),
        amount_1=at(at1, s.amount, "float64"),
        close_date_0=at(at0, s.close_date, "date"),
        close_date_1=at(at1, s.close_date, "date"),
        is_open_0=ever(at0 & s.is_open),
        is_won_0=ever(at0 & s.is_won),
        is_lost_0=ever(at0 & s.is_lost),
        is_open_1=ever(at1 & s.is_open),
        is_won_1=ever(at1 & s.is_won),
        is_lost_1=ever(at1 & s.is_lost),
        _at1=ever(at1),
    )
    d = d.filter(d._at1)
    exists0 = d.stage_0.notnull()
    a0, a1 = d.amount_0.fill_null(0.0), d.amount_1.fill_null(0.0)
    in0 = exists0 & flag(d.is_open_0) & _in(d.close_date_0, start, end)
    in1 = d.is_open_1 & _in(d.close_date_1, start, end)
    won = d.is_won_1 & ~flag(d.is_won_0)
    lost = d.is_lost_1 & ~flag(d.is_lost_0)
    enters = ~in0 & (in1 | won | lost)
    pushed = in0 & ~in1 & ~won & ~lost
    change = ibis.ifelse(in0, a1 - a0, 0.0)
    terms = {
        "opening": (in0, a0),
        "created": (enters & ~exists0, a1),
        "pulled_in": (enters & exists0, a1),
        "pushed_out": (pushed, a1),
        "increased": (change > 0, change),
        "decreased": (change < 0, -change),
        "won": (won, a1),
        "lost": (lost, a1),
        "closing": (in1, a1),
    }
    d = d.filter(in0 | enters)
    agg = {}
    for t, (m, value) in terms.items():
        agg[t] = ibis.ifelse(m, value, 0.0).sum()
        agg[f"n_{t}"] = ibis.ifelse(m, 1, 0).sum()
    row = eng.execute(d.aggregate(**agg)).iloc[0]
    rows = [
        {
            "term": t,
            "amount": float(0.0 if pd.isna(row[t]) else row[t]) * WATERFALL_SIGN.get(t, 1),
            "deals": int(0 if pd.isna(row[f"n_{t}"]) else row[f"n_{t}"]),
        }
        for t in terms
    ]
    out = pd.DataFrame(rows)
    check = (
        out.loc[out["term"] != "closing", "amount"].sum()
        - out.loc[out["term"] == "closing", "amount"].iloc[0]
    )
    return pd.concat([out, pd.DataFrame([{"term": "check", "amount": check, "deals": 0}])], ignore_index=True)


def forecast_snapshots(eng, start, end, dates, normalized=None) -> pd.DataFrame:
    """Per snapshot date (``history.forecast_accuracy``'s columns before the actual): won_to_date (won
    by then with close date in ``[start, end]``), weighted_open (Σ amount × probability of the deals open
    then with close date in the period) and open_pipeline (their Σ amount)."""
    s = replay(eng, dates, normalized)
    in_p = _in(s.close_date, start, end)
    amt = s.amount.fill_null(0.0)
    expr_ = s.group_by("snapshot_date").aggregate(
        won_to_date=ibis.ifelse(s.is_won & in_p, amt, 0.0).sum(),
        weighted_open=ibis.ifelse(s.is_open & in_p, amt * s.probability.fill_null(0.0), 0.0).sum(),
        open_pipeline=ibis.ifelse(s.is_open & in_p, amt, 0.0).sum(),
    )
    out = eng.execute(expr_)
    out["snapshot_date"] = pd.to_datetime(out["snapshot_date"]).astype("datetime64[us]")
    return out.sort_values("snapshot_date").reset_index(drop=True)
