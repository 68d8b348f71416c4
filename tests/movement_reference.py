"""The pandas reference of pipeline movement: what ``helpers.metrics.history`` computes on the engine,
written plainly over whole frames (``pandas.merge_asof`` for the replay, group-bys for the rest). The tests
hold the engine's results against it on the sample and on hand-built data, on DuckDB, PostgreSQL and Spark.

Pipeline movement from ``opportunity_history``: replay into snapshots of any past date, the pipeline
on the same day of earlier quarters, past forecast accuracy, the period waterfall, slipped deals,
stage-to-stage conversion, days in stage and stalled deals, historical stage win rates and the
calibration of CRM probabilities.

A history row holds the values *after* a change. Replay (``replay``) finds, for each deal and
snapshot date, the last row changed on or before that day (``pandas.merge_asof``), after carrying
each field forward within the deal (a row that leaves ``amount`` empty keeps the previous amount).
A deal's rows at the same moment are taken in a fixed order (the closing row of a deal without history
last, then by stage as text, amount, close date and probability, missing values first), so the last of
them, its state after that moment, does not depend on the file's order of rows.
Fields the history does not track at all (no ``amount`` / ``close_date`` column) are taken from the
deal's current values. A deal with no history rows at all is replayed as: created on ``created_date``
in its current stage (or the first open stage when it is closed now) and closed on ``close_date``.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from helpers.data.calendar import FiscalCalendar, weekly_dates
from helpers.metrics.expr import WATERFALL_LABELS, WATERFALL_SIGN
from helpers.metrics.pipeline import (
    _amount,
    _flag,
    _ratio,
    is_won,
    isin,
    map_unique,
    positions,
)

FIELDS = ("stage", "amount", "close_date", "probability", "forecast_category")


# --------------------------------------------------------------------------------------------------
# replay
# --------------------------------------------------------------------------------------------------
def normalized_history(history: pd.DataFrame | None, opps: pd.DataFrame, config) -> pd.DataFrame:
    """History sorted by deal and time with every field carried forward within the deal, plus
    synthetic rows for deals that have none (see the module docstring)."""
    cols = ["opportunity_id", "changed_at", *FIELDS]
    h = (
        history
        if history is not None  # no copy: filtering makes a new frame (copy-on-write)
        else pd.DataFrame({c: pd.Series(dtype="str") for c in ("opportunity_id", "stage")})
    )
    h = h[isin(h["opportunity_id"], opps["opportunity_id"])]
    if "changed_at" not in h.columns:
        h["changed_at"] = pd.Series(dtype="datetime64[us]")
    current = opps.set_index("opportunity_id")
    for f in ("amount", "close_date", "forecast_category"):
        if f not in h.columns or h[f].isna().all():
            h[f] = h["opportunity_id"].map(current[f]) if f in current.columns else np.nan
    if "probability" not in h.columns:
        h["probability"] = np.nan
    missing = opps[~isin(opps["opportunity_id"], h["opportunity_id"].unique())]
    if len(missing):
        first_open = config.open_stages[0] if config.open_stages else None
        closed = _flag(missing["is_closed"])
        start_rows = pd.DataFrame(
            {
                "opportunity_id": missing["opportunity_id"],
                "changed_at": missing["created_date"],
                "stage": missing["stage"].where(~closed, first_open),
                "amount": missing["amount"],
                "close_date": missing["close_date"],
                "probability": np.nan,
                "forecast_category": missing.get("forecast_category", np.nan),
            }
        )
        end_src = missing[closed]
        end_rows = pd.DataFrame(
            {
                "opportunity_id": end_src["opportunity_id"],
                "changed_at": end_src["close_date"],
                "stage": end_src["stage"],
                "amount": end_src["amount"],
                "close_date": end_src["close_date"],
                "probability": np.nan,
                "forecast_category": end_src.get("forecast_category", np.nan),
            }
        )
        # the closing row follows the opening one on a same-day close
        seq = np.repeat([0, 0, 1], [len(h), len(start_rows), len(end_rows)])
        h = pd.concat([h[cols], start_rows, end_rows], ignore_index=True)
    else:
        seq = np.zeros(len(h), dtype=np.int64)
    h = h[cols]
    h["changed_at"] = pd.to_datetime(h["changed_at"]).astype("datetime64[us]")
    h["close_date"] = pd.to_datetime(h["close_date"]).astype("datetime64[us]")
    # by deal and time (missing times last), then rows at the same moment by their own values, so that
    # the last of them, the deal's state after that moment, does not depend on the rows' order in the
    # file: the closing row of a deal without history last, then by stage (as text), amount, close date
    # and probability, missing values first
    deal = _sort_rank(h["opportunity_id"])
    when = h["changed_at"].to_numpy().view("int64").copy()
    when[h["changed_at"].isna().to_numpy()] = np.iinfo(np.int64).max
    ties = [
        _rank_missing_first(h["stage"].astype("string")),
        _rank_missing_first(pd.to_numeric(h["amount"], errors="coerce")),
        _rank_missing_first(h["close_date"]),
        _rank_missing_first(pd.to_numeric(h["probability"], errors="coerce")),
    ]
    order = np.lexsort((*ties[::-1], seq, when, deal))
    h = h.iloc[order].reset_index(drop=True)
    sorted_deal = deal[order]
    if h["opportunity_id"].isna().any():
        key = sorted_deal.astype("float64")
        key[h["opportunity_id"].isna().to_numpy()] = (
            np.nan
        )  # like groupby("opportunity_id"): no group for a missing id
        h[list(FIELDS)] = h[list(FIELDS)].groupby(key).ffill()
        return h
    # = groupby(deal).ffill() on the deal-sorted rows: each row takes the last non-missing value at or
    # before it, when that row is the same deal's (the deal's first row is at or before it)
    n = len(h)
    run_start = np.zeros(n, dtype=np.int64)
    if n:
        new_run = np.concatenate([[True], sorted_deal[1:] != sorted_deal[:-1]])
        run_start = np.maximum.accumulate(np.where(new_run, np.arange(n), 0))
    for f in FIELDS:
        col = h[f]
        present = col.notna().to_numpy()
        if present.all():
            continue
        last = np.maximum.accumulate(np.where(present, np.arange(n), -1)) if n else np.zeros(0, np.int64)
        ok = last >= run_start
        filled = col.take(np.where(ok, last, 0)) if n else col
        h[f] = filled.set_axis(h.index).where(ok | present)
    return h


def _rank_missing_first(s: pd.Series) -> np.ndarray:
    """Each value's rank among the sorted distinct values of ``s``, missing values first (-1)."""
    return pd.factorize(s, sort=True)[0]


