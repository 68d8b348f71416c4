"""The activity tracker's per-deal and per-rep measures in plain pandas: the reference the engine's sums
(helpers.metrics.activity) are held against. One row per closed deal, then the same definitions as the
package's docstrings: tied activities of a known type on or before the close day, the won deals' totals,
win association with and without each type, the opening sequences, and the per-rep counts."""

from __future__ import annotations

import numpy as np
import pandas as pd

from helpers.data.schema import ACTIVITY_TYPES
from helpers.metrics.activity import MEETING_TYPES, OUTCOME_ALIASES, TYPE_ALIASES


def normalized(log: pd.DataFrame) -> pd.DataFrame:
    """The log with type and outcome trimmed, lower-cased and alias-mapped, ids as text."""
    out = log.copy()
    for col, aliases in (("type", TYPE_ALIASES), ("outcome", OUTCOME_ALIASES)):
        s = out[col].astype("str").str.strip().str.lower()
        out[col] = s.replace(aliases)
    for col in ("owner", "opportunity_id", "activity_id"):
        out[col] = out[col].astype("str")
    out["occurred_at"] = pd.to_datetime(out["occurred_at"])
    return out


def closed_in(opps: pd.DataFrame, start, end) -> pd.DataFrame:
    c = opps["is_closed"].fillna(False).astype(bool) & opps["close_date"].notna()
    d = opps["close_date"]
    return opps[c & (d >= pd.Timestamp(start)) & (d <= pd.Timestamp(end))].reset_index(drop=True)


def tied(log: pd.DataFrame, closed: pd.DataFrame) -> pd.DataFrame:
    """The activities on a closed deal on or before its close day (no time stamp counts), with _pos."""
    a = normalized(log)
    deals = pd.DataFrame(
        {
            "opportunity_id": closed["opportunity_id"].astype("str"),
            "_pos": np.arange(len(closed)),
            "_close": pd.to_datetime(closed["close_date"]).dt.normalize(),
        }
    )
    j = a.merge(deals, on="opportunity_id")
    return j[j["occurred_at"].isna() | (j["occurred_at"] < j["_close"] + pd.Timedelta(days=1))]


def per_deal(log: pd.DataFrame, opps: pd.DataFrame, start, end) -> pd.DataFrame:
    """One row per deal closed in the window: owner, is_won, amount, segment, a count per known type and
    ``total`` (tied activities of any type the log has; none = 0)."""
    closed = closed_in(opps, start, end)
    out = closed[["opportunity_id", "owner", "is_won", "amount", "segment"]].copy()
    out["is_won"] = out["is_won"].fillna(False).astype(bool)
    t = tied(log, closed)
    t = t[t["type"].notna()]
    counts = t.groupby(["_pos", "type"]).size().unstack(fill_value=0)
    counts = counts.reindex(index=range(len(closed)), fill_value=0).fillna(0).astype("int64")
    for typ in ACTIVITY_TYPES:
        out[typ] = counts[typ].to_numpy() if typ in counts.columns else 0
    out["total"] = counts.sum(axis=1).to_numpy() if len(counts.columns) else 0
    return out


def won_deal_activity(deals: pd.DataFrame) -> dict:
    won = deals[deals["is_won"]]
    n = len(won)
    return {
        "won_deals": n,
        "mean_per_won_deal": float(won["total"].mean()) if n else float("nan"),
        "median_per_won_deal": float(won["total"].median()) if n else float("nan"),
        "share_won_without_activity": float((won["total"] == 0).mean()) if n else float("nan"),
    }


def win_association(deals: pd.DataFrame, by: str | None = None, min_deals: int = 1) -> pd.DataFrame:
    """Per type (and segment, text order, deals without one left out): deals with / without ≥ 1 activity
    of the type, the won among them, and the win rates."""
    d = deals if by is None else deals[deals[by].notna()]
    rows = []
    groups = sorted(d[by].astype("str").unique()) if by else [None]
    for g in groups:
        part = d if g is None else d[d[by].astype("str") == g]
        for t in ACTIVITY_TYPES:
            has = part[t] > 0
            won = part["is_won"]
            row = {} if g is None else {by: g}
            row |= {
                "type": t,
                "deals_with": int(has.sum()),
                "won_with": int((won & has).sum()),
                "deals_without": int((~has).sum()),
                "won_without": int((won & ~has).sum()),
            }
            rows.append(row)
    out = pd.DataFrame(rows)
    out["win_rate_with"] = out["won_with"] / out["deals_with"].where(out["deals_with"] >= min_deals)
    out["win_rate_without"] = out["won_without"] / out["deals_without"].where(
        out["deals_without"] >= min_deals
    )
    out["difference"] = out["win_rate_with"] - out["win_rate_without"]
    return out


def won_without_activity(deals: pd.DataFrame) -> pd.Series:
    """owner → won deals with no tied activity (owners with won deals only)."""
    won = deals[deals["is_won"] & deals["owner"].notna()]
    return (won["total"] == 0).groupby(won["owner"].astype("str")).sum().astype("int64")


def sequences(log: pd.DataFrame, opps: pd.DataFrame, start, end, steps: int = 3) -> pd.DataFrame:
    """sequence → deals, won: each closed deal's tied activities in time order (no time last, then by
    activity id), repeats in a row collapsed, the first ``steps`` types joined by " → "."""
    closed = closed_in(opps, start, end)
    t = tied(log, closed)
    t = t.assign(_nat=t["occurred_at"].isna()).sort_values(["_pos", "_nat", "occurred_at", "activity_id"])
    label = {}
    for pos, g in t.groupby("_pos"):
        types = list(g["type"])
        seq = [x for i, x in enumerate(types) if i == 0 or x != types[i - 1]][:steps]
        label[pos] = " → ".join(seq)
    won = closed["is_won"].fillna(False).astype(bool)
    per = pd.DataFrame(
        {
            "sequence": [label.get(i, "(no activity logged)") for i in range(len(closed))],
            "deals": 1,
            "won": won.astype("int64").to_numpy(),
        }
    )
    return per.groupby("sequence")[["deals", "won"]].sum()


def counts_by_owner(log: pd.DataFrame, start, end) -> pd.DataFrame:
    """owner × known type: activities with ``start <= day(occurred_at) <= end``."""
    a = normalized(log)
    day = a["occurred_at"].dt.normalize()
    a = a[(day >= pd.Timestamp(start)) & (day <= pd.Timestamp(end)) & a["owner"].notna()]
    out = a.groupby(["owner", "type"]).size().unstack(fill_value=0)
    return out.reindex(columns=list(ACTIVITY_TYPES), fill_value=0)


def meetings_by_rep_month(log: pd.DataFrame) -> pd.DataFrame:
    """rep_id, month, value: meetings and demos booked per owner and calendar month."""
    a = normalized(log)
    m = a[a["type"].isin(MEETING_TYPES) & a["occurred_at"].notna()]
    got = m.groupby([m["owner"].rename("rep_id"), m["occurred_at"].dt.to_period("M").dt.to_timestamp()])
    out = got.size().rename("value").reset_index().rename(columns={"occurred_at": "month"})
    return out.astype({"value": "float64"})
