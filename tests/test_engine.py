"""The metric engine (helpers.data.engine) and the metrics as Ibis expressions (helpers.metrics.expr).

Every metric runs on embedded DuckDB, on a real PostgreSQL server started by the test (conftest.pg_server)
and on local Spark, and must give the pandas functions' figures: on the sample dataset against
helpers.metrics.pipeline / winloss, and on a nine-deal dataset against figures worked out by hand.
PostgreSQL is skipped only when its binaries are absent, Spark only when Java is; `.ci/run` installs both.
"""

from __future__ import annotations

import math
import shutil
import subprocess
import sys
from pathlib import Path

import movement_reference as movement
import numpy as np
import pandas as pd
import pandas.testing as pdt
import pytest
import winloss_reference
import yaml
from conftest import (
    PG_PASSWORD,
    PG_USER,
    SAMPLE_AS_OF,
    dataset_in_postgres,
    engine_of,
    hand_folder,
    open_engine,
)

from helpers.data import engine as eng_mod
from helpers.data.calendar import Window, trailing_window
from helpers.data.config import load_config
from helpers.data.dataset import DataValidationError, find_table_files, load
from helpers.data.sources import SourceError
from helpers.metrics import expr, pipeline, winloss

REL = 1e-9
# windows on the sample (fiscal year from February; as_of 2026-10-31): YTD, a quarter, a month, a day,
# and one before any deal closed
WINDOWS = [
    ("2026-02-01", SAMPLE_AS_OF),
    ("2026-08-01", SAMPLE_AS_OF),
    ("2026-10-01", SAMPLE_AS_OF),
    ("2026-06-15", "2026-06-15"),
    ("2001-01-01", "2001-12-31"),
]

HAND_CONFIG = {
    "name": "Nine deals",
    "currency": "USD",
    "as_of": "2026-10-31",
    "stages": [
        {"name": "Discovery", "probability": 0.2},
        {"name": "Proposal", "probability": 0.4},
        {"name": "Closed Won", "probability": 1.0},
        {"name": "Closed Lost", "probability": 0.0},
    ],
    "won_stages": ["Closed Won"],
    "lost_stages": ["Closed Lost"],
}
HAND_OPPS = """opportunity_id,owner,created_date,close_date,stage,amount,is_closed,is_won,segment,probability
o1,A1,2026-01-05,2026-10-03,Closed Won,100,true,true,SMB,
o2,A1,2026-01-05,2026-10-10,Closed Won,,true,true,SMB,
o3,A2,2026-02-01,2026-10-31,Closed Lost,300,true,false,Enterprise,
o4,A2,2026-02-01,2026-10-15,Closed Lost,,true,false,,
o5,A1,2026-03-01,2026-09-30,Closed Won,1000,true,true,SMB,
o6,A3,2026-03-01,2026-11-30,Proposal,400,false,false,SMB,0.5
o7,A3,2026-03-01,2026-12-15,Proposal,200,false,false,Enterprise,
o8,A1,2026-04-01,,Discovery,,false,false,SMB,
o9,,2026-04-01,2026-10-20,Closed Won,50,true,true,Enterprise,
"""
HAND_REPS = "rep_id,name,team\nA1,Ann,East\nA2,Bo,West\nA3,Cy,\n"
# o6 is created (03-01) before its first change (03-05) and its second change leaves amount empty (the
# 300 carries forward); o3 has history up to its loss; the other deals have none (replayed from their
# created and close dates)
HAND_HISTORY = """opportunity_id,changed_at,stage,amount,close_date
o6,2026-03-05 10:00:00,Discovery,300,2026-10-15
o6,2026-09-15 16:30:00,Proposal,,2026-11-30
o3,2026-02-10 09:00:00,Discovery,250,2026-09-30
o3,2026-10-31 09:00:00,Closed Lost,300,2026-10-31
"""


# --------------------------------------------------------------------------------------------------
# engines
# --------------------------------------------------------------------------------------------------
@pytest.fixture(scope="session")
def hand_dir(tmp_path_factory) -> Path:
    return hand_folder(
        tmp_path_factory,
        "nine_deals",
        HAND_CONFIG,
        opportunities=HAND_OPPS,
        reps=HAND_REPS,
        opportunity_history=HAND_HISTORY,
    )


sample_engine = engine_of("sample_dir", "crm_engine")
hand_engine = engine_of("hand_dir", "nine_deals")


def _same(a: dict, b: dict):
    assert a.keys() == b.keys()
    for k in a:
        if isinstance(b[k], float) and math.isnan(b[k]):
            assert math.isnan(a[k]), k
        elif isinstance(b[k], int):
            assert a[k] == b[k], k
        else:
            assert a[k] == pytest.approx(b[k], rel=REL), k


# --------------------------------------------------------------------------------------------------
# figures worked out by hand (window October 2026)
# --------------------------------------------------------------------------------------------------
def test_win_rate_by_hand(hand_engine):
    # closed in October: o1, o2 (won, no amount), o3, o4 (lost, no amount), o9 (won, no owner)
    got = expr.win_rate(hand_engine, "2026-10-01", "2026-10-31")
    _same(
        got,
        {
            "closed": 5,
            "won": 3,
            "lost": 2,
            "win_rate_count": 3 / 5,
            "won_value": 150.0,  # o1 + o9; o2 has no amount: counted above, worth nothing here
            "closed_value": 450.0,
            "win_rate_value": 150 / 450,
            "won_priced": 2,
            "avg_deal_size": 75.0,  # (100 + 50) / 2: o2's unknown amount is not a zero
        },
    )
    # the day before the window (o5, 2026-09-30) and after it: nothing else
    assert expr.win_rate(hand_engine, "2026-09-30", "2026-09-30")["won_value"] == 1000.0
    empty = expr.win_rate(hand_engine, "2027-01-01", "2027-12-31")
    assert (
        empty["closed"] == 0 and math.isnan(empty["win_rate_count"]) and math.isnan(empty["win_rate_value"])
    )


def test_win_rates_by_segment_by_hand(hand_engine):
    got = expr.win_rates(hand_engine, "2026-10-01", "2026-10-31", by="segment")
    want = pd.DataFrame(
        {
            "group": ["Enterprise", "SMB", "(not set)"],
            "deals": [2, 2, 1],
            "won": [1, 2, 0],
            "lost": [1, 0, 1],
            "win_rate": [0.5, 1.0, 0.0],
            "won_amount": [50.0, 100.0, 0.0],
            "closed_amount": [350.0, 100.0, 0.0],
            # (not set): its one lost deal has no amount, so no value rate
            "value_win_rate": [50 / 350, 1.0, math.nan],
            "avg_deal_size": [50.0, 100.0, math.nan],
        }
    )
    pdt.assert_frame_equal(got, want, check_dtype=False, rtol=REL)


def test_bookings_by_hand(hand_engine):
    total = expr.bookings(hand_engine, "2026-10-01", "2026-10-31")
    assert total.to_dict("records") == [{"group": "All", "bookings": 150.0, "deals": 3}]
    by_owner = expr.bookings(hand_engine, "2026-10-01", "2026-10-31", by="owner", missing=None)
    assert by_owner.to_dict("records") == [{"group": "A1", "bookings": 100.0, "deals": 2}]
    by_team = expr.bookings(hand_engine, "2026-10-01", "2026-10-31", by="team")
    assert by_team.to_dict("records") == [
        {"group": "(not set)", "bookings": 50.0, "deals": 1},
        {"group": "East", "bookings": 100.0, "deals": 2},
    ]
    nothing = expr.bookings(hand_engine, "2027-01-01", "2027-01-31")
    assert nothing.to_dict("records") == [{"group": "All", "bookings": 0.0, "deals": 0}]


def test_bookings_per_owner_are_asked_once_for_every_window(hand_engine, monkeypatch):
    # bookings against plan by rep and by team over some of the windows asked of the engine (``asked``)
    # equal those asked alone; on PostgreSQL the later calls send no query: the sums per owner of every
    # window came back with the first
    import io

    from helpers.data.calendar import FiscalCalendar

    W = FiscalCalendar(1).windows(pd.Timestamp("2026-10-31"))
    reps = pd.read_csv(io.StringIO(HAND_REPS), dtype="str")
    opps = hand_engine["opportunities"]
    two = {k: W[k] for k in ("MTD", "YTD")}
    alone_rep = pipeline.bookings_vs_plan(opps, None, {"QTD": W["QTD"]}, by="rep")
    alone_team = pipeline.bookings_vs_plan(opps, None, two, by="team", reps=reps)
    every = pipeline.bookings_vs_plan(opps, None, W, by="rep", asked=W)
    calls = []
    if hand_engine.name == "postgres":
        backend = type(hand_engine.backend)
        run = backend.execute
        monkeypatch.setattr(backend, "execute", lambda self, *a, **k: calls.append(a) or run(self, *a, **k))
    by_rep = pipeline.bookings_vs_plan(opps, None, {"QTD": W["QTD"]}, by="rep", asked=W)
    by_team = pipeline.bookings_vs_plan(opps, None, two, by="team", reps=reps, asked=W)
    assert calls == []
    pdt.assert_frame_equal(by_rep, alone_rep)
    pdt.assert_frame_equal(by_team, alone_team)
    qtd = every[every["window"] == "QTD"].reset_index(drop=True)
    pdt.assert_frame_equal(qtd, alone_rep)
    assert by_team["bookings"].sum() > 0 and set(by_team["window"]) == {"MTD", "YTD"}


def test_pipeline_by_stage_by_hand(hand_engine):
    got = expr.pipeline_by_stage(hand_engine)
    want = pd.DataFrame(
        {
            "stage": ["Discovery", "Proposal"],
            "deals": [1, 2],
            "default_probability": [0.2, 0.4],
            "amount": [0.0, 600.0],
            # o6 carries its own probability (0.5); o7 takes Proposal's default (0.4)
            "weighted_crm": [0.0, 400 * 0.5 + 200 * 0.4],
        }
    )
    pdt.assert_frame_equal(got, want, check_dtype=False, rtol=REL)


# --------------------------------------------------------------------------------------------------
# the sample: the same figures as the pandas functions
# --------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(("start", "end"), WINDOWS)
def test_win_rate_matches_pipeline_win_rate(sample_engine, sample, start, end):
    _same(expr.win_rate(sample_engine, start, end), pipeline.win_rate(sample.opportunities, start, end))


@pytest.mark.parametrize("by", [None, "segment", "region", "source", "deal_type", "team"])
def test_win_rates_match_winloss(sample_engine, sample, by):
    start, end = "2026-02-01", SAMPLE_AS_OF
    deals = winloss.prepare_deals(sample.opportunities, sample.reps, as_of=end)
    window = Window("ytd", pd.Timestamp(start), pd.Timestamp(end), pd.Timestamp(end), "YTD")
    want = winloss_reference.win_rates(winloss_reference.closed_in_window(deals, window), by=by, min_deals=1)
    got = expr.win_rates(sample_engine, start, end, by=by)
    assert len(got) > (1 if by else 0)
    cols = [c for c in got.columns if c in want.columns]
    assert len(cols) == 8
    pdt.assert_frame_equal(got[cols], want[cols], check_dtype=False, rtol=REL)


@pytest.mark.parametrize(("start", "end"), WINDOWS[:3])
def test_bookings_match_pipeline(sample_engine, sample, start, end):
    opps = sample.opportunities
    total = expr.bookings(sample_engine, start, end)
    assert total["bookings"].iloc[0] == pytest.approx(pipeline.bookings(opps, start, end), rel=REL)
    window = Window("w", pd.Timestamp(start), pd.Timestamp(end), pd.Timestamp(end), "w")
    for by, missing in (("rep", None), ("team", "(no team)")):
        plan = pipeline.bookings_vs_plan(opps, sample.quotas, {"w": window}, by=by, reps=sample.reps)
        want = plan.set_index(by)["bookings"]
        got = expr.bookings(sample_engine, start, end, by="owner" if by == "rep" else by, missing=missing)
        got = got.set_index("group")["bookings"]
        # bookings_vs_plan also lists the groups with a plan and nothing won (0)
        assert (want.drop(got.index) == 0).all()
        pdt.assert_series_equal(got, want[got.index], check_names=False, rtol=REL)
    won = opps[pipeline.is_won(opps) & opps["close_date"].between(start, end)]
    want = won.groupby("segment")["amount"].sum()
    got = expr.bookings(sample_engine, start, end, by="segment").set_index("group")["bookings"]
    pdt.assert_series_equal(got, want, check_names=False, rtol=REL)


def test_pipeline_by_stage_matches_pipeline(sample_engine, sample):
    want = pipeline.pipeline_by_stage(sample.opportunities, sample.config)
    got = expr.pipeline_by_stage(sample_engine)
    assert got["deals"].sum() == int(pipeline.is_open(sample.opportunities).sum()) > 0
    pdt.assert_frame_equal(got, want, check_dtype=False, rtol=REL)


# --------------------------------------------------------------------------------------------------
# history replay, waterfall, forecast snapshots: the same as helpers.metrics.movement
# --------------------------------------------------------------------------------------------------
REPLAY_DATES = {
    "sample": [*movement.weekly_dates("2026-08-01", SAMPLE_AS_OF), "2024-01-31", "2025-06-30"],
    "hand": ["2026-03-02", "2026-03-05", "2026-06-30", "2026-10-14", "2026-10-31"],
}


def _replayed(eng, dates) -> pd.DataFrame:
    got = eng.execute(expr.replay(eng, dates))
    for col in ("snapshot_date", "created_date", "close_date"):
        got[col] = pd.to_datetime(got[col]).astype("datetime64[us]")
    return got.sort_values(["snapshot_date", "opportunity_id"]).reset_index(drop=True)


def _check_replay(eng, folder: Path, dates):
    ds = load(folder)
    want = movement.replay(ds.opportunity_history, ds.opportunities, ds.config, dates)
    assert len(want) > 0
    pdt.assert_frame_equal(_replayed(eng, dates)[want.columns], want, check_dtype=False, rtol=REL)


def test_replay_matches_movement_replay_on_the_sample(sample_engine, sample_dir):
    _check_replay(sample_engine, sample_dir, REPLAY_DATES["sample"])


def test_replay_matches_movement_replay_by_hand(hand_engine, hand_dir):
    _check_replay(hand_engine, hand_dir, REPLAY_DATES["hand"])


def test_replay_by_hand(hand_engine):
    got = _replayed(hand_engine, ["2026-03-02", "2026-10-14"]).set_index(["snapshot_date", "opportunity_id"])
    o6 = got.loc[(pd.Timestamp("2026-03-02"), "o6")]  # before its history: its first row's values
    assert (o6["stage"], o6["amount"], o6["probability"]) == ("Discovery", 300.0, 0.2)
    o6 = got.loc[(pd.Timestamp("2026-10-14"), "o6")]  # Proposal since 09-15, amount carried forward
    assert (o6["stage"], o6["amount"], o6["close_date"]) == ("Proposal", 300.0, pd.Timestamp("2026-11-30"))
    o1 = got.loc[(pd.Timestamp("2026-03-02"), "o1")]  # no history, won now: it opened in the first open stage
    assert o1["stage"] == "Discovery" and o1["is_open"]
    assert got.loc[(pd.Timestamp("2026-10-14"), "o1")]["is_won"]  # closed on 10-03
    assert (pd.Timestamp("2026-03-02"), "o8") not in got.index  # created 04-01


# normalized rows of six deals: a stage held over several rows (d1, d5), empty stages (d2, d6), a
# change without a time (d2's last row), a close on the day the deal opened (d4: _seq breaks the tie)
NEIGHBOUR_ROWS = [
    ("d1", "2026-01-01", "Discovery", 0),
    ("d1", "2026-01-05", "Discovery", 0),
    ("d1", "2026-02-01", "Proposal", 0),
    ("d1", "2026-02-10", "Proposal", 0),
    ("d1", "2026-03-01", "Closed Won", 0),
    ("d2", "2026-01-01", "Discovery", 0),
    ("d2", "2026-01-02", None, 0),
    ("d2", "2026-01-03", None, 0),
    ("d2", "2026-01-04", "Discovery", 0),
    ("d2", None, "Proposal", 0),
    ("d4", "2026-04-01", "Proposal", 0),
    ("d4", "2026-04-01", "Closed Lost", 1),
    ("d5", "2026-01-01", "Discovery", 0),
    ("d5", "2026-01-02", "Proposal", 0),
    ("d5", "2026-01-03", "Discovery", 0),
    ("d5", "2026-01-04", "Discovery", 0),
    ("d6", "2026-05-01", None, 0),
]
# when each row's deal starts its next stay (worked out by hand; a stay starts where the stage differs
# from the row before, an empty stage always starts one; d2's Proposal has no time)
NEIGHBOUR_EXITS = [
    "2026-02-01", "2026-02-01", "2026-03-01", "2026-03-01", None,
    "2026-01-02", "2026-01-03", "2026-01-04", None, None,
    "2026-04-01", None,
    "2026-01-02", "2026-01-03", None, None,
    None,
]  # fmt: skip


