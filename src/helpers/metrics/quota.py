"""Quota setting: the top-down plan, rep quotas, capacity check, realism simulation, reverse funnel.

Pure functions: frames, dates and numbers in; numbers, arrays or DataFrames out. No I/O except
``write_quotas``. Notation used in the docstrings (plan year months ``m = 1..12``, reps ``i``):

- ``B``   bookings = amount of won deals, dated by ``close_date``.
- ``T``   company target; ``o`` over-assignment factor; ``Q = T × (1 + o)`` quota to assign.
- ``s_m`` seasonal share of fiscal month ``m`` (``Σ s_m = 1``).
- ``a_im`` 1 when rep ``i`` is employed for the whole of month ``m``, else 0.
- ``r_im`` ramp factor of rep ``i`` in month ``m`` from the ramp schedule and tenure (hire month = month 1).
- ``w_i`` territory weight (``reps.territory_weight``, default 1).
- ``E_i = Σ_m s_m · r_im · a_im`` effective capacity in full-productivity years.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass
from pathlib import Path

import ibis
import numpy as np
import pandas as pd

from helpers.data import escape
from helpers.data.calendar import FiscalCalendar, trailing_window
from helpers.metrics import activity as A
from helpers.metrics.expr import among, as_table, day, flag

DEFAULT_RAMP = (0.25, 0.50, 0.75)
NON_REVENUE_ROLES = {"sdr", "bdr", "sdr/bdr"}
NOT_HELD = ("no_show", "scheduled")
# Benchmarks used when the data cannot measure a funnel rate (activity tracker uses the same ones).
BENCHMARKS = {
    "win_rate": 0.20,  # closed-won ÷ closed opportunities
    "meeting_to_opportunity": 0.50,  # opportunities created ÷ meetings/demos held
    "call_to_meeting": 0.05,  # meetings/demos held ÷ calls (20 calls per meeting)
}


# --------------------------------------------------------------------------------------------------
# dates
# --------------------------------------------------------------------------------------------------
def month_start(d) -> pd.Timestamp:
    return pd.Timestamp(d).to_period("M").to_timestamp()


def last_complete_month(as_of) -> pd.Timestamp:
    """Start of the last calendar month that ends on or before ``as_of``."""
    a = pd.Timestamp(as_of).normalize()
    m = month_start(a)
    return m if a == m + pd.offsets.MonthEnd(0) else m - pd.DateOffset(months=1)


def default_plan_year(cal: FiscalCalendar, as_of) -> int:
    """The fiscal year after the one ``as_of`` falls in."""
    return cal.fiscal_year(as_of) + 1


def plan_months(cal: FiscalCalendar, fiscal_year: int) -> pd.DatetimeIndex:
    return pd.DatetimeIndex(cal.months_of_year(fiscal_year))


# --------------------------------------------------------------------------------------------------
# bookings and the company target
# --------------------------------------------------------------------------------------------------
def _won(opps):
    """The won deals (``is_won``, with a close date and an amount) and their amounts as float64."""
    t = A.opportunities(opps)
    w = t.filter(flag(t.is_won), t.close_date.notnull(), t.amount.notnull())
    return w, w.amount.cast("float64")


def won_by_month(opps, basis: tuple | None = None, months: tuple | None = None) -> pd.DataFrame:
    """Won deals (``is_won``, with a close date and an amount) per owner and close month, summed on the
    engine (``opps``: an engine table or a frame): columns owner (missing for deals without one), month
    (month start), bookings (Σ amount) and, with ``basis=(start, end)``, basis (Σ amount of those closed
    in ``[start, end]``) and basis_deals (their number). With ``months=(first, last)`` (month starts) only
    the months from ``first`` to ``last`` come back (the rest are not sent). Ordered by owner (missing
    last), then month: the order pandas groups them in, so sums over these rows add up as they did over
    the deals."""
    w, amt = _won(opps)
    if months is not None:
        first, last = pd.Timestamp(months[0]), pd.Timestamp(months[1]) + pd.offsets.MonthEnd(0)
        w = w.filter(w.close_date >= day(first), w.close_date <= day(last))
        amt = w.amount.cast("float64")
    agg = {"bookings": amt.sum()}
    if basis is not None:
        inside = (w.close_date >= day(basis[0])) & (w.close_date <= day(basis[1]))
        agg.update(basis=ibis.ifelse(inside, amt, 0.0).sum(), basis_deals=ibis.ifelse(inside, 1, 0).sum())
    got = (
        w.group_by(owner=w.owner.cast("string"), month=w.close_date.truncate("M")).aggregate(**agg).execute()
    )
    got["owner"] = got["owner"].astype(object).where(got["owner"].notna(), None)
    got["month"] = pd.to_datetime(got["month"]).astype("datetime64[ns]")
    for c in ("bookings", "basis"):
        if c in got.columns:
            got[c] = got[c].astype("float64")
    if "basis_deals" in got.columns:
        got["basis_deals"] = got["basis_deals"].astype("int64")
    return got.sort_values(["owner", "month"], na_position="last", ignore_index=True)


def company_months(opps) -> pd.DataFrame:
    """Company bookings per close month, summed on the engine: columns month (month start, every month
    with a won deal, deals without an owner too) and bookings (Σ amount of the won deals with an owner;
    0.0 in a month whose only won deals have none), ordered by month. The same totals as summing
    ``monthly_bookings`` per month, bit for bit while the sums are exact (whole amounts below 2**53);
    with cents the last bits can differ, as the owner × month sums on the engine already can."""
    w, amt = _won(opps)
    got = (
        w.group_by(month=w.close_date.truncate("M"))
        .aggregate(bookings=ibis.ifelse(w.owner.notnull(), amt, 0.0).sum())
        .execute()
    )
    got["month"] = pd.to_datetime(got["month"]).astype("datetime64[ns]")
    got["bookings"] = got["bookings"].astype("float64")
    return got.sort_values("month", ignore_index=True)


def monthly_bookings(opps, won: pd.DataFrame | None = None) -> pd.DataFrame:
    """``B`` per owner and month: columns owner, month (month start), bookings (Σ amount of won deals),
    from ``won_by_month`` (``won``: its result when already fetched)."""
    w = won_by_month(opps) if won is None else won
    return w.loc[w["owner"].notna(), ["owner", "month", "bookings"]].reset_index(drop=True)


@dataclass(frozen=True)
class TargetBasis:
    """The bookings the target grows from: the last fiscal year, or the trailing 12 months while it runs."""

    label: str
    start: pd.Timestamp
    end: pd.Timestamp
    bookings: float

    @property
    def window(self) -> str:
        """The basis period as a figure's window: "FY2026", or "12 months to 2026-10-31 (FY2027 not complete)"."""
        return self.label.removeprefix("Bookings, ").removesuffix(" bookings")


def basis_window(cal: FiscalCalendar, fiscal_year: int, as_of) -> tuple[str, pd.Timestamp, pd.Timestamp]:
    """(label, start, end) of the bookings the target grows from: fiscal year ``fiscal_year − 1`` when it
    has ended by ``as_of``; otherwise the trailing twelve months ending ``as_of``."""
    a = pd.Timestamp(as_of).normalize()
    prev_end = cal.year_end(fiscal_year - 1)
    if prev_end <= a:
        return f"FY{fiscal_year - 1} bookings", cal.year_start(fiscal_year - 1), prev_end
    start = a - pd.DateOffset(years=1) + pd.Timedelta(days=1)
    return f"Bookings, 12 months to {a:%Y-%m-%d} (FY{fiscal_year - 1} not complete)", start, a


