"""The ``revops`` command line. Heavy libraries are imported inside the handlers, so ``revops --help``
and ``revops validate`` start fast."""

from __future__ import annotations

import argparse
import importlib
import os
import signal
import sys
import threading
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
IMPORTED = ROOT / "data" / "imported"  # datasets imported from export folders on first use (git-ignored)
EXPORT_SUFFIXES = (".csv", ".tsv", ".txt", ".xlsx", ".xlsm", ".xls")


def _handler(target: str):
    def run(args) -> int:
        module, func = target.split(":")
        return int(getattr(importlib.import_module(module), func)(args) or 0)

    return run


def _headers(path: Path) -> list[str]:
    """The header row of an export file (CSV with comma, semicolon or tab; or Excel)."""
    import csv

    if path.suffix.lower() in (".xlsx", ".xlsm", ".xls"):
        import pandas as pd

        return [str(c) for c in pd.read_excel(path, nrows=0).columns]
    with open(path, encoding="utf-8-sig", errors="replace", newline="") as fh:
        first = fh.readline()
    sep = max((",", ";", "\t"), key=first.count)
    return next(csv.reader([first], delimiter=sep), [])


def export_profile(folder: Path) -> tuple[str, list[Path]] | None:
    """(profile, files) when ``folder`` holds CRM export files (no dataset.yml) that exactly one built-in
    import profile recognises, every file by its headers; else None."""
    import pandas as pd

    from helpers.data.importers import BUILTIN_PROFILES, ImportProblem, classify_files, load_profile

    files = sorted(f for f in folder.iterdir() if f.is_file() and f.suffix.lower() in EXPORT_SUFFIXES)
    if not files:
        return None
    frames = {f: pd.DataFrame(columns=_headers(f)) for f in files}
    found = []
    for name in BUILTIN_PROFILES:
        profile = load_profile(name)
        try:
            kinds = classify_files(profile, frames)
        except ImportProblem:
            continue
        tables = {e.get("table") for e in profile["exports"] if e["name"] in kinds and not e.get("ignore")}
        if "opportunities" in tables:
            found.append(name)
    return (found[0], files) if len(found) == 1 else None


def dataset_folder(path: str) -> str:
    """``path`` itself when it is a dataset folder (or not a folder: the command then says what is
    wrong). A folder of raw CRM export files that one built-in profile recognises (such as the public
    example in data/examples/crm-sales-opportunities) is imported through that profile into
    ``data/imported/<folder name>/`` on first use, and again when its files change (the import keeps
    your edits to that dataset.yml); its files are never modified. Returns the folder to use."""
    folder = Path(path).expanduser()
    if not folder.is_dir() or (folder / "dataset.yml").exists():
        return path
    found = export_profile(folder)
    if found is None:
        return path
    import yaml

    from helpers.data.importers import ImportProblem, import_files
    from helpers.data.sources import file_sha256

    profile, files = found
    target = IMPORTED / folder.resolve().name
    wanted = sorted((f.name, file_sha256(f)) for f in files)
    try:
        recorded = yaml.safe_load((target / "dataset.yml").read_text(encoding="utf-8"))["source"]["files"]
        up_to_date = sorted((r["file"], r["sha256"]) for r in recorded) == wanted
    except (OSError, KeyError, TypeError, yaml.YAMLError):
        up_to_date = False
    shown = target.relative_to(ROOT) if target.is_relative_to(ROOT) else target
    if up_to_date:
        print(f"{path}: export files, using the dataset imported from them in {shown}/")
        return str(target)
    print(
        f"{path}: export files, not a dataset folder; importing them with profile {profile!r} into {shown}/"
    )
    try:
        import_files(profile, files, target, force=target.exists())
    except ImportProblem as exc:
        raise SystemExit(f"{path}: {exc}") from exc
    return str(target)


