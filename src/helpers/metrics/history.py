"""Pipeline movement from ``opportunity_history``, computed where the data lives: the deals rewound to
an earlier day, stage win rates and stage-to-stage conversion, days in stage and stalled deals, slipped
deals, the week's changes, the pipeline on the same day of earlier quarters, past forecast accuracy,
the period waterfall and the calibration of CRM probabilities — Ibis expressions over a scope's deals
and their normalized history; only aggregates and the short lists a reader sees come back.

**The normalized history** (``helpers.metrics.expr.normalized_history``): a history row holds the values
*after* a change; each field is carried forward within the deal (a row that leaves ``amount`` empty keeps
the previous amount); fields the history does not track at all are the deal's current values; a deal with
no history rows is replayed as created on ``created_date`` in its current stage (or the first open stage
when it is closed now) and closed on ``close_date``. It is kept once per scope as a temporary table on
DuckDB and PostgreSQL (``Engine.keep``) and computed inside each query elsewhere (Spark, or a PostgreSQL
role that may not make temporary tables). It
carries each row's neighbours (previous stage and close date, the next change, when the next stay
starts), so a stay in a stage or a change of close date is a filter.

**The replay** (``expr.replay``): a deal at the end of a day is its last row changed before the day
ended, or its first row when it was created before its history starts; a range join with the few dates.

``Deals`` is one scope: ``deals(eng, owners, as_of)`` limits the opportunities to the owners (``None``:
the company) and, for a day before the export, rewinds them to how they stood at its end, with the
history cut at that day. The tests hold every result against a plain pandas reference
(``tests/movement_reference.py``): counts exactly, sums within rounding (the engine adds in another
order); lists break ties of their sort keys by deal id.
"""

from __future__ import annotations

from dataclasses import dataclass

import ibis
import numpy as np
import pandas as pd

from helpers.data.calendar import weekly_dates
from helpers.metrics import expr as ex
from helpers.metrics.expr import among, day, flag, within

DAY = pd.Timedelta(days=1)


def _ts(value):
    return ibis.literal(pd.Timestamp(value).to_pydatetime(), type="timestamp")


@dataclass
class Deals:
    """A scope's deals on an engine: ``opps`` (rewound when ``as_of`` is before the export), ``norm`` their normalized
    history (None without a usable history) and ``eng`` the engine view both live on."""

    eng: object
    opps: ibis.Table
    norm: ibis.Table | None
    as_of: pd.Timestamp
    replayed: tuple = ()  # the fields rewinding replaced (stage, amount, close_date, …)

    def execute(self, e) -> pd.DataFrame:
        return self.eng.execute(e)

    def release(self) -> None:
        """Drop what the engine keeps for these deals (their normalized history, the rewound deals)."""
        for t in (self.norm, self.opps):
            if t is not None:
                self.eng.drop(t)


def has_history(eng) -> bool:
    return eng.has("opportunity_history", "opportunity_id", "changed_at", "stage")


def deals(eng, owners=None, as_of=None, export_as_of=None, base: Deals | None = None) -> Deals:
    """The deals of the scope (``owners``: rep ids, None for the company) and their normalized history;
    rewound to the end of ``as_of`` when that is before ``export_as_of`` (the data's export date).
    ``base``: the same scope's deals not rewound, whose kept normalized history the rewound one is then
    made from (``_cut_from``) instead of normalizing the cut history again."""
    o = eng["opportunities"]
    if owners is not None:
        o = among(o, "owner", owners)
    as_of = as_of if as_of is not None else export_as_of
    as_of = pd.Timestamp(as_of) if as_of is not None else None
    rewound = as_of is not None and export_as_of is not None and as_of < pd.Timestamp(export_as_of)
    if not has_history(eng):
        if rewound:
            o = o.filter(o.created_date <= day(as_of))
        return Deals(eng, o, None, as_of)
    h = eng["opportunity_history"]
    if owners is not None:
        h = within(h, "opportunity_id", o, "opportunity_id")
    view = eng.view(opportunities=o, opportunity_history=h)
    if rewound:
        whole = h
        h = h.filter(h.changed_at < _ts(as_of + DAY))
        cut = view.view(opportunity_history=h)
        made = _cut_from(base, cut, whole, as_of) if base is not None and base.norm is not None else None
        if (
            made is not None
        ):  # PostgreSQL's planner misjudges it inside larger queries (stalled: 24 s at 100k)
            made = cut.keep(made, on_server_only=True)
        o, replayed = _rewound(cut, as_of, made)
        o = view.keep(o)
        view = eng.view(opportunities=o, opportunity_history=h)
        if made is not None:
            return Deals(view, o, made, as_of, tuple(replayed))
    else:
        replayed = ()
    norm = view.keep(ex.normalized_history(view))
    return Deals(view, o, norm, as_of, tuple(replayed))


