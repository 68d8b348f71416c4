"""The sections of the pipeline health report (and of a rep's one-to-one review pack).

``prepare(ctx, ...)`` scopes the dataset (company, a team, a rep) and measures what several sections share
(headline figures, stage win rates, days-in-stage benchmark, stalled and slipped deals, coverage by rep);
each ``show_*`` function renders one notebook cell's tables and charts through ``helpers.sections.display`` and
``helpers.sections.plots`` and adds its headline figures to ``ctx.headlines``. Every number comes from
``helpers.metrics.pipeline`` and ``helpers.metrics.history``; this module only chooses windows and displays.

The notebook keeps one cell per ``show_*`` call so its cell tags (``email-chart``, ``analysis-only``)
still select what the e-mail and the review packs show; review packs drop the ``analysis-only`` cells
before running, so those functions only read the prepared state.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field

import pandas as pd
import seaborn as sns
from IPython.display import HTML, display

from helpers.data import escape
from helpers.data.calendar import month_name, trailing_window
from helpers.metrics import history as hi
from helpers.metrics import pipeline as pl
from helpers.metrics.expr import within
from helpers.metrics.registry import Fig, Point
from helpers.sections import plots
from helpers.sections import review_pack as reviews
from helpers.sections.display import (
    count_noun,
    definitions,
    fmt_money,
    fmt_pct,
    fold_table,
    markdown,
    note,
    show_table,
    symbol,
    what_to_look_at,
    write_list_csv,
)
from helpers.sections.summary import previous_month_end

PLAN_MONEY = ["bookings", "plan", "plan_to_date", "pace", "still_to_close"]
PLAN_PCT = ["attainment", "attainment_to_date", "pace_attainment"]
COVERAGE_FORMATS = dict(
    money=["plan", "bookings", "remaining", "open_in_period"], ratio=["coverage"], ints=["open_deals"]
)
DEAL_INTS = ["age_days", "days_to_close", "days_since_activity"]
# the headline figures that need no amount: counts, days, plans and the win rate by count; without
# opportunities.amount every other figure is left out (null in summary.json) rather than shown as 0
NO_AMOUNT_FIGURES = {
    "open_deals",
    "coverage_threshold",
    "days_left_qtd",
    "win_rate_count_12m",
    "avg_cycle_days",
    "past_due_deals",
    "no_next_step_deals",
    "slipped_deals_qtd",
    "stalled_deals",
    "plan_mtd",
    "plan_qtd",
    "plan_ytd",
    "target_fy",
}


@dataclass
class PipelineView:
    """What the sections of the pipeline health report share: the scoped tables, windows and the
    measurements made once for the headline figures."""

    ctx: object
    sc: pl.Scoped
    review_mode: bool
    W: dict
    NQ: object
    figs: dict = field(default_factory=dict)
    THR: float = 0.0
    NO_HISTORY: str | None = None
    # ds.missing's sentence when the opportunities have no amounts (the sections that need them say so)
    NO_AMOUNTS: str | None = None
    has_history: bool = False  # opportunity_history with changed_at and stage
    # the company's deals and their history on the engine (``helpers.metrics.history``), and per deal
    # the stages it reached (an engine expression)
    deals_all: object = None
    reached_all: object = None
    rate_map: pd.Series | None = None
    bench: pd.DataFrame | None = None
    stalled: pd.DataFrame | None = None  # the stalled deals listed (None when marked or counted)
    # every prepare but figures_only's: how many deals are stalled, per stage, and the working set's
    # stalled deals' ids (from ``stalled`` or, on an engine out of process, marked on the working set)
    n_stalled: int = 0
    stalled_per_stage: pd.Series | None = None
    stalled_ids: pd.Series | None = None
    slipped: hi.Slipped | None = None  # the QTD's slipped deals (``history.slipped_summary``)
    focus: object = None
    cov_rep: pd.DataFrame | None = None
    args: dict = field(default_factory=dict)  # prepare's parameters, to measure again at another date

    @property
    def cfg(self):
        return self.ctx.ds.config

    @property
    def cal(self):
        return self.ctx.cal

    @property
    def A(self) -> pd.Timestamp:
        return self.ctx.as_of

    @property
    def cur(self) -> str:
        return self.ctx.currency


def prepare(
    ctx,
    scope: str = "company",
    who: str = "",
    quotas_path: str = "",
    coverage_threshold: float = 3.0,
    stalled_days: int = 0,
    review_mode: bool = False,
    reuse: PipelineView | None = None,
    figures_only: bool = False,
) -> PipelineView:
    """Scope the dataset and measure the headline figures, stalled and slipped deals and coverage by rep
    (displays nothing). ``reuse``: a view of the same dataset whose measurements that do not depend on
    the as-of date (the normalized history, stages reached, stage win rates) are taken as they are.
    ``figures_only``: the headline figures alone (``figures_at``): the stalled and slipped deals are
    counted where they live, not listed (``stalled`` and ``slipped`` stay None), and there is no
    coverage by rep."""
    cfg, cal, A = ctx.ds.config, ctx.cal, ctx.as_of
    # without amounts an empty amount counts as 0 in every measure (``pl.working_set``): the counts, days
    # and rates run; what sums amounts is left out below (figures) and by each section (``needs_amounts``)
    no_amounts = ctx.missing("opportunities", "amount", section="This section")
    no_history = ctx.missing("opportunity_history", "changed_at", "stage", section="This section")
    sc = pl.Scoped(
        ctx.ds,
        scope,
        who,
        pl.read_quotas(quotas_path) if quotas_path else None,
        as_of=A,
        activities=ctx.activities,
        leads=ctx.leads,
        engine=ctx.deals_engine,
        base=reuse.sc if reuse is not None and reuse.ctx.ds is ctx.ds else None,
        plan_at=(previous_month_end(A),) if reuse is None else (),
        week=review_mode,  # the week's closed and created deals: a review pack's changes
    )
    W = cal.windows(A)
    v = PipelineView(ctx=ctx, sc=sc, review_mode=review_mode, W=W, NQ=pl.next_quarter(cal, A))
    v.args = dict(
        scope=scope,
        who=who,
        quotas_path=quotas_path,
        coverage_threshold=coverage_threshold,
        stalled_days=stalled_days,
        review_mode=review_mode,
    )
    v.NO_AMOUNTS = no_amounts
    v.NO_HISTORY = no_history
    v.has_history = no_history is None
    marked = False
    if v.has_history:
        # the company's deals as they are now (the scope's when it is the company, not rewound)
        same_data = reuse is not None and reuse.ctx.ds is ctx.ds and reuse.deals_all is not None
        if same_data:
            v.deals_all = reuse.deals_all
        elif sc.scope == "company" and not sc.rewound:
            v.deals_all = sc.deals
        else:
            v.deals_all = hi.deals(ctx.deals_engine, None, ctx.ds.as_of, ctx.ds.as_of)
        eng = v.deals_all.eng
        # stage win rates (over the whole dataset, stable at rep scope) and days-in-stage benchmarks
        if same_data:
            v.reached_all, v.rate_map = reuse.reached_all, reuse.rate_map
        else:
            v.reached_all = hi.reached(v.deals_all, cfg)
            v.rate_map = hi.stage_win_rates(v.reached_all, eng, cfg).set_index("stage")["win_rate"]
        v.bench = hi.days_in_stage_benchmark(
            hi.stays(dataclasses.replace(v.deals_all, as_of=A), cfg), eng, cfg
        )
        visits = hi.stays(sc.deals, cfg)
        if figures_only:
            n_stalled = hi.stalled_count(visits, sc.deals, v.bench, stalled_days or None)
            n_slipped = hi.slipped_count(sc.deals, cfg, W["QTD"].start, A)
        else:
            rows = hi.stalled_rows(visits, sc.deals, v.bench, stalled_days or None)
            # out of process (PostgreSQL) the stalled deals are counted per stage where they live and
            # marked on the working set's rows (the attention list reads no more), not listed
            marked = ctx.deals_engine.name != "duckdb" and sc.mark("_stalled", rows)
            if marked:
                v.stalled_per_stage = hi.stalled_per_stage(rows, sc.deals)
                v.n_stalled = int(v.stalled_per_stage.sum())
            else:
                v.stalled = hi.stalled_deals(visits, sc.deals, v.bench, stalled_days or None)
            v.slipped = hi.slipped_summary(sc.deals, cfg, W["QTD"].start, A)
            n_slipped = v.slipped.count
    figs = pl.headline_figures(sc, cfg, cal, A, coverage_threshold, cfg.targets)
    v.THR = figs["coverage_threshold"].value
    if v.has_history:
        wph = pl.weighted_pipeline(sc.opps, cfg, v.rate_map)
        figs["weighted_pipeline_hist"] = Fig(
            "weighted_pipeline_hist", wph["weighted_hist"].sum(), f"at {A:%Y-%m-%d}"
        )
        figs["slipped_deals_qtd"] = Fig("slipped_deals_qtd", n_slipped, W["QTD"].to_date_text)
    else:
        stalled = pl.stalled_by_age(sc.table, A, open_deals=sc.opps)
        if stalled_days:
            stalled = stalled.assign(threshold_days=float(stalled_days))
            stalled = stalled[stalled["age_days"] > stalled_days]
        v.stalled = stalled
    if marked:
        v.stalled_ids = sc.opps.loc[sc.marks["_stalled"], "opportunity_id"]
    elif v.stalled is not None:
        v.n_stalled = n_stalled = len(v.stalled)
        v.stalled_per_stage = v.stalled.groupby("stage").size()
        v.stalled_ids = v.stalled["opportunity_id"]
    if not figures_only:
        n_stalled = v.n_stalled
    figs["stalled_deals"] = Fig("stalled_deals", n_stalled, f"at {A:%Y-%m-%d}")
    v.focus = W["QTD"] if pl.coverage_focus(figs["days_left_qtd"].value) == "qtd" else v.NQ
    if sc.scope != "rep" and sc.quotas is not None and not no_amounts and not figures_only:
        v.cov_rep = pl.coverage(sc.table, sc.quotas, v.focus, by="rep", threshold=v.THR)
    if no_amounts:
        figs = {k: f if k in NO_AMOUNT_FIGURES else Fig(k, None, f.window, f.base) for k, f in figs.items()}
    elif d := default_amounts(cfg):  # a figure from a default says so in its label
        for k in ("open_pipeline", "weighted_pipeline_crm", "weighted_pipeline_hist"):
            if k in figs:
                f = figs[k]
                base = f"{f.base}, {d['open']:,} at {d['value']}" if f.base else amounts_from_default(cfg)
                figs[k] = Fig(k, f.value, f.window, base, f.params)
    v.figs = figs
    return v


def figures_at(v: PipelineView, as_of) -> dict[str, Fig]:
    """The headline figures ``prepare`` measures, measured again at an earlier ``as_of`` with the same
    parameters (the deals rewound to that day: ``Scoped``); empty when the data starts after ``as_of``."""
    as_of = pd.Timestamp(as_of)
    o = v.ctx.deals_engine["opportunities"]
    dates = {c: o[c].min() for c in ("created_date", "close_date") if c in o.columns}
    got = v.ctx.deals_engine.execute(o.aggregate(**dates)).iloc[0] if dates else {}
    first = min((pd.Timestamp(x) for x in (got[c] for c in dates) if pd.notna(x)), default=pd.NaT)
    if pd.notna(first) and as_of < first:
        return {}
    then = prepare(dataclasses.replace(v.ctx, as_of=as_of), **v.args, reuse=v, figures_only=True)
    if then.sc.deals is not None and then.sc.deals is not v.deals_all:
        then.sc.deals.release()  # the rewound deals and their history: measured, not needed again
    return then.figs


def save_headlines(v: PipelineView, summary_path: str) -> None:
    """Save the headline figures for the report run (nothing in interactive use), with their values at the
    previous month's end rebuilt from the data, for the change since last month (not in review packs)."""
    if not summary_path:
        return
    if not v.review_mode:
        before = previous_month_end(v.A)
        v.ctx.headlines.add_previous(before, figures_at(v, before), has_history=v.has_history)
    v.ctx.headlines.save(summary_path)


