"""Quota helpers pinned on a hand-built dataset small enough to compute by hand.

The hand dataset (``write_hand_dataset``), calendar fiscal year, as of 2026-12-31, plan year FY2027:

- AEs A, B (team East, weight 1), C (West, weight 1.5), E (East, weight 1, leaves 2027-09-30), all hired
  2020; each books one 10k deal per month Jan–Sep 2026 and one 20k deal per month Oct–Dec 2026
  (150k each, 600k in FY2026), and loses three 5k deals every month of 2026.
- D (West, weight 1) is a planned hire starting 2027-01-01 (ramp 25/50/75%), no history.
- S is an SDR (East) who books 10 meetings every month of 2026.
- Activities: 264 AE meetings held + 120 SDR meetings = 384 meetings held, 10 no-shows, 3,840 calls.
- OTE: A 40k, B 60k, C 40k, D 40k, E 40k.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from helpers.data.calendar import FiscalCalendar, trailing_window
from helpers.data.dataset import load
from helpers.metrics import quota as Q

AS_OF = "2026-12-31"
CAL = FiscalCalendar(1)

DATASET_YML = """name: Hand-built quota test
currency: USD
fiscal_year_start_month: 1
as_of: 2026-12-31
stages:
  - {name: Discovery, probability: 0.2}
  - {name: Closed Won, probability: 1.0}
  - {name: Closed Lost, probability: 0.0}
