"""Issue 12, acceptance: a dataset whose every text field holds hostile text — ``<script>``,
``<img onerror>``, ``[x](javascript:…)``, ``$\\frac{1}{$`` (chart mathtext), a spreadsheet formula, a
line break, a 5,000-character rep name, a rep id that climbs out of the output folder — goes through
the monthly pack, the review packs and the email (dry run) via the real commands. Every notebook is
published, every HTML page (and the email's HTML body) opens in headless Chromium with no dialog, no
script element, no ``on*`` handler and no ``javascript:`` URL, and shows the hostile text as text."""

from __future__ import annotations

import email
import email.policy
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml

sys.path.insert(0, str(Path(__file__).parent / "fixtures" / "notebooks"))
from packs import revops  # noqa: E402

from helpers.data import escape  # noqa: E402

pytestmark = pytest.mark.slow

PAYLOADS = [
    "<script>alert('s')</script>",
    "<img src=x onerror=alert('i')>",
    "[x](javascript:alert('m'))",
    "$\\frac{1}{$",
    '=HYPERLINK("http://example.com/x","c")',
    "line\nbreak",
]
LONG_NAME = "N" * 5000
MATH_NAME = "Pat $\\notacommand{x$ Smith"
EVIL_REP = "../../../trav_AE003"
TEXT_COLUMNS = {
    "opportunities": ["account", "segment", "region", "product", "source", "deal_type", "loss_reason",
                      "competitor", "next_step"],
    "reps": ["name", "team", "manager", "region"],
    "churn": ["account", "reason"],
    "leads": ["source"],
}  # fmt: skip
DATASET_NAME = "Acme [x](javascript:alert('n')) <b>bold</b> $\\frac{1}{$\n"


def write_hostile_dataset(folder: Path) -> Path:
    from helpers.data.sample import write_sample

    write_sample(folder, seed=7, as_of="2026-10-31", n_opportunities=1500, n_reps=12)
    for table, cols in TEXT_COLUMNS.items():
        path = folder / f"{table}.csv"
        df = pd.read_csv(path, dtype=str, keep_default_na=False)
        for c in cols:
            values = sorted(v for v in df[c].unique() if v)
            hostile = {v: f"{PAYLOADS[i % len(PAYLOADS)]} {v}" for i, v in enumerate(values)}
            df[c] = df[c].map(lambda v, h=hostile: h.get(v, v))
        if table == "reps":
            df.loc[df["rep_id"] == "AE001", "name"] = LONG_NAME
            df.loc[df["rep_id"] == "AE002", "name"] = MATH_NAME
        df.to_csv(path, index=False)
    for table in ("opportunities", "activities", "leads", "quotas", "reps"):
        path = folder / f"{table}.csv"
        df = pd.read_csv(path, dtype=str, keep_default_na=False)
        for c in ("owner", "rep_id"):
            if c in df:
                df[c] = df[c].replace({"AE003": EVIL_REP})
        df.to_csv(path, index=False)
    config = yaml.safe_load((folder / "dataset.yml").read_text())
    config["name"] = DATASET_NAME
    (folder / "dataset.yml").write_text(yaml.safe_dump(config))
    return folder


@pytest.fixture(scope="module")
def hostile_run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("hostile")
    ds = write_hostile_dataset(tmp / "ds")
    out = tmp / "out" / "reports"
    monthly = revops("report", "monthly", "--dataset", ds, "--period", "2026-10", "--out", out, "--jobs", "2")
    reps = ["AE001", "AE002", EVIL_REP]
    reviews = revops(
        "report",
        "reviews",
        "--dataset",
        ds,
        "--period",
        "2026-10",
        "--out",
        out,
        "--reps",
        *reps,
        "--jobs",
        "2",
    )
    mail = revops("email", "--period", "2026-10", "--to", "vp@example.com", "--reports", out)
    return tmp, out / "2026-10", monthly, reviews, mail


