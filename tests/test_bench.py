"""`revops bench`: the targets computed from a run (by hand), the rows PostgreSQL sent (counted against a
load whose rows are known), and the whole bench at a tiny size."""

from __future__ import annotations

import json
import subprocess
import sys

import pandas as pd
import pytest
from conftest import rows_sent

from helpers.publish import bench


def _size(pack_s, pss_mb, floor_s=None, cache_s=None, read_csv_s=None, whatif_s=None, reps=30, ok=True):
    return {
        "reps": reps,
        "generate": {"seconds": 1.0, "format": "csv", "files_mb": 1.0, "peak_mb": 100},
        "cache_build": {"seconds": cache_s},
        "read_csv": {"seconds": read_csv_s},
        "compute": {"duckdb": {"q": 0.1}, "whatif": {"update_seconds": whatif_s, "reps": reps - 3}},
        "pack": {
            "exit_code": 0 if ok else 1,
            "wall_seconds": pack_s,
            "peak_mb": pss_mb * 1.2,
            "peak_pss_mb": pss_mb,
            "peak_kernel_mb": 100,
            "notebooks": {},
        },
        "floor_seconds": floor_s,
        "ratios": {},
    }


def _result(**sizes) -> dict:
    return {
        "machine": {"cpu": "x", "cores": 2, "memory_gb": 24, "python": "3", "pandas": "3", "duckdb": "2",
                    "load_average_at_start": (0, 0, 0)},
        "trivial": {"wall_seconds": 2.0},
        "trivial_warm": {"wall_seconds": 1.0},
        "sizes": sizes,
    }  # fmt: skip


def test_targets_are_the_issues_ratios_with_pass_and_fail():
    result = _result(
        **{
            "10000": _size(10.0, 500),
            "100000": _size(12.0, 800, whatif_s=0.150, reps=769),
            "1000000": _size(
                25.0, 1600, floor_s=20.0, cache_s=30.0, read_csv_s=12.0, whatif_s=1.2, reps=7692
            ),
            "10000000": _size(90.0, 2900, ok=True),
        }
    )
    result["postgres"] = {
        "size": 100_000,
        "rows_in_tables": {"opportunities": 100_000, "activities": 900_000},
        "rows_sent": 4_000,
        "rows_sent_vs_rows_in_tables": 0.004,
        "statements": 12,
        "top_statements": [{"query": "select a | b from t", "calls": 3, "rows": 3_000}],
        "pack": {"exit_code": 0, "wall_seconds": 15.0, "peak_mb": 900, "peak_pss_mb": 700},
    }
    got = {t["measure"]: (t["value"], t["pass"]) for t in bench.targets(result)}
    assert got["pack time, 1M ÷ 10k"] == (2.5, True)  # 25 ÷ 10, at the limit
    assert got["pack time, 10M ÷ 1M"] == (3.6, True)
    assert got["peak PSS of the pack, 1M"] == (pytest.approx(1600 / 1024), False)  # 1.56 GB > 1.5
    assert got["peak PSS of the pack, 10M"] == (pytest.approx(2900 / 1024), True)
    assert got["pack ÷ floor, 1M"] == (1.25, True)
    assert got["cache build ÷ DuckDB read_csv of the same files, 1M"] == (2.5, True)
    assert got["rows sent by PostgreSQL for the 100,000 pack ÷ rows in its tables"] == (
        pytest.approx(0.4),
        True,
    )
    assert got["what-if update, 100k (766 reps)"] == (pytest.approx(150), True)
    assert got["what-if update, 1M (7,689 reps)"] == (pytest.approx(1200), False)
    md = bench.table({**result, "targets": bench.targets(result)})
    assert "| pack time, 1M ÷ 10k | 2.50 | ≤ 2.5 | pass |" in md
    assert "| what-if update, 1M (7,689 reps) | 1200.00 ms | ≤ 1000 ms | **fail** |" in md
    assert "| 15.00 | 900 | 700 | 1,000,000 | 4,000 | 0.4% | 12 |" in md
    assert "| 3,000 | 3 | `select a / b from t` |" in md


