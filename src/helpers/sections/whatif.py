"""The quota plan as one pure function, and the live what-if panel over it.

``prepare_plan_data(ds, as_of, fiscal_year)`` does once what does not depend on the what-if inputs
(history, seasonality, roster, resampled months for the simulation). ``compute_plan(inputs, data)``
turns inputs (growth, over-assignment, seasonality on/off, hires, ramp, target share…) into a
``PlanResult``: target, monthly/quarterly/team plan, rep quotas, reconciliation, capacity check and
realism simulation. The quota notebook and the explorer both call it, so their numbers agree.
``WhatIfPanel`` is a thin ipywidgets layer: controls update on release and redraw an Output widget.
"""

from __future__ import annotations

import html
import time
from dataclasses import replace

import numpy as np
import pandas as pd

from helpers.data import escape
from helpers.metrics import quota as Q
from helpers.metrics.plan import (  # noqa: F401  (the plan API, used through this module by the notebooks)
    PlanData,
    PlanInputs,
    PlanResult,
    compute_plan,
    funnel_table,
    prepare_plan_data,
    proposed_quotas,
    sdr_plan,
)
from helpers.metrics.registry import Point, metric

REALISM = "Is the plan realistic?"  # the quota report's section its "what to look at" points mostly refer to


def plan_params(i: PlanInputs) -> dict:
    """The inputs the quota figures' registry labels and definitions name ({target_share:.0%}, …)."""
    lo, hi = i.realistic_band
    return {
        "target_share": i.target_share,
        "realistic_low": lo,
        "realistic_high": hi,
        "out_of_reach": i.out_of_reach,
        "too_easy": i.too_easy,
        "ote_min": i.ote_multiple_min,
        "ote_max": i.ote_multiple_max,
    }


def summary_html(res: PlanResult, currency: str = "USD") -> str:
    """The headline line of the explorer (also what the browser test reads): registry figures, each card
    labelled by the registry (``data-key`` = the registry key) with its definition as a tooltip."""
    from helpers.sections.display import TABLE_CSS, fmt_money, fmt_pct

    def m(x):
        return fmt_money(x, currency)

    params = plan_params(res.inputs)
    over = f" ({res.sum_of_quotas / res.target - 1:+.0%})" if res.target else ""
    hires = int((res.reps["status"] == "planned hire").sum())
    items = [
        ("quota_company_target", m(res.target)),
        ("quota_sum_of_rep_quotas", m(res.sum_of_quotas) + over),
        ("quota_reps", f"{len(res.reps) - hires}" + (f" + {hires} planned hires" if hires else "")),
        (
            "quota_expected_share_at_quota",
            f"{fmt_pct(res.expected_share)} — {'realistic' if res.realistic else 'not realistic'}",
        ),
        ("quota_level_multiple", f"{res.quota_level:.2f}× ({m(res.quota_level_total)})"),
        ("quota_reps_out_of_reach", f"{len(res.out_of_reach)} (too easy: {len(res.too_easy)})"),
    ]
    cells = "".join(
        f'<div class="rv-card" title="{html.escape(metric(k).render_definition(params))}">'
        f'<div class="l">{html.escape(metric(k).render_label(params=params))}</div>'
        f'<div class="v" data-key="{k}">{html.escape(v)}</div></div>'
        for k, v in items
    )
    return f'{TABLE_CSS}<div class="rv-cards rv-whatif-summary">{cells}</div>'


def attainment_figure(res: PlanResult):
    """Histogram of the share of reps at quota over the simulated years, with the realistic band."""
    from helpers.sections import plots

    fig, ax = plots.new_figure(8, 3.2)
    draws = res.attainment.share_by_draw
    n_reps = int((res.reps["quota"] > 0).sum())
    bins = np.linspace(0, 1, min(n_reps, 40) + 2) if n_reps else 10
    ax.hist(draws, bins=bins, color=plots.OPEN, alpha=0.85)
    lo, hi = res.inputs.realistic_band
    ax.axvspan(lo, hi, color=plots.WON, alpha=0.15, label=f"realistic {lo:.0%}–{hi:.0%}")
    ax.axvline(res.expected_share, color=plots.LOST, lw=2, label=f"expected {res.expected_share:.0%}")
    plots.percent_axis(ax, "x")
    ax.legend(loc="upper left", frameon=False)
    return fig, ax


