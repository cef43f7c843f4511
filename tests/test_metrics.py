import numpy as np
import pandas as pd
import pytest
import torch

from segact.evaluation import sweep as metrics
from segact.evaluation.sweep import ThresholdSweep, clip_bounds, threshold_sweep
from segact.nn import activations
from segact.nn.activations import EPS

GRID = [round(0.05 * i, 2) for i in range(21)]


def brute_force(prob: np.ndarray | torch.Tensor, target, thresholds) -> pd.DataFrame:
    """Direct computation: torch's own ``prob >= t`` once per threshold, in prob's dtype."""
    p = torch.as_tensor(prob).reshape(-1)
    y = torch.as_tensor(np.asarray(target)).reshape(-1) > 0.5
    positives, pixels = int(y.sum()), len(y)
    rows = []
    for t in thresholds:
        pred = p >= float(t)
        tp, predicted = int((pred & y).sum()), int(pred.sum())
        fp, fn = predicted - tp, positives - tp
        tn = pixels - tp - fp - fn
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


def test_float32_tie_is_foreground_like_torch_and_numpy():
    # float32(0.9) < 0.9 exactly, yet torch and NumPy compare in float32: foreground.
    p = np.array([np.float32(0.9), np.float32(0.35), np.float32(0.5)], dtype=np.float32)
    assert np.float64(np.float32(0.9)) < 0.9 and bool((torch.from_numpy(p) >= 0.9)[0])
    got = threshold_sweep(p, np.ones(3), [0.35, 0.5, 0.9])
    assert got["tp"].tolist() == [3, 2, 1]
    assert got["tp"].tolist() == [int((p >= t).sum()) for t in (0.35, 0.5, 0.9)]


def assert_counts_equal(got: pd.DataFrame, expected: pd.DataFrame) -> None:
    for column in ("tp", "fp", "fn", "tn"):
        np.testing.assert_array_equal(got[column].to_numpy(), expected[column].to_numpy())


TIE_GRID = [0.0, 0.05, 0.1, 0.25, 0.5, 0.73, 0.9, 1.0]


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.float16])
@pytest.mark.parametrize("grid", [TIE_GRID, [round(0.01 * i, 2) for i in range(101)]])
def test_counts_equal_torch_on_two_decimal_probabilities(dtype, grid):
    """Probabilities rounded to 2 decimals: many exact ties at 0.05k, 0.73, 0.9."""
    rng = np.random.default_rng(3)
    prob = torch.from_numpy(np.round(rng.random((5, 1, 19, 21)), 2)).to(dtype)
    target = torch.from_numpy((rng.random(prob.shape) < 0.4).astype(np.float32))
    assert (prob == torch.tensor(0.9, dtype=torch.float64).to(dtype)).any()
    got = threshold_sweep(prob, target, grid)
    assert_counts_equal(got, brute_force(prob, target, grid))
    sweep = ThresholdSweep(grid)
    sweep.update(prob, target)
    assert_counts_equal(sweep.result().table, got)


