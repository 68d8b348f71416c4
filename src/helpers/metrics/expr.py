"""Metrics as Ibis expressions over the canonical tables, run where the data lives.

Each metric is built once as an Ibis expression on an ``Engine``'s tables (``helpers.data.engine``) and
runs unchanged on DuckDB, PostgreSQL and Spark; only its aggregated result comes back, as a small pandas
frame. The figures are those of the pandas functions named in each docstring (same definitions, same
edge cases), which the tests check on the sample dataset on every engine:

- **Win rate** (``win_rate``, ``win_rates``): deals with ``is_closed`` and ``start <= close_date <= end``;
  won = ``is_won``. By count = won ÷ closed. By value = won amount ÷ closed amount, where a deal
  without an amount counts in the count rate but adds nothing to the value rate.
- **Bookings** (``bookings``): Σ amount of won deals with ``start <= close_date <= end``.
- **Open pipeline by stage** (``pipeline_by_stage``): deals with ``is_closed`` false, their amount
  (empty = 0) and stage-weighted amount (amount × CRM probability, else the stage's default from
  ``dataset.yml``).

Grouping (``by``): ``None`` (one row, group ``All``), ``"team"`` (the owner's team from ``reps``) or any
column of ``opportunities`` (``owner``, ``segment``, ``region``, …). Rows whose key is empty form the
group ``missing`` (``"(not set)"`` by default), or are left out with ``missing=None``.
"""

from __future__ import annotations

import math

import ibis
import pandas as pd

NOT_SET = "(not set)"


# --------------------------------------------------------------------------------------------------
# building blocks
# --------------------------------------------------------------------------------------------------
def day(value):
    """A date literal (``value``: anything ``pd.Timestamp`` reads)."""
    return ibis.literal(pd.Timestamp(value).date(), type="date")


def flag(col):
    """A nullable boolean column with empty = false."""
    return col.fill_null(False)


def amount(t):
    """``amount`` with empty = 0 (0 when the table has no amount column)."""
    return t.amount.fill_null(0.0) if "amount" in t.columns else ibis.literal(0.0)


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


def _ratio(num, den) -> float:
    return math.nan if den is None or pd.isna(den) or den == 0 else float(num) / float(den)


# --------------------------------------------------------------------------------------------------
# win rate
# --------------------------------------------------------------------------------------------------
def win_rate_counts(eng, start, end, by: str | None = None, missing: str | None = NOT_SET):
    """Per group, over the deals closed in ``[start, end]``: deals, won, lost, won_amount,
    closed_amount and lost_amount_known (lost deals with a positive amount). An Ibis expression."""
    c = with_group(eng, closed_between(eng["opportunities"], start, end), by, missing)
    won = flag(c.is_won)
    amt = amount(c)
    return c.group_by("group").aggregate(
        deals=c.count(),
        won=ibis.ifelse(won, 1, 0).sum(),
        lost=ibis.ifelse(won, 0, 1).sum(),
        won_amount=ibis.ifelse(won, amt, 0.0).sum(),
        closed_amount=amt.sum(),
        lost_amount_known=ibis.ifelse(~won & (c.amount > 0), 1, 0).sum() if "amount" in c.columns else 0,
    )


def _counts_frame(eng, expr) -> pd.DataFrame:
    out = eng.execute(expr)
    for col in ("deals", "won", "lost", "lost_amount_known"):
        out[col] = out[col].fillna(0).astype("int64")
    for col in ("won_amount", "closed_amount"):
        out[col] = out[col].astype("float64").fillna(0.0)
    out["group"] = out["group"].astype("str")
    return out


def win_rate(eng, start, end) -> dict:
    """``helpers.metrics.pipeline.win_rate`` on the engine: closed, won, lost, win_rate_count,
    won_value, closed_value, win_rate_value (won value ÷ closed value; NaN when nothing closed had a
    value)."""
    g = _counts_frame(eng, win_rate_counts(eng, start, end))
    row = g.iloc[0] if len(g) else pd.Series(0, index=g.columns)
    won_value, closed_value = float(row["won_amount"]), float(row["closed_amount"])
    return {
        "closed": int(row["deals"]),
        "won": int(row["won"]),
        "lost": int(row["lost"]),
        "win_rate_count": _ratio(row["won"], row["deals"]),
        "won_value": won_value,
        "closed_value": closed_value,
        "win_rate_value": _ratio(won_value, closed_value),
    }


def win_rates(eng, start, end, by: str | None = None) -> pd.DataFrame:
    """Per group of ``by``, the figures of ``helpers.metrics.winloss.win_rates`` before pooling and
    intervals: group, deals, won, lost, win_rate, won_amount, closed_amount, value_win_rate (won amount ÷
    closed amount; NaN when the closed amount is 0, or when the group has lost deals of which none has a
    positive amount). Ordered by deals (most first), then group."""
    g = _counts_frame(eng, win_rate_counts(eng, start, end, by))
    if by is None and g.empty:
        g = pd.DataFrame([{"group": "All", **dict.fromkeys(g.columns.drop("group"), 0)}])
    g["win_rate"] = g["won"] / g["deals"].where(g["deals"] > 0)
    value_ok = (g["closed_amount"] > 0) & ((g["lost"] == 0) | (g["lost_amount_known"] > 0))
    g["value_win_rate"] = (g["won_amount"] / g["closed_amount"].where(g["closed_amount"] > 0)).where(value_ok)
    g = g.sort_values(["deals", "group"], ascending=[False, True], kind="stable").reset_index(drop=True)
    cols = ["group", "deals", "won", "lost", "win_rate", "won_amount", "closed_amount", "value_win_rate"]
    return g[cols]


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
