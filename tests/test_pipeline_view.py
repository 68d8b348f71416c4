"""helpers.sections.pipeline_view on a hand-built dataset without history, quotas, activities or leads: what
``prepare`` measures once for every section, and what the scope- and mode-dependent sections show."""

from __future__ import annotations

import pandas as pd
import pytest
from test_dataset import DATASET_YML  # the same tiny February-fiscal-year dataset.yml

from helpers.sections import pipeline_view as pv
from helpers.sections.context import open_report

OPPS = """\
opportunity_id,owner,created_date,close_date,stage,amount,is_closed,is_won,probability,next_step
O1,r1,2026-01-05,2026-02-01,Closed Won,1000,yes,yes,100,
O2,r1,2026-01-05,2026-03-01,Closed Lost,0,true,false,0,
O3,r2,2026-03-05,2026-12-01,Proposal,2500,no,no,50,Send contract
O4,r2,2026-09-30,2026-09-30,Prospecting,400,no,no,10,
"""


@pytest.fixture
def ctx(tmp_path):
    folder = tmp_path / "ds"
    folder.mkdir()
    (folder / "dataset.yml").write_text(DATASET_YML)
    (folder / "opportunities.csv").write_text(OPPS)
    return open_report(str(folder), notebook="pipeline_health", show_header=False)


@pytest.fixture
def shown(monkeypatch):
    """Every markdown / note / table the sections display, in order, as (kind, payload)."""
    calls = []
    monkeypatch.setattr(pv, "markdown", lambda text: calls.append(("markdown", text)))
    monkeypatch.setattr(pv, "note", lambda text, warn=False: calls.append(("note", text)))
    monkeypatch.setattr(pv, "show_table", lambda df, **kw: calls.append(("table", df)))
    return calls


def test_prepare_without_history_measures_stalled_deals_by_age(ctx):
    v = pv.prepare(ctx, stalled_days=100)
    # no opportunity_history: nothing historical is measured and the sections say what they need
    assert not v.has_history and v.rate_map is None and v.slipped is None
    assert "opportunity_history" in v.NO_HISTORY
    # stalled = open deals older than 100 days at 2026-10-31:
    # O3 created 2026-03-05 -> 26 (Mar) + 30 + 31 + 30 + 31 + 31 + 30 + 31 (Oct) = 240 days > 100: stalled;
    # O4 created 2026-09-30 -> 31 days: not stalled
    assert v.stalled["opportunity_id"].tolist() == ["O3"]
    assert v.stalled["age_days"].tolist() == [240]
    assert v.figs["stalled_deals"].value == 1
    # no quotas: no coverage by rep; the focus quarter is Q4 FY2026 (Nov–Jan) only if < 14 days are left
    # in Q3 (Aug 1 – Oct 31): on Oct 31 one day is left, so the focus is the next quarter
    assert v.cov_rep is None
    assert v.focus is v.NQ and v.NQ.start == pd.Timestamp("2026-11-01")


def test_review_section_only_in_review_mode(ctx, shown):
    pv.show_review(pv.prepare(ctx))
    assert shown == []
    pv.show_review(pv.prepare(ctx, scope="rep", who="r2", review_mode=True))
    headings = [p for k, p in shown if k == "markdown"]
    assert headings[:2] == ["## Review: top 10 deals", "## What changed since last week"]
    top10 = next(p for k, p in shown if k == "table")
    assert top10["opportunity_id"].tolist() == ["O3", "O4"]  # r2's open deals, largest amount first


def test_sections_without_quotas_or_history(ctx, shown):
    v = pv.prepare(ctx)
    pv.show_bookings_by_team_and_rep(v)  # by team / by rep needs quotas
    pv.show_slips_conversion_and_stage_days(v)  # needs history (show_waterfall says so)
    assert shown == []
    pv.show_waterfall(v)
    assert shown[0][0] == "note" and "The movement section" in shown[0][1]
    assert "opportunity_history" in shown[0][1]
