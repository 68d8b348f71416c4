"""The quota plan as one pure function.

``prepare_plan_data(ds, as_of, fiscal_year)`` does once what does not depend on the what-if inputs
(history, seasonality, roster, resampled months for the simulation). ``compute_plan(inputs, data)``
turns inputs (growth, over-assignment, seasonality on/off, hires, ramp, target share…) into a
``PlanResult``: target, monthly/quarterly/team plan, rep quotas, reconciliation, capacity check and
realism simulation. The quota notebook and the what-if explorer both call it, so their numbers agree.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from helpers.data import engine
from helpers.data.calendar import FiscalCalendar
from helpers.metrics import quota as Q


@dataclass(frozen=True)
class PlanInputs:
    growth_rate: float = 0.20
    over_assignment: float = 0.15
    seasonal: bool = True
    hires_per_quarter: tuple[int, int, int, int] = (0, 0, 0, 0)
    hire_month_in_quarter: int = 1  # 1–3: which month of the quarter planned hires start
    ramp_schedule: tuple[float, ...] = Q.DEFAULT_RAMP
    use_rep_ramp: bool = True  # reps' own ramp_months override the schedule
    target_share: float = 0.75
    attrition_rate: float | None = None  # None: measured from the reps table
    team_split: str = "capacity"  # or "history"
    rep_weighting: str = "territory"  # w_i = territory weight, or "history": productivity ÷ mean productivity
    use_dataset_target: bool = True  # a target for the plan year in dataset.yml wins over growth
    ote_multiple_min: float = 3.0
    ote_multiple_max: float = 5.0
    realistic_band: tuple[float, float] = (0.70, 0.80)
    out_of_reach: float = 0.20
    too_easy: float = 0.95


@dataclass
class PlanData:
    """Everything the plan needs that does not change with the inputs."""

    cal: FiscalCalendar
    fiscal_year: int
    as_of: pd.Timestamp
    currency: str
    months: pd.DatetimeIndex
    basis: Q.TargetBasis
    configured_target: float | None
    seasonality: pd.DataFrame
    roster: pd.DataFrame  # revenue reps of the plan year
    hire_offset: np.ndarray
    active: np.ndarray
    draws: Q.PoolDraws  # (reps, draws, 12) resampled monthly bookings, as positions in each rep's pool
    productivity: np.ndarray
    own_history: np.ndarray  # bool: the rep's own months (not peers') feed their pool
    hire_draws: Q.PoolDraws  # (max hires, draws, 12) from the peer pool
    hire_productivity: float
    hire_team: str
    hire_ote: float
    team_history: pd.Series
    attrition_measured: float
    n_draws: int
    seed: int

    @property
    def hist_shares(self) -> np.ndarray:
        return self.seasonality["share"].to_numpy(float)


def prepare_plan_data(
    ds,
    as_of=None,
    fiscal_year: int | None = None,
    n_draws: int = 2000,
    seed: int = 0,
    history_len: int = 12,
    min_months: int = 6,
    max_hires_per_quarter: int = 10,
    hire_team: str | None = None,
    opps=None,
) -> PlanData:
    """Precompute the input-independent parts of the plan from a loaded ``Dataset``. The opportunities
    are read where they live (``opps``: an engine table or a frame; default ``engine.source``): one query
    sums the won deals per owner and close month over the basis window and the history months
    (``quota.won_by_month``), from which the basis, monthly history and team history are made; another
    sums the company's months for the seasonality (``quota.company_months``)."""
    as_of = pd.Timestamp(as_of if as_of is not None else ds.as_of).normalize()
    cal = FiscalCalendar(ds.config.fiscal_year_start_month)
    fy = int(fiscal_year) if fiscal_year else Q.default_plan_year(cal, as_of)
    opps = opps if opps is not None else engine.source(ds, "opportunities")
    reps = ds.tables.get("reps")
    months = Q.plan_months(cal, fy)
    _, bstart, bend = Q.basis_window(cal, fy, as_of)
    # the owner × month sums are needed for the basis window and the history months only; the seasonal
    # shares take the company's months, summed on the engine
    hmonths = Q.history_months(as_of, history_len)
    span = (min(hmonths[0], Q.month_start(bstart)), max(hmonths[-1], Q.month_start(bend)))
    won = Q.won_by_month(opps, (bstart, bend), months=span)
    basis = Q.target_basis(opps, cal, fy, as_of, won)
    season = Q.seasonality(opps, cal, as_of, company=Q.company_months(opps))
    ros = Q.roster(reps, opps, cal.year_start(fy), cal.year_end(fy), as_of)
    ros = ros.loc[ros["revenue"]].reset_index(drop=True)
    off = Q.month_offsets(ros["hire_date"], months[0])
    active = Q.active_matrix(off, ros["end_date"], months)

    # history pools: revenue reps employed in the history window (departed ones too) feed the peer pools
    hist_roster = (
        Q.roster(reps, opps, hmonths[0], hmonths[-1] + pd.offsets.MonthEnd(0), as_of)
        if reps is not None
        else ros
    )
    hist_roster = hist_roster.loc[hist_roster["revenue"] & ~hist_roster["planned"]]
    hist_roster = pd.concat(
        [hist_roster, ros.loc[~ros["rep_id"].isin(hist_roster["rep_id"])]], ignore_index=True
    )
    mb = Q.monthly_bookings(opps, won).rename(columns={"owner": "rep_id", "bookings": "value"})
    vals = Q.history_matrix(mb, hist_roster["rep_id"], hmonths)
    mask = Q.ramped_months_mask(hist_roster, hmonths)
    pools_all = Q.rep_pools(vals, mask, hist_roster["team"], min_months)
    own = np.array([mask[i].sum() >= min_months for i in range(len(hist_roster))], dtype=bool)
    pos = {r: i for i, r in enumerate(hist_roster["rep_id"])}
    pools = [pools_all[pos[r]] for r in ros["rep_id"]]
    own_plan = np.array([own[pos[r]] for r in ros["rep_id"]], dtype=bool)
    if hire_team is None:
        hire_team = ros["team"].value_counts().index[0] if len(ros) else "New hires"
    team_mask = (hist_roster["team"] == hire_team).to_numpy() & own
    peer = (
        np.concatenate([pools_all[i] for i in np.flatnonzero(team_mask)])
        if team_mask.any()
        else np.concatenate([pools_all[i] for i in np.flatnonzero(own)])
        if own.any()
        else np.zeros(1)
    )
    rng_seed = np.random.SeedSequence(seed).spawn(2)
    draws = Q.draw_months(pools, n_draws, 12, seed=int(rng_seed[0].generate_state(1)[0]))
    hire_draws = Q.draw_months(
        [peer] * (4 * max_hires_per_quarter), n_draws, 12, seed=int(rng_seed[1].generate_state(1)[0])
    )
    in_basis = won.loc[won["basis_deals"] > 0]
    team_of = dict(zip(ros["rep_id"], ros["team"], strict=True))
    team_hist = in_basis.groupby(in_basis["owner"].map(team_of))["basis"].sum()
    cfg_target = ds.config.targets.get(fy)
    hire_ote = float(ros["ote"].median()) if ros["ote"].notna().any() else float("nan")
    return PlanData(
        cal,
        fy,
        as_of,
        ds.config.currency,
        months,
        basis,
        cfg_target,
        season,
        ros,
        off,
        active,
        draws,
        Q.productivity(pools),
        own_plan,
        hire_draws,
        float(peer.mean()),
        hire_team,
        hire_ote,
        team_hist,
        Q.attrition_rate(reps, as_of),
        n_draws,
        seed,
    )


