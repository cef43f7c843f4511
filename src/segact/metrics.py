"""Threshold-sweep evaluation from histograms.

One pass over the pixels puts each pixel in the bucket of thresholds it reaches
(``torch.bucketize``) and counts buckets per image and truth with one ``bincount``; a reverse
cumulative sum then gives TP/FP/FN/TN at every threshold. The cost does not grow with the number
of thresholds, and the counts equal those of thresholding the array once per threshold.
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

from segact.activations import EPS

DEFAULT_THRESHOLDS: tuple[float, ...] = tuple(round(0.05 * i, 2) for i in range(21))
CHUNK_PIXELS = 1 << 19
"""Pixels processed at once: keeps every temporary array at a few MiB (peak memory, cache)."""


def _as_tensor(x: Tensor | np.ndarray) -> Tensor:
    return x if isinstance(x, Tensor) else torch.from_numpy(np.ascontiguousarray(x))


def decision_boundaries(thresholds: Sequence[float], dtype: torch.dtype) -> Tensor:
    """Thresholds in ``dtype`` such that ``p >= boundary`` in that dtype iff ``p >= t`` exactly.

    A float32 probability is compared with the float64 threshold t through the smallest float32
    that is >= t (rounding t to nearest float32 could round it down and flip ties).
    """
    exact = np.asarray(thresholds, dtype=np.float64)
    if dtype == torch.float64:
        return torch.from_numpy(exact)
    rounded = exact.astype(np.float32)
    below = rounded.astype(np.float64) < exact
    rounded[below] = np.nextafter(rounded[below], np.float32(np.inf))
    return torch.from_numpy(rounded)


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
    boundaries = decision_boundaries(edges, torch.float32)
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


@dataclass
class SweepResult:
    """Everything the evaluation of one validation fold reports."""

    table: pd.DataFrame  # one row per threshold of the grid
    summary: dict[str, float]


class ThresholdSweep:
    """Accumulates confusion counts of a whole fold at every threshold, batch by batch.

    Memory is O(images x thresholds); a pixel is foreground at threshold t when ``prob >= t``.
    The calibration bin edges k / bins join the thresholds as bucket edges, so one
    ``bucketize`` serves the sweep, the NLL split and the calibration error.
    """

    def __init__(
        self,
        thresholds: Sequence[float] = DEFAULT_THRESHOLDS,
        calibration_bins: int = 15,
        eps: float = EPS,
    ) -> None:
        grid = np.asarray(thresholds, dtype=np.float64)
        if grid.ndim != 1 or grid.size == 0:
            raise ValueError("thresholds must be a non-empty list")
        if np.any(np.diff(grid) <= 0):
            raise ValueError("thresholds must be strictly increasing")
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
        self._n_buckets = len(self.edges) + 1
        self._in_unit = bool(self.edges[0] >= 0.0 and self.edges[-1] <= 1.0)
        self._per_image: list[Tensor] = []  # (n_images, n_buckets, 2) counts, [.., 0]=neg, 1=pos
        self._nll = torch.zeros(self._n_buckets * 2, dtype=torch.float64)
        self._prob_sum = torch.zeros(self._n_buckets * 2, dtype=torch.float64)
        # -log of the probability given to the true class, clamped to [eps, 1 - eps]; clamping
        # the NLL rather than p keeps float32 exact where 1 - eps rounds in float32.
        self._nll_range = (-np.log1p(-eps), -np.log(eps))

    def update(self, prob: Tensor | np.ndarray, target: Tensor | np.ndarray) -> None:
        """Add a batch: ``prob`` in [0, 1] and ``target`` in {0, 1}, equal shapes, images first."""
        prob, target = _as_tensor(prob), _as_tensor(target)
        if prob.shape != target.shape:
            raise ValueError(f"prob {tuple(prob.shape)} and target {tuple(target.shape)} differ")
        prob = prob.detach()
        if prob.dtype not in (torch.float32, torch.float64):
            prob = prob.float()
        prob = prob.reshape(prob.shape[0], -1) if prob.dim() > 1 else prob.reshape(1, -1)
        truth = target.detach().reshape(prob.shape).to(device=prob.device) > 0.5
        use_table = prob.dtype == torch.float32 and prob.device.type == "cpu" and self._in_unit
        boundaries = decision_boundaries(self.edges, prob.dtype).to(prob.device)
        images_per_chunk = max(1, CHUNK_PIXELS // max(1, prob.shape[1]))
        for start in range(0, prob.shape[0], images_per_chunk):
            chunk = prob[start : start + images_per_chunk].contiguous()
            bucket = (
                bucketize_float32(chunk, tuple(self.edges))
                if use_table
                else torch.bucketize(chunk, boundaries, right=True, out_int32=True)
            )
            self._update_chunk(chunk, truth[start : start + images_per_chunk], bucket)

    def _update_chunk(self, prob: Tensor, truth: Tensor, bucket: Tensor) -> None:
        """``bucket``: int32 number of edges <= p (int32 halves the index arrays' traffic)."""
        n_images, n_keys = prob.shape[0], 2 * self._n_buckets
        key = bucket.mul_(2).add_(truth)  # 2 * bucket + truth
        image_offset = torch.arange(
            0, n_images * n_keys, n_keys, device=prob.device, dtype=torch.int32
        )
        counts = torch.bincount((key + image_offset[:, None]).view(-1), minlength=n_images * n_keys)
        self._per_image.append(counts.view(n_images, self._n_buckets, 2).cpu())

        true_class = torch.where(truth, prob, 1 - prob)
        nll = true_class.log_().neg_().clamp_(*self._nll_range)
        flat_key = key.view(-1)
        for total, weights in ((self._nll, nll), (self._prob_sum, prob)):
            total += torch.bincount(
                flat_key, weights=weights.view(-1).double(), minlength=n_keys
            ).cpu()

    def result(self) -> SweepResult:
        if not self._per_image:
            raise ValueError("no predictions were added to the sweep")
        per_image = torch.cat(self._per_image).numpy().astype(np.int64)  # (images, buckets, 2)
        # Bucket b holds pixels that reach exactly the first b edges: a pixel is predicted
        # foreground at the threshold that is edge e iff its bucket is > e.
        below = np.cumsum(per_image, axis=1)[:, self._reported_at, :]  # (images, T, 2)
        totals = per_image.sum(axis=1)[:, None, :]
        tn_i, fn_i = below[..., 0], below[..., 1]
        fp_i, tp_i = totals[..., 0] - tn_i, totals[..., 1] - fn_i
        tp, fp, fn, tn = (a.sum(axis=0) for a in (tp_i, fp_i, fn_i, tn_i))
        dice = dice_from_counts(tp, fp, fn)
        dice_per_image = dice_from_counts(tp_i, fp_i, fn_i).mean(axis=0)

        nll = self._nll.numpy().reshape(self._n_buckets, 2)
        nll_below = np.cumsum(nll, axis=0)[self._reported_at]
        nll_total = nll.sum(axis=0)
        nll_tn, nll_fn = nll_below[:, 0], nll_below[:, 1]
        nll_fp, nll_tp = nll_total[0] - nll_tn, nll_total[1] - nll_fn

        table = pd.DataFrame(
            {
                "threshold": self.reported,
                "tp": tp,
                "fp": fp,
                "fn": fn,
                "tn": tn,
                "dice": dice,
                "dice_per_image": dice_per_image,
                "nll_tp": _mean_or_nan(nll_tp, tp),
                "nll_fp": _mean_or_nan(nll_fp, fp),
                "nll_tn": _mean_or_nan(nll_tn, tn),
                "nll_fn": _mean_or_nan(nll_fn, fn),
            }
        )
        at_05 = table.loc[np.isclose(self.reported, 0.5)].iloc[0]
        table = table.loc[self.in_grid].reset_index(drop=True)
        best = int(np.argmax(table["dice"].to_numpy()))
        n_pixels = int(per_image.sum())
        summary = {
            "best_dice": float(table["dice"].iloc[best]),
            "best_threshold": float(table["threshold"].iloc[best]),
            "mean_dice": float(table["dice"].mean()),
            "dice_at_05": float(at_05["dice"]),
            "dice_per_image": float(table["dice_per_image"].iloc[best]),
            "dice_per_image_at_05": float(at_05["dice_per_image"]),
            "nll": float(nll_total.sum() / n_pixels),
            "ece": self._expected_calibration_error(per_image.sum(axis=0), n_pixels),
            "n_images": int(per_image.shape[0]),
            "n_pixels": n_pixels,
        }
        return SweepResult(table=table, summary=summary)

    def _expected_calibration_error(self, bucket_counts: np.ndarray, n_pixels: int) -> float:
        """sum over bins of |sum p - sum y| / N, i.e. sum_b (n_b / N) |mean p_b - mean y_b|."""
        prob_per_bucket = self._prob_sum.numpy().reshape(self._n_buckets, 2).sum(axis=1)
        bins = self._calibration_of_bucket
        prob_sum = np.bincount(bins, weights=prob_per_bucket, minlength=self.calibration_bins)
        truth_sum = np.bincount(bins, weights=bucket_counts[:, 1], minlength=self.calibration_bins)
        return float(np.abs(prob_sum - truth_sum).sum() / n_pixels)


def threshold_sweep(
    prob: Tensor | np.ndarray, target: Tensor | np.ndarray, thresholds: Sequence[float]
) -> pd.DataFrame:
    """One row per threshold: ``threshold, tp, fp, fn, tn, dice``; foreground: prob >= t."""
    sweep = ThresholdSweep(thresholds)
    sweep.update(prob, target)
    return sweep.result().table[["threshold", "tp", "fp", "fn", "tn", "dice"]]
