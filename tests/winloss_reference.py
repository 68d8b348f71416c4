"""The win/loss review as it was computed before its closed deals stayed on the engine: the frozen
``build_review`` that fetched the window's closed deals and their history rows and computed every table
in pandas (``helpers.metrics.winloss``' pandas functions). The tests hold the engine's review to it."""

from __future__ import annotations

import numpy as np
import pandas as pd

from helpers.data.calendar import FiscalCalendar, Window
from helpers.metrics import rates as R
from helpers.metrics.activity import _frame
from helpers.metrics.activity import table as activity_table
from helpers.metrics.expr import keyed
from helpers.metrics.pipeline import isin
from helpers.metrics.winloss import (
    _TOTALS,
    DEAL_COLUMNS,
    DIMENSION_NEEDS,
    DIMENSIONS,
    NO_REASON,
    NOT_SET,
    Deals,
    Review,
    _col,
    _named,
    _team_reps,
    churned_in,
    has_values,
    headline_figures,
    is_other_reason,
    lost_at_table,
    open_as_of,
    pooled_rates,
    prepare_deals,
    quality_summary,
    ranked_reasons,
    rate_change,
    reason_table,
    review_windows,
    side_table,
    size_band_labels,
    top_churned,
    top_deals,
    what_distinguishes_wins,
    what_to_look_at,
    win_rate_trend,
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


# --------------------------------------------------------------------------------------------------
# the pandas functions the review above composed, frozen as they were when they left the package
# (``helpers.metrics.winloss`` and ``helpers.metrics.activity.per_deal``): the engine's review
# (``winloss.WindowDeals``) is held to them
# --------------------------------------------------------------------------------------------------
def activities_per_deal(activities, ids) -> pd.Series:
    """Deal id → number of activities logged with that ``opportunity_id`` (any date), for the deals
    ``ids`` that have any; counted on the engine (the ids go there as one column)."""
    t = activity_table(activities)
    deals = keyed(t, pd.DataFrame({"_deal": pd.Series(pd.Series(ids).dropna().unique()).astype("str")}))
    j = t.inner_join(deals, t.opportunity_id.cast("string") == deals._deal)
    got = _frame(j.group_by(opportunity_id="_deal").agg(n=j.count()))
    return pd.Series(
        got["n"].astype("int64").to_numpy(), index=got["opportunity_id"].astype("str").to_numpy()
    )


def closed_in_window(deals: pd.DataFrame, window: Window) -> pd.DataFrame:
    """Closed deals with ``start <= close_date <= as_of``; every closed deal when the data has no close
    dates at all."""
    closed = deals["outcome"].isin(["Won", "Lost"])
    if not has_values(deals, "close_date"):
        return deals[closed]
    return deals[closed & window.contains(deals["close_date"]).fillna(False)]  # one pass over the wide frame


def _rate_table(key: pd.Series, closed: pd.DataFrame) -> pd.DataFrame:
    """Per group: the totals of ``helpers.metrics.rates.outcome_totals`` this review shows."""
    g = R.outcome_totals(key.to_numpy(), closed["outcome"].eq("Won").to_numpy(), _col(closed, "amount"))
    return g[_TOTALS]


def win_rates(
    closed: pd.DataFrame, by: str | None = None, min_deals: int = 5, order: list[str] | None = None
) -> pd.DataFrame:
    """Win rate by count and by value per group of ``by`` (overall when ``by`` is None).

    Per group: deals = won + lost; win_rate = won ÷ deals with its 95% Wilson interval (ci_low, ci_high);
    value_win_rate = won amount ÷ closed amount (see module docstring). Missing group values form the group
    "(not set)". Groups with deals < ``min_deals`` are pooled into "Other (n<min_deals)" (last row).
    Rows are ordered by deals (descending) then name, or by ``order`` when given.
    """
    if by is None:
        key = pd.Series("All", index=closed.index)
    else:
        key = _col(closed, by).astype("object").where(_col(closed, by).notna(), NOT_SET).astype(str)
    return pooled_rates(_rate_table(key, closed), by, min_deals, order)


def _reason(lost: pd.DataFrame) -> pd.Series:
    r = _col(lost, "loss_reason")
    return r.astype("object").where(r.notna(), NO_REASON).astype(str)


def loss_reasons(lost: pd.DataFrame, by: str = "count") -> pd.DataFrame:
    """Loss reasons ranked for a Pareto view.

    Per reason: deals, share = deals ÷ all lost deals, lost_amount, amount_share = amount ÷ all lost amount.
    ``by="count"`` ranks by deals (then amount, then name) and ``cum_share`` accumulates ``share``;
    ``by="value"`` ranks by amount (then deals, then name) and ``cum_share`` accumulates ``amount_share``.
    Deals with no reason form the row "(no reason)".
    """
    cols = ["reason", "deals", "share", "lost_amount", "amount_share", "cum_share"]
    lost = lost[lost["outcome"].eq("Lost")] if "outcome" in lost.columns else lost
    if lost.empty:
        return pd.DataFrame(columns=cols)
    df = pd.DataFrame(
        {
            "reason": _reason(lost).to_numpy(),
            "deals": 1,
            "lost_amount": _col(lost, "amount").astype("float64").fillna(0).to_numpy(),
        }
    )
    return ranked_reasons(df.groupby("reason", sort=False).sum().reset_index(), by)


def loss_reasons_by(lost: pd.DataFrame, dim: str) -> pd.DataFrame:
    """Lost deals per reason (rows, ranked by total) and value of ``dim`` (columns, by total, "(not set)" for
    missing), with a ``Total`` column."""
    lost = lost[lost["outcome"].eq("Lost")] if "outcome" in lost.columns else lost
    if lost.empty:
        return pd.DataFrame()
    col = _col(lost, dim)
    df = pd.DataFrame(
        {
            "reason": _reason(lost).to_numpy(),
            dim: col.astype("object").where(col.notna(), NOT_SET).astype(str).to_numpy(),
        }
    )
    return reason_table(df, dim)


def stage_lost_at(
    lost: pd.DataFrame,
    history: pd.DataFrame,
    stages: list[str],
    won_stages: list[str],
    lost_stages: list[str],
) -> pd.DataFrame:
    """The stage each lost deal was lost at: in its history (ordered by changed_at), the last stage that is
    neither won nor lost before the first move into a lost stage. Deals with no history rows show
    "(no history)"; deals whose history starts lost show "(no earlier stage)". Rows in funnel order with
    deals, share = deals ÷ lost deals, and lost_amount."""
    lost = lost[lost["outcome"].eq("Lost")] if "outcome" in lost.columns else lost
    closed_stages = set(won_stages) | set(lost_stages)
    h = history[["opportunity_id", "changed_at", "stage"]]
    h = h[isin(h["opportunity_id"], lost["opportunity_id"])].copy()
    h["_pos"] = np.arange(len(h))
    h = h.sort_values(["opportunity_id", "changed_at", "_pos"])
    is_lost = h["stage"].isin(lost_stages)
    first_lost_rank = is_lost.groupby(h["opportunity_id"]).cummax()  # True from the first lost row onwards
    before = h[~first_lost_rank & ~h["stage"].isin(closed_stages)]
    last = before.groupby("opportunity_id")["stage"].last()
    at = lost["opportunity_id"].map(last)
    with_history = isin(lost["opportunity_id"], h["opportunity_id"])
    at = at.where(at.notna(), np.where(with_history, "(no earlier stage)", "(no history)"))
    df = pd.DataFrame(
        {
            "stage": at.astype(str).to_numpy(),
            "deals": 1,
            "lost_amount": _col(lost, "amount").astype("float64").fillna(0).to_numpy(),
        }
    )
    return lost_at_table(df.groupby("stage").sum().reset_index(), stages)


def stage_changes(history: pd.DataFrame) -> pd.Series:
    """Stage changes per opportunity: history rows whose stage differs from the previous row's (ordered by
    changed_at; the first row is the starting stage, not a change)."""
    h = history[["opportunity_id", "changed_at", "stage"]].copy()
    h["_pos"] = np.arange(len(h))
    h = h.sort_values(["opportunity_id", "changed_at", "_pos"])
    prev = h.groupby("opportunity_id")["stage"].shift()
    changed = prev.notna() & (h["stage"] != prev)
    return changed.groupby(h["opportunity_id"]).sum().astype("int64")


def amount_change(history: pd.DataFrame, opp: pd.DataFrame) -> pd.Series:
    """Relative amount change per opportunity = final ÷ first − 1, where first = the first positive amount in
    its history and final = the opportunity's amount (else the last amount in history). Negative = the deal
    shrank (discounting or descoping)."""
    if "amount" not in history.columns:
        return pd.Series(dtype="float64")
    h = history[history["amount"] > 0].sort_values(["opportunity_id", "changed_at"], kind="stable")
    first = h.groupby("opportunity_id")["amount"].first()
    last = h.groupby("opportunity_id")["amount"].last()
    final = (
        opp.set_index("opportunity_id")["amount"] if "amount" in opp.columns else pd.Series(dtype="float64")
    )
    final = final.reindex(first.index).fillna(last)
    return (final / first - 1).astype("float64")


def won_vs_lost(
    closed: pd.DataFrame,
    history: pd.DataFrame | None = None,
    activities=None,
    history_present: bool | None = None,
) -> pd.DataFrame:
    """Won and lost deals side by side: one row per metric with ``Won``, ``Lost``, the deals each value rests on
    (``won_n``, ``lost_n``) and ``needs`` (what is missing when a value cannot be computed).

    Deal size = amount (mean, median); cycle = close_date − created_date (median); stage changes per deal
    (``stage_changes``, deals with history); activities per deal = activities with the deal's opportunity_id
    (deals without any count 0; ``activities``: an engine table or a frame, with opportunity_id); amount change = ``amount_change`` (median; shrank = change < 0).
    ``history_present``: whether the dataset has a history (when ``history`` holds only these deals' rows,
    which may be none); default: ``history`` has rows."""
    won = closed["outcome"].eq("Won")
    per_deal: dict[str, tuple[pd.Series, str]] = {}
    amount = _col(closed, "amount").astype("float64").where(lambda s: s > 0)
    per_deal["amount"] = (amount, "" if amount.notna().any() else "amounts (opportunities.amount)")
    cyc = closed["cycle_days"] if "cycle_days" in closed.columns else pd.Series(np.nan, index=closed.index)
    per_deal["cycle"] = (cyc, "" if cyc.notna().any() else "created_date and close_date")
    hist_ok = (
        history is not None
        and {"opportunity_id", "changed_at", "stage"} <= set(history.columns)
        and (len(history) > 0 if history_present is None else history_present)
    )
    if hist_ok:
        # only the closed deals' history rows (per-deal values depend on the deal's own rows only)
        cols = [c for c in ("opportunity_id", "changed_at", "stage", "amount") if c in history.columns]
        h = history[cols]
        h = h[isin(h["opportunity_id"], closed["opportunity_id"])]
        sc = closed["opportunity_id"].map(stage_changes(h)).astype("float64")
        ac = closed["opportunity_id"].map(amount_change(h, closed)).astype("float64")
    else:
        sc = ac = pd.Series(np.nan, index=closed.index)
    per_deal["stages"] = (sc, "" if hist_ok else "the opportunity_history table")
    per_deal["change"] = (
        ac,
        ""
        if ac.notna().any()
        else ("amounts in opportunity_history" if hist_ok else "the opportunity_history table with amounts"),
    )
    act_ok = activities is not None and "opportunity_id" in activities.columns
    if act_ok:
        counts = activities_per_deal(activities, closed["opportunity_id"])  # counted on the engine
        act = closed["opportunity_id"].astype("str").map(counts).fillna(0).astype("float64")
    else:
        act = pd.Series(np.nan, index=closed.index)
    per_deal["activities"] = (act, "" if act_ok else "the activities table with opportunity_id")

    def stat(key, func, mask):
        s, _ = per_deal[key]
        s = s[mask].dropna()
        return (func(s) if len(s) else np.nan), int(len(s))

    specs = {
        "Average deal size": ("amount", lambda s: s.mean()),
        "Median deal size": ("amount", lambda s: s.median()),
        "Median cycle (days)": ("cycle", lambda s: s.median()),
        "Average stage changes": ("stages", lambda s: s.mean()),
        "Activities per deal": ("activities", lambda s: s.mean()),
        "Median amount change": ("change", lambda s: s.median()),
        "Share of deals that shrank": ("change", lambda s: (s < 0).mean()),
    }
    values = {
        name: (stat(key, func, won), stat(key, func, ~won), per_deal[key][1])
        for name, (key, func) in specs.items()
    }
    return side_table(int(won.sum()), int((~won).sum()), values)


def never_qualified(
    closed: pd.DataFrame,
    history: pd.DataFrame,
    stages: list[str],
    qualifying_stage: str,
    won_stages: list[str],
    lost_stages: list[str],
) -> pd.DataFrame:
    """Closed deals whose history never shows an open stage at or beyond ``qualifying_stage`` in the funnel
    order (won/lost stages do not count). Deals with no history rows are not judged."""
    closed_stages = set(won_stages) | set(lost_stages)
    qrank = stages.index(qualifying_stage)
    qualifying = {s for i, s in enumerate(stages) if i >= qrank and s not in closed_stages}
    ids = closed["opportunity_id"]
    h = history[["opportunity_id", "stage"]]
    h = h[isin(h["opportunity_id"], ids)]
    reached = h.loc[isin(h["stage"], qualifying), "opportunity_id"]
    return closed[isin(ids, h["opportunity_id"]) & ~isin(ids, reached)]


def quality_issues(
    closed: pd.DataFrame,
    history: pd.DataFrame | None = None,
    stages: list[str] | None = None,
    qualifying_stage: str | None = None,
    won_stages=(),
    lost_stages=(),
    check_reasons: bool = True,
    never: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """Named deals the process should fix, one row per (issue, deal): lost with no loss reason; lost with a
    catch-all ("Other") reason (both only with ``check_reasons``: a dataset that records no reasons at all
    is one finding, not one per deal); closed without ever reaching ``qualifying_stage`` (needs history and
    the stage in dataset.yml; ``never``: those deals, found where the history lives, instead of
    ``history``). Ordered by issue, then amount descending, then opportunity_id."""
    lost = closed[closed["outcome"].eq("Lost")]
    reason = _col(lost, "loss_reason")
    parts = (
        [
            _named(lost[reason.isna()], "Lost with no loss reason"),
            _named(lost[is_other_reason(reason)], "Lost with an 'Other' reason"),
        ]
        if check_reasons
        else []
    )
    judged = bool(qualifying_stage and stages and qualifying_stage in stages)
    if judged and never is not None:
        parts.append(_named(never, f"Closed without reaching {qualifying_stage}"))
    elif judged and history is not None:
        nq = never_qualified(
            closed, history, list(stages), qualifying_stage, list(won_stages), list(lost_stages)
        )
        parts.append(_named(nq, f"Closed without reaching {qualifying_stage}"))
    cols = ["issue", "opportunity_id", "rep", "account", "outcome", "close_date", "amount"]
    if not parts:
        return pd.DataFrame(columns=cols)
    out = pd.concat(parts, ignore_index=True)
    out["_r"] = out["issue"].map({p["issue"].iloc[0]: i for i, p in enumerate(parts) if len(p)})
    out = out.assign(_amt=out["amount"].astype("float64"), _id=out["opportunity_id"].astype(str))
    out = out.sort_values(["_r", "_amt", "_id"], ascending=[True, False, True], na_position="last")
    return out.drop(columns=["_r", "_amt", "_id"]).reset_index(drop=True)