def default_amounts(cfg) -> dict | None:
    """dataset.yml ``source.defaults["opportunities.amount"]`` (written by an import whose profile names a
    ``fallback``, e.g. the product's list price) when some open deals carry that default; else None."""
    src = cfg.source if isinstance(cfg.source, dict) else {}
    d = (src.get("defaults") or {}).get("opportunities.amount")
    return d if d and d.get("open") else None


def amounts_from_default(cfg) -> str | None:
    """How many open deals carry a default amount, as a phrase; None when none do."""
    d = default_amounts(cfg)
    if d is None:
        return None
    return f"{d['open']:,} of {d['open_of']:,} open deals at {d['value']}"


def needs_amounts(v: PipelineView, section: str) -> bool:
    """True (after a one-line note naming what is missing) when the data has no amounts: ``section`` is
    then left out."""
    if v.NO_AMOUNTS:
        note(v.NO_AMOUNTS.replace("This section", section))
    return bool(v.NO_AMOUNTS)


def _amounts_or_not(v: PipelineView, df: pd.DataFrame) -> pd.DataFrame:
    """``df`` without its (empty) amount column when the data has no amounts."""
    return df.drop(columns="amount", errors="ignore") if v.NO_AMOUNTS else df


def show_title(v: PipelineView) -> None:
    """The report's title line: scope, period, as-of, fiscal calendar, currency, plan source."""
    cal, A, W = v.cal, v.A, v.W
    title = "One-to-one review" if v.review_mode else "Pipeline health"
    markdown(
        f"# {title} — {escape.markdown(v.sc.label)} — {v.ctx.period}\n\n**{escape.markdown(v.cfg.name)}** · data as of **{A:%Y-%m-%d}** · "
        f"quarter {W['QTD'].label} ({W['QTD'].start:%Y-%m-%d} – {W['QTD'].end:%Y-%m-%d}) · fiscal year starts "
        f"in {month_name(cal.start_month)} · currency {v.cur} · plan from the "
        f"{v.sc.quota_source or 'company targets'}. "
        "Definitions follow each section."
    )


