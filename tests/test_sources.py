"""Table sources: the Parquet cache of validated loads, DuckDB tables, the date window, redaction."""

from __future__ import annotations

import textwrap
from pathlib import Path

import duckdb
import pandas as pd
import pandas.testing as pdt
import pytest

import helpers.data.dataset as dataset_mod
from helpers.data.config import ConfigError, DatasetConfig
from helpers.data.dataset import load
from helpers.data.sources import TableCache, redact, table_source, window_frames

DATASET_YML = """\
name: tiny
as_of: 2026-06-30
stages: [Prospecting, Proposal, Closed Won, Closed Lost]
won_stages: [Closed Won]
lost_stages: [Closed Lost]
"""

# O1 closed 2025 and untouched since: outside a window from 2026-01-01
# O2 open, created 2024: inside (open)        O3 closed 2026-02-10: inside (closed in window)
# O4 closed 2025, but activity A2 on 2026-03-01 refers to it: inside (kept whole)
OPPS = """\
opportunity_id,owner,created_date,close_date,stage,amount,is_closed,is_won
O1,r1,2025-01-05,2025-03-01,Closed Won,1000,true,true
O2,r1,2024-06-01,2026-09-01,Proposal,2000,false,false
O3,r2,2025-11-01,2026-02-10,Closed Lost,3000,true,false
O4,r2,2025-02-01,2025-05-01,Closed Won,4000,true,true
"""
ACTS = """\
activity_id,owner,type,occurred_at,opportunity_id
A1,r1,call,2025-12-31 23:00:00,O1
A2,r2,email,2026-03-01 09:00:00,O4
A3,r1,meeting,2026-04-01 10:00:00,
"""


def make_dataset(tmp_path: Path, files: dict[str, str], yml: str = DATASET_YML, name: str = "ds") -> Path:
    folder = tmp_path / name
    folder.mkdir()
    (folder / "dataset.yml").write_text(yml)
    for fname, text in files.items():
        (folder / fname).write_text(textwrap.dedent(text))
    return folder


@pytest.fixture
def cache_dir(tmp_path, monkeypatch) -> Path:
    d = tmp_path / "cache"
    monkeypatch.setenv("REVOPS_CACHE_DIR", str(d))
    monkeypatch.delenv("REVOPS_CACHE", raising=False)
    return d


def snapshot(folder: Path) -> dict[str, tuple[int, int]]:
    return {p.name: (p.stat().st_size, p.stat().st_mtime_ns) for p in sorted(folder.rglob("*"))}


def test_cache_hit_returns_the_same_frames_without_reparsing(tmp_path, cache_dir, monkeypatch):
    folder = make_dataset(tmp_path, {"opportunities.csv": OPPS, "activities.csv": ACTS})
    before = snapshot(folder)
    first = load(folder)
    assert list(cache_dir.rglob("opportunities.arrow")), "the first load writes the cache"

    def no_coercion(*a, **k):
        raise AssertionError("a cache hit must not parse or validate again")

    monkeypatch.setattr(dataset_mod, "coerce_table", no_coercion)
    second = load(folder)
    for name in first.tables:
        pdt.assert_frame_equal(first.tables[name], second.tables[name])
    assert second.warnings == first.warnings
    assert second.opportunities["created_date"].dtype == "datetime64[us]"
    assert str(second.opportunities["is_won"].dtype) == "boolean"
    assert snapshot(folder) == before, "nothing in the dataset folder is written"


def test_a_cached_dataset_is_validated_from_its_entry_without_making_frames(tmp_path, cache_dir, monkeypatch):
    """The report run's parent validates the dataset while its kernels start: once the load cache holds
    the dataset, ``validate`` tells the same as a load (rows, files, warnings, dates) from the entry's
    memory-mapped Arrow files, with no pandas frame made (they had held ~600 MB at 1M for the run)."""
    from helpers.data.validation import validate

    folder = make_dataset(tmp_path, {"opportunities.csv": OPPS, "activities.csv": ACTS, "leads.csv": ""})
    first = validate(folder)  # a miss: the dataset is loaded, and the cache written
    monkeypatch.setattr(dataset_mod, "coerce_table", lambda *a, **k: pytest.fail("parsed again"))
    monkeypatch.setattr(TableCache, "_read", lambda *a, **k: pytest.fail("a frame was made"))
    second = validate(folder)
    assert second.rows == first.rows == {"opportunities": 4, "activities": 3}
    assert second.files == first.files and "leads" not in second.files
    assert [str(w) for w in second.warnings] == [str(w) for w in first.warnings]
    assert [str(w) for w in second.warnings] == ["leads.csv — is empty (no header, no rows)"]
    # the latest event: O3's close (2026-02-10), after the latest created date (2025-11-01)
    assert second.inferred_as_of == first.inferred_as_of == pd.Timestamp("2026-02-10")
    assert second.first_created == first.first_created == pd.Timestamp("2024-06-01")
    assert second.as_of == first.as_of == pd.Timestamp("2026-06-30")  # dataset.yml's


