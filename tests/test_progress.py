"""Long work shows progress: a tqdm bar on a terminal, plain lines otherwise; only the revops command turns
it on."""

from __future__ import annotations

import io

import pytest
from conftest import EXAMPLES

from helpers.data import progress as P


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.fixture
def shown(monkeypatch):
    monkeypatch.setattr(P, "DELAY", 0.0)
    monkeypatch.setattr(P, "_enabled", False)


def test_plain_lines_when_not_a_terminal_and_a_bar_on_one(shown):
    P.enable()
    log, tty = io.StringIO(), _Terminal()
    for _ in P.progress(range(3), desc="reading", unit="files", stream=log):
        pass
    lines = log.getvalue().splitlines()
    assert "\r" not in log.getvalue() and lines[-1].startswith(
        "reading: 3/3 files (100%), 00:00 elapsed, about "
    )
    for _ in P.progress(range(3), desc="reading", unit="files", stream=tty):
        pass
    assert "\r" in tty.getvalue() and "|" in tty.getvalue() and "3/3" in tty.getvalue()


def test_silent_unless_enabled(shown):
    log = io.StringIO()
    assert list(P.progress(range(3), stream=log)) == [0, 1, 2] and log.getvalue() == ""


def test_weighted_counts_an_item_once_its_body_is_over(shown):
    P.enable()
    log = io.StringIO()
    seen = []
    for name in P.weighted(["a", "bb"], len, desc="mapping", unit="rows", stream=log, postfix=str.upper):
        seen.append((name, log.getvalue().count("\n")))
    assert log.getvalue().splitlines()[-1].startswith("mapping: 3/3 rows (100%)")
    assert ", BB" in log.getvalue()


def test_the_import_command_shows_files_rows_and_the_cache_build(shown, tmp_path, capsys, monkeypatch):
    from helpers import cli

    monkeypatch.setenv("REVOPS_CACHE_DIR", str(tmp_path / "cache"))
    files = sorted(str(p) for p in (EXAMPLES / "crm-sales-opportunities").glob("*.csv"))
    assert cli.main(["import", "--profile", "maven_crm", "--to", str(tmp_path / "maven"), *files]) == 0
    err = capsys.readouterr().err
    assert "reading the exports: 5/5 files (100%)" in err
    assert "mapping the exports: " in err and "rows (100%)" in err
    assert "loading maven (building the cache): " in err and "\r" not in err
