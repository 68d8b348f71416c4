"""Loading and validation: typed frames, and one error that names file, row, column, value and expectation."""

import hashlib
import textwrap
from pathlib import Path

import pandas as pd
import pytest

from helpers.cli import main as revops
from helpers.data.config import ConfigError
from helpers.data.dataset import DataValidationError, load

DATASET_YML = """\
name: tiny
currency: EUR
fiscal_year_start_month: 2
as_of: 2026-10-31
stages:
  - {name: Prospecting, probability: 10}
  - {name: Proposal, probability: 50}
  - {name: Closed Won, probability: 100}
  - {name: Closed Lost, probability: 0}
won_stages: [Closed Won]
lost_stages: [Closed Lost]
"""

GOOD_OPPS = """\
opportunity_id,owner,created_date,close_date,stage,amount,is_closed,is_won,probability,next_step
O1,r1,2026-01-05,2026-02-01,Closed Won,"1,000.50",yes,yes,100,
O2,r1,2026-01-05,2026-03-01,Closed Lost,0,true,false,0,
O3,r2,2026-03-05,2026-12-01,Proposal,2500,no,no,50,Send contract
O4,r2,2026-03-05,2026-09-30,Prospecting,400,0,0,10,
"""


def make_dataset(tmp_path: Path, files: dict[str, str], yml: str = DATASET_YML) -> Path:
    folder = tmp_path / "ds"
    folder.mkdir()
    (folder / "dataset.yml").write_text(yml)
    for name, text in files.items():
        (folder / name).write_text(textwrap.dedent(text))
    return folder


def problems_of(folder) -> list[str]:
    with pytest.raises(DataValidationError) as exc:
        load(folder)
    return [str(p) for p in exc.value.problems]


def test_types_are_converted(tmp_path):
    ds = load(make_dataset(tmp_path, {"opportunities.csv": GOOD_OPPS}))
    opp = ds.opportunities
    assert pd.api.types.is_datetime64_any_dtype(opp["created_date"])
    assert opp["amount"].tolist() == [1000.5, 0.0, 2500.0, 400.0]
    assert opp["is_won"].tolist() == [True, False, False, False]
    assert opp["is_closed"].tolist() == [True, True, False, False]
    # probabilities given as 0-100 are normalised to 0-1
    assert opp["probability"].tolist() == [1.0, 0.0, 0.5, 0.1]
    assert ds.config.probabilities == {
        "Prospecting": 0.1,
        "Proposal": 0.5,
        "Closed Won": 1.0,
        "Closed Lost": 0.0,
    }
    assert ds.config.currency == "EUR" and ds.config.open_stages == ["Prospecting", "Proposal"]
    assert ds.as_of == pd.Timestamp("2026-10-31")


def test_warnings_for_what_a_report_can_live_with(tmp_path):
    ds = load(make_dataset(tmp_path, {"opportunities.csv": GOOD_OPPS}))
    got = sorted(str(w) for w in ds.warnings)
    assert got == sorted(
        [
            "opportunities.csv, row 2 (line 3), column 'amount': value '0' — amount is zero",
            "opportunities.csv, row 4 (line 5), column 'close_date': value '2026-09-30' — open deal "
            "with a close date before the as-of date 2026-10-31 (past due)",
            "opportunities.csv, row 4 (line 5), column 'next_step' — open deal with no next step",
        ]
    )


