"""Per-epoch figures of a sweep (gradient norm and validation Dice against the epoch), and the
report's words about runs that cannot learn."""

import pandas as pd
import pytest

from segact.report import cli as report
from segact.runs.folder import RunFolder
from tests.report_fixtures import ARCTAN, SIGMOID, write_run


def _write_epochs(run, grad_norm: float) -> pd.DataFrame:
    epochs = pd.DataFrame(
        [
            {
                "fold": f,
                "epoch": e,
                "grad_norm": grad_norm * e,
                "val_threshold_averaged_dice": 0.1 * e + 0.01 * f,
                "val_best_dice": 0.1 * e + 0.01 * f + 0.05,
            }
            for f in range(5)
            for e in (1, 2, 3)
        ]
    )
    RunFolder(run).write_epochs(epochs)
    return epochs


@pytest.fixture(scope="module")
def sweep_with_epochs(tmp_path_factory):
    root = tmp_path_factory.mktemp("sweep")
    zero_rows = {f: {"zero_gradient": True} for f in range(5)}
    frozen = write_run(root, "sigmoid", SIGMOID, overrides=zero_rows)
    trained = write_run(root, "arctan", ARCTAN)
    return root, _write_epochs(frozen, 0.0), _write_epochs(trained, 1.0)


@pytest.mark.slow
def test_epoch_figures_plot_the_epochs_csv(sweep_with_epochs, tmp_path):
    root, frozen, trained = sweep_with_epochs
    out = tmp_path / "report"
    assert report.main([str(root), "--out", str(out)]) == 0
    for name in ("grad_norm_vs_epoch.png", "dice_vs_epoch.png"):
        assert (out / name).stat().st_size > 1000
    text = (out / "report.md").read_text()
    for name, band in (
        ("dice_vs_epoch.png", "band ± 1 std over folds (n = 5 folds per curve)"),
        ("grad_norm_vs_epoch.png", "band ×/÷ exp(std of the log) over folds (n = 5 folds per"),
        ("dice_vs_threshold.png", "band ± 1 std over folds (n = 5 folds per curve)"),
    ):  # each figure with its caption under it: what is plotted, the band, n
        caption = text.split(f"![{name}]({name})")[1].split("\n\n")[1]
        assert caption.startswith("*") and band in caption, name
    from segact.report import plots

    epochs = pd.concat([frozen.assign(activation="sigmoid"), trained.assign(activation="arctan")])
    curves = plots.epoch_curves(epochs, ["activation"], "grad_norm").set_index(
        ["activation", "epoch"]
    )
    assert (curves.loc["sigmoid", "mean"] == 0).all()
    assert curves.loc[("arctan", 3), "mean"] == pytest.approx(3.0)
    dice = plots.epoch_curves(epochs, ["activation"], "val_threshold_averaged_dice").set_index(
        ["activation", "epoch"]
    )
    assert dice.loc[("arctan", 2), "mean"] == pytest.approx(0.2 + 0.02)
    assert (dice["alive"] == 5).all() and dice["kept"].all()  # no fold stopped early
    logged = plots.epoch_curves(epochs, ["activation"], "grad_norm", log=True, floor=1e-3)
    logged = logged.set_index(["activation", "epoch"])
    assert logged.loc["sigmoid", "mean"].tolist() == pytest.approx([1e-3] * 3)  # at the floor
    assert (logged.loc["sigmoid", "zeros"] == 5).all()
    assert logged.loc[("arctan", 3), "mean"] == pytest.approx(3.0)  # geometric mean of 3s


@pytest.mark.slow
def test_report_says_in_words_that_a_zero_gradient_run_learns_nothing(sweep_with_epochs, tmp_path):
    root, _, _ = sweep_with_epochs
    out = tmp_path / "report"
    report.main([str(root), "--out", str(out)])
    text = (out / "report.md").read_text()
    assert "exactly zero gradient" in text and "learned nothing" in text
