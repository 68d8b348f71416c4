"""The pandas reference of the pipeline measures that moved to the engine: written plainly over a frame
of the scope's deals, as ``helpers.metrics.pipeline`` and ``helpers.metrics.history`` computed them
before. First the measures that read deals outside the pipeline notebook's working set
(``pipeline.deal_size_and_cycle``, ``history.pipeline_same_day`` / ``forecast_accuracy``'s won amounts,
``pipeline.lead_funnel``), then those that read closed or created deals. The tests hold the engine's
results against them on DuckDB, PostgreSQL and Spark.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import rates_reference as RR

from helpers.data.calendar import Window, month_starts, trailing_window, week_starts
from helpers.metrics import pipeline as P
from helpers.metrics.expr import as_table, keyed


def _flag(s: pd.Series) -> pd.Series:
    return s.fillna(False).astype(bool)


def _amount(df: pd.DataFrame) -> pd.Series:
    return df["amount"].fillna(0.0) if "amount" in df.columns else pd.Series(0.0, index=df.index)


def deal_size_and_cycle(opps: pd.DataFrame, cal, start, end, freq: str = "month") -> pd.DataFrame:
    """Won deals closed in ``[start, end]`` per close month (``YYYY-MM``) or fiscal quarter: won deals,
    bookings, average deal size, average and median cycle days (close − created)."""
    w = opps[
        _flag(opps["is_won"])
        & (opps["close_date"] >= pd.Timestamp(start))
        & (opps["close_date"] <= pd.Timestamp(end))
    ]
    w = w.assign(cycle=(w["close_date"] - w["created_date"]).dt.days.astype("float64"), amt=_amount(w))
    key = w["close_date"].dt.strftime("%Y-%m") if freq == "month" else cal.quarter_labels(w["close_date"])
    return (
        w.groupby(key.rename("period"))
        .agg(
            won_deals=("opportunity_id", "count"),
            bookings=("amt", "sum"),
            avg_deal_size=("amt", "mean"),
            avg_cycle_days=("cycle", "mean"),
            median_cycle_days=("cycle", "median"),
        )
        .reset_index()
    )


def amount_of(opps: pd.DataFrame, start, end) -> float:
    """Σ amount of the deals won with close date in ``[start, end]``."""
    won = _flag(opps["is_won"]) & (opps["close_date"] >= start) & (opps["close_date"] <= end)
    return float(opps.loc[won, "amount"].fillna(0.0).sum()) if "amount" in opps.columns else 0.0


def lead_funnel(leads, opps: pd.DataFrame, start, end, by: str | None = "source") -> pd.DataFrame:
    """The lead funnel with the won and open deal ids of the frame ``opps`` sent as columns."""
    import ibis

    t = as_table(leads)
    lo, hi = pd.Timestamp(start), pd.Timestamp(end)
    lead = t.filter(
        t.created_date >= ibis.literal(lo.date(), type="date"),
        t.created_date <= ibis.literal(hi.date(), type="date"),
    )
    status = pd.concat(
        [
            pd.DataFrame({"_deal": opps.loc[_flag(opps["is_won"]), "opportunity_id"], "_won": 1, "_open": 0}),
            pd.DataFrame(
                {"_deal": opps.loc[~_flag(opps["is_closed"]), "opportunity_id"], "_won": 0, "_open": 1}
            ),
        ]
    )
    status = status.dropna(subset=["_deal"]).astype({"_deal": "str", "_won": "int64", "_open": "int64"})
    status = status.groupby("_deal", as_index=False).max()  # (an id both won and open counts as both)
    is_mql = lead.mql_date.notnull() if "mql_date" in lead.columns else ibis.literal(False)
    is_sql = lead.sql_date.notnull() if "sql_date" in lead.columns else ibis.literal(False)
    if "opportunity_id" in lead.columns and len(status):
        k = keyed(lead, status)
        lead = lead.left_join(k, lead.opportunity_id.cast("string") == k._deal)
        won, open_ = lead._won.fill_null(0) == 1, lead._open.fill_null(0) == 1
    else:
        won = open_ = ibis.literal(False)
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


DAY = pd.Timedelta(days=1)


# --------------------------------------------------------------------------------------------------
# closed and created deals: bookings, plan, coverage, landing, forecast categories, pipeline created,
# win rate, velocity, the age threshold of stalled deals (pipeline.py's own frame helpers, which
# did not move, are used as they are)
# --------------------------------------------------------------------------------------------------
def bookings(opps, start, end) -> float:
    """Σ amount of won deals with ``start ≤ close_date ≤ end``."""
    m = (
        P.is_won(opps)
        & (opps["close_date"] >= pd.Timestamp(start))
        & (opps["close_date"] <= pd.Timestamp(end))
    )
    return float(P._amount(opps)[m].sum())


def bookings_vs_plan(
    opps,
    quotas,
    windows: dict[str, Window],
    by: str | None = None,
    reps=None,
    company_plan: dict[str, float] | None = None,
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
    """
    rows = []
    won = opps[P.is_won(opps)]
    q = P.bookings_quotas(quotas)  # once for every window
    for name, w in windows.items():
        in_w = won[w.contains(won["close_date"])]
        got = P._amount(in_w).groupby(P._group_key(in_w, by, reps)).sum()
        plan_rep = P._prorated_plan(q, w.start, w.end)
        plan_td_rep = P._prorated_plan(q, w.start, w.as_of)
        if len(plan_rep):
            keyframe = pd.DataFrame({"owner": plan_rep.index.astype("str")})
            keys = P._group_key(keyframe, by, reps)
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
        for i, g in enumerate(groups):
            b = float(got_g[i])
            p = float(plan_g[i])
            ptd = float(plan_td_g[i])
            pace = b / w.elapsed_days * w.total_days
            rows.append(
                {
                    "window": name,
                    "period": w.label,
                    "group": g,
                    "bookings": b,
                    "plan": p,
                    "plan_to_date": ptd,
                    "attainment": P._ratio(b, p),
                    "attainment_to_date": P._ratio(b, ptd),
                    "pace": pace,
                    "pace_attainment": P._ratio(pace, p),
                    "still_to_close": max(p - b, 0.0) if not pd.isna(p) else math.nan,
                }
            )
    out = pd.DataFrame(rows)
    if by is not None:
        out = out.rename(columns={"group": by})
    return out


