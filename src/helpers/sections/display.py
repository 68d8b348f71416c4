"""Presentation: one number format, one table style, one theme, everywhere.

Notebooks show every table through ``show_table`` (no index noise, thousands separators, currency),
every call-out through ``note`` and every figure through ``helpers.sections.plots``.
"""

from __future__ import annotations

import html
import math
import re
import warnings

import numpy as np
import pandas as pd
from IPython.display import HTML, Markdown, display

from helpers.data import escape

CURRENCY_SYMBOLS = {"USD": "$", "EUR": "€", "GBP": "£", "JPY": "¥", "AUD": "A$", "CAD": "C$"}

# in JupyterLab and Voilà (a report page also has report.css): a wide table scrolls in its box with its first
# column in view; figures and dates never break across lines, and on a phone only free-text columns wrap
TABLE_CSS = """
<style>
.rv-table table {border-collapse: collapse; font-size: 13px; margin: 4px 0 14px 0;}
.rv-table th {background: #f1f3f6; text-align: left; padding: 4px 10px; border-bottom: 2px solid #c9ced6;}
.rv-table td {padding: 3px 10px; border-bottom: 1px solid #e4e7ec;}
.rv-table td.num, .rv-table th.num {text-align: right; font-variant-numeric: tabular-nums;}
.rv-table caption {caption-side: top; text-align: left; font-weight: 600; padding: 4px 0;}
.rv-wrap {overflow-x: auto; max-width: 100%;}
.rv-table td.num, .rv-table td.date {white-space: nowrap;}
@media (max-width: 600px) {.rv-table td {white-space: nowrap;} .rv-table td.text {white-space: normal; min-width: 12em;}}
.rv-table tbody tr {background: #fff;}
.rv-table th:first-child, .rv-table td:first-child {position: sticky; left: 0; z-index: 1;}
.rv-table td:first-child {background: inherit;}
.rv-note {border-left: 4px solid #8a94a6; background: #f6f7f9; padding: 8px 12px; margin: 8px 0;}
.rv-warn {border-left-color: #c8553d;}
.rv-cards {display: flex; flex-wrap: wrap; gap: 10px; margin: 8px 0 16px 0;}
.rv-card {border: 1px solid #dde1e7; border-radius: 6px; padding: 8px 12px; min-width: 150px; background: #fff;}
.rv-card .v {font-size: 20px; font-weight: 700;}
.rv-card .l {font-size: 12px; color: #555;}
.rv-card .d {font-size: 11px; color: #777;}
</style>
"""


REP_COLUMNS = ("owner", "rep", "rep_id")
WRAP_CHARS = 32  # on a phone, a text column with a longer cell wraps (class "text"); shorter cells do not
# a date or period as the reports write them (2026-10-31, 2026-10, 2026-W44, FY2027, FY2027 Q3): class "date",
# never broken across lines
DATE_TEXT = re.compile(r"\d{4}-\d{2}(-\d{2})?|\d{4}-W\d{2}|FY\d{4}( Q\d)?")
_rep_names: dict[str, str] = {}


def set_rep_names(reps) -> None:
    """Show reps by name in every table: values of the columns ``owner``, ``rep`` and ``rep_id`` that are
    rep ids become the rep's name (with the id where two reps share a name). ``reps``: the reps table."""
    _rep_names.clear()
    if reps is None or "name" not in reps.columns:
        return
    r = reps[reps["name"].notna() & reps["rep_id"].notna()]
    dup = r["name"].duplicated(keep=False)
    for rid, name, d in zip(r["rep_id"], r["name"], dup, strict=True):
        _rep_names[str(rid)] = f"{name} ({rid})" if d else str(name)


def rep_label(rep_id) -> str:
    """A rep's name as the tables show it (set by ``set_rep_names``), else the id: for chart labels."""
    return _rep_names.get(str(rep_id), str(rep_id))


def symbol(currency: str) -> str:
    return CURRENCY_SYMBOLS.get(currency, currency + " ")


