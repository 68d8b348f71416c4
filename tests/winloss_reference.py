"""The win/loss review as it was computed before its closed deals stayed on the engine: the frozen
``build_review`` that fetched the window's closed deals and their history rows and computed every table
in pandas (``helpers.metrics.winloss``' pandas functions). The tests hold the engine's review to it."""

from __future__ import annotations

import pandas as pd

from helpers.data.calendar import FiscalCalendar
from helpers.metrics.pipeline import isin
from helpers.metrics.winloss import (
    DEAL_COLUMNS,
    DIMENSION_NEEDS,
    DIMENSIONS,
    Deals,
    Review,
    _team_reps,
    churned_in,
    closed_in_window,
    headline_figures,
    loss_reasons,
    loss_reasons_by,
    open_as_of,
    prepare_deals,
    quality_issues,
    quality_summary,
    rate_change,
    review_windows,
    size_band_labels,
    stage_lost_at,
    top_churned,
    top_deals,
    what_distinguishes_wins,
    what_to_look_at,
    win_rate_trend,
    win_rates,
    won_vs_lost,
)


def closed_in(src: Deals, windows) -> pd.DataFrame:
    """The closed deals with ``start <= close_date <= as_of`` in one of ``windows`` (every closed deal
    with ``None``), fetched from where they live (the rows the old review brought back)."""
    import ibis

    from helpers.metrics import expr as ex

    t = src.t
    keep = ex.flag(t.is_closed)
    if windows:
        inside = [(t.close_date >= ex.day(w.start)) & (t.close_date <= ex.day(w.as_of)) for w in windows]
        keep = keep & ibis.or_(*inside).fill_null(False)
    return src._fetch(t.filter(keep), DEAL_COLUMNS)


