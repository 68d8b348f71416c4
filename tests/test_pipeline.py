"""Pipeline health metrics pinned on a hand-built dataset with a short, known history.

The dataset (as of Thu 2026-10-15; reps r1, r2 in team A, r3 in team B; quota 2/day for r1 and
1/day for r2 and r3 in every month of 2026):

| deal | owner | story | now |
|---|---|---|---|
| O1 | r1 | 07-01 Prospecting 80 close 10-20; 09-15 Proposal; 09-20 close→10-25; 10-05 Negotiation 100; 10-10 close→11-15 | open Neg 100, CRM p 0.6, Commit |
| O2 | r1 | 08-01 Qualification 50 close 10-31; 10-08 Closed Won 45 | won 45 on 10-08 |
| O3 | r2 | 10-03 Prospecting 30 close 12-01 | open, no next step, no activity |
| O4 | r2 | 06-01 Prospecting 40 close 09-30; 06-20 Proposal; 09-01 close→2027-01-20; 10-12 close→12-15 | open Proposal 40, p 0.4, Best Case |
| O5 | r3 | 05-01 Qualification 60 close 11-30; 10-07 close→2027-02-28 | open Qual 60, Commit |
| O6 | r3 | 09-10 Prospecting 20 close 12-20; 10-09 Closed Lost | lost 20 |
| O7 | r3 | 10-05 Proposal 10 close 10-31; 10-14 Closed Won | won 10 on 10-14 |
| O8 | r1 | 03-01 Prospecting 70 close 08-20; 04-01 Proposal; 05-01 Negotiation; 08-20 Closed Won | won 70 |
| O9 | r2 | 04-01 Prospecting 25 close 07-15; 05-01 Qualification; 07-15 Closed Lost | lost 25 |
| O10 | r1 | no history; created 01-10 | open Qual 200, close 09-30 (past due), p 0.3 |
| O11 | r2 | no history; created 2025-12-01 | won 1000 on 2026-01-20 |
| O12 | r3 | 02-01 Qualification 35 close 04-15; 03-01 Proposal; 04-15 Closed Lost | lost 35 |
"""

from __future__ import annotations

import math
from types import SimpleNamespace

import movement_reference as mv
import pandas as pd
import pytest

from helpers.data.calendar import FiscalCalendar
from helpers.data.config import parse_config
from helpers.metrics import pipeline as pl
from helpers.metrics import registry
from helpers.metrics.registry import Fig
from helpers.sections import pipeline_view as pv

AS_OF = pd.Timestamp("2026-10-15")
T = pd.Timestamp
NaT = pd.NaT


def make_config(fy_start: int = 1):
    return parse_config(
        {
            "name": "hand",
            "fiscal_year_start_month": fy_start,
            "stages": [
                {"name": "Prospecting", "probability": 0.1},
                {"name": "Qualification", "probability": 0.2},
                {"name": "Proposal", "probability": 0.5},
                {"name": "Negotiation", "probability": 0.8},
                {"name": "Closed Won", "probability": 1.0},
                {"name": "Closed Lost", "probability": 0.0},
            ],
            "won_stages": ["Closed Won"],
            "lost_stages": ["Closed Lost"],
        }
    )


def make_opps() -> pd.DataFrame:
    rows = [
        # id, owner, created, close, stage, amount, closed, won, prob, fcat, next_step, last_activity, source
        (
            "O1",
            "r1",
            "2026-07-01",
            "2026-11-15",
            "Negotiation",
            100,
            False,
            False,
            0.6,
            "Commit",
            "Exec meeting",
            "2026-10-14",
            "Inbound",
        ),
        (
            "O2",
            "r1",
            "2026-08-01",
            "2026-10-08",
            "Closed Won",
            45,
            True,
            True,
            1.0,
            "Closed",
            None,
            "2026-10-08",
            "Inbound",
        ),
        (
            "O3",
            "r2",
            "2026-10-03",
            "2026-12-01",
            "Prospecting",
            30,
            False,
            False,
            None,
            "Pipeline",
            None,
            None,
            "Outbound",
        ),
        (
            "O4",
            "r2",
            "2026-06-01",
            "2026-12-15",
            "Proposal",
            40,
            False,
            False,
            0.4,
            "Best Case",
            "Legal review",
            "2026-09-01",
            "Partner",
        ),
        (
            "O5",
            "r3",
            "2026-05-01",
            "2027-02-28",
            "Qualification",
            60,
            False,
            False,
            None,
            "Commit",
            "Follow up",
            "2026-10-10",
            "Inbound",
        ),
        (
            "O6",
            "r3",
            "2026-09-10",
            "2026-10-09",
            "Closed Lost",
            20,
            True,
            False,
            0.0,
            "Omitted",
            None,
            None,
            "Outbound",
        ),
        (
            "O7",
            "r3",
            "2026-10-05",
            "2026-10-14",
            "Closed Won",
            10,
            True,
            True,
            1.0,
            "Closed",
            None,
            None,
            "Inbound",
        ),
        (
            "O8",
            "r1",
            "2026-03-01",
            "2026-08-20",
            "Closed Won",
            70,
            True,
            True,
            1.0,
            "Closed",
            None,
            None,
            "Partner",
        ),
        (
            "O9",
            "r2",
            "2026-04-01",
            "2026-07-15",
            "Closed Lost",
            25,
            True,
            False,
            0.0,
            "Omitted",
            None,
            None,
            "Inbound",
        ),
        (
            "O10",
            "r1",
            "2026-01-10",
            "2026-09-30",
            "Qualification",
            200,
            False,
            False,
            0.3,
            "Pipeline",
            "Send proposal",
            "2026-08-01",
            "Outbound",
        ),
        (
            "O11",
            "r2",
            "2025-12-01",
            "2026-01-20",
            "Closed Won",
            1000,
            True,
            True,
            1.0,
            "Closed",
            None,
            None,
            "Inbound",
        ),
        (
            "O12",
            "r3",
            "2026-02-01",
            "2026-04-15",
            "Closed Lost",
            35,
            True,
            False,
            0.0,
            "Omitted",
            None,
            None,
            "Partner",
        ),
    ]
    cols = [
        "opportunity_id",
        "owner",
        "created_date",
        "close_date",
        "stage",
        "amount",
        "is_closed",
        "is_won",
        "probability",
        "forecast_category",
        "next_step",
        "last_activity_date",
        "source",
    ]
    df = pd.DataFrame(rows, columns=cols)
    for c in ("created_date", "close_date", "last_activity_date"):
        df[c] = pd.to_datetime(df[c]).astype("datetime64[us]")
    for c in ("is_closed", "is_won"):
        df[c] = df[c].astype("boolean")
    df["amount"] = df["amount"].astype("float64")
    df["probability"] = df["probability"].astype("float64")
    for c in ("opportunity_id", "owner", "stage", "forecast_category", "next_step", "source"):
        df[c] = df[c].astype("str")
    return df