def cmd_dataset_folder(args) -> int:
    """``revops dataset-folder PATH``: the dataset folder to use for PATH (a recognised export folder is
    imported first), on stdout; what happens on the way goes to stderr. For ``make whatif``."""
    import contextlib

    with contextlib.redirect_stdout(sys.stderr):
        folder = dataset_folder(args.path)
    raw = Path(folder)
    files = (
        [f for f in raw.iterdir() if f.is_file() and f.suffix.lower() in EXPORT_SUFFIXES]
        if raw.is_dir()
        else []
    )
    if (
        files
        and not (raw / "dataset.yml").exists()
        and not any(f.stem.lower() == "opportunities" for f in files)
    ):
        from helpers.data.importers import BUILTIN_PROFILES

        raise SystemExit(
            f"{args.path}: {len(files)} export file(s) and no dataset.yml: this is a CRM export, not a dataset "
            "folder, and no built-in profile recognises it. Import it first, then use the imported folder:\n"
            f"  revops import --profile PROFILE --to data/imported/{raw.resolve().name} {args.path}/*\n"
            f"(PROFILE: {', '.join(BUILTIN_PROFILES)}, or a profile .yml of your own; docs/data-contract.md)"
        )
    if not (raw / "dataset.yml").is_file():
        raise SystemExit(
            f"{args.path}: not a dataset folder (no dataset.yml); `make sample` writes the sample, "
            "`revops import` a dataset from CRM export files (docs/data-contract.md)"
        )
    print(folder)
    return 0


def cmd_validate(args) -> int:
    from helpers.data.validation import validate_report

    code, text = validate_report(args.dataset, all_warnings=args.all)
    print(text)
    return code


def _parameter_flags(p: argparse.ArgumentParser) -> None:
    """papermill's -p NAME VALUE and -f params.yaml, for the report commands."""
    p.add_argument(
        "-p",
        "--parameters",
        nargs=2,
        action="append",
        metavar=("NAME", "VALUE"),
        default=[],
        help="a notebook parameter, e.g. -p growth_rate 0.25 (repeatable); read as the type the notebooks' "
        "parameters cells declare (papermill --help-notebook notebooks/X.ipynb lists them)",
    )
    p.add_argument(
        "-f",
        "--parameters-file",
        action="append",
        default=[],
        metavar="YAML",
        help="notebook parameters from a YAML file of 'name: value' lines (repeatable; -p wins)",
    )


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="revops", description="RevOps notebooks: data, reports and email.")
    sub = p.add_subparsers(dest="command", required=True)

    v = sub.add_parser("validate", help="check a dataset folder against the data contract")
    v.add_argument("dataset", help="dataset folder (with dataset.yml)")
    v.add_argument("--all", action="store_true", help="list every warning (default: 3 rows per kind)")
    v.set_defaults(func=cmd_validate)

    dsf = sub.add_parser(
        "dataset-folder", help="the dataset folder to use for PATH (imports a recognised CRM export first)"
    )
    dsf.add_argument("path")
    dsf.set_defaults(func=cmd_dataset_folder)

    s = sub.add_parser("sample-data", help="write the deterministic sample dataset")
    s.add_argument("--to", default="data/sample", help="output folder (default data/sample)")
    s.add_argument("--seed", type=int, default=42)
    s.add_argument("--as-of", default=None, help="last day of data, YYYY-MM-DD (default: end of last month)")
    s.add_argument("--opportunities", type=int, default=None, help="number of opportunities (default ~4,000)")
    s.add_argument("--reps", type=int, default=None, help="number of reps (default 30)")
    s.add_argument("--activities-per-opportunity", type=float, default=None)
    s.add_argument("--format", choices=["csv", "parquet"], default="csv")
    s.add_argument("--force", action="store_true", help="regenerate even if the folder is up to date")
    s.set_defaults(func=_handler("helpers.data.sample:cli"))

    i = sub.add_parser("import", help="import CRM export files into a dataset folder via a mapping profile")
    i.add_argument(
        "--profile",
        required=True,
        help="profile name (salesforce, hubspot, pipedrive, maven_crm) or YAML path",
    )
    i.add_argument("--to", required=True, help="dataset folder to create")
    i.add_argument("--force", action="store_true", help="replace an existing dataset folder")
    i.add_argument("--as-of", default=None, help="export date YYYY-MM-DD (default: latest event in the data)")
    i.add_argument("files", nargs="+", help="export files")
    i.set_defaults(func=_handler("helpers.data.importers:cli"))

    r = sub.add_parser("report", help="run the report notebooks")
    rsub = r.add_subparsers(dest="report_command", required=True)
    m = rsub.add_parser("monthly", help="the monthly leadership pack")
    m.add_argument("--dataset", default="data/sample")
    m.add_argument("--period", default=None, help="YYYY-MM (default: last complete month)")
    m.add_argument("--as-of", default=None, help="YYYY-MM-DD (default: end of period)")
    m.add_argument("--out", default="reports", help="reports root folder")
    m.add_argument("--notebooks", nargs="*", default=None, help="subset of notebooks to run")
    m.add_argument(
        "--jobs",
        type=int,
        default=None,
        help="kernels running notebooks side by side (default: number of cores; 1 keeps one copy of the data)",
    )
    _parameter_flags(m)
    m.set_defaults(func=_handler("helpers.publish.report:cli_monthly"))
    rv = rsub.add_parser("reviews", help="one-to-one review pack per rep")
    rv.add_argument("--dataset", default="data/sample")
    rv.add_argument("--period", default=None)
    rv.add_argument("--as-of", default=None)
    rv.add_argument("--out", default="reports")
    rv.add_argument("--reps", nargs="*", default=None, help="subset of rep ids")
    rv.add_argument("--jobs", type=int, default=None)
    _parameter_flags(rv)
    rv.set_defaults(func=_handler("helpers.publish.reviews:cli"))

    e = sub.add_parser("email", help="build (and with --send, send) the leadership email")
    e.add_argument("--period", default=None)
    e.add_argument("--to", required=True, help="comma-separated recipients")
    e.add_argument("--reports", default="reports")
    e.add_argument("--send", action="store_true", help="send via SMTP (default: dry run writing an .eml)")
    e.set_defaults(func=_handler("helpers.publish.mail:cli"))

    b = sub.add_parser("bench", help="benchmark the monthly pack at several sizes")
    b.add_argument(
        "--sizes",
        default="10000,100000,1000000",
        help="opportunities, comma-separated (10000000 too: generated as Parquet; see docs/performance.md)",
    )
    b.add_argument("--out", default="bench")
    b.add_argument(
        "--no-cache-load-up-to",
        type=float,
        default=100_000,
        help="measure the load without cache only up to this size (at 1M it takes minutes and ~5 GB)",
    )
    b.add_argument(
        "--pandas-up-to",
        type=float,
        default=1_000_000,
        help="run the pandas metrics and the what-if (whole frames in memory) only up to this size",
    )
    b.add_argument(
        "--pg-size",
        type=float,
        default=100_000,
        help="the size whose pack also runs on a private PostgreSQL server (0: none)",
    )
    b.set_defaults(func=_handler("helpers.publish.bench:cli"))
    return p


