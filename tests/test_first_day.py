"""A user's first day (issue 33, points 1-3 and 8): a download's own folder names get the
overrides that read them, a log file holds no progress bar, time estimates hold after the first
fold and the CPU warning never suggests the size a run has already, the non-default settings
open a run, segact-predict says what it applies, an unquoted override gets its quoted form, and
the citation is there."""

from __future__ import annotations

import logging
import re
import shlex
import subprocess
import sys
from datetime import datetime
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
import yaml
from hydra.core.override_parser.overrides_parser import OverridesParser
from PIL import Image

from segact.data.folder import load_folder
from segact.data.pairs import command_line_override
from segact.errors import DatasetError
from segact.predict import main as predict_main
from segact.runs import monitor
from segact.runs.monitor import Monitor, Pace, RunPlan
from segact.train import check_overrides
from tests.data_fixtures import write_folder
from tests.helpers import TINY, compose_config

REPO = Path(__file__).resolve().parents[1]
LAYOUTS = ("Kvasir-SEG", "CVC-ClinicDB", "ISIC 2018", "DRIVE", "_manual1.gif", "PH2", "Task0X")
LOG_LINE = re.compile(r"^\[(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3})\]\[segact\]\[INFO\] - (.*)$")


def _load(root: Path, **kwargs: str) -> int:
    return len(load_folder(str(root), image_size=16, cache=False, **kwargs))


# --- 1. layouts ----------------------------------------------------------------------------------


def test_a_download_layout_gets_the_overrides_that_read_it(tmp_path):
    root = write_folder(tmp_path / "CVC-ClinicDB", n=4)
    (root / "images").rename(root / "Original")
    (root / "masks").rename(root / "Ground Truth")
    with pytest.raises(DatasetError) as error:
        _load(root)
    message = str(error.value)
    assert message.startswith(f"{root / 'images'} is missing")
    assert "has the folders Ground Truth, Original" in message
    assert message.endswith('add dataset.images_dir=Original "dataset.masks_dir=Ground Truth"')
    assert _load(root, images_dir="Original", masks_dir="Ground Truth") == 4  # they do read it


def test_several_likely_folders_are_one_of_and_unknown_names_get_the_keys(tmp_path):
    drive = tmp_path / "DRIVE"
    for folder in ("training/images", "training/1st_manual", "training/mask", "test/images"):
        (drive / folder).mkdir(parents=True)
    with pytest.raises(DatasetError) as error:
        _load(drive)
    message = str(error.value)
    assert "has the folders test, training" in message
    assert "the images in one of test/images, training/images" in message
    assert "the masks in one of training/1st_manual, training/mask" in message
    (tmp_path / "other" / "pictures").mkdir(parents=True)
    with pytest.raises(DatasetError, match=r"set dataset.images_dir and dataset.masks_dir to"):
        _load(tmp_path / "other")
    write_folder(tmp_path / "half", n=2)
    (tmp_path / "half" / "masks").rename(tmp_path / "half" / "labels")
    with pytest.raises(DatasetError, match=r"masks is missing.*add dataset.masks_dir=labels$"):
        _load(tmp_path / "half")


@pytest.mark.parametrize(
    "value", ["Ground Truth", "{stem}_mask", "a,b", "it's", "a$b", "tick`", "a\\b", "end\\", 'q"']
)
def test_a_suggested_override_reaches_hydra_through_the_shell_unchanged(value):
    typed = command_line_override("dataset.masks_dir", value)
    word = subprocess.run(["bash", "-c", f"printf %s {typed}"], capture_output=True, text=True)
    override = OverridesParser.create().parse_override(word.stdout)
    assert (override.key_or_group, override.value()) == ("dataset.masks_dir", value)


def _documented_overrides() -> list[list[str]]:
    """The overrides of each row of docs/layouts.md's table (its last cell, from dataset=)."""
    rows = []
    for line in (REPO / "docs" / "layouts.md").read_text().splitlines():
        cells = line.split(" | ")
        if line.startswith("| ") and len(cells) == 3 and "`dataset=" in cells[2]:
            command = cells[2][cells[2].index("`dataset=") + 1 :]
            rows.append(shlex.split(command[: command.index("`")]))
    return rows


