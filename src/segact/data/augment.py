"""Training-batch augmentation through albumentations, reproducible from the trainer seed."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np
import torch
from torch import Tensor

if TYPE_CHECKING:  # albumentations takes a second to import: only when a run augments
    import albumentations as A


class Albumentations:
    """``(images (B, C, H, W), masks (B, 1, H, W))`` -> augmented batch, one draw per sample.

    ``transforms`` are albumentations transforms (Hydra builds them from ``_target_`` entries);
    masks follow every spatial change with nearest-neighbour interpolation, so they stay in
    {0, 1}. The random stream starts from ``seed``, so a run is repeatable.
    """

    def __init__(self, transforms: Sequence[A.BasicTransform], seed: int = 0) -> None:
        import albumentations

        self.compose = albumentations.Compose(list(transforms), seed=int(seed))

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

    def _random_owners(self) -> list[A.BaseCompose | A.BasicTransform]:
        """The compose and every transform in it: each holds its own random generators."""
        owners: list[A.BaseCompose | A.BasicTransform] = []
        pending: list[A.BaseCompose | A.BasicTransform] = [self.compose]
        while pending:
            owner = pending.pop(0)
            owners.append(owner)
            pending.extend(getattr(owner, "transforms", []))
        return owners

    def state_dict(self) -> list[tuple[dict, tuple]]:
        """The random state of every generator, for fold checkpoints (exact resume)."""
        return [
            (o.random_generator.bit_generator.state, o.py_random.getstate())
            for o in self._random_owners()
        ]

    def load_state_dict(self, states: list[tuple[dict, tuple]]) -> None:
        for owner, (numpy_state, python_state) in zip(self._random_owners(), states, strict=True):
            owner.random_generator.bit_generator.state = numpy_state
            owner.py_random.setstate(python_state)
