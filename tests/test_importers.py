"""Importers: each profile on a small hand-made export with the CRM's real headers, the public Maven
dataset through its profile, and the error / safety rules. Outputs go to tmp_path only."""

from __future__ import annotations

import csv
import hashlib
import shutil
from pathlib import Path

import pandas as pd
import pytest
import yaml

from helpers.cli import main as revops
from helpers.data.dataset import load
from helpers.data.importers import ImportProblem, ProfileError, import_files, load_profile

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = ROOT / "tests" / "fixtures" / "exports"
MAVEN = ROOT / "data" / "examples" / "crm-sales-opportunities"
MAVEN_FILES = sorted(MAVEN.glob("*.csv"))


def rows(path: Path) -> list[dict]:
    with open(path, newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


def pick(records: list[dict], cols: list[str]) -> list[tuple]:
    return [tuple(r[c] for c in cols) for r in records]


def digest(paths) -> dict[str, str]:
    return {str(p): hashlib.sha256(Path(p).read_bytes()).hexdigest() for p in paths}


# --------------------------------------------------------------------------------------------------
# each profile on a hand-made export
# --------------------------------------------------------------------------------------------------
def test_salesforce_report_exports(tmp_path):
    files = [FIXTURES / "salesforce_opportunities.csv", FIXTURES / "salesforce_opportunity_history.csv"]
    out = import_files("salesforce", files, tmp_path / "sf")
    opp = rows(out / "opportunities.csv")
    # 4 deals; the blank line, "Grand Totals (4 records)" and the copyright footer are not deals.
    # Dates are en_US M/D/YYYY; "24,000.00" -> 24000; "Probability (%)" 90 -> 0.9; Won/Closed 1/0 -> true/false.
    cols = [
        "opportunity_id",
        "owner",
        "created_date",
        "close_date",
        "stage",
        "amount",
        "is_closed",
        "is_won",
        "probability",
        "forecast_category",
        "loss_reason",
        "next_step",
        "last_activity_date",
    ]
    assert pick(opp, cols) == [
        (
            "0065g00000AbCdE",
            "Ana Ruiz",
            "2026-01-29",
            "2026-03-15",
            "Closed Won",
            "24000",
            "true",
            "true",
            "1",
            "Closed",
            "",
            "",
            "2026-03-14",
        ),
        (
            "0065g00000AbCdF",
            "Ben Cho",
            "2026-04-01",
            "2026-06-30",
            "Negotiation/Review",
            "12500",
            "false",
            "false",
            "0.9",
            "Commit",
            "",
            "Send redlines",
            "2026-04-20",
        ),
        (
            "0065g00000AbCdG",
            "Ana Ruiz",
            "2026-01-31",
            "2026-02-20",
            "Closed Lost",
            "8000",
            "true",
            "false",
            "0",
            "Omitted",
            "Price",
            "",
            "2026-02-18",
        ),
        (
            "0065g00000AbCdH",
            "Ben Cho",
            "2026-04-26",
            "2026-09-30",
            "Prospecting",
            "",
            "false",
            "false",
            "0.1",
            "Pipeline",
            "",
            "Discovery call",
            "",
        ),
    ]
    assert pick(opp, ["account", "source", "deal_type", "opportunity_name"])[0] == (
        "Acme Corp",
        "Web",
        "New Business",
        "Acme - 200 seats",
    )
    hist = rows(out / "opportunity_history.csv")
    # "Last Modified" 2/20/2026, 4:45 PM -> 2026-02-20 16:45:00; "To Stage" is the stage after the change.
    assert pick(hist, ["opportunity_id", "changed_at", "stage", "amount", "close_date", "probability"]) == [
        ("0065g00000AbCdE", "2026-01-29 09:12:00", "Prospecting", "20000", "2026-03-31", "0.1"),
        ("0065g00000AbCdE", "2026-02-20 16:45:00", "Negotiation/Review", "24000", "2026-03-31", "0.9"),
        ("0065g00000AbCdE", "2026-03-15 11:00:00", "Closed Won", "24000", "2026-03-15", "1"),
        ("0065g00000AbCdF", "2026-04-01 08:30:00", "Qualification", "12500", "2026-06-30", "0.1"),
    ]
    ds = load(out)
    assert len(ds.opportunities) == 4 and len(ds.opportunity_history) == 4
    assert ds.opportunities["amount"].sum() == 24000 + 12500 + 8000  # the open Prospecting deal has no amount
    assert [p.expected for p in ds.warnings] == []
    # as_of = latest recorded event: created 4/26/2026 (open deals' future close dates do not count)
    assert ds.as_of == pd.Timestamp("2026-04-26")


def test_hubspot_deals_with_date_entered_columns(tmp_path):
    out = import_files("hubspot", [FIXTURES / "hubspot_deals.csv"], tmp_path / "hs")
    opp = rows(out / "opportunities.csv")
    cols = [
        "opportunity_id",
        "owner",
        "created_date",
        "close_date",
        "stage",
        "amount",
        "is_closed",
        "is_won",
        "source",
        "deal_type",
        "loss_reason",
        "opportunity_name",
    ]
    assert pick(opp, cols) == [
        (
            "10000000051",
            "Ana Ruiz",
            "2026-01-05",
            "2026-03-20",
            "Closed Won",
            "18000",
            "true",
            "true",
            "Organic Search",
            "New Business",
            "",
            "Acme - annual",
        ),
        (
            "10000000123",
            "Ben Cho",
            "2026-01-10",
            "2026-02-28",
            "Closed Lost",
            "5000.5",
            "true",
            "false",
            "Paid Search",
            "New Business",
            "Went with competitor",
            "Globex - pilot",
        ),
        (
            "10000000188",
            "Ana Ruiz",
            "2026-04-02",
            "2026-06-30",
            "Qualified To Buy",
            "",
            "false",
            "false",
            "Offline Sources",
            "Existing Business",
            "",
            "Initech - upsell",
        ),
    ]
    # one history row per non-empty 'Date entered "<stage> (Sales Pipeline)"' cell: 3 + 2 + 2 = 7
    hist = rows(out / "opportunity_history.csv")
    assert pick(hist, ["opportunity_id", "changed_at", "stage"]) == [
        ("10000000051", "2026-01-05 09:30:00", "Appointment Scheduled"),
        ("10000000051", "2026-02-01 14:05:00", "Qualified To Buy"),
        ("10000000051", "2026-03-20 10:00:00", "Closed Won"),
        ("10000000123", "2026-01-10 11:00:00", "Appointment Scheduled"),
        ("10000000123", "2026-02-28 17:00:00", "Closed Lost"),
        ("10000000188", "2026-04-02 08:15:00", "Appointment Scheduled"),
        ("10000000188", "2026-04-20 16:40:00", "Qualified To Buy"),
    ]
    ds = load(out)
    assert len(ds.opportunity_history) == 7
    assert ds.opportunities["is_won"].tolist() == [True, False, False]
    assert ds.as_of == pd.Timestamp("2026-04-20")  # last history change, 2026-04-20 16:40


def test_hubspot_excel_export_gives_the_same_rows(tmp_path):
    xlsx = tmp_path / "hubspot-crm-exports-all-deals.xlsx"
    pd.read_csv(FIXTURES / "hubspot_deals.csv", dtype=str, keep_default_na=False).to_excel(xlsx, index=False)
    a = import_files("hubspot", [FIXTURES / "hubspot_deals.csv"], tmp_path / "csv")
    b = import_files("hubspot", [xlsx], tmp_path / "xlsx")
    for name in ("opportunities.csv", "opportunity_history.csv"):
        assert (a / name).read_text() == (b / name).read_text()


def test_pipedrive_status_sets_stage_and_close_date(tmp_path):
    out = import_files("pipedrive", [FIXTURES / "pipedrive_deals.csv"], tmp_path / "pd")
    opp = rows(out / "opportunities.csv")
    # Won deal 101 keeps "Negotiations Started" in the export -> stage Won, close_date = Won time (2026-03-12);
    # lost 102 -> Lost, close_date = Lost time, "7,500" -> 7500; open 103 -> expected close date, 60 % -> 0.6.
    cols = [
        "opportunity_id",
        "owner",
        "created_date",
        "close_date",
        "stage",
        "amount",
        "is_closed",
        "is_won",
        "account",
        "probability",
        "loss_reason",
    ]
    assert pick(opp, cols) == [
        ("101", "Ana Ruiz", "2026-01-10", "2026-03-12", "Won", "15000", "true", "true", "Acme Corp", "", ""),
        (
            "102",
            "Ben Cho",
            "2026-02-01",
            "2026-03-05",
            "Lost",
            "7500",
            "true",
            "false",
            "Globex",
            "",
            "Price too high",
        ),
        (
            "103",
            "Ana Ruiz",
            "2026-03-01",
            "2026-05-31",
            "Proposal Made",
            "3000",
            "false",
            "false",
            "",
            "0.6",
            "",
        ),
    ]
    cfg = yaml.safe_load((out / "dataset.yml").read_text())
    assert cfg["source"]["notes"] == [
        "pipedrive_deals.csv: 1 row(s) are not in USD (EUR: 1); their amounts are imported as they are, "
        "not converted — filter the export or convert first"
    ]
    ds = load(out)
    assert ds.warnings == []
    assert ds.as_of == pd.Timestamp("2026-03-12")  # won time of 101; 103's expected close is later


# --------------------------------------------------------------------------------------------------
# the public dataset, checked against its own CSV
# --------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def maven(tmp_path_factory):
    before = digest(MAVEN.iterdir())
    out = import_files("maven_crm", MAVEN_FILES, tmp_path_factory.mktemp("maven") / "maven")
    assert digest(MAVEN.iterdir()) == before  # the committed copy is never touched
    return out


def test_maven_counts_and_won_total_equal_the_source_csv(maven):
    with open(MAVEN / "sales_pipeline.csv", newline="", encoding="utf-8") as fh:
        src = list(csv.DictReader(fh))
    with open(MAVEN / "sales_teams.csv", newline="", encoding="utf-8") as fh:
        agents = list(csv.DictReader(fh))
    by_stage: dict[str, int] = {}
    for r in src:
        by_stage[r["deal_stage"]] = by_stage.get(r["deal_stage"], 0) + 1
    won_total = sum(float(r["close_value"]) for r in src if r["deal_stage"] == "Won")

    ds = load(maven)
    opp = ds.opportunities
    assert len(opp) == len(src) == 8800
    assert opp["stage"].value_counts().to_dict() == by_stage
    assert opp.loc[opp["is_won"], "amount"].sum() == won_total == 10_005_534
    assert int(opp["is_won"].sum()) == by_stage["Won"]
    assert int(opp["is_closed"].sum()) == by_stage["Won"] + by_stage["Lost"]
    assert len(ds.reps) == len(agents) == 35  # including the 5 agents with no deals
    assert ds.as_of == pd.Timestamp("2017-12-31")
    assert ds.warnings == []


def test_maven_quirks_are_handled(maven):
    with open(MAVEN / "products.csv", newline="", encoding="utf-8") as fh:
        price = {r["product"]: float(r["sales_price"]) for r in csv.DictReader(fh)}
    opp = load(maven).opportunities
    # "GTXPro" takes products.csv's spelling "GTX Pro"; every product is a products.csv product.
    assert set(opp["product"]) == set(price)
    assert "technolgy" not in set(opp["segment"].dropna()) and "technology" in set(opp["segment"])
    # Lost deals (close_value 0) and open deals (none) carry the product's list price.
    not_won = opp[~opp["is_won"]]
    assert (not_won["amount"] == not_won["product"].map(price)).all()
    # Prospecting deals have no engage_date: created_date stays empty; open deals have no close date.
    assert opp.loc[opp["stage"] == "Prospecting", "created_date"].isna().all()
    assert opp.loc[~opp["is_closed"], "close_date"].isna().all()
    assert opp.loc[opp["stage"] != "Prospecting", "created_date"].notna().all()
    row = opp.set_index("opportunity_id").loc[
        "Z063OYW0"
    ]  # GTXPro, Isdom (medical), Darcel Schlecht (Central)
    assert (row["product"], row["product_line"], row["segment"], row["region"], row["amount"]) == (
        "GTX Pro",
        "GTX",
        "medical",
        "Central",
        4514.0,
    )


def test_maven_dataset_yml_records_its_source(maven):
    cfg = yaml.safe_load((maven / "dataset.yml").read_text())
    assert cfg["source"]["profile"] == "maven_crm"
    files = {f["file"]: f for f in cfg["source"]["files"]}
    sums = dict(line.split()[::-1] for line in (MAVEN / "SHA256SUMS").read_text().splitlines())
    assert {k: v["sha256"] for k, v in files.items()} == sums
    assert files["sales_pipeline.csv"]["rows"] == 8800


# --------------------------------------------------------------------------------------------------
# errors and safety
# --------------------------------------------------------------------------------------------------
def test_unmapped_required_column_names_file_column_and_closest_header(tmp_path):
    broken = tmp_path / "opps.csv"
    text = (FIXTURES / "salesforce_opportunities.csv").read_text()
    broken.write_text(
        text.replace('"Opportunity ID"', '"Opportunity_ID"').replace('"Created Date"', '"Created"')
    )
    with pytest.raises(ImportProblem) as exc:
        import_files("salesforce", [broken], tmp_path / "out")
    assert str(exc.value) == (
        "Cannot import with profile 'salesforce': 2 required column(s) unmapped:\n"
        "  - opps.csv (opportunities export): required column opportunity_id needs header 'Opportunity ID', "
        "which the file lacks; closest header in the file: 'Opportunity_ID'\n"
        "  - opps.csv (opportunities export): required column created_date needs header 'Created Date', "
        "which the file lacks; closest header in the file: 'Created'\n"
        "Add the column(s) to the export, or copy the profile and map your header names "
        "(see docs/data-contract.md, 'Profiles')."
    )
    assert not (tmp_path / "out").exists()
    assert [p.name for p in tmp_path.iterdir()] == ["opps.csv"]  # no temporary folder left behind


def test_file_of_another_crm_is_rejected_with_the_headers_it_lacks(tmp_path):
    with pytest.raises(ImportProblem) as exc:
        import_files("hubspot", [FIXTURES / "pipedrive_deals.csv"], tmp_path / "out")
    msg = str(exc.value)
    assert msg.startswith(
        "Cannot import:\n  - pipedrive_deals.csv: does not look like any export the 'hubspot' "
        "profile knows (deals). Nearest is 'deals', which needs header(s) 'Record ID', "
        "'Deal Name', 'Deal Stage';"
    )


def test_refuses_to_overwrite_without_force_and_force_replaces(tmp_path):
    target = tmp_path / "ds"
    target.mkdir()
    (target / "keep.txt").write_text("mine")
    with pytest.raises(ImportProblem, match="already exists; pass --force"):
        import_files("hubspot", [FIXTURES / "hubspot_deals.csv"], target)
    assert (target / "keep.txt").read_text() == "mine"
    # --force replaces only a folder an import wrote: this one (keep.txt, no dataset.yml) is refused
    with pytest.raises(ImportProblem, match="was not written by `revops import`"):
        import_files("hubspot", [FIXTURES / "hubspot_deals.csv"], target, force=True)
    assert (target / "keep.txt").read_text() == "mine"
    (target / "keep.txt").unlink()
    target.rmdir()
    import_files("hubspot", [FIXTURES / "hubspot_deals.csv"], target)
    import_files("hubspot", [FIXTURES / "hubspot_deals.csv"], target, force=True)
    assert sorted(p.name for p in target.iterdir()) == [
        "dataset.yml",
        "opportunities.csv",
        "opportunity_history.csv",
    ]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ds"]  # no temporary or replaced folder left


def test_force_never_replaces_a_folder_holding_the_inputs(tmp_path):
    folder = tmp_path / "exports"
    folder.mkdir()
    src = shutil.copy(FIXTURES / "hubspot_deals.csv", folder / "deals.csv")
    before = digest([src])
    with pytest.raises(ImportProblem, match="inside the output folder"):
        import_files("hubspot", [src], folder, force=True)
    assert digest([src]) == before


def test_inputs_are_untouched(tmp_path):
    inputs = sorted(FIXTURES.glob("*.csv"))
    before = digest(inputs)
    for profile, files in (("salesforce", inputs[2:4]), ("hubspot", inputs[:1]), ("pipedrive", inputs[1:2])):
        import_files(profile, files, tmp_path / profile)
    assert [p.name for p in inputs[2:4]] == [
        "salesforce_opportunities.csv",
        "salesforce_opportunity_history.csv",
    ]
    assert digest(inputs) == before


def test_a_user_copy_of_a_profile_maps_its_own_stage_names(tmp_path):
    prof = yaml.safe_load((ROOT / "src" / "helpers" / "data" / "profiles" / "hubspot.yml").read_text())
    prof["stage_map"] = {"Qualified To Buy": "Qualified"}
    prof["dataset"]["stages"][1] = {"name": "Qualified", "probability": 0.4}
    prof["dataset"]["qualifying_stage"] = "Qualified"
    path = tmp_path / "my_hubspot.yml"
    path.write_text(yaml.safe_dump(prof, sort_keys=False))
    out = import_files(path, [FIXTURES / "hubspot_deals.csv"], tmp_path / "mine")
    assert [r["stage"] for r in rows(out / "opportunities.csv")] == ["Closed Won", "Closed Lost", "Qualified"]
    assert [r["stage"] for r in rows(out / "opportunity_history.csv")].count("Qualified") == 2
    assert yaml.safe_load((out / "dataset.yml").read_text())["source"]["profile"] == str(path)
    load(out)


def test_unknown_profile_and_malformed_profile(tmp_path):
    with pytest.raises(ProfileError, match="unknown profile 'hubspott'; did you mean 'hubspot'"):
        load_profile("hubspott")
    bad = tmp_path / "bad.yml"
    bad.write_text(
        yaml.safe_dump(
            {
                "name": "bad",
                "dataset": {"stages": ["A", "B"], "won_stages": ["B"], "lost_stages": ["A"]},
                "exports": [
                    {
                        "name": "x",
                        "table": "opportunities",
                        "detect": ["Id"],
                        "columns": {"opportunity_idd": "Id"},
                    }
                ],
            }
        )
    )
    with pytest.raises(
        ProfileError,
        match="'opportunity_idd' is not a column of opportunities; did you mean 'opportunity_id'",
    ):
        load_profile(bad)


def test_cli_imports_validates_and_refuses_overwrite(tmp_path, capsys):
    args = [
        "import",
        "--profile",
        "pipedrive",
        "--to",
        str(tmp_path / "pd"),
        str(FIXTURES / "pipedrive_deals.csv"),
    ]
    assert revops(args) == 0
    out = capsys.readouterr().out
    assert "is valid — opportunities: 3 rows" in out and "not in USD (EUR: 1)" in out
    assert revops(args) == 2
    assert "already exists; pass --force" in capsys.readouterr().err
    assert revops([*args[:1], "--force", *args[1:]]) == 0
    assert revops([*args[:1], "--force", "--as-of", "2026-10-31", *args[1:]]) == 0
    assert load(tmp_path / "pd").as_of == pd.Timestamp("2026-10-31")


def test_data_contract_doc_covers_every_table_column_and_profile():
    from helpers.data.importers import BUILTIN_PROFILES, PROFILES_DIR
    from helpers.data.schema import TABLES

    doc = (ROOT / "docs" / "data-contract.md").read_text(encoding="utf-8")
    missing = [
        f"{t.name}.{c.name}"
        for t in TABLES.values()
        for c in t.columns
        if f"| `{c.name}` |" not in doc.split(f"### `{t.name}`")[1].split("\n### ")[0]
    ]
    assert missing == []
    assert sorted(BUILTIN_PROFILES) == sorted(p.stem for p in PROFILES_DIR.glob("*.yml"))
    for name in BUILTIN_PROFILES:
        section = doc.split(f"### `{name}`")[1].split("\n### ")[0]
        for export in load_profile(name)["exports"]:
            for canon, entry in (export.get("columns") or {}).items():
                first = entry["from"] if isinstance(entry, dict) else entry
                first = first[0] if isinstance(first, list) else first
                assert f"| `{canon}` | {first!r}" in section, (name, canon)


def test_number_formats_found_in_exports():
    from helpers.data.importers import parse_numbers

    got = parse_numbers(
        pd.Series(["USD 1,234.50", "1,234.50 EUR", "$1,200", "(100)", "12%", "TBD", ""], dtype=str)
    )
    assert got.fillna(-1).tolist() == [
        1234.5,
        1234.5,
        1200.0,
        -100.0,
        12.0,
        -1,
        -1,
    ]  # TBD stays for validation
    assert parse_numbers(pd.Series(["1.234,5", "€ 2.000"], dtype=str), decimal=",").tolist() == [
        1234.5,
        2000.0,
    ]


# --------------------------------------------------------------------------------------------------
# --force replaces only what an import wrote
# --------------------------------------------------------------------------------------------------
def test_force_refuses_a_folder_the_import_did_not_write(tmp_path):
    data = tmp_path / "data"
    (data / "acme").mkdir(parents=True)
    (data / "acme" / "opportunities.csv").write_text("opportunity_id,stage\n1,Won\n")
    (data / "notes.txt").write_text("mine")
    before = sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*"))
    with pytest.raises(ImportProblem) as exc:
        import_files("hubspot", [FIXTURES / "hubspot_deals.csv"], data, force=True)
    assert str(exc.value).startswith(f"{data} was not written by `revops import` (it has no dataset.yml)")
    (data / "dataset.yml").write_text("stages: [A, B]\nwon_stages: [B]\nlost_stages: [A]\n")
    with pytest.raises(ImportProblem, match=r"its dataset.yml has no 'source: imported_by: revops import'"):
        import_files("hubspot", [FIXTURES / "hubspot_deals.csv"], data, force=True)
    (data / "dataset.yml").unlink()
    assert sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*")) == before


def test_force_keeps_hand_added_tables_and_refuses_other_files(tmp_path):
    target = import_files("hubspot", [FIXTURES / "hubspot_deals.csv"], tmp_path / "ds")
    written = yaml.safe_load((target / "dataset.yml").read_text())["source"]["wrote"]
    assert written == ["opportunities.csv", "opportunity_history.csv", "dataset.yml"]
    quotas = "rep_id,period_start,quota\nAna Ruiz,2026-01-01,100000\n"
    (target / "quotas.csv").write_text(quotas)
    # a hand-added table the import does not produce is carried over, and the import says so
    import_files("hubspot", [FIXTURES / "hubspot_deals.csv"], target, force=True)
    assert (target / "quotas.csv").read_text() == quotas
    src = yaml.safe_load((target / "dataset.yml").read_text())["source"]
    assert src["kept"] == ["quotas.csv"] and "quotas.csv" not in src["wrote"]
    assert any("kept quotas.csv" in n for n in src["notes"])
    # any other file is neither deleted nor silently kept: the import refuses and lists it
    (target / "notes.md").write_text("call Ana")
    (target / "drafts").mkdir()
    with pytest.raises(ImportProblem) as exc:
        import_files("hubspot", [FIXTURES / "hubspot_deals.csv"], target, force=True)
    assert "not written by the import: drafts/, notes.md" in str(exc.value)
    assert (target / "notes.md").read_text() == "call Ana" and (target / "quotas.csv").exists()
    # a table file the new import would overwrite but the last import did not write is refused too
    (target / "notes.md").unlink()
    (target / "drafts").rmdir()
    (target / "opportunity_history.csv").unlink()
    (target / "opportunity_history.csv").write_text("opportunity_id,changed_at,stage\n")
    src_yml = yaml.safe_load((target / "dataset.yml").read_text())
    src_yml["source"]["wrote"].remove("opportunity_history.csv")
    (target / "dataset.yml").write_text(yaml.safe_dump(src_yml))
    with pytest.raises(ImportProblem, match="not written by the import: opportunity_history.csv"):
        import_files("hubspot", [FIXTURES / "hubspot_deals.csv"], target, force=True)


def test_force_keeps_the_users_edits_to_dataset_yml(tmp_path):
    deals = [FIXTURES / "hubspot_deals.csv"]
    target = import_files("hubspot", deals, tmp_path / "ds")
    fresh = yaml.safe_load((target / "dataset.yml").read_text())
    assert fresh["as_of"] == "2026-04-20" and fresh["currency"] == "USD"
    # the user edits three settings, adds one and removes one
    mine = dict(fresh)
    mine["currency"] = "EUR"
    mine["stages"] = [
        dict(st, probability=0.5) if st["name"] == "Contract Sent" else st for st in fresh["stages"]
    ]
    mine["fiscal_year_start_month"] = 2
    mine["date_order"] = "dmy"
    del mine["qualifying_stage"]
    (target / "dataset.yml").write_text(yaml.safe_dump(mine, sort_keys=False))

    # re-imported with another export date: the edits stay, the import's own settings are refreshed
    import_files("hubspot", deals, target, force=True, as_of="2026-05-31")
    again = yaml.safe_load((target / "dataset.yml").read_text())
    assert (
        again["currency"] == "EUR" and again["fiscal_year_start_month"] == 2 and again["date_order"] == "dmy"
    )
    assert again["stages"] == mine["stages"] and "qualifying_stage" not in again
    assert again["as_of"] == "2026-05-31"  # not edited: the new import's value
    assert list(again)[-1] == "source"
    note = next(n for n in again["source"]["notes"] if n.startswith("kept your edits"))
    assert "currency, date_order, fiscal_year_start_month, qualifying_stage, stages" in note

    # and again: the edits are still the user's (recorded digests are the import's own settings)
    import_files("hubspot", deals, target, force=True)
    third = yaml.safe_load((target / "dataset.yml").read_text())
    assert third["currency"] == "EUR" and third["stages"] == mine["stages"] and third["as_of"] == "2026-04-20"

    # an unedited folder is simply replaced: no note, the import's settings
    plain = import_files("hubspot", deals, tmp_path / "plain")
    import_files("hubspot", deals, plain, force=True)
    replaced = yaml.safe_load((plain / "dataset.yml").read_text())
    assert {k: v for k, v in replaced.items() if k != "source"} == {
        k: v for k, v in fresh.items() if k != "source"
    } | {"name": "plain"}
    assert not any(n.startswith("kept your edits") for n in replaced["source"].get("notes", []))


def test_force_on_a_folder_imported_before_setting_digests_keeps_edits_too(tmp_path):
    target = import_files("hubspot", [FIXTURES / "hubspot_deals.csv"], tmp_path / "ds")
    old = yaml.safe_load((target / "dataset.yml").read_text())
    del old["source"]["settings"]  # as imports before this change wrote it
    old["currency"] = "GBP"
    (target / "dataset.yml").write_text(yaml.safe_dump(old, sort_keys=False))
    import_files("hubspot", [FIXTURES / "hubspot_deals.csv"], target, force=True, as_of="2026-06-30")
    new = yaml.safe_load((target / "dataset.yml").read_text())
    assert new["currency"] == "GBP" and new["as_of"] == "2026-06-30"


# --------------------------------------------------------------------------------------------------
# numbers, percentages, dates: read by the profile's declared format or detected per column
# --------------------------------------------------------------------------------------------------
PD_HEADER = (
    '"Deal - ID","Deal - Title","Deal - Value","Deal - Currency","Deal - Stage","Deal - Status",'
    '"Deal - Owner","Deal - Deal created","Deal - Expected close date","Deal - Probability"\n'
)


def pipedrive_export(tmp_path, lines: list[str], name="deals.csv") -> Path:
    """A Pipedrive deals export with PD_HEADER and the given data lines (values in header order)."""
    path = tmp_path / name
    path.write_text(PD_HEADER + "".join(line + "\n" for line in lines), encoding="utf-8")
    return path


def pd_row(i, value, status="Open", prob="", created="2026-01-10", close="2026-05-31", currency="EUR"):
    return f'"{i}","Deal {i}","{value}","{currency}","Qualified","{status}","Ana Ruiz","{created}","{close}","{prob}"'


def eur_profile(tmp_path, **top) -> Path:
    prof = yaml.safe_load((ROOT / "src" / "helpers" / "data" / "profiles" / "pipedrive.yml").read_text())
    prof["dataset"]["currency"] = "EUR"
    prof.pop("decimal", None)
    prof.update(top)
    path = tmp_path / "pd_eur.yml"
    path.write_text(yaml.safe_dump(prof, sort_keys=False))
    return path


def test_european_numbers_are_detected_per_column(tmp_path):
    # "1.234,50" has both separators, the last is the decimal one -> 1234.5; so "USD 1.234" and "2.000"
    # in the same column are thousands -> 1234 and 2000; "1,5" -> 1.5.
    src = pipedrive_export(
        tmp_path, [pd_row(1, "1.234,50"), pd_row(2, "EUR 1.234"), pd_row(3, "2.000"), pd_row(4, "1,5")]
    )
    out = import_files(eur_profile(tmp_path), [src], tmp_path / "eu")
    assert [r["amount"] for r in rows(out / "opportunities.csv")] == ["1234.5", "1234", "2000", "1.5"]
    # a dot-decimal column: "1,234.5" -> 1234.5, "1,234" -> 1234, "1.234" -> 1.234
    src = pipedrive_export(tmp_path, [pd_row(1, "1,234.5"), pd_row(2, "1,234"), pd_row(3, "1.234")], "us.csv")
    out = import_files(eur_profile(tmp_path), [src], tmp_path / "us")
    assert [r["amount"] for r in rows(out / "opportunities.csv")] == ["1234.5", "1234", "1.234"]


def test_contradictory_or_undecidable_number_columns_are_errors(tmp_path):
    src = pipedrive_export(tmp_path, [pd_row(1, "1.234,50"), pd_row(2, "900"), pd_row(3, "1,234.50")])
    with pytest.raises(ImportProblem) as exc:
        import_files(eur_profile(tmp_path), [src], tmp_path / "x")
    assert (
        "deals.csv, row 1 (line 2), column 'Deal - Value': value '1.234,50' has a decimal comma, but "
        "row 3 (line 4) value '1,234.50' has a decimal point"
    ) in str(exc.value)
    # only "1.234"-like values: 1.234 or 1234? The profile must say (decimal: "," or ".")
    src = pipedrive_export(tmp_path, [pd_row(1, "1.234"), pd_row(2, "10.000")], "amb.csv")
    with pytest.raises(
        ImportProblem,
        match=r"amb.csv, row 1 \(line 2\), column 'Deal - Value': value '1.234' "
        r"reads as 1.234 with a decimal point or 1234 with a decimal comma",
    ):
        import_files(eur_profile(tmp_path), [src], tmp_path / "x")
    out = import_files(eur_profile(tmp_path, decimal=","), [src], tmp_path / "declared")
    assert [r["amount"] for r in rows(out / "opportunities.csv")] == ["1234", "10000"]
    # a declared decimal point contradicted by a value
    src = pipedrive_export(tmp_path, [pd_row(1, "1.234,50")], "dec.csv")
    with pytest.raises(
        ImportProblem,
        match=r"dec.csv, row 1 \(line 2\), column 'Deal - Value': value '1.234,50' "
        r"has a decimal comma, but the profile says decimal: '.'",
    ):
        import_files(eur_profile(tmp_path, decimal="."), [src], tmp_path / "x")


def test_percent_columns_decide_their_scale_from_the_whole_column(tmp_path):
    # Excel cells already formatted as %: 0.35 and 1.0 are 35 % and 100 % (no value > 1 -> 0–1 scale)
    src = pipedrive_export(
        tmp_path, [pd_row(1, "100", prob="0.35"), pd_row(2, "100", prob="1.0"), pd_row(3, "100", prob="40%")]
    )
    out = import_files(eur_profile(tmp_path), [src], tmp_path / "frac")
    assert [r["probability"] for r in rows(out / "opportunities.csv")] == ["0.35", "1", "0.4"]
    # 60 > 1 -> the column is 0–100: 60 -> 0.6, 0.5 -> 0.005, with a note naming the fractional row
    src = pipedrive_export(tmp_path, [pd_row(1, "100", prob="60"), pd_row(2, "100", prob="0.5")], "pct.csv")
    out = import_files(eur_profile(tmp_path), [src], tmp_path / "pct")
    assert [r["probability"] for r in rows(out / "opportunities.csv")] == ["0.6", "0.005"]
    notes = yaml.safe_load((out / "dataset.yml").read_text())["source"]["notes"]
    assert (
        "pct.csv, column 'Deal - Probability': values above 1 make it a 0–100 column, yet 1 value(s) are "
        "below 1 (row 2 (line 3) '0.5', read as 0.5 %); check them"
    ) in notes


def test_dates_follow_the_day_month_order_the_column_or_profile_shows(tmp_path):
    # '31/10/2026': a first field > 12 is a day, so the whole column is day-first: '01/11/2026' -> Nov 1
    src = pipedrive_export(
        tmp_path,
        [
            pd_row(1, "100", created="31/10/2026", close="31/12/2026"),
            pd_row(2, "100", created="01/11/2026", close="15/12/2026"),
        ],
    )
    out = import_files(eur_profile(tmp_path), [src], tmp_path / "dmy")
    assert pick(rows(out / "opportunities.csv"), ["created_date", "close_date"]) == [
        ("2026-10-31", "2026-12-31"),
        ("2026-11-01", "2026-12-15"),
    ]
    # ambiguous column ('01/11/2026', '03/04/2026') and no other date column that tells: date_order decides
    src = pipedrive_export(
        tmp_path,
        [
            pd_row(1, "100", created="01/11/2026", close="2026-12-31"),
            pd_row(2, "100", created="03/04/2026", close="2026-12-31"),
        ],
        "amb.csv",
    )
    out = import_files(eur_profile(tmp_path, date_order="DMY"), [src], tmp_path / "declared")
    assert [r["created_date"] for r in rows(out / "opportunities.csv")] == ["2026-11-01", "2026-04-03"]
    out = import_files(eur_profile(tmp_path, date_order="MDY"), [src], tmp_path / "us")
    assert [r["created_date"] for r in rows(out / "opportunities.csv")] == ["2026-01-11", "2026-03-04"]
    # ... unless another date column of the same file shows the order: 31/12/2026 is day-first
    src = pipedrive_export(
        tmp_path,
        [
            pd_row(1, "100", created="01/11/2026", close="31/12/2026"),
            pd_row(2, "100", created="03/04/2026", close="31/12/2026"),
        ],
        "file.csv",
    )
    out = import_files(eur_profile(tmp_path, date_order="MDY"), [src], tmp_path / "file")
    assert [r["created_date"] for r in rows(out / "opportunities.csv")] == ["2026-11-01", "2026-04-03"]
    # a column with both 31/10 and 10/31 is an error naming both values
    src = pipedrive_export(
        tmp_path,
        [pd_row(1, "100", created="31/10/2026"), pd_row(2, "100", created="10/31/2026")],
        "mixed.csv",
    )
    with pytest.raises(
        ImportProblem,
        match=r"mixed.csv, row 1 \(line 2\), column 'Deal - Deal created': value "
        r"'31/10/2026' is day-first, but row 2 \(line 3\) value '10/31/2026' "
        r"is month-first",
    ):
        import_files(eur_profile(tmp_path), [src], tmp_path / "x")


def test_salesforce_day_first_export_is_read_day_first(tmp_path):
    text = (FIXTURES / "salesforce_opportunities.csv").read_text()
    text = text.replace('"3/15/2026","1/29/2026"', '"15/3/2026","29/1/2026"').replace(
        '"6/30/2026"', '"30/6/2026"'
    )
    text = text.replace('"2/20/2026","1/31/2026"', '"20/2/2026","31/1/2026"').replace(
        '"9/30/2026"', '"30/9/2026"'
    )
    text = text.replace('"4/1/2026"', '"1/4/2026"').replace('"4/26/2026"', '"26/4/2026"')
    path = tmp_path / "opps.csv"
    path.write_text(text)
    out = import_files("salesforce", [path], tmp_path / "sf")
    assert pick(rows(out / "opportunities.csv"), ["created_date", "close_date"]) == [
        ("2026-01-29", "2026-03-15"),
        ("2026-04-01", "2026-06-30"),
        ("2026-01-31", "2026-02-20"),
        ("2026-04-26", "2026-09-30"),
    ]


# --------------------------------------------------------------------------------------------------
# exports that are not what they seem
# --------------------------------------------------------------------------------------------------
def test_deleted_deals_are_dropped_with_a_note_and_unknown_status_is_an_error(tmp_path):
    src = pipedrive_export(
        tmp_path, [pd_row(1, "100"), pd_row(2, "200", status="Deleted"), pd_row(3, "300", "Won")]
    )
    out = import_files(eur_profile(tmp_path), [src], tmp_path / "ok")
    assert [r["opportunity_id"] for r in rows(out / "opportunities.csv")] == ["1", "3"]
    notes = yaml.safe_load((out / "dataset.yml").read_text())["source"]["notes"]
    assert "deals.csv: left out 1 deleted deal(s) (column 'Deal - Status': row 2 (line 3))" in notes
    src = pipedrive_export(tmp_path, [pd_row(1, "100"), pd_row(2, "200", status="Archived")], "odd.csv")
    with pytest.raises(
        ImportProblem,
        match=r"odd.csv, row 2 \(line 3\), column 'Deal - Status': value 'Archived' "
        r"is not a status the profile knows \(open, won, lost, deleted\)",
    ):
        import_files(eur_profile(tmp_path), [src], tmp_path / "x")


def test_an_export_without_data_rows_is_an_error(tmp_path):
    src = pipedrive_export(tmp_path, [])
    with pytest.raises(ImportProblem, match="deals.csv has no data rows"):
        import_files(eur_profile(tmp_path), [src], tmp_path / "x")
    text = (FIXTURES / "salesforce_opportunities.csv").read_text().splitlines()
    footer_only = tmp_path / "sf.csv"
    footer_only.write_text(
        "\n".join(
            [text[0], "", '"Grand Totals (0 records)"', '"Confidential Information - Do Not Distribute"']
        )
        + "\n"
    )
    with pytest.raises(ImportProblem, match="sf.csv has no data rows"):
        import_files("salesforce", [footer_only], tmp_path / "y")
    assert not (tmp_path / "x").exists() and not (tmp_path / "y").exists()


def test_duplicate_headers_are_an_error_naming_both_positions(tmp_path):
    src = tmp_path / "dup.csv"
    src.write_text(PD_HEADER.rstrip("\n") + ',"Deal - Value"\n' + pd_row(1, "100") + ',"999"\n')
    with pytest.raises(
        ImportProblem,
        match=r"dup.csv: header 'Deal - Value' appears twice, in columns 3 \(C\) "
        r"and 11 \(K\)",
    ):
        import_files(eur_profile(tmp_path), [src], tmp_path / "x")
    xlsx = tmp_path / "dup.xlsx"
    pd.DataFrame([["1", "2"]], columns=["Amount", "amount "]).to_excel(xlsx, index=False)
    with pytest.raises(
        ImportProblem, match=r"dup.xlsx: header 'amount' appears twice, in columns 1 \(A\) and 2"
    ):
        import_files(eur_profile(tmp_path), [xlsx], tmp_path / "x")


def test_currency_written_in_the_amount_text_is_reported(tmp_path):
    # "1 200 EUR" in a USD dataset: imported as 1200, with a note (no currency column says so)
    src = pipedrive_export(
        tmp_path,
        [pd_row(1, "1 200 EUR", currency=""), pd_row(2, "$300", currency=""), pd_row(3, "€ 50", currency="")],
    )
    prof = yaml.safe_load(eur_profile(tmp_path).read_text())
    prof["dataset"]["currency"] = "USD"
    path = tmp_path / "usd.yml"
    path.write_text(yaml.safe_dump(prof))
    out = import_files(path, [src], tmp_path / "usd")
    assert [r["amount"] for r in rows(out / "opportunities.csv")] == ["1200", "300", "50"]
    notes = yaml.safe_load((out / "dataset.yml").read_text())["source"]["notes"]
    assert notes == [
        "deals.csv, column 'Deal - Value': 2 amount(s) are written in another currency than USD "
        "(EUR: 2; e.g. row 1 (line 2) '1 200 EUR'); they are imported as they are, not converted — "
        "filter the export or convert first"
    ]


def test_validation_after_import_quotes_the_export_as_written(tmp_path, capsys):
    # deal 2 is deleted (dropped), so deal 3 is row 2 of opportunities.csv but row 3 of the export.
    # Deal 3: created 01/11/2026, closes 12/31/2025 (month-first file) -> close before created, quoted as
    # written; deal 4's amount -1e400 is not a finite number and is kept (and quoted) as written.
    src = pipedrive_export(
        tmp_path,
        [
            pd_row(1, "100", close="12/31/2026"),
            pd_row(2, "5", status="Deleted"),
            pd_row(3, "100", created="01/11/2026", close="12/31/2025"),
            pd_row(4, "-1e400"),
        ],
    )
    args = ["import", "--profile", str(eur_profile(tmp_path)), "--to", str(tmp_path / "ds"), str(src)]
    assert revops(args) == 1
    out = capsys.readouterr().out
    assert (
        "deals.csv, row 3 (line 4), column 'Deal - Expected close date': value '12/31/2025' — expected a close "
        "date on or after created_date '01/11/2026' (opportunities.csv row 2, close_date)"
    ) in out
    assert "deals.csv, row 4 (line 5), column 'Deal - Value': value '-1e400'" in out
    assert "'2025-12-31'" not in out and "inf" not in out


def test_maven_amounts_from_the_list_price_are_recorded_as_a_default(maven):
    """The profile's `fallback` for amount: dataset.yml counts the deals priced at the list price (those
    whose close_value is empty or 0 in the CSV), and the open deals among them, for the reports to say so."""
    import yaml

    with open(MAVEN / "sales_pipeline.csv", newline="", encoding="utf-8") as fh:
        src = list(csv.DictReader(fh))
    listed = [r for r in src if r["close_value"] in ("", "0")]
    open_ = [r for r in src if r["deal_stage"] not in ("Won", "Lost")]
    recorded = yaml.safe_load((maven / "dataset.yml").read_text())["source"]["defaults"]
    assert recorded == {
        "opportunities.amount": {
            "value": "the product's list price",
            "rows": len(listed),
            "of": len(src),
            "open": sum(r["close_value"] in ("", "0") for r in open_),
            "open_of": len(open_),
        }
    }
    assert recorded["opportunities.amount"]["open"] == len(open_) == 2089
