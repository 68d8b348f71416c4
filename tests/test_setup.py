"""The project's setup files stay in step: environment.yml delegates to pyproject.toml."""

import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
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
    # conda installs nothing of its own: pip installs the project with its dev extras, from the lock
    assert pip_section == ["-c requirements.lock", "-e .[dev]"]
    assert [d for d in deps if isinstance(d, str)] == [python, "pip"]


def test_readme_has_the_two_commands_and_ci_runs_the_test_one():
    readme = (ROOT / "README.md").read_text()
    assert "make monthly-report" in readme and "make test" in readme
    # the fast tests, and what the slow ones need
    assert "make test-fast" in readme and all(p in readme for p in ("Chromium", "PostgreSQL", "Java"))
    makefile = (ROOT / "Makefile").read_text()
    assert "test-fast: venv ## " in makefile and '$(BIN)/python -m pytest -m "not slow"' in makefile
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
    """The import contracts in .importlinter hold: publish -> sections -> metrics -> data, never upward, and no
    import cycle between the modules of a room.
    A module that breaks it is named in the output."""
    exe = Path(sys.executable).with_name("lint-imports")
    out = subprocess.run([str(exe)], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "2 kept, 0 broken" in out.stdout


def _requirements():
    """(extra or None, Requirement) for every requirement in pyproject.toml."""
    from packaging.requirements import Requirement

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    reqs = [(None, Requirement(r)) for r in project["dependencies"]]
    for extra, items in project.get("optional-dependencies", {}).items():
        reqs += [(extra, Requirement(r)) for r in items]
    return reqs


def _lock() -> dict:
    from packaging.utils import canonicalize_name

    pins = {}
    for line in (ROOT / "requirements.lock").read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            name, version = line.split("==")
            assert canonicalize_name(name) not in pins, f"{name} twice in requirements.lock"
            pins[canonicalize_name(name)] = version.strip()
    return pins


def test_the_lock_pins_every_requirement_within_its_range():
    """A requirement added to pyproject.toml without `make lock` fails here, naming it."""
    from packaging.utils import canonicalize_name

    pins = _lock()
    for extra, req in _requirements():
        name = canonicalize_name(req.name)
        if name == "revops-notebooks":  # dev = the other extras
            continue
        assert name in pins, f"{req} ({extra or 'core'}) is not in requirements.lock: run make lock"
        assert req.specifier.contains(pins[name], prereleases=True), f"{req}: locked at {pins[name]}"
    assert "pip" in pins  # make venv installs pip itself at its locked version


def test_the_venv_is_installed_from_the_lock():
    """Every distribution in the running venv is at its locked version (make venv builds it from the lock)."""
    import importlib.metadata as md

    from packaging.utils import canonicalize_name

    if not sys.prefix.startswith(str(ROOT)):
        pytest.skip(f"the tests run from {sys.prefix}, not the project's .venv")
    pins = _lock()
    installed = {canonicalize_name(d.metadata["Name"]): d.version for d in md.distributions()}
    ignored = {"revops-notebooks", "setuptools", "wheel"}
    off = {n: (v, pins.get(n)) for n, v in installed.items() if n not in ignored and pins.get(n) != v}
    assert off == {}, "installed (version, locked version) differ: rebuild with make venv"


def test_the_code_declares_what_it_imports():
    """Each third-party module imported by the package and the notebooks comes from a declared requirement
    (core or an extra), and each declared requirement is used; the tests may also use the dev extra."""
    import ast
    import importlib.metadata as md

    import nbformat
    from packaging.utils import canonicalize_name

    def imported(sources):
        names = set()
        for text in sources:
            for node in ast.walk(ast.parse(text)):
                if isinstance(node, ast.Import):
                    names |= {a.name.split(".")[0] for a in node.names}
                elif isinstance(node, ast.ImportFrom) and node.level == 0:
                    names.add(node.module.split(".")[0])
        return names - set(sys.stdlib_module_names) - {"helpers", "conftest", "__future__"}

    def code_cells(path):
        return [c.source for c in nbformat.read(path, as_version=4).cells if c.cell_type == "code"]

    src = [p.read_text() for p in (ROOT / "src").rglob("*.py")]
    src += [s for p in (ROOT / "notebooks").glob("*.ipynb") for s in code_cells(p)]
    dist_of = md.packages_distributions()
    optional = {
        "sqlalchemy"
    }  # other databases: the user installs SQLAlchemy and a driver (docs/data-contract.md)
    declared = {canonicalize_name(r.name) for e, r in _requirements() if e in (None, "lab", "db", "spark")}
    used = set()
    for module in sorted(imported(src) - optional):
        dists = {canonicalize_name(d) for d in dist_of.get(module, [module])}
        assert dists & declared, (
            f"the code imports {module} ({', '.join(dists)}), not declared in pyproject.toml"
        )
        used |= dists & declared
    # used indirectly: Excel through pandas, the kernel, papermill's client, the lab and the db extras
    # and sqlglot, pinned below 28 for ibis 12 (helpers.data.engine)
    indirect = {"openpyxl", "ipykernel", "nbclient", "jupyterlab", "voila", "psycopg", "sqlglot"}
    assert declared - used - indirect == set()
    tests = [p.read_text() for p in (ROOT / "tests").rglob("*.py")]
    dev = {canonicalize_name(r.name) for e, r in _requirements() if e == "dev"} | declared
    for module in sorted(imported(tests) - optional):
        if module in {"packs", "opportunities"} or (ROOT / "tests" / f"{module}.py").exists():
            continue
        dists = {canonicalize_name(d) for d in dist_of.get(module, [module])}
        assert dists & dev, f"the tests import {module} ({', '.join(dists)}), not in the dev extra"


def test_pyproject_states_the_license_as_spdx_and_drops_unused_tools():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert project["license"] == "MIT"  # a TOML table is deprecated by setuptools
    assert not any("pyinstrument" in r for r in project["optional-dependencies"]["dev"])
