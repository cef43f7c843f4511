"""What a report says about the runs it shows (issue 25): every setting that differs between
them visible (a column where it follows the rows, else in the table's caption), the scale of
the runs near the top, and the flagged folds' run folders cut to the parts that differ."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from segact.report import cli as report
from segact.report import tables
from segact.report.sections import short_run_dirs
from segact.runs import results
from tests.report_fixtures import ARCTAN, SIGMOID, write_mixed_sweeps, write_run


def _build(sweep: Path, out: Path) -> str:
    assert report.main([str(sweep), "--out", str(out), "--no-figures"]) == 0
    return (out / "report.md").read_text()


def _captions(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.startswith("Table: ")]


def _scale_line(text: str) -> str:
    """The Scale line, after report.md's opening sentences."""
    return next(line for line in text.splitlines() if line.startswith("**Scale**"))


def test_mixed_sweeps_name_the_input_size_and_epochs_of_each_table(tmp_path):
    text = _build(write_mixed_sweeps(tmp_path / "sweep"), tmp_path / "out")
    main, other = _captions(text)  # 48 px: the headline; 32 px: "Other input sizes"
    assert "dataset.image_size 48" in main and "max_epochs 3" in main
    assert "dataset.image_size 32" in other and "max_epochs 2" in other
    assert "trainer.max_epochs" not in main  # the same setting as max_epochs: said once
    assert "dataset.image\\_size 48" in (tmp_path / "out" / "table_dataset_toy.tex").read_text()
    scale = _scale_line(text)
    assert scale.startswith("**Scale** of what this report shows: 4 runs (20 folds)")
    for part in (
        "model Unet-resnet18",
        "input size 32 px (toy), 48 px (toy)",
        "epoch cap (max_epochs) 2, 3",
        "epochs as run 1–3 (median 2)",
        "5 folds per run",
        "seed 0",
    ):
        assert part in scale, part


def test_a_setting_that_follows_the_rows_is_a_column(tmp_path):
    """Both sweeps at 48 px: one table, whose rows (loss) each have their own epoch cap."""
    sweep = write_mixed_sweeps(tmp_path / "sweep", bce_size=48)
    text = _build(sweep, tmp_path / "out")
    section = text.split("## Table: dataset toy")[1]
    lines = section[section.index("\n|") + 1 :].split("\n\n")[0].splitlines()  # its table
    header = [cell.strip() for cell in lines[0].strip("|").split("|")]
    assert header[:3] == ["loss", "activation", "max_epochs"]
    rows = [[cell.strip() for cell in line.strip("|").split("|")][:3] for line in lines[2:]]
    assert rows == [["bce", "arctan", "2"], ["bce", "sigmoid", "2"], ["dice", "arctan", "3"],
                    ["dice", "sigmoid", "3"]]  # fmt: skip
    assert "input size 48 px;" in _scale_line(text)


def test_the_sweep_table_shows_the_settings_that_follow_its_rows(tmp_path):
    folds = results.collect_sweep(write_mixed_sweeps(tmp_path / "sweep"))
    table = tables.dice_table(folds)
    assert list(table.columns[:4]) == ["loss", "activation", "max_epochs", "dataset.image_size"]
    pairs = table[["loss", "dataset.image_size"]].drop_duplicates().astype(str)
    assert pairs.values.tolist() == [["bce", "32"], ["dice", "48"]]


def test_hidden_settings_leave_out_what_only_follows_its_name():
    folds = pd.DataFrame(
        {
            "dataset": ["a", "a", "b", "b"],
            "loss": ["dice", "bce", "dice", "bce"],
            "activation": "sigmoid",
            "max_epochs": [3, 2, 3, 2],
            "trainer.max_epochs": [3, 2, 3, 2],
            "dataset.root": ["/a", "/a", "/b", "/b"],
            "dataset.image_size": [48, 32, 48, 32],
            "loss.smooth": [0.0, None, 0.0, None],
        }
    )
    hidden = tables.hidden_settings(folds, ["dataset", "loss", "activation"])
    assert hidden == ["max_epochs", "dataset.image_size"]
    columns, words = tables.table_settings(folds, ["loss", "activation"], folds)
    assert columns == ["max_epochs", "dataset.image_size"] and words == ""
    columns, words = tables.table_settings(folds, ["dataset", "activation"], folds)
    assert columns == []
    assert words == (
        "Settings that differ between the report's runs, here: loss bce (2 folds), dice (2 "
        "folds); max_epochs 2 (loss bce), 3 (loss dice); dataset.image_size 32 (loss bce), 48 "
        "(loss dice)"
    )


def test_run_folders_are_cut_to_the_parts_that_differ():
    folders = [
        "isbi2012/Unet-resnet18/sigmoid1-arctan-bce-none/seed1/dataset.image_size=96,trainer=paper",
        "ph2/Unet-resnet18/sigmoid1-sigmoid-dice-none/seed0/dataset.image_size=48,trainer=paper",
    ]
    short, pattern = short_run_dirs(folders)
    assert pattern == "*/Unet-resnet18/*/*/*,trainer=paper"
    assert short == [
        "isbi2012/sigmoid1-arctan-bce-none/seed1/dataset.image_size=96",
        "ph2/sigmoid1-sigmoid-dice-none/seed0/dataset.image_size=48",
    ]
    for folder, parts in zip(folders, short, strict=True):  # the pattern gives each one back
        filled = pattern
        for part in parts.split("/"):
            filled = filled.replace("*", part, 1)
        assert filled == folder
    assert short_run_dirs(["a/b", "a/b/c"]) == (["a/b", "a/b/c"], "")  # depths differ: whole


def test_the_flagged_table_prints_short_run_folders(tmp_path):
    sweep = tmp_path / "sweep"
    for activation, dice in (("sigmoid", SIGMOID), ("arctan", ARCTAN)):
        folder = f"toy/Unet-resnet18/sigmoid1-{activation}-dice-none/seed0/dataset.image_size=48"
        flags = {fold: {"hit_max_epochs": True} for fold in range(len(dice))}
        write_run(sweep, activation, dice, folder=folder, overrides=flags)
    out = tmp_path / "out"
    flagged = _build(sweep, out).split("## Flagged folds")[1]
    assert "`toy/Unet-resnet18/*/seed0/dataset.image_size=48`" in flagged
    table = [line for line in flagged.splitlines() if line.startswith("| toy")]
    assert len(table) == 10 and all("Unet-resnet18" not in line for line in table)
    assert all("| sigmoid1-" in line for line in table)
    assert pd.read_csv(out / "flagged.csv")["run_dir"].iloc[0].startswith("toy/Unet-resnet18/")
