"""Validation as queries on a real PostgreSQL server (helpers.data.pgcheck): a dataset with known
violations, as CSV files and as typed PostgreSQL tables, gives the same problems — same column, value,
expectation, severity and count — whether ``load`` parses the files or the rules run on the server; the
server sends counts and the first rows that break a rule, never the tables."""

from __future__ import annotations

import re
import shutil
from collections import Counter

import pandas as pd
import pytest
import yaml

from helpers.data import dataset, pgcheck, sources
from helpers.data.dataset import DataValidationError, format_problems, load
from helpers.data.validation import validate, validate_report
from helpers.publish.pgserver import dataset_in_postgres

UNIQUE = "expected a unique id"
WHERE = re.compile(r" \([a-z_]+ @ postgresql://[^)]*\)|\.csv")  # a table's name in the expectations


def _expected(p) -> str:
    return UNIQUE if p.expected.startswith(UNIQUE) else WHERE.sub("", p.expected)


def _read(folder, name):
    return pd.read_csv(folder / f"{name}.csv", dtype=str, keep_default_na=False)


def _write(df, folder, name):
    df.to_csv(folder / f"{name}.csv", index=False)


@pytest.fixture(scope="module")
def broken(sample_dir, tmp_path_factory):
    """The sample with known violations of every rule a typed server table can break."""
    folder = tmp_path_factory.mktemp("broken") / "files"
    shutil.copytree(sample_dir, folder)
    opp = _read(folder, "opportunities")
    ids = opp["opportunity_id"]
    opp.loc[2, "opportunity_id"] = ids[1]  # duplicated id
    opp.loc[4, "opportunity_id"] = ""  # no id
    opp.loc[5, "opportunity_id"] = f"  {ids[5]} "  # spaces around an id: trimmed, still referenced
    opp.loc[6, "stage"] = "closed  won"  # another spelling of a stage: a warning
    opp.loc[7, "stage"] = "Closd Won"  # not a stage: an error with a hint
    opp.loc[8, "stage"] = ""  # a required value missing
    opp.loc[9, ["created_date", "close_date"]] = ["2025-05-10", "2025-04-01"]  # closes before created
    opp.loc[10, ["is_won", "is_closed", "stage"]] = ["true", "false", "Negotiation"]  # won, not closed
    opp.loc[11, ["stage", "is_won", "is_closed"]] = ["Closed Lost", "true", "true"]  # lost stage, won
    opp.loc[12, "amount"] = "-5"
    opp.loc[13, "amount"] = "Infinity"
    opp.loc[14, "amount"] = "0"
    opp.loc[15, "probability"] = "150"  # out of range, and the column is read on 0–100
    opp.loc[16, ["created_date", "close_date", "is_closed"]] = ["2031-01-01", "2031-02-01", "false"]
    opp.loc[17, "created_date"] = "2026-11-04"  # after the as-of date: a warning
    opp.loc[18, ["created_date", "close_date"]] = ["infinity", ""]  # no date
    opp.loc[19, "last_activity_date"] = "0500-01-01"  # a year no calendar tool handles
    opp.loc[20, "owner"] = "NOBODY"  # not in reps: a warning
    opp["loss_reasn"] = ""  # a misspelt contract column: an error
    opp.loc[21, "loss_reasn"] = "x"
    opp = pd.concat([opp, pd.DataFrame([[""] * opp.shape[1]], columns=opp.columns)], ignore_index=True)
    _write(opp, folder, "opportunities")
    hist = _read(folder, "opportunity_history")
    hist.loc[0, "opportunity_id"] = "OPP-GONE"
    hist.loc[1, "changed_at"] = ""
    hist.loc[2, "stage"] = "Won?"
    _write(hist, folder, "opportunity_history")
    act = _read(folder, "activities")
    act.loc[1, "activity_id"] = act.loc[0, "activity_id"]
    act.loc[2, "activity_id"] = act.loc[0, "activity_id"]
    act.loc[3:4, "activity_id"] = ""
    act.loc[10:39, "owner"] = "GHOST"  # 30 rows: more than a message lists
    act.loc[40:41, "opportunity_id"] = "OPP-GONE"
    act.loc[42, "occurred_at"] = ""
    act.loc[43, "duration_minutes"] = "-Infinity"
    _write(act, folder, "activities")
    leads = _read(folder, "leads")
    leads.loc[1, "lead_id"] = leads.loc[0, "lead_id"]
    leads.loc[2, "opportunity_id"] = "OPP-GONE"
    leads.loc[3, "owner"] = "SDR99"
    leads.loc[4, "created_date"] = ""
    _write(leads, folder, "leads")
    quotas = _read(folder, "quotas")
    quotas.loc[0, "rep_id"] = "AE999"
    quotas.loc[1, "quota"] = "-100"
    _write(quotas, folder, "quotas")
    return folder