def _sort_rank(s: pd.Series) -> np.ndarray:
    """Each value's rank among the sorted distinct values of ``s`` (missing values last): sorting by it
    sorts like ``sort_values`` on ``s``, without comparing strings row by row."""
    codes, uniques = pd.factorize(s, sort=True)
    return np.where(codes < 0, len(uniques), codes)


def _normalized(history, opps: pd.DataFrame, config, normalized: pd.DataFrame | None) -> pd.DataFrame:
    """``normalized`` — the caller's ``normalized_history(history, opps, config)``, made once and passed to
    several helpers (``normalized=``) — or that computed now. A shallow copy: helpers add columns to it."""
    if normalized is None:
        return normalized_history(history, opps, config)
    return normalized.copy(deep=False)


def _status(stage: pd.Series, config) -> tuple[pd.Series, pd.Series, pd.Series]:
    won = isin(stage, config.won_stages)
    lost = isin(stage, config.lost_stages)
    return ~(won | lost), won, lost


def replay(
    history: pd.DataFrame | None, opps: pd.DataFrame, config, dates, normalized: pd.DataFrame | None = None
) -> pd.DataFrame:
    """Snapshots of every deal existing (``created_date ≤ date``) at the end of each of ``dates``:
    snapshot_date, opportunity_id, owner, created_date and the replayed stage, amount, close_date,
    probability (history value, else the stage default), forecast_category, is_open, is_won, is_lost;
    sorted by snapshot date then opportunity_id.
    ``normalized``: ``normalized_history(history, opps, config)`` when the caller has it already (the
    same keyword on the other helpers that replay or read the normalized history)."""
    h = _normalized(history, opps, config, normalized)
    return _replay_by_merge(h, opps, config, _snapshot_dates(dates))


def _snapshot_dates(dates) -> pd.DatetimeIndex:
    return pd.DatetimeIndex(pd.to_datetime(list(dates))).normalize().unique().sort_values()


def _fill_from_first_row(snap: pd.DataFrame, h: pd.DataFrame, nomatch: np.ndarray) -> None:
    """Deals created before their first history row: that first row's values (in place)."""
    if nomatch.any():
        first = h.drop_duplicates("opportunity_id").set_index("opportunity_id")
        for f in FIELDS:
            snap.loc[nomatch, f] = snap.loc[nomatch, "opportunity_id"].map(first[f])


