"""The Makefile's targets as a newcomer runs them: `make lab` serves the project's kernel, as root and as an
ordinary user."""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from conftest import ROOT, wait_for_panel, wait_for_port


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _get_json(url: str, token: str, deadline: float, proc: subprocess.Popen) -> dict:
    """GET ``url`` with the token until the server answers (or the process ends, or time runs out)."""
    req = urllib.request.Request(url, headers={"Authorization": f"token {token}"})
    while True:
        if proc.poll() is not None:
            out = proc.stdout.read() if proc.stdout else ""
            raise AssertionError(f"the server exited with {proc.returncode}:\n{out[-3000:]}")
        try:
            with urllib.request.urlopen(req, timeout=5) as resp:
                return json.loads(resp.read())
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            if time.monotonic() > deadline:
                raise
            time.sleep(0.5)


def _stop(proc: subprocess.Popen) -> None:
    """Stop make and the server it started (they share a process group of their own)."""
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def _setpriv(user: str) -> list[str]:
    return ["setpriv", "--reuid", user, "--regid", "nogroup", "--clear-groups"]


def test_make_lab_allows_root_only_for_root():
    """Jupyter refuses root without --allow-root; an ordinary user's command line stays as it was."""
    if shutil.which("make") is None:
        pytest.skip("make is not installed")

    def lab_command(prefix: list[str]) -> str:
        done = subprocess.run(
            [*prefix, "make", "--no-print-directory", "-n", "-o", ".venv/.installed", "lab"],
            cwd=ROOT, capture_output=True, text=True, check=True,
        )  # fmt: skip
        return next(line for line in done.stdout.splitlines() if "jupyter lab" in line)

    me = lab_command([])
    assert ("--allow-root" in me) == (os.geteuid() == 0), me
    if os.geteuid() == 0:
        assert "--allow-root" not in lab_command(_setpriv("nobody"))


def test_make_monthly_report_passes_params_through():
    if shutil.which("make") is None:
        pytest.skip("make is not installed")
    done = subprocess.run(
        ["make", "--no-print-directory", "-n", "-o", ".venv/.installed", "monthly-report", "DATASET=data/x",
         "PARAMS=-p growth_rate 0.25 -f my.yaml"],
        cwd=ROOT, capture_output=True, text=True, check=True,
    )  # fmt: skip
    assert "revops report monthly --dataset data/x  -p growth_rate 0.25 -f my.yaml" in done.stdout


def test_make_monthly_report_on_the_sample_validates_it_once():
    """revops sample-data validates what it writes (or keeps); the warnings are printed once."""
    if shutil.which("make") is None:
        pytest.skip("make is not installed")
    done = subprocess.run(
        ["make", "--no-print-directory", "-n", "-o", ".venv/.installed", "monthly-report"],
        cwd=ROOT, capture_output=True, text=True, check=True,
    )  # fmt: skip
    revops = [line.split("revops ", 1)[1] for line in done.stdout.splitlines() if "/revops " in line]
    assert revops == ["sample-data --to data/sample", "report monthly --dataset data/sample  "]


# Debian 12's Python (3.11.2) cannot install the lock's soupsieve 4.1.3 (requires Python >= 3.11.5): the venv
# an ordinary user runs `make lab` from, when the project's own .venv rests on an interpreter that user may not
# read (pyenv under a 0700 /root), takes the last soupsieve that installs there.
SYSTEM_PYTHON = "/usr/bin/python3"
RELAXED_PINS = {"soupsieve": "soupsieve<3"}