def forecast_rollup(opps, start, end) -> pd.DataFrame:
    """Forecast categories rolled up cumulatively for deals closing in ``[start, end]``:

    - Closed won = Σ won amount closed in the window
    - Commit = closed won + open Commit
    - Best case = Commit + open Best Case
    - Pipeline = Best case + open Pipeline (Omitted is left out)

    Open deals count when their expected close date lies in the window (past-due ones included); a
    deal without ``forecast_category`` counts as Pipeline."""
    start, end = pd.Timestamp(start), pd.Timestamp(end)
    won = bookings(opps, start, end)
    o = opps[P.is_open(opps) & (opps["close_date"] >= start) & (opps["close_date"] <= end)]
    cat = (
        P.forecast_category_key(o["forecast_category"])
        if "forecast_category" in o.columns
        else pd.Series("pipeline", index=o.index, dtype="str")
    )
    amt = P._amount(o).groupby(cat).sum()
    cnt = o.groupby(cat)["opportunity_id"].count()
    n_won = int((P.is_won(opps) & (opps["close_date"] >= start) & (opps["close_date"] <= end)).sum())
    rows, running = [("Closed won", won, n_won, won)], won
    for label, key in (("Commit", "commit"), ("Best case", "best case"), ("Pipeline", "pipeline")):
        running += float(amt.get(key, 0.0))
        rows.append((label, float(amt.get(key, 0.0)), int(cnt.get(key, 0)), running))
    return pd.DataFrame(rows, columns=["category", "category_amount", "deals", "cumulative"])


def landing(opps, config, window: Window) -> dict:
    """Where a period lands, as a range built from the deals (``window``: the period, to its as-of date):

    - booked = Σ won amount closed in [start, as_of];
    - commit = booked + open Commit deals closing in the period (``forecast_rollup``);
    - likely = booked + Σ amount × CRM probability (else the stage default) of open deals closing in it;
    - best case = commit + open Best Case deals closing in it;
    - run rate = booked ÷ elapsed days × days in the period (the straight-line pace).
    Open deals count when their expected close date lies in [start, end] (past-due ones dated in it included)."""
    fr = forecast_rollup(opps, window.start, window.end).set_index("category")["cumulative"]
    booked = bookings(opps, window.start, window.as_of)
    o = P.weighted_pipeline(P.open_in_period(opps, window.start, window.end), config)
    return {
        "booked": booked,
        "commit": float(fr["Commit"]),
        "likely": booked + float(o["weighted_crm"].sum()),
        "best_case": float(fr["Best case"]),
        "run_rate": booked / window.elapsed_days * window.total_days,
    }


