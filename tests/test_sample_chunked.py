"""The chunked Parquet writer of the sample (what `revops bench` uses for 10M opportunities): the same
schema as the in-memory generator, a dataset that validates, the row counts asked for, several row
groups per table, and the same shape of data."""

from __future__ import annotations

from pathlib import Path

import pyarrow.parquet as pq
import pytest
import yaml

from helpers.data.dataset import load
from helpers.data.sample import SampleError, write_sample
from helpers.data.sample_chunked import chunk_plan, write_sample_chunked
from helpers.data.validation import validate_report

AS_OF = "2026-10-31"
TABLES = ("opportunities", "opportunity_history", "activities", "leads", "reps", "quotas", "churn")


@pytest.fixture(scope="module")
def pair(tmp_path_factory) -> tuple[Path, Path]:
    """The same parameters written in memory (Parquet) and in 3 chunks."""
    root = tmp_path_factory.mktemp("chunked")
    kw = dict(seed=5, as_of=AS_OF, n_opportunities=3000, n_reps=30, activities_per_opportunity=10)
    whole = write_sample(root / "whole", fmt="parquet", **kw)
    chunked = write_sample_chunked(root / "chunked", chunk_opportunities=1000, **kw)
    return whole, chunked


def test_chunk_plan_splits_evenly_and_keeps_the_generators_minimums():
    assert chunk_plan(10_000_000, 76_923) == [(500_000, 3847)] * 3 + [(500_000, 3846)] * 17
    assert chunk_plan(3000, 30, 1000) == [(1000, 10)] * 3
    assert chunk_plan(3000, 6, 100) == [(1500, 3), (1500, 3)]  # no chunk with fewer than 3 AEs
    assert chunk_plan(400, 30, 1000) == [(400, 30)]


def test_same_schema_as_the_in_memory_generator(pair):
    whole, chunked = pair
    for t in TABLES:
        assert (
            pq.read_schema(chunked / f"{t}.parquet").remove_metadata()
            == pq.read_schema(whole / f"{t}.parquet").remove_metadata()
        ), t


def test_validates_with_the_row_counts_asked_for(pair):
    _, chunked = pair
    code, text = validate_report(chunked)
    assert code == 0, text
    ds = load(chunked)
    assert len(ds.opportunities) == 3000
    assert len(ds.activities) == 30_000  # 10 per opportunity
    assert (ds.reps["role"] == "AE").sum() == 30
    assert (ds.reps["role"] == "SDR").sum() == 3 * (10 // 6 + 1)  # max(2, AEs // 6) per chunk
    for t, col in (("opportunities", "opportunity_id"), ("activities", "activity_id"), ("leads", "lead_id")):
        assert ds.tables[t][col].is_unique, t
    assert ds.reps["rep_id"].is_unique and ds.reps["name"].is_unique
    # one team per name, one manager per team, one SDR team
    assert (ds.reps.groupby("team")["manager"].nunique() == 1).all()
    assert (ds.reps.loc[ds.reps["role"] == "SDR", "team"] == "SDR").all()
    # each chunk is a row group of the streamed tables
    assert pq.ParquetFile(chunked / "activities.parquet").metadata.num_row_groups == 3
    cfg = yaml.safe_load((chunked / "dataset.yml").read_text())
    assert cfg["source"]["chunks"] == [[1000, 10]] * 3 and cfg["source"]["format"] == "parquet"
    assert cfg["targets"], "targets from the whole dataset's bookings"


def test_same_shape_of_data_as_the_in_memory_generator(pair):
    whole, chunked = (load(p) for p in pair)

    def shape(ds):
        opp = ds.opportunities
        closed = opp[opp["is_closed"]]
        return {
            "win rate": closed["is_won"].mean(),
            "open share": 1 - opp["is_closed"].mean(),
            "history rows per deal": len(ds.opportunity_history) / len(opp),
            "leads per deal": len(ds.leads) / len(opp),
            "won amount median (k)": opp.loc[opp["is_won"], "amount"].median() / 1000,
        }

    # tolerances: 3,000 deals (~150 open, ~700 won) drawn independently, and each chunk ramps its own
    # few recent hires
    tol = {"win rate": 0.03, "open share": 0.015, "history rows per deal": 0.2, "leads per deal": 0.3}
    a, b = shape(whole), shape(chunked)
    for k in a:
        assert b[k] == pytest.approx(a[k], abs=tol.get(k, 0.15 * a[k])), (k, a[k], b[k])


def test_skips_an_identical_output_and_refuses_a_foreign_folder(pair, tmp_path):
    _, chunked = pair
    before = {p.name: p.stat().st_mtime_ns for p in chunked.iterdir()}
    write_sample_chunked(
        chunked,
        seed=5,
        as_of=AS_OF,
        n_opportunities=3000,
        n_reps=30,
        activities_per_opportunity=10,
        chunk_opportunities=1000,
    )
    assert {p.name: p.stat().st_mtime_ns for p in chunked.iterdir()} == before
    foreign = tmp_path / "mine"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("mine")
    with pytest.raises(SampleError):
        write_sample_chunked(foreign, seed=5, as_of=AS_OF, n_opportunities=3000, n_reps=30)
    assert (foreign / "notes.txt").read_text() == "mine"