@pytest.fixture(scope="module")
def broken_pg(pg_server, broken, tmp_path_factory):
    return dataset_in_postgres(pg_server, broken, "broken", tmp_path_factory.mktemp("broken") / "pg")


def _groups(problems):
    """(column, expectation, severity) -> rows, the unique-id expectation without the rows it names."""
    out = Counter()
    for p in problems:
        out[(p.column, _expected(p), p.severity)] += p.count
    return out


def _values(problems):
    """(rule, value as shown) -> rows; the unique-id rule, whose problems differ in kind, left out."""
    out = Counter()
    for p in problems:
        if not p.expected.startswith(UNIQUE):
            shown = str(p).split(" — ")[0].split(": value ")[-1] if p.value is not None else None
            out[(p.column, _expected(p), p.severity, shown, p.ref)] += p.count
    return out


def test_server_rules_find_what_loading_finds(broken, broken_pg, pg_env, monkeypatch):
    from_files = load(broken, strict=False).warnings
    monkeypatch.setattr(sources.TableReader, "read", lambda *a: pytest.fail("a table was read"))
    checked = pgcheck.check(broken_pg, strict=False)
    assert checked is not None and checked.on_server
    on_server = checked.warnings
    assert _groups(on_server) == _groups(from_files)
    # every rule broken here: the files' problems and the server's name the same values
    groups = _groups(from_files)
    for rule in [
        ("opportunity_id", UNIQUE, "error"),
        ("opportunity_id", "expected an id (the key may not be empty)", "error"),
        ("stage", "read as the stage 'Closed Won' (1 row(s))", "warning"),
        ("stage", "expected a value (required column)", "error"),
        ("close_date", "expected a close date on or after created_date", "error"),
        ("is_closed", "expected is_closed = true for a won deal (is_won is true)", "error"),
        ("is_won", "expected is_won = false: the stage is a lost stage", "error"),
        ("amount", "expected an amount of 0 or more", "error"),
        ("amount", "expected a finite number", "error"),
        ("amount", "amount is zero", "warning"),
        ("probability", "expected a probability within 0–1 or 0–100", "error"),
        ("created_date", "expected a created date on or before the as-of date 2026-10-31", "error"),
        ("created_date", "expected a created date on or before the as-of date 2026-10-31", "warning"),
        ("created_date", "expected a date such as 2026-10-31", "error"),
        ("last_activity_date", "expected a date such as 2026-10-31", "error"),
        ("owner", "expected a rep_id listed in reps.csv", "warning"),
        ("changed_at", "expected a value (required column)", "error"),
        ("activity_id", UNIQUE, "error"),
        ("occurred_at", "expected a value (required column)", "error"),
        ("duration_minutes", "expected a finite number", "error"),
        ("rep_id", "expected a rep_id listed in reps.csv", "error"),
        ("quota", "expected an amount of 0 or more", "error"),
    ]:
        assert groups[(rule[0], WHERE.sub("", rule[1]), rule[2])], rule
    assert groups[("activity_id", UNIQUE, "error")] == 2
    assert groups[("activity_id", "expected an id (the key may not be empty)", "error")] == 2
    ghost = [k for k in groups if k[0] == "owner" and k[2] == "warning"]
    # the activities' 30 GHOST rows, a deal's owner and a lead's
    assert sum(groups[k] for k in ghost) >= 30 + 2
    # the values shown: equal wherever the server fetched every row of a rule
    full = {k for k, n in _groups(on_server).items() if n <= pgcheck.FETCH}
    assert {k: n for k, n in _values(on_server).items() if (k[0], k[1], k[2]) in full} == {
        k: n for k, n in _values(from_files).items() if (k[0], k[1], k[2]) in full
    }
    # a rule broken by more rows than are fetched: the first FETCH rows by key, the rest counted
    act = [p for p in on_server if p.file.startswith("activities") and p.column == "owner"]
    assert [p.count for p in act] == [1] * pgcheck.FETCH + [30 - pgcheck.FETCH]
    keys = [p.key[0][1] for p in act[:-1]]
    assert keys == sorted(keys) and all(p.value == "GHOST" for p in act[:-1])
    assert (
        act[0].where().startswith("activities (activities @ postgresql://")
        and "activity_id 'ACT-" in act[0].where()
    )
    text = format_problems(act)
    assert f"… and {30 - pgcheck.FETCH} more in activities (activities @" in text