def show_headlines(v: PipelineView) -> None:
    """Add the headline figures to ``ctx.headlines``; show what to look at and the headline tiles."""
    ctx, figs, cov_rep = v.ctx, v.figs, v.cov_rep
    ctx.headlines.add_figs(figs)
    if v.NO_AMOUNTS:
        note(
            v.NO_AMOUNTS.replace(
                "This section", "Every figure in money (bookings, attainment, pipeline, coverage)"
            )
            + " Shown: counts, days and win rates by count.",
            warn=True,
        )
    if default := amounts_from_default(v.cfg):
        note(
            f"Amounts from a default: in the export, {default} (it records no deal value for them; set at import, "
            "see dataset.yml source.defaults). Open pipeline, weighted pipeline and coverage rest on those prices.",
            warn=True,
        )
    if v.sc.rewound and not v.has_history:
        note(
            f"The data was exported on {ctx.ds.as_of:%Y-%m-%d}; without `opportunity_history` the deals "
            f"cannot be rewound to {v.A:%Y-%m-%d}, so open pipeline and deal status are as exported (deals "
            "created later are left out).",
            warn=True,
        )
    what_to_look_at(
        look_at_points(
            figs,
            v.cur,
            {
                "stalled": v.n_stalled,
                "slipped": None if v.slipped is None else v.slipped.count,
                "reps_under_threshold": None if cov_rep is None else int(cov_rep["under_threshold"].sum()),
                "coverage_label": None if cov_rep is None else v.focus.label,
            },
        ),
        ctx.headlines,
    )
    ctx.headlines.show(headline_tiles(figs, bool(v.NO_AMOUNTS)), in_order=True)


def headline_tiles(figs: dict, no_amounts: bool = False) -> list[str]:
    """The figures the section's tiles show. The quarter's landing as "What to look at" says it: at the
    usual pace of the last four quarters where there is one, else on the straight line."""
    if no_amounts:
        return ["open_deals", "stalled_deals", "slipped_deals_qtd", "past_due_deals", "win_rate_count_12m"]
    return [
        "bookings_qtd",
        "attainment_to_date_qtd",
        "pace_usual_attainment_qtd" if "pace_usual_attainment_qtd" in figs else "pace_attainment_qtd",
        "bookings_ytd",
        "attainment_to_date_ytd",
        "open_pipeline",
        "weighted_pipeline_crm",
        "weighted_pipeline_hist",
        f"coverage_{pl.coverage_focus(figs['days_left_qtd'].value)}",
        "win_rate_count_12m",
        "sales_velocity_30d",
    ]


def show_review(v: PipelineView) -> None:
    """Review packs only: the rep's top 10 deals, what changed in 7 days, questions for each deal."""
    if not v.review_mode:
        return
    sc, cfg, A, cur = v.sc, v.cfg, v.A, v.cur
    markdown("## Review: top 10 deals")
    top10 = pl.top_open_deals(sc.opps, A, 10, sc.activities)
    show_table(top10, money=["amount"], ints=DEAL_INTS, currency=cur)
    markdown("## What changed since last week")
    if v.has_history:
        week_ago = A - pd.Timedelta(days=7)
        snaps = hi.snapshots(sc.deals, [week_ago, A])
        changes = reviews.deal_changes(
            snaps[snaps["snapshot_date"] == week_ago], snaps[snaps["snapshot_date"] == A], cfg
        )
    else:
        note(
            v.NO_HISTORY.replace("This section", "Advanced and slipped deals") + " Shown: deals created or "
            "closed in the last 7 days."
        )
        changes = reviews.changes_without_history(sc.opps, A)
    show_table(changes, money=["amount"], currency=cur)
    markdown(
        "## Questions for each deal\n\nPre-filled from the CRM where the data has an answer; "
        "the rest is for the meeting."
    )
    display(
        HTML(reviews.questions_html(top10, reviews.review_questions(top10, sc.opps, sc.activities, A), cur))
    )
    definitions("what_changed")