@pytest.mark.parametrize("stages", [["Closed Lost", "Closed Won", "Discovery", "Proposal"], None])
def test_neighbours_find_when_the_next_stay_starts(hand_engine, stages):
    # with the stage values known, one sort of each deal's rows (one minimum per value); without them, a
    # second window over the rows numbered by the first: the same rows, and the exits worked out by hand
    rows = pd.DataFrame(NEIGHBOUR_ROWS, columns=["opportunity_id", "changed_at", "stage", "_seq"])
    rows["changed_at"] = pd.to_datetime(rows["changed_at"])
    rows = rows.assign(amount=1.0, close_date=rows["changed_at"], probability=float("nan"))
    rows["forecast_category"] = "Pipeline"
    t = expr.keyed(hand_engine["opportunities"], rows)
    got = hand_engine.execute(expr.neighbours(t, stages))
    got = got.sort_values(["opportunity_id", "_rn"]).reset_index(drop=True)
    assert got["_rn"].tolist() == [0, 1, 2, 3, 4, 0, 1, 2, 3, 4, 0, 1, 0, 1, 2, 3, 0]
    want = pd.to_datetime(pd.Series(NEIGHBOUR_EXITS, dtype=object)).astype("datetime64[us]")
    pdt.assert_series_equal(
        pd.to_datetime(got["_exit"]).astype("datetime64[us]"), want, check_names=False, check_dtype=False
    )
    assert got["_new"].tolist() == [1, 0, 1, 0, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 1]
    other = hand_engine.execute(
        expr.neighbours(t, None if stages else ["Closed Lost", "Closed Won", "Discovery", "Proposal"])
    )
    other = other.sort_values(["opportunity_id", "_rn"]).reset_index(drop=True)
    pdt.assert_frame_equal(got, other)


@pytest.mark.parametrize("stages", [["Closed Lost", "Closed Won", "Discovery", "Proposal"], None])
def test_neighbours_exits_only_for_the_stages_asked(hand_engine, stages):
    # ``exits``: a row in one of those stages gets the same ``_exit`` as without it, any other row ``_next``
    # (d7: a stage not asked for, on two rows before the next stay: its first row's _exit, 06-09, is not its
    # _next, 06-05; NEIGHBOUR_ROWS alone have no such row, so the last check could not hold)
    extra = [("d7", "2026-06-01", "Closed Won", 0), ("d7", "2026-06-05", "Closed Won", 0)]
    extra += [("d7", "2026-06-09", "Discovery", 0)]
    rows = pd.DataFrame(NEIGHBOUR_ROWS + extra, columns=["opportunity_id", "changed_at", "stage", "_seq"])
    rows["changed_at"] = pd.to_datetime(rows["changed_at"])
    rows = rows.assign(amount=1.0, close_date=rows["changed_at"], probability=float("nan"))
    rows["forecast_category"] = "Pipeline"
    t = expr.keyed(hand_engine["opportunities"], rows)

    def run(**kw):
        got = hand_engine.execute(expr.neighbours(t, stages, **kw))
        return got.sort_values(["opportunity_id", "_rn"]).reset_index(drop=True)

    every, some = run(), run(exits=["Discovery", "Proposal"])
    asked = some["stage"].isin(["Discovery", "Proposal"])
    assert asked.any() and (~asked).any()
    pdt.assert_frame_equal(some.drop(columns="_exit"), every.drop(columns="_exit"))
    pdt.assert_series_equal(some.loc[asked, "_exit"], every.loc[asked, "_exit"])
    pdt.assert_series_equal(some.loc[~asked, "_exit"], some.loc[~asked, "_next"], check_names=False)
    a, b = every.loc[~asked, "_exit"], every.loc[~asked, "_next"]
    assert (a.isna() != b.isna()).any() or (a != b)[a.notna() & b.notna()].any()  # the rows tell them apart


TIED_ROWS = [  # (deal, changed_at, stage, amount): rows of one deal at the same moment
    ("t1", "2026-01-01", "Discovery", 100.0),
    ("t1", "2026-02-01", "Proposal", 300.0),
    ("t1", "2026-02-01", "Proposal", 200.0),
    ("t2", "2026-03-01", "Proposal", 50.0),
    ("t2", "2026-03-01", "Discovery", 50.0),
    ("t2", "2026-03-02", "Closed Won", 50.0),
]


@pytest.mark.parametrize("stages", [["Closed Lost", "Closed Won", "Discovery", "Proposal"], None])
@pytest.mark.parametrize("reverse", [False, True])
def test_rows_at_the_same_moment_are_ordered_by_their_values(hand_engine, stages, reverse):
    # the last row at a moment is the deal's state after it: by stage (its place among the values), then
    # amount; whatever order the rows come in, on every engine (the sort alone may meet them in any order)
    rows = pd.DataFrame(
        TIED_ROWS[::-1] if reverse else TIED_ROWS, columns=["opportunity_id", "changed_at", "stage", "amount"]
    )
    rows["changed_at"] = pd.to_datetime(rows["changed_at"])
    rows = rows.assign(close_date=pd.Timestamp("2026-06-30"), probability=float("nan"), _seq=0)
    rows["forecast_category"] = "Pipeline"
    got = hand_engine.execute(expr.neighbours(expr.keyed(hand_engine["opportunities"], rows), stages))
    got = got.sort_values(["opportunity_id", "_rn"]).reset_index(drop=True)
    assert got["_rn"].tolist() == [0, 1, 2, 0, 1, 2]
    assert got["amount"].tolist() == [100.0, 200.0, 300.0, 50.0, 50.0, 50.0]
    assert got["stage"].tolist() == [
        "Discovery",
        "Proposal",
        "Proposal",
        "Discovery",
        "Proposal",
        "Closed Won",
    ]
    nxt = pd.to_datetime(got["_next"]).dt.strftime("%m-%d").fillna("-").tolist()
    assert nxt == ["02-01", "02-01", "-", "03-01", "03-02", "-"]


# deals whose history has rows at the same moment, each tie broken by the next value of the documented
# order: stage (as text: Discovery < Proposal), then amount, close date, probability; and a deal without
# history closed on the day it opened (its closing row follows its opening one)
TIED_OPPS = """opportunity_id,owner,created_date,close_date,stage,amount,is_closed,is_won,probability
t1,A1,2026-01-01,2026-06-30,Proposal,300,false,false,
t2,A1,2026-01-01,2026-06-30,Closed Won,50,true,true,
t3,A2,2026-01-01,2026-11-30,Proposal,80,false,false,
t4,A2,2026-01-01,2026-06-30,Proposal,70,false,false,
t5,A2,2026-05-01,2026-05-01,Closed Lost,10,true,false,
t6,A2,2026-01-01,2026-06-30,Proposal,500,false,false,
"""
TIED_HISTORY = [
    "t1,2026-01-01 09:00:00,Discovery,100,2026-06-30,",
    "t1,2026-02-01 10:00:00,Proposal,300,2026-06-30,",
    "t1,2026-02-01 10:00:00,Proposal,200,2026-06-30,",
    "t2,2026-03-01 09:00:00,Proposal,50,2026-06-30,",
    "t2,2026-03-01 09:00:00,Discovery,50,2026-06-30,",
    "t2,2026-03-02 09:00:00,Closed Won,50,2026-06-30,",
    "t3,2026-04-10 12:00:00,Proposal,80,2026-11-30,0.3",
    "t3,2026-04-10 12:00:00,Proposal,80,2026-10-31,0.9",
    "t4,2026-04-10 12:00:00,Proposal,70,2026-06-30,0.6",
    "t4,2026-04-10 12:00:00,Proposal,70,2026-06-30,0.3",
    # an empty amount at the tie sorts first (missing first), then takes 700 from the row before: the
    # 500 row stays last
    "t6,2026-01-01 09:00:00,Discovery,700,2026-06-30,",
    "t6,2026-02-01 10:00:00,Proposal,,2026-06-30,",
    "t6,2026-02-01 10:00:00,Proposal,500,2026-06-30,",
]


@pytest.mark.parametrize("reverse", [False, True])
def test_replay_matches_movement_replay_with_rows_at_the_same_moment(tmp_path_factory, request, reverse):
    # the reference takes a deal's rows at the same moment in the documented order, not in file order:
    # whichever order the file holds them in, it and the engine replay the same, worked out by hand
    rows = TIED_HISTORY[::-1] if reverse else TIED_HISTORY
    folder = hand_folder(
        tmp_path_factory,
        "tied_rows",
        HAND_CONFIG,
        opportunities=TIED_OPPS,
        reps=HAND_REPS,
        opportunity_history="opportunity_id,changed_at,stage,amount,close_date,probability\n"
        + "\n".join(rows),
    )
    dates = ["2026-02-01", "2026-03-01", "2026-03-02", "2026-04-10", "2026-05-01"]
    eng = open_engine(request, "duckdb", folder, "tied_rows")
    try:
        _check_replay(eng, folder, dates)
    finally:
        eng.close()
    ds = load(folder)
    want = movement.replay(ds.opportunity_history, ds.opportunities, ds.config, dates)
    want = want.set_index(["snapshot_date", "opportunity_id"])
    by_hand = {
        ("2026-02-01", "t1"): ("Proposal", 300.0, "2026-06-30", 0.4),  # the larger amount last
        ("2026-03-01", "t2"): ("Proposal", 50.0, "2026-06-30", 0.4),  # Proposal after Discovery
        ("2026-03-02", "t2"): ("Closed Won", 50.0, "2026-06-30", 1.0),
        ("2026-04-10", "t3"): ("Proposal", 80.0, "2026-11-30", 0.3),  # the later close date last
        ("2026-04-10", "t4"): ("Proposal", 70.0, "2026-06-30", 0.6),  # the higher probability last
        ("2026-05-01", "t5"): ("Closed Lost", 10.0, "2026-05-01", 0.0),  # closed on the day it opened
        ("2026-02-01", "t6"): ("Proposal", 500.0, "2026-06-30", 0.4),  # the empty amount first, as given
    }
    for (day, deal), (stage, amount, close, prob) in by_hand.items():
        got = want.loc[(pd.Timestamp(day), deal)]
        assert (got["stage"], got["amount"], got["close_date"], got["probability"]) == (
            stage,
            amount,
            pd.Timestamp(close),
            prob,
        ), (day, deal)


def test_normalized_history_is_the_same_either_way(hand_engine, monkeypatch):
    # the stage values known (the nine deals have four) or too many to count: the same rows
    def rows():
        n = hand_engine.execute(expr.normalized_history(hand_engine))
        return n.sort_values(["opportunity_id", "_rn"]).reset_index(drop=True)

    assert expr._stage_values(
        hand_engine, hand_engine["opportunity_history"], hand_engine["opportunities"], hand_engine.config
    ) == ["Closed Lost", "Closed Won", "Discovery", "Proposal"]
    known = rows()
    monkeypatch.setattr(expr, "STAGE_VALUES_AT_MOST", 3)
    assert (
        expr._stage_values(
            hand_engine, hand_engine["opportunity_history"], hand_engine["opportunities"], hand_engine.config
        )
        is None
    )
    pdt.assert_frame_equal(known, rows())
    assert known["_exit"].notna().sum() > 0


def _check_waterfall(eng, folder: Path, start, end):
    ds = load(folder)
    history, opps = ds.opportunity_history, ds.opportunities
    want = movement.waterfall(
        movement.waterfall_deals(history, opps, ds.config, start, end, as_of=SAMPLE_AS_OF)
    )
    got = expr.waterfall(eng, start, end, as_of=SAMPLE_AS_OF)
    assert want["deals"].sum() > 0
    pdt.assert_frame_equal(got, want[["term", "amount", "deals"]], check_dtype=False, rtol=REL, atol=1e-6)


@pytest.mark.parametrize(("start", "end"), [("2026-08-01", "2026-10-31"), ("2026-05-01", "2026-07-31")])
def test_waterfall_matches_movement_waterfall_on_the_sample(sample_engine, sample_dir, start, end):
    _check_waterfall(sample_engine, sample_dir, start, end)


def test_waterfall_matches_movement_waterfall_by_hand(hand_engine, hand_dir):
    _check_waterfall(hand_engine, hand_dir, "2026-10-01", "2026-12-31")


def test_forecast_snapshots_match_forecast_accuracy(sample_engine, sample):
    start, end = "2026-05-01", "2026-07-31"
    want = movement.forecast_accuracy(
        sample.opportunity_history, sample.opportunities, sample.config, start, end
    )
    got = expr.forecast_snapshots(sample_engine, start, end, movement.weekly_dates(start, end))
    pdt.assert_frame_equal(got, want[got.columns], check_dtype=False, rtol=REL)


# --------------------------------------------------------------------------------------------------
# pipeline movement on the engine (helpers.metrics.history) against helpers.metrics.movement
# --------------------------------------------------------------------------------------------------
def as_then(rewound: pd.DataFrame, as_of) -> pd.DataFrame:
    """Deals rewound to ``as_of`` as an engine gives them: without next_step (as exported, it has no history)
    and with no last activity after that day (``history.AS_EXPORTED``)."""
    out = rewound.drop(columns=[c for c in ("next_step",) if c in rewound.columns])
    if "last_activity_date" in out.columns:
        la = out["last_activity_date"]
        out = out.assign(last_activity_date=la.mask(la > pd.Timestamp(as_of)))
    return out


def _movement_check(eng, ds, scope: str, who: str, as_of, qtd_start):
    """Every measurement pipeline health makes from the history, on the engine and in pandas: the same
    figures (sums within 1e-9), the same lists (the engine breaks ties of amount by deal id)."""
    from helpers.data.calendar import FiscalCalendar
    from helpers.metrics import history as hi

    cfg, as_of = ds.config, pd.Timestamp(as_of)
    sc = pipeline.Scoped(ds, scope, who)  # the scope's owners and deals now
    # the reference's scope: the scope's history (cut at the day) and its deals as they stood then
    hist = ds.opportunity_history
    hist = hist[hist["opportunity_id"].isin(pipeline.in_scope(ds.opportunities, sc.owners)["opportunity_id"])]
    sc.history = hist[hist["changed_at"] < as_of + pd.Timedelta(days=1)]
    if as_of < ds.as_of:
        sc.opps = as_then(
            movement.rewind(pipeline.in_scope(ds.opportunities, sc.owners), sc.history, cfg, as_of), as_of
        )
    now = hi.deals(
        eng, sc.owners, ds.as_of, ds.as_of
    )  # the rewound history made from today's (as reports do)
    d = hi.deals(eng, sc.owners, as_of, ds.as_of, base=now)
    if as_of < ds.as_of:  # and normalized again from the cut history: the same deals
        again = hi.deals(eng, sc.owners, as_of, ds.as_of)
        table = eng["opportunities"]
        pdt.assert_frame_equal(pipeline.working_set(again, table, None), pipeline.working_set(d, table, None))
    norm = movement.normalized_history(sc.history, sc.opps, cfg)
    # the rewound deals
    got = pipeline.working_set(d, eng["opportunities"], None)
    pdt.assert_frame_equal(got.reset_index(drop=True), sc.opps.reset_index(drop=True))
    # stage win rates and conversion over every deal as it is now
    everyone = hi.deals(eng, None, ds.as_of, ds.as_of)
    reached = movement.stages_reached(ds.opportunity_history, ds.opportunities, cfg)
    amounts = ds.opportunities.set_index("opportunity_id")["amount"]
    want = movement.stage_win_rates(reached.assign(amount=reached["opportunity_id"].map(amounts)), cfg)
    r = hi.reached(everyone, cfg)
    pdt.assert_frame_equal(hi.stage_win_rates(r, eng, cfg), want, check_dtype=False, rtol=REL)
    for variant in ("any", "strict"):
        pdt.assert_frame_equal(
            hi.stage_conversion(r, eng, cfg, variant), movement.stage_conversion(reached, cfg, variant)
        )
    # days in stage, stalled and slipped deals of the scope
    visits = movement.stage_visits(sc.history, sc.opps, cfg, as_of, normalized=norm)
    bench = movement.days_in_stage_benchmark(visits, cfg)
    stays = hi.stays(d, cfg)
    pdt.assert_frame_equal(hi.days_in_stage_benchmark(stays, eng, cfg), bench, check_dtype=False)
    want = movement.stalled_deals(visits, sc.opps, bench)
    want = want.sort_values(["amount", "opportunity_id"], ascending=[False, True], kind="stable")
    got = hi.stalled_deals(stays, d, bench)
    pdt.assert_frame_equal(got, want.reset_index(drop=True), check_dtype=False)
    want = movement.slipped_deals(sc.history, sc.opps, cfg, qtd_start, as_of, normalized=norm)
    got = hi.slipped_deals(d, cfg, qtd_start, as_of)
    pdt.assert_frame_equal(got, want[got.columns], check_dtype=False)
    # as the report reads them: the totals, every open deal and the first closed ones (ties at the edge too)
    closed = got["is_closed"].fillna(False).astype(bool)
    c, by = got[closed], ["times_pushed", "days_pushed"]
    tied = [i + 1 for i in range(len(c) - 1) if c.iloc[i][by].tolist() == c.iloc[i + 1][by].tolist()]
    for k in (1, 3, 10_000, *tied[:1]):  # (the sample's first tie at the edge)
        s = hi.slipped_summary(d, cfg, qtd_start, as_of, closed_rows=k)
        assert (s.count, s.pushes) == (len(got), int(got["times_pushed"].sum()))
        edge = c.iloc[min(k, len(c)) - 1][by].tolist() if len(c) else None
        first = c.head(k).index.union(c.index[(c[by] == edge).all(axis=1)])
        pdt.assert_frame_equal(s.deals, got.loc[~closed | got.index.isin(first)].reset_index(drop=True))
    # the sections' snapshots
    cal = FiscalCalendar(cfg.fiscal_year_start_month)
    for nq in (False, True):
        pdt.assert_frame_equal(
            hi.pipeline_same_day(d, cal, as_of, 4, nq),
            movement.pipeline_same_day(sc.history, sc.opps, cfg, cal, as_of, 4, nq, normalized=norm),
            rtol=REL,
        )
    month_ends = pd.date_range(as_of - pd.DateOffset(months=12), as_of, freq="ME")
    pdt.assert_frame_equal(
        hi.probability_calibration(d, cfg, month_ends),
        movement.probability_calibration(sc.history, sc.opps, cfg, month_ends, normalized=norm),
        rtol=REL,
    )
    start, end = "2026-05-01", "2026-07-31"
    pdt.assert_frame_equal(
        hi.forecast_accuracy(d, start, end),
        movement.forecast_accuracy(sc.history, sc.opps, cfg, start, end, normalized=norm),
        rtol=REL,
    )
    want = movement.waterfall(movement.waterfall_deals(sc.history, sc.opps, cfg, qtd_start, end, as_of, norm))
    pdt.assert_frame_equal(
        hi.waterfall(d, qtd_start, end, as_of), want, check_dtype=False, rtol=REL, atol=1e-6
    )
    week_ago = as_of - pd.Timedelta(days=7)
    want = movement.replay(sc.history, sc.opps, cfg, [week_ago, as_of], normalized=norm)
    pdt.assert_frame_equal(
        hi.snapshots(d, [week_ago, as_of])[want.columns], want, check_dtype=False, rtol=REL
    )
    return len(visits), len(want)