def test_the_layouts_doc_and_readme_name_the_keys_and_parse():
    layouts = (REPO / "docs" / "layouts.md").read_text()
    assert all(name in layouts for name in LAYOUTS)
    rows = _documented_overrides()
    assert len(rows) == 6
    for row in rows:
        OverridesParser.create().parse_overrides(row)  # each as the shell hands it to Hydra
    readme = (REPO / "README.md").read_text()
    quick_start = readme[readme.index("## Quick start") : readme.index("## Reading the report")]
    assert "`dataset.images_dir`" in quick_start and "`dataset.masks_dir`" in quick_start
    assert "(docs/layouts.md)" in quick_start


@pytest.mark.slow
def test_every_documented_layout_names_existing_keys():
    for row in _documented_overrides():
        check_overrides([*row, "dataset.root=/nowhere"])  # exit 2 on a key that does not exist


# --- 8. an override Hydra cannot read --------------------------------------------------------


def test_an_unquoted_override_gets_the_quoted_form_that_works(capsys):
    with pytest.raises(SystemExit) as stopped:
        check_overrides(["dataset=folder", "dataset.mask_pattern={stem}_mask"])
    assert stopped.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert err == (
        "segact: error: cannot read 'dataset.mask_pattern={stem}_mask' (no viable alternative at "
        """input '{stem}'): quote its value, "dataset.mask_pattern='{stem}_mask'"\n"""
    )


# --- 3. estimates and the CPU warning -----------------------------------------------------------


def _plan(**changes) -> RunPlan:
    plan = {"folds": 2, "max_epochs": 4, "patience": 5, "cpu": True, "shape": "s"}
    return RunPlan(**{"big_images": False, **plan, **changes})


def _row(fold: int, epoch: int, seconds: float) -> dict:
    return {
        "fold": fold,
        "epoch": epoch,
        "train_loss": 0.5,
        "lr": 1e-3,
        "val_best_dice": 0.7,
        "val_best_threshold": 0.45,
        "val_threshold_averaged_dice": 0.5,
        "epoch_seconds": seconds,
    }


def _estimates(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if "likely about" in r.getMessage()]


def test_the_estimate_is_the_median_epoch_and_a_sweep_run_starts_with_it(caplog):
    pace = Pace()
    first = Monitor(_plan(), pace=pace)
    with caplog.at_level(logging.INFO, logger="segact"):
        for epoch, seconds in enumerate([40.0, 10.0, 10.0, 10.0], start=1):  # a slow start
            first(_row(0, epoch, seconds))
        first.fold_finished(0, 4)
        first(_row(1, 1, 12.0))
        Monitor(_plan(), pace=pace).announce()  # the next run of the sweep, of the same kind
    # fold 1: the median of 40, 10, 10, 10, 12 is 10 s: 3 epochs left, about 30 s
    assert "up to 4 epochs each at 10.0 s), likely about 30 s" in _estimates(caplog)[1]
    assert _estimates(caplog)[2].startswith("this run: likely about 80 s")  # 2 folds x 4 x 10 s
    Monitor(_plan(), pace=Pace()).announce()  # nothing known of its kind: nothing said
    assert len(_estimates(caplog)) == 3


def _plan_of(size: int, *overrides: str) -> RunPlan:
    cfg = compose_config(*overrides, f"dataset.image_size={size}", tiny=False)
    records = SimpleNamespace(load=lambda fold: None)
    data = SimpleNamespace(images=np.zeros((1, 3, size, size), np.uint8))
    return RunPlan.of(cfg, records, data, cpu=True)  # type: ignore[arg-type]


def test_the_cpu_warning_never_suggests_the_size_a_run_has(caplog, monkeypatch):
    assert not _plan_of(48, "model=tiny").above_quick_look
    assert not _plan_of(32, "model=tiny").above_quick_look
    assert _plan_of(64, "model=tiny").above_quick_look
    assert _plan_of(48, "model=unet").above_quick_look
    assert _plan_of(48, "model=tiny", "model.encoder=resnet34").above_quick_look
    for above in (False, True):
        monkeypatch.setattr(monitor, "WARNED", set())
        with caplog.at_level(logging.INFO, logger="segact"):
            Monitor(_plan(above_quick_look=above))(_row(0, 1, seconds=3600.0))  # hours long
        warned = "try model=tiny dataset.image_size=48" in caplog.text
        assert warned is above


# --- 2, 3 and 8 on a real run: a log file, the estimates, the settings, segact-predict ---------


