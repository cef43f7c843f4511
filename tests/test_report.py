"""segact-report on hand-made sweeps: every file, rows split by every differing setting, each
run counted once, statistics equal to scipy's, plots that show the CSV's numbers, clear errors."""

import contextlib
import inspect
import io
import re
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image
from scipy import stats as scipy_stats

from segact.nn import activations
from segact.report import build, plots, tables
from segact.report import cli as report
from segact.runs.folder import THRESHOLDS_CSV, RunFolder
from tests.report_fixtures import (
    ARCTAN,
    SIGMOID,
    THRESHOLDS,
    write_run,
    write_sweep,
    write_two_settings,
)

LOWER = [x - 0.1 for x in SIGMOID]


@pytest.fixture(scope="module")
def sweep(tmp_path_factory):
    """Read only: no test writes into it (a report leaves its sources as they are)."""
    return write_sweep(tmp_path_factory.mktemp("report") / "sweep")


@pytest.fixture(scope="module")
def built(sweep) -> tuple[Path, str]:
    """The default report of ``sweep`` (its folder, what it printed), built once (~1 s) for the
    tests that only read it; it lies next to the sweep, in the folder a test passes as the
    sweep's parent. Tests that write write elsewhere."""
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        out = _report(sweep.parent / "once", sweep)
    return out, printed.getvalue()


def _report(out: Path, *args: object) -> Path:
    with pytest.MonkeyPatch.context() as patch:
        for name, plot in vars(plots).items():
            public = inspect.isfunction(plot) and not name.startswith("_")
            if public and plot.__module__ == plots.__name__ and "path" in _parameters(plot):
                patch.setattr(plots, name, _drawn_once(plot))
        assert report.main([*map(str, args), "--out", str(out)]) == 0
    return out


def _parameters(function: Callable) -> list[str]:
    return list(inspect.signature(function).parameters)


_DRAWN: dict[str, tuple[object, bytes]] = {}
"""A report's figures by their inputs: most reports here draw the same figures again."""


def _fingerprint(value: object) -> object:
    """``value`` as a key (a frame by its columns, dtypes and hashed rows); None where it is of
    a kind not known here (that call is drawn)."""
    if isinstance(value, pd.DataFrame):
        rows = pd.util.hash_pandas_object(value).to_numpy().tobytes()
        return (list(value.columns), list(map(str, value.dtypes)), rows)
    if isinstance(value, list | tuple):
        items = [_fingerprint(v) for v in value]
        return None if None in items else (type(value).__name__, items)
    return value if isinstance(value, str | int | float) else None


def _drawn_once(plot: Callable) -> Callable:
    """``plot`` (arguments ..., path) drawn once per input (~0.3 s a figure); for an input drawn
    before, that figure and a copy of its PNG (matplotlib writes the same bytes again)."""
    signature = inspect.signature(plot)

    def drawn(*args: object, **kwargs: object) -> object:
        arguments = signature.bind(*args, **kwargs)
        arguments.apply_defaults()
        path = Path(arguments.arguments.pop("path"))
        inputs = [_fingerprint(v) for v in arguments.arguments.values()]
        if None in inputs:
            return plot(*args, **kwargs)
        key = repr((plot.__name__, inputs))
        if key not in _DRAWN:
            figure = plot(*args, **kwargs)
            _DRAWN[key] = (figure, path.read_bytes())
        else:
            path.write_bytes(_DRAWN[key][1])
        return _DRAWN[key][0]

    return drawn


def _table(path: Path) -> pd.DataFrame:
    """A Markdown table file back as text cells (its caption line skipped)."""
    lines = [line for line in path.read_text().splitlines() if line.startswith("|")]
    rows = [[cell.strip() for cell in line.strip("|").split("|")] for line in lines]
    return pd.DataFrame(rows[2:], columns=rows[0])


