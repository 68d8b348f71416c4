"""The sample dataset generator: valid, deterministic, realistic, and careful with existing folders."""

from __future__ import annotations

import hashlib
from argparse import Namespace
from pathlib import Path

import pandas as pd
import pytest
import yaml

from helpers.data.calendar import FiscalCalendar
from helpers.data.dataset import load
from helpers.data.sample import SampleError, write_sample

AS_OF = "2026-10-31"
TABLES = ("opportunities", "opportunity_history", "activities", "leads", "reps", "quotas", "churn")


def _hashes(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir())}


@pytest.fixture(scope="module")
def default_sample(tmp_path_factory) -> Path:
    """The default size (4,000 deals, 30 AEs), as `revops sample-data` writes it."""
    return write_sample(tmp_path_factory.mktemp("default") / "sample", seed=42, as_of=AS_OF)


@pytest.fixture(scope="module")
def ds(default_sample):
    return load(default_sample)


def test_loads_without_errors_and_every_table_is_present(ds, default_sample):
    assert sorted(ds.tables) == sorted(TABLES)
    assert sorted(p.name for p in default_sample.iterdir()) == sorted(
        [f"{t}.csv" for t in TABLES] + ["dataset.yml"]
    )
    assert ds.config.fiscal_year_start_month == 2
    assert ds.config.as_of == AS_OF
    assert ds.config.qualifying_stage == "Qualification"
    # dirty rows only ever produce warnings of the three kinds a report can live with
    kinds = {w.expected.split(" (")[0] for w in ds.warnings}
    assert kinds <= {
        "open deal with a close date before the as-of date 2026-10-31",
        "open deal with no next step",
        "amount is zero",
    }
    assert ds.warnings, "the sample should carry a few dirty rows that trigger warnings"


def test_conftest_sized_sample_loads(sample_dir):
    small = load(sample_dir)
    assert len(small.opportunities) == 1500
    assert (small.reps["role"] == "AE").sum() == 12


def test_row_counts_roughly_as_requested(ds):
    # 4,000 deals exactly; 10 activities per deal → 40,000 activities; 30 AEs + 5 SDRs
    assert len(ds.opportunities) == 4000
    assert len(ds.activities) == 40_000
    assert (ds.reps["role"] == "AE").sum() == 30
    assert (ds.reps["role"] == "SDR").sum() == 30 // 6
    assert ds.reps["team"].nunique() - 1 in range(3, 6)  # 3–5 AE teams plus the SDR team
    assert 2 <= ds.reps["end_date"].notna().sum() <= 3
    assert len(ds.leads) > len(ds.opportunities)
    assert 0 < len(ds.churn) < ds.opportunities.loc[ds.opportunities["is_won"], "account"].nunique() * 0.15


def test_deterministic_bytes(tmp_path):
    a = write_sample(tmp_path / "a", seed=3, as_of=AS_OF, n_opportunities=600, n_reps=10)
    b = write_sample(tmp_path / "b", seed=3, as_of=AS_OF, n_opportunities=600, n_reps=10)
    c = write_sample(tmp_path / "c", seed=4, as_of=AS_OF, n_opportunities=600, n_reps=10)
    assert _hashes(a) == _hashes(b)
    assert _hashes(a)["opportunities.csv"] != _hashes(c)["opportunities.csv"]


