"""``dataset.yml``: what a dataset folder says about itself.

Example::

    name: Sample Co (synthetic)
    currency: USD
    fiscal_year_start_month: 1
    as_of: 2026-10-31            # optional: the export date (default: latest date in the data)
    stages:                      # in funnel order, with default win probabilities (0–1 or 0–100)
      - {name: Prospecting, probability: 0.1}
      - {name: Closed Won, probability: 1.0}
      - {name: Closed Lost, probability: 0.0}
    won_stages: [Closed Won]
    lost_stages: [Closed Lost]
    qualifying_stage: Qualification   # optional: first stage that counts as a qualified opportunity
    targets: {2026: 12000000}     # optional company bookings target per fiscal year
    tables: {opportunities: crm_export.csv}   # optional file per table
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
import yaml

from helpers.data.schema import TABLES


class ConfigError(ValueError):
    """dataset.yml is missing or malformed; the message names the file and the key."""


@dataclass
class DatasetConfig:
    name: str = "dataset"
    currency: str = "USD"
    fiscal_year_start_month: int = 1
    stages: list[str] = field(default_factory=list)
    probabilities: dict[str, float] = field(default_factory=dict)
    won_stages: list[str] = field(default_factory=list)
    lost_stages: list[str] = field(default_factory=list)
    qualifying_stage: str | None = None
    targets: dict[int, float] = field(default_factory=dict)
    tables: dict[str, str] = field(default_factory=dict)
    as_of: str | None = None
    source: dict = field(default_factory=dict)
    extra: dict = field(default_factory=dict)

    @property
    def open_stages(self) -> list[str]:
        closed = set(self.won_stages) | set(self.lost_stages)
        return [s for s in self.stages if s not in closed]

    def stage_rank(self, stage: str) -> int:
        return self.stages.index(stage) if stage in self.stages else -1

    def to_dict(self) -> dict:
        out = {
            "name": self.name,
            "currency": self.currency,
            "fiscal_year_start_month": self.fiscal_year_start_month,
            "stages": [{"name": s, "probability": self.probabilities.get(s)} for s in self.stages],
            "won_stages": list(self.won_stages),
            "lost_stages": list(self.lost_stages),
        }
        if self.qualifying_stage:
            out["qualifying_stage"] = self.qualifying_stage
        if self.as_of:
            out["as_of"] = str(self.as_of)
        if self.targets:
            out["targets"] = {int(k): float(v) for k, v in self.targets.items()}
        if self.tables:
            out["tables"] = dict(self.tables)
        if self.source:
            out["source"] = self.source
        out.update(self.extra)
        return out

    def save(self, path: str | Path) -> None:
        Path(path).write_text(yaml.safe_dump(self.to_dict(), sort_keys=False, allow_unicode=True))


def parse_config(raw: dict, where: str = "dataset.yml") -> DatasetConfig:
    """Build a config from the parsed YAML, raising ConfigError with every problem found."""
    problems: list[str] = []
    if not isinstance(raw, dict):
        raise ConfigError(f"{where}: expected a mapping of keys (name, stages, …), got {type(raw).__name__}")
    known = {
        "name",
        "currency",
        "fiscal_year_start_month",
        "stages",
        "won_stages",
        "lost_stages",
        "qualifying_stage",
        "targets",
        "tables",
        "as_of",
        "source",
        "date_order",
        "engine",
    }
    for k in raw:
        close = difflib.get_close_matches(str(k), sorted(known), n=1, cutoff=0.7)
        if k not in known and close:
            problems.append(f"{k}: not a dataset.yml key; did you mean {close[0]!r}?")
    cfg = DatasetConfig(extra={k: v for k, v in raw.items() if k not in known})
    order = raw.get("date_order")
    if order is not None:
        if str(order).upper() not in ("DMY", "MDY", "YMD"):
            problems.append(f"date_order: expected DMY (31/10/2026), MDY (10/31/2026) or YMD, got {order!r}")
        else:
            cfg.extra["date_order"] = str(order).upper()
    engine = raw.get("engine")
    if engine is not None:  # which engine computes the metrics (helpers.data.engine)
        if not isinstance(engine, str) or not engine.strip():
            problems.append(f"engine: expected duckdb, postgres, spark or an Ibis backend URL, got {engine!r}")
        else:
            cfg.extra["engine"] = engine.strip()
    cfg.name = str(raw.get("name", cfg.name))
    cfg.currency = str(raw.get("currency", cfg.currency))
    fy = raw.get("fiscal_year_start_month", 1)
    if not isinstance(fy, int) or not 1 <= fy <= 12:
        problems.append(f"fiscal_year_start_month: expected a whole number 1..12, got {fy!r}")
    else:
        cfg.fiscal_year_start_month = fy
    stages = raw.get("stages")
    if not isinstance(stages, list) or not stages:
        problems.append(
            "stages: expected a list of stages in funnel order, e.g. '- {name: Prospecting, probability: 0.1}'"
        )
        stages = []
    probs = {}
    for i, st in enumerate(stages, 1):
        if isinstance(st, bool) or st is None or (isinstance(st, dict) and isinstance(st.get("name"), bool)):
            problems.append(
                f'stages[{i}]: YAML read this stage name as {st!r}; put the name in quotes (e.g. - "No")'
            )
            continue
        if isinstance(st, str):
            name, p = st, None
        elif isinstance(st, dict) and "name" in st:
            name, p = str(st["name"]), st.get("probability")
        else:
            problems.append(f"stages[{i}]: expected a stage name or {{name: …, probability: …}}, got {st!r}")
            continue
        if name in cfg.stages:
            problems.append(f"stages[{i}]: stage {name!r} is listed twice")
            continue
        cfg.stages.append(name)
        if p is not None:
            try:
                p = float(p)
            except (TypeError, ValueError):
                problems.append(f"stages[{i}] ({name}): probability must be a number, got {p!r}")
                continue
            probs[name] = p
    if probs and max(probs.values()) > 1:
        probs = {k: v / 100 for k, v in probs.items()}
    for k, v in probs.items():
        if not 0 <= v <= 1:
            problems.append(f"stages ({k}): probability must be within 0–1 (or 0–100), got {v!r}")
    cfg.probabilities = probs
    for key in ("won_stages", "lost_stages"):
        vals = raw.get(key, [])
        if isinstance(vals, str):
            vals = [vals]
        if not vals:
            problems.append(f"{key}: expected at least one stage name")
        for v in vals:
            if str(v) not in cfg.stages:
                problems.append(f"{key}: {v!r} is not one of the stages ({', '.join(cfg.stages)})")
        setattr(cfg, key, [str(v) for v in vals])
    q = raw.get("qualifying_stage")
    if q is not None:
        if str(q) not in cfg.stages:
            problems.append(f"qualifying_stage: {q!r} is not one of the stages")
        cfg.qualifying_stage = str(q)
    targets = raw.get("targets") or {}
    if not isinstance(targets, dict):
        problems.append("targets: expected a mapping of fiscal year to amount, e.g. {2026: 12000000}")
        targets = {}
    for k, v in targets.items():
        try:
            cfg.targets[int(str(k).upper().removeprefix("FY"))] = float(v)
        except (TypeError, ValueError):
            problems.append(f"targets: expected fiscal year: amount, got {k!r}: {v!r}")
    tables = raw.get("tables") or {}
    for k in tables:
        if k not in TABLES:
            problems.append(f"tables: unknown table {k!r}; the tables are {', '.join(TABLES)}")
    cfg.tables = {str(k): v for k, v in tables.items()}
    if raw.get("as_of") is not None:
        as_of = str(raw["as_of"]).strip()
        try:
            if (
                as_of == "latest_date_in_data"
            ):  # an import profile's rule, resolved when it writes dataset.yml
                pass
            elif not re.fullmatch(r"\d{4}-\d{2}-\d{2}", as_of):
                raise ValueError
            if not 1970 <= pd.Timestamp(as_of).year <= 2100:
                problems.append(
                    f"as_of: {as_of} is not a plausible export date (expected a year from 1970 to 2100)"
                )
            else:
                cfg.as_of = as_of
        except ValueError:
            problems.append(
                f"as_of: expected the export date as YYYY-MM-DD (e.g. 2026-10-31), got {raw['as_of']!r}"
            )
    cfg.source = raw.get("source") or {}
    if problems:
        raise ConfigError(
            f"{where} has {len(problems)} problem(s):\n" + "\n".join(f"  - {p}" for p in problems)
        )
    return cfg


def load_config(folder: str | Path) -> DatasetConfig:
    path = Path(folder) / "dataset.yml"
    if not path.exists():
        raise ConfigError(
            f"{path}: not found. Every dataset folder needs a dataset.yml with its stages and won/lost "
            "stages (see docs/data-contract.md)."
        )
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError as exc:
        raise ConfigError(
            f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start}); save it as UTF-8"
        ) from exc
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from exc
    return parse_config(raw, where=str(path))