def test_report_writes_every_file(sweep, built, tmp_path):
    out, printed = built
    expected = {
        "results.csv",
        THRESHOLDS_CSV,
        "table_dataset_toy.md",
        "table_dataset_toy.tex",
        "paired_differences.csv",
        "paired_summary.csv",
        "learned.csv",
        "forest.png",
        "flagged.csv",
        "failed.csv",
        "report.md",
        "report.html",  # report.md as one page, figures embedded
        "dice_vs_threshold.png",
        "reliability.png",
        "activations.png",
        build.MANIFEST,  # what the next report into this folder replaces
    }
    assert {p.name for p in out.iterdir()} == expected
    assert len(pd.read_csv(out / "results.csv")) == 11  # one row per run x fold
    assert "| **0.712** ± 0.026 |" in printed  # best mean best-Dice in bold
    assert "\\textbf{0.712}" in (out / "table_dataset_toy.tex").read_text()
    table = _table(out / "table_dataset_toy.md")
    assert table[["activation", "n"]].values.tolist() == [["arctan", "5"], ["sigmoid", "5"]]
    assert pd.read_csv(out / "failed.csv")["activation"].tolist() == ["hardtanh"]
    assert "## Failed runs" in (out / "report.md").read_text()
    again = _report(tmp_path / "again", sweep, "--diff-results", out / "results.csv")
    compared = pd.read_csv(again / "compare.csv")
    assert (compared["present"] == "both").all() and len(compared) == 11
    assert (compared["best_dice"].dropna() == 0).all() and compared["best_dice"].notna().sum() == 10


def test_paired_statistics_match_scipy(built):
    out, _ = built
    summary = pd.read_csv(out / "paired_summary.csv").set_index("metric").loc["best_dice"]
    d = np.subtract(SIGMOID, ARCTAN)
    sem = scipy_stats.sem(d)
    assert summary[["factor", "a", "b", "n"]].tolist() == ["activation", "sigmoid", "arctan", 5]
    assert summary["ci_method"] == "corrected_t"
    assert summary["plain_t_p"] == pytest.approx(scipy_stats.ttest_rel(SIGMOID, ARCTAN).pvalue)
    assert summary["mean_difference"] == pytest.approx(d.mean())
    assert summary["wilcoxon_p"] == pytest.approx(scipy_stats.wilcoxon(d).pvalue)
    assert summary["wilcoxon_p_holm"] == summary["wilcoxon_p"]  # one row per table
    assert summary["min_p_reachable"] == 2 / 2**5
    interval = scipy_stats.t.interval(0.95, 4, loc=d.mean(), scale=sem)
    assert (summary["plain_ci_low"], summary["plain_ci_high"]) == pytest.approx(interval)
    # 5 folds, no sizes recorded: n_test / n_train = 1/4 (Nadeau & Bengio)
    corrected = scipy_stats.t.interval(0.95, 4, loc=d.mean(), scale=sem * np.sqrt(1 + 5 / 4))
    assert (summary["ci_low"], summary["ci_high"]) == pytest.approx(corrected)
    assert "the corrected resampled t (Nadeau & Bengio 2003" in (out / "report.md").read_text()


def _kinds(values: list[str]) -> list[list[str]]:
    """The expected (activation, setting, n) rows of a two-setting sweep."""
    return [[a, v, "5"] for a in ("arctan", "sigmoid") for v in values]


@pytest.mark.slow
def test_rows_split_by_every_differing_setting(tmp_path):
    sweep = write_two_settings(tmp_path / "sweep", "trainer.lr", [0.001, 0.1])
    out = _report(tmp_path / "out", sweep, "--no-figures")
    table = _table(out / "table_dataset_toy.md")
    assert table[["activation", "lr", "n"]].values.tolist() == _kinds(["0.001", "0.1"])
    means = table["best Dice"].str.replace("*", "").str[:5]
    assert means.tolist() == ["0.690", "0.590", "0.712", "0.612"]
    summary = pd.read_csv(out / "paired_summary.csv").query("metric == 'best_dice'")
    assert list(dict.fromkeys(summary["factor"])) == ["activation", "trainer.lr"]
    summary = summary[summary["factor"] == "activation"]
    d = np.subtract(SIGMOID, ARCTAN)
    assert summary[["lr", "n"]].values.tolist() == [[0.001, 5], [0.1, 5]]
    assert summary["mean_difference"].tolist() == pytest.approx([d.mean()] * 2)


