"""The activity tracker: every rate pinned on a hand-built log, and the section rendered in a real notebook.

The hand-built log (as-of Saturday 2026-10-31; the week 2026-10-25 .. 10-31 runs Sun..Sat):

    id  owner type     when              opp  outcome     minutes
    c1  r1    call     Mon 10-26 09:00   o1   connected   5
    c2  r1    call     Mon 10-26 10:00   -    connected   3
    c3  r1    call     Tue 10-27 14:00   -    no_answer
    c4  r2    call     Tue 10-27 15:00   o3   no_answer
    c6  r2    call     Tue 10-27 16:00   o3   connected
    c5  r2    call     Wed 10-28 09:30   -    (none)          <- no outcome: out of every hit rate
    e1  r1    email    Mon 10-26 11:00   o1   replied
    e2  r2    Email    Thu 10-29 (date)  -    no_reply
    e3  r2    email    Thu 10-29 (date)  -    no_reply
    s1  r2    In-Mail  Fri 10-30 12:00   -    replied         <- alias of "social"
    m1  r1    meeting  Wed 10-28 10:00   o1   held        30
    m2  r1    meeting  Thu 10-29 10:00   o2   no_show
    m3  r2    meeting  Fri 10-30 10:00   o3   positive    60
    m4  r2    meeting  Fri 10-30 16:00   -    scheduled       <- never updated: out of the no-show rate
    d1  r1    demo     Thu 10-29 15:00   o1   positive
    d2  r2    demo     Fri 10-30 14:00   o3   no_show
    x1  r1    email    Sat 10-31 (date)  o1   no_reply        <- after o1 closed (10-30): not "before the win"
    p1  r1    call     Tue 10-20 09:00   -    connected       <- the week before

Deals: o1 r1 won 10-30 $10k · o2 r1 lost 10-29 $5k · o3 r2 won 10-31 $20k · o4, o5 r3 won 10-15 / 10-20
$30k / $40k with NO activity · o6 r1 open (created 10-05). Reps r1, r2 (team A, AE), r3 (team B, AE; logs
nothing).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from helpers.data.calendar import trailing_window
from helpers.metrics import activity as A
from helpers.metrics import quota as Q

AS_OF = pd.Timestamp("2026-10-31")
WEEK = (pd.Timestamp("2026-10-25"), AS_OF)
OCT = (pd.Timestamp("2026-10-01"), AS_OF)
FIXTURE = Path(__file__).resolve().parent / "fixtures" / "activity_section.ipynb"

ROWS = [
    ("c1", "r1", "call", "2026-10-26 09:00", "o1", "connected", 5),
    ("c2", "r1", "call", "2026-10-26 10:00", None, "connected", 3),
    ("c3", "r1", "call", "2026-10-27 14:00", None, "no_answer", None),
    ("c4", "r2", "call", "2026-10-27 15:00", "o3", "no_answer", None),
    ("c6", "r2", "call", "2026-10-27 16:00", "o3", "connected", None),
    ("c5", "r2", "call", "2026-10-28 09:30", None, None, None),
    ("e1", "r1", "email", "2026-10-26 11:00", "o1", "replied", None),
    ("e2", "r2", "Email", "2026-10-29 00:00", None, "no_reply", None),
    ("e3", "r2", "email", "2026-10-29 00:00", None, "no_reply", None),
    ("s1", "r2", "In-Mail", "2026-10-30 12:00", None, "replied", None),
    ("m1", "r1", "meeting", "2026-10-28 10:00", "o1", "held", 30),
    ("m2", "r1", "meeting", "2026-10-29 10:00", "o2", "no_show", None),
    ("m3", "r2", "meeting", "2026-10-30 10:00", "o3", "positive", 60),
    ("m4", "r2", "meeting", "2026-10-30 16:00", None, "scheduled", None),
    ("d1", "r1", "demo", "2026-10-29 15:00", "o1", "positive", None),
    ("d2", "r2", "demo", "2026-10-30 14:00", "o3", "no_show", None),
    ("x1", "r1", "email", "2026-10-31 00:00", "o1", "no_reply", None),
    ("p1", "r1", "call", "2026-10-20 09:00", None, "connected", None),
]


@pytest.fixture
def act() -> pd.DataFrame:
    df = pd.DataFrame(
        ROWS,
        columns=[
            "activity_id",
            "owner",
            "type",
            "occurred_at",
            "opportunity_id",
            "outcome",
            "duration_minutes",
        ],
    )
    df["occurred_at"] = pd.to_datetime(df["occurred_at"]).astype("datetime64[us]")
    df["duration_minutes"] = df["duration_minutes"].astype("float64")
    return df.astype({c: "str" for c in ("activity_id", "owner", "type", "opportunity_id", "outcome")})


@pytest.fixture
def opps() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "opportunity_id": ["o1", "o2", "o3", "o4", "o5", "o6"],
            "owner": ["r1", "r1", "r2", "r3", "r3", "r1"],
            "created_date": pd.to_datetime(
                ["2026-09-01", "2026-09-10", "2026-10-01", "2026-08-01", "2026-09-20", "2026-10-05"]
            ),
            "close_date": pd.to_datetime(
                ["2026-10-30", "2026-10-29", "2026-10-31", "2026-10-15", "2026-10-20", "2026-12-15"]
            ),
            "stage": ["Won", "Lost", "Won", "Won", "Won", "Open"],
            "amount": [10_000.0, 5_000.0, 20_000.0, 30_000.0, 40_000.0, 8_000.0],
            "is_closed": pd.array([True, True, True, True, True, False], dtype="boolean"),
            "is_won": pd.array([True, False, True, True, True, False], dtype="boolean"),
            "segment": ["SMB", "SMB", "Enterprise", "Enterprise", "SMB", "SMB"],
        }
    )


@pytest.fixture
def reps() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "rep_id": ["r1", "r2", "r3"],
            "team": ["A", "A", "B"],
            "role": ["AE", "AE", "AE"],
            "hire_date": pd.to_datetime(["2024-01-01"] * 3),
            "end_date": pd.NaT,
        }
    )


@pytest.fixture
def quotas() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "rep_id": ["r1", "r1", "r2", "r3"],
            "period_start": pd.to_datetime(["2026-10-01", "2026-10-01", "2026-10-01", "2026-09-01"]),
            "period_end": pd.to_datetime(["2026-10-31", "2026-10-31", "2026-12-31", "2026-09-30"]),
            "quota": [40_000.0, 12.0, 60_000.0, 50_000.0],
            "metric": ["bookings", "meetings", "bookings", "bookings"],
        }
    )


# ---------------------------------------------------------------------------------------------- volume
def test_normalized_maps_aliases_and_case(act):
    p = A.normalized(act).execute()
    assert p["type"].astype("str").tolist().count("social") == 1  # "In-Mail"
    assert p["type"].astype("str").tolist().count("email") == 4  # "Email" lower-cased
    assert A.types_of(A.normalized(act)) == list(A.ACTIVITY_TYPES)  # nothing outside the vocabulary


def test_weekly_counts_zero_fill_weeks_with_none(act):
    # 4 weeks ending 10-31: 10-04..10-10, 10-11..10-17, 10-18..10-24, 10-25..10-31; r3 passed in, logs nothing.
    c = A.activity_counts(act, "2026-10-04", AS_OF, "W", owners=["r1", "r2", "r3"])
    assert len(c) == 3 * 4
    r1 = c.loc["r1", "total"]
    assert r1.tolist() == [0, 0, 1, 8]  # p1 in week 3; c1 c2 c3 e1 m1 m2 d1 x1 in week 4
    assert list(r1.index.strftime("%m-%d")) == ["10-10", "10-17", "10-24", "10-31"]
    assert c.loc["r3", "total"].sum() == 0
    assert c.loc[
        ("r2", pd.Timestamp("2026-10-31")), ["call", "email", "meeting", "demo", "social"]
    ].tolist() == [3, 2, 2, 1, 1]


def test_daily_and_monthly_counts(act):
    d = A.activity_counts(act, "2026-10-26", "2026-10-27", "D")
    # Mon 10-26: r1 c1 c2 e1 = 3; Tue 10-27: r1 c3 = 1, r2 c4 c6 = 2
    assert d["total"].to_dict() == {
        ("r1", pd.Timestamp("2026-10-26")): 3,
        ("r1", pd.Timestamp("2026-10-27")): 1,
        ("r2", pd.Timestamp("2026-10-26")): 0,
        ("r2", pd.Timestamp("2026-10-27")): 2,
    }
    m = A.activity_counts(act, "2026-09-01", AS_OF, "M")
    assert m.loc["r1", "total"].tolist() == [0, 9]  # September empty, October 9
    assert m.loc["r2", "total"].tolist() == [0, 9]


def test_rep_volume_against_team_median_and_trend(act, reps):
    v = A.rep_volume(act, AS_OF, weeks=1, reps=reps).set_index("rep")
    # r1: 8 in the week (3 calls, 2 emails, 2 meetings, 1 demo); prior week 1 (p1) -> trend 8/1 - 1 = 7
    assert v.loc["r1", "total"] == 8 and v.loc["r1", "call"] == 3 and v.loc["r1", "prior"] == 1
    assert v.loc["r1", "trend"] == pytest.approx(7.0)
    # outbound = calls + emails + social: r1 3+2+0 = 5, r2 3+2+1 = 6
    assert v.loc["r1", "outbound"] == 5 and v.loc["r2", "outbound"] == 6
    # team A median of (8, 9) = 8.5; r1 8/8.5; r2 has no prior week -> trend NaN
    assert v.loc["r1", "team_median"] == 8.5
    assert v.loc["r1", "vs_team_median"] == pytest.approx(8 / 8.5)
    assert np.isnan(v.loc["r2", "trend"])
    # r3 (employed, logged nothing): 0 per week, team B median 0 -> ratio NaN
    assert v.loc["r3", "total"] == 0 and np.isnan(v.loc["r3", "vs_team_median"])
    # 5 working days (Mon-Fri) in Sun 10-25 .. Sat 10-31: 8/5; per month = 8 x 365.25/12/7
    assert v.loc["r1", "per_working_day"] == pytest.approx(1.6)
    assert v.loc["r1", "per_month"] == pytest.approx(8 * 365.25 / 84)


# ---------------------------------------------------------------------------------------------- outcomes
def test_meeting_outcomes_and_no_show_rate(act):
    m = A.meeting_outcomes(act, *WEEK).set_index("type")
    # meetings: booked m1..m4 = 4; held m1 + m3(positive) = 2; no-show m2; scheduled m4 (excluded)
    assert m.loc["meeting", ["booked", "held", "no_show", "scheduled", "positive"]].tolist() == [
        4,
        2,
        1,
        1,
        1,
    ]
    assert m.loc["meeting", "no_show_rate"] == pytest.approx(1 / 3)  # 1 / (2 + 1)
    assert m.loc["meeting", "positive_rate"] == pytest.approx(1 / 2)
    # demos: d1 positive (held), d2 no-show -> 1 / (1 + 1)
    assert m.loc["demo", "no_show_rate"] == pytest.approx(0.5)
    # both: no-shows 2 / (held 3 + no-shows 2) = 0.4
    assert m.loc["meeting+demo", "no_show_rate"] == pytest.approx(0.4)
    by_rep = A.meeting_outcomes(act, *WEEK, by="owner").set_index(["owner", "type"])
    assert by_rep.loc[("r2", "meeting+demo"), "no_show_rate"] == pytest.approx(1 / 2)  # d2 / (m3 + d2)


def test_no_show_rate_with_no_meetings_is_undefined(act):
    m = A.meeting_outcomes(act, "2026-10-18", "2026-10-24").set_index("type")  # only p1 (a call)
    assert m["booked"].sum() == 0 and m["no_show_rate"].isna().all()


def test_hit_rate_by_channel(act):
    h = A.hit_rates(act, *WEEK).set_index("channel")
    # calls with an outcome: c1 c2 c6 connected, c3 c4 no answer (c5 has none) -> 3/5
    assert h.loc["call", ["attempts", "hits"]].tolist() == [5, 3]
    assert h.loc["call", "hit_rate"] == pytest.approx(0.6)
    # emails: e1 replied; e2 e3 x1 no reply -> 1/4; social: s1 replied -> 1/1
    assert h.loc["email", "hit_rate"] == pytest.approx(0.25)
    assert h.loc["social", "hit_rate"] == pytest.approx(1.0)


def test_hit_rate_by_weekday(act):
    h = A.hit_rates(act, *WEEK, by="weekday")
    calls = h[h["channel"] == "call"].set_index("weekday")
    assert list(calls.index) == ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"]
    assert calls.loc["Mon", "hit_rate"] == pytest.approx(1.0)  # c1 c2 connected
    assert calls.loc["Tue", "hit_rate"] == pytest.approx(1 / 3)  # c6 of c3 c4 c6
    assert calls.loc["Wed", "attempts"] == 0 and np.isnan(calls.loc["Wed", "hit_rate"])  # c5: no outcome
    emails = h[h["channel"] == "email"].set_index("weekday")
    assert emails.loc["Thu", "hit_rate"] == 0.0 and emails.loc["Sat", "attempts"] == 1  # e2 e3; x1


def test_hit_rate_by_hour_skips_date_only_stamps(act):
    h = A.hit_rates(act, *WEEK, by="hour")
    calls = h[h["channel"] == "call"].set_index("hour")
    assert calls["attempts"].to_dict() == {9: 1, 10: 1, 14: 1, 15: 1, 16: 1}
    assert 0 not in set(h["hour"])  # e2, e3, x1 are date-only
    assert A.hit_rates(act.assign(occurred_at=act["occurred_at"].dt.normalize()), *WEEK, by="hour").empty


# ---------------------------------------------------------------------------------------------- yield
def test_share_tied_to_an_opportunity(act):
    s = A.opportunity_share(act, *OCT).set_index("type")
    # tied: c1 c4 c6 e1 x1 m1 m2 m3 d1 d2 = 10 of 18
    assert s.loc["all", ["activities", "tied"]].tolist() == [18, 10]
    assert s.loc["all", "share_tied"] == pytest.approx(10 / 18)
    assert s.loc["demo", "share_tied"] == 1.0 and s.loc["social", "share_tied"] == 0.0


def test_activity_per_opportunity_and_per_won_deal(act, opps):
    y = A.activity_yield(act, opps, *OCT).set_index("rep")
    # October: 18 activities; created o3 o6 = 2; won o1 o3 o4 o5 = 4
    assert y.loc["All reps", ["activities", "opps_created", "deals_won"]].tolist() == [18, 2, 4]
    assert y.loc["All reps", "activities_per_won_deal"] == pytest.approx(4.5)  # 18 / 4
    assert y.loc["All reps", "activities_per_opp_created"] == pytest.approx(9.0)  # 18 / 2
    assert y.loc["r1", "activities_per_won_deal"] == pytest.approx(9.0)  # 9 / 1 (o1)
    assert y.loc["r3", "activities"] == 0 and y.loc["r3", "activities_per_won_deal"] == 0.0  # 0 / 2


def test_tied_activity_per_won_deal_counts_deals_with_none(act, opps):
    d = A.deal_activity(act, opps, *OCT)
    # o1: c1 e1 m1 d1 (x1 is after the close) = 4; o2: m2; o3: c4 c6 m3 d2 = 4; o4, o5: none; o6 open: absent
    assert len(d) == 5 and d.won_deals == 4  # o1..o5 closed, o2 lost
    # per segment: Enterprise o3 o4 (both won), SMB o1 o2 o5 (o1 o5 won)
    assert d.segments.to_dict("records") == [
        {"segment": "Enterprise", "deals": 2, "won": 2},
        {"segment": "SMB", "deals": 3, "won": 2},
    ]
    # per owner: r1 won o1 ($10k, tied), r2 o3 ($20k, tied), r3 o4 o5 ($70k, none tied)
    assert d.owners.to_dict("index") == {
        "r1": {"won": 1, "bookings": 10_000.0, "won_active": 1},
        "r2": {"won": 1, "bookings": 20_000.0, "won_active": 1},
        "r3": {"won": 2, "bookings": 70_000.0, "won_active": 0},
    }
    assert d.won_totals.to_dict() == {0: 2, 4: 2}  # won: o1 4, o3 4, o4 0, o5 0
    assert d.won_active.to_dict() == {"r1": 1, "r2": 1}
    w = A.won_deal_activity(d)
    assert w["won_deals"] == 4
    assert w["mean_per_won_deal"] == pytest.approx(2.0)  # (4 + 4 + 0 + 0) / 4
    assert w["median_per_won_deal"] == pytest.approx(2.0)
    assert w["share_won_without_activity"] == pytest.approx(0.5)


def test_win_association_with_and_without(act, opps):
    a = A.win_association(A.deal_activity(act, opps, *OCT)).set_index("type")
    # calls on o1, o3 (both won) -> 2/2; without: o2 lost, o4 o5 won -> 2/3
    assert a.loc["call", "win_rate_with"] == 1.0
    assert a.loc["call", "win_rate_without"] == pytest.approx(2 / 3)
    assert a.loc["call", "difference"] == pytest.approx(1 / 3)
    # meetings on o1 o2 o3 -> 2/3; without o4 o5 -> 2/2
    assert a.loc["meeting", "difference"] == pytest.approx(2 / 3 - 1)
    assert a.loc["social", "deals_with"] == 0 and np.isnan(a.loc["social", "win_rate_with"])
    seg = A.win_association(A.deal_activity(act, opps, *OCT), by="segment").set_index(["segment", "type"])
    # Enterprise: o3 (won, demo), o4 (won, none) -> with 1/1, without 1/1
    assert seg.loc[("Enterprise", "demo"), ["deals_with", "deals_without"]].tolist() == [1, 1]


def test_winning_sequences_collapse_repeats(act, opps):
    s = A.winning_sequences(act, opps, *OCT).set_index("sequence")
    assert s.loc["(no activity logged)", ["deals", "won"]].tolist() == [2, 2]  # o4, o5
    assert s.loc["call → email → meeting", "won"] == 1  # o1: c1, e1, m1 (d1 is the 4th)
    assert s.loc["call → meeting → demo", "won"] == 1  # o3: c4, c6 collapse into one "call"
    assert s.loc["meeting", ["deals", "won"]].tolist() == [1, 0]  # o2
    assert s.loc["(no activity logged)", "share_of_wins"] == pytest.approx(0.5)


# ---------------------------------------------------------------------------------------------- benchmark
def test_monthly_quota(quotas):
    q = A.monthly_quota(quotas, AS_OF)
    # r1 monthly bookings row (the meetings row is ignored); r2 quarterly 60k / 3; r3 no row covers October
    assert q.to_dict() == {"r1": 40_000.0, "r2": 20_000.0}


def test_benchmark_gap(act, opps, quotas):
    # 12 months to as-of: won o1 o3 o4 o5 = $100k -> avg deal $25k; win rate 4 / 5 closed = 0.8;
    # created o1..o6 = 6; calls c1..c6 + p1 = 7; held meetings m1 m3 = 2; held demos d1 = 1.
    # r1: $40k / 25k = 1.6 deals / 0.8 = 2 opportunities; calls 2 x 7/6 = 7/3; meetings 2 x 2/6; demos 2 x 1/6
    # (helpers.metrics.quota's chain: meetings+demos = 2 / (6 opps / 3 held) = 1, calls = 1 / (3/7) = 7/3 -> same.)
    mq = A.monthly_quota(quotas, AS_OF)
    needed, rates = Q.benchmark_needs(act, opps, mq, AS_OF, months=12)
    assert rates["avg_deal_size"] == pytest.approx(25_000) and rates["win_rate"] == pytest.approx(0.8)
    assert needed.loc["r1", ["deals", "opportunities"]].tolist() == pytest.approx([1.6, 2.0])
    assert needed.loc["r1", ["calls", "meetings", "demos"]].tolist() == pytest.approx([7 / 3, 2 / 3, 1 / 3])
    assert needed.loc["r2", ["calls", "meetings", "demos"]].tolist() == pytest.approx([7 / 6, 1 / 3, 1 / 6])
    # actual over 3 months (08-01 .. 10-31) / 3: r1 calls c1 c2 c3 p1 = 4, meetings m1, demos d1;
    # r2 calls c4 c5 c6 = 3, meetings m3, demos 0 (d2 was a no-show)
    actual = A.actual_activity(act, *trailing_window(AS_OF, 3), months=3)
    g = A.benchmark_gap(needed, actual).set_index("rep")
    assert g.loc["r1", "calls_actual"] == pytest.approx(4 / 3)
    assert g.loc["r1", ["calls_gap", "meetings_gap", "demos_gap"]].tolist() == pytest.approx(
        [1.0, 1 / 3, 0.0]
    )
    assert g.loc["r2", ["calls_gap", "meetings_gap", "demos_gap"]].tolist() == pytest.approx(
        [1 / 6, 0.0, 1 / 6]
    )
    assert g.loc["r1", "calls_pct"] == pytest.approx((4 / 3) / (7 / 3))
    assert "r3" not in g.index


# ---------------------------------------------------------------------------------------------- time, completeness
def test_time_by_type(act):
    t = A.time_by_type(act, *WEEK, weeks=1).set_index("type")
    # calls in the week: 6, durations c1 5 + c2 3 -> 8 min, logged 2/6, avg 4
    assert t.loc["call", ["activities", "logged", "minutes"]].tolist() == [6, 2, 8.0]
    assert t.loc["call", "avg_minutes"] == 4.0 and t.loc["call", "logged_share"] == pytest.approx(1 / 3)
    assert t.loc["meeting", "hours_per_week"] == pytest.approx(1.5)  # m1 30 + m3 60 min
    assert np.isnan(t.loc["email", "avg_minutes"])


def test_logging_completeness_flags_rep_with_bookings_and_no_activity(act, opps):
    lc = A.logging_completeness(act, opps, *OCT, min_won=1).set_index("rep")
    # r1 9 activities / 1 win, r2 9 / 1, r3 0 / 2 -> median 9; r3 flagged (nothing logged, 2 unlogged wins)
    assert lc.loc["r3", "flag"] and lc.loc["r3", "reason"] == "no activity logged despite won deals"
    assert lc.loc["r3", "won_without_activity"] == 2 and lc.loc["r3", "bookings"] == 70_000
    assert lc.loc["r1", "median_per_won_deal"] == 9.0
    assert not lc.loc["r1", "flag"] and not lc.loc["r2", "flag"]


def test_weekly_counts_over_two_million_activities():
    n = 2_000_000
    rng = np.random.default_rng(0)
    big = pd.DataFrame(
        {
            "owner": pd.Categorical.from_codes(rng.integers(0, 200, n), [f"r{i}" for i in range(200)]),
            "type": pd.Categorical.from_codes(rng.integers(0, 5, n), list(A.ACTIVITY_TYPES)),
            "occurred_at": pd.Timestamp("2025-11-01")
            + pd.to_timedelta(rng.integers(0, 365 * 86400, n), unit="s"),
        }
    )
    c = A.activity_counts(big, "2025-11-01", AS_OF, "W")
    # 365 days = 52 whole weeks ending 10-31 + a first, partial week holding 2025-11-01 only
    assert c.index.get_level_values("period").nunique() == 53
    assert c["total"].sum() == n


# ---------------------------------------------------------------------------------------------- rendering
def _ctx(act, opps, reps, quotas):
    from helpers.data.calendar import FiscalCalendar
    from helpers.data.config import DatasetConfig
    from helpers.data.dataset import Dataset
    from helpers.sections.context import ReportContext
    from helpers.sections.summary import Headlines

    ds = Dataset(
        Path("."),
        DatasetConfig(name="hand"),
        {"activities": act, "opportunities": opps, "reps": reps, "quotas": quotas},
    )
    return ReportContext(ds, AS_OF, "2026-10", FiscalCalendar(1), Headlines("t"))


def test_view_asks_the_company_yield_once(act, opps, reps, quotas, monkeypatch):
    # the yield table and the logging flags read the company's activity_yield over the same 12 months:
    # asked once (company: the scope's own; a team: its own, its team's and the company's), with the same
    # flags as when the flags ask it themselves
    import matplotlib

    matplotlib.use("Agg")
    from helpers.sections import activity_view

    calls, ask = [], A.activity_yield
    monkeypatch.setattr(A, "activity_yield", lambda *a, **k: calls.append(a) or ask(*a, **k))
    for scope, who, want in (("company", "", 1), ("team", "B", 3)):
        calls.clear()
        ctx = _ctx(act, opps, reps, quotas)
        activity_view.show(ctx, scope, who)
        assert len(calls) == want, scope
        assert ctx.headlines.get("activity_reps_flagged_logging") == 1  # r3: 2 wins, nothing logged


def test_view_headlines_match_the_metrics(act, opps, reps, quotas, monkeypatch):
    import matplotlib

    matplotlib.use("Agg")
    from helpers.sections import activity_view

    ctx = _ctx(act, opps, reps, quotas)
    activity_view.show(ctx, "company")
    h = ctx.headlines
    assert h.get("activity_no_show_rate") == pytest.approx(0.4)  # 2 / (3 + 2), see test above
    assert h.get("activity_call_connect_rate") == pytest.approx(
        4 / 6
    )  # 13 weeks: c1 c2 c6 p1 of 6 with outcome
    assert h.get("activity_per_won_deal") == pytest.approx(18 / 4)  # 12 months: 18 activities, 4 wins
    assert h.get("activity_reps_short_of_calls") == 2  # r1 and r2 both short (gaps 1.0 and 1/6)
    assert h.get("activity_reps_flagged_logging") == 1  # r3: 2 wins, nothing logged
    assert all(f.definition for f in h.figures)
    for scope, who in (("team", "B"), ("rep", "r3")):  # a team and a rep with no activity at all
        activity_view.show(_ctx(act, opps, reps, quotas), scope, who)
    notes = []
    monkeypatch.setattr(activity_view, "note", lambda text, warn=False: notes.append(text))
    activity_view.show(_ctx(act, opps, reps, quotas), "team", "nonexistent")
    assert notes == ["No reps in team 'nonexistent' in the `reps` table."]


def _run(tmp_path, dataset, scope, who, name):
    import papermill as pm

    out = tmp_path / f"{name}.ipynb"
    summary = tmp_path / f"{name}.json"
    pm.execute_notebook(
        str(FIXTURE),
        str(out),
        kernel_name="python3",
        progress_bar=False,
        cwd=str(tmp_path),
        parameters={
            "dataset": str(dataset),
            "scope": scope,
            "who": who,
            "summary_path": str(summary),
            "report_mode": True,
        },
    )
    text = out.read_text()
    return text, json.loads(summary.read_text())


@pytest.mark.slow
def test_section_renders_at_every_scope(sample_dir, tmp_path):
    from helpers.data.dataset import load

    reps = load(sample_dir, tables=["reps"]).reps
    ae = reps[(reps["role"].astype("str") == "AE") & reps["end_date"].isna()]
    team, rep = str(ae["team"].iloc[0]), str(ae["rep_id"].iloc[0])
    for scope, who in (("company", ""), ("team", team), ("rep", rep)):
        text, summary = _run(tmp_path, sample_dir, scope, who, scope)
        assert '"output_type": "error"' not in text
        assert "Activity volume" in text and "Benchmarks" in text and "association, not cause" in text
        figs = {f["key"]: f for f in summary["figures"]}
        for key in (
            "activity_per_rep_week",
            "activity_no_show_rate",
            "activity_call_connect_rate",
            "activity_per_won_deal",
            "activity_reps_flagged_logging",
        ):
            assert key in figs and figs[key]["definition"]
        assert 0 <= figs["activity_no_show_rate"]["value"] <= 1


@pytest.mark.slow
def test_section_says_what_it_needs_without_activities(sample_dir, tmp_path):
    data = tmp_path / "no_activities"
    shutil.copytree(sample_dir, data)
    for f in data.glob("activities.*"):
        f.unlink()
    text, summary = _run(tmp_path, data, "company", "", "none")
    assert "The activity tracker needs the `activities` table" in text
    assert not [f for f in summary["figures"] if f["key"].startswith("activity_")]


def test_benchmark_counts_ae_activity_only(act, opps, reps, quotas):
    # an SDR (role SDR, owns no opportunity) makes 10 calls and holds 3 meetings in October: the AE funnel
    # leaves them out, so r1 still needs 2 opportunities x 7 AE calls / 6 opportunities = 7/3 calls a month
    # (counting the SDR's calls would give 2 x 17/6 = 17/3 — the defect)
    sdr = pd.DataFrame(
        {
            "activity_id": [f"z{i}" for i in range(13)],
            "owner": "sdr1",
            "type": ["call"] * 10 + ["meeting"] * 3,
            "occurred_at": pd.to_datetime(["2026-10-05 09:00"] * 13).astype("datetime64[us]"),
            "opportunity_id": None,
            "outcome": ["connected"] * 10 + ["held"] * 3,
            "duration_minutes": np.nan,
        }
    ).astype({c: "str" for c in ("activity_id", "owner", "type", "opportunity_id", "outcome")})
    both = pd.concat([act, sdr], ignore_index=True)
    with_sdr = pd.concat(
        [
            reps,
            pd.DataFrame(
                {
                    "rep_id": ["sdr1"],
                    "team": ["SDR"],
                    "role": ["SDR"],
                    "hire_date": pd.to_datetime(["2024-01-01"]),
                }
            ),
        ],
        ignore_index=True,
    )
    mq = A.monthly_quota(quotas, AS_OF)
    for r in (with_sdr, None):  # by role, or (no reps table) by who owns opportunities
        needed, rates = Q.benchmark_needs(both, opps, mq, AS_OF, months=12, reps=r)
        assert rates["calls_per_opp"] == pytest.approx(7 / 6)
        assert needed.loc["r1", ["calls", "meetings", "demos"]].tolist() == pytest.approx(
            [7 / 3, 2 / 3, 1 / 3]
        )


def test_rep_volume_leaves_out_reps_who_left_before_the_window(act, reps):
    # r4 (team A) left on 10-21, before the week 10-25..10-31, and logged one call in the prior week:
    # not in the table, and team A's median stays the median of r1 8 and r2 9 = 8.5 (with r4 at 0: 8)
    gone = pd.DataFrame(
        {
            "activity_id": ["g1"],
            "owner": ["r4"],
            "type": ["call"],
            "occurred_at": pd.to_datetime(["2026-10-20 09:00"]).astype("datetime64[us]"),
            "opportunity_id": [None],
            "outcome": ["connected"],
            "duration_minutes": [np.nan],
        }
    )
    both = pd.concat(
        [act, gone.astype({c: "str" for c in ("activity_id", "owner", "type", "opportunity_id", "outcome")})],
        ignore_index=True,
    )
    r = pd.concat(
        [
            reps,
            pd.DataFrame(
                {
                    "rep_id": ["r4"],
                    "team": ["A"],
                    "role": ["AE"],
                    "hire_date": pd.to_datetime(["2024-01-01"]),
                    "end_date": pd.to_datetime(["2026-10-21"]),
                }
            ),
        ],
        ignore_index=True,
    )
    v = A.rep_volume(both, AS_OF, weeks=1, reps=r).set_index("rep")
    assert "r4" not in v.index
    assert v.loc["r1", "team_median"] == 8.5


def _shown(monkeypatch):
    """The notes, tables (by caption) and chart titles the activity section shows."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from helpers.sections import activity_view

    seen = {"notes": [], "tables": {}, "charts": []}
    monkeypatch.setattr(activity_view, "note", lambda text, warn=False: seen["notes"].append(text))
    monkeypatch.setattr(
        activity_view, "fold_table", lambda df, caption="", **kw: seen["tables"].__setitem__(caption, df)
    )

    def finish(fig, ax, title, *a, **k):
        seen["charts"].append(title)
        plt.close(fig)

    monkeypatch.setattr(activity_view.plots, "finish", finish)
    return activity_view, seen