@dataclass
class PlanResult:
    inputs: PlanInputs
    fiscal_year: int
    target: float
    target_source: str  # "growth" or "dataset.yml"
    basis: Q.TargetBasis
    quota_to_assign: float
    shares: np.ndarray
    monthly: pd.DataFrame
    quarterly: pd.DataFrame
    teams: pd.DataFrame
    reps: pd.DataFrame
    reconciliation: pd.DataFrame
    monthly_quota_matrix: np.ndarray
    months: pd.DatetimeIndex
    attainment: Q.Attainment
    realistic: bool
    attrition_rate: float
    attrition_loss: float
    seconds: float = 0.0
    notes: list[str] = field(default_factory=list)

    @property
    def sum_of_quotas(self) -> float:
        return float(self.reps["quota"].sum())

    @property
    def expected_share(self) -> float:
        return self.attainment.expected_share

    @property
    def quota_level(self) -> float:
        """Multiple of the proposed quotas at which exactly the target share of reps attains."""
        return self.attainment.quota_level

    @property
    def quota_level_total(self) -> float:
        return self.quota_level * self.sum_of_quotas

    @property
    def reps_needed(self) -> int | None:
        """Quota-carrying reps (planned hires included) × target ÷ the target at which the target share attains,
        rounded up: the headcount that carries the target at quotas that share of reps reaches."""
        level = self.quota_level_target
        if not level or level != level or not self.target:
            return None
        return math.ceil(len(self.reps) * self.target / level - 1e-9)

    @property
    def quota_level_target(self) -> float:
        """The company target at which the target share attains, at the same over-assignment."""
        return self.quota_level_total / (1 + self.inputs.over_assignment)

    @property
    def out_of_reach(self) -> list[str]:
        return self.reps.loc[self.reps["verdict"] == "out of reach", "name"].tolist()

    @property
    def too_easy(self) -> list[str]:
        return self.reps.loc[self.reps["verdict"] == "too easy", "name"].tolist()

    def quotas_table(self) -> pd.DataFrame:
        """The proposed quotas in the ``quotas`` table format (one row per rep and month)."""
        return Q.quotas_table(self.reps["rep_id"], self.months, self.monthly_quota_matrix, "bookings")


