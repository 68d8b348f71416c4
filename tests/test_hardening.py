"""Hostile text, broken files, leaked secrets and interrupted runs (issue 12): each test names the item
it covers. The whole pipeline on a hostile dataset, in Chromium: tests/test_hostile_pack.py."""

from __future__ import annotations

import csv
import html
import io
import json
import re

import pandas as pd
import pytest

from helpers.data import escape

PAYLOADS = [
    "[decision](javascript:alert(1))",
    "<script>alert('s')</script>",
    "<img src=x onerror=alert(2)>",
    "$\\frac{1}{$",
    "Pat $\\notacommand{x$ Smith",
    "**bold** _it_ `code` # 1. - + ! | ~ &amp; \\",
    "<javascript:alert(3)>",
    "www.example.com http://example.com",
]


def _render(markdown_text: str) -> str:
    """HTML of Markdown as the reports render it (nbconvert's Markdown renderer)."""
    from nbconvert.filters.markdown_mistune import markdown2html_mistune

    return markdown2html_mistune(markdown_text)


def _text_of(html_text: str) -> str:
    import html as h
    import re

    assert not re.search(r"<(?!/?(p|ul|li|strong)>)", html_text), html_text  # only the markup we wrote
    return h.unescape(re.sub(r"<[^>]+>", "", html_text)).strip()


# -- item 1: Markdown ------------------------------------------------------------------------------
@pytest.mark.parametrize("payload", PAYLOADS)
def test_item1_markdown_escape_renders_data_text_literally(payload):
    assert _text_of(_render("- " + escape.markdown(payload))) == payload


def test_item1_markdown_escape_keeps_data_on_one_line():
    out = _render("Top: " + escape.markdown("a\n# heading\n- item"))
    assert "<h1" not in out and "<li" not in out
    assert _text_of(out) == "Top: a # heading - item"


def test_item1_dollars_escape_is_idempotent_over_escaped_data():
    name = escape.markdown("Pat $x$ \\")
    text = f"Sum $1.2M to $3M for {name}$5"
    once = escape.dollars(text)
    assert escape.dollars(once) == once
    assert _text_of(_render(once)) == "Sum $1.2M to $3M for Pat $x$ \\$5"


def test_item1_winloss_top_loss_reason_is_no_link():
    from helpers.metrics import winloss as wl

    reason = "[decision](javascript:alert(1))"
    overall = pd.DataFrame([{"deals": 10, "win_rate": 0.5, "ci_low": 0.2, "ci_high": 0.8}])
    reasons = pd.DataFrame([{"reason": reason, "deals": 4, "share": 0.8, "cum_share": 0.8}])
    by_dim = {
        "segment": pd.DataFrame(
            [{"group": "<b>[x](javascript:y)</b>", "deals": 50, "win_rate": 0.99, "ci_low": 0.9, "ci_high": 1.0,
              "groups_pooled": 1}]
        )
    }  # fmt: skip
    points = wl.what_to_look_at(overall, {}, by_dim, reasons, pd.DataFrame(), 5)
    html_text = _render("\n".join(f"- {p}" for p in points))
    assert "href" not in html_text and "<b>" not in html_text
    text = _text_of(html_text)
    assert f"Top loss reason: {reason} — 80%" in text
    assert "Segment <b>[x](javascript:y)</b> wins" in text


def test_item1_whatif_rep_names_out_of_reach_are_text():
    from types import SimpleNamespace

    from helpers.sections import whatif as wi

    name = "[Pat](javascript:alert(1)) $\\x$"
    res = SimpleNamespace(
        inputs=SimpleNamespace(
            growth_rate=0.1, realistic_band=(0.7, 0.8), target_share=0.75, out_of_reach=0.2, too_easy=0.95,
            ote_multiple_min=4, ote_multiple_max=6,
        ),
        target_source="target", fiscal_year=2027, target=1e6, sum_of_quotas=1.1e6, reps=pd.DataFrame(
            {"ote_flag": ["ok"]}
        ), realistic=True, expected_share=0.75, quota_level=1.0, quota_level_total=1e6,
        out_of_reach=[name], too_easy=[],
    )  # fmt: skip
    html_text = _render("\n".join(f"- {p}" for p in wi.points(res, "USD")))
    assert "href" not in html_text
    assert f"out of reach (P < 20%): {name}; 0 too easy" in _text_of(html_text)


# -- item 1: email header --------------------------------------------------------------------------
def test_item1_header_is_one_bounded_line():
    assert escape.header("Acme\nCorp\r\n\tBcc: x@y.z\x00") == "Acme Corp Bcc: x@y.z"
    long = escape.header("N" * 5000)
    assert len(long) == 200 and long.endswith("…")


# -- item 4: spreadsheet formulas ------------------------------------------------------------------
def test_item4_csv_cells_that_would_run_as_formulas_are_text():
    df = pd.DataFrame(
        {
            "account": ['=HYPERLINK("http://x","c")', "+1+1", "-2+3", "@SUM(A1)", "\tx", "\rx", "Acme", None],
            "amount": [-5.0, 1, 2, 3, 4, 5, 6, 7],
            "date": pd.to_datetime(["2026-01-01"] * 8),
        }
    )
    rows = list(csv.reader(io.StringIO(escape.to_csv(df), newline="")))
    assert [r[0] for r in rows[1:]] == [
        "'=HYPERLINK(\"http://x\",\"c\")", "'+1+1", "'-2+3", "'@SUM(A1)", "'\tx", "'\rx", "Acme", "",
    ]  # fmt: skip
    assert rows[1][1] == "-5.0" and rows[1][2] == "2026-01-01"  # numbers and dates untouched
    assert df["account"].iloc[0].startswith("=")  # the caller's frame is not changed


