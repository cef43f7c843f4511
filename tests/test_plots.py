"""The figures' rules on hand-built frames (data, not pixels): one colour per activation in every
figure, per-epoch means only where at least half of the folds are alive, gradient norms in log
space with zeros at a floor, reliability bins with their pixel counts, forest plots, and one
legend per figure outside its axes."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.colors import to_hex
from matplotlib.figure import Figure

from segact.report import plots

NAMED = ["sigmoid", "arctan", "normal_cdf", "softsign", "inv_sqrt", "hardtanh", "linear"]


def _thresholds(activations: list[str], losses: tuple[str, ...] = ("dice",)) -> pd.DataFrame:
    """Two folds per activation and loss, three thresholds, counts falling with the threshold."""
    rows = []
    for i, activation in enumerate(activations):
        for loss in losses:
            for fold in (0, 1):
                for t, tp, fp in ((0.0, 50, 50), (0.5, 40, 10), (1.0, 5, 0)):
                    dice = 2 * tp / (2 * tp + fp + (50 - tp))
                    rows.append(
                        {
                            "run_path": f"{activation}-{loss}",
                            "fold": fold,
                            "activation": activation,
                            "loss": loss,
                            "dataset": "toy",
                            "threshold": t,
                            "tp": tp + i + fold,
                            "fp": fp,
                            "dice": dice,
                        }
                    )
    return pd.DataFrame(rows)


def _epochs(lengths: dict[str, list[int]], value=lambda f, e: 0.1 * e + f) -> pd.DataFrame:
    """One row per fold and epoch; fold f of an activation runs lengths[activation][f] epochs."""
    return pd.DataFrame(
        [
            {
                "activation": a,
                "loss": "dice",
                "dataset": "toy",
                "fold": f,
                "epoch": e,
                "grad_norm": value(f, e),
                "val_threshold_averaged_dice": value(f, e),
            }
            for a, folds in lengths.items()
            for f, n in enumerate(folds)
            for e in range(1, n + 1)
        ]
    )


def _colors(fig: Figure) -> dict[str, set[str]]:
    """Activation (a line's label up to " · ") -> the colours of its lines in every axes."""
    found: dict[str, set[str]] = {}
    for ax in fig.axes:
        for line in ax.get_lines():
            label = line.get_label().split(" · ")[0]
            if not label.startswith("_"):
                found.setdefault(label, set()).add(to_hex(line.get_color()))
    return found


def test_each_activation_has_one_colour_everywhere(tmp_path):
    colours = [plots.activation_color(n) for n in [*NAMED, "softmax"]]
    assert len(set(colours)) == len(colours)
    assert colours == [plots.activation_color(n) for n in [*NAMED, "softmax"]]
    unknown = plots.activation_color("swish")
    assert unknown == plots.activation_color("swish") and unknown in plots.FALLBACK_COLORS
    assert unknown not in colours
    one = plots.dice_vs_threshold(
        _thresholds(NAMED, ("dice", "bce")), ["dataset", "loss"], tmp_path / "a.png"
    )
    other = plots.dice_vs_threshold(_thresholds(["linear", "arctan"]), [], tmp_path / "b.png")
    for name, seen in (_colors(one) | _colors(other)).items():
        assert seen == {plots.activation_color(name)}, name
    assert len(_colors(one)) == len(NAMED) and len(one.axes) == 2  # a panel per loss


def test_activation_order_puts_the_named_ones_first():
    assert plots.activation_order(["zeta", "arctan", "sigmoid", "alpha"]) == [
        "sigmoid",
        "arctan",
        "alpha",
        "zeta",
    ]


def test_epoch_curves_drop_epochs_where_fewer_than_half_of_the_folds_are_alive():
    epochs = _epochs({"sigmoid": [5, 4, 2, 1]})  # alive: 4, 3, 2, 2, 1
    curves = plots.epoch_curves(epochs, ["activation"], "val_threshold_averaged_dice").set_index(
        "epoch"
    )
    assert curves["alive"].tolist() == [4, 3, 2, 2, 1]
    assert (curves["folds"] == 4).all()
    assert curves["kept"].tolist() == [True, True, True, True, False]
    assert curves.loc[3, "mean"] == pytest.approx(0.3 + 0.5)  # folds 0 and 1
    assert curves.loc[1, "mean"] == pytest.approx(0.1 + 1.5)
    assert math.isnan(curves.loc[5, "mean"]) and math.isnan(curves.loc[5, "high"])
    std = np.std([0.3, 1.3], ddof=1)
    assert curves.loc[3, ["low", "high"]].tolist() == pytest.approx([0.8 - std, 0.8 + std])


def test_epoch_curves_count_folds_per_run_and_fold():
    """Two runs (seeds) with folds 0 and 1 each are four folds."""
    epochs = pd.concat(
        [
            _epochs({"sigmoid": [3, 3]}).assign(run_path="seed0"),
            _epochs({"sigmoid": [3, 1]}).assign(run_path="seed1"),
        ]
    )
    curves = plots.epoch_curves(epochs, ["activation"], "grad_norm")
    assert curves["alive"].tolist() == [4, 3, 3] and (curves["folds"] == 4).all()


def test_log_band_is_the_geometric_mean_times_or_divided_by_exp_of_the_log_std():
    values = {0: 1.0, 1: 10.0, 2: 100.0}
    epochs = _epochs({"sigmoid": [1, 1, 1]}, value=lambda f, e: values[f])
    curve = plots.epoch_curves(epochs, ["activation"], "grad_norm", log=True).iloc[0]
    assert curve["mean"] == pytest.approx(10.0)  # (1 * 10 * 100) ** (1/3)
    assert curve["std"] == pytest.approx(math.log(10))  # of ln 1, ln 10, ln 100
    assert curve["low"] == pytest.approx(1.0) and curve["high"] == pytest.approx(100.0)
    spread = _epochs({"sigmoid": [1, 1]}, value=lambda f, e: [1e-3, 50.0][f])
    wide = plots.epoch_curves(spread, ["activation"], "grad_norm", log=True).iloc[0]
    assert 0 < wide["low"] < wide["mean"] < wide["high"]


def test_zero_gradients_are_drawn_at_a_floor(tmp_path):
    assert plots.log_floor(pd.Series([0.0, 0.02, 5.0])) == pytest.approx(1e-3)
    assert plots.log_floor(pd.Series([0.0, 0.0])) == plots.ZERO_FLOOR
    epochs = pd.concat(
        [
            _epochs({"sigmoid": [2, 2]}, value=lambda f, e: 0.0),
            _epochs({"arctan": [2, 2]}, value=lambda f, e: 0.02 * e),
        ]
    )
    curves = plots.epoch_curves(epochs, ["activation"], "grad_norm", log=True, floor=1e-3)
    zero = curves[curves["activation"] == "sigmoid"]
    assert zero["mean"].tolist() == pytest.approx([1e-3, 1e-3]) and (zero["low"] > 0).all()
    assert zero["zeros"].tolist() == [2, 2]
    assert (curves.loc[curves["activation"] == "arctan", "zeros"] == 0).all()
    fig = plots.metric_vs_epoch(
        epochs, ["dataset", "loss"], [], "grad_norm", "gradient norm", tmp_path / "g.png", log=True
    )
    panel = fig.axes[0]
    assert panel.get_yscale() == "log"
    assert any("0 (drawn at 1e-03)" in t.get_text() for t in panel.texts)


def test_epoch_figure_draws_no_mean_past_the_cut_and_counts_the_folds(tmp_path):
    epochs = _epochs({"sigmoid": [5, 4, 2, 1], "arctan": [3, 3]})
    fig = plots.metric_vs_epoch(
        epochs, ["dataset", "loss"], [], "val_threshold_averaged_dice", "Dice", tmp_path / "d.png"
    )
    panel, counts = fig.axes  # the panel, then its row of folds alive
    sigmoid = next(line for line in panel.get_lines() if line.get_label() == "sigmoid")
    assert np.isnan(sigmoid.get_ydata()[-1]) and not np.isnan(sigmoid.get_ydata()[-2])
    alive = [list(line.get_ydata()) for line in counts.get_lines() if len(line.get_xdata()) > 2]
    assert sorted(alive) == [[2, 2, 2], [4, 3, 2, 2, 1]]
    assert "at least half" in fig.get_suptitle()


def test_binarize_and_other_keys_get_line_styles_named_in_the_legend(tmp_path):
    epochs = pd.concat(
        [
            _epochs({"sigmoid": [2, 2], "arctan": [2, 2]}).assign(binarize=mode)
            for mode in ("none", "hard")
        ]
    )
    fig = plots.metric_vs_epoch(
        epochs,
        ["dataset", "loss"],
        ["binarize"],
        "val_threshold_averaged_dice",
        "Dice",
        tmp_path / "d.png",
    )
    lines = {line.get_label(): line for line in fig.axes[0].get_lines()}
    assert lines["sigmoid · binarize=hard"].get_linestyle() != (
        lines["sigmoid · binarize=none"].get_linestyle()
    )
    assert to_hex(lines["sigmoid · binarize=hard"].get_color()) == plots.activation_color("sigmoid")
    (legend,) = fig.legends
    texts = [t.get_text() for t in legend.get_texts()]
    assert {"binarize=hard", "binarize=none", "sigmoid", "arctan"} <= set(texts)
    assert "binarize" in legend.get_title().get_text()


def test_reliability_bin_counts_are_the_drop_of_tp_plus_fp(tmp_path):
    frame = _thresholds(["sigmoid"])
    bins = plots.reliability_bins(frame, ["activation"])
    # fold 0: TP+FP = 100, 50, 5 at t = 0, 0.5, 1; fold 1: one more TP at each threshold
    assert bins["pixels"].tolist() == [(100 - 50) * 2, (50 - 5) * 2, 5 + 6]
    assert bins["foreground"].tolist() == [(50 - 40) * 2, (40 - 5) * 2, 5 + 6]
    fig = plots.reliability(frame, ["dataset", "loss"], tmp_path / "r.png")
    _, counts = fig.axes
    (line,) = counts.get_lines()
    assert list(line.get_ydata()) == bins["pixels"].tolist() and counts.get_yscale() == "log"


def _forest_frames() -> tuple[pd.DataFrame, pd.DataFrame]:
    studies = pd.DataFrame(
        {
            "panel": ["A: best_dice", "A: best_dice", "B: nll"],
            "label": ["isbi2012", "synthetic", "isbi2012"],
            "estimate": [0.01, -0.02, 0.3],
            "ci_low": [-0.01, -0.05, np.nan],
            "ci_high": [0.03, 0.01, np.nan],
        }
    )
    pooled = pd.DataFrame(
        {
            "panel": ["A: best_dice", "A: best_dice"],
            "method": ["random_dl", "fixed"],
            "estimate": [0.0, 0.001],
            "ci_low": [-0.03, -0.015],
            "ci_high": [0.03, 0.017],
            "pi_low": [-0.2, np.nan],
            "pi_high": [0.2, np.nan],
            "margin": [0.02, 0.02],
            "claimed": [0.05, 0.05],
        }
    )
    return studies, pooled


def _pooled_marks(ax) -> int:
    return sum(a.get_gid() == "pooled" for a in [*ax.patches, *ax.get_lines()])


def test_forest_draws_a_panel_each_with_its_diamonds(tmp_path):
    studies, pooled = _forest_frames()
    fig = plots.forest(studies, pooled, tmp_path / "forest.png")
    assert len(fig.axes) == 2
    a, b = fig.axes
    assert a.get_title(loc="left") == "A: best_dice" and b.get_title(loc="left") == "B: nll"
    assert (_pooled_marks(a), _pooled_marks(b)) == (2, 0)  # empty pooled for panel B
    assert [t.get_text() for t in a.get_yticklabels()] == [
        "isbi2012",
        "synthetic",
        "fixed effect",
        "random effects (DL)",
    ]
    (point,) = [line for line in b.get_lines() if line.get_gid() == "study"]  # NaN CI: a point
    assert list(point.get_xdata()) == [0.3]
    assert any(t.get_text().strip() == "paper" for t in a.texts)
    assert (tmp_path / "forest.png").stat().st_size > 1000


def test_forest_with_one_study_nan_cis_and_nothing_pooled(tmp_path):
    studies, pooled = _forest_frames()
    fig = plots.forest(studies.iloc[:1], pd.DataFrame(), tmp_path / "one.png")
    assert len(fig.axes) == 1 and _pooled_marks(fig.axes[0]) == 0
    nan_pooled = pooled.assign(ci_low=np.nan, ci_high=np.nan, panel="B: nll")
    fig = plots.forest(studies.iloc[2:], nan_pooled, tmp_path / "nan.png")
    (ax,) = fig.axes
    assert _pooled_marks(ax) == 2  # as points: no diamond patches
    assert not [patch for patch in ax.patches if patch.get_gid() == "pooled"]


def _legend_outside(fig: Figure) -> None:
    FigureCanvasAgg(fig).draw()
    assert len(fig.legends) == 1
    box = fig.legends[0].get_window_extent()
    for ax in fig.axes:
        assert ax.get_legend() is None
        if ax.get_visible():
            assert not box.overlaps(ax.get_window_extent()), ax.get_title()


@pytest.mark.slow
def test_every_figure_has_one_legend_outside_its_axes(tmp_path):
    epochs = _epochs({"sigmoid": [3, 2], "arctan": [3, 3]})
    studies, pooled = _forest_frames()
    figures = [
        plots.dice_vs_threshold(_thresholds(NAMED, ("dice", "bce")), ["loss"], tmp_path / "t.png"),
        plots.reliability(_thresholds(["sigmoid"]), [], tmp_path / "r.png"),
        plots.metric_vs_epoch(epochs, ["loss"], [], "grad_norm", "g", tmp_path / "g.png", log=True),
        plots.activation_functions(["sigmoid", "softmax"], tmp_path / "a.png"),
        plots.forest(studies, pooled, tmp_path / "f.png"),
    ]
    for fig in figures:
        _legend_outside(fig)


def _legend_texts(fig: Figure) -> list[str]:
    (legend,) = fig.legends
    return [t.get_text() for t in legend.get_texts()]


def test_dice_vs_threshold_marks_t_05_the_selected_threshold_and_says_what_the_band_is(tmp_path):
    frame = _thresholds(["sigmoid", "arctan"], ("dice", "bce"))
    frame["best_threshold"] = np.where(frame["activation"] == "sigmoid", 0.5, 0.0) + frame["fold"]
    fig = plots.dice_vs_threshold(frame, ["dataset", "loss"], tmp_path / "t.png")
    texts = _legend_texts(fig)
    assert "band: ± 1 std over folds" in texts and "t = 0.5" in texts
    assert any(t.startswith("selected threshold") for t in texts)
    for ax in fig.axes:
        (half,) = [line for line in ax.get_lines() if line.get_gid() == "threshold_0.5"]
        assert list(half.get_xdata()) == [0.5, 0.5]
        marks = [line for line in ax.get_lines() if line.get_gid() == "selected_threshold"]
        # sigmoid: folds at 0.5 and 1.5 -> 1.0; arctan: 0 and 1 -> 0.5 (means over folds)
        assert sorted(float(m.get_xdata()[0]) for m in marks) == [0.5, 1.0]
        assert "n = 2 folds per curve" in ax.get_xlabel()
    assert [ax.get_title() for ax in fig.axes] == ["toy · BCE loss", "toy · Dice loss"]
    no_selection = plots.dice_vs_threshold(_thresholds(["sigmoid"]), [], tmp_path / "u.png")
    (mark,) = [m for m in no_selection.axes[0].get_lines() if m.get_gid() == "selected_threshold"]
    assert mark.get_xdata()[0] == 0.5  # without best_threshold: the mean curve's best


def test_epoch_figures_have_integer_epochs_a_readable_log_axis_and_a_band_label(tmp_path):
    epochs = _epochs({"sigmoid": [3, 3], "arctan": [3, 3]}, value=lambda f, e: 0.05 * e + f)
    fig = plots.metric_vs_epoch(
        epochs, ["dataset", "loss"], [], "grad_norm", "gradient norm", tmp_path / "g.png", log=True
    )
    panel, counts = fig.axes
    FigureCanvasAgg(fig).draw()
    assert all(float(t).is_integer() for t in counts.get_xticks())
    labels = [t.get_text() for t in panel.get_yticklabels() if t.get_text()]
    assert labels and all("10^" not in t and "e" not in t for t in labels)  # 0.1, 0.2, 0.5, 1
    assert panel.get_title() == "toy · Dice loss"
    assert "band: ×/÷ exp(std of log)\nover folds" in _legend_texts(fig)
    assert "n = 2" in counts.get_ylabel()
    linear = plots.metric_vs_epoch(
        epochs, ["loss"], [], "val_threshold_averaged_dice", "Dice", tmp_path / "d.png"
    )
    assert "band: ± 1 std over folds" in _legend_texts(linear)
