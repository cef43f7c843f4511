"""A single run refused for bad config or data leaves no run folder and says why once; a run
folder's name shows dataset.root by its last name only (issue 25, points 7 and 8)."""

from __future__ import annotations

import hashlib
import subprocess
import sys
from pathlib import Path

import pytest

from segact.runs.identity import folder_suffix
from tests.data_fixtures import write_folder
from tests.helpers import TINY

FAST = [o for o in TINY if not o.startswith("dataset.")] + ["trainer.max_epochs=1"]


def test_folder_name_shows_the_dataset_root_by_its_last_name_and_a_hash_of_its_path():
    overrides = ["dataset=folder", "dataset.root=/work/some/where/datasets/ph2", "trainer.lr=0.1"]
    digest = hashlib.sha256(b"/work/some/where/datasets/ph2").hexdigest()[:8]
    assert folder_suffix(overrides) == f"dataset.root=ph2-{digest},trainer.lr=0.1"
    assert folder_suffix(["dataset.root='/data/my ph2/'"]).startswith("dataset.root=my_ph2-")
    # two dataset folders of one name never share a run folder
    assert folder_suffix(["dataset.root=/A/base"]) != folder_suffix(["dataset.root=/B/base"])
    assert (
        folder_suffix(["paths.datasets=/data", "dataset.cache_dir=/c", "dataset.cache=false"]) == ""
    )


def _segact_train(cwd: Path, *argv: str) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "segact.train", *FAST, *argv]
    return subprocess.run(command, cwd=cwd, capture_output=True, text=True, timeout=600)


def _refused_once(result: subprocess.CompletedProcess, message: str) -> None:
    assert result.returncode == 2, result.stderr[-2000:]
    errors = [line for line in result.stderr.splitlines() if line.startswith("segact: error:")]
    assert len(errors) == 1 and message in errors[0]
    assert message not in result.stdout and "Traceback" not in result.stderr


@pytest.mark.slow
def test_a_refused_run_leaves_no_folder_and_the_right_pattern_trains(tmp_path):
    data = write_folder(tmp_path / "data", n=4, image_suffix=".jpg")
    for mask in (data / "masks").iterdir():
        mask.rename(mask.with_name(f"{mask.stem}_mask.png"))
    work = tmp_path / "work"
    work.mkdir()
    folder = ("dataset=folder", f"dataset.root={data}", "dataset.image_size=16")
    result = _segact_train(work, *folder)
    _refused_once(result, "set \"dataset.mask_pattern='{stem}_mask'\"")
    assert f"no image of {data / 'images'} pairs with a mask of {data / 'masks'}" in result.stderr
    assert list(work.iterdir()) == []  # no outputs/ folder

    pattern = "dataset.mask_pattern='{stem}_mask'"
    _refused_once(_segact_train(work, *folder, pattern, "trainer.folds=5"), "only 4 cases")
    assert list(work.iterdir()) == []  # refused after the config was composed: removed again

    result = _segact_train(work, *folder, pattern)
    assert result.returncode == 0, result.stderr[-2000:]
    (summary,) = (work / "outputs").rglob("summary.json")
    assert summary.parent.name.startswith("dataset.image_size=16,dataset.root=data-")
    assert str(tmp_path).replace("/", "_") not in str(summary) and "mask_pattern" not in str(
        summary
    )
