"""The networks' output side: activations (logits -> probabilities), heads (1-channel sigmoid,
2-channel softmax) and losses (with binarization before the loss). Pure tensor maths."""
