"""Import CRM exports into a dataset folder, driven by a mapping profile (YAML).

A profile (``helpers/data/profiles/<name>.yml``, or a user's edited copy given by path) lists the kinds of
export file it knows (``exports``). For each kind it says which headers identify such a file
(``detect``), which canonical table it feeds, and which source column feeds each canonical column
(``columns``: a header, or a list of headers meaning "the first non-empty one, row by row"). It also
maps stage names (``stage_map``), won/lost status values (``status``), other values (``values``),
date formats (``date_formats``) and carries the ``dataset.yml`` content (``dataset``). Headers are
matched ignoring case and repeated spaces. docs/data-contract.md documents every key.

``import_files(profile, files, to)`` reads the files (never writes them), maps them, and writes one
canonical CSV per table plus ``dataset.yml`` (with a ``source:`` block: profile, files, sha256) into a
temporary folder next to ``to``, then renames it into place. Rows keep their order, so row *i* of a
canonical table is data row *i* of its export and the messages of ``helpers.data.dataset.load`` point at
the export's rows. Values that cannot be converted are written as found, so that validation reports
them with file, row and column instead of the import silently dropping them.
"""

from __future__ import annotations

import csv
import difflib
import hashlib
import io
import re
import shutil
import sys
from dataclasses import dataclass, field, replace
from pathlib import Path

import pandas as pd
import yaml

from helpers.data.atomic import replace_folder
from helpers.data.coerce import AMBIGUOUS_DOT, NUMERIC_DATE, THOUSANDS_COMMAS, THOUSANDS_DOTS, decimal_evidence
from helpers.data.coerce import probability_scale as coerce_probability_scale
from helpers.data.config import ConfigError, parse_config
from helpers.data.progress import progress, weighted
from helpers.data.sources import file_sha256
from helpers.data.schema import TABLES

TABLE_EXTENSIONS = (".csv", ".parquet", ".xlsx")  # the files helpers.data.dataset finds as <table><ext>
PROFILES_DIR = Path(__file__).with_name("profiles")
BUILTIN_PROFILES = ("salesforce", "hubspot", "pipedrive", "maven_crm")
# What an import insists on, per table, unless an export lists its own ``required``. The contract only
# needs opportunity_id and stage to load, but nearly every report section also reads owner, dates and
# amount, so a profile that cannot find them is more likely pointed at the wrong export than useful.
# is_won / is_closed are derived from the stage (or a status column), so they are never required.
IMPORT_REQUIRED = {
    "opportunities": ["opportunity_id", "stage", "owner", "created_date", "close_date", "amount"],
}
TRUE_WORDS = {"true", "t", "yes", "y", "1", "1.0", "checked", "x"}
FALSE_WORDS = {"false", "f", "no", "n", "0", "0.0", "unchecked"}
FOOTER = re.compile(r"^(grand )?totals?\b", re.IGNORECASE)  # report total lines after the data
EXPORT_KEYS = {
    "name",
    "table",
    "detect",
    "reject_if",
    "columns",
    "extra_columns",
    "required",
    "values",
    "status",
    "joins",
    "history_from_columns",
    "currency",
    "ignore",
    "description",
}
LATEST = "latest_date_in_data"
PROFILE_KEYS = {
    "name",
    "description",
    "sources",
    "date_formats",
    "date_order",
    "decimal",
    "stage_map",
    "dataset",
    "exports",
}


class ImportProblem(ValueError):
    """An export cannot be imported with the profile; the message says which file, column and why."""


class ProfileError(ValueError):
    """A mapping profile is missing or malformed."""


# --------------------------------------------------------------------------------------------------
# profiles
# --------------------------------------------------------------------------------------------------
def profile_path(profile: str | Path) -> Path:
    """A built-in profile name (``salesforce``) or the path of a YAML file."""
    p = Path(profile)
    if p.suffix.lower() in (".yml", ".yaml") or p.exists():
        if not p.is_file():
            raise ProfileError(f"{p}: profile file not found")
        return p
    builtin = PROFILES_DIR / f"{profile}.yml"
    if not builtin.is_file():
        names = sorted(x.stem for x in PROFILES_DIR.glob("*.yml"))
        hint = difflib.get_close_matches(str(profile), names, n=1)
        raise ProfileError(
            f"unknown profile {str(profile)!r}"
            + (f"; did you mean {hint[0]!r}?" if hint else "")
            + f" Built-in profiles: {', '.join(names)}; or give the path of a YAML profile."
        )
    return builtin


def load_profile(profile: str | Path) -> dict:
    """Read and check a profile; raise ProfileError listing every problem."""
    path = profile_path(profile)
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise ProfileError(f"{path}: not valid YAML: {exc}") from exc
    problems = check_profile(raw)
    if problems:
        raise ProfileError(
            f"{path} has {len(problems)} problem(s):\n" + "\n".join(f"  - {p}" for p in problems)
        )
    raw["_path"] = str(path)
    raw["_builtin"] = path.parent == PROFILES_DIR
    return raw


def check_profile(raw) -> list[str]:
    if not isinstance(raw, dict):
        return ["expected a mapping with keys name, dataset, exports"]
    problems = [
        f"unknown key {k!r} (known: {', '.join(sorted(PROFILE_KEYS))})" for k in raw if k not in PROFILE_KEYS
    ]
    for key in ("name", "dataset", "exports"):
        if key not in raw:
            problems.append(f"missing key {key!r}")
    try:
        parse_config(_dataset_block(raw.get("dataset")), where="dataset")
    except ConfigError as exc:
        problems.append(str(exc).replace("\n", "\n    "))
    exports = raw.get("exports") or []
    if not isinstance(exports, list) or not exports:
        return problems + ["exports: expected a list of export kinds"]
    names = [e.get("name") for e in exports if isinstance(e, dict)]
    if len(set(names)) != len(names):
        problems.append("exports: names must be unique")
    for i, e in enumerate(exports, 1):
        where = f"exports[{i}] ({e.get('name', '?') if isinstance(e, dict) else e!r})"
        if not isinstance(e, dict):
            problems.append(f"{where}: expected a mapping")
            continue
        problems += [f"{where}: unknown key {k!r}" for k in e if k not in EXPORT_KEYS]
        if not e.get("name") or not e.get("detect"):
            problems.append(f"{where}: needs 'name' and 'detect' (headers that identify the file)")
        table = e.get("table")
        if table is None:
            if e.get("columns"):
                problems.append(f"{where}: has columns but no table (lookup-only exports map no columns)")
            continue
        if table not in TABLES:
            problems.append(f"{where}: unknown table {table!r}; tables: {', '.join(TABLES)}")
            continue
        known = set(TABLES[table].column_names)
        for col in e.get("columns") or {}:
            if col not in known:
                hint = difflib.get_close_matches(col, known, n=1)
                problems.append(
                    f"{where}: {col!r} is not a column of {table}"
                    + (f"; did you mean {hint[0]!r}?" if hint else "")
                    + " (put non-contract columns under extra_columns)"
                )
        for col in e.get("required") or []:
            if col not in (e.get("columns") or {}):
                problems.append(f"{where}: required column {col!r} is not mapped under columns")
        for j in e.get("joins") or []:
            if j.get("export") not in names or not j.get("column"):
                problems.append(f"{where}: join needs a known export and a column, got {j!r}")
    return problems


