"""Where the metrics run: one connection to an engine, and the canonical tables as Ibis tables.

``connect(dataset)`` opens the engine the dataset calls for and returns an ``Engine``: the Ibis backend
plus one Ibis table per canonical table present (``eng["opportunities"]``). Metric expressions
(``helpers.metrics.expr``) are built on those tables and executed where the data lives; only their
small aggregated results come back, as pandas frames (``Engine.execute``).

**Which engine.** The first of: the ``engine=`` argument, the environment variable ``REVOPS_ENGINE``,
``engine:`` in ``dataset.yml``; else PostgreSQL when the dataset's tables live there, else DuckDB.

- ``duckdb`` (the default) — embedded DuckDB over a typed cache: the dataset is loaded and validated
  once (``helpers.data.dataset.load``, whose Arrow cache it reuses) and its typed tables are written to
  one DuckDB file (date columns as DATE, datetimes as TIMESTAMP, text as VARCHAR, amounts as DOUBLE,
  flags as BOOLEAN), built once per fingerprint next to the load cache (same key: the bytes of every
  source file, ``dataset.yml`` and the loading code; plus this module's code). The file is written to a
  temporary name and renamed, then opened **read-only**, so several kernels share it at once. With the
  cache off (``REVOPS_CACHE=0``) or sources that cannot be fingerprinted (a PostgreSQL table read into
  DuckDB), the typed tables go into an in-memory DuckDB instead. Each connection holds at most
  ``REVOPS_ENGINE_MEMORY`` (default 512MB) and spills the rest to a temporary folder of its own
  (``_limit_memory``).
- ``postgres`` — the tables named in ``dataset.yml`` (``url`` + ``table`` or ``query``, credentials
  from the environment as ``helpers.data.sources`` describes), queried in place over one read-only
  connection opened by ``sources.TableReader`` (so the same redaction of credentials in errors). Every
  table must live in that one database. The tables are read as ``dataset.load`` reads files, by Ibis
  expressions run on the server (``canonical``): contract types, trimmed text, stage spellings,
  probabilities on a 0–100 scale, true/false words, ``is_closed`` / ``is_won`` from the stage.
  Validation runs there too, as queries (``helpers.data.pgcheck``). A scope's normalized stage history
  is kept as a temporary table of the session (``Engine.keep``); the session runs without JIT.
- ``spark`` — PySpark (``pip install 'revops-notebooks[spark]'``, Java 17+): the typed cache exported
  once to Parquet beside the DuckDB file, read by a Spark session. The session is local
  (``local[2]``, UI off) unless ``REVOPS_SPARK_MASTER`` names a cluster master, or
  ``REVOPS_SPARK_REMOTE`` a Spark Connect server (``sc://host:15002``; untested here).
- any other Ibis backend by URL (``engine: "trino://user@host:8080/catalog/schema"``, ``snowflake://…``,
  ``bigquery://project/dataset``; ``{NAME}`` placeholders expand from the environment): the canonical
  tables are looked up by name, or by the ``table`` given under ``tables:``. **Untested here**: only
  DuckDB, PostgreSQL and local Spark are covered by the tests.
"""

from __future__ import annotations

import atexit
import dataclasses
import functools
import hashlib
import itertools
import os
import shutil
import sys
import tempfile
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from helpers.data import sources
from helpers.data.config import DatasetConfig, load_config
from helpers.data.schema import TABLES

# warnings ibis 12.0 and PySpark 4.0 raise from their own code on every query with DuckDB 2.0 / pandas 3;
# nothing a user of the metrics can act on (pyproject.toml filters the same ones in the tests)
warnings.filterwarnings("ignore", r"fetch_arrow_table\(\) is deprecated", DeprecationWarning, r"ibis\.")
warnings.filterwarnings("ignore", r"The 'future\.infer_string' option is deprecated", Warning, r"ibis\.")
warnings.filterwarnings("ignore", r"The copy keyword is deprecated", Warning, r"pyspark\.")

ENGINES = ("duckdb", "postgres", "spark")
# the seconds this process waited on its engines (``engine_seconds``); ``depth``: calls in progress, so a
# backend method calling another is timed once
_CLOCK = {"seconds": 0.0, "depth": 0}
TIMED_METHODS = ("execute", "to_pyarrow", "to_pandas", "create_table", "raw_sql")
_KEPT = itertools.count()  # names of the temporary tables ``Engine.keep`` makes
KEPT_DB = "_revops_kept"  # DuckDB: the scratch databases ``Engine.keep`` writes to (one per engine)
ENGINE_FORMAT = 1
# contract kind -> Ibis type of the canonical column
IBIS_TYPES = {
    "id": "string",
    "str": "string",
    "date": "date",
    "datetime": "timestamp",
    "money": "float64",
    "number": "float64",
    "prob": "float64",
    "bool": "boolean",
}


class EngineError(RuntimeError):
    """The engine named for a dataset cannot be opened; the message says why and what to change."""


