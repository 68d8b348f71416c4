"""One-to-one review packs: the pipeline health notebook run once per rep (``scope="rep"``,
``review_mode=True``) into ``reports/<period>/reviews/<rep>.html`` (the rep id made a safe file name:
``helpers.data.escape.filename``).

The review part of the notebook is built from the pure functions here:

- ``deal_changes(before, now, config)``: what changed since last week, per deal (new, advanced,
  moved back, slipped, pulled in, amount changed, won, dropped).
- ``review_questions(deals, opps, activities, as_of)``: for each deal the standard questions, pre-filled
  from CRM fields where the dataset has them and left blank for the meeting where it does not.

``cli(args)`` is ``revops report reviews``: it runs the notebook per rep with ``helpers.publish.report``'s
runner, without the cells tagged ``analysis-only`` (the company-level analysis a one-to-one does not
need).
"""

from __future__ import annotations

import math
import os
import shutil
import sys
from pathlib import Path

import pandas as pd

from helpers.data import escape
from helpers.data.atomic import build_folder, write_text_atomic
from helpers.data.progress import progress as progress_bar

NOTEBOOK = "pipeline_health"
REVIEW_PARAMETERS = ("scope", "who")  # set per pack by the run (with report.RUN_PARAMETERS)
ANALYSIS_TAG = "analysis-only"


# --------------------------------------------------------------------------------------------------
# the command
# --------------------------------------------------------------------------------------------------
def review_reps(ds, as_of, reps: list[str] | None = None) -> list[str]:
    """Rep ids to build packs for: ``reps`` when given (checked against the data), else the quota-carrying
    reps (role AE when the reps table says) employed on ``as_of`` who own at least one deal."""
    opps = ds.tables["opportunities"]
    owners = set(opps["owner"].dropna())
    table = ds.tables.get("reps")
    if reps:
        known = owners | (set(table["rep_id"]) if table is not None else set())
        unknown = [r for r in reps if r not in known]
        if unknown:
            raise ValueError(
                f"unknown rep id(s) {', '.join(unknown)}; reps in the data include "
                f"{', '.join(sorted(known)[:10])}"
            )
        return list(reps)
    if table is None:
        return sorted(owners)
    t = table[table["rep_id"].isin(owners)]
    if "role" in t.columns:
        t = t[t["role"].isna() | (t["role"].str.upper() == "AE")]
    if "end_date" in t.columns:
        t = t[t["end_date"].isna() | (t["end_date"] >= pd.Timestamp(as_of))]
    return sorted(t["rep_id"])


def review_notebook(source: Path, target: Path) -> Path:
    """A copy of the notebook without the cells tagged ``analysis-only``."""
    import nbformat

    nb = nbformat.read(str(source), as_version=4)
    nb.cells = [c for c in nb.cells if ANALYSIS_TAG not in c.get("metadata", {}).get("tags", [])]
    target.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, str(target))
    return target


# "coverage" is the quarter the pipeline report leads with (pipeline.coverage_focus), the same for every rep
INDEX_FIGURES = (
    "bookings_qtd",
    "attainment_to_date_qtd",
    "coverage",
    "open_pipeline",
    "stalled_deals",
)


def reviews_index(ds, params, results, summaries: Path, monthly: bool = False) -> str:
    """``reviews/index.html``: one row per rep — name, team, a link to the pack and the headline figures
    (registry labels over the column heads, the rep's own values), in the order of the reps' names."""
    from helpers.metrics.pipeline import coverage_focus
    from helpers.metrics.registry import metric
    from helpers.publish import report
    from helpers.sections.display import fmt_value

    summaries_by_rep = {
        str(res.name): report.read_summary(summaries / escape.filename(str(res.name), ".json")) or {}
        for res in results
    }
    days_left = next(
        (
            f["value"]
            for data in summaries_by_rep.values()
            for f in data.get("figures", [])
            if f["key"] == "days_left_qtd" and f.get("value") is not None
        ),
        math.nan,
    )
    coverage = f"coverage_{coverage_focus(days_left)}"
    keys = [coverage if k == "coverage" else k for k in INDEX_FIGURES]
    windows = {}
    reps = ds.tables.get("reps")
    info = {}
    if reps is not None:
        for _, r in reps.iterrows():
            info[str(r["rep_id"])] = (
                r.get("name") if pd.notna(r.get("name")) else str(r["rep_id"]),
                r.get("team"),
            )
    cur = ds.config.currency
    rows = []
    for res in results:
        rid = str(res.name)
        name, team = info.get(rid, (rid, None))
        figs = {f["key"]: f for f in summaries_by_rep[rid].get("figures", [])}
        values = []
        for k in keys:
            f = figs.get(k)
            if f is not None and f.get("window"):
                windows.setdefault(k, f["window"])
            v = None if f is None else f.get("value")
            values.append("" if v is None else v if isinstance(v, str) else fmt_value(v, f["unit"], cur))
        rows.append(
            {
                "name": f"{name} ({rid})" if name != rid else rid,
                "team": "" if team is None or (isinstance(team, float) and team != team) else str(team),
                "href": Path(res.html).name if res.ok and res.html else None,
                "cells": values,
                "sort": str(name).casefold(),
            }
        )
    rows.sort(key=lambda r: r["sort"])
    headers = [
        {
            "label": metric(k).render_label(windows.get(k)) if k == coverage else metric(k).label,
            "definition": metric(k).definition,
        }
        for k in keys
    ]
    return report.render_template(
        "reviews_index.html.j2",
        period=params.period,
        as_of=params.as_of,
        dataset_name=params.dataset_name,
        rows=rows,
        headers=headers,
        monthly=monthly,
        css=report.report_css(),
    )


