"""Win/loss review: win rates with intervals, why we lose, won vs lost, the meeting's lists, data quality.

Definitions used throughout (``docs/metrics.md``, section "Win/loss", is the reader's copy):

- **Closed in the window**: ``is_closed`` and ``start <= close_date <= as_of``. Without any close date in
  the data (survey-style records) every closed record is in scope and the review says so.
- **Win rate (count)** = won ÷ (won + lost) among deals closed in the window.
- **Win rate (value)** = won amount ÷ (won amount + lost amount) over the closed deals with a known amount;
  not given (NaN) when a group has lost deals but none of them carries a positive amount.
- **Wilson interval (95%)** for ``w`` wins out of ``n``: with ``p = w/n`` and ``z = 1.96``,
  ``centre = (p + z²/2n) / (1 + z²/n)`` and ``half = z/(1 + z²/n) · √(p(1−p)/n + z²/4n²)``;
  the interval is ``centre ± half``. It is a count interval; value rates have none.
- **Pooling**: groups with fewer than ``min_deals`` closed deals are merged into one row
  ``"Other (n<min_deals)"`` (their number in ``groups_pooled``), never dropped.
- **Cycle length** = ``close_date − created_date`` in days.
- **Duplicate record**: a row equal to an earlier row in every column except ``opportunity_id`` (blank equals
  blank), among rows that name an account and either carry a date or are closed. (An open row with no date,
  an early prospect, cannot be told apart from a genuine second deal with the same account and product.)
  The first row in file order is kept; later ones are reported and left out of every figure.
- **Possible duplicate**: the same equality among the other rows (thin, survey-style records with no
  account, or no date and not closed): nothing proves two such rows are one deal, so they stay counted,
  and the data-quality table says how many there are.
- **Top-N lists** are ordered by amount (largest first, unknown last), ties broken by ``opportunity_id``
  ascending (as text); churned customers by lost amount, then account name.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import ibis
import numpy as np
import pandas as pd

from helpers.data import escape
from helpers.data.calendar import FiscalCalendar, Window, month_labels, period_bounds
from helpers.metrics import expr as ex
from helpers.metrics import rates as R
from helpers.metrics.activity import table as activity_table
from helpers.metrics.pipeline import isin, map_unique
from helpers.metrics.registry import Fig, Point

Z95 = 1.959963984540054  # standard normal quantile for a two-sided 95% interval
NOT_SET = "(not set)"
NO_REASON = "(no reason)"
OTHER_REASON_WORDS = {"other", "others", "misc", "miscellaneous", "unknown", "n/a", "na", "none", "-"}

DIMENSIONS: dict[str, str] = {
    "segment": "Segment",
    "region": "Region",
    "source": "Source",
    "product": "Product",
    "size_band": "Deal size",
    "deal_type": "Deal type",
    "rep": "Rep",
    "team": "Team",
}


def other_label(min_deals: int) -> str:
    return f"Other (n<{min_deals})"


# --------------------------------------------------------------------------------------------------
# windows
# --------------------------------------------------------------------------------------------------
def make_window(date, kind: str, cal: FiscalCalendar, as_of=None) -> Window:
    """The month (``kind="month"``) or fiscal quarter (``"quarter"``) containing ``date``; its to-date end is
    ``min(end, as_of)``."""
    d = pd.Timestamp(date).normalize()
    if kind == "month":
        start = d.replace(day=1)
        end = start + pd.offsets.MonthEnd(0)
        label = start.strftime("%Y-%m")
    elif kind == "quarter":
        start = cal.quarter_start(d)
        end = start + pd.DateOffset(months=3) - pd.Timedelta(days=1)
        label = cal.quarter_label(d)
    else:
        raise ValueError(f"review_window must be 'month' or 'quarter', got {kind!r}")
    a = end if as_of is None else min(end, pd.Timestamp(as_of).normalize())
    return Window(kind, start, a, end, label)


def review_windows(
    period: str, as_of, cal: FiscalCalendar, review_window: str = "month", comparison_period: str = ""
) -> tuple[Window, Window]:
    """(review, comparison) windows.

    The review window is the month ``period`` (or the fiscal quarter containing it), to ``as_of``.
    ``comparison_period``: ``""``/``"previous"`` = the window just before; ``"prior_year"`` = the same window a
    year earlier; ``"YYYY-MM"`` = the month (or quarter) containing that month.
    """
    start, _ = period_bounds(period)
    review = make_window(start, review_window, cal, as_of)
    cp = (comparison_period or "previous").strip().lower()
    if cp == "previous":
        comp = make_window(review.start - pd.Timedelta(days=1), review_window, cal)
    elif cp in ("prior_year", "last_year", "year_ago"):
        comp = make_window(review.start - pd.DateOffset(years=1), review_window, cal)
    else:
        comp = make_window(period_bounds(comparison_period)[0], review_window, cal)
    return review, comp


# --------------------------------------------------------------------------------------------------
# preparation
# --------------------------------------------------------------------------------------------------
def _col(df: pd.DataFrame, name: str) -> pd.Series:
    """Column ``name`` or an all-missing column when the table does not have it."""
    if name in df.columns:
        return df[name]
    return pd.Series(np.nan, index=df.index, dtype="float64" if name == "amount" else "object")


def has_values(df: pd.DataFrame | None, col: str) -> bool:
    return df is not None and col in df.columns and bool(df[col].notna().any())


def nice_round(x: float) -> float:
    """Round to 2 significant digits, halves up (12,345 → 12,000; 50,500 → 51,000)."""
    if not x or not math.isfinite(x):
        return 0.0
    mag = 10 ** (math.floor(math.log10(abs(x))) - 1)
    return float(math.floor(x / mag + 0.5) * mag)


QUARTILES = (0.25, 0.5, 0.75)


def default_size_edges(amounts: pd.Series) -> list[float]:
    """Deal size band edges: the quartiles of the known positive amounts, rounded to 2 significant digits
    (duplicates removed)."""
    a = amounts[amounts > 0].dropna()
    if a.empty:
        return []
    edges = sorted({nice_round(q) for q in a.quantile(list(QUARTILES)).tolist()} - {0.0})
    return edges


def _short_money(x: float, sym: str) -> str:
    for div, suf in ((1e9, "B"), (1e6, "M"), (1e3, "k")):
        if abs(x) >= div:
            v = x / div
            return f"{sym}{v:,.0f}{suf}" if float(v).is_integer() else f"{sym}{v:,.1f}{suf}"
    return f"{sym}{x:,.0f}"


def size_band_labels(edges: list[float], sym: str = "$") -> list[str]:
    """Labels for bands ``[0, e1), [e1, e2), …, [ek, ∞)``: ``< $10k``, ``$10k–$50k``, ``≥ $50k``."""
    if not edges:
        return []
    labels = [f"< {_short_money(edges[0], sym)}"]
    labels += [
        f"{_short_money(a, sym)}–{_short_money(b, sym)}" for a, b in zip(edges, edges[1:], strict=False)
    ]
    labels.append(f"≥ {_short_money(edges[-1], sym)}")
    return labels


def size_bands(amounts: pd.Series, edges: list[float], sym: str = "$") -> pd.Series:
    """Band of each amount: ``amount < e1`` → first band, ``e_i <= amount < e_(i+1)`` → band i+1; unknown
    amounts stay missing. Ordered categorical."""
    labels = size_band_labels(edges, sym)
    if not labels:
        return pd.Series(pd.Categorical([None] * len(amounts)), index=amounts.index)
    bins = [-np.inf, *edges, np.inf]
    return pd.cut(amounts, bins=bins, labels=labels, right=False)


def prepare_deals(
    opp: pd.DataFrame,
    reps: pd.DataFrame | None = None,
    as_of=None,
    size_edges: list[float] | None = None,
    currency_symbol: str = "$",
) -> pd.DataFrame:
    """Opportunities with the review's derived columns.

    ``outcome`` = Won / Lost / Open (from is_closed, is_won); ``rep`` = reps.name for the owner (else the
    owner id); ``team`` = reps.team; ``size_band`` from ``size_edges`` (default: ``default_size_edges`` of
    closed deals); ``cycle_days`` = close_date − created_date for closed deals, as_of − created_date for open
    ones.
    """
    df = opp.copy()
    closed = df["is_closed"].fillna(False).astype(bool)
    won = df["is_won"].fillna(False).astype(bool) & closed
    df["outcome"] = np.where(won, "Won", np.where(closed, "Lost", "Open"))
    df["rep"], df["team"] = rep_and_team(_col(df, "owner"), reps)
    amount = _col(df, "amount").astype("float64")
    if size_edges is None:
        size_edges = default_size_edges(amount[closed])
    df["size_band"] = size_bands(amount, size_edges, currency_symbol)
    created = pd.to_datetime(_col(df, "created_date"))
    close = pd.to_datetime(_col(df, "close_date"))
    end = close.where(closed, pd.Timestamp(as_of) if as_of is not None else pd.NaT)
    df["cycle_days"] = (end - created).dt.days.astype("float64")
    return df


def rep_and_team(owner: pd.Series, reps: pd.DataFrame | None) -> tuple[pd.Series, pd.Series]:
    """``prepare_deals``' rep (reps.name for the owner, else the owner id) and team of each ``owner``."""
    rep = owner
    team = pd.Series(np.nan, index=owner.index, dtype="object")
    if reps is not None and "rep_id" in reps.columns:
        r = reps.drop_duplicates("rep_id").set_index("rep_id")
        if "name" in r.columns:
            rep = map_unique(owner, r["name"]).fillna(owner)
        if "team" in r.columns:
            team = map_unique(owner, r["team"])
    return rep, team


