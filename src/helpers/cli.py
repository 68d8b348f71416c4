"""The ``revops`` command line. Heavy libraries are imported inside the handlers, so ``revops --help``
and ``revops validate`` start fast."""

from __future__ import annotations

import argparse
import importlib
import sys


def _handler(target: str):
    def run(args) -> int:
        module, func = target.split(":")
        return int(getattr(importlib.import_module(module), func)(args) or 0)

    return run


def cmd_validate(args) -> int:
    from helpers.data.dataset import validate_report

    code, text = validate_report(args.dataset, all_warnings=args.all)
    print(text)
    return code


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="revops", description="RevOps notebooks: data, reports and email.")
    sub = p.add_subparsers(dest="command", required=True)

    v = sub.add_parser("validate", help="check a dataset folder against the data contract")
    v.add_argument("dataset", help="dataset folder (with dataset.yml)")
    v.add_argument("--all", action="store_true", help="list every warning (default: 3 rows per kind)")
    v.set_defaults(func=cmd_validate)

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
    m.add_argument(
        "-p",
        "--parameters",
        nargs=2,
        action="append",
        metavar=("NAME", "VALUE"),
        default=[],
        help="a notebook parameter, e.g. -p growth_rate 0.25 (repeatable); read as the type the notebooks' "
        "parameters cells declare (papermill --help-notebook notebooks/X.ipynb lists them)",
    )
    m.add_argument(
        "-f",
        "--parameters-file",
        action="append",
        default=[],
        metavar="YAML",
        help="notebook parameters from a YAML file of 'name: value' lines (repeatable; -p wins)",
    )
    m.set_defaults(func=_handler("helpers.publish.report:cli_monthly"))
    rv = rsub.add_parser("reviews", help="one-to-one review pack per rep")
    rv.add_argument("--dataset", default="data/sample")
    rv.add_argument("--period", default=None)
    rv.add_argument("--as-of", default=None)
    rv.add_argument("--out", default="reports")
    rv.add_argument("--reps", nargs="*", default=None, help="subset of rep ids")
    rv.add_argument("--jobs", type=int, default=None)
    rv.set_defaults(func=_handler("helpers.publish.reviews:cli"))

    e = sub.add_parser("email", help="build (and with --send, send) the leadership email")
    e.add_argument("--period", default=None)
    e.add_argument("--to", required=True, help="comma-separated recipients")
    e.add_argument("--reports", default="reports")
    e.add_argument("--send", action="store_true", help="send via SMTP (default: dry run writing an .eml)")
    e.set_defaults(func=_handler("helpers.publish.mail:cli"))

    b = sub.add_parser("bench", help="benchmark the monthly pack at several sizes")
    b.add_argument("--sizes", default="10000,100000,1000000")
    b.add_argument("--out", default="bench")
    b.add_argument(
        "--no-cache-load-up-to",
        type=float,
        default=1e9,
        help="measure the load without cache only up to this size (at 1M it takes minutes and ~5 GB)",
    )
    b.set_defaults(func=_handler("helpers.publish.bench:cli"))
    return p


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
