"""The sales activity tracker: volume, outcomes, yield, benchmarks and logging completeness.

The activity log is the largest table (ten or more rows per opportunity), so it is never pulled into
the kernel: every function takes it as an Ibis table (``engine["activities"]``, see
``helpers.data.engine``; a pandas frame is wrapped as an in-memory table) and runs its group-by where
the data lives (DuckDB, PostgreSQL, Spark). Only the aggregates come back, as small pandas frames, and
the ratios, medians and layout are finished in pandas. ``opportunities`` likewise: an Ibis table where
they live (``ReportContext.source``), or a frame (wrapped in memory); the deals a measure ties activity
to are joined with the log on the engine, and only counts and sums per rep, segment or type come back.
``reps`` and ``quotas`` are pandas frames.

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

import dataclasses
import functools

import ibis
import numpy as np
import pandas as pd

from helpers.data.calendar import weeks_window
from helpers.data.schema import ACTIVITY_TYPES, CONNECTED_OUTCOMES
from helpers.metrics import expr as X
from helpers.metrics.expr import among, as_table, beside, day, flag

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
# the activity log on the engine: one normalized view, windows, and group-bys that come back small
# --------------------------------------------------------------------------------------------------


def table(activities) -> ibis.Table:
    """The activity log as an Ibis table (``helpers.metrics.expr.as_table``)."""
    return as_table(activities, timestamps=("occurred_at",))


def _vocab(col, aliases: dict[str, str]):
    """Lower-cased, trimmed, alias-mapped text ("In-Mail " → social)."""
    return col.cast("string").strip().lower().substitute(aliases)


def normalized(activities) -> ibis.Table:
    """The columns the tracker uses, with ``type`` and ``outcome`` in the known vocabulary (lower-cased,
    aliases such as "in-mail" → social mapped; other values kept, lower-cased) and the ids as text:
    owner, type, occurred_at, opportunity_id (null when the log has none), outcome, [duration_minutes],
    [activity_id]."""
    t = table(activities)
    cols = {
        "owner": t.owner.cast("string"),
        "type": _vocab(t.type, TYPE_ALIASES),
        "occurred_at": t.occurred_at.cast("timestamp"),
        "opportunity_id": t.opportunity_id.cast("string")
        if "opportunity_id" in t.columns
        else ibis.null().cast("string"),
        "outcome": _vocab(t.outcome, OUTCOME_ALIASES)
        if "outcome" in t.columns
        else ibis.null().cast("string"),
    }
    if "duration_minutes" in t.columns:
        cols["duration_minutes"] = t.duration_minutes.cast("float64")
    if "activity_id" in t.columns:
        cols["activity_id"] = t.activity_id.cast("string")
    return t.select(**cols)


def _ts(value, days: int = 0):
    """Midnight of ``value``'s day (+ ``days``) as a timestamp literal."""
    return ibis.literal(
        (pd.Timestamp(value).normalize() + pd.Timedelta(days=days)).to_pydatetime(), type="timestamp"
    )


def in_window(t: ibis.Table, start, end, owners: list[str] | None = None) -> ibis.Table:
    """Rows with ``start <= day(occurred_at) <= end`` (and ``owner`` in ``owners`` when given)."""
    t = t.filter(t.occurred_at >= _ts(start), t.occurred_at < _ts(end, 1))
    return t if owners is None else among(t, "owner", owners)


def scoped(activities, owners: list[str] | None) -> ibis.Table:
    """The log of ``owners`` only (all of it when None), still on the engine."""
    t = table(activities)
    return t if owners is None else among(t, "owner", owners)


def count(activities, start, end, distinct: str | None = None) -> int:
    """Activities with ``start <= day(occurred_at) <= end`` (or the distinct values of ``distinct`` among
    them, e.g. "owner": the reps who logged any)."""
    w = in_window(normalized(activities), start, end)
    n = (w[distinct].nunique() if distinct else w.count()).execute()
    return int(n or 0)


def recent_activity(activities, ids, as_of, days: int = 30) -> pd.DataFrame:
    """The logged rows (opportunity_id, type, occurred_at) of the deals ``ids`` in the ``days`` days to
    ``as_of`` (after ``as_of − days``, on or before ``as_of``'s day), in time order — a handful of
    deals, so the rows themselves come back. ``type`` as logged."""
    t = table(activities)
    a = pd.Timestamp(as_of)
    t = t.filter(
        t.occurred_at > ibis.literal((a - pd.Timedelta(days=days)).to_pydatetime(), type="timestamp"),
        t.occurred_at < ibis.literal((a + pd.Timedelta(days=1)).to_pydatetime(), type="timestamp"),
        t.opportunity_id.cast("string").isin([str(i) for i in pd.Series(ids).dropna().unique()]),
    )
    keys = ["opportunity_id", "occurred_at"] + (["activity_id"] if "activity_id" in t.columns else [])
    out = _frame(t.select("opportunity_id", "type", "occurred_at", *keys[2:]).order_by(keys))
    out["occurred_at"] = pd.to_datetime(out["occurred_at"]).astype("datetime64[us]")
    return out[["opportunity_id", "type", "occurred_at"]].reset_index(drop=True)


def _frame(expr) -> pd.DataFrame:
    out = expr.execute()
    return out.to_frame() if isinstance(out, pd.Series) else out


