"""The pipeline measures that read closed or created deals (bookings, bookings against plan, coverage,
forecast categories, the landing, cumulative bookings, pipeline created, win rate, sales velocity, the
age threshold of stalled deals) run on the engine over the scope's deals. On DuckDB, PostgreSQL and
Spark, over an engine table and over a frame (``expr.as_table``), they equal the pandas reference
(tests/pipeline_reference.py) exactly, on a hand-built dataset and on the sample; and the pipeline
notebook's headline figures do not move when the kernel's frame holds only the open deals and those
created or closed in the last 7 days.
"""

from __future__ import annotations

import math

import pandas as pd
import pandas.testing as pdt
import pipeline_reference as ref
import pytest
from conftest import engine_of, hand_folder
from test_engine import HAND_CONFIG

from helpers.data.calendar import FiscalCalendar, Window, trailing_window
from helpers.data.dataset import load
from helpers.metrics import pipeline

# fiscal year from February (Q4 = Nov - Jan). c01 closed long before every window; c03 won without an
# amount; c03, c04 and c18 close on one day (c04 and c18 also tie in amount and cycle); c06 lost without
# an amount or a source; c07 is owned by a rep without a team, c15 by one missing from reps, c08 by
# nobody; c14 is open without a close date; c19 closed without a close date; c16 won for 0 on the as-of
# day; c17 and c20 are won with a close date after it; c22 won without a created date; c21 open with
# is_closed empty; forecast categories written in several ways (Best Case, best_case, Upside, an unknown
# one, none)
CLOSED_OPPS = """opportunity_id,owner,created_date,close_date,stage,amount,is_closed,is_won,source,forecast_category,probability
c01,A1,2024-05-01,2024-08-01,Closed Won,500,true,true,Inbound,Closed,
c02,A1,2025-11-19,2025-11-19,Closed Won,300,true,true,Inbound,Closed,
c03,A1,2026-02-01,2026-11-02,Closed Won,,true,true,Inbound,Closed,
c04,A2,2026-03-15,2026-11-02,Closed Won,250,true,true,Outbound,Closed,
c05,A2,2026-01-10,2026-11-16,Closed Lost,400,true,false,Outbound,Omitted,
c06,A2,2026-06-01,2026-11-16,Closed Lost,,true,false,,,
c07,A3,2026-08-01,2026-10-15,Closed Won,1000,true,true,Inbound,Commit,
c08,,2026-09-01,2026-11-17,Closed Won,50,true,true,Partner,Closed,
c09,A1,2026-10-05,2026-11-30,Proposal,400,false,false,Inbound,Commit,0.5
c10,A1,2026-10-05,2026-12-20,Proposal,200,false,false,Outbound,Best Case,
c11,A2,2026-11-02,2027-01-15,Discovery,300,false,false,Partner,best_case,
c12,A2,2026-11-09,2027-02-10,Discovery,700,false,false,Inbound,Pipeline,0.3
c13,A3,2026-09-10,2026-10-20,Proposal,600,false,false,Outbound,Upside,
c14,A1,2026-07-01,,Discovery,,false,false,Inbound,Omitted,
c15,A4,2026-05-05,2026-11-05,Proposal,150,false,false,,Foo,
c16,A1,2026-02-01,2026-11-18,Closed Won,0,true,true,Inbound,Closed,
c17,A2,2026-09-30,2026-11-19,Closed Won,75,true,true,Outbound,Closed,
c18,A1,2026-03-15,2026-11-02,Closed Won,250,true,true,Outbound,Closed,
c19,A1,2025-12-01,,Closed Lost,100,true,false,Inbound,Omitted,
c20,A2,2026-11-16,2027-03-01,Closed Won,90,true,true,Partner,Closed,
c21,A3,2026-11-11,2026-12-01,Discovery,80,,false,Inbound,,
c22,A2,,2026-11-03,Closed Won,120,true,true,Partner,Closed,
c23,A1,2026-11-16,2026-11-16,Closed Lost,60,true,false,Inbound,Omitted,
"""
CLOSED_REPS = "rep_id,name,team\nA1,Ann,East\nA2,Bo,West\nA3,Cy,\nA5,Di,West\n"
# monthly quotas for A1, A2 and A5 (who owns no deal), quarterly ones for A3 (pro-rated by days)
CLOSED_QUOTAS = (
    "rep_id,period_start,period_end,quota\n"
    + "".join(
        f"{rep},{m:%Y-%m-%d},,{q}\n"
        for m in pd.date_range("2026-02-01", "2027-04-01", freq="MS")
        for rep, q in (("A1", 310), ("A2", 290), ("A5", 100))
    )
    + "A3,2026-11-01,2027-01-31,900\nA3,2026-08-01,2026-10-31,600\n"
)
CLOSED_AS_OF = pd.Timestamp("2026-11-18")
# a Wednesday mid-quarter, the quarter's first day, its last day, a month's last day
AS_OFS = ["2026-11-18", "2026-11-01", "2027-01-31", "2026-10-31"]


