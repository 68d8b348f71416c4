"""Database sources against a real PostgreSQL server that the test starts on 127.0.0.1 (a free port, a
temporary data directory, removed afterwards). Skipped only when PostgreSQL's initdb is not installed."""

from __future__ import annotations

import time

import pandas.testing as pdt
import pytest
import yaml
from conftest import PG_PASSWORD, PG_USER, rows_sent

from helpers.data.dataset import DataValidationError, load
from helpers.data.sources import DbTable, TableReader


def _assert_same_tables(a, b):
    assert list(a.tables) == list(b.tables)
    for name in a.tables:
        pdt.assert_frame_equal(a.tables[name], b.tables[name], obj=name)


def test_postgres_and_files_give_identical_frames(pg_dataset, sample_dir, pg_env):
    from_files = load(sample_dir)
    from_pg = load(pg_dataset)
    _assert_same_tables(from_files, from_pg)
    assert len(from_pg.opportunities) == 1500  # the fixture's n_opportunities
    # the same warnings, named after the database table instead of the file
    assert [p.expected for p in from_pg.warnings] == [p.expected for p in from_files.warnings]
    assert all(PG_PASSWORD not in str(p) for p in from_pg.warnings)
    assert "postgresql://{REVOPS_TEST_DB_USER}:***@127.0.0.1" in from_pg.warnings[0].file


def test_date_window_is_pushed_to_postgres_and_matches_files(pg_dataset, sample_dir, pg_env):
    since = "2026-02-01"
    from_files = load(sample_dir, since=since)
    from_pg = load(pg_dataset, since=since)
    _assert_same_tables(from_files, from_pg)
    full = load(sample_dir)
    # the window drops old closed deals and old activities, and keeps every open deal
    assert len(from_pg.opportunities) < len(full.opportunities)
    assert len(from_pg.activities) == int((full.activities["occurred_at"] >= since).sum())
    assert (~full.opportunities["is_closed"]).sum() == (~from_pg.opportunities["is_closed"]).sum()
    # … and every kept activity's deal is there
    kept = set(from_pg.opportunities["opportunity_id"])
    assert from_pg.activities["opportunity_id"].dropna().isin(kept).all()

    # only the window's rows cross the wire: the reader sends the predicate to PostgreSQL
    cfg = yaml.safe_load((pg_dataset / "dataset.yml").read_text())
    srcs = {t: DbTable(t, s["url"], s["table"], folder=pg_dataset) for t, s in cfg["tables"].items()}
    reader = TableReader(srcs, from_pg.config, since)
    raw_acts = reader.read("activities")
    raw_opps = reader.read("opportunities")
    reader.close()
    assert len(raw_acts) == len(from_pg.activities)
    assert len(raw_opps) == len(from_pg.opportunities)
    assert "\"occurred_at\" >= date '2026-02-01'" in reader.pushed["activities"]
    assert '"opportunity_id" in (select' in reader.pushed["opportunities"]


def test_wrong_password_is_a_clear_error_without_the_password(pg_dataset, monkeypatch):
    wrong = "Wr0ng-Passw0rd-123"
    monkeypatch.setenv("REVOPS_TEST_DB_USER", PG_USER)
    monkeypatch.setenv("REVOPS_TEST_DB_PASSWORD", wrong)
    t0 = time.perf_counter()
    with pytest.raises(DataValidationError) as exc:
        load(pg_dataset)
    msg = str(exc.value)
    assert "password authentication failed" in msg
    assert "could not connect to PostgreSQL" in msg
    assert wrong not in msg and PG_PASSWORD not in msg
    assert wrong not in repr(exc.value.problems)
    assert time.perf_counter() - t0 < 10  # one failed connection, not one per table


def test_missing_environment_variable_is_named(pg_dataset, monkeypatch):
    monkeypatch.setenv("REVOPS_TEST_DB_USER", PG_USER)
    monkeypatch.delenv("REVOPS_TEST_DB_PASSWORD", raising=False)
    with pytest.raises(DataValidationError, match="environment variable REVOPS_TEST_DB_PASSWORD is not set"):
        load(pg_dataset)