class WhatIfPanel:
    """Sliders over ``compute_plan``; recompute on release (``continuous_update=False``)."""

    def __init__(
        self, data: PlanData, inputs: PlanInputs | None = None, show_details: bool = True, max_rows: int = 40
    ):
        import ipywidgets as W

        self.data = data
        self.max_rows = max_rows
        self.base = inputs or PlanInputs()
        self.show_details = show_details
        b = self.base
        # usable on a 390 px phone: every control takes the width it is given (at most 460 px), its label
        # a fixed column wide enough for the longest one, the two columns of controls wrap under each other
        style = {"description_width": "150px"}
        lay = W.Layout(width="100%", max_width="460px")
        ramp_len = len(b.ramp_schedule)
        laid = {"style": style, "layout": lay}
        slider = {"continuous_update": False, **laid}  # recompute on release
        percent = {"readout_format": ".0%", **slider}
        self.controls = {
            "growth_rate": W.FloatSlider(
                value=b.growth_rate, min=-0.2, max=1.0, step=0.01, description="Growth", **percent
            ),
            "over_assignment": W.FloatSlider(
                value=b.over_assignment, min=0.0, max=0.5, step=0.01, description="Over-assignment", **percent
            ),
            "seasonal": W.Checkbox(
                value=b.seasonal, description="Seasonal monthly split", indent=False, layout=lay
            ),
            "hire_month_in_quarter": W.Dropdown(
                options=[("1st month", 1), ("2nd month", 2), ("3rd month", 3)],
                value=b.hire_month_in_quarter,
                description="Hires start in",
                **laid,
            ),
            "ramp_months": W.IntSlider(
                value=ramp_len, min=0, max=12, description="Ramp length (months)", **slider
            ),
            "target_share": W.FloatSlider(
                value=b.target_share,
                min=0.5,
                max=0.95,
                step=0.05,
                description="Target share at quota",
                **percent,
            ),
        }
        for q in range(4):
            self.controls[f"hires_q{q + 1}"] = W.IntSlider(
                value=b.hires_per_quarter[q], min=0, max=10, description=f"Hires in Q{q + 1}", **slider
            )
        if data.configured_target is not None:
            self.controls["use_dataset_target"] = W.Checkbox(
                value=b.use_dataset_target,
                indent=False,
                description=f"Use the dataset.yml target for FY{data.fiscal_year} (growth slider then idle)",
                layout=lay,
            )
        self.summary = W.HTML()
        self.timing = W.HTML()
        self.output = W.Output()
        for w in self.controls.values():
            w.observe(self._on_change, names="value")
        c = self.controls
        column = W.Layout(flex="1 1 320px", min_width="0", max_width="480px")
        left = W.VBox(
            [c["growth_rate"], c["over_assignment"], c["target_share"], c["ramp_months"], c["seasonal"]]
            + ([c["use_dataset_target"]] if "use_dataset_target" in c else []),
            layout=column,
        )
        right = W.VBox([c[f"hires_q{q}"] for q in range(1, 5)] + [c["hire_month_in_quarter"]], layout=column)
        self.widget = W.VBox(
            [
                W.HTML(f"<b>Quota plan FY{data.fiscal_year} — what if…</b>"),
                W.HBox([left, right], layout=W.Layout(flex_flow="row wrap", width="100%")),
                self.summary,
                self.timing,
                self.output,
            ]
        )
        self.result: PlanResult | None = None
        self.update()

    def inputs(self) -> PlanInputs:
        c = self.controls
        ramp = Q.linear_ramp(c["ramp_months"].value)
        same_ramp = c["ramp_months"].value == len(self.base.ramp_schedule)
        return replace(
            self.base,
            growth_rate=float(c["growth_rate"].value),
            over_assignment=float(c["over_assignment"].value),
            seasonal=bool(c["seasonal"].value),
            hires_per_quarter=tuple(int(c[f"hires_q{q}"].value) for q in range(1, 5)),
            hire_month_in_quarter=int(c["hire_month_in_quarter"].value),
            ramp_schedule=self.base.ramp_schedule if same_ramp else ramp,
            use_rep_ramp=self.base.use_rep_ramp and same_ramp,
            target_share=float(c["target_share"].value),
            use_dataset_target=bool(c["use_dataset_target"].value) if "use_dataset_target" in c else False,
        )

    def _on_change(self, _change) -> None:
        self.update()

    def update(self) -> PlanResult:
        t0 = time.perf_counter()
        self.result = compute_plan(self.inputs(), self.data)
        self.summary.value = summary_html(self.result, self.data.currency)
        if self.show_details:
            self._draw()
        self.seconds = time.perf_counter() - t0
        self.timing.value = (
            f"<small>computed in {self.result.seconds * 1000:,.0f} ms, shown in "
            f"{self.seconds * 1000:,.0f} ms</small>"
        )
        return self.result

    def _draw(self) -> None:
        from helpers.sections import plots
        from helpers.sections.display import show_table

        res, cur = self.result, self.data.currency
        with self.output:
            self.output.clear_output(wait=True)
            fig, ax = attainment_figure(res)
            plots.finish(
                fig,
                ax,
                "Share of reps at quota across simulated years",
                "Share of reps at quota",
                "Simulated years",
            )
            show_table(
                res.quarterly.rename(columns={"rep_quotas": "rep quotas"}),
                money=["target", "rep quotas"],
                pct=["share"],
                currency=cur,
                caption="Company target and rep quotas by quarter",
            )
            cols = [
                "name",
                "team",
                "status",
                "capacity",
                "quota",
                "supported_quota",
                "ote_multiple",
                "p_attain",
                "verdict",
            ]
            n = len(res.reps)
            names = {
                "supported_quota": "supported by history",
                "ote_multiple": "quota ÷ OTE",
                "p_attain": "P(reach quota)",
            }
            show_table(
                res.reps[cols].sort_values("p_attain").rename(columns=names),
                money=["quota", "supported by history"],
                pct=["P(reach quota)"],
                ratio=["quota ÷ OTE"],
                decimals=["capacity"],
                currency=cur,
                max_rows=self.max_rows,
                caption="Rep quotas, lowest chance of attaining first"
                + (f" ({self.max_rows} of {n} shown)" if n > self.max_rows else ""),
            )


