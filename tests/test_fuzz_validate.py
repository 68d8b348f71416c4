"""Issue 12, acceptance: mutated CSVs (bytes inserted, deleted, replaced, lines cut, repeated or
shuffled, quotes and delimiters sprinkled, encodings changed) fed to ``revops validate`` and to the
loader. Whatever the bytes, there is no traceback: the command exits 0, or 1 with a problem list that
names a file; the loader returns or raises ``DataValidationError``; and the input bytes are unchanged."""

from __future__ import annotations

import contextlib
import hashlib
import io
import sys
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

sys.path.insert(0, str(Path(__file__).parent / "fixtures" / "notebooks"))
from packs import OPPORTUNITIES_CSV, write_tiny_dataset  # noqa: E402

from helpers.cli import main  # noqa: E402
from helpers.data.dataset import DataValidationError, load  # noqa: E402

BASE = OPPORTUNITIES_CSV.encode()
NOISE = [
    b'"',
    b",",
    b";",
    b"\t",
    b"|",
    b"\n",
    b"\r\n",
    b"\x00",
    b"\xff\xfe",
    b"\xe9",
    b"=1+1",
    b"2026-13-45",
    b"-",
    b"1e309",
]


@st.composite
def mutated(draw) -> bytes:
    data = bytearray(BASE)
    for _ in range(draw(st.integers(1, 6))):
        op = draw(st.sampled_from(["insert", "delete", "replace", "cut", "repeat", "swap", "encode"]))
        at = draw(st.integers(0, max(len(data) - 1, 0)))
        if op == "insert":
            data[at:at] = draw(st.sampled_from(NOISE) | st.binary(min_size=1, max_size=8))
        elif op == "delete":
            del data[at : at + draw(st.integers(1, 20))]
        elif op == "replace":
            data[at : at + 1] = draw(st.sampled_from(NOISE))
        elif op == "cut":
            del data[at:]
        else:
            lines = bytes(data).split(b"\n")
            i = draw(st.integers(0, len(lines) - 1))
            if op == "repeat":
                lines.insert(i, lines[i])
            elif op == "swap":
                j = draw(st.integers(0, len(lines) - 1))
                lines[i], lines[j] = lines[j], lines[i]
            else:
                text = b"\n".join(lines).decode("utf-8", "replace")
                data = bytearray(
                    text.encode(draw(st.sampled_from(["utf-16", "cp1252", "latin-1"])), "replace")
                )
                continue
            data = bytearray(b"\n".join(lines))
    return bytes(data)


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return write_tiny_dataset(tmp_path_factory.mktemp("fuzz") / "ds")


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=mutated())
def test_mutated_csvs_never_crash_validate_or_the_loader(folder, data):
    path = folder / "opportunities.csv"
    path.write_bytes(data)
    digest = hashlib.sha256(data).hexdigest()
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(["validate", str(folder)])
    text = out.getvalue() + err.getvalue()
    assert "Traceback" not in text
    assert code == 0 or (code == 1 and "opportunities.csv" in text), (code, text)
    try:
        load(folder)
    except DataValidationError as exc:
        assert exc.problems and all(p.file for p in exc.problems)
    assert hashlib.sha256(path.read_bytes()).hexdigest() == digest  # the input is never written
