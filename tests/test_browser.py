"""Every HTML file of a monthly run, opened in headless Chromium (Debian's, driven by Playwright) as a
reader would open an email attachment: no network, no console errors, every image decodes, no code,
no traceback or warning text, the headline figures of summary.json on the page, readable on a phone.

Screenshots go to ``$REVOPS_TEST_ARTIFACTS/browser`` when that variable is set, else under pytest's
tmp_path (the path is printed; run with ``-s`` to see it).
"""

from __future__ import annotations

import json
import os
import re
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent / "fixtures" / "notebooks"))
from packs import BOOKINGS, EXPECTED, monthly, write_tiny_dataset  # noqa: E402

from helpers.publish.report import figure_rows, find_notebooks  # noqa: E402

pytestmark = pytest.mark.slow

CODE_SELECTORS = ".jp-InputArea, .jp-InputPrompt, .input_area, .input_prompt, .prompt, .highlight, pre code"
NOISE = re.compile(r"Traceback|\w+Warning\b|Warning:|\bIn \[\d*\]:|\bOut\[\d+\]:")


@pytest.fixture(scope="module")
def shots(tmp_path_factory) -> Path:
    base = os.environ.get("REVOPS_TEST_ARTIFACTS")
    folder = Path(base) / "browser" if base else tmp_path_factory.mktemp("test-artifacts") / "browser"
    folder.mkdir(parents=True, exist_ok=True)
    print(f"\nscreenshots: {folder}")
    return folder


@pytest.fixture(scope="module")
def tiny_pack(tmp_path_factory) -> Path:
    """The tiny fixture pack for 2026-09 then 2026-10 (so index.html shows changes)."""
    tmp = tmp_path_factory.mktemp("tiny")
    ds = write_tiny_dataset(tmp / "ds")
    for period in ("2026-09", "2026-10"):
        run = monthly(ds, tmp / "reports", period, BOOKINGS)
        assert run.returncode == 0, run.stderr
    return tmp / "reports" / "2026-10"


def open_page(browser, path: Path, width: int = 1280, height: int = 900):
    """Open ``path`` with every non-file request refused and recorded; returns (context, page, log)."""
    log = {"requests": [], "console": [], "pageerrors": []}
    ctx = browser.new_context(viewport={"width": width, "height": height})
    page = ctx.new_page()

    def route(r):
        url = r.request.url
        if url.startswith(("file://", "data:")):
            r.continue_()
        else:
            log["requests"].append(url)
            r.abort()

    page.route("**/*", route)
    page.on("console", lambda m: m.type == "error" and log["console"].append(m.text))
    page.on("pageerror", lambda e: log["pageerrors"].append(str(e)))
    page.goto(path.resolve().as_uri(), wait_until="load")
    return ctx, page, log


def check_page(
    browser,
    path: Path,
    expected_values: list[str],
    shots: Path,
    prefix: str,
    figures: dict[str, str] | None = None,
) -> dict:
    """All the reader-facing checks on one HTML file; returns facts for extra assertions.

    ``expected_values``: formatted figures that must all appear in the page text. ``figures``
    (label → formatted value): every KPI card on the page with one of these labels must show that
    value, and at least one must be shown."""
    ctx, page, log = open_page(browser, path)
    try:
        imgs = page.eval_on_selector_all("img", "els => els.map(e => [e.complete, e.naturalWidth])")
        text = page.inner_text("body")
        facts = {
            "images": imgs,
            "code_nodes": page.locator(CODE_SELECTORS).count(),
            "scripts": page.locator("script").count(),
            "text": text,
            "all_text": page.text_content("body"),  # includes figures folded in <details>
            "title": page.title(),
            "cards": page.eval_on_selector_all(
                ".rv-card",
                "els => els.map(e => [e.querySelector('.l')?.innerText.trim(),"
                " e.querySelector('.v')?.innerText.trim()])",
            ),
        }
        page.screenshot(path=str(shots / f"{prefix}-{path.stem}.png"), full_page=True)
    finally:
        ctx.close()
    assert log["requests"] == [], f"{path.name} attempted network requests: {log['requests']}"
    assert log["console"] == [] and log["pageerrors"] == [], f"{path.name}: {log}"
    assert all(done and w > 0 for done, w in facts["images"]), (
        f"{path.name}: undecoded image {facts['images']}"
    )
    assert facts["code_nodes"] == 0 and facts["scripts"] == 0, path.name
    noise = NOISE.search(facts["text"])
    assert noise is None, f"{path.name} shows {noise.group(0)!r}"
    missing = [v for v in expected_values if v not in facts["all_text"]]
    assert not missing, f"{path.name} does not show headline figures {missing}"
    if figures is not None:
        shown = [(label, value) for label, value in facts["cards"] if label in figures]
        assert shown, f"{path.name} shows none of its headline figures {sorted(figures)} as cards"
        wrong = [(label, value, figures[label]) for label, value in shown if value != figures[label]]
        assert not wrong, f"{path.name}: cards differ from summary.json (label, page, summary): {wrong}"
    # phone: the page itself never scrolls sideways (wide tables scroll inside their own box)
    ctx, page, _ = open_page(browser, path, 390, 844)
    try:
        overflow = page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
        page.screenshot(path=str(shots / f"{prefix}-{path.stem}-phone.png"), full_page=False)
    finally:
        ctx.close()
    assert overflow <= 1, f"{path.name} is {overflow}px wider than a phone screen"
    return facts


