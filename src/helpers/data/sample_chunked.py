"""The sample dataset at any size, generated in chunks straight to Parquet (``write_sample_chunked``).

``helpers.data.sample.write_sample`` builds every table in memory: 1M opportunities with 10M activities
peak at ~3.3 GB, so 10M with 100M activities would need ~30 GB. This writer runs the same generator
(``sample.generate``, unchanged) once per chunk of ``chunk_opportunities`` opportunities and appends each
chunk's tables to one Parquet file per table (``pyarrow.parquet.ParquetWriter``, a row group or more per
chunk), so memory stays at one chunk's worth whatever the size.

Each chunk is a company of the same shape as the in-memory sample (its own seed ``seed + 7919 × k``,
``n_reps`` and ``n_opportunities`` split evenly, so the same opportunities per rep, activities per
opportunity, segment mix, win rates, cycles, seasonality and calibration per rep); the chunks are then
made one company by renumbering what would collide:

- ids: ``OPP-``, ``ACT-``, ``LEAD-`` numbered on from the previous chunk; reps ``AE…``/``SDR…`` likewise
  (widths for the whole dataset), every reference (owner, opportunity_id, rep_id) mapped the same way;
- accounts: chunk k's k-th block of the whole dataset's account names (no account shared by chunks);
- teams: numbered on (``NA East 12``), with their managers; the SDR teams of all chunks are one team;
- rep names: chunk k > 0 appends `` (k+1)`` so names stay unique;
- ``targets`` in dataset.yml from the whole dataset's bookings by fiscal year, as ``generate`` computes them.

Rows differ from ``write_sample`` at the same size (chunks are drawn independently; ~3 departed reps
and 2–3 recent hires per chunk instead of per company), but the schema is the same and the output passes
``revops validate``. Rows are in chunk order (opportunities sorted by creation within a chunk).
"""

from __future__ import annotations

import hashlib
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import yaml

from helpers.data import sample
from helpers.data.atomic import replace_folder
from helpers.data.calendar import FiscalCalendar

CODE_FINGERPRINT = hashlib.sha256(
    Path(sample.__file__).read_bytes() + Path(__file__).read_bytes()
).hexdigest()[:12]
CHUNK_OPPORTUNITIES = 500_000  # 10M in 20 chunks: 2.5 GB max RSS (1M in one piece: 3.3 GB)
SEED_STEP = 7919
STREAMED = ("opportunities", "opportunity_history", "activities", "leads")  # the rest are small


