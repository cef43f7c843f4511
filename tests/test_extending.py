"""docs/extending.md, followed: a new activation, a new loss and a new dataset format, each added
the way the guide says (a plugin module in the ``segact_plugins`` namespace package and, for the
format, one YAML option on ``hydra.searchpath``), with nothing in src/ or configs/ edited. They
train through the real ``segact-train``, appear in the result files, the format's files are in
the data fingerprint, and ``segact-predict`` reads the format's inputs."""

from __future__ import annotations

import importlib
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from segact.data import formats
from segact.data.fingerprint import dataset_fingerprint
from segact.nn import activations, losses
from segact.runs.folder import RunFolder
from segact.runs.registration import load_plugins
from tests.helpers import TINY

PLUGIN = '''
"""A plugin: an activation, a loss and a dataset format (.npy files: image and mask stacked)."""

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from segact.data import formats
from segact.data.base import Stored, checked_dataset
from segact.data.format import DatasetConfig, DatasetFormat, Sample
from segact.data.rows import MemoryRows
from segact.nn import activations, losses


def half_tanh(x):
    return (0.5 - activations.EPS) * torch.tanh(x) + 0.5


activations.register(activations.Activation("half_tanh", half_tanh))


class L1Loss(losses.SegmentationLoss):
    def loss_from_prob(self, prob, target):
        return (prob - target).abs().mean()


@losses.register
@dataclass
class L1LossConfig(losses.LossConfig):
    _target_: str = "segact_plugins.npy_plugin.L1Loss"
    name: str = "l1"


@dataclass
class NpyDatasetConfig(DatasetConfig):
    _target_: str = "segact_plugins.npy_plugin.load_npy"
    name: str = "npy"
    root: str | None = None
    normalize: str = "dataset"


def npy_files(root):
    folder = Path(root)
    return folder, [(p.stem, p, p) for p in sorted(folder.glob("*.npy"))]


def load_npy(root, normalize="dataset"):
    _, files = npy_files(root)
    arrays = np.stack([np.load(path) for _, path, _ in files])  # (N, 2, H, W)
    names = np.asarray([name for name, _, _ in files])
    images = MemoryRows(arrays[:, :1].astype(np.float32))
    masks = MemoryRows(arrays[:, 1:].astype(np.uint8))
    return checked_dataset("npy", Stored(images, masks, {"names": names}), names, normalize, root)


def read_npy(path, settings, size):
    image = np.load(path)[:1].astype(np.float32)  # any mask channel is not read
    return Sample(image[None], lambda probability: probability[0])


formats.register(
    DatasetFormat(NpyDatasetConfig, npy_files, read_npy, "npy", (".npy",), what="npy arrays")
)
'''

OPTION = """
defaults:
  - /schema/dataset/npy@_here_
  - _self_
"""


def _write_plugin(where: Path) -> None:
    (where / "segact_plugins").mkdir(parents=True)
    (where / "segact_plugins" / "npy_plugin.py").write_text(textwrap.dedent(PLUGIN))
    (where / "configs" / "dataset").mkdir(parents=True)
    (where / "configs" / "dataset" / "npy.yaml").write_text(OPTION)


def _write_data(root: Path, n: int = 6, size: int = 32) -> None:
    root.mkdir()
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:size, 0:size]
    for i in range(n):
        cy, cx, r = rng.uniform(8, 24), rng.uniform(8, 24), rng.uniform(4, 9)
        mask = ((yy - cy) ** 2 + (xx - cx) ** 2 < r**2).astype(np.float32)
        image = mask * 0.6 + rng.uniform(0, 0.4, (size, size))
        np.save(root / f"case{i}.npy", np.stack([image, mask]).astype(np.float32))


@pytest.fixture
def plugin(tmp_path, monkeypatch):
    """The plugin written into tmp_path and imported here too; the registries as they were
    after the test."""
    _write_plugin(tmp_path / "plugin")
    monkeypatch.syspath_prepend(str(tmp_path / "plugin"))
    importlib.invalidate_caches()
    registries = (activations.REGISTRY, losses.LOSSES, formats.FORMATS)
    before = [dict(r) for r in registries]
    assert "segact_plugins.npy_plugin" in load_plugins()
    yield tmp_path / "plugin"
    for registry, kept in zip(registries, before, strict=True):
        registry.clear()
        registry.update(kept)
    for name in [m for m in sys.modules if m.startswith("segact_plugins")]:
        del sys.modules[name]


def test_a_format_without_a_lister_is_refused_when_registered(plugin):
    fmt = formats.FORMATS["npy"]
    broken = type(fmt)(fmt.schema, None, fmt.reader, "npy", fmt.suffixes)
    with pytest.raises(ValueError, match="no lister"):
        formats.register(broken)


def test_the_plugin_registers_everything_once(plugin):
    assert "half_tanh" in activations.names()
    assert "l1" in losses.LOSSES
    assert formats.by_loader("segact_plugins.npy_plugin.load_npy").name == "npy"


def test_a_changed_file_changes_the_fingerprint(plugin, tmp_path):
    root = tmp_path / "data"
    _write_data(root)
    cfg = {"_target_": "segact_plugins.npy_plugin.load_npy", "name": "npy", "root": str(root)}
    before = dataset_fingerprint(cfg)
    assert before is not None and dataset_fingerprint(cfg) == before
    array = np.load(root / "case3.npy")
    array[0, 0, 0] += 0.5
    np.save(root / "case3.npy", array)
    assert dataset_fingerprint(cfg) != before


def _run(command: list[str], plugin: Path, cwd: Path) -> subprocess.CompletedProcess:
    path = os.pathsep.join([str(plugin), *(p for p in sys.path if os.path.isabs(p))])
    env = {**os.environ, "PYTHONPATH": path}
    done = subprocess.run(command, capture_output=True, text=True, env=env, cwd=cwd, timeout=900)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    return done


@pytest.mark.slow
def test_new_activation_loss_and_format_train_and_predict(plugin, tmp_path):
    root, run_dir = tmp_path / "data", tmp_path / "run"
    _write_data(root)
    overrides = [
        f"hydra.searchpath=[file://{plugin / 'configs'}]",
        "dataset=npy",
        f"dataset.root={root}",
        "activation=half_tanh",
        "loss=l1",
        "runtime.save_models=true",
        f"hydra.run.dir={run_dir}",
    ]
    tiny = [o for o in TINY if not o.startswith(("dataset.", "runtime.save_models"))]
    _run([sys.executable, "-m", "segact.train", *tiny, *overrides], plugin, tmp_path)
    folds = pd.read_csv(RunFolder(run_dir).folds_csv)
    assert set(folds["dataset"]) == {"npy"} and set(folds["activation"]) == {"half_tanh"}
    assert set(folds["loss"]) == {"l1"} and (folds["status"] == "ok").all()
    inputs = tmp_path / "new"
    inputs.mkdir()
    np.save(inputs / "x.npy", np.load(root / "case0.npy")[:1])
    out = tmp_path / "masks"
    predict = [sys.executable, "-m", "segact.predict", str(run_dir), str(inputs), "--out", str(out)]
    _run([*predict, "--no-progress"], plugin, tmp_path)
    assert (out / "x.png").is_file()
