"""The whole monthly pack on the public CRM dataset imported through its profile: a real export with no
quotas, history, activities, leads or churn. Every notebook must still publish, saying what it needs."""

import html
import json

import pandas as pd
import pytest
from conftest import EXAMPLES

from helpers.cli import main as revops
from helpers.data.importers import import_files


@pytest.mark.slow
def test_monthly_pack_on_the_public_crm_dataset(tmp_path):
    files = sorted((EXAMPLES / "crm-sales-opportunities").glob("*.csv"))
    ds = import_files("maven_crm", files, tmp_path / "maven")
    out = tmp_path / "reports"
    code = revops(["report", "monthly", "--dataset", str(ds), "--period", "2017-12", "--out", str(out)])
    assert code == 0
    period = out / "2017-12"
    for nb in ("quota_setting", "pipeline_health", "win_loss_review"):
        assert (period / f"{nb}.html").stat().st_size > 10_000, nb
    pipeline = (period / "pipeline_health.html").read_text()
    assert "needs the `opportunity_history` table" in pipeline
    assert "needs the `activities` table" in pipeline
    summary = json.loads((period / "summary.json").read_text())
    assert summary["parameters"]["period"] == "2017-12"
    # figures that rest on a default say so (issue 16): the open deals' list prices, the built-in benchmark
    raw = pd.read_csv(EXAMPLES / "crm-sales-opportunities" / "sales_pipeline.csv", dtype=str)
    n_open = int(raw["deal_stage"].isin(["Prospecting", "Engaging"]).sum())
    assert raw.loc[raw["deal_stage"].isin(["Prospecting", "Engaging"]), "close_value"].isna().all()
    figs = {
        f["key"]: f["label"] for nb in summary["notebooks"] for f in nb["figures"]
    }  # every notebook's labels
    at_list = f"{n_open:,} of {n_open:,} open deals at the product's list price"
    assert figs["open_pipeline"] == (
        f"Open pipeline, at 2017-12-31 — {n_open:,} deals, {n_open:,} at the product's list price"
    )
    assert figs["weighted_pipeline_crm"].endswith(at_list)
    assert f"Amounts from a default: in the export, {at_list}" in html.unescape(pipeline)
    bench = "built-in benchmark: 0.5 opportunities per meeting, 20 calls per meeting (the data has none to measure)"
    assert figs["quota_calls_per_rep_month"].endswith(bench)
    assert figs["quota_meetings_per_rep_month"].endswith(
        "built-in benchmark: 0.5 opportunities per meeting (the data has none to measure)"
    )
    assert "benchmark" not in figs["quota_opportunities_per_rep_month"]  # win rate measured: 4238 / 6711
    quota = html.unescape((period / "quota_setting.html").read_text())
    assert f"calls a month ({bench})." in quota
