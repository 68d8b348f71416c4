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
    counts = ["deals_with", "won_with", "deals_without", "won_without"]
    out = pd.DataFrame(rows, columns=([by] if by else []) + ["type", *counts])
    out[counts] = out[counts].astype("int64")
    if by:
        out[by] = out[by].astype("str")
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


# --------------------------------------------------------------------------------------------------
# the measures over the opportunities, as the tracker computed them over the loaded frame before they
# moved to the engine (helpers.metrics.activity.activity_yield, funnel_rates, deal_activity's sums and
# logging_completeness)
# --------------------------------------------------------------------------------------------------
def won_in(opps: pd.DataFrame, start, end) -> pd.DataFrame:
    c = closed_in(opps, start, end)
    return c[c["is_won"].fillna(False).astype(bool)]


def created_in(opps: pd.DataFrame, start, end) -> pd.DataFrame:
    d = opps["created_date"]
    return opps[(d >= pd.Timestamp(start)) & (d <= pd.Timestamp(end))]


def activity_yield(log: pd.DataFrame, opps: pd.DataFrame, start, end, owners=None) -> pd.DataFrame:
    """Per owner of the log (and of the deals) and "All reps": activities in the window, deals created,
    deals won, and the two ratios."""
    a = normalized(log)
    a = a[a["owner"].notna()]
    if owners is not None:
        a = a[a["owner"].isin([str(o) for o in owners])]
    day = a["occurred_at"].dt.normalize()
    inside = a[(day >= pd.Timestamp(start)) & (day <= pd.Timestamp(end))]
    n_act = inside["owner"].value_counts().reindex(sorted(a["owner"].unique()), fill_value=0)
    n_created = created_in(opps, start, end)["owner"].astype("str").value_counts()
    n_won = won_in(opps, start, end)["owner"].astype("str").value_counts()
    out = pd.DataFrame({"activities": n_act, "opps_created": n_created, "deals_won": n_won}).fillna(0)
    out = out.astype("int64").sort_index()
    out.loc["All reps"] = out.sum()
    out["activities_per_opp_created"] = out["activities"] / out["opps_created"].where(out["opps_created"] > 0)
    out["activities_per_won_deal"] = out["activities"] / out["deals_won"].where(out["deals_won"] > 0)
    out.index.name = "rep"
    return out.reset_index()


def funnel_rates(log: pd.DataFrame, opps: pd.DataFrame, start, end, owners=None) -> pd.Series:
    """The tracker's measured conversion (the totals (``rates.as_totals``) of the closed deals, deals created, calls and
    meetings and demos held by ``owners``)."""
    import rates_reference as R

    a = normalized(log)
    day = a["occurred_at"].dt.normalize()
    a = a[(day >= pd.Timestamp(start)) & (day <= pd.Timestamp(end))]
    o = opps
    if owners is not None:
        a = a[a["owner"].isin(owners)]
        o = o[o["owner"].astype("str").isin(owners)]
    held = a["outcome"].isin(["held", "positive"])
    calls = int((a["type"] == "call").sum())
    meetings, demos = int(((a["type"] == "meeting") & held).sum()), int(((a["type"] == "demo") & held).sum())
    tot = R.totals(closed_in(o, start, end))
    n_created = len(created_in(o, start, end))

    def ratio(x, y):
        return x / y if y else float("nan")

    return pd.Series(
        {
            "deals_won": tot["won"],
            "deals_closed": tot["closed"],
            "opps_created": n_created,
            "bookings": tot["won_value"],
            "calls": calls,
            "meetings_held": meetings,
            "demos_held": demos,
            "avg_deal_size": tot["avg_deal_size"],
            "win_rate": tot["win_rate_count"],
            "calls_per_opp": ratio(calls, n_created),
            "meetings_per_opp": ratio(meetings, n_created),
            "demos_per_opp": ratio(demos, n_created),
            "calls_per_meeting": ratio(calls, meetings),
            "meetings_per_demo": ratio(meetings, demos),
        }
    )


def segments(deals: pd.DataFrame) -> pd.DataFrame:
    """segment (text, empty last), deals, won: the closed deals per segment."""
    g = deals.groupby(deals["segment"].astype("str"), dropna=False)
    out = pd.DataFrame({"deals": g.size(), "won": g["is_won"].sum()}).astype("int64")
    out.index = pd.Index(out.index, dtype="str", name="segment")
    return out.reset_index().sort_values("segment", na_position="last", ignore_index=True)


def won_by_owner(deals: pd.DataFrame) -> pd.DataFrame:
    """owner → won deals, bookings (Σ amount), won_active (won deals with tied activity)."""
    won = deals[deals["is_won"] & deals["owner"].notna()]
    g = won.groupby(won["owner"].astype("str"))
    out = pd.DataFrame(
        {
            "won": g.size(),
            "bookings": g["amount"].sum(),
            "won_active": (won["total"] > 0).groupby(won["owner"].astype("str")).sum(),
        }
    ).astype({"won": "int64", "bookings": "float64", "won_active": "int64"})
    out.index = pd.Index(out.index, dtype="str", name="owner")
    return out


def logging_completeness(
    log: pd.DataFrame, opps: pd.DataFrame, start, end, threshold: float = 0.25, min_won: int = 2
) -> pd.DataFrame:
    """Reps whose logged activity is implausibly low for their bookings (the definitions of
    ``helpers.metrics.activity.logging_completeness``) from the per-deal rows."""
    y = activity_yield(log, opps, start, end)
    y = y[(y["rep"] != "All reps") & (y["deals_won"] > 0)].set_index("rep")
    deals = per_deal(log, opps, start, end)
    won = deals[deals["is_won"]]
    bookings = won.groupby(won["owner"].astype("str"))["amount"].sum()
    out = y[["deals_won", "activities", "activities_per_won_deal"]].copy()
    out["bookings"] = bookings.reindex(out.index).fillna(0.0)
    out["won_without_activity"] = won_without_activity(deals).reindex(out.index).fillna(0).astype("int64")
    base = out.loc[out["deals_won"] >= min_won, "activities_per_won_deal"]
    median = float(base.median()) if len(base) else float("nan")
    out["median_per_won_deal"] = median
    out["ratio_to_median"] = out["activities_per_won_deal"] / median if median else np.nan
    none = out["activities"] == 0
    low = (out["deals_won"] >= min_won) & (out["ratio_to_median"] < threshold)
    unlogged = out["won_without_activity"] / out["deals_won"] > 0.5
    out["flag"] = none | low | unlogged
    out["reason"] = np.select(
        [none, low, unlogged],
        [
            "no activity logged despite won deals",
            f"activity per won deal under {threshold:.0%} of the median rep",
            "most won deals have no activity logged",
        ],
        default="",
    )
    out.index.name = "rep"
    return out.reset_index().sort_values(
        ["flag", "ratio_to_median"], ascending=[False, True], ignore_index=True
    )