@pytest.fixture(scope="session")
def closed_dir(tmp_path_factory):
    return hand_folder(
        tmp_path_factory,
        "closed_deals",
        HAND_CONFIG | {"name": "Closed deals", "as_of": "2026-11-18", "fiscal_year_start_month": 2},
        opportunities=CLOSED_OPPS,
        reps=CLOSED_REPS,
        quotas=CLOSED_QUOTAS,
    )


closed_engine = engine_of("closed_dir", "closed_deals")


sample_closed_engine = engine_of("sample_dir", "crm_closed")


def _equal(got: dict, want: dict, what):
    assert got.keys() == want.keys(), what
    for k, w in want.items():
        g = got[k]
        if isinstance(w, float) and math.isnan(w):
            assert isinstance(g, float) and math.isnan(g), (what, k, g)
        else:
            assert type(g) is type(w) and g == w, (what, k, g, w)


def _closed_check(table, ds, as_of, frame_too: bool = True) -> int:
    """Every converted measure over ``table`` (an engine table) and, with ``frame_too``, over the loaded
    frame, against the reference over the frame, exactly, for the windows the notebook asks at ``as_of``
    and an empty one. Returns how many comparisons ran."""
    as_of = pd.Timestamp(as_of)
    frame, reps, quotas = ds.opportunities, ds.tables.get("reps"), ds.tables.get("quotas")
    cal = FiscalCalendar(ds.config.fiscal_year_start_month)
    W = cal.windows(as_of)
    nq = pipeline.next_quarter(cal, as_of)
    empty = Window(
        "Empty", pd.Timestamp("2001-01-01"), pd.Timestamp("2001-06-30"), pd.Timestamp("2001-12-31"), "x"
    )
    plans = {
        k: pipeline.plan_from_targets({cal.fiscal_year(as_of): 5000.0}, cal, v.start, v.end)
        for k, v in W.items()
    }
    n = 0
    for data in (table, frame) if frame_too else (table,):
        for s, e in [(w.start, w.as_of) for w in (*W.values(), empty)] + [(nq.start, nq.end)]:
            assert pipeline.bookings(data, s, e) == ref.bookings(frame, s, e), (s, e)
            _equal(pipeline.win_rate(data, s, e), ref.win_rate(frame, s, e), (s, e))
            n += 2
        for w in (W["YTD"], W["QTD"], nq, empty):
            got, want = (
                pipeline.forecast_rollup(data, w.start, w.end),
                ref.forecast_rollup(frame, w.start, w.end),
            )
            pdt.assert_frame_equal(got, want, check_exact=True, obj=f"forecast {w.name}")
            for by, q, plan in (
                (None, quotas, None),
                ("rep", quotas, None),
                ("team", quotas, None),
                (None, None, 4000.0),
            ):
                got = pipeline.coverage(data, q, w, by=by, reps=reps, threshold=2.5, company_plan=plan)
                want = ref.coverage(frame, q, w, by=by, reps=reps, threshold=2.5, company_plan=plan)
                pdt.assert_frame_equal(got, want, check_exact=True, obj=f"coverage {w.name} {by}")
            n += 5
        for w in (W["YTD"], W["QTD"]):
            _equal(
                pipeline.landing(data, ds.config, w, open_deals=frame),
                ref.landing(frame, ds.config, w),
                w.name,
            )
            n += 1
        for q, plan in ((quotas, None), (None, 1234.0), (None, None)):
            got = pipeline.cumulative_bookings(data, q, W["YTD"], company_plan=plan)
            pdt.assert_frame_equal(
                got, ref.cumulative_bookings(frame, q, W["YTD"], company_plan=plan), check_exact=True
            )
            n += 1
        for by, q, plan, windows in (
            (None, quotas, None, W),
            ("rep", quotas, None, W),
            ("team", quotas, None, {k: W[k] for k in ("QTD", "YTD")}),
            (None, None, plans, W),
            (None, None, None, W),
            ("rep", quotas, None, {"Empty": empty}),
            (None, quotas, None, {}),
        ):
            got = pipeline.bookings_vs_plan(data, q, windows, by=by, reps=reps, company_plan=plan)
            want = ref.bookings_vs_plan(frame, q, windows, by=by, reps=reps, company_plan=plan)
            pdt.assert_frame_equal(got, want, check_exact=True, obj=f"bookings vs plan {by} {list(windows)}")
            n += 1
        for months in (12, 3):
            _equal(
                pipeline.sales_velocity(data, as_of, months),
                ref.sales_velocity(frame, as_of, months),
                "velocity",
            )
            got = pipeline.stalled_by_age(data, as_of, 0.75, months, open_deals=frame)
            pdt.assert_frame_equal(got, ref.stalled_by_age(frame, as_of, 0.75, months), check_exact=True)
            n += 2
        months11 = (as_of - pd.DateOffset(months=11)).replace(day=1)
        for s, e, freq in (
            (months11, as_of, "month"),
            (as_of - pd.Timedelta(weeks=13), as_of, "week"),
            (W["QTD"].start, as_of, "month"),
            ("2001-01-01", "2001-12-31", "week"),
        ):
            got = pipeline.pipeline_created(data, s, e, freq=freq)
            pdt.assert_frame_equal(
                got, ref.pipeline_created(frame, s, e, freq=freq), check_exact=True, obj=f"created {s}"
            )
            n += 1
    return n


