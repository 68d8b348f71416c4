"""One-to-one review packs: what changed since last week and the pre-filled questions, on the hand-built
dataset of test_pipeline.py (see its docstring for each deal's story)."""

from __future__ import annotations

from types import SimpleNamespace

import movement_reference as mv
import pandas as pd
from test_pipeline import make_config, make_history, make_opps

from helpers.publish import reviews
from helpers.sections import review_pack

T = pd.Timestamp


def changes_between(before: str, now: str) -> list[tuple[str, str, str]]:
    opps, hist, cfg = make_opps(), make_history(), make_config()
    s = mv.replay(hist, opps, cfg, [before, now])
    ch = review_pack.deal_changes(s[s["snapshot_date"] == T(before)], s[s["snapshot_date"] == T(now)], cfg)
    return list(ch[["opportunity_id", "change", "detail"]].itertuples(index=False, name=None))


def test_changes_last_week_won_slipped_pulled_in_dropped():
    # 10-08 -> 10-15: O7 won 10-14; O1 close 10-25 -> 11-15 (+21 d); O4 close 2027-01-20 -> 12-15 (-36 d);
    # O6 lost 10-09. O2 was already won at the end of 10-08, O3/O5/O10 did not change.
    assert changes_between("2026-10-08", "2026-10-15") == [
        ("O7", "won", "won at 10"),
        ("O1", "slipped", "close 2026-10-25 → 2026-11-15 (+21 d)"),
        ("O4", "pulled in", "close 2027-01-20 → 2026-12-15 (-36 d)"),
        ("O6", "dropped", "lost (was Prospecting)"),
    ]


def test_changes_new_and_advanced():
    # 10-01 -> 10-08: O3 (10-03) and O7 (10-05) are new; O1 Proposal -> Negotiation (10-05) with amount
    # 80 -> 100; O2 won 10-08 at 45; O5 close 11-30 -> 2027-02-28 (+90 d)
    got = changes_between("2026-10-01", "2026-10-08")
    assert got == [
        ("O3", "new", "created in Prospecting"),
        ("O7", "new", "created in Proposal"),
        ("O1", "advanced", "Proposal → Negotiation"),
        ("O2", "won", "won at 45"),
        ("O5", "slipped", "close 2026-11-30 → 2027-02-28 (+90 d)"),
        ("O1", "amount changed", "80 → 100"),
    ]


def test_changes_without_history():
    ch = review_pack.changes_without_history(make_opps(), "2026-10-15")
    # 10-09..10-15: O7 won 10-14, O6 lost 10-09; nothing created
    assert sorted(ch[["opportunity_id", "change"]].itertuples(index=False, name=None)) == [
        ("O6", "dropped"),
        ("O7", "won"),
    ]
    assert ch.set_index("opportunity_id").loc["O7", "close_date"] == pd.Timestamp("2026-10-14")
    # a rep whose working set is empty (no open deal, nothing this week): an empty list, not an error
    # (pandas 3's Series.map raised on the empty date column)
    none = review_pack.changes_without_history(make_opps().iloc[0:0], "2026-10-15")
    assert none.empty and list(none.columns)[-3:] == ["stage", "amount", "close_date"]


def test_questions_prefilled_from_crm_fields_and_blank_otherwise():
    opps = make_opps()
    opps["close_plan"] = pd.Series([None] * len(opps), dtype="str")
    opps.loc[opps["opportunity_id"] == "O1", "close_plan"] = "Legal sign-off by 11-10"
    opps["competitor"] = pd.Series([None] * len(opps), dtype="str")
    opps.loc[opps["opportunity_id"] == "O4", "competitor"] = "Globex"
    acts = pd.DataFrame(
        {
            "activity_id": ["a1", "a2", "a3", "a4"],
            "owner": ["r1"] * 4,
            "type": ["call", "call", "meeting", "call"],
            "occurred_at": pd.to_datetime(["2026-10-01", "2026-10-10", "2026-10-14", "2026-08-01"]),
            "opportunity_id": ["O1", "O1", "O1", "O1"],
        }
    )
    deals = opps[opps["opportunity_id"].isin(["O1", "O3", "O4"])]
    q = review_pack.review_questions(deals, opps, acts, "2026-10-15")
    got = {(r.opportunity_id, r.question): r.from_crm for r in q.itertuples()}
    assert got[("O1", "Next step")] == "Exec meeting"
    assert got[("O1", "What has to happen to close")] == "close plan: Legal sign-off by 11-10"
    assert got[("O4", "Obstacles")] == "competitor: Globex"
    assert got[("O3", "Next step")] == "" and got[("O3", "Who is engaged")] == ""
    # the 08-01 call is older than 30 days
    engaged = q[(q["opportunity_id"] == "O1") & (q["question"] == "Who is engaged")]["recent_activity"].iloc[
        0
    ]
    assert engaged == "2 calls, 1 meeting (last 2026-10-14)"
    html = review_pack.questions_html(deals, q)
    assert html.count("not in the CRM — ask") == 12 - 4  # 3 deals × 4 questions, 4 answered
    assert "Notes for the meeting" in html


def test_review_reps_are_active_account_executives_with_deals():
    reps = pd.DataFrame(
        {
            "rep_id": ["r1", "r2", "r3", "s1"],
            "role": ["AE", "AE", "AE", "SDR"],
            "end_date": pd.to_datetime([None, "2026-09-30", None, None]),
        }
    )
    ds = SimpleNamespace(tables={"opportunities": make_opps(), "reps": reps})
    # r2 left on 09-30; s1 is an SDR (and owns no deals)
    assert reviews.review_reps(ds, "2026-10-15") == ["r1", "r3"]
    assert reviews.review_reps(ds, "2026-10-15", ["r2"]) == ["r2"]


def test_the_reviews_index_shows_the_coverage_the_pipeline_report_leads_with(tmp_path):
    import json
    import re

    def text(page):  # the page's text, without tags and their attributes (the headers' definitions)
        return re.sub(r"<[^>]+>", "", page)

    def summary(rep, days_left, cov_q, cov_next):
        figs = [
            {"key": "days_left_qtd", "value": days_left, "unit": "days", "window": "FY2027 Q4"},
            {"key": "coverage_qtd", "value": cov_q, "unit": "ratio", "window": "FY2027 Q4"},
            {"key": "coverage_next_quarter", "value": cov_next, "unit": "ratio", "window": "FY2028 Q1"},
        ]
        (tmp_path / f"{rep}.json").write_text(json.dumps({"figures": figs}))

    ds = SimpleNamespace(
        tables={"reps": pd.DataFrame({"rep_id": ["r1"], "name": ["Ann"], "team": ["East"]})},
        config=SimpleNamespace(currency="USD"),
    )
    params = SimpleNamespace(period="2026-11", as_of=T("2026-11-30"), dataset_name="d")
    results = [SimpleNamespace(name="r1", ok=True, html="r1.html")]
    # two months left in the quarter (and no quotas for the next yet): this quarter's coverage
    summary("r1", 62, 1.83, None)
    page = text(reviews.reviews_index(ds, params, results, tmp_path))
    assert "Coverage, FY2027 Q4" in page and "1.83×" in page and "FY2028 Q1" not in page
    # five days left: the next quarter's
    summary("r1", 5, 1.2, 3.4)
    page = text(reviews.reviews_index(ds, params, results, tmp_path))
    assert "Coverage, FY2028 Q1" in page and "3.40×" in page and "1.20×" not in page
