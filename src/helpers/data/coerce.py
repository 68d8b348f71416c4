"""Reading values the way real CRM exports write them, without ever guessing silently.

Each parser takes a column (text as exported) and returns the typed column plus notes: ``bad`` (rows whose
value does not parse, with what was expected) and ``warnings`` (column-level assumptions the reader should
know). Rules:

- Blank cells, and ``N/A``, ``null``, ``#N/A``, ``-``, ``none``, ``nan`` in number, date and boolean columns,
  are missing values.
- Numbers: currency symbols/codes and spaces are dropped. The decimal mark is decided per column from the
  values that show it: ``1.234,5`` or ``12,50`` mean a decimal comma (European); ``1,234.5`` or ``1,234``
  mean a decimal point. A column showing both is an error on the rows against the majority. Without evidence
  the decimal point is assumed. ``inf`` and ``nan`` are not numbers.
- Percentages: a value with ``%`` is a percentage (``35%`` = 0.35). Probability columns without ``%`` are
  read on one scale for the whole column: 0–100 when any value exceeds 1, else 0–1.
- Dates: ISO 8601 first (``2026-10-31``, ``2026-10-31T14:00:00Z``; offsets converted to UTC). Numeric
  dates ``a/b/yyyy`` are read day-first or month-first for the whole column: a first field above 12 proves
  day-first, a second above 12 proves month-first; when nothing proves either, ``date_order`` from
  dataset.yml decides (default month-first, with a warning). Excel serial day numbers (``46326``) are read
  from Excel's 1899-12-30 epoch, with a warning.
"""

from __future__ import annotations

import re

import numpy as np
import pandas as pd

NA_WORDS = {"n/a", "null", "#n/a", "-", "none", "nan", "—"}
TRUE_WORDS = {"true", "t", "yes", "y", "1", "1.0", "won", "closed"}
FALSE_WORDS = {"false", "f", "no", "n", "0", "0.0", "open", "lost"}
CURRENCY = r"(?:[$€£¥]|\b(?:USD|EUR|GBP|JPY|AUD|CAD|CHF|SEK|NOK|DKK|INR)\b)"
# a/b/yy or a/b/yyyy (a time may follow when searched, not when matched whole)
NUMERIC_DATE = re.compile(r"^(\d{1,2})[/.\-](\d{1,2})[/.\-](\d{4}|\d{2})(?!\d)")
THOUSANDS_COMMAS = re.compile(r"[1-9]\d{0,2}(,\d{3})+")
THOUSANDS_DOTS = re.compile(r"[1-9]\d{0,2}(\.\d{3})+")
AMBIGUOUS_DOT = re.compile(r"[1-9]\d{0,2}\.\d{3}")  # 1.234: 1.234 or 1234
EXCEL_SERIAL = re.compile(r"^\d{5}(\.\d+)?$")


def blank(s: pd.Series, na_words: bool = False) -> pd.Series:
    """Missing cells: NaN or empty text (and the NA_WORDS when ``na_words``)."""
    if s.dtype == object or pd.api.types.is_string_dtype(s):
        txt = s.astype("str").str.strip()
        out = s.isna() | (txt == "")
        if na_words:
            out |= txt.str.lower().isin(list(NA_WORDS))
        return out
    return s.isna()


def to_text(s: pd.Series) -> pd.Series:
    out = s.astype("str").str.strip()
    out[blank(s)] = np.nan
    return out.astype("str")


def to_bool(s: pd.Series) -> pd.Series:
    if pd.api.types.is_bool_dtype(s):
        return s.astype("boolean")
    txt = s.astype("str").str.strip().str.lower()
    out = pd.Series(pd.NA, index=s.index, dtype="boolean")
    out[txt.isin(list(TRUE_WORDS))] = True
    out[txt.isin(list(FALSE_WORDS))] = False
    return out


# -- numbers ----------------------------------------------------------------------------------------
def decimal_evidence(t: str) -> str | None:
    """Which decimal separator a number text implies: '.' or ',' when it tells, '?' for 1.234 (either),
    None when it has no separator or is malformed. Both separators: the last is the decimal one;
    1,234 / 1,234,567 (groups of three) imply a decimal point; 1,5 a decimal comma; 1.234.567 a decimal
    comma; 1.5 / 0.234 a decimal point."""
    t = t.lstrip("+-")
    if not re.fullmatch(r"[\d.,]+", t) or not re.search(r"\d", t):
        return None
    if "." in t and "," in t:
        return t[max(t.rfind("."), t.rfind(","))]
    if "," in t:
        if THOUSANDS_COMMAS.fullmatch(t):
            return "."
        return "," if t.count(",") == 1 else None
    if "." in t:
        if t.count(".") > 1:
            return "," if THOUSANDS_DOTS.fullmatch(t) else None
        return "?" if AMBIGUOUS_DOT.fullmatch(t) else "."
    return None


