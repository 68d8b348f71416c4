"""Pipeline health metrics on the current opportunities table: bookings against plan, open and
weighted pipeline, forecast categories, coverage, pipeline created, deals that need attention and
efficiency (deal size, cycle, win rate, velocity, lead funnel).

Movement over time (history replay, waterfall, slips, conversion, days in stage) lives in
``helpers.metrics.history``. Every function is pure: deals and dates in, a DataFrame / dict / number out.
The measures that read closed or created deals (bookings, bookings against plan, coverage, forecast
categories, the landing, cumulative bookings, pipeline created, win rate, velocity, the age threshold
of stalled deals) take the deals where they live (an engine table, e.g. ``Scoped.table``; a frame goes
through ``expr.as_table``) and get back only sums and counts; sums per team are the engine's sums per
owner added up here. What lists or weighs open deals takes the frame of them (``Scoped.opps``).

Conventions used throughout (also in ``docs/metrics.md``, section "Pipeline health"):

- **Bookings** in a window = Σ amount of won deals whose ``close_date`` lies in the window.
- **Open** deal = ``is_closed`` is false. Amounts that are empty count as 0 in sums.
- Windows are inclusive of both ends (see ``helpers.data.calendar``).
"""

from __future__ import annotations

import math
from pathlib import Path

import ibis
import numpy as np
import pandas as pd

from helpers.data.calendar import (
    FiscalCalendar,
    Window,
    month_starts,
    trailing_text,
    trailing_window,
    week_starts,
)
from helpers.metrics import history as hi
from helpers.metrics.expr import (
    ROW,
    among,
    amount,
    as_loaded,
    as_table,
    closed_between,
    day,
    flag,
    in_order,
    keyed,
    totals,
)
from helpers.metrics.registry import Fig

DAY = pd.Timedelta(days=1)


# --------------------------------------------------------------------------------------------------
# basics: status, scope
# --------------------------------------------------------------------------------------------------
def _flag(s: pd.Series) -> pd.Series:
    """Nullable boolean -> plain bool (missing = False)."""
    return s.fillna(False).astype(bool)


def is_open(opps: pd.DataFrame) -> pd.Series:
    return ~_flag(opps["is_closed"])


def is_won(opps: pd.DataFrame) -> pd.Series:
    return _flag(opps["is_won"])


def is_lost(opps: pd.DataFrame) -> pd.Series:
    return _flag(opps["is_closed"]) & ~_flag(opps["is_won"])


def _amount(df: pd.DataFrame) -> pd.Series:
    return df["amount"].fillna(0.0) if "amount" in df.columns else pd.Series(0.0, index=df.index)


def arrow(a):
    """The Arrow data behind a pandas Arrow-backed array (or Series), through the public Arrow protocol
    (``__arrow_array__``: no copy; pandas' private ``_pa_array`` is not used)."""
    import pyarrow as pa

    a = a.array if isinstance(a, pd.Series | pd.Index) else a
    out = a.__arrow_array__()
    return out if isinstance(out, pa.ChunkedArray) else pa.chunked_array([out])


def isin(s: pd.Series, values) -> pd.Series:
    """``s.isin(values)`` (same result), fast for text columns: pandas' ``str`` ``isin`` converts the
    values one by one to Arrow scalars (~2 s for 100k values); here it is one Arrow ``is_in``."""
    import pyarrow as pa
    import pyarrow.compute as pc

    arr = s.array
    ref = values.array if isinstance(values, pd.Series | pd.Index) else None
    if isinstance(arr, pd.arrays.ArrowStringArray) and isinstance(ref, pd.arrays.ArrowStringArray):
        # text against text: the values' own Arrow array, no round trip through Python objects
        value_set = arrow(ref).combine_chunks().cast(arrow(arr).type)
        return pd.Series(np.asarray(pc.is_in(arrow(arr), value_set=value_set), dtype=bool), index=s.index)
    if isinstance(arr, pd.arrays.ArrowStringArray):
        vals = (
            values.to_numpy(dtype=object)
            if isinstance(values, pd.Series | pd.Index)
            else list(values)
            if isinstance(values, set | frozenset | dict)
            else values
        )
        try:
            value_set = pa.array(np.asarray(vals, dtype=object), type=arrow(arr).type, from_pandas=True)
        except (pa.ArrowInvalid, pa.ArrowTypeError):
            return s.isin(values)
        return pd.Series(np.asarray(pc.is_in(arrow(arr), value_set=value_set), dtype=bool), index=s.index)
    return s.isin(values)


def positions(s: pd.Series, values: pd.Series) -> np.ndarray:
    """For each element of ``s``, its position in ``values`` (unique), −1 when absent; one Arrow
    ``index_in`` for text columns, ``Index.get_indexer`` otherwise."""
    import pyarrow.compute as pc

    arr, ref = s.array, values.array
    if isinstance(arr, pd.arrays.ArrowStringArray) and isinstance(ref, pd.arrays.ArrowStringArray):
        value_set = arrow(ref).combine_chunks().cast(arrow(arr).type)
        pos = pc.fill_null(pc.index_in(arrow(arr), value_set=value_set), -1)
        return np.asarray(pos, dtype=np.int64)
    return pd.Index(values).get_indexer(s)


def map_unique(keys: pd.Series, table: pd.Series) -> pd.Series:
    """``keys.map(table)`` (same result) for a ``table`` indexed by text ids: one Arrow ``index_in``
    (``positions``) and a take. A table with duplicate ids goes to ``map``, which raises."""
    if (
        isinstance(keys.array, pd.arrays.ArrowStringArray)
        and isinstance(table.index.array, pd.arrays.ArrowStringArray)
        and table.index.is_unique
    ):
        pos = positions(keys, table.index.to_series())
        return pd.Series(table.array.take(pos, allow_fill=True), index=keys.index, name=keys.name)
    return keys.map(table)


def _ratio(num, den):
    """num ÷ den, NaN when the denominator is 0 or missing."""
    try:
        if den is None or pd.isna(den) or den == 0:
            return math.nan
    except TypeError:
        return math.nan
    return float(num) / float(den)


