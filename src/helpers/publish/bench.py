"""``revops bench``: the monthly pack at several sizes, beside the floor of its machinery.

Sizes are opportunities (default 10k, 100k, 1M, 10M; ~4.7 history rows, 10 activities and ~4 leads per
opportunity; reps = max(30, N / 130)). Up to 1M the dataset is the sample written by
``helpers.data.sample.write_sample`` (CSV); above, ``helpers.data.sample_chunked.write_sample_chunked``
writes it straight to Parquet, chunk by chunk (10M opportunities with 100M activities: 2.5 GB max RSS).
Every phase runs in a fresh interpreter, so its time and peak memory are its own:

- **generate**: the dataset (time, max RSS);
- **load without cache** (up to ``--no-cache-load-up-to``): ``dataset.load`` with the cache off;
- **cache build**: ``engine.connect`` on an empty cache (the load cache and the typed DuckDB file), and
  for CSV datasets **DuckDB's own** ``read_csv`` of the same files into a DuckDB file (ratio cache build
  ÷ read_csv);
- **compute**: the floor's registry questions as SQL straight in DuckDB over the same cache file, and (up
  to ``--pandas-up-to``, as they load whole frames) the same questions through the pandas helpers and
  the what-if update (``whatif.compute_plan`` for one slider change);
- **pack**: ``report.run_monthly`` (as ``make monthly-report``): wall time, per notebook its kernel
  start, papermill overhead, ``open_report`` cell, other cells (papermill's cell timings) and HTML
  export, and the peak of the summed RSS and PSS of the process and all its kernels (20 Hz);
- **PostgreSQL** (at ``--pg-size``, 100k by default): a private server (``helpers.publish.pgserver``)
  with ``pg_stat_statements``, the dataset's CSV files copied in, the same pack on it; the rows the
  server sent (``pg_stat_statements.rows`` summed over the pack's statements: rows returned by SELECT,
  rows written out by ``COPY … TO STDOUT``) against the rows in its tables. Skipped, saying so, when
  PostgreSQL is not installed.

The **floor** at each size: three trivial notebooks through the same runner and exporter, a kernel each
(``trivial``), run right before that size's pack and timed as the pack is (a fresh process whose clock
starts before the notebook machinery is imported: the first notebooks carry its one-time imports, as
the pack's do), plus the DuckDB answers: ``floor = trivial + DuckDB``. At the start of the run the same
trivial notebooks, and on warm kernels without imports (``trivial_warm``). The issue's **targets** (pack 1M ÷ 10k, 10M ÷ 1M, peak PSS at 1M and 10M,
pack ÷ floor at 1M, cache build ÷ read_csv at 1M, PostgreSQL rows sent ÷ rows in tables, what-if update
at ~1k and ~7.7k reps) are computed with a pass/fail mark (``targets``). Results go to
``<out>/bench.json`` and ``<out>/bench.md`` (also printed).
"""

from __future__ import annotations

import json
import os
import platform
import resource
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

from helpers.data.progress import progress as progress_bar

AS_OF = "2026-10-31"
PERIOD = "2026-10"
ACTIVITIES_PER_OPP = 10
DEFAULT_SIZES = "10000,100000,1000000,10000000"
CHUNKED_ABOVE = 1_000_000  # larger sizes are generated straight to Parquet, in chunks
PANDAS_UP_TO = 1_000_000  # the pandas metrics and the what-if load whole frames: not above this
PG_SIZE = 100_000
PG_ENV = ("REVOPS_BENCH_DB_USER", "REVOPS_BENCH_DB_PASSWORD")


