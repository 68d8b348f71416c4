"""The monthly report run: execute, HTML export, the whole run through the real command, failure
handling, validation before any kernel, determinism. Hand-computed figures: tests/fixtures/notebooks/packs.py."""

from __future__ import annotations

import base64
import json
import re
import sys
from pathlib import Path

import nbformat
import psutil
import pytest
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook, new_output

sys.path.insert(0, str(Path(__file__).parent / "fixtures" / "notebooks"))
from packs import BOOKINGS, BROKEN, EXPECTED, monthly, write_tiny_dataset  # noqa: E402

from helpers.metrics import registry  # noqa: E402
from helpers.publish import report  # noqa: E402

# a 2×1 red PNG
PNG = base64.b64encode(
    bytes.fromhex(
        "89504e470d0a1a0a0000000d4948445200000002000000010802000000"
        "7b40e8dd0000000f49444154789c63f8cfc0f09f010006fe02fe0f1c4e4e0000000049454e44ae426082"
    )
).decode()


def _noisy_notebook():
    cells = [
        new_markdown_cell("# Pipeline — 2026-10\n\nWhat to look at: coverage."),
        new_code_cell("secret_code_text = 1", metadata={"tags": ["parameters"]}),
        new_code_cell(
            "print_me()",
            outputs=[
                new_output("stream", name="stderr", text="UserWarning: noisy\n"),
                new_output("stream", name="stdout", text="visible stdout\n"),
                new_output(
                    "display_data", data={"image/png": PNG, "text/plain": "<Figure size 640x480 with 1 Axes>"}
                ),
                new_output("display_data", data={"text/plain": "<Figure size 640x480 with 1 Axes>"}),
                new_output(
                    "display_data",
                    data={
                        "application/vnd.jupyter.widget-view+json": {"model_id": "x"},
                        "text/plain": "IntSlider(value=1)",
                    },
                ),
                new_output("display_data", data={"application/javascript": "alert(1)", "text/plain": "js"}),
            ],
        ),
        new_code_cell(
            "raise KeyError('boom')",
            outputs=[
                new_output(
                    "error",
                    ename="KeyError",
                    evalue="'boom'",
                    traceback=["Traceback (most recent call last)"],
                ),
            ],
        ),
        new_code_cell(
            "hidden_output()",
            metadata={"tags": ["remove-cell"]},
            outputs=[new_output("stream", name="stdout", text="REMOVED CELL OUTPUT\n")],
        ),
    ]
    nb = new_notebook(cells=cells)
    nb.metadata["widgets"] = {"application/vnd.jupyter.widget-state+json": {"state": {}}}
    return nb


def test_to_html_hides_code_noise_and_needs_no_network(tmp_path):
    out = report.to_html(_noisy_notebook(), tmp_path / "r.html", title="Pipeline health")
    html = out.read_text()
    assert "<title>Pipeline health</title>" in html
    for absent in (
        "secret_code_text",
        "print_me",
        "raise KeyError",
        "Traceback",
        "UserWarning",
        "noisy",
        "REMOVED CELL OUTPUT",
        "IntSlider",
        "<script",
        "alert(1)",
        "widget-state",
        "http://",
        "https://",
        "In&nbsp;[",
        "Out[",
        "&lt;Figure",
        "<Figure",
    ):
        assert absent not in html, absent
    assert f"data:image/png;base64,{PNG}" in html
    assert "visible stdout" in html and "What to look at" in html
    assert html.count("<img") == 1
    assert len(html.encode()) < 10_000  # the page frame: ~3 KB of CSS + the cells
    assert not list(tmp_path.glob(".*.tmp"))  # written atomically, no temp file left behind