def _split(total: int, parts: int) -> list[int]:
    return [total // parts + (1 if i < total % parts else 0) for i in range(parts)]


def chunk_plan(n_opportunities: int, n_reps: int, chunk_opportunities: int = CHUNK_OPPORTUNITIES):
    """[(opportunities, AEs)] per chunk: as few chunks as keep each within ``chunk_opportunities``,
    and at least 3 AEs and 50 opportunities each (the generator's minimums)."""
    k = max(1, math.ceil(n_opportunities / max(50, int(chunk_opportunities))))
    k = max(1, min(k, n_reps // 3, n_opportunities // 50))
    return list(zip(_split(n_opportunities, k), _split(n_reps, k), strict=True))


def source_block(params: sample.SampleParams, chunk_opportunities: int) -> dict:
    return {
        **params.source_block(),
        "code": CODE_FINGERPRINT,
        "format": "parquet",
        "chunks": [list(c) for c in chunk_plan(params.n_opportunities, params.n_reps, chunk_opportunities)],
    }


def _ids_from(prefix: str, start: int, n: int, width: int) -> pa.Array:
    nums = pc.cast(pa.array(np.arange(start, start + n, dtype="int64")), pa.string())
    return pc.binary_join_element_wise(prefix, pc.utf8_lpad(nums, width=width, padding="0"), "")


def _map(col, old: pa.Array, new: pa.Array):
    """Each value of ``col`` replaced by ``new`` at its position in ``old`` (null stays null)."""
    return new.take(pc.index_in(col, value_set=old))


def _team_index(name: str) -> int:
    """Position t of a team in ``sample._make_reps``' numbering ("NA West" = 1, "NA East 2" = 5, …)."""
    bases = [b for b, _ in sample.TEAMS]
    base, _, num = name.rpartition(" ")
    if num.isdigit() and base in bases:
        return (int(num) - 1) * len(bases) + bases.index(base)
    return bases.index(name)


def _team_name(g: int) -> str:
    base = sample.TEAMS[g % len(sample.TEAMS)][0]
    return base if g < len(sample.TEAMS) else f"{base} {g // len(sample.TEAMS) + 1}"


def _manager(t: int) -> str:
    f, last = sample.FIRST, sample.LAST
    return f"{f[(7 * t + 3) % len(f)]} {last[(5 * t + 11) % len(last)]} (mgr)"


class _Writers:
    """One ParquetWriter per table, opened on its first chunk; later chunks are cast to that schema."""

    def __init__(self, folder: Path):
        self.folder, self.writers = folder, {}

    def write(self, name: str, table: pa.Table) -> None:
        import pyarrow.parquet as pq

        w = self.writers.get(name)
        if w is None:
            w = self.writers[name] = pq.ParquetWriter(
                self.folder / f"{name}.parquet", table.schema, compression="zstd"
            )
        w.write_table(table.cast(w.schema))

    def close(self) -> None:
        for w in self.writers.values():
            w.close()


def write_sample_chunked(
    folder,
    seed=42,
    as_of=None,
    n_opportunities=None,
    n_reps=None,
    activities_per_opportunity=None,
    chunk_opportunities: int = CHUNK_OPPORTUNITIES,
    force=False,
    progress=None,
) -> Path:
    """Write the sample dataset (Parquet, one file per table) to ``folder`` chunk by chunk; skip when
    ``folder`` already holds this very output (unless ``force``); refuse (``sample.SampleError``) to
    replace a folder the sample tools did not write. ``progress(text)`` is told each chunk."""
    folder = Path(folder)
    params = sample.resolve_params(
        seed, as_of, n_opportunities, n_reps, activities_per_opportunity, "parquet"
    )
    block = source_block(params, chunk_opportunities)
    sample.plan(folder, params, force)  # refuses a folder it did not write
    if not force and sample.existing_source(folder) == block:
        return folder
    chunks = chunk_plan(params.n_opportunities, params.n_reps, chunk_opportunities)
    n_total, ae_total = params.n_opportunities, params.n_reps
    width = {
        "OPP-": max(6, len(str(n_total))),
        "ACT-": max(7, len(str(int(round(params.activities_per_opportunity * n_total)) + len(chunks)))),
        "LEAD-": max(7, len(str(10 * n_total))),
        "AE": max(3, len(str(ae_total))),
    }
    n_acc = [max(300, n // 3) for n, _ in chunks]  # an upper bound of each chunk's accounts
    all_accounts, _ = sample._accounts(3 * sum(n_acc))
    cal = FiscalCalendar(sample.FISCAL_START_MONTH)
    off = {"opp": 0, "act": 0, "lead": 0, "ae": 0, "sdr": 0, "team": 0, "acc": 0}
    small: dict[str, list[pa.Table]] = {"reps": [], "quotas": [], "churn": []}
    bookings: dict[int, float] = {}
    config = None
    short = 0
    with replace_folder(folder, tag="tmp") as tmp:
        out = _Writers(tmp)
        try:
            for k, (n_k, reps_k) in enumerate(chunks):
                if progress:
                    progress(f"chunk {k + 1} of {len(chunks)}: {n_k:,} opportunities, {reps_k:,} AEs")
                # a chunk the generator returns short (it can keep a few less than asked at small sizes)
                # passes its shortfall on to the next one
                n_k += short
                p = sample.resolve_params(
                    seed + SEED_STEP * k,
                    params.as_of,
                    n_k,
                    reps_k,
                    params.activities_per_opportunity,
                    "parquet",
                )
                tables, cfg = sample.generate(p)
                config = config or cfg
                opp = tables["opportunities"]
                n = opp.num_rows
                short = n_k - n
                # --- the maps of this chunk: old value -> value in the whole dataset
                reps = tables["reps"]
                old_rep = reps["rep_id"].combine_chunks()
                is_ae = pc.starts_with(old_rep, "AE")
                n_ae_k = pc.sum(is_ae).as_py()
                new_rep = pa.array(
                    [f"AE{off['ae'] + i + 1:0{width['AE']}d}" for i in range(n_ae_k)]
                    + [f"SDR{off['sdr'] + i + 1:02d}" for i in range(len(old_rep) - n_ae_k)]
                )
                old_opp = sample._ids("OPP-", n)
                new_opp = _ids_from("OPP-", off["opp"] + 1, n, width["OPP-"])
                old_acc, _ = sample._accounts(n)
                new_acc = all_accounts.slice(off["acc"], len(old_acc))
                teams = [t for t in pc.unique(reps["team"]).to_pylist() if t != "SDR"]
                tix = {t: _team_index(t) for t in teams}
                old_team = pa.array(teams + ["SDR"])
                new_team = pa.array([_team_name(off["team"] + tix[t]) for t in teams] + ["SDR"])
                new_mgr = pa.array([_manager(off["team"] + tix[t]) for t in teams] + ["\0sdr"])

                def rep(col, old_rep=old_rep, new_rep=new_rep):
                    return _map(col, old_rep, new_rep)

                def opp_ref(col, old_opp=old_opp, new_opp=new_opp):
                    return _map(col, old_opp, new_opp)

                def acc(col, old_acc=old_acc, new_acc=new_acc):
                    return _map(col, old_acc, new_acc)

                def renamed(t: pa.Table, **cols) -> pa.Table:
                    for c, arr in cols.items():
                        t = t.set_column(t.schema.get_field_index(c), c, arr)
                    return t

                acts, leads = tables["activities"], tables["leads"]
                streamed = {
                    "opportunities": renamed(
                        opp, opportunity_id=new_opp, owner=rep(opp["owner"]), account=acc(opp["account"])
                    ),
                    "opportunity_history": renamed(
                        tables["opportunity_history"],
                        opportunity_id=opp_ref(tables["opportunity_history"]["opportunity_id"]),
                    ),
                    "activities": renamed(
                        acts,
                        activity_id=_ids_from("ACT-", off["act"] + 1, acts.num_rows, width["ACT-"]),
                        owner=rep(acts["owner"]),
                        opportunity_id=opp_ref(acts["opportunity_id"]),
                        account=acc(acts["account"]),
                    ),
                    "leads": renamed(
                        leads,
                        lead_id=_ids_from("LEAD-", off["lead"] + 1, leads.num_rows, width["LEAD-"]),
                        opportunity_id=opp_ref(leads["opportunity_id"]),
                        owner=rep(leads["owner"]),
                    ),
                }
                for name in STREAMED:
                    out.write(name, streamed.pop(name))
                names = (
                    reps["name"] if k == 0 else pc.binary_join_element_wise(reps["name"], f" ({k + 1})", "")
                )
                small["reps"].append(
                    renamed(
                        reps,
                        rep_id=new_rep,
                        name=names,
                        team=_map(reps["team"], old_team, new_team),
                        manager=_map(reps["team"], old_team, new_mgr),
                    )
                )
                small["quotas"].append(renamed(tables["quotas"], rep_id=rep(tables["quotas"]["rep_id"])))
                small["churn"].append(renamed(tables["churn"], account=acc(tables["churn"]["account"])))
                # bookings by fiscal year of the won deals (close_date of a closed deal is its close day)
                won = pc.and_(opp["is_won"], opp["is_closed"]).to_numpy(zero_copy_only=False)
                day = pc.fill_null(pc.cast(pc.cast(opp["close_date"], pa.int32()), pa.int64()), 0).to_numpy()
                for fy, v in sample._bookings_by_fiscal_year(cal, day, opp["amount"].to_numpy(), won).items():
                    bookings[fy] = bookings.get(fy, 0.0) + v
                off["opp"] += n
                off["act"] += acts.num_rows
                off["lead"] += leads.num_rows
                off["ae"] += n_ae_k
                off["sdr"] += len(old_rep) - n_ae_k
                off["team"] += math.ceil((max(tix.values()) + 1) / len(sample.TEAMS)) * len(sample.TEAMS)
                off["acc"] += len(old_acc)
                del tables, streamed, opp, acts, leads
            n_teams = off["team"]
            reps_all = pa.concat_tables(small.pop("reps"))
            mgr = pc.if_else(pc.equal(reps_all["manager"], "\0sdr"), _manager(n_teams), reps_all["manager"])
            small["reps"] = [reps_all.set_column(reps_all.schema.get_field_index("manager"), "manager", mgr)]
            for name in ("reps", "quotas", "churn"):
                out.write(name, pa.concat_tables(small[name]))
        finally:
            out.close()
        fy_now = cal.fiscal_year(pd.Timestamp(params.as_of))
        targets = {}
        for fy in (fy_now - 1, fy_now):
            base = bookings.get(fy - 1)
            if base:
                targets[int(fy)] = float(round(base * sample.TARGET_GROWTH, -5))
        config = {**config, "as_of": params.as_of, "targets": targets, "source": block}
        (tmp / "dataset.yml").write_text(
            yaml.safe_dump(config, sort_keys=False, allow_unicode=True), encoding="utf-8"
        )
    return folder