def relink_monthly_index(period_dir: Path) -> None:
    """Rewrite the monthly pack's index.html (when there is one) so that it links the review packs."""
    from helpers.publish import report

    summary = report.read_summary(period_dir / "summary.json")
    if summary:
        write_text_atomic(
            period_dir / "index.html", report.render_index(summary, reviews="reviews/index.html")
        )


def run_reviews(
    dataset="data/sample",
    period: str | None = None,
    as_of: str | None = None,
    out="reports",
    reps: list[str] | None = None,
    jobs_n: int | None = None,
    progress=print,
    parameters: dict | None = None,
) -> tuple[int, Path, list]:
    """Run the review packs. Returns (exit code, reviews folder, results). Each rep's HTML is moved into
    ``<out>/<period>/reviews/`` as soon as the whole run is done; failed runs leave their executed
    notebook in ``<out>/<period>/reviews.failed/`` and the previous packs untouched. ``parameters``
    (``-p``/``-f``) are checked against the notebook's parameters cell before anything runs, as for the
    monthly pack; the rep and scope of each pack are the run's own."""
    from helpers.data import engine
    from helpers.publish import report

    given = dict(parameters or {})
    own = [k for k in REVIEW_PARAMETERS if k in given]
    if own:
        raise report.ReportError(
            f"parameter(s) {', '.join(map(repr, own))} are set by the review run (one pack per rep, scope "
            "rep); choose the reps with --reps"
        )
    chosen = report.check_parameters(given, report.find_notebooks([NOTEBOOK]))[NOTEBOOK]
    params = report.validate_parameters(dataset, period, as_of, [NOTEBOOK])
    # the deals' owners and the reps table are all review_reps needs (validate_parameters checked the
    # whole dataset): a database's activity log and leads are not read here
    ds = engine.load_tables(params.dataset, ["opportunities", "reps"])
    rep_ids = review_reps(ds, params.as_of, reps)
    out_root = Path(out).resolve()
    period_dir = out_root / params.period
    period_dir.mkdir(parents=True, exist_ok=True)
    build = build_folder(period_dir, ".reviews.building-")
    nb = review_notebook(params.notebooks[0], build / "notebook" / f"{NOTEBOOK}_review.ipynb")
    footer = (
        f"{params.dataset_name} · one-to-one review · period {params.period} · data as of {params.as_of} · "
        f"data fingerprint sha256:{params.fingerprint[:12]}"
    )
    if progress:
        progress(f"Review packs {params.period} (as of {params.as_of}) for {len(rep_ids)} rep(s)")
    jobs = [
        report.NotebookJob(
            rep,
            nb,
            {
                "dataset": str(params.dataset),
                "period": params.period,
                "as_of": params.as_of,
                "report_mode": True,
                "summary_path": str(build / "summaries" / escape.filename(rep, ".json")),
                "output_dir": str(build / "files" / escape.filename(rep)),
                "top_n": 10,
                **chosen,
                "scope": "rep",
                "who": rep,
                "review_mode": True,
            },
        )
        for rep in rep_ids
    ]
    try:
        with progress_bar(
            total=len(jobs), desc=f"review packs {params.period}", unit="packs", delay=0
        ) as bar:
            lines = progress if bar.disable else None  # a bar (revops), else a line per notebook
            results = report.run_notebooks(
                jobs, build / "out", jobs_n, lines, footer, done=lambda r: bar.update()
            )
    except BaseException:
        shutil.rmtree(build, ignore_errors=True)
        raise
    target = period_dir / "reviews"
    target.mkdir(exist_ok=True)
    for r in results:
        if r.ok:
            os.replace(r.html, target / r.html.name)
            r.html = target / r.html.name
    write_text_atomic(
        target / "index.html",
        reviews_index(
            ds, params, results, build / "summaries", monthly=(period_dir / "summary.json").exists()
        ),
    )
    relink_monthly_index(period_dir)
    failed = [r for r in results if not r.ok]
    if failed:
        fdir = period_dir / "reviews.failed"
        shutil.rmtree(fdir, ignore_errors=True)
        fdir.mkdir()
        for r in failed:
            if r.executed and Path(r.executed).exists():
                os.replace(r.executed, fdir / Path(r.executed).name)
                r.executed = fdir / Path(r.executed).name
    shutil.rmtree(build, ignore_errors=True)
    return (1 if failed else 0), target, results


def cli(args) -> int:
    """``revops report reviews``."""
    from helpers.publish import report
    from helpers.publish.report import ReportError, results_table

    try:
        code, target, results = run_reviews(
            args.dataset,
            args.period,
            args.as_of,
            args.out,
            args.reps,
            args.jobs,
            parameters=report.gather_parameters(args.parameters, args.parameters_file),
        )
    except (ReportError, ValueError) as exc:
        print(f"revops report reviews: {exc}", file=sys.stderr)
        return 2
    print()
    print(results_table(results, target))
    print()
    ok = sum(r.ok for r in results)
    print(f"{ok} review pack(s) in {target}/")
    if code:
        print(
            f"{len(results) - ok} failed; executed notebooks in {target.parent / 'reviews.failed'}/",
            file=sys.stderr,
        )
    return code
