"""segact-report compares every factor a sweep varies: which factors it finds, which levels it
pairs (``--compare``, ``--pair``, ``--baseline``), the files' factor, a and b columns, the
opening sentences, the seeds command and when the paper's claims frame a report."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from segact.errors import ReportError
from segact.report import cli as report
from segact.report.select import (
    choose_comparisons,
    factor_columns,
    headline_scope,
    levels,
    paper_claims_default,
)
from segact.report.stats import Comparison, level_mask
from tests.report_fixtures import ARCTAN, SIGMOID, write_run

DICE = {"dice": SIGMOID, "bce": ARCTAN}


def _loss_sweep(root: Path, lrs: tuple[float, ...] = (0.001,), experiment: str = "toy") -> Path:
    """loss=dice,bce (x ``trainer.lr``) x 2 seeds, sigmoid only: dice's folds SIGMOID, bce's
    ARCTAN, a higher learning rate 0.01 lower."""
    for seed in (0, 1):
        for loss, dice in DICE.items():
            for lr in lrs:
                shift = 0.003 * seed - 10 * (lr - 0.001)
                write_run(
                    root,
                    "sigmoid",
                    [x + shift for x in dice],
                    seed=seed,
                    keys={"loss": loss, "experiment": experiment},
                    settings={"loss.name": loss, "trainer.lr": lr},
                )
    return root


def _report(sources: Path, out: Path, *args: str) -> Path:
    assert report.main([str(sources), "--out", str(out), "--no-figures", *args]) == 0
    return out


@pytest.fixture(scope="module")
def two_factors(tmp_path_factory) -> Path:
    return _loss_sweep(tmp_path_factory.mktemp("factors") / "sweep", lrs=(0.001, 0.01))


def test_a_loss_sweep_compares_dice_with_bce(tmp_path):
    """The issue's "done when": loss=dice,bce x 2 seeds gives factor=loss, a=dice, b=bce."""
    out = _report(_loss_sweep(tmp_path / "sweep"), tmp_path / "out")
    summary = pd.read_csv(out / "paired_summary.csv")
    assert summary[["factor", "a", "b"]].drop_duplicates().values.tolist() == [
        ["loss", "dice", "bce"]
    ]
    best = summary.set_index("metric").loc["best_dice"]
    assert best["n"] == 10 and best["seeds"] == 2 and best["ci_method"] == "corrected_t"
    differences = pd.read_csv(out / "paired_differences.csv")
    assert set(differences["factor"]) == {"loss"}
    text = (out / "report.md").read_text()
    assert text.index("- loss: dice - bce, best Dice, dataset toy: a - b = ") < text.index(
        "## Table"
    )
    assert "`eval.protocol=paper`" in text and "`eval.protocol=holdout`" in text
    assert "## The paper's claims" not in text and not (out / "paper_claims.csv").exists()
    assert not (out / "meta_analysis.csv").exists()  # one dataset: nothing pooled


def test_compare_over_two_factors_gives_both(two_factors, tmp_path):
    out = _report(two_factors, tmp_path / "out", "--compare", "loss", "--compare", "trainer.lr")
    summary = pd.read_csv(out / "paired_summary.csv", dtype={"a": str, "b": str})
    comparisons = summary[["factor", "a", "b"]].drop_duplicates().values.tolist()
    assert comparisons == [["loss", "dice", "bce"], ["trainer.lr", "0.01", "0.001"]]
    loss = summary[(summary["factor"] == "loss") & (summary["metric"] == "best_dice")]
    assert loss["lr"].tolist() == [0.001, 0.01]  # paired within each learning rate
    lr = summary[summary["factor"] == "trainer.lr"].query("metric == 'best_dice'")
    assert lr["loss"].tolist() == ["bce", "dice"]
    assert lr["mean_difference"].tolist() == pytest.approx([-0.09, -0.09])


def test_without_compare_every_factor_the_runs_vary(two_factors, tmp_path):
    out = _report(two_factors, tmp_path / "out")
    summary = pd.read_csv(out / "paired_summary.csv")
    assert list(dict.fromkeys(summary["factor"])) == ["loss", "trainer.lr"]


def _frame(**columns) -> pd.DataFrame:
    rows = [
        {"dataset": "d", "seed": s, "fold": f, "loss": loss, "loss.name": loss, "encoder": enc,
         "model.encoder": enc, "activation": "sigmoid", "resolved.device": dev}
        for s in (0, 1) for f in (0, 1) for loss in ("dice", "bce") for enc in ("r18", "r34")
        for dev in ("cpu",)
    ]  # fmt: skip
    return pd.DataFrame(rows).assign(**columns)


def test_factors_are_found_once_by_their_hydra_key():
    ok = _frame()
    assert factor_columns(ok) == ["loss", "encoder"]  # loss.name, model.encoder follow them
    comparisons = choose_comparisons(ok)
    assert [(c.factor, c.a, c.b) for c in comparisons] == [
        ("loss", "dice", "bce"),
        ("model.encoder", "r34", "r18"),
    ]
    only = choose_comparisons(ok, factors=["model.encoder"])
    assert only == [Comparison("encoder", "r34", "r18")]
    assert choose_comparisons(ok, factors=["encoder"]) == only


