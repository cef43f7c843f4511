"""Run folder names a shell and a person can use (issue 33, point 5): no backslash, space, quote
or other special character, at most ``MAX_SUFFIX`` characters, and still one folder per value."""

from __future__ import annotations

import re

from segact.runs.identity import MAX_SUFFIX, folder_suffix

SHELL_SAFE = re.compile(r"[A-Za-z0-9._+=,-]*")


def test_a_value_with_a_space_or_quote_becomes_a_safe_name_with_a_hash():
    name = folder_suffix(["dataset.masks_dir=Ground\\ Truth", "dataset.images_dir=Original"])
    assert SHELL_SAFE.fullmatch(name), name
    assert name.startswith("dataset.images_dir=Original,dataset.masks_dir=Ground_Truth-")
    # a different value that cleans to the same text keeps its own folder
    assert folder_suffix(["dataset.masks_dir='Ground Truth'"]) != folder_suffix(
        ["dataset.masks_dir=Ground_Truth"]
    )


def test_plain_values_keep_their_names_as_committed_runs_have_them():
    overrides = ["trainer=paper", "dataset.image_size=48", "eval.protocol=holdout"]
    assert folder_suffix(overrides) == "dataset.image_size=48,eval.protocol=holdout,trainer=paper"
    assert folder_suffix(["trainer.lr=0.001"]) == "trainer.lr=0.001"


def test_a_long_name_is_cut_with_a_hash_of_the_whole():
    long_a = folder_suffix(["dataset.images_dir=" + "a" * 300])
    long_b = folder_suffix(["dataset.images_dir=" + "a" * 299 + "b"])
    assert len(long_a) == MAX_SUFFIX and SHELL_SAFE.fullmatch(long_a)
    assert long_a != long_b