def test_a_reps_yield_is_compared_with_the_team_and_the_company(act, opps, reps, quotas, monkeypatch):
    """12 months to 2026-10-31: r2 logged 9 activities, created o3 and won it (9.0 and 9.0); team A (r1 + r2)
    18 activities, created o1 o2 o3 o6 = 4, won o1 o3 = 2 (4.5 and 9.0); the company 18 activities, 6 created,
    4 won (3.0 and 4.5). Before, the rep's pack showed "All reps" equal to the rep's own row."""
    view, seen = _shown(monkeypatch)
    ctx = _ctx(act, opps, reps, quotas)
    view.show(ctx, "rep", "r2")
    y = next(df for cap, df in seen["tables"].items() if cap.startswith("Activities per opportunity created"))
    y = y.set_index("rep")
    assert y.index.tolist() == ["r2", "Team A (all its reps)", "Company (all reps)"]
    assert y[["activities", "opps_created", "deals_won"]].values.tolist() == [
        [9, 1, 1],
        [18, 4, 2],
        [18, 6, 4],
    ]
    assert y["activities_per_opp_created"].tolist() == pytest.approx([9.0, 4.5, 3.0])
    assert y["activities_per_won_deal"].tolist() == pytest.approx([9.0, 9.0, 4.5])
    assert ctx.headlines.get("activity_per_won_deal") == pytest.approx(9.0)  # the rep's own, as before


