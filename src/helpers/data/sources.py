"""Where a dataset's tables come from: files (with a typed cache) or a database.

**Database tables.** ``dataset.yml`` may point a table at a database instead of a file::

    tables:
      opportunities:
        url: "postgresql://{REVOPS_DB_USER}:{REVOPS_DB_PASSWORD}@127.0.0.1:5432/crm"
        table: opportunities            # or schema.table
      activities:
        url: "duckdb:///crm.duckdb"     # relative to the dataset folder; duckdb:////abs/path for absolute
        query: "select * from activities where type <> 'social'"

``url`` is a SQLAlchemy-style URL (``postgresql://``, ``postgresql+psycopg://``, ``duckdb://``; other
schemes go through SQLAlchemy when it is installed). ``{NAME}`` placeholders are replaced by environment
variables at connect time, per URL component, so credentials never live in the file. Every label, log
line and error shows the URL with the password replaced by ``***``, and any credential value that a
driver echoes back is scrubbed from the message.

PostgreSQL rows are fetched with ``COPY (…) TO STDOUT (FORMAT csv)`` and parsed exactly as a CSV file
would be, so a table loads to the same frame from a file or from PostgreSQL. DuckDB results arrive as
typed Arrow tables.

**Date window pushed to the database.** ``load(path, since=D)`` keeps only the rows a report on dates
from ``D`` on needs, and says so to the database, so only those rows cross the wire:

- activities ``occurred_at >= D``, opportunity_history ``changed_at >= D``, leads ``created_date >= D``
  (rows with an empty date are kept, so validation still sees them);
- opportunities that are open, or created or closed on/after ``D``, or without a close date, or referenced
  by a kept activity, history or lead row (so references stay whole);
- reps, quotas and churn are small and load in full.

The same predicate is applied in pandas after loading (so files and databases give identical frames);
the SQL predicate is pushed only where it is exact or wider: date columns must have a date/timestamp type
in the database, and the opportunities filter is pushed only when the referencing tables live in the
same database (their kept ids become a sub-query).

**Typed cache.** A dataset read from files (CSV, Excel, Parquet) or DuckDB is loaded and validated once;
the typed, validated frames and the warnings are stored as uncompressed Arrow IPC files (read
memory-mapped: a hit costs no decoding, and kernels share the pages) under ``$REVOPS_CACHE_DIR`` (default
``~/.cache/revops-notebooks``), never in the dataset folder. The key is the sha256 of every source file's
bytes, of ``dataset.yml``, of the loading code itself and of the load arguments, so an entry is never
stale: change one byte and the next load rebuilds it (a file's digest is reused only while its size,
mtime, ctime and inode are unchanged — ``file_sha256``). PostgreSQL tables are not cached (their content
cannot be fingerprinted without fetching it). ``REVOPS_CACHE=0`` turns the cache off. The cache holds
CRM data: its folders are user-only (0700), its files too (0600), and its metadata is JSON (no pickle is
ever loaded).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import unquote, urlsplit

import pandas as pd

from helpers.data.config import ConfigError, DatasetConfig

CACHE_FORMAT = 3  # 2: Arrow IPC files, read memory-mapped; 3: meta.json
# tables filtered by a date window, and the column that dates a row
WINDOW_COLUMNS = {"activities": "occurred_at", "opportunity_history": "changed_at", "leads": "created_date"}
PG_DATE_TYPES = {1082, 1114, 1184}  # date, timestamp, timestamptz oids
PG_BOOL = 16


class SourceError(RuntimeError):
    """A database source could not be read; the message never contains credentials."""


# --------------------------------------------------------------------------------------------------
# credentials and redaction
# --------------------------------------------------------------------------------------------------
_FIELD = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\}")


def expand(text: str | None, secrets: set[str]) -> str | None:
    """Replace ``{NAME}`` with the environment variable NAME; collect the values in ``secrets``."""
    if text is None:
        return None

    def sub(m: re.Match) -> str:
        name = m.group(1)
        if name not in os.environ:
            raise SourceError(f"environment variable {name} is not set (it is named in a database URL)")
        secrets.add(os.environ[name])
        return os.environ[name]

    return _FIELD.sub(sub, unquote(text))


# query parameters and libpq keywords that carry a credential (password, sslpassword, passfile, token…)
SECRET_KEY = re.compile(r"pass|pwd|secret|token|credential|api_?key", re.I)
_URL = re.compile(r"\b[A-Za-z][A-Za-z0-9+.-]*://[^\s'\"<>]+")
_KEYWORD = re.compile(r"(?P<key>\b[\w.-]+)(?P<eq>\s*=\s*)(?P<value>'(?:[^'\\]|\\.)*'|[^\s&;,'\"]+)")


def redact(text: str, secrets=()) -> str:
    """``text`` with every credential masked as ``***``: each secret value given (4+ characters, also
    %-encoded), and in every URL or libpq ``key=value`` string it holds, the password of
    ``user:password@`` (which may itself hold ``@``, ``:`` or %-escapes) and every credential
    parameter (``?password=…``, ``sslpassword=…``; ``SECRET_KEY``)."""
    from urllib.parse import quote

    values = set()
    for v in secrets:
        if v and len(v) >= 4:
            values |= {v, quote(v, safe=""), quote(v, safe="@:")}
    for v in sorted(values, key=len, reverse=True):
        text = text.replace(v, "***")
    text = _URL.sub(lambda m: _redact_url(m.group(0)), text)
    return _KEYWORD.sub(_redact_keyword, text)


def _redact_keyword(m: re.Match) -> str:
    if SECRET_KEY.search(m.group("key")) and m.group("value") != "***":
        return f"{m.group('key')}{m.group('eq')}***"
    return m.group(0)


def _redact_url(url: str) -> str:
    scheme, rest = url.split("://", 1)
    query_at = rest.find("?")
    head, query = (rest[:query_at], rest[query_at:]) if query_at >= 0 else (rest, "")
    at = head.rfind("@")  # libpq, SQLAlchemy and urllib all split user info at the last "@"
    if at >= 0:
        userinfo, host = head[:at], head[at:]
        if ":" in userinfo:
            userinfo = userinfo.split(":", 1)[0] + ":***"
        head = userinfo + host
    return f"{scheme}://{head}{_KEYWORD.sub(_redact_keyword, query)}"


def public_url(url: str) -> str:
    """The URL as it may be shown: every credential in it, whatever it is, becomes ``***``."""
    return redact(url)


# --------------------------------------------------------------------------------------------------
# table sources
# --------------------------------------------------------------------------------------------------
@dataclass
class DbTable:
    """One table read from a database: ``url`` plus ``table`` or ``query`` (see the module docstring)."""

    table_name: str  # the contract table it feeds
    url: str = field(repr=False)  # may hold credentials: shown only through public_url
    table: str | None = None
    query: str | None = None
    folder: Path = field(default_factory=Path)

    @property
    def scheme(self) -> str:
        return self.url.split(":", 1)[0].split("+", 1)[0].lower()

    # the three things dataset.load asks of a file path
    @property
    def name(self) -> str:
        what = self.table if self.table else "query"
        return f"{self.table_name} ({what} @ {public_url(self.url)})"

    suffix = ""

    def exists(self) -> bool:
        return True

    def __str__(self) -> str:
        return self.name

    def select(self) -> str:
        if self.query:
            return f"select * from ({self.query.strip().rstrip(';')}) as src"
        return "select * from " + ".".join(quote_ident(p) for p in self.table.split("."))

    def duckdb_path(self) -> Path:
        raw = self.url.split(":///", 1)[1] if ":///" in self.url else self.url.split("://", 1)[1]
        p = Path(expand(raw, set()) or ":memory:")
        return p if p.is_absolute() else self.folder / p

    def connection_key(self) -> str:
        """Tables with the same key are read over one connection (and may join each other)."""
        return self.url


def quote_ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def quote_literal(value: str) -> str:
    return "'" + str(value).replace("'", "''") + "'"


def table_source(folder: Path, table_name: str, spec) -> Path | DbTable:
    """A ``tables:`` entry of dataset.yml: a file name (relative to the folder) or a database spec."""
    if isinstance(spec, str | os.PathLike):
        return Path(folder) / spec
    if not isinstance(spec, dict) or "url" not in spec:
        raise ConfigError(
            f"dataset.yml tables.{table_name}: expected a file name or {{url: …, table: …}} "
            f"(or {{url: …, query: …}}), got {public_url(str(spec))}"
        )
    unknown = set(spec) - {"url", "table", "query"}
    if unknown or (("table" in spec) == ("query" in spec)):
        raise ConfigError(
            f"dataset.yml tables.{table_name}: give url and exactly one of table or query"
            + (f" (unknown keys: {', '.join(sorted(unknown))})" if unknown else "")
        )
    return DbTable(table_name, str(spec["url"]), spec.get("table"), spec.get("query"), Path(folder))


# --------------------------------------------------------------------------------------------------
# the date window
# --------------------------------------------------------------------------------------------------
def window_frames(tables: dict[str, pd.DataFrame], since, config: DatasetConfig) -> dict[str, pd.DataFrame]:
    """Keep the rows a report on dates from ``since`` on needs (the rule in the module docstring)."""
    if since is None:
        return tables
    s = pd.Timestamp(since)
    out = dict(tables)
    child_ids = []
    for tname, col in WINDOW_COLUMNS.items():
        df = out.get(tname)
        if df is None or col not in df.columns:
            continue
        keep = df[col].isna() | (df[col] >= s)
        out[tname] = df[keep.to_numpy()].reset_index(drop=True)
        if "opportunity_id" in df.columns:
            child_ids.append(out[tname]["opportunity_id"].dropna())
    opp = out.get("opportunities")
    if opp is not None:
        keep = pd.Series(False, index=opp.index)
        if "is_closed" in opp.columns:
            keep |= ~opp["is_closed"].fillna(False).astype(bool)
        for col in ("created_date", "close_date"):
            if col in opp.columns:
                keep |= (opp[col] >= s).fillna(False)
        if "close_date" in opp.columns:
            keep |= opp["close_date"].isna()
        if child_ids and "opportunity_id" in opp.columns:
            keep |= opp["opportunity_id"].isin(pd.concat(child_ids).unique())
        out["opportunities"] = opp[keep.to_numpy()].reset_index(drop=True)
    return out


def _columns_pg(conn, select: str) -> dict[str, int]:
    with conn.cursor() as cur:
        cur.execute(f"select * from ({select}) as q limit 0")
        return {d.name: d.type_code for d in cur.description}


def _columns_duckdb(con, select: str) -> dict[str, str]:
    rel = con.sql(select)
    return {c: str(t).upper() for c, t in zip(rel.columns, rel.types, strict=True)}


def _is_date(t) -> bool:
    return t in PG_DATE_TYPES if isinstance(t, int) else str(t).startswith(("DATE", "TIMESTAMP"))


def _is_bool(t) -> bool:
    return t == PG_BOOL if isinstance(t, int) else str(t) == "BOOLEAN"


def _child_predicate(cols: dict, col: str, since: pd.Timestamp) -> str | None:
    if col not in cols or not _is_date(cols[col]):
        return None
    return f"({quote_ident(col)} >= date '{since:%Y-%m-%d}' or {quote_ident(col)} is null)"


def _opportunity_predicate(
    cols: dict, since: pd.Timestamp, config: DatasetConfig, child_selects: list[str]
) -> str | None:
    """SQL that keeps at least every row ``window_frames`` keeps, or None when that cannot be said."""
    parts = []
    for col in ("created_date", "close_date"):
        if col in cols:
            if not _is_date(cols[col]):
                return None
            parts.append(f"{quote_ident(col)} >= date '{since:%Y-%m-%d}'")
    if "close_date" in cols:
        parts.append('"close_date" is null')
    if "is_closed" in cols:
        if not _is_bool(cols["is_closed"]):
            return None
        parts.append('"is_closed" is not true')
    else:
        closed = sorted(set(config.won_stages) | set(config.lost_stages))
        if "stage" not in cols:
            return None
        if closed:
            parts.append(f'"stage" is null or "stage" not in ({", ".join(quote_literal(s) for s in closed)})')
        else:
            parts.append("true")
    parts += [f'"opportunity_id" in ({sel})' for sel in child_selects]
    return " or ".join(f"({p})" for p in parts)


# --------------------------------------------------------------------------------------------------
# reading
# --------------------------------------------------------------------------------------------------
class TableReader:
    """Reads the tables of one load: files as ``dataset.read_raw`` does, database tables with the date
    window pushed down. One connection per database URL, opened on first use."""

    def __init__(self, sources: dict, config: DatasetConfig, since=None):
        self.sources = sources
        self.config = config
        self.since = pd.Timestamp(since) if since is not None else None
        self._conns: dict[str, object] = {}
        self._secrets: set[str] = set()
        self.pushed: dict[str, str] = {}  # table -> SQL predicate sent to the database (for docs/tests)
        self._ahead: dict[str, object] = {}  # table -> Future of its file's read (``read_ahead``)
        self._pool = None

    def read_ahead(self, tnames) -> None:
        """Start reading the files of ``tnames`` now, two at a time on worker threads, so ``read`` finds
        them read or under way. A CSV's read is mostly DuckDB's typed query (one thread each, to keep the
        file's row order; it releases the GIL) and the stray-quote scan: two files' reads, and the caller's
        work on the tables already read, share the cores. Each table is still read by ``read_raw`` alone,
        so what ``read`` returns (or raises) is what it would have been read in turn."""
        from concurrent.futures import ThreadPoolExecutor

        from helpers.data.dataset import read_raw
        from helpers.data.schema import TABLES

        files = [
            t for t in tnames if not isinstance(self.sources[t], DbTable) and Path(self.sources[t]).is_file()
        ]
        if len(files) < 2:
            return
        self._pool = ThreadPoolExecutor(max_workers=2, thread_name_prefix="revops-read")
        for t in files:
            self._ahead[t] = self._pool.submit(read_raw, self.sources[t], TABLES.get(t))

    def read(self, tname: str) -> pd.DataFrame:
        src = self.sources[tname]
        if tname in self._ahead:
            return self._ahead.pop(tname).result()
        if not isinstance(src, DbTable):
            from helpers.data.dataset import read_raw
            from helpers.data.schema import TABLES

            return read_raw(src, TABLES.get(tname))
        try:
            return self._read_db(tname, src)
        except SourceError:
            raise
        except Exception as exc:  # noqa: BLE001 - driver errors, shown without credentials
            msg = redact(f"{type(exc).__name__}: {exc}".strip(), self._secrets)
            raise SourceError(msg) from None

    def connection(self, tname: str):
        """The open connection (psycopg, DuckDB or SQLAlchemy) that serves database table ``tname``; the
        metric engine (``helpers.data.engine``) queries PostgreSQL over it."""
        return self._conn(self.sources[tname])

    def redact(self, text: str) -> str:
        """``text`` without the credentials this reader has expanded."""
        return redact(text, self._secrets)

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool, self._ahead = None, {}
        for c in self._conns.values():
            if isinstance(c, Exception):
                continue
            try:
                c.close()
            except Exception:  # noqa: BLE001, S110
                pass
        self._conns.clear()

    # -- database helpers
    def _conn(self, src: DbTable):
        key = src.connection_key()
        if isinstance(self._conns.get(key), SourceError):
            raise self._conns[key]
        try:
            return self._open(src, key)
        except SourceError as exc:
            self._conns[key] = exc
            raise

    def _open(self, src: DbTable, key: str):
        if key not in self._conns:
            if src.scheme == "duckdb":
                import duckdb

                path = src.duckdb_path()
                if not path.exists():
                    raise SourceError(f"DuckDB file {path} not found")
                self._conns[key] = duckdb.connect(str(path), read_only=True)
            elif src.scheme in ("postgresql", "postgres"):
                self._conns[key] = self._connect_pg(src)
            else:
                self._conns[key] = self._connect_sqlalchemy(src)
        return self._conns[key]

    def _connect_pg(self, src: DbTable):
        import psycopg

        u = urlsplit("postgresql:" + src.url.split(":", 1)[1])  # drops a +driver suffix
        kw = {
            "host": expand(u.hostname, set()) if u.hostname else None,
            "port": u.port,
            "dbname": expand(u.path.lstrip("/"), set()) or None,
            "user": expand(u.username, self._secrets),
            "password": expand(u.password, self._secrets),
            "connect_timeout": 10,
            "application_name": "revops-notebooks",
        }
        for k, v in dict(pair.split("=", 1) for pair in u.query.split("&") if "=" in pair).items():
            kw[k] = expand(v, self._secrets)
            if SECRET_KEY.search(k) and kw[k]:
                self._secrets.add(kw[k])  # a password written in the URL itself, for drivers that echo it
        if kw["password"]:
            self._secrets.add(kw["password"])
        try:
            conn = psycopg.connect(**{k: v for k, v in kw.items() if v is not None})
        except psycopg.Error as exc:
            msg = redact(str(exc).strip(), self._secrets)
            raise SourceError(f"could not connect to PostgreSQL: {msg}") from None
        # one read-only snapshot for every table of the load, so tables agree with each other
        conn.read_only = True
        conn.isolation_level = psycopg.IsolationLevel.REPEATABLE_READ
        conn.execute("set datestyle to iso; set timezone to 'UTC'; set extra_float_digits to 3")
        return conn

    def _connect_sqlalchemy(self, src: DbTable):
        try:
            import sqlalchemy
        except ImportError:
            raise SourceError(
                f"URL scheme {src.scheme!r} needs SQLAlchemy and its driver "
                "(pip install sqlalchemy …); postgresql:// and duckdb:// work out of the box"
            ) from None
        url = expand(src.url, self._secrets)
        parsed = sqlalchemy.make_url(url)
        self._secrets |= {parsed.password or ""} | {
            str(v) for k, v in parsed.query.items() if SECRET_KEY.search(k) and isinstance(v, str)
        }
        return sqlalchemy.create_engine(url).connect()

    def _where(self, tname: str, src: DbTable, conn, columns) -> str | None:
        if self.since is None:
            return None
        if tname in WINDOW_COLUMNS:
            return _child_predicate(columns(conn, src.select()), WINDOW_COLUMNS[tname], self.since)
        if tname != "opportunities":
            return None
        child_selects = []
        for child, col in WINDOW_COLUMNS.items():
            c = self.sources.get(child)
            if c is None:
                continue
            if not isinstance(c, DbTable) or c.connection_key() != src.connection_key():
                return None  # references come from elsewhere: only pandas can keep them whole
            ccols = columns(conn, c.select())
            if "opportunity_id" not in ccols:
                continue
            pred = _child_predicate(ccols, col, self.since)
            if pred is None:
                return None
            child_selects.append(f'select "opportunity_id" from ({c.select()}) as c_{child} where {pred}')
        return _opportunity_predicate(columns(conn, src.select()), self.since, self.config, child_selects)

    def _read_db(self, tname: str, src: DbTable) -> pd.DataFrame:
        conn = self._conn(src)
        if src.scheme == "duckdb":
            where = self._where(tname, src, conn, _columns_duckdb)
            sql = src.select() + (f" where {where}" if where else "")
            self.pushed[tname] = where or ""
            rel = conn.sql(sql)
            arrow = rel.to_arrow_table() if hasattr(rel, "to_arrow_table") else rel.fetch_arrow_table()
            return arrow.to_pandas(date_as_object=False)
        if src.scheme in ("postgresql", "postgres"):
            where = self._where(tname, src, conn, _columns_pg)
            self.pushed[tname] = where or ""
            sql = f"select * from ({src.select()}) as t" + (f" where {where}" if where else "")
            return self._copy_csv(conn, sql)
        # any other SQLAlchemy database: no push-down, values typed later by dataset.coerce_table
        import sqlalchemy

        self.pushed[tname] = ""
        return pd.read_sql(sqlalchemy.text(src.select()), conn)

    def _copy_csv(self, conn, sql: str) -> pd.DataFrame:
        """Stream ``COPY (sql) TO STDOUT`` as CSV into a temporary file and parse it like a CSV file."""
        from helpers.data.dataset import read_raw

        with tempfile.TemporaryDirectory(prefix="revops-pg-") as tmp:
            path = Path(tmp) / "table.csv"
            with open(path, "wb") as fh, conn.cursor() as cur:
                with cur.copy(f"copy ({sql}) to stdout with (format csv, header true)") as copy:
                    for chunk in copy:
                        fh.write(chunk)
            return read_raw(path)


# --------------------------------------------------------------------------------------------------
# the typed cache
# --------------------------------------------------------------------------------------------------
def cache_root() -> Path:
    if os.environ.get("REVOPS_CACHE_DIR"):
        return Path(os.environ["REVOPS_CACHE_DIR"])
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "revops-notebooks"


def _stat_key(st: os.stat_result) -> list[int]:
    # any write to a file changes its ctime (which no tool can set back); a new file is a new inode
    return [st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino, st.st_dev]


def file_sha256(path: Path) -> str:
    """sha256 of a file's bytes (≈0.8–1.4 GB/s here: ~2 s for the 1.7 GB of a 1M-opportunity
    dataset, paid by every process that loads it). A file's digest is remembered in
    ``<cache root>/digests.json`` with its size, mtime, ctime, inode and device, and reused while
    all five are unchanged: the bytes are read again after any write to the file."""
    path = Path(path)
    st = path.stat()
    key, stat = str(path.resolve()), _stat_key(st)
    index_path = cache_root() / "digests.json"
    index = _DIGESTS.get(str(index_path))
    if index is None:
        try:
            index = json.loads(index_path.read_text())
        except (OSError, ValueError):
            index = {}
        _DIGESTS[str(index_path)] = index
    known = index.get(key)
    if known and known[0] == stat:
        return known[1]
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(1 << 22):
            h.update(chunk)
    digest = h.hexdigest()
    if _stat_key(path.stat()) == stat:  # not written while we read it
        index[key] = [stat, digest]
        if st.st_size >= DIGEST_INDEX_MIN_BYTES and os.environ.get("REVOPS_CACHE", "1").lower() not in _OFF:
            _write_index(index_path, index)
    return digest


DIGEST_INDEX_MIN_BYTES = 1 << 20  # smaller files are cheaper to hash than to look up on disk
_OFF = ("0", "false", "no", "off")
_DIGESTS: dict[str, dict] = {}


def _write_index(index_path: Path, index: dict) -> None:
    try:
        # keep the index small: entries of files that are gone are dropped
        live = {k: v for k, v in index.items() if os.path.exists(k)}
        _write_private(index_path, json.dumps(live))
    except OSError:  # best effort, like the cache
        pass


def _private_dir(path: Path) -> Path:
    """``path`` and its missing parents from the cache root down, created user-only (0700)."""
    root = cache_root()
    for p in [*reversed(path.parents), path]:
        if p == root or root in p.parents:
            try:
                p.mkdir(mode=0o700)
            except FileExistsError:
                pass
    return path


def _write_private(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` (user-only, 0600) via a temporary file and an atomic rename."""
    _private_dir(path.parent)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")  # 0600
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _code_digest() -> str:
    """Loading code is part of the key: a change to validation or coercion invalidates every entry."""
    h = hashlib.sha256()
    here = Path(__file__).parent
    for name in ("dataset.py", "coerce.py", "fastcsv.py", "schema.py", "config.py", "sources.py"):
        h.update((here / name).read_bytes())
    return h.hexdigest()