def test_server_validation_raises_the_errors_as_load_does(broken, broken_pg, pg_env):
    with pytest.raises(DataValidationError) as files:
        load(broken)
    with pytest.raises(DataValidationError) as server:
        validate(broken_pg)
    n = sum(p.count for p in files.value.problems)
    assert f"has {n} error(s)" in str(files.value) and f"has {n} error(s)" in str(server.value)
    # read first: how a column was read (the stage spelling, the probability scale), not rows of a rule
    assert sorted(map(_expected, server.value.hints)) == sorted(map(_expected, files.value.hints))
    assert all(not p.key for p in server.value.hints)
    code, text = validate_report(broken_pg)
    assert code == 1 and f"has {n} error(s)" in text


def test_a_valid_dataset_is_checked_on_the_server_without_reading_its_rows(
    pg_dataset, sample_dir, pg_env, monkeypatch
):
    files = validate(sample_dir)
    monkeypatch.setattr(sources.TableReader, "read", lambda *a: pytest.fail("a table was read"))
    server = validate(pg_dataset)
    assert server.on_server and not files.on_server
    assert server.rows == files.rows
    assert (server.as_of, server.inferred_as_of, server.first_created) == (
        files.as_of,
        files.inferred_as_of,
        files.first_created,
    )
    assert _groups(server.warnings) == _groups(files.warnings)
    code, text = validate_report(pg_dataset)
    assert code == 0 and "opportunities: 1,500 rows" in text


def test_columns_that_need_the_parser_are_read_as_before(pg_dataset, pg_env, tmp_path, monkeypatch):
    """A date kept as text in the database is parsed by coerce (day/month order, Excel serials…): the
    dataset is loaded, not checked on the server."""
    cfg = yaml.safe_load((pg_dataset / "dataset.yml").read_text())
    url = cfg["tables"]["opportunities"]["url"]
    cfg["tables"]["opportunities"] = {
        "url": url,
        "query": "select opportunity_id, stage, created_date::text as created_date from opportunities",
    }
    (tmp_path / "dataset.yml").write_text(yaml.safe_dump(cfg))
    assert pgcheck.check(tmp_path) is None
    read = []
    original = sources.TableReader.read
    monkeypatch.setattr(sources.TableReader, "read", lambda self, t: read.append(t) or original(self, t))
    checked = validate(tmp_path)
    assert not checked.on_server and "opportunities" in read


def test_a_server_problem_keeps_its_key_and_count_through_json():
    """Problems travel as JSON (the load cache's warnings): the key columns and the count survive."""
    p = dataset.Problem(
        "opportunity_history (…)",
        None,
        "stage",
        "Won?",
        "expected a stage listed in dataset.yml",
        key=(("opportunity_id", "OPP-1"), ("changed_at", pd.Timestamp("2026-01-02 10:00"))),
        count=3,
    )
    back = sources._problem_from_json(sources._problem_to_json(p))
    assert back == p
    assert str(back) == (
        "opportunity_history (…), opportunity_id 'OPP-1', changed_at 2026-01-02 10:00:00, column 'stage', "
        "3 rows: value 'Won?' — expected a stage listed in dataset.yml"
    )