def test_item4_proposed_quotas_csv_is_neutralised(tmp_path):
    from helpers.metrics import quota as Q

    df = pd.DataFrame(
        {"rep_id": ["=cmd|'/c calc'!A1", "AE1"], "period_start": ["2027-02-01"] * 2, "quota": [1.0, 2.0],
         "period_end": ["2027-02-28"] * 2, "metric": ["bookings"] * 2}
    )  # fmt: skip
    path = Q.write_quotas(df, tmp_path)
    rows = list(csv.reader(path.open()))
    assert rows[1][0] == "'=cmd|'/c calc'!A1" and rows[2][0] == "AE1"


# -- item 5: chart text ----------------------------------------------------------------------------
def test_item5_chart_text_is_drawn_literally(tmp_path):
    import matplotlib

    matplotlib.use("Agg")
    from helpers.sections import plots

    plots.apply_theme()
    fig, ax = plots.new_figure()
    names = ["Pat $\\notacommand{x$ Smith", "$\\frac{1}{$", "a \\ b $5 to $6"]
    ax.bar(names, [1, 2, 3])
    ax.set_title("$\\frac{1}{$ title")
    fig.savefig(tmp_path / "chart.png")  # mathtext would raise ValueError (ParseFatalException)
    assert [t.get_text() for t in ax.get_xticklabels()] == names


# -- item 2: file names from rep ids ---------------------------------------------------------------
def test_item2_filename_is_a_plain_name_or_slug_and_hash():
    assert escape.filename("AE001", ".html") == "AE001.html"
    names = {
        escape.filename(x) for x in ("../../../trav_AE003", "trav_AE003", "..", "", ".hidden", "a/b", "a_b")
    }
    assert len(names) == 7
    for n in names:
        assert "/" not in n and "\\" not in n and not n.startswith((".", "-")) and n
    assert escape.filename("../../../trav_AE003").startswith("trav_AE003-")


def _files_under(folder):
    return {p for p in folder.rglob("*") if p.is_file()}


@pytest.mark.slow
def test_item2_review_pack_of_a_hostile_rep_id_stays_in_the_output_folder(tmp_path):
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).parent / "fixtures" / "notebooks"))
    from packs import revops, write_tiny_dataset

    ds = write_tiny_dataset(tmp_path / "ds")
    opp = ds / "opportunities.csv"
    opp.write_text(opp.read_text().replace(",ana,", ",../../../trav_ana,"))
    out = tmp_path / "a" / "b" / "c" / "reports"
    before = _files_under(tmp_path)
    # named on the command line, then picked up from the data
    for extra in (["--reps", "../../../trav_ana"], []):
        run = revops("report", "reviews", "--dataset", ds, "--period", "2026-10", "--out", out, *extra)
        assert run.returncode == 0, run.stderr
        new = _files_under(tmp_path) - before
        assert new and all(out in p.parents for p in new), sorted(map(str, new))
        packs = sorted(p.name for p in (out / "2026-10" / "reviews").iterdir())
        assert escape.filename("../../../trav_ana", ".html") in packs
        assert not list(out.rglob("*.json")) and not list(out.rglob("*.ipynb"))
    assert "trav_ana-" in escape.filename("../../../trav_ana")


# -- item 3: credentials in database URLs ----------------------------------------------------------
SECRETS = ["S3cret-q-9137", "P@ss:w%40rd-Secret-6262", "sslpw-4471"]
HOSTILE_URLS = [
    "postgresql://bob@127.0.0.1:{port}/crm?password=S3cret-q-9137&sslmode=disable",
    "postgresql://bob:P@ss:w%40rd-Secret-6262@127.0.0.1:{port}/crm",
    "postgresql+psycopg://bob:{{REVOPS_T12_PW}}@127.0.0.1:{port}/crm?sslpassword=sslpw-4471",
]


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("postgresql://bob@h:5/crm?password=S3cret&sslmode=disable", "postgresql://bob@h:5/crm?password=***&sslmode=disable"),
        ("postgresql://bob:P@ss:w%40rd@h:5/crm", "postgresql://bob:***@h:5/crm"),
        ("postgresql://:pw@h/db", "postgresql://:***@h/db"),
        ("postgresql:///db?host=/tmp&user=x&PassWord=y%40z&sslpassword=k", "postgresql:///db?host=/tmp&user=x&PassWord=***&sslpassword=***"),
        ("mysql+pymysql://u:p%3Aw@h/d?charset=utf8", "mysql+pymysql://u:***@h/d?charset=utf8"),
        ("{'url': 'postgresql://u:pw@h/db', 'tabel': 'x'}", "{'url': 'postgresql://u:***@h/db', 'tabel': 'x'}"),
        ("host=h password='a b\\' c' user=x", "host=h password=*** user=x"),
        ("duckdb:///crm.duckdb", "duckdb:///crm.duckdb"),
    ],
)  # fmt: skip
def test_item3_every_credential_form_of_a_url_is_masked(url, shown):
    from helpers.data.sources import public_url

    assert public_url(url) == shown


def test_item3_secret_values_are_masked_also_percent_encoded():
    from helpers.data.sources import redact

    assert redact("failed: Secr%40t and Secr@t", {"Secr@t"}) == "failed: *** and ***"