def test_closed_deal_measures_on_the_engine_by_hand(closed_engine, closed_dir):
    ds = load(closed_dir)
    table = closed_engine["opportunities"]
    assert sum(_closed_check(table, ds, a, frame_too=a == AS_OFS[0]) for a in AS_OFS) > 150
    cal = FiscalCalendar(2)
    W = cal.windows(CLOSED_AS_OF)
    # QTD (2026-11-01 .. 11-18): won c03 (no amount), c04 250, c18 250, c08 50 (no owner), c16 0, c22 120
    assert pipeline.bookings(table, W["QTD"].start, CLOSED_AS_OF) == 670.0
    bvp = pipeline.bookings_vs_plan(table, ds.tables["quotas"], {"QTD": W["QTD"]}, by="team", reps=ds.reps)
    # East = A1 (c03, c18, c16), West = A2 (c04, c22) and A5 (plan only), (no team) = A3 (plan only) and
    # c08 (no owner)
    assert bvp.set_index("team")["bookings"].to_dict() == {"(no team)": 50.0, "East": 250.0, "West": 370.0}
    fr = pipeline.forecast_rollup(table, W["QTD"].start, W["QTD"].end).set_index("category")
    # won in the quarter (to its end: c17 and c20's 2027 close is outside) 670 + 75; open in it: c09
    # Commit 400; c10 Best Case 200, c11 best_case 300; c15 ("Foo") 150, c21 (none) 80 are Pipeline;
    # c13 (past due before the quarter) and c12 (next quarter) are not in it
    assert fr["cumulative"].tolist() == [745.0, 1145.0, 1645.0, 1875.0]
    assert fr["deals"].tolist() == [7, 1, 2, 2]
    wr = pipeline.win_rate(table, *trailing_window(CLOSED_AS_OF))
    # closed 2025-11-19 .. 2026-11-18: c02 (its first day), c03, c04, c05, c06, c07, c08, c16, c18, c22,
    # c23 (c19 has no close date, c17 closes after)
    assert (wr["closed"], wr["won"], wr["won_priced"]) == (11, 8, 7)
    v = pipeline.sales_velocity(table, CLOSED_AS_OF)
    # open: c09 - c15, c21; cycles of won: c02 0, c03 274, c04 232, c07 75, c08 77, c16 290, c18 232
    # (c22: no created date)
    assert v["open_opportunities"] == 8
    assert v["avg_cycle_days"] == (0 + 274 + 232 + 75 + 77 + 290 + 232) / 7
    stalled = pipeline.stalled_by_age(table, CLOSED_AS_OF, 0.1, open_deals=ds.opportunities)
    # p10 of those seven cycles: 0 + 0.6 × 75 = 45 days; open deals older: c13 (69 days), c15 (197), c14
    # (140, no amount: last)
    assert stalled["threshold_days"].unique().tolist() == [pytest.approx(45.0, rel=1e-12)]
    assert stalled["opportunity_id"].tolist() == ["c13", "c15", "c14"]
    created = pipeline.pipeline_created(table, W["QTD"].start, CLOSED_AS_OF, freq="week")
    # weeks of Monday 10-26 (c11 on 11-02 falls in the week of 11-02), 11-02, 11-09, 11-16
    got = created.groupby("period")["deals"].sum()
    assert got.to_dict() == {
        pd.Timestamp("2026-11-02"): 1,
        pd.Timestamp("2026-11-09"): 2,
        pd.Timestamp("2026-11-16"): 2,
    }