@pytest.mark.parametrize("grid", [TIE_GRID, list(np.linspace(0, 1, 101))], ids=["ties", "101"])
def test_lookup_path_on_a_large_tensor_equals_torch(grid, monkeypatch):
    calls = []
    original = metrics.bucketize_float32
    monkeypatch.setattr(metrics, "bucketize_float32", lambda *a: calls.append(1) or original(*a))
    rng = np.random.default_rng(4)
    shape = (3 * metrics.CHUNK_PIXELS // (128 * 128) + 1, 1, 128, 128)  # several chunks
    prob = torch.from_numpy(np.round(rng.random(shape, dtype=np.float32), 2))
    prob[0, 0, 0, : len(grid)] = torch.tensor(grid, dtype=torch.float64).float()  # every tie
    target = torch.from_numpy((rng.random(shape) < 0.3).astype(np.float32))
    sweep = ThresholdSweep(grid)
    for start in range(0, shape[0], 7):
        sweep.update(prob[start : start + 7], target[start : start + 7])
    assert len(calls) >= 4  # the float32 lookup table served every chunk
    assert_counts_equal(sweep.result().table, brute_force(prob, target, grid))


def test_device_path_equals_host_path(monkeypatch):
    """The code CUDA runs (index_add_ counts, torch.bucketize), exercised on the CPU."""
    rng = np.random.default_rng(5)
    prob, target = random_with_ties(rng, (6, 1, 17, 23), np.float32, GRID)
    host = ThresholdSweep(GRID, clip=EPS)
    host.update(prob, target)
    monkeypatch.setattr(metrics, "_on_host", lambda device: False)
    device = ThresholdSweep(GRID, clip=EPS)
    for start in range(0, 6, 4):
        device.update(prob[start : start + 4], target[start : start + 4])
    expected, got = host.result(), device.result()
    pd.testing.assert_frame_equal(got.table, expected.table, check_exact=False, rtol=1e-12)
    assert got.metrics == pytest.approx(expected.metrics, rel=1e-12)


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
    assert result.metrics["nll"] == pytest.approx(nll.mean())
    bins = np.minimum((prob * 10).astype(int), 9).ravel()
    ece = (
        sum(
            abs(prob.ravel()[bins == b].sum() - target.ravel()[bins == b].sum())
            for b in np.unique(bins)
        )
        / prob.size
    )
    assert result.metrics["ece"] == pytest.approx(ece)

    table = result.table
    # t = 0.5: image 0 predicts {0.9, 0.6} = truth -> Dice 1; image 1 predicts {0.8}, no truth -> 0.
    row = table.loc[table["threshold"] == 0.5].iloc[0]
    assert row["dice_per_image"] == pytest.approx(0.5)
    assert (row["tp"], row["fp"], row["fn"], row["tn"]) == (2, 1, 0, 5)
    tp_mask, tn_mask = (prob >= 0.5) & (target == 1), (prob < 0.5) & (target == 0)
    assert row["mean_nll_tp"] == pytest.approx(nll[tp_mask].mean())
    assert row["mean_nll_fp"] == pytest.approx(-np.log(0.2))
    assert row["mean_nll_tn"] == pytest.approx(nll[tn_mask].mean())
    assert np.isnan(row["mean_nll_fn"])
    # The paper's split: the category's NLL sum over ALL pixels of the fold.
    assert row["paper_nll_tp"] == pytest.approx(nll[tp_mask].sum() / prob.size)
    assert row["paper_nll_tn"] == pytest.approx(nll[tn_mask].sum() / prob.size)
    assert row["paper_nll_fn"] == 0.0
    paper = table[["paper_nll_tp", "paper_nll_fp", "paper_nll_tn", "paper_nll_fn"]].sum(axis=1)
    np.testing.assert_allclose(paper, result.metrics["nll"], rtol=1e-12)
    assert result.metrics["dice_at_05"] == pytest.approx(0.8)
    assert result.metrics["best_dice"] == pytest.approx(table["dice"].max())
    assert result.metrics["threshold_averaged_dice"] == pytest.approx(table["dice"].mean())


def test_dice_at_05_reported_when_grid_lacks_it():
    sweep = ThresholdSweep([0.2, 0.8])
    sweep.update(np.array([[0.6, 0.1]]), np.array([[1.0, 0.0]]))
    result = sweep.result()
    assert result.metrics["dice_at_05"] == 1.0
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
    from segact.evaluation.sweep import bucketize_float32, decision_boundaries

    boundaries = decision_boundaries(edges, torch.float32)
    around = [boundaries.numpy()]
    for _ in range(3):  # a few float32 steps on either side of every edge
        around += [np.nextafter(around[-1], np.float32(2)), np.nextafter(around[0], np.float32(-1))]
    special = np.array([0.0, -0.0, 1.0, 1.5, 3e-45, 1e-38], dtype=np.float32)
    values = np.concatenate([*around, special, np.random.default_rng(0).random(5000, np.float32)])
    prob = torch.from_numpy(np.clip(values, -0.0, 2.0).astype(np.float32))
    expected = torch.bucketize(prob, boundaries, right=True, out_int32=True)
    assert torch.equal(bucketize_float32(prob.clone(), tuple(edges)), expected)


def test_clip_bounds_stay_inside_the_unit_interval():
    low, high = clip_bounds(EPS, torch.float32)
    assert high == float(np.float32(1 - 1e-7)) and high < 1.0 and high == pytest.approx(0.99999988)
    assert low == float(np.float32(1e-7))
    # 1 - 1e-9 rounds to 1 in float32: the bound becomes the largest float32 below 1.
    assert clip_bounds(1e-9, torch.float32)[1] == float(np.nextafter(np.float32(1), np.float32(0)))
    assert clip_bounds(EPS, torch.float16)[1] < 1.0 and clip_bounds(EPS, torch.float16)[0] > 0.0
    assert clip_bounds(EPS, torch.float64) == (1e-7, 1 - 1e-7)
    for bad in (0.0, -1e-7, 0.5):
        with pytest.raises(ValueError, match="clip"):
            ThresholdSweep(GRID, clip=bad)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_clip_keeps_saturated_sigmoid_below_one(dtype):
    """sigmoid(30) == 1 in float32: without the clip only sigmoid pixels pass threshold 1.0."""
    logits = torch.full((2, 1, 4, 4), 30.0, dtype=dtype)
    target = torch.ones_like(logits)
    prob = {name: activations.get(name)(logits) for name in ("sigmoid", "arctan")}
    if dtype == torch.float32:
        assert (prob["sigmoid"] == 1.0).all()
        assert threshold_sweep(prob["sigmoid"], target, [1.0])["dice"].item() == 1.0
    for name, p in prob.items():
        sweep = ThresholdSweep(GRID, clip=EPS)
        sweep.update(p, target)
        result = sweep.result()
        assert result.table["dice"].iloc[-1] == 0.0, name  # threshold 1.0
        assert result.table["dice"].iloc[-2] == 1.0, name  # threshold 0.95
        assert np.isfinite(result.metrics["nll"]) and result.metrics["nll"] > 0
        assert np.isfinite(result.table["paper_nll_tp"]).all()


def test_clip_leaves_the_callers_tensor_alone():
    prob = torch.tensor([[0.0, 1.0, 0.5]])
    sweep = ThresholdSweep([0.0, 1.0], clip=EPS)
    sweep.update(prob, torch.tensor([[0.0, 1.0, 1.0]]))
    assert prob.tolist() == [[0.0, 1.0, 0.5]]
    table = sweep.result().table
    assert table["tp"].tolist() == [2, 0] and table["fp"].tolist() == [1, 0]
