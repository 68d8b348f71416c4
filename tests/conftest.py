"""Shared fixtures. Tests never reach outside the repository or write into it: outputs go to tmp_path."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
import yaml

from helpers.publish.pgserver import (  # noqa: F401 - PG_USER, PG_PASSWORD for the tests
    PG_PASSWORD,
    PG_USER,
    PgServer,
    PgServerError,
    dataset_in_postgres,
    pg_bin,
)

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


# --------------------------------------------------------------------------------------------------
# Voilà (tests/test_whatif_browser.py, tests/test_make.py)
# --------------------------------------------------------------------------------------------------
def wait_for_port(port: int, proc, timeout: float = 120) -> None:
    """Until the server started as ``proc`` accepts connections on 127.0.0.1:``port``. Not a GET of its
    page: each GET of a Voilà page starts a kernel and runs the whole notebook, so the browser's page was the
    second render at once, on a machine already busy (one of them stuck at "Executing 2 of 3" in CI; see
    VOILA_ARGS in the Makefile)."""
    import socket
    import time

    end = time.monotonic() + timeout
    while True:
        if proc.poll() is not None:
            raise AssertionError(f"the server exited with code {proc.returncode} before it answered")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=2).close()
            return
        except OSError:
            if time.monotonic() > end:
                raise AssertionError(f"nothing answered on 127.0.0.1:{port} within {timeout:.0f} s") from None
            time.sleep(0.3)


def wait_for_panel(page, selector: str, log: Path | None = None, timeout: float = 240_000) -> None:
    """Until Voilà's ``page`` shows ``selector``; if it never does, fail with what the page last said (e.g.
    "Executing 2 of 3") and the end of the server's ``log``."""
    try:
        page.wait_for_selector(selector, timeout=timeout)
    except Exception as exc:  # playwright's TimeoutError
        said = page.evaluate("document.body ? document.body.innerText.slice(-600) : ''")
        tail = log.read_text(errors="replace")[-3000:] if log is not None and log.exists() else ""
        raise AssertionError(
            f"{selector} never showed: {exc}\npage said: {said!r}\nserver log:\n{tail}"
        ) from None


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
@pytest.fixture(scope="session")
def pg_server():
    """The port of a throw-away PostgreSQL cluster with a password-protected role ``revops_reader``
    (``helpers.publish.pgserver``, which ``revops bench`` uses too)."""
    if pg_bin() is None:
        pytest.skip(
            "PostgreSQL is not installed (no initdb under /usr/lib/postgresql/*/bin or on PATH); "
            "`apt-get install postgresql` (done by .ci/run) enables this test"
        )
    try:
        server = PgServer.start()
    except PgServerError as exc:
        pytest.fail(str(exc))
    with server:
        yield server.port


@pytest.fixture(scope="session")
def pg_dataset(pg_server, sample_dir, tmp_path_factory):
    """A dataset folder whose dataset.yml points every table at the sample loaded into PostgreSQL."""
    return dataset_in_postgres(
        pg_server, sample_dir, "crm", tmp_path_factory.mktemp("pg") / "crm_in_postgres"
    )


@pytest.fixture(scope="session")
def pg_credentials():
    """``pg_env`` for a whole session (engines opened by module fixtures)."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("REVOPS_TEST_DB_USER", PG_USER)
        mp.setenv("REVOPS_TEST_DB_PASSWORD", PG_PASSWORD)
        yield


@pytest.fixture
def pg_env(monkeypatch):
    monkeypatch.setenv("REVOPS_TEST_DB_USER", PG_USER)
    monkeypatch.setenv("REVOPS_TEST_DB_PASSWORD", PG_PASSWORD)


def rows_sent(pg_dataset: Path, run):
    """``run()``'s result and the (statement, calls, rows) the PostgreSQL server behind ``pg_dataset`` sent
    while it ran (``pg_stat_statements``, as ``revops bench`` counts them)."""
    import psycopg

    from helpers.publish import bench

    url = yaml.safe_load((pg_dataset / "dataset.yml").read_text())["tables"]["opportunities"]["url"]
    port = int(url.rsplit(":", 1)[1].split("/")[0])

    def connect():
        return psycopg.connect(
            host="127.0.0.1", port=port, user=PG_USER, password=PG_PASSWORD, dbname="crm", autocommit=True
        )

    with connect() as c:
        bench.pg_counting(c)
    got = run()
    with connect() as c:
        return got, bench.pg_rows_sent(c, "crm")


@pytest.fixture(scope="module")
def browser():
    if not Path(CHROMIUM).exists():
        pytest.skip(f"{CHROMIUM} is not installed")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=LAUNCH_ARGS)
        yield b
        b.close()


# --------------------------------------------------------------------------------------------------
# a metric's engine on DuckDB, PostgreSQL and Spark (tests/test_engine.py, test_pipeline_closed.py,
# test_winloss.py): ``x_engine = engine_of("x_dir", "x")`` in a test module
# --------------------------------------------------------------------------------------------------
ENGINES = ["duckdb", "postgres", pytest.param("spark", marks=pytest.mark.slow)]


@pytest.fixture(scope="session")
def java():
    if not (os.environ.get("JAVA_HOME") or shutil.which("java")):
        pytest.skip("Java is not installed; `apt-get install openjdk-17-jre-headless` (done by .ci/run)")


@pytest.fixture(scope="module")
def sample(sample_dir):
    """The sample, loaded (the pandas side the engine's figures are held to)."""
    from helpers.data.dataset import load

    return load(sample_dir)


def hand_folder(tmp_path_factory, name: str, config: dict, **tables: str) -> Path:
    """A dataset folder ``name``: its dataset.yml and one CSV per table (``table=text``)."""
    folder = tmp_path_factory.mktemp("hand") / name
    folder.mkdir()
    (folder / "dataset.yml").write_text(yaml.safe_dump(config, sort_keys=False))
    for table, text in tables.items():
        (folder / f"{table}.csv").write_text(text)
    return folder


def open_engine(request, kind: str, folder: Path, dbname: str):
    """The engine ``kind`` (duckdb, postgres, spark) over the dataset ``folder``; on PostgreSQL its
    tables copied into database ``dbname`` of the test server."""
    from helpers.data import engine as eng_mod

    if kind == "postgres":
        request.getfixturevalue("pg_credentials")
        port = request.getfixturevalue("pg_server")
        out = request.getfixturevalue("tmp_path_factory").mktemp("pg") / f"{dbname}_in_postgres"
        e = eng_mod.connect(dataset_in_postgres(port, folder, dbname, out))
    elif kind == "spark":
        request.getfixturevalue("java")
        e = eng_mod.connect(folder, engine="spark")
    else:
        e = eng_mod.connect(folder)
    assert e.name == kind
    return e


def engine_of(folder_fixture: str, dbname: str):
    """A module fixture: the engine over the dataset folder that fixture ``folder_fixture`` gives, once
    per ``ENGINES`` (database ``dbname`` on PostgreSQL), closed when the module's tests are done."""

    @pytest.fixture(scope="module", params=ENGINES)
    def engine(request):
        e = open_engine(request, request.param, request.getfixturevalue(folder_fixture), dbname)
        yield e
        e.close()

    return engine