def test_every_notebook_is_published(hostile_run):
    tmp, period, monthly, reviews, mail = hostile_run
    assert monthly.returncode == 0, monthly.stderr
    assert reviews.returncode == 0, reviews.stderr
    assert mail.returncode == 0, mail.stderr
    for name in ("quota_setting", "pipeline_health", "win_loss_review"):
        assert (period / f"{name}.html").exists(), name
    packs = sorted(
        p.name for p in (period / "reviews").glob("*.html") if p.name != "index.html"
    )  # and the index
    assert packs == sorted(escape.filename(r, ".html") for r in ("AE001", "AE002", EVIL_REP))
    inside = tmp / "out" / "reports"
    assert all(inside in p.parents for p in (tmp / "out").rglob("*") if p.is_file())


def test_the_email_subject_is_one_line(hostile_run):
    *_, period, _, _, _ = hostile_run
    msg = email.message_from_bytes(
        (period / "leadership-email.eml").read_bytes(), policy=email.policy.default
    )
    assert "\n" not in msg["Subject"] and msg["Subject"].startswith(
        "Monthly sales report — 2026-10 (Acme [x]"
    )


def test_spreadsheet_files_carry_no_formula(hostile_run):
    *_, period, _, _, _ = hostile_run
    csvs = list(period.rglob("*.csv"))
    assert any(p.name == "win_loss_data_quality.csv" for p in csvs)
    import csv

    for path in csvs:
        with path.open(newline="", encoding="utf-8") as fh:
            for row in csv.reader(fh):
                for cell in row:  # a negative number is a number; text never starts a formula
                    if cell.startswith(escape.FORMULA_START):
                        assert _is_number(cell), (path.name, cell)


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


LIVE = """() => {
  const out = [];
  for (const e of document.querySelectorAll('*')) {
    for (const a of e.attributes) {
      const v = a.value.replace(/[\\s\\u0000-\\u001f]/g, '').toLowerCase();
      if (a.name.startsWith('on')) out.push(e.tagName + ' ' + a.name);
      if (['href', 'src', 'action', 'formaction', 'xlink:href'].includes(a.name)
          && (v.startsWith('javascript:') || v.startsWith('vbscript:'))) out.push(e.tagName + ' ' + a.name + '=' + a.value);
    }
  }
  return {live: out, scripts: document.querySelectorAll('script').length};
}"""


def _pages(period: Path, tmp: Path) -> list[Path]:
    msg = email.message_from_bytes(
        (period / "leadership-email.eml").read_bytes(), policy=email.policy.default
    )
    body = tmp / "email-body.html"
    body.write_text(msg.get_body(("html",)).get_content(), encoding="utf-8")
    return sorted(period.glob("*.html")) + sorted((period / "reviews").glob("*.html")) + [body]


def test_no_page_runs_hostile_text(hostile_run, browser):
    tmp, period, *_ = hostile_run
    pages = _pages(period, tmp)
    assert len(pages) == 4 + 4 + 1  # index + 3 reports, 3 review packs + their index, the email
    for path in pages:
        ctx = browser.new_context()
        page = ctx.new_page()
        dialogs = []
        page.on("dialog", lambda d, dialogs=dialogs: (dialogs.append(d.message), d.dismiss()))
        page.route(
            "**/*", lambda r: r.continue_() if r.request.url.startswith(("file:", "data:")) else r.abort()
        )
        page.goto(path.resolve().as_uri(), wait_until="load")
        for a in page.query_selector_all("a"):  # follow every link a reader could click
            href = a.get_attribute("href") or ""
            assert not href.strip().lower().startswith("javascript"), (path.name, href)
        found = page.evaluate(LIVE)
        text = page.text_content("body")
        ctx.close()
        assert dialogs == [], (path.name, dialogs)
        assert found == {"live": [], "scripts": 0}, (path.name, found)
        assert "Acme [x](javascript:alert('n')) <b>bold</b> $\\frac{1}{$" in text, path.name


def test_hostile_text_reads_as_written(hostile_run, browser):
    *_, period, _, _, _ = hostile_run
    ctx = browser.new_context()
    page = ctx.new_page()
    page.goto((period / "win_loss_review.html").resolve().as_uri())
    text = page.text_content("body")
    page.goto((period / "quota_setting.html").resolve().as_uri())
    quota_text = page.text_content("body")
    ctx.close()
    assert "Top loss reason: [x](javascript:alert('m')) No decision — 31% of lost deals" in text
    assert (
        "out of reach (P < 20%): line break Maria Tanaka, <script>alert('s')</script> Noah Khan;"
        in quota_text
    )
