"""What a one-to-one review shows beyond the pipeline health sections: what changed since last week per deal
and the standard questions per deal, pre-filled from CRM fields where the dataset has them.

- ``deal_changes(before, now, config)``: what changed since last week, per deal (new, advanced,
  moved back, slipped, pulled in, amount changed, won, dropped).
- ``review_questions(deals, opps, activities, as_of)``: for each deal the standard questions, pre-filled
  from CRM fields where the dataset has them and left blank for the meeting where it does not.
"""

from __future__ import annotations

import html

import pandas as pd

from helpers.metrics.activity import recent_activity

QUESTIONS = ("Next step", "What has to happen to close", "Obstacles", "Who is engaged")
# CRM fields (beyond the data contract, kept when an export carries them) that answer each question.
QUESTION_FIELDS = {
    "Next step": ("next_step",),
    "What has to happen to close": (
        "close_plan",
        "path_to_close",
        "mutual_action_plan",
        "next_steps_to_close",
    ),
    "Obstacles": ("obstacles", "risks", "blockers", "competitor"),
    "Who is engaged": ("contacts", "engaged_contacts", "champion", "decision_maker", "economic_buyer"),
}


# --------------------------------------------------------------------------------------------------
# what changed since last week
# --------------------------------------------------------------------------------------------------
def deal_changes(before: pd.DataFrame, now: pd.DataFrame, config) -> pd.DataFrame:
    """Changes between two snapshots (``helpers.metrics.history.snapshots`` at as_of − 7 days and as_of), one row
    per (deal, change), for deals open at either date:

    - new: not existing before; won / dropped: open before (or new), won / lost now
    - advanced / moved back: open at both, later / earlier stage in the funnel order
    - slipped / pulled in: open now, expected close date later / earlier than before
    - amount changed: open at both, amount differs"""
    rank = {s: i for i, s in enumerate(config.stages)}
    cols = ["opportunity_id", "stage", "amount", "close_date", "is_open", "is_won", "is_lost"]
    b = before[cols].set_index("opportunity_id").add_suffix("_before")
    n = now[cols + [c for c in ("owner",) if c in now.columns]].set_index("opportunity_id")
    d = n.join(b, how="left")
    existed = d["stage_before"].notna()
    open_before = d["is_open_before"].fillna(False).astype(bool)
    was_live = open_before | ~existed
    d = d[was_live & (d["is_open"] | open_before | ~existed)]
    existed = d["stage_before"].notna()
    open_before = d["is_open_before"].fillna(False).astype(bool)
    both_open = open_before & d["is_open"]
    r_now, r_before = d["stage"].map(rank), d["stage_before"].map(rank)

    def fmt_date(x):
        return "" if pd.isna(x) else pd.Timestamp(x).strftime("%Y-%m-%d")

    rows = []
    for oid, r in d.iterrows():
        e = bool(existed[oid])
        if not e:
            rows.append((oid, "new", f"created in {r['stage']}"))
        if r["is_won"] and not bool(r.get("is_won_before") is True):
            rows.append((oid, "won", f"won at {r['amount']:,.0f}" if pd.notna(r["amount"]) else "won"))
        if r["is_lost"] and (open_before[oid] or not e):
            rows.append((oid, "dropped", f"lost (was {r['stage_before'] if e else 'new'})"))
        if both_open[oid]:
            if r_now[oid] > r_before[oid]:
                rows.append((oid, "advanced", f"{r['stage_before']} → {r['stage']}"))
            elif r_now[oid] < r_before[oid]:
                rows.append((oid, "moved back", f"{r['stage_before']} → {r['stage']}"))
            a0, a1 = r["amount_before"], r["amount"]
            if pd.notna(a0) and pd.notna(a1) and a0 != a1:
                rows.append((oid, "amount changed", f"{a0:,.0f} → {a1:,.0f}"))
        if r["is_open"] and e and pd.notna(r["close_date_before"]) and pd.notna(r["close_date"]):
            days = (r["close_date"] - r["close_date_before"]).days
            if days > 0:
                rows.append(
                    (
                        oid,
                        "slipped",
                        f"close {fmt_date(r['close_date_before'])} → {fmt_date(r['close_date'])} (+{days} d)",
                    )
                )
            elif days < 0:
                rows.append(
                    (
                        oid,
                        "pulled in",
                        f"close {fmt_date(r['close_date_before'])} → {fmt_date(r['close_date'])} ({days} d)",
                    )
                )
    out = pd.DataFrame(rows, columns=["opportunity_id", "change", "detail"])
    order = {
        c: i
        for i, c in enumerate(
            ["new", "advanced", "won", "slipped", "pulled in", "amount changed", "moved back", "dropped"]
        )
    }
    info = now.set_index("opportunity_id")
    for c in ("stage", "amount", "close_date"):
        out[c] = out["opportunity_id"].map(info[c])
    return (
        out.assign(_o=out["change"].map(order))
        .sort_values(["_o", "amount"], ascending=[True, False])
        .drop(columns="_o")
        .reset_index(drop=True)
    )


