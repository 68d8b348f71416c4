"""The leadership email: ``revops email --period P --to ADDRESSES [--send] [--reports DIR]``.

Built from a finished monthly pack (``reports/<period>/summary.json``):

- subject ``Monthly sales report — <period> (<dataset name>)``;
- an HTML body (CSS inlined with css-inline; kept under ``MAX_HTML_BYTES`` so Gmail does not clip it)
  with each notebook's first ``TOP_FIGURES`` headline figures (the order the notebook added them) and
  their change since last period, and up to ``MAX_CHARTS``
  charts as inline ``cid:`` images (mail clients block data: URIs). The charts are the PNGs the report
  run saved in ``charts/`` (each notebook's cell tagged ``email-chart``, else its first image);
- a plain-text alternative with the same figures;
- the full reports: when ``REVOPS_REPORTS_URL`` is set (the address where the reports folder is published,
  holding one folder per period as ``revops report monthly`` writes it), links to the period's
  ``index.html`` and each report, nothing attached; otherwise the report HTMLs and the full lists beside
  them (``files/``) attached as one zip, ``<period>-reports.zip`` (a quarter of their size: text compresses,
  and the embedded charts shed base64's third).

The whole message stays within ``MAX_EML_BYTES`` (500 KB; the sample pack's is ~380 KB, 740 KB when the
three HTML files were attached as they are); past it, building the email fails with a one-line error that
says to publish the reports and set ``REVOPS_REPORTS_URL``.

Without ``--send`` it is a dry run writing ``reports/<period>/leadership-email.eml``. With ``--send`` it
goes through SMTP configured by environment variables: ``REVOPS_SMTP_HOST``, ``REVOPS_SMTP_PORT``
(default 587 starttls, 465 ssl, 25 none), ``REVOPS_SMTP_USER``, ``REVOPS_SMTP_PASSWORD``,
``REVOPS_SMTP_SECURITY`` (``starttls`` default, ``ssl`` or ``none``) and ``REVOPS_SMTP_FROM`` (or ``REVOPS_MAIL_FROM``). The
password is only handed to the SMTP login: never printed, logged or written, and never sent over a
connection without TLS (``none``) unless ``REVOPS_SMTP_ALLOW_PLAINTEXT=1`` says so (a relay on a
trusted network). A password needs a user. Non-ASCII user names and passwords log in with AUTH PLAIN
in UTF-8 (RFC 4616). Every SMTP problem ends in a one-line error.
"""

from __future__ import annotations

import io
import os
import re
import smtplib
import ssl
import sys
import urllib.parse
import uuid
import zipfile
from dataclasses import dataclass
from email.message import EmailMessage
from email.utils import formatdate, getaddresses, make_msgid
from pathlib import Path

from helpers.data import escape
from helpers.data.atomic import write_text_atomic
from helpers.publish.report import INDEX_TOP_FIGURES, figure_rows, read_summary, render_template
from helpers.sections.executive import STATUS_WORDS, answers

MAX_CHARTS = 3  # one key chart per report of the monthly pack
TOP_FIGURES = INDEX_TOP_FIGURES  # per notebook in the email; the rest are in the attached reports
MAX_HTML_BYTES = 100_000  # Gmail clips HTML bodies past ~102 KB
MAX_EML_BYTES = 500_000  # the whole message: body, inline charts and the attached reports zip
EML_NAME = "leadership-email.eml"


class MailError(ValueError):
    """Something the user must fix (missing pack, bad address, missing SMTP settings)."""


@dataclass(frozen=True)
class SmtpSettings:
    host: str
    port: int
    security: str  # starttls | ssl | none
    user: str | None
    password: str | None
    sender: str

    def __repr__(self) -> str:  # never show the password
        return (
            f"SmtpSettings(host={self.host!r}, port={self.port}, security={self.security!r}, "
            f"user={self.user!r}, password={'***' if self.password else None}, sender={self.sender!r})"
        )

    __str__ = __repr__


