"""Shared fixtures. Tests never reach outside the repository or write into it: outputs go to tmp_path."""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path

import pandas as pd
import pytest
import yaml

from helpers.data.schema import TABLES

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = ROOT / "notebooks"
EXAMPLES = ROOT / "data" / "examples"
SAMPLE_AS_OF = "2026-10-31"
# the browser tests drive Debian's chromium (no browser download); no request leaves the machine
CHROMIUM = "/usr/bin/chromium"
LAUNCH_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
]


@pytest.fixture(scope="session")
def sample_dir(tmp_path_factory) -> Path:
    """A small deterministic sample dataset (all tables), generated once per test session."""
    from helpers.data.sample import write_sample

    folder = tmp_path_factory.mktemp("sample") / "sample"
    write_sample(folder, seed=7, as_of=SAMPLE_AS_OF, n_opportunities=1500, n_reps=12)
    return folder


@pytest.fixture(scope="session", autouse=True)
def _cache_in_tmp(tmp_path_factory):
    """The Parquet cache of dataset loads (helpers.data.sources) goes to a session tmp dir, never ~/.cache;
    notebook kernels started by tests inherit it."""
    old = os.environ.get("REVOPS_CACHE_DIR")
    os.environ["REVOPS_CACHE_DIR"] = str(tmp_path_factory.mktemp("revops-cache"))
    yield
    if old is None:
        os.environ.pop("REVOPS_CACHE_DIR", None)
    else:
        os.environ["REVOPS_CACHE_DIR"] = old


# --------------------------------------------------------------------------------------------------
# a real PostgreSQL server (tests/test_postgres.py, tests/test_engine.py)
# --------------------------------------------------------------------------------------------------
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


@pytest.fixture(scope="session")
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


def copy_into_postgres(port: int, folder: Path, dbname: str = "crm") -> list[str]:
    """The CSV tables of a dataset folder into database ``dbname`` (created when missing), typed by the
    contract (SQL_TYPES); returns the tables copied."""
    import psycopg

    with psycopg.connect(
        host="127.0.0.1", port=port, user=PG_USER, password=PG_PASSWORD, dbname="postgres", autocommit=True
    ) as c:
        if not c.execute("select 1 from pg_database where datname = %s", (dbname,)).fetchone():
            c.execute(f'create database "{dbname}"')
    copied = []
    with psycopg.connect(host="127.0.0.1", port=port, user=PG_USER, password=PG_PASSWORD, dbname=dbname) as c:
        for name, table in TABLES.items():
            path = folder / f"{name}.csv"
            if not path.exists():
                continue
            header = pd.read_csv(path, nrows=0).columns
            kinds = {col.name: col.kind for col in table.columns}
            cols = ", ".join(f'"{h}" {SQL_TYPES[kinds.get(h, "str")]}' for h in header)
            c.execute(f'drop table if exists "{name}"')
            c.execute(f'create table "{name}" ({cols})')
            with c.cursor().copy(f'copy "{name}" from stdin with (format csv, header true)') as cp:
                cp.write(path.read_bytes())
            copied.append(name)
    return copied


def dataset_in_postgres(port: int, folder: Path, dbname: str, out: Path) -> Path:
    """A dataset folder ``out`` whose dataset.yml (else that of ``folder``) points every table of
    ``folder`` at its copy in PostgreSQL database ``dbname``; credentials from REVOPS_TEST_DB_*."""
    tables = copy_into_postgres(port, folder, dbname)
    out.mkdir(parents=True, exist_ok=True)
    cfg = yaml.safe_load((folder / "dataset.yml").read_text())
    url = f"postgresql://{{REVOPS_TEST_DB_USER}}:{{REVOPS_TEST_DB_PASSWORD}}@127.0.0.1:{port}/{dbname}"
    cfg["tables"] = {name: {"url": url, "table": name} for name in tables}
    (out / "dataset.yml").write_text(yaml.safe_dump(cfg, sort_keys=False))
    return out


@pytest.fixture(scope="session")
def pg_dataset(pg_server, sample_dir, tmp_path_factory):
    """A dataset folder whose dataset.yml points every table at the sample loaded into PostgreSQL."""
    return dataset_in_postgres(
        pg_server, sample_dir, "crm", tmp_path_factory.mktemp("pg") / "crm_in_postgres"
    )


@pytest.fixture
def pg_env(monkeypatch):
    monkeypatch.setenv("REVOPS_TEST_DB_USER", PG_USER)
    monkeypatch.setenv("REVOPS_TEST_DB_PASSWORD", PG_PASSWORD)


@pytest.fixture(scope="module")
def browser():
    if not Path(CHROMIUM).exists():
        pytest.skip(f"{CHROMIUM} is not installed")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=LAUNCH_ARGS)
        yield b
        b.close()