def changes_without_history(opps: pd.DataFrame, as_of, days: int = 7) -> pd.DataFrame:
    """Without history: deals created (new) or closed (won / dropped) in the last ``days`` days."""
    as_of = pd.Timestamp(as_of)
    since = as_of - pd.Timedelta(days=days - 1)
    rows = []
    for _, r in opps.iterrows():
        if since <= r["created_date"] <= as_of:
            rows.append((r["opportunity_id"], "new", f"created in {r['stage']}"))
        if bool(r["is_closed"]) and pd.notna(r["close_date"]) and since <= r["close_date"] <= as_of:
            rows.append((r["opportunity_id"], "won" if bool(r["is_won"]) else "dropped", str(r["stage"])))
    out = pd.DataFrame(rows, columns=["opportunity_id", "change", "detail"])
    info = opps.set_index("opportunity_id")
    # (not Series.map: pandas 3's raises on an empty datetime one)
    for c in ("stage", "amount", "close_date"):
        out[c] = info[c].reindex(out["opportunity_id"]).array
    return out


# --------------------------------------------------------------------------------------------------
# the standard questions
# --------------------------------------------------------------------------------------------------
def _text(v) -> str:
    if v is None or (not isinstance(v, str) and pd.isna(v)):
        return ""
    return str(v).strip()


def review_questions(
    deals: pd.DataFrame,
    opps: pd.DataFrame,
    activities: pd.DataFrame | None = None,
    as_of=None,
    activity_days: int = 30,
) -> pd.DataFrame:
    """One row per (deal, question) for ``deals`` (rows of ``opps``' ids): ``from_crm`` holds the answer
    found in the CRM fields of ``QUESTION_FIELDS`` (named, e.g. "competitor: Globex"), empty when the
    dataset has none — the meeting fills it in. ``recent_activity`` summarises the deal's logged activity
    in the last ``activity_days`` days (counts by type) as evidence for "who is engaged"."""
    info = opps.set_index("opportunity_id")
    recent = {}
    if activities is not None and "opportunity_id" in activities.columns and as_of is not None:
        a = recent_activity(activities, deals["opportunity_id"], as_of, activity_days)
        for oid, g in a.groupby("opportunity_id"):
            counts = g["type"].value_counts()
            recent[oid] = (
                ", ".join(f"{n} {t}{'s' if n > 1 else ''}" for t, n in counts.items())
                + f" (last {g['occurred_at'].max():%Y-%m-%d})"
            )
    rows = []
    for oid in deals["opportunity_id"]:
        r = info.loc[oid]
        for q in QUESTIONS:
            found = []
            for f in QUESTION_FIELDS[q]:
                if f in info.columns and _text(r[f]):
                    found.append(
                        _text(r[f])
                        if f in ("next_step",) or len(QUESTION_FIELDS[q]) == 1
                        else f"{f.replace('_', ' ')}: {_text(r[f])}"
                    )
            rows.append(
                {
                    "opportunity_id": oid,
                    "question": q,
                    "from_crm": "; ".join(found),
                    "recent_activity": recent.get(oid, "") if q == "Who is engaged" else "",
                }
            )
    return pd.DataFrame(rows)


def questions_html(deals: pd.DataFrame, questions: pd.DataFrame, currency: str = "USD") -> str:
    """The question sheet: per deal a heading line and a table Question | From the CRM | Notes (blank)."""
    from helpers.sections.display import TABLE_CSS, fmt_money

    parts = [TABLE_CSS]
    for _, d in deals.iterrows():
        oid = d["opportunity_id"]
        head = " · ".join(
            x
            for x in (
                str(oid),
                _text(d.get("account")),
                _text(d.get("stage")),
                fmt_money(d.get("amount"), currency),
                f"close {d['close_date']:%Y-%m-%d}" if pd.notna(d.get("close_date")) else "no close date",
            )
            if x
        )
        rows = []
        for _, q in questions[questions["opportunity_id"] == oid].iterrows():
            crm = html.escape(q["from_crm"]) if q["from_crm"] else "<em>not in the CRM — ask</em>"
            if q["recent_activity"]:
                crm += f"<br><small>activity, last 30 days: {html.escape(q['recent_activity'])}</small>"
            rows.append(
                f"<tr><td>{html.escape(q['question'])}</td><td>{crm}</td>"
                "<td style='min-width:220px;border-bottom:1px solid #999'>&nbsp;</td></tr>"
            )
        parts.append(
            f'<div class="rv-table rv-wrap"><table><caption>{html.escape(head)}</caption>'
            "<thead><tr><th>Question</th><th>From the CRM</th><th>Notes for the meeting</th></tr>"
            f"</thead><tbody>{''.join(rows)}</tbody></table></div>"
        )
    return "".join(parts)