def test_figure_change_and_format():
    # 7,000 → 60,000: +53,000, 53,000 / 7,000 = 7.5714 → "+$53,000 (+757.1%)"; more bookings is good news
    cur = {"key": "bookings_mtd", "value": 60000.0, "unit": "currency"}
    ch = report.figure_change(cur, {"value": 7000.0})
    assert ch == {
        "previous": 7000.0,
        "delta": 53000.0,
        "pct": pytest.approx(53000 / 7000),
        "source": "report",
    }
    assert report.fmt_change(cur, ch, "USD") == ("+$53,000 (+757.1%)", "good")
    # percent units: 0.6 − 0.2 = 0.4 → "−40.0 pts", no relative change; a falling win rate is bad news
    pct = {"key": "win_rate", "value": 0.2, "unit": "percent"}
    ch = report.figure_change(pct, {"value": 0.6})
    assert ch["pct"] is None and report.fmt_change(pct, ch, "USD") == ("−40.0 pts", "bad")
    # more stalled deals is bad news although the number went up; fewer is good news
    stalled = {"key": "stalled_deals", "value": 5, "unit": "count"}
    assert report.fmt_change(stalled, report.figure_change(stalled, {"value": 3}), "USD")[1] == "bad"
    assert report.fmt_change(stalled, report.figure_change(stalled, {"value": 8}), "USD")[1] == "good"
    # a figure whose direction the registry does not judge (open deals) is neutral
    deals = {"key": "open_deals", "value": 10, "unit": "count"}
    assert report.fmt_change(deals, report.figure_change(deals, {"value": 40}), "USD")[1] == "neutral"
    # one whose change the registry says means nothing (days left in the quarter) shows none
    days = {"key": "days_left_qtd", "value": 10, "unit": "days"}
    assert report.figure_change(days, {"value": 40}) is None
    # a points figure is a change already (win rate change): no change of a change
    pts = {"key": "win_rate_change", "value": 0.112, "unit": "points"}
    assert report.figure_change(pts, {"value": 0.089}) is None
    assert report.figure_change(cur, None) is None
    assert report.figure_change({"value": None, "unit": "count"}, {"value": 3}) is None


@pytest.mark.slow
def test_execute_failure_names_the_cell_and_keeps_the_partial_notebook(tmp_path):
    ds = write_tiny_dataset(tmp_path / "ds")
    out = tmp_path / "broken.ipynb"
    with pytest.raises(report.NotebookFailed) as info:
        report.execute(BROKEN, out, {"dataset": str(ds), "period": "2026-10"})
    err = info.value
    # source cells: parameters, open_report, raise → index 2 (as the author sees it in JupyterLab)
    assert (err.cell_index, err.ename, err.evalue) == (2, "ValueError", "deliberate failure for the test")
    assert "broken.ipynb failed at cell 2: ValueError: deliberate failure for the test" in str(err)
    assert 'in: raise ValueError("deliberate failure for the test")' in str(err)
    nb = nbformat.read(out, as_version=4)
    failing = [
        c for c in nb.cells if c.cell_type == "code" and any(o.output_type == "error" for o in c.outputs)
    ]
    assert [c.source for c in failing] == ['raise ValueError("deliberate failure for the test")']


def _figures(summary: dict, notebook: str = "bookings") -> dict:
    nb = next(n for n in summary["notebooks"] if n["name"] == notebook)
    return {f["key"]: f["value"] for f in nb["figures"]}


def _stable(summary: dict) -> dict:
    s = json.loads(json.dumps(summary))
    s.pop("timings"), s.pop("generated_at")
    for nb in s["notebooks"]:
        nb.pop("seconds"), nb.pop("engine_seconds")
    return s


@pytest.mark.slow
def test_monthly_run_end_to_end_through_the_command(tmp_path):
    from helpers.data.dataset import load

    ds = write_tiny_dataset(tmp_path / "ds")
    out = tmp_path / "reports"
    first = monthly(ds, out, "2026-09", BOOKINGS)
    assert first.returncode == 0, first.stderr
    run = monthly(ds, out, "2026-10", BOOKINGS)
    assert run.returncode == 0, run.stderr
    # progress line per notebook and the final table
    assert "bookings  done in" in run.stdout
    assert "notebook  status  seconds  output" in run.stdout and "bookings  ok" in run.stdout
    folder = out / "2026-10"
    assert sorted(p.name for p in folder.iterdir()) == [
        "bookings.html",
        "bookings.ipynb",
        "charts",
        "index.html",
        "summary.json",
    ]
    assert not list(out.glob(".*building*")) and not (out / "2026-10.failed").exists()
    summary = json.loads((folder / "summary.json").read_text())
    assert _figures(summary) == EXPECTED["2026-10"]
    assert _figures(json.loads((out / "2026-09" / "summary.json").read_text())) == EXPECTED["2026-09"]
    assert summary["parameters"] == {
        "dataset": str(ds.resolve()),
        "period": "2026-10",
        "as_of": "2026-10-31",
        "report_mode": True,
        "notebooks": ["bookings"],
        "given": {},
    }
    assert summary["dataset"]["fingerprint"] == {"algorithm": "sha256", "value": load(ds).fingerprint()}
    figs = {f["key"]: f for f in summary["notebooks"][0]["figures"]}
    assert all(f["definition"] for f in figs.values())
    # change since 2026-09: 60,000 − 7,000 = 53,000; 3 − 1 = 2 deals (+200%); 0.6 − 0.2 = 0.4
    assert figs["bookings_mtd"]["change"]["delta"] == 53000.0
    assert figs["won_deals"]["change"]["pct"] == pytest.approx(2.0)
    assert figs["win_rate"]["change"]["delta"] == pytest.approx(0.4)
    assert summary["previous_period"]["period"] == "2026-09"
    index = (folder / "index.html").read_text()
    for text in ('href="bookings.html"', "$60,000", "+$53,000 (+757.1%)", "+40.0 pts", "Deals won", "60.0%"):
        assert text in index, text
    html = (folder / "bookings.html").read_text()
    assert "Bookings check" in html and "$60,000" in html and "<script" not in html
    assert 5_000 < len(html.encode()) < 60_000
    assert (folder / "charts" / "bookings.png").read_bytes()[:4] == b"\x89PNG"
    # the executed notebook is kept for audit, with the parameters injected
    executed = nbformat.read(folder / "bookings.ipynb", as_version=4)
    assert "injected-parameters" in executed.cells[1].metadata.tags

    # same inputs and parameters → same numbers (everything but timings)
    again = monthly(ds, out, "2026-10", BOOKINGS)
    assert again.returncode == 0, again.stderr
    assert _stable(json.loads((folder / "summary.json").read_text())) == _stable(summary)