def test_closed_deal_measures_on_the_engine_on_the_sample(sample_closed_engine, sample):
    table = sample_closed_engine["opportunities"]
    assert _closed_check(table, sample, sample.as_of) > 80
    assert _closed_check(table, sample, "2026-08-20", frame_too=False) > 40


@pytest.mark.parametrize("scope", ["company", "team"])
def test_headline_figures_need_only_the_open_and_recent_deals(sample_closed_engine, sample, scope):
    """The kernel's frame, the working set (the open deals and those created or closed in the last 7
    days, what a review pack's changes read), gives the headline figures of every deal: each one that reads closed or created
    deals reads them on the engine."""
    who = sample.reps["team"].dropna().iloc[0] if scope == "team" else ""
    cal = FiscalCalendar(sample.config.fiscal_year_start_month)
    for as_of in (sample.as_of, pd.Timestamp("2026-08-20")):
        sc = pipeline.Scoped(sample, scope, who, as_of=as_of, engine=sample_closed_engine)
        got = pipeline.headline_figures(sc, sample.config, cal, as_of, 3.0, sample.config.targets)
        frame = sc.opps  # the kernel's working set: the open deals and the week's
        sc.opps = pipeline.working_set(sc.deals, sample_closed_engine["opportunities"], None)  # every deal
        assert len(frame) < len(sc.opps) / 2
        want = pipeline.headline_figures(sc, sample.config, cal, as_of, 3.0, sample.config.targets)
        assert list(got) == list(want)
        for k, f in want.items():
            g = got[k]
            same = g.value == f.value or (
                isinstance(f.value, float) and math.isnan(f.value) and math.isnan(g.value)
            )
            assert same and (g.window, g.base) == (f.window, f.base), (k, g, f)
        sc.deals.release()