def test_item3_validate_and_report_never_print_a_password(tmp_path):
    import socket
    import sys
    from pathlib import Path

    import yaml

    sys.path.insert(0, str(Path(__file__).parent / "fixtures" / "notebooks"))
    from packs import revops, write_tiny_dataset

    with socket.socket() as s:  # a port nothing listens on: each connection is refused at once
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    ds = write_tiny_dataset(tmp_path / "ds")
    cfg = yaml.safe_load((ds / "dataset.yml").read_text())
    tables = ["opportunities", "reps", "quotas"]
    cfg["tables"] = {
        t: {"url": u.format(port=port), "table": t} for t, u in zip(tables, HOSTILE_URLS, strict=True)
    }
    (ds / "dataset.yml").write_text(yaml.safe_dump(cfg))
    env = {"REVOPS_T12_PW": "env-Secret-5521"}
    for args in (["validate", ds], ["report", "monthly", "--dataset", ds, "--out", tmp_path / "out"]):
        run = revops(*args, env=env)
        out = run.stdout + run.stderr
        assert run.returncode != 0 and "could not connect to PostgreSQL" in out, out
        assert "***" in out and "?password=***" in out and f"bob:***@127.0.0.1:{port}" in out, out
        for secret in [*SECRETS, "env-Secret-5521", "rd-Secret", "Secret-6262"]:
            assert secret not in out, (secret, out)
    written = [p for p in tmp_path.rglob("*") if p.is_file() and p.name != "dataset.yml"]
    assert not [p for p in written if any(s.encode() in p.read_bytes() for s in SECRETS)]


# -- item 6 of the issue: email edge cases ---------------------------------------------------------
def _minimal_pack(root, name: str):
    """reports/2026-10/summary.json as a finished monthly run writes it, with no notebook."""
    import json

    period = root / "2026-10"
    period.mkdir(parents=True)
    summary = {
        "period": "2026-10",
        "as_of": "2026-10-31",
        "dataset": {
            "name": name,
            "currency": "USD",
            "fingerprint": {"algorithm": "sha256", "value": "0" * 64},
        },
        "previous_period": None,
        "notebooks": [],
    }
    (period / "summary.json").write_text(json.dumps(summary))
    return root


def _email(*args, env=None):
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).parent / "fixtures" / "notebooks"))
    from packs import revops

    clean = {
        k: ""
        for k in ("REVOPS_SMTP_USER", "REVOPS_SMTP_PASSWORD", "REVOPS_SMTP_SECURITY", "REVOPS_SMTP_PORT")
    }
    return revops(
        "email", "--period", "2026-10", "--to", "vp@example.com", *args, env={**clean, **(env or {})}
    )


def test_item6_dataset_name_with_a_newline_makes_a_one_line_subject(tmp_path):
    import email
    import email.policy

    reports = _minimal_pack(tmp_path / "reports", "Acme Corp\n")  # a YAML "name: >" block
    run = _email("--reports", reports)
    assert run.returncode == 0, run.stderr
    msg = email.message_from_bytes(
        (reports / "2026-10" / "leadership-email.eml").read_bytes(), policy=email.policy.default
    )
    assert msg["Subject"] == "Monthly sales report — 2026-10 (Acme Corp)"


@pytest.mark.parametrize(
    ("env", "error"),
    [
        ({"REVOPS_SMTP_PASSWORD": "pw-1234"}, "REVOPS_SMTP_PASSWORD is set but REVOPS_SMTP_USER is not"),
        ({"REVOPS_SMTP_USER": "u", "REVOPS_SMTP_PASSWORD": "pw-1234", "REVOPS_SMTP_SECURITY": "none"},
         "REVOPS_SMTP_SECURITY=none would send REVOPS_SMTP_PASSWORD unencrypted"),
        ({"REVOPS_SMTP_HOST": "smtp..example.com"}, "REVOPS_SMTP_HOST must be a host name or IP address"),
        ({"REVOPS_SMTP_HOST": "smtp.example.com:587"}, "(put the port in REVOPS_SMTP_PORT)"),
        ({"REVOPS_SMTP_HOST": "bad host\n"}, "REVOPS_SMTP_HOST must be a host name"),
        ({"REVOPS_SMTP_PORT": "70000"}, "REVOPS_SMTP_PORT must be between 1 and 65535"),
    ],
)  # fmt: skip
def test_item6_smtp_settings_problems_are_one_line_errors(tmp_path, env, error):
    reports = _minimal_pack(tmp_path / "reports", "Acme")
    full = {"REVOPS_SMTP_HOST": "127.0.0.1", "REVOPS_MAIL_FROM": "revops@example.com", **env}
    run = _email("--reports", reports, "--send", env=full)
    assert run.returncode == 2 and error in run.stderr, run.stderr
    assert "Traceback" not in run.stderr and len(run.stderr.strip().splitlines()) == 1
    assert "pw-1234" not in run.stdout + run.stderr