def _ratios(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    """``_ratio`` element by element (float64 arrays): num ÷ den, NaN where den is 0 or missing."""
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(np.isnan(den) | (den == 0), math.nan, num / den)


def _at_least_zero(x: np.ndarray) -> np.ndarray:
    """``max(x, 0.0)`` element by element, as Python's ``max`` gives it (x unless 0.0 > x)."""
    return np.where(0.0 > x, 0.0, x)


def scope_owners(reps: pd.DataFrame | None, scope: str, who: str, opps: pd.DataFrame | None = None):
    """Rep ids in scope: ``None`` for the company (no filter), the team's reps for ``team``, ``{who}`` for
    ``rep``. Raises ValueError with the known names when ``who`` matches nothing."""
    scope = (scope or "company").lower()
    if scope == "company":
        return None
    if not who:
        raise ValueError(f"scope={scope!r} needs `who` (a team name or a rep id)")
    if scope == "rep":
        known = set()
        if reps is not None:
            known |= set(reps["rep_id"].dropna())
        if opps is not None and str(who) not in known:  # (a table where it lives: its owners asked there)
            o = as_table(opps)
            known |= set(o.select("owner").distinct().execute()["owner"].dropna().astype("str"))
        if known and str(who) not in known:
            raise ValueError(f"rep {who!r} is not in the data; known reps include {sorted(known)[:10]}")
        return {str(who)}
    if scope == "team":
        if reps is None or "team" not in reps.columns:
            raise ValueError("scope='team' needs the `reps` table with a `team` column")
        members = set(reps.loc[reps["team"] == who, "rep_id"])
        if not members:
            raise ValueError(f"team {who!r} not found; teams are {sorted(reps['team'].dropna().unique())}")
        return members
    raise ValueError(f"scope must be company, team or rep, got {scope!r}")


def in_scope(df: pd.DataFrame | None, owners, column: str = "owner") -> pd.DataFrame | None:
    """Rows of ``df`` whose ``column`` is one of ``owners`` (all rows when ``owners`` is None)."""
    if df is None or owners is None:
        return df
    return df[isin(df[column], owners)]


def team_of(reps: pd.DataFrame | None) -> dict:
    if reps is None or "team" not in reps.columns:
        return {}
    return dict(zip(reps["rep_id"], reps["team"], strict=False))


def _group_key(df: pd.DataFrame, by: str | None, reps: pd.DataFrame | None, col: str = "owner") -> pd.Series:
    if by is None:
        return pd.Series("All", index=df.index, dtype="str")
    if by == "rep":
        return df[col].astype("str")
    if by == "team":
        return df[col].map(team_of(reps)).fillna("(no team)").astype("str")
    raise ValueError(f"by must be None, 'rep' or 'team', got {by!r}")


def _between(col, start, end):
    """``start <= col <= end`` on the engine (an empty ``col``: false)."""
    return ((col >= day(start)) & (col <= day(end))).fill_null(False)


def _count(b):
    """How many rows the boolean column ``b`` (empty: false) is true for."""
    return ibis.ifelse(flag(b), 1, 0).sum()


def _by_group(t: ibis.Table, by: str | None, reps, **aggs) -> pd.DataFrame:
    """``aggs`` (sums and counts over the deals ``t``) per group of ``by`` (``_group_key``: None = one
    group ``All``, rep, team) as float64 columns indexed by group, with ``_rows`` (the group's deals):
    summed per owner on the engine, then the owners' rows added up per group here (``team_of``). A group
    without deals has no row; deals without an owner form no group by rep and ``(no team)`` by team."""
    if by is None:
        got = t.aggregate(_rows=t.count(), **aggs).execute()
        got = got[got["_rows"].fillna(0) > 0]
        key = pd.Series("All", index=got.index, dtype="str")
    else:
        got = _per_owner(t.group_by(owner=t.owner.cast("string")).aggregate(_rows=t.count(), **aggs))
        got = got.assign(owner=got["owner"].astype("str"))
        key = _group_key(got, by, reps)
        got = got.drop(columns="owner")
    return got.astype("float64").fillna(0.0).groupby(key.rename("group")).sum()


def _per_owner(q: ibis.Table) -> pd.DataFrame:
    """``q`` (sums per owner) executed; on PostgreSQL once per connection: the same query asked again
    (by rep and by team group the same owners' sums; a figure and its table ask the same) is answered
    from the rows already sent, kept on the backend object. A copy, so callers may change it."""
    try:
        backend = q._find_backend()
    except Exception:  # noqa: BLE001 - an unbound table (a frame): computed each time
        backend = None
    if getattr(backend, "name", "") != "postgres":
        return q.execute()
    memo = backend.__dict__.setdefault("_revops_per_owner", {})
    sql = str(backend.compile(q))
    if sql not in memo:
        memo[sql] = q.execute()
    return memo[sql].copy()


def _open_frame(opps, open_deals: pd.DataFrame | None) -> pd.DataFrame:
    """The open deals as a frame: ``open_deals`` (a frame holding at least every open deal of ``opps``,
    e.g. ``Scoped.opps``) when given, else ``opps`` itself when a frame, else fetched from the engine."""
    if open_deals is not None:
        return open_deals[is_open(open_deals)]
    if not isinstance(opps, ibis.Table):
        return opps[is_open(opps)]
    return as_loaded(opps.filter(~flag(opps.is_closed)).order_by("opportunity_id").execute())


# --------------------------------------------------------------------------------------------------
# bookings and plan
# --------------------------------------------------------------------------------------------------
def bookings(opps, start, end) -> float:
    """Σ amount of won deals with ``start ≤ close_date ≤ end``. ``opps``: the deals where they live (an
    engine table, or a frame through ``expr.as_table``; the same for every measure below that reads
    closed or created deals), summed there."""
    o = as_table(opps)
    w = o.filter(flag(o.is_won), _between(o.close_date, start, end))
    got = w.aggregate(b=amount(w).sum()).execute().iloc[0, 0]
    return 0.0 if pd.isna(got) else float(got)


def usual_share_by_day(opps, cal: FiscalCalendar, as_of, n_quarters: int = 4) -> dict:
    """How much of a quarter's bookings is usually in by the as-of date's day of its quarter: over the
    ``n_quarters`` full fiscal quarters before the as-of date's, Σ won amount closed in each one's first
    ``day`` days ÷ Σ won amount closed in them (``day``: days elapsed in the as-of date's quarter, both ends
    included; a shorter quarter counts whole from that day on). Pooled, so a quarter with larger bookings weighs
    more. ``{"share": …, "day": …, "quarters": quarters with bookings}``; share NaN when none of them booked.
    One query on the engine (``opps``: see ``bookings``)."""
    as_of = pd.Timestamp(as_of)
    start = cal.quarter_start(as_of)
    d = int((as_of - start).days) + 1
    spans, s = [], start
    for _ in range(n_quarters):
        prev = cal.quarter_start(s - DAY)
        spans.append((prev, s - DAY))
        s = prev
    o = as_table(opps)
    won = o.filter(flag(o.is_won))
    amt, aggs = amount(won), {}
    for i, (qs, qe) in enumerate(spans):
        early = _between(won.close_date, qs, min(qs + pd.Timedelta(days=d - 1), qe))
        aggs |= {
            f"_e{i}": ibis.ifelse(early, amt, 0.0).sum(),
            f"_t{i}": ibis.ifelse(_between(won.close_date, qs, qe), amt, 0.0).sum(),
        }
    got = won.aggregate(**aggs).execute().iloc[0].astype("float64").fillna(0.0)
    early = sum(got[f"_e{i}"] for i in range(len(spans)))
    total = sum(got[f"_t{i}"] for i in range(len(spans)))
    booked = sum(got[f"_t{i}"] > 0 for i in range(len(spans)))
    return {"share": early / total if total > 0 else math.nan, "day": d, "quarters": int(booked)}


def read_quotas(path: str | Path) -> pd.DataFrame:
    """Read a proposed quotas CSV/Parquet in the ``quotas`` table format, typed like the dataset's table."""
    from helpers.data.dataset import DataValidationError, coerce_table, read_raw
    from helpers.data.schema import QUOTAS

    p = Path(path)
    problems: list = []
    df = coerce_table(read_raw(p), QUOTAS, p.name, 1 if p.suffix.lower() == ".csv" else None, problems)
    errors = [x for x in problems if x.severity == "error"]
    if errors:
        raise DataValidationError(errors, p)
    return df.reset_index(drop=True)


def bookings_quotas(quotas: pd.DataFrame | None) -> pd.DataFrame | None:
    """Quota rows that count bookings (``metric`` empty or "bookings"), with ``period_end`` filled
    (default: last day of the month of ``period_start``)."""
    if quotas is None or len(quotas) == 0:
        return None
    if isinstance(quotas, QuotaPlan):  # filtered where the rows live
        return quotas
    q = quotas
    if "metric" in q.columns:
        q = q[q["metric"].isna() | (q["metric"].str.lower().str.strip() == "bookings")]
    q = q.copy()
    default_end = q["period_start"] + pd.offsets.MonthEnd(0)
    q["period_end"] = q["period_end"].fillna(default_end) if "period_end" in q.columns else default_end
    return q


def plan_by_rep(quotas: pd.DataFrame | None, start, end) -> pd.Series:
    """Plan of each rep for ``[start, end]``, pro-rated by days:

    plan = Σ over quota rows of quota × overlap_days ÷ days_in_quota_period, where overlap_days is the
    number of days the quota period shares with the window (a 31-day month with quota 31,000 and a
    window covering 10 of its days contributes 10,000). Only reps with a quota row overlapping the window
    appear (a rep who left before the window, or joins after it, has no plan there and no row)."""
    return _prorated_plan(bookings_quotas(quotas), start, end)


def _prorated_plan(q: pd.DataFrame | None, start, end) -> pd.Series:
    """``plan_by_rep`` on quota rows already through ``bookings_quotas`` (filtered once by a caller that
    pro-rates several windows)."""
    if q is None:
        return pd.Series(dtype="float64")
    if isinstance(q, QuotaPlan):
        return q.by_rep(start, end)
    start, end = pd.Timestamp(start), pd.Timestamp(end)
    lo = q["period_start"].where(q["period_start"] > start, start)
    hi = q["period_end"].where(q["period_end"] < end, end)
    overlap = ((hi - lo).dt.days + 1).clip(lower=0)
    length = (q["period_end"] - q["period_start"]).dt.days + 1
    prorated = q["quota"].fillna(0.0) * overlap / length
    inside = overlap > 0
    return prorated[inside].groupby(q.loc[inside, "rep_id"]).sum()


class QuotaPlan:
    """The quota plan of a scope whose quota rows stay where they live (``Scoped`` without a loaded
    quotas table): what ``bookings_quotas`` and ``_prorated_plan`` give over the rows ``quotas_between``
    selects for ``[start, end]``, summed there. Each rep's quota pro-rated to the windows asked comes
    back as one row per rep, every window's sum a column of it (the windows given are asked at once;
    another is asked when first wanted); the bookings chart's rate as one row per quota period.
    ``len``: the quota rows of the span, of any metric (0: no plan, as an empty table)."""

    def __init__(self, table: ibis.Table, owners, start, end, windows=()):
        self.span = (pd.Timestamp(start), pd.Timestamp(end))
        self.queries = 0  # the group-bys per rep asked so far
        q = table if owners is None else among(table, "rep_id", owners)
        month_before = pd.Timestamp(start) - pd.Timedelta(days=31)
        late = q.period_start >= day(month_before)
        if "period_end" in q.columns:
            late = (q.period_end >= day(start)) | (q.period_end.isnull() & late)
        q = q.filter(q.period_start <= day(end), late.fill_null(False))
        # ``bookings_quotas``: metric empty or "bookings"; an empty period_end is the month's last day
        month_end = q.period_start.truncate("M") + ibis.interval(months=1) - ibis.interval(days=1)
        ends = q.period_end.fill_null(month_end.cast("date")) if "period_end" in q.columns else month_end
        booked = ibis.literal(True)
        if "metric" in q.columns:
            booked = q.metric.isnull() | (q.metric.lower().strip() == "bookings")
        self._q = q.mutate(_end=ends.cast("date"), _booked=booked)
        self._plans: dict[tuple, pd.Series] = {}
        self._len = 0
        self._ask(windows, count=True)

    def __len__(self) -> int:
        return self._len

    def _ask(self, windows, count: bool = False) -> None:
        """Each rep's pro-rated quota for every ``(start, end)`` of ``windows`` not yet held, in one query."""
        asked = dict.fromkeys((pd.Timestamp(s), pd.Timestamp(e)) for s, e in windows)
        pairs = [w for w in asked if w not in self._plans]
        if not pairs and not count:
            return
        q = self._q
        length = (q._end.delta(q.period_start, unit="day") + 1).nullif(0)
        sums = {}
        for i, (s, e) in enumerate(pairs):
            lo = ibis.greatest(q.period_start, day(s))
            hi = ibis.least(q._end, day(e))
            overlap = hi.delta(lo, unit="day") + 1
            inside = q._booked.fill_null(False) & (overlap > 0).fill_null(False)
            prorated = q.quota.fill_null(0.0).cast("float64") * overlap / length
            sums |= {f"_p{i}": ibis.ifelse(inside, prorated, 0.0).sum(), f"_n{i}": _count(inside)}
        got = q.group_by(rep_id=q.rep_id.cast("string")).aggregate(_rows=q.count(), **sums).execute()
        self.queries += 1
        if count:
            self._len = int(got["_rows"].sum())
        got = got[got["rep_id"].notna()].sort_values("rep_id")
        for i, pair in enumerate(pairs):
            hit = got[got[f"_n{i}"] > 0]
            self._plans[pair] = pd.Series(
                hit[f"_p{i}"].astype("float64").to_numpy(),
                index=pd.Index(hit["rep_id"].astype("str").to_numpy(), dtype="object", name="rep_id"),
                name="quota",
            )

    def by_rep(self, start, end) -> pd.Series:
        """``plan_by_rep`` over the span's rows: each rep's quota pro-rated to ``[start, end]``."""
        pair = (pd.Timestamp(start), pd.Timestamp(end))
        self._ask([pair])
        return self._plans[pair]

    def periods(self) -> pd.DataFrame:
        """The bookings quota per period (period_start, period_end, quota: Σ over the scope's reps)."""
        q = self._q.filter(self._q._booked.fill_null(False))
        got = (
            q.group_by(period_start=q.period_start, period_end=q._end)
            .aggregate(quota=q.quota.fill_null(0.0).cast("float64").sum())
            .execute()
        )
        for c in ("period_start", "period_end"):
            got[c] = pd.to_datetime(got[c]).astype("datetime64[ns]")
        return got.sort_values(["period_start", "period_end"], ignore_index=True)


def plan_from_targets(targets: dict, cal: FiscalCalendar, start, end) -> float:
    """Company plan from ``dataset.yml`` targets: Σ over fiscal years of target × overlap_days ÷ days in
    that fiscal year. NaN when no target covers the window."""
    start, end = pd.Timestamp(start), pd.Timestamp(end)
    total, covered = 0.0, False
    for fy in range(cal.fiscal_year(start), cal.fiscal_year(end) + 1):
        if fy not in targets:
            continue
        ys, ye = cal.year_start(fy), cal.year_end(fy)
        overlap = (min(ye, end) - max(ys, start)).days + 1
        if overlap > 0:
            covered = True
            total += targets[fy] * overlap / ((ye - ys).days + 1)
    return total if covered else math.nan


def bookings_vs_plan(
    opps,
    quotas: pd.DataFrame | None,
    windows: dict[str, Window],
    by: str | None = None,
    reps: pd.DataFrame | None = None,
    company_plan: dict[str, float] | None = None,
    asked: dict[str, Window] | None = None,
) -> pd.DataFrame:
    """Bookings against plan per window (YTD/QTD/MTD/WTD) and group (company, team or rep).

    - bookings = Σ amount of won deals closed in ``[start, as_of]``
    - plan = quota pro-rated to the full period ``[start, end]`` (``plan_by_rep``); plan_to_date the same
      for ``[start, as_of]``. Without quotas, ``company_plan`` (window name → amount) is used at company
      level; otherwise plan is NaN and attainment is unavailable.
    - attainment = bookings ÷ plan; attainment_to_date = bookings ÷ plan_to_date
    - pace = bookings ÷ elapsed days × days in the period (straight-line run rate to period end);
      pace_attainment = pace ÷ plan
    - still_to_close = max(plan − bookings, 0): what the full period still needs (0 once the plan is met)

    ``asked``: by team or rep, the windows whose sums per owner are asked of the engine (holding every
    window of ``windows`` under the same name): callers that ask the same windows for different
    subsets or groupings send one query (``_per_owner``)."""
    rows = []
    o = as_table(opps)
    won = o.filter(flag(o.is_won))
    asked = windows if by is None or asked is None else asked
    amt, sums = amount(won), {}  # every window's bookings per owner in one query
    for i, w in enumerate(asked.values()):
        inside = _between(won.close_date, w.start, w.as_of)
        sums |= {f"_s{i}": ibis.ifelse(inside, amt, 0.0).sum(), f"_n{i}": _count(inside)}
    per_group = _by_group(won, by, reps, **sums)
    q = bookings_quotas(quotas)  # once for every window
    at = {name: i for i, name in enumerate(asked)}
    for name, w in windows.items():
        i = at[name]
        got = per_group.loc[per_group[f"_n{i}"] > 0, f"_s{i}"]
        plan_rep = _prorated_plan(q, w.start, w.end)
        plan_td_rep = _prorated_plan(q, w.start, w.as_of)
        if len(plan_rep):
            keyframe = pd.DataFrame({"owner": plan_rep.index.astype("str")})
            keys = _group_key(keyframe, by, reps)
            plan = pd.Series(plan_rep.to_numpy(), index=keys.to_numpy()).groupby(level=0).sum()
            plan_td = (
                pd.Series(plan_td_rep.reindex(plan_rep.index).fillna(0).to_numpy(), index=keys.to_numpy())
                .groupby(level=0)
                .sum()
            )
        elif by is None and company_plan and name in company_plan and not pd.isna(company_plan[name]):
            plan = pd.Series({"All": company_plan[name]})
            plan_td = pd.Series({"All": company_plan[name] * w.elapsed_share})
        else:
            plan = pd.Series(dtype="float64")
            plan_td = pd.Series(dtype="float64")
        groups = sorted(set(got.index) | set(plan.index)) or ["All"]
        # = got.get(g, 0.0), plan.get(g, nan), plan_td.get(g, nan) per group, looked up at once
        got_g = got.reindex(groups, fill_value=0.0).to_numpy() if len(got) else np.zeros(len(groups))
        plan_g = plan.reindex(groups).to_numpy() if len(plan) else np.full(len(groups), math.nan)
        plan_td_g = plan_td.reindex(groups).to_numpy() if len(plan_td) else np.full(len(groups), math.nan)
        b = got_g.astype("float64")
        p, ptd = plan_g.astype("float64"), plan_td_g.astype("float64")
        pace = b / w.elapsed_days * w.total_days
        rows.append(
            pd.DataFrame(
                {
                    "window": name,
                    "period": w.label,
                    "group": groups,
                    "bookings": b,
                    "plan": p,
                    "plan_to_date": ptd,
                    "attainment": _ratios(b, p),
                    "attainment_to_date": _ratios(b, ptd),
                    "pace": pace,
                    "pace_attainment": _ratios(pace, p),
                    "still_to_close": np.where(np.isnan(p), math.nan, _at_least_zero(p - b)),
                }
            )
        )
    out = pd.concat(rows, ignore_index=True) if rows else pd.DataFrame()
    if by is not None:
        out = out.rename(columns={"group": by})
    return out


def reps_at_quota(by_rep: pd.DataFrame) -> pd.DataFrame:
    """Per window, among reps with plan > 0: share at or above plan to date (bookings ≥ plan_to_date,
    i.e. on pace) and share already at or above the full-period plan (bookings ≥ plan)."""
    rows = []
    for name, g in by_rep.groupby("window", sort=False):
        g = g[g["plan"] > 0]
        n = len(g)
        rows.append(
            {
                "window": name,
                "reps_with_plan": n,
                "at_or_above_plan_to_date": int((g["bookings"] >= g["plan_to_date"]).sum()),
                "share_on_pace": _ratio((g["bookings"] >= g["plan_to_date"]).sum(), n),
                "at_or_above_full_plan": int((g["bookings"] >= g["plan"]).sum()),
                "share_at_quota": _ratio((g["bookings"] >= g["plan"]).sum(), n),
            }
        )
    return pd.DataFrame(rows)


def share_on_usual_pace(by_rep: pd.DataFrame, usual_share: float, left: pd.Series | None = None) -> float:
    """Among reps with plan > 0 (one window of ``bookings_vs_plan(by="rep")``): the share whose bookings to
    date ÷ ``usual_share`` (``usual_share_by_day``) reach their plan for the full period — the reps whose
    quarter lands at plan if the rest of it books as the last four quarters did — and, with ``left`` (rep id
    → open pipeline dated to close in the period: ``open_by_rep``), whose bookings plus that pipeline still
    reach the plan: a rep whose every open deal would not cover the plan is on no pace, whatever the
    quarter's history says. NaN without a usual share."""
    if not usual_share > 0:
        return math.nan
    g = by_rep[by_rep["plan"] > 0]
    on = g["bookings"] / usual_share >= g["plan"]
    if left is not None:
        on &= g["bookings"] + g["rep"].map(left).astype("float64").fillna(0.0) >= g["plan"]
    return _ratio(on.sum(), len(g))


# --------------------------------------------------------------------------------------------------
# open pipeline, weighting, forecast categories, coverage
# --------------------------------------------------------------------------------------------------
def open_by_rep(opps: pd.DataFrame, window: Window) -> pd.Series:
    """Rep id → Σ amount of the open deals dated to close in ``[window.start, window.end]``, from ``opps``, a
    frame holding every open deal (a scope's working set): ``coverage(by="rep")``'s ``open_in_period``."""
    o = opps[is_open(opps)]
    o = o[(o["close_date"] >= window.start) & (o["close_date"] <= window.end)]
    got = _amount(o).groupby(o["owner"]).sum()
    got.index = got.index.astype("str")
    return got


def crm_probability(opps: pd.DataFrame, config) -> pd.Series:
    """The deal's CRM ``probability``, or where empty the stage default from ``dataset.yml``."""
    default = opps["stage"].map(config.probabilities).astype("float64")
    if "probability" in opps.columns:
        return opps["probability"].astype("float64").fillna(default)
    return default


def weighted_pipeline(opps: pd.DataFrame, config, stage_win_rate: pd.Series | None = None) -> pd.DataFrame:
    """Open deals with their weights: ``p_crm`` (CRM probability, else stage default),
    ``weighted_crm = amount × p_crm``, and where ``stage_win_rate`` (stage → rate) is given
    ``p_hist`` and ``weighted_hist = amount × p_hist``."""
    o = opps[is_open(opps)].copy()
    o["amount"] = _amount(o)
    o["p_crm"] = crm_probability(o, config)
    o["weighted_crm"] = o["amount"] * o["p_crm"]
    if stage_win_rate is not None:
        o["p_hist"] = o["stage"].map(stage_win_rate).astype("float64")
        o["weighted_hist"] = o["amount"] * o["p_hist"]
    return o


def pipeline_by_stage(opps: pd.DataFrame, config, stage_win_rate: pd.Series | None = None) -> pd.DataFrame:
    """Open pipeline per stage in funnel order: deals, amount, weighted by CRM probability and (when
    given) by historical stage win rate."""
    w = weighted_pipeline(opps, config, stage_win_rate)
    agg = {
        "deals": ("opportunity_id", "count"),
        "amount": ("amount", "sum"),
        "weighted_crm": ("weighted_crm", "sum"),
    }
    if stage_win_rate is not None:
        agg["weighted_hist"] = ("weighted_hist", "sum")
    out = w.groupby("stage").agg(**agg)
    order = [s for s in config.open_stages if s in out.index] + [
        s for s in out.index if s not in config.open_stages
    ]
    out = out.reindex(order).reset_index()
    out.insert(2, "default_probability", out["stage"].map(config.probabilities))
    if stage_win_rate is not None:
        out.insert(3, "historical_win_rate", out["stage"].map(stage_win_rate))
    return out


def close_period_labels(close: pd.Series, cal: FiscalCalendar, as_of, freq: str = "quarter") -> pd.Series:
    """Close-period label per deal: ``Past due`` (before ``as_of``), ``No close date``, else the fiscal
    quarter (``FY2026 Q4``) or month (``2026-11``)."""
    as_of = pd.Timestamp(as_of)
    if freq == "quarter":
        lab = cal.quarter_labels(close.fillna(as_of))
    else:
        lab = close.fillna(as_of).dt.strftime("%Y-%m")
    lab = lab.astype("str")
    lab[close < as_of] = "Past due"
    lab[close.isna()] = "No close date"
    return lab


def pipeline_by_close_period(
    opps: pd.DataFrame, config, cal: FiscalCalendar, as_of, freq: str = "quarter"
) -> pd.DataFrame:
    """Open pipeline by expected close period (see ``close_period_labels``): deals, amount, weighted."""
    w = weighted_pipeline(opps, config)
    w["close_period"] = close_period_labels(w["close_date"], cal, as_of, freq)
    w["_order"] = w["close_date"].dt.year * 10000 + w["close_date"].dt.month * 100 + w["close_date"].dt.day
    w["_order"] = w["_order"].where(w["close_period"] != "Past due", 0).fillna(99999999)
    out = (
        w.groupby("close_period")
        .agg(
            deals=("opportunity_id", "count"),
            amount=("amount", "sum"),
            weighted_crm=("weighted_crm", "sum"),
            _order=("_order", "min"),
        )
        .sort_values("_order")
        .drop(columns="_order")
        .reset_index()
    )
    return out


def forecast_category_key(s: pd.Series) -> pd.Series:
    """Normalise forecast categories: commit / best case / pipeline / omitted / closed."""
    k = s.astype("str").str.lower().str.replace(r"[\s_\-]+", "", regex=True)
    mapping = {
        "commit": "commit",
        "bestcase": "best case",
        "best": "best case",
        "upside": "best case",
        "pipeline": "pipeline",
        "omitted": "omitted",
        "closed": "closed",
    }
    return k.map(mapping).fillna("pipeline").where(s.notna(), "pipeline")


def forecast_rollup(opps, start, end) -> pd.DataFrame:
    """Forecast categories rolled up cumulatively for deals closing in ``[start, end]``:

    - Closed won = Σ won amount closed in the window
    - Commit = closed won + open Commit
    - Best case = Commit + open Best Case
    - Pipeline = Best case + open Pipeline (Omitted is left out)

    Open deals count when their expected close date lies in the window (past-due ones included); a
    deal without ``forecast_category`` counts as Pipeline. Summed on the engine per category as written
    (``opps``: see ``bookings``), the written categories then read here (``forecast_category_key``)."""
    o = as_table(opps)
    o = o.filter(_between(o.close_date, start, end))
    won, open_ = flag(o.is_won), ~flag(o.is_closed)
    cat = o.forecast_category.cast("string") if "forecast_category" in o.columns else ibis.literal("pipeline")
    amt = amount(o)
    got = (
        o.filter(won | open_)
        .group_by(_cat=cat)
        .aggregate(
            _won=ibis.ifelse(won, amt, 0.0).sum(),
            _n_won=_count(won),
            _open=ibis.ifelse(open_, amt, 0.0).sum(),
            _deals=ibis.ifelse(open_ & o.opportunity_id.notnull(), 1, 0).sum(),
            _n_open=_count(open_),
        )
        .execute()
    )
    key = forecast_category_key(got["_cat"].astype("str"))
    num = got.drop(columns="_cat").astype("float64").fillna(0.0)
    won_amount, n_won = float(num["_won"].sum()), int(num["_n_won"].sum())
    per = num[num["_n_open"] > 0].groupby(key[num["_n_open"] > 0]).sum()
    amt_k, cnt = per["_open"], per["_deals"]
    rows, running = [("Closed won", won_amount, n_won, won_amount)], won_amount
    for label, k in (("Commit", "commit"), ("Best case", "best case"), ("Pipeline", "pipeline")):
        running += float(amt_k.get(k, 0.0))
        rows.append((label, float(amt_k.get(k, 0.0)), int(cnt.get(k, 0)), running))
    return pd.DataFrame(rows, columns=["category", "category_amount", "deals", "cumulative"])


def landing(opps, config, window: Window, open_deals: pd.DataFrame | None = None) -> dict:
    """Where a period lands, as a range built from the deals (``window``: the period, to its as-of date):

    - booked = Σ won amount closed in [start, as_of];
    - commit = booked + open Commit deals closing in the period (``forecast_rollup``);
    - likely = booked + Σ amount × CRM probability (else the stage default) of open deals closing in it;
    - best case = commit + open Best Case deals closing in it;
    - run rate = booked ÷ elapsed days × days in the period (the straight-line pace).
    Open deals count when their expected close date lies in [start, end] (past-due ones dated in it included).
    ``opps``: see ``bookings``; the weighted sum is over the open deals as a frame (``open_deals``, see
    ``_open_frame``), in their order, as the open pipeline is weighed everywhere."""
    fr = forecast_rollup(opps, window.start, window.end).set_index("category")["cumulative"]
    booked = bookings(opps, window.start, window.as_of)
    o = weighted_pipeline(open_in_period(_open_frame(opps, open_deals), window.start, window.end), config)
    return {
        "booked": booked,
        "commit": float(fr["Commit"]),
        "likely": booked + float(o["weighted_crm"].sum()),
        "best_case": float(fr["Best case"]),
        "run_rate": booked / window.elapsed_days * window.total_days,
    }


def open_in_period(opps: pd.DataFrame, start, end) -> pd.DataFrame:
    """Open deals whose expected close date lies in ``[start, end]`` (past-due ones in the window included)."""
    return opps[
        is_open(opps)
        & (opps["close_date"] >= pd.Timestamp(start))
        & (opps["close_date"] <= pd.Timestamp(end))
    ]


def coverage(
    opps,
    quotas: pd.DataFrame | None,
    window: Window,
    by: str | None = None,
    reps: pd.DataFrame | None = None,
    threshold: float = 3.0,
    company_plan: float | None = None,
) -> pd.DataFrame:
    """Pipeline coverage for the period of ``window`` per group:

    - plan = quota pro-rated to ``[start, end]``; bookings = won in ``[start, as_of]``
    - remaining = max(plan − bookings, 0) (quota still to close)
    - open_in_period = Σ amount of open deals with close date in ``[start, end]``
    - coverage = open_in_period ÷ remaining (NaN when nothing remains: quota met)
    - under_threshold = coverage < threshold, for a period still running: once the as-of date is the
      period's last day the status is "quarter closed" and nothing is flagged (there is no time left to
      close pipeline in it)

    ``opps``: see ``bookings``; bookings and open pipeline are summed there per owner."""
    t = as_table(opps)
    won = flag(t.is_won) & _between(t.close_date, window.start, window.as_of)
    open_ = ~flag(t.is_closed) & _between(t.close_date, window.start, window.end)
    amt = amount(t)
    g = _by_group(
        t.filter(won | open_),
        by,
        reps,
        _won=ibis.ifelse(won, amt, 0.0).sum(),
        _n_won=_count(won),
        _open=ibis.ifelse(open_, amt, 0.0).sum(),
        _deals=ibis.ifelse(open_ & t.opportunity_id.notnull(), 1, 0).sum(),
        _n_open=_count(open_),
    )
    got = g.loc[g["_n_won"] > 0, "_won"]
    pipe, cnt = g.loc[g["_n_open"] > 0, "_open"], g.loc[g["_n_open"] > 0, "_deals"]
    plan_rep = plan_by_rep(quotas, window.start, window.end)
    if len(plan_rep):
        keys = _group_key(pd.DataFrame({"owner": plan_rep.index.astype("str")}), by, reps)
        plan = pd.Series(plan_rep.to_numpy(), index=keys.to_numpy()).groupby(level=0).sum()
    elif by is None and company_plan is not None and not pd.isna(company_plan):
        plan = pd.Series({"All": company_plan})
    else:
        plan = pd.Series(dtype="float64")
    groups = sorted(set(got.index) | set(pipe.index) | set(plan.index)) or ["All"]
    # per group, looked up at once: plan.get(g, nan), got.get(g, 0.0), pipe.get(g, 0.0), cnt.get(g, 0)
    p = plan.reindex(groups).to_numpy("float64") if len(plan) else np.full(len(groups), math.nan)
    b = got.reindex(groups, fill_value=0.0).to_numpy("float64")
    op = pipe.reindex(groups, fill_value=0.0).to_numpy("float64")
    remaining = np.where(np.isnan(p), math.nan, _at_least_zero(p - b))
    cov = _ratios(op, remaining)
    status = np.select(
        [
            np.isnan(p) | (p == 0),
            remaining == 0,
            np.full(len(groups), window.as_of >= window.end),
            cov < threshold,
        ],
        ["no plan", "quota met", "quarter closed", "under threshold"],
        "ok",
    )
    out = pd.DataFrame(
        {
            "group": groups,
            "plan": p,
            "bookings": b,
            "remaining": remaining,
            "open_deals": cnt.reindex(groups, fill_value=0).to_numpy().astype("int64"),
            "open_in_period": op,
            "coverage": cov,
            "under_threshold": status == "under threshold",
            "status": status.tolist(),
        }
    )
    return out.rename(columns={"group": by}) if by is not None else out


def coverage_threshold(win_rate_by_value: float | None, default: float = 3.0) -> float:
    """Coverage a team needs: 1 ÷ measured win rate (by value) when known and > 0, else ``default``."""
    if win_rate_by_value is None or pd.isna(win_rate_by_value) or win_rate_by_value <= 0:
        return default
    return 1.0 / win_rate_by_value


def pipeline_created(opps, start, end, freq: str = "week", by: str = "source") -> pd.DataFrame:
    """Pipeline created per week (Monday start) or month, by ``by`` (e.g. source): every opportunity
    counts on its ``created_date`` whatever its status now (open, won or lost): deals = count,
    amount = Σ amount. ``opps``: see ``bookings``; counted and summed there per week or month (the
    engine's Monday or first of the month, put through ``week_starts`` / ``month_starts`` here)."""
    t = as_table(opps)
    c = t.filter(_between(t.created_date, start, end))
    key = c[by].cast("string").fill_null("(none)") if by in c.columns else ibis.literal("All")
    got = (
        c.group_by(_day=c.created_date.cast("date").truncate("W" if freq == "week" else "M"), _key=key)
        .aggregate(deals=c.opportunity_id.count(), amount=amount(c).sum())
        .execute()
    )
    day_ = pd.to_datetime(got["_day"]).astype("datetime64[us]")
    period = week_starts(day_) if freq == "week" else month_starts(day_)
    out = (
        pd.DataFrame(
            {
                "period": period,
                by: got["_key"].astype("str"),
                "deals": got["deals"].astype("int64"),
                "amount": got["amount"].astype("float64").fillna(0.0),
            }
        )
        .groupby(["period", by])
        .sum()
        .reset_index()
    )
    return out


# --------------------------------------------------------------------------------------------------
# deals that need attention
# --------------------------------------------------------------------------------------------------
def last_activity(opps: pd.DataFrame, activities: pd.DataFrame | None = None) -> pd.Series:
    """Latest of ``opportunities.last_activity_date`` and the last ``activities.occurred_at`` tied to the deal."""
    out = (
        opps["last_activity_date"]
        if "last_activity_date" in opps.columns
        else pd.Series(pd.NaT, index=opps.index, dtype="datetime64[us]")
    )
    if activities is not None:
        known = opps["last_activity_date"] if "last_activity_date" in opps.columns else None
        last = last_activity_days(activities, opps["opportunity_id"], known)
        if last is not None:
            # (a deal without any: NaT — and a timestamp column even when no deal has one)
            ids = opps["opportunity_id"].astype("str")
            other = pd.Series(last.reindex(ids).to_numpy(), index=opps.index, dtype="datetime64[us]")
            out = pd.concat([out, other], axis=1).max(axis=1)
    return out


def last_activity_days(activities, ids: pd.Series, known: pd.Series | None = None) -> pd.Series | None:
    """Deal id → day of its last tied activity, for the deals ``ids``, found on the engine
    (``activities``: an Ibis table or a frame; the ids go there as one column); None without the
    columns it needs. ``known``: a day each deal already has (``last_activity_date``, aligned with
    ``ids``): only the deals whose last activity's day is later than it (or that have none) come back,
    the others' day would not win ``last_activity``'s max (an id listed twice is asked either way)."""
    t = as_table(activities, timestamps=("occurred_at",))
    if not {"opportunity_id", "occurred_at"} <= set(t.columns):
        return None
    ask = pd.DataFrame({"_deal": ids.astype("str").where(ids.notna(), None)})
    if known is not None:
        ask["_known"] = pd.to_datetime(known.to_numpy()).where(~ids.duplicated(keep=False).to_numpy())
    ask = ask.dropna(subset=["_deal"]).drop_duplicates("_deal").reset_index(drop=True)
    deals = keyed(t, ask)
    j = t.inner_join(deals, t.opportunity_id.cast("string") == deals._deal)
    if known is None:
        got = j.group_by(opportunity_id="_deal").agg(last=j.occurred_at.max())
    else:
        got = j.group_by(opportunity_id="_deal").agg(last=j.occurred_at.max(), _known=j._known.max())
        got = got.filter(got._known.isnull() | (got.last.truncate("D") > got._known)).drop("_known")
    got = got.execute()
    last = pd.to_datetime(got["last"]).astype("datetime64[us]").dt.normalize()
    return pd.Series(
        last.to_numpy(), index=got["opportunity_id"].astype("str").to_numpy(), dtype="datetime64[us]"
    )


def deal_list(opps: pd.DataFrame, as_of, activities: pd.DataFrame | None = None) -> pd.DataFrame:
    """Open deals with the columns a manager acts on: age (days since created), days to close
    (negative = past due), last activity and days since it."""
    as_of = pd.Timestamp(as_of)
    o = opps[is_open(opps)].copy()
    o["last_activity"] = last_activity(o, activities)
    o["age_days"] = (as_of - o["created_date"]).dt.days
    o["days_to_close"] = (o["close_date"] - as_of).dt.days
    o["days_since_activity"] = (as_of - o["last_activity"]).dt.days
    cols = [
        "opportunity_id",
        "account",
        "owner",
        "stage",
        "amount",
        "age_days",
        "close_date",
        "days_to_close",
        "next_step",
        "last_activity",
        "days_since_activity",
        "forecast_category",
    ]
    return o[[c for c in cols if c in o.columns]]


def top_open_deals(opps: pd.DataFrame, as_of, n: int = 20, activities=None, deals=None) -> pd.DataFrame:
    """The ``n`` largest open deals by amount. ``deals``: ``deal_list(opps, as_of, activities)`` when the
    caller has it already (the same keyword on the other lists below)."""
    d = deals if deals is not None else deal_list(opps, as_of, activities)
    return d.sort_values("amount", ascending=False, na_position="last").head(n)


def no_next_step(opps: pd.DataFrame, as_of, activities=None, deals=None) -> pd.DataFrame:
    """Open deals whose ``next_step`` is empty, largest first."""
    d = deals if deals is not None else deal_list(opps, as_of, activities)
    if "next_step" not in d.columns:
        return d.iloc[0:0]
    return d[d["next_step"].isna() | (d["next_step"].astype("str").str.strip() == "")].sort_values(
        "amount", ascending=False
    )


def past_due(opps: pd.DataFrame, as_of, activities=None, deals=None) -> pd.DataFrame:
    """Open deals whose expected close date is before ``as_of``, most overdue first."""
    d = deals if deals is not None else deal_list(opps, as_of, activities)
    return d[d["close_date"] < pd.Timestamp(as_of)].sort_values("days_to_close")


ATTENTION_FLAGS = ("past due", "stalled", "slipped", "no next step", "no recent activity")


def attention_deals(
    deals: pd.DataFrame, as_of, stalled=(), slipped=(), no_activity_days: int = 14
) -> pd.DataFrame:
    """Each open deal that needs attention, once, with its flags (``deals`` = ``deal_list``):

    - past due: expected close date before the as-of date;
    - stalled / slipped: the deal's id is among ``stalled`` (longer in its stage than won deals' p75) or
      ``slipped`` (close date pushed this quarter);
    - no next step: ``next_step`` empty (only when the data has the column);
    - no recent activity: no activity in the last ``no_activity_days`` days, or none ever logged (only when
      the data records any activity date).
    Columns: the deal's, ``flags`` ("past due; stalled") and ``n_flags``; the largest amount first (the money at
    stake leads: a stalled $700k deal before a $6k deal with four flags), then most flags, then the id."""
    d = deals.copy()
    ids = d["opportunity_id"].astype("str")
    marks = {
        "past due": (d["close_date"] < pd.Timestamp(as_of)).to_numpy(),
        "stalled": ids.isin([str(x) for x in stalled]).to_numpy(),
        "slipped": ids.isin([str(x) for x in slipped]).to_numpy(),
    }
    if "next_step" in d.columns:
        marks["no next step"] = (
            d["next_step"].isna() | (d["next_step"].astype("str").str.strip() == "")
        ).to_numpy()
    if d["last_activity"].notna().any():
        quiet = d["last_activity"].isna() | (d["days_since_activity"] > no_activity_days)
        marks["no recent activity"] = quiet.to_numpy()
    m = np.column_stack([marks[k] for k in marks]) if marks else np.zeros((len(d), 0), dtype=bool)
    names = np.array(list(marks), dtype=object)
    d["flags"] = ["; ".join(names[row]) for row in m]
    d["n_flags"] = m.sum(axis=1)
    d = d[d["n_flags"] > 0]
    return d.sort_values(
        ["amount", "n_flags", "opportunity_id"], ascending=[False, False, True], na_position="last"
    ).reset_index(drop=True)


# --------------------------------------------------------------------------------------------------
# efficiency
# --------------------------------------------------------------------------------------------------
def cycle_days(opps: pd.DataFrame) -> pd.Series:
    """Sales cycle of a deal = close_date − created_date, in days."""
    return (opps["close_date"] - opps["created_date"]).dt.days.astype("float64")


def _cycle(t: ibis.Table):
    """``cycle_days`` on the engine: whole days from ``created_date`` to ``close_date`` (empty when
    either is)."""
    return t.close_date.cast("date").delta(t.created_date.cast("date"), unit="day")


def deal_size_and_cycle(opps, cal: FiscalCalendar, start, end, freq: str = "month") -> pd.DataFrame:
    """Won deals closed in ``[start, end]`` per close month (``YYYY-MM``) or fiscal quarter: won deals,
    bookings, average deal size = Σ amount ÷ won deals (an empty amount is 0), average and median cycle
    days (close − created; deals without a created date are left out of both).

    ``opps``: the scope's deals, an engine table or a frame (``expr.as_table``). The counts and sums per
    close month come back from the engine and the months are grouped into quarters; of the cycle days,
    only the one or two middle values of each period come back, and the median is numpy's over them
    (the mean of the two middle ones, as pandas' median over every value)."""
    o = as_table(opps)
    w = o.filter(flag(o.is_won), o.close_date >= day(start), o.close_date <= day(end))
    w = w.mutate(
        _y=w.close_date.year(),
        _m=w.close_date.month(),
        _cycle=w.close_date.delta(w.created_date, unit="day").cast("float64"),
        _amt=amount(w),
    )
    sums = w.group_by(["_y", "_m"]).aggregate(
        _rows=w.count(),
        won_deals=w.opportunity_id.count(),
        bookings=w._amt.sum(),
        _cycle_sum=w._cycle.sum(),
        _cycles=w._cycle.count(),
    )
    timed = w.filter(w._cycle.notnull())
    # the period on the engine: a month's number, or its fiscal quarter's (three months from the start month)
    mi = timed._y.cast("int64") * 12 + timed._m.cast("int64") - 1
    timed = timed.mutate(_g=mi if freq == "month" else (mi - (cal.start_month - 1)) // 3)
    timed = timed.mutate(
        _k=ibis.row_number().over(ibis.window(group_by="_g", order_by="_cycle")),
        _c=timed.count().over(ibis.window(group_by="_g")),
    )
    middle = timed.filter((timed._k == (timed._c - 1) // 2) | (timed._k == timed._c // 2))
    sums, middle = sums.execute(), middle.select("_y", "_m", "_cycle").execute()

    def period(df):
        months = pd.to_datetime(
            pd.DataFrame({"year": df["_y"].astype("int64"), "month": df["_m"].astype("int64"), "day": 1})
        )
        labels = months.dt.strftime("%Y-%m") if freq == "month" else cal.quarter_labels(months)
        return labels.astype("str").rename("period")

    sums = sums.astype({c: "int64" for c in ("_rows", "won_deals", "_cycles")}).astype(
        {c: "float64" for c in ("bookings", "_cycle_sum")}
    )
    sums["bookings"] = sums["bookings"].fillna(0.0)
    g = sums.groupby(period(sums))[["won_deals", "_rows", "bookings", "_cycle_sum", "_cycles"]].sum()
    middle = middle.assign(period=period(middle))
    medians = {p: float(np.median(c["_cycle"].to_numpy("float64"))) for p, c in middle.groupby("period")}
    out = pd.DataFrame(
        {
            "won_deals": g["won_deals"],
            "bookings": g["bookings"],
            "avg_deal_size": g["bookings"] / g["_rows"],
            "avg_cycle_days": g["_cycle_sum"] / g["_cycles"].where(g["_cycles"] > 0),
            "median_cycle_days": pd.Series(medians, index=g.index, dtype="float64"),
        },
        index=g.index,
    )
    return out.reset_index()


def trend_call(values: pd.Series, recent: int = 3, tolerance: float = 0.10) -> str:
    """ "growing" / "shrinking" / "flat": mean of the last ``recent`` periods against the mean of the
    ``recent`` periods before them; a change beyond ±``tolerance`` (10%) is a trend. "not enough data"
    with fewer than 2 × ``recent`` periods."""
    v = pd.Series(values).dropna()
    if len(v) < 2 * recent:
        return "not enough data"
    now, before = v.iloc[-recent:].mean(), v.iloc[-2 * recent : -recent].mean()
    if before == 0:
        return "flat" if now == 0 else "growing"
    change = now / before - 1
    return "growing" if change > tolerance else "shrinking" if change < -tolerance else "flat"


def win_rate(opps, start, end) -> dict:
    """Deals closed in ``[start, end]``: win rate by count = won ÷ (won + lost); by value =
    Σ won amount ÷ Σ closed amount; average won deal size over won deals with an amount
    (``helpers.metrics.rates``, the one implementation). ``opps``: see ``bookings``; the totals are
    summed there (``expr.totals``)."""
    return totals(closed_between(as_table(opps), start, end))


def sales_velocity(opps, as_of, months: int = 12) -> dict:
    """Sales velocity = open opportunities × win rate × average deal size ÷ cycle days (revenue per day).

    - open opportunities: open deals on ``as_of``
    - win rate (by count), average won deal size and average cycle of won deals: deals closed in the
      ``trailing_window(as_of, months)``.
    ``per_30_days`` = velocity × 30. ``opps``: see ``bookings``; the counts and the sum of the cycle days
    come from there and the mean is taken here (whole days: the same as a mean over the deals)."""
    as_of = pd.Timestamp(as_of)
    start, _ = trailing_window(as_of, months)
    wr = win_rate(opps, start, as_of)
    t = as_table(opps)
    won = flag(t.is_won) & _between(t.close_date, start, as_of)
    cycle = ibis.ifelse(won, _cycle(t), ibis.null("int64"))
    got = t.aggregate(_open=_count(~flag(t.is_closed)), _sum=cycle.sum(), _n=cycle.count()).execute().iloc[0]
    n_open = int(0 if pd.isna(got["_open"]) else got["_open"])
    size = wr["avg_deal_size"]
    cyc = float(got["_sum"]) / int(got["_n"]) if int(got["_n"]) else math.nan
    vel = _ratio(n_open * wr["win_rate_count"] * size, cyc) if not pd.isna(size) else math.nan
    return {
        "open_opportunities": n_open,
        "win_rate_count": wr["win_rate_count"],
        "avg_deal_size": size,
        "avg_cycle_days": cyc,
        "velocity_per_day": vel,
        "velocity_per_30_days": vel * 30,
        "lookback_start": start,
        "as_of": as_of,
    }


def lead_funnel(leads, opps, start, end, by: str | None = "source") -> pd.DataFrame:
    """Leads created in ``[start, end]`` (a cohort), per ``by``:

    - MQL→SQL = leads with both an MQL and an SQL date ÷ leads with an MQL date
    - SQL→won = SQL leads whose opportunity is won ÷ SQL leads (deals still open count as not won yet;
      ``sql_open`` shows how many)

    ``leads`` and ``opps`` (the deals as the report sees them): engine tables or frames
    (``expr.as_table``). A lead's deal is won when ``is_won`` is true and open when ``is_closed`` is not
    (an id with rows of both counts as both). The counts are one group-by where the leads live, joined
    there to the deals' status when both are on one engine (``_same_backend``); otherwise the won and
    open deal ids are fetched from where the deals live and sent as a table (``expr.keyed``)."""
    t = as_table(leads)
    lead = t.filter(t.created_date >= day(start), t.created_date <= day(end))
    is_mql = lead.mql_date.notnull() if "mql_date" in lead.columns else ibis.literal(False)
    is_sql = lead.sql_date.notnull() if "sql_date" in lead.columns else ibis.literal(False)
    won = open_ = ibis.literal(False)
    if "opportunity_id" in lead.columns:
        o = as_table(opps)
        o = o.filter(flag(o.is_won) | ~flag(o.is_closed), o.opportunity_id.notnull())
        status = o.group_by(_deal=o.opportunity_id.cast("string")).aggregate(
            _won=ibis.ifelse(flag(o.is_won), 1, 0).max(), _open=ibis.ifelse(~flag(o.is_closed), 1, 0).max()
        )
        if not _same_backend(lead, status):
            got = status.execute().astype({"_deal": "str", "_won": "int64", "_open": "int64"})
            status = keyed(lead, got) if len(got) else None
        if status is not None:
            lead = lead.left_join(status, lead.opportunity_id.cast("string") == status._deal)
            won, open_ = lead._won.fill_null(0) == 1, lead._open.fill_null(0) == 1
    key = lead[by].cast("string").fill_null("(none)") if by and by in lead.columns else ibis.literal("All")
    name = by or "group"

    def n(b):
        return b.ifelse(1, 0).sum() if not isinstance(b, ibis.expr.types.Scalar) else lead.count() * 0

    g = (
        lead.group_by(**{name: key})
        .agg(
            leads=lead.count(),
            mql=n(is_mql),
            sql=n(is_sql),
            mql_to_sql_n=n(is_mql & is_sql),
            sql_won=n(is_sql & won),
            sql_open=n(is_sql & open_),
        )
        .execute()
    )
    cols = ["leads", "mql", "sql", "mql_to_sql_n", "sql_won", "sql_open"]
    g = g.astype({name: "str"}).set_index(name).sort_index()[cols].fillna(0).astype("int64")
    total = g.sum().to_frame("All").T
    total.index.name = g.index.name
    g = pd.concat([g, total]) if len(g) > 1 else g
    g["mql_to_sql"] = g["mql_to_sql_n"] / g["mql"].replace(0, np.nan)
    g["sql_to_won"] = g["sql_won"] / g["sql"].replace(0, np.nan)
    return g.drop(columns="mql_to_sql_n").reset_index()


# --------------------------------------------------------------------------------------------------
# the report's scope, headline figures, definitions and "what to look at"
# --------------------------------------------------------------------------------------------------
class Scoped:
    """The tables of a dataset limited to a scope (company, a team's reps, one rep)."""

    def __init__(
        self,
        ds,
        scope: str = "company",
        who: str = "",
        quotas: pd.DataFrame | None = None,
        as_of=None,
        activities=None,
        leads=None,
        engine=None,
        base=None,
        plan_at=(),
        week: bool = True,
    ):
        """``plan_at``: other days whose windows the quota plan asks in its first query (the report's
        pass at last month's end, which takes this plan as ``base`` when its quota rows are the same).
        ``week``: the working set (``opps``) holds the deals closed or created in the last 7 days beside
        the open ones (a review pack reads them); False: the open deals only."""
        self.scope, self.who = (scope or "company").lower(), str(who or "")
        self.reps = ds.tables.get("reps")
        loaded = ds.tables.get("opportunities")
        self.owners = scope_owners(
            self.reps, self.scope, self.who, loaded if loaded is not None else engine["opportunities"]
        )
        hist = ds.tables.get("opportunity_history")  # loaded only for a dataset built in memory
        # the activity log: an engine table (``activities``; a loaded frame when not given), scoped there
        log = activities if activities is not None else ds.tables.get("activities")
        if log is not None:
            log = as_table(log, timestamps=("occurred_at",))
            if self.owners is not None:
                log = among(log, "owner", self.owners)
        self.activities = log
        # a report dated before the export sees the deals as they stood then (``history.deals``)
        self.rewound = as_of is not None and pd.Timestamp(as_of) < ds.as_of
        self.as_of = pd.Timestamp(as_of) if as_of is not None else ds.as_of
        usable = hist is not None and {"opportunity_id", "changed_at", "stage"} <= set(hist.columns)
        if engine is None and self.rewound and usable:
            raise ValueError(
                "rewinding the deals to an earlier day needs the engine holding their history (engine=, "
                "e.g. ReportContext.deals_engine)"
            )
        # the scope's deals and their history on the engine (``engine``: one holding the dataset's
        # opportunities and opportunity_history), rewound there when the report is dated earlier
        # (``base``: this scope measured at a later day, whose deals the rewound ones are made from);
        # the kernel gets the working set of them only (``working_set``)
        now = base.deals if base is not None else None
        self.deals = hi.deals(engine, self.owners, as_of, ds.as_of, now) if engine is not None else None
        # the working set is fetched when first read (``opps``), so that marks asked before then
        # (``mark``) come back as columns of its rows rather than as lists of their own
        self._opps, self._marks, self.marks = None, {}, {}
        # the columns left out of a rewound scope (``_as_then``), so that a section can say why
        there = loaded.columns if loaded is not None else engine["opportunities"].columns
        self.as_exported = [c for c in hi.AS_EXPORTED if c in there] if self.rewound else []
        self.week = week
        if self.deals is not None:
            since, table = working_set_start(self.deals.as_of, week), engine["opportunities"]
            since_now = working_set_start(now.as_of, base.week) if now is not None else None
            # (DuckDB, in this process, sends the rewound working set faster than the pandas merge)
            if (
                self.rewound
                and now is not None
                and now.as_of >= self.deals.as_of
                and since <= since_now
                and engine.name != "duckdb"
            ):
                self._fetch = lambda marks: working_set_from(
                    self.deals, now, base.opps, table, since, since_now, marks
                )
            else:
                self._fetch = lambda marks: working_set(self.deals, table, since, marks)
        else:
            self._opps = in_scope(loaded, self.owners)
        if self.rewound:
            cut = pd.Timestamp(as_of) + DAY
            if self.deals is None:  # without a history: only the deals created later are left out
                self._opps = self._as_then(self._opps[self._opps["created_date"] <= pd.Timestamp(as_of)])
            if self.activities is not None:
                self.activities = self.activities.filter(
                    self.activities.occurred_at < ibis.literal(cut.to_pydatetime(), type="timestamp")
                )
        # the leads: an engine table (``leads``; the loaded frame when not given), scoped there to the
        # scope's deals
        lt = leads if leads is not None else ds.tables.get("leads")
        if lt is not None and self.owners is not None:
            lt = as_table(lt)
            if "opportunity_id" in lt.columns:
                lt = _of_deals(lt, self.deals.opps if self.deals is not None else self.opps)
            else:
                lt = None
        self.leads = lt
        q = quotas if quotas is not None else ds.tables.get("quotas")
        if q is None and engine is not None and "quotas" in engine.tables:  # left where it lives
            cal = FiscalCalendar(ds.config.fiscal_year_start_month)
            when = pd.Timestamp(as_of) if as_of is not None else ds.as_of
            windows, nq = cal.windows(when), next_quarter(cal, when)
            span = (windows["YTD"].start, max(windows["YTD"].end, nq.end))
            held = (
                base.quotas if base is not None and (base.scope, base.who) == (self.scope, self.who) else None
            )
            if isinstance(held, QuotaPlan) and held.span == span:
                q = held  # the same rows (last month's pass): its windows were asked with the later day's
            else:
                asked = []
                for d in (when, *plan_at):
                    ws, n = cal.windows(d), next_quarter(cal, d)
                    asked += [(w.start, e) for w in (*ws.values(), n) for e in (w.end, w.as_of)]
                q = QuotaPlan(engine["quotas"], self.owners, *span, asked)
        self.quotas = q if isinstance(q, QuotaPlan) else in_scope(q, self.owners, "rep_id")
        self.quota_source = (
            "proposed quotas file" if quotas is not None else "quotas table" if q is not None else None
        )

    @property
    def opps(self) -> pd.DataFrame:
        """The working set (``working_set``): the scope's open deals and the week's, as a frame, fetched
        when first read."""
        if self._opps is None:
            got = self._fetch(self._marks)
            self.marks = {k: got.pop(k).astype(bool) for k in self._marks}
            self._opps = self._as_then(got)
        return self._opps

    def _as_then(self, frame: pd.DataFrame) -> pd.DataFrame:
        """``frame`` without the columns the export holds as of its own day (``history.AS_EXPORTED``) when the
        scope is rewound to an earlier one (``as_exported``)."""
        out = frame.drop(columns=[c for c in self.as_exported if c in frame.columns])
        if self.rewound and "last_activity_date" in out.columns:  # (the deals' own: see history.AS_EXPORTED)
            later = out["last_activity_date"] > self.as_of
            if later.any():
                out = out.assign(last_activity_date=out["last_activity_date"].mask(later))
        return out

    @opps.setter
    def opps(self, frame: pd.DataFrame) -> None:
        self._opps = frame

    def mark(self, name: str, deals: ibis.Table) -> bool:
        """Ask for the working set's deals among ``deals`` (a table of the deals' engine with an
        opportunity_id column) to be marked: ``marks[name]``, a boolean Series on ``opps``' index, comes
        with the working set's rows. False (nothing asked) once the working set is fetched, or without
        the deals on an engine."""
        if self._opps is not None or self.deals is None:
            return False
        self._marks[name] = deals
        return True

    @property
    def table(self) -> ibis.Table:
        """The scope's deals where they live (rewound when the report is dated earlier): every deal, not
        only the working set ``opps`` holds; a measure that reads deals outside it runs there."""
        return self.deals.opps if self.deals is not None else as_table(self.opps)

    @property
    def label(self) -> str:
        if self.scope == "company":
            return "Company"
        if self.scope == "team":
            return f"Team {self.who}"
        name = None
        if self.reps is not None and "name" in self.reps.columns:
            hit = self.reps.loc[self.reps["rep_id"] == self.who, "name"]
            name = hit.iloc[0] if len(hit) and pd.notna(hit.iloc[0]) else None
        return f"{name} ({self.who})" if name else f"Rep {self.who}"


def _of_deals(leads: ibis.Table, deals) -> ibis.Table:
    """The leads tied to one of ``deals`` (an engine table on the leads' backend: joined there; else a
    frame, whose ids go there as a column)."""
    key = leads.opportunity_id.cast("string")
    if isinstance(deals, ibis.Table) and _same_backend(leads, deals):
        ids = deals.select(_deal=deals.opportunity_id.cast("string")).distinct()
    else:
        if isinstance(deals, ibis.Table):
            deals = deals.select("opportunity_id").execute()
        ids = keyed(leads, pd.DataFrame({"_deal": deals["opportunity_id"].dropna().astype("str").unique()}))
    return leads.semi_join(ids, key == ids._deal)


def _same_backend(a: ibis.Table, b: ibis.Table) -> bool:
    try:
        return ibis.get_backend(a) is ibis.get_backend(b)
    except Exception:  # noqa: BLE001 - an unbound table (a frame): not the engine's
        return False


# a close or created date no deal has: a working set from it holds the open deals only
OPEN_ONLY = pd.Timestamp("2262-01-01")


def working_set_start(as_of, week: bool = True) -> pd.Timestamp:
    """The earliest close or created date a measure made in pandas over ``Scoped.opps`` reads, for a
    report dated ``as_of``: the last 7 days (a review pack's deals created or closed in the week,
    ``review_pack.changes_without_history``); without ``week`` (no review pack) none: ``OPEN_ONLY``.
    Every other measure of closed or created deals runs on the engine over ``Scoped.table``; the
    frame's other deals are the open ones."""
    return pd.Timestamp(as_of) - pd.Timedelta(days=7) if week else OPEN_ONLY


def _kept(o, since, is_closed=None, close_date=None):
    """``working_set``'s test on the deals ``o`` (``is_closed``, ``close_date``: other columns of ``o``
    to read those from)."""
    closed = o.is_closed if is_closed is None else is_closed
    close = o.close_date if close_date is None else close_date
    keep = ~flag(closed) | (close >= day(since)).fill_null(False)
    return keep | (o.created_date >= day(since)).fill_null(False)


def _fetch(d, sel, table: ibis.Table) -> pd.DataFrame:
    """The rows of ``sel`` (deals of ``d``) typed as loaded, in the order of ``table`` (the dataset's
    opportunities) where it has one (DuckDB: its row numbers are the frame's index), else by id."""
    raw = in_order(table)
    if ROW in raw.columns:
        rows = raw.select(_rid=raw.opportunity_id, **{ROW: raw[ROW]})
        sel = sel.left_join(rows, sel.opportunity_id == rows._rid).drop("_rid")
    df = _rows(d.eng.backend, sel, "opportunities", ["opportunity_id"])
    if "amount" not in df.columns:  # an empty amount counts as 0 in every measure (the notebook says so)
        df["amount"] = float("nan")
    return df


def _rows(backend, sel, name: str, by: list[str]) -> pd.DataFrame:
    """The rows of ``sel`` (rows of the canonical table ``name``, with ``expr.ROW`` where their order
    is known: it becomes the index) typed as loaded, in that order, else by ``by``. Through Arrow, as
    the load cache is read: Ibis' own conversion makes Python objects of the text (at 1M, 640,000
    deals: a 2.9 GB peak)."""
    got = backend.to_pyarrow(sel.order_by(ROW if ROW in sel.columns else by))
    index = None
    if ROW in got.column_names:
        index = pd.Index(got.column(ROW).to_numpy())
        got = got.drop_columns([ROW])
    df = as_loaded(got.to_pandas(date_as_object=False), name)
    if index is not None:
        df.index = index
    return df


def quotas_between(table: ibis.Table, owners, start, end) -> pd.DataFrame:
    """The quota rows of ``owners`` (None: everyone) that can overlap ``[start, end]`` (an empty
    period_end is the end of period_start's month: ``bookings_quotas``), typed as loaded, in the
    table's order where it has one (DuckDB), else by rep and period; the others stay where they live."""
    q = in_order(table)
    if owners is not None:
        q = among(q, "rep_id", owners)
    month_before = pd.Timestamp(start) - pd.Timedelta(days=31)
    late = q.period_start >= day(month_before)
    if "period_end" in q.columns:
        late = (q.period_end >= day(start)) | (q.period_end.isnull() & late)
    sel = q.filter(q.period_start <= day(end), late.fill_null(False))
    return _rows(ibis.get_backend(table), sel, "quotas", ["rep_id", "period_start"])


def _marked(sel: ibis.Table, marks: dict | None) -> ibis.Table:
    """``sel`` with a boolean column per entry of ``marks`` (name → a table of deals): whether the row's
    deal is among them (each deal once, so no row is repeated)."""
    for name, deals in (marks or {}).items():
        ids = deals.select(_mid=deals.opportunity_id).distinct()
        sel = sel.left_join(ids, sel.opportunity_id == ids._mid)
        sel = sel.mutate(**{name: sel._mid.notnull()}).drop("_mid")
    return sel


def working_set(d, table: ibis.Table, since, marks: dict | None = None) -> pd.DataFrame:
    """The deals of ``d`` (``history.Deals``: a scope's deals on the engine, rewound when the report is
    dated earlier) that a measure made in pandas can read, as a frame typed and ordered as
    ``dataset.load`` gives the table: open ones, and those closed or created on or after ``since``
    (``working_set_start``; None: every deal). The others stay on the engine. ``table``: the dataset's
    opportunities there, whose order (DuckDB's, the file's) the rows come back in; elsewhere they come
    by id. ``marks``: see ``_marked`` (each a column of the frame)."""
    return _fetch(d, _marked(d.opps if since is None else d.opps.filter(_kept(d.opps, since)), marks), table)


def working_set_from(
    d, now, frame: pd.DataFrame, table: ibis.Table, since, since_now, marks: dict | None = None
) -> pd.DataFrame:
    """``working_set(d, table, since)`` for the deals ``d`` rewound from ``now`` (the same scope's deals
    at a later day, whose working set from ``since_now`` the kernel holds as ``frame``; ``since`` ≤
    ``since_now``): the rows of ``frame`` whose rewound values are the same are taken as they are; only
    the deals whose rewound values differ, and those the earlier window adds, come from the engine.
    With ``marks`` (not held by ``frame``'s rows) every row comes from the engine (``working_set``)."""
    cols = list(dict.fromkeys([*d.replayed, "close_date", "is_won", "is_closed"]))
    if marks or not set(cols) <= set(now.opps.columns) & set(frame.columns):
        return working_set(d, table, since, marks)
    r = d.opps
    t = now.opps.select(_id=now.opps.opportunity_id, **{f"_t_{c}": now.opps[c] for c in cols})
    j = r.left_join(t, r.opportunity_id == t._id)
    differs = ibis.or_(*[~j[c].identical_to(j[f"_t_{c}"]) for c in cols]) | j._id.isnull()
    want = _kept(j, since)
    held = _kept(j, since_now, is_closed=j._t_is_closed, close_date=j._t_close_date)  # in ``frame``
    j = j.filter((differs & (want | held)) | (~differs & want & ~held)).mutate(_take=want)
    got = _fetch(d, j.drop("_id", *[f"_t_{c}" for c in cols]), table)
    take = got.pop("_take").astype(bool).to_numpy()
    kept = frame[(frame["created_date"] <= d.as_of) & ~isin(frame["opportunity_id"], got["opportunity_id"])]
    out = pd.concat([kept, got[take]])
    return out.sort_index() if ROW in in_order(table).columns else out.sort_values("opportunity_id")


def next_quarter(cal: FiscalCalendar, as_of) -> Window:
    """The fiscal quarter after the one holding ``as_of``, as a window with nothing elapsed."""
    qs = cal.quarter_start(pd.Timestamp(as_of)) + pd.DateOffset(months=3)
    qe = qs + pd.DateOffset(months=3) - DAY
    return Window("Next quarter", qs, qs - DAY, qe, cal.quarter_label(qs))


def cumulative_bookings(
    opps, quotas: pd.DataFrame | None, window: Window, company_plan: float | None = None
) -> pd.DataFrame:
    """Per day of the window's full period: cumulative bookings (to ``as_of``) and cumulative plan
    (quota pro-rated by days; without quotas, ``company_plan`` for the full period × elapsed days ÷ days in
    the period; with neither, NaN), for the bookings-against-plan chart. ``opps``: see ``bookings``;
    the won amounts are summed there per close day."""
    days = pd.date_range(window.start, window.end, freq="D")
    t = as_table(opps)
    won = t.filter(flag(t.is_won), _between(t.close_date, window.start, window.as_of))
    got = won.group_by(_day=won.close_date.cast("date")).aggregate(_sum=amount(won).sum()).execute()
    daily = pd.Series(
        got["_sum"].astype("float64").fillna(0.0).to_numpy(),
        index=pd.to_datetime(got["_day"]).astype("datetime64[us]"),
    ).reindex(days, fill_value=0.0)
    booked = daily.cumsum().where(days <= window.as_of)
    q = bookings_quotas(quotas)
    if isinstance(q, QuotaPlan):
        q = q.periods()
    plan = pd.Series(np.nan, index=days)
    if q is None and company_plan is not None:
        plan = pd.Series(company_plan * (np.arange(len(days)) + 1) / len(days), index=days)
    if q is not None:
        # daily quota rate: + quota ÷ days on period_start, − the same the day after period_end; cumulated
        rate = q["quota"].fillna(0) / ((q["period_end"] - q["period_start"]).dt.days + 1)
        steps = (
            pd.concat([rate.groupby(q["period_start"]).sum(), -rate.groupby(q["period_end"] + DAY).sum()])
            .groupby(level=0)
            .sum()
            .sort_index()
        )
        daily_rate = steps.cumsum().reindex(steps.index.union(days)).ffill().fillna(0.0).reindex(days)
        plan = daily_rate.cumsum()
    return pd.DataFrame({"date": days, "bookings": booked.to_numpy(), "plan": plan.to_numpy()})


def headline_figures(
    sc: Scoped, config, cal: FiscalCalendar, as_of, threshold: float = 3.0, targets: dict | None = None
) -> dict[str, Fig]:
    """The headline figures of the pipeline health report: key → ``Fig`` (value, window, base); labels,
    units and definitions come from the metric registry."""
    as_of = pd.Timestamp(as_of)
    at = f"at {as_of:%Y-%m-%d}"
    w = cal.windows(as_of)
    company_plan = None
    if sc.quotas is None and sc.scope == "company" and targets:
        company_plan = {k: plan_from_targets(targets, cal, v.start, v.end) for k, v in w.items()}
    bvp = bookings_vs_plan(sc.table, sc.quotas, w, company_plan=company_plan).set_index("window")
    out: dict[str, Fig] = {}

    def put(key, value, window=None, base=None):
        out[key] = Fig(key, value, window, base)

    for name in ("YTD", "QTD", "MTD"):
        r, win, k = bvp.loc[name], w[name], name.lower()
        put(f"bookings_{k}", r["bookings"], win.to_date_text)
        put(f"plan_{k}", r["plan"], win.full_text)
        put(f"attainment_{k}", r["attainment"], win.full_text)
        put(f"attainment_to_date_{k}", r["attainment_to_date"], win.to_date_text)
    put("bookings_wtd", bvp.loc["WTD", "bookings"], w["WTD"].to_date_text)
    if as_of < w["QTD"].end:  # on the quarter's last day the run rate is what was booked: attainment says it
        put("pace_qtd", bvp.loc["QTD", "pace"], w["QTD"].full_text)
        put("pace_attainment_qtd", bvp.loc["QTD", "pace_attainment"], w["QTD"].full_text)
        # the same at the pace the last four quarters had by this day (quarters book late: a straight line
        # from the quarter's first weeks falls short)
        usual = usual_share_by_day(sc.table, cal, as_of)
        share, qtd_booked = usual["share"], bvp.loc["QTD", "bookings"]
        landing_usual = qtd_booked / share if share > 0 else math.nan
        base = f"{usual['quarters']} quarters, day {usual['day']}"
        put("usual_share_qtd", share, w["QTD"].label, base)
        put("pace_usual_qtd", landing_usual, w["QTD"].full_text, base)
        put("pace_usual_attainment_qtd", _ratio(landing_usual, bvp.loc["QTD", "plan"]), w["QTD"].full_text)
    if sc.scope != "rep" and sc.quotas is not None:
        by_rep = bookings_vs_plan(sc.table, sc.quotas, {"QTD": w["QTD"]}, by="rep", asked=w)
        share = reps_at_quota(by_rep)
        on_pace = share["share_on_pace"].iloc[0] if len(share) else math.nan
        put("reps_on_pace_qtd", on_pace, w["QTD"].to_date_text)
        if as_of < w["QTD"].end:
            left = open_by_rep(sc.opps, w["QTD"])  # (from the working set: no query)
            put(
                "reps_on_usual_pace_qtd",
                share_on_usual_pace(by_rep, usual["share"], left),
                w["QTD"].full_text,
                base,
            )
    wp = weighted_pipeline(sc.opps, config)
    put("open_pipeline", wp["amount"].sum(), at, f"{len(wp):,} deals")
    put("open_deals", len(wp), at)
    put("weighted_pipeline_crm", wp["weighted_crm"].sum(), at)
    wr = win_rate(sc.table, *trailing_window(as_of))
    if threshold is None or threshold <= 0:
        threshold = coverage_threshold(wr["win_rate_value"])
    put("coverage_threshold", threshold)
    put("days_left_qtd", (w["QTD"].end - as_of).days, w["QTD"].label)
    qp = company_plan["QTD"] if company_plan else None
    for key, win in (("qtd", w["QTD"]), ("next_quarter", next_quarter(cal, as_of))):
        npl = plan_from_targets(targets, cal, win.start, win.end) if (company_plan and key != "qtd") else qp
        c = coverage(sc.table, sc.quotas, win, threshold=threshold, company_plan=npl).iloc[0]
        if key != "qtd" or as_of < win.end:  # a quarter that closes today needs no coverage: it is history
            put(f"coverage_{key}", c["coverage"], win.label)
        put(f"open_in_{key}", c["open_in_period"], win.label)
        put(f"remaining_{key}", c["remaining"], win.label)
    fr = forecast_rollup(sc.table, w["QTD"].start, w["QTD"].end).set_index("category")["cumulative"]
    put("commit_qtd", fr["Commit"], w["QTD"].label)
    put("best_case_qtd", fr["Best case"], w["QTD"].label)
    created = pipeline_created(sc.table, w["QTD"].start, as_of, freq="month")
    put("pipeline_created_qtd", created["amount"].sum(), w["QTD"].to_date_text)
    months12 = trailing_text(as_of)
    put("win_rate_count_12m", wr["win_rate_count"], months12, f"{wr['closed']:,} closed")
    put("win_rate_value_12m", wr["win_rate_value"], months12, f"{wr['closed']:,} closed")
    v = sales_velocity(sc.table, as_of)
    put("avg_deal_size", v["avg_deal_size"], months12, f"{wr['won_priced']:,} won")
    put("avg_cycle_days", v["avg_cycle_days"], months12, f"{wr['won']:,} won")
    put("sales_velocity_30d", v["velocity_per_30_days"], months12)
    pdue = past_due(sc.opps, as_of)
    put("past_due_deals", len(pdue), at)
    put("past_due_amount", pdue["amount"].sum(), at)
    # (not measured without next_step, or when it is as exported on a later day: ``history.AS_EXPORTED``)
    nns = len(no_next_step(sc.opps, as_of)) if "next_step" in sc.opps.columns else None
    put("no_next_step_deals", nns, at)
    # will we make the number: the year's landing against the company target and the plan
    ytd = w["YTD"]
    land = landing(sc.table, config, ytd, open_deals=sc.opps)
    year = ytd.full_text
    put("landing_fy_commit", land["commit"], year)
    put("landing_fy_likely", land["likely"], year)
    put("landing_fy_best", land["best_case"], year)
    put("landing_fy_run_rate", land["run_rate"], year)
    # and the quarter's landing, against the quarter's plan and the target's share of the quarter
    qtd = w["QTD"]
    land_q = landing(sc.table, config, qtd, open_deals=sc.opps)
    put("landing_q_commit", land_q["commit"], qtd.full_text)
    put("landing_q_likely", land_q["likely"], qtd.full_text)
    put("landing_q_best", land_q["best_case"], qtd.full_text)
    put("landing_q_run_rate", land_q["run_rate"], qtd.full_text)
    fy = cal.fiscal_year(as_of)
    target = (targets or {}).get(fy)
    if target and sc.scope == "company":
        put("target_q", plan_from_targets(targets, cal, qtd.start, qtd.end), qtd.full_text)
        put("target_fy", target, year)
        gap = target - land["likely"]
        put("gap_fy", gap, year)
        deals = math.ceil(gap / v["avg_deal_size"]) if gap > 0 and v["avg_deal_size"] > 0 else 0
        put("gap_deals_fy", deals, year)
    # is the pipeline enough: what each quarter needs at the coverage threshold
    for key in ("qtd", "next_quarter"):
        if f"coverage_{key}" not in out:
            continue  # the quarter ends on the as-of date: its coverage is history
        needed = out[f"remaining_{key}"].number * threshold
        window = out[f"coverage_{key}"].window
        put(f"pipeline_needed_{key}", needed, window)
        put(
            f"pipeline_shortfall_{key}",
            max(needed - out[f"open_in_{key}"].number, 0.0) if not math.isnan(needed) else math.nan,
            window,
        )
    # what leadership reads first (the index and the email show the first figures)
    first = (
        "bookings_qtd",
        "attainment_to_date_qtd",
        "pace_attainment_qtd",
        "coverage_next_quarter",
        "bookings_ytd",
        "attainment_to_date_ytd",
    )
    return {k: out[k] for k in first if k in out} | out


# a quarter with fewer days than this left is all but over: the report leads with the next quarter's coverage
FOCUS_MIN_DAYS_LEFT = 14


def coverage_focus(days_left_qtd: float) -> str:
    """The quarter whose coverage the report leads with (its figures' suffix): "qtd" while the current quarter
    has at least ``FOCUS_MIN_DAYS_LEFT`` days to run, else "next_quarter" (also when the days left are unknown)."""
    return "qtd" if days_left_qtd >= FOCUS_MIN_DAYS_LEFT else "next_quarter"


def stalled_by_age(
    opps, as_of, quantile: float = 0.75, months: int = 12, open_deals: pd.DataFrame | None = None
) -> pd.DataFrame:
    """Without history: open deals older (as_of − created) than the p75 cycle of deals won in
    ``trailing_window(as_of, months)``. ``opps``: see ``bookings``; the won deals' cycle days come back
    as counts per value and the quantile is pandas' own over them (``history.spread``). The open deals
    listed: ``open_deals`` (``_open_frame``)."""
    as_of = pd.Timestamp(as_of)
    start, _ = trailing_window(as_of, months)
    t = as_table(opps)
    w = t.filter(flag(t.is_won), _between(t.close_date, start, as_of))
    w = w.mutate(_cycle=_cycle(w))
    w = w.filter(w._cycle.notnull())
    counts = w.group_by("_cycle").aggregate(_n=w.count()).execute()
    thr = float(hi.spread(counts, "_cycle").quantile(quantile)) if len(counts) else math.nan
    o = _open_frame(opps, open_deals).copy()
    o["age_days"] = (as_of - o["created_date"]).dt.days
    o["threshold_days"] = thr
    cols = [
        c
        for c in (
            "opportunity_id",
            "account",
            "owner",
            "stage",
            "amount",
            "age_days",
            "threshold_days",
            "close_date",
            "next_step",
        )
        if c in o.columns
    ]
    return o[o["age_days"] > thr][cols].sort_values("amount", ascending=False).reset_index(drop=True)