class Terminated(KeyboardInterrupt):
    """SIGTERM: the run stops as on Ctrl-C (kernels shut down, build folders removed)."""


def _on_sigterm(signum, frame):
    signal.signal(signal.SIGTERM, signal.SIG_IGN)  # a second one must not cut the clean-up short
    raise Terminated


def _quiet_stdout() -> None:
    """Point stdout at /dev/null, so the interpreter's final flush to a closed pipe does not fail too
    (the recipe of Python's signal documentation)."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    from helpers.data.progress import enable

    enable()  # long work shows its progress on stderr (a bar on a terminal, else plain lines)
    main_thread = threading.current_thread() is threading.main_thread()
    before = signal.signal(signal.SIGTERM, _on_sigterm) if main_thread else None
    try:
        if getattr(args, "dataset", None):  # validate, report monthly, report reviews
            args.dataset = dataset_folder(args.dataset)
        return args.func(args)
    except Terminated:
        print("revops: stopped (SIGTERM); nothing half-written was kept", file=sys.stderr)
        return 143
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # `revops validate … | head`: the reader has what it wanted
        _quiet_stdout()
        return 141  # 128 + SIGPIPE, as a shell reports a command stopped by a closed pipe
    finally:
        if main_thread:
            signal.signal(signal.SIGTERM, before)


if __name__ == "__main__":
    sys.exit(main())