def test_item6_plaintext_password_and_non_ascii_password_through_a_real_server(tmp_path):
    import socket

    from aiosmtpd.controller import Controller
    from aiosmtpd.smtp import AuthResult, LoginPassword

    password, user = "pässwörd-Ünïcode-9", "revops-bot"
    seen = []

    class Sink:
        async def handle_DATA(self, server, session, envelope):
            seen.append(envelope)
            return "250 OK"

    def authenticator(server, session, envelope, mechanism, auth_data):
        ok = isinstance(auth_data, LoginPassword) and (auth_data.login, auth_data.password) == (
            user.encode(),
            password.encode(),
        )
        return AuthResult(success=ok, handled=False)

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    controller = Controller(
        Sink(), hostname="127.0.0.1", port=port, authenticator=authenticator, auth_require_tls=False
    )
    controller.start()
    try:
        reports = _minimal_pack(tmp_path / "reports", "Acme")
        env = {
            "REVOPS_SMTP_HOST": "127.0.0.1",
            "REVOPS_SMTP_PORT": str(port),
            "REVOPS_SMTP_SECURITY": "none",
            "REVOPS_SMTP_USER": user,
            "REVOPS_SMTP_PASSWORD": password,
            "REVOPS_MAIL_FROM": "revops@example.com",
        }
        refused = _email("--reports", reports, "--send", env=env)
        assert refused.returncode == 2 and "unencrypted" in refused.stderr and seen == []
        sent = _email("--reports", reports, "--send", env={**env, "REVOPS_SMTP_ALLOW_PLAINTEXT": "1"})
        assert sent.returncode == 0, sent.stderr
        assert len(seen) == 1
        wrong = _email("--reports", reports, "--send", env={**env, "REVOPS_SMTP_ALLOW_PLAINTEXT": "1",
                                                           "REVOPS_SMTP_PASSWORD": "wröng-pw-77"})  # fmt: skip
        assert wrong.returncode == 1 and "SMTPAuthenticationError" in wrong.stderr
        assert len(wrong.stderr.strip().splitlines()) == 1 and "wröng-pw-77" not in wrong.stderr
    finally:
        controller.stop()


# -- item 7: user-only cache and executed notebooks; no pickle -------------------------------------
def _modes(root):
    import stat

    return {p: stat.S_IMODE(p.stat().st_mode) for p in [root, *root.rglob("*")]}


def test_item7_cache_is_user_only_and_its_metadata_is_json(tmp_path, monkeypatch, sample_dir):
    import json

    from helpers.data import sources
    from helpers.data.dataset import load

    root = tmp_path / "cache"
    monkeypatch.setenv("REVOPS_CACHE_DIR", str(root))
    monkeypatch.setattr(sources, "DIGEST_INDEX_MIN_BYTES", 0)  # digests.json written too
    sources.forget_last_read()
    first = load(sample_dir)
    sources.forget_last_read()
    again = load(sample_dir)  # from the cache
    assert [str(w) for w in again.warnings] == [str(w) for w in first.warnings] and first.warnings
    assert [(w.file, w.row, w.column, w.expected, w.severity) for w in again.warnings] == [
        (w.file, w.row, w.column, w.expected, w.severity) for w in first.warnings
    ]
    modes = _modes(root)
    assert any(p.suffix == ".arrow" for p in modes) and any(p.name == "digests.json" for p in modes)
    wrong = {
        str(p.relative_to(root)): oct(m) for p, m in modes.items() if m != (0o700 if p.is_dir() else 0o600)
    }
    assert wrong == {}
    metas = [p for p in modes if p.name.startswith("meta.")]
    assert [p.name for p in metas] == ["meta.json"]
    assert json.loads(metas[0].read_text())["tables"]


@pytest.mark.slow
def test_item7_published_notebooks_are_user_only(tmp_path):
    import stat
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).parent / "fixtures" / "notebooks"))
    from packs import BOOKINGS, monthly, write_tiny_dataset

    ds = write_tiny_dataset(tmp_path / "ds")
    run = monthly(ds, tmp_path / "reports", "2026-10", BOOKINGS)
    assert run.returncode == 0, run.stderr
    period = tmp_path / "reports" / "2026-10"
    notebooks = list(period.rglob("*.ipynb"))
    assert notebooks and all(stat.S_IMODE(p.stat().st_mode) == 0o600 for p in notebooks)


# -- item 13: interrupted runs ---------------------------------------------------------------------
def _dead_pid() -> int:
    import subprocess
    import sys

    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    return p.pid


@pytest.mark.slow
def test_item13_sigterm_stops_a_report_like_ctrl_c_and_leaves_nothing(tmp_path, sample_dir):
    import signal
    import subprocess
    import sys
    import time
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    out = tmp_path / "reports"
    cmd = [sys.executable, "-m", "helpers.cli", "report", "monthly", "--dataset", sample_dir, "--out", out]
    proc = subprocess.Popen(
        list(map(str, cmd)), cwd=root, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    t0 = time.time()
    while not list(out.glob(".*.building-*")) and time.time() - t0 < 60:
        time.sleep(0.1)
    time.sleep(3)  # the notebooks are running
    assert proc.poll() is None and list(out.glob(".*.building-*"))
    proc.send_signal(signal.SIGTERM)
    t1 = time.time()
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 143, err
    assert time.time() - t1 < 20  # the kernels are stopped, not waited for
    assert "Traceback" not in err and "stopped (SIGTERM)" in err
    assert list(out.iterdir()) == []  # no build folder, nothing published


@pytest.mark.slow
def test_item13_next_run_clears_build_folders_of_dead_processes(tmp_path):
    import os
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).parent / "fixtures" / "notebooks"))
    from packs import BOOKINGS, monthly, write_tiny_dataset

    ds = write_tiny_dataset(tmp_path / "ds")
    out = tmp_path / "reports"
    dead, live = _dead_pid(), os.getpid()
    stale = [out / f".2026-10.building-{dead}-abc123", out / "2026-10" / f".reviews.building-{dead}-x"]
    stale.append(out / f".2026-10.old-{dead}-abc123")
    kept = out / f".2026-10.building-{live}-running"  # a run still going: kept
    for folder in [*stale, kept]:
        (folder / "files").mkdir(parents=True)
    run = monthly(ds, out, "2026-10", BOOKINGS)
    assert run.returncode == 0, run.stderr
    assert [p for p in stale[::2] if p.exists()] == [] and kept.exists()
    from helpers.data.atomic import clean_stale

    assert clean_stale(out / "2026-10") == [stale[1]] and not stale[1].exists()


