"""The activity section of the pipeline health report (and of a rep's review pack).

``show(ctx, scope, who)`` renders volume, outcomes, yield, benchmarks and logging completeness for the
company, a team (``who`` = team name in ``reps.team``) or a rep (``who`` = rep id), and adds the headline
figures to ``ctx.headlines``. Every number comes from ``helpers.metrics.activity``; this module only chooses
windows, filters to the scope, and displays.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from helpers.data import escape
from helpers.data.calendar import trailing_text, trailing_window, weeks_window
from helpers.metrics import activity as A
from helpers.metrics import pipeline as pl
from helpers.metrics import quota as Q
from helpers.sections import plots
from helpers.sections.display import count_noun, definitions, fold_table, markdown, note, rep_label

SECTION = "The activity tracker"
VOLUME_WEEKS = 13  # volume, outcomes and hit rates: the 13 weeks to as-of
YIELD_MONTHS = 12  # yield, win association, completeness, funnel rates: the 12 months to as-of
ACTUAL_MONTHS = 3  # benchmark: actual activity per month over the last 3 months
CAVEAT = (
    "CRM activity logs capture only part of real selling activity (calls from mobiles, emails outside "
    "the CRM, meetings never logged). Every figure here counts logged activity only: volumes and "
    "activity-per-deal are lower bounds, hit rates and win associations describe logged activity, and "
    "reps flagged below distort team medians and the funnel rates behind the benchmark."
)


def weeks13(as_of) -> str:
    return f"{VOLUME_WEEKS} weeks to {as_of:%Y-%m-%d}"


def months12(as_of) -> str:
    return trailing_text(as_of, YIELD_MONTHS)


def months3(as_of) -> str:
    return trailing_text(as_of, ACTUAL_MONTHS)


def _scope_owners(ctx, scope: str, who: str) -> tuple[list[str] | None, str, str | None]:
    """(owners in scope or None for everyone, label, problem sentence or None)."""
    reps = ctx.ds.reps
    if scope == "company":
        return None, "company", None
    if scope == "team":
        if reps is None or "team" not in reps.columns:
            return (
                [],
                f"team {who}",
                ctx.ds.missing("reps", "team", section="The activity tracker at team scope"),
            )
        owners = reps.loc[reps["team"].astype("str") == str(who), "rep_id"].astype("str").tolist()
        if not owners:
            return [], f"team {who}", f"No reps in team {who!r} in the `reps` table."
        return owners, f"team {who}", None
    if scope == "rep":
        name = who
        if reps is not None and "name" in reps.columns:
            hit = reps.loc[reps["rep_id"].astype("str") == str(who), "name"]
            if len(hit) and pd.notna(hit.iloc[0]):
                name = f"{hit.iloc[0]} ({who})"
        return [str(who)], f"rep {name}", None
    raise ValueError(f"scope must be 'company', 'team' or 'rep', got {scope!r}")


def _only(df: pd.DataFrame, col: str, owners: list[str] | None, keep=()) -> pd.DataFrame:
    if owners is None:
        return df
    return df[df[col].astype("str").isin(list(owners) + list(keep))]


def show(ctx, scope: str = "company", who: str = "") -> None:
    """Display the activity section for ``scope`` (company / team / rep) and add its headline figures."""
    msg = ctx.missing("activities", "owner", "type", "occurred_at", section=SECTION)
    if msg:
        note(msg)
        return
    owners, label, problem = _scope_owners(ctx, scope, who)
    if problem:
        note(problem)
        return
    act_all = ctx.activities  # engine tables: the log and the deals stay where they live
    opps_all = ctx.source("opportunities")
    act = A.scoped(act_all, owners)
    opps = A.opportunities(opps_all, owners)
    as_of = ctx.as_of
    vstart, vend = weeks_window(as_of, VOLUME_WEEKS)
    ystart, yend = trailing_window(as_of, YIELD_MONTHS)
    if A.count(act, weeks_window(as_of, 2 * VOLUME_WEEKS)[0], vend) == 0:
        note(f"No activity logged for {label} in the {2 * VOLUME_WEEKS} weeks to {as_of:%Y-%m-%d}.")
    markdown(
        f"Activity for **{escape.markdown(label)}**: volume and outcomes over the {VOLUME_WEEKS} weeks "
        f"{vstart:%Y-%m-%d} – {vend:%Y-%m-%d}; yield and benchmarks over the {YIELD_MONTHS} months to "
        f"{as_of:%Y-%m-%d}."
    )
    note(CAVEAT)
    _volume(ctx, act_all, act, owners, scope, vstart, vend)
    _outcomes(ctx, act, vstart, vend)
    deals, company = _yield(ctx, act, act_all, opps, owners, ystart, yend)
    _benchmarks(ctx, act_all, opps_all, owners)
    _time_and_completeness(
        ctx,
        act,
        act_all,
        opps_all,
        owners,
        vstart,
        vend,
        ystart,
        yend,
        deals if owners is None else None,
        company,
    )
    definitions(
        "week",
        "outbound_touches",
        "held",
        "no_show_rate",
        "hit_rate",
        "share_tied_to_an_opportunity",
        "activities_per_deal_won",
        "needed_per_month",
    )


# --------------------------------------------------------------------------------------------------
def _volume(ctx, act_all, act, owners, scope, start, end) -> None:
    markdown("### Activity volume")
    vol = A.rep_volume(act_all, ctx.as_of, VOLUME_WEEKS, ctx.ds.reps)
    vol = _only(vol, "rep", owners)
    vol = vol[(vol["total"] > 0) | (vol["prior"] > 0) | (owners is not None)]
    types = [t for t in A.ACTIVITY_TYPES if t in vol.columns]
    cols = (
        ["rep", "team"]
        + (["role"] if "role" in vol.columns else [])
        + types
        + ["total", "outbound", "per_working_day", "per_month", "team_median", "vs_team_median", "trend"]
    )
    shown = (
        vol[cols]
        .sort_values("total", ascending=False)
        .rename(
            columns={
                "total": "per week",
                "outbound": "outbound / week",
                "per_working_day": "per working day",
                "per_month": "per month",
                "team_median": "team median / week",
                "vs_team_median": "vs team median",
                "trend": "vs prior 13 weeks",
            }
        )
    )
    fold_table(
        shown,
        decimals=types
        + ["per week", "outbound / week", "per working day", "per month", "team median / week"],
        ratio=["vs team median"],
        pct=["vs prior 13 weeks"],
        caption=f"Activities per rep per week by type ({start:%Y-%m-%d} – {end:%Y-%m-%d})",
    )
    per_rep = vol.loc[vol["total"] > 0, "total"]
    ctx.headlines.add(
        "activity_per_rep_week", float(per_rep.median()) if len(per_rep) else None, weeks13(ctx.as_of)
    )
    weekly = A.activity_counts(act, start, end, "W", owners=owners, per_owner=False)
    if scope != "rep" and weekly["total"].sum() == 0:
        return
    fig, ax = plots.new_figure(9, 3.6)
    if scope == "rep" and owners:
        team = vol["team"].iloc[0] if len(vol) else None
        med = A.team_weekly_median(act_all, start, end, ctx.ds.reps, team)
        ax.plot(weekly.index, weekly["total"], marker="o", color=plots.OPEN, label=rep_label(owners[0]))
        if len(med):
            ax.plot(med["period"], med["median"], linestyle="--", color=plots.NEUTRAL, label=f"{team} median")
        ax.legend(frameon=False)
        plots.finish(fig, ax, "Weekly activities: rep vs team median", "week ending", "activities")
    else:
        tcols = [t for t in types if weekly[t].sum() > 0]
        bottom = plots.stacked_bars(ax, weekly[tcols])
        ax.set_ylim(0, max(1.0, float(bottom.max())) * 1.2)
        ax.legend(frameon=False, ncols=len(tcols) or 1, loc="upper left")
        plots.finish(fig, ax, "Weekly logged activities by type", "week ending", "activities")


def _outcomes(ctx, act, start, end) -> None:
    markdown("### Outcomes: meetings, demos and hit rates")
    mo = A.meeting_outcomes(act, start, end)
    fold_table(
        mo,
        ints=["booked", "held", "no_show", "scheduled", "positive", "other"],
        pct=["no_show_rate", "positive_rate"],
        caption="Meetings and demos",
    )
    both = mo[mo["type"] == "meeting+demo"].iloc[0]
    ctx.headlines.add("activity_no_show_rate", both["no_show_rate"], weeks13(ctx.as_of))
    ctx.headlines.add("activity_meetings_held", int(both["held"]), weeks13(ctx.as_of))
    hr = A.hit_rates(act, start, end, "channel")
    fold_table(hr, ints=["attempts", "hits"], pct=["hit_rate"], caption="Hit rate by channel")
    rate = hr.set_index("channel")["hit_rate"]
    ctx.headlines.add("activity_call_connect_rate", rate.get("call"), weeks13(ctx.as_of))
    ctx.headlines.add("activity_email_reply_rate", rate.get("email"), weeks13(ctx.as_of))
    wd = A.hit_rates(act, start, end, "weekday")
    wd = wd[wd["attempts"] > 0]
    attempts, hits = int(hr["attempts"].sum()), int(hr["hits"].sum())
    if not attempts:
        note(f"No calls, emails or social touches with an outcome logged yet in the {VOLUME_WEEKS} weeks.")
    elif not hits:  # every rate is 0: a chart would be an empty −4%…+4% axis
        note(
            f"None of the {count_noun(attempts, 'attempt')} logged in the {VOLUME_WEEKS} weeks connected or got "
            "a reply yet, so there are no hit rates by day or hour to show."
        )
    if len(wd) and hits:
        fig, ax = plots.new_figure(9, 3.4)
        pivot = wd.pivot(index="weekday", columns="channel", values="hit_rate").reindex(
            [d for d in A.WEEKDAYS if d in set(wd["weekday"])]
        )
        pivot.plot(kind="bar", ax=ax, color=plots.PALETTE[: pivot.shape[1]], rot=0, width=0.75)
        plots.percent_axis(ax)
        ax.legend(frameon=False)
        plots.finish(fig, ax, "Hit rate by day of week", "day of week", "hit rate")
    hours = A.hit_rates(act, start, end, "hour")
    calls = hours[(hours["channel"] == "call") & (hours["attempts"] > 0)]
    call_attempts = int(hr.loc[hr["channel"] == "call", "attempts"].sum())
    if not hits:
        pass  # said above
    elif not call_attempts:
        note(f"No calls logged yet in the {VOLUME_WEEKS} weeks, so there is no connect rate by hour.")
    elif not calls["hits"].sum():
        note(
            f"None of the {count_noun(call_attempts, 'call')} logged in the {VOLUME_WEEKS} weeks connected yet, "
            "so there is no connect rate by hour."
        )
    elif len(calls):
        fig, ax = plots.new_figure(9, 3.2)
        ax.bar(calls["hour"], calls["hit_rate"], color=plots.OPEN)
        ax.set_xticks(calls["hour"])
        plots.percent_axis(ax)
        plots.finish(
            fig, ax, "Call connect rate by hour of day", "hour (local time of the log)", "connect rate"
        )
    else:
        note("The activity log has no time of day, so hit rate by hour cannot be shown.")


def _yield(ctx, act, act_all, opps, owners, start, end) -> tuple[A.DealActivity, pd.DataFrame]:
    """Shows the yield; gives the company's deal activity (the scope's: ``owners`` None) and yield."""
    markdown("### Yield: what activity turns into")
    share = A.opportunity_share(act, start, end)
    fold_table(
        share,
        ints=["activities", "tied"],
        pct=["share_tied"],
        caption=f"Activities tied to an opportunity ({start:%Y-%m-%d} – {end:%Y-%m-%d})",
    )
    all_row = share[share["type"] == "all"].iloc[0]
    ctx.headlines.add("activity_share_tied", all_row["share_tied"], months12(ctx.as_of))
    y = A.activity_yield(act, opps, start, end)
    company = y if owners is None else A.activity_yield(act_all, ctx.source("opportunities"), start, end)
    y = y[(y["rep"] == "All reps") | (y[["activities", "opps_created", "deals_won"]].sum(axis=1) > 0)]
    tot = y[y["rep"] == "All reps"].iloc[0]
    fold_table(
        y if owners is None else _yield_compared(ctx, y, company, act_all, owners, start, end),
        ints=["activities", "opps_created", "deals_won"],
        decimals=["activities_per_opp_created", "activities_per_won_deal"],
        caption="Activities per opportunity created and per deal won (all activities, ratio of totals)",
    )
    ctx.headlines.add("activity_per_won_deal", tot["activities_per_won_deal"], months12(ctx.as_of))
    deals = A.deal_activity(act_all, opps, start, end)
    if not len(deals):
        note("No deals closed in the last 12 months, so there is nothing to associate activity with.")
        return deals, company
    w = A.won_deal_activity(deals)
    if not w["won_deals"]:
        note("No won deals closed in the last 12 months, so there is no activity per won deal yet.")
    else:
        note(
            f"Won deals closed in the last 12 months: {w['won_deals']:,}; tied activity per won deal: mean "
            f"{w['mean_per_won_deal']:.1f}, median {w['median_per_won_deal']:.0f}; "
            f"{w['share_won_without_activity']:.0%} of won deals have no activity logged on the deal."
        )
    markdown(
        "Which activity precedes wins: win rate of deals closed in the last 12 months that had at least one "
        "activity of a type, against those that had none. **This is association, not cause**: deals that "
        "are going well attract demos and meetings, and a deal with nothing logged may just be unlogged."
    )
    assoc = A.win_association(deals, min_deals=5)
    fold_table(
        assoc,
        ints=["deals_with", "won_with", "deals_without", "won_without"],
        pct=["win_rate_with", "win_rate_without"],
        points=["difference"],
        caption="Win rate with vs without (difference = with − without, in percentage points)",
    )
    if deals.segments["segment"].notna().any():
        seg = A.win_association(deals, by="segment", min_deals=5)
        seg = seg[seg["type"].isin(["meeting", "demo"])]
        fold_table(
            seg,
            ints=["deals_with", "deals_without"],
            pct=["win_rate_with", "win_rate_without"],
            points=["difference"],
            caption="Meetings and demos vs win rate, by segment (association)",
        )
    seqs = A.winning_sequences(act_all, opps, start, end)
    fold_table(
        seqs.head(10),
        ints=["deals", "won"],
        pct=["win_rate", "share_of_wins"],
        caption="Opening activity sequences of closed deals (first three types, repeats collapsed)",
    )
    return deals, company


def _yield_compared(
    ctx, y: pd.DataFrame, company: pd.DataFrame, act_all, owners: list[str], start, end
) -> pd.DataFrame:
    """The yield rows of the reps in scope, then the same ratios for their team (a rep's pack: the rep's team)
    and for the company (``company``: its ``activity_yield``), so a rep or a team is compared with
    something other than itself."""
    opps_all = ctx.source("opportunities")
    rows = [y[y["rep"] != "All reps"]]
    reps = ctx.ds.reps
    teams = []
    if reps is not None and "team" in reps.columns:
        teams = reps.loc[reps["rep_id"].astype("str").isin(owners), "team"].dropna().astype("str").unique()
    if len(teams) == 1:  # the scope's one team (a rep's, or the team itself)
        team = teams[0]
        members = reps.loc[reps["team"].astype("str") == team, "rep_id"].astype("str").tolist()
        ty = A.activity_yield(A.scoped(act_all, members), A.opportunities(opps_all, members), start, end)
        rows.append(ty[ty["rep"] == "All reps"].assign(rep=f"Team {team} (all its reps)"))
    rows.append(company[company["rep"] == "All reps"].assign(rep="Company (all reps)"))
    return pd.concat(rows, ignore_index=True)


CHART_MAX_REPS = 40


def _benchmarks(ctx, act_all, opps_all, owners) -> None:
    markdown("### Benchmarks: activity the quota needs")
    msg = ctx.missing("quotas", "rep_id", "period_start", "quota", section="The activity benchmark")
    msg = msg or ctx.missing("opportunities", "amount", section="The activity benchmark (quota ÷ deal size)")
    if msg:
        note(msg)
        return
    quotas = ctx.ds.quotas
    if quotas is None:  # left where they live: only the rows that can cover the as-of day come back
        quotas = pl.quotas_between(ctx.source("quotas"), owners, ctx.as_of, ctx.as_of)
    mq = A.monthly_quota(quotas, ctx.as_of)
    if owners is not None:
        mq = mq[mq.index.isin(owners)]
    active = A.active_reps(ctx.ds.reps, ctx.as_of, ctx.as_of)
    mq = mq[(mq > 0) & (mq.index.isin(active) if active else True)]
    if not len(mq):
        note("No bookings quota covers this month for the reps in scope, so there is no benchmark.")
        return
    needed, rates = Q.benchmark_needs(act_all, opps_all, mq, ctx.as_of, YIELD_MONTHS, reps=ctx.ds.reps)
    astart, aend = trailing_window(ctx.as_of, ACTUAL_MONTHS)
    actual = A.actual_activity(act_all, astart, aend, ACTUAL_MONTHS)
    gap = A.benchmark_gap(needed, actual)
    note(
        f"Reverse funnel, measured over the {YIELD_MONTHS} months to {ctx.as_of:%Y-%m-%d} for the "
        f"whole company, from AEs' own activity: average deal {ctx.money(rates['avg_deal_size'])}, win rate "
        f"{rates['win_rate']:.0%}, {rates['calls_per_opp']:.1f} AE calls, {rates['meetings_per_opp']:.2f} AE "
        f"meetings and {rates['demos_per_opp']:.2f} AE demos held per opportunity created. SDR calls and "
        "meetings are not counted against AEs: the opportunities SDR meetings source are part of the "
        "opportunities AEs work, so the chain says what AEs' own activity takes at today's mix. Actual = "
        f"monthly average over the last {ACTUAL_MONTHS} months."
    )
    cols = [
        "rep",
        "monthly_quota",
        "opportunities",
        "calls_needed",
        "calls_actual",
        "calls_gap",
        "meetings_needed",
        "meetings_actual",
        "meetings_gap",
        "demos_needed",
        "demos_actual",
        "demos_gap",
    ]
    fold_table(
        gap[cols].sort_values("calls_gap", ascending=False),
        money=["monthly_quota"],
        decimals=cols[2:],
        currency=ctx.currency,
        caption="Per month: needed vs actual (gap = needed − actual; positive = short)",
    )
    short = int((gap["calls_gap"] > 0).sum())
    ctx.headlines.add("activity_reps_short_of_calls", short, months3(ctx.as_of))
    ctx.headlines.add("activity_calls_gap", float(gap["calls_gap"].sum()), months3(ctx.as_of))
    title = "Calls per month: needed for quota vs actual"
    if (
        len(gap) > CHART_MAX_REPS
    ):  # a bar per rep stops being readable (and costs seconds to draw); the table has all
        gap = gap.nlargest(CHART_MAX_REPS, "calls_gap")
        title += f" — the {CHART_MAX_REPS} reps furthest short"
    g = gap.sort_values("calls_needed")
    fig, ax = plots.new_figure(9, max(2.2, 0.4 * len(g) + 1.2))
    names = g["rep"].map(rep_label)  # names, as the tables show them
    pos = np.arange(len(g))  # each rep: needed above, actual below, side by side (one bar each)
    ax.barh(pos + 0.2, g["calls_needed"], height=0.4, color=plots.NEUTRAL, label="needed")
    ax.barh(pos - 0.2, g["calls_actual"], height=0.4, color=plots.OPEN, label="actual")
    ax.set_yticks(pos, names)
    ax.set_ylim(-0.7, len(g) - 0.3)
    ax.legend(frameon=False, loc="upper left", bbox_to_anchor=(1.0, 1.0))  # beside the bars, never on them
    plots.finish(fig, ax, title, "calls per month", "")


def _time_and_completeness(
    ctx, act, act_all, opps_all, owners, vstart, vend, ystart, yend, deals=None, yields=None
) -> None:
    markdown("### Time and completeness")
    if A.has_durations(act):
        tt = A.time_by_type(act, vstart, vend, VOLUME_WEEKS)
        n_reps = max(1, A.count(act, vstart, vend, distinct="owner"))
        tt["hours_per_rep_week"] = tt["hours_per_week"] / n_reps
        fold_table(
            tt[["type", "activities", "logged_share", "avg_minutes", "hours_per_week", "hours_per_rep_week"]],
            ints=["activities"],
            pct=["logged_share"],
            decimals=["avg_minutes", "hours_per_week", "hours_per_rep_week"],
            caption="Time logged by activity type (13 weeks)",
        )
    else:
        note("Time spent needs the duration_minutes column in the `activities` table.")
    lc = A.logging_completeness(act_all, opps_all, ystart, yend, deals=deals, yields=yields)
    lc = _only(lc, "rep", owners)
    flagged = lc[lc["flag"]]
    ctx.headlines.add("activity_reps_flagged_logging", int(len(flagged)), months12(ctx.as_of))
    if len(flagged):
        fold_table(
            flagged[
                [
                    "rep",
                    "deals_won",
                    "bookings",
                    "activities",
                    "activities_per_won_deal",
                    "median_per_won_deal",
                    "won_without_activity",
                    "reason",
                ]
            ],
            ints=["deals_won", "activities", "won_without_activity"],
            money=["bookings"],
            decimals=["activities_per_won_deal", "median_per_won_deal"],
            currency=ctx.currency,
            caption="Reps whose logged activity is implausibly low for their bookings",
        )
        note(
            f"{count_noun(len(flagged), 'rep')} {'books' if len(flagged) == 1 else 'book'} deals with far less "
            "logged activity than their peers. Their activity "
            "is under-recorded, not absent: their volumes, hit rates and gaps above are understated, they pull "
            "the team median down, and they inflate the measured yield per activity (and so shrink the "
            "activity the reverse funnel says a quota needs).",
            warn=True,
        )
    else:
        note(
            "No rep's logged activity looks implausibly low for their bookings (activities per won deal under "
            "25% of the median rep, or most won deals without logged activity)."
        )
