"""The win/loss review as the report shows it: charts, display tables, the scope sentence and the glossary,
drawn from the aggregates that ``helpers.metrics.winloss`` computes."""

from __future__ import annotations

import numpy as np
import pandas as pd

from helpers.metrics import winloss as wl
from helpers.metrics.winloss import Review, other_label
from helpers.sections import plots
from helpers.sections.display import fmt_value, symbol
from helpers.sections.summary import previous_month_end


# --------------------------------------------------------------------------------------------------
# charts (drawn from the aggregated tables above)
# --------------------------------------------------------------------------------------------------
def plot_pareto(reasons: pd.DataFrame, title: str = "Why we lose: loss reasons (Pareto)") -> None:
    """Bars: lost deals per reason (ranked); line: cumulative share of lost deals, with the 80% mark."""
    fig, ax = plots.new_figure()
    x = np.arange(len(reasons))
    ax.bar(x, reasons["deals"], color=plots.LOST)
    from matplotlib.ticker import MaxNLocator

    ax.yaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xticks(x, reasons["reason"], rotation=20, ha="right")
    ax2 = ax.twinx()
    ax2.plot(x, reasons["cum_share"], color=plots.NEUTRAL, marker="o")
    ax2.axhline(0.8, color=plots.NEUTRAL, linestyle=":", linewidth=1)
    ax2.set_ylim(0, 1.05)
    ax2.grid(False)
    plots.percent_axis(ax2)
    ax2.set_ylabel("Cumulative share of lost deals")
    plots.finish(fig, ax, title, "Loss reason", "Lost deals")


def plot_trend(trend: pd.DataFrame, title: str = "Win rate trend (95% interval)") -> None:
    """Win rate per window with its Wilson band; review and comparison windows marked."""
    fig, ax = plots.new_figure()
    x = np.arange(len(trend))
    ax.fill_between(x, trend["ci_low"], trend["ci_high"], color=plots.WON, alpha=0.15, linewidth=0)
    ax.plot(x, trend["win_rate"], color=plots.WON, marker="o")
    for role, colour in (("review", plots.WON), ("comparison", plots.NEUTRAL)):
        idx = np.flatnonzero(trend["role"].eq(role).to_numpy())
        if len(idx):
            ax.scatter(
                idx,
                trend["win_rate"].iloc[idx],
                s=120,
                facecolors="none",
                edgecolors=colour,
                linewidths=2,
                zorder=3,
                label=role,
            )
    ax.set_xticks(x, trend["window"], rotation=30, ha="right")
    ax.set_ylim(0, 1)
    plots.percent_axis(ax)
    ax.legend(loc="upper left", frameon=False)
    plots.finish(fig, ax, title, "", "Win rate (count)")


CHART_MAX_GROUPS = 40  # a per-group chart beyond this shows the 20 lowest and 20 highest rates


def plot_rates(table: pd.DataFrame, overall_rate: float, title: str) -> None:
    """Win rate per group as a dot with its 95% Wilson interval; the dotted line is the overall rate."""
    if len(table) > CHART_MAX_GROUPS:  # the lowest and highest rates; the table keeps every group
        k = CHART_MAX_GROUPS // 2
        order = table["win_rate"].rank(method="first")
        table = table[(order <= k) | (order > len(table) - k)]
        title = f"{title} — lowest and highest {k} of {len(order):,}"
    t = table.iloc[::-1]
    fig, ax = plots.new_figure(height=max(2.5, 0.35 * len(t) + 1.2))
    y = np.arange(len(t))
    ax.hlines(y, t["ci_low"], t["ci_high"], color=plots.WON, linewidth=3, alpha=0.35)
    ax.scatter(t["win_rate"], y, color=plots.WON, zorder=3)
    ax.axvline(overall_rate, color=plots.NEUTRAL, linestyle=":")
    ax.set_yticks(y, [f"{g}  (n={n})" for g, n in zip(t["group"], t["deals"], strict=True)])
    ax.set_xlim(0, 1)
    plots.percent_axis(ax, axis="x")
    plots.finish(fig, ax, title, "Win rate (dot) and 95% interval (bar)", "")