def test_a_new_hire_without_connected_calls_gets_a_sentence_not_empty_charts(
    act, opps, reps, quotas, monkeypatch
):
    view, seen = _shown(monkeypatch)
    new = pd.DataFrame(
        [("n1", "r4", "call", "2026-10-27 10:00", None, "no_answer", None)] * 2, columns=act.columns
    ).assign(activity_id=["n1", "n2"])
    new["occurred_at"] = pd.to_datetime(new["occurred_at"]).astype("datetime64[us]")
    act = pd.concat([act, new.astype(act.dtypes.to_dict())], ignore_index=True)
    reps = pd.concat(
        [reps, pd.DataFrame({"rep_id": ["r4"], "team": ["B"], "role": ["AE"]})], ignore_index=True
    )
    reps["hire_date"] = reps["hire_date"].fillna(pd.Timestamp("2026-10-01"))
    view.show(_ctx(act, opps, reps, quotas), "rep", "r4")
    assert "None of the 2 attempts logged in the 13 weeks connected or got a reply yet" in " ".join(
        seen["notes"]
    )
    assert "Hit rate by day of week" not in seen["charts"]  # all rates 0: an empty −4%…+4% axis before
    assert "Call connect rate by hour of day" not in seen["charts"]
    seen["notes"].clear()
    view.show(_ctx(act, opps, reps, quotas), "rep", "r3")  # nothing logged at all
    assert any("No calls, emails or social touches with an outcome logged yet" in n for n in seen["notes"])
    assert "No won deals" not in " ".join(seen["notes"]) and "nan" not in " ".join(seen["notes"])


