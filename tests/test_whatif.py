"""The what-if plan function and its widget panel, without a browser (hand dataset from test_quota)."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from test_quota import AS_OF, write_hand_dataset

from helpers.data.config import parse_config
from helpers.data.dataset import Dataset, load
from helpers.sections.whatif import PlanInputs, WhatIfPanel, compute_plan, prepare_plan_data


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    ds = load(write_hand_dataset(tmp_path_factory.mktemp("hand") / "hand"))
    return prepare_plan_data(ds, AS_OF, n_draws=300, seed=2)


def test_compute_plan_is_pure_and_adds_planned_hires(data):
    base = compute_plan(PlanInputs(over_assignment=0.10), data)
    hired = compute_plan(PlanInputs(over_assignment=0.10, hires_per_quarter=(1, 0, 0, 0)), data)
    again = compute_plan(PlanInputs(over_assignment=0.10), data)
    assert base.reps["quota"].tolist() == again.reps["quota"].tolist()  # data is not mutated
    assert len(hired.reps) == len(base.reps) + 1
    hire = hired.reps.iloc[-1]
    # the hire starts 2027-01-01 in East (the team with most reps: A, B, E) with the same ramp as D: E = 0.9;
    # Σ w E = 5.0 + 0.9 = 5.9 -> quota = 792k × 0.9 / 5.9
    assert hire["rep_id"] == "TBH-FY2027-Q1-1" and hire["team"] == "East"
    assert hire["capacity"] == pytest.approx(0.9)
    assert hire["quota"] == pytest.approx(792_000 * 0.9 / 5.9)
    assert hired.sum_of_quotas == pytest.approx(792_000)  # the same quota, spread thinner
    # a Q3 hire starting in the quarter's 2nd month (Aug): Aug .25 × 1/15, Sep .5 × 1/15, Oct .75 × 2/15,
    # Nov and Dec 1 × 2/15 -> (0.25 + 0.5 + 1.5 + 2 + 2) / 15 = 6.25/15
    q3 = compute_plan(PlanInputs(hires_per_quarter=(0, 0, 1, 0), hire_month_in_quarter=2), data).reps.iloc[-1]
    assert q3["capacity"] == pytest.approx(6.25 / 15)


def test_history_weighting_follows_productivity(data):
    res = compute_plan(PlanInputs(rep_weighting="history"), data).reps.set_index("rep_id")
    # every rep's productivity is 12,500 -> weights all 1 (C's 1.5 territory weight is ignored)
    assert res["weight"].tolist() == pytest.approx([1.0] * 5)


@pytest.fixture()
def panel(data):
    return WhatIfPanel(data, PlanInputs(over_assignment=0.10), show_details=False)


def test_sliders_update_on_release(panel):
    for name, w in panel.controls.items():
        if hasattr(w, "continuous_update"):
            assert w.continuous_update is False, name


def test_growth_slider_changes_target(panel):
    assert panel.result.target == pytest.approx(720_000)
    assert "$720,000" in panel.summary.value
    panel.controls["growth_rate"].value = 0.5
    # 600k × 1.5 = 900k; quotas 900k × 1.1 = 990k
    assert panel.result.target == pytest.approx(900_000)
    assert panel.result.sum_of_quotas == pytest.approx(990_000)
    assert "$900,000" in panel.summary.value and "$990,000" in panel.summary.value


def test_over_assignment_slider(panel):
    panel.controls["over_assignment"].value = 0.2
    assert panel.result.sum_of_quotas == pytest.approx(720_000 * 1.2)  # 864k


def test_hires_and_ramp_and_seasonality_controls(panel):
    panel.controls["hires_q2"].value = 2
    assert (panel.result.reps["status"] == "planned hire").sum() == 3  # D + 2 hires
    assert "Quota-carrying reps" in panel.summary.value
    assert 'data-key="quota_reps">4 + 3 planned hires<' in panel.summary.value  # 7 reps in all
    panel.controls["hires_q2"].value = 0
    panel.controls["ramp_months"].value = 0
    d = panel.result.reps.set_index("rep_id").loc["D"]
    assert d["capacity"] == pytest.approx(1.0)  # no ramp: a full year
    panel.controls["ramp_months"].value = 3
    panel.controls["seasonal"].value = False
    d = panel.result.reps.set_index("rep_id").loc["D"]
    assert d["capacity"] == pytest.approx(10.5 / 12)  # flat: (0.25 + 0.5 + 0.75 + 9) / 12


def test_target_share_moves_quota_level(panel):
    panel.controls["target_share"].value = 0.5
    k50 = panel.result.quota_level
    panel.controls["target_share"].value = 0.9
    k90 = panel.result.quota_level
    assert k90 < k50  # for more reps to attain, quotas must come down
    assert "90% at quota" in panel.summary.value


def test_panel_with_details_renders(data):
    p = WhatIfPanel(data, show_details=True)
    p.controls["growth_rate"].value = 0.3
    assert p.result.target == pytest.approx(780_000)
    assert "ms" in p.timing.value


# ---- timing ------------------------------------------------------------------------------------------
def best_of(fn, n=3):
    times = []
    for _ in range(n):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times)


@pytest.mark.slow
def test_update_fast_on_sample(sample_dir):
    data = prepare_plan_data(load(sample_dir), n_draws=2000)
    seconds = best_of(lambda: compute_plan(PlanInputs(hires_per_quarter=(1, 1, 0, 0)), data))
    assert seconds < 0.2, f"compute_plan took {seconds * 1000:.0f} ms on the sample"
    panel = WhatIfPanel(data)
    seconds = best_of(
        lambda: setattr(panel.controls["growth_rate"], "value", panel.controls["growth_rate"].value + 0.01)
    )
    assert seconds < 1.0, f"a panel update took {seconds * 1000:.0f} ms on the sample"


def synthetic_dataset(n_reps: int, seed: int = 0) -> Dataset:
    """``n_reps`` reps in 20 teams, one deal a month each over 2025–2026, half of them won."""
    rng = np.random.default_rng(seed)
    cfg = parse_config(
        {
            "name": "synthetic",
            "stages": ["Open", "Won", "Lost"],
            "won_stages": ["Won"],
            "lost_stages": ["Lost"],
            "as_of": "2026-12-31",
        }
    )
    months = pd.date_range("2025-01-01", "2026-12-01", freq="MS")
    n = n_reps * len(months)
    ids = [f"R{i:04d}" for i in range(n_reps)]
    close = (np.tile(months.to_numpy(), n_reps) + np.timedelta64(14, "D")).astype("datetime64[us]")
    won = rng.random(n) < 0.5
    opps = pd.DataFrame(
        {
            "opportunity_id": pd.array([f"O{i}" for i in range(n)], dtype="str"),
            "owner": pd.array(np.repeat(ids, len(months)), dtype="str"),
            "created_date": close - np.timedelta64(30, "D"),
            "close_date": close,
            "stage": np.where(won, "Won", "Lost"),
            "amount": rng.gamma(2.0, 10_000, n),
            "is_closed": True,
            "is_won": won,
        }
    )
    hire = np.datetime64("2020-01-01") + rng.integers(0, 2500, n_reps).astype("timedelta64[D]")
    reps = pd.DataFrame(
        {
            "rep_id": pd.array(ids, dtype="str"),
            "team": [f"T{i % 20}" for i in range(n_reps)],
            "hire_date": hire.astype("datetime64[us]"),
            "end_date": np.full(n_reps, np.datetime64("NaT"), dtype="datetime64[us]"),
            "ote": 150_000.0,
            "ramp_months": np.nan,
            "territory_weight": rng.uniform(0.8, 1.2, n_reps),
        }
    )
    return Dataset(Path("."), cfg, {"opportunities": opps, "reps": reps})


@pytest.mark.slow
def test_update_under_a_second_at_1000_reps():
    data = prepare_plan_data(synthetic_dataset(1000), n_draws=1000)
    assert len(data.roster) == 1000
    seconds = best_of(lambda: compute_plan(PlanInputs(hires_per_quarter=(2, 2, 1, 0)), data))
    assert seconds < 1.0, f"compute_plan took {seconds * 1000:.0f} ms at 1,000 reps"
    panel = WhatIfPanel(data)
    seconds = best_of(
        lambda: setattr(panel.controls["growth_rate"], "value", panel.controls["growth_rate"].value + 0.01)
    )
    assert seconds < 1.0, f"a panel update took {seconds * 1000:.0f} ms at 1,000 reps"