def _replay_finish(snap: pd.DataFrame, config) -> pd.DataFrame:
    """Probability (history value, else the stage default), numeric amount and the status flags."""
    codes, stages = pd.factorize(snap["stage"])  # the stage default per distinct stage, not per row
    default_of = np.append(
        stages.map(config.probabilities).to_numpy(dtype="float64", na_value=np.nan), np.nan
    )
    default = pd.Series(default_of[codes], index=snap.index)
    snap["probability"] = (
        pd.to_numeric(snap["probability"], errors="coerce").astype("float64").fillna(default)
    )
    snap["amount"] = pd.to_numeric(snap["amount"], errors="coerce").astype("float64")
    snap["is_open"], snap["is_won"], snap["is_lost"] = _status(snap["stage"], config)
    return snap


def _replay_by_merge(h: pd.DataFrame, opps: pd.DataFrame, config, dates: pd.DatetimeIndex) -> pd.DataFrame:
    """``replay`` through ``merge_asof`` on a (deal × date) grid: for histories with missing change
    times (merge_asof's own behaviour), deals without a usable creation date, and no deal at all."""
    base_cols = [c for c in ("opportunity_id", "owner", "created_date") if c in opps.columns]
    base = opps[base_cols]
    grid = pd.concat(
        [base[base["created_date"] <= d].assign(snapshot_date=d) for d in dates], ignore_index=True
    )
    grid["snapshot_date"] = grid["snapshot_date"].astype("datetime64[us]")
    grid["_cut"] = grid["snapshot_date"] + pd.Timedelta(days=1)
    grid = grid.sort_values("_cut", kind="stable")
    deal_ids = pd.Series(opps["opportunity_id"].unique())
    g = grid.assign(_deal=positions(grid["opportunity_id"], deal_ids))
    right = h.assign(_deal=positions(h["opportunity_id"], deal_ids)).drop(columns="opportunity_id")
    snap = pd.merge_asof(
        g,
        right.sort_values("changed_at", kind="stable"),
        left_on="_cut",
        right_on="changed_at",
        by="_deal",
        allow_exact_matches=False,
        direction="backward",
    ).drop(columns="_deal")
    _fill_from_first_row(snap, h, snap["changed_at"].isna().to_numpy())
    snap = _replay_finish(snap, config)
    snap = snap.drop(columns=["_cut", "changed_at"])
    # = sort_values(["snapshot_date", "opportunity_id"]) (stable), on integer keys
    order = np.lexsort((_sort_rank(snap["opportunity_id"]), snap["snapshot_date"].to_numpy().view("int64")))
    return snap.iloc[order].reset_index(drop=True)


def _replay_for_sums(history, opps, config, dates, normalized) -> pd.DataFrame:
    return replay(history, opps, config, dates, normalized=normalized)


