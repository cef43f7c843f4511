import pytest
import torch

from segact.config import instantiate_named
from segact.nn import activations
from segact.nn.heads import Sigmoid1, Softmax2
from segact.nn.losses import (
    BCELoss,
    BoundaryLoss,
    CrossEntropyLoss,
    DiceLoss,
    MSELoss,
    TverskyLoss,
    binarize_probability,
    soft_boundary,
    soft_dice_score,
    soft_tversky_score,
)
from tests.helpers import compose_config


def head(name: str) -> Sigmoid1:
    return Sigmoid1(activations.get(name))


def naive_bce(p: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return -(y * torch.log(p) + (1 - y) * torch.log(1 - p)).mean()


@pytest.mark.parametrize("name", ["sigmoid", "softsign", "inv_sqrt", "arctan", "normal_cdf"])
def test_stable_bce_equals_naive_where_naive_is_finite(name):
    z = torch.linspace(-6, 6, 97, dtype=torch.float64).view(1, 1, 1, -1)
    y = (torch.arange(97) % 2).to(z.dtype).view_as(z)
    h = head(name)
    torch.testing.assert_close(BCELoss()(h, z, y), naive_bce(h.probability(z), y))


@pytest.mark.parametrize("h", [head("sigmoid"), Softmax2()], ids=["sigmoid1", "softmax2"])
def test_stable_bce_stays_finite_where_naive_is_not(h):
    z = torch.tensor([[[[-200.0, 200.0]]]]).repeat(1, h.out_channels, 1, 1)
    if h.out_channels == 2:
        z[:, 0] *= -1
    z.requires_grad_(True)
    y = torch.tensor([[[[1.0, 0.0]]]])  # both confidently wrong: p rounds to exactly 0 and 1
    assert not torch.isfinite(naive_bce(h.probability(z.detach()), y))
    loss = BCELoss()(h, z, y)
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(z.grad).all()
    assert loss.item() == pytest.approx(200 * h.out_channels, rel=1e-3)


@pytest.mark.parametrize("name", ["softsign", "inv_sqrt"])
def test_closed_form_bce_is_accurate_at_extreme_logits(name):
    """float32 with-logits BCE matches a float64 reference where 1 - p cancels in float32."""
    z = torch.tensor([[[[-1e7, 1e7, 3e4, -5e5]]]])
    y = torch.tensor([[[[1.0, 0.0, 0.0, 1.0]]]])
    reference = naive_bce(head(name).probability(z.double()), y.double())
    assert BCELoss()(head(name), z, y).item() == pytest.approx(reference.item(), rel=1e-5)


def test_bce_clamps_activations_without_closed_form():
    z = torch.tensor([[[[-1e6, 1e6]]]])
    y = torch.tensor([[[[1.0, 0.0]]]])
    assert torch.isfinite(BCELoss()(head("hardtanh"), z, y))


def test_softmax2_bce_and_ce_agree():
    z = torch.randn(2, 2, 8, 8, dtype=torch.float64)
    y = (torch.rand(2, 1, 8, 8) > 0.5).double()
    torch.testing.assert_close(CrossEntropyLoss()(Softmax2(), z, y), BCELoss()(Softmax2(), z, y))


def test_dice_by_hand():
    p = torch.tensor([[[[0.5, 1.0], [0.0, 0.25]]]])
    y = torch.tensor([[[[1.0, 1.0], [0.0, 0.0]]]])
    # 2 * (0.5 + 1) / (1.75 + 2) = 0.8
    assert soft_dice_score(p, y).item() == pytest.approx(0.8)
    assert DiceLoss()(
        head("sigmoid"), torch.logit(p.clamp(1e-6, 1 - 1e-6)), y
    ).item() == pytest.approx(0.2, abs=1e-5)
    assert soft_dice_score(p, y, smooth=1.0).item() == pytest.approx(4.0 / 4.75)


def test_dice_batch_versus_per_image():
    p = torch.tensor([[[[1.0, 0.0]]], [[[1.0, 1.0]]]])
    y = torch.tensor([[[[1.0, 0.0]]], [[[1.0, 0.0]]]])
    assert soft_dice_score(p, y).item() == pytest.approx(2 * 2 / (3 + 2))
    assert soft_dice_score(p, y, per_image=True).tolist() == pytest.approx([1.0, 2 / 3])


@pytest.mark.parametrize("per_image", [False, True])
@pytest.mark.parametrize("smooth", [0.0, 1.0])
def test_dice_loss_on_empty_masks_is_finite(per_image, smooth):
    z = torch.full((2, 1, 4, 4), -3.0, requires_grad=True)
    y = torch.zeros(2, 1, 4, 4)
    for act in ("sigmoid", "hardtanh", "linear"):
        loss = DiceLoss(smooth=smooth, per_image=per_image)(head(act), z, y)
        loss.backward()
        assert torch.isfinite(loss) and torch.isfinite(z.grad).all()
    exact_zero = DiceLoss(smooth=smooth, per_image=per_image).loss_from_prob(torch.zeros_like(y), y)
    assert torch.isfinite(exact_zero)


def test_tversky_by_hand_and_equal_to_dice_at_half():
    p = torch.tensor([[[[0.5, 1.0], [0.0, 0.25]]]])
    y = torch.tensor([[[[1.0, 1.0], [0.0, 0.0]]]])
    # TP = 1.5, FP = 0.25, FN = 0.5
    assert soft_tversky_score(p, y, 0.3, 0.7).item() == pytest.approx(1.5 / (1.5 + 0.075 + 0.35))
    assert soft_tversky_score(p, y, 0.5, 0.5).item() == pytest.approx(soft_dice_score(p, y).item())
    assert TverskyLoss(alpha=0.5, beta=0.5).loss_from_prob(p, y).item() == pytest.approx(0.2)


def test_mse_by_hand():
    p = torch.tensor([[[[0.5, 1.0]]]])
    y = torch.tensor([[[[1.0, 1.0]]]])
    assert MSELoss().loss_from_prob(p, y).item() == pytest.approx(0.125)


def _gradient(loss_module, act: str = "sigmoid") -> torch.Tensor:
    torch.manual_seed(0)
    z = torch.randn(2, 1, 8, 8, requires_grad=True)
    y = (torch.rand(2, 1, 8, 8) > 0.5).float()
    loss_module(head(act), z, y).backward()
    return z.grad


@pytest.mark.parametrize("loss_cls", [DiceLoss, BCELoss, MSELoss, TverskyLoss, BoundaryLoss])
def test_hard_binarize_gives_exactly_zero_gradient_and_ste_does_not(loss_cls):
    assert torch.count_nonzero(_gradient(loss_cls(binarize="hard"))) == 0
    assert torch.count_nonzero(_gradient(loss_cls(binarize="ste"))) > 0
    assert torch.count_nonzero(_gradient(loss_cls(binarize="none"))) > 0


@pytest.mark.parametrize("mode", ["hard", "ste"])
def test_hard_binarize_leaves_every_weight_as_it_was_but_batchnorm_statistics_move(mode):
    """Why a hard run's validation Dice still wanders a little: training-mode forward passes
    update BatchNorm's running mean and variance, gradient or not; the weights stay put."""
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3, padding=1), torch.nn.BatchNorm2d(4),
                                torch.nn.Conv2d(4, 1, 1))  # fmt: skip
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    weights = {k: v.clone() for k, v in model.named_parameters()}
    running_mean = model[1].running_mean.clone()
    loss_fn = DiceLoss(binarize=mode)
    for _ in range(3):
        x, y = torch.randn(4, 1, 8, 8) + 2, (torch.rand(4, 1, 8, 8) > 0.5).float()
        optimizer.zero_grad()
        loss_fn(head("sigmoid"), model(x), y).backward()
        optimizer.step()
    moved = [k for k, v in model.named_parameters() if not torch.equal(v, weights[k])]
    assert moved == ([] if mode == "hard" else list(weights))
    assert not torch.equal(model[1].running_mean, running_mean)