def _dataset_block(ds) -> dict:
    """The profile's ``dataset:`` block as dataset.yml would hold it, minus ``as_of: latest_date_in_data``
    (a rule of the import, replaced by a date when the dataset is written)."""
    ds = dict(ds or {}) if isinstance(ds, dict) else ds
    if isinstance(ds, dict) and str(ds.get("as_of", "")) == LATEST:
        del ds["as_of"]
    return ds


# --------------------------------------------------------------------------------------------------
# reading exports
# --------------------------------------------------------------------------------------------------
def norm_header(name: str) -> str:
    return " ".join(str(name).replace("\ufeff", "").split()).casefold()


def _decode(data: bytes) -> str:
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        return data.decode("utf-16")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        first = exc
    try:
        return data.decode("cp1252")  # Excel "CSV" from Windows; strict: no character is replaced
    except UnicodeDecodeError as exc:
        raise ValueError(
            f"is not text in UTF-8 ({first.reason} at byte {first.start}) or Windows-1252 ({exc.reason} "
            f"at byte {exc.start}); save it as UTF-8"
        ) from None


def read_export(path: Path) -> pd.DataFrame:
    """Read an export as text cells ('' for blank). CSV (comma, semicolon, tab or ``|``; UTF-8, UTF-16
    or Windows-1252, decoded whole and strictly) or Excel. Trailing report footer lines are dropped: the lines Salesforce appends
    ("Grand Totals (n records)", "Confidential Information - Do Not Distribute", "Copyright …") have at
    most one non-empty cell, or start with "Total" / "Grand Totals"."""
    suffix = path.suffix.lower()
    if suffix in (".xlsx", ".xlsm", ".xls"):
        header = [str(c) for c in pd.read_excel(path, header=None, nrows=1, dtype=str).iloc[0].fillna("")]
        df = pd.read_excel(path, dtype=str, keep_default_na=False)
    else:
        try:
            text = _decode(path.read_bytes())
        except ValueError as exc:
            raise ImportProblem(f"Cannot import:\n  - {path.name}: {exc}") from None
        first = text.split("\n", 1)[0]
        sep = max((",", ";", "\t", "|"), key=first.count)
        header = next(csv.reader(io.StringIO(text), delimiter=sep, quotechar='"'), [])
        df = pd.read_csv(io.StringIO(text), dtype=str, keep_default_na=False, sep=sep, quotechar='"')
    _check_unique_headers(header, path.name)
    df = df.fillna("").astype(str)
    df.columns = [" ".join(str(c).replace("\ufeff", "").split()) for c in df.columns]
    filled = (df.apply(lambda s: s.str.strip()) != "").sum(axis=1)
    first = df.iloc[:, 0].str.strip() if len(df.columns) else pd.Series(dtype=str)
    n = len(df)
    while n and len(df.columns) > 1 and (filled.iloc[n - 1] <= 1 or FOOTER.match(first.iloc[n - 1])):
        n -= 1
    return df.iloc[:n].reset_index(drop=True)


def _column_letter(i: int) -> str:
    """Spreadsheet column letters of 1-based column ``i``: 1 -> A, 27 -> AA."""
    out = ""
    while i:
        i, r = divmod(i - 1, 26)
        out = chr(65 + r) + out
    return out


def _check_unique_headers(header: list[str], fname: str) -> None:
    """Two columns with the same header (ignoring case and spaces) are an error naming both positions:
    which one a profile should read cannot be told."""
    seen: dict[str, int] = {}
    problems = []
    for i, h in enumerate(header, 1):
        key = norm_header(h)
        if not key:
            continue
        if key in seen:
            j = seen[key]
            problems.append(
                f"{fname}: header {' '.join(str(h).split())!r} appears twice, in columns {j} "
                f"({_column_letter(j)}) and {i} ({_column_letter(i)}); rename or remove one"
            )
        else:
            seen[key] = i
    if problems:
        raise ImportProblem("Cannot import:\n" + "\n".join(f"  - {p}" for p in problems))


def _alternatives(entry) -> list[str]:
    return [str(x) for x in entry] if isinstance(entry, list) else [str(entry)]


def _detect_score(export: dict, headers: set[str]) -> tuple[int, list[str]]:
    """(number of detect entries found, missing entries); -1 when a reject_if header is present."""
    if any(norm_header(h) in headers for h in export.get("reject_if") or []):
        return -1, []
    found, missing = 0, []
    for entry in export["detect"]:
        alts = _alternatives(entry)
        if any(norm_header(a) in headers for a in alts):
            found += 1
        else:
            missing.append(" or ".join(repr(a) for a in alts))
    return found, missing


def _closest_header(names: list[str], headers: list[str]) -> str:
    best, score = None, 0.0
    for name in names:
        for h in headers:
            r = difflib.SequenceMatcher(None, name.casefold(), h.casefold()).ratio()
            if r > score:
                best, score = h, r
    return (
        f"closest header in the file: {best!r}" if best and score >= 0.5 else "no similar header in the file"
    )


def classify_files(profile: dict, frames: dict[Path, pd.DataFrame]) -> dict[str, Path]:
    """Which export kind each file is: the kind whose ``detect`` headers are all present (the most
    specific one when several match). A file that matches none is an error naming the headers it lacks."""
    kinds: dict[str, Path] = {}
    problems = []
    for path, df in frames.items():
        headers = {norm_header(c) for c in df.columns}
        scored = [(e, *_detect_score(e, headers)) for e in profile["exports"]]
        full = [(e, s) for e, s, miss in scored if s >= 0 and not miss]
        if not full:
            e, _, miss = max(scored, key=lambda t: t[1] / max(len(t[0]["detect"]), 1))
            near = _closest_header([a for m in miss for a in re.findall(r"'([^']*)'", m)], list(df.columns))
            problems.append(
                f"{path.name}: does not look like any export the {profile['name']!r} profile knows "
                f"({', '.join(x['name'] for x in profile['exports'])}). Nearest is {e['name']!r}, "
                f"which needs header(s) {', '.join(miss)}; {near}."
            )
            continue
        export = max(full, key=lambda t: t[1])[0]
        if export["name"] in kinds:
            problems.append(
                f"{path.name} and {kinds[export['name']].name} are both {export['name']!r} exports; "
                "import one file per kind (concatenate them first)"
            )
            continue
        kinds[export["name"]] = path
    if problems:
        raise ImportProblem("Cannot import:\n" + "\n".join(f"  - {p}" for p in problems))
    return kinds