# -- item 14: cache content verified ---------------------------------------------------------------
def test_item14_a_cache_file_changed_in_place_is_not_served(tmp_path, monkeypatch, sample_dir):
    import struct

    from helpers.data import sources
    from helpers.data.dataset import load

    root = tmp_path / "cache"
    monkeypatch.setenv("REVOPS_CACHE_DIR", str(root))
    sources.forget_last_read()
    truth = load(sample_dir).opportunities["amount"]
    amount = float(truth.dropna().iloc[0])
    (arrow,) = root.rglob("opportunities.arrow")
    data = bytearray(arrow.read_bytes())
    at = data.find(struct.pack("<d", amount))
    assert at > 0
    with open(arrow, "r+b") as fh:  # one stored amount changed in place, same size (174,000 -> ×1000)
        fh.seek(at)
        fh.write(struct.pack("<d", amount * 1000))
    sources.forget_last_read()  # a new process: nothing in memory
    again = load(sample_dir).opportunities["amount"]
    assert again.equals(truth)
    assert struct.pack("<d", amount * 1000) not in arrow.read_bytes() or not arrow.exists()
    sources.forget_last_read()
    assert load(sample_dir).opportunities["amount"].equals(truth)  # the rebuilt entry is a hit


# -- item 15: unreadable notebook, closed pipe -----------------------------------------------------
def test_item15_a_notebook_that_is_not_json_is_named_as_such(tmp_path):
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).parent / "fixtures" / "notebooks"))
    from packs import revops, write_tiny_dataset

    ds = write_tiny_dataset(tmp_path / "ds")
    bad = tmp_path / "bad.ipynb"
    bad.write_text('{"cells": [ {"cell_type": "code", "source": "x = 1"\n')
    run = revops(
        "report",
        "monthly",
        "--dataset",
        ds,
        "--period",
        "2026-10",
        "--out",
        tmp_path / "r",
        "--notebooks",
        bad,
    )
    assert run.returncode == 2
    assert (
        f"notebook {bad} cannot be read: not valid JSON (Expecting ',' delimiter at line 2, column 1)"
        in run.stderr
    )
    assert (
        "kernel start" not in run.stderr and "cell None" not in run.stderr and not (tmp_path / "r").exists()
    )


def test_item15_a_notebook_broken_during_the_run_fails_as_unreadable(tmp_path):
    from helpers.publish import report

    bad = tmp_path / "bad.ipynb"
    bad.write_bytes(b"\xff\xfe not a notebook")
    with pytest.raises(report.NotebookFailed) as exc:
        report.execute(bad, tmp_path / "out.ipynb")
    assert exc.value.short == "the notebook file cannot be read: not UTF-8 text (byte 0)"
    assert str(exc.value) == "bad.ipynb: the notebook file cannot be read: not UTF-8 text (byte 0)"
    assert not (tmp_path / "out.ipynb").exists()


def test_item15_validate_into_a_closed_pipe_ends_quietly(sample_dir):
    import subprocess
    import sys
    from pathlib import Path

    from helpers.data.dataset import load

    load(sample_dir)  # the cache is built here, so the command prints no progress line of its own
    root = Path(__file__).resolve().parents[1]
    proc = subprocess.Popen(
        [sys.executable, "-m", "helpers.cli", "validate", str(sample_dir), "--all"],
        cwd=root, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )  # fmt: skip
    proc.stdout.close()  # `| head` that has already exited: every write meets a closed pipe
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=60) == 141
    assert err == "", err


# -- item 8: a misspelt contract column ------------------------------------------------------------
def test_item8_a_misspelt_amount_is_an_error_with_its_suggestion(tmp_path):
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).parent / "fixtures" / "notebooks"))
    from packs import revops, write_tiny_dataset

    ds = write_tiny_dataset(tmp_path / "ds")
    opp = ds / "opportunities.csv"
    text = opp.read_text()
    opp.write_text(text.replace(",amount,", ",amout,", 1))
    run = revops("validate", ds)
    assert run.returncode == 1, run.stdout
    assert (
        "opportunities.csv, column 'amout' — column is not in the data contract; did you mean 'amount'? "
        "(rename it to 'amount', or drop it)" in run.stdout
    )
    # a looser likeness stays a warning: it may be a column of its own
    opp.write_text(text.replace(",next_step", ",next_step_detail", 1))
    run = revops("validate", ds)
    assert run.returncode == 0, run.stdout
    assert (
        "column 'next_step_detail' — column is not in the data contract; did you mean 'next_step'?\n"
        in run.stdout
    )


# -- item 9: encodings and delimiters --------------------------------------------------------------
def _tiny_table(folder, data: bytes):
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).parent / "fixtures" / "notebooks"))
    from packs import write_tiny_dataset

    ds = write_tiny_dataset(folder)
    (ds / "opportunities.csv").write_bytes(data)
    return ds


def _opportunities(accounts: list[str], sep: str = ",") -> str:
    rows = ["opportunity_id,owner,created_date,close_date,stage,amount,account".replace(",", sep)]
    for i, a in enumerate(accounts):
        rows.append(sep.join([f"O{i}", "ana", "2026-08-01", "2026-10-05", "Closed Won", "1000", a]))
    return "\n".join(rows) + "\n"