def test_ste_forward_is_hard_and_backward_is_identity():
    p = torch.tensor([0.2, 0.5, 0.7], requires_grad=True)
    out = binarize_probability(p, "ste")
    assert out.tolist() == [0.0, 1.0, 1.0]
    out.sum().backward()
    assert p.grad.tolist() == [1.0, 1.0, 1.0]


def test_unknown_binarize_mode():
    """The config schema rejects it while composing; direct Python use fails at the first call."""
    with pytest.raises(ValueError, match="ste"):
        DiceLoss(binarize="soft")(head("sigmoid"), torch.zeros(1, 1, 2, 2), torch.ones(1, 1, 2, 2))


def _square_mask() -> torch.Tensor:
    """A 4x4 square (rows and columns 2..5) in an 8x8 mask, shape (1, 1, 8, 8)."""
    mask = torch.zeros(1, 1, 8, 8)
    mask[..., 2:6, 2:6] = 1.0
    return mask


def test_boundary_of_a_square_is_its_inner_and_outer_ring():
    # width 1: dilation (rows/cols 1..6) minus erosion (rows/cols 3..4)
    expected = torch.tensor(
        [
            [0, 0, 0, 0, 0, 0, 0, 0],
            [0, 1, 1, 1, 1, 1, 1, 0],
            [0, 1, 1, 1, 1, 1, 1, 0],
            [0, 1, 1, 0, 0, 1, 1, 0],
            [0, 1, 1, 0, 0, 1, 1, 0],
            [0, 1, 1, 1, 1, 1, 1, 0],
            [0, 1, 1, 1, 1, 1, 1, 0],
            [0, 0, 0, 0, 0, 0, 0, 0],
        ],
        dtype=torch.float32,
    ).view(1, 1, 8, 8)
    assert torch.equal(soft_boundary(_square_mask(), 1), expected)
    # width 2: the 2-pixel rings reach the image border outside and fill the square inside
    assert torch.equal(soft_boundary(_square_mask(), 2), torch.ones(1, 1, 8, 8))