# --------------------------------------------------------------------------------------------------
# 1. Bookings against plan
# --------------------------------------------------------------------------------------------------
def show_bookings(v: PipelineView) -> None:
    """Bookings against plan per window (month, quarter, year to date)."""
    if needs_amounts(v, "Bookings against plan"):
        return
    sc, cfg, cal, W = v.sc, v.cfg, v.cal, v.W
    bvp = pl.bookings_vs_plan(
        sc.table,
        sc.quotas,
        W,
        company_plan=None
        if sc.quotas is not None or sc.scope != "company"
        else {k: pl.plan_from_targets(cfg.targets, cal, w.start, w.end) for k, w in W.items()},
    )
    if bvp["plan"].isna().all():
        note(
            "Attainment is unavailable: the dataset has no quotas for this scope (add a `quotas` table, or "
            "pass quotas_path) and no dataset.yml target covers the period.",
            warn=True,
        )
    show_table(bvp.drop(columns=["group"]), money=PLAN_MONEY, pct=PLAN_PCT, currency=v.cur)


def show_bookings_chart(v: PipelineView) -> None:
    """Cumulative bookings against cumulative plan over the fiscal year to date."""
    if v.NO_AMOUNTS:  # show_bookings has said why
        return
    sc, cfg, cal, W, A, cur = v.sc, v.cfg, v.cal, v.W, v.A, v.cur
    company_plan = (
        pl.plan_from_targets(cfg.targets, cal, W["YTD"].start, W["YTD"].end)
        if sc.quotas is None and sc.scope == "company" and cfg.targets
        else None
    )
    cum = pl.cumulative_bookings(sc.table, sc.quotas, W["YTD"], company_plan=company_plan)
    fig, ax = plots.new_figure(8, 3.4)
    ax.plot(cum["date"], cum["bookings"], color=plots.WON, lw=2.2, label="Bookings (cumulative)")
    if cum["plan"].notna().any():
        ax.plot(cum["date"], cum["plan"], color=plots.NEUTRAL, ls="--", label="Plan (cumulative, by days)")
    ax.axvline(A, color=plots.HIGHLIGHT, lw=1, label=f"as of {A:%Y-%m-%d}")
    plots.money_axis(ax, symbol(cur))
    ax.legend(loc="upper left")
    plots.finish(fig, ax, f"Bookings against plan, {W['YTD'].label}", "date", cur)


def show_bookings_by_team_and_rep(v: PipelineView) -> None:
    """Bookings against plan by team (company scope) and by rep, and the reps at or above quota."""
    sc, W, cur = v.sc, v.W, v.cur
    if sc.scope == "rep" or sc.quotas is None or v.NO_AMOUNTS:
        return
    if sc.scope == "company" and sc.reps is not None and "team" in sc.reps.columns:
        by_team = pl.bookings_vs_plan(
            sc.table, sc.quotas, {k: W[k] for k in ("QTD", "YTD")}, by="team", reps=sc.reps, asked=W
        )
        markdown("**By team** (quarter and year to date)")
        fold_table(by_team, money=PLAN_MONEY, pct=PLAN_PCT, currency=cur)
    # every window's sums per owner in one query, shared with the headline figures (``asked``)
    by_rep = pl.bookings_vs_plan(sc.table, sc.quotas, {"QTD": W["QTD"]}, by="rep", asked=W)
    markdown(f"**By rep**, quarter to date ({W['QTD'].label}), lowest pace first")
    fold_table(
        by_rep.sort_values("pace_attainment").drop(columns=["window"]),
        money=PLAN_MONEY,
        pct=PLAN_PCT,
        currency=cur,
    )
    markdown("**Reps at or above quota**")
    fold_table(
        pl.reps_at_quota(pl.bookings_vs_plan(sc.table, sc.quotas, W, by="rep", asked=W)),
        pct=["share_on_pace", "share_at_quota"],
        ints=["reps_with_plan"],
        currency=cur,
    )


# --------------------------------------------------------------------------------------------------
# 2. Pipeline and forecast
# --------------------------------------------------------------------------------------------------
def show_pipeline_by_stage(v: PipelineView) -> None:
    """Open pipeline by stage (amount, weighted by CRM probability and by historical win rate) and by
    expected close quarter."""
    if needs_amounts(v, "Open pipeline by stage and by expected close quarter"):
        return
    sc, cur = v.sc, v.cur
    if default := amounts_from_default(v.cfg):
        note(f"Amounts from a default: {default}.")
    by_stage = pl.pipeline_by_stage(sc.opps, v.cfg, v.rate_map)
    show_table(
        by_stage,
        money=["amount", "weighted_crm", "weighted_hist"],
        pct=["default_probability", "historical_win_rate"],
        ints=["deals"],
        currency=cur,
    )
    long = by_stage.melt(
        id_vars="stage",
        value_vars=[c for c in ("amount", "weighted_crm", "weighted_hist") if c in by_stage.columns],
        var_name="measure",
    )
    long["measure"] = long["measure"].map(
        {
            "amount": "Amount",
            "weighted_crm": "Weighted (CRM probability)",
            "weighted_hist": "Weighted (historical win rate)",
        }
    )
    fig, ax = plots.new_figure(8, 3.4)
    sns.barplot(
        long,
        x="stage",
        y="value",
        hue="measure",
        ax=ax,
        palette=[plots.OPEN, plots.HIGHLIGHT, plots.WON][: long["measure"].nunique()],
    )
    plots.money_axis(ax, symbol(cur))
    plots.finish(fig, ax, "Open pipeline by stage: amount and weighted", "", cur)
    markdown("**Open pipeline by expected close quarter**")
    show_table(
        pl.pipeline_by_close_period(sc.opps, v.cfg, v.cal, v.A),
        money=["amount", "weighted_crm"],
        ints=["deals"],
        currency=cur,
    )