@dataclass
class Engine:
    """An open engine: ``backend`` (an Ibis backend) and the canonical ``tables`` as Ibis tables."""

    name: str  # duckdb, postgres, spark, or the URL scheme of another Ibis backend
    backend: object
    tables: dict
    config: DatasetConfig
    path: Path
    where: str = ""  # what was opened, for messages (no credentials)
    _close: list = field(default_factory=list, repr=False)
    kept_in: str = ""  # DuckDB: the attached scratch database ``keep`` writes to ("": temporary tables)

    def __post_init__(self) -> None:
        _time_backend(self.backend)

    def __getitem__(self, name: str):
        if name not in self.tables:
            raise KeyError(f"dataset {self.config.name!r} has no {name} table (engine {self.name})")
        return self.tables[name]

    def has(self, table: str, *columns: str) -> bool:
        t = self.tables.get(table)
        return t is not None and all(c in t.columns for c in columns)

    def missing(self, table: str, *columns: str, section: str = "This section") -> str | None:
        """None when ``table`` has ``columns`` with data (one query); otherwise a sentence saying what
        is needed — the same sentences as ``Dataset.missing``."""
        t = self.tables.get(table)
        if t is None:
            need = f" (with columns {', '.join(columns)})" if columns else ""
            return f"{section} needs the `{table}` table{need}; dataset {self.config.name!r} has none."
        absent = [c for c in columns if c not in t.columns]
        present = [c for c in columns if c in t.columns]
        if present:
            got = self.execute(t.aggregate(**{f"n{i}": t[c].count() for i, c in enumerate(present)}))
            absent += [c for i, c in enumerate(present) if not got[f"n{i}"].iloc[0]]
        if absent:
            absent = [c for c in columns if c in absent]
            return (
                f"{section} needs column(s) {', '.join(absent)} in the `{table}` table; "
                f"dataset {self.config.name!r} does not provide them."
            )
        return None

    def inferred_as_of(self) -> pd.Timestamp | None:
        """``dataset.infer_as_of`` of the opportunities, asked where they live (one row comes back): the
        latest created date and close date of a closed deal."""
        t = self.tables["opportunities"]
        agg = {}
        if "created_date" in t.columns:
            agg["created"] = t.created_date.max()
        if {"close_date", "is_closed"} <= set(t.columns):
            agg["closed"] = t.close_date.max(where=t.is_closed.fill_null(False))
        if not agg:
            return None
        got = [pd.Timestamp(v) for v in self.execute(t.aggregate(**agg)).iloc[0] if pd.notna(v)]
        return max(got).normalize() if got else None

    def view(self, **tables) -> Engine:
        """This engine with some canonical tables replaced by expressions on it (a scope's deals, the
        history cut at a day): what is built on the view reads those. Same connection; closing the view
        does nothing (the engine it came from closes it)."""
        return dataclasses.replace(self, tables={**self.tables, **tables}, _close=[])

    def keep(self, expr, on_server_only: bool = False):
        """``expr`` computed once and kept for the queries built on it, as a table of this connection only
        (``drop`` removes it): on DuckDB (also over a read-only file) in the scratch database file of its
        spill folder, stored compressed and removed on close (a temporary table where it has none), and
        on PostgreSQL as a temporary table,
        where the connection stays read-only for every other statement (``_pg_temp``). Where no
        temporary table can be made (Spark, which plans each query whole; a PostgreSQL role without
        the TEMP privilege, or a read-only replica) the expression itself, computed inside each query.
        ``on_server_only``: keep it on PostgreSQL only, where the table takes the server's memory; DuckDB
        holds it in this process and recomputes such an expression quickly."""
        name = f"_kept_{next(_KEPT)}"
        if self.name == "duckdb" and not on_server_only:
            if self.kept_in:  # compressed, so a table beyond the memory cap spills less and reads back faster
                return self.backend.create_table(name, expr, database=(self.kept_in, "main"))
            return self.backend.create_table(name, expr, temp=True)
        if self.name == "postgres":
            sql = self.backend.compile(expr)
            if self._pg_temp(f'create temporary table "{name}" as {sql}', f'analyze "{name}"'):
                return self.backend.table(name)
        return expr

    def drop(self, table) -> None:
        """Remove a table ``keep`` made (anything else is left alone)."""
        name = getattr(table.op(), "name", "")
        if not (isinstance(name, str) and name.startswith("_kept_")):
            return
        if self.name == "duckdb":
            where = f"{self.kept_in}.main." if self.kept_in else ""
            self.backend.raw_sql(f"drop table if exists {where}{name}")
        elif self.name == "postgres":
            self._pg_temp(f'drop table if exists pg_temp."{name}"')

    def _pg_temp(self, *statements: str) -> bool:
        return pg_temp(self.backend.con, *statements)

    def execute(self, expr) -> pd.DataFrame:
        """Run ``expr`` on the engine; its (small) result as a pandas DataFrame."""
        out = self.backend.execute(expr)
        return out.to_frame() if isinstance(out, pd.Series) else out

    def close(self) -> None:
        for fn in reversed(self._close):
            try:
                fn()
            except Exception:  # noqa: BLE001, S110 - closing is best effort
                pass
        self._close.clear()

    def __enter__(self) -> Engine:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def engine_seconds(reset: bool = False) -> float:
    """Seconds this process has spent in its engines' queries since the last reset (``reset=True``
    returns them and starts again; ``open_report`` does, so each notebook of a warm kernel counts its
    own): the time of the backends' ``execute``, ``to_pyarrow``, ``to_pandas``, ``create_table`` and
    ``raw_sql`` (every Ibis expression's ``execute`` goes through its backend's), the rest of a cell's time
    being Python's. The report's ``summary.json`` gives it per notebook (``engine_seconds``), and the
    bench beside each notebook's cell time."""
    got = _CLOCK["seconds"]
    if reset:
        _CLOCK["seconds"] = 0.0
    return got


def _time_backend(backend) -> None:
    """Count the time of ``backend``'s query methods into ``engine_seconds`` (once per backend)."""
    if getattr(backend, "_revops_timed", False):
        return
    for name in TIMED_METHODS:
        fn = getattr(backend, name, None)
        if callable(fn):
            setattr(backend, name, _timed(fn))
    try:
        backend._revops_timed = True
    except AttributeError:  # a backend that takes no attributes goes untimed
        pass


def _timed(fn):
    @functools.wraps(fn)
    def call(*args, **kwargs):
        if _CLOCK["depth"]:
            return fn(*args, **kwargs)
        _CLOCK["depth"] += 1
        t0 = time.perf_counter()
        try:
            return fn(*args, **kwargs)
        finally:
            _CLOCK["seconds"] += time.perf_counter() - t0
            _CLOCK["depth"] -= 1

    return call


