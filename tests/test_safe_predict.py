"""``segact-predict`` never destroys data and never trusts an edited model (issue 30, items 5
and 6): ``--out`` is never the input or the run folder, nor inside or around either;
``--overwrite`` replaces only unchanged files an earlier segact-predict wrote; Ctrl-C is one line
and exit 130; a card or weights file changed since the run saved it is refused in one line."""

from __future__ import annotations

import hashlib
import json
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image

import segact
from segact.errors import ModelError
from segact.predict import INTERRUPTED, main
from segact.runs.folder import RunFolder, file_digest
from segact.runs.models import load_ensemble, model_hash
from segact.runs.predict import MANIFEST
from tests import test_predict
from tests.test_predict import fold_row, validation_images

FOLD = 1
trained = test_predict.trained  # the same tiny run with saved models, built for this module


def checksums(folder: Path) -> dict[str, str]:
    """The SHA-256 of every file under ``folder`` (or of ``folder`` itself, a file)."""
    files = [folder] if folder.is_file() else sorted(p for p in folder.rglob("*") if p.is_file())
    return {str(p): hashlib.sha256(p.read_bytes()).hexdigest() for p in files}


def predict_args(*args: object) -> list[str]:
    return [*map(str, args), "--no-progress"]


def refused(capsys, *args: object, code: int = 2) -> str:
    """The one error line of a refused ``segact-predict``."""
    capsys.readouterr()
    with pytest.raises(SystemExit) as stopped:
        main(predict_args(*args))
    assert stopped.value.code == code
    err = capsys.readouterr().err
    assert err.startswith("segact-predict: error: ") and err.count("\n") == 1, err
    return err


def copied(trained, tmp_path: Path) -> Path:
    """A copy of the trained run, for a test to damage."""
    return Path(shutil.copytree(trained[0], tmp_path / "runs" / "run"))


def fold_masks_dice(masks_dir: Path, names: list[str], truth: np.ndarray) -> float:
    """The pooled Dice of the masks segact-predict wrote for ``names`` (as the sweep counts)."""
    masks = np.stack([np.asarray(Image.open(masks_dir / f"{n}.png")) == 255 for n in names])
    table = segact.threshold_sweep(masks.astype(np.float32), truth, [0.5])
    return float(table["dice"].iloc[0])


# --- item 6: a model card or weights file edited by hand -------------------------------------


@pytest.mark.slow
def test_summary_records_a_hash_of_each_fold_model(trained):
    run = RunFolder(trained[0])
    summary = json.loads(run.summary_json.read_text())
    cards = {str(k): json.loads(run.model_card(k).read_text()) for k in range(2)}
    assert summary["models"] == {k: model_hash(card) for k, card in cards.items()}
    assert all(
        card["sha256"] == file_digest(run.model_weights(int(k))) for k, card in cards.items()
    )


def _edit_card(run: Path, change: Callable[[dict[str, Any]], None]) -> Path:
    path = RunFolder(run).model_card(FOLD)
    card = json.loads(path.read_text())
    change(card)
    path.write_text(json.dumps(card, indent=2))
    return path


EDITS: dict[str, Callable[[dict[str, Any]], None]] = {
    "threshold": lambda card: card.update(threshold=0.05),
    "normalisation mean": lambda card: card["normalization"]["mean"].__setitem__(0, 0.3),
    "activation": lambda card: card.update(activation={"name": "arctan"}),
}


@pytest.mark.slow
def test_an_edited_card_is_refused_and_the_intact_one_gives_the_fold_dice(
    trained, tmp_path, capsys
):
    run = copied(trained, tmp_path)
    folder, truth = validation_images(trained, FOLD, tmp_path / "val")
    names = sorted(p.stem for p in folder.iterdir())
    card = RunFolder(run).model_card(FOLD)
    original = card.read_bytes()
    out = tmp_path / "out"
    for what, change in EDITS.items():
        path = _edit_card(run, change)
        err = refused(capsys, run, folder, "--out", out, "--fold", FOLD)
        assert f"{path}: fold {FOLD}'s model card changed since it was saved" in err, what
        assert not out.exists()
        card.write_bytes(original)
    # the card as saved: the masks give exactly the Dice the fold recorded at its threshold
    main(predict_args(run, folder, "--out", out, "--fold", FOLD))
    assert fold_masks_dice(out, names, truth) == fold_row(run, FOLD)["best_dice"]


