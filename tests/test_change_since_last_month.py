"""Change since last month from the data's own history: the headline figures measured again at the previous
month's end (no earlier report needed), on a hand-made dataset whose September values are known.

The deals (fiscal year = calendar year, as of 2026-10-31), as in tests/fixtures/notebooks/packs.py:

    id  created     closed       stage         amount
    O1  2026-08-01  2026-10-05   Closed Won    12,000
    O2  2026-08-10  2026-10-20   Closed Won     3,000
    O3  2026-09-01  2026-10-12   Closed Won    45,000
    O4  2026-09-03  2026-10-15   Closed Lost    8,000
    O5  2026-07-01  2026-09-20   Closed Won     7,000
    O6  2026-09-15  (2026-12-01) Proposal      20,000   open

opportunity_history has rows for O6 only: Prospecting at 15,000 on 2026-09-15, Proposal at 20,000 on
2026-10-10. A deal without history rows is taken as created in the first open stage (Prospecting, 10%) and
closed on its close date.

At 2026-09-30: bookings, September = O5 = 7,000; open = O1 + O2 + O3 + O4 + O6 at 15,000 = 83,000 in 5 deals;
weighted (CRM probability = the stage default, Prospecting 10% for all five) = 8,300.
At 2026-10-31: bookings, October = 12,000 + 3,000 + 45,000 = 60,000; open = O6 at 20,000 (Proposal 50%),
weighted 10,000.
Win/loss: September closed O5 only (1 won of 1: 100%); October 3 won of 4 closed (75%): −25.0 pts.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import pandas as pd
import pytest

sys.path.insert(0, str(Path(__file__).parent / "fixtures" / "notebooks"))
from packs import write_tiny_dataset  # noqa: E402

from helpers.metrics import registry  # noqa: E402
from helpers.publish import report  # noqa: E402
from helpers.sections import pipeline_view as pv  # noqa: E402
from helpers.sections import winloss_view as wv  # noqa: E402
from helpers.sections.context import open_report  # noqa: E402
from helpers.sections.summary import previous_month_end  # noqa: E402

HISTORY_CSV = """opportunity_id,changed_at,stage,amount
O6,2026-09-15,Prospecting,15000
O6,2026-10-10,Proposal,20000
"""


@pytest.fixture
def tiny(tmp_path) -> Path:
    folder = write_tiny_dataset(tmp_path / "tiny")
    (folder / "opportunity_history.csv").write_text(HISTORY_CSV)
    return folder


def test_previous_month_end():
    assert previous_month_end("2026-10-31") == pd.Timestamp("2026-09-30")
    assert previous_month_end("2026-11-15") == pd.Timestamp("2026-10-31")
    assert previous_month_end("2026-03-01") == pd.Timestamp("2026-02-28")


def test_the_registry_says_how_each_change_is_found():
    m = registry.load().metrics
    assert m["bookings_mtd"].rebuilt(has_history=False)  # closed deals by close date: always
    assert m["open_pipeline"].rebuilt(has_history=True) and not m["open_pipeline"].rebuilt(has_history=False)
    assert not m["quota_company_target"].rebuilt(has_history=True)  # only from the earlier report
    assert m["win_rate_change"].change == "none"  # a points figure: never a change of a change
    assert all(x.change == "none" for x in m.values() if x.unit == "points")


def _previous(folder: Path) -> dict:
    ctx = open_report(str(folder), notebook="pipeline_health", show_header=False)
    v = pv.prepare(ctx)
    before = previous_month_end(ctx.as_of)
    ctx.headlines.add_figs(v.figs)
    ctx.headlines.add_previous(before, pv.figures_at(v, before), has_history=v.has_history)
    return ctx.headlines


def test_last_months_pipeline_figures_by_hand(tiny):
    h = _previous(tiny)
    assert h.previous["as_of"] == "2026-09-30"
    was = h.previous["values"]
    assert was["bookings_mtd"] == 7000.0 and h.get("bookings_mtd") == 60000.0
    assert was["open_pipeline"] == 83000.0 and h.get("open_pipeline") == 20000.0
    assert was["open_deals"] == 5 and h.get("open_deals") == 1
    assert was["weighted_pipeline_crm"] == pytest.approx(8300.0) and h.get("weighted_pipeline_crm") == 10000.0
    assert "days_left_qtd" not in was  # the registry says: no change
    assert "no_next_step_deals" not in was  # next_step has no history: the earlier report only


def test_without_history_open_pipeline_is_not_rebuilt(tiny):
    (tiny / "opportunity_history.csv").unlink()
    was = _previous(tiny).previous["values"]
    assert was["bookings_mtd"] == 7000.0  # closed deals by date: still rebuilt
    assert "open_pipeline" not in was and "stalled_deals" not in was  # left to the earlier report


def test_last_months_win_loss_figures_by_hand(tiny):
    ctx = open_report(str(tiny), notebook="win_loss_review", show_header=False)
    rv = wv.review(ctx)
    ctx.headlines.add_figs(rv.headlines)
    path = tiny.parent / "wl.json"
    wv.save_headlines(ctx, str(path))
    saved = json.loads(path.read_text())
    assert saved["previous"]["as_of"] == "2026-09-30"
    assert saved["previous"]["values"]["win_rate"] == 1.0  # O5: 1 won of 1 closed in September
    assert saved["previous"]["values"]["closed_deals"] == 1
    assert "win_rate_change" not in saved["previous"]["values"]
    assert ctx.headlines.get("win_rate") == 0.75  # October: O1, O2, O3 won, O4 lost


def _unwrapped(page: str) -> str:
    """``page`` without the spans that keep dates on one line (report.keep_dates_whole)."""
    return re.sub(r'<span class="nowrap"[^>]*>([^<]*)</span>', r"\1", page)


def test_the_index_shows_the_change_with_no_earlier_report(tiny, tmp_path):
    h = _previous(tiny)
    summaries = tmp_path / "summaries"
    h.save(summaries / "pipeline_health.json")
    params = report.RunParameters(tiny, "2026-10", "2026-10-31", "Tiny Co", "USD", "0" * 64, [])
    results = [report.JobResult("pipeline_health", "ok", 1.0, title="Pipeline health")]
    summary = report.build_summary(params, results, summaries, None, 0.0, {})
    figs = {f["key"]: f for f in summary["notebooks"][0]["figures"]}
    assert figs["bookings_mtd"]["change"] == {
        "previous": 7000.0,
        "delta": 53000.0,
        "pct": pytest.approx(53000 / 7000),
        "source": "data",
    }
    assert figs["open_pipeline"]["change"]["delta"] == -63000.0  # 20,000 − 83,000
    assert figs["days_left_qtd"]["change"] is None
    # 2026-09-30 was in FY2026 Q3: this quarter's figures are not compared with the quarter before ...
    assert figs["commit_qtd"]["change"] is None
    assert figs["commit_qtd"]["change_note"] == "last month's value is of FY2026 Q3"
    # ... but with the figure that named FY2026 Q4 then: open pipeline closing in Q4 was 83,000 (O1–O4 dated
    # in October, O6 at 15,000 in December), now 20,000
    assert figs["open_in_qtd"]["change"]["previous"] == 83000.0
    assert figs["open_in_qtd"]["change"]["then"] == "open_in_next_quarter"
    assert figs["bookings_ytd"]["change"]["delta"] == 60000.0  # the same fiscal year: compared
    assert summary["previous_period"]["as_of"] == "2026-09-30"
    assert summary["previous_period"]["from_earlier_report"] == 0
    index = _unwrapped(report.render_index(summary))
    assert "no earlier report" not in index
    assert "changes since 2026-09-30, rebuilt from the data" in index
    # +$53,000 bookings is good news; −$63,000 open pipeline is bad news (the registry's better: higher)
    assert (
        '<td class="num good" title="since 2026-09-30, rebuilt from the data">+$53,000 (+757.1%)</td>'
        in index
    )
    assert (
        '<td class="num bad" title="since 2026-09-30, rebuilt from the data">−$63,000 (−75.9%)</td>' in index
    )
    assert (
        '<td class="num bad" title="since 2026-09-30, rebuilt from the data (last month&#39;s figure for '
        'FY2026 Q4)">−$63,000 (−75.9%)</td>' in index
    )
    assert 'title="last month&#39;s value is of FY2026 Q3">—</td>' in index


def test_a_figure_the_data_cannot_rebuild_falls_back_to_the_earlier_report(tiny, tmp_path):
    h = _previous(tiny)
    summaries = tmp_path / "summaries"
    h.save(summaries / "pipeline_health.json")
    prev = {
        "period": "2026-09",
        "notebooks": [
            {
                "name": "pipeline_health",
                "figures": [
                    {"key": "no_next_step_deals", "value": 3, "unit": "count"},
                    {"key": "bookings_mtd", "value": 1.0, "unit": "currency"},  # the data wins
                ],
            }
        ],
    }
    params = report.RunParameters(tiny, "2026-10", "2026-10-31", "Tiny Co", "USD", "0" * 64, [])
    results = [report.JobResult("pipeline_health", "ok", 1.0, title="Pipeline health")]
    summary = report.build_summary(params, results, summaries, prev, 0.0, {})
    figs = {f["key"]: f for f in summary["notebooks"][0]["figures"]}
    assert figs["no_next_step_deals"]["change"]["source"] == "report"
    assert figs["no_next_step_deals"]["change"]["delta"] == figs["no_next_step_deals"]["value"] - 3
    assert figs["bookings_mtd"]["change"]["previous"] == 7000.0
    assert summary["previous_period"]["from_earlier_report"] >= 1
    assert "(the rest against the 2026-09 report)" in _unwrapped(report.render_index(summary))


def test_a_figure_without_last_months_value_says_why(tiny, tmp_path):
    h = _previous(tiny)
    h.add("quota_company_target", 1000.0, "FY2027 plan")  # a plan figure: only from the earlier report
    summaries = tmp_path / "summaries"
    h.save(summaries / "pipeline_health.json")
    params = report.RunParameters(tiny, "2026-10", "2026-10-31", "Tiny Co", "USD", "0" * 64, [])
    results = [report.JobResult("pipeline_health", "ok", 1.0, title="Pipeline health")]
    summary = report.build_summary(params, results, summaries, None, 0.0, {})
    rows = {r["key"]: r for r in report.figure_rows(summary, summary["notebooks"][0])}
    assert rows["quota_company_target"]["change"] == ""
    assert rows["quota_company_target"]["change_from"] == (
        "the data cannot rebuild last month's value; it needs last month's report"
    )
    assert rows["days_left_qtd"]["change_from"] == ""  # no change is meant to be shown
    index = _unwrapped(report.render_index(summary))
    assert (
        'title="the data cannot rebuild last month&#39;s value; it needs last month&#39;s report">—</td>'
        in index
    )


def test_a_quarters_figure_is_compared_with_last_months_figure_for_the_same_quarter():
    # the sample in November: on 2026-10-31 FY2027 Q3 closed (its coverage was not measured) and FY2027 Q4 was
    # the next quarter, with coverage 1.65
    cov = {"key": "coverage_qtd", "window": "FY2027 Q4", "unit": "ratio"}
    then = {"coverage_next_quarter": "FY2027 Q4", "open_in_qtd": "FY2027 Q3"}
    assert report.same_period_key(cov, {"coverage_next_quarter": 1.65}, then) == "coverage_next_quarter"
    # no figure named FY2027 Q4 then: nothing to compare with (not Q3's)
    opened = {"key": "open_in_qtd", "window": "FY2027 Q4", "unit": "currency"}
    assert report.same_period_key(opened, {"open_in_qtd": 318800.0}, then) is None
    # within the quarter, and for figures over other windows, the figure's own value then
    bookings = {"key": "bookings_qtd", "window": "FY2027 Q4 to 2026-12-31", "unit": "currency"}
    assert report.same_period_key(
        bookings, {"bookings_qtd": 1.0}, {"bookings_qtd": "FY2027 Q4 to 2026-11-30"}
    ) == ("bookings_qtd")
    mtd = {"key": "bookings_mtd", "window": "2026-11", "unit": "currency"}
    assert report.same_period_key(mtd, {"bookings_mtd": 1.0}, {"bookings_mtd": "2026-10"}) == "bookings_mtd"


def test_last_months_figures_alone_equal_those_of_a_full_pass(sample_dir):
    # figures_at measures the headline figures only: stalled and slipped deals counted where they live
    # (not listed), no coverage by rep; the figures are those of a full pass at that date
    import dataclasses

    ctx = open_report(str(sample_dir), notebook="pipeline_health", show_header=False)
    v = pv.prepare(ctx)
    before = previous_month_end(ctx.as_of)
    then = dataclasses.replace(ctx, as_of=before)
    full = pv.prepare(then, **v.args, reuse=v)
    alone = pv.prepare(then, **v.args, reuse=v, figures_only=True)
    assert full.figs["stalled_deals"].value > 0 and full.figs["slipped_deals_qtd"].value > 0
    assert alone.stalled is None and alone.slipped is None and alone.cov_rep is None
    assert full.cov_rep is not None
    assert repr(alone.figs) == repr(full.figs)
    assert repr(pv.figures_at(v, before)) == repr(full.figs)
    fixed = pv.prepare(then, **{**v.args, "stalled_days": 30}, reuse=v, figures_only=True)
    listed = pv.prepare(then, **{**v.args, "stalled_days": 30}, reuse=v)
    assert fixed.figs["stalled_deals"].value == len(listed.stalled) != full.figs["stalled_deals"].value


def test_last_months_win_loss_figures_alone_equal_those_of_the_full_review(sample_dir):
    # save_headlines reads last month's review for its figures only: the totals per dimension and the
    # reasons' cross tables are not asked, and the figures are those of the full review
    ctx = open_report(
        str(sample_dir), notebook="win_loss_review", show_header=False, tables=["churn", "reps"]
    )
    before = previous_month_end(ctx.as_of)
    full = wv.review(ctx, as_of=before)
    alone = wv.review(ctx, as_of=before, figures_only=True)
    assert full.by_dim and full.reasons_by_segment is not None and full.reasons_by_competitor is not None
    assert alone.by_dim == {} and alone.reasons_by_segment is None and alone.reasons_by_competitor is None
    keys = {f.key for f in full.headlines}
    assert {"top_loss_reason", "top_loss_reason_share", "lost_without_reason_share"} <= keys
    assert repr(alone.headlines) == repr(full.headlines)


def test_the_earlier_reports_figure_of_another_year_is_not_compared(tiny, tmp_path):
    h = _previous(tiny)
    h.add("quota_company_target", 1000.0, "FY2027 plan")  # only from the earlier report
    summaries = tmp_path / "summaries"
    h.save(summaries / "pipeline_health.json")
    params = report.RunParameters(tiny, "2026-10", "2026-10-31", "Tiny Co", "USD", "0" * 64, [])
    results = [report.JobResult("pipeline_health", "ok", 1.0, title="Pipeline health")]

    def target_then(window):
        fig = {"key": "quota_company_target", "value": 800.0, "unit": "currency", "window": window}
        prev = {"period": "2026-09", "notebooks": [{"name": "pipeline_health", "figures": [fig]}]}
        summary = report.build_summary(params, results, summaries, prev, 0.0, {})
        return next(f for f in summary["notebooks"][0]["figures"] if f["key"] == "quota_company_target")

    assert target_then("FY2027 plan")["change"]["delta"] == 200.0
    other = target_then("FY2026 plan")
    assert other["change"] is None and other["change_note"] == "the earlier report's value is of FY2026 plan"


def test_a_report_dated_before_the_export_reads_no_next_step_from_it(tiny, monkeypatch):
    # O1–O4 were open on 2026-09-30 and closed in October; the export leaves their next_step empty, as closed
    # deals' is. Read as it stood on 2026-09-30 that made four "no next step" deals out of five: next_step has no
    # history, so a report dated before the export leaves it (and last_activity_date) out and says so
    from helpers.metrics import pipeline as pl

    ctx = open_report(str(tiny), as_of="2026-09-30", notebook="pipeline_health", show_header=False)
    v = pv.prepare(ctx)
    assert v.sc.rewound and v.sc.as_exported == ["next_step"]  # the tiny export has no last_activity_date
    assert "next_step" not in v.sc.opps.columns
    assert sorted(v.sc.opps.loc[pl.is_open(v.sc.opps), "opportunity_id"]) == ["O1", "O2", "O3", "O4", "O6"]
    assert v.figs["no_next_step_deals"].value is None  # not measured, rather than 4
    said, tables = [], []
    monkeypatch.setattr(pv, "markdown", said.append)
    monkeypatch.setattr(pv, "note", lambda text, warn=False: said.append(text))
    monkeypatch.setattr(pv, "show_table", lambda df, **kw: tables.append(df))
    pv.show_deals_needing_attention(v)
    # none is past due, stalled or slipped then, and no activity is logged: no deal needs attention (O1–O4 were
    # listed, each for "no next step")
    assert tables[0].empty and "**No open deal needs attention.**" in said
    assert any(
        "`next_step` is as exported on 2026-10-31, not as on 2026-09-30: left out of this report (no no-next-step "
        "flag)" in t
        for t in said
    )
    # dated at the export: read as it is (O6 has "call": none without)
    now = pv.prepare(open_report(str(tiny), notebook="pipeline_health", show_header=False))
    assert now.sc.as_exported == [] and now.figs["no_next_step_deals"].value == 0