def types_of(t: ibis.Table) -> list[str]:
    """The known types first, then any other type the log holds (sorted)."""
    seen = _distinct(t, "type")
    return list(ACTIVITY_TYPES) + sorted(set(seen) - set(ACTIVITY_TYPES))


def owners_of(t: ibis.Table) -> list[str]:
    """Every owner in the log, sorted."""
    return sorted(_distinct(t, "owner"))


@functools.lru_cache(maxsize=64)
def _distinct_cached(op, col: str) -> tuple[str, ...]:
    t = op.to_expr()
    return tuple(_frame(t.select(t[col]).distinct())[col].dropna().astype("str"))


def _distinct(t: ibis.Table, col: str) -> tuple[str, ...]:
    """The distinct values of ``col`` (one scan per table and column in a kernel: the answer is kept
    for the same table expression)."""
    return _distinct_cached(t.op(), col)


def _grid(df: pd.DataFrame, rows: str, row_labels, cols: str, col_labels, value: str = "n") -> np.ndarray:
    """The ``value`` of an aggregated frame laid out on ``row_labels × col_labels`` (zeros elsewhere;
    rows whose keys are not among the labels are dropped)."""
    r = pd.Index(row_labels).get_indexer(df[rows]) if len(df) else np.array([], dtype="int64")
    c = pd.Index(col_labels).get_indexer(df[cols]) if len(df) else np.array([], dtype="int64")
    ok = (r >= 0) & (c >= 0)
    out = np.zeros((len(row_labels), len(col_labels)), dtype="float64")
    np.add.at(out, (r[ok], c[ok]), df[value].to_numpy(dtype="float64")[ok])
    return out


# --------------------------------------------------------------------------------------------------
# 1. volume
# --------------------------------------------------------------------------------------------------
def activity_counts(
    activities, start, end, freq: str | None = "W", owners: list[str] | None = None, per_owner: bool = True
) -> pd.DataFrame:
    """Activities per owner per period per type, zero-filled (periods with no activity appear as 0).

    ``freq``: "D" calendar day, "W" 7-day week ending on ``end`` (labelled by its last day; the first week
    is partial unless the window is whole weeks, see ``helpers.data.calendar.weeks_window``), "M" calendar
    month (labelled by its first day), None the whole window (no period level). Index (owner, period):
    ``owners`` when given, else every owner in the log (sorted); one column per type (``types_of``) plus
    ``total``. ``per_owner=False``: summed over the owners on the engine (index period; with
    ``freq=None`` one row). One group-by on the engine; only what the index holds comes back.
    """
    t = normalized(activities)
    types = types_of(t)
    names = (owners_of(t) if owners is None else [str(o) for o in owners]) if per_owner else ["all"]
    w = in_window(t, start, end, [str(o) for o in owners] if owners is not None else None)
    s, e = pd.Timestamp(start).normalize(), pd.Timestamp(end).normalize()
    day = w.occurred_at.date()
    if freq is None:
        period = ibis.literal(0)
        labels = None
    elif freq == "D":
        period = day.delta(ibis.literal(s.date(), type="date"), unit="day")
        labels = pd.date_range(s, e, freq="D")
    elif freq == "W":
        n = (e - s).days // 7 + 1
        period = (n - 1) - ibis.literal(e.date(), type="date").delta(day, unit="day") // 7
        labels = pd.DatetimeIndex([e - pd.Timedelta(days=7 * k) for k in range(n - 1, -1, -1)])
    elif freq == "M":
        m0 = s.to_period("M")
        labels = pd.period_range(m0, e.to_period("M"), freq="M").to_timestamp()
        period = (w.occurred_at.year() - m0.year) * 12 + w.occurred_at.month() - m0.month
    else:
        raise ValueError(f"freq must be 'D', 'W' or 'M', got {freq!r}")
    if not per_owner:  # the owners' sum: a row without an owner is no owner's (as per owner)
        w = w.filter(w.owner.notnull())
    who = w.owner if per_owner else ibis.literal("all")
    cols = [f"_t{j}" for j in range(len(types))]  # one sum per type: a row per owner and period comes back
    sums = {c: _is(w.type, typ).ifelse(1, 0).sum() for c, typ in zip(cols, types, strict=True)}
    agg = _frame(w.group_by(owner=who, period=period).agg(**sums))
    agg = agg[agg["period"].notna()]
    np_ = 1 if labels is None else len(labels)
    row = pd.Index(names).get_indexer(agg["owner"]) if len(agg) else np.array([], dtype="int64")
    key = row * np_ + agg["period"].to_numpy(dtype="int64")
    grid = np.zeros((len(names) * np_, len(types)), dtype="float64")
    np.add.at(grid, key[row >= 0], agg[cols].fillna(0).to_numpy(dtype="float64")[row >= 0])
    if labels is None:
        idx = pd.Index(names, dtype="str", name="owner")
    elif per_owner:
        idx = pd.MultiIndex.from_product(
            [pd.Index(names, dtype="str", name="owner"), pd.DatetimeIndex(labels, name="period")]
        )
    else:
        idx = pd.DatetimeIndex(labels, name="period")
    out = pd.DataFrame(grid.astype("int64"), index=idx, columns=pd.Index(types, dtype="str"))
    out["total"] = out.sum(axis=1)
    return out


