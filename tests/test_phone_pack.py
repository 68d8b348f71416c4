"""The sample pack on a phone and in the mail (issue 15, items 6 and 7).

The real sample (``revops sample-data`` defaults: ~4,000 deals, 30 reps) goes through the real command: the
monthly pack, two review packs and the leadership email. Headless Chromium (Debian's) opens every page at
390 × 844 and checks, with every folded section opened:

- every table, scrolled to its far right, still shows its first column (what the row is) on the screen, next
  to its last column;
- every chart is at least 360 px wide and its smallest text at least ``plots.MIN_TEXT_PX`` (10) CSS px. The
  measure: text px in the PNG (recorded when the chart was drawn, ``data-text-px``; the theme's tick labels
  for a chart without it) × displayed width ÷ the PNG's width. Before: 13.9 × 370 ÷ 864 = 6.0 px;
- dates and periods (2026-10-31, 2026-10, 2026-W44, FY2027 Q3), in tables and in the text, sit on one line.

Screenshots (390 px, whole pages) go to ``$REVOPS_TEST_ARTIFACTS/phone`` when that variable is set.
"""

from __future__ import annotations

import io
import math
import os
import re
import sys
import zipfile
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent / "fixtures" / "notebooks"))
from packs import monthly, revops  # noqa: E402

from helpers.publish import mail  # noqa: E402
from helpers.sections import plots  # noqa: E402

PHONE = {"width": 390, "height": 844}
THEME_TICK_PX = 10.45 * 96 / 72  # the theme's tick labels (plots.apply_theme): 13.9 px in a chart's PNG
DATE_OR_PERIOD = r"\b(\d{4}-\d{2}(-\d{2})?|\d{4}-W\d{2}|FY\d{4} Q\d)\b"

# facts of one page at phone width, every <details> opened
PHONE_FACTS = """(datePattern) => {
  document.querySelectorAll('details').forEach(d => d.open = true);
  const W = window.innerWidth, dateRe = new RegExp(datePattern, 'g');
  const scroller = (el) => {
    for (let e = el.parentElement; e && e !== document.body; e = e.parentElement)
      if (e.scrollWidth > e.clientWidth + 1 && getComputedStyle(e).overflowX !== 'visible') return e;
    return null;
  };
  const tables = [];
  for (const t of document.querySelectorAll('table')) {
    const rows = [...t.rows].filter(r => r.cells.length > 1);
    if (!rows.length) continue;
    const box = scroller(t);
    if (box) box.scrollLeft = box.scrollWidth;  // the far right: the last column in view
    const firsts = rows.map(r => r.cells[0].getBoundingClientRect());
    const lasts = rows.map(r => r.cells[r.cells.length - 1].getBoundingClientRect());
    tables.push({
      head: rows[0].cells[0].innerText.trim().slice(0, 40),
      scrolls: !!box,
      first_left: Math.min(...firsts.map(r => r.left)),
      first_right: Math.max(...firsts.map(r => r.right)),
      last_right: Math.max(...lasts.map(r => r.right)),
    });
    if (box) box.scrollLeft = 0;
  }
  const broken = [];  // a date or period whose characters sit on more than one line
  const walker = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
  for (let n = walker.nextNode(); n; n = walker.nextNode()) {
    for (const m of n.data.matchAll(dateRe)) {
      const range = document.createRange();
      range.setStart(n, m.index);
      range.setEnd(n, m.index + m[0].length);
      const tops = new Set([...range.getClientRects()].filter(r => r.width > 0).map(r => Math.round(r.top)));
      if (tops.size > 1) broken.push(m[0]);
    }
  }
  const charts = [...document.querySelectorAll('.output_png img')].map(i => ({
    alt: i.alt, width: i.getBoundingClientRect().width, natural: i.naturalWidth,
    text_px: i.dataset.textPx ? parseFloat(i.dataset.textPx) : null,
  }));
  return {overflow: document.documentElement.scrollWidth - W, width: W, tables, broken, charts};
}"""