def reps_for(n: int) -> int:
    """~130 opportunities per rep (what keeps the sample's deal amounts and quotas believable), at least 30."""
    return int(max(30, n // 130))


# --------------------------------------------------------------------------------------------------
# measuring
# --------------------------------------------------------------------------------------------------
class PeakRSS:
    """Peak of the summed RSS of this process (with ``include_self``) and all its descendants, sampled
    every ``interval`` s; ``peak_child`` is the largest single descendant seen (one notebook kernel).
    ``peak_pss`` is the peak of the summed PSS (proportional set size, sampled every ``pss_every``-th
    time): pages several processes share — the memory-mapped dataset cache read by two kernels — are
    counted once in it, but in full in every process's RSS."""

    def __init__(self, interval: float = 0.05, include_self: bool = False, pss_every: int = 5):
        import psutil

        self.proc = psutil.Process()
        self.interval = interval
        self.include_self = include_self
        self.pss_every = pss_every
        self.peak = 0
        self.peak_child = 0
        self.peak_pss = 0
        self._stop = threading.Event()

    def _sample(self):
        import psutil

        tick = 0
        while not self._stop.is_set():
            procs = ([self.proc] if self.include_self else []) + self.proc.children(recursive=True)
            total = pss = 0
            for c in procs:
                try:
                    rss = c.memory_info().rss
                    if tick % self.pss_every == 0:
                        pss += c.memory_full_info().pss
                except psutil.Error:
                    continue
                total += rss
                if c is not self.proc:
                    self.peak_child = max(self.peak_child, rss)
            self.peak = max(self.peak, total)
            self.peak_pss = max(self.peak_pss, pss)
            tick += 1
            self._stop.wait(self.interval)

    def __enter__(self):
        self._t = threading.Thread(target=self._sample, daemon=True)
        self._t.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._t.join()


def _max_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def _timed(fn, repeat: int = 1):
    """(result, best wall seconds of ``repeat`` runs)."""
    best, out = float("inf"), None
    for _ in range(repeat):
        t0 = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t0)
    return out, best


# --------------------------------------------------------------------------------------------------
# the same questions in pandas (the project's helpers) and in DuckDB
# --------------------------------------------------------------------------------------------------
def pandas_metrics(ds, as_of) -> dict:
    """name -> callable, each one helper call of the pandas functions (the win rate: ``rates``' one
    definition, which win/loss's engine queries sum to)."""
    import pandas as pd

    from helpers.metrics import activity, pipeline, quota, rates

    a = pd.Timestamp(as_of)
    start13 = a - pd.Timedelta(weeks=13) + pd.Timedelta(days=1)
    year_ago = a - pd.DateOffset(years=1)
    opp, acts, hist = ds.opportunities, ds.activities, ds.opportunity_history

    def furthest_stage():  # the SQL question below, in pandas
        rank = {s: i for i, s in enumerate(ds.config.open_stages)}
        h = hist[["opportunity_id", "stage"]].merge(opp[["opportunity_id", "is_won"]], on="opportunity_id")
        r = h["stage"].map(rank).astype("float64")
        h = h.assign(rank=r.fillna(pd.Series(99.0, index=h.index).where(h["is_won"].fillna(False))))
        return h.groupby("opportunity_id").agg(furthest=("rank", "max"), won=("is_won", "first"))

    def win_rate_by_segment():
        closed = opp[
            opp["is_closed"].fillna(False) & (opp["close_date"] > year_ago) & (opp["close_date"] <= a)
        ]
        won = closed["is_won"].fillna(False).astype(bool).to_numpy()
        segment = closed["segment"].astype("object").fillna("(not set)").to_numpy()
        return rates.finish(rates.outcome_totals(segment, won, closed["amount"]))

    return {
        "bookings by rep and month": lambda: quota.monthly_bookings(opp),
        "open pipeline by stage": lambda: pipeline.pipeline_by_stage(opp, ds.config),
        "win rate by segment (12 months)": win_rate_by_segment,
        "activities per rep, week and type (13 weeks)": lambda: activity.activity_counts(
            acts, start13, a, "W"
        ),
        "furthest stage reached per deal": furthest_stage,
    }


def duckdb_metrics(con, config, as_of) -> dict:
    """The same questions as SQL straight in DuckDB (``con``: a connection to the typed cache file)."""
    probs = ", ".join(f"('{s}', {p})" for s, p in config.probabilities.items()) or "('', 0)"
    ranks = ", ".join(f"('{s}', {i})" for i, s in enumerate(config.open_stages))
    a = f"timestamp '{as_of}'"
    q = {
        "bookings by rep and month": """select owner, date_trunc('month', close_date) as month, sum(amount) as bookings
            from opportunities where is_won group by all""",
        "open pipeline by stage": f"""select stage, count(*) deals, sum(amount) amount,
            sum(amount * coalesce(probability, p.p)) weighted
            from opportunities o left join (values {probs}) p(s, p) on o.stage = p.s
            where not is_closed group by stage""",
        "win rate by segment (12 months)": f"""select segment, count(*) deals, sum(is_won::int) won,
            sum(is_won::int) / count(*) win_rate, sum(case when is_won then amount end) / sum(amount) value_rate
            from opportunities where is_closed and close_date > {a} - interval 1 year and close_date <= {a}
            group by segment""",
        "activities per rep, week and type (13 weeks)": f"""select owner, type,
            date_diff('day', occurred_at::date, {a}::date) // 7 as week, count(*) n
            from activities where occurred_at > {a} - interval 13 week and occurred_at < {a} + interval 1 day
            group by all""",
        "furthest stage reached per deal": f"""select h.opportunity_id,
            max(coalesce(r.rank, case when o.is_won then 99 end)) furthest, any_value(o.is_won) won
            from opportunity_history h join opportunities o using (opportunity_id)
            left join (values {ranks}) r(stage, rank) on h.stage = r.stage group by h.opportunity_id""",
    }
    return {name: (lambda sql=sql: con.sql(sql).df()) for name, sql in q.items()}


# --------------------------------------------------------------------------------------------------
# workers (run in a fresh interpreter each)
# --------------------------------------------------------------------------------------------------
def _worker_generate(folder: str, n: int) -> dict:
    """The dataset of size ``n``: the in-memory sample as CSV up to CHUNKED_ABOVE, else chunked Parquet."""
    kw = dict(seed=42, as_of=AS_OF, n_opportunities=n, n_reps=reps_for(n))
    if n > CHUNKED_ABOVE:
        from helpers.data.sample_chunked import write_sample_chunked

        _, secs = _timed(
            lambda: write_sample_chunked(folder, activities_per_opportunity=ACTIVITIES_PER_OPP, **kw)
        )
        fmt = "parquet (chunked)"
    else:
        from helpers.data.sample import write_sample

        _, secs = _timed(lambda: write_sample(folder, activities_per_opportunity=ACTIVITIES_PER_OPP, **kw))
        fmt = "csv"
    files = [p for p in Path(folder).iterdir() if p.suffix in (".csv", ".parquet")]
    return {
        "seconds": secs,
        "peak_mb": _max_rss_mb(),
        "format": fmt,
        "files_mb": sum(p.stat().st_size for p in files) / 2**20,
    }


def _worker_load(folder: str, mode: str) -> dict:
    from helpers.data.dataset import load

    if mode == "nocache":
        os.environ["REVOPS_CACHE"] = "0"
    ds, secs = _timed(lambda: load(folder))
    return {"seconds": secs, "peak_mb": _max_rss_mb(), "rows": {k: len(v) for k, v in ds.tables.items()}}


def _worker_cache_build(folder: str) -> dict:
    """``engine.connect`` on an empty cache: whatever it builds (load cache, typed DuckDB file)."""
    from helpers.data import engine

    eng, secs = _timed(lambda: engine.connect(folder, engine="duckdb"))
    try:
        rows = {t: _count(eng, t) for t in eng.tables}
    finally:
        eng.close()
    return {"seconds": secs, "peak_mb": _max_rss_mb(), "rows": rows}


def _count(eng, table: str) -> int:
    return int(eng.backend.con.execute(f'select count(*) from "{table}"').fetchone()[0])


def _worker_read_csv(folder: str) -> dict:
    """DuckDB's own ``read_csv`` of the dataset's CSV files into a new DuckDB file (the yardstick of the
    cache build)."""
    import tempfile

    import duckdb

    files = sorted(Path(folder).glob("*.csv"))
    with tempfile.TemporaryDirectory(dir=Path(folder).parent) as tmp:
        t0 = time.perf_counter()
        con = duckdb.connect(str(Path(tmp) / "read_csv.duckdb"))
        for f in files:
            con.execute(f"create table \"{f.stem}\" as select * from read_csv('{f}')")
        con.execute("checkpoint")
        con.close()
        secs = time.perf_counter() - t0
    return {"seconds": secs, "peak_mb": _max_rss_mb(), "files": len(files)}


def _worker_compute(folder: str, with_pandas: bool = True) -> dict:
    from helpers.data import engine

    eng, open_s = _timed(lambda: engine.connect(folder, engine="duckdb"))
    out = {"engine_open_seconds": open_s, "pandas": {}, "duckdb": {}}
    try:
        for name, fn in duckdb_metrics(eng.backend.con, eng.config, AS_OF).items():
            out["duckdb"][name] = _timed(fn, 2)[1]
    finally:
        eng.close()
    if not with_pandas:
        out["peak_mb"] = _max_rss_mb()
        return out
    from helpers.data.dataset import load
    from helpers.sections import whatif

    ds, out["load_hit_seconds"] = _timed(lambda: load(folder))
    for name, fn in pandas_metrics(ds, AS_OF).items():
        try:
            out["pandas"][name] = _timed(fn, 2)[1]
        except Exception as exc:  # noqa: BLE001 - a helper that fails here is reported, not fatal
            out["pandas"][name] = f"error: {type(exc).__name__}: {exc}"[:200]
    try:
        data, prep = _timed(lambda: whatif.prepare_plan_data(ds, AS_OF))
        _, upd = _timed(lambda: whatif.compute_plan(whatif.PlanInputs(growth_rate=0.25), data), 3)
        out["whatif"] = {"prepare_seconds": prep, "update_seconds": upd, "reps": len(data.roster)}
    except Exception as exc:  # noqa: BLE001
        out["whatif"] = {"error": f"{type(exc).__name__}: {exc}"[:200]}
    out["peak_mb"] = _max_rss_mb()
    return out


def _worker_pack(folder: str, out: str) -> dict:
    return run_pack(Path(folder), Path(out))


def _worker_trivial(src: str, out: str, warm: bool) -> dict:
    return run_trivial(Path(src), Path(out), warm=warm)


def _run_worker(call: str, env: dict | None = None) -> dict:
    """``helpers.publish.bench.<call>`` in a fresh interpreter; its JSON result, or {"error": …}."""
    code = f"import json, helpers.publish.bench as b; print('BENCH' + json.dumps(b.{call}, default=str))"
    p = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env={**os.environ, **(env or {})}
    )
    line = next((x for x in p.stdout.splitlines() if x.startswith("BENCH")), None)
    if p.returncode or line is None:
        why = (p.stderr.strip().splitlines() or [f"exit code {p.returncode}"])[-1][:300]
        if p.returncode and p.returncode < 0:
            why = f"killed by signal {-p.returncode} (out of memory?): {why}"
        return {"error": why}
    return json.loads(line[5:])


