"""augment=light: shapes kept, masks stay binary, repeatable from the seed."""

from __future__ import annotations

import torch

from segact.data.augment import Albumentations
from segact.runs.runner import build_augment
from tests.helpers import compose_config


def batch(channels: int = 3) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(0)
    images = torch.randn(4, channels, 16, 16, generator=generator)
    masks = (torch.rand(4, 1, 16, 16, generator=generator) > 0.5).float()
    return images, masks


def test_light_preset_keeps_shapes_and_binary_masks_and_is_seeded():
    cfg = compose_config("augment=light", "trainer.seed=3")
    images, masks = batch()
    first = build_augment(cfg)(images, masks)
    second = build_augment(cfg)(images, masks)
    assert first[0].shape == images.shape and first[1].shape == masks.shape
    assert first[0].dtype == torch.float32
    assert set(first[1].unique().tolist()) <= {0.0, 1.0}
    assert torch.equal(first[0], second[0]) and torch.equal(first[1], second[1])
    other = build_augment(compose_config("augment=light", "trainer.seed=4"))(images, masks)
    assert not torch.equal(first[0], other[0])


def test_image_and_mask_move_together_for_any_channel_count():
    import albumentations  # here, not at collection: only the worker running this imports it

    augment = Albumentations([albumentations.HorizontalFlip(p=1.0)], seed=0)
    for channels in (1, 5):
        images, masks = batch(channels)
        flipped_images, flipped_masks = augment(images, masks)
        assert torch.equal(flipped_images, images.flip(-1))
        assert torch.equal(flipped_masks, masks.flip(-1))


def test_none_preset_means_no_augmentation():
    assert build_augment(compose_config()) is None