def make_history() -> pd.DataFrame:
    rows = [
        ("O1", "2026-07-01", "Prospecting", 80, "2026-10-20"),
        ("O1", "2026-09-15", "Proposal", None, None),
        ("O1", "2026-09-20", "Proposal", None, "2026-10-25"),
        ("O1", "2026-10-05", "Negotiation", 100, None),
        ("O1", "2026-10-10", "Negotiation", None, "2026-11-15"),
        ("O2", "2026-08-01", "Qualification", 50, "2026-10-31"),
        ("O2", "2026-10-08", "Closed Won", 45, "2026-10-08"),
        ("O3", "2026-10-03", "Prospecting", 30, "2026-12-01"),
        ("O4", "2026-06-01", "Prospecting", 40, "2026-09-30"),
        ("O4", "2026-06-20", "Proposal", None, None),
        ("O4", "2026-09-01", "Proposal", None, "2027-01-20"),
        ("O4", "2026-10-12", "Proposal", None, "2026-12-15"),
        ("O5", "2026-05-01", "Qualification", 60, "2026-11-30"),
        ("O5", "2026-10-07", "Qualification", None, "2027-02-28"),
        ("O6", "2026-09-10", "Prospecting", 20, "2026-12-20"),
        ("O6", "2026-10-09", "Closed Lost", None, "2026-10-09"),
        ("O7", "2026-10-05", "Proposal", 10, "2026-10-31"),
        ("O7", "2026-10-14", "Closed Won", None, "2026-10-14"),
        ("O8", "2026-03-01", "Prospecting", 70, "2026-08-20"),
        ("O8", "2026-04-01", "Proposal", None, None),
        ("O8", "2026-05-01", "Negotiation", None, None),
        ("O8", "2026-08-20", "Closed Won", None, None),
        ("O9", "2026-04-01", "Prospecting", 25, "2026-07-15"),
        ("O9", "2026-05-01", "Qualification", None, None),
        ("O9", "2026-07-15", "Closed Lost", None, None),
        ("O12", "2026-02-01", "Qualification", 35, "2026-04-15"),
        ("O12", "2026-03-01", "Proposal", None, None),
        ("O12", "2026-04-15", "Closed Lost", None, None),
    ]
    h = pd.DataFrame(rows, columns=["opportunity_id", "changed_at", "stage", "amount", "close_date"])
    h["changed_at"] = pd.to_datetime(h["changed_at"]).astype("datetime64[us]") + pd.Timedelta(hours=10)
    h["close_date"] = pd.to_datetime(h["close_date"]).astype("datetime64[us]")
    h["amount"] = h["amount"].astype("float64")
    for c in ("opportunity_id", "stage"):
        h[c] = h[c].astype("str")
    return h


def make_reps() -> pd.DataFrame:
    return pd.DataFrame({"rep_id": ["r1", "r2", "r3"], "team": ["A", "A", "B"]}).astype("str")


def make_quotas() -> pd.DataFrame:
    """Monthly quotas for 2026: r1 2 per day, r2 and r3 1 per day (so any window's plan = days × rate)."""
    months = pd.date_range("2026-01-01", "2026-12-01", freq="MS")
    rows = []
    for rep, rate in (("r1", 2), ("r2", 1), ("r3", 1)):
        for m in months:
            rows.append((rep, m, float(rate * m.days_in_month)))
    q = pd.DataFrame(rows, columns=["rep_id", "period_start", "quota"])
    q["period_start"] = q["period_start"].astype("datetime64[us]")
    q["rep_id"] = q["rep_id"].astype("str")
    return q


@pytest.fixture
def opps():
    return make_opps()


@pytest.fixture
def hist():
    return make_history()


@pytest.fixture
def cfg():
    return make_config()


# --------------------------------------------------------------------------------------------------
# windows, bookings, plan
# --------------------------------------------------------------------------------------------------
def test_bookings_by_window_calendar_year(opps):
    w = FiscalCalendar(1).windows(AS_OF)
    # YTD 2026-01-01..10-15: O11 1000 + O8 70 + O2 45 + O7 10 = 1125; QTD/MTD 10-01..: 45 + 10 = 55;
    # WTD Mon 10-12..Thu 10-15: O7 10
    got = {k: pl.bookings(opps, v.start, v.as_of) for k, v in w.items()}
    assert got == {"YTD": 1125.0, "QTD": 55.0, "MTD": 55.0, "WTD": 10.0}


def test_bookings_by_window_february_fiscal_year(opps):
    w = FiscalCalendar(2).windows(AS_OF)
    # FY2027 starts 2026-02-01, so O11 (won 2026-01-20) falls in FY2026: YTD = 70 + 45 + 10 = 125.
    # Quarters Feb-Apr, May-Jul, Aug-Oct: QTD 2026-08-01..10-15 holds O8 (08-20) too: 125.
    assert (w["YTD"].start, w["YTD"].end) == (T("2026-02-01"), T("2027-01-31"))
    assert (w["QTD"].start, w["QTD"].end) == (T("2026-08-01"), T("2026-10-31"))
    assert pl.bookings(opps, w["YTD"].start, w["YTD"].as_of) == 125.0
    assert pl.bookings(opps, w["QTD"].start, w["QTD"].as_of) == 125.0
    # a deal won on the window's first day counts, one won the day before does not
    assert pl.bookings(opps, T("2026-08-20"), T("2026-08-20")) == 70.0
    assert pl.bookings(opps, T("2026-08-21"), T("2026-10-07")) == 0.0


def test_plan_prorates_by_days():
    q = make_quotas()
    # r1: 2/day; 2026-10-10..2026-11-05 = 22 October days + 5 November days = 27 days -> 54
    plan = pl.plan_by_rep(q, "2026-10-10", "2026-11-05")
    assert plan["r1"] == pytest.approx(54.0)
    assert plan["r2"] == pytest.approx(27.0)
    # Jan 2027 has no quota rows: the February fiscal year 2026-02-01..2027-01-31 plans only 334 days
    assert pl.plan_by_rep(q, "2026-02-01", "2027-01-31").sum() == pytest.approx(4 * 334)