def find_duplicates(opp: pd.DataFrame) -> pd.DataFrame:
    """Duplicate records (see module docstring): each later copy with ``duplicate_of`` = the kept id."""
    cols = [c for c in opp.columns if c != "opportunity_id"]
    out_cols = [
        "opportunity_id",
        "duplicate_of",
        *[c for c in ("account", "owner", "stage", "amount", "close_date") if c in opp.columns],
    ]
    if not cols or "account" not in opp.columns:
        return pd.DataFrame(columns=out_cols)
    # equal rows are equal in their numeric columns: hash whole rows only where those repeat (same result)
    numeric = [c for c in ("amount", "created_date", "close_date") if c in cols]
    if numeric:
        opp = opp[pd.util.hash_pandas_object(opp[numeric], index=False).duplicated(keep=False).to_numpy()]
    dated = _col(opp, "created_date").notna() | _col(opp, "close_date").notna()
    closed = _col(opp, "is_closed").astype("boolean").fillna(False).astype(bool)
    identified = opp["account"].notna() & (dated | closed)
    key = pd.util.hash_pandas_object(opp[cols], index=False)  # one 64-bit hash per row; NaN hashes alike
    dup = key.duplicated(keep="first") & identified
    first_id = opp.groupby(key, sort=False)["opportunity_id"].transform("first")
    out = opp.loc[dup, [c for c in out_cols if c != "duplicate_of"]].copy()
    out.insert(1, "duplicate_of", first_id[dup])
    return out.reset_index(drop=True)


def drop_duplicates(opp: pd.DataFrame) -> pd.DataFrame:
    """``opp`` without the later copies listed by ``find_duplicates``."""
    dups = find_duplicates(opp)
    return opp[~opp["opportunity_id"].isin(dups["opportunity_id"])]


# --------------------------------------------------------------------------------------------------
# the deals where they live: what the review asks of them, as queries
# --------------------------------------------------------------------------------------------------
# the columns of a deal the review reads (only these come back); the open list adds next_step
DEAL_COLUMNS = (
    "opportunity_id",
    "owner",
    "account",
    "amount",
    "stage",
    "is_closed",
    "is_won",
    "created_date",
    "close_date",
    "segment",
    "region",
    "source",
    "product",
    "deal_type",
    "competitor",
    "loss_reason",
)


def _identified(t):
    """``find_duplicates``' rows that can be judged, as an expression: an account, and a date or closed."""

    def has(c):
        return t[c].notnull() if c in t.columns else ibis.literal(False)

    closed = ex.flag(t.is_closed) if "is_closed" in t.columns else ibis.literal(False)
    return has("account") & (has("created_date") | has("close_date") | closed)


class Deals:
    """The opportunities where they live (an engine table; a frame runs as an in-memory one) and what the
    review asks of them, each a query whose filter and columns run there:

    - ``duplicates``: ``find_duplicates`` over the rows of the groups of identical judged rows only;
    - ``counts["possible"]``: the possible duplicates (see the module docstring), counted there;
    - ``counts``: per column, the deals with a value, and the other counts the review needs;
    - ``size_edges``: ``default_size_edges`` from the few order statistics the quartiles rest on;
    - ``top_open`` (the largest open deals) and ``won_of`` (the won deals of some accounts): rows, in the table's order (the file's, on DuckDB and
      for a frame; elsewhere by opportunity_id).

    Every query but the duplicates' leaves the duplicate records out (``t``)."""

    def __init__(self, opportunities):
        self.all = ex.in_order(opportunities)
        self.columns = [c for c in self.all.columns if c != ex.ROW]
        self.duplicates = find_duplicates(self._duplicate_groups())
        self.t = ex.without(self.all, "opportunity_id", self.duplicates["opportunity_id"])
        self.counts = self._counts()

    def _fetch(self, t, cols) -> pd.DataFrame:
        cols = [c for c in cols if c in self.columns]
        out = t.select(*cols, *([ex.ROW] if ex.ROW in t.columns else [])).execute()
        key = ex.ROW if ex.ROW in out.columns else "opportunity_id"
        out = out.sort_values(key, kind="stable").drop(columns=[ex.ROW], errors="ignore")
        return ex.as_loaded(out.reset_index(drop=True))

    def _duplicate_groups(self) -> pd.DataFrame:
        t = self.all
        same = [c for c in self.columns if c != "opportunity_id"]
        if not same or "account" not in same:
            return pd.DataFrame(columns=self.columns)
        judged = t.filter(_identified(t))
        judged = judged.mutate(_copies=judged.count().over(ibis.window(group_by=same)))
        return self._fetch(judged.filter(judged._copies > 1), self.columns)

    def _counts(self) -> dict:
        t, cols = self.t, self.columns
        agg = {f"n{i}": t[c].count() for i, c in enumerate(cols)}
        closed = ex.flag(t.is_closed)
        if "close_date" in cols:
            agg["undated"] = ibis.ifelse(closed & t.close_date.isnull(), 1, 0).sum()
            if "account" in cols:
                won_dated = closed & ex.flag(t.is_won) & t.account.notnull() & t.close_date.notnull()
                agg["won_dated"] = ibis.ifelse(won_dated, 1, 0).sum()
        if "amount" in cols:
            agg["priced"] = ibis.ifelse(closed & (t.amount > 0).fill_null(False), 1, 0).sum()
        got = t.aggregate(**agg).execute().iloc[0]
        out = {c: int(got[f"n{i}"]) for i, c in enumerate(cols)}
        for k in ("undated", "won_dated", "priced"):
            out[k] = int(0 if k not in got or pd.isna(got[k]) else got[k])
        out["possible"] = self._possible()
        return out

    def has(self, col: str) -> bool:
        """Whether some deal has a value in ``col``."""
        return self.counts.get(col, 0) > 0

    def _possible(self) -> int:
        t = self.all
        same = [c for c in self.columns if c != "opportunity_id"]
        if not same:
            return 0
        thin = t.filter(~_identified(t))
        g = thin.group_by(same).aggregate(_n=thin.count())
        n = g.aggregate(p=(g._n - 1).sum()).execute().iloc[0, 0]
        return int(0 if pd.isna(n) else n)

    def size_edges(self) -> list[float]:
        """``default_size_edges`` of the closed deals' amounts: pandas' linear quantiles need the order
        statistics at ``floor((n − 1)·q)`` and the next; only those come back."""
        n = self.counts["priced"]
        if not n:
            return []
        at = {q: (n - 1) * q for q in QUARTILES}
        ranks = sorted({k for v in at.values() for k in (math.floor(v), min(math.floor(v) + 1, n - 1))})
        t = self.t
        c = t.filter(ex.flag(t.is_closed), t.amount > 0).select("amount")
        c = c.mutate(_k=ibis.row_number().over(ibis.window(order_by="amount")))
        got = c.filter(c._k.isin(ranks)).execute()
        x = dict(zip(got["_k"].astype("int64"), got["amount"].astype("float64"), strict=True))
        qs = [
            float(np.quantile([x[math.floor(v)], x[min(math.floor(v) + 1, n - 1)]], v - math.floor(v)))
            for v in at.values()
        ]
        return sorted({nice_round(q) for q in qs} - {0.0})

    def top_open(self, as_of, n: int = 5) -> pd.DataFrame:
        """The deals open on ``as_of`` (``open_as_of``) that can be among the ``n`` largest: those whose
        amount is at least the ``n``-th largest (ties included, so the id order is pandas'); every one
        when fewer than ``n`` carry an amount."""
        t = self.t
        a = ex.day(pd.Timestamp(as_of).normalize())
        started = ibis.literal(True)
        if "created_date" in t.columns:
            started = t.created_date.isnull() | (t.created_date <= a)
        still = ~ex.flag(t.is_closed)
        if "close_date" in t.columns:
            still = still | (t.close_date > a).fill_null(False)
        o = t.filter(started, still)
        if "amount" in t.columns:
            top = o.order_by(o.amount.desc(nulls_first=False)).limit(n).select("amount").execute()
            least = top["amount"].iloc[-1] if len(top) == n else np.nan
            if pd.notna(least):
                o = o.filter(o.amount >= float(least))
        return self._fetch(o, (*DEAL_COLUMNS, "next_step"))

    def won_of(self, accounts) -> pd.DataFrame:
        """The won deals of ``accounts``."""
        t = self.t
        if "account" not in t.columns:
            return self._fetch(t.filter(ibis.literal(False)), DEAL_COLUMNS)
        w = t.filter(ex.flag(t.is_closed), ex.flag(t.is_won), t.account.notnull())
        cols = ("opportunity_id", "owner", "account", "is_closed", "is_won", "close_date")
        return self._fetch(ex.among(w, "account", accounts), cols)

    def any_owner_in(self, ids) -> bool:
        """Whether some deal's owner is one of ``ids``."""
        ids = sorted({str(i) for i in ids})
        if "owner" not in self.columns or not ids:
            return False
        k = ex.keyed(self.t, pd.DataFrame({"_rep": pd.Series(ids, dtype="str")}))
        j = ex.within(self.t, "owner", k, "_rep")
        return int(j.aggregate(n=j.count()).execute().iloc[0, 0]) > 0


# --------------------------------------------------------------------------------------------------
# the closed deals of a window where they live: the review's measures as queries
# --------------------------------------------------------------------------------------------------
_NULL_TEXT = ibis.literal(None, type="string")
_SUMS = ["deals", "won", "lost", "won_amount", "closed_amount", "lost_amount_known", "lost_amount"]


def _text(t, col: str):
    """``col`` as text (a column of nulls when the table has none)."""
    return t[col].cast("string") if col in t.columns else _NULL_TEXT


def _band(t, edges: list[float], sym: str):
    """``size_bands`` as an expression: the band label of ``amount`` (null when unknown)."""
    labels = size_band_labels(edges, sym)
    if not labels or "amount" not in t.columns:
        return _NULL_TEXT
    bands = ibis.cases(
        *((t.amount < e, lab) for e, lab in zip(edges, labels, strict=False)), else_=labels[-1]
    )
    return ibis.ifelse(t.amount.isnull(), _NULL_TEXT, bands)


def _everything(t):
    """One group, "All"."""
    return ibis.literal("All")


