"""The shipped example runs as shipped: a folder of raw CRM export files given as --dataset is imported through
the profile that recognises it into a generated folder on first use, never touching the shipped files, and its
default period is its own last complete month."""

from __future__ import annotations

import hashlib

import pytest
from conftest import EXAMPLES

from helpers import cli
from helpers.publish import report

EXAMPLE = EXAMPLES / "crm-sales-opportunities"


def _sums(folder):
    return {
        p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir()) if p.is_file()
    }


def test_the_example_folder_is_imported_on_first_use_and_reused(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(cli, "IMPORTED", tmp_path / "imported")
    shipped = _sums(EXAMPLE)
    listed = dict(line.split()[::-1] for line in (EXAMPLE / "SHA256SUMS").read_text().splitlines() if line)
    assert {k: shipped[k] for k in listed} == listed

    folder = cli.dataset_folder(str(EXAMPLE))
    assert folder == str(tmp_path / "imported" / "crm-sales-opportunities")
    assert "importing them with profile 'maven_crm'" in capsys.readouterr().out
    params = report.validate_parameters(folder, None, None)
    assert (params.period, params.as_of) == ("2017-12", "2017-12-31")  # not the month before today

    stamp = (tmp_path / "imported" / "crm-sales-opportunities" / "opportunities.csv").stat().st_mtime_ns
    assert cli.dataset_folder(str(EXAMPLE)) == folder
    assert "using the dataset imported from them" in capsys.readouterr().out
    assert (
        tmp_path / "imported" / "crm-sales-opportunities" / "opportunities.csv"
    ).stat().st_mtime_ns == stamp
    assert _sums(EXAMPLE) == shipped  # the shipped files are as they were


def test_changed_export_files_are_imported_again(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(cli, "IMPORTED", tmp_path / "imported")
    raw = tmp_path / "export"
    raw.mkdir()
    for p in EXAMPLE.glob("*.csv"):
        (raw / p.name).write_bytes(p.read_bytes())
    folder = cli.dataset_folder(str(raw))
    before = report.validate_parameters(folder, None, None)
    pipeline = raw / "sales_pipeline.csv"
    lines = pipeline.read_bytes().split(b"\r\n")
    pipeline.write_bytes(b"\r\n".join(line for line in lines if b",2017-12-" not in line))
    capsys.readouterr()
    assert cli.dataset_folder(str(raw)) == folder
    assert "importing them" in capsys.readouterr().out
    after = report.validate_parameters(folder, None, None)
    assert before.fingerprint != after.fingerprint
    assert after.as_of < "2017-12-01" and after.period == after.as_of[:7]


@pytest.mark.parametrize("kind", ["dataset", "other"])
def test_other_folders_are_left_as_given(tmp_path, sample_dir, kind):
    if kind == "dataset":
        assert cli.dataset_folder(str(sample_dir)) == str(sample_dir)
    else:
        (tmp_path / "notes.csv").write_text("a,b\n1,2\n")
        assert cli.dataset_folder(str(tmp_path)) == str(tmp_path)