@pytest.mark.parametrize(
    ("scope", "who", "as_of", "qtd_start"),
    [
        ("company", "", SAMPLE_AS_OF, "2026-08-01"),
        ("company", "", "2026-09-30", "2026-08-01"),  # rewound: last month's figures
        ("rep", "AE002", "2026-09-30", "2026-08-01"),
        ("team", "EMEA", SAMPLE_AS_OF, "2026-08-01"),
    ],
)
def test_pipeline_movement_on_the_engine_matches_movement(
    sample_engine, sample, scope, who, as_of, qtd_start
):
    visits, rows = _movement_check(sample_engine, sample, scope, who, as_of, qtd_start)
    assert visits > 0 and rows > 0


def test_rewinding_without_an_engine_says_what_it_needs(sample):
    with pytest.raises(ValueError, match="engine"):
        pipeline.Scoped(sample, as_of="2026-09-30")


@pytest.mark.parametrize("as_of", [SAMPLE_AS_OF, "2026-09-20", "2026-03-02"])
def test_pipeline_movement_on_the_engine_matches_movement_by_hand(hand_engine, hand_dir, as_of):
    # o6 was created before its history starts; o3 is lost on the export date; most deals have no history
    _movement_check(hand_engine, load(hand_dir), "company", "", as_of, "2026-08-01")


# --------------------------------------------------------------------------------------------------
# the nine deals as a CRM writes them: PostgreSQL in place reads them as the files are read
# --------------------------------------------------------------------------------------------------
# the same deals as HAND_OPPS / HAND_HISTORY / HAND_REPS, with headers, stage spellings, padded text,
# true/false words and probabilities on a 0–100 scale as exports have them
MESSY_OPPS = """Opportunity ID,owner,created_date,close_date,Stage,amount,is_closed,is_won,segment,probability
o1, A1 ,2026-01-05,2026-10-03,closed won,100,Yes,won,SMB ,
o2,A1,2026-01-05,2026-10-10,CLOSED  WON,,closed,Y,SMB,
o3,A2,2026-02-01,2026-10-31,Closed Lost,300,true,lost,Enterprise,
o4,A2,2026-02-01,2026-10-15, closed lost,,,,  ,
o5,A1,2026-03-01,2026-09-30,Closed Won,1000,1,1,SMB,
o6,A3,2026-03-01,2026-11-30,proposal,400,open,N,SMB,50
o7,A3,2026-03-01,2026-12-15,PROPOSAL,200,False,no,Enterprise,
o8,A1,2026-04-01,,discovery,,0,0,SMB,
o9,,2026-04-01,2026-10-20,Closed Won,50,TRUE,t,Enterprise,
"""
# probabilities 20 / 40 / 0 are the stages' defaults (0.2, 0.4, 0.0) once read on the 0–100 scale
MESSY_HISTORY = """opportunity_id,changed_at,stage,amount,close_date,probability
o6,2026-03-05 10:00:00,discovery,300,2026-10-15,20
o6,2026-09-15 16:30:00, Proposal ,,2026-11-30,40
o3,2026-02-10 09:00:00,DISCOVERY,250,2026-09-30,20
o3,2026-10-31 09:00:00,closed lost,300,2026-10-31,0
"""
MESSY_REPS = "rep_id,name,team\nA1,Ann, East\nA2,Bo,West \nA3,Cy,\n"
# the true/false words PostgreSQL's boolean type refuses (won, lost, closed, open) stay text there
MESSY_TYPES = {"opportunities.is_closed": "text", "opportunities.is_won": "text"}


def _figures(eng) -> dict:
    """The nine deals' figures on an engine: the ones test_*_by_hand pin, and the replay."""
    oct_ = ("2026-10-01", "2026-10-31")
    return {
        "win_rate": pd.DataFrame([expr.win_rate(eng, *oct_)]),
        "by_segment": expr.win_rates(eng, *oct_, by="segment"),
        "by_owner": expr.bookings(eng, *oct_, by="owner", missing=None),
        "by_team": expr.bookings(eng, *oct_, by="team"),
        "pipeline": expr.pipeline_by_stage(eng),
        "replay": _replayed(eng, REPLAY_DATES["hand"]),
        "waterfall": expr.waterfall(eng, "2026-10-01", "2026-12-31", as_of=SAMPLE_AS_OF),
    }


def test_postgres_reads_a_messy_table_as_the_files_are_read(request, hand_dir, tmp_path):
    """0–100 probabilities, stage spellings, true/false words, padded text and headers: DuckDB over the
    files (``dataset.load``'s parsing) and PostgreSQL in place (``engine.canonical``) give the figures of
    the clean nine deals."""
    messy = tmp_path / "messy"
    messy.mkdir()
    (messy / "dataset.yml").write_text(yaml.safe_dump(HAND_CONFIG, sort_keys=False))
    (messy / "opportunities.csv").write_text(MESSY_OPPS)
    (messy / "opportunity_history.csv").write_text(MESSY_HISTORY)
    (messy / "reps.csv").write_text(MESSY_REPS)
    request.getfixturevalue("pg_credentials")
    port = request.getfixturevalue("pg_server")
    in_pg = dataset_in_postgres(port, messy, "messy_deals", tmp_path / "in_pg", types=MESSY_TYPES)
    with eng_mod.connect(hand_dir) as clean, eng_mod.connect(messy) as files:
        want = _figures(clean)
        assert want["win_rate"]["closed"].iloc[0] == 5 and len(want["pipeline"]) == 2
        for name, got in _figures(files).items():
            pdt.assert_frame_equal(got, want[name], check_dtype=False, rtol=REL, obj=f"files {name}")
    with eng_mod.connect(in_pg) as pg:
        assert pg.name == "postgres"
        for name, got in _figures(pg).items():
            pdt.assert_frame_equal(got, want[name], check_dtype=False, rtol=REL, obj=f"postgres {name}")


