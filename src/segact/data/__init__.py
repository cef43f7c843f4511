"""Datasets: every loader returns a SegmentationData held in memory."""

from segact.data.base import SegmentationData

__all__ = ["SegmentationData"]