def smtp_settings(env=None) -> SmtpSettings:
    """SMTP settings from ``REVOPS_SMTP_*`` (the sender: ``sender_address``); ``MailError`` names what is missing."""
    env = os.environ if env is None else env
    host = env.get("REVOPS_SMTP_HOST", "").strip()
    if not host:
        raise MailError(
            "--send needs REVOPS_SMTP_HOST (and usually REVOPS_SMTP_USER, REVOPS_SMTP_PASSWORD, "
            "REVOPS_SMTP_FROM) in the environment"
        )
    if not _HOST.fullmatch(host):
        raise MailError(
            f"REVOPS_SMTP_HOST must be a host name or IP address such as smtp.example.com, got {host!r}"
            + (" (put the port in REVOPS_SMTP_PORT)" if re.fullmatch(r".+:\d+", host) else "")
        )
    security = env.get("REVOPS_SMTP_SECURITY", "starttls").strip().lower() or "starttls"
    if security not in ("starttls", "ssl", "none"):
        raise MailError(f"REVOPS_SMTP_SECURITY must be starttls, ssl or none, got {security!r}")
    port_txt = env.get("REVOPS_SMTP_PORT", "").strip()
    try:
        port = int(port_txt) if port_txt else {"starttls": 587, "ssl": 465, "none": 25}[security]
    except ValueError as exc:
        raise MailError(f"REVOPS_SMTP_PORT must be a number, got {port_txt!r}") from exc
    if not 0 < port < 65536:
        raise MailError(f"REVOPS_SMTP_PORT must be between 1 and 65535, got {port}")
    user = env.get("REVOPS_SMTP_USER") or None
    password = env.get("REVOPS_SMTP_PASSWORD") or None
    if password and not user:
        raise MailError(
            "REVOPS_SMTP_PASSWORD is set but REVOPS_SMTP_USER is not: set the user to log in with"
        )
    allow_plain = env.get("REVOPS_SMTP_ALLOW_PLAINTEXT", "").strip().lower() in ("1", "true", "yes")
    if password and security == "none" and not allow_plain:
        raise MailError(
            "REVOPS_SMTP_SECURITY=none would send REVOPS_SMTP_PASSWORD unencrypted; use starttls or ssl, "
            "or set REVOPS_SMTP_ALLOW_PLAINTEXT=1 for a relay on a trusted network"
        )
    sender = escape.header(sender_address(env) or user or "")
    if "@" not in sender:
        raise MailError("set REVOPS_SMTP_FROM to the sender address (e.g. revops@example.com)")
    return SmtpSettings(host, port, security, user, password, sender)


# a DNS name (labels of letters, digits and hyphens) or an IPv4 / bracket-less IPv6 address
_HOST = re.compile(r"(?=.{1,253}$)([A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.?)+|[0-9A-Fa-f:.]+")


def parse_recipients(text: str) -> list[str]:
    addrs = [a for _, a in getaddresses([text]) if a]
    bad = [a for a in addrs if "@" not in a or " " in a]
    if not addrs or bad:
        raise MailError(f"--to: expected comma-separated email addresses, got {text!r}")
    return addrs


def plain_text(
    summary: dict, packs: list[dict], answers: list | None = None, full: dict | None = None
) -> str:
    """The plain-text alternative; ``full`` says where the full reports are (``full_reports``)."""
    full = full or full_reports(summary["period"])
    lines = [
        f"Monthly sales report — {summary['period']}",
        f"{summary['dataset']['name']} · data as of {summary['as_of']}"
        + (
            f" · change against {summary['previous_period']['period']}"
            if summary.get("previous_period")
            else ""
        ),
        "",
    ]
    if full["index"]:
        lines += [f"The full pack: {full['index']}", ""]
    for a in answers or []:
        lines += [f"[{STATUS_WORDS[a.status].upper()}] {a.question}", f"  {a.sentence}", ""]
    for nb in packs:
        lines.append(nb["title"])
        lines.append("-" * len(nb["title"]))
        if nb["status"] != "ok":
            lines.append("This report did not complete.")
        for r in nb["rows"]:
            lines.append(f"  {r['label']}: {r['value']}" + (f"  ({r['change']})" if r["change"] else ""))
        if nb["more"]:
            lines.append(f"  … {nb['more']} more figures in the report" + _where(nb, full))
        elif nb.get("href"):
            lines.append(f"  The report: {nb['href']}")
        lines.append("")
    lines.append(full["sentence"])
    return "\n".join(lines) + "\n"


def _where(nb: dict, full: dict) -> str:
    if nb.get("href"):
        return f": {nb['href']}"
    return f" ({full['zip']}: {nb['html']})" if nb.get("html") and full["zip"] else ""


def reports_url(period: str, env=None) -> str | None:
    """The address of the period's published pack, ``<REVOPS_REPORTS_URL>/<period>/`` (the reports folder
    as ``revops report monthly`` writes it, served at that address), or None when the variable is unset."""
    env = os.environ if env is None else env
    base = env.get("REVOPS_REPORTS_URL", "").strip()
    if not base:
        return None
    parts = urllib.parse.urlsplit(base)
    if parts.scheme not in ("http", "https") or not parts.netloc or re.search(r"[\s\"'<>\\]", base):
        raise MailError(
            "REVOPS_REPORTS_URL must be the http(s) address of the published reports folder, such as "
            f"https://intranet.example.com/revops/reports; got {base!r}"
        )
    return f"{base.rstrip('/')}/{urllib.parse.quote(period)}/"


