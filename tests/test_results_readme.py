"""README's "Results" block is what scripts/results_readme.py makes of the committed report CSVs:
no number in it can drift from the reports."""

from __future__ import annotations

import importlib.util
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "scripts" / "results_readme.py"


@pytest.fixture(scope="module")
def generator():
    spec = importlib.util.spec_from_file_location("results_readme", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_readme_matches_the_committed_csvs(generator):
    readme = (REPO / "README.md").read_text()
    block = readme[readme.index(generator.BEGIN) : readme.index(generator.END) + len(generator.END)]
    assert block == generator.render(REPO / "results"), (
        "README's Results block is stale: run .venv/bin/python scripts/results_readme.py"
    )


def test_a_changed_csv_changes_the_block(generator, tmp_path):
    results = tmp_path / "results"
    shutil.copytree(REPO / "results", results, ignore=shutil.ignore_patterns("runs", "*.png"))
    meta = results / "sigmoid_vs_arctan" / "meta_analysis.csv"
    frame = pd.read_csv(meta)
    frame.loc[frame["method"] == "random_dl", "estimate"] += 0.01
    frame.to_csv(meta, index=False)
    assert generator.render(results) != generator.render(REPO / "results")


@pytest.mark.slow
def test_check_mode_exits_zero_on_the_committed_readme():
    done = subprocess.run([sys.executable, str(SCRIPT), "--check"], capture_output=True)
    assert done.returncode == 0