@pytest.mark.slow
def test_edited_weights_are_refused_naming_the_weights_or_the_card(trained, tmp_path, capsys):
    run = copied(trained, tmp_path)
    image = next((trained[3] / "images").iterdir())
    weights = RunFolder(run).model_weights(FOLD)
    data = bytearray(weights.read_bytes())
    data[-1] ^= 0x01  # the last byte of a tensor: the file still loads
    weights.write_bytes(bytes(data))
    err = refused(capsys, run, image, "--out", tmp_path / "out")
    assert f"{weights}: fold {FOLD}'s weights changed since they were saved" in err
    # the card's record of its weights edited to match: the card no longer has its saved hash
    path = _edit_card(run, lambda card: card.update(sha256=file_digest(weights)))
    err = refused(capsys, run, image, "--out", tmp_path / "out")
    assert f"{path}: fold {FOLD}'s model card changed since it was saved" in err
    with pytest.raises(ModelError, match="model card changed"):  # what the report's overlays load
        load_ensemble(run, FOLD, torch.device("cpu"))
    assert not (tmp_path / "out").exists()


@pytest.mark.slow
def test_a_run_saved_before_model_hashes_is_read_with_one_warning(trained, tmp_path, capsys):
    run = copied(trained, tmp_path)
    summary = json.loads((run / "summary.json").read_text())
    del summary["models"]
    (run / "summary.json").write_text(json.dumps(summary))
    image = next((trained[3] / "images").iterdir())
    main(predict_args(trained[0], image, "--out", tmp_path / "new", "--probabilities"))
    capsys.readouterr()
    main(predict_args(run, image, "--out", tmp_path / "old", "--probabilities"))
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1 and err[0].startswith("segact-predict: warning: "), err
    assert "records no hash of the model of fold(s) 0, 1" in err[0]
    assert "cannot be verified" in err[0]
    for name in (image.name, f"{image.stem}_probability.png"):  # the same numbers as before
        assert file_digest(tmp_path / "old" / name) == file_digest(tmp_path / "new" / name)


# --- item 5: --out never destroys the input or the run ---------------------------------------


@pytest.mark.slow
def test_an_out_that_is_holds_or_lies_in_the_input_or_the_run_is_refused(trained, tmp_path, capsys):
    run = copied(trained, tmp_path)
    folder, _ = validation_images(trained, FOLD, tmp_path / "data" / "val")
    single = next(folder.iterdir())
    (tmp_path / "link").symlink_to(folder, target_is_directory=True)
    before = {**checksums(folder), **checksums(run)}
    cases = [
        (folder, folder, "is the input"),
        (folder, tmp_path / "link", "is the input"),  # a symlink to it
        (folder, folder / "masks", "lies inside the input"),
        (folder, tmp_path / "data", "holds the input"),
        (single, folder, "holds the input"),  # one file: --out its own folder
        (single, single, "is the input"),
        (folder, run, "is the run folder"),
        (folder, run / "masks", "lies inside the run folder"),
        (folder, tmp_path / "runs", "holds the run folder"),
        (folder, tmp_path, "holds the input"),
    ]
    for source, out, relation in cases:
        for overwrite in ([], ["--overwrite"]):
            err = refused(capsys, run, source, "--out", out, *overwrite)
            assert f"--out {out} {relation}" in err and "--overwrite" not in err, err
    assert {**checksums(folder), **checksums(run)} == before  # nothing changed, nothing added
    assert not (folder / "masks").exists() and not (run / "masks").exists()
    assert RunFolder(run).foreign_entries() == []  # segact-train still takes the run