def _venv_for(user: str) -> str | None:
    """A venv (core + lab, from requirements.lock) that ``user`` can run, built once per lock in a
    world-readable folder with the system Python; None when there is no system Python 3.11."""
    import hashlib

    probe = [SYSTEM_PYTHON, "-c", "import sys; sys.exit(sys.version_info[:2] != (3, 11))"]
    if not os.path.exists(SYSTEM_PYTHON) or subprocess.run(probe).returncode:
        return None
    lock = (ROOT / "requirements.lock").read_text()
    pins = [
        RELAXED_PINS.get(line.split("==")[0], line) if "==" in line else line for line in lock.splitlines()
    ]
    key = hashlib.sha256(("\n".join(pins) + (ROOT / "pyproject.toml").read_text()).encode()).hexdigest()[:12]
    venv = f"/tmp/revops-lab-venv-{key}"
    if not os.path.exists(f"{venv}/.installed-lab"):
        shutil.rmtree(venv, ignore_errors=True)
        subprocess.run([SYSTEM_PYTHON, "-m", "venv", venv], check=True)
        os.chmod(venv, 0o755)
        (Path(venv) / "lock.txt").write_text("\n".join(pins) + "\n")
        pip = [f"{venv}/bin/python", "-m", "pip", "install", "--quiet", "-c", f"{venv}/lock.txt"]
        subprocess.run([*pip, "--upgrade", "pip"], check=True, cwd=ROOT)
        subprocess.run([*pip, "-e", ".[lab]"], check=True, cwd=ROOT)
        subprocess.run(
            [f"{venv}/bin/python", "-m", "ipykernel", "install", "--sys-prefix", "--name", "python3",
             "--display-name", "Python 3 (revops-notebooks)"],
            check=True, capture_output=True,
        )  # fmt: skip
    # the Makefile's stamps, newer than this checkout's pyproject.toml (the key holds its content: the venv
    # matches it), so make lab takes the venv as built even for a checkout cloned after it was
    for stamp in (".installed", ".installed-lab"):
        (Path(venv) / stamp).touch()
    return venv


def _as_users():
    users = [pytest.param(None, id="as-this-user")]
    if os.geteuid() == 0:
        users.insert(0, pytest.param(None, id="as-root"))
        users[1] = pytest.param("nobody", id="as-nobody")
    return users


@pytest.mark.slow
@pytest.mark.parametrize("user", _as_users())
def test_make_lab_serves_the_project_kernel(user, tmp_path):
    if shutil.which("make") is None:
        pytest.skip("make is not installed")
    port, token = _free_port(), secrets.token_hex(16)
    if user is None:
        home = tmp_path / "home"
        home.mkdir()
    else:  # pytest's own tmp folders are the owner's only: the user's home is a folder it can reach
        import tempfile

        home = Path(tempfile.mkdtemp(prefix="revops-lab-home-"))
        os.chmod(home, 0o700)
        shutil.chown(home, user)
    env = {
        "PATH": os.environ["PATH"],
        "HOME": str(home),
        "JUPYTER_RUNTIME_DIR": str(home / "runtime"),
        "JUPYTER_CONFIG_DIR": str(home / "config"),
        "JUPYTER_DATA_DIR": str(home / "data"),
    }
    cmd = [
        "make",
        "--no-print-directory",
        "lab",
        f"LAB_ARGS=--no-browser --ServerApp.ip=127.0.0.1 --ServerApp.port={port} "
        f"--ServerApp.port_retries=0 --IdentityProvider.token={token}",
    ]
    if user is not None:
        cmd = [*_setpriv(user), *cmd]
        python = ROOT / ".venv" / "bin" / "python"
        probe = [*_setpriv(user), "bash", "-c", f"{python} -c pass"]  # as make's shell runs it
        if subprocess.run(probe, capture_output=True).returncode:
            # the project's venv rests on an interpreter the user may not read: a venv of the system Python
            venv = _venv_for(user)
            if venv is None:
                pytest.skip(f"{python} resolves to {python.resolve()}, which {user} may not run")
            cmd += [f"VENV={venv}", f"LOCK={venv}/lock.txt"]
    proc = subprocess.Popen(
        cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        start_new_session=True,
    )  # fmt: skip
    try:
        specs = _get_json(f"http://127.0.0.1:{port}/api/kernelspecs", token, time.monotonic() + 90, proc)
    finally:
        _stop(proc)
        if user is not None:
            shutil.rmtree(home, ignore_errors=True)
    assert specs["default"] == "python3"
    spec = specs["kernelspecs"]["python3"]["spec"]
    assert spec["display_name"] == "Python 3 (revops-notebooks)"
    assert spec["language"] == "python"


