"""helpers.metrics.winloss on a hand-built dataset: every number below is worked out by hand in the comments.

The review window is October 2026 (month), the comparison window September 2026.

October closed deals (9 after the duplicate O14 is dropped):
  id   outcome seg  amount rep  competitor reason      created     closed
  O01  Won     SMB  100    r1   Acme       -           2026-09-01  2026-10-05   cycle 34
  O02  Won     SMB  300    r1   -          -           2026-08-01  2026-10-10   cycle 70
  O03  Lost    SMB  200    r2   Acme       Price       2026-09-12  2026-10-12   cycle 30
  O04  Lost    Ent  500    r2   Beta       Price       2026-07-01  2026-10-20   cycle 111
  O05  Won     Ent  500    r1   Beta       -           2026-06-01  2026-10-20   cycle 141
  O06  Lost    Ent  400    r3   Acme       Timing      2026-09-01  2026-10-25   cycle 54
  O07  Lost    MM   50     r3   -          (none)      2026-10-01  2026-10-26   cycle 25
  O08  Lost    -    ?      r3   -          Other       2026-10-02  2026-10-30   cycle 28
  O15  Lost    MM   400    r3   -          Budget      2026-09-20  2026-10-28   cycle 38
September: O09 Won SMB 100 (r1), O10 Lost SMB 100 (r2, Price). Open: O11 500, O12 500, O13 50.
O14 is O03 again under another id (a duplicate record).
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from helpers.data.calendar import FiscalCalendar
from helpers.metrics import winloss as wl

STAGES = ["Prospecting", "Qualification", "Proposal", "Closed Won", "Closed Lost"]
WON, LOST = ["Closed Won"], ["Closed Lost"]
CAL = FiscalCalendar(1)
AS_OF = pd.Timestamp("2026-10-31")

ROWS = [
    # id, outcome, segment, amount, owner, competitor, reason, created, closed, account
    ("O01", "Won", "SMB", 100, "r1", "Acme", None, "2026-09-01", "2026-10-05", "AcctE"),
    ("O02", "Won", "SMB", 300, "r1", None, None, "2026-08-01", "2026-10-10", "AcctB"),
    ("O03", "Lost", "SMB", 200, "r2", "Acme", "Price", "2026-09-12", "2026-10-12", "AcctF"),
    ("O04", "Lost", "Ent", 500, "r2", "Beta", "Price", "2026-07-01", "2026-10-20", "AcctG"),
    ("O05", "Won", "Ent", 500, "r1", "Beta", None, "2026-06-01", "2026-10-20", "AcctH"),
    ("O06", "Lost", "Ent", 400, "r3", "Acme", "Timing", "2026-09-01", "2026-10-25", "AcctI"),
    ("O07", "Lost", "MM", 50, "r3", None, None, "2026-10-01", "2026-10-26", "AcctJ"),
    ("O08", "Lost", None, None, "r3", None, "Other", "2026-10-02", "2026-10-30", "AcctK"),
    ("O09", "Won", "SMB", 100, "r1", None, None, "2026-08-01", "2026-09-10", "AcctA"),
    ("O10", "Lost", "SMB", 100, "r2", None, "Price", "2026-08-01", "2026-09-15", "AcctL"),
    ("O11", "Open", "SMB", 500, "r1", None, None, "2026-09-01", "2026-11-30", "AcctM"),
    ("O12", "Open", "Ent", 500, "r2", None, None, "2026-10-01", "2026-12-15", "AcctN"),
    ("O13", "Open", "MM", 50, "r3", None, None, "2026-10-15", "2026-12-31", "AcctO"),
    ("O14", "Lost", "SMB", 200, "r2", "Acme", "Price", "2026-09-12", "2026-10-12", "AcctF"),
    ("O15", "Lost", "MM", 400, "r3", None, "Budget", "2026-09-20", "2026-10-28", "AcctP"),
]
OPEN_STAGE = {"O11": "Proposal", "O12": "Qualification", "O13": "Prospecting"}


def opportunities() -> pd.DataFrame:
    recs = []
    for oid, outcome, seg, amt, owner, comp, reason, created, closed, acct in ROWS:
        recs.append(
            {
                "opportunity_id": oid,
                "owner": owner,
                "created_date": pd.Timestamp(created),
                "close_date": pd.Timestamp(closed),
                "stage": {"Won": "Closed Won", "Lost": "Closed Lost"}.get(outcome) or OPEN_STAGE[oid],
                "amount": float(amt) if amt is not None else np.nan,
                "is_closed": outcome != "Open",
                "is_won": outcome == "Won",
                "account": acct,
                "segment": seg,
                "competitor": comp,
                "loss_reason": reason,
            }
        )
    df = pd.DataFrame(recs)
    for c in ("owner", "stage", "account", "segment", "competitor", "loss_reason", "opportunity_id"):
        df[c] = df[c].astype("str")
    df["is_closed"] = df["is_closed"].astype("boolean")
    df["is_won"] = df["is_won"].astype("boolean")
    return df


REPS = pd.DataFrame(
    {"rep_id": ["r1", "r2", "r3"], "name": ["Alice", "Bob", "Cara"], "team": ["East", "East", "West"]}
)


def history() -> pd.DataFrame:
    rows = [
        # O01: Prospecting -> Closed Won (1 change, never qualified); amounts 100, 100 -> change 0
        ("O01", "2026-09-01", "Prospecting", 100),
        ("O01", "2026-10-05", "Closed Won", 100),
        # O02: 3 changes; amount 400 at first, final (opportunity) 300 -> 300/400 - 1 = -0.25
        ("O02", "2026-08-01", "Prospecting", 400),
        ("O02", "2026-08-20", "Qualification", 400),
        ("O02", "2026-09-15", "Proposal", 300),
        ("O02", "2026-10-10", "Closed Won", 300),
        # O03: lost at Qualification, 2 changes
        ("O03", "2026-09-12", "Prospecting", None),
        ("O03", "2026-09-20", "Qualification", None),
        ("O03", "2026-10-12", "Closed Lost", None),
        # O04: lost at Proposal, 3 changes; amount 400 -> final 500 = +0.25
        ("O04", "2026-07-01", "Prospecting", 400),
        ("O04", "2026-08-01", "Qualification", None),
        ("O04", "2026-09-01", "Proposal", None),
        ("O04", "2026-10-20", "Closed Lost", None),
        # O06: Prospecting -> Proposal -> back to Qualification -> lost: lost at Qualification, 3 changes
        ("O06", "2026-09-01", "Prospecting", None),
        ("O06", "2026-09-10", "Proposal", None),
        ("O06", "2026-09-20", "Qualification", None),
        ("O06", "2026-10-25", "Closed Lost", None),
        # O07: only the lost row -> "(no earlier stage)", 0 changes, never qualified
        ("O07", "2026-10-26", "Closed Lost", None),
        # O15: Prospecting -> lost: lost at Prospecting, 1 change, never qualified
        ("O15", "2026-09-20", "Prospecting", None),
        ("O15", "2026-10-28", "Closed Lost", None),
        # O05 and O08 have no history
    ]
    h = pd.DataFrame(rows, columns=["opportunity_id", "changed_at", "stage", "amount"])
    h["changed_at"] = pd.to_datetime(h["changed_at"])
    h["amount"] = h["amount"].astype("float64")
    return h.sample(frac=1, random_state=3).reset_index(drop=True)  # order must not matter


ACTIVITIES = pd.DataFrame(
    {
        # O01: 2, O02: 4, O05: 0 -> won mean 6/3 = 2.0; O03: 1, other lost 0 -> lost mean 1/6
        "activity_id": [f"A{i}" for i in range(8)],
        "opportunity_id": ["O01", "O01", "O02", "O02", "O02", "O02", "O03", None],
    }
)


@pytest.fixture()
def deals() -> pd.DataFrame:
    opp = wl.drop_duplicates(opportunities())
    return wl.prepare_deals(opp, REPS, as_of=AS_OF, size_edges=[150, 450])


@pytest.fixture()
def windows():
    return wl.review_windows("2026-10", AS_OF, CAL, "month", "")


@pytest.fixture()
def closed(deals, windows):
    return wl.closed_in_window(deals, windows[0])


# ------------------------------------------------------------------------------------------------
def test_wilson_interval_matches_hand_values():
    # 3 of 8: p = .375, z²/n = 3.841459/8 = .480182; centre = (.375 + .240091)/1.480182 = .415553;
    # half = 1.959964/1.480182 · √(.375·.625/8 + 3.841459/256) = 1.324138 · .210483 = .278709
    lo, hi = wl.wilson_interval(3, 8)
    assert lo == pytest.approx(0.136844, abs=1e-5) and hi == pytest.approx(0.694262, abs=1e-5)
    # 0 of 2: centre = (z²/4)/(1 + z²/2) = .960365/2.920730 = .328810 = half -> [0, .657620]
    lo, hi = wl.wilson_interval(0, 2)
    assert lo == pytest.approx(0.0, abs=1e-9) and hi == pytest.approx(0.657620, abs=1e-5)
    lo, hi = wl.wilson_interval(0, 0)
    assert math.isnan(lo) and math.isnan(hi)


def test_win_rates_of_nothing_closed_is_one_empty_row():
    empty = pd.DataFrame({"outcome": pd.Series([], dtype="str"), "amount": pd.Series([], dtype="float64")})
    r = wl.win_rates(empty).iloc[0]
    assert (r["group"], r["deals"], r["won"]) == ("All", 0, 0) and math.isnan(r["win_rate"])


def test_windows_month_quarter_and_comparisons():
    review, comp = wl.review_windows("2026-10", AS_OF, CAL, "month", "")
    assert (review.start, review.as_of, review.label) == (pd.Timestamp("2026-10-01"), AS_OF, "2026-10")
    assert comp.label == "2026-09" and comp.as_of == pd.Timestamp("2026-09-30")
    review, comp = wl.review_windows("2026-11", "2026-11-15", FiscalCalendar(2), "quarter", "prior_year")
    # fiscal year from February: Nov 2026 is FY2027 Q4 (Nov–Jan); to date 2026-11-15
    assert review.label == "FY2027 Q4" and review.as_of == pd.Timestamp("2026-11-15")
    assert comp.label == "FY2026 Q4" and comp.start == pd.Timestamp("2025-11-01")
    _, comp = wl.review_windows("2026-10", AS_OF, CAL, "month", "2026-06")
    assert comp.label == "2026-06"


def test_duplicates_are_reported_and_dropped():
    opp = opportunities()
    dups = wl.find_duplicates(opp)
    assert dups[["opportunity_id", "duplicate_of"]].values.tolist() == [["O14", "O03"]]
    assert "O14" not in set(wl.drop_duplicates(opp)["opportunity_id"])
    # rows with no account are never called duplicates
    thin = pd.DataFrame({"opportunity_id": ["a", "b"], "stage": ["Won", "Won"], "segment": ["SMB", "SMB"]})
    assert wl.find_duplicates(thin).empty
    # survey-style closed records naming the same account with the same answers are; undated open
    # prospects for the same account are not (they may be two genuine deals)
    survey = pd.DataFrame(
        {
            "opportunity_id": ["s1", "s2", "s3", "p1", "p2"],
            "account": ["X", "X", "Y", "Z", "Z"],
            "is_closed": [True, True, True, False, False],
            "stage": ["Lost", "Lost", "Lost", "Prospecting", "Prospecting"],
            "loss_reason": ["Price", "Price", "Price", None, None],
        }
    )
    assert wl.find_duplicates(survey)[["opportunity_id", "duplicate_of"]].values.tolist() == [["s2", "s1"]]


def test_overall_win_rate_count_value_and_interval(closed):
    t = wl.win_rates(closed)
    r = t.iloc[0]
    # 9 closed in October: 3 won (O01, O02, O05), 6 lost
    assert (r["deals"], r["won"], r["lost"]) == (9, 3, 6)
    assert r["win_rate"] == pytest.approx(3 / 9)
    # Wilson 3/9: centre = (1/3 + .213414)/1.426829 = .383192; half = 1.373657·.191173 = .262606
    assert r["ci_low"] == pytest.approx(0.120586, abs=1e-5)
    assert r["ci_high"] == pytest.approx(0.645798, abs=1e-5)
    # value: won 100+300+500 = 900; closed known 900 + 200+500+400+50+400 = 2450 (O08 unknown)
    assert r["won_amount"] == 900 and r["closed_amount"] == 2450
    assert r["value_win_rate"] == pytest.approx(900 / 2450)


def test_segment_rates_pool_small_groups(closed):
    t = wl.win_rates(closed, "segment", min_deals=3)
    # Ent 3 (1 won) and SMB 3 (2 won) tie on deals -> by name; MM (2) and (not set) (1) pooled: 3 deals, 0 won
    assert t["group"].tolist() == ["Ent", "SMB", "Other (n<3)"]
    assert t["deals"].tolist() == [3, 3, 3]
    assert t["won"].tolist() == [1, 2, 0]
    assert t["groups_pooled"].tolist() == [1, 1, 2]
    # Wilson 1/3 = [.061492, .792342]; 2/3 = [.207659, .938508]; 0/3 = [0, .561496]
    assert t["ci_low"].tolist() == pytest.approx([0.061492, 0.207659, 0.0], abs=1e-5)
    assert t["ci_high"].tolist() == pytest.approx([0.792342, 0.938508, 0.561496], abs=1e-5)
    # value: Ent 500/1400; SMB 400/600; Other 0/(50+400)
    assert t["value_win_rate"].tolist() == pytest.approx([500 / 1400, 400 / 600, 0.0])
    # min_deals=1 pools nothing and shows the missing segment as its own group
    t1 = wl.win_rates(closed, "segment", min_deals=1)
    assert set(t1["group"]) == {"SMB", "Ent", "MM", "(not set)"}


def test_rep_team_competitor_and_size_band_rates(closed):
    reps = wl.win_rates(closed, "rep", min_deals=1)
    # Cara: O06, O07, O08, O15 = 0/4; Alice O01, O02, O05 = 3/3; Bob O03, O04 = 0/2
    assert reps[["group", "deals", "won"]].values.tolist() == [["Cara", 4, 0], ["Alice", 3, 3], ["Bob", 2, 0]]
    teams = wl.win_rates(closed, "team", min_deals=1)
    assert teams[["group", "deals", "won"]].values.tolist() == [["East", 5, 3], ["West", 4, 0]]
    comp = wl.win_rates(closed, "competitor", min_deals=1)
    # (not set): O02 won, O07, O08, O15 lost = 1/4; Acme: O01 won, O03, O06 lost = 1/3; Beta: O04, O05 = 1/2
    assert comp[["group", "deals", "won"]].values.tolist() == [
        ["(not set)", 4, 1],
        ["Acme", 3, 1],
        ["Beta", 2, 1],
    ]
    labels = wl.size_band_labels([150, 450])
    assert labels == ["< $150", "$150–$450", "≥ $450"]
    bands = wl.win_rates(closed, "size_band", min_deals=1, order=labels)
    # < 150: O01 100 won, O07 50 lost; 150–450: O02 300 won, O03 200, O06 400, O15 400 lost;
    # ≥ 450: O04 500 lost, O05 500 won; unknown amount: O08
    assert bands[["group", "deals", "won"]].values.tolist() == [
        ["< $150", 2, 1],
        ["$150–$450", 4, 1],
        ["≥ $450", 2, 1],
        ["(not set)", 1, 0],
    ]


def test_default_size_edges_are_rounded_quartiles():
    # quartiles of 1..100 ×1000 (linear): 25,750 / 50,500 / 75,250 -> 26,000 / 51,000 / 75,000
    edges = wl.default_size_edges(pd.Series(np.arange(1, 101) * 1000.0))
    assert edges == [26000.0, 51000.0, 75000.0]
    assert wl.size_band_labels(edges) == ["< $26k", "$26k–$51k", "$51k–$75k", "≥ $75k"]


def test_trend_and_change(deals, windows):
    review, comp = windows
    tr = wl.win_rate_trend(deals, review, comp, CAL, periods=3)
    # 2026-08 has no closed deal and comes before the data's first close: dropped
    assert tr["window"].tolist() == ["2026-09", "2026-10"]
    assert tr["role"].tolist() == ["comparison", "review"]
    assert tr["deals"].tolist() == [2, 9]
    assert tr["win_rate"].tolist() == pytest.approx([0.5, 3 / 9])
    # a gap inside the range is kept: comparing with June, July and August show 0 deals, NaN rates
    june = wl.make_window("2026-06-01", "month", CAL)
    tr = wl.win_rate_trend(deals, review, june, CAL, periods=3)
    assert tr["window"].tolist() == ["2026-06", "2026-07", "2026-08", "2026-09", "2026-10"]
    assert tr["deals"].tolist() == [0, 0, 0, 2, 9] and math.isnan(tr["win_rate"].iloc[0])
    ch = wl.rate_change(
        wl.win_rates(wl.closed_in_window(deals, review)), wl.win_rates(wl.closed_in_window(deals, comp))
    )
    # 3/9 - 1/2 = -0.166667; Wilson 1/2 = [.094531, .905469] overlaps [.120586, .645798]
    assert ch["change"] == pytest.approx(-1 / 6)
    assert ch["intervals_overlap"] is True


def test_loss_reasons_pareto_by_count_and_value(closed):
    t = wl.loss_reasons(closed, "count")
    # Price 2 (200+500); Budget 1 (400) and Timing 1 (400) tie on count and amount -> by name;
    # (no reason) 1 (50); Other 1 (unknown amount = 0). 6 lost deals, 1550 lost amount.
    assert t["reason"].tolist() == ["Price", "Budget", "Timing", "(no reason)", "Other"]
    assert t["deals"].tolist() == [2, 1, 1, 1, 1]
    assert t["share"].tolist() == pytest.approx([2 / 6, 1 / 6, 1 / 6, 1 / 6, 1 / 6])
    assert t["cum_share"].tolist() == pytest.approx([2 / 6, 3 / 6, 4 / 6, 5 / 6, 1.0])
    assert t["amount_share"].tolist() == pytest.approx([700 / 1550, 400 / 1550, 400 / 1550, 50 / 1550, 0])
    v = wl.loss_reasons(closed, "value")
    assert v["reason"].tolist() == ["Price", "Budget", "Timing", "(no reason)", "Other"]
    assert v["cum_share"].tolist() == pytest.approx([700 / 1550, 1100 / 1550, 1500 / 1550, 1.0, 1.0])


def test_loss_reasons_by_segment_and_competitor(closed):
    t = wl.loss_reasons_by(closed, "segment")
    # lost per segment: Ent 2 (Price, Timing), MM 2 (none, Budget), SMB 1 (Price), (not set) 1 (Other)
    assert t.columns.tolist() == ["reason", "Ent", "MM", "SMB", "(not set)", "Total"]
    price = t.set_index("reason").loc["Price"]
    assert (price["Ent"], price["SMB"], price["Total"]) == (1, 1, 2)
    c = wl.loss_reasons_by(closed, "competitor").set_index("reason")
    # Acme lost: O03 Price, O06 Timing; Beta lost: O04 Price
    assert (c.at["Price", "Acme"], c.at["Price", "Beta"], c.at["Timing", "Acme"]) == (1, 1, 1)


def test_stage_lost_at_uses_history(closed):
    t = wl.stage_lost_at(closed, history(), STAGES, WON, LOST)
    assert t["stage"].tolist() == [
        "Prospecting",
        "Qualification",
        "Proposal",
        "(no earlier stage)",
        "(no history)",
    ]
    # O15 | O03, O06 | O04 | O07 | O08
    assert t["deals"].tolist() == [1, 2, 1, 1, 1]
    assert t["share"].tolist() == pytest.approx([1 / 6, 2 / 6, 1 / 6, 1 / 6, 1 / 6])
    assert t["lost_amount"].tolist() == [400, 600, 500, 50, 0]


def test_won_vs_lost_side_by_side(closed):
    t = wl.won_vs_lost(closed, history(), ACTIVITIES).set_index("metric")
    assert (t.at["Deals", "Won"], t.at["Deals", "Lost"]) == (3, 6)
    # won amounts 100, 300, 500: mean 300, median 300; lost 200, 500, 400, 50, 400: mean 310, median 400
    assert (t.at["Average deal size", "Won"], t.at["Average deal size", "Lost"]) == (300, 310)
    assert (t.at["Median deal size", "Won"], t.at["Median deal size", "Lost"]) == (300, 400)
    assert t.at["Median deal size", "lost_n"] == 5
    # cycles won 34, 70, 141 -> 70; lost 30, 111, 54, 25, 28, 38 -> (30 + 38)/2 = 34
    assert (t.at["Median cycle (days)", "Won"], t.at["Median cycle (days)", "Lost"]) == (70, 34)
    # stage changes won O01 1, O02 3 -> 2.0 (O05 no history); lost 2, 3, 3, 0, 1 -> 1.8 (O08 no history)
    assert t.at["Average stage changes", "Won"] == pytest.approx(2.0)
    assert t.at["Average stage changes", "Lost"] == pytest.approx(1.8)
    assert (t.at["Average stage changes", "won_n"], t.at["Average stage changes", "lost_n"]) == (2, 5)
    # activities: won (2 + 4 + 0)/3 = 2; lost 1/6
    assert t.at["Activities per deal", "Won"] == pytest.approx(2.0)
    assert t.at["Activities per deal", "Lost"] == pytest.approx(1 / 6)
    # amount change: won O01 0, O02 -0.25 -> median -0.125, shrank 1/2; lost O04 +0.25 -> shrank 0
    assert t.at["Median amount change", "Won"] == pytest.approx(-0.125)
    assert t.at["Median amount change", "Lost"] == pytest.approx(0.25)
    assert t.at["Share of deals that shrank", "Won"] == pytest.approx(0.5)
    points = wl.what_distinguishes_wins(t.reset_index())
    assert points[0] == "The median won deal is 0.8× the median lost deal."  # 300/400


def test_won_vs_lost_says_what_it_needs_without_history_or_activities(closed):
    t = wl.won_vs_lost(closed).set_index("metric")
    assert t.at["Average stage changes", "needs"] == "the opportunity_history table"
    assert t.at["Activities per deal", "needs"] == "the activities table with opportunity_id"
    assert math.isnan(t.at["Activities per deal", "Won"])


def test_top_lists_break_ties_by_id(deals, closed):
    won = wl.top_deals(closed, "Won")
    assert won["opportunity_id"].tolist() == ["O05", "O02", "O01"]
    assert won["rep"].tolist() == ["Alice"] * 3
    lost = wl.top_deals(closed, "Lost")
    # 500 O04; 400 O06 and O15 tie -> O06 first; 200 O03; 50 O07 (O08 unknown amount is 6th)
    assert lost["opportunity_id"].tolist() == ["O04", "O06", "O15", "O03", "O07"]
    assert lost["reason"].iloc[:4].tolist() == ["Price", "Timing", "Budget", "Price"]
    assert pd.isna(lost["reason"].iloc[4])
    assert wl.top_deals(closed, "Lost", n=6)["opportunity_id"].iloc[-1] == "O08"
    assert lost["cycle_days"].tolist() == [111, 54, 38, 30, 25]
    opn = wl.top_deals(wl.open_as_of(deals, AS_OF), "Open")
    # O11 and O12 tie at 500 -> O11 first; then O13 50
    assert opn["opportunity_id"].tolist() == ["O11", "O12", "O13"]
    # open as of 2026-10-10: O11, O12 (created 10-01) and the deals closed after 10-10; O13 (created 10-15)
    # did not exist yet, O02 closed on 10-10 itself
    early = wl.open_as_of(deals, "2026-10-10")
    assert set(early["opportunity_id"]) == {"O03", "O04", "O05", "O06", "O07", "O08", "O11", "O12", "O15"}


def test_top_churned(deals, windows):
    churn = pd.DataFrame(
        {
            "account": ["AcctA", "AcctB", "AcctC", "AcctD"],
            "churn_date": pd.to_datetime(["2026-10-03", "2026-10-15", "2026-09-20", "2026-10-31"]),
            "lost_amount": [1000.0, 1000.0, 5000.0, 200.0],
            "reason": ["Price", "Support", "Budget", None],
        }
    )
    t = wl.top_churned(churn, windows[0], deals)
    # AcctC churned in September (out); AcctA and AcctB tie at 1000 -> by name
    assert t["account"].tolist() == ["AcctA", "AcctB", "AcctD"]
    # owner = rep of the latest won deal: AcctA O09 (Alice), AcctB O02 (Alice), AcctD none
    assert t["owner"].tolist()[:2] == ["Alice", "Alice"]
    # customer days: AcctA 10-03 − 09-10 = 23; AcctB 10-15 − 10-10 = 5
    assert t["customer_days"].tolist()[:2] == [23, 5]


def test_quality_issues_named(closed, deals):
    issues = wl.quality_issues(closed, history(), STAGES, "Qualification", WON, LOST)
    by = issues.groupby("issue")["opportunity_id"].apply(list).to_dict()
    assert by["Lost with no loss reason"] == ["O07"]
    assert by["Lost with an 'Other' reason"] == ["O08"]
    # O01 (Prospecting -> Won), O15 (400), O07 (50) never reached Qualification; O05, O08 have no history
    assert by["Closed without reaching Qualification"] == ["O15", "O01", "O07"]
    summary = wl.quality_summary(
        closed,
        issues,
        wl.find_duplicates(opportunities()),
        undated=0,
        can_check_qualifying=True,
        qualifying_stage="Qualification",
    ).set_index("check")
    assert summary.at["Lost with no loss reason", "share"] == pytest.approx(1 / 6)
    assert summary.at["Closed without reaching Qualification", "share"] == pytest.approx(3 / 9)
    assert summary.at["Duplicate records (left out)", "deals"] == 1
    assert summary.at["Duplicate records (left out)", "share"] == pytest.approx(1 / 10)
    assert wl.is_other_reason(
        pd.Series(["Other", "other - budget", "Otherwise", "Price", None])
    ).tolist() == [True, True, True, False, False]


def test_headlines_and_what_to_look_at(closed, deals, windows):
    overall = wl.win_rates(closed)
    change = wl.rate_change(overall, wl.win_rates(wl.closed_in_window(deals, windows[1])))
    reasons = wl.loss_reasons(closed)
    issues = wl.quality_issues(closed)
    summary = wl.quality_summary(closed, issues, wl.find_duplicates(opportunities()))
    hf = wl.headline_figures(overall, change, reasons, summary, "2026-10", "2026-09")
    figs = {f.key: f.value for f in hf}
    assert figs["closed_deals"] == 9 and figs["win_rate"] == pytest.approx(1 / 3)
    assert figs["top_loss_reason"] == "Price" and figs["duplicate_records"] == 1
    # the change is a difference of two rates: percentage points, shown 1/3 − 1/2 = −16.7 pts (not "−16.7%")
    from helpers.sections.display import fmt_value

    units = {f.key: f.unit for f in hf}
    assert units["win_rate_change"] == "points" and units["win_rate"] == "percent"
    labels = {f.key: f.label for f in hf}
    # labels name their window and base, and the change its comparison and its noise judgement
    assert labels["win_rate"] == "Win rate (count), 2026-10 — 9 closed"
    assert labels["win_rate_comparison"] == "Win rate (count), 2026-09"
    assert labels["win_rate_change"] == (
        "Win rate change, 2026-10 vs 2026-09 — within the noise (the 95% intervals overlap)"
    )
    assert fmt_value(figs["win_rate_change"], "points") == "−16.7 pts"
    by_dim = {"rep": wl.win_rates(closed, "rep", min_deals=2)}
    points = wl.what_to_look_at(overall, change, by_dim, reasons, summary, 2, "2026-10", "2026-09")
    assert points[0].startswith(
        "Win rate 33% on 9 closed deals (95% interval 12%–65%), down 17 points "
        "from 50% in 2026-09 — within the noise"
    )
    # Pareto: cum shares .33 .5 .67 .83 1 -> 4 reasons reach 80%
    assert "Price — 33% of lost deals (2 of 6); 4 reasons cover 80%" in points[1]  # was "4 reason(s)"
    # Alice 3/3: Wilson [.438503, 1] lies above 1/3 -> named; Cara 0/4 [0, .489891] overlaps 1/3
    assert any(p.startswith("Rep Alice wins 100%") for p in points)
    assert any("lost with no loss reason" in p for p in points)  # 1/6 = 17% > 10%


def test_thin_records_without_dates_or_amounts():
    thin = pd.DataFrame(
        {
            "opportunity_id": [f"S{i}" for i in range(1, 8)],
            "stage": ["Won", "Lost", "Lost", "Won", "Lost", "Open", "Lost"],
            "is_closed": pd.array([True, True, True, True, True, False, True], dtype="boolean"),
            "is_won": pd.array([True, False, False, True, False, False, False], dtype="boolean"),
            "segment": ["SMB", "SMB", "Ent", "Ent", "Ent", "SMB", "SMB"],
            "loss_reason": [None, "Price", "Price", None, "Timing", None, None],
        }
    )
    deals = wl.prepare_deals(thin, None, as_of=AS_OF)
    review, _ = wl.review_windows("2026-10", AS_OF, CAL)
    closed = wl.closed_in_window(deals, review)
    # no dates at all: every closed record counts; 2 won of 6
    r = wl.win_rates(closed).iloc[0]
    assert (r["deals"], r["won"]) == (6, 2)
    assert math.isnan(r["value_win_rate"])
    assert wl.top_deals(closed, "Lost")["opportunity_id"].tolist() == ["S2", "S3", "S5", "S7"]
    assert wl.loss_reasons(closed)["reason"].tolist() == ["Price", "(no reason)", "Timing"]
    side = wl.won_vs_lost(closed).set_index("metric")
    assert side.at["Median deal size", "needs"] == "amounts (opportunities.amount)"
    assert side.at["Median cycle (days)", "needs"] == "created_date and close_date"


def test_value_rate_withheld_when_lost_amounts_are_missing():
    df = pd.DataFrame({"outcome": ["Won", "Lost", "Lost"], "amount": [100.0, np.nan, 0.0], "g": ["a"] * 3})
    # a 100% value win rate would only mean lost deals carry no amount
    assert math.isnan(wl.win_rates(df).iloc[0]["value_win_rate"])


def test_duplicates_need_every_column_equal_not_only_amount_and_dates():
    # d1/d2/d3 share amount and dates; d2 differs from d1 only by owner (not a duplicate), d3 equals d1
    opp = pd.DataFrame(
        {
            "opportunity_id": ["d1", "d2", "d3", "d4"],
            "account": ["X", "X", "X", "Y"],
            "owner": ["r1", "r2", "r1", "r1"],
            "amount": [100.0, 100.0, 100.0, 250.0],
            "created_date": pd.to_datetime(["2026-01-05"] * 3 + ["2026-02-01"]),
            "is_closed": [False] * 4,
        }
    )
    assert wl.find_duplicates(opp)[["opportunity_id", "duplicate_of"]].values.tolist() == [["d3", "d1"]]


def test_top_churned_without_won_deals_for_the_listed_accounts(deals, windows):
    # AcctD has no won deal: no owner, no customer days (the other accounts' won deals do not matter)
    churn = pd.DataFrame(
        {
            "account": ["AcctD"],
            "churn_date": pd.to_datetime(["2026-10-31"]),
            "lost_amount": [200.0],
            "reason": [None],
        }
    )
    t = wl.top_churned(churn, windows[0], deals)
    assert t["account"].tolist() == ["AcctD"]
    assert t["owner"].isna().all() and t["customer_days"].isna().all()
