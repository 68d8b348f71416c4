"""Database sources against a real PostgreSQL server that the test starts on 127.0.0.1 (a free port, a
temporary data directory, removed afterwards). Skipped only when PostgreSQL's initdb is not installed."""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import pandas as pd
import pandas.testing as pdt
import pytest
import yaml

from helpers.data.dataset import DataValidationError, load
from helpers.data.schema import TABLES
from helpers.data.sources import DbTable, TableReader

PG_USER = "revops_reader"
PG_PASSWORD = "s3cret-Pa55word-xyz"  # distinctive, so a leak in a message is found by a substring test
SQL_TYPES = {
    "id": "text",
    "str": "text",
    "date": "date",
    "datetime": "timestamp",
    "money": "double precision",
    "number": "double precision",
    "prob": "double precision",
    "bool": "boolean",
}


def _pg_bin() -> Path | None:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    if found:
        return Path(found[-1]).parent
    which = shutil.which("initdb")
    return Path(which).parent if which else None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def pg_server():
    """(port, run) of a throw-away PostgreSQL cluster with a password-protected role ``revops_reader``."""
    bindir = _pg_bin()
    if bindir is None:
        pytest.skip(
            "PostgreSQL is not installed (no initdb under /usr/lib/postgresql/*/bin or on PATH); "
            "`apt-get install postgresql` (done by .ci/run) enables this test"
        )
    as_root = os.geteuid() == 0
    # initdb refuses to run as root: run the server as the `postgres` user, in a dir that user owns
    prefix = ["runuser", "-u", "postgres", "--"] if as_root else []
    tmp = Path(tempfile.mkdtemp(prefix="revops-pg-test-"))
    if as_root:
        shutil.chown(tmp, "postgres", "postgres")
    data, pwfile, log = tmp / "data", tmp / "pw", tmp / "log"
    pwfile.write_text(PG_PASSWORD)
    if as_root:
        shutil.chown(pwfile, "postgres", "postgres")
    port = _free_port()

    def run(*cmd):
        return subprocess.run([*prefix, *map(str, cmd)], check=True, capture_output=True, text=True)

    try:
        run(
            bindir / "initdb",
            "-D",
            data,
            "-U",
            PG_USER,
            f"--pwfile={pwfile}",
            "--auth-host=scram-sha-256",
            "--auth-local=trust",
            "-E",
            "UTF8",
            "--no-sync",
        )
        opts = f"-p {port} -k {tmp} -c listen_addresses=127.0.0.1 -c fsync=off"
        run(bindir / "pg_ctl", "-D", data, "-o", opts, "-l", log, "-w", "-t", "60", "start")
    except subprocess.CalledProcessError as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        pytest.fail(f"could not start PostgreSQL: {exc.stderr or exc.stdout}")
    try:
        yield port
    finally:
        subprocess.run(
            [*prefix, str(bindir / "pg_ctl"), "-D", str(data), "-m", "immediate", "stop"], capture_output=True
        )
        shutil.rmtree(tmp, ignore_errors=True)


def _copy_sample_into_postgres(port: int, folder: Path) -> None:
    import psycopg

    with psycopg.connect(
        host="127.0.0.1", port=port, user=PG_USER, password=PG_PASSWORD, dbname="postgres", autocommit=True
    ) as c:
        if not c.execute("select 1 from pg_database where datname = 'crm'").fetchone():
            c.execute("create database crm")
    with psycopg.connect(host="127.0.0.1", port=port, user=PG_USER, password=PG_PASSWORD, dbname="crm") as c:
        for name, table in TABLES.items():
            path = folder / f"{name}.csv"
            header = pd.read_csv(path, nrows=0).columns
            kinds = {col.name: col.kind for col in table.columns}
            cols = ", ".join(f'"{h}" {SQL_TYPES[kinds.get(h, "str")]}' for h in header)
            c.execute(f'drop table if exists "{name}"')
            c.execute(f'create table "{name}" ({cols})')
            with c.cursor().copy(f'copy "{name}" from stdin with (format csv, header true)') as cp:
                cp.write(path.read_bytes())


