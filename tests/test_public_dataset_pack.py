"""The whole monthly pack on the public CRM dataset imported through its profile: a real export with no
quotas, history, activities, leads or churn. Every notebook must still publish, saying what it needs."""

import json

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
