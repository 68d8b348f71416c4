"""The win/loss review end to end: ``build_review`` on dataset folders (the hand-built one of
test_winloss.py, a thin survey-style one) and the notebook run by papermill on the sample data, the public
CRM dataset imported through its profile, and the thin dataset; the HTML has no code and no errors."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pandas as pd
import pytest
import winloss_reference
import yaml
from conftest import EXAMPLES, NOTEBOOKS, SAMPLE_AS_OF
from test_winloss import write_hand_dataset

from helpers.data.calendar import FiscalCalendar
from helpers.data.dataset import load
from helpers.metrics import winloss as wl

NOTEBOOK = NOTEBOOKS / "win_loss_review.ipynb"


def write_thin_dataset(folder: Path) -> Path:
    """Survey-style win/loss records: an outcome and a few attributes, no dates, amounts or owners, no
    is_closed/is_won (derived from the stage); W3 is W2 entered twice."""
    folder.mkdir(parents=True)
    (folder / "dataset.yml").write_text(
        yaml.safe_dump(
            {
                "name": "Win/loss survey",
                "stages": ["Open", "Won", "Lost"],
                "won_stages": ["Won"],
                "lost_stages": ["Lost"],
            }
        )
    )
    pd.DataFrame(
        {
            "opportunity_id": ["W1", "W2", "W3", "W4", "W5", "W6", "W7"],
            "stage": ["Won", "Lost", "Lost", "Lost", "Won", "Lost", "Open"],
            "account": ["Ann Co", "Bee Ltd", "Bee Ltd", "Cee AG", "Dee Inc", "Eff SA", "Gee BV"],
            "segment": ["SMB", "SMB", "SMB", "Enterprise", "Enterprise", "SMB", "SMB"],
            "loss_reason": ["", "Price", "Price", "Other", "", "", ""],
            "competitor": ["Acme", "Acme", "Acme", "", "Acme", "Beta", ""],
        }
    ).to_csv(folder / "opportunities.csv", index=False)
    return folder


def review_of(folder: Path, period="2026-10", min_deals=2):
    ds = load(folder)
    args = (ds, period, ds.as_of, FiscalCalendar(ds.config.fiscal_year_start_month), "month", "", min_deals)
    rv = wl.build_review(*args)
    # the same review as the frozen pandas one (the window's deals and history rows fetched)
    winloss_reference.assert_same_review(rv, winloss_reference.build_review(*args))
    return rv


def test_build_review_on_the_hand_dataset(tmp_path):
    rv = review_of(write_hand_dataset(tmp_path / "hand"), min_deals=3)
    # the same numbers as the unit tests: 3 won of 9 closed in October (O14, a copy of O03, left out)
    assert rv.duplicates["opportunity_id"].tolist() == ["O14"]
    assert (rv.overall.at[0, "deals"], rv.overall.at[0, "won"]) == (9, 3)
    assert rv.change["previous"] == pytest.approx(0.5)  # September: O09 won, O10 lost
    assert rv.by_dim["segment"]["group"].tolist() == ["Ent", "SMB", "Other (n<3)"]
    assert rv.by_dim["team"][["group", "deals", "won"]].values.tolist() == [["East", 5, 3], ["West", 4, 0]]
    assert rv.reasons_count["reason"].tolist()[:3] == ["Price", "Budget", "Timing"]
    assert rv.lost_at["deals"].tolist() == [1, 2, 1, 1, 1]
    assert rv.top_lost["opportunity_id"].tolist() == ["O04", "O06", "O15", "O03", "O07"]
    assert rv.top_churned["account"].tolist() == ["AcctA", "AcctB", "AcctD"]
    side = rv.side.set_index("metric")
    assert side.at["Activities per deal", "Won"] == pytest.approx(2.0)
    # sections with their data have no "needs"; the dataset has no region/source/product/deal_type
    assert {"history", "churn", "activities", "reasons", "competitor"}.isdisjoint(rv.needs)
    assert {"dim:region", "dim:source", "dim:product", "dim:deal_type"} <= set(rv.needs)
    figs = {f.key: f.value for f in rv.headlines}
    assert figs["win_rate"] == pytest.approx(1 / 3) and figs["duplicate_records"] == 1


def test_build_review_on_thin_survey_records(tmp_path):
    rv = review_of(write_thin_dataset(tmp_path / "thin"), min_deals=1)
    assert not rv.dated
    # W3 duplicates W2 -> left out; closed: W1 won, W2 lost, W4 lost, W5 won, W6 lost -> 2 of 5
    assert rv.duplicates["opportunity_id"].tolist() == ["W3"]
    assert (rv.overall.at[0, "deals"], rv.overall.at[0, "won"]) == (5, 2)
    assert rv.by_dim["segment"][["group", "deals", "won"]].values.tolist() == [
        ["SMB", 3, 1],
        ["Enterprise", 2, 1],
    ]
    # Acme: W1 won, W2 lost, W5 won = 2/3
    assert rv.competitors[["group", "deals", "won"]].values.tolist()[0] == ["Acme", 3, 2]
    assert rv.trend is None and "dates" in rv.needs and "value" in rv.needs
    assert rv.top_lost["opportunity_id"].tolist() == ["W2", "W4", "W6"]
    assert {"history", "churn", "dim:rep"} <= set(rv.needs)
    # every section that cannot be shown says why, in the review itself
    assert rv.needs["dim:team"] == (
        "Win rate by team needs the `reps` table (with columns rep_id, team); dataset 'Win/loss survey' has none."
    )
    assert rv.needs["qualifying"] == (
        "The check for deals closed without qualifying needs the opportunity_history table."
    )
    q = rv.quality.set_index("check")
    # lost W2 Price, W4 Other, W6 none -> 1/3 no reason, 1/3 "Other"; 1 duplicate of 5 + 1 records
    assert q.at["Lost with no loss reason", "share"] == pytest.approx(1 / 3)
    assert q.at["Lost with an 'Other' reason", "share"] == pytest.approx(1 / 3)
    assert q.at["Duplicate records (left out)", "share"] == pytest.approx(1 / 6)


# ------------------------------------------------------------------------------------------------
# the notebook, run for real
# ------------------------------------------------------------------------------------------------
def run_notebook(tmp_path: Path, dataset: Path, **params) -> tuple[str, dict, str]:
    from helpers.publish.report import execute, to_html

    out = tmp_path / "out"
    summary = out / "summary.json"
    nb = execute(
        NOTEBOOK,
        out / "win_loss_review.ipynb",
        {
            "dataset": str(dataset),
            "report_mode": True,
            "summary_path": str(summary),
            "output_dir": str(out),
            **params,
        },
        timeout=300,
    )
    errors = [
        o
        for c in nb.cells
        if c.cell_type == "code"
        for o in c.get("outputs", [])
        if o.output_type == "error" or (o.output_type == "stream" and o.get("name") == "stderr")
    ]
    assert not errors, errors
    html = to_html(out / "win_loss_review.ipynb", out / "win_loss_review.html").read_text()
    text = re.sub(r"<[^>]+>", " ", re.sub(r"<(style|script)[^>]*>.*?</\1>", "", html, flags=re.S))
    for code in ("open_report(", "build_review(", "import ", "Traceback", "Error"):
        assert code not in text, code
    return text, json.loads(summary.read_text()), html


def figures(summary: dict) -> dict:
    return {f["key"]: f["value"] for f in summary["figures"]}


@pytest.mark.slow
def test_notebook_on_sample_data(tmp_path, sample_dir):
    text, summary, html = run_notebook(tmp_path, sample_dir, period=SAMPLE_AS_OF[:7])
    assert summary["notebook"] == "win_loss_review"
    f = figures(summary)
    ds = load(sample_dir)
    rv = wl.build_review(
        ds, SAMPLE_AS_OF[:7], ds.as_of, FiscalCalendar(ds.config.fiscal_year_start_month), "month", "", 5
    )
    assert f["closed_deals"] == rv.overall.at[0, "deals"] > 0
    assert f["win_rate"] == pytest.approx(rv.overall.at[0, "win_rate"])
    for heading in (
        "What to look at",
        "1. Win rates",
        "2. Why we lose",
        "3. Won and lost, side by side",
        "4. The lists",
        "5. Data quality of the review",
        "Top 5 churned customers",
    ):
        assert heading in text
    assert "needs the" not in text.split("4. The lists")[0].split("Deal type")[0]  # sample has every table
    assert html.count("data:image/png") >= 3  # trend, rep intervals, Pareto


@pytest.mark.slow
def test_notebook_on_public_crm_dataset(tmp_path):
    from helpers.data.importers import import_files

    files = sorted((EXAMPLES / "crm-sales-opportunities").glob("*.csv"))
    folder = import_files("maven_crm", files, tmp_path / "maven")
    text, summary, _ = run_notebook(tmp_path, folder, review_window="quarter", period="2017-12")
    # no history, no activities, no churn, no loss reasons: those sections say so
    assert "needs the `opportunity_history` table" in text
    assert "needs the activities table" in text
    assert "needs the `churn` table" in text
    assert "records no loss reasons" in text
    f = figures(summary)
    assert f["closed_deals"] > 1000 and 0 < f["win_rate"] < 1  # FY2017 Q4: Oct–Dec 2017


@pytest.mark.slow
def test_notebook_on_thin_survey_records(tmp_path):
    text, summary, _ = run_notebook(tmp_path, write_thin_dataset(tmp_path / "thin"), min_deals=1)
    assert "no close dates" in text and "1 duplicate record(s) are left out" in text
    f = figures(summary)
    assert (f["closed_deals"], f["win_rate"]) == (5, pytest.approx(0.4))
    assert f["win_rate_value"] is None