_LAST_READ: dict[tuple[str, str, str], pd.DataFrame] = {}  # (entry dir, key, table) -> frame


def forget_last_read() -> None:
    """Drop this process's copy of the last cache entry read (``TableCache._read``)."""
    _LAST_READ.clear()


class TableCache:
    """Validated typed frames of one load, stored outside the dataset folder as uncompressed Arrow IPC
    (Feather v2) files, read memory-mapped (see ``put``).

    Layout: ``<root>/<folder hash>/<data key>/<load key>/{<table>.arrow, meta.json}``. The data key
    covers dataset.yml, every source's bytes and the loading code; the load key the arguments of
    ``load`` (tables, strict, since). Writing an entry removes the folder's entries with another data
    key: they can never be hit again."""

    def __init__(self, folder: Path, data_key: str, load_key: str):
        self.folder = folder
        self.key = f"{data_key}/{load_key}"
        self.base = cache_root() / hashlib.sha256(str(folder.resolve()).encode()).hexdigest()[:16]
        self.data_dir = self.base / data_key[:24]
        self.dir = self.data_dir / load_key[:24]

    @classmethod
    def open(
        cls, folder: Path, sources: dict, tables=None, strict: bool = True, since=None
    ) -> TableCache | None:
        """The cache entry for this load, or None when caching is off or a source cannot be fingerprinted."""
        if os.environ.get("REVOPS_CACHE", "1").lower() in ("0", "false", "no", "off"):
            return None
        h = hashlib.sha256(f"v{CACHE_FORMAT}|{_code_digest()}".encode())
        yml = Path(folder) / "dataset.yml"
        h.update(yml.read_bytes() if yml.exists() else b"")
        pushed_down = False
        for tname in sorted(sources):
            src = sources[tname]
            if isinstance(src, DbTable):
                if src.scheme != "duckdb":
                    return None
                path = src.duckdb_path()
                if not path.exists():
                    return None
                h.update(f"|{tname}|{src.table}|{src.query}|{file_sha256(path)}".encode())
                pushed_down = True
            else:
                p = Path(src)
                if not p.is_file():  # missing, or a folder: the load reports it; nothing to cache
                    return None
                try:
                    h.update(f"|{tname}|{p.name}|{file_sha256(p)}".encode())
                except OSError:  # unreadable: the load reports it
                    return None
        args = f"{sorted(tables) if tables else None}|{strict}"
        if pushed_down and since is not None:  # files are cached whole and windowed in pandas
            args += f"|since={pd.Timestamp(since):%Y-%m-%d}"
        return cls(Path(folder), h.hexdigest(), hashlib.sha256(args.encode()).hexdigest())

    def get(self, only=None) -> tuple[dict[str, pd.DataFrame], list] | None:
        """(typed frames, warnings) of a previous identical load, or None; ``only`` reads just those
        tables of the entry (a subset of a full load is a valid load of the subset)."""
        try:
            info = self._manifest()
            if info is None:
                return None
            frames = {
                t: self._read(t, info["sha256"][t]) for t in info["tables"] if only is None or t in only
            }
            return frames, [_problem_from_json(w) for w in info["warnings"]]
        except Exception:  # noqa: BLE001 - a damaged entry is a miss, rebuilt on this load
            shutil.rmtree(self.dir, ignore_errors=True)
            return None

    def arrow(self) -> dict | None:
        """The entry's typed tables as Arrow tables read memory-mapped, without converting them to
        pandas (the metric engine copies them into its DuckDB file), or None when there is no entry or
        a file's content no longer matches the digest recorded when it was written."""
        hit = self.arrow_and_warnings()
        return None if hit is None else hit[0]

    def arrow_and_warnings(self) -> tuple[dict, list] | None:
        """``arrow`` and the entry's warnings (those ``get`` gives), or None."""
        try:
            info = self._manifest()
            if info is None:
                return None
            tables = {t: self._arrow(t, info["sha256"][t]) for t in info["tables"]}
            return tables, [_problem_from_json(w) for w in info["warnings"]]
        except Exception:  # noqa: BLE001 - a damaged or changed entry is a miss
            return None

    def _manifest(self) -> dict | None:
        """The entry's meta.json (tables, their sha256, warnings) when it belongs to this key, else None."""
        meta = self.dir / "meta.json"
        if not meta.exists():
            return None
        info = json.loads(meta.read_text(encoding="utf-8"))
        return info if info.get("key") == self.key else None

    def _arrow(self, table: str, sha256: str):
        """One table's Arrow file, memory-mapped, once its content matches the sha256 recorded when it was
        written (``file_sha256``: free while the file is unchanged); ValueError when it does not."""
        import pyarrow.feather as feather

        path = self.dir / f"{table}.arrow"
        if file_sha256(path) != sha256:
            raise ValueError(f"cache file {path} changed since it was written")
        return feather.read_table(path, memory_map=True)

    def _read(self, table: str, sha256: str) -> pd.DataFrame:
        """One table of the entry: from this process's copy of the last entry read (a warm kernel
        running notebook after notebook on one dataset) or from its Arrow file, memory-mapped, once its
        content is checked against the sha256 recorded when it was written (``file_sha256``: free while
        the file's size, mtime, ctime and inode are those it was last hashed with; any write to the file
        changes them, so a file changed in place is hashed again, does not match, and the entry is
        rebuilt). Callers get a shallow copy: with pandas' copy-on-write, a notebook that changes its
        frame never changes the kept one."""
        key = (str(self.dir), self.key, table)
        df = _LAST_READ.get(key)
        if df is None:
            df = self._arrow(table, sha256).to_pandas(date_as_object=False)
            if any(k[:2] != key[:2] for k in _LAST_READ):
                _LAST_READ.clear()  # keep one entry's tables only
            _LAST_READ[key] = df
        return df.copy(deep=False)

    def put(self, frames: dict[str, pd.DataFrame], warnings: list) -> None:
        """Write the entry atomically (temporary folder, then rename); drop the folder's stale entries."""
        tmp = None
        try:
            _private_dir(self.data_dir)
            for old in self.base.iterdir():
                if old != self.data_dir:
                    shutil.rmtree(old, ignore_errors=True)
            tmp = Path(tempfile.mkdtemp(prefix=".tmp-", dir=self.data_dir))
            import pyarrow as pa
            import pyarrow.feather as feather

            for t, df in frames.items():
                # uncompressed Arrow IPC: a hit maps the file instead of decoding it (10M activities:
                # 0.5 s and the pages shared by every kernel, against 7 s and 1.8 GB private for Parquet)
                table = pa.Table.from_pandas(df, preserve_index=False)
                feather.write_feather(table, tmp / f"{t}.arrow", compression="uncompressed")
                os.chmod(tmp / f"{t}.arrow", 0o600)
            shutil.rmtree(self.dir, ignore_errors=True)
            os.replace(tmp, self.dir)
            # meta.json last: it makes the entry a hit, and records each file's digest (hashing the files
            # just written, from the page cache, also records them in digests.json for the next opens)
            meta = {
                "key": self.key,
                "tables": list(frames),
                "sha256": {t: file_sha256(self.dir / f"{t}.arrow") for t in frames},
                "warnings": [_problem_to_json(w) for w in warnings],
                "folder": str(self.folder),
            }
            _write_private(self.dir / "meta.json", json.dumps(meta, ensure_ascii=False))
        except OSError:  # caching is best effort: a read-only home still loads
            if tmp is not None:
                shutil.rmtree(tmp, ignore_errors=True)


