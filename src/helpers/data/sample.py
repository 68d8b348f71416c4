"""Deterministic, realistic sample dataset generator (any size, vectorised numpy).

``write_sample(folder, seed, as_of, n_opportunities, n_reps, ...)`` writes a dataset folder with every
contract table plus ``dataset.yml``. The same parameters give byte-identical files (one seeded
``numpy.random.Generator``; no per-row Python loops, so a million opportunities take seconds).

The model, in short:

- **Window**: history starts at the fiscal year that began at least three years before ``as_of``
  (deals are created from ~75 days earlier so the first quarter has a realistic open pipeline).
- **Reps**: ``n_reps`` AEs in 3–5 regional teams (+ an SDR team of ``max(2, n_reps // 6)``). Most AEs are
  tenured, the rest are hired over the window (head-count growth), 2–3 in the last four months (ramping),
  a couple have left. Productivity ``p`` is a stratified lognormal (sigma 0.28); a rep's share of new
  deals ∝ ``p^0.5 × territory_weight × ramp`` and their win odds ∝ ``p^0.5``, so bookings ∝ ``p``.
- **Deals**: segment SMB / Mid-Market / Enterprise with lognormal sizes (median 10k / 35k / 120k) and
  cycles (30 / 60 / 110 days); win probability by segment × source × rep × deal type (≈ 25% overall);
  lost deals drop out at some stage; won deals are pulled to the end of the fiscal quarter (harder in
  Q4); deal sizes grow 7% a year and creation follows fiscal seasonality.
- **Calibration**: one global factor scales all amounts so the median fully-ramped AE books
  ``BOOKINGS_PER_OTE`` × OTE in the last 12 months (top performers then land at ~4–5×).
- **History**: creation, each stage entry, amount changes (~30% of deals), close-date pushes (slips)
  and the close; each row holds the values after the change, and the last row equals the current row.
- **Dirty rows** (warnings only): stale open deals whose close date passed, open deals without a next
  step, a few zero amounts.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass
from pathlib import Path
from statistics import NormalDist

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import yaml

from helpers.data.atomic import replace_folder
from helpers.data.calendar import FiscalCalendar, last_complete_month

GENERATOR = "revops-sample"
GENERATOR_VERSION = 1
# the generator's own source: a sample written by older code is regenerated, never silently reused
CODE_FINGERPRINT = hashlib.sha256(Path(__file__).read_bytes()).hexdigest()[:12]
DEFAULT_OPPORTUNITIES = 4000
DEFAULT_REPS = 30
DEFAULT_ACTIVITIES_PER_OPPORTUNITY = 10.0
FISCAL_START_MONTH = 2
BOOKINGS_PER_OTE = 2.9  # a median, fully ramped AE books this × OTE in the last complete fiscal year
PRODUCTIVITY_SIGMA = 0.22  # lognormal spread of AE productivity (top of 30 ≈ 1.6× the median)
QUOTA_PER_OTE = 3.4  # annual bookings quota ÷ OTE (before territory weight): the median AE attains ~85%
QUOTA_GROWTH = 1.15  # rep quotas grow with the business, year over year
TARGET_GROWTH = 1.2  # company target = last fiscal year's bookings × 1.2
# the dirty rows are planted (module docstring); `revops validate` says so above the sample's warnings
EXPECTED_WARNINGS = (
    "planted on purpose in this synthetic sample, to show the deals-needing-attention list: open deals past "
    "their close date, open deals without a next step, a few zero amounts"
)

STAGES = [
    ("Prospecting", 0.05),
    ("Qualification", 0.10),
    ("Discovery", 0.20),
    ("Proposal", 0.40),
    ("Negotiation", 0.65),
    ("Closed Won", 1.0),
    ("Closed Lost", 0.0),
]
OPEN_STAGES = 5  # Prospecting .. Negotiation (indices 0..4); 5 = Closed Won, 6 = Closed Lost
WON, LOST = 5, 6
STAGE_TIME_SHARE = np.array([0.12, 0.18, 0.25, 0.25, 0.20])  # share of the cycle spent in each open stage
LOST_AT_STAGE = np.array([0.30, 0.25, 0.20, 0.15, 0.10])  # where lost deals drop out

SEGMENTS = ["SMB", "Mid-Market", "Enterprise"]
SEGMENT_MIX = np.array([0.55, 0.33, 0.12])
SEGMENT_DEAL_MEDIAN = np.array([10_000.0, 35_000.0, 120_000.0])
SEGMENT_DEAL_SIGMA = np.array([0.5, 0.5, 0.6])
SEGMENT_CYCLE_MEDIAN = np.array([30.0, 60.0, 110.0])
SEGMENT_WIN = np.array([0.30, 0.25, 0.19])
SEGMENT_ROUND = np.array([100.0, 500.0, 1000.0])

SOURCES = ["Inbound", "Outbound", "Partner", "Event", "Referral"]
SOURCE_MIX = np.array([0.35, 0.30, 0.13, 0.12, 0.10])
SOURCE_WIN = np.array([1.10, 0.70, 1.20, 0.90, 1.50])
SOURCE_FROM_LEAD = np.array([0.85, 0.80, 0.25, 0.90, 0.30])  # share of deals that came through a lead

DEAL_TYPES = ["New Business", "Expansion", "Renewal"]
DEAL_TYPE_MIX = np.array([0.72, 0.22, 0.06])
DEAL_TYPE_SIZE = np.array([1.0, 0.55, 0.8])
DEAL_TYPE_WIN = np.array([1.0, 1.45, 1.9])

PRODUCTS = ["Core Platform", "Analytics Add-on", "Enterprise Suite", "Integrations Pack"]
PRODUCT_MIX_BY_SEGMENT = np.array(
    [
        [0.65, 0.20, 0.02, 0.13],
        [0.45, 0.25, 0.15, 0.15],
        [0.15, 0.15, 0.60, 0.10],
    ]
)
LOSS_REASONS = ["Price", "No decision", "Competitor", "Timing", "Missing feature", "Other", ""]
LOSS_REASON_MIX = np.array([0.20, 0.25, 0.20, 0.12, 0.10, 0.05, 0.08])
COMPETITORS = ["Globex", "Initech", "Hooli", "Vandelay", "Umbrella"]
COMPETITOR_MIX = np.array([0.32, 0.25, 0.18, 0.15, 0.10])
CHURN_REASONS = [
    "Budget cuts",
    "Switched to competitor",
    "Poor adoption",
    "Company acquired",
    "Missing feature",
    "Champion left",
]
CHURN_REASON_MIX = np.array([0.25, 0.22, 0.2, 0.1, 0.13, 0.1])

TEAMS = [
    ("NA East", "North America"),
    ("NA West", "North America"),
    ("EMEA", "EMEA"),
    ("APAC", "APAC"),
    ("LATAM", "LATAM"),
]
# creation seasonality by fiscal month (1 = first month of the fiscal year): slow start, strong H2
FISCAL_MONTH_WEIGHT = np.array([0.82, 0.90, 1.00, 0.92, 0.95, 1.02, 0.98, 1.05, 1.10, 1.12, 1.16, 0.98])
# probability that a won deal is pulled to the last days of its fiscal quarter, by fiscal quarter
QUARTER_END_PULL = np.array([0.25, 0.30, 0.30, 0.45])
# win odds by fiscal quarter of the deal's natural close (year-end budgets: Q4 strongest)
QUARTER_WIN = np.array([0.88, 0.97, 1.0, 1.18])
WIN_CALIBRATION = 0.80  # brings the overall win rate of closed deals to ≈ 25%
STALE_SHARE = 0.08  # open deals older than 60 days that the rep stopped updating
ZOMBIE_SHARE = 0.05  # recently lost deals never closed out in the CRM
PRE_WINDOW_DAYS = 240  # deals are created from this many days before the window so it opens with pipeline
ANNUAL_PRICE_GROWTH = 1.07
HEADCOUNT_GROWTH = 1.13  # AE head count per year
QUARTER_SHARE = np.array([0.21, 0.24, 0.25, 0.30])  # expected share of a fiscal year's bookings by quarter
LUCK_SHRINK_REP = 0.85  # how far a rep-year's bookings move towards expectation (0 = not, 1 = fully)
LUCK_SHRINK_QUARTER = 0.8  # same for the company's bookings in each fiscal quarter

NEXT_STEPS = [
    [
        "Book discovery call",
        "Research account and find champion",
        "Follow up on intro email",
        "Connect on LinkedIn with VP Sales",
    ],
    [
        "Confirm budget and timeline",
        "Qualify pain with ops lead",
        "Schedule discovery with team",
        "Send case study",
    ],
    [
        "Demo for the wider team",
        "Map decision makers",
        "Technical deep dive with IT",
        "Share ROI model draft",
    ],
    [
        "Send proposal",
        "Walk CFO through pricing",
        "Revise proposal after feedback",
        "Security questionnaire due",
    ],
    ["Legal review of MSA", "Final pricing call", "Procurement paperwork", "Signature expected this week"],
]

FIRST = [
    "Alex",
    "Sam",
    "Jordan",
    "Taylor",
    "Morgan",
    "Casey",
    "Riley",
    "Jamie",
    "Avery",
    "Quinn",
    "Drew",
    "Harper",
    "Rowan",
    "Emerson",
    "Parker",
    "Reese",
    "Skyler",
    "Dakota",
    "Logan",
    "Cameron",
    "Maria",
    "Wei",
    "Priya",
    "Omar",
    "Lena",
    "Diego",
    "Sofia",
    "Kenji",
    "Amara",
    "Noah",
    "Ingrid",
    "Mateo",
]
LAST = [
    "Smith",
    "Garcia",
    "Chen",
    "Patel",
    "Müller",
    "Okafor",
    "Kim",
    "Rossi",
    "Silva",
    "Nguyen",
    "Cohen",
    "Dubois",
    "Novak",
    "Larsen",
    "Tanaka",
    "Walsh",
    "Moreau",
    "Haddad",
    "Costa",
    "Fischer",
    "Brooks",
    "Khan",
    "Ivanova",
    "Reyes",
    "Lindqvist",
    "Mensah",
    "Park",
    "Ortiz",
    "Berg",
    "Alvarez",
    "Shah",
    "Doyle",
]
ACCOUNT_A = [
    "North",
    "Blue",
    "Bright",
    "Silver",
    "Iron",
    "Green",
    "Summit",
    "Cedar",
    "Harbor",
    "Atlas",
    "Nova",
    "Pine",
    "Granite",
    "Swift",
    "Clear",
    "Red",
    "Golden",
    "Prime",
    "Vertex",
    "Lumen",
    "Oak",
    "Maple",
    "Delta",
    "Echo",
    "Falcon",
    "Orbit",
    "Pioneer",
    "Quantum",
    "River",
    "Stone",
    "Terra",
    "Union",
    "Vista",
    "Willow",
    "Zenith",
    "Apex",
    "Beacon",
    "Crest",
    "Ember",
    "Frontier",
]
ACCOUNT_B = [
    "wind",
    "field",
    "point",
    "bridge",
    "stack",
    "line",
    "works",
    "gate",
    "path",
    "light",
    "forge",
    "wave",
    "peak",
    "port",
    "shore",
    "dale",
    "view",
    "crest",
    "mark",
    "core",
    "sight",
    "tree",
    "well",
    "brook",
    "ridge",
    "bay",
    "vale",
    "stream",
    "hill",
    "land",
]
ACCOUNT_C = [
    "Inc",
    "LLC",
    "Group",
    "Systems",
    "Labs",
    "Corp",
    "Partners",
    "Holdings",
    "Technologies",
    "Health",
    "Logistics",
    "Foods",
    "Energy",
    "Retail",
    "Capital",
    "Manufacturing",
]


class SampleError(RuntimeError):
    """The sample cannot be written (e.g. the target folder holds data this tool did not generate)."""


@dataclass(frozen=True)
class SampleParams:
    seed: int
    as_of: str
    n_opportunities: int
    n_reps: int
    activities_per_opportunity: float
    fmt: str

    def source_block(self) -> dict:
        return {
            "generator": GENERATOR,
            "version": GENERATOR_VERSION,
            "code": CODE_FINGERPRINT,
            "seed": int(self.seed),
            "as_of": self.as_of,
            "n_opportunities": int(self.n_opportunities),
            "n_reps": int(self.n_reps),
            "activities_per_opportunity": float(self.activities_per_opportunity),
            "format": self.fmt,
            "expected_warnings": EXPECTED_WARNINGS,
        }


def resolve_params(
    seed=42, as_of=None, n_opportunities=None, n_reps=None, activities_per_opportunity=None, fmt="csv"
) -> SampleParams:
    """Fill defaults: as_of = last day of the last complete month; 4,000 opportunities; 30 AEs."""
    if as_of is None or str(as_of) == "":
        as_of_ts = pd.Period(last_complete_month(), freq="M").end_time.normalize()
    else:
        as_of_ts = pd.Timestamp(as_of).normalize()
    n_opp = int(n_opportunities) if n_opportunities is not None else DEFAULT_OPPORTUNITIES
    reps = int(n_reps) if n_reps is not None else DEFAULT_REPS
    apo = (
        float(activities_per_opportunity)
        if activities_per_opportunity is not None
        else DEFAULT_ACTIVITIES_PER_OPPORTUNITY
    )
    if n_opp < 50:
        raise ValueError(f"n_opportunities must be at least 50, got {n_opp}")
    if reps < 3:
        raise ValueError(f"n_reps must be at least 3, got {reps}")
    if apo < 0:
        raise ValueError(f"activities_per_opportunity must be 0 or more, got {apo}")
    if fmt not in ("csv", "parquet"):
        raise ValueError(f"format must be csv or parquet, got {fmt!r}")
    return SampleParams(int(seed), str(as_of_ts.date()), n_opp, reps, apo, fmt)


# --------------------------------------------------------------------------------------------------
# small vectorised helpers
# --------------------------------------------------------------------------------------------------
def _day(ts) -> int:
    """Days since 1970-01-01 of a date."""
    return int(np.datetime64(pd.Timestamp(ts).date(), "D").astype("int64"))


def _dates(days: np.ndarray) -> pa.Array:
    """int days since epoch (with -1 / masked for null) → arrow date32."""
    return pa.array(np.asarray(days, dtype="int32"), type=pa.int32()).cast(pa.date32())


def _dates_masked(days: np.ndarray, valid: np.ndarray) -> pa.Array:
    return pa.array(np.asarray(days, dtype="int32"), mask=~valid, type=pa.int32()).cast(pa.date32())


def _stamps(seconds: np.ndarray) -> pa.Array:
    return pa.array(np.asarray(seconds, dtype="int64"), type=pa.int64()).cast(pa.timestamp("s"))


def _labels(codes: np.ndarray, names, valid: np.ndarray | None = None) -> pa.Array:
    """Category codes → a plain string array (null where not valid)."""
    idx = pa.array(np.asarray(codes, dtype="int32"), mask=None if valid is None else ~valid)
    return pa.DictionaryArray.from_arrays(idx, pa.array(list(names), type=pa.string())).dictionary_decode()


def _ids(prefix: str, n: int, width: int | None = None) -> pa.Array:
    """PREFIX-000001 … ids, zero-padded to at least 6 digits (and enough for n)."""
    width = width or max(6, len(str(n)))
    nums = pc.cast(pa.array(np.arange(1, n + 1, dtype="int64")), pa.string())
    return pc.binary_join_element_wise(prefix, pc.utf8_lpad(nums, width=width, padding="0"), "")


def _pick(rng: np.random.Generator, probs: np.ndarray, n: int) -> np.ndarray:
    """n category codes drawn with the given probabilities (inverse CDF, vectorised)."""
    cdf = np.cumsum(probs / probs.sum())
    return np.minimum(np.searchsorted(cdf, rng.random(n), side="right"), len(probs) - 1).astype("int64")


SDR_ACTIVITY_MIX = np.array([0.50, 0.33, 0.10, 0.0, 0.07])  # call, email, meeting, demo, social
SDR_ACTIVITY_SHARE = 0.40
WORK_HOUR_WEIGHTS = np.array([0.05, 0.10, 0.13, 0.13, 0.09, 0.10, 0.12, 0.12, 0.10, 0.06])  # 8:00 … 17:00


def _work_seconds(rng: np.random.Generator, days: np.ndarray, weekend_share=0.03) -> np.ndarray:
    """Timestamps (seconds since epoch, whole minutes) on the given days between 8:00 and 18:00, hours drawn
    from WORK_HOUR_WEIGHTS (busy mornings and afternoons, a lunch dip); weekend days move to Friday/Monday
    except a small share (moved to a random weekday of the same or next week)."""
    days = np.asarray(days, dtype="int64")
    dow = (days + 3) % 7  # 1970-01-01 was a Thursday → Monday = 0
    u = rng.random(len(days), dtype=np.float32)
    spread = rng.integers(1, 6, len(days), dtype=np.int64)  # to a weekday of the same or the next week
    shift = np.where(u >= weekend_share, np.where(dow == 5, -spread, np.where(dow == 6, spread, 0)), 0)
    hour = 8 + _pick(rng, WORK_HOUR_WEIGHTS, len(days))
    minute = rng.integers(0, 60, len(days), dtype=np.int64)
    return (days + shift) * 86400 + hour * 3600 + minute * 60


def _ramp(months_since_hire: np.ndarray, ramp_months: np.ndarray) -> np.ndarray:
    """Share of full productivity in month m after hire (m = 0 is the hire month): (m+1)/(ramp+1), capped at 1."""
    m = np.asarray(months_since_hire, dtype="float64")
    return np.where(m < 0, 0.0, np.minimum(1.0, (m + 1) / (np.asarray(ramp_months) + 1)))


def _month_index(days: np.ndarray) -> np.ndarray:
    """Months since 1970-01 of int days."""
    return np.asarray(days, dtype="int64").astype("datetime64[D]").astype("datetime64[M]").astype("int64")


def _fiscal_month(month_idx: np.ndarray) -> np.ndarray:
    """1..12 position of a calendar month (months since 1970-01) in the fiscal year."""
    cal_month = np.asarray(month_idx) % 12 + 1
    return (cal_month - FISCAL_START_MONTH) % 12 + 1


# --------------------------------------------------------------------------------------------------
# the generator
# --------------------------------------------------------------------------------------------------
def generate(params: SampleParams) -> tuple[dict[str, pa.Table], dict]:
    """All tables (arrow) and the dataset.yml mapping for ``params``."""
    rng = np.random.default_rng(params.seed)
    cal = FiscalCalendar(FISCAL_START_MONTH)
    as_of = pd.Timestamp(params.as_of)
    as_of_day = _day(as_of)
    end_sec = (as_of_day + 1) * 86400 - 60  # last minute of the as-of day
    fy_now = cal.fiscal_year(as_of)
    start = cal.year_start(fy_now - 3)
    if (as_of - start).days < 3 * 365 - 10:
        start = cal.year_start(fy_now - 4)
    start_day = _day(start)
    create_from = start_day - PRE_WINDOW_DAYS

    reps = _make_reps(rng, params.n_reps, start_day, as_of_day)
    ae = reps["role"] == "AE"
    n_ae = int(ae.sum())

    # ---- deals: creation day and owner (per month: active AEs weighted by productivity, territory, ramp)
    first_month, last_month = _month_index(np.array([create_from, as_of_day]))
    months = np.arange(first_month, last_month + 1)
    month_first_day = months.astype("datetime64[M]").astype("datetime64[D]").astype("int64")
    month_last_day = (months + 1).astype("datetime64[M]").astype("datetime64[D]").astype("int64") - 1
    lo = np.maximum(month_first_day, create_from)
    hi = np.minimum(month_last_day, as_of_day)
    ae_idx = np.flatnonzero(ae)
    hire_m = _month_index(reps["hire_day"][ae_idx])
    end_day_ae = reps["end_day"][ae_idx]
    share = np.sqrt(reps["productivity"][ae_idx]) * reps["territory_weight"][ae_idx]
    rep_month_w = np.zeros((len(months), n_ae))
    for i, m in enumerate(months):
        active = (reps["hire_day"][ae_idx] <= hi[i]) & ((end_day_ae < 0) | (end_day_ae >= lo[i] + 20))
        rep_month_w[i] = active * share * _ramp(m - hire_m, reps["ramp_months"][ae_idx])
    month_w = rep_month_w.sum(axis=1) * FISCAL_MONTH_WEIGHT[_fiscal_month(months) - 1] * (hi - lo + 1) / 30.4
    # extra deals for the months before the window (most of them close before it and are dropped below)
    pre_share = month_w[lo < start_day].sum() / month_w.sum()
    n = int(params.n_opportunities / (1 - 0.85 * pre_share))
    deals_per_month = rng.multinomial(n, month_w / month_w.sum())
    created = np.empty(n, dtype="int64")
    owner = np.empty(n, dtype="int64")
    pos = 0
    for i, k in enumerate(deals_per_month):
        if k == 0:
            continue
        created[pos : pos + k] = rng.integers(lo[i], hi[i] + 1, k)
        w = rep_month_w[i] / rep_month_w[i].sum()
        owner[pos : pos + k] = ae_idx[_pick(rng, w, k)]
        pos += k
    created = np.maximum(created, reps["hire_day"][owner])
    ended = reps["end_day"][owner] >= 0
    created = np.where(ended, np.minimum(created, reps["end_day"][owner] - 5), created)
    created = np.minimum(created, as_of_day)
    order = np.argsort(created, kind="stable")
    created, owner = created[order], owner[order]
    created_sec = np.minimum(_work_seconds(rng, created, weekend_share=0.0), as_of_day * 86400 + 17 * 3600)
    created = created_sec // 86400

    # ---- deal attributes
    seg = _pick(rng, SEGMENT_MIX, n)
    src = _pick(rng, SOURCE_MIX, n)
    dtype_ = _pick(rng, DEAL_TYPE_MIX, n)
    years_in = (created - start_day) / 365.25
    amount0 = (
        SEGMENT_DEAL_MEDIAN[seg]
        * np.exp(SEGMENT_DEAL_SIGMA[seg] * rng.standard_normal(n))
        * DEAL_TYPE_SIZE[dtype_]
        * ANNUAL_PRICE_GROWTH**years_in
    )
    cycle = SEGMENT_CYCLE_MEDIAN[seg] * np.exp(0.4 * rng.standard_normal(n)) * np.where(dtype_ > 0, 0.7, 1.0)
    cycle = np.clip(cycle, 7, 400)

    # stage durations in whole days (≥ 1); entry day offsets of stages 0..4; natural close offset
    shares = rng.gamma(4.0, 1.0, (n, OPEN_STAGES)) * STAGE_TIME_SHARE
    shares /= shares.sum(axis=1, keepdims=True)
    dur = np.maximum(1, np.rint(shares * cycle[:, None])).astype("int64")
    entry_off = np.concatenate([np.zeros((n, 1), dtype="int64"), np.cumsum(dur, axis=1)[:, :-1]], axis=1)
    full_off = dur.sum(axis=1)
    fq_nat = (_fiscal_month(_month_index(created + full_off)) - 1) // 3

    # win: segment × source × deal type × rep (√productivity) × fiscal quarter of the natural close;
    # drawn by systematic sampling within each rep so a rep's number of wins is close to expectation
    rep_win = np.sqrt(reps["productivity"][owner])
    p_win = (
        SEGMENT_WIN[seg]
        * SOURCE_WIN[src]
        * DEAL_TYPE_WIN[dtype_]
        * rep_win
        / np.mean(rep_win)
        * QUARTER_WIN[fq_nat]
    )
    p_win = np.clip(p_win * WIN_CALIBRATION, 0.02, 0.9)
    won = _systematic(rng, owner, p_win, len(reps["role"]))
    lost_at = np.where(won, OPEN_STAGES, _pick(rng, LOST_AT_STAGE, n))
    rows = np.arange(n)
    lost_stage = np.minimum(lost_at, OPEN_STAGES - 1)
    # lost deals leave at their drop-out stage, after lingering a while (no decision drags on)
    linger = cycle * np.exp(-0.9 + 0.6 * rng.standard_normal(n))
    lost_off = entry_off[rows, lost_stage] + np.maximum(
        1, np.rint(dur[rows, lost_stage] * rng.uniform(0.3, 1.0, n) + linger)
    ).astype("int64")
    close_off = np.where(won, full_off, lost_off)
    # end-of-quarter push: won deals pulled to the last 10 days of their fiscal quarter (harder in Q4);
    # won deals due in the first month of a fiscal year are partly pulled back into Q4
    close_day = created + close_off
    cm = _month_index(close_day)
    fm = _fiscal_month(cm)
    fq = (fm - 1) // 3
    q_end_month = cm + (2 - (fm - 1) % 3)
    q_end_day = (q_end_month + 1).astype("datetime64[M]").astype("datetime64[D]").astype("int64") - 1
    pull = won & (rng.random(n) < QUARTER_END_PULL[fq]) & (q_end_day - close_day > 10)
    target = q_end_day - rng.integers(0, 10, n)
    close_off = np.where(pull & (target > close_day), close_off + (target - close_day), close_off)
    fy_end = cm.astype("datetime64[M]").astype("datetime64[D]").astype("int64") - 1
    back = fy_end - rng.integers(0, 7, n)
    pull_back = won & (fm == 1) & (rng.random(n) < 0.3) & (back - created > entry_off[:, 4] + 1)
    close_off = np.where(pull_back, back - created, close_off)
    close_sec = created_sec + close_off * 86400 + rng.integers(-4, 4, n) * 3600
    close_sec = np.maximum(close_sec, created_sec + 3600)
    close_day = close_sec // 86400
    stage_sec = created_sec[:, None] + entry_off * 86400 + rng.integers(-3, 4, (n, OPEN_STAGES)) * 3600
    stage_sec[:, 0] = created_sec
    stage_sec = np.maximum.accumulate(stage_sec, axis=1)

    # deals closed before the window starts are not part of the history; keep n deals at most
    keep = close_day >= start_day
    surplus = int(keep.sum()) - params.n_opportunities
    if surplus > 0:
        keep[rng.choice(np.flatnonzero(keep), surplus, replace=False)] = False
    (
        created,
        created_sec,
        owner,
        seg,
        src,
        dtype_,
        amount0,
        cycle,
        dur,
        entry_off,
        full_off,
        won,
        lost_stage,
        close_off,
        close_sec,
        close_day,
        stage_sec,
    ) = (
        x[keep]
        for x in (
            created,
            created_sec,
            owner,
            seg,
            src,
            dtype_,
            amount0,
            cycle,
            dur,
            entry_off,
            full_off,
            won,
            lost_stage,
            close_off,
            close_sec,
            close_day,
            stage_sec,
        )
    )
    n = len(created)

    # stale open deals: the rep stopped updating them (no history after `updated_sec`); zombies: deals that
    # died in the last six months but were never closed out in the CRM (they stay open, mostly past due)
    zombie = (close_sec <= end_sec) & ~won & (close_day > as_of_day - 180) & (rng.random(n) < ZOMBIE_SHARE)
    open_at_end = (close_sec > end_sec) | zombie
    stale = (close_sec > end_sec) & (created < as_of_day - 60) & (rng.random(n) < STALE_SHARE)
    updated_sec = np.where(stale, (as_of_day - rng.integers(15, 60, n)) * 86400 + 12 * 3600, end_sec)
    updated_sec = np.where(zombie, close_sec - rng.integers(1, 15, n) * 86400, updated_sec)
    updated_sec = np.maximum(np.minimum(updated_sec, end_sec), created_sec)
    stale |= zombie
    closed = ~open_at_end
    reached = (stage_sec <= updated_sec[:, None]).sum(axis=1) - 1
    reached = np.where(closed, np.where(won, OPEN_STAGES - 1, lost_stage), np.minimum(reached, lost_stage))

    # ---- expected close dates and slips: E0, then up to three pushes
    accurate = rng.random(n) < 0.58
    u = np.where(accurate, rng.uniform(1.0, 1.25, n), rng.uniform(0.45, 0.95, n))
    full_day = created + np.maximum(full_off, close_off)
    e = np.empty((n, 4), dtype="int64")
    e[:, 0] = created + np.maximum(3, np.rint(u * np.maximum(full_off, close_off))).astype("int64")
    push_sec = np.empty((n, 3), dtype="int64")
    for i in range(1, 4):
        step = rng.choice(np.array([14, 21, 30, 30, 45, 60, 90]), n)
        nxt = np.minimum(e[:, i - 1] + step, np.maximum(full_day, e[:, i - 1]))
        if i == 3:
            nxt = np.maximum(e[:, i - 1], full_day)
        e[:, i] = np.maximum(nxt, e[:, i - 1])
        push_sec[:, i - 1] = (e[:, i - 1] - rng.integers(0, 6, n)) * 86400 + 10 * 3600 + i * 60
    push_ok = (e[:, 1:] > e[:, :-1]) & (push_sec > created_sec[:, None])
    push_ok &= push_sec < np.minimum(close_sec, updated_sec + 1)[:, None]
    push_ok = np.logical_and.accumulate(push_ok, axis=1)

    # ---- amount changes (~30%): at Proposal entry (or mid-cycle), often a discount
    change = rng.random(n) < 0.30
    factor = np.where(rng.random(n) < 0.65, rng.uniform(0.7, 0.97, n), rng.uniform(1.05, 1.4, n))
    amt_sec = np.where(reached >= 3, stage_sec[:, 3] + 3600 * 2, created_sec + (close_sec - created_sec) // 2)
    change &= (amt_sec < np.minimum(close_sec, updated_sec)) & (amt_sec > created_sec)

    # ---- departed reps: deals still open when they left go to a teammate
    for r in np.flatnonzero(reps["end_day"] >= 0):
        mine = (owner == r) & (close_day > reps["end_day"][r])
        mates = np.flatnonzero(
            ae
            & (reps["team_code"] == reps["team_code"][r])
            & (reps["end_day"] < 0)
            & (reps["hire_day"] <= reps["end_day"][r] + 60)
        )
        if len(mates) == 0:
            mates = np.flatnonzero(ae & (reps["end_day"] < 0))
        owner[mine] = mates[rng.integers(0, len(mates), mine.sum())]

    # ---- calibration: won amounts scaled towards each rep's expected bookings (see _booking_scale)
    scale = _booking_scale(
        reps,
        owner,
        won & closed,
        close_day,
        amount0 * np.where(change, factor, 1.0),
        start_day,
        as_of_day,
        cal,
    )
    rnd = SEGMENT_ROUND[seg]
    amt_a = np.maximum(rnd, np.rint(amount0 * scale / rnd) * rnd)
    amt_b = np.maximum(rnd, np.rint(amount0 * factor * scale / rnd) * rnd)
    zero = open_at_end & (reached <= 1) & (rng.random(n) < 0.04)  # rep has not sized the deal yet
    amt_a = np.where(zero, 0.0, amt_a)
    amt_b = np.where(zero, 0.0, amt_b)
    change &= ~zero

    fc_u = rng.random(n)
    history = _history(
        n,
        created_sec,
        stage_sec,
        reached,
        closed,
        won,
        close_sec,
        e,
        push_sec,
        push_ok,
        change,
        amt_sec,
        amt_a,
        amt_b,
        fc_u,
        updated_sec,
    )

    # current state = state at the last history row of each deal
    last = history["_last"]
    cur_stage = history["stage_code"][last]
    cur_amount = history["amount"][last]
    cur_close = history["close_day"][last]

    # ---- accounts, regions, products, reasons
    accounts, acc_seg_pool = _accounts(n)
    account = _pick_accounts(rng, seg, acc_seg_pool, len(accounts))
    region = reps["region_code"][owner]
    product = np.empty(n, dtype="int64")
    for s in range(3):
        m = seg == s
        product[m] = _pick(rng, PRODUCT_MIX_BY_SEGMENT[s], int(m.sum()))
    is_lost = closed & ~won
    reason = _pick(rng, LOSS_REASON_MIX, n)
    has_comp = np.where(is_lost & (reason == 2), True, rng.random(n) < 0.45)
    comp = _pick(rng, COMPETITOR_MIX, n)
    is_open = ~closed
    ns_choice = rng.integers(0, 4, n)
    ns_stage = np.minimum(cur_stage, OPEN_STAGES - 1)
    ns_code = ns_stage * 4 + ns_choice
    has_next = is_open & (rng.random(n) > np.where(stale, 0.45, 0.06))

    opp_ids = _ids("OPP-", n)

    # ---- activities
    act, last_act_sec, sdr_meetings = _activities(
        rng,
        params,
        reps,
        owner,
        created_sec,
        np.minimum(close_sec, updated_sec),
        account,
        opp_ids,
        accounts,
        start_day,
        as_of_day,
        end_sec,
    )
    last_act_day = np.where(last_act_sec >= 0, last_act_sec // 86400, 0)

    opportunities = pa.table(
        {
            "opportunity_id": opp_ids,
            "owner": reps["rep_id"].take(pa.array(owner)),
            "created_date": _dates(created),
            "close_date": _dates(cur_close),
            "stage": _labels(cur_stage, [s for s, _ in STAGES]),
            "amount": pa.array(cur_amount, type=pa.float64()),
            "is_closed": pa.array(closed),
            "is_won": pa.array(won & closed),
            "account": accounts.take(pa.array(account)),
            "segment": _labels(seg, SEGMENTS),
            "region": _labels(region, reps["region_names"]),
            "product": _labels(product, PRODUCTS),
            "source": _labels(src, SOURCES),
            "deal_type": _labels(dtype_, DEAL_TYPES),
            "probability": pa.array(history["probability"][last], type=pa.float64()),
            "forecast_category": _labels(history["fc_code"][last], FORECAST_CATEGORIES),
            "loss_reason": _labels(reason, LOSS_REASONS, is_lost & (reason != 6)),
            "competitor": _labels(comp, COMPETITORS, has_comp),
            "next_step": _labels(ns_code, [s for row in NEXT_STEPS for s in row], has_next),
            "last_activity_date": _dates_masked(last_act_day, last_act_sec >= 0),
        }
    )

    hist_opp = history["opp"]
    opportunity_history = pa.table(
        {
            "opportunity_id": opp_ids.take(pa.array(hist_opp)),
            "changed_at": _stamps(history["sec"]),
            "stage": _labels(history["stage_code"], [s for s, _ in STAGES]),
            "amount": pa.array(history["amount"], type=pa.float64()),
            "close_date": _dates(history["close_day"]),
            "probability": pa.array(history["probability"], type=pa.float64()),
            "forecast_category": _labels(history["fc_code"], FORECAST_CATEGORIES),
        }
    )

    leads = _leads(rng, reps, src, created, opp_ids, start_day, as_of_day)
    bookings_by_fy = _bookings_by_fiscal_year(cal, close_day, cur_amount, won & closed)
    quotas = _quotas(reps, cal, start, fy_now, sdr_meetings)
    churn = _churn(rng, account, accounts, won & closed, close_day, cur_amount, as_of_day)
    reps_table = pa.table(
        {
            "rep_id": reps["rep_id"],
            "name": pa.array(reps["name"]),
            "team": _labels(reps["team_code"], reps["team_names"]),
            "manager": _labels(reps["team_code"], reps["managers"]),
            "region": _labels(reps["region_code"], reps["region_names"]),
            "role": pa.array(reps["role"]),
            "hire_date": _dates(reps["hire_day"]),
            "end_date": _dates_masked(reps["end_day"], reps["end_day"] >= 0),
            "ote": pa.array(reps["ote"], type=pa.float64()),
            "ramp_months": pa.array(reps["ramp_months"].astype("float64")),
            "territory_weight": pa.array(reps["territory_weight"], type=pa.float64()),
        }
    )
    last_fy = fy_now - 1
    targets = {}
    for fy in (last_fy, fy_now):
        base = bookings_by_fy.get(fy - 1)
        if base:
            targets[int(fy)] = float(round(base * TARGET_GROWTH, -5))
    config = {
        "name": "Sample Co (synthetic)",
        "currency": "USD",
        "fiscal_year_start_month": FISCAL_START_MONTH,
        "as_of": params.as_of,
        "stages": [{"name": s, "probability": p} for s, p in STAGES],
        "won_stages": ["Closed Won"],
        "lost_stages": ["Closed Lost"],
        "qualifying_stage": "Qualification",
        "targets": targets,
        "source": params.source_block(),
    }
    tables = {
        "opportunities": opportunities,
        "opportunity_history": opportunity_history,
        "activities": act,
        "leads": leads,
        "reps": reps_table,
        "quotas": quotas,
        "churn": churn,
    }
    return tables, config


FORECAST_CATEGORIES = ["Pipeline", "Best Case", "Commit", "Closed", "Omitted"]


def _forecast_code(stage_code: np.ndarray, u: np.ndarray) -> np.ndarray:
    """Forecast category consistent with the stage: early stages Pipeline; Proposal mostly Best Case;
    Negotiation mostly Commit; won Closed; lost Omitted."""
    fc = np.zeros(len(stage_code), dtype="int64")
    fc = np.where(stage_code == 3, np.where(u < 0.75, 1, 0), fc)
    fc = np.where(stage_code == 4, np.where(u < 0.7, 2, 1), fc)
    fc = np.where(stage_code == WON, 3, fc)
    fc = np.where(stage_code == LOST, 4, fc)
    return fc


def _history(
    n,
    created_sec,
    stage_sec,
    reached,
    closed,
    won,
    close_sec,
    e,
    push_sec,
    push_ok,
    change,
    amt_sec,
    amt_a,
    amt_b,
    fc_u,
    updated_sec,
) -> dict:
    """Long table of changes (creation, stage entries, pushes, amount change, close), each row carrying the
    values after the change (forward-filled within a deal)."""
    opp_parts, sec_parts, kind_parts, val_parts = [], [], [], []
    rows = np.arange(n)
    # kind: 0 creation, 1 stage entry, 2 close-date push, 3 amount change, 4 close
    opp_parts.append(rows)
    sec_parts.append(created_sec)
    kind_parts.append(np.zeros(n, dtype="int64"))
    val_parts.append(np.zeros(n, dtype="int64"))
    for k in range(1, OPEN_STAGES):
        m = reached >= k
        opp_parts.append(rows[m])
        sec_parts.append(stage_sec[m, k])
        kind_parts.append(np.full(m.sum(), 1))
        val_parts.append(np.full(m.sum(), k))
    for i in range(3):
        m = push_ok[:, i]
        opp_parts.append(rows[m])
        sec_parts.append(push_sec[m, i])
        kind_parts.append(np.full(m.sum(), 2))
        val_parts.append(e[m, i + 1])
    opp_parts.append(rows[change])
    sec_parts.append(amt_sec[change])
    kind_parts.append(np.full(change.sum(), 3))
    val_parts.append(np.zeros(change.sum(), dtype="int64"))
    opp_parts.append(rows[closed])
    sec_parts.append(close_sec[closed])
    kind_parts.append(np.full(closed.sum(), 4))
    val_parts.append(np.where(won[closed], WON, LOST))
    opp = np.concatenate(opp_parts)
    sec = np.concatenate(sec_parts)
    kind = np.concatenate(kind_parts)
    val = np.concatenate(val_parts)
    # stage entries are ≤ updated (stale deals) and ≤ close by construction of `reached`; keep order
    order = np.lexsort((kind, sec, opp))
    opp, sec, kind, val = opp[order], sec[order], kind[order], val[order]
    # a stage entry at or after the close (rounding) would contradict the close: move it just before
    idx = np.arange(len(opp))
    # forward fill each state column from the rows that set it (every deal starts with a creation row)
    st_set = (kind == 0) | (kind == 1) | (kind == 4)
    stage_code = np.where(kind == 4, val, np.where(kind == 1, val, 0))
    stage_code = stage_code[np.maximum.accumulate(np.where(st_set, idx, 0))]
    cd_set = (kind == 0) | (kind == 2) | (kind == 4)
    cd_val = np.where(kind == 0, e[opp, 0], np.where(kind == 2, val, close_sec[opp] // 86400))
    close_day = cd_val[np.maximum.accumulate(np.where(cd_set, idx, 0))]
    am_set = (kind == 0) | (kind == 3)
    am_val = np.where(kind == 0, amt_a[opp], amt_b[opp])
    amount = am_val[np.maximum.accumulate(np.where(am_set, idx, 0))]
    # a deal's close date never precedes its creation (pushes only move it later)
    probability = np.array([p for _, p in STAGES])[stage_code]
    fc_code = _forecast_code(stage_code, fc_u[opp])
    is_last = np.ones(len(opp), dtype=bool)
    is_last[:-1] = opp[1:] != opp[:-1]
    return {
        "opp": opp,
        "sec": sec,
        "stage_code": stage_code,
        "close_day": close_day,
        "amount": amount,
        "probability": probability,
        "fc_code": fc_code,
        "_last": np.flatnonzero(is_last),
    }


def _systematic(rng, group: np.ndarray, p: np.ndarray, n_groups: int) -> np.ndarray:
    """Bernoulli(p) draws, systematic within each group: rows in random order per group, a win wherever the
    running sum of p (plus a uniform offset per group) crosses an integer. Each row still wins with
    probability p, but a group's number of wins is its expected number ± 1."""
    order = np.lexsort((rng.random(len(p)), group))
    ps = p[order]
    cum = np.cumsum(ps)
    g = group[order]
    first = np.ones(len(g), dtype=bool)
    first[1:] = g[1:] != g[:-1]
    base = np.maximum.accumulate(np.where(first, cum - ps, 0.0))
    off = rng.random(n_groups)[g]
    within = cum - base + off
    hit = np.floor(within) > np.floor(within - ps)
    out = np.empty(len(p), dtype=bool)
    out[order] = hit
    return out