# --------------------------------------------------------------------------------------------------
# notebook helpers: funnel, SDR plan, headline figures, the points to look at, charts
# --------------------------------------------------------------------------------------------------
# the reverse funnel's chain (quota → deals → opportunities → meetings → calls): the rates each figure uses
FUNNEL_CHAIN = {
    "deals": ("avg_deal_size",),
    "opportunities": ("avg_deal_size", "win_rate"),
    "meetings": ("avg_deal_size", "win_rate", "meeting_to_opportunity"),
    "calls": ("avg_deal_size", "win_rate", "meeting_to_opportunity", "call_to_meeting"),
}
BENCHMARK_WORDS = {
    "win_rate": lambda x: f"a {x:.0%} win rate",
    "meeting_to_opportunity": lambda x: f"{x:g} opportunities per meeting",
    "call_to_meeting": lambda x: f"{1 / x:.0f} calls per meeting",
}


def benchmarks_used(rates, figure: str = "calls") -> str:
    """'' when every rate behind ``figure`` (a column of the reverse funnel) is measured; else what the
    built-in benchmark supplied, e.g. "built-in benchmark: 20 calls per meeting (the data has none to
    measure)"."""
    if rates is None:
        return ""
    src = dict(rates.sources)
    used = [
        BENCHMARK_WORDS[k](getattr(rates, k))
        for k in FUNNEL_CHAIN[figure]
        if src.get(k) == "benchmark" and k in BENCHMARK_WORDS
    ]
    return f"built-in benchmark: {', '.join(used)} (the data has none to measure)" if used else ""


