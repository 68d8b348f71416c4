"""Fiscal calendar: fiscal years and quarters from any start month, and YTD/QTD/MTD/WTD windows.

Conventions (used everywhere in the project):

- A fiscal year is named by the calendar year in which it **ends**: with ``start_month=2``, FY2027 runs
  2026-02-01 .. 2027-01-31. With ``start_month=1`` the fiscal year is the calendar year.
- Fiscal quarter ``q`` (1–4) of a date = ``(months since the fiscal year start) // 3 + 1``.
- Weeks start on Monday (ISO weeks); the week label is ISO ``YYYY-Www``.
- A window ``[start, end]`` is inclusive of both days; ``as_of`` is the last day with data, so the
  to-date window is ``[start, as_of]`` and the full period is ``[start, end]``.
- Pace = bookings to date ÷ elapsed days × days in the full period (a straight-line run rate).
"""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd


def _ts(value) -> pd.Timestamp:
    return pd.Timestamp(value).normalize()


@dataclass(frozen=True)
class Window:
    """A reporting window: to-date ``[start, as_of]`` inside the full period ``[start, end]``."""

    name: str
    start: pd.Timestamp
    as_of: pd.Timestamp
    end: pd.Timestamp
    label: str

    @property
    def elapsed_days(self) -> int:
        return int((self.as_of - self.start).days) + 1

    @property
    def total_days(self) -> int:
        return int((self.end - self.start).days) + 1

    @property
    def elapsed_share(self) -> float:
        return self.elapsed_days / self.total_days

    def contains(self, dates: pd.Series) -> pd.Series:
        """Boolean mask: dates within the to-date window ``[start, as_of]``."""
        return (dates >= self.start) & (dates <= self.as_of)

    def contains_full(self, dates: pd.Series) -> pd.Series:
        """Boolean mask: dates within the full period ``[start, end]``."""
        return (dates >= self.start) & (dates <= self.end)

    @property
    def to_date_text(self) -> str:
        """How a to-date figure names this window: the period's label once it is complete at the as-of
        date ("FY2027 Q3"), else "FY2027 to 2026-10-31"; a week as "week of 2026-10-26"."""
        name = f"week of {self.start:%Y-%m-%d}" if self.name == "WTD" else self.label
        return name if self.as_of >= self.end else f"{name} to {self.as_of:%Y-%m-%d}"

    @property
    def full_text(self) -> str:
        """How a full-period figure (a plan) names this window: "FY2027 Q3, full quarter"."""
        kind = {"YTD": "year", "QTD": "quarter", "MTD": "month", "WTD": "week"}.get(self.name, "period")
        return f"{self.label}, full {kind}"


