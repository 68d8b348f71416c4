"""``revops bench``: the monthly pack at several sizes, beside the floor of its machinery.

For each size N (opportunities; ~4.7 history rows, 10 activities and ~4 leads per opportunity; reps
= max(30, N / 130)) the benchmark generates the sample dataset with ``helpers.data.sample.write_sample``
and measures, each phase in a fresh process so peak memory (max RSS) is its own:

- **load**: ``dataset.load`` with no cache (CSV parse + coercion + validation: the naive path), the
  first cached load (the same plus writing the Parquet cache) and a cache hit (sha256 of the CSVs +
  Parquet read);
- **metrics**: a fixed set of metric helpers in pandas on the loaded frames, and the same questions as
  DuckDB SQL over the cache's Parquet files (ratio = pandas ÷ DuckDB);
- **what-if**: ``whatif.compute_plan`` for one slider change (the widget's update), after
  ``prepare_plan_data``;
- **pack**: ``report.run_monthly`` (papermill, one kernel per notebook, HTML export) — wall time, each
  notebook's kernel/overhead, load cell, other cells and HTML export, and peak memory of the kernels
  (sampled RSS of the process tree, 20 Hz).

The **floor**, measured in the same run: three trivial notebooks through the same runner and exporter,
a kernel each (``trivial``, the issue's definition; also ``trivial_warm``: on the pack's warm kernels
without their imports), and ``floor = trivial + DuckDB metrics`` at each size. Ratios: pack ÷ floor, pandas ÷
DuckDB, and at the smallest size pack ÷ trivial. Results go to ``<out>/bench.json`` and a Markdown
table ``<out>/bench.md`` (also printed).
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
    """name -> callable, each one helper call the notebooks make."""
    import pandas as pd

    from helpers.metrics import activity, movement, pipeline, quota, winloss

    a = pd.Timestamp(as_of)
    start13 = a - pd.Timedelta(weeks=13) + pd.Timedelta(days=1)
    year_ago = a - pd.DateOffset(years=1)
    opp, acts, hist = ds.opportunities, ds.activities, ds.opportunity_history

    def win_rate_by_segment():
        closed = opp[
            opp["is_closed"].fillna(False) & (opp["close_date"] > year_ago) & (opp["close_date"] <= a)
        ]
        closed = closed.assign(outcome=closed["is_won"].map({True: "won", False: "lost"}))
        return winloss.win_rates(winloss.prepare_deals(closed), by="segment")

    return {
        "bookings by rep and month": lambda: quota.monthly_bookings(opp),
        "open pipeline by stage": lambda: pipeline.pipeline_by_stage(opp, ds.config),
        "win rate by segment (12 months)": win_rate_by_segment,
        "activities per rep, week and type (13 weeks)": lambda: activity.activity_counts(
            acts, start13, a, "W"
        ),
        "furthest stage reached per deal": lambda: movement.stages_reached(hist, opp, ds.config),
    }


def duckdb_metrics(parquet_dir: Path, config, as_of) -> dict:
    """The same questions as SQL over the typed frames of the dataset, as Parquet files."""
    import duckdb

    con = duckdb.connect()
    for t in ("opportunities", "activities", "opportunity_history"):
        con.execute(f"create view {t} as select * from read_parquet('{parquet_dir / (t + '.parquet')}')")
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
def _worker_load(folder: str, mode: str) -> dict:
    from helpers.data.dataset import load

    if mode == "nocache":
        os.environ["REVOPS_CACHE"] = "0"
    ds, secs = _timed(lambda: load(folder))
    return {"seconds": secs, "peak_mb": _max_rss_mb(), "rows": {k: len(v) for k, v in ds.tables.items()}}


def _worker_compute(folder: str) -> dict:
    from helpers.data.dataset import load
    from helpers.sections import whatif

    ds, load_s = _timed(lambda: load(folder))
    # DuckDB's side of the floor reads the same typed frames as Parquet (written here, not timed; the
    # project's own cache is Arrow IPC, which DuckDB cannot read without a downloaded extension)
    parquet_dir = Path(folder).parent.parent / "parquet" / Path(folder).name
    parquet_dir.mkdir(parents=True, exist_ok=True)
    for t in ("opportunities", "activities", "opportunity_history"):
        ds.tables[t].to_parquet(parquet_dir / f"{t}.parquet", index=False)
    out = {"load_hit_seconds": load_s, "pandas": {}, "duckdb": {}}
    for name, fn in pandas_metrics(ds, AS_OF).items():
        try:
            out["pandas"][name] = _timed(fn, 2)[1]
        except Exception as exc:  # noqa: BLE001 - a helper that fails here is reported, not fatal
            out["pandas"][name] = f"error: {type(exc).__name__}: {exc}"[:200]
    for name, fn in duckdb_metrics(parquet_dir, ds.config, AS_OF).items():
        out["duckdb"][name] = _timed(fn, 2)[1]
    try:
        data, prep = _timed(lambda: whatif.prepare_plan_data(ds, AS_OF))
        _, upd = _timed(lambda: whatif.compute_plan(whatif.PlanInputs(growth_rate=0.25), data), 3)
        out["whatif"] = {"prepare_seconds": prep, "update_seconds": upd, "reps": len(data.roster)}
    except Exception as exc:  # noqa: BLE001
        out["whatif"] = {"error": f"{type(exc).__name__}: {exc}"[:200]}
    out["peak_mb"] = _max_rss_mb()
    return out


def _run_worker(call: str, env: dict | None = None) -> dict:
    code = f"import json, helpers.publish.bench as b; print('BENCH' + json.dumps(b.{call}))"
    p = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env={**os.environ, **(env or {})}
    )
    line = next((x for x in p.stdout.splitlines() if x.startswith("BENCH")), None)
    if p.returncode or line is None:
        return {"error": (p.stderr.strip().splitlines() or ["failed"])[-1][:300]}
    return json.loads(line[5:])


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
            }
        wall = time.perf_counter() - t0
    nbs = {}
    for r in results:
        row = {"status": r.status, "seconds": r.seconds}
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


def run_trivial(out: Path, warm: bool = False) -> dict:
    """Three trivial notebooks through the pack's runner and exporter: a kernel each (papermill's
    default, the floor the issue defines), or ``warm`` on the pack's warm kernels without the warm-up
    imports (the machinery alone: kernel start once per lane)."""
    from helpers.publish.report import NotebookJob, run_notebooks

    jobs = [NotebookJob(p.stem, p, {}) for p in trivial_notebooks(out / "trivial_src")]
    with PeakRSS() as mem:
        t0 = time.perf_counter()
        results = run_notebooks(
            jobs,
            out / ("trivial_warm_out" if warm else "trivial_out"),
            progress=None,
            warm=warm,
            warm_imports="",
        )
        wall = time.perf_counter() - t0
    return {
        "wall_seconds": wall,
        "peak_mb": mem.peak / 2**20,
        "ok": all(r.ok for r in results),
        "per_notebook": {r.name: r.seconds for r in results},
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


def run_bench(sizes: list[int], out: Path, progress=print, skip_nocache_above: int = 10**9) -> dict:
    from helpers.data.sample import write_sample

    out = Path(out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    os.environ["REVOPS_CACHE_DIR"] = str(out / "cache")  # kernels inherit it; ~/.cache stays untouched
    # one step per phase: the floor, then per size generate, (load without cache), build, compute, pack
    steps = 1 + sum(5 if n <= skip_nocache_above else 4 for n in sizes)
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

    result = {"machine": machine(), "as_of": AS_OF, "period": PERIOD, "sizes": {}}
    say("trivial floor: 3 trivial notebooks through papermill + HTML export …")
    result["trivial"] = run_trivial(out)
    result["trivial_warm"] = run_trivial(out, warm=True)
    say(
        f"  {result['trivial']['wall_seconds']:.1f} s (a kernel each), "
        f"{result['trivial_warm']['wall_seconds']:.1f} s (warm kernels, no imports)"
    )
    for n in sizes:
        folder = out / "data" / f"n{n}"
        say(f"size {n:,}: generating …")
        _, gen = _timed(
            lambda n=n, folder=folder: write_sample(
                folder,
                seed=42,
                as_of=AS_OF,
                n_opportunities=n,
                n_reps=reps_for(n),
                activities_per_opportunity=ACTIVITIES_PER_OPP,
            )
        )
        row: dict = {
            "generate_seconds": gen,
            "reps": reps_for(n),
            "csv_mb": sum(p.stat().st_size for p in folder.glob("*.csv")) / 2**20,
        }
        if n <= skip_nocache_above:
            say("  load without cache …")
            row["load_nocache"] = _run_worker(f"_worker_load({str(folder)!r}, 'nocache')")
        say("  load building the cache …")
        from helpers.data.sources import cache_root

        shutil.rmtree(cache_root(), ignore_errors=True)
        row["load_cache_build"] = _run_worker(f"_worker_load({str(folder)!r}, 'cache')")
        say("  cache hit, metrics (pandas, DuckDB), what-if …")
        row["compute"] = _run_worker(f"_worker_compute({str(folder)!r})")
        say("  the monthly pack …")
        row["pack"] = run_pack(folder, out / "reports" / f"n{n}")
        pd_t, dd_t = _total(row["compute"].get("pandas", {})), _total(row["compute"].get("duckdb", {}))
        floor = result["trivial"]["wall_seconds"] + dd_t
        row["floor_seconds"] = floor
        row["ratios"] = {
            "pack_vs_floor": row["pack"]["wall_seconds"] / floor,
            "pandas_vs_duckdb_metrics": pd_t / dd_t if dd_t else None,
            "pack_vs_trivial": row["pack"]["wall_seconds"] / result["trivial"]["wall_seconds"],
            "pack_vs_trivial_warm": row["pack"]["wall_seconds"] / result["trivial_warm"]["wall_seconds"],
        }
        result["sizes"][str(n)] = row
        say(
            f"  pack {row['pack']['wall_seconds']:.1f} s, floor {floor:.1f} s, "
            f"peak {row['pack']['peak_mb']:.0f} MB"
        )
        (out / "bench.json").write_text(json.dumps(result, indent=2, default=str))
    bar.update(bar.total - bar.n)
    bar.close()
    (out / "bench.md").write_text(table(result))
    return result


def _f(x, fmt="{:.2f}") -> str:
    return fmt.format(x) if isinstance(x, int | float) else "–"


def table(result: dict) -> str:
    """The Markdown tables of a run: one row per size, then per-notebook phases."""
    m = result["machine"]
    lines = [
        f"Machine: {m['cpu']}, {m['cores']} cores, {m['memory_gb']} GB; Python {m['python']}, "
        f"pandas {m['pandas']}, DuckDB {m['duckdb']}; load average at start {m['load_average_at_start']}.",
        f"Trivial floor (3 trivial notebooks, papermill + HTML, a kernel each): "
        f"{result['trivial']['wall_seconds']:.2f} s; on warm kernels without imports: "
        f"{result.get('trivial_warm', {}).get('wall_seconds', float('nan')):.2f} s.",
        "",
        "| opportunities | reps | CSV MB | load, no cache s (MB) | load, build cache s | load, cache hit s | "
        "metrics pandas s | metrics DuckDB s | pandas ÷ DuckDB | what-if update ms | pack s | floor s | "
        "pack ÷ floor | pack ÷ trivial | pack peak RSS MB (one kernel) | pack peak PSS MB |",
        "|" + "---|" * 16,
    ]
    for n, r in result["sizes"].items():
        nc, cb, c, p = r.get("load_nocache", {}), r["load_cache_build"], r["compute"], r["pack"]
        w = c.get("whatif", {})
        lines.append(
            f"| {int(n):,} | {r['reps']} | {r['csv_mb']:.0f} | {_f(nc.get('seconds'))} ({_f(nc.get('peak_mb'), '{:.0f}')}) "
            f"| {_f(cb.get('seconds'))} | {_f(c.get('load_hit_seconds'))} | {_f(_total(c.get('pandas', {})))} "
            f"| {_f(_total(c.get('duckdb', {})))} | {_f(r['ratios']['pandas_vs_duckdb_metrics'])} "
            f"| {_f(w.get('update_seconds', None) and w['update_seconds'] * 1000, '{:.0f}')} "
            f"| {_f(p['wall_seconds'])} | {_f(r['floor_seconds'])} | {_f(r['ratios']['pack_vs_floor'])} "
            f"| {_f(r['ratios']['pack_vs_trivial'])} | {p['peak_mb']:.0f} ({p['peak_kernel_mb']:.0f}) "
            f"| {_f(p.get('peak_pss_mb'), '{:.0f}')} |"
        )
    lines += [
        "",
        "Per notebook (seconds, from its start to its HTML): the kernel's start and warm-up imports (on "
        "the first notebook of each warm kernel; in the pack it overlaps the parent's checks), the rest of the kernel + papermill overhead, the "
        "`open_report` (load) cell, the other cells, HTML export (re-timed alone; in the run it overlaps "
        "the kernel's next notebook).",
        "",
        "| opportunities | notebook | status | total | kernel start | other overhead | load cell | other cells | HTML |",
        "|" + "---|" * 9,
    ]
    for n, r in result["sizes"].items():
        for name, nb in r["pack"]["notebooks"].items():
            lines.append(
                f"| {int(n):,} | {name} | {nb['status']} | {_f(nb['seconds'])} | {_f(nb.get('kernel_start'))} "
                f"| {_f(max(0.0, nb.get('kernel_and_overhead', 0) - nb.get('kernel_start', 0)))} "
                f"| {_f(nb.get('load_cell'))} "
                f"| {_f(nb.get('other_cells'))} | {_f(nb.get('html_export'))} |"
            )
    lines += [
        "",
        "Metrics, pandas vs DuckDB (seconds):",
        "",
        "| opportunities | metric | pandas | DuckDB |",
        "|---|---|---|---|",
    ]
    for n, r in result["sizes"].items():
        c = r["compute"]
        for name, v in c.get("pandas", {}).items():
            lines.append(
                f"| {int(n):,} | {name} | {_f(v, '{:.3f}') if not isinstance(v, str) else v} "
                f"| {_f(c.get('duckdb', {}).get(name), '{:.3f}')} |"
            )
    return "\n".join(lines) + "\n"


def cli(args) -> int:
    """``revops bench [--sizes 10000,100000] [--out bench]``."""
    sizes = [int(float(s)) for s in str(args.sizes).split(",") if s.strip()]
    result = run_bench(
        sizes, Path(args.out), skip_nocache_above=int(getattr(args, "no_cache_load_up_to", 1e9))
    )
    print()
    print(table(result))
    print(f"Written: {Path(args.out) / 'bench.json'}, {Path(args.out) / 'bench.md'}")
    return 0
