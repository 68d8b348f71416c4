"""The sales activity tracker: volume, outcomes, yield, benchmarks and logging completeness.

Pure functions: frames (``activities``, ``opportunities``, ``reps``, ``quotas``) and dates in, a
DataFrame (or Series) out. Every group-by over the activity log runs on categorical codes and
``numpy.bincount`` (no ``apply``), so a weekly count over tens of millions of rows stays a few
array passes. ``prepare`` does the string work once; every function accepts a prepared or a raw log.

Conventions (docs/metrics.md, section "Activity", is the reader's version):

- Windows are inclusive day ranges ``[start, end]``; an activity belongs to the day of ``occurred_at``.
- A *week* is a 7-day block ending on the window's last day (week k covers ``end - 7k - 6 .. end - 7k``),
  labelled by its last day, so every week in a window is complete. A *month* is a calendar month.
- Outbound touches = calls + emails + social touches (contacts the rep starts); meetings and demos are not.
- Meetings and demos: *booked* = every meeting/demo logged in the window, whatever its outcome;
  *held* = outcome ``held`` or ``positive`` (a positive meeting was held and set a next step);
  *no-show rate* = no_show ÷ (held + no_show), ``scheduled`` (not yet happened or never updated) excluded;
  *positive rate* = positive ÷ held.
- Hit rate: calls connected ÷ (connected + no_answer); emails and social replied ÷ (replied + no_reply).
  Activities without an outcome are left out of both numerator and denominator.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from helpers.data.calendar import trailing_window, weeks_window
from helpers.data.schema import ACTIVITY_TYPES, CONNECTED_OUTCOMES
from helpers.metrics import rates as R
from helpers.metrics.quota import funnel_rates as quota_rates
from helpers.metrics.quota import reverse_funnel, seller_ids

OUTBOUND_TYPES = ("call", "email", "social")
MEETING_TYPES = ("meeting", "demo")
HELD_OUTCOMES = ("held", "positive")
OUTCOMES = ("connected", "no_answer", "replied", "no_reply", "held", "no_show", "scheduled", "positive")
MISSED_OUTCOMES = {"call": "no_answer", "email": "no_reply", "social": "no_reply"}
TYPE_ALIASES = {
    "phone": "call",
    "phone call": "call",
    "calls": "call",
    "e-mail": "email",
    "emails": "email",
    "inmail": "social",
    "in-mail": "social",
    "linkedin": "social",
    "meetings": "meeting",
    "demos": "demo",
}
OUTCOME_ALIASES = {
    "no answer": "no_answer",
    "no-answer": "no_answer",
    "no reply": "no_reply",
    "no-reply": "no_reply",
    "no show": "no_show",
    "no-show": "no_show",
    "answered": "connected",
}
WEEKDAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
WEEKS_PER_MONTH = 365.25 / 12 / 7  # 4.348


# --------------------------------------------------------------------------------------------------
# preparation: strings to categorical codes, once
# --------------------------------------------------------------------------------------------------
def _vocabulary(s: pd.Series, known: tuple[str, ...], aliases: dict[str, str]) -> pd.Categorical:
    """Lower-cased, alias-mapped categorical whose categories start with ``known`` (others follow)."""
    if isinstance(s.dtype, pd.CategoricalDtype) and tuple(s.cat.categories[: len(known)]) == known:
        return s.array
    first = _factorized(s)  # codes in order of first appearance, as pd.factorize gives them
    codes, uniques = first.codes, first.categories
    norm = [aliases.get(u, u) for u in (str(x).strip().lower() for x in uniques)]
    cats = list(known) + sorted(set(norm) - set(known))
    pos = pd.Index(cats).get_indexer(norm) if norm else np.array([], dtype="int64")
    new = np.where(codes >= 0, pos[np.maximum(codes, 0)] if len(pos) else -1, -1)
    return pd.Categorical.from_codes(new, categories=cats)


KEEP_COLUMNS = ("owner", "type", "occurred_at", "opportunity_id", "outcome", "duration_minutes")


def _factorized(s: pd.Series) -> pd.Categorical:
    """Categorical in order of first appearance (``factorize`` without the sort ``astype("category")`` does)."""
    if isinstance(s.dtype, pd.CategoricalDtype):
        return s.array
    if isinstance(s.array, pd.arrays.ArrowStringArray):  # one Arrow dictionary_encode: 2× pandas' factorize
        import pyarrow.compute as pc

        enc = pc.dictionary_encode(s.array._pa_array.combine_chunks())
        codes = np.asarray(enc.indices.fill_null(-1))  # int32, valid by construction: no copy, no check
        cats = pd.Index(pd.array(enc.dictionary, dtype="str"))
        return pd.Categorical.from_codes(codes, categories=cats, validate=False)
    codes, uniques = pd.factorize(s, use_na_sentinel=True)
    return pd.Categorical.from_codes(codes, categories=pd.Index(uniques, dtype="str"))


def prepare(activities: pd.DataFrame) -> pd.DataFrame:
    """The columns the tracker uses (owner, type, occurred_at, opportunity_id, outcome, duration_minutes),
    with ``type``/``outcome`` as categoricals whose categories start with the known vocabulary (lower-cased,
    aliases such as "in-mail" → social mapped) and ``owner``/``opportunity_id`` as categoricals, so every
    later group-by, filter and join works on integer codes. Idempotent (a prepared frame is returned as is)."""
    if activities.attrs.get("activity_prepared"):
        return activities
    src = activities
    df = pd.DataFrame(index=src.index)
    df["owner"] = _factorized(src["owner"])
    df["type"] = _vocabulary(src["type"], ACTIVITY_TYPES, TYPE_ALIASES)
    df["occurred_at"] = (
        src["occurred_at"]
        if pd.api.types.is_datetime64_any_dtype(src["occurred_at"])
        else pd.to_datetime(src["occurred_at"])
    )
    if "opportunity_id" in src.columns:
        df["opportunity_id"] = _factorized(src["opportunity_id"])
    else:
        df["opportunity_id"] = pd.Categorical.from_codes(
            np.full(len(src), -1), categories=pd.Index([], dtype="str")
        )
    if "outcome" in src.columns:
        df["outcome"] = _vocabulary(src["outcome"], OUTCOMES, OUTCOME_ALIASES)
    else:
        df["outcome"] = pd.Categorical.from_codes(np.full(len(src), -1), categories=list(OUTCOMES))
    if "duration_minutes" in src.columns:
        df["duration_minutes"] = src["duration_minutes"]
    df.attrs["activity_prepared"] = True
    return df


def _day(ts) -> np.ndarray:
    """Days since 1970-01-01 (int64) of timestamps (Series or scalar)."""
    if isinstance(ts, pd.Series | pd.Index):
        return ts.to_numpy(dtype="datetime64[us]").astype("datetime64[D]").astype("int64")
    return int(np.datetime64(pd.Timestamp(ts).normalize().to_datetime64(), "D").astype("int64"))


US_PER_DAY = 86_400_000_000


def in_window(act: pd.DataFrame, start, end) -> pd.DataFrame:
    """Rows with ``start <= day(occurred_at) <= end``, tested as ``day(start) · 1 day <= t <
    (day(end) + 1) · 1 day`` on the microsecond values (no per-row rounding; NaT is never inside)."""
    us = act["occurred_at"].to_numpy(dtype="datetime64[us]").view("int64")
    nat = np.iinfo(np.int64).min
    return act[(us >= _day(start) * US_PER_DAY) & (us < (_day(end) + 1) * US_PER_DAY) & (us != nat)]


def _type_codes(act: pd.DataFrame) -> tuple[np.ndarray, list[str]]:
    cat = act["type"].array
    return np.asarray(cat.codes, dtype="int64"), list(cat.categories)


def _owner_codes(act: pd.DataFrame, owners: list[str] | None = None) -> tuple[np.ndarray, list[str]]:
    """Codes into ``owners`` (default: owners seen); owners not listed get -1."""
    cat = act["owner"].array
    seen = list(cat.categories)
    if owners is None:
        return np.asarray(cat.codes, dtype="int64"), seen
    remap = pd.Index(owners).get_indexer(seen)
    codes = np.asarray(cat.codes, dtype="int64")
    return np.where(codes >= 0, remap[np.maximum(codes, 0)] if len(remap) else -1, -1), list(owners)


def _bincount2(a: np.ndarray, na: int, b: np.ndarray, nb: int, weights=None) -> np.ndarray:
    """Counts (or weight sums) over the grid ``na × nb``; rows with a negative code are dropped."""
    ok = (a >= 0) & (b >= 0)
    w = None if weights is None else np.asarray(weights, dtype="float64")[ok]
    flat = np.bincount(a[ok] * nb + b[ok], weights=w, minlength=na * nb)
    return flat.reshape(na, nb)


# --------------------------------------------------------------------------------------------------
# 1. volume
# --------------------------------------------------------------------------------------------------
def activity_counts(
    activities: pd.DataFrame, start, end, freq: str = "W", owners: list[str] | None = None
) -> pd.DataFrame:
    """Activities per owner per period per type, zero-filled (periods with no activity appear as 0).

    ``freq``: "D" calendar day, "W" 7-day week ending on ``end`` (labelled by its last day; the first week
    is partial unless the window is whole weeks, see ``helpers.data.calendar.weeks_window``), "M" calendar month (labelled by
    its first day). Index (owner, period); one column per type plus ``total``.
    Vectorised: period and owner codes combined into one ``bincount``.
    """
    cols = ["owner", "type", "occurred_at"]
    # a raw log is prepared on the columns counted here only (the same owner and type categories as a
    # full prepare: 10M activities without factorizing their deal ids)
    raw = activities if activities.attrs.get("activity_prepared") else activities[cols]
    act = in_window(prepare(raw), start, end)
    s, e = _day(start), _day(end)
    d = _day(act["occurred_at"])
    if freq == "D":
        period = d - s
        labels = pd.date_range(pd.Timestamp(start).normalize(), pd.Timestamp(end).normalize(), freq="D")
    elif freq == "W":
        n = (e - s) // 7 + 1
        period = (n - 1) - (e - d) // 7
        labels = pd.DatetimeIndex(
            [pd.Timestamp(end).normalize() - pd.Timedelta(days=7 * k) for k in range(n - 1, -1, -1)]
        )
    elif freq == "M":
        m0 = pd.Timestamp(start).to_period("M")
        labels = pd.period_range(m0, pd.Timestamp(end).to_period("M"), freq="M").to_timestamp()
        months = act["occurred_at"].to_numpy(dtype="datetime64[us]").astype("datetime64[M]").astype("int64")
        period = months - int(np.datetime64(m0.start_time.to_datetime64(), "M").astype("int64"))
    else:
        raise ValueError(f"freq must be 'D', 'W' or 'M', got {freq!r}")
    oc, owner_names = _owner_codes(act, owners)
    tc, types = _type_codes(act)
    np_, nt = len(labels), len(types)
    grid = _bincount2(oc * np_ + np.where(period >= 0, period, -(10**12)), len(owner_names) * np_, tc, nt)
    idx = pd.MultiIndex.from_product(
        [pd.Index(owner_names, dtype="str", name="owner"), pd.DatetimeIndex(labels, name="period")]
    )
    out = pd.DataFrame(grid.astype("int64"), index=idx, columns=pd.Index(types, dtype="str"))
    out["total"] = out.sum(axis=1)
    return out


def active_reps(reps: pd.DataFrame | None, start, end) -> list[str]:
    """Reps employed at some point in ``[start, end]`` (hire_date ≤ end and no end_date before start)."""
    if reps is None or "rep_id" not in reps.columns:
        return []
    keep = pd.Series(True, index=reps.index)
    if "hire_date" in reps.columns:
        keep &= ~(reps["hire_date"] > pd.Timestamp(end))
    if "end_date" in reps.columns:
        keep &= ~(reps["end_date"] < pd.Timestamp(start))
    return [str(r) for r in reps.loc[keep, "rep_id"].dropna()]


def rep_teams(reps: pd.DataFrame | None) -> pd.Series:
    """rep_id → team ("All" when the reps table or its team column is missing)."""
    if reps is None or "team" not in reps.columns:
        return pd.Series(dtype="str")
    return reps.dropna(subset=["rep_id"]).set_index("rep_id")["team"].astype("str").fillna("(no team)")


def rep_volume(
    activities: pd.DataFrame, as_of, weeks: int = 13, reps: pd.DataFrame | None = None
) -> pd.DataFrame:
    """Per rep, over the ``weeks`` 7-day weeks to ``as_of`` (see ``helpers.data.calendar.weeks_window``):

    - ``<type>``/``total`` per week = activities of that type in the window ÷ ``weeks``;
    - ``outbound`` per week = (calls + emails + social) ÷ ``weeks``;
    - ``per_working_day`` = total ÷ Mon–Fri days in the window; ``per_month`` = per week × 4.348;
    - ``team_median`` = median weekly total over the reps of the same team and role (reps with none
      count as 0); ``vs_team_median`` = total ÷ team_median;
    - ``prior`` = weekly total in the ``weeks`` before the window; ``trend`` = total ÷ prior − 1.

    Reps: reps employed during the window (so a rep who logged nothing shows 0), plus owners with activity
    who are not in ``reps``; a rep in ``reps`` who left before the window (or joins after it) is left out,
    so a departed rep does not show 0 a week nor pull the team median down.
    """
    act = prepare(activities)
    start, end = weeks_window(as_of, weeks)
    pstart, pend = start - pd.Timedelta(days=7 * weeks), start - pd.Timedelta(days=1)
    active = set(active_reps(reps, start, end))
    known = (
        set(reps["rep_id"].dropna().astype("str")) if reps is not None and "rep_id" in reps.columns else set()
    )
    names = sorted(
        {o for o in map(str, act["owner"].cat.categories) if o not in known or o in active} | active
    )
    cur = activity_counts(act, start, end, "W", owners=names).groupby(level="owner", sort=False).sum()
    prev = activity_counts(act, pstart, pend, "W", owners=names).groupby(level="owner", sort=False).sum()
    types = [t for t in cur.columns if t != "total"]
    out = cur[types + ["total"]] / weeks
    out["outbound"] = cur[[t for t in OUTBOUND_TYPES if t in cur.columns]].sum(axis=1) / weeks
    busdays = int(np.busday_count(start.date(), (end + pd.Timedelta(days=1)).date()))
    out["per_working_day"] = cur["total"] / busdays if busdays else np.nan
    out["per_month"] = out["total"] * WEEKS_PER_MONTH
    teams = rep_teams(reps)
    out.insert(0, "team", teams.reindex(out.index).fillna("All" if teams.empty else "(no team)").to_numpy())
    peers = ["team"]
    if reps is not None and "role" in reps.columns:
        roles = reps.dropna(subset=["rep_id"]).set_index("rep_id")["role"].astype("str")
        out.insert(1, "role", roles.reindex(out.index).fillna("").to_numpy())
        peers.append("role")
    out["team_median"] = out.groupby(peers)["total"].transform("median")
    out["vs_team_median"] = out["total"] / out["team_median"].where(out["team_median"] > 0)
    out["prior"] = prev["total"].reindex(out.index).to_numpy() / weeks
    out["trend"] = out["total"] / out["prior"].where(out["prior"] > 0) - 1
    out.index.name = "rep"
    return out.reset_index()


def weekly_by_team(counts: pd.DataFrame, reps: pd.DataFrame | None) -> pd.DataFrame:
    """Median weekly total per team from ``activity_counts(..., "W")``: columns team, period, median."""
    teams = rep_teams(reps)
    df = counts["total"].reset_index()
    df["team"] = teams.reindex(df["owner"]).fillna("All" if teams.empty else "(no team)").to_numpy()
    return (
        df.groupby(["team", "period"], as_index=False)["total"].median().rename(columns={"total": "median"})
    )


# --------------------------------------------------------------------------------------------------
# 2. outcomes
# --------------------------------------------------------------------------------------------------
def _group_codes(act: pd.DataFrame, by: str | None) -> tuple[np.ndarray, list]:
    """Codes and labels of the ``by`` column (one group "all" when ``by`` is None)."""
    if by is None:
        return np.zeros(len(act), dtype="int64"), ["all"]
    col = act[by]
    if isinstance(col.dtype, pd.CategoricalDtype):
        return np.asarray(col.array.codes, dtype="int64"), [str(c) for c in col.cat.categories]
    codes, uniques = pd.factorize(col)
    return codes.astype("int64"), [str(u) for u in uniques]


def _sum_by_type(act: pd.DataFrame, by: str | None, values: dict[str, np.ndarray]) -> pd.DataFrame:
    """Σ of each value array per (``by`` group, type) with ``bincount``: every group × known type, plus
    other types that occur. Columns: [by], type, one per value."""
    tc, types = _type_codes(act)
    gc, groups = _group_codes(act, by)
    data = {
        name: _bincount2(gc, len(groups), tc, len(types), weights=v).ravel() for name, v in values.items()
    }
    out = pd.DataFrame(
        {
            "group": np.repeat(np.array(groups, dtype=object), len(types)),
            "type": np.tile(np.array(types, dtype=object), len(groups)),
            **data,
        }
    )
    out = out.astype({"group": "str", "type": "str"})
    known = out["type"].isin(ACTIVITY_TYPES)
    first = next(iter(values))
    out = out[known | (out[first] > 0)]
    if by is None:
        return out.drop(columns="group").reset_index(drop=True)
    return out.rename(columns={"group": by}).reset_index(drop=True)


def _with_total(per: pd.DataFrame, by: str | None, label: str, cols: list[str]) -> pd.DataFrame:
    """``per`` plus one row per group (type = ``label``) holding the column sums."""
    if by:
        tot = per.groupby(by, sort=False)[cols].sum().reset_index()
    else:
        tot = per[cols].sum().to_frame().T
    tot["type"] = label
    out = pd.concat([per, tot[([by] if by else []) + ["type"] + cols]], ignore_index=True)
    if by:
        out = out.sort_values(by, kind="stable", ignore_index=True)
    return out


def _codes_of(series: pd.Series) -> np.ndarray:
    return np.asarray(series.array.codes, dtype="int64")


TYPE_CODE = {t: i for i, t in enumerate(ACTIVITY_TYPES)}
OUTCOME_CODE = {o: i for i, o in enumerate(OUTCOMES)}


def meeting_outcomes(activities: pd.DataFrame, start, end, by: str | None = None) -> pd.DataFrame:
    """Meetings and demos in ``[start, end]`` per type (and per ``by`` column, e.g. "owner"), plus a
    "meeting+demo" row:

    booked (all logged), held (held + positive), no_show, scheduled, positive, other (no/unknown outcome),
    no_show_rate = no_show ÷ (held + no_show) (scheduled excluded), positive_rate = positive ÷ held.
    """
    act = in_window(prepare(activities), start, end)
    t, o = _codes_of(act["type"]), _codes_of(act["outcome"])
    is_mtg = (t == TYPE_CODE["meeting"]) | (t == TYPE_CODE["demo"])
    held = np.isin(o, [OUTCOME_CODE[x] for x in HELD_OUTCOMES])
    vals = {
        "booked": is_mtg,
        "held": is_mtg & held,
        "no_show": is_mtg & (o == OUTCOME_CODE["no_show"]),
        "scheduled": is_mtg & (o == OUTCOME_CODE["scheduled"]),
        "positive": is_mtg & (o == OUTCOME_CODE["positive"]),
    }
    cols = [*vals, "other"]
    per = _sum_by_type(act, by, vals)
    per = per[per["type"].isin(MEETING_TYPES)].reset_index(drop=True)
    per["other"] = per["booked"] - per["held"] - per["no_show"] - per["scheduled"]
    out = _with_total(per, by, "meeting+demo", cols)
    out[cols] = out[cols].astype("int64")
    out["no_show_rate"] = out["no_show"] / (out["held"] + out["no_show"]).where(lambda x: x > 0)
    out["positive_rate"] = out["positive"] / out["held"].where(out["held"] > 0)
    return out


def has_time_of_day(activities: pd.DataFrame) -> bool:
    """True when ``occurred_at`` carries times (not every value at midnight)."""
    ts = activities["occurred_at"].dropna()
    if ts.empty:
        return False
    us = ts.to_numpy(dtype="datetime64[us]").astype("int64")
    return bool((us % 86_400_000_000 != 0).any())


def hit_rates(activities: pd.DataFrame, start, end, by: str = "channel") -> pd.DataFrame:
    """Connect / reply rate per channel (call, email, social), optionally per weekday or hour.

    attempts = rows whose outcome is the channel's hit or miss (call: connected/no_answer; email,
    social: replied/no_reply); hits = connected/replied; hit_rate = hits ÷ attempts (NaN with no attempts).
    ``by``: "channel" (one row per channel), "weekday" (Mon..Sun, all seven, zero-filled), "hour" (0–23,
    hours with attempts only; stamps at exactly 00:00:00 are taken as date-only and left out; empty when
    the log has no time of day). Vectorised with ``bincount``.
    """
    act = in_window(prepare(activities), start, end)
    channels = list(CONNECTED_OUTCOMES)
    t, o = _codes_of(act["type"]), _codes_of(act["outcome"])
    ch = np.full(len(act), -1, dtype="int64")
    hit = np.zeros(len(act), dtype=bool)
    for j, c in enumerate(channels):
        is_c = t == TYPE_CODE[c]
        h = is_c & (o == OUTCOME_CODE[CONNECTED_OUTCOMES[c]])
        ch[h | (is_c & (o == OUTCOME_CODE[MISSED_OUTCOMES[c]]))] = j
        hit |= h
    if by == "channel":
        key, labels = np.zeros(len(act), dtype="int64"), ["all"]
    elif by == "weekday":
        key, labels = (_day(act["occurred_at"]) + 3) % 7, list(WEEKDAYS)  # 1970-01-01 was a Thursday
    elif by == "hour":
        if not has_time_of_day(act):
            return pd.DataFrame(columns=["channel", "hour", "attempts", "hits", "hit_rate"])
        us = act["occurred_at"].to_numpy(dtype="datetime64[us]").astype("int64")
        key, labels = (us // 3_600_000_000) % 24, list(range(24))
        key = np.where(us % 86_400_000_000 == 0, -1, key)  # date-only stamps carry no hour
    else:
        raise ValueError(f"by must be 'channel', 'weekday' or 'hour', got {by!r}")
    attempts = _bincount2(ch, len(channels), key, len(labels))
    hits = _bincount2(np.where(hit, ch, -1), len(channels), key, len(labels))
    col = "hour" if by == "hour" else "weekday"
    out = pd.DataFrame(
        {
            "channel": pd.array(np.repeat(channels, len(labels)), dtype="str"),
            col: np.tile(np.array(labels, dtype=object), len(channels)),
            "attempts": attempts.ravel().astype("int64"),
            "hits": hits.ravel().astype("int64"),
        }
    )
    if by == "channel":
        out = out.drop(columns=col)
    elif by == "hour":
        out = out[out["attempts"] > 0].astype({"hour": "int64"}).reset_index(drop=True)
    else:
        out["weekday"] = out["weekday"].astype("str")
    out["hit_rate"] = out["hits"] / out["attempts"].where(out["attempts"] > 0)
    return out


# --------------------------------------------------------------------------------------------------
# 3. yield
# --------------------------------------------------------------------------------------------------
def opportunity_share(activities: pd.DataFrame, start, end, by: str | None = None) -> pd.DataFrame:
    """Share of activities tied to an opportunity, per type (and per ``by``), plus an "all" row:
    share_tied = activities with an ``opportunity_id`` ÷ all activities."""
    act = in_window(prepare(activities), start, end)
    per = _sum_by_type(
        act, by, {"activities": np.ones(len(act)), "tied": _codes_of(act["opportunity_id"]) >= 0}
    )
    out = _with_total(per, by, "all", ["activities", "tied"])
    out[["activities", "tied"]] = out[["activities", "tied"]].astype("int64")
    out["share_tied"] = out["tied"] / out["activities"].where(out["activities"] > 0)
    return out


def _closed_in(opps: pd.DataFrame, start, end) -> pd.DataFrame:
    closed = opps["is_closed"].fillna(False).astype(bool) & opps["close_date"].notna()
    d = opps["close_date"]
    return opps[closed & (d >= pd.Timestamp(start)) & (d <= pd.Timestamp(end))]


def _won_in(opps: pd.DataFrame, start, end) -> pd.DataFrame:
    c = _closed_in(opps, start, end)
    return c[c["is_won"].fillna(False).astype(bool)]


def _created_in(opps: pd.DataFrame, start, end) -> pd.DataFrame:
    d = opps["created_date"]
    return opps[(d >= pd.Timestamp(start)) & (d <= pd.Timestamp(end))]


def activity_yield(activities: pd.DataFrame, opportunities: pd.DataFrame, start, end) -> pd.DataFrame:
    """Per rep and for the company ("All reps") over ``[start, end]``, ratios of totals:

    activities_per_opp_created = activities logged ÷ opportunities created (created_date in window);
    activities_per_won_deal = activities logged ÷ deals won (closed won with close_date in window).
    Every activity counts, tied to a deal or not (prospecting that produced nothing is part of the cost).
    """
    act = in_window(prepare(activities), start, end)
    n_act = act["owner"].value_counts()
    n_act.index = n_act.index.astype("str")
    n_created = _created_in(opportunities, start, end)["owner"].astype("str").value_counts()
    n_won = _won_in(opportunities, start, end)["owner"].astype("str").value_counts()
    out = pd.DataFrame({"activities": n_act, "opps_created": n_created, "deals_won": n_won}).fillna(0)
    out = out.astype("int64").sort_index()
    out.loc["All reps"] = out.sum()
    out["activities_per_opp_created"] = out["activities"] / out["opps_created"].where(out["opps_created"] > 0)
    out["activities_per_won_deal"] = out["activities"] / out["deals_won"].where(out["deals_won"] > 0)
    out.index.name = "rep"
    return out.reset_index()


def _tied_before_close(act: pd.DataFrame, closed: pd.DataFrame) -> np.ndarray:
    """For each activity: position of its deal in ``closed`` when tied to it and on/before its close day,
    else -1 (vectorised through the categorical codes of ``opportunity_id``: each category looked up once
    in ``closed``, one Arrow ``index_in`` when both are text)."""
    cats = act["opportunity_id"].cat.categories
    ids = closed["opportunity_id"].astype("str")
    if isinstance(cats.array, pd.arrays.ArrowStringArray) and ids.is_unique:
        from helpers.metrics.pipeline import positions

        remap = positions(pd.Series(cats.array), ids)
    else:
        remap = pd.Index(ids).get_indexer(cats.astype("str"))
    codes = _codes_of(act["opportunity_id"])
    pos = remap[codes] if len(remap) else np.full(len(codes), -1, dtype=np.int64)
    pos[codes < 0] = -1
    tied = np.flatnonzero(pos >= 0)
    close_day = _day(closed["close_date"]) if len(closed) else np.array([], dtype="int64")
    occurred = act["occurred_at"].to_numpy(dtype="datetime64[us]")[tied]
    late = occurred.astype("datetime64[D]").astype("int64") > close_day[pos[tied]]
    pos[tied[late]] = -1
    return pos


def deal_activity(activities: pd.DataFrame, opportunities: pd.DataFrame, start, end) -> pd.DataFrame:
    """One row per deal closed in ``[start, end]`` with the count of its tied activities by type that
    happened on or before its close date (``total``; zero for deals with no activity logged), and the
    deal's owner, is_won, amount and (when present) segment."""
    act = prepare(activities)
    closed = _closed_in(opportunities, start, end).reset_index(drop=True)
    keep = ["opportunity_id", "owner", "is_won", "amount"] + (
        ["segment"] if "segment" in closed.columns else []
    )
    out = closed[keep].copy()
    out["is_won"] = out["is_won"].fillna(False).astype(bool)
    pos = _tied_before_close(act, closed)
    tc, types = _type_codes(act)
    grid = _bincount2(pos, len(closed), tc, len(types))
    for j, t in enumerate(types):
        out[t] = grid[:, j].astype("int64")
    out["total"] = grid.sum(axis=1).astype("int64")
    return out


