"""The pandas reference of what the quota plan asks of the opportunities: written plainly over the loaded
frame (as ``helpers.metrics.quota`` computed it before the plan's aggregates moved to the engine). The
tests hold the engine's results (``quota.won_by_month`` and what is made from it, ``quota.recent_owners``,
``quota.seller_ids``, ``quota.funnel_rates``) against it on DuckDB, PostgreSQL and Spark.

``draw_months`` / ``simulate_totals`` are the realism simulation as it was before the draws were held as
positions in the pools (``quota.PoolDraws``): one dense (reps, draws, months) float32 array.
``attainment`` is the simulation's outcome as it was before it went by blocks of reps: whole reps × draws
matrices and one ``np.partition`` of every ratio.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import rates_reference as RR

from helpers.data.calendar import trailing_window


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
    """The deal side of the reverse funnel: the totals (``rates.as_totals``) of the deals closed in the window, and the
    deals created in it."""
    start, a = trailing_window(as_of, months)
    o = opps if who is None else opps.loc[opps["owner"].isin(list(who))]
    created = int(((o["created_date"] >= start) & (o["created_date"] <= a)).sum())
    return RR.totals(RR.closed_in(o, start, a)), created


def draw_months(pools: list[np.ndarray], n_draws: int, n_months: int = 12, seed: int = 0) -> np.ndarray:
    """Resampled monthly values, shape (reps, draws, months), float32 (the dense array)."""
    rng = np.random.default_rng(seed)
    n = len(pools)
    if n == 0:
        return np.zeros((0, n_draws, n_months), np.float32)
    lens = np.array([max(len(p), 1) for p in pools])
    width = int(lens.max())
    table = np.zeros((n, width), np.float32)
    for i, p in enumerate(pools):
        table[i, : len(p)] = p
    out = np.empty((n, n_draws, n_months), np.float32)
    itype = np.int32 if n * width < 2**31 else np.int64
    flat = table.ravel()
    step = max(1, (1 << 21) // max(1, n_draws * n_months))
    for lo in range(0, n, step):
        hi = min(n, lo + step)
        u = rng.random((hi - lo, n_draws, n_months), dtype=np.float32)
        idx = np.multiply(u, lens[lo:hi].astype(np.float64)[:, None, None]).astype(itype)
        np.minimum(idx, (lens[lo:hi] - 1).astype(itype)[:, None, None], out=idx)
        idx += (np.arange(lo, hi, dtype=itype) * width)[:, None, None]
        flat.take(idx, out=out[lo:hi])
    return out


def simulate_totals(draws: np.ndarray, active: np.ndarray, ramp: np.ndarray, season=None) -> np.ndarray:
    """``Σ_m 12 s_m r_im a_im X_imd`` over the whole dense array in one ``einsum``."""
    s = np.full(draws.shape[2], 1 / 12) if season is None else np.asarray(season, float)
    mult = (active * ramp * 12 * s[None, :]).astype(np.float32)
    return np.einsum("idm,im->id", draws, mult, optimize=True)


def attainment(totals: np.ndarray, quotas: np.ndarray, target_share: float = 0.75):
    """(P per rep, share at quota per draw, expected share, quota level) over the whole matrix."""
    q = np.asarray(quotas, float)
    has = q > 0
    p = np.full(len(q), np.nan)
    t = totals[has]
    qh = q[has, None]
    hit = t >= qh
    p[has] = hit.mean(axis=1)
    by_draw = hit.mean(axis=0)
    ratios = (t / qh.astype(t.dtype)).reshape(-1)
    j = min(int(np.ceil((1 - target_share) * ratios.size - 1e-9)), ratios.size - 1)
    return p, by_draw, float(p[has].mean()), float(np.partition(ratios, j)[j])
