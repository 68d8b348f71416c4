"""A private, throw-away PostgreSQL server for the tests and ``revops bench`` (never a system-wide one).

``PgServer.start()`` runs Debian's ``initdb`` / ``pg_ctl`` (``/usr/lib/postgresql/*/bin``, else on PATH)
in a temporary folder on a free loopback port, with a password-protected superuser ``revops_reader``
and ``pg_stat_statements`` loaded (so the rows the server sent can be counted); as root the server runs
as the ``postgres`` user, since initdb refuses root. ``pg_bin()`` is None when PostgreSQL is not
installed (``apt-get install postgresql``). ``copy_into_postgres`` / ``dataset_in_postgres`` load a
dataset folder's CSV tables into a database, typed by the contract, and write a dataset folder whose
``dataset.yml`` points every table there (credentials from two environment variables).
"""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path

import yaml

from helpers.data.schema import TABLES

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


class PgServerError(RuntimeError):
    """The server could not be started; the message has initdb's or pg_ctl's output."""


def pg_bin() -> Path | None:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    if found:
        return Path(found[-1]).parent
    which = shutil.which("initdb")
    return Path(which).parent if which else None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class PgServer:
    """A running private cluster: ``port``, ``user``, ``password``; ``stop()`` (or ``with``) removes it."""

    def __init__(self, bindir: Path, tmp: Path, port: int, prefix: list[str]):
        self.bindir, self.tmp, self.port, self._prefix = bindir, tmp, port, prefix
        self.user, self.password = PG_USER, PG_PASSWORD
        # the statement statistics (rows sent), when the contrib module is installed (Debian: always)
        self.stat_statements = any((bindir.parent / "lib").glob("pg_stat_statements.*"))

    @classmethod
    def start(cls, bindir: Path | None = None) -> PgServer:
        bindir = bindir or pg_bin()
        if bindir is None:
            raise PgServerError(
                "PostgreSQL is not installed (no initdb under /usr/lib/postgresql/*/bin or on PATH)"
            )
        as_root = os.geteuid() == 0
        prefix = ["runuser", "-u", "postgres", "--"] if as_root else []
        tmp = Path(tempfile.mkdtemp(prefix="revops-pg-"))
        if as_root:
            shutil.chown(tmp, "postgres", "postgres")
        data, pwfile, log = tmp / "data", tmp / "pw", tmp / "log"
        pwfile.write_text(PG_PASSWORD)
        if as_root:
            shutil.chown(pwfile, "postgres", "postgres")
        server = cls(bindir, tmp, free_port(), prefix)
        try:
            server._run(
                bindir / "initdb", "-D", data, "-U", PG_USER, f"--pwfile={pwfile}",
                "--auth-host=scram-sha-256", "--auth-local=trust", "-E", "UTF8", "--no-sync",
            )  # fmt: skip
            opts = f"-p {server.port} -k {tmp} -c listen_addresses=127.0.0.1 -c fsync=off"
            if server.stat_statements:
                opts += " -c shared_preload_libraries=pg_stat_statements"
            server._run(bindir / "pg_ctl", "-D", data, "-o", opts, "-l", log, "-w", "-t", "60", "start")
        except subprocess.CalledProcessError as exc:
            tail = log.read_text(errors="replace")[-2000:] if log.exists() else ""
            shutil.rmtree(tmp, ignore_errors=True)
            raise PgServerError(f"could not start PostgreSQL: {exc.stderr or exc.stdout}{tail}") from None
        return server

    def _run(self, *cmd):
        return subprocess.run([*self._prefix, *map(str, cmd)], check=True, capture_output=True, text=True)

    def connect(self, dbname: str = "postgres", **kw):
        import psycopg

        return psycopg.connect(
            host="127.0.0.1", port=self.port, user=self.user, password=self.password, dbname=dbname, **kw
        )

    def stop(self) -> None:
        subprocess.run(
            [
                *self._prefix,
                str(self.bindir / "pg_ctl"),
                "-D",
                str(self.tmp / "data"),
                "-m",
                "immediate",
                "stop",
            ],
            capture_output=True,
        )
        shutil.rmtree(self.tmp, ignore_errors=True)

    def __enter__(self) -> PgServer:
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


def copy_into_postgres(
    port: int, folder: Path, dbname: str = "crm", types: dict[str, str] | None = None
) -> list[str]:
    """The CSV tables of a dataset folder into database ``dbname`` (created when missing), typed by the
    contract (SQL_TYPES) except the columns ``types`` names (``{"opportunities.is_won": "text"}``); returns
    the tables copied."""
    import csv

    import psycopg

    def connect(db, **kw):
        return psycopg.connect(
            host="127.0.0.1", port=port, user=PG_USER, password=PG_PASSWORD, dbname=db, **kw
        )

    with connect("postgres", autocommit=True) as c:
        if not c.execute("select 1 from pg_database where datname = %s", (dbname,)).fetchone():
            c.execute(f'create database "{dbname}"')
    copied = []
    with connect(dbname) as c:
        for name, table in TABLES.items():
            path = folder / f"{name}.csv"
            if not path.exists():
                continue
            with path.open(newline="", encoding="utf-8") as fh:
                header = next(csv.reader(fh))
            kinds = {col.name: col.kind for col in table.columns}
            cols = ", ".join(
                f'"{h}" {(types or {}).get(f"{name}.{h}") or SQL_TYPES[kinds.get(h, "str")]}' for h in header
            )
            c.execute(f'drop table if exists "{name}"')
            c.execute(f'create table "{name}" ({cols})')
            with c.cursor().copy(f'copy "{name}" from stdin with (format csv, header true)') as cp:
                with path.open("rb") as fh:
                    while block := fh.read(1 << 23):
                        cp.write(block)
            copied.append(name)
    return copied


def dataset_in_postgres(
    port: int,
    folder: Path,
    dbname: str,
    out: Path,
    env: tuple[str, str] = ("REVOPS_TEST_DB_USER", "REVOPS_TEST_DB_PASSWORD"),
    types: dict[str, str] | None = None,
) -> Path:
    """A dataset folder ``out`` whose dataset.yml (else that of ``folder``) points every table of
    ``folder`` at its copy in PostgreSQL database ``dbname`` (column types as ``copy_into_postgres``);
    credentials from the variables ``env``."""
    tables = copy_into_postgres(port, folder, dbname, types)
    out.mkdir(parents=True, exist_ok=True)
    cfg = yaml.safe_load((folder / "dataset.yml").read_text())
    url = f"postgresql://{{{env[0]}}}:{{{env[1]}}}@127.0.0.1:{port}/{dbname}"
    cfg["tables"] = {name: {"url": url, "table": name} for name in tables}
    (out / "dataset.yml").write_text(yaml.safe_dump(cfg, sort_keys=False))
    return out
