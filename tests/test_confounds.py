"""segact.report.confounds on hand-made epochs and folds: the Dice a fold would report at a
budget, pairs at matched budgets against scipy, and device replicates split and compared."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import stats as scipy_stats

from segact.report import confounds
from segact.report.stats import Comparison
from segact.runs.folder import RunFolder
from segact.runs.identity import CHOICES
from segact.runs.results import load_epochs, load_results
from tests.report_fixtures import ARCTAN, SIGMOID, write_run

BASE = {c: "x" for c in CHOICES} | {"dataset": "toy", "loss": "dice"}
PAIR = Comparison("activation", "sigmoid", "arctan")


def _curve(activation: str, mean: list[float], best: list[float], *, seed=0, fold=0, **extra):
    """epochs.csv rows of one run x fold (epochs 1..n), with its keys and run_path."""
    rows = {
        "epoch": np.arange(1, len(mean) + 1),
        "val_threshold_averaged_dice": mean,
        "val_best_dice": best,
    }
    run = f"/runs/{activation}-{seed}-{extra}"
    keys = {**BASE, "activation": activation, "seed": seed, "fold": fold, "run_path": run, **extra}
    return pd.DataFrame(rows).assign(**keys)


def _rising(activation: str, fold: int, epochs: int, level: float) -> pd.DataFrame:
    """A fold whose mean Dice rises every epoch; best Dice = level + epoch / 1000."""
    mean = list(np.linspace(0.1, 0.9, epochs))
    best = [level + e / 1000 for e in range(1, epochs + 1)]
    return _curve(activation, mean, best, fold=fold)


def test_budget_reads_the_best_dice_of_the_best_mean_dice_epoch():
    # epoch 3 has the highest best Dice but not the highest mean Dice; epoch 4 ties epoch 2's
    # mean Dice (the earliest wins), epoch 5 is best.
    a = _curve("sigmoid", [0.1, 0.5, 0.3, 0.5, 0.7], [0.2, 0.6, 0.9, 0.65, 0.8])
    b = _curve("arctan", [0.1, 0.2, 0.3, 0.4, 0.5], [0.1, 0.2, 0.3, 0.4, 0.5])
    values = confounds.budget_values(pd.concat([a, b]), PAIR, ["dataset"], (1, 3, 4))
    by_budget = values.set_index("budget")
    assert by_budget.loc["1", "value_a"] == 0.2
    assert by_budget.loc["3", "value_a"] == 0.6
    assert by_budget.loc["4", ["value_a", "epoch_a"]].tolist() == [0.6, 2]
    assert by_budget.loc["selected", ["value_a", "epoch_a"]].tolist() == [0.8, 5]
    assert by_budget.loc["selected", "difference"] == pytest.approx(0.8 - 0.5)


def test_a_pair_is_read_at_a_budget_only_where_both_runs_reached_it():
    a = _curve("sigmoid", list(np.linspace(0.1, 0.9, 30)), list(np.linspace(0.2, 0.8, 30)))
    b = _curve("arctan", list(np.linspace(0.1, 0.9, 15)), list(np.linspace(0.3, 0.7, 15)))
    values = confounds.budget_values(pd.concat([a, b]), PAIR, ["dataset"], (10, 20))
    assert values["budget"].tolist() == ["10", "last common", "selected"]
    common = values.set_index("budget").loc["last common"]
    assert common[["budget_epoch", "epoch_a", "epoch_b"]].tolist() == [15, 15, 15]
    assert common["value_a"] == pytest.approx(np.linspace(0.2, 0.8, 30)[14])
    assert common["value_b"] == pytest.approx(0.7)


def test_matched_summary_matches_scipy():
    levels = [0.70, 0.72, 0.68, 0.75, 0.71]
    shifts = [0.01, -0.005, 0.02, 0.015, 0.03]
    frames = []
    for fold, (level, shift) in enumerate(zip(levels, shifts, strict=True)):
        frames += [_rising("sigmoid", fold, 12, level + shift), _rising("arctan", fold, 30, level)]
    table = confounds.matched_epochs(pd.concat(frames), PAIR, ["dataset"], (10,))
    assert table["budget"].tolist() == ["10", "last common", "selected"]
    common = table.set_index("budget").loc["last common"]
    d = np.array(shifts)  # both read at epoch 12: the shift alone
    assert common["n"] == 5
    assert common["mean_difference"] == pytest.approx(d.mean())
    low, high = scipy_stats.t.interval(0.95, df=4, loc=d.mean(), scale=scipy_stats.sem(d))
    assert (common["ci_low"], common["ci_high"]) == pytest.approx((low, high))
    a = np.array(levels) + d + 0.012
    b = np.array(levels) + 0.012
    assert common["t_test_p"] == pytest.approx(scipy_stats.ttest_rel(a, b).pvalue)
    selected = table.set_index("budget").loc["selected"]
    assert selected["mean_difference"] == pytest.approx(d.mean() + 0.012 - 0.030)
    assert selected[["epoch_a_median", "epoch_b_median"]].tolist() == [12, 30]


def _folds_of(epochs: pd.DataFrame) -> pd.DataFrame:
    """folds.csv rows of the runs in ``epochs``: status and the selected epoch."""
    last = epochs.groupby(["run_path", "fold"]).agg(epochs_run=("epoch", "max")).reset_index()
    keys = epochs.drop(
        columns=["epoch", "val_threshold_averaged_dice", "val_best_dice"]
    ).drop_duplicates()
    return keys.merge(last).assign(status="ok", epoch_selected=lambda f: f["epochs_run"])


def test_stopping_sections_say_whether_the_difference_survives(tmp_path):
    # arctan trains 30 epochs, sigmoid 12: arctan is ahead as reported, level at epoch 12.
    noise = [0.001, -0.002, 0.0015, 0.0005, -0.001]
    frames = [_rising("sigmoid", fold, 12, 0.7 + n) for fold, n in enumerate(noise)]
    frames += [_rising("arctan", fold, 30, 0.7) for fold in range(5)]
    epochs = pd.concat(frames, ignore_index=True)
    folds = _folds_of(epochs)
    pairs = [PAIR]
    lines = confounds.stopping_sections(folds, epochs, pairs, ["loss", "activation"], tmp_path)
    text = "\n".join(lines)
    assert lines[0] == "## The stopping confound"
    assert "does not survive" in text
    matched = pd.read_csv(tmp_path / "matched_epochs.csv")
    assert set(matched["budget"]) == {"10", "last common", "selected"}
    selected = pd.read_csv(tmp_path / "selected_epochs.csv").set_index("activation")
    assert selected.loc["arctan", "epoch_selected_median"] == 30
    assert selected.loc["sigmoid", ["n_folds", "epochs_run_max"]].tolist() == [5, 12]


def test_a_difference_present_at_every_budget_survives():
    noise = [0.001, -0.002, 0.0015, 0.0005, -0.001]
    frames = [_rising("sigmoid", fold, 12, 0.75 + n) for fold, n in enumerate(noise)]
    frames += [_rising("arctan", fold, 30, 0.7) for fold in range(5)]
    matched = confounds.matched_epochs(pd.concat(frames), PAIR, ["dataset"])
    rows = matched.set_index("budget")
    assert confounds.survival(rows.loc["selected"], rows.loc["last common"]) == (
        "survives at matched budgets"
    )
    assert confounds.survival(rows.loc["selected"], None) == "no common budget"


def test_sections_without_epochs_or_replicates_are_empty(tmp_path):
    folds = pd.DataFrame([{**BASE, "activation": "sigmoid", "seed": 0, "fold": 0, "status": "ok"}])
    assert confounds.stopping_sections(folds, pd.DataFrame(), [PAIR], [], tmp_path) == []
    assert confounds.device_sections(folds, folds.iloc[:0], pd.DataFrame(), tmp_path) == []
    assert list(tmp_path.iterdir()) == []
    notes: list[str] = []
    kept, replicates = confounds.split_device_replicates(folds, notes)
    assert kept is folds and replicates.empty and notes == []


def _fold(activation, seed, fold, device, best, threads=None, **extra):
    return {
        **BASE,
        "activation": activation,
        "seed": seed,
        "fold": fold,
        "status": "ok",
        "resolved.device": device,
        "resolved.threads": threads,
        "best_dice": best,
        "threshold_averaged_dice": best - 0.1,
        **extra,
    }


def _two_devices() -> pd.DataFrame:
    """cpu: sigmoid and arctan, seeds 0-1, folds 0-1; cuda: the sigmoid seed 0 folds again
    (and one configuration only it ran, which stays)."""
    rows = [
        _fold(
            act, seed, fold, "cpu", 0.80 + 0.01 * fold + 0.02 * seed - 0.01 * (act == "arctan"), 1
        )
        for act in ("sigmoid", "arctan")
        for seed in (0, 1)
        for fold in (0, 1)
    ]
    rows += [_fold("sigmoid", 0, 0, "cuda", 0.803), _fold("sigmoid", 0, 1, "cuda", 0.805)]
    rows += [_fold("sigmoid", 0, 0, "cuda", 0.5, **{"trainer.lr": "0.1"})]
    return pd.DataFrame(rows).assign(**{"trainer.lr": lambda f: f["trainer.lr"].fillna("0.001")})


def test_split_keeps_the_majority_device_and_moves_the_other():
    folds = _two_devices()
    notes: list[str] = []
    kept, replicates = confounds.split_device_replicates(folds, notes)
    assert len(kept) == 9 and len(replicates) == 2
    assert set(replicates["resolved.device"]) == {"cuda"}
    assert replicates["best_dice"].tolist() == [0.803, 0.805]
    assert (kept["resolved.device"] == "cuda").sum() == 1  # the run only cuda has
    assert notes == [
        "2 fold(s) of 1 configuration(s) also ran on cuda: kept the cpu (1 thread) ones for "
        "every table and statistic; the others are compared in 'Device as a replicate'"
    ]


def test_the_majority_device_is_counted_per_dataset():
    """A grid that ran one dataset on the GPU keeps its GPU pairs there, although the frame as
    a whole ran mostly on the CPU (ISBI 2012 at 96 px in the sigmoid_vs_arctan grid)."""
    cpu_set = [_fold(act, 0, f, "cpu", 0.8, 1) for act in ("sigmoid", "arctan") for f in range(4)]
    gpu_set = [
        _fold(act, 0, f, "cuda", 0.9, dataset="isbi")
        for act in ("sigmoid", "arctan")
        for f in (0, 1)
    ]
    again_on_cpu = [_fold("sigmoid", 0, 0, "cpu", 0.91, 1, dataset="isbi")]
    folds = pd.DataFrame(cpu_set + gpu_set + again_on_cpu)
    kept, replicates = confounds.split_device_replicates(folds, [])
    assert replicates["resolved.device"].tolist() == ["cpu"]
    assert set(kept.loc[kept["dataset"] == "isbi", "resolved.device"]) == {"cuda"}


def test_split_ties_go_to_the_first_device_by_name():
    folds = pd.DataFrame([_fold("sigmoid", 0, 0, "cuda", 0.8), _fold("sigmoid", 0, 0, "cpu", 0.7)])
    kept, replicates = confounds.split_device_replicates(folds, [])
    assert kept["resolved.device"].tolist() == ["cpu"]
    assert replicates["resolved.device"].tolist() == ["cuda"]


def test_device_differences_by_hand():
    kept, replicates = confounds.split_device_replicates(_two_devices(), [])
    table = confounds.device_differences(kept, replicates).set_index("metric")
    # cuda - cpu: 0.803 - 0.80 and 0.805 - 0.81
    d = np.array([0.003, -0.005])
    row = table.loc["best_dice"]
    assert row[["activation", "kept_device", "other_device"]].tolist() == [
        "sigmoid",
        "cpu (1 thread)",
        "cuda",
    ]
    assert row["n"] == 2
    assert row["mean_difference"] == pytest.approx(d.mean())
    assert row["mean_abs_difference"] == pytest.approx(np.abs(d).mean())
    assert row["max_abs_difference"] == pytest.approx(0.005)


def test_device_sections_put_the_device_spread_next_to_the_effect(tmp_path):
    folds = _two_devices()
    again = [_fold("arctan", 0, f, "cuda", 0.8, **{"trainer.lr": "0.001"}) for f in (0, 1)]
    folds = pd.concat([folds, pd.DataFrame(again)])
    kept, replicates = confounds.split_device_replicates(folds.reset_index(drop=True), [])
    summary = pd.DataFrame(
        [
            {
                "factor": "activation",
                "a": "sigmoid",
                "b": "arctan",
                "dataset": "toy",
                "loss": "dice",
                "metric": "best_dice",
                "n": 4,
                "mean_difference": 0.01,
                "ci_low": 0.005,
                "ci_high": 0.015,
            }
        ]
    )
    lines = confounds.device_sections(kept, replicates, summary, tmp_path)
    text = "\n".join(lines)
    assert lines[0] == "## Device as a replicate"
    assert "the devices (cuda vs cpu (1 thread)) differ by" in text
    assert "the activation sigmoid - arctan effect is +0.0100 [+0.0050, +0.0150] (n = 4)" in text
    effects = pd.read_csv(tmp_path / "device_effects.csv").set_index("device")
    # seed 0: cpu sigmoid - arctan = 0.01 in both folds; cuda: 0.003, 0.005
    assert effects.loc["cpu (1 thread)", "mean_difference"] == pytest.approx(0.01)
    assert effects.loc["cuda", "mean_difference"] == pytest.approx(0.004)
    d = np.array([0.003, 0.005])
    low, high = scipy_stats.t.interval(0.95, df=1, loc=d.mean(), scale=scipy_stats.sem(d))
    assert effects.loc["cuda", ["ci_low", "ci_high"]].tolist() == pytest.approx([low, high])
    assert (tmp_path / "device_differences.csv").exists()


def test_device_sections_without_a_paired_summary(tmp_path):
    kept, replicates = confounds.split_device_replicates(_two_devices(), [])
    lines = confounds.device_sections(kept, replicates, pd.DataFrame(), tmp_path)
    assert "differ by 0.0040 per fold on average" in "\n".join(lines)
    assert pd.read_csv(tmp_path / "device_differences.csv")["metric"].tolist() == [
        "best_dice",
        "threshold_averaged_dice",
    ]


def test_run_folders_through_the_loader(tmp_path):
    """Runs written as the runner writes them: sigmoid stops at 12 epochs, arctan at 30; the
    selected values are each fold's recorded best Dice."""
    for activation, dice, epochs in (("sigmoid", SIGMOID, 12), ("arctan", ARCTAN, 30)):
        run = write_run(tmp_path / "sweep", activation, dice)
        curves = [
            pd.DataFrame(
                {
                    "fold": fold,
                    "epoch": range(1, epochs + 1),
                    "val_threshold_averaged_dice": np.linspace(0.1, 0.5, epochs),
                    "val_best_dice": np.linspace(0.1, value, epochs),
                }
            )
            for fold, value in enumerate(dice)
        ]
        RunFolder(run).write_epochs(pd.concat(curves, ignore_index=True))
    folds, _ = load_results([tmp_path / "sweep"])
    epochs = load_epochs(folds)
    out = tmp_path / "report"
    lines = confounds.stopping_sections(folds, epochs, [PAIR], [], out)
    assert lines[0] == "## The stopping confound"
    matched = pd.read_csv(out / "matched_epochs.csv").set_index("budget")
    d = np.array(SIGMOID) - np.array(ARCTAN)
    assert matched.loc["selected", "mean_difference"] == pytest.approx(d.mean())
    assert matched.loc["last common", ["n", "budget_epoch_median"]].tolist() == [5, 12]
    assert "20" not in matched.index