def _cut_from(base: Deals, cut, whole, as_of):
    """The normalized history of the deals created by the end of ``as_of`` with the history cut there,
    made from ``base``'s (the whole history's): each deal's rows before the cut are the same rows (each
    field carried forward the same way), and a deal whose history starts after the cut gets the rows of
    a deal without history. None where that does not hold — a field whose history values all come after
    the cut (the cut history takes it from the deals' current values), or deals without a stage — so the
    cut history is normalized again."""
    o = cut["opportunities"]
    filled = [f for f in ("amount", "close_date", "forecast_category") if f in whole.columns]
    before = whole.changed_at < _ts(as_of + DAY)
    counts = (
        cut.execute(
            whole.aggregate(
                **{f"all_{f}": whole[f].count() for f in filled},
                **{f"cut_{f}": ibis.ifelse(before & whole[f].notnull(), 1, 0).sum() for f in filled},
            )
        ).iloc[0]
        if filled
        else {}
    )
    if any((_int(counts[f"all_{f}"]) > 0) != (_int(counts[f"cut_{f}"]) > 0) for f in filled):
        return None
    if "stage" not in o.columns or _int(cut.execute(o.aggregate(n=o.count() - o.stage.count())).iloc[0, 0]):
        return None
    n = base.norm
    cut_at = _ts(as_of + DAY)
    rows = n.filter(n.changed_at < cut_at)
    # base's normalized history holds only rows of base's deals: when those are these deals (the same
    # scope, as reports ask), there is nothing to leave out (at 1M deals the join took 0.5 CPU-s in each
    # of the three queries that read the rewound history)
    if not base.opps.equals(o):
        rows = within(rows, "opportunity_id", o, "opportunity_id")
    first = n.filter(n._rn == 0, ~(n.changed_at < cut_at).fill_null(False))  # history starts later
    late = within(o, "opportunity_id", first, "opportunity_id")
    made = ex.neighbours(ex.synthetic_rows(late, cut.config))
    made = made.select(*[made[c].cast(t).name(c) for c, t in rows.schema().items()])  # the kept table's types
    return ibis.union(rows, made, distinct=False)


# what the export records of each deal as it stands on the export day, with no history to rewind it: deals
# rewound to an earlier day leave it out rather than read today's value as then's (a deal closed since has no next
# step now). last_activity_date is kept where it is on or before that day (the last activity then was that one)
# and left empty where later (the activity log, cut at that day, then tells).
AS_EXPORTED = ("next_step",)


def _rewound(view, as_of, normalized=None) -> tuple[ibis.Table, list]:
    """The deals rewound to the end of ``as_of``: those created by then, with stage, amount
    and close date (probability and forecast category when the history tracks them) replayed at that
    day, and is_won / is_closed following the replayed stage."""
    o, h = view["opportunities"], view["opportunity_history"]
    o = o.filter(o.created_date <= day(as_of))
    view = view.view(opportunities=o)
    tracked = [f for f in ("probability", "forecast_category") if f in h.columns]
    counts = (
        view.execute(h.aggregate(_n=h.count(), **{f: h[f].count() for f in tracked})).iloc[0]
        if tracked
        else {}
    )
    fields = ["stage", "amount", "close_date"] + [f for f in tracked if int(counts[f]) > 0]
    s = ex.replay(view, [as_of], normalized)
    s = s.select(_id=s.opportunity_id, _open=s.is_open, _won=s.is_won, **{f"_r_{f}": s[f] for f in fields})
    j = o.left_join(s, o.opportunity_id == s._id)
    types = dict(o.schema().items())
    new = {}
    for f in fields:
        v = j[f"_r_{f}"]
        new[f] = v.cast(types[f]) if f in types else v
    new["is_won"] = j._won
    new["is_closed"] = ~j._open.fill_null(False)  # a deal the replay has no row for counts as closed
    if "last_activity_date" in o.columns:
        la = j.last_activity_date
        new["last_activity_date"] = ibis.ifelse(la <= day(as_of), la, ibis.null(la.type()))
    cols = {c: new.get(c, j[c]) for c in o.columns if c not in AS_EXPORTED}
    cols.update({f: new[f] for f in new if f not in cols})
    return j.select(**cols), fields


