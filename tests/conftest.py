"""Shared fixtures. Tests never reach outside the repository or write into it: outputs go to tmp_path."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = ROOT / "notebooks"
EXAMPLES = ROOT / "data" / "examples"
SAMPLE_AS_OF = "2026-10-31"


@pytest.fixture(scope="session")
def sample_dir(tmp_path_factory) -> Path:
    """A small deterministic sample dataset (all tables), generated once per test session."""
    from helpers.data.sample import write_sample

    folder = tmp_path_factory.mktemp("sample") / "sample"
    write_sample(folder, seed=7, as_of=SAMPLE_AS_OF, n_opportunities=1500, n_reps=12)
    return folder


@pytest.fixture(scope="session", autouse=True)
def _cache_in_tmp(tmp_path_factory):
    """The Parquet cache of dataset loads (helpers.data.sources) goes to a session tmp dir, never ~/.cache;
    notebook kernels started by tests inherit it."""
    old = os.environ.get("REVOPS_CACHE_DIR")
    os.environ["REVOPS_CACHE_DIR"] = str(tmp_path_factory.mktemp("revops-cache"))
    yield
    if old is None:
        os.environ.pop("REVOPS_CACHE_DIR", None)
    else:
        os.environ["REVOPS_CACHE_DIR"] = old
