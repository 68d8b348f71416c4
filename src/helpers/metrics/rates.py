"""Win rate, value win rate and average won deal size: the one implementation every report uses.

Over closed deals (won or lost), per group or overall:

- win rate (count) = won ÷ (won + lost); every closed deal counts, with or without an amount;
- win rate (value) = Σ won amount ÷ Σ closed amount (an empty amount adds 0); not given (NaN) when no
  closed amount is positive, or when there are lost deals and none carries a positive amount (the rate
  would read 100% only because losses are unpriced);
- average won deal size = Σ amount ÷ number of won deals **with** an amount (an unpriced deal is unknown,
  not worth 0).

``pipeline.win_rate`` (a window of deals), win/loss's rates per group (``winloss.pooled_rates``, with
intervals), the quota and activity funnel rates and sales velocity all read these totals.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd


def outcome_totals(key, won, amount) -> pd.DataFrame:
    """Per value of ``key`` (arrays over the closed deals, in their order): deals, won, lost, won_amount,
    closed_amount, lost_amount_known (lost deals with a positive amount), won_priced (won deals with an
    amount) and won_priced_amount. Groups keep their first-seen order."""
    won = np.asarray(won, dtype=bool)
    amount = np.asarray(amount, dtype="float64")
    priced = ~np.isnan(amount)
    amt0 = np.where(priced, amount, 0.0)
    parts = pd.DataFrame(
        {
            "group": np.asarray(key),
            "deals": 1,
            "won": won.astype(int),
            "lost": (~won).astype(int),
            "won_amount": np.where(won, amt0, 0.0),
            "closed_amount": amt0,
            "lost_amount_known": ((~won) & (amt0 > 0)).astype(int),
            "won_priced": (won & priced).astype(int),
            "won_priced_amount": np.where(won & priced, amount, 0.0),
        }
    )
    return parts.groupby("group", sort=False, observed=True).sum()


def finish(g: pd.DataFrame) -> pd.DataFrame:
    """``outcome_totals`` plus win_rate, value_win_rate and avg_deal_size (NaN where undefined)."""
    g = g.copy()
    g["win_rate"] = g["won"] / g["deals"].where(g["deals"] > 0)
    value_ok = (g["closed_amount"] > 0) & ((g["lost"] == 0) | (g["lost_amount_known"] > 0))
    g["value_win_rate"] = (g["won_amount"] / g["closed_amount"].where(g["closed_amount"] > 0)).where(value_ok)
    g["avg_deal_size"] = g["won_priced_amount"] / g["won_priced"].where(g["won_priced"] > 0)
    return g


def as_totals(r: pd.Series) -> dict:
    """One ``finish``ed row as the overall figures' dict (closed, won, lost, win_rate_count, won_value,
    closed_value, win_rate_value, won_priced, avg_deal_size), wherever the totals were summed."""

    def num(x):
        return math.nan if pd.isna(x) else float(x)

    return {
        "closed": int(r["deals"]),
        "won": int(r["won"]),
        "lost": int(r["lost"]),
        "win_rate_count": num(r["win_rate"]),
        "won_value": float(r["won_amount"]),
        "closed_value": float(r["closed_amount"]),
        "win_rate_value": num(r["value_win_rate"]),
        "won_priced": int(r["won_priced"]),
        "avg_deal_size": num(r["avg_deal_size"]),
    }