def _value_to_json(v):
    """A problem's value as JSON, its type kept where ``Problem.__str__`` shows it differently."""
    import numpy as np

    if isinstance(v, np.generic):
        v = v.item()
    if v is None or isinstance(v, bool | int | str):
        return v
    if isinstance(v, float):
        return v if v == v and abs(v) != float("inf") else {"float": repr(v)}
    if isinstance(v, pd.Timestamp | np.datetime64) or hasattr(v, "isoformat"):
        ts = pd.Timestamp(v)
        return {"timestamp": None if pd.isna(ts) else ts.isoformat()}
    return {"text": str(v)}


def _value_from_json(v):
    if isinstance(v, dict):
        if "float" in v:
            return float(v["float"])
        if "timestamp" in v:
            return pd.NaT if v["timestamp"] is None else pd.Timestamp(v["timestamp"])
        return v.get("text")
    return v


def _problem_to_json(p) -> dict:
    from dataclasses import asdict

    d = asdict(p)
    d["value"] = _value_to_json(p.value)
    d["row"] = None if p.row is None else int(p.row)
    d["ref"] = None if p.ref is None else [p.ref[0], _value_to_json(p.ref[1])]
    d["key"] = [[c, _value_to_json(v)] for c, v in p.key]
    return d


def _problem_from_json(d: dict):
    from helpers.data.dataset import Problem

    ref = d.get("ref")
    ref = None if ref is None else (ref[0], _value_from_json(ref[1]))
    key = tuple((c, _value_from_json(v)) for c, v in d.get("key") or ())
    return Problem(**{**d, "value": _value_from_json(d["value"]), "ref": ref, "key": key})