def test_a_failed_pack_or_a_missing_size_is_not_measured_rather_than_a_ratio():
    result = _result(
        **{
            "10000": _size(10.0, 500),
            "1000000": _size(25.0, 1600, ok=False),
            "10000000": {
                "reps": 76923,
                "generate": {"seconds": 1000.0, "format": "parquet (chunked)", "files_mb": 1800},
                "cache_build": {"error": "killed by signal 9 (out of memory?): "},
            },
        }
    )
    result["postgres"] = {"skipped": "PostgreSQL is not installed"}
    got = {t["measure"]: (t["value"], t["pass"]) for t in bench.targets(result)}
    assert got["pack time, 1M ÷ 10k"] == (None, None)
    assert got["peak PSS of the pack, 1M"] == (None, None)
    assert got["pack time, 10M ÷ 1M"] == (None, None)
    assert got["rows sent by PostgreSQL for the 100,000 pack ÷ rows in its tables"] == (None, None)
    md = bench.table(result)
    assert "| pack time, 1M ÷ 10k | – | ≤ 2.5 | not measured |" in md
    assert "skipped — PostgreSQL is not installed." in md
    assert "- 10,000,000: cache build failed: killed by signal 9 (out of memory?)" in md
    assert "| 10,000,000 | 76,923 | parquet (chunked), 1,800 MB |" in md


def test_postgres_is_skipped_with_a_clear_line_without_its_binaries(monkeypatch, tmp_path):
    from helpers.publish import pgserver

    monkeypatch.setattr(pgserver, "pg_bin", lambda: None)
    out = bench.run_pg(tmp_path / "n100000", tmp_path)
    assert out == {
        "skipped": "PostgreSQL is not installed (no initdb under /usr/lib/postgresql/*/bin or on PATH)"
    }


def test_rows_sent_by_postgres_count_each_row_once(pg_dataset, pg_env):
    """One load of the dataset (a COPY (select …) TO STDOUT per table) sends each row once."""
    from helpers.data.dataset import load

    ds, stats = rows_sent(pg_dataset, lambda: load(pg_dataset))
    sent = sum(r[2] for r in stats)
    assert sent == sum(len(t) for t in ds.tables.values()) > 0
    assert any("copy" in q.lower() for q, _, _ in stats)

    # a temporary table the engine keeps stays on the server: only the rows a query returns count
    from helpers.data import engine
    from helpers.metrics import expr

    def kept_and_keyed():
        with engine.connect(pg_dataset) as eng:
            kept = eng.keep(expr.normalized_history(eng))
            assert len(eng.execute(kept.limit(7))) == 7
            eng.drop(kept)
            sent = expr.keyed(eng["opportunities"], pd.DataFrame({"_deal": [f"x{i}" for i in range(500)]}))
            assert eng.execute(sent.count().as_table()).iloc[0, 0] == 500  # one row back

    _, stats = rows_sent(pg_dataset, kept_and_keyed)
    assert not [q for q, _, _ in stats if q.lower().startswith(("create", "analyze", "drop", "copy"))]
    assert any(r == 7 and "limit" in q.lower() for q, _, r in stats)
    # the rest: the engine's catalog lookups and one-row probes, against the history kept (~5 per deal)
    assert sum(r[2] for r in stats) < len(ds.opportunities) / 10


def test_the_floor_and_the_pack_start_their_clocks_with_the_same_machinery_imported(tmp_path):
    # the floor is timed as the pack is: in a fresh interpreter whose clock starts before nbformat,
    # papermill and nbconvert are imported (their one-time imports, ~1.2 s for nbformat alone where the lab
    # extras are installed, fall inside the pack's clock, so they must fall inside the floor's); the
    # runners are stubbed, so no kernel starts
    src = tmp_path / "trivial_src"
    assert [p.name for p in bench.trivial_notebooks(src)] == [f"trivial_{i}.ipynb" for i in (1, 2, 3)]
    calls = {
        "floor": f"_worker_trivial({str(src)!r}, {str(tmp_path / 'out')!r}, False)",
        "pack": f"_worker_pack({str(tmp_path / 'data')!r}, {str(tmp_path / 'pack')!r})",
    }
    for name, call in calls.items():  # each in a fresh interpreter, as the bench runs them
        code = f"""
import json, sys
import helpers.publish.bench as b, helpers.publish.report as r
seen = []
def runner(result):
    def run(*args, **kw):
        seen.extend(m for m in b.MACHINERY if m in sys.modules)
        return result
    return run
r.run_notebooks, r.run_monthly = runner([]), runner((0, [], []))
print(json.dumps([seen, b.{call}["imported_before_clock"]]))
"""
        p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
        seen, reported = json.loads(p.stdout.strip().splitlines()[-1])
        assert (name, seen, reported) == (name, [], [])