def test_a_cached_full_load_serves_a_subset_without_reparsing(tmp_path, cache_dir, monkeypatch):
    folder = make_dataset(tmp_path, {"opportunities.csv": OPPS, "activities.csv": ACTS})
    full = load(folder)  # what the report run does before the notebooks start

    def no_coercion(*a, **k):
        raise AssertionError("a subset of a cached full load must not parse or validate again")

    monkeypatch.setattr(dataset_mod, "coerce_table", no_coercion)
    sub = load(folder, tables=["opportunities"])
    assert list(sub.tables) == ["opportunities"]
    pdt.assert_frame_equal(sub.opportunities, full.opportunities)


def test_a_process_rereads_the_last_entry_from_memory_and_a_notebook_cannot_change_it(
    tmp_path, cache_dir, monkeypatch
):
    """A warm kernel loads the same dataset for notebook after notebook: the second read of an entry
    comes from memory, as shallow copies that a notebook may change without changing the kept frames."""
    import pyarrow.feather as feather

    folder = make_dataset(tmp_path, {"opportunities.csv": OPPS, "activities.csv": ACTS})
    built = load(folder)  # parses and writes the entry
    read = load(folder)  # reads the entry's Parquet files
    read.opportunities.loc[0, "amount"] = -1.0  # a notebook changing its frames (memory-mapped: copied)
    read.opportunities.loc[0, "close_date"] = pd.Timestamp("2020-01-01")
    read.opportunities.loc[0, "is_won"] = False
    read.opportunities["extra"] = 1
    read.activities.loc[0, "type"] = "changed"

    def no_file(*a, **k):
        raise AssertionError("the entry read last is served from memory")

    monkeypatch.setattr(feather, "read_table", no_file)
    again = load(folder)
    for name in built.tables:
        pdt.assert_frame_equal(again.tables[name], built.tables[name])
    assert again.opportunities["amount"].tolist() == [1000.0, 2000.0, 3000.0, 4000.0]
    monkeypatch.undo()

    # new bytes are a new entry: never the kept frames
    (folder / "opportunities.csv").write_text(
        textwrap.dedent(OPPS).replace(
            "O1,r1,2025-01-05,2025-03-01,Closed Won,1000", "O1,r1,2025-01-05,2025-03-01,Closed Won,1500"
        )
    )
    assert load(folder).opportunities["amount"].tolist() == [1500.0, 2000.0, 3000.0, 4000.0]