# --------------------------------------------------------------------------------------------------
# PostgreSQL: the same pack, and the rows the server sent
# --------------------------------------------------------------------------------------------------
def pg_counting(con) -> None:
    """Start counting the statements of ``con``'s server afresh (``pg_stat_statements``, which the
    server must preload, as ``PgServer`` does)."""
    con.execute("create extension if not exists pg_stat_statements")
    con.execute("select pg_stat_statements_reset()")


def pg_rows_sent(con, dbname: str) -> list[tuple[str, int, int]]:
    """(statement, calls, rows) of database ``dbname`` since ``pg_counting``, most rows first: rows
    returned by SELECT and written out by ``COPY … TO STDOUT``; top-level statements only (the server's
    default), so a ``COPY (select …)`` counts its rows once. Left out: the counting's own statements,
    and what writes rows that stay on the server (a temporary table the engine keeps, its ``analyze``
    and ``drop``, and the rows of a small frame copied into one: ``COPY … FROM STDIN`` counts rows received)."""
    return con.execute(
        """select s.query, s.calls, s.rows from pg_stat_statements s join pg_database d on d.oid = s.dbid
        where d.datname = %s and s.query not ilike '%%pg_stat_statements%%'
        and s.query !~* '^\\s*(create\\s+temporary\\s+table|analyze|drop\\s+table)\\s'
        and s.query !~* '^\\s*copy\\s.*\\sfrom\\s+stdin'
        order by s.rows desc""",
        (dbname,),
    ).fetchall()


