"""Heads: how logits become probabilities and masks."""

import torch

from segact.nn.heads import Softmax2, argmax_counts


def test_argmax_equals_probability_rule_except_exact_ties():
    logits = torch.randn(3, 2, 16, 16)
    logits[0, 1, :4] = logits[0, 0, :4]  # 64 exact ties
    pixels, disagreements, ties = argmax_counts(logits).tolist()
    assert pixels == 3 * 16 * 16 and ties == 64
    # argmax gives a tie to background (channel 0); p = 0.5 >= 0.5 calls it foreground.
    assert disagreements == ties


def test_softmax2_mask_is_p_at_least_half():
    logits = torch.randn(2, 2, 8, 8)
    head = Softmax2()
    assert torch.equal(head.mask(logits), head.probability(logits) >= 0.5)