@pytest.mark.slow
def test_two_folder_datasets_are_two_rows(tmp_path):
    roots = ["/data/a", "/data/b"]
    keys = {"dataset": "folder"}
    sweep = write_two_settings(tmp_path / "sweep", "dataset.root", roots, (0.0, -0.2), keys)
    out = _report(tmp_path / "out", sweep, "--no-figures")
    table = _table(out / "table_dataset_folder.md")
    assert table[["activation", "dataset.root", "n"]].values.tolist() == _kinds(roots)
    # the statistics pair a with a and b with b: every difference is sigmoid - arctan
    differences = pd.read_csv(out / "paired_differences.csv").query("metric == 'best_dice'")
    assert len(differences) == 10
    assert differences["difference"].to_numpy() == pytest.approx(
        np.tile(np.subtract(SIGMOID, ARCTAN), 2)
    )
    # results.csv passed back in gives the same tables and statistics
    again = _report(tmp_path / "again", out / "results.csv", "--no-figures")
    for name in ("table_dataset_folder.md", "table_dataset_folder.tex", "paired_summary.csv"):
        assert (again / name).read_text() == (out / name).read_text()


@pytest.mark.parametrize("second", ["same", "parent", "results_csv"])
def test_a_sweep_passed_twice_counts_once(sweep, built, tmp_path, second):
    once, _ = built
    source = {
        "same": sweep,
        "parent": sweep / "..",  # holds the sweep and the report "once" of it
        "results_csv": once / "results.csv",
    }
    twice = _report(tmp_path / "twice", sweep, source[second])
    for name in ("table_dataset_toy.md", "paired_summary.csv"):
        assert (twice / name).read_text() == (once / name).read_text()
    assert "- 11 repeated fold result(s) dropped" in (twice / "report.md").read_text()


def test_a_nan_metric_is_left_out_and_said(tmp_path):
    sweep = tmp_path / "sweep"
    write_run(sweep, "sigmoid", SIGMOID, overrides={2: {"best_dice": np.nan}})
    write_run(sweep, "arctan", ARCTAN)
    out = _report(tmp_path / "out", sweep, "--no-figures")
    table = _table(out / "table_dataset_toy.md").set_index("activation")
    kept = pd.Series(SIGMOID).drop(2)
    assert table.loc["sigmoid", "best Dice"] == f"**{kept.mean():.3f}** ± {kept.std():.3f} (n=4)"
    assert table.loc["sigmoid", "n"] == "5"
    assert tables.NAN_NOTE in (out / "table_dataset_toy.md").read_text()
    summary = pd.read_csv(out / "paired_summary.csv").set_index("metric")
    assert summary.loc["best_dice", "n"] == 4 and summary.loc["nll", "n"] == 5


def test_paper_aggregation(sweep, tmp_path):
    out = _report(tmp_path / "out", sweep, "--aggregate", "paper")
    text = (out / "table_dataset_toy.md").read_text()
    assert text.startswith("Table: dataset toy: aggregation paper")
    table = _table(out / "table_dataset_toy.md")
    assert list(table.columns) == [
        "loss",
        "activation",
        "NLL",
        "best Dice",
        "threshold-averaged Dice",
        "n",
    ]
    paper_best = np.add(SIGMOID, 0.01)
    assert (
        table["best Dice"].iloc[1] == f"**{paper_best.mean():.3f}** ± {paper_best.std(ddof=1):.3f}"
    )
    assert "aggregation paper" in (out / "table_dataset_toy.tex").read_text()
    paired = pd.read_csv(out / "paired_summary.csv").set_index("metric")
    assert sorted(paired.index) == ["paper_best_dice", "paper_nll", "paper_threshold_averaged_dice"]
    assert paired.loc["paper_best_dice", "mean_a"] == pytest.approx(paper_best.mean())
    assert not (out / "paper_claims.csv").exists()  # one dataset, not the paper's experiment