@pytest.mark.parametrize("width", [1, 2, 3])
@pytest.mark.parametrize("fill", [0.0, 1.0])
def test_boundary_of_empty_and_full_masks_is_zero_and_keeps_the_shape(width, fill):
    mask = torch.full((2, 1, 7, 6), fill)
    boundary = soft_boundary(mask, width)
    assert boundary.shape == mask.shape and torch.count_nonzero(boundary) == 0


def test_boundary_width_below_one_is_rejected():
    with pytest.raises(ValueError, match="width"):
        soft_boundary(_square_mask(), 0)
    with pytest.raises(ValueError, match="width"):
        BoundaryLoss(width=0)


def test_boundary_loss_is_region_dice_plus_weighted_boundary_dice():
    torch.manual_seed(0)
    z = torch.randn(2, 1, 8, 8)
    y = _square_mask().repeat(2, 1, 1, 1)
    plain_dice = DiceLoss(smooth=1.0)(head("sigmoid"), z, y)
    torch.testing.assert_close(
        BoundaryLoss(weight=0.0, smooth=1.0)(head("sigmoid"), z, y), plain_dice
    )
    weighted = BoundaryLoss(weight=2.0, smooth=1.0)(head("sigmoid"), z, y)
    p = head("sigmoid").probability(z)
    edge_dice = 1 - soft_dice_score(soft_boundary(p, 1), soft_boundary(y, 1), smooth=1.0)
    assert torch.isfinite(weighted)
    torch.testing.assert_close(weighted, plain_dice + 2.0 * edge_dice)
    assert BoundaryLoss().loss_from_prob(y, y).item() == pytest.approx(0.0, abs=1e-6)


def test_boundary_loss_config_defaults():
    loss = instantiate_named(compose_config("loss=boundary").loss)
    assert isinstance(loss, BoundaryLoss)
    assert (loss.weight, loss.width, loss.smooth, loss.per_image) == (1.0, 1, 0.0, False)
    assert (loss.binarize, loss.threshold) == ("none", 0.5)
