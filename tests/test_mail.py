"""The leadership email through the real command: a real SMTP server (aiosmtpd) on 127.0.0.1 receives
it; recipients, subject, both alternatives, inline cid: charts and attachments are checked, and the
SMTP password never shows up in output or files. Figures by hand: tests/fixtures/notebooks/packs.py."""

from __future__ import annotations

import email
import email.policy
import io
import re
import socket
import sys
import zipfile
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent / "fixtures" / "notebooks"))
from packs import BOOKINGS, monthly, revops, write_tiny_dataset  # noqa: E402

from helpers.publish import mail  # noqa: E402

PASSWORD = "s3cret-Pa55word-never-shown"
USER = "revops-bot"


@pytest.fixture(scope="module")
def pack(tmp_path_factory) -> Path:
    """reports/ with the tiny pack for 2026-09 and 2026-10 (2026-10 shows changes)."""
    tmp = tmp_path_factory.mktemp("mailpack")
    ds = write_tiny_dataset(tmp / "ds")
    for period in ("2026-09", "2026-10"):
        run = monthly(ds, tmp / "reports", period, BOOKINGS)
        assert run.returncode == 0, run.stderr
    return tmp / "reports"


class Sink:
    def __init__(self):
        self.envelopes = []

    async def handle_DATA(self, server, session, envelope):
        self.envelopes.append(envelope)
        return "250 OK"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def smtp_server():
    from aiosmtpd.controller import Controller
    from aiosmtpd.smtp import AuthResult, LoginPassword

    def authenticator(server, session, envelope, mechanism, auth_data):
        ok = (
            isinstance(auth_data, LoginPassword)
            and auth_data.login == USER.encode()
            and auth_data.password == PASSWORD.encode()
        )
        return AuthResult(success=ok, handled=False)

    sink = Sink()
    controller = Controller(
        sink, hostname="127.0.0.1", port=_free_port(), authenticator=authenticator, auth_require_tls=False
    )
    controller.start()
    try:
        yield controller, sink
    finally:
        controller.stop()


def _env(port: int, password: str = PASSWORD) -> dict:
    return {
        "REVOPS_SMTP_HOST": "127.0.0.1",
        "REVOPS_SMTP_PORT": str(port),
        "REVOPS_SMTP_SECURITY": "none",
        "REVOPS_SMTP_ALLOW_PLAINTEXT": "1",  # the test server has no TLS
        "REVOPS_SMTP_USER": USER,
        "REVOPS_SMTP_PASSWORD": password,
        "REVOPS_MAIL_FROM": "revops@example.com",
    }


def _files_containing(root: Path, needle: bytes) -> list[Path]:
    return [p for p in root.rglob("*") if p.is_file() and needle in p.read_bytes()]


@pytest.mark.slow
def test_send_through_a_real_smtp_server(pack, smtp_server):
    controller, sink = smtp_server
    run = revops(
        "email",
        "--period",
        "2026-10",
        "--to",
        "VP Sales <vp@example.com>, cro@example.com",
        "--reports",
        pack,
        "--send",
        env=_env(controller.port),
    )
    assert run.returncode == 0, run.stderr
    assert "Sent to vp@example.com, cro@example.com" in run.stdout
    assert PASSWORD not in run.stdout + run.stderr and not _files_containing(pack.parent, PASSWORD.encode())

    assert len(sink.envelopes) == 1
    env = sink.envelopes[0]
    assert env.mail_from == "revops@example.com"
    assert env.rcpt_tos == ["vp@example.com", "cro@example.com"]
    msg = email.message_from_bytes(env.original_content or env.content, policy=email.policy.default)
    assert msg["Subject"] == "Monthly sales report — 2026-10 (Tiny Co)"
    assert msg["To"] == "vp@example.com, cro@example.com"

    # both alternatives, same figures (by hand: $60,000 won, +$53,000 = 60,000 − 7,000 on 2026-09)
    text = msg.get_body(("plain",)).get_content()
    html = msg.get_body(("html",)).get_content()
    for figure in (
        "Bookings, 2026-10: $60,000  (+$53,000 (+757.1%))",
        "Deals won, 2026-10: 3  (+2 (+200.0%))",
        "Win rate (count), 2026-10: 60.0%  (+40.0 pts)",
    ):
        assert figure in text, figure
    for figure in ("$60,000", "+$53,000 (+757.1%)", "+40.0 pts"):
        assert figure in html, figure
    assert len(html.encode()) < mail.MAX_HTML_BYTES
    assert "<style" not in html.split("</head>")[1] and 'style="' in html  # CSS inlined
    assert "data:image" not in html

    # inline chart: the <img src="cid:..."> points at an image part of the multipart/related
    related = msg.get_body(("related",))
    assert related is not None and related.get_content_type() == "multipart/related"
    images = {
        p["Content-ID"].strip().strip("<>"): p
        for p in related.iter_parts()
        if p.get_content_maintype() == "image"
    }
    assert all("Content-ID: <" in p.as_string() for p in images.values())  # one unfolded header line
    cids = re.findall(r'src="cid:([^"]+)"', html)
    assert cids and set(cids) == set(images)
    assert images[cids[0]].get_content() == (pack / "2026-10" / "charts" / "bookings.png").read_bytes()

    # the HTML report attached in one zip, byte for byte, under the period's folder
    attachments = {a.get_filename(): a for a in msg.iter_attachments()}
    assert list(attachments) == ["2026-10-reports.zip"]
    assert attachments["2026-10-reports.zip"].get_content_type() == "application/zip"
    with zipfile.ZipFile(io.BytesIO(attachments["2026-10-reports.zip"].get_payload(decode=True))) as z:
        assert z.namelist() == ["2026-10/bookings.html"]
        assert z.read("2026-10/bookings.html") == (pack / "2026-10" / "bookings.html").read_bytes()
    assert "attached as 2026-10-reports.zip" in text and "2026-10-reports.zip" in html
    assert len(env.original_content or env.content) <= mail.MAX_EML_BYTES


