"""The executive summary: the four questions leadership asks, answered on one screen from the pack's figures.

``answers(summary)`` reads the registry figures the three reports recorded in summary.json and returns four
``Answer``s — will we make the number, is the pipeline enough, are the quotas realistic, why do we win and
lose — each with a status (good / watch / bad news, or "unknown" when the data does not say), one sentence,
and the figures behind it (registry labels, formatted values, definitions). The index and the leadership email
show them first. Nothing here computes a figure: it reads them and judges them against their own thresholds.

``look_at(summary, answers)`` then picks the five "what to look at" points of all the reports (each report
records its points with their section, level and figures), leaving out what the four answers already say, and
links each to its section of its report.
"""

from __future__ import annotations

import html
import math
import re
from dataclasses import dataclass, field

from helpers.metrics.pipeline import coverage_focus
from helpers.metrics.registry import LEVELS
from helpers.sections.display import fmt_money, fmt_value, section_id

GOOD, WATCH, BAD, UNKNOWN = "good", "watch", "bad", "unknown"
STATUS_WORDS = {GOOD: "Good news", WATCH: "Watch", BAD: "Bad news", UNKNOWN: "No data"}


@dataclass
class Answer:
    question: str
    status: str
    sentence: str
    link: str | None = None  # the report the answer comes from
    rows: list[dict] = field(default_factory=list)  # key, label, value, definition


class _Figures:
    """The pack's figures by key (each key is recorded by one report)."""

    def __init__(self, summary: dict):
        self.currency = summary.get("dataset", {}).get("currency", "USD")
        self.previous_as_of = (summary.get("previous_period") or {}).get("as_of")
        self.by_key: dict[str, dict] = {}
        self.html: dict[str, str | None] = {}
        for nb in summary.get("notebooks", []):
            for f in nb.get("figures", []):
                self.by_key.setdefault(f["key"], {**f, "notebook": nb.get("name")})
            self.html[nb.get("name")] = nb.get("html") if nb.get("status") == "ok" else None

    def num(self, key: str) -> float:
        v = self.by_key.get(key, {}).get("value")
        return float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else math.nan

    def text(self, key: str) -> str:
        f = self.by_key.get(key)
        if f is None or f.get("value") is None:
            return "n/a"
        return f["value"] if isinstance(f["value"], str) else fmt_value(f["value"], f["unit"], self.currency)

    def money(self, x: float) -> str:
        """A sentence's amount, rounded as a reader says it: $10.9M."""
        return fmt_money(x, self.currency, compact=True)

    def short(self, key: str) -> str:
        """The figure as a sentence says it (amounts rounded: $10.9M)."""
        f = self.by_key.get(key)
        if f is not None and f.get("unit") == "currency" and isinstance(f.get("value"), (int, float)):
            return self.money(f["value"])
        return self.text(key)

    def rows(self, *keys: str) -> list[dict]:
        return [
            {"key": k, "label": f["label"], "value": self.text(k), "definition": f.get("definition", "")}
            for k in keys
            if (f := self.by_key.get(k)) is not None and f.get("value") is not None
        ]

    def window(self, key: str) -> str:
        return self.by_key.get(key, {}).get("window") or ""


def _known(*xs: float) -> bool:
    return all(not math.isnan(x) for x in xs)