def compute_plan(inputs: PlanInputs, data: PlanData) -> PlanResult:
    """The whole plan for ``inputs`` (formulas in ``helpers.metrics.quota``):

    T = basis × (1 + growth) (or dataset.yml); Q = T × (1 + over-assignment); team share by capacity or
    history; quota_i = Q × share_t × w_i E_i / Σ_{j∈t} w_j E_j with w_i the territory weight (or, with
    ``rep_weighting="history"``, productivity_i ÷ mean productivity); P(attain) from resampled history."""
    t0 = time.perf_counter()
    cal, fy, months = data.cal, data.fiscal_year, data.months
    configured = data.configured_target if inputs.use_dataset_target else None
    target = Q.company_target(data.basis.bookings, inputs.growth_rate, configured)
    source = "dataset.yml" if configured is not None else "growth"
    q_total = target * (1 + inputs.over_assignment)
    shares = data.hist_shares if inputs.seasonal else Q.flat_shares()

    hires = Q.planned_hires(
        cal, fy, inputs.hires_per_quarter, inputs.hire_month_in_quarter, data.hire_team, data.hire_ote
    )
    n_hire = min(len(hires), len(data.hire_draws))
    hires = hires.iloc[:n_hire]
    ros = pd.concat([data.roster, hires], ignore_index=True) if n_hire else data.roster
    h_off = Q.month_offsets(hires["hire_date"], months[0])
    off = np.concatenate([data.hire_offset, h_off])
    active = (
        np.vstack([data.active, Q.active_matrix(h_off, hires["end_date"], months)]) if n_hire else data.active
    )
    ramp = Q.ramp_matrix(
        off, 12, Q.rep_schedules(ros["ramp_months"], inputs.ramp_schedule, inputs.use_rep_ramp)
    )
    cap = Q.effective_capacity(active, ramp, shares)
    prod = np.concatenate([data.productivity, np.full(n_hire, data.hire_productivity)])
    weights = ros["weight"].to_numpy(float)
    if inputs.rep_weighting == "history" and prod.mean() > 0:
        weights = prod / prod.mean()
    tshare = Q.team_shares(ros["team"], weights * cap, data.team_history, inputs.team_split)
    annual = Q.distribute_quota(q_total, ros["team"], weights, cap, tshare)
    monthly_q = Q.monthly_quotas(annual, cap, active, ramp, shares)
    status = Q.rep_status(ros, active, ramp)

    # capacity check and history-supported quota (simulation uses the historical seasonality)
    with np.errstate(invalid="ignore", divide="ignore"):
        full = np.where(cap > 0, annual / cap, np.nan)
    ote = Q.ote_multiples(full, ros["ote"].to_numpy(float), inputs.ote_multiple_min, inputs.ote_multiple_max)
    hist_cap = Q.effective_capacity(active, ramp, data.hist_shares)
    supported = Q.supported_quota(prod, hist_cap)
    n = len(data.roster)
    totals = np.empty((n + n_hire, data.n_draws), np.float32)  # the reps', then the planned hires'
    Q.simulate_totals(data.draws, active[:n], ramp[:n], data.hist_shares, out=totals[:n])
    if n_hire:
        hires_draws = data.hire_draws.head(n_hire)
        Q.simulate_totals(hires_draws, active[n:], ramp[n:], data.hist_shares, out=totals[n:])
    att = Q.attainment(totals, annual, inputs.target_share)
    with np.errstate(invalid="ignore", divide="ignore"):
        stretch = np.where(supported > 0, annual / supported - 1, np.nan)

    reps = pd.DataFrame(
        {
            "rep_id": ros["rep_id"].to_numpy(),
            "name": ros["name"].to_numpy(),
            "team": ros["team"].to_numpy(),
            "status": status,
            "start": ros["hire_date"].to_numpy(),
            "end": ros["end_date"].to_numpy(),
            "weight": weights,
            "capacity": cap,
            "quota": annual,
            "full_year_quota": full,
            "ote": ros["ote"].to_numpy(float),
            "ote_multiple": ote["ote_multiple"].to_numpy(),
            "ote_flag": ote["ote_flag"].to_numpy(),
            "history": np.concatenate([np.where(data.own_history, "own", "peers"), np.full(n_hire, "peers")]),
            "productivity": prod,
            "supported_quota": supported,
            "stretch": stretch,
            "p_attain": att.p_attain,
            "verdict": Q.verdicts(att.p_attain, inputs.out_of_reach, inputs.too_easy),
            "quota_at_target_share": Q.quota_at_share(totals, inputs.target_share),
        }
    )

    by_status = reps.groupby("status")["quota"].sum().to_dict()
    rate = data.attrition_measured if inputs.attrition_rate is None else inputs.attrition_rate
    loss = Q.attrition_loss(monthly_q, 0.0 if pd.isna(rate) else rate)
    recon = Q.reconciliation(
        data.basis, inputs.growth_rate, target, source, inputs.over_assignment, by_status, loss, rate
    )
    monthly = Q.monthly_plan(target, shares, cal, fy)
    monthly["rep_quotas"] = monthly_q.sum(axis=0)
    quarterly = Q.quarterly_plan(monthly[["quarter", "share", "target", "rep_quotas"]])
    quarterly["rep_quotas"] = monthly.groupby("quarter")["rep_quotas"].sum().to_numpy()

    teams = reps.groupby("team").agg(
        reps=("rep_id", "size"), capacity=("capacity", "sum"), quota=("quota", "sum")
    )
    teams.insert(2, "basis_bookings", data.team_history.reindex(teams.index).fillna(0.0))
    teams["share"] = tshare.reindex(teams.index).fillna(0.0)
    teams["target"] = target * teams["share"]
    qshares = np.add.reduceat(shares, [0, 3, 6, 9])
    for k in range(4):
        teams[f"Q{k + 1}"] = teams["target"] * qshares[k]
    teams = teams.reset_index()

    notes = []
    if not len(data.roster):
        notes.append("No quota-carrying reps found for the plan year.")
    res = PlanResult(
        inputs,
        fy,
        target,
        source,
        data.basis,
        q_total,
        shares,
        monthly,
        quarterly,
        teams,
        reps,
        recon,
        monthly_q,
        months,
        att,
        Q.is_realistic(att.expected_share, inputs.realistic_band),
        float(rate) if rate is not None else float("nan"),
        loss,
        notes=notes,
    )
    res.seconds = time.perf_counter() - t0
    return res


