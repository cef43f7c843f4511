"""The report's overlays: two activations' fold-0 models on the validation images where their
masks disagree most (and a typical one), drawn into overlays.png."""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from matplotlib.figure import Figure
from omegaconf import OmegaConf

from segact.data.splits import case_folds
from segact.report import overlays
from segact.runs.models import load_ensemble
from segact.runs.results import load_results
from segact.runs.runner import load_dataset, train
from tests.data_fixtures import write_folder
from tests.helpers import TINY, compose_config

PAIR = ("sigmoid", "arctan")
N_IMAGES = 14  # 7 validation images in fold 0: 3 disagreeing + the median of the other 4


def _config(root: Path, cache: Path, activation: str):
    return compose_config(
        *(option for option in TINY if not option.startswith("dataset.")),
        "dataset=folder",
        f"activation={activation}",
        "trainer.max_epochs=2",
        "runtime.save_models=true",
        f"dataset.root={root}",
        "dataset.image_size=[24,20]",
        f"dataset.cache_dir={cache}",
        tiny=False,
    )


def _train(sweep: Path, root: Path, cache: Path, save: bool = True) -> None:
    """A sigmoid and an arctan run below ``sweep``, each with Hydra's .hydra/config.yaml."""
    for activation in PAIR:
        cfg = _config(root, cache, activation)
        cfg.runtime.save_models = save
        run = sweep / activation
        assert train(cfg, run, activation)["status"] == "ok"
        (run / ".hydra").mkdir()
        OmegaConf.save(cfg, run / ".hydra" / "config.yaml")


@pytest.fixture(scope="module")
def sweep(tmp_path_factory) -> tuple[Path, Path]:
    tmp = tmp_path_factory.mktemp("overlays")
    root = write_folder(tmp / "data", n=N_IMAGES)
    _train(tmp / "sweep", root, tmp / "cache")
    return tmp / "sweep", root


def _used(sweep_dir: Path) -> pd.DataFrame:
    return load_results([sweep_dir])[0]


def _drawn(monkeypatch) -> list[Figure]:
    """The figures overlays writes (still written to their files)."""
    figures: list[Figure] = []
    original = overlays.write_figure

    def capture(figure: Figure, path: Path, dpi: int) -> None:
        figures.append(figure)
        original(figure, path, dpi)

    monkeypatch.setattr(overlays, "write_figure", capture)
    return figures


def _expected(sweep_dir: Path, root: Path) -> tuple[list[str], list[str], dict[str, np.ndarray]]:
    """Fold 0's validation names, the 3 with most disagreement, and each mask's Dice, computed
    with the predict helpers (the evaluation's batches over all validation images)."""
    used = _used(sweep_dir)
    cfg = _config(root, sweep_dir.parent / "cache", "sigmoid")
    data = load_dataset(cfg)
    val = case_folds(data.cases, 2, cfg.trainer.seed, cfg.trainer.shuffle_folds)[0].val
    pixels = np.empty((len(val), *data.images.shape[1:]), data.images.dtype)
    data.images.read_into(val, pixels)
    truth = data.tensors()[1][val, 0].numpy() > 0
    masks = {}
    for activation in PAIR:
        ensemble = load_ensemble(sweep_dir / activation, 0, torch.device("cpu"))
        probability = ensemble.probabilities(pixels, ensemble.card["eval_batch_size"])
        row = used[(used["activation"] == activation) & (used["fold"] == 0)].iloc[0]
        masks[activation] = overlays.masks_of(probability, row["best_threshold"])
    counts = np.count_nonzero(masks["sigmoid"] != masks["arctan"], axis=(1, 2))
    names = [data.names[i] for i in val]
    order = sorted(range(len(val)), key=lambda i: (-counts[i], i))
    dice = {a: overlays.dice(m, truth) for a, m in masks.items()}
    return names, [names[i] for i in order[:3]], dice