def test_a_file_digest_is_reused_until_the_file_is_written(tmp_path, cache_dir, monkeypatch):
    import hashlib
    import os

    from helpers.data import sources

    big = tmp_path / "activities.csv"
    big.write_bytes(b"a,b\n" + b"1,2\n" * 600_000)  # 2.4 MB: its digest goes to digests.json
    first = sources.file_sha256(big)
    assert first == hashlib.sha256(big.read_bytes()).hexdigest()
    assert str(big.resolve()) in (cache_dir / "digests.json").read_text()

    sources._DIGESTS.clear()  # a new process: the index on disk
    reads = []
    real_open = open
    monkeypatch.setattr("builtins.open", lambda p, *a, **k: reads.append(str(p)) or real_open(p, *a, **k))
    assert sources.file_sha256(big) == first and str(big) not in reads  # unchanged: not read again
    monkeypatch.undo()

    # one byte changed in place, size and mtime put back: the ctime still moves, so it is hashed again
    st = big.stat()
    with open(big, "r+b") as fh:
        fh.seek(10)
        fh.write(b"9")
    os.utime(big, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert big.stat().st_size == st.st_size and big.stat().st_mtime_ns == st.st_mtime_ns
    assert sources.file_sha256(big) == hashlib.sha256(big.read_bytes()).hexdigest() != first


def test_changed_source_rebuilds_the_cache(tmp_path, cache_dir):
    folder = make_dataset(tmp_path, {"opportunities.csv": OPPS})
    assert load(folder).opportunities["amount"].sum() == 10000  # 1000 + 2000 + 3000 + 4000
    # same size, different byte: 1000 -> 9000 (a size+mtime key could miss this within one second)
    (folder / "opportunities.csv").write_text(OPPS.replace(",1000,", ",9000,"))
    assert load(folder).opportunities["amount"].sum() == 18000  # 9000 + 2000 + 3000 + 4000
    entries = [p for p in cache_dir.glob("*/*") if p.is_dir()]
    assert len(entries) == 1, "the stale entry is removed when the new one is written"


def test_changed_dataset_yml_rebuilds_the_cache(tmp_path, cache_dir):
    folder = make_dataset(tmp_path, {"opportunities.csv": OPPS})
    assert len(load(folder).opportunities) == 4
    # O2's stage "Proposal" is no longer a stage: a stale cache would still return the frames
    (folder / "dataset.yml").write_text(DATASET_YML.replace("Prospecting, Proposal,", "Prospecting,"))
    with pytest.raises(dataset_mod.DataValidationError, match="row 2.*expected a stage listed"):
        load(folder)


def test_cache_can_be_turned_off(tmp_path, cache_dir, monkeypatch):
    monkeypatch.setenv("REVOPS_CACHE", "0")
    folder = make_dataset(tmp_path, {"opportunities.csv": OPPS})
    load(folder)
    assert not cache_dir.exists()
    assert TableCache.open(folder, {"opportunities": folder / "opportunities.csv"}) is None


def test_window_keeps_what_a_report_from_since_needs(tmp_path, cache_dir):
    folder = make_dataset(tmp_path, {"opportunities.csv": OPPS, "activities.csv": ACTS})
    ds = load(folder, since="2026-01-01")
    # O1 is closed before the window and only touched by A1 (before the window): dropped
    assert ds.opportunities["opportunity_id"].tolist() == ["O2", "O3", "O4"]
    assert ds.activities["activity_id"].tolist() == ["A2", "A3"]
    # the full load is still there, from the same cache entry
    assert len(load(folder).opportunities) == 4


def test_window_frames_by_hand():
    cfg = DatasetConfig(stages=["Open", "Won", "Lost"], won_stages=["Won"], lost_stages=["Lost"])
    opp = pd.DataFrame(
        {
            "opportunity_id": ["a", "b", "c"],
            "created_date": pd.to_datetime(["2025-01-01", "2025-01-01", "2025-01-01"]),
            "close_date": pd.to_datetime(["2025-02-01", None, "2025-02-01"]),
            "is_closed": pd.array([True, True, False], dtype="boolean"),
        }
    )
    out = window_frames({"opportunities": opp}, "2026-01-01", cfg)
    # a: closed before the window -> out; b: no close date -> in; c: open -> in
    assert out["opportunities"]["opportunity_id"].tolist() == ["b", "c"]
    assert window_frames({"opportunities": opp}, None, cfg)["opportunities"] is opp


def test_duckdb_tables_load_like_files_with_the_window_pushed_down(tmp_path, cache_dir):
    files = make_dataset(tmp_path, {"opportunities.csv": OPPS, "activities.csv": ACTS}, name="files")
    db = tmp_path / "db"
    db.mkdir()
    con = duckdb.connect(str(db / "crm.duckdb"))
    con.execute(f"create table opps as select * from read_csv('{files / 'opportunities.csv'}')")
    con.execute(f"create table acts as select * from read_csv('{files / 'activities.csv'}')")
    con.close()
    (db / "dataset.yml").write_text(
        DATASET_YML
        + textwrap.dedent("""\
        tables:
          opportunities: {url: "duckdb:///crm.duckdb", table: opps}
          activities: {url: "duckdb:///crm.duckdb", query: "select * from acts where type <> 'social'"}
        """)
    )
    for since in (None, "2026-01-01"):
        a, b = load(files, since=since), load(db, since=since)
        for name in a.tables:
            pdt.assert_frame_equal(a.tables[name], b.tables[name], obj=name)
    assert load(db, since="2026-01-01").opportunities["opportunity_id"].tolist() == ["O2", "O3", "O4"]
    # the DuckDB file is fingerprinted: a change to it is seen on the next load
    con = duckdb.connect(str(db / "crm.duckdb"))
    con.execute("update opps set amount = 9000 where opportunity_id = 'O1'")
    con.close()
    assert load(db).opportunities["amount"].sum() == 18000  # 9000 + 2000 + 3000 + 4000


def test_database_spec_errors_and_redaction(tmp_path):
    with pytest.raises(ConfigError, match="exactly one of table or query"):
        table_source(tmp_path, "opportunities", {"url": "duckdb:///x.duckdb"})
    with pytest.raises(ConfigError, match=r"postgresql://u:\*\*\*@h/db") as exc:
        table_source(tmp_path, "opportunities", ["postgresql://u:hunter2@h/db"])
    assert "hunter2" not in str(exc.value)
    assert table_source(tmp_path, "opportunities", "export.csv") == tmp_path / "export.csv"
    assert redact("postgresql://u:literal@h:5432/db", ()) == "postgresql://u:***@h:5432/db"
    assert redact("auth failed for sup3rsecret", {"sup3rsecret"}) == "auth failed for ***"


def test_missing_duckdb_file_is_a_clear_problem(tmp_path, cache_dir):
    folder = make_dataset(
        tmp_path,
        {},
        yml=DATASET_YML + 'tables: {opportunities: {url: "duckdb:///nope.duckdb", table: opps}}\n',
    )
    with pytest.raises(dataset_mod.DataValidationError, match="DuckDB file .*nope.duckdb not found"):
        load(folder)