def test_bookings_vs_plan_company_and_rep(opps):
    w = FiscalCalendar(1).windows(AS_OF)
    q = make_quotas()
    t = pl.bookings_vs_plan(opps, q, w).set_index("window")
    qtd = t.loc["QTD"]
    # QTD 10-01..12-31 = 92 days, 15 elapsed; company rate 4/day: plan 368, plan to date 60, bookings 55
    assert qtd["plan"] == pytest.approx(368)
    assert qtd["plan_to_date"] == pytest.approx(60)
    assert qtd["attainment"] == pytest.approx(55 / 368)
    assert qtd["attainment_to_date"] == pytest.approx(55 / 60)
    assert qtd["pace"] == pytest.approx(55 / 15 * 92)
    assert qtd["pace_attainment"] == pytest.approx(55 / 15 * 92 / 368)
    # YTD: 365 days × 4 = 1460 plan, 1125 booked
    assert t.loc["YTD", "plan"] == pytest.approx(1460)
    assert t.loc["YTD", "still_to_close"] == pytest.approx(1460 - 1125)
    # "gap" (plan − bookings, negative when ahead) is now still_to_close = max(plan − bookings, 0)
    assert "gap" not in t.columns
    by_rep = pl.bookings_vs_plan(opps, q, w, by="rep")
    r = by_rep[by_rep["window"] == "QTD"].set_index("rep")
    assert r.loc["r1", "bookings"] == 45 and r.loc["r1", "plan_to_date"] == pytest.approx(30)
    assert r.loc["r2", "bookings"] == 0 and r.loc["r3", "bookings"] == 10
    share = pl.reps_at_quota(by_rep).set_index("window")
    # QTD on pace: r1 45 ≥ 30 yes; r2 0 ≥ 15 no; r3 10 ≥ 15 no -> 1 of 3; none at full quarter plan
    assert share.loc["QTD", "share_on_pace"] == pytest.approx(1 / 3)
    assert share.loc["QTD", "share_at_quota"] == 0
    by_team = pl.bookings_vs_plan(opps, q, w, by="team", reps=make_reps())
    a = by_team[(by_team["window"] == "QTD")].set_index("team")
    assert a.loc["A", "plan"] == pytest.approx(3 * 92) and a.loc["A", "bookings"] == 45


def test_no_quotas_means_attainment_unavailable(opps):
    w = FiscalCalendar(1).windows(AS_OF)
    t = pl.bookings_vs_plan(opps, None, w).set_index("window")
    assert math.isnan(t.loc["QTD", "plan"]) and math.isnan(t.loc["QTD", "attainment"])
    # a company target of 3650 for FY2026 gives 10/day: QTD plan 920
    plan = {k: pl.plan_from_targets({2026: 3650.0}, FiscalCalendar(1), v.start, v.end) for k, v in w.items()}
    t = pl.bookings_vs_plan(opps, None, w, company_plan=plan).set_index("window")
    assert t.loc["QTD", "plan"] == pytest.approx(920)


# --------------------------------------------------------------------------------------------------
# pipeline, weighting, forecast, coverage, created
# --------------------------------------------------------------------------------------------------
def test_weighted_pipeline_crm_and_stage_default(opps, cfg):
    w = pl.weighted_pipeline(opps, cfg)
    # open: O1 100×0.6 + O3 30×(default 0.1) + O4 40×0.4 + O5 60×(default 0.2) + O10 200×0.3 = 151
    assert w["amount"].sum() == 430
    assert w["weighted_crm"].sum() == pytest.approx(151)


def test_stage_win_rates_and_historical_weighting(opps, hist, cfg):
    reached = mv.stages_reached(hist, opps, cfg)
    rates = mv.stage_win_rates(reached, cfg).set_index("stage")["win_rate"]
    # closed deals (furthest stage; won = beyond all): O2 O7 O8 O11 won, O6 (Prosp) O9 (Qual) O12 (Prop) lost
    # Prospecting 4/7, Qualification 4/6, Proposal 4/5, Negotiation 4/4
    assert rates.to_dict() == pytest.approx(
        {"Prospecting": 4 / 7, "Qualification": 4 / 6, "Proposal": 0.8, "Negotiation": 1.0}
    )
    by_stage = pl.pipeline_by_stage(opps, cfg, rates)
    # O1 100×1 + O3 30×4/7 + O4 40×0.8 + O5 60×4/6 + O10 200×4/6
    assert by_stage["weighted_hist"].sum() == pytest.approx(100 + 30 * 4 / 7 + 32 + 40 + 200 * 4 / 6)
    assert list(by_stage["stage"]) == ["Prospecting", "Qualification", "Proposal", "Negotiation"]


def test_forecast_rollup_is_cumulative(opps):
    f = pl.forecast_rollup(opps, "2026-10-01", "2026-12-31").set_index("category")["cumulative"]
    # closed won 45 + 10 = 55; + Commit O1 100 = 155 (O5 closes in 2027); + Best case O4 40 = 195;
    # + Pipeline O3 30 = 225 (O10 is past due from September, outside the window)
    assert f.to_dict() == {"Closed won": 55, "Commit": 155, "Best case": 195, "Pipeline": 225}


def test_coverage_per_rep_and_team(opps):
    q = make_quotas()
    w = FiscalCalendar(1).windows(AS_OF)["QTD"]
    c = pl.coverage(opps, q, w, by="rep", threshold=0.75).set_index("rep")
    # r1: plan 184, booked 45, remaining 139, open closing in Q4: O1 100 -> 0.719 (< 0.75 flagged)
    assert c.loc["r1", "remaining"] == 139 and c.loc["r1", "coverage"] == pytest.approx(100 / 139)
    assert c.loc["r1", "under_threshold"]
    # r2: remaining 92, open O3 30 + O4 40 = 70 -> 0.761 (not flagged); r3: O5 closes in 2027 -> 0
    assert c.loc["r2", "coverage"] == pytest.approx(70 / 92) and not c.loc["r2", "under_threshold"]
    assert c.loc["r3", "coverage"] == 0
    t = pl.coverage(opps, q, w, by="team", reps=make_reps()).set_index("team")
    assert t.loc["A", "coverage"] == pytest.approx(170 / (276 - 45))
    assert pl.coverage_threshold(0.25) == 4.0 and pl.coverage_threshold(None) == 3.0


def test_pipeline_created_counts_closed_deals_too(opps):
    c = pl.pipeline_created(opps, "2026-09-28", "2026-10-11", freq="week")
    # week of Mon 09-28: O3 (created Sat 10-03, Outbound); week of 10-05: O7 (created and already won, Inbound)
    assert c.to_dict("records") == [
        {"period": T("2026-09-28"), "source": "Outbound", "deals": 1, "amount": 30.0},
        {"period": T("2026-10-05"), "source": "Inbound", "deals": 1, "amount": 10.0},
    ]