def test_history_agrees_with_opportunities(ds):
    opp = ds.opportunities.set_index("opportunity_id")
    h = ds.opportunity_history
    assert set(h["opportunity_id"]) == set(opp.index)
    last = h.groupby("opportunity_id", sort=False).tail(1).set_index("opportunity_id").loc[opp.index]
    assert (last["stage"] == opp["stage"]).all()
    assert (last["amount"] == opp["amount"]).all()
    assert (last["close_date"] == opp["close_date"]).all()
    first = h.groupby("opportunity_id", sort=False).head(1).set_index("opportunity_id").loc[opp.index]
    assert (first["stage"] == "Prospecting").all()
    assert (first["changed_at"].dt.normalize() == opp["created_date"]).all()
    # every change lies within [created_date, as_of] and rows of a deal are in time order
    created = opp.loc[h["opportunity_id"], "created_date"].to_numpy()
    assert (h["changed_at"].to_numpy() >= created).all()
    assert (h["changed_at"] < pd.Timestamp(AS_OF) + pd.Timedelta(days=1)).all()
    assert h.groupby("opportunity_id")["changed_at"].apply(lambda s: s.is_monotonic_increasing).all()
    # stages only move forward through the funnel
    rank = {s: i for i, s in enumerate(ds.config.stages)}
    r = h["stage"].map(rank)
    assert (r.groupby(h["opportunity_id"]).diff().dropna() >= 0).all()
    # a realistic share of deals slipped or changed amount
    pushed = (h["close_date"].groupby(h["opportunity_id"]).diff().dt.days > 0) & ~h["stage"].str.startswith(
        "Closed"
    )
    slipped = pushed.groupby(h["opportunity_id"]).any()
    amounts = h.groupby("opportunity_id")["amount"].nunique()
    assert 0.2 < slipped.mean() < 0.6
    assert 0.15 < (amounts > 1).mean() < 0.45


def test_win_rate_and_performer_spread(ds):
    opp = ds.opportunities
    closed = opp[opp["is_closed"]]
    assert 0.20 <= closed["is_won"].mean() <= 0.30
    by_seg = closed.groupby("segment")["is_won"].mean()
    assert by_seg["SMB"] > by_seg["Enterprise"]
    won = opp[opp["is_won"]]
    med = won.groupby("segment")["amount"].median()
    assert med["SMB"] < med["Mid-Market"] < med["Enterprise"]
    # last complete fiscal year (FY2026 = Feb 2025 – Jan 2026): bookings ÷ OTE per fully ramped AE
    cal = FiscalCalendar(2)
    fy = cal.fiscal_years(won["close_date"])
    bookings = won[fy == 2026].groupby("owner")["amount"].sum()
    reps = ds.reps.set_index("rep_id")
    full = reps[
        (reps["role"] == "AE")
        & reps["end_date"].isna()
        & (reps["hire_date"] < cal.year_start(2026) - pd.DateOffset(months=5))
    ]
    x = (bookings.reindex(full.index).fillna(0) / full["ote"]).sort_values()
    assert 2.0 <= x.median() <= 3.2
    assert 4.0 <= x.iloc[-1] <= 6.0
    assert 1.5 <= x.iloc[-1] / x.median() <= 2.4


def test_seasonality_and_growth(ds):
    cal = FiscalCalendar(2)
    won = ds.opportunities[ds.opportunities["is_won"]]
    fy = cal.fiscal_years(won["close_date"])
    q = cal.fiscal_quarters(won["close_date"])
    by_fy = won.groupby(fy)["amount"].sum()
    assert 1.1 <= by_fy[2026] / by_fy[2025] <= 1.35
    for year in (2025, 2026):
        by_q = won[fy == year].groupby(q[fy == year])["amount"].sum()
        assert by_q.idxmax() == 4 and by_q[1] < by_q[4]
    # target = last fiscal year's bookings × 1.2, rounded to 100k
    assert ds.config.targets[2027] == pytest.approx(round(by_fy[2026] * 1.2, -5))


def test_activities_and_leads_look_real(ds):
    a = ds.activities
    calls = a[a["type"] == "call"]
    assert 0.15 <= (calls["outcome"] == "connected").mean() <= 0.25
    emails = a[a["type"] == "email"]
    assert 0.05 <= (emails["outcome"] == "replied").mean() <= 0.10
    meetings = a[a["type"].isin(["meeting", "demo"])]
    assert 0.10 <= (meetings["outcome"] == "no_show").mean() <= 0.20
    assert a["occurred_at"].dt.hour.between(8, 18).mean() > 0.99
    assert 0.4 < a["opportunity_id"].notna().mean() < 0.8
    sdr = set(ds.reps.loc[ds.reps["role"] == "SDR", "rep_id"])
    assert a["owner"].isin(sdr).mean() > 0.2
    assert a["occurred_at"].max() < pd.Timestamp(AS_OF) + pd.Timedelta(days=1)
    leads = ds.leads
    assert (leads["mql_date"].dropna() >= leads.loc[leads["mql_date"].notna(), "created_date"]).all()
    assert (leads["sql_date"].notna() <= leads["mql_date"].notna()).all()
    assert leads["opportunity_id"].notna().sum() > 0.4 * len(ds.opportunities)