def check_pack(browser, folder: Path, shots: Path, prefix: str) -> dict:
    summary = json.loads((folder / "summary.json").read_text())
    pages = {}
    all_values = []
    for nb in summary["notebooks"]:
        rows = figure_rows(summary, nb)
        all_values += [r["value"] for r in rows]
        pages[nb["html"]] = check_page(
            browser, folder / nb["html"], [], shots, prefix, figures={r["label"]: r["value"] for r in rows}
        )
    index = check_page(browser, folder / "index.html", all_values, shots, prefix)
    html_files = sorted(p.name for p in folder.glob("*.html"))
    assert html_files == sorted([*pages, "index.html"])  # every HTML file was opened
    return {"summary": summary, "pages": pages, "index": index}


def test_tiny_pack_reads_well_offline(browser, tiny_pack, shots):
    res = check_pack(browser, tiny_pack, shots, "tiny")
    page = res["pages"]["bookings.html"]
    assert len(page["images"]) == 1 and page["title"] == "Bookings check — 2026-10"
    # by hand (tests/fixtures/notebooks/packs.py): 60,000 won in 3 deals, 60% win rate, +53,000 on 2026-09
    assert EXPECTED["2026-10"] == {"bookings_mtd": 60000.0, "won_deals": 3, "win_rate": 0.6}
    for text in ("$60,000", "60.0%", "+$53,000 (+757.1%)", "+2 (+200.0%)", "+40.0 pts"):
        assert text in res["index"]["text"], text
    assert "stderr line" not in page["text"] and "SECRET-REMOVED-CELL" not in page["text"]
    assert page["cards"] == [
        ["Bookings, 2026-10", "$60,000"],
        ["Deals won, 2026-10", "3"],
        ["Win rate (count), 2026-10", "60.0%"],
    ]


def test_real_pack_reads_well_offline(browser, shots, sample_dir, tmp_path):
    """The real notebooks (whichever exist) on the shared sample, through the real command."""
    if not find_notebooks():
        pytest.skip("no report notebooks in notebooks/ yet")
    run = monthly(sample_dir, tmp_path / "reports", "2026-10")
    assert run.returncode == 0, run.stdout + run.stderr
    res = check_pack(browser, tmp_path / "reports" / "2026-10", shots, "sample")
    summary = res["summary"]
    assert [n["name"] for n in summary["notebooks"]] == [
        p.stem for p in find_notebooks()
    ]  # quota_whatif skipped
    for nb in summary["notebooks"]:
        assert nb["status"] == "ok" and nb["figures"], nb["name"]
        assert all(f["definition"] for f in nb["figures"]), nb["name"]
    for name, page in res["pages"].items():
        assert page["images"], f"{name} has no chart"
        assert "2026-10" in page["title"] or "2026-10" in page["text"][:400], name
