"""Validation of a dataset without keeping its rows: ``validate`` (for the report run's parent) and
``validate_report`` (``revops validate``). On PostgreSQL the rules run on the server as queries
(``helpers.data.pgcheck``); files already loaded once are told by the load cache's entry, read
memory-mapped; otherwise the dataset is loaded (``helpers.data.dataset.load``)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from helpers.data import pgcheck, sources
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
    rule come back. A dataset the load cache holds is told by its entry, without making frames of its
    tables (``_from_cache``). Otherwise the dataset is loaded (and the cache built)."""
    folder = Path(path)
    if folder.is_dir():
        checked = pgcheck.check(folder)
        if checked is None:
            checked = _from_cache(folder)
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
    pandas frames: the row counts are Arrow's, and the opportunities' dates (``infer_as_of``, the first
    created date) Arrow compute's. The report run's parent checks the dataset this way while its
    kernels start; loading the frames there had held about 600 MB (1M opportunities, 10M activities)
    for the whole run. None when the entry is missing or damaged (then the dataset is loaded)."""
    config = load_config(folder)
    files = find_table_files(folder, config)
    cache = sources.TableCache.open(folder, files) if "opportunities" in files else None
    hit = cache.arrow_and_warnings() if cache is not None else None
    if hit is None or "opportunities" not in hit[0]:
        return None
    tables, warnings = hit
    opp = tables["opportunities"]
    cols = set(opp.column_names)
    created = opp["created_date"] if "created_date" in cols else None
    dates = [] if created is None else [_scalar(pc.max(created))]
    if {"close_date", "is_closed"} <= cols:
        closed = pc.fill_null(opp["is_closed"], False)
        dates.append(_scalar(pc.max(pc.filter(opp["close_date"], closed))))
    dates = [d for d in dates if pd.notna(d)]
    return Checked(
        folder,
        config,
        {t: v.num_rows for t, v in tables.items()},
        {k: v for k, v in files.items() if k in tables or k == "opportunities"},
        warnings,
        max(dates).normalize() if dates else None,
        _scalar(pc.min(created)) if created is not None else None,
    )


def _scalar(s):
    """An Arrow scalar as pandas gives it from the column (a Timestamp, NaT for null)."""
    return pa.array([s]).to_pandas(date_as_object=False)[0]


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
