"""Validation as DuckDB queries over Parquet files (helpers.data.duckcheck): the same ``Checked`` as
``dataset.load`` — rows, warnings and errors naming file, row, column, value, expectation and severity,
in load's order, and the as-of dates — on the sample written as Parquet and on hand-broken Parquet
datasets with rows that break each rule; and the typed tables it selects equal load's frames."""

from __future__ import annotations

import shutil

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml

from helpers.data import duckcheck
from helpers.data.dataset import Checked, DataValidationError, infer_as_of, load
from helpers.data.engine import _typed_arrow


def _as_parquet(src, dst):
    """The dataset at ``src`` written as Parquet (its typed tables; dates as DATE) with its dataset.yml."""
    dst.mkdir(parents=True)
    shutil.copy(src / "dataset.yml", dst / "dataset.yml")
    for t, df in load(src).tables.items():
        pq.write_table(_typed_arrow(df, t), dst / f"{t}.parquet")
    return dst


def _loaded(folder, strict=True) -> Checked:
    """What ``load`` finds, told as a ``Checked`` (as ``validation.validate`` tells a loaded dataset)."""
    ds = load(folder, strict=strict)
    opp = ds.tables["opportunities"]
    return Checked(
        ds.path,
        ds.config,
        {k: len(v) for k, v in ds.tables.items()},
        ds.files,
        ds.warnings,
        infer_as_of(opp),
        opp["created_date"].min() if "created_date" in opp.columns else None,
    )


def _same(a: Checked, b: Checked) -> None:
    assert a.rows == b.rows
    assert a.files == b.files
    assert (a.inferred_as_of, a.first_created) == (b.inferred_as_of, b.first_created)
    assert [str(p) for p in a.warnings] == [str(p) for p in b.warnings]
    assert a.warnings == b.warnings
    assert a == b


@pytest.fixture(scope="module")
def sample_pq(sample_dir, tmp_path_factory):
    return _as_parquet(sample_dir, tmp_path_factory.mktemp("pq") / "sample")


def _write(df: pd.DataFrame, path, table: str, types: dict | None = None) -> None:
    arrow = _typed_arrow(df.reset_index(drop=True), table)
    for col, typ in (types or {}).items():
        i = arrow.column_names.index(col)
        arrow = arrow.set_column(i, col, arrow.column(i).cast(typ))
    pq.write_table(arrow, path)


@pytest.fixture(scope="module")
def broken(sample_pq, tmp_path_factory):
    """The sample as Parquet with rows that break each rule a typed Parquet table can break."""
    folder = tmp_path_factory.mktemp("broken") / "pq"
    shutil.copytree(sample_pq, folder)
    read = lambda t: pd.read_parquet(folder / f"{t}.parquet")  # noqa: E731
    opp = read("opportunities")
    ids = opp["opportunity_id"].copy()
    opp.loc[2, "opportunity_id"] = ids[1]  # duplicated id
    opp.loc[30, "opportunity_id"] = ids[1]  # and again
    opp.loc[4, "opportunity_id"] = None  # no id
    opp.loc[5, "opportunity_id"] = f"  {ids[5]} "  # spaces around an id: trimmed, still referenced
    opp.loc[6, "stage"] = "closed  won"  # another spelling of a stage: a warning
    opp.loc[7, "stage"] = "Closd Won"  # not a stage: an error with a hint
    opp.loc[8, "stage"] = "   "  # a required value missing
    opp.loc[9, ["created_date", "close_date"]] = [pd.Timestamp("2025-05-10"), pd.Timestamp("2025-04-01")]
    opp.loc[10, ["is_won", "is_closed", "stage"]] = [True, False, "Negotiation"]  # won, not closed
    opp.loc[11, ["stage", "is_won", "is_closed"]] = ["Closed Lost", True, True]  # lost stage, won
    opp.loc[12, "amount"] = -5.0
    opp.loc[13, "amount"] = np.inf
    opp.loc[14, "amount"] = 0.0
    opp.loc[15, "amount"] = np.nan  # no value: no problem
    opp.loc[16, "probability"] = 150.0  # out of range, and the column is read on 0–100
    opp.loc[17, ["created_date", "close_date", "is_closed", "is_won", "stage"]] = [
        pd.Timestamp("2031-01-01"),
        pd.Timestamp("2031-02-01"),
        False,
        False,
        "Negotiation",
    ]
    opp.loc[18, "created_date"] = pd.Timestamp("2026-11-04")  # after the as-of date: a warning
    opp.loc[19, "owner"] = "GHOST"  # not a rep: a warning
    opp.loc[20, ["is_closed", "is_won"]] = [None, None]  # filled from the stage
    opp.loc[21, "next_step"] = "  "  # an open deal with no next step
    opp["amout"] = "x"  # a misspelt contract column: an error
    opp.loc[22, :] = None  # a blank row: left out, the rows after it keep their numbers
    opp.loc[40, "amount"] = -7.0  # file row 41
    _write(opp, folder / "opportunities.parquet", "opportunities")
    hist = read("opportunity_history")
    hist.loc[3, "opportunity_id"] = "NOPE"  # no such opportunity
    hist.loc[4, "changed_at"] = pd.NaT  # a required value missing
    _write(
        hist,
        folder / "opportunity_history.parquet",
        "opportunity_history",
        {"changed_at": pa.timestamp("us", "UTC")},
    )
    act = read("activities")
    act.loc[[5, 9], "opportunity_id"] = "GHOST-OPP"
    act.loc[6, "activity_id"] = act.loc[7, "activity_id"]
    act.loc[8, "owner"] = "NOBODY"
    _write(act, folder / "activities.parquet", "activities")
    quotas = read("quotas")
    quotas.loc[1, "rep_id"] = "R-GONE"  # a quota of no rep: an error
    quotas.loc[2, "quota"] = -1.0
    _write(quotas, folder / "quotas.parquet", "quotas")
    leads = read("leads")
    leads = leads.drop(columns=["lead_id"])  # the key missing: a required column? (not required: no problem)
    leads.loc[1, "opportunity_id"] = "GHOST-LEAD"
    _write(leads, folder / "leads.parquet", "leads")
    return folder


