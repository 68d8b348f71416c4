"""The shared metrics, pinned on hand-built cases through every public caller.

Four deals closed in October 2026: two won (one of them without an amount), two lost. By hand:
win rate (count) = 2 won ÷ 4 closed = 0.5; win rate (value) = 100 ÷ (100 + 50 + 150) = 1/3;
average won deal size = 100 ÷ 1 priced won deal = 100 (the unpriced deal is unknown, not 0).
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import rates_reference as RR

from helpers.data.calendar import FiscalCalendar, Window, trailing_text, trailing_window, weeks_window
from helpers.metrics import activity as A
from helpers.metrics import pipeline as pl
from helpers.metrics import quota as Q
from helpers.metrics import winloss as wl

T = pd.Timestamp


def four_deals() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "opportunity_id": ["w1", "w2", "l1", "l2", "o1"],
            "owner": ["r1"] * 5,
            "stage": ["Won", "Won", "Lost", "Lost", "Open"],
            "created_date": pd.to_datetime(
                ["2026-09-01", "2026-09-11", "2026-09-01", "2026-09-01", "2026-09-01"]
            ),
            "close_date": pd.to_datetime(
                ["2026-10-11", "2026-10-21", "2026-10-05", "2026-10-06", "2026-12-01"]
            ),
            "amount": [100.0, np.nan, 50.0, 150.0, 999.0],
            "is_closed": pd.array([True, True, True, True, False], dtype="boolean"),
            "is_won": pd.array([True, True, False, False, False], dtype="boolean"),
        }
    )


def no_activity() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "activity_id": pd.Series([], dtype="str"),
            "owner": pd.Series([], dtype="str"),
            "type": pd.Series([], dtype="str"),
            "occurred_at": pd.Series([], dtype="datetime64[us]"),
            "opportunity_id": pd.Series([], dtype="str"),
            "outcome": pd.Series([], dtype="str"),
        }
    )


def test_rates_by_hand():
    t = RR.totals(RR.closed_in(four_deals(), "2026-10-01", "2026-10-31"))
    assert (t["closed"], t["won"], t["lost"], t["won_priced"]) == (4, 2, 2, 1)
    assert t["win_rate_count"] == 0.5
    assert t["win_rate_value"] == pytest.approx(100 / 300, rel=1e-12)
    assert t["avg_deal_size"] == 100.0


def test_win_rate_through_every_caller():
    opps = four_deals()
    assert pl.win_rate(opps, "2026-10-01", "2026-10-31")["win_rate_count"] == 0.5
    # the quota funnel counted only won deals with an amount (1 ÷ 4 = 0.25): now 0.5 like every caller
    qr = Q.funnel_rates(opps, None, "2026-10-31", months=1)
    assert qr.win_rate == 0.5
    assert qr.avg_deal_size == 100.0
    ar = A.funnel_rates(no_activity(), opps, "2026-10-01", "2026-10-31")
    assert ar["win_rate"] == 0.5
    assert ar["avg_deal_size"] == 100.0  # was 100 ÷ 2 = 50: the unpriced won deal counted as 0
    october = Window("M", T("2026-10-01"), T("2026-10-31"), T("2026-10-31"), "2026-10")
    w = wl.WindowDeals(wl.Deals(opps), october).overall().iloc[0]  # win/loss, on the engine
    assert (w["deals"], w["won"]) == (4, 2)
    assert w["win_rate"] == 0.5
    assert w["value_win_rate"] == pytest.approx(100 / 300, rel=1e-12)
    v = pl.sales_velocity(opps, "2026-10-31", months=1)
    assert v["win_rate_count"] == 0.5
    assert v["avg_deal_size"] == 100.0  # was 50


def test_zero_denominators_give_nan_not_errors():
    opps = four_deals()
    t = pl.win_rate(opps, "2026-01-01", "2026-01-31")  # nothing closed
    assert t["closed"] == 0 and math.isnan(t["win_rate_count"]) and math.isnan(t["win_rate_value"])
    assert math.isnan(t["avg_deal_size"])
    # the quota funnel falls back to its benchmark, and says so
    qr = Q.funnel_rates(opps, None, "2026-01-31", months=1)
    assert qr.win_rate == Q.BENCHMARKS["win_rate"]
    assert dict(qr.sources)["win_rate"] == "benchmark"
    # lost deals without amounts: the value rate would read 100% and is not given
    unpriced_losses = opps.assign(amount=[100.0, np.nan, np.nan, np.nan, 1.0])
    t = pl.win_rate(unpriced_losses, "2026-10-01", "2026-10-31")
    assert t["win_rate_count"] == 0.5 and math.isnan(t["win_rate_value"])


@pytest.mark.parametrize(
    ("as_of", "start"),
    [
        ("2026-10-31", "2025-11-01"),
        ("2024-02-29", "2023-03-01"),  # a leap day: 12 calendar months back, not 364 days (2023-03-02)
        ("2025-02-28", "2024-02-29"),  # 12 months after the leap year: 2024-02-29 is inside
        ("2024-03-01", "2023-03-02"),
    ],
)
def test_the_12_month_window(as_of, start):
    assert trailing_window(as_of) == (T(start), T(as_of))
    assert trailing_text(as_of) == f"12 months to {as_of}"


def test_every_12_month_figure_uses_the_one_window():
    """A deal closed on 2023-03-01 is inside the 12 months to 2024-02-29 for every caller (as-of − 364 days
    would start on 2023-03-02 and leave it out)."""
    opps = four_deals()
    opps["close_date"] = opps["close_date"].where(opps["opportunity_id"] != "l2", T("2023-03-01"))
    opps.loc[opps["opportunity_id"] != "l2", "close_date"] = T("2024-02-10")
    opps.loc[opps["opportunity_id"] == "o1", "close_date"] = T("2024-06-01")
    opps["created_date"] = T("2023-01-01")
    assert pl.win_rate(opps, *trailing_window("2024-02-29"))["closed"] == 4
    assert pl.sales_velocity(opps, "2024-02-29")["win_rate_count"] == 0.5
    assert Q.funnel_rates(opps, None, "2024-02-29").win_rate == 0.5


def test_weeks_window_is_whole_weeks_ending_on_as_of():
    assert weeks_window("2026-10-31", 13) == (T("2026-08-02"), T("2026-10-31"))


def test_window_texts_name_the_period():
    w = FiscalCalendar(2).windows("2026-10-15")
    assert w["QTD"].to_date_text == "FY2027 Q3 to 2026-10-15"
    assert w["QTD"].full_text == "FY2027 Q3, full quarter"
    assert w["YTD"].full_text == "FY2027, full year"
    assert w["WTD"].to_date_text == "week of 2026-10-12 to 2026-10-15"
    done = FiscalCalendar(2).windows("2026-10-31")
    assert done["QTD"].to_date_text == "FY2027 Q3"
    assert done["MTD"].to_date_text == "2026-10"


# --------------------------------------------------------------------------------------------------
# one parser for messy values: loading a dataset and importing an export read the same text the same way
# --------------------------------------------------------------------------------------------------
MINI_YML = "stages: [Open, Won, Lost]\nwon_stages: [Won]\nlost_stages: [Lost]\nas_of: 2026-10-31\n"


def _loaded_amounts(tmp_path, values: list[str]) -> list[float]:
    from helpers.data.dataset import load

    folder = tmp_path / "m"
    folder.mkdir(exist_ok=True)
    (folder / "dataset.yml").write_text(MINI_YML)
    rows = "".join(f'{i},Open,"{v}"\n' for i, v in enumerate(values, 1))
    (folder / "opportunities.csv").write_text("opportunity_id,stage,amount\n" + rows)
    return load(folder).opportunities["amount"].tolist()


def _imported_amounts(values: list[str]) -> list[float]:
    from helpers.data.importers import Column, column_decimal, parse_numbers

    s = pd.Series(values, dtype="str")
    where = Column("export.csv", "Amount")
    n = parse_numbers(s, column_decimal(s, None, where))
    assert not where.problems, where.problems
    return n.tolist()


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        (["1,2345"], [1.2345]),  # a comma before 4 digits is no thousands separator: a decimal comma
        (["1,5", "2,25"], [1.5, 2.25]),
        (["1,234", "12,345,678"], [1234.0, 12345678.0]),
        (["1.234,5", "2.000,25"], [1234.5, 2000.25]),
        (["1,234.5", "0.25"], [1234.5, 0.25]),
    ],
)
def test_load_and_import_read_numbers_alike(tmp_path, values, expected):
    assert _loaded_amounts(tmp_path, values) == pytest.approx(expected, rel=1e-12)
    assert _imported_amounts(values) == pytest.approx(expected, rel=1e-12)


def test_one_probability_scale_rule():
    from helpers.data.coerce import probability_scale, to_number

    n = pd.Series([35.0, 0.5, 80.0, 20.0])
    pct = pd.Series([False, False, False, True])
    out, frac = probability_scale(n, pct)
    assert out.tolist() == [0.35, 0.005, 0.8, 0.2]
    assert frac.tolist() == [False, True, False, False]
    vals, bad, warnings = to_number(pd.Series(["35", "0.5", "80", "20%"]), kind="prob")
    assert vals.tolist() == out.tolist() and not bad
    assert any("0–100 scale" in w for w in warnings)
    assert probability_scale(pd.Series([0.35, 0.5]), pd.Series([False, False]))[0].tolist() == [0.35, 0.5]


# --------------------------------------------------------------------------------------------------
# the registry itself
# --------------------------------------------------------------------------------------------------
def test_docs_metrics_md_is_generated_from_the_registry():
    """docs/metrics.md is what `make docs` writes from registry.yml: edit the registry, then `make docs`."""
    from conftest import ROOT

    from helpers.metrics.registry import render_docs

    assert (ROOT / "docs" / "metrics.md").read_text(encoding="utf-8") == render_docs()


def test_every_registry_entry_is_complete_and_computable():
    from helpers.metrics import registry

    reg = registry.load()
    assert len(reg.metrics) > 80
    for m in reg.metrics.values():
        assert m.label and m.definition, m.key
        assert callable(m.function()) or isinstance(m.function(), property), m.key
    labels = {}
    for m in reg.metrics.values():
        # two figures that differ only by window share a label; their windows then differ
        labels.setdefault((m.label, m.section, m.window), []).append(m.key)
    assert all(len(v) == 1 for v in labels.values()), [v for v in labels.values() if len(v) > 1]


def test_a_registry_error_names_the_entry(tmp_path):
    from helpers.metrics import registry

    text = registry.REGISTRY_FILE.read_text(encoding="utf-8").replace("window: 12m", "window: 11m", 1)
    bad = tmp_path / "registry.yml"
    bad.write_text(text, encoding="utf-8")
    with pytest.raises(
        ValueError, match=r"metric '[a-z_0-9]+': window '11m' is not one of the registry's windows"
    ):
        registry.load(bad)


def test_a_key_defined_twice_is_an_error(tmp_path):
    from helpers.metrics import registry

    text = registry.REGISTRY_FILE.read_text(encoding="utf-8")
    entry = text[text.index("  won_deals:\n") : text.index("  closed_deals:\n")]
    bad = tmp_path / "registry.yml"
    bad.write_text(text.replace(entry, entry + entry), encoding="utf-8")
    with pytest.raises(ValueError, match=r"line \d+: 'won_deals' is defined twice"):
        registry.load(bad)
