"""Apply a run's saved models to new images or volumes (``segact-predict``).

Each input is preprocessed by the data package's own functions (the loader's decoding and
resizing, the recorded normalisation), the folds' probabilities are averaged, resized back to
the input's resolution bilinearly and thresholded. Outputs are staged in a hidden folder inside
``--out`` and moved into place only when every input succeeded, so a bad input writes nothing.

``--out`` never is, holds or lies inside the input or the run folder, and a file there is
replaced only if an earlier ``segact-predict`` wrote it (listed with its SHA-256 in the folder's
manifest, ``.segact-predict.json``) and it is unchanged since: predicting never destroys data.
"""

from __future__ import annotations

import gzip
import logging
import os
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from tqdm.auto import tqdm

from segact.data import formats
from segact.data.cache import conform
from segact.data.format import DatasetFormat, Sample
from segact.errors import DatasetError, ModelError
from segact.io import atomic_path, read_json, write_json
from segact.runs.folder import file_digest
from segact.runs.models import Ensemble, load_ensemble
from segact.training.engine import resolve_device

log = logging.getLogger(__name__)

MSD_IMAGES = "imagesTr"
PROBABILITY_SUFFIX = "_probability"
PNG_16BIT = 65535
MANIFEST = ".segact-predict.json"  # in --out: the files segact-predict wrote there, and SHA-256


@dataclass(frozen=True)
class PredictOptions:
    fold: int | None = None  # one fold's model; None: every fold's, probabilities averaged
    threshold: float | None = None  # None: the mean of the folds' reported thresholds
    argmax: bool = False  # softmax2: foreground where it is the more probable class
    probabilities: bool = False  # also write the probability maps
    overwrite: bool = False
    device: str = "auto"
    batch_size: int | None = None  # None: the run's eval.batch_size (its very probabilities)
    progress: bool = True


@dataclass(frozen=True)
class Input:
    path: Path
    format: DatasetFormat  # the first registered format of its kind of input

    @property
    def volume(self) -> bool:
        return self.format.volumes

    @property
    def name(self) -> str:
        lower = self.path.name.lower()
        suffix = next((s for s in self.format.suffixes if lower.endswith(s)), self.path.suffix)
        return self.path.name[: len(self.path.name) - len(suffix)]


@dataclass
class Prediction:
    input: Input
    probability: np.ndarray  # float32 at the input's resolution: (H, W), or the volume's shape
    volume: Any = None  # what the outputs are written like (a NIfTI input's header); None: PNG


def _format(path: Path) -> DatasetFormat | None:
    """The format whose reader takes ``path`` (by its suffix), None for none."""
    lower = path.name.lower()
    return next((f for f in formats.kinds() if lower.endswith(f.suffixes)), None)


def _readable() -> str:
    return " or ".join(f"{f.what} ({', '.join(f.suffixes)})" for f in formats.kinds())


def find_inputs(source: Path) -> list[Input]:
    """An input file, or a folder of them (an MSD task: its ``imagesTr/``)."""
    if source.is_file():
        fmt = _format(source)
        if fmt is None:
            raise ModelError(f"{source} is none of the inputs segact-predict reads: {_readable()}")
        return [Input(source, fmt)]
    if not source.is_dir():
        raise ModelError(f"{source}: no such file or folder")
    folder = source / MSD_IMAGES if (source / MSD_IMAGES).is_dir() else source
    files = [p for p in sorted(folder.iterdir()) if not p.name.startswith(".") and p.is_file()]
    inputs = [Input(p, fmt) for p in files if (fmt := _format(p)) is not None]
    if not inputs:
        raise ModelError(f"{folder} holds no {_readable()}: give a folder of them, or one file")
    return inputs


def check_inputs(inputs: list[Input], card: dict[str, Any]) -> None:
    trained = formats.by_kind(card["input"]["kind"])
    wrong = [i for i in inputs if i.format.kind != trained.kind]
    if wrong:
        raise ModelError(
            f"{wrong[0].path} is one of {wrong[0].format.what}, but the run's model was trained "
            f"on {trained.what}"
        )