def won_deal_activity(deals: pd.DataFrame) -> dict:
    """From ``deal_activity``: won deals, mean and median tied activities per won deal (deals with none
    count as 0), and the share of won deals with no tied activity logged."""
    won = deals[deals["is_won"]]
    n = len(won)
    return {
        "won_deals": n,
        "mean_per_won_deal": float(won["total"].mean()) if n else float("nan"),
        "median_per_won_deal": float(won["total"].median()) if n else float("nan"),
        "share_won_without_activity": float((won["total"] == 0).mean()) if n else float("nan"),
    }


def win_association(deals: pd.DataFrame, by: str | None = None, min_deals: int = 1) -> pd.DataFrame:
    """Win rate of closed deals with at least one activity of each type vs without (from ``deal_activity``),
    per ``by`` group (e.g. "segment", "owner") when given. An association, not a cause: deals that go
    well attract demos, and deals without logged activity may simply be unlogged.

    win_rate_with = won ÷ closed among deals with ≥1 activity of the type; win_rate_without likewise for
    deals with none (rates need ≥ ``min_deals`` deals); difference = with − without."""
    types = [t for t in ACTIVITY_TYPES if t in deals.columns]
    keys = [by] if by else []
    won = deals["is_won"].astype("int64")
    parts = []
    for t in types:
        has = deals[t] > 0
        f = pd.DataFrame(
            {
                "type": t,
                "deals_with": has.astype("int64"),
                "won_with": won * has,
                "deals_without": (~has).astype("int64"),
                "won_without": won * ~has,
            }
        )
        if by:
            f[by] = deals[by].astype("str").to_numpy()
        parts.append(
            f.groupby(keys + ["type"], sort=False).sum().reset_index()
            if by
            else f.drop(columns="type").sum().to_frame().T.assign(type=t)
        )
    cols = keys + ["type", "deals_with", "won_with", "deals_without", "won_without"]
    out = pd.concat(parts, ignore_index=True)[cols] if parts else pd.DataFrame(columns=cols)
    if by:
        out = out.sort_values(by, kind="stable", ignore_index=True)
    out["win_rate_with"] = out["won_with"] / out["deals_with"].where(out["deals_with"] >= min_deals)
    out["win_rate_without"] = out["won_without"] / out["deals_without"].where(
        out["deals_without"] >= min_deals
    )
    out["difference"] = out["win_rate_with"] - out["win_rate_without"]
    return out