# --------------------------------------------------------------------------------------------------
# stages reached: stage win rates, stage conversion
# --------------------------------------------------------------------------------------------------
def _outcome(o):
    return ibis.ifelse(flag(o.is_won), "won", ibis.ifelse(flag(o.is_closed), "lost", "open"))


def reached(d: Deals, config):
    """The stages each deal reached: opportunity_id, furthest (rank among the open stages of the furthest
    one the deal was ever in — its normalized history's stages and its current stage; won = the number of
    open stages, as beyond every open stage; none = −1), outcome (won / lost / open now), amount and
    ``_in_<i>`` (the deal was recorded in open stage i) for each open stage."""
    stages = list(config.open_stages)
    n, o = d.norm, d.opps

    def rank(col):
        if not stages:
            return ibis.literal(-1)
        return col.cases(*[(s, i) for i, s in enumerate(stages)], else_=-1)

    per = n.group_by(_d=n.opportunity_id).aggregate(
        _f=rank(n.stage).max(),
        **{f"_h_{i}": ibis.ifelse(n.stage == s, 1, 0).max() for i, s in enumerate(stages)},
    )
    j = o.left_join(per, o.opportunity_id == per._d)
    cur = rank(j.stage)
    furthest = ibis.greatest(j._f.fill_null(-1), cur.fill_null(-1))
    outcome = _outcome(j)
    cols = {
        "opportunity_id": j.opportunity_id,
        "furthest": ibis.ifelse(outcome == "won", len(stages), furthest),
        "outcome": outcome,
        "amount": j.amount if "amount" in o.columns else ibis.null("float64"),
    }
    for i, s in enumerate(stages):
        cols[f"_in_{i}"] = (j[f"_h_{i}"].fill_null(0) == 1) | (j.stage == s).fill_null(False)
    return j.select(**cols)


def stage_win_rates(r, eng, config) -> pd.DataFrame:
    """Historical win rate per open stage over ``reached(...)``: of the closed deals whose furthest stage
    is at or beyond it (any-stage), the share won by count (won ÷ reached) and by value (won amount ÷
    reached amount, empty amounts as 0)."""
    stages = list(config.open_stages)
    closed = r.filter(r.outcome != "open")
    amt = closed.amount.fill_null(0.0)
    won = closed.outcome == "won"
    agg = {}
    for i in range(len(stages)):
        at = closed.furthest >= i
        agg[f"n{i}"] = ibis.ifelse(at, 1, 0).sum()
        agg[f"w{i}"] = ibis.ifelse(at & won, 1, 0).sum()
        agg[f"a{i}"] = ibis.ifelse(at, amt, 0.0).sum()
        agg[f"wa{i}"] = ibis.ifelse(at & won, amt, 0.0).sum()
    got = eng.execute(closed.aggregate(**agg)).iloc[0] if stages else {}
    rows = []
    for i, s in enumerate(stages):
        n_, w_ = _int(got[f"n{i}"]), _int(got[f"w{i}"])
        a_, wa_ = _float(got[f"a{i}"]), _float(got[f"wa{i}"])
        rows.append(
            {
                "stage": s,
                "closed_deals_reached": n_,
                "won": w_,
                "win_rate": _ratio(w_, n_),
                "win_rate_value": _ratio(wa_, a_),
            }
        )
    return pd.DataFrame(rows, columns=["stage", "closed_deals_reached", "won", "win_rate", "win_rate_value"])


def stage_conversion(r, eng, config, variant: str = "any") -> pd.DataFrame:
    """Stage-to-stage conversion and leakage over ``reached(...)``.

    - ``any``: reached(s) = deals whose furthest stage is s or later (a deal that skipped s counts as
      having passed it); converted = furthest beyond s.
    - ``strict``: reached(s) = deals recorded in s; converted = deals also recorded in the next stage
      (for the last open stage: won).
    - conversion = converted ÷ reached; lost_here / open_here = deals lost / open now whose furthest
      stage is s (where the funnel leaks)."""
    if variant not in ("any", "strict"):
        raise ValueError("variant must be 'any' or 'strict'")
    stages = list(config.open_stages)
    agg = {}
    for i, _s in enumerate(stages):
        if variant == "any":
            reached_s, conv = r.furthest >= i, r.furthest > i
        else:
            reached_s = r[f"_in_{i}"]
            conv = reached_s & ((r.outcome == "won") if i + 1 == len(stages) else r[f"_in_{i + 1}"])
        at = r.furthest == i
        agg[f"r{i}"] = ibis.ifelse(reached_s, 1, 0).sum()
        agg[f"c{i}"] = ibis.ifelse(conv, 1, 0).sum()
        agg[f"l{i}"] = ibis.ifelse(at & (r.outcome == "lost"), 1, 0).sum()
        agg[f"o{i}"] = ibis.ifelse(at & (r.outcome == "open"), 1, 0).sum()
    got = eng.execute(r.aggregate(**agg)).iloc[0] if stages else {}
    rows = []
    for i, s in enumerate(stages):
        nxt = stages[i + 1] if i + 1 < len(stages) else "Won"
        rs, cv = _int(got[f"r{i}"]), _int(got[f"c{i}"])
        rows.append(
            {
                "stage": s,
                "next": nxt,
                "reached": rs,
                "converted": cv,
                "conversion": _ratio(cv, rs),
                "lost_here": _int(got[f"l{i}"]),
                "open_here": _int(got[f"o{i}"]),
            }
        )
    return pd.DataFrame(
        rows, columns=["stage", "next", "reached", "converted", "conversion", "lost_here", "open_here"]
    )