# --------------------------------------------------------------------------------------------------
# history: replay, same day, forecast accuracy, waterfall, slips, conversion, stalled, calibration
# --------------------------------------------------------------------------------------------------
def test_replay_state_at_past_dates(opps, hist, cfg):
    s = mv.replay(hist, opps, cfg, ["2026-09-30", "2026-10-15"]).set_index(
        ["snapshot_date", "opportunity_id"]
    )
    o1 = s.loc[(T("2026-09-30"), "O1")]
    # on 09-30 O1 was in Proposal with amount 80 (carried forward) and close date 10-25
    assert (o1["stage"], o1["amount"], o1["close_date"]) == ("Proposal", 80, T("2026-10-25"))
    assert s.loc[(T("2026-10-15"), "O2"), "is_won"]
    assert (T("2026-09-30"), "O3") not in s.index  # created 10-03
    # O10 has no history: open in its current stage since created
    assert s.loc[(T("2026-09-30"), "O10"), "stage"] == "Qualification"


def test_waterfall_balances_with_known_terms(opps, hist, cfg):
    d = mv.waterfall_deals(hist, opps, cfg, "2026-10-01", "2026-12-31", as_of=AS_OF)
    w = mv.waterfall(d).set_index("term")["amount"]
    # opening (09-30, closing in Q4): O1 80 + O2 50 + O5 60 + O6 20 = 210
    # created: O3 30 + O7 10; pulled in: O4 40 (2027-01-20 -> 12-15); pushed out: O5 60 (-> 2027-02-28)
    # increased: O1 80 -> 100 = 20; decreased: O2 50 -> 45 = 5; won: O2 45 + O7 10; lost: O6 20
    # closing: O1 100 + O3 30 + O4 40 = 170 = 210 + 40 + 40 - 60 + 20 - 5 - 55 - 20
    assert w.to_dict() == {
        "opening": 210,
        "created": 40,
        "pulled_in": 40,
        "pushed_out": -60,
        "increased": 20,
        "decreased": -5,
        "won": -55,
        "lost": -20,
        "closing": 170,
        "check": 0,
    }
    n = mv.waterfall(d).set_index("term")["deals"]
    assert (n["opening"], n["created"], n["won"], n["closing"]) == (4, 2, 2, 3)
    # per deal too: closing = opening + created + pulled_in - pushed_out + increased - decreased - won - lost
    per = (
        d["opening"]
        + d["created"]
        + d["pulled_in"]
        - d["pushed_out"]
        + d["increased"]
        - d["decreased"]
        - d["won"]
        - d["lost"]
        - d["closing"]
    )
    assert per.abs().max() == 0


def test_slipped_deals(opps, hist, cfg):
    s = mv.slipped_deals(hist, opps, cfg, "2026-09-01", AS_OF)
    # O1 pushed twice (10-20 -> 10-25 -> 11-15: 5 + 21 = 26 days); O4 once on 09-01 by 112 days (its pull-in
    # on 10-12 is not a slip); O5 once by 90 days (11-30 -> 2027-02-28). Won deals' early closes are not slips.
    got = s.set_index("opportunity_id")[["times_pushed", "days_pushed"]].to_dict("index")
    assert got == {
        "O1": {"times_pushed": 2, "days_pushed": 26},
        "O4": {"times_pushed": 1, "days_pushed": 112},
        "O5": {"times_pushed": 1, "days_pushed": 90},
    }
    assert list(s["opportunity_id"]) == ["O1", "O4", "O5"]
    assert s.set_index("opportunity_id").loc["O1", "original_close_date"] == T("2026-10-20")


def test_stage_conversion_any_stage_and_strict(opps, hist, cfg):
    reached = mv.stages_reached(hist, opps, cfg)
    anyv = mv.stage_conversion(reached, cfg, "any").set_index("stage")
    # furthest stage: O3 O6 Prosp; O5 O9 O10 Qual; O4 O12 Prop; O1 Neg; O2 O7 O8 O11 won
    assert anyv["reached"].to_dict() == {
        "Prospecting": 12,
        "Qualification": 10,
        "Proposal": 7,
        "Negotiation": 5,
    }
    assert anyv["converted"].to_dict() == {
        "Prospecting": 10,
        "Qualification": 7,
        "Proposal": 5,
        "Negotiation": 4,
    }
    assert anyv["lost_here"].to_dict() == {
        "Prospecting": 1,
        "Qualification": 1,
        "Proposal": 1,
        "Negotiation": 0,
    }
    assert anyv["open_here"].to_dict() == {
        "Prospecting": 1,
        "Qualification": 2,
        "Proposal": 1,
        "Negotiation": 1,
    }
    strict = mv.stage_conversion(reached, cfg, "strict").set_index("stage")
    # recorded in Prospecting: O1 O3 O4 O6 O8 O9 O11 (7), then in Qualification: O9 only -> 1/7
    # Qualification: O2 O5 O9 O10 O12 (5) -> Proposal O12 (1); Proposal: O1 O4 O7 O8 O12 (5) -> Negotiation O1 O8
    # Negotiation: O1 O8 -> won O8 (1/2)
    assert strict["reached"].to_dict() == {
        "Prospecting": 7,
        "Qualification": 5,
        "Proposal": 5,
        "Negotiation": 2,
    }
    assert strict["conversion"].to_dict() == pytest.approx(
        {"Prospecting": 1 / 7, "Qualification": 0.2, "Proposal": 0.4, "Negotiation": 0.5}
    )


def test_days_in_stage_and_stalled_flags(opps, hist, cfg):
    visits = mv.stage_visits(hist, opps, cfg, AS_OF)
    bench = mv.days_in_stage_benchmark(visits, cfg).set_index("stage")
    # won deals' completed stays: Prospecting O8 31, O11 50 -> p75 31 + 0.75×19 = 45.25
    # Qualification O2 68; Proposal O7 9, O8 30 -> 24.75; Negotiation O8 111
    assert bench["threshold_days"].to_dict() == pytest.approx(
        {"Prospecting": 45.25, "Qualification": 68, "Proposal": 24.75, "Negotiation": 111}
    )
    st = mv.stalled_deals(visits, opps, bench.reset_index())
    # current stays: O1 Neg 10 d, O3 Prosp 12 d: fine; O4 Proposal since 06-20 (117 d), O5 Qual since 05-01
    # (167 d), O10 Qual since 01-10 (278 d): stalled; largest first
    assert list(st["opportunity_id"]) == ["O10", "O5", "O4"]
    assert st["days_in_stage"].tolist() == [278, 167, 117]
    fixed = mv.stalled_deals(visits, opps, bench.reset_index(), fixed_days=150)
    assert list(fixed["opportunity_id"]) == ["O10", "O5"]