def build_review(
    ds,
    period: str,
    as_of,
    cal: FiscalCalendar,
    review_window: str = "month",
    comparison_period: str = "",
    min_deals: int = 5,
    size_edges: list[float] | None = None,
    currency_symbol: str = "$",
    activities=None,
    missing=None,
    history_of=None,
    opportunities=None,
) -> Review:
    """Compute the review for ``ds`` (a ``helpers.data.dataset.Dataset``): the functions above, composed.
    ``opportunities``: the deals where they live (an engine table; default the loaded table, run as an
    in-memory one): the review asks them for what its sections show (``Deals``), the closed deals of the
    review and comparison windows, the open deals that can be among the largest, the won deals of the
    churned accounts listed, the trend's totals per month, the duplicate records and counts.
    ``activities``: the activity log where it lives (an engine table; default the loaded table), with
    ``missing`` (default ``ds.missing``) answering for it; ``history_of``: deal ids → those deals'
    opportunity_history rows in the table's order (default: from the loaded table)."""
    cfg = ds.config
    review, comp = review_windows(period, as_of, cal, review_window, comparison_period)
    src = Deals(opportunities if opportunities is not None else ds.tables["opportunities"])
    duplicates = src.duplicates
    possible = src.counts["possible"]
    reps = ds.tables.get("reps")
    if size_edges is None:
        size_edges = src.size_edges()
    dated_data = src.has("close_date")
    # the closed deals of the review and comparison windows (every closed deal without close dates)
    rows = closed_in(src, [review, comp] if dated_data else None)
    deals = prepare_deals(
        rows, reps, as_of=review.as_of, size_edges=size_edges, currency_symbol=currency_symbol
    )
    needs: dict[str, str] = {}

    def need(key, table, *cols, section):
        if table == "opportunities" and all(src.has(c) for c in cols):
            return True  # the deals' counts say so: no query
        msg = (missing or ds.missing)(table, *cols, section=section)
        if msg:
            needs[key] = msg
        return msg is None

    closed = closed_in_window(deals, review)
    closed_comp = closed_in_window(deals, comp) if dated_data else closed.iloc[:0]
    overall = win_rates(closed)
    overall_comp = win_rates(closed_comp)
    change = rate_change(overall, overall_comp)
    need("value", "opportunities", "amount", section="Win rate by value")
    if "value" not in needs and not overall["value_win_rate"].notna().any() and len(closed):
        needs["value"] = (
            "Win rate by value needs amounts on lost deals; the lost deals closed in the window "
            "carry none, so a value win rate would read 100%."
        )
    dated = need(
        "dates",
        "opportunities",
        "close_date",
        section="Placing deals in the review window, the trend and the comparison",
    )
    by_dim = {}
    for dim, (table, cols) in DIMENSION_NEEDS.items():
        label = f"Win rate by {DIMENSIONS[dim].lower()}"
        no_teams = f"{label} needs the reps table with teams."
        if dim == "team" and "rep" in needs:
            needs["dim:team"] = no_teams
            continue
        if need(f"dim:{dim}", table, *cols, section=label):
            if dim == "team" and not src.any_owner_in(_team_reps(reps)):
                needs["dim:team"] = no_teams
                continue
            order = size_band_labels(size_edges, currency_symbol) if dim == "size_band" else None
            by_dim[dim] = win_rates(closed, dim, min_deals, order=order)
    competitors = None
    if need("competitor", "opportunities", "competitor", section="Win rate against each competitor"):
        competitors = win_rates(closed, "competitor", min_deals)
    trend = (
        win_rate_trend(src.t, review, comp, cal, periods=12 if review_window == "month" else 6)
        if dated
        else None
    )
    lost = closed[closed["outcome"].eq("Lost")]
    reasons_count = loss_reasons(lost, "count")
    reasons_value = loss_reasons(lost, "value")
    need("reasons", "opportunities", "loss_reason", section="Loss reasons")
    reasons_by_segment = loss_reasons_by(lost, "segment") if src.has("segment") else None
    reasons_by_competitor = loss_reasons_by(lost, "competitor") if src.has("competitor") else None
    history = None
    lost_at = None
    if need(
        "history",
        "opportunity_history",
        "opportunity_id",
        "changed_at",
        "stage",
        section="The stage at which deals were lost (and stage changes, amount changes, qualification)",
    ):
        # every measure below reads a closed deal's own history rows only: those of the window's deals
        if history_of is not None:
            history = history_of(closed["opportunity_id"])
        else:
            whole = ds.tables["opportunity_history"]
            history = whole[isin(whole["opportunity_id"], closed["opportunity_id"])]
        lost_at = stage_lost_at(lost, history, cfg.stages, cfg.won_stages, cfg.lost_stages)
    activities = activities if activities is not None else ds.tables.get("activities")
    need("activities", "activities", "opportunity_id", section="Activities per deal")
    side = won_vs_lost(
        closed,
        history,
        activities if "activities" not in needs else None,
        history_present=history is not None,
    )
    top_churn = None
    if need("churn", "churn", "account", "churn_date", "lost_amount", section="The churned customers list"):
        churn = ds.tables["churn"]
        won = None
        if src.has("account"):  # the won deals of the listed accounts suffice
            won = src.won_of(churned_in(churn, review)["account"])
            won = prepare_deals(won, reps, as_of=review.as_of, size_edges=size_edges)
        top_churn = top_churned(churn, review, won, dated=src.counts["won_dated"] > 0)
    can_q = history is not None and bool(cfg.qualifying_stage)
    if history is None:
        needs["qualifying"] = (
            "The check for deals closed without qualifying needs the opportunity_history table."
        )
    elif not cfg.qualifying_stage:
        needs["qualifying"] = (
            "The check for deals closed without qualifying needs `qualifying_stage` in dataset.yml."
        )
    check_reasons = "reasons" not in needs
    issues = quality_issues(
        closed, history, cfg.stages, cfg.qualifying_stage, cfg.won_stages, cfg.lost_stages, check_reasons
    )
    undated = src.counts["undated"] if dated_data else 0
    quality = quality_summary(
        closed, issues, duplicates, undated, can_q, cfg.qualifying_stage, check_reasons, possible
    )
    figs = headline_figures(
        overall,
        change,
        reasons_count if "reasons" not in needs else reasons_count.iloc[:0],
        quality,
        review.label if dated else "all closed records",
        comp.label if dated else "",
        competitors,
    )
    dims_for_points = {**by_dim, **({"competitor": competitors} if competitors is not None else {})}
    points = what_to_look_at(
        overall,
        change,
        dims_for_points,
        reasons_count if "reasons" not in needs else reasons_count.iloc[:0],
        quality,
        min_deals,
        review.label if dated else "the data",
        comp.label,
        dated,
    )
    if not check_reasons and len(closed):
        points.append(
            "The data records no loss reasons, so this review cannot say why deals are lost: make "
            "a loss reason required when a deal is closed lost."
        )
    open_deals = prepare_deals(src.top_open(review.as_of), reps, review.as_of, size_edges, currency_symbol)
    return Review(
        review,
        comp,
        min_deals,
        dated_data,
        duplicates,
        len(closed),
        undated,
        overall,
        overall_comp,
        change,
        by_dim,
        competitors,
        trend,
        reasons_count,
        reasons_value,
        reasons_by_segment,
        reasons_by_competitor,
        lost_at,
        side,
        what_distinguishes_wins(side),
        top_deals(open_as_of(open_deals, review.as_of), "Open"),
        top_deals(closed, "Won"),
        top_deals(closed, "Lost"),
        top_churn,
        issues,
        quality,
        figs,
        points,
        needs,
        size_edges,
    )


def assert_same_review(got, want) -> None:
    """Every table, figure and sentence of two reviews equal (frames with their dtypes)."""
    import dataclasses

    import pandas as pd
    import pandas.testing as pdt

    for f in dataclasses.fields(want):
        a, b = getattr(got, f.name), getattr(want, f.name)
        if isinstance(b, pd.DataFrame):
            pdt.assert_frame_equal(a, b, obj=f.name)
        elif isinstance(b, dict) and any(isinstance(v, pd.DataFrame) for v in b.values()):
            assert list(a) == list(b), f.name
            for k in b:
                pdt.assert_frame_equal(a[k], b[k], obj=f"{f.name}[{k}]")
        elif isinstance(b, dict):
            assert a.keys() == b.keys(), f.name
            for k in b:
                assert (a[k] == b[k]) or (pd.isna(a[k]) and pd.isna(b[k])), (f.name, k, a[k], b[k])
        elif isinstance(b, list) and b and dataclasses.is_dataclass(b[0]):  # figures, points: NaN = NaN
            assert len(a) == len(b), f.name
            for x, y in zip(a, b, strict=True):
                dx, dy = dataclasses.asdict(x), dataclasses.asdict(y)
                assert dx.keys() == dy.keys(), f.name
                for k in dy:
                    same = dx[k] == dy[k] or (_nan(dx[k]) and _nan(dy[k]))
                    assert same, (f.name, k, dx[k], dy[k])
        else:
            assert a == b, (f.name, a, b)


def _nan(x) -> bool:
    return isinstance(x, float) and x != x