def phone_problems(browser, path: Path, shot: Path | None = None) -> tuple[list[str], dict]:
    """What a 390 px reader of ``path`` cannot read (empty: nothing), and the page's facts."""
    ctx = browser.new_context(viewport=PHONE)
    try:
        page = ctx.new_page()
        page.goto(path.resolve().as_uri(), wait_until="load")
        if shot is not None:
            page.screenshot(path=str(shot), full_page=True)
        facts = page.evaluate(PHONE_FACTS, DATE_OR_PERIOD)
    finally:
        ctx.close()
    w = facts["width"]
    problems = []
    if facts["overflow"] > 1:
        problems.append(f"the page is {facts['overflow']} px wider than the screen")
    for t in facts["tables"]:
        if t["first_left"] < -1 or t["first_right"] > w + 1:
            problems.append(f"table {t['head']!r}: its first column is off-screen ({t['first_left']:.0f} px)")
        if t["last_right"] > w + 1:
            problems.append(f"table {t['head']!r}: its last column cannot be brought on screen")
    if facts["broken"]:
        problems.append(f"dates broken across lines: {sorted(set(facts['broken']))[:5]}")
    for c in facts["charts"]:
        if c["width"] < 360:
            problems.append(f"chart {c['alt']!r} is {c['width']:.0f} px wide")
        # a chart drawn without plots.finish carries no measure: its tick labels are the theme's, at most
        shown = (c["text_px"] or THEME_TICK_PX) * c["width"] / c["natural"]
        if shown < plots.MIN_TEXT_PX:
            problems.append(f"chart {c['alt']!r}: its smallest text is {shown:.1f} CSS px")
    return problems, facts


@pytest.fixture(scope="module")
def sample_pack(tmp_path_factory) -> Path:
    """The default sample's pack for 2026-10, two review packs and the leadership email (dry run)."""
    from helpers.data.sample import write_sample

    tmp = tmp_path_factory.mktemp("phone-pack")
    ds = write_sample(tmp / "sample", as_of="2026-10-31")
    out = tmp / "reports"
    run = monthly(ds, out, "2026-10")
    assert run.returncode == 0, run.stdout + run.stderr
    run = revops(
        "report", "reviews", "--dataset", ds, "--period", "2026-10", "--out", out, "--reps", "AE001", "AE002"
    )
    assert run.returncode == 0, run.stdout + run.stderr
    run = revops("email", "--period", "2026-10", "--to", "vp@example.com", "--reports", out)
    assert run.returncode == 0, run.stdout + run.stderr
    return out / "2026-10"


@pytest.mark.slow
def test_every_page_of_the_sample_pack_reads_on_a_phone(sample_pack, browser):
    base = os.environ.get("REVOPS_TEST_ARTIFACTS")
    shots = Path(base) / "phone" if base else None
    if shots:
        shots.mkdir(parents=True, exist_ok=True)
    pages = sorted(sample_pack.glob("*.html")) + sorted((sample_pack / "reviews").glob("*.html"))
    assert len(pages) == 4 + 3  # index + 3 reports; the review index + 2 packs
    n_tables = n_charts = 0
    for path in pages:
        rel = path.relative_to(sample_pack)
        shot = shots / f"{str(rel).replace('/', '-')[:-5]}-390.png" if shots else None
        problems, facts = phone_problems(browser, path, shot)
        assert not problems, (str(rel), problems)
        n_tables += len(facts["tables"])
        n_charts += len(facts["charts"])
        # the recorded measure is no larger than the tick labels every chart has
        assert all(c["text_px"] <= THEME_TICK_PX + 0.01 for c in facts["charts"]), rel
    assert n_tables > 80 and n_charts > 20  # every table and chart of the pack was looked at


@pytest.mark.slow
def test_the_sample_pack_email_is_within_its_budget(sample_pack):
    import email
    import email.policy

    eml = (sample_pack / mail.EML_NAME).read_bytes()
    assert len(eml) <= mail.MAX_EML_BYTES, f"{len(eml) / 1000:.0f} KB"  # it was 744 KB (three HTMLs as is)
    msg = email.message_from_bytes(eml, policy=email.policy.default)
    (att,) = msg.iter_attachments()
    assert att.get_filename() == "2026-10-reports.zip"
    with zipfile.ZipFile(io.BytesIO(att.get_payload(decode=True))) as z:
        names = z.namelist()
        for name in ("quota_setting", "pipeline_health", "win_loss_review"):
            assert z.read(f"2026-10/{name}.html") == (sample_pack / f"{name}.html").read_bytes()
        # the full lists the reports say are beside them travel with them
        assert "2026-10/files/pipeline_health/deals_needing_attention.csv" in names
    related = msg.get_body(("related",))
    assert len([p for p in related.iter_parts() if p.get_content_maintype() == "image"]) == 3


