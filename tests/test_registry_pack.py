"""Every figure a reader sees in the monthly pack comes from the metric registry.

The real pack (the three report notebooks through papermill) runs on the session's sample dataset for two
months, so the second has changes. Then every figure in summary.json, every row of index.html and every
line of the leadership email is walked: its key is a registry entry, and the label, unit and definition
shown are the registry's (label rendered with the figure's window, base and the run's parameters).
"""

from __future__ import annotations

import html
import re
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent / "fixtures" / "notebooks"))
from packs import monthly  # noqa: E402

from helpers.metrics import registry  # noqa: E402
from helpers.publish import mail  # noqa: E402
from helpers.publish.report import figure_rows  # noqa: E402

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def pack(sample_dir, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("registry-pack")
    for period in ("2026-09", "2026-10"):
        run = monthly(sample_dir, out, period)
        assert run.returncode == 0, run.stdout + run.stderr
    return out / "2026-10"


def test_every_summary_figure_is_the_registrys(pack):
    summary = mail.read_summary(pack / "summary.json")
    seen = set()
    for nb in summary["notebooks"]:
        assert nb["status"] == "ok", nb
        for f in nb["figures"]:
            m = registry.metric(f["key"])  # KeyError: not in the registry
            assert f["unit"] == m.unit, f["key"]
            assert f["label"] == m.render_label(f.get("window"), f.get("base"), f.get("params")), f["key"]
            assert f["definition"] == m.render_definition(f.get("params")), f["key"]
            seen.add(f["key"])
    # the pack shows figures of every section of the registry
    assert {registry.metric(k).section for k in seen} == {"quota", "pipeline", "activity", "winloss"}
    assert len(seen) > 80


def _unwrapped(page: str) -> str:
    """``page`` without the spans that keep dates on one line (report.keep_dates_whole)."""
    return re.sub(r'<span class="nowrap"[^>]*>([^<]*)</span>', r"\1", page)


def test_index_and_email_show_the_registrys_labels_and_definitions(pack):
    summary = mail.read_summary(pack / "summary.json")
    expected = {f["key"]: f for nb in summary["notebooks"] for f in nb["figures"]}
    index = _unwrapped((pack / "index.html").read_text(encoding="utf-8"))
    rows = re.findall(r'<tr data-key="([^"]+)"(?: class="fig")?><td title="([^"]*)">([^<]*)</td>', index)
    shown = {k for k, f in expected.items() if f["value"] is not None}
    assert {k for k, _, _ in rows} == shown  # a figure the data cannot give is named once, not shown as n/a
    for f in expected.values():
        if f["value"] is None:
            name = registry.metric(f["key"]).render_label(params=f.get("params"))
            assert "Not available for this data" in index and name in html.unescape(index), f["key"]
    for key, title, label in rows:
        f = expected[key]
        m = registry.metric(key)
        assert html.unescape(label) == m.render_label(f.get("window"), f.get("base"), f.get("params"))
        assert html.unescape(title) == m.render_definition(f.get("params"))
    # the definitions list at the foot of the index
    plain = html.unescape(index)
    for f in expected.values():
        if f["value"] is not None:
            assert f"<strong>{f['label']}</strong>" in plain, f["key"]
    msg = mail.build_message(pack, ["vp@example.com"])
    text = msg.get_body(("plain",)).get_content()
    body = html.unescape(_unwrapped(msg.get_body(("html",)).get_content()))
    shown = 0
    for nb in summary["notebooks"]:
        for r in figure_rows(summary, nb):
            if f"  {r['label']}: {r['value']}" in text:
                shown += 1
                assert r["label"] in body
                f = expected[r["key"]]
                assert r["label"] == registry.metric(r["key"]).render_label(
                    f.get("window"), f.get("base"), f.get("params")
                )
    assert shown >= 6  # the email carries each report's leading figures


def test_labels_name_window_and_base_and_the_change_its_noise(pack):
    summary = mail.read_summary(pack / "summary.json")
    f = {x["key"]: x for nb in summary["notebooks"] for x in nb["figures"]}
    closed = f["closed_deals"]["value"]
    assert f["win_rate"]["label"] == f"Win rate (count), 2026-10 — {closed:,} closed"
    assert f["win_rate_count_12m"]["label"].startswith("Win rate (count), 12 months to 2026-10-31 — ")
    assert f["win_rate_change"]["label"].startswith("Win rate change, 2026-10 vs 2026-09 — ")
    assert re.search(r"— (within the noise|a real shift)", f["win_rate_change"]["label"])
    assert f["bookings_ytd"]["label"] == "Bookings, FY2027 to 2026-10-31"
    assert f["plan_ytd"]["label"] == "Plan, FY2027, full year"


def test_last_months_figures_rebuilt_from_the_data_are_last_months_report(pack):
    """The 2026-10 pack measures its figures again at 2026-09-30 from the data; for every figure the registry
    says the data rebuilds, that value is the one the 2026-09 report (as of 2026-09-30) published."""
    now = mail.read_summary(pack / "summary.json")
    before = mail.read_summary(pack.parent / "2026-09" / "summary.json")
    assert now["previous_period"]["as_of"] == "2026-09-30"
    published = {(nb["name"], f["key"]): f["value"] for nb in before["notebooks"] for f in nb["figures"]}
    compared = 0
    for nb in now["notebooks"]:
        for f in nb["figures"]:
            ch = f.get("change")
            if ch and ch["source"] == "data":
                assert ch["previous"] == pytest.approx(published[(nb["name"], f["key"])]), f["key"]
                compared += 1
            elif ch:
                assert not registry.metric(f["key"]).rebuilt(has_history=True), f["key"]
    assert compared > 40


def test_the_index_shows_five_points_each_linking_to_its_section(pack):
    index = (pack / "index.html").read_text(encoding="utf-8")
    block = index[index.index('<section class="look-at"') :]
    block = block[: block.index("</section>")]
    links = re.findall(r'<li class="is-(bad|watch|info)">.*?<a href="([^"#]+)#([^"]+)">', block)
    assert len(links) == 5, block
    for _, page, anchor in links:
        assert f'id="{anchor}"' in (pack / page).read_text(encoding="utf-8"), (page, anchor)
    levels = [lv for lv, _, _ in links]
    assert levels == sorted(levels, key=["bad", "watch", "info"].index)  # bad news first
    assert len({page for _, page, _ in links}) >= 2  # from across the reports


def test_the_what_if_explorer_prints_the_quota_reports_figures(pack, sample_dir):
    """The explorer (quota_whatif.ipynb, as `make whatif` serves it) draws the same simulated years as the quota
    report, so its readout prints the report's figures digit for digit (the issue found 28% / 12 / $7,939,671
    against 28.7% / 11 / $7,998,285: 1,000 draws against 2,000)."""
    from helpers.data.dataset import load
    from helpers.publish.report import NOTEBOOK_DIR, declared_parameters
    from helpers.sections import whatif as wi
    from helpers.sections.display import fmt_money, fmt_pct

    explorer = declared_parameters(NOTEBOOK_DIR / "quota_whatif.ipynb")
    quota = declared_parameters(NOTEBOOK_DIR / "quota_setting.ipynb")
    for name in ("n_draws", "seed", "fiscal_year"):
        assert explorer[name]["default"] == quota[name]["default"], name
    ds = load(sample_dir)
    data = wi.prepare_plan_data(
        ds, None, None, int(explorer["n_draws"]["default"]), int(explorer["seed"]["default"])
    )
    shown = wi.summary_html(wi.WhatIfPanel(data, show_details=False).result, ds.config.currency)
    f = {x["key"]: x for nb in mail.read_summary(pack / "summary.json")["notebooks"] for x in nb["figures"]}
    assert f"{fmt_pct(f['quota_expected_share_at_quota']['value'])} — not realistic" in shown
    assert (
        f">{f['quota_reps_out_of_reach']['value']} (too easy: {f['quota_reps_too_easy']['value']})<" in shown
    )
    assert f"({fmt_money(f['quota_level_total']['value'], 'USD')})" in shown
    assert fmt_money(f["quota_company_target"]["value"], "USD") in shown


def test_the_first_screen_answers_the_four_questions(pack, browser):
    """At 1280 × 900 the index opens on the four answers, each with its figures; pipeline health fits in 12
    screens; at 390 px the answers stack and stay within the screen's width."""
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    page.goto((pack / "index.html").as_uri())
    boxes = page.eval_on_selector_all(
        ".exec .answer",
        "els => els.map(e => {const r = e.getBoundingClientRect(); return {bottom: r.bottom, text: e.innerText}})",
    )
    questions = [
        "Will we make the number?",
        "Is the pipeline enough?",
        "Are the quotas realistic?",
        "Why do we win and lose?",
    ]
    assert len(boxes) == 4
    for box, q in zip(boxes, questions, strict=True):
        assert q in box["text"]
        assert box["bottom"] <= 900, (q, box["bottom"])  # on the first screen
        assert re.search(r"\$[\d.,]+[kMB]?|\d+(\.\d)?%|\d\.\d\d×", box["text"]), box["text"]
    health = browser.new_page(viewport={"width": 1280, "height": 900})
    health.goto((pack / "pipeline_health.html").as_uri())
    assert health.evaluate("document.body.scrollHeight") <= 12 * 900  # at most 12 screens
    phone = browser.new_page(viewport={"width": 390, "height": 844})
    phone.goto((pack / "index.html").as_uri())
    widths = phone.eval_on_selector_all(
        ".exec .answer", "els => els.map(e => e.getBoundingClientRect().right)"
    )
    assert len(widths) == 4 and max(widths) <= 390


def _reader_text(page: str) -> str:
    """What a reader sees or a screen reader reads: the page without style and script blocks."""
    return re.sub(r"<style.*?</style>|<script.*?</script>", "", page, flags=re.S)


READER_DEFECTS = {
    "a literal ** (Markdown that did not render)": r"\*\*",
    "a True/False cell": r"<td[^>]*>\s*(True|False)\s*</td>",
    "a docs/ path": r"\bdocs/",
    "a Python file name": r"\b\w+\.py\b",
    "a revops command": r"\brevops (validate|report|import|bench|email)\b",
    "a module name": r"\bhelpers\.\w",
    "an absolute path": r"(/tmp/|/home/|/root/|/work/|[A-Z]:\\\\)",
    "a default alt text": r"No description has been provided",
    "a fiscal start as a month number": r"starts in month \d",
    "an empty Explore heading": r"<h[1-3][^>]*>\s*Explore\s*</h",
    "days with decimals": r"\b\d+\.\d+ days\b",
    "a missing number written as nan": r"\b(nan|NaN)\b",
    "a count of one with a plural noun": r"\(1 rows\)|\b1 (rows|deals|reps|days)\b",
}


def _table_defects(page: str) -> list[str]:
    """Cells a reader should not see in a table: days with decimals ("6.0" under "Median days"), a rate per
    unit as a percentage ("opportunities per meeting 110.1%")."""
    found = []
    for table in re.findall(r"<table.*?</table>", page, flags=re.S):
        heads = [
            html.unescape(re.sub(r"<[^>]+>", "", h)).strip()
            for h in re.findall(r"<th[^>]*>(.*?)</th>", table, flags=re.S)
        ]
        for row in re.findall(r"<tr[^>]*>(.*?)</tr>", table, flags=re.S):
            cells = [
                html.unescape(re.sub(r"<[^>]+>", "", c)).strip()
                for c in re.findall(r"<td[^>]*>(.*?)</td>", row, flags=re.S)
            ]
            if len(cells) != len(heads):
                continue
            for head, cell in zip(heads, cells, strict=True):
                if re.search(r"(^|[ (])days([ )]|$)", head, re.I) and re.fullmatch(r"-?[\d,]+\.\d+", cell):
                    found.append(f"days with decimals: {head} = {cell}")
                if re.search(r"\bper (meeting|call|deal|opportunity)\b", head, re.I) and cell.endswith("%"):
                    found.append(f"a rate per unit as a percentage: {head} = {cell}")
    return found


def _reader_text(page: str) -> str:
    """What a reader sees or a screen reader reads: the page without style and script blocks."""
    return re.sub(r"<style.*?</style>|<script.*?</script>", "", page, flags=re.S)


def test_reports_and_email_carry_no_reader_facing_defects(pack, sample_dir):
    pages = {p.name: _reader_text(p.read_text(encoding="utf-8")) for p in pack.glob("*.html")}
    msg = mail.build_message(pack, ["vp@example.com"])
    pages["email (html)"] = _reader_text(msg.get_body(("html",)).get_content())
    pages["email (text)"] = msg.get_body(("plain",)).get_content()
    assert len(pages) == 6
    found = []
    for name, text in pages.items():
        for what, pattern in READER_DEFECTS.items():
            for m in re.finditer(pattern, text):
                found.append(
                    f"{name}: {what}: …{html.unescape(text[max(0, m.start() - 60) : m.end() + 40])}…"
                )
        assert str(sample_dir) not in text, name
        found += [f"{name}: {d}" for d in _table_defects(text)]
    assert not found, "\n".join(found[:20])
    # every chart says what it shows
    for name, text in pages.items():
        for alt in re.findall(r'<img[^>]*\balt="([^"]*)"', text):
            assert len(alt) >= 12 and alt != "No description has been provided for this image", (name, alt)


def test_the_email_carries_one_chart_per_report_and_the_configured_sender(pack):
    msg = mail.build_message(
        pack, ["vp@example.com"], mail.sender_address({"REVOPS_SMTP_FROM": "sales-ops@acme.io"})
    )
    assert msg["From"] == "sales-ops@acme.io"
    related = msg.get_body(("related",))
    images = [p for p in related.iter_parts() if p.get_content_maintype() == "image"]
    assert len(images) == 3  # quota setting, pipeline health, win/loss: one key chart each
    assert mail.sender_address({"REVOPS_MAIL_FROM": "old@acme.io"}) == "old@acme.io"  # the earlier name
    assert mail.smtp_settings({"REVOPS_SMTP_HOST": "h", "REVOPS_SMTP_FROM": "a@b.c"}).sender == "a@b.c"


def test_the_monthly_index_links_the_review_packs(pack, sample_dir):
    from helpers.publish import reviews

    assert 'href="reviews/index.html"' not in (pack / "index.html").read_text(encoding="utf-8")
    ds_reps = reviews.review_reps(reviews_load(sample_dir), "2026-10-31")
    code, target, _ = reviews.run_reviews(
        sample_dir, "2026-10", None, pack.parent, ds_reps[:1], 1, progress=None
    )
    assert code == 0 and (target / "index.html").exists()
    index = (pack / "index.html").read_text(encoding="utf-8")
    assert 'href="reviews/index.html"' in index and "one-to-one review packs" in index
    assert "Will we make the number?" in index  # the same pack, rewritten with the link


def reviews_load(folder):
    from helpers.data.dataset import load

    return load(folder)
