"""The project's setup files stay in step: environment.yml delegates to pyproject.toml."""

import subprocess
import sys
import tomllib
from pathlib import Path

import yaml
from conftest import ROOT


def test_environment_yml_delegates_to_pyproject():
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    deps = env["dependencies"]
    python = next(d for d in deps if isinstance(d, str) and d.startswith("python"))
    pip_section = next(d["pip"] for d in deps if isinstance(d, dict) and "pip" in d)
    # the Python pin is the floor that pyproject requires
    assert project["requires-python"] == ">=" + python.split("=")[1]
    # conda installs nothing of its own: pip installs the project with its dev extras
    assert pip_section == ["-e .[dev]"]
    assert [d for d in deps if isinstance(d, str)] == [python, "pip"]


def test_readme_has_the_two_commands_and_ci_runs_the_test_one():
    readme = (ROOT / "README.md").read_text()
    assert "make monthly-report" in readme and "make test" in readme
    ci = (ROOT / ".ci" / "run").read_text()
    assert "make test" in ci


def test_notebooks_are_stored_without_outputs():
    import nbformat

    for nb_path in sorted((ROOT / "notebooks").glob("*.ipynb")):
        nb = nbformat.read(nb_path, as_version=4)
        assert nb.metadata.get("kernelspec", {}).get("name") == "python3", nb_path.name
        for cell in nb.cells:
            if cell.cell_type == "code":
                assert cell.outputs == [] and cell.execution_count is None, f"{nb_path.name} has outputs"
        tagged = [c for c in nb.cells if "parameters" in c.get("metadata", {}).get("tags", [])]
        assert len(tagged) == 1, f"{nb_path.name} needs exactly one cell tagged 'parameters'"


def test_tables_read_like_prose_for_leadership():
    import pandas as pd

    from helpers.sections.display import table_html

    df = pd.DataFrame(
        {"rep_id": ["AE1"], "attainment_to_date": [0.456], "amount": [1234567.0], "Owner": ["Ann"]}
    )
    html = table_html(df, pct=["attainment_to_date"], money=["amount"], currency="EUR")
    assert '<th class="">Rep ID</th>' in html and ">Attainment to date</th>" in html and ">Owner</th>" in html
    assert ">45.6%</td>" in html and ">€1,234,567</td>" in html
    assert "<th>index</th>" not in html and ">0</td>" not in html  # no index noise


def test_headlines_lead_puts_the_named_figures_first_and_keeps_the_rest():
    from helpers.sections.summary import Headlines

    h = Headlines("nb")
    for k in ("open_deals", "won_deals", "closed_deals", "stalled_deals"):
        h.add(k, 1)
    h.lead(["closed_deals", "open_deals"])
    assert [f.key for f in h.figures] == ["closed_deals", "open_deals", "won_deals", "stalled_deals"]


def test_tables_show_reps_by_name():
    import pandas as pd

    from helpers.sections.display import set_rep_names, table_html

    set_rep_names(pd.DataFrame({"rep_id": ["AE1", "AE2", "AE3"], "name": ["Ann Lee", "Bo Chan", "Bo Chan"]}))
    try:
        html = table_html(pd.DataFrame({"owner": ["AE1", "AE2", "AE3", "AE9"], "note": ["AE1", "", "", ""]}))
        assert ">Ann Lee</td>" in html and ">Bo Chan (AE2)</td>" in html and ">Bo Chan (AE3)</td>" in html
        assert ">AE9</td>" in html  # unknown ids stay as they are
        assert ">AE1</td>" in html  # only rep columns are renamed
    finally:
        set_rep_names(None)


def test_code_and_notebooks_pass_ruff():
    import subprocess
    import sys
    from pathlib import Path

    ruff = Path(sys.executable).with_name("ruff")
    for args in (["check"], ["format", "--check"]):
        done = subprocess.run(
            [str(ruff), *args, "src", "tests", "notebooks"], cwd=ROOT, capture_output=True, text=True
        )
        assert done.returncode == 0, done.stdout + done.stderr


def test_long_tables_show_their_first_rows_and_say_so(monkeypatch):
    import pandas as pd

    from helpers.sections import display as display_mod

    shown = []
    monkeypatch.setattr(display_mod, "display", lambda obj: shown.append(obj.data))
    display_mod.show_table(pd.DataFrame({"rep": [f"R{i}" for i in range(250)]}), max_rows=100)
    table, remark = shown
    assert (
        table.count("<tr>") == 101 and ">R99</td>" in table and ">R100</td>" not in table
    )  # header + 100 rows
    assert "Showing the first 100 of 250 rows" in remark
    shown.clear()
    display_mod.show_table(pd.DataFrame({"rep": ["a", "b"]}))
    assert len(shown) == 1  # short tables: no remark


def test_imports_run_one_way(tmp_path):
    """The import contract in .importlinter holds: publish -> sections -> metrics -> data, never upward.
    A module that breaks it is named in the output."""
    exe = Path(sys.executable).with_name("lint-imports")
    out = subprocess.run([str(exe)], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "1 kept, 0 broken" in out.stdout