def _int(x) -> int:
    return 0 if x is None or pd.isna(x) else int(x)


def _float(x) -> float:
    return 0.0 if x is None or pd.isna(x) else float(x)


def _ratio(num, den) -> float:
    return float(num) / float(den) if den else float("nan")


# --------------------------------------------------------------------------------------------------
# days in stage, stalled
# --------------------------------------------------------------------------------------------------
def stays(d: Deals, config):
    """One row per stay in an open stage up to the end of ``d.as_of`` (consecutive rows in the same stage
    are one stay): opportunity_id, stage, entered, exited (empty while current), is_current, days =
    (exited, or as_of for the current stay) − entered in whole days, outcome (won / lost / open now)."""
    as_of, n = d.as_of, d.norm
    cut = _ts(as_of + DAY)
    # the rows up to the day are a prefix of each deal's rows: a stay starts and ends as in the whole
    # history, and one whose next stay starts later is current
    s = n.filter(n._new, n.changed_at < cut)
    s = s.mutate(exited=ibis.ifelse(s._exit < cut, s._exit, ibis.null("timestamp")))
    s = (
        s.filter(s.stage.isin(list(config.open_stages)))
        if config.open_stages
        else s.filter(ibis.literal(False))
    )
    current = s.exited.isnull()
    end = ibis.ifelse(current, day(as_of), s.exited.date())
    days = end.delta(s.changed_at.date(), unit="day").cast("float64")
    o = d.opps
    oc = o.select(_d=o.opportunity_id, outcome=_outcome(o))
    s = s.left_join(oc, s.opportunity_id == oc._d)
    return s.select(
        "opportunity_id",
        "stage",
        entered=s.changed_at,
        exited=s.exited,
        days=days,
        is_current=current,
        outcome=s.outcome,
    )


def spread(counts: pd.DataFrame, value: str, n: str = "_n") -> pd.Series:
    """The values of ``counts`` (one row per value: ``value`` and how many times it occurs, ``n``), each
    repeated that many times, in ascending order, as float64: what pandas' own median and quantiles are
    taken over when only the counts per value came back from the engine."""
    h = counts.sort_values(value)
    return pd.Series(np.repeat(h[value].to_numpy(dtype="float64"), h[n].to_numpy(dtype="int64")))


def _order_statistics(t, eng, by: str, value: str, quantiles, groups) -> dict[str, pd.Series]:
    """Per group of ``by`` (each of ``groups``), a sorted float64 Series as long as the group's values of
    ``value`` in ``t`` whose entries at the positions pandas' median and linear ``quantiles`` read are
    the values' own there (the others repeat the nearest one below, so the Series stays sorted): the same
    median and quantiles as over every value, from the few rows around those positions (on the engine:
    the values ranked per group, only the rows near each quantile's position come back)."""
    ranked = t.mutate(
        _k=ibis.row_number().over(group_by=t[by], order_by=t[value]),
        _n=t.count().over(group_by=t[by]),
    )
    near = []
    for q in quantiles:
        h = (ranked._n - 1).cast("float64") * float(q)
        near.append((ranked._k >= h.floor() - 1) & (ranked._k <= h.ceil() + 1))
    got = eng.execute(ranked.filter(ibis.or_(*near)).select(by, value, "_k", "_n"))
    out = {}
    for g in groups:
        rows = got[got[by] == g].sort_values("_k")
        n = int(rows["_n"].iloc[0]) if len(rows) else 0
        k, x = rows["_k"].to_numpy(dtype="int64"), rows[value].to_numpy(dtype="float64")
        at = np.searchsorted(k, np.arange(n), side="right") - 1
        out[g] = pd.Series(x[np.maximum(at, 0)] if n else np.array([], dtype="float64"), dtype="float64")
    return out