@pytest.mark.slow
def test_the_figure_shows_the_most_disagreeing_images_and_a_typical_one(
    sweep, tmp_path, monkeypatch
):
    sweep_dir, root = sweep
    figures = _drawn(monkeypatch)
    started = time.perf_counter()
    lines = overlays.overlay_sections(_used(sweep_dir), [PAIR], tmp_path)
    print(f"overlay_sections: {time.perf_counter() - started:.2f} s")
    assert (tmp_path / "overlays.png").is_file() and len(figures) == 1
    assert lines[0] == "## Overlays" and "![overlays.png](overlays.png)" in lines
    assert any("seed 0" in line and "Fold 0" in line for line in lines)
    axes = [ax for ax in figures[0].axes if ax.get_subplotspec() is not None]
    assert axes[0].get_subplotspec().get_geometry()[:2] == (4, overlays.COLUMNS)
    assert len(axes) == 4 * overlays.COLUMNS
    names, disagreeing, dice = _expected(sweep_dir, root)
    shown = [axes[r * overlays.COLUMNS].get_title().splitlines()[-1] for r in range(4)]
    assert shown[:3] == disagreeing
    assert shown[3] in set(names) - set(disagreeing)
    rest = [i for i, n in enumerate(names) if n not in disagreeing]
    mean = {names[i]: (dice["sigmoid"][i] + dice["arctan"][i]) / 2 for i in rest}
    ranked = sorted(rest, key=lambda i: mean[names[i]])
    assert shown[3] == names[ranked[(len(ranked) - 1) // 2]]
    for r, name in enumerate(shown):
        for k, activation in enumerate(PAIR):
            title = axes[r * overlays.COLUMNS + 3 + 2 * k].get_title()
            assert f"Dice {dice[activation][names.index(name)]:.3f}" in title


def test_the_picks_are_the_most_disagreement_then_the_median_dice_of_the_rest():
    disagreement = np.array([5, 9, 0, 9, 1, 7, 3])
    mean_dice = np.array([0.9, 0.1, 0.5, 0.2, 0.7, 0.3, 0.6])
    assert overlays.pick(disagreement, mean_dice) == [1, 3, 5, 6]  # rest 0, 2, 4, 6 -> 0.6
    assert overlays.pick(np.array([1, 2]), np.array([0.5, 0.5])) == [1, 0]


def test_dice_per_image_counts_two_empty_masks_as_agreement():
    mask = np.zeros((2, 3, 3), bool)
    truth = mask.copy()
    mask[1, 0, :2] = truth[1, 0, 1:] = True
    assert overlays.dice(mask, truth).tolist() == [1.0, 0.5]


@pytest.mark.slow
def test_runs_without_saved_models_give_nothing(tmp_path, monkeypatch):
    root = write_folder(tmp_path / "data", n=4)
    _train(tmp_path / "sweep", root, tmp_path / "cache", save=False)
    figures = _drawn(monkeypatch)
    out = tmp_path / "report"
    assert overlays.overlay_sections(_used(tmp_path / "sweep"), [PAIR], out) == []
    assert not figures and not (out / "overlays.png").exists()


@pytest.mark.slow
def test_a_pair_with_only_one_side_saved_gives_nothing(sweep, tmp_path):
    sweep_dir, _ = sweep
    used = _used(sweep_dir)
    one_side = used[used["activation"] == "sigmoid"]
    assert overlays.overlay_sections(one_side, [PAIR], tmp_path) == []
    assert overlays.overlay_sections(used, [("sigmoid", "softsign")], tmp_path) == []
    assert not (tmp_path / "overlays.png").exists()


@pytest.mark.slow
def test_a_missing_data_folder_is_a_skip_note(sweep, tmp_path):
    copy = tmp_path / "sweep"
    shutil.copytree(sweep[0], copy)
    for activation in PAIR:
        path = copy / activation / ".hydra" / "config.yaml"
        cfg = OmegaConf.load(path)
        cfg.dataset.root = str(tmp_path / "gone")
        OmegaConf.save(cfg, path)
    lines = overlays.overlay_sections(_used(copy), [PAIR], tmp_path / "out")
    assert lines[0] == "## Overlays"
    notes = [line for line in lines if "skipped" in line]
    assert len(notes) == 1 and "gone" in notes[0] and "data" in notes[0], lines
    assert not (tmp_path / "out" / "overlays.png").exists()


def _block(dataset: str, n: int) -> overlays.Block:
    rng = np.random.default_rng(0)
    block = overlays.Block(dataset, "dice", 0, PAIR, (0.5, 0.4))
    for i in range(n):
        block.names.append(f"{dataset}{i}")
        block.images.append(rng.random((6, 5, 3)))
        block.truths.append(rng.random((6, 5)) > 0.5)
        block.probabilities.append((rng.random((6, 5)), rng.random((6, 5))))
        block.disagreements.append(i)
    return block


def test_each_dataset_and_loss_is_a_block_of_rows_with_a_column_per_panel():
    figure = overlays.overlay_figure([_block("a", 4), _block("b", 2)])
    axes = [ax for ax in figure.axes if ax.get_subplotspec() is not None]
    assert len(axes) == 6 * overlays.COLUMNS
    assert axes[0].get_subplotspec().get_geometry()[:2] == (6, overlays.COLUMNS)
    titles = [axes[r * overlays.COLUMNS].get_title() for r in range(6)]
    assert titles == [f"{d} · dice\n{d}{i}" for d, n in (("a", 4), ("b", 2)) for i in range(n)]
    assert axes[3].get_title().startswith("sigmoid ≥ 0.5\nDice ")
    assert axes[5].get_title().startswith("arctan ≥ 0.4\nDice ")


def test_disagreement_pixels_take_each_activations_colour():
    image = np.zeros((1, 3))
    a, b = np.array([[True, True, False]]), np.array([[True, False, True]])
    rgb = overlays.disagreement_rgb(image, (a, b), ("#ff0000", "#0000ff"))
    assert rgb[0].tolist() == [list(overlays.AGREED), [1.0, 0.0, 0.0], [0.0, 0.0, 1.0]]


@pytest.mark.slow
def test_data_changed_since_the_run_is_a_skip_note(sweep, tmp_path):
    copy, data = tmp_path / "sweep", tmp_path / "data"
    shutil.copytree(sweep[0], copy)
    shutil.copytree(sweep[1], data)
    write_folder(data, names=["img00"], seed=7)  # one image and mask redrawn
    for activation in PAIR:
        path = copy / activation / ".hydra" / "config.yaml"
        cfg = OmegaConf.load(path)
        cfg.dataset.root = str(data)
        OmegaConf.save(cfg, path)
    lines = overlays.overlay_sections(_used(copy), [PAIR], tmp_path / "out")
    assert any("skipped" in line and "changed since the run" in line for line in lines), lines
    assert not (tmp_path / "out" / "overlays.png").exists()


@pytest.mark.slow
def test_the_validation_images_are_the_cases_the_runs_splits_json_names(sweep, tmp_path):
    """The run recorded its split; without the file (a run folder from before it) the split is
    made again from the seed, to the same images; a file naming other cases decides."""
    copy = tmp_path / "sweep"
    shutil.copytree(sweep[0], copy)
    row = _used(copy).query("fold == 0").iloc[0]
    run = Path(row["run_path"])
    data, recorded = overlays.validation_data(row)
    cfg = _config(sweep[1], sweep[0].parent / "cache", "sigmoid")
    val = case_folds(data.cases, 2, cfg.trainer.seed, cfg.trainer.shuffle_folds)[0].val
    assert np.array_equal(recorded, val)
    (run / "splits.json").unlink()
    assert np.array_equal(overlays.validation_data(row)[1], val)
    others = sorted(set(data.cases.tolist()) - set(data.cases[val].tolist()))[:2]
    (run / "splits.json").write_text(json.dumps({"folds": [{"fold": 0, "held_out": others}]}))
    assert set(data.cases[overlays.validation_data(row)[1]].tolist()) == set(others)