def show_calibration(v: PipelineView) -> None:
    """How well the CRM probabilities predicted wins, from month-end snapshots of the last 12 months."""
    if not v.has_history:
        note(v.NO_HISTORY.replace("This section", "The check of CRM probabilities"))
        return
    month_ends = pd.date_range(v.A - pd.DateOffset(months=12), v.A, freq="ME")
    calib = hi.probability_calibration(v.sc.deals, v.cfg, month_ends)
    markdown("**How well the CRM probabilities were calibrated** (month-end snapshots of the last 12 months)")
    fold_table(
        calib.rename(columns={"gap": "actual_minus_predicted"}),
        pct=["predicted", "actual"],
        points=["actual_minus_predicted"],
        ints=["observations", "deals"],
        currency=v.cur,
    )


def show_forecast_and_coverage(v: PipelineView) -> None:
    """Forecast categories this quarter and next; coverage overall, by team and by rep."""
    if needs_amounts(v, "Forecast categories and coverage"):
        return
    sc, cfg, cal, W, NQ, THR, cur = v.sc, v.cfg, v.cal, v.W, v.NQ, v.THR, v.cur
    for win in (W["QTD"], NQ):
        markdown(f"**Forecast categories, {win.label}** (cumulative)")
        fr = pl.forecast_rollup(sc.table, win.start, win.end)
        show_table(fr, money=["category_amount", "cumulative"], ints=["deals"], currency=cur)
    markdown(
        f"**Coverage** (open pipeline closing in the quarter ÷ quota still to close; threshold {THR:.1f}×)"
    )
    cov = pd.concat(
        [
            pl.coverage(
                sc.table,
                sc.quotas,
                win,
                threshold=THR,
                company_plan=(
                    pl.plan_from_targets(cfg.targets, cal, win.start, win.end)
                    if sc.quotas is None and sc.scope == "company"
                    else None
                ),
            ).assign(quarter=win.label)
            for win in (W["QTD"], NQ)
        ]
    )
    show_table(
        cov[["quarter"] + [c for c in cov.columns if c != "quarter"]], **COVERAGE_FORMATS, currency=cur
    )
    if sc.scope == "company" and sc.quotas is not None and sc.reps is not None and "team" in sc.reps.columns:
        markdown(f"**Coverage by team, {v.focus.label}**")
        show_table(
            pl.coverage(sc.table, sc.quotas, v.focus, by="team", reps=sc.reps, threshold=THR),
            **COVERAGE_FORMATS,
            currency=cur,
        )
    if v.cov_rep is not None:
        markdown(
            f"**Coverage by rep, {v.focus.label}** (lowest first; {int(v.cov_rep['under_threshold'].sum())} "
            f"under {THR:.1f}×)"
        )
        fold_table(v.cov_rep.sort_values("coverage"), **COVERAGE_FORMATS, currency=cur)


def show_pipeline_created(v: PipelineView) -> None:
    """Pipeline created per week (chart, 13 weeks) and per month (table, 12 months) by source."""
    if needs_amounts(v, "Pipeline created"):
        return
    sc, A, cur = v.sc, v.A, v.cur
    weeks = pl.pipeline_created(sc.table, A - pd.Timedelta(weeks=13), A, freq="week")
    if len(weeks):
        wide = weeks.pivot_table(
            index="period", columns="source", values="amount", aggfunc="sum", fill_value=0
        )
        fig, ax = plots.new_figure(8, 3.4)
        plots.stacked_bars(ax, wide)
        plots.money_axis(ax, symbol(cur))
        ax.legend(loc="upper left")
        plots.finish(
            fig, ax, "Pipeline created per week by source (all deals created, open or closed)", "week", cur
        )
    months = pl.pipeline_created(sc.table, (A - pd.DateOffset(months=11)).replace(day=1), A, freq="month")
    markdown("**Pipeline created per month by source** (amount)")
    if len(months):
        tab = months.pivot_table(
            index="period", columns="source", values="amount", aggfunc="sum", fill_value=0
        )
        tab["Total"] = tab.sum(axis=1)
        tab.index = tab.index.strftime("%Y-%m")
        tab.index.name = "month"
        fold_table(tab, money=list(tab.columns), currency=cur)
    else:
        note("No deals created in the last 12 months.")


def show_same_day_and_forecast_accuracy(v: PipelineView) -> None:
    """The pipeline on the same day of earlier quarters (this and next quarter) and how far the weekly
    forecast of the last complete quarter was from what closed (adds ``forecast_abs_pct_error_week1``)."""
    if not v.has_history:
        note(
            v.NO_HISTORY.replace(
                "This section",
                "The pipeline on the same day of earlier quarters and the accuracy of past forecasts",
            )
        )
        return
    if needs_amounts(
        v, "The pipeline on the same day of earlier quarters and the accuracy of past forecasts"
    ):
        return
    sc, cal, A, W, NQ, cur = v.sc, v.cal, v.A, v.W, v.NQ, v.cur
    same_day_money = ["won_to_date", "open_in_quarter", "weighted", "final_won"]
    if pl.coverage_focus(v.figs["days_left_qtd"].value) == "qtd":
        markdown(
            f"**Pipeline for the quarter on the same day of earlier quarters** (day "
            f"{(A - W['QTD'].start).days + 1})"
        )
        same = hi.pipeline_same_day(sc.deals, cal, A, n_quarters=4)
        fold_table(same, money=same_day_money, ints=["open_deals"], currency=cur)
    markdown(
        f"**Pipeline for the next quarter, {(NQ.start - A).days} day(s) before it starts, against earlier "
        "quarters at the same point**"
    )
    same_n = hi.pipeline_same_day(sc.deals, cal, A, n_quarters=4, next_quarter=True)
    fold_table(same_n, money=same_day_money, ints=["open_deals"], currency=cur)
    # last complete quarter = the latest quarter whose end ≤ as-of (the current one on its last day)
    last_q_end = W["QTD"].end if W["QTD"].end <= A else W["QTD"].start - pd.Timedelta(days=1)
    last_q = cal.quarter_start(last_q_end)
    acc = hi.forecast_accuracy(sc.deals, last_q, last_q_end)
    v.ctx.headlines.add(
        "forecast_abs_pct_error_week1", acc["abs_pct_error"].iloc[0], cal.quarter_label(last_q)
    )
    markdown(f"**Accuracy of past forecasts: {cal.quarter_label(last_q)}** (weekly)")
    fig, ax = plots.new_figure(8, 3.4)
    ax.plot(acc["snapshot_date"], acc["forecast"], color=plots.OPEN, marker="o", label="forecast then")
    ax.plot(acc["snapshot_date"], acc["won_to_date"], color=plots.WON, ls=":", label="won so far")
    ax.axhline(acc["actual"].iloc[0], color=plots.WON, lw=2, label="what finally closed")
    plots.money_axis(ax, symbol(cur))
    ax.legend(loc="lower right")
    plots.finish(
        fig, ax, f"Forecast (won + weighted open) at each week of {cal.quarter_label(last_q)}", "week", cur
    )
    fold_table(
        acc.rename(columns={"error": "forecast_minus_actual", "abs_pct_error": "miss_share_of_actual"}),
        money=[
            "won_to_date",
            "weighted_open",
            "open_pipeline",
            "forecast",
            "actual",
            "forecast_minus_actual",
        ],
        pct=["miss_share_of_actual"],
        currency=cur,
    )


