"""The scripts in scripts/: paper_scale.sh end to end on a tiny generated folder dataset."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tarfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from segact.runs.folder import EPOCHS_CSV, FOLDS_CSV
from tests.report_fixtures import SIGMOID, write_run

REPO = Path(__file__).resolve().parents[1]
PAPER_SCALE = REPO / "scripts" / "paper_scale.sh"


def write_folder_dataset(root: Path, n: int = 10, size: int = 40) -> Path:
    """``n`` random RGB png images and binary png masks (a square each) in images/ + masks/."""
    rng = np.random.default_rng(0)
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    for i in range(n):
        image = rng.integers(0, 256, (size, size, 3), dtype=np.uint8)
        mask = np.zeros((size, size), np.uint8)
        y, x = rng.integers(8, size - 8, 2)
        mask[y - 6 : y + 6, x - 6 : x + 6] = 255
        Image.fromarray(image).save(root / "images" / f"img{i:02d}.png")
        Image.fromarray(mask).save(root / "masks" / f"img{i:02d}.png")
    return root


def table_rows(markdown: str) -> dict[str, list[str]]:
    """The timing table's data rows by their first cell."""
    rows = {}
    for line in markdown.splitlines():
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if line.startswith("|") and not set(cells[0]) <= set(":-") and cells[0] != "activation":
            rows[cells[0]] = cells
    return rows


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("bash") is None, reason="paper_scale.sh needs bash")
def test_paper_scale_quick(tmp_path: Path) -> None:
    data = write_folder_dataset(tmp_path / "data")
    out = tmp_path / "out"
    env = {**os.environ, "SEGACT_CACHE": str(tmp_path / "cache")}
    command = ["bash", str(PAPER_SCALE), "--quick", str(out), "--dataset-root", str(data)]
    result = subprocess.run(
        [*command, "--", "trainer.threads=1", "runtime.progress=false"],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr[-3000:]

    runs = sorted((out / "runs").rglob(FOLDS_CSV))
    assert len(runs) == 2  # sigmoid and arctan
    epoch_seconds = 0.0
    for folds_csv in runs:
        folds = pd.read_csv(folds_csv)
        assert folds[["fold", "epochs_run", "n_train", "status"]].values.tolist() == [
            [0, 1, 8, "ok"]
        ]
        assert set(folds["arch"]) == {"Unet"} and set(folds["loss"]) == {"dice"}
        seconds = pd.read_csv(folds_csv.with_name(EPOCHS_CSV))["epoch_seconds"]
        assert (seconds > 0).all()
        epoch_seconds += seconds.sum()
    activations = {pd.read_csv(path)["activation"].iloc[0] for path in runs}
    assert activations == {"sigmoid", "arctan"}

    timing = (out / "timing.md").read_text()
    assert timing in result.stdout
    wall = float(re.search(r"total wall time: ([\d.]+) s", timing).group(1))
    rows = table_rows(timing)
    assert set(rows) == {"sigmoid", "arctan", "all runs"}
    folds, epochs, per_epoch, images_per_s, train_s = (float(v) for v in rows["all runs"][3:])
    assert (folds, epochs) == (2, 2)
    assert 0 < per_epoch < wall and 0 < train_s < wall
    assert per_epoch == pytest.approx(epoch_seconds / 2, abs=0.01)
    assert images_per_s == pytest.approx(2 * 8 / epoch_seconds, abs=0.1)
    per_fold_epoch = float(re.search(r"wall time per fold-epoch: ([\d.]+) s", timing).group(1))
    assert per_fold_epoch == pytest.approx(wall / 2, abs=0.05)  # 2 fold-epochs; wall is rounded


def test_replication_progress_counts_finished_runs_and_their_time(tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(Path(__file__).parents[1] / "scripts"))
    from replication_progress import progress

    grid = tmp_path / "sigmoid_vs_arctan"
    per_fold = {fold: {"train_seconds": 360.0, "epochs_run": 10 + fold} for fold in range(5)}
    cpu_48 = {"dataset.image_size": 48, "resolved.device": "cpu"}
    for activation in ("sigmoid", "arctan"):
        write_run(grid, activation, SIGMOID, keys={"dataset": "ph2"}, overrides=per_fold,
                  settings=cpu_48)  # fmt: skip
    write_run(grid, "hardtanh", [0.1], keys={"dataset": "ph2"}, status="failed")
    # ISBI: one run at 48 px on the CPU, superseded by one at 96 px on a GPU
    write_run(grid, "sigmoid", SIGMOID, keys={"dataset": "isbi2012"}, settings=cpu_48)
    gpu_96 = {"dataset.image_size": 96, "resolved.device": "cuda"}
    write_run(grid, "sigmoid", SIGMOID, keys={"dataset": "isbi2012"}, settings=gpu_96,
              overrides=per_fold)  # fmt: skip
    table = progress(tmp_path).set_index(["grid", "dataset", "size"])
    ph2 = table.loc[("sigmoid_vs_arctan", "ph2", "48")]
    assert (ph2["device"], ph2["runs done"]) == ("cpu", "2 / 12")
    assert ph2["epochs per fold"] == "12 (10-14)"
    assert (ph2["hours spent"], ph2["hours per run"]) == pytest.approx((1.0, 0.5))
    assert ph2["hours to go"] == pytest.approx(5.0)
    isbi_48, isbi_96 = (table.loc[("sigmoid_vs_arctan", "isbi2012", s)] for s in ("48", "96"))
    assert (isbi_48["runs done"], isbi_96["runs done"]) == ("1 / 12", "1 / 12")
    assert (isbi_96["device"], isbi_96["runs left"]) == ("cuda", "11")
    assert isbi_96["hours to go"] == pytest.approx(11 * 0.5)
    assert pd.isna(isbi_48["hours to go"])  # the plan goes on at the largest size only
    assert table.loc[("paper_grid", "isbi2012", ""), "runs done"] == "0 / 63"


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("bash") is None, reason="gpu_check.sh needs bash")
def test_gpu_check_quick_measures_trains_grouped_and_copies_finished_runs(tmp_path: Path) -> None:
    """scripts/gpu_check.sh end to end without a GPU (--quick: tiny model on CPU, where the
    graphs fall back to eager): its table, the paper-scale runs with folds side by side, and
    the finished runs copied without checkpoints or weights."""
    data = write_folder_dataset(tmp_path / "data")
    out, work = tmp_path / "out", tmp_path / "work"
    env = {**os.environ, "SEGACT_CACHE": str(tmp_path / "cache")}
    command = ["bash", str(REPO / "scripts" / "gpu_check.sh"), str(out), "--quick"]
    command += ["--dataset-root", str(data), "--work", str(work)]
    result = subprocess.run(command, capture_output=True, text=True, timeout=300, env=env)
    assert result.returncode == 0, result.stderr[-3000:]

    report = (out / "gpu.md").read_text()
    for measure in (
        "bare step",
        "runner step, cuda_graphs=auto",
        "max abs diff 0 ",
        "fold-epoch, 2 folds side by side, cuda_graphs=auto",
        "fold-epoch, 2 folds side by side, cuda_graphs=off",
        "## Paper scale",
        "| all runs ",
        "finished runs packed into runs.tar.gz: 2",
    ):
        assert measure in report, measure
    assert "eager (CUDA graphs need a CUDA device" in report
    assert sorted(p.name for p in out.iterdir()) == ["gpu.md", "runs.tar.gz"]  # 2 files back
    with tarfile.open(out / "runs.tar.gz") as archive:
        archive.extractall(tmp_path / "unpacked", filter="data")
    copied = sorted((tmp_path / "unpacked").rglob(FOLDS_CSV))
    assert len(copied) == 2
    for folds_csv in copied:
        assert pd.read_csv(folds_csv)["fold"].tolist() == [0, 1]
    files = [p.name for p in (tmp_path / "unpacked").rglob("*")]
    assert not [n for n in files if n.endswith((".pt", ".safetensors")) or n == "checkpoints"]
    assert "training folds 0, 1 side by side" in result.stdout + result.stderr
