"""splits.json: the cases each fold held out, written by the run and read back instead of splitting
again; a run folder from before it splits again, to the same cases."""

from __future__ import annotations

import json

import numpy as np
import pytest

from segact.data.splits import case_folds
from segact.errors import ModelError
from segact.runs.folder import RunFolder

CASES = {
    "names": np.asarray([f"patient{i // 3}" for i in range(15)]),  # 3 images a case
    "numbers": np.asarray([i // 2 for i in range(12)]),  # case numbers (a folder's case_regex)
}


@pytest.mark.parametrize("kind", sorted(CASES))
@pytest.mark.parametrize("shuffle", [True, False])
def test_the_recorded_split_reads_back_as_the_run_made_it(tmp_path, kind, shuffle):
    cases = CASES[kind]
    folds = case_folds(cases, 3, seed=7, shuffle=shuffle)
    run = RunFolder(tmp_path)
    run.write_splits(cases, folds, 7, shuffle)
    recorded = json.loads(run.splits_json.read_text())
    assert recorded["seed"] == 7 and recorded["shuffle"] is shuffle
    assert [f["held_out"] for f in recorded["folds"]] == [
        np.unique(cases[f.val]).tolist() for f in folds
    ]
    for fold in folds:  # another seed given: the file decides, not the seed
        assert np.array_equal(run.held_out(fold.index, cases, 3, 99, shuffle), fold.val)


def test_a_run_folder_without_splits_json_splits_again_as_its_run_did(tmp_path):
    cases = CASES["names"]
    for fold in case_folds(cases, 5, seed=3):
        assert np.array_equal(RunFolder(tmp_path).held_out(fold.index, cases, 5, 3, True), fold.val)


def test_the_file_not_the_seed_says_which_cases_a_fold_held_out(tmp_path):
    cases = CASES["names"]
    run = RunFolder(tmp_path)
    run.splits_json.write_text(
        json.dumps({"folds": [{"fold": 0, "held_out": ["patient4", "patient0"]}]})
    )
    assert run.held_out(0, cases, 2, 0, True).tolist() == [0, 1, 2, 12, 13, 14]


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("{not json", "cannot be read"),
        ('{"folds": []}', "cannot be read"),
        ('{"folds": [{"fold": 0, "held_out": ["patient99"]}]}', "no longer \\(patient99\\)"),
    ],
)
def test_a_damaged_or_stale_splits_json_is_one_clear_error(tmp_path, content, message):
    run = RunFolder(tmp_path)
    run.splits_json.write_text(content)
    with pytest.raises(ModelError, match=message):
        run.held_out(0, CASES["names"], 2, 0, True)


def test_splits_json_is_a_file_of_the_run_folder(tmp_path):
    run = RunFolder(tmp_path)
    run.write_splits(CASES["names"], case_folds(CASES["names"], 2, 0), 0, True)
    assert run.foreign_entries() == []