# --------------------------------------------------------------------------------------------------
# pipeline on the same day of earlier quarters; forecast accuracy
# --------------------------------------------------------------------------------------------------
def pipeline_same_day(
    history,
    opps: pd.DataFrame,
    config,
    cal: FiscalCalendar,
    as_of,
    n_quarters: int = 4,
    next_quarter: bool = False,
    normalized: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """The pipeline on the same day of the current and ``n_quarters`` earlier fiscal quarters.

    For quarter k, the snapshot date is quarter_start_k + (as_of − current quarter start) (capped at the
    quarter end). With ``next_quarter`` the quarter measured is the one after ``as_of`` and the offset is
    negative (e.g. the day before each quarter started: the pipeline each quarter began with). Per snapshot: won_to_date = Σ amount of deals won by then with close date in the
    quarter; open_in_quarter = Σ amount of deals open then with close date in the quarter; weighted =
    Σ amount × probability of those; final_won = what the quarter finally booked (current data)."""
    as_of = pd.Timestamp(as_of)
    q0 = cal.quarter_start(as_of) + pd.DateOffset(months=3 if next_quarter else 0)
    offset = as_of - q0
    plan = []
    for k in range(n_quarters, -1, -1):
        qs = q0 - pd.DateOffset(months=3 * k)
        qe = qs + pd.DateOffset(months=3) - pd.Timedelta(days=1)
        plan.append((cal.quarter_label(qs), qs, qe, min(qs + offset, qe)))
    snaps = _replay_for_sums(history, opps, config, [p[3] for p in plan], normalized)
    rows = []
    for label, qs, qe, d in plan:
        s = snaps[snaps["snapshot_date"] == d]
        in_q = (s["close_date"] >= qs) & (s["close_date"] <= qe)
        open_q = s[s["is_open"] & in_q]
        amt = open_q["amount"].fillna(0)
        won_td = s.loc[s["is_won"] & in_q, "amount"].fillna(0).sum()
        final = opps[is_won(opps) & (opps["close_date"] >= qs) & (opps["close_date"] <= qe)]
        rows.append(
            {
                "quarter": label,
                "snapshot_date": d,
                "won_to_date": float(won_td),
                "open_deals": int(len(open_q)),
                "open_in_quarter": float(amt.sum()),
                "weighted": float((amt * open_q["probability"].fillna(0)).sum()),
                "final_won": float(_amount(final).sum()) if qe <= as_of else math.nan,
                "complete": bool(qe <= as_of),
            }
        )
    return pd.DataFrame(rows)


def forecast_accuracy(
    history, opps: pd.DataFrame, config, start, end, normalized: pd.DataFrame | None = None
) -> pd.DataFrame:
    """What the weighted pipeline said at each week of a past period against what closed.

    At each weekly snapshot date d in ``[start, end]``:
    forecast(d) = won by d with close date in the period + Σ amount × probability of deals open at d
    with close date in the period; actual = Σ amount of deals won with close date in the period
    (current data); error = forecast − actual; abs_pct_error = |error| ÷ actual."""
    start, end = pd.Timestamp(start), pd.Timestamp(end)
    snaps = _replay_for_sums(history, opps, config, weekly_dates(start, end), normalized)
    in_p = (snaps["close_date"] >= start) & (snaps["close_date"] <= end)
    amt = snaps["amount"].fillna(0)
    snaps = snaps.assign(
        won_part=amt.where(snaps["is_won"] & in_p, 0.0),
        open_part=(amt * snaps["probability"].fillna(0)).where(snaps["is_open"] & in_p, 0.0),
        unweighted=amt.where(snaps["is_open"] & in_p, 0.0),
    )
    g = (
        snaps.groupby("snapshot_date")
        .agg(
            won_to_date=("won_part", "sum"),
            weighted_open=("open_part", "sum"),
            open_pipeline=("unweighted", "sum"),
        )
        .reset_index()
    )
    actual = float(
        _amount(opps[is_won(opps) & (opps["close_date"] >= start) & (opps["close_date"] <= end)]).sum()
    )
    g["forecast"] = g["won_to_date"] + g["weighted_open"]
    g["actual"] = actual
    g["error"] = g["forecast"] - actual
    g["abs_pct_error"] = g["error"].abs() / actual if actual else np.nan
    return g


# --------------------------------------------------------------------------------------------------
# waterfall
# --------------------------------------------------------------------------------------------------
WATERFALL_TERMS = (
    "opening",
    "created",
    "pulled_in",
    "pushed_out",
    "increased",
    "decreased",
    "won",
    "lost",
    "closing",
)


def waterfall_deals(
    history, opps: pd.DataFrame, config, start, end, as_of=None, normalized: pd.DataFrame | None = None
) -> pd.DataFrame:
    """Each deal's part in the pipeline waterfall of the period ``[start, end]``, moving from
    t0 = start − 1 day (opening) to t1 = min(end, as_of) (closing).

    The period's pipeline P(t) = deals open at the end of day t with expected close date in
    ``[start, end]``; amounts are the replayed amounts at t0 (a0) and t1 (a1).

    - opening: deal in P(t0): a0
    - created: not existing at t0 (created after it) and at t1 in P, or won/lost within the period: a1
    - pulled_in: existing at t0 outside P (close date outside the period, or closed then and reopened)
      and at t1 in P, or won/lost within the period: a1
    - pushed_out: in P(t0), open at t1 but close date moved outside the period: a1
    - won / lost: not won (lost) at t0 and won (lost) at t1: a1
    - increased / decreased: for deals in P(t0), a1 − a0 when positive / its size when negative
    - closing: in P(t1): a1

    so that, for every deal and in total,
    closing = opening + created + pulled_in − pushed_out + increased − decreased − won − lost.
    Deals that enter and leave between t0 and t1 without closing do not appear."""
    start, end = pd.Timestamp(start), pd.Timestamp(end)
    t0 = start - pd.Timedelta(days=1)
    t1 = min(end, pd.Timestamp(as_of)) if as_of is not None else end
    snaps = replay(history, opps, config, [t0, t1], normalized)
    cols = ["opportunity_id", "amount", "close_date", "is_open", "is_won", "is_lost", "stage"]
    s0 = snaps[snaps["snapshot_date"] == t0][cols].set_index("opportunity_id")
    s1 = snaps[snaps["snapshot_date"] == t1][cols].set_index("opportunity_id")
    d = s1.add_suffix("_1").join(s0.add_suffix("_0"), how="left")
    exists0 = d["stage_0"].notna()
    a0, a1 = d["amount_0"].fillna(0.0), d["amount_1"].fillna(0.0)
    in_period0 = (d["close_date_0"] >= start) & (d["close_date_0"] <= end)
    in_period1 = (d["close_date_1"] >= start) & (d["close_date_1"] <= end)
    in0 = exists0 & d["is_open_0"].fillna(False).astype(bool) & in_period0
    in1 = d["is_open_1"].astype(bool) & in_period1
    won = d["is_won_1"].astype(bool) & ~d["is_won_0"].fillna(False).astype(bool)
    lost = d["is_lost_1"].astype(bool) & ~d["is_lost_0"].fillna(False).astype(bool)
    enters = ~in0 & (in1 | won | lost)
    pushed = in0 & ~in1 & ~won & ~lost
    change = (a1 - a0).where(in0, 0.0)
    out = pd.DataFrame(
        {
            "opening": a0.where(in0, 0.0),
            "created": a1.where(enters & ~exists0, 0.0),
            "pulled_in": a1.where(enters & exists0, 0.0),
            "pushed_out": a1.where(pushed, 0.0),
            "increased": change.clip(lower=0),
            "decreased": (-change).clip(lower=0),
            "won": a1.where(won, 0.0),
            "lost": a1.where(lost, 0.0),
            "closing": a1.where(in1, 0.0),
        },
        index=d.index,
    )
    flags = {
        "opening": in0,
        "created": enters & ~exists0,
        "pulled_in": enters & exists0,
        "pushed_out": pushed,
        "increased": change > 0,
        "decreased": change < 0,
        "won": won,
        "lost": lost,
        "closing": in1,
    }
    for t, m in flags.items():
        out[f"n_{t}"] = m.astype(bool)
    out["stage_0"], out["stage_1"] = d["stage_0"], d["stage_1"]
    out["close_date_0"], out["close_date_1"] = d["close_date_0"], d["close_date_1"]
    involved = in0 | enters
    out = out[involved].reset_index()
    if "owner" in opps.columns:
        out.insert(1, "owner", out["opportunity_id"].map(opps.set_index("opportunity_id")["owner"]))
    return out


def waterfall(deals: pd.DataFrame) -> pd.DataFrame:
    """The waterfall steps (signed amount and deals) from ``waterfall_deals``; the last row ``check`` is
    opening + created + pulled in − pushed out + increased − decreased − won − lost − closing (= 0)."""
    sign, labels = WATERFALL_SIGN, WATERFALL_LABELS
    rows = []
    for t in WATERFALL_TERMS:
        total = float(deals[t].sum()) if len(deals) else 0.0
        n = int(deals[f"n_{t}"].sum()) if len(deals) else 0
        rows.append({"step": labels[t], "term": t, "amount": total * sign.get(t, 1), "deals": n})
    out = pd.DataFrame(rows)
    flows = out[out["term"] != "closing"]["amount"].sum()
    check = flows - out.loc[out["term"] == "closing", "amount"].iloc[0]
    return pd.concat(
        [out, pd.DataFrame([{"step": labels["check"], "term": "check", "amount": check, "deals": 0}])],
        ignore_index=True,
    )


# --------------------------------------------------------------------------------------------------
# slips
# --------------------------------------------------------------------------------------------------
def close_date_changes(
    history, opps: pd.DataFrame, config, normalized: pd.DataFrame | None = None
) -> pd.DataFrame:
    """Every change of expected close date while the deal was open: opportunity_id, changed_at,
    from_date, to_date, days_moved (> 0 pushed out, < 0 pulled in)."""
    h = _normalized(history, opps, config, normalized)
    h["from_date"] = h.groupby("opportunity_id")["close_date"].shift()
    h["prev_stage"] = h.groupby("opportunity_id")["stage"].shift()
    was_open = h["prev_stage"].isin(config.open_stages)
    moved = was_open & h["from_date"].notna() & h["close_date"].notna() & (h["close_date"] != h["from_date"])
    ch = h[moved].rename(columns={"close_date": "to_date"})
    ch = ch.assign(days_moved=(ch["to_date"] - ch["from_date"]).dt.days)
    return ch[["opportunity_id", "changed_at", "from_date", "to_date", "days_moved"]].reset_index(drop=True)


def slipped_deals(
    history, opps: pd.DataFrame, config, start, end, normalized: pd.DataFrame | None = None
) -> pd.DataFrame:
    """Deals whose close date was pushed later by changes made in ``[start, end]``: times pushed,
    days pushed (Σ of the pushes), the close date before the first push, the close date now, with the
    deal's current stage, amount and owner; open deals first, then most pushed first."""
    start, end = pd.Timestamp(start), pd.Timestamp(end)
    ch = close_date_changes(history, opps, config, normalized)
    ch = ch[
        (ch["changed_at"] >= start) & (ch["changed_at"] < end + pd.Timedelta(days=1)) & (ch["days_moved"] > 0)
    ]
    g = (
        ch.sort_values("changed_at")
        .groupby("opportunity_id")
        .agg(
            times_pushed=("days_moved", "count"),
            days_pushed=("days_moved", "sum"),
            original_close_date=("from_date", "first"),
            latest_close_date=("to_date", "last"),
        )
        .reset_index()
    )
    cols = [
        c for c in ("opportunity_id", "account", "owner", "stage", "amount", "is_closed") if c in opps.columns
    ]
    g = g.merge(opps[cols], on="opportunity_id", how="left")
    g["_closed"] = _flag(g["is_closed"]) if "is_closed" in g.columns else False
    g = g.sort_values(["_closed", "times_pushed", "days_pushed"], ascending=[True, False, False])
    return g.drop(columns="_closed").reset_index(drop=True)


# --------------------------------------------------------------------------------------------------
# stages reached, conversion, stage win rates
# --------------------------------------------------------------------------------------------------
def stages_reached(history, opps: pd.DataFrame, config) -> pd.DataFrame:
    """Per deal: ``furthest`` = rank (0-based among open stages) of the furthest open stage it was ever
    in, where a won deal counts as beyond every open stage (rank = number of open stages); ``visited``
    = the set of stages it was recorded in; ``outcome`` won / lost / open (now).

    The stages a deal was "in" are those of ``normalized_history``: its history rows' stages (carrying
    forward adds none), or for a deal without history its current stage and, when closed, the first
    open stage; plus, always, its current stage."""
    rank = {s: i for i, s in enumerate(config.open_stages)}
    d = opps[["opportunity_id", "stage"]].set_index("opportunity_id").copy()
    d["outcome"] = np.where(is_won(opps), "won", np.where(_flag(opps["is_closed"]), "lost", "open"))
    return _stages_reached_by_groups(history, opps, config, d, rank)


def _stages_reached_by_groups(history, opps, config, d: pd.DataFrame, rank: dict) -> pd.DataFrame:
    """``stages_reached`` through ``normalized_history`` and per-deal sets (unusual inputs: duplicate
    deal ids, a history without a stage column, more than 62 distinct stages)."""
    h = normalized_history(history, opps, config)
    h["rank"] = h["stage"].map(rank).astype("float64")
    d["furthest"] = h.groupby("opportunity_id")["rank"].max().reindex(d.index).fillna(-1)
    d["furthest"] = np.maximum(d["furthest"], d["stage"].map(rank).astype("float64").fillna(-1))
    d.loc[d["outcome"] == "won", "furthest"] = len(config.open_stages)
    sets = {
        k: frozenset(g) for k, g in h[["opportunity_id", "stage"]].dropna().groupby("opportunity_id")["stage"]
    }
    d["visited"] = [sets.get(i, frozenset()) | {s} for i, s in zip(d.index, d["stage"], strict=True)]
    return d.reset_index()


def _membership(visited: pd.Series):
    """``stage -> visited.map(lambda v: stage in v)``, tested once per distinct set (the sets of
    ``stages_reached`` repeat: a few dozen distinct ones for any number of deals)."""
    try:
        codes, uniques = pd.factorize(visited, use_na_sentinel=False)
    except TypeError:  # unhashable sets: row by row
        return lambda stage: visited.map(lambda v: stage in v)
    if not len(visited):
        return lambda stage: visited.map(lambda v: stage in v)
    return lambda stage: pd.Series(
        np.array([stage in v for v in uniques], dtype=bool)[codes], index=visited.index
    )


def stage_conversion(reached: pd.DataFrame, config, variant: str = "any") -> pd.DataFrame:
    """Stage-to-stage conversion and leakage over the deals in ``reached`` (from ``stages_reached``).

    - ``any`` (any-stage): reached(s) = deals whose furthest stage is s or later (a deal that skipped s
      counts as having passed it); converted = furthest beyond s; conversion = converted ÷ reached.
    - ``strict``: reached(s) = deals recorded in s; converted = deals also recorded in the next stage
      (for the last open stage: won); conversion = converted ÷ reached.
    - lost_here = deals lost whose furthest stage is s (where the funnel leaks);
      open_here = deals open now whose furthest stage is s."""
    stages = config.open_stages
    rows = []
    contains = _membership(reached["visited"]) if variant == "strict" else None
    for i, s in enumerate(stages):
        nxt = stages[i + 1] if i + 1 < len(stages) else "Won"
        if variant == "any":
            reached_s = reached["furthest"] >= i
            conv = reached["furthest"] > i
        elif variant == "strict":
            reached_s = contains(s)
            if nxt == "Won":
                conv = reached_s & (reached["outcome"] == "won")
            else:
                conv = reached_s & contains(nxt)
        else:
            raise ValueError("variant must be 'any' or 'strict'")
        at = reached["furthest"] == i
        rows.append(
            {
                "stage": s,
                "next": nxt,
                "reached": int(reached_s.sum()),
                "converted": int(conv.sum()),
                "conversion": _ratio(conv.sum(), reached_s.sum()),
                "lost_here": int((at & (reached["outcome"] == "lost")).sum()),
                "open_here": int((at & (reached["outcome"] == "open")).sum()),
            }
        )
    return pd.DataFrame(rows)


def stage_win_rates(reached: pd.DataFrame, config) -> pd.DataFrame:
    """Historical win rate per open stage over closed deals: of the closed deals that reached the stage
    (furthest stage at or beyond it, any-stage), the share won — by count (won ÷ reached) and by
    value (won amount ÷ reached amount, when ``amount`` is in ``reached``)."""
    closed = reached[reached["outcome"] != "open"]
    rows = []
    for i, s in enumerate(config.open_stages):
        r = closed[closed["furthest"] >= i]
        w = r["outcome"] == "won"
        row = {
            "stage": s,
            "closed_deals_reached": int(len(r)),
            "won": int(w.sum()),
            "win_rate": _ratio(w.sum(), len(r)),
        }
        if "amount" in r.columns:
            row["win_rate_value"] = _ratio(r.loc[w, "amount"].fillna(0).sum(), r["amount"].fillna(0).sum())
        rows.append(row)
    return pd.DataFrame(rows)


# --------------------------------------------------------------------------------------------------
# days in stage, stalled
# --------------------------------------------------------------------------------------------------
def stage_visits(
    history, opps: pd.DataFrame, config, as_of, normalized: pd.DataFrame | None = None
) -> pd.DataFrame:
    """One row per stay in an open stage: opportunity_id, stage, entered, exited (NaT while current),
    days = (exited, or as_of for the current stay) − entered, is_current, outcome (won/lost/open now).
    Consecutive history rows in the same stage are one stay."""
    as_of = pd.Timestamp(as_of)
    h = _normalized(history, opps, config, normalized)[["opportunity_id", "stage", "changed_at"]]
    before = h["changed_at"] < as_of + pd.Timedelta(days=1)
    if not before.all():  # (a report as of the export date keeps every row: no copy)
        h = h[before]
    new_stay = h["stage"] != h.groupby("opportunity_id")["stage"].shift()
    stays = h[new_stay].rename(columns={"changed_at": "entered"})
    stays["exited"] = stays.groupby("opportunity_id")["entered"].shift(-1)
    stays = stays[stays["stage"].isin(config.open_stages)].copy()
    stays["is_current"] = stays["exited"].isna()
    end = stays["exited"].fillna(as_of + pd.Timedelta(days=1)).where(~stays["is_current"], as_of)
    stays["days"] = (end.dt.normalize() - stays["entered"].dt.normalize()).dt.days.astype("float64")
    outcome = pd.Series(
        np.where(is_won(opps), "won", np.where(_flag(opps["is_closed"]), "lost", "open")),
        index=opps["opportunity_id"],
    )
    stays["outcome"] = map_unique(stays["opportunity_id"], outcome)
    return stays.reset_index(drop=True)


def days_in_stage_benchmark(visits: pd.DataFrame, config, quantile: float = 0.75) -> pd.DataFrame:
    """Per open stage, over completed stays of deals that were won: won deals' stays, median days and
    the ``quantile`` (p75) days — the stall threshold."""
    done = visits[~visits["is_current"] & (visits["outcome"] == "won")]
    g = done.groupby("stage")["days"]
    out = pd.DataFrame(
        {"won_stays": g.count(), "median_days": g.median(), "threshold_days": g.quantile(quantile)}
    )
    return out.reindex([s for s in config.open_stages]).reset_index()


def stalled_deals(
    visits: pd.DataFrame, opps: pd.DataFrame, benchmark: pd.DataFrame, fixed_days: int | None = None
) -> pd.DataFrame:
    """Open deals whose current stay in their stage is longer than the threshold: the benchmark's
    ``threshold_days`` (p75 of won deals' days in that stage) or ``fixed_days`` when given."""
    cur = visits[visits["is_current"] & (visits["outcome"] == "open")]
    thr = pd.to_numeric(benchmark.set_index("stage")["threshold_days"], errors="coerce").astype("float64")
    cur = cur.assign(
        threshold_days=float(fixed_days) if fixed_days else cur["stage"].map(thr).astype("float64")
    )
    st = cur[cur["days"] > cur["threshold_days"]]
    cols = [
        c
        for c in ("opportunity_id", "account", "owner", "amount", "close_date", "next_step")
        if c in opps.columns
    ]
    out = st.merge(opps[cols], on="opportunity_id", how="left")
    out = out.rename(columns={"days": "days_in_stage"})
    keep = [
        "opportunity_id",
        "account",
        "owner",
        "stage",
        "amount",
        "days_in_stage",
        "threshold_days",
        "entered",
        "close_date",
        "next_step",
    ]
    return (
        out[[c for c in keep if c in out.columns]]
        .sort_values("amount", ascending=False)
        .reset_index(drop=True)
    )


# --------------------------------------------------------------------------------------------------
# calibration of CRM probabilities
# --------------------------------------------------------------------------------------------------
def probability_calibration(
    history,
    opps: pd.DataFrame,
    config,
    dates,
    bins=(0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0),
    normalized: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """How well the CRM probability predicted the outcome. Observations = (deal, snapshot date) pairs
    with the deal open at the snapshot and closed now; bucketed by the probability it had then
    (history value, else stage default; buckets labelled "0–10%", "10–20%", …, the first including 0):
    predicted = mean probability, actual = share that were won; gap = actual − predicted (percentage points)."""
    outcome = np.where(is_won(opps), 1.0, np.where(_flag(opps["is_closed"]), 0.0, np.nan))
    ids = opps["opportunity_id"]
    h = _normalized(history, opps, config, normalized)
    snaps = replay(history, opps, config, dates, normalized=h)
    s = snaps[snaps["is_open"]].assign(
        won=lambda x: x["opportunity_id"].map(pd.Series(outcome, index=ids)).astype("float64")
    )
    s = s.dropna(subset=["won", "probability"])
    edges = list(bins)
    names = [f"{lo * 100:g}–{hi * 100:g}%" for lo, hi in zip(edges[:-1], edges[1:], strict=True)]
    s = s.assign(bucket=pd.cut(s["probability"], bins=edges, include_lowest=True, labels=names))
    g = s.groupby("bucket", observed=True).agg(
        observations=("won", "count"),
        deals=("opportunity_id", "nunique"),
        predicted=("probability", "mean"),
        actual=("won", "mean"),
    )
    g = g.reset_index()
    g["bucket"] = g["bucket"].astype("str")
    g["gap"] = g["actual"] - g["predicted"]
    return g


def rewind(opps: pd.DataFrame, history, config, as_of) -> pd.DataFrame:
    """Opportunities as they stood at the end of ``as_of`` (for a report dated before the export): deals
    created later are dropped; with history, stage, amount and close date (and probability / forecast
    category when the history tracks them) are the replayed values and is_closed / is_won follow the
    replayed stage. Without history only the later deals are dropped."""
    as_of = pd.Timestamp(as_of)
    o = opps[opps["created_date"] <= as_of].copy()
    if history is None or not len(o):
        return o
    s = replay(history, o, config, [as_of]).set_index("opportunity_id")
    fields = ["stage", "amount", "close_date"] + [
        f for f in ("probability", "forecast_category") if f in history.columns and history[f].notna().any()
    ]
    for f in fields:
        o[f] = o["opportunity_id"].map(s[f]).astype(o[f].dtype if f in o.columns else s[f].dtype)
    o["is_won"] = o["opportunity_id"].map(s["is_won"]).astype("boolean")
    o["is_closed"] = (~o["opportunity_id"].map(s["is_open"]).astype(bool)).astype("boolean")
    return o
