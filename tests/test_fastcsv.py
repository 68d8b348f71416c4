"""The fast CSV path (``helpers.data.fastcsv``: DuckDB's read_csv, strict-form columns typed there) gives
exactly what the plain Python path gives: the same typed frames (dtypes and values) and the same errors
and warnings (text, file, row, column), on hand-made messy files, the sample, the hostile dataset and
fuzzed files. Each case also checks which files took the fast path, so both paths are exercised."""

from __future__ import annotations

import sys
from pathlib import Path

import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings

from helpers.data import fastcsv
from helpers.data.dataset import DataValidationError, load

sys.path.insert(0, str(Path(__file__).parent))
sys.path.insert(0, str(Path(__file__).parent / "fixtures" / "notebooks"))
from packs import DATASET_YML  # noqa: E402

HEADER = "opportunity_id,owner,created_date,close_date,stage,amount,is_closed,is_won,probability,next_step\n"
CLEAN = (
    "O1,ana,2026-08-01,2026-10-05,Closed Won,12000,true,true,1,\n"
    "O2,ana,2026-08-10,2026-10-20,Closed Lost,3000.5,true,false,0,\n"
    'O3,ben,2026-09-01,2026-12-12,Proposal,45000,false,false,0.4,"call, then mail"\n'
    "O4,ben,2026-09-03,2026-12-15,Prospecting,8000,false,false,0.65,demo\n"
)


def _load(folder: Path, fast: bool, monkeypatch):
    """(typed frames, problems as text, problems) of one load with the fast path on or off; the
    DataValidationError's problems when the load fails."""
    monkeypatch.setenv("REVOPS_FAST_CSV", "1" if fast else "0")
    monkeypatch.setenv("REVOPS_CACHE", "0")
    fastcsv.FALLBACKS.clear()
    try:
        ds = load(folder, strict=False)
        problems = ds.warnings
        frames = ds.tables
    except DataValidationError as exc:
        frames, problems = None, exc.problems
    return frames, [str(p) for p in problems], problems


def assert_same(folder: Path, monkeypatch) -> dict[str, str]:
    """Both paths give identical frames and problems; returns the files the fast path left to pandas."""
    plain = _load(folder, False, monkeypatch)
    fast = _load(folder, True, monkeypatch)
    fell_back = dict(fastcsv.FALLBACKS)
    assert fast[1] == plain[1]
    assert fast[2] == plain[2]
    assert (fast[0] is None) == (plain[0] is None)
    if plain[0] is not None:
        assert list(fast[0]) == list(plain[0])
        for name in plain[0]:
            pd.testing.assert_frame_equal(fast[0][name], plain[0][name], check_exact=True, obj=name)
    return {Path(k).name: v for k, v in fell_back.items()}


def _dataset(folder: Path, opportunities: str | bytes, yml: str = DATASET_YML, **tables) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "dataset.yml").write_text(yml)
    for name, text in {"opportunities": opportunities, **tables}.items():
        path = folder / f"{name}.csv"
        path.write_bytes(text if isinstance(text, bytes) else text.encode())
    return folder


