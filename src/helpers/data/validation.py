"""Validation of a dataset without keeping its rows: ``validate`` (for the report run's parent) and
``validate_report`` (``revops validate``). On PostgreSQL the rules run on the server as queries
(``helpers.data.pgcheck``); on Parquet files they run as DuckDB queries while the typed DuckDB file is
built (``helpers.data.duckcheck``, ``engine.checked``); files already loaded once are told by the load
cache's entry, read memory-mapped; otherwise the dataset is loaded (``helpers.data.dataset.load``)."""

from __future__ import annotations

from pathlib import Path

from helpers.data import duckcheck, engine, pgcheck, sources
from helpers.data.config import load_config
from helpers.data.dataset import (
    Checked,
    DataValidationError,
    find_table_files,
    format_problems,
    infer_as_of,
    load,
    n_problems,
)


def validate(path: str | Path) -> Checked:
    """Validate the dataset at ``path`` as ``load`` does (``DataValidationError`` on errors), keeping no rows.

    When every table lives in one PostgreSQL database with columns the contract can take as they are typed,
    the rules run there as queries (``helpers.data.pgcheck``): only counts and the first rows that break a
    rule come back. A dataset of Parquet files is checked by DuckDB queries as its typed DuckDB file is
    built (``engine.checked``; with the cache off, ``duckcheck.check`` alone): no frame is made. A dataset
    the load cache holds is told by its entry, without making frames of its tables (``_from_cache``).
    Otherwise the dataset is loaded (and the cache built)."""
    folder = Path(path)
    if folder.is_dir():
        checked = pgcheck.check(folder)
        if checked is None:
            checked = engine.checked(folder)
        if checked is None:
            checked = _from_cache(folder)
        if checked is None:
            checked = duckcheck.check(folder)
        if checked is not None:
            return checked
    ds = load(folder)
    opp = ds.tables["opportunities"]
    return Checked(
        ds.path,
        ds.config,
        {k: len(v) for k, v in ds.tables.items()},
        ds.files,
        ds.warnings,
        infer_as_of(opp),
        opp["created_date"].min() if "created_date" in opp.columns else None,
    )


def _from_cache(folder: Path) -> Checked | None:
    """``validate`` told by the load cache's entry of the whole dataset, when there is one: a load that
    passed the rules wrote it, with its warnings. Its tables are read memory-mapped and never made
    pandas frames of whole tables: the row counts are Arrow's; only the opportunities' three date
    columns become a frame, for ``infer_as_of`` and the first created date. The report run's parent
    checks the dataset this way while its kernels start; loading the frames there had held about 600 MB (1M opportunities, 10M activities)
    for the whole run. None when the entry is missing or damaged (then the dataset is loaded)."""
    config = load_config(folder)
    files = find_table_files(folder, config)
    cache = sources.TableCache.open(folder, files) if "opportunities" in files else None
    hit = cache.arrow_and_warnings() if cache is not None else None
    if hit is None or "opportunities" not in hit[0]:
        return None
    tables, warnings = hit
    opp = tables["opportunities"]
    dates = opp.select([c for c in ("created_date", "close_date", "is_closed") if c in opp.column_names])
    dates = dates.to_pandas(date_as_object=False)  # three columns: the rule is infer_as_of's
    return Checked(
        folder,
        config,
        {t: v.num_rows for t, v in tables.items()},
        {k: v for k, v in files.items() if k in tables or k == "opportunities"},
        warnings,
        infer_as_of(dates),
        dates["created_date"].min() if "created_date" in dates.columns else None,
    )


def validate_report(path: str | Path, all_warnings: bool = False) -> tuple[int, str]:
    """(exit code, text) for ``revops validate``: 0 when the dataset loads without errors.

    Errors are all listed; warnings show 3 rows per kind unless ``all_warnings``."""
    try:
        ds = validate(path)
    except DataValidationError as exc:
        return 1, str(exc)
    except (FileNotFoundError, ValueError) as exc:
        return 1, str(exc)
    counts = ", ".join(f"{k}: {n:,} rows" for k, n in ds.rows.items())
    text = [f"Dataset {path} ({ds.config.name}) is valid — {counts}."]
    if ds.warnings:
        expected = ds.config.source.get("expected_warnings") if isinstance(ds.config.source, dict) else None
        text.append(
            format_problems(
                ds.warnings,
                title=f"{n_problems(ds.warnings)} warning(s) a report can live with"
                + (f" ({expected})" if expected else "")
                + ":",
                max_rows=len(ds.warnings) if all_warnings else 3,
            )
        )
    return 0, "\n".join(text)