# --------------------------------------------------------------------------------------------------
# value conversion
# --------------------------------------------------------------------------------------------------
def parse_dates(s: pd.Series, formats: list[str]) -> pd.Series:
    """Datetimes from text, trying each strptime format in order, then ISO 8601; NaT where none fits."""
    txt = s.str.strip()
    out = pd.Series(pd.NaT, index=s.index, dtype="datetime64[us]")
    todo = txt != ""
    for fmt in [*formats, "ISO8601"]:
        if not todo.any():
            break
        got = pd.to_datetime(txt[todo], format=fmt, errors="coerce")
        if getattr(got.dt, "tz", None) is not None:
            got = got.dt.tz_localize(None)
        ok = got.notna()
        out.loc[ok[ok].index] = got[ok].astype("datetime64[us]")
        todo = todo & out.isna()
    return out


AMOUNT_DECORATION = re.compile(r"^[A-Z]{3}\s?(?=[-+(\d.,])|(?<=[\d.,)])\s?[A-Z]{3}$|[$€£¥%\s\u00a0\u202f']")
SEPARATOR_NAME = {".": "a decimal point", ",": "a decimal comma"}


@dataclass
class Column:
    """Where a column being converted comes from, for messages: file, header(s), export row numbers
    (1-based data rows, index-aligned with the values), and the lists errors and notes go to."""

    fname: str
    header: str
    rows: pd.Series | None = None
    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    file_date_order: str | None = None  # what the file's other date columns show (DMY / MDY)

    def at(self, i, value: str) -> str:
        r = int(self.rows[i]) if self.rows is not None else int(i) + 1
        return f"{self.fname}, row {r} (line {r + 1}), column {self.header!r}: value {value!r}"

    def row(self, i) -> str:
        r = int(self.rows[i]) if self.rows is not None else int(i) + 1
        return f"row {r} (line {r + 1})"


def _bare_number(s: pd.Series) -> pd.Series:
    """Number text without currency codes or symbols, %, spaces or apostrophes (thousands), and with
    '(100)' as '-100'."""
    txt = s.str.strip().str.replace(AMOUNT_DECORATION, "", regex=True)
    return txt.str.replace(r"^\((.*)\)$", r"-\1", regex=True)


def _numbers_with(txt: pd.Series, decimal: str) -> pd.Series:
    if decimal == ",":
        txt = txt.str.replace(".", "", regex=False).str.replace(",", ".", regex=False)
    else:
        txt = txt.str.replace(",", "", regex=False)
    n = pd.to_numeric(txt.where(txt != "", None), errors="coerce").astype("float64")
    return n.where(n.abs() != float("inf"))  # -1e400 is not a number anyone wrote: keep it as found


def parse_numbers(s: pd.Series, decimal: str | None = ".") -> pd.Series:
    """Numbers from text such as '1,234.50', '$1,234.50', 'USD 1,234.50', '(100)' or '12%', with the given
    decimal separator (see ``column_decimal`` to find it). NaN where the text is not a finite number."""
    return _numbers_with(_bare_number(s), decimal or ".")


def column_decimal(s: pd.Series, declared: str | None, where: Column) -> str:
    """The decimal separator of a number column: the profile's ``decimal`` when it says, checked against
    every value; else the one the values imply (``decimal_evidence``). A column whose values disagree,
    or whose only telling values are like 1.234 with no declaration, is an error in ``where.problems``."""
    txt = _bare_number(s)
    ev = txt.map(decimal_evidence)
    if declared:
        other = ev[ev.isin([".", ","]) & (ev != declared)]
        for i in other.index[:5]:
            where.problems.append(
                f"{where.at(i, s[i])} has {SEPARATOR_NAME[other[i]]}, but the profile says "
                f"decimal: {declared!r}"
            )
        return declared
    dots, commas = ev[ev == "."], ev[ev == ","]
    if len(dots) and len(commas):
        i, j = commas.index[0], dots.index[0]
        where.problems.append(
            f"{where.at(i, s[i])} has a decimal comma, but {where.row(j)} value {s[j]!r} has a "
            "decimal point; make the column consistent or set decimal: in the profile"
        )
        return "."
    if len(dots) or len(commas):
        return "." if len(dots) else ","
    amb = ev[ev == "?"]
    if len(amb):
        i = amb.index[0]
        t = txt[i].lstrip("+-")
        where.problems.append(
            f"{where.at(i, s[i])} reads as {t} with a decimal point or {t.replace('.', '')} with "
            "a decimal comma, and no value of the column tells which; set decimal: '.' or ',' "
            "in the profile"
        )
    return "."


def _fmt_number(x: float) -> str:
    return format(x, "f").rstrip("0").rstrip(".") if pd.notna(x) else ""


def probability_scale(s: pd.Series, n: pd.Series, where: Column) -> pd.Series:
    """Probabilities 0–1 from numbers ``n`` read from text ``s`` (``coerce.probability_scale``): a value written with % is a percentage;
    the others are 0–100 when any of them is above 1, else 0–1 (Excel cells formatted as % export 0.35).
    A 0–100 column that also holds fractions below 1 gets a note (0.5 there is read as 0.5 %)."""
    out, frac = coerce_probability_scale(n, s.str.contains("%", regex=False))
    if frac.any():
        shown = "; ".join(f"{where.row(i)} {s[i]!r}, read as {s[i]} %" for i in frac[frac].index[:3])
        where.notes.append(
            f"{where.fname}, column {where.header!r}: values above 1 make it a 0–100 column, yet "
            f"{int(frac.sum())} value(s) are below 1 ({shown}); check them"
        )
    return out


def date_order_evidence(s: pd.Series) -> tuple[pd.Index, pd.Index]:
    """Rows whose numeric date can only be day-first (first field > 12) and only month-first (second > 12)."""
    m = s.str.strip().str.extract(NUMERIC_DATE.pattern).apply(pd.to_numeric, errors="coerce")
    return m.index[m[0] > 12], m.index[m[1] > 12]


def column_date_order(s: pd.Series, where: Column) -> str | None:
    """'DMY' or 'MDY' when the column's values show it; None when they do not (or disagree: an error)."""
    dmy, mdy = date_order_evidence(s)
    if len(dmy) and len(mdy):
        i, j = dmy[0], mdy[0]
        where.problems.append(
            f"{where.at(i, s[i])} is day-first, but {where.row(j)} value {s[j]!r} is month-first; "
            "make the column consistent"
        )
        return None
    return "DMY" if len(dmy) else "MDY" if len(mdy) else None