def add_headlines(h, res: PlanResult, funnel: pd.DataFrame | None = None, rates=None) -> None:
    """The quota plan's headline figures (registry entries ``quota_*``) into ``Headlines`` ``h``; a reverse
    funnel figure resting on a built-in benchmark (``rates.sources``) says so in its label."""
    i = res.inputs
    plan = f"FY{res.fiscal_year} plan"
    params = plan_params(i)
    outside = res.reps["ote_flag"].isin([f"below {i.ote_multiple_min:g}×", f"above {i.ote_multiple_max:g}×"])
    figs = [
        ("quota_fiscal_year", f"FY{res.fiscal_year}", None),
        ("quota_basis_bookings", res.basis.bookings, res.basis.window),
        ("quota_company_target", res.target, plan),
        ("quota_sum_of_rep_quotas", res.sum_of_quotas, plan),
        ("quota_over_assignment", res.sum_of_quotas / res.target - 1 if res.target else None, plan),
        ("quota_reps", int((res.reps["status"] != "planned hire").sum()), plan),
        ("quota_planned_hires", int((res.reps["status"] == "planned hire").sum()), plan),
        ("quota_expected_share_at_quota", res.expected_share, plan),
        ("quota_realistic", "yes" if res.realistic else "no", plan),
        ("quota_level_multiple", res.quota_level, plan),
        ("quota_level_total", res.quota_level_total, plan),
        ("quota_level_target", res.quota_level_target, plan),
        ("quota_reps_needed", res.reps_needed, plan),
        ("quota_reps_out_of_reach", len(res.out_of_reach), plan),
        ("quota_reps_too_easy", len(res.too_easy), plan),
        ("quota_reps_outside_ote_band", int(outside.sum()), plan),
        ("quota_supported_total", float(res.reps["supported_quota"].sum()), plan),
        ("quota_attrition_loss", res.attrition_loss, plan),
    ]
    if funnel is not None and len(funnel):
        med = funnel.median(numeric_only=True)
        figs += [
            (f"quota_{c}_per_rep_month", med[c], plan, benchmarks_used(rates, c) or None)
            for c in ("deals", "opportunities", "meetings", "calls")
        ]
    for key, value, window, *base in figs:
        h.add(key, value, window, base[0] if base else None, params=params)
    h.lead(
        [
            "quota_fiscal_year",
            "quota_company_target",
            "quota_sum_of_rep_quotas",
            "quota_expected_share_at_quota",
            "quota_realistic",
            "quota_level_total",
        ]
    )


def realism_story(res: PlanResult, currency: str = "USD", alternative: PlanResult | None = None) -> list[str]:
    """Why the realism check says what it says, in a VP's words, and the levers that would make the plan
    realistic — every number from the plan (``res``) and the history-weighted alternative."""
    from helpers.sections.display import fmt_money

    def m(x):
        return fmt_money(x, currency, compact=True)

    i, r = res.inputs, res.reps
    n = len(r)
    basis = res.basis.bookings
    out = []
    if basis > 0:
        above = res.sum_of_quotas / basis - 1
        out.append(
            f"The rep quotas add up to {m(res.sum_of_quotas)}: {above:+.0%} on the {m(basis)} the team booked in "
            f"the basis period ({res.basis.window.split(' (')[0]}), from {i.growth_rate:.0%} growth and "
            f"{i.over_assignment:.0%} over-assignment. "
            f"Only {int((r['supported_quota'] >= r['quota']).sum())} of {n} reps have a history that supports "
            f"their quota ({m(r['supported_quota'].sum())} supported in all)."
        )
    sup = r["supported_quota"]
    if n >= 4 and sup.notna().any():
        out.append(
            f"For {i.target_share:.0%} of reps to reach quota, each quota has to sit where a rep's weaker simulated "
            f"years still clear it, and these reps' outcomes are spread wide (their histories support from "
            f"{m(sup.min())} to {m(sup.max())} a year). That is why the level {i.target_share:.0%} of reps reach "
            f"({m(res.quota_level_total)} in quotas) sits below what the team booked in total ({m(basis)}), most "
            f"of which the strongest reps carry."
        )
    ramping = int(r["status"].isin(["ramping", "planned hire"]).sum())
    if ramping:
        out.append(
            f"{ramping} of {n} reps ramp during the plan year, so their quotas start low and their odds too."
        )
    if not res.realistic:
        levers = [f"a company target of about {m(res.quota_level_target)} with today's team"]
        if res.reps_needed and res.reps_needed > n:
            levers.append(f"about {res.reps_needed} reps at that quota level ({n} today)")
        if alternative is not None and alternative.expected_share >= res.expected_share + 0.05:
            levers.append(
                f"quotas weighted by each rep's own history ({alternative.expected_share:.0%} would reach them)"
            )
        out.append(
            "What would make the plan realistic: " + "; or ".join(levers) + ". Or keep the target as a "
            "stretch and say so to the team."
        )
    return out


