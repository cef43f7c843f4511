"""segact-report on a hand-made sweep: every file, statistics equal to scipy's, clear errors."""

import numpy as np
import pandas as pd
import pytest
from scipy import stats as scipy_stats

from segact import report, stats

SIGMOID = [0.70, 0.72, 0.68, 0.75, 0.71]
ARCTAN = [0.69, 0.73, 0.65, 0.72, 0.66]
KEYS = {
    "dataset": "toy",
    "arch": "Unet",
    "encoder": "resnet18",
    "head": "sigmoid1",
    "loss": "dice",
    "binarize": "none",
    "protocol": "paper",
    "seed": 0,
}


def _write_run(root, activation, best_dice, status="ok"):
    run = root / activation
    run.mkdir(parents=True)
    rows = [
        {
            **KEYS,
            "activation": activation,
            "fold": fold,
            "best_dice": dice,
            "mean_dice": dice - 0.1,
            "best_threshold": 0.5,
            "nll": 1 - dice,
            "status": status,
        }
        for fold, dice in enumerate(best_dice)
    ]
    pd.DataFrame(rows).to_csv(run / "folds.csv", index=False)
    thresholds = pd.DataFrame(
        [
            {
                "fold": fold,
                "threshold": t,
                "tp": 100 - 50 * t,
                "fp": 100 - 90 * t,
                "fn": 50 * t,
                "tn": 900 + 90 * t,
                "dice": 0.5 + 0.2 * t,
            }
            for fold in range(len(best_dice))
            for t in (0.0, 0.5, 1.0)
        ]
    )
    thresholds.to_csv(run / "thresholds.csv", index=False)


@pytest.fixture
def sweep(tmp_path):
    root = tmp_path / "sweep"
    _write_run(root, "sigmoid", SIGMOID)
    _write_run(root, "arctan", ARCTAN)
    _write_run(root, "hardtanh", [0.1], status="failed")
    return root


def test_report_writes_every_file(sweep, tmp_path, capsys):
    out = tmp_path / "out"
    assert report.main([str(sweep), "--out", str(out)]) == 0
    expected = {
        "results.csv",
        "thresholds.csv",
        "table_dataset_toy.md",
        "table_dataset_toy.tex",
        "paired_differences.csv",
        "paired_summary.csv",
        "failed.csv",
        "report.md",
        "dice_vs_threshold.png",
        "reliability.png",
        "activations.png",
    }
    assert expected <= {p.name for p in out.iterdir()}
    assert len(pd.read_csv(out / "results.csv")) == 11  # one row per run x fold
    assert "**0.712**" in capsys.readouterr().out  # best mean best-Dice in bold
    assert "\\textbf{0.712}" in (out / "table_dataset_toy.tex").read_text()
    assert "## Failed runs" in (out / "report.md").read_text()
    assert report.main([str(sweep), "--out", str(out), "--compare", str(out / "results.csv")]) == 0
    assert (pd.read_csv(out / "compare.csv")["best_dice"].dropna() == 0).all()


def test_paired_statistics_match_scipy(sweep, tmp_path):
    out = tmp_path / "out"
    report.main([str(sweep), "--out", str(out)])
    summary = pd.read_csv(out / "paired_summary.csv").set_index("metric").loc["best_dice"]
    d = np.subtract(SIGMOID, ARCTAN)
    ci = scipy_stats.bootstrap(
        (d,), np.mean, method="BCa", rng=np.random.default_rng(0)
    ).confidence_interval
    assert summary["n"] == 5
    assert summary["mean_difference"] == pytest.approx(d.mean())
    assert summary["wilcoxon_p"] == pytest.approx(scipy_stats.wilcoxon(d).pvalue)
    assert (summary["ci_low"], summary["ci_high"]) == pytest.approx((ci.low, ci.high))
    assert stats.wilcoxon_p(np.zeros(3)) != stats.wilcoxon_p(np.zeros(3))  # NaN, no error


def test_reliability_bins_from_threshold_counts():
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
    bins = report.plots.reliability_bins(frame, ["activation"])
    assert bins["pixels"].tolist() == [74, 25, 1]
    assert bins["frequency"].tolist() == pytest.approx([4 / 74, 5 / 25, 1.0])


def test_bad_input_gives_one_clear_line(sweep, tmp_path, capsys):
    bad = tmp_path / "old.csv"
    pd.DataFrame({"dice": [0.5]}).to_csv(bad, index=False)
    only_failed = tmp_path / "failed"
    (tmp_path / "out").mkdir()  # a folder without runs
    _write_run(only_failed, "sigmoid", [0.1], status="failed")
    for source in (tmp_path / "missing", tmp_path / "out", bad, only_failed):
        assert report.main([str(source), "--out", str(tmp_path / "x")]) == 2
        err = capsys.readouterr().err
        assert err.startswith("segact-report: error:") and "Traceback" not in err
        assert err.count("\n") == 1