def test_a_chart_records_its_smallest_text_and_readable_width():
    """By hand: a 9 × 4.2 inch chart at 96 dpi is 864 px wide; the theme's 10.45-pt tick labels are
    10.45 × 96 / 72 = 13.93 px, so 10 CSS px needs 864 × 10 / 13.93 = 621 px. A 6-pt note is 8 px: 1,080 px."""
    import matplotlib

    matplotlib.use("Agg")
    plots.apply_theme()
    fig, ax = plots.new_figure()
    ax.plot([1, 2, 3], [3, 1, 2])
    ax.set_title("Title")
    fig.tight_layout()
    meta = plots.image_metadata(fig, "Chart: test")
    assert meta == {"alt": "Chart: test", "text_px": 13.93, "readable_width": 621}
    ax.annotate("small note", (1, 1), fontsize=6)
    assert plots.image_metadata(fig, "x")["text_px"] == 8.0
    assert plots.image_metadata(fig, "x")["readable_width"] == math.ceil(864 * 10 / 8)
    import matplotlib.pyplot as plt

    plt.close(fig)


def test_tables_mark_dates_and_free_text():
    """Dates and periods as the reports write them never break (.date); a column with a cell longer than
    WRAP_CHARS is free text that may wrap on a phone (.text); figures are .num."""
    import pandas as pd

    from helpers.sections.display import WRAP_CHARS, table_html

    df = pd.DataFrame(
        {
            "period": ["2026-10", "FY2027 Q3", "2026-W44", "FY2027", "YTD"],
            "close": pd.to_datetime(["2026-01-02", None, "2026-03-04", "2026-03-05", "2026-03-06"]),
            "flags": ["past due; stalled; no next step; no recent activity", "", "x", "y", "z"],
            "name": ["a" * WRAP_CHARS, "b", "c", "d", "e"],
            "amount": [1, 2, 3, 4, 5],
        }
    )
    body = table_html(df, money=["amount"]).split("<tbody>")[1]
    rows = [re.findall(r"<td([^>]*)>([^<]*)</td>", r) for r in body.split("</tr>")[:-1]]
    assert [r[0] for r in rows] == [
        (' class="date"', "2026-10"),
        (' class="date"', "FY2027 Q3"),
        (' class="date"', "2026-W44"),
        (' class="date"', "FY2027"),
        ("", "YTD"),
    ]
    assert rows[0][1] == (' class="date"', "2026-01-02") and rows[1][1] == ("", "")
    assert {r[2][0] for r in rows} == {' class="text"'}  # the whole column, short cells too
    assert {r[3][0] for r in rows} == {""}  # exactly WRAP_CHARS long: not free text
    assert rows[0][4] == (' class="num"', "$1")


def test_dates_in_the_text_of_a_page_are_kept_whole():
    """Text dates get a nowrap span; tags, attributes and style / title text stay as written."""
    from helpers.publish.report import keep_dates_whole

    page = (
        "<!DOCTYPE html><html><head><title>Report 2026-10</title><style>a > b {c: 1}</style></head>"
        '<body><p title="as of 2026-10-31">as of 2026-10-31, FY2027 Q3 and 2026-W44; id 12026-10 in 2026-10-reports.zip</p>'
        '<img src="data:image/png;base64,AAAA" alt="2026-10"></body></html>'
    )
    assert keep_dates_whole(page) == (
        "<!DOCTYPE html><html><head><title>Report 2026-10</title><style>a > b {c: 1}</style></head>"
        '<body><p title="as of 2026-10-31">as of <span class="nowrap">2026-10-31</span>, '
        '<span class="nowrap">FY2027 Q3</span> and <span class="nowrap">2026-W44</span>; id 12026-10 in 2026-10-reports.zip</p>'
        '<img src="data:image/png;base64,AAAA" alt="2026-10"></body></html>'
    )