# name -> (opportunities.csv, goes to pandas?)
MESSY = {
    "clean": (HEADER + CLEAN, False),
    "crlf line ends": ((HEADER + CLEAN).replace("\n", "\r\n"), False),
    "no final newline": ((HEADER + CLEAN).rstrip("\n"), False),
    "utf-8 byte-order mark": ("\ufeff" + HEADER + CLEAN, False),
    "semicolon delimiter": ((HEADER + CLEAN.replace('"call, then mail"', "call")).replace(",", ";"), False),
    "quoted fields and quotes in quotes": (
        HEADER + CLEAN + 'O5,"cat","2026-09-04","2026-12-20","Proposal","900",false,false,0.4,"say ""hi"""\n',
        False,
    ),
    "mixed date formats": (
        HEADER + CLEAN + "O5,cat,09/04/2026,20.12.2026,Proposal,900,false,false,0.4,x\n",
        False,
    ),
    "datetimes in a date column": (
        HEADER + CLEAN + "O5,cat,2026-09-04 10:30,2026-12-20T08:00:00,Proposal,900,false,false,0.4,x\n",
        False,
    ),
    "zoned and fractional datetimes": (
        HEADER
        + CLEAN
        + "O5,cat,2026-09-04T10:30:00+02:00,2026-12-20 08:00:00.5,Proposal,900,false,false,0.4,x\n",
        False,
    ),
    "impossible dates": (
        HEADER + CLEAN + "O5,cat,2026-02-30,2026-13-01,Proposal,900,false,false,0.4,x\n",
        False,
    ),
    "a year before 1000": (
        HEADER + CLEAN + "O5,cat,0999-09-04,2026-12-20,Proposal,900,false,false,0.4,x\n",
        False,
    ),
    "excel serial dates": (HEADER + CLEAN + "O5,cat,46269,46376,Proposal,900,false,false,0.4,x\n", False),
    "currency symbols": (
        HEADER + CLEAN + "O5,cat,2026-09-04,2026-12-20,Proposal,$900,false,false,0.4,x\n",
        False,
    ),
    "thousands separators": (
        HEADER + CLEAN + 'O5,cat,2026-09-04,2026-12-20,Proposal,"1,900.50",false,false,0.4,x\n',
        False,
    ),
    "decimal commas": (
        HEADER.replace(",", ";")
        + "O1;ana;2026-08-01;2026-10-05;Closed Won;1.234,50;true;true;1;\nO2;ana;2026-08-02;2026-10-05;Closed Won;12,5;true;true;1;\n",
        False,
    ),
    "all amounts like 1.234": (
        HEADER
        + "".join(f"O{i},ana,2026-08-01,2026-10-05,Closed Won,{i}.250,true,true,1,\n" for i in range(1, 6)),
        False,
    ),
    "negative amount": (
        HEADER + CLEAN + "O5,cat,2026-09-04,2026-12-20,Proposal,-900.50,false,false,0.4,x\n",
        False,
    ),
    "negative number (probability)": (
        HEADER + CLEAN + "O5,cat,2026-09-04,2026-12-20,Proposal,900,false,false,-0.10,x\n",
        False,
    ),
    "probabilities 0-100": (
        HEADER + CLEAN.replace(",0.4,", ",40,").replace(",0.65,", ",65.0,").replace(",1,", ",100,"),
        False,
    ),
    "probability 0-100 with values below 1": (
        HEADER
        + CLEAN.replace(",0.4,", ",40,")
        + "O5,cat,2026-09-04,2026-12-20,Proposal,900,false,false,0.5,x\n",
        False,
    ),
    "probability out of range": (
        HEADER + CLEAN + "O5,cat,2026-09-04,2026-12-20,Proposal,900,false,false,150.50,x\n",
        False,
    ),
    "percent probabilities": (
        HEADER + CLEAN + "O5,cat,2026-09-04,2026-12-20,Proposal,900,false,false,40%,x\n",
        False,
    ),
    "inf and nan": (
        HEADER
        + CLEAN
        + "O5,cat,2026-09-04,2026-12-20,Proposal,inf,false,false,nan,x\nO6,cat,2026-09-04,2026-12-20,Proposal,1e5,false,false,NaN,x\n",
        False,
    ),
    "long digit strings": (
        HEADER
        + CLEAN
        + "O5,cat,2026-09-04,2026-12-20,Proposal,123456789012345678901234567890.123456789,false,false,0.12345678901234567,x\n",
        False,
    ),
    "n/a words": (HEADER + CLEAN + "O5,cat,N/A,null,Proposal,-,n/a,none,#N/A,x\n", False),
    "boolean spellings": (
        HEADER
        + CLEAN
        + "O5,cat,2026-09-04,2026-12-20,Proposal,900,No,N,0,x\nO6,cat,2026-09-04,2026-12-20,Proposal,900,FALSE,0.0,0,x\n",
        False,
    ),
    "unreadable boolean": (
        HEADER + CLEAN + "O5,cat,2026-09-04,2026-12-20,Proposal,900,maybe,false,0.4,x\n",
        False,
    ),
    "stage spellings": (
        HEADER
        + CLEAN
        + "O5,cat,2026-09-04,2026-12-20,proposal,900,false,false,0.4,x\nO6,cat,2026-09-04,2026-12-20,closed  won,900,,,1,x\nO7,cat,2026-09-04,2026-12-20,Closd Won,9,,,1,x\n",
        False,
    ),
    "padded text": (
        HEADER
        + CLEAN
        + 'O5,cat ,2026-09-04,2026-12-20,Proposal,900,false,false,0.4,"x "\nO6,"\u00a0dan",2026-09-04,2026-12-20,Proposal,900,false,false,0.4,x\n',
        False,
    ),
    "unicode spaces and control characters around text": (
        HEADER + CLEAN + 'O5,\u3000cat,2026-09-04,2026-12-20,Proposal,900,false,false,0.4,"x\u2003"\n'
        "O6,\x1fdan,2026-09-04,2026-12-20,Proposal,900,false,false,0.4,\u0085y\n"
        "O7,\x07eve,2026-09-04,2026-12-20,Proposal,900,false,false,0.4,z\u00a0\n",
        False,
    ),
    "whitespace-only cells": (
        HEADER + CLEAN + 'O5,cat,2026-09-04,2026-12-20,Proposal,900,false,false,0.4,"   "\n',
        True,
    ),
    "duplicate and blank ids": (
        HEADER
        + CLEAN
        + "O1,cat,2026-09-04,2026-12-20,Proposal,900,false,false,0.4,x\n,cat,2026-09-04,2026-12-20,Proposal,900,false,false,0.4,x\n",
        False,
    ),
    "rule breaks": (
        HEADER
        + CLEAN
        + "O5,cat,2026-09-04,2026-08-20,Closed Won,0,false,false,0.4,\nO6,cat,2026-09-04,2031-12-20,Proposal,900,true,true,0.4,x\n",
        False,
    ),
    "a row of empty cells": (HEADER + CLEAN + ",,,,,,,,,\n", False),
    "unknown and misspelt columns": (
        HEADER.replace("next_step", "nxt_step,colour").replace("\n", "")
        + "\n"
        + CLEAN.replace("\n", ",red\n"),
        False,
    ),
    "empty last column": (
        HEADER
        + CLEAN.replace(",demo\n", ",\n")
        + "O5,cat,2026-09-04,2026-12-20,Proposal,900,false,false,0.4,",
        False,
    ),
    "header in other words": (
        "Opportunity ID,Owner,Created Date,close_date,stage,amount,is_closed,is_won,probability,next_step\n"
        + CLEAN,
        False,
    ),
    # read with pandas: DuckDB might read these differently
    "blank lines": (HEADER + CLEAN.replace("\n", "\n\n", 1) + "\n", True),
    "line break in a quoted field": (
        HEADER + CLEAN + 'O5,cat,2026-09-04,2026-12-20,Proposal,900,false,false,0.4,"two\nlines"\n',
        True,
    ),
    "stray quote": (
        HEADER + CLEAN + 'O5,cat,2026-09-04,2026-12-20,Proposal,900,false,false,0.4,say "hi\n',
        False,
    ),
    "quote inside an unquoted field": (
        HEADER + CLEAN + 'O5,cat,2026-09-04,2026-12-20,Proposal,900,false,false,0.4,"a"b\n',
        True,
    ),
    "spaces after the delimiter": (
        HEADER + CLEAN + 'O5, cat, 2026-09-04, 2026-12-20, Proposal, 900, false, false, 0.4, "x, y"\n',
        True,
    ),
    "a short row": (HEADER + CLEAN + "O5,cat,2026-09-04\n", False),
    "a long row": (
        HEADER + CLEAN + "O5,cat,2026-09-04,2026-12-20,Proposal,900,false,false,0.4,x,extra\n",
        True,
    ),
    "a delimiter after the last field, first row": (HEADER + CLEAN.replace(",\n", ",,\n", 1), True),
    "a delimiter after the last field, later row": (
        HEADER + CLEAN + "O5,cat,2026-09-04,2026-12-20,Proposal,900,false,false,0.4,x,\n",
        True,
    ),
    "repeated header": (HEADER.replace("next_step", "owner") + CLEAN, True),
    "padded header": (HEADER.replace("owner", " owner") + CLEAN, True),
    "windows-1252": (
        (HEADER + CLEAN + "O5,Zoë,2026-09-04,2026-12-20,Proposal,900,false,false,0.4,x\n").encode("cp1252"),
        True,
    ),
    "header only": (HEADER, True),
}