def winning_sequences(
    activities: pd.DataFrame, opportunities: pd.DataFrame, start, end, steps: int = 3
) -> pd.DataFrame:
    """The opening sequence of activity types on each deal closed in ``[start, end]`` (tied activities on or
    before close, in time order, repeats of the same type in a row collapsed, first ``steps`` kept, e.g.
    "call → meeting → demo"), with deals, won, win_rate = won ÷ deals and share_of_wins = won ÷ all won.
    Deals with no activity logged form the sequence "(no activity logged)". Association, not cause."""
    act = prepare(activities)
    closed = _closed_in(opportunities, start, end).reset_index(drop=True)
    pos = _tied_before_close(act, closed)
    ok = np.flatnonzero(pos >= 0)
    deal, typ = pos[ok], _codes_of(act["type"])[ok]
    occurred = act["occurred_at"].to_numpy(dtype="datetime64[us]")[ok]
    at = np.where(np.isnat(occurred), np.iinfo(np.int64).max, occurred.astype("int64"))  # NaT sorts last
    order = np.lexsort((at, deal))  # by deal, then time; ties keep log order
    deal, typ = deal[order], typ[order]
    # repeats of the same type in a row collapsed, then the first ``steps`` of each deal
    new = np.ones(len(deal), dtype=bool)
    new[1:] = (deal[1:] != deal[:-1]) | (typ[1:] != typ[:-1])
    deal, typ = deal[new], typ[new]
    first = np.ones(len(deal), dtype=bool)
    first[1:] = deal[1:] != deal[:-1]
    starts = np.flatnonzero(first)
    step = np.arange(len(deal)) - np.repeat(starts, np.diff(np.append(starts, len(deal))))
    keep = step < steps
    deal, typ, step = deal[keep], typ[keep], step[keep]
    # each deal's opening sequence as a row of (type code + 2) per step, 0 = no such step
    width = int(step.max()) + 1 if len(step) else 0
    grid = np.zeros((len(closed), width), dtype=np.int64)
    grid[deal, step] = typ + 2
    base = len(act["type"].cat.categories) + 2
    if not (width and len(closed)):
        uniq, inv = np.zeros((min(len(closed), 1), 0), dtype=np.int64), np.zeros(len(closed), dtype=np.int64)
    elif base**width < 2**62:  # each row as one integer (mixed radix), distinct rows by a 1-D unique
        _, first_row, inv = np.unique(
            grid @ (base ** np.arange(width, dtype=np.int64)), return_index=True, return_inverse=True
        )
        uniq = grid[first_row]
    else:
        uniq, inv = np.unique(grid, axis=0, return_inverse=True)
    inv = inv.reshape(-1)
    names = np.array(list(act["type"].cat.categories), dtype=object)
    labels = [_sequence_label(row, names) for row in uniq]
    won = closed["is_won"].fillna(False).astype(bool).to_numpy()
    per_key = pd.DataFrame(
        {
            "sequence": np.array(labels, dtype=object),  # inferred as str (object when empty), as before
            "deals": np.bincount(inv, minlength=len(uniq)).astype("int64"),
            "won": np.bincount(inv, weights=won, minlength=len(uniq)).astype("int64"),
        }
    )
    # (two codes can name the same type: a missing type reads as the last category, as it always has)
    out = per_key.groupby("sequence").sum().reset_index()
    out["win_rate"] = out["won"] / out["deals"]
    total_won = out["won"].sum()
    out["share_of_wins"] = out["won"] / total_won if total_won else np.nan
    return out.sort_values(["won", "deals"], ascending=False, ignore_index=True)