def profile_date_order(profile: dict) -> str | None:
    """The profile's ``date_order`` (DMY or MDY), else the order of its first day-and-month date format."""
    if profile.get("date_order"):
        return str(profile["date_order"]).upper()
    for f in profile.get("date_formats") or []:
        d, m, y = f.find("%d"), f.find("%m"), f.find("%Y")
        if d >= 0 and m >= 0 and not (0 <= y < min(d, m)):
            return "DMY" if d < m else "MDY"
    return None


def formats_in_order(formats: list[str], order: str | None) -> list[str]:
    """The profile's strptime formats with day and month put in ``order`` ('DMY' / 'MDY'; year-first
    formats are left alone), followed by plain d/m/y formats in that order for exports the profile's
    formats do not cover."""
    if order not in ("DMY", "MDY"):
        return list(formats)
    out = []
    extra = [f"%d{sep}%m{sep}%Y{t}" for sep in "/.-" for t in ("", " %H:%M", " %H:%M:%S")]
    for f in [*formats, *extra]:
        d, m, y = f.find("%d"), f.find("%m"), f.find("%Y")
        if d >= 0 and m >= 0 and not (0 <= y < min(d, m)) and (d < m) != (order == "DMY"):
            f = f.replace("%d", "\0").replace("%m", "%d").replace("\0", "%m")
        if f not in out:
            out.append(f)
    return out


def convert_column(
    s: pd.Series, kind: str, profile: dict, percent: bool = False, where: Column | None = None
) -> pd.Series:
    """Text in the contract's format: ISO dates, plain numbers, probabilities 0–1, true/false.
    Values that do not convert are kept as found (validation then reports them); values that convert
    only by a guess are errors in ``where.problems``."""
    where = where or Column("?", str(s.name))
    s = s.str.strip()
    blank = s == ""
    if kind in ("date", "datetime"):
        order = column_date_order(s, where) or where.file_date_order or profile_date_order(profile)
        d = parse_dates(s, formats_in_order(profile.get("date_formats") or [], order))
        fmt = "%Y-%m-%d" if kind == "date" else "%Y-%m-%d %H:%M:%S"
        return d.dt.strftime(fmt).where(d.notna(), s).astype(str)
    if kind in ("money", "number", "prob"):
        n = parse_numbers(s, column_decimal(s, profile.get("decimal"), where))
        if kind == "prob":
            n = probability_scale(s, n, where)
        return n.map(_fmt_number).where(n.notna(), s).astype(str)
    if kind == "bool":
        low = s.str.casefold()
        out = s.copy()
        out[low.isin(TRUE_WORDS)] = "true"
        out[low.isin(FALSE_WORDS)] = "false"
        return out
    return s.where(~blank, "")


# --------------------------------------------------------------------------------------------------
# mapping
# --------------------------------------------------------------------------------------------------
@dataclass
class Mapped:
    tables: dict[str, list[pd.DataFrame]] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    sources: dict[str, list[pd.DataFrame]] = field(default_factory=dict)  # see map_export

    def add(self, table: str, df: pd.DataFrame, source: pd.DataFrame) -> None:
        self.tables.setdefault(table, []).append(df)
        self.sources.setdefault(table, []).append(source)


def _column_spec(entry) -> dict:
    if isinstance(entry, dict):
        spec = dict(entry)
        spec["from"] = _alternatives(spec.get("from", []))
        return spec
    return {"from": _alternatives(entry)}


def _source_values(
    df: pd.DataFrame, lookup: dict[str, str], spec: dict
) -> tuple[pd.Series | None, list[str]]:
    """Row-wise first non-empty value among the spec's source headers that exist in the file."""
    present = [lookup[norm_header(n)] for n in spec["from"] if norm_header(n) in lookup]
    if not present:
        return None, []
    out = pd.Series("", index=df.index, dtype=str)
    for col in present:
        v = df[col].astype(str).str.strip()
        if spec.get("zero_is_blank"):
            num = pd.to_numeric(v.str.replace(",", "", regex=False), errors="coerce")
            v = v.where(~(num == 0), "")
        out = out.where(out != "", v)
    return out, present


def _loose(s: pd.Series) -> pd.Series:
    return s.astype(str).str.casefold().str.replace(r"[^0-9a-z]", "", regex=True)


def _apply_joins(df: pd.DataFrame, export: dict, lookups: dict[str, pd.DataFrame]) -> pd.DataFrame:
    """Bring columns of lookup exports in as ``<export>.<column>`` (left join on a key)."""
    out = df.copy()
    for j in export.get("joins") or []:
        other = lookups.get(j["export"])
        if other is None:
            continue
        on = next((c for c in df.columns if norm_header(c) == norm_header(j["column"])), None)
        key = next(
            (c for c in other.columns if norm_header(c) == norm_header(j.get("key", j["column"]))), None
        )
        if on is None or key is None:
            continue
        loose = j.get("match") == "loose"
        left = _loose(df[on]) if loose else df[on].str.strip()
        right = other.copy()
        right["__key"] = _loose(other[key]) if loose else other[key].str.strip()
        right = right.drop_duplicates("__key").set_index("__key")
        for col in other.columns:
            out[f"{j['export']}.{col}"] = left.map(right[col]).fillna("").astype(str).values
    return out


