"""helpers.metrics.winloss on a hand-built dataset: every number below is worked out by hand in the comments.

The review's figures (win rates, loss reasons, the stage lost at, won vs lost, the data-quality list) are
computed where the deals, their history and the activity log live (``build_review`` with the engine's
tables: ``WindowDeals``), on DuckDB, PostgreSQL and Spark; the pure functions (intervals, windows,
duplicates, size edges, the lists, headlines) on frames. The review window is October 2026 (month), the
comparison window September 2026.

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
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from conftest import engine_of, hand_folder

from helpers.data.calendar import FiscalCalendar
from helpers.data.dataset import load
from helpers.metrics import expr
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


CONFIG = {
    "name": "Hand-built",
    "currency": "USD",
    "fiscal_year_start_month": 1,
    "as_of": "2026-10-31",
    "stages": STAGES,
    "won_stages": ["Closed Won"],
    "lost_stages": ["Closed Lost"],
    "qualifying_stage": "Qualification",
}
SIZE_EDGES = [150, 450]


def write_hand_dataset(folder: Path) -> Path:
    """The deals above as a dataset folder, with their history, activities, reps and churned accounts."""
    folder.mkdir(parents=True)
    (folder / "dataset.yml").write_text(yaml.safe_dump(CONFIG))
    opportunities().to_csv(folder / "opportunities.csv", index=False)
    history().to_csv(folder / "opportunity_history.csv", index=False)
    acts = ACTIVITIES.assign(owner="r1", type="call", occurred_at="2026-10-01")
    acts.to_csv(folder / "activities.csv", index=False)
    REPS.to_csv(folder / "reps.csv", index=False)
    pd.DataFrame(
        {
            "account": ["AcctA", "AcctB", "AcctC", "AcctD"],
            "churn_date": ["2026-10-03", "2026-10-15", "2026-09-20", "2026-10-31"],
            "lost_amount": [1000, 1000, 5000, 200],
            "reason": ["Price", "Support", "Budget", None],
        }
    ).to_csv(folder / "churn.csv", index=False)
    return folder


# survey-style records: no dates, amounts or owners (every closed record is in scope)
THIN_CONFIG = {
    "name": "Thin",
    "stages": ["Open", "Won", "Lost"],
    "won_stages": ["Won"],
    "lost_stages": ["Lost"],
}
THIN_OPPS = """opportunity_id,stage,is_closed,is_won,segment,loss_reason
S1,Won,true,true,SMB,
S2,Lost,true,false,SMB,Price
S3,Lost,true,false,Ent,Price
S4,Won,true,true,Ent,
S5,Lost,true,false,Ent,Timing
S6,Open,false,false,SMB,
S7,Lost,true,false,SMB,
"""
# October: V1 won 100, V2 lost without an amount, V3 lost for exactly 0: no lost deal carries a positive
# amount, so the value rate is withheld (it would read 100/100); September: V4 won 100, V5 lost 50
VALUE_OPPS = """opportunity_id,owner,created_date,close_date,stage,amount,is_closed,is_won
V1,r1,2026-09-01,2026-10-05,Closed Won,100,true,true
V2,r1,2026-09-01,2026-10-06,Closed Lost,,true,false
V3,r2,2026-09-01,2026-10-07,Closed Lost,0,true,false
V4,r2,2026-08-01,2026-09-10,Closed Won,100,true,true
V5,r2,2026-08-01,2026-09-11,Closed Lost,50,true,false
"""


@pytest.fixture(scope="session")
def hand_wl_dir(tmp_path_factory) -> Path:
    return write_hand_dataset(tmp_path_factory.mktemp("winloss") / "hand")


@pytest.fixture(scope="session")
def thin_wl_dir(tmp_path_factory) -> Path:
    return hand_folder(tmp_path_factory, "thin", THIN_CONFIG, opportunities=THIN_OPPS)


@pytest.fixture(scope="session")
def value_wl_dir(tmp_path_factory) -> Path:
    return hand_folder(tmp_path_factory, "value", CONFIG, opportunities=VALUE_OPPS)


wl_engine = engine_of("hand_wl_dir", "winloss_hand")
thin_engine = engine_of("thin_wl_dir", "winloss_thin")
value_engine = engine_of("value_wl_dir", "winloss_value")


def review_on(e, folder: Path, min_deals: int = 1) -> wl.Review:
    """The October review as the notebook builds it, with the deals, their history and the activity log
    where they live (engine ``e``; the window's deals kept there while it runs)."""
    ds = load(folder, tables=["reps", "churn"])
    return wl.build_review(
        ds,
        "2026-10",
        AS_OF,
        CAL,
        "month",
        "",
        min_deals,
        size_edges=SIZE_EDGES,
        activities=e.tables.get("activities"),
        missing=e.missing,
        history=e.tables.get("opportunity_history"),
        opportunities=e["opportunities"],
        engine=e,
    )


@pytest.fixture(scope="module")
def review(wl_engine, hand_wl_dir):
    """``review(min_deals)``: the hand dataset's review on the engine, built once per ``min_deals``."""
    done = {}

    def get(min_deals: int = 1) -> wl.Review:
        if min_deals not in done:
            done[min_deals] = review_on(wl_engine, hand_wl_dir, min_deals)
        return done[min_deals]

    return get


@pytest.fixture()
def deals() -> pd.DataFrame:
    opp = wl.drop_duplicates(opportunities())
    return wl.prepare_deals(opp, REPS, as_of=AS_OF, size_edges=SIZE_EDGES)


@pytest.fixture()
def windows():
    return wl.review_windows("2026-10", AS_OF, CAL, "month", "")


@pytest.fixture()
def closed(deals, windows):
    """October's closed deals, as a frame (the lists' pure functions)."""
    inside = windows[0].contains(deals["close_date"]).fillna(False)
    return deals[deals["outcome"].isin(["Won", "Lost"]) & inside]


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


def test_win_rates_of_nothing_closed_is_one_empty_row(wl_engine):
    january = wl.make_window("2026-01-01", "month", CAL)
    r = wl.WindowDeals(wl.Deals(wl_engine["opportunities"]), january).overall().iloc[0]
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


def test_overall_win_rate_count_value_and_interval(review):
    t = review().overall
    r = t.iloc[0]
    # 9 closed in October: 3 won (O01, O02, O05), 6 lost (O14, a copy of O03, left out)
    assert (r["deals"], r["won"], r["lost"]) == (9, 3, 6)
    assert r["win_rate"] == pytest.approx(3 / 9)
    # Wilson 3/9: centre = (1/3 + .213414)/1.426829 = .383192; half = 1.373657·.191173 = .262606
    assert r["ci_low"] == pytest.approx(0.120586, abs=1e-5)
    assert r["ci_high"] == pytest.approx(0.645798, abs=1e-5)
    # value: won 100+300+500 = 900; closed known 900 + 200+500+400+50+400 = 2450 (O08 unknown)
    assert r["won_amount"] == 900 and r["closed_amount"] == 2450
    assert r["value_win_rate"] == pytest.approx(900 / 2450)


def test_segment_rates_pool_small_groups(review):
    t = review(3).by_dim["segment"]
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
    t1 = review(1).by_dim["segment"]
    assert set(t1["group"]) == {"SMB", "Ent", "MM", "(not set)"}


def test_rep_team_competitor_and_size_band_rates(review):
    rv = review(1)
    reps = rv.by_dim["rep"]
    # Cara: O06, O07, O08, O15 = 0/4; Alice O01, O02, O05 = 3/3; Bob O03, O04 = 0/2
    assert reps[["group", "deals", "won"]].values.tolist() == [["Cara", 4, 0], ["Alice", 3, 3], ["Bob", 2, 0]]
    teams = rv.by_dim["team"]
    assert teams[["group", "deals", "won"]].values.tolist() == [["East", 5, 3], ["West", 4, 0]]
    comp = rv.competitors
    # (not set): O02 won, O07, O08, O15 lost = 1/4; Acme: O01 won, O03, O06 lost = 1/3; Beta: O04, O05 = 1/2
    assert comp[["group", "deals", "won"]].values.tolist() == [
        ["(not set)", 4, 1],
        ["Acme", 3, 1],
        ["Beta", 2, 1],
    ]
    labels = wl.size_band_labels(SIZE_EDGES)
    assert labels == ["< $150", "$150–$450", "≥ $450"]
    bands = rv.by_dim["size_band"]
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


def test_trend_and_change(wl_engine, review):
    rv = review()
    tr = rv.trend
    # 2026-08 and before have no closed deal and come before the data's first close: dropped
    assert tr["window"].tolist() == ["2026-09", "2026-10"]
    assert tr["role"].tolist() == ["comparison", "review"]
    assert tr["deals"].tolist() == [2, 9]
    assert tr["win_rate"].tolist() == pytest.approx([0.5, 3 / 9])
    # a gap inside the range is kept: comparing with June, July and August show 0 deals, NaN rates
    june = wl.make_window("2026-06-01", "month", CAL)
    tr = wl.win_rate_trend(wl.Deals(wl_engine["opportunities"]).t, rv.review, june, CAL, periods=3)
    assert tr["window"].tolist() == ["2026-06", "2026-07", "2026-08", "2026-09", "2026-10"]
    assert tr["deals"].tolist() == [0, 0, 0, 2, 9] and math.isnan(tr["win_rate"].iloc[0])
    ch = rv.change
    # 3/9 - 1/2 = -0.166667; Wilson 1/2 = [.094531, .905469] overlaps [.120586, .645798]
    assert ch["change"] == pytest.approx(-1 / 6)
    assert ch["intervals_overlap"] is True


def test_loss_reasons_pareto_by_count_and_value(review):
    t = review().reasons_count
    # Price 2 (200+500); Budget 1 (400) and Timing 1 (400) tie on count and amount -> by name;
    # (no reason) 1 (50); Other 1 (unknown amount = 0). 6 lost deals, 1550 lost amount.
    assert t["reason"].tolist() == ["Price", "Budget", "Timing", "(no reason)", "Other"]
    assert t["deals"].tolist() == [2, 1, 1, 1, 1]
    assert t["share"].tolist() == pytest.approx([2 / 6, 1 / 6, 1 / 6, 1 / 6, 1 / 6])
    assert t["cum_share"].tolist() == pytest.approx([2 / 6, 3 / 6, 4 / 6, 5 / 6, 1.0])
    assert t["amount_share"].tolist() == pytest.approx([700 / 1550, 400 / 1550, 400 / 1550, 50 / 1550, 0])
    v = review().reasons_value
    assert v["reason"].tolist() == ["Price", "Budget", "Timing", "(no reason)", "Other"]
    assert v["cum_share"].tolist() == pytest.approx([700 / 1550, 1100 / 1550, 1500 / 1550, 1.0, 1.0])


def test_loss_reasons_by_segment_and_competitor(review):
    t = review().reasons_by_segment
    # lost per segment: Ent 2 (Price, Timing), MM 2 (none, Budget), SMB 1 (Price), (not set) 1 (Other)
    assert t.columns.tolist() == ["reason", "Ent", "MM", "SMB", "(not set)", "Total"]
    price = t.set_index("reason").loc["Price"]
    assert (price["Ent"], price["SMB"], price["Total"]) == (1, 1, 2)
    c = review().reasons_by_competitor.set_index("reason")
    # Acme lost: O03 Price, O06 Timing; Beta lost: O04 Price
    assert (c.at["Price", "Acme"], c.at["Price", "Beta"], c.at["Timing", "Acme"]) == (1, 1, 1)


def test_stage_lost_at_uses_history(review):
    t = review().lost_at
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


def test_won_vs_lost_side_by_side(review):
    t = review().side.set_index("metric")
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


def test_won_vs_lost_says_what_it_needs_without_history_or_activities(wl_engine, review):
    now = wl.WindowDeals(wl.Deals(wl_engine["opportunities"]), review().review)
    t = now.side(3, 6, None, wl_engine.config, None).set_index("metric")
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


def test_quality_issues_named(review):
    rv = review()
    by = rv.issues.groupby("issue")["opportunity_id"].apply(list).to_dict()
    assert by["Lost with no loss reason"] == ["O07"]
    assert by["Lost with an 'Other' reason"] == ["O08"]
    # O01 (Prospecting -> Won), O15 (400), O07 (50) never reached Qualification; O05, O08 have no history
    assert by["Closed without reaching Qualification"] == ["O15", "O01", "O07"]
    summary = rv.quality.set_index("check")
    assert summary.at["Lost with no loss reason", "share"] == pytest.approx(1 / 6)
    assert summary.at["Closed without reaching Qualification", "share"] == pytest.approx(3 / 9)
    assert summary.at["Duplicate records (left out)", "deals"] == 1
    assert summary.at["Duplicate records (left out)", "share"] == pytest.approx(1 / 10)
    assert wl.is_other_reason(
        pd.Series(["Other", "other - budget", "Otherwise", "Price", None])
    ).tolist() == [True, True, True, False, False]


def test_headlines_and_what_to_look_at(review):
    rv = review()
    overall, change, reasons = rv.overall, rv.change, rv.reasons_count
    # the checks of loss reasons and duplicates (the qualifying check left out)
    summary = wl.quality_summary(overall, rv.issues, rv.duplicates)
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
    by_dim = {"rep": review(2).by_dim["rep"]}
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


def test_thin_records_without_dates_or_amounts(thin_engine, thin_wl_dir):
    rv = review_on(thin_engine, thin_wl_dir)
    # no dates at all: every closed record counts; 2 won of 6
    r = rv.overall.iloc[0]
    assert not rv.dated
    assert (r["deals"], r["won"]) == (6, 2)
    assert math.isnan(r["value_win_rate"])
    assert rv.top_lost["opportunity_id"].tolist() == ["S2", "S3", "S5", "S7"]
    assert rv.reasons_count["reason"].tolist() == ["Price", "(no reason)", "Timing"]
    side = rv.side.set_index("metric")
    assert side.at["Median deal size", "needs"] == "amounts (opportunities.amount)"
    assert side.at["Median cycle (days)", "needs"] == "created_date and close_date"


def test_value_rate_withheld_when_lost_amounts_are_missing(value_engine, value_wl_dir):
    # October: won 100; lost without an amount and lost for 0 -> no lost deal carries a positive amount:
    # a 100% value win rate (100 / 100) would only mean lost deals carry no amount. Count rate 1/3.
    rv = review_on(value_engine, value_wl_dir)
    r = rv.overall.iloc[0]
    assert (r["deals"], r["won"], r["won_amount"], r["closed_amount"]) == (3, 1, 100.0, 100.0)
    assert r["win_rate"] == pytest.approx(1 / 3) and math.isnan(r["value_win_rate"])
    assert "value" in rv.needs and not rv.has_amounts
    # September: won 100, lost 50 -> 100 / 150
    assert rv.overall_comparison.at[0, "value_win_rate"] == pytest.approx(100 / 150)
    # the pipeline's win rate reads the same sums (expr.outcome_sums)
    october = expr.win_rate(value_engine, "2026-10-01", "2026-10-31")
    assert october["win_rate_count"] == pytest.approx(1 / 3) and math.isnan(october["win_rate_value"])


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
