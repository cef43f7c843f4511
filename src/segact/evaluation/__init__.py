"""Evaluation of predictions: the threshold sweep (confusion counts, Dice, NLL, calibration at
every threshold) and the aggregation of a fold's epochs (the paper's, and the degenerate rule)."""
