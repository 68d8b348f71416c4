"""The what-if explorer as a standalone page: Voilà serves notebooks/quota_whatif.ipynb on 127.0.0.1,
headless Chromium (Debian's, driven by Playwright) moves the growth slider, and the numbers change; on a
390 px phone every control and its whole label are on the screen."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from test_quota import write_hand_dataset

ROOT = Path(__file__).resolve().parents[1]
from conftest import CHROMIUM, LAUNCH_ARGS, wait_for_panel, wait_for_port  # noqa: E402

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not Path(CHROMIUM).exists(), reason=f"{CHROMIUM} is absent: no browser to drive"),
]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def voila_args() -> list[str]:
    """The options `make whatif` gives Voilà (the Makefile's VOILA_ARGS), so the test serves the page as users get it."""
    (line,) = [ln for ln in (ROOT / "Makefile").read_text().splitlines() if ln.startswith("VOILA_ARGS :=")]
    return line.split(":=", 1)[1].split()


@pytest.fixture()
def voila(tmp_path):
    dataset = write_hand_dataset(tmp_path / "hand")
    port = free_port()
    env = {
        **os.environ,
        "REVOPS_DATASET": str(dataset),
        "JUPYTER_RUNTIME_DIR": str(tmp_path / "runtime"),
        "JUPYTER_DATA_DIR": str(tmp_path / "data"),
        "MPLCONFIGDIR": str(tmp_path / "mpl"),
    }
    log = open(tmp_path / "voila.log", "wb")  # (a failure's message ends with its end: wait_for_panel)
    proc = subprocess.Popen(
        [
            str(Path(sys.executable).parent / "voila"),
            str(ROOT / "notebooks" / "quota_whatif.ipynb"),
            *voila_args(),
            "--no-browser",
            "--Voila.ip=127.0.0.1",
            f"--port={port}",
        ],
        cwd=ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        wait_for_port(port, proc)
        yield f"http://127.0.0.1:{port}/"
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)
        log.close()


def card(page, label: str) -> str:
    return page.locator(f'.rv-whatif-summary [data-key="{label}"]').inner_text()


# every labelled control's box, its label's box and its slider's track, with the part of each that a clipping
# ancestor (overflow other than visible) or the screen leaves visible
CONTROLS_JS = """() => {
  const visible = (el) => {
    let r = el.getBoundingClientRect(), left = Math.max(r.left, 0), right = Math.min(r.right, window.innerWidth);
    for (let a = el.parentElement; a; a = a.parentElement) {
      if (getComputedStyle(a).overflowX !== 'visible') {
        const b = a.getBoundingClientRect(); left = Math.max(left, b.left); right = Math.min(right, b.right);
      }
    }
    return {width: r.width, shown: Math.max(0, right - left)};
  };
  return [...document.querySelectorAll('.widget-inline-hbox, .widget-checkbox')].map(c => {
    const label = [...c.querySelectorAll('label, .widget-label, .widget-label-basic')]
      .find(l => l.innerText.trim());
    const track = c.querySelector('.noUi-target, .slider-container');
    return {
      text: label ? label.innerText.trim() : '',
      label: label ? {...visible(label), cut: label.scrollWidth > label.clientWidth + 1} : null,
      control: visible(c),
      track: track ? visible(track) : null,
    };
  }).filter(c => c.text);
}"""


def test_moving_the_growth_slider_changes_the_target(voila, tmp_path):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=LAUNCH_ARGS)
        try:
            page = browser.new_page()
            # Voilà runs the notebook while the page streams in: wait for the panel, not for "load"
            # (generous limits: on a loaded 2-core machine a kernel start plus imports can take a minute)
            page.goto(voila, timeout=240_000, wait_until="commit")
            wait_for_panel(page, ".rv-whatif-summary", tmp_path / "voila.log")
            # hand dataset: FY2026 bookings 600k, growth 20% -> target 720k
            assert card(page, "quota_company_target") == "$720,000"
            before = card(page, "quota_sum_of_rep_quotas")
            handle = page.locator(".noUi-handle").first  # the first slider is growth
            handle.focus()
            page.keyboard.press("ArrowRight")  # +1 point of growth: 600k × 1.21 = 726k
            page.wait_for_function(
                "() => document.querySelector('.rv-whatif-summary [data-key=\"quota_company_target\"]')"
                ".innerText !== '$720,000'",
                timeout=30_000,
            )
            assert card(page, "quota_company_target") == "$726,000"
            after = card(page, "quota_sum_of_rep_quotas")
            assert after != before and re.match(r"^\$[\d,]+ \(\+15%\)$", after)

            # the same panel on a 390 px phone: every control, its whole label and a usable slider track in view
            phone = browser.new_page(viewport={"width": 390, "height": 844})
            phone.goto(voila, timeout=240_000, wait_until="commit")
            wait_for_panel(phone, ".rv-whatif-summary", tmp_path / "voila.log")
            controls = phone.evaluate(CONTROLS_JS)
            texts = [c["text"] for c in controls]
            assert {"Growth", "Over-assignment", "Target share at quota", "Hires in Q4"} <= set(texts), texts
            for c in controls:
                assert c["control"]["shown"] >= c["control"]["width"] - 4, c  # the whole control on screen
                assert not c["label"]["cut"] and c["label"]["shown"] >= c["label"]["width"] - 4, c
                if c["track"] is not None:
                    assert c["track"]["shown"] >= 100, c  # a slider a thumb can move
            assert phone.evaluate("document.documentElement.scrollWidth - window.innerWidth") <= 1
        finally:
            browser.close()
