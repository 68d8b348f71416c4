"""Headline figures: what a notebook reports, machine-readable, each with its definition.

A notebook collects its headline figures in a ``Headlines`` object and saves them to the
``summary_path`` parameter the report run gives it; the report run merges every notebook's file into
``reports/<period>/summary.json``. Units: currency, count, percent (0–1), ratio, days,
points (a difference of two percents, 0–1 scale: 0.089 is shown +8.9 pts). Every figure is an entry of the
metric registry (``helpers.metrics.registry``), which gives its label, unit and definition.

Change since last month: a notebook also records what its figures were at the previous month's end
(``add_previous``), computed again from the data by the same functions at that date — only the figures the
registry says the data can rebuild (``Metric.rebuilt``: closed deals by date always, open pipeline when
opportunity_history replays it). The report run takes each figure's change from there, else from the earlier
report's summary.json.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path

import pandas as pd

from helpers.data.atomic import write_text_atomic
from helpers.metrics import registry


def previous_month_end(as_of) -> pd.Timestamp:
    """The last day of the month before ``as_of``'s month: where "change since last month" is measured from
    (2026-10-31 → 2026-09-30; 2026-11-15 → 2026-10-31)."""
    return pd.Timestamp(as_of).normalize().replace(day=1) - pd.Timedelta(days=1)


def _stored(value, unit: str):
    """A figure's value as summary.json stores it: NaN/inf as None, whole counts as int, text as is."""
    if value is None or isinstance(value, str):
        return value
    value = float(value)
    if math.isnan(value) or math.isinf(value):
        return None
    return int(value) if unit == "count" and value.is_integer() else value


@dataclass
class Figure:
    key: str
    label: str
    value: float | int | str | None
    unit: str
    definition: str
    window: str | None = None
    base: str | None = None
    params: dict = field(default_factory=dict)


@dataclass
class Headlines:
    notebook: str
    currency: str = "USD"
    figures: list[Figure] = field(default_factory=list)
    # the figures' values at the previous month's end, rebuilt from the data, and their windows then:
    # {"as_of": ..., "values": {key: v}, "windows": {key: window}}
    previous: dict = field(default_factory=dict)
    # the report's "what to look at" points: text (Markdown), section, level, keys (``registry.Point``)
    points: list[dict] = field(default_factory=list)

    def add_points(self, points) -> None:
        """Record the report's "what to look at" points (``registry.Point``; a plain sentence counts as
        information with no section)."""
        self.points = [
            p.to_dict() if isinstance(p, registry.Point) else registry.Point(str(p)).to_dict()
            for p in points
            if p
        ]

    def add_previous(self, as_of, figs, has_history: bool) -> None:
        """Record ``figs`` (``registry.Fig``s computed at ``as_of``, the previous month's end: a mapping's values
        or a list) as the values the figures had then — only those the registry says the data rebuilds
        (``Metric.rebuilt``: by dates always, by replaying opportunity_history when ``has_history``)."""
        values = dict(self.previous.get("values", {}))
        windows = dict(self.previous.get("windows", {}))
        for f in figs.values() if isinstance(figs, dict) else figs:
            m = registry.metric(f.key)
            if m.rebuilt(has_history):
                values[f.key] = _stored(f.value, m.unit)
                if f.window:
                    windows[f.key] = f.window
        self.previous = {"as_of": f"{pd.Timestamp(as_of):%Y-%m-%d}", "values": values, "windows": windows}

    def add(self, key: str, value, window: str | None = None, base: str | None = None, params=None) -> None:
        """Record the registry figure ``key`` over ``window`` (with its ``base``, e.g. "118 closed"); label,
        unit and definition come from the registry. NaN/None is stored as null."""
        m = registry.metric(key)
        params = dict(params or {})
        unit = m.unit
        value = _stored(value, unit)
        self.figures = [f for f in self.figures if f.key != key]
        self.figures.append(
            Figure(
                key,
                m.render_label(window, base, params),
                value,
                unit,
                m.render_definition(params),
                window,
                base,
                params,
            )
        )

    def add_figs(self, figs) -> None:
        """Record ``registry.Fig`` objects (a mapping's values, or a list)."""
        for f in figs.values() if isinstance(figs, dict) else figs:
            self.add(f.key, f.value, f.window, f.base, f.params)

    def lead(self, keys) -> None:
        """Move the figures named in ``keys`` to the front, in that order (the index and the leadership
        email show a notebook's first figures)."""
        keys = list(keys)
        self.figures.sort(key=lambda f: keys.index(f.key) if f.key in keys else len(keys))

    def get(self, key: str):
        return next((f.value for f in self.figures if f.key == key), None)

    def to_dict(self) -> dict:
        return {
            "notebook": self.notebook,
            "currency": self.currency,
            "figures": [asdict(f) for f in self.figures],
            **({"previous": self.previous} if self.previous else {}),
            **({"points": self.points} if self.points else {}),
        }

    def save(self, path: str | os.PathLike | None) -> None:
        """Write to ``path`` atomically; no-op when ``path`` is empty (interactive use)."""
        if not path:
            return
        from helpers.data.engine import engine_seconds

        write_json_atomic(Path(path), {**self.to_dict(), "engine_seconds": round(engine_seconds(), 3)})

    def show(self, keys: list[str] | None = None, in_order: bool = False) -> None:
        """Display the figures as KPI cards: those named in ``keys`` (default: all), in the order they were
        recorded, or with ``in_order`` in the order of ``keys``."""
        from helpers.sections.display import cards, fmt_value

        figs = [f for f in self.figures if keys is None or f.key in keys]
        if in_order and keys is not None:
            figs.sort(key=lambda f: keys.index(f.key))
        cards([(f.label, fmt_value(f.value, f.unit, self.currency), "") for f in figs])


def write_json_atomic(path: Path, data) -> None:
    write_text_atomic(path, json.dumps(data, indent=2, default=str))
