"""Data text is untrusted: one function per medium it lands in, and every place that puts data text
(names, accounts, loss reasons, the dataset name, rep ids…) into that medium calls it.

- ``markdown(text)``: inline Markdown that renders as the text itself — every ASCII punctuation
  character backslash-escaped (CommonMark allows it for all of them), so ``[x](javascript:…)`` is no
  link, ``<script>`` no tag, ``$…$`` no math and ``**`` no bold; line breaks become spaces (a newline
  could start a heading or a list item).
- ``dollars(text)``: our own Markdown's currency signs escaped (``$1.2M to $3M`` is not math);
  idempotent, so it may run over text that already holds ``markdown()``-escaped data.
- ``html(text)``: HTML text and attribute values.
- ``header(text)``: an email header value — one line, no control characters, at most ``limit`` characters.
- ``spreadsheet_cell(value)`` / ``spreadsheet_frame(df)`` / ``to_csv(df, path)``: CSV and Excel cells
  that a spreadsheet would run as a formula (text starting with ``=``, ``+``, ``-``, ``@``, tab or
  carriage return — OWASP's CSV injection advice) get a leading ``'``, so they show as text. For files
  people open in a spreadsheet (report outputs); dataset tables are data and are written as they are.
- ``filename(text)``: a file name derived from data (a rep id): the text itself when it is a plain
  name, else a readable slug plus a short hash of the whole text, so no id can name a path outside
  the folder and two ids only share a file when they are the same id.

Chart text needs no function: ``helpers.sections.plots.apply_theme`` turns matplotlib's mathtext off
(``text.parse_math``), so every label is drawn as written.
"""

from __future__ import annotations

import hashlib
import html as _html
import re
import string
import unicodedata
from pathlib import Path

_MD_SPECIAL = re.compile("([" + re.escape(string.punctuation) + "])")
_SPACE = re.compile(r"\s+")
_UNESCAPED_DOLLAR = re.compile(r"(?<!\\)((?:\\\\)*)\$")


def _text(value) -> str:
    return "" if value is None else str(value)


def markdown(value) -> str:
    """``value`` as inline Markdown text that renders exactly as written (see the module docstring)."""
    return _MD_SPECIAL.sub(r"\\\1", _SPACE.sub(" ", _text(value)).strip())


def dollars(text: str) -> str:
    """Escape each ``$`` not escaped yet (``$`` after an even number of backslashes)."""
    return _UNESCAPED_DOLLAR.sub(r"\1\\$", text)


def html(value) -> str:
    """``value`` as HTML text or attribute value."""
    return _html.escape(_text(value), quote=True)


def header(value, limit: int = 200) -> str:
    """``value`` fit for an email header: control characters and line breaks become spaces, runs of
    space one space, and text past ``limit`` characters is cut with an ellipsis."""
    text = "".join(" " if unicodedata.category(c)[0] in "CZ" else c for c in _text(value))
    text = _SPACE.sub(" ", text).strip()
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def spreadsheet_cell(value):
    """A text cell a spreadsheet would run as a formula gets a leading ``'``; anything else as it is."""
    if isinstance(value, str) and value.startswith(FORMULA_START):
        return "'" + value
    return value


def spreadsheet_frame(df):
    """``df`` with every text cell passed through ``spreadsheet_cell`` (numbers, dates and booleans are
    untouched: a negative amount stays a number)."""
    import pandas as pd

    out = df.copy()
    for col in out.columns:
        s = out[col]
        if pd.api.types.is_string_dtype(s) or s.dtype == object:
            out[col] = s.map(spreadsheet_cell, na_action="ignore")
    out.columns = [spreadsheet_cell(str(c)) for c in out.columns]
    return out


def to_csv(df, path=None, **kwargs):
    """``df.to_csv`` with spreadsheet formulas neutralised (``spreadsheet_frame``); index off and CRLF
    row ends by default. With ``path`` None it returns the text."""
    kwargs.setdefault("index", False)
    # CRLF rows (RFC 4180): the csv module then quotes any cell holding a carriage return, which a
    # "\n" terminator leaves bare (the row would split in two when read back)
    kwargs.setdefault("lineterminator", "\r\n")
    text = spreadsheet_frame(df).to_csv(**kwargs)
    if path is None:
        return text
    from helpers.data.atomic import write_text_atomic

    return write_text_atomic(Path(path), text)


_SLUG_DROP = re.compile(r"[^A-Za-z0-9_-]+")
_SAFE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,63}")


def filename(value, suffix: str = "", max_slug: int = 40) -> str:
    """A safe file name for data text (a rep id). A plain name (letters, digits, ``-``, ``_``; at most
    64, not starting with ``-`` or ``_``) is kept as it is: ``AE001`` -> ``AE001.html``. Anything else
    becomes a slug of its ASCII letters, digits, ``-`` and ``_`` (at most ``max_slug``), ``-`` and 8 hex
    digits of its sha256: ``../../x/AE001`` -> ``x_AE001-1b2c3d4e.html``. Never empty, hidden or a path."""
    text = _text(value)
    if _SAFE_NAME.fullmatch(text):
        return text + suffix
    ascii_text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode("ascii")
    slug = _SLUG_DROP.sub("_", ascii_text).strip("_-")[:max_slug].strip("_-") or "x"
    digest = hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()[:8]
    return f"{slug}-{digest}{suffix}"