def days_in_stage_benchmark(v, eng, config, quantile: float = 0.75) -> pd.DataFrame:
    """The days-in-stage benchmark over ``stays(...)``: per open stage, the won deals' completed
    stays, their median days and the ``quantile`` (p75) days, pandas' own: on DuckDB over the days'
    counts per value (a few hundred rows), elsewhere over the few values around each quantile's position
    (``_order_statistics``)."""
    done = v.filter(~v.is_current & (v.outcome == "won"))
    if eng.name == "duckdb":  # in this process: every value's count
        hist = eng.execute(done.group_by(["stage", "days"]).aggregate(_n=done.count()))
        per_stage = {s: spread(hist[hist["stage"] == s], "days") for s in config.open_stages}
    else:
        per_stage = _order_statistics(done, eng, "stage", "days", (0.5, quantile), config.open_stages)
    rows = []
    for s in config.open_stages:
        days = per_stage[s]
        rows.append(
            {
                "stage": s,
                "won_stays": float(len(days)) if len(days) else float("nan"),  # as pandas' reindex leaves it
                "median_days": days.median() if len(days) else float("nan"),
                "threshold_days": days.quantile(quantile) if len(days) else float("nan"),
            }
        )
    return pd.DataFrame(rows, columns=["stage", "won_stays", "median_days", "threshold_days"])


def stalled_deals(v, d: Deals, benchmark: pd.DataFrame, fixed_days: int | None = None) -> pd.DataFrame:
    """Stalled deals: open deals whose current stay is longer than the threshold (the
    benchmark's p75 for the stage, or ``fixed_days``); largest amount first (then by deal id)."""
    j = _stalled(v, d, benchmark, fixed_days)
    keep = ["opportunity_id", "account", "owner", "stage", "amount", "days", "threshold_days", "entered"]
    keep += ["close_date", "next_step"]
    out = d.execute(j.select(*[c for c in keep if c in j.columns]))
    out = out.rename(columns={"days": "days_in_stage"})
    return _sorted(out, ["amount"], [False])


def stalled_count(v, d: Deals, benchmark: pd.DataFrame, fixed_days: int | None = None) -> int:
    """How many rows ``stalled_deals`` lists, counted where the deals live (one row comes back)."""
    j = _stalled(v, d, benchmark, fixed_days)
    return int(d.execute(j.aggregate(_n=j.count())).iloc[0, 0])


def stalled_rows(v, d: Deals, benchmark: pd.DataFrame, fixed_days: int | None = None) -> ibis.Table:
    """``stalled_deals``' rows where the deals live (an expression: nothing is sent)."""
    return _stalled(v, d, benchmark, fixed_days)


def stalled_per_stage(rows: ibis.Table, d: Deals) -> pd.Series:
    """How many of ``rows`` (``stalled_rows``) each stage holds: stage → count, sorted by stage, as
    ``stalled_deals(...).groupby("stage").size()`` (one row per stage comes back)."""
    got = d.execute(rows.group_by("stage").aggregate(_n=rows.count()))
    return got.set_index("stage")["_n"].astype("int64").sort_index().rename_axis("stage")


def _stalled(v, d: Deals, benchmark: pd.DataFrame, fixed_days: int | None) -> ibis.Table:
    """``stalled_deals``' rows with the deal's columns, where the deals live."""
    cur = v.filter(v.is_current & (v.outcome == "open"))
    if fixed_days:
        cur = cur.mutate(threshold_days=ibis.literal(float(fixed_days)))
    else:
        thr = benchmark[["stage", "threshold_days"]].dropna()
        pairs = [(str(s), float(t)) for s, t in zip(thr["stage"], thr["threshold_days"], strict=True)]
        t = cur.stage.cases(*pairs, else_=ibis.null("float64")) if pairs else ibis.null("float64")
        cur = cur.mutate(threshold_days=t)
    st = cur.filter(cur.days > cur.threshold_days)
    o = d.opps
    cols = [c for c in ("account", "owner", "amount", "close_date", "next_step") if c in o.columns]
    oc = o.select(_d=o.opportunity_id, **{c: o[c] for c in cols})
    return st.left_join(oc, st.opportunity_id == oc._d)


def _sorted(df: pd.DataFrame, by: list, ascending: list) -> pd.DataFrame:
    """``df`` sorted by ``by`` with the deal id breaking ties (engines return rows in no set order)."""
    if "amount" in by and "amount" not in df.columns:
        i = by.index("amount")
        by, ascending = by[:i] + by[i + 1 :], ascending[:i] + ascending[i + 1 :]
    return df.sort_values([*by, "opportunity_id"], ascending=[*ascending, True], kind="stable").reset_index(
        drop=True
    )