@pytest.mark.slow
def test_a_broken_notebook_fails_alone_and_the_earlier_good_report_survives(tmp_path):
    ds = write_tiny_dataset(tmp_path / "ds")
    out = tmp_path / "reports"
    good = monthly(ds, out, "2026-10", BOOKINGS)
    assert good.returncode == 0, good.stderr
    folder = out / "2026-10"
    before = {p.name: p.read_bytes() for p in folder.iterdir() if p.is_file()}
    (folder / "reviews").mkdir()  # another pack's output in the same period folder is none of our business

    run = monthly(ds, out, "2026-10", BOOKINGS, BROKEN)
    assert run.returncode == 1
    assert re.search(
        r"broken\s+FAILED after [\d.]+s — cell 2: ValueError: deliberate failure for the test", run.stdout
    )
    assert "FAILED broken at cell 2: ValueError: deliberate failure for the test" in run.stderr
    assert re.search(r"bookings\s+ok", run.stdout)
    # the earlier good report of 2026-10 is untouched
    assert {p.name: p.read_bytes() for p in folder.iterdir() if p.is_file()} == before
    assert (folder / "reviews").is_dir()
    # the partial run is kept for debugging: the other notebook's report and the failing notebook
    failed = out / "2026-10.failed"
    assert str(failed) in run.stderr
    assert (failed / "bookings.html").exists() and "$60,000" in (failed / "bookings.html").read_text()
    nb = nbformat.read(failed / "broken.ipynb", as_version=4)
    assert any(o.get("ename") == "ValueError" for c in nb.cells if c.cell_type == "code" for o in c.outputs)
    summary = json.loads((failed / "summary.json").read_text())
    status = {n["name"]: (n["status"], n["error"]) for n in summary["notebooks"]}
    assert status["bookings"] == ("ok", None)
    assert status["broken"] == (
        "failed",
        {"cell_index": 2, "ename": "ValueError", "evalue": "deliberate failure for the test"},
    )
    assert not list(out.glob(".*building*"))


@pytest.mark.parametrize(
    "args, message",
    [
        (["--period", "2026-13"], "period must look like 2026-10"),
        (["--period", "2026-10", "--as-of", "2026-11-03"], "outside the period 2026-10"),
        (["--period", "2026-11"], "starts after the data's as-of date 2026-10-31"),
        (["--period", "2025-01"], "before the first opportunity in the data"),
        (["--period", "2026-10", "--notebooks", "no_such_notebook"], "notebook 'no_such_notebook' not found"),
    ],
)
def test_parameters_are_validated_before_any_kernel_starts(tmp_path, args, message):
    from helpers.cli import main

    ds = write_tiny_dataset(tmp_path / "ds")
    out = tmp_path / "reports"
    nb = [] if "--notebooks" in args else ["--notebooks", str(BOOKINGS)]
    code = main(["report", "monthly", "--dataset", str(ds), "--out", str(out), *nb, *args])
    assert code == 2
    assert not out.exists()  # nothing was built, so no notebook ran
    # the kernels started alongside the checks are gone again
    # (only kernels count: a Spark JVM kept by an earlier engine test is a child of this process too)
    assert _kernels() == []