def test_pipeline_same_day_and_forecast_accuracy(opps, hist, cfg):
    same = mv.pipeline_same_day(hist, opps, cfg, FiscalCalendar(1), AS_OF, n_quarters=1).set_index("quarter")
    q3 = same.loc["FY2026 Q3"]
    # same day of Q3 = 07-15; open then closing in Q3: O4 40 (Proposal 0.5), O8 70 (Negotiation 0.8),
    # O10 200 (Qualification 0.2) = 310, weighted 20 + 56 + 40 = 116; Q3 finally booked O8 70
    assert q3["snapshot_date"] == T("2026-07-15")
    assert (q3["open_in_quarter"], q3["weighted"], q3["final_won"]) == (310, pytest.approx(116), 70)
    assert math.isnan(same.loc["FY2026 Q4", "final_won"])
    acc = mv.forecast_accuracy(hist, opps, cfg, "2026-07-01", "2026-09-30").set_index("snapshot_date")
    row = acc.loc[T("2026-07-15")]
    # forecast = won to date 0 + weighted 116; actual 70; error 46; |46| / 70
    assert (row["forecast"], row["actual"], row["error"]) == (pytest.approx(116), 70, pytest.approx(46))
    assert row["abs_pct_error"] == pytest.approx(46 / 70)


def test_probability_calibration(opps, hist, cfg):
    cal = mv.probability_calibration(hist, opps, cfg, ["2026-06-30", "2026-09-30"]).set_index("bucket")
    # open then and closed now: 06-30: O8 Neg 0.8 won, O9 Qual 0.2 lost; 09-30: O2 Qual 0.2 won, O6 Prosp 0.1 lost
    # buckets read as percent ranges (were pandas interval text "(0.1, 0.2]", "(-0.001, 0.1]")
    assert cal.loc["10–20%", "observations"] == 2 and cal.loc["10–20%", "actual"] == 0.5
    assert cal.loc["70–80%", "actual"] == 1.0
    assert cal.loc["0–10%", "observations"] == 1  # O6 Prospecting 0.1 (the lowest bucket includes 0)
    assert cal["observations"].sum() == 4


# --------------------------------------------------------------------------------------------------
# attention lists, efficiency
# --------------------------------------------------------------------------------------------------
def test_attention_lists(opps):
    top = pl.top_open_deals(opps, AS_OF, n=2)
    assert list(top["opportunity_id"]) == ["O10", "O1"]
    assert top.iloc[0]["age_days"] == 278  # 2026-01-10 -> 2026-10-15
    assert list(pl.no_next_step(opps, AS_OF)["opportunity_id"]) == ["O3"]
    assert list(pl.past_due(opps, AS_OF)["opportunity_id"]) == ["O10"]
    # no activity in 14 days: O10 (08-01, 75 d), O4 (09-01, 44 d), O3 (never); flagged in the one attention list
    att = pl.attention_deals(pl.deal_list(opps, AS_OF), AS_OF, no_activity_days=14)
    quiet = att[att["flags"].str.contains("no recent activity")]
    assert set(quiet["opportunity_id"]) == {"O10", "O4", "O3"}


def test_win_rate_and_velocity(opps):
    wr = pl.win_rate(opps, "2025-10-16", AS_OF)
    # closed in the year: won O2 45, O7 10, O8 70, O11 1000; lost O6 20, O9 25, O12 35
    assert wr["win_rate_count"] == pytest.approx(4 / 7)
    assert wr["win_rate_value"] == pytest.approx(1125 / 1205)
    v = pl.sales_velocity(opps, AS_OF, months=12)
    # 5 open × 4/7 × avg won 1125/4 = 281.25 ÷ avg cycle (68 + 9 + 172 + 50)/4 = 74.75 days
    assert v["open_opportunities"] == 5 and v["avg_cycle_days"] == pytest.approx(74.75)
    assert v["velocity_per_day"] == pytest.approx(5 * 4 / 7 * 281.25 / 74.75)


def test_deal_size_cycle_and_trend(opps):
    t = pl.deal_size_and_cycle(opps, FiscalCalendar(1), "2026-01-01", "2026-12-31", "quarter").set_index(
        "period"
    )
    # Q1: O11 1000 (50 d); Q3: O8 70 (172 d); Q4: O2 45 (68 d) + O7 10 (9 d) -> avg 27.5, 38.5 d
    assert t.loc["FY2026 Q4", "avg_deal_size"] == 27.5 and t.loc["FY2026 Q4", "avg_cycle_days"] == 38.5
    assert pl.trend_call([10, 10, 10, 12, 12, 12]) == "growing"
    assert pl.trend_call([10, 10, 10, 10.5, 10, 9.8]) == "flat"
    assert pl.trend_call([10, 10, 10, 8, 8, 8]) == "shrinking"
    assert pl.trend_call([1, 2]) == "not enough data"


def test_lead_funnel(opps):
    leads = pd.DataFrame(
        {
            "lead_id": ["L1", "L2", "L3", "L4"],
            "created_date": pd.to_datetime(["2026-09-01"] * 4).astype("datetime64[us]"),
            "source": ["Inbound", "Inbound", "Outbound", "Inbound"],
            "mql_date": pd.to_datetime(["2026-09-02", "2026-09-03", None, "2026-09-04"]).astype(
                "datetime64[us]"
            ),
            "sql_date": pd.to_datetime(["2026-09-05", None, "2026-09-10", "2026-09-06"]).astype(
                "datetime64[us]"
            ),
            "opportunity_id": ["O2", None, "O3", "O6"],
        }
    )
    f = pl.lead_funnel(leads, opps, "2026-09-01", "2026-09-30").set_index("source")
    # Inbound: MQL 3, SQL 2 (L1, L4) -> 2/3; SQL->won: L1's O2 won -> 1/2. Outbound: SQL 1 open -> 0
    assert f.loc["Inbound", "mql_to_sql"] == pytest.approx(2 / 3) and f.loc["Inbound", "sql_to_won"] == 0.5
    assert f.loc["Outbound", "sql_open"] == 1 and f.loc["Outbound", "sql_to_won"] == 0
    assert f.loc["All", "sql_to_won"] == pytest.approx(1 / 3)


def test_scope_owners():
    reps = make_reps()
    assert pl.scope_owners(reps, "company", "") is None
    assert pl.scope_owners(reps, "team", "A") == {"r1", "r2"}
    assert pl.scope_owners(reps, "rep", "r3") == {"r3"}
    with pytest.raises(ValueError, match="teams are"):
        pl.scope_owners(reps, "team", "Z")