won_stages: [Closed Won]
lost_stages: [Closed Lost]
"""


def write_hand_dataset(folder, extra_yml: str = ""):
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "dataset.yml").write_text(DATASET_YML + extra_yml)
    opps, acts = [], []
    n = 0
    for rep in ("A", "B", "C", "E"):
        for m in range(1, 13):
            created = f"2026-{m:02d}-01"
            closed = f"2026-{m:02d}-15"
            amount = 10_000 if m <= 9 else 20_000
            n += 1
            opps.append((f"O{n}", rep, created, closed, "Closed Won", amount, True, True))
            for _ in range(3):
                n += 1
                opps.append((f"O{n}", rep, created, closed, "Closed Lost", 5_000, True, False))
    pd.DataFrame(
        opps,
        columns=[
            "opportunity_id",
            "owner",
            "created_date",
            "close_date",
            "stage",
            "amount",
            "is_closed",
            "is_won",
        ],
    ).to_csv(folder / "opportunities.csv", index=False)
    k = 0
    # 264 AE meetings held: 66 per AE (A, B, C, E), spread over 2026; 10 calls per meeting held (3,840 in all)
    for rep in ("A", "B", "C", "E"):
        for j in range(66):
            k += 1
            acts.append((f"X{k}", rep, "meeting", f"2026-{j % 12 + 1:02d}-10 10:00", "held"))
    for m in range(1, 13):  # the SDR: 10 meetings booked and held every month
        for _ in range(10):
            k += 1
            acts.append((f"X{k}", "S", "meeting", f"2026-{m:02d}-12 10:00", "held"))
    for j in range(10):  # no-shows count as booked but not held
        k += 1
        acts.append((f"X{k}", "A", "demo", f"2026-{j + 1:02d}-20 10:00", "no_show"))
    for j in range(3840):
        k += 1
        acts.append(
            (f"X{k}", ("A", "B", "C", "E")[j % 4], "call", f"2026-{j % 12 + 1:02d}-05 09:00", "connected")
        )
    pd.DataFrame(acts, columns=["activity_id", "owner", "type", "occurred_at", "outcome"]).to_csv(
        folder / "activities.csv", index=False
    )
    reps = [
        ("A", "Ann", "East", "AE", "2020-01-01", "", 40_000, "", 1.0),
        ("B", "Bob", "East", "AE", "2020-01-01", "", 60_000, "", 1.0),
        ("C", "Cat", "West", "AE", "2020-01-01", "", 40_000, "", 1.5),
        ("D", "Dan", "West", "AE", "2027-01-01", "", 40_000, "", 1.0),
        ("E", "Eve", "East", "AE", "2020-01-01", "2027-09-30", 40_000, "", 1.0),
        ("S", "Sue", "East", "SDR", "2020-01-01", "", "", "", 1.0),
    ]
    pd.DataFrame(
        reps,
        columns=[
            "rep_id",
            "name",
            "team",
            "role",
            "hire_date",
            "end_date",
            "ote",
            "ramp_months",
            "territory_weight",
        ],
    ).to_csv(folder / "reps.csv", index=False)
    return folder


@pytest.fixture(scope="module")
def hand(tmp_path_factory):
    return load(write_hand_dataset(tmp_path_factory.mktemp("hand") / "hand"))


# ---- target and seasonality ------------------------------------------------------------------------
def test_target_from_last_fiscal_year(hand):
    basis = Q.target_basis(hand.opportunities, CAL, 2027, AS_OF)
    # 4 reps × (9 × 10k + 3 × 20k) = 4 × 150k = 600k won in FY2026 (lost deals do not count)
    assert basis.bookings == 600_000
    assert basis.label == "FY2026 bookings"
    assert Q.company_target(basis.bookings, 0.20) == pytest.approx(720_000)  # 600k × 1.2
    assert Q.company_target(basis.bookings, 0.20, configured=1_000_000) == 1_000_000


def test_target_basis_is_trailing_year_while_prior_year_runs(hand):
    # plan FY2027 seen from 2026-06-30: FY2026 is not over -> 12 months 2025-07-01..2026-06-30
    basis = Q.target_basis(hand.opportunities, CAL, 2027, "2026-06-30")
    assert basis.bookings == 4 * 6 * 10_000  # Jan–Jun 2026 only
    assert "12 months to 2026-06-30" in basis.label


def test_seasonal_split(hand):
    s = Q.seasonality(hand.opportunities, CAL, AS_OF)
    # company bookings: 40k/month Jan–Sep, 80k/month Oct–Dec, total 600k -> 1/15 and 2/15
    assert s["share"].sum() == pytest.approx(1.0)
    assert s["share"].iloc[0] == pytest.approx(1 / 15)
    assert s["share"].iloc[11] == pytest.approx(2 / 15)
    plan = Q.monthly_plan(720_000, s["share"], CAL, 2027)
    assert plan["target"].iloc[0] == pytest.approx(48_000)  # 720k / 15
    assert plan["target"].iloc[9] == pytest.approx(96_000)  # 720k × 2/15
    quarters = Q.quarterly_plan(plan).set_index("quarter")["target"]
    assert quarters["Q1"] == pytest.approx(144_000)  # 3/15 of 720k
    assert quarters["Q4"] == pytest.approx(288_000)  # 6/15 of 720k
    assert quarters.sum() == pytest.approx(720_000)


def test_seasonality_flat_without_history():
    opps = pd.DataFrame(
        {"owner": ["A"], "close_date": pd.to_datetime(["2026-03-05"]), "amount": [1.0], "is_won": [True]}
    )
    s = Q.seasonality(opps, CAL, AS_OF)  # only one fiscal month has history: flat
    assert np.allclose(s["share"], 1 / 12)


# ---- ramp, capacity, quotas ------------------------------------------------------------------------
def test_ramp_schedule_and_parsing():
    assert Q.parse_ramp("25/50/75") == (0.25, 0.5, 0.75)
    assert Q.linear_ramp(3) == (0.25, 0.5, 0.75)
    assert Q.linear_ramp(0) == ()
    # hired in plan month 2 (offset 1): 0, .25, .5, .75, 1, 1, ...; hired years ago: all 1
    r = Q.ramp_matrix(np.array([1.0, -30.0]), 6, [(0.25, 0.5, 0.75), (0.25, 0.5, 0.75)])
    assert r[0].tolist() == [0, 0.25, 0.5, 0.75, 1, 1]
    assert r[1].tolist() == [1] * 6


def test_active_months_with_hire_and_departure():
    months = Q.plan_months(CAL, 2027)
    ends = pd.Series(pd.to_datetime(["2027-03-31", "2027-03-30", None]))
    act = Q.active_matrix(np.array([-5.0, -5.0, 2.0]), ends, months)
    assert act[0].sum() == 3  # through March (leaves on the last day)
    assert act[1].sum() == 2  # leaves before March ends: Jan, Feb
    assert act[2].sum() == 10  # starts in March
    assert act[2, 2] == 1 and act[2, 1] == 0


def test_rep_quotas_capacity_and_over_assignment(hand):
    from helpers.sections.whatif import PlanInputs, compute_plan, prepare_plan_data

    data = prepare_plan_data(hand, AS_OF, n_draws=500, seed=1)
    res = compute_plan(PlanInputs(growth_rate=0.20, over_assignment=0.10), data)
    reps = res.reps.set_index("rep_id")
    assert list(reps.index) == ["A", "B", "C", "D", "E"]  # the SDR carries no revenue quota
    # capacity E_i = Σ s_m r_m a_m with s = 1/15 (Jan–Sep), 2/15 (Oct–Dec):
    #   D (hired Jan, ramp 25/50/75): (0.25 + 0.5 + 0.75 + 6 × 1) / 15 + 6/15 = 13.5/15 = 0.9
    #   E (leaves end of Sep): 9/15 = 0.6; A, B, C: 1
    assert reps["capacity"].to_dict() == pytest.approx({"A": 1, "B": 1, "C": 1, "D": 0.9, "E": 0.6})
    # T = 600k × 1.2 = 720k; Q = 720k × 1.1 = 792k; Σ w E = 1 + 1 + 1.5 + 0.9 + 0.6 = 5.0 -> 158,400 per unit
    assert res.target == pytest.approx(720_000)
    assert res.quota_to_assign == pytest.approx(792_000)
    assert reps["quota"].to_dict() == pytest.approx(
        {"A": 158_400, "B": 158_400, "C": 237_600, "D": 142_560, "E": 95_040}
    )
    assert res.sum_of_quotas == pytest.approx(792_000)  # = target × (1 + over-assignment)
    # monthly: D's first month 158,400 × 0.25/15 = 2,640; A's October 158,400 × 2/15 = 21,120
    m = res.monthly_quota_matrix
    assert m[3, 0] == pytest.approx(2_640)
    assert m[0, 9] == pytest.approx(21_120)
    assert m[4, 9:].sum() == 0  # E has left
    assert reps["status"].to_dict() == {
        "A": "tenured",
        "B": "tenured",
        "C": "tenured",
        "D": "planned hire",
        "E": "departing",
    }
    # team split by capacity: East = (1 + 1 + 0.6) / 5 = 0.52, West = 0.48
    teams = res.teams.set_index("team")
    assert teams["share"].to_dict() == pytest.approx({"East": 0.52, "West": 0.48})
    assert teams["target"]["East"] == pytest.approx(0.52 * 720_000)
    # reconciliation ends at the sum of rep quotas
    rec = res.reconciliation.set_index("step")["amount"]
    assert rec["= Company target"] == pytest.approx(720_000)
    assert rec["= Quota to assign"] == pytest.approx(792_000)
    assert rec["= Sum of rep quotas"] == pytest.approx(792_000)
    assert rec["  tenured reps"] == pytest.approx(158_400 * 2 + 237_600)


def test_the_plan_leaves_the_opportunities_where_they_live(hand, tmp_path):
    """A kernel that loads only the reps and quotas (``open_report(tables=[...])`` without the
    opportunities) makes the same plan, funnel and SDR quotas: every question to the opportunities is
    asked of the engine; with the deals loaded as a frame (a dataset built in memory) they run on an
    in-memory table and give the same answers."""
    from helpers.data import engine
    from helpers.sections.whatif import PlanInputs, compute_plan, prepare_plan_data, sdr_plan

    part = load(hand.path, tables=["reps", "quotas"])
    assert "opportunities" not in part.tables and "opportunities" in part.files
    on_engine = engine.source(part, "opportunities")
    assert on_engine is not None and not isinstance(on_engine, pd.DataFrame)
    a = prepare_plan_data(part, AS_OF, n_draws=200, seed=1)
    b = prepare_plan_data(hand, AS_OF, n_draws=200, seed=1, opps=hand.opportunities)  # in memory
    assert a.basis == b.basis and a.basis.bookings == 600_000
    pd.testing.assert_frame_equal(a.seasonality, b.seasonality)
    pd.testing.assert_series_equal(a.team_history, b.team_history)
    assert a.team_history.to_dict() == {"East": 450_000, "West": 150_000}
    np.testing.assert_array_equal(a.draws.dense(), b.draws.dense())
    ra, rb = compute_plan(PlanInputs(), a), compute_plan(PlanInputs(), b)
    pd.testing.assert_frame_equal(ra.reps, rb.reps)
    log = engine.source(part, "activities")
    fa = Q.funnel_rates(on_engine, log, AS_OF, reps=part.reps)
    fb = Q.funnel_rates(hand.opportunities, hand.activities, AS_OF, reps=hand.reps)
    assert fa == fb and fa.win_rate == 0.25 and fa.avg_deal_size == 12_500
    sa = sdr_plan(part, a, 0.2, n_draws=100, activities=log)
    sb = sdr_plan(hand, b, 0.2, n_draws=100, opps=hand.opportunities)
    assert sa.keys() == sb.keys() == {"meetings"}
    pd.testing.assert_frame_equal(sa["meetings"][0], sb["meetings"][0])


def test_flat_split_and_history_team_split(hand):
    from helpers.sections.whatif import PlanInputs, compute_plan, prepare_plan_data

    data = prepare_plan_data(hand, AS_OF, n_draws=200, seed=1)
    flat = compute_plan(PlanInputs(seasonal=False, over_assignment=0.10), data).reps.set_index("rep_id")
    # flat: D = (0.25 + 0.5 + 0.75 + 9) / 12 = 0.875, E = 9/12 = 0.75
    assert flat["capacity"]["D"] == pytest.approx(0.875)
    assert flat["capacity"]["E"] == pytest.approx(0.75)
    hist = compute_plan(PlanInputs(team_split="history"), data).teams.set_index("team")
    # FY2026 bookings by team: East (A, B, E) 450k, West (C) 150k -> 75% / 25%
    assert hist["share"].to_dict() == pytest.approx({"East": 0.75, "West": 0.25})


def test_ote_multiples():
    out = Q.ote_multiples([158_400, 158_400, 237_600, 100_000], [40_000, 60_000, 40_000, np.nan])
    # 158.4k/40k = 3.96 ok; 158.4k/60k = 2.64 below; 237.6k/40k = 5.94 above; no OTE -> blank
    assert out["ote_multiple"].iloc[:3].tolist() == pytest.approx([3.96, 2.64, 5.94])
    assert out["ote_flag"].tolist() == ["ok", "below 3×", "above 5×", ""]


def test_ote_multiples_in_plan(hand):
    from helpers.sections.whatif import PlanInputs, compute_plan, prepare_plan_data

    res = compute_plan(PlanInputs(over_assignment=0.10), prepare_plan_data(hand, AS_OF, n_draws=100))
    reps = res.reps.set_index("rep_id")
    # full-year quota at full ramp = quota / capacity: E 95,040 / 0.6 = 158,400 -> 3.96× of 40k
    assert reps["ote_multiple"]["E"] == pytest.approx(3.96)
    assert reps["ote_flag"].to_dict() == {"A": "ok", "B": "below 3×", "C": "above 5×", "D": "ok", "E": "ok"}


def test_attrition():
    reps = pd.DataFrame(
        {
            "rep_id": list("WXYZ"),
            "hire_date": pd.to_datetime(["2020-01-01"] * 4),
            "end_date": pd.to_datetime([None, None, None, "2026-06-30"]),
        }
    )
    # headcount 4 at 2025-12-31 and 3 at 2026-12-31, one departure -> 1 / 3.5
    assert Q.attrition_rate(reps, AS_OF) == pytest.approx(1 / 3.5)
    # one rep, 1,000 a month, 24% a year: Σ_m 1000 × 0.24 × (m−1)/12 = 1000 × 0.24 × 66/12 = 1,320
    assert Q.attrition_loss(np.full((1, 12), 1000.0), 0.24) == pytest.approx(1_320)


# ---- supported quota and simulation ------------------------------------------------------------------
def test_supported_quota_and_peer_history(hand):
    from helpers.sections.whatif import PlanInputs, compute_plan, prepare_plan_data

    res = compute_plan(PlanInputs(), prepare_plan_data(hand, AS_OF, n_draws=100))
    reps = res.reps.set_index("rep_id")
    # own history: 150k over 12 ramped months = 12,500 a month; D has none -> West peers (C): 12,500
    assert reps["productivity"].to_dict() == pytest.approx({k: 12_500 for k in "ABCDE"})
    assert reps["history"].to_dict() == {"A": "own", "B": "own", "C": "own", "D": "peers", "E": "own"}
    # supported = 12,500 × 12 × E_i (historical seasonality): A 150k, D 0.9 × 150k = 135k, E 0.6 × 150k = 90k
    assert reps["supported_quota"].to_dict() == pytest.approx(
        {"A": 150_000, "B": 150_000, "C": 150_000, "D": 135_000, "E": 90_000}
    )


def test_simulation_constant_bookings_is_exact():
    pools = [np.full(12, 10_000.0), np.full(12, 10_000.0)]
    draws = Q.draw_months(pools, n_draws=1000, seed=3)
    season = np.r_[np.full(9, 1 / 15), np.full(3, 2 / 15)]
    totals = Q.simulate_totals(draws, np.ones((2, 12)), np.ones((2, 12)), season)
    # every draw: Σ_m 12 s_m × 10k = 120k exactly (to float32 rounding)
    assert np.allclose(totals, 120_000, rtol=1e-6)
    att = Q.attainment(totals, np.array([119_000.0, 121_000.0]), target_share=0.5)
    assert att.p_attain.tolist() == [1.0, 0.0]
    assert att.expected_share == 0.5
    assert np.all(att.share_by_draw == 0.5)


def test_quota_level_for_target_share():
    totals = np.vstack([np.full(100, 100.0), np.full(100, 200.0)])
    att = Q.attainment(totals, np.array([100.0, 100.0]), target_share=0.5)
    # ratios are 1 (rep 1) and 2 (rep 2); any k in (1, 2] leaves exactly half at quota
    assert 1.0 < att.quota_level <= 2.0
    assert ((totals >= att.quota_level * 100).mean()) == 0.5
    att_all = Q.attainment(totals, np.array([100.0, 100.0]), target_share=1.0)
    assert att_all.quota_level == pytest.approx(1.0)  # the lowest ratio: everyone attains


def test_quota_at_share():
    totals = np.array([[10.0, 20.0, 30.0, 40.0], [5.0, 5.0, 5.0, 5.0]])
    # reached in 75% of 4 draws: the ⌈0.25 × 4⌉ = 1st (0-based) smallest -> 20 (3 of 4 draws ≥ 20); constant -> 5
    assert Q.quota_at_share(totals, 0.75).tolist() == [20.0, 5.0]
    assert Q.quota_at_share(totals, 1.0).tolist() == [10.0, 5.0]


@pytest.mark.parametrize("held", [True, False])  # positions held, or replayed from the seed
@pytest.mark.parametrize("big", [300, 70_000])  # wide positions as uint16, then uint32
def test_pool_draws_match_the_dense_array(monkeypatch, big, held):
    """The draws held as positions in the pools, or replayed from the seed, give the dense array's very
    numbers: the same values, totals bit for bit, and so the same P(attain), quota level and share at quota
    by draw. Reps with one-byte positions (own months, a shared 256-value pool, an empty pool) sit between
    reps on wider pools, and the blocks are a few reps long."""
    import quota_reference as ref

    rng = np.random.default_rng(7)
    money = lambda k: np.round(rng.gamma(2.0, 9_000.0, k), 2)  # noqa: E731 - distinct values with cents
    team_a, team_b, edge = money(257), money(big), money(256)
    pools = [
        money(12),
        team_a,
        money(7),
        edge,
        team_b,
        np.zeros(0),
        team_a,
        money(1),
        edge,
        team_b,
        money(12),
    ]
    n, n_draws = len(pools), 37
    monkeypatch.setattr(Q, "DRAW_BLOCK_VALUES", 3 * n_draws * 12)  # blocks of 3 reps
    monkeypatch.setattr(Q, "GATHER_BLOCK_VALUES", 2 * n_draws * 12)
    if not held:
        monkeypatch.setattr(Q, "HELD_DRAWS_BYTES", n * n_draws * 12 - 1)  # one byte short of the narrowest
    d = Q.draw_months(pools, n_draws, 12, seed=5)
    assert d.held == held and d.shape == (n, n_draws, 12)
    if held:
        assert d.narrow.dtype == np.uint8 and d.wide.dtype == (np.uint16 if big <= 2**16 else np.uint32)
    else:
        assert d.narrow is None and d.wide is None
    assert d.narrow_rows.tolist() == [0, 2, 3, 5, 7, 8, 10] and d.wide_rows.tolist() == [1, 4, 6, 9]
    assert len(d.values) == 12 + 257 + 7 + 256 + big + 1 + 1 + 12  # a shared pool is held once
    dense = ref.draw_months(pools, n_draws, 12, seed=5)
    np.testing.assert_array_equal(d.dense(), dense)

    active = np.ones((n, 12))
    active[3, :4] = 0  # starts in month 5
    ramp = np.tile(np.r_[np.linspace(0.25, 1, 6), np.ones(6)], (n, 1))
    ramp[::2] = 1
    season = np.r_[np.full(6, 0.06), np.full(6, 0.1066)]
    got = Q.simulate_totals(d, active, ramp, season)
    want = ref.simulate_totals(dense, active, ramp, season)
    assert got.dtype == want.dtype == np.float32
    np.testing.assert_array_equal(got.view(np.uint32), want.view(np.uint32))
    quotas = np.quantile(want, 0.4, axis=1).astype(float)
    quotas[5] = 0  # no quota
    a, b = Q.attainment(got, quotas, 0.75), Q.attainment(want, quotas, 0.75)
    np.testing.assert_array_equal(a.p_attain, b.p_attain)
    np.testing.assert_array_equal(a.share_by_draw, b.share_by_draw)
    assert a.quota_level == b.quota_level and a.expected_share == b.expected_share
    assert 0 < a.expected_share < 1 and len(set(a.share_by_draw)) > 1  # the case is not degenerate
    # the first reps (planned hires take the first n of theirs)
    np.testing.assert_array_equal(Q.simulate_totals(d.head(5), active[:5], ramp[:5], season), want[:5])
    np.testing.assert_array_equal(d.head(5).dense(), dense[:5])


def test_attainment_by_blocks_matches_the_whole_matrix(monkeypatch):
    """P(attain), share at quota by draw, expected share and quota level by blocks of reps equal the whole
    matrix's (one ``np.partition`` of every ratio): reps without a quota skipped, blocks of 3 reps, float32
    and float64 totals, every target share from all to none, the level in a crowded bin and in a lone one."""
    import quota_reference as ref

    monkeypatch.setattr(Q, "GATHER_BLOCK_VALUES", 3 * 50)  # blocks of 3 reps of 50 draws
    rng = np.random.default_rng(3)
    totals = np.round(rng.gamma(2.0, 50_000.0, (11, 50)), 2).astype(np.float32)
    totals[2] = 0  # a rep who never books
    totals[4, :10] = totals[4, 10]  # ties
    quotas = np.quantile(totals, 0.3, axis=1)
    quotas[[1, 7]] = 0  # no quota
    quotas[2] = 1_000.0
    for t in (totals, totals.astype(float)):
        for share in (1.0, 0.9, 0.75, 0.5, 0.25, 0.0):
            got = Q.attainment(t, quotas, share)
            p, by_draw, expected, level = ref.attainment(t, quotas, share)
            np.testing.assert_array_equal(got.p_attain, p)
            np.testing.assert_array_equal(got.share_by_draw, by_draw)
            assert got.expected_share == expected and got.quota_level == level, share
    every = Q.attainment(totals[3:5], quotas[3:5] * 0 + 50_000.0, 0.75)
    assert every.quota_level == ref.attainment(totals[3:5], quotas[3:5] * 0 + 50_000.0, 0.75)[3]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_kth_smallest_is_the_partitions(dtype):
    """Every order statistic of values with negatives, zeros, ties, infinities and NaN (last, as
    ``np.partition`` puts them), read by blocks, equals ``np.partition``'s; values that share the top bits
    of their key (a crowded bin) and values alone in theirs."""
    rng = np.random.default_rng(4)
    vals = np.concatenate(
        [
            rng.normal(0, 1e3, 40),
            1.0 + rng.random(30) * 1e-3,  # one bin
            [0.0, 0.0, -5.0, -5.0, 7.0, np.inf, -np.inf, np.nan, -np.nan, 1e-30, -1e30],  # -nan: sign bit set
        ]
    ).astype(dtype)
    rng.shuffle(vals)
    parts = np.array_split(vals, 7)
    want = np.sort(vals)  # NaN last
    for j in range(len(vals)):
        got = Q.kth_smallest(lambda: iter(parts), j)
        assert got.dtype == dtype
        np.testing.assert_array_equal(got, want[j], err_msg=str(j))


def test_simulation_reproducible_from_seed():
    pools = [np.array([0.0, 5.0, 10.0, 40.0]), np.array([1.0, 2.0])]
    a = Q.draw_months(pools, 300, seed=11).dense()
    b = Q.draw_months(pools, 300, seed=11).dense()
    c = Q.draw_months(pools, 300, seed=12).dense()
    assert np.array_equal(a, b)
    assert not np.array_equal(a, c)
    assert set(np.unique(a[0])) <= {0.0, 5.0, 10.0, 40.0}
    assert set(np.unique(a[1])) <= {1.0, 2.0}


def test_plan_simulation_reproducible(hand):
    from helpers.sections.whatif import PlanInputs, compute_plan, prepare_plan_data

    r1 = compute_plan(PlanInputs(), prepare_plan_data(hand, AS_OF, n_draws=400, seed=5))
    r2 = compute_plan(PlanInputs(), prepare_plan_data(hand, AS_OF, n_draws=400, seed=5))
    assert np.array_equal(r1.attainment.share_by_draw, r2.attainment.share_by_draw)
    assert r1.expected_share == r2.expected_share
    assert 0 <= r1.expected_share <= 1


def test_plan_with_replayed_draws_is_the_held_plan(hand, monkeypatch):
    """Draws too large to hold are replayed from the seed: the plan, its simulation and the SDR plan come
    out the same, figure for figure, planned hires included."""
    from helpers.sections.whatif import PlanInputs, compute_plan, prepare_plan_data, sdr_plan

    inputs = PlanInputs(hires_per_quarter=(1, 0, 2, 0))
    held = prepare_plan_data(hand, AS_OF, n_draws=300, seed=2)
    sdr = sdr_plan(hand, held, 0.2, n_draws=300)
    monkeypatch.setattr(Q, "HELD_DRAWS_BYTES", 0)
    replayed = prepare_plan_data(hand, AS_OF, n_draws=300, seed=2)
    assert held.draws.held and not replayed.draws.held
    a, b = compute_plan(inputs, held), compute_plan(inputs, replayed)
    assert len(a.reps) == 8  # 5 reps and 3 hires
    # the hires' simulated years (from the peers' pool) follow the reps' in the same matrix
    hires = a.reps.iloc[5:]
    assert (hires["quota_at_target_share"] > 0).all() and (hires["p_attain"] > 0).all()
    assert {k: len(t) for k, (t, _) in sdr.items()} == {"meetings": 1}  # one SDR with meetings
    pd.testing.assert_frame_equal(a.reps, b.reps, check_exact=True)
    np.testing.assert_array_equal(a.attainment.share_by_draw, b.attainment.share_by_draw)
    assert a.quota_level == b.quota_level and a.expected_share == b.expected_share
    for (ka, (ta, ma)), (kb, (tb, mb)) in zip(
        sdr.items(), sdr_plan(hand, replayed, 0.2, n_draws=300).items(), strict=True
    ):
        assert ka == kb
        pd.testing.assert_frame_equal(ta, tb, check_exact=True)
        np.testing.assert_array_equal(ma, mb)


def test_verdicts_and_realism():
    assert Q.verdicts([0.1, 0.3, 0.6, 0.99, np.nan]) == [
        "out of reach",
        "stretch",
        "reachable",
        "too easy",
        "",
    ]
    assert Q.is_realistic(0.75) and not Q.is_realistic(0.69) and not Q.is_realistic(0.81)


# ---- reverse funnel ----------------------------------------------------------------------------------
def test_reverse_funnel_issue_example():
    # 100k quota, 10k deals -> 10 deals; 20% win -> 50 opportunities; 1 per meeting -> 50 meetings;
    # 20 calls per meeting -> 1,000 calls (100 calls per deal)
    f = Q.reverse_funnel(
        100_000, avg_deal_size=10_000, win_rate=0.2, meeting_to_opportunity=1.0, call_to_meeting=0.05
    ).iloc[0]
    assert f[["deals", "opportunities", "meetings", "calls"]].tolist() == pytest.approx([10, 50, 50, 1000])


def test_funnel_rates_measured(hand):
    r = Q.funnel_rates(hand.opportunities, hand.activities, AS_OF)
    # won: 48 deals, 600k -> 12,500 average; closed: 48 won + 144 lost = 192 -> 25%
    assert r.avg_deal_size == pytest.approx(12_500)
    assert r.win_rate == pytest.approx(0.25)
    # AE activity only (the SDR S owns no opportunity; its 120 meetings are left out):
    # 192 opportunities created / 264 AE meetings held (no-shows excluded); 264 / 3,840 AE calls
    assert r.meeting_to_opportunity == pytest.approx(192 / 264)
    assert r.call_to_meeting == pytest.approx(264 / 3840)
    # A: 158,400 / 12 = 13,200 a month -> 1.056 deals -> 4.224 opps -> 4.224 × 264/192 = 5.808 meetings
    # -> 4.224 × 3,840/192 = 84.48 calls
    f = Q.reverse_funnel(158_400 / 12, **r.as_kwargs()).iloc[0]
    assert f[["deals", "opportunities", "meetings", "calls"]].tolist() == pytest.approx(
        [1.056, 4.224, 5.808, 84.48]
    )
    # with the reps table: the same AEs (role AE), the same rates
    assert Q.funnel_rates(hand.opportunities, hand.activities, AS_OF, reps=hand.reps) == r


def test_funnel_rates_count_ae_activity_only_in_a_365_day_window():
    opps = pd.DataFrame(
        {
            "opportunity_id": ["O1", "O2"],
            "owner": ["A", "A"],
            "created_date": pd.to_datetime(["2026-01-01", "2026-06-01"]),
            "close_date": pd.to_datetime(["2026-03-01", "2026-07-01"]),
            "amount": [10.0, 5.0],
            "is_closed": [True, True],
            "is_won": [True, False],
        }
    )
    reps = pd.DataFrame({"rep_id": ["A", "S"], "role": ["AE", "SDR"]})
    t = pd.to_datetime
    acts = pd.DataFrame(
        {
            "owner": ["A"] * 6 + ["S"] * 9,
            # A: 4 calls + 2 meetings held in the window; S: 6 calls + 3 meetings held (SDR, left out)
            "type": ["call"] * 4 + ["meeting"] * 2 + ["call"] * 6 + ["meeting"] * 3,
            "occurred_at": t(["2026-01-01 08:00"] * 6 + ["2026-02-01 08:00"] * 9),
            "outcome": ["connected"] * 4 + ["held"] * 2 + ["connected"] * 6 + ["held"] * 3,
        }
    )
    # a call on 2025-12-31 23:00 is outside the 12 months to 2026-12-31 (2026-01-01 .. 2026-12-31)
    acts = pd.concat(
        [
            acts,
            pd.DataFrame(
                {
                    "owner": ["A"],
                    "type": ["call"],
                    "occurred_at": t(["2025-12-31 23:00"]),
                    "outcome": ["connected"],
                }
            ),
        ],
        ignore_index=True,
    )
    r = Q.funnel_rates(opps, acts, "2026-12-31", reps=reps)
    # 2 opportunities created / 2 AE meetings = 1.0; 2 meetings / 4 AE calls = 0.5 -> 2 calls per opportunity
    # (all calls: 10 / 2 = 5 per opportunity — the defect)
    assert r.meeting_to_opportunity == pytest.approx(1.0)
    assert r.call_to_meeting == pytest.approx(0.5)
    assert trailing_window("2026-12-31") == (pd.Timestamp("2026-01-01"), pd.Timestamp("2026-12-31"))


def test_funnel_rates_fall_back_to_benchmarks(hand):
    r = Q.funnel_rates(hand.opportunities, None, AS_OF)
    assert r.meeting_to_opportunity == Q.BENCHMARKS["meeting_to_opportunity"]
    assert dict(r.sources)["call_to_meeting"] == "benchmark"


# ---- SDR quotas --------------------------------------------------------------------------------------
def test_sdr_quotas_from_own_history(hand):
    start, end = CAL.year_start(2027), CAL.year_end(2027)
    ros = Q.roster(hand.reps, hand.opportunities, start, end, AS_OF)
    sdrs = ros.loc[~ros["revenue"]].reset_index(drop=True)
    assert sdrs["rep_id"].tolist() == ["S"]
    events = Q.sdr_events(hand.activities, None)["meetings"]
    flat, monthly = Q.sdr_quota_plan(events, sdrs, CAL, 2027, AS_OF, growth_rate=0.0, n_draws=200)
    # 10 meetings every month -> productivity 10, quota 10 × 12 = 120; constant history -> P = 1
    assert flat.loc[0, "productivity"] == 10
    assert flat.loc[0, "quota"] == 120
    assert flat.loc[0, "p_attain"] == 1.0
    grown, monthly_g = Q.sdr_quota_plan(events, sdrs, CAL, 2027, AS_OF, growth_rate=0.2, n_draws=200)
    # 10 × 1.2 × 12 = 144 > the 120 history always gives -> P = 0, out of reach
    assert grown.loc[0, "quota"] == 144
    assert grown.loc[0, "p_attain"] == 0.0
    assert grown.loc[0, "verdict"] == "out of reach"
    assert monthly.tolist() == [[10.0] * 12] and monthly_g.tolist() == [[12.0] * 12]
    assert grown.loc[0, "quota_at_target_share"] == 120  # what history gives every year


# ---- output --------------------------------------------------------------------------------------------
def test_write_quotas_table(hand, tmp_path):
    from helpers.data.schema import QUOTAS
    from helpers.sections.whatif import PlanInputs, compute_plan, prepare_plan_data

    res = compute_plan(PlanInputs(over_assignment=0.10), prepare_plan_data(hand, AS_OF, n_draws=50))
    path = Q.write_quotas(res.quotas_table(), tmp_path / "out")
    back = pd.read_csv(path)
    assert list(back.columns) == ["rep_id", "period_start", "quota", "period_end", "metric"]
    assert set(QUOTAS.required_columns) <= set(back.columns)
    # 4 reps × 12 months + E × 9 months
    assert len(back) == 4 * 12 + 9
    assert back["quota"].sum() == pytest.approx(792_000, abs=1)
    d = back.loc[(back["rep_id"] == "D") & (back["period_start"] == "2027-01-01")].iloc[0]
    assert d["quota"] == pytest.approx(2_640)
    assert d["period_end"] == "2027-01-31"
    assert (back["metric"] == "bookings").all()


# ---- the notebooks, run by papermill on the sample -----------------------------------------------------
@pytest.mark.slow
def test_quota_notebook_on_sample(sample_dir, tmp_path):
    import json

    from conftest import NOTEBOOKS

    from helpers.publish.report import execute, to_html

    params = {
        "dataset": str(sample_dir),
        "report_mode": True,
        "summary_path": str(tmp_path / "summary.json"),
        "output_dir": str(tmp_path / "out"),
        "growth_rate": 0.25,
        "over_assignment": 0.12,
        "target_share_at_quota": 0.8,
        "hires_per_quarter": "1,1,0,0",
        "ramp_schedule": "30/60/90",
        "n_draws": 1000,
        "seed": 3,
    }
    nb = execute(NOTEBOOKS / "quota_setting.ipynb", tmp_path / "quota_setting.ipynb", params)
    html = to_html(nb, tmp_path / "quota_setting.html").read_text()
    assert "open_report(" not in html and "import " not in html  # no code
    assert "Traceback" not in html and "Error" not in html
    assert html.count("<img") == 5  # monthly plan, OTE multiples, quota vs history, distribution, P(attain)
    assert "widget" not in html.lower()  # report mode builds no widgets
    summary = json.loads((tmp_path / "summary.json").read_text())
    figs = {f["key"]: f for f in summary["figures"]}
    for key in (
        "quota_company_target",
        "quota_sum_of_rep_quotas",
        "quota_over_assignment",
        "quota_expected_share_at_quota",
        "quota_realistic",
        "quota_level_multiple",
        "quota_level_total",
        "quota_reps_out_of_reach",
        "quota_calls_per_rep_month",
    ):
        assert figs[key]["value"] is not None and figs[key]["definition"], key
    assert figs["quota_over_assignment"]["value"] == pytest.approx(0.12)
    assert figs["quota_planned_hires"]["value"] >= 2  # the two hires given as parameters
    target = figs["quota_company_target"]["value"]
    assert f"${target:,.0f}" in html  # the reported number is the one in the summary
    assert figs["quota_sum_of_rep_quotas"]["value"] == pytest.approx(target * 1.12)
    written = list((tmp_path / "out").glob("proposed_quotas_FY*.csv"))
    assert len(written) == 1
    quotas = pd.read_csv(written[0])
    bookings = quotas.loc[quotas["metric"] == "bookings", "quota"].sum()
    assert bookings == pytest.approx(figs["quota_sum_of_rep_quotas"]["value"], rel=1e-6)
    assert quotas["rep_id"].str.startswith("TBH-").sum() > 0


@pytest.mark.slow
def test_whatif_notebook_runs(sample_dir, tmp_path):
    from conftest import NOTEBOOKS

    from helpers.publish.report import execute

    nb = execute(
        NOTEBOOKS / "quota_whatif.ipynb",
        tmp_path / "quota_whatif.ipynb",
        {"dataset": str(sample_dir), "n_draws": 200},
    )
    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])]
    assert not [o for o in outputs if o.output_type == "error"]
    assert any("application/vnd.jupyter.widget-view+json" in o.get("data", {}) for o in outputs)


def test_the_funnel_counts_a_meeting_as_the_activity_tracker_does():
    """One definition of a meeting and a call (``helpers.metrics.activity.normalized``): types and outcomes
    trimmed, lower-cased and alias-mapped. On this messy log the quota report's AE funnel and SDR meetings
    count what the activity tracker counts (before, "meetings", " Meeting ", "Demos", "Calls", "Phone Call"
    were not meetings or calls for the funnel, and a "No Show" meeting counted as held)."""
    from helpers.metrics import activity as A

    t = pd.to_datetime
    rows = [  # (owner, type, outcome): A is an AE, S an SDR; every row on 2026-05-04
        ("A", "Meeting", "held"),
        ("A", "meetings", "positive"),
        ("A", " Meeting ", "Held"),
        ("A", "DEMO", "held"),
        ("A", "Demos", "positive"),
        ("A", "meeting", "No Show"),  # not held
        ("A", "meeting", "no-show"),  # not held
        ("A", "Meeting", "scheduled"),  # booked, not held
        ("A", "Phone Call", "connected"),
        ("A", "Calls", "no answer"),
        ("A", "call", "connected"),
        ("A", " CALL ", "connected"),
        ("A", "in-mail", "replied"),  # a social touch: neither
        ("S", "Meeting", "held"),
        ("S", "meetings", "no-show"),
        ("S", " Demo ", "scheduled"),
        ("S", "meeting", "held"),
        ("S", "in-mail", "replied"),
    ]
    acts = pd.DataFrame(rows, columns=["owner", "type", "outcome"]).assign(occurred_at=t("2026-05-04 10:00"))
    opps = pd.DataFrame(
        {
            "opportunity_id": ["O1", "O2"],
            "owner": ["A", "A"],
            "created_date": t(["2026-05-01", "2026-06-01"]),
            "close_date": t(["2026-07-01", "2026-08-01"]),
            "amount": [10.0, 5.0],
            "is_closed": [True, True],
            "is_won": [True, False],
        }
    )
    reps = pd.DataFrame({"rep_id": ["A", "S"], "role": ["AE", "SDR"]})
    start, end = trailing_window(AS_OF)

    # the AE funnel: 5 meetings/demos held (2 no-shows and 1 scheduled left out), 4 calls
    assert Q.ae_activity(acts, start, end, ["A"]) == (5, 4)
    tracker = A.funnel_rates(acts, opps, start, end, owners=["A"])
    assert tracker["meetings_held"] + tracker["demos_held"] == 5 and tracker["calls"] == 4
    r = Q.funnel_rates(opps, acts, AS_OF, reps=reps)
    assert r.meeting_to_opportunity == pytest.approx(2 / 5)
    assert r.call_to_meeting == pytest.approx(5 / 4)

    # SDR meetings booked: every meeting/demo S logged, whatever its outcome: 4 in May
    ev = Q.sdr_events(acts, None)["meetings"].set_index("rep_id")
    assert ev.loc["S", "value"] == 4 and ev.loc["S", "month"] == pd.Timestamp("2026-05-01")
    for rep, booked in (("S", 4), ("A", 8)):
        mo = A.meeting_outcomes(acts[acts["owner"] == rep], start, end).set_index("type")
        assert mo.loc["meeting+demo", "booked"] == booked == ev.loc[rep, "value"]