# --------------------------------------------------------------------------------------------------
# the engine: cache, choice, errors
# --------------------------------------------------------------------------------------------------
def _copy(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst


def test_duckdb_cache_is_built_once_per_fingerprint_and_read_only(sample_dir, tmp_path, monkeypatch):
    folder = _copy(sample_dir, tmp_path / "ds")
    with eng_mod.connect(folder) as e:
        path = Path(e.where.split("DuckDB file ", 1)[1].split(" (read-only)")[0])
        assert path.exists() and path.suffix == ".duckdb"
        built = path.stat().st_mtime_ns
        before = expr.bookings(e, "2026-02-01", SAMPLE_AS_OF)["bookings"].iloc[0]
        with pytest.raises(Exception, match="(?i)read-only"):
            e.backend.raw_sql("create table x (a int)")
        # another process (a second kernel) opens the same file while this one holds it
        code = (
            "import duckdb, sys; c = duckdb.connect(sys.argv[1], read_only=True); "
            "print(c.execute('select count(*) from opportunities').fetchone()[0])"
        )
        out = subprocess.run(
            [sys.executable, "-c", code, str(path)], capture_output=True, text=True, check=True
        )
        assert int(out.stdout) == 1500
    with eng_mod.connect(folder) as again:
        assert again.where == e.where and path.stat().st_mtime_ns == built  # a hit: not rebuilt
    # built again from the load cache's Arrow files (the first build went through dataset.load)
    path.unlink()
    with monkeypatch.context() as mp:
        mp.setattr("helpers.data.dataset.load", lambda *a, **k: pytest.fail("loaded again"))
        rebuilt = eng_mod.connect(folder)
    with rebuilt:
        assert (
            path.exists() and expr.bookings(rebuilt, "2026-02-01", SAMPLE_AS_OF)["bookings"].iloc[0] == before
        )
        assert rebuilt["opportunities"].schema() == e["opportunities"].schema()
    # one changed byte in a source file: a new fingerprint, a new file with the new figures
    opps = pd.read_csv(folder / "opportunities.csv")
    won = opps.index[(opps["stage"] == "Closed Won") & (opps["close_date"] >= "2026-02-01")][0]
    opps.loc[won, "amount"] += 1
    opps.to_csv(folder / "opportunities.csv", index=False)
    with eng_mod.connect(folder) as changed:
        assert changed.where != e.where
        assert expr.bookings(changed, "2026-02-01", SAMPLE_AS_OF)["bookings"].iloc[0] == before + 1


def _engine_tables(path: Path) -> dict:
    import duckdb

    with duckdb.connect(str(path), read_only=True) as con:
        con.execute("set threads = 1")
        names = [r[0] for r in con.execute("select table_name from information_schema.tables").fetchall()]
        return {t: con.sql(f'select * from "{t}"').to_arrow_table() for t in sorted(names)}


def test_engine_file_written_beside_the_load_equals_the_one_from_the_load_cache(sample_dir, tmp_path):
    """The first build writes the DuckDB file from the load's frames while the load checks its rules and
    writes its own cache entry; a rebuild reads that entry's Arrow files: the same tables, row for row."""
    folder = _copy(sample_dir, tmp_path / "ds")
    path = eng_mod.typed_duckdb(folder, find_table_files(folder, load_config(folder)))
    first = _engine_tables(path)
    assert set(first) == set(load(folder).tables) and first["opportunities"].num_rows == 1500
    path.unlink()
    again = eng_mod.typed_duckdb(folder, find_table_files(folder, load_config(folder)))
    assert again == path
    rebuilt = _engine_tables(path)
    for t in first:
        assert first[t].equals(rebuilt[t]), t


def test_no_engine_file_is_kept_when_the_load_fails(sample_dir, tmp_path):
    """The file started beside the load is discarded when the load raises: the next connect validates
    again (and fails again) instead of opening tables that broke a rule."""
    folder = _copy(sample_dir, tmp_path / "ds")
    opps = pd.read_csv(folder / "opportunities.csv", dtype=str, keep_default_na=False)
    opps.loc[3, "opportunity_id"] = opps.loc[2, "opportunity_id"]  # a rule across rows: ids are unique
    opps.to_csv(folder / "opportunities.csv", index=False)
    sources = find_table_files(folder, load_config(folder))
    path = eng_mod.cache_file(folder, sources)
    for _ in range(2):
        with pytest.raises(DataValidationError, match="unique id"):
            eng_mod.connect(folder)
        assert not path.exists()
        assert not list(path.parent.glob(".tmp-engine-*"))


def test_uncached_dataset_runs_in_memory(sample_dir, monkeypatch):
    monkeypatch.setenv("REVOPS_CACHE", "0")
    with eng_mod.connect(sample_dir) as e:
        assert e.where.startswith("in-memory DuckDB")
        assert set(e.tables) == set(load(sample_dir).tables)
        assert expr.win_rate(e, "2026-02-01", SAMPLE_AS_OF)["closed"] > 0


@pytest.mark.parametrize("cached", [True, False])
def test_duckdb_memory_is_capped_and_spills_to_its_own_folder(hand_dir, tmp_path, monkeypatch, cached):
    """A kernel's DuckDB holds at most REVOPS_ENGINE_MEMORY (default 512MB, not DuckDB's 80% of the
    machine per kernel); a table larger than that still builds, spilled to the engine's own temporary
    folder (not the working directory nor beside the shared cache file), removed on close."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("REVOPS_ENGINE_MEMORY", raising=False)
    if not cached:
        monkeypatch.setenv("REVOPS_CACHE", "0")

    def setting(e, name):
        return e.backend.con.execute(f"select current_setting('{name}')").fetchone()[0]

    with eng_mod.connect(hand_dir) as e:
        assert setting(e, "memory_limit") == "488.2 MiB"  # 512MB as DuckDB prints it
    monkeypatch.setenv("REVOPS_ENGINE_MEMORY", "40MB")
    with eng_mod.connect(hand_dir) as e:
        spill = Path(setting(e, "temp_directory"))
        assert setting(e, "memory_limit") == "38.1 MiB"
        assert spill.is_dir() and spill.name.startswith("revops-duckdb-")
        # ~160 MB of doubles: four times the limit
        e.backend.raw_sql("create temp table big as select range::double x, random() y from range(10000000)")
        n, total = e.backend.con.execute("select count(*), sum(x) from big").fetchone()
        assert (n, total) == (10_000_000, 10_000_000 * 9_999_999 / 2)
        assert any(spill.iterdir())  # what did not fit went there
    assert not spill.exists()
    assert not any(tmp_path.iterdir())  # nothing written in the working directory
    monkeypatch.setenv("REVOPS_ENGINE_MEMORY", "lots")
    with pytest.raises(ValueError, match=r"REVOPS_ENGINE_MEMORY='lots' is not a memory size"):
        eng_mod.connect(hand_dir)


def test_a_notebook_asks_its_duckdb_cap_and_the_environment_wins(hand_dir, monkeypatch):
    """A notebook whose queries are light asks for a smaller DuckDB cap (``open_report(engine_memory=)``):
    the engine a warm kernel already holds follows, so do engines opened later, the next notebook's
    None puts the default back, and REVOPS_ENGINE_MEMORY when set wins."""
    from helpers.sections.context import open_report

    monkeypatch.delenv("REVOPS_ENGINE_MEMORY", raising=False)
    monkeypatch.setattr(eng_mod, "_ASKED_MEMORY", [None])
    monkeypatch.setattr(eng_mod, "_SHARED", {})

    def cap(e):
        return e.backend.con.execute("select current_setting('memory_limit')").fetchone()[0]

    try:
        e = eng_mod.shared(hand_dir)
        assert cap(e) == "488.2 MiB"  # 512MB
        open_report(str(hand_dir), show_header=False, engine_memory="256MB")
        assert cap(e) == "244.1 MiB"
        with eng_mod.connect(hand_dir) as later:
            assert cap(later) == "244.1 MiB"
        open_report(str(hand_dir), show_header=False)  # the next notebook asks nothing
        assert cap(e) == "488.2 MiB"
        monkeypatch.setenv("REVOPS_ENGINE_MEMORY", "40MB")
        eng_mod.set_memory("256MB")
        assert cap(e) == "38.1 MiB"
        monkeypatch.delenv("REVOPS_ENGINE_MEMORY")
        with pytest.raises(ValueError, match=r"engine_memory='lots' is not a memory size"):
            eng_mod.set_memory("lots")
        # a bad size is not recorded: the previous setting (256MB) stays for the open and later engines
        assert eng_mod.memory_limit() == "256MB"
        with eng_mod.connect(hand_dir) as later:
            assert cap(later) == "244.1 MiB"
        eng_mod.set_memory(None)
        assert cap(e) == "488.2 MiB"
    finally:
        for eng in eng_mod._SHARED.values():
            eng.close()


def test_a_second_engine_on_a_file_that_spilled_spills_to_the_same_folder(hand_dir, monkeypatch):
    """DuckDB keeps one database per file in a process, and once it has spilled its temporary folder
    cannot be switched: a second engine on the same file (a notebook's ``connect`` beside the kernel's
    shared engine) opens, spills to the first one's folder, and the last of them to close removes it."""
    monkeypatch.setenv("REVOPS_ENGINE_MEMORY", "50MB")
    first = eng_mod.connect(hand_dir)
    try:
        con = first.backend.con
        con.execute("create temp table _big as select range as i from range(20000000)")  # 160 MB
        (spill,) = con.execute("select current_setting('temp_directory')").fetchone()
        assert Path(spill).name.startswith("revops-duckdb-") and any(Path(spill).iterdir())  # it spilled
        with eng_mod.connect(hand_dir) as second:
            c2 = second.backend.con
            assert c2.execute("select current_setting('temp_directory')").fetchone() == (spill,)
            assert c2.execute("select count(*) from opportunities").fetchone() == (9,)  # nine deals
        assert Path(spill).is_dir()  # the first engine still spills there
        assert con.execute("select count(*), sum(i) from _big").fetchone() == (20000000, 199999990000000)
    finally:
        first.close()
    assert not Path(spill).exists()


def test_engine_is_chosen_by_argument_environment_then_dataset_yml(hand_dir, tmp_path, monkeypatch):
    monkeypatch.delenv("REVOPS_ENGINE", raising=False)
    cfg = eng_mod.load_config(hand_dir)
    assert eng_mod.engine_name(cfg, {}) == "duckdb"
    folder = _copy(hand_dir, tmp_path / "ds")
    (folder / "dataset.yml").write_text(yaml.safe_dump({**HAND_CONFIG, "engine": "Spark"}))
    cfg = eng_mod.load_config(folder)
    assert eng_mod.engine_name(cfg, {}) == "spark"
    monkeypatch.setenv("REVOPS_ENGINE", "postgresql")
    assert eng_mod.engine_name(cfg, {}) == "postgres"
    assert eng_mod.engine_name(cfg, {}, engine="duckdb") == "duckdb"
    monkeypatch.setenv("REVOPS_ENGINE", "oracle")
    with pytest.raises(
        eng_mod.EngineError, match="engine 'oracle' \\(from REVOPS_ENGINE\\): expected one of"
    ):
        eng_mod.engine_name(cfg, {})


def test_postgres_engine_needs_every_table_in_the_database(hand_dir):
    with pytest.raises(eng_mod.EngineError, match="opportunities, opportunity_history, reps come from files"):
        eng_mod.connect(hand_dir, engine="postgres")


def test_postgres_dataset_defaults_to_postgres_and_hides_the_password(pg_dataset, monkeypatch):
    monkeypatch.delenv("REVOPS_ENGINE", raising=False)
    monkeypatch.setenv("REVOPS_TEST_DB_USER", PG_USER)
    monkeypatch.setenv("REVOPS_TEST_DB_PASSWORD", PG_PASSWORD)
    with eng_mod.connect(pg_dataset) as e:
        assert e.name == "postgres" and PG_PASSWORD not in e.where and "***" in e.where
    wrong = "Wr0ng-Passw0rd-456"
    monkeypatch.setenv("REVOPS_TEST_DB_PASSWORD", wrong)
    with pytest.raises(SourceError, match="password authentication failed") as exc:
        eng_mod.connect(pg_dataset)
    assert wrong not in str(exc.value) and PG_PASSWORD not in str(exc.value)


# --------------------------------------------------------------------------------------------------
# the activity log: every metric over it runs on the engine's table and gives what it gives over the
# loaded frame (an in-memory table); on DuckDB, PostgreSQL and Spark
# --------------------------------------------------------------------------------------------------
def _activity_results(log, sample, deals_at=None):
    """The activity measures over ``log``; those that read the opportunities over ``deals_at`` (where
    they live) when given, else the loaded frame."""
    from helpers.data.calendar import trailing_window, weeks_window
    from helpers.metrics import activity as A
    from helpers.metrics import pipeline as pl
    from helpers.metrics import quota as Q

    reps, as_of = sample.reps, sample.as_of
    opps = sample.opportunities if deals_at is None else deals_at
    vs, ve = weeks_window(as_of, 13)
    ys, ye = trailing_window(as_of, 12)
    team = sorted(reps.loc[reps["team"] == reps["team"].dropna().iloc[0], "rep_id"].astype(str))
    sellers = Q.seller_ids(reps, opps)
    deals = A.deal_activity(log, opps, ys, ye)
    needed, rates = Q.benchmark_needs(log, opps, pd.Series(1000.0, index=sellers[:5]), as_of, reps=reps)
    sdrs = sorted(set(reps["rep_id"].astype(str)) - set(sellers))
    return {
        "counts_W": A.activity_counts(log, vs, ve, "W"),
        "counts_W_summed": A.activity_counts(log, vs, ve, "W", per_owner=False),
        "counts_window": A.activity_counts(log, vs, ve, None),
        "team_median": A.team_weekly_median(log, vs, ve, reps, reps["team"].dropna().iloc[0]),
        "counts_M_team": A.activity_counts(log, ys, ye, "M", owners=team),
        "counts_D": A.activity_counts(log, vs, ve, "D"),
        "rep_volume": A.rep_volume(log, as_of, 13, reps),
        "meeting_outcomes": A.meeting_outcomes(log, vs, ve, by="owner"),
        "hit_channel": A.hit_rates(log, vs, ve, "channel"),
        "hit_weekday": A.hit_rates(log, vs, ve, "weekday"),
        "hit_hour": A.hit_rates(log, vs, ve, "hour"),
        "share": A.opportunity_share(log, vs, ve, by="owner"),
        "yield": A.activity_yield(log, opps, ys, ye),
        "deals_segments": deals.segments,
        "deals_owners": deals.owners,
        "deals_won_totals": deals.won_totals.to_frame(),
        "deals_with_type": deals.with_type.sort_values(["segment", "type"], ignore_index=True),
        "deals_won_active": deals.won_active.sort_index().to_frame(),
        "yield_team": A.activity_yield(A.scoped(log, team), A.opportunities(opps, team), ys, ye),
        "benchmark_needed": needed,
        "benchmark_rates": rates.to_frame(),
        "won_deal_activity": pd.DataFrame([A.won_deal_activity(deals)]),
        "win_association": A.win_association(deals, min_deals=5),
        "win_association_segment": A.win_association(deals, by="segment", min_deals=5),
        "logging_completeness": A.logging_completeness(log, opps, ys, ye, deals=deals),
        "sequences": A.winning_sequences(log, opps, ys, ye),
        "funnel": A.funnel_rates(log, opps, ys, ye, owners=sellers).to_frame(),
        "actual": A.actual_activity(log, ys, ye, 12),
        "time": A.time_by_type(log, vs, ve, 13),
        "ae_activity": pd.DataFrame([Q.ae_activity(log, ys, ye, sellers)]),
        "sdr_meetings": Q.sdr_events(log, None)["meetings"].sort_values(
            ["rep_id", "month"], ignore_index=True
        ),
        "sdr_meetings_of_sdrs": Q.sdr_events(log, None, rep_ids=sdrs, months=Q.history_months(as_of))[
            "meetings"
        ].sort_values(["rep_id", "month"], ignore_index=True),
        "last_activity": pl.last_activity_days(log, sample.opportunities["opportunity_id"])
        .sort_index()
        .to_frame(),
        "recent": A.recent_activity(log, sample.opportunities["opportunity_id"].head(200), as_of, 30),
        "counts": pd.DataFrame([[A.count(log, vs, ve), A.count(log, vs, ve, distinct="owner")]]),
    }


def _lead_results(leads, opps_table, sample):
    from helpers.data.calendar import trailing_window
    from helpers.metrics import pipeline as pl
    from helpers.metrics import quota as Q

    ys, ye = trailing_window(sample.as_of, 12)
    team = sample.reps["team"].dropna().iloc[0]
    scoped = pl.Scoped(sample, "team", team, leads=leads)
    events = Q.sdr_events(None, leads, opps_table)["opportunities"]
    return {
        "funnel": pl.lead_funnel(leads, sample.opportunities, ys, ye),
        "funnel_segment": pl.lead_funnel(leads, sample.opportunities, ys, ye, by="segment"),
        "funnel_team": pl.lead_funnel(scoped.leads, scoped.opps, ys, ye),
        "sdr_opportunities": events.sort_values(["rep_id", "month"], ignore_index=True),
    }


def test_lead_metrics_run_on_the_engine(sample_engine, sample):
    want = _lead_results(sample.leads, sample.opportunities, sample)
    assert want["funnel"]["leads"].sum() > 0 and len(want["funnel_team"]) and len(want["sdr_opportunities"])
    got = _lead_results(sample_engine["leads"], sample_engine["opportunities"], sample)
    for key in want:
        pd.testing.assert_frame_equal(got[key], want[key], check_exact=False, rtol=1e-9, obj=key)


@pytest.fixture(scope="module")
def activity_reference(sample):
    return _activity_results(sample.activities, sample)


def test_activity_metrics_run_on_the_engine(sample_engine, sample, activity_reference):
    got = _activity_results(sample_engine["activities"], sample)
    for key, want in activity_reference.items():
        if key == "counts_W":
            assert len(want) and want["total"].sum() > 0
        pd.testing.assert_frame_equal(got[key], want, check_exact=False, rtol=1e-9, obj=key)


def test_activity_metrics_run_where_the_opportunities_live(sample_engine, sample, activity_reference):
    # the log and the opportunities both on the engine: the deals joined with the log there
    got = _activity_results(sample_engine["activities"], sample, deals_at=sample_engine["opportunities"])
    for key, want in activity_reference.items():
        pd.testing.assert_frame_equal(got[key], want, check_exact=False, rtol=1e-9, obj=key)


# --------------------------------------------------------------------------------------------------
# a report that leaves the opportunities where they live
# --------------------------------------------------------------------------------------------------
def test_inferred_as_of_on_the_engine_by_hand(hand_engine, hand_dir):
    from helpers.data.dataset import infer_as_of

    # created dates end 2026-04-01; closed deals' close dates end 2026-10-31 (o3); the open o7 closes
    # 2026-12-15, which does not count
    assert hand_engine.inferred_as_of() == pd.Timestamp("2026-10-31")
    assert hand_engine.inferred_as_of() == infer_as_of(load(hand_dir).opportunities)


def test_inferred_as_of_on_the_engine_is_the_loaded_one(sample_engine, sample):
    from helpers.data.dataset import infer_as_of

    assert sample_engine.inferred_as_of() == infer_as_of(sample.opportunities)


def test_a_report_can_leave_the_opportunities_on_the_engine(hand_dir, tmp_path, monkeypatch):
    from helpers.data.dataset import infer_as_of
    from helpers.sections.context import open_report

    folder = _copy(hand_dir, tmp_path / "no_as_of")
    cfg = yaml.safe_load((folder / "dataset.yml").read_text())
    cfg.pop("as_of")  # inferred: from the engine when the opportunities are not loaded
    (folder / "dataset.yml").write_text(yaml.safe_dump(cfg, sort_keys=False))
    monkeypatch.setenv("REVOPS_CACHE_DIR", str(tmp_path / "cache"))
    full = load(folder)
    for _ in range(2):  # the load that builds the cache, then a hit
        part = load(folder, tables=["reps"])
        assert sorted(part.tables) == ["reps"] and "opportunities" in part.files
        with pytest.raises(KeyError, match="opportunities were not loaded.*set `as_of` in dataset.yml"):
            part.as_of  # noqa: B018 - a load alone cannot infer it
        assert [str(w) for w in part.warnings] == [
            str(w) for w in full.warnings if w.file in ("opportunities.csv", "reps.csv")
        ]
    ctx = open_report(str(folder), tables=["reps"], show_header=False)
    assert "opportunities" not in ctx.ds.tables
    assert ctx.as_of == ctx.ds.as_of == infer_as_of(full.opportunities) == pd.Timestamp("2026-10-31")
    for cols in [("amount",), ("segment", "probability"), ("competitor",), ("no_such_column",)]:
        assert ctx.has("opportunities", *cols) == full.has("opportunities", *cols), cols
        assert ctx.missing("opportunities", *cols) == full.missing("opportunities", *cols), cols
    assert ctx.source("opportunities").count().execute() == len(full.opportunities)
    named = open_report(str(folder), tables=["opportunities", "reps"], show_header=False)
    pdt.assert_frame_equal(named.ds.opportunities, full.opportunities)


def test_a_database_table_left_out_is_not_read(pg_dataset, pg_env, monkeypatch):
    from helpers.data import sources

    read = []
    real = sources.TableReader.read
    monkeypatch.setattr(sources.TableReader, "read", lambda self, t: read.append(t) or real(self, t))
    part = load(pg_dataset, tables=["reps", "quotas"])
    assert sorted(read) == ["quotas", "reps"] and sorted(part.tables) == ["quotas", "reps"]
    read.clear()
    both = load(pg_dataset, tables=["opportunities", "reps"])
    assert sorted(read) == ["opportunities", "reps"] and len(both.opportunities) > 0


def _kept_name(t) -> str:
    name = getattr(t.op(), "name", "")
    return name if isinstance(name, str) else ""


@pytest.mark.parametrize("cached", [True, False])
def test_duckdb_keeps_a_table_compressed_in_its_spill_folder(hand_dir, tmp_path, monkeypatch, cached):
    """What ``keep`` makes on DuckDB goes to a scratch database file in the engine's spill folder (stored
    compressed: at 10M opportunities a temporary table of the normalized history spilled about 6 GB
    uncompressed), not a temporary table; the shared typed file is not written; ``drop`` removes it and
    closing removes the file."""
    monkeypatch.chdir(tmp_path)
    if not cached:
        monkeypatch.setenv("REVOPS_CACHE", "0")
    with eng_mod.connect(hand_dir) as e:
        con = e.backend.con
        spill = Path(con.execute("select current_setting('temp_directory')").fetchall()[0][0])
        norm = expr.normalized_history(e)
        kept = e.keep(norm)
        name = _kept_name(kept)
        where = con.execute(
            "select database_name, temporary from duckdb_tables() where table_name = ?", [name]
        ).fetchall()
        assert where == [(e.kept_in, False)] and e.kept_in.startswith(eng_mod.KEPT_DB)
        assert (spill / f"{e.kept_in}.duckdb").is_file()
        key = ["opportunity_id", "_rn"]
        pdt.assert_frame_equal(
            e.execute(kept).sort_values(key).reset_index(drop=True),
            e.execute(norm).sort_values(key).reset_index(drop=True),
        )
        assert len(e.execute(kept)) > 0
        e.drop(kept)
        assert not con.execute("select 1 from duckdb_tables() where table_name = ?", [name]).fetchall()
        if cached:  # the shared typed file stays read-only
            with pytest.raises(Exception, match="read-only"):
                e.backend.raw_sql("create table opportunities_copy as select 1 x")
    assert not spill.exists()
    assert not any(tmp_path.iterdir())
    if cached:  # engines on one file share DuckDB's database in this process: each detaches its own on close

        def attached(x):
            return {
                r[0] for r in x.backend.con.execute("select database_name from duckdb_databases()").fetchall()
            }

        with eng_mod.connect(hand_dir) as other:
            second = eng_mod.connect(hand_dir)
            assert {second.kept_in, other.kept_in} <= attached(other)
            folder = Path(
                other.backend.con.execute("select current_setting('temp_directory')").fetchall()[0][0]
            )
            second.close()
            assert second.kept_in not in attached(other) and other.kept_in in attached(other)
            assert not (folder / f"{second.kept_in}.duckdb").exists()
            assert (folder / f"{other.kept_in}.duckdb").is_file()


def test_postgres_keeps_a_table_in_the_session_and_stays_read_only(request, hand_dir):
    # the normalized history is made once per scope as a temporary table; every other statement of the
    # connection is still refused a write
    import psycopg

    eng = open_engine(request, "postgres", hand_dir, "nine_deals_keep")
    try:
        norm = ex_norm = expr.normalized_history(eng)
        kept = eng.keep(ex_norm)
        assert _kept_name(kept).startswith("_kept_")
        key = ["opportunity_id", "_rn"]
        pdt.assert_frame_equal(
            eng.execute(kept).sort_values(key).reset_index(drop=True),
            eng.execute(norm).sort_values(key).reset_index(drop=True),
            check_dtype=False,  # PostgreSQL has no 1-byte integer: a small int comes back wider
        )
        with pytest.raises(psycopg.errors.ReadOnlySqlTransaction):
            eng.backend.raw_sql("create table written_by_a_report (x int)")
        eng.backend.con.rollback()
        eng.drop(kept)
        left = eng.backend.raw_sql("select count(*) from pg_class where relname like '_kept_%%'").fetchone()
        assert left[0] == 0
    finally:
        eng.close()


def test_postgres_without_the_temp_privilege_computes_inside_each_query(
    request, hand_dir, monkeypatch, tmp_path
):
    import psycopg

    port = request.getfixturevalue("pg_server")
    request.getfixturevalue("pg_credentials")
    folder = dataset_in_postgres(port, hand_dir, "nine_deals_no_temp", tmp_path / "no_temp")
    with psycopg.connect(
        host="127.0.0.1",
        port=port,
        user=PG_USER,
        password=PG_PASSWORD,
        dbname="nine_deals_no_temp",
        autocommit=True,
    ) as c:
        c.execute("drop role if exists report_reader")
        c.execute("create role report_reader login password 'reader-pw'")
        c.execute("revoke temporary on database nine_deals_no_temp from public")
        c.execute("grant select on all tables in schema public to report_reader")
    monkeypatch.setenv("REVOPS_TEST_DB_USER", "report_reader")
    monkeypatch.setenv("REVOPS_TEST_DB_PASSWORD", "reader-pw")
    eng = eng_mod.connect(folder)
    try:
        norm = expr.normalized_history(eng)
        kept = eng.keep(norm)
        assert not _kept_name(kept).startswith("_kept_")  # the expression itself
        assert len(eng.execute(kept)) == len(eng.execute(norm)) > 0
        from helpers.metrics import history as hi

        def waterfall(e):  # a measure made on the normalized history, rewound a month
            base = hi.deals(e, as_of=SAMPLE_AS_OF, export_as_of=SAMPLE_AS_OF)
            d = hi.deals(e, as_of="2026-09-30", export_as_of=SAMPLE_AS_OF, base=base)
            return hi.waterfall(d, "2026-07-01", "2026-09-30")

        with eng_mod.connect(hand_dir) as duck:
            pdt.assert_frame_equal(waterfall(eng), waterfall(duck), check_dtype=False)
        # a small frame sent to join with: literal arrays instead of a temporary table
        frame = pd.DataFrame({"_deal": ["o1", "o6", "nope"], "_n": [1, 2, 3]})
        k = expr.keyed(eng["opportunities"], frame)
        assert not _kept_name(k).startswith("_kept_")
        got = eng.execute(k).sort_values("_n").reset_index(drop=True)
        pdt.assert_frame_equal(got, frame, check_dtype=False)
    finally:
        eng.close()


def test_postgres_session_runs_without_jit(request, hand_dir):
    eng = open_engine(request, "postgres", hand_dir, "nine_deals_jit")
    try:
        assert eng.backend.raw_sql("show jit").fetchone()[0] == "off"
        eng.execute(expr.normalized_history(eng))  # a query, then the setting still holds
        assert eng.backend.raw_sql("show jit").fetchone()[0] == "off"
    finally:
        eng.close()


# --------------------------------------------------------------------------------------------------
# the activity tracker's sums over deals and reps, on each engine, against the per-deal pandas
# reference (tests/activity_reference.py) on a hand-built log; only those sums come back from the engine
# --------------------------------------------------------------------------------------------------
ACT_OPPS = """opportunity_id,owner,created_date,close_date,stage,amount,is_closed,is_won,segment
q1,R1,2026-06-01,2026-10-10,Closed Won,100,true,true,SMB
q2,R1,2026-06-01,2026-10-12,Closed Lost,50,true,false,SMB
q3,R2,2026-06-01,2026-10-20,Closed Won,300,true,true,Enterprise
q4,R2,2026-06-01,2026-10-25,Closed Won,40,true,true,
q5,R3,2026-06-01,2026-10-05,Closed Won,70,true,true,SMB
q6,R1,2026-06-01,2026-12-01,Proposal,80,false,false,SMB
q7,,2026-06-01,2026-10-15,Closed Won,20,true,true,Enterprise
q8,R2,2026-06-01,2026-10-30,Closed Lost,60,true,false,Enterprise
"""
ACT_REPS = "rep_id,name,team,role\nR1,Ann,East,AE\nR2,Bo,West,AE\nR3,Cy,East,AE\nS1,Di,East,SDR\n"
# q1: a01/a02 calls at the same minute (one step), email, call, meeting on the day (date only), meeting at
# 23:00 on the close day; a06 after the close. q2: meeting, then demo. q3: email and meeting at the same
# minute (the activity id orders them), demo, in-mail. q4 none; q5 only after its close; q7 no owner;
# q8: an unknown type ("lunch") and a call at the same minute. The rest: not on a closed deal.
ACT_LOG = """activity_id,owner,type,occurred_at,opportunity_id,outcome,duration_minutes
a01,R1,call,2026-10-01 09:00:00,q1,connected,5
a02,R1,Call ,2026-10-01 09:00:00,q1,no_answer,
a03,R1,email,2026-10-02 10:00:00,q1,replied,
a04,R1,call,2026-10-03 10:00:00,q1,connected,
a05,R1,meeting,2026-10-05 00:00:00,q1,held,30
a06,R1,demo,2026-10-11 09:00:00,q1,positive,
a07,R1,meeting,2026-10-10 23:00:00,q1,held,
a08,R1,demo,2026-10-12 08:00:00,q2,no_show,
a09,R1,meeting,2026-10-11 10:00:00,q2,held,
a10,R2,email,2026-10-15 12:00:00,q3,replied,
a11,R2,meeting,2026-10-15 12:00:00,q3,positive,
a12,R2,demo,2026-10-16 12:00:00,q3,held,
a13,R2,In-Mail,2026-10-17 12:00:00,q3,replied,
a14,R3,call,2026-10-06 12:00:00,q5,connected,
a15,R2,call,2026-10-14 12:00:00,q7,connected,
a16,R2,lunch,2026-10-29 08:00:00,q8,,
a17,R2,call,2026-10-29 08:00:00,q8,no_answer,
a18,R1,call,2026-10-20 12:00:00,,connected,
a19,R3,email,2026-09-20 12:00:00,,no_reply,
a20,R2,Meetings,2026-08-03 12:00:00,,held,
a21,R1,call,2026-07-10 12:00:00,,connected,
a22,S1,meeting,2026-09-03 12:00:00,,held,
a23,S1,demo,2026-10-02 12:00:00,,held,
a24,S1,meeting,2025-09-03 12:00:00,,held,
"""


@pytest.fixture(scope="session")
def activity_hand_dir(tmp_path_factory) -> Path:
    return hand_folder(
        tmp_path_factory,
        "activity_log",
        HAND_CONFIG | {"name": "Activity log"},
        opportunities=ACT_OPPS,
        reps=ACT_REPS,
        activities=ACT_LOG,
    )


activity_hand_engine = engine_of("activity_hand_dir", "activity_log")


def test_last_activity_sends_only_the_days_that_beat_the_crm_date_by_hand(activity_hand_engine):
    # the log's last days: q1 10-11 (09:00), q2 10-12, q3 10-17, q5 10-06, q7 10-14; q9 and q10 have none
    from helpers.metrics import pipeline as pl

    log = activity_hand_engine["activities"]
    opps = pd.DataFrame(
        {
            "opportunity_id": pd.Series(["q1", "q2", "q3", "q5", "q7", "q7", "q9", "q10"], dtype="str"),
            "last_activity_date": pd.to_datetime(
                [f"2026-10-{d}" if d else None for d in ("11", "20", "16", None, "20", "13", None, "01")]
            ).astype("datetime64[us]"),
        }
    )
    # q1's day equals its date, q2's is earlier: not sent; q3's is later, q5 has no date, q7 is listed twice (its
    # first date is later than its day, its second earlier: asked)
    sent = pl.last_activity_days(log, opps["opportunity_id"], opps["last_activity_date"])
    assert sorted(sent.index) == ["q3", "q5", "q7"]
    assert sent["q3"] == pd.Timestamp("2026-10-17") and sent["q7"] == pd.Timestamp("2026-10-14")
    assert len(pl.last_activity_days(log, opps["opportunity_id"])) == 5  # without dates: every deal with one
    got = pl.last_activity(opps, log)
    assert got.tolist()[:6] == [pd.Timestamp(f"2026-10-{d}") for d in ("11", "20", "17", "06", "20", "14")]
    assert pd.isna(got.iloc[6]) and got.iloc[7] == pd.Timestamp("2026-10-01")


def test_logging_completeness_reads_a_yield_given(activity_hand_engine, activity_hand_dir, monkeypatch):
    # the flags over the yield the report already holds (``yields``) are the flags that ask it: r3's two
    # wins (q3, q4) and one without activity; nothing asked again
    from helpers.metrics import activity as A

    ds = load(activity_hand_dir)
    log, opps, start, end = activity_hand_engine["activities"], ds.opportunities, "2025-11-01", "2026-10-31"
    want = A.logging_completeness(log, opps, start, end, min_won=1)
    y = A.activity_yield(log, opps, start, end)

    def again(*a, **k):
        raise AssertionError("activity_yield asked again")

    monkeypatch.setattr(A, "activity_yield", again)
    got = A.logging_completeness(log, opps, start, end, min_won=1, yields=y)
    pdt.assert_frame_equal(got, want)
    assert got.set_index("rep")["won_without_activity"].to_dict() == {"R1": 0, "R2": 1, "R3": 1}


def test_deal_activity_sums_match_the_per_deal_reference_by_hand(activity_hand_engine, activity_hand_dir):
    import activity_reference as ref

    from helpers.metrics import activity as A

    ds = load(activity_hand_dir)
    log, opps, start, end = activity_hand_engine["activities"], ds.opportunities, "2025-11-01", "2026-10-31"
    per = ref.per_deal(ds.activities, opps, start, end)
    # by hand: q1 4 before close (a01 a02 a03 a04 a05 a07 = 6; a06 after), q3 4, q7 1, q4 q5 0 (q7 has no owner)
    assert per.set_index("opportunity_id")["total"].to_dict() == {
        "q1": 6, "q2": 2, "q3": 4, "q4": 0, "q5": 0, "q7": 1, "q8": 2
    }  # fmt: skip
    d = A.deal_activity(log, opps, start, end)
    assert len(d) == 7 and d.won_totals.to_dict() == {0: 2, 1: 1, 4: 1, 6: 1}
    assert A.won_deal_activity(d) == ref.won_deal_activity(per)
    for by in (None, "segment"):
        pdt.assert_frame_equal(
            A.win_association(d, by=by, min_deals=2), ref.win_association(per, by, min_deals=2), obj=str(by)
        )
    seg = A.win_association(d, by="segment").set_index(["segment", "type"])
    assert seg.loc[("Enterprise", "call"), ["deals_with", "won_with", "deals_without"]].tolist() == [2, 1, 1]
    lc = A.logging_completeness(log, opps, start, end, min_won=1, deals=d).set_index("rep")
    assert lc["won_without_activity"].to_dict() == ref.won_without_activity(per).to_dict() == {
        "R1": 0, "R2": 1, "R3": 1
    }  # fmt: skip
    seq = A.winning_sequences(log, opps, start, end).set_index("sequence")[["deals", "won"]]
    want = ref.sequences(ds.activities, opps, start, end)
    pdt.assert_frame_equal(seq.sort_index(), want.sort_index(), check_names=False)
    assert seq.to_dict("index") == {
        "(no activity logged)": {"deals": 2, "won": 2},  # q4, q5
        "call": {"deals": 1, "won": 1},  # q7
        "call → email → call": {"deals": 1, "won": 1},  # q1: a01 a02 one step
        "email → meeting → demo": {"deals": 1, "won": 1},  # q3: a10 before a11 (same minute)
        "lunch → call": {"deals": 1, "won": 0},  # q8
        "meeting → demo": {"deals": 1, "won": 0},  # q2
    }
    assert list(seq.index[:2]) == ["(no activity logged)", "call"]  # most won, then most deals, then name


def _deal_measures_check(log, deals_at, ds, windows, owners):
    """The tracker's measures over the opportunities (``deals_at``: where they live, or a frame) against
    the pandas reference over the loaded frames (tests/activity_reference.py), over each window; for
    everyone and for ``owners``. Returns how many closed deals the windows held."""
    import activity_reference as ref

    from helpers.metrics import activity as A

    frame_log, opps = ds.activities, ds.opportunities
    closed = 0
    for start, end in windows:
        for who in (None, owners):
            pdt.assert_frame_equal(
                A.activity_yield(log, A.opportunities(deals_at, who), start, end, owners=who),
                ref.activity_yield(
                    frame_log, opps if who is None else opps[opps["owner"].isin(who)], start, end, who
                ),
                check_dtype=False,
                obj=f"yield {start} {who}",
            )
            got = A.funnel_rates(log, deals_at, start, end, owners=who)
            want = ref.funnel_rates(frame_log, opps, start, end, owners=who)
            pdt.assert_series_equal(got, want, check_dtype=False, rtol=REL, obj=f"funnel {start} {who}")
        per = ref.per_deal(frame_log, opps, start, end)
        closed += len(per)
        d = A.deal_activity(log, deals_at, start, end)
        assert len(d) == len(per) and d.won_deals == int(per["is_won"].sum())
        pdt.assert_frame_equal(d.segments, ref.segments(per), check_dtype=False, obj="segments")
        pdt.assert_frame_equal(d.owners, ref.won_by_owner(per), check_dtype=False, rtol=REL, obj="owners")
        assert A.won_deal_activity(d) == pytest.approx(ref.won_deal_activity(per), nan_ok=True)
        for by in (None, "segment"):
            pdt.assert_frame_equal(
                A.win_association(d, by=by, min_deals=2),
                ref.win_association(per, by, min_deals=2),
                obj=str(by),
            )
        seq = A.winning_sequences(log, deals_at, start, end).set_index("sequence")[["deals", "won"]]
        want = ref.sequences(frame_log, opps, start, end)
        pdt.assert_frame_equal(
            seq.sort_index(),
            want.sort_index(),
            check_names=False,
            check_index_type=False,
            check_dtype=False,
            obj="sequences",
        )
        for min_won in (1, 2):
            pdt.assert_frame_equal(
                A.logging_completeness(log, deals_at, start, end, min_won=min_won),
                ref.logging_completeness(frame_log, opps, start, end, min_won=min_won),
                check_dtype=False,
                rtol=REL,
                obj=f"logging {start} {min_won}",
            )
    return closed


def test_deal_measures_where_the_opportunities_live_match_the_reference_by_hand(
    activity_hand_engine, activity_hand_dir
):
    # the deals where they live (joined with the log on the engine), and a frame beside the engine's log
    # (sent there: on PostgreSQL as a temporary table); windows whose edges are close days (q1 10-10,
    # q3 10-20) and one without closed deals
    ds = load(activity_hand_dir)
    log = activity_hand_engine["activities"]
    windows = [("2025-11-01", "2026-10-31"), ("2026-10-10", "2026-10-20"), ("2026-01-01", "2026-01-31")]
    for deals_at in (activity_hand_engine["opportunities"], ds.opportunities):
        assert _deal_measures_check(log, deals_at, ds, windows, ["R1", "R3"]) == 7 + 4
    from helpers.metrics import activity as A

    y = A.activity_yield(log, activity_hand_engine["opportunities"], *windows[0]).set_index("rep")
    # by hand: created q1..q8 on 06-01 (q7 has no owner: no rep's); won q1 q3 q4 q5 (q7 no owner)
    assert y["opps_created"].to_dict() == {"R1": 3, "R2": 3, "R3": 1, "S1": 0, "All reps": 7}
    assert y["deals_won"].to_dict() == {"R1": 1, "R2": 2, "R3": 1, "S1": 0, "All reps": 4}
    d = A.deal_activity(log, activity_hand_engine["opportunities"], *windows[1])
    # 10-10..10-20: q1 (R1 won 100, tied), q2 (R1 lost), q3 (R2 won 300, tied), q7 (won, no owner: no
    # rep's); q5 closed 10-05
    assert len(d) == 4 and d.won_deals == 3
    assert d.owners.to_dict("index") == {
        "R1": {"won": 1, "bookings": 100.0, "won_active": 1},
        "R2": {"won": 1, "bookings": 300.0, "won_active": 1},
    }


def test_deal_measures_where_the_opportunities_live_match_the_reference_on_the_sample(sample_engine, sample):
    from helpers.data.calendar import trailing_window

    owners = sorted(sample.opportunities["owner"].dropna().astype(str).unique())[:3]
    windows = [trailing_window(sample.as_of, 12), ("2026-10-01", SAMPLE_AS_OF)]
    n = _deal_measures_check(
        sample_engine["activities"], sample_engine["opportunities"], sample, windows, owners
    )
    assert n > 100


def test_activity_counts_by_rep_and_week_match_the_reference_by_hand(activity_hand_engine, activity_hand_dir):
    import activity_reference as ref

    from helpers.data.calendar import weeks_window
    from helpers.metrics import activity as A
    from helpers.metrics import quota as Q

    ds = load(activity_hand_dir)
    log, as_of = activity_hand_engine["activities"], pd.Timestamp("2026-10-31")
    start, end = weeks_window(as_of, 13)
    want = ref.counts_by_owner(ds.activities, start, end)
    got = A.activity_counts(log, start, end, None)
    assert list(got.index) == ["R1", "R2", "R3", "S1"]  # every owner of the log
    pdt.assert_frame_equal(got[list(A.ACTIVITY_TYPES)], want, check_names=False, check_index_type=False)
    vol = A.rep_volume(log, as_of, 13, ds.reps).set_index("rep")
    assert (vol["total"] * 13).round().astype(int).to_dict() == {"R1": 10, "R2": 8, "R3": 2, "S1": 2}
    assert vol.loc["R1", "prior"] * 13 == pytest.approx(1)  # a21 in the 13 weeks before
    weekly = A.activity_counts(log, start, end, "W", per_owner=False)
    per_owner = A.activity_counts(log, start, end, "W")
    pdt.assert_frame_equal(weekly, per_owner.groupby(level="period").sum())
    assert weekly["total"].sum() == want.to_numpy().sum() + 1  # + a16 (lunch, not a known type)
    med = A.team_weekly_median(log, start, end, ds.reps, "East")
    east = per_owner.loc[["R1", "R3", "S1"], "total"].groupby(level="period").median()
    assert med["median"].tolist() == east.tolist() and set(med["team"]) == {"East"}
    assert A.team_weekly_median(log, start, end, ds.reps, "North").empty
    months = Q.history_months(as_of)
    ev = Q.sdr_events(log, None, rep_ids=["S1"], months=months)["meetings"]
    ref_ev = ref.meetings_by_rep_month(ds.activities)
    every = Q.sdr_events(log, None)["meetings"]
    assert len(every) == len(ref_ev) == 6  # R1 2026-10; R2 2026-08 and 10; S1 2025-09, 2026-09 and 10
    ref_ev = ref_ev[(ref_ev["rep_id"] == "S1") & ref_ev["month"].isin(months)]
    assert len(ref_ev) == 2  # S1's 2025-09 meeting is older than the 12 months
    pdt.assert_frame_equal(
        ev.sort_values("month", ignore_index=True), ref_ev.reset_index(drop=True), check_dtype=False
    )


def test_window_counts_ask_both_windows_at_once_by_hand(activity_hand_engine, monkeypatch):
    # rep_volume's 13 weeks and the 13 before: one group-by, one row per owner asked that logged any
    # (the windows' counts are columns of it), the frames activity_counts gives for each window
    from helpers.data.calendar import weeks_window
    from helpers.metrics import activity as A

    log, as_of = activity_hand_engine["activities"], pd.Timestamp("2026-10-31")
    start, end = weeks_window(as_of, 13)
    pstart, pend = start - pd.Timedelta(days=91), start - pd.Timedelta(days=1)
    windows = [(start, end), (pstart, pend), (pd.Timestamp("2026-10-01"), pd.Timestamp("2026-10-20"))]
    owners = ["R1", "R3", "X9"]  # X9 logged nothing: zeros; R2 and S1 are not asked
    want = [A.activity_counts(log, s, e, None, owners=owners) for s, e in windows]
    asked, frame = [], A._frame
    sums = lambda e: any(c.startswith(("_w", "_t")) for c in e.columns)  # noqa: E731 - counts per type
    monkeypatch.setattr(A, "_frame", lambda e: (asked.append(e) if sums(e) else None) or frame(e))
    got = A.window_counts(log, windows, owners)
    assert len(asked) == 1 and len(frame(asked[0])) == 2  # R1 and R3
    for g, w in zip(got, want, strict=True):
        pdt.assert_frame_equal(g, w)
    # by hand: R1 a01–a09, a18; a21 in the 13 weeks before; to 20 October: a18 at noon that day too
    assert got[0]["total"].to_dict() == {"R1": 10, "R3": 2, "X9": 0}
    assert got[1]["total"].to_dict() == {"R1": 1, "R3": 0, "X9": 0}
    assert got[2]["total"].to_dict() == {"R1": 10, "R3": 1, "X9": 0}
    assert got[0].loc["R1", ["call", "meeting", "demo"]].tolist() == [4, 3, 2]  # "Call " is a call
    asked.clear()
    A.rep_volume(log, as_of, 13)
    assert len(asked) == 1  # the two windows of the volume table in one query


# --------------------------------------------------------------------------------------------------
# win/loss: what the review asks of the deals where they live
# --------------------------------------------------------------------------------------------------
# the window's edges (review 2026-10-01..10-20 as of the 20th, comparison September), a deal closed
# after the as-of date (open then), one created after it, an undated closed deal, an identified copy
# (w12 = w02: left out) and two identical thin records (w13, w14: counted as possible duplicates),
# open deals tied at 400 whose ids sort differently by code point (B9 < W16 < a9 < w08) and by a
# language's collation (a9 < B9 < w08 < W16), an owner without a rep row
WL_CONFIG = {**HAND_CONFIG, "name": "Win/loss deals", "as_of": "2026-10-20"}
WL_OPPS = """opportunity_id,owner,account,created_date,close_date,stage,amount,is_closed,is_won,segment,competitor,loss_reason,next_step
w01,A1,Acme,2026-01-05,2026-10-01,Closed Won,100,true,true,SMB,Beta,,
w02,A1,Acme,2026-01-05,2026-10-20,Closed Lost,300,true,false,SMB,Beta,Price,
w03,A2,Bolt,2026-02-01,2026-10-21,Closed Won,700,true,true,Ent,,,
w04,A2,Bolt,2026-02-01,2026-09-01,Closed Lost,,true,false,Ent,Gamma,Other,
w05,A3,Cora,2026-03-01,2026-09-30,Closed Won,250.5,true,true,,,,
w06,A1,Cora,2026-03-01,2026-08-31,Closed Lost,80,true,false,SMB,,Timing,
w07,A1,Dune,2026-03-01,,Closed Lost,90,true,false,SMB,,Price,
w08,A3,Echo,2026-04-01,2026-12-01,Proposal,400,false,false,Ent,,,Call back
B9,A3,Echo,2026-04-01,2026-12-15,Proposal,400,false,false,Ent,,,Demo
a9,A2,Fenn,2026-04-01,2026-11-15,Discovery,400,false,false,SMB,,,
W16,A1,Gala,2026-04-02,2026-11-16,Discovery,400,false,false,SMB,,,
w17,A2,Hale,2026-05-01,2026-12-20,Proposal,1000,false,false,Ent,,,
w10,A2,Fenn,2026-10-25,2026-11-30,Discovery,5000,false,false,SMB,,,
w11,A1,Gala,2026-05-01,2026-11-20,Discovery,,false,false,SMB,,,
w12,A1,Acme,2026-01-05,2026-10-20,Closed Lost,300,true,false,SMB,Beta,Price,
w13,,,,,Closed Lost,,true,false,SMB,,Price,
w14,,,,,Closed Lost,,true,false,SMB,,Price,
w15,A9,Hale,2026-06-01,2026-07-15,Closed Won,1200,true,true,Ent,,,
"""
WL_CHURN = """account,churn_date,lost_amount,reason
Acme,2026-10-05,5000,Price
Cora,2026-10-10,200,
Zed,2026-10-12,100,Support
Hale,2026-09-01,900,
"""


@pytest.fixture(scope="session")
def winloss_dir(tmp_path_factory) -> Path:
    return hand_folder(
        tmp_path_factory, "winloss_deals", WL_CONFIG, opportunities=WL_OPPS, reps=HAND_REPS, churn=WL_CHURN
    )


winloss_engine = engine_of("winloss_dir", "winloss_deals")


# the window's deals with history: w01 (won) first priced 120, then 150, closing at 100 (shrank, 2 stage
# changes, reached Proposal); w02 (lost) Discovery → Proposal → Discovery → Closed Lost, reopened in
# Proposal → Closed Lost: lost at Discovery (before its first loss), 5 changes, 300 → 300 (no change); w04 (lost in September) has only its lost row (no earlier stage, never
# qualified, no positive amount); w05 (won) has no rows; w03 and the open deals have rows the review
# leaves out. Activities: w01 two, w02 one, w04 three, one without a deal.
WL_HISTORY = """opportunity_id,changed_at,stage,amount,close_date
w02,2026-02-01 09:00:00,Discovery,300,2026-09-30
w01,2026-01-05 09:00:00,Discovery,0,2026-09-30
w01,2026-02-05 09:00:00,Discovery,120,2026-09-30
w01,2026-06-05 09:00:00,Proposal,150,2026-10-01
w02,2026-05-01 09:00:00,Proposal,,2026-10-15
w02,2026-07-01 09:00:00,Discovery,,2026-10-15
w02,2026-08-01 09:00:00,Closed Lost,,2026-08-01
w02,2026-08-15 09:00:00,Proposal,,2026-10-15
w02,2026-10-20 10:00:00,Closed Lost,300,2026-10-20
w01,2026-10-01 09:00:00,Closed Won,,2026-10-01
w04,2026-09-01 09:00:00,Closed Lost,0,2026-09-01
w03,2026-03-01 09:00:00,Proposal,700,2026-10-21
w08,2026-04-02 09:00:00,Discovery,400,2026-12-01
"""
WL_ACTIVITIES = """activity_id,owner,type,occurred_at,opportunity_id,account,outcome,duration_minutes
a1,A1,call,2026-09-01 10:00:00,w01,Acme,no_answer,1
a2,A1,meeting,2026-09-02 10:00:00,w01,Acme,positive,30
a3,A1,email,2026-09-03 10:00:00,w02,Acme,,
a4,A2,call,2026-08-03 10:00:00,w04,Bolt,no_answer,1
a5,A2,call,2026-08-04 10:00:00,w04,Bolt,no_answer,1
a6,A2,call,2026-08-05 10:00:00,w04,Bolt,no_answer,1
a7,A3,call,2026-08-05 10:00:00,,Cora,no_answer,1
"""


@pytest.fixture(scope="session")
def winloss_history_dir(tmp_path_factory) -> Path:
    return hand_folder(
        tmp_path_factory,
        "winloss_history",
        {**WL_CONFIG, "qualifying_stage": "Proposal"},
        opportunities=WL_OPPS,
        reps=HAND_REPS,
        churn=WL_CHURN,
        opportunity_history=WL_HISTORY,
        activities=WL_ACTIVITIES,
    )


winloss_history_engine = engine_of("winloss_history_dir", "winloss_history")


@pytest.mark.parametrize("period", ["2026-10", "2026-09"])
def test_winloss_history_measures_on_the_engine(winloss_history_engine, winloss_history_dir, period):
    # the stage lost at, stage changes, amount change, activities per deal and the qualifying check,
    # computed where the history and the log live, against the frozen pandas review and by hand
    from helpers.data.calendar import FiscalCalendar

    e, full = winloss_history_engine, load(winloss_history_dir)
    as_of = min(full.as_of, pd.Timestamp(period) + pd.offsets.MonthEnd(0))
    want = winloss_reference.build_review(full, period, as_of, FiscalCalendar(1), min_deals=1)
    got = winloss.build_review(
        load(winloss_history_dir, tables=["reps", "churn"]),
        period,
        as_of,
        FiscalCalendar(1),
        min_deals=1,
        activities=e["activities"],
        missing=e.missing,
        history=e["opportunity_history"],
        opportunities=e["opportunities"],
        engine=e,  # the window's deals kept there while the review runs
    )
    winloss_reference.assert_same_review(got, want)
    side = got.side.set_index("metric")
    if period == "2026-10":  # w01 won, w02 lost
        assert got.lost_at[["stage", "deals"]].values.tolist() == [["Discovery", 1]]
        assert side.loc["Average stage changes", ["Won", "Lost"]].tolist() == [2.0, 5.0]
        assert side.loc["Median amount change", ["Won", "Lost"]].tolist() == [100 / 120 - 1, 0.0]
        assert side.loc["Share of deals that shrank", ["Won", "Lost"]].tolist() == [1.0, 0.0]
        assert side.loc["Activities per deal", ["Won", "Lost"]].tolist() == [2.0, 1.0]
        assert got.issues.empty
    else:  # w05 won (no rows), w04 lost (only its lost row)
        assert got.lost_at[["stage", "deals"]].values.tolist() == [["(no earlier stage)", 1]]
        assert side.loc["Average stage changes", ["won_n", "lost_n"]].tolist() == [0, 1]
        assert side.loc["Activities per deal", ["Won", "Lost"]].tolist() == [0.0, 3.0]
        assert got.issues[["issue", "opportunity_id"]].values.tolist() == [
            ["Lost with an 'Other' reason", "w04"],
            ["Closed without reaching Proposal", "w04"],
        ]


def _review(ds, opportunities=None, **kw):
    from helpers.data.calendar import FiscalCalendar

    return winloss.build_review(
        ds, "2026-10", ds.as_of, FiscalCalendar(1), min_deals=2, opportunities=opportunities, **kw
    )


def test_winloss_deals_on_the_engine_match_pandas(winloss_engine, winloss_dir):
    # each query of winloss.Deals on the engine against the same selection made with pandas on the loaded
    # table: rows, their order (the file's on DuckDB, by id elsewhere) and their dtypes as load types them
    from helpers.data.calendar import FiscalCalendar

    opps = load(winloss_dir).opportunities
    review, comp = winloss.review_windows("2026-10", "2026-10-20", FiscalCalendar(1))
    assert (review.start, review.as_of) == (pd.Timestamp("2026-10-01"), pd.Timestamp("2026-10-20"))
    deals = winloss.Deals(winloss_engine["opportunities"])
    dups = winloss.find_duplicates(opps)
    assert dups[["opportunity_id", "duplicate_of"]].values.tolist() == [["w12", "w02"]]
    pdt.assert_frame_equal(deals.duplicates, dups)
    kept = opps[~opps["opportunity_id"].isin(dups["opportunity_id"])].reset_index(drop=True)
    closed = kept["is_closed"].fillna(False).astype(bool)
    assert (deals.counts["possible"], deals.counts["undated"]) == (1, 3)  # w14; w07, w13, w14
    assert (
        deals.size_edges() == winloss.default_size_edges(kept.loc[closed, "amount"]) == [95.0, 250.0, 500.0]
    )

    def same(got, want):
        want = want.reset_index(drop=True)
        if winloss_engine.name != "duckdb":  # no file order there: by id
            want = want.sort_values("opportunity_id", kind="stable").reset_index(drop=True)
        pdt.assert_frame_equal(got, want[list(got.columns)])

    inside = lambda w: (kept["close_date"] >= w.start) & (kept["close_date"] <= w.as_of)  # noqa: E731
    window = winloss_reference.closed_in(deals, [review, comp])
    assert window["opportunity_id"].tolist() == (
        ["w01", "w02", "w04", "w05"] if winloss_engine.name == "duckdb" else ["w01", "w02", "w04", "w05"]
    )
    same(window, kept[closed & (inside(review) | inside(comp))])
    same(winloss_reference.closed_in(deals, None), kept[closed])
    # the five largest deals open on the 20th: w03 closed on the 21st; w10 was created after
    prep = winloss.prepare_deals(deals.top_open(review.as_of), as_of=review.as_of, size_edges=[])
    top = winloss.top_deals(winloss.open_as_of(prep, review.as_of), "Open")
    want = winloss.top_deals(
        winloss.open_as_of(winloss.prepare_deals(kept, as_of=review.as_of), review.as_of), "Open"
    )
    assert top["opportunity_id"].tolist() == ["w17", "w03", "B9", "W16", "a9"]
    pdt.assert_frame_equal(top, want)
    won = kept["is_won"].fillna(False).astype(bool) & closed & kept["account"].isin(["Acme", "Cora", "Zed"])
    same(deals.won_of(["Acme", "Cora", "Zed"]), kept[won])
    assert deals.any_owner_in(["A2"]) and not deals.any_owner_in(["A7"])


def test_winloss_review_on_the_engine_matches_the_loaded_tables(winloss_engine, winloss_dir):
    # the whole review asked of the engine equals the review of the loaded frames: every table it shows
    want = _review(load(winloss_dir))
    left = load(winloss_dir, tables=["reps", "churn"])  # the opportunities stay on the engine
    got = _review(left, winloss_engine["opportunities"], missing=winloss_engine.missing)
    assert want.duplicates["opportunity_id"].tolist() == ["w12"] and want.undated == 3
    assert (want.overall.at[0, "deals"], want.overall.at[0, "won"]) == (2, 1)  # w01 won, w02 lost
    assert want.top_churned[["account", "customer_days"]].values.tolist()[:2] == [
        ["Acme", 4.0],
        ["Cora", 10.0],
    ]
    winloss_reference.assert_same_review(got, want)
    # the frozen pandas review (the window's deals fetched and computed in pandas) gives the same
    winloss_reference.assert_same_review(
        got,
        winloss_reference.build_review(
            load(winloss_dir), "2026-10", load(winloss_dir).as_of, winloss.FiscalCalendar(1), min_deals=2
        ),
    )


@pytest.mark.parametrize("window", ["month", "quarter"])
def test_winloss_review_with_history_and_activities_on_the_engine(sample_engine, sample_dir, window):
    # the sample's review with the deals, their history and the activity log where they live equals the
    # frozen pandas review of the loaded tables: every table, figure and sentence
    from helpers.data.calendar import FiscalCalendar

    full = load(sample_dir)
    cal = FiscalCalendar(full.config.fiscal_year_start_month)
    want = winloss_reference.build_review(full, "2026-10", full.as_of, cal, window, "", 5)
    left = load(sample_dir, tables=["reps", "churn"])
    got = winloss.build_review(
        left,
        "2026-10",
        full.as_of,
        cal,
        window,
        "",
        5,
        activities=sample_engine["activities"],
        missing=sample_engine.missing,
        history=sample_engine["opportunity_history"],
        opportunities=sample_engine["opportunities"],
        engine=sample_engine,
    )
    assert want.lost_at is not None and want.side["needs"].eq("").all() and len(want.issues)
    winloss_reference.assert_same_review(got, want)


@pytest.mark.parametrize("value", ["fax ", " visit\t", "vfv", "\tcall  ", "f v"])
def test_strip_trims_whitespace_only_on_every_engine(hand_engine, value):
    # ibis 12 on Spark trimmed the letters v and f too ("fax " → "ax"); the activity types go through it.
    # (No \v or \f in these literals: Spark reads a literal's \v as v, whatever trims it.)
    import ibis

    lit = ibis.literal(value)
    got = [hand_engine.backend.execute(e) for e in (lit.strip(), lit.lstrip(), lit.rstrip())]
    assert got == [value.strip(), value.lstrip(), value.rstrip()]


@pytest.mark.parametrize("as_of", [SAMPLE_AS_OF, "2026-09-30", "2025-12-31"])
def test_pipeline_kernel_gets_the_working_set_of_the_deals(sample_engine, sample, as_of):
    # pipeline health's kernel gets the scope's deals (rewound to the report's day) that are open, or
    # closed or created since working_set_start: the loaded frame's rows (DuckDB: in its order; elsewhere
    # by id, the sample's order too), typed the same; the headline figures made from it are those made
    # from every deal, and the deals left on the engine are many
    import copy

    from helpers.data.calendar import FiscalCalendar

    cfg, as_of = sample.config, pd.Timestamp(as_of)
    since = pipeline.working_set_start(as_of)
    assert since == as_of - pd.Timedelta(days=7)
    team = sorted(sample.reps["team"].dropna().unique())[0]
    for scope, who in (("company", ""), ("team", team)):
        now = pipeline.Scoped(sample, scope, who, engine=sample_engine)
        sc = pipeline.Scoped(sample, scope, who, as_of=as_of, engine=sample_engine)
        every = pipeline.in_scope(sample.opportunities, sc.owners)
        if as_of < sample.as_of:
            hist = sample.opportunity_history
            every = movement.rewind(every, hist[hist["changed_at"] <= as_of + pd.Timedelta("1D")], cfg, as_of)
            every = as_then(every, as_of)
        closed = every["is_closed"].fillna(False).astype(bool)
        keep = ~closed | (every["close_date"] >= since) | (every["created_date"] >= since)
        want = every[keep]
        if sample_engine.name != "duckdb":  # no file order there: by id, which is the sample's order
            want = want.reset_index(drop=True)
        pdt.assert_frame_equal(sc.opps, want)  # on DuckDB the index is the file's row, as loaded
        assert 0 < len(sc.opps) < len(every) // 5  # the open deals and the week's: most stay on the engine
        # rewound from the same scope's working set now: the same frame (what is the same is not fetched)
        then = pipeline.Scoped(sample, scope, who, as_of=as_of, engine=sample_engine, base=now)
        pdt.assert_frame_equal(then.opps.reset_index(drop=True), want.reset_index(drop=True))
        whole = copy.copy(sc)
        whole.opps = every
        cal = FiscalCalendar(cfg.fiscal_year_start_month)
        got = pipeline.headline_figures(sc, cfg, cal, as_of, 3.0, cfg.targets)
        want = pipeline.headline_figures(whole, cfg, cal, as_of, 3.0, cfg.targets)
        assert {k: (f.value, f.window, f.base) for k, f in got.items()} == {
            k: (f.value, f.window, f.base) for k, f in want.items()
        }
        for s in (sc, then, now):
            s.deals.release()


@pytest.mark.parametrize(
    "as_of", [SAMPLE_AS_OF, "2026-06-30", "2025-12-31"]
)  # (the last: next quarter in the next year)
def test_pipeline_reads_the_quota_rows_of_its_windows_where_they_live(
    sample_engine, sample_dir, sample, as_of
):
    # a pipeline report that did not load the quotas gets the scope's quota rows that can overlap its
    # fiscal year and next quarter from the engine: the same plans, attainment and coverage as with the
    # whole table loaded, from fewer rows
    from helpers.data.calendar import FiscalCalendar

    cfg, as_of = sample.config, pd.Timestamp(as_of)
    cal = FiscalCalendar(cfg.fiscal_year_start_month)
    without = load(sample_dir, tables=["opportunities", "reps"])
    assert "quotas" not in without.tables
    team = sorted(sample.reps["team"].dropna().unique())[0]
    for scope, who in (("company", ""), ("team", team)):
        got = pipeline.Scoped(without, scope, who, as_of=as_of, engine=sample_engine)
        want = pipeline.Scoped(sample, scope, who, as_of=as_of, engine=sample_engine)
        assert got.quota_source == want.quota_source == "quotas table"
        assert 0 < len(got.quotas) < len(want.quotas) // 2
        figs = [pipeline.headline_figures(s, cfg, cal, as_of, 3.0, cfg.targets) for s in (got, want)]
        assert {k: f.value for k, f in figs[0].items()} == {k: f.value for k, f in figs[1].items()}
        w = cal.windows(as_of)
        for by in ("rep", "team"):
            pdt.assert_frame_equal(
                pipeline.bookings_vs_plan(got.table, got.quotas, w, by=by, reps=sample.reps),
                pipeline.bookings_vs_plan(want.table, want.quotas, w, by=by, reps=sample.reps),
            )
        nq = pipeline.next_quarter(cal, as_of)
        pdt.assert_frame_equal(
            pipeline.coverage(got.table, got.quotas, nq, by="rep"),
            pipeline.coverage(want.table, want.quotas, nq, by="rep"),
        )
        cum = [pipeline.cumulative_bookings(s.table, s.quotas, w["YTD"]) for s in (got, want)]
        pdt.assert_frame_equal(*cum)
        for s in (got, want):
            s.deals.release()


def test_quota_plan_on_the_engine_by_hand(sample_engine):
    # QuotaPlan: the quota rows stay on the engine; each rep's quota pro-rated to a window comes back as
    # one row per rep (a window not asked first is asked when wanted), the chart's rate per period
    t = expr.keyed(
        sample_engine["quotas"],
        pd.DataFrame(
            {
                "rep_id": ["r1", "r1", "r1", "r2", "r3", None, "r4"],
                "period_start": pd.to_datetime(
                    [
                        "2026-10-01",
                        "2026-11-01",
                        "2026-10-01",
                        "2026-11-01",
                        "2026-09-01",
                        "2026-10-01",
                        "2026-10-01",
                    ]
                ),
                "period_end": pd.to_datetime(
                    ["2026-10-31", None, "2026-10-31", "2027-01-31", "2026-09-30", "2026-10-31", "2026-10-31"]
                ),
                "quota": [3100.0, 3000.0, 99.0, 9200.0, 3000.0, 500.0, 7.0],
                "metric": ["bookings", None, "meetings", " Bookings ", "bookings", "bookings", "meetings"],
            }
        ),
    )
    t = t.mutate(period_start=t.period_start.cast("date"), period_end=t.period_end.cast("date"))
    plan = pipeline.QuotaPlan(t, None, "2026-10-01", "2027-01-31", [("2026-10-01", "2026-10-31")])
    assert len(plan) == 6  # r3's September row ends before the span; the others count, of any metric
    # October whole: r1's 3,100 (its meetings row is not a bookings quota); r2 starts in November
    assert plan.by_rep("2026-10-01", "2026-10-31").to_dict() == {"r1": 3100.0}
    # 10 Oct – 5 Nov: r1 3,100 × 22/31 + 3,000 × 5/30 (an empty period_end: the month's last day);
    # r2 9,200 × 5/92 (a quarter's row, " Bookings " counts); r3 ended, r4 only has meetings
    got = plan.by_rep("2026-10-10", "2026-11-05")
    assert got.to_dict() == {"r1": 2700.0, "r2": 500.0}
    assert pipeline.bookings_quotas(plan) is plan
    per = plan.periods()
    assert per["quota"].tolist() == [3600.0, 3000.0, 9200.0]  # October with the row without a rep
    assert per["period_end"].dt.strftime("%Y-%m-%d").tolist() == ["2026-10-31", "2026-11-30", "2027-01-31"]
    only = pipeline.QuotaPlan(t, ["r2"], "2026-10-01", "2027-01-31")
    assert len(only) == 1 and only.by_rep("2026-10-10", "2026-11-05").to_dict() == {"r2": 500.0}
    assert len(pipeline.QuotaPlan(t, ["r9"], "2026-10-01", "2027-01-31")) == 0
    assert pipeline.bookings_quotas(pipeline.QuotaPlan(t, ["r9"], "2026-10-01", "2027-01-31")) is None


@pytest.mark.parametrize(
    ("later", "as_of", "same_rows"),
    [
        (SAMPLE_AS_OF, "2026-09-30", True),  # last month's pass of the report: the same span
        ("2025-12-31", "2025-10-31", False),  # next quarter inside the year: a shorter span
        ("2026-03-31", "2026-01-31", False),  # the fiscal year before
    ],
)
def test_a_pass_at_an_earlier_day_takes_the_quota_plan_it_holds(
    sample_engine, sample_dir, sample, later, as_of, same_rows
):
    # the scope measured again at an earlier day (last month's figures, ``base``) over the same quota
    # rows takes the later day's plan, whose first query asked its windows too (``plan_at``): no query
    # more, and the figures of a plan made afresh
    from helpers.data.calendar import FiscalCalendar

    cfg = sample.config
    cal = FiscalCalendar(cfg.fiscal_year_start_month)
    without = load(sample_dir, tables=["opportunities", "reps"])
    team = sorted(sample.reps["team"].dropna().unique())[0]
    for scope, who in (("company", ""), ("team", team)):
        now = pipeline.Scoped(without, scope, who, as_of=later, engine=sample_engine, plan_at=[as_of])
        then = pipeline.Scoped(without, scope, who, as_of=as_of, engine=sample_engine, base=now)
        fresh = pipeline.Scoped(without, scope, who, as_of=as_of, engine=sample_engine)
        assert (then.quotas is now.quotas) == same_rows and now.quotas.queries == 1
        figs = [pipeline.headline_figures(s, cfg, cal, as_of, 3.0, cfg.targets) for s in (then, fresh)]
        assert {k: f.value for k, f in figs[0].items()} == {k: f.value for k, f in figs[1].items()}
        w = cal.windows(as_of)
        pdt.assert_frame_equal(
            pipeline.bookings_vs_plan(then.table, then.quotas, w, by="rep"),
            pipeline.bookings_vs_plan(fresh.table, fresh.quotas, w, by="rep"),
        )
        assert now.quotas.queries == 1 and then.quotas.queries == 1  # every window held
        assert len(then.quotas) == len(fresh.quotas) > 0
        for s in (now, then, fresh):
            s.deals.release()


# the quota plan's questions to the opportunities: asked where they live, on DuckDB, PostgreSQL and Spark,
# against the pandas reference (quota_reference) over the loaded frame
# --------------------------------------------------------------------------------------------------
def _quota_check(table, ds, as_of, fiscal_years):
    import quota_reference as ref

    from helpers.data.calendar import FiscalCalendar
    from helpers.metrics import activity as A
    from helpers.metrics import quota as Q
    from helpers.metrics.plan import prepare_plan_data

    opps = ds.opportunities
    cal = FiscalCalendar(ds.config.fiscal_year_start_month)
    got_mb = Q.monthly_bookings(table)
    want_mb = ref.monthly_bookings(opps)
    assert len(want_mb)
    pdt.assert_frame_equal(got_mb, want_mb, check_dtype=False, rtol=REL, obj="monthly_bookings")
    # the company's months summed on the engine: the totals of the owner × month rows, bit for bit
    # (whole amounts), and the months of deals without an owner too
    company = Q.company_months(table)
    want_c = ref.monthly_bookings(opps).groupby("month")["bookings"].sum()
    first = pd.Timestamp(ref.won_deals(opps)["close_date"].min()).to_period("M").to_timestamp()
    assert company["month"].min() == first
    assert company.set_index("month")["bookings"].reindex(want_c.index).tolist() == want_c.tolist()
    assert (company.set_index("month")["bookings"].drop(want_c.index) == 0.0).all()
    full = Q.won_by_month(table, ("2025-01-01", "2026-06-30"))
    span = Q.won_by_month(table, ("2025-01-01", "2026-06-30"), months=("2025-11-01", "2026-09-01"))
    keep = full["month"].between(pd.Timestamp("2025-11-01"), pd.Timestamp("2026-09-01"))
    pdt.assert_frame_equal(span, full.loc[keep].reset_index(drop=True))
    for fy in fiscal_years:
        basis = Q.target_basis(table, cal, fy, as_of)
        assert basis.bookings == pytest.approx(ref.basis_bookings(opps, basis.start, basis.end), rel=REL), fy
        data = prepare_plan_data(ds, as_of, fy, n_draws=20, opps=table)
        assert data.basis == basis
        # the same plan data as from every owner × month row (the rows the engine no longer sends)
        with pytest.MonkeyPatch.context() as mp:
            mp.setattr(Q, "won_by_month", lambda o, b=None, months=None, every=Q.won_by_month: every(o, b))
            was = prepare_plan_data(ds, as_of, fy, n_draws=20, opps=table)
        assert data.basis == was.basis
        pdt.assert_frame_equal(data.seasonality, was.seasonality, check_exact=True)
        pdt.assert_series_equal(data.team_history, was.team_history, check_exact=True)
        for f in ("values", "start", "narrow", "wide"):
            np.testing.assert_array_equal(getattr(data.draws, f), getattr(was.draws, f), err_msg=f)
        np.testing.assert_array_equal(data.productivity, was.productivity)
        assert data.hire_productivity == was.hire_productivity
        team_of = dict(zip(data.roster["rep_id"], data.roster["team"], strict=True))
        want_teams = ref.team_history(opps, basis.start, basis.end, team_of)
        pdt.assert_series_equal(data.team_history, want_teams, check_names=False, rtol=REL, obj="teams")
    last = Q.last_complete_month(as_of)
    months = pd.date_range(last - pd.DateOffset(months=35), last, freq="MS")
    want_b = ref.seasonality_bookings(opps, months)
    fm = ((want_b.index.month - cal.start_month) % 12) + 1
    avg = want_b.groupby(fm).mean().reindex(range(1, 13))
    season = Q.seasonality(table, cal, as_of)
    if avg.isna().any() or avg.sum() <= 0:
        assert season["share"].tolist() == [1 / 12] * 12
    else:  # whole amounts: the sums are exact, the shares the same bits
        assert season["share"].tolist() == (avg / avg.sum()).tolist()
    assert season["years"].tolist() == want_b.groupby(fm).size().reindex(range(1, 13), fill_value=0).tolist()
    assert Q.recent_owners(table, as_of) == ref.recent_owners(opps, as_of)
    assert Q.seller_ids(None, table) == ref.owners(opps)
    sellers = sorted(opps["owner"].dropna().astype(str).unique())[:2]
    for who in (None, sellers):
        want_tot, want_created = ref.funnel_deals(opps, as_of, who=who)
        got_tot, got_created = A.deal_funnel(table, *trailing_window(as_of, 12), owners=who)
        _same(got_tot, want_tot)
        assert got_created == want_created
        rates = Q.funnel_rates(table, None, as_of, owners=who)
        if want_tot["won_priced"]:
            assert rates.avg_deal_size == pytest.approx(want_tot["avg_deal_size"], rel=REL)
        if want_tot["closed"]:
            assert rates.win_rate == want_tot["win_rate_count"]


def test_quota_plan_aggregates_on_the_engine_by_hand(hand_engine, hand_dir):
    ds = load(hand_dir)
    # the nine deals: o2 won without an amount, o9 won without an owner, o4 lost without an amount; as of
    # 2026-10-15 the trailing basis starts mid-month (2025-10-16) and o9 (10-20) closes after it ends
    for as_of in ("2026-10-31", "2026-10-15", "2027-01-31"):
        _quota_check(hand_engine["opportunities"], ds, as_of, (2026, 2027, 2028))
    # a window of its own: o1 (10-03, 100) and o5 (09-30, 1000) by hand
    from helpers.metrics import quota as Q

    got = Q.won_by_month(hand_engine["opportunities"], ("2026-09-30", "2026-10-03"))
    assert got.to_dict("records") == [
        {
            "owner": "A1",
            "month": pd.Timestamp("2026-09-01"),
            "bookings": 1000.0,
            "basis": 1000.0,
            "basis_deals": 1,
        },
        {
            "owner": "A1",
            "month": pd.Timestamp("2026-10-01"),
            "bookings": 100.0,
            "basis": 100.0,
            "basis_deals": 1,
        },
        {
            "owner": None,
            "month": pd.Timestamp("2026-10-01"),
            "bookings": 50.0,
            "basis": 0.0,
            "basis_deals": 0,
        },
    ]


def test_quota_plan_aggregates_on_the_engine_on_the_sample(sample_engine, sample):
    _quota_check(sample_engine["opportunities"], sample, sample.as_of, (2026, 2027))


def test_a_kernel_on_postgres_keeps_the_tables_it_asks_there(pg_dataset, sample_dir, monkeypatch):
    # the activity log, the leads and a table left out of the kernel are read canonically once per kernel
    # (a temporary table of the session); the metrics over them give what they give from files
    from helpers.metrics import activity as A
    from helpers.sections.context import open_report

    monkeypatch.setenv("REVOPS_TEST_DB_USER", PG_USER)
    monkeypatch.setenv("REVOPS_TEST_DB_PASSWORD", PG_PASSWORD)
    pg = open_report(str(pg_dataset), tables=["reps"], show_header=False)
    files = open_report(str(sample_dir), tables=["reps"], show_header=False)
    for t in ("activities", "leads"):
        assert _kept_name(getattr(pg, t)).startswith("_kept_"), t
        assert getattr(pg, t) is getattr(pg, t)  # once per kernel
        assert not _kept_name(getattr(files, t)).startswith("_kept_")  # DuckDB: the file's table itself
    assert _kept_name(pg.source("opportunities")).startswith("_kept_")
    window = ("2026-08-01", "2026-10-31")
    assert A.count(pg.activities, *window) == A.count(files.activities, *window) > 0
    pdt.assert_frame_equal(
        A.meeting_outcomes(pg.activities, *window, by="owner").sort_index(),
        A.meeting_outcomes(files.activities, *window, by="owner").sort_index(),
        check_dtype=False,
    )
    assert pg.source("opportunities").count().execute() == len(load(sample_dir).opportunities)


def test_a_frame_sent_to_postgres_is_a_temporary_table(request, hand_dir):
    eng = open_engine(request, "postgres", hand_dir, "nine_deals_keyed")
    try:
        frame = pd.DataFrame(
            {
                "_deal": ["o1", "o6", None],
                "_n": [1, 2, 3],
                "_at": pd.to_datetime(["2026-10-01 00:00", None, "2026-09-30 12:00"]),
                "_x": [0.5, None, 2.0],
            }
        )
        k = expr.keyed(eng["opportunities"], frame)
        assert _kept_name(k).startswith("_kept_")
        got = eng.execute(k).sort_values("_n").reset_index(drop=True)
        pdt.assert_frame_equal(got, frame, check_dtype=False)
        o = eng["opportunities"]
        j = o.inner_join(k, o.opportunity_id == k._deal)
        assert sorted(eng.execute(j.select("opportunity_id"))["opportunity_id"]) == ["o1", "o6"]
    finally:
        eng.close()


# --------------------------------------------------------------------------------------------------
# the pipeline measures that read deals outside the notebook's working set (deal size and cycle over
# 24 months, what earlier quarters finally booked, the lead funnel's deals): on the engine over the
# scope's deals, equal to the pandas reference (pipeline_reference) over the loaded frame
# --------------------------------------------------------------------------------------------------
# fiscal year from February. p01 closed before any window; p02 on the first day of the 24 months;
# p03 won without an amount; p03/p04 and p05/p06 share a close month (ties of amount and cycle); p08 has
# no close date; p09 lost; p11 open; p12 won without an owner; p14 won for 0; p10 and p13 have history
# (rewound to 2026-09-30, p10 is open and p13 won)
WIDE_OPPS = """opportunity_id,owner,created_date,close_date,stage,amount,is_closed,is_won,segment,source
p01,A1,2024-06-01,2024-09-15,Closed Won,500,true,true,SMB,Inbound
p02,A1,2024-09-01,2024-10-31,Closed Won,700,true,true,SMB,Inbound
p03,A1,2025-01-01,2025-03-02,Closed Won,,true,true,SMB,
p04,A2,2025-01-31,2025-03-02,Closed Won,300,true,true,Enterprise,Outbound
p05,A2,2025-12-01,2025-12-31,Closed Won,100,true,true,Enterprise,Outbound
p06,A2,2025-11-01,2025-12-31,Closed Won,100,true,true,SMB,Outbound
p07,A1,2025-10-01,2025-12-15,Closed Won,250,true,true,SMB,Inbound
p08,A3,2026-01-01,,Discovery,,false,false,SMB,Inbound
p09,A3,2026-02-01,2026-05-10,Closed Lost,400,true,false,SMB,Inbound
p10,A1,2026-03-01,2026-10-31,Closed Won,1000,true,true,Enterprise,Inbound
p11,A1,2026-04-01,2026-11-30,Proposal,200,false,false,SMB,Outbound
p12,,2026-05-01,2026-10-20,Closed Won,50,true,true,SMB,Outbound
p13,A2,2026-08-01,2026-09-30,Closed Won,80,true,true,SMB,Inbound
p14,A2,2026-09-01,2026-10-01,Closed Won,0,true,true,SMB,Inbound
"""
WIDE_HISTORY = """opportunity_id,changed_at,stage,amount,close_date
p10,2026-03-01 09:00:00,Discovery,900,2026-09-30
p10,2026-10-31 10:00:00,Closed Won,1000,2026-10-31
p13,2026-08-01 09:00:00,Proposal,80,2026-09-15
p13,2026-09-30 12:00:00,Closed Won,80,2026-09-30
"""
# L6 was created before the windows; L7's deal was won before it (the lead is counted by its own date);
# L4 has no source
WIDE_LEADS = """lead_id,created_date,source,mql_date,sql_date,opportunity_id,owner
L1,2026-01-10,Inbound,2026-01-12,2026-01-20,p10,S1
L2,2026-02-10,Inbound,2026-02-11,,,S1
L3,2026-03-10,Outbound,,2026-03-15,p11,S1
L4,2026-05-10,,2026-05-11,2026-05-12,p09,S1
L5,2026-06-10,Inbound,2026-06-11,2026-06-12,p12,S1
L6,2024-06-10,Inbound,2024-06-11,2024-06-12,p01,S1
L7,2026-07-10,Outbound,2026-07-11,2026-07-12,p07,S1
L8,2026-08-10,Outbound,2026-08-11,2026-08-12,p08,S1
"""
WIDE_AS_OF = pd.Timestamp("2026-10-31")
# deal size and cycle as the pipeline notebook asks (12 months by month, 24 months by quarter), and an
# empty window
WIDE_WINDOWS = [
    ((WIDE_AS_OF - pd.DateOffset(months=11)).replace(day=1), WIDE_AS_OF, "month"),
    (WIDE_AS_OF - pd.DateOffset(months=24), WIDE_AS_OF, "quarter"),
    (WIDE_AS_OF - pd.DateOffset(months=24), WIDE_AS_OF, "month"),
    ("2001-01-01", "2001-12-31", "month"),
    ("2001-01-01", "2001-12-31", "quarter"),
]


@pytest.fixture(scope="session")
def wide_dir(tmp_path_factory) -> Path:
    return hand_folder(
        tmp_path_factory,
        "wide_deals",
        HAND_CONFIG | {"name": "Wide deals", "fiscal_year_start_month": 2},
        opportunities=WIDE_OPPS,
        reps=HAND_REPS,
        opportunity_history=WIDE_HISTORY,
        leads=WIDE_LEADS,
    )


wide_engine = engine_of("wide_dir", "wide_deals")


def _deal_size_check(table, ds, windows):
    import pipeline_reference as ref

    from helpers.data.calendar import FiscalCalendar

    cal = FiscalCalendar(ds.config.fiscal_year_start_month)
    for start, end, freq in windows:
        want = ref.deal_size_and_cycle(ds.opportunities, cal, start, end, freq)
        for data in (table, ds.opportunities):  # an engine table, and a frame (expr.as_table)
            got = pipeline.deal_size_and_cycle(data, cal, start, end, freq)
            pdt.assert_frame_equal(got, want, check_exact=True, obj=f"{freq} {start}")
    return cal


def test_deal_size_and_cycle_on_the_engine_by_hand(wide_engine, wide_dir):
    ds = load(wide_dir)
    cal = _deal_size_check(wide_engine["opportunities"], ds, WIDE_WINDOWS)
    months = pipeline.deal_size_and_cycle(wide_engine["opportunities"], cal, *WIDE_WINDOWS[2][:2])
    m = months.set_index("period")
    # 2025-03: p03 (no amount, 60 d) and p04 (300, 30 d); 2025-12: p05 (100, 30 d), p06 (100, 60 d), p07
    # (250, 75 d); 2024-10: p02 on the window's first day; p01 (2024-09) before it
    assert list(m.index) == ["2024-10", "2025-03", "2025-12", "2026-09", "2026-10"]
    assert m.loc["2025-03"].tolist() == [2, 300.0, 150.0, 45.0, 45.0]
    assert m.loc["2025-12"].tolist() == [3, 450.0, 150.0, 55.0, 60.0]
    # 2026-10: p10 (1000, 244 d), p12 (50, 172 d), p14 (0, 30 d)
    assert m.loc["2026-10"].tolist() == [3, 1050.0, 350.0, (244 + 172 + 30) / 3, 172.0]
    q = pipeline.deal_size_and_cycle(wide_engine["opportunities"], cal, *WIDE_WINDOWS[1][:2], "quarter")
    # fiscal quarters from February: Dec 2025 and Jan 2026 are one quarter; Aug-Oct 2026 another
    assert q["won_deals"].tolist() == [1, 2, 3, 4] and q["bookings"].sum() == 700 + 300 + 450 + 1130
    empty = pipeline.deal_size_and_cycle(wide_engine["opportunities"], cal, "2001-01-01", "2001-12-31")
    assert empty.empty and list(empty.columns) == list(months.columns)


def test_deal_size_and_cycle_on_the_engine_on_the_sample(sample_engine, sample):
    a = sample.as_of
    windows = [
        ((a - pd.DateOffset(months=11)).replace(day=1), a, "month"),
        (a - pd.DateOffset(months=24), a, "quarter"),
        ("2001-01-01", "2001-12-31", "quarter"),
    ]
    _deal_size_check(sample_engine["opportunities"], sample, windows)


def _won_amounts_check(eng, ds, scopes, dates, snapshots=("company",)):
    """What earlier quarters finally booked (pipeline_same_day's final_won), a past quarter's actual
    (forecast_accuracy) and deal size and cycle since 2001, from the scope's deals on the engine, against the reference over every deal of
    the scope as a frame (``working_set`` from no day: what the kernel would hold without a working set;
    windows reach before the working set's start) (``snapshots``: the scopes checked through those two functions too; on the sample ``_movement_check``
    compares them)."""
    import pipeline_reference as ref

    from helpers.data.calendar import FiscalCalendar
    from helpers.metrics import history as hi

    cal = FiscalCalendar(ds.config.fiscal_year_start_month)
    starts = pd.date_range("2023-02-01", "2027-12-01", freq="MS")
    quarters = {cal.quarter_label(s): cal.quarter_start(s) for s in starts}
    seen = outside = 0.0
    for scope, who in scopes:
        for as_of in dates:
            as_of = pd.Timestamp(as_of)
            sc = pipeline.Scoped(ds, scope, who, as_of=as_of, engine=eng)
            windows = [(cal.quarter_start(as_of) - pd.DateOffset(months=3 * k), None) for k in range(1, 9)]
            windows = [(s, s + pd.DateOffset(months=3) - pd.Timedelta(days=1)) for s, _ in windows]
            windows += [("2001-01-01", "2001-12-31"), (as_of, as_of)]
            every = pipeline.working_set(sc.deals, eng["opportunities"], None)
            want = [ref.amount_of(every, pd.Timestamp(s), pd.Timestamp(e)) for s, e in windows]
            assert hi.won_amounts(sc.deals, windows) == want, (scope, who, as_of)
            seen += sum(want)
            outside += sum(want) - sum(
                ref.amount_of(sc.opps, pd.Timestamp(s), pd.Timestamp(e)) for s, e in windows
            )
            # deal size and cycle over the scope's deals where they live (Scoped.table), rewound too
            for start, freq in (
                (as_of - pd.DateOffset(months=24), "quarter"),
                (pd.Timestamp("2001-01-01"), "month"),
            ):
                pdt.assert_frame_equal(
                    pipeline.deal_size_and_cycle(sc.table, cal, start, as_of, freq),
                    ref.deal_size_and_cycle(every, cal, start, as_of, freq),
                    check_exact=True,
                    obj=f"{scope} {as_of:%Y-%m-%d} {freq}",
                )
            for nq in (False, True) if scope in snapshots else ():
                same = hi.pipeline_same_day(sc.deals, cal, as_of, 4, nq)
                done = same[same["complete"]]
                assert len(done)
                for _, row in done.iterrows():
                    qs = quarters[row["quarter"]]
                    qe = qs + pd.DateOffset(months=3) - pd.Timedelta(days=1)
                    assert row["final_won"] == ref.amount_of(every, qs, qe), (scope, who, as_of, qs)
                assert same.loc[~same["complete"], "final_won"].isna().all()
            last = cal.quarter_start(as_of) - pd.DateOffset(months=3)
            last_end = cal.quarter_start(as_of) - pd.Timedelta(days=1)
            if scope in snapshots:
                acc = hi.forecast_accuracy(sc.deals, last, last_end)
                assert (acc["actual"] == ref.amount_of(every, last, last_end)).all()
            sc.deals.release()
    assert seen > 0 and outside > 0  # some won deals are outside the working set


def test_won_amounts_on_the_engine_by_hand(wide_engine, wide_dir):
    from helpers.data.calendar import FiscalCalendar
    from helpers.metrics import history as hi

    ds = load(wide_dir)
    _won_amounts_check(
        wide_engine, ds, [("company", ""), ("team", "East")], ["2026-10-31", "2026-09-30", "2026-03-01"]
    )
    # by hand: the fiscal quarter Nov 2025 - Jan 2026 booked p05 + p06 + p07 = 450; Feb - Apr 2025 p03 (no
    # amount) + p04 = 300; on 2026-09-30 (rewound) p10 is open and p14 not yet won: Aug-Oct 2026 has p13
    d = hi.deals(wide_engine, None, WIDE_AS_OF, WIDE_AS_OF)
    assert hi.won_amounts(d, [("2025-11-01", "2026-01-31"), ("2025-02-01", "2025-04-30")]) == [450.0, 300.0]
    assert hi.won_amounts(d, [("2026-08-01", "2026-10-31")]) == [1130.0]
    r = hi.deals(wide_engine, None, "2026-09-30", WIDE_AS_OF, base=d)
    assert hi.won_amounts(r, [("2026-08-01", "2026-10-31")]) == [80.0]
    same = hi.pipeline_same_day(d, FiscalCalendar(2), WIDE_AS_OF, 4).set_index("quarter")
    # Aug-Oct 2025 .. Aug-Oct 2026, the last complete on its last day
    assert same["final_won"].tolist() == [0.0, 450.0, 0.0, 0.0, 1130.0] and same["complete"].all()
    r.release()
    d.release()


def test_won_amounts_on_the_engine_on_the_sample(sample_engine, sample):
    team = sample.reps["team"].dropna().iloc[0]
    _won_amounts_check(
        sample_engine, sample, [("company", ""), ("team", team)], [sample.as_of, "2026-08-20"], snapshots=()
    )


def _funnel_check(leads, opps, ds, windows, joined: bool, monkeypatch):
    """The lead funnel over ``leads`` and ``opps`` against the reference over the loaded frames; with
    ``joined``, without sending a deal id from the kernel (``keyed`` is not called)."""
    import pipeline_reference as ref

    want_leads = ds.tables["leads"]
    with monkeypatch.context() as mp:
        if joined:
            mp.setattr(pipeline, "keyed", lambda *a: pytest.fail("the deals were sent, not joined there"))
        for start, end in windows:
            for by in ("source", "segment", None):
                want = ref.lead_funnel(want_leads, ds.opportunities, start, end, by)
                got = pipeline.lead_funnel(leads, opps, start, end, by)
                pdt.assert_frame_equal(got, want, check_exact=True, obj=f"{by} {start}")


WIDE_FUNNEL_WINDOWS = [
    ("2025-11-01", "2026-10-31"),
    ("2024-01-01", "2026-10-31"),
    ("2001-01-01", "2001-12-31"),
]


def test_lead_funnel_joins_the_deals_on_the_engine_by_hand(wide_engine, wide_dir, monkeypatch):
    ds = load(wide_dir)
    leads, opps = wide_engine["leads"], wide_engine["opportunities"]
    _funnel_check(leads, opps, ds, WIDE_FUNNEL_WINDOWS, True, monkeypatch)
    # across engines or from frames: the won and open deals are sent (the deals' engine is asked for them)
    _funnel_check(leads, ds.opportunities, ds, WIDE_FUNNEL_WINDOWS, False, monkeypatch)
    _funnel_check(ds.tables["leads"], opps, ds, WIDE_FUNNEL_WINDOWS, False, monkeypatch)
    _funnel_check(ds.tables["leads"], ds.opportunities, ds, WIDE_FUNNEL_WINDOWS, True, monkeypatch)
    f = pipeline.lead_funnel(leads, opps, *WIDE_FUNNEL_WINDOWS[0]).set_index("source")
    # Inbound L1 (p10 won), L2, L5 (p12 won); Outbound L3 (p11 open), L7 (p07 won), L8 (p08 open);
    # (none) L4 (p09 lost); L6 is older than the window
    assert f.loc["Inbound", ["leads", "mql", "sql", "sql_won", "sql_open"]].tolist() == [3, 3, 2, 2, 0]
    assert f.loc["Outbound", ["leads", "mql", "sql", "sql_won", "sql_open"]].tolist() == [3, 2, 3, 1, 2]
    assert f.loc["(none)", ["leads", "sql", "sql_won", "sql_open"]].tolist() == [1, 1, 0, 0]


def test_lead_funnel_counts_a_deal_both_won_and_open_as_both(wide_dir, monkeypatch):
    # two rows of one id (won, and open: is_closed empty), and a won row whose is_closed says open: as
    # the frame code counted them, on one in-memory engine, across two and from frames
    ds = load(wide_dir)
    o = ds.opportunities.copy()
    extra = o[o["opportunity_id"] == "p10"].assign(is_won=False)
    extra["is_closed"] = pd.array([pd.NA] * len(extra), dtype="boolean")
    o = pd.concat([o, extra], ignore_index=True)
    o.loc[o["opportunity_id"] == "p12", "is_closed"] = False
    wide = type(ds)(ds.path, ds.config, {**ds.tables, "opportunities": o})
    one = eng_mod.from_frames({"opportunities": o, "leads": ds.tables["leads"]}, ds.config)
    other = eng_mod.from_frames({"opportunities": o}, ds.config)
    f = pipeline.lead_funnel(one["leads"], one["opportunities"], *WIDE_FUNNEL_WINDOWS[0]).set_index("source")
    assert f.loc["Inbound", ["sql_won", "sql_open"]].tolist() == [2, 2]  # p10 and p12: won and open
    _funnel_check(one["leads"], one["opportunities"], wide, WIDE_FUNNEL_WINDOWS, True, monkeypatch)
    _funnel_check(one["leads"], other["opportunities"], wide, WIDE_FUNNEL_WINDOWS, False, monkeypatch)
    _funnel_check(ds.tables["leads"], o, wide, WIDE_FUNNEL_WINDOWS, True, monkeypatch)


def test_lead_funnel_on_the_engine_on_the_sample(sample_engine, sample, monkeypatch):
    windows = [trailing_window(sample.as_of, 12), ("2001-01-01", "2001-12-31")]
    _funnel_check(sample_engine["leads"], sample_engine["opportunities"], sample, windows, True, monkeypatch)


def test_a_kernels_leads_and_deals_share_one_connection(pg_dataset, sample_dir, wide_dir, monkeypatch):
    # the pipeline kernel's leads (ReportContext.leads, kept on PostgreSQL) and its deals
    # (ReportContext.deals_engine) are joined where they live, for the company and a team; a dataset
    # built in memory (leads a frame, deals an in-memory engine) sends the deals' status instead
    import pipeline_reference as ref

    from helpers.data.dataset import Dataset
    from helpers.metrics import history as hi
    from helpers.sections.context import ReportContext, open_report

    monkeypatch.setenv("REVOPS_TEST_DB_USER", PG_USER)
    monkeypatch.setenv("REVOPS_TEST_DB_PASSWORD", PG_PASSWORD)
    ds = load(sample_dir)
    team = ds.reps["team"].dropna().iloc[0]
    window = trailing_window(ds.as_of, 12)
    for where in (pg_dataset, sample_dir):
        ctx = open_report(str(where), tables=["reps", "opportunities"], show_header=False)
        assert pipeline._same_backend(ctx.leads, ctx.deals_engine["opportunities"]), where
        for scope, who in (("company", ""), ("team", team)):
            sc = pipeline.Scoped(ctx.ds, scope, who, leads=ctx.leads, engine=ctx.deals_engine)
            assert pipeline._same_backend(sc.leads, sc.deals.opps)
            every = pipeline.working_set(sc.deals, ctx.deals_engine["opportunities"], None)
            want = ref.lead_funnel(_leads_frame(sc), every, *window)
            with monkeypatch.context() as mp:
                mp.setattr(pipeline, "keyed", lambda *a: pytest.fail("the deals were sent, not joined there"))
                got = pipeline.lead_funnel(sc.leads, sc.deals.opps, *window)
            pdt.assert_frame_equal(got, want, check_exact=True, obj=f"{where.name} {scope}")
            sc.deals.release()
    mem = load(wide_dir)
    ctx = ReportContext(Dataset(mem.path, mem.config, dict(mem.tables)), WIDE_AS_OF, "2026-10", None, None)
    assert isinstance(ctx.leads, pd.DataFrame)
    assert not pipeline._same_backend(expr.as_table(ctx.leads), ctx.deals_engine["opportunities"])
    d = hi.deals(ctx.deals_engine)
    for start, end in WIDE_FUNNEL_WINDOWS:
        pdt.assert_frame_equal(
            pipeline.lead_funnel(ctx.leads, d.opps, start, end),
            ref.lead_funnel(mem.tables["leads"], mem.opportunities, start, end),
            check_exact=True,
        )


def _leads_frame(sc):
    """The scope's leads as a frame (the reference's input)."""
    return sc.leads.execute()


def test_rewound_history_made_from_another_scopes_base(sample_engine, sample):
    # a rep's deals rewound from the company's normalized history: only the rep's deals' rows (the rows of
    # a base of the same scope are taken as they are; another scope's are limited to these deals)
    from helpers.metrics import history as hi

    owner = str(sample.opportunities["owner"].dropna().iloc[0])
    company = hi.deals(sample_engine, None, SAMPLE_AS_OF, SAMPLE_AS_OF)
    made = hi.deals(sample_engine, [owner], "2026-09-30", SAMPLE_AS_OF, base=company)
    again = hi.deals(sample_engine, [owner], "2026-09-30", SAMPLE_AS_OF)

    def rows(d):
        n = sample_engine.execute(d.norm.select("opportunity_id", "changed_at", "stage", "_rn"))
        return n.sort_values(["opportunity_id", "_rn"]).reset_index(drop=True)

    got, want = rows(made), rows(again)
    opps = sample.opportunities
    assert len(want) and set(got["opportunity_id"]) <= set(opps.loc[opps["owner"] == owner, "opportunity_id"])
    # (a deal created later has rows there too, which the rewound deals leave out)
    got = got[got["opportunity_id"].isin(want["opportunity_id"])].reset_index(drop=True)
    pdt.assert_frame_equal(got, want, check_dtype=False)