def _sequence_label(row: np.ndarray, names: np.ndarray) -> str:
    """The text of an opening sequence from ``winning_sequences`` ("call → meeting → demo"); ``row``: type
    code + 2 per step (a missing type, code -1, reads as the last category), 0 after the last step."""
    parts = [str(names[c - 2]) for c in row if c]
    return " → ".join(parts) if parts else "(no activity logged)"


# --------------------------------------------------------------------------------------------------
# 4. benchmarks: the reverse funnel
# --------------------------------------------------------------------------------------------------
def funnel_rates(
    activities: pd.DataFrame, opportunities: pd.DataFrame, start, end, owners: list[str] | None = None
) -> pd.Series:
    """Measured conversion over ``[start, end]`` (for ``owners`` when given, else everyone):

    avg_deal_size = bookings of deals won with an amount ÷ their number; win_rate = won ÷ closed
    (close_date in window) — both from ``helpers.metrics.rates``;
    calls_per_opp = calls ÷ opportunities created; meetings_per_opp = meetings held ÷ opportunities created;
    demos_per_opp = demos held ÷ opportunities created (held = held or positive);
    calls_per_meeting = calls ÷ meetings held; meetings_per_demo = meetings held ÷ demos held.
    """
    act = in_window(prepare(activities), start, end)
    opp = opportunities
    if owners is not None:
        act = act[act["owner"].isin(owners)]
        opp = opp[opp["owner"].astype("str").isin(owners)]
    tot = R.totals(_closed_in(opp, start, end))
    created = _created_in(opp, start, end)
    t, o = _codes_of(act["type"]), _codes_of(act["outcome"])
    held = np.isin(o, [OUTCOME_CODE[x] for x in HELD_OUTCOMES])
    calls = int((t == TYPE_CODE["call"]).sum())
    meetings = int(((t == TYPE_CODE["meeting"]) & held).sum())
    demos = int(((t == TYPE_CODE["demo"]) & held).sum())
    n_created, n_won, n_closed = len(created), tot["won"], tot["closed"]

    def ratio(a, b):
        return a / b if b else float("nan")

    return pd.Series(
        {
            "deals_won": n_won,
            "deals_closed": n_closed,
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


def monthly_quota(quotas: pd.DataFrame, as_of) -> pd.Series:
    """rep_id → bookings quota per month for the month of ``as_of``: a quota row whose period covers
    ``as_of`` (period_end defaults to the end of period_start's month), divided by the whole months it
    spans (a quarterly quota of 90,000 is 30,000 a month). Rows with a ``metric`` other than bookings are
    ignored; reps with no row covering ``as_of`` (departed, not yet hired, not quota-carrying) are left out."""
    a = pd.Timestamp(as_of).normalize()
    q = quotas.dropna(subset=["rep_id", "period_start", "quota"])
    if "metric" in q.columns:
        q = q[q["metric"].isna() | q["metric"].astype("str").str.lower().isin(["bookings", "revenue"])]
    ps = q["period_start"]
    pe = q["period_end"] if "period_end" in q.columns else pd.Series(pd.NaT, index=q.index)
    pe = pe.fillna(ps + pd.offsets.MonthEnd(0))
    months = ((pe.dt.year - ps.dt.year) * 12 + pe.dt.month - ps.dt.month + 1).clip(lower=1)
    q = q.assign(monthly=q["quota"] / months)[(ps <= a) & (pe >= a)].sort_values("period_start")
    return q.groupby(q["rep_id"].astype("str"))["monthly"].last().rename("monthly_quota")


def split_meetings(needed: pd.DataFrame, rates: pd.Series) -> pd.DataFrame:
    """Split a combined meetings-and-demos need into meetings and demos by the measured demo share
    (demos held ÷ (meetings held + demos held)); with no history the share is taken as 0."""
    held = rates["meetings_held"] + rates["demos_held"]
    share = rates["demos_held"] / held if held else 0.0
    out = needed.copy()
    total = out["meetings"]
    out["meetings"], out["demos"] = total * (1 - share), total * share
    return out


def benchmark_needs(
    activities: pd.DataFrame,
    opportunities: pd.DataFrame,
    monthly_quotas: pd.Series,
    as_of,
    months: int = 12,
    reps: pd.DataFrame | None = None,
) -> tuple[pd.DataFrame, pd.Series]:
    """Activity per month each rep's quota needs, with the rates used and where the chain came from.

    The AE funnel from AE activity: rates count the activity of AEs only (``helpers.metrics.quota.seller_ids``:
    reps not in an SDR/BDR role, else owners of opportunities) against every opportunity AEs own — the
    opportunities SDR meetings source included; SDR calls and meetings are not counted against AEs.
    Uses ``helpers.metrics.quota.funnel_rates`` + ``reverse_funnel`` (quota → deals → opportunities → meetings and
    demos → calls, benchmarks where a rate cannot be measured), splitting meetings and demos by
    ``split_meetings``. Returns (frame indexed by rep: monthly_quota, deals, opportunities, calls, meetings,
    demos; rates).
    """
    start, end = trailing_window(as_of, months)
    sellers = seller_ids(reps, opportunities)
    rates = funnel_rates(activities, opportunities, start, end, owners=sellers)
    fr = quota_rates(opportunities, activities, as_of, months=months, reps=reps)
    rf = reverse_funnel(monthly_quotas.astype("float64"), **fr.as_kwargs())
    rf = split_meetings(rf.rename(columns={"quota": "monthly_quota"}), rates)
    rates = rates.copy()
    rates["win_rate"], rates["avg_deal_size"] = fr.win_rate, fr.avg_deal_size
    return rf[["monthly_quota", "deals", "opportunities", "calls", "meetings", "demos"]], rates


def actual_activity(activities: pd.DataFrame, start, end, months: float) -> pd.DataFrame:
    """Per rep per month over ``[start, end]``: calls, meetings held, demos held (held = held or positive)
    ÷ ``months``."""
    act = in_window(prepare(activities), start, end)
    oc, owners = _owner_codes(act)
    tc, types = _type_codes(act)
    held = np.isin(_codes_of(act["outcome"]), [OUTCOME_CODE[x] for x in HELD_OUTCOMES])
    counts = _bincount2(oc, len(owners), tc, len(types))
    held_counts = _bincount2(np.where(held, oc, -1), len(owners), tc, len(types))
    return (
        pd.DataFrame(
            {
                "calls": counts[:, TYPE_CODE["call"]],
                "meetings": held_counts[:, TYPE_CODE["meeting"]],
                "demos": held_counts[:, TYPE_CODE["demo"]],
            },
            index=pd.Index(owners, dtype="str", name="rep"),
        )
        / months
    )


def benchmark_gap(needed: pd.DataFrame, actual: pd.DataFrame) -> pd.DataFrame:
    """Per rep with a quota: needed vs actual calls, meetings and demos per month; ``<kind>_gap`` = needed −
    actual (positive = short of what the quota needs), ``<kind>_pct`` = actual ÷ needed."""
    act = actual.reindex(needed.index).fillna(0.0)
    out = needed.copy()
    for kind in ("calls", "meetings", "demos"):
        out = out.rename(columns={kind: f"{kind}_needed"})
        out[f"{kind}_actual"] = act[kind]
        out[f"{kind}_gap"] = out[f"{kind}_needed"] - out[f"{kind}_actual"]
        out[f"{kind}_pct"] = out[f"{kind}_actual"] / out[f"{kind}_needed"].where(out[f"{kind}_needed"] > 0)
    out.index.name = "rep"
    return out.reset_index()


# --------------------------------------------------------------------------------------------------
# 5. time and completeness
# --------------------------------------------------------------------------------------------------
def time_by_type(activities: pd.DataFrame, start, end, weeks: float, by: str | None = None) -> pd.DataFrame:
    """Logged time per type (and per ``by``): hours = Σ duration_minutes ÷ 60, hours_per_week = hours ÷ weeks,
    logged_share = activities with a duration ÷ all activities of the type, avg_minutes = minutes ÷ logged."""
    act = in_window(prepare(activities), start, end)
    dur = (
        act["duration_minutes"].to_numpy(dtype="float64", na_value=np.nan)
        if "duration_minutes" in act.columns
        else np.full(len(act), np.nan)
    )
    logged = ~np.isnan(dur)
    out = _sum_by_type(
        act, by, {"activities": np.ones(len(act)), "logged": logged, "minutes": np.where(logged, dur, 0.0)}
    )
    out[["activities", "logged"]] = out[["activities", "logged"]].astype("int64")
    out["hours"] = out["minutes"] / 60
    out["hours_per_week"] = out["hours"] / weeks
    out["logged_share"] = out["logged"] / out["activities"].where(out["activities"] > 0)
    out["avg_minutes"] = out["minutes"] / out["logged"].where(out["logged"] > 0)
    return out


def logging_completeness(
    activities: pd.DataFrame,
    opportunities: pd.DataFrame,
    start,
    end,
    threshold: float = 0.25,
    min_won: int = 2,
    deals: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """Reps whose logged activity is implausibly low for their bookings, over ``[start, end]``.

    Per rep with deals won: activities_per_won_deal = activities logged ÷ deals won; median = the median
    of that ratio over reps with ≥ ``min_won`` wins; ratio_to_median = rep ÷ median;
    won_without_activity = won deals with no tied activity on or before close.
    flag when: no activity logged at all, or (≥ ``min_won`` wins and ratio_to_median < ``threshold``), or
    more than half the rep's won deals have no tied activity. ``deals``: ``deal_activity`` for the same
    window when already computed.
    """
    y = activity_yield(activities, opportunities, start, end)
    y = y[(y["rep"] != "All reps") & (y["deals_won"] > 0)].set_index("rep")
    if deals is None:
        deals = deal_activity(activities, opportunities, start, end)
    won = deals[deals["is_won"]]
    bookings = won.groupby(won["owner"].astype("str"))["amount"].sum()
    without = (won["total"] == 0).groupby(won["owner"].astype("str")).sum()
    out = y[["deals_won", "activities", "activities_per_won_deal"]].copy()
    out["bookings"] = bookings.reindex(out.index).fillna(0.0)
    out["won_without_activity"] = without.reindex(out.index).fillna(0).astype("int64")
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