# --------------------------------------------------------------------------------------------------
# 3. Movement
# --------------------------------------------------------------------------------------------------
def show_waterfall(v: PipelineView) -> None:
    """The quarter's pipeline waterfall: opening pipeline, the steps that moved it, closing pipeline."""
    if not v.has_history:
        note(
            v.NO_HISTORY.replace(
                "This section", "The movement section (waterfall, slipped deals, conversion, days in stage)"
            )
        )
        return
    if needs_amounts(v, "The pipeline waterfall"):
        return
    W, A, cur = v.W, v.A, v.cur
    wf = hi.waterfall(v.sc.deals, W["QTD"].start, W["QTD"].end, A)
    markdown(
        f"**Pipeline waterfall, {W['QTD'].label}** — pipeline closing in the quarter, "
        f"{W['QTD'].start - pd.Timedelta(days=1):%Y-%m-%d} → {A:%Y-%m-%d}"
    )
    show_table(wf.drop(columns="term"), money=["amount"], ints=["deals"], currency=cur)
    steps = wf[wf["term"] != "check"]
    fig, ax = plots.new_figure(8, 3.4)
    run, top = 0.0, 0.0
    for i, r in enumerate(steps.itertuples()):
        if r.term in ("opening", "closing"):
            ax.bar(i, r.amount, color=plots.OPEN)
            run = r.amount
        else:
            ax.bar(i, r.amount, bottom=run, color=plots.WON if r.amount >= 0 else plots.LOST)
            run += r.amount
        top = max(top, run, run - r.amount if r.term not in ("opening", "closing") else 0.0)
    ax.set_ylim(0, top * 1.1 or 1.0)  # room above the highest bar: none is cut at the top
    ax.set_xticks(range(len(steps)), steps["step"], rotation=30, ha="right")
    plots.money_axis(ax, symbol(cur))
    plots.finish(fig, ax, f"Pipeline waterfall {W['QTD'].label}", "", cur)


def show_slips_conversion_and_stage_days(v: PipelineView) -> None:
    """Slipped deals this quarter, stage-to-stage conversion (any-stage and strict) and days in stage
    against the won-deal benchmark (nothing without history: ``show_waterfall`` says why)."""
    if not v.has_history:
        return
    sc, cfg, cur, slipped = v.sc, v.cfg, v.cur, v.slipped
    markdown(
        f"**Slipped deals** (close date pushed by changes made since {v.W['QTD'].start:%Y-%m-%d}): "
        f"{slipped.count} deals, {slipped.pushes} pushes"
    )
    fold_table(
        _amounts_or_not(v, slipped.deals.head(15)),
        money=["amount"],
        ints=["times_pushed", "days_pushed"],
        currency=cur,
    )
    reached = v.reached_all
    if sc.owners is not None:  # the stages reached of the scope's deals
        o = sc.deals.opps
        reached = within(reached, "opportunity_id", o, "opportunity_id")
    for variant, label in (("any", "any-stage"), ("strict", "strict")):
        markdown(f"**Stage-to-stage conversion ({label})** — all deals in scope; where the funnel leaks")
        fold_table(
            hi.stage_conversion(reached, v.deals_all.eng, cfg, variant),
            pct=["conversion"],
            ints=["reached", "converted", "lost_here", "open_here"],
            currency=cur,
        )
    markdown(
        "**Days in stage**: won deals (the benchmark, whole dataset) and the open deals stalled against it"
    )
    fold_table(
        v.bench.merge(v.stalled_per_stage.rename("stalled_now").reset_index(), on="stage", how="left").fillna(
            {"stalled_now": 0}
        ),
        decimals=["median_days", "threshold_days"],
        ints=["won_stays", "stalled_now"],
        currency=cur,
    )


