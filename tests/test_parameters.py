"""Notebook parameters pass through `revops report monthly` (-p NAME VALUE, -f params.yaml): checked against
each notebook's parameters cell (papermill's own inspection) before any kernel starts, recorded in
summary.json, and papermill --help-notebook lists every one with its type and help."""

from __future__ import annotations

import ast
import json
import subprocess
import sys

import nbformat
import pandas as pd
import pytest
from conftest import NOTEBOOKS, ROOT

from helpers.publish import report


def _parameters_cell(path):
    nb = nbformat.read(path, as_version=4)
    return next(c for c in nb.cells if "parameters" in c.metadata.get("tags", []))


@pytest.mark.parametrize("path", sorted(NOTEBOOKS.glob("*.ipynb")), ids=lambda p: p.stem)
def test_help_notebook_lists_every_parameter_with_its_type_and_help(path):
    import papermill

    assigned = [
        (node.target if isinstance(node, ast.AnnAssign) else node.targets[0]).id
        for node in ast.parse(_parameters_cell(path).source).body
        if isinstance(node, ast.Assign | ast.AnnAssign)
    ]
    listed = papermill.inspect_notebook(str(path))
    assert list(listed) == assigned
    for name, p in listed.items():
        assert p["inferred_type_name"] in ("str", "int", "float", "bool"), (name, p)
        assert p["help"], name
    # and the command line shows them all
    done = subprocess.run(
        [str(ROOT / ".venv" / "bin" / "papermill"), "--help-notebook", str(path)],
        capture_output=True, text=True,
    )  # fmt: skip
    if done.returncode == 0:  # the command exists where the tests run from the project's venv
        for name, p in listed.items():
            assert f"  {name}: {p['inferred_type_name']} (default " in done.stdout, name


def _refused(capsys, tmp_path, monkeypatch, *args):
    """Run the command with kernels and papermill runs forbidden; return its stderr."""
    from helpers.cli import main

    def no_kernels(*a, **k):
        raise AssertionError("a kernel was started")

    monkeypatch.setattr(report, "start_kernels", no_kernels)
    monkeypatch.setattr(report, "execute", no_kernels)
    out = tmp_path / "reports"
    code = main(
        ["report", "monthly", "--dataset", str(tmp_path / "no-dataset-needed"), "--out", str(out), *args]
    )
    err = capsys.readouterr().err
    assert code == 2, err
    assert not out.exists()
    return err


def test_a_misspelt_parameter_is_refused_naming_the_notebooks(capsys, tmp_path, monkeypatch):
    err = _refused(capsys, tmp_path, monkeypatch, "-p", "growth_rte", "0.25")
    assert "'growth_rte' is not a parameter of quota_setting, pipeline_health, win_loss_review" in err
    assert "did you mean 'growth_rate'?" in err
    # a parameter of another notebook than the ones run
    err = _refused(
        capsys, tmp_path, monkeypatch, "--notebooks", "pipeline_health", "-p", "growth_rate", "0.25"
    )
    assert "'growth_rate' is not a parameter of pipeline_health" in err


def test_a_mistyped_parameter_is_refused_naming_notebook_and_parameter(capsys, tmp_path, monkeypatch):
    err = _refused(
        capsys,
        tmp_path,
        monkeypatch,
        "-p",
        "growth_rate",
        "25%",
        "-p",
        "top_n",
        "2.5",
        "-p",
        "period",
        "2026-09",
    )
    assert (
        "quota_setting: parameter 'growth_rate' is declared float (default 0.20), so it must be a number; got '25%'"
        in err
    )
    assert (
        "pipeline_health: parameter 'top_n' is declared int (default 20), so it must be a whole number" in err
    )
    assert "parameter 'period' is set by the report run; use --period" in err
    params = tmp_path / "params.yaml"
    params.write_text("use_dataset_target: 'no'\nmin_deals: 3\n")
    err = _refused(capsys, tmp_path, monkeypatch, "-f", str(params))
    assert (
        "quota_setting: parameter 'use_dataset_target' is declared bool (default True), so it must be True or False"
        in err
    )
    assert "min_deals" not in err


def test_values_are_read_as_the_notebooks_declare_them(tmp_path):
    params = tmp_path / "params.yaml"
    params.write_text("growth_rate: 1\nuse_dataset_target: false\nwho: AE1\nattrition_rate: null\n")
    given = report.gather_parameters(
        [
            ("seed", "7"),
            ("growth_rate", "0.3"),
            ("hires_per_quarter", "1,0,0,0"),
            ("comparison_period", "2026"),
        ],
        [params],
    )
    chosen = report.check_parameters(given, report.find_notebooks())
    assert chosen["quota_setting"] == {
        "growth_rate": 0.3,  # -p wins over -f
        "use_dataset_target": False,
        "attrition_rate": None,  # its default is None, so None is allowed
        "seed": 7,
        "hires_per_quarter": "1,0,0,0",
    }
    assert type(chosen["quota_setting"]["seed"]) is int
    assert chosen["pipeline_health"] == {"who": "AE1"}
    assert chosen["win_loss_review"] == {"comparison_period": "2026"}  # text, as declared, not 2026
    assert report.check_parameters({}, report.find_notebooks()) == {
        "quota_setting": {}, "pipeline_health": {}, "win_loss_review": {}
    }  # fmt: skip