def points(
    res: PlanResult,
    currency: str,
    funnel: pd.DataFrame | None = None,
    alternative: PlanResult | None = None,
    rates=None,
) -> list[Point]:
    """The short 'what to look at' list, with the numbers (each point names its section of the quota report);
    a figure resting on a built-in benchmark (``rates.sources``) says so."""
    from helpers.sections.display import fmt_money

    def m(x):
        return fmt_money(x, currency, compact=True)

    i = res.inputs
    src = (
        f"{res.basis.label} {m(res.basis.bookings)} + {i.growth_rate:.0%} growth"
        if res.target_source == "growth"
        else "the dataset.yml target"
    )
    out = [
        Point(
            f"**Target FY{res.fiscal_year}: {m(res.target)}** ({src}); rep quotas sum to {m(res.sum_of_quotas)} "
            f"({res.sum_of_quotas / res.target - 1:+.0%} over-assignment) across {len(res.reps)} reps.",
            "Top-down plan",
            "info",
            ("quota_company_target", "quota_sum_of_rep_quotas"),
        )
    ]
    lo, hi = i.realistic_band
    verdict = "realistic" if res.realistic else f"**not realistic** (aim for {lo:.0%}–{hi:.0%})"
    out.append(
        Point(
            f"Expected share of reps at quota: **{res.expected_share:.0%}** — {verdict}. "
            f"{i.target_share:.0%} of reps would attain at {res.quota_level:.2f}× these quotas "
            f"(sum {m(res.quota_level_total)}).",
            REALISM,
            "info" if res.realistic else "bad",
            ("quota_expected_share_at_quota", "quota_level_total"),
        )
    )
    if res.out_of_reach or res.too_easy:
        names = ", ".join(escape.markdown(n) for n in res.out_of_reach[:6]) + (
            " …" if len(res.out_of_reach) > 6 else ""
        )
        n = len(res.out_of_reach)
        out.append(
            Point(
                f"{n} rep{'' if n == 1 else 's'} out of reach (P < {i.out_of_reach:.0%})"
                + (f": {names}" if names else "")
                + f"; {len(res.too_easy)} too easy (P > {i.too_easy:.0%}).",
                REALISM,
                "watch",
                ("quota_reps_out_of_reach", "quota_reps_too_easy"),
            )
        )
    flagged = int(res.reps["ote_flag"].str.startswith(("below", "above")).sum())
    if flagged:
        out.append(
            Point(
                f"{flagged} rep{' has' if flagged == 1 else 's have'} a quota outside "
                f"{i.ote_multiple_min:g}–{i.ote_multiple_max:g}× their OTE.",
                "Capacity check",
                "watch",
                ("quota_reps_outside_ote_band",),
            )
        )
    if alternative is not None:
        out.append(
            Point(
                f"Weighting quotas by each rep's own history instead of territory would put "
                f"{alternative.expected_share:.0%} of reps at quota.",
                REALISM,
            )
        )
    if funnel is not None and len(funnel):
        med = funnel.median(numeric_only=True)
        out.append(
            Point(
                f"A median rep at full ramp needs about {med['deals']:.1f} deals, {med['opportunities']:.0f} "
                f"opportunities, {med['meetings']:.0f} meetings and {med['calls']:.0f} calls a month"
                + (f" ({bench})." if (bench := benchmarks_used(rates, "calls")) else "."),
                "Reverse funnel: the activity a quota needs",
                "info",
                ("quota_deals_per_rep_month", "quota_calls_per_rep_month"),
            )
        )
    return out


def plot_monthly_plan(res: PlanResult, currency: str = "USD") -> None:
    from helpers.sections import plots
    from helpers.sections.display import symbol

    fig, ax = plots.new_figure(9, 3.8)
    labels = res.monthly["month"].dt.strftime("%b %y")
    x = np.arange(12)
    ax.bar(x - 0.2, res.monthly["target"], width=0.4, color=plots.OPEN, label="company target")
    ax.bar(x + 0.2, res.monthly["rep_quotas"], width=0.4, color=plots.HIGHLIGHT, label="sum of rep quotas")
    ax.set_xticks(x, labels)
    plots.money_axis(ax, symbol(currency).strip())
    ax.legend(frameon=False, loc="upper left")
    split = "seasonal split from history" if res.inputs.seasonal else "flat split"
    plots.finish(
        fig, ax, f"FY{res.fiscal_year} target and rep quotas by month ({split})", "Month", "Bookings"
    )