def run_pg(folder: Path, out: Path, dbname: str = "crm") -> dict:
    """The pack on a private PostgreSQL server holding the CSV dataset ``folder``: the pack's result
    (``run_pack``), the rows in the tables, and the rows the server sent during the pack
    (``pg_stat_statements``, reset after loading: top-level statements only, so a ``COPY (select …)``
    counts its rows once)."""
    from helpers.publish.pgserver import PgServer, PgServerError, dataset_in_postgres, pg_bin

    if pg_bin() is None:
        return {
            "skipped": "PostgreSQL is not installed (no initdb under /usr/lib/postgresql/*/bin or on PATH)"
        }
    try:
        server = PgServer.start()
    except PgServerError as exc:
        return {"skipped": str(exc)[:300]}
    if not server.stat_statements:
        server.stop()
        return {
            "skipped": f"pg_stat_statements is not installed beside {server.bindir} (it counts the rows sent)"
        }
    with server:
        pg_folder, load_s = _timed(
            lambda: dataset_in_postgres(
                server.port, folder, dbname, out / "data" / f"pg_{folder.name}", PG_ENV
            )
        )
        with server.connect(dbname, autocommit=True) as c:
            tables = [r[0] for r in c.execute("select tablename from pg_tables where schemaname = 'public'")]
            in_tables = {t: c.execute(f'select count(*) from "{t}"').fetchone()[0] for t in tables}
            pg_counting(c)
        pack = _run_worker(
            f"_worker_pack({str(pg_folder)!r}, {str(out / 'reports' / f'pg_{folder.name}')!r})",
            env=dict(zip(PG_ENV, (server.user, server.password), strict=True)),
        )
        with server.connect(dbname) as c:
            stats = pg_rows_sent(c, dbname)
    sent = sum(r[2] for r in stats)
    rows = sum(in_tables.values())
    return {
        "load_seconds": load_s,
        "rows_in_tables": in_tables,
        "rows_sent": sent,
        "statements": sum(r[1] for r in stats),
        "top_statements": [
            {"query": " ".join(q.split())[:160], "calls": calls, "rows": r} for q, calls, r in stats[:8]
        ],
        "rows_sent_vs_rows_in_tables": sent / rows if rows else None,
        "pack": pack,
    }


# --------------------------------------------------------------------------------------------------
# the pack and the trivial floor
# --------------------------------------------------------------------------------------------------
def _cell_seconds(executed: Path) -> tuple[float, float]:
    """(seconds of the cell that calls open_report, seconds of all other cells) from papermill's metadata."""
    import nbformat

    nb = nbformat.read(str(executed), as_version=4)
    load_s = other = 0.0
    for c in nb.cells:
        d = (c.get("metadata", {}).get("papermill", {}) or {}).get("duration") or 0.0
        if c.cell_type == "code" and "open_report(" in c.source:
            load_s += d
        else:
            other += d
    return load_s, other


def _html_seconds(executed: Path, tmp: Path) -> float:
    from helpers.publish.report import to_html

    return _timed(lambda: to_html(executed, tmp / (executed.stem + ".html")))[1]


def run_pack(folder: Path, out: Path) -> dict:
    from helpers.publish.report import run_monthly

    before = imported_machinery()
    with PeakRSS(include_self=True) as mem:
        t0 = time.perf_counter()
        try:
            code, written, results = run_monthly(str(folder), PERIOD, AS_OF, out=str(out), progress=None)
        except Exception as exc:  # noqa: BLE001 - a broken run is a result of the benchmark too
            return {
                "exit_code": None,
                "error": f"{type(exc).__name__}: {exc}"[:300],
                "wall_seconds": time.perf_counter() - t0,
                "peak_mb": mem.peak / 2**20,
                "peak_kernel_mb": mem.peak_child / 2**20,
                "notebooks": {},
                "imported_before_clock": before,
            }
        wall = time.perf_counter() - t0
    summary = json.loads((Path(written) / "summary.json").read_text()) if written else {}
    in_engine = {nb["name"]: nb.get("engine_seconds") for nb in summary.get("notebooks", [])}
    nbs = {}
    for r in results:
        row = {"status": r.status, "seconds": r.seconds, "engine": in_engine.get(r.name)}
        if r.executed and Path(r.executed).exists():
            load_s, cells = _cell_seconds(Path(r.executed))
            html = _html_seconds(Path(r.executed), out / ".html-timing")
            row.update(
                load_cell=load_s,
                other_cells=cells,
                html_export=html,
                kernel_start=r.kernel_seconds,
                kernel_and_overhead=max(0.0, r.seconds - load_s - cells - html),
            )
        if r.error:
            row["error"] = r.error.short
        nbs[r.name] = row
    return {
        "exit_code": code,
        "wall_seconds": wall,
        "peak_mb": mem.peak / 2**20,
        "peak_pss_mb": mem.peak_pss / 2**20,
        "peak_kernel_mb": mem.peak_child / 2**20,
        "notebooks": nbs,
        "imported_before_clock": before,
    }