def full_reports(period: str, url: str | None = None) -> dict:
    """Where the email says the full reports are: ``index`` (the published index.html) or ``zip`` (the
    attachment's name), and the closing ``sentence``."""
    if url:
        return {
            "index": url + "index.html",
            "zip": None,
            "sentence": f"The full reports, with every figure and chart: {url}index.html",
        }
    name = f"{period}-reports.zip"
    return {
        "index": None,
        "zip": name,
        "sentence": f"The full reports are attached as {name}: unzip it and open any report in a browser, "
        "offline.",
    }


def reports_zip(period_dir: Path, summary: dict) -> bytes:
    """The period's report HTMLs and the full lists beside them (``files/``) as one zip, under a folder
    named by the period; entries dated by the data (the same pack gives the same bytes)."""
    period_dir = Path(period_dir)
    paths = [period_dir / nb["html"] for nb in summary["notebooks"] if nb.get("html")]
    files = period_dir / "files"
    paths += sorted(p for p in files.rglob("*") if p.is_file()) if files.is_dir() else []
    day = re.match(r"(\d{4})-(\d{2})-(\d{2})", str(summary.get("as_of", "")))
    stamp = (*(int(x) for x in day.groups()), 0, 0, 0) if day else (1980, 1, 1, 0, 0, 0)
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as z:
        for p in paths:
            if p.is_file():
                info = zipfile.ZipInfo(f"{period_dir.name}/{p.relative_to(period_dir).as_posix()}", stamp)
                info.compress_type = zipfile.ZIP_DEFLATED
                info.external_attr = 0o644 << 16
                z.writestr(info, p.read_bytes(), compresslevel=9)
    return buf.getvalue()


def inline_css(html: str) -> str:
    import css_inline

    inliner = css_inline.CSSInliner(keep_at_rules=True, load_remote_stylesheets=False)
    return inliner.inline(html)


def build_message(
    period_dir: Path, recipients: list[str], sender: str = "revops@localhost", url: str | None = None
) -> EmailMessage:
    """The leadership email for the pack in ``period_dir`` (see the module docstring): with ``url`` (the
    published pack's folder, ``reports_url``) it links to the reports, else it attaches them as one zip."""
    period_dir = Path(period_dir)
    summary = read_summary(period_dir / "summary.json")
    if not summary:
        raise MailError(
            f"no monthly report in {period_dir} (summary.json missing); run "
            f"`revops report monthly --period {period_dir.name}` first"
        )
    # data text in a header: one line (a YAML "name: >" block ends in a newline), bounded length
    subject = f"Monthly sales report — {summary['period']} ({escape.header(summary['dataset']['name'])})"
    packs, charts = [], []
    for nb in summary["notebooks"]:
        rows = figure_rows(summary, nb)
        entry = {**nb, "rows": rows[:TOP_FIGURES], "more": len(rows) - len(rows[:TOP_FIGURES]), "cid": None}
        entry["href"] = url + urllib.parse.quote(nb["html"]) if url and nb.get("html") else None
        chart = period_dir / nb["chart"] if nb.get("chart") else None
        if chart and chart.exists() and len(charts) < MAX_CHARTS:
            # short enough that the Content-ID header never folds (some clients mis-read folded ids)
            cid = f"<chart{len(charts) + 1}.{uuid.uuid4().hex[:16]}@revops.local>"
            entry["cid"] = cid[1:-1]
            charts.append((cid, chart.read_bytes(), f"{nb['name']}.png"))
        packs.append(entry)
    exec_answers = answers(summary)
    full = full_reports(summary["period"], url)
    html = inline_css(
        render_template(
            "email.html.j2",
            s=summary,
            packs=packs,
            subject=subject,
            answers=exec_answers,
            status_words=STATUS_WORDS,
            full=full,
        )
    )
    if len(html.encode()) > MAX_HTML_BYTES:
        raise MailError(
            f"the email body is {len(html.encode()) / 1000:.0f} KB; mail clients clip past "
            f"{MAX_HTML_BYTES / 1000:.0f} KB"
        )
    msg = EmailMessage()
    msg["Subject"] = subject
    msg["From"] = sender
    msg["To"] = ", ".join(recipients)
    msg["Date"] = formatdate(localtime=True)
    msg["Message-ID"] = make_msgid(domain="revops.local")
    msg.set_content(plain_text(summary, packs, exec_answers, full))
    msg.add_alternative(html, subtype="html")
    html_part = msg.get_payload()[1]
    for cid, png, fname in charts:
        html_part.add_related(
            png, maintype="image", subtype="png", cid=cid, filename=fname, disposition="inline"
        )
    if full["zip"] and any(
        nb.get("html") and (period_dir / nb["html"]).exists() for nb in summary["notebooks"]
    ):
        msg.add_attachment(
            reports_zip(period_dir, summary), maintype="application", subtype="zip", filename=full["zip"]
        )
    size = len(msg.as_bytes())
    if size > MAX_EML_BYTES:
        raise MailError(
            f"the email would weigh {size / 1000:.0f} KB with the reports attached, over its "
            f"{MAX_EML_BYTES / 1000:.0f} KB budget: publish the reports folder (a web server or an intranet "
            "share) and set REVOPS_REPORTS_URL to its address, so the email links to the reports instead"
        )
    return msg