def test_every_rule_is_reported_at_once_with_file_row_column_value(tmp_path):
    opps = """\
    opportunity_id,owner,created_date,close_date,stage,amount,is_closed,is_won
    O1,r1,2026-01-05,2026-02-01,Closed Won,100,yes,yes
    O2,r1,2026-01-05,2025-12-01,Closed Lost,-5,true,false
    O1,r2,2026-13-05,2026-12-01,Prospectin,100,false,true
    O4,r2,2026-03-05,2026-10-01,Proposal,abc,no,no
    """
    acts = """\
    activity_id,owner,type,occurred_at,opportunity_id
    A1,r1,call,2026-01-01 10:00,O1
    A2,r1,call,2026-01-01 10:00,O9
    """
    hist = """\
    opportunity_id,changed_at,stage
    O1,2026-01-05,Prospecting
    O7,2026-01-06,Proposal
    """
    got = problems_of(
        make_dataset(
            tmp_path, {"opportunities.csv": opps, "activities.csv": acts, "opportunity_history.csv": hist}
        )
    )
    expected = [
        "opportunities.csv, row 3 (line 4), column 'created_date': value '2026-13-05' — expected a date such as 2026-10-31",
        "opportunities.csv, row 2 (line 3), column 'amount': value '-5' — expected an amount of 0 or more",
        "opportunities.csv, row 4 (line 5), column 'amount': value 'abc' — expected a number",
        "opportunities.csv, row 3 (line 4), column 'opportunity_id': value 'O1' — expected a unique id; row 1 has the same id",
        "opportunities.csv, row 3 (line 4), column 'stage': value 'Prospectin' — expected a stage listed in "
        "dataset.yml; did you mean 'Prospecting'? (stages: Prospecting, Proposal, Closed Won, Closed Lost)",
        "opportunities.csv, row 2 (line 3), column 'close_date': value '2025-12-01' — expected a close "
        "date on or after created_date 2026-01-05",
        "opportunities.csv, row 3 (line 4), column 'is_closed': value 'False' — expected is_closed = true for a won "
        "deal (is_won is true)",
        "opportunity_history.csv, row 2 (line 3), column 'opportunity_id': value 'O7' — expected an opportunity_id "
        "that exists in opportunities.csv",
        "activities.csv, row 2 (line 3), column 'opportunity_id': value 'O9' — expected an opportunity_id that "
        "exists in opportunities.csv",
    ]
    assert sorted(got) == sorted(expected)


def test_missing_required_column_suggests_the_closest_name(tmp_path):
    opps = "opportunity_id,owner,stage_name,amount\nO1,r1,Closed Won,5\n"
    got = problems_of(make_dataset(tmp_path, {"opportunities.csv": opps}))
    assert got == [
        "opportunities.csv, column 'stage' — required column is missing; did you mean 'stage_name'?"
    ]


def test_status_is_derived_from_stage_when_the_export_has_no_flags(tmp_path):
    opps = "opportunity_id,stage\nO1,Closed Won\nO2,Closed Lost\nO3,Proposal\n"
    ds = load(make_dataset(tmp_path, {"opportunities.csv": opps}))
    assert ds.opportunities["is_won"].tolist() == [True, False, False]
    assert ds.opportunities["is_closed"].tolist() == [True, True, False]
    assert ds.missing("opportunities", "amount", section="Deal size") == (
        "Deal size needs column(s) amount in the `opportunities` table; dataset 'tiny' does not provide them."
    )
    assert ds.missing("activities") == "This section needs the `activities` table; dataset 'tiny' has none."
    assert ds.missing("opportunities", "stage") is None


def test_parquet_and_excel_load_like_csv(tmp_path):
    csv_ds = load(make_dataset(tmp_path, {"opportunities.csv": GOOD_OPPS}))
    raw = pd.read_csv(tmp_path / "ds" / "opportunities.csv", dtype=str)
    for ext in ("parquet", "xlsx"):
        folder = tmp_path / ext
        folder.mkdir()
        (folder / "dataset.yml").write_text(DATASET_YML)
        if ext == "parquet":
            raw.to_parquet(folder / "opportunities.parquet")
        else:
            raw.to_excel(folder / "opportunities.xlsx", index=False)
        other = load(folder)
        pd.testing.assert_frame_equal(other.opportunities, csv_ds.opportunities, check_dtype=False)


def test_bad_dataset_yml_is_one_clear_error(tmp_path):
    yml = "stages: [A, B]\nwon_stages: [Won]\nfiscal_year_start_month: 13\n"
    with pytest.raises(ConfigError) as exc:
        load(make_dataset(tmp_path, {"opportunities.csv": GOOD_OPPS}, yml=yml))
    msg = str(exc.value)
    assert "dataset.yml has 3 problem(s)" in msg
    assert "fiscal_year_start_month: expected a whole number 1..12, got 13" in msg
    assert "won_stages: 'Won' is not one of the stages (A, B)" in msg
    assert "lost_stages: expected at least one stage name" in msg