def target_basis(
    opps, cal: FiscalCalendar, fiscal_year: int, as_of, won: pd.DataFrame | None = None
) -> TargetBasis:
    """``B`` over ``basis_window``: of fiscal year ``fiscal_year − 1`` when it has ended by ``as_of``;
    otherwise of the trailing twelve months ending ``as_of`` (the prior year is not complete yet). Summed
    on the engine per owner and month (``won``: ``won_by_month``'s result for that window, when fetched)."""
    label, start, end = basis_window(cal, fiscal_year, as_of)
    w = won_by_month(opps, (start, end)) if won is None else won
    return TargetBasis(label, start, end, float(w["basis"].sum()))


def company_target(basis_bookings: float, growth_rate: float, configured: float | None = None) -> float:
    """``T = B_basis × (1 + growth)``, or the target configured in ``dataset.yml`` when given."""
    if configured is not None and not pd.isna(configured):
        return float(configured)
    return float(basis_bookings) * (1.0 + float(growth_rate))


# --------------------------------------------------------------------------------------------------
# seasonality and the monthly plan
# --------------------------------------------------------------------------------------------------
def seasonality(
    opps, cal: FiscalCalendar, as_of, lookback_months: int = 36, company: pd.DataFrame | None = None
) -> pd.DataFrame:
    """Seasonal share of each fiscal month from history.

    Over the last ``lookback_months`` complete months up to ``as_of``: ``avg_m`` = mean company bookings of
    the calendar months falling in fiscal month ``m``; ``s_m = avg_m / Σ avg``. Flat (1/12 each) when some
    fiscal month has no history or there are no bookings. Columns: fiscal_month, quarter, share, years.
    From ``company_months`` (``company``: its result when already fetched).
    """
    last = last_complete_month(as_of)
    months = pd.date_range(last - pd.DateOffset(months=lookback_months - 1), last, freq="MS")
    c = company_months(opps) if company is None else company
    b = c.set_index("month")["bookings"].reindex(months, fill_value=0.0)
    first_month = c["month"].min()  # the first won deal's month (deals without an owner too)
    if pd.notna(first_month):
        b = b[b.index >= first_month]
    fm = ((b.index.month - cal.start_month) % 12) + 1
    grouped = b.groupby(fm)
    avg = grouped.mean().reindex(range(1, 13))
    years = grouped.size().reindex(range(1, 13), fill_value=0)
    if avg.isna().any() or avg.sum() <= 0:
        share = pd.Series(1 / 12, index=range(1, 13))
    else:
        share = avg / avg.sum()
    return pd.DataFrame(
        {
            "fiscal_month": range(1, 13),
            "quarter": [(m - 1) // 3 + 1 for m in range(1, 13)],
            "share": share.to_numpy(float),
            "years": years.to_numpy(int),
        }
    )


def flat_shares() -> np.ndarray:
    return np.full(12, 1 / 12)


def monthly_plan(target: float, shares, cal: FiscalCalendar, fiscal_year: int) -> pd.DataFrame:
    """The target by month: ``T_m = T × s_m``. Columns month, fiscal_month, quarter, share, target."""
    s = np.asarray(shares, float)
    months = plan_months(cal, fiscal_year)
    return pd.DataFrame(
        {
            "month": months,
            "fiscal_month": range(1, 13),
            "quarter": [f"Q{(m - 1) // 3 + 1}" for m in range(1, 13)],
            "share": s,
            "target": target * s,
        }
    )


def quarterly_plan(monthly: pd.DataFrame) -> pd.DataFrame:
    """``T_q = Σ_{m in q} T_m``."""
    return monthly.groupby("quarter", as_index=False)[["share", "target"]].sum()


# --------------------------------------------------------------------------------------------------
# roster, ramp, capacity
# --------------------------------------------------------------------------------------------------
def parse_ramp(text: str | tuple | list) -> tuple[float, ...]:
    """``"25/50/75"`` → ``(0.25, 0.5, 0.75)``: the share of full quota in tenure months 1, 2, 3; month 4+
    is 100%. Values above 1 are read as percentages."""
    if isinstance(text, (tuple, list)):
        vals = [float(v) for v in text]
    else:
        vals = [float(v) for v in str(text).replace(",", "/").split("/") if v.strip()]
    if any(v > 1 for v in vals):
        vals = [v / 100 for v in vals]
    return tuple(vals)


def linear_ramp(months: int) -> tuple[float, ...]:
    """A linear ramp of ``n`` months: ``k / (n + 1)`` for ``k = 1..n`` (n = 3 gives 25/50/75%)."""
    n = int(months)
    return tuple(k / (n + 1) for k in range(1, n + 1))


def is_revenue_role(role) -> bool:
    return not (isinstance(role, str) and role.strip().lower() in NON_REVENUE_ROLES)


# the columns of the reps a plan spreads quota over (current reps and planned hires alike)
PLAN_REP_COLUMNS = [
    "rep_id",
    "name",
    "team",
    "role",
    "revenue",
    "hire_date",
    "end_date",
    "ote",
    "ramp_months",
    "weight",
    "planned",
]


def roster(reps: pd.DataFrame | None, opps, start, end, as_of) -> pd.DataFrame:
    """The people employed at some point in ``[start, end]`` (end_date empty or on/after ``start``,
    hire_date empty or on/before ``end``). Without a ``reps`` table: every owner with a deal created or
    closed in the 12 months to ``as_of``, in one team. Columns rep_id, name, team, role, revenue,
    hire_date, end_date, ote, ramp_months, weight, planned (hired after ``as_of``). ``opps``: an engine
    table or a frame, asked only without reps (``recent_owners``)."""
    start, end = pd.Timestamp(start), pd.Timestamp(end)
    a = pd.Timestamp(as_of).normalize()
    if reps is None or len(reps) == 0:
        r = pd.DataFrame({"rep_id": pd.array(recent_owners(opps, a), dtype="str")})
    else:
        r = reps.copy()
    for col, default in (
        ("name", None),
        ("team", "All"),
        ("role", None),
        ("ote", np.nan),
        ("ramp_months", np.nan),
        ("territory_weight", 1.0),
    ):
        if col not in r.columns:
            r[col] = default
    for col in ("hire_date", "end_date"):
        if col not in r.columns:
            r[col] = pd.NaT
        r[col] = pd.to_datetime(r[col])
    r["name"] = r["name"].fillna(r["rep_id"]) if r["name"].notna().any() else r["rep_id"]
    r["team"] = r["team"].fillna("Unassigned").astype("str")
    r["weight"] = pd.to_numeric(r["territory_weight"]).fillna(1.0).astype(float)
    r["ote"] = pd.to_numeric(r["ote"]).astype(float)
    r["ramp_months"] = pd.to_numeric(r["ramp_months"]).astype(float)
    keep = (r["end_date"].isna() | (r["end_date"] >= start)) & (
        r["hire_date"].isna() | (r["hire_date"] <= end)
    )
    r = r.loc[keep].copy()
    r["revenue"] = [is_revenue_role(x) for x in r["role"]]
    r["planned"] = r["hire_date"].notna() & (r["hire_date"] > a)
    return r[PLAN_REP_COLUMNS].reset_index(drop=True)


def recent_owners(opps, as_of) -> list[str]:
    """The owners (sorted) of the deals created or closed in the year to ``as_of`` (after the day one year
    before), asked of the engine."""
    t = A.opportunities(opps)
    cut = day(pd.Timestamp(as_of).normalize() - pd.DateOffset(years=1))
    recent = t.filter((t.created_date > cut) | (t.close_date > cut), t.owner.notnull())
    got = recent.select(owner=recent.owner.cast("string")).distinct().execute()
    return sorted(got["owner"].astype(str))


def planned_hires(
    cal: FiscalCalendar,
    fiscal_year: int,
    hires_per_quarter,
    month_in_quarter: int = 1,
    team: str = "New hires",
    ote: float = np.nan,
) -> pd.DataFrame:
    """Placeholder reps for open headcount: ``hires_per_quarter[q-1]`` hires starting on the first day of
    month ``month_in_quarter`` (1–3) of fiscal quarter ``q``; rep_id ``TBH-FY<year>-Q<q>-<n>``."""
    rows = []
    for q, n in enumerate(hires_per_quarter, start=1):
        start = cal.year_start(fiscal_year) + pd.DateOffset(months=3 * (q - 1) + int(month_in_quarter) - 1)
        for k in range(1, int(n) + 1):
            rid = f"TBH-FY{fiscal_year}-Q{q}-{k}"
            rows.append(
                {
                    "rep_id": rid,
                    "name": f"Hire Q{q} #{k}",
                    "team": team,
                    "role": "AE",
                    "revenue": True,
                    "hire_date": start,
                    "end_date": pd.NaT,
                    "ote": ote,
                    "ramp_months": np.nan,
                    "weight": 1.0,
                    "planned": True,
                }
            )
    out = pd.DataFrame(rows, columns=PLAN_REP_COLUMNS)
    out["hire_date"] = pd.to_datetime(out["hire_date"])
    out["end_date"] = pd.to_datetime(out["end_date"])
    return out


def month_offsets(dates: pd.Series, origin: pd.Timestamp) -> np.ndarray:
    """Whole months from ``origin``'s month to each date's month (float; NaN for missing dates)."""
    d = pd.to_datetime(dates)
    out = (d.dt.year - origin.year) * 12 + (d.dt.month - origin.month)
    return out.to_numpy(dtype=float, na_value=np.nan)


def active_matrix(hire_offset: np.ndarray, end_dates: pd.Series, months: pd.DatetimeIndex) -> np.ndarray:
    """``a_im``: 1 when month ``m`` starts on/after the hire month and ends on/before ``end_date``."""
    h = np.nan_to_num(np.asarray(hire_offset, float), nan=-1e9)
    idx = np.arange(len(months))
    started = idx[None, :] >= h[:, None]
    ends = (months + pd.offsets.MonthEnd(0)).to_numpy()
    e = pd.to_datetime(end_dates).to_numpy()
    stayed = np.isnat(e)[:, None] | (ends[None, :] <= e[:, None])
    return (started & stayed).astype(float)


def ramp_matrix(hire_offset: np.ndarray, n_months: int, schedules: list[tuple[float, ...]]) -> np.ndarray:
    """``r_im``: tenure ``k = m − hire month + 1``; factor ``schedule[k−1]`` for ``k ≤ len(schedule)``,
    1 after the ramp, 0 before the hire month. One schedule per rep."""
    h = np.nan_to_num(np.asarray(hire_offset, float), nan=-1e9)
    k = np.arange(n_months)[None, :] - h[:, None] + 1  # tenure month, 1-based
    width = max([len(s) for s in schedules] + [1])
    table = np.ones((len(schedules), width + 1))
    for i, s in enumerate(schedules):
        table[i, 1 : len(s) + 1] = s
    kk = np.clip(k, 0, width).astype(int)
    out = np.take_along_axis(table, kk, axis=1) if len(schedules) else np.zeros((0, n_months))
    out[k > width] = 1.0
    out[k <= 0] = 0.0
    return out


def rep_schedules(ramp_months: pd.Series, default: tuple[float, ...], use_rep_ramp: bool = True) -> list:
    """Each rep's ramp schedule: a linear ramp of the rep's own ``ramp_months`` when given (and
    ``use_rep_ramp``), else ``default``."""
    out = []
    for n in ramp_months:
        out.append(linear_ramp(int(n)) if use_rep_ramp and pd.notna(n) else tuple(default))
    return out


def effective_capacity(active: np.ndarray, ramp: np.ndarray, shares) -> np.ndarray:
    """``E_i = Σ_m s_m · r_im · a_im`` (1 = a full year at full productivity)."""
    return (active * ramp) @ np.asarray(shares, float)


def team_shares(
    teams: pd.Series, capacity_weight: np.ndarray, history: pd.Series | None = None, method: str = "capacity"
) -> pd.Series:
    """Share of the quota each team carries.

    ``capacity``: ``Σ_{i∈t} w_i E_i / Σ_i w_i E_i``. ``history``: the team's share of basis bookings
    (``history`` indexed by team), scaled to leave teams without history their capacity share."""
    cap = pd.Series(capacity_weight, index=teams.to_numpy()).groupby(level=0).sum()
    cap_share = cap / cap.sum() if cap.sum() > 0 else cap * 0
    if method == "capacity" or history is None or history.sum() <= 0:
        return cap_share
    hist = history.reindex(cap.index).fillna(0.0)
    new_teams = hist <= 0
    rest = 1.0 - float(cap_share[new_teams].sum())
    return (hist / hist.sum() * rest).where(~new_teams, cap_share)


def distribute_quota(
    quota_to_assign: float, teams: pd.Series, weights: np.ndarray, capacity: np.ndarray, shares: pd.Series
) -> np.ndarray:
    """Annual rep quota ``quota_i = Q × share_t × w_i E_i / Σ_{j∈t} w_j E_j`` (t = team of rep i)."""
    we = np.asarray(weights, float) * np.asarray(capacity, float)
    t = teams.to_numpy()
    team_total = pd.Series(we, index=t).groupby(level=0).sum()
    denom = team_total.reindex(t).to_numpy(float)
    share = shares.reindex(t).fillna(0.0).to_numpy(float)
    with np.errstate(invalid="ignore", divide="ignore"):
        out = np.where(denom > 0, quota_to_assign * share * we / denom, 0.0)
    return out


def monthly_quotas(
    annual: np.ndarray, capacity: np.ndarray, active: np.ndarray, ramp: np.ndarray, shares
) -> np.ndarray:
    """``quota_im = quota_i × s_m r_im a_im / E_i`` (so each rep's months sum to the annual quota)."""
    w = active * ramp * np.asarray(shares, float)[None, :]
    with np.errstate(invalid="ignore", divide="ignore"):
        f = np.where(capacity > 0, np.asarray(annual, float) / capacity, 0.0)
    return w * f[:, None]


def rep_status(roster_df: pd.DataFrame, active: np.ndarray, ramp: np.ndarray) -> list[str]:
    """``departing`` (leaves in the plan year) › ``planned hire`` (starts after as_of) › ``ramping``
    (some month below full ramp or not employed) › ``tenured``."""
    part_year = active.sum(axis=1) < active.shape[1]
    departing = part_year & roster_df["end_date"].notna().to_numpy()
    planned = roster_df["planned"].to_numpy(dtype=bool)
    ramping = ((ramp < 1) & (active > 0)).any(axis=1) | part_year
    return np.select(
        [departing, planned, ramping], ["departing", "planned hire", "ramping"], "tenured"
    ).tolist()


# --------------------------------------------------------------------------------------------------
# attrition, reconciliation, capacity check
# --------------------------------------------------------------------------------------------------
def attrition_rate(reps: pd.DataFrame | None, as_of, months: int = 12) -> float:
    """Annualised attrition: departures with ``end_date`` in the ``months`` to ``as_of`` ÷ average of the
    headcount at the window start and at ``as_of``, × 12/months. NaN without hire/end dates."""
    if reps is None or "end_date" not in reps.columns:
        return float("nan")
    a = pd.Timestamp(as_of).normalize()
    start = a - pd.DateOffset(months=months)
    hire = (
        pd.to_datetime(reps["hire_date"])
        if "hire_date" in reps.columns
        else pd.Series(pd.NaT, index=reps.index)
    )
    end = pd.to_datetime(reps["end_date"])

    def headcount(day):
        return int(((hire.isna() | (hire <= day)) & (end.isna() | (end > day))).sum())

    left = int(((end > start) & (end <= a)).sum())
    avg = (headcount(start) + headcount(a)) / 2
    return left / avg * 12 / months if avg > 0 else float("nan")


def attrition_loss(monthly: np.ndarray, rate: float) -> float:
    """Expected quota lost to unplanned departures: ``Σ_i Σ_m quota_im × rate × (m−1)/12`` — a rep leaves
    before plan month ``m`` with probability ``rate × (m−1)/12`` (uniform over the year)."""
    if rate is None or pd.isna(rate) or monthly.size == 0:
        return 0.0
    p = float(rate) * np.arange(monthly.shape[1]) / 12
    return float((monthly * p[None, :]).sum())


def reconciliation(
    basis: TargetBasis,
    growth_rate: float,
    target: float,
    target_source: str,
    over_assignment: float,
    quota_by_status: dict[str, float],
    attrition: float,
    attrition_rate_: float,
) -> pd.DataFrame:
    """From the company target to the sum of rep quotas, line by line (amount column); the last lines
    show what attrition is expected to take and the cover that remains over the target."""
    q = target * (1 + over_assignment)
    rows = [(basis.label, basis.bookings, "history")]
    if target_source == "dataset.yml":
        rows.append(
            (
                "Company target (dataset.yml)",
                target,
                f"growth implied {target / basis.bookings - 1:+.1%}" if basis.bookings else "configured",
            )
        )
    else:
        rows += [
            (f"+ growth {growth_rate:.0%}", basis.bookings * growth_rate, ""),
            ("= Company target", target, "basis × (1 + growth)"),
        ]
    rows += [
        (f"+ over-assignment {over_assignment:.0%}", target * over_assignment, ""),
        ("= Quota to assign", q, "target × (1 + over-assignment)"),
    ]
    for status in ("tenured", "ramping", "departing", "planned hire"):
        if status in quota_by_status:
            rows.append((f"  {status} reps", quota_by_status[status], "part of the sum of rep quotas"))
    total = float(sum(quota_by_status.values()))
    rows.append(("= Sum of rep quotas", total, f"{total / target - 1:+.1%} over target" if target else ""))
    rate_txt = "n/a" if pd.isna(attrition_rate_) else f"{attrition_rate_:.0%}"
    rows.append((f"− expected loss to attrition ({rate_txt}/yr)", -attrition, "unplanned departures"))
    rows.append(
        (
            "= Expected quota carried",
            total - attrition,
            f"{(total - attrition) / target - 1:+.1%} cover over target" if target else "",
        )
    )
    return pd.DataFrame(rows, columns=["step", "amount", "note"])


def ote_multiples(annual_full_quota, ote, low: float = 3.0, high: float = 5.0) -> pd.DataFrame:
    """Capacity check: ``multiple = full-year quota at full ramp ÷ OTE``; flag ``below 3×`` /
    ``above 5×`` (bounds configurable), empty when OTE is unknown."""
    q = np.asarray(annual_full_quota, float)
    o = np.asarray(ote, float)
    with np.errstate(invalid="ignore", divide="ignore"):
        mult = np.where(o > 0, q / o, np.nan)
    flag = np.where(
        np.isnan(mult),
        "",
        np.where(mult < low, f"below {low:g}×", np.where(mult > high, f"above {high:g}×", "ok")),
    )
    return pd.DataFrame({"ote_multiple": mult, "ote_flag": flag})


# --------------------------------------------------------------------------------------------------
# history per rep (for the supported quota and the simulation)
# --------------------------------------------------------------------------------------------------
def history_matrix(events: pd.DataFrame, rep_ids, months: pd.DatetimeIndex) -> np.ndarray:
    """``events`` (columns rep_id, month, value) → matrix rep × month (0 where nothing happened)."""
    wide = (
        events.pivot_table(index="rep_id", columns="month", values="value", aggfunc="sum")
        .reindex(index=pd.Index(rep_ids), columns=months)
        .fillna(0.0)
    )
    return wide.to_numpy(float)


def ramped_months_mask(
    roster_df: pd.DataFrame, months: pd.DatetimeIndex, schedule=DEFAULT_RAMP
) -> np.ndarray:
    """Months of history in which a rep was employed all month and past ramp (``a = 1`` and ``r = 1``)."""
    off = month_offsets(roster_df["hire_date"], months[0])
    act = active_matrix(off, roster_df["end_date"], months)
    rmp = ramp_matrix(off, len(months), rep_schedules(roster_df["ramp_months"], schedule))
    return (act > 0) & (rmp >= 1)


def rep_pools(
    values: np.ndarray, mask: np.ndarray, teams: pd.Series, min_months: int = 6
) -> list[np.ndarray]:
    """Each rep's pool of monthly values to resample: their own fully ramped months when they have at least
    ``min_months``; otherwise their team's (the peer group's) pooled months, else everyone's."""
    own = [values[i][mask[i]] for i in range(len(values))]
    ok = np.array([len(p) >= min_months for p in own], dtype=bool)
    allp = np.concatenate([p for p, k in zip(own, ok, strict=True) if k]) if ok.any() else np.zeros(1)
    t = teams.to_numpy()
    no_team = pd.isna(t)  # a missing team matches no one: everyone's pool
    members: dict = {}  # team -> indices of its reps with enough own months, in rep order
    for i in np.flatnonzero(ok & ~no_team):
        members.setdefault(t[i], []).append(i)
    team_pool = {}
    for i in np.flatnonzero(~ok & ~no_team):  # only the teams a short-history rep needs
        if t[i] not in team_pool:
            sel = members.get(t[i])
            team_pool[t[i]] = np.concatenate([own[j] for j in sel]) if sel else allp
    return [own[i] if ok[i] else allp if no_team[i] else team_pool[t[i]] for i in range(len(own))]


def peer_pool(pools: list[np.ndarray], own: np.ndarray | None = None) -> np.ndarray:
    """All reps' pools concatenated (the peer group of a planned hire)."""
    return np.concatenate(pools) if pools else np.zeros(1)


def productivity(pools: list[np.ndarray]) -> np.ndarray:
    """Trailing productivity per full month: mean of the rep's pool (own ramped months or peers')."""
    return np.array([float(p.mean()) if len(p) else 0.0 for p in pools])


def supported_quota(productivity_: np.ndarray, capacity: np.ndarray) -> np.ndarray:
    """The quota history supports: ``productivity × 12 × E_i`` (ramp- and tenure-adjusted)."""
    return np.asarray(productivity_, float) * 12 * np.asarray(capacity, float)


# --------------------------------------------------------------------------------------------------
# Monte Carlo realism simulation
# --------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class PoolDraws:
    """Resampled monthly values, (reps, draws, months), held as each draw's position in the rep's pool.

    ``values`` holds the pools once each (float32, concatenated; reps sharing a team's pool share its
    values), ``start[i]`` where rep ``i``'s pool begins in it, ``lens[i]`` its length (1 for an empty pool,
    whose one value is 0). Value ``X[i, d, m] = values[start[i] + position]``: the same float32 numbers a
    dense (reps, draws, months) array would hold.

    The positions are either held or replayed. Held (when they fit ``HELD_DRAWS_BYTES``), they are stored in
    two groups, by the width they need: reps whose pool has at most 256 values take one byte a position
    (``narrow``), the others (large team pools) two or four (``wide``); ``narrow_rows`` / ``wide_rows`` are
    each group's reps, in rep order. Replayed (``narrow`` and ``wide`` are None), they are drawn again from
    ``seed`` by blocks of reps each time they are read: the same random stream, so the same positions,
    without holding them (76,923 reps × 2,000 draws × 12 months: 1.8 GB as one byte each).
    ``blocks`` gives them by runs of reps either way; ``block`` gathers a run's values; ``dense`` makes the
    whole array (tests)."""

    values: np.ndarray  # float32, every distinct pool once
    start: np.ndarray  # int64 per rep
    lens: np.ndarray  # int64 per rep: its pool's length (at least 1)
    n_draws: int
    n_months: int
    seed: int
    narrow_rows: np.ndarray  # int64 rep numbers whose positions are uint8
    narrow: np.ndarray | None  # (len(narrow_rows), draws, months) uint8; None: replayed
    wide_rows: np.ndarray  # int64 rep numbers whose positions are uint16 / uint32
    wide: np.ndarray | None  # (len(wide_rows), draws, months) uint16 or uint32; None: replayed

    @property
    def shape(self) -> tuple[int, int, int]:
        return (len(self.start), self.n_draws, self.n_months)

    def __len__(self) -> int:
        return len(self.start)

    @property
    def held(self) -> bool:
        return self.narrow is not None

    @property
    def nbytes(self) -> int:
        arrays = (
            self.values,
            self.start,
            self.lens,
            self.narrow_rows,
            self.narrow,
            self.wide_rows,
            self.wide,
        )
        return sum(a.nbytes for a in arrays if a is not None)

    def head(self, n: int) -> PoolDraws:
        """The first ``n`` reps' draws (the same numbers: replayed, they are the stream's first values)."""
        kn, kw = self.narrow_rows < n, self.wide_rows < n
        return PoolDraws(
            self.values,
            self.start[:n],
            self.lens[:n],
            self.n_draws,
            self.n_months,
            self.seed,
            self.narrow_rows[kn],
            self.narrow[kn] if self.held else None,
            self.wide_rows[kw],
            self.wide[kw] if self.held else None,
        )

    def blocks(self, step: int):
        """(rep numbers, positions) by runs of at most ``step`` reps: held, each group's runs in rep order;
        replayed, every rep in order, drawn again from the seed."""
        if self.held:
            for rows, pos in ((self.narrow_rows, self.narrow), (self.wide_rows, self.wide)):
                for lo in range(0, len(rows), step):
                    yield rows[lo : lo + step], pos[lo : lo + step]
            return
        for lo, idx in _positions(self.lens, self.n_draws, self.n_months, self.seed):
            for k in range(0, len(idx), step):
                yield np.arange(lo + k, lo + min(k + step, len(idx)), dtype=np.int64), idx[k : k + step]

    def block(self, rows: np.ndarray, positions: np.ndarray, out=None, index=None) -> np.ndarray:
        """The float32 values of ``rows`` (rep numbers) from their ``positions`` (a run of ``blocks``);
        ``out`` (float32) and ``index`` (intp) of the same shape, when given, are reused."""
        if index is None:
            index = np.empty(positions.shape, np.intp)
        np.add(positions, self.start[rows][:, None, None], out=index)
        return self.values.take(
            index, out=out, mode="wrap"
        )  # in range by construction; "wrap" skips the check

    def dense(self) -> np.ndarray:
        out = np.empty(self.shape, np.float32)
        for rows, pos in self.blocks(max(1, len(self))):
            out[rows] = self.block(rows, pos)
        return out


def _positions(lens: np.ndarray, n_draws: int, n_months: int, seed: int):
    """(first rep, positions (reps, draws, months)) by blocks of reps: position = min(⌊u × len⌋, len − 1)
    for ``u`` the seeded generator's float32 uniforms, drawn in rep order (the stream does not depend on
    the block size). Each block is written into the same buffer: read it before asking for the next."""
    rng = np.random.default_rng(seed)
    n = len(lens)
    itype = np.int32 if (lens.max() if n else 0) < 2**31 else np.int64
    # by blocks of reps: the same random stream as one (n, draws, months) call, without its float64
    # and index temporaries (7,692 reps × 2,000 draws: 14 s and ~3 GB of temporaries → a few seconds)
    step = max(1, DRAW_BLOCK_VALUES // max(1, n_draws * n_months))
    shape = (min(step, n), n_draws, n_months)  # one set of buffers for every block (each block is
    u, x, idx = np.empty(shape, np.float32), np.empty(shape), np.empty(shape, itype)  # used before the next)
    for lo in range(0, n, step):
        hi = min(n, lo + step)
        k = hi - lo
        rng.random(dtype=np.float32, out=u[:k])
        # (u × len in float64, as numpy promotes float32 × int64; truncated to an integer as astype does)
        np.multiply(u[:k], lens[lo:hi].astype(np.float64)[:, None, None], out=x[:k])
        np.copyto(idx[:k], x[:k], casting="unsafe")
        np.minimum(idx[:k], (lens[lo:hi] - 1).astype(itype)[:, None, None], out=idx[:k])
        yield lo, idx[:k]


def draw_months(pools: list[np.ndarray], n_draws: int, n_months: int = 12, seed: int = 0) -> PoolDraws:
    """Resampled monthly values, (reps, draws, months): each month of each draw picks one value from the
    rep's pool, uniformly with replacement (seeded ``numpy.random.default_rng``). Held as positions in
    the pools (``PoolDraws``), or replayed from the seed when they would take more than
    ``HELD_DRAWS_BYTES``; the values are the pools' own, as float32."""
    n = len(pools)
    lens = np.array([max(len(p), 1) for p in pools], dtype=np.int64)
    distinct: dict[int, int] = {}  # id(pool) -> its start in values
    parts, start, at = [], np.zeros(n, np.int64), 0
    for i, p in enumerate(pools):
        s = distinct.get(id(p))
        if s is None:
            s = distinct[id(p)] = at
            parts.append(np.asarray(p, np.float32) if len(p) else np.zeros(1, np.float32))
            at += len(parts[-1])
        start[i] = s
    values = np.concatenate(parts) if parts else np.zeros(0, np.float32)
    is_narrow = lens <= 256
    narrow_rows, wide_rows = np.flatnonzero(is_narrow), np.flatnonzero(~is_narrow)
    wide_type = np.uint16 if (lens.max() if n else 0) <= 2**16 else np.uint32
    size = n_draws * n_months * (len(narrow_rows) + len(wide_rows) * np.dtype(wide_type).itemsize)
    if size > HELD_DRAWS_BYTES:
        return PoolDraws(values, start, lens, n_draws, n_months, seed, narrow_rows, None, wide_rows, None)
    narrow = np.empty((len(narrow_rows), n_draws, n_months), np.uint8)
    wide = np.empty((len(wide_rows), n_draws, n_months), wide_type)
    slot = np.empty(n, np.int64)  # a rep's row in its group
    slot[narrow_rows] = np.arange(len(narrow_rows))
    slot[wide_rows] = np.arange(len(wide_rows))
    for lo, idx in _positions(lens, n_draws, n_months, seed):
        hi = lo + len(idx)
        k = is_narrow[lo:hi]
        narrow[slot[lo:hi][k]] = idx[k]
        wide[slot[lo:hi][~k]] = idx[~k]
    return PoolDraws(values, start, lens, n_draws, n_months, seed, narrow_rows, narrow, wide_rows, wide)


DRAW_BLOCK_VALUES = 1 << 21  # values drawn per block in draw_months (8 MB of float32)
# positions held up to this size (7,689 reps × 2,000 draws: 177 MB, held, so the what-if panel gathers
# them without drawing again); above it they are replayed from the seed by each simulation
HELD_DRAWS_BYTES = 1 << 28
# values gathered per block in simulate_totals: 2 MB of float32 and 4 MB of positions, reused (at 7,689 reps
# × 2,000 draws, blocks of 2^19 took 450–540 ms where 2^21 fresh blocks took 640–910 ms, under load)
GATHER_BLOCK_VALUES = 1 << 19


def simulate_totals(
    draws: PoolDraws, active: np.ndarray, ramp: np.ndarray, season=None, out: np.ndarray | None = None
) -> np.ndarray:
    """Simulated plan-year totals per rep and draw: ``Σ_m 12 s_m r_im a_im X_imd`` (s_m = historical
    seasonality; flat gives ``Σ_m r a X``). Shape (reps, draws), float32, written into ``out`` when given
    (rows of a larger matrix). The values are gathered by blocks of reps; ``einsum`` sums each (rep, draw)
    over its months alone, so a block gives the same bits as the whole (reps, draws, months) array would."""
    n, n_draws, n_months = draws.shape
    s = np.full(n_months, 1 / 12) if season is None else np.asarray(season, float)
    mult = (active * ramp * 12 * s[None, :]).astype(np.float32)
    out = np.empty((n, n_draws), np.float32) if out is None else out
    step = max(1, GATHER_BLOCK_VALUES // max(1, n_draws * n_months))
    index = np.empty((min(step, n), n_draws, n_months), np.intp)  # one pair of buffers for every block
    x = np.empty(index.shape, np.float32)
    for r, pos in draws.blocks(step):
        xb = draws.block(r, pos, x[: len(r)], index[: len(r)])
        out[r] = np.einsum("idm,im->id", xb, mult[r], optimize=True)
    return out


@dataclass
class Attainment:
    """Outcome of the realism simulation."""

    p_attain: np.ndarray  # per rep: share of draws with total ≥ quota
    share_by_draw: np.ndarray  # per draw: share of reps at quota
    expected_share: float  # mean of p_attain over reps with a quota
    quota_level: float  # multiple k of the proposed quotas at which the target share attains
    target_share: float


def attainment(totals: np.ndarray, quotas: np.ndarray, target_share: float = 0.75) -> Attainment:
    """``P_i = mean_d 1[total_id ≥ quota_i]``; share at quota per draw = mean over reps with quota > 0;
    expected share = ``mean_i P_i``. Quota level ``k`` = the ``⌈(1 − target) · N⌉``-th smallest (0-based) of
    the ``N`` ratios ``total_id / quota_i`` (float32): scaling every quota by ``k`` leaves the target share of
    (rep, draw) pairs at quota (exactly, barring ties). Computed by blocks of reps: no reps × draws
    temporary (at 76,923 reps × 2,000 draws the ratios alone took 615 MB)."""
    q = np.asarray(quotas, float)
    has = q > 0
    n_draws = totals.shape[1] if totals.ndim == 2 else 0
    p = np.full(len(q), np.nan)
    if not has.any() or n_draws == 0:
        return Attainment(p, np.zeros(n_draws), float("nan"), float("nan"), target_share)
    rows = np.flatnonzero(has)
    step = max(1, GATHER_BLOCK_VALUES // n_draws)
    runs = [rows[lo : lo + step] for lo in range(0, len(rows), step)]
    at_quota = np.zeros(n_draws, np.int64)
    for r in runs:
        hit = totals[r] >= q[r, None]
        p[r] = np.count_nonzero(hit, axis=1) / n_draws  # = hit.mean(axis=1), without a float copy
        at_quota += np.count_nonzero(hit, axis=0)
    by_draw = at_quota / len(rows)

    def ratios():
        for r in runs:
            yield np.divide(totals[r], q[r, None].astype(totals.dtype))

    n = len(rows) * n_draws
    j = min(int(np.ceil((1 - target_share) * n - 1e-9)), n - 1)
    return Attainment(p, by_draw, float(p[has].mean()), float(kth_smallest(ratios, j)), target_share)


def _order_keys(a: np.ndarray) -> np.ndarray:
    """Float values → unsigned keys of the same width in the same order (negative values below positive
    ones; NaN last, as ``np.partition`` places them)."""
    u = np.dtype(f"u{a.dtype.itemsize}").type
    sign = u(1) << u(8 * a.dtype.itemsize - 1)
    bits = a.view(u)
    keys = np.where(bits >= sign, ~bits, bits | sign)
    keys[np.isnan(a)] = ~u(0)
    return keys


def _top16(a: np.ndarray) -> np.ndarray:
    return (_order_keys(a) >> (8 * a.dtype.itemsize - 16)).astype(np.intp)


def kth_smallest(blocks, j: int) -> np.float32:
    """The ``j``-th smallest (0-based) of the float values that ``blocks()`` yields (a fresh run of arrays
    each call), as ``np.partition(all values, j)[j]`` gives it, without holding them all: one pass counts
    the values by the top 16 bits of their order key, a second keeps only the values in the bin that holds
    the ``j``-th and partitions those."""
    counts = np.zeros(1 << 16, np.int64)
    for a in blocks():
        counts += np.bincount(_top16(a.reshape(-1)), minlength=1 << 16)
    upto = np.cumsum(counts)
    b = int(np.searchsorted(upto, j, side="right"))  # the first bin with more than j values up to it
    below = int(upto[b - 1]) if b else 0
    cand = [a[_top16(a) == b] for a in (x.reshape(-1) for x in blocks())]
    cand = np.concatenate(cand)
    k = j - below
    cand.partition(k)
    return cand[k]


def quota_at_share(totals: np.ndarray, share: float = 0.75) -> np.ndarray:
    """Per rep, the quota reached in ``share`` of the simulated years: the ``⌈(1 − share) · D⌉``-th smallest
    (0-based) of the rep's ``D`` simulated totals."""
    if totals.size == 0:
        return np.zeros(totals.shape[0])
    j = min(int(np.ceil((1 - share) * totals.shape[1] - 1e-9)), totals.shape[1] - 1)
    out = np.empty(totals.shape[0])
    step = max(1, GATHER_BLOCK_VALUES // totals.shape[1])  # by blocks of reps: no copy of the whole matrix
    for lo in range(0, totals.shape[0], step):
        out[lo : lo + step] = np.partition(totals[lo : lo + step], j, axis=1)[:, j]
    return out


def verdicts(p_attain: np.ndarray, out_of_reach: float = 0.2, too_easy: float = 0.95) -> list[str]:
    """``out of reach`` when P < 0.2, ``too easy`` when P > 0.95, else ``stretch`` / ``reachable``
    (P < 0.5 / ≥ 0.5); empty when the rep has no quota."""
    out = []
    for p in p_attain:
        if pd.isna(p):
            out.append("")
        elif p < out_of_reach:
            out.append("out of reach")
        elif p > too_easy:
            out.append("too easy")
        else:
            out.append("stretch" if p < 0.5 else "reachable")
    return out


def is_realistic(expected_share: float, band=(0.70, 0.80)) -> bool:
    """The plan is realistic when the expected share of reps at quota lies in ``band`` (70–80%)."""
    return bool(band[0] <= expected_share <= band[1])


# --------------------------------------------------------------------------------------------------
# reverse funnel
# --------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class FunnelRates:
    avg_deal_size: float
    win_rate: float
    meeting_to_opportunity: float
    call_to_meeting: float
    sources: tuple[tuple[str, str], ...] = ()

    def as_kwargs(self) -> dict:
        d = asdict(self)
        d.pop("sources")
        return d

    def table(self) -> pd.DataFrame:
        src = dict(self.sources)
        rows = [(k, v, src.get(k, "")) for k, v in self.as_kwargs().items()]
        return pd.DataFrame(rows, columns=["rate", "value", "source"])

    def display_table(self) -> pd.DataFrame:
        """One row, readable column names (money / percent)."""
        return pd.DataFrame(
            {
                "average deal size": [self.avg_deal_size],
                "win rate": [self.win_rate],
                "opportunities per meeting": [self.meeting_to_opportunity],
                "meetings per call": [self.call_to_meeting],
            }
        )


def seller_ids(reps: pd.DataFrame | None, opps) -> list[str]:
    """The AEs whose own activity the reverse funnel measures: reps whose role is not a non-revenue role
    (SDR/BDR) when ``reps`` has a role column; otherwise the owners of opportunities (SDRs own none),
    sorted, asked of the engine (``opps``: an engine table or a frame)."""
    if reps is not None and {"rep_id", "role"} <= set(reps.columns):
        r = reps.dropna(subset=["rep_id"])
        return [str(x) for x, role in zip(r["rep_id"], r["role"], strict=True) if is_revenue_role(role)]
    t = A.opportunities(opps)
    got = t.filter(t.owner.notnull()).select(owner=t.owner.cast("string")).distinct().execute()
    return sorted(got["owner"].astype(str))


def ae_activity(activities, start, end, sellers: list[str]) -> tuple[int, int]:
    """(meetings held, calls) logged by ``sellers`` with ``start <= day(occurred_at) <= end``, counted on
    the engine (``activities``: an Ibis table or a frame, ``helpers.metrics.expr.as_table``). Types and
    outcomes are read as the activity tracker reads them (``helpers.metrics.activity.normalized``: trimmed,
    lower-cased, aliases such as "Meetings" or "phone call" mapped): a meeting is a meeting or demo whose
    outcome is not no_show/scheduled (none counts as held); a call is type "call"."""
    t = A.table(activities)
    if not {"owner", "type", "occurred_at"} <= set(t.columns):
        return 0, 0
    t = A.normalized(t)
    lo, hi = pd.Timestamp(start).ceil("D"), pd.Timestamp(end).floor("D") + pd.Timedelta(days=1)
    t = t.filter(
        t.occurred_at >= ibis.literal(lo.to_pydatetime(), type="timestamp"),
        t.occurred_at < ibis.literal(hi.to_pydatetime(), type="timestamp"),
    )
    t = among(t, "owner", sellers)
    held = ~t.outcome.isin(list(NOT_HELD)).fill_null(False)
    got = t.aggregate(
        meetings=(t.type.isin(list(A.MEETING_TYPES)).fill_null(False) & held).ifelse(1, 0).sum(),
        calls=(t.type == "call").fill_null(False).ifelse(1, 0).sum(),
    ).execute()
    return int(got["meetings"].fillna(0).iloc[0]), int(got["calls"].fillna(0).iloc[0])


def funnel_rates(
    opps,
    activities: pd.DataFrame | None,
    as_of,
    months: int = 12,
    owners=None,
    reps: pd.DataFrame | None = None,
) -> FunnelRates:
    """AE conversion rates measured over ``trailing_window(as_of, months)`` (optionally for ``owners`` only):

    - avg_deal_size = mean amount of deals won in the window;
    - win_rate = deals won ÷ deals closed (won or lost) in the window;
    - meeting_to_opportunity = opportunities created ÷ meetings/demos held by AEs (outcome not
      no_show/scheduled);
    - call_to_meeting = meetings/demos held by AEs ÷ calls by AEs.
    AE funnel from AE activity: activity counts only for ``seller_ids(reps, opps)`` (SDR calls and meetings
    are left out; the opportunities SDR meetings source are in the denominator, as AE opportunities), so
    calls per opportunity = AE calls ÷ opportunities created.
    A rate that cannot be measured (no rows, zero denominator) takes the value in ``BENCHMARKS``.
    The deal counts and sums are made on the engine (``opps``: an engine table or a frame)."""
    start, a = trailing_window(as_of, months)
    t, created = A.deal_funnel(opps, start, a, owners)
    src = {}
    rates = {}
    rates["avg_deal_size"], src["avg_deal_size"] = (
        (t["avg_deal_size"], f"{t['won_priced']} deals won with an amount")
        if t["won_priced"]
        else (np.nan, "no won deals with an amount")
    )
    rates["win_rate"], src["win_rate"] = (
        (t["win_rate_count"], f"{t['won']} won / {t['closed']} closed")
        if t["closed"]
        else (BENCHMARKS["win_rate"], "benchmark")
    )
    meetings = calls = 0
    if activities is not None:
        sellers = list(owners) if owners is not None else seller_ids(reps, opps)
        meetings, calls = ae_activity(activities, start, a, sellers)
    rates["meeting_to_opportunity"], src["meeting_to_opportunity"] = (
        (created / meetings, f"{created} opportunities / {meetings} meetings")
        if meetings and created
        else (BENCHMARKS["meeting_to_opportunity"], "benchmark")
    )
    rates["call_to_meeting"], src["call_to_meeting"] = (
        (meetings / calls, f"{meetings} meetings / {calls} calls")
        if meetings and calls
        else (BENCHMARKS["call_to_meeting"], "benchmark")
    )
    return FunnelRates(**rates, sources=tuple(src.items()))


def reverse_funnel(
    quota,
    avg_deal_size: float,
    win_rate: float,
    meeting_to_opportunity: float = BENCHMARKS["meeting_to_opportunity"],
    call_to_meeting: float = BENCHMARKS["call_to_meeting"],
) -> pd.DataFrame:
    """From a bookings quota (per month, scalar or Series) back to the activity it takes:
    ``deals = quota ÷ avg_deal_size``; ``opportunities = deals ÷ win_rate``;
    ``meetings = opportunities ÷ meeting_to_opportunity``; ``calls = meetings ÷ call_to_meeting``.
    E.g. 20 calls per meeting (0.05), 1 opportunity per meeting and a 20% win rate → 100 calls per deal.
    Returns columns quota, deals, opportunities, meetings, calls (index of ``quota`` when a Series)."""
    q = quota if isinstance(quota, pd.Series) else pd.Series([quota], dtype=float)
    deals = q / avg_deal_size
    opps = deals / win_rate
    meetings = opps / meeting_to_opportunity
    calls = meetings / call_to_meeting
    return pd.DataFrame(
        {"quota": q, "deals": deals, "opportunities": opps, "meetings": meetings, "calls": calls}
    )


def benchmark_needs(
    activities,
    opportunities,
    monthly_quotas: pd.Series,
    as_of,
    months: int = 12,
    reps: pd.DataFrame | None = None,
) -> tuple[pd.DataFrame, pd.Series]:
    """Activity per month each rep's quota needs, with the rates used and where the chain came from.

    The AE funnel from AE activity: rates count the activity of AEs only (``seller_ids``:
    reps not in an SDR/BDR role, else owners of opportunities) against every opportunity AEs own — the
    opportunities SDR meetings source included; SDR calls and meetings are not counted against AEs.
    Uses ``funnel_rates`` + ``reverse_funnel`` (quota → deals → opportunities → meetings and demos → calls,
    benchmarks where a rate cannot be measured), splitting meetings and demos by
    ``helpers.metrics.activity.split_meetings`` (the demo share of the tracker's ``funnel_rates``). Returns (frame indexed by rep: monthly_quota, deals, opportunities, calls, meetings,
    demos; rates). ``activities``, ``opportunities``: engine tables or frames (only counts come back).
    """
    start, end = trailing_window(as_of, months)
    sellers = seller_ids(reps, opportunities)
    rates = A.funnel_rates(activities, opportunities, start, end, owners=sellers)
    fr = funnel_rates(opportunities, activities, as_of, months=months, reps=reps)
    rf = reverse_funnel(monthly_quotas.astype("float64"), **fr.as_kwargs())
    rf = A.split_meetings(rf.rename(columns={"quota": "monthly_quota"}), rates)
    rates = rates.copy()
    rates["win_rate"], rates["avg_deal_size"] = fr.win_rate, fr.avg_deal_size
    return rf[["monthly_quota", "deals", "opportunities", "calls", "meetings", "demos"]], rates


# --------------------------------------------------------------------------------------------------
# non-revenue (SDR) quotas
# --------------------------------------------------------------------------------------------------
def sdr_events(
    activities: pd.DataFrame | None,
    leads: pd.DataFrame | None,
    opps: pd.DataFrame | None = None,
    rep_ids=None,
    months: pd.DatetimeIndex | None = None,
) -> dict[str, pd.DataFrame]:
    """Monthly events per rep for non-revenue quotas (columns rep_id, month, value):

    - ``meetings``: meetings/demos booked (every logged meeting or demo, any outcome; types read as the
      activity tracker reads them, ``helpers.metrics.activity.normalized``) by their owner, counted per rep
      and month on the engine (``activities``: an Ibis table or a frame);
    - ``opportunities``: leads owned by the rep that became an opportunity, dated by the opportunity's
      created_date (else the lead's sql_date), counted per rep and month on the engine (``leads`` and
      ``opps``: engine tables or frames; the lead's deal looked up by id).
    A metric is there when its table has rows. ``rep_ids``, ``months`` (month starts): the counts of these
    reps and months only (everyone, every month when None), chosen on the engine."""
    out = {}

    def only(x, owner, month):  # the reps and months asked for, on the engine
        if months is not None and len(months):
            lo, hi = pd.Timestamp(months.min()), pd.Timestamp(months.max()) + pd.offsets.MonthBegin(1)
            x = x.filter(
                month >= ibis.literal(lo.to_pydatetime(), type="timestamp"),
                month < ibis.literal(hi.to_pydatetime(), type="timestamp"),
            )
        return x if rep_ids is None else among(x, owner, rep_ids)

    t = as_table(activities, timestamps=("occurred_at",)) if activities is not None else None
    if t is not None and {"owner", "type", "occurred_at"} <= set(t.columns):
        n = A.normalized(t)
        m = n.filter(n.type.isin(list(A.MEETING_TYPES)), n.occurred_at.notnull())
        m = only(m, "owner", m.occurred_at)
        per = m.group_by(rep_id=m.owner, month=m.occurred_at.truncate("M")).agg(value=m.count())
        got = per.execute()
        if len(got) or t.count().execute():
            out["meetings"] = got.assign(
                month=pd.to_datetime(got["month"]).astype("datetime64[us]"),
                value=got["value"].astype("float64"),
            )[["rep_id", "month", "value"]]
    lt = as_table(leads) if leads is not None else None
    if lt is not None and {"owner", "opportunity_id"} <= set(lt.columns):
        conv = lt.filter(lt.opportunity_id.notnull(), lt.owner.notnull())
        date = (
            conv.sql_date.cast("timestamp") if "sql_date" in conv.columns else ibis.null().cast("timestamp")
        )
        if opps is not None:
            o = as_table(opps)
            o = o.select(_deal=o.opportunity_id.cast("string"), _created=o.created_date.cast("timestamp"))
            conv = conv.left_join(o, conv.opportunity_id.cast("string") == o._deal)
            date = conv._created.fill_null(date)
        conv = conv.mutate(_month=date.truncate("M"))
        conv = conv.filter(conv._month.notnull())
        conv = only(conv, "owner", conv._month)
        got = (
            conv.group_by(rep_id=conv.owner.cast("string"), month=conv._month)
            .agg(value=conv.count())
            .execute()
        )
        if len(got) or lt.count().execute():
            out["opportunities"] = got.assign(
                month=pd.to_datetime(got["month"]).astype("datetime64[us]"),
                value=got["value"].astype("float64"),
            )[["rep_id", "month", "value"]]
    return out


def history_months(as_of, months: int = 12) -> pd.DatetimeIndex:
    """The ``months`` complete months ending with the last complete month before ``as_of``."""
    last = last_complete_month(as_of)
    return pd.date_range(last - pd.DateOffset(months=months - 1), last, freq="MS")


def sdr_quota_plan(
    events: pd.DataFrame,
    sdrs: pd.DataFrame,
    cal: FiscalCalendar,
    fiscal_year: int,
    as_of,
    growth_rate: float = 0.0,
    schedule=DEFAULT_RAMP,
    n_draws: int = 2000,
    seed: int = 0,
    target_share: float = 0.75,
    history_len: int = 12,
    min_months: int = 6,
) -> tuple[pd.DataFrame, np.ndarray]:
    """Non-revenue quotas set and checked like revenue ones, from the reps' own monthly counts:
    ``quota_i = productivity_i × (1 + growth) × Σ_m r_im a_im`` (productivity = mean count per fully ramped
    month, own or peers'); P(attain) by resampling the same history. Returns (table with columns rep_id,
    name, team, productivity, quota, monthly_quota (full ramp), p_attain, verdict, quota_at_target_share
    (the count reached in ``target_share`` of simulated years, rounded down); monthly quota matrix
    rep × plan month ``productivity × (1 + growth) × r_im a_im``)."""
    hmonths = history_months(as_of, history_len)
    vals = history_matrix(events, sdrs["rep_id"], hmonths)
    mask = ramped_months_mask(sdrs, hmonths, schedule)
    pools = rep_pools(vals, mask, sdrs["team"], min_months)
    prod = productivity(pools)
    pm = plan_months(cal, fiscal_year)
    off = month_offsets(sdrs["hire_date"], pm[0])
    act = active_matrix(off, sdrs["end_date"], pm)
    rmp = ramp_matrix(off, 12, rep_schedules(sdrs["ramp_months"], schedule))
    cap_months = (act * rmp).sum(axis=1)
    quota = np.round(prod * (1 + growth_rate) * cap_months)
    totals = simulate_totals(draw_months(pools, n_draws, 12, seed), act, rmp)
    att = attainment(totals, quota, target_share)
    table = pd.DataFrame(
        {
            "rep_id": sdrs["rep_id"].to_numpy(),
            "name": sdrs["name"].to_numpy(),
            "team": sdrs["team"].to_numpy(),
            "productivity": prod,
            "quota": quota,
            "monthly_quota": np.round(prod * (1 + growth_rate)),
            "p_attain": att.p_attain,
            "verdict": verdicts(att.p_attain),
            "quota_at_target_share": np.floor(quota_at_share(totals, target_share)),
        }
    )
    monthly = np.round((prod * (1 + growth_rate))[:, None] * act * rmp, 1)
    return table, monthly


# --------------------------------------------------------------------------------------------------
# output
# --------------------------------------------------------------------------------------------------
def quotas_table(
    rep_ids, months: pd.DatetimeIndex, monthly: np.ndarray, metric: str = "bookings", decimals: int = 2
) -> pd.DataFrame:
    """Long ``quotas`` table (rep_id, period_start, quota, period_end, metric), one row per rep and month
    with a quota above zero."""
    ids = np.repeat(np.asarray(list(rep_ids), dtype=object), len(months))
    starts = np.tile(months.to_numpy(), len(ids) // max(len(months), 1))
    df = pd.DataFrame(
        {
            "rep_id": pd.array(ids, dtype="str"),
            "period_start": starts,
            "quota": np.round(np.asarray(monthly, float).ravel(), decimals),
        }
    )
    df["period_end"] = df["period_start"] + pd.offsets.MonthEnd(0)
    df["metric"] = metric
    return df.loc[df["quota"] > 0].reset_index(drop=True)


def write_quotas(df: pd.DataFrame, output_dir: str | os.PathLike, name: str = "proposed_quotas.csv") -> Path:
    """Write the quotas table as CSV (dates as YYYY-MM-DD) into ``output_dir`` atomically."""
    out = df.copy()
    for c in ("period_start", "period_end"):
        out[c] = pd.to_datetime(out[c]).dt.strftime("%Y-%m-%d")
    # a file people open in a spreadsheet: text cells that would run as formulas are neutralised
    return escape.to_csv(
        out[["rep_id", "period_start", "quota", "period_end", "metric"]], Path(output_dir) / name
    )
