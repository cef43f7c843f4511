"""Datasets: every loader returns a SegmentationData, its compact raw arrays read by the batch."""

from segact.data.base import SegmentationData

__all__ = ["SegmentationData"]