def test_validate_command_exit_codes_and_inputs_untouched(tmp_path, capsys):
    folder = make_dataset(tmp_path, {"opportunities.csv": GOOD_OPPS})
    before = {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in folder.iterdir()}
    assert revops(["validate", str(folder)]) == 0
    out = capsys.readouterr().out
    assert "is valid — opportunities: 4 rows" in out and "3 warning(s)" in out
    (folder / "opportunities.csv").write_text(GOOD_OPPS.replace("2500", "-2500"))
    before["opportunities.csv"] = hashlib.sha256((folder / "opportunities.csv").read_bytes()).hexdigest()
    assert revops(["validate", str(folder)]) == 1
    assert (
        "row 3 (line 4), column 'amount': value '-2500' — expected an amount of 0 or more"
        in capsys.readouterr().out
    )
    after = {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in folder.iterdir()}
    assert after == before


def test_long_error_lists_are_grouped_but_every_problem_is_kept(tmp_path):
    rows = "\n".join(f"O{i},r1,2026-01-05,2026-02-01,Closed Won,-1,yes,yes" for i in range(50))
    opps = "opportunity_id,owner,created_date,close_date,stage,amount,is_closed,is_won\n" + rows + "\n"
    with pytest.raises(DataValidationError) as exc:
        load(make_dataset(tmp_path, {"opportunities.csv": opps}))
    assert len(exc.value.problems) == 50
    assert "… and 30 more in opportunities.csv" in str(exc.value)


def test_as_of_is_inferred_from_recorded_events_not_future_close_dates(tmp_path):
    yml = "\n".join(line for line in DATASET_YML.splitlines() if not line.startswith("as_of"))
    ds = load(make_dataset(tmp_path, {"opportunities.csv": GOOD_OPPS}, yml=yml))
    # created dates max 2026-03-05; closed deals' close dates max 2026-03-01; O3's 2026-12-01 is an expectation
    assert ds.as_of == pd.Timestamp("2026-03-05")


# ---- messy real-world exports ------------------------------------------------------------------------
MINI_YML = "stages: [Open, Won, Lost]\nwon_stages: [Won]\nlost_stages: [Lost]\nas_of: 2026-10-31\n"


def load_mini(tmp_path, text: str, yml: str = MINI_YML, name: str = "opportunities.csv", mode: str = "w"):
    folder = tmp_path / "m"
    folder.mkdir(exist_ok=True)
    (folder / "dataset.yml").write_text(yml)
    if mode == "wb":
        (folder / name).write_bytes(text)
    else:
        (folder / name).write_text(textwrap.dedent(text))
    return load(folder)


def warning_texts(ds) -> list[str]:
    return [str(w) for w in ds.warnings]


def test_european_numbers_are_read_with_a_decimal_comma(tmp_path):
    ds = load_mini(
        tmp_path, 'opportunity_id;stage;amount\n1;Open;"1.234,56"\n2;Open;"€ 1.200"\n3;Open;12,5\n'
    )
    assert ds.opportunities["amount"].tolist() == [1234.56, 1200.0, 12.5]
    assert any("decimal comma" in w for w in warning_texts(ds))


def test_us_numbers_with_thousands_commas_and_currency_codes(tmp_path):
    ds = load_mini(
        tmp_path, 'opportunity_id,stage,amount\n1,Open,"1,234.56"\n2,Open,USD 1200\n3,Open,"$2,000"\n'
    )
    assert ds.opportunities["amount"].tolist() == [1234.56, 1200.0, 2000.0]


def test_a_column_mixing_number_formats_is_an_error_on_the_odd_rows(tmp_path):
    with pytest.raises(DataValidationError) as exc:
        load_mini(
            tmp_path, 'opportunity_id,stage,amount\n1,Open,"1.234,56"\n2,Open,"2.000,10"\n3,Open,"1,234.56"\n'
        )
    assert [str(p) for p in exc.value.problems] == [
        "opportunities.csv, row 3 (line 4), column 'amount': value '1,234.56' — expected the same number format as "
        "the rest of the column (like 1.234,56)"
    ]