# --------------------------------------------------------------------------------------------------
# 4. Deals that need attention
# --------------------------------------------------------------------------------------------------
def show_deals_needing_attention(
    v: PipelineView, top_n: int = 20, no_activity_days: int = 14, output_dir: str = "", shown: int = 15
) -> None:
    """One list of the open deals that need attention, each deal once with its flags (past due, stalled,
    slipped, no next step, no recent activity); the first ``shown`` rows on the page, the full list as a CSV
    beside the report (``output_dir``); the largest open deals folded below it."""
    sc, A, cur = v.sc, v.A, v.cur
    deals = pl.deal_list(sc.opps, A, sc.activities)
    slipped = v.slipped.deals["opportunity_id"] if v.slipped is not None else ()  # every open one
    att = pl.attention_deals(deals, A, v.stalled_ids, slipped, int(no_activity_days))
    flags = att["flags"].astype("str").str.split("; ").explode()  # an empty list has no str dtype
    counts = [f"{int((flags == f).sum()):,} {f}" for f in pl.ATTENTION_FLAGS if (flags == f).any()]
    worth = "" if v.NO_AMOUNTS else f" ({v.ctx.money(att['amount'].sum())})"
    markdown(
        f"**{count_noun(len(att), 'open deal')} {'needs' if len(att) == 1 else 'need'} attention**"
        f"{worth}: " + " · ".join(counts) + "."
        if len(att)
        else "**No open deal needs attention.**"
    )
    cols = [
        c
        for c in (
            "opportunity_id",
            "account",
            "owner",
            "stage",
            *(() if v.NO_AMOUNTS else ("amount",)),
            "close_date",
            "days_to_close",
            "last_activity",
            "days_since_activity",
            "flags",
        )
        if c in att.columns
    ]
    where = ""
    if output_dir and len(att):
        path = write_list_csv(att[cols], output_dir, "deals_needing_attention.csv")
        where = f"; all {len(att):,} in files/{path.parent.name}/{path.name}, beside this report"
    order = "most flags first" if v.NO_AMOUNTS else "the largest first"  # no amounts: each counts as 0
    caption = f"Showing {min(shown, len(att)):,} of {len(att):,}, {order}{where}"
    show_table(
        att[cols].head(shown),
        caption=caption,
        money=["amount"],
        currency=cur,
        ints=["days_to_close", "days_since_activity"],
    )
    if not needs_amounts(v, f"The {int(top_n)} largest open deals"):
        show_table(
            pl.top_open_deals(sc.opps, A, int(top_n), deals=deals),
            collapsed=f"The {int(top_n)} largest open deals",
            money=["amount"],
            ints=DEAL_INTS,
            currency=cur,
        )
    if sc.as_exported:  # rewound: next_step as exported is not read as then's
        note(
            f"`next_step` is as exported on {v.ctx.ds.as_of:%Y-%m-%d}, not as on {A:%Y-%m-%d}: left out of this "
            "report (no no-next-step flag)."
        )
    if "next_step" not in sc.opps.columns and "next_step" not in sc.as_exported:
        note(v.ctx.missing("opportunities", "next_step", section="The no-next-step flag"))
    if not v.ctx.has("opportunities", "last_activity_date") and v.sc.activities is None:
        note("The no-recent-activity flag needs opportunities.last_activity_date or the activities table.")
    definitions("age", "days_to_close", "last_activity", "stalled", "slipped_deal")


# --------------------------------------------------------------------------------------------------
# 5. Efficiency
# --------------------------------------------------------------------------------------------------
def show_efficiency(v: PipelineView) -> None:
    """Deal size and sales cycle by month and quarter (with their trend), win rate and sales velocity."""
    sc, cal, A, W, cur, money = v.sc, v.cal, v.A, v.W, v.cur, v.ctx.money
    year_start, _ = trailing_window(A)
    monthly = pl.deal_size_and_cycle(sc.table, cal, (A - pd.DateOffset(months=11)).replace(day=1), A, "month")
    quarterly = pl.deal_size_and_cycle(sc.table, cal, A - pd.DateOffset(months=24), A, "quarter")
    done_q = quarterly[quarterly["period"] != W["QTD"].label] if W["QTD"].end > A else quarterly
    size = (
        ""
        if v.NO_AMOUNTS
        else f"Average deal size is **{pl.trend_call(monthly['avg_deal_size'])}** by month and "
        f"**{pl.trend_call(done_q['avg_deal_size'], recent=3)}** by quarter; the sales"
    )
    markdown(
        f"{size or 'The sales'} cycle is "
        f"**{pl.trend_call(monthly['avg_cycle_days'])}** by month and "
        f"**{pl.trend_call(done_q['avg_cycle_days'], recent=3)}** by quarter (complete quarters; last 3 vs "
        "the 3 before)."
    )
    value_cols = ["bookings", "avg_deal_size", "won_value", "closed_value", "win_rate_value"]
    if v.NO_AMOUNTS:
        needs_amounts(v, "Deal size, bookings, win rate by value and sales velocity")
        monthly, quarterly = (t.drop(columns=value_cols, errors="ignore") for t in (monthly, quarterly))
    for table in (monthly, quarterly):
        fold_table(
            table,
            money=["bookings", "avg_deal_size"],
            ints=["won_deals"],
            decimals=["avg_cycle_days", "median_cycle_days"],
            currency=cur,
        )
    wr12, wrq = pl.win_rate(sc.table, year_start, A), pl.win_rate(sc.table, W["QTD"].start, A)
    fold_table(
        pd.DataFrame([{"window": "last 12 months", **wr12}, {"window": W["QTD"].label + " to date", **wrq}])[
            [
                "window",
                "closed",
                "won",
                "lost",
                "win_rate_count",
                *(() if v.NO_AMOUNTS else value_cols[2:]),
            ]
        ],
        pct=["win_rate_count", "win_rate_value"],
        money=["won_value", "closed_value"],
        ints=["closed", "won", "lost"],
        currency=cur,
    )
    if v.NO_AMOUNTS:
        return
    vel = pl.sales_velocity(sc.table, A)
    markdown(
        f"**Sales velocity**: {vel['open_opportunities']:,} open opportunities × {vel['win_rate_count']:.1%} "
        f"win rate × {money(vel['avg_deal_size'])} average deal ÷ {vel['avg_cycle_days']:.0f} days = "
        f"**{money(vel['velocity_per_day'])} per day** ({money(vel['velocity_per_30_days'])} per 30 days)."
    )


def show_lead_funnel(v: PipelineView) -> None:
    """MQL→SQL and SQL→won conversion of the leads created in the last 12 months, and the section's
    definitions."""
    msg = v.ctx.missing("leads", "created_date", section="MQL→SQL and SQL→won conversion")
    if msg:
        note(msg)
    else:
        markdown("**Lead funnel**, leads created in the last 12 months")
        fold_table(
            pl.lead_funnel(v.sc.leads, v.sc.table, *trailing_window(v.A)),
            pct=["mql_to_sql", "sql_to_won"],
            ints=["leads", "mql", "sql", "sql_won", "sql_open"],
            currency=v.cur,
        )
    definitions("deal_size_and_cycle", "win_rate_12m", "sales_velocity", "lead_funnel")


# the sections the "what to look at" points refer to (their headings in the notebook, without the number)
BOOKINGS, FORECAST, ATTENTION = "Bookings against plan", "Pipeline and forecast", "Deals that need attention"