_EVIDENCE_WORD = {".": "point", ",": "comma"}


def _decimal_evidence(txt: pd.Series) -> pd.Series:
    """Per value: "comma" (decimal comma shown), "point" (decimal point / thousands comma shown) or "" —
    ``decimal_evidence`` of each value, the one rule that loading and importing share."""
    codes = {v: _EVIDENCE_WORD.get(decimal_evidence(v), "") for v in txt.dropna().unique()}
    return txt.map(codes).fillna("").astype("str")


def _plain_numbers(s: pd.Series) -> pd.Series | None:
    """The values as floats when every non-blank cell is a plain number (``-1234.5``, no separators that
    could be read two ways), else None (the careful path decides)."""
    txt = s.astype("str").str.strip()
    vals = pd.to_numeric(txt.where(txt != ""), errors="coerce")
    if (vals.isna() & ~blank(s)).any():
        return None
    head = txt[txt != ""].head(1000)
    if len(head) >= 3 and head.str.fullmatch(r"-?\d{1,3}\.\d{3}").all():
        return None  # all like 1.234: let the careful path warn about the ambiguity
    return vals.astype("float64")


def to_number(s: pd.Series, kind: str = "number"):
    """(values, bad: {row: expected}, warnings). ``kind`` "prob" reads percentages as 0–1."""
    bad: dict = {}
    warnings: list[str] = []
    if pd.api.types.is_numeric_dtype(s) and not pd.api.types.is_bool_dtype(s):
        vals = s.astype("float64")
        pct = pd.Series(False, index=s.index)
    elif (fast := _plain_numbers(s)) is not None:  # the common case: plain 1234.5 everywhere
        vals, pct = fast, pd.Series(False, index=s.index)
    else:
        missing = blank(s, na_words=True)
        raw = s.astype("str").str.strip()
        pct = raw.str.endswith("%") & ~missing
        txt = raw.str.replace(CURRENCY, "", regex=True).str.replace(r"[\s%'\u00a0]", "", regex=True)
        txt[missing] = ""
        ev = _decimal_evidence(txt)
        n_comma, n_point = int((ev == "comma").sum()), int((ev == "point").sum())
        style = "comma" if n_comma > n_point else "point"
        if n_comma and n_point:
            minority = "point" if style == "comma" else "comma"
            shown = "1.234,56" if style == "comma" else "1,234.56"
            for r in ev[ev == minority].index:
                bad[r] = f"expected the same number format as the rest of the column (like {shown})"
        if style == "comma":
            txt = txt.str.replace(".", "", regex=False).str.replace(",", ".", regex=False)
            warnings.append("read with a decimal comma (European format, e.g. 1.234,56)")
        else:
            txt = txt.str.replace(",", "", regex=False)
            dotted = txt.str.fullmatch(r"-?\d{1,3}\.\d{3}")
            if not n_point and dotted.sum() >= 3 and dotted.sum() == (txt != "").sum():
                warnings.append(
                    "every value looks like 1.234: read with a decimal point; if the point separates "
                    "thousands, write the numbers without it"
                )
        txt[missing] = None
        vals = pd.to_numeric(txt, errors="coerce").astype("float64")
        for r in (vals.isna() & ~missing)[lambda m: m].index:
            bad.setdefault(r, "expected a number")
    inf = np.isinf(vals)
    for r in inf[inf].index:
        bad[r] = "expected a finite number"
    vals = vals.where(~inf)
    if kind == "prob":
        vals, frac = probability_scale(vals, pct)
        if frac.any():
            warnings.append(mixed_scale(int(frac.sum())))
    else:
        for r in pct[pct].index:
            bad.setdefault(r, "expected a number, not a percentage")
    for r in bad:
        vals[r] = np.nan
    return vals, bad, warnings


def mixed_scale(below_one: int) -> str:
    """The warning for a probability column on a 0–100 scale with values below 1 (said by the load, the
    PostgreSQL check and the Parquet check alike)."""
    return (
        f"probabilities are on a 0–100 scale (values above 1), so {below_one} value(s) "
        "below 1 were read as under 1%; write all values on one scale"
    )


def probability_scale(n: pd.Series, pct: pd.Series) -> tuple[pd.Series, pd.Series]:
    """Probabilities 0–1 from numbers ``n``, ``pct`` marking the values written with %: those are
    percentages; the others are on a 0–100 scale when any of them is above 1, else 0–1 (Excel cells
    formatted as % export 0.35). Returns the values and the mask of values below 1 in a 0–100 column
    (read as under 1 %: worth a note). The one rule for loading and importing."""
    pct = pct.fillna(False).astype(bool)
    plain = ~pct & n.notna()
    out = n.where(~pct, n / 100.0)
    frac = pd.Series(False, index=n.index)
    if (n[plain] > 1).any():
        frac = plain & (n > 0) & (n < 1)
        out = out.where(~plain, n / 100.0)
    return out, frac