def coverage(
    opps,
    quotas,
    window: Window,
    by: str | None = None,
    reps=None,
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
    """
    won = opps[P.is_won(opps) & window.contains(opps["close_date"])]
    got = P._amount(won).groupby(P._group_key(won, by, reps)).sum()
    o = P.open_in_period(opps, window.start, window.end)
    pipe = P._amount(o).groupby(P._group_key(o, by, reps)).sum()
    cnt = o.groupby(P._group_key(o, by, reps))["opportunity_id"].count()
    plan_rep = P.plan_by_rep(quotas, window.start, window.end)
    if len(plan_rep):
        keys = P._group_key(pd.DataFrame({"owner": plan_rep.index.astype("str")}), by, reps)
        plan = pd.Series(plan_rep.to_numpy(), index=keys.to_numpy()).groupby(level=0).sum()
    elif by is None and company_plan is not None and not pd.isna(company_plan):
        plan = pd.Series({"All": company_plan})
    else:
        plan = pd.Series(dtype="float64")
    groups = sorted(set(got.index) | set(pipe.index) | set(plan.index)) or ["All"]
    rows = []
    for g in groups:
        p = float(plan.get(g, math.nan)) if len(plan) else math.nan
        b = float(got.get(g, 0.0))
        remaining = max(p - b, 0.0) if not pd.isna(p) else math.nan
        op = float(pipe.get(g, 0.0))
        cov = P._ratio(op, remaining)
        status = (
            "no plan"
            if pd.isna(p) or p == 0
            else "quota met"
            if remaining == 0
            else "quarter closed"
            if window.as_of >= window.end
            else "under threshold"
            if cov < threshold
            else "ok"
        )
        rows.append(
            {
                "group": g,
                "plan": p,
                "bookings": b,
                "remaining": remaining,
                "open_deals": int(cnt.get(g, 0)),
                "open_in_period": op,
                "coverage": cov,
                "under_threshold": bool(status == "under threshold"),
                "status": status,
            }
        )
    out = pd.DataFrame(rows)
    return out.rename(columns={"group": by}) if by is not None else out


def pipeline_created(opps, start, end, freq: str = "week", by: str = "source") -> pd.DataFrame:
    """Pipeline created per week (Monday start) or month, by ``by`` (e.g. source): every opportunity
    counts on its ``created_date`` whatever its status now (open, won or lost): deals = count,
    amount = Σ amount."""
    start, end = pd.Timestamp(start), pd.Timestamp(end)
    c = opps[(opps["created_date"] >= start) & (opps["created_date"] <= end)]
    period = week_starts(c["created_date"]) if freq == "week" else month_starts(c["created_date"])
    key = (
        c[by].fillna("(none)").astype("str")
        if by in c.columns
        else pd.Series("All", index=c.index, dtype="str")
    )
    out = (
        pd.DataFrame({"period": period, by: key, "amount": P._amount(c), "id": c["opportunity_id"]})
        .groupby(["period", by])
        .agg(deals=("id", "count"), amount=("amount", "sum"))
        .reset_index()
    )
    return out


def cumulative_bookings(opps, quotas, window: Window, company_plan: float | None = None) -> pd.DataFrame:
    """Per day of the window's full period: cumulative bookings (to ``as_of``) and cumulative plan
    (quota pro-rated by days; without quotas, ``company_plan`` for the full period × elapsed days ÷ days in
    the period; with neither, NaN), for the bookings-against-plan chart."""
    days = pd.date_range(window.start, window.end, freq="D")
    won = opps[P.is_won(opps) & window.contains(opps["close_date"])]
    daily = P._amount(won).groupby(won["close_date"]).sum().reindex(days, fill_value=0.0)
    booked = daily.cumsum().where(days <= window.as_of)
    q = P.bookings_quotas(quotas)
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


def win_rate(opps, start, end) -> dict:
    """Deals closed in ``[start, end]``: win rate by count = won ÷ (won + lost); by value =
    Σ won amount ÷ Σ closed amount; average won deal size over won deals with an amount
    (``helpers.metrics.rates``, the one implementation)."""
    return RR.totals(RR.closed_in(opps, start, end))


def sales_velocity(opps, as_of, months: int = 12) -> dict:
    """Sales velocity = open opportunities × win rate × average deal size ÷ cycle days (revenue per day).

    - open opportunities: open deals on ``as_of``
    - win rate (by count), average won deal size and average cycle of won deals: deals closed in the
      ``trailing_window(as_of, months)``.
    ``per_30_days`` = velocity × 30."""
    as_of = pd.Timestamp(as_of)
    start, _ = trailing_window(as_of, months)
    wr = win_rate(opps, start, as_of)
    w = opps[P.is_won(opps) & (opps["close_date"] >= start) & (opps["close_date"] <= as_of)]
    n_open = int(P.is_open(opps).sum())
    size = wr["avg_deal_size"]
    cyc = float(P.cycle_days(w).mean()) if len(w) else math.nan
    vel = P._ratio(n_open * wr["win_rate_count"] * size, cyc) if not pd.isna(size) else math.nan
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


def stalled_by_age(opps, as_of, quantile: float = 0.75, months: int = 12) -> pd.DataFrame:
    """Without history: open deals older (as_of − created) than the p75 cycle of deals won in
    ``trailing_window(as_of, months)``."""
    as_of = pd.Timestamp(as_of)
    start, _ = trailing_window(as_of, months)
    w = opps[P.is_won(opps) & (opps["close_date"] >= start) & (opps["close_date"] <= as_of)]
    thr = float(P.cycle_days(w).quantile(quantile)) if len(w) else math.nan
    o = opps[~P._flag(opps["is_closed"])].copy()
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