def map_export(
    df: pd.DataFrame,
    export: dict,
    profile: dict,
    fname: str,
    lookups: dict[str, pd.DataFrame],
    missing: list[str],
    problems: list[str] | None = None,
    notes: list[str] | None = None,
) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame | None, pd.DataFrame | None]:
    """One export → (canonical table, its source, history rows from per-stage date columns or None, their
    source). A source is a frame aligned with its table's rows holding, per canonical column, the
    value as written in the export (``<col>``) and its header (``<col>@``), plus ``_file`` and ``_row``
    (1-based data row of the export), so that later messages can quote the user's file."""
    problems = [] if problems is None else problems
    notes = [] if notes is None else notes
    table = TABLES[export["table"]]
    src = _apply_joins(df, export, lookups)
    lookup = {norm_header(c): c for c in src.columns}
    columns = export.get("columns") or {}
    required = export.get("required")
    if required is None:
        required = IMPORT_REQUIRED.get(table.name, table.required_columns)
    out = pd.DataFrame(index=src.index)
    raw = pd.DataFrame({"_file": fname, "_row": src.index + 1}, index=src.index)
    headers = {}
    for canon, entry in columns.items():
        spec = _column_spec(entry)
        values, present = _source_values(src, lookup, spec)
        if values is None:
            if canon in required:
                missing.append(
                    f"{fname} ({export['name']} export): required column {canon} needs header "
                    f"{' or '.join(repr(n) for n in spec['from'])}, which the file lacks; "
                    f"{_closest_header(spec['from'], list(df.columns))}"
                )
            continue
        raw[canon] = values.str.strip()
        raw[canon + "@"] = headers[canon] = " / ".join(present)
        if spec.get("fallback"):  # values from a header after the first are a default the profile names
            first, _ = _source_values(src, lookup, {**spec, "from": spec["from"][:1]})
            taken = (values.str.strip() != "") & (True if first is None else first.str.strip() == "")
            raw[canon + DEFAULTED] = taken.map({True: str(spec["fallback"]), False: ""})
        vmap = (export.get("values") or {}).get(canon)
        if vmap:
            values = values.map(lambda v, m=vmap: str(m.get(v, v))).astype(str)
        if canon == "stage":
            smap = profile.get("stage_map") or {}
            values = values.map(lambda v, m=smap: str(m.get(v, v))).astype(str)
        out[canon] = values
    for canon in required:
        if canon not in columns:
            missing.append(
                f"{fname} ({export['name']} export): required column {canon} is not mapped by the profile"
            )
    status = export.get("status")
    if status:
        keep = _apply_status(out, src, lookup, status, fname, export["name"], missing, problems, notes)
        out, raw, src = out[keep], raw[keep], src[keep]
    file_order = file_date_order(
        out, table, src, hist_pattern=(export.get("history_from_columns") or {}).get("pattern")
    )
    for canon in list(out.columns):
        col = table.column(canon)
        spec = _column_spec(columns.get(canon, []))
        where = Column(fname, headers.get(canon, canon), raw["_row"], problems, notes, file_order)
        out[canon] = convert_column(
            out[canon], col.kind, profile, percent=bool(spec.get("percent")), where=where
        )
    for extra, entry in (export.get("extra_columns") or {}).items():
        values, _ = _source_values(src, lookup, _column_spec(entry))
        if values is not None:
            out[extra] = values
    history = history_src = None
    hist = export.get("history_from_columns")
    if hist and "opportunity_id" in out.columns:
        history, history_src = _history_from_columns(
            src, out["opportunity_id"], hist, profile, Column(fname, "", None, problems, notes, file_order)
        )
    return out.reset_index(drop=True), raw.reset_index(drop=True), history, history_src


def file_date_order(
    out: pd.DataFrame, table, src: pd.DataFrame, hist_pattern: str | None = None
) -> str | None:
    """'DMY' / 'MDY' when the export's date columns (mapped ones and per-stage history columns) show one
    order and none shows the other; None otherwise (each column then follows the profile)."""
    cols = [out[c] for c in out.columns if table.column(c).kind in ("date", "datetime")]
    if hist_pattern:
        cols += [src[c] for c in src.columns if re.match(hist_pattern, c)]
    seen = set()
    for s in cols:
        dmy, mdy = date_order_evidence(s.astype(str))
        seen |= ({"DMY"} if len(dmy) else set()) | ({"MDY"} if len(mdy) else set())
    return seen.pop() if len(seen) == 1 else None


def _apply_status(out, src, lookup, status, fname, export_name, missing, problems, notes) -> pd.Series:
    """A status column (open / won / lost) sets is_won and is_closed, and the stage of closed deals.
    Returns the rows to keep: rows whose status is listed under ``drop`` (Pipedrive's deleted deals) are
    left out with a note; a status the profile does not list is an error."""
    col = lookup.get(norm_header(status["column"]))
    if col is None:
        missing.append(
            f"{fname} ({export_name} export): status column {status['column']!r} is missing; "
            f"{_closest_header([status['column']], list(src.columns))}"
        )
        return pd.Series(True, index=out.index)
    v = src[col].str.strip().str.casefold()
    won = v.isin({str(x).casefold() for x in status.get("won", [])})
    lost = v.isin({str(x).casefold() for x in status.get("lost", [])})
    opened = v.isin({str(x).casefold() for x in status.get("open", [])})
    dropped = v.isin({str(x).casefold() for x in status.get("drop", [])})
    known = won | lost | opened
    where = Column(fname, col)
    unknown = ~known & ~dropped & (v != "")
    listed = ", ".join(str(x) for k in ("open", "won", "lost", "drop") for x in status.get(k, []))
    for i in unknown[unknown].index[:5]:
        problems.append(f"{where.at(i, src.at[i, col].strip())} is not a status the profile knows ({listed})")
    if unknown.sum() > 5:
        problems.append(
            f"{fname}: … and {int(unknown.sum()) - 5} more row(s) with a status the profile does not know"
        )
    if dropped.any():
        shown = ", ".join(where.row(i) for i in dropped[dropped].index[:5]) + (
            ", …" if dropped.sum() > 5 else ""
        )
        notes.append(
            f"{fname}: left out {int(dropped.sum())} {'/'.join(map(str, status['drop']))} deal(s) "
            f"(column {col!r}: {shown})"
        )
    out["is_won"] = won.map({True: "true", False: "false"}).where(known, "").astype(str)
    out["is_closed"] = (won | lost).map({True: "true", False: "false"}).where(known, "").astype(str)
    if "stage" in out.columns:
        if status.get("won_stage"):
            out.loc[won, "stage"] = status["won_stage"]
        if status.get("lost_stage"):
            out.loc[lost, "stage"] = status["lost_stage"]
    return ~dropped