@pytest.mark.slow
def test_with_a_published_pack_the_email_links_to_it_instead_of_attaching(pack, smtp_server):
    controller, sink = smtp_server
    run = revops(
        "email",
        "--period",
        "2026-10",
        "--to",
        "vp@example.com",
        "--reports",
        pack,
        "--send",
        env={**_env(controller.port), "REVOPS_REPORTS_URL": "https://intranet.example.com/revops/reports/"},
    )
    assert run.returncode == 0, run.stderr
    assert "reports linked at https://intranet.example.com/revops/reports/2026-10/" in run.stdout
    msg = email.message_from_bytes(
        sink.envelopes[0].original_content or sink.envelopes[0].content, policy=email.policy.default
    )
    assert list(msg.iter_attachments()) == []  # nothing attached
    text = msg.get_body(("plain",)).get_content()
    html = msg.get_body(("html",)).get_content()
    base = "https://intranet.example.com/revops/reports/2026-10/"
    for url in (base + "index.html", base + "bookings.html"):  # the pack's index and each report
        assert url in text and f'href="{url}"' in html, url
    assert "attached" not in text and "zip" not in html
    # the one inline chart is still there
    related = msg.get_body(("related",))
    assert len([p for p in related.iter_parts() if p.get_content_maintype() == "image"]) == 1


@pytest.mark.slow
def test_the_reports_address_must_be_http_and_a_pack_over_budget_is_refused(pack, monkeypatch, capsys):
    from helpers.cli import main

    assert mail.reports_url("2026-10", {}) is None
    assert mail.reports_url("2026-10", {"REVOPS_REPORTS_URL": " https://r.example.com/a "}) == (
        "https://r.example.com/a/2026-10/"
    )
    for bad in ("ftp://r.example.com/a", "r.example.com/a", "https://r.example.com/a b", 'https://x/"><b>'):
        with pytest.raises(mail.MailError, match="REVOPS_REPORTS_URL must be the http"):
            mail.reports_url("2026-10", {"REVOPS_REPORTS_URL": bad})
    monkeypatch.setattr(mail, "MAX_EML_BYTES", 20_000)
    args = ["email", "--period", "2026-10", "--to", "vp@example.com", "--reports", str(pack)]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "over its 20 KB budget" in err and "set REVOPS_REPORTS_URL" in err
    monkeypatch.setenv("REVOPS_REPORTS_URL", "https://intranet.example.com/reports")
    assert main(args) == 0  # linked instead of attached: within the budget


@pytest.mark.slow
def test_a_wrong_password_fails_cleanly_without_showing_it(pack, smtp_server):
    controller, sink = smtp_server
    wrong = "wrong-Pa55-also-secret"
    run = revops(
        "email",
        "--period",
        "2026-10",
        "--to",
        "vp@example.com",
        "--reports",
        pack,
        "--send",
        env=_env(controller.port, wrong),
    )
    assert run.returncode == 1 and "SMTPAuthenticationError" in run.stderr
    assert wrong not in run.stdout + run.stderr and sink.envelopes == []


@pytest.mark.slow
def test_dry_run_writes_the_eml_next_to_the_reports(pack):
    run = revops(
        "email",
        "--period",
        "2026-10",
        "--to",
        "vp@example.com",
        "--reports",
        pack,
        env={"REVOPS_SMTP_PASSWORD": PASSWORD},
    )
    assert run.returncode == 0, run.stderr
    eml = pack / "2026-10" / mail.EML_NAME
    assert f"Dry run: wrote {eml}" in run.stdout
    msg = email.message_from_bytes(eml.read_bytes(), policy=email.policy.default)
    assert msg["Subject"] == "Monthly sales report — 2026-10 (Tiny Co)" and msg["To"] == "vp@example.com"
    assert PASSWORD.encode() not in eml.read_bytes()


def test_smtp_settings_come_from_the_environment_and_hide_the_password():
    s = mail.smtp_settings(
        {
            "REVOPS_SMTP_HOST": "smtp.example.com",
            "REVOPS_SMTP_SECURITY": "ssl",
            "REVOPS_SMTP_USER": "u@example.com",
            "REVOPS_SMTP_PASSWORD": PASSWORD,
        }
    )
    assert (s.host, s.port, s.security, s.sender) == ("smtp.example.com", 465, "ssl", "u@example.com")
    assert PASSWORD not in repr(s) and PASSWORD not in str(s)
    assert mail.smtp_settings({"REVOPS_SMTP_HOST": "h", "REVOPS_MAIL_FROM": "a@b.c"}).port == 587
    with pytest.raises(mail.MailError, match="REVOPS_SMTP_HOST"):
        mail.smtp_settings({})
    with pytest.raises(mail.MailError, match="starttls, ssl or none"):
        mail.smtp_settings(
            {"REVOPS_SMTP_HOST": "h", "REVOPS_SMTP_SECURITY": "tls", "REVOPS_MAIL_FROM": "a@b.c"}
        )


def test_missing_pack_and_bad_addresses_are_clear(tmp_path, capsys):
    from helpers.cli import main

    assert main(["email", "--period", "2026-10", "--to", "vp@example.com", "--reports", str(tmp_path)]) == 2
    assert "run `revops report monthly --period 2026-10` first" in capsys.readouterr().err
    assert main(["email", "--period", "2026-10", "--to", "not an address", "--reports", str(tmp_path)]) == 2
    assert "--to: expected comma-separated email addresses" in capsys.readouterr().err