@pytest.mark.slow
def test_growth_rate_passes_through_to_the_quota_target(sample_dir, tmp_path):
    """quota target = basis bookings × (1 + growth_rate); the basis (FY2028 plan, FY2027 still running at
    2026-10-31) is the won amount closed in the 12 months to the as-of date, summed here from the CSV."""
    params = tmp_path / "params.yaml"
    params.write_text("over_assignment: 0.1\n")
    out = tmp_path / "reports"
    done = subprocess.run(
        [sys.executable, "-m", "helpers.cli", "report", "monthly", "--dataset", str(sample_dir), "--out", str(out),
         "--notebooks", "quota_setting", "-f", str(params), "-p", "growth_rate", "0.25"],
        capture_output=True, text=True, cwd=ROOT,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr + done.stdout
    summary = json.loads((out / "2026-10" / "summary.json").read_text())
    assert summary["parameters"]["given"] == {"growth_rate": 0.25, "over_assignment": 0.1}
    (nb,) = summary["notebooks"]
    assert nb["parameters"] == {"growth_rate": 0.25, "over_assignment": 0.1}
    figs = {f["key"]: f["value"] for f in nb["figures"]}

    opp = pd.read_csv(sample_dir / "opportunities.csv", parse_dates=["close_date"])
    won = opp[opp["is_won"].astype(str).str.lower().isin(["true", "1"])]
    basis = won.loc[won["close_date"].between("2025-11-01", "2026-10-31"), "amount"].sum()
    assert figs["quota_basis_bookings"] == pytest.approx(basis, rel=1e-9)
    assert figs["quota_company_target"] == pytest.approx(basis * 1.25, rel=1e-9)
    assert figs["quota_sum_of_rep_quotas"] == pytest.approx(basis * 1.25 * 1.1, rel=1e-6)


@pytest.mark.parametrize(
    "as_of, period, period_as_of",
    [("2017-10-31", "2017-10", "2017-10-31"), ("2017-10-20", "2017-09", "2017-09-30")],
)
def test_the_default_period_is_the_datasets_last_complete_month(tmp_path, as_of, period, period_as_of):
    sys.path.insert(0, str(ROOT / "tests" / "fixtures" / "notebooks"))
    from packs import BOOKINGS, write_tiny_dataset

    ds = write_tiny_dataset(tmp_path / "ds")  # data of 2026, moved to 2017
    for name in ("dataset.yml", "opportunities.csv"):
        (ds / name).write_text((ds / name).read_text().replace("2026-", "2017-"))
    yml = ds / "dataset.yml"
    yml.write_text(yml.read_text().replace("as_of: 2017-10-31", f"as_of: {as_of}"))
    params = report.validate_parameters(ds, None, None, [str(BOOKINGS)])
    assert (params.period, params.as_of) == (period, period_as_of)


def test_review_packs_take_parameters_checked_like_the_monthly_pack(capsys, tmp_path, monkeypatch):
    from helpers import cli

    monkeypatch.chdir(ROOT)
    out = tmp_path / "reports"

    def refused(*args):
        code = cli.main(["report", "reviews", "--dataset", str(tmp_path / "none"), "--out", str(out), *args])
        err = capsys.readouterr().err
        assert code == 2, err
        assert not out.exists()
        return err

    err = refused("-p", "top_m", "5")
    assert "'top_m' is not a parameter of pipeline_health (did you mean 'top_n'?)" in err
    err = refused("-p", "top_n", "five")
    assert (
        "pipeline_health: parameter 'top_n' is declared int (default 20), so it must be a whole number" in err
    )
    assert "'who' are set by the review run" in refused("-p", "who", "AE001")
    params = tmp_path / "params.yaml"
    params.write_text("period: 2026-09\n")
    assert "parameter 'period' is set by the report run; use --period" in refused("-f", str(params))


@pytest.mark.slow
def test_review_packs_pass_parameters_through(sample_dir, tmp_path):
    out = tmp_path / "reports"
    rep = pd.read_csv(sample_dir / "opportunities.csv", dtype=str)["owner"].value_counts().index[0]
    done = subprocess.run(
        [sys.executable, "-m", "helpers.cli", "report", "reviews", "--dataset", str(sample_dir), "--out", str(out),
         "--reps", rep, "-p", "top_n", "3"],
        capture_output=True, text=True, cwd=ROOT,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr + done.stdout
    page = (out / "2026-10" / "reviews" / f"{rep}.html").read_text()
    assert "The 3 largest open deals" in page and "The 10 largest open deals" not in page