@pytest.mark.parametrize("name", list(MESSY))
def test_fast_path_equals_the_python_path_on_messy_files(tmp_path, monkeypatch, name):
    text, to_pandas = MESSY[name]
    fell_back = assert_same(_dataset(tmp_path / "ds", text), monkeypatch)
    assert ("opportunities.csv" in fell_back) == to_pandas, fell_back


def test_fast_path_types_the_clean_columns_in_duckdb(tmp_path):
    """Not a no-op: the clean file comes back typed from DuckDB (and a messy column as text)."""
    from helpers.data.dataset import read_raw
    from helpers.data.schema import TABLES

    folder = _dataset(
        tmp_path / "ds", HEADER + CLEAN + "O5,cat,2026-09-04,2026-12-20,Proposal,$900,false,false,0.4,x\n"
    )
    raw = read_raw(folder / "opportunities.csv", TABLES["opportunities"])
    assert str(raw["created_date"].dtype) == "datetime64[us]"
    assert str(raw["is_won"].dtype) == "boolean"
    assert raw["probability"].dtype == "float64"
    assert raw["amount"].tolist()[-1] == "$900"  # not of the strict form: Python reads it
    assert raw.attrs["clean_text"] == ["opportunity_id", "owner", "stage", "next_step"]


def test_fast_path_equals_the_python_path_on_the_sample(sample_dir, monkeypatch):
    assert assert_same(sample_dir, monkeypatch) == {}