# -- dates ------------------------------------------------------------------------------------------
def _iso(txt: pd.Series) -> pd.Series:
    try:
        d = pd.to_datetime(txt, format="ISO8601", errors="coerce", utc=True)
    except (ValueError, TypeError):  # pragma: no cover - defensive: per-value below
        d = pd.Series(
            [pd.to_datetime(v, format="ISO8601", errors="coerce", utc=True) for v in txt], index=txt.index
        )
    return d.dt.tz_convert(None).astype("datetime64[us]")


def to_date(s: pd.Series, kind: str = "date", date_order: str | None = None):
    """(values, bad: {row: expected}, warnings) for a date or datetime column."""
    bad: dict = {}
    warnings: list[str] = []
    if pd.api.types.is_datetime64_any_dtype(s):
        d = s.dt.tz_convert(None) if getattr(s.dt, "tz", None) is not None else s
        d = d.astype("datetime64[us]")
        return (d.dt.normalize() if kind == "date" else d), bad, warnings
    missing = blank(s, na_words=True)
    txt = s.astype("str").str.strip()
    txt[missing] = None
    is_num_date = txt.str.fullmatch(NUMERIC_DATE.pattern).fillna(False).astype(bool)
    is_serial = txt.str.fullmatch(EXCEL_SERIAL.pattern).fillna(False).astype(bool)
    d = pd.Series(pd.NaT, index=s.index, dtype="datetime64[us]")
    iso_rows = ~missing & ~is_num_date & ~is_serial
    if iso_rows.any():
        d[iso_rows] = _iso(txt[iso_rows])
    if is_num_date.any():
        parts = txt[is_num_date].str.extract(NUMERIC_DATE.pattern)
        a, b = parts[0].astype(int), parts[1].astype(int)
        proves_dmy, proves_mdy = a > 12, b > 12
        if proves_dmy.any() and proves_mdy.any():
            order = "DMY" if proves_dmy.sum() >= proves_mdy.sum() else "MDY"
            against = proves_mdy if order == "DMY" else proves_dmy
            for r in against[against].index:
                bad[r] = (
                    f"expected dates in one order; other rows are {'day/month' if order == 'DMY' else 'month/day'}"
                    "/year"
                )
        elif proves_dmy.any():
            order = "DMY"
        elif proves_mdy.any():
            order = "MDY"
        else:
            order = (date_order or "MDY").upper()
            if not date_order:
                warnings.append(
                    "dates like 03/04/2026 could be day/month or month/day: read as month/day; set "
                    "date_order: DMY in dataset.yml if they are day/month"
                )
        day, month = (a, b) if order == "DMY" else (b, a)
        year = parts[2].astype(int)
        year = year.where(year >= 100, year + 2000)
        built = pd.to_datetime(pd.DataFrame({"year": year, "month": month, "day": day}), errors="coerce")
        d[is_num_date] = built.astype("datetime64[us]")
    if is_serial.any():
        serial = txt[is_serial].astype(float)
        d[is_serial] = (pd.Timestamp("1899-12-30") + pd.to_timedelta(serial, unit="D")).astype(
            "datetime64[us]"
        )
        warnings.append("numbers such as 46326 were read as Excel day serials (days since 1899-12-30)")
    rest = ~missing & d.isna() & iso_rows
    if rest.any():  # other spellings (e.g. "Oct 31, 2026"), one by one
        for r in rest[rest].index:
            v = pd.to_datetime(txt[r], errors="coerce", utc=True)
            d[r] = v.tz_convert(None) if not pd.isna(v) else pd.NaT
    years = iso_rows & txt.str.fullmatch(r"\d{4}").fillna(False).astype(bool)
    if years.any():
        warnings.append(
            f"{int(years.sum())} value(s) are a year alone (such as {txt[years].iloc[0]!r}), read as 1 January "
            "of that year; write whole dates (YYYY-MM-DD)"
        )
    # a year no calendar tool handles ("-026-10-20" reads as year -26: Python's dates stop at 1..9999)
    odd_year = d.notna() & ~d.dt.year.between(1000, 9999)
    d[odd_year] = pd.NaT
    for r in (d.isna() & ~missing)[lambda m: m].index:
        bad.setdefault(r, "expected a date such as 2026-10-31")
    return (d.dt.normalize() if kind == "date" else d), bad, warnings