def fmt_money(x, currency: str = "USD", compact: bool = False) -> str:
    """``$1,234,567`` (or ``$1.2M`` compact); empty string for missing values."""
    if x is None or (isinstance(x, float) and math.isnan(x)) or x is pd.NA:
        return ""
    s = symbol(currency)
    sign = "-" if x < 0 else ""
    x = abs(float(x))
    if compact:
        for div, suf in ((1e9, "B"), (1e6, "M"), (1e3, "k")):
            if x >= div:
                return f"{sign}{s}{x / div:,.1f}{suf}"
    return f"{sign}{s}{x:,.0f}"


def fmt_pct(x, digits: int = 0) -> str:
    """0.254 -> ``25%``."""
    if x is None or pd.isna(x):
        return ""
    return f"{float(x) * 100:,.{digits}f}%"


def fmt_pts(x, digits: int = 1) -> str:
    """A difference of two percents (0–1 scale), signed, in percentage points: 0.089 -> ``+8.9 pts``."""
    if x is None or pd.isna(x):
        return ""
    v = float(x) * 100
    sign = "+" if v > 0 else "−" if v < 0 else ""
    return f"{sign}{abs(v):,.{digits}f} pts"


def count_noun(n, singular: str, plural: str | None = None) -> str:
    """``1 open deal``, ``2 open deals``, ``1,204 reps``: the count with the noun agreeing (``plural``
    defaults to ``singular + "s"``; the noun's last word is pluralised, so pass "open deal")."""
    n = int(n)
    return f"{n:,} {singular if n == 1 else (plural or singular + 's')}"


def fmt_num(x, digits: int = 0) -> str:
    if x is None or pd.isna(x):
        return ""
    return f"{float(x):,.{digits}f}"


def fmt_value(x, unit: str, currency: str = "USD") -> str:
    """Format by unit: currency, percent, points (+8.9 pts), ratio (×), days, count."""
    if isinstance(x, str):
        return x
    if x is None or pd.isna(x):
        return "n/a"
    if unit == "currency":
        return fmt_money(x, currency)
    if unit == "percent":
        return fmt_pct(x, 1)
    if unit == "points":
        return fmt_pts(x)
    if unit == "ratio":
        return f"{float(x):,.2f}×"
    if unit == "days":
        days = f"{float(x):,.0f}"
        return f"{days} {'day' if days in ('1', '-1') else 'days'}"
    return fmt_num(x, 0 if float(x).is_integer() else 1)


def setup_notebook() -> None:
    """Apply the theme and silence library warnings so none leak into reports."""
    from helpers.sections import plots

    warnings.filterwarnings("ignore")
    pd.set_option("display.max_columns", 50)
    plots.apply_theme()
    plots.draw_figures_once()


ACRONYMS = {
    "crm": "CRM",
    "ote": "OTE",
    "id": "ID",
    "mql": "MQL",
    "sql": "SQL",
    "n": "n",
    "p75": "p75",
    "wtd": "WTD",
    "mtd": "MTD",
    "qtd": "QTD",
    "ytd": "YTD",
    "sdr": "SDR",
    "ae": "AE",
}


def column_label(name) -> str:
    """``attainment_to_date`` -> ``Attainment to date``; labels already written for readers are kept."""
    text = str(name)
    if text != text.lower() or " " in text:
        return text
    words = [ACRONYMS.get(w, w) for w in text.split("_") if w]
    if not words:
        return text
    first = words[0]
    words[0] = first if first in ACRONYMS.values() else first[:1].upper() + first[1:]
    return " ".join(words)


_DAYS_COLUMN = re.compile(r"(^|[_ (])days([_ )]|$)", re.I)  # "median_days", "Cycle (days)", not "per day"


def _cell_text(column, v) -> str:
    """A text cell as a reader reads it: dates as YYYY-MM-DD, yes / no, rep names, blanks for missing."""
    if isinstance(v, pd.Timestamp):
        return "" if pd.isna(v) else v.strftime("%Y-%m-%d")
    if v is None or (not isinstance(v, str) and pd.isna(v)):
        return ""
    if isinstance(v, (bool, np.bool_)):  # a reader's yes / no, never Python's True / False
        return "yes" if v else "no"
    if isinstance(v, float):
        return fmt_num(v, 2)
    return _rep_names.get(str(v), str(v)) if column in REP_COLUMNS else str(v)