def make_the_number(f: _Figures) -> Answer:
    q = "Will we make the number?"
    likely, best = f.num("landing_fy_likely"), f.num("landing_fy_best")
    target, plan = f.num("target_fy"), f.num("plan_ytd")
    goal, goal_name = (target, "the company target") if _known(target) else (plan, "the plan")
    rows = f.rows(
        "target_fy",
        "plan_ytd",
        "landing_fy_commit",
        "landing_fy_likely",
        "landing_fy_best",
        "landing_fy_run_rate",
        "gap_fy",
        "gap_deals_fy",
        "plan_qtd",
        "target_q",
        "landing_q_commit",
        "landing_q_likely",
        "landing_q_best",
        "landing_q_run_rate",
    )
    link = f.html.get("pipeline_health")
    year = f.window("landing_fy_likely").removesuffix(", full year")
    quarter = _quarter_landing(f) + _why_best_below(f)
    if not _known(likely):
        return Answer(q, UNKNOWN, "The year's landing needs closed deals or open pipeline.", link, rows)
    if not _known(goal):
        s = f"{year} lands at {_range(f, 'fy')}; the data has no company target or quotas to compare it with."
        return Answer(q, UNKNOWN, s + quarter, link, rows)
    status = GOOD if likely >= goal else WATCH if _known(best) and best >= goal else BAD
    s = f"{year} lands at {_range(f, 'fy')} against {goal_name} of {f.money(goal)}"
    gap = goal - likely
    if gap > 0:
        deals = f.text("gap_deals_fy") if goal_name == "the company target" else None
        s += f": {f.money(gap)} short" + (
            f", about {deals} more deals at the average deal size." if deals else "."
        )
    else:
        s += f": ahead by {f.money(-gap)}."
    if _known(target, plan) and plan > target:
        s += f" The plan (sum of quotas, {f.short('plan_ytd')}) adds over-assignment on top of the target."
    return Answer(q, status, s + quarter, link, rows)


def _range(f: _Figures, period: str) -> str:
    """ "$10.9M weighted (commit $9.8M, best case $11.2M)" for the year (``period`` "fy") or the quarter ("q")."""
    return (
        f"{f.short(f'landing_{period}_likely')} weighted (commit {f.short(f'landing_{period}_commit')}, "
        f"best case {f.short(f'landing_{period}_best')})"
    )


def _why_best_below(f: _Figures) -> str:
    """A sentence when the year's or the quarter's best case is shown below its weighted landing ("" otherwise).
    Best case (won + Commit + Best Case deals) leaves out the deals in the Pipeline category, which the weighted
    landing counts at their probability: said once, so that the range does not read as a mistake."""

    def below(period: str) -> bool:
        likely, best = f.num(f"landing_{period}_likely"), f.num(f"landing_{period}_best")
        shown = f.short(f"landing_{period}_best") != f.short(f"landing_{period}_likely")
        return _known(likely, best) and best < likely and shown

    if not (below("fy") or (below("q") and f.num("days_left_qtd") != 0)):
        return ""
    return " Best case is below weighted: it leaves out the deals in Pipeline, which weighted counts at their probability."


def _quarter_landing(f: _Figures) -> str:
    """The sentence on the current quarter's landing against its plan and the target's share of it ("" when the
    data gives no quarter landing)."""
    if not _known(f.num("landing_q_likely")):
        return ""
    quarter = f.window("landing_q_likely").removesuffix(", full quarter")
    if f.num("days_left_qtd") == 0 and _known(f.num("bookings_qtd")):
        # the quarter ends on the as-of date: what it booked is the answer, not a range
        s = f" {quarter} closed at {f.short('bookings_qtd')} booked"
    else:
        s = f" {quarter} lands at {_range(f, 'q')}"
    against = []
    if _known(f.num("plan_qtd")):
        against.append(f"the quarter's plan of {f.short('plan_qtd')}")
    if _known(f.num("target_q")):
        against.append(f"its {f.short('target_q')} share of the target")
    return s + (" against " + " and ".join(against) if against else "") + "."