def test_pipeline_by_close_period(opps, cfg):
    t = pl.pipeline_by_close_period(opps, cfg, FiscalCalendar(1), AS_OF)
    # O10 (09-30) is past due; Q4: O1 100 + O3 30 + O4 40; 2027 Q1: O5 60
    assert t[["close_period", "deals", "amount"]].to_dict("records") == [
        {"close_period": "Past due", "deals": 1, "amount": 200.0},
        {"close_period": "FY2026 Q4", "deals": 3, "amount": 170.0},
        {"close_period": "FY2027 Q1", "deals": 1, "amount": 60.0},
    ]


def test_cumulative_bookings_against_plan(opps):
    w = FiscalCalendar(1).windows(AS_OF)["QTD"]
    c = pl.cumulative_bookings(opps, make_quotas(), w).set_index("date")
    # plan 4/day from 10-01: 40 by 10-10, 368 by 12-31; bookings 45 on 10-08 and 10 on 10-14, none after as-of
    assert c.loc[T("2026-10-10"), "plan"] == pytest.approx(40)
    assert c.loc[T("2026-12-31"), "plan"] == pytest.approx(368)
    assert (c.loc[T("2026-10-07"), "bookings"], c.loc[T("2026-10-08"), "bookings"]) == (0, 45)
    assert c.loc[T("2026-10-15"), "bookings"] == 55 and pd.isna(c.loc[T("2026-10-16"), "bookings"])


def test_cumulative_bookings_without_quotas(opps):
    w = FiscalCalendar(1).windows(AS_OF)["QTD"]  # 2026-10-01 .. 2026-12-31: 92 days
    no_plan = pl.cumulative_bookings(opps, None, w).set_index("date")
    assert no_plan["plan"].isna().all() and no_plan.loc[T("2026-10-15"), "bookings"] == 55
    # a company plan of 920 for the quarter: 10 a day, 100 by 10-10, 920 by 12-31
    c = pl.cumulative_bookings(opps, None, w, company_plan=920).set_index("date")
    assert c.loc[T("2026-10-10"), "plan"] == pytest.approx(100) and c.loc[
        T("2026-12-31"), "plan"
    ] == pytest.approx(920)


def test_rewind_to_an_earlier_as_of(opps, hist, cfg):
    r = mv.rewind(opps, hist, cfg, "2026-09-30").set_index("opportunity_id")
    # O3 and O7 were created in October; O2 was open in Qualification at 50 closing 10-31; O6 open too
    assert "O3" not in r.index and "O7" not in r.index
    assert (r.loc["O2", "stage"], r.loc["O2", "amount"], bool(r.loc["O2", "is_closed"])) == (
        "Qualification",
        50,
        False,
    )
    assert not bool(r.loc["O6", "is_closed"]) and bool(r.loc["O8", "is_won"])
    # open pipeline on 09-30: O1 80 + O2 50 + O4 40 + O5 60 + O6 20 + O10 200 = 450
    assert pl.weighted_pipeline(r.reset_index(), cfg)["amount"].sum() == 450


def test_a_scope_with_no_deals_yet_has_no_stall_benchmark_and_no_calibration(opps, hist, cfg):
    # a new rep's scope: no history and no deals open at the snapshot dates -> no p75 threshold exists, so
    # nothing is flagged as stalled, and nothing can be calibrated: empty tables, no crash on empty columns
    visits = mv.stage_visits(hist, opps, cfg, AS_OF)
    bench = mv.days_in_stage_benchmark(visits.iloc[0:0], cfg)
    assert bench["threshold_days"].isna().all()
    assert mv.stalled_deals(visits, opps, bench).empty
    calib = mv.probability_calibration(hist, opps, cfg, [pd.Timestamp("2020-01-31")])  # before any deal
    assert calib.empty


def test_departed_rep_has_no_plan_row_and_no_by_rep_row(opps):
    # r9 left in May 2026: quota rows Jan..May only -> no plan in Q4, no row in the by-rep and coverage tables
    q = pd.concat(
        [
            make_quotas(),
            pd.DataFrame(
                {
                    "rep_id": "r9",
                    "period_start": pd.date_range("2026-01-01", periods=5, freq="MS"),
                    "period_end": pd.date_range("2026-01-31", periods=5, freq="ME"),
                    "quota": 31.0,
                    "metric": "bookings",
                }
            ),
        ],
        ignore_index=True,
    )
    w = FiscalCalendar(1).windows(AS_OF)
    assert "r9" not in pl.plan_by_rep(q, w["QTD"].start, w["QTD"].end).index
    assert pl.plan_by_rep(q, "2026-05-01", "2026-05-31")["r9"] == pytest.approx(31)
    by_rep = pl.bookings_vs_plan(opps, q, {"QTD": w["QTD"]}, by="rep")
    assert sorted(by_rep["rep"]) == ["r1", "r2", "r3"]
    assert sorted(pl.coverage(opps, q, w["QTD"], by="rep")["rep"]) == ["r1", "r2", "r3"]
    # r3: full-quarter plan 1/day × 92 = 92, booked 10 -> 82 still to close
    assert by_rep.set_index("rep").loc["r3", "still_to_close"] == pytest.approx(92 - 10)


def test_finished_quarter_is_not_under_threshold(opps):
    # as of 2026-12-31 (the last day of Q4): nothing can still close in Q4, so no rep is "under threshold"
    q = make_quotas()
    w = FiscalCalendar(1).windows(pd.Timestamp("2026-12-31"))["QTD"]
    c = pl.coverage(opps, q, w, by="rep", threshold=3.0)
    assert not c["under_threshold"].any()
    assert set(c["status"]) <= {"quarter closed", "quota met"}