def expected_bookings(reps, months: np.ndarray, as_of_day: int, ref_month: float) -> np.ndarray:
    """Expected bookings per (rep, month): BOOKINGS_PER_OTE × productivity × OTE × ramp × share of the month
    employed × ANNUAL_PRICE_GROWTH^((month − ref_month)/12) × QUARTER_SHARE[fiscal quarter] / 3.
    Zero for SDRs."""
    first = months.astype("datetime64[M]").astype("datetime64[D]").astype("int64")
    last = np.minimum(
        (months + 1).astype("datetime64[M]").astype("datetime64[D]").astype("int64") - 1, as_of_day
    )
    hire = reps["hire_day"][:, None]
    end = np.where(reps["end_day"] >= 0, reps["end_day"], as_of_day)[:, None]
    employed = np.clip(np.minimum(last, end) - np.maximum(first, hire) + 1, 0, None) / (last - first + 1)
    ramp = _ramp(months[None, :] - _month_index(reps["hire_day"])[:, None], reps["ramp_months"][:, None])
    season = QUARTER_SHARE[(_fiscal_month(months) - 1) // 3] / 3
    growth = ANNUAL_PRICE_GROWTH ** ((months - ref_month) / 12)
    per_rep = BOOKINGS_PER_OTE * reps["productivity"] * reps["ote"] * (reps["role"] == "AE")
    return per_rep[:, None] * ramp * employed * (season * growth)[None, :]


def _booking_scale(reps, owner, won_closed, close_day, amount, start_day, as_of_day, cal) -> np.ndarray:
    """Per-deal factor for won amounts: one global factor so total bookings equal the expected total, then
    each rep's fiscal-year bookings are moved part of the way (exponent LUCK_SHRINK_REP) towards that rep's
    expectation, and each fiscal quarter's company bookings towards the company's expectation
    (LUCK_SHRINK_QUARTER). This keeps the designed spread of reps, growth and seasonality while individual
    deals stay random. Lost and open deals get the global factor."""
    first_m, last_m = _month_index(np.array([start_day, as_of_day]))
    months = np.arange(first_m, last_m + 1)
    fy_now = cal.fiscal_year(pd.Timestamp(as_of_day, unit="D"))
    ref = _month_index(np.array([_day(cal.year_start(fy_now - 1))]))[0] + 5.5
    exp_rm = expected_bookings(reps, months, as_of_day, ref)
    fy_of_month = (months // 12 + 1970) + ((months % 12 + 1) >= FISCAL_START_MONTH) * (FISCAL_START_MONTH > 1)
    q_of_month = (months - months[0] + (_fiscal_month(months[0]) - 1)) // 3  # fiscal quarter counter
    m = won_closed & (close_day >= start_day) & (close_day <= as_of_day)
    k = exp_rm.sum() / max(amount[m].sum(), 1.0)
    out = np.full(len(amount), k)
    cm = _month_index(close_day[m]) - first_m
    own = owner[m]
    amt = amount[m] * k
    fy_idx = fy_of_month[cm] - fy_of_month[0]
    n_fy = int(fy_of_month[-1] - fy_of_month[0] + 1)
    n_rep = len(reps["role"])
    exp_rep_fy = np.zeros((n_rep, n_fy))
    np.add.at(exp_rep_fy.T, fy_of_month - fy_of_month[0], exp_rm.T)
    got = np.bincount(own * n_fy + fy_idx, weights=amt, minlength=n_rep * n_fy).reshape(n_rep, n_fy)
    f_rep = np.where(got > 0, (exp_rep_fy / np.where(got > 0, got, 1)) ** LUCK_SHRINK_REP, 1.0)
    f_rep = np.clip(f_rep, 0.5, 2.0)
    amt = amt * f_rep[own, fy_idx]
    n_q = int(q_of_month[-1] + 1)
    exp_q = np.bincount(q_of_month, weights=exp_rm.sum(axis=0), minlength=n_q)
    got_q = np.bincount(q_of_month[cm], weights=amt, minlength=n_q)
    f_q = np.clip(
        np.where(got_q > 0, (exp_q / np.where(got_q > 0, got_q, 1)) ** LUCK_SHRINK_QUARTER, 1.0), 0.6, 1.6
    )
    out[m] = k * f_rep[own, fy_idx] * f_q[q_of_month[cm]]
    return out


def _make_reps(rng, n_ae: int, start_day: int, as_of_day: int) -> dict:
    """AEs and SDRs with teams, hire/end dates, OTE, ramp, territory weight and (hidden) productivity."""
    n_sdr = max(2, n_ae // 6)
    n_teams = int(np.clip(round(n_ae / 7), 3, 5)) if n_ae <= 40 else math.ceil(n_ae / 8)
    team_names, team_regions = [], []
    for t in range(n_teams):
        name, region = TEAMS[t % len(TEAMS)]
        team_names.append(name if t < len(TEAMS) else f"{name} {t // len(TEAMS) + 1}")
        team_regions.append(region)
    region_names = sorted(set(team_regions), key=[r for _, r in TEAMS].index)
    team_names.append("SDR")
    team_regions.append(region_names[0])
    n = n_ae + n_sdr
    role = np.array(["AE"] * n_ae + ["SDR"] * n_sdr)
    # productivity: stratified lognormal quantiles in random order → the spread holds for any seed
    z = np.array([NormalDist().inv_cdf((i + 0.5) / n_ae) for i in range(n_ae)])
    prod = np.exp(PRODUCTIVITY_SIGMA * z)[rng.permutation(n_ae)]
    productivity = np.concatenate([prod, np.ones(n_sdr)])
    team_code = np.concatenate([np.arange(n_ae) % n_teams, np.full(n_sdr, n_teams)])
    team_code[:n_ae] = team_code[:n_ae][rng.permutation(n_ae)]
    region_code = np.array([region_names.index(team_regions[t]) for t in team_code])
    # hire dates: head count grows HEADCOUNT_GROWTH a year over the window: the first n_start AEs are
    # tenured (hired before the window), the others are hired when the growth curve (plus replacements for
    # the departed) calls for one more; the last 2–3 hires are in the last four months (ramping).
    hire = np.empty(n, dtype="int64")
    n_departed = max(1, min(3, n_ae // 14))
    from_day = start_day - PRE_WINDOW_DAYS
    years = (as_of_day - from_day) / 365.25
    n_start = max(n_departed + 2, int(round((n_ae - n_departed) / HEADCOUNT_GROWTH**years)))
    n_start = min(n_start, n_ae - 2)
    days = np.arange(from_day, as_of_day - 20)
    t = (days - from_day) / 365.25
    needed = n_start * HEADCOUNT_GROWTH**t + n_departed * t / years  # AEs hired so far, incl. replacements
    n_hires = n_ae - n_start
    marks = n_start + (np.arange(n_hires) + rng.uniform(0.2, 0.8, n_hires)) * (needed[-1] - n_start) / n_hires
    hires = days[np.minimum(np.searchsorted(needed, marks), len(days) - 1)]
    n_recent = min(n_hires, 3 if n_ae >= 20 else 2)
    hires[n_hires - n_recent :] = np.sort(as_of_day - rng.integers(20, 120, n_recent))
    who = rng.permutation(n_ae)  # which AE gets which hire date (independent of productivity)
    tenured = np.zeros(n_ae, dtype=bool)
    tenured[who[:n_start]] = True
    hire[who[:n_start]] = from_day - rng.integers(60, 5 * 365, n_start)
    hire[who[n_start:]] = hires
    hire[n_ae:] = np.where(
        rng.random(n_sdr) < 0.6,
        start_day - rng.integers(60, 900, n_sdr),
        rng.integers(start_day, as_of_day - 90, n_sdr),
    )
    end = np.full(n, -1, dtype="int64")
    gone = rng.choice(np.flatnonzero(tenured), n_departed, replace=False)
    end[gone] = rng.integers(start_day + 180, as_of_day - 60, n_departed)
    ote = np.concatenate(
        [np.rint(rng.uniform(120, 200, n_ae)) * 1000, np.rint(rng.uniform(70, 90, n_sdr)) * 1000]
    )
    ramp = np.concatenate([rng.integers(3, 5, n_ae), rng.integers(2, 4, n_sdr)])
    tw = np.concatenate([np.round(rng.uniform(0.8, 1.2, n_ae) / 0.05) * 0.05, np.ones(n_sdr)])
    pairs = len(FIRST) * len(LAST)
    pick = rng.permutation(pairs)[np.arange(n) % pairs]
    names = [f"{FIRST[i % len(FIRST)]} {LAST[(i // len(FIRST) + 5 * i) % len(LAST)]}" for i in pick]
    names = [nm if j < pairs else f"{nm} {j // pairs + 1}" for j, nm in enumerate(names)]
    managers = [
        f"{FIRST[(7 * t + 3) % len(FIRST)]} {LAST[(5 * t + 11) % len(LAST)]} (mgr)"
        for t in range(n_teams + 1)
    ]
    width = max(3, len(str(n_ae)))
    rep_ids = [f"AE{i + 1:0{width}d}" for i in range(n_ae)] + [f"SDR{i + 1:02d}" for i in range(n_sdr)]
    return {
        "rep_id": pa.array(rep_ids),
        "name": names,
        "role": role,
        "team_code": team_code,
        "team_names": team_names,
        "managers": managers,
        "region_code": region_code,
        "region_names": region_names,
        "hire_day": hire,
        "end_day": end,
        "ote": ote,
        "ramp_months": ramp,
        "territory_weight": tw,
        "productivity": productivity,
    }


def _accounts(n_opp: int) -> tuple[pa.Array, list[np.ndarray]]:
    """Account names (deterministic combinations) and, per segment, the account indices in it."""
    n_acc = max(300, n_opp // 3)
    na, nb, nc = len(ACCOUNT_A), len(ACCOUNT_B), len(ACCOUNT_C)
    combos = na * nb * nc
    i = np.arange(n_acc)
    j = np.random.default_rng(0).permutation(combos)[i % combos]  # fixed order, independent of the seed
    a = pa.array(ACCOUNT_A).take(pa.array(j % na))
    b = pa.array(ACCOUNT_B).take(pa.array((j // na) % nb))
    c = pa.array(ACCOUNT_C).take(pa.array((j // (na * nb)) % nc))
    names = pc.binary_join_element_wise(pc.binary_join_element_wise(a, b, ""), c, " ")
    gen = i // combos
    if gen.max() > 0:  # more accounts than name combinations: "Name 2", "Name 3", …
        suffix = pc.if_else(
            pa.array(gen > 0),
            pc.binary_join_element_wise(" ", pc.cast(pa.array(gen + 1), pa.string()), ""),
            pa.scalar(""),
        )
        names = pc.binary_join_element_wise(names, suffix, "")
    # segment of each account: cumulative split of the index range by the segment mix
    bounds = np.concatenate([[0], np.rint(np.cumsum(SEGMENT_MIX) * n_acc).astype(int)])
    pools = [np.arange(bounds[s], bounds[s + 1]) for s in range(3)]
    return names, pools


def _pick_accounts(rng, seg, pools, n_acc) -> np.ndarray:
    """An account of the deal's segment; Zipf-like weights so some accounts buy again."""
    out = np.empty(len(seg), dtype="int64")
    for s, pool in enumerate(pools):
        m = seg == s
        w = 1.0 / np.arange(1, len(pool) + 1) ** 0.6
        out[m] = pool[_pick(rng, w, int(m.sum()))]
    return out


def _activities(
    rng,
    params,
    reps,
    owner,
    created_sec,
    until_sec,
    account,
    opp_ids,
    accounts,
    start_day,
    as_of_day,
    end_sec,
):
    """Activities: 45% on deals (AE), 15% AE prospecting, 40% SDR; outcomes by type, weekday and hour."""
    n = len(owner)
    total = int(round(params.activities_per_opportunity * n))
    n_tied = int(total * 0.45)
    n_ae_free = int(total * 0.15)
    n_sdr = total - n_tied - n_ae_free
    n_reps = len(reps["role"])
    rep_level = np.exp(0.35 * rng.standard_normal(n_reps)) * np.where(reps["productivity"] > 1, 1.1, 0.95)
    # on deals: count ∝ (days open + 5) × rep level
    span = np.maximum(until_sec - created_sec, 3600)
    w = (span / 86400 + 5) * rep_level[owner]
    per_opp = rng.multinomial(n_tied, w / w.sum()) if n_tied else np.zeros(n, dtype="int64")
    t_opp = np.repeat(np.arange(n), per_opp)
    t_sec = created_sec[t_opp] + (rng.random(len(t_opp), dtype=np.float32) * span[t_opp]).astype("int64")
    t_sec = _work_seconds(rng, t_sec // 86400)
    t_sec = np.clip(t_sec, created_sec[t_opp], np.minimum(until_sec[t_opp], end_sec))
    t_owner = owner[t_opp]
    t_type = _pick(rng, np.array([0.28, 0.42, 0.14, 0.08, 0.08]), len(t_opp))

    # AE and SDR activity not tied to a deal: spread over each rep's employment
    ae = np.flatnonzero(reps["role"] == "AE")
    sdr = np.flatnonzero(reps["role"] == "SDR")
    f_owner, f_sec, f_type, f_acc = [], [], [], []
    n_acc = len(accounts)
    for group, count, mix in (
        (ae, n_ae_free, np.array([0.45, 0.40, 0.03, 0.0, 0.12])),
        (sdr, n_sdr, SDR_ACTIVITY_MIX),
    ):
        lo = np.maximum(reps["hire_day"][group], start_day - 75)
        hi = np.where(reps["end_day"][group] >= 0, reps["end_day"][group], as_of_day)
        wr = np.maximum(hi - lo, 1) * rep_level[group]
        counts = rng.multinomial(count, wr / wr.sum())
        if group is sdr:  # meetings an average SDR books in a month (sets the SDR meeting quota)
            meetings_per_month = count * SDR_ACTIVITY_MIX[2] / max(np.maximum(hi - lo, 1).sum() / 30.4, 1.0)
        who = np.repeat(group, counts)
        gi = np.repeat(np.arange(len(group)), counts)
        # later months busier (team growth): skew towards the end with a power of the uniform
        day = lo[gi] + (rng.random(len(who), dtype=np.float32) ** 0.85 * (hi[gi] - lo[gi])).astype("int64")
        f_owner.append(who)
        f_sec.append(np.minimum(_work_seconds(rng, day), end_sec))
        f_type.append(_pick(rng, mix, len(who)))
        f_acc.append(rng.integers(0, n_acc, len(who)))
    f_owner, f_sec, f_type, f_acc = (np.concatenate(x) for x in (f_owner, f_sec, f_type, f_acc))

    act_owner = np.concatenate([t_owner, f_owner]).astype("int32")
    act_sec = np.concatenate([t_sec, f_sec])
    act_type = np.concatenate([t_type, f_type]).astype("int8")
    act_opp = np.concatenate([t_opp, np.full(len(f_owner), -1)]).astype("int32")
    act_acc = np.concatenate([account[t_opp], f_acc]).astype("int32")
    del t_owner, t_sec, t_type, f_owner, f_sec, f_type, f_acc
    # sorted by time (then rep): one stable argsort of a combined key
    order = np.argsort(act_sec * 16384 + act_owner, kind="stable")
    act_owner, act_sec, act_type, act_opp, act_acc = (
        x[order] for x in (act_owner, act_sec, act_type, act_opp, act_acc)
    )
    del order
    tied = act_opp >= 0
    m = len(act_sec)
    # outcomes: calls connect with p = (30% on deals, 15% cold) × weekday × hour factors; emails replied
    # 12% / 5%; social 6%; meetings and demos: 15% no-show, 35% positive, the rest held
    day = act_sec // 86400
    wd_factor = np.array([0.9, 1.1, 1.1, 1.05, 0.8, 0.6, 0.6], dtype=np.float32)[(day + 3) % 7]
    hour_factor = np.array(
        [0.8, 0.8, 1.2, 1.2, 0.8, 0.8, 1.0, 1.0, 1.15, 1.15, 1.15, 1.15, 1.15], dtype=np.float32
    )[np.clip((act_sec - day * 86400) // 3600 - 8, 0, 12)]
    u = rng.random(m, dtype=np.float32)
    connect_p = np.where(tied, np.float32(0.30), np.float32(0.15)) * wd_factor * hour_factor
    reply_p = np.where(act_type == 4, np.float32(0.06), np.where(tied, np.float32(0.12), np.float32(0.05)))
    del wd_factor, hour_factor
    # codes into OUTCOMES: connected, no_answer, replied, no_reply, held, no_show, positive
    outcome = np.where(
        act_type == 0,
        np.where(u < connect_p, 0, 1),
        np.where(
            (act_type == 1) | (act_type == 4),
            np.where(u < reply_p, 2, 3),
            np.where(u < 0.15, 5, np.where(u < 0.50, 6, 4)),
        ),
    ).astype("int8")
    del connect_p, reply_p, u
    # minutes from a lookup by (type, outcome, random slot)
    lut = np.zeros((5, 7, 8), dtype=np.float32)
    lut[0, 0] = [3, 5, 6, 8, 10, 12, 15, 25]
    lut[0, 1] = 1
    lut[1, :] = 4
    lut[2, [4, 6]] = [30, 30, 30, 45, 45, 60, 60, 30]
    lut[3, [4, 6]] = [45, 45, 60, 60, 60, 60, 90, 90]
    lut[4, :] = 2
    minutes = lut[act_type, outcome, rng.integers(0, 8, m, dtype=np.int8)]
    last_act = np.full(n, -1, dtype="int64")
    if tied.any():
        np.maximum.at(last_act, act_opp[tied], act_sec[tied])
    opp_col = opp_ids.take(pa.array(np.where(tied, act_opp, 0), mask=~tied))
    table = pa.table(
        {
            "activity_id": _ids("ACT-", m, width=max(7, len(str(m)))),
            "owner": reps["rep_id"].take(pa.array(act_owner)),
            "type": _labels(act_type, ["call", "email", "meeting", "demo", "social"]),
            "occurred_at": _stamps(act_sec),
            "opportunity_id": opp_col,
            "account": accounts.take(pa.array(act_acc)),
            "outcome": _labels(outcome, OUTCOMES),
            "duration_minutes": pa.array(minutes.astype("float64")),
        }
    )
    return table, last_act, meetings_per_month


OUTCOMES = ["connected", "no_answer", "replied", "no_reply", "held", "no_show", "positive"]


def _leads(rng, reps, src, created, opp_ids, start_day, as_of_day) -> pa.Table:
    """Leads: one per deal that came through a lead (by source), plus leads that stalled at created,
    MQL or SQL, so that lead→MQL ≈ 55%, MQL→SQL ≈ 45%, SQL→opportunity ≈ 70%."""
    n = len(src)
    linked = np.flatnonzero(rng.random(n) < SOURCE_FROM_LEAD[src])
    k = len(linked)
    sql_l = created[linked] - rng.integers(0, 6, k)
    mql_l = sql_l - np.rint(rng.gamma(2.0, 5.0, k)).astype("int64")
    cre_l = mql_l - np.rint(rng.gamma(1.5, 4.0, k)).astype("int64")
    total = int(k / (0.55 * 0.45 * 0.70))
    n_mql_only = int(total * 0.55 * 0.45) - k  # SQL but no opportunity
    n_mql_stop = int(total * 0.55) - int(total * 0.55 * 0.45)
    n_raw = total - int(total * 0.55)
    m = n_mql_only + n_mql_stop + n_raw
    level = np.concatenate([np.full(n_mql_only, 2), np.full(n_mql_stop, 1), np.full(n_raw, 0)])
    cre_u = start_day - 90 + (rng.random(m) ** 0.85 * (as_of_day - start_day + 90)).astype("int64")
    mql_u = cre_u + np.rint(rng.gamma(1.5, 4.0, m)).astype("int64")
    sql_u = mql_u + np.rint(rng.gamma(2.0, 5.0, m)).astype("int64")
    src_u = _pick(rng, np.array([0.45, 0.25, 0.05, 0.20, 0.05]), m)
    cre = np.concatenate([cre_l, cre_u])
    mql = np.concatenate([mql_l, mql_u])
    sql = np.concatenate([sql_l, sql_u])
    lvl = np.concatenate([np.full(k, 3), level])
    has_mql = (lvl >= 1) & (mql <= as_of_day)
    has_sql = (lvl >= 2) & (sql <= as_of_day) & has_mql
    lsrc = np.concatenate([src[linked], src_u])
    opp = np.concatenate([linked, np.full(m, -1)])
    sdr = np.flatnonzero(reps["role"] == "SDR")
    owner = sdr[rng.integers(0, len(sdr), len(cre))]
    order = np.lexsort((opp, cre))
    cre, mql, sql, has_mql, has_sql, lsrc, opp, owner = (
        x[order] for x in (cre, mql, sql, has_mql, has_sql, lsrc, opp, owner)
    )
    has_owner = has_mql
    return pa.table(
        {
            "lead_id": _ids("LEAD-", len(cre), width=max(7, len(str(len(cre))))),
            "created_date": _dates(cre),
            "source": _labels(lsrc, SOURCES),
            "mql_date": _dates_masked(mql, has_mql),
            "sql_date": _dates_masked(sql, has_sql),
            "opportunity_id": opp_ids.take(pa.array(np.where(opp >= 0, opp, 0), mask=opp < 0)),
            "owner": reps["rep_id"].take(pa.array(owner, mask=~has_owner)),
        }
    )


def _bookings_by_fiscal_year(cal, close_day, amount, won_closed) -> dict[int, float]:
    d = pd.to_datetime(close_day[won_closed].astype("datetime64[D]"))
    fy = cal.fiscal_years(pd.Series(d)).to_numpy(dtype="int64")
    sums = pd.Series(amount[won_closed]).groupby(fy).sum()
    return {int(k): float(v) for k, v in sums.items()}


def _quotas(reps, cal, start, fy_now, sdr_meetings: float) -> pa.Table:
    """Monthly quota rows while employed, from the window start to the end of the current fiscal year.
    AE: QUOTA_PER_OTE × OTE × √territory weight × QUOTA_GROWTH^(fy − current fy), spread by the quarterly
    seasonality QUARTER_SHARE and ramped in the first months; SDR (metric "meetings"): the meetings an
    average SDR books in a month (from the activity volume, ≈ 7 at the default size), ramped."""
    first = _month_index(np.array([_day(start)]))[0]
    last = _month_index(np.array([_day(cal.year_end(fy_now))]))[0]
    months = np.arange(first, last + 1)
    n = len(reps["role"])
    rep = np.repeat(np.arange(n), len(months))
    mon = np.tile(months, n)
    hire_m = _month_index(reps["hire_day"])[rep]
    end_m = np.where(reps["end_day"] >= 0, _month_index(np.maximum(reps["end_day"], 0)), 10**9)[rep]
    keep = (mon >= hire_m) & (mon <= end_m)
    rep, mon, hire_m = rep[keep], mon[keep], hire_m[keep]
    fmon = _fiscal_month(mon)
    fy = (mon // 12 + 1970) + ((mon % 12 + 1) >= FISCAL_START_MONTH) * (FISCAL_START_MONTH > 1)
    season = np.repeat(QUARTER_SHARE / 3, 3)
    ramp = _ramp(mon - hire_m, reps["ramp_months"][rep])
    is_ae = reps["role"][rep] == "AE"
    annual = (
        QUOTA_PER_OTE
        * reps["ote"][rep]
        * np.sqrt(reps["territory_weight"][rep])
        * QUOTA_GROWTH ** (fy - fy_now)
    )
    q_ae = np.rint(annual * season[fmon - 1] * ramp / 100) * 100
    q_sdr = np.maximum(1, np.rint(sdr_meetings * ramp))
    quota = np.where(is_ae, q_ae, q_sdr)
    start_d = mon.astype("datetime64[M]").astype("datetime64[D]").astype("int64")
    end_d = (mon + 1).astype("datetime64[M]").astype("datetime64[D]").astype("int64") - 1
    return pa.table(
        {
            "rep_id": reps["rep_id"].take(pa.array(rep)),
            "period_start": _dates(start_d),
            "period_end": _dates(end_d),
            "quota": pa.array(quota.astype("float64")),
            "metric": _labels(np.where(is_ae, 0, 1), ["bookings", "meetings"]),
        }
    )


def _churn(rng, account, accounts, won_closed, close_day, amount, as_of_day) -> pa.Table:
    """~8% of won accounts churn 4–24 months after their first win, losing 60–100% of what they bought."""
    acc = account[won_closed]
    if len(acc) == 0:
        return pa.table(
            {
                "account": pa.array([], pa.string()),
                "churn_date": _dates(np.array([], "int64")),
                "lost_amount": pa.array([], pa.float64()),
                "reason": pa.array([], pa.string()),
            }
        )
    first = np.full(len(accounts), np.iinfo("int64").max)
    np.minimum.at(first, acc, close_day[won_closed])
    total = np.bincount(acc, weights=amount[won_closed], minlength=len(accounts))
    cust = np.flatnonzero(first < np.iinfo("int64").max)
    u = rng.random(len(cust))
    day = first[cust] + rng.integers(120, 720, len(cust))
    churned = (u < 0.08) & (day <= as_of_day)
    cust, day = cust[churned], day[churned]
    lost = np.rint(total[cust] * rng.uniform(0.6, 1.0, len(cust)) / 100) * 100
    order = np.lexsort((cust, day))
    cust, day, lost = cust[order], day[order], lost[order]
    return pa.table(
        {
            "account": accounts.take(pa.array(cust)),
            "churn_date": _dates(day),
            "lost_amount": pa.array(lost.astype("float64")),
            "reason": _labels(_pick(rng, CHURN_REASON_MIX, len(cust)), CHURN_REASONS),
        }
    )


# --------------------------------------------------------------------------------------------------
# writing, idempotency, CLI
# --------------------------------------------------------------------------------------------------
def existing_source(folder: Path) -> dict | None:
    """The ``source`` block of a sample this tool wrote in ``folder``, else None."""
    try:
        raw = yaml.safe_load((folder / "dataset.yml").read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError):
        return None
    src = raw.get("source") if isinstance(raw, dict) else None
    if isinstance(src, dict) and src.get("generator") == GENERATOR:
        return src
    return None


def plan(folder, params: SampleParams, force: bool = False) -> str:
    """ "skip" (same sample already there), "write" (absent, empty, or an older/different sample), or
    raise SampleError when the folder holds something this tool did not write."""
    folder = Path(folder)
    if not folder.exists():
        return "write"
    if not folder.is_dir():
        raise SampleError(f"{folder} exists and is not a folder; refusing to overwrite it.")
    if not any(folder.iterdir()):
        return "write"
    src = existing_source(folder)
    if src is None:
        raise SampleError(
            f"{folder} already holds data that `revops sample-data` did not generate (its dataset.yml has no "
            f"'source: {{generator: {GENERATOR}}}'); refusing to overwrite it. Choose another --to folder."
        )
    if force:
        return "write"
    return "skip" if src == params.source_block() else "write"


def _write_table(table: pa.Table, path: Path, fmt: str) -> None:
    if fmt == "parquet":
        import pyarrow.parquet as pq

        pq.write_table(table, path, compression="zstd")
    else:
        import pyarrow.csv as pacsv

        pacsv.write_csv(table, path, write_options=pacsv.WriteOptions(quoting_style="needed"))


def write_sample(
    folder,
    seed=42,
    as_of=None,
    n_opportunities=None,
    n_reps=None,
    activities_per_opportunity=None,
    fmt="csv",
    force=False,
) -> Path:
    """Write the sample dataset to ``folder`` (see the module docstring) and return its path.

    Skips when ``folder`` already holds a sample generated with the same parameters (unless ``force``);
    refuses (SampleError) to replace a folder this tool did not write. Files are written to a temporary
    sibling folder and renamed into place."""
    folder = Path(folder)
    params = resolve_params(seed, as_of, n_opportunities, n_reps, activities_per_opportunity, fmt)
    if plan(folder, params, force) == "skip":
        return folder
    tables, config = generate(params)
    with replace_folder(folder, tag="tmp") as tmp:
        ext = "parquet" if params.fmt == "parquet" else "csv"
        for name, table in tables.items():
            _write_table(table, tmp / f"{name}.{ext}", params.fmt)
        (tmp / "dataset.yml").write_text(
            yaml.safe_dump(config, sort_keys=False, allow_unicode=True), encoding="utf-8"
        )
    return folder


def cli(args) -> int:
    """``revops sample-data``: write (or skip) the sample, then validate it."""
    import time

    from helpers.data.validation import validate_report

    try:
        params = resolve_params(
            args.seed, args.as_of, args.opportunities, args.reps, args.activities_per_opportunity, args.format
        )
        action = plan(Path(args.to), params, args.force)
    except (SampleError, ValueError) as exc:
        print(f"error: {exc}")
        return 2
    if action == "skip":
        print(
            f"{args.to} already holds the sample for these parameters (seed {params.seed}, as of "
            f"{params.as_of}); skipping. Use --force to regenerate."
        )
    else:
        t0 = time.perf_counter()
        write_sample(
            args.to,
            params.seed,
            params.as_of,
            params.n_opportunities,
            params.n_reps,
            params.activities_per_opportunity,
            params.fmt,
            force=True,
        )
        print(
            f"Wrote the sample dataset to {args.to} (seed {params.seed}, as of {params.as_of}, "
            f"{params.n_opportunities:,} opportunities, {params.n_reps} AEs) in {time.perf_counter() - t0:.1f} s."
        )
    code, text = validate_report(args.to)
    print(text)
    return code
