"""Shared fixtures. Tests never reach outside the repository or write into it: outputs go to tmp_path."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

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
