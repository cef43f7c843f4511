import math

import numpy as np
import pytest
import torch
from scipy import special, stats

from segact.nn import activations
from segact.nn.activations import EPS
from segact.nn.heads import Sigmoid1, Softmax2, build_activation
from segact.nn.losses import BCELoss

X = torch.linspace(-8, 8, 161, dtype=torch.float64)
x = X.numpy()

REFERENCE = {
    "sigmoid": special.expit(x),
    "arctan": EPS + (1 - 2 * EPS) * (0.5 + np.arctan(x) / math.pi),
    "normal_cdf": (0.5 - EPS) * special.erf(x / math.sqrt(2)) + 0.5,
    "softsign": (0.5 - EPS) * x / (1 + np.abs(x)) + 0.5,
    "inv_sqrt": (0.5 - EPS) * x / np.sqrt(1 + x**2) + 0.5,
    "hardtanh": np.clip(x, EPS, 1 - EPS),
}


@pytest.mark.parametrize("name", sorted(REFERENCE))
def test_formula_matches_reference(name):
    np.testing.assert_allclose(
        activations.get(name)(X).numpy(), REFERENCE[name], rtol=0, atol=1e-12
    )


def test_normal_cdf_is_the_gaussian_cdf_up_to_eps():
    np.testing.assert_allclose(activations.normal_cdf(X).numpy(), stats.norm.cdf(x), atol=2e-7)


def test_linear_is_per_image_min_max():
    z = torch.tensor([[[[-2.0, 0.0], [2.0, 6.0]]], [[[1.0, 1.5], [2.0, 3.0]]]], dtype=torch.float64)
    p = activations.linear(z)
    assert torch.allclose(
        p[0].flatten(), torch.tensor([0.0, 0.25, 0.5, 1.0], dtype=z.dtype) * (1 - 2 * EPS) + EPS
    )
    assert p[1].min().item() == pytest.approx(EPS, abs=1e-15)  # independent of the other image
    assert p[1].max().item() == pytest.approx(1 - EPS, abs=1e-15)


@pytest.mark.parametrize("name", activations.names())
def test_range_is_within_unit_interval(name):
    p = activations.get(name)(torch.linspace(-1e4, 1e4, 1001).view(1, 1, 1, -1))
    assert p.min() >= 0 and p.max() <= 1
    if name != "sigmoid":  # the bounded ones keep eps away from 0 and 1 (in float64)
        p64 = activations.get(name)(
            torch.linspace(-1e4, 1e4, 1001, dtype=torch.float64).view(1, 1, 1, -1)
        )
        assert p64.min() >= EPS - 1e-15 and p64.max() <= 1 - EPS + 1e-15


@pytest.mark.parametrize("name", activations.names())
@pytest.mark.parametrize("logit", [-1e4, 1e4, 0.0, 1e20, -1e20])
def test_gradient_is_finite_at_extreme_logits(name, logit):
    z = torch.tensor([[[[logit, 0.5]]]], requires_grad=True)
    activations.get(name)(z).sum().backward()
    assert torch.isfinite(z.grad).all()


def test_inv_sqrt_does_not_overflow_to_half():
    p = activations.inv_sqrt(torch.tensor([1e20, -1e20]))  # x * x overflows float32
    assert p[0] > 0.999 and p[1] < 1e-6
    p64 = activations.inv_sqrt(torch.tensor([1e200, -1e200], dtype=torch.float64))
    assert p64.tolist() == pytest.approx([1 - EPS, EPS], rel=1e-9)


@pytest.mark.parametrize("name", ["sigmoid", "softsign", "inv_sqrt"])
def test_closed_form_log_probs_equal_log_of_activation(name):
    act = activations.get(name)
    log_p, log_1mp = act.log_probs(X)
    p = act(X)
    torch.testing.assert_close(log_p, torch.log(p))
    torch.testing.assert_close(log_1mp, torch.log1p(-p))


def test_unknown_name_lists_choices():
    with pytest.raises(KeyError, match="arctan"):
        activations.get("tanhh")


def test_softmax2_probability_is_sigmoid_of_logit_difference():
    z = torch.randn(4, 2, 8, 8, dtype=torch.float64) * 5
    head = Softmax2()
    torch.testing.assert_close(head.probability(z), torch.sigmoid(z[:, 1:2] - z[:, 0:1]))
    assert torch.equal(z.argmax(dim=1, keepdim=True) == 1, head.probability(z) > 0.5)


def test_sigmoid1_mask_threshold_zero_on_logits_equals_half_on_probabilities():
    z = torch.randn(2, 1, 16, 16)
    head = Sigmoid1(activations.get("sigmoid"))
    assert torch.equal(head.mask(z), z >= 0)


def test_custom_activation_through_target():
    act = build_activation({"name": "tanh01", "_target_": "torch.sigmoid", "_partial_": True})
    assert act.name == "tanh01"
    torch.testing.assert_close(act(X), torch.sigmoid(X))


INV_SQRT_LOGITS = [0.0, 1.0, 2.0, 5.0, 10.0, 100.0, 1e4]


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_inv_sqrt_bce_falls_toward_zero_for_foreground(dtype):
    """Unlike the paper's inv_square_with_logits, whose y = 1 branch (log(z + sqrt z) instead of
    log(z + x sqrt z)) is lowest at logit 0 and rises toward log 2 as the logit grows."""
    head, loss = Sigmoid1(activations.get("inv_sqrt")), BCELoss()
    values, grads = [], []
    for logit in INV_SQRT_LOGITS:
        z = torch.tensor([[[[logit]]]], dtype=dtype, requires_grad=True)
        value = loss(head, z, torch.ones_like(z))
        value.backward()
        values.append(value.item())
        grads.append(z.grad.item())
    assert all(math.isfinite(v) for v in values + grads)
    assert values[0] == pytest.approx(math.log(2), rel=1e-6)
    assert values[1] == pytest.approx(-math.log(0.5 + (0.5 - EPS) / math.sqrt(2)), rel=1e-5)
    steps = np.diff(values)
    assert (steps <= 0).all()
    if dtype == torch.float64:
        assert (steps < 0).all()  # strictly
    assert 0 <= values[-1] < 2e-7  # the eps bound: f(x) <= 1 - eps, so the loss stays >= ~eps
    # The gradient pushes the logit up; float32 loses it to cancellation beyond logit ~10.
    # (Logit exactly 0: see test_with_logits_gradient_at_logit_zero.)
    strict = len(grads) - 1 if dtype == torch.float64 else INV_SQRT_LOGITS.index(10.0) + 1
    assert all(g <= 0 for g in grads) and all(g < 0 for g in grads[1:strict])


@pytest.mark.parametrize("name", ["softsign", "inv_sqrt"])
def test_with_logits_gradient_at_logit_zero(name):
    z = torch.zeros(1, dtype=torch.float64, requires_grad=True)
    activations.get(name).log_probs(z)[0].sum().backward()
    assert z.grad.item() == pytest.approx(1 - 2 * EPS)