def _cmdline(p: psutil.Process) -> str:
    """A child's command line; '' for one that ended (a zombie not yet reaped, or gone) meanwhile."""
    try:
        return " ".join(p.cmdline())
    except (psutil.ZombieProcess, psutil.NoSuchProcess, psutil.AccessDenied):
        return ""


def _kernels() -> list[str]:
    return [c for c in map(_cmdline, psutil.Process().children(recursive=True)) if "ipykernel" in c]


def test_a_dataset_with_errors_is_refused_before_any_kernel(tmp_path, capsys):
    from helpers.cli import main

    ds = write_tiny_dataset(tmp_path / "ds")
    csv = ds / "opportunities.csv"
    csv.write_text(csv.read_text().replace("2026-10-05,Closed Won,12000", "2026-10-05,Closed Won,twelve"))
    code = main(
        [
            "report",
            "monthly",
            "--dataset",
            str(ds),
            "--out",
            str(tmp_path / "r"),
            "--period",
            "2026-10",
            "--notebooks",
            str(BOOKINGS),
        ]
    )
    err = capsys.readouterr().err
    assert code == 2 and "no notebook was started" in err and "row 1" in err and "'amount'" in err
    assert not (tmp_path / "r").exists()


def test_find_notebooks_keeps_pack_order_and_skips_the_whatif(tmp_path):
    for name in ("win_loss_review", "quota_whatif", "quota_setting"):
        (tmp_path / f"{name}.ipynb").write_text("{}")
    assert [p.stem for p in report.find_notebooks(folder=tmp_path)] == ["quota_setting", "win_loss_review"]


# --------------------------------------------------------------------------------------------------
# warm kernels: one kernel runs notebook after notebook
# --------------------------------------------------------------------------------------------------
def _nb(path: Path, *sources: str) -> Path:
    params = new_code_cell("tag = ''", metadata={"tags": ["parameters"]})
    path.parent.mkdir(parents=True, exist_ok=True)
    nb = new_notebook(cells=[params, *(new_code_cell(s) for s in sources)])
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, str(path))
    return path