def look_at_points(figs: dict[str, Fig], currency: str = "USD", extra: dict | None = None) -> list[Point]:
    """Sentences for the top of the report, computed from the headline figures (and ``extra``: counts
    stalled, slipped, reps_under_threshold, and coverage_label — the quarter the rep coverage refers to)."""

    def val(k):
        f = figs.get(k)
        return math.nan if f is None else f.number

    def m(x):
        return fmt_money(x, currency, compact=True)

    pts = []
    thr = val("coverage_threshold")
    for key in ("qtd", "next_quarter"):
        if key == "qtd" and pl.coverage_focus(val("days_left_qtd")) != "qtd":
            continue  # the quarter is all but over: its coverage says nothing
        f = figs.get(f"coverage_{key}")
        cov, label = val(f"coverage_{key}"), (f.window or "") if f is not None else ""
        if not pd.isna(cov) and cov < thr:
            pts.append(
                Point(
                    f"Coverage for {label} is {cov:.1f}×, under the {thr:.1f}× needed: "
                    f"{m(val(f'open_in_{key}'))} open against {m(val(f'remaining_{key}'))} still to close.",
                    FORECAST,
                    "bad",
                    (f"coverage_{key}",),
                )
            )
    pa = val("pace_attainment_qtd")
    if val("days_left_qtd") == 0 and not pd.isna(val("bookings_qtd")):  # the as-of date ends the quarter
        att = val("attainment_qtd")
        pts.append(
            Point(
                f"The quarter closed at {m(val('bookings_qtd'))}"
                + ("." if pd.isna(att) else f", {fmt_pct(att)} of plan."),
                BOOKINGS,
                "watch" if att < 1 else "info",
                ("bookings_qtd", "attainment_qtd"),
            )
        )
    elif not pd.isna(ua := val("pace_usual_attainment_qtd")):
        # quarters book late: the pace the last four quarters had by this day leads, the straight line beside it
        pts.append(
            Point(
                f"At the usual pace of the last four quarters ({fmt_pct(val('usual_share_qtd'))} of a quarter's "
                f"bookings in by this day) the quarter lands at {m(val('pace_usual_qtd'))}, {fmt_pct(ua)} of plan "
                f"({'short of' if ua < 1 else 'above'} plan); the straight-line run rate says {m(val('pace_qtd'))}.",
                BOOKINGS,
                "bad" if ua < 1 else "info",
                ("pace_usual_qtd", "pace_usual_attainment_qtd", "pace_qtd"),
            )
        )
    elif not pd.isna(pa):
        word = "short of" if pa < 1 else "above"
        pts.append(
            Point(
                f"At the current run rate the quarter lands at {m(val('pace_qtd'))}, {fmt_pct(pa)} of plan "
                f"({word} plan).",
                BOOKINGS,
                "bad" if pa < 1 else "info",
                ("pace_qtd", "pace_attainment_qtd"),
            )
        )
    elif pd.isna(val("plan_qtd")):
        pts.append(
            Point(
                "Attainment is unavailable: the dataset has no quotas (add a `quotas` table or pass "
                "quotas_path).",
                BOOKINGS,
            )
        )
    share, usual = val("reps_on_pace_qtd"), val("reps_on_usual_pace_qtd")
    if val("days_left_qtd") == 0:  # the quarter ends on the as-of date: on pace means at quota
        low, keys, text = (
            share,
            ("reps_on_pace_qtd",),
            f"Only {fmt_pct(share)} of reps finished the quarter at quota.",
        )
    elif not pd.isna(usual):  # like the quarter's landing: the usual pace leads, the straight line beside it
        low, keys = usual, ("reps_on_usual_pace_qtd", "reps_on_pace_qtd")
        text = (
            f"Only {fmt_pct(usual)} of reps are on the usual pace for their quarter quota "
            f"({fmt_pct(share)} on the straight line)."
        )
    else:
        low, keys, text = (
            share,
            ("reps_on_pace_qtd",),
            f"Only {fmt_pct(share)} of reps are on pace for their quarter quota.",
        )
    if not pd.isna(low) and low < 0.5:
        pts.append(Point(text, BOOKINGS, "bad", keys))
    if val("past_due_deals") and val("past_due_deals") > 0:
        n = int(val("past_due_deals"))
        worth = "" if pd.isna(val("past_due_amount")) else f" worth {m(val('past_due_amount'))}"
        pts.append(
            Point(
                f"{count_noun(n, 'open deal')}{worth} "
                f"{'has a close date' if n == 1 else 'have close dates'} in the past — update or close "
                f"{'it' if n == 1 else 'them'}.",
                ATTENTION,
                "watch",
                ("past_due_deals", "past_due_amount"),
            )
        )
    extra = extra or {}
    if extra.get("stalled"):
        n = int(extra["stalled"])
        pts.append(
            Point(
                f"{count_noun(n, 'open deal')} {'is' if n == 1 else 'are'} stalled (longer in "
                f"{'its' if n == 1 else 'their'} stage than 3 in 4 won deals).",
                ATTENTION,
                "watch",
                ("stalled_deals",),
            )
        )
    if extra.get("slipped"):
        n = int(extra["slipped"])
        pts.append(
            Point(
                f"{count_noun(n, 'deal')} had {'its' if n == 1 else 'their'} close date pushed this quarter.",
                ATTENTION,
                "watch",
                ("slipped_deals_qtd",),
            )
        )
    if extra.get("reps_under_threshold"):
        n = int(extra["reps_under_threshold"])
        label = extra.get("coverage_label")
        pts.append(
            Point(
                f"{count_noun(n, 'rep')} {'has' if n == 1 else 'have'} coverage under {thr:.1f}× for "
                f"{label or 'the quarter'}.",
                FORECAST,
                "watch",
            )
        )
    if val("no_next_step_deals") > 0:  # (NaN: not measured)
        n = int(val("no_next_step_deals"))
        pts.append(
            Point(
                f"{count_noun(n, 'open deal')} {'has' if n == 1 else 'have'} no next step.",
                ATTENTION,
                "watch",
                ("no_next_step_deals",),
            )
        )
    return pts
