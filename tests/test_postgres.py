"""Database sources against a real PostgreSQL server that the test starts on 127.0.0.1 (a free port, a
temporary data directory, removed afterwards). Skipped only when PostgreSQL's initdb is not installed."""

from __future__ import annotations

import time

import pandas.testing as pdt
import pytest
import yaml
from conftest import PG_PASSWORD, PG_USER

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