def pg_temp(conn, *statements: str, rows: tuple[str, list] | None = None) -> bool:
    """Run ``statements`` (on this session's temporary tables only) in one read-write transaction of the
    otherwise read-only PostgreSQL connection ``conn`` (psycopg); ``rows``: (``COPY … FROM STDIN``
    statement, rows) copied in after them. False, with nothing changed, when the server refuses (no
    TEMP privilege, a hot standby). The read-only transaction open before ends here (it only read), so
    the queries after it read a snapshot taken after the temporary table's."""
    import psycopg

    if conn.info.transaction_status != psycopg.pq.TransactionStatus.IDLE:
        conn.commit()
    conn.read_only = False
    try:
        with conn.cursor() as cur, conn.transaction():
            for st in statements:
                cur.execute(st)
            if rows is not None:
                with cur.copy(rows[0]) as cp:
                    for row in rows[1]:
                        cp.write_row(row)
        return True
    except psycopg.Error:
        return False
    finally:
        conn.read_only = True


PG_TYPES = {"timestamp": "timestamp", "int64": "bigint", "float64": "double precision", "string": "text"}


def pg_rows(backend, columns: dict[str, tuple[str, list]]):
    """A temporary table of ``backend``'s PostgreSQL session (an Ibis backend over a connection the
    engine opened) holding ``columns`` (name → (type: timestamp / int64 / float64 / string, values)),
    copied in with ``COPY``; None when the server refuses a temporary table."""
    name = f"_kept_{next(_KEPT)}"
    names = list(columns)
    cols = ", ".join(f'"{c}" {PG_TYPES[columns[c][0]]}' for c in names)
    rows = list(zip(*[columns[c][1] for c in names], strict=True))
    copy = f'copy "{name}" ({", ".join(chr(34) + c + chr(34) for c in names)}) from stdin'
    if not pg_temp(backend.con, f'create temporary table "{name}" ({cols})', rows=(copy, rows)):
        return None
    pg_temp(backend.con, f'analyze "{name}"')  # after the rows: a statement of its own
    return backend.table(name)


# --------------------------------------------------------------------------------------------------
# choosing
# --------------------------------------------------------------------------------------------------
def engine_name(config: DatasetConfig, table_sources: dict, engine: str | None = None) -> str:
    """The engine to open (see the module docstring for the order of the settings)."""
    name = engine or os.environ.get("REVOPS_ENGINE") or config.extra.get("engine")
    if not name:
        on_pg = [s for s in table_sources.values() if isinstance(s, sources.DbTable) and _is_pg(s.url)]
        return "postgres" if on_pg else "duckdb"
    name = str(name).strip()
    low = name.lower()
    if low in ("postgresql", "pg"):
        return "postgres"
    if low in ENGINES or "://" in name:
        return low if low in ENGINES else name
    raise EngineError(
        f"engine {name!r} (from "
        + (
            "the argument"
            if engine
            else "REVOPS_ENGINE"
            if os.environ.get("REVOPS_ENGINE")
            else "dataset.yml"
        )
        + f"): expected one of {', '.join(ENGINES)} or an Ibis backend URL such as trino://host/catalog"
    )


def _is_pg(url: str) -> bool:
    return url.split(":", 1)[0].split("+", 1)[0].lower() in ("postgresql", "postgres")


def connect(dataset, engine: str | None = None) -> Engine:
    """Open the engine for ``dataset`` (a dataset folder, or a loaded ``Dataset``: its folder is used).

    Returns an ``Engine`` whose ``tables`` are the canonical tables the dataset has, as Ibis tables."""
    from helpers.data.dataset import find_table_files

    folder = Path(getattr(dataset, "path", dataset))
    config = load_config(folder)
    table_sources = find_table_files(folder, config)
    name = engine_name(config, table_sources, engine)
    if name == "duckdb":
        return _connect_duckdb(folder, config, table_sources)
    if name == "postgres":
        return _connect_postgres(folder, config, table_sources)
    if name == "spark":
        return _connect_spark(folder, config, table_sources)
    return _connect_url(folder, config, table_sources, name)


_SHARED: dict[tuple, Engine] = {}


def shared(dataset, engine: str | None = None) -> Engine:
    """This process's open engine for ``dataset``: opened on first use and kept, so a kernel that runs
    several notebooks (or sections) holds one connection; reopened when the dataset's files changed
    (another typed file) or the engine setting did."""
    from helpers.data.dataset import find_table_files

    folder = Path(getattr(dataset, "path", dataset)).resolve()
    config = load_config(folder)
    table_sources = find_table_files(folder, config)
    name = engine_name(config, table_sources, engine)
    where = cache_file(folder, table_sources) if name in ("duckdb", "spark") else None
    key = (str(folder), name, str(where))
    eng = _SHARED.get(key)
    if eng is None:
        for old in [k for k in _SHARED if k[0] == str(folder)]:
            _SHARED.pop(old).close()
        eng = _SHARED[key] = connect(folder, engine)
    return eng


def source(ds, table: str):
    """``table`` of the loaded dataset ``ds`` where it lives: the engine's table (``shared``) for a dataset
    read from a folder or database, so what is built on it runs there; the frame for one built in memory
    (None when the dataset has no such table)."""
    if ds.files:
        return shared(ds.path).tables.get(table)
    return ds.tables.get(table)


def prepare(dataset, engine: str | None = None) -> str:
    """Build what the dataset's engine reads before kernels open it (the typed DuckDB file, or the
    Parquet copy for Spark), so parallel kernels share one build; returns the engine's name."""
    from helpers.data.dataset import find_table_files

    folder = Path(getattr(dataset, "path", dataset))
    config = load_config(folder)
    table_sources = find_table_files(folder, config)
    name = engine_name(config, table_sources, engine)
    if name == "duckdb":
        typed_duckdb(folder, table_sources)
    elif name == "spark":
        typed_parquet(folder, table_sources)
    return name