def test_item9_latin1_after_the_first_64kb_is_read_whole_not_replaced(tmp_path):
    from helpers.data.dataset import load

    accounts = ["Plain Account Name"] * 3000 + ["Société Générale"]
    data = _opportunities(accounts).encode("cp1252")
    assert data.index(b"Soci") > 65536
    ds = load(_tiny_table(tmp_path / "ds", data))
    assert ds.opportunities["account"].iloc[-1] == "Société Générale"
    assert not ds.opportunities["account"].str.contains("\ufffd").any()
    assert any("read as Windows-1252" in str(w) for w in ds.warnings)


def test_item9_bytes_no_encoding_reads_are_an_error_not_replaced(tmp_path):
    from helpers.data.dataset import DataValidationError, load

    data = _opportunities(["Acme"]).encode() + b"O9,ana,2026-08-01,2026-10-05,Closed Won,1,Bad \x81\x8d\n"
    with pytest.raises(
        DataValidationError, match=r"is not text in UTF-8 .* or Windows-1252 .*; save it as UTF-8"
    ):
        load(_tiny_table(tmp_path / "ds", data))


@pytest.mark.parametrize("encoding", ["utf-16", "utf-16-be"])
def test_item9_utf16_with_a_byte_order_mark_is_read(tmp_path, encoding):
    import codecs

    from helpers.data.dataset import load

    bom = codecs.BOM_UTF16_BE if encoding.endswith("be") else b""
    data = bom + _opportunities(["Société", "Zoë"]).encode(encoding)
    ds = load(_tiny_table(tmp_path / "ds", data))
    assert list(ds.opportunities["account"]) == ["Société", "Zoë"]


@pytest.mark.parametrize("sep", ["|", "\t", ";"])
def test_item9_pipe_and_tab_delimiters_are_detected(tmp_path, sep):
    from helpers.data.dataset import load

    ds = load(_tiny_table(tmp_path / "ds", _opportunities(["Acme, Inc", "Zoë"], sep).encode()))
    assert list(ds.opportunities["account"]) == ["Acme, Inc", "Zoë"]
    assert ds.opportunities["amount"].sum() == 2000


def test_item9_import_never_replaces_characters(tmp_path):
    from helpers.data.importers import ImportProblem, read_export

    p = tmp_path / "export.csv"
    p.write_bytes(b"Name|Amount\nBad \x81|1\n")
    with pytest.raises(ImportProblem, match="export.csv: is not text in UTF-8 .* or Windows-1252"):
        read_export(p)
    p.write_bytes("Name|Amount\nSociété|1\n".encode("cp1252"))
    assert list(read_export(p)["Name"]) == ["Société"]


# -- item 12: identical rows in thin win/loss records ----------------------------------------------
def test_item12_identical_thin_records_are_reported_as_possible_duplicates(tmp_path):
    import yaml

    from helpers.data.calendar import FiscalCalendar
    from helpers.data.dataset import load
    from helpers.metrics import winloss as wl

    folder = tmp_path / "survey"
    folder.mkdir()
    (folder / "dataset.yml").write_text(
        yaml.safe_dump(
            {
                "name": "Survey",
                "stages": ["Open", "Won", "Lost"],
                "won_stages": ["Won"],
                "lost_stages": ["Lost"],
            }
        )
    )
    pd.DataFrame(
        {
            "opportunity_id": ["S1", "S2", "S3", "S4", "S5", "S6"],
            "stage": ["Won", "Lost", "Lost", "Won", "Won", "Lost"],
            "segment": ["SMB", "SMB", "SMB", "Ent", "Ent", "Ent"],
            "loss_reason": ["", "Price", "Price", "", "", "Timing"],
        }
    ).to_csv(folder / "opportunities.csv", index=False)
    ds = load(folder)
    rv = wl.build_review(ds, "2026-10", ds.as_of, FiscalCalendar(1), "month", "", 1)
    # S3 = S2 and S5 = S4 in every column but the id: possible duplicates, kept (nothing proves one deal)
    assert rv.duplicates.empty and (rv.overall.at[0, "deals"], rv.overall.at[0, "won"]) == (6, 3)
    q = rv.quality.set_index("check")
    label = "Possible duplicates: identical records without account or date (kept)"
    assert (q.at[label, "deals"], q.at[label, "share"]) == (2, pytest.approx(2 / 6))
    assert q.at["Duplicate records (left out)", "deals"] == 0


# -- item 11: validation gaps ----------------------------------------------------------------------
@pytest.fixture
def sample_copy(tmp_path, sample_dir):
    import shutil

    return shutil.copytree(sample_dir, tmp_path / "sample")


def _validate(folder):
    from helpers.data.validation import validate_report

    return validate_report(folder, all_warnings=True)


def test_item11_reps_cut_to_one_row_fails_on_quotas_and_warns_on_owners(sample_copy):
    from helpers.data.dataset import load

    reps = sample_copy / "reps.csv"
    lines = reps.read_text().splitlines()
    reps.write_text("\n".join(lines[:2]) + "\n")
    quotas = pd.read_csv(sample_copy / "quotas.csv", dtype=str)
    kept = lines[1].split(",")[0].strip('"')
    gone = quotas["rep_id"][quotas["rep_id"] != kept]
    code, text = _validate(sample_copy)
    assert code == 1
    row = gone.index[0] + 1
    assert (
        f"quotas.csv, row {row} (line {row + 1}), column 'rep_id': value '{gone.iloc[0]}' — "
        "expected a rep_id listed in reps.csv" in text
    )
    assert f"value '{kept}' — expected a rep_id" not in text
    owners = load(sample_copy, strict=False).warnings
    assert any(w.column == "owner" and w.expected == "expected a rep_id listed in reps.csv" for w in owners)