def test_what_to_look_at_on_the_last_day_of_the_quarter():
    figs = {
        "coverage_threshold": Fig("coverage_threshold", 3.0),
        "days_left_qtd": Fig("days_left_qtd", 0),
        "bookings_qtd": Fig("bookings_qtd", 3_200_000.0),
        "attainment_qtd": Fig("attainment_qtd", 0.89),
        "pace_qtd": Fig("pace_qtd", 3_200_000.0),
        "pace_attainment_qtd": Fig("pace_attainment_qtd", 0.89),
        "plan_qtd": Fig("plan_qtd", 3_600_000.0),
        "coverage_next_quarter": Fig("coverage_next_quarter", 1.7, "FY2027 Q4"),
        "open_in_next_quarter": Fig("open_in_next_quarter", 7.8e6),
        "remaining_next_quarter": Fig("remaining_next_quarter", 4.6e6),
        "past_due_deals": Fig("past_due_deals", 1),
        "past_due_amount": Fig("past_due_amount", 5000.0),
        "no_next_step_deals": Fig("no_next_step_deals", 1),
        "reps_on_pace_qtd": Fig("reps_on_pace_qtd", 0.43),
    }
    pts = pv.look_at_points(
        figs, "USD", {"stalled": 1, "slipped": 2, "reps_under_threshold": 21, "coverage_label": "FY2027 Q4"}
    )
    assert "The quarter closed at $3.2M, 89% of plan." in pts
    assert "Only 43% of reps finished the quarter at quota." in pts  # not "on pace": the quarter is over
    assert not any("run rate" in p for p in pts)
    assert "21 reps have coverage under 3.0× for FY2027 Q4." in pts
    assert "1 open deal has no next step." in pts
    assert "1 open deal worth $5.0k has a close date in the past — update or close it." in pts
    assert "1 open deal is stalled (longer in its stage than 3 in 4 won deals)." in pts
    assert "2 deals had their close date pushed this quarter." in pts


def test_headline_definitions_fit_each_figure():
    """Figures that share a term share its definition; the others each have their own."""
    m = registry.metric
    assert m("open_deals").definition.startswith("count")
    for key in ("coverage_threshold", "open_in_qtd", "remaining_qtd", "avg_deal_size"):
        assert m(key).definition not in (
            m("coverage_qtd").definition,
            registry.glossary("deal_size_and_cycle"),
        )
    assert m("coverage_qtd").definition == m("coverage_next_quarter").definition
    assert "max(plan − bookings, 0)" in m("coverage_qtd").definition


def test_last_activity_when_no_activity_is_tied_to_these_deals():
    # the log has activity, none of it on these deals: the CRM's own last_activity_date stands, NaT elsewhere
    opps = pd.DataFrame(
        {
            "opportunity_id": pd.Series(["o1", "o2"], dtype="str"),
            "last_activity_date": pd.to_datetime(["2026-10-01", None]).astype("datetime64[us]"),
        }
    )
    act = pd.DataFrame(
        {
            "activity_id": ["a1", "a2"],
            "opportunity_id": pd.Series(["zz", "o2"], dtype="str"),
            "occurred_at": pd.to_datetime(["2026-10-05 10:00", "2026-10-07 16:30"]),
        }
    )
    got = pl.last_activity(opps, act.iloc[:1])
    assert got.tolist()[0] == pd.Timestamp("2026-10-01") and pd.isna(got.iloc[1])
    got = pl.last_activity(opps, act)  # o2's own activity, as a day
    assert got.tolist() == [pd.Timestamp("2026-10-01"), pd.Timestamp("2026-10-07")]


def test_usual_share_of_a_quarter_booked_by_this_day():
    # as of 2026-10-15: day 15 of Q4 (calendar quarters). The four quarters before: 2026 Q3 books 100 by day 15
    # (Jul 10) of 400; Q2 50 by day 15 (Apr 15, the day itself counts) of 200 (Apr 16 is day 16); Q1 nothing;
    # 2025 Q4 only a lost deal. Outside them (2025-09-30, 2026-10-02) and lost deals count nowhere.
    won = [("2026-07-10", 100.0), ("2026-09-30", 300.0), ("2026-04-15", 50.0), ("2026-04-16", 150.0)]
    won += [("2025-09-30", 999.0), ("2026-10-02", 70.0)]
    lost = [("2025-10-05", 1000.0), ("2026-07-01", 500.0)]
    rows = [(d, a, True, True) for d, a in won] + [(d, a, False, True) for d, a in lost]
    opps = pd.DataFrame(rows, columns=["close_date", "amount", "is_won", "is_closed"])
    opps["close_date"] = pd.to_datetime(opps["close_date"]).astype("datetime64[us]")
    opps.insert(0, "opportunity_id", [f"O{i}" for i in range(len(opps))])
    got = pl.usual_share_by_day(opps, FiscalCalendar(1), "2026-10-15")
    assert got == {"share": pytest.approx(150 / 600), "day": 15, "quarters": 2}
    # a quarter shorter than the day counts whole: on 2026-12-31 (day 92) Q1's 90 days hold all of it
    late = pd.concat(
        [opps, opps.iloc[[0]].assign(opportunity_id="Q1", close_date=pd.Timestamp("2026-03-31"))]
    )
    assert pl.usual_share_by_day(late, FiscalCalendar(1), "2026-12-31")["share"] == pytest.approx(1.0)
    # no bookings in those quarters: no share
    assert math.isnan(pl.usual_share_by_day(opps, FiscalCalendar(1), "2028-01-20")["share"])


def test_what_to_look_at_leads_with_the_usual_pace():
    figs = {
        "coverage_threshold": Fig("coverage_threshold", 3.0),
        "days_left_qtd": Fig("days_left_qtd", 62),
        "bookings_qtd": Fig("bookings_qtd", 568_100.0),
        "plan_qtd": Fig("plan_qtd", 4_564_700.0),
        "pace_qtd": Fig("pace_qtd", 1_742_173.0),
        "pace_attainment_qtd": Fig("pace_attainment_qtd", 0.38),
        "usual_share_qtd": Fig("usual_share_qtd", 0.2131),
        "pace_usual_qtd": Fig("pace_usual_qtd", 2_665_718.5),
        "pace_usual_attainment_qtd": Fig("pace_usual_attainment_qtd", 0.584),
    }
    pts = [str(p) for p in pv.look_at_points(figs, "USD")]
    assert (
        "At the usual pace of the last four quarters (21% of a quarter's bookings in by this day) the quarter "
        "lands at $2.7M, 58% of plan (short of plan); the straight-line run rate says $1.7M." in pts
    )
    assert not any(p.startswith("At the current run rate") for p in pts)
    # the reps on pace the same way: the usual pace leads, the straight line beside it
    figs |= {"reps_on_pace_qtd": Fig("reps_on_pace_qtd", 0.12), "reps_on_usual_pace_qtd": Fig("x", 0.31)}
    pts = [str(p) for p in pv.look_at_points(figs, "USD")]
    assert "Only 31% of reps are on the usual pace for their quarter quota (12% on the straight line)." in pts
    assert not any("are on pace" in p for p in pts)
    # the tiles show the landing the same way
    assert "pace_usual_attainment_qtd" in pv.headline_tiles(figs)
    assert "pace_attainment_qtd" not in pv.headline_tiles(figs)
    # without the usual pace (no bookings in the last four quarters): the straight line, as before
    del figs["pace_usual_attainment_qtd"], figs["reps_on_usual_pace_qtd"]
    pts = [str(p) for p in pv.look_at_points(figs, "USD")]
    assert "At the current run rate the quarter lands at $1.7M, 38% of plan (short of plan)." in pts
    assert "Only 12% of reps are on pace for their quarter quota." in pts
    assert "pace_attainment_qtd" in pv.headline_tiles(figs)