def _flagged_sweep(root: Path) -> Path:
    write_run(
        root, "sigmoid", SIGMOID, overrides={1: {"degenerate": True}, 3: {"hit_max_epochs": True}}
    )
    # fold 2 stopped at epoch 12 with epoch 1 its best; fold 4 ran a single epoch (not flagged)
    first = {2: {"epoch_selected": 1, "epochs_run": 12}, 4: {"epoch_selected": 1, "epochs_run": 1}}
    write_run(root, "arctan", ARCTAN, overrides=first)
    old = write_run(root, "normal_cdf", ARCTAN)  # an older run: no flag columns at all
    folds = pd.read_csv(RunFolder(old).folds_csv).drop(
        columns=["hit_max_epochs", "degenerate", "zero_gradient"]
    )
    folds.to_csv(RunFolder(old).folds_csv, index=False)
    RunFolder(old).write_summary(RunFolder(old).read_summary())  # its digests as it wrote them
    return root


def test_flagged_folds_are_listed_and_tabled_both_ways(tmp_path):
    out = _report(tmp_path / "out", _flagged_sweep(tmp_path / "sweep"), "--no-figures")
    flagged = pd.read_csv(out / "flagged.csv")
    columns = ["activation", "fold", "hit_max_epochs", "degenerate", "best_at_first_epoch"]
    assert flagged[columns].values.tolist() == [
        ["arctan", 2, False, False, True],
        ["sigmoid", 1, False, True, False],
        ["sigmoid", 3, True, False, False],
    ]
    text = (out / "report.md").read_text()
    counts = "1 hit_max_epochs, 1 degenerate, 0 zero_gradient, 1 best_at_first_epoch"
    assert f"3 of 15 folds: {counts}." in text
    assert _table(out / "table_dataset_toy.md")["n"].tolist() == ["5", "5", "5"]
    assert "## Tables without the 1 degenerate fold(s)" in text
    without = text.split("## Tables without the 1 degenerate fold(s)")[1].split("## Paired")[0]
    assert re.findall(r"\| (\d+)\s+\|\n", without) == ["5", "5", "4"]  # arctan, normal_cdf, sigmoid


def test_exclude_degenerate_drops_them_from_tables_and_statistics(tmp_path):
    out = _report(
        tmp_path / "out", _flagged_sweep(tmp_path / "sweep"), "--exclude-degenerate", "--no-figures"
    )
    assert _table(out / "table_dataset_toy.md")["n"].tolist() == ["5", "5", "4"]
    summary = pd.read_csv(out / "paired_summary.csv")
    with_sigmoid = (summary["a"] == "sigmoid") | (summary["b"] == "sigmoid")
    assert (summary.loc[with_sigmoid, "n"] == 4).all()
    assert (summary.loc[~with_sigmoid, "n"] == 5).all()
    text = (out / "report.md").read_text()
    assert "--exclude-degenerate: 1 degenerate fold(s) of 15 dropped" in text
    assert "## Tables with the 1 degenerate fold(s)" in text


def test_dice_plot_shows_the_thresholds_csv(built, tmp_path):
    out, _ = built
    thresholds = pd.read_csv(out / THRESHOLDS_CSV)
    fig = plots.dice_vs_threshold(thresholds, ["dataset", "loss"], tmp_path / "dice.png")
    lines = {
        line.get_label(): line
        for line in fig.axes[0].get_lines()
        if not line.get_label().startswith("_")  # the marks: t = 0.5, selected thresholds
    }
    assert sorted(lines) == ["arctan", "sigmoid"]
    for activation, dice in (("sigmoid", SIGMOID), ("arctan", ARCTAN)):
        x, y = lines[activation].get_xdata(), lines[activation].get_ydata()
        assert list(x) == list(THRESHOLDS)
        # the fixture's Dice(t) = best Dice - 0.2 (1 - t): its mean over the five folds
        assert y == pytest.approx([np.mean(dice) - 0.2 * (1 - t) for t in THRESHOLDS])
    one_panel = (432 + 240, 432)  # 3.6 inch at 120 dpi, and 2 inch for the legend
    with Image.open(out / "dice_vs_threshold.png") as image:
        assert image.size == one_panel
    with Image.open(tmp_path / "dice.png") as image:
        assert image.size == one_panel