def send(msg: EmailMessage, settings: SmtpSettings, timeout: float = 30) -> None:
    """Send over SMTP (STARTTLS, SSL or plain), logging in when a user is set."""
    ctx = ssl.create_default_context()
    if settings.security == "ssl":
        client = smtplib.SMTP_SSL(settings.host, settings.port, timeout=timeout, context=ctx)
    else:
        client = smtplib.SMTP(settings.host, settings.port, timeout=timeout)
    with client as smtp:
        if settings.security == "starttls":
            smtp.starttls(context=ctx)
        if settings.user:
            _login(smtp, settings.user, settings.password or "")
        smtp.send_message(msg, from_addr=settings.sender)


def _login(smtp: smtplib.SMTP, user: str, password: str) -> None:
    """``smtp.login``, except that a non-ASCII user or password (which smtplib can only send as ASCII)
    logs in with AUTH PLAIN in UTF-8 (RFC 4616)."""
    if (user + password).isascii():
        smtp.login(user, password)
        return
    import base64

    smtp.ehlo_or_helo_if_needed()
    if "PLAIN" not in smtp.esmtp_features.get("auth", "").upper().split():
        raise smtplib.SMTPException(
            "the SMTP user or password has non-ASCII characters and the server does not offer AUTH PLAIN"
        )
    token = base64.b64encode(b"\0" + user.encode() + b"\0" + password.encode()).decode("ascii")
    code, resp = smtp.docmd("AUTH", "PLAIN " + token)
    if code != 235:
        raise smtplib.SMTPAuthenticationError(code, resp)


def sender_address(env=None) -> str:
    """The sender: ``REVOPS_SMTP_FROM`` (``REVOPS_MAIL_FROM``, its earlier name, still read), else empty."""
    env = os.environ if env is None else env
    return env.get("REVOPS_SMTP_FROM") or env.get("REVOPS_MAIL_FROM") or ""


def default_period() -> str:
    from helpers.data.calendar import last_complete_month

    return last_complete_month()


def cli(args) -> int:
    """``revops email``."""
    period = args.period or default_period()
    period_dir = Path(args.reports) / period
    try:
        recipients = parse_recipients(args.to)
        settings = smtp_settings() if args.send else None
        sender = settings.sender if settings else escape.header(sender_address() or "revops@localhost")
        url = reports_url(period)
        msg = build_message(period_dir, recipients, sender, url)
    except MailError as exc:
        print(f"revops email: {exc}", file=sys.stderr)
        return 2
    html = msg.get_body(("html",)).get_content()
    attached = [(a.get_filename(), len(a.get_payload(decode=True))) for a in msg.iter_attachments()]
    n_img = (
        len([p for p in msg.get_body(("related",)).iter_parts() if p.get_content_maintype() == "image"])
        if msg.get_body(("related",))
        else 0
    )
    reports = (
        f"reports linked at {url}"
        if url
        else ", ".join(f"{name} ({size / 1000:.0f} KB) attached" for name, size in attached)
        or "no report attached"
    )
    info = (
        f"subject {msg['Subject']!r}; HTML body {len(html.encode()) / 1000:.1f} KB, {n_img} inline chart(s), "
        f"{reports}; {len(msg.as_bytes()) / 1000:.0f} KB of the {MAX_EML_BYTES / 1000:.0f} KB budget"
    )
    if not args.send:
        eml = write_text_atomic(period_dir / EML_NAME, msg.as_string())
        print(f"Dry run: wrote {eml} ({info}). Add --send to send it to {', '.join(recipients)}.")
        return 0
    try:
        send(msg, settings)
    except (smtplib.SMTPException, OSError, UnicodeError, ValueError) as exc:
        why = " ".join(f"{type(exc).__name__}: {exc}".split())  # one line, whatever the server said
        if settings.password:
            why = why.replace(settings.password, "***")
        print(
            f"revops email: sending via {settings.host}:{settings.port} ({settings.security}) failed: {why}",
            file=sys.stderr,
        )
        return 1
    print(f"Sent to {', '.join(recipients)} via {settings.host}:{settings.port} ({info}).")
    return 0