def _printed(nb) -> str:
    return "".join(o.get("text", "") for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", []))


def test_a_warm_kernel_runs_notebooks_in_turn_with_an_empty_namespace(tmp_path):
    first = _nb(
        tmp_path / "a" / "first.ipynb",
        "import os, sys, json\nleftover = 41\nprint('pid', os.getpid())",
        "import matplotlib.pyplot as plt\nplt.rcParams['lines.linewidth'] = 9.5\nfig = plt.figure()",
    )
    second = _nb(
        tmp_path / "b" / "second.ipynb",
        # nothing imported yet in this notebook: what it sees comes from the kernel
        "print('leftover' in globals(), 'plt' in globals(), 'json' in dir())\n"
        "import os, sys\nprint('pid', os.getpid())\n"
        "print('cwd', os.getcwd())\n"
        "print('helpers.sections.context' in sys.modules, 'json' in sys.modules)\n"
        "import matplotlib.pyplot as plt\nprint('figures', len(plt.get_fignums()), plt.rcParams['lines.linewidth'])",
    )
    with report.WarmKernel() as kernel:
        out1 = _printed(report.execute(first, tmp_path / "out" / "first.ipynb", kernel=kernel))
        out2 = _printed(
            report.execute(second, tmp_path / "out" / "second.ipynb", {"tag": "x"}, kernel=kernel)
        )
    pid1 = re.search(r"pid (\d+)", out1).group(1)
    assert f"pid {pid1}" in out2  # the same process: started once
    assert "False False False" in out2  # the first notebook's names are gone
    assert f"cwd {tmp_path / 'b'}" in out2  # the second notebook's own folder
    assert "True True" in out2  # modules stay imported (helpers by the warm-up)
    assert "figures 0 1.5" in out2  # figures closed, matplotlib settings back (seaborn's default 1.5)
    nb2 = nbformat.read(tmp_path / "out" / "second.ipynb", as_version=4)
    assert [c.execution_count for c in nb2.cells if c.cell_type == "code"] == [1, 2, 3]


def test_report_kernels_keep_no_history_file(tmp_path):
    # kernels started side by side share IPython's history database; one of them then printed "Session/line
    # number was not unique in database. History logging moved to new session" into its notebook's first output
    nb = _nb(tmp_path / "h.ipynb", "print('history', get_ipython().history_manager.hist_file)")
    with report.WarmKernel(warm_imports="") as kernel:
        warm = _printed(report.execute(nb, tmp_path / "out" / "warm.ipynb", kernel=kernel))
    fresh = _printed(report.execute(nb, tmp_path / "out" / "fresh.ipynb"))  # a kernel of its own
    assert "history :memory:" in warm and "history :memory:" in fresh


def test_a_notebook_that_kills_its_kernel_fails_alone_and_the_next_gets_a_fresh_kernel(tmp_path):
    pid_file = tmp_path / "pid.txt"
    dies = _nb(
        tmp_path / "dies.ipynb",
        f"import os\nopen({str(pid_file)!r}, 'w').write(str(os.getpid()))",
        "os._exit(3)",
    )
    fine = _nb(tmp_path / "fine.ipynb", "import os\nprint('pid', os.getpid())")
    with report.WarmKernel() as kernel:
        with pytest.raises(report.NotebookFailed) as info:
            report.execute(dies, tmp_path / "out" / "dies.ipynb", kernel=kernel, timeout=60)
        out = _printed(report.execute(fine, tmp_path / "out" / "fine.ipynb", kernel=kernel))
    err = info.value
    assert (err.cell_index, err.ename, err.evalue) == (None, "DeadKernelError", "Kernel died")
    assert "dies.ipynb failed outside its cells: DeadKernelError: Kernel died" in str(err)
    assert re.search(r"pid (\d+)", out).group(1) != pid_file.read_text()  # a fresh kernel


def test_run_notebooks_on_one_kernel_isolates_a_failure(tmp_path):
    a = _nb(tmp_path / "a.ipynb", "import os\nx = 1\nprint('pid', os.getpid())")
    b = _nb(tmp_path / "b.ipynb", "y = 2\nraise KeyError('b breaks')")
    c = _nb(
        tmp_path / "c.ipynb", "import os\nprint('c sees', 'x' in globals() or 'y' in globals(), os.getpid())"
    )
    lines: list[str] = []
    jobs = [report.NotebookJob(p.stem, p) for p in (a, b, c)]
    # no warm-up imports (what the benchmark's trivial floor uses): still one kernel for all three
    results = report.run_notebooks(jobs, tmp_path / "out", jobs_n=1, progress=lines.append, warm_imports="")
    assert [r.status for r in results] == ["ok", "failed", "ok"]
    pid = re.search(r"pid (\d+)", _printed(nbformat.read(results[0].executed, as_version=4))).group(1)
    assert f"c sees False {pid}" in _printed(nbformat.read(results[2].executed, as_version=4))
    assert results[0].kernel_seconds > 0 and results[2].kernel_seconds == 0
    assert results[1].error.short == "cell 1: KeyError: 'b breaks'"
    assert all(r.html.exists() for r in (results[0], results[2]))
    assert any(re.search(r"\[2/3\] b\s+FAILED after", x) for x in lines)


def test_sections_are_numbered_in_order_and_carry_their_ids():
    page = (
        "<h2>Review: top 10 deals</h2><h2>1. Bookings against plan</h2><h3>By team</h3>"
        "<h2>4. Deals that need attention</h2><h2>6. Activity</h2><h3>By team</h3>"
    )
    assert report._section_ids(page) == (
        '<h2 id="review-top-10-deals">Review: top 10 deals</h2>'
        '<h2 id="bookings-against-plan">1. Bookings against plan</h2><h3 id="by-team">By team</h3>'
        '<h2 id="deals-that-need-attention">2. Deals that need attention</h2>'
        '<h2 id="activity">3. Activity</h2><h3>By team</h3>'
    )


def test_figures_the_data_cannot_give_are_named_with_their_quarter():
    # November: next quarter (FY2028 Q1) has no quotas yet, while this quarter's coverage is known
    nb = {
        "figures": [
            {"key": "coverage_qtd", "value": 1.83, "window": "FY2027 Q4"},
            {"key": "coverage_next_quarter", "value": None, "window": "FY2028 Q1"},
            {"key": "remaining_next_quarter", "value": None, "window": "FY2028 Q1"},
            {"key": "plan_ytd", "value": None, "window": "FY2027, full year"},
            {"key": "sales_velocity_30d", "value": None, "window": "30 days to 2026-11-30"},
        ]
    }
    assert report.unavailable(nb) == [
        "Coverage, Quota still to close (FY2028 Q1)",
        f"{registry.metric('plan_ytd').label} (FY2027)",
        registry.metric("sales_velocity_30d").label,
    ]