@pytest.mark.slow
def test_make_whatif_requests_nothing_from_outside_the_machine(sample_dir, tmp_path):
    """The what-if page served by `make whatif`, in Chromium with every non-local request refused, and
    nothing warned in the browser's console."""
    chromium = "/usr/bin/chromium"
    if shutil.which("make") is None or not os.path.exists(chromium):
        pytest.skip("make or /usr/bin/chromium is not installed")
    from playwright.sync_api import sync_playwright

    port = _free_port()
    env = {
        **os.environ,
        "JUPYTER_RUNTIME_DIR": str(tmp_path / "runtime"),
        "JUPYTER_DATA_DIR": str(tmp_path / "data"),
        "MPLCONFIGDIR": str(tmp_path / "mpl"),
    }
    proc = subprocess.Popen(
        ["make", "--no-print-directory", "whatif", f"WHATIF_PORT={port}", f"DATASET={sample_dir}"],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True,
    )  # fmt: skip
    outside, local, console = [], [], []

    def route(r):
        url = r.request.url
        if url.startswith(("data:", "blob:")) or url.split("/")[2].split(":")[0] in (
            "127.0.0.1",
            "localhost",
        ):
            local.append(url)
            return r.continue_()
        outside.append(url)
        return r.abort()

    try:
        try:
            wait_for_port(port, proc)  # (not a GET of the page: see wait_for_port)
        except AssertionError as exc:  # make whatif's own words, when it has ended
            said = proc.stdout.read()[-3000:] if proc.poll() is not None else ""
            raise AssertionError(f"make whatif: {exc}\n{said}") from None
        with sync_playwright() as p:
            browser = p.chromium.launch(
                executable_path=chromium,
                args=["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                      "--disable-component-update", "--no-first-run"],
            )  # fmt: skip
            try:
                page = browser.new_page()
                page.on("console", lambda m: console.append((m.type, m.text)))
                page.route("**/*", route)
                page.goto(f"http://127.0.0.1:{port}/", timeout=240_000, wait_until="commit")
                wait_for_panel(page, ".rv-whatif-summary")
                page.wait_for_load_state("load")
            finally:
                browser.close()
    finally:
        _stop(proc)
    assert outside == []
    assert any("/voila/" in u or "/static/" in u for u in local)
    # before: 13 webpack "Unsatisfied version 4.2.5 … (required ^4.6.2)" warnings (the template drops them)
    assert [m for m in console if m[0] in ("warning", "error")] == []


def test_make_whatif_on_a_crm_export_folder_says_to_import_it_first(tmp_path):
    """A folder of raw export files no built-in profile recognises: refused before Voilà starts, with the
    import command to run (before: Voilà served a page saying 'dataset.yml: not found')."""
    if shutil.which("make") is None:
        pytest.skip("make is not installed")
    raw = tmp_path / "export-2026-10"
    raw.mkdir()
    (raw / "deals.csv").write_text("Deal Id,Deal Name,Value\n1,Acme,100\n")
    done = subprocess.run(
        ["make", "--no-print-directory", "whatif", f"DATASET={raw}", "WHATIF_PORT=1"],
        cwd=ROOT, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode != 0
    assert "this is a CRM export, not a dataset folder" in done.stderr
    assert f"revops import --profile PROFILE --to data/imported/export-2026-10 {raw}/*" in done.stderr
    assert "voila" not in done.stdout.lower() and "serving" not in done.stdout