def from_frames(frames: dict[str, pd.DataFrame], config: DatasetConfig | None = None, path=".") -> Engine:
    """An in-memory DuckDB engine over typed frames (tests, data already in memory)."""
    import ibis

    con = ibis.duckdb.connect()
    for name, df in frames.items():
        con.con.register(f"_typed_{name}", _typed_arrow(df, name))
        con.raw_sql(f"create table {sources.quote_ident(name)} as select * from _typed_{name}")
        con.con.unregister(f"_typed_{name}")
    tables = {t: con.table(t) for t in TABLES if t in frames}
    return Engine(
        "duckdb", con, tables, config or DatasetConfig(), Path(path), "in-memory DuckDB", [con.disconnect]
    )


# --------------------------------------------------------------------------------------------------
# the typed cache (DuckDB file; Parquet for Spark)
# --------------------------------------------------------------------------------------------------
def _engine_digest() -> str:
    here = Path(__file__).parent  # this module and the checks that build its file from Parquet
    code = b"".join((here / name).read_bytes() for name in ("engine.py", "duckcheck.py", "pgcheck.py"))
    return hashlib.sha256(f"{ENGINE_FORMAT}|".encode() + code).hexdigest()[:12]


def cache_file(folder: Path, table_sources: dict) -> Path | None:
    """Where the typed DuckDB file of this dataset lives (it may not exist yet), or None when the
    dataset cannot be cached (cache off, or a source that cannot be fingerprinted)."""
    entry = sources.TableCache.open(folder, table_sources)
    if entry is None:
        return None
    return entry.data_dir / f"engine-{_engine_digest()}.duckdb"