def trivial_notebooks(folder: Path, n: int = 3) -> list[Path]:
    import nbformat
    from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(n):
        nb = new_notebook(
            metadata={"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}}
        )
        params = new_code_cell(
            'dataset = ""\nperiod = ""\nas_of = ""\nreport_mode = True\nsummary_path = ""\noutput_dir = ""'
        )
        params.metadata["tags"] = ["parameters"]
        nb.cells = [params, new_markdown_cell(f"# Trivial {i + 1}"), new_code_cell("x = 1\nx")]
        p = folder / f"trivial_{i + 1}.ipynb"
        nbformat.write(nb, str(p))
        paths.append(p)
    return paths


# what a notebook run imports in the parent process the first time (nbformat: ~1.2 s on a quiet machine
# where the lab extras are installed, as jsonschema's format checkers then compile a grammar; papermill;
# nbconvert on the first HTML export): the pack pays it inside its clock, so the floor must too
MACHINERY = ("nbformat", "papermill", "nbclient", "nbconvert")


def imported_machinery() -> list[str]:
    """The notebook machinery already imported in this process (a clock started now would not count it)."""
    return [m for m in MACHINERY if m in sys.modules]


def run_trivial(src: Path, out: Path, warm: bool = False) -> dict:
    """The notebooks in ``src`` (``trivial_notebooks``, written beforehand by another process) through
    the pack's runner and exporter: a kernel each (papermill's default, the floor the issue defines), or
    ``warm`` on the pack's warm kernels without the warm-up imports (the machinery alone: kernel start
    once per lane). Measured as ``run_pack`` measures the pack: in a fresh process whose clock starts
    before any of the notebook machinery is imported, so the one-time imports both pay (on the first
    notebooks here) are counted in both (``imported_before_clock``: what was not)."""
    from helpers.publish.report import NotebookJob, run_notebooks

    jobs = [NotebookJob(p.stem, p, {}) for p in sorted(Path(src).glob("*.ipynb"))]
    before = imported_machinery()
    with PeakRSS() as mem:
        t0 = time.perf_counter()
        results = run_notebooks(jobs, out, progress=None, warm=warm, warm_imports="")
        wall = time.perf_counter() - t0
    return {
        "wall_seconds": wall,
        "peak_mb": mem.peak / 2**20,
        "ok": bool(results) and all(r.ok for r in results),
        "per_notebook": {r.name: r.seconds for r in results},
        "imported_before_clock": before,
    }


# --------------------------------------------------------------------------------------------------
# the run
# --------------------------------------------------------------------------------------------------
def machine() -> dict:
    import duckdb
    import pandas
    import psutil

    model = ""
    try:
        model = next(
            line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name")
        )
    except (OSError, StopIteration):
        pass
    return {
        "cpu": model or platform.processor(),
        "cores": os.cpu_count(),
        "memory_gb": round(psutil.virtual_memory().total / 2**30, 1),
        "os": platform.platform(),
        "python": platform.python_version(),
        "pandas": pandas.__version__,
        "duckdb": duckdb.__version__,
        "load_average_at_start": os.getloadavg(),
    }


def _total(d: dict) -> float:
    return sum(v for v in d.values() if isinstance(v, int | float))


def _ok(pack: dict | None) -> bool:
    return bool(pack) and pack.get("exit_code") == 0 and "error" not in pack


def _pack_seconds(result: dict, n: int) -> float | None:
    row = result["sizes"].get(str(n), {})
    return row["pack"]["wall_seconds"] if _ok(row.get("pack")) else None


def _div(a, b):
    return a / b if isinstance(a, int | float) and isinstance(b, int | float) and b else None


def targets(result: dict) -> list[dict]:
    """The issue's targets as measured in ``result``: each ``{measure, value, unit, target, limit, pass}``
    (``pass`` None when the run did not measure it: size not run, pack failed, PostgreSQL skipped)."""
    sizes = result["sizes"]

    def row(n, *keys):
        v = sizes.get(str(n), {})
        for k in keys:
            v = v.get(k, {}) if isinstance(v, dict) else {}
        return v if isinstance(v, int | float) else None

    def pss_gb(n):
        r = sizes.get(str(n), {})
        return r["pack"]["peak_pss_mb"] / 1024 if _ok(r.get("pack")) else None

    def whatif_ms(n):
        v = row(n, "compute", "whatif", "update_seconds")
        return v * 1000 if v is not None else None

    def reps(n):  # the reps on the what-if's roster (the AEs in post), else the AEs generated
        r = row(n, "compute", "whatif", "reps") or sizes.get(str(n), {}).get("reps")
        return f" ({r:,} reps)" if r else ""

    pg = result.get("postgres") or {}
    pg_ratio = pg.get("rows_sent_vs_rows_in_tables") if _ok(pg.get("pack")) else None
    pg_n = pg.get("size", PG_SIZE)
    rows = [
        ("pack time, 1M ÷ 10k", _div(_pack_seconds(result, 10**6), _pack_seconds(result, 10**4)), "×", 2.5),
        ("pack time, 10M ÷ 1M", _div(_pack_seconds(result, 10**7), _pack_seconds(result, 10**6)), "×", 4.0),
        ("peak PSS of the pack, 1M", pss_gb(10**6), "GB", 1.5),
        ("peak PSS of the pack, 10M", pss_gb(10**7), "GB", 3.0),
        ("pack ÷ floor, 1M", _div(_pack_seconds(result, 10**6), row(10**6, "floor_seconds")), "×", 1.5),
        (
            "cache build ÷ DuckDB read_csv of the same files, 1M",
            _div(row(10**6, "cache_build", "seconds"), row(10**6, "read_csv", "seconds")),
            "×",
            3.0,
        ),
        (
            f"rows sent by PostgreSQL for the {pg_n:,} pack ÷ rows in its tables",
            pg_ratio * 100 if pg_ratio is not None else None,
            "%",
            1.0,
        ),
        (f"what-if update, 100k{reps(10**5)}", whatif_ms(10**5), "ms", 200.0),
        (f"what-if update, 1M{reps(10**6)}", whatif_ms(10**6), "ms", 1000.0),
    ]
    return [
        {
            "measure": m,
            "value": v,
            "unit": u,
            "target": f"≤ {lim:g}" + {"×": "", "%": "%"}.get(u, f" {u}"),
            "limit": lim,
            "pass": None if v is None else v <= lim,
        }
        for m, v, u, lim in rows
    ]


def run_bench(
    sizes: list[int],
    out: Path,
    progress=print,
    skip_nocache_above: int = PG_SIZE,
    pandas_up_to: int = PANDAS_UP_TO,
    pg_size: int | None = PG_SIZE,
) -> dict:
    out = Path(out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    os.environ["REVOPS_CACHE_DIR"] = str(out / "cache")  # kernels inherit it; ~/.cache stays untouched
    from helpers.data.sources import cache_root

    if pg_size and pg_size not in sizes:
        result_pg = {"size": pg_size, "skipped": f"size {pg_size:,} is not among the sizes of this run"}
        pg_size = None
    else:
        result_pg = {"skipped": "not asked (--pg-size 0)"} if not pg_size else None
    # one step per phase: the floor, per size generate, (load without cache), cache build, (read_csv),
    # compute, pack; then PostgreSQL
    steps = 1 + (1 if pg_size else 0)
    steps += sum(4 + (n <= skip_nocache_above) + (n <= CHUNKED_ABOVE) for n in sizes)
    bar = progress_bar(total=steps, desc="bench", unit="steps", delay=0)
    say_line = progress or (lambda *_: None)
    started = False

    def say(text: str) -> None:
        """Print a line; a line that starts a phase ("… …") counts the phase before it done."""
        nonlocal started
        if text.endswith("…"):
            if started:
                bar.update()
            started = True
            bar.set_description_str(f"bench: {text.strip(' …')}", refresh=False)
        (bar.write if not bar.disable else say_line)(text)

    def save() -> None:
        result["targets"] = targets(result)
        (out / "bench.json").write_text(json.dumps(result, indent=2, default=str))

    result = {"machine": machine(), "as_of": AS_OF, "period": PERIOD, "sizes": {}}
    say("trivial floor: 3 trivial notebooks through papermill + HTML export …")
    src = out / "trivial_src"
    trivial_notebooks(src)  # here: the workers that time them import nothing of the machinery first

    def run_trivial_in_worker(name: str, warm: bool) -> dict:
        return _run_worker(f"_worker_trivial({str(src)!r}, {str(out / name)!r}, {warm})")

    result["trivial"] = run_trivial_in_worker("trivial_out", False)
    result["trivial_warm"] = run_trivial_in_worker("trivial_warm_out", True)
    say(
        f"  {_f(result['trivial'].get('wall_seconds'))} s (a kernel each), "
        f"{_f(result['trivial_warm'].get('wall_seconds'))} s (warm kernels, no imports)"
    )
    for n in sizes:
        folder = out / "data" / f"n{n}"
        say(f"size {n:,}: generating …")
        row: dict = {"reps": reps_for(n), "generate": _run_worker(f"_worker_generate({str(folder)!r}, {n})")}
        if "error" in row["generate"]:
            say(f"  generating failed: {row['generate']['error']}")
            result["sizes"][str(n)] = row
            save()
            continue
        if n <= skip_nocache_above:
            say("  load without cache …")
            row["load_nocache"] = _run_worker(f"_worker_load({str(folder)!r}, 'nocache')")
        say("  cache build (fresh process, empty cache) …")
        shutil.rmtree(cache_root(), ignore_errors=True)
        row["cache_build"] = _run_worker(f"_worker_cache_build({str(folder)!r})")
        if "error" in row["cache_build"]:  # the compute and the pack would each try to build it again
            say(f"  cache build failed, size skipped: {row['cache_build']['error']}")
            result["sizes"][str(n)] = row
            save()
            continue
        if n <= CHUNKED_ABOVE:
            say("  DuckDB read_csv of the same files …")
            row["read_csv"] = _run_worker(f"_worker_read_csv({str(folder)!r})")
        say(
            "  cache hit, registry questions in DuckDB"
            + (", pandas, what-if …" if n <= pandas_up_to else " …")
        )
        row["compute"] = _run_worker(f"_worker_compute({str(folder)!r}, {n <= pandas_up_to})")
        say("  the trivial floor and the monthly pack …")
        # the floor's notebooks right before the pack, in the same conditions (load, installed packages)
        row["trivial"] = run_trivial_in_worker(f"trivial_out/n{n}", False)
        trivial = row["trivial"].get("wall_seconds")
        row["pack"] = _run_worker(f"_worker_pack({str(folder)!r}, {str(out / 'reports' / f'n{n}')!r})")
        pd_t, dd_t = _total(row["compute"].get("pandas", {})), _total(row["compute"].get("duckdb", {}))
        floor = trivial + dd_t if trivial is not None else None
        row["floor_seconds"] = floor
        wall = row["pack"].get("wall_seconds") if _ok(row["pack"]) else None
        row["ratios"] = {
            "pack_vs_floor": _div(wall, floor),
            "pandas_vs_duckdb_metrics": _div(pd_t, dd_t) if pd_t else None,
            "pack_vs_trivial": _div(wall, trivial),
            "pack_vs_trivial_warm": _div(wall, result["trivial_warm"].get("wall_seconds")),
            "cache_build_vs_read_csv": _div(
                row["cache_build"].get("seconds"), row.get("read_csv", {}).get("seconds")
            ),
        }
        result["sizes"][str(n)] = row
        if _ok(row["pack"]):
            say(
                f"  pack {wall:.1f} s, floor {_f(floor, '{:.1f}')} s, peak {row['pack']['peak_mb']:.0f} MB RSS, "
                f"{row['pack']['peak_pss_mb']:.0f} MB PSS"
            )
        else:
            say(f"  the pack failed: {row['pack'].get('error') or row['pack'].get('exit_code')}")
        save()
    if pg_size:
        say(f"PostgreSQL: the {pg_size:,} pack on a private server …")
        shutil.rmtree(cache_root(), ignore_errors=True)
        result["postgres"] = {"size": pg_size, **run_pg(out / "data" / f"n{pg_size}", out)}
        pg = result["postgres"]
        if "skipped" in pg:
            say(f"  skipped: {pg['skipped']}")
        else:
            say(
                f"  pack {_f(pg['pack'].get('wall_seconds'), '{:.1f}')} s; rows sent {pg['rows_sent']:,} "
                f"= {pg['rows_sent_vs_rows_in_tables']:.1%} of the {sum(pg['rows_in_tables'].values()):,} in its tables"
            )
    else:
        result["postgres"] = result_pg
    save()
    bar.update(bar.total - bar.n)
    bar.close()
    (out / "bench.md").write_text(table(result))
    return result


def _f(x, fmt="{:.2f}") -> str:
    return fmt.format(x) if isinstance(x, int | float) and not isinstance(x, bool) else "–"


def _mb(d: dict | None) -> str:
    return _f((d or {}).get("peak_mb"), "{:.0f}")


def table(result: dict) -> str:
    """The Markdown tables of a run: the targets, one row per size, per-notebook phases, metrics."""
    m = result["machine"]
    lines = [
        f"Machine: {m['cpu']}, {m['cores']} cores, {m['memory_gb']} GB; Python {m['python']}, "
        f"pandas {m['pandas']}, DuckDB {m['duckdb']}; load average at start {m['load_average_at_start']}.",
        f"Trivial floor at the start of the run (3 trivial notebooks, papermill + HTML, a kernel each; "
        f"the floor of each size is timed again right before its pack): "
        f"{_f(result['trivial'].get('wall_seconds'))} s; on warm kernels without imports: "
        f"{_f(result.get('trivial_warm', {}).get('wall_seconds'))} s.",
        "",
        "Targets:",
        "",
        "| measure | measured | target | |",
        "|---|---|---|---|",
    ]
    for t in result.get("targets") or targets(result):
        mark = {True: "pass", False: "**fail**", None: "not measured"}[t["pass"]]
        unit = "" if t["unit"] == "×" else f" {t['unit']}"
        lines.append(
            f"| {t['measure']} | {_f(t['value'])}{unit if t['value'] is not None else ''} | {t['target']} | {mark} |"
        )
    lines += [
        "",
        "| opportunities | reps | files | generate s (MB) | load, no cache s (MB) | cache build s (MB) | "
        "DuckDB read_csv s | cache build ÷ read_csv | DuckDB questions s | pandas s | what-if update ms | "
        "pack s | floor s | pack ÷ floor | pack peak RSS MB (one kernel) | pack peak PSS MB |",
        "|" + "---|" * 16,
    ]
    for n, r in result["sizes"].items():
        g, nc, cb, rc = r["generate"], r.get("load_nocache"), r.get("cache_build", {}), r.get("read_csv", {})
        c, p = r.get("compute", {}), r.get("pack", {})
        w = c.get("whatif", {})
        ok = _ok(p)
        lines.append(
            f"| {int(n):,} | {r['reps']:,} | {g.get('format', '–')}, {_f(g.get('files_mb'), '{:,.0f}')} MB "
            f"| {_f(g.get('seconds'), '{:.1f}')} ({_mb(g)}) "
            f"| {_f((nc or {}).get('seconds'))} ({_mb(nc)}) | {_f(cb.get('seconds'))} ({_mb(cb)}) "
            f"| {_f(rc.get('seconds'))} | {_f(r.get('ratios', {}).get('cache_build_vs_read_csv'))} "
            f"| {_f(_total(c.get('duckdb', {})), '{:.3f}')} "
            f"| {_f(_total(c.get('pandas', {})) or None, '{:.3f}')} "
            f"| {_f(w.get('update_seconds', None) and w['update_seconds'] * 1000, '{:.0f}')} "
            f"| {_f(p.get('wall_seconds')) if ok else 'failed'} | {_f(r.get('floor_seconds'))} "
            f"| {_f(r.get('ratios', {}).get('pack_vs_floor'))} "
            f"| {_f(p.get('peak_mb'), '{:.0f}')} ({_f(p.get('peak_kernel_mb'), '{:.0f}')}) "
            f"| {_f(p.get('peak_pss_mb'), '{:.0f}')} |"
        )
    failed = [
        f"- {int(n):,}: {phase.replace('_', ' ')} failed: {r[phase]['error']}"
        for n, r in result["sizes"].items()
        for phase in ("generate", "load_nocache", "cache_build", "read_csv", "compute", "pack")
        if isinstance(r.get(phase), dict) and "error" in r[phase]
    ]
    if failed:
        lines += ["", *failed]
    pg = result.get("postgres")
    if pg:
        lines += ["", f"PostgreSQL ({pg.get('size', PG_SIZE):,} opportunities, private server):"]
        if "skipped" in pg:
            lines.append(f"skipped — {pg['skipped']}.")
        else:
            p = pg["pack"]
            in_t = sum(pg["rows_in_tables"].values())
            lines += [
                "",
                "| pack s | peak RSS MB | peak PSS MB | rows in tables | rows sent | sent ÷ in tables | statements |",
                "|---|---|---|---|---|---|---|",
                f"| {_f(p.get('wall_seconds')) if _ok(p) else 'failed: ' + str(p.get('error') or p.get('exit_code'))} "
                f"| {_f(p.get('peak_mb'), '{:.0f}')} | {_f(p.get('peak_pss_mb'), '{:.0f}')} | {in_t:,} "
                f"| {pg['rows_sent']:,} | {pg['rows_sent_vs_rows_in_tables']:.1%} | {pg['statements']:,} |",
                "",
                "Statements that sent the most rows (pg_stat_statements, top-level):",
                "",
                "| rows | calls | statement |",
                "|---|---|---|",
            ]
            lines += [
                f"| {s['rows']:,} | {s['calls']:,} | `{s['query'].replace('|', '/')}` |"
                for s in pg["top_statements"]
            ]
    lines += [
        "",
        "Per notebook (seconds, from its start to its HTML): the kernel's start and warm-up imports (on "
        "the first notebook of each warm kernel; in the pack it overlaps the parent's checks), the rest of "
        "the kernel + papermill overhead, the `open_report` (load) cell, the other cells (papermill's cell "
        "timings), of the cells' time the part spent waiting on the engine's queries (`engine_seconds`; the "
        "rest is Python), HTML export (re-timed alone; in the run it overlaps the kernel's next notebook).",
        "",
        "| opportunities | notebook | status | total | kernel start | other overhead | load cell | other cells "
        "| of the cells, engine | HTML |",
        "|" + "---|" * 10,
    ]
    packs = [(f"{int(n):,}", r.get("pack", {})) for n, r in result["sizes"].items()]
    if pg and "pack" in pg:
        packs.append((f"{pg.get('size', PG_SIZE):,} (PostgreSQL)", pg["pack"]))
    for label, p in packs:
        for name, nb in p.get("notebooks", {}).items():
            lines.append(
                f"| {label} | {name} | {nb['status']} | {_f(nb['seconds'])} | {_f(nb.get('kernel_start'))} "
                f"| {_f(max(0.0, nb.get('kernel_and_overhead', 0) - (nb.get('kernel_start') or 0)))} "
                f"| {_f(nb.get('load_cell'))} "
                f"| {_f(nb.get('other_cells'))} | {_f(nb.get('engine'))} | {_f(nb.get('html_export'))} |"
            )
    lines += [
        "",
        "Registry questions, pandas helpers vs SQL straight in DuckDB over the cache (seconds):",
        "",
        "| opportunities | question | pandas | DuckDB |",
        "|---|---|---|---|",
    ]
    for n, r in result["sizes"].items():
        c = r.get("compute", {})
        for name, v in c.get("duckdb", {}).items():
            pv = c.get("pandas", {}).get(name)
            lines.append(
                f"| {int(n):,} | {name} | {pv if isinstance(pv, str) else _f(pv, '{:.3f}')} | {_f(v, '{:.3f}')} |"
            )
    return "\n".join(lines) + "\n"


def cli(args) -> int:
    """``revops bench [--sizes 10000,100000,1000000,10000000] [--out bench] [--pg-size 100000]``."""
    sizes = [int(float(s)) for s in str(args.sizes).split(",") if s.strip()]
    result = run_bench(
        sizes,
        Path(args.out),
        skip_nocache_above=int(getattr(args, "no_cache_load_up_to", PG_SIZE)),
        pandas_up_to=int(getattr(args, "pandas_up_to", PANDAS_UP_TO)),
        pg_size=int(getattr(args, "pg_size", PG_SIZE)) or 0,
    )
    print()
    print(table(result))
    print(f"Written: {Path(args.out) / 'bench.json'}, {Path(args.out) / 'bench.md'}")
    return 0