def test_pipeline_health_on_postgres_marks_the_stalled_deals_instead_of_listing_them(
    pg_dataset, sample_dir, pg_env
):
    # the stalled deals are counted per stage where they live and marked on the working set's rows (the
    # attention list reads no more); the working set holds the open deals only (no review pack)
    from helpers.sections import pipeline_view as pv
    from helpers.sections.context import open_report

    def ctx(folder):
        return open_report(str(folder), notebook="pipeline_health", show_header=False, tables=["reps"])

    files = pv.prepare(ctx(sample_dir))
    v, stats = rows_sent(pg_dataset, lambda: pv.prepare(ctx(pg_dataset)))
    assert files.stalled is not None and v.stalled is None  # DuckDB lists them, PostgreSQL does not
    # the benchmark: pandas' median and p75 over each stage's days (DuckDB: every value's count;
    # PostgreSQL: the few values around each position)
    pdt.assert_frame_equal(v.bench, files.bench)
    assert v.bench["won_stays"].gt(1).all()
    assert v.n_stalled == len(files.stalled) > 0
    pdt.assert_series_equal(v.stalled_per_stage, files.stalled_per_stage, check_names=False)
    assert sorted(v.stalled_ids) == sorted(files.stalled_ids)
    assert v.figs["stalled_deals"].value == files.figs["stalled_deals"].value
    opps = v.sc.opps
    assert len(opps) == len(files.sc.opps) and not opps["is_closed"].fillna(False).any()
    assert sorted(opps["opportunity_id"]) == sorted(files.sc.opps["opportunity_id"])
    assert set(v.stalled_ids) <= set(opps["opportunity_id"])
    # no statement sends the stalled deals: those naming their thresholds send a row per stage at most
    stalled = [r for q, _, r in stats if "threshold_days" in q]
    assert stalled and max(stalled) <= len(v.stalled_per_stage) < v.n_stalled


def test_win_loss_on_postgres_counts_last_months_data_quality_and_asks_the_churn_top_only(
    pg_dataset, sample_dir, pg_env
):
    from helpers.data.calendar import Window
    from helpers.metrics import winloss as wl
    from helpers.sections import winloss_view as wv
    from helpers.sections.context import open_report
    from helpers.sections.summary import previous_month_end

    ctx = open_report(str(pg_dataset), notebook="win_loss_review", show_header=False, tables=["reps"])
    before = previous_month_end(ctx.as_of)
    full = wv.review(ctx, as_of=before)
    alone, stats = rows_sent(pg_dataset, lambda: wv.review(ctx, as_of=before, figures_only=True))
    # last month's review, read for its figures: the data-quality issues counted, not listed
    assert len(full.issues) > 0 and alone.issues.empty
    pdt.assert_frame_equal(alone.quality, full.quality)
    assert repr(alone.headlines) == repr(full.headlines)
    assert not [q for q, _, r in stats if r > 1 and '"_never"' in q]  # the issue rows' query

    # the churned customers stay on the engine: only those that can be among the five listed come back
    files = open_report(str(sample_dir), notebook="win_loss_review", show_header=False, tables=["churn"])
    churn = files.ds.tables["churn"]
    every = Window("all", churn["churn_date"].min(), ctx.as_of, ctx.as_of, "all")
    want = wl.churned_in(churn, every)
    got, stats = rows_sent(pg_dataset, lambda: wl.churn_candidates(ctx.source("churn"), every))
    pdt.assert_frame_equal(wl.churned_in(got, every).reset_index(drop=True), want.reset_index(drop=True))
    assert len(want) == 5 and 5 <= len(got) < len(churn)
    # the five largest amounts, then the customers with one of at least the fifth (ties included)
    assert sum(r for q, _, r in stats if "churn_date" in q) <= 5 + len(got)
