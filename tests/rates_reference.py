"""The pandas totals of closed deals over a whole frame: the reference the engine's totals
(``helpers.metrics.expr.totals``) are held to in the tests; the package computes them on the engine."""

from __future__ import annotations

import numpy as np
import pandas as pd

from helpers.metrics.rates import as_totals, finish, outcome_totals


def closed_in(opps: pd.DataFrame, start, end) -> pd.DataFrame:
    """Closed deals whose close date falls in ``[start, end]`` (both days included)."""
    start, end = pd.Timestamp(start), pd.Timestamp(end)
    closed = opps["is_closed"].fillna(False).astype(bool)
    d = opps["close_date"]
    return opps.loc[closed & (d >= start) & (d <= end)]


def totals(closed: pd.DataFrame) -> dict:
    """The overall figures of ``closed`` deals: closed, won, lost, won_value, closed_value, win_rate_count,
    win_rate_value, won_priced, avg_deal_size."""
    won = closed["is_won"].fillna(False).astype(bool).to_numpy()
    amount = (
        closed["amount"].astype("float64").to_numpy()
        if "amount" in closed.columns
        else np.full(len(closed), np.nan)
    )
    if len(closed):
        r = finish(outcome_totals(np.zeros(len(closed), dtype=np.int8), won, amount)).iloc[0]
    else:
        r = (
            finish(outcome_totals(np.zeros(0, dtype=np.int8), won, amount))
            .reindex([0])
            .fillna({c: 0 for c in ("deals", "won", "lost", "won_amount", "closed_amount", "won_priced")})
            .iloc[0]
        )

    return as_totals(r)