def test_fast_path_equals_the_python_path_on_the_hostile_dataset(tmp_path, monkeypatch):
    from test_hostile_pack import write_hostile_dataset

    assert_same(write_hostile_dataset(tmp_path / "hostile"), monkeypatch)


def test_fast_path_equals_the_python_path_with_every_table_messy(tmp_path, monkeypatch):
    """Child tables: history datetimes with zones, activities with unknown opportunities, leads with
    day-first dates, reps with padded ids, quotas with currency."""
    folder = _dataset(
        tmp_path / "ds",
        HEADER + CLEAN,
        opportunity_history="opportunity_id,changed_at,stage,amount\nO1,2026-08-01 10:00:00,Proposal,100\n"
        "O1,2026-08-02T10:00:00Z,Closed Won,12000\nO9,2026-08-03 10:00,Proposal,1\n",
        activities="activity_id,owner,type,occurred_at,opportunity_id,duration_minutes\n"
        "A1,ana,call,2026-08-01 10:00:00,O1,30\nA2,zed,call,2026-08-01 11:00:00,O7,-5\n",
        leads="lead_id,created_date,source,mql_date,opportunity_id\nL1,31/07/2026,web,01/08/2026,O1\n",
        reps='rep_id,name,team,hire_date,ote\nana,Ana,A,2024-01-01,100000\nben ,Ben,A,2024-01-01,"€90,000"\n',
        quotas="rep_id,period_start,period_end,quota\nana,2026-08-01,2026-08-31,$10000\ncat,2026-08-01,2026-08-31,5000\n",
    )
    fell_back = assert_same(folder, monkeypatch)
    assert fell_back == {}


from test_fuzz_validate import mutated  # noqa: E402


@pytest.fixture(scope="module")
def fuzz_folder(tmp_path_factory):
    return _dataset(tmp_path_factory.mktemp("fuzz") / "ds", HEADER + CLEAN)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=mutated())
def test_fast_path_equals_the_python_path_on_fuzzed_files(fuzz_folder, monkeypatch, data):
    (fuzz_folder / "opportunities.csv").write_bytes(data)
    assert_same(fuzz_folder, monkeypatch)


