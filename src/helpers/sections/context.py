"""The opening of every report notebook: load the dataset, resolve the dates, set the theme, title.

``open_report(dataset, period, as_of, title, notebook)`` returns a ``ReportContext`` so a notebook's
first code cell after its parameters is one line.

Dates: ``period`` is a ``YYYY-MM`` month. ``as_of`` defaults to the last day of ``period``, capped at
the dataset's own as-of date; ``period`` defaults to the month of ``as_of``; with neither, the dataset's
as-of date is used.
"""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from helpers.data import escape
from helpers.data.calendar import FiscalCalendar, month_name, period_bounds
from helpers.data.dataset import Dataset
from helpers.sections import display
from helpers.sections.summary import Headlines


class DataMissing(Exception):
    """A notebook cannot go on without some data, and has said so on the page (``open_report``): the
    report run publishes what the notebook showed up to there (``helpers.publish.report.execute``)
    instead of failing the month."""


# tables a notebook does not load into its kernel unless it names them in ``open_report(tables=...)``:
# their metrics run on the engine (``ReportContext.eng``). A notebook that lists its tables loads
# ``opportunities`` only if it names it too; a table not loaded is measured where it lives
# (``ReportContext.source``, ``missing``, ``has``)
ENGINE_TABLES = ("activities", "leads", "opportunity_history")

# what each report needs before anything can be shown; every other missing table or column only
# turns off the sections that use it (each says what it needs)
NOTEBOOK_NEEDS = {
    "quota_setting": [("opportunities", "amount")],
}


@dataclass
class ReportContext:
    ds: Dataset
    as_of: pd.Timestamp
    period: str
    cal: FiscalCalendar
    headlines: Headlines

    @property
    def eng(self):
        """The engine where the dataset lives (``helpers.data.engine.shared``: opened once per kernel).
        The metrics over the large tables run there; only their aggregates come back."""
        from helpers.data import engine

        return engine.shared(self.ds.path)

    @property
    def deals_engine(self):
        """The engine holding the dataset's opportunities and opportunity_history, where the pipeline
        measurements run (``helpers.metrics.history``): the dataset's own engine, or for a dataset
        built in memory an in-memory DuckDB over its frames (made once per dataset)."""
        if self.ds.files:
            return self.eng
        made = self.ds.__dict__.get("_deals_engine")
        if made is None:
            from helpers.data import engine

            frames = {
                t: self.ds.tables[t] for t in ("opportunities", "opportunity_history") if t in self.ds.tables
            }
            made = self.ds.__dict__["_deals_engine"] = engine.from_frames(frames, self.ds.config)
        return made

    def _on_engine(self, table: str) -> bool:
        """Whether ``table`` is left where it lives: a table the notebook did not load, of a dataset read
        from a folder or database (a dataset built in memory holds all its tables). A load from the cache
        names only the files it loaded (and the opportunities'), so the engine is asked about the rest."""
        if table in self.ds.tables or not self.ds.files:
            return False
        return table in ENGINE_TABLES or table in self.ds.files or table in self.eng.tables

    @property
    def activities(self):
        """The activity log as an engine table (never loaded into the kernel; the frame itself for a
        dataset built in memory), or None without one."""
        if self._on_engine("activities"):
            return self._engine_table("activities")
        return self.ds.tables.get("activities")

    @property
    def leads(self):
        """The leads as an engine table (the frame itself for a dataset built in memory), or None."""
        if self._on_engine("leads"):
            return self._engine_table("leads")
        return self.ds.tables.get("leads")

    def source(self, table: str):
        """``table`` where it lives: the engine's table for a dataset read from a folder or database, the
        frame for one built in memory (for a lookup that runs beside an engine table)."""
        if self.ds.files:
            return self._engine_table(table)
        return self.ds.tables.get(table)

    def _engine_table(self, table: str):
        """The engine's ``table``, on PostgreSQL kept once per kernel as a temporary table of the session
        (``Engine.keep``): its canonical reading (trimmed text, vocabularies, stage spellings) is then made
        once, not inside every query. On DuckDB the table itself."""
        kept = self.__dict__.setdefault("_kept", {})
        if table not in kept:
            t = self.eng.tables.get(table)
            kept[table] = None if t is None else self.eng.keep(t, on_server_only=True)
        return kept[table]

    def missing(self, table: str, *columns: str, section: str = "This section") -> str | None:
        """``Dataset.missing``, asked of the engine for a table left where it lives."""
        if self._on_engine(table):
            return self.eng.missing(table, *columns, section=section)
        return self.ds.missing(table, *columns, section=section)

    def has(self, table: str, *columns: str) -> bool:
        """``Dataset.has``: the table is there with data in each of ``columns`` (asked of the engine for a
        table left where it lives)."""
        if self._on_engine(table):
            return self.eng.missing(table, *columns) is None
        return self.ds.has(table, *columns)

    @property
    def currency(self) -> str:
        return self.ds.config.currency

    def money(self, x, compact: bool = False) -> str:
        return display.fmt_money(x, self.currency, compact)