def test_the_sample_as_parquet_is_checked_as_load_checks_it(sample_pq):
    _same(duckcheck.check(sample_pq), _loaded(sample_pq))


def test_broken_rows_are_found_where_load_finds_them(broken):
    got = duckcheck.check(broken, strict=False)
    want = _loaded(broken, strict=False)
    found = {(p.file, p.column, p.expected.split(";")[0].split(" (")[0], p.severity) for p in want.warnings}
    assert len(found) >= 20  # every kind of rule above is broken at least once
    assert any(p.row == 41 and p.value == -7 for p in want.warnings)  # rows after the blank one
    _same(got, want)


def test_errors_raise_as_load_raises_them(broken):
    with pytest.raises(DataValidationError) as server:
        duckcheck.check(broken)
    with pytest.raises(DataValidationError) as files:
        load(broken)
    assert server.value.problems == files.value.problems
    assert str(server.value) == str(files.value)


def test_as_of_inferred_and_integer_amounts(sample_pq, tmp_path):
    folder = tmp_path / "pq"
    shutil.copytree(sample_pq, folder)
    config = yaml.safe_load((folder / "dataset.yml").read_text())
    config.pop("as_of", None)
    (folder / "dataset.yml").write_text(yaml.safe_dump(config))
    opp = pd.read_parquet(folder / "opportunities.parquet")
    opp["amount"] = opp["amount"].fillna(0).round()
    opp.loc[3, "amount"] = 0
    _write(opp, folder / "opportunities.parquet", "opportunities", {"amount": pa.int64()})
    _same(duckcheck.check(folder), _loaded(folder))


def test_columns_that_need_the_parser_are_left_to_load(sample_pq, tmp_path):
    folder = tmp_path / "pq"
    shutil.copytree(sample_pq, folder)
    opp = pd.read_parquet(folder / "opportunities.parquet")
    opp["close_date"] = opp["close_date"].astype(str)  # dates as text: coerce's parser reads them
    pq.write_table(pa.Table.from_pandas(opp, preserve_index=False), folder / "opportunities.parquet")
    assert duckcheck.check(folder) is None
    shutil.copy(sample_pq / "opportunities.parquet", folder / "opportunities.parquet")
    (folder / "reps.parquet").unlink()
    pd.read_parquet(sample_pq / "reps.parquet").to_csv(folder / "reps.csv", index=False)
    assert duckcheck.check(folder) is None  # a table that is not Parquet


def test_the_typed_tables_equal_loads_frames(broken, sample_pq):
    """The typed SQL gives load's tables exactly: column names and types, and rows (EXCEPT ALL both ways),
    on the sample and on the broken dataset (stage spellings, trimmed ids, derived flags, a blank row,
    a probability column on 0–100, a column outside the contract, a timestamp in UTC)."""
    import duckdb

    for folder in (sample_pq, broken):
        _, selects = duckcheck.run(folder, strict=False)
        frames = load(folder, strict=False).tables
        con = duckdb.connect()
        for t, sql in selects.items():
            con.execute(f"create or replace table got as {sql}")
            con.register("want", _typed_arrow(frames[t], t))
            got = con.execute("describe got").fetchall()
            want = con.execute("describe select * from want").fetchall()
            assert [c[:2] for c in got] == [c[:2] for c in want], t
            for a, b in (("got", "want"), ("want", "got")):
                (n,) = con.execute(
                    f"select count(*) from (select * from {a} except all select * from {b})"
                ).fetchone()
                assert n == 0, (t, a, b)
            assert con.execute("select count(*) from got").fetchone() == (len(frames[t]),)
            first = next(
                c for c in frames[t].columns if pd.api.types.is_string_dtype(frames[t][c])
            )  # row order
            got_first = [r[0] for r in con.execute(f'select "{first}" from got').fetchall()]
            assert got_first == [None if pd.isna(v) else v for v in frames[t][first]], t