def pipeline_enough(f: _Figures) -> Answer:
    """Coverage of the quarter the pipeline report leads with (this quarter while it has two weeks or more to
    run, else the next); when that quarter has none (no quotas yet, or its quota already booked), the other
    quarter's, saying why."""
    q = "Is the pipeline enough?"
    focus = coverage_focus(f.num("days_left_qtd"))
    other = "next_quarter" if focus == "qtd" else "qtd"
    key = next((k for k in (focus, other) if _known(f.num(f"coverage_{k}"))), focus)
    cov, thr = f.num(f"coverage_{key}"), f.num("coverage_threshold")
    rows = f.rows(
        f"coverage_{key}",
        "coverage_threshold",
        f"open_in_{key}",
        f"pipeline_needed_{key}",
        f"pipeline_shortfall_{key}",
        "pipeline_created_qtd",
    )
    link = f.html.get("pipeline_health")
    if not _known(cov, thr):
        return Answer(q, UNKNOWN, "Coverage needs quotas (or targets) and open pipeline.", link, rows)
    status = GOOD if cov >= thr else WATCH if cov >= 0.75 * thr else BAD
    s = ""
    if key != focus and f.window(f"coverage_{focus}"):
        booked = f.num(f"remaining_{focus}") == 0
        s = f"{f.window(f'coverage_{focus}')} {'has its quota booked' if booked else 'has no quotas yet'}. "
    s += f"Coverage for {f.window(f'coverage_{key}')} is {cov:.2f}× against the {thr:.1f}× needed"
    short = f.num(f"pipeline_shortfall_{key}")
    s += f": {f.short(f'pipeline_shortfall_{key}')} of pipeline still to create." if short > 0 else "."
    return Answer(q, status, s, link, rows)


def quotas_realistic(f: _Figures) -> Answer:
    q = "Are the quotas realistic?"
    share = f.num("quota_expected_share_at_quota")
    rows = f.rows(
        "reps_on_usual_pace_qtd",
        "reps_on_pace_qtd",
        "quota_expected_share_at_quota",
        "quota_company_target",
        "quota_level_target",
        "quota_reps",
        "quota_planned_hires",
        "quota_reps_needed",
    )
    link = f.html.get("quota_setting")
    if not _known(share):
        return Answer(q, UNKNOWN, "The quota realism check needs closed deals by rep.", link, rows)
    realistic = f.by_key.get("quota_realistic", {}).get("value") == "yes"
    status = GOOD if realistic else WATCH if share >= 0.5 else BAD
    plan_year = f.window("quota_expected_share_at_quota").removesuffix(" plan")
    s = f"{share:.0%} of reps are expected to reach their {plan_year} quota"
    s += " — realistic." if realistic else " — the aim is 70–80%."
    if _known(f.num("quota_level_target"), f.num("quota_company_target")) and not realistic:
        s += (
            f" At quotas that share of reps reaches, the team carries {f.short('quota_level_target')} of the "
            f"{f.short('quota_company_target')} target"
        )
        s += (
            f"; carrying it takes about {f.text('quota_reps_needed')} reps ({f.text('quota_reps')} today)."
            if f.by_key.get("quota_reps_needed", {}).get("value") is not None
            else "."
        )
    on_pace, usual = f.num("reps_on_pace_qtd"), f.num("reps_on_usual_pace_qtd")
    if _known(on_pace):
        s += (
            f" {on_pace:.0%} of reps finished {f.window('days_left_qtd') or 'the quarter'} at quota."
            if f.num("days_left_qtd") == 0  # the quarter ends on the as-of date: on pace means at quota
            else f" In {f.window('days_left_qtd') or 'this quarter'}, {usual:.0%} of reps are on the usual pace for "
            f"their quarter quota ({on_pace:.0%} on the straight line)."
            if _known(usual)
            else f" This quarter {on_pace:.0%} of reps are on pace."
        )
    return Answer(q, status, s, link, rows)


def win_and_lose(f: _Figures) -> Answer:
    q = "Why do we win and lose?"
    rows = f.rows(
        "win_rate",
        "win_rate_change",
        "win_rate_count_12m",
        "top_loss_reason",
        "top_loss_reason_share",
        "top_competitor",
        "top_competitor_share",
    )
    link = f.html.get("win_loss_review")
    rate, change = f.num("win_rate"), f.num("win_rate_change")
    if not _known(rate):
        return Answer(q, UNKNOWN, "No deals closed in the review window.", link, rows)
    label = f.by_key.get("win_rate_change", {}).get("label", "")
    noise = "within the noise" in label
    if not _known(change) or noise:
        status = WATCH  # no comparison, or a change the sample sizes cannot tell from chance
    else:
        status = GOOD if change > 0 else BAD
    s = f"Win rate {f.text('win_rate')} in {f.window('win_rate')}"
    if _known(change):
        s += f", {'up' if change >= 0 else 'down'} {abs(change) * 100:.1f} pts on {f.window('win_rate_comparison')}"
        s += " — within the noise." if noise else " — a real shift."
        if not noise:
            s += _twelve_months(f)
    else:
        s += "."
    if f.by_key.get("top_loss_reason"):
        s += f" Top loss reason: {f.text('top_loss_reason')} ({f.text('top_loss_reason_share')} of losses)."
    if f.by_key.get("top_competitor"):
        s += f" Lost most to {f.text('top_competitor')} ({f.text('top_competitor_share')} of losses naming a competitor)."
    return Answer(q, status, s, link, rows)