def table_html(
    df: pd.DataFrame,
    money=(),
    pct=(),
    ints=(),
    ratio=(),
    decimals=(),
    days=(),
    currency: str = "USD",
    caption: str | None = None,
    max_rows: int | None = None,
    points=(),
    per_unit=(),
) -> str:
    """HTML for a DataFrame, formatted by column kind (``points``: differences of percents, +8.9 pts;
    ``per_unit``: a rate such as opportunities per meeting, 1.10 — never a percentage); the index is dropped
    unless it is named. A numeric column whose name counts days ("median_days", "Cycle (days)") shows whole
    days, whatever other kind it was given (days are never "6.0")."""
    if df.index.name is not None or isinstance(df.index, pd.MultiIndex):
        df = df.reset_index()
    if max_rows is not None and len(df) > max_rows:
        df = df.head(max_rows)
    formatters = {}
    for c in money:
        formatters[c] = lambda v: fmt_money(v, currency)
    for c in pct:
        formatters[c] = lambda v: fmt_pct(v, 1)
    for c in ints:
        formatters[c] = lambda v: fmt_num(v, 0)
    for c in ratio:
        formatters[c] = lambda v: "" if pd.isna(v) else f"{v:,.2f}×"
    for c in decimals:
        formatters[c] = lambda v: fmt_num(v, 1)
    for c in days:
        formatters[c] = lambda v: fmt_num(v, 0)
    for c in points:
        formatters[c] = fmt_pts
    for c in per_unit:
        formatters[c] = lambda v: fmt_num(v, 2)
    for c in df.columns:
        if _DAYS_COLUMN.search(str(c)) and pd.api.types.is_numeric_dtype(df[c]) and c not in money:
            formatters[c] = lambda v: fmt_num(v, 0)
    numeric = set(formatters)
    head = "".join(
        f'<th class="{"num" if c in numeric else ""}">{html.escape(column_label(c))}</th>' for c in df.columns
    )
    rows = [
        [
            formatters[c](v) if c in formatters else _cell_text(c, v)
            for c, v in zip(df.columns, row, strict=True)
        ]
        for row in df.itertuples(index=False)
    ]
    # on a phone a column of free text (a cell longer than WRAP_CHARS) wraps and every other cell stays on one
    # line; dates and periods never break (report.css)
    wrap = {
        c
        for r in rows
        for c, txt in zip(df.columns, r, strict=True)
        if c not in numeric and len(txt) > WRAP_CHARS
    }

    def kind(c, txt: str) -> str:
        if c in numeric:
            return ' class="num"'
        if c in wrap:
            return ' class="text"'
        return ' class="date"' if DATE_TEXT.fullmatch(txt) else ""

    body = [
        "<tr>"
        + "".join(f"<td{kind(c, txt)}>{html.escape(txt)}</td>" for c, txt in zip(df.columns, r, strict=True))
        + "</tr>"
        for r in rows
    ]
    cap = f"<caption>{html.escape(caption)}</caption>" if caption else ""
    return (
        f'<div class="rv-table rv-wrap">{TABLE_CSS}<table>{cap}<thead><tr>{head}</tr></thead>'
        f"<tbody>{''.join(body)}</tbody></table></div>"
    )


MAX_TABLE_ROWS = 100  # a report table longer than this shows its first rows (tables come sorted by priority)