@pytest.mark.slow
def test_overwrite_replaces_only_unchanged_files_segact_predict_wrote(trained, tmp_path, capsys):
    run = trained[0]
    folder, _ = validation_images(trained, FOLD, tmp_path / "val")
    names = sorted(p.stem for p in folder.iterdir())
    out = tmp_path / "out"
    out.mkdir()
    (out / "notes.txt").write_text("the user's own notes")
    foreign = out / f"{names[0]}.png"  # a file of the user's, named like a mask
    Image.fromarray(np.full((4, 4), 7, np.uint8)).save(foreign)
    kept = checksums(out)
    for overwrite in ([], ["--overwrite"]):
        err = refused(capsys, run, folder, "--out", out, *overwrite)
        assert f"{foreign} exists and is no output of segact-predict" in err
        assert "--overwrite" not in err
    assert checksums(out) == kept
    foreign.unlink()
    del kept[str(foreign)]
    main(predict_args(run, folder, "--out", out))
    manifest = json.loads((out / MANIFEST).read_text())["files"]
    assert manifest == {f"{n}.png": file_digest(out / f"{n}.png") for n in names}
    assert "--overwrite to replace it" in refused(capsys, run, folder, "--out", out)
    main(predict_args(run, folder, "--out", out, "--overwrite", "--probabilities"))
    assert len(json.loads((out / MANIFEST).read_text())["files"]) == 2 * len(names)
    edited = out / f"{names[1]}.png"  # a mask corrected by hand since
    Image.fromarray(np.zeros((24, 20), np.uint8)).save(edited)
    kept |= checksums(edited)
    err = refused(capsys, run, folder, "--out", out, "--overwrite")
    assert f"{edited} changed since segact-predict wrote it" in err and "--overwrite" not in err
    assert {k: v for k, v in checksums(out).items() if k in kept} == kept


# --- Ctrl-C ---------------------------------------------------------------------------------


def test_ctrl_c_is_one_line_and_exit_130(tmp_path, capsys, monkeypatch):
    def interrupted(*args: object) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr("segact.runs.predict.predict", interrupted)
    with pytest.raises(SystemExit) as stopped:
        main(predict_args(tmp_path, tmp_path, "--out", tmp_path / "out"))
    assert stopped.value.code == INTERRUPTED == 130
    assert capsys.readouterr().err == "segact-predict: interrupted (Ctrl-C)\n"


STALLED = """
import sys, time
from pathlib import Path
import segact.runs.predict as work

def stalled(*args, **kwargs):
    Path(sys.argv[1]).touch()
    for _ in range(3000):  # short sleeps: a SIGINT the kernel hands to another thread (torch's)
        time.sleep(0.1)    # is acted on by the main thread at its next bytecode, not in 300 s

work.write_outputs = stalled
from segact.predict import main
main(sys.argv[2:])
"""


@pytest.mark.slow
def test_sigint_while_predicting_is_one_line_130_and_writes_nothing(trained, tmp_path):
    folder, _ = validation_images(trained, FOLD, tmp_path / "val")
    marker, out = tmp_path / "predicting", tmp_path / "out"
    args = [marker, trained[0], folder, "--out", out, "--no-progress"]
    command = [sys.executable, "-c", STALLED, *map(str, args)]
    process = subprocess.Popen(  # Ctrl-C as in a terminal: an xdist worker ignores SIGINT, and
        command,  # a Python started with SIGINT ignored installs no KeyboardInterrupt for it
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    try:
        deadline = time.monotonic() + 240
        while not marker.exists() and process.poll() is None and time.monotonic() < deadline:
            time.sleep(0.1)
        assert marker.exists(), process.communicate(timeout=60)
        assert out.exists()  # predicting: its staging folder is there
        process.send_signal(signal.SIGINT)
        _, err = process.communicate(timeout=120)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 130, err
    assert err.splitlines() == ["segact-predict: interrupted (Ctrl-C)"], err
    assert not out.exists()  # the folder it made, gone with the staged files