def in_run_layout(pixels: np.ndarray, card: dict[str, Any], source: Path) -> np.ndarray:
    """(N, C, h, w) pixels with the model's channels and in the stored value scale: a gray image
    repeated where training did that (``dataset.gray_to_rgb``), 8-bit values as floats in [0, 1]
    for a model of float data, float values times 255 for a model of 8-bit data."""
    have, channels = pixels.shape[1], int(card["in_channels"])
    repeat = have == 1 and channels == 3 and card["input"].get("gray_to_rgb", False)
    if have != channels and not repeat:
        raise ModelError(
            f"{source} has {have} channel(s), but the run's model takes {channels}: give "
            f"{channels}-channel input like the images it was trained on"
        )
    if card["pixels"] == "uint8" and pixels.dtype != np.uint8:
        return np.repeat(pixels, channels // have, axis=1).astype(np.float32) * np.float32(255)
    return conform(pixels, channels, np.dtype(card["pixels"]))


def _unreadable(source: Path, error: DatasetError) -> ModelError:
    cause = error.__cause__ or error
    return ModelError(f"{source} cannot be read ({type(cause).__name__}: {cause})")


def _read(item: Input, card: dict[str, Any]) -> Sample:
    """The input as its format's reader preprocesses it, in the run's pixel layout."""
    try:
        sample = item.format.reader(item.path, card["input"], tuple(card["input_size"]))
    except DatasetError as error:
        raise _unreadable(item.path, error) from None
    sample.pixels = in_run_layout(sample.pixels, card, item.path)
    return sample


def stack_prediction(ensemble: Ensemble, items: list[Input], batch_size: int) -> list[Prediction]:
    """The inputs' slices predicted as one stack, each input's probabilities then restored to
    its own resolution (images: resized back; volumes: resized in plane and stacked)."""
    samples = [_read(item, ensemble.card) for item in items]
    probability = ensemble.probabilities(np.concatenate([s.pixels for s in samples]), batch_size)
    ends = np.cumsum([len(s.pixels) for s in samples])[:-1]
    return [
        Prediction(item, sample.restore(part), sample.like)
        for item, sample, part in zip(items, samples, np.split(probability, ends), strict=True)
    ]


def predictions(ensemble: Ensemble, inputs: list[Input], batch_size: int) -> Iterator[Prediction]:
    """Each input's probabilities at its own resolution, in order (images a batch at a time,
    a volume's slices on their own)."""
    images = [item for item in inputs if not item.volume]
    for start in range(0, len(images), batch_size):
        yield from stack_prediction(ensemble, images[start : start + batch_size], batch_size)
    for item in inputs:
        if item.volume:
            yield from stack_prediction(ensemble, [item], batch_size)


def output_names(item: Input, probabilities: bool) -> list[str]:
    suffix = ".nii.gz" if item.volume else ".png"
    names = [f"{item.name}{suffix}"]
    return [*names, f"{item.name}{PROBABILITY_SUFFIX}{suffix}"] if probabilities else names


def _same(a: Path, b: Path) -> bool:
    """One file or folder (resolved paths equal, or one inode: case-insensitive disks, mounts)."""
    try:
        return a == b or os.path.samefile(a, b)
    except OSError:  # one of them does not exist
        return False


def check_out_folder(run_dir: Path, source: Path, out: Path, inputs: list[Input]) -> None:
    """An ``--out`` that is, holds or lies inside the input, an input file or the run folder
    (symlinks resolved): refused, so masks never replace inputs or enter a run folder."""
    target = out.resolve()
    places = [("the input", source), ("the run folder", run_dir)]
    places += [("the input", item.path) for item in inputs if item.path.is_symlink()]  # targets
    for what, path in places:
        place = path.resolve()
        if _same(target, place):
            relation = "is"
        elif any(_same(target, parent) for parent in place.parents):
            relation = "holds"
        elif any(_same(parent, place) for parent in target.parents):
            relation = "lies inside"
        else:
            continue
        raise ModelError(
            f"--out {out} {relation} {what} {path}: give --out a new folder outside the input "
            "and the run folder"
        )


def written_before(out: Path) -> dict[str, str]:
    """The files earlier ``segact-predict`` commands wrote into ``out``: name -> SHA-256 (none
    where the manifest is missing or unreadable: every file there is then someone else's)."""
    try:
        files = read_json(out / MANIFEST)["files"]
    except (OSError, ValueError, KeyError, TypeError):
        return {}
    return {str(k): str(v) for k, v in files.items()} if isinstance(files, dict) else {}


def check_outputs(
    inputs: list[Input], out: Path, options: PredictOptions, before: dict[str, str]
) -> None:
    """Two inputs writing one file, or a file there already: refused, unless ``--overwrite`` and
    an earlier segact-predict wrote it (``before``) and it is unchanged since."""
    seen: dict[str, Path] = {}
    for item in inputs:
        for name in output_names(item, options.probabilities):
            if name in seen:
                raise ModelError(
                    f"{seen[name]} and {item.path} would both write {out / name}: rename one"
                )
            seen[name] = item.path
            path = out / name
            if not os.path.lexists(path):
                continue
            if name not in before or path.is_symlink() or not path.is_file():
                raise ModelError(
                    f"{path} exists and is no output of segact-predict ({MANIFEST} there does "
                    "not list it): move it away, or choose another --out"
                )
            if file_digest(path) != before[name]:
                raise ModelError(
                    f"{path} changed since segact-predict wrote it: move it away, or choose "
                    "another --out"
                )
            if not options.overwrite:
                raise ModelError(
                    f"{path} exists (an earlier segact-predict wrote it): pass --overwrite to "
                    "replace it, or choose another --out"
                )


def write_outputs(
    prediction: Prediction, threshold: float | None, folder: Path, probabilities: bool
) -> list[Path]:
    """The mask (``threshold``: foreground where p >= it; None: where p > 0.5, the argmax of
    two classes) and, with ``probabilities``, the probability map, into ``folder``."""
    p = prediction.probability
    mask = p > 0.5 if threshold is None else p >= threshold  # compared in float32, like the sweep
    paths = [folder / name for name in output_names(prediction.input, probabilities)]
    if prediction.volume is None:
        quantized = np.rint(p.astype(np.float64) * PNG_16BIT).astype(np.uint16)
        for path, array in zip(
            paths, [mask.astype(np.uint8) * 255, quantized][: len(paths)], strict=True
        ):
            with atomic_path(path) as tmp:
                Image.fromarray(array).save(tmp, format="PNG")
        return paths
    arrays = [mask.astype(np.uint8), p.astype(np.float32)][: len(paths)]
    for path, array in zip(paths, arrays, strict=True):
        write_volume(array, prediction.volume, path)
    return paths


def write_volume(array: np.ndarray, like: Any, path: Path) -> None:
    """``array`` as NIfTI with the affine and header of the input volume ``like``."""
    import nibabel

    header = like.header.copy()
    header.set_data_dtype(array.dtype)
    image = nibabel.Nifti1Image(array, like.affine, header)
    image.header.set_slope_inter(1.0, 0.0)
    with atomic_path(path) as tmp:
        tmp.write_bytes(gzip.compress(image.to_bytes()))


def resolved_device(name: str) -> torch.device:
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ModelError(f"--device {name}: this machine has no CUDA GPU; use --device cpu")
    try:
        return resolve_device(name)
    except RuntimeError as error:
        raise ModelError(f"--device {name}: {error}") from None


def applied(ensemble: Ensemble, options: PredictOptions) -> str:
    """What a prediction applies, in one line: which folds' models, and the threshold."""
    folds = [int(card["fold"]) for card in ensemble.cards]
    if len(folds) == 1:
        models = f"fold {folds[0]}'s model"
    else:
        models = f"the models of folds {', '.join(map(str, folds))} (probabilities averaged)"
    if options.argmax:
        return f"applying {models}, foreground where it is the more probable class (--argmax)"
    if options.threshold is not None:
        return f"applying {models} at threshold {options.threshold:g} (--threshold)"
    own = ", ".join(f"{card['threshold']:.2f}" for card in ensemble.cards)
    why = f"the mean of the folds' thresholds {own}" if len(folds) > 1 else "the fold's threshold"
    return f"applying {models} at threshold {ensemble.threshold:.4g} ({why})"


def predict(run_dir: Path, source: Path, out: Path, options: PredictOptions) -> list[Path]:
    """Predict every input under ``source`` with the run's models; returns the files written."""
    ensemble = load_ensemble(run_dir, options.fold, resolved_device(options.device))
    if options.argmax and ensemble.head.name != "softmax2":
        raise ModelError(f"--argmax needs a softmax2 model; {run_dir} has {ensemble.head.name}")
    inputs = find_inputs(source)
    check_out_folder(run_dir, source, out, inputs)
    check_inputs(inputs, ensemble.card)
    before = written_before(out)
    check_outputs(inputs, out, options, before)
    threshold = ensemble.threshold if options.threshold is None else options.threshold
    batch_size = options.batch_size or int(ensemble.card.get("eval_batch_size", 16))
    log.info("%s", applied(ensemble, options))
    created = not out.exists()
    out.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".segact-predict-", suffix=".tmp", dir=out))
    try:
        staged: list[Path] = []
        bar = tqdm(total=len(inputs), desc="predict", disable=not options.progress, leave=False)
        for prediction in predictions(ensemble, inputs, batch_size):
            cut = None if options.argmax else threshold
            staged += write_outputs(prediction, cut, staging, options.probabilities)
            bar.update()
        bar.close()
        written = {**before, **{path.name: file_digest(path) for path in staged}}
        for path in staged:
            os.replace(path, out / path.name)
        write_json({"tool": "segact-predict", "files": written}, out / MANIFEST)
    except BaseException:
        if created:
            shutil.rmtree(out, ignore_errors=True)
        raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return [out / path.name for path in staged]