def _typed_arrow(table_data, table: str):
    """A typed table (pandas frame or Arrow table) as Arrow, with the contract's ``date`` columns as
    date32 (the frames hold them as midnight timestamps)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    arrow = (
        table_data
        if isinstance(table_data, pa.Table)
        else pa.Table.from_pandas(table_data, preserve_index=False)
    )
    contract = TABLES[table]
    for i, col in enumerate(arrow.column_names):
        spec = contract.column(col)
        if spec is not None and spec.kind == "date" and pa.types.is_timestamp(arrow.schema.field(i).type):
            arrow = arrow.set_column(i, col, pc.cast(arrow.column(i), pa.date32()))
    return arrow


def _write_duckdb(frames: dict[str, pd.DataFrame], path: Path) -> None:
    """The typed tables into a new DuckDB file at ``path``, atomically (temporary name, then rename)."""
    _publish(_duckdb_file(frames, path.parent), path)


def _tmp_file(folder: Path) -> Path:
    """A new temporary name for a DuckDB file in ``folder`` (not created: duckdb creates it)."""
    sources._private_dir(folder)  # user-only under the cache root, as the load cache's entries
    folder.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=".tmp-engine-", suffix=".duckdb", dir=folder)
    os.close(fd)
    tmp = Path(tmp_name)
    tmp.unlink()
    return tmp


def _duckdb_file(frames: dict, folder: Path) -> Path:
    """The typed tables (frames or Arrow tables) in a new DuckDB file under a temporary name in ``folder``."""
    import duckdb

    tmp = _tmp_file(folder)
    try:
        con = duckdb.connect(str(tmp))
        try:
            for name, df in frames.items():
                con.register("_typed", _typed_arrow(df, name))
                con.execute(f"create table {sources.quote_ident(name)} as select * from _typed")
                con.unregister("_typed")
            con.execute("checkpoint")
        finally:
            con.close()
    except BaseException:
        _discard(tmp)
        raise
    return tmp


def _publish(tmp: Path, path: Path) -> None:
    try:
        os.replace(tmp, path)
    finally:
        _discard(tmp)


def _discard(tmp: Path) -> None:
    tmp.unlink(missing_ok=True)
    Path(str(tmp) + ".wal").unlink(missing_ok=True)


def _load_and_write(folder: Path, path: Path) -> None:
    """``dataset.load`` (which validates the dataset and writes the load cache's entry), and the typed
    DuckDB file at ``path`` from the same frames. The file is written on a worker thread from the moment
    the tables are typed, while the load checks the cross-table rules and writes its entry (DuckDB
    releases the GIL while it writes); it is renamed into place only once the load has passed, and
    discarded when it raised."""
    from concurrent.futures import ThreadPoolExecutor

    from helpers.data.dataset import load

    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="revops-engine-file") as pool:
        job = []

        def on_typed(frames: dict) -> None:
            job.append(pool.submit(_duckdb_file, dict(frames), path.parent))

        try:
            tables = load(folder, on_typed=on_typed).tables
        except BaseException:
            for j in job:
                if j.exception() is None:
                    _discard(j.result())
            raise
    if job:
        _publish(job[0].result(), path)
    else:  # the load was served by a cache entry another process wrote meanwhile
        _write_duckdb(tables, path)


CHECKED = "_checked"  # the table of a file built by SQL holding its dataset's check (``checked``)


def _build_by_sql(folder: Path, path: Path) -> bool:
    """A dataset of Parquet files: checked and typed by DuckDB queries (``duckcheck``) straight into a new
    DuckDB file (``create table … as select`` from ``read_parquet``: no table passes through Arrow or
    pandas in Python), with the check's result in a table of its own (``CHECKED``), published at ``path``
    only once the check passed. False when the check does not apply (the caller loads the dataset);
    ``DataValidationError`` when the dataset has errors (nothing is kept)."""
    import json

    from helpers.data import duckcheck

    if not duckcheck.applies(_sources(folder)):
        return False
    tmp = _tmp_file(path.parent)
    con, spill = duckcheck.connect(str(tmp))
    try:
        done = duckcheck.run(folder, con=con)
        if done is not None:
            checked, selects = done
            for name, sql in selects.items():
                con.execute(f"create table {sources.quote_ident(name)} as {sql}")
            con.execute(f"create table {CHECKED} (json varchar)")
            con.execute(
                f"insert into {CHECKED} values (?)",
                [json.dumps(_checked_to_json(checked), ensure_ascii=False)],
            )
            con.execute("checkpoint")
    except BaseException:
        duckcheck.close(con, spill)
        _discard(tmp)
        raise
    duckcheck.close(con, spill)
    if done is None:
        _discard(tmp)
        return False
    _publish(tmp, path)
    return True


def _sources(folder: Path) -> dict:
    from helpers.data.dataset import find_table_files

    return find_table_files(folder, load_config(folder))


def _checked_to_json(checked) -> dict:
    stamp = lambda v: None if v is None or pd.isna(v) else pd.Timestamp(v).isoformat()  # noqa: E731
    return {
        "rows": checked.rows,
        "files": {t: str(p) for t, p in checked.files.items()},
        "warnings": [sources._problem_to_json(w) for w in checked.warnings],
        "inferred_as_of": stamp(checked.inferred_as_of),
        "first_created": stamp(checked.first_created),
    }


def checked(folder: Path):
    """The ``Checked`` of a Parquet dataset as its typed DuckDB file holds it (the file is built now when
    missing: ``DataValidationError`` when the dataset has errors), or None: not a Parquet dataset, the
    cache off, or a file built another way (from the load cache)."""
    import json

    import duckdb

    from helpers.data import duckcheck
    from helpers.data.dataset import Checked

    folder = Path(folder)
    table_sources = _sources(folder)
    if not duckcheck.applies(table_sources):
        return None
    path = typed_duckdb(folder, table_sources)
    if path is None:
        return None
    with duckdb.connect(str(path), read_only=True) as con:
        if not con.execute(
            "select count(*) from information_schema.tables where table_name = ?", [CHECKED]
        ).fetchone()[0]:
            return None
        (text,) = con.execute(f"select json from {CHECKED}").fetchone()
    d = json.loads(text)
    stamp = lambda v: None if v is None else pd.Timestamp(v)  # noqa: E731
    return Checked(
        folder,
        load_config(folder),
        d["rows"],
        {t: Path(p) for t, p in d["files"].items()},
        [sources._problem_from_json(w) for w in d["warnings"]],
        stamp(d["inferred_as_of"]),
        stamp(d["first_created"]),
    )


def typed_frames(folder: Path, table_sources: dict, tables) -> tuple[dict, object] | None:
    """({table: frame as ``dataset.load`` gives it}, the dataset's ``Checked``) for the named tables of a
    Parquet dataset, read from its typed DuckDB file (built now when missing) — a notebook's few pandas
    tables without loading the others; None when the dataset is not served this way (``checked``)."""
    import duckdb
    import pyarrow as pa
    import pyarrow.compute as pc

    from helpers.data import duckcheck

    if not duckcheck.applies(table_sources):
        return None
    found = checked(folder)
    if found is None:
        return None
    path = cache_file(folder, table_sources)
    frames = {}
    with duckdb.connect(str(path), read_only=True) as con:
        present = {r[0] for r in con.execute("select table_name from information_schema.tables").fetchall()}
        for t in TABLES:
            if t not in tables or t not in present:
                continue
            arrow = con.sql(f"select * from {sources.quote_ident(t)}").to_arrow_table()
            for i, field in enumerate(arrow.schema):  # dates as load's midnight timestamps
                if pa.types.is_date32(field.type):
                    arrow = arrow.set_column(i, field.name, pc.cast(arrow.column(i), pa.timestamp("us")))
            frames[t] = arrow.to_pandas(
                types_mapper={pa.bool_(): pd.BooleanDtype()}.get, date_as_object=False
            )
    return frames, found


def load_tables(path, tables: list[str]):
    """``dataset.load(path, tables=tables)``: for a dataset of Parquet files, the named tables read from its
    typed DuckDB file (built now when missing, the dataset checked by queries: ``duckcheck``) with the
    warnings of that check about them, so no other table is read into pandas (a notebook's reps and
    quotas at 10M opportunities); any other dataset is loaded as before."""
    from helpers.data.dataset import Dataset, load

    folder = Path(path)
    if folder.is_dir():
        config = load_config(folder)
        all_files = _sources(folder)
        served = typed_frames(folder, all_files, set(tables))
        if served is not None:
            frames, found = served
            files = {k: v for k, v in all_files.items() if k in set(tables) | {"opportunities"}}
            names = {Path(str(v)).name for v in files.values()}
            warnings = [w for w in found.warnings if w.file in names or w.file == str(folder)]
            return Dataset(folder, config, frames, files, warnings)
    return load(path, tables=tables)


def _load_frames(folder: Path) -> dict:
    """The dataset's typed, validated tables (``dataset.load``), for an engine over a dataset that
    cannot be cached."""
    from helpers.data.dataset import load

    return load(folder).tables


def typed_duckdb(folder: Path, table_sources: dict) -> Path | None:
    """The typed DuckDB file of the dataset, built now when missing; None when it cannot be cached."""
    path = cache_file(folder, table_sources)
    if path is None:
        return None
    if not path.exists():
        entry = sources.TableCache.open(folder, table_sources)
        tables = entry.arrow() if entry is not None else None
        if tables is not None:  # the load cache's entry: its Arrow tables, no pandas round trip
            _write_duckdb(tables, path)
        elif not _build_by_sql(folder, path):  # Parquet: checked and typed in DuckDB
            _load_and_write(folder, path)
    return path


def _connect_duckdb(folder: Path, config: DatasetConfig, table_sources: dict) -> Engine:
    import ibis

    path = typed_duckdb(folder, table_sources)
    if path is not None:
        con = ibis.duckdb.connect(str(path), read_only=True)
        where = f"DuckDB file {path} (read-only)"
    else:  # not cacheable: the typed tables in memory
        con = ibis.duckdb.connect()
        for name, df in _load_frames(folder).items():
            con.con.register(f"_typed_{name}", _typed_arrow(df, name))
            con.raw_sql(f"create table {sources.quote_ident(name)} as select * from _typed_{name}")
            con.con.unregister(f"_typed_{name}")
        where = "in-memory DuckDB (dataset not cached)"
    spill = _limit_memory(con.con)
    # what ``keep`` makes goes to a scratch database file in the spill folder, stored compressed (a
    # temporary table is held uncompressed: at 10M opportunities the normalized history, 47M rows, was
    # about 6 GB spilled under a 512MB cap, and every query read it back from there)
    # (named per engine: connections to one file in a process share DuckDB's database, attachments too)
    kept_in = f"{KEPT_DB}_{next(_KEPT)}"
    scratch = Path(spill) / f"{kept_in}.duckdb"  # (engines on one file share its spill folder)
    con.raw_sql(f"attach '{scratch}' as {kept_in} (read_write)")
    # (not con.list_tables(): ibis 12.0's calls DuckDB 2.0's removed cursor.fetch_arrow_table)
    present = {r[0] for r in con.con.execute("select table_name from information_schema.tables").fetchall()}
    tables = {t: con.table(t) for t in TABLES if t in present}
    done = [  # (closed last to first)
        lambda: _release_spill(spill),
        con.disconnect,
        lambda: _drop_kept(con, kept_in, scratch),
    ]
    return Engine("duckdb", con, tables, config, folder, where, done, kept_in)


DUCKDB_MEMORY = "512MB"  # a kernel's DuckDB memory (REVOPS_ENGINE_MEMORY); beyond it, it spills to disk
_ASKED_MEMORY: list = [None]  # the cap this process's report asked for (``set_memory``)


def memory_limit() -> str:
    """The DuckDB memory cap of this process's engines: ``REVOPS_ENGINE_MEMORY`` when set, else what the
    report asked for (``set_memory``), else ``DUCKDB_MEMORY``."""
    return os.environ.get("REVOPS_ENGINE_MEMORY") or _ASKED_MEMORY[0] or DUCKDB_MEMORY


def set_memory(limit: str | None) -> None:
    """Ask for a DuckDB memory cap (a DuckDB size such as "256MB"; None: the default) for this process's
    engines, those open (a warm kernel keeps its engine from notebook to notebook) and those opened
    later; ``REVOPS_ENGINE_MEMORY``, when set, still wins. A notebook whose queries are light asks for
    less, so the report's two lanes together hold less (``open_report(engine_memory=…)``). A size DuckDB
    does not understand raises before it is recorded: the previous setting stays."""
    if limit is not None:
        import duckdb

        with duckdb.connect() as probe:
            _apply_memory_limit(probe, limit, "engine_memory")
    _ASKED_MEMORY[0] = limit
    for eng in _SHARED.values():
        if eng.name == "duckdb":
            _set_memory_limit(eng.backend.con)


def _apply_memory_limit(con, limit: str, named: str) -> None:
    try:
        con.execute("set memory_limit = '" + limit.replace("'", "''") + "'")
    except Exception as e:  # noqa: BLE001 - say which setting, not DuckDB's parser message alone
        raise ValueError(
            f"{named}={limit!r} is not a memory size DuckDB understands (e.g. 512MB, 2GB): {e}"
        ) from None


def _set_memory_limit(con) -> None:
    named = "REVOPS_ENGINE_MEMORY" if os.environ.get("REVOPS_ENGINE_MEMORY") else "engine_memory"
    _apply_memory_limit(con, memory_limit(), named)


def _limit_memory(con) -> str:
    """Cap what DuckDB holds in this process (its default is 80% of the machine's memory, per kernel,
    and a report runs two kernels at once) at ``REVOPS_ENGINE_MEMORY`` (default ``DUCKDB_MEMORY``, a
    DuckDB size such as "2GB"); what a query or a kept table needs beyond it goes to a temporary folder
    of its own (removed on close), not to DuckDB's default beside the database or in the working
    directory. At 1M opportunities the pipeline kernel peaked at 2.36 GB without it and 1.62 GB with
    512MB, in the same time (docs/performance.md). Returns the folder. DuckDB shares one database per
    file within a process, and a folder it has spilled to cannot be switched: an engine opened on a file
    this process has open already spills to that database's folder, which the last of them to close
    removes."""
    _set_memory_limit(con)
    (now,) = con.execute("select current_setting('temp_directory')").fetchone()
    if now in _SPILL_USERS:  # the database is open in this process already
        _SPILL_USERS[now] += 1
        return now
    spill = tempfile.mkdtemp(prefix="revops-duckdb-")
    con.execute(f"set temp_directory = '{spill}'")
    atexit.register(shutil.rmtree, spill, True)  # a kernel's engine is kept open until the kernel ends
    _SPILL_USERS[spill] = 1
    return spill


_SPILL_USERS: dict[str, int] = {}  # spill folder -> engines of this process using its database


def _drop_kept(con, kept_in: str, scratch: Path) -> None:
    """Detach an engine's scratch database (``Engine.keep``) and remove its file."""
    con.raw_sql(f"detach {kept_in}")
    for f in (scratch, scratch.with_name(scratch.name + ".wal")):
        f.unlink(missing_ok=True)


def _release_spill(spill: str) -> None:
    _SPILL_USERS[spill] -= 1
    if not _SPILL_USERS[spill]:
        del _SPILL_USERS[spill]
        shutil.rmtree(spill, ignore_errors=True)


def typed_parquet(folder: Path, table_sources: dict) -> tuple[Path, bool]:
    """A folder with one Parquet file per typed table, exported from the typed DuckDB file (built once,
    beside it); ``(folder, temporary)`` — temporary when the dataset cannot be cached."""
    import duckdb

    db = typed_duckdb(folder, table_sources)
    if db is not None:
        out = db.with_suffix(".parquet")
        if out.is_dir():
            return out, False
        tmp = Path(tempfile.mkdtemp(prefix=".tmp-parquet-", dir=db.parent))
        with duckdb.connect(str(db), read_only=True) as con:
            for (t,) in con.execute("select table_name from information_schema.tables").fetchall():
                if t not in TABLES:  # (the stored check)
                    continue
                con.execute(f"copy {sources.quote_ident(t)} to '{tmp / (t + '.parquet')}' (format parquet)")
        try:
            os.replace(tmp, out)
        except OSError:  # another process renamed its copy first
            shutil.rmtree(tmp, ignore_errors=True)
        return out, False
    tmp = Path(tempfile.mkdtemp(prefix="revops-parquet-"))
    with duckdb.connect() as con:
        for name, df in _load_frames(folder).items():
            con.register("_typed", _typed_arrow(df, name))
            con.execute(f"copy _typed to '{tmp / (name + '.parquet')}' (format parquet)")
            con.unregister("_typed")
    return tmp, True


# --------------------------------------------------------------------------------------------------
# Spark
# --------------------------------------------------------------------------------------------------
_SPARK: dict[str, object] = {}


def spark_session():
    """This process's Spark session (one per process, kept for later connects): local mode with the UI
    off unless ``REVOPS_SPARK_MASTER`` / ``REVOPS_SPARK_REMOTE`` say otherwise; session time zone UTC
    (the tables' timestamps carry none)."""
    if "session" in _SPARK:
        return _SPARK["session"]
    try:
        from pyspark.sql import SparkSession
    except ImportError:
        raise EngineError(
            "engine spark needs PySpark: pip install 'revops-notebooks[spark]' (and Java 17 or later)"
        ) from None
    if not (os.environ.get("JAVA_HOME") or shutil.which("java")):
        raise EngineError("engine spark needs Java 17 or later (apt-get install openjdk-17-jre-headless)")
    # Python workers (if a plan needs any) run this interpreter, not whatever `python3` is on PATH
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    os.environ.setdefault("PYSPARK_DRIVER_PYTHON", sys.executable)
    builder = SparkSession.builder.appName("revops-notebooks")
    if os.environ.get("REVOPS_SPARK_REMOTE"):
        builder = builder.remote(os.environ["REVOPS_SPARK_REMOTE"])
    else:
        builder = (
            builder.master(os.environ.get("REVOPS_SPARK_MASTER", "local[2]"))
            .config("spark.ui.enabled", "false")
            .config("spark.ui.showConsoleProgress", "false")  # no progress bars in notebooks and logs
            .config("spark.sql.shuffle.partitions", "4")  # 200 by default: slow for report-sized results
            .config("spark.driver.bindAddress", "127.0.0.1")
        )
    session = builder.config("spark.sql.session.timeZone", "UTC").getOrCreate()
    if not os.environ.get("REVOPS_SPARK_REMOTE"):
        session.sparkContext.setLogLevel("ERROR")
    _SPARK["session"] = session
    return session


def _spark_strips_whitespace() -> None:
    """ibis 12 compiles ``strip()`` for Spark as ``TRIM(' \\t\\n\\r\\v\\f' FROM x)``, and Spark reads ``\\v``
    and ``\\f`` as the letters v and f ("fax " → "ax", " visit" → "isit"; ``lstrip``/``rstrip`` trim only
    spaces): on Spark the three trim whitespace by a regular expression instead."""
    import sqlglot.expressions as sge
    from ibis.backends.sql.compilers.pyspark import PySparkCompiler

    def by(pattern):
        def visit(self, op, *, arg):
            return self.f.regexp_replace(arg, sge.convert(pattern), sge.convert(""))

        return visit

    PySparkCompiler.visit_Strip = by(r"^\s+|\s+$")
    PySparkCompiler.visit_LStrip = by(r"^\s+")
    PySparkCompiler.visit_RStrip = by(r"\s+$")


def _connect_spark(folder: Path, config: DatasetConfig, table_sources: dict) -> Engine:
    import ibis

    _spark_strips_whitespace()
    parquet, temporary = typed_parquet(folder, table_sources)
    con = ibis.pyspark.connect(spark_session())
    tag = hashlib.sha256(str(parquet).encode()).hexdigest()[:8]
    tables = {}
    for t in TABLES:
        f = parquet / f"{t}.parquet"
        if f.exists():
            tables[t] = con.read_parquet(str(f), table_name=f"revops_{tag}_{t}")
    close = [lambda: [con.drop_view(v.get_name(), force=True) for v in tables.values()]]
    if temporary:
        close.insert(0, lambda: shutil.rmtree(parquet, ignore_errors=True))
    return Engine("spark", con, tables, config, folder, f"Spark over Parquet in {parquet}", close)


# --------------------------------------------------------------------------------------------------
# databases queried in place
# --------------------------------------------------------------------------------------------------
def _db_tables(table_sources: dict, engine: str) -> dict[str, sources.DbTable]:
    """The dataset's tables, every one a database table on one URL (else a clear EngineError)."""
    files = sorted(t for t, s in table_sources.items() if not isinstance(s, sources.DbTable))
    if files:
        raise EngineError(
            f"engine {engine} queries the tables where they live, but {', '.join(files)} "
            "come from files: point every table at the database in dataset.yml, or use engine duckdb"
        )
    urls = {s.connection_key() for s in table_sources.values()}
    if len(urls) > 1:
        shown = ", ".join(sorted(sources.public_url(u) for u in urls))
        raise EngineError(f"engine {engine} needs every table in one database; dataset.yml names {shown}")
    return table_sources


def _source_table(con, src: sources.DbTable):
    if src.query:
        return con.sql(src.query.strip().rstrip(";"))
    parts = src.table.split(".")
    return con.table(parts[-1], database=tuple(parts[:-1]) if len(parts) > 1 else None)


def canonical(t, table: str, config: DatasetConfig):
    """A database table read as ``dataset.load`` reads a file, with the same rules written as expressions
    that run where the table lives, each on the contract columns of its kind only:

    - headers match the contract ignoring case, spaces and hyphens (``Opportunity ID``,
      ``dataset.canonical_header``);
    - text (``id``, ``str``): trimmed, blank = empty (``coerce.to_text``);
    - ``stage``: a spelling that differs from a ``dataset.yml`` stage only in case and spacing
      (``closed  WON``) reads as that stage (``dataset.normalize_stages``);
    - ``prob``: a column with any value above 1 is on a 0–100 scale and is divided by 100
      (``coerce.probability_scale``); one aggregate per probability column, when the engine opens;
    - ``bool``: text is read with ``coerce``'s true/false words (true/false, yes/no, y/n, t/f, 1/0,
      won/lost, closed/open, any case), numbers 1/0; anything else is empty (``coerce.to_bool``);
    - every other column is cast to its kind where the database type differs; and for opportunities
      ``is_closed`` / ``is_won`` are filled from the stage (``dataset.derive_status``).

    Not done here: numbers and dates stored as text are cast as the database reads them (no currency
    symbols, percent signs, decimal commas or day-first dates), and values that break a rule are not
    reported here (``helpers.data.pgcheck`` runs the rules on the server)."""
    import ibis

    from helpers.data.coerce import FALSE_WORDS, TRUE_WORDS
    from helpers.data.dataset import contract_headers, stage_key

    contract = TABLES[table]
    rename = contract_headers(list(t.columns), contract)
    cols = {}
    for name in t.columns:
        col, spec = t[name], contract.column(rename.get(name, name))
        typ = col.type()
        if spec is None:
            pass
        elif spec.kind in ("id", "str"):
            col = (col if typ.is_string() else col.cast("string")).strip().nullif("")
            if spec.name == "stage" and config.stages:
                key = col.lower().re_replace(r"\s+", " ")
                spelled = key.substitute({stage_key(s): s for s in config.stages}, else_=col)
                col = col.isin(list(config.stages)).ifelse(col, spelled)
        elif spec.kind == "bool" and (typ.is_string() or typ.is_numeric()):
            w = col.strip().lower() if typ.is_string() else col
            yes, no = (list(TRUE_WORDS), list(FALSE_WORDS)) if typ.is_string() else ([1], [0])
            col = ibis.cases((w.isin(yes), True), (w.isin(no), False), else_=ibis.null("boolean"))
        else:
            want = ibis.dtype(IBIS_TYPES[spec.kind])
            if not typ.equals(want.copy(nullable=typ.nullable)):
                col = col.cast(want)
            if spec.kind == "prob" and typ.is_numeric():
                top = col.max().execute()
                if top is not None and not pd.isna(top) and top > 1:
                    col = col / 100.0
        cols[rename.get(name, name)] = col
    if table == "opportunities" and "stage" in cols:
        won = cols["stage"].isin(list(config.won_stages)) if config.won_stages else ibis.literal(False)
        lost = cols["stage"].isin(list(config.lost_stages)) if config.lost_stages else ibis.literal(False)
        cols["is_won"] = cols["is_won"].fill_null(won) if "is_won" in cols else won
        cols["is_closed"] = cols["is_closed"].fill_null(won | lost) if "is_closed" in cols else won | lost
    return t.select(**cols)


def _connect_postgres(folder: Path, config: DatasetConfig, table_sources: dict) -> Engine:
    import ibis

    db = _db_tables(table_sources, "postgres")
    reader = sources.TableReader(db, config)
    first = next(iter(db.values()))
    try:
        conn = reader.connection(first.table_name)
        # no JIT compilation: the canonical tables' large CASE expressions made it cost more than the
        # queries (the 100k pipeline health sections took 240 s with it, 68 s without)
        conn.execute("set jit = off")
        conn.commit()
        con = ibis.postgres.from_connection(conn)
        tables = {t: canonical(_source_table(con, src), t, config) for t, src in db.items()}
    except sources.SourceError:
        reader.close()
        raise
    except Exception as exc:  # noqa: BLE001 - driver errors, shown without credentials
        reader.close()
        raise sources.SourceError(reader.redact(f"{type(exc).__name__}: {exc}")) from None
    where = f"PostgreSQL {sources.public_url(first.url)}"
    return Engine("postgres", con, tables, config, folder, where, [reader.close])


def _connect_url(folder: Path, config: DatasetConfig, table_sources: dict, url: str) -> Engine:
    """Another Ibis backend by URL (untested here; see the module docstring)."""
    import ibis

    secrets: set[str] = set()
    try:
        con = ibis.connect(sources.expand(url, secrets))
    except Exception as exc:  # noqa: BLE001
        raise EngineError(
            f"could not open engine {sources.public_url(url)}: {sources.redact(str(exc), secrets)}"
        ) from None
    present = set(con.list_tables())
    tables = {}
    for t in TABLES:
        src = table_sources.get(t)
        if isinstance(src, sources.DbTable):
            tables[t] = canonical(_source_table(con, src), t, config)
        elif t in present:
            tables[t] = canonical(con.table(t), t, config)
    if "opportunities" not in tables:
        raise EngineError(f"engine {sources.public_url(url)} has no opportunities table")
    return Engine(
        url.split(":", 1)[0], con, tables, config, folder, sources.public_url(url), [con.disconnect]
    )