def test_item11_dates_after_the_as_of_date_are_errors(sample_copy):
    opp = pd.read_csv(sample_copy / "opportunities.csv", dtype=str, keep_default_na=False)
    won = opp.index[opp["stage"].eq("Closed Won")][0]
    opp.loc[won, "close_date"] = "2031-03-01"
    opp.loc[0, "created_date"] = "2099-01-01"
    opp.to_csv(sample_copy / "opportunities.csv", index=False)
    code, text = _validate(sample_copy)
    assert code == 1
    assert (
        f"row {won + 1} (line {won + 2}), column 'close_date': value '2031-03-01' — expected a closed deal's close date on or before the as-of date 2026-10-31"
        in text
    )
    assert (
        "row 1 (line 2), column 'created_date': value '2099-01-01' — expected a created date on or before the as-of date 2026-10-31"
        in text
    )


@pytest.mark.parametrize("as_of", ["1500-01-01", "9999-12-31"])
def test_item11_an_implausible_as_of_is_an_error(sample_copy, as_of):
    yml = sample_copy / "dataset.yml"
    yml.write_text(yml.read_text().replace("as_of: '2026-10-31'", f"as_of: '{as_of}'", 1))
    code, text = _validate(sample_copy)
    assert code != 0 and f"as_of: {as_of} is not a plausible export date" in text


@pytest.mark.parametrize("content", ["", "account,churn_date,lost_amount,reason\n"])
def test_item11_an_empty_optional_table_is_a_warning_with_or_without_header(sample_copy, content):
    (sample_copy / "churn.csv").write_text(content)
    code, text = _validate(sample_copy)
    assert code == 0, text
    assert (
        "churn.csv — is empty (no header, no rows)" if not content else "churn.csv — has no data rows"
    ) in text


def test_item11_the_day_month_hint_comes_before_the_errors_it_explains(tmp_path):
    """Every date is ambiguous (day ≤ 12): read as month/day, two close dates fall before their created
    dates. The hint naming the reading comes first, then the errors."""
    data = (
        "opportunity_id,owner,created_date,close_date,stage,amount\n"
        "O1,ana,05/03/2026,02/04/2026,Closed Won,12000\n"  # 5 Mar -> 2 Apr, read as 3 May -> 4 Feb
        "O2,ana,10/02/2026,03/03/2026,Closed Won,3000\n"  # 10 Feb -> 3 Mar, read as 2 Oct -> 3 Mar
        "O3,ben,01/09/2026,12/09/2026,Closed Won,45000\n"  # 1 Sep -> 12 Sep, read as 9 Jan -> 9 Dec
    )
    code, text = _validate(_tiny_table(tmp_path / "ds", data.encode()))
    assert code == 1, text
    lines = text.splitlines()
    assert lines[0].startswith("Dataset ") and "has 2 error(s). Read first" in lines[0]
    hint = "dates like 03/04/2026 could be day/month or month/day: read as month/day; set date_order: DMY"
    assert hint in lines[1] and "column 'created_date'" in lines[1]
    assert hint in lines[2] and "column 'close_date'" in lines[2]
    assert lines[3] == "The errors:"
    assert "row 1 (line 2), column 'close_date'" in lines[4] and "on or after created_date" in lines[4]
    assert len(lines) == 6


@pytest.mark.parametrize(
    "account, column, problem",
    [
        ('"Acme" Co', "account", "text follows the closing quote, so the quotes were dropped"),
        ('"Acme Co', "account", "it opens a quoted value that no quote closes on its line"),
    ],
)
def test_item11_a_stray_quote_is_blamed_on_its_own_column(tmp_path, account, column, problem):
    """Before: '"Acme" Co' was read as 'Acme Co' silently; '"Acme Co' (a second quote further down)
    merged three rows into one account and the file was valid with 2 of 4 rows."""
    data = (
        "opportunity_id,owner,created_date,close_date,stage,amount,account,segment\n"
        f"O1,ana,2026-08-01,2026-10-05,Closed Won,12000,{account},SMB\n"
        "O2,ana,2026-08-10,2026-10-20,Closed Won,3000,Beta,SMB\n"
        'O3,ben,2026-09-01,2026-10-12,Closed Won,45000,Gamma "G" Ltd,SMB\n'
        "O4,ben,2026-09-03,2026-10-15,Closed Lost,8000,Delta,SMB\n"
    )
    code, text = _validate(_tiny_table(tmp_path / "ds", data.encode()))
    assert code == 1, text
    assert f"opportunities.csv, row 1 (line 2), column '{column}': value '{account}" in text
    assert f"stray double quote: {problem}" in text
    assert text.count("stray double quote") == 1
    # an unclosed quote that leaves pandas unable to read the file at all names the same place
    code, text = _validate(_tiny_table(tmp_path / "ds2", data.replace('"G"', "G").encode()))
    assert code == 1, text
    assert f"row 1 (line 2), column '{column}'" in text and f"stray double quote: {problem}" in text


def test_item11_a_quote_used_correctly_is_read_as_written(tmp_path):
    from helpers.data.dataset import load

    accounts = ['"Acme, Inc"', '"Say ""hi"" Ltd"', 'Mid "quoted" word', '"Two\nlines"']
    ds = load(_tiny_table(tmp_path / "ds", _opportunities(accounts).encode()))
    assert list(ds.opportunities["account"]) == [
        "Acme, Inc",
        'Say "hi" Ltd',
        'Mid "quoted" word',
        "Two\nlines",
    ]


