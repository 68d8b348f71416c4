import pandas as pd
import pytest

from helpers.data.calendar import FiscalCalendar, last_complete_month, period_bounds, week_label, week_starts

T = pd.Timestamp


def test_calendar_year_when_fiscal_start_is_january():
    cal = FiscalCalendar(1)
    assert cal.fiscal_year("2026-01-01") == 2026
    assert cal.fiscal_year("2026-12-31") == 2026
    assert cal.quarter_label("2026-04-01") == "FY2026 Q2"
    assert cal.year_start(2026) == T("2026-01-01")
    assert cal.year_end(2026) == T("2026-12-31")


def test_february_fiscal_year_is_named_by_the_year_it_ends():
    cal = FiscalCalendar(2)
    # FY2027 = 2026-02-01 .. 2027-01-31
    assert cal.fiscal_year("2026-01-31") == 2026
    assert cal.fiscal_year("2026-02-01") == 2027
    assert cal.fiscal_year("2027-01-31") == 2027
    assert cal.year_start(2027) == T("2026-02-01")
    assert cal.year_end(2027) == T("2027-01-31")
    # Q1 = Feb-Apr, Q2 = May-Jul, Q3 = Aug-Oct, Q4 = Nov-Jan
    assert [
        cal.fiscal_quarter(d) for d in ("2026-02-01", "2026-04-30", "2026-05-01", "2026-10-31", "2027-01-15")
    ] == [1, 1, 2, 3, 4]
    assert cal.quarter_start("2027-01-15") == T("2026-11-01")


def test_windows_for_an_as_of_date_in_a_february_fiscal_year():
    cal = FiscalCalendar(2)
    w = cal.windows("2026-10-15")  # a Thursday
    assert (w["YTD"].start, w["YTD"].end) == (T("2026-02-01"), T("2027-01-31"))
    assert (w["QTD"].start, w["QTD"].end) == (T("2026-08-01"), T("2026-10-31"))
    assert (w["MTD"].start, w["MTD"].end) == (T("2026-10-01"), T("2026-10-31"))
    assert (w["WTD"].start, w["WTD"].end) == (T("2026-10-12"), T("2026-10-18"))
    # elapsed share of the month: 15 of 31 days
    assert w["MTD"].elapsed_days == 15 and w["MTD"].total_days == 31
    assert w["QTD"].label == "FY2027 Q3"


def test_window_masks_include_both_ends():
    w = FiscalCalendar(1).windows("2026-03-31")["QTD"]
    s = pd.Series(pd.to_datetime(["2025-12-31", "2026-01-01", "2026-03-31", "2026-04-01"]))
    assert w.contains(s).tolist() == [False, True, True, False]


def test_vectorised_labels_match_scalar_ones():
    cal = FiscalCalendar(11)
    dates = pd.Series(pd.date_range("2025-01-01", "2027-12-31", freq="13D"))
    labels = cal.quarter_labels(dates)
    assert labels.tolist() == [cal.quarter_label(d) for d in dates]


def test_weeks_start_monday():
    s = pd.Series(pd.to_datetime(["2026-10-18", "2026-10-19"]))  # Sunday, Monday
    assert week_starts(s).tolist() == [T("2026-10-12"), T("2026-10-19")]
    assert week_label("2026-10-19") == "2026-W43"


def test_period_helpers():
    assert period_bounds("2026-02") == (T("2026-02-01"), T("2026-02-28"))
    assert last_complete_month("2026-11-22") == "2026-10"
    assert last_complete_month("2026-01-05") == "2025-12"
    with pytest.raises(ValueError, match="2026-10"):
        period_bounds("October")
    with pytest.raises(ValueError):
        FiscalCalendar(13)