def test_quotas_cover_current_fiscal_year(ds):
    q = ds.quotas
    assert set(q["metric"]) == {"bookings", "meetings"}
    assert q["period_start"].max() == pd.Timestamp("2027-01-01")  # last month of FY2027
    ae = q[q["metric"] == "bookings"].merge(ds.reps, on="rep_id")
    annual = (
        ae[ae["period_start"].between("2026-02-01", "2027-01-31")]
        .groupby("rep_id")
        .agg(
            quota=("quota", "sum"),
            ote=("ote", "first"),
            hire=("hire_date", "first"),
            end=("end_date", "first"),
        )
    )
    tenured = annual[(annual["hire"] < pd.Timestamp("2025-06-01")) & annual["end"].isna()]
    assert ((tenured["quota"] / tenured["ote"]).between(3.0, 5.0)).all()


def test_refuses_to_overwrite_a_folder_it_did_not_write(tmp_path):
    folder = tmp_path / "mine"
    folder.mkdir()
    (folder / "dataset.yml").write_text("name: My real data\n")
    (folder / "opportunities.csv").write_text("opportunity_id,stage\n1,Won\n")
    before = _hashes(folder)
    with pytest.raises(SampleError, match="did not generate"):
        write_sample(folder, n_opportunities=100, n_reps=5, as_of=AS_OF)
    with pytest.raises(SampleError):
        write_sample(folder, n_opportunities=100, n_reps=5, as_of=AS_OF, force=True)
    assert _hashes(folder) == before


def test_idempotent_skip_and_regenerate(tmp_path, capsys):
    from helpers.data.sample import cli

    folder = tmp_path / "s"
    args = Namespace(
        to=str(folder),
        seed=1,
        as_of=AS_OF,
        opportunities=200,
        reps=6,
        activities_per_opportunity=3.0,
        format="csv",
        force=False,
    )
    assert cli(args) == 0
    src = yaml.safe_load((folder / "dataset.yml").read_text())["source"]
    assert src["generator"] == "revops-sample" and src["n_opportunities"] == 200
    mtimes = {p.name: p.stat().st_mtime_ns for p in folder.iterdir()}
    assert cli(args) == 0
    assert "skipping" in capsys.readouterr().out
    assert {p.name: p.stat().st_mtime_ns for p in folder.iterdir()} == mtimes
    args.seed = 2  # different parameters: regenerated in place
    assert cli(args) == 0
    assert yaml.safe_load((folder / "dataset.yml").read_text())["source"]["seed"] == 2
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temp folders left


def test_parquet_format_loads(tmp_path):
    folder = write_sample(tmp_path / "pq", seed=5, as_of=AS_OF, n_opportunities=300, n_reps=6, fmt="parquet")
    ds = load(folder)
    assert (folder / "opportunities.parquet").exists()
    assert len(ds.opportunities) == 300
    assert ds.opportunities["created_date"].dtype.kind == "M"


def test_the_samples_warnings_are_the_planted_ones_and_say_so(sample_dir):
    """The generator plants stale open deals, open deals without a next step and a few zero amounts (module
    docstring); every warning of the sample is one of those, and `revops validate` says they are planted."""
    from helpers.data.dataset import load
    from helpers.data.validation import validate_report

    planted = (
        "open deal with a close date before the as-of date",
        "open deal with no next step",
        "amount is zero",
    )
    warnings = load(sample_dir).warnings
    assert warnings
    assert [str(w) for w in warnings if not w.expected.startswith(planted)] == []
    code, text = validate_report(sample_dir)
    assert code == 0
    assert (
        f"{len(warnings)} warning(s) a report can live with (planted on purpose in this synthetic sample"
        in text
    )
