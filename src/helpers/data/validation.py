"""Validation of a dataset without keeping its rows: ``validate`` (for the report run's parent) and
``validate_report`` (``revops validate``). On PostgreSQL the rules run on the server as queries
(``helpers.data.pgcheck``); otherwise the dataset is loaded (``helpers.data.dataset.load``)."""

from __future__ import annotations

from pathlib import Path

from helpers.data import pgcheck
from helpers.data.dataset import Checked, DataValidationError, format_problems, infer_as_of, load, n_problems


def validate(path: str | Path) -> Checked:
    """Validate the dataset at ``path`` as ``load`` does (``DataValidationError`` on errors), keeping no rows.

    When every table lives in one PostgreSQL database with columns the contract can take as they are typed,
    the rules run there as queries (``helpers.data.pgcheck``): only counts and the first rows that break a
    rule come back. Otherwise the dataset is loaded (files: from the typed cache, which this builds)."""
    folder = Path(path)
    if folder.is_dir():
        checked = pgcheck.check(folder)
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