def window_counts(activities, windows, owners: list[str]) -> list[pd.DataFrame]:
    """``activity_counts(activities, start, end, None, owners=owners)`` for each ``(start, end)`` of
    ``windows``, from one group-by on the engine: one row per owner comes back, each window's counts
    per type columns of it."""
    t = normalized(activities)
    types = types_of(t)
    names = [str(o) for o in owners]
    w = in_window(t, min(s for s, _ in windows), max(e for _, e in windows), names)
    sums = {}
    for i, (s, e) in enumerate(windows):
        inside = (w.occurred_at >= _ts(s)) & (w.occurred_at < _ts(e, 1))
        for j, typ in enumerate(types):
            sums[f"_w{i}_t{j}"] = (_is(w.type, typ) & inside.fill_null(False)).ifelse(1, 0).sum()
    agg = _frame(w.group_by(owner=w.owner).agg(**sums))
    row = pd.Index(names).get_indexer(agg["owner"]) if len(agg) else np.array([], dtype="int64")
    out = []
    for i in range(len(windows)):
        cols = [f"_w{i}_t{j}" for j in range(len(types))]
        grid = np.zeros((len(names), len(types)), dtype="float64")
        np.add.at(grid, row[row >= 0], agg[cols].fillna(0).to_numpy(dtype="float64")[row >= 0])
        got = pd.DataFrame(
            grid.astype("int64"),
            index=pd.Index(names, dtype="str", name="owner"),
            columns=pd.Index(types, dtype="str"),
        )
        got["total"] = got.sum(axis=1)
        out.append(got)
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


def rep_volume(activities, as_of, weeks: int = 13, reps: pd.DataFrame | None = None) -> pd.DataFrame:
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
    t = normalized(activities)
    start, end = weeks_window(as_of, weeks)
    pstart, pend = start - pd.Timedelta(days=7 * weeks), start - pd.Timedelta(days=1)
    active = set(active_reps(reps, start, end))
    known = (
        set(reps["rep_id"].dropna().astype("str")) if reps is not None and "rep_id" in reps.columns else set()
    )
    names = sorted({o for o in owners_of(t) if o not in known or o in active} | active)
    cur, prev = window_counts(t, [(start, end), (pstart, pend)], names)  # one query for both
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


def team_weekly_median(activities, start, end, reps: pd.DataFrame | None, team: str) -> pd.DataFrame:
    """Median weekly total over the owners of the log in ``team`` (``rep_teams``; "(no team)" for an owner
    the reps table has no team for, "All" without teams), from ``activity_counts(..., "W")`` of those
    owners only: columns team, period, median (empty when the log has no owner in ``team``)."""
    teams = rep_teams(reps)
    names = owners_of(normalized(activities))
    of = teams.reindex(names).fillna("All" if teams.empty else "(no team)").to_numpy()
    members = [n for n, tm in zip(names, of, strict=True) if tm == team]
    if not members:
        return pd.DataFrame({"team": pd.Series(dtype="str"), "period": [], "median": []})
    df = activity_counts(activities, start, end, "W", owners=members)["total"].reset_index()
    df["team"] = team
    return (
        df.groupby(["team", "period"], as_index=False)["total"].median().rename(columns={"total": "median"})
    )


# --------------------------------------------------------------------------------------------------
# 2. outcomes
# --------------------------------------------------------------------------------------------------
def _sum_by_type(
    w: ibis.Table, types: list[str], by: str | None, values: dict, groups: list[str] | None = None
) -> pd.DataFrame:
    """Σ of each value expression per (``by`` group, type), one group-by on the engine: every group ×
    known type, plus other types that occur (sorted by group, then type in ``types`` order).
    Columns: [by], type, one per value."""
    keys = {"type": w.type} | ({"group": w[by].cast("string")} if by else {})

    def total(v):  # Σ of a per-row value; a constant c sums to c × rows
        v = v(w)
        v = (v.ifelse(1, 0) if v.type().is_boolean() else v).cast("float64")  # (PostgreSQL casts no bool)
        return w.count().cast("float64") * v if isinstance(v, ibis.expr.types.Scalar) else v.sum()

    agg = _frame(w.group_by(**keys).agg(**{k: total(v) for k, v in values.items()}))
    if by is None:
        groups = ["all"]
    elif groups is None:
        groups = sorted(agg["group"].dropna().astype("str").unique())
    if by is None:
        agg["group"] = "all"
    data = {k: _grid(agg, "group", groups, "type", types, k).ravel() for k in values}
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


def _held(w):
    return w.outcome.isin(list(HELD_OUTCOMES)).fill_null(False)


def _is(col, value):
    return (col == value).fill_null(False)


