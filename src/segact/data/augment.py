"""Training-batch augmentation through albumentations, reproducible from the trainer seed."""

from __future__ import annotations

from collections.abc import Sequence

import albumentations as A
import numpy as np
import torch
from torch import Tensor


class Albumentations:
    """``(images (B, C, H, W), masks (B, 1, H, W))`` -> augmented batch, one draw per sample.

    ``transforms`` are albumentations transforms (Hydra builds them from ``_target_`` entries);
    masks follow every spatial change with nearest-neighbour interpolation, so they stay in
    {0, 1}. The random stream starts from ``seed``, so a run is repeatable.
    """

    def __init__(self, transforms: Sequence[A.BasicTransform], seed: int = 0) -> None:
        self.compose = A.Compose(list(transforms), seed=int(seed))

    def __call__(self, images: Tensor, masks: Tensor) -> tuple[Tensor, Tensor]:
        out_images, out_masks = [], []
        for image, mask in zip(images.numpy(), masks.numpy(), strict=True):
            result = self.compose(
                image=np.ascontiguousarray(image.transpose(1, 2, 0)),
                mask=np.ascontiguousarray(mask[0]),
            )
            out_images.append(result["image"].reshape(image.shape[1:] + image.shape[:1]))
            out_masks.append(result["mask"])
        return (
            torch.from_numpy(np.stack(out_images).transpose(0, 3, 1, 2).copy()),
            torch.from_numpy(np.stack(out_masks)[:, None].copy()),
        )
