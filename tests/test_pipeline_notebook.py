"""The pipeline health notebook run by papermill on the sample data at company, team and rep (review)
scope, and on a dataset without history, activities or leads; the HTML has no code and no errors, and
the sections whose table is missing say what they need. Each run costs seconds: keep these few."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pandas as pd
import pytest
from conftest import NOTEBOOKS

from helpers.publish import report, reviews

NOTEBOOK = NOTEBOOKS / "pipeline_health.ipynb"
pytestmark = pytest.mark.slow


def run(tmp_path: Path, name: str, **params) -> str:
    nb = report.execute(NOTEBOOK, tmp_path / f"{name}.ipynb", {"report_mode": True, **params})
    html = report.to_html(nb, tmp_path / f"{name}.html").read_text()
    assert "Traceback" not in html and "Error" not in re.sub(r"<style.*?</style>", "", html, flags=re.S)
    assert "<pre" not in html or "import " not in html  # no code
    assert html.count("Definitions") >= 2
    return html


def test_company_scope_on_the_sample(tmp_path, sample_dir):
    summary = tmp_path / "summary.json"
    html = run(tmp_path, "company", dataset=str(sample_dir), summary_path=str(summary))
    assert "What to look at" in html and "Pipeline waterfall" in html and "Closing pipeline" in html
    figs = {f["key"]: f for f in json.loads(summary.read_text())["figures"]}
    for key in (
        "bookings_ytd",
        "attainment_qtd",
        "attainment_to_date_qtd",
        "open_pipeline",
        "weighted_pipeline_crm",
        "weighted_pipeline_hist",
        "coverage_next_quarter",
        "win_rate_count_12m",
        "win_rate_value_12m",
        "sales_velocity_30d",
        "stalled_deals",
    ):
        assert key in figs and figs[key]["definition"], key
    assert figs["open_pipeline"]["value"] > 0
    assert "pace_qtd" not in figs  # the sample's as-of date ends FY2027 Q3: no run rate for a closed quarter


def test_team_scope_and_a_rep_review_pack_through_the_command(tmp_path, sample_dir):
    reps = pd.read_csv(sample_dir / "reps.csv")
    team = reps["team"].dropna().iloc[0]
    html = run(tmp_path, "team", dataset=str(sample_dir), scope="team", who=team)
    assert f"Team {team}" in html
    opps = pd.read_csv(sample_dir / "opportunities.csv")
    open_deals = opps[~opps["is_closed"].astype(str).str.lower().isin(["true", "1"])]
    # the AE with the most open deals (ties: lowest id), so the pack has deals to question
    counts = open_deals[open_deals["owner"].isin(reps.loc[reps["role"] == "AE", "rep_id"])][
        "owner"
    ].value_counts()
    rep = sorted(counts[counts == counts.max()].index)[0]
    code, target, results = reviews.run_reviews(
        sample_dir, "2026-10", None, tmp_path / "reports", [rep], 1, progress=None
    )
    assert code == 0, [r.error for r in results]
    page = (target / f"{rep}.html").read_text()
    assert target == (tmp_path / "reports" / "2026-10" / "reviews").resolve()
    for text in (
        "One-to-one review",
        "Review: top 10 deals",
        "What changed since last week",
        "Questions for each deal",
        "Notes for the meeting",
        "Deals that need attention",
    ):
        assert text in page, text
    assert "Pipeline waterfall" not in page  # analysis-only cells are left out of review packs
    # its sections are numbered 1, 2, 3 (1, 4, 6 before: the left-out sections' numbers)
    numbered = re.findall(r"<h2[^>]*>(\d+)\. ", page)
    assert numbered == ["1", "2", "3"], numbered
    assert '<h2 id="deals-that-need-attention">2. Deals that need attention</h2>' in page
    # the activity yield compares the rep with the rep's team and the company, not with itself
    assert "Company (all reps)" in page and "(all its reps)" in page and ">All reps<" not in page
    assert not list(target.parent.glob(".reviews.building-*"))
    # reviews/index.html: a row per rep with the pack's link, the rep's name and team, and their figures
    index = (target / "index.html").read_text()
    name, rep_team = reps.set_index("rep_id").loc[rep, ["name", "team"]]
    assert f'<a href="{rep}.html">{name} ({rep})</a>' in index and f"<td>{rep_team}</td>" in index
    assert "Bookings" in index and "Coverage" in index and "Stalled open deals" in index


def test_a_dataset_without_history_activities_or_leads_says_what_it_needs(tmp_path, sample_dir):
    thin = tmp_path / "thin"
    thin.mkdir()
    for f in ("dataset.yml", "opportunities.csv", "reps.csv", "quotas.csv"):
        shutil.copy(sample_dir / f, thin / f)
    html = run(tmp_path, "thin", dataset=str(thin))
    for table in ("opportunity_history", "leads", "activities"):
        assert f"needs the <code>{table}</code> table" in html or f"needs the `{table}` table" in html, table
    assert "open deals need attention" in html and "The 20 largest open deals" in html