def meeting_outcomes(activities, start, end, by: str | None = None) -> pd.DataFrame:
    """Meetings and demos in ``[start, end]`` per type (and per ``by`` column, e.g. "owner"), plus a
    "meeting+demo" row:

    booked (all logged), held (held + positive), no_show, scheduled, positive, other (no/unknown outcome),
    no_show_rate = no_show ÷ (held + no_show) (scheduled excluded), positive_rate = positive ÷ held.
    """
    t = normalized(activities)
    types = types_of(t)
    w = in_window(t, start, end)

    def mtg(x):
        return x.type.isin(list(MEETING_TYPES)).fill_null(False)

    vals = {
        "booked": mtg,
        "held": lambda x: mtg(x) & _held(x),
        "no_show": lambda x: mtg(x) & _is(x.outcome, "no_show"),
        "scheduled": lambda x: mtg(x) & _is(x.outcome, "scheduled"),
        "positive": lambda x: mtg(x) & _is(x.outcome, "positive"),
    }
    cols = [*vals, "other"]
    per = _sum_by_type(w, types, by, vals, owners_of(t) if by == "owner" else None)
    per = per[per["type"].isin(MEETING_TYPES)].reset_index(drop=True)
    per["other"] = per["booked"] - per["held"] - per["no_show"] - per["scheduled"]
    out = _with_total(per, by, "meeting+demo", cols)
    out[cols] = out[cols].astype("int64")
    out["no_show_rate"] = out["no_show"] / (out["held"] + out["no_show"]).where(lambda x: x > 0)
    out["positive_rate"] = out["positive"] / out["held"].where(out["held"] > 0)
    return out


def _has_time(w: ibis.Table) -> bool:
    n = w.filter(w.occurred_at != w.occurred_at.truncate("D")).count().execute()
    return bool(n)