@dataclass(frozen=True)
class FiscalCalendar:
    start_month: int = 1

    def __post_init__(self):
        if not 1 <= int(self.start_month) <= 12:
            raise ValueError(f"fiscal_year_start_month must be 1..12, got {self.start_month!r}")

    # -- scalar helpers ---------------------------------------------------------------------------
    def fiscal_year(self, date) -> int:
        d = _ts(date)
        return d.year + 1 if (self.start_month > 1 and d.month >= self.start_month) else d.year

    def year_start(self, fiscal_year: int) -> pd.Timestamp:
        year = fiscal_year - 1 if self.start_month > 1 else fiscal_year
        return pd.Timestamp(year=year, month=self.start_month, day=1)

    def year_end(self, fiscal_year: int) -> pd.Timestamp:
        return self.year_start(fiscal_year + 1) - pd.Timedelta(days=1)

    def fiscal_quarter(self, date) -> int:
        d = _ts(date)
        return ((d.month - self.start_month) % 12) // 3 + 1

    def quarter_start(self, date) -> pd.Timestamp:
        d = _ts(date)
        fy_start = self.year_start(self.fiscal_year(d))
        return fy_start + pd.DateOffset(months=3 * (self.fiscal_quarter(d) - 1))

    def quarter_label(self, date) -> str:
        return f"FY{self.fiscal_year(date)} Q{self.fiscal_quarter(date)}"

    def months_of_year(self, fiscal_year: int) -> list[pd.Timestamp]:
        start = self.year_start(fiscal_year)
        return [start + pd.DateOffset(months=i) for i in range(12)]

    # -- windows ----------------------------------------------------------------------------------
    def windows(self, as_of) -> dict[str, Window]:
        """YTD, QTD, MTD and WTD windows for ``as_of`` (each to date, with its full period end)."""
        a = _ts(as_of)
        fy = self.fiscal_year(a)
        ys = self.year_start(fy)
        qs = self.quarter_start(a)
        ms = a.replace(day=1)
        ws = a - pd.Timedelta(days=a.day_of_week)
        return {
            "YTD": Window("YTD", ys, a, self.year_end(fy), f"FY{fy}"),
            "QTD": Window(
                "QTD", qs, a, qs + pd.DateOffset(months=3) - pd.Timedelta(days=1), self.quarter_label(a)
            ),
            "MTD": Window("MTD", ms, a, ms + pd.offsets.MonthEnd(0), ms.strftime("%Y-%m")),
            "WTD": Window("WTD", ws, a, ws + pd.Timedelta(days=6), week_label(a)),
        }

    # -- vectorised labels ------------------------------------------------------------------------
    def fiscal_years(self, dates: pd.Series) -> pd.Series:
        d = pd.to_datetime(dates)
        bump = (d.dt.month >= self.start_month) & (self.start_month > 1)
        return (d.dt.year + bump.astype("int64")).astype("Int64")

    def fiscal_quarters(self, dates: pd.Series) -> pd.Series:
        d = pd.to_datetime(dates)
        return (((d.dt.month - self.start_month) % 12) // 3 + 1).astype("Int64")

    def quarter_labels(self, dates: pd.Series) -> pd.Series:
        fy = self.fiscal_years(dates).astype("string")
        q = self.fiscal_quarters(dates).astype("string")
        return ("FY" + fy + " Q" + q).astype("str")


def month_labels(dates: pd.Series) -> pd.Series:
    """``YYYY-MM`` for each date."""
    return pd.to_datetime(dates).dt.strftime("%Y-%m")


def week_label(date) -> str:
    iso = _ts(date).isocalendar()
    return f"{iso[0]}-W{iso[1]:02d}"


def week_starts(dates: pd.Series) -> pd.Series:
    """Monday of each date's week."""
    d = pd.to_datetime(dates).dt.normalize()
    return d - pd.to_timedelta(d.dt.day_of_week, unit="D")


def month_starts(dates: pd.Series) -> pd.Series:
    return pd.to_datetime(dates).dt.to_period("M").dt.to_timestamp()


def period_bounds(period: str) -> tuple[pd.Timestamp, pd.Timestamp]:
    """First and last day of a ``YYYY-MM`` month period."""
    import re

    if not isinstance(period, str) or not re.fullmatch(r"\d{4}-(0[1-9]|1[0-2])", period.strip()):
        raise ValueError(f"period must look like 2026-10 (year-month), got {period!r}")
    p = pd.Period(period.strip(), freq="M")
    return p.start_time.normalize(), p.end_time.normalize()


def trailing_window(as_of, months: int = 12) -> tuple[pd.Timestamp, pd.Timestamp]:
    """The ``months`` to ``as_of``: ``[as_of − months + 1 day, as_of]``, both days included (12 months to
    2026-10-31 = 2025-11-01 .. 2026-10-31; to 2024-02-29 = 2023-03-01 .. 2024-02-29). Every "last 12 months"
    figure uses this window."""
    end = _ts(as_of)
    return end - pd.DateOffset(months=months) + pd.Timedelta(days=1), end


def trailing_text(as_of, months: int = 12) -> str:
    """How a figure over ``trailing_window(as_of, months)`` names it: "12 months to 2026-10-31"."""
    return f"{months} months to {_ts(as_of):%Y-%m-%d}"


def weeks_window(as_of, weeks: int = 13) -> tuple[pd.Timestamp, pd.Timestamp]:
    """The ``weeks`` to ``as_of``: ``[as_of − 7·weeks + 1 day, as_of]`` (whole weeks ending on as_of)."""
    end = _ts(as_of)
    return end - pd.Timedelta(days=7 * weeks - 1), end


def month_name(month: int) -> str:
    """The month's English name (2 → "February"), as a reader says a fiscal year's start."""
    import calendar

    return calendar.month_name[int(month)]


def last_complete_month(today=None) -> str:
    """The ``YYYY-MM`` label of the last month that has fully ended before ``today``."""
    t = _ts(today if today is not None else pd.Timestamp.today())
    return (t.to_period("M") - 1).strftime("%Y-%m")


def weekly_dates(start, end) -> list[pd.Timestamp]:
    """Snapshot dates every 7 days from ``start`` up to and including ``end`` (``end`` always included)."""
    start, end = pd.Timestamp(start), pd.Timestamp(end)
    out = list(pd.date_range(start, end, freq="7D"))
    if not out or out[-1] != end:
        out.append(end)
    return out