# --------------------------------------------------------------------------------------------------
# reader-facing tables (renamed columns, formatted cells) and words
# --------------------------------------------------------------------------------------------------
# the glossary under the review (terms of the metric registry)
GLOSSARY = (
    "win_rate_count",
    "win_rate_value",
    "wilson_interval",
    "other_pooled",
    "deal_size_band",
    "pareto_cumulative_share",
    "stage_lost_at",
    "cycle",
    "stage_changes",
    "amount_change",
    "duplicate_record",
    "lists",
)


def scope_sentence(rv: Review) -> str:
    """One paragraph saying which deals the review covers."""
    if rv.dated:
        s = (
            f"Deals closed in **{rv.review.label}** ({rv.review.start:%Y-%m-%d} to {rv.review.as_of:%Y-%m-%d}), "
            f"compared with **{rv.comparison.label}**."
        )
    else:
        s = (
            "The data has **no close dates**: the review covers every closed record "
            f"({rv.closed:,}) and has no trend or comparison."
        )
    if rv.min_deals > 1:
        s += f" Groups with fewer than {rv.min_deals} closed deals are pooled into “{other_label(rv.min_deals)}”."
    if rv.undated:
        s += (
            f" {rv.undated:,} closed deal{' has' if rv.undated == 1 else 's have'} no close date and cannot be "
            "placed in any window."
        )
    if len(rv.duplicates):
        s += f" {len(rv.duplicates):,} duplicate record(s) are left out (listed under data quality)."
    return s


def overall_table(rv: Review) -> pd.DataFrame:
    """Review and comparison windows, one row each, reader columns."""
    t = pd.concat(
        [
            rv.overall.assign(group=rv.review.label if rv.dated else "All records"),
            rv.overall_comparison.assign(group=rv.comparison.label),
        ]
        if rv.dated
        else [rv.overall.assign(group="All records")],
        ignore_index=True,
    )
    return rates_display(t, rv.has_amounts, first="Window")


def rates_display(t: pd.DataFrame, with_value: bool = True, first: str = "Group") -> pd.DataFrame:
    """Reader columns for a win rates table (``winloss.pooled_rates``) (show with pct=Win rate, 95% low/high, Win rate by value;
    ints=Deals, Won; money=Won amount, Closed amount)."""
    out = pd.DataFrame(
        {
            first: t["group"],
            "Deals": t["deals"],
            "Won": t["won"],
            "Win rate": t["win_rate"],
            "95% low": t["ci_low"],
            "95% high": t["ci_high"],
        }
    )
    if with_value:
        out["Win rate by value"] = t["value_win_rate"]
        out["Won amount"] = t["won_amount"]
        out["Closed amount"] = t["closed_amount"]
    if "groups_pooled" in t.columns and (t["groups_pooled"] > 1).any():
        out["Groups pooled"] = (
            t["groups_pooled"].where(t["groups_pooled"] > 1).astype("Int64").astype(str).replace("<NA>", "")
        )
    return out


RATE_FORMATS = dict(
    pct=["Win rate", "95% low", "95% high", "Win rate by value"],
    ints=["Deals", "Won"],
    money=["Won amount", "Closed amount"],
)


def reasons_display(t: pd.DataFrame, by: str = "count", with_value: bool = True) -> pd.DataFrame:
    """Reader columns for a loss reasons table (``winloss.ranked_reasons``) (amount columns only ``with_value``)."""
    cum = "Cumulative share of lost deals" if by == "count" else "Cumulative share of lost amount"
    out = pd.DataFrame({"Loss reason": t["reason"], "Lost deals": t["deals"], "Share of deals": t["share"]})
    if with_value:
        out["Lost amount"] = t["lost_amount"]
        out["Share of amount"] = t["amount_share"]
    out[cum] = t["cum_share"]
    return out


def side_display(side: pd.DataFrame, currency: str = "USD") -> pd.DataFrame:
    """Won and lost side by side (``winloss.side_table``) with formatted values (by unit) and the deals behind each side."""

    def fmt(v, unit):
        if unit == "number":
            return "n/a" if pd.isna(v) else f"{v:,.1f}"
        return fmt_value(v, unit, currency)

    rows = side[side["needs"].eq("")]
    return pd.DataFrame(
        {
            "Measure": rows["metric"],
            "Won": [fmt(v, u) for v, u in zip(rows["Won"], rows["unit"], strict=True)],
            "Lost": [fmt(v, u) for v, u in zip(rows["Lost"], rows["unit"], strict=True)],
            "Won deals with data": rows["won_n"],
            "Lost deals with data": rows["lost_n"],
        }
    )


