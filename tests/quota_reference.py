"""The pandas reference of what the quota plan asks of the opportunities: written plainly over the loaded
frame (as ``helpers.metrics.quota`` computed it before the plan's aggregates moved to the engine). The
tests hold the engine's results (``quota.won_by_month`` and what is made from it, ``quota.recent_owners``,
``quota.seller_ids``, ``quota.funnel_rates``) against it on DuckDB, PostgreSQL and Spark.
"""

from __future__ import annotations

import pandas as pd

from helpers.data.calendar import trailing_window
from helpers.metrics import rates as R


def won_deals(opps: pd.DataFrame) -> pd.DataFrame:
    """Won deals with a close date and an amount."""
    won = opps["is_won"].fillna(False).astype(bool) & opps["close_date"].notna() & opps["amount"].notna()
    return opps.loc[won]


def monthly_bookings(opps: pd.DataFrame) -> pd.DataFrame:
    """Σ amount of won deals per owner and close month (columns owner, month, bookings)."""
    won = won_deals(opps)
    return (
        won.assign(month=won["close_date"].dt.to_period("M").dt.to_timestamp())
        .groupby(["owner", "month"], as_index=False)["amount"]
        .sum()
        .rename(columns={"amount": "bookings"})
    )


def basis_bookings(opps: pd.DataFrame, start, end) -> float:
    won = won_deals(opps)
    return float(won.loc[(won["close_date"] >= start) & (won["close_date"] <= end), "amount"].sum())


def team_history(opps: pd.DataFrame, start, end, team_of: dict) -> pd.Series:
    """Σ amount of the deals won in ``[start, end]`` per team of their owner."""
    won = won_deals(opps)
    in_basis = won.loc[(won["close_date"] >= start) & (won["close_date"] <= end)]
    return in_basis.groupby(in_basis["owner"].map(team_of))["amount"].sum()


def seasonality_bookings(opps: pd.DataFrame, months: pd.DatetimeIndex) -> pd.Series:
    """Company bookings per month of ``months`` from the first won deal's month (the series the
    seasonal shares average)."""
    b = monthly_bookings(opps).groupby("month")["bookings"].sum().reindex(months, fill_value=0.0)
    first_deal = won_deals(opps)["close_date"].min()
    if pd.notna(first_deal):
        b = b[b.index >= pd.Timestamp(first_deal).to_period("M").to_timestamp()]
    return b


def recent_owners(opps: pd.DataFrame, as_of) -> list[str]:
    a = pd.Timestamp(as_of).normalize()
    recent = (opps["created_date"] > a - pd.DateOffset(years=1)) | (
        opps["close_date"] > a - pd.DateOffset(years=1)
    )
    return sorted(opps.loc[recent, "owner"].dropna().unique())


def owners(opps: pd.DataFrame) -> list[str]:
    return sorted(str(x) for x in opps["owner"].dropna().astype("str").unique())


def funnel_deals(opps: pd.DataFrame, as_of, months: int = 12, who=None) -> tuple[dict, int]:
    """The deal side of the reverse funnel: ``rates.totals`` of the deals closed in the window, and the
    deals created in it."""
    start, a = trailing_window(as_of, months)
    o = opps if who is None else opps.loc[opps["owner"].isin(list(who))]
    created = int(((o["created_date"] >= start) & (o["created_date"] <= a)).sum())
    return R.totals(R.closed_in(o, start, a)), created