def _twelve_months(f: _Figures) -> str:
    """The 12-month win rate beside a month's real shift, and where it stood a month earlier: a month swings with
    the quarter (quarter-end months close more of their deals), the 12 months show whether the rate moved."""
    if not _known(f.num("win_rate_count_12m")):
        return ""
    s = f" Over the {f.window('win_rate_count_12m')} it is {f.text('win_rate_count_12m')}"
    prev = (f.by_key["win_rate_count_12m"].get("change") or {}).get("previous")
    if isinstance(prev, (int, float)) and f.previous_as_of:
        s += f" ({fmt_value(prev, f.by_key['win_rate_count_12m']['unit'], f.currency)} to {f.previous_as_of})"
    return s + "."


def answers(summary: dict) -> list[Answer]:
    """The four answers for the pack's ``summary`` (summary.json)."""
    f = _Figures(summary)
    return [make_the_number(f), pipeline_enough(f), quotas_realistic(f), win_and_lose(f)]


@dataclass
class LookAt:
    """One "what to look at" point of the pack, as the index shows it."""

    html: str  # the sentence (the report's Markdown) as HTML
    level: str  # bad, watch or info (``registry.LEVELS``)
    report: str  # the report's title
    link: (
        str | None
    )  # the report's page and the section's anchor: "pipeline_health.html#deals-that-need-attention"


def _inline_html(text: str) -> str:
    """A point's Markdown as inline HTML: the reports write only **bold**, `code` and backslash escapes (data
    text goes through ``escape.markdown``); everything else, raw HTML included, stays text."""
    kept: list[str] = []

    def keep(m):
        kept.append(m.group(1))
        return f"\x00{len(kept) - 1}\x00"

    s = html.escape(re.sub(r"\\(.)", keep, text), quote=False)
    s = re.sub(r"\*\*(.+?)\*\*", r"<strong>\1</strong>", s)
    s = re.sub(r"`([^`]+)`", r"<code>\1</code>", s)
    return re.sub(r"\x00(\d+)\x00", lambda m: html.escape(kept[int(m.group(1))], quote=False), s)


def look_at(summary: dict, found: list[Answer] | None = None, n: int = 5) -> list[LookAt]:
    """The ``n`` points to look at across the pack's reports: their "what to look at" points (summary.json),
    without those that restate a figure one of the four answers (``found``) already shows, ranked bad news
    first, then watch, then information; within a level the reports take turns, each in its own order."""
    answered = {r["key"] for a in (found if found is not None else answers(summary)) for r in a.rows}
    queues = []
    for nb in summary.get("notebooks", []):
        if nb.get("status") != "ok":
            continue
        pts = [p for p in nb.get("points", []) if not answered & set(p.get("keys", []))]
        queues.append((nb, pts))
    ranked = []
    for level in LEVELS:
        per_report = [[(nb, p) for p in pts if p.get("level") == level] for nb, pts in queues]
        while any(per_report):
            for q in per_report:
                if q:
                    ranked.append(q.pop(0))
    out = []
    for nb, p in ranked[:n]:
        page = nb.get("html")
        sid = section_id(p.get("section") or "")
        out.append(
            LookAt(
                _inline_html(p["text"]),
                p.get("level", "info"),
                nb.get("title") or nb.get("name", ""),
                (f"{page}#{sid}" if sid else page) if page else None,
            )
        )
    return out