def hit_rates(activities, start, end, by: str = "channel") -> pd.DataFrame:
    """Connect / reply rate per channel (call, email, social), optionally per weekday or hour.

    attempts = rows whose outcome is the channel's hit or miss (call: connected/no_answer; email,
    social: replied/no_reply); hits = connected/replied; hit_rate = hits ÷ attempts (NaN with no attempts).
    ``by``: "channel" (one row per channel), "weekday" (Mon..Sun, all seven, zero-filled), "hour" (0–23,
    hours with attempts only; stamps at exactly 00:00:00 are taken as date-only and left out; empty when
    the log has no time of day). One group-by on the engine.
    """
    w = in_window(normalized(activities), start, end)
    channels = list(CONNECTED_OUTCOMES)
    hit = ibis.or_(*[_is(w.type, c) & _is(w.outcome, CONNECTED_OUTCOMES[c]) for c in channels])
    attempt = ibis.or_(
        *[
            _is(w.type, c) & w.outcome.isin([CONNECTED_OUTCOMES[c], MISSED_OUTCOMES[c]]).fill_null(False)
            for c in channels
        ]
    )
    if by == "channel":
        key, labels = ibis.literal(0), [0]
    elif by == "weekday":
        key, labels = w.occurred_at.day_of_week.index(), list(range(7))
    elif by == "hour":
        if not _has_time(w):
            return pd.DataFrame(columns=["channel", "hour", "attempts", "hits", "hit_rate"])
        key = ibis.ifelse(
            w.occurred_at == w.occurred_at.truncate("D"), ibis.null().cast("int64"), w.occurred_at.hour()
        )
        labels = list(range(24))
    else:
        raise ValueError(f"by must be 'channel', 'weekday' or 'hour', got {by!r}")
    agg = _frame(
        w.mutate(_key=key, _hit=hit.ifelse(1, 0))
        .filter(attempt)
        .group_by(channel="type", key="_key")
        .agg(attempts=lambda x: x.count(), hits=lambda x: x._hit.sum())
    )
    agg = agg[agg["key"].notna()]
    attempts = _grid(agg, "channel", channels, "key", labels, "attempts")
    hits = _grid(agg, "channel", channels, "key", labels, "hits")
    col = "hour" if by == "hour" else "weekday"
    names = list(WEEKDAYS) if by == "weekday" else labels
    out = pd.DataFrame(
        {
            "channel": pd.array(np.repeat(channels, len(labels)), dtype="str"),
            col: np.tile(np.array(names, dtype=object), len(channels)),
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
def opportunity_share(activities, start, end, by: str | None = None) -> pd.DataFrame:
    """Share of activities tied to an opportunity, per type (and per ``by``), plus an "all" row:
    share_tied = activities with an ``opportunity_id`` ÷ all activities."""
    t = normalized(activities)
    w = in_window(t, start, end)
    per = _sum_by_type(
        w,
        types_of(t),
        by,
        {"activities": lambda x: ibis.literal(1), "tied": lambda x: x.opportunity_id.notnull()},
        owners_of(t) if by == "owner" else None,
    )
    out = _with_total(per, by, "all", ["activities", "tied"])
    out[["activities", "tied"]] = out[["activities", "tied"]].astype("int64")
    out["share_tied"] = out["tied"] / out["activities"].where(out["activities"] > 0)
    return out


# the columns of the opportunities the activity measures and the quota plan read
DEAL_COLUMNS = (
    "opportunity_id", "owner", "created_date", "close_date", "is_closed", "is_won", "amount", "segment"
)  # fmt: skip


def opportunities(opps, owners: list[str] | None = None) -> ibis.Table:
    """The opportunities as an Ibis table (``helpers.metrics.expr.as_table``): an engine's table as it is,
    so what is built on it runs where the deals live; a frame's ``DEAL_COLUMNS`` as an in-memory table.
    ``owners``: the deals of these owners only (all when None)."""
    if isinstance(opps, pd.DataFrame):
        opps = opps[[c for c in DEAL_COLUMNS if c in opps.columns]]
    t = as_table(opps)
    return t if owners is None else among(t, "owner", owners)


def deal_funnel(opps, start, end, owners=None) -> tuple[dict, int]:
    """The deal side of a funnel over ``[start, end]`` (for ``owners`` when given), counted on the engine
    (``opps``: an engine table or a frame): the totals (``rates.as_totals``) of the deals closed in the window
    (``helpers.metrics.expr.totals``) and the number of deals created in it."""
    o = opportunities(opps, owners)
    made = o.filter(o.created_date >= day(start), o.created_date <= day(end))
    return X.totals(X.closed_between(o, start, end)), int(made.count().execute())


def activity_yield(activities, opps, start, end, owners=None) -> pd.DataFrame:
    """Per rep and for the company ("All reps") over ``[start, end]``, ratios of totals:

    activities_per_opp_created = activities logged ÷ opportunities created (created_date in window);
    activities_per_won_deal = activities logged ÷ deals won (closed won with close_date in window).
    Every activity counts, tied to a deal or not (prospecting that produced nothing is part of the cost).
    ``owners``: the activities of these owners only (the deals are ``opps`` as given: an engine
    table or a frame). The deals are counted per owner on the engine (deals without an owner are no
    rep's, and not in "All reps" either)."""
    t = normalized(activities)
    w = in_window(t, start, end, owners)
    n_act = _frame(w.group_by("owner").agg(n=w.count())).set_index("owner")["n"]
    n_act.index = n_act.index.astype("str")
    # every owner of the log (0 without activity in the window), as the report has always listed them
    logged = owners_of(t) if owners is None else sorted(set(owners_of(t)) & {str(o) for o in owners})
    n_act = n_act.reindex(n_act.index.union(pd.Index(logged, dtype="str")), fill_value=0)
    o = opportunities(opps)
    o = o.filter(o.owner.notnull())
    created = ((o.created_date >= day(start)) & (o.created_date <= day(end))).fill_null(False)
    won = flag(o.is_closed) & flag(o.is_won) & (o.close_date >= day(start)) & (o.close_date <= day(end))
    won = won.fill_null(False)  # closed won in the window (``helpers.metrics.expr.closed_between``)
    deals = _frame(
        o.filter(created | won)
        .group_by(owner=o.owner.cast("string"))
        .agg(opps_created=created.ifelse(1, 0).sum(), deals_won=won.ifelse(1, 0).sum())
    ).set_index("owner")
    deals.index = deals.index.astype("str")
    out = pd.DataFrame(
        {"activities": n_act, "opps_created": deals["opps_created"], "deals_won": deals["deals_won"]}
    )
    out = out.fillna(0).astype("int64").sort_index()
    out.loc["All reps"] = out.sum()
    out["activities_per_opp_created"] = out["activities"] / out["opps_created"].where(out["opps_created"] > 0)
    out["activities_per_won_deal"] = out["activities"] / out["deals_won"].where(out["deals_won"] > 0)
    out.index.name = "rep"
    return out.reset_index()


def closed_deals(opps, start, end) -> ibis.Table:
    """The deals closed in ``[start, end]`` (``helpers.metrics.expr.closed_between``) as the columns the
    activity measures join the log with: ``_deal`` (id as text), ``_close`` (the close day as a
    timestamp), ``_won`` (1 or 0), ``_own`` (owner as text), ``_seg`` (segment as text, empty without
    one) and ``_amt`` (amount, empty = 0). Still where the deals live."""
    c = X.closed_between(opportunities(opps), start, end)
    text = ibis.null().cast("string")
    return c.select(
        _deal=c.opportunity_id.cast("string"),
        _close=c.close_date.cast("date").cast("timestamp"),
        _won=flag(c.is_won).ifelse(1, 0).cast("int64"),
        _own=c.owner.cast("string") if "owner" in c.columns else text,
        _seg=c.segment.cast("string") if "segment" in c.columns else text,
        _amt=X.amount(c).cast("float64"),
    )


def _tied_before_close(t: ibis.Table, closed: ibis.Table) -> ibis.Table:
    """The activities tied to a deal of ``closed`` (``closed_deals``, joined with the log where both
    live: ``helpers.metrics.expr.beside``) on or before its close day (an activity without a time stamp
    counts), with ``closed``'s columns."""
    j = t.inner_join(closed, t.opportunity_id == closed._deal)
    return j.filter(
        j.occurred_at.isnull() | (j.occurred_at < j._close.cast("timestamp") + ibis.interval(days=1))
    )


@dataclasses.dataclass(frozen=True)
class DealActivity:
    """The activity tied to the deals closed in a window, counted on the engine (``deal_activity``):

    - ``segments``: per segment of the closed deals (text; an empty one for deals without one, or for
      every deal when there is no segment column): ``deals`` and ``won`` (no rows when none closed);
    - ``owners``: per owner with won deals (index, text): ``won`` deals, their ``bookings`` (Σ amount,
      empty = 0) and ``won_active``, those with at least one tied activity;
    - ``won_totals``: tied activities on a won deal → won deals with that many (0 included);
    - ``with_type``: per segment (as in ``segments``) and type: ``deals`` with at least one tied
      activity of the type and the ``won`` among them.
    """

    segments: pd.DataFrame
    owners: pd.DataFrame
    won_totals: pd.Series
    with_type: pd.DataFrame

    def __len__(self) -> int:
        return int(self.segments["deals"].sum())

    @property
    def won_deals(self) -> int:
        return int(self.segments["won"].sum())

    @property
    def won_active(self) -> pd.Series:
        return self.owners.loc[self.owners["won_active"] > 0, "won_active"]


def deal_activity(activities, opps, start, end) -> DealActivity:
    """The deals closed in ``[start, end]`` and their tied activities of a known type that happened on or
    before the close date (``DealActivity``). One query on the engine, the closed deals joined with the
    log where both live: per deal, then summed over deals (the deals per segment, the won deals per
    owner with those among them with tied activity, the won deals' totals, per segment and type), so
    only those sums come back."""
    t = normalized(activities)
    closed = beside(t, closed_deals(opps, start, end))
    tied = _tied_before_close(t, closed)
    tied = tied.filter(tied.type.notnull())
    text, none = ibis.null().cast("string"), ibis.literal(0)
    won = tied.filter(tied._won == 1).group_by("_deal", "_own").agg(_total=lambda x: x.count())
    typed = tied.select("_deal", "_seg", "_won", "type").distinct()
    won_closed = closed.filter(closed._won == 1)
    # per owner one row: the won deals, their bookings and (_w) those with tied activity
    active = won.group_by(_o=won._own).agg(_w=won.count())
    per_owner = won_closed.group_by(_g=won_closed._own).agg(_n=won_closed.count(), _a=won_closed._amt.sum())
    per_owner = per_owner.left_join(active, per_owner._g == active._o)
    parts = [
        won.group_by(_k=won._total).agg(_n=won.count()).mutate(_kind=0, _g=text, type=text, _w=none, _a=0.0),
        typed.group_by(_g=typed._seg, type=typed.type)
        .agg(_n=typed.count(), _w=typed._won.sum())
        .mutate(_kind=2, _k=none, _a=0.0),
        closed.group_by(_g=closed._seg)
        .agg(_n=closed.count(), _w=closed._won.sum())
        .mutate(_kind=3, _k=none, type=text, _a=0.0),
        per_owner.select("_g", "_n", "_a", _w=per_owner._w.fill_null(0), _kind=4, _k=none, type=text),
    ]
    ints = ["_kind", "_k", "_n", "_w"]
    parts = [
        p.select(
            **{c: p[c].cast("int64") for c in ints},
            _g=p._g.cast("string"),
            type=p.type.cast("string"),
            _a=p._a.cast("float64"),
        )
        for p in parts
    ]
    got = _frame(ibis.union(*parts, distinct=False))
    got[ints] = got[ints].fillna(0).astype("int64")
    got["_a"] = got["_a"].astype("float64").fillna(0.0)
    got["_g"] = got["_g"].astype("str")
    kind = got["_kind"]
    seg = got.loc[kind == 3, ["_g", "_n", "_w"]].set_axis(["segment", "deals", "won"], axis=1)
    seg = seg.sort_values("segment", na_position="last", ignore_index=True)
    n_won = int(seg["won"].sum())
    totals = got[kind == 0].groupby("_k")["_n"].sum()
    totals.loc[0] = n_won - int(totals.sum())
    totals = totals[totals > 0].sort_index()
    totals.index.name, totals.name = "total", "deals"
    per = got[(kind == 4) & got["_g"].notna()].set_index("_g")
    owners = pd.DataFrame({"won": per["_n"], "bookings": per["_a"], "won_active": per["_w"]}).astype(
        {"won": "int64", "bookings": "float64", "won_active": "int64"}
    )
    owners.index = pd.Index(owners.index, dtype="str", name="owner")
    with_type = got.loc[kind == 2, ["_g", "type", "_n", "_w"]].set_axis(
        ["segment", "type", "deals", "won"], axis=1
    )
    with_type = with_type.sort_values(["segment", "type"], na_position="last", ignore_index=True)
    return DealActivity(seg, owners.sort_index(), totals, with_type)


def won_deal_activity(deals: DealActivity) -> dict:
    """From ``deal_activity``: won deals, mean and median tied activities per won deal (deals with none
    count as 0), and the share of won deals with no tied activity logged."""
    n = deals.won_deals
    total = pd.Series(np.repeat(deals.won_totals.index.to_numpy("int64"), deals.won_totals.to_numpy()))
    return {
        "won_deals": n,
        "mean_per_won_deal": float(total.mean()) if n else float("nan"),
        "median_per_won_deal": float(total.median()) if n else float("nan"),
        "share_won_without_activity": float((total == 0).mean()) if n else float("nan"),
    }


def win_association(deals: DealActivity, by: str | None = None, min_deals: int = 1) -> pd.DataFrame:
    """Win rate of closed deals with at least one activity of each type vs without (from ``deal_activity``),
    per segment when ``by="segment"``. An association, not a cause: deals that go well attract demos, and
    deals without logged activity may simply be unlogged.

    win_rate_with = won ÷ closed among deals with ≥1 activity of the type; win_rate_without likewise for
    deals with none (rates need ≥ ``min_deals`` deals); difference = with − without. Segments in text
    order (deals without one left out), types in ``ACTIVITY_TYPES`` order."""
    if by not in (None, "segment"):
        raise ValueError(f"by must be None or 'segment', got {by!r}")
    cols = (["segment"] if by else []) + ["type", "deals_with", "won_with", "deals_without", "won_without"]
    seg, wt = deals.segments, deals.with_type
    if by:
        seg = seg[seg["segment"].notna()]
        names = sorted(seg["segment"].astype("str"))
        seg = seg.set_index("segment").loc[names]
        n, w = seg["deals"].tolist(), seg["won"].tolist()
        wt = wt[wt["segment"].notna()]
    else:
        names, n, w = ["all"], [len(deals)], [deals.won_deals]
        wt = wt.assign(segment="all")
    got = wt.groupby(["segment", "type"])[["deals", "won"]].sum()
    rows = []
    for g, name in enumerate(names):
        for t in ACTIVITY_TYPES:
            dw, ww = (
                (int(got.at[(name, t), "deals"]), int(got.at[(name, t), "won"]))
                if (name, t) in got.index
                else (0, 0)
            )
            rows.append([name, t, dw, ww, int(n[g]) - dw, int(w[g]) - ww])
    out = pd.DataFrame(rows, columns=["segment", *cols[-5:]])
    out[cols[-4:]] = out[cols[-4:]].astype("int64")
    if by:
        out["segment"] = out["segment"].astype("str")
    else:
        out = out.drop(columns="segment")
    out = out[cols]
    out["win_rate_with"] = out["won_with"] / out["deals_with"].where(out["deals_with"] >= min_deals)
    out["win_rate_without"] = out["won_without"] / out["deals_without"].where(
        out["deals_without"] >= min_deals
    )
    out["difference"] = out["win_rate_with"] - out["win_rate_without"]
    return out


def winning_sequences(activities, opps, start, end, steps: int = 3) -> pd.DataFrame:
    """The opening sequence of activity types on each deal closed in ``[start, end]`` (tied activities on or
    before close, in time order — ties in time by activity id —, repeats of the same type in a row
    collapsed, first ``steps`` kept, e.g. "call → meeting → demo"), with deals, won, win_rate = won ÷
    deals and share_of_wins = won ÷ all won. Deals with no activity logged form the sequence
    "(no activity logged)". Association, not cause. The steps are found on the engine (window
    functions, the closed deals joined with the log where both live) and the deals counted there per
    opening (its first ``steps`` types) and outcome; only those counts come back."""
    t = normalized(activities)
    closed = beside(t, closed_deals(opps, start, end))
    tied = _tied_before_close(t, closed)
    order = [tied.occurred_at.isnull(), tied.occurred_at] + (
        [tied.activity_id] if "activity_id" in tied.columns else []
    )
    prev = tied.type.lag().over(group_by=tied._deal, order_by=order)
    starts = tied.mutate(_new=prev.isnull() | (prev != tied.type))
    starts = starts.filter(starts._new)
    o2 = [starts.occurred_at.isnull(), starts.occurred_at] + (
        [starts.activity_id] if "activity_id" in starts.columns else []
    )
    ranked = starts.mutate(_step=ibis.row_number().over(group_by=starts._deal, order_by=o2))  # from 0
    ranked = ranked.filter(ranked._step < steps)
    text = ibis.null().cast("string")
    first = ranked.group_by("_deal", "_won").agg(
        **{f"_s{k}": ibis.ifelse(ranked._step == k, ranked.type, text).max() for k in range(steps)}
    )
    keys = [f"_s{k}" for k in range(steps)]
    # the openings' counts, and (``_all``) the closed deals' per outcome: one query
    counts = first.group_by(*keys, "_won").agg(_n=first.count()).mutate(_all=0)
    every = closed.group_by("_won").agg(_n=closed.count()).mutate(_all=1, **dict.fromkeys(keys, text))
    cols = [*keys, "_won", "_n", "_all"]
    parts = [
        p.select(
            **{k: p[k].cast("string") for k in keys},
            _won=p._won.cast("int64"),
            _n=p._n.cast("int64"),
            _all=p._all.cast("int64"),
        )
        for p in (counts, every)
    ]
    both = _frame(ibis.union(*parts, distinct=False))[cols]
    both[["_won", "_n"]] = both[["_won", "_n"]].astype("int64")
    every = both[both["_all"] == 1]
    n_closed = int(every["_n"].sum())
    n_won = int(every.loc[every["_won"] == 1, "_n"].sum())
    got = both[both["_all"] == 0]
    # the opening as text, as a per-deal pivot of the steps would write it (a missing first type: no label)
    got = got.sort_values(keys + ["_won"], na_position="last", ignore_index=True)
    label = got[keys[0]].astype("str")
    for k in keys[1:]:
        label = label.where(got[k].isna(), label + " → " + got[k].astype("str"))
    n = got["_n"].astype("int64").to_numpy()
    w = n * got["_won"].astype("int64").to_numpy()
    none_n, none_w = n_closed - int(n.sum()), n_won - int(w.sum())
    per = pd.DataFrame(
        {
            "sequence": pd.concat([label, pd.Series(["(no activity logged)"] * (none_n > 0))]).to_numpy(),
            "deals": np.concatenate([n, [none_n] * (none_n > 0)]).astype("int64"),
            "won": np.concatenate([w, [none_w] * (none_n > 0)]).astype("int64"),
        }
    )
    out = per.groupby("sequence").sum().reset_index() if n_closed else per
    out = out.astype({"sequence": "str", "deals": "int64", "won": "int64"})
    out["win_rate"] = out["won"] / out["deals"]
    total_won = out["won"].sum()
    out["share_of_wins"] = out["won"] / total_won if total_won else np.nan
    return out.sort_values(["won", "deals"], ascending=False, ignore_index=True)


# --------------------------------------------------------------------------------------------------
# 4. benchmarks: the reverse funnel
# --------------------------------------------------------------------------------------------------
def _held_counts(w: ibis.Table, per_owner: bool = True) -> pd.DataFrame:
    """Per owner (or in all, one row): calls, meetings held, demos held (held = held or positive) in
    ``w``."""
    held = _held(w)
    sums = {
        "calls": _is(w.type, "call").ifelse(1, 0).sum(),
        "meetings": (_is(w.type, "meeting") & held).ifelse(1, 0).sum(),
        "demos": (_is(w.type, "demo") & held).ifelse(1, 0).sum(),
    }
    if not per_owner:
        return _frame(w.aggregate(**sums)).fillna(0)
    return _frame(w.group_by("owner").agg(**sums)).set_index("owner")


def funnel_rates(activities, opps, start, end, owners: list[str] | None = None) -> pd.Series:
    """Measured conversion over ``[start, end]`` (for ``owners`` when given, else everyone):

    avg_deal_size = bookings of deals won with an amount ÷ their number; win_rate = won ÷ closed
    (close_date in window) — both from ``helpers.metrics.rates``, summed on the engine (``deal_funnel``);
    calls_per_opp = calls ÷ opportunities created; meetings_per_opp = meetings held ÷ opportunities created;
    demos_per_opp = demos held ÷ opportunities created (held = held or positive);
    calls_per_meeting = calls ÷ meetings held; meetings_per_demo = meetings held ÷ demos held.
    """
    w = in_window(normalized(activities), start, end, owners)
    tot, n_created = deal_funnel(opps, start, end, owners)
    counts = _held_counts(w, per_owner=False).iloc[0]
    calls, meetings, demos = (int(counts.get(k, 0)) for k in ("calls", "meetings", "demos"))
    n_won, n_closed = tot["won"], tot["closed"]

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


def actual_activity(activities, start, end, months: float) -> pd.DataFrame:
    """Per owner of the log (sorted): calls, meetings held, demos held (held = held or positive) in
    ``[start, end]`` per month (÷ ``months``)."""
    t = normalized(activities)
    out = _held_counts(in_window(t, start, end))
    out = out[["calls", "meetings", "demos"]].reindex(owners_of(t), fill_value=0)
    out.index = pd.Index(out.index.astype("str"), dtype="str", name="rep")
    return out.astype("int64") / months


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
def time_by_type(activities, start, end, weeks: float, by: str | None = None) -> pd.DataFrame:
    """Logged time per type (and per ``by``): hours = Σ duration_minutes ÷ 60, hours_per_week = hours ÷ weeks,
    logged_share = activities with a duration ÷ all activities of the type, avg_minutes = minutes ÷ logged."""
    t = normalized(activities)
    w = in_window(t, start, end)
    has = "duration_minutes" in w.columns
    out = _sum_by_type(
        w,
        types_of(t),
        by,
        {
            "activities": lambda x: ibis.literal(1),
            "logged": (lambda x: x.duration_minutes.notnull()) if has else (lambda x: ibis.literal(0)),
            "minutes": (lambda x: x.duration_minutes.fill_null(0.0))
            if has
            else (lambda x: ibis.literal(0.0)),
        },
        owners_of(t) if by == "owner" else None,
    )
    out[["activities", "logged"]] = out[["activities", "logged"]].astype("int64")
    out["hours"] = out["minutes"] / 60
    out["hours_per_week"] = out["hours"] / weeks
    out["logged_share"] = out["logged"] / out["activities"].where(out["activities"] > 0)
    out["avg_minutes"] = out["minutes"] / out["logged"].where(out["logged"] > 0)
    return out


def has_durations(activities) -> bool:
    """True when the log has a ``duration_minutes`` column with at least one value."""
    t = table(activities)
    return "duration_minutes" in t.columns and bool(t.duration_minutes.notnull().sum().execute())


def logging_completeness(
    activities,
    opps,
    start,
    end,
    threshold: float = 0.25,
    min_won: int = 2,
    deals: DealActivity | None = None,
    yields: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """Reps whose logged activity is implausibly low for their bookings, over ``[start, end]``.

    Per rep with deals won: activities_per_won_deal = activities logged ÷ deals won; median = the median
    of that ratio over reps with ≥ ``min_won`` wins; ratio_to_median = rep ÷ median;
    won_without_activity = won deals with no tied activity on or before close.
    flag when: no activity logged at all, or (≥ ``min_won`` wins and ratio_to_median < ``threshold``), or
    more than half the rep's won deals have no tied activity. ``deals``: ``deal_activity`` for the same
    window when already computed, ``yields`` its ``activity_yield`` (not asked again). ``opps``: an
    engine table or a frame.
    """
    y = activity_yield(activities, opps, start, end) if yields is None else yields
    y = y[(y["rep"] != "All reps") & (y["deals_won"] > 0)].set_index("rep")
    if deals is None:
        deals = deal_activity(activities, opps, start, end)
    per = deals.owners
    out = y[["deals_won", "activities", "activities_per_won_deal"]].copy()
    out["bookings"] = per["bookings"].reindex(out.index).fillna(0.0)
    without = per["won"] - per["won_active"]
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