def side_needs(side: pd.DataFrame) -> list[str]:
    """Sentences for the side-by-side measures that could not be computed."""
    rows = side[side["needs"].ne("")]
    return [f"{m} needs {n}." for m, n in zip(rows["metric"], rows["needs"], strict=True)]


def list_display(t: pd.DataFrame, kind: str) -> pd.DataFrame:
    """Reader columns for a ``top_deals`` list (kind Won, Lost or Open); empty columns dropped."""
    cols = {
        "opportunity_id": "Opportunity",
        "account": "Account",
        "rep": "Owner",
        "amount": "Amount",
        "stage": "Stage",
        "close_date": "Expected close" if kind == "Open" else "Closed",
        "cycle_days": "Age (days)" if kind == "Open" else "Cycle (days)",
        "reason": {"Lost": "Loss reason", "Open": "Next step"}.get(kind, "reason"),
        "competitor": "Competitor",
    }
    keep = [c for c in cols if c in t.columns and (t[c].notna().any() or c == "opportunity_id")]
    if kind != "Open":
        keep = [c for c in keep if c != "stage"]
    return t[keep].rename(columns=cols)


def duplicates_display(t: pd.DataFrame) -> pd.DataFrame:
    return t.rename(
        columns={
            "opportunity_id": "Opportunity",
            "duplicate_of": "Duplicate of",
            "account": "Account",
            "owner": "Owner",
            "stage": "Stage",
            "amount": "Amount",
            "close_date": "Closed",
        }
    )


def churn_display(t: pd.DataFrame) -> pd.DataFrame:
    out = t.rename(
        columns={
            "account": "Account",
            "churn_date": "Churned",
            "lost_amount": "Lost amount",
            "reason": "Reason",
            "owner": "Owner (latest won deal)",
            "customer_days": "Customer for (days)",
        }
    )
    return out[[c for c in out.columns if out[c].notna().any() or c in ("Account", "Lost amount")]]


def review(
    ctx,
    review_window: str = "month",
    comparison_period: str = "",
    min_deals: int = 5,
    as_of=None,
    figures_only: bool = False,
):
    """The win/loss review of the report's period (or of the month ending at an earlier ``as_of``), asked of
    the opportunities where they live (``ReportContext.source``): only what the sections show comes back
    (``figures_only``: what the headline figures read, ``winloss.build_review``)."""
    as_of = ctx.as_of if as_of is None else pd.Timestamp(as_of)
    period = ctx.period if as_of == ctx.as_of else f"{as_of:%Y-%m}"
    return wl.build_review(
        ctx.ds,
        period,
        as_of,
        ctx.cal,
        review_window,
        comparison_period,
        int(min_deals),
        currency_symbol=symbol(ctx.currency),
        activities=ctx.activities,
        missing=ctx.missing,
        history=ctx.source("opportunity_history")
        if ctx.ds.files and ctx.has("opportunity_history")
        else None,
        opportunities=ctx.source("opportunities"),
        engine=ctx.eng if ctx.ds.files else None,
        figures_only=figures_only,
        churn=ctx.source("churn") if "churn" not in ctx.ds.tables else None,
    )


def save_headlines(
    ctx, summary_path: str, review_window: str = "month", comparison_period: str = "", min_deals: int = 5
) -> None:
    """Save the headline figures for the report run (nothing in interactive use), with the review's figures at
    the previous month's end (the review of that month, from the same data) for the change since last month."""
    if not summary_path:
        return
    before = previous_month_end(ctx.as_of)
    first = wl.first_close(ctx.source("opportunities"))
    if first is not None and before >= first:
        prev = review(ctx, review_window, comparison_period, min_deals, as_of=before, figures_only=True)
        ctx.headlines.add_previous(before, prev.headlines, has_history=False)
    ctx.headlines.save(summary_path)