def test_baseline_and_pair_pick_the_levels():
    ok = pd.concat([_frame(), _frame(loss="mse", **{"loss.name": "mse"})])
    chosen = choose_comparisons(ok, factors=["loss"], baseline="dice")
    assert [(c.a, c.b) for c in chosen] == [("bce", "dice"), ("mse", "dice")]
    every = choose_comparisons(ok, factors=["loss"])
    assert [(c.a, c.b) for c in every] == [("dice", "bce"), ("mse", "bce"), ("mse", "dice")]
    paired = choose_comparisons(ok, factors=["loss"], pairs=[("mse", "bce")])
    assert paired == [Comparison("loss", "mse", "bce")]
    with pytest.raises(ReportError, match="no finished run has the activation arctan"):
        choose_comparisons(ok, pairs=[("sigmoid", "arctan")])  # alone: activations


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"factors": ["optimizer.name"]}, "--compare optimizer.name: the runs have no such"),
        ({"factors": ["activation"]}, "--compare activation: every run has the same activation"),
        ({"factors": ["loss"], "baseline": "tversky"}, "--baseline tversky: no run of loss"),
        ({"pairs": [("dice", "bce")], "baseline": "dice"}, "not both"),
    ],
)
def test_bad_factor_options_are_one_clear_error(options, message):
    with pytest.raises(ReportError, match=message):
        choose_comparisons(_frame(), **options)


def test_an_old_compare_csv_points_to_diff_results(tmp_path, capsys):
    args = [str(tmp_path), "--compare", "results.csv", "--out", str(tmp_path / "x")]
    assert report.main(args) == 2
    assert "use --diff-results" in capsys.readouterr().err


def test_numeric_levels_sort_by_value_and_match_any_spelling():
    values = pd.Series([0.01, 0.0001, 0.001, 0.01])
    assert levels(values) == ["0.0001", "0.001", "0.01"]
    assert level_mask(values, "1e-3").tolist() == [False, False, True, False]


def test_paper_claims_only_for_the_papers_experiments(tmp_path):
    assert paper_claims_default(pd.DataFrame({"experiment": ["paper_grid", "sigmoid_vs_arctan"]}))
    assert not paper_claims_default(pd.DataFrame({"experiment": ["paper_grid", "default"]}))
    assert not paper_claims_default(pd.DataFrame({"dataset": ["d"]}))
    sweep = tmp_path / "sweep"
    for dataset in ("ph2", "kvasir_seg"):
        for activation, dice in (("sigmoid", SIGMOID), ("arctan", ARCTAN)):
            keys = {"dataset": dataset, "experiment": "sigmoid_vs_arctan"}
            write_run(sweep, activation, dice, keys=keys)
    on = _report(sweep, tmp_path / "on")
    assert (on / "paper_claims.csv").exists()
    assert "claimed" in pd.read_csv(on / "meta_analysis.csv").columns
    off = _report(sweep, tmp_path / "off", "--no-paper-claims")
    assert not (off / "paper_claims.csv").exists()
    assert "claimed" not in pd.read_csv(off / "meta_analysis.csv").columns
    assert "## The paper's claims" not in (off / "report.md").read_text()
    pooled = pd.read_csv(off / "meta_analysis.csv")
    assert set(pooled["method"]) == {"random_hksj", "random_dl", "fixed", "equal"}
    assert (off / "margin_sensitivity.csv").exists()


def test_the_seeds_that_would_settle_it_and_the_command(tmp_path):
    """sigmoid - arctan on one dataset, 1 seed: inconclusive at 1 % of arctan's mean."""
    sweep = tmp_path / "sweep"
    write_run(sweep, "sigmoid", [0.700, 0.704, 0.702, 0.706, 0.703])
    write_run(sweep, "arctan", [0.701, 0.703, 0.700, 0.705, 0.704])
    out = _report(sweep, tmp_path / "out", "--margin", "2%")
    best = pd.read_csv(out / "paired_summary.csv").set_index("metric").loc["best_dice"]
    assert best["verdict"] == "equivalent (within ±0.0141)"
    out = _report(sweep, tmp_path / "tight", "--margin", "0.002")
    best = pd.read_csv(out / "paired_summary.csv").set_index("metric").loc["best_dice"]
    assert best["verdict"] == "inconclusive" and best["seeds_needed"] > 1
    text = (out / "report.md").read_text()
    needed = int(best["seeds_needed"])
    assert f"trainer.seed={','.join(map(str, range(1, needed)))}`" in text or "range(1," in text


def test_the_input_size_is_a_factor_only_when_compared():
    ok = pd.concat([_frame(**{"dataset.image_size": size}) for size in ("48", "96")])
    notes: list[str] = []
    headline, other = headline_scope(ok, notes)
    assert set(headline["dataset.image_size"]) == {"96"} and len(other) == len(headline)
    kept, other = headline_scope(ok, notes, ["dataset.image_size"])
    assert len(kept) == len(ok) and other.empty
    assert "dataset.image_size" in factor_columns(kept)
    chosen = choose_comparisons(kept, factors=["dataset.image_size"])
    assert chosen == [Comparison("dataset.image_size", "96", "48")]