@pytest.mark.parametrize("where", ["files", "postgres"])
def test_the_section_leaves_the_opportunities_where_they_live(where, sample_dir, request, monkeypatch):
    """A kernel that did not load the opportunities nor the quotas (``open_report(tables=["reps"])``)
    shows the same activity section as one that loaded them: every table, note, chart and headline figure, at
    company, team and rep scope, from files and from PostgreSQL; and so does a dataset built in memory
    from the loaded frames (the measures then run on in-memory tables)."""
    import ibis

    from helpers.data.dataset import Dataset, load
    from helpers.metrics.expr import beside
    from helpers.sections.context import ReportContext, open_report
    from helpers.sections.summary import Headlines

    if where == "postgres":
        request.getfixturevalue("pg_env")
        folder = request.getfixturevalue("pg_dataset")
    else:
        folder = sample_dir
    loaded = open_report(str(folder), show_header=False)
    left = open_report(str(folder), tables=["reps"], show_header=False)  # the quotas left there too
    assert {"opportunities", "quotas"} <= set(loaded.ds.tables) and sorted(left.ds.tables) == ["reps"]
    for ctx in (loaded, left):  # the log and the deals on one connection: joined there, nothing sent
        log, deals = ctx.activities, ctx.source("opportunities")
        assert ibis.get_backend(log) is ibis.get_backend(deals) is ctx.eng.backend
        closed = A.closed_deals(deals, *trailing_window(AS_OF, 12))
        assert beside(A.normalized(log), closed) is closed
    contexts = {"loaded": loaded, "left out": left}
    if where == "files":
        frames = {**loaded.ds.tables, "activities": load(str(folder), tables=["activities"]).activities}
        ds = Dataset(Path("."), loaded.ds.config, frames)
        contexts["in memory"] = ReportContext(ds, loaded.as_of, loaded.period, loaded.cal, Headlines("t"))
    reps = loaded.ds.reps
    team = str(reps["team"].dropna().iloc[0])
    members = reps.loc[reps["team"] == team, "rep_id"].astype("str")
    owners = loaded.ds.opportunities["owner"]
    rep = str(owners[owners.isin(members)].value_counts().index[0])  # the team's busiest seller
    view, seen = _shown(monkeypatch)
    for scope, who in (("company", ""), ("team", team), ("rep", rep)):
        shown = {}
        for name, ctx in contexts.items():
            ctx.headlines.figures.clear()
            for v in seen.values():
                v.clear()
            view.show(ctx, scope, who)
            shown[name] = {
                "notes": list(seen["notes"]),
                "charts": list(seen["charts"]),
                "tables": dict(seen["tables"]),
                "figures": [(f.key, repr(f.value)) for f in ctx.headlines.figures],
            }
        want = shown["loaded"]
        assert len(want["tables"]) >= 8 and len(want["figures"]) >= 8, scope
        for name, got in shown.items():
            assert got["notes"] == want["notes"], (scope, name)
            assert got["charts"] == want["charts"], (scope, name)
            assert got["figures"] == want["figures"], (scope, name)
            assert list(got["tables"]) == list(want["tables"]), (scope, name)
            for caption, df in want["tables"].items():
                pd.testing.assert_frame_equal(got["tables"][caption], df, obj=f"{scope} {name} {caption}")