@pytest.fixture(scope="module")
def pg_dataset(pg_server, sample_dir, tmp_path_factory):
    """A dataset folder whose dataset.yml points every table at the sample loaded into PostgreSQL."""
    _copy_sample_into_postgres(pg_server, sample_dir)
    folder = tmp_path_factory.mktemp("pg") / "crm_in_postgres"
    folder.mkdir()
    cfg = yaml.safe_load((sample_dir / "dataset.yml").read_text())
    url = f"postgresql://{{REVOPS_TEST_DB_USER}}:{{REVOPS_TEST_DB_PASSWORD}}@127.0.0.1:{pg_server}/crm"
    cfg["tables"] = {name: {"url": url, "table": name} for name in TABLES}
    (folder / "dataset.yml").write_text(yaml.safe_dump(cfg, sort_keys=False))
    return folder


@pytest.fixture
def pg_env(monkeypatch):
    monkeypatch.setenv("REVOPS_TEST_DB_USER", PG_USER)
    monkeypatch.setenv("REVOPS_TEST_DB_PASSWORD", PG_PASSWORD)


def _assert_same_tables(a, b):
    assert list(a.tables) == list(b.tables)
    for name in a.tables:
        pdt.assert_frame_equal(a.tables[name], b.tables[name], obj=name)


def test_postgres_and_files_give_identical_frames(pg_dataset, sample_dir, pg_env):
    from_files = load(sample_dir)
    from_pg = load(pg_dataset)
    _assert_same_tables(from_files, from_pg)
    assert len(from_pg.opportunities) == 1500  # the fixture's n_opportunities
    # the same warnings, named after the database table instead of the file
    assert [p.expected for p in from_pg.warnings] == [p.expected for p in from_files.warnings]
    assert all(PG_PASSWORD not in str(p) for p in from_pg.warnings)
    assert "postgresql://{REVOPS_TEST_DB_USER}:***@127.0.0.1" in from_pg.warnings[0].file


def test_date_window_is_pushed_to_postgres_and_matches_files(pg_dataset, sample_dir, pg_env):
    since = "2026-02-01"
    from_files = load(sample_dir, since=since)
    from_pg = load(pg_dataset, since=since)
    _assert_same_tables(from_files, from_pg)
    full = load(sample_dir)
    # the window drops old closed deals and old activities, and keeps every open deal
    assert len(from_pg.opportunities) < len(full.opportunities)
    assert len(from_pg.activities) == int((full.activities["occurred_at"] >= since).sum())
    assert (~full.opportunities["is_closed"]).sum() == (~from_pg.opportunities["is_closed"]).sum()
    # … and every kept activity's deal is there
    kept = set(from_pg.opportunities["opportunity_id"])
    assert from_pg.activities["opportunity_id"].dropna().isin(kept).all()

    # only the window's rows cross the wire: the reader sends the predicate to PostgreSQL
    cfg = yaml.safe_load((pg_dataset / "dataset.yml").read_text())
    srcs = {t: DbTable(t, s["url"], s["table"], folder=pg_dataset) for t, s in cfg["tables"].items()}
    reader = TableReader(srcs, from_pg.config, since)
    raw_acts = reader.read("activities")
    raw_opps = reader.read("opportunities")
    reader.close()
    assert len(raw_acts) == len(from_pg.activities)
    assert len(raw_opps) == len(from_pg.opportunities)
    assert "\"occurred_at\" >= date '2026-02-01'" in reader.pushed["activities"]
    assert '"opportunity_id" in (select' in reader.pushed["opportunities"]


def test_wrong_password_is_a_clear_error_without_the_password(pg_dataset, monkeypatch):
    wrong = "Wr0ng-Passw0rd-123"
    monkeypatch.setenv("REVOPS_TEST_DB_USER", PG_USER)
    monkeypatch.setenv("REVOPS_TEST_DB_PASSWORD", wrong)
    t0 = time.perf_counter()
    with pytest.raises(DataValidationError) as exc:
        load(pg_dataset)
    msg = str(exc.value)
    assert "password authentication failed" in msg
    assert "could not connect to PostgreSQL" in msg
    assert wrong not in msg and PG_PASSWORD not in msg
    assert wrong not in repr(exc.value.problems)
    assert time.perf_counter() - t0 < 10  # one failed connection, not one per table


def test_missing_environment_variable_is_named(pg_dataset, monkeypatch):
    monkeypatch.setenv("REVOPS_TEST_DB_USER", PG_USER)
    monkeypatch.delenv("REVOPS_TEST_DB_PASSWORD", raising=False)
    with pytest.raises(DataValidationError, match="environment variable REVOPS_TEST_DB_PASSWORD is not set"):
        load(pg_dataset)