def resolve_dates(ds: Dataset, period: str = "", as_of: str = "") -> tuple[str, pd.Timestamp]:
    if as_of:
        a = pd.Timestamp(as_of).normalize()
        p = period or a.strftime("%Y-%m")
    elif period:
        _, end = period_bounds(period)
        a = min(end, ds.as_of) if ds.as_of >= period_bounds(period)[0] else end
        p = period
    else:
        a = ds.as_of
        p = a.strftime("%Y-%m")
    period_bounds(p)  # validates the label
    return p, a


def resolve_dataset(path: str) -> str:
    """A relative dataset path is tried from the working directory, then from the project root
    (so notebooks opened from ``notebooks/`` in JupyterLab find ``data/sample``)."""
    from pathlib import Path

    p = Path(path)
    if p.is_absolute() or p.exists():
        return str(p)
    root = Path(__file__).resolve().parents[3]
    return str(root / p) if (root / p).exists() else str(p)


def open_report(
    dataset: str,
    period: str = "",
    as_of: str = "",
    title: str = "",
    notebook: str = "",
    show_header: bool = True,
    tables: list[str] | None = None,
    engine_memory: str | None = None,
) -> ReportContext:
    """The notebook's dataset and dates (``ReportContext``), its heading said on the page. ``tables``:
    the tables loaded into the kernel (the others stay where they live); ``engine_memory``: the DuckDB
    memory cap this notebook asks for (None: ``engine.DUCKDB_MEMORY``; ``REVOPS_ENGINE_MEMORY`` wins)."""
    display.setup_notebook()
    from helpers.data import engine
    from helpers.data.schema import TABLES

    engine.set_memory(engine_memory)  # (a warm kernel's open engine too: each notebook says its own)
    engine.engine_seconds(reset=True)  # (a warm kernel's notebook counts its own queries' time)

    wanted = list(tables) if tables is not None else [t for t in TABLES if t not in ENGINE_TABLES]
    ds = engine.load_tables(resolve_dataset(dataset), wanted)
    if "opportunities" not in ds.tables and ds.files:  # left where they live: the export date is asked there
        ds.inferred = lambda: engine.shared(ds.path).inferred_as_of()
    p, a = resolve_dates(ds, period, as_of)
    display.set_rep_names(ds.reps)
    cal = FiscalCalendar(ds.config.fiscal_year_start_month)
    ctx = ReportContext(ds, a, p, cal, Headlines(notebook or title, ds.config.currency))
    heading = title or notebook.replace("_", " ").capitalize()
    needs = [ctx.missing(t, c, section=f"The {heading} report") for t, c in NOTEBOOK_NEEDS.get(notebook, [])]
    needs = [n for n in needs if n]
    if needs:  # said on the page, then the run publishes the page as it is (DataMissing)
        display.markdown(
            f"# {heading} — {p}\n\n**{escape.markdown(ds.config.name)}** · data as of **{a:%Y-%m-%d}**"
        )
        for text in needs:
            display.note(text, warn=True)
        raise DataMissing(" ".join(needs))
    if show_header and title:
        display.markdown(
            f"# {title} — {p}\n\n"
            f"**{escape.markdown(ds.config.name)}** · data as of **{a:%Y-%m-%d}** · fiscal quarter {cal.quarter_label(a)} "
            f"(the fiscal year starts in {month_name(cal.start_month)}) · currency {ds.config.currency}"
        )
        if ds.warnings:
            expected = (
                ds.config.source.get("expected_warnings") if isinstance(ds.config.source, dict) else None
            )
            display.note(
                f"The data has {len(ds.warnings)} warning(s) the report can live with"
                + (f" ({expected})" if expected else "")
                + "; the data check lists them for whoever maintains the CRM export."
            )
    return ctx