# --------------------------------------------------------------------------------------------------
# slipped deals
# --------------------------------------------------------------------------------------------------
def close_date_changes(d: Deals, config):
    """Every change of expected close date while the
    deal was open — opportunity_id, changed_at, _rn, from_date, to_date, days_moved."""
    n = d.norm.mutate(from_date=d.norm._prev_close)
    was_open = n._prev_stage.isin(list(config.open_stages)) if config.open_stages else ibis.literal(False)
    moved = flag(was_open) & n.from_date.notnull() & n.close_date.notnull() & (n.close_date != n.from_date)
    ch = n.filter(moved)
    return ch.select(
        "opportunity_id",
        "changed_at",
        "_rn",
        "from_date",
        to_date=ch.close_date,
        days_moved=ch.close_date.delta(ch.from_date, unit="day"),
    )


def slipped_deals(d: Deals, config, start, end) -> pd.DataFrame:
    """Slipped deals: those whose close date was pushed later by changes made in
    ``[start, end]`` — times pushed, days pushed, the close date before the first push, the close date
    now, with the deal's account, owner, stage, amount; open deals first, then most pushed first."""
    return _slipped_order(d.execute(_slipped(d, config, start, end)))


@dataclass(frozen=True)
class Slipped:
    """``slipped_deals`` as a report reads it: how many deals slipped and how many pushes, every open
    one (a deal needing attention) and the first closed ones of the list (``deals``, in its order)."""

    count: int
    pushes: int
    deals: pd.DataFrame


def slipped_summary(d: Deals, config, start, end, closed_rows: int = 15) -> Slipped:
    """``slipped_deals`` without sending every closed deal: the number of deals and pushes come back
    as totals, the rows of the open deals and of the first ``closed_rows`` (≥ 1) closed ones in the
    list's order (most pushed, most days, then by id; those tied with the last come too). Its ``deals``
    are the rows of ``slipped_deals`` that are open or among those first closed ones."""
    s = _slipped(d, config, start, end)
    closed = flag(s.is_closed) if "is_closed" in s.columns else ibis.literal(False)
    s = s.mutate(_c=closed)
    # ranked by pushes and days only: every deal tied at the edge comes back, ordered by id here
    order = [ibis.desc(s.times_pushed), ibis.desc(s.days_pushed)]
    s = s.mutate(
        _r=ibis.rank().over(ibis.window(group_by="_c", order_by=order)),
        _all=s.count().over(ibis.window()),
        _pushes=s.times_pushed.sum().over(ibis.window()),
    )
    got = d.execute(s.filter(~s._c | (s._r < max(int(closed_rows), 1))))
    count = int(got["_all"].iloc[0]) if len(got) else 0
    pushes = int(got["_pushes"].iloc[0]) if len(got) else 0
    return Slipped(count, pushes, _slipped_order(got.drop(columns=["_c", "_r", "_all", "_pushes"])))


def slipped_count(d: Deals, config, start, end) -> int:
    """``slipped_summary``'s ``count`` alone: how many deals slipped, counted where the deals live."""
    s = _slipped(d, config, start, end)
    return int(d.execute(s.aggregate(_n=s.count())).iloc[0, 0])


def _slipped(d: Deals, config, start, end) -> ibis.Table:
    """``slipped_deals``' rows, where the deals live."""
    ch = close_date_changes(d, config)
    ch = ch.filter(
        ch.changed_at >= _ts(pd.Timestamp(start)),
        ch.changed_at < _ts(pd.Timestamp(end) + DAY),
        ch.days_moved > 0,
    )
    # each push's place in time within the deal (window functions: PostgreSQL has no first/last)
    ch = ch.mutate(
        _i=ibis.row_number().over(ibis.window(group_by="opportunity_id", order_by=["changed_at", "_rn"])),
        _n=ch.count().over(ibis.window(group_by="opportunity_id")),
    )
    g = ch.group_by(_d=ch.opportunity_id).aggregate(
        times_pushed=ch.count(),
        days_pushed=ch.days_moved.sum(),
        original_close_date=ibis.ifelse(ch._i == 0, ch.from_date, ibis.null("date")).max(),
        latest_close_date=ibis.ifelse(ch._i == ch._n - 1, ch.to_date, ibis.null("date")).max(),
    )
    o = d.opps
    cols = [c for c in ("account", "owner", "stage", "amount", "is_closed") if c in o.columns]
    oc = o.select(_o=o.opportunity_id, **{c: o[c] for c in cols})
    j = g.left_join(oc, g._d == oc._o)
    return j.select(
        opportunity_id=j._d,
        times_pushed=j.times_pushed,
        days_pushed=j.days_pushed,
        original_close_date=j.original_close_date,
        latest_close_date=j.latest_close_date,
        **{c: j[c] for c in cols},
    )