def test_item11_a_bare_year_in_a_date_column_is_a_warning(tmp_path):
    data = (
        "opportunity_id,owner,created_date,close_date,stage,amount\n"
        "O1,ana,2026,2026-10-05,Closed Won,12000\n"
        "O2,ana,2025,2026-10-20,Closed Won,3000\n"
        "O3,ben,2026-09-01,2026-10-12,Closed Won,45000\n"
    )
    code, text = _validate(_tiny_table(tmp_path / "ds", data.encode()))
    assert code == 0, text
    assert (
        "opportunities.csv, column 'created_date' — 2 value(s) are a year alone (such as '2026'), read as "
        "1 January of that year; write whole dates (YYYY-MM-DD)" in text
    )
    assert (
        "year alone"
        not in _validate(
            _tiny_table(
                tmp_path / "ok",
                data.replace(",2026,", ",2026-01-01,").replace(",2025,", ",2025-01-01,").encode(),
            )
        )[1]
    )


@pytest.mark.slow
def test_item8_a_dataset_without_amounts_publishes_every_report_saying_what_is_missing(tmp_path, sample_copy):
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).parent / "fixtures" / "notebooks"))
    from packs import revops

    for table in ("opportunities", "opportunity_history"):
        path = sample_copy / f"{table}.csv"
        pd.read_csv(path, dtype=str, keep_default_na=False).drop(columns="amount").to_csv(path, index=False)
    out = tmp_path / "reports"
    run = revops("report", "monthly", "--dataset", sample_copy, "--period", "2026-10", "--out", out)
    assert run.returncode == 0, run.stderr  # before: KeyError: 'amount' in two notebooks, nothing published
    period = out / "2026-10"
    page = (period / "quota_setting.html").read_text()
    assert "The Quota setting report needs column(s) amount in the `opportunities` table" in page
    for name in ("quota_setting", "pipeline_health"):
        assert "Traceback" not in (period / f"{name}.html").read_text()
    # pipeline health runs every section that needs no amount, and each section that does says so once
    page = (period / "pipeline_health.html").read_text()
    text = " ".join(re.sub(r"<[^>]+>", " ", html.unescape(page)).split())
    opps = pd.read_csv(sample_copy / "opportunities.csv", dtype=str)
    open_deals = int((~opps["stage"].isin(["Closed Won", "Closed Lost"])).sum())
    for shown in (
        f"Open deals, at 2026-10-31 {open_deals}",  # a headline tile, counted from the CSV
        "Stage-to-stage conversion (any-stage)",
        "Days in stage",
        "Slipped deals",
        "open deals need attention",
        "Lead funnel",
        "Activity volume",
        "How well the CRM probabilities were calibrated",
    ):
        assert shown in text, shown
    for section in (
        "Bookings against plan",
        "Open pipeline by stage and by expected close quarter",
        "Forecast categories and coverage",
        "The pipeline waterfall",
        "The 20 largest open deals",
        "The activity benchmark (quota ÷ deal size)",
    ):
        assert text.count(f"{section} needs column(s) amount in the `opportunities` table") == 1, section
    assert "$0" not in text  # no sum of missing amounts shown as zero
    summary = json.loads((period / "summary.json").read_text())
    nb = next(n for n in summary["notebooks"] if n["name"] == "pipeline_health")
    figs = {f["key"]: f["value"] for f in nb["figures"]}
    assert figs["open_deals"] == open_deals and figs["bookings_qtd"] is None and figs["stalled_deals"] > 0
    win_loss = (period / "win_loss_review.html").read_text()
    assert "The data has no amounts" in win_loss  # the sections that can run without amounts ran


# -- item 10: import messages from structured fields, grouped --------------------------------------
def test_item10_import_messages_are_built_from_fields_and_grouped(tmp_path, capsys):
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).parent))
    from test_importers import eur_profile, pd_row, pipedrive_export

    from helpers.cli import main

    # 40 deals closing before they were created, each with a probability written "1.0" (imported as 1):
    # before, "1" inside the message text was replaced by '1.0', and each row's "(opportunities.csv row N,
    # close_date)" suffix kept the 40 identical problems from grouping
    rows = [pd_row(i, "100", prob="1.0", created="2026-03-11", close="2026-01-10") for i in range(1, 41)]
    src = pipedrive_export(tmp_path, rows)
    assert (
        main(["import", "--profile", str(eur_profile(tmp_path)), "--to", str(tmp_path / "ds"), str(src)]) == 1
    )
    out = capsys.readouterr().out
    first = (
        "deals.csv, row 1 (line 2), column 'Deal - Expected close date': value '2026-01-10' — expected a close "
        "date on or after created_date '2026-03-11' (opportunities.csv row 1, close_date)"
    )
    assert first in out
    assert "'1.0'" not in out
    lines = [x for x in out.splitlines() if x.startswith("  - ")]
    assert len(lines) <= 21 and "… and 20 more in deals.csv" in lines[-1], out


def test_fuzz_finding_a_negative_year_is_a_problem_not_a_traceback(tmp_path):
    from helpers.data.dataset import DataValidationError, load

    data = _opportunities(["Acme"]).replace("2026-10-05", "-026-10-20").encode()
    with pytest.raises(DataValidationError, match=r"value '-026-10-20' — expected a date such as 2026-10-31"):
        load(_tiny_table(tmp_path / "ds", data))