def _no_frames(monkeypatch):
    """Fail the test if any table is typed in pandas (``coerce_table``) or read by ``read_raw``."""
    from helpers.data import dataset

    def refuse(*a, **k):
        raise AssertionError("a table was read into pandas")

    monkeypatch.setattr(dataset, "coerce_table", refuse)
    monkeypatch.setattr(dataset, "read_raw", refuse)


def test_the_engine_file_built_by_sql_equals_the_one_built_from_frames(
    sample_pq, broken, tmp_path, monkeypatch
):
    """The typed DuckDB file of a Parquet dataset is built by queries (no table made a frame) and holds
    exactly the tables the pandas path writes: names, types, rows (EXCEPT ALL both ways)."""
    import duckdb

    from helpers.data import engine

    for folder in (sample_pq, broken):
        monkeypatch.setenv("REVOPS_CACHE_DIR", str(tmp_path / folder.name))
        files = engine._sources(folder)
        frames = load(folder, strict=False).tables  # before refusing frames (REVOPS_CACHE on: its own entry)
        old = tmp_path / f"{folder.name}-frames.duckdb"
        engine._write_duckdb(frames, old)
        with monkeypatch.context() as m:
            _no_frames(m)
            if folder == broken:
                with pytest.raises(DataValidationError):
                    engine.typed_duckdb(folder, files)
                assert not engine.cache_file(folder, files).exists()  # nothing kept
                assert not list(engine.cache_file(folder, files).parent.glob(".tmp-engine-*"))
                continue
            path = engine.typed_duckdb(folder, files)
        con = duckdb.connect()
        con.execute(f"attach '{path}' as new (read_only)")
        con.execute(f"attach '{old}' as old (read_only)")
        listed = lambda db, con=con: {  # noqa: E731
            r[0]
            for r in con.execute(
                f"select table_name from information_schema.tables where table_catalog = '{db}'"
            ).fetchall()
        }
        assert listed("new") == set(frames) | {engine.CHECKED}
        assert listed("old") == set(frames)
        for t in frames:
            got = con.execute(f"describe new.{t}").fetchall()
            want = con.execute(f"describe old.{t}").fetchall()
            assert [c[:2] for c in got] == [c[:2] for c in want], t
            for a, b in ((f"new.{t}", f"old.{t}"), (f"old.{t}", f"new.{t}")):
                (n,) = con.execute(f"select count(*) from (from {a} except all from {b})").fetchone()
                assert n == 0, (a, b)
        con.close()


def test_a_parquet_dataset_is_validated_and_its_named_tables_loaded_without_frames(
    sample_pq, tmp_path, monkeypatch
):
    """``validate`` and ``load(tables=[...])`` of a Parquet dataset: the same Checked, frames and warnings
    as the pandas load, with no table read into pandas but those named (from the typed DuckDB file)."""
    from helpers.data import engine
    from helpers.data.validation import validate

    monkeypatch.setenv("REVOPS_CACHE", "0")
    want = _loaded(sample_pq)
    frames = load(sample_pq).tables
    reps_warnings = load(sample_pq, tables=["reps"]).warnings  # the pandas load (the cache is off)
    monkeypatch.setenv("REVOPS_CACHE", "1")
    monkeypatch.setenv("REVOPS_CACHE_DIR", str(tmp_path / "cache"))
    with monkeypatch.context() as m:
        _no_frames(m)
        _same(validate(sample_pq), want)  # builds the typed file, checking the dataset by queries
        ds = engine.load_tables(sample_pq, ["reps", "quotas"])
        assert set(ds.tables) == {"reps", "quotas"}
        for t in ds.tables:
            pd.testing.assert_frame_equal(ds.tables[t], frames[t])
        assert engine.load_tables(sample_pq, ["reps"]).warnings == reps_warnings
        ds = engine.load_tables(sample_pq, ["opportunities", "reps"])
        pd.testing.assert_frame_equal(ds.tables["opportunities"], frames["opportunities"])
        _same(validate(sample_pq), want)  # told by the file's stored check


def test_a_subset_load_keeps_the_typed_file(sample_pq, tmp_path, monkeypatch):
    """A load of some tables writes its cache entry beside the typed DuckDB file of the whole dataset
    (one data key for the dataset's files), so writing it removes neither the file nor the other entries."""
    from helpers.data import engine
    from helpers.data.validation import validate

    monkeypatch.setenv("REVOPS_CACHE", "1")
    monkeypatch.setenv("REVOPS_CACHE_DIR", str(tmp_path / "cache"))
    validate(sample_pq)  # builds the typed file
    typed = engine.cache_file(sample_pq, engine._sources(sample_pq))
    assert typed.exists()
    reps = load(sample_pq, tables=["reps"])  # the pandas load of a subset: writes its own entry
    assert typed.exists()
    entries = [p for p in typed.parent.iterdir() if (p / "meta.json").exists()]
    assert len(entries) == 1  # the subset's entry, in the same folder
    pd.testing.assert_frame_equal(load(sample_pq, tables=["reps"]).tables["reps"], reps.tables["reps"])