def test_percent_signs_and_probability_scales(tmp_path):
    ds = load_mini(tmp_path, "opportunity_id,stage,probability\n1,Open,35%\n2,Open,0.5\n3,Open,1%\n")
    # '%' values are percentages; the plain 0.5 is on the 0-1 scale of its column (no plain value above 1)
    assert ds.opportunities["probability"].tolist() == pytest.approx([0.35, 0.5, 0.01])
    ds = load_mini(tmp_path, "opportunity_id,stage,probability\n1,Open,35\n2,Open,0.5\n3,Open,100\n")
    assert ds.opportunities["probability"].tolist() == pytest.approx([0.35, 0.005, 1.0])
    assert any("0–100 scale" in w and "1 value(s) below 1" in w for w in warning_texts(ds))
    with pytest.raises(DataValidationError, match="expected a number, not a percentage"):
        load_mini(tmp_path, "opportunity_id,stage,amount\n1,Open,35%\n")


def test_day_month_order_is_decided_for_the_whole_column(tmp_path):
    opps = "opportunity_id,stage,created_date\n1,Open,31/10/2026\n2,Open,01/11/2026\n"
    ds = load_mini(tmp_path, opps)  # 31 proves day-first, so 01/11 is 1 November, not 11 January
    assert ds.opportunities["created_date"].tolist() == [
        pd.Timestamp("2026-10-31"),
        pd.Timestamp("2026-11-01"),
    ]
    ds = load_mini(tmp_path, "opportunity_id,stage,created_date\n1,Open,03/04/2026\n")
    assert ds.opportunities["created_date"].tolist() == [pd.Timestamp("2026-03-04")]
    assert any("could be day/month or month/day" in w for w in warning_texts(ds))
    ds = load_mini(
        tmp_path, "opportunity_id,stage,created_date\n1,Open,03/04/2026\n", yml=MINI_YML + "date_order: DMY\n"
    )
    assert ds.opportunities["created_date"].tolist() == [pd.Timestamp("2026-04-03")]
    with pytest.raises(
        DataValidationError, match="row 2 .* value '10/31/2026' — expected dates in one order"
    ):
        load_mini(
            tmp_path,
            "opportunity_id,stage,created_date\n1,Open,31/10/2026\n2,Open,10/31/2026\n3,Open,30/10/2026\n",
        )


def test_timestamps_with_offsets_excel_serials_and_na_words(tmp_path):
    opps = (
        "opportunity_id,stage,created_date,amount\n1,Open,2026-10-31T14:00:00Z,N/A\n2,Open,2026-10-30,-\n"
        "3,Open,46326,null\n"
    )
    ds = load_mini(tmp_path, opps)
    # Excel serial 46326 = 1899-12-30 + 46326 days = 2026-10-31
    assert ds.opportunities["created_date"].tolist() == [
        pd.Timestamp("2026-10-31"),
        pd.Timestamp("2026-10-30"),
        pd.Timestamp("2026-10-31"),
    ]
    assert ds.opportunities["amount"].isna().all()
    assert any("Excel day serials" in w for w in warning_texts(ds))


def test_headers_match_the_contract_ignoring_case_and_spaces_and_stages_ignoring_case(tmp_path):
    ds = load_mini(
        tmp_path,
        "Opportunity ID,STAGE ,Amount\n1,closed  won,5\n2,OPEN,6\n",
        yml=MINI_YML.replace("[Open, Won, Lost]", "[Open, Closed Won, Lost]").replace(
            "[Won]", "[Closed Won]"
        ),
    )
    assert ds.opportunities["stage"].tolist() == ["Closed Won", "Open"]
    assert ds.opportunities["is_won"].tolist() == [True, False]
    assert (
        "opportunities.csv, column 'stage': value 'OPEN' — read as the stage 'Open' (1 row(s))"
        in warning_texts(ds)
    )


def test_windows_1252_and_blank_lines_keep_row_numbers_right(tmp_path):
    data = "opportunity_id,stage,account,amount\n1,Open,Café Müller,5\n\n3,Open,Ok,-1\n".encode("cp1252")
    with pytest.raises(DataValidationError) as exc:
        load_mini(tmp_path, data, mode="wb")
    assert [str(p) for p in exc.value.problems] == [
        "opportunities.csv, row 3 (line 4), column 'amount': value '-1' — expected an amount of 0 or more"
    ]
    ds = load_mini(tmp_path, data.replace(b"-1", b"1"), mode="wb")
    assert ds.opportunities["account"].tolist() == ["Café Müller", "Ok"]
    assert any("not UTF-8; read as Windows-1252" in w for w in warning_texts(ds))