def test_share_of_reps_on_the_usual_pace():
    # 21.3% of a quarter is usually in by today: a rep lands at plan when bookings ÷ 0.213 ≥ plan
    by_rep = pd.DataFrame(
        {
            "rep": ["a", "b", "c", "d", "e"],
            "plan": [100.0, 100.0, 100.0, 0.0, 50.0],
            "plan_to_date": [30.0, 30.0, 30.0, 0.0, 15.0],
            "bookings": [21.3, 21.2, 35.0, 99.0, 10.0],
        }
    )
    # a: 21.3 ÷ 0.213 = 100 ≥ 100; b: 99.5 < 100; c: 164; d: no plan, not counted; e: 46.9 < 50
    assert pl.share_on_usual_pace(by_rep, 0.213) == pytest.approx(2 / 4)
    assert pl.reps_at_quota(by_rep.assign(window="QTD"))["share_on_pace"].iloc[0] == pytest.approx(1 / 4)
    assert math.isnan(pl.share_on_usual_pace(by_rep, math.nan))
    # with the open pipeline dated in the quarter: a (21.3 + 80 = 101.3 ≥ 100) still counts; c is on the usual
    # pace (164) but 35 + 60 = 95 < 100 even if every open deal closes; b, d and e as before
    left = pd.Series({"a": 80.0, "b": 500.0, "c": 60.0, "e": 100.0})
    assert pl.share_on_usual_pace(by_rep, 0.213, left) == pytest.approx(1 / 4)
    assert pl.share_on_usual_pace(by_rep, 0.213, pd.Series(dtype="float64")) == 0.0  # nothing open: no one


def test_the_tiles_show_in_the_order_asked(monkeypatch):
    # the pipeline tiles keep their list's order (the usual pace beside the quarter, the two weighted
    # pipelines together); other notebooks' tiles keep the order their figures were recorded in
    from helpers.sections import display
    from helpers.sections.summary import Headlines

    shown = []
    monkeypatch.setattr(display, "cards", lambda rows: shown.append([r[0].split(",")[0] for r in rows]))
    h = Headlines("pipeline_health", "USD")
    h.add("bookings_qtd", 1.0)
    h.add("open_pipeline", 2.0)
    h.add("pace_usual_attainment_qtd", 0.5)
    keys = ["bookings_qtd", "pace_usual_attainment_qtd", "open_pipeline", "not_recorded"]
    h.show(keys, in_order=True)
    h.show(keys)
    assert shown == [
        ["Bookings", "Usual pace ÷ quarter plan", "Open pipeline"],
        ["Bookings", "Open pipeline", "Usual pace ÷ quarter plan"],
    ]


def test_reps_on_the_usual_pace_need_the_pipeline_to_reach_plan():
    """Headline figures as of 2026-10-15, day 15 of Q4 (calendar quarters). History (owner h, no quota): Q3
    books 100 by day 15 of 400, Q2 50 of 200, so a quarter usually has 150 ÷ 600 = 25% in by today. Reps a, b
    and c have a plan of 1 a day, 92 for Q4 and 15 to date. a won 30 (30 ÷ 0.25 = 120 ≥ 92) and has 70 open
    closing in Q4 (30 + 70 = 100 ≥ 92): on the usual pace. c won 30 too (120) but has only 20 open in Q4
    (50 < 92; its 500 closes in January): on no pace. b won 10 (40 < 92). Usual pace: 1 of 3 (2 of 3 when
    the pipeline was not asked); the straight line: a and c (30 ≥ 15), b not: 2 of 3."""
    rows = [
        ("H1", "h", "Won", "2026-07-10", 100.0, True),
        ("H2", "h", "Won", "2026-09-30", 300.0, True),
        ("H3", "h", "Won", "2026-04-15", 50.0, True),
        ("H4", "h", "Won", "2026-04-16", 150.0, True),
        ("A1", "a", "Won", "2026-10-05", 30.0, True),
        ("A2", "a", "Proposal", "2026-12-01", 70.0, False),
        ("C1", "c", "Won", "2026-10-06", 30.0, True),
        ("C2", "c", "Proposal", "2026-11-20", 20.0, False),
        ("C3", "c", "Proposal", "2027-01-10", 500.0, False),
        ("B1", "b", "Won", "2026-10-07", 10.0, True),
    ]
    deals = pd.DataFrame(rows, columns=["opportunity_id", "owner", "stage", "close_date", "amount", "is_won"])
    deals["close_date"] = pd.to_datetime(deals["close_date"]).astype("datetime64[us]")
    deals["created_date"] = pd.Timestamp("2026-01-01")
    deals["is_closed"] = deals["is_won"].astype("boolean")
    deals["is_won"] = deals["is_won"].astype("boolean")
    deals["probability"] = [1.0] * 5 + [0.5] + [1.0] + [0.5, 0.5] + [1.0]
    deals["forecast_category"] = deals["is_won"].map({True: "Closed", False: "Commit"})
    months = pd.date_range("2026-10-01", "2026-12-01", freq="MS")
    quotas = pd.DataFrame(
        [(r, m, float(m.days_in_month)) for r in "abc" for m in months],
        columns=["rep_id", "period_start", "quota"],
    )
    quotas["period_start"] = quotas["period_start"].astype("datetime64[us]")
    deals["stage"] = deals["stage"].map({"Won": "Closed Won", "Proposal": "Proposal"})
    sc = SimpleNamespace(opps=deals, table=deals, quotas=quotas, scope="company")
    q4 = FiscalCalendar(1).windows("2026-10-15")["QTD"]
    assert pl.open_by_rep(deals, q4).to_dict() == {"a": 70.0, "c": 20.0}
    cov = pl.coverage(deals, quotas, q4, by="rep").set_index("rep")["open_in_period"]
    assert cov[cov > 0].to_dict() == {"a": 70.0, "c": 20.0}  # the coverage table's open pipeline, the same
    figs = pl.headline_figures(sc, make_config(), FiscalCalendar(1), "2026-10-15", 3.0)
    assert figs["usual_share_qtd"].value == pytest.approx(0.25)
    assert figs["reps_on_usual_pace_qtd"].value == pytest.approx(1 / 3)
    assert figs["reps_on_pace_qtd"].value == pytest.approx(2 / 3)