def _history_from_columns(
    src: pd.DataFrame, ids: pd.Series, hist: dict, profile: dict, where: Column
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """One opportunity_history row per non-empty per-stage date cell (HubSpot's
    'Date entered "<stage> (<pipeline>)"' columns): opportunity_id, changed_at, stage."""
    pattern = re.compile(hist["pattern"])
    smap = profile.get("stage_map") or {}
    parts = []
    for col in src.columns:
        m = pattern.match(col)
        if not m:
            continue
        cells = src[col].str.strip()
        has = (cells != "") & (ids != "")
        if not has.any():
            continue
        stage = m.group("stage")
        at = Column(
            where.fname, col, cells.index.to_series() + 1, where.problems, where.notes, where.file_date_order
        )
        parts.append(
            pd.DataFrame(
                {
                    "opportunity_id": ids[has].values,
                    "changed_at": convert_column(cells[has], "datetime", profile, where=at).values,
                    "stage": str(smap.get(stage, stage)),
                    "_row": has[has].index + 1,
                    "_raw": cells[has].values,
                    "_header": col,
                }
            )
        )
    if not parts:
        return pd.DataFrame(columns=["opportunity_id", "changed_at", "stage"]), pd.DataFrame(
            columns=["_file", "_row"]
        )
    h = (
        pd.concat(parts, ignore_index=True)
        .sort_values(["_row", "changed_at"], kind="stable")
        .reset_index(drop=True)
    )
    raw = pd.DataFrame(
        {"_file": where.fname, "_row": h["_row"], "changed_at": h["_raw"], "changed_at@": h["_header"]}
    )
    return h.drop(columns=["_row", "_raw", "_header"]), raw


def _check_currency(df: pd.DataFrame, export: dict, currency: str, fname: str) -> str | None:
    cols = [
        c for c in df.columns if norm_header(c) in {norm_header(x) for x in _alternatives(export["currency"])}
    ]
    if not cols:
        return None
    vals = df[cols[0]].str.strip()
    other = vals[(vals != "") & (vals.str.upper() != currency.upper())]
    if other.empty:
        return None
    counts = ", ".join(f"{k}: {v}" for k, v in other.value_counts().items())
    return (
        f"{fname}: {len(other)} row(s) are not in {currency} ({counts}); their amounts are imported "
        "as they are, not converted — filter the export or convert first"
    )


CURRENCY_SYMBOLS = {"$": "USD", "€": "EUR", "£": "GBP", "¥": "JPY"}
CURRENCY_IN_TEXT = re.compile(
    r"^\s*(?P<pre>[A-Z]{3}|[$€£¥])\s?[-+(\d.,]|[\d.,)]\s?(?P<post>[A-Z]{3}|[$€£¥])\s*$"
)


def _currency_of(text: str, dataset_currency: str) -> str | None:
    """The currency an amount text names ('1 200 EUR', '€ 50', 'USD 10'), None when it names none.
    '$' stands for the dataset's currency when that is a dollar (USD, CAD, AUD…), else for USD."""
    m = CURRENCY_IN_TEXT.search(text)
    if not m:
        return None
    code = m.group("pre") or m.group("post")
    if code == "$" and dataset_currency.upper().endswith("D"):
        return dataset_currency.upper()
    return CURRENCY_SYMBOLS.get(code, code)


def _currency_in_amounts(source: pd.DataFrame, table, currency: str) -> list[str]:
    """Notes for money columns whose text names another currency than the dataset's."""
    notes = []
    for col in table.columns:
        if col.kind != "money" or col.name not in source.columns:
            continue
        named = source[col.name].map(lambda t: _currency_of(str(t), currency))
        other = named[named.notna() & (named != currency.upper())]
        if other.empty:
            continue
        i = other.index[0]
        counts = ", ".join(f"{k}: {v}" for k, v in other.value_counts().items())
        r = int(source.at[i, "_row"])
        notes.append(
            f"{source.at[i, '_file']}, column {source.at[i, col.name + '@']!r}: {len(other)} amount(s) are "
            f"written in another currency than {currency} ({counts}; e.g. row {r} (line {r + 1}) "
            f"{source.at[i, col.name]!r}); they are imported as they are, not converted — filter the "
            "export or convert first"
        )
    return notes


def map_files(profile: dict, files: list[Path]) -> tuple[Mapped, dict[str, Path], dict[str, int]]:
    frames = {p: read_export(p) for p in progress(files, desc="reading the exports", unit="files")}
    kinds = classify_files(profile, frames)
    by_name = {e["name"]: e for e in profile["exports"]}
    lookups = {name: frames[p] for name, p in kinds.items()}
    mapped, missing, problems = Mapped(), [], []
    rows = {}
    currency = str((profile.get("dataset") or {}).get("currency", "USD"))
    for name, path in weighted(
        kinds.items(), lambda kp: len(frames[kp[1]]), postfix=lambda kp: kp[1].name, desc="mapping the exports", unit="rows"
    ):
        export = by_name[name]
        rows[name] = len(frames[path])
        if export.get("ignore"):
            continue
        if not len(frames[path]):
            raise ImportProblem(
                f"{path.name} has no data rows (a header only, or report footer lines); export it "
                "again with its rows"
            )
        if not export.get("table"):
            continue
        table, table_src, history, history_src = map_export(
            frames[path], export, profile, path.name, lookups, missing, problems, mapped.notes
        )
        mapped.add(export["table"], table, table_src)
        if history is not None and len(history):
            mapped.add("opportunity_history", history, history_src)
        if export.get("currency"):
            note = _check_currency(frames[path], export, currency, path.name)
            if note:
                mapped.notes.append(note)
        mapped.notes += _currency_in_amounts(table_src, TABLES[export["table"]], currency)
    if missing:
        raise ImportProblem(
            f"Cannot import with profile {profile['name']!r}: {len(missing)} required column(s) unmapped:\n"
            + "\n".join(f"  - {m}" for m in missing)
            + "\nAdd the column(s) to the export, or copy the profile and map your header names "
            "(see docs/data-contract.md, 'Profiles')."
        )
    if problems:
        raise ImportProblem(
            f"Cannot import with profile {profile['name']!r}: {len(problems)} value(s) cannot be "
            "read without guessing:\n" + "\n".join(f"  - {p}" for p in problems)
        )
    if "opportunities" not in mapped.tables:
        needs = [e["name"] for e in profile["exports"] if e.get("table") == "opportunities"]
        raise ImportProblem(
            f"No opportunities export among the files: the {profile['name']!r} profile needs "
            f"a {' or '.join(repr(n) for n in needs)} export."
        )
    return mapped, kinds, rows


# --------------------------------------------------------------------------------------------------
# writing
# --------------------------------------------------------------------------------------------------
def _ordered(df: pd.DataFrame, table: str) -> pd.DataFrame:
    contract = [c for c in TABLES[table].column_names if c in df.columns]
    extras = [c for c in df.columns if c not in contract]
    return df[contract + extras]


DEFAULTED = "!default"  # a source column: the profile's ``fallback`` text where the value is that default


def _defaults_taken(tables: dict, sources: dict, cfg) -> dict:
    """``{"<table>.<column>": {value, rows, of[, open, open_of]}}`` for the columns whose profile spec names a
    ``fallback``: how many rows (and open deals) took it. Recorded in dataset.yml ``source.defaults``, so a
    report can say which figures rest on a default (open pipeline at list price)."""
    out = {}
    for tname, src in sources.items():
        for col in [c for c in src.columns if c.endswith(DEFAULTED)]:
            label = src[col].fillna("").astype(str).to_numpy()
            took = label != ""
            if not took.any():
                continue
            entry = {"value": str(label[took][0]), "rows": int(took.sum()), "of": len(took)}
            if tname == "opportunities" and "stage" in tables[tname].columns:
                open_ = ~tables[tname]["stage"].isin([*cfg.won_stages, *cfg.lost_stages]).to_numpy()
                entry.update(open=int((took & open_).sum()), open_of=int(open_.sum()))
            out[f"{tname}.{col.removesuffix(DEFAULTED)}"] = entry
    return out


def _finish_opportunities(opp: pd.DataFrame, cfg) -> pd.DataFrame:
    """Fill is_won / is_closed from the stage where the export has no status for a row."""
    if "stage" not in opp.columns:
        return opp
    won = opp["stage"].isin(cfg.won_stages)
    closed = won | opp["stage"].isin(cfg.lost_stages)
    for col, derived in (("is_won", won), ("is_closed", closed)):
        d = derived.map({True: "true", False: "false"}).astype(str)
        opp[col] = opp[col].where(opp[col] != "", d) if col in opp.columns else d
    return opp


def _latest_date(tables: dict[str, pd.DataFrame]) -> str | None:
    """The latest recorded event: created dates, close dates of closed deals, last activities and history
    changes. Expected close dates of open deals lie in the future and are left out."""

    def iso(s: pd.Series) -> pd.Series:
        return pd.to_datetime(s.where(s != "", None), format="ISO8601", errors="coerce")

    dates = []
    opp = tables["opportunities"]
    for c in ("created_date", "last_activity_date"):
        if c in opp.columns:
            dates.append(iso(opp[c]).max())
    if "close_date" in opp.columns:
        closed = (
            opp["is_closed"] == "true" if "is_closed" in opp.columns else pd.Series(False, index=opp.index)
        )
        dates.append(iso(opp.loc[closed, "close_date"]).max())
    hist = tables.get("opportunity_history")
    if hist is not None and "changed_at" in hist.columns:
        dates.append(iso(hist["changed_at"]).max())
    dates = [d for d in dates if pd.notna(d)]
    return max(dates).date().isoformat() if dates else None


def _previous_import(to: Path) -> dict:
    """The ``source:`` block of a folder an earlier ``revops import`` wrote; ImportProblem for any other
    folder (``--force`` must never delete a folder it did not write, such as data/ holding other datasets)."""
    why = None
    yml = to / "dataset.yml"
    if not yml.is_file():
        why = "it has no dataset.yml"
    else:
        try:
            raw = yaml.safe_load(yml.read_text(encoding="utf-8"))
        except (yaml.YAMLError, UnicodeDecodeError):
            raw = None
        src = raw.get("source") if isinstance(raw, dict) else None
        if not isinstance(src, dict) or src.get("imported_by") != "revops import":
            why = "its dataset.yml has no 'source: imported_by: revops import'"
    if why:
        raise ImportProblem(
            f"{to} was not written by `revops import` ({why}); --force only replaces a folder "
            "that an import wrote. Choose a new --to folder (e.g. data/<name>), or move the "
            "folder away yourself."
        )
    return src


_REMOVED = object()
DATA_DEPENDENT_SETTINGS = ("as_of",)  # recomputed from each export unless the user set it


def _setting_digests(ds: dict) -> dict[str, str]:
    """sha256 (12 hex digits) of each setting of a dataset.yml as the import wrote it (``source``
    excluded), kept in ``source.settings``: what a later ``--force`` compares with the file to tell the
    settings a user edited from the ones the import wrote."""
    return {
        k: hashlib.sha256(yaml.safe_dump(v, sort_keys=True).encode()).hexdigest()[:12]
        for k, v in ds.items()
        if k != "source"
    }


def _edited_settings(to: Path, previous: dict, fresh: dict) -> dict:
    """Settings of ``to``/dataset.yml changed, added or removed by hand since the import wrote them:
    ``{key: value, or _REMOVED}``. Folders imported before ``source.settings`` existed are compared
    with what this import writes (``fresh``), the data-dependent ``as_of`` aside."""
    current = yaml.safe_load((to / "dataset.yml").read_text(encoding="utf-8")) or {}
    written = previous.get("settings")
    if not isinstance(written, dict):
        written = {k: v for k, v in _setting_digests(fresh).items() if k not in DATA_DEPENDENT_SETTINGS}
        current = {k: v for k, v in current.items() if k not in DATA_DEPENDENT_SETTINGS}
    now = _setting_digests(current)
    return {
        k: current.get(k, _REMOVED) for k in sorted(set(now) | set(written)) if now.get(k) != written.get(k)
    }


def _carried_over(to: Path, previous: dict, writes: list[str]) -> list[Path]:
    """Files of the folder being replaced to copy into the new one: table files (``quotas.csv``, ``reps.xlsx``…)
    that the previous import did not write and this one does not produce — added by hand. Any other file
    the previous import did not write (notes, folders, a hand-made table this import would overwrite) is
    an ImportProblem listing them: nothing is deleted that the import did not write."""
    wrote = previous.get("wrote")
    if wrote is None:  # imports before source.wrote existed wrote dataset.yml and <table>.csv files
        wrote = ["dataset.yml"] + [f"{t}.csv" for t in TABLES]
    produced = {Path(w).stem for w in writes}
    keep, foreign = [], []
    for p in sorted(to.iterdir()):
        if p.is_file() and p.name in wrote:
            continue
        if p.is_file() and p.stem in TABLES and p.suffix in TABLE_EXTENSIONS and p.stem not in produced:
            keep.append(p)
        else:
            foreign.append(p.name + ("/" if p.is_dir() else ""))
    if foreign:
        raise ImportProblem(
            f"{to} holds file(s) not written by the import: {', '.join(foreign)}. --force "
            "would delete them; move them out of the folder (or import into another --to)."
        )
    return keep


def import_files(
    profile: str | Path | dict, files, to: str | Path, force: bool = False, as_of: str | None = None
) -> Path:
    """Import export ``files`` through ``profile`` into the dataset folder ``to``; return its path (see
    ``import_with_sources``)."""
    return import_with_sources(profile, files, to, force, as_of)[0]


def import_with_sources(
    profile: str | Path | dict, files, to: str | Path, force: bool = False, as_of: str | None = None
) -> tuple[Path, dict[str, tuple[pd.DataFrame, pd.DataFrame]]]:
    """Import export ``files`` through ``profile`` into the dataset folder ``to``; return its path.

    ``as_of`` is the export date written to dataset.yml (default: the profile's rule, normally the
    latest recorded event in the data).

    Refuses to replace an existing folder unless ``force``; never writes, moves or deletes an input.
    """
    prof = profile if isinstance(profile, dict) else load_profile(profile)
    files = [Path(f) for f in files]
    for f in files:
        if not f.is_file():
            raise ImportProblem(f"{f}: no such file")
    to = Path(to)
    if to.exists() and not force:
        raise ImportProblem(
            f"{to} already exists; pass --force to replace it (input files are never touched)"
        )
    if to.exists() and not to.is_dir():
        raise ImportProblem(f"{to} exists and is not a folder; choose another --to")
    target = to.resolve()
    inside = [f for f in files if target == f.resolve().parent or target in f.resolve().parents]
    if inside:
        raise ImportProblem(
            f"input file {inside[0]} is inside the output folder {to}; import into another folder"
        )
    previous = _previous_import(to) if to.exists() else None
    cfg = parse_config(_dataset_block(prof["dataset"]), where=f"profile {prof['name']}: dataset")
    hashes = {f: file_sha256(f) for f in files}
    mapped, kinds, rows = map_files(prof, files)

    tables, sources = {}, {}
    for tname, parts in mapped.tables.items():
        df = pd.concat(parts, ignore_index=True) if len(parts) > 1 else parts[0]
        tables[tname] = df.fillna("").astype(str)
        sources[tname] = pd.concat(mapped.sources[tname], ignore_index=True)
    tables["opportunities"] = _finish_opportunities(tables["opportunities"], cfg)
    defaults = _defaults_taken(tables, sources, cfg)

    ds = dict(prof["dataset"])
    ds.setdefault("name", to.name)
    if as_of:
        ds["as_of"] = str(pd.Timestamp(as_of).date())
    elif str(ds.get("as_of", "")) == LATEST:
        ds["as_of"] = _latest_date(tables)
    kind_of = {p: k for k, p in kinds.items()}
    ds["source"] = {
        "profile": prof["name"] if prof.get("_builtin") else str(prof.get("_path", prof["name"])),
        "imported_by": "revops import",
        "files": [
            {"file": f.name, "export": kind_of.get(f), "rows": rows.get(kind_of.get(f)), "sha256": hashes[f]}
            for f in files
        ],
    }
    if defaults:
        ds["source"]["defaults"] = defaults
    writes = [f"{t}.csv" for t in tables] + ["dataset.yml"]
    kept = _carried_over(to, previous, writes) if previous is not None else []
    ds["source"]["wrote"] = writes
    # the import's own settings, so that a later --force keeps what the user changed after this one
    ds["source"]["settings"] = _setting_digests(ds)
    edited = _edited_settings(to, previous, ds) if previous is not None else {}
    for key, value in edited.items():  # a re-import keeps the user's edits to dataset.yml
        if value is _REMOVED:
            ds.pop(key, None)
        else:
            ds[key] = value
    ds["source"] = ds.pop("source")  # last in the file, after any setting the user added
    if edited:
        mapped.notes.append(
            f"kept your edits to dataset.yml ({', '.join(edited)}); the other settings come from this import"
        )
    if kept:
        ds["source"]["kept"] = [p.name for p in kept]
        mapped.notes.append(
            f"kept {', '.join(p.name for p in kept)} from the previous {to.name} (not produced "
            "by this import; added by hand)"
        )
    if mapped.notes:
        ds["source"]["notes"] = list(mapped.notes)
    parse_config(ds, where="dataset.yml")

    with replace_folder(to, tag="importing") as tmp:
        for tname, df in tables.items():
            _ordered(df, tname).to_csv(tmp / f"{tname}.csv", index=False, quoting=csv.QUOTE_MINIMAL)
        for p in kept:
            shutil.copy2(p, tmp / p.name)
        (tmp / "dataset.yml").write_text(
            f"# Written by `revops import --profile {prof['name']}`; edit stages, probabilities and targets freely.\n"
            + yaml.safe_dump(ds, sort_keys=False, allow_unicode=True),
            encoding="utf-8",
        )
        for f, h in hashes.items():  # the inputs must be exactly as read
            if file_sha256(f) != h:
                raise ImportProblem(f"{f} changed while it was being imported; try again")
    return to, {t: (tables[t], sources[t]) for t in tables}


def in_export_terms(problem, sources: dict[str, tuple[pd.DataFrame, pd.DataFrame]]):
    """A validation Problem about an imported table's cell, restated on the export from its structured
    fields: its file, data row and header, the value as written there, and the written value of the other
    cell it compares with (``ref``); the imported table, row and column go in its ``note``, so the same
    problem on many rows keeps one ``expected`` and is grouped. Problems without a row are returned
    unchanged."""
    table = Path(problem.file).stem
    if table not in sources or problem.row is None or problem.column is None:
        return problem
    _, src = sources[table]
    i = problem.row - 1
    if not 0 <= i < len(src) or problem.column not in src.columns:
        return problem
    ref = problem.ref
    if ref is not None and ref[0] in src.columns and src.at[i, ref[0]] != "":
        ref = (ref[0], str(src.at[i, ref[0]]))  # as written in the export
    raw = src.at[i, problem.column]
    return replace(
        problem,
        file=str(src.at[i, "_file"]),
        row=int(src.at[i, "_row"]),
        column=str(src.at[i, problem.column + "@"]),
        value=raw if raw != "" else problem.value,
        ref=ref,
        note=f"{problem.file} row {problem.row}, {problem.column}",
    )


def validate_in_export_terms(folder: Path, sources) -> tuple[int, str]:
    """``helpers.data.validation.validate_report`` of a folder just imported, with every error about a cell stated
    on the export file as the user wrote it (``in_export_terms``)."""
    from helpers.data.dataset import DataValidationError, format_problems, load
    from helpers.data.validation import validate_report

    try:
        load(folder)
    except DataValidationError as exc:
        problems = [in_export_terms(p, sources) for p in exc.problems]
        return 1, format_problems(
            problems,
            title=f"Dataset {folder} has {len(problems)} error(s) (rows, columns "
            "and values as in the export files):",
        )
    except Exception:  # noqa: BLE001 - validate_report states every other failure
        pass
    return validate_report(folder)


def cli(args) -> int:
    """``revops import --profile P --to data/NAME FILES…``: import, then validate the result."""
    try:
        out, sources = import_with_sources(
            args.profile,
            args.files,
            args.to,
            force=getattr(args, "force", False),
            as_of=getattr(args, "as_of", None),
        )
    except (ImportProblem, ProfileError) as exc:
        print(exc, file=sys.stderr)
        return 2
    ds = yaml.safe_load((out / "dataset.yml").read_text(encoding="utf-8"))
    for note in ds.get("source", {}).get("notes", []):
        print(f"note: {note}")
    written = ", ".join(sorted(p.name for p in out.glob("*.csv")))
    print(
        f"Imported {len(args.files)} file(s) with profile {args.profile!r} into {out}: {written}, dataset.yml"
    )
    code, text = validate_in_export_terms(out, sources)
    print(text)
    return code