def _alike_and_stray(path: Path) -> tuple[bool, object]:
    """(fastcsv.quotes_read_alike, dataset.stray_quote) of one file, over the lines the file has."""
    from helpers.data.dataset import _sniff_csv, stray_quote

    encoding, delim, header = _sniff_csv(path)
    rows = fastcsv._line_rows(path)
    return fastcsv.quotes_read_alike(path, delim, rows), stray_quote(path, encoding, delim, header, rows + 1)


QUOTING = {  # name -> (a file's bytes, whether quotes_read_alike vouches for it)
    "quoted fields, inner quotes doubled": (b'a,b\n"x ""y"", z",1\n"",""""\n', True),
    "a quote inside an unquoted field": (b'a,b\nx"y,1\nxy",2\n', True),
    "CRLF line ends": (b'a,b\r\n"x",1\r\n', True),
    "semicolons, pipes and tabs": (b'a;b\n"x;y";1\n', True),
    "byte-order mark before a quoted header": (b'\xef\xbb\xbf"a","b"\n"x",1\n', True),
    "space after the closing quote": (b'a,b\n"x" ,1\n', False),
    "text after the closing quote": (b'a,b\n"x"y,1\n', False),
    "a field opening with two quotes": (b'a,b\n""x,1\n', False),
    "a quoted value over two lines": (b'a,b\n"x\ny",1\n', False),
    "a lone carriage return": (b'a,b\n"x\ry",1\n', False),
    "a quote never closed": (b'a,b\n"x,1\n', False),
    "byte-order mark, then text after a closing quote": (b'\xef\xbb\xbf"a"x,b\n"x",1\n', False),
    "a field past the reader's size limit": (b'a,b\n"' + b"x" * 140_000 + b'",1\n', False),
    "NUL bytes (the reader keeps them)": (b'a,b\n"x\x00",1\n', True),
    "a NUL byte, then text after a closing quote": (b'a,b\nx\x00,"a"b\n', False),
}


@pytest.mark.parametrize("name", list(QUOTING))
def test_quotes_read_alike_only_vouches_for_files_without_a_stray_quote(tmp_path, name):
    text, vouched = QUOTING[name]
    path = tmp_path / "t.csv"
    path.write_bytes(text.replace(b",", b";") if name.startswith("semicolons") else text)
    alike, stray = _alike_and_stray(path)
    assert alike is vouched
    if alike:
        assert stray is None


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=mutated())
def test_quotes_read_alike_implies_no_stray_quote_on_fuzzed_files(tmp_path, data):
    """Whenever ``quotes_read_alike`` vouches for a file, Python's reader finds no stray quote in it (the
    fast path then skips that reader)."""
    path = tmp_path / "fuzz.csv"
    path.write_bytes(data)
    alike, stray = _alike_and_stray(path)
    if alike:
        assert stray is None


def test_the_rules_arrow_helpers_equal_pandas():
    """_isin and _duplicated (Arrow hash lookups in the rules) give pandas' isin / duplicated(keep=False)."""
    import numpy as np
    import pyarrow as pa

    from helpers.data.dataset import _duplicated, _isin

    rng = np.random.default_rng(7)
    s = pd.Series(rng.integers(0, 5000, 20000).astype(str), dtype="str")
    s[::13] = None
    values = pd.Series(rng.integers(0, 5000, 3000).astype(str), dtype="str").unique()
    assert _isin(s, values).equals(s.isin(values))
    assert _isin(s, ["1", "2"]).equals(s.isin(["1", "2"]))
    assert _duplicated(s).equals(s.duplicated(keep=False))
    chunked = pd.Series(pd.arrays.ArrowStringArray(pa.chunked_array([["a", "b"], ["a", None]])), dtype="str")
    assert _duplicated(chunked).tolist() == [True, False, True, False]
    assert _isin(chunked, ["a"]).tolist() == [True, False, True, False]
    for vals in (["a", "b", "a", None, None], ["a", None], [None], ["x"], []):
        t = pd.Series(vals, dtype="str")
        assert _duplicated(t).tolist() == t.duplicated(keep=False).tolist()
        assert _isin(t, ["a"]).tolist() == t.isin(["a"]).tolist()