CHART_MAX_REPS = 40  # per-rep bar charts beyond this show the lowest and highest 20 (a 770-bar chart is
#                     unreadable and costs ~3 s of rendering per chart)


def chart_reps(reps: pd.DataFrame, title: str) -> tuple[pd.DataFrame, str]:
    """``reps`` (sorted ascending) and ``title`` as they are; above ``CHART_MAX_REPS`` rows the lowest and
    highest ``CHART_MAX_REPS // 2`` with the title saying so (the tables keep every rep)."""
    if len(reps) <= CHART_MAX_REPS:
        return reps, title
    k = CHART_MAX_REPS // 2
    return (
        pd.concat([reps.head(k), reps.tail(k)]),
        f"{title} — lowest and highest {k} of {len(reps):,} reps",
    )


def plot_rep_quotas(res: PlanResult, currency: str = "USD") -> None:
    from helpers.sections import plots
    from helpers.sections.display import symbol

    reps, title = chart_reps(
        res.reps.sort_values("quota"), "Proposed quota vs the quota each rep's history supports"
    )
    fig, ax = plots.new_figure(9, max(3.0, 0.24 * len(reps) + 1))
    y = np.arange(len(reps))
    ax.barh(y + 0.2, reps["quota"], height=0.4, color=plots.OPEN, label="proposed quota")
    ax.barh(y - 0.2, reps["supported_quota"], height=0.4, color=plots.NEUTRAL, label="supported by history")
    ax.set_yticks(y, reps["name"])
    plots.money_axis(ax, symbol(currency).strip(), axis="x")
    ax.legend(frameon=False, loc="lower right")
    plots.finish(fig, ax, title, "Annual quota", "Rep")


def plot_ote_multiples(res: PlanResult) -> None:
    from helpers.sections import plots

    reps, title = chart_reps(
        res.reps.dropna(subset=["ote_multiple"]).sort_values("ote_multiple"),
        "Quota as a multiple of on-target earnings (full year, full ramp)",
    )
    lo, hi = res.inputs.ote_multiple_min, res.inputs.ote_multiple_max
    fig, ax = plots.new_figure(9, max(3.0, 0.24 * len(reps) + 1))
    colors = [plots.LOST if f.startswith(("below", "above")) else plots.WON for f in reps["ote_flag"]]
    ax.barh(np.arange(len(reps)), reps["ote_multiple"], color=colors)
    ax.axvspan(lo, hi, color=plots.NEUTRAL, alpha=0.15, label=f"{lo:g}–{hi:g}× band", zorder=0)
    ax.set_yticks(np.arange(len(reps)), reps["name"])
    ax.legend(frameon=False, loc="lower right")
    plots.finish(fig, ax, title, "Quota ÷ OTE", "Rep")


def plot_attainment_distribution(res: PlanResult) -> None:
    from helpers.sections import plots

    fig, ax = attainment_figure(res)
    plots.finish(
        fig,
        ax,
        f"Share of reps at quota across {len(res.attainment.share_by_draw):,} simulated years",
        "Share of reps at quota",
        "Simulated years",
    )


def plot_p_attain(res: PlanResult) -> None:
    from helpers.sections import plots

    reps, title = chart_reps(
        res.reps.dropna(subset=["p_attain"]).sort_values("p_attain"),
        "Each rep's probability of reaching quota (red: out of reach, yellow: too easy)",
    )
    colors = [
        plots.LOST if v == "out of reach" else plots.HIGHLIGHT if v == "too easy" else plots.OPEN
        for v in reps["verdict"]
    ]
    fig, ax = plots.new_figure(9, max(3.0, 0.24 * len(reps) + 1))
    ax.barh(np.arange(len(reps)), reps["p_attain"], color=colors)
    ax.axvline(res.inputs.out_of_reach, color=plots.LOST, lw=1, ls="--")
    ax.axvline(res.inputs.too_easy, color=plots.HIGHLIGHT, lw=1, ls="--")
    ax.set_yticks(np.arange(len(reps)), reps["name"])
    ax.set_xlim(0, 1)
    plots.percent_axis(ax, "x")
    plots.finish(fig, ax, title, "Probability of reaching quota", "Rep")