@pytest.fixture(scope="module")
def logged(tmp_path_factory) -> tuple[Path, str]:
    """A 3-fold run (progress bars on, the default) whose stdout and stderr go to one file, as
    in ``segact-train ... > run.log 2>&1``; its run folder and the file's text."""
    tmp = tmp_path_factory.mktemp("first_day")
    shown = [o for o in TINY if not o.startswith(("runtime.progress", "runtime.save_models"))]
    overrides = [*shown, "dataset.n_images=24", "trainer.folds=3", "trainer.max_epochs=4"]
    command = [sys.executable, "-m", "segact.train", *overrides]
    with open(tmp / "run.log", "w") as log_file:
        done = subprocess.run(command, stdout=log_file, stderr=subprocess.STDOUT, cwd=tmp)
    text = (tmp / "run.log").read_text()
    assert done.returncode == 0, text[-3000:]
    [summary] = (tmp / "outputs").rglob("summary.json")
    return summary.parent, text


@pytest.mark.slow
def test_a_log_file_holds_no_progress_bar(logged):
    run, text = logged
    assert "\r" not in text
    assert len(re.findall(r"fold \d epoch \d/4: loss", text)) == 12  # every epoch's line
    assert "\r" not in (run / "train.log").read_text()
    assert "fold 2 epoch 4/4" in (run / "train.log").read_text()


def _timed(text: str) -> list[tuple[datetime, str]]:
    found = [LOG_LINE.match(line) for line in text.splitlines()]
    return [(datetime.strptime(m[1], "%Y-%m-%d %H:%M:%S,%f"), m[2]) for m in found if m]


@pytest.mark.slow
def test_the_estimates_after_the_first_fold_are_within_a_factor_of_two(logged):
    lines = _timed(logged[1])
    end = lines[-1][0]  # the run's Dice table, logged once it has finished
    estimates = [(t, m) for t, m in lines if m.startswith("time left for this run")]
    assert len(estimates) == 3  # once per fold
    for when, message in estimates[1:]:  # after the first fold
        likely = float(re.search(r"likely about ([\d.]+) s", message)[1])
        actual = (end - when).total_seconds()
        assert actual / 2 <= likely <= actual * 2, (message, actual)


@pytest.mark.slow
def test_the_settings_other_than_the_defaults_open_the_run(logged):
    text = logged[1]
    block = text[text.index("settings other than the defaults:") : text.index("fold 0 epoch 1/")]
    shown = ["model=tiny (default unet)", "trainer.folds=3 (default 5)"]
    shown += ["dataset.image_size=32 (default 64)", "trainer.max_epochs=4 (default 30)"]
    assert all(f"\n  {line}\n" in block for line in shown)
    assert "activation=" not in block and "runtime.progress" not in block  # the defaults


@pytest.mark.slow
def test_segact_predict_says_which_folds_and_threshold_it_applies(logged, tmp_path, capsys):
    run = logged[0]
    image = tmp_path / "in" / "a.png"
    image.parent.mkdir()
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (32, 32, 3), np.uint8)).save(image)
    thresholds = pd.read_csv(run / "folds.csv").sort_values("fold")["best_threshold"].tolist()
    predict_main([str(run), str(image), "--out", str(tmp_path / "all"), "--no-progress"])
    own = ", ".join(f"{t:.2f}" for t in thresholds)
    assert capsys.readouterr().out.splitlines()[0] == (
        f"segact-predict: applying the models of folds 0, 1, 2 (probabilities averaged) at "
        f"threshold {np.mean(thresholds):.4g} (the mean of the folds' thresholds {own})"
    )
    predict_main([str(run), str(image), "--out", str(tmp_path / "one"), "--fold", "1",
                  "--threshold", "0.3", "--no-progress"])  # fmt: skip
    assert capsys.readouterr().out.startswith(
        "segact-predict: applying fold 1's model at threshold 0.3 (--threshold)\n"
    )


# --- 8. how to cite --------------------------------------------------------------------------


def test_the_tool_and_the_paper_can_be_cited():
    citation = yaml.safe_load((REPO / "CITATION.cff").read_text())
    assert citation["cff-version"] == "1.2.0" and citation["type"] == "software"
    assert citation["title"].startswith("segact") and citation["authors"]
    paper = citation["references"][0]
    assert [a["family-names"] for a in paper["authors"]] == [
        "Nieradzik", "Scheuermann", "Saur", "Gillmann"
    ]  # fmt: skip
    assert paper["year"] == 2021 and paper["identifiers"][0]["value"] == "arXiv:2109.00903"
    readme = (REPO / "README.md").read_text()
    cite = readme[readme.index("## How to cite") :]
    assert "arXiv:2109.00903" in cite and "CITATION.cff" in cite
    assert "Effect of the\n> output activation function" in cite
