"""A user's own data in sweeps (issue 30, items 2, 9 and 10): two dataset folders of one name
never share a run folder, and a sweep whose runs fail exits non-zero with advice that fits."""

from __future__ import annotations

import hashlib
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from segact.runs.folder import FOLDS_CSV, SUMMARY_JSON, SWEEP_FOLDS_CSV
from tests.data_fixtures import write_folder
from tests.helpers import TINY

pytestmark = pytest.mark.slow

FOLDER = ("dataset=folder", "dataset.image_size=32", "trainer.max_epochs=1")


def segact_train(
    *overrides: str, multirun: bool = False, check: bool = True
) -> subprocess.CompletedProcess:
    """``segact-train [-m]`` at the tests' tiny size, with any dataset (TINY's synthetic size
    settings left out)."""
    tiny = [o for o in TINY if not o.startswith("dataset.")]
    command = [sys.executable, "-m", "segact.train", *(["-m"] if multirun else []), *tiny]
    done = subprocess.run([*command, *overrides], capture_output=True, text=True, timeout=600)
    if check:
        assert done.returncode == 0, done.stderr[-3000:]
    return done


def _digests(folder: Path) -> dict[str, str]:
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file() and p.suffix != ".log"
    }


def test_two_dataset_folders_of_one_name_get_two_runs(tmp_path):
    roots = [write_folder(tmp_path / side / "base", n=6, seed=i) for i, side in enumerate("AB")]
    sweep = tmp_path / "sweep"
    done = segact_train(
        *FOLDER, f"dataset.root={roots[0]},{roots[1]}", f"hydra.sweep.dir={sweep}", multirun=True
    )
    runs = sorted(p.parent for p in sweep.rglob(SUMMARY_JSON))
    assert len(runs) == 2 and all("dataset.root=base-" in p.name for p in runs)
    assert "4 fold results" in done.stderr + done.stdout
    assert len(pd.read_csv(sweep / SWEEP_FOLDS_CSV)) == 4
    # single runs: the second dataset's run leaves the first one's files as they were
    first = tmp_path / "outputs"
    segact_train(*FOLDER, f"dataset.root={roots[0]}", f"hydra.run.dir={first}/a")
    before = _digests(first)
    segact_train(*FOLDER, f"dataset.root={roots[1]}", f"hydra.run.dir={first}/b")
    assert {k: v for k, v in _digests(first).items() if k.startswith("a/")} == before


def test_a_sweep_whose_every_run_has_a_bad_setting_exits_2_and_says_fix_it(tmp_path):
    sweep = tmp_path / "sweep"
    done = segact_train(
        "trainer.lr=-1", "activation=sigmoid,arctan", f"hydra.sweep.dir={sweep}",
        multirun=True, check=False,
    )  # fmt: skip
    said = done.stdout + done.stderr
    assert done.returncode == 2, said[-3000:]
    assert "ReportError" not in said and "Traceback" not in said
    assert "2 failed run(s); fix the config key or the data it names" in said
    assert "0 fold results, 2 failed run(s)" in said
    assert "retry" not in said


def test_a_data_error_in_a_sweep_exits_2_and_no_fold_is_counted(tmp_path):
    root = write_folder(tmp_path / "data", n=6)
    (root / "masks" / "img03.png").unlink()  # an image without its mask
    sweep = tmp_path / "sweep"
    done = segact_train(
        *FOLDER, f"dataset.root={root}", "activation=sigmoid,arctan", f"hydra.sweep.dir={sweep}",
        multirun=True, check=False,
    )  # fmt: skip
    said = done.stdout + done.stderr
    assert done.returncode == 2, said[-3000:]
    assert "0 fold results, 2 failed run(s)" in said and "img03" in said
    assert "fix the config key or the data it names" in said
    failed = pd.read_csv(sweep / SWEEP_FOLDS_CSV)
    assert (failed["status"] == "failed").all() and len(failed) == 2
    assert all((p.parent / FOLDS_CSV).exists() for p in sweep.rglob(SUMMARY_JSON))