@pytest.mark.slow  # ~35 s on a quiet machine, 1–2 min on a busy one (the pack at 2,000 opportunities)
def test_the_bench_at_a_tiny_size(tmp_path):
    result = bench.run_bench([2000], tmp_path, progress=None, pg_size=0)
    saved = json.loads((tmp_path / "bench.json").read_text())
    row = saved["sizes"]["2000"]
    assert row["generate"]["format"] == "csv"
    assert row["cache_build"]["rows"]["opportunities"] == 2000
    assert row["cache_build"]["seconds"] > 0 and row["read_csv"]["seconds"] > 0
    assert row["ratios"]["cache_build_vs_read_csv"] == pytest.approx(
        row["cache_build"]["seconds"] / row["read_csv"]["seconds"]
    )
    assert len(row["compute"]["duckdb"]) == len(row["compute"]["pandas"]) == 5
    assert row["compute"]["whatif"]["update_seconds"] > 0
    pack = row["pack"]
    assert pack["exit_code"] == 0 and pack["peak_pss_mb"] > 0 and pack["peak_mb"] >= pack["peak_pss_mb"]
    assert sorted(pack["notebooks"]) == ["pipeline_health", "quota_setting", "win_loss_review"]
    assert all(nb["status"] == "ok" and nb["other_cells"] > 0 for nb in pack["notebooks"].values())
    # of the cells' time, the part in the engine's queries: some, not all
    assert all(0 < nb["engine"] < nb["load_cell"] + nb["other_cells"] for nb in pack["notebooks"].values())
    assert row["trivial"]["ok"] and row["trivial"]["imported_before_clock"] == []
    assert sorted(row["trivial"]["per_notebook"]) == ["trivial_1", "trivial_2", "trivial_3"]
    assert row["floor_seconds"] == pytest.approx(
        row["trivial"]["wall_seconds"] + sum(row["compute"]["duckdb"].values())
    )
    assert saved["trivial"]["ok"] and saved["trivial_warm"]["ok"]
    assert saved["postgres"] == {"skipped": "not asked (--pg-size 0)"}
    assert [t["pass"] for t in saved["targets"]] == [None] * 9  # no size the targets name
    md = (tmp_path / "bench.md").read_text()
    assert "| 2,000 | 30 | csv," in md and "| 2,000 | pipeline_health | ok |" in md
    assert result["sizes"]["2000"]["pack"]["wall_seconds"] == pack["wall_seconds"]


def test_engine_seconds_count_each_query_once(monkeypatch):
    """The time a process waits on its engine: every query method of the backend, a method that calls
    another counted once, and reset per notebook (``open_report``)."""
    from helpers.data import engine

    now = [0.0]
    monkeypatch.setattr(engine.time, "perf_counter", lambda: now[0])

    class Backend:
        def execute(self, expr):
            now[0] += 2.0
            return self.raw_sql(expr)  # nested: inside execute's time

        def raw_sql(self, sql):
            now[0] += 3.0
            return sql

        def create_table(self, name, obj):
            now[0] += 0.5

    b = Backend()
    engine._time_backend(b)
    engine._time_backend(b)  # once per backend: not timed twice
    engine.engine_seconds(reset=True)
    assert b.execute("q") == "q"
    assert engine.engine_seconds() == 5.0  # not 8: raw_sql ran inside execute
    b.raw_sql("s"), b.create_table("t", None)
    assert engine.engine_seconds(reset=True) == 8.5
    assert engine.engine_seconds() == 0.0
    # a real engine: a clock that ticks 1 s each time it is read gives 1 s per timed call
    ticks = iter(range(10**6))
    monkeypatch.setattr(engine.time, "perf_counter", lambda: float(next(ticks)))
    eng = engine.from_frames({"opportunities": pd.DataFrame({"opportunity_id": ["a"]})})
    engine.engine_seconds(reset=True)
    assert eng.execute(eng["opportunities"].count().as_table()).iloc[0, 0] == 1
    assert eng["opportunities"].count().execute() == 1  # an expression's own execute: its backend's
    assert engine.engine_seconds() == 2.0