def test_reliability_bins_and_plot_from_threshold_counts(tmp_path):
    frame = pd.DataFrame(
        {
            "run_path": "r",
            "fold": 0,
            "activation": "a",
            "threshold": [0.0, 0.5, 1.0],
            "tp": [10, 6, 1],
            "fp": [90, 20, 0],
        }
    )
    bins = plots.reliability_bins(frame, ["activation"])
    assert bins["pixels"].tolist() == [74, 25, 1]
    assert bins["frequency"].tolist() == pytest.approx([4 / 74, 5 / 25, 1.0])
    fig = plots.reliability(frame, [], tmp_path / "reliability.png")
    diagonal, curve = fig.axes[0].get_lines()
    assert list(curve.get_xdata()) == [0.25, 0.75, 1.0]  # bin centres; the last bin is t = 1
    assert curve.get_ydata() == pytest.approx([4 / 74, 5 / 25, 1.0])
    assert list(diagonal.get_ydata()) == [0, 1]


def test_activation_plot_draws_each_function_and_its_slope(tmp_path):
    fig = plots.activation_functions(["sigmoid", "arctan"], tmp_path / "act.png", limit=4.0)
    curves, slopes = fig.axes[0].get_lines(), fig.axes[1].get_lines()
    x = curves[0].get_xdata()
    assert (x[0], x[-1]) == (-4.0, 4.0)
    assert curves[0].get_ydata() == pytest.approx(1 / (1 + np.exp(-x)))
    arctan = activations.get("arctan")
    assert curves[1].get_ydata() == pytest.approx(arctan(torch.from_numpy(x)).numpy())
    sigmoid_slope = np.exp(-x) / (1 + np.exp(-x)) ** 2
    assert slopes[0].get_ydata()[1:-1] == pytest.approx(sigmoid_slope[1:-1], abs=1e-4)
    with Image.open(tmp_path / "act.png") as image:  # two panels side by side, the legend
        assert image.size == (864 + 240, 432)


def test_activation_plot_draws_linear_and_the_softmax_head(tmp_path):
    """``linear`` scales one sample's logits to [eps, 1 - eps]; softmax2 is sigmoid(z1 - z0)."""
    fig = plots.activation_functions(["linear", "softmax"], tmp_path / "act.png", limit=4.0)
    linear, softmax = fig.axes[0].get_lines()
    assert linear.get_ydata()[[0, -1]] == pytest.approx([0, 1], abs=1e-6)
    assert linear.get_ydata() == pytest.approx((linear.get_xdata() + 4) / 8, abs=1e-6)
    x = softmax.get_xdata()
    assert softmax.get_ydata() == pytest.approx(1 / (1 + np.exp(-x)))
    assert "softmax" in softmax.get_label()


def _bad_sources(tmp_path: Path, sweep: Path) -> dict[str, list[str]]:
    bad = tmp_path / "old.csv"
    pd.DataFrame({"dice": [0.5]}).to_csv(bad, index=False)
    (tmp_path / "empty").mkdir()
    only_failed = tmp_path / "failed"
    write_run(only_failed, "sigmoid", [0.1], status="failed")
    no_metrics = tmp_path / "no_metrics"
    run = write_run(no_metrics, "sigmoid", SIGMOID)
    pd.read_csv(RunFolder(run).folds_csv).drop(columns=["best_dice"]).to_csv(
        RunFolder(run).folds_csv, index=False
    )
    no_name = tmp_path / "no_name"
    run = write_run(no_name, "sigmoid", SIGMOID)
    pd.read_csv(RunFolder(run).folds_csv).assign(activation=np.nan).to_csv(
        RunFolder(run).folds_csv, index=False
    )
    no_paper = tmp_path / "no_paper"
    run = write_run(no_paper, "sigmoid", SIGMOID)
    pd.read_csv(RunFolder(run).folds_csv).drop(columns=["paper_nll"]).to_csv(
        RunFolder(run).folds_csv, index=False
    )
    return {
        "no such sweep directory": [tmp_path / "missing"],
        "no runs found": [tmp_path / "empty"],
        "lacks the columns": [bad],
        "no finished runs": [only_failed],
        "lacks the columns best_dice": [no_metrics],
        "5 finished row(s) have no activation name": [no_name],
        "lacks the columns paper_nll": [no_paper, "--aggregate", "paper"],
        "the activation levels here: arctan, sigmoid": [sweep, "--pair", "sigmoid", "nosuchact"],
        "compare two different levels of activation": [sweep, "--pair", "sigmoid", "sigmoid"],
    }


