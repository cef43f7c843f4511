import numpy as np
import pandas as pd
import pytest
import torch

from segact.metrics import ThresholdSweep, threshold_sweep

GRID = [round(0.05 * i, 2) for i in range(21)]


def brute_force(prob: np.ndarray, target: np.ndarray, thresholds) -> pd.DataFrame:
    """Direct computation: threshold the array once per threshold (compared in float64)."""
    p = np.asarray(prob, dtype=np.float64).ravel()
    y = np.asarray(target).ravel() > 0.5
    rows = []
    for t in thresholds:
        pred = p >= t
        tp, fp = int(np.sum(pred & y)), int(np.sum(pred & ~y))
        fn, tn = int(np.sum(~pred & y)), int(np.sum(~pred & ~y))
        denominator = 2 * tp + fp + fn
        rows.append((t, tp, fp, fn, tn, 2 * tp / denominator if denominator else 1.0))
    return pd.DataFrame(rows, columns=["threshold", "tp", "fp", "fn", "tn", "dice"])


def random_with_ties(rng, shape, dtype, grid):
    prob = rng.random(shape)
    # A quarter of the pixels sit exactly on a threshold (in the array's own dtype).
    ties = rng.random(shape) < 0.25
    prob[ties] = rng.choice(np.asarray(grid), size=int(ties.sum()))
    prob[rng.random(shape) < 0.02] = 0.0
    prob[rng.random(shape) < 0.02] = 1.0
    return prob.astype(dtype), (rng.random(shape) < 0.3).astype(np.float32)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("grid", [GRID, list(np.linspace(0, 1, 1001)), [0.1, 0.35, 0.7], [0.3]])
@pytest.mark.parametrize("as_torch", [False, True])
def test_sweep_equals_brute_force_including_ties(dtype, grid, as_torch):
    rng = np.random.default_rng(1)
    prob, target = random_with_ties(rng, (6, 1, 17, 23), dtype, grid)
    expected = brute_force(prob, target, grid)
    args = (torch.from_numpy(prob), torch.from_numpy(target)) if as_torch else (prob, target)
    got = threshold_sweep(*args, grid)
    assert list(got.columns) == ["threshold", "tp", "fp", "fn", "tn", "dice"]
    for column in ("tp", "fp", "fn", "tn"):
        np.testing.assert_array_equal(got[column].to_numpy(), expected[column].to_numpy())
    np.testing.assert_allclose(got["dice"], expected["dice"], rtol=1e-12)
    np.testing.assert_allclose(got["threshold"], grid)


def test_float32_tie_uses_exact_threshold():
    # float32(0.35) < 0.35 in float64, so that pixel is *below* the threshold 0.35.
    p = np.array([np.float32(0.35), np.float32(0.5)], dtype=np.float32)
    got = threshold_sweep(p, np.array([1.0, 1.0]), [0.35, 0.5])
    assert got["tp"].tolist() == [1, 1]
    assert np.float64(np.float32(0.35)) < 0.35


def test_any_shape_and_empty_truth_and_prediction():
    got = threshold_sweep(np.zeros(10), np.zeros(10), [0.5, 1.0])
    assert got["dice"].tolist() == [1.0, 1.0]
    got = threshold_sweep(np.full((2, 3), 0.7), np.zeros((2, 3)), [0.5, 0.8])
    assert got["fp"].tolist() == [6, 0] and got["dice"].tolist() == [0.0, 1.0]


def test_batches_accumulate_like_one_array():
    rng = np.random.default_rng(2)
    prob, target = random_with_ties(rng, (8, 1, 16, 16), np.float32, GRID)
    whole = ThresholdSweep(GRID)
    whole.update(prob, target)
    parts = ThresholdSweep(GRID)
    for i in range(0, 8, 3):
        parts.update(prob[i : i + 3], target[i : i + 3])
    pd.testing.assert_frame_equal(whole.result().table, parts.result().table)


def test_summary_nll_ece_and_per_image_dice():
    prob = np.array([[0.9, 0.2, 0.6, 0.1], [0.3, 0.3, 0.8, 0.0]], dtype=np.float64)
    target = np.array([[1, 0, 1, 0], [0, 0, 0, 0]], dtype=np.float64)
    sweep = ThresholdSweep([0.25, 0.5, 0.75], calibration_bins=10)
    sweep.update(prob, target)
    result = sweep.result()
    p = np.clip(prob, 1e-7, 1 - 1e-7)
    nll = -(target * np.log(p) + (1 - target) * np.log(1 - p))
    assert result.summary["nll"] == pytest.approx(nll.mean())
    bins = np.minimum((prob * 10).astype(int), 9).ravel()
    ece = (
        sum(
            abs(prob.ravel()[bins == b].sum() - target.ravel()[bins == b].sum())
            for b in np.unique(bins)
        )
        / prob.size
    )
    assert result.summary["ece"] == pytest.approx(ece)

    table = result.table
    # t = 0.5: image 0 predicts {0.9, 0.6} = truth -> Dice 1; image 1 predicts {0.8}, no truth -> 0.
    row = table.loc[table["threshold"] == 0.5].iloc[0]
    assert row["dice_per_image"] == pytest.approx(0.5)
    assert (row["tp"], row["fp"], row["fn"], row["tn"]) == (2, 1, 0, 5)
    assert row["nll_tp"] == pytest.approx(nll[prob >= 0.5][target[prob >= 0.5] == 1].mean())
    assert row["nll_fp"] == pytest.approx(-np.log(0.2))
    tn_mask = (prob < 0.5) & (target == 0)
    assert row["nll_tn"] == pytest.approx(nll[tn_mask].mean())
    assert np.isnan(row["nll_fn"])
    assert result.summary["dice_at_05"] == pytest.approx(0.8)
    assert result.summary["best_dice"] == pytest.approx(table["dice"].max())
    assert result.summary["mean_dice"] == pytest.approx(table["dice"].mean())


def test_dice_at_05_reported_when_grid_lacks_it():
    sweep = ThresholdSweep([0.2, 0.8])
    sweep.update(np.array([[0.6, 0.1]]), np.array([[1.0, 0.0]]))
    result = sweep.result()
    assert result.summary["dice_at_05"] == 1.0
    assert result.table["threshold"].tolist() == [0.2, 0.8]


@pytest.mark.parametrize("bad", [[], [0.5, 0.3], [0.2, 0.2]])
def test_bad_grids_are_refused(bad):
    with pytest.raises(ValueError):
        ThresholdSweep(bad)


@pytest.mark.parametrize(
    "edges",
    [(0.0, 0.05, 0.5, 1.0), tuple(np.linspace(0, 1, 1001)), (0.3, 0.3000001, 0.30000012, 0.7)],
    ids=["coarse", "1001", "same-cell"],
)
def test_lookup_bucketing_equals_binary_search(edges):
    from segact.metrics import bucketize_float32, decision_boundaries

    boundaries = decision_boundaries(edges, torch.float32)
    around = [boundaries.numpy()]
    for _ in range(3):  # a few float32 steps on either side of every edge
        around += [np.nextafter(around[-1], np.float32(2)), np.nextafter(around[0], np.float32(-1))]
    special = np.array([0.0, -0.0, 1.0, 1.5, 3e-45, 1e-38], dtype=np.float32)
    values = np.concatenate([*around, special, np.random.default_rng(0).random(5000, np.float32)])
    prob = torch.from_numpy(np.clip(values, -0.0, 2.0).astype(np.float32))
    expected = torch.bucketize(prob, boundaries, right=True, out_int32=True)
    assert torch.equal(bucketize_float32(prob.clone(), tuple(edges)), expected)