# --------------------------------------------------------------------------------------------------
# the widget panel
# --------------------------------------------------------------------------------------------------


def funnel_table(res: PlanResult, rates: Q.FunnelRates) -> pd.DataFrame:
    """Reverse funnel per rep for a month at full ramp: ``monthly quota = full-year quota ÷ 12``, then
    deals, opportunities, meetings and calls (``helpers.metrics.quota.reverse_funnel``)."""
    monthly = pd.Series(res.reps["full_year_quota"].to_numpy(float) / 12, index=res.reps["name"].to_numpy())
    out = Q.reverse_funnel(monthly, **rates.as_kwargs())
    out.index.name = "rep"
    return out.rename(columns={"quota": "monthly_quota"})


def sdr_plan(
    ds,
    data: PlanData,
    growth_rate: float,
    target_share: float = 0.75,
    n_draws: int = 2000,
    seed: int = 0,
    activities=None,
    leads=None,
    opps=None,
) -> dict[str, tuple[pd.DataFrame, np.ndarray]]:
    """Non-revenue quotas for the plan year's SDRs, per metric (meetings booked, opportunities created).
    ``activities``, ``leads``, ``opps``: the tables where they live (engine tables; default the loaded
    tables, the opportunities where they live) for the monthly counts, which are made there."""
    reps = ds.tables.get("reps")
    if reps is None:
        return {}
    opps = opps if opps is not None else engine.source(ds, "opportunities")
    ros = Q.roster(
        reps,
        opps,
        data.cal.year_start(data.fiscal_year),
        data.cal.year_end(data.fiscal_year),
        data.as_of,
    )
    sdrs = ros.loc[~ros["revenue"]].reset_index(drop=True)
    if not len(sdrs):
        return {}
    log = activities if activities is not None else ds.tables.get("activities")
    lt = leads if leads is not None else ds.tables.get("leads")
    events = Q.sdr_events(  # the SDRs' months of history only (sdr_quota_plan's default history_len)
        log,
        lt,
        opps,
        rep_ids=sdrs["rep_id"].astype("str").tolist(),
        months=Q.history_months(data.as_of),
    )
    return {
        metric: Q.sdr_quota_plan(
            ev,
            sdrs,
            data.cal,
            data.fiscal_year,
            data.as_of,
            growth_rate,
            n_draws=n_draws,
            seed=seed,
            target_share=target_share,
        )
        for metric, ev in events.items()
    }


def proposed_quotas(res: PlanResult, sdr: dict[str, tuple[pd.DataFrame, np.ndarray]]) -> pd.DataFrame:
    """The plan as a ``quotas`` table (rep × month × metric): the revenue quotas of ``res`` and, per
    non-revenue metric of ``sdr`` (from ``sdr_plan``), the SDRs' monthly quotas."""
    parts = [res.quotas_table()] + [
        Q.quotas_table(table["rep_id"], res.months, monthly, metric)
        for metric, (table, monthly) in sdr.items()
    ]
    return pd.concat(parts, ignore_index=True)