def test_bad_input_gives_one_clear_line(sweep, tmp_path, capsys):
    for message, args in _bad_sources(tmp_path, sweep).items():
        assert report.main([*map(str, args), "--out", str(tmp_path / "x")]) == 2, message
        err = capsys.readouterr().err
        assert err.startswith("segact-report: error:") and "Traceback" not in err
        assert err.count("\n") == 1
        assert message in err


@pytest.mark.slow
def test_without_a_pair_every_factor_is_compared(tmp_path):
    write_run(tmp_path / "sweep", "sigmoid", SIGMOID)
    write_run(tmp_path / "sweep", "normal_cdf", ARCTAN)
    out = _report(tmp_path / "out", tmp_path / "sweep", "--no-figures")
    assert [p.name for p in out.glob("*.png")] == ["forest.png"]  # drawn all the same
    assert "## Figures" not in (out / "report.md").read_text()
    summary = pd.read_csv(out / "paired_summary.csv")  # every factor: sigmoid - normal_cdf
    assert summary[["a", "b"]].drop_duplicates().values.tolist() == [["sigmoid", "normal_cdf"]]
    write_run(tmp_path / "same", "sigmoid", SIGMOID)
    out = _report(tmp_path / "none", tmp_path / "same", "--no-figures")
    assert "No paired comparison: the runs of a dataset vary no" in (out / "report.md").read_text()
    assert pd.read_csv(out / "paired_summary.csv").empty
    differences = pd.read_csv(out / "paired_differences.csv")
    assert differences.empty and "difference" in differences.columns
    out = _report(
        tmp_path / "out2", tmp_path / "sweep", "--pair", "normal_cdf", "sigmoid", "--no-figures"
    )
    summary = pd.read_csv(out / "paired_summary.csv").set_index("metric")
    assert summary.loc["best_dice", "mean_difference"] == pytest.approx(
        np.mean(ARCTAN) - np.mean(SIGMOID)
    )


@pytest.mark.slow
def test_pooled_table_takes_only_the_datasets_with_every_row(tmp_path):
    """c lacks arctan: pooling it would weigh its sigmoid folds into one row only."""
    for dataset, activations_run in (("a", ("sigmoid", "arctan")), ("b", ("sigmoid", "arctan")),
                                     ("c", ("sigmoid",))):  # fmt: skip
        for activation in activations_run:
            dice = SIGMOID if activation == "sigmoid" else ARCTAN
            write_run(tmp_path / "sweep", activation, dice, keys={"dataset": dataset})
    out = _report(tmp_path / "out", tmp_path / "sweep", "--no-figures")
    pooled = (out / "table_all_datasets.md").read_text()
    assert "all datasets with every row, folds pooled (a, b)" in pooled
    assert _table(out / "table_all_datasets.md")["n"].tolist() == ["10", "10"]
    assert (out / "table_dataset_c.md").exists()


@pytest.mark.slow
def test_common_seeds_compares_an_unfinished_grid_on_the_seeds_every_row_has(tmp_path):
    """sigmoid has seeds 0-2, arctan only 0: with --common-seeds both rows are seed 0's five
    folds (and the pairs too); results.csv keeps every fold."""
    for seed in (0, 1, 2):
        write_run(tmp_path / "sweep", "sigmoid", SIGMOID, seed=seed)
    write_run(tmp_path / "sweep", "arctan", ARCTAN, seed=0)
    plain = _report(tmp_path / "plain", tmp_path / "sweep", "--no-figures")
    assert _table(plain / "table_dataset_toy.md")["n"].tolist() == ["5", "15"]
    out = _report(tmp_path / "out", tmp_path / "sweep", "--no-figures", "--common-seeds")
    assert _table(out / "table_dataset_toy.md")["n"].tolist() == ["5", "5"]
    assert (pd.read_csv(out / "paired_summary.csv")["n"] == 5).all()
    assert len(pd.read_csv(out / "results.csv")) == 20
    text = (out / "report.md").read_text()
    assert "--common-seeds: dataset toy uses seed(s) 0 of 0, 1, 2" in text