def _slipped_order(out: pd.DataFrame) -> pd.DataFrame:
    """Slipped deals' rows in the list's order: open deals first, then most pushed first."""
    out["_closed"] = out["is_closed"].fillna(False).astype(bool) if "is_closed" in out.columns else False
    out = out.sort_values(
        ["_closed", "times_pushed", "days_pushed", "opportunity_id"],
        ascending=[True, False, False, True],
        kind="stable",
    )
    return out.drop(columns="_closed").reset_index(drop=True)


# --------------------------------------------------------------------------------------------------
# snapshots: what changed in a week, the pipeline on the same day of earlier quarters, forecast
# accuracy, the waterfall, the calibration of CRM probabilities
# --------------------------------------------------------------------------------------------------
def snapshots(d: Deals, dates) -> pd.DataFrame:
    """The replay of the scope's deals at ``dates``, as a frame (for a scope small enough to
    list: the review pack's rep): sorted by snapshot date, then deal."""
    out = d.execute(ex.replay(d.eng, dates, d.norm))
    for c in ("snapshot_date", "created_date", "close_date"):
        out[c] = pd.to_datetime(out[c]).astype("datetime64[us]")
    return out.sort_values(["snapshot_date", "opportunity_id"], kind="stable").reset_index(drop=True)


def won_amounts(d: Deals, windows) -> list[float]:
    """Σ amount (empty = 0) of ``d``'s deals won with close date in each ``[start, end]`` of ``windows``,
    summed on the engine in one query."""
    if not windows:
        return []
    o = d.opps
    won, amt = flag(o.is_won), ex.amount(o)
    got = d.execute(
        o.aggregate(
            **{
                f"w{i}": ibis.ifelse(
                    won & (o.close_date >= day(s)) & (o.close_date <= day(e)), amt, 0.0
                ).sum()
                for i, (s, e) in enumerate(windows)
            }
        )
    ).iloc[0]
    return [_float(got[f"w{i}"]) for i in range(len(windows))]


def pipeline_same_day(d: Deals, cal, as_of, n_quarters: int = 4, next_quarter: bool = False) -> pd.DataFrame:
    """The pipeline on the same day of the current and ``n_quarters`` earlier fiscal quarters (with
    ``next_quarter``: of the quarter after ``as_of``, at the same distance before it starts). Snapshot
    date of quarter k = its start + (as_of − the measured quarter's start), capped at its end. Per
    snapshot: won_to_date (won by then, close date in the quarter), open_deals / open_in_quarter (open
    then, close date in the quarter: count, Σ amount), weighted (Σ amount × probability of those) and
    final_won (what the quarter finally booked: ``won_amounts`` of ``d``'s deals), summed on the engine."""
    as_of = pd.Timestamp(as_of)
    q0 = cal.quarter_start(as_of) + pd.DateOffset(months=3 if next_quarter else 0)
    offset = as_of - q0
    plan = []
    for k in range(n_quarters, -1, -1):
        qs = q0 - pd.DateOffset(months=3 * k)
        qe = qs + pd.DateOffset(months=3) - DAY
        plan.append((cal.quarter_label(qs), qs, qe, min(qs + offset, qe)))
    s = ex.replay(d.eng, [p[3] for p in plan], d.norm)
    in_q = ibis.literal(False)
    for _label, qs, qe, when in plan:
        in_q = in_q | ((s.snapshot_date == day(when)) & (s.close_date >= day(qs)) & (s.close_date <= day(qe)))
    in_q = in_q.fill_null(False)
    amt = s.amount.fill_null(0.0)
    open_q = s.is_open & in_q
    got = d.execute(
        s.group_by("snapshot_date").aggregate(
            won_to_date=ibis.ifelse(s.is_won & in_q, amt, 0.0).sum(),
            open_deals=ibis.ifelse(open_q, 1, 0).sum(),
            open_in_quarter=ibis.ifelse(open_q, amt, 0.0).sum(),
            weighted=ibis.ifelse(open_q, amt * s.probability.fill_null(0.0), 0.0).sum(),
        )
    )
    got.index = pd.to_datetime(got["snapshot_date"]).astype("datetime64[us]")
    done = [(qs, qe) for _label, qs, qe, _when in plan if qe <= as_of]  # complete quarters
    final = dict(zip(done, won_amounts(d, done), strict=True))
    rows = []
    for label, qs, qe, when in plan:
        g = got.loc[when] if when in got.index else {}
        rows.append(
            {
                "quarter": label,
                "snapshot_date": when,
                "won_to_date": _float(g.get("won_to_date")) if len(g) else 0.0,
                "open_deals": _int(g.get("open_deals")) if len(g) else 0,
                "open_in_quarter": _float(g.get("open_in_quarter")) if len(g) else 0.0,
                "weighted": _float(g.get("weighted")) if len(g) else 0.0,
                "final_won": final.get((qs, qe), float("nan")),
                "complete": bool(qe <= as_of),
            }
        )
    return pd.DataFrame(rows)