def _middle(t, value: str) -> dict:
    """Per side (``_won``) of the rows of ``t`` with a ``value``: how many, their Σ and pandas' median,
    from the one or two middle order statistics only (those rows come back)."""
    v = t.filter(t[value].notnull()).select("_won", value)
    side = ibis.window(group_by="_won")
    v = v.mutate(
        _k=ibis.row_number().over(ibis.window(group_by="_won", order_by=value)),
        _n=v.count().over(side),
        _s=v[value].sum().over(side),
    )
    got = v.filter((v._k == (v._n - 1) // 2) | (v._k == v._n // 2)).execute()
    out = {}
    for won, g in got.groupby("_won"):
        g = g.sort_values("_k")
        out[bool(won)] = (
            int(g["_n"].iloc[0]),
            float(g["_s"].iloc[0]),
            float(np.median(g[value].to_numpy(dtype="float64"))),
        )
    return out


class WindowDeals:
    """The closed deals of one window (every closed deal for ``window=None``) where they live, and what the
    review computes of them, each a query whose aggregates come back (win rates per group, loss reasons
    and their cross tables, the stage lost at, won and lost side by side; the frozen pandas review in
    tests/winloss_reference.py gives the same tables); rows come back only for the deals a reader sees:
    the largest won and lost deals and the deals of the data-quality list. ``keep``
    (``Engine.keep``) keeps the window's deals and their per-deal history values as temporary tables of
    the engine, so the review's dozen queries read them, not the whole tables, each time."""

    def __init__(self, src: Deals, window: Window | None, empty: bool = False, keep=None):
        t = src.t
        pick = ex.flag(t.is_closed)
        if empty:
            pick = ibis.literal(False)
        elif window is not None:
            inside = (t.close_date >= ex.day(window.start)) & (t.close_date <= ex.day(window.as_of))
            pick = pick & inside.fill_null(False)
        c = t.filter(pick)
        self.src = src
        self.keep = keep if keep is not None else (lambda e: e)
        self.t = self.keep(c.mutate(_won=ex.flag(c.is_won), _amt=ex.amount(c)))
        self._per_deal = None

    def totals(self, keys: dict) -> pd.DataFrame:
        """Per ``keys`` name (→ (key, key2) expressions over ``self.t``) and value: deals, won, lost,
        won_amount, closed_amount, lost_amount_known, lost_amount: one query (a union)."""
        c = self.t
        parts = []
        for name, (key, key2) in keys.items():
            k = c.mutate(_dim=ibis.literal(name), _k=key(c), _k2=key2(c) if key2 else _NULL_TEXT)
            parts.append(
                k.group_by(["_dim", "_k", "_k2"]).aggregate(
                    **ex.outcome_sums(k, k._won, k._amt), lost_amount=ibis.ifelse(k._won, 0.0, k._amt).sum()
                )
            )
        got = ibis.union(*parts, distinct=False).execute() if parts else pd.DataFrame()
        for col in _SUMS:
            got[col] = got[col].astype(
                "float64" if "amount" in col and col != "lost_amount_known" else "int64"
            )
        return got

    def overall(self) -> pd.DataFrame:
        """The win rates of every deal of the window: ``pooled_rates``' one row, "All"."""
        return pooled_rates(WindowDeals.rate_totals(self.totals({"All": (_everything, None)}), "All"))

    @staticmethod
    def rate_totals(got: pd.DataFrame, name: str, key=None) -> pd.DataFrame:
        """The totals (``_TOTALS``) per group of ``name`` in ``totals``, ``pooled_rates``' input; ``key``
        maps the values (owner ids to reps, say) before they are grouped ("(not set)" where it gives
        none)."""
        g = got[got["_dim"].eq(name)]
        raw = pd.Series(g["_k"].to_numpy(dtype="object"), index=g.index)
        raw = raw.where(raw.notna(), np.nan)
        k = key(raw) if key is not None else raw
        k = k.astype("object").where(k.notna(), NOT_SET).astype(str)
        return g[_TOTALS].groupby(k.to_numpy(), sort=False).sum()

    @staticmethod
    def reasons(got: pd.DataFrame) -> pd.DataFrame:
        """The lost deals and lost amount per loss reason (``ranked_reasons``' input)."""
        g = got[got["_dim"].eq("_reason") & got["lost"].gt(0)]
        r = pd.Series(g["_k"].to_numpy(dtype="object")).where(lambda x: x.notna(), NO_REASON).astype(str)
        df = pd.DataFrame(
            {
                "reason": r.to_numpy(),
                "deals": g["lost"].to_numpy(),
                "lost_amount": g["lost_amount"].to_numpy(),
            }
        )
        return df.groupby("reason", sort=False).sum().reset_index()

    @staticmethod
    def reasons_by(got: pd.DataFrame, dim: str) -> pd.DataFrame:
        """``reason_table`` from the lost deals per (reason, ``dim``) value pair."""
        g = got[got["_dim"].eq(f"_reason:{dim}") & got["lost"].gt(0)]
        n = g["lost"].to_numpy(dtype="int64")

        def text(col, empty):
            v = pd.Series(g[col].to_numpy(dtype="object"))
            return np.repeat(v.where(v.notna(), empty).astype(str).to_numpy(), n)

        return reason_table(pd.DataFrame({"reason": text("_k", NO_REASON), dim: text("_k2", NOT_SET)}), dim)

    def per_deal(self, history, cfg) -> ibis.Table:
        """Per closed deal with history rows (``history``: the table where it lives, beside the deals),
        over its rows in time (ties in the order written where that is known): the stage changes (rows
        whose stage differs from the previous row's; the first row is the starting stage), the first and
        last positive amount, the stage it was lost at (the last stage neither won nor lost before its
        first move into a lost stage) and whether it reached the qualifying stage (an open stage at or
        beyond ``qualifying_stage`` in the funnel order)."""
        if self._per_deal is not None:
            return self._per_deal
        h = ex.within(ex.in_order(history), "opportunity_id", self.t, "opportunity_id")
        ties = [ex.ROW] if ex.ROW in h.columns else ["stage"]
        w = ibis.window(
            group_by="opportunity_id", order_by=[ibis.asc("changed_at", nulls_first=False), *ties]
        )
        closed_stages = set(cfg.won_stages) | set(cfg.lost_stages)
        qualifying = []
        if cfg.qualifying_stage and cfg.qualifying_stage in cfg.stages:
            q = cfg.stages.index(cfg.qualifying_stage)
            qualifying = [s for i, s in enumerate(cfg.stages) if i >= q and s not in closed_stages]
        amount = h.amount if "amount" in h.columns else ibis.literal(None, type="float64")
        h = h.select(
            "opportunity_id",
            "stage",
            _amount=amount,
            _k=ibis.row_number().over(w),
            _prev=h.stage.lag().over(w),
        )
        none = ibis.null().cast("int64")
        deal = ibis.window(group_by="opportunity_id")
        stage = h.stage
        lost_row = (
            stage.isin(list(cfg.lost_stages)).fill_null(False) if cfg.lost_stages else ibis.literal(False)
        )
        positive = (h._amount > 0).fill_null(False)
        h = h.mutate(
            _chg=ibis.ifelse(h._prev.notnull() & (stage.isnull() | (stage != h._prev)).fill_null(True), 1, 0),
            _fl=ibis.ifelse(lost_row, h._k, none).min().over(deal),
            _p0=ibis.ifelse(positive, h._k, none).min().over(deal),
            _p1=ibis.ifelse(positive, h._k, none).max().over(deal),
            _open=stage.notnull() & ~stage.isin(sorted(closed_stages)).fill_null(False)
            if closed_stages
            else stage.notnull(),
            _q=ibis.ifelse(stage.isin(qualifying).fill_null(False), 1, 0) if qualifying else ibis.literal(0),
        )
        h = h.mutate(_cand=ibis.ifelse(h._open & (h._fl.isnull() | (h._k < h._fl)), h._k, none))
        h = h.mutate(_ck=h._cand.max().over(deal))
        self._per_deal = self.keep(
            h.group_by("opportunity_id").aggregate(
                _sc=h._chg.sum(),
                _first=ibis.ifelse(h._k == h._p0, h._amount, ibis.null().cast("float64")).max(),
                _last=ibis.ifelse(h._k == h._p1, h._amount, ibis.null().cast("float64")).max(),
                _at=ibis.ifelse(h._k == h._ck, stage, _NULL_TEXT).max(),
                _reached=h._q.max(),
            )
        )
        return self._per_deal

    def with_history(self, history, cfg) -> ibis.Table:
        """The closed deals with their ``per_deal`` values (``_has``: the deal has history rows)."""
        p = self.per_deal(history, cfg).rename(_deal="opportunity_id")
        c = self.t
        j = c.left_join(p, c.opportunity_id == p._deal)
        return j.mutate(_has=j._deal.notnull())

    def lost_at(self, history, cfg) -> pd.DataFrame:
        """The lost deals per stage lost at (``per_deal``; "(no history)" for a deal without history
        rows, "(no earlier stage)" for one whose history starts lost) and their amount: ``lost_at_table``."""
        j = self.with_history(history, cfg)
        lost = j.filter(~j._won)
        at = ibis.ifelse(lost._has, lost._at.fill_null("(no earlier stage)"), "(no history)")
        lost = lost.mutate(stage=at)
        g = lost.group_by("stage").aggregate(deals=lost.count(), lost_amount=lost._amt.sum())
        g = g.execute()
        g = g.astype({"deals": "int64", "lost_amount": "float64"}).sort_values("stage")
        return lost_at_table(g.reset_index(drop=True), cfg.stages)

    def side(self, won_n: int, lost_n: int, history, cfg, activities) -> pd.DataFrame:
        """Won and lost deals side by side (``side_table``): deal size = amount > 0 (mean, median); cycle
        = close_date − created_date (median); stage changes per deal with history (mean); amount change
        = final ÷ first positive amount − 1, final = the deal's amount, else its last positive amount in
        history (median; shrank = change < 0); activities per deal = activities with the deal's
        opportunity_id, deals without any counting 0 (mean). Sums, counts and the middle values of each
        side come back (means Σ ÷ n, medians pandas' own over the middle values)."""
        c = self.t
        values = {}

        def put(names, got, needs, f):
            for name, fn in zip(names, f, strict=True):
                sides = []
                for won in (True, False):
                    n, total, median = got.get(won, (0, 0.0, np.nan))
                    sides.append((fn(n, total, median) if n else np.nan, n))
                values[name] = (*sides, needs)

        def mean(n, total, median):
            return total / n

        def mid(n, total, median):
            return median

        amounts = c.mutate(_a=c.amount.cast("float64")) if "amount" in c.columns else None
        if amounts is not None:
            amounts = amounts.mutate(_a=ibis.ifelse(amounts._a > 0, amounts._a, ibis.null().cast("float64")))
        got = _middle(amounts, "_a") if amounts is not None else {}
        put(
            ["Average deal size", "Median deal size"],
            got,
            "" if got else "amounts (opportunities.amount)",
            [mean, mid],
        )
        if {"close_date", "created_date"} <= set(c.columns):
            cycle = c.close_date.delta(c.created_date, unit="day").cast("float64")
            got = _middle(c.mutate(_cycle=cycle), "_cycle")
        else:
            got = {}
        put(["Median cycle (days)"], got, "" if got else "created_date and close_date", [mid])
        if history is not None:
            j = self.with_history(history, cfg)
            f = j.filter(j._has)
            s = f.group_by("_won").aggregate(_n=f.count(), _s=f._sc.sum()).execute()
            got = {bool(r["_won"]): (int(r["_n"]), float(r["_s"]), np.nan) for _, r in s.iterrows()}
            put(["Average stage changes"], got, "", [mean])
            final = j.amount.cast("float64").fill_null(j._last) if "amount" in j.columns else j._last
            ch = j.mutate(
                _c=ibis.ifelse(j._first.notnull(), final / j._first - 1, ibis.null().cast("float64"))
            )
            got = _middle(ch, "_c")
            f = ch.filter(ch._c < 0)
            shrank = f.group_by("_won").aggregate(_n=f.count()).execute()
            shrank = {bool(r["_won"]): int(r["_n"]) for _, r in shrank.iterrows()}
            needs = "" if got else "amounts in opportunity_history"
            put(["Median amount change"], got, needs, [mid])
            for won, (n, _, _) in got.items():
                got[won] = (n, float(shrank.get(won, 0)), np.nan)
            put(["Share of deals that shrank"], got, needs, [mean])
        else:
            for name, needs in (
                ("Average stage changes", "the opportunity_history table"),
                ("Median amount change", "the opportunity_history table with amounts"),
                ("Share of deals that shrank", "the opportunity_history table with amounts"),
            ):
                values[name] = ((np.nan, 0), (np.nan, 0), needs)
        if activities is not None and "opportunity_id" in activities.columns:
            a = activity_table(activities)
            d = ex.beside(a, c.select(_deal=c.opportunity_id.cast("string"), _won=c._won))
            j = a.inner_join(d, a.opportunity_id.cast("string") == d._deal)
            s = j.group_by("_won").aggregate(_s=j.count()).execute()
            per = {bool(r["_won"]): float(r["_s"]) for _, r in s.iterrows()}
            got = {True: (won_n, per.get(True, 0.0), np.nan), False: (lost_n, per.get(False, 0.0), np.nan)}
            put(["Activities per deal"], got, "", [mean])
        else:
            values["Activities per deal"] = (
                (np.nan, 0),
                (np.nan, 0),
                "the activities table with opportunity_id",
            )
        return side_table(won_n, lost_n, values)

    def top(self, won: bool, n: int = 5) -> pd.DataFrame:
        """The deals of one side that can be among its ``n`` largest (``top_deals``): those whose amount is
        at least the ``n``-th largest (ties included); every one when fewer than ``n`` carry an amount."""
        c = self.t
        o = c.filter(c._won if won else ~c._won)
        if "amount" in c.columns:
            top = o.order_by(o.amount.desc(nulls_first=False)).limit(n).select("amount").execute()
            least = top["amount"].iloc[-1] if len(top) == n else np.nan
            if pd.notna(least):
                o = o.filter(o.amount >= float(least))
        return self.src._fetch(o, DEAL_COLUMNS)

    def issue_counts(self, others: list[str], history, cfg, check_reasons: bool = True) -> pd.Series:
        """How many rows ``quality_issues`` makes of ``issue_rows`` per issue (issue → count; the
        qualifying check only with ``history``), counted where the deals live: one row comes back."""
        c = self.with_history(history, cfg) if history is not None else self.t
        agg = {}
        if check_reasons:
            r = _text(c, "loss_reason")
            lost = ~c._won
            agg["Lost with no loss reason"] = (lost & r.isnull()).sum()
            agg["Lost with an 'Other' reason"] = (
                (lost & (r.isin(others) if others else False)).fill_null(False).sum()
            )
        if history is not None:
            never = (c._has & (c._reached == 0)).fill_null(False)
            agg[f"Closed without reaching {cfg.qualifying_stage}"] = never.sum()
        if not agg:
            return pd.Series(dtype="int64")
        got = c.aggregate(**{f"_n{i}": ibis.coalesce(e, 0) for i, e in enumerate(agg.values())}).execute()
        n = [int(got[f"_n{i}"].iloc[0]) for i in range(len(agg))]
        out = pd.Series(n, index=list(agg), dtype="int64")
        return out[out > 0]

    def issue_rows(self, others: list[str], history, cfg, check_reasons: bool = True):
        """The deals of ``quality_issues``: lost with no reason or one of the ``others`` (catch-all)
        reasons (with ``check_reasons``), and closed with history rows that never reached the qualifying
        stage (``history`` given): their rows, and a mask of the latter."""
        c = self.with_history(history, cfg) if history is not None else self.t
        c = c.mutate(_never=(c._has & (c._reached == 0)).fill_null(False) if history is not None else False)
        pick = c._never
        if check_reasons and "loss_reason" in c.columns:
            r = c.loss_reason.cast("string")
            pick = pick | (~c._won & (r.isnull() | (r.isin(others) if others else False)))
        sel = c.filter(pick)
        cols = [x for x in DEAL_COLUMNS if x in self.src.columns]
        rows = sel.select(*cols, "_never", *([ex.ROW] if ex.ROW in sel.columns else [])).execute()
        key = ex.ROW if ex.ROW in rows.columns else "opportunity_id"
        rows = rows.sort_values(key, kind="stable").drop(columns=[ex.ROW], errors="ignore")
        rows = rows.reset_index(drop=True)
        never = rows.pop("_never").fillna(False).astype(bool)
        return ex.as_loaded(rows), never


def first_close(opportunities):
    """The earliest close date of the opportunities where they live (None without any)."""
    t = ex.as_table(opportunities, timestamps=("close_date",))
    if "close_date" not in t.columns:
        return None
    v = t.aggregate(first=t.close_date.min()).execute().iloc[0, 0]
    return None if v is None or pd.isna(v) else pd.Timestamp(v)


# --------------------------------------------------------------------------------------------------
# win rates
# --------------------------------------------------------------------------------------------------
def wilson_interval(wins, n, z: float = Z95) -> tuple:
    """Wilson score interval for ``wins`` out of ``n`` (arrays or scalars); NaN where n = 0.

    ``p = wins/n``; ``centre = (p + z²/2n)/(1 + z²/n)``; ``half = z/(1 + z²/n)·√(p(1−p)/n + z²/4n²)``.
    """
    w = np.asarray(wins, dtype="float64")
    n_ = np.asarray(n, dtype="float64")
    with np.errstate(divide="ignore", invalid="ignore"):
        p = w / n_
        denom = 1 + z**2 / n_
        centre = (p + z**2 / (2 * n_)) / denom
        half = z / denom * np.sqrt(p * (1 - p) / n_ + z**2 / (4 * n_**2))
        lo = np.where(n_ > 0, np.clip(centre - half, 0, 1), np.nan)
        hi = np.where(n_ > 0, np.clip(centre + half, 0, 1), np.nan)
    if lo.ndim == 0:
        return float(lo), float(hi)
    return lo, hi


RATE_COLUMNS = [
    "group",
    "deals",
    "won",
    "lost",
    "win_rate",
    "ci_low",
    "ci_high",
    "won_amount",
    "closed_amount",
    "value_win_rate",
    "groups_pooled",
]


_TOTALS = ["deals", "won", "lost", "won_amount", "closed_amount", "lost_amount_known"]


def _finish_rates(g: pd.DataFrame) -> pd.DataFrame:
    """Win rate and value win rate (``helpers.metrics.rates.finish``) with the count rate's Wilson interval."""
    g = g.copy()
    r = R.finish(g.assign(won_priced=0, won_priced_amount=0.0))
    g["win_rate"] = r["win_rate"]
    g["ci_low"], g["ci_high"] = wilson_interval(g["won"], g["deals"])
    g["value_win_rate"] = r["value_win_rate"]
    return g


def pooled_rates(
    g: pd.DataFrame, by: str | None = None, min_deals: int = 5, order: list[str] | None = None
) -> pd.DataFrame:
    """Win rate by count and by value per group, from the totals per group (``_TOTALS``, indexed by group;
    wherever they were summed): win_rate = won ÷ deals with its 95% Wilson interval (ci_low, ci_high),
    value_win_rate = won amount ÷ closed amount (see the module docstring). Groups with deals <
    ``min_deals`` are pooled into "Other (n<min_deals)" (last row); rows are ordered by deals
    (descending) then name, or by ``order`` when given."""
    if by is None and g.empty:  # nothing closed: one row of zeros (rates NaN)
        g = pd.DataFrame(0.0, index=pd.Index(["All"], name="group"), columns=g.columns)
    g["groups_pooled"] = 1
    if by is not None and min_deals > 1:
        small = g["deals"] < min_deals
        if small.any():
            pooled = g[small].sum().to_frame(other_label(min_deals)).T
            pooled["groups_pooled"] = int(small.sum())
            g = pd.concat([g[~small], pooled])
    g = _finish_rates(g)
    g.index.name = "group"
    g = g.reset_index()
    is_other = g["group"].eq(other_label(min_deals))
    if order is not None:
        rank = {k: i for i, k in enumerate([*order, NOT_SET])}
        g["_r"] = g["group"].map(rank).fillna(len(rank)).astype(float)
        g = g.sort_values(["_r", "group"]).drop(columns="_r")
    else:
        g = g.assign(_o=is_other).sort_values(["_o", "deals", "group"], ascending=[True, False, True])
        g = g.drop(columns="_o")
    g = pd.concat([g[~g["group"].eq(other_label(min_deals))], g[g["group"].eq(other_label(min_deals))]])
    for c in ("deals", "won", "lost", "groups_pooled"):
        g[c] = g[c].astype("int64")
    return g[RATE_COLUMNS].reset_index(drop=True)


def trend_windows(review: Window, comparison: Window, cal: FiscalCalendar, periods: int = 12) -> list[Window]:
    """The ``periods`` windows (months or fiscal quarters, following ``review.name``) ending with the review
    window, extended back to include the comparison window; oldest first."""
    windows = [review]
    while len(windows) < periods or windows[-1].start > comparison.start:
        windows.append(make_window(windows[-1].start - pd.Timedelta(days=1), review.name, cal))
    return windows[::-1]


def win_rate_trend(
    deals, review: Window, comparison: Window, cal: FiscalCalendar, periods: int = 12
) -> pd.DataFrame:
    """Win rate per month (or fiscal quarter, following ``review.name``) for the ``trend_windows``; leading
    windows without closed deals (before the data starts) are dropped. ``role`` marks the review and
    comparison windows. Each row: deals, won, win_rate with Wilson interval, value_win_rate.

    ``deals``: the opportunities where they live (an engine table, or a frame): the totals of each
    calendar month are summed there (``helpers.metrics.expr.win_rate_counts``), only those come back."""
    windows = trend_windows(review, comparison, cal, periods)
    t = ex.as_table(deals, timestamps=("close_date",))
    t = t.mutate(_month=t.close_date.year() * 12 + t.close_date.month() - 1)
    got = ex.win_rate_counts({"opportunities": t}, windows[0].start, review.as_of, by="_month")
    got = got.execute().reset_index(drop=True)
    for c in _TOTALS:
        got[c] = got[c].astype("float64" if c in ("won_amount", "closed_amount") else "int64")
    months = got["group"].astype("int64")
    starts = pd.to_datetime(pd.DataFrame({"year": months // 12, "month": months % 12 + 1, "day": 1}))
    labels = month_labels(starts) if review.name == "month" else cal.quarter_labels(starts)
    g = got[_TOTALS].groupby(labels.astype(str).to_numpy(), sort=False).sum()
    rows = []
    for w in windows:
        r = g.loc[w.label] if w.label in g.index else pd.Series(0, index=g.columns)
        role = "review" if w.label == review.label else ("comparison" if w.label == comparison.label else "")
        rows.append({"window": w.label, "start": w.start, "role": role, **r.to_dict()})
    out = _finish_rates(pd.DataFrame(rows).set_index("window")).reset_index()
    first = np.flatnonzero((out["deals"] > 0).to_numpy() | out["role"].ne("").to_numpy())
    out = out.iloc[first[0] :] if len(first) else out  # no leading empty windows (before the data starts)
    for c in ("deals", "won", "lost"):
        out[c] = out[c].astype("int64")
    return out[
        [
            "window",
            "start",
            "role",
            "deals",
            "won",
            "lost",
            "win_rate",
            "ci_low",
            "ci_high",
            "won_amount",
            "closed_amount",
            "value_win_rate",
        ]
    ]


def rate_change(current: pd.DataFrame, previous: pd.DataFrame) -> dict:
    """Overall win rate now vs the comparison window: rates, change in points (now − before) and whether the
    two 95% intervals overlap (overlap → the change is within the noise of the sample sizes)."""
    c, p = current.iloc[0], previous.iloc[0]
    change = c["win_rate"] - p["win_rate"] if c["deals"] and p["deals"] else np.nan
    overlap = (
        bool(c["ci_low"] <= p["ci_high"] and p["ci_low"] <= c["ci_high"])
        if c["deals"] and p["deals"]
        else None
    )
    return {
        "win_rate": c["win_rate"],
        "previous": p["win_rate"],
        "change": change,
        "intervals_overlap": overlap,
        "deals": int(c["deals"]),
        "previous_deals": int(p["deals"]),
    }


# --------------------------------------------------------------------------------------------------
# why we lose
# --------------------------------------------------------------------------------------------------
def ranked_reasons(g: pd.DataFrame, by: str = "count") -> pd.DataFrame:
    """Loss reasons ranked for a Pareto view, from the lost deals and amount per reason (``g``: reason,
    deals, lost_amount; wherever they were summed; deals without a reason under "(no reason)").

    Per reason: deals, share = deals ÷ all lost deals, lost_amount, amount_share = amount ÷ all lost amount.
    ``by="count"`` ranks by deals (then amount, then name) and ``cum_share`` accumulates ``share``;
    ``by="value"`` ranks by amount (then deals, then name) and ``cum_share`` accumulates ``amount_share``.
    """
    cols = ["reason", "deals", "share", "lost_amount", "amount_share", "cum_share"]
    if g.empty:
        return pd.DataFrame(columns=cols)
    g = g.copy()
    g["share"] = g["deals"] / g["deals"].sum()
    total = g["lost_amount"].sum()
    g["amount_share"] = g["lost_amount"] / total if total > 0 else np.nan
    if by == "count":
        g = g.sort_values(["deals", "lost_amount", "reason"], ascending=[False, False, True])
        g["cum_share"] = g["share"].cumsum()
    elif by == "value":
        g = g.sort_values(["lost_amount", "deals", "reason"], ascending=[False, False, True])
        g["cum_share"] = g["amount_share"].cumsum()
    else:
        raise ValueError("by must be 'count' or 'value'")
    g["deals"] = g["deals"].astype("int64")
    return g[cols].reset_index(drop=True)


def reason_table(df: pd.DataFrame, dim: str) -> pd.DataFrame:
    """Lost deals per reason (rows, ranked by total) and value of ``dim`` (columns, by total, "(not set)"
    for missing), with a ``Total`` column, from one row per lost deal (``reason`` and ``dim``, as text)."""
    if df.empty:
        return pd.DataFrame()
    t = pd.crosstab(df["reason"], df[dim])
    col_order = sorted(t.columns, key=lambda c: (-t[c].sum(), c == NOT_SET, c))
    t = t[col_order]
    t["Total"] = t.sum(axis=1)
    t = t.reset_index().sort_values(["Total", "reason"], ascending=[False, True])
    t.columns.name = None
    return t.reset_index(drop=True)


def lost_at_table(g: pd.DataFrame, stages: list[str]) -> pd.DataFrame:
    """The stage lost at in funnel order, with deals, share = deals ÷ lost deals and lost_amount, from the
    lost deals and amount per stage (``g``: stage, deals, lost_amount)."""
    g = g.copy()
    rank = {s: i for i, s in enumerate(stages)}
    g["_r"] = g["stage"].map(rank).fillna(len(rank)).astype(float)
    g = g.sort_values(["_r", "stage"]).drop(columns="_r")
    g["share"] = g["deals"] / g["deals"].sum() if len(g) else np.nan
    g["deals"] = g["deals"].astype("int64")
    return g[["stage", "deals", "share", "lost_amount"]].reset_index(drop=True)


# --------------------------------------------------------------------------------------------------
# won and lost side by side
# --------------------------------------------------------------------------------------------------
SIDE_BY_SIDE_METRICS = [
    ("Deals", "count"),
    ("Average deal size", "currency"),
    ("Median deal size", "currency"),
    ("Median cycle (days)", "days"),
    ("Average stage changes", "number"),
    ("Activities per deal", "number"),
    ("Median amount change", "percent"),
    ("Share of deals that shrank", "percent"),
]


def side_table(won_n: int, lost_n: int, values: dict) -> pd.DataFrame:
    """Won and lost side by side, one row per metric with ``Won``, ``Lost``, the deals each value rests on
    (``won_n``, ``lost_n``) and ``needs`` (what is missing when a value cannot be computed), from the
    deals on each side and, per measure after "Deals", its value and
    the deals it rests on for each side and what it needs: ``{name: ((won, won_n), (lost, lost_n),
    needs)}``, wherever they were computed."""
    rows = []
    for name, unit in SIDE_BY_SIDE_METRICS:
        if name == "Deals":
            rows.append(
                {
                    "metric": name,
                    "unit": unit,
                    "Won": float(won_n),
                    "Lost": float(lost_n),
                    "won_n": won_n,
                    "lost_n": lost_n,
                    "needs": "",
                }
            )
            continue
        (w, wn), (lo, ln), needs = values[name]
        rows.append(
            {"metric": name, "unit": unit, "Won": w, "Lost": lo, "won_n": wn, "lost_n": ln, "needs": needs}
        )
    return pd.DataFrame(rows)


def what_distinguishes_wins(side: pd.DataFrame) -> list[str]:
    """Sentences comparing won with lost deals, from ``side_table`` rows where both sides have values."""
    out = []
    r = side.set_index("metric")

    def both(m):
        return (
            m in r.index and pd.notna(r.at[m, "Won"]) and pd.notna(r.at[m, "Lost"]) and r.at[m, "Lost"] != 0
        )

    if both("Median deal size"):
        ratio = r.at["Median deal size", "Won"] / r.at["Median deal size", "Lost"]
        out.append(f"The median won deal is {ratio:.1f}× the median lost deal.")
    if both("Median cycle (days)"):
        w, lo = r.at["Median cycle (days)", "Won"], r.at["Median cycle (days)", "Lost"]
        out.append(f"Won deals took a median {w:,.0f} days to close, lost deals {lo:,.0f} days.")
    if both("Activities per deal"):
        w, lo = r.at["Activities per deal", "Won"], r.at["Activities per deal", "Lost"]
        out.append(f"Won deals had {w:.1f} logged activities on average, lost deals {lo:.1f}.")
    if both("Average stage changes"):
        w, lo = r.at["Average stage changes", "Won"], r.at["Average stage changes", "Lost"]
        out.append(f"Won deals moved stage {w:.1f} times on average, lost deals {lo:.1f}.")
    if (
        "Share of deals that shrank" in r.index
        and pd.notna(r.at["Share of deals that shrank", "Won"])
        and pd.notna(r.at["Share of deals that shrank", "Lost"])
    ):
        w, lo = r.at["Share of deals that shrank", "Won"], r.at["Share of deals that shrank", "Lost"]
        out.append(
            f"{w:.0%} of won deals and {lo:.0%} of lost deals lost value between first and final amount."
        )
    return out


# --------------------------------------------------------------------------------------------------
# the lists
# --------------------------------------------------------------------------------------------------
def _rank_by_amount(df: pd.DataFrame) -> pd.DataFrame:
    tmp = df.assign(_amt=_col(df, "amount").astype("float64"), _id=df["opportunity_id"].astype(str))
    tmp = tmp.sort_values(["_amt", "_id"], ascending=[False, True], na_position="last", kind="stable")
    return tmp.drop(columns=["_amt", "_id"])


def top_deals(deals: pd.DataFrame, outcome: str, n: int = 5) -> pd.DataFrame:
    """The ``n`` largest deals of ``outcome`` (Won, Lost or Open) in ``deals``: amount descending, unknown
    amounts last, ties by opportunity_id ascending. Columns: opportunity_id, account, rep, amount, stage,
    close_date, cycle_days (age for open deals), reason (loss reason for lost, next step for open),
    competitor."""
    d = _rank_by_amount(deals[deals["outcome"].eq(outcome)]).head(n)
    reason_col = {"Lost": "loss_reason", "Open": "next_step"}.get(outcome)
    out = pd.DataFrame(
        {
            "opportunity_id": d["opportunity_id"],
            "account": _col(d, "account"),
            "rep": _col(d, "rep"),
            "amount": _col(d, "amount").astype("float64"),
            "stage": _col(d, "stage"),
            "close_date": _col(d, "close_date"),
            "cycle_days": _col(d, "cycle_days"),
            "reason": _col(d, reason_col) if reason_col else pd.Series(np.nan, index=d.index, dtype="object"),
            "competitor": _col(d, "competitor"),
        }
    )
    return out.reset_index(drop=True)


def open_as_of(deals: pd.DataFrame, as_of) -> pd.DataFrame:
    """Deals open on ``as_of``: created on or before it (when known) and not closed, or closed after it."""
    a = pd.Timestamp(as_of)
    created = pd.to_datetime(_col(deals, "created_date"))
    close = pd.to_datetime(_col(deals, "close_date"))
    started = created.isna() | (created <= a)
    still_open = deals["outcome"].eq("Open") | (close > a).fillna(False)
    out = deals[started & still_open].copy()
    out["outcome"] = "Open"
    return out


def churn_candidates(churn, window: Window, n: int = 5) -> pd.DataFrame:
    """The churned customers that can be among ``churned_in``'s ``n``, as a frame: ``churn`` itself when
    a frame; of an engine table, those churned in the window whose lost amount is at least the
    ``n``-th largest (ties included; every one churned in the window when fewer than ``n`` carry an
    amount), typed as loaded, in the table's order where it has one (the rest are not sent)."""
    if not isinstance(churn, ibis.Table):
        return churn
    t = ex.in_order(churn)
    c = t.filter(t.churn_date >= ex.day(window.start), t.churn_date <= ex.day(window.as_of))
    top = c.order_by(c.lost_amount.desc(nulls_first=False)).limit(n).select("lost_amount").execute()
    least = top["lost_amount"].iloc[-1] if len(top) == n else np.nan
    if pd.notna(least):
        c = c.filter(c.lost_amount >= float(least))
    got = c.order_by(ex.ROW if ex.ROW in c.columns else ["account", "churn_date"]).execute()
    return ex.as_loaded(got.drop(columns=[ex.ROW], errors="ignore").reset_index(drop=True), "churn")


def churned_in(churn: pd.DataFrame, window: Window, n: int = 5) -> pd.DataFrame:
    """The ``n`` largest churned customers with ``start <= churn_date <= as_of``: lost_amount descending,
    then account, then churn_date."""
    c = churn[window.contains(churn["churn_date"]).fillna(False)]
    return c.sort_values(
        ["lost_amount", "account", "churn_date"],
        ascending=[False, True, True],
        na_position="last",
        kind="stable",
    ).head(n)


def top_churned(
    churn: pd.DataFrame,
    window: Window,
    deals: pd.DataFrame | None = None,
    n: int = 5,
    dated: bool | None = None,
) -> pd.DataFrame:
    """The ``n`` largest churned customers (``churned_in``). ``owner`` = rep of the account's latest won
    deal; ``customer_days`` = churn_date − the account's first won close_date (the customer lifetime),
    when the deals carry accounts. ``deals``: prepared deals holding at least the listed accounts' won
    deals. ``dated``: whether any won deal with an account has a close date, given when ``deals`` holds
    only the listed accounts' won deals (maybe none) of data with accounts; default: found in ``deals``."""
    c = churned_in(churn, window, n).copy()
    owner = pd.Series(np.nan, index=c.index, dtype="object")
    days = pd.Series(np.nan, index=c.index, dtype="float64")
    if deals is not None and (dated is not None or has_values(deals, "account")):
        won = deals["outcome"].eq("Won") & deals["account"].notna()
        if dated is None:
            dated = "close_date" in deals.columns and bool((won & deals["close_date"].notna()).any())
        cols = [k for k in ("opportunity_id", "account", "close_date", "rep") if k in deals.columns]
        listed = won & isin(deals["account"], c["account"])  # the listed accounts' won deals suffice
        won = deals[cols][listed]
        if not len(won):  # no listed account has a won deal: nothing to look up
            owner = pd.Series(np.nan, index=c.index, dtype="str")
        elif dated:
            won = won.sort_values(["close_date", "opportunity_id"])
            first = won.groupby("account")["close_date"].min()
            owner = c["account"].map(won.groupby("account")["rep"].last())
            days = (c["churn_date"] - c["account"].map(first)).dt.days.astype("float64")
        else:
            owner = c["account"].map(won.groupby("account")["rep"].last())
    return pd.DataFrame(
        {
            "account": c["account"],
            "churn_date": c["churn_date"],
            "lost_amount": c["lost_amount"],
            "reason": _col(c, "reason"),
            "owner": owner,
            "customer_days": days,
        }
    ).reset_index(drop=True)


# --------------------------------------------------------------------------------------------------
# data quality
# --------------------------------------------------------------------------------------------------
def is_other_reason(reason: pd.Series) -> pd.Series:
    """A catch-all loss reason: "Other"/"Unknown"/"N/A"/"None"/"Misc" (any case), or text starting "other"."""
    txt = reason.astype("object").where(reason.notna(), "").astype(str).str.strip().str.lower()
    return reason.notna() & (txt.isin(OTHER_REASON_WORDS) | txt.str.startswith("other"))


def _named(df: pd.DataFrame, issue: str) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "issue": issue,
            "opportunity_id": df["opportunity_id"],
            "rep": _col(df, "rep"),
            "account": _col(df, "account"),
            "outcome": df["outcome"],
            "close_date": _col(df, "close_date"),
            "amount": _col(df, "amount"),
        }
    )


def quality_issues(
    closed: pd.DataFrame,
    qualifying_stage: str | None = None,
    check_reasons: bool = True,
    never: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """Named deals the process should fix, one row per (issue, deal): lost with no loss reason; lost with a
    catch-all ("Other") reason (both only with ``check_reasons``: a dataset that records no reasons at all
    is one finding, not one per deal); closed without ever reaching ``qualifying_stage`` (``never``: those
    deals, found where the history lives by ``WindowDeals.issue_rows``; None when the data cannot tell).
    Ordered by issue, then amount descending, then opportunity_id."""
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
    if never is not None:
        parts.append(_named(never, f"Closed without reaching {qualifying_stage}"))
    cols = ["issue", "opportunity_id", "rep", "account", "outcome", "close_date", "amount"]
    if not parts:
        return pd.DataFrame(columns=cols)
    out = pd.concat(parts, ignore_index=True)
    out["_r"] = out["issue"].map({p["issue"].iloc[0]: i for i, p in enumerate(parts) if len(p)})
    out = out.assign(_amt=out["amount"].astype("float64"), _id=out["opportunity_id"].astype(str))
    out = out.sort_values(["_r", "_amt", "_id"], ascending=[True, False, True], na_position="last")
    return out.drop(columns=["_r", "_amt", "_id"]).reset_index(drop=True)


def quality_summary(
    closed: pd.DataFrame,
    issues: pd.DataFrame,
    duplicates: pd.DataFrame,
    undated: int = 0,
    can_check_qualifying: bool = False,
    qualifying_stage: str | None = None,
    check_reasons: bool = True,
    possible: int = 0,
    counts: pd.Series | None = None,
) -> pd.DataFrame:
    """Counts and shares of each data-quality issue (``counts``: issue → deals, when counted where the
    deals live instead of listed in ``issues``). Shares: no reason and "Other" reason ÷ lost deals;
    never qualified ÷ closed deals; duplicates ÷ (closed deals + duplicates); undated ÷ (closed deals +
    undated); ``possible`` duplicates (kept; ``Deals`` counts them) ÷ (closed deals + duplicates),
    shown when there are any. ``closed``: the closed deals, or their overall ``pooled_rates`` row."""
    if "outcome" in closed.columns or "deals" not in closed.columns:
        lost_n = int(closed["outcome"].eq("Lost").sum())
        closed_n = len(closed)
    else:
        lost_n, closed_n = int(closed["lost"].iloc[0]), int(closed["deals"].iloc[0])
    counts = issues["issue"].value_counts() if counts is None else counts

    def row(check, k, base, base_label):
        return {"check": check, "deals": int(k), "base": base_label, "share": (k / base) if base else np.nan}

    rows = []
    if check_reasons:
        rows += [
            row("Lost with no loss reason", counts.get("Lost with no loss reason", 0), lost_n, "lost deals"),
            row(
                "Lost with an 'Other' reason",
                counts.get("Lost with an 'Other' reason", 0),
                lost_n,
                "lost deals",
            ),
        ]
    if can_check_qualifying:
        name = f"Closed without reaching {qualifying_stage}"
        rows.append(row(name, counts.get(name, 0), closed_n, "closed deals"))
    rows.append(row("Duplicate records (left out)", len(duplicates), closed_n + len(duplicates), "records"))
    if possible:
        rows.append(
            row(
                "Possible duplicates: identical records without account or date (kept)",
                possible,
                closed_n + len(duplicates),
                "records",
            )
        )
    if undated:
        rows.append(
            row(
                "Closed with no close date (left out of the window)",
                undated,
                closed_n + undated,
                "closed deals",
            )
        )
    return pd.DataFrame(rows)


# --------------------------------------------------------------------------------------------------
# headlines and "what to look at"
# --------------------------------------------------------------------------------------------------
def top_competitor(competitors: pd.DataFrame | None) -> tuple[str, float] | None:
    """The competitor we lost the most deals to in the window, and its share of the lost deals that name a
    competitor (pooled and "(not set)" rows left out); None when no lost deal names one."""
    if competitors is None or not len(competitors):
        return None
    named = competitors[
        ~competitors["group"].isin([NOT_SET]) & ~competitors["group"].astype(str).str.startswith("Other (")
    ]
    named = named[named["lost"] > 0]
    if not len(named):
        return None
    lost_named = competitors.loc[competitors["group"] != NOT_SET, "lost"].sum()
    best = named.sort_values(["lost", "group"], ascending=[False, True]).iloc[0]
    return str(best["group"]), float(best["lost"] / lost_named)


def headline_figures(
    overall: pd.DataFrame,
    change: dict,
    reasons: pd.DataFrame,
    summary: pd.DataFrame,
    review_label: str = "",
    comparison_label: str = "",
    competitors: pd.DataFrame | None = None,
) -> list[Fig]:
    """The review's headline figures (registry entries) over the review window ``review_label`` and the
    comparison window ``comparison_label``; the change says whether it is within the noise."""
    o = overall.iloc[0]
    rv, cmp_ = review_label or None, comparison_label or None
    n = int(o["deals"])
    closed = f"{n:,} closed"
    noise = None
    if pd.notna(change.get("change")):
        noise = (
            "within the noise (the 95% intervals overlap)"
            if change["intervals_overlap"]
            else "a real shift (the 95% intervals do not overlap)"
        )
    figs = [
        Fig("closed_deals", n, rv),
        Fig("win_rate", o["win_rate"], rv, closed),
        Fig("win_rate_ci_low", o["ci_low"], rv),
        Fig("win_rate_ci_high", o["ci_high"], rv),
        Fig("win_rate_value", o["value_win_rate"], rv, closed),
        Fig("win_rate_comparison", change["previous"], cmp_),
        Fig("win_rate_change", change["change"], f"{rv} vs {cmp_}" if rv and cmp_ else None, noise),
    ]
    recorded = reasons[reasons["reason"].ne(NO_REASON)] if len(reasons) else reasons
    if len(recorded):
        top = recorded.iloc[0]
        figs.append(Fig("top_loss_reason", str(top["reason"]), rv))
        figs.append(Fig("top_loss_reason_share", top["share"], rv))
    top = top_competitor(competitors)
    if top is not None:
        figs.append(Fig("top_competitor", top[0], rv))
        figs.append(Fig("top_competitor_share", top[1], rv))
    s = summary.set_index("check")
    if "Lost with no loss reason" in s.index:
        figs.append(Fig("lost_without_reason_share", s.at["Lost with no loss reason", "share"], rv))
    if "Duplicate records (left out)" in s.index:
        figs.append(Fig("duplicate_records", int(s.at["Duplicate records (left out)", "deals"]), rv))
    # what leadership reads first (the index and the email show the first figures); interval bounds last
    first = (
        "closed_deals",
        "win_rate",
        "win_rate_change",
        "win_rate_value",
        "top_loss_reason",
        "top_loss_reason_share",
    )
    return sorted(figs, key=lambda f: first.index(f.key) if f.key in first else len(first))


def _pct(x) -> str:
    return "n/a" if x is None or pd.isna(x) else f"{x:.0%}"


# the review's sections the "what to look at" points refer to (their headings, without the number)
RATES, LOSSES = "Win rates", "Why we lose"


def what_to_look_at(
    overall: pd.DataFrame,
    change: dict,
    by_dim: dict[str, pd.DataFrame],
    reasons: pd.DataFrame,
    summary: pd.DataFrame,
    min_deals: int,
    review_label: str = "",
    comparison_label: str = "",
    dated: bool = True,
) -> list[Point]:
    """The few points the meeting should start with, computed from the numbers:
    the win rate and its change (flagged as noise when the 95% intervals overlap); the top recorded loss
    reason's share; the groups whose interval lies wholly above or below the overall rate (n ≥ min_deals, pooled rows
    excluded); data-quality shares above 10%."""
    o = overall.iloc[0]
    points = []
    if not o["deals"]:
        return [
            Point(f"No deals closed in {review_label or 'the review window'}.", RATES, "info", ("win_rate",))
        ]
    head = (
        f"Win rate {_pct(o['win_rate'])} on {int(o['deals']):,} closed deals "
        f"(95% interval {_pct(o['ci_low'])}–{_pct(o['ci_high'])})"
    )
    if pd.notna(change.get("change")):
        pts = change["change"] * 100
        noise = (
            " — within the noise of these sample sizes"
            if change["intervals_overlap"]
            else " — a real shift (the intervals do not overlap)"
        )
        head += (
            f", {'up' if pts >= 0 else 'down'} {abs(pts):.0f} point{'' if round(abs(pts)) == 1 else 's'} from {_pct(change['previous'])} in "
            f"{comparison_label or 'the comparison window'}{noise}."
        )
    elif not dated:
        head += "; the records carry no dates, so there is no comparison."
    else:
        head += "; no deals closed in the comparison window to compare with."
    points.append(Point(head, RATES, "info", ("win_rate", "win_rate_change")))
    recorded = reasons[reasons["reason"].ne(NO_REASON)] if len(reasons) else reasons
    if len(recorded):
        top = recorded.iloc[0]
        cum80 = int((reasons["cum_share"] < 0.8).sum() + 1)
        k = min(cum80, len(reasons))
        points.append(
            Point(
                f"Top loss reason: {escape.markdown(top['reason'])} — {_pct(top['share'])} of lost deals "
                f"({int(top['deals'])} of {int(reasons['deals'].sum())}); "
                + ("it alone covers" if k == 1 else f"{k} reasons cover")
                + " 80% of losses.",
                LOSSES,
                "info",
                ("top_loss_reason", "top_loss_reason_share"),
            )
        )
    outliers = []
    for dim, t in by_dim.items():
        sub = t[(t["deals"] >= min_deals) & ~t["group"].eq(other_label(min_deals)) & t["groups_pooled"].eq(1)]
        sub = sub[(sub["ci_low"] > o["win_rate"]) | (sub["ci_high"] < o["win_rate"])]  # the outliers only
        for _, r in sub.iterrows():
            if r["ci_low"] > o["win_rate"]:
                outliers.append(
                    (
                        r["ci_low"] - o["win_rate"],
                        f"{DIMENSIONS.get(dim, dim)} {escape.markdown(r['group'])} wins "
                        f"{_pct(r['win_rate'])} (interval {_pct(r['ci_low'])}–{_pct(r['ci_high'])}, "
                        f"n={int(r['deals'])}), clearly above the overall rate",
                    )
                )
            elif r["ci_high"] < o["win_rate"]:
                outliers.append(
                    (
                        o["win_rate"] - r["ci_high"],
                        f"{DIMENSIONS.get(dim, dim)} {escape.markdown(r['group'])} wins "
                        f"{_pct(r['win_rate'])} (interval {_pct(r['ci_low'])}–{_pct(r['ci_high'])}, "
                        f"n={int(r['deals'])}), clearly below the overall rate",
                    )
                )
    for _, text in sorted(outliers, key=lambda t: -t[0])[:3]:
        points.append(Point(text + ".", RATES, "bad" if "below" in text else "info"))
    if not outliers and by_dim:
        points.append(
            Point(
                "No segment, region, rep or other group differs from the overall win rate by more than "
                "its 95% interval allows.",
                RATES,
            )
        )
    for _, r in summary.iterrows():
        if pd.notna(r["share"]) and r["share"] > 0.10:
            points.append(
                Point(
                    f"Data quality: {r['check'].lower()} — {int(r['deals'])} ({_pct(r['share'])} of {r['base']}).",
                    "Data quality of the review",
                    "watch",
                )
            )
    return points


# --------------------------------------------------------------------------------------------------
# the whole review (what the notebook shows), from a loaded dataset
# --------------------------------------------------------------------------------------------------
DIMENSION_NEEDS = {  # dimension -> (table, columns) it needs
    "segment": ("opportunities", ("segment",)),
    "region": ("opportunities", ("region",)),
    "source": ("opportunities", ("source",)),
    "product": ("opportunities", ("product",)),
    "size_band": ("opportunities", ("amount",)),
    "deal_type": ("opportunities", ("deal_type",)),
    "rep": ("opportunities", ("owner",)),
    "team": ("reps", ("rep_id", "team")),
}


@dataclass
class Review:
    """Every table of the win/loss review. ``needs`` maps a section to the sentence saying what it needs
    (sections absent from ``needs`` have their data)."""

    review: Window
    comparison: Window
    min_deals: int
    dated: bool  # the data has close dates (else every closed record is in scope)
    duplicates: pd.DataFrame
    closed: int  # the deals closed in the review window
    undated: int
    overall: pd.DataFrame
    overall_comparison: pd.DataFrame
    change: dict
    by_dim: dict[str, pd.DataFrame]
    competitors: pd.DataFrame | None
    trend: pd.DataFrame | None
    reasons_count: pd.DataFrame
    reasons_value: pd.DataFrame
    reasons_by_segment: pd.DataFrame | None
    reasons_by_competitor: pd.DataFrame | None
    lost_at: pd.DataFrame | None
    side: pd.DataFrame
    distinguishing: list[str]
    top_open: pd.DataFrame
    top_won: pd.DataFrame
    top_lost: pd.DataFrame
    top_churned: pd.DataFrame | None
    issues: pd.DataFrame
    quality: pd.DataFrame
    headlines: list[dict]
    points: list[str]
    needs: dict[str, str] = field(default_factory=dict)
    size_edges: list[float] = field(default_factory=list)

    @property
    def has_amounts(self) -> bool:
        return bool(self.overall["value_win_rate"].notna().any())


def _team_reps(reps: pd.DataFrame | None) -> list[str]:
    """The rep ids ``prepare_deals`` gives a team (the first row of each rep id)."""
    if reps is None or not {"rep_id", "team"} <= set(reps.columns):
        return []
    r = reps.drop_duplicates("rep_id")
    return r.loc[r["team"].notna(), "rep_id"].astype(str).tolist()


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
    history=None,
    opportunities=None,
    engine=None,
    figures_only: bool = False,
    churn=None,
) -> Review:
    """Compute the review for ``ds`` (a ``helpers.data.dataset.Dataset``): the functions above, composed.
    ``opportunities``: the deals where they live (an engine table; default the loaded table, run as an
    in-memory one): the review asks them for what its sections show (``Deals``), the closed deals of the
    review and comparison windows, the open deals that can be among the largest, the won deals of the
    churned accounts listed, the trend's totals per month, the duplicate records and counts.
    ``activities``: the activity log where it lives (an engine table; default the loaded table), with
    ``missing`` (default ``ds.missing``) answering for it; ``churn``: the churn table where it lives
    (default: the loaded table), asked for the customers the list can show (``churn_candidates``);
    ``history``: opportunity_history where it lives,
    beside the opportunities (default: the loaded table). Only aggregates and the deals the lists show
    come back (``WindowDeals``); ``engine``: the ``Engine`` they live on, which keeps the window's deals
    while the review runs (``Engine.keep``). ``figures_only``: the review is read for its headline
    figures only (last month's, for the change): the totals per dimension and the loss reasons' cross
    tables, which no figure reads, are not asked (``by_dim`` is empty, the cross tables None, and the
    points say less)."""
    cfg = ds.config
    review, comp = review_windows(period, as_of, cal, review_window, comparison_period)
    src = Deals(opportunities if opportunities is not None else ds.tables["opportunities"])
    duplicates = src.duplicates
    possible = src.counts["possible"]
    reps = ds.tables.get("reps")
    if size_edges is None:
        size_edges = src.size_edges()
    dated_data = src.has("close_date")
    # the closed deals of the review and comparison windows (every closed deal without close dates), where
    # they live: their totals, middle values and the few deals shown come back
    kept = []

    def keep(e):
        kept.append(engine.keep(e))
        return kept[-1]

    now = WindowDeals(src, review if dated_data else None, keep=keep if engine is not None else None)
    before = WindowDeals(src, comp, empty=not dated_data)
    needs: dict[str, str] = {}

    def need(key, table, *cols, section):
        if table == "opportunities" and all(src.has(c) for c in cols):
            return True  # the deals' counts say so: no query
        msg = (missing or ds.missing)(table, *cols, section=section)
        if msg:
            needs[key] = msg
        return msg is None

    overall, overall_comp = now.overall(), before.overall()
    closed_n, lost_n = int(overall.at[0, "deals"]), int(overall.at[0, "lost"])
    change = rate_change(overall, overall_comp)
    need("value", "opportunities", "amount", section="Win rate by value")
    if "value" not in needs and not overall["value_win_rate"].notna().any() and closed_n:
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
    owner_is = {
        "rep": lambda raw: rep_and_team(pd.Series(raw, dtype="str"), reps)[0],
        "team": lambda raw: rep_and_team(pd.Series(raw, dtype="str"), reps)[1],
    }
    keys = {}
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
            if dim == "size_band":
                keys[dim] = (lambda c: _band(c, size_edges, currency_symbol), None)
            else:
                keys[dim] = ((lambda col: lambda c: _text(c, col))("owner" if dim in owner_is else dim), None)
    with_competitors = need(
        "competitor", "opportunities", "competitor", section="Win rate against each competitor"
    )
    if with_competitors:
        keys["competitor"] = (lambda c: _text(c, "competitor"), None)
    keys["_reason"] = (lambda c: _text(c, "loss_reason"), None)
    for dim in ("segment", "competitor"):
        if src.has(dim):
            keys[f"_reason:{dim}"] = (
                lambda c: _text(c, "loss_reason"),
                (lambda col: lambda c: _text(c, col))(dim),
            )
    if figures_only:  # what the headline figures read: the loss reasons and the competitors
        keys = {k: v for k, v in keys.items() if k in ("_reason", "competitor")}
    # the rep and team dimensions both group the deals by owner (mapped to reps or teams here): the
    # owners' totals are asked once, under "rep", and read for both
    read_as = {"team": "rep"} if "rep" in keys and "team" in keys else {}
    got = now.totals({k: v for k, v in keys.items() if k not in read_as})
    by_dim = {}
    for dim in DIMENSION_NEEDS:
        if dim in keys:
            order = size_band_labels(size_edges, currency_symbol) if dim == "size_band" else None
            g = WindowDeals.rate_totals(got, read_as.get(dim, dim), owner_is.get(dim))
            by_dim[dim] = pooled_rates(g, dim, min_deals, order=order)
    competitors = None
    if with_competitors:
        competitors = pooled_rates(WindowDeals.rate_totals(got, "competitor"), "competitor", min_deals)
    # figures_only: no figure reads the trend, the stage lost at, the sides, the lists or the churned
    # customers: not asked
    trend = (
        win_rate_trend(src.t, review, comp, cal, periods=12 if review_window == "month" else 6)
        if dated and not figures_only
        else None
    )
    per_reason = WindowDeals.reasons(got)
    reasons_count = ranked_reasons(per_reason, "count")
    reasons_value = ranked_reasons(per_reason, "value")
    need("reasons", "opportunities", "loss_reason", section="Loss reasons")
    crossed = src.has("competitor") and not figures_only
    reasons_by_segment = (
        WindowDeals.reasons_by(got, "segment") if src.has("segment") and not figures_only else None
    )
    reasons_by_competitor = WindowDeals.reasons_by(got, "competitor") if crossed else None
    lost_at = None
    if need(
        "history",
        "opportunity_history",
        "opportunity_id",
        "changed_at",
        "stage",
        section="The stage at which deals were lost (and stage changes, amount changes, qualification)",
    ):
        # every measure below reads a closed deal's own history rows only, joined where they live
        if history is None:
            history = ds.tables["opportunity_history"]
        lost_at = now.lost_at(history, cfg) if not figures_only else None
    else:
        history = None
    activities = activities if activities is not None else ds.tables.get("activities")
    need("activities", "activities", "opportunity_id", section="Activities per deal")
    side = (
        now.side(closed_n - lost_n, lost_n, history, cfg, activities if "activities" not in needs else None)
        if not figures_only
        else None
    )
    top_churn = None
    listed = need(
        "churn", "churn", "account", "churn_date", "lost_amount", section="The churned customers list"
    )
    if listed and not figures_only:
        churn = churn_candidates(churn if churn is not None else ds.tables["churn"], review)
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
    judged = can_q and cfg.qualifying_stage in cfg.stages
    others = per_reason["reason"][is_other_reason(per_reason["reason"])].tolist()
    counts = None
    if figures_only:  # the data-quality figures read how many deals each issue has: counted, not listed
        counts = now.issue_counts(others, history if judged else None, cfg, check_reasons)
        issues = quality_issues(pd.DataFrame(columns=["opportunity_id", "outcome"]), check_reasons=False)
    else:
        rows, never = now.issue_rows(others, history if judged else None, cfg, check_reasons)
        rows = prepare_deals(rows, reps, review.as_of, size_edges, currency_symbol)
        issues = quality_issues(
            rows, cfg.qualifying_stage, check_reasons, never=rows[never.to_numpy()] if judged else None
        )
    undated = src.counts["undated"] if dated_data else 0
    quality = quality_summary(
        overall, issues, duplicates, undated, can_q, cfg.qualifying_stage, check_reasons, possible, counts
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
    if not check_reasons and closed_n:
        points.append(
            "The data records no loss reasons, so this review cannot say why deals are lost: make "
            "a loss reason required when a deal is closed lost."
        )

    def top(won):
        return prepare_deals(now.top(won), reps, review.as_of, size_edges, currency_symbol)

    if figures_only:
        top_open = top_won = top_lost = pd.DataFrame()
    else:
        open_deals = prepare_deals(
            src.top_open(review.as_of), reps, review.as_of, size_edges, currency_symbol
        )
        top_open = top_deals(open_as_of(open_deals, review.as_of), "Open")
        top_won, top_lost = top_deals(top(True), "Won"), top_deals(top(False), "Lost")
    for t in kept[::-1]:
        engine.drop(t)
    return Review(
        review,
        comp,
        min_deals,
        dated_data,
        duplicates,
        closed_n,
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
        what_distinguishes_wins(side) if side is not None else [],
        top_open,
        top_won,
        top_lost,
        top_churn,
        issues,
        quality,
        figs,
        points,
        needs,
        size_edges,
    )