def test_duplicate_headers_empty_files_and_folders_are_errors(tmp_path):
    with pytest.raises(
        DataValidationError, match=r"column 'Amount' — column appears twice \(columns 3 and 4\); keep one"
    ):
        load_mini(tmp_path, "opportunity_id,stage,amount,Amount\n1,Open,5,6\n")
    with pytest.raises(DataValidationError, match="opportunities.csv — has no data rows"):
        load_mini(tmp_path, "opportunity_id,stage,amount\n\n")
    folder = tmp_path / "d"
    (folder / "opportunities.csv").mkdir(parents=True)
    (folder / "dataset.yml").write_text(MINI_YML)
    with pytest.raises(DataValidationError, match="could not read the file: is a folder, not a file"):
        load(folder)


def test_stage_and_status_flags_must_agree(tmp_path):
    opps = (
        "opportunity_id,stage,is_closed,is_won\n1,Won,false,false\n2,Lost,true,true\n3,Open,true,false\n"
        "4,,false,false\n"
    )
    got = sorted(str(p) for p in messy_problems(tmp_path, opps))
    assert got == sorted(
        [
            "opportunities.csv, row 1 (line 2), column 'is_won': value 'False' — expected is_won = true: the stage is a "
            "won stage",
            "opportunities.csv, row 1 (line 2), column 'is_closed': value 'False' — expected is_closed = true: the stage "
            "is a closing stage",
            "opportunities.csv, row 2 (line 3), column 'is_won': value 'True' — expected is_won = false: the stage is a "
            "lost stage",
            "opportunities.csv, row 3 (line 4), column 'is_closed': value 'True' — expected is_closed = false: the stage "
            "is an open stage (or list it under won_stages/lost_stages)",
            "opportunities.csv, row 4 (line 5), column 'stage' — expected a value (required column)",
        ]
    )


def messy_problems(tmp_path, opps):
    with pytest.raises(DataValidationError) as exc:
        load_mini(tmp_path, opps)
    return exc.value.problems


@pytest.mark.parametrize(
    "yml, message",
    [
        (MINI_YML + "asof: 2026-10-31\n", "asof: not a dataset.yml key; did you mean 'as_of'?"),
        (
            MINI_YML.replace("as_of: 2026-10-31", "as_of: Oct 2026"),
            "as_of: expected the export date as YYYY-MM-DD",
        ),
        ("stages: [Open, No, Lost]\nwon_stages: [Open]\nlost_stages: [Lost]\n", "put the name in quotes"),
        (MINI_YML + "date_order: DDMM\n", "date_order: expected DMY (31/10/2026), MDY (10/31/2026) or YMD"),
    ],
)
def test_dataset_yml_typos_are_errors_with_suggestions(tmp_path, yml, message):
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
        load_mini(tmp_path, "opportunity_id,stage\n1,Open\n", yml=yml)


def test_files_read_ahead_load_as_read_in_turn(tmp_path, monkeypatch):
    """``load`` reads the files two at a time on worker threads (``TableReader.read_ahead``): the same
    frames, in the file's row order, and the same problems in the same order as reading them one by one
    — on the hostile dataset (odd text in every table, a stray quote, messy values)."""
    import sys
    import threading

    import helpers.data.dataset as dataset
    from helpers.data.sources import TableReader

    sys.path.insert(0, str(Path(__file__).parent))
    from test_hostile_pack import write_hostile_dataset

    folder = write_hostile_dataset(tmp_path / "hostile")
    monkeypatch.setenv("REVOPS_CACHE", "0")
    threads, read_raw = set(), dataset.read_raw

    def spy(*args, **kwargs):
        threads.add(threading.current_thread().name.split("_")[0])
        return read_raw(*args, **kwargs)

    monkeypatch.setattr(dataset, "read_raw", spy)
    ahead = load(folder, strict=False)
    assert threads == {"revops-read"}  # every file was read ahead
    monkeypatch.setattr(TableReader, "read_ahead", lambda self, tnames: None)
    in_turn = load(folder, strict=False)
    assert [str(p) for p in ahead.warnings] == [str(p) for p in in_turn.warnings]
    assert ahead.warnings == in_turn.warnings and len(ahead.warnings) > 10
    assert list(ahead.tables) == list(in_turn.tables) and len(ahead.tables) == 7
    for name, df in in_turn.tables.items():
        pd.testing.assert_frame_equal(ahead.tables[name], df, check_exact=True, obj=name)