def forecast_accuracy(d: Deals, start, end) -> pd.DataFrame:
    """What the weighted pipeline said at each week of a past period against what closed: at each
    weekly snapshot in ``[start, end]``, forecast = won by then with close date in the period + Σ amount
    × probability of the deals open then with close date in the period; actual = Σ amount won with close
    date in the period (``won_amounts`` of ``d``'s deals); error = forecast − actual; abs_pct_error = |error| ÷
    actual. The snapshots are summed on the engine."""
    start, end = pd.Timestamp(start), pd.Timestamp(end)
    g = ex.forecast_snapshots(d.eng, start, end, weekly_dates(start, end), d.norm)
    (actual,) = won_amounts(d, [(start, end)])
    g["forecast"] = g["won_to_date"] + g["weighted_open"]
    g["actual"] = actual
    g["error"] = g["forecast"] - actual
    g["abs_pct_error"] = g["error"].abs() / actual if actual else np.nan
    return g


def waterfall(d: Deals, start, end, as_of=None) -> pd.DataFrame:
    """The waterfall of the period's pipeline (deals open with close date in ``[start, end]``) from
    the end of the day before ``start`` to min(end, as_of), summed on the engine (``expr.waterfall``:
    the terms' definitions): step, term, amount (signed), deals; the last row ``check`` is 0."""
    out = ex.waterfall(d.eng, start, end, as_of, d.norm)
    out.insert(0, "step", out["term"].map(ex.WATERFALL_LABELS))
    return out


def probability_calibration(
    d: Deals, config, dates, bins=(0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0)
) -> pd.DataFrame:
    """How well the CRM probability predicted the outcome: (deal, snapshot date) pairs with the deal
    open then and closed now, bucketed by its probability then; per bucket observations, deals,
    predicted (mean probability), actual (share won) and gap = actual − predicted."""
    s = ex.replay(d.eng, dates, d.norm)
    s = s.filter(s.is_open)
    o = d.opps
    won = ibis.ifelse(flag(o.is_won), 1.0, ibis.ifelse(flag(o.is_closed), 0.0, ibis.null("float64")))
    oc = o.select(_d=o.opportunity_id, won=won)
    j = s.join(oc, s.opportunity_id == oc._d)
    j = j.filter(j.won.notnull(), j.probability.notnull())
    edges = [float(e) for e in bins]
    p = j.probability
    bucket = ibis.null("int64")
    for i in range(len(edges) - 2, -1, -1):  # right-closed, the first bucket including its left edge
        lo, hi = edges[i], edges[i + 1]
        inside = ((p >= lo) if i == 0 else (p > lo)) & (p <= hi)
        bucket = ibis.ifelse(inside, i, bucket)
    j = j.mutate(_b=bucket).filter(lambda t: t._b.notnull())
    g = d.execute(
        j.group_by("_b").aggregate(
            observations=j.won.count(),
            deals=j.opportunity_id.nunique(),
            _p=j.probability.sum(),
            _w=j.won.sum(),
        )
    ).sort_values("_b")
    names = [f"{lo * 100:g}–{hi * 100:g}%" for lo, hi in zip(edges[:-1], edges[1:], strict=True)]
    out = pd.DataFrame(
        {
            "bucket": pd.Series([names[int(b)] for b in g["_b"]], dtype="str"),
            "observations": g["observations"].astype("int64").to_numpy(),
            "deals": g["deals"].astype("int64").to_numpy(),
            "predicted": (g["_p"] / g["observations"]).to_numpy(dtype="float64"),
            "actual": (g["_w"] / g["observations"]).to_numpy(dtype="float64"),
        }
    )
    out["gap"] = out["actual"] - out["predicted"]
    return out
