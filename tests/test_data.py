import numpy as np
import pytest
import torch

from segact.data.splits import case_folds, inner_split
from segact.data.synthetic import make_synthetic


def test_synthetic_is_deterministic_with_empty_masks_and_configurable_size():
    a = make_synthetic(n_images=30, image_size=32, channels=2, seed=3, empty_fraction=0.3)
    b = make_synthetic(n_images=30, image_size=32, channels=2, seed=3, empty_fraction=0.3)
    assert a.images.shape == (30, 2, 32, 32) and a.masks.shape == (30, 1, 32, 32)
    assert torch.equal(a.images, b.images) and torch.equal(a.masks, b.masks)
    empty = a.masks.flatten(1).sum(1) == 0
    assert 0 < empty.sum() < 30
    assert set(torch.unique(a.masks).tolist()) == {0.0, 1.0}
    c = make_synthetic(n_images=30, image_size=32, channels=2, seed=4)
    assert not torch.equal(a.images, c.images)


def test_foreground_fraction_follows_blob_size():
    small = make_synthetic(n_images=20, image_size=32, blob_radius=(0.05, 0.08), empty_fraction=0)
    large = make_synthetic(n_images=20, image_size=32, blob_radius=(0.2, 0.3), empty_fraction=0)
    assert small.masks.mean() < large.masks.mean()


def test_case_folds_never_split_a_case():
    cases = np.repeat(np.arange(10), 3)
    folds = case_folds(cases, n_folds=4, seed=0)
    assert len(folds) == 4
    seen = np.concatenate([f.val for f in folds])
    assert sorted(seen.tolist()) == list(range(30))
    for fold in folds:
        assert not set(cases[fold.train]) & set(cases[fold.val])
        inner_train, inner_val = inner_split(cases, fold.train, 0.2, seed=1)
        assert not set(cases[inner_train]) & set(cases[inner_val])
        assert sorted([*inner_train, *inner_val]) == sorted(fold.train)


@pytest.mark.parametrize("n_folds", [1, 11])
def test_case_folds_refuse_impossible_counts(n_folds):
    with pytest.raises(ValueError, match="folds"):
        case_folds(np.arange(10), n_folds, seed=0)
