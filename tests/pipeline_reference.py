"""The pandas reference of the pipeline measures that read deals outside the pipeline notebook's
working set: written plainly over a frame of the scope's deals, as ``helpers.metrics.pipeline`` and
``helpers.metrics.history`` computed them before they moved to the engine. The tests hold the engine's
results (``pipeline.deal_size_and_cycle``, ``history.pipeline_same_day`` / ``forecast_accuracy``'s won
amounts, ``pipeline.lead_funnel``) against it on DuckDB, PostgreSQL and Spark.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

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
