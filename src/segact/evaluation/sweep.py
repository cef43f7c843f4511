"""Threshold-sweep evaluation from histograms.

One pass over the pixels puts each pixel in the bucket of thresholds it reaches
(``torch.bucketize``) and counts buckets per image and truth with one ``bincount``; a reverse
cumulative sum then gives TP/FP/FN/TN at every threshold. The cost does not grow with the number
of thresholds, and the counts equal those of thresholding the array once per threshold in the
probability's own dtype, as ``prob >= t`` does in torch and NumPy. On CUDA every accumulator
stays on the device until ``result()``: no host sync per batch.
torchmetrics' binned curves come closest, but they neither keep per-image counts nor split the NLL
by TP/FP/TN/FN, and they re-apply a sigmoid to inputs outside [0, 1]; hence this module.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch
from torch import Tensor

from segact.nn.activations import EPS
from segact.runs import schema

DEFAULT_THRESHOLDS: tuple[float, ...] = tuple(round(0.05 * i, 2) for i in range(21))
CHUNK_PIXELS = 1 << 19
"""Pixels processed at once: keeps every temporary array at a few MiB (peak memory, cache)."""


def _as_tensor(x: Tensor | np.ndarray) -> Tensor:
    return x if isinstance(x, Tensor) else torch.from_numpy(np.ascontiguousarray(x))


def decision_boundaries(thresholds: Sequence[float], dtype: torch.dtype) -> Tensor:
    """The thresholds as ``dtype`` holds them: ``p >= boundary`` iff torch's ``p >= t``.

    torch (and NumPy) compare a tensor with a Python float in the tensor's dtype, the float
    rounded to nearest: a float32 p equal to float32(0.9) is foreground at 0.9, although
    float32(0.9) < 0.9 exactly. The sweep gives the counts every user's own check gives.
    """
    return torch.tensor([float(t) for t in thresholds], dtype=torch.float64).to(dtype)


def clip_bounds(clip: float, dtype: torch.dtype) -> tuple[float, float]:
    """[clip, 1 - clip] as ``dtype`` holds them, kept strictly inside (0, 1).

    In float32 1 - 1e-7 rounds to 0.99999988 < 1; a smaller clip (or a coarser dtype) could
    round to 1, so the upper bound is at most the largest value below 1 in ``dtype``.
    """
    if not 0.0 < clip < 0.5:
        raise ValueError(f"clip must lie in (0, 0.5), got {clip}")
    info = torch.finfo(dtype)
    low, high = torch.tensor([clip, 1.0 - clip], dtype=torch.float64).to(dtype).tolist()
    return max(low, info.tiny), min(high, 1.0 - info.eps / 2)


LOOKUP_SHIFT = 10
"""float32 bucketing: a table cell covers 2**10 consecutive float32 values (~1M cells, 5 MB)."""
_ONE_BITS = int(np.float32(1.0).view(np.int32))


@functools.lru_cache(maxsize=32)
def float32_lookup(edges: tuple[float, ...]) -> tuple[Tensor, Tensor, Tensor]:
    """(bucket of each cell, whether a cell holds an edge, float32 boundaries) for ``edges``.

    Non-negative float32 values order like their bit patterns read as int32, so the top bits
    of a probability name its cell. Every value in a cell without an edge inside it has the same
    bucket, read from the table in O(1) whatever the number of thresholds; the few pixels in a
    cell with an edge inside are resolved by binary search. torch.bucketize alone costs
    O(log thresholds) per pixel, which made 1001 thresholds about 2x slower than 21.
    """
    boundaries = decision_boundaries(edges, torch.float32) + 0.0  # -0.0 -> 0.0 (sign bit)
    bits = boundaries.numpy().view(np.int32).astype(np.int64)
    n_cells = (_ONE_BITS >> LOOKUP_SHIFT) + 2  # the last cell holds everything above 1.0
    starts = np.arange(n_cells, dtype=np.int64) << LOOKUP_SHIFT
    first = np.searchsorted(bits, starts, side="right")  # edges <= the cell's first value
    last = np.searchsorted(bits, starts + (1 << LOOKUP_SHIFT) - 1, side="right")
    return (
        torch.from_numpy(first.astype(np.int32)),
        torch.from_numpy(first != last),
        boundaries,
    )


def bucketize_float32(prob: Tensor, edges: tuple[float, ...]) -> Tensor:
    """int32 number of edges <= p for float32 ``prob`` in [0, 1], exactly as torch.bucketize."""
    table, holds_edge, boundaries = float32_lookup(edges)
    cells = prob.view(torch.int32) >> LOOKUP_SHIFT
    cells.clamp_(0, len(table) - 1)  # -0.0 (sign bit) -> cell 0; above 1.0 -> the last cell
    bucket = table[cells]
    exact = holds_edge[cells].nonzero(as_tuple=True)
    if exact[0].numel():
        bucket[exact] = torch.bucketize(prob[exact], boundaries, right=True, out_int32=True)
    return bucket


def dice_from_counts(tp: np.ndarray, fp: np.ndarray, fn: np.ndarray) -> np.ndarray:
    """2TP / (2TP + FP + FN); 1 where nothing is predicted and nothing is true."""
    denominator = 2 * tp + fp + fn
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(denominator > 0, 2 * tp / np.maximum(denominator, 1), 1.0)


def _mean_or_nan(total: np.ndarray, count: np.ndarray) -> np.ndarray:
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(count > 0, total / np.maximum(count, 1), np.nan)


def _on_host(device: torch.device) -> bool:
    """Whether the CPU kernels serve ``device`` (the float32 lookup table, ``bincount``)."""
    return device.type == "cpu"


def count_keys(keys: Tensor, n_keys: int, weights: Tensor | None = None) -> Tensor:
    """``bincount(keys, weights, minlength=n_keys)`` for keys < n_keys, on any device.

    Off the CPU it adds into preallocated zeros: CUDA's bincount reads the largest key back to
    the host (a sync per call) and is nondeterministic with weights; index_add_ is neither.
    """
    if _on_host(keys.device):
        return torch.bincount(keys, weights=weights, minlength=n_keys)
    if weights is None:
        weights = torch.ones((), dtype=torch.int64, device=keys.device).expand(keys.numel())
    totals = torch.zeros(n_keys, dtype=weights.dtype, device=keys.device)
    return totals.index_add_(0, keys, weights)


def _images_first(prob: Tensor) -> Tensor:
    """(images, pixels) view of a detached floating-point ``prob``; one image if 0-d or 1-d."""
    prob = prob.detach()
    if not prob.is_floating_point():
        prob = prob.float()  # what torch compares bool or integer tensors with a float in
    return prob.reshape(prob.shape[0], -1) if prob.dim() > 1 else prob.reshape(1, -1)


@dataclass
class SweepResult:
    """Everything the evaluation of one validation fold reports."""

    table: pd.DataFrame  # one row per threshold of the grid
    metrics: dict[str, float]  # the fold's numbers: best Dice and its threshold, NLL, ...


@dataclass
class _Bucketing:
    """How a probability dtype is bucketed: computed in ``dtype`` against ``boundaries``."""

    dtype: torch.dtype  # float64 stays float64; every other float is bucketed in float32
    edges: tuple[float, ...]  # the edges as the probability's dtype holds them (float64 values)
    boundaries: Tensor  # the same, in ``dtype``, on the probability's device


@functools.lru_cache(maxsize=32)
def bucketing(edges: tuple[float, ...], dtype: torch.dtype, device: torch.device) -> _Bucketing:
    """The edges rounded to ``dtype`` (as torch rounds a Python float), on ``device``; cached
    across sweeps, so the sweep after every epoch copies nothing to a GPU before it counts."""
    compute = torch.float64 if dtype == torch.float64 else torch.float32
    own = decision_boundaries(edges, dtype)
    exact = tuple(own.double().tolist())  # exact in ``compute``: it holds every ``own``
    return _Bucketing(compute, exact, own.to(compute).to(device))


class ThresholdSweep:
    """Accumulates confusion counts of a whole fold at every threshold, batch by batch.

    Memory is O(images x thresholds); a pixel is foreground at threshold t when ``prob >= t``
    as torch evaluates it in ``prob``'s own dtype. The calibration bin edges k / bins join the
    thresholds as bucket edges, so one ``bucketize`` serves the sweep, the NLL split and the
    calibration error. ``clip``: every probability is first clipped to [clip, 1 - clip] in its
    own dtype (the paper's evaluation: then no activation, sigmoid included, reaches p = 1).
    """

    def __init__(
        self,
        thresholds: Sequence[float] = DEFAULT_THRESHOLDS,
        calibration_bins: int = 15,
        eps: float = EPS,
        clip: float | None = None,
    ) -> None:
        grid = np.asarray(thresholds, dtype=np.float64)
        if grid.ndim != 1 or grid.size == 0:
            raise ValueError("thresholds must be a non-empty list")
        if np.any(np.diff(grid) <= 0):
            raise ValueError("thresholds must be strictly increasing")
        if clip is not None:
            clip_bounds(clip, torch.float32)  # refuses a clip outside (0, 0.5) now, not later
        calibration_edges = np.arange(1, calibration_bins) / calibration_bins
        # 0.5 always takes part, so that Dice at 0.5 is reported whatever the grid.
        self.reported = np.union1d(grid, [0.5])
        self.in_grid = np.isin(self.reported, grid)
        self.edges = np.union1d(self.reported, calibration_edges)
        self._reported_at = np.searchsorted(self.edges, self.reported)
        # Calibration bin of each bucket: how many calibration edges lie below the bucket.
        self._calibration_of_bucket = np.searchsorted(calibration_edges, self.edges, side="right")
        self._calibration_of_bucket = np.concatenate([[0], self._calibration_of_bucket])
        self.calibration_bins = calibration_bins
        self.eps = eps
        self.clip = clip
        self._n_buckets = len(self.edges) + 1
        self._in_unit = bool(self.edges[0] >= 0.0 and self.edges[-1] <= 1.0)
        # Accumulators live on the device of the first batch, until result().
        self._per_image: list[Tensor] = []  # (n_images, n_buckets, 2) counts, [.., 0]=neg, 1=pos
        self._nll: Tensor | None = None  # (2 * n_buckets,) float64 sums per key
        self._prob_sum: Tensor | None = None
        # -log of the probability given to the true class, clamped to [eps, 1 - eps]; clamping
        # the NLL rather than p keeps float32 exact where 1 - eps rounds in float32.
        self._nll_range = (-np.log1p(-eps), -np.log(eps))

    def _bucketing(self, dtype: torch.dtype, device: torch.device) -> _Bucketing:
        return bucketing(tuple(self.edges.tolist()), dtype, device)

    def update(self, prob: Tensor | np.ndarray, target: Tensor | np.ndarray) -> None:
        """Add a batch: ``prob`` in [0, 1] and ``target`` in {0, 1}, equal shapes, images first."""
        prob, target = _as_tensor(prob), _as_tensor(target)
        if prob.shape != target.shape:
            raise ValueError(f"prob {tuple(prob.shape)} and target {tuple(target.shape)} differ")
        prob = _images_first(prob)
        truth = target.detach().reshape(prob.shape).to(device=prob.device) > 0.5
        clip = clip_bounds(self.clip, prob.dtype) if self.clip is not None else None
        how = self._bucketing(prob.dtype, prob.device)
        use_table = how.dtype == torch.float32 and _on_host(prob.device) and self._in_unit
        images_per_chunk = max(1, CHUNK_PIXELS // max(1, prob.shape[1]))
        for start in range(0, prob.shape[0], images_per_chunk):
            chunk = prob[start : start + images_per_chunk]
            if clip is not None:
                chunk = chunk.clamp(*clip)  # in prob's own dtype, before anything else
            chunk = chunk.to(how.dtype).contiguous()
            bucket = (
                bucketize_float32(chunk, how.edges)
                if use_table
                else torch.bucketize(chunk, how.boundaries, right=True, out_int32=True)
            )
            self._update_chunk(chunk, truth[start : start + images_per_chunk], bucket)

    def _update_chunk(self, prob: Tensor, truth: Tensor, bucket: Tensor) -> None:
        """``bucket``: int32 number of edges <= p (int32 halves the index arrays' traffic)."""
        n_images, n_keys = prob.shape[0], 2 * self._n_buckets
        key = bucket.mul_(2).add_(truth)  # 2 * bucket + truth
        image_offset = torch.arange(
            0, n_images * n_keys, n_keys, device=prob.device, dtype=torch.int32
        )
        counts = count_keys((key + image_offset[:, None]).view(-1), n_images * n_keys)
        device = self._nll.device if self._nll is not None else prob.device
        self._per_image.append(counts.view(n_images, self._n_buckets, 2).to(device))

        true_class = torch.where(truth, prob, 1 - prob)
        nll = true_class.log_().neg_().clamp_(*self._nll_range)
        flat_key = key.view(-1)
        nll_sum = count_keys(flat_key, n_keys, nll.view(-1).double()).to(device)
        prob_sum = count_keys(flat_key, n_keys, prob.view(-1).double()).to(device)
        if self._nll is None or self._prob_sum is None:
            self._nll, self._prob_sum = nll_sum, prob_sum
        else:
            self._nll += nll_sum
            self._prob_sum += prob_sum

    def _fetch(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, float]:
        """The accumulators on the host in one device-to-host copy (a GPU waits once per sweep,
        not once per array): per-image counts (images, buckets, 2), NLL and probability sums
        per key, and the NLL's total as summed on the device."""
        if not self._per_image or self._nll is None or self._prob_sum is None:
            raise ValueError("no predictions were added to the sweep")
        per_image = torch.cat(self._per_image)
        packed = (
            torch.cat(  # counts as float64: exact below 2**53 pixels
                [per_image.view(-1).double(), self._nll, self._prob_sum, self._nll.sum().view(1)]
            )
            .cpu()
            .numpy()
        )
        n_counts, n_keys = per_image.numel(), self._nll.numel()
        counts = packed[:n_counts].astype(np.int64).reshape(per_image.shape)
        nll = packed[n_counts : n_counts + n_keys]
        prob_sum = packed[n_counts + n_keys : n_counts + 2 * n_keys]
        return counts, nll, prob_sum, float(packed[-1])

    def result(self) -> SweepResult:
        per_image, nll, prob_sum, nll_total = self._fetch()
        n_pixels = int(per_image.sum())
        counts = self._confusion_table(per_image)
        table = pd.concat([counts, self._nll_split(nll, counts, n_pixels)], axis=1)
        at_05 = table.loc[np.isclose(self.reported, 0.5)].iloc[0]
        table = table.loc[self.in_grid].reset_index(drop=True)
        best = int(np.argmax(table["dice"].to_numpy()))
        per_image_dice = table[schema.DICE_PER_IMAGE]
        metrics = {
            schema.BEST_DICE: float(table["dice"].iloc[best]),
            schema.BEST_THRESHOLD: float(table["threshold"].iloc[best]),
            schema.THRESHOLD_AVERAGED_DICE: float(table["dice"].mean()),
            schema.DICE_AT_05: float(at_05["dice"]),
            schema.DICE_PER_IMAGE: float(per_image_dice.iloc[best]),
            schema.DICE_PER_IMAGE_AT_05: float(at_05[schema.DICE_PER_IMAGE]),
            schema.NLL: nll_total / n_pixels,
            schema.ECE: self._expected_calibration_error(prob_sum, per_image.sum(axis=0), n_pixels),
            schema.N_IMAGES: int(per_image.shape[0]),
            schema.N_PIXELS: n_pixels,
        }
        return SweepResult(table=table, metrics=metrics)

    def _confusion_table(self, per_image: np.ndarray) -> pd.DataFrame:
        """Pooled counts, pooled Dice and mean per-image Dice at every reported threshold."""
        # Bucket b holds pixels that reach exactly the first b edges: a pixel is predicted
        # foreground at the threshold that is edge e iff its bucket is > e.
        below = np.cumsum(per_image, axis=1)[:, self._reported_at, :]  # (images, T, 2)
        totals = per_image.sum(axis=1)[:, None, :]
        tn_i, fn_i = below[..., 0], below[..., 1]
        fp_i, tp_i = totals[..., 0] - tn_i, totals[..., 1] - fn_i
        tp, fp, fn, tn = (a.sum(axis=0) for a in (tp_i, fp_i, fn_i, tn_i))
        return pd.DataFrame(
            {
                "threshold": self.reported,
                "tp": tp,
                "fp": fp,
                "fn": fn,
                "tn": tn,
                "dice": dice_from_counts(tp, fp, fn),
                schema.DICE_PER_IMAGE: dice_from_counts(tp_i, fp_i, fn_i).mean(axis=0),
            }
        )

    def _nll_split(self, nll: np.ndarray, counts: pd.DataFrame, n_pixels: int) -> pd.DataFrame:
        """NLL of the TP/FP/TN/FN pixels at every reported threshold, normalised two ways.

        ``mean_nll_*``: mean over the category's pixels (NaN where it is empty);
        ``paper_nll_*``: sum over the category's pixels / all pixels, as the paper's train.py,
        so that the four add up to the fold's NLL at every threshold.
        """
        nll = nll.reshape(self._n_buckets, 2)
        below = np.cumsum(nll, axis=0)[self._reported_at]
        total = nll.sum(axis=0)
        sums = {"tn": below[:, 0], "fn": below[:, 1]}
        sums["fp"], sums["tp"] = total[0] - sums["tn"], total[1] - sums["fn"]
        columns = {
            schema.mean_nll(k): _mean_or_nan(sums[k], counts[k].to_numpy()) for k in schema.CELLS
        }
        columns |= {schema.paper_nll(k): sums[k] / max(n_pixels, 1) for k in schema.CELLS}
        return pd.DataFrame(columns, index=counts.index)

    def _expected_calibration_error(
        self, prob_sum: np.ndarray, bucket_counts: np.ndarray, n_pixels: int
    ) -> float:
        """sum over bins of |sum p - sum y| / N, i.e. sum_b (n_b / N) |mean p_b - mean y_b|."""
        prob_per_bucket = prob_sum.reshape(self._n_buckets, 2).sum(axis=1)
        bins = self._calibration_of_bucket
        prob_sum = np.bincount(bins, weights=prob_per_bucket, minlength=self.calibration_bins)
        truth_sum = np.bincount(bins, weights=bucket_counts[:, 1], minlength=self.calibration_bins)
        return float(np.abs(prob_sum - truth_sum).sum() / n_pixels)


def threshold_sweep(
    prob: Tensor | np.ndarray, target: Tensor | np.ndarray, thresholds: Sequence[float]
) -> pd.DataFrame:
    """One row per threshold: ``threshold, tp, fp, fn, tn, dice``; foreground: ``prob >= t``
    exactly as torch evaluates it in ``prob``'s own dtype (no clipping)."""
    sweep = ThresholdSweep(thresholds)
    sweep.update(prob, target)
    return sweep.result().table[["threshold", "tp", "fp", "fn", "tn", "dice"]]