def test_common_seeds_without_a_shared_seed_is_one_clear_error(tmp_path, capsys):
    write_run(tmp_path / "sweep", "sigmoid", SIGMOID, seed=1)
    write_run(tmp_path / "sweep", "arctan", ARCTAN, seed=0)
    args = [str(tmp_path / "sweep"), "--out", str(tmp_path / "out"), "--common-seeds"]
    assert report.main([*args, "--no-figures"]) == 2
    assert "--common-seeds: no dataset has a seed" in capsys.readouterr().err


@pytest.mark.slow
def test_pool_puts_runs_of_two_devices_into_the_same_rows_and_pairs(tmp_path):
    """Seed 0 trained on a GPU, seed 1 on the CPU: without --pool each device is a row of its own;
    with --pool resolved the rows and pairs hold both seeds."""
    devices = {0: {"resolved.device": "cuda"}, 1: {"resolved.device": "cpu", "resolved.threads": 1}}
    for seed, settings in devices.items():
        for activation, dice in (("sigmoid", SIGMOID), ("arctan", ARCTAN)):
            write_run(tmp_path / "sweep", activation, dice, seed=seed, settings=settings)
    plain = _report(tmp_path / "plain", tmp_path / "sweep", "--no-figures")
    assert _table(plain / "table_dataset_toy.md")["n"].tolist() == ["5", "5", "5", "5"]
    out = _report(tmp_path / "out", tmp_path / "sweep", "--no-figures", "--pool", "resolved")
    assert _table(out / "table_dataset_toy.md")["n"].tolist() == ["10", "10"]
    assert (pd.read_csv(out / "paired_summary.csv")["n"] == 10).all()
    text = (out / "report.md").read_text()
    pooled = "--pool resolved: rows and pairs pool the values of"
    assert f"{pooled} resolved.device: cpu (10 folds), cuda (10 folds)." in text
    assert f"{pooled} resolved.threads: 1 (10 folds), unset (10 folds)." in text


def test_pool_of_an_unknown_setting_is_one_clear_error(tmp_path, capsys):
    write_run(tmp_path / "sweep", "sigmoid", SIGMOID)
    args = [str(tmp_path / "sweep"), "--out", str(tmp_path / "out"), "--pool", "trainer.devise"]
    assert report.main([*args, "--no-figures"]) == 2
    assert "--pool trainer.devise: the runs have no such setting" in capsys.readouterr().err


def test_a_margin_that_is_no_number_is_one_clear_error(sweep, tmp_path, capsys):
    args = [str(sweep), "--out", str(tmp_path / "x"), "--margin", "two percent", "--no-figures"]
    assert report.main(args) == 2
    error = capsys.readouterr().err.strip()
    assert error.startswith("segact-report: error: --margin two percent:") and "\n" not in error
    assert not (tmp_path / "x").exists()  # refused before anything is written


def test_a_report_of_the_synthetic_set_alone_compares_without_a_forest(tmp_path):
    """The synthetic set is never pooled or drawn in the forest: a report of only its runs (the
    main job's) still writes the paired statistics, and no forest.png."""
    for activation, dice in (("sigmoid", SIGMOID), ("arctan", ARCTAN)):
        write_run(tmp_path / "sweep", activation, dice, keys={"dataset": "synthetic"})
    out = _report(tmp_path / "report", tmp_path / "sweep", "--pair", "sigmoid", "arctan")
    summary = pd.read_csv(out / "paired_summary.csv")
    assert summary["dataset"].unique().tolist() == ["synthetic"]
    assert not (out / "forest.png").exists()


def test_a_report_of_a_results_csv_compares_without_run_folders(built, tmp_path):
    """A results.csv (an earlier report's) as the only source: no run folder, so no saved model
    to draw overlays from; the comparison is made all the same."""
    out = _report(tmp_path / "again", built[0] / "results.csv", "--pair", "sigmoid", "arctan")
    assert pd.read_csv(out / "paired_summary.csv")["b"].unique().tolist() == ["arctan"]
    assert not (out / "overlays.png").exists()