def show_table(df: pd.DataFrame, collapsed: str | bool | None = None, **kwargs) -> None:
    """Display ``df`` with ``table_html`` formatting (see its keyword arguments). Tables longer than
    ``max_rows`` (default MAX_TABLE_ROWS) show their first rows and say how many are left out.
    ``collapsed``: the table sits folded under that line (True: "Show the table (n rows)"), a detail a
    reader opens when they want it; nothing is lost, the page is shorter."""
    if df is None or len(df) == 0:
        note("No rows to show for this table.")
        return
    limit = kwargs.pop("max_rows", MAX_TABLE_ROWS)
    table = table_html(df, max_rows=limit, **kwargs)
    if collapsed:
        line = collapsed if isinstance(collapsed, str) else f"Show the table ({count_noun(len(df), 'row')})"
        table = f'<details class="rv-more"><summary>{html.escape(line)}</summary>{table}</details>'
    display(HTML(table))
    if limit is not None and len(df) > limit:
        note(
            f"Showing the first {limit:,} of {len(df):,} rows (in the table's order); the notebook holds them all."
        )


def fold_table(df: pd.DataFrame, **kwargs) -> None:
    """``show_table`` folded: a detail table behind one "Show the table (n rows)" line."""
    show_table(df, collapsed=kwargs.pop("collapsed", True), **kwargs)


def write_list_csv(df: pd.DataFrame, output_dir, name: str):
    """Write a full list beside the report as CSV, cells a spreadsheet would run as a formula (starting
    with =, +, -, @, tab or CR) prefixed with ' so they show as text (``escape.to_csv``). Returns the path."""
    from pathlib import Path

    return escape.to_csv(df, Path(output_dir) / name)


def note(text: str, warn: bool = False) -> None:
    """A call-out box (for 'this section needs …', caveats and definitions)."""
    cls = "rv-note rv-warn" if warn else "rv-note"
    display(HTML(f'{TABLE_CSS}<div class="{cls}">{html.escape(text)}</div>'))


def bullets(points: list[str], title: str | None = None) -> None:
    """A short list of sentences (Markdown), under a bold ``title`` when given."""
    items = "\n".join(f"- {p}" for p in points if p)
    markdown((f"**{title}**\n\n" if title else "") + items)


def what_to_look_at(points: list[str], headlines=None) -> None:
    """The short list at the top of a report; recorded in ``headlines`` (summary.json) when given, so the index
    can rank the points of every report and link each to its section."""
    bullets(points, "What to look at")
    if headlines is not None:
        headlines.add_points(points)


def section_id(heading: str) -> str:
    """The anchor of a report section: its heading without the number, in lower case, words joined by "-"
    ("4. Deals that need attention" → "deals-that-need-attention"); the published HTML gives each h2/h3 this
    id, and a "what to look at" point links to it."""
    words = re.sub(r"^\s*\d+(\.\d+)*\.?\s+", "", heading)
    return re.sub(r"[^a-z0-9]+", "-", words.lower()).strip("-")


def _md_inline(text: str) -> str:
    """Registry text (our own, with `code` spans) as HTML: escaped, backtick spans as <code>."""
    return re.sub(r"`([^`]+)`", r"<code>\1</code>", html.escape(text))


def markdown(text: str) -> None:
    """Show Markdown. Every dollar sign is escaped: the report's Markdown renderer reads "$…$" as math, which
    breaks "**$34,244 per day**" into a literal "**" (amounts are the only dollars the reports write)."""
    display(Markdown(escape.dollars(text)))  # idempotent over data text escaped by escape.markdown


def cards(items: list[tuple[str, str, str]]) -> None:
    """KPI cards: (label, formatted value, small print)."""
    parts = [
        f'<div class="rv-card"><div class="l">{html.escape(lab)}</div><div class="v">{html.escape(val)}</div>'
        f'<div class="d">{html.escape(sub)}</div></div>'
        for lab, val, sub in items
    ]
    display(HTML(TABLE_CSS + '<div class="rv-cards">' + "".join(parts) + "</div>"))


def definitions(*terms: str) -> None:
    """A glossary block of the registry's terms ``terms`` (keys of ``registry.yml``'s glossary): every number
    shown carries its definition, written once in the registry."""
    from helpers.metrics.registry import glossary

    items = "".join(
        f"<li><strong>{html.escape(k)}</strong>: {_md_inline(v)}</li>" for k, v in glossary(*terms).items()
    )
    display(
        HTML(
            f'<details class="rv-defs"><summary>Definitions</summary><ul class="small">{items}</ul></details>'
        )
    )
